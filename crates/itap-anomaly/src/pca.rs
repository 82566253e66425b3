//! PCA-based multivariate statistical process control: Hotelling's T² and the
//! squared prediction error (SPE, Q).

use itap_telemetry::ParamGuard;
use linfa_linalg::eigh::{EigSort, Eigh};
use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matrix::{check_columns, check_finite, quantile};

/// Rows per parallel task in the fit's sums and in scoring.
const CHUNK: usize = 4096;
/// A statistic's training quantile is floored at this share of its scale, so a
/// degenerate training set cannot make the combined score divide by zero.
const LIMIT_FLOOR: f64 = 1e-9;

/// PCA detector parameters, unchecked: the `[model.pca]` config section.
///
/// Build with [`Default`] and the setters (or deserialize), then
/// [`check`](ParamGuard::check) once; only [`CheckedPca`] can fit.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `variance` | 0.95 | share of the training variance the kept components must explain: the fewest components reaching it are kept | (0, 1] |
/// | `max_components` | none | at most this many components | ≥ 1 |
/// | `quantile` | 0.99 | training quantile of T² and of Q that each statistic is divided by in the combined score | (0, 1] |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcaParams {
    /// Share of the variance the kept components explain.
    pub variance: f64,
    /// At most this many components (`None`: no cap).
    pub max_components: Option<usize>,
    /// Training quantile the statistics are normalised by.
    pub quantile: f64,
}

impl Default for PcaParams {
    fn default() -> Self {
        PcaParams {
            variance: 0.95,
            max_components: None,
            quantile: 0.99,
        }
    }
}

impl PcaParams {
    /// Sets the share of variance to explain.
    pub fn variance(mut self, v: f64) -> Self {
        self.variance = v;
        self
    }

    /// Caps the number of components.
    pub fn max_components(mut self, v: Option<usize>) -> Self {
        self.max_components = v;
        self
    }

    /// Sets the normalising quantile.
    pub fn quantile(mut self, v: f64) -> Self {
        self.quantile = v;
        self
    }
}

impl ParamGuard for PcaParams {
    type Checked = CheckedPca;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        if !(self.variance > 0.0 && self.variance <= 1.0) {
            return Err(Error::param(
                "variance",
                format!("{} is out of range; use a share in (0, 1]", self.variance),
            ));
        }
        if self.max_components == Some(0) {
            return Err(Error::param(
                "max_components",
                "0 keeps nothing; use at least 1, or leave it unset",
            ));
        }
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return Err(Error::param(
                "quantile",
                format!("{} is out of range; use a share in (0, 1]", self.quantile),
            ));
        }
        Ok(())
    }

    /// Checks every parameter against its range.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] naming the first parameter out of range.
    fn check(self) -> Result<CheckedPca> {
        self.check_ref()?;
        Ok(CheckedPca(self))
    }
}

/// Checked PCA detector parameters: the only kind that can fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PcaParams", into = "PcaParams")]
pub struct CheckedPca(PcaParams);

impl TryFrom<PcaParams> for CheckedPca {
    type Error = Error;

    fn try_from(p: PcaParams) -> Result<Self> {
        p.check()
    }
}

impl From<CheckedPca> for PcaParams {
    fn from(c: CheckedPca) -> Self {
        c.0
    }
}

impl CheckedPca {
    /// The parameters.
    pub fn params(&self) -> &PcaParams {
        &self.0
    }

    /// Fits on the listed rows of `x`.
    pub(crate) fn build(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<PcaDetector> {
        let p = x.ncols();
        if p == 0 {
            return Err(Error::NoColumns);
        }
        if rows.len() < 2 {
            return Err(Error::TooFewRows {
                what: "the PCA detector",
                rows: rows.len(),
                needed: 2,
            });
        }
        check_finite(x, rows)?;
        let n = rows.len() as f64;

        // means and covariance from fixed chunks summed in order: the same on any
        // thread count and machine (plain loops, no runtime-dispatched kernels)
        let sums: Vec<Vec<f64>> = rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut s = vec![0.0; p];
                for &r in chunk {
                    for (a, v) in s.iter_mut().zip(x.row(r)) {
                        *a += v;
                    }
                }
                s
            })
            .collect();
        let mut mean = vec![0.0; p];
        for s in &sums {
            for (m, v) in mean.iter_mut().zip(s) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);

