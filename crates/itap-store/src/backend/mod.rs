//! What differs between SQLite and PostgreSQL, behind one crate-private trait.
//!
//! Each backend is a module ([`sqlite`], [`postgres`]) that implements
//! [`BackendOps`] for its sqlx pool type. [`Pool`] holds one of the two pools and
//! dispatches to it with a `match` (or with [`on_pool!`] where the SQL is the same
//! for both); [`Dialect`] carries the SQL fragments that statements written once
//! (the catalogue, the ledger, the queries) spell per backend.
//!
//! Why a trait with `async fn` rather than only an enum with two inherent impls: the
//! trait states once, with its documentation, what a backend must provide, and the
//! compiler checks that both provide it with the same signatures. Calls are still
//! made on the concrete pool inside a `match`, so there is no `dyn`, no boxing, and
//! the futures of the public API stay `Send` (the opaque future of a known impl
//! leaks its auto traits). The trait is crate-private, so `async fn` without an
//! explicit `Send` bound is fine here.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use itap_telemetry::Batch;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::alert::{AlertRecord, AlertsWritten};
use crate::error::{Error, Result};
use crate::ingest::{IngestCounts, OnConflict};
use crate::store::{Backend, Dataset, StoreOptions, quote};

/// A connection pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool the store holds, when the SQL is shared.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::backend::Pool::Sqlite($p) => $body,
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// What each backend provides: connecting, creating a dataset's table, and writing
/// chunks. Everything else is shared SQL, spelled with the backend's [`Dialect`].
pub(crate) trait BackendOps: Sized {
    /// The backend's SQL spellings.
    const DIALECT: Dialect;

    /// The chunk statements, prepared once per ingest.
    type ChunkSql: std::fmt::Debug;

    /// Connects as `opts` says (its URL has this backend's scheme) and applies
    /// pending migrations.
    async fn open(opts: &StoreOptions) -> Result<Self>;

    /// In one transaction, runs `ddl` (the table and its index) and records dataset
    /// `name` in the catalogue with `schema_json`, created at `created_us`, unless it
    /// is recorded already (a concurrent creator won; the caller compares schemas).
    async fn create_dataset(
        &self,
        name: &str,
        ddl: &[String],
        schema_json: &str,
        created_us: i64,
    ) -> Result<()>;

    /// The statements that write chunks into `ds`.
    fn prepare_chunks(ds: &Dataset) -> Self::ChunkSql;

    /// Writes `chunk` in one transaction that also advances its ledger entry
    /// ([`crate::ledger::advance`]), and returns what the database did with its rows.
    async fn write_chunk(&self, sql: &Self::ChunkSql, chunk: &Chunk<'_>) -> Result<IngestCounts>;

    /// Stores `alerts` (checked, not empty) in `dataset` in one transaction, with
    /// the statements of [`crate::alert::AlertSql`], writers of the same dataset
    /// serialised so that the counts are exact; returns what was done with them.
    async fn write_alerts(&self, dataset: &str, alerts: &[AlertRecord]) -> Result<AlertsWritten>;
}

impl Pool {
    /// Connects to `opts.url`, choosing the backend by its scheme, and migrates.
    pub(crate) async fn open(opts: &StoreOptions) -> Result<Pool> {
        let url = opts.url.as_str();
        if url.starts_with("sqlite:") {
            Ok(Pool::Sqlite(SqlitePool::open(opts).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Pool::Postgres(PgPool::open(opts).await?))
        } else {
            Err(bad_url(
                url,
                "use sqlite://PATH (for example sqlite://data/itap.db) or postgres://USER@HOST:PORT/DB"
                    .into(),
            ))
        }
    }

    /// The backend's SQL spellings.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self {
            Pool::Sqlite(_) => &<SqlitePool as BackendOps>::DIALECT,
            Pool::Postgres(_) => &<PgPool as BackendOps>::DIALECT,
        }
    }

