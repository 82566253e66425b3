#![doc = include_str!("../README.md")]

mod broker;
mod error;
mod fleet;
mod http;
mod lag;
mod message;
mod replay;
mod serve;

pub use broker::{BrokerUrl, DEFAULT_MQTT_PORT};
pub use error::{Error, Result};
pub use fleet::{DeviceView, Fleet};
pub use http::{Api, ArtifactsSummary, Mode, load_artifacts, router, serve_http};
pub use lag::{LagHistogram, LagSummary};
pub use message::{
    CheckedDecode, DecodeParams, Decoder, ECHO_CHARS, Reading, Reject, RejectReason, encode,
    encode_into,
};
pub use replay::{
    CheckedReplay, DEFAULT_TOPIC_PREFIX, Pace, ReplayParams, ReplayProgress, ReplaySummary, replay,
};
pub use serve::{
    CheckedServe, DEFAULT_TOPIC_FILTER, ServeParams, ServeStats, ServeSummary, Shard, serve,
    shard_of, step_validation,
};

/// The system clock as UTC microseconds, the `now` a receiver passes to
/// [`Decoder::decode`] (0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
