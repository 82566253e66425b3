//! `serve`: subscribe to telemetry, and for every message decode, check, store,
//! score and raise alerts, acknowledging a message to the broker only once
//! everything it led to is committed.
//!
//! One step takes the messages that have arrived (up to `batch_rows`, waiting at
//! most `batch_wait` after the first):
//!
//! 1. decode each ([`Decoder`]); a message another shard owns is acknowledged and
//!    left alone; a refused one becomes a reject;
//! 2. per device, a row not after the device's last scored row is a redelivery
//!    (stored with the same values: counted, skipped), a conflict (stored with
//!    other values) or out of order (nothing stored at that time): the last two
//!    are rejects;
//! 3. the accepted rows are validated as a batch and stored in the dataset
//!    table (an [`Ingest`] chunk: one transaction, idempotent on (device, ts));
//! 4. they are scored ([`LiveScorer`], incremental per-device feature state) and
//!    fed to the alert engine;
//! 5. scores, the devices' new feature states, changed alerts and rejects are
//!    committed in one transaction ([`Store::commit_live`]);
//! 6. the step's messages are acknowledged.
//!
//! Killed at any point, a restart resumes each device's state as of the last
//! commit; the broker redelivers what was not acknowledged, rows already stored
//! are counted as duplicates, and every row ends up stored and scored once.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use itap::store::{
    AlertQuery, AlertRecord, DeviceStateRecord, Ingest, IngestSource, LiveCommit, OnConflict,
    RangeQuery, RejectRecord, ScoreQuery, ScoreRecord, Store,
};
use itap::telemetry::{Batch, BatchBuilder, State};
use itap::validate::CheckedValidation;
use itap::{LiveRow, LiveScorer, ParamGuard};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::mpsc;

use crate::broker::BrokerUrl;
use crate::error::{Error, Result};
use crate::fleet::{DeviceView, Fleet};
use crate::lag::LagHistogram;
use crate::message::{Decoder, Reading};
use crate::now_micros;

/// The topic filter `serve` subscribes to by default.
pub const DEFAULT_TOPIC_FILTER: &str = "itap/telemetry/#";

/// A worker's share of the devices: those whose [`shard_of`] is `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This worker's shard, 0-based.
    pub index: u32,
    /// Shards in all.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?} is not a shard: write I/N with 0 <= I < N, e.g. 0/2");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The shard of `device` among `count`: FNV-1a (64 bit) of its id, modulo
