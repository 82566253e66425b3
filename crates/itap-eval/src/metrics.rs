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

/// Scores ranked once, for every figure that depends only on their order:
/// ROC-AUC, average precision, the curves, confusions at any threshold and
/// quantiles. NaN scores rank below every other score (never flagged), tied with
/// −∞; scores that compare equal (0.0 and −0.0 too) form one group of ties.
///
/// Each class's scores are kept as sort keys in ascending order (8 bytes a row),
/// so that ranking costs two direct sorts instead of a sort of row indices by
/// their scores, and every figure is one walk over the two sorted lists.
#[derive(Debug, Clone)]
pub(crate) struct Ranking {
    /// The faulty rows' keys, ascending.
    pos: Vec<u64>,
    /// The normal rows' keys, ascending.
    neg: Vec<u64>,
    /// NaN scores among them (keyed as −∞).
    nan: usize,
}

const SIGN: u64 = 1 << 63;

/// A key whose unsigned order is the scores' total order (NaN as −∞).
fn key(s: f64) -> u64 {
    let b = if s.is_nan() { f64::NEG_INFINITY } else { s }.to_bits();
    if b & SIGN == 0 { b | SIGN } else { !b }
}

/// The score a key stands for (−∞ for a NaN).
fn value(k: u64) -> f64 {
    f64::from_bits(if k & SIGN == 0 { !k } else { k & !SIGN })
}

impl Ranking {
    /// Ranks `scores` with their `labels` (the shorter decides the length).
    pub(crate) fn new(scores: &[f64], labels: &[bool]) -> Self {
        let n = scores.len().min(labels.len());
        let faulty = labels[..n].iter().filter(|&&l| l).count();
        let (mut pos, mut neg) = (Vec::with_capacity(faulty), Vec::with_capacity(n - faulty));
        let mut nan = 0;
        for (&s, &l) in scores[..n].iter().zip(&labels[..n]) {
            nan += usize::from(s.is_nan());
            if l {
                pos.push(key(s))
            } else {
                neg.push(key(s))
            }
        }
        pos.sort_unstable();
        neg.sort_unstable();
        Ranking { pos, neg, nan }
    }

    fn len(&self) -> usize {
        self.pos.len() + self.neg.len()
    }

    /// The groups of tied scores from the highest down, as (faulty, normal)
    /// rows in each.
    fn groups_desc(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (mut i, mut j) = (self.pos.len(), self.neg.len());
        std::iter::from_fn(move || {
            let top = match (i.checked_sub(1), j.checked_sub(1)) {
                (None, None) => return None,
                (Some(a), None) => self.pos[a],
                (None, Some(b)) => self.neg[b],
                (Some(a), Some(b)) => self.pos[a].max(self.neg[b]),
            };
            let v = value(top);
            let (i0, j0) = (i, j);
            while i > 0 && value(self.pos[i - 1]) == v {
                i -= 1;
            }
            while j > 0 && value(self.neg[j - 1]) == v {
                j -= 1;
            }
            Some((i0 - i, j0 - j))
        })
    }