        let partial: Vec<Vec<f64>> = rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut c = vec![0.0; p * p];
                let mut xc = vec![0.0; p];
                for &r in chunk {
                    for ((d, v), m) in xc.iter_mut().zip(x.row(r)).zip(&mean) {
                        *d = v - m;
                    }
                    for a in 0..p {
                        let xa = xc[a];
                        let row = &mut c[a * p..(a + 1) * p];
                        for b in a..p {
                            row[b] += xa * xc[b];
                        }
                    }
                }
                c
            })
            .collect();
        let mut cov = Array2::<f64>::zeros((p, p));
        for c in &partial {
            for a in 0..p {
                for b in a..p {
                    cov[[a, b]] += c[a * p + b];
                }
            }
        }
        for a in 0..p {
            for b in a..p {
                let v = cov[[a, b]] / (n - 1.0);
                cov[[a, b]] = v;
                cov[[b, a]] = v;
            }
        }
        let total: f64 = (0..p).map(|a| cov[[a, a]]).sum();
        if total.is_nan() || total <= 0.0 {
            return Err(Error::NoVariance { rows: rows.len() });
        }

        let (vals, vecs) = cov.eigh()?.sort_eig_desc();
        let spectrum: Vec<f64> = vals.iter().map(|&v| v.max(0.0)).collect();
        let sum: f64 = spectrum.iter().sum();
        let tiny = spectrum[0] * 1e-12;
        let usable = spectrum.iter().take_while(|&&v| v > tiny).count().max(1);
        let mut k = 0;
        let mut cum = 0.0;
        while k < p {
            cum += spectrum[k];
            k += 1;
            if cum / sum >= self.0.variance - 1e-12 {
                break;
            }
        }
        let k = k.min(usable).min(self.0.max_components.unwrap_or(p));

        let mut components = Array2::<f64>::zeros((k, p));
        for i in 0..k {
            let v = vecs.column(i);
            // sign convention: the largest loading is positive
            let big = v
                .iter()
                .copied()
                .fold(0.0f64, |acc, e| if e.abs() > acc.abs() { e } else { acc });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            for j in 0..p {
                components[[i, j]] = sign * v[j];
            }
        }
        let mut det = PcaDetector {
            params: self.clone(),
            mean,
            components,
            eigenvalues: spectrum[..k].to_vec(),
            spectrum,
            t2_limit: 1.0,
            q_limit: 1.0,
            training_rows: rows.len(),
        };
        let (mut t2, mut q) = det.training_statistics(x, rows);
        det.t2_limit = quantile(&mut t2, self.0.quantile).max(LIMIT_FLOOR);
        det.q_limit = quantile(&mut q, self.0.quantile).max(LIMIT_FLOOR * total);
        Ok(det)
    }
}

/// A fitted PCA detector: the principal components of the training rows that
/// explain the requested share of their variance, and two statistics per row.
///
/// - **T²** (Hotelling): Σᵢ tᵢ²/λᵢ over the kept components, t = Pᵀ(x − μ): how far
///   the row is from the mean *inside* the model plane, in units of the training
///   variance along each component.
/// - **Q** (SPE): ‖(x − μ) − P t‖², the squared distance *from* the model plane:
///   a break of the correlation structure.
/// - **Combined score**: max(T² / T²₍q₎, Q / Q₍q₎), each statistic divided by its
///   training quantile (parameter `quantile`, default 0.99). Higher is more
///   anomalous; a value above 1 exceeds the training quantile of at least one
///   statistic.
///
/// The components come from a symmetric eigen-decomposition of the covariance
/// matrix (linfa-linalg), with each component's largest loading made positive.
/// Give it standardised columns ([`StandardScaler`](crate::StandardScaler)), so that
/// no column dominates by its unit.
///
/// **NaN** in a row being scored is replaced by the training mean of its column (it
/// adds no deviation of its own). Fitting needs finite values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PcaRepr", into = "PcaRepr")]
pub struct PcaDetector {
    params: CheckedPca,
    mean: Vec<f64>,
    components: Array2<f64>,
    eigenvalues: Vec<f64>,
    spectrum: Vec<f64>,
    t2_limit: f64,
    q_limit: f64,
    training_rows: usize,
}

/// T², Q and the combined score of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaStatistics {
    /// Hotelling's T².
    pub t2: Array1<f64>,
    /// The squared prediction error Q.
    pub q: Array1<f64>,
    /// max(T² / T² limit, Q / Q limit).
    pub combined: Array1<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PcaRepr {
    params: CheckedPca,
    mean: Vec<f64>,
    /// One row per kept component, one loading per column.
    components: Vec<Vec<f64>>,
    eigenvalues: Vec<f64>,
    spectrum: Vec<f64>,
    t2_limit: f64,
    q_limit: f64,
    training_rows: usize,
}

impl From<PcaDetector> for PcaRepr {
    fn from(d: PcaDetector) -> Self {
        PcaRepr {
            components: d
                .components
                .rows()
                .into_iter()
                .map(|r| r.to_vec())
                .collect(),
            params: d.params,
            mean: d.mean,
            eigenvalues: d.eigenvalues,
            spectrum: d.spectrum,
            t2_limit: d.t2_limit,
            q_limit: d.q_limit,
            training_rows: d.training_rows,
        }
    }
}

impl TryFrom<PcaRepr> for PcaDetector {
    type Error = Error;

