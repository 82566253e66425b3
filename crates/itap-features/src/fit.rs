//! What features learn from a training span: per-device per-state baselines and
//! seasonal profiles (with their detected periods).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use itap_telemetry::{Batch, MICROS_PER_SEC, ParamGuard, State, format_timestamp};

use crate::catalogue::{FeatureInfo, Plan, plan, select_signals, unknown_signal};
use crate::error::{Error, Result};
use crate::order::device_order;
use crate::params::{CheckedFeatures, FeatureParams, Period, duration_label};

/// The rows of a batch that [`fit`] learns from.
#[derive(Debug, Clone, Copy)]
pub enum TrainSpan<'a> {
    /// Every row.
    All,
    /// The rows with a timestamp at or before this one (UTC microseconds).
    Until(i64),
    /// The rows in the first share (0 < f ≤ 1) of the batch's time span.
    Fraction(f64),
    /// The rows whose entry is `true` (one entry per row), for example the training
    /// span without the rows known to be faulty.
    Rows(&'a [bool]),
}

/// A location and scale for each featurised signal, learned from one device (or
/// all devices pooled) in one state (or all states).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The state; `None` for all rows regardless of state.
    pub state: Option<State>,
    /// Training rows it was learned from.
    pub rows: usize,
    /// Median per signal (in the fit's signal order); `None` when the signal was
    /// observed fewer than 10 times in these rows.
    pub location: Vec<Option<f64>>,
    /// Robust scale per signal: 1.4826 × the median absolute deviation, with the
    /// fallbacks described in docs/features.md when that is zero; `None` with the
    /// location.
    pub scale: Vec<Option<f64>>,
    /// Median per signal of the residual (value − `location` − the seasonal
    /// profile), what the control charts are centred on; empty in fits made
    /// before control charts (they then use 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resid_location: Vec<Option<f64>>,
    /// Robust spread (1.4826 × MAD) per signal of that residual, the control
    /// charts' unit; `scale` when the residual does not vary. Empty in older fits
    /// (they then use `scale`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resid_scale: Vec<Option<f64>>,
}

/// One device's baselines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceBaselines {
    /// The device id.
    pub device: String,
    /// One per state seen in training, plus one for all its rows.
    pub baselines: Vec<Baseline>,
}

/// A signal's seasonal profile by phase of a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalProfile {
    /// The signal.
    pub signal: String,
    /// The period in microseconds; `None` = no seasonal component.
    pub period_us: Option<i64>,
    /// Share of the (baseline-corrected) variance the profile explains on the
    /// training span (0 – 1).
    pub strength: f64,
    /// Mean deviation per phase bin, centred (empty without a period).
    pub profile: Vec<f64>,
}

impl SeasonalProfile {
    /// The profile's value at time `ts` (0 without a period).
    pub fn at(&self, ts: i64) -> f64 {
        match self.period_us {
            Some(p) if !self.profile.is_empty() => {
                self.profile[phase_bin(ts, p, self.profile.len())]
            }
            _ => 0.0,
        }
    }
}

/// The phase bin of `ts` for period `p` (µs, at most 366 days) and `bins` bins
/// (at most 1440): `phase × bins` stays far below `i64::MAX`.
pub(crate) fn phase_bin(ts: i64, p: i64, bins: usize) -> usize {
    let phase = ts.rem_euclid(p.max(1));
    ((phase.saturating_mul(bins as i64)) / p.max(1)) as usize
}

/// Everything learned from a training span, applied unchanged by
/// [`transform`](crate::transform) to later data. Serializable (serde), so a
/// model file can carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesFit {
    params: FeatureParams,
    signals: Vec<String>,
    devices: Vec<DeviceBaselines>,
    pooled: Vec<Baseline>,
    seasonal: Vec<SeasonalProfile>,
    train_rows: usize,
    train_first: Option<String>,
    train_last: Option<String>,
}

impl FeaturesFit {
    /// The parameters it was fitted with (transform uses the same).
    pub fn params(&self) -> &FeatureParams {
        &self.params
    }

    /// The featurised signals, in column order.
    pub fn signals(&self) -> &[String] {
        &self.signals
    }

    /// Per-device baselines, ordered by device id.
    pub fn devices(&self) -> &[DeviceBaselines] {
        &self.devices
    }

