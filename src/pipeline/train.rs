//! Training: which rows the detector learns from, and fitting features, scaler and
//! detector on them into one [`ModelFile`].

use itap_anomaly::ndarray::{Array2, Axis};
use itap_anomaly::{
    CheckedDetector, Detector, DetectorKind, DetectorParams, FittedDetector, Model, StandardScaler,
};
use itap_eval::{ScoreSketch, Split};
use itap_features::{
    CheckedFeatures, ChunkedTransform, FeatureChunk, FeatureInfo, FeatureKind, FeatureMatrix,
    TrainSpan,
};
use itap_telemetry::{Batch, Direction, ParamGuard, Schema, State, format_timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{MODEL_FORMAT_VERSION, ModelFile, TrainingInfo, schema_digest};
use crate::pipeline::score::ScaledFeatures;

/// The detector the pipeline fits unless told otherwise: the calibrated detector
/// (`residual`), each control chart scored by its training tail probability.
/// (itap-anomaly's own default, for a user of that crate alone, is the Isolation
/// Forest.) Reading [`DEFAULT_INPUTS`] it ranks faulty rows above normal ones
/// better than PCA and the forest do on the seed platform's data and on the
/// simulator's; see docs/anomaly.md, "What the detector reads".
pub const DEFAULT_DETECTOR: DetectorKind = DetectorKind::Residual;

/// The pipeline's detector parameters: itap-anomaly's defaults with
/// [`DEFAULT_DETECTOR`].
pub fn default_detector() -> DetectorParams {
    DetectorParams::default().detector(DEFAULT_DETECTOR)
}

/// The feature kinds the detector reads by default: the control charts of every
/// signal, how long a value has been missing and how long an error code has
/// been raised.
pub const DEFAULT_INPUTS: [FeatureKind; 3] = [
    FeatureKind::ChartEwma,
    FeatureKind::MissingRun,
    FeatureKind::ErrorStreak,
];

/// The share of the training span, at its end, held back to set the threshold by
/// default.
pub const DEFAULT_CALIBRATION_FRACTION: f64 = 0.2;

/// Which rows of the training span the detector learns from, and which features.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `exclude_states` | MAINT | states left out of training ("normal operation" only) |
/// | `unsupervised` | false | train on every row of the span and use no labels at all |
/// | `inputs` | `chart_ewma`, `missing_run`, `error_streak` | the feature kinds the detector reads (of those the features make); empty = every feature |
/// | `calibration_fraction` | 0.2 | the last share of the training span (in time) held back: features, scaler and detector are fitted on the rows before it, and the threshold's score sketch is taken from the rows in it, scored as unseen data; 0 = fit and sketch on the whole span | 0 – 0.5 |
/// | `max_training_rows` | 1,000,000 | when more rows than this are fitted on, the scaler and the detector learn from a seeded uniform sample of this many of them (the features' per-device baselines still use every row); 0 = never sample | 0, or 1,000 – 10¹² |
///
/// `inputs` exists because the detector is only as good as what it reads: on the
/// seed platform's data the 69 windowed, spectral and device features dilute the
/// isolation (ROC-AUC 0.53), while each signal's control chart (its residual
/// against the device's level in its state and the seasonal profile, averaged
/// over a few time scales), with how long a value has been missing and how long
/// an error code has been raised, carries the faults (see docs/anomaly.md,
/// "What the detector reads").
///
/// `calibration_fraction` exists because a threshold taken from the rows a model
/// was fitted on is too low for later data: a held-back later slice scores as
/// new data does, so the threshold holds after training.
///
/// `max_training_rows` exists because the detector needs far fewer rows than a
/// large fleet's training span holds: a million rows resolve a tail
/// probability of one in ten thousand a hundred times over, and the sample's
/// features (rows × features × 8 bytes, 168 MB with the 21 default features) are
/// the one part of training whose memory the limit bounds. The sample is the
/// rows with the smallest hashes of (device id, timestamp) under
/// [`TRAINING_SAMPLE_SEED`], taken in the batch's order (training a group of
/// devices at a time takes them by time, then device id: the same order for a
/// batch loaded from the store or simulated): the same rows on every run and
/// thread count, and whether the fleet is trained on at once or a group of
/// devices at a time. The held-back rows the threshold is set from are sampled
/// the same way when they are more than `max_training_rows`.
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
    /// The last share of the training span held back to sketch scores on.
    pub calibration_fraction: f64,
    /// The most fitted rows the scaler and the detector learn from (a seeded
    /// sample beyond it); 0 = no limit.
    pub max_training_rows: u64,
}

