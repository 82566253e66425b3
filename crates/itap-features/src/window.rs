//! Windowed statistics of one device's signal: mean, sample std, min and max of
//! the observed values in each row's trailing window, by the native fused kernel
//! or by polars.

use polars::prelude::{
    ClosedWindow, Duration, Float64Chunked, Int64Chunked, IntoSeries, NewChunkedArray,
    RollingOptionsDynamicWindow, Series, SeriesOpsTime,
};

use crate::error::Result;
use crate::params::Window;

/// Which statistics to compute, and where (each slice one per row of the device).
pub(crate) struct StatsOut<'a> {
    pub(crate) mean: Option<&'a mut [f64]>,
    pub(crate) std: Option<&'a mut [f64]>,
    pub(crate) min: Option<&'a mut [f64]>,
    pub(crate) max: Option<&'a mut [f64]>,
}

/// Count, mean, sum of squared deviations, min and max of some observations.
#[derive(Debug, Clone, Copy)]
struct Agg {
    n: f64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Agg {
    const EMPTY: Agg = Agg {
        n: 0.0,
        mean: 0.0,
        m2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// Welford's update with one observation.
    #[inline]
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Chan et al.'s combination of two disjoint sets.
    #[inline]
    fn merge(a: &Agg, b: &Agg) -> Agg {
        if a.n == 0.0 {
            return *b;
        }
        if b.n == 0.0 {
            return *a;
        }
        let n = a.n + b.n;
        let d = b.mean - a.mean;
        Agg {
            n,
            mean: a.mean + d * (b.n / n),
            m2: a.m2 + b.m2 + d * d * (a.n * b.n / n),
            min: a.min.min(b.min),
            max: a.max.max(b.max),
        }
    }
}

/// A FIFO queue of observations with the aggregate of its content at O(1)
/// amortised cost per push and pop: new values enter the back; the front is a
/// stack of suffix aggregates rebuilt from the back when it runs empty. No value
/// is ever subtracted, so there is no cancellation to drift.
struct TwoStack {
    front: Vec<Agg>,
    back_values: Vec<f64>,
    back: Agg,
}

impl TwoStack {
    fn new() -> Self {
        TwoStack {
            front: Vec::new(),
            back_values: Vec::new(),
            back: Agg::EMPTY,
        }
    }

    fn clear(&mut self) {
        self.front.clear();
        self.back_values.clear();
        self.back = Agg::EMPTY;
    }

    #[inline]
    fn push(&mut self, x: f64) {
        self.back_values.push(x);
        self.back.push(x);
    }

    /// Removes the oldest value.
    #[inline]
    fn pop(&mut self) {
        if self.front.is_empty() {
            let mut agg = Agg::EMPTY;
            while let Some(x) = self.back_values.pop() {
                agg.push(x);
                self.front.push(agg);
            }
            self.back = Agg::EMPTY;
        }
        self.front.pop();
    }

    #[inline]
    fn get(&self) -> Agg {
        match self.front.last() {
            Some(f) => Agg::merge(f, &self.back),
            None => self.back,
        }
    }
}

/// Reusable state of the native kernel (one per thread).
pub(crate) struct NativeWindows {
    queue: TwoStack,
}

impl NativeWindows {
    pub(crate) fn new() -> Self {
        NativeWindows {
            queue: TwoStack::new(),
        }
    }

    /// Statistics of the non-missing values of `x` (one device, rows in time
    /// order) over window `w` ending at each row. A time window of row i holds the
    /// rows with timestamp in `(ts[i] − w, ts[i]]` (so also later rows with the
    /// same timestamp); a row window holds rows `i + 1 − n ..= i`.
    pub(crate) fn stats(
        &mut self,
        ts: &[i64],
        x: &[f64],
        w: Window,
        min_periods: usize,
        mut out: StatsOut<'_>,
    ) {
        let q = &mut self.queue;
        q.clear();
        let n = x.len();
        let (mut start, mut end) = (0usize, 0usize); // rows start..end are in the queue
        let min_n = min_periods.max(1) as f64;
        for i in 0..n {
            let (lo, hi) = match w {
                Window::Time(us) => {
                    let mut hi = end.max(i + 1);
                    while hi < n && ts[hi] == ts[i] {
                        hi += 1;
                    }
                    let cut = ts[i].saturating_sub(us);
                    let mut lo = start;
                    while lo < hi && ts[lo] <= cut {
                        lo += 1;
                    }
                    (lo, hi)
                }
                Window::Rows(k) => ((i + 1).saturating_sub(k), i + 1),
            };
            while end < hi {
                if x[end].is_finite() {
                    q.push(x[end]);
                }
                end += 1;
            }
            while start < lo {
                if x[start].is_finite() {
                    q.pop();
                }
                start += 1;
            }
            let a = q.get();
            let ok = a.n >= min_n;
            if let Some(o) = out.mean.as_deref_mut() {
                o[i] = if ok { a.mean } else { f64::NAN };
            }
            if let Some(o) = out.std.as_deref_mut() {
                o[i] = if ok && a.n >= 2.0 {
                    (a.m2.max(0.0) / (a.n - 1.0)).sqrt()
                } else {
                    f64::NAN
                };
            }
            if let Some(o) = out.min.as_deref_mut() {
                o[i] = if ok { a.min } else { f64::NAN };
            }
            if let Some(o) = out.max.as_deref_mut() {
                o[i] = if ok { a.max } else { f64::NAN };
            }
        }
    }
}

/// The same statistics by polars' `rolling_*_by`, for rows of several devices at
/// once: `keys` (see `window_keys` in the engine) keep each window inside its device.
pub(crate) fn polars_stats(
    x: &[f64],
    keys: &Series,
    w: Window,
    min_periods: usize,
    out: StatsOut<'_>,
) -> Result<()> {
    let vals = if x.iter().all(|v| v.is_finite()) {
        Float64Chunked::from_slice("x".into(), x).into_series()
    } else {
        x.iter()
            .map(|&v| v.is_finite().then_some(v))
            .collect::<Float64Chunked>()
            .into_series()
    };
    let size = match w {
        Window::Time(us) => us,
        Window::Rows(n) => n as i64,
    };
    let opts = || RollingOptionsDynamicWindow {
        window_size: Duration::new(size),
        min_periods,
        closed_window: ClosedWindow::Right,
        fn_params: None,
    };
    if let Some(o) = out.mean {
        fill(o, &vals.rolling_mean_by(keys, opts())?)?;
    }
    if let Some(o) = out.std {
        fill(o, &vals.rolling_std_by(keys, opts())?)?;
    }
    if let Some(o) = out.min {
        fill(o, &vals.rolling_min_by(keys, opts())?)?;
    }
    if let Some(o) = out.max {
        fill(o, &vals.rolling_max_by(keys, opts())?)?;
    }
    Ok(())
}

/// A polars rolling sum or mean of `x` (no missing values) over `keys`.
pub(crate) fn polars_sum_or_mean(
    x: Vec<f64>,
    keys: &Series,
    w: Window,
    mean: bool,
    out: &mut [f64],
) -> Result<()> {
    let size = match w {
        Window::Time(us) => us,
        Window::Rows(n) => n as i64,
    };
    let opts = RollingOptionsDynamicWindow {
        window_size: Duration::new(size),
        min_periods: 1,
        closed_window: ClosedWindow::Right,
        fn_params: None,
    };
    let s = Float64Chunked::from_vec("x".into(), x).into_series();
    let r = if mean {
        s.rolling_mean_by(keys, opts)?
    } else {
        s.rolling_sum_by(keys, opts)?
    };
    fill(out, &r)
}

/// The index key series of window `w` (see `window_keys`).
pub(crate) fn key_series(keys: Vec<i64>) -> Series {
    Int64Chunked::from_vec("key".into(), keys).into_series()
}

/// Copies a float series into `out`, nulls as NaN.
fn fill(out: &mut [f64], s: &Series) -> Result<()> {
    let ca = s.f64()?;
    if let Ok(v) = ca.cont_slice() {
        out.copy_from_slice(v);
        return Ok(());
    }
    for (o, v) in out.iter_mut().zip(ca.iter()) {
        *o = v.unwrap_or(f64::NAN);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(ts: &[i64], x: &[f64], w: Window, min: usize) -> [Vec<f64>; 4] {
        let n = x.len();
        let (mut a, mut b, mut c, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        NativeWindows::new().stats(
            ts,
            x,
            w,
            min,
            StatsOut {
                mean: Some(&mut a),
                std: Some(&mut b),
                min: Some(&mut c),
                max: Some(&mut d),
            },
        );
        [a, b, c, d]
    }

    #[test]
    fn two_stack_aggregates_a_sliding_window() {
        let x = [4.0, 1.0, 3.0, 8.0, 2.0, 2.0, 9.0];
        let ts: Vec<i64> = (0..7).collect();
        let [mean, std, min, max] = native(&ts, &x, Window::Rows(3), 1);
        assert_eq!(mean[0], 4.0);
        assert!((mean[3] - 4.0).abs() < 1e-15);
        assert!((std[3] - 13.0f64.sqrt()).abs() < 1e-12, "{}", std[3]);
        assert_eq!((min[3], max[3]), (1.0, 8.0));
        assert_eq!((min[6], max[6]), (2.0, 9.0));
        assert!(std[0].is_nan(), "one observation has no sample std");
    }

    #[test]
    fn time_windows_include_ties_and_skip_missing_values() {
        let ts = [0, 10, 10, 25, 40];
        let x = [1.0, 2.0, f64::NAN, 4.0, 8.0];
        let [mean, _, min, _] = native(&ts, &x, Window::Time(15), 1);
        // Row 1 and its tie, row 2, see (10 - 15, 10]: rows 0, 1 and 2 (2 missing).
        assert_eq!(mean[1], 1.5);
        assert_eq!(mean[2], 1.5);
        // (10, 25]: row 3 only.
        assert_eq!(mean[3], 4.0);
        // (25, 40]: row 4 only.
        assert_eq!(min[4], 8.0);
        let [mean2, ..] = native(&ts, &x, Window::Time(15), 2);
        assert!(mean2[3].is_nan() && mean2[1] == 1.5);
    }

    #[test]
    fn native_and_polars_agree() {
        let mut state = 3u64;
        let mut ts = Vec::new();
        let mut x = Vec::new();
        let mut t = 0i64;
        for i in 0..3000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += ((state >> 40) % 50) as i64;
            ts.push(t);
            x.push(if i % 13 == 0 {
                f64::NAN
            } else {
                1000.0 + ((state >> 11) % 10_000) as f64 / 100.0
            });
        }
        for w in [Window::Time(120), Window::Rows(30), Window::Time(7)] {
            for min in [1, 3] {
                let ours = native(&ts, &x, w, min);
                let keys: Vec<i64> = match w {
                    Window::Time(_) => ts.clone(),
                    Window::Rows(_) => (0..ts.len() as i64).collect(),
                };
                let n = x.len();
                let (mut a, mut b, mut c, mut d) =
                    (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                polars_stats(
                    &x,
                    &key_series(keys),
                    w,
                    min,
                    StatsOut {
                        mean: Some(&mut a),
                        std: Some(&mut b),
                        min: Some(&mut c),
                        max: Some(&mut d),
                    },
                )
                .unwrap();
                for (k, theirs) in [a, b, c, d].iter().enumerate() {
                    for i in 0..n {
                        let (p, q) = (ours[k][i], theirs[i]);
                        assert!(
                            (p.is_nan() && q.is_nan()) || (p - q).abs() <= 1e-12 * q.abs().max(1.0),
                            "{w:?} min {min} stat {k} row {i}: {p} vs {q}"
                        );
                    }
                }
            }
        }
    }
}
