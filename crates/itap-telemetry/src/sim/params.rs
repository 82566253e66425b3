//! Simulator parameters (the checked-params pattern: build, `check()`, run).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::param::ParamGuard;
use crate::schema::{FaultKind, Schema, Signal, State};
use crate::time::{MICROS_PER_SEC, TimeZone, parse_timestamp};

/// One simulated signal: its declaration, nominal level while running and the
/// standard deviation of its sensor noise.
///
/// The five default signals (`rpm`, `temp_c`, `vibration_g`, `current_a`,
/// `voltage_v`) follow physical models; any other declared signal follows the
/// machine's load: `nominal × (0.2 + 0.8 × load)` plus noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSignal {
    /// The declaration (name, unit, kind, range, family).
    pub signal: Signal,
    /// Level at full load (rpm, °C, g, A, V…).
    pub nominal: f64,
    /// Standard deviation of the additive sensor noise, in the signal's unit.
    pub noise: f64,
}

impl SimSignal {
    /// A simulated signal.
    pub fn new(signal: Signal, nominal: f64, noise: f64) -> Self {
        SimSignal {
            signal,
            nominal,
            noise,
        }
    }
}

/// The default simulated signals: the seed platform's five, at its nominal levels.
pub fn default_sim_signals() -> Vec<SimSignal> {
    let schema = Schema::default();
    let levels = [
        (1800.0, 6.0),
        (55.0, 0.3),
        (0.25, 0.01),
        (6.5, 0.06),
        (24.0, 0.05),
    ];
    schema
        .signals()
        .iter()
        .cloned()
        .zip(levels)
        .map(|(s, (nominal, noise))| SimSignal::new(s, nominal, noise))
        .collect()
}

/// Operating-state process: a Markov chain with mean dwell times.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `run_minutes` | 45 | mean time in RUN | > 0 |
/// | `idle_minutes` | 8 | mean time in IDLE | > 0 |
/// | `maint_minutes` | 20 | mean time in MAINT | > 0 |
/// | `maint_share` | 0.15 | share of RUN/IDLE exits that go to MAINT | 0–1 |
/// | `idle_load` | 0.1 | load (fraction of nominal speed) while IDLE | 0–1 |
/// | `rpm_time_constant_s` | 20 | first-order lag of speed | > 0 |
/// | `thermal_time_constant_s` | 900 | first-order lag of temperature | > 0 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateParams {
    /// Mean minutes in RUN before a change.
    pub run_minutes: f64,
    /// Mean minutes in IDLE before a change.
    pub idle_minutes: f64,
    /// Mean minutes in MAINT before a change.
    pub maint_minutes: f64,
    /// Share of exits from RUN or IDLE that go to MAINT (the rest go to the other one).
    pub maint_share: f64,
    /// Load while IDLE, as a fraction of nominal speed.
    pub idle_load: f64,
    /// Time constant of the speed's first-order lag, seconds.
    pub rpm_time_constant_s: f64,
    /// Time constant of the temperature's first-order lag, seconds.
    pub thermal_time_constant_s: f64,
}

impl Default for StateParams {
    fn default() -> Self {
        StateParams {
            run_minutes: 45.0,
            idle_minutes: 8.0,
            maint_minutes: 20.0,
            maint_share: 0.15,
            idle_load: 0.1,
            rpm_time_constant_s: 20.0,
            thermal_time_constant_s: 900.0,
        }
    }
}

impl StateParams {
    /// Mean dwell time of `state`, seconds.
    pub fn dwell_seconds(&self, state: State) -> f64 {
        60.0 * match state {
            State::Run => self.run_minutes,
            State::Idle => self.idle_minutes,
            State::Maint => self.maint_minutes,
        }
    }
}

/// The ambient cycle the machines' temperatures ride on.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `mean_c` | 22 | mean ambient temperature, °C | finite |
/// | `amplitude_c` | 3 | half the day/night swing, °C | ≥ 0 |
/// | `period_hours` | 24 | period of the cycle | > 0 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmbientParams {
    /// Mean ambient temperature, °C.
    pub mean_c: f64,
    /// Amplitude of the cycle, °C.
    pub amplitude_c: f64,
    /// Period of the cycle, hours.
    pub period_hours: f64,
}

