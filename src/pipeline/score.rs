//! Scoring: a saved model applied, unchanged, to telemetry.

use itap_anomaly::ndarray::{Array2, ArrayView2};
use itap_anomaly::{FittedDetector, StandardScaler};
use itap_telemetry::{Batch, ParamGuard};

use crate::error::{Error, Result};
use crate::model::ModelFile;
use crate::pipeline::train::feature_array;

/// How attribution is explained in reports, for detectors that score the row as
/// a whole (PCA, the forest).
pub const ATTRIBUTION_METHOD: &str =
    "each feature's share of the row's total absolute standardised deviation |z|";

/// How attribution is explained in reports, for the calibrated detector.
pub const CALIBRATED_ATTRIBUTION_METHOD: &str = "each feature's share of the summed calibrated scores (−log10 of the training tail probability) of the alert's rows";

/// Every row's features, standardised by a model's scaler (NaN replaced by 0, the
/// training mean), rows × features: what the detector reads. Made by
/// [`ModelFile::features`] or by training.
#[derive(Debug)]
pub struct ScaledFeatures {
    x: Array2<f64>,
}

impl ScaledFeatures {
    /// Standardises a rows × features matrix in place.
    pub(crate) fn scale(mut x: Array2<f64>, scaler: &StandardScaler) -> Result<Self> {
        scaler.scale_inplace(x.view_mut())?;
        x.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
        Ok(ScaledFeatures { x })
    }

    /// The matrix, rows × features.
    pub fn view(&self) -> ArrayView2<'_, f64> {
        self.x.view()
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// Each feature's share of row `r`'s scaled deviation: |zⱼ|.
    pub fn contributions(&self, r: usize) -> Vec<f64> {
        self.x.row(r).iter().map(|v| v.abs()).collect()
    }
}

/// Scored rows: one score per batch row, and the scaled features for attribution.
#[derive(Debug)]
pub struct Scored {
    /// One score per row, higher = more anomalous.
    pub scores: Vec<f64>,
    /// The features the scores came from.
    pub features: ScaledFeatures,
}

impl ModelFile {
    /// Each feature's part in row `r`'s score: its calibrated score for the
    /// calibrated detector, else its scaled deviation |zⱼ|.
    pub fn contributions(&self, scored: &Scored, r: usize) -> Vec<f64> {
        match self.detector.column_scores(scored.features.x.row(r)) {
            Ok(Some(v)) => v,
            _ => scored.features.contributions(r),
        }
    }

    /// How [`ModelFile::contributions`] are computed, in words.
    pub fn attribution_method(&self) -> &'static str {
        match self.detector.kind() {
            itap_anomaly::DetectorKind::Residual => CALIBRATED_ATTRIBUTION_METHOD,
            _ => ATTRIBUTION_METHOD,
        }
    }
}

impl ModelFile {
    /// Every row's features, computed and scaled by the fitted pieces.
    ///
    /// # Errors
    /// [`Error::FeatureMismatch`] naming missing and extra features when the data's
    /// signals give other features; the stages' errors.
    pub fn features(&self, batch: &Batch) -> Result<ScaledFeatures> {
        let schema = batch.schema();
        if self
            .features
            .signals()
            .iter()
            .any(|s| schema.index_of(s).is_none())
        {
            // Name the features the data would give, against the model's.
            let params = self
                .features
                .params()
                .clone()
                .signals(Vec::<String>::new())
                .check()?;
            let names: Vec<String> = itap_features::catalogue(&params, schema)?
                .into_iter()
                .map(|f| f.name)
                .collect();
            return Err(self.mismatch(&names));
        }
        let matrix = itap_features::transform(batch, &self.features)?;
        let names: Vec<String> = matrix.names().map(str::to_owned).collect();
        if names != self.feature_names {
            return Err(self.mismatch(&names));
        }
        ScaledFeatures::scale(feature_array(matrix), &self.scaler)
    }

    /// Scores rows whose features are already computed and scaled (by
    /// [`ModelFile::features`], or by training this model).
    ///
    /// # Errors
    /// [`Error::FeatureMismatch`] when the features are not as many as the model's;
    /// the detector's errors.
    pub fn score_features(&self, features: ScaledFeatures) -> Result<Scored> {
        if features.view().ncols() != self.feature_names.len() {
            return Err(Error::FeatureMismatch {
                missing: self.feature_names.clone(),
                extra: Vec::new(),
            });
        }
        let scores = self.detector.score(features.view())?.to_vec();
        Ok(Scored { scores, features })
    }

    /// Scores every row of `batch` with the fitted pieces, unchanged.
    ///
    /// # Errors
    /// As [`ModelFile::features`] and [`ModelFile::score_features`].
    pub fn score(&self, batch: &Batch) -> Result<Scored> {
        self.score_features(self.features(batch)?)
    }

    /// The error naming the model's features the data lacks and the data's the
    /// model does not know.
    fn mismatch(&self, names: &[String]) -> Error {
        let missing: Vec<String> = self
            .feature_names
            .iter()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        let extra: Vec<String> = names
            .iter()
            .filter(|n| !self.feature_names.contains(n))
            .cloned()
            .collect();
        Error::FeatureMismatch { missing, extra }
    }
}
