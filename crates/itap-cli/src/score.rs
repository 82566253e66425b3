//! `itap score`: score telemetry with a saved model, evaluate where there are
//! labels, write scores.csv, metrics.json and report.html.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use itap::ModelFile;

use crate::config::{Config, TrainFlags, in_config};
use crate::data::{DataArgs, load};
use crate::fmt::{metric, thousands};
use crate::{ConfigArg, Output};

/// Flags of `itap score`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = "\
Scores every row with the model's fitted pieces, unchanged (features' baselines,
scaler, detector), flags rows above the model's training-score threshold
([eval] threshold_quantile or target_alert_rate) and evaluates the rows after the
model's training cut — the same split `itap train` used. Writes scores.csv (one
line per row), metrics.json and report.html into --out.

With --input, a file with error rows is refused under the default --policy
reject; --policy quarantine sets those rows aside (into --quarantine, by default
quarantine.csv in --out, with their reasons) and scores the rest.

Exit status: 0 scored, 1 the input was refused by validation, 2 usage, I/O,
database or model error (a model trained on other signals names the missing and
extra features).

Examples:
  itap score
  itap score --input data/raw/telemetry.csv --model artifacts/model.json --out artifacts")]
pub(crate) struct ScoreArgs {
    #[command(flatten)]
    data: DataArgs,

    #[command(flatten)]
    config: ConfigArg,

    /// The model file [config: model.path, default artifacts/model.json].
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,

    /// Folder for scores.csv, metrics.json and report.html [config: output.dir,
    /// default artifacts].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: &ScoreArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let eval = config.eval_params(&TrainFlags::default())?;
    let model_path = args
        .model
        .clone()
        .unwrap_or_else(|| config.model.path.clone());
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| config.output.dir.clone());
    let model = ModelFile::load(&model_path)?;
    let loaded = match load(&args.data, &config, &dir.join(itap::QUARANTINE_FILE))? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let started = Instant::now();
    let split = itap::split_at_model_cut(&loaded.batch, &model, &model_path)?;
    let scores = model
        .score_rows(&loaded.batch)
        .with_context(|| format!("cannot score with {}", model_path.display()))?;
    let score_seconds = started.elapsed().as_secs_f64();
    let ctx = itap::RunContext {
        input: loaded.input.clone(),
        config: serde_json::json!({
            "model": model_path.display().to_string(),
            "eval": config.eval,
            "alerts": config.alerts,
        }),
        alerts: config.alert_params()?,
    };
    let itap::Reported {
        evaluation: ev,
        alerts,
        files,
    } = itap::evaluate_scores_and_write(&loaded.batch, &scores, &model, &split, &eval, &ctx, &dir)
        .map_err(in_config)?;
    if !out.quiet {
        let n = loaded.batch.len() as u64;
        println!(
            "scored {} rows of {} with {} in {score_seconds:.2} s ({} rows/s)",
            thousands(n),
            loaded.input.path,
            model.describe(),
            thousands((n as f64 / score_seconds.max(1e-9)).round() as u64)
        );
        loaded.print_quarantined();
        println!(
            "  evaluated      {} rows from {} (states {}); threshold {:.4}",
            thousands(ev.rows_evaluated),
            ev.split.cut,
            ev.eval_states.join(", "),
            ev.threshold.value
        );
        println!(
            "  flagged        {} rows",
            thousands(ev.at_threshold.confusion.tp + ev.at_threshold.confusion.fp),
        );
        crate::fmt::print_alerts(&alerts, &ev);
        if ev.labelled {
            println!(
                "  metrics        ROC-AUC {}, PR-AUC {}, rows: precision {:.3}, recall {:.3}",
                metric(ev.roc_auc),
                metric(ev.pr_auc),
                ev.at_threshold.precision,
                ev.at_threshold.recall,
            );
            crate::fmt::print_alert_metrics(&ev);
        }
        for f in files {
            println!("  wrote          {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
