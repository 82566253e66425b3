//! `itap features`, run in a temporary directory.

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

fn generate(dir: &tempfile::TempDir) {
    itap(dir)
        .args([
            "generate",
            "-q",
            "--devices",
            "3",
            "--hours",
            "1",
            "--out",
            "t.csv",
        ])
        .assert()
        .success();
}

#[test]
fn list_prints_the_default_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let out = itap(&dir).args(["features", "--list"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 84 + 1, "header, 84 features, summary");
    assert!(lines[0].starts_with("name"));
    assert!(text.contains("temp_c__z__5m"));
    assert!(text.contains("error_code__since_s"));
    assert!(
        lines[85].starts_with("84 features from 5 signals"),
        "{}",
        lines[70]
    );

    let out = itap(&dir)
        .args(["features", "--list", "--json"])
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["features"], 84);
    assert_eq!(json["catalogue"][0]["name"], "rpm__mean__5m");
    assert_eq!(json["catalogue"][0]["source"], "rpm");
}

#[test]
fn list_follows_the_input_s_signals_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("plant.csv"),
        "timestamp,machine,pressure_bar\n2026-01-01T00:00:00Z,p1,5.5\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("c.toml"),
        "[features]\nwindows = [\"30rows\", \"1h\"]\nkinds = [\"mean\", \"state_changes\"]\n",
    )
    .unwrap();
    itap(&dir)
        .args(["features", "--list", "plant.csv", "--config", "c.toml"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("pressure_bar__mean__30rows")
                .and(predicate::str::contains("pressure_bar__mean__1h"))
                .and(predicate::str::contains("state__changes__1h"))
                .and(predicate::str::contains("4 features from 1 signal "))
                .and(predicate::str::contains("rpm").not()),
        );
}

#[test]
fn computes_features_into_csv_and_parquet_and_reuses_a_saved_fit() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir);
    itap(&dir)
        .args([
            "features",
            "t.csv",
            "--out",
            "out/f.csv",
            "--save-fit",
            "fit.json",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("1,080 rows × 84 features")
                .and(predicate::str::contains(
                    "fitted on the first 70% of the time span",
                ))
                .and(predicate::str::contains("wrote out/f.csv")),
        );
    let text = fs::read_to_string(dir.path().join("out/f.csv")).unwrap();
    assert_eq!(text.lines().count(), 1 + 1080);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("timestamp,device_id,rpm__mean__5m,"),
        "{header}"
    );
    assert_eq!(header.split(',').count(), 86);

    // The saved fit gives the same features.
    itap(&dir)
        .args([
            "features", "t.csv", "--out", "g.csv", "--fit", "fit.json", "-q",
        ])
        .assert()
        .success()
        .stdout("");
    assert_eq!(fs::read(dir.path().join("g.csv")).unwrap(), text.as_bytes());

    itap(&dir)
        .args([
            "features",
            "t.csv",
            "--out",
            "f.parquet",
            "--train-fraction",
            "0.5",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("fitted on the first 50%"));
    let pq = fs::read(dir.path().join("f.parquet")).unwrap();
    assert_eq!(&pq[..4], b"PAR1");
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir);
    fs::write(dir.path().join("c.toml"), "[features]\nwindow = [\"5m\"]\n").unwrap();
    itap(&dir)
        .args(["features", "t.csv", "--out", "f.csv", "--config", "c.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("window"));
    itap(&dir)
        .args([
            "features",
            "t.csv",
            "--out",
            "f.csv",
            "--windows",
            "5 parsecs",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("features.windows"));
    itap(&dir)
        .args(["features", "t.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out"));
    assert!(!dir.path().join("f.csv").exists());
}
