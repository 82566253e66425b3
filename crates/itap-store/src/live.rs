//! Live scoring's tables: `itap_scores` (one row per scored telemetry row),
//! `itap_live_state` (each device's feature state after its last scored row) and
//! `itap_rejects` (messages refused, with the reason).
//!
//! [`Store::commit_live`] writes a step of a live server in one transaction:
//! scores, the states they leave the devices in, the alerts they changed and the
//! messages refused. Rows are stored before (by an [`Ingest`](crate::Ingest)
//! chunk, idempotent), so a process killed between the two finds on restart the
//! states of the last commit, scores the rows after them again and stores each
//! row and each score once.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::alert::{AlertRecord, AlertSql, check_alerts};
use crate::backend::{Dialect, on_pool};
use crate::error::{Context, Error, Result};
use crate::store::{Backend, Store};

/// Rows per multi-row INSERT of scores (6 parameters each, well below both
/// backends' limits on parameters).
const SCORE_ROWS_PER_STMT: usize = 1000;

/// Device states per multi-row upsert (5 parameters each).
const STATE_ROWS_PER_STMT: usize = 100;

/// The longest reject payload stored, in bytes; the rest is cut.
pub const REJECT_PAYLOAD_BYTES: usize = 1024;

/// One scored telemetry row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// Device id.
    pub device: String,
    /// The row's timestamp, UTC microseconds.
    pub ts_us: i64,
    /// The detector's score (finite).
    pub score: f64,
    /// Whether it was above the threshold.
    pub flagged: bool,
    /// For a flagged row, the family behind it.
    pub family: Option<String>,
}

/// A device's feature state after its last scored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateRecord {
    /// Device id.
    pub device: String,
    /// The last row the state has taken, UTC microseconds.
    pub ts_us: i64,
    /// Rows the state has taken.
    pub rows: u64,
    /// The state, as its owner saved it.
    pub state: Vec<u8>,
}

/// A message a live server refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRecord {
    /// When it was received, UTC microseconds.
    pub received_us: i64,
    /// The topic it came on.
    pub topic: String,
    /// Its payload as text (invalid UTF-8 replaced), cut to
    /// [`REJECT_PAYLOAD_BYTES`].
    pub payload: String,
    /// A stable reason code, such as `json.malformed`.
    pub reason: String,
    /// The reason in words.
    pub detail: String,
}

impl RejectRecord {
    /// A reject of `payload` (any bytes), kept as text cut to
    /// [`REJECT_PAYLOAD_BYTES`] with NUL characters (which PostgreSQL cannot
    /// store) replaced.
    pub fn new(
        received_us: i64,
        topic: &str,
        payload: &[u8],
        reason: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        let head = &payload[..payload.len().min(REJECT_PAYLOAD_BYTES)];
        let clean = |s: &str| s.replace('\0', "\u{FFFD}");
        RejectRecord {
            received_us,
            topic: clean(&cut(topic, 256)),
            payload: clean(&String::from_utf8_lossy(head)),
            reason: clean(&cut(&reason.into(), 64)),
            detail: clean(&cut(&detail.into(), 512)),
        }
    }
}

/// `s` cut to at most `n` bytes at a character boundary.
fn cut(s: &str, n: usize) -> String {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// What one step of a live server stores, in one transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveCommit<'a> {
    /// The rows scored.
    pub scores: &'a [ScoreRecord],
    /// The states of the devices those rows moved.
    pub states: &'a [DeviceStateRecord],
    /// Alerts opened, grown or closed (stored idempotently by id).
    pub alerts: &'a [AlertRecord],
    /// Messages refused.
    pub rejects: &'a [RejectRecord],
}

/// Which scores to read: a device, a time window, a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreQuery {
    /// Only this device's scores.
    pub device: Option<String>,
    /// Only rows at or after it, UTC µs.
    pub since_us: Option<i64>,
    /// Only rows before it, UTC µs.
    pub until_us: Option<i64>,
    /// At most this many, the first in order (time, then device).
    pub limit: Option<u32>,
}

/// Statements of the live tables, spelled for one backend.
struct LiveSql {
    score_insert: String,
    state_upsert: String,
    reject_insert: String,
}

