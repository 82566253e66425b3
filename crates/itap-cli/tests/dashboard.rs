//! The operator's view as an operator meets it: `itap serve --http` beside a
//! live worker, a replay of a file with faults, and the dashboard opened in
//! Debian's Chromium (headless, driven by playwright-core): the test waits for a
//! Temperature alert to appear (the page must not move as data arrives:
//! cumulative layout shift at most 0.02), opens it, checks the explanation names
//! the family, and saves a screenshot.
//!
//! Runs when `ITAP_TEST_MQTT_URL` and `ITAP_TEST_CHROMIUM` (the browser's path)
//! are set and the driver's node modules are installed (`.ci/run` does all
//! three); it says why it skipped otherwise. Set `ITAP_UPDATE_SCREENSHOT=1` to
//! also write the screenshot to docs/dashboard.png.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

mod common;

use common::{Guard, broker, free_port, itap, on_sqlite, wait_for_port};

/// One `GET` over HTTP/1.1: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // The server answers with chunked encoding for streamed bodies; ours are
    // whole, with a Content-Length.
    (status, body.to_owned())
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The browser driver's folder, when it can run.
fn driver() -> Option<(PathBuf, String)> {
    let Some(chromium) = std::env::var("ITAP_TEST_CHROMIUM")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: ITAP_TEST_CHROMIUM is not set (.ci/run sets it once Chromium is installed)"
        );
        return None;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../itap-live/tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        eprintln!(
            "skipped: playwright-core is not installed (npm ci in {})",
            dir.display()
        );
        return None;
    }
    Some((dir, chromium))
}

/// Whether the file `csv` tags `device` with `tag` at some time in `[from, to]`.
fn tagged(csv: &Path, device: &str, tag: &str, from: &str, to: &str) -> bool {
    let mut r = csv::Reader::from_path(csv).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (ts, dev, t) = (col("timestamp"), col("device_id"), col("anomaly_tag"));
    // RFC 3339 in UTC with Z, as both sides write it: text order is time order.
    let from = from.trim_end_matches('Z');
    let to = to.trim_end_matches('Z');
    r.records().map(Result::unwrap).any(|rec| {
        let at = rec[ts].trim_end_matches('Z');
        &rec[dev] == device && &rec[t] == tag && at >= from && at <= to
    })
}

/// The messages serve refused (reason, detail, topic, payload), for a failure's
/// message.
fn rejects(dir: &Path) -> String {
    on_sqlite(&dir.join("live.db"), async |pool| {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT reason, detail, topic, payload FROM itap_rejects ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap_or_default();
        format!("{rows:?}")
    })
}