/// The default of [`TrainingSet::max_training_rows`].
pub const DEFAULT_MAX_TRAINING_ROWS: u64 = 1_000_000;

/// The seed of the training sample's hash of (device id, timestamp).
pub const TRAINING_SAMPLE_SEED: u64 = 0x17A9_5A4D;

impl Default for TrainingSet {
    fn default() -> Self {
        TrainingSet {
            exclude_states: vec![State::Maint],
            unsupervised: false,
            inputs: DEFAULT_INPUTS.to_vec(),
            calibration_fraction: DEFAULT_CALIBRATION_FRACTION,
            max_training_rows: DEFAULT_MAX_TRAINING_ROWS,
        }
    }
}

impl TrainingSet {
    /// Checks `calibration_fraction` and `max_training_rows`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] (`calibration_fraction`) when it is not in 0 – 0.5,
    /// (`max_training_rows`) when it is neither 0 nor 1,000 – 10¹².
    pub fn check(&self) -> Result<()> {
        let f = self.calibration_fraction;
        if !(0.0..=0.5).contains(&f) {
            return Err(Error::param(
                "calibration_fraction",
                format!("{f} is not a share from 0 to 0.5 of the training span"),
            ));
        }
        let m = self.max_training_rows;
        if m != 0 && !(1_000..=1_000_000_000_000).contains(&m) {
            return Err(Error::param(
                "max_training_rows",
                format!("{m} is neither 0 (no limit) nor from 1000 to 10^12 rows"),
            ));
        }
        Ok(())
    }
}

/// A trained model, and the standardised features of every row of the batch it
/// was trained on (so the rows can be scored without computing them again).
#[derive(Debug)]
pub struct Trained {
    /// The model file.
    pub model: ModelFile,
    /// Every row's features, computed and scaled by the model's fitted pieces.
    pub features: ScaledFeatures,
}

/// The rows of the training span the detector learns from.
pub(crate) struct TrainingRows {
    /// One flag per batch row: fitted on.
    pub(crate) used: Vec<bool>,
    /// The held-back rows the threshold's sketch is taken from (empty: none).
    pub(crate) calibration: Vec<usize>,
    /// What was used and left out, and why.
    pub(crate) info: TrainingInfo,
}

/// Fewest held-back rows worth calibrating on; with fewer the sketch is taken
/// from the fitted rows.
pub(crate) const MIN_CALIBRATION_ROWS: usize = 100;

/// Moves the rows of `used` after the held-back cut into a calibration slice.
fn hold_back(
    batch: &Batch,
    split: &Split,
    fraction: f64,
    used: &mut [bool],
    always: bool,
) -> (Vec<usize>, Option<i64>) {
    if fraction <= 0.0 {
        return (Vec::new(), None);
    }
    let ts = batch.timestamps();
    let span = (split.cut_us - split.first_us) as f64;
    let cut = split.first_us + (span * (1.0 - fraction)).round() as i64;
    let calibration: Vec<usize> = (0..used.len())
        .filter(|&r| used[r] && ts[r] > cut)
        .collect();
    let fitted = used.iter().filter(|&&u| u).count() - calibration.len();
    if !always && (calibration.len() < MIN_CALIBRATION_ROWS || fitted < 2) {
        return (Vec::new(), None);
    }
    for &r in &calibration {
        used[r] = false;
    }
    (calibration, Some(cut))
}

/// A row's place in the training sample: the rows with the smallest keys are
/// taken. The key hashes the device id and the timestamp under
/// [`TRAINING_SAMPLE_SEED`], so a row's key does not depend on where the row is
/// in its batch, and a sample of a fleet taken a group of devices at a time is
/// the sample of the whole (see [`crate::pipeline::grouped`]).
pub(crate) fn sample_key(device: &str, ts: i64) -> u64 {
    // FNV-1a of the id, mixed with the timestamp by SplitMix64's finaliser.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    mix(h ^ mix((ts as u64) ^ TRAINING_SAMPLE_SEED))
}

