//! Spectral features over a trailing window of rows, with one FFT plan per
//! transform and buffers reused across windows.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use itap_telemetry::MICROS_PER_SEC;

/// A planned real FFT of `n` points and its Hann taper; shared by all threads.
#[derive(Clone)]
pub(crate) struct SpectralPlan {
    fft: Arc<dyn RealToComplex<f64>>,
    taper: Vec<f64>,
    /// Sum of the squared taper, for the variance normalisation.
    taper_power: f64,
    /// Weight of each bin in a one-sided spectrum: 2, or 1 for DC and Nyquist.
    weights: Vec<f64>,
}

impl std::fmt::Debug for SpectralPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralPlan")
            .field("n", &self.taper.len())
            .finish()
    }
}

impl SpectralPlan {
    pub(crate) fn new(n: usize) -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        // Periodic Hann window.
        let taper: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
            .collect();
        let taper_power = taper.iter().map(|w| w * w).sum();
        let bins = n / 2 + 1;
        let weights = (0..bins)
            .map(|k| {
                if k == 0 || (n.is_multiple_of(2) && k == n / 2) {
                    1.0
                } else {
                    2.0
                }
            })
            .collect();
        SpectralPlan {
            fft,
            taper,
            taper_power,
            weights,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.taper.len()
    }

    /// Buffers for one thread.
    pub(crate) fn buffers(&self) -> SpectralBuffers {
        SpectralBuffers {
            input: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            scratch: self.fft.make_scratch_vec(),
            power: vec![0.0; self.weights.len()],
        }
    }

    /// The spectrum of `values` (exactly `len()` of them, none NaN) sampled over
    /// `span_us` from the first to the last, into `out`.
    pub(crate) fn compute(
        &self,
        values: &[f64],
        span_us: i64,
        bands: &[[f64; 2]],
        buf: &mut SpectralBuffers,
        out: &mut SpectralValues,
    ) {
        let n = self.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        for ((dst, &v), &w) in buf.input.iter_mut().zip(values).zip(&self.taper) {
            *dst = (v - mean) * w;
        }
        // The buffers come from this plan, so their lengths are right and the
        // transform cannot fail; a failure leaves the values NaN.
        if self
            .fft
            .process_with_scratch(&mut buf.input, &mut buf.spectrum, &mut buf.scratch)
            .is_err()
        {
            out.set_nan();
            return;
        }
        let mut total = 0.0;
        for (k, (p, c)) in buf.power.iter_mut().zip(&buf.spectrum).enumerate() {
            *p = if k == 0 {
                0.0
            } else {
                norm_sqr(*c) * self.weights[k]
            };
            total += *p;
        }
        out.energy = total / (n as f64 * self.taper_power);
        // Sampling rate from the window's own time span: (n - 1) steps.
        let fs = if span_us > 0 {
            (n - 1) as f64 * MICROS_PER_SEC as f64 / span_us as f64
        } else {
            f64::NAN
        };
        let df = fs / n as f64;
        if total > 0.0 {
            let mut best = 1;
            let mut weighted = 0.0;
            for (k, &p) in buf.power.iter().enumerate().skip(1) {
                if p > buf.power[best] {
                    best = k;
                }
                weighted += k as f64 * p;
            }
            out.dominant_hz = best as f64 * df;
            out.centroid_hz = weighted / total * df;
        } else {
            out.dominant_hz = 0.0;
            out.centroid_hz = 0.0;
        }
        out.bands.clear();
        for &[lo, hi] in bands {
            let share = if total > 0.0 && df.is_finite() {
                let e: f64 = buf
                    .power
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|&(k, _)| {
                        let f = k as f64 * df;
                        f >= lo && f < hi
                    })
                    .map(|(_, p)| p)
                    .sum();
                e / total
            } else if total > 0.0 {
                f64::NAN
            } else {
                0.0
            };
            out.bands.push(share);
        }
    }
}

fn norm_sqr(c: Complex<f64>) -> f64 {
    c.re * c.re + c.im * c.im
}

/// One thread's FFT buffers.
pub(crate) struct SpectralBuffers {
    input: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
}

/// The features of one spectrum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpectralValues {
    pub(crate) energy: f64,
    pub(crate) dominant_hz: f64,
    pub(crate) centroid_hz: f64,
    pub(crate) bands: Vec<f64>,
}

impl SpectralValues {
    pub(crate) fn nan(bands: usize) -> Self {
        SpectralValues {
            energy: f64::NAN,
            dominant_hz: f64::NAN,
            centroid_hz: f64::NAN,
            bands: vec![f64::NAN; bands],
        }
    }

    pub(crate) fn set_nan(&mut self) {
        self.energy = f64::NAN;
        self.dominant_hz = f64::NAN;
        self.centroid_hz = f64::NAN;
        self.bands.iter_mut().for_each(|b| *b = f64::NAN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spectrum(values: &[f64], step_s: f64, bands: &[[f64; 2]]) -> SpectralValues {
        let plan = SpectralPlan::new(values.len());
        let mut buf = plan.buffers();
        let mut out = SpectralValues::nan(bands.len());
        let span = ((values.len() - 1) as f64 * step_s * 1e6) as i64;
        plan.compute(values, span, bands, &mut buf, &mut out);
        out
    }

    #[test]
    fn a_sine_has_its_frequency_in_hertz() {
        // 64 samples at 10 s; a 80 s period is 0.0125 Hz = bin 8 of 64 at 0.1 Hz.
        let x: Vec<f64> = (0..64)
            .map(|i| 5.0 + 2.0 * (std::f64::consts::TAU * i as f64 * 10.0 / 80.0).sin())
            .collect();
        let s = spectrum(&x, 10.0, &[[0.0, 0.01], [0.01, 0.02]]);
        // fs is estimated as 63 steps over the span: (n-1)/span.
        let df = 0.1 / 64.0;
        assert!((s.dominant_hz - 8.0 * df).abs() < 1e-12, "{s:?}");
        assert!((s.centroid_hz - 8.0 * df).abs() < 2.0 * df, "{s:?}");
        // Energy estimates the variance of the sine, 2^2 / 2 = 2.
        assert!((s.energy - 2.0).abs() < 0.05, "{s:?}");
        assert!(s.bands[1] > 0.95 && s.bands[0] < 0.05, "{s:?}");
    }

    #[test]
    fn a_constant_window_has_no_energy_and_zero_frequencies() {
        let s = spectrum(&[3.0; 32], 1.0, &[[0.0, 1.0]]);
        assert_eq!(s.energy, 0.0);
        assert_eq!((s.dominant_hz, s.centroid_hz), (0.0, 0.0));
        assert_eq!(s.bands, [0.0]);
    }

    #[test]
    fn energy_estimates_the_variance_of_noise() {
        // A deterministic pseudo-random sequence with variance close to 1/12.
        let mut state = 12345u64;
        let x: Vec<f64> = (0..4096)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let s = spectrum(&x, 1.0, &[]);
        assert!((s.energy - 1.0 / 12.0).abs() < 0.01, "{s:?}");
    }
}
