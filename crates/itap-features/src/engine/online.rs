//! The one-pass features, computed row by row from a per-device state: what live
//! scoring needs. A row's features come out bit-identical to [`transform`]'s for
//! the same device rows in time order (the test `online.rs` holds it), because
//! each kind is the same recurrence as in the batch parts, kept here as state
//! between rows instead of as a loop over a slice.
//!
//! [`transform`]: crate::transform

use itap_telemetry::{MICROS_PER_SEC, State};

use super::baseline::Tables;
use super::columns::Idx;
use super::point::Ew;
use crate::catalogue::{ColSpec, Plan};
use crate::error::{Error, Result};
use crate::fit::{FeaturesFit, state_key};
use crate::params::CheckedFeatures;

/// The kinds that can be computed row by row, in words (for the error that
/// refuses the others).
const ONLINE_KINDS: &str = "diff, rate, ewm, missing, missing_run, trend, seasonal, resid, \
state_dev, chart_ewma, chart_cusum, error_streak, since_error, since_state_change";

/// A features fit made ready to compute its features one row at a time, for
/// any number of devices, each with its own [`DeviceState`].
///
/// Only the one-pass kinds can be: windowed statistics and spectra need the rows
/// of a window and are refused by [`OnlineFeatures::new`]. The detector's default
/// inputs (control charts, missing run, error streak) are all one-pass.
#[derive(Debug)]
pub struct OnlineFeatures {
    fit: FeaturesFit,
    checked: CheckedFeatures,
    idx: Idx,
    names: Vec<String>,
    nsig: usize,
}

/// One row of one device, as [`OnlineFeatures::push`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct OnlineRow<'a> {
    /// UTC microseconds; later than the device's previous row.
    pub ts: i64,
    /// The operating state, if the data has one.
    pub state: Option<State>,
    /// The error code, if the data has one (0 = none).
    pub error_code: Option<i32>,
    /// One value per featurised signal, in [`OnlineFeatures::signals`] order; NaN
    /// for a missing value.
    pub values: &'a [f64],
}

/// What the features of one device remember between rows. Save it with
/// [`DeviceState::to_bytes`] and resume with [`OnlineFeatures::resume`]: the
/// resumed state goes on exactly as the saved one would have.
#[derive(Debug, Clone)]
pub struct DeviceState {
    device: String,
    tables: Tables,
    rows: u64,
    last_ts: i64,
    since_change: i64,
    /// The previous row's baseline key (0 = no state).
    last_key: u8,
    error_streak: f64,
    last_error: Option<i64>,
    signals: Vec<SignalState>,
}

#[derive(Debug, Clone)]
struct SignalState {
    /// The last observation (time, value), for imputation.
    last_obs: Option<(i64, f64)>,
    /// The previous row's imputed value (NaN before the first row).
    prev_imputed: f64,
    missing_run: f64,
    ewm: Ew,
    trend: Ew,
    charts: Vec<Ew>,
    hi: f64,
    lo: f64,
    seen: bool,
}

impl OnlineFeatures {
    /// Readies `fit` for row-by-row computation.
    ///
    /// # Errors
    /// [`Error::NotOnline`] naming the first feature that needs a window of rows;
    /// as [`FeaturesFit::catalogue`] for a fit that does not check.
    pub fn new(fit: &FeaturesFit) -> Result<OnlineFeatures> {
        let (checked, plan) = fit.plan()?;
        if let Some((info, _)) = plan.columns.iter().find(|(_, spec)| !is_online(spec)) {
            return Err(Error::NotOnline {
                feature: info.name.clone(),
                supported: ONLINE_KINDS,
            });
        }
        let idx = Idx::new(&plan, &checked);
        Ok(OnlineFeatures {
            nsig: plan.signals.len(),
            names: names(&plan),
            fit: fit.clone(),
            checked,
            idx,
        })
    }

    /// The featurised signals, in the order [`OnlineRow::values`] holds them.
    pub fn signals(&self) -> &[String] {
        self.fit.signals()
    }

