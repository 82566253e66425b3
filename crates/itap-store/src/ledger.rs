//! The ingest ledger (`itap_ingest_ledger`): one entry per ingest.
//!
//! An entry is `running` from [`begin`] until [`complete`] or [`close`]; each chunk's
//! transaction advances it by the chunk's counts ([`advance`]), so it always matches
//! the committed chunks. A process that dies mid-way leaves its entry `running`;
//! the next [`begin`] on the same host marks it `interrupted`. The SQL is written
//! once and spelled per backend by its [`Dialect`].

use serde::{Deserialize, Serialize};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Row};

use crate::backend::{Dialect, on_pool};
use crate::error::{Context, Result};
use crate::ingest::{IngestCounts, IngestSource, OnConflict};
use crate::store::{Store, now_micros};

/// One row of the ingest ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Entry id, increasing.
    pub id: i64,
    /// Dataset.
    pub dataset: String,
    /// Input path.
    pub source_path: String,
    /// Input SHA-256.
    pub sha256: String,
    /// Rows read (as of the last committed chunk).
    pub rows_read: u64,
    /// Rows rejected by validation.
    pub rejected: u64,
    /// Counts as of the last committed chunk.
    pub counts: IngestCounts,
    /// The conflict policy.
    pub on_conflict: String,
    /// Start, UTC microseconds.
    pub started_us: i64,
    /// End, UTC microseconds; `None` while running or when interrupted.
    pub finished_us: Option<i64>,
    /// `running`, `completed`, `failed` or `interrupted` (the process died mid-way).
    pub status: String,
    /// The error of a failed run.
    pub message: Option<String>,
}

impl Store {
    /// The ledger, newest first; only `dataset`'s entries when given.
    ///
    /// # Errors
    /// [`Error::Database`](crate::Error::Database).
    pub async fn ledger(&self, dataset: Option<&str>) -> Result<Vec<LedgerEntry>> {
        let d = self.dialect();
        let (started, finished) = (d.micros("started_at"), d.micros("finished_at"));
        let filter = if dataset.is_some() {
            "WHERE dataset = ?"
        } else {
            ""
        };
        let sql = d.params(&format!(
            "SELECT id, dataset, source_path, sha256, rows_read, rejected, inserted, duplicates, \
             conflicts, updated, on_conflict, {started}, {finished}, status, message \
             FROM itap_ingest_ledger {filter} ORDER BY id DESC"
        ));
        let rows = on_pool!(&self.pool, p => {
            let mut q = sqlx::query(AssertSqlSafe(sql));
            if let Some(d) = dataset {
                q = q.bind(d);
            }
            q.fetch_all(p).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        let u = |i: usize| r.try_get::<i64, _>(i).map(|v| v.max(0) as u64);
                        Ok(LedgerEntry {
                            id: r.try_get(0)?,
                            dataset: r.try_get(1)?,
                            source_path: r.try_get(2)?,
                            sha256: r.try_get(3)?,
                            rows_read: u(4)?,
                            rejected: u(5)?,
                            counts: IngestCounts {
                                offered: 0,
                                inserted: u(6)?,
                                duplicates: u(7)?,
                                conflicts: u(8)?,
                                updated: u(9)?,
                            },
                            on_conflict: r.try_get(10)?,
                            started_us: r.try_get(11)?,
                            finished_us: r.try_get(12)?,
                            status: r.try_get(13)?,
                            message: r.try_get(14)?,
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            })
        })
        .during(|| "reading the ledger".to_owned())?;
        Ok(rows
            .into_iter()
            .map(|mut e| {
                e.counts.offered = e.counts.inserted + e.counts.duplicates + e.counts.conflicts;
                e
            })
            .collect())
    }
}

