//! `itap db …`: look into the database.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use itap::store::Store;
use itap::telemetry::format_timestamp;

use crate::config::Config;
use crate::{ConfigArg, DbArgs, Output};

/// `itap db` commands.
#[derive(Debug, Args)]
pub(crate) struct DbCommand {
    #[command(subcommand)]
    command: DbSub,
}

#[derive(Debug, Subcommand)]
enum DbSub {
    /// Dataset metrics: rows, time span, rows per device, missing rate per signal,
    /// fault tags and error codes.
    Stats(StatsArgs),
    /// The ingest ledger: every ingest with its counts and status, newest first.
    Ledger(StatsArgs),
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    db: DbArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Opens the store named by the settings.
async fn connect(cfg: &itap::StoreSettings) -> Result<Store> {
    cfg.connect()
        .await
        .with_context(|| format!("cannot open the database {}", cfg.url))
}

pub(crate) fn run(cmd: &DbCommand, out: Output) -> Result<ExitCode> {
    let args = match &cmd.command {
        DbSub::Stats(a) | DbSub::Ledger(a) => a,
    };
    let config = Config::load(args.config.config.as_deref())?;
    let cfg = config.store_settings(&args.db, None, None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = connect(&cfg).await?;
        match &cmd.command {
            DbSub::Stats(_) => {
                let s = store.stats(&cfg.dataset).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else if !out.quiet {
                    let ts = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), format_timestamp);
                    println!("dataset `{}` in {}", s.dataset, cfg.url);
                    println!("  rows        {}", s.rows);
                    println!("  time        {} … {}", ts(s.first_us), ts(s.last_us));
                    println!("  devices     {}", s.rows_per_device.len());
                    for (d, n) in s.rows_per_device.iter().take(10) {
                        println!("    {d:<20} {n}");
                    }
                    if s.rows_per_device.len() > 10 {
                        println!(
                            "    … {} more (--json lists all)",
                            s.rows_per_device.len() - 10
                        );
                    }
                    println!("  missing");
                    for (sig, n, rate) in &s.missing {
                        println!("    {sig:<20} {n:>10} {:>8.3}%", rate * 100.0);
                    }
                    println!(
                        "  fault tags  {} rows ({:.2}%)",
                        s.tagged_rows,
                        s.tag_rate * 100.0
                    );
                    for (t, n) in &s.tags {
                        println!("    {t:<20} {n:>10}");
                    }
                    println!(
                        "  error codes {} rows ({:.2}%)",
                        s.error_rows,
                        s.error_rate * 100.0
                    );
                    for (c, n) in &s.errors {
                        println!("    {c:<20} {n:>10}");
                    }
                    // Filled by `itap serve`.
                    let (rejects, scores) = store.live_counts(&cfg.dataset).await?;
                    if rejects + scores > 0 {
                        println!("  live        {scores} rows scored, {rejects} messages refused");
                    }
                }
            }
            DbSub::Ledger(_) => {
                let entries = store.ledger(Some(&cfg.dataset)).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&entries)?);
                } else if !out.quiet {
                    println!(
                        "{:>4} {:<12} {:<24} {:>9} {:>9} {:>9} {:>9} {:>9}  source",
                        "id",
                        "status",
                        "started",
                        "read",
                        "inserted",
                        "dupl.",
                        "confl.",
                        "rejected"
                    );
                    for e in &entries {
                        println!(
                            "{:>4} {:<12} {:<24} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                            e.id,
                            e.status,
                            format_timestamp(e.started_us),
                            e.rows_read,
                            e.counts.inserted,
                            e.counts.duplicates,
                            e.counts.conflicts,
                            e.rejected,
                            e.source_path
                        );
                    }
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
