//! The evaluation: threshold from training, metrics, breakdowns, events, top alerts.

use std::collections::BTreeMap;

use itap_telemetry::{Batch, State, format_timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::{Confusion, CurvePoint, average_precision, curves, quantile, ratio, roc_auc};
use crate::params::{CheckedEval, Split, ThresholdRule};

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

    fn check(&self) -> Result<()> {
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

    fn is_fault(&self, r: usize) -> bool {
        self.tag_codes.is_some_and(|t| t[r] != 0)
    }

    fn tag(&self, r: usize) -> Option<&'a str> {
        let code = *self.tag_codes?.get(r)?;
        (code != 0).then(|| self.tag_names[code as usize].as_str())
    }
}

/// Per-row contributions for the alerts listed in detail.
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
/// [`Error::EmptySplit`]-like [`Error::InvalidParam`] when there is no finite
/// training score.
pub fn threshold_from_training(train_scores: &[f64], rule: ThresholdRule) -> Result<Threshold> {
    let q = match rule {
        ThresholdRule::TrainingQuantile(q) => q,
        ThresholdRule::TargetAlertRate(r) => 1.0 - r,
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
    fn new(c: Confusion) -> Self {
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
    /// Events detected (an alert overlapping, or within the grace period).
    pub detected: u64,
    /// detected / events.
    pub event_recall: f64,
    /// Median delay from event start to first alert, seconds (detected events).
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

/// Event-level figures, as an operator sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetrics {
    /// Ground-truth events in the evaluated span.
    pub events: u64,
    /// Of those, detected.
    pub detected: u64,
    /// detected / events.
    pub event_recall: f64,
    /// Median detection delay, seconds.
    pub delay_median_s: Option<f64>,
    /// 90th percentile detection delay, seconds.
    pub delay_p90_s: Option<f64>,
    /// Alerts raised (runs of flagged rows per device, short gaps merged).
    pub alerts: u64,
    /// Alerts overlapping no event (nor its grace period).
    pub false_alerts: u64,
    /// Evaluated device-days.
    pub device_days: f64,
    /// false_alerts / device_days.
    pub false_alerts_per_device_day: f64,
    /// Gap merged within one alert, seconds.
    pub alert_gap_s: f64,
    /// Grace period after an event's start, seconds.
    pub grace_s: f64,
}

/// A feature's or family's share of an alert's peak contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// Feature or family name.
    pub name: String,
    /// Share of the magnitude of all contributions, 0–1.
    pub share: f64,
}

/// One alert in detail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDetail {
    /// Device id.
    pub device: String,
    /// First flagged row, RFC 3339.
    pub start: String,
    /// Last flagged row, RFC 3339.
    pub end: String,
    /// Flagged rows in the alert.
    pub rows: u64,
    /// Highest score in the alert.
    pub peak_score: f64,
    /// When the peak happened, RFC 3339.
    pub peak_at: String,
    /// The fault tag most rows of the alert's span carry, if any.
    pub fault_tag: Option<String>,
    /// Top features at the peak.
    pub top_features: Vec<Share>,
    /// Signal families at the peak.
    pub top_families: Vec<Share>,
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
    /// The alerts with the highest peaks.
    pub top_alerts: Vec<AlertDetail>,
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

/// A run of rows of one device: an event (same tag) or an alert (flagged rows).
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) device: u32,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) rows: Vec<usize>,
    pub(crate) tag: u32,
}

/// The evaluated rows of each device, in time order.
fn per_device_rows(rows: &ScoredRows<'_>, keep: &[bool]) -> BTreeMap<u32, Vec<usize>> {
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (r, &k) in keep.iter().enumerate() {
        if k {
            by.entry(rows.device_codes[r]).or_default().push(r);
        }
    }
    for v in by.values_mut() {
        v.sort_by_key(|&r| rows.timestamps[r]);
    }
    by
}

