//! Feature parameters: the `[features]` config section, checked once.

use std::fmt;

use serde::{Deserialize, Serialize};

use itap_telemetry::{MICROS_PER_SEC, ParamGuard, parse_duration};

use crate::error::{Error, Result};

/// One kind of feature. A kind expands to one column per signal (and per window,
/// for windowed kinds), or to one column per device-level source; the catalogue
/// ([`catalogue`](crate::catalogue)) lists the expansion with a meaning for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Rolling mean of the observed values in the window.
    Mean,
    /// Rolling sample standard deviation (ddof = 1) in the window.
    Std,
    /// Rolling minimum in the window.
    Min,
    /// Rolling maximum in the window.
    Max,
    /// Value minus the window's rolling mean.
    Delta,
    /// Value minus the rolling mean, over the rolling std (0 when the std is 0 or undefined).
    Z,
    /// First difference: value minus the device's previous value.
    Diff,
    /// First difference per second of elapsed time.
    Rate,
    /// Exponentially weighted mean, with a half-life in time.
    Ewm,
    /// Trend: exponentially weighted mean of the deseasonalised value.
    Trend,
    /// The seasonal profile's value at this row's phase (learned on the training span).
    Seasonal,
    /// Residual: value minus seasonal minus the trend before this row.
    Resid,
    /// Deviation from the device's baseline for its current state, in baseline scales.
    StateDev,
    /// 1 when the signal is missing in this row, else 0.
    Missing,
    /// Consecutive rows, up to this one, in which the signal is missing.
    MissingRun,
    /// Spectral energy without DC over the trailing spectral window.
    SpecEnergy,
    /// Frequency (Hz) of the strongest non-DC spectral bin.
    SpecDominantHz,
    /// Power-weighted mean frequency (Hz) of the non-DC spectrum.
    SpecCentroidHz,
    /// Share of the non-DC energy in each configured band (one column per band).
    SpecBands,
    /// Consecutive rows, up to this one, with a non-zero error code.
    ErrorStreak,
    /// Seconds since the last non-zero error code (capped).
    SinceError,
    /// State changes within the window.
    StateChanges,
    /// Seconds since the last state change (capped).
    SinceStateChange,
    /// Share of the window's rows in the current state.
    StateShare,
    /// Control chart: exponentially weighted mean of the standardised residual
    /// (value − the device's level in its state − the seasonal profile, over the
    /// residual's training spread), one column per chart half-life.
    ChartEwma,
    /// Control chart: tabular CUSUM of the standardised residual (the larger of
    /// the upper and lower sums, signed).
    ChartCusum,
}

/// Where a kind's columns come from and how they are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `{signal}__{kind}__{window}`, once per signal and window.
    SignalWindow,
    /// `{signal}__{kind}`, once per signal.
    Signal,
    /// `{signal}__{kind}__{N}rows`, once per signal (spectral window).
    Spectral,
    /// `{source}__{kind}`, once (device level).
    Device,
    /// `{source}__{kind}__{window}`, once per window (device level).
    DeviceWindow,
    /// `{signal}__{kind}__{half-life}`, once per signal and chart half-life.
    SignalChart,
}

impl FeatureKind {
    /// Every kind, in catalogue order.
    pub const ALL: [FeatureKind; 26] = [
        FeatureKind::Mean,
        FeatureKind::Std,
        FeatureKind::Min,
        FeatureKind::Max,
        FeatureKind::Delta,
        FeatureKind::Z,
        FeatureKind::Diff,
        FeatureKind::Rate,
        FeatureKind::Ewm,
        FeatureKind::Trend,
        FeatureKind::Seasonal,
        FeatureKind::Resid,
        FeatureKind::StateDev,
        FeatureKind::Missing,
        FeatureKind::MissingRun,
        FeatureKind::SpecEnergy,
        FeatureKind::SpecDominantHz,
        FeatureKind::SpecCentroidHz,
        FeatureKind::SpecBands,
        FeatureKind::ErrorStreak,
        FeatureKind::SinceError,
        FeatureKind::StateChanges,
        FeatureKind::SinceStateChange,
        FeatureKind::StateShare,
        FeatureKind::ChartEwma,
        FeatureKind::ChartCusum,
    ];