    /// The feature columns, in the order [`OnlineFeatures::push`] writes them
    /// (the same as [`transform`](crate::transform)'s).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A new device's state, before its first row.
    pub fn device(&self, name: &str) -> DeviceState {
        let hl = |us: i64| us as f64;
        let r = &self.checked.resolved;
        DeviceState {
            device: name.to_owned(),
            tables: Tables::for_devices(&[name.to_owned()], &self.fit, self.nsig),
            rows: 0,
            last_ts: 0,
            since_change: 0,
            last_key: 0,
            error_streak: 0.0,
            last_error: None,
            signals: (0..self.nsig)
                .map(|_| SignalState {
                    last_obs: None,
                    prev_imputed: f64::NAN,
                    missing_run: 0.0,
                    ewm: Ew::new(hl(r.ewm_halflife_us)),
                    trend: Ew::new(hl(r.ewm_halflife_us)),
                    charts: r
                        .chart_halflives_us
                        .iter()
                        .map(|&h| Ew::new(hl(h)))
                        .collect(),
                    hi: 0.0,
                    lo: 0.0,
                    seen: false,
                })
                .collect(),
        }
    }

    /// Computes the features of `row`, the next row of the device whose state is
    /// `dev`, into `out` (one value per [`OnlineFeatures::names`]), and moves the
    /// state past it.
    ///
    /// # Errors
    /// [`Error::OnlineRow`] when the row has the wrong number of values, or is
    /// not later than the device's previous row (the state is then unchanged).
    pub fn push(&self, dev: &mut DeviceState, row: &OnlineRow<'_>, out: &mut [f64]) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::OnlineRow {
                device: dev.device.clone(),
                reason,
            })
        };
        if row.values.len() != self.nsig || out.len() != self.names.len() {
            return bad(format!(
                "{} values and {} outputs for {} signals and {} features",
                row.values.len(),
                out.len(),
                self.nsig,
                self.names.len()
            ));
        }
        if dev.rows > 0 && row.ts <= dev.last_ts {
            return bad(format!(
                "time {} is not after the previous row's {}",
                row.ts, dev.last_ts
            ));
        }
        let key = row.state.map_or(0, state_key);
        let first = dev.rows == 0;
        for si in 0..self.nsig {
            self.signal(dev, si, key, first, row, out);
        }
        self.device_features(dev, key as u8, first, row, out);
        dev.rows += 1;
        dev.last_ts = row.ts;
        dev.last_key = key as u8;
        Ok(())
    }

    /// One signal's point, baseline and chart features (the batch parts
    /// `point`, `baseline`), in the same order of updates.
    fn signal(
        &self,
        dev: &mut DeviceState,
        si: usize,
        key: usize,
        first: bool,
        row: &OnlineRow<'_>,
        out: &mut [f64],
    ) {
        let r = &self.checked.resolved;
        let (ts, x) = (row.ts, row.values[si]);
        let nsig = self.nsig;
        let chart = dev.tables.charts[0][key * nsig + si];
        let level = dev.tables.baselines[0][key * nsig + si];
        let profile = &self.fit.seasonal()[si];
        let s = &mut dev.signals[si];
        // imputation: the observation, or the last one within the fill limit
        let imp = if x.is_finite() {
            s.last_obs = Some((ts, x));
            x
        } else {
            match s.last_obs {
                Some((t, v)) if ts.saturating_sub(t) <= r.fill_limit_us => v,
                _ => f64::NAN,
            }
        };
        let [diff, rate, ewm, missing, missing_run] = self.idx.point[si];
        let put = |out: &mut [f64], c: Option<usize>, v: f64| {
            if let Some(c) = c {
                out[c] = v;
            }
        };
        put(out, missing, if x.is_finite() { 0.0 } else { 1.0 });
        s.missing_run = if x.is_finite() {
            0.0
        } else {
            s.missing_run + 1.0
        };
        put(out, missing_run, s.missing_run);
        put(
            out,
            diff,
            if first {
                f64::NAN
            } else {
                imp - s.prev_imputed
            },
        );
        let dt = ts.saturating_sub(dev.last_ts);
        put(
            out,
            rate,
            if first || dt <= 0 {
                f64::NAN
            } else {
                (imp - s.prev_imputed) / (dt as f64 / MICROS_PER_SEC as f64)
            },
        );
        if x.is_finite() {
            s.ewm.update(ts, x);
        }
        put(out, ewm, s.ewm.mean);
        s.prev_imputed = imp;

        let [trend, seasonal, resid, state_dev, cusum] = self.idx.baseline[si];
        // control charts
        if let (true, Some((centre, unit))) = (x.is_finite(), chart) {
            let z = (x - centre - profile.at(ts)) / unit;
            if z.is_finite() {
                for ew in &mut s.charts {
                    ew.update(ts, z);
                }
                let k = self.checked.params().chart_cusum_k;
                s.hi = (s.hi + z - k).max(0.0);
                s.lo = (s.lo - z - k).max(0.0);
                s.seen = true;
            }
        }
        for (slot, ew) in self.idx.chart[si].iter().zip(&s.charts) {
            put(out, *slot, ew.mean);
        }
        put(
            out,
            cusum,
            match (s.seen, s.hi >= s.lo) {
                (false, _) => f64::NAN,
                (true, true) => s.hi,
                (true, false) => -s.lo,
            },
        );
        // decomposition
        let sv = profile.at(ts);
        let before = s.trend.mean;
        if x.is_finite() {
            s.trend.update(ts, x - sv);
        }
        put(out, trend, s.trend.mean);
        put(out, seasonal, sv);
        put(out, resid, imp - sv - before);
        put(
            out,
            state_dev,
            match level {
                Some((loc, scale)) => (imp - loc) / scale,
                None => f64::NAN,
            },
        );
    }

    /// The device-level one-pass features (the batch part `device`).
    fn device_features(
        &self,
        dev: &mut DeviceState,
        key: u8,
        first: bool,
        row: &OnlineRow<'_>,
        out: &mut [f64],
    ) {
        let cap = self.checked.resolved.elapsed_cap_us;
        let secs = |us: i64| us.clamp(0, cap) as f64 / MICROS_PER_SEC as f64;
        let [streak, since_err, since_change] = self.idx.dev;
        let error = row.error_code.is_some_and(|e| e != 0);
        dev.error_streak = if error { dev.error_streak + 1.0 } else { 0.0 };
        if error {
            dev.last_error = Some(row.ts);
        }
        if first || (row.state.is_some() && key != dev.last_key) {
            dev.since_change = row.ts;
        }
        if let Some(c) = streak {
            out[c] = dev.error_streak;
        }
        if let Some(c) = since_err {
            out[c] = match dev.last_error {
                Some(t) => secs(row.ts.saturating_sub(t)),
                None => secs(cap),
            };
        }
        if let Some(c) = since_change {
            out[c] = secs(row.ts.saturating_sub(dev.since_change));
        }
    }

    /// Resumes a device's state saved by [`DeviceState::to_bytes`] with this fit.
    ///
    /// # Errors
    /// [`Error::OnlineRow`] when the bytes are not a saved state of this fit's
    /// shape (another fit, or damaged).
    pub fn resume(&self, device: &str, bytes: &[u8]) -> Result<DeviceState> {
        let bad = |reason: &str| Error::OnlineRow {
            device: device.to_owned(),
            reason: format!("cannot resume its saved feature state: {reason}"),
        };
        let mut dev = self.device(device);
        let mut rd = Reader { bytes, at: 0 };
        if rd.take(4).ok_or_else(|| bad("too short"))? != MAGIC {
            return Err(bad("not a saved feature state"));
        }
        let nh = self.checked.resolved.chart_halflives_us.len() as u64;
        if (rd.u64(), rd.u64()) != (Some(self.nsig as u64), Some(nh)) {
            return Err(bad(
                "saved with another features fit; start the device afresh",
            ));
        }
        let mut read = || -> Option<()> {
            dev.rows = rd.u64()?;
            dev.last_ts = rd.i64()?;
            dev.since_change = rd.i64()?;
            dev.last_key = u8::try_from(rd.u64()?).ok()?;
            dev.error_streak = rd.f64()?;
            dev.last_error = rd.opt_i64()?;
            for s in &mut dev.signals {
                s.last_obs = match rd.u64()? {
                    0 => None,
                    _ => Some((rd.i64()?, rd.f64()?)),
                };
                s.prev_imputed = rd.f64()?;
                s.missing_run = rd.f64()?;
                for ew in std::iter::once(&mut s.ewm)
                    .chain(std::iter::once(&mut s.trend))
                    .chain(s.charts.iter_mut())
                {
                    let (mean, last_t) = (rd.f64()?, rd.i64()?);
                    *ew = Ew::resume(ew.halflife(), mean, last_t);
                }
                s.hi = rd.f64()?;
                s.lo = rd.f64()?;
                s.seen = rd.u64()? != 0;
            }
            (rd.at == rd.bytes.len()).then_some(())
        };
        read().ok_or_else(|| bad("damaged"))?;
        Ok(dev)
    }
}

