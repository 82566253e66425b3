//! `itap serve` as a process: killed with SIGKILL while a replay runs and started
//! again, it ends with every row stored once and every score equal to batch
//! scoring's; SIGTERM stops it cleanly with its counts.
//!
//! Runs when `ITAP_TEST_MQTT_URL` is set (MQTT tests wanted) and `mosquitto` is
//! installed: it starts its own broker on a free port with no queue limit
//! (Mosquitto's default keeps 1,000 messages per offline client and drops the
//! rest, which a restart test must not depend on).

use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

mod common;

use common::{Guard, broker, itap, on_sqlite};

fn serve(dir: &Path, port: u16) -> Child {
    Process::new(cargo_bin("itap"))
        .current_dir(dir)
        .args([
            "serve",
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}"),
            "--model",
            "model.json",
            "--db",
            "sqlite://live.db",
            "--client-id",
            "kill-test",
            "--batch-rows",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Rows in `table` of live.db, 0 while it does not exist.
fn count(dir: &Path, sql: &str) -> u64 {
    let db = dir.join("live.db");
    if !db.exists() {
        return 0;
    }
    on_sqlite(&db, async |pool| {
        let n: Result<i64, _> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(pool)
            .await;
        n.map_or(0, |n| n as u64)
    })
}

#[test]
fn killed_and_restarted_the_server_ends_with_every_row_stored_and_scored_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((_broker, port)) = broker(d) else {
        return;
    };
    itap(d)
        .args([
            "generate",
            "--devices",
            "4",
            "--hours",
            "3",
            "--out",
            "t.csv",
            "-q",
        ])
        .assert()
        .success();
    itap(d)
        .args(["train", "--input", "t.csv", "--model", "model.json", "-q"])
        .assert()
        .success();
    itap(d)
        .args([
            "score",
            "--input",
            "t.csv",
            "--model",
            "model.json",
            "--out",
            "batch",
            "-q",
        ])
        .assert()
        .success();
    let n = 4 * 3 * 360;

    let first = Guard(serve(d, port));
    std::thread::sleep(Duration::from_millis(500));
    let mut replay = Process::new(cargo_bin("itap"))
        .current_dir(d)
        .args([
            "replay",
            "t.csv",
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}"),
            "--rate",
            "2000",
            "-q",
        ])
        .spawn()
        .unwrap();
    // Kill once some rows are in, while the replay goes on.
    let t0 = Instant::now();
    while count(d, "SELECT COUNT(*) FROM itap_scores") < 1000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "serve stores nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first); // SIGKILL
    let killed_at = count(d, "SELECT COUNT(*) FROM itap_scores");
    assert!(killed_at < n, "killed before the end ({killed_at} of {n})");
    std::thread::sleep(Duration::from_millis(300));
    let second = serve(d, port);
    assert!(replay.wait().unwrap().success());
    let t0 = Instant::now();
    while count(d, "SELECT COUNT(*) FROM itap_scores") < n {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "rows missing after the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: a clean stop that prints the counts.
    let pid = second.id().to_string();
    Process::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = second.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped:"));

    assert_eq!(count(d, "SELECT COUNT(*) FROM telemetry"), n);
    assert_eq!(count(d, "SELECT COUNT(*) FROM itap_scores"), n);
    // Scores equal batch scoring's, row for row.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let live: Vec<(String, i64, f64, bool)> = rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", d.join("live.db").display()))
            .await
            .unwrap();
        sqlx::query_as("SELECT device, ts, score, flagged FROM itap_scores ORDER BY device, ts")
            .fetch_all(&pool)
            .await
            .unwrap()
    });
    let mut batch: Vec<(String, String, f64, bool)> =
        csv::Reader::from_path(d.join("batch/scores.csv"))
            .unwrap()
            .records()
            .map(|r| {
                let r = r.unwrap();
                (
                    r[1].to_owned(),
                    r[0].to_owned(),
                    r[3].parse().unwrap(),
                    &r[4] == "1",
                )
            })
            .collect();
    batch.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(live.len(), batch.len());
    for (l, b) in live.iter().zip(&batch) {
        assert_eq!(l.0, b.0);
        assert!(
            (l.2 - b.2).abs() <= 1e-9 * b.2.abs().max(1.0),
            "{l:?} vs {b:?}"
        );
        assert_eq!(l.3, b.3, "{l:?} vs {b:?}");
    }
}
