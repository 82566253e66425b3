//! `itap serve`: validate, store, score and raise alerts on MQTT telemetry as it
//! arrives, until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use itap::store::Store;
use itap::validate::Policy;
use itap::{LiveScorer, ModelFile, ParamGuard};
use itap_live::{Api, DecodeParams, Decoder, Mode, ServeParams, ServeStats, Shard, load_artifacts};

use crate::config::{Config, SignalsFlag, TrainFlags};
use crate::fmt::thousands;
use crate::{ConfigArg, DbArgs, Output};

/// Flags of `itap serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
Subscribes to TOPIC (QoS 1, a persistent session named by --client-id) and, for
every message: decodes and checks it (schema, types, ranges, NaN/inf, a timestamp
not far in the future; per device, time order, duplicates and conflicts), stores
the accepted rows in the dataset's table (idempotent on device and time), scores
them with the model (per-device feature state: the scores `itap score` gives for
the same rows), runs the alert engine, and stores scores in itap_scores, alerts in
itap_alerts and refused messages (topic, payload cut to 1 KiB, reason) in
itap_rejects. A message is acknowledged to the broker only after all of it is
committed: killed at any point, a restart (same --client-id) resumes every
device's state from the database and the broker redelivers the rest, so nothing
is lost or stored twice.

The threshold comes from the model's held-back training scores
([eval] threshold_quantile or target_alert_rate); alerts follow [alerts].

--shard I/N takes only the devices whose id hashes (FNV-1a) to shard I of N, so
N workers with the same topic and database share a fleet, each device's rows in
one worker, in order. Mosquitto sends a client at most max_inflight_messages
(default 20) unacknowledged messages: raise it to about twice --batch-rows
(configs/mosquitto.conf: 10000) for throughput, and max_queued_messages for
restarts after long stops (docs/live.md).

SIGINT (Ctrl-C) or SIGTERM: the messages in hand are committed and acknowledged,
then the server disconnects and prints its counts.

--http ADDR also serves the operator's view: the dashboard at http://ADDR/, a
read-only JSON API under /api (health, devices, alerts, scores, readings; the
OpenAPI description at /api/openapi.json) and Prometheus metrics at /metrics
(docs/api.md). Give 127.0.0.1 (the default host) unless others must reach it.

--artifacts DIR (instead of --mqtt) serves the same pages over a batch run's
folder (model.json, alerts.json, scores.csv written by `itap run --out DIR`) and
the rows of --db, without a broker, on --http (default 127.0.0.1:8080).

Exit status: 0 stopped by a signal, 2 usage, broker, database or model error.

Examples:
  itap serve --mqtt mqtt://127.0.0.1:1883 --model artifacts/model.json --db sqlite://data/live.db
  itap serve --mqtt mqtt://broker:1883 --db postgres://itap@db/plant --shard 0/2
  itap serve --mqtt mqtt://127.0.0.1:1883 --model artifacts/model.json --http 127.0.0.1:8080
  itap serve --artifacts artifacts --db sqlite://data/itap.db")]
pub(crate) struct ServeArgs {
    /// The broker: `mqtt://[USER[:PASSWORD]@]HOST[:PORT]`.
    #[arg(long, value_name = "URL", required_unless_present = "artifacts")]
    mqtt: Option<String>,

    /// Serve the dashboard, JSON API and metrics on this address: HOST:PORT, or a
    /// port alone for 127.0.0.1:PORT.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,

    /// Serve a batch run's folder (no broker) instead of live telemetry.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["mqtt", "shard", "client_id"])]
    artifacts: Option<PathBuf>,

    /// Topic filter to subscribe to.
    #[arg(long, value_name = "FILTER", default_value = itap_live::DEFAULT_TOPIC_FILTER)]
    topic: String,

    /// The model file [config: model.path, default artifacts/model.json].
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,

    #[command(flatten)]
    db: DbArgs,

    /// Take only the devices of shard I of N (0-based), e.g. 0/2.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,

    /// The MQTT client id of the persistent session; keep it across restarts
    /// [default: itap-serve-DATASET, with -I-of-N for a shard].
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,

    /// Most messages per step (one transaction each). Let the broker send about
    /// twice as many unacknowledged (max_inflight_messages), so the next step
    /// arrives while one is processed.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    batch_rows: usize,

    /// Longest wait for more messages after a step's first, milliseconds; 0
    /// takes the messages already arrived (the lowest lag; at full rate the
    /// steps fill up anyway).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    batch_wait_ms: u64,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    signals: SignalsFlag,
}

