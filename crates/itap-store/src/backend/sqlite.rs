//! SQLite: an embedded file (WAL journal) or memory; chunks go in as prepared
//! multi-row `INSERT`s inside `BEGIN IMMEDIATE` transactions.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use itap_telemetry::SignalKind;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Row, Sqlite, Transaction};

use super::{BackendOps, Chunk, Columns, Dialect, bad_url, int_value};
use crate::alert::{AlertRecord, AlertSql, AlertsWritten};
use crate::error::{Context, Result};
use crate::ingest::{IngestCounts, OnConflict};
use crate::ledger;
use crate::store::{Backend, Dataset, StoreOptions, quote};

/// SQLite's limit on bound parameters in one statement.
const SQLITE_MAX_BINDS: usize = 32_766;

impl BackendOps for SqlitePool {
    const DIALECT: Dialect = Dialect {
        backend: Backend::Sqlite,
        ts_type: "INTEGER",
        float_type: "REAL",
        int_type: "INTEGER",
        // Timestamps are stored as UTC microseconds already.
        ts_param: "?",
        binary_collation: "BINARY",
        // One B-tree in key order instead of the rowid table plus the unique
        // index, which every insert wrote both of.
        clustered_key: true,
        micros_of: str::to_owned,
        params_of: str::to_owned,
    };

    type ChunkSql = ChunkSql;

    async fn open(opts: &StoreOptions) -> Result<Self> {
        let pool = connect(opts).await?;
        migrate(&pool).await?;
        Ok(pool)
    }

