//! `itap serve`: validate, store, score and raise alerts on MQTT telemetry as it
//! arrives, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use itap::validate::Policy;
use itap::{LiveScorer, ModelFile, ParamGuard};
use itap_live::{DecodeParams, Decoder, ServeParams, ServeStats, Shard};

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
(default 20) unacknowledged messages: raise it (0 = no limit) for throughput, and
max_queued_messages for restarts after long stops (docs/live.md).

SIGINT (Ctrl-C) or SIGTERM: the messages in hand are committed and acknowledged,
then the server disconnects and prints its counts.

Exit status: 0 stopped by a signal, 2 usage, broker, database or model error.

Examples:
  itap serve --mqtt mqtt://127.0.0.1:1883 --model artifacts/model.json --db sqlite://data/live.db
  itap serve --mqtt mqtt://broker:1883 --db postgres://itap@db/plant --shard 0/2")]
pub(crate) struct ServeArgs {
    /// The broker: `mqtt://[USER[:PASSWORD]@]HOST[:PORT]`.
    #[arg(long, value_name = "URL")]
    mqtt: String,

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

    /// Most messages per step (one transaction each).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    batch_rows: usize,

    /// Longest wait for more messages after a step's first, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    batch_wait_ms: u64,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    signals: SignalsFlag,
}

pub(crate) fn run(args: &ServeArgs, out: Output) -> Result<ExitCode> {
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
    let decoder =
        Decoder::new(&model.schema, DecodeParams::default().check()?).with_validation(&validation);
    let scorer = LiveScorer::new(model, &eval, &alerts)
        .with_context(|| format!("cannot score live with {}", model_path.display()))?;
    let threshold = scorer.threshold().value;
    let params = ServeParams {
        url: args.mqtt.clone(),
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
        let store = settings.connect().await?;
        if !out.quiet {
            eprintln!(
                "serving {} on {} as {} into `{}` at {} (threshold {threshold:.4}); connecting; Ctrl-C stops",
                params.params().topic,
                args.mqtt,
                params.client_id(),
                settings.dataset,
                store.url()
            );
        }
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
