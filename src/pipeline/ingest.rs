//! Reading, validating and storing telemetry: the stages before any model.

use std::path::Path;

use itap_store::{
    DEFAULT_DATASET, DEFAULT_DB_URL, IngestReport, IngestSource, OnConflict, RangeQuery, Store,
    StoreOptions,
};
use itap_telemetry::{Batch, ParamGuard, ReadOptions};
use itap_validate::{CheckedValidation, Policy, Report, Validated, ValidatedChunks, validate_file};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::grouped::DeviceGroups;
use crate::pipeline::spill::{Spill, SpillGroups};

/// The most rows one transaction may hold.
const MAX_CHUNK_ROWS: usize = 10_000_000;

/// The most rows [`StoreSettings::rows_per_chunk`] raises a chunk to for a large
/// fleet (about 100 MB of rows in memory).
const MAX_AUTO_CHUNK_ROWS: usize = 1 << 20;

/// Where and how to store: the `[store]` config section.
///
/// | Name | Default | Meaning | Range |
/// |---|---|---|---|
/// | `url` | `sqlite://data/itap.db` | database URL (`sqlite://PATH` or `postgres://…`) | non-empty |
/// | `dataset` | `telemetry` | the dataset (one table) to store into and read from | a plain SQL name |
/// | `pg_schema` | none | PostgreSQL only: the schema to create tables in | a plain SQL name |
/// | `on_conflict` | keep | a stored row with the same (device, time) key and other values: `keep` it or `update` it | keep, update |
/// | `chunk_rows` | 65536 | rows per transaction (at least) | 1 – 10,000,000 |
/// | `chunk_rows_per_device` | 256 | rows per transaction per device of the input, when that is more than `chunk_rows` (up to 1,048,576); 0 turns it off | 0 – 1,000,000 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Database URL.
    pub url: String,
    /// Dataset name.
    pub dataset: String,
    /// PostgreSQL schema, if any.
    pub pg_schema: Option<String>,
    /// Conflict policy.
    pub on_conflict: OnConflict,
    /// Rows per transaction (at least; see [`StoreSettings::rows_per_chunk`]).
    pub chunk_rows: usize,
    /// Rows per transaction per device of the input.
    pub chunk_rows_per_device: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: DEFAULT_DB_URL.to_owned(),
            dataset: DEFAULT_DATASET.to_owned(),
            pg_schema: None,
            on_conflict: OnConflict::Keep,
            chunk_rows: 65_536,
            chunk_rows_per_device: 256,
        }
    }
}

impl ParamGuard for StoreSettings {
    /// Checked settings are the settings themselves: nothing is derived from them.
    type Checked = StoreSettings;
    type Error = Error;

    /// Checks the URL, the dataset name and the chunk size.
    ///
    /// # Errors
    /// [`Error::Store`] for a name that is not a plain SQL name;
    /// [`Error::InvalidParam`] naming the setting otherwise.
    fn check_ref(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            return Err(Error::param(
                "url",
                "name a database: sqlite://PATH or postgres://USER@HOST/DB",
            ));
        }
        // (A PostgreSQL schema name is checked by the store when it connects.)
        itap_store::check_name(&self.dataset)?;
        if !(1..=MAX_CHUNK_ROWS).contains(&self.chunk_rows) {
            return Err(Error::param(
                "chunk_rows",
                format!(
                    "must be between 1 and {MAX_CHUNK_ROWS}, got {}",
                    self.chunk_rows
                ),
            ));
        }
        if self.chunk_rows_per_device > 1_000_000 {
            return Err(Error::param(
                "chunk_rows_per_device",
                format!(
                    "must be between 0 and 1000000, got {}",
                    self.chunk_rows_per_device
                ),
            ));
        }
        Ok(())
    }

    fn check(self) -> Result<StoreSettings> {
        self.check_ref()?;
        Ok(self)
    }
}

impl StoreSettings {
    /// Rows per transaction for an input of `devices` devices: `chunk_rows`, or
    /// `chunk_rows_per_device` per device when that is more (at most 1,048,576
    /// rows, never less than `chunk_rows`).
    ///
    /// Each transaction touches a page of the (device, ts) index per device; with
    /// a thousand devices, 65,536 rows are 65 rows per device and the index pages
    /// written per commit rival the rows themselves (SQLite's ingest of 8.64 M rows
    /// ran at a third of its 864k rate). A few hundred rows per device keep that
    /// cost small whatever the fleet.
    pub fn rows_per_chunk(&self, devices: usize) -> usize {
        let per_device = self
            .chunk_rows_per_device
            .saturating_mul(devices)
            .min(MAX_AUTO_CHUNK_ROWS);
        self.chunk_rows.max(per_device)
    }

