//! Device-level features, made of the state and error code columns rather than
//! a signal: the error streak, the time since the last error and since the last
//! state change, and per window the state changes and the share of the current
//! state.

use polars::prelude::Series;

use itap_telemetry::{MICROS_PER_SEC, State};

use super::Ctx;
use super::rows::{ChunkRows, DeviceRows};
use crate::error::Result;
use crate::params::{FeatureKind, Window};
use crate::window::polars_sum_or_mean;

/// The kinds computed once per row, in the order of their slots.
pub(super) const KINDS: [FeatureKind; 3] = [
    FeatureKind::ErrorStreak,
    FeatureKind::SinceError,
    FeatureKind::SinceStateChange,
];

/// The kinds computed per window, in the order of their slots.
pub(super) const WINDOW_KINDS: [FeatureKind; 2] =
    [FeatureKind::StateChanges, FeatureKind::StateShare];

impl Ctx<'_> {
    /// The device-level features of one device, but the windowed ones.
    pub(super) fn device_features(&self, dev: &DeviceRows<'_>, outs: &mut [Vec<f64>]) {
        let [streak, since_err, since_change] = self.idx.dev;
        let cap = self.checked.resolved.elapsed_cap_us;
        let secs = |us: i64| us.clamp(0, cap) as f64 / MICROS_PER_SEC as f64;
        let (r, ts, states, errors) = (dev.range(), dev.ts, dev.states, dev.errors);
        if let Some(c) = streak {
            let mut run = 0.0;
            for (i, o) in outs[c][r.clone()].iter_mut().enumerate() {
                run = match errors {
                    Some(e) if e[i] != 0 => run + 1.0,
                    _ => 0.0,
                };
                *o = run;
            }
        }
        if let Some(c) = since_err {
            let mut last: Option<i64> = None;
            for (i, o) in outs[c][r.clone()].iter_mut().enumerate() {
                if errors.is_some_and(|e| e[i] != 0) {
                    last = Some(ts[i]);
                }
                *o = match last {
                    Some(t) => secs(ts[i].saturating_sub(t)),
                    None => secs(cap),
                };
            }
        }
        if let Some(c) = since_change {
            let mut since = ts[0];
            for (i, o) in outs[c][r].iter_mut().enumerate() {
                if let Some(st) = states
                    && i > 0
                    && st[i] != st[i - 1]
                {
                    since = ts[i];
                }
                *o = secs(ts[i].saturating_sub(since));
            }
        }
    }

    /// The windowed device-level features of a chunk for window number `wi`,
    /// `w`, with the chunk's index `keys` for it.
    pub(super) fn device_window_features(
        &self,
        wi: usize,
        w: Window,
        rows: &ChunkRows<'_>,
        keys: &Series,
        outs: &mut [Vec<f64>],
    ) -> Result<()> {
        let [changes, share] = self.idx.dev_win[wi];
        if let Some(c) = changes {
            match rows.states {
                None => outs[c].fill(0.0),
                Some(st) => state_changes(st, rows, keys, w, &mut outs[c])?,
            }
        }
        if let Some(c) = share {
            match rows.states {
                None => outs[c].fill(1.0),
                Some(st) => state_share(st, keys, w, &mut outs[c])?,
            }
        }
        Ok(())
    }
}

/// The state changes of each device within the window ending at each row.
fn state_changes(
    st: &[u8],
    rows: &ChunkRows<'_>,
    keys: &Series,
    w: Window,
    out: &mut [f64],
) -> Result<()> {
    let mut ind = vec![0.0; st.len()];
    for g in &rows.local {
        for i in g.start + 1..g.end {
            ind[i] = f64::from(u8::from(st[i] != st[i - 1]));
        }
    }
    polars_sum_or_mean(ind, keys, w, false, out)
}

/// The share of the rows of the window ending at each row that are in that row's state.
fn state_share(st: &[u8], keys: &Series, w: Window, out: &mut [f64]) -> Result<()> {
    let mut part = vec![0.0; st.len()];
    for code in 0..State::ALL.len() as u8 {
        if !st.contains(&code) {
            continue;
        }
        let ind: Vec<f64> = st.iter().map(|&x| f64::from(u8::from(x == code))).collect();
        polars_sum_or_mean(ind, keys, w, true, &mut part)?;
        for ((o, &x), v) in out.iter_mut().zip(st).zip(&part) {
            if x == code {
                *o = *v;
            }
        }
    }
    Ok(())
}
