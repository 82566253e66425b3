//! The catalogue: every feature's name, source and meaning, known before any data.

use serde::{Deserialize, Serialize};

use itap_telemetry::Schema;

use crate::error::{Error, Result};
use crate::params::{CheckedFeatures, FeatureKind, Scope, Window, duration_label};

/// One feature (one column of a [`FeatureMatrix`](crate::FeatureMatrix)).
///
/// Names follow one scheme: `{source}__{kind}` or `{source}__{kind}__{window}`,
/// where the source is a signal, `state` or `error_code` (names a signal may not
/// take), and the window is a duration (`5m`) or a row count (`30rows`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureInfo {
    /// Column name, for example `temp_c__mean__5m`.
    pub name: String,
    /// The signal it is made from, or `state` / `error_code` for device-level features.
    pub source: String,
    /// The kind of feature.
    pub kind: FeatureKind,
    /// The window, half-life or spectral window in the name, if any.
    pub window: Option<String>,
    /// What it means, in one line.
    pub meaning: String,
}

/// What the engine computes for one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColSpec {
    /// A windowed statistic of signal `sig` (index into the plan's signals) over window `win`.
    SignalWindow {
        sig: usize,
        win: usize,
        kind: FeatureKind,
    },
    /// A point feature of signal `sig`.
    Signal { sig: usize, kind: FeatureKind },
    /// A spectral feature of signal `sig`; `band` for [`FeatureKind::SpecBands`].
    Spectral {
        sig: usize,
        kind: FeatureKind,
        band: usize,
    },
    /// A device-level feature.
    Device { kind: FeatureKind },
    /// A windowed device-level feature.
    DeviceWindow { win: usize, kind: FeatureKind },
    /// A control-chart EWMA of signal `sig` with chart half-life number `hl`.
    Chart { sig: usize, hl: usize },
}

/// The columns to compute, in catalogue order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The featurised signals, in schema order.
    pub(crate) signals: Vec<String>,
    pub(crate) columns: Vec<(FeatureInfo, ColSpec)>,
}

impl Plan {
    pub(crate) fn infos(&self) -> Vec<FeatureInfo> {
        self.columns.iter().map(|(i, _)| i.clone()).collect()
    }
}

/// The catalogue of the features that `params` make from data with `schema`, in
/// column order: for each signal (schema order) its windowed statistics (per
/// window), point features and spectral features, then the device-level features.
///
/// # Errors
/// [`Error::UnknownSignal`] when `params` name a signal the schema lacks.
pub fn catalogue(params: &CheckedFeatures, schema: &Schema) -> Result<Vec<FeatureInfo>> {
    Ok(plan(params, &select_signals(params, schema)?).infos())
}

/// The signals to featurise: the schema's, or the ones the parameters name (in
/// schema order).
pub(crate) fn select_signals(params: &CheckedFeatures, schema: &Schema) -> Result<Vec<String>> {
    let wanted = &params.params().signals;
    for s in wanted {
        if schema.index_of(s).is_none() {
            return Err(unknown_signal(
                s,
                schema,
                "remove it from features.signals or leave the list empty for every signal",
            ));
        }
    }
    Ok(schema
        .names()
        .filter(|n| wanted.is_empty() || wanted.iter().any(|w| w == n))
        .map(str::to_owned)
        .collect())
}

pub(crate) fn unknown_signal(signal: &str, schema: &Schema, hint: &'static str) -> Error {
    Error::UnknownSignal {
        signal: signal.to_owned(),
        available: schema.names().collect::<Vec<_>>().join(", "),
        hint,
    }
}

