//! The online scorer in process: `LiveScorer::score` on the simulated default
//! fleet (25 devices × 6 h = 54,000 rows, in arrival order: all devices
//! interleaved by time), in steps of 2,000 rows as `itap serve` takes them, with
//! the default model (control charts, missing run, error streak; residual
//! detector) and the alert engine. The model is trained once, outside the timing.
//!
//! Run: `cargo bench --bench live`. Throughput is reported in rows (elements) per
//! second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use itap::ParamGuard;
use itap::eval::{AlertParams, EvalParams};
use itap::features::FeatureParams;
use itap::telemetry::{SimParams, simulate};
use itap::{LiveRow, LiveScorer, TrainingSet, default_detector, split_by_time, train};

fn bench(c: &mut Criterion) {
    let batch = simulate(&SimParams::default().check().expect("defaults"));
    let eval = EvalParams::default().check().expect("defaults");
    let alerts = AlertParams::default().check().expect("defaults");
    let split = split_by_time(&batch, &eval).expect("split");
    let model = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &FeatureParams::default().check().expect("defaults"),
        &default_detector().check().expect("defaults"),
    )
    .expect("train")
    .model;
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&r| (batch.timestamps()[r], batch.device_codes()[r]));
    let nsig = batch.schema().len();
    let values: Vec<Vec<f64>> = order
        .iter()
        .map(|&r| (0..nsig).map(|s| batch.signal(s)[r]).collect())
        .collect();
    let rows: Vec<LiveRow<'_>> = order
        .iter()
        .zip(&values)
        .map(|(&r, v)| LiveRow {
            device: batch.device_of(r),
            ts: batch.timestamps()[r],
            state: batch.states().map(|s| s[r]),
            error_code: batch.error_codes().map(|e| e[r]),
            values: v,
        })
        .collect();
    let mut g = c.benchmark_group("live");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("score_54k_rows_in_steps_of_2000", |b| {
        b.iter(|| {
            let mut live = LiveScorer::new(model.clone(), &eval, &alerts).expect("live");
            let mut flagged = 0;
            for step in rows.chunks(2000) {
                flagged += live
                    .score(step)
                    .expect("score")
                    .iter()
                    .filter(|s| s.flagged)
                    .count();
            }
            black_box(flagged)
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
