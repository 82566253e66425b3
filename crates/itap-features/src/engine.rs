//! `transform`: the causal, per-device feature engine.
//!
//! The batch is put in device-then-time order (polars sort), cut into chunks of
//! whole devices, and each chunk is computed independently, in parallel:
//! windowed statistics by polars' `rolling_*_by` over a per-window index key, the
//! rest by one pass per device in Rust. Every value of a device's row depends only
//! on that device's rows at or before it, so results do not depend on the
//! chunking, on the thread count, or on later rows.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use itap_telemetry::{Batch, MICROS_PER_SEC, State};

use crate::catalogue::{ColSpec, Plan, unknown_signal};
use crate::error::{Error, Result};
use crate::fit::{FeaturesFit, KEYS, SeasonalProfile, state_key};
use crate::matrix::FeatureMatrix;
use crate::order::{Group, Order, device_order};
use crate::params::{CheckedFeatures, FeatureKind, Window, WindowEngine};
use crate::spectral::{SpectralBuffers, SpectralPlan, SpectralValues};
use crate::window::{NativeWindows, StatsOut, key_series, polars_stats, polars_sum_or_mean};

/// Computes the features of every row of `batch` with what `fit` learned.
///
/// The result is aligned row for row with `batch`, in its row order (any order:
/// rows are grouped by device and sorted by time internally). A feature of a row
/// of device d at time t uses only rows of d with timestamp ≤ t, so computing on
/// the rows up to t gives bit-identical features for those rows.
///
/// # Errors
/// [`Error::UnknownSignal`] when the batch lacks a signal the fit was made on,
/// [`Error::WindowOverflow`] for a window too long to index a device's rows,
/// [`Error::Polars`] if the engine fails, and [`Error::InvalidParam`] or
/// [`Error::InvalidFit`] for a fit whose stored parameters no longer check or whose
/// parts do not fit together (edited by hand).
pub fn transform(batch: &Batch, fit: &FeaturesFit) -> Result<FeatureMatrix> {
    let (checked, plan) = fit.plan()?;
    let schema = batch.schema();
    let sig_cols: Vec<usize> = plan
        .signals
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
        .collect::<Result<_>>()?;
    let n = batch.len();
    let ncols = plan.columns.len();
    // The output, in the batch's row order; zeroed lazily by the allocator, and
    // every value written by exactly one chunk.
    let finals: Vec<Mutex<Vec<f64>>> = (0..ncols).map(|_| Mutex::new(vec![0.0; n])).collect();
    if n > 0 {
        let order = device_order(batch);
        let sorted = Sorted::gather(batch, &order, &sig_cols);
        let idx = Idx::new(&plan, &checked);
        let tables = Tables::new(batch, fit, plan.signals.len());
        let spectral = idx
            .any_spectral()
            .then(|| SpectralPlan::new(checked.params().spectral_window));
        let ctx = Ctx {
            checked: &checked,
            sorted: &sorted,
            idx: &idx,
            tables: &tables,
            seasonal: fit.seasonal(),
            spectral: spectral.as_ref(),
            device_names: batch.device_names(),
        };
        let chunks = chunks(&order.groups, n);
        chunks.par_iter().enumerate().try_for_each_init(
            || Scratch::new(ncols, spectral.as_ref()),
            |scratch, (ci, ch)| {
                let m = ch.end - ch.start;
                for c in &mut scratch.cols {
                    c.clear();
                    c.resize(m, f64::NAN);
                }
                ctx.chunk(ch, &order.groups[ch.groups.clone()], scratch)?;
                // Into the output: columns in a different order per chunk, so that
                // threads seldom wait for the same column.
                for k in 0..ncols {
                    let c = (k + ci) % ncols;
                    let mut out = finals[c].lock().unwrap_or_else(PoisonError::into_inner);
                    let part = &scratch.cols[c];
                    if order.is_identity() {
                        out[ch.start..ch.end].copy_from_slice(part);
                    } else {
                        for (&r, &v) in order.perm[ch.start..ch.end].iter().zip(part) {
                            out[r] = v;
                        }
                    }
                }
                Ok::<(), Error>(())
            },
        )?;
    }
    let columns = finals
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    Ok(FeatureMatrix::new(
        batch.timestamps().to_vec(),
        batch.device_names().to_vec(),
        batch.device_codes().to_vec(),
        plan.infos(),
        columns,
    ))
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
}

