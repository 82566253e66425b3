//! `itap::run`, the whole pipeline through the library, on temporary SQLite
//! databases: artifacts, idempotent re-runs, refusals, and a threshold that test
//! labels cannot move.

use std::path::{Path, PathBuf};

use itap::eval::{EvalParams, Evaluation, MetricsFile};
use itap::features::FeatureParams;
use itap::store::{RangeQuery, Store};
use itap::telemetry::{Batch, ReadOptions, SimParams, simulate, write_csv};
use itap::validate::ValidationParams;
use itap::{
    ParamGuard, RunParams, RunSummary, Source, StoreSettings, TrainingSet, default_detector,
};

fn params(source: Source, db: &Path, out: &Path) -> RunParams {
    RunParams {
        source,
        read: ReadOptions::default(),
        validation: ValidationParams::default().check().unwrap(),
        store: StoreSettings {
            url: format!("sqlite://{}", db.display()),
            ..StoreSettings::default()
        }
        .check()
        .unwrap(),
        features: FeatureParams::default().check().unwrap(),
        detector: default_detector().check().unwrap(),
        training: TrainingSet::default(),
        eval: EvalParams::default().check().unwrap(),
        alerts: itap::eval::AlertParams::default().check().unwrap(),
        out_dir: out.to_path_buf(),
        config_json: serde_json::json!({"test": "run"}),
        memory_rows: 0,
        group_rows: itap::DEFAULT_GROUP_ROWS,
    }
}

/// The files a run leaves in its output folder.
const RUN_FILES: [&str; 5] = [
    "alerts.json",
    "metrics.json",
    "model.json",
    "report.html",
    "scores.csv",
];

/// The names of a folder's entries, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn small_fleet() -> itap::telemetry::CheckedSimParams {
    SimParams::default().devices(3).hours(3.0).check().unwrap()
}

fn run(p: &RunParams) -> (RunSummary, Vec<String>) {
    let mut stages = Vec::new();
    let summary = itap::run(p, &mut |t| stages.push(t.stage.clone())).unwrap();
    (summary, stages)
}

fn stored_rows(db: &Path) -> usize {
    let rt = itap::store_runtime().unwrap();
    rt.block_on(async {
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let b = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        store.close().await;
        b.len()
    })
}

fn metrics(out: &Path) -> MetricsFile {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn a_run_stores_trains_scores_and_writes_every_artifact_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("itap.db"), dir.path().join("artifacts"));
    let csv = dir.path().join("raw/telemetry.csv");
    let p = params(
        Source::Simulate(Box::new(small_fleet()), csv.clone()),
        &db,
        &out,
    );
    let (first, stages) = run(&p);
    // The ingest runs beside train and score and is reported when it has ended.
    assert_eq!(
        stages,
        [
            "generate", "validate", "train", "score", "ingest", "evaluate"
        ]
    );
    let rows = simulate(&small_fleet()).len();
    assert_eq!(first.timings[0].rows, rows as u64);
    assert!(
        first.timings[4]
            .detail
            .contains(&format!("inserted {rows}"))
    );
    assert_eq!(stored_rows(&db), rows);
    // The CSV is written for the user, and is what was stored.
    let back = itap::telemetry::read_csv(&csv, &ReadOptions::default()).unwrap();
    assert_eq!(back.len(), rows);
    let names: Vec<PathBuf> = [
        "model.json",
        "metrics.json",
        "alerts.json",
        "scores.csv",
        "report.html",
    ]
    .iter()
    .map(|f| out.join(f))
    .collect();
    assert_eq!(first.artifacts, names);
    for f in &names {
        assert!(std::fs::metadata(f).unwrap().len() > 0, "{}", f.display());
    }
    // Written into temporary files beside the ingest, then renamed: none is left.
    assert_eq!(files_in(&out), RUN_FILES);
    let m = metrics(&out);
    assert_eq!(m.input.path, csv.display().to_string());
    assert_eq!(
        m.input.sha256.as_deref(),
        Some(itap::validate::sha256_file(&csv).unwrap().as_str()),
        "metrics.json names the CSV by its digest"
    );
    assert!(first.evaluation.roc_auc.is_some());
    assert_eq!(first.evaluation.threshold, m.evaluation.threshold);

    // Again into the same database: nothing inserted twice, the same results.
    let (second, _) = run(&p);
    assert!(
        second.timings[4]
            .detail
            .contains(&format!("inserted 0, duplicates {rows}")),
        "{}",
        second.timings[4].detail
    );
    assert_eq!(stored_rows(&db), rows);
    assert_eq!(
        serde_json::to_value(&first.evaluation).unwrap(),
        serde_json::to_value(&second.evaluation).unwrap()
    );
}

