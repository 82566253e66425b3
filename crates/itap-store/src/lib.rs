#![doc = include_str!("../README.md")]

mod error;
mod ingest;
mod query;
mod store;

pub use error::{Error, Result};
pub use ingest::{Ingest, IngestCounts, IngestReport, IngestSource, LedgerEntry, OnConflict};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use query::{DatasetStats, RangeQuery};
pub use store::{
    Backend, DEFAULT_DATASET, DEFAULT_DB_URL, Dataset, Store, StoreOptions, check_name,
};