    /// Baselines of all devices pooled: one per state, plus one for all rows.
    pub fn pooled(&self) -> &[Baseline] {
        &self.pooled
    }

    /// One seasonal profile per featurised signal.
    pub fn seasonal(&self) -> &[SeasonalProfile] {
        &self.seasonal
    }

    /// Training rows used.
    pub fn train_rows(&self) -> usize {
        self.train_rows
    }

    /// First and last training timestamp (RFC 3339).
    pub fn train_bounds(&self) -> Option<(&str, &str)> {
        Some((self.train_first.as_deref()?, self.train_last.as_deref()?))
    }

    /// The catalogue of the features [`transform`](crate::transform) makes with this fit.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] when the stored parameters no longer check, and
    /// [`Error::InvalidFit`] when its parts do not fit together (a fit edited by hand).
    pub fn catalogue(&self) -> Result<Vec<FeatureInfo>> {
        Ok(self.plan()?.1.infos())
    }

    pub(crate) fn plan(&self) -> Result<(CheckedFeatures, Plan)> {
        let checked = self.params.clone().check()?;
        self.check_shape()?;
        let p = plan(&checked, &self.signals);
        Ok((checked, p))
    }

    /// A fit read from a file must have one entry per signal everywhere.
    fn check_shape(&self) -> Result<()> {
        let n = self.signals.len();
        let bad = |reason: String| Err(Error::InvalidFit { reason });
        if self.seasonal.len() != n {
            return bad(format!(
                "{} seasonal profiles for {n} signals",
                self.seasonal.len()
            ));
        }
        if let Some(s) = self
            .seasonal
            .iter()
            .zip(&self.signals)
            .find(|(p, s)| &p.signal != *s)
        {
            return bad(format!(
                "the seasonal profile of `{}` is where `{}` belongs",
                s.0.signal, s.1
            ));
        }
        let baselines = self
            .devices
            .iter()
            .flat_map(|d| d.baselines.iter())
            .chain(&self.pooled);
        for b in baselines {
            let resid_ok = |v: &Vec<Option<f64>>| v.is_empty() || v.len() == n;
            if b.location.len() != n
                || b.scale.len() != n
                || !resid_ok(&b.resid_location)
                || !resid_ok(&b.resid_scale)
            {
                return bad(format!(
                    "a baseline has {} values for {n} signals",
                    b.location.len()
                ));
            }
        }
        if !self.devices.is_sorted_by(|a, b| a.device < b.device) {
            return bad("devices are not in order of their ids".to_owned());
        }
        Ok(())
    }
}

/// The key of a baseline: 0 for all rows, 1 + the state's position in [`State::ALL`].
pub(crate) const KEYS: usize = 1 + State::ALL.len();