/// The batch's columns in sorted order.
struct Sorted {
    ts: Vec<i64>,
    signals: Vec<Vec<f64>>,
    /// Position in [`State::ALL`].
    states: Option<Vec<u8>>,
    errors: Option<Vec<i32>>,
}

impl Sorted {
    fn gather(batch: &Batch, order: &Order, sig_cols: &[usize]) -> Sorted {
        let (ts, (signals, (states, errors))) = rayon::join(
            || order.gather(batch.timestamps()),
            || {
                rayon::join(
                    || {
                        sig_cols
                            .par_iter()
                            .map(|&i| order.gather(batch.signal(i)))
                            .collect()
                    },
                    || {
                        (
                            batch.states().map(|s| {
                                let codes: Vec<u8> = s.iter().map(|&x| state_code(x)).collect();
                                order.gather(&codes)
                            }),
                            batch.error_codes().map(|e| order.gather(e)),
                        )
                    },
                )
            },
        );
        Sorted {
            ts,
            signals,
            states,
            errors,
        }
    }
}

fn state_code(s: State) -> u8 {
    (state_key(s) - 1) as u8
}

const WIN_KINDS: [FeatureKind; 6] = [
    FeatureKind::Mean,
    FeatureKind::Std,
    FeatureKind::Min,
    FeatureKind::Max,
    FeatureKind::Delta,
    FeatureKind::Z,
];
const POINT_KINDS: [FeatureKind; 9] = [
    FeatureKind::Diff,
    FeatureKind::Rate,
    FeatureKind::Ewm,
    FeatureKind::Trend,
    FeatureKind::Seasonal,
    FeatureKind::Resid,
    FeatureKind::StateDev,
    FeatureKind::Missing,
    FeatureKind::MissingRun,
];
const SPEC_KINDS: [FeatureKind; 3] = [
    FeatureKind::SpecEnergy,
    FeatureKind::SpecDominantHz,
    FeatureKind::SpecCentroidHz,
];
const DEV_KINDS: [FeatureKind; 3] = [
    FeatureKind::ErrorStreak,
    FeatureKind::SinceError,
    FeatureKind::SinceStateChange,
];
const DEV_WIN_KINDS: [FeatureKind; 2] = [FeatureKind::StateChanges, FeatureKind::StateShare];

fn slot(kinds: &[FeatureKind], k: FeatureKind) -> usize {
    kinds.iter().position(|&x| x == k).unwrap_or(0)
}

/// Output column of each computed quantity, `None` when not asked for.
struct Idx {
    win: Vec<Vec<[Option<usize>; 6]>>,
    point: Vec<[Option<usize>; 9]>,
    spec: Vec<[Option<usize>; 3]>,
    bands: Vec<Vec<Option<usize>>>,
    dev: [Option<usize>; 3],
    dev_win: Vec<[Option<usize>; 2]>,
}

impl Idx {
    fn new(plan: &Plan, checked: &CheckedFeatures) -> Idx {
        let ns = plan.signals.len();
        let nw = checked.windows().len();
        let nb = checked.params().spectral_bands.len();
        let mut idx = Idx {
            win: vec![vec![[None; 6]; nw]; ns],
            point: vec![[None; 9]; ns],
            spec: vec![[None; 3]; ns],
            bands: vec![vec![None; nb]; ns],
            dev: [None; 3],
            dev_win: vec![[None; 2]; nw],
        };
        for (c, (_, spec)) in plan.columns.iter().enumerate() {
            match *spec {
                ColSpec::SignalWindow { sig, win, kind } => {
                    idx.win[sig][win][slot(&WIN_KINDS, kind)] = Some(c);
                }
                ColSpec::Signal { sig, kind } => idx.point[sig][slot(&POINT_KINDS, kind)] = Some(c),
                ColSpec::Spectral { sig, kind, band } => {
                    if kind == FeatureKind::SpecBands {
                        idx.bands[sig][band] = Some(c);
                    } else {
                        idx.spec[sig][slot(&SPEC_KINDS, kind)] = Some(c);
                    }
                }
                ColSpec::Device { kind } => idx.dev[slot(&DEV_KINDS, kind)] = Some(c),
                ColSpec::DeviceWindow { win, kind } => {
                    idx.dev_win[win][slot(&DEV_WIN_KINDS, kind)] = Some(c);
                }
            }
        }
        idx
    }