impl Default for AmbientParams {
    fn default() -> Self {
        AmbientParams {
            mean_c: 22.0,
            amplitude_c: 3.0,
            period_hours: 24.0,
        }
    }
}

/// One fault kind's injection settings.
///
/// | Name | Meaning | Range |
/// |---|---|---|
/// | `enabled` | whether this kind is injected | |
/// | `weight` | relative chance that a new fault is of this kind | ≥ 0 |
/// | `min_seconds`, `max_seconds` | duration, drawn uniformly | 0 < min ≤ max |
/// | `min_severity`, `max_severity` | severity multiplier, drawn uniformly | 0 < min ≤ max |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultKindParams {
    /// Whether this kind is injected.
    pub enabled: bool,
    /// Relative chance that a new fault is of this kind.
    pub weight: f64,
    /// Shortest duration, seconds.
    pub min_seconds: f64,
    /// Longest duration, seconds.
    pub max_seconds: f64,
    /// Smallest severity multiplier.
    pub min_severity: f64,
    /// Largest severity multiplier.
    pub max_severity: f64,
}

impl FaultKindParams {
    fn with(min_seconds: f64, max_seconds: f64) -> Self {
        FaultKindParams {
            enabled: true,
            weight: 1.0,
            min_seconds,
            max_seconds,
            min_severity: 0.6,
            max_severity: 1.4,
        }
    }
}

impl Default for FaultKindParams {
    fn default() -> Self {
        FaultKindParams::with(60.0, 600.0)
    }
}

/// Fault injection.
///
/// `rate` follows the seed platform's meaning: the probability, at each sample of a
/// device that has no active fault and is not in MAINT, that a fault begins. Its
/// kind is drawn by weight among the enabled kinds.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `rate` | 0.02 | onset probability per fault-free sample | 0–1 |
/// | `overheat_drift` | 5–20 min | gradual temperature rise of up to `overheat_rise_c` × severity | |
/// | `bearing_wear` | 5–20 min | gradual vibration growth with a periodic component | |
/// | `power_spike` | 10–50 s | abrupt voltage and current excursion | |
/// | `sensor_dropout` | 10–50 s | `dropout_signals` read as missing, error code 5 | |
/// | `overheat_rise_c` | 15 | temperature rise at the end of an overheat drift of severity 1, °C | > 0 |
/// | `overheat_limit_c` | 65 | temperature above which error code 3 is raised | finite |
/// | `bearing_period_s` | 60 | period of the wear's characteristic vibration component, s | > 0 |
/// | `dropout_signals` | temp_c, vibration_g, current_a | signals lost during a dropout | declared signals |
/// | `nuisance_error_rate` | 0.0005 | chance per sample of a one-sample error code 2 unrelated to any fault | 0–1 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultParams {
    /// Onset probability per fault-free sample.
    pub rate: f64,
    /// Overheat drift settings.
    pub overheat_drift: FaultKindParams,
    /// Bearing wear settings.
    pub bearing_wear: FaultKindParams,
    /// Power spike settings.
    pub power_spike: FaultKindParams,
    /// Sensor dropout settings.
    pub sensor_dropout: FaultKindParams,
    /// Temperature rise at the end of a severity-1 overheat drift, °C.
    pub overheat_rise_c: f64,
    /// Temperature above which error code 3 is raised, °C.
    pub overheat_limit_c: f64,
    /// Period of the bearing wear's periodic vibration component, seconds.
    pub bearing_period_s: f64,
    /// Signals missing during a sensor dropout.
    pub dropout_signals: Vec<String>,
    /// Chance per sample of a one-sample nuisance error code 2.
    pub nuisance_error_rate: f64,
}

