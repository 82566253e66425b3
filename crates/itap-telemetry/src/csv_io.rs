//! CSV in and out.
//!
//! Reading finds the columns from the header: a timestamp column, a device column
//! (optional: a file without one is one device), numeric signal columns (named, or
//! inferred), and the optional `state`, `error_code` and ground-truth columns
//! (`anomaly_tag`, or a numeric 0/1 `label`). Writing uses the seed platform's column
//! order and RFC 3339 UTC timestamps.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use csv::{ByteRecord, ReaderBuilder, WriterBuilder};
use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::batch::{Batch, BatchBuilder};
use crate::error::{Error, Result};
use crate::schema::{RESERVED, Schema, Signal, SignalKind, State};
use crate::time::{TimeZone, parse_timestamp_bytes, write_timestamp};

/// Header names recognised as the timestamp column, in order of preference
/// (compared ignoring case).
pub const TIMESTAMP_NAMES: [&str; 7] = [
    "timestamp",
    "ts",
    "time",
    "datetime",
    "date_time",
    "time_stamp",
    "date",
];

/// Header names recognised as the device column, in order of preference
/// (compared ignoring case).
pub const DEVICE_NAMES: [&str; 9] = [
    "device_id",
    "device",
    "deviceid",
    "machine_id",
    "machine",
    "asset_id",
    "asset",
    "equipment_id",
    "unit_id",
];

/// Fields read as a missing value in numeric columns (besides empty ones), compared
/// ignoring case: the spellings pandas treats as missing.
pub const MISSING_SPELLINGS: [&str; 6] = ["nan", "na", "n/a", "null", "none", "-nan"];

/// The tag given to rows whose 0/1 `label` column is 1.
pub const LABEL_TAG: &str = "anomaly";

/// How to read a CSV file.
///
/// | Name | Default | Meaning |
/// |---|---|---|
/// | `timestamp_column` | found by name ([`TIMESTAMP_NAMES`]) | the timestamp column |
/// | `device_column` | found by name ([`DEVICE_NAMES`]) | the device column; none = one device |
/// | `signals` | inferred | the signal columns; empty = every column not otherwise mapped whose sampled values are at least half numbers |
/// | `declared` | none | signal declarations (unit, range, family) attached to columns of the same name |
/// | `timezone` | UTC | the zone of timestamps written without an offset |
/// | `default_device` | the file stem | the device id for a file without a device column |
/// | `infer_rows` | 1000 | rows looked at to decide which columns are numeric |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    /// The timestamp column's name; `None` finds it by common names.
    pub timestamp_column: Option<String>,
    /// The device column's name; `None` finds it by common names.
    pub device_column: Option<String>,
    /// Signal columns; empty infers every numeric column not otherwise mapped.
    pub signals: Vec<String>,
    /// Declarations (unit, kind, range, family) for signals, matched by name.
    #[serde(skip)]
    pub declared: Vec<Signal>,
    /// Zone for naive timestamps.
    pub timezone: TimeZone,
    /// Device id used when the file has no device column; `None` = the file stem.
    pub default_device: Option<String>,
    /// Rows looked at to infer numeric columns.
    pub infer_rows: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            timestamp_column: None,
            device_column: None,
            signals: Vec::new(),
            declared: Vec::new(),
            timezone: TimeZone::UTC,
            default_device: None,
            infer_rows: 1000,
        }
    }
}

/// Where the ground truth comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruthColumn {
    /// A text column of fault tags (blank = no fault), at this index.
    Tag(usize),
    /// A numeric 0/1 column, at this index; 1 becomes the tag [`LABEL_TAG`].
    Label(usize),
}

/// How a file's columns map onto a [`Batch`]: found from the header (and, for
/// inferred signals, the first rows).
#[derive(Debug, Clone, PartialEq)]
pub struct InputLayout {
    /// The header fields as read (a UTF-8 BOM removed).
    pub header: Vec<String>,
    /// Index of the timestamp column.
    pub timestamp: usize,
    /// Index of the device column, if any.
    pub device: Option<usize>,
    /// Index of each signal column, in schema order.
    pub signals: Vec<usize>,
    /// Index of the state column, if any.
    pub state: Option<usize>,
    /// Index of the error code column, if any.
    pub error_code: Option<usize>,
    /// The ground-truth column, if any.
    pub truth: Option<TruthColumn>,
    /// Columns not mapped to anything (non-numeric, or not named in `signals`).
    pub ignored: Vec<usize>,
    /// The signals read.
    pub schema: Schema,
    /// The device id used when there is no device column.
    pub default_device: String,
}

impl InputLayout {
    /// The name of column `i`.
    pub fn column_name(&self, i: usize) -> &str {
        self.header.get(i).map_or("?", String::as_str)
    }
}

/// A streaming CSV reader that yields batches of bounded size.
///
/// ```
/// use itap_telemetry::{CsvReader, ReadOptions};
/// let csv = "timestamp,device_id,rpm,temp_c\n2026-01-01T00:00:00Z,A,1800,55.5\n";
/// let mut r = CsvReader::from_reader(csv.as_bytes(), "inline.csv", &ReadOptions::default())?;
/// let batch = r.next_chunk(10_000)?.expect("one row");
/// assert_eq!(batch.len(), 1);
/// assert_eq!(batch.schema().names().collect::<Vec<_>>(), ["rpm", "temp_c"]);
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
pub struct CsvReader {
    path: PathBuf,
    rdr: csv::Reader<LineTap<Box<dyn Read + Send>>>,
    layout: InputLayout,
    timezone: TimeZone,
    builder: BatchBuilder,
    pending: VecDeque<ByteRecord>,
    record: ByteRecord,
    values: Vec<f64>,
    default_device_code: u32,
    rows_read: u64,
}

