//! The crate's error type.

use std::path::PathBuf;

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in itap-features.
///
/// Missing or undefined values in the data are not errors: they become NaN in the
/// [`FeatureMatrix`](crate::FeatureMatrix), and the missing-value features say where.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The telemetry layer failed (for example, a duration that does not parse).
    #[error(transparent)]
    Telemetry(#[from] itap_telemetry::Error),

    /// The dataframe engine failed.
    #[error("polars: {0}")]
    Polars(#[from] polars::error::PolarsError),

    /// A file could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A feature parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// A signal the parameters or the fit name is not in the batch's schema.
    #[error("signal `{signal}` is not in the data (its signals: {available}); {hint}")]
    UnknownSignal {
        /// The signal asked for.
        signal: String,
        /// The signals the data has, comma-separated.
        available: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// The training span holds no row, so nothing can be learned from it.
    #[error("the training span holds no row ({span}); choose a later cut or a larger fraction")]
    EmptyTraining {
        /// The span as asked for, in words.
        span: String,
    },

    /// A row mask does not have one entry per row.
    #[error("the training mask has {mask} entries for a batch of {rows} rows")]
    MaskLength {
        /// Entries in the mask.
        mask: usize,
        /// Rows in the batch.
        rows: usize,
    },

    /// A fit (read from a file) does not hold together.
    #[error("the features fit is inconsistent: {reason}; fit again rather than edit a fit by hand")]
    InvalidFit {
        /// What does not fit.
        reason: String,
    },

    /// A window is too long for the span of one device's data to be indexed.
    #[error(
        "window {window} is too long for device `{device}` ({rows} rows): its window index would overflow; use a shorter window"
    )]
    WindowOverflow {
        /// The window, as named in feature names.
        window: String,
        /// The device.
        device: String,
        /// That device's rows.
        rows: usize,
    },

    /// A feature that needs a window of rows was asked of the row-by-row engine.
    #[error(
        "feature `{feature}` needs a window of rows and cannot be computed row by row (live scoring computes {supported}); train the model with detector inputs among those kinds"
    )]
    NotOnline {
        /// The first such feature.
        feature: String,
        /// The kinds that can be computed row by row.
        supported: &'static str,
    },

    /// A row the row-by-row engine cannot take, or a saved state it cannot resume.
    #[error("device `{device}`: {reason}")]
    OnlineRow {
        /// The device.
        device: String,
        /// What is wrong.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