    /// The default set: 16 columns per signal (13 with one window and three
    /// chart half-lives) and 4 device-level columns (84 for the five demo signals).
    pub const DEFAULT: [FeatureKind; 18] = [
        FeatureKind::Mean,
        FeatureKind::Std,
        FeatureKind::Min,
        FeatureKind::Max,
        FeatureKind::Delta,
        FeatureKind::Z,
        FeatureKind::Rate,
        FeatureKind::Resid,
        FeatureKind::StateDev,
        FeatureKind::MissingRun,
        FeatureKind::SpecEnergy,
        FeatureKind::SpecDominantHz,
        FeatureKind::SpecCentroidHz,
        FeatureKind::ErrorStreak,
        FeatureKind::SinceError,
        FeatureKind::StateChanges,
        FeatureKind::SinceStateChange,
        FeatureKind::ChartEwma,
    ];

    /// The name as written in config files and in feature names.
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureKind::Mean => "mean",
            FeatureKind::Std => "std",
            FeatureKind::Min => "min",
            FeatureKind::Max => "max",
            FeatureKind::Delta => "delta",
            FeatureKind::Z => "z",
            FeatureKind::Diff => "diff",
            FeatureKind::Rate => "rate",
            FeatureKind::Ewm => "ewm",
            FeatureKind::Trend => "trend",
            FeatureKind::Seasonal => "seasonal",
            FeatureKind::Resid => "resid",
            FeatureKind::StateDev => "state_dev",
            FeatureKind::Missing => "missing",
            FeatureKind::MissingRun => "missing_run",
            FeatureKind::SpecEnergy => "spec_energy",
            FeatureKind::SpecDominantHz => "spec_dominant_hz",
            FeatureKind::SpecCentroidHz => "spec_centroid_hz",
            FeatureKind::SpecBands => "spec_bands",
            FeatureKind::ErrorStreak => "error_streak",
            FeatureKind::SinceError => "since_error",
            FeatureKind::StateChanges => "state_changes",
            FeatureKind::SinceStateChange => "since_state_change",
            FeatureKind::StateShare => "state_share",
            FeatureKind::ChartEwma => "chart_ewma",
            FeatureKind::ChartCusum => "chart_cusum",
        }
    }

    pub(crate) fn scope(self) -> Scope {
        use FeatureKind::*;
        match self {
            Mean | Std | Min | Max | Delta | Z => Scope::SignalWindow,
            Diff | Rate | Ewm | Trend | Seasonal | Resid | StateDev | Missing | MissingRun
            | ChartCusum => Scope::Signal,
            ChartEwma => Scope::SignalChart,
            SpecEnergy | SpecDominantHz | SpecCentroidHz | SpecBands => Scope::Spectral,
            ErrorStreak | SinceError | SinceStateChange => Scope::Device,
            StateChanges | StateShare => Scope::DeviceWindow,
        }
    }
}

impl fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FeatureKind {
    type Err = Error;

    /// Reads a kind by its name (`mean`, `spec_dominant_hz`, …).
    fn from_str(s: &str) -> Result<Self> {
        FeatureKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                Error::param(
                    "kinds",
                    format!(
                        "{s:?} is not a feature kind; the kinds are listed in docs/features.md"
                    ),
                )
            })
    }
}

/// A trailing window: a duration, or a number of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The rows of the device with timestamp in `(t − d, t]`, `d` in microseconds.
    Time(i64),
    /// The device's last `n` rows up to and including this one.
    Rows(usize),
}