/// The `max` rows of `rows` (ascending batch rows) with the smallest
/// [`sample_key`]s (ties by timestamp, then device id), ascending; `None` when
/// `rows` holds at most `max` (or `max` is 0): they are all taken.
pub(crate) fn sample_of(batch: &Batch, rows: &[usize], max: u64) -> Option<Vec<usize>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if max == 0 || rows.len() <= max {
        return None;
    }
    let (ts, codes, names) = (
        batch.timestamps(),
        batch.device_codes(),
        batch.device_names(),
    );
    let mut keyed: Vec<(u64, i64, &str, usize)> = rows
        .iter()
        .map(|&r| {
            let d = names[codes[r] as usize].as_str();
            (sample_key(d, ts[r]), ts[r], d, r)
        })
        .collect();
    keyed.select_nth_unstable(max - 1);
    let mut picked: Vec<usize> = keyed[..max].iter().map(|k| k.3).collect();
    picked.sort_unstable();
    Some(picked)
}

/// The rows the scaler and the detector are fitted on: `used` itself when it
/// holds at most `max` rows (or `max` is 0), else the `max` of them with the
/// smallest [`sample_key`]s. Returns the sample's size when one was drawn.
fn sample_rows<'u>(
    batch: &Batch,
    used: &'u [bool],
    max: u64,
) -> (std::borrow::Cow<'u, [bool]>, Option<u64>) {
    let rows: Vec<usize> = (0..used.len()).filter(|&r| used[r]).collect();
    match sample_of(batch, &rows, max) {
        None => (std::borrow::Cow::Borrowed(used), None),
        Some(picked) => {
            let mut sample = vec![false; used.len()];
            for r in &picked {
                sample[*r] = true;
            }
            (std::borrow::Cow::Owned(sample), Some(picked.len() as u64))
        }
    }
}

