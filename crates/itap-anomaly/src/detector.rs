//! What both detectors share: the `Detector` and `FittedDetector` traits, the
//! detector kinds, and the enums the pipeline uses to choose one at run time.

use std::fmt;
use std::str::FromStr;

use itap_telemetry::ParamGuard;
use ndarray::{Array1, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::iforest::{CheckedIsolationForest, IsolationForest, IsolationForestParams};
use crate::matrix::mask_indices;
use crate::pca::{CheckedPca, PcaDetector, PcaParams};
use crate::residual::{CheckedResidual, ResidualDetector, ResidualParams};

/// The detectors there are (`--detector iforest|pca|residual`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum DetectorKind {
    /// The Isolation Forest, `iforest`.
    #[default]
    #[serde(rename = "iforest")]
    IsolationForest,
    /// PCA with Hotelling's T² and Q, `pca`.
    #[serde(rename = "pca")]
    Pca,
    /// Every column scored by its training tail probability, the row by the
    /// largest: `residual` (made for control-chart features).
    #[serde(rename = "residual")]
    Residual,
}

impl DetectorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [DetectorKind; 3] = [
        DetectorKind::IsolationForest,
        DetectorKind::Pca,
        DetectorKind::Residual,
    ];

    /// The name as written on the command line, in config files and model files.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::IsolationForest => "iforest",
            DetectorKind::Pca => "pca",
            DetectorKind::Residual => "residual",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DetectorKind {
    type Err = Error;

    /// Reads `iforest`, `pca` or `residual` (case-insensitive).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        DetectorKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                Error::param(
                    "detector",
                    format!("{t:?} is not a detector; use \"iforest\", \"pca\" or \"residual\""),
                )
            })
    }
}

/// A detector ready to fit: checked parameters.
///
/// Object-safe (`dyn Detector<Fitted = Model>`); implemented by
/// [`CheckedIsolationForest`], [`CheckedPca`], [`CheckedResidual`] and [`CheckedDetector`].
pub trait Detector: fmt::Debug + Send + Sync {
    /// What [`fit`](Self::fit) returns.
    type Fitted: FittedDetector;

    /// Which detector this is.
    fn kind(&self) -> DetectorKind;

    /// The parameters as JSON, for model files and reports.
    fn params_json(&self) -> serde_json::Value;

    /// Fits on every row of `x` (rows are observations, columns features).
    ///
    /// # Errors
    ///
    /// [`Error::NoColumns`], [`Error::TooFewRows`] (fewer than 2),
    /// [`Error::NonFinite`] naming the first row and column with NaN or ±∞, and for
    /// PCA [`Error::NoVariance`] or [`Error::Linalg`].
    fn fit(&self, x: ArrayView2<'_, f64>) -> Result<Self::Fitted> {
        let rows: Vec<usize> = (0..x.nrows()).collect();
        self.fit_indices(x, &rows)
    }

    /// Fits on the rows whose flag in `rows` is `true`, without copying them: the
    /// building block for training on a time span, on some operating states, or on
    /// rows not labelled faulty. Errors name rows by their index in `x`.
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit), and [`Error::LengthMismatch`] when the mask does not
    /// have one flag per row.
    fn fit_rows(&self, x: ArrayView2<'_, f64>, rows: &[bool]) -> Result<Self::Fitted> {
        let idx = mask_indices(x.nrows(), rows)?;
        self.fit_indices(x, &idx)
    }

    /// Fits on the rows of `x` at the given indices (in this order).
    ///
    /// # Errors
    ///
    /// As [`fit`](Self::fit), and [`Error::RowOutOfRange`] for an index past the last row.
    fn fit_indices(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<Self::Fitted>;
}

/// A fitted detector: scores rows, higher = more anomalous.
///
/// Object-safe; implemented by [`IsolationForest`], [`PcaDetector`], [`ResidualDetector`] and [`Model`].
pub trait FittedDetector: fmt::Debug + Send + Sync {
    /// Which detector this is.
    fn kind(&self) -> DetectorKind;

    /// The parameters it was fitted with, as JSON.
    fn params_json(&self) -> serde_json::Value;

    /// Columns of the training matrix, which every scored matrix must have.
    fn n_features(&self) -> usize;

