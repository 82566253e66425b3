//! Training a group of devices at a time gives the model of training on the whole
//! at sizes where both fit; its sample does not depend on the grouping nor on the
//! thread count. Scoring and evaluating a group of devices at a time gives the
//! files of scoring the whole.

use itap::anomaly::DetectorParams;
use itap::eval::EvalParams;
use itap::features::FeatureParams;
use itap::store::Store;
use itap::telemetry::{Batch, SimParams, simulate};
use itap::validate::ValidationParams;
use std::path::Path;

use itap::eval::{AlertParams, InputDigest};
use itap::{
    BatchGroups, GroupedScoring, GroupedTraining, ModelFile, ParamGuard, RunContext, StoreGroups,
    StoreSettings, TrainingSet, default_detector, evaluate_scores_and_write, score_grouped,
    split_at_model_cut, split_by_time, train_and_score, train_grouped,
};

/// 12 devices × 8 h of 10 s samples: 34,560 rows, 2,880 a device.
fn fleet() -> Batch {
    simulate(&SimParams::default().devices(12).hours(8.0).check().unwrap())
}

fn grouped(
    data: &mut dyn itap::DeviceGroups,
    set: &TrainingSet,
    detector: &itap::anomaly::CheckedDetector,
    group_rows: u64,
    fleet_rows: u64,
) -> ModelFile {
    let eval = EvalParams::default().check().unwrap();
    let features = FeatureParams::default().check().unwrap();
    let mut groups = Vec::new();
    let m = train_grouped(
        data,
        &GroupedTraining {
            eval: &eval,
            set,
            features: &features,
            detector,
            group_rows,
            fleet_rows,
        },
        &mut |done, all| groups.push((done, all)),
    )
    .unwrap();
    assert_eq!(groups.last(), Some(&(12, 12)), "every device reported");
    m
}

/// The model file's JSON, without the one field that says how it was trained.
fn json(m: &ModelFile) -> String {
    let mut m = m.clone();
    m.training.fleet_devices = None;
    serde_json::to_string(&m).unwrap()
}

#[test]
fn a_fleet_trained_a_group_of_devices_at_a_time_gives_the_whole_fleet_s_model() {
    let b = fleet();
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&b, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    for (detector, max) in [
        (default_detector().check().unwrap(), 0),
        (default_detector().check().unwrap(), 1_000),
        (DetectorParams::default().check().unwrap(), 5_000),
    ] {
        let set = TrainingSet {
            max_training_rows: max,
            ..TrainingSet::default()
        };
        let whole = train_and_score(&b, &split, &set, &features, &detector)
            .unwrap()
            .model;
        if max > 0 {
            assert_eq!(whole.training.rows_sampled, Some(max), "the sample is used");
        }
        // One group, a device a group, groups of 5, 5 and 2 devices.
        for group_rows in [100_000, 2_880, 5 * 2_880 + 7] {
            let m = grouped(
                &mut BatchGroups::new(&b),
                &set,
                &detector,
                group_rows,
                34_560,
            );
            assert_eq!(m.training.fleet_devices, Some(12));
            assert_eq!(
                json(&m),
                json(&whole),
                "max_training_rows {max}, group_rows {group_rows}"
            );
        }
    }
}