/// Ground-truth events: maximal runs of one device's evaluated rows with one tag.
pub(crate) fn events(rows: &ScoredRows<'_>, by_device: &BTreeMap<u32, Vec<usize>>) -> Vec<Span> {
    let Some(tags) = rows.tag_codes else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (&d, list) in by_device {
        let mut cur: Option<Span> = None;
        for &r in list {
            let t = tags[r];
            match &mut cur {
                Some(s) if s.tag == t => {
                    s.end = rows.timestamps[r];
                    s.rows.push(r);
                }
                _ => {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                    if t != 0 {
                        cur = Some(Span {
                            device: d,
                            start: rows.timestamps[r],
                            end: rows.timestamps[r],
                            rows: vec![r],
                            tag: t,
                        });
                    }
                }
            }
        }
        if let Some(s) = cur {
            out.push(s);
        }
    }
    out
}

/// Alerts: runs of one device's flagged rows, merged across gaps up to `gap_us`.
pub(crate) fn alerts(
    rows: &ScoredRows<'_>,
    by_device: &BTreeMap<u32, Vec<usize>>,
    threshold: f64,
    gap_us: i64,
) -> Vec<Span> {
    let mut out = Vec::new();
    for (&d, list) in by_device {
        let mut cur: Option<Span> = None;
        for &r in list.iter().filter(|&&r| rows.scores[r] > threshold) {
            let ts = rows.timestamps[r];
            match &mut cur {
                Some(s) if ts - s.end <= gap_us => {
                    s.end = ts;
                    s.rows.push(r);
                }
                _ => {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                    cur = Some(Span {
                        device: d,
                        start: ts,
                        end: ts,
                        rows: vec![r],
                        tag: 0,
                    });
                }
            }
        }
        if let Some(s) = cur {
            out.push(s);
        }
    }
    out
}

