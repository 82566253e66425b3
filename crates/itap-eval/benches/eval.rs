//! Evaluation throughput (rows/s): metrics, events and breakdowns over scored rows,
//! building alerts with the tracker, and the threshold-free metrics over
//! millions of scores.

use itap_eval::ParamGuard;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_eval::{
    AlertParams, EvalParams, ScoreSketch, ScoredRows, average_precision, build_alerts, curves,
    evaluate, roc_auc, threshold_from_training,
};
use itap_telemetry::{SimParams, simulate};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("eval");
    g.sample_size(10);
    // The last: a fleet of many devices over a short span, where matching
    // alerts to events costs what the fleet's size makes it.
    for (devices, hours) in [(25, 6.0), (100, 24.0), (5_000, 2.0)] {
        let batch = simulate(
            &SimParams::default()
                .devices(devices)
                .hours(hours)
                .check()
                .expect("params"),
        );
        // A stand-in score: temperature and vibration, deterministic.
        let temp = batch.signal_by_name("temp_c").expect("temp_c");
        let vib = batch.signal_by_name("vibration_g").expect("vibration_g");
        let scores: Vec<f64> = temp
            .iter()
            .zip(vib)
            .map(|(t, v)| if t.is_nan() { 1.0 } else { t / 60.0 + v })
            .collect();
        let params = EvalParams::default().check().expect("params");
        let (a, b) = batch.time_bounds().expect("rows");
        let split = params.split(a, b).expect("split");
        let train: Vec<f64> = (0..batch.len())
            .filter(|&r| split.is_train(batch.timestamps()[r]))
            .map(|r| scores[r])
            .collect();
        let threshold = threshold_from_training(&train, params.rule()).expect("threshold");
        let rows = ScoredRows::from_batch(&batch, &scores).expect("aligned");
        g.throughput(Throughput::Elements(batch.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("evaluate", batch.len()),
            &rows,
            |bch, rows| {
                bch.iter(|| {
                    black_box(evaluate(rows, &split, threshold, &params, None).expect("eval"))
                })
            },
        );
    }
    g.finish();
}

/// The tracker alone over about 100k rows (40 devices, 1 row per 10 s, 7 hours).
fn bench_alerts(c: &mut Criterion) {
    let mut g = c.benchmark_group("alerts");
    g.sample_size(10);
    let batch = simulate(
        &SimParams::default()
            .devices(40)
            .hours(7.0)
            .check()
            .expect("params"),
    );
    let temp = batch.signal_by_name("temp_c").expect("temp_c");
    let scores: Vec<f64> = temp
        .iter()
        .map(|t| if t.is_nan() { 10.0 } else { *t })
        .collect();
    let sketch = ScoreSketch::from_scores(&scores);
    let threshold = sketch.quantile(0.99).expect("scores");
    let rows = ScoredRows::from_batch(&batch, &scores).expect("aligned");
    let select = vec![true; batch.len()];
    let alerts = AlertParams::default().check().expect("params");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("build_alerts", batch.len()),
        &rows,
        |bch, rows| {
            bch.iter(|| {
                black_box(build_alerts(
                    rows, &select, threshold, &sketch, &alerts, None,
                ))
            })
        },
    );
    g.finish();
}

/// The threshold-free metrics (ROC-AUC, average precision, both curves) over
/// 1 and 10 million scores with many ties: the fleet-wide figures' cost per
/// row as the evaluated rows grow.
fn bench_ranking(c: &mut Criterion) {
    let mut g = c.benchmark_group("ranking");
    g.sample_size(10);
    for n in [1_000_000usize, 10_000_000] {
        // Deterministic scores in steps of 1/4096 (ties), one row in eight faulty.
        let scores: Vec<f64> = (0..n)
            .map(|i| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as f64 / 4096.0)
            .collect();
        let labels: Vec<bool> = (0..n).map(|i| i % 8 == 3).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("auc_ap_curves", n), &n, |bch, _| {
            bch.iter(|| {
                black_box((
                    roc_auc(&scores, &labels),
                    average_precision(&scores, &labels),
                    curves(&scores, &labels, 200),
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_alerts, bench_ranking);
criterion_main!(benches);
