//! Windowed features of a signal: mean, std, min and max of the observed values
//! in each row's trailing window, by the native kernel or polars
//! ([`crate::window`]), and from them delta and z of the imputed value. Also the
//! index keys that keep polars' windows inside a device, which the windowed
//! device-level features share.

use polars::prelude::Series;

use super::rows::{ChunkRows, Local};
use super::{Ctx, Scratch};
use crate::error::{Error, Result};
use crate::params::{FeatureKind, Window, WindowEngine};
use crate::window::{NativeWindows, StatsOut, key_series, polars_stats};

/// The kinds computed here, in the order of their slots.
pub(super) const KINDS: [FeatureKind; 6] = [
    FeatureKind::Mean,
    FeatureKind::Std,
    FeatureKind::Min,
    FeatureKind::Max,
    FeatureKind::Delta,
    FeatureKind::Z,
];

impl Ctx<'_> {
    /// Every windowed feature of the chunk, window by window: the signals', then
    /// the device-level ones.
    pub(super) fn window_features(
        &self,
        rows: &ChunkRows<'_>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let engine = self.checked.params().window_engine;
        for (wi, &w) in self.checked.windows().iter().enumerate() {
            let device = self.idx.dev_win[wi].iter().any(Option::is_some);
            let keys = if engine == WindowEngine::Polars || device {
                Some(self.keys(rows, w)?)
            } else {
                None
            };
            for si in 0..rows.raw.len() {
                if self.idx.win[si][wi].iter().any(Option::is_some) {
                    self.signal_window(si, wi, rows, keys.as_ref(), scratch)?;
                }
            }
            if let Some(keys) = &keys {
                self.device_window_features(wi, w, rows, keys, &mut scratch.cols)?;
            }
        }
        Ok(())
    }

    /// The chunk's index key series for window `w` (see [`window_keys`]).
    fn keys(&self, rows: &ChunkRows<'_>, w: Window) -> Result<Series> {
        let keys = window_keys(rows.ts, &rows.local, w).map_err(|g| {
            let g = rows.local[g];
            Error::WindowOverflow {
                window: w.label(),
                device: self
                    .device_names
                    .get(g.code as usize)
                    .cloned()
                    .unwrap_or_default(),
                rows: g.end - g.start,
            }
        })?;
        Ok(key_series(keys))
    }

    /// The windowed features of signal number `si` over window number `wi`;
    /// `keys` are the chunk's index keys for the window when polars needs them.
    fn signal_window(
        &self,
        si: usize,
        wi: usize,
        rows: &ChunkRows<'_>,
        keys: Option<&Series>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let [mean, std, min, max, delta, z] = self.idx.win[si][wi];
        let (x, w) = (rows.raw[si], self.checked.windows()[wi]);
        for v in [&mut scratch.mean, &mut scratch.std] {
            v.clear();
            v.resize(rows.ts.len(), f64::NAN);
        }
        // Take the output columns out of the scratch for the duration.
        let mut take = |c: Option<usize>| c.map(|c| std::mem::take(&mut scratch.cols[c]));
        let (mut o_mean, mut o_std, mut o_min, mut o_max) =
            (take(mean), take(std), take(min), take(max));
        let out = StatsOut {
            // Delta and z need the mean, z the std, whether output or not.
            mean: match o_mean.as_deref_mut() {
                Some(o) => Some(o),
                None if delta.is_some() || z.is_some() => Some(&mut scratch.mean[..]),
                None => None,
            },
            std: match o_std.as_deref_mut() {
                Some(o) => Some(o),
                None if z.is_some() => Some(&mut scratch.std[..]),
                None => None,
            },
            min: o_min.as_deref_mut(),
            max: o_max.as_deref_mut(),
        };
        let min_periods = self.checked.params().min_periods;
        match (keys, self.checked.params().window_engine) {
            (Some(keys), WindowEngine::Polars) => polars_stats(x, keys, w, min_periods, out)?,
            _ => native_stats(&mut scratch.windows, rows, x, w, min_periods, out),
        }
        let m: &[f64] = o_mean.as_deref().unwrap_or(&scratch.mean);
        let sd: &[f64] = o_std.as_deref().unwrap_or(&scratch.std);
        let imp = &scratch.imputed[si];
        if let Some(c) = delta {
            deltas(imp, m, &mut scratch.cols[c]);
        }
        if let Some(c) = z {
            z_scores(imp, m, sd, &mut scratch.cols[c]);
        }
        for (c, col) in [(mean, o_mean), (std, o_std), (min, o_min), (max, o_max)] {
            if let (Some(c), Some(col)) = (c, col) {
                scratch.cols[c] = col;
            }
        }
        Ok(())
    }
}

