//! The catalogue of checks: stable ids, default severities and scopes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never blocks anything.
    Info,
    /// Reported; the data may still be stored.
    Warning,
    /// Blocks storage: of the whole file, or (under the quarantine policy, for a
    /// row-scoped check) of the offending rows.
    Error,
}

impl Severity {
    /// The name as written in reports and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A check's severity as configured: a [`Severity`], or `off` to skip the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The check does not run.
    Off,
    /// Findings are informational.
    Info,
    /// Findings are warnings.
    Warning,
    /// Findings are errors.
    Error,
}

impl Level {
    /// The severity findings get, `None` when the check is off.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Level::Off => None,
            Level::Info => Some(Severity::Info),
            Level::Warning => Some(Severity::Warning),
            Level::Error => Some(Severity::Error),
        }
    }
}

impl From<Severity> for Level {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => Level::Info,
            Severity::Warning => Level::Warning,
            Severity::Error => Level::Error,
        }
    }
}

/// What a finding points at: one row, or the file as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The finding belongs to a row. An error-severity row finding makes that row
    /// bad: under the quarantine policy it is set aside and the other rows may be
    /// stored.
    Row,
    /// The finding is about the file (its header, a column's missing rate, the
    /// time axis between rows). An error-severity file finding rejects the file
    /// under either policy.
    File,
}

