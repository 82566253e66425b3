//! The crate's error type.

use std::path::PathBuf;

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in itap-eval.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// There is no training score to set a threshold from.
    #[error("the model records no training score to set the threshold from; retrain it")]
    NoTrainingScores,

    /// The threshold rule needs calibration rows, and only the sketch was given.
    #[error(
        "`target_false_alerts_per_device_day` sets the threshold from calibration rows; \
         use `threshold_calibrated` with the held-back calibration slice of the training span"
    )]
    CalibrationNeeded,

    /// Inputs that must be aligned row for row are not.
    #[error("misaligned inputs: {0}")]
    Misaligned(String),

    /// The split leaves no rows on one side.
    #[error(
        "the split at {cut} leaves no {side} rows; choose another `train_fraction` or `train_until`"
    )]
    EmptySplit {
        /// The cut, RFC 3339.
        cut: String,
        /// `training` or `evaluation`.
        side: &'static str,
    },

    /// An artifact could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Drawing a plot failed.
    #[error("cannot draw the {plot} plot: {message}")]
    Plot {
        /// Which plot.
        plot: &'static str,
        /// What the plotting library said.
        message: String,
    },

    /// The telemetry layer failed (parsing a timestamp).
    #[error(transparent)]
    Telemetry(#[from] itap_telemetry::Error),
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
