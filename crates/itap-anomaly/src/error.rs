//! The crate's error type.

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in itap-anomaly.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// There are too few rows to fit.
    #[error("{what} needs at least {needed} training row(s), got {rows}; widen the training span")]
    TooFewRows {
        /// The component being fitted.
        what: &'static str,
        /// The rows it was given (after any row mask).
        rows: usize,
        /// The least it can work with.
        needed: usize,
    },

    /// The matrix has no columns.
    #[error("the matrix has no columns; a detector needs at least one feature")]
    NoColumns,

    /// The training rows do not vary, so PCA has no direction to keep.
    #[error("the {rows} training row(s) do not vary in any column; PCA needs variation")]
    NoVariance {
        /// The training rows.
        rows: usize,
    },

    /// A value the fit cannot use: NaN or infinite.
    #[error(
        "training row {row}, column {column} is {value}: fitting needs finite values; drop those rows (for example with a row mask from `finite_rows`) or impute them"
    )]
    NonFinite {
        /// The row, counted from 0 in the matrix given to the fit (before any mask).
        row: usize,
        /// The column, counted from 0.
        column: usize,
        /// The offending value.
        value: f64,
    },

    /// A column of the training rows has no finite value at all.
    #[error("column {column} has no finite value in the {rows} training row(s); drop the column")]
    EmptyColumn {
        /// The column, counted from 0.
        column: usize,
        /// The training rows.
        rows: usize,
    },

    /// A matrix has a different number of columns from the one the model was fitted on.
    #[error(
        "the matrix has {found} column(s) but the model was fitted on {expected}; score with the same features in the same order"
    )]
    ColumnMismatch {
        /// Columns of the training matrix.
        expected: usize,
        /// Columns of the matrix given now.
        found: usize,
    },

    /// A row mask or output buffer does not have one entry per row.
    #[error("{what} has {found} entries but the matrix has {expected} rows")]
    LengthMismatch {
        /// The mask or buffer.
        what: &'static str,
        /// Rows of the matrix.
        expected: usize,
        /// Entries given.
        found: usize,
    },

    /// A row index past the end of the matrix.
    #[error("row index {row} is out of range: the matrix has {rows} rows")]
    RowOutOfRange {
        /// The index given.
        row: usize,
        /// Rows of the matrix.
        rows: usize,
    },

    /// A serialized model is not one this crate could have written.
    #[error("invalid model: {reason}")]
    InvalidModel {
        /// What is wrong with it.
        reason: String,
    },

    /// The eigen-decomposition of the covariance matrix failed.
    #[error("the eigen-decomposition of the covariance matrix failed: {0}")]
    Linalg(#[from] linfa_linalg::LinalgError),

    /// An error from linfa (through its traits).
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn param(name: &str, reason: impl Into<String>) -> Self {
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

    pub(crate) fn model(reason: impl Into<String>) -> Self {
        Error::InvalidModel {
            reason: reason.into(),
        }
    }
}
