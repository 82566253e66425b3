//! The pipeline's error type: each stage's error, wrapped, plus the model file's.

use std::path::PathBuf;

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in the pipeline.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or simulating telemetry failed.
    #[error(transparent)]
    Telemetry(#[from] itap_telemetry::Error),
    /// Validation failed to run (not: found problems — that is a verdict).
    #[error(transparent)]
    Validate(#[from] itap_validate::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] itap_store::Error),
    /// Feature engineering failed.
    #[error(transparent)]
    Features(#[from] itap_features::Error),
    /// A detector or the scaler failed.
    #[error(transparent)]
    Anomaly(#[from] itap_anomaly::Error),
    /// Evaluation or a report failed.
    #[error(transparent)]
    Eval(#[from] itap_eval::Error),

    /// The input was refused by validation: nothing was stored.
    #[error("{path}: validation found error-severity problems ({reason}); nothing was stored")]
    Refused {
        /// The input.
        path: String,
        /// The first error finding.
        reason: String,
        /// The whole validation report.
        report: Box<itap_validate::Report>,
    },

    /// A model file cannot be read or written.
    #[error("model file {path}: {reason}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The data's features are not the ones the model was trained on.
    #[error(
        "the data's features differ from the model's: missing {missing:?}, extra {extra:?}; retrain with `itap train` on data with these signals"
    )]
    FeatureMismatch {
        /// Features the model needs that the data does not give.
        missing: Vec<String>,
        /// Features the data gives that the model does not know.
        extra: Vec<String>,
    },

    /// The training span holds no row to fit on.
    #[error(
        "no training rows left after the exclusions ({0}); use a later `train_until` or an unsupervised training set"
    )]
    NoTrainingRows(String),

    /// There is no data to work on.
    #[error("{0}")]
    NoData(String),

    /// A pipeline parameter (outside the crates' own params types, such as the
    /// [`TrainingSet`](crate::TrainingSet)'s) is out of range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),

    /// The async runtime for the store could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The pipeline's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Names an [`InvalidParam`] of the pipeline's own inside `section` (see
    /// [`InvalidParam::prefixed`]); any other error, a stage's included, is
    /// returned as it is (use the stage error's own `in_section`).
    #[must_use]
    pub fn in_section(self, section: &str) -> Self {
        match self {
            Error::InvalidParam(p) => Error::InvalidParam(p.prefixed(section)),
            other => other,
        }
    }

    pub(crate) fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam(InvalidParam::new(name, reason))
    }
}
