//! `itap train`, `itap score` and `itap run`, run as a user would in a temporary
//! directory on the embedded SQLite.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

const FLEET: [&str; 4] = ["--devices", "4", "--hours", "2"];

/// A temporary folder whose default database holds the generated FLEET.
fn stored_fleet() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir).arg("generate").args(FLEET).assert().success();
    itap(&dir)
        .args(["ingest", "data/raw/telemetry.csv"])
        .assert()
        .success();
    dir
}

#[test]
fn run_does_every_stage_and_rerunning_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let out = itap(&dir)
        .arg("run")
        .args(FLEET)
        .arg("--timings")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for stage in [
        "generate", "validate", "ingest", "train", "score", "evaluate", "total",
    ] {
        assert!(text.contains(stage), "stage {stage} missing:\n{text}");
    }
    assert!(text.contains("inserted 2880"), "{text}");
    let timings: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let stages = timings["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6, "{timings}");
    assert_eq!(stages[0]["rows"], 2880);
    assert!(timings["total_seconds"].as_f64().unwrap() > 0.0);

    for f in [
        "model.json",
        "metrics.json",
        "alerts.json",
        "scores.csv",
        "report.html",
    ] {
        assert!(dir.path().join("artifacts").join(f).is_file(), "{f}");
    }
    let metrics = json(&dir.path().join("artifacts/metrics.json"));
    let ev = &metrics["evaluation"];
    assert!(ev["rows_evaluated"].as_u64().unwrap() > 0);
    assert_eq!(ev["eval_states"], serde_json::json!(["RUN", "IDLE"]));
    assert_eq!(metrics["config"]["model"]["detector"], "residual");
    let scores = fs::read_to_string(dir.path().join("artifacts/scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 2880 + 1);

    // Again in the same folder: the ingest inserts nothing, the results are the same.
    let again = itap(&dir).arg("run").args(FLEET).assert().success();
    let text = String::from_utf8(again.get_output().stdout.clone()).unwrap();
    assert!(text.contains("inserted 0, duplicates 2880"), "{text}");
    let metrics2 = json(&dir.path().join("artifacts/metrics.json"));
    assert_eq!(metrics2["evaluation"], metrics["evaluation"]);
    assert!(
        text.contains("(0 new, 0 updated,"),
        "alerts stored once:\n{text}"
    );

    // The stored alerts are those of alerts.json, each once.
    let file = json(&dir.path().join("artifacts/alerts.json"));
    let in_file = file["alerts"].as_array().unwrap();
    assert!(!in_file.is_empty(), "the fleet has faults: some alerts");
    assert_eq!(
        ev["events"]["alerts"].as_u64().unwrap() as usize,
        in_file.len()
    );
    let listed = itap(&dir)
        .args(["alerts", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let ids = |v: &[serde_json::Value]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(listed.as_array().unwrap()), ids(in_file));
    let device = in_file[0]["device"].as_str().unwrap();
    let one = itap(&dir)
        .args(["alerts", "--json", "--device", device])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let one: serde_json::Value = serde_json::from_slice(&one).unwrap();
    assert!(
        one.as_array()
            .unwrap()
            .iter()
            .all(|a| a["device"] == device)
    );
    itap(&dir)
        .args(["alerts", "--since", "yesterday"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--since"));
}

#[test]
fn train_then_score_share_the_split_and_the_model() {
    let dir = stored_fleet();
    itap(&dir)
        .args(["train", "--train-fraction", "0.5"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("rows used")
                .and(predicate::str::contains("rows in state MAINT"))
                .and(predicate::str::contains(
                    "rows with a ground-truth fault tag",
                ))
                .and(predicate::str::contains("vibration_g__chart_ewma__45s"))
                .and(predicate::str::contains("artifacts/model.json")),
        );
    let model = json(&dir.path().join("artifacts/model.json"));
    assert_eq!(model["training"]["unsupervised"], false);
    let until = model["training"]["until"].as_str().unwrap().to_owned();

    itap(&dir)
        .args(["score", "--out", "scored"])
        .assert()
        .success()
        .stdout(predicate::str::contains("scored 2,880 rows"));
    let metrics = json(&dir.path().join("scored/metrics.json"));
    assert_eq!(
        metrics["evaluation"]["split"]["cut"].as_str().unwrap(),
        until,
        "score evaluates after the cut the model was trained with"
    );
    let scores = fs::read_to_string(dir.path().join("scored/scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 2881);

    // The same model from a CSV instead of the database gives the same scores.
    itap(&dir)
        .args([
            "score",
            "--input",
            "data/raw/telemetry.csv",
            "--out",
            "from_csv",
        ])
        .assert()
        .success();
    let from_csv = fs::read_to_string(dir.path().join("from_csv/scores.csv")).unwrap();
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&from_csv), sorted(&scores));
}

#[test]
fn a_dataset_larger_than_group_rows_is_trained_a_group_of_devices_at_a_time() {
    let dir = stored_fleet();
    // Loaded whole (2,880 rows ≤ the default group_rows), then in groups of
    // at most 1,440 rows (two devices): every device has 720 rows.
    itap(&dir)
        .args(["train", "--model", "whole.json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("groups of devices").not());
    fs::write(dir.path().join("g.toml"), "[model]\ngroup_rows = 1440\n").unwrap();
    itap(&dir)
        .args(["train", "--config", "g.toml", "--model", "grouped.json"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("2 groups of devices of at most 1,440 rows")
                .and(predicate::str::contains("from 2 devices"))
                .and(predicate::str::contains("(dataset `telemetry`)")),
        );
    let (whole, grouped) = (
        json(&dir.path().join("whole.json")),
        json(&dir.path().join("grouped.json")),
    );
    assert_eq!(grouped["training"]["fleet_devices"], 2);
    assert!(whole["training"].get("fleet_devices").is_none());
    // Every device has its own baselines either way; the rows trained on are
    // the same.
    assert_eq!(
        grouped["features"]["devices"].as_array().unwrap().len(),
        4,
        "each device's baselines"
    );
    for key in [
        "rows_in_span",
        "rows_used",
        "calibration_rows",
        "excluded_by_state",
    ] {
        assert_eq!(grouped["training"][key], whole["training"][key], "{key}");
    }
    // A threshold rule that needs every held-back row is refused, saying what
    // to do.
    fs::write(
        dir.path().join("t.toml"),
        "[model]\ngroup_rows = 1440\n[eval]\ntarget_false_alerts_per_device_day = 2.0\n",
    )
    .unwrap();
    itap(&dir)
        .args(["train", "--config", "t.toml", "--model", "t.json"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("group_rows = 0"));
    assert!(!dir.path().join("t.json").exists());
}

#[test]
fn a_dataset_larger_than_group_rows_is_scored_a_group_of_devices_at_a_time() {
    let dir = stored_fleet();
    itap(&dir)
        .args(["train", "--model", "m.json"])
        .assert()
        .success();
    // Loaded whole, then in groups of at most 1,440 rows (two devices).
    itap(&dir)
        .args(["score", "--model", "m.json", "--out", "whole"])
        .assert()
        .success()
        .stdout(predicate::str::contains("groups of devices").not());
    fs::write(dir.path().join("g.toml"), "[model]\ngroup_rows = 1440\n").unwrap();
    itap(&dir)
        .args([
            "score", "--config", "g.toml", "--model", "m.json", "--out", "groups",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("scored and evaluated 2,880 rows")
                .and(predicate::str::contains(
                    "2 groups of devices of at most 1,440 rows",
                ))
                .and(predicate::str::contains(
                    "wrote          groups/report.html",
                )),
        );
    // The same files but for the order of scores.csv's lines.
    let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap();
    for f in ["metrics.json", "alerts.json", "report.html"] {
        assert!(
            read(&format!("whole/{f}")) == read(&format!("groups/{f}")),
            "{f} differs"
        );
    }
    let metrics = json(&dir.path().join("groups/metrics.json"));
    assert!(metrics["evaluation"]["rows_evaluated"].as_u64().unwrap() > 500);
    let sorted = |f: &str| {
        let mut l: Vec<String> = read(f).lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    assert_eq!(sorted("whole/scores.csv"), sorted("groups/scores.csv"));
    assert_ne!(read("whole/scores.csv"), read("groups/scores.csv"));
    // A threshold rule that needs every held-back row is refused, and nothing
    // is written.
    fs::write(
        dir.path().join("t.toml"),
        "[model]\ngroup_rows = 1440\n[eval]\ntarget_false_alerts_per_device_day = 2.0\n",
    )
    .unwrap();
    itap(&dir)
        .args([
            "score", "--config", "t.toml", "--model", "m.json", "--out", "t",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("group_rows = 0"));
    assert!(!dir.path().join("t").exists());
}

#[test]
fn a_run_larger_than_memory_rows_is_analysed_a_group_of_devices_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .arg("run")
        .args(FLEET)
        .args(["--out", "whole"])
        .assert()
        .success();
    fs::write(
        dir.path().join("m.toml"),
        "[model]\nmemory_rows = 2000\ngroup_rows = 100000\n",
    )
    .unwrap();
    itap(&dir)
        .args([
            "run",
            "--config",
            "m.toml",
            "--db",
            "sqlite://data/streamed.db",
        ])
        .args(FLEET)
        .args(["--out", "streamed"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("set aside")
                .and(predicate::str::contains("a group of devices at a time"))
                .and(predicate::str::contains("inserted 2880")),
        );
    let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap();
    for f in ["metrics.json", "alerts.json", "report.html"] {
        assert!(
            read(&format!("whole/{f}")) == read(&format!("streamed/{f}")),
            "{f} differs"
        );
    }
}

#[test]
fn unsupervised_training_uses_every_row_of_the_span() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir).arg("generate").args(FLEET).assert().success();
    itap(&dir)
        .args([
            "train",
            "--input",
            "data/raw/telemetry.csv",
            "--unsupervised",
            "--detector",
            "iforest",
            "--model",
            "m.json",
            "--json",
        ])
        .assert()
        .success();
    let model = json(&dir.path().join("m.json"));
    let t = &model["training"];
    assert_eq!(t["unsupervised"], true);
    // Every row of the span but the held-back last 20 %, which the threshold's
    // sketch is taken from.
    let (used, held, span) = (
        t["rows_used"].as_u64().unwrap(),
        t["calibration_rows"].as_u64().unwrap(),
        t["rows_in_span"].as_u64().unwrap(),
    );
    assert!(held > 0, "{t}");
    assert_eq!(used + held, span, "{t}");
    assert_eq!(t["excluded_as_faulty"], 0);
    assert_eq!(
        model["detector"]["detector"], "iforest",
        "{}",
        model["detector"]["detector"]
    );
}

#[test]
fn a_model_for_other_signals_is_refused_naming_the_features() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir).arg("generate").args(FLEET).assert().success();
    itap(&dir)
        .args(["train", "--input", "data/raw/telemetry.csv"])
        .assert()
        .success();
    fs::write(
        dir.path().join("other.csv"),
        "timestamp,device_id,pressure_bar\n2026-01-01T00:00:00Z,A,1.0\n2026-01-01T00:00:10Z,A,1.1\n",
    )
    .unwrap();
    itap(&dir)
        .args(["score", "--input", "other.csv"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("missing")
                .and(predicate::str::contains("temp_c__chart_ewma__15s"))
                .and(predicate::str::contains("pressure_bar__chart_ewma__15s")),
        );
}

#[test]
fn bad_input_and_bad_flags_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .arg("train")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "dataset `telemetry` does not exist",
        ));
    fs::write(
        dir.path().join("broken.csv"),
        "timestamp,device_id,rpm\n2026-01-01T00:00:00Z,A,1\n2026-01-01T00:00:00Z,A,2\n",
    )
    .unwrap();
    itap(&dir)
        .args(["train", "--input", "broken.csv"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refused"));
    itap(&dir)
        .args(["run", "--input", "broken.csv"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refused"));
    assert!(!dir.path().join("artifacts/model.json").exists());

    itap(&dir).arg("generate").args(FLEET).assert().success();
    itap(&dir)
        .args([
            "train",
            "--input",
            "data/raw/telemetry.csv",
            "--train-until",
            "2030-01-01T00:00:00Z",
        ])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("2030-01-01").and(predicate::str::contains(
                "(in itap: --train-fraction, --train-until",
            )),
        );
    itap(&dir)
        .args([
            "train",
            "--input",
            "data/raw/telemetry.csv",
            "--detector",
            "svm",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("svm"));
    itap(&dir)
        .args([
            "score",
            "--input",
            "data/raw/telemetry.csv",
            "--model",
            "nope.json",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.json").and(predicate::str::contains("itap train")));
    assert!(!dir.path().join("artifacts/model.json").exists());
}

#[test]
fn a_users_csv_with_its_own_column_names_runs_when_they_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // Two machines, their own signal names, a device column the reader does not
    // guess ("rig"), a 0/1 label; rig B overheats late in the span.
    let mut csv = String::from("time,rig,pressure_bar,oil_temp_c,label\n");
    for i in 0..720u32 {
        for m in ["A", "B"] {
            let faulty = m == "B" && (600..660).contains(&i);
            let wobble = f64::from((i * 7919 + u32::from(m == "B") * 31) % 100) / 100.0;
            let temp = 60.0 + wobble + if faulty { 8.0 } else { 0.0 };
            csv.push_str(&format!(
                "2026-02-01T{:02}:{:02}:{:02}Z,{m},{:.3},{temp:.3},{}\n",
                i / 360,
                (i / 6) % 60,
                (i % 6) * 10,
                5.0 + wobble * 0.1,
                u8::from(faulty)
            ));
        }
    }
    fs::write(dir.path().join("plant.csv"), csv).unwrap();

    // Without naming the device column, the two machines look like one device with
    // repeated timestamps: refused, with a pointer to `itap inspect`.
    itap(&dir)
        .args([
            "run",
            "--input",
            "plant.csv",
            "--db",
            "sqlite://data/plant.db",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("itap inspect"));
    itap(&dir)
        .args([
            "run",
            "--input",
            "plant.csv",
            "--device-column",
            "rig",
            "--db",
            "sqlite://data/plant.db",
            "--out",
            "plant",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("inserted 1440"));
    let metrics = json(&dir.path().join("plant/metrics.json"));
    let ev = &metrics["evaluation"];
    assert_eq!(ev["labelled"], true);
    assert!(ev["roc_auc"].as_f64().unwrap() > 0.9, "{}", ev["roc_auc"]);
    let model = json(&dir.path().join("plant/model.json"));
    let names: Vec<&str> = model["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(names.contains(&"oil_temp_c__chart_ewma__45s"), "{names:?}");

    // The column flags only make sense with --input.
    itap(&dir)
        .args(["train", "--device-column", "rig"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--input"));
}
