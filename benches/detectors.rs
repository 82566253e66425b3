//! The detectors on the matrices the pipeline really makes: the simulated default
//! fleet at 54,000 rows and 100 devices × 24 h (864,000 rows), its default feature
//! set (all 84 features, and the pipeline's 21 detector inputs), standardised as
//! training does. Isolation Forest (200 trees, ψ 256), PCA and the calibrated
//! detector (`residual`, on the detector inputs): fit and scoring.
//!
//! Run: `cargo bench --bench detectors`. With `ITAP_BENCH_DUMP=DIR` set, each
//! 84-column matrix is also written to `DIR/features-ROWSxCOLS.f64` (row-major
//! little-endian f64) for `scripts/sklearn_iforest_timing.py --matrix`, so that
//! scikit-learn is timed on the very same numbers.

use std::hint::black_box;
use std::io::Write as _;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap::ParamGuard;
use itap::anomaly::ndarray::Array2;
use itap::anomaly::{Detector, IsolationForestParams, PcaParams, ResidualParams, StandardScaler};
use itap::features::{FeatureParams, TrainSpan};
use itap::telemetry::{SimParams, simulate};

fn matrix(rows_devices: usize, hours: f64, inputs: bool) -> Array2<f64> {
    let batch = simulate(
        &SimParams::default()
            .devices(rows_devices)
            .hours(hours)
            .check()
            .expect("valid params"),
    );
    let mut features = FeatureParams::default().check().expect("defaults");
    if inputs {
        features = itap::detector_features(&features, &itap::DEFAULT_INPUTS).expect("inputs");
    }
    let fit = itap::features::fit(&batch, TrainSpan::Fraction(0.7), &features).expect("fit");
    let m = itap::features::transform(&batch, &fit).expect("transform");
    let cols = m.columns();
    let mut x = Array2::from_shape_fn((m.len(), cols.len()), |(r, c)| cols[c][r]);
    let scaler = StandardScaler::fit(x.view()).expect("scaler");
    scaler.scale_inplace(x.view_mut()).expect("scale");
    x.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
    x
}

fn dump(x: &Array2<f64>) {
    let Some(dir) = std::env::var_os("ITAP_BENCH_DUMP") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("dump dir");
    let path = dir.join(format!("features-{}x{}.f64", x.nrows(), x.ncols()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("dump file"));
    for v in x.iter() {
        f.write_all(&v.to_le_bytes()).expect("write");
    }
    f.flush().expect("flush");
    eprintln!("wrote {}", path.display());
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("detectors");
    g.sample_size(10);
    let forest = IsolationForestParams::default().check().expect("valid");
    let pca = PcaParams::default().check().expect("valid");
    let residual = ResidualParams::default().check().expect("valid");
    for (devices, hours) in [(25, 6.0), (100, 24.0)] {
        for (label, inputs) in [("84_features", false), ("21_inputs", true)] {
            let x = matrix(devices, hours, inputs);
            if !inputs {
                dump(&x);
            }
            let rows = x.nrows();
            let id = |what: &str| BenchmarkId::new(format!("{what}/{label}"), rows);
            g.throughput(Throughput::Elements(rows as u64));
            g.bench_with_input(id("iforest_fit_200_trees"), &x, |b, x| {
                b.iter(|| black_box(forest.fit(x.view()).expect("fit")))
            });
            let model = forest.fit(x.view()).expect("fit");
            g.bench_with_input(id("iforest_score"), &x, |b, x| {
                b.iter(|| black_box(model.score(x.view()).expect("score")))
            });
            g.bench_with_input(id("pca_fit"), &x, |b, x| {
                b.iter(|| black_box(pca.fit(x.view()).expect("fit")))
            });
            let p = pca.fit(x.view()).expect("fit");
            g.bench_with_input(id("pca_score"), &x, |b, x| {
                b.iter(|| black_box(p.score(x.view()).expect("score")))
            });
            if inputs {
                g.bench_with_input(id("residual_fit"), &x, |b, x| {
                    b.iter(|| black_box(residual.fit(x.view()).expect("fit")))
                });
                let r = residual.fit(x.view()).expect("fit");
                g.bench_with_input(id("residual_score"), &x, |b, x| {
                    b.iter(|| black_box(r.score(x.view()).expect("score")))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