#[test]
fn the_dashboard_shows_a_live_alert_and_its_explanation_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some((driver_dir, chromium)) = driver() else {
        return;
    };
    let Some((_broker, port)) = broker(d) else {
        return;
    };
    itap(d)
        .args([
            "generate",
            "--devices",
            "4",
            "--hours",
            "8",
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
    let n: u64 = 4 * 8 * 360;
    let http = free_port();
    let serve = Guard(
        Process::new(cargo_bin("itap"))
            .current_dir(d)
            .args([
                "serve",
                "--mqtt",
                &format!("mqtt://127.0.0.1:{port}"),
                "--model",
                "model.json",
                "--db",
                "sqlite://live.db",
                "--http",
                &format!("127.0.0.1:{http}"),
                "-q",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for_port(http);
    let health = get_json(http, "/api/health");
    assert_eq!(health["mode"], "live");
    assert_eq!(health["scored"], 0);

    // The browser opens the page first and waits for the alert to arrive.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = Process::new("node")
        .current_dir(&driver_dir)
        .args([
            "dashboard.mjs",
            "--url",
            &format!("http://127.0.0.1:{http}/"),
            "--family",
            "Temperature",
            "--screenshot",
            shot.to_str().unwrap(),
            "--chromium",
            &chromium,
            "--timeout-ms",
            "120000",
            // The page keeps its place as data arrives (0.1 is "good" for
            // Chromium's cumulative layout shift; this page measures 0.002).
            "--max-layout-shift",
            "0.02",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The data starts once the page is up: the driver says so on stderr (and
    // whatever else it says there is passed on).
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let driver_err = browser.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(driver_err).lines().map_while(Result::ok) {
            if line == "page ready" {
                let _ = ready_tx.send(());
            } else {
                eprintln!("driver: {line}");
            }
        }
    });
    // If the driver fails before, its result says why (below).
    let _ = ready.recv_timeout(Duration::from_secs(60));
    itap(d)
        .args([
            "replay",
            "t.csv",
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}"),
            "--rate",
            "3000",
            "-q",
        ])
        .assert()
        .success();
    let out = browser.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let result: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("the driver printed no result ({e}): {line}"));
    assert!(out.status.success() && result["ok"] == true, "{result}");
    eprintln!(
        "dashboard: first contentful paint {} ms; layout shift while data arrived {}; alert {}",
        result["first_contentful_paint_ms"], result["layout_shift"], result["alert_id"]
    );

    // The alert the browser opened is a Temperature alert over an overheat
    // fault of the file, and its explanation leads with Temperature.
    let id = result["alert_id"].as_str().unwrap();
    let enc: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let alert = get_json(http, &format!("/api/alerts/{enc}"));
    assert_eq!(alert["family"], "Temperature", "{alert}");
    assert_eq!(
        alert["explanation"]["families"][0]["name"], "Temperature",
        "{alert}"
    );
    assert!(
        alert["explanation"]["signals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "temp_c"),
        "{alert}"
    );
    let (device, start, end) = (
        alert["device"].as_str().unwrap(),
        alert["start"].as_str().unwrap(),
        alert["end"].as_str().unwrap(),
    );
    assert!(
        tagged(&d.join("t.csv"), device, "overheat_drift", start, end),
        "{device} {start}..{end} is not over an overheat_drift fault"
    );

    // Everything arrived and the health endpoint says so.
    let t0 = Instant::now();
    loop {
        let h = get_json(http, "/api/health");
        assert_eq!(h["rejected"], 0, "refused: {}", rejects(d));
        if h["scored"].as_u64() == Some(n) {
            assert_eq!(h["stored"].as_u64(), Some(n));
            assert_eq!(h["rejected"], 0);
            assert_eq!(h["devices"].as_array().unwrap().len(), 4);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    if std::env::var("ITAP_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::write(docs, &png).unwrap();
    }
    drop(serve);
}

/// `itap serve --artifacts`: the same API over a batch run's folder and
/// database, no broker; a folder that is not a run's is refused by name.
#[test]
fn a_batch_run_is_served_from_its_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    itap(d)
        .args([
            "run",
            "--devices",
            "3",
            "--hours",
            "4",
            "--out",
            "art",
            "--db",
            "sqlite://run.db",
            "-q",
        ])
        .assert()
        .success();
    let http = free_port();
    let _serve = Guard(
        Process::new(cargo_bin("itap"))
            .current_dir(d)
            .args([
                "serve",
                "--artifacts",
                "art",
                "--db",
                "sqlite://run.db",
                "--http",
                &format!("127.0.0.1:{http}"),
                "-q",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for_port(http);
    let rows = 3 * 4 * 360;
    let h = get_json(http, "/api/health");
    assert_eq!(h["mode"], "artifacts");
    assert_eq!(h["scored"], rows);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("art/alerts.json")).unwrap()).unwrap();
    let want = file["alerts"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(h["threshold"], file["threshold"]["value"]);
    let got = get_json(http, "/api/alerts?limit=1000");
    let got = got["alerts"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    // Newest first: the file's last alert comes first.
    assert_eq!(got[0]["id"], want[want.len() - 1]["id"]);
    let devices = get_json(http, "/api/devices");
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert!(devices.iter().all(|v| v["rows"] == 4 * 360));
    let id = devices[0]["device"].as_str().unwrap();
    let scores = get_json(http, &format!("/api/devices/{id}/scores?limit=10000"));
    assert_eq!(scores["scores"].as_array().unwrap().len(), 4 * 360);
    // The rows come from the run's database.
    let readings = get_json(http, &format!("/api/devices/{id}/readings?limit=5"));
    assert_eq!(readings["readings"].as_array().unwrap().len(), 5);
    let (status, page) = get(http, "/");
    assert_eq!(status, 200);
    assert!(page.contains("data-testid"));

    let out = itap(d)
        .args(["serve", "--artifacts", "nowhere", "--http", "127.0.0.1:0"])
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8_lossy(&out);
    assert!(
        err.contains("model.json") && err.contains("nowhere"),
        "{err}"
    );

    // A damaged file is named with the reader's own words (line, column).
    let broken = d.join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["model.json", "scores.csv"] {
        std::fs::copy(d.join("art").join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("alerts.json"), "{not json").unwrap();
    let refused = |dir: &str| {
        let out = itap(d)
            .args(["serve", "--artifacts", dir, "--http", "127.0.0.1:0"])
            .assert()
            .failure()
            .get_output()
            .stderr
            .clone();
        String::from_utf8_lossy(&out).into_owned()
    };
    let err = refused("broken");
    assert!(
        err.contains("alerts.json") && err.contains("line 1 column 2"),
        "{err}"
    );
    std::fs::copy(d.join("art/alerts.json"), broken.join("alerts.json")).unwrap();
    std::fs::write(broken.join("scores.csv"), "a,b\n1,2\n").unwrap();
    let err = refused("broken");
    assert!(
        err.contains("scores.csv") && err.contains("no column `timestamp`"),
        "{err}"
    );
}
