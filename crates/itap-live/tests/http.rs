//! The HTTP API over a store with known alerts, scores and rows: every route of
//! the OpenAPI document answers with the fields it documents, bad parameters
//! get a 400 that names them, unknown ids a 404, ids never reach SQL as text,
//! pages join up, and /metrics is Prometheus text.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use itap::ParamGuard;
use itap::store::{AlertRecord, IngestSource, LiveCommit, OnConflict, ScoreRecord, Store};
use itap::telemetry::{BatchBuilder, Schema, State, format_timestamp};
use itap::validate::ValidationParams;
use itap_live::{Api, Mode, router};
use itap_live::{DeviceView, ServeStats};
use serde_json::Value;
use tower::ServiceExt;

const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const S: i64 = 1_000_000;
const ROWS: i64 = 120;

fn alert(id: &str, device: &str, start: i64, open: bool, severity: &str) -> AlertRecord {
    let detail = serde_json::json!({
        "families": [{"name": "Temperature", "share": 0.8}, {"name": "Vibration", "share": 0.2}],
        "top_features": [
            {"name": "temp_c__chart_ewma__45s", "share": 0.5},
            {"name": "error_code__streak", "share": 0.2},
            {"name": "vibration_g__resid", "share": 0.1}
        ],
        "labels": [],
        "fault": null,
        "open": open,
        "peak_tail_log10": 4.5,
    });
    AlertRecord {
        id: id.to_owned(),
        device: device.to_owned(),
        start_us: T0 + start * 10 * S,
        end_us: T0 + (start + 5) * 10 * S,
        peak_us: T0 + (start + 2) * 10 * S,
        rows: 6,
        peak_score: 9.0,
        mean_score: 6.0,
        severity: severity.to_owned(),
        family: "Temperature".to_owned(),
        route: "thermal".to_owned(),
        rule: "k_of_m 3/6".to_owned(),
        detail: detail.to_string(),
        model: "m".to_owned(),
    }
}

/// Two devices (one with a quote in its id), 120 rows each, three alerts.
async fn api() -> Arc<Api> {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let schema = Schema::default();
    let devices = ["DEV-A", "DEV-\"B'"];
    let mut b = BatchBuilder::new(schema.clone(), true, true, false);
    for i in 0..ROWS {
        for d in devices {
            let code = b.device_code(d);
            let mut values = [1500.0, 50.0 + i as f64 * 0.1, 0.5, 5.0, 24.0];
            if i == 7 {
                values[2] = f64::NAN; // a missing value reads back as null
            }
            b.push(T0 + i * 10 * S, code, &values, State::Run, 0, 0)
                .unwrap();
        }
    }
    let validation = ValidationParams::default().check().unwrap();
    let (_, valid) = itap::validate::validate_batch(b.finish(), &validation);
    let source = IngestSource {
        path: "test".into(),
        sha256: "test".into(),
    };
    let mut ingest = store
        .begin_ingest("plant", &schema, source.clone(), OnConflict::Keep)
        .await
        .unwrap();
    ingest.write(&valid.unwrap()).await.unwrap();
    ingest.finish(source, 0, 0).await.unwrap();
    let scores: Vec<ScoreRecord> = (0..ROWS)
        .flat_map(|i| {
            devices.map(|d| ScoreRecord {
                device: d.to_owned(),
                ts_us: T0 + i * 10 * S,
                score: (i % 10) as f64,
                flagged: i % 10 > 7,
                family: (i % 10 > 7).then(|| "Temperature".to_owned()),
            })
        })
        .collect();
    store
        .commit_live(
            "plant",
            &LiveCommit {
                scores: &scores,
                states: &[],
                alerts: &[],
                rejects: &[],
            },
        )
        .await
        .unwrap();
    store
        .put_alerts(
            "plant",
            &[
                alert("DEV-A@1", "DEV-A", 10, false, "warning"),
                alert("DEV-A@2", "DEV-A", 50, true, "critical"),
                alert("DEV-\"B'@1", "DEV-\"B'", 30, false, "info"),
            ],
        )
        .await
        .unwrap();
    let stats = Arc::new(ServeStats::default());
    for d in devices {
        stats.fleet.set(
            d,
            DeviceView {
                last_us: Some(T0 + (ROWS - 1) * 10 * S),
                state: Some("RUN".into()),
                last_score: Some(9.0),
                flagged: true,
                family: Some("Temperature".into()),
                rows: ROWS as u64,
                open_alerts: if d == "DEV-A" {
                    vec!["DEV-A@2".into()]
                } else {
                    vec![]
                },
                pending_alerts: vec![],
                closed_alerts: 1,
            },
        );
    }
    Arc::new(Api {
        mode: Mode::Live,
        dataset: "plant".into(),
        store: store.clone(),
        readings: Some(store),
        stats,
        threshold: 7.5,
        signals: schema.names().map(str::to_owned).collect(),
        started: Instant::now(),
    })
}

