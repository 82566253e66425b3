//! The type gate: a value this crate has checked.

use std::ops::Deref;

/// A value that passed validation: for a [`Batch`](itap_telemetry::Batch), rows
/// with no error-severity finding.
///
/// Only itap-validate can make one ([`validate_batch`](crate::validate_batch),
/// [`ValidatedChunks`](crate::ValidatedChunks)); the field is private and there is
/// no constructor, no `From` and no `DerefMut`. A store that accepts only
/// `Validated<Batch>` therefore cannot be handed unchecked rows: "validation before
/// storage" is enforced by the compiler.
///
/// ```compile_fail
/// // Outside this crate a Validated cannot be built from a plain batch.
/// use itap_telemetry::ParamGuard;
/// let batch = itap_telemetry::simulate(&itap_telemetry::SimParams::default().devices(1).hours(0.01).check().unwrap());
/// let forged = itap_validate::Validated(batch);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Validated<T>(T);

impl<T> Validated<T> {
    /// Wraps a value that has just been validated. Crate-private by design.
    pub(crate) fn new(value: T) -> Self {
        Validated(value)
    }

    /// The validated value.
    pub fn get(&self) -> &T {
        &self.0
    }

    /// The validated value, by value (it is then an ordinary, unvouched value).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Validated<itap_telemetry::Batch> {
    /// Consecutive pieces of at most `rows` rows (at least 1), in order. Each is
    /// still validated: every row passed its checks, and rows taken in order from a
    /// valid batch keep its file-level properties (unique keys, time order within
    /// a device).
    pub fn chunks(&self, rows: usize) -> impl Iterator<Item = Validated<itap_telemetry::Batch>> {
        let n = self.0.len();
        let rows = rows.max(1);
        (0..n).step_by(rows).map(move |start| {
            let idx: Vec<usize> = (start..(start + rows).min(n)).collect();
            Validated(self.0.take(&idx))
        })
    }
}

impl<T> Deref for Validated<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Validated<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use itap_telemetry::{ParamGuard, SimParams, simulate};

    use crate::{ValidationParams, validate_batch};

    #[test]
    fn chunks_cover_every_row_once_in_order() {
        let batch = simulate(&SimParams::default().devices(3).hours(0.5).check().unwrap());
        let n = batch.len();
        let (_, valid) =
            validate_batch(batch.clone(), &ValidationParams::default().check().unwrap());
        let valid = valid.unwrap();
        for size in [1, 7, n - 1, n, n + 5] {
            let parts: Vec<_> = valid.chunks(size).collect();
            assert_eq!(parts.len(), n.div_ceil(size), "size {size}");
            assert!(parts.iter().all(|p| p.len() <= size));
            let ts: Vec<i64> = parts.iter().flat_map(|p| p.timestamps().to_vec()).collect();
            assert_eq!(ts, batch.timestamps(), "size {size}");
            let devices: Vec<String> = parts
                .iter()
                .flat_map(|p| {
                    (0..p.len())
                        .map(|r| p.device_of(r).to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            let expected: Vec<String> = (0..n).map(|r| batch.device_of(r).to_owned()).collect();
            assert_eq!(devices, expected);
        }
    }
}
