//! Alerts (`itap_alerts`): storing them idempotently, and reading them back.
//!
//! An alert is keyed by its dataset and the id its caller made for it. Storing an
//! alert again leaves its row alone when nothing changed and replaces it when
//! something did (an alert that grew), so re-running a pipeline stores each alert
//! once. A call is checked whole before anything is written, then written in one
//! transaction by its backend ([`crate::backend::BackendOps::write_alerts`]) with
//! the statements below, which are written once and spelled by the [`Dialect`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Row};

use crate::backend::{Dialect, on_pool};
use itap_telemetry::InvalidParam;

use crate::error::{Context, Error, Result};
use crate::store::Store;

/// The severities [`AlertQuery::severity_at_least`] knows, lowest first. The store
/// keeps any severity text as given; only this filter ranks them.
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// The largest timestamp magnitude stored, in microseconds (2^53: 1684-07-28 to
/// 2255-06-05). PostgreSQL converts bound microseconds to `timestamptz` through a
/// double, which is exact only up to here; both backends refuse what is beyond.
const MAX_ABS_US: i64 = 1 << 53;

/// The stored columns, in the order [`AlertSql::upsert`] binds them.
const COLUMNS: [&str; 15] = [
    "dataset",
    "id",
    "device",
    "start_ts",
    "end_ts",
    "peak_ts",
    "row_count",
    "peak_score",
    "mean_score",
    "severity",
    "family",
    "route",
    "rule",
    "detail",
    "model",
];

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable id made by the caller (for example `DEV-0003-20260101T031500Z`);
    /// unique within a dataset, not empty.
    pub id: String,
    /// The device, not empty.
    pub device: String,
    /// First timestamp of the alert, UTC microseconds.
    pub start_us: i64,
    /// Last timestamp of the alert, UTC microseconds; not before `start_us`.
    pub end_us: i64,
    /// Timestamp of the highest score, UTC microseconds.
    pub peak_us: i64,
    /// Rows the alert covers.
    pub rows: u64,
    /// The highest score (finite; -0.0 is stored as 0.0).
    pub peak_score: f64,
    /// The mean score (finite; -0.0 is stored as 0.0).
    pub mean_score: f64,
    /// `info`, `warning` or `critical`; stored as given.
    pub severity: String,
    /// The dominant fault family.
    pub family: String,
    /// The team it goes to, for example `maintenance`.
    pub route: String,
    /// The rule that opened it.
    pub rule: String,
    /// JSON text (family shares, top features), stored verbatim; may be empty.
    pub detail: String,
    /// The model that produced it (digest or path); may be empty.
    pub model: String,
}

/// What [`Store::put_alerts`] did with each alert of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertsWritten {
    /// Alerts whose id was not stored yet.
    pub inserted: u64,
    /// Alerts whose id was stored with other values, now replaced.
    pub updated: u64,
    /// Alerts stored already with the same values.
    pub unchanged: u64,
}

impl AlertsWritten {
    /// Counts a block of `n` alerts written by one statement: `stored` of their
    /// ids were stored before it, and it `changed` that many rows (inserted or
    /// replaced; a row stored with the same values is left alone and not
    /// counted). The ids of a call are distinct, so each alert is one of the
    /// three.
    pub(crate) fn count_block(&mut self, n: u64, stored: u64, changed: u64) {
        let inserted = n.saturating_sub(stored);
        let updated = changed.saturating_sub(inserted).min(stored);
        self.inserted += inserted;
        self.updated += updated;
        self.unchanged += stored - updated;
    }
}

/// Which alerts to read. Built like [`RangeQuery`](crate::RangeQuery):
/// `AlertQuery::all().device("DEV-0003").since(t0).limit(10)`.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `device` | every device | only this device's alerts |
/// | `since_us` | from the start | only alerts that end at or after it (UTC µs) |
/// | `until_us` | to the end | only alerts that start before it (UTC µs) |
/// | `severity_at_least` | every severity | `info`, `warning` or `critical`: that severity and those above it |
/// | `limit` | none | at most this many alerts, the first in order |
/// | `newest_first` | false | order by start, device and id descending instead |
///
/// `since_us` and `until_us` together select the alerts that overlap the
/// half-open window `[since_us, until_us)`, including one that began before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only this device's alerts; `None` = every device.
    pub device: Option<String>,
    /// Only alerts with `end_us >= since_us`; `None` = from the start.
    pub since_us: Option<i64>,
    /// Only alerts with `start_us < until_us`; `None` = to the end.
    pub until_us: Option<i64>,
    /// Only alerts of this severity or a higher one (`info` < `warning` <
    /// `critical`); alerts stored with another severity text never match.
    pub severity_at_least: Option<String>,
    /// At most this many alerts.
    pub limit: Option<u32>,
    /// Latest start first (then device and id descending), so that `limit`
    /// keeps the most recent alerts.
    pub newest_first: bool,
}