    fn any_spectral(&self) -> bool {
        self.spec.iter().any(|s| s.iter().any(Option::is_some))
            || self.bands.iter().any(|b| b.iter().any(Option::is_some))
    }
}

/// Baselines resolved for the batch's devices: `[device code][key * signals + s]`
/// = (location, scale), through the fallback chain device/state → all devices/state
/// → device/all states → all devices/all states.
struct Tables {
    baselines: Vec<Vec<Option<(f64, f64)>>>,
}

impl Tables {
    fn new(batch: &Batch, fit: &FeaturesFit, nsig: usize) -> Tables {
        let pooled = |key: usize, s: usize| -> Option<(f64, f64)> {
            let state = key.checked_sub(1).and_then(|i| State::ALL.get(i).copied());
            let b = fit.pooled().iter().find(|b| b.state == state)?;
            Some((b.location.get(s).copied()??, b.scale.get(s).copied()??))
        };
        let baselines = batch
            .device_names()
            .iter()
            .map(|name| {
                let dev = fit
                    .devices()
                    .binary_search_by(|d| d.device.as_str().cmp(name))
                    .ok()
                    .map(|i| &fit.devices()[i]);
                let own = |key: usize, s: usize| -> Option<(f64, f64)> {
                    let state = key.checked_sub(1).and_then(|i| State::ALL.get(i).copied());
                    let b = dev?.baselines.iter().find(|b| b.state == state)?;
                    Some((b.location.get(s).copied()??, b.scale.get(s).copied()??))
                };
                (0..KEYS * nsig)
                    .map(|ks| {
                        let (key, s) = (ks / nsig, ks % nsig);
                        own(key, s)
                            .or_else(|| pooled(key, s))
                            .or_else(|| own(0, s))
                            .or_else(|| pooled(0, s))
                    })
                    .collect()
            })
            .collect();
        Tables { baselines }
    }
}

/// A run of whole devices computed together: rows `start..end` of the sorted
/// order, devices `groups` of the order's groups.
#[derive(Debug, Clone)]
struct Chunk {
    start: usize,
    end: usize,
    groups: Range<usize>,
}

/// Cuts the devices into chunks of about `n / (8 × threads)` rows (1024 – 16384),
/// small enough for a chunk's columns to stay in cache. The cut does not change
/// any value: each device is computed on its own.
fn chunks(groups: &[Group], n: usize) -> Vec<Chunk> {
    chunks_of(
        groups,
        (n / (8 * rayon::current_num_threads().max(1))).clamp(1024, 16_384),
    )
}

fn chunks_of(groups: &[Group], target: usize) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        match out.last_mut() {
            Some(c) if c.end - c.start < target => {
                c.end = g.end;
                c.groups.end = gi + 1;
            }
            _ => out.push(Chunk {
                start: g.start,
                end: g.end,
                groups: gi..gi + 1,
            }),
        }
    }
    out
}

struct Ctx<'a> {
    checked: &'a CheckedFeatures,
    sorted: &'a Sorted,
    idx: &'a Idx,
    tables: &'a Tables,
    seasonal: &'a [SeasonalProfile],
    spectral: Option<&'a SpectralPlan>,
    device_names: &'a [String],
}

/// A device's rows within a chunk.
#[derive(Debug, Clone, Copy)]
struct Local {
    start: usize,
    end: usize,
    code: u32,
}

