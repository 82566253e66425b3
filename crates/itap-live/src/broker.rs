//! Broker URLs: `mqtt://[user[:password]@]host[:port]`.

use std::fmt;

use crate::error::{Error, Result};

/// The MQTT port used when a URL names none.
pub const DEFAULT_MQTT_PORT: u16 = 1883;

/// Where a broker listens, read from an `mqtt://[user[:password]@]host[:port]`
/// URL (`tcp://` is taken as a synonym). Plain TCP only: `mqtts://`, `ws://` and
/// `wss://` are refused with a message saying so.
///
/// Shown (`Display`) without the password, so it can go into logs and errors.
///
/// ```
/// use itap_live::BrokerUrl;
/// let b = BrokerUrl::parse("mqtt://127.0.0.1:1883")?;
/// assert_eq!((b.host(), b.port()), ("127.0.0.1", 1883));
/// assert_eq!(BrokerUrl::parse("mqtt://broker.local")?.port(), 1883);
/// let e = BrokerUrl::parse("http://x").unwrap_err().to_string();
/// assert!(e.contains("`http://x`"), "{e}");
/// # Ok::<(), itap_live::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("BrokerUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mqtt://")?;
        if let Some(u) = &self.username {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl BrokerUrl {
    /// Reads a broker URL.
    ///
    /// # Errors
    /// [`Error::Url`] quoting the URL and saying what is wrong: another scheme,
    /// no host, a port that is not 1–65535, a path or query.
    pub fn parse(url: &str) -> Result<BrokerUrl> {
        let bad = |reason: &str| Error::Url {
            url: url.to_owned(),
            reason: format!(
                "{reason}; expected mqtt://HOST[:PORT], for example mqtt://127.0.0.1:1883"
            ),
        };
        let Some((scheme, rest)) = url.trim().split_once("://") else {
            return Err(bad("no scheme"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" | "tls" | "ws" | "wss" => {
                return Err(bad(&format!(
                    "`{scheme}://` (TLS or websockets) is not supported by this build, only plain TCP"
                )));
            }
            _ => return Err(bad(&format!("unknown scheme `{scheme}://`"))),
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("a broker URL has no path, query or fragment"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        if username.as_deref() == Some("") {
            return Err(bad("the user name before `@` is empty"));
        }
        let (host, port_text) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(bad("an IPv6 address needs its closing `]`"));
            };
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(bad("unexpected text after the IPv6 address")),
                },
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host has spaces or control characters"));
        }
        let port = match port_text {
            None => DEFAULT_MQTT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad(&format!("port `{p}` is not a number from 1 to 65535"))),
            },
        };
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            username,
            password,
        })
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, when the URL has one.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// rumqttc options to reach this broker as `client_id`, with the URL's
    /// credentials; everything else at rumqttc's defaults.
    pub fn mqtt_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
        if let Some(u) = &self.username {
            o.set_credentials(u.clone(), self.password.clone().unwrap_or_default());
        }
        o
    }
}

/// Why a device id cannot be the last level of a topic, if it cannot.
pub(crate) fn topic_level_problem(device: &str) -> Option<&'static str> {
    if device.is_empty() {
        Some("the id is empty")
    } else if device.contains('/') {
        Some("it contains `/`, which would split the topic")
    } else if device.contains(['+', '#']) {
        Some("it contains the wildcard `+` or `#`")
    } else if device.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let b = BrokerUrl::parse("mqtt://user:secret@broker.plant:8883/").unwrap();
        assert_eq!(b.host(), "broker.plant");
        assert_eq!(b.port(), 8883);
        assert_eq!(b.username(), Some("user"));
        assert_eq!(b.to_string(), "mqtt://user@broker.plant:8883");
        assert!(!format!("{b:?}").contains("secret"));
        let v6 = BrokerUrl::parse("tcp://[::1]:1884").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        assert_eq!(BrokerUrl::parse("MQTT://h").unwrap().port(), 1883);
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("127.0.0.1:1883", "no scheme"),
            ("mqtts://h:8883", "not supported"),
            ("http://h", "unknown scheme"),
            ("mqtt://", "no host"),
            ("mqtt://h:0", "port `0`"),
            ("mqtt://h:70000", "port `70000`"),
            ("mqtt://h:x", "port `x`"),
            ("mqtt://h/topic", "no path"),
            ("mqtt://[::1", "closing"),
            ("mqtt://@h", "user name"),
        ] {
            let e = BrokerUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains(&format!("`{url}`")), "{url}: {e}");
        }
    }

    #[test]
    fn device_ids_that_cannot_be_topic_levels() {
        assert_eq!(topic_level_problem("DEV-0001"), None);
        assert_eq!(topic_level_problem("pump 7 (north)"), None);
        for bad in ["", "a/b", "a+", "#", "a\nb"] {
            assert!(topic_level_problem(bad).is_some(), "{bad:?}");
        }
    }
}