    async fn create_dataset(
        &self,
        name: &str,
        ddl: &[String],
        schema_json: &str,
        created_us: i64,
    ) -> Result<()> {
        let mut tx = self
            .begin_with("BEGIN IMMEDIATE")
            .await
            .during(|| format!("creating dataset `{name}`"))?;
        for stmt in ddl {
            sqlx::query(AssertSqlSafe(stmt.clone()))
                .execute(&mut *tx)
                .await
                .during(|| format!("creating table `{name}`"))?;
        }
        sqlx::query(
            "INSERT INTO itap_datasets (name, table_name, schema_json, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(name)
        .bind(schema_json)
        .bind(created_us)
        .execute(&mut *tx)
        .await
        .during(|| format!("recording dataset `{name}`"))?;
        tx.commit()
            .await
            .during(|| format!("creating dataset `{name}`"))
    }

    fn prepare_chunks(ds: &Dataset) -> ChunkSql {
        ChunkSql::new(ds)
    }

    async fn write_chunk(&self, sql: &ChunkSql, chunk: &Chunk<'_>) -> Result<IngestCounts> {
        let ds = &chunk.dataset.name;
        let during = || format!("writing a chunk into `{ds}`");
        let n = chunk.batch.len() as u64;
        let mut tx = self.begin_with("BEGIN IMMEDIATE").await.during(during)?;
        let counts = match chunk.on_conflict {
            OnConflict::Keep => {
                let inserted = insert_rows(&mut tx, sql, &sql.insert_keep, chunk).await?;
                let conflicts = if inserted < n {
                    stage(&mut tx, sql, chunk).await?;
                    let c = count_conflicts(&mut tx, sql).await?;
                    execute(&mut tx, &sql.clear_stage, during).await?;
                    c
                } else {
                    0
                };
                IngestCounts::kept(n, inserted, conflicts)
            }
            OnConflict::Update => {
                stage(&mut tx, sql, chunk).await?;
                let conflicts = count_conflicts(&mut tx, sql).await?;
                let affected = execute(&mut tx, &sql.upsert_from_stage, during).await?;
                execute(&mut tx, &sql.clear_stage, during).await?;
                IngestCounts::updated(n, affected, conflicts)
            }
        };
        ledger::advance(&Self::DIALECT, chunk.ledger_id, &counts)
            .execute(&mut *tx)
            .await
            .during(ledger::advancing)?;
        tx.commit().await.during(during)?;
        Ok(counts)
    }

    async fn write_alerts(&self, dataset: &str, alerts: &[AlertRecord]) -> Result<AlertsWritten> {
        let sql = AlertSql::new(&Self::DIALECT);
        let during = || format!("storing alerts of dataset `{dataset}`");
        // BEGIN IMMEDIATE: one writer at a time, so each block's "which are stored"
        // holds until its upsert.
        let mut tx = self.begin_with("BEGIN IMMEDIATE").await.during(during)?;
        let mut written = AlertsWritten::default();
        for block in AlertSql::blocks(alerts) {
            let stored: i64 = sql
                .count_stored(dataset, block)
                .fetch_one(&mut *tx)
                .await
                .during(during)?
                .try_get(0)
                .during(during)?;
            let changed = sql
                .upsert(dataset, block)
                .execute(&mut *tx)
                .await
                .during(during)?
                .rows_affected();
            written.count_block(block.len() as u64, stored.max(0) as u64, changed);
        }
        tx.commit().await.during(during)?;
        Ok(written)
    }
}

/// Opens the pool: the file (and its folder) created if missing, or one shared
/// in-memory connection.
async fn connect(opts: &StoreOptions) -> Result<SqlitePool> {
    let url = opts.url.as_str();
    let mut o = SqliteConnectOptions::from_str(url)
        .map_err(|e| bad_url(url, e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(120))
        .foreign_keys(true)
        // The page cache per connection (StoreOptions::sqlite_cache_kib).
        .pragma("cache_size", format!("-{}", opts.sqlite_cache_kib))
        // Statement journals (the pages a multi-row statement may have to undo)
        // in memory instead of a temporary file: a live step's inserts wrote
        // them to disk, 10 % of `itap serve`'s time in a profile.
        .pragma("temp_store", "memory")
        // Reading or writing a whole dataset takes longer than sqlx's 1 s
        // "slow statement" warning by design; ITAP logs its own progress.
        .disable_statement_logging();
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if !memory {
        let path = o.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                bad_url(url, format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
    } else {
        o = o.shared_cache(true);
    }
    SqlitePoolOptions::new()
        // An in-memory database lives as long as its one connection.
        .max_connections(if memory { 1 } else { opts.max_connections })
        .min_connections(if memory { 1 } else { 0 })
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(o)
        .await
        .during(|| format!("opening {url}"))
}

/// Applies pending migrations.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    // sqlx takes no lock for SQLite migrations: two processes opening a new file at
    // once can both try migration 1, and the loser fails on an existing table. Its
    // transaction rolled back, so a retry finds the winner's migration applied and
    // goes on.
    let migrator = sqlx::migrate!("migrations/sqlite");
    let mut attempt = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(%e, attempt, "retrying SQLite migration");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// SQL text prepared once per ingest.
#[derive(Debug)]
pub(crate) struct ChunkSql {
    /// Columns per row: `device_id, ts, state, error_code, anomaly_tag, "sig"…`.
    columns: usize,
    kinds: Vec<SignalKind>,
    /// Rows per multi-row INSERT.
    rows_per_stmt: usize,
    insert_keep: String,
    insert_stage: String,
    create_stage: String,
    clear_stage: String,
    upsert_from_stage: String,
    count_conflicts: String,
}

impl ChunkSql {
    fn new(ds: &Dataset) -> Self {
        let t = quote(&ds.name);
        let stage = quote(&format!("itap_stage_{}", ds.name));
        let cols = Columns::new(ds);
        let list = cols.list();
        let rows_per_stmt = (SQLITE_MAX_BINDS / cols.len()).clamp(1, 4096);
        let values = values(cols.len(), rows_per_stmt);
        ChunkSql {
            columns: cols.len(),
            kinds: ds.schema.signals().iter().map(|s| s.kind).collect(),
            rows_per_stmt,
            insert_keep: format!(
                "INSERT INTO {t} ({list}) VALUES {values} ON CONFLICT (device_id, ts) DO NOTHING"
            ),
            insert_stage: format!("INSERT INTO temp.{stage} ({list}) VALUES {values}"),
            create_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {list} FROM main.{t} WHERE 0"
            ),
            clear_stage: format!("DELETE FROM temp.{stage}"),
            upsert_from_stage: cols
                .upsert(&t, &format!("SELECT {list} FROM temp.{stage} WHERE true")),
            count_conflicts: cols.count_conflicts(&t, &format!("temp.{stage}")),
        }
    }
}

/// `(?,…),(?,…)…`: `rows` tuples of `columns` placeholders.
fn values(columns: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(","));
    let mut s = String::with_capacity(rows * (one.len() + 1));
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&one);
    }
    s
}

/// Runs `sql` (no binds) in `tx`; returns rows affected.
async fn execute(
    tx: &mut Transaction<'_, Sqlite>,
    sql: &str,
    during: impl FnOnce() -> String,
) -> Result<u64> {
    Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(&mut **tx)
        .await
        .during(during)?
        .rows_affected())
}

/// Copies the chunk into the (temporary) staging table.
async fn stage(tx: &mut Transaction<'_, Sqlite>, sql: &ChunkSql, chunk: &Chunk<'_>) -> Result<()> {
    execute(tx, &sql.create_stage, || {
        "creating the staging table".to_owned()
    })
    .await?;
    insert_rows(tx, sql, &sql.insert_stage, chunk).await?;
    Ok(())
}