#[test]
fn a_refused_input_stores_nothing_and_writes_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("itap.db"), dir.path().join("artifacts"));
    let csv = dir.path().join("bad.csv");
    // The same device and time twice with different values: a conflict.
    std::fs::write(
        &csv,
        "timestamp,device_id,temp_c\n\
         2026-01-01T00:00:00Z,d1,50.0\n\
         2026-01-01T00:00:10Z,d1,50.5\n\
         2026-01-01T00:00:10Z,d1,70.0\n",
    )
    .unwrap();
    let p = params(Source::Csv(csv.clone()), &db, &out);
    match itap::run(&p, &mut |_| {}) {
        Err(itap::Error::Refused { path, report, .. }) => {
            assert_eq!(path, csv.display().to_string());
            assert!(!report.verdict.is_storable());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!db.exists(), "the store was not even opened");
    assert!(!out.exists(), "no artifact");
}

#[test]
fn a_failed_ingest_writes_no_artifact_though_training_ran_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("itap.db"), dir.path().join("artifacts"));
    // Not a SQLite database: the store refuses it once the rows are validated,
    // while the rows are trained on and scored on the main thread.
    std::fs::write(&db, vec![b'x'; 4096]).unwrap();
    let csv = dir.path().join("raw/telemetry.csv");
    let p = params(Source::Simulate(Box::new(small_fleet()), csv), &db, &out);
    let mut stages = Vec::new();
    let e = itap::run(&p, &mut |t| stages.push(t.stage.clone())).unwrap_err();
    assert!(matches!(e, itap::Error::Store(_)), "{e:?}");
    assert_eq!(stages[..2], ["generate", "validate"]);
    assert!(
        !stages.iter().any(|s| s == "ingest" || s == "evaluate"),
        "{stages:?}"
    );
    for f in [
        "model.json",
        "metrics.json",
        "alerts.json",
        "scores.csv",
        "report.html",
    ] {
        assert!(!out.join(f).exists(), "{f} written after a failed ingest");
    }
    // The artifacts were written beside the ingest into temporary files: they
    // are removed, and so is the output folder the run made for them.
    assert!(
        !out.exists(),
        "{:?}",
        std::fs::read_dir(&out).map(|d| d.count())
    );
}

/// The batch with the fault tags of the rows on one side of `cut` replaced: every
/// row there tagged with `tag` (or untagged when `tag` is empty).
fn relabel(batch: &Batch, cut: i64, after: bool, tag: &str) -> Batch {
    let mut c = batch.clone().into_columns();
    let code = match c.tag_names.iter().position(|t| t == tag) {
        Some(i) => i as u32,
        None => {
            c.tag_names.push(tag.to_owned());
            (c.tag_names.len() - 1) as u32
        }
    };
    let tags = c.tag_codes.as_mut().expect("simulated data is tagged");
    for (r, t) in tags.iter_mut().enumerate() {
        if (c.timestamps[r] >= cut) == after {
            *t = code;
        }
    }
    Batch::from_columns(c).unwrap()
}

fn evaluate_csv(batch: &Batch, dir: &Path, name: &str) -> Evaluation {
    let csv = dir.join(format!("{name}.csv"));
    write_csv(batch, &csv).unwrap();
    let db = dir.join(format!("{name}.db"));
    let out = dir.join(name);
    run(&params(Source::Csv(csv), &db, &out)).0.evaluation
}

