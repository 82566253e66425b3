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

A stored dataset with more rows than [model] group_rows (default 1,000,000) is
read a group of devices at a time, so memory stays bounded whatever its size:
each device's baselines from its own rows, the fleet-wide baselines and seasonal
profiles from a seeded sample of devices (all of them when the dataset has no
more rows than that), the scaler and detector from the same seeded sample of
rows as in memory. group_rows = 0 loads the dataset whole.

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
    let started = Instant::now();
    let trained = match crate::data::in_groups(&args.data, &config)? {
        Some(groups) => {
            train_in_groups(groups, &config, &eval, &training, &features, &detector, out)?
        }
        None => {
            let loaded = match load(&args.data, &config, &default_quarantine)? {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
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
            Trained {
                model,
                threshold,
                rows: loaded.batch.len() as u64,
                input: loaded.input.path.clone(),
                loaded: Some(loaded),
                groups: None,
            }
        }
    };
    let Trained {
        model,
        threshold,
        rows,
        input,
        loaded,
        groups,
    } = trained;
    model.save(&path)?;
    let seconds = started.elapsed().as_secs_f64();
    let t = &model.training;
    if args.json {
        let o = TrainOutput {
            model: path.display().to_string(),
            detector: model.describe(),
            input: &input,
            training: t,
            features: &model.feature_names,
            threshold: threshold.value,
            threshold_rule: threshold.rule,
            rows_quarantined: loaded
                .as_ref()
                .and_then(|l| l.quarantined.as_ref().map(|q| q.0)),
            seconds,
        };
        println!("{}", serde_json::to_string(&o)?);
    } else if !out.quiet {
        println!(
            "trained {} on {} ({} rows)",
            model.describe(),
            input,
            thousands(rows)
        );
        if let Some(l) = &loaded {
            l.print_quarantined();
        }
        if let (Some(n), Some(devices)) = (groups, t.fleet_devices) {
            println!(
                "  read           {n} groups of devices of at most {} rows ([model] group_rows); fleet-wide baselines and profiles from {} devices",
                thousands(config.model.group_rows),
                thousands(devices)
            );
        }
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
                "  sample         {} of them fit the scaler and the detector (seeded hash; [model] max_training_rows)",
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

/// A model, its threshold, and what it was trained on.
struct Trained {
    model: itap::ModelFile,
    threshold: itap::eval::Threshold,
    rows: u64,
    input: String,
    /// The rows, when they were loaded whole.
    loaded: Option<crate::data::Loaded>,
    /// The groups of devices read, when read a group at a time.
    groups: Option<usize>,
}

/// Trains on a stored dataset a group of devices at a time, with a progress bar.
#[allow(clippy::too_many_arguments)]
fn train_in_groups(
    (mut groups, input): (itap::StoreGroups, String),
    config: &Config,
    eval: &itap::eval::CheckedEval,
    training: &itap::TrainingSet,
    features: &itap::features::CheckedFeatures,
    detector: &itap::anomaly::CheckedDetector,
    out: Output,
) -> Result<Trained> {
    use itap::DeviceGroups;
    if matches!(eval.rule(), itap::eval::ThresholdRule::TargetFalseAlerts(_)) {
        anyhow::bail!(
            "[eval] target_false_alerts_per_device_day sets the threshold by replaying the alerts over every held-back row, which training a group of devices at a time does not hold; use eval.threshold_quantile, or set [model] group_rows = 0 to load the dataset whole"
        );
    }
    let rows: u64 = groups.devices().iter().map(|d| d.1).sum();
    let group_rows = config.model.group_rows;
    let bar = crate::data::group_bar(&groups, "training on", out);
    let mut n = 0;
    let how = itap::GroupedTraining {
        eval,
        set: training,
        features,
        detector,
        group_rows,
        fleet_rows: group_rows,
    };
    let model = itap::train_grouped(&mut groups, &how, &mut |done, _| {
        n += 1;
        bar.set_position(done as u64);
    })
    .map_err(in_config)
    .context("cannot train")?;
    bar.finish_and_clear();
    groups.close();
    let threshold = eval.threshold(&model.training_scores)?;
    Ok(Trained {
        model,
        threshold,
        rows,
        input,
        loaded: None,
        groups: Some(n),
    })
}
