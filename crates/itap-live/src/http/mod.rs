//! The operator's view over HTTP: a read-only JSON API, Prometheus metrics and
//! the dashboard page, served beside a live worker (`itap serve --http`) or over
//! a batch run's files (`itap serve --artifacts`). The routes and their JSON are
//! described in docs/api.md and served as OpenAPI at `/api/openapi.json`.
//!
//! Every query parameter is checked (an unknown one is refused), every answer to
//! a bad request is a `400` with a message, and ids from a URL reach the store
//! only as bound parameters.

mod artifacts;
mod params;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use itap::store::{AlertQuery, AlertRecord, ScoreQuery, Store};
use itap::telemetry::format_timestamp;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::fleet::DeviceView;
use crate::now_micros;
use crate::serve::ServeStats;

pub use artifacts::{ArtifactsSummary, load_artifacts};
use params::Params;

/// The dashboard page, embedded.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The OpenAPI description of the routes, embedded.
const OPENAPI_JSON: &str = include_str!("openapi.json");

/// With `open=`, the most alerts read to filter by it (memory stays bounded).
const OPEN_SCAN: u32 = 10_000;

/// A device is `stale` when its last row is this far behind the fleet's newest.
const STALE_AFTER_US: i64 = 5 * 60 * 1_000_000;

/// Where the numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Beside a running worker.
    Live,
    /// Over a batch run's files.
    Artifacts,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Artifacts => "artifacts",
        }
    }
}

/// What the API reads.
#[derive(Debug)]
pub struct Api {
    /// Live or artifacts.
    pub mode: Mode,
    /// The dataset whose alerts, scores and rows are shown.
    pub dataset: String,
    /// Holds `itap_alerts` and `itap_scores` of the dataset.
    pub store: Store,
    /// Holds the dataset's telemetry table, when there is one to show.
    pub readings: Option<Store>,
    /// Counters and each device's view.
    pub stats: Arc<ServeStats>,
    /// The operating threshold.
    pub threshold: f64,
    /// The schema's signal names, in order.
    pub signals: Vec<String>,
    /// When the server started.
    pub started: Instant,
}

/// The routes, over `api`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/index.html", get(dashboard))
        .route("/api/health", get(health))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}/scores", get(device_scores))
        .route("/api/devices/{id}/readings", get(device_readings))
        .route("/api/alerts", get(alerts))
        .route("/api/alerts/{id}", get(alert))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(api)
}

/// Serves `api` on `listener` until `shutdown` completes.
///
/// # Errors
/// [`Error::Http`] when the server fails.
pub async fn serve_http<F>(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Http)
}

