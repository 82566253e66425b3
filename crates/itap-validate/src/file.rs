//! Validating CSV files in bounded memory, and reading back their validated rows.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use itap_telemetry::{
    AtomicFile, Batch, BatchBuilder, InputLayout, RawCsvReader, RawRecord, ReadOptions, Schema,
    State, TimeZone, TruthColumn, parse_int, parse_number, parse_timestamp_bytes,
};

use crate::checks::Check;
use crate::columns::{required_columns, unknown_columns};
use crate::engine::{ColumnMap, Engine, Outcome, RowRefs, Summary};
use crate::error::{Error, Result};
use crate::findings::{At, Findings};
use crate::params::{CheckedValidation, Policy};
use crate::report::{InputInfo, LayoutInfo, Report, assemble};
use crate::validated::Validated;

/// Rows read and checked at a time by [`validate_file`] and [`validate_reader`].
pub const CHUNK_ROWS: usize = 65_536;

/// The first column of a quarantine file: why each row was set aside.
pub const QUARANTINE_REASONS_COLUMN: &str = "quarantine_reasons";

/// A reader that hashes (SHA-256) and counts what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
    head: [u8; 3],
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
            head: [0; 3],
        }
    }

    /// Reads the rest of the input, so that the digest covers all of it.
    fn drain(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(|_| ())
    }

    fn hex_digest(&self) -> String {
        hex(&self.sha.clone().finalize())
    }

    fn has_bom(&self) -> bool {
        self.bytes >= 3 && self.head == *b"\xEF\xBB\xBF"
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        self.sha.update(got);
        for (i, &b) in got.iter().enumerate() {
            let at = self.bytes as usize + i;
            if at >= 3 {
                break;
            }
            self.head[at] = b;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The SHA-256 of a file, lowercase hex.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Hashing::new(BufReader::with_capacity(1 << 16, file));
    h.drain().map_err(|e| Error::io(path, e))?;
    Ok(h.hex_digest())
}

/// A raw record kept for the quarantine file, with what became of it.
#[derive(Debug, Default)]
struct KeptRecord {
    rec: RawRecord,
    /// Its row in the chunk's batch, when it could be read into one.
    batch_row: Option<usize>,
    /// Why it could not be read, when it could not.
    reasons: Vec<String>,
}

/// Reads a CSV leniently and checks it chunk by chunk.
struct FileStream<R> {
    raw: RawCsvReader<R>,
    layout: InputLayout,
    timezone: TimeZone,
    builder: BatchBuilder,
    engine: Engine,
    default_device_code: u32,
    values: Vec<f64>,
    lines: Vec<u64>,
    ordinals: Vec<u64>,
    next_ordinal: u64,
    keep_raw: bool,
    kept: Vec<KeptRecord>,
    kept_len: usize,
    scratch: RawRecord,
    outcome: Outcome,
    /// Records of the last chunk that could not be read into the batch.
    last_unreadable: u64,
}

impl<R: Read> FileStream<R> {
    fn new(
        raw: RawCsvReader<R>,
        opts: &ReadOptions,
        params: &CheckedValidation,
        now_us: i64,
        keep_raw: bool,
    ) -> Self {
        let layout = raw.layout().clone();
        let cols = ColumnMap {
            names: layout.header.clone(),
            timestamp: layout.timestamp as u32,
            device: layout.device.map(|d| d as u32),
            signals: layout.signals.iter().map(|&i| i as u32).collect(),
        };
        let engine = Engine::new(params, &layout.schema, cols, now_us);
        let mut builder = BatchBuilder::new(
            layout.schema.clone(),
            layout.state.is_some(),
            layout.error_code.is_some(),
            layout.truth.is_some(),
        );
        let default_device_code = if layout.device.is_none() {
            builder.device_code(&layout.default_device)
        } else {
            0
        };
        FileStream {
            raw,
            timezone: opts.timezone,
            builder,
            engine,
            default_device_code,
            values: vec![f64::NAN; layout.signals.len()],
            lines: Vec::new(),
            ordinals: Vec::new(),
            next_ordinal: 0,
            keep_raw,
            kept: Vec::new(),
            kept_len: 0,
            scratch: RawRecord::new(),
            outcome: Outcome::new(keep_raw),
            last_unreadable: 0,
            layout,
        }
    }

    /// Reads and checks up to `max_rows` records; `None` at the end of the input.
    /// The batch holds the readable rows; `self.outcome` flags the bad ones.
    fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        self.lines.clear();
        self.ordinals.clear();
        self.kept_len = 0;
        let mut read = 0usize;
        let mut unreadable = 0u64;
        while read < max_rows {
            let mut rec = if self.keep_raw {
                if self.kept_len == self.kept.len() {
                    self.kept.push(KeptRecord::default());
                }
                std::mem::take(&mut self.kept[self.kept_len].rec)
            } else {
                std::mem::take(&mut self.scratch)
            };
            let got = self.raw.read_record(&mut rec);
            let got = match got {
                Ok(g) => g,
                Err(e) => {
                    self.put_back(rec);
                    return Err(e.into());
                }
            };
            if !got {
                self.put_back(rec);
                break;
            }
            read += 1;
            let ordinal = self.next_ordinal;
            self.next_ordinal += 1;
            let mut reasons = Vec::new();
            let row_before = self.builder.len();
            let pushed = self.parse(&rec, ordinal, &mut reasons);
            if pushed {
                self.lines.push(rec.line());
                self.ordinals.push(ordinal);
            } else {
                unreadable += 1;
            }
            if self.keep_raw {
                let k = &mut self.kept[self.kept_len];
                k.rec = rec;
                k.batch_row = pushed.then_some(row_before);
                k.reasons = reasons;
                self.kept_len += 1;
            } else {
                self.scratch = rec;
            }
        }
        if read == 0 {
            return Ok(None);
        }
        self.last_unreadable = unreadable;
        self.engine.count_unreadable_rows(unreadable);
        let batch = self.builder.take_chunk();
        let refs = RowRefs {
            lines: Some(&self.lines),
            ordinals: Some(&self.ordinals),
            base: 0,
        };
        self.engine.check_batch(&batch, refs, &mut self.outcome);
        Ok(Some(batch))
    }

    fn put_back(&mut self, rec: RawRecord) {
        if self.keep_raw {
            self.kept[self.kept_len].rec = rec;
        } else {
            self.scratch = rec;
        }
    }

    /// Reads one record into the builder; `false` (with findings) when a field
    /// cannot be represented.
    fn parse(&mut self, rec: &RawRecord, ordinal: u64, reasons: &mut Vec<String>) -> bool {
        let FileStream {
            layout,
            engine,
            builder,
            values,
            keep_raw,
            timezone,
            default_device_code,
            ..
        } = self;
        let mut c = RecordCheck {
            findings: &mut engine.findings,
            reasons,
            at: At {
                line: Some(rec.line()),
                row: Some(ordinal),
                device: None,
            },
            want_reasons: *keep_raw,
            ok: true,
        };
        let header_len = layout.header.len();
        if rec.len() != header_len {
            c.fail(Check::FieldCount, None, || {
                (
                    rec.len().to_string(),
                    format!("{} fields where the header has {header_len}", rec.len()),
                )
            });
            return false;
        }
        // Every field is read, so that a row lists all its problems.
        let device = read_device(&mut c, rec, layout);
        c.at.device = device;
        let ts = read_timestamp(&mut c, rec, layout.timestamp, *timezone);
        read_signals(&mut c, rec, &layout.signals, values);
        let state = read_state(&mut c, rec, layout.state);
        let error_code = read_error_code(&mut c, rec, layout.error_code);
        let (tag_text, label_one) = read_truth(&mut c, rec, layout.truth);
        let (true, Some(ts), Some(device)) = (c.ok, ts, device) else {
            return false;
        };
        let tag = if label_one {
            builder.tag_code(itap_telemetry::LABEL_TAG)
        } else {
            builder.tag_code(tag_text)
        };
        let device = if layout.device.is_some() {
            builder.device_code(device)
        } else {
            *default_device_code
        };
        // The width always matches: `values` has one slot per schema signal.
        builder
            .push(ts, device, values, state, error_code, tag)
            .is_ok()
    }

    /// Writes this chunk's bad rows to the quarantine file.
    fn write_quarantine<W: Write>(&self, q: &mut csv::Writer<W>, path: &Path) -> Result<()> {
        let engine_reasons = self.outcome.reasons.as_deref().unwrap_or(&[]);
        let mut next = 0usize;
        let mut text = String::new();
        for k in &self.kept[..self.kept_len] {
            text.clear();
            let bad = match k.batch_row {
                None => {
                    text.push_str(&k.reasons.join("; "));
                    true
                }
                Some(b) => {
                    while next < engine_reasons.len() && engine_reasons[next].0 < b {
                        next += 1;
                    }
                    let mut first = true;
                    while next < engine_reasons.len() && engine_reasons[next].0 == b {
                        if !first {
                            text.push_str("; ");
                        }
                        text.push_str(&engine_reasons[next].1);
                        first = false;
                        next += 1;
                    }
                    self.outcome.bad.get(b).copied().unwrap_or(false)
                }
            };
            if !bad {
                continue;
            }
            let reasons = format!("line {}: {text}", k.rec.line());
            let io = |e: csv::Error| quarantine_error(path, e);
            q.write_field(reasons.as_bytes()).map_err(io)?;
            for f in k.rec.iter() {
                q.write_field(f).map_err(io)?;
            }
            q.write_record(None::<&[u8]>).map_err(io)?;
        }
        Ok(())
    }
}

