//! The feature matrix: named `f64` columns aligned row for row with the batch,
//! with its keys, and its export to CSV and Parquet through polars.

use std::ops::Range;
use std::path::Path;

use polars::prelude::{
    CsvWriter, DataFrame, DataType, Float64Chunked, Int64Chunked, IntoColumn, IntoSeries,
    KeyValueMetadata, NamedFrom, NewChunkedArray, ParquetWriter, SerWriter, Series, TimeUnit,
    TimeZone as PlTimeZone,
};

use itap_telemetry::AtomicFile;

use crate::catalogue::FeatureInfo;
use crate::error::{Error, Result};

/// Named feature columns aligned row for row with the batch they were made from
/// (in its row order), with the keys of each row: device and timestamp.
///
/// A value is NaN where a feature is undefined: a window with too few
/// observations, a missing value older than the carry-forward bound, the first row
/// of a device for differences, a spectral window not yet full.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    timestamps: Vec<i64>,
    device_names: Vec<String>,
    device_codes: Vec<u32>,
    catalogue: Vec<FeatureInfo>,
    columns: Vec<Vec<f64>>,
}

/// The metadata key under which a Parquet export carries the catalogue (JSON).
pub const PARQUET_CATALOGUE_KEY: &str = "itap.features.catalogue";

impl FeatureMatrix {
    pub(crate) fn new(
        timestamps: Vec<i64>,
        device_names: Vec<String>,
        device_codes: Vec<u32>,
        catalogue: Vec<FeatureInfo>,
        columns: Vec<Vec<f64>>,
    ) -> Self {
        FeatureMatrix {
            timestamps,
            device_names,
            device_codes,
            catalogue,
            columns,
        }
    }

    /// Rows (the batch's row count).
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Feature columns.
    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// One entry per column: name, source, kind, window, meaning.
    pub fn catalogue(&self) -> &[FeatureInfo] {
        &self.catalogue
    }

    /// The column names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.catalogue.iter().map(|f| f.name.as_str())
    }

    /// Column `i`.
    ///
    /// # Panics
    /// When `i` is not below [`n_features`](Self::n_features).
    pub fn column(&self, i: usize) -> &[f64] {
        &self.columns[i]
    }

    /// A column by name.
    pub fn column_by_name(&self, name: &str) -> Option<&[f64]> {
        self.catalogue
            .iter()
            .position(|f| f.name == name)
            .map(|i| self.columns[i].as_slice())
    }

    /// Every column, in order.
    pub fn columns(&self) -> &[Vec<f64>] {
        &self.columns
    }

    /// Row timestamps, UTC microseconds (as in the batch).
    pub fn timestamps(&self) -> &[i64] {
        &self.timestamps
    }

    /// Row device codes, indexing [`device_names`](Self::device_names) (as in the batch).
    pub fn device_codes(&self) -> &[u32] {
        &self.device_codes
    }

    /// The device dictionary (as in the batch).
    pub fn device_names(&self) -> &[String] {
        &self.device_names
    }

    /// The values of row `r`, one per feature.
    ///
    /// # Panics
    /// When `r` is not below [`len`](Self::len).
    pub fn row(&self, r: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[r]).collect()
    }

    /// The matrix in row-major order (`len() × n_features()`), as detectors take it.
    pub fn to_row_major(&self) -> Vec<f64> {
        let k = self.columns.len();
        let mut out = vec![0.0; self.len() * k];
        for (j, col) in self.columns.iter().enumerate() {
            for (r, &v) in col.iter().enumerate() {
                out[r * k + j] = v;
            }
        }
        out
    }

    /// The columns, by value, with the catalogue.
    pub fn into_columns(self) -> (Vec<FeatureInfo>, Vec<Vec<f64>>) {
        (self.catalogue, self.columns)
    }

    /// A polars frame: `timestamp` (datetime, µs, UTC), `device_id`, then the features.
    ///
    /// # Errors
    /// [`Error::Polars`] if the frame cannot be built.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        self.frame(0..self.len())
    }

    /// The frame of rows `rows` (copied).
    fn frame(&self, rows: Range<usize>) -> Result<DataFrame> {
        let mut cols = Vec::with_capacity(2 + self.columns.len());
        let ts = Int64Chunked::from_slice("timestamp".into(), &self.timestamps[rows.clone()])
            .into_series()
            .cast(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(PlTimeZone::UTC),
            ))?;
        cols.push(ts.into_column());
        let devices: Vec<&str> = self.device_codes[rows.clone()]
            .iter()
            .map(|&c| self.device_names.get(c as usize).map_or("", String::as_str))
            .collect();
        cols.push(Series::new("device_id".into(), devices).into_column());
        for (info, col) in self.catalogue.iter().zip(&self.columns) {
            cols.push(
                Float64Chunked::from_slice(info.name.as_str().into(), &col[rows.clone()])
                    .into_series()
                    .into_column(),
            );
        }
        Ok(DataFrame::new_infer_height(cols)?)
    }

    /// The rows in slices of [`WRITE_ROWS`]; at least one (possibly empty).
    fn slices(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let n = self.len();
        (0..n.div_ceil(WRITE_ROWS).max(1))
            .map(move |i| i * WRITE_ROWS..((i + 1) * WRITE_ROWS).min(n))
    }

    /// Writes the matrix with its keys: Parquet when the path ends in `.parquet`,
    /// CSV otherwise, through an [`AtomicFile`] (the file appears whole or not at
    /// all). Folders are created. Rows are written in slices of 131,072, so writing
    /// needs little memory beyond the matrix.
    ///
    /// # Errors
    /// [`Error::Telemetry`] holding an `Io` error naming the path when the file
    /// cannot be created or committed, [`Error::Polars`] when writing fails.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let parquet = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        if parquet {
            self.write_parquet(path)
        } else {
            self.write_csv(path)
        }
    }

    /// Writes CSV: `timestamp` (RFC 3339 UTC), `device_id`, then one column per
    /// feature; NaN is written as `NaN`, floats in their shortest exact form.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut slices = self.slices();
        let first = self.frame(slices.next().unwrap_or(0..0))?;
        let mut file = AtomicFile::create(path)?;
        let mut w = CsvWriter::new(&mut file)
            .with_datetime_format(Some("%Y-%m-%dT%H:%M:%S%.fZ".into()))
            .batched(first.schema())?;
        w.write_batch(&first)?;
        drop(first);
        for rows in slices {
            w.write_batch(&self.frame(rows)?)?;
        }
        w.finish()?;
        drop(w);
        Ok(file.commit()?)
    }

    /// Writes Parquet (a row group per 131,072 rows), with the catalogue as JSON in
    /// the file's key-value metadata under [`PARQUET_CATALOGUE_KEY`].
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_parquet(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let catalogue = serde_json::to_string(&self.catalogue)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        let mut slices = self.slices();
        let first = self.frame(slices.next().unwrap_or(0..0))?;
        let mut file = AtomicFile::create(path)?;
        let mut w = ParquetWriter::new(&mut file)
            .with_key_value_metadata(Some(KeyValueMetadata::from_static(vec![(
                PARQUET_CATALOGUE_KEY.to_owned(),
                catalogue,
            )])))
            .batched(first.schema())?;
        w.write_batch(&first)?;
        drop(first);
        for rows in slices {
            w.write_batch(&self.frame(rows)?)?;
        }
        w.finish()?;
        drop(w);
        Ok(file.commit()?)
    }
}

/// Rows per slice when writing.
const WRITE_ROWS: usize = 131_072;
