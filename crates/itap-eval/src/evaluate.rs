//! The evaluation: its types, the threshold from training, and [`evaluate_with`],
//! which selects the rows evaluated, builds the alerts and composes the metric
//! families (row metrics, ROC and PR, the sweep here; breakdowns, events, alerts
//! and the fleet summary in their own modules).

use itap_telemetry::{Batch, State, format_timestamp};
use serde::{Deserialize, Serialize};

use crate::alert_params::{AlertParams, CheckedAlerts};
use crate::error::{Error, Result};
use crate::fleet::DeviceAlerts;
use crate::metrics::{Confusion, CurvePoint, Ranking, quantile, ratio};
use crate::params::{CheckedEval, Split, ThresholdRule};
use crate::parts::EvaluationParts;
use crate::threshold::ScoreSketch;
use crate::tracker::Alert;
use itap_telemetry::ParamGuard;

/// Scored rows, aligned row for row: the keys and labels of a batch and one score
/// per row (higher = more anomalous).
#[derive(Debug, Clone, Copy)]
pub struct ScoredRows<'a> {
    /// UTC microseconds.
    pub timestamps: &'a [i64],
    /// Device codes into `device_names`.
    pub device_codes: &'a [u32],
    /// Device ids.
    pub device_names: &'a [String],
    /// Operating state per row, if known.
    pub states: Option<&'a [State]>,
    /// Ground-truth tag codes into `tag_names` (0 = normal), if known.
    pub tag_codes: Option<&'a [u32]>,
    /// Tag dictionary; entry 0 is "".
    pub tag_names: &'a [String],
    /// One score per row.
    pub scores: &'a [f64],
}

impl<'a> ScoredRows<'a> {
    /// The rows of `batch` with `scores`.
    ///
    /// # Errors
    /// [`Error::Misaligned`] when there is not one score per row.
    pub fn from_batch(batch: &'a Batch, scores: &'a [f64]) -> Result<Self> {
        if scores.len() != batch.len() {
            return Err(Error::Misaligned(format!(
                "{} scores for {} rows",
                scores.len(),
                batch.len()
            )));
        }
        Ok(ScoredRows {
            timestamps: batch.timestamps(),
            device_codes: batch.device_codes(),
            device_names: batch.device_names(),
            states: batch.states(),
            tag_codes: batch.tag_codes(),
            tag_names: batch.tag_names(),
            scores,
        })
    }

    pub(crate) fn check(&self) -> Result<()> {
        let n = self.timestamps.len();
        let lens = [
            ("device_codes", Some(self.device_codes.len())),
            ("states", self.states.map(<[State]>::len)),
            ("tag_codes", self.tag_codes.map(<[u32]>::len)),
            ("scores", Some(self.scores.len())),
        ];
        for (name, len) in lens {
            if let Some(l) = len.filter(|&l| l != n) {
                return Err(Error::Misaligned(format!(
                    "{name} has {l} rows, timestamps {n}"
                )));
            }
        }
        Ok(())
    }
}

/// Per-row contributions, for the family and feature shares of alerts.
pub struct Attribution<'a> {
    /// How contributions are computed, in words (for the report).
    pub method: String,
    /// Feature names, in the order of the contribution vectors.
    pub features: &'a [String],
    /// Each feature's signal family (same order).
    pub families: &'a [String],
    /// The contributions of row `r` (same order), any sign; shares use magnitudes.
    pub contributions: &'a dyn Fn(usize) -> Vec<f64>,
}

impl std::fmt::Debug for Attribution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attribution")
            .field("method", &self.method)
            .field("features", &self.features.len())
            .finish_non_exhaustive()
    }
}

/// The operating threshold and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Rows scoring above this are flagged.
    pub value: f64,
    /// The rule that set it.
    pub rule: ThresholdRule,
    /// Training rows whose scores it was computed from.
    pub training_rows: u64,
}

/// The operating threshold from training scores only.
///
/// # Errors
/// [`Error::InvalidParam`] naming `threshold` when there is no finite training
/// score; [`Error::CalibrationNeeded`] for
/// [`ThresholdRule::TargetFalseAlerts`] (see
/// [`CheckedEval::threshold_calibrated`]).
pub fn threshold_from_training(train_scores: &[f64], rule: ThresholdRule) -> Result<Threshold> {
    let q = match rule {
        ThresholdRule::TrainingQuantile(q) => q,
        ThresholdRule::TargetAlertRate(r) => 1.0 - r,
        ThresholdRule::TargetFalseAlerts(_) => return Err(Error::CalibrationNeeded),
    };
    let value = quantile(train_scores, q)
        .ok_or_else(|| Error::param("threshold", "no training score to set the threshold from"))?;
    Ok(Threshold {
        value,
        rule,
        training_rows: train_scores.iter().filter(|s| !s.is_nan()).count() as u64,
    })
}