/// One record being read: where it is, where its findings go, and whether every
/// field read so far can be represented.
struct RecordCheck<'a> {
    findings: &'a mut Findings,
    reasons: &'a mut Vec<String>,
    at: At<'a>,
    want_reasons: bool,
    ok: bool,
}

impl RecordCheck<'_> {
    /// Records a field that cannot be read (`col`: the column's index); the record
    /// will not reach the batch.
    fn fail(&mut self, check: Check, col: Option<u32>, make: impl FnOnce() -> (String, String)) {
        let hit = self
            .findings
            .hit(check, col, self.at, self.want_reasons, make);
        if let Some(r) = hit.reason {
            self.reasons.push(r);
        }
        self.ok = false;
    }
}

fn field(rec: &RawRecord, i: usize) -> &[u8] {
    rec.get(i).unwrap_or(b"")
}

fn lossy(rec: &RawRecord, i: usize) -> String {
    String::from_utf8_lossy(field(rec, i)).into_owned()
}

/// The device id (`schema.encoding` when it is not UTF-8); the layout's default
/// device without a device column.
fn read_device<'r>(
    c: &mut RecordCheck<'_>,
    rec: &'r RawRecord,
    layout: &'r InputLayout,
) -> Option<&'r str> {
    let Some(i) = layout.device else {
        return Some(layout.default_device.as_str());
    };
    match std::str::from_utf8(field(rec, i).trim_ascii()) {
        Ok(d) => Some(d),
        Err(_) => {
            c.fail(Check::Encoding, Some(i as u32), || {
                (lossy(rec, i), "the device id is not valid UTF-8".to_owned())
            });
            None
        }
    }
}