impl std::fmt::Debug for CsvReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("rows_read", &self.rows_read)
            .finish_non_exhaustive()
    }
}

impl CsvReader {
    /// Opens a CSV file and reads its header.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened; the errors of
    /// [`CsvReader::from_reader`].
    pub fn open(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Self::from_reader(std::io::BufReader::with_capacity(1 << 16, file), path, opts)
    }

    /// Reads CSV from any reader; `name` is used in error messages and as the
    /// default device id's source.
    ///
    /// # Errors
    /// [`Error::Empty`] without a header; [`Error::MissingColumn`] when the
    /// timestamp column or a named column is absent; [`Error::Csv`] for malformed CSV
    /// in the header or the rows used to infer numeric columns.
    pub fn from_reader(
        reader: impl Read + Send + 'static,
        name: impl AsRef<Path>,
        opts: &ReadOptions,
    ) -> Result<Self> {
        let path = name.as_ref().to_path_buf();
        let mut rdr = ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .buffer_capacity(1 << 16)
            .from_reader(LineTap::new(Box::new(reader) as Box<dyn Read + Send>));
        let (layout, pending) = read_head(&mut rdr, &path, opts)?;
        let builder = BatchBuilder::new(
            layout.schema.clone(),
            layout.state.is_some(),
            layout.error_code.is_some(),
            layout.truth.is_some(),
        );
        let mut me = CsvReader {
            path,
            rdr,
            timezone: opts.timezone,
            builder,
            pending,
            record: ByteRecord::new(),
            values: vec![f64::NAN; layout.signals.len()],
            default_device_code: 0,
            layout,
            rows_read: 0,
        };
        if me.layout.device.is_none() {
            let d = me.layout.default_device.clone();
            me.default_device_code = me.builder.device_code(&d);
        }
        Ok(me)
    }

    /// How the file's columns were mapped.
    pub fn layout(&self) -> &InputLayout {
        &self.layout
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Reads up to `max_rows` rows; `None` at the end of the file. Dictionary codes
    /// are stable across the chunks of one reader.
    ///
    /// # Errors
    /// [`Error::Csv`] for malformed CSV (wrong field count, bad quoting);
    /// [`Error::Parse`] naming line, column and value for a field that does not
    /// parse.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        self.fill(max_rows)?;
        if self.builder.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.builder.take_chunk()))
    }

    /// Reads every remaining row into one batch.
    ///
    /// # Errors
    /// As [`CsvReader::next_chunk`].
    pub fn read_all(mut self) -> Result<Batch> {
        self.fill(usize::MAX)?;
        Ok(self.builder.finish())
    }

    /// Pushes rows into the builder until it holds `max_rows` or the file ends.
    fn fill(&mut self, max_rows: usize) -> Result<()> {
        self.builder.reserve(max_rows.min(1 << 16));
        while self.builder.len() < max_rows {
            let rec = if let Some(r) = self.pending.pop_front() {
                r
            } else {
                let mut rec = std::mem::take(&mut self.record);
                match self.rdr.read_byte_record(&mut rec) {
                    Ok(true) => rec,
                    Ok(false) => break,
                    Err(e) => return Err(csv_error(&self.path, &e, &mut self.rdr)),
                }
            };
            let line = line_of(&rec, &mut self.rdr);
            self.push_record(&rec, line)?;
            self.record = rec;
        }
        Ok(())
    }

    fn push_record(&mut self, rec: &ByteRecord, line: u64) -> Result<()> {
        let l = &self.layout;
        let field = |i: usize| rec.get(i).unwrap_or(b"");
        let parse_err = |i: usize, expected: &'static str| Error::Parse {
            path: self.path.clone(),
            line,
            column: l.column_name(i).to_owned(),
            value: String::from_utf8_lossy(field(i)).into_owned(),
            expected,
        };
        let ts = parse_timestamp_bytes(trim(field(l.timestamp)), self.timezone)
            .ok_or_else(|| parse_err(l.timestamp, "a timestamp such as 2026-01-01T00:00:00Z"))?;
        for (slot, &i) in self.values.iter_mut().zip(&l.signals) {
            *slot = parse_number(field(i)).ok_or_else(|| parse_err(i, "a number"))?;
        }
        let state = match l.state {
            Some(i) => std::str::from_utf8(field(i))
                .ok()
                .and_then(|s| s.parse::<State>().ok())
                .ok_or_else(|| parse_err(i, "a state (RUN, IDLE or MAINT)"))?,
            None => State::Run,
        };
        let error_code = match l.error_code {
            Some(i) => parse_int(field(i)).ok_or_else(|| parse_err(i, "an integer error code"))?,
            None => 0,
        };
        let tag = match l.truth {
            Some(TruthColumn::Tag(i)) => {
                let t = std::str::from_utf8(field(i)).map_err(|_| parse_err(i, "UTF-8 text"))?;
                self.builder.tag_code(t)
            }
            Some(TruthColumn::Label(i)) => match parse_int(field(i)) {
                Some(0) => 0,
                Some(1) => self.builder.tag_code(LABEL_TAG),
                _ => return Err(parse_err(i, "a 0/1 label")),
            },
            None => 0,
        };
        let device = match l.device {
            Some(i) => {
                let d = std::str::from_utf8(trim(field(i)))
                    .map_err(|_| parse_err(i, "a UTF-8 device id"))?;
                if d.is_empty() {
                    return Err(parse_err(i, "a non-empty device id"));
                }
                self.builder.device_code(d)
            }
            None => self.default_device_code,
        };
        self.builder
            .push(ts, device, &self.values, state, error_code, tag)?;
        self.rows_read += 1;
        Ok(())
    }
}

