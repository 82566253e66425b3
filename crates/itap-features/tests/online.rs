//! The row-by-row engine gives the batch engine's bits: for any telemetry, any
//! device's rows pushed one by one (and saved and resumed at any row) give the
//! same features as `transform` on the whole batch.

mod common;

use itap_features::{
    Error, FeatureKind, FeatureMatrix, FeatureParams, FeaturesFit, OnlineFeatures, OnlineRow,
    ParamGuard, TrainSpan, fit, transform,
};
use itap_telemetry::{Batch, SimParams, simulate};
use proptest::prelude::*;

use common::{Row, S, T0, batch, same};

/// Every kind the row-by-row engine computes.
const ONLINE: [FeatureKind; 14] = [
    FeatureKind::Diff,
    FeatureKind::Rate,
    FeatureKind::Ewm,
    FeatureKind::Missing,
    FeatureKind::MissingRun,
    FeatureKind::Trend,
    FeatureKind::Seasonal,
    FeatureKind::Resid,
    FeatureKind::StateDev,
    FeatureKind::ChartEwma,
    FeatureKind::ChartCusum,
    FeatureKind::ErrorStreak,
    FeatureKind::SinceError,
    FeatureKind::SinceStateChange,
];

fn online_params() -> itap_features::CheckedFeatures {
    FeatureParams::default()
        .kinds(ONLINE)
        .period("1m")
        .seasonal_bins(6)
        .fill_limit("25s")
        .ewm_halflife("40s")
        .chart_halflives(["0s", "20s", "1m"])
        .elapsed_cap("90s")
        .check()
        .unwrap()
}

/// Pushes every row of `batch`, device by device in time order, through the
/// row-by-row engine (saving and resuming each device's state after `resume_at`
/// of its rows), and checks each value against `want`.
fn assert_online_equals(batch: &Batch, fitted: &FeaturesFit, want: &FeatureMatrix, resume_at: u64) {
    let online = OnlineFeatures::new(fitted).unwrap();
    let names: Vec<&str> = want.names().collect();
    assert_eq!(online.names(), names);
    let cols: Vec<usize> = online
        .signals()
        .iter()
        .map(|s| batch.schema().index_of(s).unwrap())
        .collect();
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&r| (batch.device_codes()[r], batch.timestamps()[r]));
    let mut state = None;
    let mut out = vec![0.0; names.len()];
    let mut values = vec![0.0; cols.len()];
    for r in order {
        let device = &batch.device_names()[batch.device_codes()[r] as usize];
        let dev = match state.take() {
            Some(d) if online_dev_name(&d) == device.as_str() => d,
            _ => online.device(device),
        };
        let mut dev = if dev.rows() == resume_at {
            online.resume(device, &dev.to_bytes()).unwrap()
        } else {
            dev
        };
        for (v, &c) in values.iter_mut().zip(&cols) {
            *v = batch.signal(c)[r];
        }
        let row = OnlineRow {
            ts: batch.timestamps()[r],
            state: batch.states().map(|s| s[r]),
            error_code: batch.error_codes().map(|e| e[r]),
            values: &values,
        };
        online.push(&mut dev, &row, &mut out).unwrap();
        for (j, name) in names.iter().enumerate() {
            let (a, b) = (out[j], want.column(j)[r]);
            assert!(
                same(a, b),
                "{name} of row {r} ({device}): online {a}, batch {b}"
            );
        }
        state = Some(dev);
    }
}

fn online_dev_name(d: &itap_features::DeviceState) -> &str {
    d.device()
}

/// Random telemetry: 1–3 devices, steps of 1–40 s (gaps beyond the fill limit
/// and the elapsed cap), missing values, state changes and error codes.
fn telemetry() -> impl Strategy<Value = Vec<Row>> {
    let dev_rows = prop::collection::vec(
        (
            1i64..40,
            prop::option::weighted(0.85, -50.0f64..50.0),
            prop::option::weighted(0.9, 0.0f64..5.0),
            0u8..12,
            prop::bool::weighted(0.1),
        ),
        1..70,
    );
    prop::collection::vec(dev_rows, 1..4).prop_map(|devices| {
        let mut rows = Vec::new();
        for (d, steps) in devices.into_iter().enumerate() {
            let mut t = T0 + d as i64 * 7 * S;
            let mut state = itap_telemetry::State::Run;
            for (step, a, b, s, err) in steps {
                t += step * S;
                state = match s {
                    0 => itap_telemetry::State::Idle,
                    1 => itap_telemetry::State::Maint,
                    2 => itap_telemetry::State::Run,
                    _ => state,
                };
                rows.push(Row {
                    ts: t,
                    device: format!("dev{d}"),
                    values: vec![a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)],
                    state,
                    error: i32::from(err) * 3,
                });
            }
        }
        rows
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn row_by_row_equals_the_batch_engine(rows in telemetry(), resume_at in 0u64..80) {
        let full = batch(&["a", "b"], &rows);
        let params = online_params();
        let fitted = fit(&full, TrainSpan::Fraction(0.6), &params).unwrap();
        let want = transform(&full, &fitted).unwrap();
        assert_online_equals(&full, &fitted, &want, resume_at);
    }
}

#[test]
fn the_simulator_s_fleet_row_by_row_equals_the_batch_engine() {
    let sim = SimParams::default().devices(6).hours(1.0).check().unwrap();
    let batch = simulate(&sim);
    for params in [
        online_params(),
        FeatureParams::default().kinds(ONLINE).check().unwrap(),
    ] {
        let fitted = fit(&batch, TrainSpan::Fraction(0.7), &params).unwrap();
        let want = transform(&batch, &fitted).unwrap();
        assert_online_equals(&batch, &fitted, &want, 150);
    }
}

#[test]
fn windowed_features_are_refused_by_name() {
    let sim = SimParams::default().devices(2).hours(0.2).check().unwrap();
    let batch = simulate(&sim);
    let params = FeatureParams::default()
        .kinds([FeatureKind::ChartEwma, FeatureKind::Mean])
        .windows(["1m"])
        .check()
        .unwrap();
    let fitted = fit(&batch, TrainSpan::All, &params).unwrap();
    let err = OnlineFeatures::new(&fitted).unwrap_err();
    assert!(matches!(err, Error::NotOnline { .. }), "{err}");
    assert!(err.to_string().contains("__mean__1m"), "{err}");
}

#[test]
fn a_row_not_after_the_previous_one_is_refused_and_changes_nothing() {
    let sim = SimParams::default().devices(1).hours(0.1).check().unwrap();
    let batch = simulate(&sim);
    let params = FeatureParams::default().kinds(ONLINE).check().unwrap();
    let fitted = fit(&batch, TrainSpan::All, &params).unwrap();
    let online = OnlineFeatures::new(&fitted).unwrap();
    let mut dev = online.device("DEV-0001");
    let values = vec![1.0; online.signals().len()];
    let mut out = vec![0.0; online.names().len()];
    let row = |ts| OnlineRow {
        ts,
        state: None,
        error_code: Some(0),
        values: &values,
    };
    online.push(&mut dev, &row(T0), &mut out).unwrap();
    let saved = dev.to_bytes();
    for ts in [T0, T0 - S] {
        let err = online.push(&mut dev, &row(ts), &mut out).unwrap_err();
        assert!(err.to_string().contains("not after"), "{err}");
    }
    assert_eq!(dev.to_bytes(), saved);
    assert_eq!(dev.rows(), 1);
    let mut damaged = saved.clone();
    damaged.pop();
    assert!(online.resume("DEV-0001", &damaged).is_err());
    assert!(online.resume("DEV-0001", b"junk").is_err());
}