    /// See [`BackendOps::create_dataset`].
    pub(crate) async fn create_dataset(
        &self,
        name: &str,
        ddl: &[String],
        schema_json: &str,
        created_us: i64,
    ) -> Result<()> {
        on_pool!(self, p => p.create_dataset(name, ddl, schema_json, created_us).await)
    }

    /// See [`BackendOps::write_alerts`].
    pub(crate) async fn write_alerts(
        &self,
        dataset: &str,
        alerts: &[AlertRecord],
    ) -> Result<AlertsWritten> {
        on_pool!(self, p => p.write_alerts(dataset, alerts).await)
    }

    /// A writer of chunks into `ds`, its statements prepared.
    pub(crate) fn chunk_writer(&self, ds: &Dataset) -> ChunkWriter<'_> {
        match self {
            Pool::Sqlite(p) => ChunkWriter::Sqlite(p, SqlitePool::prepare_chunks(ds)),
            Pool::Postgres(p) => ChunkWriter::Postgres(p, PgPool::prepare_chunks(ds)),
        }
    }
}

/// An ingest's handle on its backend: the pool and the statements prepared for the
/// dataset.
#[derive(Debug)]
pub(crate) enum ChunkWriter<'s> {
    Sqlite(&'s SqlitePool, sqlite::ChunkSql),
    Postgres(&'s PgPool, postgres::ChunkSql),
}

impl ChunkWriter<'_> {
    /// See [`BackendOps::write_chunk`].
    pub(crate) async fn write(&self, chunk: &Chunk<'_>) -> Result<IngestCounts> {
        match self {
            ChunkWriter::Sqlite(p, sql) => p.write_chunk(sql, chunk).await,
            ChunkWriter::Postgres(p, sql) => p.write_chunk(sql, chunk).await,
        }
    }
}

/// One validated chunk to write, and what the writer needs to know about it.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    /// The dataset written.
    pub(crate) dataset: &'a Dataset,
    /// The rows.
    pub(crate) batch: &'a Batch,
    /// The order in which the rows are written: by device, then time (see
    /// [`crate::Ingest::write`]).
    pub(crate) rows: &'a [usize],
    /// For each dataset signal, the index of the same signal in `batch`.
    pub(crate) order: &'a [usize],
    /// What to do with rows whose key is stored already.
    pub(crate) on_conflict: OnConflict,
    /// The ledger entry that the chunk's transaction advances.
    pub(crate) ledger_id: i64,
}

/// The SQL fragments that differ between the backends, for statements that are
/// otherwise written once.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// The backend that speaks it.
    pub(crate) backend: Backend,
    /// Column type of `ts`.
    pub(crate) ts_type: &'static str,
    /// Column type of a `float` signal.
    pub(crate) float_type: &'static str,
    /// Column type of an `int` signal.
    pub(crate) int_type: &'static str,
    /// A bound UTC-microsecond parameter (`?`) as a stored timestamp.
    pub(crate) ts_param: &'static str,
    /// The collation that orders text byte by byte (as Rust's `str` does), for
    /// orders that must be the same on both backends whatever the server's locale.
    pub(crate) binary_collation: &'static str,
    /// Whether a dataset's table is stored in its `(device_id, ts)` key's order
    /// (SQLite's `WITHOUT ROWID` with that primary key: one B-tree per row
    /// written) rather than as a heap with a unique index beside it.
    pub(crate) clustered_key: bool,
    /// See [`Dialect::micros`].
    micros_of: fn(&str) -> String,
    /// See [`Dialect::params`].
    pub(crate) params_of: fn(&str) -> String,
}

impl Dialect {
    /// `expr` (a stored timestamp, or an aggregate of them) as UTC microseconds.
    pub(crate) fn micros(&self, expr: &str) -> String {
        (self.micros_of)(expr)
    }

    /// `sql`, written with `?` placeholders, in the backend's placeholder spelling.
    pub(crate) fn params(&self, sql: &str) -> String {
        (self.params_of)(sql)
    }
}