/// Reads a whole CSV file into one batch.
///
/// ```no_run
/// use itap_telemetry::{read_csv, ReadOptions};
/// let batch = read_csv("testdata/seed_telemetry_54k.csv", &ReadOptions::default())?;
/// println!("{} rows, {} devices", batch.len(), batch.device_names().len());
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
///
/// # Errors
/// As [`CsvReader::open`] and [`CsvReader::next_chunk`].
pub fn read_csv(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Batch> {
    CsvReader::open(path, opts)?.read_all()
}

/// Reads the header and the rows used for inference, and maps the columns.
fn read_head<R: Read>(
    rdr: &mut csv::Reader<LineTap<R>>,
    path: &Path,
    opts: &ReadOptions,
) -> Result<(InputLayout, VecDeque<ByteRecord>)> {
    let mut head = ByteRecord::new();
    let got = match rdr.read_byte_record(&mut head) {
        Ok(got) => got,
        Err(e) => return Err(csv_error(path, &e, rdr)),
    };
    if !got {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    let header: Vec<String> = head
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            String::from_utf8_lossy(f).trim().to_owned()
        })
        .collect();
    // Buffer the first rows to infer which columns are numeric.
    let mut pending = VecDeque::new();
    for _ in 0..opts.infer_rows.max(1) {
        let mut rec = ByteRecord::new();
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => pending.push_back(rec),
            Ok(false) => break,
            Err(e) => {
                // Lines are counted in order: first those of the rows read so far.
                for r in &pending {
                    line_of(r, rdr);
                }
                return Err(csv_error(path, &e, rdr));
            }
        }
    }
    let layout = detect_layout(path, header, &pending, opts)?;
    Ok((layout, pending))
}

/// One raw data record of a CSV file: its fields as bytes, as found, and its line.
///
/// Made empty by [`RawRecord::new`] and filled by [`RawCsvReader::read_record`], so
/// one record can be reused for a whole file without allocating per row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRecord {
    rec: ByteRecord,
    line: u64,
}

impl RawRecord {
    /// An empty record.
    pub fn new() -> Self {
        RawRecord::default()
    }

    /// The 1-based line on which the record starts (the header is line 1); 0 when
    /// unknown.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.rec.len()
    }

    /// Whether the record has no field.
    pub fn is_empty(&self) -> bool {
        self.rec.is_empty()
    }

    /// Field `i` as found (quotes removed, no other change), if the record has it.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.rec.get(i)
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.rec.iter()
    }
}

/// A lenient CSV reader: the header and column mapping of [`CsvReader`], then the
/// data records as raw bytes with their line numbers, whatever they hold.
///
/// Where [`CsvReader`] stops at the first field that does not parse or the first
/// record with the wrong number of fields, this reader hands every record over and
/// leaves the judging to the caller (itap-validate turns each problem into a finding
/// with line, column and value). Only I/O errors end the reading. Invalid UTF-8 is
/// passed through as bytes; a UTF-8 byte order mark before the header is removed.
///
/// ```
/// use itap_telemetry::{RawCsvReader, RawRecord, ReadOptions};
/// let csv = "timestamp,device_id,x\n2026-01-01T00:00:00Z,A,1.5\n2026-01-01,A,1,extra\n";
/// let mut r = RawCsvReader::from_reader(csv.as_bytes(), "inline.csv", &ReadOptions::default())?;
/// assert_eq!(r.layout().signals, [2]);
/// let mut rec = RawRecord::new();
/// assert!(r.read_record(&mut rec)?);
/// assert_eq!((rec.line(), rec.get(2)), (2, Some(&b"1.5"[..])));
/// assert!(r.read_record(&mut rec)?);
/// assert_eq!((rec.line(), rec.len()), (3, 4), "a record with too many fields is handed over");
/// assert!(!r.read_record(&mut rec)?);
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
pub struct RawCsvReader<R> {
    path: PathBuf,
    rdr: csv::Reader<LineTap<R>>,
    layout: InputLayout,
    pending: VecDeque<ByteRecord>,
}