macro_rules! checks {
    ($( $(#[$doc:meta])* $variant:ident => $id:literal, $sev:ident, $scope:ident, $fixed:literal, $what:literal; )*) => {
        /// One data-quality check, with a stable id (`family.name`) used in reports,
        /// in the quarantine file and in the `[validation.severity]` config table.
        ///
        /// The catalogue, with thresholds, is in `docs/validation.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Check {
            $( $(#[$doc])* $variant, )*
        }

        impl Check {
            /// Every check, in report order.
            pub const ALL: &'static [Check] = &[ $( Check::$variant, )* ];

            /// The stable id, for example `time.duplicate_conflict`.
            pub fn id(self) -> &'static str {
                match self { $( Check::$variant => $id, )* }
            }

            /// The severity findings get unless configured otherwise.
            pub fn default_severity(self) -> Severity {
                match self { $( Check::$variant => Severity::$sev, )* }
            }

            /// Whether findings point at rows or at the file.
            pub fn scope(self) -> Scope {
                match self { $( Check::$variant => Scope::$scope, )* }
            }

            /// Whether the severity is fixed: a row that fails a fixed check cannot
            /// be represented in a batch at all (or the file cannot be read), so the
            /// check can be neither turned off nor downgraded.
            pub fn is_fixed(self) -> bool {
                match self { $( Check::$variant => $fixed, )* }
            }

            /// What the check finds, in one line.
            pub fn describe(self) -> &'static str {
                match self { $( Check::$variant => $what, )* }
            }

            /// The check with this id.
            pub fn from_id(id: &str) -> Option<Check> {
                Check::ALL.iter().copied().find(|c| c.id() == id)
            }
        }
    };
}

checks! {
    /// The file has no header line.
    NoHeader => "schema.no_header", Error, File, true,
        "the file is empty: there is no header line";
    /// The header cannot be mapped (a signal column name is not an identifier, or
    /// appears twice).
    BadHeader => "schema.bad_header", Error, File, true,
        "a column name cannot be used (not an identifier, reserved, or repeated)";
    /// A required column is absent.
    MissingColumn => "schema.missing_column", Error, File, true,
        "a required column is absent from the header";
    /// A declared signal is not among the input's signal columns.
    MissingSignal => "schema.missing_signal", Error, File, false,
        "a declared signal is not among the input's signal columns";
    /// A column is not mapped to anything and is ignored.
    UnknownColumn => "schema.unknown_column", Info, File, false,
        "a column is neither a key, a signal nor a known label column, and is ignored";
    /// A signal column that is not among the declared signals.
    UndeclaredColumn => "schema.undeclared_column", Warning, File, false,
        "a signal column of the input is not among the declared signals";
    /// The file starts with a UTF-8 byte order mark.
    Bom => "schema.bom", Info, File, false,
        "the file starts with a UTF-8 byte order mark (it is skipped)";
    /// The file has a header but no data row.
    NoRows => "schema.no_rows", Warning, File, false,
        "the file has a header but no data row";
    /// A row has more or fewer fields than the header.
    FieldCount => "schema.field_count", Error, Row, true,
        "a row has more or fewer fields than the header";
    /// A field of a mapped column is not valid UTF-8.
    Encoding => "schema.encoding", Error, Row, true,
        "a field of a mapped column is not valid UTF-8";
    /// A field does not parse as its column's type.
    Type => "schema.type", Error, Row, true,
        "a field does not parse as its column's type (text in a numeric column)";
    /// A column's missing rate is above `missing_rate_warning`.
    MissingRate => "completeness.missing_rate", Warning, File, false,
        "a signal's share of missing values is above missing_rate_warning";
    /// A column's missing rate is above `missing_rate_error`.
    MostlyMissing => "completeness.mostly_missing", Error, File, false,
        "a signal's share of missing values is above missing_rate_error";
    /// A device's signal is missing for `max_missing_run` samples in a row.
    MissingRun => "completeness.missing_run", Warning, Row, false,
        "a device's signal is missing for at least max_missing_run consecutive samples";
    /// A value outside its signal's declared range.
    OutOfRange => "range.out_of_range", Error, Row, false,
        "a value lies outside its signal's declared valid range";
    /// An infinite value.
    NonFinite => "range.non_finite", Error, Row, false,
        "a value is infinite (inf, -Infinity, 1e999…)";
    /// A negative value of a signal listed in `non_negative`.
    Negative => "range.negative", Error, Row, false,
        "a signal that cannot be negative (non_negative, by default rpm) is negative";
    /// A state that is not RUN, IDLE or MAINT.
    UnknownState => "range.unknown_state", Error, Row, true,
        "a state value is not RUN, IDLE or MAINT";
    /// An empty device id.
    EmptyDevice => "range.empty_device", Error, Row, true,
        "a device id is empty";
    /// A timestamp that does not parse.
    Unparseable => "time.unparseable", Error, Row, true,
        "a timestamp does not parse as ISO 8601 / RFC 3339";
    /// A row earlier than the device's previous row (by less than `clock_jump`).
    OutOfOrder => "time.out_of_order", Warning, Row, false,
        "a row is earlier than its device's previous row (by less than clock_jump)";
    /// A repeated (device, timestamp) key whose values equal the first row's.
    DuplicateEqual => "time.duplicate_equal", Warning, Row, false,
        "a (device, timestamp) key repeats an earlier row with equal values";
    /// A repeated (device, timestamp) key whose values differ from the first row's.
    DuplicateConflict => "time.duplicate_conflict", Error, Row, false,
        "a (device, timestamp) key repeats an earlier row with different values";
    /// A repeated key whose first row is too far back to compare values.
    DuplicateUnverified => "time.duplicate_unverified", Error, Row, false,
        "a (device, timestamp) key repeats a row more than duplicate_window rows back, whose values were not kept";
    /// Exact duplicate detection reached its memory bound.
    DuplicateTrackingLimited => "time.duplicate_tracking_limited", Warning, File, false,
        "the duplicate-key index reached max_tracked_runs; later duplicates are found only within duplicate_window rows";
    /// A gap longer than `gap_factor` × the sampling interval.
    Gap => "time.gap", Warning, File, false,
        "a device has no row for longer than gap_factor × its sampling interval";
    /// The clock steps back by at least `clock_jump`.
    ClockJumpBack => "time.clock_jump_back", Warning, File, false,
        "a device's timestamps step back by at least clock_jump (a daylight-saving change, a reset clock)";
    /// A timestamp later than the reference time plus `future_tolerance`.
    Future => "time.future", Error, Row, false,
        "a timestamp lies after the reference time (now) plus future_tolerance";
    /// A signal stuck at one value for `stuck_samples` samples while running.
    Stuck => "sensor.stuck", Warning, Row, false,
        "a signal keeps exactly one value for at least stuck_samples samples while the device is running";
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_round_trip() {
        for (i, c) in Check::ALL.iter().enumerate() {
            assert_eq!(Check::from_id(c.id()), Some(*c));
            assert!(
                Check::ALL[..i].iter().all(|o| o.id() != c.id()),
                "{c} twice"
            );
            let (family, name) = c.id().split_once('.').expect("family.name");
            assert!(
                ["schema", "completeness", "range", "time", "sensor"].contains(&family),
                "{c}"
            );
            assert!(name.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'));
        }
        assert_eq!(Check::from_id("time.nonsense"), None);
    }

    #[test]
    fn fixed_checks_are_errors() {
        for c in Check::ALL.iter().filter(|c| c.is_fixed()) {
            assert_eq!(c.default_severity(), Severity::Error, "{c}");
        }
    }
}
