//! The operating threshold, decided in one place from training scores only.
//!
//! A model keeps a [`ScoreSketch`] of its training scores (not the scores
//! themselves: a fleet's training span holds millions of rows), dense enough that
//! every threshold the `[eval]` section accepts can be read from it later:
//! [`CheckedEval::threshold`] turns the sketch and the configured rule into the
//! [`Threshold`] that scoring and evaluation use.

use serde::{Deserialize, Serialize};

use crate::alert_params::CheckedAlerts;
use crate::error::{Error, Result};
use crate::evaluate::{ScoredRows, Threshold};
use crate::events::{device_days, per_device_rows};
use crate::metrics::quantile_sorted;
use crate::params::{CheckedEval, ThresholdRule};
use crate::tracker::build_alerts;

/// Steps per unit of quantile in a [`ScoreSketch`]: entries at every 0.0001.
const STEPS_PER_UNIT: u32 = 10_000;
/// The lowest quantile a sketch keeps, in steps (0.5).
const FIRST_STEP: u32 = 5_000;

/// The smallest quantile a sketch answers (and `eval.threshold_quantile` accepts).
pub const SKETCH_MIN_QUANTILE: f64 = 0.5;
/// The largest quantile below 1 a sketch keeps exactly (and the largest
/// `eval.threshold_quantile` accepts); 1 is the largest training score.
pub const SKETCH_MAX_QUANTILE: f64 = 0.9999;

/// Training scores summarised for thresholds: the exact quantile (linear
/// interpolation between order statistics, as [`crate::quantile`]) at every
/// q = 0.5, 0.5001, …, 0.9999 and at 1 (the largest score). A quantile between two
/// entries is interpolated linearly between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSketch {
    /// Training scores it summarises (NaN scores are left out).
    pub rows: u64,
    /// The scores at q = 0.5 + i · 0.0001, i = 0 … 5000 (the last is the largest);
    /// empty when there was no score.
    pub scores: Vec<f64>,
}

impl ScoreSketch {
    /// Summarises training scores (NaN left out).
    pub fn from_scores(scores: &[f64]) -> Self {
        let mut v: Vec<f64> = scores.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return ScoreSketch {
                rows: 0,
                scores: Vec::new(),
            };
        }
        v.sort_by(f64::total_cmp);
        let grid = (FIRST_STEP..=STEPS_PER_UNIT)
            .map(|step| quantile_sorted(&v, step_quantile(step)))
            .collect();
        ScoreSketch {
            rows: v.len() as u64,
            scores: grid,
        }
    }

    /// The training score at quantile `q` (0.5–1); `None` when the sketch is empty
    /// or `q` is outside 0.5–1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let last = self.scores.len().checked_sub(1)?;
        if !(SKETCH_MIN_QUANTILE..=1.0).contains(&q) {
            return None;
        }
        let pos = q * f64::from(STEPS_PER_UNIT) - f64::from(FIRST_STEP);
        let nearest = pos.round();
        if (pos - nearest).abs() < 1e-6 {
            return self.scores.get((nearest as usize).min(last)).copied();
        }
        let lo = (pos.floor() as usize).min(last);
        let hi = (lo + 1).min(last);
        let (a, b) = (self.scores[lo], self.scores[hi]);
        Some(a + (b - a) * (pos - lo as f64))
    }
}

impl ScoreSketch {
    /// The quantile `q` of grid entry `i`.
    fn grid_quantile(i: usize) -> f64 {
        step_quantile(FIRST_STEP + i as u32)
    }

    /// The share of training rows at or above the score at quantile `q`: the
    /// sketch's quantiles interpolate between order statistics (position
    /// q · (n − 1)), so that share is 1 − q · (n − 1) / n; 1/n at the largest.
    fn share_at(&self, q: f64) -> f64 {
        let n = self.rows.max(1) as f64;
        (1.0 - q * (n - 1.0) / n).max(1.0 / n)
    }

