//! ITAP, the Industrial Telemetry Analytics Platform: the crates re-exported under one
//! name, and (as later stages land) the pipeline that wires them.
//!
//! | module | crate | one job |
//! |---|---|---|
//! | [`telemetry`] | itap-telemetry | schema, columnar batch, CSV I/O, simulator |
//! | [`validate`] | itap-validate | data-quality checks, report, quarantine, `Validated<Batch>` |
//! | [`eval`] | itap-eval | time split, threshold from training, metrics, events, reports |
//! | [`store`] | itap-store | SQLite / PostgreSQL storage, idempotent ingest, queries, metrics |
//!
//! ```
//! let params = itap::telemetry::SimParams::default().devices(2).hours(0.5).check()?;
//! let batch = itap::telemetry::simulate(&params);
//! assert_eq!(batch.len(), 2 * 180);
//! # Ok::<(), itap::telemetry::Error>(())
//! ```

pub use itap_eval as eval;
pub use itap_store as store;
pub use itap_telemetry as telemetry;
pub use itap_validate as validate;