/// The statistics by the native kernel, device by device.
fn native_stats(
    kernel: &mut NativeWindows,
    rows: &ChunkRows<'_>,
    x: &[f64],
    w: Window,
    min_periods: usize,
    mut out: StatsOut<'_>,
) {
    for g in &rows.local {
        let r = g.start..g.end;
        let part = StatsOut {
            mean: out.mean.as_deref_mut().map(|o| &mut o[r.clone()]),
            std: out.std.as_deref_mut().map(|o| &mut o[r.clone()]),
            min: out.min.as_deref_mut().map(|o| &mut o[r.clone()]),
            max: out.max.as_deref_mut().map(|o| &mut o[r.clone()]),
        };
        kernel.stats(&rows.ts[r.clone()], &x[r], w, min_periods, part);
    }
}

/// Delta: the imputed value minus the window's mean.
fn deltas(imp: &[f64], mean: &[f64], out: &mut [f64]) {
    for ((o, v), m) in out.iter_mut().zip(imp).zip(mean) {
        *o = v - m;
    }
}

/// Z: delta over the window's std; 0 when the std is 0 or undefined and the delta
/// is finite.
fn z_scores(imp: &[f64], mean: &[f64], std: &[f64], out: &mut [f64]) {
    for (((o, v), m), sd) in out.iter_mut().zip(imp).zip(mean).zip(std) {
        *o = if *sd > 0.0 {
            (v - m) / sd
        } else if (v - m).is_finite() {
            0.0
        } else {
            f64::NAN
        };
    }
}

/// The index key of each row for window `w`: increasing within a device, with
/// steps longer than the window shortened to just over it, and a gap longer than
/// the window between devices, so that polars' `(key − w, key]` windows hold
/// exactly the device's rows of the trailing window. For row windows the key
/// counts rows. Returns the offending local group on overflow.
fn window_keys(ts: &[i64], local: &[Local], w: Window) -> std::result::Result<Vec<i64>, usize> {
    let mut keys = Vec::with_capacity(ts.len());
    let (gap, cap) = match w {
        Window::Time(us) => (us.saturating_add(1), us.saturating_add(1)),
        Window::Rows(n) => (n as i64, 1),
    };
    let mut k: i64 = 0;
    for (gi, g) in local.iter().enumerate() {
        if gi > 0 {
            k = k.checked_add(gap).ok_or(gi)?;
        }
        keys.push(k);
        for i in g.start + 1..g.end {
            let step = match w {
                Window::Time(_) => ts[i].saturating_sub(ts[i - 1]).clamp(0, cap),
                Window::Rows(_) => 1,
            };
            k = k.checked_add(step).ok_or(gi)?;
            keys.push(k);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use itap_telemetry::MICROS_PER_SEC;

    use super::*;

    #[test]
    fn keys_keep_windows_inside_devices_and_shorten_long_gaps() {
        let s = MICROS_PER_SEC;
        let ts = [0, 10 * s, 20 * s, 1000 * s, 5 * s, 15 * s];
        let local = [
            Local {
                start: 0,
                end: 4,
                code: 0,
            },
            Local {
                start: 4,
                end: 6,
                code: 1,
            },
        ];
        let keys = window_keys(&ts, &local, Window::Time(60 * s)).unwrap();
        assert_eq!(
            keys,
            [
                0,
                10 * s,
                20 * s,
                20 * s + 60 * s + 1,
                2 * (60 * s + 1) + 20 * s,
                2 * (60 * s + 1) + 30 * s
            ]
        );
        let rows = window_keys(&ts, &local, Window::Rows(3)).unwrap();
        assert_eq!(rows, [0, 1, 2, 3, 6, 7]);
    }
}
