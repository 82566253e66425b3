//! Validation parameters: the `[validation]` config section, checked once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use itap_telemetry::{ParamGuard, TimeZone, parse_duration, parse_timestamp};

use crate::checks::{Check, Level};
use crate::error::{Error, Result};

/// What happens to a file with error-severity row findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Reject the whole file: nothing of it may be stored.
    #[default]
    Reject,
    /// Store the good rows and set the bad ones aside (quarantine). A file-level
    /// error still rejects the whole file.
    Quarantine,
}

impl Policy {
    /// The name as written in config files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Reject => "reject",
            Policy::Quarantine => "quarantine",
        }
    }
}

impl std::str::FromStr for Policy {
    type Err = Error;

    /// Reads `reject` or `quarantine`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "reject" => Ok(Policy::Reject),
            "quarantine" => Ok(Policy::Quarantine),
            other => Err(Error::param(
                "policy",
                format!("{other:?} is not a policy; use \"reject\" or \"quarantine\""),
            )),
        }
    }
}

/// Validation parameters, unchecked: the `[validation]` section of the config file.
///
/// Build with [`Default`] and the setters (or deserialize), then
/// [`check`](ParamGuard::check) once; only [`CheckedValidation`] can run.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `policy` | `reject` | a file with error rows: `reject` it whole, or `quarantine` the bad rows and keep the good | `reject`, `quarantine` |
/// | `max_examples` | 10 | offending rows kept per finding in the report | 0 – 10 000 |
/// | `required_columns` | `[]` | columns that must be in the header, besides the timestamp column (always required) | names |
/// | `missing_rate_warning` | 0.001 | a signal missing in more than this share of rows is a warning (`completeness.missing_rate`) | 0 – 1 |
/// | `missing_rate_error` | 0.5 | … and in more than this share an error (`completeness.mostly_missing`) | `missing_rate_warning` – 1 |
/// | `max_missing_run` | 30 | consecutive missing samples of one device's signal that make a `completeness.missing_run` | ≥ 1 |
/// | `non_negative` | `["rpm"]` | signals that cannot be negative (`range.negative`); names absent from a file are ignored | names |
/// | `expected_interval` | `"auto"` | the sampling interval gaps are measured against: `auto` (per device, the median of its first 32 steps) or a duration such as `10s` | `auto` or > 0 |
/// | `gap_factor` | 3.0 | a step longer than this many intervals is a `time.gap` | > 1 |
/// | `clock_jump` | `"10m"` | a step back at least this long is a `time.clock_jump_back`; shorter ones are `time.out_of_order` | > 0 |
/// | `future_tolerance` | `"5m"` | a timestamp later than the reference time plus this is `time.future` | ≥ 0 |
/// | `now` | unset | the reference time for `time.future` (RFC 3339); unset = the clock when validation starts | a timestamp |
/// | `stuck_samples` | 30 | samples with exactly one value, while the device is running, that make a `sensor.stuck` | ≥ 2 |
/// | `duplicate_window` | 1024 | rows per device whose values are remembered (as a 64-bit hash) to tell equal from conflicting duplicates | 1 – 1 048 576 |
/// | `max_tracked_runs` | 1 000 000 | bound on the duplicate-key index (runs of evenly spaced timestamps, about 50 bytes each) | ≥ 1 000 |
/// | `severity` | `{}` | per-check severity overrides: check id → `error`, `warning`, `info` or `off` | ids of non-fixed checks |
/// | `declared_signals` | `None` | not a config key, set with [`declared_signals`](Self::declared_signals): the signals the input must have; each one absent is a `schema.missing_signal`, each other signal column a `schema.undeclared_column`; `None` = the signals are the header's | distinct, non-empty names |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationParams {
    /// Reject a file with error rows, or quarantine the rows.
    pub policy: Policy,
    /// Offending rows kept per finding.
    pub max_examples: usize,
    /// Columns that must be present besides the timestamp column.
    pub required_columns: Vec<String>,
    /// Missing share above which a signal gets a warning.
    pub missing_rate_warning: f64,
    /// Missing share above which a signal gets an error.
    pub missing_rate_error: f64,
    /// Consecutive missing samples that make a missing run.
    pub max_missing_run: u64,
    /// Signals that cannot be negative.
    pub non_negative: Vec<String>,
    /// `auto` or a duration such as `10s`.
    pub expected_interval: String,
    /// Gap threshold in sampling intervals.
    pub gap_factor: f64,
    /// Backward step that counts as a clock jump, as a duration.
    pub clock_jump: String,
    /// Tolerance for timestamps after the reference time, as a duration.
    pub future_tolerance: String,
    /// The reference time (RFC 3339); `None` = the clock at validation.
    pub now: Option<String>,
    /// Samples with one value that make a stuck signal.
    pub stuck_samples: u64,
    /// Rows per device remembered to compare duplicates.
    pub duplicate_window: usize,
    /// Bound on the duplicate-key index, in runs.
    pub max_tracked_runs: usize,
    /// Per-check severity overrides, by check id.
    pub severity: BTreeMap<String, Level>,
    /// The signals the input must have; `None` = whatever signals the header
    /// gives. Not a config key: the program sets it.
    #[serde(skip)]
    pub declared_signals: Option<Vec<String>>,
}