/// `count`. Stable across processes, machines and versions.
pub fn shard_of(device: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// How `serve` runs, unchecked.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `url` | `mqtt://127.0.0.1:1883` | the broker |
/// | `topic` | `itap/telemetry/#` | the topic filter subscribed to (QoS 1) |
/// | `dataset` | `telemetry` | where rows, scores, alerts and rejects go |
/// | `client_id` | `itap-serve-DATASET[-I-of-N]` | the persistent session's id: keep it across restarts |
/// | `shard` | none (every device) | take only the devices of this shard |
/// | `batch_rows` | 5000 | most messages per step (1 – 50 000); give the broker an in-flight window of about twice this, so it sends the next step while one is processed |
/// | `batch_wait_ms` | 0 | longest wait for more messages after a step's first (0 – 10 000); 0 takes the messages already arrived: lower answers sooner, higher takes more per transaction at low rates |
/// | `max_packet_bytes` | 16 MiB | largest MQTT packet read; the decoder refuses payloads above its own limit |
#[derive(Debug, Clone, PartialEq)]
pub struct ServeParams {
    /// Broker URL.
    pub url: String,
    /// Topic filter.
    pub topic: String,
    /// Dataset.
    pub dataset: String,
    /// MQTT client id (persistent session).
    pub client_id: Option<String>,
    /// This worker's shard.
    pub shard: Option<Shard>,
    /// Most messages per step.
    pub batch_rows: usize,
    /// Longest wait for more messages after a step's first, ms.
    pub batch_wait_ms: u64,
    /// Largest MQTT packet read.
    pub max_packet_bytes: usize,
}

impl Default for ServeParams {
    fn default() -> Self {
        ServeParams {
            url: "mqtt://127.0.0.1:1883".into(),
            topic: DEFAULT_TOPIC_FILTER.into(),
            dataset: "telemetry".into(),
            client_id: None,
            shard: None,
            batch_rows: 5000,
            batch_wait_ms: 0,
            max_packet_bytes: 16 << 20,
        }
    }
}

impl ServeParams {
    /// Checks the parameters and reads the URL.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the parameter; [`Error::Url`].
    pub fn check(self) -> Result<CheckedServe> {
        let broker = BrokerUrl::parse(&self.url)?;
        if !(1..=50_000).contains(&self.batch_rows) {
            return Err(Error::param(
                "batch_rows",
                format!("{} is not from 1 to 50000", self.batch_rows),
            ));
        }
        if self.batch_wait_ms > 10_000 {
            return Err(Error::param(
                "batch_wait_ms",
                format!("{} is above 10000", self.batch_wait_ms),
            ));
        }
        if self.topic.is_empty() || self.topic.contains('\0') {
            return Err(Error::param(
                "topic",
                "must be a non-empty MQTT topic filter",
            ));
        }
        itap::store::check_name(&self.dataset)
            .map_err(|e| Error::param("dataset", e.to_string()))?;
        let client_id = self.client_id.clone().unwrap_or_else(|| match self.shard {
            Some(s) => format!("itap-serve-{}-{}-of-{}", self.dataset, s.index, s.count),
            None => format!("itap-serve-{}", self.dataset),
        });
        Ok(CheckedServe {
            params: self,
            broker,
            client_id,
        })
    }
}

/// Checked [`ServeParams`].
#[derive(Debug, Clone)]
pub struct CheckedServe {
    params: ServeParams,
    broker: BrokerUrl,
    client_id: String,
}

impl CheckedServe {
    /// The parameters.
    pub fn params(&self) -> &ServeParams {
        &self.params
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// Counters of a running server, readable from other tasks (health, progress).
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Messages received.
    pub received: AtomicU64,
    /// Messages of devices another shard owns (acknowledged, not processed).
    pub foreign: AtomicU64,
    /// Rows stored new.
    pub stored: AtomicU64,
    /// Rows received again (stored already, same values).
    pub duplicates: AtomicU64,
    /// Rows scored.
    pub scored: AtomicU64,
    /// Rows flagged.
    pub flagged: AtomicU64,
    /// Messages refused.
    pub rejected: AtomicU64,
    /// Steps committed.
    pub commits: AtomicU64,
    /// Alerts written (inserted or changed).
    pub alerts: AtomicU64,
    /// Wall time of the last commit, UTC µs (0 before the first).
    pub last_commit_us: AtomicI64,
    /// Each device's last row, score and alerts, as of the last commit.
    pub fleet: Fleet,
    /// How old each scored row was when its step committed.
    pub lag: LagHistogram,
}

impl ServeStats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> ServeSummary {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServeSummary {
            received: g(&self.received),
            foreign: g(&self.foreign),
            stored: g(&self.stored),
            duplicates: g(&self.duplicates),
            scored: g(&self.scored),
            flagged: g(&self.flagged),
            rejected: g(&self.rejected),
            commits: g(&self.commits),
            alerts: g(&self.alerts),
        }
    }
}

/// What a server did, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServeSummary {
    /// Messages received.
    pub received: u64,
    /// Messages of other shards' devices.
    pub foreign: u64,
    /// Rows stored new.
    pub stored: u64,
    /// Rows received again.
    pub duplicates: u64,
    /// Rows scored.
    pub scored: u64,
    /// Rows flagged.
    pub flagged: u64,
    /// Messages refused.
    pub rejected: u64,
    /// Steps committed.
    pub commits: u64,
    /// Alert writes.
    pub alerts: u64,
}