/// The timestamp in column `i` (`time.unparseable`).
fn read_timestamp(
    c: &mut RecordCheck<'_>,
    rec: &RawRecord,
    i: usize,
    timezone: TimeZone,
) -> Option<i64> {
    let ts = parse_timestamp_bytes(field(rec, i).trim_ascii(), timezone);
    if ts.is_none() {
        c.fail(Check::Unparseable, Some(i as u32), || {
            (
                lossy(rec, i),
                "not a timestamp such as 2026-01-01T00:00:00Z".to_owned(),
            )
        });
    }
    ts
}

/// The signal values into `values`, one per column of `signals` (`schema.type`,
/// or `schema.encoding` for bytes that are not UTF-8).
fn read_signals(c: &mut RecordCheck<'_>, rec: &RawRecord, signals: &[usize], values: &mut [f64]) {
    for (slot, &i) in values.iter_mut().zip(signals) {
        match parse_number(field(rec, i)) {
            Some(v) => *slot = v,
            None => {
                let check = if std::str::from_utf8(field(rec, i)).is_err() {
                    Check::Encoding
                } else {
                    Check::Type
                };
                c.fail(check, Some(i as u32), || {
                    (lossy(rec, i), "not a number".to_owned())
                });
            }
        }
    }
}

/// The state in column `i`, RUN without one (`range.unknown_state`,
/// `schema.encoding`).
fn read_state(c: &mut RecordCheck<'_>, rec: &RawRecord, i: Option<usize>) -> State {
    let Some(i) = i else {
        return State::Run;
    };
    match std::str::from_utf8(field(rec, i)) {
        Ok(s) => s.parse::<State>().unwrap_or_else(|_| {
            c.fail(Check::UnknownState, Some(i as u32), || {
                (s.to_owned(), "not RUN, IDLE or MAINT".to_owned())
            });
            State::Run
        }),
        Err(_) => {
            c.fail(Check::Encoding, Some(i as u32), || {
                (lossy(rec, i), "the state is not valid UTF-8".to_owned())
            });
            State::Run
        }
    }
}

/// The error code in column `i`, 0 without one (`schema.type`).
fn read_error_code(c: &mut RecordCheck<'_>, rec: &RawRecord, i: Option<usize>) -> i32 {
    let Some(i) = i else {
        return 0;
    };
    parse_int(field(rec, i)).unwrap_or_else(|| {
        c.fail(Check::Type, Some(i as u32), || {
            (lossy(rec, i), "not an integer error code".to_owned())
        });
        0
    })
}

/// The ground truth: the fault tag's text (blank = none), and whether a 0/1 label
/// is 1 (`schema.encoding`, `schema.type`).
fn read_truth<'r>(
    c: &mut RecordCheck<'_>,
    rec: &'r RawRecord,
    truth: Option<TruthColumn>,
) -> (&'r str, bool) {
    match truth {
        Some(TruthColumn::Tag(i)) => match std::str::from_utf8(field(rec, i)) {
            Ok(t) => (t, false),
            Err(_) => {
                c.fail(Check::Encoding, Some(i as u32), || {
                    (lossy(rec, i), "the fault tag is not valid UTF-8".to_owned())
                });
                ("", false)
            }
        },
        Some(TruthColumn::Label(i)) => match parse_int(field(rec, i)) {
            Some(0) => ("", false),
            Some(1) => ("", true),
            _ => {
                c.fail(Check::Type, Some(i as u32), || {
                    (lossy(rec, i), "not a 0/1 label".to_owned())
                });
                ("", false)
            }
        },
        None => ("", false),
    }
}

fn quarantine_error(path: &Path, e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::io(path, std::io::Error::other(format!("{other:?}"))),
    }
}

