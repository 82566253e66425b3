//! Checked decoding of one message: bytes from a peer in, a typed [`Reading`] or
//! a [`Reject`] with a stable reason out. Stateless: per-device order,
//! duplicates and conflicts are the receiver's business.

use std::collections::HashMap;
use std::fmt;

use itap::ParamGuard;
use itap::telemetry::{Schema, State, TimeZone, parse_duration, parse_timestamp_bytes};
use itap::validate::{Check, CheckedValidation, Level, ValidationParams};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::reject::{Reject, RejectReason, echo};
use crate::broker::topic_level_problem;
use crate::error::{Error, Result};

/// One decoded message: a telemetry row, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The timestamp, UTC microseconds.
    pub ts: i64,
    /// The device id (also the topic's last level).
    pub device: String,
    /// The operating state, when the message has one.
    pub state: Option<State>,
    /// One value per schema signal, in schema order; NaN where the message has
    /// `null` or leaves the signal out.
    pub values: Vec<f64>,
    /// The error code, when the message has one.
    pub error_code: Option<i32>,
    /// The ground-truth fault tag, when the message has one (blank = none).
    pub label: Option<String>,
}

/// Decoder limits, unchecked.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `max_payload_bytes` | 65 536 | longer payloads are `payload.too_large` before anything is parsed | 64 – 16 MiB |
/// | `max_device_len` | 128 | longest device id, bytes (`device.invalid`) | 1 – 65 535 |
/// | `max_future` | `"1h"` | how far past the receiver's clock (`now`) a timestamp may lie (`ts.future`) | a duration ≥ 0 |
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeParams {
    /// Longest payload accepted, bytes.
    pub max_payload_bytes: usize,
    /// Longest device id accepted, bytes.
    pub max_device_len: usize,
    /// How far in the future a timestamp may be, as a duration (`1h`, `5m`).
    pub max_future: String,
}

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams {
            max_payload_bytes: 64 * 1024,
            max_device_len: 128,
            max_future: "1h".to_owned(),
        }
    }
}

impl DecodeParams {
    /// Sets the longest payload, bytes.
    pub fn max_payload_bytes(mut self, v: usize) -> Self {
        self.max_payload_bytes = v;
        self
    }

    /// Sets the longest device id, bytes.
    pub fn max_device_len(mut self, v: usize) -> Self {
        self.max_device_len = v;
        self
    }

    /// Sets how far in the future a timestamp may be (`"1h"`, `"30s"`).
    pub fn max_future(mut self, v: impl Into<String>) -> Self {
        self.max_future = v.into();
        self
    }

    fn resolve(&self) -> Result<i64> {
        if !(64..=16 * 1024 * 1024).contains(&self.max_payload_bytes) {
            return Err(Error::param(
                "max_payload_bytes",
                format!(
                    "must be between 64 and 16777216 bytes, got {}",
                    self.max_payload_bytes
                ),
            ));
        }
        if !(1..=65_535).contains(&self.max_device_len) {
            return Err(Error::param(
                "max_device_len",
                format!(
                    "must be between 1 and 65535 bytes, got {}",
                    self.max_device_len
                ),
            ));
        }
        parse_duration(&self.max_future).map_err(|_| {
            Error::param(
                "max_future",
                format!(
                    "must be a duration such as 1h or 30s, got {:?}",
                    self.max_future
                ),
            )
        })
    }
}

impl ParamGuard for DecodeParams {
    type Checked = CheckedDecode;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    /// Checks the limits.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the first limit out of range.
    fn check(self) -> Result<CheckedDecode> {
        let max_future_us = self.resolve()?;
        Ok(CheckedDecode {
            params: self,
            max_future_us,
        })
    }
}

/// Decoder limits that passed [`DecodeParams`]' [`check`](ParamGuard::check).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDecode {
    params: DecodeParams,
    max_future_us: i64,
}

impl CheckedDecode {
    /// The limits as given.
    pub fn params(&self) -> &DecodeParams {
        &self.params
    }

    /// `max_future` in microseconds.
    pub fn max_future_us(&self) -> i64 {
        self.max_future_us
    }
}