impl Window {
    /// Reads `5m`, `90s`, `1h` (see [`parse_duration`]) or `30rows`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] when the text is neither, or is zero.
    pub fn parse(text: &str) -> Result<Window> {
        let t = text.trim();
        let bad = || {
            Error::param(
                "windows",
                format!(
                    "{text:?} is not a window: use a duration such as 5m or 1h, or a row count such as 30rows"
                ),
            )
        };
        let w = if let Some(n) = t.strip_suffix("rows") {
            Window::Rows(n.trim().parse().map_err(|_| bad())?)
        } else {
            Window::Time(parse_duration(t).map_err(|_| bad())?)
        };
        match w {
            Window::Rows(0) | Window::Time(0) => Err(Error::param(
                "windows",
                format!("{text:?}: a window must be longer than zero"),
            )),
            Window::Rows(n) if n > MAX_ROWS_WINDOW => Err(Error::param(
                "windows",
                format!("{text:?}: at most {MAX_ROWS_WINDOW} rows"),
            )),
            Window::Time(us) if us > MAX_TIME_WINDOW_US => Err(Error::param(
                "windows",
                format!("{text:?}: at most 366 days"),
            )),
            w => Ok(w),
        }
    }

    /// The label used in feature names: `5m`, `90s`, `1h`, `30rows`.
    pub fn label(self) -> String {
        match self {
            Window::Time(us) => duration_label(us),
            Window::Rows(n) => format!("{n}rows"),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

const MAX_ROWS_WINDOW: usize = 1_000_000;
const MAX_TIME_WINDOW_US: i64 = 366 * 86_400 * MICROS_PER_SEC;

/// A duration in microseconds in its shortest exact form: `5m`, `90s`, `1h`, `2d`,
/// `250ms`, `7us`.
pub(crate) fn duration_label(us: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (86_400 * MICROS_PER_SEC, "d"),
        (3600 * MICROS_PER_SEC, "h"),
        (60 * MICROS_PER_SEC, "m"),
        (MICROS_PER_SEC, "s"),
        (1000, "ms"),
        (1, "us"),
    ];
    for (size, unit) in UNITS {
        if us != 0 && us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    "0s".to_owned()
}

/// What computes the windowed statistics (mean, std, min, max). Both give the
/// same windows and the same values to within about 1e-12 relative; tests hold
/// them to each other and to pandas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowEngine {
    /// polars' `rolling_mean_by`, `rolling_std_by`, `rolling_min_by` and
    /// `rolling_max_by`, one call per statistic over an index key per window.
    #[default]
    Polars,
    /// One fused pass per device, window and signal for all four statistics
    /// (a two-stack queue of Welford aggregates): several times faster for these
    /// statistics (the whole default set about 1.5 times).
    Native,
}

/// The seasonal period: detected on the training span, fixed, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Chosen on the training span among the candidate periods (see docs/features.md).
    Auto,
    /// No seasonal component.
    Off,
    /// This period, in microseconds.
    Fixed(i64),
}

/// Feature parameters, unchecked: the `[features]` section of the config file.
///
/// Build with [`Default`] and the setters (or deserialize), then [`check`](ParamGuard::check)
/// once; only [`CheckedFeatures`] can fit and transform.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `signals` | `[]` | signals to make features of; `[]` = every signal of the data | names |
/// | `kinds` | the 18 of [`FeatureKind::DEFAULT`] | which features to make (names in docs/features.md) | kinds, no repeats |
/// | `windows` | `["5m"]` | trailing windows for the windowed kinds: durations (`30s`, `5m`, `1h`) or row counts (`30rows`) | > 0, ≤ 366 d or ≤ 1 000 000 rows, no repeats |
/// | `window_engine` | `polars` | what computes mean/std/min/max: `polars` (`rolling_*_by`) or `native` (a fused kernel, faster) | `polars`, `native` |
/// | `min_periods` | 1 | observed (non-missing) values a window needs before its statistics are defined | 1 – 1 000 000 |
/// | `ewm_halflife` | `"10m"` | half-life of the exponentially weighted mean and the trend | > 0 |
/// | `fill_limit` | `"2m"` | how long a missing value is carried forward from the last observation (for the point features); `0s` = never | ≥ 0 |
/// | `spectral_window` | 32 | rows in the trailing spectral window | 4 – 4096 |
/// | `spectral_hop` | 4 | rows between two spectra; rows in between keep the last spectrum | 1 – `spectral_window` |
/// | `spectral_bands` | `[]` | bands `[low, high)` in Hz for `spec_bands` | 0 ≤ low < high, finite |
/// | `period` | `"auto"` | seasonal period: `auto` (detected on the training span), `off`, or a duration | `auto`, `off`, > 0 and ≤ 366 d |
/// | `seasonal_bins` | 24 | phase bins of the seasonal profile | 2 – 1440 |
/// | `period_min_strength` | 0.2 | `auto` keeps a period only if its profile explains at least this share of the variance | 0 – 1 |
/// | `chart_halflives` | `["0s", "15s", "45s"]` | half-lives of the control-chart EWMAs (`chart_ewma`), several time scales at once; `0s` is the Shewhart chart (the row's own standardised residual) | 0 – 366 d, no repeats, ≥ 1 when `chart_ewma` is made |
/// | `chart_cusum_k` | 0.5 | allowance of the CUSUM (`chart_cusum`), in residual spreads: shifts smaller than this do not accumulate | 0 – 10 |
/// | `chart_prior_rows` | 30 | a device's own residual spread in a state is pooled with all devices' spread in that state, which counts as this many training rows: a device seen in a state for only a few rows gets a spread near the fleet's, one seen for thousands keeps its own; `0` = the device's own spread alone (a model saved without this key reads as `0`) | 0 – 1 000 000 |
/// | `elapsed_cap` | `"1h"` | cap of the seconds-since features (and their value before any event) | > 0 |
/// | `train_fraction` | 0.7 | with no training span given (`itap features`), fit on this first share of the time span | 0 – 1 (0 excluded) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureParams {
    /// Signals to featurise; empty = all.
    pub signals: Vec<String>,
    /// Kinds of feature to make.
    pub kinds: Vec<FeatureKind>,
    /// Trailing windows (`5m`, `30rows`, …).
    pub windows: Vec<String>,
    /// What computes the windowed statistics.
    pub window_engine: WindowEngine,
    /// Observations a window needs for its statistics.
    pub min_periods: usize,
    /// Half-life of the EW mean and trend, as a duration.
    pub ewm_halflife: String,
    /// Bound of last-observation-carried-forward, as a duration.
    pub fill_limit: String,
    /// Rows per spectrum.
    pub spectral_window: usize,
    /// Rows between spectra.
    pub spectral_hop: usize,
    /// Bands `[low, high)` in Hz.
    pub spectral_bands: Vec<[f64; 2]>,
    /// `auto`, `off` or a duration.
    pub period: String,
    /// Phase bins of the seasonal profile.
    pub seasonal_bins: usize,
    /// Variance share a detected period must explain.
    pub period_min_strength: f64,
    /// Half-lives of the control-chart EWMAs, as durations.
    pub chart_halflives: Vec<String>,
    /// Allowance of the CUSUM, in residual spreads.
    pub chart_cusum_k: f64,
    /// Weight, in training rows, of all devices' residual spread against a
    /// device's own when the control charts' unit is set.
    #[serde(default = "no_prior_rows")]
    pub chart_prior_rows: f64,
    /// Cap of the seconds-since features, as a duration.
    pub elapsed_cap: String,
    /// Share of the time span fitted on when no training span is given.
    pub train_fraction: f64,
}