pub(crate) fn run(args: &ServeArgs, out: Output) -> Result<ExitCode> {
    if let Some(dir) = &args.artifacts {
        return run_artifacts(args, dir, out);
    }
    let config = Config::load(args.config.config.as_deref())?;
    let eval = config.eval_params(&TrainFlags::default())?;
    let alerts = config.alert_params()?;
    let validation = config.validation_params(Some(Policy::Reject), &args.signals)?;
    let settings = config.store_settings(&args.db, None, None)?;
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| config.model.path.clone());
    let model = ModelFile::load(&model_path)?;
    let signal_names: Vec<String> = model.schema.names().map(str::to_owned).collect();
    let decoder =
        Decoder::new(&model.schema, DecodeParams::default().check()?).with_validation(&validation);
    let scorer = LiveScorer::new(model, &eval, &alerts)
        .with_context(|| format!("cannot score live with {}", model_path.display()))?;
    let threshold = scorer.threshold().value;
    let mqtt = args.mqtt.clone().unwrap_or_default();
    let params = ServeParams {
        url: mqtt.clone(),
        topic: args.topic.clone(),
        dataset: settings.dataset.clone(),
        client_id: args.client_id.clone(),
        shard: args.shard,
        batch_rows: args.batch_rows,
        batch_wait_ms: args.batch_wait_ms,
        ..ServeParams::default()
    }
    .check()?;
    let runtime = crate::data::runtime()?;
    let stats = Arc::new(ServeStats::default());
    let summary = runtime.block_on(async {
        let listener = match &args.http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let store = settings.connect().await?;
        if !out.quiet {
            eprintln!(
                "serving {} on {mqtt} as {} into `{}` at {} (threshold {threshold:.4}); connecting; Ctrl-C stops",
                params.params().topic,
                params.client_id(),
                settings.dataset,
                store.url()
            );
        }
        let (http_stop, http_task) = match listener {
            Some(listener) => {
                // Its own pool: requests never wait for the worker's
                // connections, nor the worker for theirs.
                let reads = settings.connect().await?;
                let api = Arc::new(Api {
                    mode: Mode::Live,
                    dataset: settings.dataset.clone(),
                    store: reads.clone(),
                    readings: Some(reads),
                    stats: stats.clone(),
                    threshold,
                    signals: signal_names,
                    started: Instant::now(),
                });
                let (stop, task) = spawn_http(listener, api, out);
                (Some(stop), Some(task))
            }
            None => (None, None),
        };
        let ticker = (!out.quiet).then(|| tokio::spawn(report_every(stats.clone(), 10)));
        let result = itap_live::serve(
            &store,
            scorer,
            decoder,
            &validation,
            &params,
            stats.clone(),
            stop_signal(),
        )
        .await;
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(stop) = http_stop {
            let _ = stop.send(());
        }
        if let Some(task) = http_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        store.close().await;
        anyhow::Ok(result?)
    })?;
    if !out.quiet {
        println!(
            "stopped: {} messages received, {} rows stored ({} again), {} scored ({} flagged), {} refused, {} of other shards, {} commits",
            thousands(summary.received),
            thousands(summary.stored),
            thousands(summary.duplicates),
            thousands(summary.scored),
            thousands(summary.flagged),
            thousands(summary.rejected),
            thousands(summary.foreign),
            thousands(summary.commits),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `itap serve --artifacts DIR`: the operator's view over a batch run.
fn run_artifacts(args: &ServeArgs, dir: &Path, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let settings = config.store_settings(&args.db, None, None)?;
    let addr = args.http.clone().unwrap_or_else(|| "127.0.0.1:8080".into());
    let runtime = crate::data::runtime()?;
    runtime.block_on(async {
        let listener = bind(&addr).await?;
        let memory = Store::connect("sqlite::memory:").await?;
        let stats = Arc::new(ServeStats::default());
        let t0 = Instant::now();
        let loaded = load_artifacts(dir, &memory, &settings.dataset, &stats, |n| {
            if !out.quiet && n > 0 && n % 200_000 < 50_000 {
                eprintln!("loading {}: {} scored rows", dir.display(), thousands(n));
            }
        })
        .await?;
        // The rows behind the scores, read from the run's database when it is
        // there: a SQLite file is not created by looking for it.
        let readings = match sqlite_path(&settings.url) {
            Some(p) if !p.exists() => {
                if !out.quiet {
                    eprintln!(
                        "note: {} does not exist; the dashboard shows no signal values (give --db)",
                        p.display()
                    );
                }
                None
            }
            _ => Some(settings.connect().await?),
        };
        if !out.quiet {
            eprintln!(
                "loaded {}: {} scored rows of {} devices, {} alerts in {:.1} s",
                dir.display(),
                thousands(loaded.rows),
                loaded.devices,
                loaded.alerts,
                t0.elapsed().as_secs_f64()
            );
        }
        let api = Arc::new(Api {
            mode: Mode::Artifacts,
            dataset: settings.dataset.clone(),
            store: memory.clone(),
            readings: readings.clone(),
            stats,
            threshold: loaded.threshold,
            signals: loaded.schema.names().map(str::to_owned).collect(),
            started: Instant::now(),
        });
        let (stop, task) = spawn_http(listener, api, out);
        stop_signal().await;
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        memory.close().await;
        if let Some(r) = readings {
            r.close().await;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The file of a `sqlite://PATH` URL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// Binds the HTTP address, or says why not.
async fn bind(addr: &str) -> Result<tokio::net::TcpListener> {
    // A port alone is a port on loopback.
    let addr = match addr.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => addr.to_owned(),
    };
    tokio::net::TcpListener::bind(&addr).await.with_context(|| {
        format!(
            "cannot listen on --http {addr} (give HOST:PORT, e.g. 127.0.0.1:8080, with a free port)"
        )
    })
}

/// Serves the API until the returned sender fires (or is dropped).
fn spawn_http(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    out: Output,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if let Ok(a) = listener.local_addr() {
        if !out.quiet {
            eprintln!("dashboard on http://{a}/ (API under /api, metrics at /metrics)");
        }
        tracing::info!(addr = %a, "HTTP listening");
    }
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = itap_live::serve_http(listener, api, shutdown).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    (stop, task)
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
    tracing::info!("stop requested: finishing the messages in hand");
}

/// Prints the counts every `secs` seconds while they change.
async fn report_every(stats: Arc<ServeStats>, secs: u64) {
    let mut last = stats.snapshot();
    loop {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let s = stats.snapshot();
        if s != last {
            eprintln!(
                "received {} · stored {} · scored {} ({} flagged) · refused {} · +{}/s",
                thousands(s.received),
                thousands(s.stored),
                thousands(s.scored),
                thousands(s.flagged),
                thousands(s.rejected),
                thousands((s.received - last.received) / secs),
            );
            last = s;
        }
    }
}
