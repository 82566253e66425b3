//! Timestamps: UTC microseconds since the Unix epoch, read from ISO 8601 / RFC 3339
//! text and written as RFC 3339 UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Microseconds in one second.
pub const MICROS_PER_SEC: i64 = 1_000_000;

/// The zone in which timestamps without an offset (naive timestamps) are read.
///
/// ITAP stores every timestamp in UTC. A file written by the seed platform has
/// naive timestamps that are UTC; a plant historian may export local time, which
/// is read here with a fixed offset. Named zones with daylight-saving rules are not
/// supported: a local series that steps back an hour at a DST change is a data
/// problem that itap-validate reports as a clock jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeZone {
    offset_seconds: i32,
}

impl TimeZone {
    /// UTC.
    pub const UTC: TimeZone = TimeZone { offset_seconds: 0 };

    /// A fixed offset east of UTC, in seconds.
    ///
    /// # Errors
    /// [`Error::Value`] when the offset is more than 18 hours either way.
    pub fn fixed(offset_seconds: i32) -> Result<Self> {
        if offset_seconds.abs() > 18 * 3600 {
            return Err(Error::Value {
                value: offset_seconds.to_string(),
                expected: "an offset within ±18 hours",
            });
        }
        Ok(TimeZone { offset_seconds })
    }

    /// The offset east of UTC, in seconds.
    pub fn offset_seconds(self) -> i32 {
        self.offset_seconds
    }
}

impl FromStr for TimeZone {
    type Err = Error;

    /// Reads `UTC`, `Z` or a fixed offset such as `+02:00`, `-0530`.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" || t.is_empty() {
            return Ok(TimeZone::UTC);
        }
        let b = t.as_bytes();
        parse_offset(b)
            .filter(|&(_, used)| used == b.len())
            .and_then(|(secs, _)| TimeZone::fixed(secs).ok())
            .ok_or_else(|| Error::Value {
                value: s.to_owned(),
                expected: "a time zone: UTC or a fixed offset such as +02:00",
            })
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset_seconds == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.offset_seconds < 0 { '-' } else { '+' };
        let a = self.offset_seconds.abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    }
}

impl Serialize for TimeZone {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `+HH:MM`, `+HHMM` or `+HH` (or `-…`) at the start of `b`; returns the
/// offset in seconds and the bytes used.
fn parse_offset(b: &[u8]) -> Option<(i32, usize)> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hh = two_digits(b, 1)? as i32;
    let (mm, used) = match b.get(3) {
        Some(b':') => (two_digits(b, 4)? as i32, 6),
        Some(c) if c.is_ascii_digit() => (two_digits(b, 3)? as i32, 5),
        _ => (0, 3),
    };
    if hh > 18 || mm > 59 {
        return None;
    }
    Some((sign * (hh * 3600 + mm * 60), used))
}

fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let d0 = *b.get(at)?;
    let d1 = *b.get(at + 1)?;
    if d0.is_ascii_digit() && d1.is_ascii_digit() {
        Some(u32::from(d0 - b'0') * 10 + u32::from(d1 - b'0'))
    } else {
        None
    }
}

/// Parses an ISO 8601 / RFC 3339 timestamp into UTC microseconds.
///
/// Accepted: `YYYY-MM-DD`, then `T` or one space, then `HH:MM[:SS[.fraction]]`, then
/// optionally `Z`, `UTC` or an offset (`+02:00`, `+0200`, `+02`). A timestamp
/// without an offset is read in `naive_zone`. A date alone means midnight.
/// Fractions beyond microseconds are truncated. Surrounding spaces are ignored.
///
/// # Errors
/// [`Error::Value`] when the text is not such a timestamp or names an impossible
/// date or time (2026-02-30, 25:00).
pub fn parse_timestamp(text: &str, naive_zone: TimeZone) -> Result<i64> {
    parse_timestamp_bytes(text.trim().as_bytes(), naive_zone).ok_or_else(|| Error::Value {
        value: text.to_owned(),
        expected: "a timestamp such as 2026-01-01T00:00:00Z",
    })
}