pub(crate) fn state_key(s: State) -> usize {
    1 + State::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

pub(crate) fn key_state(k: usize) -> Option<State> {
    k.checked_sub(1).and_then(|i| State::ALL.get(i).copied())
}

/// A baseline needs at least this many training rows; with fewer, the next one
/// in the fallback chain is used (see docs/features.md).
pub(crate) const MIN_BASELINE_ROWS: usize = 10;

/// Candidate periods for `period = "auto"`.
const CANDIDATE_PERIODS_S: [i64; 17] = [
    60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10_800, 14_400, 21_600, 28_800, 43_200, 86_400,
    172_800, 604_800,
];

/// Training cycles a candidate period needs to be considered.
const MIN_CYCLES: i64 = 3;
/// Samples per cycle a candidate period needs to be considered.
const MIN_SAMPLES_PER_CYCLE: i64 = 4;

/// Learns per-device per-state baselines and seasonal profiles from the rows of
/// `span`.
///
/// # Errors
/// [`Error::UnknownSignal`] when the parameters name a signal the batch lacks,
/// [`Error::MaskLength`] for a row mask of the wrong length, and
/// [`Error::EmptyTraining`] when the span holds no row.
pub fn fit(batch: &Batch, span: TrainSpan<'_>, params: &CheckedFeatures) -> Result<FeaturesFit> {
    Ok(fit_with_overall(batch, span, params)?.0)
}

/// The fleet-wide parts of a fit: the baselines of all devices pooled, each
/// signal's spread over the whole span (the last fallback scale) and the
/// seasonal profiles. [`fit_devices`] fits any group of devices against them,
/// so that a fleet too large to hold at once is fitted a group at a time; see
/// [`fit_fleet`].
#[derive(Debug, Clone, PartialEq)]
pub struct FleetFit {
    params: FeatureParams,
    signals: Vec<String>,
    pooled: Vec<Baseline>,
    overall: Vec<f64>,
    seasonal: Vec<SeasonalProfile>,
    devices: usize,
    train_rows: usize,
}

impl FleetFit {
    /// The featurised signals, in column order.
    pub fn signals(&self) -> &[String] {
        &self.signals
    }

    /// Devices of the batch it was fitted on that had training rows.
    pub fn devices(&self) -> usize {
        self.devices
    }

    /// Training rows it was fitted on.
    pub fn train_rows(&self) -> usize {
        self.train_rows
    }

    /// The fit of the devices of `part` alone with these fleet parts: what
    /// [`transform`](crate::transform) needs for those devices' rows (the same
    /// features as with the assembled fit of every group). Unlike
    /// [`FeaturesFit::assemble`] it takes a part without devices.
    pub fn fit_for(&self, part: &DevicesFit) -> FeaturesFit {
        FeaturesFit {
            params: self.params.clone(),
            signals: self.signals.clone(),
            devices: part.devices.clone(),
            pooled: self.pooled.clone(),
            seasonal: self.seasonal.clone(),
            train_rows: part.train_rows,
            train_first: part.bounds.map(|b| format_timestamp(b.0)),
            train_last: part.bounds.map(|b| format_timestamp(b.1)),
        }
    }
}

/// The fleet-wide parts of [`fit`] on `batch`: the pooled baselines, the
/// fallback spreads and the seasonal profiles exactly as [`fit`] computes them.
/// Fitted on a whole fleet, [`fit_devices`] on any partition of its devices
/// and [`FeaturesFit::assemble`] give [`fit`]'s result; fitted on a sample of a
/// fleet's devices, they stand for the fleet (the pooled medians and the
/// profiles are then the sample's).
///
/// # Errors
/// As [`fit`].
pub fn fit_fleet(batch: &Batch, span: TrainSpan<'_>, params: &CheckedFeatures) -> Result<FleetFit> {
    let (fit, overall) = fit_with_overall(batch, span, params)?;
    Ok(FleetFit {
        params: fit.params,
        signals: fit.signals,
        pooled: fit.pooled,
        overall,
        seasonal: fit.seasonal,
        devices: fit.devices.len(),
        train_rows: fit.train_rows,
    })
}

/// The per-device parts of a fit for the devices of one batch, against the
/// fleet's parts (see [`fit_devices`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DevicesFit {
    signals: Vec<String>,
    devices: Vec<DeviceBaselines>,
    train_rows: usize,
    bounds: Option<(i64, i64)>,
}

impl DevicesFit {
    /// Per-device baselines, ordered by device id.
    pub fn devices(&self) -> &[DeviceBaselines] {
        &self.devices
    }

    /// Training rows used.
    pub fn train_rows(&self) -> usize {
        self.train_rows
    }
}

/// Each device's baselines in `batch`, fitted on its rows of `span` as [`fit`]
/// fits them, with the fleet's pooled baselines, spreads and seasonal profiles
/// standing in where [`fit`] uses the whole batch's. A batch whose span has no
/// row gives no device (not an error: another group may have them).
///
/// # Errors
/// [`Error::UnknownSignal`] when the batch lacks one of the fleet's signals,
/// [`Error::MaskLength`] for a row mask of the wrong length.
pub fn fit_devices(batch: &Batch, span: TrainSpan<'_>, fleet: &FleetFit) -> Result<DevicesFit> {
    let g = gather(batch, span, fleet.signals.clone())?;
    let raw = raw_baselines(&g);
    let pooled_for = |state: Option<State>| fleet.pooled.iter().find(|p| p.state == state);
    let mut devices = fixed_devices(batch, &raw, &fleet.overall, pooled_for);
    spread_devices(batch, &g, &mut devices, &fleet.seasonal);
    Ok(DevicesFit {
        signals: g.signals,
        devices,
        train_rows: g.train_rows,
        bounds: (g.train_rows > 0).then_some((g.first, g.last)),
    })
}

