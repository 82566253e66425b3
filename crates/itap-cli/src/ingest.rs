//! `itap ingest`: validate a telemetry CSV, then store it idempotently.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use itap::store::OnConflict;
use itap::validate::{Policy, Report};

use crate::config::Config;
use crate::{ConfigArg, DbArgs, Output};

/// Flags of `itap ingest`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = "\
Validates the file first: a file with error-severity findings stores nothing,
unless the quarantine policy is chosen (then its good rows are stored and the bad
ones written to --quarantine). Re-running the same file inserts nothing.

Exit status: 0 stored, 1 refused by validation, 2 usage, I/O or database error.

Example: itap ingest data/raw/telemetry.csv --db sqlite://data/itap.db")]
pub(crate) struct IngestArgs {
    /// The CSV file to store.
    input: PathBuf,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    db: DbArgs,

    #[command(flatten)]
    signals: crate::config::SignalsFlag,

    /// keep (stored rows win; incoming differing rows are counted as conflicts) or
    /// update (incoming rows replace them) [config: store.on_conflict, default keep].
    #[arg(long, value_name = "POLICY")]
    on_conflict: Option<OnConflict>,

    /// Write rows with an error here (CSV with reasons); implies the quarantine
    /// policy unless --policy says otherwise.
    #[arg(long, value_name = "PATH")]
    quarantine: Option<PathBuf>,

    /// reject (a file with error rows stores nothing) or quarantine (its good rows
    /// are stored) [config: validation.policy, default reject].
    #[arg(long, value_name = "POLICY")]
    policy: Option<Policy>,

    /// Rows per transaction, exactly [config: store.chunk_rows, default 65536,
    /// which a file of more than 256 devices raises to
    /// store.chunk_rows_per_device (256) rows per device, up to 1,048,576].
    #[arg(long, value_name = "N")]
    chunk_rows: Option<usize>,

    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// What `itap ingest --json` prints.
#[derive(Debug, Serialize)]
struct IngestOutput<'a> {
    input: String,
    sha256: &'a str,
    db: &'a str,
    dataset: &'a str,
    verdict: &'a str,
    read: u64,
    inserted: u64,
    duplicates: u64,
    conflicts: u64,
    updated: u64,
    rejected: u64,
    on_conflict: &'a str,
    ledger_id: Option<i64>,
    seconds: f64,
    error: Option<String>,
}

pub(crate) fn run(args: &IngestArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let opts = config.read_options()?;
    let policy = args
        .policy
        .or(args.quarantine.as_ref().map(|_| Policy::Quarantine));
    let params = config.validation_params(policy, &args.signals)?;
    let store_cfg = config.store_settings(&args.db, args.on_conflict, args.chunk_rows)?;
    let started = Instant::now();

    let progress = if out.quiet || args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .expect("static template is valid"),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    progress.set_message(format!("validating {}", args.input.display()));
    let mut on_progress = |written: u64, total: u64| {
        progress.set_message(format!(
            "storing {total} rows into `{}`: {written} written",
            store_cfg.dataset
        ));
    };
    let result = crate::data::runtime()?.block_on(itap::ingest_file(
        &args.input,
        &opts,
        &params,
        args.quarantine.as_deref(),
        &store_cfg,
        &mut on_progress,
    ));
    progress.finish_and_clear();
    let (report, ingest) = match result {
        Ok(done) => done,
        Err(itap::Error::Refused { reason, report, .. }) => {
            return refused(args, &store_cfg, &report, &reason, started);
        }
        Err(e @ itap::Error::Validate(_)) => {
            return Err(e).with_context(|| format!("cannot validate {}", args.input.display()));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot store {}", args.input.display())),
    };
    let sha = report.input.sha256.clone().unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let c = &ingest.counts;
    if args.json {
        print_json(&IngestOutput {
            input: args.input.display().to_string(),
            sha256: &sha,
            db: &store_cfg.url,
            dataset: &store_cfg.dataset,
            verdict: report.verdict.as_str(),
            read: ingest.rows_read,
            inserted: c.inserted,
            duplicates: c.duplicates,
            conflicts: c.conflicts,
            updated: c.updated,
            rejected: ingest.rejected,
            on_conflict: store_cfg.on_conflict.as_str(),
            ledger_id: Some(ingest.ledger_id),
            seconds,
            error: None,
        })?;
    } else if !out.quiet {
        println!(
            "{} → {} (dataset `{}`): read {}, inserted {}, duplicates {}, conflicts {}{}, rejected {} in {:.2} s ({:.0} rows/s)",
            args.input.display(),
            store_cfg.url,
            store_cfg.dataset,
            ingest.rows_read,
            c.inserted,
            c.duplicates,
            c.conflicts,
            if c.updated > 0 {
                format!(" ({} updated)", c.updated)
            } else {
                String::new()
            },
            ingest.rejected,
            seconds,
            ingest.rows_read as f64 / seconds.max(1e-9)
        );
        if c.conflicts > 0 && store_cfg.on_conflict == OnConflict::Keep {
            println!(
                "  {} rows differ from stored rows with the same key and were kept as stored; \
                 --on-conflict update replaces them",
                c.conflicts
            );
        }
        if let (Some(q), true) = (&args.quarantine, ingest.rejected > 0) {
            println!(
                "  {} rejected rows written to {}",
                ingest.rejected,
                q.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Says why validation refused the file (nothing was stored): exit status 1.
fn refused(
    args: &IngestArgs,
    store_cfg: &itap::StoreSettings,
    report: &Report,
    reason: &str,
    started: Instant,
) -> Result<ExitCode> {
    if args.json {
        print_json(&IngestOutput {
            input: args.input.display().to_string(),
            sha256: report.input.sha256.as_deref().unwrap_or_default(),
            db: &store_cfg.url,
            dataset: &store_cfg.dataset,
            verdict: report.verdict.as_str(),
            read: report.rows,
            inserted: 0,
            duplicates: 0,
            conflicts: 0,
            updated: 0,
            rejected: report.rows,
            on_conflict: store_cfg.on_conflict.as_str(),
            ledger_id: None,
            seconds: started.elapsed().as_secs_f64(),
            error: Some(reason.to_owned()),
        })?;
    } else {
        eprintln!(
            "refused: {} has error-severity findings, so nothing was stored ({reason}); \
             run `itap validate {}` for the full report, or choose --policy quarantine to store its good rows",
            args.input.display(),
            args.input.display()
        );
    }
    Ok(ExitCode::from(1))
}

fn print_json(o: &IngestOutput<'_>) -> Result<()> {
    println!("{}", serde_json::to_string(o)?);
    Ok(())
}
