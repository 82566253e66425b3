//! Features against what the fit learned, per signal and row: the seasonal
//! decomposition (trend, seasonal, resid), the deviation from the device's
//! baseline for its current state, and the control charts of the standardised
//! residual.

use itap_telemetry::Batch;

use super::Ctx;
use super::point::Ew;
use super::rows::{DeviceRows, SignalRows};
use crate::fit::{Baseline, FeaturesFit, KEYS, key_state};
use crate::params::FeatureKind;

/// The kinds computed here, in the order of their slots.
pub(super) const KINDS: [FeatureKind; 5] = [
    FeatureKind::Trend,
    FeatureKind::Seasonal,
    FeatureKind::Resid,
    FeatureKind::StateDev,
    FeatureKind::ChartCusum,
];

/// Baselines resolved for the batch's devices: `[device code][key * signals + s]`
/// = (location, scale), through the fallback chain device/state → all devices/state
/// → device/all states → all devices/all states.
///
/// `charts[device code][key * signals + s]` = (centre, unit) of the control charts:
/// the device's own baseline for the state, else all devices' for the state; no
/// fallback to other states (a row in a state training never saw leaves the
/// charts where they were).
#[derive(Debug, Clone)]
pub(super) struct Tables {
    pub(super) baselines: Vec<Vec<Option<(f64, f64)>>>,
    pub(super) charts: Vec<Vec<Option<(f64, f64)>>>,
}

/// The control charts' centre (location + residual level) and unit (residual
/// spread) of signal `s` in `b`.
fn chart_of(b: &Baseline, s: usize) -> Option<(f64, f64)> {
    let loc = b.location.get(s).copied()??;
    let scale = b.scale.get(s).copied()??;
    let rloc = b.resid_location.get(s).copied().flatten().unwrap_or(0.0);
    let rscale = b.resid_scale.get(s).copied().flatten().unwrap_or(scale);
    Some((loc + rloc, rscale))
}

/// A device's residual spread `own`, learned from `rows` training rows, pooled
/// with the fleet's spread `fleet` weighing `prior` rows: the root of the
/// weighted mean of the two variances. A device seen in a state for a few rows
/// (its spread is then often far too small: one calm stretch) gets nearly the
/// fleet's; one seen for many keeps nearly its own.
fn pooled_unit(own: f64, rows: usize, fleet: Option<f64>, prior: f64) -> f64 {
    match fleet {
        Some(fleet) if prior > 0.0 && fleet.is_finite() => {
            let n = rows as f64;
            ((n * own * own + prior * fleet * fleet) / (n + prior)).sqrt()
        }
        _ => own,
    }
}

impl Tables {
    pub(super) fn new(batch: &Batch, fit: &FeaturesFit, nsig: usize) -> Tables {
        Tables::for_devices(batch.device_names(), fit, nsig)
    }

