//! The crate's error type.

use std::path::PathBuf;

use crate::param::InvalidParam;

/// Everything that can go wrong in itap-telemetry.
///
/// Variants carry the context a user needs to fix the input: the file, the line
/// (1-based, counting the header as line 1), the column and the offending value.
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

    /// The CSV layer failed (malformed quoting, wrong field count, bad UTF-8…).
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number, 0 when unknown.
        line: u64,
        /// What the CSV reader said.
        message: String,
    },

    /// A field could not be parsed as the type its column needs.
    #[error("{path}:{line}: column `{column}`: cannot read {value:?} as {expected}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column's name.
        column: String,
        /// The field as found.
        value: String,
        /// What the column holds, in words (for example "a timestamp").
        expected: &'static str,
    },

    /// The header lacks a column the reader needs.
    #[error("{path}: no {role} column found (header: {header}); name it with {hint}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// Which column, in words ("timestamp", "signal `temp_c`").
        role: String,
        /// The header as read, comma-joined.
        header: String,
        /// How to tell the reader which column it is: the [`ReadOptions`](crate::ReadOptions)
        /// field, in words.
        hint: &'static str,
    },

    /// The file has no header line at all.
    #[error("{path}: the file is empty; a CSV with a header line is expected")]
    Empty {
        /// The file.
        path: PathBuf,
    },

    /// A timestamp or time zone string is not understood outside of a file.
    #[error("cannot read {value:?} as {expected}")]
    Value {
        /// The text as given.
        value: String,
        /// What was expected, in words.
        expected: &'static str,
    },

    /// A parameter or schema declaration is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// Columns of a batch do not fit together.
    #[error("inconsistent batch: {0}")]
    Inconsistent(String),
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

    /// An I/O error naming `path` (the writers name their output `<output>`,
    /// not knowing where it goes); any other error is returned as it is.
    #[must_use]
    pub fn at_path(self, path: impl Into<PathBuf>) -> Self {
        match self {
            Error::Io { source, .. } => Error::io(path, source),
            other => other,
        }
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