/// The validation each step's rows get: the configured checks without the shares
/// of missing values per signal (`missing_rate_warning`, `missing_rate_error`,
/// raised to 1). Those describe a file; a step is whatever slice of the stream
/// has arrived — one message at a quiet moment — and a single reading with one
/// missing value would be "mostly missing" and refuse the step, so whether a
/// row is stored would depend on the timing of its neighbours.
///
/// # Errors
/// [`Error::Pipeline`] if the adjusted parameters do not check (they always do
/// when `validation` did).
pub fn step_validation(validation: &CheckedValidation) -> Result<CheckedValidation> {
    Ok(validation
        .params()
        .clone()
        .missing_rate_warning(1.0)
        .missing_rate_error(1.0)
        .check()
        .map_err(itap::Error::from)?)
}

/// Runs the server until `shutdown` completes, then finishes the step in hand,
/// commits, acknowledges, disconnects and returns the counts.
///
/// The dataset is created with the model's schema if needed; device states
/// stored by an earlier run of the same dataset are resumed (those of this
/// shard). `validation` checks each step's accepted rows as a batch, less its
/// shares of missing values ([`step_validation`]).
///
/// # Errors
/// [`Error::Connect`] when the broker cannot be reached at start; store and
/// pipeline errors (a database that fails stops the server: nothing is
/// acknowledged that was not committed, so a restart loses nothing).
pub async fn serve<F>(
    store: &Store,
    mut scorer: LiveScorer,
    decoder: Decoder,
    validation: &CheckedValidation,
    params: &CheckedServe,
    stats: Arc<ServeStats>,
    shutdown: F,
) -> Result<ServeSummary>
where
    F: Future<Output = ()>,
{
    let p = &params.params;
    let validation = &step_validation(validation)?;
    let schema = scorer.model().schema.clone();
    store.ensure_dataset(&p.dataset, &schema).await?;
    let mine = |device: &str| p.shard.is_none_or(|s| shard_of(device, s.count) == s.index);
    let resumed = resume_devices(store, &mut scorer, &p.dataset, &mine, &stats).await?;
    tracing::info!(dataset = p.dataset, resumed, "device states resumed");
    let source = IngestSource {
        path: format!("{}#{}", params.broker, p.topic),
        sha256: "live".into(),
    };
    let mut ingest = store
        .begin_ingest(&p.dataset, &schema, source.clone(), OnConflict::Keep)
        .await?;

    let (client, mut rx, driver) = match connect(params).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ingest.fail(&e.to_string()).await;
            return Err(e);
        }
    };
    tracing::info!(url = %params.broker, client_id = params.client_id, "subscribed");
    let mut step = Step {
        written: BTreeMap::new(),
        store,
        scorer: &mut scorer,
        decoder: &decoder,
        validation,
        dataset: &p.dataset,
        model: model_name(&schema),
        stats: &stats,
    };
    let wait = Duration::from_millis(p.batch_wait_ms);
    tokio::pin!(shutdown);
    let mut stopping = false;
    let mut batch: Vec<Publish> = Vec::with_capacity(p.batch_rows);
    let outcome: Result<()> = async {
        while !stopping {
            tokio::select! {
                biased;
                () = &mut shutdown => stopping = true,
                msg = rx.recv() => match msg {
                    Some(m) => batch.push(m),
                    None => return Err(Error::Serve("the MQTT connection task ended".into())),
                },
            }
            if !stopping {
                let deadline = Instant::now() + wait;
                while batch.len() < p.batch_rows {
                    match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                        Ok(Some(m)) => batch.push(m),
                        _ => break,
                    }
                }
            } else {
                // Drain what has arrived: it is processed and acknowledged.
                while let Ok(m) = rx.try_recv() {
                    batch.push(m);
                }
            }
            for chunk in batch.chunks(p.batch_rows) {
                step.run(chunk, &mut ingest, &mine).await?;
                for m in chunk {
                    client.ack(m).await.map_err(Error::client)?;
                }
            }
            batch.clear();
        }
        Ok(())
    }
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    let summary = stats.snapshot();
    match outcome {
        Ok(()) => {
            ingest
                .finish(source, summary.received, summary.rejected)
                .await?;
            Ok(summary)
        }
        Err(e) => {
            let _ = ingest.fail(&e.to_string()).await;
            Err(e)
        }
    }
}

