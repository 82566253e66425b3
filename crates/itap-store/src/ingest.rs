//! Idempotent, chunked, crash-safe ingestion: the public [`Ingest`] and its counts.
//!
//! An ingest records itself in the ledger ([`crate::ledger`]) and hands each chunk
//! to its backend's writer ([`crate::backend`]), which writes it and advances the
//! ledger entry in one transaction.

use std::str::FromStr;

use itap_telemetry::{Batch, Schema};
use itap_validate::Validated;
use serde::{Deserialize, Serialize};

use crate::backend::{Chunk, ChunkWriter};
use crate::error::{Error, Result};
use crate::ledger;
use crate::store::{Dataset, Store};

/// What to do with a row whose (device, timestamp) key is already stored with
/// different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Keep the stored row; count the incoming one as a conflict (default).
    #[default]
    Keep,
    /// Replace the stored row's values with the incoming ones.
    Update,
}

impl OnConflict {
    /// `keep` or `update`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Keep => "keep",
            OnConflict::Update => "update",
        }
    }
}

impl FromStr for OnConflict {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "keep" => Ok(OnConflict::Keep),
            "update" => Ok(OnConflict::Update),
            _ => Err(format!(
                "{s:?} is not a conflict policy: use keep or update"
            )),
        }
    }
}

/// Where ingested rows come from, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestSource {
    /// The input file's path as given.
    pub path: String,
    /// The input file's SHA-256, hex.
    pub sha256: String,
}

/// Row counts of an ingest (or of one chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestCounts {
    /// Rows offered to the database.
    pub offered: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows whose key was stored already with the same values.
    pub duplicates: u64,
    /// Rows whose key was stored already with different values.
    pub conflicts: u64,
    /// Stored rows replaced under [`OnConflict::Update`].
    pub updated: u64,
}

impl IngestCounts {
    /// Counts of a chunk of `n` rows under [`OnConflict::Keep`]: `inserted` new rows,
    /// `conflicts` skipped rows that differ; the other skipped rows are duplicates.
    pub(crate) fn kept(n: u64, inserted: u64, conflicts: u64) -> Self {
        IngestCounts {
            offered: n,
            inserted,
            duplicates: n.saturating_sub(inserted + conflicts),
            conflicts,
            updated: 0,
        }
    }

    /// Counts under [`OnConflict::Update`]: the upsert touched `affected` rows, the
    /// `conflicts` differing ones among them updated, the rest inserted.
    pub(crate) fn updated(n: u64, affected: u64, conflicts: u64) -> Self {
        let inserted = affected.saturating_sub(conflicts);
        IngestCounts {
            updated: conflicts,
            ..IngestCounts::kept(n, inserted, conflicts)
        }
    }

    fn add(&mut self, o: &IngestCounts) {
        self.offered += o.offered;
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.updated += o.updated;
    }
}

/// The outcome of a finished ingest, as recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    /// The ledger entry's id.
    pub ledger_id: i64,
    /// The dataset written.
    pub dataset: String,
    /// The input.
    pub source: IngestSource,
    /// Data rows read from the input.
    pub rows_read: u64,
    /// Rows refused by validation (quarantined), never offered to the database.
    pub rejected: u64,
    /// What the database did with the offered rows.
    pub counts: IngestCounts,
    /// The conflict policy applied.
    pub on_conflict: OnConflict,
}

/// An ingest in progress: a ledger entry and the chunks written so far.
///
/// Each [`Ingest::write`] is one transaction that also advances the ledger entry,
/// so a process killed at any point leaves whole chunks and a ledger that matches
/// them; running the same input again inserts exactly the missing rows.
#[derive(Debug)]
pub struct Ingest<'s> {
    store: &'s Store,
    dataset: Dataset,
    ledger_id: i64,
    on_conflict: OnConflict,
    totals: IngestCounts,
    writer: ChunkWriter<'s>,
}