/// Decodes and checks messages against a schema; stateless, so one decoder can
/// serve every device and thread.
///
/// The range rules are the file validator's (itap-validate): a value outside
/// its signal's declared range is refused when `range.out_of_range` is an error,
/// a negative value of a `non_negative` signal when `range.negative` is one —
/// with the validator's defaults unless [`with_validation`](Self::with_validation)
/// passes the configured ones. Infinite values are always refused.
///
/// ```
/// use itap::ParamGuard;
/// use itap::telemetry::Schema;
/// use itap_live::{DecodeParams, Decoder};
///
/// let decoder = Decoder::new(&Schema::default(), DecodeParams::default().check()?);
/// let payload = br#"{"ts":"2026-01-01T00:00:10Z","device":"DEV-0001","state":"RUN",
///     "signals":{"temp_c":55.1,"vibration_g":null},"error_code":0}"#;
/// let now = itap::telemetry::parse_timestamp("2026-01-01T00:00:11Z", Default::default())?;
/// let reading = decoder.decode("itap/telemetry/DEV-0001", payload, now).unwrap();
/// assert_eq!(reading.device, "DEV-0001");
/// assert_eq!(reading.values[1], 55.1);
/// assert!(reading.values[2].is_nan() && reading.values[0].is_nan());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: CheckedDecode,
    schema: Schema,
    index: HashMap<String, usize>,
    /// Per signal: (min, max) when `range.out_of_range` rejects, else none.
    ranges: Vec<(Option<f64>, Option<f64>)>,
    /// Per signal: whether a negative value is refused.
    non_negative: Vec<bool>,
}

impl Decoder {
    /// A decoder for messages carrying `schema`'s signals, with the file
    /// validator's default range rules.
    pub fn new(schema: &Schema, limits: CheckedDecode) -> Self {
        let mut d = Decoder {
            limits,
            schema: schema.clone(),
            index: schema
                .names()
                .enumerate()
                .map(|(i, n)| (n.to_owned(), i))
                .collect(),
            ranges: Vec::new(),
            non_negative: Vec::new(),
        };
        // The defaults always pass their own check; should they ever not, the
        // decoder keeps declared ranges and no non-negative rule.
        match ValidationParams::default().check() {
            Ok(v) => d = d.with_validation(&v),
            Err(_) => {
                d.ranges = schema.signals().iter().map(|s| (s.min, s.max)).collect();
                d.non_negative = vec![false; schema.len()];
            }
        }
        d
    }

    /// The same decoder applying the range rules of `validation` (its
    /// `non_negative` signals and the levels of `range.out_of_range` and
    /// `range.negative`: only an error-level check refuses a message).
    #[must_use]
    pub fn with_validation(mut self, validation: &CheckedValidation) -> Self {
        let out_of_range = validation.level(Check::OutOfRange) == Level::Error;
        let negative = validation.level(Check::Negative) == Level::Error;
        let nn = &validation.params().non_negative;
        self.ranges = self
            .schema
            .signals()
            .iter()
            .map(|s| {
                if out_of_range {
                    (s.min, s.max)
                } else {
                    (None, None)
                }
            })
            .collect();
        self.non_negative = self
            .schema
            .signals()
            .iter()
            .map(|s| negative && nn.contains(&s.name))
            .collect();
        self
    }

    /// The schema messages are decoded against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The limits.
    pub fn limits(&self) -> &CheckedDecode {
        &self.limits
    }

