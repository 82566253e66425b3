//! Point features of a signal: the imputed value every other feature starts from,
//! and what one pass over a device's rows gives: diff, rate, ewm, missing and
//! missing run.

use itap_telemetry::MICROS_PER_SEC;

use super::Ctx;
use super::rows::{ChunkRows, DeviceRows, SignalRows};
use crate::params::FeatureKind;

/// The kinds computed here, in the order of their slots.
pub(super) const KINDS: [FeatureKind; 5] = [
    FeatureKind::Diff,
    FeatureKind::Rate,
    FeatureKind::Ewm,
    FeatureKind::Missing,
    FeatureKind::MissingRun,
];

impl Ctx<'_> {
    /// Point values of the chunk, per signal: the observation, or the last one
    /// carried forward (bounded).
    pub(super) fn impute_chunk(&self, rows: &ChunkRows<'_>, imputed: &mut Vec<Vec<f64>>) {
        let fill = self.checked.resolved.fill_limit_us;
        imputed.resize_with(rows.raw.len(), Vec::new);
        for (x, out) in rows.raw.iter().zip(imputed.iter_mut()) {
            out.clear();
            out.resize(x.len(), f64::NAN);
            for g in &rows.local {
                impute(
                    &rows.ts[g.start..g.end],
                    &x[g.start..g.end],
                    fill,
                    &mut out[g.start..g.end],
                );
            }
        }
    }

    /// The point features of one signal of one device.
    pub(super) fn point_features(
        &self,
        dev: &DeviceRows<'_>,
        sig: &SignalRows<'_>,
        outs: &mut [Vec<f64>],
    ) {
        let [diff, rate, ewm, missing, missing_run] = self.idx.point[sig.si];
        let r = dev.range();
        let (ts, x, imp) = (dev.ts, sig.raw, sig.imputed);
        if let Some(c) = missing {
            for (o, v) in outs[c][r.clone()].iter_mut().zip(x) {
                *o = if v.is_finite() { 0.0 } else { 1.0 };
            }
        }
        if let Some(c) = missing_run {
            let mut run = 0.0;
            for (o, v) in outs[c][r.clone()].iter_mut().zip(x) {
                run = if v.is_finite() { 0.0 } else { run + 1.0 };
                *o = run;
            }
        }
        if let Some(c) = diff {
            let out = &mut outs[c][r.clone()];
            out[0] = f64::NAN;
            for i in 1..out.len() {
                out[i] = imp[i] - imp[i - 1];
            }
        }
        if let Some(c) = rate {
            let out = &mut outs[c][r.clone()];
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
        if let Some(c) = ewm {
            let mut ew = Ew::new(self.checked.resolved.ewm_halflife_us as f64);
            for (i, o) in outs[c][r].iter_mut().enumerate() {
                if x[i].is_finite() {
                    ew.update(ts[i], x[i]);
                }
                *o = ew.mean;
            }
        }
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
#[derive(Debug, Clone)]
pub(super) struct Ew {
    pub(super) mean: f64,
    last_t: i64,
    halflife: f64,
    cached_dt: i64,
    cached_alpha: f64,
}

impl Ew {
    pub(super) fn new(halflife_us: f64) -> Ew {
        Ew {
            mean: f64::NAN,
            last_t: 0,
            halflife: halflife_us,
            cached_dt: -1,
            cached_alpha: 0.0,
        }
    }

    /// Resumes a mean saved as (mean, time of its last update).
    pub(super) fn resume(halflife_us: f64, mean: f64, last_t: i64) -> Ew {
        Ew {
            mean,
            last_t,
            ..Ew::new(halflife_us)
        }
    }

    /// The half-life, µs.
    pub(super) fn halflife(&self) -> f64 {
        self.halflife
    }

    /// The time of the last update (0 before the first).
    pub(super) fn last_t(&self) -> i64 {
        self.last_t
    }

    pub(super) fn update(&mut self, t: i64, x: f64) {
        // Half-life 0: no memory, the mean is the latest value.
        if self.mean.is_nan() || self.halflife <= 0.0 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
