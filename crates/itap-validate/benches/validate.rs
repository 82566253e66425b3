//! Validation throughput in rows per second: a batch in memory, and CSV read +
//! validate (from bytes in memory, and from a file), at 54,000 and 864,000 rows;
//! and 864,000 rows in memory from fleets of 100, 1,000 and 10,000 devices.

use itap_validate::ParamGuard;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_telemetry::{ReadOptions, Schema, SimParams, simulate, write_csv_to};
use itap_validate::{ValidationParams, validate_batch, validate_file, validate_reader};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate");
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let params = ValidationParams::default().check().expect("valid params");
    let opts = ReadOptions {
        declared: Schema::default().signals().to_vec(),
        ..ReadOptions::default()
    };
    // (devices, hours) at 10 s: 54,000 and 864,000 rows.
    for (devices, hours) in [(25, 6.0), (100, 24.0)] {
        let sim = SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .expect("valid params");
        let rows = sim.rows();
        let batch = simulate(&sim);
        let mut csv = Vec::with_capacity(rows * 125);
        write_csv_to(&batch, &mut csv).expect("write");
        let path = dir.path().join(format!("telemetry-{rows}.csv"));
        std::fs::write(&path, &csv).expect("write file");
        g.throughput(Throughput::Elements(rows as u64));

        g.bench_with_input(BenchmarkId::new("in_memory", rows), &batch, |b, batch| {
            b.iter_batched(
                || batch.clone(),
                |batch| black_box(validate_batch(batch, &params).0.rows),
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("csv_bytes", rows), &csv, |b, csv| {
            b.iter(|| {
                let r = validate_reader(csv.as_slice(), "bench.csv", &opts, &params, None)
                    .expect("validate");
                black_box(r.rows)
            })
        });
        g.bench_with_input(BenchmarkId::new("csv_file", rows), &path, |b, path| {
            b.iter(|| {
                let r = validate_file(path, &opts, &params, None).expect("validate");
                black_box(r.rows)
            })
        });
    }
    g.finish();
}

/// The same 864,000 rows from fleets of 100, 1,000 and 10,000 devices: the
/// cost per row of checking in memory as the number of devices grows.
fn bench_fleets(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate_fleet");
    g.sample_size(10);
    let params = ValidationParams::default().check().expect("valid params");
    for (devices, hours) in [(100, 24.0), (1_000, 2.4), (10_000, 0.24)] {
        let sim = SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .expect("valid params");
        let batch = simulate(&sim);
        g.throughput(Throughput::Elements(batch.len() as u64));
        g.bench_with_input(BenchmarkId::new("devices", devices), &batch, |b, batch| {
            b.iter_batched(
                || batch.clone(),
                |batch| black_box(validate_batch(batch, &params).0.rows),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_fleets);
criterion_main!(benches);