impl Default for ValidationParams {
    fn default() -> Self {
        ValidationParams {
            policy: Policy::Reject,
            max_examples: 10,
            required_columns: Vec::new(),
            missing_rate_warning: 0.001,
            missing_rate_error: 0.5,
            max_missing_run: 30,
            non_negative: vec!["rpm".to_owned()],
            expected_interval: "auto".to_owned(),
            gap_factor: 3.0,
            clock_jump: "10m".to_owned(),
            future_tolerance: "5m".to_owned(),
            now: None,
            stuck_samples: 30,
            duplicate_window: 1024,
            max_tracked_runs: 1_000_000,
            severity: BTreeMap::new(),
            declared_signals: None,
        }
    }
}

impl ValidationParams {
    /// Sets the policy.
    pub fn policy(mut self, v: Policy) -> Self {
        self.policy = v;
        self
    }

    /// Sets the examples kept per finding.
    pub fn max_examples(mut self, v: usize) -> Self {
        self.max_examples = v;
        self
    }

    /// Sets the required columns.
    pub fn required_columns(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.required_columns = v.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the missing-rate warning threshold.
    pub fn missing_rate_warning(mut self, v: f64) -> Self {
        self.missing_rate_warning = v;
        self
    }

    /// Sets the missing-rate error threshold.
    pub fn missing_rate_error(mut self, v: f64) -> Self {
        self.missing_rate_error = v;
        self
    }

    /// Sets the missing-run length.
    pub fn max_missing_run(mut self, v: u64) -> Self {
        self.max_missing_run = v;
        self
    }

    /// Sets the signals that cannot be negative.
    pub fn non_negative(mut self, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.non_negative = v.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expected sampling interval (`auto` or a duration).
    pub fn expected_interval(mut self, v: impl Into<String>) -> Self {
        self.expected_interval = v.into();
        self
    }

    /// Sets the gap factor.
    pub fn gap_factor(mut self, v: f64) -> Self {
        self.gap_factor = v;
        self
    }

    /// Sets the clock-jump threshold (a duration).
    pub fn clock_jump(mut self, v: impl Into<String>) -> Self {
        self.clock_jump = v.into();
        self
    }

    /// Sets the future tolerance (a duration).
    pub fn future_tolerance(mut self, v: impl Into<String>) -> Self {
        self.future_tolerance = v.into();
        self
    }

    /// Sets the reference time (RFC 3339), or `None` for the clock.
    pub fn now(mut self, v: Option<impl Into<String>>) -> Self {
        self.now = v.map(Into::into);
        self
    }

    /// Sets the stuck-signal length.
    pub fn stuck_samples(mut self, v: u64) -> Self {
        self.stuck_samples = v;
        self
    }

    /// Sets the rows per device remembered for duplicate comparison.
    pub fn duplicate_window(mut self, v: usize) -> Self {
        self.duplicate_window = v;
        self
    }

    /// Sets the bound on the duplicate-key index.
    pub fn max_tracked_runs(mut self, v: usize) -> Self {
        self.max_tracked_runs = v;
        self
    }

    /// Overrides one check's severity.
    pub fn severity(mut self, check: Check, level: Level) -> Self {
        self.severity.insert(check.id().to_owned(), level);
        self
    }

    /// Declares the signals the input must have (by exact name), or `None` (the
    /// default) to take the signals the header gives. With a declaration, each
    /// declared signal that is not a signal column of the input is a
    /// `schema.missing_signal` (error: the input is rejected), and each signal
    /// column not declared is a `schema.undeclared_column` (warning: it is checked
    /// and stored like the others).
    pub fn declared_signals(mut self, v: Option<Vec<String>>) -> Self {
        self.declared_signals = v;
        self
    }

    /// Checks every parameter and resolves them into the units the checks use.
    fn resolve(&self) -> Result<Resolved> {
        let p = self;
        if p.max_examples > 10_000 {
            return Err(Error::param("max_examples", "at most 10000"));
        }
        if p.required_columns.iter().any(|c| c.trim().is_empty()) {
            return Err(Error::param(
                "required_columns",
                "a column name may not be empty",
            ));
        }
        if !(0.0..=1.0).contains(&p.missing_rate_warning) {
            return Err(Error::param(
                "missing_rate_warning",
                format!("{} is not a share between 0 and 1", p.missing_rate_warning),
            ));
        }
        if !(p.missing_rate_warning..=1.0).contains(&p.missing_rate_error) {
            return Err(Error::param(
                "missing_rate_error",
                format!(
                    "{} must lie between missing_rate_warning ({}) and 1",
                    p.missing_rate_error, p.missing_rate_warning
                ),
            ));
        }
        if p.max_missing_run == 0 {
            return Err(Error::param("max_missing_run", "at least 1 sample"));
        }
        let interval_us = match p.expected_interval.trim() {
            "auto" => None,
            text => {
                let us = duration("expected_interval", text)?;
                if us <= 0 {
                    return Err(Error::param(
                        "expected_interval",
                        "must be longer than zero, or \"auto\"",
                    ));
                }
                Some(us)
            }
        };
        if !(p.gap_factor > 1.0 && p.gap_factor.is_finite()) {
            return Err(Error::param(
                "gap_factor",
                format!("{} must be a finite number above 1", p.gap_factor),
            ));
        }
        let clock_jump_us = duration("clock_jump", &p.clock_jump)?;
        if clock_jump_us <= 0 {
            return Err(Error::param("clock_jump", "must be longer than zero"));
        }
        let future_tolerance_us = duration("future_tolerance", &p.future_tolerance)?;
        let now_us = match &p.now {
            None => None,
            Some(text) => Some(parse_timestamp(text, TimeZone::UTC).map_err(|_| {
                Error::param(
                    "now",
                    format!("{text:?} is not a timestamp such as 2026-01-01T00:00:00Z"),
                )
            })?),
        };
        if p.stuck_samples < 2 {
            return Err(Error::param("stuck_samples", "at least 2 samples"));
        }
        if !(1..=1 << 20).contains(&p.duplicate_window) {
            return Err(Error::param(
                "duplicate_window",
                "between 1 and 1048576 rows",
            ));
        }
        if p.max_tracked_runs < 1000 {
            return Err(Error::param("max_tracked_runs", "at least 1000"));
        }
        let mut levels: Vec<Level> = Check::ALL
            .iter()
            .map(|c| Level::from(c.default_severity()))
            .collect();
        for (id, level) in &p.severity {
            let Some(check) = Check::from_id(id) else {
                return Err(Error::param(
                    format!("severity.{id}"),
                    "no check has this id; the ids are listed in docs/validation.md",
                ));
            };
            if check.is_fixed() && *level != Level::Error {
                return Err(Error::param(
                    format!("severity.{id}"),
                    "this check's severity is fixed: a row that fails it cannot be read into a batch",
                ));
            }
            levels[check_index(check)] = *level;
        }
        check_declared_signals(p.declared_signals.as_deref())?;
        Ok(Resolved {
            interval_us,
            clock_jump_us,
            future_tolerance_us,
            now_us,
            levels,
        })
    }
}

impl ParamGuard for ValidationParams {
    type Checked = CheckedValidation;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve().map(drop)
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first parameter out of range, a duration
    /// or timestamp that does not parse, an unknown check id in `severity`, or an
    /// override of a fixed check.
    fn check(self) -> Result<CheckedValidation> {
        Ok(CheckedValidation {
            resolved: self.resolve()?,
            params: self,
        })
    }
}

fn duration(name: &str, text: &str) -> Result<i64> {
    parse_duration(text).map_err(|_| {
        Error::param(
            name,
            format!("{text:?} is not a duration such as 10s, 5m, 1.5h or 2d"),
        )
    })
}

/// Declared signal names must be non-empty and distinct.
fn check_declared_signals(names: Option<&[String]>) -> Result<()> {
    let names = names.unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(Error::param(
                "declared_signals",
                "a signal name may not be empty",
            ));
        }
        if names[..i].contains(name) {
            return Err(Error::param(
                "declared_signals",
                format!("`{name}` is declared twice; list each signal once"),
            ));
        }
    }
    Ok(())
}