    /// [`roc_auc`].
    pub(crate) fn roc_auc(&self) -> Option<f64> {
        let (pos, n) = (self.pos.len(), self.len());
        let neg = n - pos;
        if pos == 0 || neg == 0 {
            return None;
        }
        // Average ranks over ties, 1-based, ascending: a group above `seen` rows
        // holds the ranks (i, j]. Ranks and their sums are whole or half numbers,
        // exact in f64 below 2⁵².
        let mut rank_sum_pos = 0.0;
        let mut seen = 0;
        for (a, b) in self.groups_desc() {
            let j = n - seen;
            let i = j - (a + b);
            let avg = (i + 1 + j) as f64 / 2.0;
            rank_sum_pos += avg * a as f64;
            seen += a + b;
        }
        let p = pos as f64;
        Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * neg as f64))
    }

    /// [`average_precision`].
    pub(crate) fn average_precision(&self) -> Option<f64> {
        let pos = self.pos.len();
        if pos == 0 {
            return None;
        }
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut ap = 0.0;
        let mut prev_recall = 0.0;
        for (a, b) in self.groups_desc() {
            tp += a as u64;
            fp += b as u64;
            let recall = tp as f64 / pos as f64;
            let precision = tp as f64 / (tp + fp) as f64;
            ap += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
        Some(ap)
    }

    /// [`curves`]: the points are thinned as they are made (the same points as
    /// thinning the whole curves), so they cost no memory per group.
    pub(crate) fn curves(&self, max_points: usize) -> (Vec<CurvePoint>, Vec<CurvePoint>) {
        let pos = self.pos.len() as f64;
        let neg = self.neg.len() as f64;
        if pos == 0.0 || neg == 0.0 {
            return (Vec::new(), Vec::new());
        }
        let groups = self.groups_desc().count();
        // The ROC curve starts at (0, 0): point k is after k groups; PR point k
        // is after k + 1.
        let mut roc = Thinned::new(groups + 1, max_points);
        let mut pr = Thinned::new(groups, max_points);
        roc.offer(0, || CurvePoint { x: 0.0, y: 0.0 });
        let (mut tp, mut fp) = (0.0, 0.0);
        for (k, (a, b)) in self.groups_desc().enumerate() {
            tp += a as f64;
            fp += b as f64;
            roc.offer(k + 1, || CurvePoint {
                x: fp / neg,
                y: tp / pos,
            });
            pr.offer(k, || CurvePoint {
                x: tp / pos,
                y: tp / (tp + fp),
            });
        }
        (roc.points, pr.points)
    }

    /// The confusion when flagging the scores above `t` (none when `t` is NaN).
    pub(crate) fn confusion_above(&self, t: f64) -> Confusion {
        let above = |k: u64| value(k).partial_cmp(&t) == Some(std::cmp::Ordering::Greater);
        let count = |keys: &[u64]| (keys.len() - keys.partition_point(|&k| !above(k))) as u64;
        let (tp, fp) = (count(&self.pos), count(&self.neg));
        Confusion {
            tp,
            fp,
            fn_: self.pos.len() as u64 - tp,
            tn: self.neg.len() as u64 - fp,
        }
    }

    /// Scores that are not NaN.
    fn finite_len(&self) -> usize {
        self.len() - self.nan
    }

    /// The `k`-th smallest score that is not NaN (0-based, `k <` [`Self::finite_len`]).
    fn nth(&self, k: usize) -> f64 {
        // NaNs sort first among the −∞ keys; skip them.
        let rank = k + self.nan;
        let le =
            |x: u64| self.pos.partition_point(|&p| p <= x) + self.neg.partition_point(|&q| q <= x);
        // The least key with more than `rank` keys at or below it.
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if le(mid) > rank {
                hi = mid
            } else {
                lo = mid + 1
            }
        }
        value(lo)
    }

    /// [`quantile`] of the scores.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let m = self.finite_len();
        if m == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (m - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let (vl, vh) = (self.nth(lo), self.nth(hi));
        Some(vl + (vh - vl) * (pos - lo as f64))
    }
}

/// The points of a curve of `len` points kept when it is thinned to `max`:
/// all of them when they are at most `max` (or `max` < 2), else `max` points
/// evenly spaced over the curve, the first and the last among them. Collected
/// as the curve is walked.
struct Thinned {
    len: usize,
    max: usize,
    /// The next kept point: its index in the curve and its number among the kept.
    next: Option<(usize, usize)>,
    points: Vec<CurvePoint>,
}

impl Thinned {
    fn new(len: usize, max: usize) -> Self {
        let mut t = Thinned {
            len,
            max,
            next: None,
            points: Vec::new(),
        };
        t.next = t.index(0).map(|i| (i, 0));
        t
    }

    /// The curve's index of kept point `k`; the indices strictly increase
    /// (spaced by more than one when thinning).
    fn index(&self, k: usize) -> Option<usize> {
        if self.len <= self.max || self.max < 2 {
            return (k < self.len).then_some(k);
        }
        let step = (self.len - 1) as f64 / (self.max - 1) as f64;
        (k < self.max).then(|| ((k as f64 * step).round() as usize).min(self.len - 1))
    }

    /// Point `i` of the curve, made only when it is kept.
    fn offer(&mut self, i: usize, point: impl FnOnce() -> CurvePoint) {
        let Some((want, k)) = self.next else { return };
        if i == want {
            self.points.push(point());
            self.next = self.index(k + 1).map(|i| (i, k + 1));
        }
    }
}

/// Area under the ROC curve (the probability that a random faulty row scores above a
/// random normal one, ties counting half). `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    Ranking::new(scores, labels).roc_auc()
}

/// Average precision (area under the precision-recall curve, as scikit-learn
/// defines it: Σ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds). `None` without a faulty row.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    Ranking::new(scores, labels).average_precision()
}

/// One point of a curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// x: false positive rate (ROC) or recall (PR).
    pub x: f64,
    /// y: true positive rate (ROC) or precision (PR).
    pub y: f64,
}

