//! The crate's error type.

use itap_telemetry::InvalidParam;

/// Everything that can go wrong in itap-store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one this crate can use.
    #[error("cannot use database URL {url:?}: {reason}")]
    Url {
        /// The URL as given (credentials included only as the user wrote them).
        url: String,
        /// Why, and what would be accepted.
        reason: String,
    },

    /// The database driver failed; `during` says what ITAP was doing.
    #[error("database error while {during}: {source}")]
    Database {
        /// What was being done, in words ("creating dataset `plant`").
        during: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// SQLite failed while the rows of a chunk were written directly on the
    /// connection; `during` says what ITAP was doing.
    #[error("database error while {during}: {source}")]
    Sqlite {
        /// What was being done, in words.
        during: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// Applying the schema migrations failed.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A dataset name is not a plain identifier, or is reserved.
    #[error("invalid dataset name {name:?}: {reason}")]
    DatasetName {
        /// The name as given.
        name: String,
        /// What is allowed.
        reason: &'static str,
    },

    /// The dataset does not exist.
    #[error("dataset `{0}` does not exist; ingest a file into it first")]
    NoSuchDataset(String),

    /// The batch's signals differ from the dataset's recorded schema.
    #[error(
        "the input's signals differ from dataset `{dataset}`: {details}; ingest it into another dataset or fix its columns"
    )]
    SchemaMismatch {
        /// The dataset.
        dataset: String,
        /// Which columns are missing, extra or of another kind.
        details: String,
    },

    /// A value cannot be stored in its column.
    #[error("column `{column}` of dataset `{dataset}` holds whole numbers; {value} is not one")]
    NotInteger {
        /// The dataset.
        dataset: String,
        /// The column.
        column: String,
        /// The value.
        value: f64,
    },

    /// An alert of a [`Store::put_alerts`](crate::Store::put_alerts) call cannot be
    /// stored; nothing of the call was stored.
    #[error(
        "cannot store alerts[{index}] (id {id:?}) in dataset `{dataset}`: `{field}` {reason}; nothing of the call was stored"
    )]
    InvalidAlert {
        /// The dataset.
        dataset: String,
        /// The alert's position in the call.
        index: usize,
        /// The alert's id, as given.
        id: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A live commit holds a score that cannot be stored.
    #[error(
        "cannot store scores[{index}] in dataset `{dataset}`: {reason}; nothing of the commit was stored"
    )]
    InvalidScore {
        /// The dataset.
        dataset: String,
        /// The score's position in the commit.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// Validation failed below the store (reading or re-checking the input).
    #[error(transparent)]
    Validate(#[from] itap_validate::Error),

    /// The telemetry layer failed (building a batch from stored rows).
    #[error(transparent)]
    Telemetry(#[from] itap_telemetry::Error),

    /// A store parameter is out of its allowed range.
    #[error(transparent)]
    InvalidParam(#[from] InvalidParam),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

/// Adds "while …" context to driver errors.
pub(crate) trait Context<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sqlite {
            during: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Database {
            during: what(),
            source,
        })
    }
}
