//! Loading stored rows back as batches, and dataset metrics.

use futures_util::TryStreamExt;
use itap_telemetry::{Batch, BatchBuilder, SignalKind, State};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use crate::backend::on_pool;
use crate::error::{Context, Result};
use crate::store::{Dataset, Store, quote};

/// Which rows to load: a half-open time range and optionally some devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeQuery {
    /// First timestamp included, UTC microseconds; `None` = from the start.
    pub from: Option<i64>,
    /// First timestamp excluded, UTC microseconds; `None` = to the end.
    pub to: Option<i64>,
    /// Device ids; empty = every device.
    pub devices: Vec<String>,
}

impl RangeQuery {
    /// Every row.
    pub fn all() -> Self {
        RangeQuery::default()
    }

    /// Rows with `from <= ts < to`.
    pub fn between(from: i64, to: i64) -> Self {
        RangeQuery {
            from: Some(from),
            to: Some(to),
            devices: Vec::new(),
        }
    }

    /// Restricts the query to `devices`.
    pub fn devices<S: Into<String>>(mut self, devices: impl IntoIterator<Item = S>) -> Self {
        self.devices = devices.into_iter().map(Into::into).collect();
        self
    }
}

/// Metrics of a stored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// The dataset.
    pub dataset: String,
    /// Stored rows.
    pub rows: u64,
    /// Earliest timestamp, UTC microseconds.
    pub first_us: Option<i64>,
    /// Latest timestamp, UTC microseconds.
    pub last_us: Option<i64>,
    /// Rows per device, by device id.
    pub rows_per_device: Vec<(String, u64)>,
    /// Missing values per signal: (signal, missing count, missing rate).
    pub missing: Vec<(String, u64, f64)>,
    /// Rows with a fault tag (blank or whitespace tags are normal).
    pub tagged_rows: u64,
    /// `tagged_rows / rows`.
    pub tag_rate: f64,
    /// Rows per tag, by tag.
    pub tags: Vec<(String, u64)>,
    /// Rows with a non-zero error code.
    pub error_rows: u64,
    /// `error_rows / rows`.
    pub error_rate: f64,
    /// Rows per non-zero error code, by code.
    pub errors: Vec<(i64, u64)>,
    /// Alerts stored for the dataset ([`Store::put_alerts`]).
    #[serde(default)]
    pub alerts: u64,
}

impl Store {
    /// `SELECT` of the dataset's columns from `source` (the table, or a subquery
    /// over it), filtered by `q`, in time order.
    fn select_sql(&self, ds: &Dataset, source: &str, q: &RangeQuery) -> String {
        let d = self.dialect();
        let mut cols = vec![
            "device_id".to_owned(),
            format!("{} AS ts_us", d.micros("ts")),
            "state".to_owned(),
            "error_code".to_owned(),
            "anomaly_tag".to_owned(),
        ];
        cols.extend(ds.schema.names().map(quote));
        let mut conds = Vec::new();
        if q.from.is_some() {
            conds.push(format!("ts >= {}", d.ts_param));
        }
        if q.to.is_some() {
            conds.push(format!("ts < {}", d.ts_param));
        }
        if !q.devices.is_empty() {
            conds.push(format!(
                "device_id IN ({})",
                vec!["?"; q.devices.len()].join(", ")
            ));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        d.params(&format!(
            "SELECT {} FROM {source}{filter} ORDER BY ts, device_id",
            cols.join(", ")
        ))
    }

    /// Streams the rows of `q` in time order (then device id) as batches of at most
    /// `chunk_rows` rows, calling `f` with each; memory stays bounded by the chunk.
    /// Returns the number of rows read. Device and tag codes are stable across chunks.
    ///
    /// # Errors
    /// [`crate::Error::NoSuchDataset`]; [`crate::Error::Database`]; whatever `f` returns.
    pub async fn stream_range<F>(
        &self,
        dataset: &str,
        q: &RangeQuery,
        chunk_rows: usize,
        f: F,
    ) -> Result<u64>
    where
        F: FnMut(Batch) -> Result<()>,
    {
        let ds = self.require_dataset(dataset).await?;
        let sql = self.select_sql(&ds, &quote(&ds.name), q);
        self.stream_sql(&ds, sql, None, q, chunk_rows, f).await
    }

    /// Runs a `SELECT` made by [`Store::select_sql`] (with an optional leading bind)
    /// and hands its rows to `f` in batches.
    async fn stream_sql<F>(
        &self,
        ds: &Dataset,
        sql: String,
        lead: Option<i64>,
        q: &RangeQuery,
        chunk_rows: usize,
        mut f: F,
    ) -> Result<u64>
    where
        F: FnMut(Batch) -> Result<()>,
    {
        let dataset = ds.name.as_str();
        let kinds: Vec<SignalKind> = ds.schema.signals().iter().map(|s| s.kind).collect();
        let mut builder = BatchBuilder::new(ds.schema.clone(), true, true, true);
        let mut values = vec![f64::NAN; kinds.len()];
        let mut total = 0u64;
        let chunk_rows = chunk_rows.max(1);
        let during = || format!("reading rows of `{dataset}`");
        on_pool!(&self.pool, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if let Some(v) = lead {
                query = query.bind(v);
            }
            if let Some(v) = q.from {
                query = query.bind(v);
            }
            if let Some(v) = q.to {
                query = query.bind(v);
            }
            for d in &q.devices {
                query = query.bind(d.as_str());
            }
            let mut rows = query.fetch(p);
            while let Some(row) = rows.try_next().await.during(during)? {
                let device: String = row.try_get(0).during(during)?;
                let ts: i64 = row.try_get(1).during(during)?;
                let state: Option<String> = row.try_get(2).during(during)?;
                let error: Option<i32> = row.try_get(3).during(during)?;
                let tag: Option<String> = row.try_get(4).during(during)?;
                for (k, kind) in kinds.iter().enumerate() {
                    values[k] = match kind {
                        SignalKind::Float => row.try_get::<Option<f64>, _>(5 + k).during(during)?,
                        SignalKind::Int => row
                            .try_get::<Option<i64>, _>(5 + k)
                            .during(during)?
                            .map(|v| v as f64),
                    }
                    .unwrap_or(f64::NAN);
                }
                let dc = builder.device_code(&device);
                let tc = builder.tag_code(tag.as_deref().unwrap_or(""));
                let st = state
                    .as_deref()
                    .and_then(|s| s.parse::<State>().ok())
                    .unwrap_or(State::Run);
                builder.push(ts, dc, &values, st, error.unwrap_or(0), tc)?;
                total += 1;
                if builder.len() >= chunk_rows {
                    f(builder.take_chunk())?;
                }
            }
        });
        if !builder.is_empty() {
            f(builder.take_chunk())?;
        }
        Ok(total)
    }