    /// −log10 of the share of training (calibration) scores at or above `score`:
    /// 0 for scores at or below the sketch's lowest entry (the median) and for NaN;
    /// between the median and the largest training score the share read from the
    /// sketch (interpolated linearly between entries), so log10(rows) at the
    /// largest; beyond it an exponential tail (the log10 share linear in the
    /// score) fitted between the 0.99 quantile and the largest score, or with a
    /// slope of 1 per unit of score when the top of the sketch is flat.
    ///
    /// Never decreasing in `score`, always finite (capped at `f64::MAX`); 0 for
    /// an empty sketch. Alert severity reads it at an alert's peak.
    pub fn tail_log10(&self, score: f64) -> f64 {
        let Some(&top) = self.scores.last() else {
            return 0.0;
        };
        if score.is_nan() {
            return 0.0;
        }
        let last = self.scores.len() - 1;
        // The first entry at or above the score.
        let j = self.scores.partition_point(|&s| s < score);
        if j == 0 {
            return 0.0;
        }
        if j <= last {
            let (a, b) = (self.scores[j - 1], self.scores[j]);
            let (qa, qb) = (Self::grid_quantile(j - 1), Self::grid_quantile(j));
            let q = qa + (qb - qa) * ((score - a) / (b - a)).clamp(0.0, 1.0);
            return -self.share_at(q).log10();
        }
        let l_top = -self.share_at(1.0).log10();
        // The reference: the 0.99 quantile, or lower when the top is flat.
        let mut r = last.saturating_sub(100);
        while r > 0 && self.scores[r] >= top {
            r -= 1;
        }
        let slope = if self.scores[r] < top {
            let l_ref = -self.share_at(Self::grid_quantile(r)).log10();
            ((l_top - l_ref) / (top - self.scores[r])).max(f64::MIN_POSITIVE)
        } else {
            1.0
        };
        let v = l_top + slope * (score - top);
        if v.is_finite() {
            v.max(l_top)
        } else {
            f64::MAX
        }
    }
}

/// The quantile of a grid step, computed as a quotient so that grid quantiles are
/// the same `f64` as their decimal literals (`9900 / 10000 == 0.99`).
fn step_quantile(step: u32) -> f64 {
    f64::from(step) / f64::from(STEPS_PER_UNIT)
}

impl CheckedEval {
    /// The operating threshold from a model's training scores, by this
    /// evaluation's rule.
    ///
    /// # Errors
    /// [`Error::NoTrainingScores`] when the sketch holds no score;
    /// [`Error::CalibrationNeeded`] for [`ThresholdRule::TargetFalseAlerts`],
    /// which needs [`threshold_calibrated`](Self::threshold_calibrated).
    pub fn threshold(&self, training: &ScoreSketch) -> Result<Threshold> {
        let rule = self.rule();
        let q = match rule {
            ThresholdRule::TrainingQuantile(q) => q,
            ThresholdRule::TargetAlertRate(r) => 1.0 - r,
            ThresholdRule::TargetFalseAlerts(_) => return Err(Error::CalibrationNeeded),
        };
        let value = training.quantile(q).ok_or(Error::NoTrainingScores)?;
        Ok(Threshold {
            value,
            rule,
            training_rows: training.rows,
        })
    }
}

