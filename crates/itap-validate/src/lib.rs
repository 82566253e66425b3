#![doc = include_str!("../README.md")]

mod batch;
mod checks;
mod columns;
mod engine;
mod error;
mod file;
mod findings;
mod index;
mod params;
mod report;
mod validated;

pub use batch::{BatchStream, validate_batch};
pub use checks::{Check, Level, Scope, Severity};
pub use error::{Error, Result};
pub use file::{
    CHUNK_ROWS, QUARANTINE_REASONS_COLUMN, ValidatedChunks, sha256_file, validate_file,
    validate_reader,
};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use params::{CheckedValidation, Policy, ValidationParams};
pub use report::{
    CheckSummary, ColumnStats, DeviceSummary, Example, Finding, InputInfo, LayoutInfo,
    REPORT_FORMAT_VERSION, Report, TimeBounds, Totals, Verdict,
};
pub use validated::Validated;
