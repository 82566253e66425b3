//! The public [`Store`]: its options, connecting (the backend chosen and migrated
//! in [`crate::backend`]), and the dataset catalogue.

use std::sync::Arc;

use itap_telemetry::{Schema, SignalKind, check_identifier};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::backend::{Dialect, Pool, on_pool};
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

/// How to connect.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `url` | `sqlite://data/itap.db` | `sqlite://PATH` (file and folder created if missing), `sqlite::memory:`, or `postgres://…` |
/// | `pg_schema` | none (the server's `search_path`) | PostgreSQL schema to work in, created if missing; tests use one each |
/// | `max_connections` | 4 | pool size |
/// | `sqlite_cache_kib` | 65,536 (64 MiB) | SQLite only: each connection's page cache, KiB |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The database URL.
    pub url: String,
    /// PostgreSQL only: the schema to create tables in.
    pub pg_schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// SQLite only: each connection's page cache in KiB (SQLite's own
    /// default is 2 MiB). The default, [`DEFAULT_SQLITE_CACHE_KIB`], serves
    /// chunks in time order across a large fleet, which write at every
    /// device's place of the (device, ts) key; a writer that stores whole
    /// devices in id order touches one place at a time and needs little
    /// ([`APPEND_SQLITE_CACHE_KIB`]). The pages are taken as used.
    pub sqlite_cache_kib: u32,
}

/// The default of [`StoreOptions::sqlite_cache_kib`]: 64 MiB. A chunk of a
/// large fleet in time order touches a page per device, and with SQLite's
/// default of 2 MiB a 1,000-device ingest spilled and re-read those pages on
/// every chunk.
pub const DEFAULT_SQLITE_CACHE_KIB: u32 = 64 * 1024;

/// [`StoreOptions::sqlite_cache_kib`] for writers that store whole devices in
/// id order (8 MiB): as fast at 8.64 M rows as 64 MiB, and 56 MiB less held.
pub const APPEND_SQLITE_CACHE_KIB: u32 = 8 * 1024;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            url: DEFAULT_DB_URL.to_owned(),
            pg_schema: None,
            max_connections: 4,
            sqlite_cache_kib: DEFAULT_SQLITE_CACHE_KIB,
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
        let pool = Pool::open(opts).await?;
        Ok(Store {
            pool,
            url: opts.url.as_str().into(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.dialect().backend
    }

    /// The backend's SQL spellings.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        self.pool.dialect()
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
        let sql = self
            .dialect()
            .params("SELECT schema_json FROM itap_datasets WHERE name = ?");
        let row: Option<String> = on_pool!(&self.pool, p => sqlx::query_scalar(AssertSqlSafe(sql))
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
        let ddl = create_table_sql(self.dialect(), name, schema);
        self.pool
            .create_dataset(name, &ddl, &json, now_micros())
            .await?;
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

/// Quotes an identifier that was checked (a signal or dataset name).
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The table of dataset `name`, unique on `(device_id, ts)`: on SQLite a table
/// stored in that key's order (`WITHOUT ROWID`, the key its primary key), on
/// PostgreSQL a table and a unique index. A SQLite dataset an earlier ITAP
/// created as a table and a unique index is left as it is (`IF NOT EXISTS`) and
/// works the same, in a larger file.
fn create_table_sql(d: &Dialect, name: &str, schema: &Schema) -> Vec<String> {
    let (ts, float, int) = (d.ts_type, d.float_type, d.int_type);
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
    if d.clustered_key {
        cols.push("PRIMARY KEY (device_id, ts)".to_owned());
        return vec![format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {}\n) WITHOUT ROWID",
            quote(name),
            cols.join(",\n    ")
        )];
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