impl<R> std::fmt::Debug for RawCsvReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawCsvReader")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl<R: Read> RawCsvReader<R> {
    /// Reads the header (and the rows used to infer numeric columns) from `reader`;
    /// `name` is used in error messages and as the default device id's source.
    ///
    /// # Errors
    /// [`Error::Empty`] without a header; [`Error::MissingColumn`] when the
    /// timestamp column or a named column is absent; [`Error::InvalidParam`]
    /// (named `header.signals.NAME`) when a signal column's name is not a usable
    /// identifier or appears twice;
    /// [`Error::Csv`] when reading fails.
    pub fn from_reader(reader: R, name: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self> {
        let path = name.as_ref().to_path_buf();
        let mut rdr = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(LineTap::new(reader));
        let (layout, pending) = read_head(&mut rdr, &path, opts)?;
        Ok(RawCsvReader {
            path,
            rdr,
            layout,
            pending,
        })
    }

    /// How the file's columns were mapped.
    pub fn layout(&self) -> &InputLayout {
        &self.layout
    }

    /// Reads the next data record into `rec`; `false` at the end of the input.
    ///
    /// # Errors
    /// [`Error::Csv`] when the underlying reader fails (an I/O error).
    pub fn read_record(&mut self, rec: &mut RawRecord) -> Result<bool> {
        if let Some(r) = self.pending.pop_front() {
            rec.rec = r;
        } else {
            match self.rdr.read_byte_record(&mut rec.rec) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(csv_error(&self.path, &e, &mut self.rdr)),
            }
        }
        rec.line = line_of(&rec.rec, &mut self.rdr);
        Ok(true)
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.rdr.get_ref().inner
    }

    /// The underlying reader, by value; what it buffered ahead is lost.
    pub fn into_inner(self) -> R {
        self.rdr.into_inner().inner
    }
}

/// Counts lines itself: the positions the csv crate gives are those of the end of
/// the previous record, so after a CRLF ending or a blank line its line numbers run
/// behind. The tap keeps the bytes from the last record's start on (the reader's
/// read-ahead, some kilobytes), and for each record in turn skips the line ends
/// before it and counts the newlines.
struct LineTap<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[start..]` are the bytes not yet passed.
    start: usize,
    /// Offset in the input of `buf[start]`.
    base: u64,
    /// Newlines before `base`.
    newlines: u64,
}

impl<R> LineTap<R> {
    fn new(inner: R) -> Self {
        LineTap {
            inner,
            buf: Vec::new(),
            start: 0,
            base: 0,
            newlines: 0,
        }
    }

    /// The 1-based line of the record the csv crate positions at byte `at`;
    /// records must be asked for in order.
    fn line_at(&mut self, at: u64) -> u64 {
        let avail = &self.buf[self.start..];
        let mut i = usize::try_from(at.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(avail.len());
        let mut nl = avail[..i].iter().filter(|&&b| b == b'\n').count() as u64;
        while let Some(&b) = avail.get(i) {
            match b {
                b'\n' => nl += 1,
                b'\r' => {}
                _ => break,
            }
            i += 1;
        }
        self.newlines += nl;
        self.start += i;
        self.base += i as u64;
        if self.start >= 1 << 16 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.newlines + 1
    }
}

impl<R: Read> Read for LineTap<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.buf.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

/// The true line of a record just read.
fn line_of<R: Read>(rec: &ByteRecord, rdr: &mut csv::Reader<LineTap<R>>) -> u64 {
    rec.position()
        .map_or(0, |p| rdr.get_mut().line_at(p.byte()))
}

fn csv_error<R: Read>(path: &Path, e: &csv::Error, rdr: &mut csv::Reader<LineTap<R>>) -> Error {
    let line = e.position().map_or(0, |p| rdr.get_mut().line_at(p.byte()));
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("found {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!("field {} is not valid UTF-8", err.field() + 1),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    };
    Error::Csv {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Parses a numeric field: empty or a missing spelling ([`MISSING_SPELLINGS`]) is
/// NaN; `inf`, `-Infinity`… are infinities; anything else must be a decimal number.
/// `None` when the field is not a number.
pub fn parse_number(field: &[u8]) -> Option<f64> {
    let t = trim(field);
    if t.is_empty() {
        return Some(f64::NAN);
    }
    let s = std::str::from_utf8(t).ok()?;
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    MISSING_SPELLINGS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(s))
        .then_some(f64::NAN)
}

/// Parses an integer field; empty is 0, and a whole float such as `3.0` is accepted
/// (pandas writes integer columns that held a missing value that way).
pub fn parse_int(field: &[u8]) -> Option<i32> {
    let t = trim(field);
    if t.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(t).ok()?;
    if let Ok(v) = s.parse::<i32>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX)).then_some(f as i32)
}

fn find_column(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| header.iter().position(|h| h.eq_ignore_ascii_case(n)))
}

fn detect_layout(
    path: &Path,
    header: Vec<String>,
    sample: &VecDeque<ByteRecord>,
    opts: &ReadOptions,
) -> Result<InputLayout> {
    let joined = header.join(",");
    let missing = |role: String, hint: &'static str| Error::MissingColumn {
        path: path.to_path_buf(),
        role,
        header: joined.clone(),
        hint,
    };
    let named = |name: &str| header.iter().position(|h| h == name);
    let timestamp = match &opts.timestamp_column {
        Some(n) => named(n).ok_or_else(|| {
            missing(
                format!("timestamp column `{n}`"),
                "the `timestamp_column` read option",
            )
        })?,
        None => find_column(&header, &TIMESTAMP_NAMES)
            .ok_or_else(|| missing("timestamp".into(), "the `timestamp_column` read option"))?,
    };
    let device = match &opts.device_column {
        Some(n) => Some(named(n).ok_or_else(|| {
            missing(
                format!("device column `{n}`"),
                "the `device_column` read option",
            )
        })?),
        None => find_column(&header, &DEVICE_NAMES),
    };
    let state = find_column(&header, &["state"]);
    let error_code = find_column(&header, &["error_code"]);
    let truth = find_column(&header, &["anomaly_tag"])
        .map(TruthColumn::Tag)
        .or_else(|| find_column(&header, &["label"]).map(TruthColumn::Label));
    let mapped = |i: usize| {
        i == timestamp
            || Some(i) == device
            || Some(i) == state
            || Some(i) == error_code
            || matches!(truth, Some(TruthColumn::Tag(j) | TruthColumn::Label(j)) if j == i)
    };
    let signals: Vec<usize> = if opts.signals.is_empty() {
        (0..header.len())
            .filter(|&i| !mapped(i) && !RESERVED.contains(&header[i].as_str()))
            .filter(|&i| {
                // Numeric when at least half the non-missing values in the sample are numbers: a
                // stray text value in a numeric column is then an error naming its
                // line, not a reason to drop the column silently. A column with no value in
                // the sample is a signal too (all missing so far), as pandas reads it.
                let (mut numbers, mut present) = (0usize, 0usize);
                for r in sample {
                    match parse_number(r.get(i).unwrap_or(b"")) {
                        Some(v) if v.is_nan() => {}
                        Some(_) => {
                            numbers += 1;
                            present += 1;
                        }
                        None => present += 1,
                    }
                }
                numbers * 2 >= present
            })
            .collect()
    } else {
        opts.signals
            .iter()
            .map(|n| {
                named(n)
                    .ok_or_else(|| missing(format!("signal `{n}`"), "the `signals` read option"))
            })
            .collect::<Result<_>>()?
    };
    let ignored = (0..header.len())
        .filter(|&i| !mapped(i) && !signals.contains(&i))
        .collect();
    let schema_signals = signals
        .iter()
        .map(|&i| {
            let name = &header[i];
            opts.declared
                .iter()
                .find(|s| &s.name == name)
                .cloned()
                .unwrap_or_else(|| Signal::new(name.clone()))
        })
        .collect();
    let schema = Schema::new(schema_signals).map_err(|e| e.in_section("header"))?;
    let default_device = opts.default_device.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "device".to_owned())
    });
    Ok(InputLayout {
        header,
        timestamp,
        device,
        signals,
        state,
        error_code,
        truth,
        ignored,
        schema,
        default_device,
    })
}

/// Writes a batch as CSV: `timestamp, device_id, [state,] <signals…>, [error_code,]
/// [anomaly_tag]` (the seed's column order), RFC 3339 UTC timestamps, shortest
/// round-trip floats, integers for `int` signals, an empty field for a missing value.
///
/// ```
/// use itap_telemetry::{ParamGuard, simulate, write_csv_to, SimParams};
/// let batch = simulate(&SimParams::default().devices(2).hours(0.01).check()?);
/// let mut out = Vec::new();
/// write_csv_to(&batch, &mut out)?;
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.starts_with("timestamp,device_id,state,rpm,temp_c,vibration_g,current_a,voltage_v,error_code,anomaly_tag\n"));
/// assert!(text.lines().nth(1).unwrap().starts_with("2026-01-01T00:00:00Z,DEV-0000,RUN,"));
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] when writing fails.
pub fn write_csv_to<W: Write>(batch: &Batch, out: W) -> Result<()> {
    write_csv_blocks(batch, out, CSV_BLOCK_ROWS)
}

