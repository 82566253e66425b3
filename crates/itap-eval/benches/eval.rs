//! Evaluation throughput (rows/s): metrics, events and breakdowns over scored rows.

use itap_eval::ParamGuard;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_eval::{EvalParams, ScoredRows, evaluate, threshold_from_training};
use itap_telemetry::{SimParams, simulate};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("eval");
    g.sample_size(10);
    for (devices, hours) in [(25, 6.0), (100, 24.0)] {
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

criterion_group!(benches, bench);
criterion_main!(benches);
