//! Where each feature goes: the output column of every quantity the parts
//! compute, found once per transform from the plan.

use crate::catalogue::{ColSpec, Plan};
use crate::params::{CheckedFeatures, FeatureKind};

use super::{baseline, device, point, spectral, window};

/// Output columns of one part's kinds, in the order of that part's `KINDS`
/// (`None` when not asked for).
type Slots<const N: usize> = [Option<usize>; N];

/// The output column of each computed quantity.
#[derive(Debug, Clone)]
pub(super) struct Idx {
    /// `[signal][window]`.
    pub(super) win: Vec<Vec<Slots<{ window::KINDS.len() }>>>,
    pub(super) point: Vec<Slots<{ point::KINDS.len() }>>,
    pub(super) baseline: Vec<Slots<{ baseline::KINDS.len() }>>,
    pub(super) spec: Vec<Slots<{ spectral::KINDS.len() }>>,
    /// `[signal][band]`.
    pub(super) bands: Vec<Vec<Option<usize>>>,
    pub(super) dev: Slots<{ device::KINDS.len() }>,
    /// `[window]`.
    pub(super) dev_win: Vec<Slots<{ device::WINDOW_KINDS.len() }>>,
    /// Control-chart EWMAs, `[signal][half-life]`.
    pub(super) chart: Vec<Vec<Option<usize>>>,
}

impl Idx {
    pub(super) fn new(plan: &Plan, checked: &CheckedFeatures) -> Idx {
        let ns = plan.signals.len();
        let nw = checked.windows().len();
        let nb = checked.params().spectral_bands.len();
        let nh = checked.resolved.chart_halflives_us.len();
        let mut idx = Idx {
            win: vec![vec![[None; _]; nw]; ns],
            point: vec![[None; _]; ns],
            baseline: vec![[None; _]; ns],
            spec: vec![[None; _]; ns],
            bands: vec![vec![None; nb]; ns],
            dev: [None; _],
            dev_win: vec![[None; _]; nw],
            chart: vec![vec![None; nh]; ns],
        };
        for (c, (_, spec)) in plan.columns.iter().enumerate() {
            let at = match *spec {
                ColSpec::SignalWindow { sig, win, kind } => {
                    slot(&mut idx.win[sig][win], &window::KINDS, kind)
                }
                ColSpec::Signal { sig, kind } => slot(&mut idx.point[sig], &point::KINDS, kind)
                    .or_else(|| slot(&mut idx.baseline[sig], &baseline::KINDS, kind)),
                ColSpec::Spectral {
                    sig,
                    kind: FeatureKind::SpecBands,
                    band,
                } => idx.bands[sig].get_mut(band),
                ColSpec::Spectral { sig, kind, .. } => {
                    slot(&mut idx.spec[sig], &spectral::KINDS, kind)
                }
                ColSpec::Device { kind } => slot(&mut idx.dev, &device::KINDS, kind),
                ColSpec::DeviceWindow { win, kind } => {
                    slot(&mut idx.dev_win[win], &device::WINDOW_KINDS, kind)
                }
                ColSpec::Chart { sig, hl } => idx.chart[sig].get_mut(hl),
            };
            if let Some(at) = at {
                *at = Some(c);
            }
        }
        idx
    }

    pub(super) fn any_spectral(&self) -> bool {
        self.spec.iter().any(|s| s.iter().any(Option::is_some))
            || self.bands.iter().any(|b| b.iter().any(Option::is_some))
    }
}

/// The slot of `k` among `kinds`, if it is one of them.
fn slot<'s>(
    slots: &'s mut [Option<usize>],
    kinds: &[FeatureKind],
    k: FeatureKind,
) -> Option<&'s mut Option<usize>> {
    let i = kinds.iter().position(|&x| x == k)?;
    slots.get_mut(i)
}

#[cfg(test)]
mod tests {
    use itap_telemetry::{ParamGuard, Schema, Signal};

    use super::*;
    use crate::catalogue::plan;
    use crate::params::FeatureParams;

    #[test]
    fn every_column_of_every_kind_is_computed_by_exactly_one_part() {
        let checked = FeatureParams::default()
            .kinds(FeatureKind::ALL)
            .windows(["30s", "3rows"])
            .spectral_bands([[0.0, 0.1], [0.1, 0.5]])
            .check()
            .unwrap();
        let schema = Schema::new(vec![Signal::new("a"), Signal::new("b")]).unwrap();
        let signals: Vec<String> = schema.names().map(str::to_owned).collect();
        let plan = plan(&checked, &signals);
        let idx = Idx::new(&plan, &checked);
        let mut seen = vec![0; plan.columns.len()];
        let slots = idx
            .win
            .iter()
            .flatten()
            .flat_map(|s| s.iter())
            .chain(idx.point.iter().flatten())
            .chain(idx.baseline.iter().flatten())
            .chain(idx.spec.iter().flatten())
            .chain(idx.bands.iter().flatten())
            .chain(idx.dev.iter())
            .chain(idx.dev_win.iter().flatten())
            .chain(idx.chart.iter().flatten());
        for c in slots.flatten() {
            seen[*c] += 1;
        }
        for (c, (info, _)) in plan.columns.iter().enumerate() {
            assert_eq!(seen[c], 1, "{} is computed {} times", info.name, seen[c]);
        }
    }
}
