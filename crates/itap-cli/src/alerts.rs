//! `itap alerts`: the alerts a run stored, from the database, in time order.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use itap::store::AlertQuery;
use itap::telemetry::{TimeZone, format_timestamp, parse_timestamp};

use crate::config::Config;
use crate::{ConfigArg, DbArgs, Output};

/// `itap alerts` flags.
#[derive(Debug, Args)]
pub(crate) struct AlertsArgs {
    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    db: DbArgs,

    /// Only this device's alerts.
    #[arg(long, value_name = "ID")]
    device: Option<String>,

    /// Only alerts that end at or after this time (RFC 3339, e.g.
    /// 2026-01-01T04:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// Only alerts at least this severe: info, warning or critical.
    #[arg(long, value_name = "LEVEL")]
    severity: Option<String>,

    /// At most this many alerts (in time order).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,

    /// Print JSON (one array, every stored field) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &AlertsArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let cfg = config.store_settings(&args.db, None, None)?;
    let mut q = AlertQuery::all();
    if let Some(d) = &args.device {
        q = q.device(d.clone());
    }
    if let Some(s) = &args.since {
        let t = parse_timestamp(s, TimeZone::default()).with_context(|| {
            format!("--since {s:?} is not a time; use RFC 3339, e.g. 2026-01-01T04:00:00Z")
        })?;
        q = q.since(t);
    }
    if let Some(s) = &args.severity {
        if !["info", "warning", "critical"].contains(&s.as_str()) {
            bail!("--severity {s:?} is not a severity; use info, warning or critical");
        }
        q = q.severity_at_least(s.clone());
    }
    if let Some(n) = args.limit {
        q = q.limit(n);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let alerts = runtime.block_on(async {
        let store = cfg
            .connect()
            .await
            .with_context(|| format!("cannot open the database {}", cfg.url))?;
        let a = store.alerts(&cfg.dataset, &q).await;
        store.close().await;
        Ok::<_, anyhow::Error>(a?)
    })?;
    if args.json {
        let v: Vec<serde_json::Value> = alerts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id,
                    "device": a.device,
                    "start": format_timestamp(a.start_us),
                    "end": format_timestamp(a.end_us),
                    "peak_at": format_timestamp(a.peak_us),
                    "rows": a.rows,
                    "peak_score": a.peak_score,
                    "mean_score": a.mean_score,
                    "severity": a.severity,
                    "family": a.family,
                    "route": a.route,
                    "rule": a.rule,
                    "detail": serde_json::from_str::<serde_json::Value>(&a.detail)
                        .unwrap_or(serde_json::Value::String(a.detail.clone())),
                    "model": a.model,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !out.quiet {
        println!(
            "{} alerts in {} dataset `{}`",
            alerts.len(),
            cfg.url,
            cfg.dataset
        );
        if !alerts.is_empty() {
            println!(
                "{:<34} {:<20} {:<20} {:>5} {:<8} {:<12} {:<12} rule",
                "id", "start", "end", "rows", "severity", "family", "route"
            );
        }
        for a in &alerts {
            println!(
                "{:<34} {:<20} {:<20} {:>5} {:<8} {:<12} {:<12} {}",
                a.id,
                format_timestamp(a.start_us),
                format_timestamp(a.end_us),
                a.rows,
                a.severity,
                if a.family.is_empty() { "-" } else { &a.family },
                a.route,
                a.rule
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