    /// Decodes the message `payload` received on `topic` at the receiver's time
    /// `now` (UTC microseconds; a parameter so that tests are deterministic).
    ///
    /// The checks, in order: payload length, UTF-8, JSON syntax, an object at
    /// the top, the fields it names and their types, each signal value (known
    /// signal, finite, in range), then the required fields, the device id, the
    /// topic's last level equal to the device, the timestamp (parsable, not
    /// beyond `now + max_future`), state, error code and label. The first
    /// problem found is the reject; nothing a peer sends panics, and nothing is
    /// allocated beyond a small multiple of the payload.
    ///
    /// # Errors
    /// A [`Reject`] with the first problem's reason and a detail naming the field
    /// and value.
    pub fn decode(&self, topic: &str, payload: &[u8], now: i64) -> Result<Reading, Reject> {
        let max = self.limits.params.max_payload_bytes;
        if payload.len() > max {
            return Err(Reject::new(
                RejectReason::PayloadTooLarge,
                format!("{} bytes, the limit is {max}", payload.len()),
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            Reject::new(
                RejectReason::PayloadNotUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        let mut values = vec![f64::NAN; self.schema.len()];
        let mut problem = None;
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = MessageSeed {
            decoder: self,
            values: &mut values,
            problem: &mut problem,
        }
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| Reject::new(RejectReason::JsonMalformed, e.to_string()))?;
        if let Some(p) = problem {
            return Err(p);
        }
        self.finish(fields, values, topic, now)
    }

    /// The checks on whole fields, after the JSON was read.
    fn finish(
        &self,
        f: Fields<'_>,
        values: Vec<f64>,
        topic: &str,
        now: i64,
    ) -> Result<Reading, Reject> {
        let missing = |name: &str| {
            Reject::new(
                RejectReason::FieldMissing,
                format!("`{name}` is required (see the wire format)"),
            )
        };
        let ts_raw = f.ts.ok_or_else(|| missing("ts"))?;
        let device_raw = f.device.ok_or_else(|| missing("device"))?;
        if !f.signals {
            return Err(missing("signals"));
        }

        let device = json_str(device_raw, "device")?;
        self.check_device(&device)?;
        let topic_device = topic.rsplit('/').next().unwrap_or(topic);
        if topic_device != device {
            return Err(Reject::new(
                RejectReason::TopicDeviceMismatch,
                format!(
                    "topic {} ends in {}, the message is from device {}",
                    echo(topic),
                    echo(topic_device),
                    echo(&device)
                ),
            ));
        }

        let ts_text = json_str(ts_raw, "ts")?;
        let ts = parse_timestamp_bytes(ts_text.as_bytes(), TimeZone::UTC).ok_or_else(|| {
            Reject::new(
                RejectReason::TsUnparsable,
                format!(
                    "ts: cannot read {} as a timestamp such as 2026-01-01T00:00:00Z",
                    echo(&ts_text)
                ),
            )
        })?;
        let latest = now.saturating_add(self.limits.max_future_us);
        if ts > latest {
            return Err(Reject::new(
                RejectReason::TsFuture,
                format!(
                    "ts: {} is more than {} after the receiver's clock ({})",
                    echo(&ts_text),
                    self.limits.params.max_future,
                    itap::telemetry::format_timestamp(now)
                ),
            ));
        }

        let state = match f.state.filter(|r| r.get() != "null") {
            None => None,
            Some(raw) => {
                let text = json_str(raw, "state")?;
                Some(text.parse::<State>().map_err(|_| {
                    Reject::new(
                        RejectReason::StateUnknown,
                        format!("state: {} is not RUN, IDLE or MAINT", echo(&text)),
                    )
                })?)
            }
        };
        let error_code = match f.error_code.filter(|r| r.get() != "null") {
            None => None,
            Some(raw) => Some(raw.get().parse::<i32>().map_err(|_| {
                Reject::new(
                    RejectReason::FieldWrongType,
                    format!(
                        "error_code: expected a whole number from {} to {}, found {}",
                        i32::MIN,
                        i32::MAX,
                        echo(raw.get())
                    ),
                )
            })?),
        };
        let label = match f.label.filter(|r| r.get() != "null") {
            None => None,
            Some(raw) => {
                let text = json_str(raw, "label")?;
                let t = text.trim();
                (!t.is_empty()).then(|| t.to_owned())
            }
        };
        Ok(Reading {
            ts,
            device: device.into_owned(),
            state,
            values,
            error_code,
            label,
        })
    }

    fn check_device(&self, device: &str) -> Result<(), Reject> {
        let invalid = |why: String| Reject::new(RejectReason::DeviceInvalid, why);
        let max = self.limits.params.max_device_len;
        if device.len() > max {
            return Err(invalid(format!(
                "device: {} is {} bytes long, the limit is {max}",
                echo(device),
                device.len()
            )));
        }
        if let Some(why) = topic_level_problem(device) {
            return Err(invalid(format!("device: {}: {why}", echo(device))));
        }
        Ok(())
    }

    /// One signal value from its JSON text: a number, or null for missing.
    fn signal_value(&self, i: usize, raw: &RawValue) -> Result<f64, Reject> {
        let text = raw.get();
        let name = &self.schema.signals()[i].name;
        let first = text.as_bytes().first().copied().unwrap_or(b' ');
        if text == "null" {
            return Ok(f64::NAN);
        }
        if !(first == b'-' || first.is_ascii_digit()) {
            return Err(Reject::new(
                RejectReason::FieldWrongType,
                format!(
                    "signals.{name}: expected a number or null (missing), found {} {}",
                    json_kind(first),
                    echo(text)
                ),
            ));
        }
        // JSON number syntax was checked by the parser; Rust's parser rounds
        // correctly (so values round-trip exactly) and reads 1e999 as infinite.
        let v: f64 = text.parse().map_err(|_| {
            Reject::new(
                RejectReason::FieldWrongType,
                format!("signals.{name}: cannot read {} as a number", echo(text)),
            )
        })?;
        if !v.is_finite() {
            return Err(Reject::new(
                RejectReason::SignalNotFinite,
                format!("signals.{name}: {} is not a finite number", echo(text)),
            ));
        }
        if self.non_negative[i] && v < 0.0 {
            return Err(Reject::new(
                RejectReason::SignalNegative,
                format!("signals.{name}: {v} is negative, but this signal cannot be"),
            ));
        }
        let (lo, hi) = self.ranges[i];
        if lo.is_some_and(|lo| v < lo) || hi.is_some_and(|hi| v > hi) {
            let f = |b: Option<f64>, inf: &str| b.map_or_else(|| inf.to_owned(), |b| b.to_string());
            return Err(Reject::new(
                RejectReason::SignalOutOfRange,
                format!(
                    "signals.{name}: {v} is outside the declared range [{}, {}]",
                    f(lo, "-inf"),
                    f(hi, "inf")
                ),
            ));
        }
        Ok(v)
    }
}

/// The JSON type a value's text starts with, in words.
fn json_kind(first: u8) -> &'static str {
    match first {
        b'"' => "a string",
        b'{' => "an object",
        b'[' => "an array",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

/// A string field's content from its JSON text: borrowed when it has no
/// escapes, else unescaped by serde_json.
fn json_str<'a>(raw: &'a RawValue, field: &str) -> Result<std::borrow::Cow<'a, str>, Reject> {
    let text = raw.get();
    let b = text.as_bytes();
    if b.len() >= 2 && b[0] == b'"' {
        let inner = &text[1..text.len() - 1];
        if !inner.contains('\\') {
            return Ok(std::borrow::Cow::Borrowed(inner));
        }
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return Ok(std::borrow::Cow::Owned(s));
        }
    }
    Err(Reject::new(
        RejectReason::FieldWrongType,
        format!(
            "{field}: expected a string, found {} {}",
            json_kind(b.first().copied().unwrap_or(b' ')),
            echo(text)
        ),
    ))
}

/// The top-level fields, as JSON text, found while reading.
#[derive(Default)]
struct Fields<'de> {
    ts: Option<&'de RawValue>,
    device: Option<&'de RawValue>,
    state: Option<&'de RawValue>,
    error_code: Option<&'de RawValue>,
    label: Option<&'de RawValue>,
    signals: bool,
}

