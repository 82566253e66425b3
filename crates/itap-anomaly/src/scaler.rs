//! Standardisation: per-column mean and standard deviation of the training rows.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matrix::{check_columns, mask_indices};

/// Rows per parallel task.
const CHUNK: usize = 4096;

/// A fitted standard scaler: x ↦ (x − mean) / std, per column.
///
/// Same semantics as linfa-preprocessing's `LinearScaler::standard()` (population
/// standard deviation; a constant column, std ≤ `f64::EPSILON`, keeps std 1) and
/// scikit-learn's `StandardScaler` on finite data, with three differences that the
/// pipeline needs:
///
/// - **NaN is missing**: fitting skips NaN (each column's statistics are over its
///   non-NaN training values, as scikit-learn does) and scaling leaves NaN as NaN.
///   ±∞ in the training rows is an error.
/// - **Errors, not panics**: a matrix with the wrong column count is an
///   [`Error::ColumnMismatch`].
/// - **Plain serde**: `{"mean": [...], "std": [...]}`; deserializing checks it.
///
/// Fit it on the training rows only ([`fit_rows`](Self::fit_rows) with a mask), then
/// scale training and test rows with it. For linfa pipelines,
/// [`StandardScalerParams`] implements `Fit` and this type `Transformer`.
///
/// ```
/// use itap_anomaly::{StandardScaler, ndarray::array};
/// let x = array![[1.0, 10.0], [3.0, f64::NAN], [5.0, 30.0]];
/// let scaler = StandardScaler::fit(x.view())?;
/// assert_eq!(scaler.mean(), &[3.0, 20.0]);
/// let z = scaler.scale(x.view())?;
/// assert_eq!(z[[2, 1]], 1.0);
/// assert!(z[[1, 1]].is_nan());
/// # Ok::<(), itap_anomaly::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScalerRepr", into = "ScalerRepr")]
pub struct StandardScaler {
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScalerRepr {
    mean: Vec<f64>,
    std: Vec<f64>,
}

impl TryFrom<ScalerRepr> for StandardScaler {
    type Error = Error;

    fn try_from(r: ScalerRepr) -> Result<Self> {
        if r.mean.is_empty() || r.mean.len() != r.std.len() {
            return Err(Error::model(format!(
                "scaler with {} means and {} standard deviations",
                r.mean.len(),
                r.std.len()
            )));
        }
        if r.mean.iter().any(|m| !m.is_finite())
            || r.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::model(
                "scaler means must be finite and standard deviations finite and positive",
            ));
        }
        Ok(StandardScaler {
            mean: r.mean,
            std: r.std,
        })
    }
}

impl From<StandardScaler> for ScalerRepr {
    fn from(s: StandardScaler) -> Self {
        ScalerRepr {
            mean: s.mean,
            std: s.std,
        }
    }
}

impl StandardScaler {
    /// Fits on every row of `x`.
    ///
    /// # Errors
    ///
    /// [`Error::NoColumns`], [`Error::TooFewRows`] for no rows,
    /// [`Error::NonFinite`] for ±∞, [`Error::EmptyColumn`] for a column that is NaN
    /// in every row.
    pub fn fit(x: ArrayView2<'_, f64>) -> Result<StandardScaler> {
        let rows: Vec<usize> = (0..x.nrows()).collect();
        Self::fit_indices(x, &rows)
    }