impl Ctx<'_> {
    fn chunk(&self, ch: &Chunk, groups: &[Group], scratch: &mut Scratch) -> Result<()> {
        let s = self.sorted;
        let range = ch.start..ch.end;
        let ts = &s.ts[range.clone()];
        let states = s.states.as_ref().map(|v| &v[range.clone()]);
        let errors = s.errors.as_ref().map(|v| &v[range.clone()]);
        let local: Vec<Local> = groups
            .iter()
            .map(|g| Local {
                start: g.start - ch.start,
                end: g.end - ch.start,
                code: g.code,
            })
            .collect();
        let raw: Vec<&[f64]> = s.signals.iter().map(|c| &c[range.clone()]).collect();
        // Point values: the observation, or the last one carried forward (bounded).
        let fill = self.checked.resolved.fill_limit_us;
        scratch.imputed.resize_with(raw.len(), Vec::new);
        for (x, out) in raw.iter().zip(scratch.imputed.iter_mut()) {
            out.clear();
            out.resize(x.len(), f64::NAN);
            for g in &local {
                impute(
                    &ts[g.start..g.end],
                    &x[g.start..g.end],
                    fill,
                    &mut out[g.start..g.end],
                );
            }
        }
        let outs = &mut scratch.cols;
        for g in &local {
            let r = g.start..g.end;
            for (si, x) in raw.iter().enumerate() {
                self.point_features(si, g, ts, states, &x[r.clone()], &scratch.imputed[si], outs);
                if let (Some(plan), Some(buf)) = (self.spectral, scratch.spectral.as_mut()) {
                    self.spectral_features(si, g, ts, &scratch.imputed[si], plan, buf, outs);
                }
            }
            self.device_features(g, ts, states, errors, outs);
        }
        self.window_features(ts, &local, states, &raw, scratch)
    }

    #[allow(clippy::too_many_arguments)]
    fn point_features(
        &self,
        si: usize,
        g: &Local,
        ts: &[i64],
        states: Option<&[u8]>,
        x: &[f64],
        imp: &[f64],
        outs: &mut [Vec<f64>],
    ) {
        let slots = self.idx.point[si];
        let at = |k: FeatureKind| slots[slot(&POINT_KINDS, k)];
        let (a, b) = (g.start, g.end);
        let ts = &ts[a..b];
        let imp = &imp[a..b];
        if let Some(c) = at(FeatureKind::Missing) {
            for (o, v) in outs[c][a..b].iter_mut().zip(x) {
                *o = if v.is_finite() { 0.0 } else { 1.0 };
            }
        }
        if let Some(c) = at(FeatureKind::MissingRun) {
            let mut run = 0.0;
            for (o, v) in outs[c][a..b].iter_mut().zip(x) {
                run = if v.is_finite() { 0.0 } else { run + 1.0 };
                *o = run;
            }
        }
        if let Some(c) = at(FeatureKind::Diff) {
            let out = &mut outs[c][a..b];
            out[0] = f64::NAN;
            for i in 1..out.len() {
                out[i] = imp[i] - imp[i - 1];
            }
        }
        if let Some(c) = at(FeatureKind::Rate) {
            let out = &mut outs[c][a..b];
            out[0] = f64::NAN;
            for i in 1..out.len() {
                let dt = ts[i].saturating_sub(ts[i - 1]);
                out[i] = if dt > 0 {
                    (imp[i] - imp[i - 1]) / (dt as f64 / MICROS_PER_SEC as f64)
                } else {
                    f64::NAN
                };
            }
        }
        let halflife = self.checked.resolved.ewm_halflife_us as f64;
        if let Some(c) = at(FeatureKind::Ewm) {
            let mut ew = Ew::new(halflife);
            for (i, o) in outs[c][a..b].iter_mut().enumerate() {
                if x[i].is_finite() {
                    ew.update(ts[i], x[i]);
                }
                *o = ew.mean;
            }
        }
        let (trend, seasonal, resid) = (
            at(FeatureKind::Trend),
            at(FeatureKind::Seasonal),
            at(FeatureKind::Resid),
        );
        if trend.is_some() || seasonal.is_some() || resid.is_some() {
            let profile = &self.seasonal[si];
            let mut ew = Ew::new(halflife);
            for i in 0..ts.len() {
                let sv = profile.at(ts[i]);
                let before = ew.mean;
                if x[i].is_finite() {
                    ew.update(ts[i], x[i] - sv);
                }
                if let Some(c) = trend {
                    outs[c][a + i] = ew.mean;
                }
                if let Some(c) = seasonal {
                    outs[c][a + i] = sv;
                }
                if let Some(c) = resid {
                    outs[c][a + i] = imp[i] - sv - before;
                }
            }
        }
        if let Some(c) = at(FeatureKind::StateDev) {
            let table = &self.tables.baselines[g.code as usize];
            let nsig = self.idx.point.len();
            for (i, o) in outs[c][a..b].iter_mut().enumerate() {
                let key = states.map_or(0, |st| 1 + st[a + i] as usize);
                *o = match table[key * nsig + si] {
                    Some((loc, scale)) => (imp[i] - loc) / scale,
                    None => f64::NAN,
                };
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spectral_features(
        &self,
        si: usize,
        g: &Local,
        ts: &[i64],
        imp: &[f64],
        plan: &SpectralPlan,
        buf: &mut SpectralBuffers,
        outs: &mut [Vec<f64>],
    ) {
        let spec = self.idx.spec[si];
        let bands_idx = &self.idx.bands[si];
        if spec.iter().all(Option::is_none) && bands_idx.iter().all(Option::is_none) {
            return;
        }
        let bands = &self.checked.params().spectral_bands;
        let hop = self.checked.params().spectral_hop;
        let n = plan.len();
        let mut cur = SpectralValues::nan(bands.len());
        for j in 0..g.end - g.start {
            let i = g.start + j;
            if j + 1 >= n && (j + 1 - n).is_multiple_of(hop) {
                let w = &imp[i + 1 - n..=i];
                if w.iter().all(|v| v.is_finite()) {
                    plan.compute(w, ts[i] - ts[i + 1 - n], bands, buf, &mut cur);
                } else {
                    cur.set_nan();
                }
            }
            let vals = [cur.energy, cur.dominant_hz, cur.centroid_hz];
            for (c, v) in spec.iter().zip(vals) {
                if let Some(c) = *c {
                    outs[c][i] = v;
                }
            }
            for (c, v) in bands_idx.iter().zip(&cur.bands) {
                if let Some(c) = *c {
                    outs[c][i] = *v;
                }
            }
        }
    }

    fn device_features(
        &self,
        g: &Local,
        ts: &[i64],
        states: Option<&[u8]>,
        errors: Option<&[i32]>,
        outs: &mut [Vec<f64>],
    ) {
        let [streak, since_err, since_change] = self.idx.dev;
        let cap = self.checked.resolved.elapsed_cap_us;
        let secs = |us: i64| us.clamp(0, cap) as f64 / MICROS_PER_SEC as f64;
        let (a, b) = (g.start, g.end);
        if let Some(c) = streak {
            let mut run = 0.0;
            for i in a..b {
                run = match errors {
                    Some(e) if e[i] != 0 => run + 1.0,
                    _ => 0.0,
                };
                outs[c][i] = run;
            }
        }
        if let Some(c) = since_err {
            let mut last: Option<i64> = None;
            for i in a..b {
                if errors.is_some_and(|e| e[i] != 0) {
                    last = Some(ts[i]);
                }
                outs[c][i] = match last {
                    Some(t) => secs(ts[i].saturating_sub(t)),
                    None => secs(cap),
                };
            }
        }
        if let Some(c) = since_change {
            let mut since = ts[a];
            for i in a..b {
                if let Some(st) = states
                    && i > a
                    && st[i] != st[i - 1]
                {
                    since = ts[i];
                }
                outs[c][i] = secs(ts[i].saturating_sub(since));
            }
        }
    }

    fn window_features(
        &self,
        ts: &[i64],
        local: &[Local],
        states: Option<&[u8]>,
        raw: &[&[f64]],
        scratch: &mut Scratch,
    ) -> Result<()> {
        let windows = self.checked.windows();
        let min_periods = self.checked.params().min_periods;
        let engine = self.checked.params().window_engine;
        let m = ts.len();
        for (wi, &w) in windows.iter().enumerate() {
            let [changes, share] = self.idx.dev_win[wi];
            let need_keys = engine == WindowEngine::Polars || changes.is_some() || share.is_some();
            let keys = if need_keys {
                let keys = window_keys(ts, local, w).map_err(|g| Error::WindowOverflow {
                    window: w.label(),
                    device: self
                        .device_names
                        .get(local[g].code as usize)
                        .cloned()
                        .unwrap_or_default(),
                    rows: local[g].end - local[g].start,
                })?;
                Some(key_series(keys))
            } else {
                None
            };
            for (si, x) in raw.iter().enumerate() {
                let slots = self.idx.win[si][wi];
                if slots.iter().all(Option::is_none) {
                    continue;
                }
                let at = |k: FeatureKind| slots[slot(&WIN_KINDS, k)];
                let (delta, z) = (at(FeatureKind::Delta), at(FeatureKind::Z));
                let need_mean = delta.is_some() || z.is_some();
                let need_std = z.is_some();
                for v in [&mut scratch.mean, &mut scratch.std] {
                    v.clear();
                    v.resize(m, f64::NAN);
                }
                // Take the output columns out of the scratch for the duration.
                let mut take = |k: FeatureKind| at(k).map(|c| std::mem::take(&mut scratch.cols[c]));
                let (mut o_mean, mut o_std, mut o_min, mut o_max) = (
                    take(FeatureKind::Mean),
                    take(FeatureKind::Std),
                    take(FeatureKind::Min),
                    take(FeatureKind::Max),
                );
                {
                    let mean: Option<&mut [f64]> = match o_mean.as_deref_mut() {
                        Some(o) => Some(o),
                        None if need_mean => Some(&mut scratch.mean),
                        None => None,
                    };
                    let std: Option<&mut [f64]> = match o_std.as_deref_mut() {
                        Some(o) => Some(o),
                        None if need_std => Some(&mut scratch.std),
                        None => None,
                    };
                    let mut out = StatsOut {
                        mean,
                        std,
                        min: o_min.as_deref_mut(),
                        max: o_max.as_deref_mut(),
                    };
                    match (&keys, engine) {
                        (Some(keys), WindowEngine::Polars) => {
                            polars_stats(x, keys, w, min_periods, out)?;
                        }
                        _ => {
                            for g in local {
                                let r = g.start..g.end;
                                let part = StatsOut {
                                    mean: out.mean.as_deref_mut().map(|o| &mut o[r.clone()]),
                                    std: out.std.as_deref_mut().map(|o| &mut o[r.clone()]),
                                    min: out.min.as_deref_mut().map(|o| &mut o[r.clone()]),
                                    max: out.max.as_deref_mut().map(|o| &mut o[r.clone()]),
                                };
                                scratch
                                    .windows
                                    .stats(&ts[r.clone()], &x[r], w, min_periods, part);
                            }
                        }
                    }
                }
                let mean: &[f64] = o_mean.as_deref().unwrap_or(&scratch.mean);
                let std: &[f64] = o_std.as_deref().unwrap_or(&scratch.std);
                let imp = &scratch.imputed[si];
                if let Some(c) = delta {
                    for ((o, v), m) in scratch.cols[c].iter_mut().zip(imp).zip(mean) {
                        *o = v - m;
                    }
                }
                if let Some(c) = z {
                    for (((o, v), m), sd) in scratch.cols[c].iter_mut().zip(imp).zip(mean).zip(std)
                    {
                        *o = if *sd > 0.0 {
                            (v - m) / sd
                        } else if (v - m).is_finite() {
                            0.0
                        } else {
                            f64::NAN
                        };
                    }
                }
                for (k, col) in [
                    (FeatureKind::Mean, o_mean),
                    (FeatureKind::Std, o_std),
                    (FeatureKind::Min, o_min),
                    (FeatureKind::Max, o_max),
                ] {
                    if let (Some(c), Some(col)) = (at(k), col) {
                        scratch.cols[c] = col;
                    }
                }
            }
            let outs = &mut scratch.cols;
            if let (Some(c), Some(keys)) = (changes, &keys) {
                match states {
                    None => outs[c].fill(0.0),
                    Some(st) => {
                        let mut ind = vec![0.0; m];
                        for g in local {
                            for i in g.start + 1..g.end {
                                ind[i] = f64::from(u8::from(st[i] != st[i - 1]));
                            }
                        }
                        polars_sum_or_mean(ind, keys, w, false, &mut outs[c])?;
                    }
                }
            }
            if let (Some(c), Some(keys)) = (share, &keys) {
                match states {
                    None => outs[c].fill(1.0),
                    Some(st) => {
                        let mut part = vec![0.0; m];
                        for code in 0..State::ALL.len() as u8 {
                            if !st.contains(&code) {
                                continue;
                            }
                            let ind: Vec<f64> =
                                st.iter().map(|&x| f64::from(u8::from(x == code))).collect();
                            polars_sum_or_mean(ind, keys, w, true, &mut part)?;
                            for ((o, &x), v) in outs[c].iter_mut().zip(st).zip(&part) {
                                if x == code {
                                    *o = *v;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Last observation carried forward within a device, at most `limit_us` old.
fn impute(ts: &[i64], x: &[f64], limit_us: i64, out: &mut [f64]) {
    let mut last: Option<(i64, f64)> = None;
    for i in 0..x.len() {
        out[i] = if x[i].is_finite() {
            last = Some((ts[i], x[i]));
            x[i]
        } else {
            match last {
                Some((t, v)) if ts[i].saturating_sub(t) <= limit_us => v,
                _ => f64::NAN,
            }
        };
    }
}

/// A time-aware exponentially weighted mean: weight `1 − 2^(−Δt / half-life)` for
/// a new observation `Δt` after the previous one.
struct Ew {
    mean: f64,
    last_t: i64,
    halflife: f64,
    cached_dt: i64,
    cached_alpha: f64,
}

impl Ew {
    fn new(halflife_us: f64) -> Ew {
        Ew {
            mean: f64::NAN,
            last_t: 0,
            halflife: halflife_us,
            cached_dt: -1,
            cached_alpha: 0.0,
        }
    }

    fn update(&mut self, t: i64, x: f64) {
        if self.mean.is_nan() {
            self.mean = x;
        } else {
            let dt = t.saturating_sub(self.last_t).max(0);
            if dt != self.cached_dt {
                self.cached_dt = dt;
                self.cached_alpha = 1.0 - (-(dt as f64) / self.halflife).exp2();
            }
            self.mean += self.cached_alpha * (x - self.mean);
        }
        self.last_t = t;
    }
}

/// The index key of each row for window `w`: increasing within a device, with
/// steps longer than the window shortened to just over it, and a gap longer than
/// the window between devices, so that polars' `(key − w, key]` windows hold
/// exactly the device's rows of the trailing window. For row windows the key
/// counts rows. Returns the offending local group on overflow.
fn window_keys(ts: &[i64], local: &[Local], w: Window) -> std::result::Result<Vec<i64>, usize> {
    let mut keys = Vec::with_capacity(ts.len());
    let (gap, cap) = match w {
        Window::Time(us) => (us.saturating_add(1), us.saturating_add(1)),
        Window::Rows(n) => (n as i64, 1),
    };
    let mut k: i64 = 0;
    for (gi, g) in local.iter().enumerate() {
        if gi > 0 {
            k = k.checked_add(gap).ok_or(gi)?;
        }
        keys.push(k);
        for i in g.start + 1..g.end {
            let step = match w {
                Window::Time(_) => ts[i].saturating_sub(ts[i - 1]).clamp(0, cap),
                Window::Rows(_) => 1,
            };
            k = k.checked_add(step).ok_or(gi)?;
            keys.push(k);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_windows_inside_devices_and_shorten_long_gaps() {
        let s = MICROS_PER_SEC;
        let ts = [0, 10 * s, 20 * s, 1000 * s, 5 * s, 15 * s];
        let local = [
            Local {
                start: 0,
                end: 4,
                code: 0,
            },
            Local {
                start: 4,
                end: 6,
                code: 1,
            },
        ];
        let keys = window_keys(&ts, &local, Window::Time(60 * s)).unwrap();
        assert_eq!(
            keys,
            [
                0,
                10 * s,
                20 * s,
                20 * s + 60 * s + 1,
                2 * (60 * s + 1) + 20 * s,
                2 * (60 * s + 1) + 30 * s
            ]
        );
        let rows = window_keys(&ts, &local, Window::Rows(3)).unwrap();
        assert_eq!(rows, [0, 1, 2, 3, 6, 7]);
    }

    #[test]
    fn imputation_is_bounded_and_never_invents_a_first_value() {
        let s = MICROS_PER_SEC;
        let ts = [0, 10 * s, 20 * s, 30 * s, 40 * s];
        let x = [f64::NAN, 1.0, f64::NAN, f64::NAN, 2.0];
        let mut out = [0.0; 5];
        impute(&ts, &x, 10 * s, &mut out);
        assert!(out[0].is_nan());
        assert_eq!(out[1..3], [1.0, 1.0]);
        assert!(
            out[3].is_nan(),
            "20 s after the last observation, beyond 10 s"
        );
        assert_eq!(out[4], 2.0);
    }

    #[test]
    fn ew_mean_weights_by_elapsed_time() {
        let mut ew = Ew::new(10.0);
        ew.update(0, 0.0);
        ew.update(10, 1.0);
        assert!(
            (ew.mean - 0.5).abs() < 1e-15,
            "one half-life: half the weight"
        );
        ew.update(30, 1.0);
        assert!((ew.mean - (1.0 - 0.5 * 0.25)).abs() < 1e-15);
    }
}