/// Reads the top-level value. Problems other than JSON syntax are recorded (the
/// first one wins) and the rest of the value is still read, so that malformed
/// JSON is always reported as such.
struct MessageSeed<'a> {
    decoder: &'a Decoder,
    values: &'a mut [f64],
    problem: &'a mut Option<Reject>,
}

fn note(problem: &mut Option<Reject>, r: Reject) {
    if problem.is_none() {
        *problem = Some(r);
    }
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Fields<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> MessageSeed<'_> {
    fn not_object(self, what: &str) -> Fields<'de> {
        note(
            self.problem,
            Reject::new(
                RejectReason::JsonNotObject,
                format!("the message is {what}; a JSON object is expected"),
            ),
        );
        Fields::default()
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Fields<'de>, E> {
        Ok(self.not_object("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Fields<'de>, E> {
        Ok(self.not_object("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Fields<'de>, E> {
        Ok(self.not_object("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Fields<'de>, E> {
        Ok(self.not_object("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Fields<'de>, E> {
        Ok(self.not_object("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Fields<'de>, E> {
        Ok(self.not_object("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Fields<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.not_object("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key_seed(TopKeySeed)? {
            let slot = match key {
                TopKey::Signals => {
                    if f.signals {
                        note(self.problem, duplicate("signals"));
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        f.signals = true;
                        map.next_value_seed(SignalsSeed {
                            decoder: self.decoder,
                            values: self.values,
                            problem: self.problem,
                        })?;
                    }
                    continue;
                }
                TopKey::Unknown(name) => {
                    note(
                        self.problem,
                        Reject::new(
                            RejectReason::FieldUnknown,
                            format!(
                                "{}: not a field of the format (ts, device, state, signals, error_code, label)",
                                echo(&name)
                            ),
                        ),
                    );
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                TopKey::Ts => &mut f.ts,
                TopKey::Device => &mut f.device,
                TopKey::State => &mut f.state,
                TopKey::ErrorCode => &mut f.error_code,
                TopKey::Label => &mut f.label,
            };
            let value: &'de RawValue = map.next_value()?;
            if slot.is_some() {
                note(self.problem, duplicate(key.name()));
            } else {
                *slot = Some(value);
            }
        }
        Ok(f)
    }
}

fn duplicate(field: &str) -> Reject {
    Reject::new(
        RejectReason::FieldDuplicate,
        format!("{field}: the field appears more than once"),
    )
}

enum TopKey {
    Ts,
    Device,
    State,
    Signals,
    ErrorCode,
    Label,
    Unknown(String),
}

impl TopKey {
    fn name(&self) -> &str {
        match self {
            TopKey::Ts => "ts",
            TopKey::Device => "device",
            TopKey::State => "state",
            TopKey::Signals => "signals",
            TopKey::ErrorCode => "error_code",
            TopKey::Label => "label",
            TopKey::Unknown(n) => n,
        }
    }
}

struct TopKeySeed;

impl<'de> DeserializeSeed<'de> for TopKeySeed {
    type Value = TopKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TopKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TopKeySeed {
    type Value = TopKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<TopKey, E> {
        Ok(match s {
            "ts" => TopKey::Ts,
            "device" => TopKey::Device,
            "state" => TopKey::State,
            "signals" => TopKey::Signals,
            "error_code" => TopKey::ErrorCode,
            "label" => TopKey::Label,
            other => TopKey::Unknown(shorten(other)),
        })
    }
}

/// At most [`ECHO_CHARS`](super::reject::ECHO_CHARS) + 1 characters of a peer's
/// key, enough for [`echo`] to mark it as cut.
fn shorten(s: &str) -> String {
    s.chars().take(super::reject::ECHO_CHARS + 1).collect()
}

/// Reads the `signals` object into the values, recording the first problem.
struct SignalsSeed<'a> {
    decoder: &'a Decoder,
    values: &'a mut [f64],
    problem: &'a mut Option<Reject>,
}

impl<'de> DeserializeSeed<'de> for SignalsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl SignalsSeed<'_> {
    fn wrong(self, what: &str) {
        note(
            self.problem,
            Reject::new(
                RejectReason::FieldWrongType,
                format!("signals: expected an object of signal values, found {what}"),
            ),
        );
    }
}

impl<'de> Visitor<'de> for SignalsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of signal values")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.wrong("a boolean");
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.wrong("a number");
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.wrong("a string");
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.wrong("null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.wrong("an array");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.decoder;
        // Which signals were seen, to refuse a repeated one.
        let mut seen = vec![false; d.schema.len()];
        while let Some(key) = map.next_key_seed(SignalKeySeed { decoder: d })? {
            let raw: &'de RawValue = map.next_value()?;
            if self.problem.is_some() {
                continue;
            }
            match key {
                SignalKey::Known(i) if seen[i] => {
                    note(
                        self.problem,
                        duplicate(&format!("signals.{}", d.schema.signals()[i].name)),
                    );
                }
                SignalKey::Known(i) => {
                    seen[i] = true;
                    match d.signal_value(i, raw) {
                        Ok(v) => self.values[i] = v,
                        Err(r) => note(self.problem, r),
                    }
                }
                SignalKey::Unknown(name) => note(
                    self.problem,
                    Reject::new(
                        RejectReason::SignalUnknown,
                        format!(
                            "signals.{}: the schema has no such signal (it has {})",
                            echo(&name),
                            signal_list(&d.schema)
                        ),
                    ),
                ),
            }
        }
        Ok(())
    }
}

/// The schema's signal names for a detail, cut after a few.
fn signal_list(schema: &Schema) -> String {
    const SHOWN: usize = 8;
    let mut s = schema.names().take(SHOWN).collect::<Vec<_>>().join(", ");
    if schema.len() > SHOWN {
        s.push_str(&format!(", … {} in all", schema.len()));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

enum SignalKey {
    Known(usize),
    Unknown(String),
}

struct SignalKeySeed<'a> {
    decoder: &'a Decoder,
}

impl<'de> DeserializeSeed<'de> for SignalKeySeed<'_> {
    type Value = SignalKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SignalKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for SignalKeySeed<'_> {
    type Value = SignalKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a signal name")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<SignalKey, E> {
        let d = self.decoder;
        // A few names compare faster than they hash.
        let found = if d.schema.len() <= 16 {
            d.schema.signals().iter().position(|sig| sig.name == s)
        } else {
            d.index.get(s).copied()
        };
        Ok(match found {
            Some(i) => SignalKey::Known(i),
            None => SignalKey::Unknown(shorten(s)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap::telemetry::{Signal, parse_timestamp};

    const TOPIC: &str = "itap/telemetry/DEV-0001";

    fn decoder() -> Decoder {
        Decoder::new(&Schema::default(), DecodeParams::default().check().unwrap())
    }

    fn now() -> i64 {
        parse_timestamp("2026-01-01T00:00:10Z", TimeZone::UTC).unwrap()
    }

    fn good() -> String {
        r#"{"ts":"2026-01-01T00:00:10Z","device":"DEV-0001","state":"RUN","signals":{"rpm":1500,"temp_c":55.1,"vibration_g":0.42,"current_a":null},"error_code":0}"#.to_owned()
    }

    /// Decodes, expecting a reject with `code` whose detail contains `detail`.
    #[track_caller]
    fn rejects(payload: impl AsRef<[u8]>, code: &str, detail: &str) -> Reject {
        rejects_on(TOPIC, payload, code, detail)
    }

    #[track_caller]
    fn rejects_on(topic: &str, payload: impl AsRef<[u8]>, code: &str, detail: &str) -> Reject {
        let r = decoder()
            .decode(topic, payload.as_ref(), now())
            .expect_err("a reject");
        assert_eq!(r.code(), code, "{r}");
        assert!(r.detail.contains(detail), "detail of {r} lacks {detail:?}");
        assert!(r.detail.len() < 600, "a bounded detail: {r}");
        r
    }

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&good()).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    /// The good message with signal `name` set to the JSON text `value` (first
    /// among the signals), the other good signals kept.
    fn with_signal(name: &str, value: &str) -> String {
        let mut signals = vec![format!("\"{name}\":{value}")];
        for (n, v) in [
            ("rpm", "1500"),
            ("temp_c", "55.1"),
            ("vibration_g", "0.42"),
            ("current_a", "null"),
        ] {
            if n != name {
                signals.push(format!("\"{n}\":{v}"));
            }
        }
        format!(
            r#"{{"ts":"2026-01-01T00:00:10Z","device":"DEV-0001","state":"RUN","signals":{{{}}},"error_code":0}}"#,
            signals.join(",")
        )
    }

    #[test]
    fn a_good_message() {
        let r = decoder().decode(TOPIC, good().as_bytes(), now()).unwrap();
        assert_eq!(r.ts, now());
        assert_eq!(r.device, "DEV-0001");
        assert_eq!(r.state, Some(State::Run));
        assert_eq!(r.error_code, Some(0));
        assert_eq!(r.label, None);
        assert_eq!(&r.values[..3], [1500.0, 55.1, 0.42]);
        assert!(r.values[3].is_nan(), "null is missing");
        assert!(r.values[4].is_nan(), "absent is missing");
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let min = r#"{"ts":"2026-01-01T00:00:10Z","device":"DEV-0001","signals":{}}"#;
        let r = decoder().decode(TOPIC, min.as_bytes(), now()).unwrap();
        assert_eq!((r.state, r.error_code, r.label), (None, None, None));
        assert!(r.values.iter().all(|v| v.is_nan()));
        let nulls = with("state", "null");
        let r = decoder().decode(TOPIC, nulls.as_bytes(), now()).unwrap();
        assert_eq!(r.state, None);
        let labelled = with("label", r#"" overheat_drift ""#);
        let r = decoder().decode(TOPIC, labelled.as_bytes(), now()).unwrap();
        assert_eq!(r.label.as_deref(), Some("overheat_drift"));
        let blank = with("label", r#"" ""#);
        let r = decoder().decode(TOPIC, blank.as_bytes(), now()).unwrap();
        assert_eq!(r.label, None, "a blank tag is no fault, as in files");
        let lower = with("state", r#""idle""#);
        let r = decoder().decode(TOPIC, lower.as_bytes(), now()).unwrap();
        assert_eq!(
            r.state,
            Some(State::Idle),
            "states ignore case, as in files"
        );
    }

    #[test]
    fn escaped_strings_are_read() {
        let topic = "itap/telemetry/pump \"7\"";
        let msg =
            r#"{"ts":"2026-01-01T00:00:10\u005a","device":"pump \"7\"","signals":{"\u0072pm":1}}"#;
        let r = decoder().decode(topic, msg.as_bytes(), now()).unwrap();
        assert_eq!(r.device, "pump \"7\"");
        assert_eq!(r.ts, now());
        assert_eq!(r.values[0], 1.0);
    }

    #[test]
    fn payload_too_large() {
        let mut big = good().into_bytes();
        big.resize(1 << 20, b' ');
        let r = rejects(
            &big,
            "payload.too_large",
            "1048576 bytes, the limit is 65536",
        );
        assert_eq!(r.reason, RejectReason::PayloadTooLarge);
        // Whitespace inside the limit is fine.
        big.truncate(60_000);
        assert!(decoder().decode(TOPIC, &big, now()).is_ok());
    }

    #[test]
    fn payload_not_utf8() {
        rejects(b"{\"ts\":\"\xff\xfe\"}", "payload.not_utf8", "byte 7");
        rejects([0xc3u8, 0x28, 0x00, 0xff], "payload.not_utf8", "byte 0");
    }

    #[test]
    fn malformed_json() {
        for bad in [
            "",
            "   ",
            "{",
            "{\"ts\": 1",
            "{\"ts\":\"2026\",}",
            "{'ts': 1}",
            "{\"signals\":{\"rpm\":NaN}}",
            "{\"signals\":{\"rpm\":Infinity}}",
            "{\"signals\":{\"rpm\":01}}",
            "{} {}",
            "{}x",
            "\u{0}",
            "[1,2",
        ] {
            rejects(bad, "json.malformed", "");
        }
        // Binary garbage that happens to be UTF-8.
        rejects("\u{1}\u{2}garbage\u{7f}", "json.malformed", "line 1");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(60_000);
        rejects(&deep, "json.malformed", "");
        let closed = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        rejects(&closed, "json.not_object", "an array");
        let inside = with_signal(
            "rpm",
            &format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)),
        );
        rejects(&inside, "field.wrong_type", "an array");
        let nested = format!("{}1{}", "{\"a\":".repeat(8_000), "}".repeat(8_000));
        let objects = good().replace("\"2026-01-01T00:00:10Z\"", &nested);
        rejects(&objects, "field.wrong_type", "ts: expected a string");
    }

    #[test]
    fn not_an_object() {
        for (bad, what) in [
            ("[]", "an array"),
            ("42", "a number"),
            ("-1.5", "a number"),
            ("\"text\"", "a string"),
            ("true", "a boolean"),
            ("null", "null"),
        ] {
            rejects(bad, "json.not_object", what);
        }
    }

    #[test]
    fn missing_fields() {
        let mut v: serde_json::Value = serde_json::from_str(&good()).unwrap();
        for field in ["ts", "device", "signals"] {
            let mut m = v.clone();
            m.as_object_mut().unwrap().remove(field);
            rejects(m.to_string(), "field.missing", &format!("`{field}`"));
        }
        v["ts"] = serde_json::Value::Null;
        // A null required field is missing too: it is read as a string and fails.
        rejects(
            v.to_string(),
            "field.wrong_type",
            "ts: expected a string, found null",
        );
        rejects("{}", "field.missing", "`ts`");
    }

    #[test]
    fn unknown_and_duplicate_fields() {
        let r = rejects(with("temperature", "1"), "field.unknown", "\"temperature\"");
        assert!(r.detail.contains("ts, device"), "{r}");
        let long = "k".repeat(10_000);
        let r = rejects(with(&long, "1"), "field.unknown", "…");
        assert!(r.detail.len() < 300, "{r}");
        let twice = good().replacen("{", "{\"device\":\"DEV-0001\",", 1);
        rejects(twice, "field.duplicate", "device");
        let signals_twice = good().replacen("{", "{\"signals\":{},", 1);
        rejects(signals_twice, "field.duplicate", "signals");
        let signal_twice = with_signal("temp_c", "1,\"temp_c\":2");
        rejects(signal_twice, "field.duplicate", "signals.temp_c");
    }

    #[test]
    fn wrong_types() {
        for (field, value, detail) in [
            ("ts", "1767225610", "ts: expected a string, found a number"),
            ("device", "7", "device: expected a string, found a number"),
            ("device", "[\"DEV-0001\"]", "found an array"),
            ("state", "1", "state: expected a string"),
            ("label", "true", "label: expected a string, found a boolean"),
            ("error_code", "\"0\"", "error_code: expected a whole number"),
            ("error_code", "1.5", "1.5"),
            ("error_code", "1e3", "error_code"),
            ("error_code", "4294967296", "4294967296"),
            ("signals", "[1,2]", "signals: expected an object"),
            ("signals", "\"rpm=1\"", "found a string"),
            ("signals", "null", "found null"),
        ] {
            rejects(with(field, value), "field.wrong_type", detail);
        }
        for (value, detail) in [
            (
                "\"55.1\"",
                "signals.rpm: expected a number or null (missing), found a string",
            ),
            ("\"NaN\"", "\"\\\"NaN\\\"\""),
            ("true", "found a boolean"),
            ("{\"v\":1}", "found an object"),
        ] {
            rejects(with_signal("rpm", value), "field.wrong_type", detail);
        }
    }

    #[test]
    fn unknown_signals() {
        let r = rejects(
            with_signal("pressure_bar", "3"),
            "signal.unknown",
            "signals.\"pressure_bar\"",
        );
        assert!(r.detail.contains("rpm, temp_c"), "{r}");
        rejects(with_signal("", "3"), "signal.unknown", "\"\"");
        rejects(with_signal("RPM", "3"), "signal.unknown", "RPM");
    }

    #[test]
    fn non_finite_values() {
        for v in ["1e999", "-1e999", "1E400"] {
            rejects(
                with_signal("temp_c", v),
                "signal.not_finite",
                "signals.temp_c",
            );
        }
        // Tiny values underflow to zero, which is a number.
        let tiny = with_signal("vibration_g", "1e-999");
        let r = decoder().decode(TOPIC, tiny.as_bytes(), now()).unwrap();
        assert_eq!(r.values[2], 0.0);
    }

    #[test]
    fn out_of_range_and_negative_values() {
        rejects(
            with_signal("temp_c", "150.0001"),
            "signal.out_of_range",
            "[-40, 150]",
        );
        rejects(
            with_signal("vibration_g", "-0.5"),
            "signal.out_of_range",
            "-0.5",
        );
        rejects(
            with_signal("rpm", "-1"),
            "signal.negative",
            "signals.rpm: -1 is negative",
        );
        let edge = with_signal("temp_c", "150");
        assert!(
            decoder().decode(TOPIC, edge.as_bytes(), now()).is_ok(),
            "bounds are inside"
        );

        // The validator's configuration decides, as for files.
        let schema =
            Schema::new(vec![Signal::new("p").range(0.0, 10.0), Signal::new("q")]).unwrap();
        let limits = DecodeParams::default().check().unwrap();
        let msg = |p: &str, q: &str| {
            format!(r#"{{"ts":"2026-01-01T00:00:00Z","device":"D","signals":{{"p":{p},"q":{q}}}}}"#)
        };
        let strict = Decoder::new(&schema, limits.clone());
        assert_eq!(
            strict
                .decode("t/D", msg("11", "-1").as_bytes(), i64::MAX)
                .unwrap_err()
                .reason,
            RejectReason::SignalOutOfRange
        );
        assert!(
            strict
                .decode("t/D", msg("1", "-1").as_bytes(), i64::MAX)
                .is_ok(),
            "q has no range"
        );
        let relaxed = ValidationParams::default()
            .severity(Check::OutOfRange, Level::Warning)
            .non_negative(["q"])
            .check()
            .unwrap();
        let d = Decoder::new(&schema, limits).with_validation(&relaxed);
        assert!(
            d.decode("t/D", msg("11", "1").as_bytes(), i64::MAX).is_ok(),
            "a warning lets it through"
        );
        assert_eq!(
            d.decode("t/D", msg("1", "-1").as_bytes(), i64::MAX)
                .unwrap_err()
                .reason,
            RejectReason::SignalNegative
        );
    }

    #[test]
    fn unknown_states() {
        rejects(
            with("state", "\"STOPPED\""),
            "state.unknown",
            "\"STOPPED\" is not RUN, IDLE or MAINT",
        );
    }

    #[test]
    fn unparsable_timestamps() {
        for ts in [
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "",
            "2026-01-01T00:00:60Z",
        ] {
            rejects(
                with("ts", &format!("\"{ts}\"")),
                "ts.unparsable",
                "ts: cannot read",
            );
        }
        let long = format!("\"{}\"", "9".repeat(5_000));
        let r = rejects(with("ts", &long), "ts.unparsable", "…");
        assert!(r.detail.len() < 300, "{r}");
        // An offset is applied; no offset means UTC.
        let off = with("ts", "\"2026-01-01T01:00:10+01:00\"");
        assert_eq!(
            decoder().decode(TOPIC, off.as_bytes(), now()).unwrap().ts,
            now()
        );
        let naive = with("ts", "\"2026-01-01 00:00:10\"");
        assert_eq!(
            decoder().decode(TOPIC, naive.as_bytes(), now()).unwrap().ts,
            now()
        );
    }

    #[test]
    fn future_timestamps() {
        let hour = 3_600_000_000;
        let at = |ts: i64| {
            with(
                "ts",
                &format!("\"{}\"", itap::telemetry::format_timestamp(ts)),
            )
        };
        assert!(
            decoder()
                .decode(TOPIC, at(now() + hour).as_bytes(), now())
                .is_ok()
        );
        rejects(at(now() + hour + 1), "ts.future", "more than 1h after");
        rejects(with("ts", "\"9999-12-31T23:59:59Z\""), "ts.future", "9999");
        let tight = Decoder::new(
            &Schema::default(),
            DecodeParams::default().max_future("0s").check().unwrap(),
        );
        assert!(tight.decode(TOPIC, at(now()).as_bytes(), now()).is_ok());
        assert_eq!(
            tight
                .decode(TOPIC, at(now() + 1).as_bytes(), now())
                .unwrap_err()
                .reason,
            RejectReason::TsFuture
        );
        // `now` at the end of time does not overflow.
        assert!(decoder().decode(TOPIC, good().as_bytes(), i64::MAX).is_ok());
    }

    #[test]
    fn invalid_devices() {
        rejects_on(
            "itap/telemetry/",
            with("device", "\"\""),
            "device.invalid",
            "empty",
        );
        rejects_on("a/b", with("device", "\"a/b\""), "device.invalid", "`/`");
        rejects_on("x/+", with("device", "\"+\""), "device.invalid", "wildcard");
        rejects_on(
            "x/a\u{0}",
            with("device", "\"a\\u0000\""),
            "device.invalid",
            "control",
        );
        let long = "d".repeat(129);
        rejects_on(
            &format!("x/{long}"),
            with("device", &format!("\"{long}\"")),
            "device.invalid",
            "129 bytes",
        );
    }

    #[test]
    fn topic_device_mismatch() {
        rejects_on(
            "itap/telemetry/DEV-0002",
            good(),
            "topic.device_mismatch",
            "\"DEV-0002\"",
        );
        rejects_on(
            "DEV-0001/x",
            good(),
            "topic.device_mismatch",
            "device \"DEV-0001\"",
        );
        assert!(
            decoder()
                .decode("DEV-0001", good().as_bytes(), now())
                .is_ok(),
            "a one-level topic"
        );
    }

    #[test]
    fn every_reason_has_a_test_here() {
        // The codes the tests above expect, so that a new reason needs a test.
        let source = include_str!("decode.rs");
        for r in RejectReason::ALL {
            assert!(
                source.contains(&format!("\"{}\"", r.code())),
                "no test expects {}",
                r.code()
            );
        }
    }
}