/// Relabelling the evaluated span (every row faulty, or none) leaves the model and
/// its threshold exactly as they were; relabelling the training span moves them
/// (faulty training rows are left out), which shows the comparison can fail.
#[test]
fn the_threshold_never_depends_on_test_labels() {
    let dir = tempfile::tempdir().unwrap();
    let batch = simulate(&small_fleet());
    let (first, last) = batch.time_bounds().unwrap();
    let cut = EvalParams::default()
        .check()
        .unwrap()
        .split(first, last)
        .unwrap()
        .cut_us;
    let base = evaluate_csv(&batch, dir.path(), "base");
    assert_eq!(base.split.cut, itap::telemetry::format_timestamp(cut));

    let all_faulty = evaluate_csv(
        &relabel(&batch, cut, true, "overheat_drift"),
        dir.path(),
        "test-all-faulty",
    );
    let none_faulty = evaluate_csv(&relabel(&batch, cut, true, ""), dir.path(), "test-clean");
    for other in [&all_faulty, &none_faulty] {
        assert_eq!(
            other.threshold.value.to_bits(),
            base.threshold.value.to_bits()
        );
        assert_eq!(other.threshold.training_rows, base.threshold.training_rows);
        assert_eq!(
            other.at_threshold.alert_rate.to_bits(),
            base.at_threshold.alert_rate.to_bits()
        );
    }
    assert_ne!(all_faulty.roc_auc, base.roc_auc, "the labels did change");

    let train_clean = evaluate_csv(&relabel(&batch, cut, false, ""), dir.path(), "train-clean");
    assert_ne!(
        train_clean.threshold.training_rows, base.threshold.training_rows,
        "training labels decide which rows are learned from"
    );
    assert_ne!(
        train_clean.threshold.value.to_bits(),
        base.threshold.value.to_bits()
    );
}

/// The files of a run in `out`: each whole, and scores.csv's lines sorted.
fn run_files(out: &Path) -> Vec<String> {
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let mut lines: Vec<String> = read("scores.csv").lines().map(str::to_owned).collect();
    lines.sort();
    let mut files = vec![
        read("metrics.json"),
        read("alerts.json"),
        read("report.html"),
    ];
    files.push(lines.join("\n"));
    files
}