/// The columns of a dataset's table in the order chunks write them, quoted:
/// `device_id, ts, state, error_code, anomaly_tag`, then one per signal.
#[derive(Debug)]
pub(crate) struct Columns(Vec<String>);

impl Columns {
    pub(crate) fn new(ds: &Dataset) -> Self {
        let mut cols = vec![
            "device_id".to_owned(),
            "ts".to_owned(),
            "state".to_owned(),
            "error_code".to_owned(),
            "anomaly_tag".to_owned(),
        ];
        cols.extend(ds.schema.names().map(quote));
        Columns(cols)
    }

    /// How many columns.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// `device_id, ts, …`.
    pub(crate) fn list(&self) -> String {
        self.0.join(", ")
    }

    /// The columns outside the `(device_id, ts)` key.
    fn values(&self) -> impl Iterator<Item = &String> {
        self.0.iter().filter(|c| *c != "device_id" && *c != "ts")
    }

    /// `a.c IS DISTINCT FROM b.c OR …` over the value columns.
    fn differs(&self, a: &str, b: &str) -> String {
        self.values()
            .map(|c| format!("{a}.{c} IS DISTINCT FROM {b}.{c}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// Upserts the rows that `source` selects into `table`, updating a stored row
    /// only where its values differ.
    pub(crate) fn upsert(&self, table: &str, source: &str) -> String {
        let set = self
            .values()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {table} AS cur ({}) {source} ON CONFLICT (device_id, ts) DO UPDATE SET {set} WHERE {}",
            self.list(),
            self.differs("cur", "excluded")
        )
    }

    /// Counts the rows of `stage` whose key is stored in `table` with other values.
    pub(crate) fn count_conflicts(&self, table: &str, stage: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM {stage} s JOIN {table} cur ON cur.device_id = s.device_id AND cur.ts = s.ts WHERE {}",
            self.differs("s", "cur")
        )
    }
}

/// A stored value for an `int` signal (signal `k` of `ds`), refusing fractions.
pub(crate) fn int_value(ds: &Dataset, k: usize, v: f64) -> Result<Option<i64>> {
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

/// [`Error::Url`] for `url`.
fn bad_url(url: &str, reason: String) -> Error {
    Error::Url {
        url: url.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IngestSource, RangeQuery, Store};
    use itap_telemetry::Schema;
    use itap_validate::Validated;

    /// The dispatch through [`BackendOps`] keeps the public futures `Send`: the
    /// pipeline runs ingests on a multi-threaded runtime. Compiling is the test.
    #[allow(dead_code)]
    fn public_futures_are_send(
        store: &Store,
        ingest: &mut crate::Ingest<'_>,
        chunk: &Validated<Batch>,
    ) {
        fn send<T: Send>(_: T) {}
        let schema = Schema::default();
        let source = IngestSource {
            path: String::new(),
            sha256: String::new(),
        };
        send(Store::connect("sqlite::memory:"));
        send(store.ensure_dataset("d", &schema));
        send(store.begin_ingest("d", &schema, source, OnConflict::Keep));
        send(store.ledger(None));
        send(store.stats("d"));
        send(store.load_range("d", &RangeQuery::all()));
        send(ingest.write(chunk));
        send(store.put_alerts("d", &[]));
        send(store.alerts("d", &crate::AlertQuery::all()));
        send(store.alert("d", "a"));
    }

    #[test]
    fn dialects_number_placeholders_only_for_postgres() {
        let (sqlite, pg) = (&SqlitePool::DIALECT, &PgPool::DIALECT);
        let sql = "SELECT 1 WHERE a = ? AND b = ?";
        assert_eq!(sqlite.params(sql), sql);
        assert_eq!(pg.params(sql), "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(sqlite.micros("ts"), "ts");
        assert_eq!(
            pg.micros("MIN(ts)"),
            "(EXTRACT(EPOCH FROM MIN(ts)) * 1000000)::bigint"
        );
    }
}
