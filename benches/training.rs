//! Training on 216,000 rows (100 devices × 6 h at 10 s), in rows per second:
//! in memory (`train_and_score`, the model and every row's score) against a
//! group of devices at a time (`train_grouped` over a batch in memory, groups of
//! at most 21,600 rows = 10 devices: the model only), with the fleet's parts
//! fitted on every device (the same model) and on a sample of 10 devices.
//!
//! Run: `cargo bench --bench training`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap::ParamGuard;
use itap::eval::EvalParams;
use itap::features::FeatureParams;
use itap::telemetry::{SimParams, simulate};
use itap::{BatchGroups, GroupedTraining, TrainingSet, default_detector, split_by_time};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("training");
    g.sample_size(10);
    let batch = simulate(
        &SimParams::default()
            .devices(100)
            .hours(6.0)
            .check()
            .expect("valid params"),
    );
    let rows = batch.len() as u64;
    g.throughput(Throughput::Elements(rows));
    let eval = EvalParams::default().check().expect("defaults");
    let split = split_by_time(&batch, &eval).expect("rows");
    let features = FeatureParams::default().check().expect("defaults");
    let detector = default_detector().check().expect("defaults");
    let set = TrainingSet::default();
    g.bench_function(BenchmarkId::new("in_memory_train_and_score", rows), |b| {
        b.iter(|| {
            let t =
                itap::train_and_score(&batch, &split, &set, &features, &detector).expect("trains");
            black_box(t.scores.len())
        })
    });
    for (name, fleet_rows) in [("grouped_fleet_all", rows), ("grouped_fleet_10", rows / 10)] {
        g.bench_function(BenchmarkId::new(name, rows), |b| {
            b.iter(|| {
                let how = GroupedTraining {
                    eval: &eval,
                    set: &set,
                    features: &features,
                    detector: &detector,
                    group_rows: rows / 10,
                    fleet_rows,
                };
                let m = itap::train_grouped(&mut BatchGroups::new(&batch), &how, &mut |_, _| {})
                    .expect("trains");
                black_box(m.training.rows_used)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
