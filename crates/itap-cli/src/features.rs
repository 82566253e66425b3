//! `itap features`: list the feature catalogue, or compute the features of a
//! telemetry CSV and write them as CSV or Parquet.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use itap::features::{
    CheckedFeatures, FeatureInfo, FeaturesFit, TrainSpan, WindowEngine, catalogue, describe_period,
    fit, transform,
};
use itap::telemetry::{CsvReader, Schema, TimeZone, parse_timestamp, read_csv};

use crate::config::{Config, check_features};
use crate::fmt::thousands;
use crate::{ConfigArg, Output};

/// Flags of `itap features`; each overrides the config file's `[features]`.
#[derive(Debug, Args)]
#[command(after_help = "\
Without --fit, the state baselines and seasonal profiles are learned on the first
train_fraction of the input's time span (default 0.7, config features.train_fraction,
flag --train-fraction) or on the rows up to --train-until, and applied unchanged to
every row; the features of a row use only rows of its device at or before it.

Examples:
  itap features --list
  itap features data/raw/telemetry.csv --out artifacts/features.parquet
  itap features data/raw/telemetry.csv --out f.csv --save-fit artifacts/features_fit.json")]
pub(crate) struct FeaturesArgs {
    /// The telemetry CSV (with --list: optional, to list the features of its signals).
    input: Option<PathBuf>,

    #[command(flatten)]
    config: ConfigArg,

    /// Print the feature catalogue (name, source, meaning) and exit.
    #[arg(long)]
    list: bool,

    /// With --list: print the catalogue as JSON.
    #[arg(long, requires = "list")]
    json: bool,

    /// Where to write the features with their keys (timestamp, device_id): Parquet
    /// when the name ends in .parquet, CSV otherwise; folders are created.
    #[arg(short, long, value_name = "PATH", required_unless_present = "list")]
    out: Option<PathBuf>,

    /// Fit on this first share of the time span [config: features.train_fraction,
    /// default 0.7].
    #[arg(long, value_name = "F", conflicts_with_all = ["train_until", "fit"])]
    train_fraction: Option<f64>,

    /// Fit on the rows at or before this time (RFC 3339) instead.
    #[arg(long, value_name = "TIME", conflicts_with = "fit")]
    train_until: Option<String>,

    /// Apply a fit saved with --save-fit instead of fitting (its parameters are used).
    #[arg(long, value_name = "FILE")]
    fit: Option<PathBuf>,

    /// Save the fit (baselines, seasonal profiles, parameters) as JSON.
    #[arg(long, value_name = "FILE")]
    save_fit: Option<PathBuf>,

    /// Trailing windows, comma-separated: durations (5m, 1h) or row counts (30rows)
    /// [config: features.windows, default 5m].
    #[arg(long, value_name = "W,…", value_delimiter = ',')]
    windows: Vec<String>,

    /// What computes the windowed statistics: polars or native
    /// [config: features.window_engine, default polars].
    #[arg(long, value_name = "ENGINE")]
    window_engine: Option<WindowEngineArg>,
}

/// `--window-engine` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WindowEngineArg {
    Polars,
    Native,
}