/// Rows of a CSV formatted as one piece of text (about 4 MB with the default
/// signals).
const CSV_BLOCK_ROWS: usize = 32_768;

/// [`write_csv_to`] with blocks of `block_rows` rows (see [`write_in_blocks`]).
/// A record's text does not depend on the records before it, so the bytes are
/// the same for any block size and thread count.
fn write_csv_blocks<W: Write>(batch: &Batch, mut out: W, block_rows: usize) -> Result<()> {
    out.write_all(&csv_header(batch)?)
        .map_err(|e| Error::io("<output>", e))?;
    write_csv_rows(batch, &mut out, block_rows)
}

/// The header line [`write_csv_to`] writes for `batch`'s columns.
fn csv_header(batch: &Batch) -> Result<Vec<u8>> {
    let io = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(e) => Error::io("<output>", e),
        other => Error::io("<output>", std::io::Error::other(format!("{other:?}"))),
    };
    let mut w = WriterBuilder::new().from_writer(Vec::with_capacity(256));
    w.write_field("timestamp").map_err(io)?;
    w.write_field("device_id").map_err(io)?;
    if batch.states().is_some() {
        w.write_field("state").map_err(io)?;
    }
    for name in batch.schema().names() {
        w.write_field(name).map_err(io)?;
    }
    if batch.error_codes().is_some() {
        w.write_field("error_code").map_err(io)?;
    }
    if batch.tag_codes().is_some() {
        w.write_field("anomaly_tag").map_err(io)?;
    }
    w.write_record(None::<&[u8]>).map_err(io)?;
    w.into_inner()
        .map_err(|e| Error::io("<output>", e.into_error()))
}

