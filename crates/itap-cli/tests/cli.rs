//! The `itap` binary, run in a temporary directory.

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

#[test]
fn generate_writes_the_default_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args(["generate", "--devices", "3", "--hours", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("wrote 1080 rows")
                .and(predicate::str::contains("data/raw/telemetry.csv")),
        );
    let text = fs::read_to_string(dir.path().join("data/raw/telemetry.csv")).unwrap();
    assert_eq!(text.lines().count(), 1081);
    assert!(text.starts_with(
        "timestamp,device_id,state,rpm,temp_c,vibration_g,current_a,voltage_v,error_code,anomaly_tag\n"
    ));
}

#[test]
fn generate_is_deterministic_and_seeded() {
    let dir = tempfile::tempdir().unwrap();
    for (name, seed) in [("a.csv", "7"), ("b.csv", "7"), ("c.csv", "8")] {
        itap(&dir)
            .args([
                "generate",
                "-q",
                "--devices",
                "4",
                "--hours",
                "0.5",
                "--seed",
                seed,
                "--out",
                name,
            ])
            .assert()
            .success()
            .stdout("");
    }
    let read = |n: &str| fs::read(dir.path().join(n)).unwrap();
    assert_eq!(read("a.csv"), read("b.csv"));
    assert_ne!(read("a.csv"), read("c.csv"));
}

#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("c.toml"),
        "[telemetry]\ndevices = 2\nhours = 1.0\nfreq_seconds = 60\n[output]\ntelemetry_csv = \"out/x.csv\"\n",
    )
    .unwrap();
    itap(&dir)
        .args(["generate", "--config", "c.toml"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("wrote 120 rows").and(predicate::str::contains("out/x.csv")),
        );
    itap(&dir)
        .args(["generate", "--config", "c.toml", "--devices", "5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("wrote 300 rows"));
}

#[test]
fn unknown_config_keys_and_bad_values_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("c.toml"), "[telemetry]\ndevicez = 2\n").unwrap();
    itap(&dir)
        .args(["generate", "--config", "c.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("devicez").and(predicate::str::contains("c.toml")));
    itap(&dir)
        .args(["generate", "--hours=-3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("telemetry.hours"));
    itap(&dir)
        .args(["generate", "--config", "missing.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.toml"));
    itap(&dir).args(["generate", "--nope"]).assert().code(2);
    assert!(
        !dir.path().join("data").exists(),
        "nothing written on error"
    );
}

#[test]
fn an_unwritable_output_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
    itap(&dir)
        .args([
            "generate",
            "--devices",
            "1",
            "--hours",
            "0.1",
            "--out",
            "blocker/x.csv",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("blocker"));
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["generate", "--help"],
        vec!["inspect", "--help"],
    ] {
        itap(&dir)
            .args(&args)
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: itap"));
    }
    itap(&dir)
        .args(["generate", "--help"])
        .assert()
        .stdout(predicate::str::contains("--devices").and(predicate::str::contains("default 25")));
}

#[test]
fn inspect_reads_a_users_own_csv() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("press.csv"),
        "when,line,pressure_bar,operator\n2026-03-01 08:00:00,L1,5.5,ann\n2026-03-01 08:00:05,L1,,ann\n",
    )
    .unwrap();
    let out = itap(&dir)
        .args([
            "inspect",
            "press.csv",
            "--timestamp-column",
            "when",
            "--device-column",
            "line",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["rows"], 2);
    assert_eq!(v["signals"][0]["name"], "pressure_bar");
    assert_eq!(v["signals"][0]["missing"], 1);
    assert_eq!(v["ignored_columns"][0], "operator");
    assert_eq!(v["first"], "2026-03-01T08:00:00Z");
    itap(&dir)
        .args(["inspect", "press.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no timestamp column found"));
}

#[test]
fn inspect_reports_a_bad_field_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bad.csv"),
        "timestamp,device_id,x\n2026-01-01T00:00:00Z,A,1\n2026-01-01T00:00:10Z,A,1\n2026-01-01T00:00:20Z,A,oops\n",
    )
    .unwrap();
    itap(&dir)
        .args(["inspect", "bad.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.csv:4: column `x`: cannot read \"oops\" as a number",
        ));
}
