//! The Isolation Forest (Liu, Ting & Zhou 2008).

mod build;
mod forest;
mod params;

use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use build::average_path_length;
pub use params::{CheckedIsolationForest, IsolationForestParams, MAX_SAMPLES_LIMIT};

use crate::error::{Error, Result};
use crate::matrix::{check_columns, check_finite};
use build::{GrowSpec, TreeRepr, grow_tree};
use forest::Forest;

/// A fitted Isolation Forest.
///
/// [`score`](Self::score) gives s = 2^(−E\[h\]/c(ψ)) per row, in (0, 1]: higher is more
/// anomalous; around 0.5 and below is ordinary. E\[h\] is the row's path length
/// averaged over the trees (a leaf of n training rows adds c(n) to its depth) and ψ
/// the subsample size.
///
/// **NaN** in a row being scored is taken as "unknown": at a node that splits on
/// that column the row follows both branches, and their path lengths are averaged
/// with the weights of the training rows that went each way. The score is then the
/// expected score over the training distribution of the unknown values. ±∞ is an
/// ordinary (extreme) value. Fitting needs finite values ([`Error::NonFinite`]).
///
/// Serializes with serde (the trees as parallel arrays per tree); deserializing
/// checks the trees, and a model read back scores bit-identically.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Repr")]
pub struct IsolationForest {
    params: CheckedIsolationForest,
    n_features: usize,
    samples: usize,
    training_rows: usize,
    trees: Vec<TreeRepr>,
    forest: Forest,
}

#[derive(Serialize)]
struct ReprRef<'a> {
    params: &'a CheckedIsolationForest,
    n_features: usize,
    samples: usize,
    training_rows: usize,
    trees: &'a [TreeRepr],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Repr {
    params: CheckedIsolationForest,
    n_features: usize,
    samples: usize,
    training_rows: usize,
    trees: Vec<TreeRepr>,
}

impl Serialize for IsolationForest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        ReprRef {
            params: &self.params,
            n_features: self.n_features,
            samples: self.samples,
            training_rows: self.training_rows,
            trees: &self.trees,
        }
        .serialize(s)
    }
}

impl TryFrom<Repr> for IsolationForest {
    type Error = Error;

    fn try_from(r: Repr) -> Result<Self> {
        if r.trees.len() != r.params.trees() {
            return Err(Error::model(format!(
                "{} trees but the parameters say {}",
                r.trees.len(),
                r.params.trees()
            )));
        }
        if r.n_features == 0 {
            return Err(Error::model("no columns"));
        }
        if r.samples < 2 || r.samples > r.params.max_samples() || r.samples > r.training_rows {
            return Err(Error::model(format!(
                "subsample size {} does not fit max_samples {} and {} training rows",
                r.samples,
                r.params.max_samples(),
                r.training_rows
            )));
        }
        if let Some(t) = r
            .trees
            .iter()
            .position(|t| t.size.first() != Some(&(r.samples as u32)))
        {
            return Err(Error::model(format!(
                "tree {t} was not grown on {} rows",
                r.samples
            )));
        }
        let forest = Forest::from_trees(&r.trees, r.n_features)?;
        Ok(IsolationForest {
            params: r.params,
            n_features: r.n_features,
            samples: r.samples,
            training_rows: r.training_rows,
            trees: r.trees,
            forest,
        })
    }
}

impl CheckedIsolationForest {
    /// Grows the forest on the listed rows of `x` (the whole work of fitting).
    pub(crate) fn grow(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<IsolationForest> {
        let p = x.ncols();
        if p == 0 {
            return Err(Error::NoColumns);
        }
        if u32::try_from(p).is_err() {
            return Err(Error::param("columns", format!("{p} columns are too many")));
        }
        if rows.len() < 2 {
            return Err(Error::TooFewRows {
                what: "the Isolation Forest",
                rows: rows.len(),
                needed: 2,
            });
        }
        check_finite(x, rows)?;
        let spec = GrowSpec {
            x: x.view(),
            rows,
            psi: self.max_samples().min(rows.len()),
            features: self.features_per_tree(p),
            seed: self.seed(),
        };
        let trees: Vec<TreeRepr> = (0..self.trees())
            .into_par_iter()
            .map(|t| grow_tree(&spec, t))
            .collect();
        let forest = Forest::from_trees(&trees, p)?;
        Ok(IsolationForest {
            params: self.clone(),
            n_features: p,
            samples: spec.psi,
            training_rows: rows.len(),
            trees,
            forest,
        })
    }
}

impl IsolationForest {
    /// Anomaly scores in (0, 1], one per row of `x`; higher is more anomalous.
    ///
    /// Parallel over blocks of rows; the result does not depend on the thread count.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let mut out = vec![0.0; x.nrows()];
        self.score_into(x, &mut out)?;
        Ok(Array1::from_vec(out))
    }

    /// [`score`](Self::score) into a caller's buffer of one entry per row.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] as for `score`; [`Error::LengthMismatch`] when `out`
    /// does not have one entry per row.
    pub fn score_into(&self, x: ArrayView2<'_, f64>, out: &mut [f64]) -> Result<()> {
        self.mean_path_lengths_into(x, out)?;
        let c = average_path_length(self.samples);
        for s in out.iter_mut() {
            *s = (-*s / c).exp2();
        }
        Ok(())
    }

    /// E\[h\] per row: the path length averaged over the trees (the score before
    /// normalisation; lower is more anomalous).
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn mean_path_lengths(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let mut out = vec![0.0; x.nrows()];
        self.mean_path_lengths_into(x, &mut out)?;
        Ok(Array1::from_vec(out))
    }

    fn mean_path_lengths_into(&self, x: ArrayView2<'_, f64>, out: &mut [f64]) -> Result<()> {
        check_columns(self.n_features, x)?;
        if out.len() != x.nrows() {
            return Err(Error::LengthMismatch {
                what: "the score buffer",
                expected: x.nrows(),
                found: out.len(),
            });
        }
        self.forest.path_sums(x, out);
        let t = self.forest.trees() as f64;
        for s in out.iter_mut() {
            *s /= t;
        }
        Ok(())
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &CheckedIsolationForest {
        &self.params
    }

    /// Columns of the training matrix.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The subsample size ψ the trees were grown on.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Training rows the subsamples were drawn from.
    pub fn training_rows(&self) -> usize {
        self.training_rows
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.forest.trees()
    }

    /// Number of nodes in all trees.
    pub fn nodes(&self) -> usize {
        self.forest.nodes()
    }
}
