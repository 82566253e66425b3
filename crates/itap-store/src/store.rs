//! Connecting, migrating, and the dataset catalogue.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use itap_telemetry::{Schema, SignalKind, check_identifier};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use crate::error::{Context, Error, Result};

/// The default database: an embedded SQLite file.
pub const DEFAULT_DB_URL: &str = "sqlite://data/itap.db";

/// The default dataset name.
pub const DEFAULT_DATASET: &str = "telemetry";

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite (bundled), WAL journal.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool the store holds, when the SQL is shared.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// How to connect.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `url` | `sqlite://data/itap.db` | `sqlite://PATH` (file and folder created if missing), `sqlite::memory:`, or `postgres://…` |
/// | `pg_schema` | none (the server's `search_path`) | PostgreSQL schema to work in, created if missing; tests use one each |
/// | `max_connections` | 4 | pool size |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The database URL.
    pub url: String,
    /// PostgreSQL only: the schema to create tables in.
    pub pg_schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            url: DEFAULT_DB_URL.to_owned(),
            pg_schema: None,
            max_connections: 4,
        }
    }
}

impl StoreOptions {
    /// Options for `url`, other fields default.
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            ..StoreOptions::default()
        }
    }

    /// Sets the PostgreSQL schema.
    pub fn pg_schema(mut self, schema: impl Into<String>) -> Self {
        self.pg_schema = Some(schema.into());
        self
    }
}

/// A dataset: a telemetry table and the schema recorded for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The dataset's name, which is also its table's name.
    pub name: String,
    /// The signals the table holds, in column order.
    pub schema: Schema,
}

/// A connection pool to an ITAP database, SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) url: Arc<str>,
}