/// An answer to a request that cannot be served.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<itap::store::Error> for ApiError {
    fn from(e: itap::store::Error) -> Self {
        tracing::warn!(error = %e, "HTTP API: the store failed");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            _ => "unavailable",
        };
        let body = json!({"error": code, "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = std::result::Result<Response, ApiError>;

fn ok_json(v: &Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

fn ts(us: i64) -> Value {
    Value::String(format_timestamp(us))
}

fn opt_ts(us: Option<i64>) -> Value {
    us.map_or(Value::Null, ts)
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the routes are listed at /api/openapi.json")
}

fn query(
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Params, ApiError> {
    match q {
        Ok(Query(pairs)) => Ok(Params::new(pairs)),
        Err(e) => Err(ApiError::bad(format!(
            "the query string cannot be read: {e}"
        ))),
    }
}

fn path_id(p: std::result::Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::bad(format!("the path cannot be read: {e}")))
}

/// The fleet's newest row, UTC µs.
fn newest(devices: &BTreeMap<String, DeviceView>) -> Option<i64> {
    devices.values().filter_map(|v| v.last_us).max()
}

async fn health(
    State(api): State<Arc<Api>>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    query(q)?.only(&[])?;
    let s = api.stats.snapshot();
    let devices = api.stats.fleet.snapshot();
    let last_commit = api.stats.last_commit_us.load(Ordering::Relaxed);
    let last_commit = (last_commit > 0).then_some(last_commit);
    let processed = s.stored + s.duplicates + s.rejected + s.foreign;
    ok_json(&json!({
        "status": "ok",
        "mode": api.mode.as_str(),
        "dataset": api.dataset,
        "uptime_s": api.started.elapsed().as_secs_f64(),
        "threshold": api.threshold,
        "received": s.received,
        "stored": s.stored,
        "duplicates": s.duplicates,
        "scored": s.scored,
        "flagged": s.flagged,
        "rejected": s.rejected,
        "foreign": s.foreign,
        "commits": s.commits,
        "alert_writes": s.alerts,
        "pending": s.received.saturating_sub(processed),
        "last_commit": opt_ts(last_commit),
        "since_last_commit_s": last_commit.map(|t| (now_micros() - t) as f64 / 1e6),
        "newest_row": opt_ts(newest(&devices)),
        "lag": api.stats.lag.summary(),
        "devices": devices.iter().map(|(id, v)| json!({
            "device": id,
            "last_seen": opt_ts(v.last_us),
        })).collect::<Vec<_>>(),
    }))
}

fn device_json(id: &str, v: &DeviceView, newest: Option<i64>) -> Value {
    let health = if !v.open_alerts.is_empty() {
        "alert"
    } else if matches!((v.last_us, newest), (Some(l), Some(n)) if n - l > STALE_AFTER_US) {
        "stale"
    } else {
        "ok"
    };
    json!({
        "device": id,
        "last_seen": opt_ts(v.last_us),
        "state": v.state,
        "last_score": v.last_score,
        "flagged": v.flagged,
        "family": v.family,
        "rows": v.rows,
        "open_alerts": v.open_alerts.len(),
        "alerts": v.closed_alerts + (v.open_alerts.len() + v.pending_alerts.len()) as u64,
        "health": health,
    })
}

async fn devices(
    State(api): State<Arc<Api>>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    query(q)?.only(&[])?;
    let devices = api.stats.fleet.snapshot();
    let n = newest(&devices);
    ok_json(&json!({
        "newest_row": opt_ts(n),
        "devices": devices.iter().map(|(id, v)| device_json(id, v, n)).collect::<Vec<_>>(),
    }))
}

/// An alert's `detail` JSON, or an empty object.
fn detail(a: &AlertRecord) -> Value {
    serde_json::from_str(&a.detail).unwrap_or_else(|_| json!({}))
}

fn alert_json(a: &AlertRecord, d: &Value) -> Value {
    json!({
        "id": a.id,
        "device": a.device,
        "start": ts(a.start_us),
        "end": ts(a.end_us),
        "peak_at": ts(a.peak_us),
        "rows": a.rows,
        "peak_score": a.peak_score,
        "mean_score": a.mean_score,
        "severity": a.severity,
        "family": a.family,
        "route": a.route,
        "rule": a.rule,
        "open": d.get("open").and_then(Value::as_bool).unwrap_or(false),
    })
}

async fn alerts(
    State(api): State<Arc<Api>>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let p = query(q)?;
    p.only(&["device", "since", "until", "severity", "open", "limit"])?;
    let limit = p.uint("limit", 1, 1000)?.unwrap_or(100);
    let open = p.boolean("open")?;
    let mut aq = AlertQuery::all().newest_first();
    if let Some(d) = p.text("device")? {
        aq = aq.device(d);
    }
    let (since, until) = p.window()?;
    if let Some(t) = since {
        aq = aq.since(t);
    }
    if let Some(t) = until {
        aq = aq.until(t);
    }
    if let Some(s) = p.severity("severity")? {
        aq = aq.severity_at_least(s);
    }
    // `open` lives in the alert's detail: filtered here, among the newest
    // OPEN_SCAN alerts the other filters select, then limited.
    aq = aq.limit(if open.is_none() { limit } else { OPEN_SCAN });
    let list: Vec<Value> = api
        .store
        .alerts(&api.dataset, &aq)
        .await?
        .iter()
        .map(|a| alert_json(a, &detail(a)))
        .filter(|a| open.is_none_or(|o| a["open"].as_bool() == Some(o)))
        .take(limit as usize)
        .collect();
    ok_json(&json!({ "alerts": list }))
}

async fn alert(
    State(api): State<Arc<Api>>,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let id = path_id(id)?;
    query(q)?.only(&[])?;
    params::check_id("alert id", &id)?;
    let Some(a) = api.store.alert(&api.dataset, &id).await? else {
        return Err(ApiError::not_found(format!(
            "no alert {id:?} in `{}`",
            api.dataset
        )));
    };
    let d = detail(&a);
    let mut v = alert_json(&a, &d);
    let features = d.get("top_features").cloned().unwrap_or_else(|| json!([]));
    let mut signals: Vec<&str> = Vec::new();
    for f in features.as_array().into_iter().flatten() {
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let sig = name.split("__").next().unwrap_or_default();
        if let Some(s) = api.signals.iter().find(|s| *s == sig)
            && !signals.contains(&s.as_str())
        {
            signals.push(s);
        }
    }
    v["model"] = json!(a.model);
    v["explanation"] = json!({
        "families": d.get("families").cloned().unwrap_or_else(|| json!([])),
        "top_features": features,
        "signals": signals,
        "peak_tail_log10": d.get("peak_tail_log10").cloned().unwrap_or(Value::Null),
        "fault": d.get("fault").cloned().unwrap_or(Value::Null),
        "labels": d.get("labels").cloned().unwrap_or_else(|| json!([])),
    });
    ok_json(&v)
}

/// The device of a path, which must be known.
fn known_device(api: &Api, id: &str) -> Result<(), ApiError> {
    params::check_id("device id", id)?;
    if api.stats.fleet.device(id).is_none() {
        return Err(ApiError::not_found(format!(
            "no device {id:?} in `{}`; /api/devices lists them",
            api.dataset
        )));
    }
    Ok(())
}

async fn device_scores(
    State(api): State<Arc<Api>>,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let id = path_id(id)?;
    let p = query(q)?;
    p.only(&["since", "until", "limit"])?;
    known_device(&api, &id)?;
    let limit = p.uint("limit", 1, 10_000)?.unwrap_or(2_000);
    let (since, until) = p.window()?;
    let mut rows = api
        .store
        .scores(
            &api.dataset,
            &ScoreQuery {
                device: Some(id.clone()),
                since_us: since,
                until_us: until,
                limit: Some(limit + 1),
            },
        )
        .await?;
    let next = (rows.len() > limit as usize).then(|| rows[limit as usize].ts_us);
    rows.truncate(limit as usize);
    ok_json(&json!({
        "device": id,
        "threshold": api.threshold,
        "scores": rows.iter().map(|s| json!({
            "ts": ts(s.ts_us),
            "score": s.score,
            "flagged": s.flagged,
            "family": s.family,
        })).collect::<Vec<_>>(),
        "next": opt_ts(next),
    }))
}

async fn device_readings(
    State(api): State<Arc<Api>>,
    id: std::result::Result<Path<String>, PathRejection>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    let id = path_id(id)?;
    let p = query(q)?;
    p.only(&["since", "until", "limit"])?;
    known_device(&api, &id)?;
    let limit = p.uint("limit", 1, 10_000)?.unwrap_or(2_000);
    let (since, until) = p.window()?;
    let Some(store) = &api.readings else {
        return Err(ApiError::not_found(format!(
            "no telemetry of `{}` is stored where this server reads",
            api.dataset
        )));
    };
    let b = match store
        .device_page(&api.dataset, &id, since, until, limit + 1)
        .await
    {
        Ok(b) => b,
        Err(itap::store::Error::NoSuchDataset { .. }) => {
            return Err(ApiError::not_found(format!(
                "no telemetry of `{}` is stored where this server reads",
                api.dataset
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let n = b.len().min(limit as usize);
    let next = (b.len() > n).then(|| b.timestamps()[n]);
    let cols: Vec<Option<&[f64]>> = api.signals.iter().map(|s| b.signal_by_name(s)).collect();
    let readings: Vec<Value> = (0..n)
        .map(|r| {
            json!({
                "ts": ts(b.timestamps()[r]),
                "state": b.states().map(|s| s[r].as_str()),
                "error_code": b.error_codes().map(|c| c[r]),
                "values": cols.iter().map(|c| c.map(|c| c[r])).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok_json(&json!({
        "device": id,
        "signals": api.signals,
        "readings": readings,
        "next": opt_ts(next),
    }))
}

async fn metrics(
    State(api): State<Arc<Api>>,
    q: std::result::Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult {
    query(q)?.only(&[])?;
    let s = api.stats.snapshot();
    let devices = api.stats.fleet.snapshot();
    let processed = s.stored + s.duplicates + s.rejected + s.foreign;
    let mut out = String::with_capacity(2048 + devices.len() * 64);
    let mut metric = |name: &str, kind: &str, help: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    metric(
        "itap_messages_received_total",
        "counter",
        "Messages received.",
        s.received as f64,
    );
    metric(
        "itap_rows_stored_total",
        "counter",
        "Rows stored new.",
        s.stored as f64,
    );
    metric(
        "itap_rows_duplicate_total",
        "counter",
        "Rows received again (stored already).",
        s.duplicates as f64,
    );
    metric(
        "itap_rows_scored_total",
        "counter",
        "Rows scored.",
        s.scored as f64,
    );
    metric(
        "itap_rows_flagged_total",
        "counter",
        "Rows above the threshold.",
        s.flagged as f64,
    );
    metric(
        "itap_messages_rejected_total",
        "counter",
        "Messages refused.",
        s.rejected as f64,
    );
    metric(
        "itap_commits_total",
        "counter",
        "Steps committed.",
        s.commits as f64,
    );
    metric(
        "itap_alert_writes_total",
        "counter",
        "Alerts inserted or changed.",
        s.alerts as f64,
    );
    metric(
        "itap_pending_messages",
        "gauge",
        "Messages received, not yet committed.",
        s.received.saturating_sub(processed) as f64,
    );
    metric(
        "itap_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        api.started.elapsed().as_secs_f64(),
    );
    metric(
        "itap_devices",
        "gauge",
        "Devices seen.",
        devices.len() as f64,
    );
    metric(
        "itap_open_alerts",
        "gauge",
        "Alerts open now.",
        devices.values().map(|v| v.open_alerts.len()).sum::<usize>() as f64,
    );
    let _ = writeln!(
        out,
        "# HELP itap_row_lag_seconds How old a row was when its score was committed.\n# TYPE itap_row_lag_seconds histogram"
    );
    let mut cumulative = 0u64;
    for (i, (bound, n)) in api.stats.lag.buckets().into_iter().enumerate() {
        cumulative += n;
        // 1, 2.5 and 5 per decade of the finer buckets kept, and the open one.
        if bound == u64::MAX {
            let _ = writeln!(
                out,
                "itap_row_lag_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
            );
        } else if matches!(i % 10, 0 | 4 | 7) {
            let _ = writeln!(
                out,
                "itap_row_lag_seconds_bucket{{le=\"{}\"}} {cumulative}",
                bound as f64 / 1e6
            );
        }
    }
    let _ = writeln!(
        out,
        "itap_row_lag_seconds_sum {}\nitap_row_lag_seconds_count {cumulative}",
        api.stats.lag.sum_us() / 1e6
    );
    let _ = writeln!(
        out,
        "# HELP itap_device_last_seen_seconds The device's last row, seconds since 1970.\n# TYPE itap_device_last_seen_seconds gauge"
    );
    for (id, v) in &devices {
        if let Some(t) = v.last_us {
            let _ = writeln!(
                out,
                "itap_device_last_seen_seconds{{device=\"{}\"}} {}",
                params::prometheus_label(id),
                t as f64 / 1e6
            );
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