impl LiveSql {
    /// The statements with `score_rows` scores and `state_rows` states each.
    fn new(d: &Dialect, score_rows: usize, state_rows: usize) -> Self {
        let ts = d.ts_param;
        let one = format!("(?, ?, {ts}, ?, ?, ?)");
        let values = vec![one.as_str(); score_rows].join(", ");
        let one_state = format!("(?, ?, {ts}, ?, ?)");
        let states = vec![one_state.as_str(); state_rows].join(", ");
        LiveSql {
            score_insert: d.params(&format!(
                "INSERT INTO itap_scores (dataset, device, ts, score, flagged, family) \
                 VALUES {values} ON CONFLICT (dataset, device, ts) DO NOTHING"
            )),
            state_upsert: d.params(&format!(
                "INSERT INTO itap_live_state (dataset, device, ts, row_count, state) \
                 VALUES {states} ON CONFLICT (dataset, device) DO UPDATE SET \
                 ts = excluded.ts, row_count = excluded.row_count, state = excluded.state"
            )),
            reject_insert: d.params(&format!(
                "INSERT INTO itap_rejects (dataset, received_at, topic, payload, reason, detail) \
                 VALUES (?, {ts}, ?, ?, ?, ?)"
            )),
        }
    }
}

impl Store {
    /// Stores one step of a live server in one transaction: `commit`'s scores
    /// (a row's key stored already keeps its score), device states (replacing
    /// the stored ones; a device given twice keeps the last), alerts (by id, as [`Store::put_alerts`]) and rejects.
    ///
    /// # Errors
    /// [`Error::InvalidAlert`] or [`Error::InvalidScore`] (nothing stored) for an
    /// alert or score that cannot be stored; [`Error::NoSuchDataset`];
    /// [`Error::Database`].
    pub async fn commit_live(&self, dataset: &str, commit: &LiveCommit<'_>) -> Result<()> {
        let ds = self.require_dataset(dataset).await?;
        check_alerts(&ds.name, commit.alerts)?;
        if let Some((index, s)) = commit
            .scores
            .iter()
            .enumerate()
            .find(|(_, s)| !s.score.is_finite())
        {
            return Err(Error::InvalidScore {
                dataset: ds.name.clone(),
                index,
                reason: format!("the score of {} at {} is {}", s.device, s.ts_us, s.score),
            });
        }
        let d = self.dialect();
        let begin = match d.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        // One state per device, the last given (one multi-row upsert may not
        // touch a row twice on PostgreSQL).
        let states: Vec<&DeviceStateRecord> = commit
            .states
            .iter()
            .map(|s| (s.device.as_str(), s))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect();
        let full = LiveSql::new(d, SCORE_ROWS_PER_STMT, STATE_ROWS_PER_STMT);
        // The last statement of each kind takes the remainder.
        let last = LiveSql::new(
            d,
            (commit.scores.len() % SCORE_ROWS_PER_STMT).max(1),
            (states.len() % STATE_ROWS_PER_STMT).max(1),
        );
        let alert_sql = AlertSql::new(d);
        let dataset = ds.name.as_str();
        on_pool!(&self.pool, p => async {
            let mut tx = p.begin_with(begin).await?;
            for chunk in commit.scores.chunks(SCORE_ROWS_PER_STMT) {
                let sql = if chunk.len() == SCORE_ROWS_PER_STMT { &full } else { &last };
                let mut q = sqlx::query(AssertSqlSafe(sql.score_insert.clone()));
                for s in chunk {
                    q = q
                        .bind(dataset)
                        .bind(s.device.as_str())
                        .bind(s.ts_us)
                        .bind(s.score + 0.0)
                        .bind(s.flagged)
                        .bind(s.family.as_deref());
                }
                q.execute(&mut *tx).await?;
            }
            for chunk in states.chunks(STATE_ROWS_PER_STMT) {
                let sql = if chunk.len() == STATE_ROWS_PER_STMT { &full } else { &last };
                let mut q = sqlx::query(AssertSqlSafe(sql.state_upsert.clone()));
                for s in chunk {
                    q = q
                        .bind(dataset)
                        .bind(s.device.as_str())
                        .bind(s.ts_us)
                        .bind(i64::try_from(s.rows).unwrap_or(i64::MAX))
                        .bind(s.state.as_slice());
                }
                q.execute(&mut *tx).await?;
            }
            // One by one: a step may carry the same alert twice (opened, then
            // grown), which one multi-row upsert cannot take on PostgreSQL.
            for a in commit.alerts {
                alert_sql
                    .upsert(dataset, std::slice::from_ref(a))
                    .execute(&mut *tx)
                    .await?;
            }
            for r in commit.rejects {
                sqlx::query(AssertSqlSafe(full.reject_insert.clone()))
                    .bind(dataset)
                    .bind(r.received_us)
                    .bind(r.topic.as_str())
                    .bind(r.payload.as_str())
                    .bind(r.reason.as_str())
                    .bind(r.detail.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await)
        .during(|| format!("storing live scores of dataset `{dataset}`"))
    }

    /// Every device's stored feature state in `dataset`, by device id.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::Database`].
    pub async fn live_states(&self, dataset: &str) -> Result<Vec<DeviceStateRecord>> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let sql = d.params(&format!(
            "SELECT device, {} AS ts_us, row_count, state FROM itap_live_state \
             WHERE dataset = ? ORDER BY device COLLATE {}",
            d.micros("ts"),
            d.binary_collation
        ));
        let dataset = ds.name.as_str();
        on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(sql))
        .bind(dataset)
        .fetch_all(p)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(DeviceStateRecord {
                        device: r.try_get(0)?,
                        ts_us: r.try_get(1)?,
                        rows: r.try_get::<i64, _>(2)?.max(0) as u64,
                        state: r.try_get(3)?,
                    })
                })
                .collect()
        }))
        .during(|| format!("reading the live states of dataset `{dataset}`"))
    }

    /// The scores of `dataset` that `q` selects, by time then device.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::Database`].
    pub async fn scores(&self, dataset: &str, q: &ScoreQuery) -> Result<Vec<ScoreRecord>> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let mut conds = vec!["dataset = ?".to_owned()];
        if q.device.is_some() {
            conds.push("device = ?".to_owned());
        }
        if q.since_us.is_some() {
            conds.push(format!("ts >= {}", d.ts_param));
        }
        if q.until_us.is_some() {
            conds.push(format!("ts < {}", d.ts_param));
        }
        let sql = d.params(&format!(
            "SELECT device, {} AS ts_us, score, flagged, family FROM itap_scores WHERE {} \
             ORDER BY ts, device COLLATE {}{}",
            d.micros("ts"),
            conds.join(" AND "),
            d.binary_collation,
            if q.limit.is_some() { " LIMIT ?" } else { "" }
        ));
        let dataset = ds.name.as_str();
        on_pool!(&self.pool, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(dataset);
            if let Some(v) = &q.device {
                query = query.bind(v.as_str());
            }
            if let Some(v) = q.since_us {
                query = query.bind(v);
            }
            if let Some(v) = q.until_us {
                query = query.bind(v);
            }
            if let Some(n) = q.limit {
                query = query.bind(i64::from(n));
            }
            query.fetch_all(p).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok(ScoreRecord {
                            device: r.try_get(0)?,
                            ts_us: r.try_get(1)?,
                            score: r.try_get(2)?,
                            flagged: r.try_get(3)?,
                            family: r.try_get(4)?,
                        })
                    })
                    .collect()
            })
        })
        .during(|| format!("reading scores of dataset `{dataset}`"))
    }

    /// The last `limit` messages refused for `dataset`, newest first.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::Database`].
    pub async fn rejects(&self, dataset: &str, limit: u32) -> Result<Vec<RejectRecord>> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let sql = d.params(&format!(
            "SELECT {} AS received_us, topic, payload, reason, detail FROM itap_rejects \
             WHERE dataset = ? ORDER BY id DESC LIMIT ?",
            d.micros("received_at")
        ));
        let dataset = ds.name.as_str();
        on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(sql))
        .bind(dataset)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|r| {
                    Ok(RejectRecord {
                        received_us: r.try_get(0)?,
                        topic: r.try_get(1)?,
                        payload: r.try_get(2)?,
                        reason: r.try_get(3)?,
                        detail: r.try_get(4)?,
                    })
                })
                .collect()
        }))
        .during(|| format!("reading rejects of dataset `{dataset}`"))
    }

    /// How many messages were refused for `dataset`, and how many rows scored.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::Database`].
    pub async fn live_counts(&self, dataset: &str) -> Result<(u64, u64)> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let sql = d.params(
            "SELECT (SELECT COUNT(*) FROM itap_rejects WHERE dataset = ?), \
             (SELECT COUNT(*) FROM itap_scores WHERE dataset = ?)",
        );
        let dataset = ds.name.as_str();
        let (a, b): (i64, i64) = on_pool!(&self.pool, p => sqlx::query_as(AssertSqlSafe(sql))
            .bind(dataset)
            .bind(dataset)
            .fetch_one(p)
            .await)
        .during(|| format!("counting live rows of dataset `{dataset}`"))?;
        Ok((a.max(0) as u64, b.max(0) as u64))
    }
}
