//! Replaying a batch into an MQTT broker: one QoS 1 message per row, in time
//! order, paced by the data's own clock or at a fixed rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use itap::ParamGuard;
use itap::telemetry::{Batch, format_timestamp};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{BrokerUrl, topic_level_problem};
use crate::error::{Error, Result};
use crate::message::encode;

/// How fast a replay publishes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// The data's own timing, this many times faster (`60.0` plays an hour in a
    /// minute, `1.0` in real time).
    Speed(f64),
    /// A fixed rate, messages per second; `0.0` publishes as fast as the broker
    /// acknowledges.
    Rate(f64),
}

impl Default for Pace {
    /// As fast as the broker takes it.
    fn default() -> Self {
        Pace::Rate(0.0)
    }
}

/// Replay settings, unchecked.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `url` | `mqtt://127.0.0.1:1883` | the broker ([`BrokerUrl`]) | `mqtt://[user[:password]@]host[:port]` |
/// | `topic_prefix` | `itap/telemetry` | messages go to `{topic_prefix}/{device}` | not empty, no `+`, `#`, NUL, leading `$` or trailing `/` |
/// | `pace` | `Rate(0)` | [`Pace::Speed`] (the data's timing, sped up) or [`Pace::Rate`] (messages/s; 0 = as fast as acknowledged) | speed 0.001 – 1 000 000; rate 0 or 0.001 – 10 000 000 |
/// | `client_id` | `itap-replay-{pid}-{n}` | the MQTT client id | 1 – 128 bytes, no NUL |
/// | `inflight` | 1000 | QoS 1 messages sent and not yet acknowledged, at most | 1 – 65 535 |
/// | `max_message_bytes` | 65 536 | longest message; a longer one stops the replay (the decoder's default payload limit) | 64 – 16 MiB |
///
/// Every message is QoS 1, not retained. Memory stays flat whatever the batch's
/// size: at most `inflight` messages wait for their acknowledgement and as many
/// again in the client's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayParams {
    /// The broker URL.
    pub url: String,
    /// The topic prefix.
    pub topic_prefix: String,
    /// How fast.
    pub pace: Pace,
    /// The MQTT client id; `None` makes one unique to this process.
    pub client_id: Option<String>,
    /// The in-flight window of unacknowledged messages.
    pub inflight: u16,
    /// The longest message, bytes.
    pub max_message_bytes: usize,
}

impl Default for ReplayParams {
    fn default() -> Self {
        ReplayParams {
            url: "mqtt://127.0.0.1:1883".to_owned(),
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
            pace: Pace::default(),
            client_id: None,
            inflight: 1000,
            max_message_bytes: 64 * 1024,
        }
    }
}

/// The topic prefix used when none is given.
pub const DEFAULT_TOPIC_PREFIX: &str = "itap/telemetry";

impl ReplayParams {
    /// Sets the broker URL.
    pub fn url(mut self, v: impl Into<String>) -> Self {
        self.url = v.into();
        self
    }

    /// Sets the topic prefix.
    pub fn topic_prefix(mut self, v: impl Into<String>) -> Self {
        self.topic_prefix = v.into();
        self
    }

    /// Sets the pace.
    pub fn pace(mut self, v: Pace) -> Self {
        self.pace = v;
        self
    }

    /// Sets the client id (`None`: one unique to this process).
    pub fn client_id(mut self, v: Option<String>) -> Self {
        self.client_id = v;
        self
    }

    /// Sets the in-flight window.
    pub fn inflight(mut self, v: u16) -> Self {
        self.inflight = v;
        self
    }

    /// Sets the longest message, bytes.
    pub fn max_message_bytes(mut self, v: usize) -> Self {
        self.max_message_bytes = v;
        self
    }