impl AlertQuery {
    /// Every alert.
    pub fn all() -> Self {
        AlertQuery::default()
    }

    /// Restricts the query to `device`.
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    /// Only alerts that end at or after `since_us`.
    pub fn since(mut self, since_us: i64) -> Self {
        self.since_us = Some(since_us);
        self
    }

    /// Only alerts that start before `until_us`.
    pub fn until(mut self, until_us: i64) -> Self {
        self.until_us = Some(until_us);
        self
    }

    /// Only alerts of `severity` (`info`, `warning` or `critical`) or higher.
    pub fn severity_at_least(mut self, severity: impl Into<String>) -> Self {
        self.severity_at_least = Some(severity.into());
        self
    }

    /// The most recent alerts first.
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }

    /// At most `n` alerts, the first in order.
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// The severities `severity_at_least` selects, or [`Error::InvalidParam`].
    fn severities(&self) -> Result<Option<&'static [&'static str]>> {
        let Some(s) = &self.severity_at_least else {
            return Ok(None);
        };
        match SEVERITIES.iter().position(|k| k == s) {
            Some(i) => Ok(Some(&SEVERITIES[i..])),
            None => Err(Error::InvalidParam(InvalidParam::new(
                "severity_at_least",
                format!("{s:?} is not a severity; use info, warning or critical"),
            ))),
        }
    }
}

impl Store {
    /// Stores `alerts` in `dataset`, idempotently: an alert whose id is stored with
    /// the same values is left alone, one whose id is stored with other values (an
    /// alert that grew) replaces the stored row, a new id is inserted. The whole call
    /// is checked first and written in one transaction, so it stores all or nothing.
    ///
    /// # Errors
    /// [`Error::InvalidAlert`] (nothing stored) for an empty id or device, a
    /// non-finite score, `end_us` before `start_us`, a timestamp beyond ±2^53 µs,
    /// `rows` above `i64::MAX`, `detail` that is neither empty nor JSON, a NUL
    /// character in a text, or an id given twice; [`Error::NoSuchDataset`];
    /// [`Error::DatasetName`]; [`Error::Database`].
    pub async fn put_alerts(&self, dataset: &str, alerts: &[AlertRecord]) -> Result<AlertsWritten> {
        let ds = self.require_dataset(dataset).await?;
        check_alerts(&ds.name, alerts)?;
        if alerts.is_empty() {
            return Ok(AlertsWritten::default());
        }
        self.pool.write_alerts(&ds.name, alerts).await
    }

    /// The alerts of `dataset` that `q` selects, ordered by start, then device, then
    /// id (text compared byte by byte on both backends), or the reverse with
    /// [`AlertQuery::newest_first`].
    ///
    /// # Errors
    /// [`Error::InvalidParam`] for an unknown `severity_at_least`;
    /// [`Error::NoSuchDataset`]; [`Error::DatasetName`]; [`Error::Database`].
    pub async fn alerts(&self, dataset: &str, q: &AlertQuery) -> Result<Vec<AlertRecord>> {
        let ds = self.require_dataset(dataset).await?;
        let severities = q.severities()?;
        let d = self.dialect();
        let mut conds = vec!["dataset = ?".to_owned()];
        if q.device.is_some() {
            conds.push("device = ?".to_owned());
        }
        if q.since_us.is_some() {
            conds.push(format!("end_ts >= {}", d.ts_param));
        }
        if q.until_us.is_some() {
            conds.push(format!("start_ts < {}", d.ts_param));
        }
        if let Some(s) = severities {
            conds.push(format!("severity IN ({})", vec!["?"; s.len()].join(", ")));
        }
        let c = d.binary_collation;
        let dir = if q.newest_first { " DESC" } else { "" };
        let sql = d.params(&format!(
            "{} WHERE {} ORDER BY start_ts{dir}, device COLLATE {c}{dir}, id COLLATE {c}{dir}{}",
            select_sql(d),
            conds.join(" AND "),
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
            for s in severities.unwrap_or_default() {
                query = query.bind(*s);
            }
            if let Some(n) = q.limit {
                query = query.bind(i64::from(n));
            }
            query
                .fetch_all(p)
                .await
                .and_then(|rows| rows.iter().map(record).collect())
        })
        .during(|| format!("reading alerts of dataset `{dataset}`"))
    }

