//! One batch row as one JSON message.

use itap::telemetry::{Batch, SignalKind, write_timestamp};

/// Encodes row `row` of `batch` as one JSON message (see the crate docs for the
/// format): `ts` in RFC 3339 UTC (itap-telemetry's own formatting, so decoding
/// gives back the exact microseconds), `device`, `state` and `error_code` when
/// the batch has those columns, `signals` with every schema signal in schema
/// order (`null` for a missing value), and `label` only when the batch has a
/// ground-truth column and the row carries a tag.
///
/// Floats are written in their shortest round-trip form and `int` signals
/// without a fraction, so a [`Decoder`](crate::Decoder) gives back bit-equal
/// values. Infinities cannot be written in JSON and are sent as `null` (a
/// validated batch has none).
///
/// ```
/// use itap::ParamGuard;
/// use itap::telemetry::{SimParams, simulate};
///
/// let batch = simulate(&SimParams::default().devices(1).hours(0.01).check()?);
/// let text = String::from_utf8(itap_live::encode(&batch, 0)).unwrap();
/// assert!(text.starts_with(r#"{"ts":"2026-01-01T00:00:00Z","device":"DEV-0000","state":"RUN","signals":{"rpm":"#));
/// # Ok::<(), itap::telemetry::Error>(())
/// ```
///
/// # Panics
/// When `row` is not below `batch.len()`.
pub fn encode(batch: &Batch, row: usize) -> Vec<u8> {
    let mut out = String::with_capacity(96 + 24 * batch.schema().len());
    encode_into(batch, row, &mut out);
    out.into_bytes()
}

/// [`encode`] appending to `out`, so a caller can reuse one buffer.
///
/// # Panics
/// When `row` is not below `batch.len()`.
pub fn encode_into(batch: &Batch, row: usize, out: &mut String) {
    let mut ryu_buf = ryu::Buffer::new();
    let mut int_buf = itoa::Buffer::new();
    out.push_str("{\"ts\":\"");
    write_timestamp(out, batch.timestamps()[row]);
    out.push_str("\",\"device\":");
    push_json_str(out, batch.device_of(row));
    if let Some(states) = batch.states() {
        out.push_str(",\"state\":\"");
        out.push_str(states[row].as_str());
        out.push('"');
    }
    out.push_str(",\"signals\":{");
    for (k, sig) in batch.schema().signals().iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        // Signal names are plain identifiers (`Schema::new` checks them): no escaping.
        out.push('"');
        out.push_str(&sig.name);
        out.push_str("\":");
        let v = batch.signal(k)[row];
        if !v.is_finite() {
            out.push_str("null");
        } else if sig.kind == SignalKind::Int
            && v.fract() == 0.0
            && v.abs() < 9.0e15
            && !(v == 0.0 && v.is_sign_negative())
        {
            out.push_str(int_buf.format(v as i64));
        } else {
            out.push_str(ryu_buf.format_finite(v));
        }
    }
    out.push('}');
    if let Some(codes) = batch.error_codes() {
        out.push_str(",\"error_code\":");
        out.push_str(int_buf.format(codes[row]));
    }
    if let Some(tag) = batch.tag_of(row) {
        out.push_str(",\"label\":");
        push_json_str(out, tag);
    }
    out.push('}');
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}é");
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }
}