    /// Fits on the rows whose flag in `rows` is `true` (the training span).
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit), and [`Error::LengthMismatch`] when the mask does not
    /// have one flag per row.
    pub fn fit_rows(x: ArrayView2<'_, f64>, rows: &[bool]) -> Result<StandardScaler> {
        let idx = mask_indices(x.nrows(), rows)?;
        Self::fit_indices(x, &idx)
    }

    fn fit_indices(x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<StandardScaler> {
        let p = x.ncols();
        if p == 0 {
            return Err(Error::NoColumns);
        }
        if rows.is_empty() {
            return Err(Error::TooFewRows {
                what: "the standard scaler",
                rows: 0,
                needed: 1,
            });
        }
        // row-major passes over fixed chunks, merged in order: sequential memory
        // access, and the same sums on any thread count
        let passes = |f: &(dyn Fn(usize, f64, &mut [f64]) + Sync)| -> Vec<f64> {
            let parts: Vec<Vec<f64>> = rows
                .par_chunks(CHUNK)
                .map(|chunk| {
                    let mut acc = vec![0.0; 2 * p];
                    for &r in chunk {
                        for (j, &v) in x.row(r).iter().enumerate() {
                            if !v.is_nan() {
                                f(j, v, &mut acc);
                            }
                        }
                    }
                    acc
                })
                .collect();
            let mut total = vec![0.0; 2 * p];
            for part in parts {
                for (t, v) in total.iter_mut().zip(part) {
                    *t += v;
                }
            }
            total
        };
        if let Some((r, column, value)) = rows.iter().find_map(|&r| {
            x.row(r)
                .iter()
                .position(|v| v.is_infinite())
                .map(|c| (r, c, x[[r, c]]))
        }) {
            return Err(Error::NonFinite {
                row: r,
                column,
                value,
            });
        }
        // acc[j] = sum, acc[p + j] = count
        let first = passes(&|j, v, acc| {
            acc[j] += v;
            acc[p + j] += 1.0;
        });
        let mut mean = Vec::with_capacity(p);
        for column in 0..p {
            if first[p + column] == 0.0 {
                return Err(Error::EmptyColumn {
                    column,
                    rows: rows.len(),
                });
            }
            mean.push(first[column] / first[p + column]);
        }
        let second = passes(&|j, v, acc| {
            let d = v - mean[j];
            acc[j] += d * d;
        });
        let std = (0..p)
            .map(|j| {
                let s = (second[j] / first[p + j]).sqrt();
                if s <= f64::EPSILON || !s.is_finite() {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        Ok(StandardScaler { mean, std })
    }

    /// A scaled copy of `x`.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn scale(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        let mut out = x.to_owned();
        self.scale_inplace(out.view_mut())?;
        Ok(out)
    }

    /// Scales `x` in place.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn scale_inplace(&self, mut x: ArrayViewMut2<'_, f64>) -> Result<()> {
        check_columns(self.mean.len(), x.view())?;
        let p = self.mean.len();
        let scale_row = |row: &mut [f64]| {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        };
        let n = x.nrows();
        if let Some(data) = x.as_slice_mut() {
            // standard layout: rows are consecutive runs of p values
            data.par_chunks_mut(p * CHUNK)
                .for_each(|block| block.chunks_exact_mut(p).for_each(scale_row));
        } else if n > 0 && x.t().is_standard_layout() {
            // column-major: columns are consecutive runs of n values
            let data = x
                .as_slice_memory_order_mut()
                .expect("a column-major array is contiguous");
            data.par_chunks_mut(n)
                .zip(self.mean.par_iter().zip(self.std.par_iter()))
                .for_each(|(column, (m, s))| {
                    column.iter_mut().for_each(|v| *v = (*v - m) / s);
                });
        } else {
            for mut row in x.axis_iter_mut(Axis(0)) {
                for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                    *v = (*v - m) / s;
                }
            }
        }
        Ok(())
    }

    /// Per-column means of the training rows.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Per-column population standard deviations (1 for a constant column).
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    /// Columns it was fitted on.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }
}

