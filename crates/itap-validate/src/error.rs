//! The crate's error type.

use std::path::PathBuf;

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in itap-validate.
///
/// Problems *in the data* are not errors: they are findings in the
/// [`Report`](crate::Report). An `Error` means validation itself could not run (a file
/// could not be read, a parameter is out of range) or a caller asked for validated
/// rows that the report does not vouch for.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The telemetry layer failed (reading the CSV input).
    #[error(transparent)]
    Telemetry(#[from] itap_telemetry::Error),

    /// A validation parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// Validated rows were asked for a file whose report rejects it.
    #[error(
        "{path}: the validation report rejects this file ({errors} error finding(s), first: {first}); fix the rows listed in the report (or use the quarantine policy) and validate again"
    )]
    Rejected {
        /// The file.
        path: PathBuf,
        /// Error-severity occurrences in the report.
        errors: u64,
        /// The first error finding, in words.
        first: String,
    },

    /// The file changed since it was validated.
    #[error(
        "{path}: the file's SHA-256 is {found} but the validation report was made for {expected}; validate the file again"
    )]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The digest in the report.
        expected: String,
        /// The digest of the file now.
        found: String,
    },

    /// A report does not belong to this file, these parameters or this schema.
    #[error("{path}: {reason}; validate the file again with the same settings")]
    ReportMismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam(InvalidParam::new(name, reason))
    }

    /// Names an [`InvalidParam`] inside `section` (see [`InvalidParam::prefixed`]);
    /// any other error is returned as it is.
    #[must_use]
    pub fn in_section(self, section: &str) -> Self {
        match self {
            Error::InvalidParam(p) => Error::InvalidParam(p.prefixed(section)),
            other => other,
        }
    }
}