/// The plan for `signals` (already resolved against a schema).
pub(crate) fn plan(params: &CheckedFeatures, signals: &[String]) -> Plan {
    let r = &params.resolved;
    let p = params.params();
    let mut columns = Vec::new();
    let spec_label = format!("{}rows", p.spectral_window);
    let halflife = duration_label(r.ewm_halflife_us);
    for (si, sig) in signals.iter().enumerate() {
        for (wi, w) in r.windows.iter().enumerate() {
            for &kind in r.kinds.iter().filter(|k| k.scope() == Scope::SignalWindow) {
                let label = w.label();
                columns.push((
                    FeatureInfo {
                        name: format!("{sig}__{kind}__{label}"),
                        source: sig.clone(),
                        kind,
                        window: Some(label),
                        meaning: window_meaning(kind, sig, *w, p.min_periods),
                    },
                    ColSpec::SignalWindow {
                        sig: si,
                        win: wi,
                        kind,
                    },
                ));
            }
        }
        for &kind in r.kinds.iter().filter(|k| k.scope() == Scope::Signal) {
            let (name, window) = match kind {
                FeatureKind::Ewm | FeatureKind::Trend => {
                    (format!("{sig}__{kind}__{halflife}"), Some(halflife.clone()))
                }
                _ => (format!("{sig}__{kind}"), None),
            };
            columns.push((
                FeatureInfo {
                    name,
                    source: sig.clone(),
                    kind,
                    window,
                    meaning: point_meaning(kind, sig, &halflife, &duration_label(r.fill_limit_us)),
                },
                ColSpec::Signal { sig: si, kind },
            ));
        }
        if r.kinds.contains(&FeatureKind::ChartEwma) {
            for (hl, &us) in r.chart_halflives_us.iter().enumerate() {
                let label = duration_label(us);
                columns.push((
                    FeatureInfo {
                        name: format!("{sig}__{}__{label}", FeatureKind::ChartEwma),
                        source: sig.clone(),
                        kind: FeatureKind::ChartEwma,
                        window: Some(label.clone()),
                        meaning: if us == 0 {
                            format!(
                                "control chart of {sig} (Shewhart): its standardised residual in this row: (value - the device's training level in its state - the seasonal profile) / the residual's training spread"
                            )
                        } else {
                            format!(
                                "control chart of {sig}: exponentially weighted mean (half-life {label} of elapsed time) of its standardised residual: (value - the device's training level in its state - the seasonal profile) / the residual's training spread"
                            )
                        },
                    },
                    ColSpec::Chart { sig: si, hl },
                ));
            }
        }
        for &kind in r.kinds.iter().filter(|k| k.scope() == Scope::Spectral) {
            let hop = p.spectral_hop;
            let n = p.spectral_window;
            if kind == FeatureKind::SpecBands {
                for (bi, [lo, hi]) in p.spectral_bands.iter().enumerate() {
                    columns.push((
                        FeatureInfo {
                            name: format!("{sig}__spec_band_{lo}_{hi}hz__{spec_label}"),
                            source: sig.clone(),
                            kind,
                            window: Some(spec_label.clone()),
                            meaning: format!(
                                "share of {sig}'s non-DC spectral energy in [{lo}, {hi}) Hz over its last {n} rows (updated every {hop} rows)"
                            ),
                        },
                        ColSpec::Spectral {
                            sig: si,
                            kind,
                            band: bi,
                        },
                    ));
                }
                continue;
            }
            let what = match kind {
                FeatureKind::SpecEnergy => {
                    format!("spectral energy without DC (variance estimate, Hann window) of {sig}")
                }
                FeatureKind::SpecDominantHz => {
                    format!("frequency in Hz of the strongest non-DC spectral bin of {sig}")
                }
                _ => format!("power-weighted mean frequency in Hz of {sig}'s non-DC spectrum"),
            };
            columns.push((
                FeatureInfo {
                    name: format!("{sig}__{kind}__{spec_label}"),
                    source: sig.clone(),
                    kind,
                    window: Some(spec_label.clone()),
                    meaning: format!("{what} over its last {n} rows (updated every {hop} rows)"),
                },
                ColSpec::Spectral {
                    sig: si,
                    kind,
                    band: 0,
                },
            ));
        }
    }
    let cap = duration_label(r.elapsed_cap_us);
    for &kind in &r.kinds {
        match kind.scope() {
            Scope::Device => {
                let (name, source, meaning) = match kind {
                    FeatureKind::ErrorStreak => (
                        "error_code__streak",
                        "error_code",
                        "consecutive rows, up to this one, with a non-zero error code (0 when this row is OK)".to_owned(),
                    ),
                    FeatureKind::SinceError => (
                        "error_code__since_s",
                        "error_code",
                        format!("seconds since the last non-zero error code, capped at {cap} (the cap when none was seen)"),
                    ),
                    _ => (
                        "state__since_change_s",
                        "state",
                        format!("seconds since the state last changed (or since the device's first row), capped at {cap}"),
                    ),
                };
                columns.push((
                    FeatureInfo {
                        name: name.to_owned(),
                        source: source.to_owned(),
                        kind,
                        window: None,
                        meaning,
                    },
                    ColSpec::Device { kind },
                ));
            }
            Scope::DeviceWindow => {
                for (wi, w) in r.windows.iter().enumerate() {
                    let label = w.label();
                    let (name, meaning) = match kind {
                        FeatureKind::StateChanges => (
                            format!("state__changes__{label}"),
                            format!("state changes within {}", window_words(*w)),
                        ),
                        _ => (
                            format!("state__share__{label}"),
                            format!(
                                "share of the rows within {} in the current state",
                                window_words(*w)
                            ),
                        ),
                    };
                    columns.push((
                        FeatureInfo {
                            name,
                            source: "state".to_owned(),
                            kind,
                            window: Some(label),
                            meaning,
                        },
                        ColSpec::DeviceWindow { win: wi, kind },
                    ));
                }
            }
            _ => {}
        }
    }
    Plan {
        signals: signals.to_vec(),
        columns,
    }
}

fn window_words(w: Window) -> String {
    match w {
        Window::Time(_) => format!("the trailing {}", w.label()),
        Window::Rows(n) => format!("the last {n} rows"),
    }
}