/// Resumes the feature and alert state of this worker's devices from the store,
/// and sets their view (last row and score, alerts) to match; returns how many.
async fn resume_devices(
    store: &Store,
    scorer: &mut LiveScorer,
    dataset: &str,
    mine: &impl Fn(&str) -> bool,
    stats: &ServeStats,
) -> Result<usize> {
    let states: Vec<DeviceStateRecord> = store
        .live_states(dataset)
        .await?
        .into_iter()
        .filter(|st| mine(&st.device))
        .collect();
    if states.is_empty() {
        return Ok(0);
    }
    // Stored alerts per device, read once.
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for a in store.alerts(dataset, &AlertQuery::all()).await? {
        *stored.entry(a.device).or_default() += 1;
    }
    for st in &states {
        scorer.resume(&st.device, &st.state)?;
        let last = store
            .scores(
                dataset,
                &ScoreQuery {
                    device: Some(st.device.clone()),
                    since_us: Some(st.ts_us),
                    until_us: None,
                    limit: Some(1),
                },
            )
            .await?;
        let last = last.first();
        stats.fleet.set(
            &st.device,
            DeviceView {
                last_us: Some(st.ts_us),
                last_score: last.map(|s| s.score),
                flagged: last.is_some_and(|s| s.flagged),
                family: last.and_then(|s| s.family.clone()),
                rows: st.rows,
                closed_alerts: stored.get(&st.device).copied().unwrap_or(0),
                ..DeviceView::default()
            },
        );
    }
    // The alerts the engine resumed open (or pending a merge) are among the
    // stored ones: counted as such, not as closed.
    let (_, open) = scorer.alerts(None);
    for a in &open {
        if let Some(mut v) = stats.fleet.device(&a.device) {
            v.closed_alerts = v.closed_alerts.saturating_sub(1);
            if a.open {
                v.open_alerts.push(a.id.clone());
            } else {
                v.pending_alerts.push(a.id.clone());
            }
            stats.fleet.set(&a.device, v);
        }
    }
    Ok(states.len())
}

/// A name for the model in stored alerts: its schema digest's start.
fn model_name(schema: &itap::telemetry::Schema) -> String {
    format!("live:{}", schema.names().collect::<Vec<_>>().join("+"))
}

/// Connects with a persistent session and manual acknowledgements, subscribes,
/// and spawns the task that drives the connection and hands over publishes.
async fn connect(
    params: &CheckedServe,
) -> Result<(
    AsyncClient,
    mpsc::UnboundedReceiver<Publish>,
    tokio::task::JoinHandle<()>,
)> {
    let p = &params.params;
    let mut options = params.broker.mqtt_options(&params.client_id);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(p.max_packet_bytes, 64 * 1024);
    // Acknowledgements of a whole step fit in the request queue while the
    // connection task waits to hand over a publish.
    let (client, mut eventloop) = AsyncClient::new(options, 2 * p.batch_rows + 16);
    let url = params.broker.to_string();
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
    client
        .subscribe(p.topic.clone(), QoS::AtLeastOnce)
        .await
        .map_err(Error::client)?;
    // Unbounded, so that the connection task never waits for the steps: were it
    // to wait while a step waits for room for its acknowledgements (which only
    // this task sends), both would wait forever. The broker bounds what is
    // queued here: it sends at most `max_inflight_messages` unacknowledged
    // messages (docs/live.md, "The broker's settings").
    let (tx, rx) = mpsc::unbounded_channel();
    let topic = p.topic.clone();
    let resubscribe = client.clone();
    let driver = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(m))) => {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(session_present = ack.session_present, "reconnected");
                    if !ack.session_present {
                        let _ = resubscribe.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, %url, "MQTT connection lost; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok((client, rx, driver))
}

/// What one step needs.
struct Step<'a> {
    /// Each alert as last committed: an alert is written again only when it
    /// changed (an open alert of a device without rows this step does not).
    written: BTreeMap<String, AlertRecord>,
    store: &'a Store,
    scorer: &'a mut LiveScorer,
    decoder: &'a Decoder,
    validation: &'a CheckedValidation,
    dataset: &'a str,
    model: String,
    stats: &'a ServeStats,
}

