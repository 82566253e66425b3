//! The pipeline through the library API: read (or simulate) telemetry, split by time,
//! train on the normal rows of the training span, score, evaluate, write artifacts.
//!
//! Run: `cargo run --release --example quickstart [CSV]` (default: simulate the
//! default fleet). Artifacts go to `artifacts/quickstart/`.

use std::path::PathBuf;

use itap::ParamGuard;
use itap::eval::{EvalParams, InputDigest};
use itap::features::FeatureParams;
use itap::telemetry::{ReadOptions, SimParams, read_csv, simulate};
use itap::{RunContext, TrainingSet, default_detector, evaluate_and_write, split_by_time, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (batch, input) = match std::env::args().nth(1) {
        Some(path) => (read_csv(&path, &ReadOptions::default())?, path),
        None => (
            simulate(&SimParams::default().check()?),
            "simulated default fleet".to_owned(),
        ),
    };
    let eval = EvalParams::default().check()?;
    let split = split_by_time(&batch, &eval)?;
    let t = std::time::Instant::now();
    let trained = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &FeatureParams::default().check()?,
        &default_detector().check()?,
    )?;
    let model = trained.model;
    let scored = model.score_features(trained.features)?;
    println!(
        "trained {} on {} of {} training rows in {:.2} s",
        model.describe(),
        model.training.rows_used,
        model.training.rows_in_span,
        t.elapsed().as_secs_f64()
    );
    let out = PathBuf::from("artifacts/quickstart");
    let ctx = RunContext {
        input: InputDigest {
            path: input,
            sha256: None,
        },
        config: serde_json::json!({"example": "quickstart"}),
        alerts: itap::eval::AlertParams::default().check()?,
    };
    let itap::Reported {
        evaluation: ev,
        alerts,
        files,
    } = evaluate_and_write(&batch, &scored, &model, &split, &eval, &ctx, &out)?;
    let fmt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
    println!(
        "evaluated {} rows after {}: ROC-AUC {}, PR-AUC {}, precision {:.3}, recall {:.3}, event recall {:.3}",
        ev.rows_evaluated,
        ev.split.cut,
        fmt(ev.roc_auc),
        fmt(ev.pr_auc),
        ev.at_threshold.precision,
        ev.at_threshold.recall,
        ev.events.event_recall
    );
    println!(
        "{} alerts, {} of them false: {:.2} false alerts per device-day",
        alerts.len(),
        ev.events.false_alerts,
        ev.events.false_alerts_per_device_day
    );
    for f in &ev.per_fault {
        println!(
            "  {:<16} row recall {:.3}  event recall {:.3}",
            f.tag, f.recall, f.event_recall
        );
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
