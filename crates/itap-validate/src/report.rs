//! The machine-readable validation report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use itap_telemetry::{ReadOptions, Schema};

use crate::checks::{Level, Scope, Severity};
use crate::params::{Policy, ValidationParams};

/// The version of the report's JSON layout. It changes when a field is renamed or
/// removed or its meaning changes; adding a field does not change it.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// What a validation concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No warning and no error (info findings allowed).
    Valid,
    /// Warnings only: the data may be stored.
    ValidWithWarnings,
    /// Row errors under the quarantine policy: the bad rows are set aside and the
    /// good rows may be stored.
    Quarantined,
    /// Nothing of the input may be stored: a file-level error, or row errors under
    /// the reject policy.
    Rejected,
}

impl Verdict {
    /// Whether (some) rows of the input may be stored.
    pub fn is_storable(self) -> bool {
        !matches!(self, Verdict::Rejected)
    }

    /// The verdict in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::ValidWithWarnings => "valid with warnings",
            Verdict::Quarantined => "bad rows quarantined, good rows accepted",
            Verdict::Rejected => "rejected",
        }
    }
}

/// Where the input came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputInfo {
    /// The file (or the name given for a reader); `None` for an in-memory batch.
    pub path: Option<String>,
    /// SHA-256 of the input's bytes, lowercase hex; `None` for an in-memory batch.
    pub sha256: Option<String>,
    /// The input's size in bytes; `None` for an in-memory batch.
    pub bytes: Option<u64>,
}

/// How the file's columns were understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutInfo {
    /// The timestamp column.
    pub timestamp: String,
    /// The device column; `None` = one device for the whole file.
    pub device: Option<String>,
    /// The state column, if any.
    pub state: Option<String>,
    /// The error code column, if any.
    pub error_code: Option<String>,
    /// The ground-truth column (`anomaly_tag` or `label`), if any.
    pub truth: Option<String>,
    /// The signal columns, in schema order.
    pub signals: Vec<String>,
    /// Columns mapped to nothing.
    pub ignored: Vec<String>,
}

/// The first and last timestamp of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBounds {
    /// The earliest timestamp, RFC 3339 UTC.
    pub first: String,
    /// The latest timestamp, RFC 3339 UTC.
    pub last: String,
    /// The earliest timestamp, UTC microseconds.
    pub first_us: i64,
    /// The latest timestamp, UTC microseconds.
    pub last_us: i64,
}

/// Statistics of one signal column over the rows that could be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The column.
    pub name: String,
    /// Rows with a value (finite or not).
    pub count: u64,
    /// Rows without a value (empty, `NaN`, `NA`, `null`…).
    pub missing: u64,
    /// `missing / (count + missing)`; 0 when there is no row.
    pub missing_rate: f64,
    /// Infinite values (counted in `count`, left out of min, max and mean).
    pub non_finite: u64,
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of the finite values.
    pub mean: Option<f64>,
}

/// One device's rows at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// The device id.
    pub id: String,
    /// Rows read for it.
    pub rows: u64,
    /// Its earliest timestamp, RFC 3339.
    pub first: String,
    /// Its latest timestamp, RFC 3339.
    pub last: String,
    /// The sampling interval gaps were measured against, in seconds (`None` with
    /// fewer than two rows).
    pub interval_s: Option<f64>,
    /// Steps longer than `gap_factor` intervals.
    pub gaps: u64,
    /// The longest step forward between consecutive rows, in seconds.
    pub longest_step_s: Option<f64>,
    /// The longest run of consecutive missing values per signal (signals with none
    /// are left out).
    pub longest_missing_run: BTreeMap<String, u64>,
}

/// One offending row (or, for a file-level finding, one occurrence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// 1-based line in the file where the row starts (the header is line 1);
    /// `None` for an in-memory batch or a whole-file finding.
    pub line: Option<u64>,
    /// 0-based index of the row among the data rows (file order); `None` for a
    /// whole-file finding.
    pub row: Option<u64>,
    /// The row's device, when known.
    pub device: Option<String>,
    /// The column, when one is at fault.
    pub column: Option<String>,
    /// The offending value as found (or the measured quantity).
    pub value: String,
    /// What is wrong with it, in words.
    pub detail: String,
}

/// The findings of one check on one column (or on no particular column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The check's stable id, for example `range.out_of_range`.
    pub check: String,
    /// The severity it was reported at.
    pub severity: Severity,
    /// Whether it points at rows or at the file.
    pub scope: Scope,
    /// The column, when the check is about one.
    pub column: Option<String>,
    /// Occurrences: rows for row checks, except `completeness.missing_run` and
    /// `sensor.stuck`, which count runs; see `docs/validation.md`.
    pub count: u64,
    /// What the check finds, with its threshold.
    pub message: String,
    /// The first occurrences, in file order (at most `max_examples`).
    pub examples: Vec<Example>,
}

/// One check as run: its level and how many occurrences it found in total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    /// The stable id.
    pub id: String,
    /// The level it ran at (`off` = not run).
    pub level: Level,
    /// Row or file.
    pub scope: Scope,
    /// Occurrences over all columns.
    pub count: u64,
}

/// Occurrences by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Error occurrences.
    pub errors: u64,
    /// Warning occurrences.
    pub warnings: u64,
    /// Info occurrences.
    pub infos: u64,
}

