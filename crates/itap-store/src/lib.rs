#![doc = include_str!("../README.md")]

mod alert;
mod backend;
mod error;
mod ingest;
mod ledger;
mod live;
mod query;
mod store;

pub use alert::{AlertQuery, AlertRecord, AlertsWritten};
pub use error::{Error, Result};
pub use ingest::{Ingest, IngestCounts, IngestReport, IngestSource, OnConflict};
pub use itap_telemetry::{InvalidParam, ParamGuard};
pub use ledger::LedgerEntry;
pub use live::{
    DeviceStateRecord, LiveCommit, REJECT_PAYLOAD_BYTES, RejectRecord, ScoreQuery, ScoreRecord,
};
pub use query::{DatasetStats, RangeQuery};
pub use store::{
    APPEND_SQLITE_CACHE_KIB, Backend, DEFAULT_DATASET, DEFAULT_DB_URL, DEFAULT_SQLITE_CACHE_KIB,
    Dataset, Store, StoreOptions, check_name,
};