    /// The tables of the devices `names`, in that order (a device training never
    /// saw gets the pooled baselines).
    pub(super) fn for_devices(names: &[String], fit: &FeaturesFit, nsig: usize) -> Tables {
        let pooled_of = |key: usize| fit.pooled().iter().find(|b| b.state == key_state(key));
        let level = |b: &Baseline, s: usize| {
            Some((b.location.get(s).copied()??, b.scale.get(s).copied()??))
        };
        let prior = fit.params().chart_prior_rows;
        let mut baselines = Vec::with_capacity(names.len());
        let mut charts = Vec::with_capacity(names.len());
        for name in names {
            let dev = fit
                .devices()
                .binary_search_by(|d| d.device.as_str().cmp(name))
                .ok()
                .map(|i| &fit.devices()[i]);
            let own_of = |key: usize| dev?.baselines.iter().find(|b| b.state == key_state(key));
            // The level of a state: the device's own, then the pooled one of that
            // state, then the device's and the pooled one over all states.
            baselines.push(
                (0..KEYS * nsig)
                    .map(|ks| {
                        let (key, s) = (ks / nsig, ks % nsig);
                        let own = |k| own_of(k).and_then(|b| level(b, s));
                        let pooled = |k| pooled_of(k).and_then(|b| level(b, s));
                        own(key)
                            .or_else(|| pooled(key))
                            .or_else(|| own(0))
                            .or_else(|| pooled(0))
                    })
                    .collect(),
            );
            // A chart's centre and unit: the device's own in that state, else the
            // pooled one of that state; never another state's. The device's own
            // unit is pooled with the fleet's, which weighs `prior` rows.
            charts.push(
                (0..KEYS * nsig)
                    .map(|ks| {
                        let (key, s) = (ks / nsig, ks % nsig);
                        let pooled = pooled_of(key).and_then(|b| chart_of(b, s));
                        match own_of(key).and_then(|b| Some((b.rows, chart_of(b, s)?))) {
                            Some((rows, (centre, unit))) => Some((
                                centre,
                                pooled_unit(unit, rows, pooled.map(|(_, u)| u), prior),
                            )),
                            None => pooled,
                        }
                    })
                    .collect(),
            );
        }
        Tables { baselines, charts }
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
        let [trend, seasonal, resid, state_dev, cusum] = self.idx.baseline[sig.si];
        if cusum.is_some() || self.idx.chart[sig.si].iter().any(Option::is_some) {
            self.charts(dev, sig, cusum, outs);
        }
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

    /// The control charts of one signal of one device: each observed value's
    /// standardised residual z = (value − centre − seasonal) / unit updates one
    /// time-aware EWMA per chart half-life and the tabular CUSUM
    /// (S⁺ = max(0, S⁺ + z − k), S⁻ = max(0, S⁻ − z − k)). A missing value, or a
    /// row in a state without a baseline, updates nothing: the charts keep their
    /// last values (NaN before the first update).
    fn charts(
        &self,
        dev: &DeviceRows<'_>,
        sig: &SignalRows<'_>,
        cusum: Option<usize>,
        outs: &mut [Vec<f64>],
    ) {
        let (a, ts, x) = (dev.start, dev.ts, sig.raw);
        let profile = &self.seasonal[sig.si];
        let table = &self.tables.charts[dev.code as usize];
        let nsig = self.idx.baseline.len();
        let slots = &self.idx.chart[sig.si];
        let mut ews: Vec<Ew> = self
            .checked
            .resolved
            .chart_halflives_us
            .iter()
            .map(|&h| Ew::new(h as f64))
            .collect();
        let k = self.checked.params().chart_cusum_k;
        let (mut hi, mut lo) = (0.0_f64, 0.0_f64);
        let mut seen = false;
        for i in 0..ts.len() {
            let key = dev.states.map_or(0, |st| 1 + st[i] as usize);
            if let (true, Some((centre, unit))) = (x[i].is_finite(), table[key * nsig + sig.si]) {
                let z = (x[i] - centre - profile.at(ts[i])) / unit;
                if z.is_finite() {
                    for ew in &mut ews {
                        ew.update(ts[i], z);
                    }
                    hi = (hi + z - k).max(0.0);
                    lo = (lo - z - k).max(0.0);
                    seen = true;
                }
            }
            for (slot, ew) in slots.iter().zip(&ews) {
                if let Some(c) = slot {
                    outs[*c][a + i] = ew.mean;
                }
            }
            if let Some(c) = cusum {
                outs[c][a + i] = match (seen, hi >= lo) {
                    (false, _) => f64::NAN,
                    (true, true) => hi,
                    (true, false) => -lo,
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

#[cfg(test)]
mod tests {
    use super::pooled_unit;

    #[test]
    fn a_device_s_spread_is_pooled_with_the_fleet_s_by_its_rows() {
        // Equal weights: the root of the mean of the variances.
        let half = pooled_unit(1.0, 30, Some(7.0), 30.0);
        assert!((half - 25.0_f64.sqrt()).abs() < 1e-12, "{half}");
        // A few calm rows get nearly the fleet's spread, many keep nearly their own.
        assert!(pooled_unit(0.25, 18, Some(7.0), 30.0) > 5.0);
        assert!((pooled_unit(4.0, 30_000, Some(7.0), 30.0) - 4.0).abs() < 0.01);
        // No prior, or no fleet spread in that state: the device's own.
        assert_eq!(pooled_unit(0.25, 18, Some(7.0), 0.0), 0.25);
        assert_eq!(pooled_unit(0.25, 18, None, 30.0), 0.25);
    }
}
