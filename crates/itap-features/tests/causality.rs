//! Leakage and determinism: features of the rows up to any time t are the same
//! bits whether or not later rows exist; the same input gives the same bits
//! whatever the row order or the number of threads.

mod common;

use itap_features::ParamGuard;
use proptest::prelude::*;

use itap_features::{
    FeatureKind, FeatureParams, FeaturesFit, TrainSpan, WindowEngine, fit, transform,
};
use itap_telemetry::{Batch, SimParams, State, simulate};

use common::{Row, S, T0, batch, same};

/// Every kind, several windows of both sorts, a short spectral window and hop,
/// a fixed seasonal period: every code path of the engine.
fn all_kinds(polars: bool) -> itap_features::CheckedFeatures {
    FeatureParams::default()
        .kinds(FeatureKind::ALL)
        .window_engine(if polars {
            WindowEngine::Polars
        } else {
            WindowEngine::Native
        })
        .windows(["30s", "3rows", "2m"])
        .min_periods(2)
        .spectral_window(8)
        .spectral_hop(3)
        .spectral_bands([[0.0, 0.02], [0.02, 1.0]])
        .period("1m")
        .seasonal_bins(6)
        .fill_limit("25s")
        .ewm_halflife("40s")
        .chart_halflives(["20s", "1m"])
        .elapsed_cap("90s")
        .check()
        .unwrap()
}

/// Random telemetry: 1–3 devices, irregular steps (0–40 s, so duplicates and
/// gaps), missing values, state changes and error codes, rows shuffled.
fn telemetry() -> impl Strategy<Value = Vec<Row>> {
    let dev_rows = prop::collection::vec(
        (
            0i64..40,
            prop::option::weighted(0.85, -50.0f64..50.0),
            prop::option::weighted(0.9, 0.0f64..5.0),
            0u8..12,
            prop::bool::weighted(0.1),
        ),
        1..70,
    );
    (prop::collection::vec(dev_rows, 1..4), any::<u64>()).prop_map(|(devices, shuffle)| {
        let mut rows = Vec::new();
        for (d, steps) in devices.into_iter().enumerate() {
            let mut t = T0 + d as i64 * 7 * S;
            let mut state = State::Run;
            for (step, a, b, s, err) in steps {
                t += step * S;
                if s == 0 {
                    state = State::Idle;
                } else if s == 1 {
                    state = State::Maint;
                } else if s == 2 {
                    state = State::Run;
                }
                rows.push(Row {
                    ts: t,
                    device: format!("dev{d}"),
                    values: vec![a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)],
                    state,
                    error: i32::from(err) * 3,
                });
            }
        }
        // A deterministic shuffle: the engine takes rows in any order.
        let mut key = shuffle;
        let mut order: Vec<(u64, Row)> = rows
            .into_iter()
            .map(|r| {
                key = key
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (key, r)
            })
            .collect();
        order.sort_by_key(|(k, _)| *k);
        order.into_iter().map(|(_, r)| r).collect()
    })
}

