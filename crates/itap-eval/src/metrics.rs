//! Threshold-free and thresholded metrics over scores and binary labels.

use serde::{Deserialize, Serialize};

/// Counts at one threshold (a row is flagged when `score > threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    /// Flagged faulty rows.
    pub tp: u64,
    /// Flagged normal rows.
    pub fp: u64,
    /// Missed faulty rows.
    pub fn_: u64,
    /// Quiet normal rows.
    pub tn: u64,
}

impl Confusion {
    /// Counts `flagged` against `labels`.
    pub fn count(
        flagged: impl IntoIterator<Item = bool>,
        labels: impl IntoIterator<Item = bool>,
    ) -> Self {
        let mut c = Confusion::default();
        for (f, l) in flagged.into_iter().zip(labels) {
            match (f, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    /// tp / (tp + fp); 0 when nothing is flagged.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 0 when there is no faulty row.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// The harmonic mean of precision and recall; 0 when both are 0.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// fp / (fp + tn).
    pub fn false_positive_rate(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
}

pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// NaN scores rank below every other score (never flagged).
fn key(s: f64) -> f64 {
    if s.is_nan() { f64::NEG_INFINITY } else { s }
}

/// Indices sorted by descending score (stable, so the order is deterministic).
fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
    idx
}

/// Area under the ROC curve (the probability that a random faulty row scores above a
/// random normal one, ties counting half). `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let pos = labels[..n].iter().filter(|&&l| l).count();
    let neg = n - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])));
    // Average ranks over ties, 1-based.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && key(scores[idx[j]]) == key(scores[idx[i]]) {
            j += 1;
        }
        let avg = (i + 1 + j) as f64 / 2.0;
        for &r in &idx[i..j] {
            if labels[r] {
                rank_sum_pos += avg;
            }
        }
        i = j;
    }
    let p = pos as f64;
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Average precision (area under the precision-recall curve, as scikit-learn
/// defines it: Σ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds). `None` without a faulty row.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let pos = labels[..n].iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let idx = order_desc(&scores[..n]);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && key(scores[idx[j]]) == key(scores[idx[i]]) {
            if labels[idx[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    Some(ap)
}

/// One point of a curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// x: false positive rate (ROC) or recall (PR).
    pub x: f64,
    /// y: true positive rate (ROC) or precision (PR).
    pub y: f64,
}

/// ROC and PR curves at distinct thresholds, thinned to at most `max_points` each.
pub fn curves(
    scores: &[f64],
    labels: &[bool],
    max_points: usize,
) -> (Vec<CurvePoint>, Vec<CurvePoint>) {
    let n = scores.len().min(labels.len());
    let pos = labels[..n].iter().filter(|&&l| l).count() as f64;
    let neg = n as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return (Vec::new(), Vec::new());
    }
    let idx = order_desc(&scores[..n]);
    let (mut roc, mut pr) = (vec![CurvePoint { x: 0.0, y: 0.0 }], Vec::new());
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && key(scores[idx[j]]) == key(scores[idx[i]]) {
            if labels[idx[j]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        roc.push(CurvePoint {
            x: fp / neg,
            y: tp / pos,
        });
        pr.push(CurvePoint {
            x: tp / pos,
            y: tp / (tp + fp),
        });
        i = j;
    }
    (thin(roc, max_points), thin(pr, max_points))
}

fn thin(points: Vec<CurvePoint>, max: usize) -> Vec<CurvePoint> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

/// The `q` quantile (0–1) of `values` by linear interpolation between order
/// statistics (NumPy's default); NaN values are ignored. `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, q))
}

/// [`quantile`] of values already sorted ascending and free of NaN.
pub(crate) fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &labels), Some(0.5));
        // One inversion out of four pairs.
        assert_eq!(roc_auc(&[0.1, 0.85, 0.8, 0.9], &labels), Some(0.75));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // Ranked: 0.9 (+), 0.8 (−), 0.7 (+), 0.1 (−): AP = 0.5·1 + 0.5·(2/3).
        let ap = average_precision(&[0.1, 0.9, 0.7, 0.8], &[false, true, true, false]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(average_precision(&[0.3, 0.2], &[true, true]), Some(1.0));
        assert_eq!(average_precision(&[0.3], &[false]), None);
    }

    #[test]
    fn confusion_and_f1() {
        let c = Confusion::count([true, true, false, false], [true, false, true, false]);
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 1, 1, 1));
        assert_eq!(c.precision(), 0.5);
        assert_eq!(c.recall(), 0.5);
        assert_eq!(c.f1(), 0.5);
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile(&[3.0, f64::NAN, 1.0], 1.0), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn curves_end_at_the_corners() {
        let (roc, pr) = curves(&[0.1, 0.9, 0.7, 0.8], &[false, true, true, false], 100);
        assert_eq!(roc.first().unwrap().x, 0.0);
        assert_eq!(*roc.last().unwrap(), CurvePoint { x: 1.0, y: 1.0 });
        assert_eq!(pr.last().unwrap().x, 1.0);
        let (roc, _) = curves(
            &(0..1000).map(f64::from).collect::<Vec<_>>(),
            &[true; 500]
                .iter()
                .chain(&[false; 500])
                .copied()
                .collect::<Vec<_>>(),
            50,
        );
        assert_eq!(roc.len(), 50);
    }
}