/// The byte-level parser behind [`parse_timestamp`]: the same forms, without
/// trimming; `None` when `b` is not such a timestamp. It does not allocate, so a
/// reader can call it once per row.
pub fn parse_timestamp_bytes(b: &[u8], naive_zone: TimeZone) -> Option<i64> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
    let month = two_digits(b, 5)?;
    let day = two_digits(b, 8)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let mut i = 10;
    let (mut h, mut m, mut s, mut micros) = (0, 0, 0, 0u32);
    if i < b.len() {
        if b[i] != b'T' && b[i] != b't' && b[i] != b' ' {
            return None;
        }
        h = two_digits(b, i + 1)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        m = two_digits(b, i + 4)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            s = two_digits(b, i + 1)?;
            i += 3;
            if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
                i += 1;
                let start = i;
                let mut scale = 100_000u32;
                while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                    micros += u32::from(c - b'0') * scale;
                    scale /= 10;
                    i += 1;
                }
                if i == start {
                    return None;
                }
            }
        }
    }
    // Leap seconds (:60) are not representable in UTC microseconds; refuse them.
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let offset = match &b[i..] {
        [] => naive_zone.offset_seconds,
        [b'Z' | b'z'] => 0,
        rest if rest.eq_ignore_ascii_case(b"utc") || rest.eq_ignore_ascii_case(b" utc") => 0,
        rest => {
            let (off, used) = parse_offset(rest)?;
            if used != rest.len() {
                return None;
            }
            off
        }
    };
    let days = date.signed_duration_since(EPOCH_DATE).num_days();
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s) - i64::from(offset);
    Some(secs * MICROS_PER_SEC + i64::from(micros))
}

const EPOCH_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");

/// Formats UTC microseconds as RFC 3339: `2026-01-01T00:00:00Z`, with `.mmm` or
/// `.uuuuuu` when the timestamp has a fraction of a second.
pub fn format_timestamp(micros: i64) -> String {
    let mut s = String::with_capacity(27);
    write_timestamp(&mut s, micros);
    s
}

/// Appends the RFC 3339 form of `micros` to `out` (see [`format_timestamp`]).
pub fn write_timestamp(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC) as u32;
    let sod = secs.rem_euclid(86_400) as u32;
    let Some(date) = DateTime::from_timestamp(secs, 0).map(|d| d.date_naive()) else {
        // Outside chrono's range (± 262,000 years): fall back to the raw number.
        out.push_str(&micros.to_string());
        out.push_str("us");
        return;
    };
    use chrono::Datelike;
    let year = date.year();
    if (0..=9999).contains(&year) {
        push_digits(out, year as u32, 4);
    } else {
        out.push_str(&format!("{year:+05}"));
    }
    out.push('-');
    push_digits(out, date.month(), 2);
    out.push('-');
    push_digits(out, date.day(), 2);
    out.push('T');
    push_digits(out, sod / 3600, 2);
    out.push(':');
    push_digits(out, (sod % 3600) / 60, 2);
    out.push(':');
    push_digits(out, sod % 60, 2);
    if frac != 0 {
        out.push('.');
        if frac.is_multiple_of(1000) {
            push_digits(out, frac / 1000, 3);
        } else {
            push_digits(out, frac, 6);
        }
    }
    out.push('Z');
}

fn push_digits(out: &mut String, mut v: u32, width: usize) {
    let mut buf = [b'0'; 10];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    // Digits only: always valid UTF-8.
    out.extend(buf[..width].iter().map(|&c| char::from(c)));
}

/// A timestamp as a chrono `DateTime<Utc>`, for callers that want calendar arithmetic.
pub fn to_datetime(micros: i64) -> Option<DateTime<chrono::Utc>> {
    DateTime::from_timestamp_micros(micros)
}