fn assert_same_rows(
    full: &itap_features::FeatureMatrix,
    part: &itap_features::FeatureMatrix,
    map: &[usize],
) {
    assert_eq!(full.n_features(), part.n_features());
    for (j, info) in part.catalogue().iter().enumerate() {
        for (pr, &fr) in map.iter().enumerate() {
            let (a, b) = (full.column(j)[fr], part.column(j)[pr]);
            assert!(
                same(a, b),
                "{} row {fr}: {a} with later rows, {b} without",
                info.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn features_up_to_t_do_not_depend_on_later_rows(
        rows in telemetry(),
        cut in 0.0f64..1.0,
        polars in any::<bool>(),
    ) {
        let params = all_kinds(polars);
        let full = batch(&["a", "b"], &rows);
        let (lo, hi) = full.time_bounds().unwrap();
        let t = lo + ((hi - lo) as f64 * cut) as i64;
        let keep: Vec<usize> = (0..full.len()).filter(|&r| full.timestamps()[r] <= t).collect();
        prop_assume!(!keep.is_empty());
        let part = full.take(&keep);
        // One fit for both: transform is what must be causal.
        let fitted = fit(&full, TrainSpan::All, &params).unwrap();
        let f_full = transform(&full, &fitted).unwrap();
        let f_part = transform(&part, &fitted).unwrap();
        assert_same_rows(&f_full, &f_part, &keep);
    }

    #[test]
    fn the_fit_depends_only_on_the_training_rows(
        rows in telemetry(),
        cut in 0.0f64..1.0,
        later in 0.0f64..1.0,
    ) {
        let params = all_kinds(false);
        let full = batch(&["a", "b"], &rows);
        let (lo, hi) = full.time_bounds().unwrap();
        let t_train = lo + ((hi - lo) as f64 * cut) as i64;
        let t_keep = t_train + ((hi - t_train) as f64 * later) as i64;
        let keep: Vec<usize> = (0..full.len()).filter(|&r| full.timestamps()[r] <= t_keep).collect();
        let part = full.take(&keep);
        let a = fit(&full, TrainSpan::Until(t_train), &params).unwrap();
        let b = fit(&part, TrainSpan::Until(t_train), &params).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn row_order_does_not_matter(rows in telemetry(), polars in any::<bool>()) {
        let params = all_kinds(polars);
        let shuffled = batch(&["a", "b"], &rows);
        let order = shuffled.order_by_device();
        let sorted = shuffled.take(&order);
        let fitted = fit(&shuffled, TrainSpan::All, &params).unwrap();
        let a = transform(&shuffled, &fitted).unwrap();
        let b = transform(&sorted, &fitted).unwrap();
        // Row i of the sorted batch is row order[i] of the shuffled one.
        assert_same_rows(&a, &b, &order);
    }
}

fn simulated(engine: WindowEngine) -> (Batch, FeaturesFit) {
    let sim = SimParams::default().devices(12).hours(1.0).check().unwrap();
    let batch = simulate(&sim);
    let params = FeatureParams::default()
        .window_engine(engine)
        .kinds(FeatureKind::ALL)
        .windows(["5m", "30rows"])
        .spectral_bands([[0.0, 0.01]])
        .check()
        .unwrap();
    let fitted = fit(&batch, TrainSpan::Fraction(0.7), &params).unwrap();
    (batch, fitted)
}

#[test]
fn same_input_same_bits_whatever_the_thread_count() {
    for engine in [WindowEngine::Polars, WindowEngine::Native] {
        same_bits(engine);
    }
}

fn same_bits(engine: WindowEngine) {
    let (batch, fitted) = simulated(engine);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| transform(&batch, &fitted).unwrap())
    };
    let one = run(1);
    for threads in [1, 2, 5] {
        let other = run(threads);
        for j in 0..one.n_features() {
            assert!(
                one.column(j)
                    .iter()
                    .zip(other.column(j))
                    .all(|(a, b)| same(*a, *b)),
                "{} differs with {threads} threads",
                one.catalogue()[j].name
            );
        }
    }
    // And the fit, too.
    let params = fitted.params().clone().check().unwrap();
    let f1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| fit(&batch, TrainSpan::Fraction(0.7), &params).unwrap());
    assert_eq!(f1, fitted);
}

#[test]
fn a_device_s_features_do_not_depend_on_other_devices() {
    let (batch, fitted) = simulated(WindowEngine::Polars);
    let all = transform(&batch, &fitted).unwrap();
    let one: Vec<usize> = (0..batch.len())
        .filter(|&r| batch.device_codes()[r] == 3)
        .collect();
    let alone = transform(&batch.take(&one), &fitted).unwrap();
    assert_same_rows(&all, &alone, &one);
}

/// The chunked engine hands over every row exactly once, and each value is the
/// whole transform's, on any thread count.
#[test]
fn chunked_transform_gives_each_row_once_with_the_whole_transform_s_values() {
    use itap_features::{ChunkedTransform, FeatureChunk};
    use std::sync::Mutex;
    let (batch, fitted) = simulated(WindowEngine::Native);
    let all = transform(&batch, &fitted).unwrap();
    for threads in [1, 2, 5] {
        let seen = Mutex::new(vec![0u32; batch.len()]);
        let engine = ChunkedTransform::new(&batch, &fitted).unwrap();
        assert_eq!(engine.n_features(), all.n_features());
        assert_eq!(engine.catalogue(), all.catalogue());
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                engine.for_each(|chunk: &FeatureChunk<'_>| {
                    assert_eq!(chunk.columns().len(), all.n_features());
                    for (k, &r) in chunk.rows().iter().enumerate() {
                        seen.lock().unwrap()[r] += 1;
                        for (j, col) in chunk.columns().iter().enumerate() {
                            assert!(
                                same(col[k], all.column(j)[r]),
                                "row {r}, {}",
                                all.catalogue()[j].name
                            );
                        }
                    }
                    Ok::<(), itap_features::Error>(())
                })
            })
            .unwrap();
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
    }
    // A sink's error stops the run and comes back.
    let engine = ChunkedTransform::new(&batch, &fitted).unwrap();
    let e = engine
        .for_each(|_: &FeatureChunk<'_>| {
            Err(itap_features::Error::EmptyTraining { span: "x".into() })
        })
        .unwrap_err();
    assert!(matches!(e, itap_features::Error::EmptyTraining { .. }));
}
