//! Why a message was refused: a stable reason code and a detail for people.

use std::fmt;

/// Why a message was refused, as a stable machine-readable code
/// ([`code`](Self::code), for example `signal.out_of_range`).
///
/// The codes are part of the wire contract: a server stores them with each
/// rejected message and dashboards count them, so a code is never renamed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// `payload.too_large`: the payload is longer than the decoder's limit.
    PayloadTooLarge,
    /// `payload.not_utf8`: the payload is not UTF-8 text.
    PayloadNotUtf8,
    /// `json.malformed`: the payload is not one well-formed JSON value.
    JsonMalformed,
    /// `json.not_object`: the JSON value is not an object.
    JsonNotObject,
    /// `field.missing`: a required field (`ts`, `device`, `signals`) is absent.
    FieldMissing,
    /// `field.unknown`: the object has a field the format does not define.
    FieldUnknown,
    /// `field.duplicate`: a field, or a signal inside `signals`, appears twice.
    FieldDuplicate,
    /// `field.wrong_type`: a field holds the wrong JSON type (a signal value that
    /// is not a number or null, an `error_code` that is not a whole number…).
    FieldWrongType,
    /// `signal.unknown`: `signals` names a signal the schema does not declare.
    SignalUnknown,
    /// `signal.not_finite`: a signal value is infinite (`1e999`).
    SignalNotFinite,
    /// `signal.out_of_range`: a value lies outside its signal's declared range
    /// (the file validator's `range.out_of_range`).
    SignalOutOfRange,
    /// `signal.negative`: a value of a signal that cannot be negative is
    /// negative (the file validator's `range.negative`).
    SignalNegative,
    /// `state.unknown`: `state` is not RUN, IDLE or MAINT.
    StateUnknown,
    /// `ts.unparsable`: `ts` is not an RFC 3339 / ISO 8601 timestamp.
    TsUnparsable,
    /// `ts.future`: `ts` is further ahead of the receiver's clock than allowed.
    TsFuture,
    /// `device.invalid`: the device id is empty, too long, or has characters a
    /// topic level cannot have (`/`, `+`, `#`, control characters).
    DeviceInvalid,
    /// `topic.device_mismatch`: the topic's last level is not the message's device.
    TopicDeviceMismatch,
}

impl RejectReason {
    /// Every reason, in a fixed order.
    pub const ALL: [RejectReason; 17] = [
        RejectReason::PayloadTooLarge,
        RejectReason::PayloadNotUtf8,
        RejectReason::JsonMalformed,
        RejectReason::JsonNotObject,
        RejectReason::FieldMissing,
        RejectReason::FieldUnknown,
        RejectReason::FieldDuplicate,
        RejectReason::FieldWrongType,
        RejectReason::SignalUnknown,
        RejectReason::SignalNotFinite,
        RejectReason::SignalOutOfRange,
        RejectReason::SignalNegative,
        RejectReason::StateUnknown,
        RejectReason::TsUnparsable,
        RejectReason::TsFuture,
        RejectReason::DeviceInvalid,
        RejectReason::TopicDeviceMismatch,
    ];

    /// The stable code, `family.name`.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge => "payload.too_large",
            RejectReason::PayloadNotUtf8 => "payload.not_utf8",
            RejectReason::JsonMalformed => "json.malformed",
            RejectReason::JsonNotObject => "json.not_object",
            RejectReason::FieldMissing => "field.missing",
            RejectReason::FieldUnknown => "field.unknown",
            RejectReason::FieldDuplicate => "field.duplicate",
            RejectReason::FieldWrongType => "field.wrong_type",
            RejectReason::SignalUnknown => "signal.unknown",
            RejectReason::SignalNotFinite => "signal.not_finite",
            RejectReason::SignalOutOfRange => "signal.out_of_range",
            RejectReason::SignalNegative => "signal.negative",
            RejectReason::StateUnknown => "state.unknown",
            RejectReason::TsUnparsable => "ts.unparsable",
            RejectReason::TsFuture => "ts.future",
            RejectReason::DeviceInvalid => "device.invalid",
            RejectReason::TopicDeviceMismatch => "topic.device_mismatch",
        }
    }

    /// The reason with this code, `None` for an unknown code.
    pub fn from_code(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused message: why ([`reason`](Self::reason), a stable code) and a
/// detail for people that names the field and the value (echoed values are
/// shortened to [`ECHO_CHARS`] characters).
///
/// ```
/// use itap::ParamGuard;
/// use itap::telemetry::Schema;
/// use itap_live::{DecodeParams, Decoder, RejectReason};
///
/// let decoder = Decoder::new(&Schema::default(), DecodeParams::default().check()?);
/// let r = decoder.decode("itap/telemetry/D1", br#"{"ts":"2026-01-01T00:00:00Z","device":"D1","signals":{"temp_c":900}}"#, 0).unwrap_err();
/// assert_eq!(r.reason, RejectReason::SignalOutOfRange);
/// assert_eq!(r.to_string(), "signal.out_of_range: signals.temp_c: 900 is outside the declared range [-40, 150]");
/// # Ok::<(), itap_live::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    /// Why, as a stable code.
    pub reason: RejectReason,
    /// The field and the value involved, in words.
    pub detail: String,
}

/// The longest echo of a peer's value in a [`Reject`]'s detail, in characters.
pub const ECHO_CHARS: usize = 64;

impl Reject {
    pub(crate) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
        }
    }

    /// The stable code of the reason (`json.malformed`, …).
    pub fn code(&self) -> &'static str {
        self.reason.code()
    }
}

/// A peer's text quoted for a detail: Rust string escapes (so control characters
/// and quotes are visible), cut after [`ECHO_CHARS`] characters with `…`.
pub(crate) fn echo(text: &str) -> String {
    let mut cut = text;
    if let Some((i, _)) = text.char_indices().nth(ECHO_CHARS) {
        cut = &text[..i];
    }
    let mut s = format!("{cut:?}");
    if cut.len() < text.len() {
        // Inside the closing quote: "abc…"
        s.insert(s.len() - 1, '…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RejectReason::ALL {
            assert!(seen.insert(r.code()), "{} twice", r.code());
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
            let (family, name) = r.code().split_once('.').unwrap();
            assert!(!family.is_empty() && !name.is_empty());
        }
        assert_eq!(RejectReason::from_code("nope"), None);
    }

    #[test]
    fn echo_escapes_and_truncates() {
        assert_eq!(echo("a\"b\n"), r#""a\"b\n""#);
        let long = "é".repeat(ECHO_CHARS + 10);
        let e = echo(&long);
        assert_eq!(e.chars().count(), ECHO_CHARS + 3, "quotes and the ellipsis");
        assert!(e.ends_with("…\""));
    }
}