impl Default for FeatureParams {
    fn default() -> Self {
        FeatureParams {
            signals: Vec::new(),
            kinds: FeatureKind::DEFAULT.to_vec(),
            windows: vec!["5m".to_owned()],
            window_engine: WindowEngine::Polars,
            min_periods: 1,
            ewm_halflife: "10m".to_owned(),
            fill_limit: "2m".to_owned(),
            spectral_window: 32,
            spectral_hop: 4,
            spectral_bands: Vec::new(),
            period: "auto".to_owned(),
            seasonal_bins: 24,
            period_min_strength: 0.2,
            chart_halflives: vec!["0s".to_owned(), "15s".to_owned(), "45s".to_owned()],
            chart_cusum_k: 0.5,
            chart_prior_rows: 30.0,
            elapsed_cap: "1h".to_owned(),
            train_fraction: 0.7,
        }
    }
}

impl FeatureParams {
    /// Sets the signals to featurise (empty = all).
    pub fn signals(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.signals = v.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the kinds of feature.
    pub fn kinds(mut self, v: impl IntoIterator<Item = FeatureKind>) -> Self {
        self.kinds = v.into_iter().collect();
        self
    }

    /// Sets the windows (`5m`, `1h`, `30rows`, …).
    pub fn windows(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.windows = v.into_iter().map(Into::into).collect();
        self
    }

    /// Sets what computes the windowed statistics.
    pub fn window_engine(mut self, v: WindowEngine) -> Self {
        self.window_engine = v;
        self
    }

    /// Sets the observations a window needs.
    pub fn min_periods(mut self, v: usize) -> Self {
        self.min_periods = v;
        self
    }

    /// Sets the EW half-life (a duration).
    pub fn ewm_halflife(mut self, v: impl Into<String>) -> Self {
        self.ewm_halflife = v.into();
        self
    }

    /// Sets the carry-forward bound (a duration).
    pub fn fill_limit(mut self, v: impl Into<String>) -> Self {
        self.fill_limit = v.into();
        self
    }

    /// Sets the rows per spectrum.
    pub fn spectral_window(mut self, v: usize) -> Self {
        self.spectral_window = v;
        self
    }

    /// Sets the rows between spectra.
    pub fn spectral_hop(mut self, v: usize) -> Self {
        self.spectral_hop = v;
        self
    }

    /// Sets the spectral bands, `[low, high)` in Hz.
    pub fn spectral_bands(mut self, v: impl IntoIterator<Item = [f64; 2]>) -> Self {
        self.spectral_bands = v.into_iter().collect();
        self
    }

    /// Sets the seasonal period: `auto`, `off` or a duration.
    pub fn period(mut self, v: impl Into<String>) -> Self {
        self.period = v.into();
        self
    }

    /// Sets the phase bins of the seasonal profile.
    pub fn seasonal_bins(mut self, v: usize) -> Self {
        self.seasonal_bins = v;
        self
    }

    /// Sets the variance share a detected period must explain.
    pub fn period_min_strength(mut self, v: f64) -> Self {
        self.period_min_strength = v;
        self
    }

    /// Sets the half-lives of the control-chart EWMAs (durations).
    pub fn chart_halflives(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.chart_halflives = v.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the CUSUM allowance, in residual spreads.
    pub fn chart_cusum_k(mut self, v: f64) -> Self {
        self.chart_cusum_k = v;
        self
    }

    /// Sets the weight, in training rows, of all devices' residual spread against
    /// a device's own (0 = the device's own alone).
    pub fn chart_prior_rows(mut self, v: f64) -> Self {
        self.chart_prior_rows = v;
        self
    }

    /// Sets the cap of the seconds-since features (a duration).
    pub fn elapsed_cap(mut self, v: impl Into<String>) -> Self {
        self.elapsed_cap = v.into();
        self
    }

    /// Sets the share of the time span fitted on when no training span is given.
    pub fn train_fraction(mut self, v: f64) -> Self {
        self.train_fraction = v;
        self
    }

    /// Checks every parameter and resolves them into the units the engine uses.
    fn resolve(&self) -> Result<Resolved> {
        let p = self;
        for (i, s) in p.signals.iter().enumerate() {
            if s.trim().is_empty() || p.signals[..i].contains(s) {
                return Err(Error::param(
                    "signals",
                    format!("{s:?} is empty or named twice"),
                ));
            }
        }
        if p.kinds.is_empty() {
            return Err(Error::param("kinds", "name at least one feature kind"));
        }
        let mut kinds = p.kinds.clone();
        kinds.sort();
        if let Some(w) = kinds.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::param("kinds", format!("`{}` is named twice", w[0])));
        }
        let mut windows = Vec::with_capacity(p.windows.len());
        for text in &p.windows {
            let w = Window::parse(text)?;
            if windows.contains(&w) {
                return Err(Error::param(
                    "windows",
                    format!("{text:?} is the same window as another one"),
                ));
            }
            windows.push(w);
        }
        let windowed = kinds
            .iter()
            .any(|k| matches!(k.scope(), Scope::SignalWindow | Scope::DeviceWindow));
        if windowed && windows.is_empty() {
            return Err(Error::param(
                "windows",
                "the windowed kinds (mean, std, min, max, delta, z, state_changes, state_share) need at least one window",
            ));
        }
        if !(1..=MAX_ROWS_WINDOW).contains(&p.min_periods) {
            return Err(Error::param("min_periods", "between 1 and 1000000"));
        }
        for w in &windows {
            if let Window::Rows(n) = *w
                && p.min_periods > n
            {
                return Err(Error::param(
                    "min_periods",
                    format!(
                        "{} is more than the {n} rows of window {w}: its statistics would never be defined",
                        p.min_periods
                    ),
                ));
            }
        }
        let ewm_halflife_us = duration("ewm_halflife", &p.ewm_halflife)?;
        if ewm_halflife_us <= 0 {
            return Err(Error::param("ewm_halflife", "must be longer than zero"));
        }
        let fill_limit_us = duration("fill_limit", &p.fill_limit)?;
        if !(4..=4096).contains(&p.spectral_window) {
            return Err(Error::param("spectral_window", "between 4 and 4096 rows"));
        }
        if !(1..=p.spectral_window).contains(&p.spectral_hop) {
            return Err(Error::param(
                "spectral_hop",
                format!("between 1 and spectral_window ({})", p.spectral_window),
            ));
        }
        for b in &p.spectral_bands {
            if !(b[0].is_finite() && b[1].is_finite() && b[0] >= 0.0 && b[0] < b[1]) {
                return Err(Error::param(
                    "spectral_bands",
                    format!(
                        "[{}, {}] is not a band [low, high) in Hz with 0 <= low < high",
                        b[0], b[1]
                    ),
                ));
            }
        }
        if kinds.contains(&FeatureKind::SpecBands) && p.spectral_bands.is_empty() {
            return Err(Error::param(
                "spectral_bands",
                "the kind spec_bands needs at least one band, such as [[0.0, 0.01]]",
            ));
        }
        let period = match p.period.trim() {
            "auto" => Period::Auto,
            "off" => Period::Off,
            text => {
                let us = duration("period", text).map_err(|_| {
                    Error::param(
                        "period",
                        format!("{text:?} is not \"auto\", \"off\" or a duration such as 24h"),
                    )
                })?;
                if us <= 0 || us > MAX_TIME_WINDOW_US {
                    return Err(Error::param(
                        "period",
                        "must be longer than zero and at most 366 days",
                    ));
                }
                Period::Fixed(us)
            }
        };
        if !(2..=1440).contains(&p.seasonal_bins) {
            return Err(Error::param("seasonal_bins", "between 2 and 1440"));
        }
        if !(p.period_min_strength > 0.0 && p.period_min_strength <= 1.0) {
            return Err(Error::param(
                "period_min_strength",
                format!(
                    "{} is not a share above 0 and at most 1",
                    p.period_min_strength
                ),
            ));
        }
        let mut chart_halflives_us = Vec::with_capacity(p.chart_halflives.len());
        for text in &p.chart_halflives {
            let us = duration("chart_halflives", text)?;
            if !(0..=MAX_TIME_WINDOW_US).contains(&us) {
                return Err(Error::param(
                    "chart_halflives",
                    format!(
                        "{text:?} must be 0 (the Shewhart chart) or longer, and at most 366 days"
                    ),
                ));
            }
            if chart_halflives_us.contains(&us) {
                return Err(Error::param(
                    "chart_halflives",
                    format!("{text:?} is given twice"),
                ));
            }
            chart_halflives_us.push(us);
        }
        if kinds.contains(&FeatureKind::ChartEwma) && chart_halflives_us.is_empty() {
            return Err(Error::param(
                "chart_halflives",
                "the kind chart_ewma needs at least one half-life, such as [\"30s\"]",
            ));
        }
        if !(p.chart_cusum_k >= 0.0 && p.chart_cusum_k <= 10.0) {
            return Err(Error::param(
                "chart_cusum_k",
                format!("{} is not between 0 and 10", p.chart_cusum_k),
            ));
        }
        if !(p.chart_prior_rows >= 0.0 && p.chart_prior_rows <= 1e6) {
            return Err(Error::param(
                "chart_prior_rows",
                format!("{} is not between 0 and 1000000", p.chart_prior_rows),
            ));
        }
        let elapsed_cap_us = duration("elapsed_cap", &p.elapsed_cap)?;
        if elapsed_cap_us <= 0 {
            return Err(Error::param("elapsed_cap", "must be longer than zero"));
        }
        if !(p.train_fraction > 0.0 && p.train_fraction <= 1.0) {
            return Err(Error::param(
                "train_fraction",
                format!("{} is not a share above 0 and at most 1", p.train_fraction),
            ));
        }
        Ok(Resolved {
            kinds,
            windows,
            ewm_halflife_us,
            fill_limit_us,
            period,
            elapsed_cap_us,
            chart_halflives_us,
        })
    }
}

