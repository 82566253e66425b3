//! `--policy reject|quarantine` on `itap run`, `itap train` and `itap score`, on a
//! file whose clock was set back (one device repeats an hour with other values).

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

/// testdata/repeated_hour.csv: 780 rows, DEV-A's 01:00–01:59 twice (60 conflicts).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/repeated_hour.csv")
}

/// Data lines of a CSV (header left out).
fn data_lines(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

#[test]
fn run_refuses_under_reject_and_suggests_the_quarantine_policy() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    itap(&dir)
        .arg("run")
        .arg("--input")
        .arg(&input)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("time.duplicate_conflict")
                .and(predicate::str::contains("--policy quarantine"))
                .and(predicate::str::contains("60 rows with errors")),
        );
    assert!(!dir.path().join("artifacts").exists(), "nothing written");
    assert!(!dir.path().join("data/itap.db").exists(), "nothing stored");
    itap(&dir)
        .arg("train")
        .arg("--input")
        .arg(&input)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--policy quarantine"));
    assert!(!dir.path().join("artifacts").exists(), "nothing written");
}

#[test]
fn run_under_quarantine_sets_the_repeated_rows_aside_and_stores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .arg("run")
        .arg("--input")
        .arg(fixture())
        .args(["--policy", "quarantine", "--out", "out", "--timings"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("60 set aside")
                .and(predicate::str::contains(
                    "set aside 60 rows with errors (quarantine policy) → out/quarantine.csv",
                ))
                .and(predicate::str::contains("inserted 720,"))
                .and(predicate::str::contains("\"rows_quarantined\":60")),
        );
    let q = data_lines(&dir.path().join("out/quarantine.csv"));
    assert_eq!(q.len(), 60);
    assert!(
        q.iter()
            .all(|l| l.starts_with("line ") && l.contains("time.duplicate_conflict")),
        "{q:?}"
    );
    assert!(q[0].ends_with(",2026-10-25T01:00:00,DEV-A,RUN,1504,56.547,0.2021"));
    // Scored: the 720 other rows, one per (device, time).
    let scores = data_lines(&dir.path().join("out/scores.csv"));
    assert_eq!(scores.len(), 720);
    let mut keys: Vec<(String, String)> = scores
        .iter()
        .map(|l| {
            let mut f = l.split(',');
            let ts = f.next().unwrap().to_owned();
            (f.next().unwrap().to_owned(), ts)
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 720);
    // Stored: the same 720 (a re-run stores none twice and sets the same aside).
    itap(&dir)
        .arg("run")
        .arg("--input")
        .arg(fixture())
        .args(["--policy", "quarantine", "--out", "out"])
        .assert()
        .success()
        .stdout(predicate::str::contains("inserted 0, duplicates 720"));
    assert_eq!(data_lines(&dir.path().join("out/quarantine.csv")).len(), 60);
}

#[test]
fn the_config_policy_applies_and_the_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("q.toml"),
        "[validation]\npolicy = \"quarantine\"\n",
    )
    .unwrap();
    itap(&dir)
        .args(["run", "--config", "q.toml", "--out", "out", "--input"])
        .arg(fixture())
        .assert()
        .success()
        .stdout(predicate::str::contains("set aside 60 rows"));
    assert_eq!(data_lines(&dir.path().join("out/quarantine.csv")).len(), 60);
    itap(&dir)
        .args([
            "train", "--config", "q.toml", "--policy", "reject", "--input",
        ])
        .arg(fixture())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("refused"));
}

#[test]
fn train_and_score_under_quarantine_write_the_set_aside_rows_next_to_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    itap(&dir)
        .arg("train")
        .arg("--input")
        .arg(&input)
        .args(["--policy", "quarantine", "--model", "m/model.json"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("(720 rows)").and(predicate::str::contains(
                "set aside      60 rows with errors (quarantine policy) → m/quarantine.csv",
            )),
        );
    assert_eq!(data_lines(&dir.path().join("m/quarantine.csv")).len(), 60);
    // --quarantine alone implies the policy; --json carries the count.
    let out = itap(&dir)
        .arg("train")
        .arg("--input")
        .arg(&input)
        .args(["--quarantine", "q/train.csv", "--model", "m/model.json"])
        .args(["--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["rows_quarantined"], 60);
    assert_eq!(data_lines(&dir.path().join("q/train.csv")).len(), 60);

    // Scoring the file refuses it under reject (the default), with the hint.
    itap(&dir)
        .arg("score")
        .arg("--input")
        .arg(&input)
        .args(["--model", "m/model.json", "--out", "s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--policy quarantine"));
    assert!(!dir.path().join("s").exists());
    itap(&dir)
        .arg("score")
        .arg("--input")
        .arg(&input)
        .args(["--policy", "quarantine", "--model", "m/model.json"])
        .args(["--out", "s"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("scored 720 rows")
                .and(predicate::str::contains("→ s/quarantine.csv")),
        );
    assert_eq!(data_lines(&dir.path().join("s/quarantine.csv")).len(), 60);
    assert_eq!(data_lines(&dir.path().join("s/scores.csv")).len(), 720);
}

#[test]
fn a_bad_policy_is_refused_naming_the_flag_or_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture();
    for cmd in ["run", "train", "score"] {
        itap(&dir)
            .arg(cmd)
            .arg("--input")
            .arg(&input)
            .args(["--policy", "skip"])
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("--policy")
                    .and(predicate::str::contains("\"skip\" is not a policy"))
                    .and(predicate::str::contains("quarantine")),
            );
    }
    fs::write(
        dir.path().join("bad.toml"),
        "[validation]\npolicy = \"skip\"\n",
    )
    .unwrap();
    itap(&dir)
        .args(["run", "--config", "bad.toml", "--input"])
        .arg(&input)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("bad.toml")
                .and(predicate::str::contains("policy = \"skip\""))
                .and(predicate::str::contains(
                    "expected `reject` or `quarantine`",
                )),
        );
    // --quarantine needs --input: rows from the database are already validated.
    itap(&dir)
        .args(["score", "--quarantine", "q.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--input"));
    assert!(!dir.path().join("artifacts").exists());
}
