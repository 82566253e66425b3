//! Helpers shared by the integration tests.

#![allow(dead_code)]

use itap_telemetry::{Batch, BatchBuilder, MICROS_PER_SEC, Schema, Signal, State};

/// 2026-01-01T00:00:00Z.
pub(crate) const T0: i64 = 1_767_225_600 * MICROS_PER_SEC;
pub(crate) const S: i64 = MICROS_PER_SEC;

/// One row: timestamp, device, values, state, error code.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub ts: i64,
    pub device: String,
    pub values: Vec<f64>,
    pub state: State,
    pub error: i32,
}

pub(crate) fn row(ts: i64, device: &str, values: &[f64]) -> Row {
    Row {
        ts,
        device: device.to_owned(),
        values: values.to_vec(),
        state: State::Run,
        error: 0,
    }
}

/// A batch of `rows` with signals named `signals`, with state and error columns.
pub(crate) fn batch(signals: &[&str], rows: &[Row]) -> Batch {
    let schema = Schema::new(signals.iter().map(|s| Signal::new(*s)).collect()).unwrap();
    let mut b = BatchBuilder::new(schema, true, true, false);
    for r in rows {
        let d = b.device_code(&r.device);
        b.push(r.ts, d, &r.values, r.state, r.error, 0).unwrap();
    }
    b.finish()
}

/// Same bits, or both NaN.
pub(crate) fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Equal within `tol` relative to the magnitude (absolute below 1), or both NaN.
pub(crate) fn close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * b.abs().max(1.0)
}