impl Store {
    /// Connects to `url` with default options and brings the schema up to date.
    ///
    /// # Errors
    /// As [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(&StoreOptions::new(url)).await
    }

    /// Connects and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Url`] for an unusable URL; [`Error::Database`] when the server cannot
    /// be reached or the file cannot be created; [`Error::Migrate`] when a migration
    /// fails.
    pub async fn connect_with(opts: &StoreOptions) -> Result<Store> {
        let url = opts.url.as_str();
        let bad = |reason: String| Error::Url {
            url: url.to_owned(),
            reason,
        };
        let pool = if url.starts_with("sqlite:") {
            let mut o = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(120))
                .foreign_keys(true)
                // Reading or writing a whole dataset takes longer than sqlx's 1 s
                // "slow statement" warning by design; ITAP logs its own progress.
                .disable_statement_logging();
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            if !memory {
                let path = o.get_filename().to_path_buf();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| bad(format!("cannot create folder {}: {e}", dir.display())))?;
                }
            } else {
                o = o.shared_cache(true);
            }
            let pool = SqlitePoolOptions::new()
                // An in-memory database lives as long as its one connection.
                .max_connections(if memory { 1 } else { opts.max_connections })
                .min_connections(if memory { 1 } else { 0 })
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(o)
                .await
                .during(|| format!("opening {url}"))?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let mut o = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            if let Some(schema) = &opts.pg_schema {
                check_schema_name(schema)?;
                // Create the schema on a plain connection first.
                let admin = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(o.clone())
                    .await
                    .during(|| format!("connecting to {url}"))?;
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote(schema)
                )))
                .execute(&admin)
                .await
                .during(|| format!("creating schema {schema}"))?;
                admin.close().await;
                o = o.options([("search_path", schema.as_str())]);
            }
            let o = o.disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(o)
                .await
                .during(|| format!("connecting to {url}"))?;
            Pool::Postgres(pool)
        } else {
            return Err(bad(
                "use sqlite://PATH (for example sqlite://data/itap.db) or postgres://USER@HOST:PORT/DB"
                    .into(),
            ));
        };
        match &pool {
            Pool::Sqlite(p) => {
                // sqlx takes no lock for SQLite migrations: two processes opening a
                // new file at once can both try migration 1, and the loser fails on
                // an existing table. Its transaction rolled back, so a retry finds the
                // winner's migration applied and goes on.
                let migrator = sqlx::migrate!("migrations/sqlite");
                let mut attempt = 0;
                loop {
                    match migrator.run(p).await {
                        Ok(()) => break,
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            tracing::debug!(%e, attempt, "retrying SQLite migration");
                            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Pool::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(Store {
            pool,
            url: url.into(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection.
    pub async fn close(&self) {
        on_pool!(&self.pool, p => p.close().await)
    }

    /// The dataset `name`, if it exists.
    ///
    /// # Errors
    /// [`Error::DatasetName`] for an invalid name; [`Error::Database`].
    pub async fn dataset(&self, name: &str) -> Result<Option<Dataset>> {
        check_name(name)?;
        let sql = match self.pool {
            Pool::Sqlite(_) => "SELECT schema_json FROM itap_datasets WHERE name = ?",
            Pool::Postgres(_) => "SELECT schema_json FROM itap_datasets WHERE name = $1",
        };
        let row: Option<String> = on_pool!(&self.pool, p => sqlx::query_scalar(sql)
            .bind(name)
            .fetch_optional(p)
            .await)
        .during(|| format!("reading dataset `{name}`"))?;
        row.map(|json| {
            let schema: Schema = serde_json::from_str(&json).map_err(|e| Error::Database {
                during: format!("reading the recorded schema of dataset `{name}`"),
                source: sqlx::Error::Decode(Box::new(e)),
            })?;
            Ok(Dataset {
                name: name.to_owned(),
                schema,
            })
        })
        .transpose()
    }

    /// The dataset `name`, or [`Error::NoSuchDataset`].
    ///
    /// # Errors
    /// As [`Store::dataset`], and [`Error::NoSuchDataset`].
    pub async fn require_dataset(&self, name: &str) -> Result<Dataset> {
        self.dataset(name)
            .await?
            .ok_or_else(|| Error::NoSuchDataset(name.to_owned()))
    }

    /// Every dataset's name, sorted.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn datasets(&self) -> Result<Vec<String>> {
        on_pool!(&self.pool, p => sqlx::query_scalar("SELECT name FROM itap_datasets ORDER BY name")
            .fetch_all(p)
            .await)
        .during(|| "listing datasets".to_owned())
    }

    /// Creates the dataset with `schema`, or checks that an existing one has the same
    /// signals (names and kinds; order, units and ranges may differ).
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] naming the differing columns; [`Error::DatasetName`];
    /// [`Error::Database`].
    pub async fn ensure_dataset(&self, name: &str, schema: &Schema) -> Result<Dataset> {
        check_name(name)?;
        if let Some(existing) = self.dataset(name).await? {
            compare_schemas(name, &existing.schema, schema)?;
            return Ok(existing);
        }
        let json = serde_json::to_string(schema).map_err(|e| Error::Database {
            during: format!("recording the schema of dataset `{name}`"),
            source: sqlx::Error::Encode(Box::new(e)),
        })?;
        let ddl = create_table_sql(self.backend(), name, schema);
        let now = now_micros();
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .during(|| format!("creating dataset `{name}`"))?;
                for stmt in &ddl {
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
                .bind(&json)
                .bind(now)
                .execute(&mut *tx)
                .await
                .during(|| format!("recording dataset `{name}`"))?;
                tx.commit()
                    .await
                    .during(|| format!("creating dataset `{name}`"))?;
            }
            Pool::Postgres(p) => {
                let mut tx = p
                    .begin()
                    .await
                    .during(|| format!("creating dataset `{name}`"))?;
                // Serialise concurrent creators of the same dataset.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .during(|| format!("locking dataset `{name}`"))?;
                for stmt in &ddl {
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
                .bind(&json)
                .bind(now)
                .execute(&mut *tx)
                .await
                .during(|| format!("recording dataset `{name}`"))?;
                tx.commit()
                    .await
                    .during(|| format!("creating dataset `{name}`"))?;
            }
        }
        // Another process may have created it first: compare with what is recorded.
        let recorded = self.require_dataset(name).await?;
        compare_schemas(name, &recorded.schema, schema)?;
        Ok(recorded)
    }

    /// Rows in a dataset's table.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::Database`].
    pub async fn row_count(&self, dataset: &str) -> Result<u64> {
        let ds = self.require_dataset(dataset).await?;
        let sql = format!("SELECT COUNT(*) FROM {}", quote(&ds.name));
        let n: i64 = on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(sql))
            .fetch_one(p)
            .await
            .and_then(|r| r.try_get(0)))
        .during(|| format!("counting rows of `{dataset}`"))?;
        Ok(n.max(0) as u64)
    }
}

/// Checks a dataset (or schema) name: a plain lowercase identifier, not reserved.
///
/// # Errors
/// [`Error::DatasetName`].
pub fn check_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::DatasetName {
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok || name.len() > 48 {
        return bad("use 1-48 lowercase letters, digits or `_`, starting with a letter or `_`");
    }
    if name.starts_with("itap_") || name.starts_with("_sqlx") || name.starts_with("pg_") {
        return bad("names starting with `itap_`, `_sqlx` or `pg_` are reserved");
    }
    Ok(())
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

/// Quotes an identifier that was checked (a signal or dataset name).
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn create_table_sql(backend: Backend, name: &str, schema: &Schema) -> Vec<String> {
    let (ts, float, int) = match backend {
        Backend::Sqlite => ("INTEGER", "REAL", "INTEGER"),
        Backend::Postgres => ("TIMESTAMPTZ", "DOUBLE PRECISION", "BIGINT"),
    };
    let mut cols = vec![
        "device_id TEXT NOT NULL".to_owned(),
        format!("ts {ts} NOT NULL"),
        "state TEXT".to_owned(),
        "error_code INTEGER".to_owned(),
        "anomaly_tag TEXT".to_owned(),
    ];
    for s in schema.signals() {
        debug_assert!(check_identifier(&s.name).is_ok());
        let ty = match s.kind {
            SignalKind::Float => float,
            SignalKind::Int => int,
        };
        cols.push(format!("{} {ty}", quote(&s.name)));
    }
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
            quote(name),
            cols.join(",\n    ")
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (device_id, ts)",
            quote(&format!("{name}_device_ts")),
            quote(name)
        ),
    ]
}

fn compare_schemas(dataset: &str, recorded: &Schema, incoming: &Schema) -> Result<()> {
    let mut details = Vec::new();
    let missing: Vec<&str> = recorded
        .names()
        .filter(|n| incoming.index_of(n).is_none())
        .collect();
    let extra: Vec<&str> = incoming
        .names()
        .filter(|n| recorded.index_of(n).is_none())
        .collect();
    if !missing.is_empty() {
        details.push(format!("missing {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        details.push(format!("not in the dataset {}", extra.join(", ")));
    }
    for s in incoming.signals() {
        if let Some(r) = recorded.signal(&s.name)
            && r.kind != s.kind
        {
            details.push(format!(
                "`{}` is {:?} in the input but {:?} in the dataset",
                s.name, s.kind, r.kind
            ));
        }
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(Error::SchemaMismatch {
            dataset: dataset.to_owned(),
            details: details.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use itap_telemetry::Signal;

    #[test]
    fn names_are_checked() {
        assert!(check_name("telemetry").is_ok());
        assert!(check_name("plant_2").is_ok());
        for bad in [
            "",
            "Plant",
            "1x",
            "a-b",
            "itap_datasets",
            "x\"; drop",
            "pg_class",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schema_differences_are_named() {
        let a = Schema::default();
        let b = Schema::new(vec![
            Signal::new("rpm"),
            Signal::new("temp_c"),
            Signal::new("pressure_bar"),
        ])
        .unwrap();
        let e = compare_schemas("d", &a, &b).unwrap_err().to_string();
        assert!(
            e.contains("missing vibration_g, current_a, voltage_v"),
            "{e}"
        );
        assert!(e.contains("not in the dataset pressure_bar"), "{e}");
        assert!(e.contains("`rpm` is Float in the input but Int"), "{e}");
        assert!(compare_schemas("d", &a, &a).is_ok());
    }
}