fn layout_info(l: &InputLayout) -> LayoutInfo {
    let name = |i: usize| l.column_name(i).to_owned();
    LayoutInfo {
        timestamp: name(l.timestamp),
        device: l.device.map(name),
        state: l.state.map(name),
        error_code: l.error_code.map(name),
        truth: l.truth.map(|t| match t {
            TruthColumn::Tag(i) | TruthColumn::Label(i) => name(i),
        }),
        signals: l.signals.iter().map(|&i| name(i)).collect(),
        ignored: l.ignored.iter().map(|&i| name(i)).collect(),
    }
}

/// Validates CSV from any reader in bounded memory, writing the bad rows to
/// `quarantine` when given. `name` stands for the input in the report and in
/// messages (and, as for [`RawCsvReader`], names the device of a file without a
/// device column).
///
/// Problems in the data, including a missing header or column, are findings in
/// the report, never errors. The quarantine output is CSV: a
/// `quarantine_reasons` column (`line N: check.id: …`), then the row's fields as
/// found, under the input's header.
///
/// ```
/// use itap_validate::{validate_reader, ParamGuard, ValidationParams, Verdict};
/// use itap_telemetry::ReadOptions;
/// let csv = "timestamp,device_id,temp_c\n\
///            2026-01-01T00:00:00Z,A,50.5\n\
///            2026-01-01T00:00:10Z,A,hot\n";
/// let params = ValidationParams::default().check()?;
/// let mut quarantine = Vec::new();
/// let report = validate_reader(csv.as_bytes(), "inline.csv", &ReadOptions::default(),
///                              &params, Some(&mut quarantine))?;
/// assert_eq!(report.verdict, Verdict::Rejected);
/// let f = report.findings_of("schema.type").next().unwrap();
/// assert_eq!((f.examples[0].line, f.examples[0].value.as_str()), (Some(3), "hot"));
/// assert!(String::from_utf8(quarantine).unwrap().contains("line 3: schema.type"));
/// # Ok::<(), itap_validate::Error>(())
/// ```
///
/// # Errors
/// [`Error::Telemetry`] when reading fails (an I/O error); [`Error::Io`] when the
/// quarantine output cannot be written.
pub fn validate_reader<R: Read>(
    reader: R,
    name: impl AsRef<Path>,
    opts: &ReadOptions,
    params: &CheckedValidation,
    quarantine: Option<&mut dyn Write>,
) -> Result<Report> {
    validate_chunked(reader, name.as_ref(), opts, params, quarantine, CHUNK_ROWS)
}

/// [`validate_reader`] with a chosen chunk size (the report does not depend on it).
pub(crate) fn validate_chunked<R: Read>(
    reader: R,
    name: &Path,
    opts: &ReadOptions,
    params: &CheckedValidation,
    quarantine: Option<&mut dyn Write>,
    chunk_rows: usize,
) -> Result<Report> {
    let now_us = params.reference_time();
    let mut src = Hashing::new(reader);
    let head = RawCsvReader::from_reader(&mut src, name, opts);
    let mut qw = quarantine.map(|w| {
        csv::WriterBuilder::new()
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_writer(w)
    });
    let (summary, layout) = match head {
        Ok(raw) => {
            let mut stream = FileStream::new(raw, opts, params, now_us, qw.is_some());
            if let Some(q) = qw.as_mut() {
                write_quarantine_header(q, &stream.layout.header, name)?;
            }
            header_findings(&mut stream.engine, &stream.layout, params);
            while stream.next_chunk(chunk_rows.max(1))?.is_some() {
                if let Some(q) = qw.as_mut() {
                    stream.write_quarantine(q, name)?;
                }
            }
            end_findings(&mut stream);
            (stream.engine.finish(), Some(stream.layout))
        }
        Err(e) => {
            let summary = unreadable_header(e, params, now_us)?;
            if let Some(q) = qw.as_mut() {
                q.write_record([QUARANTINE_REASONS_COLUMN])
                    .map_err(|e| quarantine_error(name, e))?;
            }
            (summary, None)
        }
    };
    if let Some(mut q) = qw {
        q.flush().map_err(|e| Error::io(name, e))?;
    }
    src.drain().map_err(|e| Error::io(name, e))?;
    let input = InputInfo {
        path: Some(name.display().to_string()),
        sha256: Some(src.hex_digest()),
        bytes: Some(src.bytes),
    };
    let mut read_options = opts.clone();
    read_options.declared.clear();
    Ok(assemble(
        summary,
        input,
        params,
        now_us,
        Some(read_options),
        layout.as_ref().map(layout_info),
        layout.map(|l| l.schema),
    ))
}

/// The quarantine file's header: the reasons column, then the input's header.
fn write_quarantine_header<W: Write>(
    q: &mut csv::Writer<W>,
    header: &[String],
    name: &Path,
) -> Result<()> {
    let io = |e| quarantine_error(name, e);
    q.write_field(QUARANTINE_REASONS_COLUMN).map_err(io)?;
    for h in header {
        q.write_field(h).map_err(io)?;
    }
    q.write_record(None::<&[u8]>).map_err(io)
}

