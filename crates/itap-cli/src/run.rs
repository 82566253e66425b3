//! `itap run`: the whole pipeline in one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use itap::validate::Policy;
use itap::{RunParams, Source, StageTiming};

use crate::config::{ColumnFlags, Config, TrainFlags, check_sim, in_config};
use crate::fmt::{metric, thousands};
use crate::generate::SimFlags;
use crate::{ConfigArg, DbArgs, Output};

/// Flags of `itap run`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = "\
Stages: generate (without --input: simulate the configured fleet and write its
CSV to output.telemetry_csv; the rows stay in memory) or read --input once,
validate (in memory), ingest the validated rows (idempotent: re-running stores
nothing twice), train on the training span (computing every row's features
once), score every row with the fitted model, evaluate the rows after the cut at
the threshold [eval] sets from the training scores, and write model.json,
metrics.json, scores.csv and report.html into --out. Each stage prints its rows
and wall time as it ends; a table sums them up.

An input of more rows than [model] memory_rows (default 10,000,000; a CSV's rows
are estimated from its size) is not held in memory. A simulated fleet is written
to its CSV a block at a time, each block validated and set aside by device in a
temporary file in the output folder as it is written (stages generate, validate,
set aside); a CSV is read and validated, then read again and set aside (stages
read+validate, set aside). The rows set aside (about 57 bytes a row with the
default signals; removed at the end) are stored a group of whole devices at a
time (stage ingest) and trained on and scored a group of devices ([model]
group_rows) at a time (stages train, score, evaluate). The files are those of
the in-memory run but for the order of scores.csv's lines (group after group);
eval.target_false_alerts_per_device_day is refused there. A progress bar (on a
terminal) shows how far each stage got.

A file with error rows (a clock set back that repeats an hour with other values,
text in a numeric column, …) is refused under the default --policy reject. With
--policy quarantine those rows are set aside into quarantine.csv in --out, one
line each with its reasons (`line N: check.id: …`) before the row as found, and
the run goes on with the rest; the validate stage and the summary say how many.

Exit status: 0 done, 1 the input was refused by validation (nothing stored),
2 usage, I/O, database or training error.

Examples:
  itap run
  itap run --devices 100 --hours 24 --timings
  itap run --input testdata/seed_telemetry_54k.csv --db sqlite://data/seed.db
  itap run --detector iforest --train-fraction 0.6 --out artifacts/iforest
  itap run --input export.csv --policy quarantine --out artifacts/export")]
pub(crate) struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,

    /// Read this telemetry CSV instead of simulating the configured fleet.
    #[arg(long, value_name = "CSV")]
    input: Option<PathBuf>,

    #[command(flatten)]
    columns: ColumnFlags,

    #[command(flatten)]
    signals: crate::config::SignalsFlag,

    /// reject (an input with error rows is refused, nothing stored) or quarantine
    /// (its error rows go to quarantine.csv in --out, the run goes on with the
    /// rest) [config: validation.policy, default reject].
    #[arg(long, value_name = "POLICY")]
    policy: Option<Policy>,

    #[command(flatten)]
    db: DbArgs,

    #[command(flatten)]
    sim: SimFlags,

    #[command(flatten)]
    flags: TrainFlags,

    /// Folder for model.json, metrics.json, scores.csv and report.html [config:
    /// output.dir, default artifacts].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Also print the stage timings as one JSON object (last line of stdout).
    #[arg(long)]
    timings: bool,
}

/// What `--timings` prints.
#[derive(Debug, Serialize)]
struct Timings<'a> {
    stages: &'a [StageTiming],
    total_seconds: f64,
    rows_quarantined: u64,
    roc_auc: Option<f64>,
    pr_auc: Option<f64>,
    event_recall: f64,
}