impl Default for FaultParams {
    fn default() -> Self {
        FaultParams {
            rate: 0.02,
            overheat_drift: FaultKindParams::with(300.0, 1200.0),
            bearing_wear: FaultKindParams::with(300.0, 1200.0),
            power_spike: FaultKindParams::with(10.0, 50.0),
            sensor_dropout: FaultKindParams::with(10.0, 50.0),
            overheat_rise_c: 15.0,
            overheat_limit_c: 65.0,
            bearing_period_s: 60.0,
            dropout_signals: vec!["temp_c".into(), "vibration_g".into(), "current_a".into()],
            nuisance_error_rate: 0.0005,
        }
    }
}

impl FaultParams {
    /// The settings of one kind.
    pub fn kind(&self, kind: FaultKind) -> &FaultKindParams {
        match kind {
            FaultKind::OverheatDrift => &self.overheat_drift,
            FaultKind::BearingWear => &self.bearing_wear,
            FaultKind::PowerSpike => &self.power_spike,
            FaultKind::SensorDropout => &self.sensor_dropout,
        }
    }

    /// Disables every fault kind (a healthy fleet).
    pub fn none() -> Self {
        let mut f = FaultParams {
            rate: 0.0,
            nuisance_error_rate: 0.0,
            ..FaultParams::default()
        };
        for k in [
            &mut f.overheat_drift,
            &mut f.bearing_wear,
            &mut f.power_spike,
            &mut f.sensor_dropout,
        ] {
            k.enabled = false;
        }
        f
    }
}

/// Error codes the simulator writes.
pub mod codes {
    /// No error.
    pub const OK: i32 = 0;
    /// A nuisance alarm unrelated to any fault.
    pub const NUISANCE: i32 = 2;
    /// Temperature over the overheat limit.
    pub const OVER_TEMPERATURE: i32 = 3;
    /// Sensor signal lost.
    pub const SENSOR_LOST: i32 = 5;
}

/// Everything the simulator needs. Build it, change it with the setters, then
/// [`check`](ParamGuard::check) it ([`ParamGuard`]); only checked parameters run.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `devices` | 25 | devices in the fleet | 1–100,000 |
/// | `seed` | 42 | seed of every random stream | any |
/// | `start` | `2026-01-01T00:00:00Z` | first timestamp | RFC 3339 |
/// | `hours` | 6 | simulated span | > 0, ≤ 1e6 samples per device |
/// | `freq_seconds` | 10 | sampling interval | ≥ 0.001 |
/// | `device_prefix` | `DEV-` | device ids are the prefix and a 4-digit index | |
/// | `signals` | the seed's five | simulated signals with nominal level and noise | ≥ 1 |
/// | `states`, `ambient`, `faults` | see their types | | |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimParams {
    /// Number of devices.
    pub devices: usize,
    /// Seed of every random stream.
    pub seed: u64,
    /// First timestamp, RFC 3339.
    pub start: String,
    /// Simulated span, hours.
    pub hours: f64,
    /// Sampling interval, seconds.
    pub freq_seconds: f64,
    /// Device id prefix.
    pub device_prefix: String,
    /// Simulated signals.
    #[serde(skip)]
    pub signals: Vec<SimSignal>,
    /// Operating-state process.
    pub states: StateParams,
    /// Ambient cycle.
    pub ambient: AmbientParams,
    /// Fault injection.
    #[serde(skip)]
    pub faults: FaultParams,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            devices: 25,
            seed: 42,
            start: "2026-01-01T00:00:00Z".into(),
            hours: 6.0,
            freq_seconds: 10.0,
            device_prefix: "DEV-".into(),
            signals: default_sim_signals(),
            states: StateParams::default(),
            ambient: AmbientParams::default(),
            faults: FaultParams::default(),
        }
    }
}

