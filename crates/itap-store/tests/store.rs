//! Storage tests, run on SQLite always and on PostgreSQL when `ITAP_TEST_POSTGRES_URL`
//! is set (each test in its own schema, dropped and re-created first).

use itap_store::ParamGuard;
use itap_store::{Backend, Error, IngestSource, OnConflict, RangeQuery, Store, StoreOptions};
use itap_telemetry::{Batch, BatchColumns, Schema, Signal, SignalKind, SimParams, State, simulate};
use itap_validate::{Validated, ValidationParams, validate_batch};

/// A store per backend for one test: SQLite in a temporary folder, and PostgreSQL in
/// schema `itap_test_<name>` when the server is configured.
async fn stores(name: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(Store::connect(&url).await.unwrap(), Some(dir))];
    match std::env::var("ITAP_TEST_POSTGRES_URL") {
        Ok(pg) if !pg.is_empty() => {
            let schema = format!("itap_test_{name}");
            // Start from nothing, whatever an earlier run left.
            drop_schema(&pg, &schema).await;
            let store = Store::connect_with(&StoreOptions::new(pg).pg_schema(schema))
                .await
                .unwrap();
            out.push((store, None));
        }
        _ => eprintln!("{name}: PostgreSQL part skipped: ITAP_TEST_POSTGRES_URL is not set"),
    }
    out
}

/// Drops a PostgreSQL schema and everything in it, if it exists.
async fn drop_schema(pg: &str, schema: &str) {
    let admin = sqlx::PgPool::connect(pg).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
}

fn fleet(devices: usize, hours: f64) -> Batch {
    simulate(
        &SimParams::default()
            .devices(devices)
            .hours(hours)
            .check()
            .unwrap(),
    )
}

fn validated(batch: Batch) -> Validated<Batch> {
    let params = ValidationParams::default().check().unwrap();
    let (report, v) = validate_batch(batch, &params);
    v.unwrap_or_else(|_| panic!("test data must validate: {report:?}"))
}

fn source(tag: &str) -> IngestSource {
    IngestSource {
        path: format!("{tag}.csv"),
        sha256: format!("sha-{tag}"),
    }
}

async fn ingest(
    store: &Store,
    dataset: &str,
    batch: &Validated<Batch>,
    chunk: usize,
    policy: OnConflict,
) -> itap_store::IngestReport {
    let mut ing = store
        .begin_ingest(dataset, batch.schema(), source("t"), policy)
        .await
        .unwrap();
    let n = batch.len();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let rows: Vec<usize> = (start..end).collect();
        let part = validated(batch.take(&rows));
        ing.write(&part).await.unwrap();
        start = end;
    }
    ing.finish(source("t"), n as u64, 0).await.unwrap()
}

/// Asserts two batches hold the same rows in the same order, bit for bit.
fn assert_same_rows(a: &Batch, b: &Batch) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.timestamps(), b.timestamps());
    for r in 0..a.len() {
        assert_eq!(a.device_of(r), b.device_of(r), "row {r}");
        assert_eq!(a.tag_of(r), b.tag_of(r), "row {r}");
    }
    assert_eq!(a.states(), b.states());
    assert_eq!(a.error_codes(), b.error_codes());
    for k in 0..a.schema().len() {
        let name = &a.schema().signals()[k].name;
        let other = b.signal_by_name(name).unwrap();
        for (r, (x, y)) in a.signal(k).iter().zip(other).enumerate() {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "{name} row {r}: {x} vs {y}"
            );
        }
    }
}