    /// Opens the store.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn connect(&self) -> Result<Store> {
        let mut o = StoreOptions::new(self.url.clone());
        o.pg_schema = self.pg_schema.clone();
        Ok(Store::connect_with(&o).await?)
    }

    /// Opens the store for a writer that stores whole devices in id order
    /// ([`store_batch`]): a smaller SQLite page cache
    /// ([`itap_store::APPEND_SQLITE_CACHE_KIB`]) serves it as well.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn connect_for_appends(&self) -> Result<Store> {
        let mut o = StoreOptions::new(self.url.clone());
        o.pg_schema = self.pg_schema.clone();
        o.sqlite_cache_kib = itap_store::APPEND_SQLITE_CACHE_KIB;
        Ok(Store::connect_with(&o).await?)
    }
}

/// The async runtime the store runs on (two worker threads).
///
/// # Errors
/// [`Error::Runtime`] when the runtime cannot start.
pub fn store_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// The refusal of an input whose report does not let it be stored.
pub(crate) fn refused(path: &Path, report: Report) -> Error {
    Error::Refused {
        path: path.display().to_string(),
        reason: report
            .first_error()
            .unwrap_or_else(|| "error-severity findings".to_owned()),
        report: Box::new(report),
    }
}

/// Validates a file as it streams by (writing rows with errors to `quarantine`
/// under the quarantine policy), then opens the store and stores its validated
/// rows (see [`store_validated`]). `on_progress` hears the rows written so far
/// and the rows to write.
///
/// # Errors
/// [`Error::Refused`] (carrying the report) when validation rejects the file:
/// nothing is stored and the store is not opened; the stages' errors otherwise.
pub async fn ingest_file(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
    settings: &StoreSettings,
    on_progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(Report, IngestReport)> {
    let report = validate_file(path, opts, validation, quarantine)?;
    if !report.verdict.is_storable() {
        return Err(refused(path, report));
    }
    let store = settings.connect().await?;
    let total = report.rows_accepted;
    let done = store_validated(
        path,
        opts,
        validation,
        &report,
        &store,
        settings,
        &mut |written| on_progress(written, total),
    )
    .await;
    store.close().await;
    Ok((report, done?))
}

/// Stores the rows of a file that `report` found storable: a reading thread re-reads
/// it in validated chunks (checking its SHA-256 is still the report's) while the
/// database writes them; `on_chunk` hears the rows written so far. On failure the
/// ledger entry is marked failed; committed chunks stay.
///
/// # Errors
/// The store's and the re-read's errors.
pub async fn store_validated(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    report: &Report,
    store: &Store,
    settings: &StoreSettings,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let devices = usize::try_from(report.devices).unwrap_or(usize::MAX);
    let chunk_rows = settings.rows_per_chunk(devices);
    let chunks = ValidatedChunks::open(path, opts, validation, report, chunk_rows)?;
    let schema = chunks.schema().clone();
    let source = source_of(path, report);
    let mut ingest = store
        .begin_ingest(
            &settings.dataset,
            &schema,
            source.clone(),
            settings.on_conflict,
        )
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader = tokio::task::spawn_blocking(move || {
        for chunk in chunks {
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    let mut written = 0u64;
    let outcome: Result<()> = async {
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk?;
            ingest.write(&chunk).await?;
            written += chunk.len() as u64;
            on_chunk(written);
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = reader.await;
    finish_or_fail(ingest, outcome, source, report).await
}

/// [`validate_file`], telling `on_bytes` how many of the file's bytes have
/// been read (after every 16 MiB, and at the end) and how many it has.
///
/// # Errors
/// As [`validate_file`].
pub(crate) fn validate_file_with_progress(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
    on_bytes: &mut dyn FnMut(u64, u64),
) -> Result<Report> {
    /// Counts the bytes read through it.
    struct Counting<'a, R> {
        inner: R,
        done: u64,
        told: u64,
        total: u64,
        on_bytes: &'a mut dyn FnMut(u64, u64),
    }
    impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.done += n as u64;
            if self.done - self.told >= 16 << 20 || (n == 0 && self.done > self.told) {
                self.told = self.done;
                (self.on_bytes)(self.done, self.total.max(self.done));
            }
            Ok(n)
        }
    }
    let io = |source| itap_telemetry::Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let reader = Counting {
        inner: std::io::BufReader::with_capacity(1 << 16, file),
        done: 0,
        told: 0,
        total,
        on_bytes,
    };
    let Some(qpath) = quarantine else {
        return Ok(itap_validate::validate_reader(
            reader, path, opts, validation, None,
        )?);
    };
    let mut qfile = itap_telemetry::AtomicFile::create(qpath)?;
    let report = itap_validate::validate_reader(reader, path, opts, validation, Some(&mut qfile))?;
    qfile.commit()?;
    Ok(report)
}

/// Sets aside the validated rows of a file that `report` found storable: the
/// file is read again in validated chunks (its SHA-256 checked against the
/// report's), and each chunk goes to `spill`; `on_rows` hears the rows set
/// aside so far. Nothing is stored.
///
/// # Errors
/// The re-read's errors, and the spill's when its file cannot be written.
pub(crate) fn spill_validated(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    report: &Report,
    chunk_rows: usize,
    spill: &mut Spill,
    on_rows: &mut dyn FnMut(u64),
) -> Result<()> {
    let chunks = ValidatedChunks::open(path, opts, validation, report, chunk_rows)?;
    // The next chunk is read and validated while this one is written.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        s.spawn(move || {
            for chunk in chunks {
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        });
        let mut done = 0u64;
        for chunk in rx {
            let chunk = chunk?;
            spill.append(chunk.get())?;
            done += chunk.len() as u64;
            on_rows(done);
        }
        Ok(())
    })
}

