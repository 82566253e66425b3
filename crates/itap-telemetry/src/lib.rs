#![doc = include_str!("../README.md")]

mod atomic;
mod batch;
mod csv_io;
mod error;
mod param;
mod schema;
mod sim;
mod time;

pub use atomic::{AtomicFile, stage_atomic, write_atomic};
pub use batch::{Batch, BatchBuilder, BatchColumns};
pub use csv_io::{
    CsvBatchWriter, CsvReader, DEVICE_NAMES, InputLayout, LABEL_TAG, MISSING_SPELLINGS,
    RawCsvReader, RawRecord, ReadOptions, TIMESTAMP_NAMES, TruthColumn, parse_int, parse_number,
    read_csv, write_csv, write_csv_to, write_in_blocks,
};
pub use error::{Error, Result};
pub use param::{InvalidParam, ParamGuard};
pub use schema::{
    Direction, FaultKind, RESERVED, Schema, Signal, SignalKind, State, check_identifier,
};
pub use sim::params::{
    AmbientParams, CheckedSimParams, FaultKindParams, FaultParams, SimParams, SimSignal,
    StateParams, codes, default_sim_signals,
};
pub use sim::{
    FleetSim, SimulatedCsv, simulate, simulate_device_batch, simulate_into, simulate_to_csv,
};
pub use time::{
    MICROS_PER_SEC, TimeZone, format_timestamp, parse_duration, parse_timestamp,
    parse_timestamp_bytes, to_datetime, write_timestamp,
};