#[tokio::test]
async fn ingest_is_idempotent_and_round_trips() {
    let batch = validated(fleet(4, 2.0));
    let n = batch.len() as u64;
    for (store, _dir) in stores("roundtrip").await {
        let first = ingest(&store, "telemetry", &batch, 1000, OnConflict::Keep).await;
        assert_eq!(first.counts.inserted, n, "{:?}", store.backend());
        assert_eq!(first.counts.duplicates, 0);
        let again = ingest(&store, "telemetry", &batch, 777, OnConflict::Keep).await;
        assert_eq!(again.counts.inserted, 0, "re-ingest inserts nothing");
        assert_eq!(again.counts.duplicates, n);
        assert_eq!(again.counts.conflicts, 0);
        assert_eq!(store.row_count("telemetry").await.unwrap(), n);

        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&batch, &back);

        let ledger = store.ledger(Some("telemetry")).await.unwrap();
        assert_eq!(ledger.len(), 2);
        assert!(
            ledger
                .iter()
                .all(|e| e.status == "completed" && e.finished_us.is_some())
        );
        assert_eq!(ledger[1].counts.inserted, n);
        assert_eq!(ledger[1].rows_read, n);
    }
}

#[tokio::test]
async fn a_chunk_of_several_statements_round_trips() {
    // 11,520 rows in one chunk: three full multi-row statements in SQLite (the
    // same statement bound and run again) and a shorter one, faults and
    // dropouts included, so tags, NULLs and states all go through.
    let batch = validated(fleet(8, 4.0));
    assert!(batch.tagged_rows() > 0);
    let n = batch.len() as u64;
    for (store, _dir) in stores("statements").await {
        let first = ingest(&store, "telemetry", &batch, 100_000, OnConflict::Keep).await;
        assert_eq!(first.counts.inserted, n, "{:?}", store.backend());
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&batch, &back);
        let again = ingest(&store, "telemetry", &batch, 100_000, OnConflict::Update).await;
        assert_eq!(again.counts.conflicts, 0, "{:?}", store.backend());
        assert_eq!(store.row_count("telemetry").await.unwrap(), n);
    }
}

#[tokio::test]
async fn a_value_that_does_not_fit_its_column_stores_nothing_of_its_chunk() {
    // 12,000 rows of one device, `rpm` whole numbers but one. In SQLite a
    // statement takes 32,766 / 7 = 4,680 rows: the first chunk (4,000 rows) is
    // one statement; the second (8,000) a full one, which runs, and the rest,
    // where the bad value is.
    let schema = Schema::new(vec![
        Signal::new("rpm").kind(SignalKind::Int),
        Signal::new("x"),
    ])
    .unwrap();
    let n = 12_000usize;
    let mut rpm: Vec<f64> = (0..n).map(|i| (1000 + i % 7) as f64).collect();
    rpm[3] = f64::NAN;
    let columns = |rpm: Vec<f64>| BatchColumns {
        schema: schema.clone(),
        timestamps: (0..n as i64).map(|i| i * 1_000_000).collect(),
        device_names: vec!["m1".into()],
        device_codes: vec![0; n],
        signals: vec![rpm, (0..n).map(|i| i as f64 / 3.0).collect()],
        states: Some(vec![State::Run; n]),
        error_codes: Some(vec![0; n]),
        tag_names: vec![String::new()],
        tag_codes: Some(vec![0; n]),
    };
    let good = validated(Batch::from_columns(columns(rpm.clone())).unwrap());
    let mut bad_rpm = rpm;
    bad_rpm[4_000 + 4_680 + 10] = 2.5;
    let bad = validated(Batch::from_columns(columns(bad_rpm)).unwrap());
    let chunks = [0..4_000, 4_000..n];
    for (store, _dir) in stores("not_integer").await {
        let mut ing = store
            .begin_ingest("m", bad.schema(), source("bad"), OnConflict::Keep)
            .await
            .unwrap();
        let first = validated(bad.take(&chunks[0].clone().collect::<Vec<_>>()));
        assert_eq!(ing.write(&first).await.unwrap().inserted, 4_000);
        let second = validated(bad.take(&chunks[1].clone().collect::<Vec<_>>()));
        let err = ing.write(&second).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::NotInteger { .. }), "{msg}");
        assert!(msg.contains("`rpm`") && msg.contains("2.5"), "{msg}");
        drop(ing);
        // The first chunk is stored, nothing of the second; the store takes the
        // good rows afterwards, and gives them back as written.
        assert_eq!(
            store.row_count("m").await.unwrap(),
            4_000,
            "{:?}",
            store.backend()
        );
        let again = ingest(&store, "m", &good, 5_000, OnConflict::Keep).await;
        assert_eq!(again.counts.inserted, (n - 4_000) as u64);
        assert_eq!(again.counts.duplicates, 4_000);
        let back = store.load_range("m", &RangeQuery::all()).await.unwrap();
        assert_same_rows(&good, &back);
    }
}