async fn call(api: &Arc<Api>, uri: &str) -> (StatusCode, String, String) {
    let res = router(api.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

async fn json(api: &Arc<Api>, uri: &str) -> Value {
    let (status, ctype, body) = call(api, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    assert!(ctype.starts_with("application/json"), "{uri}: {ctype}");
    serde_json::from_str(&body).unwrap()
}

async fn bad(api: &Arc<Api>, uri: &str, status: StatusCode, names: &str) {
    let (got, ctype, body) = call(api, uri).await;
    assert_eq!(got, status, "{uri}: {body}");
    assert!(ctype.starts_with("application/json"), "{uri}: {ctype}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(names),
        "{uri}: {msg:?} does not name {names:?}"
    );
    assert!(v["error"].is_string());
}

/// Checks `v` against the document's schema `s`: required properties present,
/// types as declared, recursively (enough of JSON Schema for our document).
fn conforms(doc: &Value, s: &Value, v: &Value, at: &str) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for part in all {
            conforms(doc, part, v, at);
        }
        return;
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        assert!(ok, "{at}: {v} is not {types:?}");
    }
    if v.is_null() {
        return; // allowed by the type check above
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        assert!(v.is_null() || e.contains(v), "{at}: {v} not in {e:?}");
    }
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = r.as_str().unwrap();
        assert!(v.get(k).is_some(), "{at}: no `{k}` in {v}");
    }
    if let (Some(props), Some(obj)) = (s.get("properties"), v.as_object()) {
        for (k, ps) in props.as_object().unwrap() {
            if let Some(x) = obj.get(k) {
                conforms(doc, ps, x, &format!("{at}.{k}"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"));
        }
    }
}

#[tokio::test]
async fn every_documented_route_answers_with_its_documented_shape() {
    let api = api().await;
    // Some lag recorded, so that its object is checked too.
    api.stats.lag.record([4_000]);
    let doc = json(&api, "/api/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{}", paths.len());
    for (path, item) in paths {
        let uri = path.replace(
            "{id}",
            match path.as_str() {
                p if p.starts_with("/api/alerts/") => "DEV-A%402",
                _ => "DEV-A",
            },
        );
        let ok = &item["get"]["responses"]["200"]["content"];
        let (status, ctype, body) = call(&api, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        if let Some(schema) = ok.get("application/json").map(|c| &c["schema"]) {
            assert!(ctype.starts_with("application/json"), "{uri}");
            let v: Value = serde_json::from_str(&body).unwrap();
            conforms(&doc, schema, &v, &uri);
        } else if ok.get("text/html").is_some() {
            assert!(ctype.starts_with("text/html"), "{uri}");
            assert!(
                body.contains("<html") || body.contains("<!doctype"),
                "{uri}"
            );
        } else {
            assert!(ctype.starts_with("text/plain"), "{uri}");
        }
    }
    // And a route the document does not list is not served.
    bad(&api, "/api/nothing", StatusCode::NOT_FOUND, "no such route").await;
}

#[tokio::test]
async fn answers_carry_the_stored_values() {
    let api = api().await;
    let h = json(&api, "/api/health").await;
    assert!(h["lag"].is_null(), "no row committed yet");
    api.stats.lag.record([4_000, 6_000, 90_000]);
    let h = json(&api, "/api/health").await;
    assert_eq!(h["lag"]["rows"], 3);
    assert_eq!(h["lag"]["p50_ms"], 6.3);
    assert_eq!(h["lag"]["p99_ms"], 100.0);
    assert_eq!(h["mode"], "live");
    assert_eq!(h["dataset"], "plant");
    assert_eq!(h["threshold"], 7.5);
    assert_eq!(h["devices"].as_array().unwrap().len(), 2);
    assert_eq!(h["newest_row"], format_timestamp(T0 + (ROWS - 1) * 10 * S));

    let d = json(&api, "/api/devices").await;
    let devs = d["devices"].as_array().unwrap();
    // In id order, byte by byte: '"' sorts before 'A'.
    assert_eq!(devs[0]["device"], "DEV-\"B'");
    assert_eq!(devs[0]["health"], "ok");
    assert_eq!(devs[1]["device"], "DEV-A");
    assert_eq!(devs[1]["health"], "alert");
    assert_eq!(devs[1]["open_alerts"], 1);
    assert_eq!(devs[1]["alerts"], 2);
    // A device more than 5 minutes behind the fleet's newest row is stale.
    api.stats.fleet.set(
        "DEV-C",
        DeviceView {
            last_us: Some(T0 + (ROWS - 1) * 10 * S - 301 * S),
            ..DeviceView::default()
        },
    );
    api.stats.fleet.set(
        "DEV-D",
        DeviceView {
            last_us: Some(T0 + (ROWS - 1) * 10 * S - 299 * S),
            ..DeviceView::default()
        },
    );
    let d = json(&api, "/api/devices").await;
    let health: Vec<&str> = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["health"].as_str().unwrap())
        .collect();
    assert_eq!(health, ["ok", "alert", "stale", "ok"]);

    // Newest first; a limit keeps the newest.
    let a = json(&api, "/api/alerts").await;
    let ids: Vec<&str> = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["DEV-A@2", "DEV-\"B'@1", "DEV-A@1"]);
    let a = json(&api, "/api/alerts?limit=1").await;
    assert_eq!(a["alerts"][0]["id"], "DEV-A@2");
    assert_eq!(a["alerts"][0]["open"], true);
    let a = json(&api, "/api/alerts?open=false").await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 2);
    let a = json(&api, "/api/alerts?severity=warning").await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 2);
    let a = json(&api, "/api/alerts?device=DEV-A&since=2026-01-01T00:08:00Z").await;
    assert_eq!(a["alerts"].as_array().unwrap().len(), 1, "{a}");

    // The explanation: families, features and the signals behind them.
    let x = json(&api, "/api/alerts/DEV-A%402").await;
    assert_eq!(x["explanation"]["families"][0]["name"], "Temperature");
    assert_eq!(
        x["explanation"]["signals"],
        serde_json::json!(["temp_c", "vibration_g"])
    );
    // An id with quotes is a bound value, found as it is.
    let x = json(&api, "/api/alerts/DEV-%22B%27%401").await;
    assert_eq!(x["device"], "DEV-\"B'");

    // Pages of scores join up to the whole.
    let whole = json(&api, "/api/devices/DEV-A/scores?limit=10000").await;
    assert_eq!(whole["scores"].as_array().unwrap().len(), ROWS as usize);
    assert!(whole["next"].is_null());
    let mut joined = Vec::new();
    let mut uri = "/api/devices/DEV-A/scores?limit=50".to_owned();
    loop {
        let page = json(&api, &uri).await;
        joined.extend(page["scores"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => uri = format!("/api/devices/DEV-A/scores?limit=50&since={next}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(joined), whole["scores"]);
    let w = json(
        &api,
        "/api/devices/DEV-A/scores?since=2026-01-01T00:01:00Z&until=2026-01-01T00:02:00Z",
    )
    .await;
    assert_eq!(w["scores"].as_array().unwrap().len(), 6);
    assert_eq!(w["scores"][0]["ts"], "2026-01-01T00:01:00Z");

    // Readings: values in signal order, a missing one null, paged.
    let r = json(&api, "/api/devices/DEV-A/readings?limit=10").await;
    assert_eq!(r["signals"][2], "vibration_g");
    assert_eq!(r["readings"].as_array().unwrap().len(), 10);
    assert!(r["readings"][7]["values"][2].is_null());
    assert_eq!(r["readings"][7]["values"][0], 1500.0);
    assert_eq!(r["readings"][0]["state"], "RUN");
    assert_eq!(r["next"], "2026-01-01T00:01:40Z");
    let r = json(&api, "/api/devices/DEV-%22B%27/readings?limit=10000").await;
    assert_eq!(r["readings"].as_array().unwrap().len(), ROWS as usize);
}

#[tokio::test]
async fn bad_parameters_are_refused_by_name() {
    let api = api().await;
    let cases = [
        ("/api/alerts?limt=3", "limt"),
        ("/api/alerts?limit=0", "limit"),
        ("/api/alerts?limit=1001", "limit"),
        ("/api/alerts?limit=ten", "limit"),
        ("/api/alerts?since=yesterday", "since"),
        ("/api/alerts?until=2026-13-01", "until"),
        ("/api/alerts?severity=high", "severity"),
        ("/api/alerts?open=yes", "open"),
        ("/api/alerts?device=", "device"),
        (
            "/api/alerts?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("/api/alerts?limit=1&limit=2", "limit"),
        ("/api/health?verbose=1", "verbose"),
        ("/api/devices?x=1", "x"),
        ("/metrics?x=1", "x"),
        ("/api/devices/DEV-A/scores?limit=10001", "limit"),
        ("/api/devices/DEV-A/scores?device=DEV-A", "device"),
        (
            "/api/devices/DEV-A/scores?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("/api/devices/DEV-A/readings?since=%FF", "since"),
        ("/api/alerts/a%00b", "control character"),
    ];
    for (uri, names) in cases {
        bad(&api, uri, StatusCode::BAD_REQUEST, names).await;
    }
    for (uri, names) in [
        ("/api/devices/NOPE/scores", "NOPE"),
        ("/api/devices/NOPE/readings", "NOPE"),
        ("/api/alerts/NOPE", "NOPE"),
        // SQL in an id is an id that does not exist.
        ("/api/alerts/x%27%20OR%20%271%27%3D%271", "OR"),
        ("/api/devices/x%27%20OR%201%3D1--/scores", "OR"),
    ] {
        bad(&api, uri, StatusCode::NOT_FOUND, names).await;
    }
    let a = json(&api, "/api/alerts?device=x%27%20OR%20%271%27%3D%271").await;
    assert!(a["alerts"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = api().await;
    api.stats
        .received
        .store(42, std::sync::atomic::Ordering::Relaxed);
    api.stats.lag.record([4_000, 6_000, 90_000]);
    let (status, ctype, body) = call(&api, "/metrics").await;
    assert!(
        body.contains("\nitap_row_lag_seconds_bucket{le=\"0.005\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("\nitap_row_lag_seconds_bucket{le=\"0.1\"} 3\n"),
        "{body}"
    );
    assert!(
        body.contains("\nitap_row_lag_seconds_bucket{le=\"+Inf\"} 3\n"),
        "{body}"
    );
    assert!(body.contains("\nitap_row_lag_seconds_count 3\n"), "{body}");
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(
        body.contains("\nitap_messages_received_total 42\n"),
        "{body}"
    );
    assert!(body.contains("# TYPE itap_rows_scored_total counter"));
    assert!(body.contains("\nitap_devices 2\n"));
    assert!(body.contains("\nitap_open_alerts 1\n"));
    // A quote in a device id is escaped in the label.
    assert!(
        body.contains("itap_device_last_seen_seconds{device=\"DEV-\\\"B'\"} 1767226790"),
        "{body}"
    );
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}