/// Counts the staged rows whose key is stored with other values.
async fn count_conflicts(tx: &mut Transaction<'_, Sqlite>, sql: &ChunkSql) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.count_conflicts.clone()))
        .fetch_one(&mut **tx)
        .await
        .during(|| "counting conflicting rows".to_owned())?;
    Ok(n.max(0) as u64)
}

/// Multi-row INSERTs of a whole chunk with `full_sql` for full statements (and a
/// shorter statement for the remainder); returns rows affected. Each
/// statement's values are bound while SQLite's worker thread runs the statement
/// before it, rather than binding (every value copied into sqlx's arguments)
/// and running one after the other.
async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    sql: &ChunkSql,
    full_sql: &str,
    chunk: &Chunk<'_>,
) -> Result<u64> {
    let dataset = chunk.dataset.name.as_str();
    let n = chunk.batch.len();
    let full: Arc<str> = Arc::from(full_sql);
    let texts = Texts::new(chunk.batch);
    let mut affected = 0;
    let mut start = 0;
    let mut pending = if n > 0 {
        Some(statement(sql, &full, &texts, chunk, 0)?)
    } else {
        None
    };
    while let Some(q) = pending.take() {
        let next = (start + sql.rows_per_stmt).min(n);
        // `join` polls the statement first, which hands it to the worker, and
        // then binds the next one on this thread while the worker runs it.
        let (done, following) = futures_util::future::join(q.execute(&mut **tx), async {
            if next < n {
                statement(sql, &full, &texts, chunk, next).map(Some)
            } else {
                Ok(None)
            }
        })
        .await;
        affected += done
            .during(|| format!("inserting rows into `{dataset}`"))?
            .rows_affected();
        pending = following?;
        start = next;
    }
    Ok(affected)
}

/// A chunk's texts (device ids, states, tags), each made once and shared by
/// every row that binds it: sqlx copies a bound `&str` into a new string (two
/// allocations, freed on SQLite's worker thread), an `Arc<str>` it only counts.
struct Texts {
    devices: Vec<Arc<str>>,
    states: [Arc<str>; 3],
    tags: Vec<Option<Arc<str>>>,
}

impl Texts {
    fn new(batch: &itap_telemetry::Batch) -> Self {
        Texts {
            devices: batch
                .device_names()
                .iter()
                .map(|d| Arc::from(d.as_str()))
                .collect(),
            states: itap_telemetry::State::ALL.map(|s| Arc::from(s.as_str())),
            // Code 0 is "no fault", stored as NULL (as `Batch::tag_of` says).
            tags: batch
                .tag_names()
                .iter()
                .enumerate()
                .map(|(code, t)| (code != 0).then(|| Arc::from(t.as_str())))
                .collect(),
        }
    }
}

/// The INSERT of the chunk's rows from `start` on (at most a full statement's),
/// its values bound.
fn statement<'q>(
    sql: &ChunkSql,
    full: &Arc<str>,
    texts: &Texts,
    chunk: &'q Chunk<'q>,
    start: usize,
) -> Result<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>> {
    let (ds, batch) = (chunk.dataset, chunk.batch);
    let rows = sql.rows_per_stmt.min(batch.len() - start);
    let text: Arc<str> = if rows == sql.rows_per_stmt {
        full.clone()
    } else {
        // The remainder: the same statement with fewer VALUES tuples.
        let head = full.split(" VALUES ").next().unwrap_or_default();
        let tail = if full.ends_with("DO NOTHING") {
            " ON CONFLICT (device_id, ts) DO NOTHING"
        } else {
            ""
        };
        Arc::from(format!("{head} VALUES {}{tail}", values(sql.columns, rows)))
    };
    let ts = batch.timestamps();
    let devices = batch.device_codes();
    let states = batch.states();
    let errors = batch.error_codes();
    let tags = batch.tag_codes();
    let mut q = sqlx::query(AssertSqlSafe(text));
    for &r in &chunk.rows[start..start + rows] {
        q = q
            .bind(texts.devices[devices[r] as usize].clone())
            .bind(ts[r])
            .bind(states.map(|s| texts.states[s[r] as usize].clone()))
            .bind(errors.map(|e| e[r]))
            .bind(tags.and_then(|t| texts.tags[t[r] as usize].clone()));
        for (k, &j) in chunk.order.iter().enumerate() {
            let v = batch.signal(j)[r];
            q = match sql.kinds[k] {
                SignalKind::Float => q.bind((!v.is_nan()).then_some(v)),
                SignalKind::Int => q.bind(int_value(ds, k, v)?),
            };
        }
    }
    Ok(q)
}
