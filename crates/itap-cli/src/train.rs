//! `itap train`: fit features, scaler and detector on the training span, write the
//! model file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::config::{Config, TrainFlags, in_config};
use crate::data::{DataArgs, load};
use crate::fmt::thousands;
use crate::{ConfigArg, Output};

/// Flags of `itap train`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = "\
Reads the telemetry from the database (default sqlite://data/itap.db, dataset
`telemetry`) or from --input, splits its time span at --train-fraction (or
--train-until), and fits the features' baselines, the scaler and the detector on
the training span only: by default on its rows that are not in MAINT and carry no
fault tag (\"normal operation\"); --unsupervised takes every row and no labels.
The model file records the span, the exclusions, the feature names and the
training-score quantiles that thresholds are taken from.

With --input, a file with error rows is refused under the default --policy
reject; --policy quarantine sets those rows aside (into --quarantine, by default
quarantine.csv next to the model file, with their reasons) and trains on the rest.

Exit status: 0 trained, 1 the input was refused by validation, 2 usage, I/O,
database or training error.

Examples:
  itap train
  itap train --input data/raw/telemetry.csv --detector iforest --model artifacts/iforest.json
  itap train --train-until 2026-01-01T04:00:00Z --unsupervised")]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,

    #[command(flatten)]
    config: ConfigArg,

    #[command(flatten)]
    flags: TrainFlags,

    /// Where to write the model [config: model.path, default artifacts/model.json].
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,

    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// What `itap train --json` prints.
#[derive(Debug, Serialize)]
struct TrainOutput<'a> {
    model: String,
    detector: String,
    input: &'a str,
    training: &'a itap::TrainingInfo,
    features: &'a [String],
    threshold: f64,
    threshold_rule: itap::eval::ThresholdRule,
    /// Rows of --input set aside under the quarantine policy (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_quarantined: Option<u64>,
    seconds: f64,
}

pub(crate) fn run(args: &TrainArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let features = config.feature_params()?;
    let detector = config.detector_params(&args.flags)?;
    let training = config.training_set(&args.flags, &features)?;
    let eval = config.eval_params(&args.flags)?;
    let path = args
        .model
        .clone()
        .unwrap_or_else(|| config.model.path.clone());

    let default_quarantine = path
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join(itap::QUARANTINE_FILE);
    let loaded = match load(&args.data, &config, &default_quarantine)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let started = Instant::now();
    let split = itap::split_by_time(&loaded.batch, &eval)?;
    let itap::TrainedScores { model, scores } =
        itap::train_and_score(&loaded.batch, &split, &training, &features, &detector)
            .map_err(in_config)
            .context("cannot train")?;
    let threshold = itap::threshold_for_scores(
        &loaded.batch,
        &scores,
        &model,
        &eval,
        &config.alert_params()?,
    )
    .map_err(in_config)?;
    model.save(&path)?;
    let seconds = started.elapsed().as_secs_f64();
    let t = &model.training;
    if args.json {
        let o = TrainOutput {
            model: path.display().to_string(),
            detector: model.describe(),
            input: &loaded.input.path,
            training: t,
            features: &model.feature_names,
            threshold: threshold.value,
            threshold_rule: threshold.rule,
            rows_quarantined: loaded.quarantined.as_ref().map(|q| q.0),
            seconds,
        };
        println!("{}", serde_json::to_string(&o)?);
    } else if !out.quiet {
        println!(
            "trained {} on {} ({} rows)",
            model.describe(),
            loaded.input.path,
            thousands(loaded.batch.len() as u64)
        );
        loaded.print_quarantined();
        println!(
            "  training span  {} – {} ({} rows)",
            t.first,
            t.until,
            thousands(t.rows_in_span)
        );
        println!(
            "  rows used      {} (left out: {} by state, {} tagged as faulty)",
            thousands(t.rows_used),
            thousands(t.excluded_by_state),
            thousands(t.excluded_as_faulty)
        );
        if let Some(n) = t.rows_sampled {
            println!(
                "  sample         {} of them fit the scaler and the detector (seeded; [model] max_training_rows)",
                thousands(n)
            );
        }
        println!(
            "  exclusions     {}",
            if t.exclusions.is_empty() {
                "none".to_owned()
            } else {
                t.exclusions.join("; ")
            }
        );
        println!(
            "  features       {}: {}",
            model.feature_names.len(),
            model.feature_names.join(", ")
        );
        println!(
            "  threshold      {:.4} ({})",
            threshold.value,
            crate::fmt::threshold_rule(&threshold)
        );
        println!("  wrote          {} in {seconds:.2} s", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