/// A decoded message kept for storing and scoring.
struct Accepted {
    reading: Reading,
}

impl Step<'_> {
    /// Processes one step's messages (see the module documentation).
    async fn run(
        &mut self,
        msgs: &[Publish],
        ingest: &mut Ingest<'_>,
        mine: &impl Fn(&str) -> bool,
    ) -> Result<()> {
        let now = now_micros();
        ServeStats::add(&self.stats.received, msgs.len() as u64);
        let mut rejects = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::with_capacity(msgs.len());
        // The last accepted time per device within this step.
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        // The step's accepted rows by key, for a repeat within the step.
        let mut in_step: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for m in msgs {
            let topic: &str = &m.topic;
            if let Some(device) = topic.rsplit('/').next()
                && !mine(device)
            {
                ServeStats::add(&self.stats.foreign, 1);
                continue;
            }
            let reading = match self.decoder.decode(topic, &m.payload, now) {
                Ok(r) => r,
                Err(rej) => {
                    rejects.push(RejectRecord::new(
                        now,
                        topic,
                        &m.payload,
                        rej.code(),
                        &rej.detail,
                    ));
                    continue;
                }
            };
            if !mine(&reading.device) {
                ServeStats::add(&self.stats.foreign, 1);
                continue;
            }
            let prev = last
                .get(&reading.device)
                .copied()
                .or_else(|| self.scorer.last_ts(&reading.device));
            if prev.is_some_and(|t| reading.ts <= t) {
                let seen = match in_step.get(&(reading.device.clone(), reading.ts)) {
                    Some(&i) if same_reading(&accepted[i].reading, &reading) => Stored::Same,
                    Some(_) => Stored::Other,
                    None => self.stored_as(&reading).await?,
                };
                match seen {
                    Stored::Same => ServeStats::add(&self.stats.duplicates, 1),
                    Stored::Other => rejects.push(RejectRecord::new(
                        now,
                        topic,
                        &m.payload,
                        "row.conflict",
                        format!(
                            "device {} at {} is stored with other values; the stored row is kept",
                            reading.device,
                            itap::telemetry::format_timestamp(reading.ts)
                        ),
                    )),
                    Stored::Missing => rejects.push(RejectRecord::new(
                        now,
                        topic,
                        &m.payload,
                        "ts.out_of_order",
                        format!(
                            "device {} at {} arrived after its row at {}",
                            reading.device,
                            itap::telemetry::format_timestamp(reading.ts),
                            itap::telemetry::format_timestamp(prev.unwrap_or_default())
                        ),
                    )),
                }
                continue;
            }
            last.insert(reading.device.clone(), reading.ts);
            in_step.insert((reading.device.clone(), reading.ts), accepted.len());
            accepted.push(Accepted { reading });
        }
        let (scored, machine) = self
            .store_and_score(&accepted, ingest, now, &mut rejects)
            .await?;
        ServeStats::add(&self.stats.rejected, rejects.len() as u64);
        let (finished, open) = self.scorer.alerts(None);
        let alerts: Vec<AlertRecord> = finished
            .iter()
            .chain(&open)
            .map(|a| itap::alert_record(a, &self.model))
            .filter(|r| self.written.get(&r.id) != Some(r))
            .collect();
        let mut devices: Vec<&str> = scored.iter().map(|s| s.device.as_str()).collect();
        devices.sort_unstable();
        devices.dedup();
        let states: Vec<DeviceStateRecord> = devices
            .iter()
            .filter_map(|d| {
                Some(DeviceStateRecord {
                    device: (*d).to_owned(),
                    ts_us: self.scorer.last_ts(d)?,
                    rows: self.scorer.rows(d),
                    state: self.scorer.saved_state(d)?,
                })
            })
            .collect();
        self.store
            .commit_live(
                self.dataset,
                &LiveCommit {
                    scores: &scored,
                    states: &states,
                    alerts: &alerts,
                    rejects: &rejects,
                },
            )
            .await?;
        ServeStats::add(&self.stats.alerts, alerts.len() as u64);
        for r in alerts {
            self.written.insert(r.id.clone(), r);
        }
        // A finished alert does not come back.
        for a in &finished {
            self.written.remove(&a.id);
        }
        let machine: Vec<Option<&str>> = machine.iter().map(|s| s.map(State::as_str)).collect();
        self.stats.fleet.record(&scored, &machine, &finished, &open);
        ServeStats::add(&self.stats.commits, 1);
        let committed = now_micros();
        self.stats
            .last_commit_us
            .store(committed, Ordering::Relaxed);
        self.stats
            .lag
            .record(scored.iter().map(|s| committed - s.ts_us));
        Ok(())
    }

    /// Validates and stores the accepted rows, then scores them.
    async fn store_and_score(
        &mut self,
        accepted: &[Accepted],
        ingest: &mut Ingest<'_>,
        now: i64,
        rejects: &mut Vec<RejectRecord>,
    ) -> Result<(Vec<ScoreRecord>, Vec<Option<State>>)> {
        if accepted.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Rows with and without a state or an error code go in separate batches,
        // so that nothing is made up for a field a message did not send.
        let mut groups: BTreeMap<(bool, bool), Vec<usize>> = BTreeMap::new();
        for (i, a) in accepted.iter().enumerate() {
            let r = &a.reading;
            groups
                .entry((r.state.is_some(), r.error_code.is_some()))
                .or_default()
                .push(i);
        }
        let mut ok: Vec<usize> = Vec::with_capacity(accepted.len());
        for ((with_state, with_error), idx) in groups {
            let rows: Vec<&Reading> = idx.iter().map(|&i| &accepted[i].reading).collect();
            let batch = to_batch(self.decoder, &rows, with_state, with_error)?;
            let (report, outcome) = itap::validate::validate_batch(batch, self.validation);
            match outcome {
                Ok(valid) if report.verdict.is_storable() => {
                    let counts = ingest.write(&valid).await?;
                    ServeStats::add(&self.stats.stored, counts.inserted);
                    ServeStats::add(&self.stats.duplicates, counts.duplicates);
                    ok.extend(idx);
                }
                _ => {
                    let why = serde_json::to_string(&report.verdict).unwrap_or_default();
                    for r in rows {
                        rejects.push(RejectRecord::new(
                            now,
                            "",
                            format!("{} {}", r.device, r.ts).as_bytes(),
                            "validation.refused",
                            format!("the step's rows were refused by validation: {why}"),
                        ));
                    }
                }
            }
        }
        // Score in arrival order (each device's rows in time order).
        ok.sort_unstable();
        let ok: Vec<&Reading> = ok.iter().map(|&i| &accepted[i].reading).collect();
        let rows: Vec<LiveRow<'_>> = ok
            .iter()
            .map(|r| LiveRow {
                device: &r.device,
                ts: r.ts,
                state: r.state,
                error_code: r.error_code,
                values: &r.values,
            })
            .collect();
        let scores = self.scorer.score(&rows)?;
        ServeStats::add(&self.stats.scored, scores.len() as u64);
        ServeStats::add(
            &self.stats.flagged,
            scores.iter().filter(|s| s.flagged).count() as u64,
        );
        let machine = ok.iter().map(|r| r.state).collect();
        let records = ok
            .iter()
            .zip(scores)
            .map(|(r, s)| ScoreRecord {
                device: r.device.clone(),
                ts_us: r.ts,
                score: s.score,
                flagged: s.flagged,
                family: s.family,
            })
            .collect();
        Ok((records, machine))
    }

    /// Whether the row at the reading's key is stored, with its values or others.
    async fn stored_as(&self, r: &Reading) -> Result<Stored> {
        let q = RangeQuery::between(r.ts, r.ts + 1).devices([r.device.as_str()]);
        let b = self.store.load_range(self.dataset, &q).await?;
        if b.is_empty() {
            return Ok(Stored::Missing);
        }
        let schema = self.decoder.schema();
        let same_values = schema.names().enumerate().all(|(i, name)| {
            let stored = b.signal_by_name(name).map_or(f64::NAN, |c| c[0]);
            let v = r.values[i];
            stored == v || (stored.is_nan() && v.is_nan())
        });
        let same_state = r
            .state
            .is_none_or(|s| b.states().is_none_or(|st| st[0] == s));
        let same_error = r
            .error_code
            .is_none_or(|e| b.error_codes().is_none_or(|c| c[0] == e));
        Ok(if same_values && same_state && same_error {
            Stored::Same
        } else {
            Stored::Other
        })
    }
}