    /// The alert `id` of `dataset`, if it is stored.
    ///
    /// # Errors
    /// [`Error::NoSuchDataset`]; [`Error::DatasetName`]; [`Error::Database`].
    pub async fn alert(&self, dataset: &str, id: &str) -> Result<Option<AlertRecord>> {
        let ds = self.require_dataset(dataset).await?;
        let d = self.dialect();
        let sql = d.params(&format!("{} WHERE dataset = ? AND id = ?", select_sql(d)));
        let dataset = ds.name.as_str();
        let row = on_pool!(&self.pool, p => sqlx::query(AssertSqlSafe(sql))
            .bind(dataset)
            .bind(id)
            .fetch_optional(p)
            .await
            .and_then(|row| row.as_ref().map(record).transpose()))
        .during(|| format!("reading alert {id:?} of dataset `{dataset}`"))?;
        Ok(row)
    }
}

/// `SELECT` of an alert's fields from `itap_alerts`, in [`AlertRecord`] order.
fn select_sql(d: &Dialect) -> String {
    format!(
        "SELECT id, device, {} AS start_us, {} AS end_us, {} AS peak_us, row_count, \
         peak_score, mean_score, severity, family, route, rule, detail, model FROM itap_alerts",
        d.micros("start_ts"),
        d.micros("end_ts"),
        d.micros("peak_ts"),
    )
}

/// An alert from a row of [`select_sql`].
fn record<'r, R: Row>(r: &'r R) -> std::result::Result<AlertRecord, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AlertRecord {
        id: r.try_get(0)?,
        device: r.try_get(1)?,
        start_us: r.try_get(2)?,
        end_us: r.try_get(3)?,
        peak_us: r.try_get(4)?,
        rows: r.try_get::<i64, _>(5)?.max(0) as u64,
        peak_score: r.try_get(6)?,
        mean_score: r.try_get(7)?,
        severity: r.try_get(8)?,
        family: r.try_get(9)?,
        route: r.try_get(10)?,
        rule: r.try_get(11)?,
        detail: r.try_get(12)?,
        model: r.try_get(13)?,
    })
}

/// Checks every alert of a call before any is written.
pub(crate) fn check_alerts(dataset: &str, alerts: &[AlertRecord]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(alerts.len());
    for (index, a) in alerts.iter().enumerate() {
        let bad = |field: &'static str, reason: String| {
            Err(Error::InvalidAlert {
                dataset: dataset.to_owned(),
                index,
                id: a.id.clone(),
                field,
                reason,
            })
        };
        for (field, text) in [("id", &a.id), ("device", &a.device)] {
            if text.trim().is_empty() {
                return bad(field, "is empty".to_owned());
            }
        }
        let texts = [
            ("id", &a.id),
            ("device", &a.device),
            ("severity", &a.severity),
            ("family", &a.family),
            ("route", &a.route),
            ("rule", &a.rule),
            ("detail", &a.detail),
            ("model", &a.model),
        ];
        for (field, text) in texts {
            if text.contains('\0') {
                return bad(
                    field,
                    "holds a NUL character, which PostgreSQL cannot store".to_owned(),
                );
            }
        }
        for (field, v) in [("peak_score", a.peak_score), ("mean_score", a.mean_score)] {
            if !v.is_finite() {
                return bad(field, format!("is {v}; scores must be finite numbers"));
            }
        }
        for (field, t) in [
            ("start_us", a.start_us),
            ("end_us", a.end_us),
            ("peak_us", a.peak_us),
        ] {
            if !(-MAX_ABS_US..=MAX_ABS_US).contains(&t) {
                return bad(
                    field,
                    format!("{t} is outside the storable range ±2^53 µs (years 1684 to 2255)"),
                );
            }
        }
        if a.end_us < a.start_us {
            return bad(
                "end_us",
                format!("{} is before start_us {}", a.end_us, a.start_us),
            );
        }
        if i64::try_from(a.rows).is_err() {
            return bad("rows", format!("{} is too large to store", a.rows));
        }
        if !a.detail.is_empty()
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&a.detail)
        {
            return bad("detail", format!("is not JSON text ({e})"));
        }
        if let Some(first) = seen.insert(a.id.as_str(), index) {
            return bad(
                "id",
                format!("is given twice in the call (also alerts[{first}])"),
            );
        }
    }
    Ok(())
}

