//! Idempotent, chunked, crash-safe ingestion with a ledger.

use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;

use itap_telemetry::{Batch, Schema, SignalKind, write_timestamp};
use itap_validate::Validated;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::error::{Context, Error, Result};
use crate::store::{Backend, Dataset, Pool, Store, now_micros, on_pool, quote};

/// SQLite's limit on bound parameters in one statement.
const SQLITE_MAX_BINDS: usize = 32_766;

/// What to do with a row whose (device, timestamp) key is already stored with
/// different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep the stored row; count the incoming one as a conflict (default).
    #[default]
    Keep,
    /// Replace the stored row's values with the incoming ones.
    Update,
}

impl OnConflict {
    /// `keep` or `update`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Keep => "keep",
            OnConflict::Update => "update",
        }
    }
}

impl FromStr for OnConflict {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "keep" => Ok(OnConflict::Keep),
            "update" => Ok(OnConflict::Update),
            _ => Err(format!(
                "{s:?} is not a conflict policy: use keep or update"
            )),
        }
    }
}

/// Where ingested rows come from, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSource {
    /// The input file's path as given.
    pub path: String,
    /// The input file's SHA-256, hex.
    pub sha256: String,
}

/// Row counts of an ingest (or of one chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestCounts {
    /// Rows offered to the database.
    pub offered: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows whose key was stored already with the same values.
    pub duplicates: u64,
    /// Rows whose key was stored already with different values.
    pub conflicts: u64,
    /// Stored rows replaced under [`OnConflict::Update`].
    pub updated: u64,
}

impl IngestCounts {
    /// Counts of a chunk of `n` rows under [`OnConflict::Keep`]: `inserted` new rows,
    /// `conflicts` skipped rows that differ; the other skipped rows are duplicates.
    fn kept(n: u64, inserted: u64, conflicts: u64) -> Self {
        IngestCounts {
            offered: n,
            inserted,
            duplicates: n.saturating_sub(inserted + conflicts),
            conflicts,
            updated: 0,
        }
    }

    /// Counts under [`OnConflict::Update`]: the upsert touched `affected` rows, the
    /// `conflicts` differing ones among them updated, the rest inserted.
    fn updated(n: u64, affected: u64, conflicts: u64) -> Self {
        let inserted = affected.saturating_sub(conflicts);
        IngestCounts {
            updated: conflicts,
            ..IngestCounts::kept(n, inserted, conflicts)
        }
    }

    fn add(&mut self, o: &IngestCounts) {
        self.offered += o.offered;
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.updated += o.updated;
    }
}

/// The outcome of a finished ingest, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    /// The ledger entry's id.
    pub ledger_id: i64,
    /// The dataset written.
    pub dataset: String,
    /// The input.
    pub source: IngestSource,
    /// Data rows read from the input.
    pub rows_read: u64,
    /// Rows refused by validation (quarantined), never offered to the database.
    pub rejected: u64,
    /// What the database did with the offered rows.
    pub counts: IngestCounts,
    /// The conflict policy applied.
    pub on_conflict: OnConflict,
}

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

/// An ingest in progress: a ledger entry and the chunks written so far.
///
/// Each [`Ingest::write`] is one transaction that also advances the ledger entry,
/// so a process killed at any point leaves whole chunks and a ledger that matches
/// them; running the same input again inserts exactly the missing rows.
#[derive(Debug)]
pub struct Ingest<'s> {
    store: &'s Store,
    dataset: Dataset,
    ledger_id: i64,
    on_conflict: OnConflict,
    totals: IngestCounts,
    sql: Arc<ChunkSql>,
}

