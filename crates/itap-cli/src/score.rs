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

A stored dataset with more rows than [model] group_rows (default 1,000,000) is
scored and evaluated a group of devices at a time, so memory stays bounded
whatever its size: metrics.json, alerts.json and report.html are those of the
dataset scored whole; scores.csv lists the groups one after another (devices by
id, each group's rows in time order). eval.target_false_alerts_per_device_day is
refused there (it replays the alerts over every held-back row); group_rows = 0
loads the dataset whole.

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
    let run_config = serde_json::json!({
        "model": model_path.display().to_string(),
        "eval": config.eval,
        "alerts": config.alerts,
    });
    if let Some((mut groups, input)) = crate::data::in_groups(&args.data, &config)? {
        if matches!(eval.rule(), itap::eval::ThresholdRule::TargetFalseAlerts(_)) {
            groups.close();
            anyhow::bail!(
                "[eval] target_false_alerts_per_device_day sets the threshold by replaying the alerts over every held-back row, which scoring a group of devices at a time does not hold; use eval.threshold_quantile, or set [model] group_rows = 0 to load the dataset whole"
            );
        }
        let ctx = itap::RunContext {
            input: itap::eval::InputDigest {
                path: input.clone(),
                sha256: None,
            },
            config: run_config,
            alerts: config.alert_params()?,
        };
        let rows: u64 = itap::DeviceGroups::devices(&groups)
            .iter()
            .map(|d| d.1)
            .sum();
        let bar = crate::data::group_bar(&groups, "scoring", out);
        let started = Instant::now();
        let mut n = 0;
        let how = itap::GroupedScoring {
            model: &model,
            model_path: &model_path,
            eval: &eval,
            ctx: &ctx,
            group_rows: config.model.group_rows,
            split: None,
        };
        let reported = itap::score_grouped(&mut groups, &how, &dir, &mut |done, _| {
            n += 1;
            bar.set_position(done as u64);
        })
        .map_err(in_config)
        .with_context(|| format!("cannot score with {}", model_path.display()))?;
        bar.finish_and_clear();
        groups.close();
        if !out.quiet {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "scored and evaluated {} rows of {input} with {} in {seconds:.2} s ({} rows/s)",
                thousands(rows),
                model.describe(),
                thousands((rows as f64 / seconds.max(1e-9)).round() as u64)
            );
            println!(
                "  read           {n} groups of devices of at most {} rows ([model] group_rows); scores.csv lists them group after group",
                thousands(config.model.group_rows)
            );
            print_summary(&reported);
        }
        return Ok(ExitCode::SUCCESS);
    }
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
        config: run_config,
        alerts: config.alert_params()?,
    };
    let reported =
        itap::evaluate_scores_and_write(&loaded.batch, &scores, &model, &split, &eval, &ctx, &dir)
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
        print_summary(&reported);
    }
    Ok(ExitCode::SUCCESS)
}

/// What was evaluated, flagged and written.
fn print_summary(reported: &itap::Reported) {
    let itap::Reported {
        evaluation: ev,
        alerts,
        files,
    } = reported;
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
    crate::fmt::print_alerts(alerts, ev);
    if ev.labelled {
        println!(
            "  metrics        ROC-AUC {}, PR-AUC {}, rows: precision {:.3}, recall {:.3}",
            metric(ev.roc_auc),
            metric(ev.pr_auc),
            ev.at_threshold.precision,
            ev.at_threshold.recall,
        );
        crate::fmt::print_alert_metrics(ev);
    }
    for f in files {
        println!("  wrote          {}", f.display());
    }
}