    /// Loads the rows of `q` as one batch, in time order (then device id).
    ///
    /// # Errors
    /// As [`Store::stream_range`].
    pub async fn load_range(&self, dataset: &str, q: &RangeQuery) -> Result<Batch> {
        let mut parts: Vec<Batch> = Vec::new();
        self.stream_range(dataset, q, usize::MAX, |b| {
            parts.push(b);
            Ok(())
        })
        .await?;
        match parts.pop() {
            Some(b) => Ok(b),
            None => {
                let ds = self.require_dataset(dataset).await?;
                Ok(BatchBuilder::new(ds.schema, true, true, true).finish())
            }
        }
    }

    /// One device's rows with `from <= ts < to`.
    ///
    /// # Errors
    /// As [`Store::stream_range`].
    pub async fn device_window(
        &self,
        dataset: &str,
        device: &str,
        from: i64,
        to: i64,
    ) -> Result<Batch> {
        self.load_range(dataset, &RangeQuery::between(from, to).devices([device]))
            .await
    }

    /// At most `limit` rows of one device with `from <= ts < to` (either bound
    /// optional), the first in time order: a page of its readings.
    ///
    /// # Errors
    /// As [`Store::stream_range`].
    pub async fn device_page(
        &self,
        dataset: &str,
        device: &str,
        from: Option<i64>,
        to: Option<i64>,
        limit: u32,
    ) -> Result<Batch> {
        let ds = self.require_dataset(dataset).await?;
        let q = RangeQuery {
            from,
            to,
            devices: vec![device.to_owned()],
        };
        // `limit` is a number, written into the statement; everything else is bound.
        let sql = format!(
            "{} LIMIT {limit}",
            self.select_sql(&ds, &quote(&ds.name), &q)
        );
        let mut out = None;
        self.stream_sql(&ds, sql, None, &q, usize::MAX, |b| {
            out = Some(b);
            Ok(())
        })
        .await?;
        Ok(out.unwrap_or_else(|| BatchBuilder::new(ds.schema.clone(), true, true, true).finish()))
    }

    /// The latest `n` rows of every device, in time order (then device id).
    ///
    /// # Errors
    /// As [`Store::stream_range`].
    pub async fn latest(&self, dataset: &str, n: u32) -> Result<Batch> {
        let ds = self.require_dataset(dataset).await?;
        let ranked = format!(
            "(SELECT *, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY ts DESC) AS rn \
             FROM {}) ranked",
            quote(&ds.name)
        );
        let mut sql = self.select_sql(&ds, &ranked, &RangeQuery::all());
        // The outer ORDER BY is the last one (the window has its own).
        let at = sql.rfind(" ORDER BY").unwrap_or(sql.len());
        sql.insert_str(at, " WHERE rn <= ?");
        // The only placeholder: `RangeQuery::all()` binds nothing.
        let sql = self.dialect().params(&sql);
        let mut out = None;
        self.stream_sql(
            &ds,
            sql,
            Some(i64::from(n)),
            &RangeQuery::all(),
            usize::MAX,
            |b| {
                out = Some(b);
                Ok(())
            },
        )
        .await?;
        Ok(out.unwrap_or_else(|| BatchBuilder::new(ds.schema.clone(), true, true, true).finish()))
    }