/// The position of a check in [`Check::ALL`].
pub(crate) fn check_index(check: Check) -> usize {
    Check::ALL.iter().position(|&c| c == check).unwrap_or(0)
}

/// Values derived from the parameters once, in the units the checks use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) interval_us: Option<i64>,
    pub(crate) clock_jump_us: i64,
    pub(crate) future_tolerance_us: i64,
    pub(crate) now_us: Option<i64>,
    /// One level per check, in [`Check::ALL`] order.
    pub(crate) levels: Vec<Level>,
}

/// Checked validation parameters: the only kind that can run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedValidation {
    params: ValidationParams,
    pub(crate) resolved: Resolved,
}

impl CheckedValidation {
    /// The parameters as given.
    pub fn params(&self) -> &ValidationParams {
        &self.params
    }

    /// The level a check runs at (its default, or the configured override).
    pub fn level(&self, check: Check) -> Level {
        self.resolved.levels[check_index(check)]
    }

    /// The reference time for `time.future`: `now` when set, else the clock.
    pub fn reference_time(&self) -> i64 {
        self.resolved.now_us.unwrap_or_else(clock_now)
    }
}

/// The system clock in UTC microseconds (0 if the clock is before 1970).
fn clock_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use itap_telemetry::MICROS_PER_SEC;

    use super::*;

    #[test]
    fn defaults_check() {
        let c = ValidationParams::default().check().unwrap();
        assert_eq!(c.resolved.interval_us, None);
        assert_eq!(c.resolved.clock_jump_us, 600 * MICROS_PER_SEC);
        assert_eq!(c.resolved.future_tolerance_us, 300 * MICROS_PER_SEC);
        assert_eq!(c.level(Check::Gap), Level::Warning);
        assert_eq!(c.level(Check::OutOfRange), Level::Error);
        assert!(c.reference_time() > 1_700_000_000 * MICROS_PER_SEC);
    }

    #[test]
    fn bad_values_are_named() {
        let name_of = |p: ValidationParams| match p.check().unwrap_err() {
            Error::InvalidParam(p) => p.name,
            other => panic!("{other}"),
        };
        let d = ValidationParams::default;
        assert_eq!(
            name_of(d().missing_rate_warning(1.5)),
            "missing_rate_warning"
        );
        assert_eq!(
            name_of(d().missing_rate_warning(0.2).missing_rate_error(0.1)),
            "missing_rate_error"
        );
        assert_eq!(name_of(d().gap_factor(1.0)), "gap_factor");
        assert_eq!(name_of(d().gap_factor(f64::NAN)), "gap_factor");
        assert_eq!(name_of(d().expected_interval("0s")), "expected_interval");
        assert_eq!(name_of(d().expected_interval("often")), "expected_interval");
        assert_eq!(name_of(d().clock_jump("-5m")), "clock_jump");
        assert_eq!(name_of(d().now(Some("tomorrow"))), "now");
        assert_eq!(name_of(d().stuck_samples(1)), "stuck_samples");
        assert_eq!(name_of(d().duplicate_window(0)), "duplicate_window");
        assert_eq!(name_of(d().max_tracked_runs(10)), "max_tracked_runs");
        assert_eq!(name_of(d().max_missing_run(0)), "max_missing_run");
        assert_eq!(name_of(d().required_columns([" "])), "required_columns");
    }

    #[test]
    fn severity_overrides() {
        let c = ValidationParams::default()
            .severity(Check::OutOfRange, Level::Warning)
            .severity(Check::Gap, Level::Off)
            .check()
            .unwrap();
        assert_eq!(c.level(Check::OutOfRange), Level::Warning);
        assert_eq!(c.level(Check::Gap), Level::Off);
        let e = ValidationParams::default()
            .severity(Check::Unparseable, Level::Warning)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("severity.time.unparseable"), "{e}");
        let mut p = ValidationParams::default();
        p.severity.insert("time.gapp".into(), Level::Off);
        assert!(p.check().unwrap_err().to_string().contains("time.gapp"));
    }

    #[test]
    fn declared_signals_are_not_a_config_key_and_are_checked() {
        let p = ValidationParams::default().declared_signals(Some(vec!["temp_c".into()]));
        assert_eq!(
            p.declared_signals.as_deref(),
            Some(&["temp_c".to_owned()][..])
        );
        assert!(p.clone().check().is_ok());
        let json = serde_json::to_string(&p).unwrap();
        assert!(
            !json.contains("declared_signals") && !json.contains("temp_c"),
            "{json}"
        );
        let back: ValidationParams = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ValidationParams::default());
        for bad in [vec![" ".to_owned()], vec!["rpm".into(), "rpm".into()]] {
            let e = ValidationParams::default()
                .declared_signals(Some(bad))
                .check()
                .unwrap_err();
            assert!(e.to_string().contains("declared_signals"), "{e}");
        }
    }

    #[test]
    fn explicit_interval_and_now() {
        let c = ValidationParams::default()
            .expected_interval("10s")
            .now(Some("2026-01-02T00:00:00Z"))
            .check()
            .unwrap();
        assert_eq!(c.resolved.interval_us, Some(10 * MICROS_PER_SEC));
        assert_eq!(c.reference_time(), 1_767_312_000 * MICROS_PER_SEC);
        assert_eq!("quarantine".parse::<Policy>().unwrap(), Policy::Quarantine);
        assert!("keep".parse::<Policy>().is_err());
    }
}