impl FeaturesFit {
    /// One fit from the fleet's parts and the devices' parts fitted against them
    /// ([`fit_fleet`], [`fit_devices`]), each device from the one part that has
    /// it: the training rows and bounds are the parts' together.
    ///
    /// # Errors
    /// [`Error::InvalidFit`] when a part was fitted on other signals or two parts
    /// hold the same device; [`Error::EmptyTraining`] when no part had a
    /// training row.
    pub fn assemble(fleet: FleetFit, parts: Vec<DevicesFit>) -> Result<FeaturesFit> {
        let mut devices = Vec::with_capacity(parts.iter().map(|p| p.devices.len()).sum());
        let (mut train_rows, mut bounds) = (0, None::<(i64, i64)>);
        for part in parts {
            if part.signals != fleet.signals {
                return Err(Error::InvalidFit {
                    reason: format!(
                        "a group of devices was fitted on signals {:?}, the fleet on {:?}",
                        part.signals, fleet.signals
                    ),
                });
            }
            train_rows += part.train_rows;
            if let Some((lo, hi)) = part.bounds {
                bounds = Some(bounds.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
            devices.extend(part.devices);
        }
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        if let Some(w) = devices.windows(2).find(|w| w[0].device == w[1].device) {
            return Err(Error::InvalidFit {
                reason: format!("device `{}` was fitted in two groups", w[0].device),
            });
        }
        let Some((first, last)) = bounds else {
            return Err(Error::EmptyTraining {
                span: "the training rows of every group of devices".to_owned(),
            });
        };
        Ok(FeaturesFit {
            params: fleet.params,
            signals: fleet.signals,
            devices,
            pooled: fleet.pooled,
            seasonal: fleet.seasonal,
            train_rows,
            train_first: Some(format_timestamp(first)),
            train_last: Some(format_timestamp(last)),
        })
    }
}

/// A batch's training rows gathered for fitting.
struct Gathered<'b> {
    signals: Vec<String>,
    cols: Vec<&'b [f64]>,
    mask: Vec<bool>,
    order: crate::order::Order,
    /// Training rows per (device code, key), in device-then-time order.
    groups: Groups,
    train_rows: usize,
    first: i64,
    last: i64,
}

fn gather<'b>(batch: &'b Batch, span: TrainSpan<'_>, signals: Vec<String>) -> Result<Gathered<'b>> {
    let mask = train_mask(batch, span)?;
    let order = device_order(batch);
    let schema = batch.schema();
    let cols: Vec<&[f64]> = signals
        .iter()
        .map(|s| {
            schema
                .index_of(s)
                .map(|i| batch.signal(i))
                .ok_or_else(|| unknown_signal(s, schema, "fit on data with this signal"))
        })
        .collect::<Result<_>>()?;
    let ts = batch.timestamps();
    let states = batch.states();
    let codes = batch.device_codes();
    let ndev = batch.device_names().len();
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    let mut train_rows = 0;
    // The training rows of each (device, key), and of each device's state:
    // counted, then placed (the groups' rows in one block, not a growing list
    // each).
    let keys_of = |r: usize| {
        let d = codes[r] as usize;
        (d * KEYS, states.map(|s| d * KEYS + state_key(s[r])))
    };
    let mut starts = vec![0usize; ndev * KEYS + 1];
    for i in 0..batch.len() {
        let r = order.row(i);
        if !mask[r] {
            continue;
        }
        train_rows += 1;
        first = first.min(ts[r]);
        last = last.max(ts[r]);
        let (all, state) = keys_of(r);
        starts[all + 1] += 1;
        if let Some(k) = state {
            starts[k + 1] += 1;
        }
    }
    for k in 0..ndev * KEYS {
        starts[k + 1] += starts[k];
    }
    let mut next = starts.clone();
    let mut rows = vec![0u32; starts[ndev * KEYS]];
    for i in 0..batch.len() {
        let r = order.row(i);
        if !mask[r] {
            continue;
        }
        let (all, state) = keys_of(r);
        for k in std::iter::once(all).chain(state) {
            rows[next[k]] = r as u32;
            next[k] += 1;
        }
    }
    let groups = Groups { starts, rows };
    Ok(Gathered {
        signals,
        cols,
        mask,
        order,
        groups,
        train_rows,
        first,
        last,
    })
}

/// Rows per group, all in one block: group `k`'s are
/// `rows[starts[k]..starts[k + 1]]` (a batch in memory has fewer than 2³² rows).
struct Groups {
    starts: Vec<usize>,
    rows: Vec<u32>,
}

impl Groups {
    /// Group `k`'s rows, in order.
    fn rows(&self, k: usize) -> impl Iterator<Item = usize> + Clone + '_ {
        self.rows[self.starts[k]..self.starts[k + 1]]
            .iter()
            .map(|&r| r as usize)
    }

