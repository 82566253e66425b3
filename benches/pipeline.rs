//! The whole pipeline at 54,000 and 864,000 rows (25 devices × 6 h and 100 devices
//! × 24 h at 10 s), in rows per second: `itap::run` — simulate and write the CSV,
//! validate and ingest it into a fresh SQLite file, load it back, train, score,
//! evaluate and write the artifacts — as `itap run` does. Also the CSV generation
//! alone, for comparison.
//!
//! Run: `cargo bench --bench pipeline` (the 864k case takes a few minutes).

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap::ParamGuard;
use itap::eval::EvalParams;
use itap::features::FeatureParams;
use itap::telemetry::{CheckedSimParams, ReadOptions, SimParams, simulate, write_csv};
use itap::validate::ValidationParams;
use itap::{RunParams, Source, StoreSettings, TrainingSet, default_detector};

fn run_params(sim: &CheckedSimParams, dir: &Path, i: usize) -> RunParams {
    let rows = sim.rows();
    RunParams {
        source: Source::Simulate(
            Box::new(sim.clone()),
            dir.join(format!("telemetry-{rows}.csv")),
        ),
        read: ReadOptions::default(),
        validation: ValidationParams::default().check().expect("defaults"),
        store: StoreSettings {
            // A fresh database each time: every row is inserted, as on a first run.
            url: format!(
                "sqlite://{}",
                dir.join(format!("bench-{rows}-{i}.db")).display()
            ),
            ..StoreSettings::default()
        }
        .check()
        .expect("valid settings"),
        features: FeatureParams::default().check().expect("defaults"),
        detector: default_detector().check().expect("defaults"),
        training: TrainingSet::default(),
        eval: EvalParams::default().check().expect("defaults"),
        alerts: itap::eval::AlertParams::default()
            .check()
            .expect("defaults"),
        out_dir: dir.join(format!("artifacts-{rows}")),
        config_json: serde_json::json!({"bench": "pipeline"}),
        memory_rows: 0,
        group_rows: itap::DEFAULT_GROUP_ROWS,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    let dir = std::env::temp_dir().join(format!("itap-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (devices, hours) in [(25, 6.0), (100, 24.0)] {
        let sim = SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .expect("valid params");
        let rows = sim.rows();
        g.throughput(Throughput::Elements(rows as u64));
        let path = dir.join(format!("generated-{rows}.csv"));
        g.bench_with_input(BenchmarkId::new("generate_to_file", rows), &sim, |b, p| {
            b.iter(|| {
                write_csv(&simulate(p), &path).expect("write");
                black_box(&path);
            })
        });
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("run", rows), &sim, |b, p| {
            b.iter(|| {
                i += 1;
                let params = run_params(p, &dir, i);
                let summary = itap::run(&params, &mut |_| {}).expect("pipeline runs");
                let db = dir.join(format!("bench-{rows}-{i}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
                }
                black_box(summary.evaluation.roc_auc)
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