    /// One score per row of `x`; higher is more anomalous.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when `x` does not have [`n_features`](Self::n_features) columns.
    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>>;

    /// Each column's part in one row's score, when the detector scores columns
    /// one by one (the calibrated detector: each column's calibrated score);
    /// `None` for detectors that score the row as a whole.
    ///
    /// # Errors
    ///
    /// [`Error::ColumnMismatch`] when the row does not have one value per column.
    fn column_scores(&self, _row: ArrayView1<'_, f64>) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn check_indices(nrows: usize, rows: &[usize]) -> Result<()> {
    match rows.iter().find(|&&r| r >= nrows) {
        Some(&row) => Err(Error::RowOutOfRange { row, rows: nrows }),
        None => Ok(()),
    }
}

impl Detector for CheckedIsolationForest {
    type Fitted = IsolationForest;

    fn kind(&self) -> DetectorKind {
        DetectorKind::IsolationForest
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self)
    }

    fn fit_indices(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<IsolationForest> {
        check_indices(x.nrows(), rows)?;
        self.grow(x, rows)
    }
}

impl Detector for CheckedPca {
    type Fitted = PcaDetector;

    fn kind(&self) -> DetectorKind {
        DetectorKind::Pca
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self)
    }

    fn fit_indices(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<PcaDetector> {
        check_indices(x.nrows(), rows)?;
        self.build(x, rows)
    }
}

impl Detector for CheckedResidual {
    type Fitted = ResidualDetector;

    fn kind(&self) -> DetectorKind {
        DetectorKind::Residual
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self)
    }

    fn fit_indices(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<ResidualDetector> {
        check_indices(x.nrows(), rows)?;
        self.build(x, rows)
    }
}

impl FittedDetector for ResidualDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Residual
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self.params())
    }

    fn n_features(&self) -> usize {
        ResidualDetector::n_features(self)
    }

    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        ResidualDetector::score(self, x)
    }

    fn column_scores(&self, row: ArrayView1<'_, f64>) -> Result<Option<Vec<f64>>> {
        self.calibrate_row(row).map(Some)
    }
}

impl FittedDetector for IsolationForest {
    fn kind(&self) -> DetectorKind {
        DetectorKind::IsolationForest
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self.params())
    }

    fn n_features(&self) -> usize {
        IsolationForest::n_features(self)
    }

    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        IsolationForest::score(self, x)
    }
}

impl FittedDetector for PcaDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::Pca
    }

    fn params_json(&self) -> serde_json::Value {
        to_json(self.params())
    }

    fn n_features(&self) -> usize {
        PcaDetector::n_features(self)
    }

    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        PcaDetector::score(self, x)
    }
}

/// Parameters of every detector and the choice among them, unchecked: the
/// `[model]` config section (`detector = "pca"`, `[model.iforest]`, `[model.pca]`).
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `detector` | `iforest` | the detector to fit | `iforest`, `pca`, `residual` |
/// | `iforest` | see [`IsolationForestParams`] | Isolation Forest parameters | |
/// | `pca` | see [`PcaParams`] | PCA detector parameters | |
/// | `residual` | see [`ResidualParams`] | calibrated detector parameters | |
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorParams {
    /// The detector to fit.
    pub detector: DetectorKind,
    /// Isolation Forest parameters.
    pub iforest: IsolationForestParams,
    /// PCA detector parameters.
    pub pca: PcaParams,
    /// Calibrated detector parameters.
    pub residual: ResidualParams,
}

impl DetectorParams {
    /// Sets the detector.
    pub fn detector(mut self, v: DetectorKind) -> Self {
        self.detector = v;
        self
    }

    /// Sets the Isolation Forest parameters.
    pub fn iforest(mut self, v: IsolationForestParams) -> Self {
        self.iforest = v;
        self
    }

    /// Sets the PCA parameters.
    pub fn pca(mut self, v: PcaParams) -> Self {
        self.pca = v;
        self
    }

    /// Sets the calibrated detector's parameters.
    pub fn residual(mut self, v: ResidualParams) -> Self {
        self.residual = v;
        self
    }
}