    /// Groups.
    fn len(&self) -> usize {
        self.starts.len() - 1
    }
}

/// Robust location and scale per (device, key).
fn raw_baselines(g: &Gathered<'_>) -> Vec<Option<Baseline>> {
    (0..g.groups.len())
        .into_par_iter()
        .map(|k| robust(g.groups.rows(k), &g.cols, key_state(k % KEYS)))
        .collect()
}

/// Replaces unusable scales: by the pooled baseline's of the same key, else by
/// the signal's overall spread.
fn fix_scales(b: &mut Baseline, pooled: Option<&Baseline>, overall: &[f64]) {
    for (s, fallback) in overall.iter().enumerate() {
        let (Some(loc), Some(scale)) = (b.location[s], b.scale[s]) else {
            continue;
        };
        if !usable_scale(scale, loc) {
            b.scale[s] = Some(match pooled {
                Some(p) => match (p.location[s], p.scale[s]) {
                    (Some(pl), Some(ps)) if usable_scale(ps, pl) => ps,
                    _ => *fallback,
                },
                None => *fallback,
            });
        }
    }
}

/// Each device's baselines with usable scales, ordered by device id (devices
/// without a baseline left out).
fn fixed_devices<'p>(
    batch: &Batch,
    raw: &[Option<Baseline>],
    overall: &[f64],
    pooled_for: impl Fn(Option<State>) -> Option<&'p Baseline>,
) -> Vec<DeviceBaselines> {
    let mut devices: Vec<DeviceBaselines> = Vec::new();
    for (d, name) in batch.device_names().iter().enumerate() {
        let mut baselines = Vec::new();
        for b in raw[d * KEYS..(d + 1) * KEYS].iter().flatten() {
            let mut b = b.clone();
            let state = b.state;
            fix_scales(&mut b, pooled_for(state), overall);
            baselines.push(b);
        }
        if !baselines.is_empty() {
            devices.push(DeviceBaselines {
                device: name.clone(),
                baselines,
            });
        }
    }
    devices.sort_by(|a, b| a.device.cmp(&b.device));
    devices
}

/// The residual's level and spread per device baseline: the control charts'
/// centre and unit.
fn spread_devices(
    batch: &Batch,
    g: &Gathered<'_>,
    devices: &mut [DeviceBaselines],
    seasonal: &[SeasonalProfile],
) {
    let code_of: std::collections::BTreeMap<&str, usize> = batch
        .device_names()
        .iter()
        .enumerate()
        .map(|(d, n)| (n.as_str(), d))
        .collect();
    let ts = batch.timestamps();
    devices.par_iter_mut().for_each(|dev| {
        let Some(&d) = code_of.get(dev.device.as_str()) else {
            return;
        };
        for b in &mut dev.baselines {
            let key = b.state.map_or(0, state_key);
            residual_spread(b, g.groups.rows(d * KEYS + key), &g.cols, ts, seasonal);
        }
    });
}