/// The checks of a mapped header, before any row: required columns, columns
/// mapped to nothing, signals against the declared ones.
fn header_findings(engine: &mut Engine, layout: &InputLayout, params: &CheckedValidation) {
    required_columns(
        &mut engine.findings,
        &params.params().required_columns,
        &layout.header,
        |name| {
            format!(
                "required column `{name}` is not in the header ({})",
                layout.header.join(",")
            )
        },
    );
    unknown_columns(&mut engine.findings, layout);
    engine.check_declared_signals(params.params().declared_signals.as_deref());
}

/// The checks of a whole file read: no data row, a byte order mark.
fn end_findings<R: Read>(stream: &mut FileStream<&mut Hashing<R>>) {
    if stream.next_ordinal == 0 {
        stream
            .engine
            .findings
            .hit(Check::NoRows, None, At::FILE, false, || {
                (
                    String::new(),
                    "the header is followed by no data row".to_owned(),
                )
            });
    }
    if stream.raw.get_ref().has_bom() {
        stream
            .engine
            .findings
            .hit(Check::Bom, None, At::FILE, false, || {
                (
                    "EF BB BF".to_owned(),
                    "a UTF-8 byte order mark precedes the header; it was skipped".to_owned(),
                )
            });
    }
}

/// The summary of a file whose header cannot be mapped: its one finding.
///
/// # Errors
/// `e` itself when it is not about the header (an I/O error).
fn unreadable_header(
    e: itap_telemetry::Error,
    params: &CheckedValidation,
    now_us: i64,
) -> Result<Summary> {
    let (check, value, detail) = match e {
        itap_telemetry::Error::Empty { .. } => (
            Check::NoHeader,
            String::new(),
            "the input is empty; a CSV with a header line is expected".to_owned(),
        ),
        itap_telemetry::Error::MissingColumn {
            role, header, hint, ..
        } => (
            Check::MissingColumn,
            role.clone(),
            format!("no {role} column in the header ({header}); name it with {hint}"),
        ),
        itap_telemetry::Error::InvalidParam(p) => (Check::BadHeader, p.name, p.reason),
        other => return Err(other.into()),
    };
    let mut engine = Engine::new(
        params,
        &Schema::new(Vec::new()).map_err(Error::from)?,
        ColumnMap {
            names: Vec::new(),
            timestamp: 0,
            device: None,
            signals: Vec::new(),
        },
        now_us,
    );
    engine
        .findings
        .hit(check, None, At::FILE, false, || (value, detail));
    Ok(engine.finish())
}

/// Validates a CSV file in bounded memory (see [`validate_reader`]); with
/// `quarantine`, writes the bad rows there through an
/// [`AtomicFile`](itap_telemetry::AtomicFile) (whole or not at all), creating
/// parent folders.
///
/// Memory stays bounded by one chunk of [`CHUNK_ROWS`] rows plus small per-device
/// state, whatever the file's size.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or the quarantine file written;
/// [`Error::Telemetry`] when reading fails.
pub fn validate_file(
    path: impl AsRef<Path>,
    opts: &ReadOptions,
    params: &CheckedValidation,
    quarantine: Option<&Path>,
) -> Result<Report> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    let Some(qpath) = quarantine else {
        return validate_reader(reader, path, opts, params, None);
    };
    let mut qfile = AtomicFile::create(qpath)?;
    let report = validate_reader(reader, path, opts, params, Some(&mut qfile))?;
    qfile.commit()?;
    Ok(report)
}

/// The validated rows of a file, in chunks, for a store to ingest.
///
/// Opened with the [`Report`] that [`validate_file`] made for the same file,
/// read options and parameters, it reads the file again in bounded memory and
/// yields [`Validated<Batch>`] chunks: every row when the verdict is valid (with or
/// without warnings), only the rows without an error finding when it is
/// [`Quarantined`](crate::Verdict::Quarantined). It refuses a rejected file, a file
/// whose SHA-256 differs from the report's, and a report made with other
/// parameters, read options or signal declarations; the row checks run again as
/// they did (same reference time), so the rows kept are exactly those the report
/// accepted. After the last chunk it checks the digest of what it read and the
/// number of rows, and yields an error instead of ending if either differs (the
/// file changed while it was read).
///
/// ```
/// use itap_validate::{validate_file, ParamGuard, ValidatedChunks, ValidationParams};
/// use itap_telemetry::ReadOptions;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("t.csv");
/// std::fs::write(&path, "timestamp,device_id,x\n2026-01-01T00:00:00Z,A,1\n2026-01-01T00:00:10Z,A,2\n").unwrap();
/// let (opts, params) = (ReadOptions::default(), ValidationParams::default().check()?);
/// let report = validate_file(&path, &opts, &params, None)?;
/// let mut rows = 0;
/// for chunk in ValidatedChunks::open(&path, &opts, &params, &report, 1)? {
///     rows += chunk?.len();
/// }
/// assert_eq!(rows, 2);
/// # Ok::<(), itap_validate::Error>(())
/// ```
pub struct ValidatedChunks {
    path: PathBuf,
    stream: FileStream<Hashing<BufReader<File>>>,
    chunk_rows: usize,
    expected_sha: String,
    expected_rows: u64,
    quarantine: bool,
    yielded: u64,
    done: bool,
}

