//! PostgreSQL: a server, optionally one schema of it; chunks go in with `COPY`,
//! straight into the table when none of their keys is stored yet, else through a
//! temporary staging table and `INSERT … SELECT … ON CONFLICT`.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use itap_telemetry::{Batch, SignalKind, write_timestamp};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Postgres, Row, Transaction};

use super::{BackendOps, Chunk, Columns, Dialect, bad_url, int_value};
use crate::alert::{AlertRecord, AlertSql, AlertsWritten};
use crate::error::{Context, Error, Result};
use crate::ingest::{IngestCounts, OnConflict};
use crate::ledger;
use crate::store::{Backend, Dataset, StoreOptions, quote};

impl BackendOps for PgPool {
    const DIALECT: Dialect = Dialect {
        backend: Backend::Postgres,
        ts_type: "TIMESTAMPTZ",
        float_type: "DOUBLE PRECISION",
        int_type: "BIGINT",
        ts_param: "(TIMESTAMPTZ 'epoch' + ? * INTERVAL '1 microsecond')",
        binary_collation: "\"C\"",
        // A heap and a unique index: PostgreSQL has no index-organised table.
        clustered_key: false,
        micros_of: micros,
        params_of: numbered,
    };

    type ChunkSql = ChunkSql;

    async fn open(opts: &StoreOptions) -> Result<Self> {
        let pool = connect(opts).await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
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
            .begin()
            .await
            .during(|| format!("creating dataset `{name}`"))?;
        // Serialise concurrent creators of the same dataset.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(name)
            .execute(&mut *tx)
            .await
            .during(|| format!("locking dataset `{name}`"))?;
        for stmt in ddl {
            sqlx::query(AssertSqlSafe(stmt.clone()))
                .execute(&mut *tx)
                .await
                .during(|| format!("creating table `{name}`"))?;
        }
        sqlx::query(
            "INSERT INTO itap_datasets (name, table_name, schema_json, created_at) \
             VALUES ($1, $2, $3, TIMESTAMPTZ 'epoch' + $4 * INTERVAL '1 microsecond') \
             ON CONFLICT (name) DO NOTHING",
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
        let mut tx = self.begin().await.during(during)?;
        let text = copy_text(chunk.batch, chunk.rows, chunk.order, chunk.dataset)?;
        let counts = if copy_direct(&mut tx, sql, &text, during).await? {
            IngestCounts {
                offered: n,
                inserted: n,
                ..IngestCounts::default()
            }
        } else {
            write_staged(&mut tx, sql, &text, n, chunk.on_conflict, during).await?
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
        let mut tx = self.begin().await.during(during)?;
        // One writer of a dataset's alerts at a time: each block's "which are stored"
        // holds until its upsert, and two calls with the same ids in different
        // orders cannot deadlock. (The two-key lock space is not the one
        // `create_dataset` locks in.)
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('itap_alerts'), hashtext($1))")
            .bind(dataset)
            .execute(&mut *tx)
            .await
            .during(|| format!("locking the alerts of dataset `{dataset}`"))?;
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

/// Opens the pool, first creating `opts.pg_schema` when one is given and making it
/// the connections' `search_path`.
async fn connect(opts: &StoreOptions) -> Result<PgPool> {
    let url = opts.url.as_str();
    let mut o = PgConnectOptions::from_str(url).map_err(|e| bad_url(url, e.to_string()))?;
    if let Some(schema) = &opts.pg_schema {
        check_schema_name(schema)?;
        // Create the schema on a plain connection first.
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(o.clone())
            .await
            .during(|| format!("connecting to {url}"))?;
        let created = sqlx::query(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote(schema)
        )))
        .execute(&admin)
        .await;
        if let Err(e) = created {
            // `IF NOT EXISTS` is not safe against a concurrent creator: the
            // loser of that race gets a unique violation on the catalogue,
            // and the schema is there all the same.
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                    .bind(schema.as_str())
                    .fetch_optional(&admin)
                    .await
                    .unwrap_or(None);
            if exists.is_none() {
                admin.close().await;
                return Err(e).during(|| format!("creating schema {schema}"));
            }
        }
        admin.close().await;
        o = o.options([("search_path", schema.as_str())]);
    }
    let o = o.disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(o)
        .await
        .during(|| format!("connecting to {url}"))
}

/// Checks a PostgreSQL schema name: a plain lowercase identifier.
fn check_schema_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
        && !name.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::DatasetName {
            name: name.to_owned(),
            reason: "a schema name must be 1-63 lowercase letters, digits or `_`, not starting with `pg_`",
        })
    }
}

/// `expr` (a `timestamptz`) as UTC microseconds.
fn micros(expr: &str) -> String {
    format!("(EXTRACT(EPOCH FROM {expr}) * 1000000)::bigint")
}

