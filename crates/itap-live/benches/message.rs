//! Wire-format throughput, in rows (messages) per second: encoding batch rows and
//! decoding (with every check) the messages they make.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap::ParamGuard;
use itap::telemetry::{SimParams, simulate};
use itap_live::{DecodeParams, Decoder, encode, encode_into};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    g.sample_size(10);
    // 25 devices × 1 h at 10 s: 9,000 rows of the five default signals.
    let params = SimParams::default()
        .devices(25)
        .hours(1.0)
        .check()
        .expect("valid params");
    let batch = simulate(&params);
    let rows = batch.len();
    g.throughput(Throughput::Elements(rows as u64));

    g.bench_with_input(BenchmarkId::new("encode", rows), &batch, |b, batch| {
        b.iter(|| {
            let mut bytes = 0;
            for r in 0..batch.len() {
                bytes += encode(batch, r).len();
            }
            black_box(bytes)
        })
    });
    g.bench_with_input(
        BenchmarkId::new("encode_into_reused_buffer", rows),
        &batch,
        |b, batch| {
            let mut buf = String::with_capacity(512);
            b.iter(|| {
                let mut bytes = 0;
                for r in 0..batch.len() {
                    buf.clear();
                    encode_into(batch, r, &mut buf);
                    bytes += buf.len();
                }
                black_box(bytes)
            })
        },
    );

    let decoder = Decoder::new(
        batch.schema(),
        DecodeParams::default().check().expect("valid limits"),
    );
    let messages: Vec<(String, Vec<u8>)> = (0..rows)
        .map(|r| {
            (
                format!("itap/telemetry/{}", batch.device_of(r)),
                encode(&batch, r),
            )
        })
        .collect();
    let now = batch.time_bounds().map_or(0, |(_, last)| last);
    g.bench_with_input(
        BenchmarkId::new("decode", rows),
        &messages,
        |b, messages| {
            b.iter(|| {
                let mut ok = 0usize;
                for (topic, payload) in messages {
                    ok += usize::from(decoder.decode(topic, payload, now).is_ok());
                }
                assert_eq!(ok, messages.len());
                black_box(ok)
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
