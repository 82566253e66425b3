//! The model file: every fitted piece (features, scaler, detector) and a sketch
//! of the training scores, in one versioned JSON file.

use std::path::Path;

use itap_anomaly::{FittedDetector, Model, StandardScaler};
use itap_eval::ScoreSketch;
use itap_features::FeaturesFit;
use itap_telemetry::Schema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The version of the model file layout (2: the training scores are kept as a
/// [`ScoreSketch`] from which itap-eval decides the threshold).
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// What training used and left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// First timestamp of the data, RFC 3339.
    pub first: String,
    /// Training rows are before this, RFC 3339.
    pub until: String,
    /// Rows in the training span.
    pub rows_in_span: u64,
    /// Rows the scaler, the features' baselines and the detector learned from.
    pub rows_used: u64,
    /// Rows at the end of the training span held back: scored as unseen data,
    /// they give the sketch the threshold is set from (0: the fitted rows did).
    #[serde(default)]
    pub calibration_rows: u64,
    /// Where the held-back slice starts (RFC 3339; rows after it, before `until`);
    /// none when nothing was held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_from: Option<String>,
    /// When the fitted rows were more than `[model] max_training_rows`: how many
    /// of them, a sample by a seeded hash of (device, timestamp), the scaler and
    /// the detector learned from (the features' baselines learned from all of
    /// them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_sampled: Option<u64>,
    /// Rows left out for their state.
    pub excluded_by_state: u64,
    /// Rows left out for a fault tag.
    pub excluded_as_faulty: u64,
    /// The exclusions, in words.
    pub exclusions: Vec<String>,
    /// Whether labels were ignored.
    pub unsupervised: bool,
    /// When trained a group of devices at a time: how many devices the fleet's
    /// pooled baselines and seasonal profiles were fitted on (all of them, or a
    /// seeded sample of a larger fleet); absent when trained on the whole data
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_devices: Option<u64>,
}

/// The model file: everything fitted on the training span, applied unchanged to
/// later data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Layout version ([`MODEL_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The program that wrote it.
    pub created_by: String,
    /// The fitted detector (its kind, parameters and trees or PCA basis).
    pub detector: Model,
    /// The standard scaler, fitted on the training rows.
    pub scaler: StandardScaler,
    /// The feature columns, in the order the detector reads them.
    pub feature_names: Vec<String>,
    /// Each feature's signal family (same order), for attribution.
    pub feature_families: Vec<String>,
    /// The fitted feature engineering (baselines, seasonal profiles, periods).
    pub features: FeaturesFit,
    /// The telemetry schema trained on.
    pub schema: Schema,
    /// SHA-256 of the schema's JSON.
    pub schema_digest: String,
    /// The training span and exclusions.
    pub training: TrainingInfo,
    /// The detector's scores on the held-back calibration rows (or, without
    /// them, on its training rows), sketched for thresholds.
    pub training_scores: ScoreSketch,
}

/// SHA-256 of a schema's JSON, hex.
pub(crate) fn schema_digest(schema: &Schema) -> String {
    let json = serde_json::to_string(schema).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(json.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ModelFile {
    /// The detector in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} {} on {} features",
            self.detector.kind().as_str(),
            self.detector.params_json(),
            self.feature_names.len()
        )
    }

    /// Writes the model as JSON, atomically, creating folders.
    ///
    /// # Errors
    /// [`Error::Eval`] wrapping the I/O error with the path.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(itap_eval::write_json(self, path)?)
    }

    /// Reads a model file, checking its version.
    ///
    /// # Errors
    /// [`Error::ModelFile`] when it cannot be read, is not a model file, or has
    /// another layout version.
    pub fn load(path: &Path) -> Result<ModelFile> {
        let bad = |reason: String| Error::ModelFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("{e}; train one with `itap train`")))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        match v.get("format_version").and_then(serde_json::Value::as_u64) {
            Some(x) if x == u64::from(MODEL_FORMAT_VERSION) => {}
            Some(x) => {
                return Err(bad(format!(
                    "layout version {x}, this program reads {MODEL_FORMAT_VERSION}; retrain it"
                )));
            }
            None => return Err(bad("no format_version: not an ITAP model file".into())),
        }
        serde_json::from_value(v).map_err(|e| bad(format!("cannot read it: {e}")))
    }
}
