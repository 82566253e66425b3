//! Ingest throughput (rows/s) into SQLite and, when `ITAP_TEST_POSTGRES_URL` is set,
//! PostgreSQL: a first ingest into an empty dataset and a re-ingest of the same rows.

use itap_store::ParamGuard;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use itap_store::{IngestSource, OnConflict, Store, StoreOptions};
use itap_telemetry::{Batch, SimParams, simulate};
use itap_validate::{Validated, ValidationParams, validate_batch};

const CHUNK: usize = 65_536;

fn chunks(batch: &Batch) -> Vec<Validated<Batch>> {
    let params = ValidationParams::default().check().expect("params");
    (0..batch.len())
        .step_by(CHUNK)
        .map(|s| {
            let rows: Vec<usize> = (s..(s + CHUNK).min(batch.len())).collect();
            validate_batch(batch.take(&rows), &params)
                .1
                .unwrap_or_else(|_| panic!("simulated rows validate"))
        })
        .collect()
}

async fn ingest_all(store: &Store, parts: &[Validated<Batch>]) {
    let src = IngestSource {
        path: "bench".into(),
        sha256: "-".into(),
    };
    let mut ing = store
        .begin_ingest(
            "telemetry",
            parts[0].schema(),
            src.clone(),
            OnConflict::Keep,
        )
        .await
        .expect("begin");
    for p in parts {
        ing.write(p).await.expect("write");
    }
    let rows = parts.iter().map(|p| p.len() as u64).sum();
    ing.finish(src, rows, 0).await.expect("finish");
}

async fn fresh(kind: &str, i: u64) -> (Store, Option<tempfile::TempDir>) {
    if kind == "sqlite" {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        (Store::connect(&url).await.expect("sqlite"), Some(dir))
    } else {
        let url = std::env::var("ITAP_TEST_POSTGRES_URL").expect("url");
        let schema = format!("itap_bench_{i}");
        let admin = sqlx::PgPool::connect(&url).await.expect("pg");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&admin)
        .await
        .expect("drop");
        admin.close().await;
        let s = Store::connect_with(&StoreOptions::new(url).pg_schema(schema))
            .await
            .expect("pg store");
        (s, None)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut backends = vec!["sqlite"];
    if std::env::var("ITAP_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        backends.push("postgres");
    }
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for (devices, hours) in [(25, 6.0), (100, 24.0)] {
        let batch = simulate(
            &SimParams::default()
                .devices(devices)
                .hours(hours)
                .check()
                .expect("params"),
        );
        let rows = batch.len();
        let parts = chunks(&batch);
        g.throughput(Throughput::Elements(rows as u64));
        for kind in &backends {
            g.bench_with_input(
                BenchmarkId::new(format!("ingest_{kind}"), rows),
                &parts,
                |b, parts| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for i in 0..iters {
                                let (store, _dir) = fresh(kind, i).await;
                                let t = Instant::now();
                                ingest_all(&store, parts).await;
                                total += t.elapsed();
                                store.close().await;
                            }
                            total
                        })
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("reingest_{kind}"), rows),
                &parts,
                |b, parts| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let (store, _dir) = fresh(kind, 1000).await;
                            ingest_all(&store, parts).await;
                            let t = Instant::now();
                            for _ in 0..iters {
                                ingest_all(&store, parts).await;
                            }
                            let total = t.elapsed();
                            store.close().await;
                            total
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
