//! The telemetry schema: declared signals, operating states and fault kinds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a signal's values are written: as floats or as whole numbers.
///
/// Values are held as `f64` in memory either way; an `Int` signal is rounded
/// when simulated and written without a fractional part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    /// A real-valued measurement.
    #[default]
    Float,
    /// A whole-number measurement (for example rpm).
    Int,
}

/// One declared signal: a numeric column of the telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Column name, for example `temp_c`.
    pub name: String,
    /// Unit, for example `°C`; empty when unknown.
    #[serde(default)]
    pub unit: String,
    /// Float or integer values.
    #[serde(default)]
    pub kind: SignalKind,
    /// Lowest physically valid value, if declared.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest physically valid value, if declared.
    #[serde(default)]
    pub max: Option<f64>,
    /// A family grouping related signals, for example `Temperature`.
    #[serde(default)]
    pub family: String,
    /// Which departures from normal matter: a temperature that rises, a pressure
    /// that falls, or both ways. Detectors that score one side read it.
    #[serde(default, skip_serializing_if = "Direction::is_both")]
    pub direction: Direction,
}

/// Which departures of a signal from its normal level are anomalous
/// (`[signals.NAME] direction = "up" | "down" | "both"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above normal (a bearing's vibration, a winding's temperature).
    Up,
    /// Only values below normal (a pressure, a flow).
    Down,
    /// Both ways (the default).
    #[default]
    Both,
}

impl Direction {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }

    /// Whether this is [`Direction::Both`].
    pub fn is_both(&self) -> bool {
        *self == Direction::Both
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Signal {
    /// A float signal with no unit, range or family.
    pub fn new(name: impl Into<String>) -> Self {
        Signal {
            name: name.into(),
            unit: String::new(),
            kind: SignalKind::Float,
            min: None,
            max: None,
            family: String::new(),
            direction: Direction::Both,
        }
    }

    /// Sets the unit.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = unit.into();
        self
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: SignalKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the valid range.
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }

    /// Sets the family.
    pub fn family(mut self, family: impl Into<String>) -> Self {
        self.family = family.into();
        self
    }

    /// Sets the direction that matters.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Whether `value` lies in the declared range (always true when none is declared;
    /// false for NaN and infinities when a range is declared).
    pub fn in_range(&self, value: f64) -> bool {
        self.min.is_none_or(|lo| value >= lo) && self.max.is_none_or(|hi| value <= hi)
    }
}

/// The ordered list of signals a batch carries.
///
/// The schema is data: nothing in ITAP assumes the five demo signals of
/// [`Schema::default`], which is only the simulator's default fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    signals: Vec<Signal>,
}

impl Default for Schema {
    /// The seed platform's five signals: `rpm, temp_c, vibration_g, current_a, voltage_v`.
    fn default() -> Self {
        Schema {
            signals: vec![
                Signal::new("rpm")
                    .unit("rpm")
                    .kind(SignalKind::Int)
                    .range(0.0, 6000.0)
                    .family("Speed"),
                Signal::new("temp_c")
                    .unit("°C")
                    .range(-40.0, 150.0)
                    .family("Temperature")
                    .direction(Direction::Up),
                Signal::new("vibration_g")
                    .unit("g")
                    .range(0.0, 10.0)
                    .family("Vibration")
                    .direction(Direction::Up),
                Signal::new("current_a")
                    .unit("A")
                    .range(0.0, 100.0)
                    .family("Electrical"),
                Signal::new("voltage_v")
                    .unit("V")
                    .range(0.0, 60.0)
                    .family("Electrical"),
            ],
        }
    }
}

impl Schema {
    /// A schema from declared signals.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] when a name is empty, not a plain identifier
    /// (letters, digits, `_`, not starting with a digit), reserved
    /// (`timestamp`, `device_id`, `state`, `error_code`, `anomaly_tag`),
    /// repeated, or when a declared range has `min > max`.
    pub fn new(signals: Vec<Signal>) -> Result<Self> {
        for (i, s) in signals.iter().enumerate() {
            check_identifier(&s.name)?;
            if RESERVED.contains(&s.name.as_str()) {
                return Err(Error::param(
                    format!("signals.{}", s.name),
                    "this name is reserved for a key or label column; rename the signal",
                ));
            }
            if signals[..i].iter().any(|o| o.name == s.name) {
                return Err(Error::param(
                    format!("signals.{}", s.name),
                    "declared twice; each signal name must be unique",
                ));
            }
            // Refused when min > max, and when either is NaN (incomparable).
            if let (Some(lo), Some(hi)) = (s.min, s.max)
                && !matches!(
                    lo.partial_cmp(&hi),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                )
            {
                return Err(Error::param(
                    format!("signals.{}", s.name),
                    format!("min {lo} is above max {hi}"),
                ));
            }
        }
        Ok(Schema { signals })
    }

