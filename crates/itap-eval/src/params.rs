//! Evaluation parameters and the time-based split.

use itap_telemetry::{ParamGuard, State, TimeZone, format_timestamp, parse_timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::threshold::{SKETCH_MAX_QUANTILE, SKETCH_MIN_QUANTILE};

/// Where the operating threshold comes from. All read only training (calibration)
/// scores, never test rows or labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The given quantile of the training span's scores (default 0.95).
    TrainingQuantile(f64),
    /// The score above which the given share of training rows would alert.
    TargetAlertRate(f64),
    /// The lowest sketch quantile at which the alert tracker raises at most this
    /// many alerts per device-day on the calibration rows
    /// ([`CheckedEval::threshold_calibrated`]).
    TargetFalseAlerts(f64),
}

/// Evaluation settings: the `[eval]` config section.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `train_fraction` | 0.7 | share of the time span used for training | 0 < f < 1 |
/// | `train_until` | none | RFC 3339 cut; overrides `train_fraction` | inside the data |
/// | `states` | RUN, IDLE | states of the rows evaluated (all rows when the data has no state) | ≥ 1 |
/// | `threshold_quantile` | 0.95 | operating threshold: this quantile of training scores (the `[alerts]` opening rules then decide what pages) | 0.5–0.9999 |
/// | `target_alert_rate` | none | alternatively: the share of training rows allowed to alert | 0.0001–0.5 |
/// | `target_false_alerts_per_device_day` | none | alternatively: alerts per device-day allowed on the calibration rows (not with `target_alert_rate`) | 0.01–100 |
/// | `grace_seconds` | 300 | an alert overlapping this long after an event's start still detects it | ≥ 0 |
/// | `top_n` | 10 | alerts listed in metrics.json (highest peaks) | 0–1000 |
/// | `sweep_percentiles` | 50 … 99.9 | diagnostic sweep over test-score percentiles | 0–100 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalParams {
    /// Share of the time span used for training.
    pub train_fraction: f64,
    /// RFC 3339 cut; overrides `train_fraction`.
    pub train_until: Option<String>,
    /// States evaluated.
    pub states: Vec<State>,
    /// Quantile of training scores used as the threshold.
    pub threshold_quantile: f64,
    /// Target share of training rows alerting; overrides `threshold_quantile`.
    pub target_alert_rate: Option<f64>,
    /// Target alerts per device-day on the calibration rows; overrides
    /// `threshold_quantile`.
    pub target_false_alerts_per_device_day: Option<f64>,
    /// Grace period after an event's start, seconds.
    pub grace_seconds: f64,
    /// Alerts listed in detail.
    pub top_n: usize,
    /// Percentiles of the test scores for the diagnostic sweep.
    pub sweep_percentiles: Vec<f64>,
}

impl Default for EvalParams {
    fn default() -> Self {
        EvalParams {
            train_fraction: 0.7,
            train_until: None,
            states: vec![State::Run, State::Idle],
            threshold_quantile: 0.95,
            target_alert_rate: None,
            target_false_alerts_per_device_day: None,
            grace_seconds: 300.0,
            top_n: 10,
            sweep_percentiles: vec![
                50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.5, 99.0, 99.5, 99.9,
            ],
        }
    }
}

impl EvalParams {
    /// Sets the training fraction.
    pub fn train_fraction(mut self, f: f64) -> Self {
        self.train_fraction = f;
        self
    }

    /// Sets an explicit cut (RFC 3339).
    pub fn train_until(mut self, t: Option<String>) -> Self {
        self.train_until = t;
        self
    }

    /// Sets the threshold quantile.
    pub fn threshold_quantile(mut self, q: f64) -> Self {
        self.threshold_quantile = q;
        self
    }

    /// Sets a target alert rate instead of a quantile.
    pub fn target_alert_rate(mut self, r: Option<f64>) -> Self {
        self.target_alert_rate = r;
        self
    }

    /// Sets a target of alerts per device-day on calibration rows instead of a
    /// quantile.
    pub fn target_false_alerts_per_device_day(mut self, r: Option<f64>) -> Self {
        self.target_false_alerts_per_device_day = r;
        self
    }