/// Chooses the training rows: the span before the cut, less the excluded states
/// and (unless unsupervised) the rows tagged as faulty. The last slice is held
/// back when it has enough rows, or `always` (a group of a fleet's devices,
/// whose fleet decides).
pub(crate) fn training_rows(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    always: bool,
) -> TrainingRows {
    let (mut in_span, mut by_state, mut faulty) = (0u64, 0u64, 0u64);
    let states = batch.states();
    let used: Vec<bool> = (0..batch.len())
        .map(|r| {
            if !split.is_train(batch.timestamps()[r]) {
                return false;
            }
            in_span += 1;
            if set.unsupervised {
                return true;
            }
            if states.is_some_and(|s| set.exclude_states.contains(&s[r])) {
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
    let mut used = used;
    let (calibration, calibration_from) =
        hold_back(batch, split, set.calibration_fraction, &mut used, always);
    let exclusions = exclusions(
        set,
        states.is_some(),
        batch.tag_codes().is_some(),
        calibration.len() as u64,
    );
    let rows_used = used.iter().filter(|&&u| u).count() as u64;
    TrainingRows {
        used,
        info: TrainingInfo {
            calibration_rows: calibration.len() as u64,
            calibration_from: calibration_from.map(format_timestamp),
            first: format_timestamp(split.first_us),
            until: format_timestamp(split.cut_us),
            rows_in_span: in_span,
            rows_used,
            rows_sampled: None,
            excluded_by_state: by_state,
            excluded_as_faulty: faulty,
            exclusions,
            unsupervised: set.unsupervised,
            fleet_devices: None,
        },
        calibration,
    }
}

/// The training set's exclusions, in words, for data with or without states and
/// tags, and `calibration` rows held back.
pub(crate) fn exclusions(
    set: &TrainingSet,
    states: bool,
    tags: bool,
    calibration: u64,
) -> Vec<String> {
    let mut exclusions = Vec::new();
    if set.unsupervised {
        exclusions.push("none: unsupervised, every row of the training span, no labels".to_owned());
    } else {
        if states && !set.exclude_states.is_empty() {
            let names: Vec<&str> = set.exclude_states.iter().map(|s| s.as_str()).collect();
            exclusions.push(format!("rows in state {}", names.join(", ")));
        }
        if tags {
            exclusions.push("rows with a ground-truth fault tag".to_owned());
        }
    }
    if calibration > 0 {
        exclusions.push(format!(
            "the last {}% of the training span ({calibration} rows), held back to set the threshold on",
            (set.calibration_fraction * 100.0).round(),
        ));
    }
    exclusions
}

/// Each feature's signal family, for attribution ("Device" for device-level
/// features).
pub(crate) fn families(catalogue: &[FeatureInfo], schema: &Schema) -> Vec<String> {
    catalogue
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

/// The side of each feature that is anomalous: its signal's declared direction
/// (run lengths of missing values and error codes only count upwards).
pub(crate) fn directions(catalogue: &[FeatureInfo], schema: &Schema) -> Vec<Direction> {
    catalogue
        .iter()
        .map(|f| match f.kind {
            FeatureKind::MissingRun
            | FeatureKind::Missing
            | FeatureKind::ErrorStreak
            | FeatureKind::StateChanges => Direction::Up,
            _ => schema
                .signal(&f.source)
                .map_or(Direction::Both, |s| s.direction),
        })
        .collect()
}

/// The feature parameters with only the kinds the detector reads (`inputs`, in the
/// order of `features.kinds`); all of them when `inputs` is empty.
///
/// # Errors
/// [`Error::InvalidParam`] (`inputs`) when no configured kind is an input.
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
        let names = |ks: &[FeatureKind]| ks.iter().map(|k| k.as_str()).collect::<Vec<_>>();
        return Err(Error::param(
            "inputs",
            format!(
                "none of {:?} is among the feature kinds {:?}; add them to the feature kinds or read every feature (inputs = [])",
                names(inputs),
                names(features.kinds())
            ),
        ));
    }
    Ok(features.params().clone().kinds(kinds).check()?)
}

/// The training rows and the features' fit on them (the detector's input kinds
/// only): the first half of [`train`] and [`fit_chunked`].
fn fit_features(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    features: &CheckedFeatures,
) -> Result<(TrainingRows, itap_features::FeaturesFit)> {
    set.check()?;
    let rows = training_rows(batch, split, set, false);
    if rows.info.rows_used < 2 {
        return Err(Error::NoTrainingRows(rows.info.exclusions.join("; ")));
    }
    let features = detector_features(features, &set.inputs)?;
    let fit = itap_features::fit(batch, TrainSpan::Rows(&rows.used), &features)?;
    Ok((rows, fit))
}

/// Fits features, scaler and detector on the training span of `batch` (less its
/// held-back last slice) and bundles them with a sketch of the held-back rows'
/// scores (from which itap-eval decides the threshold). Returns the model and
/// every row's scaled features.
///
/// # Errors
/// [`Error::NoTrainingRows`] when the exclusions leave fewer than two rows; the
/// stages' errors.
pub fn train(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    features: &CheckedFeatures,
    detector: &CheckedDetector,
) -> Result<Trained> {
    let (
        TrainingRows {
            used,
            calibration,
            info,
        },
        fit,
    ) = fit_features(batch, split, set, features)?;
    let matrix = itap_features::transform(batch, &fit)?;
    let schema = batch.schema().clone();
    let catalogue = matrix.catalogue().to_vec();
    let directions = directions(&catalogue, &schema);
    let x = feature_array(matrix);
    // The features' per-device baselines above learn from every fitted row; the
    // scaler and the detector from at most `max_training_rows` of them.
    let (fit_rows, rows_sampled) = sample_rows(batch, &used, set.max_training_rows);
    let scaler = StandardScaler::fit_rows(x.view(), &fit_rows)?;
    let scaled = ScaledFeatures::scale(x, &scaler)?;
    let model = detector
        .clone()
        .directions(directions)
        .fit_rows(scaled.view(), &fit_rows)?;
    // The scores the threshold is set from: the held-back rows' (or, without
    // them, the fitted rows'). Each row's score depends on that row alone, so
    // scoring them apart gives the scores the score stage will.
    let sketch_rows = sketch_rows(batch, &used, calibration, set.max_training_rows);
    let train_scores = model
        .score(scaled.view().select(Axis(0), &sketch_rows).view())?
        .to_vec();
    let file = model_file(
        (scaler, model, ScoreSketch::from_scores(&train_scores)),
        &catalogue,
        schema,
        fit,
        TrainingInfo {
            rows_sampled,
            ..info
        },
    );
    Ok(Trained {
        model: file,
        features: scaled,
    })
}

/// A model and the scores of every row of the batch it was trained on, made
/// without holding every row's features (see [`train_and_score`]).
#[derive(Debug)]
pub struct TrainedScores {
    /// The model file.
    pub model: ModelFile,
    /// One score per batch row.
    pub scores: Vec<f64>,
}

/// What [`train`] and then scoring every row give (the same model file, the
/// same scores), computed a chunk of devices at a time: the features are
/// computed twice, once to collect the rows the scaler and the detector learn
/// from and the held-back rows (at most `max_training_rows` of each), once to
/// score, so the memory held is the batch, those rows' features and one score
/// per row, not every row's features.
///
/// # Errors
/// As [`train`].
pub fn train_and_score(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    features: &CheckedFeatures,
    detector: &CheckedDetector,
) -> Result<TrainedScores> {
    let model = fit_chunked(batch, split, set, features, detector)?;
    let scores = model.score_rows(batch)?;
    Ok(TrainedScores { model, scores })
}

/// The rows the threshold's sketch is taken from: the held-back rows, or the
/// fitted rows when none were held back; at most `max` of them (a sample by
/// [`sample_key`] beyond it).
fn sketch_rows(batch: &Batch, used: &[bool], calibration: Vec<usize>, max: u64) -> Vec<usize> {
    let rows: Vec<usize> = if calibration.is_empty() {
        (0..used.len()).filter(|&r| used[r]).collect()
    } else {
        calibration
    };
    sample_of(batch, &rows, max).unwrap_or(rows)
}

/// The model [`train_and_score`] makes: the model [`train`] makes, without
/// holding every row's features.
pub(crate) fn fit_chunked(
    batch: &Batch,
    split: &Split,
    set: &TrainingSet,
    features: &CheckedFeatures,
    detector: &CheckedDetector,
) -> Result<ModelFile> {
    let (
        TrainingRows {
            used,
            calibration,
            info,
        },
        fit,
    ) = fit_features(batch, split, set, features)?;
    let schema = batch.schema().clone();
    // The features' per-device baselines above learn from every fitted row; the
    // scaler and the detector from at most `max_training_rows` of them.
    let (fit_rows, rows_sampled) = {
        let (flags, sampled) = sample_rows(batch, &used, set.max_training_rows);
        let rows: Vec<usize> = (0..flags.len()).filter(|&r| flags[r]).collect();
        (rows, sampled)
    };
    let sketch_rows = sketch_rows(batch, &used, calibration, set.max_training_rows);
    // Only the row lists are needed from here on (the features' pass below
    // sets the run's memory peak).
    drop(used);
    let same = sketch_rows == fit_rows;
    let engine = ChunkedTransform::new(batch, &fit)?;
    let catalogue = engine.catalogue();
    let mut arrays = if same {
        gather_rows(&engine, &[&fit_rows])?
    } else {
        gather_rows(&engine, &[&fit_rows, &sketch_rows])?
    };
    drop(engine);
    let held_back = (arrays.len() > 1).then(|| arrays.pop()).flatten();
    let x = arrays
        .pop()
        .unwrap_or_else(|| unreachable!("one array per list"));
    drop(fit_rows);
    let fitted = fit_scaler_and_detector(x, held_back, detector, directions(&catalogue, &schema))?;
    Ok(model_file(
        fitted,
        &catalogue,
        schema,
        fit,
        TrainingInfo {
            rows_sampled,
            ..info
        },
    ))
}

/// The model file of the fitted scaler, detector and sketch, the features
/// they read (named and grouped into families by `catalogue`) and what training
/// used.
pub(crate) fn model_file(
    (scaler, detector, training_scores): (StandardScaler, Model, ScoreSketch),
    catalogue: &[FeatureInfo],
    schema: Schema,
    features: itap_features::FeaturesFit,
    training: TrainingInfo,
) -> ModelFile {
    ModelFile {
        format_version: MODEL_FORMAT_VERSION,
        created_by: format!("itap {}", env!("CARGO_PKG_VERSION")),
        detector,
        scaler,
        feature_names: catalogue.iter().map(|f| f.name.clone()).collect(),
        feature_families: families(catalogue, &schema),
        features,
        schema_digest: schema_digest(&schema),
        schema,
        training,
        training_scores,
    }
}

/// Fits the scaler and the detector on the rows of `x` (rows × features) and
/// sketches the scores of `held_back`'s rows (or, without them, of `x`'s).
pub(crate) fn fit_scaler_and_detector(
    x: Array2<f64>,
    held_back: Option<Array2<f64>>,
    detector: &CheckedDetector,
    directions: Vec<Direction>,
) -> Result<(StandardScaler, Model, ScoreSketch)> {
    let all = vec![true; x.nrows()];
    let scaler = StandardScaler::fit_rows(x.view(), &all)?;
    let scaled = ScaledFeatures::scale(x, &scaler)?;
    let fitted = detector
        .clone()
        .directions(directions)
        .fit_rows(scaled.view(), &all)?;
    // Each row's score depends on that row alone: the rows scored apart score
    // as the scoring pass will score them.
    let scores = match held_back {
        Some(h) => fitted.score(ScaledFeatures::scale(h, &scaler)?.view())?,
        None => fitted.score(scaled.view())?,
    };
    Ok((scaler, fitted, ScoreSketch::from_scores(&scores.to_vec())))
}

/// The features of each list of rows (ascending batch rows), in that order, as
/// arrays of rows × features stored column by column: one pass of the engine,
/// a chunk of devices at a time.
fn gather_rows(engine: &ChunkedTransform<'_>, lists: &[&[usize]]) -> Result<Vec<Array2<f64>>> {
    use itap_anomaly::ndarray::ShapeBuilder;
    use std::sync::{Mutex, PoisonError};
    let c = engine.n_features();
    let out: Vec<Mutex<Array2<f64>>> = lists
        .iter()
        .map(|rows| Mutex::new(Array2::<f64>::zeros((rows.len(), c).f())))
        .collect();
    engine.for_each(|chunk: &FeatureChunk<'_>| {
        for (rows, x) in lists.iter().zip(&out) {
            // (position in the chunk, position in the list)
            let here: Vec<(usize, usize)> = chunk
                .rows()
                .iter()
                .enumerate()
                .filter_map(|(k, r)| rows.binary_search(r).ok().map(|at| (k, at)))
                .collect();
            if here.is_empty() {
                continue;
            }
            let mut x = x.lock().unwrap_or_else(PoisonError::into_inner);
            for (j, col) in chunk.columns().iter().enumerate() {
                let mut dst = x.column_mut(j);
                for &(k, at) in &here {
                    dst[at] = col[k];
                }
            }
        }
        Ok::<(), Error>(())
    })?;
    Ok(out
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect())
}

/// The feature matrix as an array of rows × features stored column by column
/// (each feature's values consecutive, Fortran order), moved over one column at a
/// time: each column is freed as soon as it is copied, so the memory peak is one
/// matrix and one column rather than two matrices (a row-major copy needed both
/// whole: 1.45 GB more at 8.64 M rows × 21 features). The values and every result
/// computed from them are the same in either order.
pub(crate) fn feature_array(m: FeatureMatrix) -> Array2<f64> {
    use itap_anomaly::ndarray::ShapeBuilder;
    let n = m.len();
    let (_, columns) = m.into_columns();
    let c = columns.len();
    // Reserved, not touched: pages count once written.
    let mut data = Vec::with_capacity(n * c);
    for column in columns {
        data.extend_from_slice(&column);
        // `column` is dropped here, before the next is copied.
    }
    Array2::from_shape_vec((n, c).f(), data).unwrap_or_else(|_| unreachable!("n × c values"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap_features::FeatureParams;
    use itap_telemetry::{SimParams, simulate};

    /// Every value of the column-major array is the matrix's own, in its row and
    /// column, and scaling it gives the same bits as scaling a row-major copy.
    #[test]
    fn feature_array_holds_each_rows_features() {
        let batch = simulate(&SimParams::default().devices(3).hours(4.0).check().unwrap());
        let features = FeatureParams::default().check().unwrap();
        let fit = itap_features::fit(&batch, TrainSpan::All, &features).unwrap();
        let m = itap_features::transform(&batch, &fit).unwrap();
        let (n, c) = (m.len(), m.n_features());
        let row_major = Array2::from_shape_vec((n, c), m.to_row_major()).expect("n × c values");
        let rows: Vec<Vec<f64>> = (0..n).map(|r| m.row(r)).collect();
        let x = feature_array(m);
        assert_eq!(x.dim(), (n, c));
        assert!(x.t().is_standard_layout(), "column-major");
        for (r, want) in rows.iter().enumerate() {
            for (col, (&got, &w)) in x.row(r).iter().zip(want).enumerate() {
                assert!(
                    got.to_bits() == w.to_bits(),
                    "row {r} column {col}: {got} vs {w}"
                );
            }
        }
        let used = vec![true; n];
        let scaler = StandardScaler::fit_rows(x.view(), &used).unwrap();
        let by_rows = StandardScaler::fit_rows(row_major.view(), &used).unwrap();
        assert_eq!(scaler, by_rows);
        let a = ScaledFeatures::scale(x, &scaler).unwrap();
        let b = ScaledFeatures::scale(row_major, &scaler).unwrap();
        assert!(
            a.view()
                .iter()
                .zip(b.view().iter())
                .all(|(p, q)| p.to_bits() == q.to_bits())
        );
    }
}