const MAGIC: &[u8; 4] = b"ITF1";

impl DeviceState {
    /// The device.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The time of the last row pushed (none before the first).
    pub fn last_ts(&self) -> Option<i64> {
        (self.rows > 0).then_some(self.last_ts)
    }

    /// The state as bytes (exact: every number as its bits), for
    /// [`OnlineFeatures::resume`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.signals.len() * 128);
        w.extend_from_slice(MAGIC);
        let nh = self.signals.first().map_or(0, |s| s.charts.len());
        debug_assert!(self.signals.iter().all(|s| s.charts.len() == nh));
        let u = |w: &mut Vec<u8>, v: u64| w.extend_from_slice(&v.to_le_bytes());
        let i = |w: &mut Vec<u8>, v: i64| w.extend_from_slice(&v.to_le_bytes());
        let f = |w: &mut Vec<u8>, v: f64| w.extend_from_slice(&v.to_bits().to_le_bytes());
        u(&mut w, self.signals.len() as u64);
        u(&mut w, nh as u64);
        u(&mut w, self.rows);
        i(&mut w, self.last_ts);
        i(&mut w, self.since_change);
        u(&mut w, u64::from(self.last_key));
        f(&mut w, self.error_streak);
        match self.last_error {
            Some(t) => {
                u(&mut w, 1);
                i(&mut w, t);
            }
            None => u(&mut w, 0),
        }
        for s in &self.signals {
            match s.last_obs {
                Some((t, v)) => {
                    u(&mut w, 1);
                    i(&mut w, t);
                    f(&mut w, v);
                }
                None => u(&mut w, 0),
            }
            f(&mut w, s.prev_imputed);
            f(&mut w, s.missing_run);
            for ew in std::iter::once(&s.ewm)
                .chain(std::iter::once(&s.trend))
                .chain(&s.charts)
            {
                f(&mut w, ew.mean);
                i(&mut w, ew.last_t());
            }
            f(&mut w, s.hi);
            f(&mut w, s.lo);
            u(&mut w, u64::from(s.seen));
        }
        w
    }
}

/// Reads the numbers [`DeviceState::to_bytes`] wrote; `None` past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn word(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.word()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.word()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_bits(u64::from_le_bytes(self.word()?)))
    }

    fn opt_i64(&mut self) -> Option<Option<i64>> {
        match self.u64()? {
            0 => Some(None),
            _ => Some(Some(self.i64()?)),
        }
    }
}

/// Whether a column can be computed row by row.
fn is_online(spec: &ColSpec) -> bool {
    matches!(
        spec,
        ColSpec::Signal { .. } | ColSpec::Device { .. } | ColSpec::Chart { .. }
    )
}

fn names(plan: &Plan) -> Vec<String> {
    plan.columns.iter().map(|(i, _)| i.name.clone()).collect()
}