impl ParamGuard for FeatureParams {
    type Checked = CheckedFeatures;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first parameter out of range or a
    /// duration that does not parse.
    fn check(self) -> Result<CheckedFeatures> {
        Ok(CheckedFeatures {
            resolved: self.resolve()?,
            params: self,
        })
    }
}

/// `chart_prior_rows` of a model saved before the key existed: the device's own
/// spread alone, as it was then.
fn no_prior_rows() -> f64 {
    0.0
}

fn duration(name: &str, text: &str) -> Result<i64> {
    parse_duration(text).map_err(|_| {
        Error::param(
            name,
            format!("{text:?} is not a duration such as 10s, 5m, 1.5h or 2d"),
        )
    })
}

/// Values derived from the parameters once, in the units the engine uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    /// Requested kinds, in catalogue order.
    pub(crate) kinds: Vec<FeatureKind>,
    pub(crate) windows: Vec<Window>,
    pub(crate) ewm_halflife_us: i64,
    pub(crate) fill_limit_us: i64,
    pub(crate) period: Period,
    pub(crate) elapsed_cap_us: i64,
    pub(crate) chart_halflives_us: Vec<i64>,
}

/// Checked feature parameters: the only kind that can fit and transform.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedFeatures {
    params: FeatureParams,
    pub(crate) resolved: Resolved,
}

