//! `itap ingest` and `itap db` end to end: idempotence, refusal of bad files,
//! kill-and-rerun, concurrent ingests — on SQLite always and on PostgreSQL when
//! `ITAP_TEST_POSTGRES_URL` is set.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

/// Database flags per backend for one test: SQLite in the temp folder, and
/// PostgreSQL in schema `itap_cli_<name>` (dropped first) when configured.
fn databases(name: &str) -> Vec<Vec<String>> {
    let mut out = vec![vec!["--db".to_owned(), "sqlite://db/itap.db".to_owned()]];
    match std::env::var("ITAP_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("itap_cli_{name}");
            drop_schema(&url, &schema);
            out.push(vec!["--db".into(), url, "--pg-schema".into(), schema]);
        }
        _ => eprintln!("{name}: PostgreSQL part skipped: ITAP_TEST_POSTGRES_URL is not set"),
    }
    out
}

/// Drops a PostgreSQL schema, so a test starts from nothing whatever a server holds.
fn drop_schema(url: &str, schema: &str) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        });
}

fn generate(dir: &tempfile::TempDir, devices: &str, hours: &str, out: &str) {
    itap(dir)
        .args([
            "generate",
            "-q",
            "--devices",
            devices,
            "--hours",
            hours,
            "--out",
            out,
        ])
        .assert()
        .success();
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.assert().get_output().stdout.clone();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

#[test]
fn ingest_twice_inserts_once() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir, "3", "1", "t.csv");
    for db in databases("twice") {
        let first = json(itap(&dir).args(["ingest", "t.csv", "--json"]).args(&db));
        assert_eq!(first["read"], 1080);
        assert_eq!(first["inserted"], 1080);
        let again = json(itap(&dir).args(["ingest", "t.csv", "--json"]).args(&db));
        assert_eq!(again["inserted"], 0);
        assert_eq!(again["duplicates"], 1080);
        let stats = json(itap(&dir).args(["db", "stats", "--json"]).args(&db));
        assert_eq!(stats["rows"], 1080);
        assert_eq!(stats["rows_per_device"].as_array().unwrap().len(), 3);
        let ledger = json(itap(&dir).args(["db", "ledger", "--json"]).args(&db));
        assert_eq!(ledger.as_array().unwrap().len(), 2);
        assert_eq!(ledger[0]["status"], "completed");
    }
    assert!(
        dir.path().join("db/itap.db").exists(),
        "the folder was created"
    );
}

#[test]
fn a_file_with_errors_stores_nothing_unless_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("bad.csv"),
        "timestamp,device_id,rpm\n\
         2026-01-01T00:00:00Z,A,1800\n\
         2026-01-01T00:00:10Z,A,oops\n\
         2026-01-01T00:00:20Z,A,1790\n",
    )
    .unwrap();
    for db in databases("refuse") {
        itap(&dir)
            .args(["ingest", "bad.csv"])
            .args(&db)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("nothing was stored"));
        itap(&dir)
            .args(["db", "stats"])
            .args(&db)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("does not exist"));
        let q = json(
            itap(&dir)
                .args([
                    "ingest",
                    "bad.csv",
                    "--quarantine",
                    "q/bad_rows.csv",
                    "--json",
                ])
                .args(&db),
        );
        assert_eq!(q["inserted"], 2);
        assert_eq!(q["rejected"], 1);
        let quarantined = fs::read_to_string(dir.path().join("q/bad_rows.csv")).unwrap();
        assert!(quarantined.contains("oops"), "{quarantined}");
    }
}

#[test]
fn a_killed_ingest_reruns_to_exactly_one_clean_copy() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir, "20", "12", "big.csv"); // 86,400 rows
    for db in databases("killed") {
        // Start an ingest in small transactions and kill it once rows are committed.
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("itap"))
            .current_dir(dir.path())
            .args(["ingest", "big.csv", "-q", "--chunk-rows", "2000"])
            .args(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut killed_at = None;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // finished before we could kill it: the check below says so
            }
            let out = itap(&dir)
                .args(["db", "ledger", "--json"])
                .args(&db)
                .output()
                .unwrap();
            if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
                && let Some(n) = v[0]["counts"]["inserted"].as_u64()
                && n > 0
            {
                child.kill().unwrap(); // SIGKILL on Unix: no chance to clean up
                killed_at = Some(n);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().unwrap();
        let killed_at = killed_at.expect("the ingest was killed part-way");
        assert!(killed_at < 86_400, "killed part-way, at {killed_at} rows");
        let stats = json(itap(&dir).args(["db", "stats", "--json"]).args(&db));
        let partial = stats["rows"].as_u64().unwrap();
        assert!(
            partial < 86_400 && partial.is_multiple_of(2000),
            "whole chunks only: {partial}"
        );

        let rerun = json(itap(&dir).args(["ingest", "big.csv", "--json"]).args(&db));
        assert_eq!(rerun["inserted"].as_u64().unwrap() + partial, 86_400);
        assert_eq!(rerun["duplicates"].as_u64().unwrap(), partial);
        let stats = json(itap(&dir).args(["db", "stats", "--json"]).args(&db));
        assert_eq!(stats["rows"], 86_400);
        assert!(
            stats["rows_per_device"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d[1] == 4320)
        );
        let ledger = json(itap(&dir).args(["db", "ledger", "--json"]).args(&db));
        assert_eq!(ledger[0]["status"], "completed");
        assert_eq!(ledger[1]["status"], "interrupted", "{ledger}");
        assert_eq!(ledger[1]["finished_us"], Value::Null);
    }
}

#[test]
fn two_concurrent_ingests_store_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir, "10", "6", "c.csv"); // 21,600 rows
    for db in databases("concurrent") {
        let spawn = || {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("itap"))
                .current_dir(dir.path())
                .args(["ingest", "c.csv", "--json", "--chunk-rows", "3000"])
                .args(&db)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        let (ja, jb): (Value, Value) = (
            serde_json::from_slice(&a.stdout).unwrap(),
            serde_json::from_slice(&b.stdout).unwrap(),
        );
        let inserted = ja["inserted"].as_u64().unwrap() + jb["inserted"].as_u64().unwrap();
        assert_eq!(inserted, 21_600);
        let stats = json(itap(&dir).args(["db", "stats", "--json"]).args(&db));
        assert_eq!(stats["rows"], 21_600);
    }
}

#[test]
fn a_file_with_other_signals_is_refused_by_column_name() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir, "2", "0.5", "t.csv");
    fs::write(
        dir.path().join("press.csv"),
        "timestamp,device_id,pressure_bar\n2026-01-01T00:00:00Z,P1,5.5\n",
    )
    .unwrap();
    for db in databases("schema") {
        itap(&dir)
            .args(["ingest", "t.csv", "-q"])
            .args(&db)
            .assert()
            .success();
        itap(&dir)
            .args(["ingest", "press.csv"])
            .args(&db)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("pressure_bar")
                    .and(predicate::str::contains("missing rpm")),
            );
        itap(&dir)
            .args(["ingest", "press.csv", "--dataset", "press", "-q"])
            .args(&db)
            .assert()
            .success();
    }
}

#[test]
fn bad_database_urls_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir, "1", "0.1", "t.csv");
    itap(&dir)
        .args(["ingest", "t.csv", "--db", "mysql://x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("sqlite://"));
    itap(&dir)
        .args(["ingest", "t.csv", "--dataset", "Bad-Name"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Bad-Name"));
}