impl CheckedEval {
    /// The operating threshold, using calibration rows where the rule needs them.
    ///
    /// For [`ThresholdRule::TrainingQuantile`] and
    /// [`ThresholdRule::TargetAlertRate`] this is [`threshold`](Self::threshold).
    /// For [`ThresholdRule::TargetFalseAlerts`]`(t)` it is the lowest of the
    /// sketch's entries (its quantiles from 0.5 to the largest) at which an
    /// [`AlertTracker`](crate::AlertTracker) with `alerts` raises at most
    /// t × device-days alerts over the rows of `calibration` selected by
    /// `select`, found by bisection over the sketch's grid (it assumes fewer
    /// alerts at a higher threshold, and the answer is always one that was
    /// counted). Every alert counts as false: no label is read. When even the
    /// largest entry raises more, the largest is the threshold.
    ///
    /// The calibration rows must be the held-back last slice of the training
    /// span (rows the model was not fitted on), never test rows.
    ///
    /// # Errors
    /// [`Error::NoTrainingScores`] when the sketch holds no score;
    /// [`Error::Misaligned`] when `select` does not have one entry per row.
    pub fn threshold_calibrated(
        &self,
        sketch: &ScoreSketch,
        calibration: &ScoredRows<'_>,
        select: &[bool],
        alerts: &CheckedAlerts,
    ) -> Result<Threshold> {
        let ThresholdRule::TargetFalseAlerts(target) = self.rule() else {
            return self.threshold(sketch);
        };
        if sketch.scores.is_empty() {
            return Err(Error::NoTrainingScores);
        }
        calibration.check()?;
        if select.len() != calibration.timestamps.len() {
            return Err(Error::Misaligned(format!(
                "{} selection flags for {} calibration rows",
                select.len(),
                calibration.timestamps.len()
            )));
        }
        let days = device_days(calibration, &per_device_rows(calibration, select));
        let allowed = target * days;
        let meets = |i: usize| {
            let t = sketch.scores[i];
            build_alerts(calibration, select, t, sketch, alerts, None).len() as f64 <= allowed
        };
        // Invariant: `hi` meets the target (or is the last entry); every entry at
        // or below `lo` was found not to (lo = None: none tried).
        let last = sketch.scores.len() - 1;
        let mut hi = last;
        let mut lo: Option<usize> = None;
        if meets(last) {
            while hi - lo.map_or(0, |l| l + 1) > 0 {
                let from = lo.map_or(0, |l| l + 1);
                let mid = from + (hi - from) / 2;
                if meets(mid) {
                    hi = mid;
                } else {
                    lo = Some(mid);
                }
            }
        }
        Ok(Threshold {
            value: sketch.scores[hi],
            rule: self.rule(),
            training_rows: sketch.rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::EvalParams;
    use itap_telemetry::ParamGuard;

    fn scores(n: usize) -> Vec<f64> {
        // A skewed, unsorted sample.
        (0..n)
            .map(|i| ((i * 7919) % n) as f64)
            .map(|x| x * x / n as f64)
            .collect()
    }

    #[test]
    fn grid_quantiles_are_exact() {
        let s = scores(10_007);
        let sketch = ScoreSketch::from_scores(&s);
        assert_eq!(sketch.rows, 10_007);
        assert_eq!(sketch.scores.len(), 5_001);
        for q in [0.5, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0] {
            assert_eq!(sketch.quantile(q), crate::quantile(&s, q), "q = {q}");
        }
    }

    #[test]
    fn between_grid_points_is_close() {
        let s = scores(100_003);
        let sketch = ScoreSketch::from_scores(&s);
        let exact = crate::quantile(&s, 0.99995).unwrap();
        let got = sketch.quantile(0.99995).unwrap();
        let (lo, hi) = (
            sketch.quantile(0.9999).unwrap(),
            sketch.quantile(1.0).unwrap(),
        );
        assert!(lo <= got && got <= hi, "{lo} ≤ {got} ≤ {hi}");
        assert!((got - exact).abs() <= hi - lo);
    }

    #[test]
    fn empty_and_out_of_range() {
        let empty = ScoreSketch::from_scores(&[f64::NAN]);
        assert_eq!(empty.rows, 0);
        assert_eq!(empty.quantile(0.99), None);
        let sketch = ScoreSketch::from_scores(&scores(100));
        assert_eq!(sketch.quantile(0.4), None);
        assert_eq!(sketch.quantile(1.1), None);
        let eval = EvalParams::default().check().unwrap();
        assert!(matches!(
            eval.threshold(&empty),
            Err(Error::NoTrainingScores)
        ));
    }

    #[test]
    fn the_rule_picks_the_quantile() {
        let s = scores(5_000);
        let sketch = ScoreSketch::from_scores(&s);
        let q = EvalParams::default()
            .threshold_quantile(0.95)
            .check()
            .unwrap();
        let t = q.threshold(&sketch).unwrap();
        assert_eq!(Some(t.value), crate::quantile(&s, 0.95));
        assert_eq!(t.training_rows, 5_000);
        let r = EvalParams::default()
            .target_alert_rate(Some(0.02))
            .check()
            .unwrap();
        assert_eq!(
            Some(r.threshold(&sketch).unwrap().value),
            crate::quantile(&s, 0.98)
        );
    }

    #[test]
    fn tail_log10_is_monotone_finite_and_extrapolates() {
        let s: Vec<f64> = (0..10_000).map(|i| f64::from(i) / 10_000.0).collect();
        let sketch = ScoreSketch::from_scores(&s);
        assert_eq!(sketch.tail_log10(0.2), 0.0, "below the median");
        assert_eq!(sketch.tail_log10(sketch.scores[0]), 0.0, "at the median");
        assert_eq!(sketch.tail_log10(f64::NAN), 0.0);
        // Uniform: the share at or above 0.99 is about 0.01.
        assert!((sketch.tail_log10(0.99) - 2.0).abs() < 0.01);
        let top = sketch.scores[sketch.scores.len() - 1];
        assert!((sketch.tail_log10(top) - 4.0).abs() < 1e-9, "1 in 10 000");
        assert!(sketch.tail_log10(top + 0.01) > 4.0, "beyond the largest");
        let mut last = 0.0;
        for i in 0..=3000 {
            let x = f64::from(i) / 1000.0;
            let v = sketch.tail_log10(x);
            assert!(v.is_finite() && v >= last, "{x}: {v} < {last}");
            last = v;
        }
        assert!(sketch.tail_log10(1e300).is_finite());
        assert!(sketch.tail_log10(f64::INFINITY).is_finite());
        assert_eq!(ScoreSketch::from_scores(&[]).tail_log10(5.0), 0.0);
        // A flat top still grows beyond it.
        let flat = ScoreSketch::from_scores(&[1.0; 100]);
        assert_eq!(flat.tail_log10(1.0), 0.0);
        assert!(flat.tail_log10(2.0) > flat.tail_log10(1.5));
        // Exponential scores: the fitted tail keeps the right slope.
        let e: Vec<f64> = (1..=100_000)
            .map(|i| -(1.0 - f64::from(i) / 100_001.0).ln())
            .collect();
        let sketch = ScoreSketch::from_scores(&e);
        let want = 14.0 / std::f64::consts::LN_10; // share e^-14
        assert!((sketch.tail_log10(14.0) - want).abs() < 0.5);
    }
}