    fn resolve(&self) -> Result<BrokerUrl> {
        let broker = BrokerUrl::parse(&self.url)?;
        check_topic_prefix(&self.topic_prefix)?;
        match self.pace {
            Pace::Speed(s) if !(s.is_finite() && (0.001..=1e6).contains(&s)) => {
                return Err(Error::param(
                    "pace.speed",
                    format!("must be from 0.001 to 1000000 (times real time), got {s}"),
                ));
            }
            Pace::Rate(r) if !(r == 0.0 || (r.is_finite() && (0.001..=1e7).contains(&r))) => {
                return Err(Error::param(
                    "pace.rate",
                    format!(
                        "must be 0 (as fast as the broker takes them) or from 0.001 to 10000000 messages/s, got {r}"
                    ),
                ));
            }
            _ => {}
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 128 || id.contains('\0'))
        {
            return Err(Error::param(
                "client_id",
                format!("must be 1 to 128 bytes without NUL, got {:?}", id),
            ));
        }
        if self.inflight == 0 {
            return Err(Error::param("inflight", "must be from 1 to 65535, got 0"));
        }
        if !(64..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(Error::param(
                "max_message_bytes",
                format!(
                    "must be from 64 to 16777216 bytes, got {}",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(broker)
    }
}

/// Checks a topic prefix: a plain topic name to which `/{device}` is added.
fn check_topic_prefix(p: &str) -> Result<()> {
    let why = if p.is_empty() {
        Some("must not be empty")
    } else if p.len() > 1024 {
        Some("must be at most 1024 bytes")
    } else if p.contains(['+', '#']) {
        Some("must not contain the wildcards `+` or `#`")
    } else if p.contains('\0') {
        Some("must not contain NUL")
    } else if p.starts_with('$') {
        Some("must not start with `$` (topics the broker reserves)")
    } else if p.ends_with('/') {
        Some("must not end with `/` (the device id is added after one)")
    } else {
        None
    };
    match why {
        Some(w) => Err(Error::param("topic_prefix", format!("{w}, got {p:?}"))),
        None => Ok(()),
    }
}

impl ParamGuard for ReplayParams {
    type Checked = CheckedReplay;
    type Error = Error;

    fn check_ref(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    /// Checks the settings and reads the URL; without a client id, makes one
    /// unique to this process (`itap-replay-{pid}-{n}`).
    ///
    /// # Errors
    /// [`Error::Url`] for a URL that is not `mqtt://host[:port]`;
    /// [`Error::InvalidParam`] naming the first other setting out of range.
    fn check(self) -> Result<CheckedReplay> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let broker = self.resolve()?;
        let client_id = self.client_id.clone().unwrap_or_else(|| {
            format!(
                "itap-replay-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            )
        });
        Ok(CheckedReplay {
            params: self,
            broker,
            client_id,
        })
    }
}

/// Replay settings that passed [`ReplayParams`]' [`check`](ParamGuard::check).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedReplay {
    params: ReplayParams,
    broker: BrokerUrl,
    client_id: String,
}

impl CheckedReplay {
    /// The settings as given.
    pub fn params(&self) -> &ReplayParams {
        &self.params
    }

    /// The broker.
    pub fn broker(&self) -> &BrokerUrl {
        &self.broker
    }

    /// The client id the replay connects with.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The topic of a device's messages: `{topic_prefix}/{device}`.
    pub fn topic(&self, device: &str) -> String {
        format!("{}/{device}", self.params.topic_prefix)
    }
}

/// Where a replay is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Messages handed to the MQTT client so far.
    pub published: u64,
    /// Messages the broker acknowledged so far.
    pub acknowledged: u64,
    /// Messages in all (the batch's rows).
    pub total: u64,
}

/// What a finished replay did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Messages published and acknowledged by the broker (each exactly once).
    pub messages: u64,
    /// Devices with at least one message.
    pub devices: usize,
    /// The first and last row's timestamps, UTC microseconds.
    pub time_span: Option<(i64, i64)>,
    /// Wall time from the connection to the last acknowledgement, seconds.
    pub seconds: f64,
}

impl ReplaySummary {
    /// Messages per second of wall time.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
}

/// Row indices in time order; rows with equal timestamps keep the batch's order.
pub(crate) fn time_order(batch: &Batch) -> Vec<usize> {
    let ts = batch.timestamps();
    let mut order: Vec<usize> = (0..batch.len()).collect();
    // Stable: ties stay in row order.
    order.sort_by_key(|&r| ts[r]);
    order
}

/// How often the progress callback is told while publishing, in messages.
const PROGRESS_EVERY: u64 = 256;

/// Publishes every row of `batch` as one message on `{topic_prefix}/{device}`
/// (QoS 1), in time order (by timestamp, then the batch's row order), paced as
/// `params` says, and returns once the broker has acknowledged every message —
/// so [`ReplaySummary::messages`] is exact. `progress` is called every few
/// hundred messages and while the last acknowledgements arrive.
///
/// Runs on the caller's tokio runtime (the MQTT client's event loop is polled
/// inside this future; nothing is spawned).
///
/// # Errors
/// [`Error::DeviceTopic`] before anything is sent when a device id cannot be a
/// topic level; [`Error::Connect`] when the broker cannot be reached or refuses
/// the connection; [`Error::MessageTooLarge`] for a row whose message is longer
/// than `max_message_bytes`; [`Error::Connection`] (with the count
/// acknowledged so far) when the connection breaks during the replay.
pub async fn replay<F>(
    batch: &Batch,
    params: &CheckedReplay,
    mut progress: F,
) -> Result<ReplaySummary>
where
    F: FnMut(ReplayProgress),
{
    let p = &params.params;
    let topics = device_topics(batch, params)?;
    let order = time_order(batch);
    let total = order.len() as u64;
    let devices = topics.iter().filter(|t| t.is_some()).count();
    let time_span = batch.time_bounds();
    let url = params.broker.to_string();

    let mut options = params.broker.mqtt_options(&params.client_id);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(p.inflight)
        // Outgoing: the longest message plus its topic and header.
        .set_max_packet_size(64 * 1024, p.max_message_bytes + 2048);
    let cap = usize::from(p.inflight).max(64);
    let (client, mut eventloop) = AsyncClient::new(options, cap);

    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(source) => {
                return Err(Error::Connect {
                    url,
                    source: Box::new(source),
                });
            }
        }
    }
    tracing::debug!(%url, client_id = params.client_id, total, "replay connected");

