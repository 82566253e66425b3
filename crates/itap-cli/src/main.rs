//! `itap`: the ITAP command line. A thin layer over the `itap` library: it reads the
//! config and flags, calls the pipeline, shows progress and prints results.

mod alerts;
mod config;
mod data;
mod db;
mod features;
mod fmt;
mod generate;
mod hint;
mod ingest;
mod inspect;
mod replay;
mod run;
mod score;
mod serve;
mod train;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// ITAP, the Industrial Telemetry Analytics Platform.
///
/// Simulates or reads machine telemetry, validates it, stores it in SQL, engineers
/// features, detects anomalies without labels and evaluates them honestly.
/// `itap run` does all of it in one command.
#[derive(Debug, Parser)]
#[command(name = "itap", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    verbosity: Verbosity,

    #[command(subcommand)]
    command: Command,
}

/// Verbosity flags shared by every command.
#[derive(Debug, Args)]
struct Verbosity {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Print nothing but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a fleet's telemetry, with injected faults and ground truth, into a CSV.
    Generate(generate::GenerateArgs),
    /// Read a telemetry CSV and show how its columns were understood.
    Inspect(inspect::InspectArgs),
    /// Check a telemetry CSV before it is stored: report, quarantine, exit status.
    Validate(validate::ValidateArgs),
    /// Validate a telemetry CSV, then store it idempotently in SQLite or PostgreSQL.
    Ingest(ingest::IngestArgs),
    /// Look into the database: dataset metrics, the ingest ledger.
    Db(db::DbCommand),
    /// List the feature catalogue, or compute a telemetry CSV's features (causal,
    /// per device) into CSV or Parquet.
    Features(features::FeaturesArgs),
    /// Fit features, scaler and detector on the training span; write the model file.
    Train(train::TrainArgs),
    /// Score telemetry with a saved model; evaluate; write scores, metrics, report.
    Score(score::ScoreArgs),
    /// The whole pipeline: generate (or read), validate, ingest, train, score,
    /// evaluate, report — with each stage's rows and wall time.
    Run(run::RunArgs),
    /// List the alerts stored by `itap run`, in time order: device, time span,
    /// severity, dominant family, route and the rule that opened each.
    Alerts(alerts::AlertsArgs),
    /// Play a telemetry CSV into an MQTT broker: one JSON message per row, QoS 1,
    /// in time order, at the data's own pace sped up or at a fixed rate.
    Replay(replay::ReplayArgs),
    /// Live: subscribe to MQTT telemetry and validate, store, score and alert on
    /// each message as it arrives, until SIGINT/SIGTERM; with --http, the
    /// dashboard and JSON API too (or, with --artifacts, over a batch run).
    Serve(serve::ServeArgs),
}

/// The config file flag, shared by commands.
#[derive(Debug, Args)]
struct ConfigArg {
    /// TOML config file (see configs/local.example.toml); flags override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Which database and dataset, shared by the commands that use the store.
#[derive(Debug, Args)]
struct DbArgs {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST:PORT/DB
    /// [config: store.url, default sqlite://data/itap.db].
    #[arg(long, value_name = "URL")]
    db: Option<String>,

    /// Dataset (table) name [config: store.dataset, default telemetry].
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,

    /// PostgreSQL only: the schema to work in, created if missing [config: store.pg_schema].
    #[arg(long, value_name = "NAME")]
    pg_schema: Option<String>,
}

/// Where and how to report.
#[derive(Debug, Clone, Copy)]
struct Output {
    quiet: bool,
}

fn init_tracing(v: &Verbosity) {
    let level = match (v.quiet, v.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ITAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Restores the default SIGPIPE action, so `itap … | head` ends quietly when
/// `head` stops reading (Rust ignores SIGPIPE, which turns every later print into
/// a panic). With [`return_large_frees`] (and, in itap-store, SQLite's connection
/// handle taken from sqlx to bind a chunk's rows), the only unsafe code in the
/// workspace: there is no safe API for either.
#[allow(unsafe_code)]
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread is started; setting a
    // signal's disposition to SIG_DFL has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Has glibc's allocator give every block of 1 MiB or more a mapping of its own,
/// returned to the system when freed, and trim the heap beyond 1 MiB free. By
/// default glibc raises that limit (up to 32 MiB) each time a large block is
/// freed; blocks of a few MiB (the feature engine's chunk buffers, the
/// evaluation's lists) then come from the heap and stay in the resident set after
/// they are freed, while the next large block is mapped anew. Measured on
/// `itap run` at 8.64 M rows: peak RSS 1,070–1,114 MiB without, 1,023 MiB with,
/// the stage times unchanged. It also caps glibc's arenas at two: each thread
/// that allocates gets an arena of its own (up to eight per core), and what a
/// thread frees below the mapping limit stays in its arena for that arena's
/// next use; with the run's threads sharing two, it is used again sooner (at
/// 8.64 M rows: 932–968 MiB in three runs without the cap, 936–937 MiB in
/// three with it, the stage times unchanged). For the batch commands only
/// (see `main`); other platforms and C libraries: nothing is done.
#[allow(unsafe_code)]
fn return_large_frees() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, and is called in
    // main before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    reset_sigpipe();
    let cli = Cli::parse();
    // The batch commands' large buffers; the long-running server and the replay
    // keep glibc's adaptive limits (their buffers are small; not measured with
    // this setting). Still before any thread is started.
    if !matches!(cli.command, Command::Serve(_) | Command::Replay(_)) {
        return_large_frees();
    }
    init_tracing(&cli.verbosity);
    let out = Output {
        quiet: cli.verbosity.quiet,
    };
    let result = match &cli.command {
        Command::Generate(args) => generate::run(args, out),
        Command::Inspect(args) => inspect::run(args, out),
        Command::Ingest(args) => ingest::run(args, out),
        Command::Db(cmd) => db::run(cmd, out),
        Command::Features(args) => features::run(args, out),
        Command::Validate(args) => validate::run(args, out),
        Command::Train(args) => train::run(args, out),
        Command::Score(args) => score::run(args, out),
        Command::Run(args) => run::run(args, out),
        Command::Alerts(args) => alerts::run(args, out),
        Command::Replay(args) => replay::run(args, out),
        Command::Serve(args) => serve::run(args, out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear sentence: the chain of causes, outermost first.
            // A cause already quoted by the message above it is not repeated.
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if msg.ends_with(&cause) {
                    continue;
                }
                if !msg.is_empty() {
                    msg.push_str(": ");
                }
                msg.push_str(&cause);
            }
            if let Some(h) = hint::for_error(&e) {
                msg.push_str(&format!(" (in itap: {h})"));
            }
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