impl Store {
    /// Starts an ingest into `dataset`, creating it with `schema` if needed, and
    /// records it in the ledger as `running`. Earlier `running` entries of this host
    /// whose process is gone are marked `interrupted`.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] when the dataset exists with other signals;
    /// [`Error::DatasetName`]; [`Error::Database`].
    pub async fn begin_ingest(
        &self,
        dataset: &str,
        schema: &Schema,
        source: IngestSource,
        on_conflict: OnConflict,
    ) -> Result<Ingest<'_>> {
        let ds = self.ensure_dataset(dataset, schema).await?;
        self.mark_interrupted().await?;
        let host = hostname();
        let pid = i64::from(std::process::id());
        let now = now_micros();
        let id: i64 = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_scalar(
                    "INSERT INTO itap_ingest_ledger \
                 (dataset, source_path, sha256, on_conflict, started_at, status, host, pid) \
                 VALUES (?, ?, ?, ?, ?, 'running', ?, ?) RETURNING id",
                )
                .bind(&ds.name)
                .bind(&source.path)
                .bind(&source.sha256)
                .bind(on_conflict.as_str())
                .bind(now)
                .bind(&host)
                .bind(pid)
                .fetch_one(p)
                .await
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar(
                    "INSERT INTO itap_ingest_ledger \
                 (dataset, source_path, sha256, on_conflict, started_at, status, host, pid) \
                 VALUES ($1, $2, $3, $4, TIMESTAMPTZ 'epoch' + $5 * INTERVAL '1 microsecond', \
                 'running', $6, $7) RETURNING id",
                )
                .bind(&ds.name)
                .bind(&source.path)
                .bind(&source.sha256)
                .bind(on_conflict.as_str())
                .bind(now)
                .bind(&host)
                .bind(pid)
                .fetch_one(p)
                .await
            }
        }
        .during(|| "recording the ingest in the ledger".to_owned())?;
        let sql = Arc::new(ChunkSql::new(self.backend(), &ds));
        Ok(Ingest {
            store: self,
            dataset: ds,
            ledger_id: id,
            on_conflict,
            totals: IngestCounts::default(),
            sql,
        })
    }

    /// Marks `running` ledger entries of this host whose process no longer exists as
    /// `interrupted`. (Only on systems with `/proc`; elsewhere nothing is marked.)
    async fn mark_interrupted(&self) -> Result<()> {
        if !std::path::Path::new("/proc/self").exists() {
            return Ok(());
        }
        let host = hostname();
        let running: Vec<(i64, i64)> = on_pool!(&self.pool, p => sqlx::query_as(AssertSqlSafe(
            self.sql_params("SELECT id, pid FROM itap_ingest_ledger WHERE status = 'running' AND host = ?")
        ))
        .bind(&host)
        .fetch_all(p)
        .await)
        .during(|| "reading the ledger".to_owned())?;
        for (id, pid) in running {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(self.sql_params(
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

    /// Rewrites `?` placeholders as `$1, $2…` for PostgreSQL.
    pub(crate) fn sql_params(&self, sql: &str) -> String {
        match self.backend() {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => numbered(sql),
        }
    }

    /// The ledger, newest first; only `dataset`'s entries when given.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn ledger(&self, dataset: Option<&str>) -> Result<Vec<LedgerEntry>> {
        let (started, finished) = match self.backend() {
            Backend::Sqlite => ("started_at", "finished_at"),
            Backend::Postgres => (
                "(EXTRACT(EPOCH FROM started_at) * 1000000)::bigint",
                "(EXTRACT(EPOCH FROM finished_at) * 1000000)::bigint",
            ),
        };
        let filter = if dataset.is_some() {
            "WHERE dataset = ?"
        } else {
            ""
        };
        let sql = self.sql_params(&format!(
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

impl Ingest<'_> {
    /// The dataset being written.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The ledger entry's id.
    pub fn ledger_id(&self) -> i64 {
        self.ledger_id
    }

    /// Counts so far.
    pub fn totals(&self) -> IngestCounts {
        self.totals
    }

    /// Writes one validated chunk in one transaction, advancing the ledger entry by
    /// its rows and counts in the same transaction.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] when the chunk's signals are not the dataset's;
    /// [`Error::NotInteger`]; [`Error::Database`].
    pub async fn write(&mut self, chunk: &Validated<Batch>) -> Result<IngestCounts> {
        let batch: &Batch = chunk.get();
        if batch.schema().names().ne(self.dataset.schema.names()) {
            // Same set, other order is fine for the database but not for the
            // prepared column list; keep one order per dataset.
            let mut a: Vec<&str> = batch.schema().names().collect();
            let mut b: Vec<&str> = self.dataset.schema.names().collect();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                return Err(Error::SchemaMismatch {
                    dataset: self.dataset.name.clone(),
                    details: format!(
                        "the chunk has {} where the dataset has {}",
                        a.join(", "),
                        b.join(", ")
                    ),
                });
            }
        }
        let order = column_order(&self.dataset.schema, batch.schema());
        let counts = match &self.store.pool {
            Pool::Sqlite(p) => self.write_sqlite(p, batch, &order).await?,
            Pool::Postgres(p) => self.write_pg(p, batch, &order).await?,
        };
        self.totals.add(&counts);
        Ok(counts)
    }

    async fn write_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        batch: &Batch,
        order: &[usize],
    ) -> Result<IngestCounts> {
        let ds = &self.dataset.name;
        let during = || format!("writing a chunk into `{ds}`");
        let n = batch.len() as u64;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.during(during)?;
        let counts = match self.on_conflict {
            OnConflict::Keep => {
                let inserted = sqlite_insert(
                    &mut tx,
                    &self.sql,
                    &self.sql.insert_keep,
                    batch,
                    order,
                    &self.dataset,
                )
                .await?;
                let conflicts = if inserted < n {
                    self.sqlite_stage(&mut tx, batch, order).await?;
                    let c = count_conflicts_sqlite(&mut tx, &self.sql).await?;
                    sqlx::query(AssertSqlSafe(self.sql.clear_stage.clone()))
                        .execute(&mut *tx)
                        .await
                        .during(during)?;
                    c
                } else {
                    0
                };
                IngestCounts::kept(n, inserted, conflicts)
            }
            OnConflict::Update => {
                self.sqlite_stage(&mut tx, batch, order).await?;
                let conflicts = count_conflicts_sqlite(&mut tx, &self.sql).await?;
                let affected = sqlx::query(AssertSqlSafe(self.sql.upsert_from_stage.clone()))
                    .execute(&mut *tx)
                    .await
                    .during(during)?
                    .rows_affected();
                sqlx::query(AssertSqlSafe(self.sql.clear_stage.clone()))
                    .execute(&mut *tx)
                    .await
                    .during(during)?;
                IngestCounts::updated(n, affected, conflicts)
            }
        };
        let q = sqlx::query(advance_ledger_sql(Backend::Sqlite));
        bind_ledger(q, self.ledger_id, &counts)
            .execute(&mut *tx)
            .await
            .during(|| "advancing the ledger".to_owned())?;
        tx.commit().await.during(during)?;
        Ok(counts)
    }

    async fn sqlite_stage(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        batch: &Batch,
        order: &[usize],
    ) -> Result<()> {
        sqlx::query(AssertSqlSafe(self.sql.create_stage.clone()))
            .execute(&mut **tx)
            .await
            .during(|| "creating the staging table".to_owned())?;
        sqlite_insert(
            tx,
            &self.sql,
            &self.sql.insert_stage,
            batch,
            order,
            &self.dataset,
        )
        .await?;
        Ok(())
    }

    async fn write_pg(
        &self,
        pool: &sqlx::PgPool,
        batch: &Batch,
        order: &[usize],
    ) -> Result<IngestCounts> {
        let ds = &self.dataset.name;
        let during = || format!("writing a chunk into `{ds}`");
        let n = batch.len() as u64;
        let mut tx = pool.begin().await.during(during)?;
        let text = copy_text(batch, order, &self.dataset)?;
        // Fast path: COPY straight into the table, inside a savepoint. It succeeds
        // when no key of the chunk is stored yet (a first ingest), and fails on the
        // unique index otherwise; then the savepoint is rolled back and the chunk
        // goes through the staging table.
        {
            let mut direct = sqlx::Connection::begin(&mut *tx).await.during(during)?;
            if copy_in(&mut direct, &self.sql.copy_target, &text)
                .await
                .is_ok()
            {
                direct.commit().await.during(during)?;
                let counts = IngestCounts {
                    offered: n,
                    inserted: n,
                    ..IngestCounts::default()
                };
                let q = sqlx::query(advance_ledger_sql(Backend::Postgres));
                bind_ledger(q, self.ledger_id, &counts)
                    .execute(&mut *tx)
                    .await
                    .during(|| "advancing the ledger".to_owned())?;
                tx.commit().await.during(during)?;
                return Ok(counts);
            }
            direct.rollback().await.during(during)?;
        }
        sqlx::query(AssertSqlSafe(self.sql.create_stage.clone()))
            .execute(&mut *tx)
            .await
            .during(|| "creating the staging table".to_owned())?;
        copy_in(&mut tx, &self.sql.copy_stage, &text)
            .await
            .during(|| "copying rows into the staging table".to_owned())?;
        let counts = match self.on_conflict {
            OnConflict::Keep => {
                let inserted = sqlx::query(AssertSqlSafe(self.sql.insert_from_stage.clone()))
                    .execute(&mut *tx)
                    .await
                    .during(during)?
                    .rows_affected();
                let conflicts = if inserted < n {
                    count_conflicts_pg(&mut tx, &self.sql).await?
                } else {
                    0
                };
                IngestCounts::kept(n, inserted, conflicts)
            }
            OnConflict::Update => {
                let conflicts = count_conflicts_pg(&mut tx, &self.sql).await?;
                let affected = sqlx::query(AssertSqlSafe(self.sql.upsert_from_stage.clone()))
                    .execute(&mut *tx)
                    .await
                    .during(during)?
                    .rows_affected();
                IngestCounts::updated(n, affected, conflicts)
            }
        };
        sqlx::query(AssertSqlSafe(self.sql.clear_stage.clone()))
            .execute(&mut *tx)
            .await
            .during(during)?;
        let q = sqlx::query(advance_ledger_sql(Backend::Postgres));
        bind_ledger(q, self.ledger_id, &counts)
            .execute(&mut *tx)
            .await
            .during(|| "advancing the ledger".to_owned())?;
        tx.commit().await.during(during)?;
        Ok(counts)
    }

    /// Marks the ingest `completed` and returns its report. `rows_read` and
    /// `rejected` are the input's totals (validation's row count and the rows it
    /// quarantined); they replace the running count of rows offered.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn finish(
        self,
        source: IngestSource,
        rows_read: u64,
        rejected: u64,
    ) -> Result<IngestReport> {
        let sql = match self.store.backend() {
            Backend::Sqlite => {
                "UPDATE itap_ingest_ledger SET rows_read = ?, rejected = ? WHERE id = ?"
            }
            Backend::Postgres => {
                "UPDATE itap_ingest_ledger SET rows_read = $1, rejected = $2 WHERE id = $3"
            }
        };
        on_pool!(&self.store.pool, p => sqlx::query(sql)
            .bind(rows_read as i64)
            .bind(rejected as i64)
            .bind(self.ledger_id)
            .execute(p)
            .await
            .map(|_| ()))
        .during(|| "closing the ledger entry".to_owned())?;
        self.close("completed", None).await?;
        Ok(IngestReport {
            ledger_id: self.ledger_id,
            dataset: self.dataset.name.clone(),
            source,
            rows_read,
            rejected,
            counts: self.totals,
            on_conflict: self.on_conflict,
        })
    }

    /// Marks the ingest `failed` with `message`. Chunks already committed stay.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn fail(self, message: &str) -> Result<()> {
        self.close("failed", Some(message)).await
    }

    async fn close(&self, status: &str, message: Option<&str>) -> Result<()> {
        let now = now_micros();
        let sql = match self.store.backend() {
            Backend::Sqlite => {
                "UPDATE itap_ingest_ledger SET status = ?, message = ?, finished_at = ? WHERE id = ?"
            }
            Backend::Postgres => {
                "UPDATE itap_ingest_ledger SET status = $1, message = $2, \
                 finished_at = TIMESTAMPTZ 'epoch' + $3 * INTERVAL '1 microsecond' WHERE id = $4"
            }
        };
        on_pool!(&self.store.pool, p => sqlx::query(sql)
            .bind(status)
            .bind(message)
            .bind(now)
            .bind(self.ledger_id)
            .execute(p)
            .await
            .map(|_| ()))
        .during(|| "closing the ledger entry".to_owned())?;
        Ok(())
    }
}

/// The ledger update that advances an entry by one chunk.
fn advance_ledger_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "UPDATE itap_ingest_ledger SET rows_read = rows_read + ?, inserted = inserted + ?, \
             duplicates = duplicates + ?, conflicts = conflicts + ?, updated = updated + ? \
             WHERE id = ?"
        }
        Backend::Postgres => {
            "UPDATE itap_ingest_ledger SET rows_read = rows_read + $1, inserted = inserted + $2, \
             duplicates = duplicates + $3, conflicts = conflicts + $4, updated = updated + $5 \
             WHERE id = $6"
        }
    }
}