    /// Each device of a dataset with its rows and its first and last timestamp
    /// (UTC microseconds), by device id: what reading a dataset a group of
    /// devices at a time needs, from the (device, time) key alone.
    ///
    /// # Errors
    /// [`crate::Error::NoSuchDataset`]; [`crate::Error::Database`].
    pub async fn device_rows(&self, dataset: &str) -> Result<Vec<(String, u64, i64, i64)>> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let sql = format!(
            "SELECT device_id, COUNT(*), {}, {} FROM {} GROUP BY device_id ORDER BY device_id",
            d.micros("MIN(ts)"),
            d.micros("MAX(ts)"),
            quote(&ds.name)
        );
        let during = || format!("counting the rows of each device of `{dataset}`");
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(&self.pool, p => {
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(p).await.during(during)?
        });
        Ok(rows
            .into_iter()
            .map(|(d, n, lo, hi)| (d, n.max(0) as u64, lo, hi))
            .collect())
    }

    /// Metrics of a dataset: rows, time bounds, rows per device, missing rate per
    /// signal, tag and error rates and counts, stored alerts.
    ///
    /// # Errors
    /// [`crate::Error::NoSuchDataset`]; [`crate::Error::Database`].
    pub async fn stats(&self, dataset: &str) -> Result<DatasetStats> {
        let ds = self.require_dataset(dataset).await?;
        let t = quote(&ds.name);
        let d = self.dialect();
        let (first_ts, last_ts) = (d.micros("MIN(ts)"), d.micros("MAX(ts)"));
        let during = || format!("computing metrics of `{dataset}`");
        let missing_cols: Vec<String> = ds
            .schema
            .names()
            .map(|n| format!("COUNT(*) - COUNT({})", quote(n)))
            .collect();
        let head_sql = format!(
            "SELECT COUNT(*), {first_ts}, {last_ts}{}{} FROM {t}",
            if missing_cols.is_empty() { "" } else { ", " },
            missing_cols.join(", ")
        );
        let per_device_sql =
            format!("SELECT device_id, COUNT(*) FROM {t} GROUP BY device_id ORDER BY device_id");
        let tags_sql = format!(
            "SELECT TRIM(anomaly_tag) AS tag, COUNT(*) FROM {t} WHERE anomaly_tag IS NOT NULL \
             AND TRIM(anomaly_tag) <> '' GROUP BY TRIM(anomaly_tag) ORDER BY tag"
        );
        let errors_sql = format!(
            "SELECT CAST(error_code AS BIGINT), COUNT(*) FROM {t} WHERE error_code IS NOT NULL \
             AND error_code <> 0 GROUP BY error_code ORDER BY error_code"
        );
        let alerts_sql = d.params("SELECT COUNT(*) FROM itap_alerts WHERE dataset = ?");
        let k = ds.schema.len();
        let (rows, first, last, missing, per_device, tags, errors, alerts) = on_pool!(&self.pool, p => {
            let head = sqlx::query(AssertSqlSafe(head_sql)).fetch_one(p).await.during(during)?;
            let rows: i64 = head.try_get(0).during(during)?;
            let first: Option<i64> = head.try_get(1).during(during)?;
            let last: Option<i64> = head.try_get(2).during(during)?;
            let mut missing = Vec::with_capacity(k);
            for i in 0..k {
                missing.push(head.try_get::<i64, _>(3 + i).during(during)?);
            }
            let per_device: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(per_device_sql))
                .fetch_all(p)
                .await
                .during(during)?;
            let tags: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(tags_sql))
                .fetch_all(p)
                .await
                .during(during)?;
            let errors: Vec<(i64, i64)> = sqlx::query_as(AssertSqlSafe(errors_sql))
                .fetch_all(p)
                .await
                .during(during)?;
            let alerts: i64 = sqlx::query_scalar(AssertSqlSafe(alerts_sql))
                .bind(ds.name.as_str())
                .fetch_one(p)
                .await
                .during(during)?;
            (rows, first, last, missing, per_device, tags, errors, alerts)
        });
        let rows = rows.max(0) as u64;
        let rate = |n: u64| {
            if rows == 0 {
                0.0
            } else {
                n as f64 / rows as f64
            }
        };
        let u = |v: i64| v.max(0) as u64;
        let tagged_rows = tags.iter().map(|(_, n)| u(*n)).sum();
        let error_rows = errors.iter().map(|(_, n)| u(*n)).sum();
        Ok(DatasetStats {
            dataset: ds.name.clone(),
            rows,
            first_us: first,
            last_us: last,
            rows_per_device: per_device.into_iter().map(|(d, n)| (d, u(n))).collect(),
            missing: ds
                .schema
                .names()
                .zip(missing)
                .map(|(name, m)| (name.to_owned(), u(m), rate(u(m))))
                .collect(),
            tagged_rows,
            tag_rate: rate(tagged_rows),
            tags: tags.into_iter().map(|(t, n)| (t, u(n))).collect(),
            error_rows,
            error_rate: rate(error_rows),
            errors: errors.into_iter().map(|(c, n)| (c, u(n))).collect(),
            alerts: u(alerts),
        })
    }
}
