//! `transform`: the causal, per-device feature engine.
//!
//! The batch is put in device-then-time order (polars sort), cut into chunks of
//! whole devices, and each chunk is computed independently, in parallel:
//! windowed statistics by polars' `rolling_*_by` over a per-window index key, the
//! rest by one pass per device in Rust. Every value of a device's row depends only
//! on that device's rows at or before it, so results do not depend on the
//! chunking, on the thread count, or on later rows.
//!
//! This module runs the chunks and composes the parts. [`rows`] lays the rows out
//! (sorted columns, chunks, per-device slices), [`columns`] says which output
//! column each computed quantity goes to, and each part of the catalogue is
//! computed by its own submodule over the numerical kernels of [`crate::window`]
//! and [`crate::spectral`]:
//!
//! | module | computes | catalogue scope |
//! | --- | --- | --- |
//! | [`point`] | imputation; diff, rate, ewm, missing, missing run | signal |
//! | [`baseline`] | trend, seasonal, resid, state deviation: what the fit learned | signal |
//! | [`window`] | mean, std, min, max, delta, z per window | signal × window |
//! | [`spectral`] | energy, dominant and centroid frequency, band shares | spectral |
//! | [`device`] | error streak, since error, since state change; state changes, state share | device, device × window |

mod baseline;
mod columns;
mod device;
mod online;
mod point;
mod rows;
mod spectral;
mod window;

use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use itap_telemetry::{Batch, Schema};

use crate::catalogue::FeatureInfo;
use crate::catalogue::{Plan, unknown_signal};
use crate::error::{Error, Result};
use crate::fit::{FeaturesFit, SeasonalProfile};
use crate::matrix::FeatureMatrix;
use crate::order::{Group, Order, device_order};
use crate::params::CheckedFeatures;
use crate::spectral::{SpectralBuffers, SpectralPlan};
use crate::window::NativeWindows;

use baseline::Tables;
use columns::Idx;
use rows::{Chunk, SignalRows, Sorted, chunks};

pub use online::{DeviceState, OnlineFeatures, OnlineRow};

/// Computes the features of every row of `batch` with what `fit` learned.
///
/// The result is aligned row for row with `batch`, in its row order (any order:
/// rows are grouped by device and sorted by time internally). A feature of a row
/// of device d at time t uses only rows of d with timestamp ≤ t, so computing on
/// the rows up to t gives bit-identical features for those rows.
///
/// The whole matrix is held at once (rows × features × 8 bytes); to use the
/// features a chunk of devices at a time without holding them all, see
/// [`ChunkedTransform`], which computes the same values.
///
/// # Errors
/// [`Error::UnknownSignal`] when the batch lacks a signal the fit was made on,
/// [`Error::WindowOverflow`] for a window too long to index a device's rows,
/// [`Error::Polars`] if the engine fails, and [`Error::InvalidParam`] or
/// [`Error::InvalidFit`] for a fit whose stored parameters no longer check or whose
/// parts do not fit together (edited by hand).
pub fn transform(batch: &Batch, fit: &FeaturesFit) -> Result<FeatureMatrix> {
    let engine = ChunkedTransform::new(batch, fit)?;
    let out = Output::new(engine.n_features(), batch.len());
    engine.for_each(|chunk: &FeatureChunk<'_>| {
        out.put(chunk);
        Ok::<(), Error>(())
    })?;
    Ok(FeatureMatrix::new(
        batch.timestamps().to_vec(),
        batch.device_names().to_vec(),
        batch.device_codes().to_vec(),
        engine.catalogue(),
        out.into_columns(),
    ))
}

/// The features of a batch computed a chunk of whole devices at a time and
/// handed to the caller chunk by chunk, so that no more than one chunk's
/// features per thread are held at once: what a pipeline that cannot hold every
/// row's features (rows × features × 8 bytes) uses.
///
/// Every value equals [`transform`]'s for the same row: a device's features
/// depend on that device's rows alone, whatever chunk it is computed in.
pub struct ChunkedTransform<'a> {
    batch: &'a Batch,
    fit: &'a FeaturesFit,
    checked: CheckedFeatures,
    plan: Plan,
    sig_cols: Vec<usize>,
    order: Order,
    idx: Idx,
    tables: Tables,
    spectral: Option<SpectralPlan>,
}

