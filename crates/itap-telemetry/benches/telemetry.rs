//! Simulation, CSV write and CSV read throughput, in rows per second.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_telemetry::{
    CsvBatchWriter, CsvReader, FleetSim, ParamGuard, ReadOptions, SimParams, simulate, write_csv_to,
};

fn sizes() -> [(usize, f64); 2] {
    // (devices, hours) at 10 s: 54,000 and 864,000 rows.
    [(25, 6.0), (100, 24.0)]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("telemetry");
    g.sample_size(10);
    for (devices, hours) in sizes() {
        let params = SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .expect("valid params");
        let rows = params.rows();
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(BenchmarkId::new("simulate", rows), &params, |b, p| {
            b.iter(|| black_box(simulate(p)))
        });
        let batch = simulate(&params);
        let mut csv = Vec::with_capacity(rows * 120);
        write_csv_to(&batch, &mut csv).expect("write");
        g.bench_with_input(BenchmarkId::new("write_csv", rows), &batch, |b, batch| {
            let mut out = Vec::with_capacity(csv.len());
            b.iter(|| {
                out.clear();
                write_csv_to(batch, &mut out).expect("write");
                black_box(out.len())
            })
        });
        g.bench_with_input(
            BenchmarkId::new("simulate_and_write_csv", rows),
            &params,
            |b, p| {
                let mut out = Vec::with_capacity(csv.len());
                b.iter(|| {
                    out.clear();
                    write_csv_to(&simulate(p), &mut out).expect("write");
                    black_box(out.len())
                })
            },
        );
        // The fleet a block of samples at a time (`itap generate`'s way: about
        // 262,144 rows a block), against `simulate`'s whole batch above.
        let steps = (262_144 / devices).max(1);
        g.bench_with_input(
            BenchmarkId::new("fleet_sim_blocks", rows),
            &params,
            |b, p| {
                b.iter(|| {
                    let mut sim = FleetSim::new(p);
                    let mut n = 0;
                    while let Some(block) = sim.next_block(steps) {
                        n += black_box(block).len();
                    }
                    n
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("fleet_sim_blocks_and_write_csv", rows),
            &params,
            |b, p| {
                let mut out = Vec::with_capacity(csv.len());
                b.iter(|| {
                    out.clear();
                    let (mut sim, mut w) = (FleetSim::new(p), CsvBatchWriter::new(&mut out));
                    while let Some(block) = sim.next_block(steps) {
                        w.write(&block).expect("write");
                    }
                    drop(w);
                    black_box(out.len())
                })
            },
        );
        let bytes = csv.clone();
        g.bench_with_input(BenchmarkId::new("read_csv", rows), &bytes, |b, bytes| {
            b.iter(|| {
                let r = CsvReader::from_reader(
                    std::io::Cursor::new(bytes.clone()),
                    "bench.csv",
                    &ReadOptions::default(),
                )
                .expect("header");
                black_box(r.read_all().expect("rows").len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
