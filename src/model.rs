//! Training and scoring, and the one model file that bundles every fitted piece.

use std::path::Path;

use itap_anomaly::ndarray::Array2;
use itap_anomaly::{
    CheckedDetector, Detector, DetectorKind, DetectorParams, FittedDetector, Model, StandardScaler,
};
use itap_eval::Split;
use itap_features::{CheckedFeatures, FeatureKind, FeatureMatrix, FeaturesFit, TrainSpan};
use itap_telemetry::{Batch, InvalidParam, ParamGuard, Schema, State, format_timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The version of the model file layout.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// Training-score quantiles recorded in the model (for thresholds).
pub const SCORE_QUANTILES: [f64; 7] = [0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999];

/// The detector the pipeline fits unless told otherwise: PCA with Hotelling's T²
/// and Q. (itap-anomaly's own default, for a user of that crate alone, is the
/// Isolation Forest.) On the seed platform's data, reading [`DEFAULT_INPUTS`], it
/// ranks faulty rows above normal ones better than the forest does; see
/// docs/anomaly.md, "What the detector reads".
pub const DEFAULT_DETECTOR: DetectorKind = DetectorKind::Pca;

/// The pipeline's detector parameters: itap-anomaly's defaults with
/// [`DEFAULT_DETECTOR`].
pub fn default_detector() -> DetectorParams {
    DetectorParams::default().detector(DEFAULT_DETECTOR)
}

/// The feature kinds the detector reads by default.
pub const DEFAULT_INPUTS: [FeatureKind; 3] = [
    FeatureKind::StateDev,
    FeatureKind::MissingRun,
    FeatureKind::ErrorStreak,
];

/// Which rows of the training span the detector learns from, and which features.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `exclude_states` | MAINT | states left out of training ("normal operation" only) |
/// | `unsupervised` | false | train on every row of the span and use no labels at all |
/// | `inputs` | `state_dev`, `missing_run`, `error_streak` | the feature kinds the detector reads (of those the features make); empty = every feature |
///
/// `inputs` exists because the detector is only as good as what it reads: on the
/// seed platform's data the 69 default features dilute the isolation (ROC-AUC
/// 0.53), while each signal's deviation from its device's own baseline in the
/// row's state, with how long a value has been missing and how long an error code
/// has been raised, carries the faults (see
/// docs/anomaly.md, "What the detector reads").
///
/// Unless `unsupervised`, rows with a ground-truth fault tag are left out too when
/// the data has tags ("trained only on normal operating data"); the model file says
/// which exclusions were applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingSet {
    /// States excluded from training.
    pub exclude_states: Vec<State>,
    /// Train on every row of the span, use no labels.
    pub unsupervised: bool,
    /// Feature kinds the detector reads; empty = every feature made.
    pub inputs: Vec<FeatureKind>,
}

impl Default for TrainingSet {
    fn default() -> Self {
        TrainingSet {
            exclude_states: vec![State::Maint],
            unsupervised: false,
            inputs: DEFAULT_INPUTS.to_vec(),
        }
    }
}

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
    /// Rows left out for their state.
    pub excluded_by_state: u64,
    /// Rows left out for a fault tag.
    pub excluded_as_faulty: u64,
    /// The exclusions, in words.
    pub exclusions: Vec<String>,
    /// Whether labels were ignored.
    pub unsupervised: bool,
}

/// A training-score quantile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreQuantile {
    /// The quantile, 0–1.
    pub q: f64,
    /// The training score at it.
    pub score: f64,
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
    /// Quantiles of the detector's scores on its training rows.
    pub score_quantiles: Vec<ScoreQuantile>,
}

/// Scored rows: one score per batch row, and the scaled feature matrix for
/// attribution.
#[derive(Debug)]
pub struct Scored {
    /// One score per row, higher = more anomalous.
    pub scores: Vec<f64>,
    /// The standardised features (NaN replaced by 0, the training mean), rows × features.
    pub scaled: Array2<f64>,
}

impl Scored {
    /// Each feature's share of row `r`'s scaled deviation: |zⱼ|.
    pub fn contributions(&self, r: usize) -> Vec<f64> {
        self.scaled.row(r).iter().map(|v| v.abs()).collect()
    }
}

/// How attribution is explained in reports.
pub const ATTRIBUTION_METHOD: &str = "each feature's share of the row's total absolute standardised deviation |z| at the alert's peak";