impl std::fmt::Debug for ValidatedChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedChunks")
            .field("path", &self.path)
            .field("chunk_rows", &self.chunk_rows)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl ValidatedChunks {
    /// Checks the report against the file and the settings, and opens the file.
    ///
    /// # Errors
    /// [`Error::Rejected`] when the report's verdict rejects the file;
    /// [`Error::DigestMismatch`] when the file's SHA-256 is not the report's;
    /// [`Error::ReportMismatch`] when the report was made for other parameters,
    /// read options or signals, or is not a file report; [`Error::Io`] and
    /// [`Error::Telemetry`] when the file cannot be read.
    pub fn open(
        path: impl AsRef<Path>,
        opts: &ReadOptions,
        params: &CheckedValidation,
        report: &Report,
        chunk_rows: usize,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mismatch = |reason: String| Error::ReportMismatch {
            path: path.clone(),
            reason,
        };
        if !report.verdict.is_storable() {
            return Err(Error::Rejected {
                path,
                errors: report.totals.errors,
                first: report
                    .first_error()
                    .unwrap_or_else(|| "see the report".to_owned()),
            });
        }
        let Some(expected_sha) = report.input.sha256.clone() else {
            return Err(mismatch(
                "the report is of an in-memory batch, not of a file".to_owned(),
            ));
        };
        if report.params != *params.params() {
            return Err(mismatch(
                "the report was made with other validation parameters".to_owned(),
            ));
        }
        let mut plain = opts.clone();
        plain.declared.clear();
        if report.read_options.as_ref() != Some(&plain) {
            return Err(mismatch(
                "the report was made with other read options".to_owned(),
            ));
        }
        let found = sha256_file(&path)?;
        if found != expected_sha {
            return Err(Error::DigestMismatch {
                path,
                expected: expected_sha,
                found,
            });
        }
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let src = Hashing::new(BufReader::with_capacity(1 << 16, file));
        let raw = RawCsvReader::from_reader(src, &path, opts)?;
        if report.schema.as_ref() != Some(&raw.layout().schema) {
            return Err(mismatch(
                "the report was made with other signal declarations".to_owned(),
            ));
        }
        let stream = FileStream::new(raw, opts, params, report.reference_time_us, false);
        Ok(ValidatedChunks {
            path,
            stream,
            chunk_rows: chunk_rows.max(1),
            expected_sha,
            expected_rows: report.rows_accepted,
            quarantine: report.policy == Policy::Quarantine,
            yielded: 0,
            done: false,
        })
    }

    /// The signals of the batches yielded.
    pub fn schema(&self) -> &Schema {
        &self.stream.layout.schema
    }

    /// The rows the report accepted: what the chunks add up to.
    pub fn rows_expected(&self) -> u64 {
        self.expected_rows
    }

    /// Rows yielded so far.
    pub fn rows_yielded(&self) -> u64 {
        self.yielded
    }

    fn step(&mut self) -> Result<Option<Validated<Batch>>> {
        loop {
            let Some(batch) = self.stream.next_chunk(self.chunk_rows)? else {
                let found = self.stream.raw.get_ref().hex_digest();
                if found != self.expected_sha {
                    return Err(Error::DigestMismatch {
                        path: self.path.clone(),
                        expected: self.expected_sha.clone(),
                        found,
                    });
                }
                if self.yielded != self.expected_rows {
                    return Err(Error::ReportMismatch {
                        path: self.path.clone(),
                        reason: format!(
                            "{} rows passed the checks now, the report accepted {}",
                            self.yielded, self.expected_rows
                        ),
                    });
                }
                return Ok(None);
            };
            let bad = &self.stream.outcome.bad;
            let chunk = if self.stream.last_unreadable > 0 || bad.iter().any(|&b| b) {
                if !self.quarantine {
                    return Err(Error::ReportMismatch {
                        path: self.path.clone(),
                        reason: "rows fail an error check that the report did not record"
                            .to_owned(),
                    });
                }
                let keep: Vec<usize> = (0..batch.len()).filter(|&r| !bad[r]).collect();
                batch.take(&keep)
            } else {
                batch
            };
            if chunk.is_empty() {
                continue;
            }
            self.yielded += chunk.len() as u64;
            return Ok(Some(Validated::new(chunk)));
        }
    }
}

impl Iterator for ValidatedChunks {
    type Item = Result<Validated<Batch>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use crate::{Level, ParamGuard, ValidationParams, Verdict};

