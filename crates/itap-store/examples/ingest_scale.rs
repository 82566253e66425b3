//! How the ingest rate holds as a dataset grows: simulates a fleet, validates it in
//! chunks and ingests it into a fresh dataset, printing the rate of each tenth of
//! the rows and the whole.
//!
//! ```sh
//! cargo run --release -p itap-store --example ingest_scale -- --devices 1000 --hours 24
//! cargo run --release -p itap-store --example ingest_scale -- --devices 100 --hours 24 \
//!     --db postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Flags: `--devices N` (100), `--hours H` (24), `--chunk-rows N` (65,536; `itap
//! ingest` uses 256 per device when that is more, so pass 256000 for 1,000
//! devices to see what it does), `--db URL` (a new SQLite file in a temporary folder; a
//! PostgreSQL URL works in the schema `itap_ingest_scale`, dropped first),
//! `--by-device` (validate the batch once and store pieces of whole devices in id
//! order, SQLite with the 8 MiB page cache of appends: how `itap run` stores an
//! input it holds in memory, here alone instead of beside the analysis).

use std::time::Instant;

use itap_store::{
    APPEND_SQLITE_CACHE_KIB, IngestSource, OnConflict, ParamGuard, Store, StoreOptions,
};
use itap_telemetry::{Batch, SimParams, simulate};
use itap_validate::{Validated, ValidationParams, validate_batch};

struct Flags {
    devices: usize,
    hours: f64,
    chunk_rows: usize,
    db: Option<String>,
    by_device: bool,
}

fn flags() -> Result<Flags, String> {
    let mut f = Flags {
        devices: 100,
        hours: 24.0,
        chunk_rows: 65_536,
        db: None,
        by_device: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--devices" => f.devices = value()?.parse().map_err(|e| format!("--devices: {e}"))?,
            "--hours" => f.hours = value()?.parse().map_err(|e| format!("--hours: {e}"))?,
            "--chunk-rows" => {
                f.chunk_rows = value()?.parse().map_err(|e| format!("--chunk-rows: {e}"))?;
            }
            "--db" => f.db = Some(value()?),
            "--by-device" => f.by_device = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if f.chunk_rows == 0 {
        return Err("--chunk-rows must be at least 1".into());
    }
    Ok(f)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let f = flags()?;
    let sim = SimParams::default()
        .devices(f.devices)
        .hours(f.hours)
        .check()?;
    let t = Instant::now();
    let batch = simulate(&sim);
    let n = batch.len();
    eprintln!(
        "simulated {n} rows ({} devices) in {:.2} s",
        f.devices,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let url = match &f.db {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", dir.path().join("scale.db").display()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = if url.starts_with("postgres") {
            let admin = sqlx::PgPool::connect(&url).await?;
            sqlx::query("DROP SCHEMA IF EXISTS itap_ingest_scale CASCADE")
                .execute(&admin)
                .await?;
            admin.close().await;
            Store::connect_with(&StoreOptions::new(url.clone()).pg_schema("itap_ingest_scale"))
                .await?
        } else if f.by_device {
            let mut opts = StoreOptions::new(url.clone());
            opts.sqlite_cache_kib = APPEND_SQLITE_CACHE_KIB;
            Store::connect_with(&opts).await?
        } else {
            Store::connect(&url).await?
        };
        let params = ValidationParams::default().check()?;
        let src = IngestSource {
            path: "ingest_scale".into(),
            sha256: "-".into(),
        };
        let mut ing = store
            .begin_ingest("telemetry", batch.schema(), src.clone(), OnConflict::Keep)
            .await?;
        let started = Instant::now();
        let (mut tenth_start, mut tenth_rows, mut done) = (Instant::now(), 0usize, 0usize);
        let mut validating = 0.0;
        let mut pieces: Box<dyn Iterator<Item = Validated<Batch>>> = if f.by_device {
            let v = Instant::now();
            let valid = validate_batch(batch, &params)
                .1
                .map_err(|_| "simulated rows did not validate")?;
            validating += v.elapsed().as_secs_f64();
            let pieces: Vec<_> = valid.device_chunks(f.chunk_rows).collect();
            Box::new(pieces.into_iter())
        } else {
            Box::new((0..n).step_by(f.chunk_rows).map(|s| {
                let rows: Vec<usize> = (s..(s + f.chunk_rows).min(n)).collect();
                validate_batch(batch.take(&rows), &params)
                    .1
                    .expect("simulated rows validate")
            }))
        };
        loop {
            let v = Instant::now();
            let Some(chunk) = pieces.next() else { break };
            validating += v.elapsed().as_secs_f64();
            ing.write(&chunk).await?;
            done += chunk.len();
            tenth_rows += chunk.len();
            if tenth_rows >= n / 10 || done == n {
                let secs = tenth_start.elapsed().as_secs_f64();
                println!(
                    "{done:>11} rows stored: {:>9.0} rows/s over the last {tenth_rows}",
                    tenth_rows as f64 / secs
                );
                (tenth_start, tenth_rows) = (Instant::now(), 0);
            }
        }
        ing.finish(src, n as u64, 0).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "ingested {n} rows into {url} in {secs:.2} s: {:.0} rows/s ({:.0} rows/s without the {validating:.2} s of validation)",
            n as f64 / secs,
            n as f64 / (secs - validating)
        );
        store.close().await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