/// Evaluates scored rows against the split and the threshold.
///
/// The rows evaluated are those at or after the cut whose state is one of the
/// configured states (every row after the cut when there is no state column).
/// Labels (tags) are used only to measure, never to choose anything.
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
    let p = params.params();
    let n = rows.timestamps.len();
    let keep: Vec<bool> = (0..n)
        .map(|r| {
            !split.is_train(rows.timestamps[r])
                && rows.states.is_none_or(|s| p.states.contains(&s[r]))
        })
        .collect();
    let rows_train = rows
        .timestamps
        .iter()
        .filter(|&&t| split.is_train(t))
        .count() as u64;
    let eval_idx: Vec<usize> = (0..n).filter(|&r| keep[r]).collect();
    let scores: Vec<f64> = eval_idx.iter().map(|&r| rows.scores[r]).collect();
    let labels: Vec<bool> = eval_idx.iter().map(|&r| rows.is_fault(r)).collect();
    let flagged: Vec<bool> = scores.iter().map(|&s| s > threshold.value).collect();
    let labelled = rows.tag_codes.is_some();

    let at_threshold = PointMetrics::new(Confusion::count(
        flagged.iter().copied(),
        labels.iter().copied(),
    ));
    let (roc_curve, pr_curve) = curves(&scores, &labels, 200);

    // Breakdowns.
    let breakdown = |key: String, members: &[usize]| {
        let s: Vec<f64> = members.iter().map(|&i| scores[i]).collect();
        let l: Vec<bool> = members.iter().map(|&i| labels[i]).collect();
        let c = Confusion::count(members.iter().map(|&i| flagged[i]), l.iter().copied());
        Breakdown {
            key,
            rows: members.len() as u64,
            faulty: l.iter().filter(|&&x| x).count() as u64,
            flagged: c.tp + c.fp,
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            roc_auc: roc_auc(&s, &l),
        }
    };
    let mut by_dev: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_state: BTreeMap<State, Vec<usize>> = BTreeMap::new();
    for (i, &r) in eval_idx.iter().enumerate() {
        by_dev
            .entry(rows.device_names[rows.device_codes[r] as usize].as_str())
            .or_default()
            .push(i);
        if let Some(s) = rows.states {
            by_state.entry(s[r]).or_default().push(i);
        }
    }
    let per_device = by_dev
        .iter()
        .map(|(d, m)| breakdown((*d).to_owned(), m))
        .collect();
    let per_state = by_state
        .iter()
        .map(|(s, m)| breakdown(s.as_str().to_owned(), m))
        .collect();

    // Events and alerts.
    let by_device = per_device_rows(rows, &keep);
    let evs = events(rows, &by_device);
    let gap_us = (p.alert_gap_seconds * 1e6) as i64;
    let grace_us = (p.grace_seconds * 1e6) as i64;
    let als = alerts(rows, &by_device, threshold.value, gap_us);
    let window = |e: &Span| (e.start, e.end.max(e.start + grace_us));
    let overlaps = |a: &Span, (ws, we): (i64, i64)| a.start <= we && a.end >= ws;
    let mut delays_by_tag: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut events_by_tag: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut all_delays = Vec::new();
    for e in &evs {
        let w = window(e);
        let first = als
            .iter()
            .filter(|a| a.device == e.device && overlaps(a, w))
            .map(|a| a.start)
            .min();
        let entry = events_by_tag.entry(e.tag).or_default();
        entry.0 += 1;
        if let Some(start) = first {
            entry.1 += 1;
            let d = (start - e.start).max(0) as f64 / 1e6;
            delays_by_tag.entry(e.tag).or_default().push(d);
            all_delays.push(d);
        }
    }
    let false_alerts = als
        .iter()
        .filter(|a| {
            !evs.iter()
                .any(|e| e.device == a.device && overlaps(a, window(e)))
        })
        .count() as u64;
    let device_days: f64 = by_device
        .values()
        .map(|list| {
            let (a, b) = (
                rows.timestamps[list[0]],
                rows.timestamps[list[list.len() - 1]],
            );
            (b - a) as f64 / 86_400e6
        })
        .sum();
    let detected = events_by_tag.values().map(|v| v.1).sum::<u64>();
    let events = EventMetrics {
        events: evs.len() as u64,
        detected,
        event_recall: ratio(detected, evs.len() as u64),
        delay_median_s: quantile(&all_delays, 0.5),
        delay_p90_s: quantile(&all_delays, 0.9),
        alerts: als.len() as u64,
        false_alerts,
        device_days,
        false_alerts_per_device_day: if device_days > 0.0 {
            false_alerts as f64 / device_days
        } else {
            0.0
        },
        alert_gap_s: p.alert_gap_seconds,
        grace_s: p.grace_seconds,
    };

    // Per fault kind: rows aligned with their own scores.
    let mut per_fault = Vec::new();
    if let Some(tags) = rows.tag_codes {
        let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (i, &r) in eval_idx.iter().enumerate() {
            if tags[r] != 0 {
                let c = counts.entry(tags[r]).or_default();
                c.0 += 1;
                c.1 += u64::from(flagged[i]);
            }
        }
        let mut codes: Vec<u32> = counts.keys().chain(events_by_tag.keys()).copied().collect();
        codes.sort_unstable();
        codes.dedup();
        for code in codes {
            let (rows_k, flagged_k) = counts.get(&code).copied().unwrap_or_default();
            let (ev, det) = events_by_tag.get(&code).copied().unwrap_or_default();
            let delays = delays_by_tag.get(&code).map(Vec::as_slice).unwrap_or(&[]);
            per_fault.push(FaultMetrics {
                tag: rows.tag_names[code as usize].clone(),
                rows: rows_k,
                flagged: flagged_k,
                recall: ratio(flagged_k, rows_k),
                events: ev,
                detected: det,
                event_recall: ratio(det, ev),
                delay_median_s: quantile(delays, 0.5),
                delay_p90_s: quantile(delays, 0.9),
            });
        }
        per_fault.sort_by(|a, b| a.tag.cmp(&b.tag));
    }

    // The diagnostic sweep.
    let mut sorted = scores.clone();
    sorted.retain(|s| !s.is_nan());
    sorted.sort_by(f64::total_cmp);
    let sweep_points = if sorted.is_empty() {
        Vec::new()
    } else {
        p.sweep_percentiles
            .iter()
            .map(|&pc| {
                let t = crate::metrics::quantile_sorted(&sorted, pc / 100.0);
                let c = Confusion::count(scores.iter().map(|&s| s > t), labels.iter().copied());
                SweepPoint {
                    percentile: pc,
                    threshold: t,
                    precision: c.precision(),
                    recall: c.recall(),
                    f1: c.f1(),
                }
            })
            .collect()
    };

    // Top alerts.
    let mut ranked: Vec<(f64, usize)> = als
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let peak = a
                .rows
                .iter()
                .map(|&r| rows.scores[r])
                .fold(f64::NEG_INFINITY, f64::max);
            (peak, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let top_alerts = ranked
        .iter()
        .take(p.top_n)
        .map(|&(peak, i)| alert_detail(rows, &als[i], peak, &by_device, attribution))
        .collect();

    let eval_states = if rows.states.is_some() {
        p.states.iter().map(|s| s.as_str().to_owned()).collect()
    } else {
        vec!["all".to_owned()]
    };
    Ok(Evaluation {
        split: SplitInfo {
            first: format_timestamp(split.first_us),
            cut: format_timestamp(split.cut_us),
            last: format_timestamp(split.last_us),
            train_fraction: split.fraction,
        },
        threshold,
        rows_total: n as u64,
        rows_train,
        rows_evaluated: eval_idx.len() as u64,
        rows_faulty: labels.iter().filter(|&&l| l).count() as u64,
        eval_states,
        labelled,
        at_threshold,
        roc_auc: roc_auc(&scores, &labels),
        pr_auc: average_precision(&scores, &labels),
        per_fault,
        per_device,
        per_state,
        events,
        sweep: Sweep {
            note: "diagnostic only: each threshold is a percentile of the test scores and \
                   its precision/recall use the test labels; the operating threshold above \
                   comes from the training span"
                .to_owned(),
            points: sweep_points,
        },
        attribution_method: attribution.map(|a| a.method.clone()),
        top_alerts,
        roc_curve,
        pr_curve,
    })
}