impl SimParams {
    /// Sets the number of devices.
    pub fn devices(mut self, n: usize) -> Self {
        self.devices = n;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the simulated span in hours.
    pub fn hours(mut self, hours: f64) -> Self {
        self.hours = hours;
        self
    }

    /// Sets the sampling interval in seconds.
    pub fn freq_seconds(mut self, s: f64) -> Self {
        self.freq_seconds = s;
        self
    }

    /// Sets the first timestamp (RFC 3339).
    pub fn start(mut self, start: impl Into<String>) -> Self {
        self.start = start.into();
        self
    }

    /// Sets the fault injection.
    pub fn faults(mut self, faults: FaultParams) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the simulated signals.
    pub fn signals(mut self, signals: Vec<SimSignal>) -> Self {
        self.signals = signals;
        self
    }

    /// Checks every parameter and derives what the simulator needs from them.
    fn derive(&self) -> Result<Derived> {
        let p = self;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::param(
                    name,
                    format!("must be between 0 and 1, got {v}"),
                ))
            }
        };
        if !(1..=100_000).contains(&p.devices) {
            return Err(Error::param(
                "devices",
                format!("must be between 1 and 100000, got {}", p.devices),
            ));
        }
        positive("hours", p.hours)?;
        positive("freq_seconds", p.freq_seconds)?;
        if p.freq_seconds < 0.001 {
            return Err(Error::param(
                "freq_seconds",
                "must be at least 0.001 (timestamps are microseconds)",
            ));
        }
        let start_us = parse_timestamp(&p.start, TimeZone::UTC)
            .map_err(|e| Error::param("start", e.to_string()))?;
        let interval_us = (p.freq_seconds * MICROS_PER_SEC as f64).round() as i64;
        let steps = (p.hours * 3600.0 / p.freq_seconds).floor();
        if !(1.0..=1e6).contains(&steps) {
            return Err(Error::param(
                "hours",
                format!(
                    "gives {steps} samples per device at {} s; it must give 1 to 1,000,000",
                    p.freq_seconds
                ),
            ));
        }
        if p.signals.is_empty() {
            return Err(Error::param(
                "signals",
                "at least one signal must be simulated",
            ));
        }
        let schema = Schema::new(p.signals.iter().map(|s| s.signal.clone()).collect())?;
        for s in &p.signals {
            if !s.nominal.is_finite() {
                return Err(Error::param(
                    format!("signals.{}.nominal", s.signal.name),
                    "must be a finite number",
                ));
            }
            if !(s.noise.is_finite() && s.noise >= 0.0) {
                return Err(Error::param(
                    format!("signals.{}.noise", s.signal.name),
                    "must be a number ≥ 0",
                ));
            }
        }
        let st = &p.states;
        positive("states.run_minutes", st.run_minutes)?;
        positive("states.idle_minutes", st.idle_minutes)?;
        positive("states.maint_minutes", st.maint_minutes)?;
        unit("states.maint_share", st.maint_share)?;
        unit("states.idle_load", st.idle_load)?;
        positive("states.rpm_time_constant_s", st.rpm_time_constant_s)?;
        positive("states.thermal_time_constant_s", st.thermal_time_constant_s)?;
        let a = &p.ambient;
        if !a.mean_c.is_finite() {
            return Err(Error::param("ambient.mean_c", "must be finite"));
        }
        if !(a.amplitude_c.is_finite() && a.amplitude_c >= 0.0) {
            return Err(Error::param("ambient.amplitude_c", "must be ≥ 0"));
        }
        positive("ambient.period_hours", a.period_hours)?;
        let f = &p.faults;
        unit("faults.rate", f.rate)?;
        unit("faults.nuisance_error_rate", f.nuisance_error_rate)?;
        positive("faults.overheat_rise_c", f.overheat_rise_c)?;
        if !f.overheat_limit_c.is_finite() {
            return Err(Error::param("faults.overheat_limit_c", "must be finite"));
        }
        positive("faults.bearing_period_s", f.bearing_period_s)?;
        for kind in FaultKind::ALL {
            let k = f.kind(kind);
            let name = |field: &str| format!("faults.{kind}.{field}");
            if !(k.weight.is_finite() && k.weight >= 0.0) {
                return Err(Error::param(name("weight"), "must be a number ≥ 0"));
            }
            positive(&name("min_seconds"), k.min_seconds)?;
            positive(&name("min_severity"), k.min_severity)?;
            if !(k.max_seconds >= k.min_seconds && k.max_seconds.is_finite()) {
                return Err(Error::param(name("max_seconds"), "must be ≥ min_seconds"));
            }
            if !(k.max_severity >= k.min_severity && k.max_severity.is_finite()) {
                return Err(Error::param(name("max_severity"), "must be ≥ min_severity"));
            }
        }
        let mut dropout = Vec::with_capacity(f.dropout_signals.len());
        for name in &f.dropout_signals {
            let i = schema.index_of(name).ok_or_else(|| {
                Error::param(
                    "faults.dropout_signals",
                    format!("`{name}` is not a simulated signal"),
                )
            })?;
            dropout.push(i);
        }
        let enabled_weight: f64 = FaultKind::ALL
            .iter()
            .map(|&k| f.kind(k))
            .filter(|k| k.enabled)
            .map(|k| k.weight)
            .sum();
        if f.rate > 0.0 && enabled_weight <= 0.0 {
            return Err(Error::param(
                "faults.rate",
                "is above 0 but no fault kind is enabled with a positive weight",
            ));
        }
        Ok(Derived {
            schema,
            start_us,
            interval_us,
            steps: steps as usize,
            dropout,
        })
    }
}