/// `?` placeholders to `$1, $2, …` (outside quotes; ITAP's SQL has no `?` in strings).
fn numbered(sql: &str) -> String {
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

/// SQL text prepared once per ingest.
#[derive(Debug)]
pub(crate) struct ChunkSql {
    create_stage: String,
    clear_stage: String,
    copy_stage: String,
    copy_target: String,
    insert_from_stage: String,
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
            create_stage: format!("CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {t})"),
            clear_stage: format!("TRUNCATE {stage}"),
            copy_stage: format!("COPY {stage} ({list}) FROM STDIN WITH (FORMAT csv)"),
            copy_target: format!("COPY {t} ({list}) FROM STDIN WITH (FORMAT csv)"),
            insert_from_stage: format!(
                "INSERT INTO {t} ({list}) SELECT {list} FROM {stage} ON CONFLICT (device_id, ts) DO NOTHING"
            ),
            upsert_from_stage: cols.upsert(
                &t,
                // One row per key, or ON CONFLICT DO UPDATE would touch a row twice.
                &format!(
                    "SELECT DISTINCT ON (device_id, ts) {list} FROM {stage} ORDER BY device_id, ts"
                ),
            ),
            count_conflicts: cols.count_conflicts(&t, &stage),
        }
    }
}

/// The fast path: `COPY` straight into the table, inside a savepoint. It succeeds
/// when no key of the chunk is stored yet (a first ingest), and fails on the unique
/// index otherwise; then the savepoint is rolled back and this returns `false`, for
/// the chunk to go through the staging table.
async fn copy_direct(
    tx: &mut Transaction<'_, Postgres>,
    sql: &ChunkSql,
    text: &[u8],
    during: impl Fn() -> String,
) -> Result<bool> {
    let mut direct = sqlx::Connection::begin(&mut **tx).await.during(&during)?;
    if copy_in(&mut direct, &sql.copy_target, text).await.is_ok() {
        direct.commit().await.during(&during)?;
        Ok(true)
    } else {
        direct.rollback().await.during(&during)?;
        Ok(false)
    }
}

/// The slow path: `COPY` into the staging table, then insert (or upsert) from it
/// and count the rows whose key is stored with other values.
async fn write_staged(
    tx: &mut Transaction<'_, Postgres>,
    sql: &ChunkSql,
    text: &[u8],
    n: u64,
    on_conflict: OnConflict,
    during: impl Fn() -> String,
) -> Result<IngestCounts> {
    execute(tx, &sql.create_stage, || {
        "creating the staging table".to_owned()
    })
    .await?;
    copy_in(tx, &sql.copy_stage, text)
        .await
        .during(|| "copying rows into the staging table".to_owned())?;
    let counts = match on_conflict {
        OnConflict::Keep => {
            let inserted = execute(tx, &sql.insert_from_stage, &during).await?;
            let conflicts = if inserted < n {
                count_conflicts(tx, sql).await?
            } else {
                0
            };
            IngestCounts::kept(n, inserted, conflicts)
        }
        OnConflict::Update => {
            let conflicts = count_conflicts(tx, sql).await?;
            let affected = execute(tx, &sql.upsert_from_stage, &during).await?;
            IngestCounts::updated(n, affected, conflicts)
        }
    };
    execute(tx, &sql.clear_stage, &during).await?;
    Ok(counts)
}

/// Runs `sql` (no binds) in `tx`; returns rows affected.
async fn execute(
    tx: &mut Transaction<'_, Postgres>,
    sql: &str,
    during: impl FnOnce() -> String,
) -> Result<u64> {
    Ok(sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(&mut **tx)
        .await
        .during(during)?
        .rows_affected())
}

/// Counts the staged rows whose key is stored with other values.
async fn count_conflicts(tx: &mut Transaction<'_, Postgres>, sql: &ChunkSql) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.count_conflicts.clone()))
        .fetch_one(&mut **tx)
        .await
        .during(|| "counting conflicting rows".to_owned())?;
    Ok(n.max(0) as u64)
}

/// Runs `COPY … FROM STDIN` with `text` on a PostgreSQL connection.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    text: &[u8],
) -> std::result::Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(text).await?;
    copy.finish().await
}

/// The chunk as CSV text for PostgreSQL's COPY (empty unquoted field = NULL).
fn copy_text(batch: &Batch, rows: &[usize], order: &[usize], ds: &Dataset) -> Result<Vec<u8>> {
    let mut out = String::with_capacity(batch.len() * 120);
    let mut ryu_buf = ryu::Buffer::new();
    let states = batch.states();
    let errors = batch.error_codes();
    let kinds: Vec<SignalKind> = ds.schema.signals().iter().map(|s| s.kind).collect();
    for &r in rows {
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
}