fn alert_detail(
    rows: &ScoredRows<'_>,
    a: &Span,
    peak: f64,
    by_device: &BTreeMap<u32, Vec<usize>>,
    attribution: Option<&Attribution<'_>>,
) -> AlertDetail {
    let peak_row = a
        .rows
        .iter()
        .copied()
        .find(|&r| rows.scores[r] == peak)
        .unwrap_or(a.rows[0]);
    // The tag most evaluated rows of the alert's span carry.
    let mut tag_counts: BTreeMap<&str, u64> = BTreeMap::new();
    if let Some(list) = by_device.get(&a.device) {
        for &r in list {
            let ts = rows.timestamps[r];
            if ts >= a.start
                && ts <= a.end
                && let Some(t) = rows.tag(r)
            {
                *tag_counts.entry(t).or_default() += 1;
            }
        }
    }
    let fault_tag = tag_counts
        .iter()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        .map(|(t, _)| (*t).to_owned());
    let (top_features, top_families) = match attribution {
        Some(att) => {
            let c = (att.contributions)(peak_row);
            let total: f64 = c.iter().map(|v| v.abs()).filter(|v| v.is_finite()).sum();
            let mut feats: Vec<Share> = att
                .features
                .iter()
                .zip(&c)
                .filter(|(_, v)| v.is_finite())
                .map(|(f, v)| Share {
                    name: f.clone(),
                    share: if total > 0.0 { v.abs() / total } else { 0.0 },
                })
                .collect();
            let mut fam: BTreeMap<&str, f64> = BTreeMap::new();
            for (f, s) in att.families.iter().zip(&feats) {
                *fam.entry(f.as_str()).or_default() += s.share;
            }
            feats.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name)));
            // Features that did not deviate at all explain nothing: not listed.
            feats.retain(|s| s.share > 0.0);
            feats.truncate(5);
            let mut fams: Vec<Share> = fam
                .into_iter()
                .map(|(name, share)| Share {
                    name: name.to_owned(),
                    share,
                })
                .collect();
            fams.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name)));
            fams.retain(|s| s.share > 0.0);
            (feats, fams)
        }
        None => (Vec::new(), Vec::new()),
    };
    AlertDetail {
        device: rows.device_names[a.device as usize].clone(),
        start: format_timestamp(a.start),
        end: format_timestamp(a.end),
        rows: a.rows.len() as u64,
        peak_score: peak,
        peak_at: format_timestamp(rows.timestamps[peak_row]),
        fault_tag,
        top_features,
        top_families,
    }
}