/// ROC and PR curves at distinct thresholds, thinned to at most `max_points` each
/// (evenly spaced points of each, both ends kept).
pub fn curves(
    scores: &[f64],
    labels: &[bool],
    max_points: usize,
) -> (Vec<CurvePoint>, Vec<CurvePoint>) {
    Ranking::new(scores, labels).curves(max_points)
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
    use proptest::prelude::*;

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

    /// The figures as they were computed before [`Ranking`]: row indices sorted
    /// by their scores (stable), then walked.
    mod by_index {
        use super::super::{Confusion, CurvePoint, quantile_sorted};

        fn key(s: f64) -> f64 {
            if s.is_nan() { f64::NEG_INFINITY } else { s }
        }

        fn order_desc(scores: &[f64]) -> Vec<usize> {
            let mut idx: Vec<usize> = (0..scores.len()).collect();
            idx.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])));
            idx
        }

        pub(super) fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
            let n = scores.len();
            let pos = labels.iter().filter(|&&l| l).count();
            let neg = n - pos;
            if pos == 0 || neg == 0 {
                return None;
            }
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| key(scores[a]).total_cmp(&key(scores[b])));
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

        /// (ROC, PR, average precision) of every distinct threshold, unthinned.
        pub(super) fn walk(
            scores: &[f64],
            labels: &[bool],
        ) -> (Vec<CurvePoint>, Vec<CurvePoint>, Option<f64>) {
            let n = scores.len();
            let pos = labels.iter().filter(|&&l| l).count() as f64;
            let neg = n as f64 - pos;
            let idx = order_desc(scores);
            let (mut roc, mut pr) = (vec![CurvePoint { x: 0.0, y: 0.0 }], Vec::new());
            let (mut tp, mut fp) = (0.0, 0.0);
            let (mut ap, mut prev_recall) = (0.0, 0.0);
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
                let recall = tp / pos;
                ap += (recall - prev_recall) * (tp / (tp + fp));
                prev_recall = recall;
                i = j;
            }
            (roc, pr, (pos > 0.0).then_some(ap))
        }

        pub(super) fn thin(points: Vec<CurvePoint>, max: usize) -> Vec<CurvePoint> {
            if points.len() <= max || max < 2 {
                return points;
            }
            let step = (points.len() - 1) as f64 / (max - 1) as f64;
            (0..max)
                .map(|k| points[((k as f64 * step).round() as usize).min(points.len() - 1)])
                .collect()
        }

        /// Each percentile's threshold and confusion, as the sweep had them.
        pub(super) fn sweep(scores: &[f64], labels: &[bool], pcs: &[f64]) -> Vec<(f64, Confusion)> {
            let mut sorted = scores.to_vec();
            sorted.retain(|s| !s.is_nan());
            sorted.sort_by(f64::total_cmp);
            if sorted.is_empty() {
                return Vec::new();
            }
            pcs.iter()
                .map(|&pc| {
                    let t = quantile_sorted(&sorted, pc / 100.0);
                    let c = Confusion::count(scores.iter().map(|&s| s > t), labels.iter().copied());
                    (t, c)
                })
                .collect()
        }
    }

    fn bits(v: Option<f64>) -> Option<u64> {
        v.map(f64::to_bits)
    }

    fn point_bits(p: &[CurvePoint]) -> Vec<(u64, u64)> {
        p.iter().map(|p| (p.x.to_bits(), p.y.to_bits())).collect()
    }

    /// Scores drawn from a few values (many ties), with NaN, ±∞ and ±0.
    fn scored_rows() -> impl Strategy<Value = Vec<(f64, bool)>> {
        let score = prop_oneof![
            6 => (0u8..12).prop_map(|k| f64::from(k) / 4.0),
            3 => -1e3f64..1e3,
            1 => Just(f64::NAN),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(f64::INFINITY),
            1 => Just(-0.0),
            1 => Just(0.0),
        ];
        proptest::collection::vec((score, any::<bool>()), 0..300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Ranking once gives, bit for bit, the figures of sorting row indices.
        #[test]
        fn ranking_once_gives_the_figures_of_sorting_row_indices(
            rows in scored_rows(),
            max_points in 0usize..40,
        ) {
            let scores: Vec<f64> = rows.iter().map(|r| r.0).collect();
            let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
            let ranked = Ranking::new(&scores, &labels);
            prop_assert_eq!(bits(ranked.roc_auc()), bits(by_index::roc_auc(&scores, &labels)));
            let (roc, pr, ap) = by_index::walk(&scores, &labels);
            prop_assert_eq!(bits(ranked.average_precision()), bits(ap));
            let (r, p) = ranked.curves(max_points);
            let both = labels.iter().any(|&l| l) && labels.iter().any(|&l| !l);
            if both {
                prop_assert_eq!(point_bits(&r), point_bits(&by_index::thin(roc, max_points)));
                prop_assert_eq!(point_bits(&p), point_bits(&by_index::thin(pr, max_points)));
            } else {
                prop_assert!(r.is_empty() && p.is_empty());
            }
            let pcs = [0.0, 10.0, 33.3, 50.0, 90.0, 99.5, 100.0];
            let ours: Vec<(f64, Confusion)> = pcs
                .iter()
                .map_while(|&pc| {
                    let t = ranked.quantile(pc / 100.0)?;
                    Some((t, ranked.confusion_above(t)))
                })
                .collect();
            let theirs = by_index::sweep(&scores, &labels, &pcs);
            prop_assert_eq!(ours.len(), theirs.len());
            for ((t1, c1), (t2, c2)) in ours.iter().zip(&theirs) {
                prop_assert_eq!(t1.to_bits(), t2.to_bits());
                prop_assert_eq!(c1, c2);
            }
        }
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