/// The records of every row of `batch`, no header.
fn write_csv_rows<W: Write + ?Sized>(batch: &Batch, out: &mut W, block_rows: usize) -> Result<()> {
    write_in_blocks(out, batch.len(), block_rows, |range, text: &mut Vec<u8>| {
        text.clear();
        csv_lines(batch, range, text)
    })
}

/// Writes one CSV from batches that come one after the other (the blocks of a
/// [`FleetSim`](crate::FleetSim), say), as [`write_csv_to`] would write them
/// joined into one batch: the header of the first, then every batch's records.
/// Only the batch at hand is held.
///
/// ```
/// use itap_telemetry::{CsvBatchWriter, FleetSim, ParamGuard, SimParams, simulate, write_csv_to};
/// let p = SimParams::default().devices(2).hours(0.5).check()?;
/// let mut whole = Vec::new();
/// write_csv_to(&simulate(&p), &mut whole)?;
/// let (mut sim, mut w) = (FleetSim::new(&p), CsvBatchWriter::new(Vec::new()));
/// while let Some(block) = sim.next_block(7) {
///     w.write(&block)?;
/// }
/// assert_eq!(w.into_inner(), whole);
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
#[derive(Debug)]
pub struct CsvBatchWriter<W> {
    out: W,
    header: Option<Vec<u8>>,
}

impl<W: Write> CsvBatchWriter<W> {
    /// A writer that has written nothing yet.
    pub fn new(out: W) -> CsvBatchWriter<W> {
        CsvBatchWriter { out, header: None }
    }

    /// Writes `batch`'s records (after the header, for the first batch).
    ///
    /// # Errors
    /// [`Error::Io`] (path `<output>`) when writing fails;
    /// [`Error::Inconsistent`] when the batch's columns are not the first
    /// batch's.
    pub fn write(&mut self, batch: &Batch) -> Result<()> {
        let header = csv_header(batch)?;
        match &self.header {
            None => {
                self.out
                    .write_all(&header)
                    .map_err(|e| Error::io("<output>", e))?;
                self.header = Some(header);
            }
            Some(first) if *first != header => {
                return Err(Error::Inconsistent(
                    "a batch's columns differ from the first batch's".to_owned(),
                ));
            }
            Some(_) => {}
        }
        write_csv_rows(batch, &mut self.out, CSV_BLOCK_ROWS)
    }