#[tokio::test]
async fn conflicts_are_counted_kept_or_updated() {
    let batch = fleet(3, 1.0);
    let n = batch.len();
    let original = validated(batch.clone());
    // Change rpm on every 10th row: same keys, different values.
    let mut cols = batch.into_columns();
    let changed: Vec<usize> = (0..n).step_by(10).collect();
    for &r in &changed {
        cols.signals[0][r] += 1.0;
    }
    let modified = validated(Batch::from_columns(cols).unwrap());
    for (store, _dir) in stores("conflicts").await {
        ingest(&store, "telemetry", &original, 500, OnConflict::Keep).await;
        let kept = ingest(&store, "telemetry", &modified, 500, OnConflict::Keep).await;
        assert_eq!(kept.counts.conflicts, changed.len() as u64);
        assert_eq!(kept.counts.duplicates, (n - changed.len()) as u64);
        assert_eq!(kept.counts.inserted, 0);
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&original, &back);

        let updated = ingest(&store, "telemetry", &modified, 500, OnConflict::Update).await;
        assert_eq!(updated.counts.updated, changed.len() as u64);
        assert_eq!(updated.counts.inserted, 0);
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&modified, &back);
        assert_eq!(store.row_count("telemetry").await.unwrap(), n as u64);
    }
}

/// A new SQLite dataset is one table in `(device_id, ts)` order (`WITHOUT
/// ROWID`); one made by an earlier ITAP (a rowid table and a unique index) goes
/// on working: a re-ingest stores nothing twice, conflicts are counted, kept or
/// updated, on either layout.
#[tokio::test]
async fn a_sqlite_dataset_of_either_layout_keeps_one_row_per_key() {
    let batch = fleet(3, 1.0);
    let n = batch.len();
    let original = validated(batch.clone());
    let mut cols = batch.into_columns();
    let changed: Vec<usize> = (0..n).step_by(7).collect();
    for &r in &changed {
        cols.signals[0][r] += 1.0;
    }
    let modified = validated(Batch::from_columns(cols).unwrap());
    for earlier_layout in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        ingest(&store, "telemetry", &original, 500, OnConflict::Keep).await;
        store.close().await;
        // One connection, so each statement sees the schema the last one left.
        let raw = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        if earlier_layout {
            // The table as ITAP made it before: a rowid table, a unique index.
            let mut cols = vec![
                "device_id TEXT NOT NULL".to_owned(),
                "ts INTEGER NOT NULL".to_owned(),
                "state TEXT".to_owned(),
                "error_code INTEGER".to_owned(),
                "anomaly_tag TEXT".to_owned(),
            ];
            for s in original.schema().signals() {
                let ty = match s.kind {
                    SignalKind::Float => "REAL",
                    SignalKind::Int => "INTEGER",
                };
                cols.push(format!("\"{}\" {ty}", s.name));
            }
            for stmt in [
                format!("CREATE TABLE earlier ({})", cols.join(", ")),
                "INSERT INTO earlier SELECT * FROM telemetry".to_owned(),
                "DROP TABLE telemetry".to_owned(),
                "ALTER TABLE earlier RENAME TO telemetry".to_owned(),
                "CREATE UNIQUE INDEX telemetry_device_ts ON telemetry (device_id, ts)".to_owned(),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(stmt))
                    .execute(&raw)
                    .await
                    .unwrap();
            }
        }
        let ddl: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'telemetry'")
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!(ddl.contains("WITHOUT ROWID"), !earlier_layout, "{ddl}");
        raw.close().await;

        let store = Store::connect(&url).await.unwrap();
        let again = ingest(&store, "telemetry", &original, 400, OnConflict::Keep).await;
        assert_eq!(again.counts.inserted, 0, "earlier layout: {earlier_layout}");
        assert_eq!(again.counts.duplicates, n as u64);
        let kept = ingest(&store, "telemetry", &modified, 500, OnConflict::Keep).await;
        assert_eq!(kept.counts.conflicts, changed.len() as u64);
        assert_eq!(kept.counts.inserted, 0);
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&original, &back);
        let updated = ingest(&store, "telemetry", &modified, 600, OnConflict::Update).await;
        assert_eq!(updated.counts.updated, changed.len() as u64);
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&modified, &back);
        assert_eq!(store.row_count("telemetry").await.unwrap(), n as u64);
        store.close().await;
    }
}

