//! The parameter contract shared by every ITAP crate: one error for a parameter out
//! of range, and one trait for checking parameters before they can run.

/// A parameter is out of its allowed range.
///
/// `name` is the parameter's path relative to the parameters being checked
/// (`train_fraction`, or `iforest.trees` for a nested section), never with the
/// config-file section the parameters came from: whoever maps a section onto the
/// parameters adds it with [`prefixed`](Self::prefixed) (each crate's
/// `Error::in_section` does so for its own error).
///
/// ```
/// use itap_telemetry::InvalidParam;
/// let e = InvalidParam::new("trees", "0 is out of range; use 1 to 100000");
/// assert_eq!(e.to_string(), "invalid parameter `trees`: 0 is out of range; use 1 to 100000");
/// assert_eq!(e.prefixed("iforest").prefixed("model").name, "model.iforest.trees");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter `{name}`: {reason}")]
pub struct InvalidParam {
    /// The parameter's path, relative to the parameters being checked.
    pub name: String,
    /// Why the value is refused, and what would be accepted.
    pub reason: String,
}

impl InvalidParam {
    /// The parameter `name` is refused for `reason`.
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidParam {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// The same refusal, named inside `section`: `section.name`. An empty section
    /// leaves the name as it is.
    #[must_use]
    pub fn prefixed(mut self, section: &str) -> Self {
        if !section.is_empty() {
            self.name = format!("{section}.{}", self.name);
        }
        self
    }
}

/// Parameters that must be checked before they can run, after linfa's
/// [`ParamGuard`](https://docs.rs/linfa/latest/linfa/param_guard/trait.ParamGuard.html).
///
/// Every params type of ITAP (`SimParams`, `ValidationParams`, `FeatureParams`,
/// `DetectorParams`, `EvalParams`, …) is built unchecked — [`Default`], by-value
/// setters, or deserialized from a config section — and implements this trait.
/// Only its [`Checked`](Self::Checked) form can run, so a range check happens once,
/// where the parameters are made, and never again inside the algorithm.
///
/// [`check_ref`](Self::check_ref) and [`check`](Self::check) run the same checks
/// and fail with the same error; `check_ref` only answers whether the parameters
/// would pass (for example to validate a config file without consuming it), while
/// `check` consumes them and returns the checked form (with any values derived
/// while checking, such as parsed durations).
///
/// Unlike linfa's, `check_ref` returns `()`: a checked form may hold derived values
/// that a reference to the unchecked parameters cannot lend. The error is the
/// crate's `Error`, whose `InvalidParam` variant holds an [`InvalidParam`].
///
/// ```
/// use itap_telemetry::{ParamGuard, SimParams};
/// let bad = SimParams::default().devices(0);
/// assert!(bad.check_ref().is_err());
/// let checked = SimParams::default().devices(2).hours(0.5).check()?;
/// assert_eq!(checked.rows(), 2 * 180);
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
pub trait ParamGuard {
    /// The checked parameters: the only form that can run.
    type Checked;
    /// The error of a failed check.
    type Error;

    /// Checks the parameters without consuming them.
    ///
    /// # Errors
    /// The same error [`check`](Self::check) would return.
    fn check_ref(&self) -> Result<(), Self::Error>;

    /// Checks the parameters and turns them into their checked form.
    ///
    /// # Errors
    /// The crate's error, usually its `InvalidParam` variant naming the first
    /// parameter out of range (relative to these parameters) and why.
    fn check(self) -> Result<Self::Checked, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_nests_and_keeps_the_reason() {
        let e = InvalidParam::new("trees", "too few").prefixed("iforest");
        assert_eq!(e, InvalidParam::new("iforest.trees", "too few"));
        assert_eq!(e.clone().prefixed("").name, "iforest.trees");
        assert_eq!(
            e.prefixed("model").to_string(),
            "invalid parameter `model.iforest.trees`: too few"
        );
    }
}