    /// The signals, in column order.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// The number of signals.
    pub fn len(&self) -> usize {
        self.signals.len()
    }

    /// Whether the schema has no signal.
    pub fn is_empty(&self) -> bool {
        self.signals.is_empty()
    }

    /// The position of a signal by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.signals.iter().position(|s| s.name == name)
    }

    /// A signal by name.
    pub fn signal(&self, name: &str) -> Option<&Signal> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// The signal names, in column order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.signals.iter().map(|s| s.name.as_str())
    }
}

/// Column names a signal may not take.
pub const RESERVED: [&str; 6] = [
    "timestamp",
    "device_id",
    "state",
    "error_code",
    "anomaly_tag",
    "label",
];

/// Checks that `name` is a plain identifier usable as a column name in every backend.
///
/// # Errors
/// [`Error::InvalidParam`] naming the identifier and what is allowed.
pub fn check_identifier(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    };
    if ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(Error::param(
            format!("signals.{name}"),
            "a signal name must be 1-63 ASCII letters, digits or `_`, not starting with a digit",
        ))
    }
}

/// A machine's operating state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    /// Producing: full speed and load.
    Run,
    /// Powered, spinning slowly, little load.
    Idle,
    /// Stopped for maintenance.
    Maint,
}

impl State {
    /// Every state, in a fixed order.
    pub const ALL: [State; 3] = [State::Run, State::Idle, State::Maint];

    /// The name as written in files: `RUN`, `IDLE`, `MAINT`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Run => "RUN",
            State::Idle => "IDLE",
            State::Maint => "MAINT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;

    /// Reads `RUN`, `IDLE` or `MAINT`, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| Error::Value {
                value: s.to_owned(),
                expected: "a state (RUN, IDLE or MAINT)",
            })
    }
}

/// The kinds of fault the simulator injects, named as in the `anomaly_tag` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Gradual temperature rise; an error code once over a limit.
    OverheatDrift,
    /// Gradual vibration growth with a periodic component, slight current rise.
    BearingWear,
    /// Abrupt, short voltage and current excursions.
    PowerSpike,
    /// Missing values on some signals, with an error code.
    SensorDropout,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::OverheatDrift,
        FaultKind::BearingWear,
        FaultKind::PowerSpike,
        FaultKind::SensorDropout,
    ];

    /// The tag written in the `anomaly_tag` column.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::OverheatDrift => "overheat_drift",
            FaultKind::BearingWear => "bearing_wear",
            FaultKind::PowerSpike => "power_spike",
            FaultKind::SensorDropout => "sensor_dropout",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schema_is_the_seed_platforms() {
        let s = Schema::default();
        let names: Vec<_> = s.names().collect();
        assert_eq!(
            names,
            ["rpm", "temp_c", "vibration_g", "current_a", "voltage_v"]
        );
        assert_eq!(s.signal("rpm").unwrap().kind, SignalKind::Int);
        assert_eq!(s.signal("temp_c").unwrap().family, "Temperature");
        assert!(Schema::new(s.signals().to_vec()).is_ok());
    }

    #[test]
    fn schema_refuses_bad_names_duplicates_and_ranges() {
        assert!(Schema::new(vec![Signal::new("1abc")]).is_err());
        assert!(Schema::new(vec![Signal::new("a b")]).is_err());
        assert!(Schema::new(vec![Signal::new("")]).is_err());
        assert!(Schema::new(vec![Signal::new("state")]).is_err());
        assert!(Schema::new(vec![Signal::new("x"), Signal::new("x")]).is_err());
        assert!(Schema::new(vec![Signal::new("x").range(2.0, 1.0)]).is_err());
        assert!(Schema::new(vec![Signal::new("pressure_bar").range(0.0, 16.0)]).is_ok());
    }

    #[test]
    fn range_check_rejects_non_finite() {
        let s = Signal::new("x").range(0.0, 1.0);
        assert!(s.in_range(0.5));
        assert!(!s.in_range(1.5));
        assert!(!s.in_range(f64::NAN));
        assert!(Signal::new("y").in_range(f64::INFINITY));
    }

    #[test]
    fn states_parse_case_insensitively() {
        assert_eq!(" run ".parse::<State>().unwrap(), State::Run);
        assert_eq!("Maint".parse::<State>().unwrap(), State::Maint);
        assert!("STOPPED".parse::<State>().is_err());
    }
}
