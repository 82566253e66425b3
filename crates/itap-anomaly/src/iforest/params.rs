//! Isolation Forest parameters, unchecked and checked.

use serde::{Deserialize, Serialize};

use itap_telemetry::ParamGuard;

use crate::error::{Error, Result};

/// The largest subsample size: its height limit, 24, bounds every tree's depth.
pub const MAX_SAMPLES_LIMIT: usize = 1 << 24;

/// Isolation Forest parameters, unchecked: the `[model.iforest]` config section.
///
/// Build with [`Default`] and the setters (or deserialize), then
/// [`check`](ParamGuard::check) once; only [`CheckedIsolationForest`] can fit.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `trees` | 200 | isolation trees in the forest | 1 – 100 000 |
/// | `max_samples` | 256 | subsample size ψ each tree is grown on, drawn without replacement (capped at the training rows); the height limit is ⌈log₂ ψ⌉ | 2 – 16 777 216 |
/// | `max_features` | 1.0 | share of the columns each tree may split on: max(1, ⌊share · columns⌋), drawn per tree without replacement | (0, 1] |
/// | `seed` | 42 | seed of the ChaCha8 streams; tree *i* draws from stream *i* | any `u64` |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IsolationForestParams {
    /// Trees in the forest.
    pub trees: usize,
    /// Subsample size ψ per tree.
    pub max_samples: usize,
    /// Share of the columns each tree may split on.
    pub max_features: f64,
    /// Seed of the random streams.
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            trees: 200,
            max_samples: 256,
            max_features: 1.0,
            seed: 42,
        }
    }
}

impl IsolationForestParams {
    /// Sets the number of trees.
    pub fn trees(mut self, v: usize) -> Self {
        self.trees = v;
        self
    }

    /// Sets the subsample size ψ.
    pub fn max_samples(mut self, v: usize) -> Self {
        self.max_samples = v;
        self
    }

    /// Sets the share of columns each tree may split on.
    pub fn max_features(mut self, v: f64) -> Self {
        self.max_features = v;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
}

impl ParamGuard for IsolationForestParams {
    type Checked = CheckedIsolationForest;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        if !(1..=100_000).contains(&self.trees) {
            return Err(Error::param(
                "trees",
                format!("{} is out of range; use 1 to 100000", self.trees),
            ));
        }
        if !(2..=MAX_SAMPLES_LIMIT).contains(&self.max_samples) {
            return Err(Error::param(
                "max_samples",
                format!(
                    "{} is out of range; use 2 to {MAX_SAMPLES_LIMIT}",
                    self.max_samples
                ),
            ));
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            return Err(Error::param(
                "max_features",
                format!(
                    "{} is out of range; use a share in (0, 1]",
                    self.max_features
                ),
            ));
        }
        Ok(())
    }

    /// Checks every parameter against its range.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] naming the first parameter out of range.
    fn check(self) -> Result<CheckedIsolationForest> {
        self.check_ref()?;
        Ok(CheckedIsolationForest(self))
    }
}

/// Checked Isolation Forest parameters: the only kind that can fit.
///
/// Fit with [`Detector::fit`](crate::Detector::fit) (or `fit_rows` with a row mask),
/// or through linfa's [`Fit`](linfa::traits::Fit) on a `DatasetBase`. Deserializing
/// checks again, so a model file cannot smuggle in parameters out of range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "IsolationForestParams", into = "IsolationForestParams")]
pub struct CheckedIsolationForest(IsolationForestParams);

impl TryFrom<IsolationForestParams> for CheckedIsolationForest {
    type Error = Error;

    fn try_from(p: IsolationForestParams) -> Result<Self> {
        p.check()
    }
}

impl From<CheckedIsolationForest> for IsolationForestParams {
    fn from(c: CheckedIsolationForest) -> Self {
        c.0
    }
}

impl CheckedIsolationForest {
    /// The parameters.
    pub fn params(&self) -> &IsolationForestParams {
        &self.0
    }

    /// Trees in the forest.
    pub fn trees(&self) -> usize {
        self.0.trees
    }

    /// Subsample size ψ per tree (before capping at the training rows).
    pub fn max_samples(&self) -> usize {
        self.0.max_samples
    }

    /// Share of the columns each tree may split on.
    pub fn max_features(&self) -> f64 {
        self.0.max_features
    }

    /// Seed of the random streams.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// Columns each tree may split on when the matrix has `columns` columns.
    pub fn features_per_tree(&self, columns: usize) -> usize {
        ((self.0.max_features * columns as f64).floor() as usize).clamp(1, columns.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_ranges_are_enforced() {
        let c = IsolationForestParams::default().check().unwrap();
        assert_eq!((c.trees(), c.max_samples(), c.seed()), (200, 256, 42));
        for (p, name) in [
            (IsolationForestParams::default().trees(0), "trees"),
            (
                IsolationForestParams::default().max_samples(1),
                "max_samples",
            ),
            (
                IsolationForestParams::default().max_features(0.0),
                "max_features",
            ),
            (
                IsolationForestParams::default().max_features(1.5),
                "max_features",
            ),
            (
                IsolationForestParams::default().max_features(f64::NAN),
                "max_features",
            ),
        ] {
            match p.check() {
                Err(Error::InvalidParam(p)) => assert_eq!(p.name, name),
                other => panic!("expected an error for {name}, got {other:?}"),
            }
        }
    }

    #[test]
    fn features_per_tree_follows_sklearn() {
        let c = IsolationForestParams::default()
            .max_features(0.5)
            .check()
            .unwrap();
        assert_eq!(c.features_per_tree(40), 20);
        assert_eq!(c.features_per_tree(1), 1);
        let c = IsolationForestParams::default()
            .max_features(0.01)
            .check()
            .unwrap();
        assert_eq!(c.features_per_tree(40), 1);
    }

    #[test]
    fn deserializing_checks_again() {
        let ok: CheckedIsolationForest =
            serde_json::from_str(r#"{"trees": 10, "max_samples": 64}"#).unwrap();
        assert_eq!((ok.trees(), ok.max_samples(), ok.seed()), (10, 64, 42));
        let bad = serde_json::from_str::<CheckedIsolationForest>(r#"{"trees": 0}"#);
        assert!(bad.unwrap_err().to_string().contains("trees"));
        let unknown = serde_json::from_str::<IsolationForestParams>(r#"{"tree": 3}"#);
        assert!(unknown.unwrap_err().to_string().contains("tree"));
    }
}
