//! Features against what the fit learned, per signal and row: the seasonal
//! decomposition (trend, seasonal, resid) and the deviation from the device's
//! baseline for its current state.

use itap_telemetry::{Batch, State};

use super::Ctx;
use super::point::Ew;
use super::rows::{DeviceRows, SignalRows};
use crate::fit::{FeaturesFit, KEYS};
use crate::params::FeatureKind;

/// The kinds computed here, in the order of their slots.
pub(super) const KINDS: [FeatureKind; 4] = [
    FeatureKind::Trend,
    FeatureKind::Seasonal,
    FeatureKind::Resid,
    FeatureKind::StateDev,
];

/// Baselines resolved for the batch's devices: `[device code][key * signals + s]`
/// = (location, scale), through the fallback chain device/state → all devices/state
/// → device/all states → all devices/all states.
pub(super) struct Tables {
    baselines: Vec<Vec<Option<(f64, f64)>>>,
}

impl Tables {
    pub(super) fn new(batch: &Batch, fit: &FeaturesFit, nsig: usize) -> Tables {
        let pooled = |key: usize, s: usize| -> Option<(f64, f64)> {
            let state = key.checked_sub(1).and_then(|i| State::ALL.get(i).copied());
            let b = fit.pooled().iter().find(|b| b.state == state)?;
            Some((b.location.get(s).copied()??, b.scale.get(s).copied()??))
        };
        let baselines = batch
            .device_names()
            .iter()
            .map(|name| {
                let dev = fit
                    .devices()
                    .binary_search_by(|d| d.device.as_str().cmp(name))
                    .ok()
                    .map(|i| &fit.devices()[i]);
                let own = |key: usize, s: usize| -> Option<(f64, f64)> {
                    let state = key.checked_sub(1).and_then(|i| State::ALL.get(i).copied());
                    let b = dev?.baselines.iter().find(|b| b.state == state)?;
                    Some((b.location.get(s).copied()??, b.scale.get(s).copied()??))
                };
                (0..KEYS * nsig)
                    .map(|ks| {
                        let (key, s) = (ks / nsig, ks % nsig);
                        own(key, s)
                            .or_else(|| pooled(key, s))
                            .or_else(|| own(0, s))
                            .or_else(|| pooled(0, s))
                    })
                    .collect()
            })
            .collect();
        Tables { baselines }
    }
}

impl Ctx<'_> {
    /// The baseline features of one signal of one device.
    pub(super) fn baseline_features(
        &self,
        dev: &DeviceRows<'_>,
        sig: &SignalRows<'_>,
        outs: &mut [Vec<f64>],
    ) {
        let [trend, seasonal, resid, state_dev] = self.idx.baseline[sig.si];
        if trend.is_some() || seasonal.is_some() || resid.is_some() {
            self.decomposition(dev, sig, [trend, seasonal, resid], outs);
        }
        if let Some(c) = state_dev {
            let table = &self.tables.baselines[dev.code as usize];
            let nsig = self.idx.baseline.len();
            let imp = sig.imputed;
            for (i, o) in outs[c][dev.range()].iter_mut().enumerate() {
                let key = dev.states.map_or(0, |st| 1 + st[i] as usize);
                *o = match table[key * nsig + sig.si] {
                    Some((loc, scale)) => (imp[i] - loc) / scale,
                    None => f64::NAN,
                };
            }
        }
    }

    /// Seasonal value at each row's phase, the trend (exponentially weighted mean
    /// of the deseasonalised observations) and the residual against the trend
    /// before the row, into the columns of `[trend, seasonal, resid]` that are asked for.
    fn decomposition(
        &self,
        dev: &DeviceRows<'_>,
        sig: &SignalRows<'_>,
        [trend, seasonal, resid]: [Option<usize>; 3],
        outs: &mut [Vec<f64>],
    ) {
        let (a, ts, x, imp) = (dev.start, dev.ts, sig.raw, sig.imputed);
        let profile = &self.seasonal[sig.si];
        let mut ew = Ew::new(self.checked.resolved.ewm_halflife_us as f64);
        for i in 0..ts.len() {
            let sv = profile.at(ts[i]);
            let before = ew.mean;
            if x[i].is_finite() {
                ew.update(ts[i], x[i] - sv);
            }
            if let Some(c) = trend {
                outs[c][a + i] = ew.mean;
            }
            if let Some(c) = seasonal {
                outs[c][a + i] = sv;
            }
            if let Some(c) = resid {
                outs[c][a + i] = imp[i] - sv - before;
            }
        }
    }
}