/// One chunk's features: whole devices, each in time order.
#[derive(Debug)]
pub struct FeatureChunk<'a> {
    index: usize,
    rows: &'a [usize],
    columns: &'a [Vec<f64>],
}

impl FeatureChunk<'_> {
    /// The chunk's number (chunks are numbered in device order from 0; they
    /// reach the caller in any order).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The batch row of each of the chunk's rows, in the order of the columns.
    pub fn rows(&self) -> &[usize] {
        self.rows
    }

    /// One column per feature (catalogue order), one value per entry of
    /// [`FeatureChunk::rows`].
    pub fn columns(&self) -> &[Vec<f64>] {
        self.columns
    }

    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the chunk has no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<'a> ChunkedTransform<'a> {
    /// Readies the engine for `batch` with what `fit` learned: orders the rows by
    /// device and time and builds the baselines' tables (no feature is computed
    /// yet).
    ///
    /// # Errors
    /// As [`transform`].
    pub fn new(batch: &'a Batch, fit: &'a FeaturesFit) -> Result<Self> {
        let (checked, plan) = fit.plan()?;
        let sig_cols = signal_columns(&plan, batch.schema())?;
        let idx = Idx::new(&plan, &checked);
        let tables = Tables::new(batch, fit, plan.signals.len());
        let spectral = idx
            .any_spectral()
            .then(|| SpectralPlan::new(checked.params().spectral_window));
        Ok(ChunkedTransform {
            batch,
            fit,
            order: device_order(batch),
            checked,
            plan,
            sig_cols,
            idx,
            tables,
            spectral,
        })
    }

    /// The features, in column order.
    pub fn catalogue(&self) -> Vec<FeatureInfo> {
        self.plan.infos()
    }

    /// How many features each row gets.
    pub fn n_features(&self) -> usize {
        self.plan.columns.len()
    }

    /// Computes every chunk, in parallel, and hands each to `sink` as it is done
    /// (from whichever thread computed it, in no set order). Stops at the first
    /// error, the engine's or the sink's.
    ///
    /// # Errors
    /// As [`transform`], converted into `E`; the sink's own errors.
    pub fn for_each<E, F>(&self, sink: F) -> std::result::Result<(), E>
    where
        E: From<Error> + Send,
        F: Fn(&FeatureChunk<'_>) -> std::result::Result<(), E> + Sync,
    {
        if self.batch.is_empty() {
            return Ok(());
        }
        let ctx = Ctx {
            checked: &self.checked,
            idx: &self.idx,
            tables: &self.tables,
            seasonal: self.fit.seasonal(),
            spectral: self.spectral.as_ref(),
            device_names: self.batch.device_names(),
        };
        let ncols = self.n_features();
        let groups = &self.order.groups;
        chunks(groups, self.batch.len())
            .par_iter()
            .enumerate()
            .try_for_each_init(
                || (Scratch::new(ncols, self.spectral.as_ref()), Vec::new()),
                |(scratch, rows), (ci, ch)| {
                    scratch.reset(ch.end - ch.start);
                    let sorted =
                        Sorted::gather(self.batch, &self.order, ch.start..ch.end, &self.sig_cols);
                    ctx.chunk(ch, &groups[ch.groups.clone()], &sorted, scratch)?;
                    rows.clear();
                    rows.extend((ch.start..ch.end).map(|i| self.order.row(i)));
                    sink(&FeatureChunk {
                        index: ci,
                        rows,
                        columns: &scratch.cols,
                    })
                },
            )
    }
}

/// The batch's column of each of the plan's signals.
fn signal_columns(plan: &Plan, schema: &Schema) -> Result<Vec<usize>> {
    plan.signals
        .iter()
        .map(|s| {
            schema.index_of(s).ok_or_else(|| {
                unknown_signal(
                    s,
                    schema,
                    "transform data with the signals the fit was made on, or fit again",
                )
            })
        })
        .collect()
}

/// The output columns, in the batch's row order; zeroed lazily by the allocator,
/// and every value written by exactly one chunk.
struct Output {
    cols: Vec<Mutex<Vec<f64>>>,
}

impl Output {
    fn new(ncols: usize, n: usize) -> Output {
        Output {
            cols: (0..ncols).map(|_| Mutex::new(vec![0.0; n])).collect(),
        }
    }

    /// Writes a chunk's columns to its rows of the batch.
    fn put(&self, chunk: &FeatureChunk<'_>) {
        let ncols = self.cols.len();
        let rows = chunk.rows();
        // Rows in input order already (a batch sorted by device and time): one copy.
        let contiguous = rows.windows(2).all(|w| w[1] == w[0] + 1);
        // Columns in a different order per chunk, so that threads seldom wait for
        // the same column.
        for k in 0..ncols {
            let c = (k + chunk.index()) % ncols;
            let mut out = self.cols[c].lock().unwrap_or_else(PoisonError::into_inner);
            let part = &chunk.columns()[c];
            if contiguous {
                let r0 = rows.first().copied().unwrap_or(0);
                out[r0..r0 + rows.len()].copy_from_slice(part);
            } else {
                for (&r, &v) in rows.iter().zip(part) {
                    out[r] = v;
                }
            }
        }
    }

    fn into_columns(self) -> Vec<Vec<f64>> {
        self.cols
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }
}

/// One thread's buffers, reused from chunk to chunk.
struct Scratch {
    /// The chunk's columns, in sorted order.
    cols: Vec<Vec<f64>>,
    /// Imputed values of the chunk, per signal.
    imputed: Vec<Vec<f64>>,
    /// Mean and std of a window, when delta or z need them but they are not output.
    mean: Vec<f64>,
    std: Vec<f64>,
    windows: NativeWindows,
    spectral: Option<SpectralBuffers>,
}

impl Scratch {
    fn new(ncols: usize, spectral: Option<&SpectralPlan>) -> Self {
        Scratch {
            cols: vec![Vec::new(); ncols],
            imputed: Vec::new(),
            mean: Vec::new(),
            std: Vec::new(),
            windows: NativeWindows::new(),
            spectral: spectral.map(SpectralPlan::buffers),
        }
    }

    /// Readies the columns for a chunk of `m` rows, every value NaN.
    fn reset(&mut self, m: usize) {
        for c in &mut self.cols {
            c.clear();
            c.resize(m, f64::NAN);
        }
    }
}

/// What every chunk reads: the parameters, where each feature goes and what the
/// fit learned.
struct Ctx<'a> {
    checked: &'a CheckedFeatures,
    idx: &'a Idx,
    tables: &'a Tables,
    seasonal: &'a [SeasonalProfile],
    spectral: Option<&'a SpectralPlan>,
    device_names: &'a [String],
}

impl Ctx<'_> {
    /// Every feature of the chunk `ch`, made of the devices `groups`, into
    /// `scratch.cols`: per device the features of one pass over its rows, then the
    /// windowed ones for the whole chunk at once.
    fn chunk(
        &self,
        ch: &Chunk,
        groups: &[Group],
        sorted: &Sorted,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let rows = sorted.rows(ch, groups);
        self.impute_chunk(&rows, &mut scratch.imputed);
        let outs = &mut scratch.cols;
        for g in &rows.local {
            let dev = rows.device(g);
            let r = dev.range();
            for (si, x) in rows.raw.iter().enumerate() {
                let sig = SignalRows {
                    si,
                    raw: &x[r.clone()],
                    imputed: &scratch.imputed[si][r.clone()],
                };
                self.point_features(&dev, &sig, outs);
                self.baseline_features(&dev, &sig, outs);
                if let (Some(plan), Some(buf)) = (self.spectral, scratch.spectral.as_mut()) {
                    self.spectral_features(&dev, &sig, plan, buf, outs);
                }
            }
            self.device_features(&dev, outs);
        }
        self.window_features(&rows, scratch)
    }
}
