//! Isolation Forest fit time (200 trees) and scoring throughput in rows per second,
//! with the PCA detector, the calibrated (residual) detector's scoring (columns
//! stored one after another, as the pipeline hands them) and the scaler beside
//! them, at 54,000 and 864,000 rows of a 40-column matrix shaped like a feature
//! matrix (correlated columns from a few slowly varying latent signals, noise,
//! 0.5 % shifted rows).
//! scikit-learn's figures on the same shape come from
//! `scripts/sklearn_iforest_timing.py`.

use itap_anomaly::ParamGuard;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_anomaly::ndarray::{Array2, ShapeBuilder};
use itap_anomaly::{Detector, IsolationForestParams, PcaParams, ResidualParams, StandardScaler};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const COLUMNS: usize = 40;
const LATENT: usize = 5;

/// The bench matrix: the same recipe as `scripts/sklearn_iforest_timing.py`.
fn matrix(rows: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut normal = move || {
        // Box–Muller; u1 in (0, 1]
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let weights: Vec<f64> = (0..COLUMNS * LATENT).map(|_| normal()).collect();
    let mut z = [0.0; LATENT];
    let mut x = Array2::zeros((rows, COLUMNS));
    for i in 0..rows {
        for zk in &mut z {
            *zk = 0.95 * *zk + 0.3 * normal();
        }
        let shift = if i % 200 == 199 { 4.0 } else { 0.0 };
        for j in 0..COLUMNS {
            let w = &weights[j * LATENT..(j + 1) * LATENT];
            let v: f64 = w.iter().zip(&z).map(|(a, b)| a * b).sum();
            x[[i, j]] = v + 0.5 * normal() + if j % 7 == 0 { shift } else { 0.0 };
        }
    }
    x
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("anomaly");
    g.sample_size(10);
    let forest = IsolationForestParams::default()
        .check()
        .expect("valid params");
    let pca = PcaParams::default().check().expect("valid params");
    let residual = ResidualParams::default().check().expect("valid params");
    for rows in [54_000usize, 864_000] {
        let x = matrix(rows, 1);
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(
            BenchmarkId::new("iforest_fit_200_trees", rows),
            &x,
            |b, x| b.iter(|| black_box(forest.fit(x.view()).expect("fit"))),
        );
        let model = forest.fit(x.view()).expect("fit");
        g.bench_with_input(BenchmarkId::new("iforest_score", rows), &x, |b, x| {
            b.iter(|| black_box(model.score(x.view()).expect("score")))
        });
        g.bench_with_input(
            BenchmarkId::new("scaler_fit_and_scale", rows),
            &x,
            |b, x| {
                b.iter(|| {
                    let s = StandardScaler::fit(x.view()).expect("fit");
                    black_box(s.scale(x.view()).expect("scale"))
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("pca_fit", rows), &x, |b, x| {
            b.iter(|| black_box(pca.fit(x.view()).expect("fit")))
        });
        let p = pca.fit(x.view()).expect("fit");
        g.bench_with_input(BenchmarkId::new("pca_score", rows), &x, |b, x| {
            b.iter(|| black_box(p.score(x.view()).expect("score")))
        });
        let r = residual.fit(x.view()).expect("fit");
        let mut columns = Array2::zeros(x.dim().f());
        columns.assign(&x);
        g.bench_with_input(
            BenchmarkId::new("residual_score", rows),
            &columns,
            |b, x| b.iter(|| black_box(r.score(x.view()).expect("score"))),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