#[tokio::test]
async fn a_different_schema_is_refused_by_name() {
    let batch = validated(fleet(2, 0.5));
    let other_schema = Schema::new(vec![
        Signal::new("rpm").kind(SignalKind::Int),
        Signal::new("pressure_bar"),
    ])
    .unwrap();
    for (store, _dir) in stores("schema").await {
        ingest(&store, "telemetry", &batch, 10_000, OnConflict::Keep).await;
        let err = store
            .begin_ingest("telemetry", &other_schema, source("x"), OnConflict::Keep)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::SchemaMismatch { .. }), "{msg}");
        assert!(msg.contains("missing temp_c"), "{msg}");
        assert!(msg.contains("pressure_bar"), "{msg}");
        // Another dataset takes it.
        assert!(
            store
                .begin_ingest("press", &other_schema, source("x"), OnConflict::Keep)
                .await
                .is_ok()
        );
        assert_eq!(store.datasets().await.unwrap(), ["press", "telemetry"]);
        assert!(
            store
                .begin_ingest("Bad-Name", &other_schema, source("x"), OnConflict::Keep)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn queries_windows_latest_and_stats() {
    let batch = fleet(5, 1.0);
    let n = batch.len();
    let v = validated(batch.clone());
    for (store, _dir) in stores("queries").await {
        ingest(&store, "telemetry", &v, 4096, OnConflict::Keep).await;
        let (t0, t1) = batch.time_bounds().unwrap();
        let mid = t0 + (t1 - t0) / 2;

        // A time range, all devices: exactly the rows with t0 <= ts < mid.
        let part = store
            .load_range("telemetry", &RangeQuery::between(t0, mid))
            .await
            .unwrap();
        let expected: Vec<usize> = (0..n).filter(|&r| batch.timestamps()[r] < mid).collect();
        assert_same_rows(&batch.take(&expected), &part);

        // One device's window.
        let w = store
            .device_window("telemetry", "DEV-0003", mid, t1 + 1)
            .await
            .unwrap();
        let expected: Vec<usize> = (0..n)
            .filter(|&r| batch.device_of(r) == "DEV-0003" && batch.timestamps()[r] >= mid)
            .collect();
        assert_same_rows(&batch.take(&expected), &w);

        // A page of it: the first rows of that window, then the rest from the
        // next page's start; without bounds, the device's first rows.
        let first = store
            .device_page("telemetry", "DEV-0003", Some(mid), None, 7)
            .await
            .unwrap();
        assert_same_rows(&batch.take(&expected[..7]), &first);
        let rest = store
            .device_page(
                "telemetry",
                "DEV-0003",
                Some(batch.timestamps()[expected[7]]),
                Some(t1 + 1),
                10_000,
            )
            .await
            .unwrap();
        assert_same_rows(&batch.take(&expected[7..]), &rest);
        let head = store
            .device_page("telemetry", "DEV-0003", None, None, 3)
            .await
            .unwrap();
        let dev3: Vec<usize> = (0..n)
            .filter(|&r| batch.device_of(r) == "DEV-0003")
            .collect();
        assert_same_rows(&batch.take(&dev3[..3]), &head);
        // A device id with SQL in it is a value: no rows.
        let none = store
            .device_page("telemetry", "x' OR '1'='1", None, None, 3)
            .await
            .unwrap();
        assert!(none.is_empty());

        // Streaming in small chunks gives the same rows.
        let mut streamed = 0;
        let mut chunks = 0;
        store
            .stream_range("telemetry", &RangeQuery::all(), 100, |b| {
                assert!(b.len() <= 100);
                streamed += b.len();
                chunks += 1;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(streamed, n);
        assert_eq!(chunks, n.div_ceil(100));

        // The latest 3 rows of each device.
        let latest = store.latest("telemetry", 3).await.unwrap();
        assert_eq!(latest.len(), 15);
        assert!(
            latest
                .timestamps()
                .iter()
                .all(|&t| t >= t1 - 2 * 10_000_000)
        );

        // Metrics.
        let s = store.stats("telemetry").await.unwrap();
        assert_eq!(s.rows, n as u64);
        assert_eq!((s.first_us, s.last_us), (Some(t0), Some(t1)));
        assert_eq!(s.rows_per_device.len(), 5);
        assert!(s.rows_per_device.iter().all(|(_, c)| *c == (n / 5) as u64));
        let temp_missing = batch
            .signal_by_name("temp_c")
            .unwrap()
            .iter()
            .filter(|v| v.is_nan())
            .count();
        let temp = s
            .missing
            .iter()
            .find(|(name, _, _)| name == "temp_c")
            .unwrap();
        assert_eq!(temp.1, temp_missing as u64);
        assert_eq!(s.tagged_rows, batch.tagged_rows() as u64);
        let errors = batch
            .error_codes()
            .unwrap()
            .iter()
            .filter(|&&e| e != 0)
            .count();
        assert_eq!(s.error_rows, errors as u64);
        assert!((s.tag_rate - batch.tagged_rows() as f64 / n as f64).abs() < 1e-12);
    }
}

#[tokio::test]
async fn whitespace_tags_count_as_normal_in_stats() {
    let schema = Schema::new(vec![Signal::new("x")]).unwrap();
    let batch = Batch::from_columns(BatchColumns {
        schema,
        timestamps: vec![0, 10, 20],
        device_names: vec!["a".into()],
        device_codes: vec![0, 0, 0],
        signals: vec![vec![1.0, f64::NAN, 3.0]],
        states: Some(vec![State::Run, State::Idle, State::Run]),
        error_codes: Some(vec![0, 7, 0]),
        tag_names: vec![String::new(), "leak".into()],
        tag_codes: Some(vec![0, 1, 0]),
    })
    .unwrap();
    for (store, _dir) in stores("tags").await {
        ingest(
            &store,
            "small",
            &validated(batch.clone()),
            10,
            OnConflict::Keep,
        )
        .await;
        let s = store.stats("small").await.unwrap();
        assert_eq!(s.tags, [("leak".to_owned(), 1)]);
        assert_eq!(s.errors, [(7, 1)]);
        assert_eq!(s.missing, [("x".to_owned(), 1, 1.0 / 3.0)]);
    }
}

#[tokio::test]
async fn an_interrupted_ingest_completes_exactly_on_rerun() {
    let batch = validated(fleet(4, 1.0));
    let n = batch.len();
    for (store, _dir) in stores("interrupted").await {
        // Write two chunks, then stop without finishing: what a killed process leaves.
        {
            let mut ing = store
                .begin_ingest("telemetry", batch.schema(), source("k"), OnConflict::Keep)
                .await
                .unwrap();
            for range in [0..300, 300..600] {
                let part = validated(batch.take(&range.collect::<Vec<_>>()));
                ing.write(&part).await.unwrap();
            }
        }
        assert_eq!(store.row_count("telemetry").await.unwrap(), 600);
        let ledger = store.ledger(Some("telemetry")).await.unwrap();
        assert_eq!(ledger[0].status, "running");
        assert_eq!(
            ledger[0].counts.inserted, 600,
            "the ledger matches the committed chunks"
        );
        let rerun = ingest(&store, "telemetry", &batch, 250, OnConflict::Keep).await;
        assert_eq!(rerun.counts.inserted, (n - 600) as u64);
        assert_eq!(rerun.counts.duplicates, 600);
        let back = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        assert_same_rows(&batch, &back);
    }
}

#[tokio::test]
async fn the_next_ingest_marks_a_dead_process_entry_interrupted() {
    if !std::path::Path::new("/proc/self").exists() {
        eprintln!("skipped: the ledger tells dead processes only where /proc exists");
        return;
    }
    let batch = validated(fleet(2, 0.5));
    for (store, _dir) in stores("orphan").await {
        let ing = store
            .begin_ingest("telemetry", batch.schema(), source("o"), OnConflict::Keep)
            .await
            .unwrap();
        let id = ing.ledger_id();
        drop(ing);
        // What a killed ingest leaves: a `running` entry whose process is gone.
        let pid = i64::from(i32::MAX);
        match store.backend() {
            Backend::Sqlite => {
                let raw = sqlx::SqlitePool::connect(store.url()).await.unwrap();
                sqlx::query("UPDATE itap_ingest_ledger SET pid = ? WHERE id = ?")
                    .bind(pid)
                    .bind(id)
                    .execute(&raw)
                    .await
                    .unwrap();
                raw.close().await;
            }
            Backend::Postgres => {
                let raw = sqlx::PgPool::connect(store.url()).await.unwrap();
                sqlx::query(
                    "UPDATE itap_test_orphan.itap_ingest_ledger SET pid = $1 WHERE id = $2",
                )
                .bind(pid)
                .bind(id)
                .execute(&raw)
                .await
                .unwrap();
                raw.close().await;
            }
        }
        let before = store.ledger(Some("telemetry")).await.unwrap();
        assert_eq!(before[0].status, "running", "{:?}", store.backend());
        let report = ingest(&store, "telemetry", &batch, 500, OnConflict::Keep).await;
        let after = store.ledger(Some("telemetry")).await.unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].id, report.ledger_id);
        assert_eq!(after[0].status, "completed");
        assert_eq!(after[1].id, id);
        assert_eq!(after[1].status, "interrupted", "{:?}", store.backend());
        assert_eq!(
            after[1].message.as_deref(),
            Some("the process ended before the ingest finished")
        );
        assert_eq!(after[1].finished_us, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_store_one_copy() {
    let batch = validated(fleet(6, 1.0));
    let n = batch.len() as u64;
    for (store, _dir) in stores("concurrent").await {
        let a = store.clone();
        let b = store.clone();
        let (ba, bb) = (batch.clone(), batch.clone());
        let ta =
            tokio::spawn(async move { ingest(&a, "telemetry", &ba, 500, OnConflict::Keep).await });
        let tb =
            tokio::spawn(async move { ingest(&b, "telemetry", &bb, 700, OnConflict::Keep).await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        assert_eq!(
            ra.counts.inserted + rb.counts.inserted,
            n,
            "{:?}",
            store.backend()
        );
        assert_eq!(ra.counts.duplicates + rb.counts.duplicates, n);
        assert_eq!(store.row_count("telemetry").await.unwrap(), n);
    }
}

/// Stores opened at once on a schema that does not exist yet all open: the
/// losers of `CREATE SCHEMA IF NOT EXISTS`'s race (a unique violation on the
/// catalogue) find the schema made. PostgreSQL only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opened_at_once_on_a_new_schema_all_open() {
    let Ok(pg) = std::env::var("ITAP_TEST_POSTGRES_URL") else {
        eprintln!("skipped: ITAP_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = "itap_test_schema_race";
    for round in 0..5 {
        drop_schema(&pg, schema).await;
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let o = StoreOptions::new(pg.clone()).pg_schema(schema);
                tokio::spawn(async move { Store::connect_with(&o).await })
            })
            .collect();
        for open in opens {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            store.close().await;
        }
    }
    drop_schema(&pg, schema).await;
}