fn window_meaning(kind: FeatureKind, sig: &str, w: Window, min_periods: usize) -> String {
    let within = window_words(w);
    let need = if min_periods > 1 {
        format!(", NaN below {min_periods} observations")
    } else {
        String::new()
    };
    match kind {
        FeatureKind::Mean => format!("mean of {sig} over {within} (observed values{need})"),
        FeatureKind::Std => format!(
            "sample standard deviation (ddof 1) of {sig} over {within} (NaN below 2 observations)"
        ),
        FeatureKind::Min => format!("minimum of {sig} over {within}{need}"),
        FeatureKind::Max => format!("maximum of {sig} over {within}{need}"),
        FeatureKind::Delta => format!("{sig} minus its mean over {within}"),
        _ => format!(
            "z-score of {sig} against {within}: (value - mean) / std, 0 when the std is 0 or undefined"
        ),
    }
}

fn point_meaning(kind: FeatureKind, sig: &str, halflife: &str, fill: &str) -> String {
    match kind {
        FeatureKind::Diff => format!("{sig} minus its previous value on the device"),
        FeatureKind::Rate => format!("change of {sig} since the device's previous row, per second"),
        FeatureKind::Ewm => {
            format!("exponentially weighted mean of {sig}, half-life {halflife} of elapsed time")
        }
        FeatureKind::Trend => format!(
            "trend of {sig}: exponentially weighted mean (half-life {halflife}) of the value less its seasonal profile"
        ),
        FeatureKind::Seasonal => format!(
            "{sig}'s seasonal profile at this row's phase, learned on the training span (0 without a period)"
        ),
        FeatureKind::Resid => {
            format!("residual of {sig}: value minus seasonal minus the trend before this row")
        }
        FeatureKind::StateDev => format!(
            "{sig}'s deviation from the device's training baseline for the current state, in robust scales (median, MAD)"
        ),
        FeatureKind::Missing => format!(
            "1 when {sig} is missing in this row (its point features then use the last observation, up to {fill} old)"
        ),
        FeatureKind::ChartCusum => format!(
            "control chart of {sig}: tabular CUSUM of its standardised residual (upper sum when it is the larger, else minus the lower sum)"
        ),
        _ => format!("consecutive rows, up to this one, in which {sig} is missing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::FeatureParams;
    use itap_telemetry::ParamGuard;

    #[test]
    fn the_default_catalogue_has_16_features_per_signal_and_4_per_device() {
        let params = FeatureParams::default().check().unwrap();
        let schema = Schema::default();
        let cat = catalogue(&params, &schema).unwrap();
        assert_eq!(cat.len(), 16 * 5 + 4);
        assert!(cat.iter().any(|f| f.name == "temp_c__chart_ewma__45s"));
        let shewhart = cat
            .iter()
            .find(|f| f.name == "temp_c__chart_ewma__0s")
            .unwrap();
        assert!(
            shewhart.meaning.contains("Shewhart"),
            "{}",
            shewhart.meaning
        );
        assert_eq!(cat[0].name, "rpm__mean__5m");
        assert!(cat.iter().any(|f| f.name == "temp_c__z__5m"));
        assert!(
            cat.iter()
                .any(|f| f.name == "vibration_g__spec_dominant_hz__32rows")
        );
        assert_eq!(cat.last().unwrap().name, "state__since_change_s");
        let mut names: Vec<_> = cat.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cat.len(), "names are unique");
        assert!(
            cat.iter()
                .all(|f| !f.meaning.is_empty() && !f.meaning.contains('\n'))
        );
    }

    #[test]
    fn the_schema_is_data() {
        let schema = Schema::new(vec![
            itap_telemetry::Signal::new("pressure_bar"),
            itap_telemetry::Signal::new("flow"),
        ])
        .unwrap();
        let params = FeatureParams::default()
            .windows(["30rows", "1h"])
            .kinds([
                FeatureKind::Mean,
                FeatureKind::SpecBands,
                FeatureKind::StateShare,
            ])
            .spectral_bands([[0.0, 0.01], [0.01, 0.05]])
            .check()
            .unwrap();
        let names: Vec<String> = catalogue(&params, &schema)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            [
                "pressure_bar__mean__30rows",
                "pressure_bar__mean__1h",
                "pressure_bar__spec_band_0_0.01hz__32rows",
                "pressure_bar__spec_band_0.01_0.05hz__32rows",
                "flow__mean__30rows",
                "flow__mean__1h",
                "flow__spec_band_0_0.01hz__32rows",
                "flow__spec_band_0.01_0.05hz__32rows",
                "state__share__30rows",
                "state__share__1h",
            ]
        );
        let only_flow = FeatureParams::default().signals(["flow"]).check().unwrap();
        assert!(
            catalogue(&only_flow, &schema)
                .unwrap()
                .iter()
                .all(|f| !f.name.starts_with("pressure"))
        );
        let e = catalogue(
            &FeatureParams::default().signals(["rpm"]).check().unwrap(),
            &schema,
        )
        .unwrap_err();
        assert!(e.to_string().contains("pressure_bar, flow"), "{e}");
    }
}
