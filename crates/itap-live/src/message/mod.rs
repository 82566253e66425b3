//! The wire format: one JSON object per message on topic `{prefix}/{device}`.

mod decode;
mod encode;
mod reject;

pub use decode::{CheckedDecode, DecodeParams, Decoder, Reading};
pub use encode::{encode, encode_into};
pub use reject::{ECHO_CHARS, Reject, RejectReason};