/// Binds the values of [`advance_ledger_sql`].
fn bind_ledger<'q, DB: sqlx::Database>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    id: i64,
    c: &IngestCounts,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(c.offered as i64)
        .bind(c.inserted as i64)
        .bind(c.duplicates as i64)
        .bind(c.conflicts as i64)
        .bind(c.updated as i64)
        .bind(id)
}

/// For each dataset signal, the index of the same signal in the batch.
fn column_order(dataset: &Schema, batch: &Schema) -> Vec<usize> {
    dataset
        .names()
        .map(|n| batch.index_of(n).unwrap_or(usize::MAX))
        .collect()
}

/// SQL text prepared once per ingest.
#[derive(Debug)]
struct ChunkSql {
    /// Column list: `device_id, ts, state, error_code, anomaly_tag, "sig"…`.
    columns: usize,
    kinds: Vec<SignalKind>,
    /// SQLite: rows per multi-row INSERT.
    rows_per_stmt: usize,
    insert_keep: String,
    insert_stage: String,
    create_stage: String,
    clear_stage: String,
    copy_stage: String,
    copy_target: String,
    insert_from_stage: String,
    upsert_from_stage: String,
    count_conflicts: String,
}

impl ChunkSql {
    fn new(backend: Backend, ds: &Dataset) -> Self {
        let t = quote(&ds.name);
        let stage = quote(&format!("itap_stage_{}", ds.name));
        let mut cols = vec![
            "device_id".to_owned(),
            "ts".to_owned(),
            "state".to_owned(),
            "error_code".to_owned(),
            "anomaly_tag".to_owned(),
        ];
        cols.extend(ds.schema.names().map(quote));
        let list = cols.join(", ");
        let value_cols: Vec<&String> = cols
            .iter()
            .filter(|c| *c != "device_id" && *c != "ts")
            .collect();
        let differs = |a: &str, b: &str| {
            value_cols
                .iter()
                .map(|c| format!("{a}.{c} IS DISTINCT FROM {b}.{c}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let set = value_cols
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows_per_stmt = (SQLITE_MAX_BINDS / cols.len()).clamp(1, 4096);
        let values = |rows: usize| {
            let one = format!("({})", vec!["?"; cols.len()].join(","));
            let mut s = String::with_capacity(rows * (one.len() + 1));
            for i in 0..rows {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&one);
            }
            s
        };
        let (create_stage, clear_stage, source) = match backend {
            Backend::Sqlite => (
                format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {list} FROM main.{t} WHERE 0"
                ),
                format!("DELETE FROM temp.{stage}"),
                format!("SELECT {list} FROM temp.{stage} WHERE true"),
            ),
            Backend::Postgres => (
                format!("CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {t})"),
                format!("TRUNCATE {stage}"),
                // One row per key, or ON CONFLICT DO UPDATE would touch a row twice.
                format!(
                    "SELECT DISTINCT ON (device_id, ts) {list} FROM {stage} ORDER BY device_id, ts"
                ),
            ),
        };
        let stage_ref = match backend {
            Backend::Sqlite => format!("temp.{stage}"),
            Backend::Postgres => stage.clone(),
        };
        ChunkSql {
            columns: cols.len(),
            kinds: ds.schema.signals().iter().map(|s| s.kind).collect(),
            rows_per_stmt,
            insert_keep: format!(
                "INSERT INTO {t} ({list}) VALUES {} ON CONFLICT (device_id, ts) DO NOTHING",
                values(rows_per_stmt)
            ),
            insert_stage: format!(
                "INSERT INTO {stage_ref} ({list}) VALUES {}",
                values(rows_per_stmt)
            ),
            create_stage,
            clear_stage,
            copy_stage: format!("COPY {stage} ({list}) FROM STDIN WITH (FORMAT csv)"),
            copy_target: format!("COPY {t} ({list}) FROM STDIN WITH (FORMAT csv)"),
            insert_from_stage: format!(
                "INSERT INTO {t} ({list}) SELECT {list} FROM {stage_ref} ON CONFLICT (device_id, ts) DO NOTHING"
            ),
            upsert_from_stage: format!(
                "INSERT INTO {t} AS cur ({list}) {source} ON CONFLICT (device_id, ts) DO UPDATE SET {set} WHERE {}",
                differs("cur", "excluded")
            ),
            count_conflicts: format!(
                "SELECT COUNT(*) FROM {stage_ref} s JOIN {t} cur ON cur.device_id = s.device_id AND cur.ts = s.ts WHERE {}",
                differs("s", "cur")
            ),
        }
    }
}

/// A stored value for an `int` signal, refusing fractions.
fn int_value(ds: &Dataset, k: usize, v: f64) -> Result<Option<i64>> {
    if v.is_nan() {
        Ok(None)
    } else if v.fract() == 0.0 && v.abs() < 9.0e18 {
        Ok(Some(v as i64))
    } else {
        Err(Error::NotInteger {
            dataset: ds.name.clone(),
            column: ds.schema.signals()[k].name.clone(),
            value: v,
        })
    }
}

/// Multi-row INSERTs of a whole batch with `full_sql` for full statements (and a
/// shorter statement for the remainder); returns rows affected.
async fn sqlite_insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sql: &ChunkSql,
    full_sql: &str,
    batch: &Batch,
    order: &[usize],
    ds: &Dataset,
) -> Result<u64> {
    let dataset = ds.name.as_str();
    let n = batch.len();
    let ts = batch.timestamps();
    let states = batch.states();
    let errors = batch.error_codes();
    let signals: Vec<&[f64]> = order.iter().map(|&j| batch.signal(j)).collect();
    let mut affected = 0;
    let mut start = 0;
    let full: Arc<str> = Arc::from(full_sql);
    while start < n {
        let rows = sql.rows_per_stmt.min(n - start);
        let text: Arc<str> = if rows == sql.rows_per_stmt {
            full.clone()
        } else {
            // The remainder: the same statement with fewer VALUES tuples.
            let one = format!("({})", vec!["?"; sql.columns].join(","));
            let head = full_sql.split(" VALUES ").next().unwrap_or_default();
            let tail = if full_sql.ends_with("DO NOTHING") {
                " ON CONFLICT (device_id, ts) DO NOTHING"
            } else {
                ""
            };
            Arc::from(format!("{head} VALUES {}{tail}", vec![one; rows].join(",")))
        };
        let mut q = sqlx::query(AssertSqlSafe(text));
        for r in start..start + rows {
            q = q
                .bind(batch.device_of(r))
                .bind(ts[r])
                .bind(states.map(|s| s[r].as_str()))
                .bind(errors.map(|e| e[r]))
                .bind(batch.tag_of(r));
            for (k, col) in signals.iter().enumerate() {
                let v = col[r];
                q = match sql.kinds[k] {
                    SignalKind::Float => q.bind((!v.is_nan()).then_some(v)),
                    SignalKind::Int => q.bind(int_value(ds, k, v)?),
                };
            }
        }
        affected += q
            .execute(&mut **tx)
            .await
            .during(|| format!("inserting rows into `{dataset}`"))?
            .rows_affected();
        start += rows;
    }
    Ok(affected)
}

