//! The whole pipeline at several sizes, in rows per second. For now the pipeline is
//! "simulate the fleet and write its CSV"; later stages join it as they land.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap::telemetry::{SimParams, simulate, write_csv};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    let dir = std::env::temp_dir().join(format!("itap-bench-{}", std::process::id()));
    // (devices, hours) at 10 s: 54,000, 216,000 and 864,000 rows.
    for (devices, hours) in [(25, 6.0), (50, 12.0), (100, 24.0)] {
        let params = SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .expect("valid params");
        let rows = params.rows();
        let path = dir.join(format!("telemetry-{rows}.csv"));
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(
            BenchmarkId::new("generate_to_file", rows),
            &params,
            |b, p| {
                b.iter(|| {
                    write_csv(&simulate(p), &path).expect("write");
                    black_box(&path);
                })
            },
        );
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