#[test]
fn a_sample_of_the_fleet_s_devices_gives_one_model_whatever_the_groups_and_threads() {
    let b = fleet();
    let detector = default_detector().check().unwrap();
    let set = TrainingSet {
        max_training_rows: 2_000,
        ..TrainingSet::default()
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let first =
        pool(1).install(|| grouped(&mut BatchGroups::new(&b), &set, &detector, 2_880, 10_000));
    assert_eq!(
        first.training.fleet_devices,
        Some(3),
        "3 devices of 2,880 rows"
    );
    for (threads, group_rows) in [(2, 2_880), (2, 7 * 2_880), (1, 100_000)] {
        let m = pool(threads).install(|| {
            grouped(
                &mut BatchGroups::new(&b),
                &set,
                &detector,
                group_rows,
                10_000,
            )
        });
        assert_eq!(
            json(&m),
            json(&first),
            "{threads} threads, group_rows {group_rows}"
        );
    }
    // Every device has its own baselines, the fleet's parts are the sample's.
    assert_eq!(first.features.devices().len(), 12);
    let all = grouped(&mut BatchGroups::new(&b), &set, &detector, 2_880, 34_560);
    assert_ne!(first.features.pooled(), all.features.pooled());
    // The model scores the fleet.
    let scores = first.score_rows(&b).unwrap();
    assert!(scores.iter().all(|s| s.is_finite()));
}

#[test]
fn a_stored_dataset_trained_a_group_of_devices_at_a_time_is_trained_as_when_loaded_whole() {
    let b = fleet();
    let dir = tempfile::tempdir().unwrap();
    let settings = StoreSettings {
        url: format!("sqlite://{}", dir.path().join("g.db").display()),
        ..StoreSettings::default()
    };
    let validation = ValidationParams::default().check().unwrap();
    let (valid, report) = itap::validate_in_memory(
        b,
        &validation,
        std::path::Path::new("fleet"),
        String::new(),
        None,
    )
    .unwrap();
    let rt = itap::store_runtime().unwrap();
    rt.block_on(async {
        let store: Store = settings.connect().await.unwrap();
        itap::store_batch(&valid, &report, &store, &settings, &mut |_| {})
            .await
            .unwrap();
        store.close().await;
    });
    let loaded = rt.block_on(itap::load_dataset(&settings)).unwrap();
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&loaded, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    let detector = default_detector().check().unwrap();
    let set = TrainingSet {
        max_training_rows: 3_000,
        ..TrainingSet::default()
    };
    let whole = train_and_score(&loaded, &split, &set, &features, &detector)
        .unwrap()
        .model;
    let mut groups = StoreGroups::open(&settings).unwrap();
    let m = grouped(&mut groups, &set, &detector, 4 * 2_880, 34_560);
    assert_eq!(json(&m), json(&whole));

    // Scored from the store a group of devices at a time: the files of scoring
    // the loaded rows.
    let out = dir.path().join("whole");
    score_whole(&loaded, &whole, &out);
    let expected = files(&out);
    let out = dir.path().join("groups");
    let reported = score_grouped(
        &mut groups,
        &scoring(&whole, 4 * 2_880 + 1),
        &out,
        &mut |_, _| {},
    )
    .unwrap();
    groups.close();
    assert_eq!(files(&out), expected);
    assert!(!reported.alerts.is_empty());
}

/// What scoring writes into `out`: metrics.json, alerts.json and report.html,
/// and scores.csv's lines (sorted, and as written).
fn files(out: &Path) -> (String, String, String, Vec<String>) {
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    let mut lines: Vec<String> = read("scores.csv").lines().map(str::to_owned).collect();
    lines.sort();
    (
        read("metrics.json"),
        read("alerts.json"),
        read("report.html"),
        lines,
    )
}

fn context() -> RunContext {
    RunContext {
        input: InputDigest {
            path: "the fleet".into(),
            sha256: None,
        },
        config: serde_json::json!({"eval": "defaults"}),
        alerts: AlertParams::default().check().unwrap(),
    }
}

/// Scores `b` whole with `model` and writes the files into `out`.
fn score_whole(b: &Batch, model: &ModelFile, out: &Path) -> itap::Reported {
    let eval = EvalParams::default().check().unwrap();
    let split = split_at_model_cut(b, model, Path::new("model.json")).unwrap();
    let scores = model.score_rows(b).unwrap();
    evaluate_scores_and_write(b, &scores, model, &split, &eval, &context(), out).unwrap()
}

fn scoring<'a>(model: &'a ModelFile, group_rows: u64) -> GroupedScoring<'a> {
    static EVAL: std::sync::OnceLock<itap::eval::CheckedEval> = std::sync::OnceLock::new();
    static CTX: std::sync::OnceLock<RunContext> = std::sync::OnceLock::new();
    GroupedScoring {
        model,
        model_path: Path::new("model.json"),
        eval: EVAL.get_or_init(|| EvalParams::default().check().unwrap()),
        ctx: CTX.get_or_init(context),
        group_rows,
        split: None,
    }
}

#[test]
fn a_fleet_scored_a_group_of_devices_at_a_time_gives_the_files_of_scoring_it_whole() {
    let b = fleet();
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&b, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    let detector = default_detector().check().unwrap();
    let model = train_and_score(&b, &split, &TrainingSet::default(), &features, &detector)
        .unwrap()
        .model;
    let dir = tempfile::tempdir().unwrap();
    let whole = score_whole(&b, &model, &dir.path().join("whole"));
    let ev = &whole.evaluation;
    assert!(
        whole.alerts.len() > 3 && ev.events.events > 3,
        "{:?}",
        ev.events
    );
    assert!(ev.events.false_alerts > 0 && ev.events.detected > 0);
    let expected = files(&dir.path().join("whole"));
    let written = std::fs::read_to_string(dir.path().join("whole/scores.csv")).unwrap();
    // One group, a device a group, groups of 5, 5 and 2 devices.
    for group_rows in [100_000, 2_880, 5 * 2_880 + 7] {
        let out = dir.path().join(format!("g{group_rows}"));
        let mut seen = Vec::new();
        let reported = score_grouped(
            &mut BatchGroups::new(&b),
            &scoring(&model, group_rows),
            &out,
            &mut |done, all| seen.push((done, all)),
        )
        .unwrap();
        assert_eq!(seen.last(), Some(&(12, 12)));
        assert_eq!(reported.evaluation, whole.evaluation);
        assert_eq!(reported.alerts, whole.alerts);
        assert!(
            files(&out) == expected,
            "files differ with group_rows {group_rows}"
        );
        let lines = std::fs::read_to_string(out.join("scores.csv")).unwrap();
        // In time order as one group; group after group otherwise.
        assert_eq!(lines == written, group_rows == 100_000);
    }
}