    /// Sets the grace period.
    pub fn grace_seconds(mut self, s: f64) -> Self {
        self.grace_seconds = s;
        self
    }

    /// Sets the evaluated states.
    pub fn states(mut self, states: Vec<State>) -> Self {
        self.states = states;
        self
    }

    /// Checks every parameter; the cut and the threshold rule they give.
    fn resolve(&self) -> Result<(Option<i64>, ThresholdRule)> {
        let p = self;
        if !(p.train_fraction > 0.0 && p.train_fraction < 1.0) {
            return Err(Error::param(
                "train_fraction",
                format!(
                    "must be between 0 and 1 (exclusive), got {}",
                    p.train_fraction
                ),
            ));
        }
        let until = p
            .train_until
            .as_deref()
            .map(|t| {
                parse_timestamp(t, TimeZone::UTC)
                    .map_err(|e| Error::param("train_until", e.to_string()))
            })
            .transpose()?;
        if p.states.is_empty() {
            return Err(Error::param("states", "name at least one state"));
        }
        // The model keeps its training scores as a sketch from the 0.5 to the
        // 0.9999 quantile (and the largest); a threshold beyond it would be the
        // largest training score, which no later data can be judged against.
        if !(SKETCH_MIN_QUANTILE..=SKETCH_MAX_QUANTILE).contains(&p.threshold_quantile) {
            return Err(Error::param(
                "threshold_quantile",
                format!(
                    "must be between {SKETCH_MIN_QUANTILE} and {SKETCH_MAX_QUANTILE}, got {}",
                    p.threshold_quantile
                ),
            ));
        }
        let min_rate = 1.0 - SKETCH_MAX_QUANTILE;
        let rule = match (p.target_alert_rate, p.target_false_alerts_per_device_day) {
            (Some(_), Some(_)) => {
                return Err(Error::param(
                    "target_false_alerts_per_device_day",
                    "give either `target_alert_rate` or `target_false_alerts_per_device_day`, not both",
                ));
            }
            (Some(r), None) if (min_rate - 1e-12..=0.5).contains(&r) => {
                ThresholdRule::TargetAlertRate(r)
            }
            (Some(r), None) => {
                return Err(Error::param(
                    "target_alert_rate",
                    format!("must be between 0.0001 and 0.5, got {r}"),
                ));
            }
            (None, Some(f)) if (0.01..=100.0).contains(&f) => ThresholdRule::TargetFalseAlerts(f),
            (None, Some(f)) => {
                return Err(Error::param(
                    "target_false_alerts_per_device_day",
                    format!("must be between 0.01 and 100, got {f}"),
                ));
            }
            (None, None) => ThresholdRule::TrainingQuantile(p.threshold_quantile),
        };
        if !(p.grace_seconds.is_finite() && p.grace_seconds >= 0.0) {
            return Err(Error::param(
                "grace_seconds",
                format!("must be a number ≥ 0, got {}", p.grace_seconds),
            ));
        }
        if p.top_n > 1000 {
            return Err(Error::param("top_n", "must be at most 1000"));
        }
        if p.sweep_percentiles
            .iter()
            .any(|q| !(0.0..=100.0).contains(q))
        {
            return Err(Error::param(
                "sweep_percentiles",
                "every percentile must be between 0 and 100",
            ));
        }
        Ok((until, rule))
    }
}

impl ParamGuard for EvalParams {
    type Checked = CheckedEval;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first parameter out of range.
    fn check(self) -> Result<CheckedEval> {
        let (until, rule) = self.resolve()?;
        Ok(CheckedEval {
            params: self,
            until,
            rule,
        })
    }
}

/// Evaluation parameters that passed [`EvalParams`]' [`check`](ParamGuard::check).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEval {
    params: EvalParams,
    until: Option<i64>,
    rule: ThresholdRule,
}

impl CheckedEval {
    /// The parameters as given.
    pub fn params(&self) -> &EvalParams {
        &self.params
    }

