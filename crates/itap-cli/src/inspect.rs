//! `itap inspect`: read a telemetry CSV and show how its columns were understood.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use itap::telemetry::{CsvReader, TimeZone, TruthColumn, format_timestamp};

use crate::config::Config;
use crate::{ConfigArg, Output};

/// Flags of `itap inspect`; each overrides the config file's `[telemetry.input]`.
#[derive(Debug, Args)]
#[command(after_help = "Example: itap inspect testdata/seed_telemetry_54k.csv")]
pub(crate) struct InspectArgs {
    /// The CSV file to read.
    input: PathBuf,

    #[command(flatten)]
    config: ConfigArg,

    /// Name of the timestamp column (default: found by common names).
    #[arg(long, value_name = "NAME")]
    timestamp_column: Option<String>,

    /// Name of the device column (default: found by common names; none = one device).
    #[arg(long, value_name = "NAME")]
    device_column: Option<String>,

    /// Signal columns, comma-separated (default: every numeric column not otherwise mapped).
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    signals: Vec<String>,

    /// Zone of timestamps written without an offset: UTC or +HH:MM (default UTC).
    #[arg(long, value_name = "ZONE")]
    timezone: Option<TimeZone>,

    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    path: String,
    rows: usize,
    devices: usize,
    first: Option<String>,
    last: Option<String>,
    timestamp_column: String,
    device_column: Option<String>,
    state_column: bool,
    error_code_column: bool,
    truth_column: Option<String>,
    ignored_columns: Vec<String>,
    signals: Vec<SignalSummary>,
    tags: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
struct SignalSummary {
    name: String,
    unit: String,
    missing: usize,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

pub(crate) fn run(args: &InspectArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let mut opts = config.read_options()?;
    if args.timestamp_column.is_some() {
        opts.timestamp_column = args.timestamp_column.clone();
    }
    if args.device_column.is_some() {
        opts.device_column = args.device_column.clone();
    }
    if !args.signals.is_empty() {
        opts.signals = args.signals.clone();
    }
    if let Some(tz) = args.timezone {
        opts.timezone = tz;
    }
    let reader = CsvReader::open(&args.input, &opts)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let layout = reader.layout().clone();
    let batch = reader.read_all()?;

    let signals = batch
        .schema()
        .signals()
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let col = batch.signal(k);
            let present: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
            let finite = present.iter().copied().filter(|v| v.is_finite());
            SignalSummary {
                name: s.name.clone(),
                unit: s.unit.clone(),
                missing: col.len() - present.len(),
                min: present.iter().copied().reduce(f64::min),
                max: present.iter().copied().reduce(f64::max),
                mean: (!present.is_empty())
                    .then(|| finite.clone().sum::<f64>() / finite.count().max(1) as f64),
            }
        })
        .collect();
    let mut tags = BTreeMap::new();
    for r in 0..batch.len() {
        if let Some(t) = batch.tag_of(r) {
            *tags.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    let bounds = batch.time_bounds();
    let summary = Summary {
        path: args.input.display().to_string(),
        rows: batch.len(),
        devices: batch.device_names().len(),
        first: bounds.map(|b| format_timestamp(b.0)),
        last: bounds.map(|b| format_timestamp(b.1)),
        timestamp_column: layout.column_name(layout.timestamp).to_owned(),
        device_column: layout.device.map(|i| layout.column_name(i).to_owned()),
        state_column: layout.state.is_some(),
        error_code_column: layout.error_code.is_some(),
        truth_column: layout.truth.map(|t| match t {
            TruthColumn::Tag(i) | TruthColumn::Label(i) => layout.column_name(i).to_owned(),
        }),
        ignored_columns: layout
            .ignored
            .iter()
            .map(|&i| layout.column_name(i).to_owned())
            .collect(),
        signals,
        tags,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !out.quiet {
        print_summary(&summary, &layout.default_device);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &Summary, default_device: &str) {
    println!("{}: {} rows, {} devices", s.path, s.rows, s.devices);
    if let (Some(a), Some(b)) = (&s.first, &s.last) {
        println!("  time      {a} … {b}");
    }
    println!("  timestamp column `{}`", s.timestamp_column);
    match &s.device_column {
        Some(d) => println!("  device    column `{d}`"),
        None => println!("  device    none in the file: one device, `{default_device}`"),
    }
    println!(
        "  state     {}   error_code {}   ground truth {}",
        if s.state_column { "yes" } else { "no" },
        if s.error_code_column { "yes" } else { "no" },
        s.truth_column.as_deref().unwrap_or("none")
    );
    if !s.ignored_columns.is_empty() {
        println!("  ignored   {}", s.ignored_columns.join(", "));
    }
    println!(
        "  {:<16} {:>8} {:>8} {:>12} {:>12} {:>12}",
        "signal", "unit", "missing", "min", "max", "mean"
    );
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    for g in &s.signals {
        println!(
            "  {:<16} {:>8} {:>8} {:>12} {:>12} {:>12}",
            g.name,
            g.unit,
            g.missing,
            num(g.min),
            num(g.max),
            num(g.mean)
        );
    }
    for (tag, n) in &s.tags {
        println!("  tag {tag:<20} {n} rows");
    }
}