    /// The output, after the batches written so far (nothing, not even a
    /// header, when there were none).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Writes `rows` rows of text to `out` in order, `block_rows` at a time: `fill`
/// puts the text of a range of rows into a buffer (clearing it first). A round
/// of blocks (two per rayon thread, at most 16) is filled in parallel while the
/// calling thread writes the round before it; two rounds' buffers are kept and
/// reused (fresh ones cost a page fault per page written). So the memory held is
/// bounded whatever the row count, and the output is the same for any thread
/// count as long as a block's text depends on its rows alone.
///
/// # Errors
/// `fill`'s first error, or [`Error::Io`] (path `<output>`) when writing fails.
pub fn write_in_blocks<W, B, F>(out: &mut W, rows: usize, block_rows: usize, fill: F) -> Result<()>
where
    W: Write + ?Sized,
    B: AsRef<[u8]> + Default + Clone + Send,
    F: Fn(std::ops::Range<usize>, &mut B) -> Result<()> + Sync,
{
    let block_rows = block_rows.max(1);
    let starts: Vec<usize> = (0..rows).step_by(block_rows).collect();
    let per_round = (2 * rayon::current_num_threads()).clamp(1, 16);
    let rounds: Vec<&[usize]> = starts.chunks(per_round).collect();
    let format = |round: &[usize], texts: &mut [B]| -> Result<()> {
        use rayon::prelude::*;
        round
            .par_iter()
            .zip(texts.par_iter_mut())
            .map(|(&start, text)| fill(start..(start + block_rows).min(rows), text))
            .collect()
    };
    let width = per_round.min(starts.len());
    let (mut current, mut next) = (vec![B::default(); width], vec![B::default(); width]);
    if let Some(first) = rounds.first() {
        format(first, &mut current)?;
    }
    for (k, round) in rounds.iter().enumerate() {
        // The next round goes to the pool this runs in (the caller's, when it
        // installed one) while this thread writes; the scope ends when both have.
        let mut formatted = Ok(());
        let wrote = rayon::in_place_scope(|s| {
            if let Some(later) = rounds.get(k + 1) {
                let (next, formatted) = (&mut next, &mut formatted);
                s.spawn(move |_| *formatted = format(later, next));
            }
            current[..round.len()]
                .iter()
                .try_for_each(|text| out.write_all(text.as_ref()))
                .map_err(|e| Error::io("<output>", e))
        });
        wrote?;
        formatted?;
        std::mem::swap(&mut current, &mut next);
    }
    out.flush().map_err(|e| Error::io("<output>", e))
}

/// Appends the CSV records of rows `range` (no header) to `text`.
fn csv_lines(batch: &Batch, range: std::ops::Range<usize>, text: &mut Vec<u8>) -> Result<()> {
    let io = |e: csv::Error| Error::io("<output>", std::io::Error::other(format!("{e}")));
    let mut w = WriterBuilder::new().from_writer(text);
    let kinds: Vec<SignalKind> = batch.schema().signals().iter().map(|s| s.kind).collect();
    let mut ryu_buf = ryu::Buffer::new();
    let mut int_buf = itoa::Buffer::new();
    let mut ts_text = String::with_capacity(32);
    let mut last_ts = None;
    for row in range {
        let ts = batch.timestamps()[row];
        if last_ts != Some(ts) {
            ts_text.clear();
            write_timestamp(&mut ts_text, ts);
            last_ts = Some(ts);
        }
        w.write_field(&ts_text).map_err(io)?;
        w.write_field(batch.device_of(row)).map_err(io)?;
        if let Some(s) = batch.states() {
            w.write_field(s[row].as_str()).map_err(io)?;
        }
        for (k, kind) in kinds.iter().enumerate() {
            let v = batch.signal(k)[row];
            let text: &str = if v.is_nan() {
                ""
            } else if *kind == SignalKind::Int && v.fract() == 0.0 && v.abs() < 9.0e15 {
                int_buf.format(v as i64)
            } else {
                ryu_buf.format(v)
            };
            w.write_field(text).map_err(io)?;
        }
        if let Some(e) = batch.error_codes() {
            w.write_field(int_buf.format(e[row])).map_err(io)?;
        }
        if batch.tag_codes().is_some() {
            w.write_field(batch.tag_of(row).unwrap_or("")).map_err(io)?;
        }
        w.write_record(None::<&[u8]>).map_err(io)?;
    }
    w.flush().map_err(|e| Error::io("<output>", e))
}

/// Writes a batch to a CSV file (see [`write_csv_to`]) through an [`AtomicFile`],
/// creating parent folders: the file appears whole or not at all, and a failure
/// leaves any earlier file at `path` untouched.
///
/// # Errors
/// [`Error::Io`] naming the path when a folder or the file cannot be written.
pub fn write_csv(batch: &Batch, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut file = AtomicFile::create(path)?;
    write_csv_to(batch, &mut file).map_err(|e| e.at_path(path))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_is_the_same_bytes_whatever_its_block_size_and_thread_count() {
        use crate::{ParamGuard, SimParams, simulate};
        // Faults on: dropouts leave empty fields, and a second device's rows
        // interleave with the first's.
        let batch = simulate(&SimParams::default().devices(3).hours(2.0).check().unwrap());
        assert!(
            batch
                .signal(0)
                .iter()
                .chain(batch.signal(1))
                .any(|v| v.is_nan())
        );
        let mut whole = Vec::new();
        write_csv_blocks(&batch, &mut whole, usize::MAX).unwrap();
        let text = String::from_utf8(whole.clone()).unwrap();
        assert_eq!(text.lines().count(), batch.len() + 1);
        for block in [1, 7, 1_000, batch.len() - 1, batch.len()] {
            let mut out = Vec::new();
            write_csv_blocks(&batch, &mut out, block).unwrap();
            assert!(out == whole, "block size {block}");
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let mut out = Vec::new();
        one.install(|| write_csv_blocks(&batch, &mut out, 7))
            .unwrap();
        assert!(out == whole);
    }

    fn read_str(csv: &str) -> Result<Batch> {
        CsvReader::from_reader(
            std::io::Cursor::new(csv.as_bytes().to_vec()),
            "t.csv",
            &ReadOptions::default(),
        )?
        .read_all()
    }

    #[test]
    fn infers_signals_and_optional_columns() {
        let b = read_str(
            "Time,machine,pressure_bar,site,flow\n\
             2026-01-01 00:00:00,M1,2.5,north,10\n\
             2026-01-01 00:00:10,M1,,north,11\n",
        )
        .unwrap();
        assert_eq!(
            b.schema().names().collect::<Vec<_>>(),
            ["pressure_bar", "flow"]
        );
        assert_eq!(b.device_names(), ["M1"]);
        assert!(b.signal(0)[1].is_nan());
        assert!(b.states().is_none() && b.error_codes().is_none() && b.tag_codes().is_none());
    }

    #[test]
    fn no_device_column_is_one_device_named_after_the_file() {
        let b = read_str("ts,x\n2026-01-01T00:00:00Z,1\n2026-01-01T00:00:01Z,2\n").unwrap();
        assert_eq!(b.device_names(), ["t"]);
        assert_eq!(b.device_codes(), [0, 0]);
    }

    #[test]
    fn label_column_is_ground_truth() {
        let b =
            read_str("timestamp,device_id,x,label\n2026-01-01,A,1,0\n2026-01-02,A,2,1\n").unwrap();
        assert_eq!(b.schema().len(), 1, "label is not a signal");
        assert_eq!(b.tag_of(0), None);
        assert_eq!(b.tag_of(1), Some(LABEL_TAG));
        let bad = read_str("timestamp,device_id,x,label\n2026-01-01,A,1,2\n").unwrap_err();
        assert!(bad.to_string().contains("column `label`"), "{bad}");
    }

    #[test]
    fn parse_errors_name_line_column_and_value() {
        let e = read_str("timestamp,device_id,x\n2026-01-01,A,1\n2026-01-01,A,abc\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv:3: column `x`: cannot read \"abc\" as a number"
        );
        let e = read_str("timestamp,device_id,x\nnot-a-time,A,1\n").unwrap_err();
        assert!(
            e.to_string().starts_with("t.csv:2: column `timestamp`"),
            "{e}"
        );
        let e = read_str("timestamp,device_id,x\n2026-01-01,A,1,9\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("t.csv:2: found 4 fields where the header has 3"),
            "{e}"
        );
        let e = read_str("device_id,x\nA,1\n").unwrap_err();
        assert!(matches!(e, Error::MissingColumn { .. }), "{e}");
        assert!(matches!(read_str("").unwrap_err(), Error::Empty { .. }));
    }

    #[test]
    fn error_lines_are_true_after_crlf_blank_lines_and_quoted_newlines() {
        // The csv crate's own positions run one line behind after each CRLF.
        let e = read_str("timestamp,device_id,x\r\n2026-01-01,A,1\r\n2026-01-01,A,oops\r\n")
            .unwrap_err();
        assert!(e.to_string().starts_with("t.csv:3: column `x`"), "{e}");
        let e =
            read_str("timestamp,device_id,x\n2026-01-01,A,1\n\n\n2026-01-01,A,oops\n").unwrap_err();
        assert!(e.to_string().starts_with("t.csv:5: column `x`"), "{e}");
        let e = read_str(
            "timestamp,device_id,x\r\n2026-01-01,\"A\r\nB\",1\r\n\r\n2026-01-01,A,1,2\r\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t.csv:5: found 4 fields"), "{e}");
    }

    #[test]
    fn bom_crlf_quotes_and_missing_spellings() {
        let b = read_str(
            "\u{feff}timestamp,device_id,x\r\n\"2026-01-01T00:00:00Z\",\"A,1\",NaN\r\n2026-01-01T00:00:10Z,\"A,1\",-inf\r\n",
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.device_names(), ["A,1"]);
        assert!(b.signal(0)[0].is_nan());
        assert_eq!(b.signal(0)[1], f64::NEG_INFINITY);
    }

    #[test]
    fn chunks_keep_dictionary_codes() {
        let mut r = CsvReader::from_reader(
            std::io::Cursor::new(
                b"timestamp,device_id,x\n2026-01-01,A,1\n2026-01-01,B,2\n2026-01-02,A,3\n".to_vec(),
            ),
            "t.csv",
            &ReadOptions {
                infer_rows: 1,
                ..ReadOptions::default()
            },
        )
        .unwrap();
        let c1 = r.next_chunk(2).unwrap().unwrap();
        let c2 = r.next_chunk(2).unwrap().unwrap();
        assert!(r.next_chunk(2).unwrap().is_none());
        assert_eq!(c1.len(), 2);
        assert_eq!(c2.device_codes(), [0]);
        assert_eq!(c2.device_of(0), "A");
        assert_eq!(r.rows_read(), 3);
    }

    #[test]
    fn write_then_read_round_trips() {
        let b = read_str(
            "timestamp,device_id,state,x,error_code,anomaly_tag\n\
             2026-01-01T00:00:00Z,A,RUN,0.1,0, \n\
             2026-01-01T00:00:10Z,A,IDLE,,5,sensor_dropout\n",
        )
        .unwrap();
        let mut out = Vec::new();
        write_csv_to(&b, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "timestamp,device_id,state,x,error_code,anomaly_tag\n\
             2026-01-01T00:00:00Z,A,RUN,0.1,0,\n\
             2026-01-01T00:00:10Z,A,IDLE,,5,sensor_dropout\n"
        );
        let again = read_str(&text).unwrap();
        assert_eq!(again.timestamps(), b.timestamps());
        assert_eq!(again.tag_of(1), Some("sensor_dropout"));
    }

    #[test]
    fn the_raw_reader_hands_over_what_the_strict_reader_refuses() {
        let mut bytes = b"\xEF\xBB\xBFtimestamp,device_id,x\r\n".to_vec();
        bytes.extend_from_slice(
            b"2026-01-01,A\r\n2026-01-01,\xFF,abc\r\n\r\n2026-01-02,\"B,1\",2\r\n",
        );
        let mut r =
            RawCsvReader::from_reader(bytes.as_slice(), "t.csv", &ReadOptions::default()).unwrap();
        assert_eq!(r.layout().header, ["timestamp", "device_id", "x"]);
        let mut rec = RawRecord::new();
        let mut got = Vec::new();
        while r.read_record(&mut rec).unwrap() {
            got.push((
                rec.line(),
                rec.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            ));
        }
        assert_eq!(
            got,
            [
                (2, vec![b"2026-01-01".to_vec(), b"A".to_vec()]),
                (
                    3,
                    vec![b"2026-01-01".to_vec(), b"\xFF".to_vec(), b"abc".to_vec()]
                ),
                (
                    5,
                    vec![b"2026-01-02".to_vec(), b"B,1".to_vec(), b"2".to_vec()]
                ),
            ]
        );
        assert!(matches!(
            RawCsvReader::from_reader(&b""[..], "t.csv", &ReadOptions::default()).unwrap_err(),
            Error::Empty { .. }
        ));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b" 1.5 "), Some(1.5));
        assert!(parse_number(b"").unwrap().is_nan());
        assert!(parse_number(b"NA").unwrap().is_nan());
        assert_eq!(parse_number(b"Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_number(b"1,5"), None);
        assert_eq!(parse_int(b"3.0"), Some(3));
        assert_eq!(parse_int(b"3.5"), None);
        assert_eq!(parse_int(b""), Some(0));
    }
}