/// Alerts per statement when storing: 15 values each, well under both
/// backends' limits on bound parameters (SQLite 32,766, PostgreSQL 65,535).
const ALERTS_PER_STATEMENT: usize = 500;

/// The write statements, spelled for one backend. A call's alerts are written
/// in blocks of [`ALERTS_PER_STATEMENT`]: per block one statement counts the ids
/// stored already and one multi-row upsert writes them all (two statements per
/// alert, 10⁵ alerts at 10,000 devices, were most of the time storing them).
#[derive(Debug)]
pub(crate) struct AlertSql {
    /// The dialect's placeholder numbering.
    params_of: fn(&str) -> String,
    /// One alert's values: `(?, ?, …)`, timestamps converted as the dialect does.
    row: String,
    /// `INSERT … (columns) VALUES `.
    head: String,
    /// The conflict clause: replace the stored row where any value differs.
    on_conflict: String,
    /// The upsert of one alert, numbered: the live path stores alerts one by
    /// one, and takes this text rather than having it spelled per alert.
    one: String,
}

impl AlertSql {
    pub(crate) fn new(d: &Dialect) -> Self {
        let ts = d.ts_param;
        let values = [
            "?", "?", "?", ts, ts, ts, "?", "?", "?", "?", "?", "?", "?", "?", "?",
        ];
        let value_cols = &COLUMNS[2..];
        let set = value_cols
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let differs = value_cols
            .iter()
            .map(|c| format!("cur.{c} IS DISTINCT FROM excluded.{c}"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let row = format!("({})", values.join(", "));
        let head = format!(
            "INSERT INTO itap_alerts AS cur ({}) VALUES ",
            COLUMNS.join(", ")
        );
        let on_conflict = format!(" ON CONFLICT (dataset, id) DO UPDATE SET {set} WHERE {differs}");
        AlertSql {
            params_of: d.params_of,
            one: d.params(&format!("{head}{row}{on_conflict}")),
            row,
            head,
            on_conflict,
        }
    }

    /// The blocks a call's alerts are written in, in order.
    pub(crate) fn blocks(alerts: &[AlertRecord]) -> std::slice::Chunks<'_, AlertRecord> {
        alerts.chunks(ALERTS_PER_STATEMENT)
    }

    /// The statement whose one row counts how many of `block`'s ids `dataset`
    /// holds. (Like [`crate::ledger::advance`], the statements are returned for
    /// the backend to run in its transaction.)
    pub(crate) fn count_stored<'q, DB: sqlx::Database>(
        &self,
        dataset: &'q str,
        block: &'q [AlertRecord],
    ) -> Query<'q, DB, DB::Arguments>
    where
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let sql = (self.params_of)(&format!(
            "SELECT COUNT(*) FROM itap_alerts WHERE dataset = ? AND id IN ({})",
            vec!["?"; block.len()].join(", ")
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(dataset);
        for a in block {
            q = q.bind(a.id.as_str());
        }
        q
    }

    /// The statement that stores `block` in `dataset`; it affects one row per
    /// alert it inserted or replaced, none for a stored row with the same
    /// values. The alerts must have passed the checks of [`Store::put_alerts`]
    /// (their ids distinct).
    pub(crate) fn upsert<'q, DB: sqlx::Database>(
        &self,
        dataset: &'q str,
        block: &'q [AlertRecord],
    ) -> Query<'q, DB, DB::Arguments>
    where
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let sql = if block.len() == 1 {
            self.one.clone()
        } else {
            (self.params_of)(&format!(
                "{}{}{}",
                self.head,
                vec![self.row.as_str(); block.len()].join(", "),
                self.on_conflict
            ))
        };
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in block {
            q = q
                .bind(dataset)
                .bind(a.id.as_str())
                .bind(a.device.as_str())
                .bind(a.start_us)
                .bind(a.end_us)
                .bind(a.peak_us)
                // Checked to fit by `check_alerts`.
                .bind(i64::try_from(a.rows).unwrap_or(i64::MAX))
                // `+ 0.0` turns -0.0 into 0.0, which is what SQLite reads back.
                .bind(a.peak_score + 0.0)
                .bind(a.mean_score + 0.0)
                .bind(a.severity.as_str())
                .bind(a.family.as_str())
                .bind(a.route.as_str())
                .bind(a.rule.as_str())
                .bind(a.detail.as_str())
                .bind(a.model.as_str());
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str) -> AlertRecord {
        AlertRecord {
            id: id.to_owned(),
            device: "DEV-0001".to_owned(),
            start_us: 0,
            end_us: 10,
            peak_us: 5,
            rows: 2,
            peak_score: 0.9,
            mean_score: 0.7,
            severity: "warning".to_owned(),
            family: "thermal".to_owned(),
            route: "maintenance".to_owned(),
            rule: "score>0.8".to_owned(),
            detail: "{}".to_owned(),
            model: String::new(),
        }
    }