impl CheckedFeatures {
    /// The parameters as given.
    pub fn params(&self) -> &FeatureParams {
        &self.params
    }

    /// The windows, parsed, in the order given.
    pub fn windows(&self) -> &[Window] {
        &self.resolved.windows
    }

    /// The requested kinds, in catalogue order.
    pub fn kinds(&self) -> &[FeatureKind] {
        &self.resolved.kinds
    }

    /// The seasonal period setting.
    pub fn period(&self) -> Period {
        self.resolved.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_name_their_windows() {
        let c = FeatureParams::default().check().unwrap();
        assert_eq!(c.windows(), &[Window::Time(300 * MICROS_PER_SEC)]);
        assert_eq!(c.kinds().len(), FeatureKind::DEFAULT.len());
        assert_eq!(c.period(), Period::Auto);
        assert!(c.kinds().contains(&FeatureKind::Z) && !c.kinds().contains(&FeatureKind::Ewm));
    }

    #[test]
    fn a_model_saved_before_chart_prior_rows_keeps_the_device_s_own_spread() {
        // A saved fit without the key reads as 0 (the charts as they were then);
        // a config section without it takes today's default.
        let old: FeatureParams = serde_json::from_str(r#"{"chart_cusum_k": 0.5}"#).unwrap();
        assert_eq!(old.chart_prior_rows, 0.0);
        assert_eq!(FeatureParams::default().chart_prior_rows, 30.0);
        let back: FeatureParams =
            serde_json::from_str(&serde_json::to_string(&FeatureParams::default()).unwrap())
                .unwrap();
        assert_eq!(back, FeatureParams::default());
    }

    #[test]
    fn windows_parse_durations_and_row_counts() {
        assert_eq!(Window::parse("30rows").unwrap(), Window::Rows(30));
        assert_eq!(Window::parse(" 90s ").unwrap().label(), "90s");
        assert_eq!(Window::parse("300s").unwrap().label(), "5m");
        assert_eq!(Window::parse("1.5h").unwrap().label(), "90m");
        assert_eq!(Window::parse("2d").unwrap().label(), "2d");
        assert_eq!(Window::parse("250ms").unwrap().label(), "250ms");
        for bad in ["0s", "0rows", "five minutes", "-5m", "rows", "400d"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_names_the_bad_parameter() {
        let cases: Vec<(FeatureParams, &str)> = vec![
            (FeatureParams::default().kinds([]), "kinds"),
            (
                FeatureParams::default().kinds([FeatureKind::Mean, FeatureKind::Mean]),
                "kinds",
            ),
            (FeatureParams::default().windows(["5m", "300s"]), "windows"),
            (
                FeatureParams::default().windows(Vec::<String>::new()),
                "windows",
            ),
            (FeatureParams::default().min_periods(0), "min_periods"),
            (
                FeatureParams::default().windows(["10rows"]).min_periods(11),
                "min_periods",
            ),
            (FeatureParams::default().ewm_halflife("0s"), "ewm_halflife"),
            (FeatureParams::default().fill_limit("soon"), "fill_limit"),
            (
                FeatureParams::default().spectral_window(3),
                "spectral_window",
            ),
            (FeatureParams::default().spectral_hop(33), "spectral_hop"),
            (
                FeatureParams::default().spectral_bands([[0.2, 0.1]]),
                "spectral_bands",
            ),
            (
                FeatureParams::default().kinds([FeatureKind::SpecBands]),
                "spectral_bands",
            ),
            (FeatureParams::default().period("weekly"), "period"),
            (FeatureParams::default().seasonal_bins(1), "seasonal_bins"),
            (
                FeatureParams::default().period_min_strength(0.0),
                "period_min_strength",
            ),
            (FeatureParams::default().elapsed_cap("0s"), "elapsed_cap"),
            (
                FeatureParams::default().train_fraction(1.5),
                "train_fraction",
            ),
            (FeatureParams::default().signals(["a", "a"]), "signals"),
            (
                FeatureParams::default().chart_prior_rows(-1.0),
                "chart_prior_rows",
            ),
            (
                FeatureParams::default().chart_prior_rows(f64::NAN),
                "chart_prior_rows",
            ),
        ];
        for (p, name) in cases {
            assert!(p.check_ref().is_err(), "{name}");
            match p.check().unwrap_err() {
                Error::InvalidParam(e) => assert_eq!(e.name, name, "{e}"),
                other => panic!("{other}"),
            }
        }
        // Windowed kinds are not needed for an empty window list to be fine.
        assert!(
            FeatureParams::default()
                .kinds([FeatureKind::Rate])
                .windows(Vec::<String>::new())
                .check()
                .is_ok()
        );
        assert_eq!(
            FeatureParams::default()
                .period("24h")
                .check()
                .unwrap()
                .period(),
            Period::Fixed(86_400 * MICROS_PER_SEC)
        );
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in FeatureKind::ALL {
            assert_eq!(k.as_str().parse::<FeatureKind>().unwrap(), k);
        }
        assert!("fft".parse::<FeatureKind>().is_err());
        let mut sorted = FeatureKind::ALL;
        sorted.sort();
        assert_eq!(sorted, FeatureKind::ALL, "ALL is in catalogue (Ord) order");
    }
}