/// Metrics at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointMetrics {
    /// Counts.
    pub confusion: Confusion,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Share of evaluated rows flagged.
    pub alert_rate: f64,
}

impl PointMetrics {
    pub(crate) fn new(c: Confusion) -> Self {
        let n = c.tp + c.fp + c.fn_ + c.tn;
        PointMetrics {
            confusion: c,
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            alert_rate: ratio(c.tp + c.fp, n),
        }
    }
}

/// Recall and event figures for one fault kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultMetrics {
    /// The tag.
    pub tag: String,
    /// Evaluated rows with this tag.
    pub rows: u64,
    /// Of those, flagged.
    pub flagged: u64,
    /// flagged / rows.
    pub recall: f64,
    /// Ground-truth events of this kind.
    pub events: u64,
    /// Events detected (an alert overlapping it or its grace period).
    pub detected: u64,
    /// detected / events.
    pub event_recall: f64,
    /// Median delay from event start to the first detecting alert's start,
    /// seconds (detected events; 0 when that alert started earlier).
    pub delay_median_s: Option<f64>,
    /// 90th percentile of that delay, seconds.
    pub delay_p90_s: Option<f64>,
}

/// A breakdown row (per device or per state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Device id or state.
    pub key: String,
    /// Evaluated rows.
    pub rows: u64,
    /// Faulty rows among them.
    pub faulty: u64,
    /// Flagged rows among them.
    pub flagged: u64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// ROC-AUC within this group, when it has both classes.
    pub roc_auc: Option<f64>,
}

/// One point of the diagnostic sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Percentile of the test scores used as a threshold.
    pub percentile: f64,
    /// That threshold.
    pub threshold: f64,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// The diagnostic sweep over test-score percentiles. It looks at test labels, so it
/// is not an operating point: it shows how the trade-off moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// What this is, in words.
    pub note: String,
    /// The points.
    pub points: Vec<SweepPoint>,
}

/// Event- and alert-level figures, as an operator sees them. Alerts are the
/// [`AlertTracker`](crate::AlertTracker)'s; see docs/alerts.md for the exact
/// definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetrics {
    /// Ground-truth events in the evaluated span (runs of one device's evaluated
    /// rows with one fault tag).
    pub events: u64,
    /// Of those, detected: an alert of the device overlaps the event's detection
    /// window (from its start to its end, and at least `grace_s` after its start).
    pub detected: u64,
    /// detected / events (0 without events).
    pub event_recall: f64,
    /// Median detection delay, seconds: the first detecting alert's start minus
    /// the event's start, 0 when the alert was already open at the event's start.
    pub delay_median_s: Option<f64>,
    /// 90th percentile detection delay, seconds.
    pub delay_p90_s: Option<f64>,
    /// Alerts raised over the evaluated rows.
    pub alerts: u64,
    /// Alerts overlapping some event's detection window of their device.
    pub true_alerts: u64,
    /// alerts − true_alerts.
    pub false_alerts: u64,
    /// true_alerts / alerts; none without alerts or without labels.
    pub alert_precision: Option<f64>,
    /// Evaluated device-days (each device's first to last evaluated row, summed).
    pub device_days: f64,
    /// alerts / device_days (0 when no device-day).
    pub alerts_per_device_day: f64,
    /// false_alerts / device_days, counted as alerts, not rows.
    pub false_alerts_per_device_day: f64,
    /// Grace period after an event's start, seconds.
    pub grace_s: f64,
}

/// A feature's or family's share (of an alert's contributions, or of a device's
/// alerts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Feature or family name.
    pub name: String,
    /// Share of the magnitude of all contributions, 0–1.
    pub share: f64,
}

/// Everything the evaluation found. Serialized into metrics.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The split.
    pub split: SplitInfo,
    /// The operating threshold.
    pub threshold: Threshold,
    /// Rows scored in all.
    pub rows_total: u64,
    /// Rows in the training span.
    pub rows_train: u64,
    /// Rows evaluated: after the cut and in an evaluated state.
    pub rows_evaluated: u64,
    /// Faulty rows among the evaluated ones.
    pub rows_faulty: u64,
    /// The states evaluated, or `all` when the data has no state column.
    pub eval_states: Vec<String>,
    /// Whether the data carried ground truth (without it only alert counts exist).
    pub labelled: bool,
    /// Metrics at the operating threshold.
    pub at_threshold: PointMetrics,
    /// ROC-AUC over the evaluated rows.
    pub roc_auc: Option<f64>,
    /// Average precision (PR-AUC) over the evaluated rows.
    pub pr_auc: Option<f64>,
    /// Per fault kind.
    pub per_fault: Vec<FaultMetrics>,
    /// Per device.
    pub per_device: Vec<Breakdown>,
    /// Per state.
    pub per_state: Vec<Breakdown>,
    /// Event-level figures.
    pub events: EventMetrics,
    /// The diagnostic sweep.
    pub sweep: Sweep,
    /// How alert contributions were computed, if they were.
    pub attribution_method: Option<String>,
    /// The `top_n` alerts with the highest peak scores.
    pub top_alerts: Vec<Alert>,
    /// Per evaluated device (those without alerts too), by device id.
    pub fleet: Vec<DeviceAlerts>,
    /// ROC curve points (for the report).
    pub roc_curve: Vec<CurvePoint>,
    /// PR curve points (for the report).
    pub pr_curve: Vec<CurvePoint>,
}