    fn try_from(r: PcaRepr) -> Result<Self> {
        let p = r.mean.len();
        let k = r.components.len();
        if p == 0 || k == 0 || k > p {
            return Err(Error::model(format!("{k} components over {p} columns")));
        }
        if r.components.iter().any(|c| c.len() != p)
            || r.eigenvalues.len() != k
            || r.spectrum.len() != p
        {
            return Err(Error::model("PCA arrays of inconsistent lengths"));
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let valid = finite(&r.mean)
            && r.components.iter().all(|c| finite(c))
            && finite(&r.spectrum)
            && r.eigenvalues.iter().all(|&e| positive(e))
            && positive(r.t2_limit)
            && positive(r.q_limit);
        if !valid {
            return Err(Error::model(
                "PCA values must be finite, eigenvalues and limits positive",
            ));
        }
        let components = Array2::from_shape_vec((k, p), r.components.concat())
            .map_err(|e| Error::model(e.to_string()))?;
        Ok(PcaDetector {
            params: r.params,
            mean: r.mean,
            components,
            eigenvalues: r.eigenvalues,
            spectrum: r.spectrum,
            t2_limit: r.t2_limit,
            q_limit: r.q_limit,
            training_rows: r.training_rows,
        })
    }
}

impl PcaDetector {
    /// The combined score per row of `x` (see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        Ok(self.statistics(x)?.combined)
    }

    /// T², Q and the combined score per row of `x`.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have the training column count.
    pub fn statistics(&self, x: ArrayView2<'_, f64>) -> Result<PcaStatistics> {
        check_columns(self.mean.len(), x)?;
        let n = x.nrows();
        let mut t2 = vec![0.0; n];
        let mut q = vec![0.0; n];
        t2.par_chunks_mut(CHUNK)
            .zip(q.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (t2c, qc))| {
                let mut scratch = Scratch::new(self);
                for (i, (t, qq)) in t2c.iter_mut().zip(qc.iter_mut()).enumerate() {
                    (*t, *qq) = self.row_statistics(x.row(c * CHUNK + i), &mut scratch);
                }
            });
        let combined = t2
            .iter()
            .zip(&q)
            .map(|(t, q)| (t / self.t2_limit).max(q / self.q_limit))
            .collect();
        Ok(PcaStatistics {
            t2: Array1::from_vec(t2),
            q: Array1::from_vec(q),
            combined,
        })
    }

    fn training_statistics(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let parts: Vec<(Vec<f64>, Vec<f64>)> = rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut scratch = Scratch::new(self);
                chunk
                    .iter()
                    .map(|&r| self.row_statistics(x.row(r), &mut scratch))
                    .unzip()
            })
            .collect();
        let mut t2 = Vec::with_capacity(rows.len());
        let mut q = Vec::with_capacity(rows.len());
        for (a, b) in parts {
            t2.extend(a);
            q.extend(b);
        }
        (t2, q)
    }

    fn row_statistics(&self, row: ndarray::ArrayView1<'_, f64>, s: &mut Scratch) -> (f64, f64) {
        for ((d, &v), &m) in s.xc.iter_mut().zip(row).zip(&self.mean) {
            *d = if v.is_nan() { 0.0 } else { v - m };
        }
        let mut t2 = 0.0;
        for (i, (t, &lambda)) in s.t.iter_mut().zip(&self.eigenvalues).enumerate() {
            let c = self.components.row(i);
            *t = c.iter().zip(&s.xc).map(|(a, b)| a * b).sum();
            t2 += *t * *t / lambda;
        }
        let mut q = 0.0;
        for (j, &d) in s.xc.iter().enumerate() {
            let fit: f64 =
                s.t.iter()
                    .enumerate()
                    .map(|(i, &t)| self.components[[i, j]] * t)
                    .sum();
            let r = d - fit;
            q += r * r;
        }
        (t2, q)
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &CheckedPca {
        &self.params
    }

    /// Columns of the training matrix.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// Training rows it was fitted on.
    pub fn training_rows(&self) -> usize {
        self.training_rows
    }

    /// Kept components.
    pub fn n_components(&self) -> usize {
        self.eigenvalues.len()
    }

    /// The kept components, one row each (unit length, largest loading positive).
    pub fn components(&self) -> ArrayView2<'_, f64> {
        self.components.view()
    }

    /// Variance along each kept component.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// Share of the training variance each component explains, all of them in
    /// decreasing order (the kept ones first).
    pub fn explained_variance_ratio(&self) -> Vec<f64> {
        let sum: f64 = self.spectrum.iter().sum();
        self.spectrum.iter().map(|v| v / sum).collect()
    }

    /// Per-column training means.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The training quantile of T² the combined score divides by.
    pub fn t2_limit(&self) -> f64 {
        self.t2_limit
    }

    /// The training quantile of Q the combined score divides by.
    pub fn q_limit(&self) -> f64 {
        self.q_limit
    }
}

struct Scratch {
    xc: Vec<f64>,
    t: Vec<f64>,
}

impl Scratch {
    fn new(d: &PcaDetector) -> Self {
        Scratch {
            xc: vec![0.0; d.mean.len()],
            t: vec![0.0; d.eigenvalues.len()],
        }
    }
}
