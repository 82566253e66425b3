//! SQLite: an embedded file (WAL journal) or memory; chunks go in as prepared
//! multi-row `INSERT`s inside `BEGIN IMMEDIATE` transactions.

use std::str::FromStr;
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
                let inserted = insert_rows(&mut tx, sql, Target::Table, chunk).await?;
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

/// SQL text made once per ingest: the statements that move staged rows, and
/// the INSERTs' heads, which [`ChunkSql::insert`] completes for a chunk.
#[derive(Debug)]
pub(crate) struct ChunkSql {
    /// The dataset's signal kinds, in the order of its columns.
    kinds: Vec<SignalKind>,
    /// Placeholders per row.
    columns: usize,
    /// Rows per full INSERT (as many as SQLite's limit of bound values
    /// allows, at most 4,096).
    rows_per_stmt: usize,
    /// `INSERT INTO "t" (device_id, ts, state, error_code, anomaly_tag,
    /// "sig"…) VALUES `
    into_table: String,
    /// The same into the staging table.
    into_stage: String,
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
        ChunkSql {
            kinds: ds.schema.signals().iter().map(|s| s.kind).collect(),
            columns: cols.len(),
            rows_per_stmt: (SQLITE_MAX_BINDS / cols.len()).clamp(1, 4096),
            into_table: format!("INSERT INTO {t} ({list}) VALUES "),
            into_stage: format!("INSERT INTO temp.{stage} ({list}) VALUES "),
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

/// Where [`insert_rows`] writes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The dataset's table; a row whose key is stored is left out.
    Table,
    /// The staging table.
    Stage,
}

impl ChunkSql {
    /// The INSERT of `rows` rows `into`: `(?,…),(?,…)…`, one tuple of
    /// [`ChunkSql::columns`] placeholders a row.
    fn insert(&self, into: Target, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns].join(","));
        let head = match into {
            Target::Table => &self.into_table,
            Target::Stage => &self.into_stage,
        };
        let mut s = String::with_capacity(head.len() + rows * (one.len() + 1) + 48);
        s.push_str(head);
        for i in 0..rows {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&one);
        }
        if let Target::Table = into {
            s.push_str(" ON CONFLICT (device_id, ts) DO NOTHING");
        }
        s
    }
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
    insert_rows(tx, sql, Target::Stage, chunk).await?;
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

/// Inserts a whole chunk `into` the table or the staging table, in
/// multi-row INSERTs of [`ChunkSql::rows_per_stmt`] rows (and one for the
/// rest); returns rows affected.
///
/// The values are bound and the statements stepped directly on the
/// transaction's connection (rusqlite on sqlx's own connection handle,
/// locked for the call), not sent through sqlx: sqlx copies every value into
/// its arguments and hands them to its worker thread, which binds them one by
/// one (looking up each parameter's name) and clears all the bindings after
/// each statement: about a sixth of the ingest's processor time (measured
/// with `ingest_scale --by-device`, docs/storage.md). The statements, the
/// transaction (sqlx's `BEGIN IMMEDIATE … COMMIT`) and so the crash
/// guarantees are unchanged. This runs on the calling thread and does not
/// yield while the chunk is written (an ingest's chunk: well under a second).
#[allow(unsafe_code)]
async fn insert_rows(
    tx: &mut Transaction<'_, Sqlite>,
    sql: &ChunkSql,
    into: Target,
    chunk: &Chunk<'_>,
) -> Result<u64> {
    let dataset = chunk.dataset.name.as_str();
    let during = || format!("inserting rows into `{dataset}`");
    let mut handle = tx.lock_handle().await.during(during)?;
    // SAFETY: the handle is sqlx's open connection, locked for as long as
    // `handle` lives (sqlx's worker runs nothing on it meanwhile), and `conn`
    // is dropped before `handle`; a connection made from a handle neither
    // closes it nor changes its settings when dropped (it only finalizes the
    // statements it prepared).
    let conn = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
        .during(during)?;
    let affected = bind_and_step(&conn, sql, into, chunk).during(during);
    drop(conn);
    drop(handle);
    affected?
}

/// [`insert_rows`]' statements on `conn`: each full one prepared once, bound
/// and stepped again for each [`ChunkSql::rows_per_stmt`] rows; the
/// statement for the rest prepared for them. The inner error: a value that
/// does not fit its column (nothing is left half-written: the caller's
/// transaction is rolled back).
fn bind_and_step(
    conn: &rusqlite::Connection,
    sql: &ChunkSql,
    into: Target,
    chunk: &Chunk<'_>,
) -> rusqlite::Result<Result<u64>> {
    let (ds, batch) = (chunk.dataset, chunk.batch);
    let ts = batch.timestamps();
    let states = batch.states();
    let errors = batch.error_codes();
    let signals: Vec<&[f64]> = chunk.order.iter().map(|&j| batch.signal(j)).collect();
    let mut affected = 0u64;
    let mut full = None;
    for rows in chunk.rows.chunks(sql.rows_per_stmt) {
        let mut rest;
        let stmt = if rows.len() == sql.rows_per_stmt {
            match &mut full {
                Some(stmt) => stmt,
                None => full.insert(conn.prepare(&sql.insert(into, rows.len()))?),
            }
        } else {
            rest = conn.prepare(&sql.insert(into, rows.len()))?;
            &mut rest
        };
        for (i, &r) in rows.iter().enumerate() {
            let at = i * sql.columns;
            stmt.raw_bind_parameter(at + 1, batch.device_of(r))?;
            stmt.raw_bind_parameter(at + 2, ts[r])?;
            stmt.raw_bind_parameter(at + 3, states.map(|s| s[r].as_str()))?;
            stmt.raw_bind_parameter(at + 4, errors.map(|e| e[r]))?;
            // "No fault" is stored as NULL.
            stmt.raw_bind_parameter(at + 5, batch.tag_of(r))?;
            for (k, column) in signals.iter().enumerate() {
                let v = column[r];
                let at = at + 6 + k;
                match sql.kinds[k] {
                    SignalKind::Float => stmt.raw_bind_parameter(at, (!v.is_nan()).then_some(v))?,
                    SignalKind::Int => match int_value(ds, k, v) {
                        Ok(i) => stmt.raw_bind_parameter(at, i)?,
                        Err(e) => return Ok(Err(e)),
                    },
                }
            }
        }
        affected += stmt.raw_execute()? as u64;
    }
    Ok(Ok(affected))
}