/// Runs `COPY … FROM STDIN` with `text` on a PostgreSQL connection.
async fn copy_in(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    text: &[u8],
) -> std::result::Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(text).await?;
    copy.finish().await
}

async fn count_conflicts_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    sql: &ChunkSql,
) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.count_conflicts.clone()))
        .fetch_one(&mut **tx)
        .await
        .during(|| "counting conflicting rows".to_owned())?;
    Ok(n.max(0) as u64)
}

async fn count_conflicts_pg(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    sql: &ChunkSql,
) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.count_conflicts.clone()))
        .fetch_one(&mut **tx)
        .await
        .during(|| "counting conflicting rows".to_owned())?;
    Ok(n.max(0) as u64)
}

/// The chunk as CSV text for PostgreSQL's COPY (empty unquoted field = NULL).
fn copy_text(batch: &Batch, order: &[usize], ds: &Dataset) -> Result<Vec<u8>> {
    let mut out = String::with_capacity(batch.len() * 120);
    let mut ryu_buf = ryu::Buffer::new();
    let states = batch.states();
    let errors = batch.error_codes();
    let kinds: Vec<SignalKind> = ds.schema.signals().iter().map(|s| s.kind).collect();
    for r in 0..batch.len() {
        push_csv_text(&mut out, batch.device_of(r));
        out.push(',');
        write_timestamp(&mut out, batch.timestamps()[r]);
        out.push(',');
        if let Some(s) = states {
            out.push_str(s[r].as_str());
        }
        out.push(',');
        if let Some(e) = errors {
            let _ = write!(out, "{}", e[r]);
        }
        out.push(',');
        if let Some(t) = batch.tag_of(r) {
            push_csv_text(&mut out, t);
        }
        for (k, &j) in order.iter().enumerate() {
            out.push(',');
            let v = batch.signal(j)[r];
            match kinds[k] {
                SignalKind::Int => {
                    if let Some(i) = int_value(ds, k, v)? {
                        let _ = write!(out, "{i}");
                    }
                }
                SignalKind::Float => push_float(&mut out, &mut ryu_buf, v),
            }
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// A CSV field, quoted when it holds a delimiter, quote or line break (or is empty,
/// so that an empty string is not read as NULL).
fn push_csv_text(out: &mut String, s: &str) {
    if s.is_empty() || s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Shortest round-trip float text, with PostgreSQL's spellings for non-finite
/// values; nothing (NULL) for NaN.
fn push_float(out: &mut String, buf: &mut ryu::Buffer, v: f64) {
    if v.is_nan() {
    } else if v == f64::INFINITY {
        out.push_str("Infinity");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Infinity");
    } else {
        out.push_str(buf.format_finite(v));
    }
}

/// `?` placeholders to `$1, $2, …` (outside quotes; ITAP's SQL has no `?` in strings).
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            let _ = write!(out, "${n}");
        } else {
            out.push(c);
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }

    #[test]
    fn csv_text_quotes_what_it_must() {
        let mut s = String::new();
        push_csv_text(&mut s, "DEV-1");
        push_csv_text(&mut s, "a,\"b\"");
        push_csv_text(&mut s, "");
        assert_eq!(s, "DEV-1\"a,\"\"b\"\"\"\"\"");
    }

    #[test]
    fn policies_parse() {
        assert_eq!("update".parse::<OnConflict>().unwrap(), OnConflict::Update);
        assert!("replace".parse::<OnConflict>().is_err());
    }
}