/// [`fit`], and each signal's overall spread (the last fallback scale).
// One pass gathers each device's training values per state; the reductions
// are the functions above, shared with fitting a group of devices against a
// fleet's parts ([`fit_devices`]).
fn fit_with_overall(
    batch: &Batch,
    span: TrainSpan<'_>,
    params: &CheckedFeatures,
) -> Result<(FeaturesFit, Vec<f64>)> {
    let signals = select_signals(params, batch.schema())?;
    let g = gather(batch, span, signals)?;
    if g.train_rows == 0 {
        return Err(Error::EmptyTraining {
            span: span_words(span),
        });
    }
    let (cols, groups) = (&g.cols, &g.groups);
    let ts = batch.timestamps();
    let states = batch.states();
    let codes = batch.device_codes();
    let ndev = batch.device_names().len();

    // Robust location and scale per (device, key) and pooled per key.
    let raw = raw_baselines(&g);
    let pooled_raw: Vec<Option<Baseline>> = (0..KEYS)
        .into_par_iter()
        .map(|k| {
            let rows = (0..ndev).flat_map(|d| groups.rows(d * KEYS + k));
            robust(rows, cols, key_state(k))
        })
        .collect();
    // The signal's spread over the whole training span: the last fallback scale.
    let overall: Vec<f64> = cols
        .iter()
        .map(|c| {
            let (n, _, m2) = (0..ndev)
                .flat_map(|d| groups.rows(d * KEYS))
                .map(|r| c[r])
                .filter(|v| v.is_finite())
                .fold((0.0, 0.0, 0.0), |(n, mean, m2), v| {
                    let n1 = n + 1.0;
                    let d = v - mean;
                    let mean1 = mean + d / n1;
                    (n1, mean1, m2 + d * (v - mean1))
                });
            let sd = if n > 1.0 {
                (m2 / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            if usable_scale(sd, 0.0) { sd } else { 1.0 }
        })
        .collect();
    let mut pooled: Vec<Baseline> = Vec::new();
    for mut b in pooled_raw.into_iter().flatten() {
        fix_scales(&mut b, None, &overall);
        pooled.push(b);
    }
    let pooled_for = |state: Option<State>| pooled.iter().find(|p| p.state == state);
    let mut devices = fixed_devices(batch, &raw, &overall, pooled_for);

    // Seasonal profiles, on the deviations from the device's state baseline.
    let interval = median_interval(batch, &g.order, &g.mask);
    let (first, last) = (g.first, g.last);
    let dev_lookup: Vec<Option<&DeviceBaselines>> = batch
        .device_names()
        .iter()
        .map(|n| {
            devices
                .binary_search_by(|d| d.device.as_str().cmp(n))
                .ok()
                .map(|i| &devices[i])
        })
        .collect();
    let train: Vec<usize> = (0..ndev).flat_map(|d| groups.rows(d * KEYS)).collect();
    let bins = params.params().seasonal_bins;
    let seasonal: Vec<SeasonalProfile> = g
        .signals
        .par_iter()
        .enumerate()
        .map(|(s, name)| {
            // Deviations of this signal's training rows, with their timestamps.
            let dev: Vec<(i64, f64)> = train
                .iter()
                .filter_map(|&r| {
                    let v = cols[s][r];
                    let key = states.map_or(0, |st| state_key(st[r]));
                    let b = dev_lookup[codes[r] as usize]?
                        .baselines
                        .iter()
                        .find(|b| b.state == key_state(key))?;
                    let d = v - b.location[s]?;
                    d.is_finite().then_some((ts[r], d))
                })
                .collect();
            let none = SeasonalProfile {
                signal: name.clone(),
                period_us: None,
                strength: 0.0,
                profile: Vec::new(),
            };
            let candidates: Vec<i64> = match params.period() {
                Period::Off => Vec::new(),
                Period::Fixed(p) => vec![p],
                Period::Auto => CANDIDATE_PERIODS_S
                    .iter()
                    .map(|s| s * MICROS_PER_SEC)
                    .filter(|&p| {
                        last - first >= MIN_CYCLES * p
                            && interval.is_some_and(|i| p >= MIN_SAMPLES_PER_CYCLE * i)
                    })
                    .collect(),
            };
            let mut best = none.clone();
            for p in candidates {
                let (strength, profile) = profile_for(&dev, p, bins);
                let keep = match params.period() {
                    Period::Fixed(_) => true,
                    _ => {
                        strength >= params.params().period_min_strength && strength > best.strength
                    }
                };
                if keep {
                    best = SeasonalProfile {
                        signal: name.clone(),
                        period_us: Some(p),
                        strength,
                        profile,
                    };
                }
            }
            best
        })
        .collect();
    drop(dev_lookup);
    drop(train);

    // The residual's level and spread per baseline: the control charts' centre and unit.
    spread_devices(batch, &g, &mut devices, &seasonal);
    for b in &mut pooled {
        let key = b.state.map_or(0, state_key);
        let rows = (0..ndev).flat_map(|d| groups.rows(d * KEYS + key));
        residual_spread(b, rows, cols, ts, &seasonal);
    }

    let fit = FeaturesFit {
        params: params.params().clone(),
        signals: g.signals.clone(),
        devices,
        pooled,
        seasonal,
        train_rows: g.train_rows,
        train_first: Some(format_timestamp(first)),
        train_last: Some(format_timestamp(last)),
    };
    Ok((fit, overall))
}

fn span_words(span: TrainSpan<'_>) -> String {
    match span {
        TrainSpan::All => "all rows of an empty batch".to_owned(),
        TrainSpan::Until(t) => format!("rows up to {}", format_timestamp(t)),
        TrainSpan::Fraction(f) => format!("the first {f} of the time span"),
        TrainSpan::Rows(_) => "the rows marked in the mask".to_owned(),
    }
}

/// One flag per row: in the training span or not.
fn train_mask(batch: &Batch, span: TrainSpan<'_>) -> Result<Vec<bool>> {
    let ts = batch.timestamps();
    Ok(match span {
        TrainSpan::All => vec![true; batch.len()],
        TrainSpan::Until(t) => ts.iter().map(|&x| x <= t).collect(),
        TrainSpan::Fraction(f) => {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::param(
                    "train_fraction",
                    format!("{f} is not a share above 0 and at most 1"),
                ));
            }
            match batch.time_bounds() {
                None => Vec::new(),
                Some((lo, hi)) => {
                    let cut = lo + ((hi - lo) as f64 * f).round() as i64;
                    ts.iter().map(|&x| x <= cut).collect()
                }
            }
        }
        TrainSpan::Rows(m) => {
            if m.len() != batch.len() {
                return Err(Error::MaskLength {
                    mask: m.len(),
                    rows: batch.len(),
                });
            }
            m.to_vec()
        }
    })
}

