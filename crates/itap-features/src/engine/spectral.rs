//! Spectral features of a signal: every `hop` rows, the spectrum of the trailing
//! window of imputed values ([`crate::spectral`] computes it), held until the
//! next hop.

use super::Ctx;
use super::rows::{DeviceRows, SignalRows};
use crate::params::FeatureKind;
use crate::spectral::{SpectralBuffers, SpectralPlan, SpectralValues};

/// The kinds computed here, in the order of their slots; the band shares
/// ([`FeatureKind::SpecBands`]) have one slot per band.
pub(super) const KINDS: [FeatureKind; 3] = [
    FeatureKind::SpecEnergy,
    FeatureKind::SpecDominantHz,
    FeatureKind::SpecCentroidHz,
];

impl Ctx<'_> {
    /// The spectral features of one signal of one device.
    pub(super) fn spectral_features(
        &self,
        dev: &DeviceRows<'_>,
        sig: &SignalRows<'_>,
        plan: &SpectralPlan,
        buf: &mut SpectralBuffers,
        outs: &mut [Vec<f64>],
    ) {
        let spec = self.idx.spec[sig.si];
        let bands_idx = &self.idx.bands[sig.si];
        if spec.iter().all(Option::is_none) && bands_idx.iter().all(Option::is_none) {
            return;
        }
        let bands = &self.checked.params().spectral_bands;
        let hop = self.checked.params().spectral_hop;
        let n = plan.len();
        let (ts, imp) = (dev.ts, sig.imputed);
        let mut cur = SpectralValues::nan(bands.len());
        for j in 0..ts.len() {
            if j + 1 >= n && (j + 1 - n).is_multiple_of(hop) {
                let w = &imp[j + 1 - n..=j];
                if w.iter().all(|v| v.is_finite()) {
                    plan.compute(w, ts[j] - ts[j + 1 - n], bands, buf, &mut cur);
                } else {
                    cur.set_nan();
                }
            }
            let i = dev.start + j;
            let vals = [cur.energy, cur.dominant_hz, cur.centroid_hz];
            for (c, v) in spec.iter().zip(vals) {
                if let Some(c) = *c {
                    outs[c][i] = v;
                }
            }
            for (c, v) in bands_idx.iter().zip(&cur.bands) {
                if let Some(c) = *c {
                    outs[c][i] = *v;
                }
            }
        }
    }
}
