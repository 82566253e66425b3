//! Scoring: a saved model applied, unchanged, to telemetry.

use std::sync::{Mutex, PoisonError};

use itap_anomaly::ndarray::{Array2, ArrayView2, ShapeBuilder};
use itap_anomaly::{FittedDetector, StandardScaler};
use itap_features::{ChunkedTransform, FeatureChunk};
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

/// The contributions of some rows (see [`ModelFile::contributions_of`] and
/// [`ModelFile::score_and_explain`]). Two are equal when they hold the same
/// rows with the same values, however the values are laid out.
#[derive(Debug, Clone)]
pub struct RowContributions {
    /// (row, block, offset of its first value in the block), by row.
    index: Vec<(usize, u32, u32)>,
    /// `width` values per row, a block per chunk of the engine.
    blocks: Vec<Vec<f64>>,
    width: usize,
}

impl RowContributions {
    /// Row `r`'s contributions, if they were kept.
    pub fn get(&self, r: usize) -> Option<&[f64]> {
        let at = self.index.binary_search_by_key(&r, |e| e.0).ok()?;
        let (_, b, o) = self.index[at];
        let o = o as usize;
        Some(&self.blocks[b as usize][o..o + self.width])
    }

    /// Row `r`'s contributions, or zeros when they were not kept: what the
    /// alerts' attribution reads, which asks only for kept rows (zeros stand
    /// for a row it does not use).
    pub(crate) fn of_row(&self, r: usize) -> Vec<f64> {
        self.get(r)
            .map_or_else(|| vec![0.0; self.width], <[f64]>::to_vec)
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl PartialEq for RowContributions {
    fn eq(&self, other: &Self) -> bool {
        self.width == other.width
            && self.index.len() == other.index.len()
            && self.index.iter().zip(&other.index).all(|(a, b)| {
                a.0 == b.0
                    && self
                        .get(a.0)
                        .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                        == other
                            .get(b.0)
                            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            })
    }
}

/// Contributions collected from the engine's chunks, from any thread.
struct Kept {
    width: usize,
    parts: Mutex<Vec<(Vec<usize>, Vec<f64>)>>,
}

impl Kept {
    fn new(width: usize) -> Kept {
        Kept {
            width,
            parts: Mutex::new(Vec::new()),
        }
    }

    /// Keeps the contributions of the chunk's rows for which `keep(position in
    /// the chunk, batch row)` is true.
    fn keep(
        &self,
        model: &ModelFile,
        chunk: &FeatureChunk<'_>,
        scaled: &ScaledFeatures,
        keep: impl Fn(usize, usize) -> bool,
    ) {
        // (position in the chunk, batch row); the values' buffer is sized
        // exactly, since these are held to the end of the evaluation.
        let picked: Vec<(usize, usize)> = chunk
            .rows()
            .iter()
            .enumerate()
            .filter(|&(k, &r)| keep(k, r))
            .map(|(k, &r)| (k, r))
            .collect();
        let rows: Vec<usize> = picked.iter().map(|p| p.1).collect();
        let mut values = Vec::with_capacity(picked.len() * self.width);
        for &(k, _) in &picked {
            values.extend(model.contributions_of_row(scaled, k));
        }
        if !rows.is_empty() {
            let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
            parts.push((rows, values));
        }
    }

    fn finish(self) -> RowContributions {
        let parts = self
            .parts
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut index = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        let mut blocks = Vec::with_capacity(parts.len());
        for (b, (rows, values)) in parts.into_iter().enumerate() {
            for (i, r) in rows.into_iter().enumerate() {
                index.push((r, b as u32, (i * self.width) as u32));
            }
            blocks.push(values);
        }
        index.sort_unstable_by_key(|e| e.0);
        RowContributions {
            index,
            blocks,
            width: self.width,
        }
    }
}

impl ModelFile {
    /// Each feature's part in row `r`'s score: its calibrated score for the
    /// calibrated detector, else its scaled deviation |zⱼ|.
    pub fn contributions(&self, scored: &Scored, r: usize) -> Vec<f64> {
        self.contributions_of_row(&scored.features, r)
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
        self.check_signals(batch)?;
        let matrix = itap_features::transform(batch, &self.features)?;
        let names: Vec<String> = matrix.names().map(str::to_owned).collect();
        if names != self.feature_names {
            return Err(self.mismatch(&names));
        }
        ScaledFeatures::scale(feature_array(matrix), &self.scaler)
    }

    /// The feature engine for `batch`, a chunk of devices at a time, once the
    /// data is known to give the model's features.
    fn chunked<'a>(&'a self, batch: &'a Batch) -> Result<ChunkedTransform<'a>> {
        self.check_signals(batch)?;
        let engine = ChunkedTransform::new(batch, &self.features)?;
        let names: Vec<String> = engine.catalogue().into_iter().map(|f| f.name).collect();
        if names != self.feature_names {
            return Err(self.mismatch(&names));
        }
        Ok(engine)
    }

    /// [`Error::FeatureMismatch`] when the data lacks a signal the model's
    /// features are made from, naming the features the data would give.
    fn check_signals(&self, batch: &Batch) -> Result<()> {
        let schema = batch.schema();
        if self
            .features
            .signals()
            .iter()
            .all(|s| schema.index_of(s).is_some())
        {
            return Ok(());
        }
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
        Err(self.mismatch(&names))
    }

    /// Scores every row of `batch` as [`ModelFile::score`] does (the same
    /// values), computing the features a chunk of devices at a time: the memory
    /// used is the scores' and a chunk's features per thread, not every row's
    /// features.
    ///
    /// # Errors
    /// As [`ModelFile::score`].
    pub fn score_rows(&self, batch: &Batch) -> Result<Vec<f64>> {
        Ok(self.score_and_explain(batch, |_, _| false)?.0)
    }

    /// [`ModelFile::score_rows`], keeping beside the scores the contributions
    /// ([`ModelFile::contributions`]) of the rows for which `explain(row,
    /// score)` is true: in one pass, what the alerts' attribution needs when the
    /// threshold is known before scoring.
    ///
    /// # Errors
    /// As [`ModelFile::score`].
    pub fn score_and_explain<F>(
        &self,
        batch: &Batch,
        explain: F,
    ) -> Result<(Vec<f64>, RowContributions)>
    where
        F: Fn(usize, f64) -> bool + Sync,
    {
        let engine = self.chunked(batch)?;
        let scores = Mutex::new(vec![f64::NAN; batch.len()]);
        let kept = Kept::new(self.feature_names.len());
        engine.for_each(|chunk: &FeatureChunk<'_>| {
            let scaled = self.scale_chunk(chunk)?;
            let s = self.detector.score(scaled.view())?;
            kept.keep(self, chunk, &scaled, |k, r| explain(r, s[k]));
            let mut out = scores.lock().unwrap_or_else(PoisonError::into_inner);
            for (&r, &v) in chunk.rows().iter().zip(s.iter()) {
                out[r] = v;
            }
            Ok::<(), Error>(())
        })?;
        Ok((
            scores.into_inner().unwrap_or_else(PoisonError::into_inner),
            kept.finish(),
        ))
    }

    /// The contributions ([`ModelFile::contributions`]) of the rows of `batch`
    /// marked in `wanted`, computed a chunk of devices at a time: what the
    /// alerts' attribution needs when every row's features are not kept.
    ///
    /// # Errors
    /// As [`ModelFile::score`]; [`Error::NoData`] when `wanted` is not one flag
    /// per row.
    pub fn contributions_of(&self, batch: &Batch, wanted: &[bool]) -> Result<RowContributions> {
        if wanted.len() != batch.len() {
            return Err(Error::NoData(format!(
                "{} row flags for {} rows",
                wanted.len(),
                batch.len()
            )));
        }
        let engine = self.chunked(batch)?;
        let kept = Kept::new(self.feature_names.len());
        engine.for_each(|chunk: &FeatureChunk<'_>| {
            if chunk.rows().iter().any(|&r| wanted[r]) {
                let scaled = self.scale_chunk(chunk)?;
                kept.keep(self, chunk, &scaled, |_, r| wanted[r]);
            }
            Ok::<(), Error>(())
        })?;
        Ok(kept.finish())
    }

    /// A chunk's features as rows × features, standardised.
    fn scale_chunk(&self, chunk: &FeatureChunk<'_>) -> Result<ScaledFeatures> {
        let (n, c) = (chunk.len(), chunk.columns().len());
        let mut data = Vec::with_capacity(n * c);
        for col in chunk.columns() {
            data.extend_from_slice(col);
        }
        let x = Array2::from_shape_vec((n, c).f(), data)
            .unwrap_or_else(|_| unreachable!("n × c values"));
        ScaledFeatures::scale(x, &self.scaler)
    }

    /// Row `r`'s contributions, as [`ModelFile::contributions`].
    fn contributions_of_row(&self, features: &ScaledFeatures, r: usize) -> Vec<f64> {
        match self.detector.column_scores(features.x.row(r)) {
            Ok(Some(v)) => v,
            _ => features.contributions(r),
        }
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