/// Whether `scale` can divide: positive, finite, and not vanishing next to the level.
fn usable_scale(scale: f64, location: f64) -> bool {
    scale.is_finite() && scale > 1e-9 * location.abs().max(1.0)
}

/// Median and 1.4826 × MAD per signal of `rows`; `None` with too few rows.
fn robust(
    rows: impl Iterator<Item = usize> + Clone,
    cols: &[&[f64]],
    state: Option<State>,
) -> Option<Baseline> {
    let n = rows.clone().count();
    if n < MIN_BASELINE_ROWS {
        return None;
    }
    let mut location = Vec::with_capacity(cols.len());
    let mut scale = Vec::with_capacity(cols.len());
    let mut buf: Vec<f64> = Vec::with_capacity(n);
    for c in cols {
        buf.clear();
        buf.extend(rows.clone().map(|r| c[r]).filter(|v| v.is_finite()));
        if buf.len() < MIN_BASELINE_ROWS {
            // Too few observations of this signal: the next baseline in the
            // fallback chain stands in for it.
            location.push(None);
            scale.push(None);
            continue;
        }
        let med = median(&mut buf);
        for v in buf.iter_mut() {
            *v = (*v - med).abs();
        }
        location.push(Some(med));
        scale.push(Some(1.4826 * median(&mut buf)));
    }
    Some(Baseline {
        state,
        rows: n,
        location,
        scale,
        resid_location: Vec::new(),
        resid_scale: Vec::new(),
    })
}