#[test]
fn an_input_larger_than_memory_rows_is_streamed_by_device_groups_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    // 6 devices × 4 h: 8,640 rows.
    let sim = SimParams::default().devices(6).hours(4.0).check().unwrap();
    let csv = |name: &str| dir.path().join(name);
    let whole = params(
        Source::Simulate(Box::new(sim.clone()), csv("fleet.csv")),
        &dir.path().join("whole.db"),
        &dir.path().join("whole"),
    );
    let (held, stages) = run(&whole);
    assert_eq!(stages[..3], ["generate", "validate", "train"]);
    let written = std::fs::read(csv("fleet.csv")).unwrap();

    // Streamed, one group: the same files (the fleet-wide parts from every
    // device), the same CSV, the rows stored.
    let mut streamed = params(
        Source::Simulate(Box::new(sim.clone()), csv("fleet.csv")),
        &dir.path().join("streamed.db"),
        &dir.path().join("streamed"),
    );
    streamed.memory_rows = 8_000;
    streamed.group_rows = 10_000;
    let mut stages = Vec::new();
    let mut progress: Vec<(String, u64, u64)> = Vec::new();
    let got = itap::run_with_progress(&streamed, &mut |t| stages.push(t.stage.clone()), &mut |p| {
        progress.push((p.stage.to_owned(), p.done, p.total));
    })
    .unwrap();
    assert_eq!(
        stages,
        [
            "generate",
            "validate",
            "set aside",
            "ingest",
            "train",
            "score",
            "evaluate"
        ]
    );
    // Each stage says how far it got, to the end (validate and set aside go
    // with generate, a block at a time): rows, then devices.
    for (stage, total) in [
        ("generate", 8_640),
        ("ingest", 8_640),
        ("train", 6),
        ("score+evaluate", 6),
    ] {
        let last = progress.iter().rfind(|p| p.0 == stage);
        assert_eq!(
            last,
            Some(&(stage.to_owned(), total, total)),
            "{progress:?}"
        );
    }
    assert!(
        std::fs::read(csv("fleet.csv")).unwrap() == written,
        "the same CSV"
    );
    assert_eq!(stored_rows(&dir.path().join("streamed.db")), 8_640);
    assert_eq!(got.evaluation, held.evaluation);
    assert_eq!(got.alerts, held.alerts);
    assert_eq!(got.alerts_stored.inserted, held.alerts_stored.inserted);
    assert!(!got.alerts.is_empty());
    assert!(
        run_files(&dir.path().join("streamed")) == run_files(&dir.path().join("whole")),
        "the streamed run's files differ"
    );
    let model = |d: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(d).join("model.json")).unwrap(),
        )
        .unwrap()
    };
    let (mut a, b) = (model("streamed"), model("whole"));
    assert_eq!(a["training"]["fleet_devices"], 6);
    a["training"]
        .as_object_mut()
        .unwrap()
        .remove("fleet_devices");
    assert_eq!(a, b);

    // A CSV input larger than memory_rows, groups of two devices: streamed too
    // (its rows estimated from its size), and a re-run stores nothing twice.
    let mut from_csv = params(
        Source::Csv(csv("fleet.csv")),
        &dir.path().join("csv.db"),
        &dir.path().join("csv"),
    );
    from_csv.memory_rows = 8_000;
    from_csv.group_rows = 3_000;
    let mut stages = Vec::new();
    let mut progress: Vec<(String, u64, u64)> = Vec::new();
    let first =
        itap::run_with_progress(&from_csv, &mut |t| stages.push(t.stage.clone()), &mut |p| {
            progress.push((p.stage.to_owned(), p.done, p.total));
        })
        .unwrap();
    // Reading and validating the file reports its rows as they go by (the
    // count estimated from the bytes read), ending at the rows read.
    let reading: Vec<&(String, u64, u64)> =
        progress.iter().filter(|p| p.0 == "read+validate").collect();
    assert_eq!(
        reading.last(),
        Some(&&("read+validate".to_owned(), 8_640, 8_640)),
        "{progress:?}"
    );
    assert!(
        reading.len() >= 2 && reading.iter().all(|p| p.1 <= p.2),
        "{reading:?}"
    );
    assert_eq!(
        stages,
        [
            "read+validate",
            "set aside",
            "ingest",
            "train",
            "score",
            "evaluate"
        ]
    );
    assert_eq!(first.evaluation.rows_total, 8_640);
    assert!(
        first.evaluation.roc_auc.is_some_and(|a| a > 0.7),
        "{:?}",
        first.evaluation.roc_auc
    );
    let (again, _) = run(&from_csv);
    assert_eq!(again.alerts_stored.inserted, 0);
    assert_eq!(again.evaluation, first.evaluation);
    assert_eq!(stored_rows(&dir.path().join("csv.db")), 8_640);

    // The analysis is of the input alone, as in memory: a dataset holding
    // another day of the fleet first gives the same evaluation.
    let other_day = params(
        Source::Simulate(
            Box::new(
                SimParams::default()
                    .devices(6)
                    .hours(4.0)
                    .start("2025-12-31T00:00:00Z")
                    .check()
                    .unwrap(),
            ),
            csv("other-day.csv"),
        ),
        &dir.path().join("scratch.db"),
        &dir.path().join("other-day"),
    );
    run(&other_day);
    // Stored from its CSV, as the streamed input will be (a CSV's integral
    // columns are integers, the simulator's floats).
    let mut other_day = params(
        Source::Csv(csv("other-day.csv")),
        &dir.path().join("mixed.db"),
        &dir.path().join("other-day"),
    );
    run(&other_day);
    other_day.source = Source::Csv(csv("fleet.csv"));
    other_day.out_dir = dir.path().join("mixed");
    other_day.memory_rows = 8_000;
    other_day.group_rows = 3_000;
    let (mixed, _) = run(&other_day);
    assert_eq!(stored_rows(&dir.path().join("mixed.db")), 2 * 8_640);
    assert_eq!(mixed.evaluation, first.evaluation);
    // Nothing but the run's files is left in the output folder (the rows set
    // aside while streaming are removed).
    assert_eq!(files_in(&dir.path().join("mixed")), RUN_FILES);

    // A threshold rule that needs every held-back row is refused before
    // anything is written.
    let mut target = params(
        Source::Csv(csv("fleet.csv")),
        &dir.path().join("t.db"),
        &dir.path().join("t"),
    );
    target.memory_rows = 8_000;
    target.eval = EvalParams {
        target_false_alerts_per_device_day: Some(2.0),
        ..EvalParams::default()
    }
    .check()
    .unwrap();
    let err = itap::run(&target, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("memory_rows"), "{err}");
    assert!(!dir.path().join("t.db").exists() && !dir.path().join("t").exists());
}