/// Stores rows that passed validation and were set aside by device (the
/// input's, `report` its validation): whole devices in id order, in groups of
/// at most [`StoreSettings::rows_per_chunk`] rows, each validated again in
/// memory (the store takes only [`Validated`] rows) and written in one
/// transaction. A dataset written device after device takes its rows at one
/// end of its key's order instead of a row of every device at each place in
/// turn. The next group is read and validated while one is written;
/// `on_rows` hears the rows written so far. On failure the ledger entry is
/// marked failed; committed groups stay (a re-run stores the rest).
///
/// # Errors
/// The store's and the spill's errors; a group that does not pass validation
/// again (it cannot, having passed it once) is an error too.
pub(crate) fn store_by_device(
    groups: &mut SpillGroups,
    path: &Path,
    validation: &CheckedValidation,
    report: &Report,
    settings: &StoreSettings,
    on_rows: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let devices = groups.devices().to_vec();
    let chunk_rows = settings.rows_per_chunk(devices.len()) as u64;
    let plan = crate::pipeline::grouped::groups_of(&devices, chunk_rows);
    let Some(schema) = groups.schema().cloned() else {
        return Err(Error::NoData(format!(
            "{}: no rows to store",
            path.display()
        )));
    };
    let source = source_of(path, report);
    let rt = store_runtime()?;
    let store = rt.block_on(settings.connect_for_appends())?;
    let done = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Validated<Batch>>>(1);
        s.spawn(move || {
            for devices in &plan {
                let group = groups.load(devices).and_then(|batch| {
                    match itap_validate::validate_batch(batch, validation) {
                        (r, Ok(valid)) if r.rows_accepted == r.rows => Ok(valid),
                        (r, _) => Err(Error::NoData(format!(
                            "{}: rows set aside after validation failed it again: {}",
                            path.display(),
                            r.first_error()
                                .unwrap_or_else(|| "rows were quarantined".into())
                        ))),
                    }
                });
                let failed = group.is_err();
                if tx.send(group).is_err() || failed {
                    break;
                }
            }
        });
        rt.block_on(write_chunks(
            &store, settings, &schema, source, report, rx, on_rows,
        ))
    });
    rt.block_on(store.close());
    done
}