    #[test]
    fn checks_name_the_field_and_the_alert() {
        assert!(check_alerts("d", &[alert("a"), alert("b")]).is_ok());
        type Spoil = fn(&mut AlertRecord);
        let cases: [(Spoil, &str); 9] = [
            (|a| a.device = " ".into(), "`device` is empty"),
            (|a| a.mean_score = f64::NAN, "`mean_score` is NaN"),
            (|a| a.peak_score = f64::INFINITY, "`peak_score` is inf"),
            (|a| a.end_us = -1, "`end_us` -1 is before start_us 0"),
            (
                |a| a.peak_us = i64::MAX,
                "`peak_us` 9223372036854775807 is outside",
            ),
            (|a| a.rows = u64::MAX, "`rows`"),
            (|a| a.detail = "{".into(), "`detail` is not JSON"),
            (|a| a.route = "a\0b".into(), "`route` holds a NUL"),
            (
                |a| a.id = "a".into(),
                "`id` is given twice in the call (also alerts[0])",
            ),
        ];
        for (spoil, want) in cases {
            let mut b = alert("b");
            spoil(&mut b);
            let id = b.id.clone();
            let e = check_alerts("d", &[alert("a"), b]).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(e.contains(&format!("alerts[1] (id {id:?})")), "{e}");
        }
        let mut empty = alert("");
        empty.id = String::new();
        let e = check_alerts("d", &[empty]).unwrap_err().to_string();
        assert!(
            e.contains("alerts[0] (id \"\")") && e.contains("`id` is empty"),
            "{e}"
        );
    }

    #[test]
    fn severity_filter_selects_that_severity_and_higher() {
        let q = AlertQuery::all().severity_at_least("warning");
        assert_eq!(q.severities().unwrap(), Some(&["warning", "critical"][..]));
        assert_eq!(AlertQuery::all().severities().unwrap(), None);
        let e = AlertQuery::all()
            .severity_at_least("urgent")
            .severities()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("severity_at_least") && e.contains("\"urgent\""),
            "{e}"
        );
    }

    #[test]
    fn counts_tell_inserted_updated_and_unchanged() {
        let mut w = AlertsWritten::default();
        // 10 alerts, 6 of them stored before; 7 rows changed: 4 inserted, 3 replaced.
        w.count_block(10, 6, 7);
        assert_eq!(
            w,
            AlertsWritten {
                inserted: 4,
                updated: 3,
                unchanged: 3
            }
        );
        // A block stored before with the same values, then one wholly new.
        w.count_block(5, 5, 0);
        w.count_block(2, 0, 2);
        assert_eq!(
            w,
            AlertsWritten {
                inserted: 6,
                updated: 3,
                unchanged: 8
            }
        );
    }
}