pub(crate) fn run(args: &RunArgs, out: Output) -> Result<ExitCode> {
    let config = Config::load(args.config.config.as_deref())?;
    let source = match &args.input {
        Some(p) => Source::Csv(p.clone()),
        None => Source::Simulate(
            Box::new(check_sim(args.sim.apply(config.sim_params()?))?),
            config.output.telemetry_csv.clone(),
        ),
    };
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| config.output.dir.clone());
    let features = config.feature_params()?;
    let params = RunParams {
        source,
        read: args.columns.apply(config.read_options()?),
        validation: config.validation_params(args.policy, &args.signals)?,
        store: config.store_settings(&args.db, None, None)?,
        training: config.training_set(&args.flags, &features)?,
        features,
        detector: config.detector_params(&args.flags)?,
        eval: config.eval_params(&args.flags)?,
        alerts: config.alert_params()?,
        out_dir: dir,
        config_json: config.to_json(&args.flags),
        memory_rows: config.model.memory_rows,
        group_rows: config.model.group_rows,
    };
    let started = Instant::now();
    let quiet = out.quiet;
    // A streamed run's stages take minutes: a bar shows how far the current
    // one has got (drawn from the first progress on, only when stderr is a
    // terminal and not --quiet; a run in memory reports none).
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:<16} {bar:20} {human_pos}/{human_len} [{elapsed} < {eta}]",
        )
        .expect("static template is valid"),
    );
    let mut on_stage = |t: &StageTiming| {
        if !quiet {
            bar.suspend(|| {
                println!(
                    "{:<16} {:>11} rows {:>8.2} s  {}",
                    t.stage,
                    thousands(t.rows),
                    t.seconds,
                    t.detail
                );
            });
        }
    };
    let progress_bar = bar.clone();
    let mut on_progress = move |p: &itap::Progress<'_>| {
        if progress_bar.message() != p.stage {
            let first = progress_bar.message().is_empty();
            // The new stage's length and position before anything redraws,
            // so that it never shows with the last stage's count.
            progress_bar.set_position(0);
            progress_bar.set_length(p.total);
            progress_bar.reset_elapsed();
            progress_bar.reset_eta();
            progress_bar.set_message(p.stage.to_owned());
            if first && !quiet {
                progress_bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
        progress_bar.set_length(p.total);
        progress_bar.set_position(p.done);
    };
    let ran = itap::run_with_progress(&params, &mut on_stage, &mut on_progress);
    bar.finish_and_clear();
    let summary = match ran.map_err(in_config) {
        Ok(s) => s,
        Err(e @ itap::Error::Refused { .. }) => {
            crate::data::print_refusal(&e);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let total = started.elapsed().as_secs_f64();
    let ev = &summary.evaluation;
    if !quiet {
        println!();
        println!(
            "{:<16} {:>11} {:>9} {:>13}",
            "stage", "rows", "seconds", "rows/s"
        );
        for t in &summary.timings {
            println!(
                "{:<16} {:>11} {:>9.2} {:>13}",
                t.stage,
                thousands(t.rows),
                t.seconds,
                thousands(t.rows_per_second().round() as u64)
            );
        }
        println!("{:<16} {:>11} {:>9.2}", "total", "", total);
        println!();
        println!(
            "evaluated {} rows after {} (states {}), threshold {:.4} ({})",
            thousands(ev.rows_evaluated),
            ev.split.cut,
            ev.eval_states.join(", "),
            ev.threshold.value,
            crate::fmt::threshold_rule(&ev.threshold)
        );
        crate::fmt::print_alerts(&summary.alerts, ev);
        println!(
            "stored {} alerts in {} dataset `{}` ({} new, {} updated, {} unchanged)",
            summary.alerts.len(),
            params.store.url,
            params.store.dataset,
            summary.alerts_stored.inserted,
            summary.alerts_stored.updated,
            summary.alerts_stored.unchanged
        );
        if ev.labelled {
            println!(
                "ROC-AUC {}  PR-AUC {}  rows: precision {:.3} recall {:.3} F1 {:.3}",
                metric(ev.roc_auc),
                metric(ev.pr_auc),
                ev.at_threshold.precision,
                ev.at_threshold.recall,
                ev.at_threshold.f1,
            );
            crate::fmt::print_alert_metrics(ev);
        } else {
            println!("the data carries no fault tags: scores and alerts only, no metrics");
        }
        if params.validation.params().policy == Policy::Quarantine {
            println!(
                "set aside {} rows with errors (quarantine policy) → {}",
                thousands(summary.rows_quarantined),
                params.out_dir.join(itap::QUARANTINE_FILE).display()
            );
        }
        for f in &summary.artifacts {
            println!("wrote {}", f.display());
        }
    }
    if args.timings {
        let t = Timings {
            stages: &summary.timings,
            total_seconds: total,
            rows_quarantined: summary.rows_quarantined,
            roc_auc: ev.roc_auc,
            pr_auc: ev.pr_auc,
            event_recall: ev.events.event_recall,
        };
        println!("{}", serde_json::to_string(&t)?);
    }
    Ok(ExitCode::SUCCESS)
}
