//! Feature engine throughput at 54k and 864k rows (the seed's default size and 16
//! times it) with the default feature set (84 features), with polars (the default)
//! and the native kernel computing the windowed statistics, and the fit. Inputs are
//! simulated and fitted outside the timed closures.
//!
//!     cargo bench -p itap-features

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_features::ParamGuard;

use itap_features::{FeatureParams, TrainSpan, WindowEngine, fit, transform};
use itap_telemetry::{SimParams, simulate};

fn features(c: &mut Criterion) {
    let params = FeatureParams::default().check().expect("default params");
    let native = FeatureParams::default()
        .window_engine(WindowEngine::Native)
        .check()
        .expect("native params");
    let mut group = c.benchmark_group("features");
    group.sample_size(10);
    // 25 devices x 6 h at 10 s = 54,000 rows; 400 devices x 6 h = 864,000 rows.
    for devices in [25, 400] {
        let sim = SimParams::default()
            .devices(devices)
            .hours(6.0)
            .check()
            .expect("sim params");
        let batch = simulate(&sim);
        let rows = batch.len();
        let fitted = fit(&batch, TrainSpan::Fraction(0.7), &params).expect("fit");
        let fitted_native = fit(&batch, TrainSpan::Fraction(0.7), &native).expect("fit");
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("transform", rows), &batch, |b, batch| {
            b.iter(|| transform(batch, &fitted).expect("transform"));
        });
        group.bench_with_input(
            BenchmarkId::new("transform_native", rows),
            &batch,
            |b, batch| b.iter(|| transform(batch, &fitted_native).expect("transform")),
        );
        group.bench_with_input(BenchmarkId::new("fit", rows), &batch, |b, batch| {
            b.iter(|| fit(batch, TrainSpan::Fraction(0.7), &params).expect("fit"));
        });
    }
    group.finish();
}

criterion_group!(benches, features);
criterion_main!(benches);
