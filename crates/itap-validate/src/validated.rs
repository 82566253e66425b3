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
