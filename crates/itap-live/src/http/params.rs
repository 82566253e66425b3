//! Query parameters, checked: each route names the ones it takes, and a value
//! that cannot be used is a `400` that says which parameter and why.

use itap::telemetry::{TimeZone, parse_timestamp};

use super::ApiError;

/// The longest device or alert id taken from a request.
const MAX_ID_CHARS: usize = 256;

/// A request's query parameters.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    /// Refuses a parameter not in `allowed`, or one given twice.
    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (i, (k, _)) in self.pairs.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                let takes = if allowed.is_empty() {
                    "this route takes no parameters".to_owned()
                } else {
                    format!("this route takes {}", allowed.join(", "))
                };
                return Err(ApiError::bad(format!("unknown parameter {k:?}: {takes}")));
            }
            if self.pairs[..i].iter().any(|(j, _)| j == k) {
                return Err(ApiError::bad(format!("{k} is given more than once")));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An id-like text: not empty, no control characters, at most 256 characters.
    pub(crate) fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|v| check_id(name, v).map(|()| v.to_owned()))
            .transpose()
    }

    /// A time, RFC 3339 (a time without an offset is UTC).
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                parse_timestamp(v, TimeZone::UTC).map_err(|_| {
                    ApiError::bad(format!(
                        "{name}: {v:?} is not an RFC 3339 time, e.g. 2026-01-01T00:00:00Z"
                    ))
                })
            })
            .transpose()
    }

    /// `since` and `until`, with `since` before `until` when both are given.
    pub(crate) fn window(&self) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let (since, until) = (self.time("since")?, self.time("until")?);
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(ApiError::bad("since must be before until"));
        }
        Ok((since, until))
    }

    /// A whole number from `min` to `max`.
    pub(crate) fn uint(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        self.get(name)
            .map(|v| match v.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad(format!(
                    "{name}: {v:?} is not a whole number from {min} to {max}"
                ))),
            })
            .transpose()
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::bad(format!("{name}: {v:?} is not true or false"))),
            })
            .transpose()
    }

    /// `info`, `warning` or `critical`.
    pub(crate) fn severity(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "info" | "warning" | "critical" => Ok(v.to_owned()),
                _ => Err(ApiError::bad(format!(
                    "{name}: {v:?} is not a severity: use info, warning or critical"
                ))),
            })
            .transpose()
    }
}

/// Refuses an empty id, one with control characters or one too long.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad(format!("{what} is empty")));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::bad(format!(
            "{what} is longer than {MAX_ID_CHARS} characters"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::bad(format!("{what} holds a control character")));
    }
    Ok(())
}

/// A Prometheus label value: backslash, double quote and newline escaped.
pub(crate) fn prometheus_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert!(p(&[("limit", "5")]).only(&["limit"]).is_ok());
        let e = p(&[("limt", "5")]).only(&["limit"]).unwrap_err();
        assert!(
            e.message.contains("limt") && e.message.contains("limit"),
            "{e:?}"
        );
        assert!(
            p(&[("limit", "5"), ("limit", "6")])
                .only(&["limit"])
                .is_err()
        );
        assert_eq!(p(&[("limit", "5")]).uint("limit", 1, 10).unwrap(), Some(5));
        for bad in ["0", "11", "-1", "x", ""] {
            assert!(p(&[("limit", bad)]).uint("limit", 1, 10).is_err(), "{bad}");
        }
        assert_eq!(
            p(&[("since", "2026-01-01T00:00:01Z")])
                .time("since")
                .unwrap(),
            Some(1_767_225_601_000_000)
        );
        assert!(p(&[("since", "yesterday")]).time("since").is_err());
        assert!(
            p(&[
                ("since", "2026-01-02T00:00:00Z"),
                ("until", "2026-01-01T00:00:00Z")
            ])
            .window()
            .is_err()
        );
        assert!(p(&[("open", "yes")]).boolean("open").is_err());
        assert!(p(&[("severity", "high")]).severity("severity").is_err());
        assert!(p(&[("device", "a\u{0}b")]).text("device").is_err());
        assert!(p(&[("device", "")]).text("device").is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