    /// Three devices at 10 s, rows interleaved, with nearly every kind of problem.
    fn messy_csv() -> String {
        let mut s =
            String::from("timestamp,device_id,state,rpm,temp_c,note,error_code,anomaly_tag\n");
        let t0 = 1_767_225_600i64; // 2026-01-01T00:00:00Z
        let ts = |secs: i64| itap_telemetry::format_timestamp((t0 + secs) * 1_000_000);
        for i in 0..120i64 {
            for (d, dev) in ["A", "B", "C"].iter().enumerate() {
                let mut t = i * 10;
                let mut rpm = format!("{}", 1500 + (i * 7 + d as i64) % 13);
                let mut temp = format!("{:.2}", 50.0 + (i as f64 * 0.37 + d as f64).sin());
                let mut state = "RUN";
                if *dev == "B" && i >= 60 {
                    t -= 300; // B's clock steps back five minutes for good
                }
                if *dev == "C" && (40..50).contains(&i) {
                    temp.clear(); // a missing run of 10
                }
                if *dev == "A" && (20..30).contains(&i) {
                    rpm = "1500".into(); // stuck for 10 samples
                }
                if *dev == "A" && i == 90 {
                    continue; // a 20 s step: no gap at factor 3
                }
                if *dev == "C" && (95..100).contains(&i) {
                    continue; // a 60 s step: a gap
                }
                if *dev == "A" && i == 5 {
                    temp = "200".into();
                }
                if *dev == "A" && i == 6 {
                    rpm = "-3".into();
                }
                if *dev == "A" && i == 7 {
                    temp = "-Infinity".into();
                }
                if *dev == "A" && i == 8 {
                    state = "STOPPED";
                }
                if *dev == "C" && i == 10 {
                    temp = "warm".into();
                }
                if *dev == "C" && i == 110 {
                    state = "IDLE";
                }
                let line = format!("{},{dev},{state},{rpm},{temp},free text,0, \n", ts(t));
                s.push_str(&line);
                if *dev == "A" && i == 12 {
                    s.push_str(&line); // an equal duplicate
                }
                if *dev == "C" && i == 30 {
                    s.push_str(&line.replace(",0, \n", ",7, \n")); // a conflicting one
                }
            }
            if i == 70 {
                let _ = writeln!(s, "{},A,RUN,1500,50.0,x,0, ", ts(i * 10 - 5)); // out of order
                let _ = writeln!(s, "not-a-time,A,RUN,1500,50.0,x,0, ");
                let _ = writeln!(s, "{},A,RUN,1500,50.0,x,0, ,surplus", ts(i * 10 + 1));
                let _ = writeln!(s, "{},,RUN,1500,50.0,x,0, ", ts(i * 10 + 2));
                let _ = writeln!(s, "2030-01-01T00:00:00Z,C,RUN,1500,50.0,x,0, ");
            }
        }
        s
    }

    fn params(policy: Policy) -> CheckedValidation {
        ValidationParams::default()
            .policy(policy)
            .max_missing_run(5)
            .stuck_samples(5)
            .clock_jump("1m")
            .now(Some("2026-06-01T00:00:00Z"))
            .severity(Check::Stuck, Level::Error)
            .check()
            .unwrap()
    }

    /// The default signals' declarations (ranges), as the CLI passes them.
    fn declared() -> ReadOptions {
        ReadOptions {
            declared: Schema::default().signals().to_vec(),
            ..ReadOptions::default()
        }
    }

    fn run(csv: &str, p: &CheckedValidation, chunk: usize) -> (Report, Vec<u8>) {
        let mut q = Vec::new();
        let r = validate_chunked(
            csv.as_bytes(),
            Path::new("messy.csv"),
            &declared(),
            p,
            Some(&mut q),
            chunk,
        )
        .unwrap();
        (r, q)
    }

    #[test]
    fn the_report_does_not_depend_on_the_chunk_size() {
        let csv = messy_csv();
        let p = params(Policy::Quarantine);
        let (base, base_q) = run(&csv, &p, CHUNK_ROWS);
        for check in [
            "schema.field_count",
            "schema.type",
            "range.out_of_range",
            "range.non_finite",
            "range.negative",
            "range.unknown_state",
            "range.empty_device",
            "time.unparseable",
            "time.out_of_order",
            "time.duplicate_equal",
            "time.duplicate_conflict",
            "time.gap",
            "time.clock_jump_back",
            "time.future",
            "sensor.stuck",
            "completeness.missing_run",
            "schema.unknown_column",
        ] {
            assert!(base.count_of(check) > 0, "{check} found nothing");
        }
        assert_eq!(base.verdict, Verdict::Quarantined);
        for chunk in [1, 2, 3, 7, 64] {
            let (r, q) = run(&csv, &p, chunk);
            assert_eq!(r, base, "chunk size {chunk}");
            assert_eq!(q, base_q, "chunk size {chunk}");
        }
    }

