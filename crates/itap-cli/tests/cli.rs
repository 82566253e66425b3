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
        vec!["validate", "--help"],
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
        .stderr(
            predicate::str::contains("no timestamp column found")
                .and(predicate::str::contains("(in itap: --timestamp-column")),
        );
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

const BAD_CSV: &str = "timestamp,device_id,rpm,temp_c\n\
                       2026-01-01T00:00:00Z,A,1500,50.0\n\
                       2026-01-01T00:00:10Z,A,1501,200.0\n\
                       2026-01-01T00:00:20Z,A,oops,50.2\n\
                       2026-01-01T00:00:30Z,A,1503,50.3\n";

fn report_json(dir: &tempfile::TempDir, name: &str) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
}

#[test]
fn validate_accepts_generated_telemetry_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args(["generate", "-q", "--devices", "3", "--hours", "1"])
        .assert()
        .success();
    itap(&dir)
        .args([
            "validate",
            "data/raw/telemetry.csv",
            "--report",
            "artifacts/validation.json",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("data/raw/telemetry.csv: 1,080 rows, 3 devices")
                .and(predicate::str::contains("verdict     VALID"))
                .and(predicate::str::contains(
                    "1,080 of 1,080 rows may be stored",
                ))
                .and(predicate::str::contains(
                    "report      artifacts/validation.json",
                )),
        );
    let r = report_json(&dir, "artifacts/validation.json");
    assert_eq!(r["format_version"], 1);
    assert_eq!(r["rows"], 1080);
    assert_eq!(r["input"]["path"], "data/raw/telemetry.csv");
    assert_eq!(r["input"]["sha256"].as_str().unwrap().len(), 64);
    assert!(
        ["valid", "valid_with_warnings"].contains(&r["verdict"].as_str().unwrap()),
        "{}",
        r["verdict"]
    );
    // The declared ranges of [signals] are what the range check uses.
    assert_eq!(r["schema"]["signals"][1]["name"], "temp_c");
    assert_eq!(r["schema"]["signals"][1]["max"], 150.0);
}

#[test]
fn validate_exits_1_on_error_findings_and_quarantines_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.csv"), BAD_CSV).unwrap();
    itap(&dir)
        .args([
            "validate",
            "bad.csv",
            "--quarantine",
            "q/bad_rows.csv",
            "--report",
            "r.json",
        ])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("REJECTED")
                .and(predicate::str::contains("schema.type"))
                .and(predicate::str::contains("line 4 \"oops\" not a number"))
                .and(predicate::str::contains("range.out_of_range"))
                .and(predicate::str::contains("0 of 4 rows may be stored"))
                .and(predicate::str::contains(
                    "quarantine  q/bad_rows.csv (2 rows)",
                )),
        );
    let q = fs::read_to_string(dir.path().join("q/bad_rows.csv")).unwrap();
    let lines: Vec<_> = q.lines().collect();
    assert_eq!(
        lines[0],
        "quarantine_reasons,timestamp,device_id,rpm,temp_c"
    );
    assert!(
        lines[1].contains("line 3: range.out_of_range: temp_c = 200"),
        "{q}"
    );
    assert!(
        lines[2].starts_with("line 4: schema.type: rpm = oops: not a number,"),
        "{q}"
    );
    assert_eq!(lines.len(), 3);
    let r = report_json(&dir, "r.json");
    assert_eq!(r["verdict"], "rejected");
    assert_eq!(r["rows_with_errors"], 2);

    // Under the quarantine policy the good rows may be stored; the errors remain.
    itap(&dir)
        .args(["validate", "bad.csv", "--policy", "quarantine", "--json"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("\"verdict\": \"quarantined\""));
}

#[test]
fn validate_json_prints_only_the_report() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bad.csv"), BAD_CSV).unwrap();
    let out = itap(&dir)
        .args(["validate", "bad.csv", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["rows"], 4);
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "schema.type")
        .unwrap();
    assert_eq!(f["examples"][0]["line"], 4);
    assert_eq!(f["examples"][0]["column"], "rpm");
    assert_eq!(f["examples"][0]["value"], "oops");
}

#[test]
fn validate_config_sets_severities_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("ok.csv"),
        "timestamp,device_id,rpm,temp_c\n2026-01-01T00:00:00Z,A,1500,200.0\n2026-01-01T00:00:10Z,A,1501,50.0\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("c.toml"),
        "[validation.severity]\n\"range.out_of_range\" = \"warning\"\n",
    )
    .unwrap();
    itap(&dir)
        .args(["validate", "ok.csv", "--config", "c.toml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("VALID WITH WARNINGS"));
    itap(&dir).args(["validate", "ok.csv"]).assert().code(1);
}

#[test]
fn validate_usage_and_io_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args(["validate", "missing.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "error: cannot validate missing.csv",
        ));
    fs::write(dir.path().join("bad.csv"), BAD_CSV).unwrap();
    itap(&dir)
        .args(["validate", "bad.csv", "--policy", "keep"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("keep"));
    fs::write(
        dir.path().join("c.toml"),
        "[validation]\ngap_factor = 0.5\n",
    )
    .unwrap();
    itap(&dir)
        .args(["validate", "bad.csv", "--config", "c.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("validation.gap_factor"));
    fs::write(dir.path().join("blocker"), "a file").unwrap();
    itap(&dir)
        .args(["validate", "bad.csv", "--report", "blocker/r.json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("blocker"));
    itap(&dir).args(["validate"]).assert().code(2);
}

/// A file lacking a declared signal is refused naming the column; an undeclared
/// extra column is only a warning; with nothing declared, the header decides.
#[test]
fn declared_signals_are_required_and_undeclared_ones_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("no_voltage.csv"),
        "timestamp,device_id,temp_c,rpm\n\
         2026-01-01T00:00:00Z,d1,50.0,1500\n\
         2026-01-01T00:00:10Z,d1,50.5,1501\n",
    )
    .unwrap();
    itap(&dir)
        .args(["validate", "no_voltage.csv"])
        .assert()
        .success();
    itap(&dir)
        .args([
            "validate",
            "no_voltage.csv",
            "--signals",
            "temp_c,voltage_v",
        ])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("schema.missing_signal")
                .and(predicate::str::contains("voltage_v"))
                .and(predicate::str::contains("schema.undeclared_column"))
                .and(predicate::str::contains("rpm")),
        );
    // Declared in the config file: the ingest is refused and stores nothing.
    fs::write(
        dir.path().join("c.toml"),
        "[signals.temp_c]\nmax = 150\n[signals.voltage_v]\nmax = 40\n",
    )
    .unwrap();
    itap(&dir)
        .args([
            "ingest",
            "no_voltage.csv",
            "-c",
            "c.toml",
            "--db",
            "sqlite://d.db",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("voltage_v"));
    assert!(!dir.path().join("d.db").exists(), "nothing stored");
    // Only an undeclared extra column: stored, with a warning.
    itap(&dir)
        .args([
            "ingest",
            "no_voltage.csv",
            "--signals",
            "temp_c",
            "--db",
            "sqlite://d.db",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("inserted 2"));
}