    let started = Instant::now();
    let acked = AtomicU64::new(0);
    let ack_seen = Notify::new();
    let outcome = {
        let driver = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        ack_seen.notify_one();
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        };
        let publisher = async {
            let first_ts = time_span.map_or(0, |(t0, _)| t0);
            let ts = batch.timestamps();
            let codes = batch.device_codes();
            let mut published = 0u64;
            for (i, &row) in order.iter().enumerate() {
                if let Some(due) = due_at(p.pace, started, i, ts[row] - first_ts)
                    && due > Instant::now()
                {
                    tokio::time::sleep_until(due).await;
                }
                let payload = encode(batch, row);
                if payload.len() > p.max_message_bytes {
                    return Err(Error::MessageTooLarge {
                        device: batch.device_of(row).to_owned(),
                        ts: format_timestamp(ts[row]),
                        bytes: payload.len(),
                        limit: p.max_message_bytes,
                    });
                }
                // Every used device has a topic (device_topics).
                let topic = topics[codes[row] as usize].clone().unwrap_or_default();
                client
                    .publish(topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .map_err(Error::client)?;
                published += 1;
                if published.is_multiple_of(PROGRESS_EVERY) {
                    progress(ReplayProgress {
                        published,
                        acknowledged: acked.load(Ordering::Relaxed),
                        total,
                    });
                }
            }
            loop {
                // Made before the count is read, so an acknowledgement that
                // arrives in between still wakes it.
                let woken = ack_seen.notified();
                let acknowledged = acked.load(Ordering::Relaxed);
                progress(ReplayProgress {
                    published,
                    acknowledged,
                    total,
                });
                if acknowledged >= total {
                    return Ok(());
                }
                woken.await;
            }
        };
        tokio::pin!(driver, publisher);
        tokio::select! {
            r = &mut publisher => r,
            source = &mut driver => Err(Error::Connection {
                url: url.clone(),
                acknowledged: acked.load(Ordering::Relaxed),
                total,
                source: Box::new(source),
            }),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    disconnect(&client, &mut eventloop).await;
    outcome?;
    let messages = acked.load(Ordering::Relaxed);
    tracing::debug!(messages, seconds, "replay done");
    Ok(ReplaySummary {
        messages,
        devices,
        time_span,
        seconds,
    })
}

/// The topic of each device code with rows (`None` for codes without any).
fn device_topics(batch: &Batch, params: &CheckedReplay) -> Result<Vec<Option<String>>> {
    let mut used = vec![false; batch.device_names().len()];
    for &c in batch.device_codes() {
        used[c as usize] = true;
    }
    batch
        .device_names()
        .iter()
        .zip(used)
        .map(|(name, used)| {
            if !used {
                return Ok(None);
            }
            if let Some(reason) = topic_level_problem(name) {
                return Err(Error::DeviceTopic {
                    device: name.chars().take(64).collect(),
                    reason,
                });
            }
            Ok(Some(params.topic(name)))
        })
        .collect()
}

/// When message `i` (whose timestamp is `since_first` µs after the first row's)
/// is due; `None` when it is due at once.
fn due_at(pace: Pace, started: Instant, i: usize, since_first: i64) -> Option<Instant> {
    let secs = match pace {
        Pace::Rate(r) if r > 0.0 => i as f64 / r,
        Pace::Speed(s) => since_first as f64 / 1e6 / s,
        Pace::Rate(_) => return None,
    };
    // Beyond a year from now is treated as a year (Duration and Instant bounds).
    let d = Duration::try_from_secs_f64(secs.min(365.0 * 86_400.0)).ok()?;
    started.checked_add(d)
}

/// Says goodbye to the broker, waiting a moment for the DISCONNECT to go out.
async fn disconnect(client: &AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap::telemetry::{BatchBuilder, Schema, Signal, State};

    #[test]
    fn params_are_checked() {
        assert!(ReplayParams::default().check_ref().is_ok());
        let bad = [
            ReplayParams::default().url("http://x"),
            ReplayParams::default().topic_prefix(""),
            ReplayParams::default().topic_prefix("a/#"),
            ReplayParams::default().topic_prefix("a/"),
            ReplayParams::default().topic_prefix("$SYS/x"),
            ReplayParams::default().pace(Pace::Speed(0.0)),
            ReplayParams::default().pace(Pace::Speed(f64::NAN)),
            ReplayParams::default().pace(Pace::Rate(-1.0)),
            ReplayParams::default().pace(Pace::Rate(f64::INFINITY)),
            ReplayParams::default().client_id(Some(String::new())),
            ReplayParams::default().inflight(0),
            ReplayParams::default().max_message_bytes(10),
        ];
        for p in bad {
            assert!(p.check_ref().is_err(), "{p:?}");
        }
        let e = ReplayParams::default()
            .pace(Pace::Rate(-1.0))
            .check()
            .unwrap_err()
            .in_section("replay");
        assert!(e.to_string().contains("`replay.pace.rate`"), "{e}");
    }

    #[test]
    fn client_ids_are_unique_in_a_process() {
        let a = ReplayParams::default().check().unwrap();
        let b = ReplayParams::default().check().unwrap();
        assert_ne!(a.client_id(), b.client_id());
        assert!(a.client_id().starts_with("itap-replay-"));
        let c = ReplayParams::default()
            .client_id(Some("me".into()))
            .check()
            .unwrap();
        assert_eq!(c.client_id(), "me");
        assert_eq!(c.topic("D1"), "itap/telemetry/D1");
    }

    #[test]
    fn order_is_by_time_then_row() {
        let schema = Schema::new(vec![Signal::new("x")]).unwrap();
        let mut b = BatchBuilder::new(schema, false, false, false);
        for (t, d) in [(20, "a"), (10, "b"), (20, "c"), (10, "a"), (5, "c")] {
            let code = b.device_code(d);
            b.push(t, code, &[0.0], State::Run, 0, 0).unwrap();
        }
        assert_eq!(time_order(&b.finish()), [4, 1, 3, 0, 2]);
    }

    #[test]
    fn pacing() {
        let t0 = Instant::now();
        assert_eq!(due_at(Pace::Rate(0.0), t0, 10, 0), None);
        assert_eq!(
            due_at(Pace::Rate(4.0), t0, 10, 0),
            Some(t0 + Duration::from_millis(2500))
        );
        assert_eq!(
            due_at(Pace::Speed(60.0), t0, 0, 3_600_000_000),
            Some(t0 + Duration::from_secs(60))
        );
        assert!(due_at(Pace::Speed(0.001), t0, 0, i64::MAX).is_some());
    }
}