pub(crate) fn run(args: &FeaturesArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let mut params = config.features.clone();
    if !args.windows.is_empty() {
        params.windows = args.windows.clone();
    }
    if let Some(e) = args.window_engine {
        params.window_engine = match e {
            WindowEngineArg::Polars => WindowEngine::Polars,
            WindowEngineArg::Native => WindowEngine::Native,
        };
    }
    if let Some(f) = args.train_fraction {
        params.train_fraction = f;
    }
    let checked = check_features(params)?;
    if args.list {
        return list(args, &config, &checked);
    }
    let (Some(input), Some(path)) = (&args.input, &args.out) else {
        bail!("give the telemetry CSV to compute features of, and --out PATH (or --list)");
    };
    let opts = config.read_options()?;
    let started = Instant::now();
    let batch =
        read_csv(input, &opts).with_context(|| format!("cannot read {}", input.display()))?;
    let read_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (fitted, how) = match &args.fit {
        Some(file) => (
            load_fit(file)?,
            format!("fit loaded from {}", file.display()),
        ),
        None => {
            let (span, how) = match &args.train_until {
                Some(t) => {
                    let t = parse_timestamp(t, TimeZone::UTC).with_context(
                        || "--train-until needs a time such as 2026-01-01T04:00:00Z",
                    )?;
                    (TrainSpan::Until(t), "rows up to --train-until".to_owned())
                }
                None => (
                    TrainSpan::Fraction(checked.params().train_fraction),
                    format!(
                        "the first {:.0}% of the time span",
                        100.0 * checked.params().train_fraction
                    ),
                ),
            };
            (fit(&batch, span, &checked)?, format!("fitted on {how}"))
        }
    };
    let fit_s = started.elapsed().as_secs_f64();
    if let Some(file) = &args.save_fit {
        save_fit(&fitted, file)?;
    }
    let started = Instant::now();
    let matrix = transform(&batch, &fitted)?;
    let transform_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    matrix
        .write(path)
        .with_context(|| format!("cannot write the features to {}", path.display()))?;
    let write_s = started.elapsed().as_secs_f64();

    if !out.quiet {
        let rows = batch.len();
        println!(
            "{}: {} rows × {} features in {:.2} s ({} rows/s)",
            input.display(),
            thousands(rows as u64),
            matrix.n_features(),
            transform_s,
            thousands((rows as f64 / transform_s.max(1e-9)) as u64)
        );
        print!("  {how}");
        match fitted.train_bounds() {
            Some((a, b)) if args.fit.is_none() => {
                println!(
                    ": {} rows, {a} … {b}",
                    thousands(fitted.train_rows() as u64)
                );
            }
            _ => println!(),
        }
        for s in fitted.seasonal() {
            if s.period_us.is_some() {
                println!("  seasonal {}", describe_period(s));
            }
        }
        println!(
            "  read {read_s:.2} s, fit {fit_s:.2} s, features {transform_s:.2} s, write {write_s:.2} s"
        );
        println!("wrote {}", path.display());
        if let Some(file) = &args.save_fit {
            println!("fit   {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--list`: the catalogue for the input's signals, or the configured ones.
fn list(args: &FeaturesArgs, config: &Config, checked: &CheckedFeatures) -> Result<ExitCode> {
    let schema: Schema = match &args.input {
        Some(input) => {
            let opts = config.read_options()?;
            CsvReader::open(input, &opts)
                .with_context(|| format!("cannot read {}", input.display()))?
                .layout()
                .schema
                .clone()
        }
        None => Schema::new(
            config
                .sim_params()?
                .signals
                .into_iter()
                .map(|s| s.signal)
                .collect(),
        )?,
    };
    let cat = catalogue(checked, &schema)?;
    let mut text = String::new();
    if args.json {
        #[derive(Serialize)]
        struct Listing<'a> {
            features: usize,
            catalogue: &'a [FeatureInfo],
        }
        text = serde_json::to_string_pretty(&Listing {
            features: cat.len(),
            catalogue: &cat,
        })?;
        text.push('\n');
    } else {
        use std::fmt::Write as _;
        let width = cat.iter().map(|f| f.name.len()).max().unwrap_or(4).max(4);
        let swidth = cat.iter().map(|f| f.source.len()).max().unwrap_or(6).max(6);
        let _ = writeln!(text, "{:width$}  {:swidth$}  meaning", "name", "source");
        for f in &cat {
            let _ = writeln!(
                text,
                "{:width$}  {:swidth$}  {}",
                f.name, f.source, f.meaning
            );
        }
        let _ = writeln!(
            text,
            "{} features from {} signal{} (windows: {}; docs/features.md explains each kind)",
            cat.len(),
            schema.len(),
            if schema.len() == 1 { "" } else { "s" },
            checked.params().windows.join(", ")
        );
    }
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the catalogue to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn load_fit(path: &Path) -> Result<FeaturesFit> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the fit {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a features fit (written by --save-fit)",
            path.display()
        )
    })
}

fn save_fit(fit: &FeaturesFit, path: &Path) -> Result<()> {
    itap::eval::write_json(fit, path)
        .with_context(|| format!("cannot write the fit to {}", path.display()))
}