/// Parses a duration such as `10s`, `5m`, `1.5h`, `2d`, `250ms` or a bare number of
/// seconds, into microseconds.
///
/// # Errors
/// [`Error::Value`] when the text is not such a duration or is negative.
pub fn parse_duration(text: &str) -> Result<i64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1e6,
        "ms" => 1e3,
        "us" => 1.0,
        "m" | "min" | "mins" => 60e6,
        "h" | "hr" | "hours" => 3600e6,
        "d" | "days" => 86_400e6,
        _ => f64::NAN,
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && scale.is_finite() && v >= 0.0 => Ok((v * scale).round() as i64),
        _ => Err(Error::Value {
            value: text.to_owned(),
            expected: "a duration such as 10s, 5m, 1.5h or 2d",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600 * MICROS_PER_SEC; // 2026-01-01T00:00:00Z

    #[test]
    fn parses_seed_and_rfc3339_forms() {
        let utc = TimeZone::UTC;
        assert_eq!(parse_timestamp("2026-01-01T00:00:00", utc).unwrap(), T0);
        assert_eq!(parse_timestamp("2026-01-01T00:00:00Z", utc).unwrap(), T0);
        assert_eq!(parse_timestamp("2026-01-01 00:00:00", utc).unwrap(), T0);
        assert_eq!(parse_timestamp("2026-01-01", utc).unwrap(), T0);
        assert_eq!(parse_timestamp("2026-01-01T00:00", utc).unwrap(), T0);
        assert_eq!(
            parse_timestamp("2026-01-01T02:00:00+02:00", utc).unwrap(),
            T0
        );
        assert_eq!(
            parse_timestamp("2025-12-31T19:00:00-0500", utc).unwrap(),
            T0
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.25Z", utc).unwrap(),
            T0 + 250_000
        );
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.1234567Z", utc).unwrap(),
            T0 + 123_456
        );
    }

    #[test]
    fn naive_timestamps_use_the_configured_zone() {
        let cet: TimeZone = "+01:00".parse().unwrap();
        assert_eq!(parse_timestamp("2026-01-01T01:00:00", cet).unwrap(), T0);
        // An explicit offset wins over the configured zone.
        assert_eq!(parse_timestamp("2026-01-01T00:00:00Z", cet).unwrap(), T0);
    }

    #[test]
    fn refuses_impossible_or_malformed_timestamps() {
        for bad in [
            "",
            "2026-02-30T00:00:00",
            "2026-01-01T24:00:00",
            "2026-01-01T00:60:00",
            "2026/01/01 00:00:00",
            "yesterday",
            "2026-01-01T00:00:00+25:00",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T00:00:00.",
            "1767225600",
        ] {
            assert!(parse_timestamp(bad, TimeZone::UTC).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_rfc3339_and_round_trips() {
        assert_eq!(format_timestamp(T0), "2026-01-01T00:00:00Z");
        assert_eq!(format_timestamp(T0 + 1_500_000), "2026-01-01T00:00:01.500Z");
        assert_eq!(format_timestamp(T0 + 7), "2026-01-01T00:00:00.000007Z");
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        for t in [
            T0,
            T0 + 86_399_999_999,
            -86_400_000_000 * 400,
            253_402_300_799_000_000,
        ] {
            assert_eq!(
                parse_timestamp(&format_timestamp(t), TimeZone::UTC).unwrap(),
                t
            );
        }
    }

    #[test]
    fn time_zones_parse_and_display() {
        assert_eq!("UTC".parse::<TimeZone>().unwrap(), TimeZone::UTC);
        assert_eq!(
            "+05:30".parse::<TimeZone>().unwrap().offset_seconds(),
            19_800
        );
        assert_eq!("-0800".parse::<TimeZone>().unwrap().to_string(), "-08:00");
        assert!("Europe/Berlin".parse::<TimeZone>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), 10_000_000);
        assert_eq!(parse_duration("5m").unwrap(), 300_000_000);
        assert_eq!(parse_duration("1.5h").unwrap(), 5_400_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000);
        assert_eq!(parse_duration("30").unwrap(), 30_000_000);
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
