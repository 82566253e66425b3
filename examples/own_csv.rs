//! A user's own CSV, with their own column and signal names, through the library:
//! read (columns named explicitly), validate, split by time, train on the normal
//! rows of the training span, score, evaluate, write the artifacts.
//!
//! Run: `cargo run --release --example own_csv [CSV TIMESTAMP_COLUMN DEVICE_COLUMN]`.
//! Without arguments it first writes a small pump-station file of its own,
//! `data/own_csv/pumps.csv` (`time, pump, pressure_bar, flow_lpm, bearing_temp_c,
//! label`: six pumps, 12 h at 30 s, two faults in the last hours, `label` 1 on the
//! faulty rows). Artifacts go to `artifacts/own_csv/`.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use itap::ParamGuard;
use itap::eval::{AlertParams, EvalParams, InputDigest};
use itap::features::FeatureParams;
use itap::telemetry::ReadOptions;
use itap::validate::ValidationParams;
use itap::{
    Reported, RunContext, TrainingSet, default_detector, evaluate_and_write, read_validated,
    split_by_time, train,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, ts_col, dev_col) = match args.as_slice() {
        [] => {
            let path = PathBuf::from("data/own_csv/pumps.csv");
            write_pump_station(&path)?;
            println!("wrote {}", path.display());
            (path, "time".to_owned(), "pump".to_owned())
        }
        [p, t, d] => (PathBuf::from(p), t.clone(), d.clone()),
        _ => return Err("usage: own_csv [CSV TIMESTAMP_COLUMN DEVICE_COLUMN]".into()),
    };

    // Name the key columns; every other numeric column becomes a signal, and a
    // `label` (0/1) or `anomaly_tag` column is ground truth, used only to leave
    // faulty rows out of training and to evaluate.
    let opts = ReadOptions {
        timestamp_column: Some(ts_col),
        device_column: Some(dev_col),
        ..ReadOptions::default()
    };
    let (batch, report) =
        read_validated(&path, &opts, &ValidationParams::default().check()?, None)?;
    let names: Vec<&str> = batch
        .schema()
        .signals()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    println!(
        "read {} rows of {} devices, signals {:?}; validation: {}",
        batch.len(),
        batch.device_names().len(),
        names,
        report.verdict.as_str()
    );

    let eval = EvalParams::default().check()?;
    let split = split_by_time(&batch, &eval)?;
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
        "trained {} on {} rows before {}",
        model.describe(),
        model.training.rows_used,
        model.training.until
    );
    let ctx = RunContext {
        input: InputDigest {
            path: path.display().to_string(),
            sha256: report.input.sha256.clone(),
        },
        config: serde_json::json!({"example": "own_csv"}),
        alerts: AlertParams::default().check()?,
    };
    let out = Path::new("artifacts/own_csv");
    let Reported {
        evaluation: ev,
        alerts,
        files,
    } = evaluate_and_write(&batch, &scored, &model, &split, &eval, &ctx, out)?;
    let fmt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
    println!(
        "evaluated {} rows: ROC-AUC {}, PR-AUC {}, event recall {:.3}, {} alerts",
        ev.rows_evaluated,
        fmt(ev.roc_auc),
        fmt(ev.pr_auc),
        ev.events.event_recall,
        alerts.len()
    );
    for a in alerts.iter().take(3) {
        let top: Vec<&str> = a.top_features.iter().map(|s| s.name.as_str()).collect();
        println!(
            "  alert {} ({}, to {}): {} – {}, peak {:.3}, fault {:?}, features {:?}",
            a.id,
            a.severity.as_str(),
            a.route,
            a.start,
            a.end,
            a.peak_score,
            a.fault,
            top
        );
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// Six pumps, 12 h at 30 s. Pump P-03 loses pressure (a worn impeller) from 10:00
/// to 10:40; pump P-05's bearing heats up from 09:30 to 11:00.
fn write_pump_station(path: &Path) -> Result<(), Box<dyn Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let noise = Normal::new(0.0, 1.0)?;
    let mut csv = String::from("time,pump,pressure_bar,flow_lpm,bearing_temp_c,label\n");
    for p in 1..=6 {
        let pump = format!("P-{p:02}");
        let base = 4.0 + 0.2 * f64::from(p);
        let mut temp = 40.0 + f64::from(p);
        for i in 0..1440 {
            let minutes = f64::from(i) * 0.5;
            let hour = minutes / 60.0;
            let worn = p == 3 && (600.0..640.0).contains(&minutes);
            let hot = p == 5 && (570.0..660.0).contains(&minutes);
            let demand = 1.0 + 0.1 * (hour / 24.0 * std::f64::consts::TAU).sin();
            let mut pressure = base * demand + 0.05 * noise.sample(&mut rng);
            let flow = 120.0 * demand + 2.0 * noise.sample(&mut rng);
            if worn {
                pressure -= 0.6;
            }
            let target = 40.0 + f64::from(p) + if hot { 6.0 } else { 0.0 };
            temp += (target - temp) / 20.0 + 0.1 * noise.sample(&mut rng);
            let ts = format!(
                "2026-03-01T{:02}:{:02}:{:02}Z",
                i / 120,
                (i / 2) % 60,
                (i % 2) * 30
            );
            writeln!(
                csv,
                "{ts},{pump},{pressure:.4},{flow:.3},{temp:.3},{}",
                u8::from(worn || hot)
            )?;
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, csv)?;
    Ok(())
}