/// Sets `b`'s residual level and spread per signal from `rows`: the residual is
/// the value less `b`'s location and the signal's seasonal profile.
fn residual_spread(
    b: &mut Baseline,
    rows: impl Iterator<Item = usize> + Clone,
    cols: &[&[f64]],
    ts: &[i64],
    seasonal: &[SeasonalProfile],
) {
    b.resid_location.clear();
    b.resid_scale.clear();
    let mut buf: Vec<f64> = Vec::new();
    for (s, c) in cols.iter().enumerate() {
        let (Some(loc), Some(scale)) = (b.location[s], b.scale[s]) else {
            b.resid_location.push(None);
            b.resid_scale.push(None);
            continue;
        };
        buf.clear();
        buf.extend(
            rows.clone()
                .map(|r| c[r] - loc - seasonal[s].at(ts[r]))
                .filter(|v| v.is_finite()),
        );
        if buf.len() < MIN_BASELINE_ROWS {
            b.resid_location.push(Some(0.0));
            b.resid_scale.push(Some(scale));
            continue;
        }
        let med = median(&mut buf);
        for v in buf.iter_mut() {
            *v = (*v - med).abs();
        }
        let spread = 1.4826 * median(&mut buf);
        b.resid_location.push(Some(med));
        b.resid_scale.push(Some(if usable_scale(spread, loc) {
            spread
        } else {
            scale
        }));
    }
}

/// The median of finite values (the mean of the two middle ones for an even count).
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lo + hi)
}

/// The median positive step between a device's consecutive training rows.
fn median_interval(batch: &Batch, order: &crate::order::Order, mask: &[bool]) -> Option<i64> {
    let ts = batch.timestamps();
    let mut steps: Vec<i64> = Vec::new();
    for g in &order.groups {
        let mut prev: Option<i64> = None;
        for i in g.start..g.end {
            let r = order.row(i);
            if !mask[r] {
                continue;
            }
            if let Some(p) = prev
                && ts[r] > p
            {
                steps.push(ts[r] - p);
            }
            prev = Some(ts[r]);
        }
    }
    if steps.is_empty() {
        return None;
    }
    let mid = steps.len() / 2;
    Some(*steps.select_nth_unstable(mid).1)
}

/// The centred profile of `dev` by phase of `p`, and the share of variance it explains.
fn profile_for(dev: &[(i64, f64)], p: i64, bins: usize) -> (f64, Vec<f64>) {
    let mut sum = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    let mut total = 0.0;
    for &(t, d) in dev {
        let b = phase_bin(t, p, bins);
        sum[b] += d;
        count[b] += 1;
        total += d;
    }
    let n = dev.len();
    if n < 2 {
        return (0.0, vec![0.0; bins]);
    }
    let mean = total / n as f64;
    let ss: f64 = dev.iter().map(|&(_, d)| (d - mean) * (d - mean)).sum();
    let profile: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(&s, &c)| if c > 0 { s / c as f64 - mean } else { 0.0 })
        .collect();
    let between: f64 = profile
        .iter()
        .zip(&count)
        .map(|(&m, &c)| c as f64 * m * m)
        .sum();
    let strength = if ss > 0.0 {
        (between / ss).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (strength, profile)
}

/// Describes a fitted seasonal period in words, for reports.
pub fn describe_period(profile: &SeasonalProfile) -> String {
    match profile.period_us {
        Some(p) => format!(
            "{}: period {} (explains {:.0}% of the variance)",
            profile.signal,
            duration_label(p),
            100.0 * profile.strength
        ),
        None => format!("{}: no seasonal period", profile.signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn phase_bins_cover_the_period() {
        let p = 3600 * MICROS_PER_SEC;
        assert_eq!(phase_bin(0, p, 24), 0);
        assert_eq!(phase_bin(p - 1, p, 24), 23);
        assert_eq!(phase_bin(p / 2, p, 24), 12);
        assert_eq!(phase_bin(-1, p, 24), 23, "before 1970 too");
    }

    #[test]
    fn a_periodic_deviation_is_explained_and_noise_is_not() {
        let p = 3600 * MICROS_PER_SEC;
        let step = 10 * MICROS_PER_SEC;
        let sine: Vec<(i64, f64)> = (0..3600)
            .map(|i| {
                let t = i * step;
                (t, (std::f64::consts::TAU * t as f64 / p as f64).sin())
            })
            .collect();
        let (strength, profile) = profile_for(&sine, p, 24);
        assert!(strength > 0.95, "{strength}");
        assert!(profile[6] > 0.9 && profile[18] < -0.9, "{profile:?}");
        let mut state = 7u64;
        let noise: Vec<(i64, f64)> = (0..3600)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (i * step, (state >> 11) as f64 / (1u64 << 53) as f64)
            })
            .collect();
        assert!(profile_for(&noise, p, 24).0 < 0.05);
    }
}