/// What checking derives from [`SimParams`].
struct Derived {
    schema: Schema,
    start_us: i64,
    interval_us: i64,
    steps: usize,
    dropout: Vec<usize>,
}

impl ParamGuard for SimParams {
    type Checked = CheckedSimParams;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.derive().map(drop)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first parameter out of range and why
    /// (`devices`, `states.run_minutes`, `faults.rate`, `signals.rpm.noise`, …).
    fn check(self) -> Result<CheckedSimParams> {
        let d = self.derive()?;
        Ok(CheckedSimParams {
            params: self,
            schema: d.schema,
            start_us: d.start_us,
            interval_us: d.interval_us,
            steps: d.steps,
            dropout: d.dropout,
        })
    }
}

/// Simulator parameters that passed [`SimParams`]' [`check`](ParamGuard::check).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSimParams {
    pub(crate) params: SimParams,
    pub(crate) schema: Schema,
    pub(crate) start_us: i64,
    pub(crate) interval_us: i64,
    pub(crate) steps: usize,
    pub(crate) dropout: Vec<usize>,
}

impl CheckedSimParams {
    /// The parameters as given.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// The schema of the simulated batch.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Samples per device.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Rows the simulation produces (devices × samples).
    pub fn rows(&self) -> usize {
        self.steps * self.params.devices
    }

    /// The first timestamp, UTC microseconds.
    pub fn start_us(&self) -> i64 {
        self.start_us
    }

    /// The sampling interval, microseconds.
    pub fn interval_us(&self) -> i64 {
        self.interval_us
    }

    /// The id of device `index`: the prefix and a zero-padded index.
    pub fn device_id(&self, index: usize) -> String {
        format!("{}{index:04}", self.params.device_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = SimParams::default().check().unwrap();
        assert_eq!(c.rows(), 54_000);
        assert_eq!(c.steps(), 2160);
        assert_eq!(c.interval_us(), 10_000_000);
        assert_eq!(c.device_id(3), "DEV-0003");
        assert_eq!(c.params().faults.rate, 0.02);
        assert_eq!(c.params().signals[0].nominal, 1800.0);
    }

    #[test]
    fn check_names_the_bad_parameter() {
        let err = |p: SimParams| p.check().unwrap_err().to_string();
        assert!(err(SimParams::default().devices(0)).contains("devices"));
        assert!(err(SimParams::default().hours(-1.0)).contains("hours"));
        assert!(err(SimParams::default().freq_seconds(f64::NAN)).contains("freq_seconds"));
        assert!(err(SimParams::default().start("soon")).contains("start"));
        let mut p = SimParams::default();
        p.faults.power_spike.max_seconds = 1.0;
        assert!(err(p).contains("faults.power_spike.max_seconds"));
        let mut p = SimParams::default();
        p.faults.dropout_signals = vec!["nope".into()];
        assert!(err(p).contains("`nope`"));
        let mut p = SimParams::default();
        p.faults.rate = 1.5;
        assert!(err(p).contains("faults.rate"));
    }
}