fn digest(schema: &Schema) -> String {
    let json = serde_json::to_string(schema).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(json.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The matrix rows × features, standardised, NaN → 0 (the training mean).
fn scaled_matrix(m: &FeatureMatrix, scaler: &StandardScaler) -> Result<Array2<f64>> {
    let cols = m.columns();
    let mut x = Array2::from_shape_fn((m.len(), cols.len()), |(r, c)| cols[c][r]);
    scaler.scale_inplace(x.view_mut())?;
    x.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
    Ok(x)
}

fn families(m: &FeatureMatrix, schema: &Schema) -> Vec<String> {
    m.catalogue()
        .iter()
        .map(|f| {
            schema
                .signal(&f.source)
                .map(|s| {
                    if s.family.is_empty() {
                        s.name.clone()
                    } else {
                        s.family.clone()
                    }
                })
                .unwrap_or_else(|| "Device".to_owned())
        })
        .collect()
}

/// The feature parameters with only the kinds the detector reads (`inputs`, in the
/// order of `features.kinds`); all of them when `inputs` is empty.
///
/// # Errors
/// [`Error::InvalidParam`] (named `inputs`) when no configured kind is an input.
pub fn detector_features(
    features: &CheckedFeatures,
    inputs: &[FeatureKind],
) -> Result<CheckedFeatures> {
    if inputs.is_empty() {
        return Ok(features.clone());
    }
    let kinds: Vec<FeatureKind> = features
        .kinds()
        .iter()
        .copied()
        .filter(|k| inputs.contains(k))
        .collect();
    if kinds.is_empty() {
        return Err(InvalidParam::new(
            "inputs",
            format!(
                "none of {:?} is among the features' kinds {:?}; add them to the features' `kinds` or leave `inputs` empty to read every feature",
                inputs.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                features
                    .kinds()
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
            ),
        )
        .into());
    }
    Ok(features.params().clone().kinds(kinds).check()?)
}

/// Fits features, scaler and detector on the training span of `batch` and bundles
/// them. Returns the model and the scores of every row of `batch`.
///
/// # Errors
/// [`Error::NoTrainingRows`] when the exclusions leave nothing; the stages' errors.
pub fn train(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    features: &CheckedFeatures,
    detector: &CheckedDetector,
) -> Result<(ModelFile, Scored)> {
    let n = batch.len();
    let ts = batch.timestamps();
    let in_span: Vec<bool> = ts.iter().map(|&t| split.is_train(t)).collect();
    let (mut by_state, mut faulty) = (0u64, 0u64);
    let mut exclusions = Vec::new();
    let used: Vec<bool> = (0..n)
        .map(|r| {
            if !in_span[r] {
                return false;
            }
            if set.unsupervised {
                return true;
            }
            if batch
                .states()
                .is_some_and(|s| set.exclude_states.contains(&s[r]))
            {
                by_state += 1;
                return false;
            }
            if batch.tag_of(r).is_some() {
                faulty += 1;
                return false;
            }
            true
        })
        .collect();
    if set.unsupervised {
        exclusions.push("none: unsupervised, every row of the training span, no labels".to_owned());
    } else {
        if batch.states().is_some() && !set.exclude_states.is_empty() {
            let names: Vec<&str> = set.exclude_states.iter().map(|s| s.as_str()).collect();
            exclusions.push(format!("rows in state {}", names.join(", ")));
        }
        if batch.tag_codes().is_some() {
            exclusions.push("rows with a ground-truth fault tag".to_owned());
        }
    }
    let rows_used = used.iter().filter(|&&u| u).count() as u64;
    if rows_used < 2 {
        return Err(Error::NoTrainingRows(exclusions.join("; ")));
    }
    let features = detector_features(features, &set.inputs)?;
    let fit = itap_features::fit(batch, TrainSpan::Rows(&used), &features)?;
    let matrix = itap_features::transform(batch, &fit)?;
    let schema = batch.schema().clone();
    let feature_names: Vec<String> = matrix.names().map(str::to_owned).collect();
    let feature_families = families(&matrix, &schema);
    let cols = matrix.columns();
    let mut x = Array2::from_shape_fn((n, cols.len()), |(r, c)| cols[c][r]);
    drop(matrix);
    let scaler = StandardScaler::fit_rows(x.view(), &used)?;
    scaler.scale_inplace(x.view_mut())?;
    x.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
    let model = detector.fit_rows(x.view(), &used)?;
    let scores = model.score(x.view())?.to_vec();
    let train_scores: Vec<f64> = (0..n).filter(|&r| used[r]).map(|r| scores[r]).collect();
    let score_quantiles = SCORE_QUANTILES
        .iter()
        .map(|&q| ScoreQuantile {
            q,
            score: itap_eval::quantile(&train_scores, q).unwrap_or(f64::NAN),
        })
        .collect();
    let file = ModelFile {
        format_version: MODEL_FORMAT_VERSION,
        created_by: format!("itap {}", env!("CARGO_PKG_VERSION")),
        detector: model,
        scaler,
        feature_names,
        feature_families,
        features: fit,
        schema_digest: digest(&schema),
        schema,
        training: TrainingInfo {
            first: format_timestamp(split.first_us),
            until: format_timestamp(split.cut_us),
            rows_in_span: in_span.iter().filter(|&&b| b).count() as u64,
            rows_used,
            excluded_by_state: by_state,
            excluded_as_faulty: faulty,
            exclusions,
            unsupervised: set.unsupervised,
        },
        score_quantiles,
    };
    Ok((file, Scored { scores, scaled: x }))
}

impl ModelFile {
    /// The training scores of the rows the detector learned from, at quantile `q`
    /// (interpolated between the recorded quantiles when `q` is not one of them).
    pub fn training_quantile(&self, q: f64) -> Option<f64> {
        let qs = &self.score_quantiles;
        let exact = qs.iter().find(|s| (s.q - q).abs() < 1e-12);
        if let Some(s) = exact {
            return Some(s.score);
        }
        let hi = qs.iter().position(|s| s.q > q)?;
        let lo = hi.checked_sub(1)?;
        let (a, b) = (qs[lo], qs[hi]);
        Some(a.score + (b.score - a.score) * (q - a.q) / (b.q - a.q))
    }

    /// Scores every row of `batch` with the fitted pieces, unchanged.
    ///
    /// # Errors
    /// [`Error::FeatureMismatch`] naming missing and extra features when the data's
    /// signals give other features; the stages' errors.
    pub fn score(&self, batch: &Batch) -> Result<Scored> {
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
        let x = scaled_matrix(&matrix, &self.scaler)?;
        let scores = self.detector.score(x.view())?.to_vec();
        Ok(Scored { scores, scaled: x })
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