/// The result of validating a file or a batch: versioned, serializable, and the
/// only thing [`ValidatedChunks`](crate::ValidatedChunks) trusts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The crate and version that wrote it.
    pub generator: String,
    /// The input.
    pub input: InputInfo,
    /// The policy applied.
    pub policy: Policy,
    /// The reference time `time.future` compared against, RFC 3339.
    pub reference_time: String,
    /// The same, UTC microseconds.
    pub reference_time_us: i64,
    /// The parameters validation ran with.
    pub params: ValidationParams,
    /// How the input was read (`declared` signals are in `schema`); `None` for an
    /// in-memory batch.
    pub read_options: Option<ReadOptions>,
    /// The column mapping; `None` for an in-memory batch or a file whose header
    /// could not be mapped.
    pub layout: Option<LayoutInfo>,
    /// The signals as validated, with their declared ranges; `None` when the header
    /// could not be mapped.
    pub schema: Option<Schema>,
    /// Data rows read.
    pub rows: u64,
    /// Rows with at least one error-severity row finding.
    pub rows_with_errors: u64,
    /// Rows that may be stored: all rows when valid, the good rows when
    /// quarantined, 0 when rejected.
    pub rows_accepted: u64,
    /// Distinct devices.
    pub devices: u64,
    /// First and last timestamp; `None` without a readable row.
    pub time: Option<TimeBounds>,
    /// Per-signal statistics.
    pub columns: Vec<ColumnStats>,
    /// Per-device summaries, in order of first appearance.
    pub per_device: Vec<DeviceSummary>,
    /// Every check with its level and total count, in catalogue order.
    pub checks: Vec<CheckSummary>,
    /// The non-empty findings, by check (catalogue order) and column.
    pub findings: Vec<Finding>,
    /// Occurrences by severity.
    pub totals: Totals,
    /// The conclusion.
    pub verdict: Verdict,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // A report holds only strings, numbers, options and maps with string keys;
        // non-finite floats become null. Serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a report from JSON.
    ///
    /// # Errors
    /// [`Error::ReportMismatch`](crate::Error::ReportMismatch) when the text is not
    /// a report or has another format version.
    pub fn from_json(text: &str) -> crate::Result<Report> {
        let bad = |reason: String| crate::Error::ReportMismatch {
            path: "<report>".into(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not a JSON report: {e}")))?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(REPORT_FORMAT_VERSION)) {
            return Err(bad(format!(
                "report format version {version:?}, this build reads {REPORT_FORMAT_VERSION}"
            )));
        }
        serde_json::from_value(value).map_err(|e| bad(format!("not a validation report: {e}")))
    }

    /// Whether there is at least one error-severity finding.
    pub fn has_errors(&self) -> bool {
        self.totals.errors > 0
    }

    /// The findings of one check.
    pub fn findings_of<'a>(
        &'a self,
        check_id: &str,
    ) -> impl Iterator<Item = &'a Finding> + use<'a> {
        let id = check_id.to_owned();
        self.findings.iter().filter(move |f| f.check == id)
    }

    /// Total occurrences of one check (0 when it found nothing or did not run).
    pub fn count_of(&self, check_id: &str) -> u64 {
        self.findings_of(check_id).map(|f| f.count).sum()
    }

    /// The first error finding in words, for messages.
    pub fn first_error(&self) -> Option<String> {
        let f = self
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)?;
        let mut s = f.check.clone();
        if let Some(c) = &f.column {
            s.push_str(&format!(" on `{c}`"));
        }
        if let Some(e) = f.examples.first() {
            if let Some(line) = e.line {
                s.push_str(&format!(" at line {line}"));
            }
            s.push_str(&format!(": {}", e.detail));
        }
        Some(s)
    }
}

/// Puts a report together from what the engine found.
pub(crate) fn assemble(
    s: crate::engine::Summary,
    input: InputInfo,
    params: &crate::params::CheckedValidation,
    now_us: i64,
    read_options: Option<ReadOptions>,
    layout: Option<LayoutInfo>,
    schema: Option<Schema>,
) -> Report {
    let mut totals = Totals::default();
    for f in &s.findings {
        match f.severity {
            Severity::Error => totals.errors += f.count,
            Severity::Warning => totals.warnings += f.count,
            Severity::Info => totals.infos += f.count,
        }
    }
    let file_error = s
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error && f.scope == Scope::File);
    let row_error = s.rows_with_errors > 0;
    let policy = params.params().policy;
    let verdict = if file_error || (row_error && policy == Policy::Reject) {
        Verdict::Rejected
    } else if row_error {
        Verdict::Quarantined
    } else if totals.warnings > 0 {
        Verdict::ValidWithWarnings
    } else {
        Verdict::Valid
    };
    let rows_accepted = match verdict {
        Verdict::Rejected => 0,
        Verdict::Quarantined => s.rows - s.rows_with_errors,
        Verdict::Valid | Verdict::ValidWithWarnings => s.rows,
    };
    let checks = crate::checks::Check::ALL
        .iter()
        .zip(&s.check_counts)
        .map(|(&c, &count)| CheckSummary {
            id: c.id().to_owned(),
            level: params.level(c),
            scope: c.scope(),
            count,
        })
        .collect();
    Report {
        format_version: REPORT_FORMAT_VERSION,
        generator: concat!("itap-validate ", env!("CARGO_PKG_VERSION")).to_owned(),
        input,
        policy,
        reference_time: itap_telemetry::format_timestamp(now_us),
        reference_time_us: now_us,
        params: params.params().clone(),
        read_options,
        layout,
        schema,
        rows: s.rows,
        rows_with_errors: s.rows_with_errors,
        rows_accepted,
        devices: s.devices,
        time: s.time,
        columns: s.columns,
        per_device: s.per_device,
        checks,
        findings: s.findings,
        totals,
        verdict,
    }
}