impl Store {
    /// Starts an ingest into `dataset`, creating it with `schema` if needed, and
    /// records it in the ledger as `running`. Earlier `running` entries of this host
    /// whose process is gone are marked `interrupted`.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] when the dataset exists with other signals;
    /// [`Error::DatasetName`]; [`Error::Database`].
    pub async fn begin_ingest(
        &self,
        dataset: &str,
        schema: &Schema,
        source: IngestSource,
        on_conflict: OnConflict,
    ) -> Result<Ingest<'_>> {
        let ds = self.ensure_dataset(dataset, schema).await?;
        let ledger_id = ledger::begin(self, &ds.name, &source, on_conflict).await?;
        let writer = self.pool.chunk_writer(&ds);
        Ok(Ingest {
            store: self,
            dataset: ds,
            ledger_id,
            on_conflict,
            totals: IngestCounts::default(),
            writer,
        })
    }
}

impl Ingest<'_> {
    /// The dataset being written.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The ledger entry's id.
    pub fn ledger_id(&self) -> i64 {
        self.ledger_id
    }

    /// Counts so far.
    pub fn totals(&self) -> IngestCounts {
        self.totals
    }

    /// Writes one validated chunk in one transaction, advancing the ledger entry by
    /// its rows and counts in the same transaction.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] when the chunk's signals are not the dataset's;
    /// [`Error::NotInteger`]; [`Error::Database`].
    pub async fn write(&mut self, chunk: &Validated<Batch>) -> Result<IngestCounts> {
        let batch: &Batch = chunk.get();
        self.check_signals(batch.schema())?;
        let order = column_order(&self.dataset.schema, batch.schema());
        // Written device by device: the unique (device, ts) index then takes each
        // device's rows of the chunk at one place, instead of one row at each of the
        // fleet's places in turn (a 1,000-device chunk in time order touched a
        // thousand index pages per round, and SQLite's ingest fell to half its rate
        // once the index outgrew the page cache). Stable, so of two equal keys the
        // first is still written first.
        let rows = batch.order_by_device();
        let counts = self
            .writer
            .write(&Chunk {
                dataset: &self.dataset,
                batch,
                rows: &rows,
                order: &order,
                on_conflict: self.on_conflict,
                ledger_id: self.ledger_id,
            })
            .await?;
        self.totals.add(&counts);
        Ok(counts)
    }

    /// Refuses a chunk whose signals are not the dataset's. The same signals in
    /// another order are fine: [`column_order`] maps them.
    fn check_signals(&self, schema: &Schema) -> Result<()> {
        if schema.names().eq(self.dataset.schema.names()) {
            return Ok(());
        }
        let mut a: Vec<&str> = schema.names().collect();
        let mut b: Vec<&str> = self.dataset.schema.names().collect();
        a.sort_unstable();
        b.sort_unstable();
        if a == b {
            return Ok(());
        }
        Err(Error::SchemaMismatch {
            dataset: self.dataset.name.clone(),
            details: format!(
                "the chunk has {} where the dataset has {}",
                a.join(", "),
                b.join(", ")
            ),
        })
    }

    /// Marks the ingest `completed` and returns its report. `rows_read` and
    /// `rejected` are the input's totals (validation's row count and the rows it
    /// quarantined); they replace the running count of rows offered.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn finish(
        self,
        source: IngestSource,
        rows_read: u64,
        rejected: u64,
    ) -> Result<IngestReport> {
        ledger::complete(self.store, self.ledger_id, rows_read, rejected).await?;
        Ok(IngestReport {
            ledger_id: self.ledger_id,
            dataset: self.dataset.name.clone(),
            source,
            rows_read,
            rejected,
            counts: self.totals,
            on_conflict: self.on_conflict,
        })
    }

    /// Marks the ingest `failed` with `message`. Chunks already committed stay.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn fail(self, message: &str) -> Result<()> {
        ledger::close(self.store, self.ledger_id, "failed", Some(message)).await
    }
}

/// For each dataset signal, the index of the same signal in the batch.
fn column_order(dataset: &Schema, batch: &Schema) -> Vec<usize> {
    dataset
        .names()
        .map(|n| batch.index_of(n).unwrap_or(usize::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse() {
        assert_eq!("update".parse::<OnConflict>().unwrap(), OnConflict::Update);
        assert!("replace".parse::<OnConflict>().is_err());
    }
}