    /// 300 devices at 10 s, rows interleaved (enough for the engine to check
    /// them a tile of devices at a time), each with problems of its own at its
    /// own times.
    fn crowded_csv() -> String {
        let mut s = String::from("timestamp,device_id,state,rpm,temp_c,error_code,anomaly_tag\n");
        let t0 = 1_767_225_600i64; // 2026-01-01T00:00:00Z
        let ts = |secs: i64| itap_telemetry::format_timestamp((t0 + secs) * 1_000_000);
        for i in 0..60i64 {
            for d in 0..300i64 {
                let at = (i + d) % 60;
                if d % 29 == 3 && (20..23).contains(&i) {
                    continue; // a gap
                }
                let mut rpm = format!("{}", 1500 + (i * 7 + d) % 13);
                let mut temp = format!("{:.2}", 50.0 + (i as f64 * 0.37 + d as f64).sin());
                if d % 7 == 0 && (10..18).contains(&i) {
                    temp.clear(); // a missing run of 8
                }
                if d % 11 == 1 && (30..38).contains(&i) {
                    rpm = "1500".into(); // stuck for 8 samples
                }
                if d % 13 == 2 && at == 5 {
                    temp = "200".into();
                }
                if d % 5 == 4 && at == 9 {
                    rpm = "-1".into();
                }
                let line = format!("{},D{d:03},RUN,{rpm},{temp},0,\n", ts(i * 10));
                s.push_str(&line);
                if d % 9 == 5 && at == 40 {
                    s.push_str(&line); // an equal duplicate
                }
                if d % 10 == 6 && at == 41 {
                    s.push_str(&line.replace(",0,\n", ",9,\n")); // a conflicting one
                }
                if d % 11 == 7 && at == 50 {
                    let _ = writeln!(s, "{},D{d:03},RUN,1500,50.0,0,", ts(i * 10 - 25));
                }
                if d % 13 == 8 && at == 55 {
                    let _ = writeln!(s, "2030-01-01T00:00:00Z,D{d:03},RUN,1500,50.0,0,");
                }
            }
        }
        s
    }

    /// A chunk of many devices is checked a tile of devices at a time, parts of
    /// the devices in parallel; the report, with its counts and first examples,
    /// and the quarantine file with its rows' reasons, are those of checking the
    /// rows one at a time, on any number of threads.
    #[test]
    fn checking_many_devices_a_tile_at_a_time_finds_what_row_by_row_finds() {
        let csv = crowded_csv();
        let p = params(Policy::Quarantine);
        let (base, base_q) = run(&csv, &p, 1);
        for check in [
            "range.out_of_range",
            "range.negative",
            "time.out_of_order",
            "time.duplicate_equal",
            "time.duplicate_conflict",
            "time.gap",
            "time.future",
            "sensor.stuck",
            "completeness.missing_run",
        ] {
            // More than the examples kept, so that which are kept matters.
            assert!(
                base.count_of(check) > 10,
                "{check}: {}",
                base.count_of(check)
            );
        }
        assert_eq!(base.per_device.len(), 300);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for chunk in [CHUNK_ROWS, 1000, 149] {
                let (r, q) = pool.install(|| run(&csv, &p, chunk));
                assert_eq!(r, base, "chunk size {chunk}, {threads} threads");
                assert!(
                    q == base_q,
                    "chunk size {chunk}, {threads} threads: the quarantine files differ"
                );
            }
        }
        // A small duplicate-key index: chunks that could fill it are checked in
        // input order, the others a tile at a time, in one input.
        let small = ValidationParams::default()
            .policy(Policy::Quarantine)
            .max_missing_run(5)
            .stuck_samples(5)
            .clock_jump("1m")
            .now(Some("2026-06-01T00:00:00Z"))
            .severity(Check::Stuck, Level::Error)
            .max_tracked_runs(1000)
            .check()
            .unwrap();
        let (want, want_q) = run(&csv, &small, 1);
        for chunk in [1000, 149] {
            let (r, q) = run(&csv, &small, chunk);
            assert_eq!(r, want, "chunk size {chunk}, small index");
            assert!(q == want_q, "chunk size {chunk}, small index");
        }
    }

    #[test]
    fn chunks_read_back_exactly_the_accepted_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messy.csv");
        std::fs::write(&path, messy_csv()).unwrap();
        let p = params(Policy::Quarantine);
        let opts = declared();
        let report = validate_file(&path, &opts, &p, None).unwrap();
        assert!(report.rows_accepted > 0 && report.rows_accepted < report.rows);
        let mut seen: Option<Vec<(i64, String)>> = None;
        for chunk_rows in [1, 5, 1000] {
            let mut keys = Vec::new();
            for chunk in ValidatedChunks::open(&path, &opts, &p, &report, chunk_rows).unwrap() {
                let b = chunk.unwrap();
                assert!(b.len() <= chunk_rows);
                keys.extend((0..b.len()).map(|r| (b.timestamps()[r], b.device_of(r).to_owned())));
            }
            assert_eq!(keys.len() as u64, report.rows_accepted);
            if let Some(s) = &seen {
                assert_eq!(&keys, s, "chunk size {chunk_rows}");
            }
            seen = Some(keys);
        }
    }
}