    /// The threshold rule.
    pub fn rule(&self) -> ThresholdRule {
        self.rule
    }

    /// The split of a data set spanning `first_us ..= last_us`: training is every row
    /// with `ts < cut`.
    ///
    /// # Errors
    /// [`Error::EmptySplit`] when the cut leaves one side empty.
    pub fn split(&self, first_us: i64, last_us: i64) -> Result<Split> {
        let cut = match self.until {
            Some(t) => t,
            None => {
                first_us + ((last_us - first_us) as f64 * self.params.train_fraction).round() as i64
            }
        };
        let split = Split {
            first_us,
            last_us,
            cut_us: cut,
            fraction: self
                .until
                .map_or(Some(self.params.train_fraction), |_| None),
        };
        if cut <= first_us {
            return Err(Error::EmptySplit {
                cut: format_timestamp(cut),
                side: "training",
            });
        }
        if cut > last_us {
            return Err(Error::EmptySplit {
                cut: format_timestamp(cut),
                side: "evaluation",
            });
        }
        Ok(split)
    }
}

/// A time-based split: one definition shared by training and scoring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Earliest timestamp of the data, UTC µs.
    pub first_us: i64,
    /// Latest timestamp of the data, UTC µs.
    pub last_us: i64,
    /// Training is `ts < cut_us`; evaluation `ts >= cut_us`.
    pub cut_us: i64,
    /// The training fraction, when the cut came from one.
    #[serde(skip)]
    pub fraction: Option<f64>,
}

impl Split {
    /// Whether a row at `ts` is in the training span.
    pub fn is_train(&self, ts: i64) -> bool {
        ts < self.cut_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_by_fraction_and_by_time() {
        let p = EvalParams::default().check().unwrap();
        let s = p.split(0, 1000).unwrap();
        assert_eq!(s.cut_us, 700);
        assert!(s.is_train(699) && !s.is_train(700));
        let p = EvalParams::default()
            .train_until(Some("1970-01-01T00:00:00.000500Z".into()))
            .check()
            .unwrap();
        assert_eq!(p.split(0, 1000).unwrap().cut_us, 500);
        assert!(p.split(600, 1000).is_err(), "nothing to train on");
        assert!(p.split(0, 400).is_err(), "nothing to evaluate");
    }

    #[test]
    fn bad_params_are_named() {
        let e = |p: EvalParams| {
            assert!(p.check_ref().is_err());
            match p.check().unwrap_err() {
                Error::InvalidParam(e) => e.name,
                other => panic!("{other}"),
            }
        };
        let d = EvalParams::default;
        assert_eq!(e(d().train_fraction(1.0)), "train_fraction");
        assert_eq!(e(d().threshold_quantile(0.2)), "threshold_quantile");
        assert_eq!(e(d().target_alert_rate(Some(0.9))), "target_alert_rate");
        assert_eq!(e(d().states(vec![])), "states");
        assert_eq!(e(d().train_until(Some("soon".into()))), "train_until");
        assert!(d().check_ref().is_ok());
        // Thresholds no training-score sketch can honour are refused here, not at
        // scoring.
        assert_eq!(e(d().threshold_quantile(1.0)), "threshold_quantile");
        assert_eq!(e(d().target_alert_rate(Some(0.0))), "target_alert_rate");
        assert!(d().threshold_quantile(0.9999).check().is_ok());
        assert!(d().target_alert_rate(Some(0.0001)).check().is_ok());
        let f = |v| d().target_false_alerts_per_device_day(Some(v));
        assert_eq!(e(f(0.0)), "target_false_alerts_per_device_day");
        assert_eq!(e(f(1000.0)), "target_false_alerts_per_device_day");
        assert_eq!(
            e(f(2.0).target_alert_rate(Some(0.01))),
            "target_false_alerts_per_device_day",
            "mutually exclusive"
        );
        assert_eq!(
            f(2.0).check().unwrap().rule(),
            ThresholdRule::TargetFalseAlerts(2.0)
        );
        assert_eq!(e(d().grace_seconds(-1.0)), "grace_seconds");
    }
}