/// Reads a CSV and validates it: the validated rows when the verdict lets them be
/// used (valid, or quarantined with the bad rows removed), else
/// [`Error::Refused`].
///
/// Under [`Policy::Reject`] the file is read once, in memory, its SHA-256
/// computed alongside (for the report and the ingest ledger); `quarantine` is not
/// used. Under [`Policy::Quarantine`] the file is validated as it streams (rows
/// that do not even parse are findings, not read errors), the rows with an
/// error-severity finding are set aside, and the accepted rows are read back in
/// one [`Validated`] batch (the file's SHA-256 checked against the report's).
/// The set-aside rows go to `quarantine` when given: a CSV with a
/// [`QUARANTINE_REASONS_COLUMN`](itap_validate::QUARANTINE_REASONS_COLUMN)
/// (`line N: check.id: …`) before the row's fields as found, written whole or not
/// at all, and only when the rest of the file can be used (a refused file writes
/// none). The report counts them: `rows - rows_accepted`.
///
/// # Errors
/// [`Error::Telemetry`] naming file, line and column when it cannot be read;
/// [`Error::Validate`] when the quarantine file cannot be written;
/// [`Error::Refused`] when validation rejects it (under either policy a
/// file-level error, such as a missing declared signal, rejects the whole file).
pub fn read_validated(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
) -> Result<(Validated<Batch>, Report)> {
    if validation.params().policy == Policy::Quarantine {
        return read_quarantined(path, opts, validation, quarantine);
    }
    let (batch, sha) = std::thread::scope(|s| {
        let sha = s.spawn(|| itap_validate::sha256_file(path));
        let batch = itap_telemetry::read_csv(path, opts);
        (batch, sha.join())
    });
    let batch = batch?;
    let sha = match sha {
        Ok(r) => r?,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let bytes = std::fs::metadata(path).ok().map(|m| m.len());
    validate_in_memory(batch, validation, path, sha, bytes)
}

/// [`read_validated`] under the quarantine policy: validate streaming (the set-aside
/// rows kept in memory), write them out when the rest is usable, read the accepted
/// rows back in one chunk.
fn read_quarantined(
    path: &Path,
    opts: &ReadOptions,
    validation: &CheckedValidation,
    quarantine: Option<&Path>,
) -> Result<(Validated<Batch>, Report)> {
    let file = std::fs::File::open(path).map_err(|source| itap_telemetry::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut set_aside = Vec::new();
    let report = itap_validate::validate_reader(
        reader,
        path,
        opts,
        validation,
        quarantine.map(|_| &mut set_aside as &mut dyn std::io::Write),
    )?;
    if !report.verdict.is_storable() || report.rows_accepted == 0 {
        return Err(refused(path, report));
    }
    let rows = usize::try_from(report.rows).unwrap_or(usize::MAX);
    let mut chunks = ValidatedChunks::open(path, opts, validation, &report, rows)?;
    // One chunk of every row read holds every accepted row; `next` after it checks
    // the digest and the count against the report.
    let valid = match chunks.next() {
        Some(chunk) => chunk?,
        None => return Err(refused(path, report)),
    };
    if let Some(Err(e)) = chunks.next() {
        return Err(e.into());
    }
    if let Some(q) = quarantine {
        itap_telemetry::write_atomic(q, &set_aside)?;
    }
    Ok((valid, report))
}

/// Validates rows already in memory that were written to (or read from) `path`,
/// whose SHA-256 and size are given, so the report and the ingest ledger name
/// the file.
///
/// # Errors
/// [`Error::Refused`] when validation rejects the rows.
pub fn validate_in_memory(
    batch: Batch,
    validation: &CheckedValidation,
    path: &Path,
    sha256: String,
    bytes: Option<u64>,
) -> Result<(Validated<Batch>, Report)> {
    let (mut report, outcome) = itap_validate::validate_batch(batch, validation);
    report.input.path = Some(path.display().to_string());
    report.input.sha256 = Some(sha256);
    report.input.bytes = bytes;
    match outcome {
        Ok(valid) if report.verdict.is_storable() => Ok((valid, report)),
        _ => Err(refused(path, report)),
    }
}

/// Stores validated rows that are already in memory, in transactions of at
/// most [`StoreSettings::rows_per_chunk`] rows of whole devices, devices in id
/// order ([`Validated::device_chunks`]: each transaction writes at one place
/// of the (device, ts) key's order, not at every device's), recording
/// `report`'s input (path, SHA-256) in the ingest ledger; `on_chunk` hears the
/// rows written so far. On failure the ledger entry is marked failed;
/// committed chunks stay.
///
/// # Errors
/// The store's errors.
pub async fn store_batch(
    valid: &Validated<Batch>,
    report: &Report,
    store: &Store,
    settings: &StoreSettings,
    on_chunk: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let source = IngestSource {
        path: report.input.path.clone().unwrap_or_default(),
        sha256: report.input.sha256.clone().unwrap_or_default(),
    };
    let chunk_rows = settings.rows_per_chunk(valid.device_names().len());
    let chunks = valid.device_chunks(chunk_rows).map(Ok);
    write_chunks(
        store,
        settings,
        valid.schema(),
        source,
        report,
        chunks,
        on_chunk,
    )
    .await
}

/// One ingest of `chunks` into the settings' dataset, a transaction each;
/// `on_rows` hears the rows written so far. On failure (the store's, or a
/// chunk that is an error) the ledger entry is marked failed; committed
/// chunks stay.
async fn write_chunks(
    store: &Store,
    settings: &StoreSettings,
    schema: &itap_telemetry::Schema,
    source: IngestSource,
    report: &Report,
    chunks: impl IntoIterator<Item = Result<Validated<Batch>>>,
    on_rows: &mut (dyn FnMut(u64) + Send),
) -> Result<IngestReport> {
    let mut ingest = store
        .begin_ingest(
            &settings.dataset,
            schema,
            source.clone(),
            settings.on_conflict,
        )
        .await?;
    let mut written = 0u64;
    let outcome: Result<()> = async {
        for chunk in chunks {
            let chunk = chunk?;
            ingest.write(&chunk).await?;
            written += chunk.len() as u64;
            on_rows(written);
        }
        Ok(())
    }
    .await;
    finish_or_fail(ingest, outcome, source, report).await
}

/// Loads a whole dataset from the store, in time order per device.
///
/// # Errors
/// [`Error::Store`]; [`Error::NoData`] when the dataset is empty.
pub async fn load_dataset(settings: &StoreSettings) -> Result<Batch> {
    let store = settings.connect().await?;
    let batch = store
        .load_range(&settings.dataset, &RangeQuery::all())
        .await;
    store.close().await;
    let batch = batch?;
    if batch.is_empty() {
        return Err(Error::NoData(format!(
            "dataset `{}` at {} holds no rows; store a file into it first",
            settings.dataset, settings.url
        )));
    }
    Ok(batch)
}

/// The ingest ledger's record of a validated file.
fn source_of(path: &Path, report: &Report) -> IngestSource {
    IngestSource {
        path: path.display().to_string(),
        sha256: report.input.sha256.clone().unwrap_or_default(),
    }
}

/// Ends an ingest: records the rows read and rejected when every chunk was
/// written, or marks the ledger entry failed (committed chunks stay) and returns
/// the error.
async fn finish_or_fail(
    ingest: itap_store::Ingest<'_>,
    outcome: Result<()>,
    source: IngestSource,
    report: &Report,
) -> Result<IngestReport> {
    match outcome {
        Ok(()) => {
            let rejected = report.rows - report.rows_accepted;
            Ok(ingest.finish(source, report.rows, rejected).await?)
        }
        Err(e) => {
            let _ = ingest.fail(&e.to_string()).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_with_the_fleet_within_bounds() {
        let s = StoreSettings::default();
        // A small fleet keeps chunk_rows.
        assert_eq!(s.rows_per_chunk(0), 65_536);
        assert_eq!(s.rows_per_chunk(100), 65_536);
        // 256 rows per device past 256 devices.
        assert_eq!(s.rows_per_chunk(1_000), 256_000);
        // Never more than the automatic cap…
        assert_eq!(s.rows_per_chunk(100_000), MAX_AUTO_CHUNK_ROWS);
        assert_eq!(s.rows_per_chunk(usize::MAX), MAX_AUTO_CHUNK_ROWS);
        // …and never less than what chunk_rows asks for.
        let big = StoreSettings {
            chunk_rows: 5_000_000,
            ..StoreSettings::default()
        };
        assert_eq!(big.rows_per_chunk(100_000), 5_000_000);
        let off = StoreSettings {
            chunk_rows: 1_000,
            chunk_rows_per_device: 0,
            ..StoreSettings::default()
        };
        assert_eq!(off.rows_per_chunk(10_000), 1_000);
    }

    #[test]
    fn chunk_rows_per_device_is_checked() {
        let bad = StoreSettings {
            chunk_rows_per_device: 2_000_000,
            ..StoreSettings::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("chunk_rows_per_device"), "{e}");
    }
}