impl ParamGuard for DetectorParams {
    type Checked = CheckedDetector;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        match self.detector {
            DetectorKind::IsolationForest => self.iforest.check_ref().map_err(in_iforest),
            DetectorKind::Pca => self.pca.check_ref().map_err(in_pca),
            DetectorKind::Residual => self.residual.check_ref().map_err(in_residual),
        }
    }

    /// Checks the chosen detector's parameters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParam`] naming the first parameter out of range, within
    /// its section (`iforest.trees`).
    fn check(self) -> Result<CheckedDetector> {
        Ok(match self.detector {
            DetectorKind::IsolationForest => {
                CheckedDetector::IsolationForest(self.iforest.check().map_err(in_iforest)?)
            }
            DetectorKind::Pca => CheckedDetector::Pca(self.pca.check().map_err(in_pca)?),
            DetectorKind::Residual => {
                CheckedDetector::Residual(self.residual.check().map_err(in_residual)?)
            }
        })
    }
}

fn in_iforest(e: Error) -> Error {
    e.in_section("iforest")
}

fn in_pca(e: Error) -> Error {
    e.in_section("pca")
}

fn in_residual(e: Error) -> Error {
    e.in_section("residual")
}

/// The chosen detector with checked parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", content = "params")]
pub enum CheckedDetector {
    /// The Isolation Forest.
    #[serde(rename = "iforest")]
    IsolationForest(CheckedIsolationForest),
    /// PCA T² and Q.
    #[serde(rename = "pca")]
    Pca(CheckedPca),
    /// The calibrated detector.
    #[serde(rename = "residual")]
    Residual(CheckedResidual),
}

impl CheckedDetector {
    /// Sets the side each column is scored on, for the detectors that score
    /// columns one by one (the calibrated detector); the others ignore it.
    pub fn directions(self, d: Vec<itap_telemetry::Direction>) -> Self {
        match self {
            CheckedDetector::Residual(r) => CheckedDetector::Residual(r.directions(d)),
            other => other,
        }
    }
}

impl Detector for CheckedDetector {
    type Fitted = Model;

    fn kind(&self) -> DetectorKind {
        match self {
            CheckedDetector::IsolationForest(d) => d.kind(),
            CheckedDetector::Pca(d) => d.kind(),
            CheckedDetector::Residual(d) => d.kind(),
        }
    }

    fn params_json(&self) -> serde_json::Value {
        match self {
            CheckedDetector::IsolationForest(d) => d.params_json(),
            CheckedDetector::Pca(d) => d.params_json(),
            CheckedDetector::Residual(d) => d.params_json(),
        }
    }

    fn fit_indices(&self, x: ArrayView2<'_, f64>, rows: &[usize]) -> Result<Model> {
        Ok(match self {
            CheckedDetector::IsolationForest(d) => Model::IsolationForest(d.fit_indices(x, rows)?),
            CheckedDetector::Pca(d) => Model::Pca(Detector::fit_indices(d, x, rows)?),
            CheckedDetector::Residual(d) => Model::Residual(Detector::fit_indices(d, x, rows)?),
        })
    }
}

/// A fitted detector of either kind; serializes as
/// `{"detector": "iforest", "model": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "detector", content = "model")]
pub enum Model {
    /// A fitted Isolation Forest.
    #[serde(rename = "iforest")]
    IsolationForest(IsolationForest),
    /// A fitted PCA detector.
    #[serde(rename = "pca")]
    Pca(PcaDetector),
    /// A fitted calibrated detector.
    #[serde(rename = "residual")]
    Residual(ResidualDetector),
}

impl Model {
    fn inner(&self) -> &dyn FittedDetector {
        match self {
            Model::IsolationForest(m) => m,
            Model::Pca(m) => m,
            Model::Residual(m) => m,
        }
    }
}

impl FittedDetector for Model {
    fn kind(&self) -> DetectorKind {
        self.inner().kind()
    }

    fn params_json(&self) -> serde_json::Value {
        self.inner().params_json()
    }

    fn n_features(&self) -> usize {
        self.inner().n_features()
    }

    fn score(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        self.inner().score(x)
    }

    fn column_scores(&self, row: ArrayView1<'_, f64>) -> Result<Option<Vec<f64>>> {
        self.inner().column_scores(row)
    }
}