/// The standard scaler's parameters for linfa's `Fit` (there are none to set:
/// `StandardScalerParams.fit(&dataset)` fits a [`StandardScaler`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardScalerParams;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ShapeBuilder, array};

    #[test]
    fn standardises_training_rows_only() {
        let x = array![[1.0, 5.0], [3.0, 5.0], [100.0, 7.0]];
        let s = StandardScaler::fit_rows(x.view(), &[true, true, false]).unwrap();
        assert_eq!(s.mean(), &[2.0, 5.0]);
        // population std of {1, 3} is 1; column 1 is constant on the training rows
        assert_eq!(s.std(), &[1.0, 1.0]);
        let z = s.scale(x.view()).unwrap();
        assert_eq!(z, array![[-1.0, 0.0], [1.0, 0.0], [98.0, 2.0]]);
    }

    #[test]
    fn nan_is_skipped_and_kept_infinity_refused() {
        let x = array![[1.0, f64::NAN], [3.0, 4.0], [f64::NAN, 8.0]];
        let s = StandardScaler::fit(x.view()).unwrap();
        assert_eq!(s.mean(), &[2.0, 6.0]);
        assert_eq!(s.std(), &[1.0, 2.0]);
        let z = s.scale(x.view()).unwrap();
        assert!(z[[0, 1]].is_nan() && z[[2, 0]].is_nan());
        assert_eq!(z[[1, 1]], -1.0);

        let bad = array![[1.0], [f64::NEG_INFINITY]];
        assert!(matches!(
            StandardScaler::fit(bad.view()),
            Err(Error::NonFinite {
                row: 1,
                column: 0,
                ..
            })
        ));
        let empty = array![[1.0, f64::NAN], [2.0, f64::NAN]];
        assert!(matches!(
            StandardScaler::fit(empty.view()),
            Err(Error::EmptyColumn { column: 1, rows: 2 })
        ));
        assert!(matches!(
            StandardScaler::fit_rows(x.view(), &[false, false, false]),
            Err(Error::TooFewRows { .. })
        ));
    }

    #[test]
    fn any_memory_layout_scales_alike() {
        let x = array![
            [1.0, 2.0, 0.5],
            [3.0, 5.0, 0.25],
            [4.0, 1.0, 1.0],
            [0.0, 2.0, 8.0]
        ];
        let s = StandardScaler::fit(x.view()).unwrap();
        let expected = s.scale(x.view()).unwrap();
        let mut fortran = Array2::zeros(x.dim().f()); // column-major copy
        fortran.assign(&x);
        assert!(fortran.as_slice_mut().is_none());
        s.scale_inplace(fortran.view_mut()).unwrap();
        assert_eq!(fortran, expected);
        // neither row- nor column-major: every other row of a larger array
        let mut spaced = Array2::zeros((8, 3));
        spaced.slice_mut(ndarray::s![..;2, ..]).assign(&x);
        s.scale_inplace(spaced.slice_mut(ndarray::s![..;2, ..]))
            .unwrap();
        assert_eq!(spaced.slice(ndarray::s![..;2, ..]), expected);
        assert!(
            spaced
                .slice(ndarray::s![1..;2, ..])
                .iter()
                .all(|&v| v == 0.0)
        );
        assert_eq!(StandardScaler::fit(x.t().t()).unwrap(), s);
    }

    #[test]
    fn wrong_width_is_an_error() {
        let s = StandardScaler::fit(array![[1.0, 2.0], [2.0, 3.0]].view()).unwrap();
        assert!(matches!(
            s.scale(array![[1.0, 2.0, 3.0]].view()),
            Err(Error::ColumnMismatch {
                expected: 2,
                found: 3
            })
        ));
    }

    #[test]
    fn serde_round_trip_and_checks() {
        let s = StandardScaler::fit(array![[1.0, 2.0], [2.0, 3.5], [0.1, 0.7]].view()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: StandardScaler = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let bad = serde_json::from_str::<StandardScaler>(r#"{"mean": [0.0], "std": [0.0]}"#);
        assert!(bad.unwrap_err().to_string().contains("positive"));
        let bad = serde_json::from_str::<StandardScaler>(r#"{"mean": [0.0, 1.0], "std": [1.0]}"#);
        assert!(bad.is_err());
    }
}