/// Records an ingest of `source` into `dataset` as `running` and returns its entry's
/// id, first marking this host's `running` entries whose process is gone as
/// `interrupted`.
pub(crate) async fn begin(
    store: &Store,
    dataset: &str,
    source: &IngestSource,
    on_conflict: OnConflict,
) -> Result<i64> {
    mark_interrupted(store).await?;
    let d = store.dialect();
    let sql = d.params(&format!(
        "INSERT INTO itap_ingest_ledger \
         (dataset, source_path, sha256, on_conflict, started_at, status, host, pid) \
         VALUES (?, ?, ?, ?, {}, 'running', ?, ?) RETURNING id",
        d.ts_param
    ));
    let host = hostname();
    let pid = i64::from(std::process::id());
    let now = now_micros();
    on_pool!(&store.pool, p => sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(dataset)
        .bind(&source.path)
        .bind(&source.sha256)
        .bind(on_conflict.as_str())
        .bind(now)
        .bind(&host)
        .bind(pid)
        .fetch_one(p)
        .await)
    .during(|| "recording the ingest in the ledger".to_owned())
}

/// Marks `running` ledger entries of this host whose process no longer exists as
/// `interrupted`. (Only on systems with `/proc`; elsewhere nothing is marked.)
async fn mark_interrupted(store: &Store) -> Result<()> {
    if !std::path::Path::new("/proc/self").exists() {
        return Ok(());
    }
    let d = store.dialect();
    let host = hostname();
    let running: Vec<(i64, i64)> = on_pool!(&store.pool, p => sqlx::query_as(AssertSqlSafe(
        d.params("SELECT id, pid FROM itap_ingest_ledger WHERE status = 'running' AND host = ?")
    ))
    .bind(&host)
    .fetch_all(p)
    .await)
    .during(|| "reading the ledger".to_owned())?;
    for (id, pid) in running {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        on_pool!(&store.pool, p => sqlx::query(AssertSqlSafe(d.params(
            "UPDATE itap_ingest_ledger SET status = 'interrupted', \
             message = 'the process ended before the ingest finished' \
             WHERE id = ? AND status = 'running'"
        )))
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
        .during(|| "updating the ledger".to_owned())?;
    }
    Ok(())
}

/// The statement that advances entry `id` by one chunk's counts. The chunk writers
/// execute it in the chunk's transaction, so that the entry matches the committed
/// chunks. (It returns the query rather than running it: an `async fn` generic over
/// the executor would make the callers' futures fail `Send` with "implementation of
/// `Executor` is not general enough", sqlx issue #3092.)
pub(crate) fn advance<'q, DB: sqlx::Database>(
    d: &Dialect,
    id: i64,
    c: &IngestCounts,
) -> Query<'q, DB, DB::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let sql = d.params(
        "UPDATE itap_ingest_ledger SET rows_read = rows_read + ?, inserted = inserted + ?, \
         duplicates = duplicates + ?, conflicts = conflicts + ?, updated = updated + ? \
         WHERE id = ?",
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(c.offered as i64)
        .bind(c.inserted as i64)
        .bind(c.duplicates as i64)
        .bind(c.conflicts as i64)
        .bind(c.updated as i64)
        .bind(id)
}

/// What a chunk writer was doing when [`advance`] failed.
pub(crate) fn advancing() -> String {
    "advancing the ledger".to_owned()
}

/// Marks entry `id` `completed`, with the input's totals: `rows_read` and
/// `rejected` replace the running count of rows offered.
pub(crate) async fn complete(store: &Store, id: i64, rows_read: u64, rejected: u64) -> Result<()> {
    let sql = store
        .dialect()
        .params("UPDATE itap_ingest_ledger SET rows_read = ?, rejected = ? WHERE id = ?");
    on_pool!(&store.pool, p => sqlx::query(AssertSqlSafe(sql))
        .bind(rows_read as i64)
        .bind(rejected as i64)
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
    .during(|| "closing the ledger entry".to_owned())?;
    close(store, id, "completed", None).await
}

/// Ends entry `id` with `status` (and `message`), stamping the time.
pub(crate) async fn close(
    store: &Store,
    id: i64,
    status: &str,
    message: Option<&str>,
) -> Result<()> {
    let d = store.dialect();
    let sql = d.params(&format!(
        "UPDATE itap_ingest_ledger SET status = ?, message = ?, finished_at = {} WHERE id = ?",
        d.ts_param
    ));
    let now = now_micros();
    on_pool!(&store.pool, p => sqlx::query(AssertSqlSafe(sql))
        .bind(status)
        .bind(message)
        .bind(now)
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
    .during(|| "closing the ledger entry".to_owned())
}

/// This machine's name, for telling its processes from other hosts'.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