/// The split, written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// First timestamp, RFC 3339.
    pub first: String,
    /// Training is before this, evaluation from it, RFC 3339.
    pub cut: String,
    /// Last timestamp, RFC 3339.
    pub last: String,
    /// The training fraction, when the cut came from one.
    pub train_fraction: Option<f64>,
}

/// The rows evaluated, a flag per row: at or after the cut, in an evaluated
/// state.
pub(crate) fn evaluated_rows(rows: &ScoredRows<'_>, split: &Split, states: &[State]) -> Vec<bool> {
    (0..rows.timestamps.len())
        .map(|r| {
            !split.is_train(rows.timestamps[r])
                && rows.states.is_none_or(|s| states.contains(&s[r]))
        })
        .collect()
}

/// What [`evaluate_with`] needs besides the rows.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// The split.
    pub split: &'a Split,
    /// The operating threshold.
    pub threshold: Threshold,
    /// The `[eval]` settings.
    pub params: &'a CheckedEval,
    /// The `[alerts]` settings.
    pub alerts: &'a CheckedAlerts,
    /// Calibration (training) scores, for alert severity.
    pub calibration: &'a ScoreSketch,
    /// Per-row contributions, for the alerts' family and feature shares.
    pub attribution: Option<&'a Attribution<'a>>,
}

/// An evaluation and the alerts it measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// Everything measured (metrics.json).
    pub evaluation: Evaluation,
    /// Every alert over the evaluated rows, by start then device, `fault` filled
    /// from the labels (alerts.json).
    pub alerts: Vec<Alert>,
}

/// Evaluates scored rows against the split and the threshold, and builds the
/// alerts over the evaluated rows.
///
/// The rows evaluated are those at or after the cut whose state is one of the
/// configured states (every row after the cut when there is no state column). An
/// [`AlertTracker`](crate::AlertTracker) runs over them (in time order per
/// device); each alert's `fault` is the tag of the labelled event it overlaps
/// most, and its route is decided again with it. Labels (tags) are used only to
/// measure, never to choose anything.
///
/// # Errors
/// [`Error::Misaligned`] when the inputs do not line up.
pub fn evaluate_with(rows: &ScoredRows<'_>, ctx: &EvalContext<'_>) -> Result<Evaluated> {
    let mut parts = EvaluationParts::new();
    parts.add(rows, ctx)?;
    parts.finish(ctx)
}

/// [`evaluate_with`] with the default `[alerts]` settings and, for severity, a
/// sketch of the scores of `rows` in the training span; returns the evaluation
/// only.
///
/// # Errors
/// [`Error::Misaligned`] when the inputs do not line up.
pub fn evaluate(
    rows: &ScoredRows<'_>,
    split: &Split,
    threshold: Threshold,
    params: &CheckedEval,
    attribution: Option<&Attribution<'_>>,
) -> Result<Evaluation> {
    rows.check()?;
    let train: Vec<f64> = rows
        .timestamps
        .iter()
        .zip(rows.scores)
        .filter(|(t, _)| split.is_train(**t))
        .map(|(_, s)| *s)
        .collect();
    let sketch = ScoreSketch::from_scores(&train);
    let alerts = AlertParams::default().check()?;
    let ctx = EvalContext {
        split,
        threshold,
        params,
        alerts: &alerts,
        calibration: &sketch,
        attribution,
    };
    Ok(evaluate_with(rows, &ctx)?.evaluation)
}

pub(crate) fn split_info(split: &Split) -> SplitInfo {
    SplitInfo {
        first: format_timestamp(split.first_us),
        cut: format_timestamp(split.cut_us),
        last: format_timestamp(split.last_us),
        train_fraction: split.fraction,
    }
}

/// The diagnostic sweep: precision and recall at percentiles of the test
/// scores (`ranked` with their labels).
pub(crate) fn sweep(ranked: &Ranking, percentiles: &[f64]) -> Sweep {
    let points = percentiles
        .iter()
        .map_while(|&pc| {
            let t = ranked.quantile(pc / 100.0)?;
            let c = ranked.confusion_above(t);
            Some(SweepPoint {
                percentile: pc,
                threshold: t,
                precision: c.precision(),
                recall: c.recall(),
                f1: c.f1(),
            })
        })
        .collect();
    Sweep {
        note: "diagnostic only: each threshold is a percentile of the test scores and \
               its precision/recall use the test labels; the operating threshold above \
               comes from the training span"
            .to_owned(),
        points,
    }
}
