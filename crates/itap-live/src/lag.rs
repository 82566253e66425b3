//! How old a row is when its score is committed: the commit's wall time minus
//! the row's timestamp. For telemetry stamped by its device as it is sent, this
//! is the time from publish to stored score; for a replay of an old file it is
//! the file's age.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket upper bounds, µs: 1, 1.25, 1.6, 2, 2.5, 3.2, 4, 5, 6.3, 8 per decade
/// (steps of at most 28 %), from 0.1 ms to 1,000 s; then one open bucket.
const BOUNDS_US: [u64; 71] = bounds();

const fn bounds() -> [u64; 71] {
    const STEPS: [u64; 10] = [100, 125, 160, 200, 250, 320, 400, 500, 630, 800];
    let mut out = [0u64; 71];
    let mut decade = 1u64; // ×100 µs
    let mut i = 0;
    while i < 70 {
        out[i] = STEPS[i % 10] * decade;
        i += 1;
        if i % 10 == 0 {
            decade *= 10;
        }
    }
    out[70] = u64::MAX;
    out
}

/// A histogram of row ages at commit, readable while it is written.
#[derive(Debug)]
pub struct LagHistogram {
    counts: [AtomicU64; 71],
    // A float: a replay of a year-old file sums beyond u64 microseconds.
    sum_us: Mutex<f64>,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: Mutex::new(0.0),
        }
    }
}

/// Quantiles of [`LagHistogram`], each the upper bound of its bucket (so at most
/// 28 % above the true value), ms; `None` when it falls above the last bound
/// (1,000 s: a replay of an old file).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LagSummary {
    /// Rows counted.
    pub rows: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Mean, ms.
    pub mean_ms: f64,
}

impl LagHistogram {
    /// Counts rows of these ages, µs (a negative age, a row stamped ahead of
    /// this clock, counts as 0).
    pub fn record(&self, ages_us: impl IntoIterator<Item = i64>) {
        let mut local = [0u64; 71];
        let mut sum = 0.0;
        for a in ages_us {
            let a = a.max(0) as u64;
            let i = BOUNDS_US.partition_point(|&b| b < a);
            local[i] += 1;
            sum += a as f64;
        }
        for (c, n) in self.counts.iter().zip(local) {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
        *self
            .sum_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += sum;
    }

    /// The counts per bucket, with each bucket's upper bound in µs (`u64::MAX`
    /// for the last).
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        BOUNDS_US
            .iter()
            .zip(&self.counts)
            .map(|(&b, c)| (b, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sum of the ages counted, µs.
    pub fn sum_us(&self) -> f64 {
        *self
            .sum_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Quantiles, or `None` before the first row.
    pub fn summary(&self) -> Option<LagSummary> {
        let b = self.buckets();
        let rows: u64 = b.iter().map(|(_, n)| n).sum();
        if rows == 0 {
            return None;
        }
        let q = |p: f64| {
            let rank = ((p * rows as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for &(bound, n) in &b {
                seen += n;
                if seen >= rank {
                    // The open bucket has no bound to report.
                    return (bound != u64::MAX).then(|| bound as f64 / 1e3);
                }
            }
            None
        };
        Some(LagSummary {
            rows,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            mean_ms: self.sum_us() / rows as f64 / 1e3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_rise_in_small_steps() {
        assert_eq!(BOUNDS_US[0], 100);
        assert_eq!(BOUNDS_US[10], 1_000);
        assert_eq!(BOUNDS_US[69], 800_000_000);
        for w in BOUNDS_US[..70].windows(2) {
            assert!(
                w[1] > w[0] && (w[1] as f64) / (w[0] as f64) <= 1.28,
                "{w:?}"
            );
        }
    }

    #[test]
    fn quantiles_are_bucket_bounds_at_or_above_the_truth() {
        let h = LagHistogram::default();
        assert!(h.summary().is_none());
        // 1..=1000 ms, once each.
        h.record((1..=1000).map(|ms| ms * 1000));
        let s = h.summary().unwrap();
        assert_eq!(s.rows, 1000);
        assert!((500.0..=500.0 * 1.28).contains(&s.p50_ms.unwrap()), "{s:?}");
        assert!((990.0..=990.0 * 1.28).contains(&s.p99_ms.unwrap()), "{s:?}");
        assert!((s.mean_ms - 500.5).abs() < 1e-9, "{s:?}");
        h.record([-5, 10_000_000_000_000]);
        assert_eq!(h.buckets()[0].1, 1);
        assert_eq!(h.buckets()[70].1, 1);
        // A year-old replay: beyond the last bound, and a mean that does not wrap.
        let old = LagHistogram::default();
        old.record(std::iter::repeat_n(3 * 10_i64.pow(13), 1_000_000));
        let s = old.summary().unwrap();
        assert_eq!(s.p50_ms, None);
        assert!((s.mean_ms - 3e10).abs() < 1.0, "{s:?}");
    }
}