/// Whether two readings of one key carry the same row.
fn same_reading(a: &Reading, b: &Reading) -> bool {
    a.state == b.state
        && a.error_code == b.error_code
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

enum Stored {
    Same,
    Other,
    Missing,
}

/// The readings as a batch of the decoder's schema.
fn to_batch(
    decoder: &Decoder,
    rows: &[&Reading],
    with_state: bool,
    with_error: bool,
) -> Result<Batch> {
    let with_tag = rows.iter().any(|r| r.label.is_some());
    let mut b = BatchBuilder::new(decoder.schema().clone(), with_state, with_error, with_tag);
    for r in rows {
        let d = b.device_code(&r.device);
        let tag = r.label.as_deref().map_or(0, |l| b.tag_code(l));
        b.push(
            r.ts,
            d,
            &r.values,
            r.state.unwrap_or(State::Run),
            r.error_code.unwrap_or(0),
            tag,
        )
        .map_err(|e| Error::Serve(e.to_string()))?;
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_devices_stably() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "x/2", "1", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // Fixed values: a change would move devices between running workers.
        assert_eq!(shard_of("DEV-0001", 2), shard_of("DEV-0001", 2));
        let per: Vec<usize> = (0..4)
            .map(|i| {
                (0..1000)
                    .filter(|d| shard_of(&format!("DEV-{d:04}"), 4) == i)
                    .count()
            })
            .collect();
        assert!(per.iter().all(|&n| (200..300).contains(&n)), "{per:?}");
        assert_eq!(shard_of("", 1), 0);
    }

    #[test]
    fn params_are_checked_by_name() {
        let e = ServeParams {
            batch_rows: 0,
            ..ServeParams::default()
        }
        .check()
        .unwrap_err();
        assert!(e.to_string().contains("batch_rows"), "{e}");
        let e = ServeParams {
            url: "http://x".into(),
            ..ServeParams::default()
        }
        .check()
        .unwrap_err();
        assert!(matches!(e, Error::Url { .. }), "{e}");
        let c = ServeParams {
            shard: Some(Shard { index: 1, count: 2 }),
            ..ServeParams::default()
        }
        .check()
        .unwrap();
        assert_eq!(c.client_id(), "itap-serve-telemetry-1-of-2");
    }
}
