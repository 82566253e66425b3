//! ITAP, the Industrial Telemetry Analytics Platform: the crates re-exported under one
//! name, and (as later stages land) the pipeline that wires them.
//!
//! | module | crate | one job |
//! |---|---|---|
//! | [`telemetry`] | itap-telemetry | schema, columnar batch, CSV I/O, simulator |
//!
//! ```
//! let params = itap::telemetry::SimParams::default().devices(2).hours(0.5).check()?;
//! let batch = itap::telemetry::simulate(&params);
//! assert_eq!(batch.len(), 2 * 180);
//! # Ok::<(), itap::telemetry::Error>(())
//! ```

pub use itap_telemetry as telemetry;
