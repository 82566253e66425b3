//! The validated rows of a streamed run set aside on disk by device, so that its
//! train and score passes read a group of devices back at the speed of a file
//! rather than at the speed of the store's queries.
//!
//! [`Spill::append`] takes the rows a chunk at a time, as they go to the store,
//! and writes each chunk's rows device by device (a record of one device's rows
//! of that chunk, devices in id order, so that consecutive devices lie side by
//! side); an index in memory keeps where each device's records are (a few bytes
//! a record). [`SpillGroups`], its [`DeviceGroups`], reads a group's records
//! back, the adjacent ones in one read, and puts their rows in time order, then
//! device id — the order [`StoreGroups`](crate::StoreGroups) and
//! [`BatchGroups`](crate::BatchGroups) give. The file is removed when the spill
//! is dropped.
//!
//! A record is the columns of its rows, little-endian: timestamps (i64), each
//! signal (f64), then, when the input has them, states (one byte), error codes
//! (i32) and fault tags (u32, into the spill's own tag dictionary). Values are
//! kept bit for bit, so a group read back is the rows that went in.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use itap_telemetry::{Batch, BatchColumns, Schema, State};

use crate::error::{Error, Result};
use crate::pipeline::grouped::DeviceGroups;

/// Where one device's rows of one chunk are: offset in the file and rows.
#[derive(Debug, Clone, Copy)]
struct Record {
    offset: u64,
    rows: u32,
}

/// Which optional columns the rows carry (those of the first chunk; every
/// chunk of one input has the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Present {
    states: bool,
    errors: bool,
    tags: bool,
}

impl Present {
    fn of(batch: &Batch) -> Self {
        Present {
            states: batch.states().is_some(),
            errors: batch.error_codes().is_some(),
            tags: batch.tag_codes().is_some(),
        }
    }

    /// Bytes a row takes in a record.
    fn row_bytes(self, signals: usize) -> usize {
        8 + 8 * signals
            + usize::from(self.states)
            + 4 * usize::from(self.errors)
            + 4 * usize::from(self.tags)
    }
}

/// How a spill file's name begins (the process id and `.bin` follow).
const SPILL_PREFIX: &str = ".itap-spill-";

/// Removes the spill files in `dir` that no open spill holds (locks): those of
/// runs that were killed.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(SPILL_PREFIX) && name.ends_with(".bin")) {
            continue;
        }
        let path = entry.path();
        if let Ok(f) = File::open(&path)
            && f.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The spill's file, removed when dropped.
#[derive(Debug)]
struct SpillFile {
    path: PathBuf,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Rows being set aside: [`append`](Spill::append) chunk after chunk, then
/// [`finish`](Spill::finish) to read them back by device group.
#[derive(Debug)]
pub(crate) struct Spill {
    file: SpillFile,
    out: BufWriter<File>,
    written: u64,
    layout: Option<(Schema, Present)>,
    tag_names: Vec<String>,
    tag_codes: HashMap<String, u32>,
    device_codes: HashMap<String, usize>,
    devices: Vec<SpilledDevice>,
    bounds: Option<(i64, i64)>,
    /// Reused: the chunk's rows grouped by device, and the bytes of its records.
    order: Vec<u32>,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct SpilledDevice {
    name: String,
    rows: u64,
    records: Vec<Record>,
}

impl Spill {
    /// A new spill file in `dir` (created if missing), named after the process
    /// so that two runs into one folder do not meet, and locked while it is
    /// open; it is removed when the spill (or the groups it becomes) is
    /// dropped. The spill files of runs that were killed (unlocked) are
    /// removed first.
    ///
    /// # Errors
    /// [`Error::Telemetry`] naming the path when it cannot be created.
    pub(crate) fn create(dir: &Path) -> Result<Spill> {
        let path = dir.join(format!("{SPILL_PREFIX}{}.bin", std::process::id()));
        let io = |source| itap_telemetry::Error::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        remove_stale(dir);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Spill {
            file: SpillFile { path },
            out: BufWriter::with_capacity(1 << 20, file),
            written: 0,
            layout: None,
            tag_names: vec![String::new()],
            tag_codes: HashMap::from([(String::new(), 0)]),
            device_codes: HashMap::new(),
            devices: Vec::new(),
            bounds: None,
            order: Vec::new(),
            bytes: Vec::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> Error {
        itap_telemetry::Error::Io {
            path: self.file.path.clone(),
            source,
        }
        .into()
    }

    /// Sets a chunk's rows aside.
    ///
    /// # Errors
    /// When the file cannot be written, or the chunk's signals or optional
    /// columns are not the first chunk's.
    pub(crate) fn append(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let present = Present::of(batch);
        match &self.layout {
            None => self.layout = Some((batch.schema().clone(), present)),
            Some((schema, p)) if schema == batch.schema() && *p == present => {}
            Some(_) => {
                return Err(itap_telemetry::Error::Inconsistent(format!(
                    "{}: a chunk's columns differ from the first chunk's",
                    self.file.path.display()
                ))
                .into());
            }
        }
        // The chunk's devices, by id, with their global codes.
        let names = batch.device_names();
        let mut by_name: Vec<usize> = (0..names.len()).collect();
        by_name.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let global: Vec<usize> = names
            .iter()
            .map(|n| {
                *self.device_codes.entry(n.clone()).or_insert_with(|| {
                    self.devices.push(SpilledDevice {
                        name: n.clone(),
                        rows: 0,
                        records: Vec::new(),
                    });
                    self.devices.len() - 1
                })
            })
            .collect();
        let tags: Vec<u32> = batch
            .tag_names()
            .iter()
            .map(|t| {
                *self.tag_codes.entry(t.clone()).or_insert_with(|| {
                    self.tag_names.push(t.clone());
                    (self.tag_names.len() - 1) as u32
                })
            })
            .collect();

        // The rows grouped by device (a counting sort: each device's rows stay
        // in the chunk's order).
        let codes = batch.device_codes();
        let mut starts = vec![0usize; names.len() + 1];
        for &c in codes {
            starts[c as usize + 1] += 1;
        }
        for i in 0..names.len() {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        self.order.clear();
        self.order.resize(codes.len(), 0);
        for (r, &c) in codes.iter().enumerate() {
            self.order[next[c as usize]] = r as u32;
            next[c as usize] += 1;
        }

        let ts = batch.timestamps();
        self.bytes.clear();
        for &d in &by_name {
            let rows = &self.order[starts[d]..starts[d + 1]];
            if rows.is_empty() {
                continue;
            }
            let offset = self.written + self.bytes.len() as u64;
            let b = &mut self.bytes;
            for &r in rows {
                b.extend_from_slice(&ts[r as usize].to_le_bytes());
            }
            for k in 0..batch.schema().len() {
                let col = batch.signal(k);
                for &r in rows {
                    b.extend_from_slice(&col[r as usize].to_bits().to_le_bytes());
                }
            }
            if let Some(states) = batch.states() {
                b.extend(rows.iter().map(|&r| state_byte(states[r as usize])));
            }
            if let Some(errors) = batch.error_codes() {
                for &r in rows {
                    b.extend_from_slice(&errors[r as usize].to_le_bytes());
                }
            }
            if let Some(t) = batch.tag_codes() {
                for &r in rows {
                    b.extend_from_slice(&tags[t[r as usize] as usize].to_le_bytes());
                }
            }
            let dev = &mut self.devices[global[d]];
            dev.rows += rows.len() as u64;
            dev.records.push(Record {
                offset,
                rows: rows.len() as u32,
            });
        }
        let bytes = std::mem::take(&mut self.bytes);
        let wrote = self.out.write_all(&bytes);
        self.written += bytes.len() as u64;
        self.bytes = bytes;
        wrote.map_err(|e| self.io(e))?;
        if let Some((lo, hi)) = batch.time_bounds() {
            self.bounds = Some(
                self.bounds
                    .map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))),
            );
        }
        Ok(())
    }

    /// Rows set aside so far.
    #[cfg(test)]
    pub(crate) fn rows(&self) -> u64 {
        self.devices.iter().map(|d| d.rows).sum()
    }

    /// Everything written: the rows, to be read back a group of devices at a time.
    ///
    /// # Errors
    /// When the file cannot be flushed.
    pub(crate) fn finish(mut self) -> Result<SpillGroups> {
        self.out.flush().map_err(|e| self.io(e))?;
        let Spill {
            file,
            out,
            layout,
            tag_names,
            mut devices,
            bounds,
            ..
        } = self;
        let file_handle = out.into_inner().map_err(|e| {
            Error::from(itap_telemetry::Error::Io {
                path: file.path.clone(),
                source: e.into_error(),
            })
        })?;
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        let index: HashMap<String, usize> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        Ok(SpillGroups {
            listed: devices.iter().map(|d| (d.name.clone(), d.rows)).collect(),
            devices,
            index,
            layout,
            tag_names,
            bounds,
            reader: file_handle,
            file,
            buf: Vec::new(),
        })
    }
}

fn state_byte(s: State) -> u8 {
    match s {
        State::Run => 0,
        State::Idle => 1,
        State::Maint => 2,
    }
}

fn byte_state(b: u8) -> State {
    match b {
        0 => State::Run,
        1 => State::Idle,
        _ => State::Maint,
    }
}

/// A [`Spill`]'s rows, read a group of devices at a time.
#[derive(Debug)]
pub(crate) struct SpillGroups {
    listed: Vec<(String, u64)>,
    devices: Vec<SpilledDevice>,
    index: HashMap<String, usize>,
    layout: Option<(Schema, Present)>,
    tag_names: Vec<String>,
    bounds: Option<(i64, i64)>,
    reader: File,
    // Declared after `reader`: the file is closed before it is removed.
    file: SpillFile,
    buf: Vec<u8>,
}

impl SpillGroups {
    /// The rows' signals; `None` when no row was set aside.
    pub(crate) fn schema(&self) -> Option<&Schema> {
        self.layout.as_ref().map(|(s, _)| s)
    }
}

impl DeviceGroups for SpillGroups {
    fn devices(&self) -> &[(String, u64)] {
        &self.listed
    }

    fn time_bounds(&self) -> Option<(i64, i64)> {
        self.bounds
    }

    fn load(&mut self, devices: &[String]) -> Result<Batch> {
        let Some((schema, present)) = self.layout.clone() else {
            return Err(Error::NoData("no rows were set aside".into()));
        };
        // The group's records in file order, each with its device's code in
        // the loaded batch (the devices sorted by id).
        let mut names: Vec<&String> = devices.iter().collect();
        names.sort();
        names.dedup();
        let mut records: Vec<(Record, u32)> = Vec::new();
        for (code, name) in names.iter().enumerate() {
            let Some(&d) = self.index.get(*name) else {
                return Err(Error::NoData(format!(
                    "device `{name}` has no rows set aside"
                )));
            };
            records.extend(self.devices[d].records.iter().map(|r| (*r, code as u32)));
        }
        records.sort_by_key(|(r, _)| r.offset);

        let k = schema.len();
        let row_bytes = present.row_bytes(k);
        let n: usize = records.iter().map(|(r, _)| r.rows as usize).sum();
        let mut ts = Vec::with_capacity(n);
        let mut dev = Vec::with_capacity(n);
        let mut signals = vec![Vec::with_capacity(n); k];
        let mut states = present.states.then(|| Vec::with_capacity(n));
        let mut errors = present.errors.then(|| Vec::with_capacity(n));
        let mut tags = present.tags.then(|| Vec::with_capacity(n));
        // Adjacent records are read at once.
        let mut i = 0;
        while i < records.len() {
            let start = records[i].0.offset;
            let mut end = start + records[i].0.rows as u64 * row_bytes as u64;
            let mut j = i + 1;
            while j < records.len() && records[j].0.offset == end {
                end += records[j].0.rows as u64 * row_bytes as u64;
                j += 1;
            }
            self.buf.resize((end - start) as usize, 0);
            self.reader
                .seek(SeekFrom::Start(start))
                .and_then(|_| self.reader.read_exact(&mut self.buf))
                .map_err(|source| {
                    Error::from(itap_telemetry::Error::Io {
                        path: self.file.path.clone(),
                        source,
                    })
                })?;
            let mut at = 0usize;
            for &(rec, code) in &records[i..j] {
                let m = rec.rows as usize;
                let b = &self.buf[at..at + m * row_bytes];
                at += m * row_bytes;
                let mut col = 0usize;
                let mut take = |width: usize| {
                    let s = &b[col..col + m * width];
                    col += m * width;
                    s
                };
                ts.extend(take(8).chunks_exact(8).map(|c| i64::from_le_bytes(le(c))));
                for s in &mut signals {
                    s.extend(
                        take(8)
                            .chunks_exact(8)
                            .map(|c| f64::from_bits(u64::from_le_bytes(le(c)))),
                    );
                }
                if let Some(st) = &mut states {
                    st.extend(take(1).iter().map(|&v| byte_state(v)));
                }
                if let Some(e) = &mut errors {
                    e.extend(take(4).chunks_exact(4).map(|c| i32::from_le_bytes(le(c))));
                }
                if let Some(t) = &mut tags {
                    t.extend(take(4).chunks_exact(4).map(|c| u32::from_le_bytes(le(c))));
                }
                dev.extend(std::iter::repeat_n(code, m));
            }
            i = j;
        }
        let batch = Batch::from_columns(BatchColumns {
            schema,
            timestamps: ts,
            device_names: names.into_iter().cloned().collect(),
            device_codes: dev,
            signals,
            states,
            error_codes: errors,
            tag_names: self.tag_names.clone(),
            tag_codes: tags,
        })?;
        // Time order, then device id (the codes follow the ids); a device's
        // rows with one timestamp keep the input's order.
        let (t, c) = (batch.timestamps(), batch.device_codes());
        if (1..batch.len()).all(|r| (t[r - 1], c[r - 1]) <= (t[r], c[r])) {
            return Ok(batch);
        }
        let mut rows: Vec<usize> = (0..batch.len()).collect();
        rows.sort_by_key(|&r| (t[r], c[r]));
        Ok(batch.take(&rows))
    }
}

fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().expect("chunks_exact gives N bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::grouped::BatchGroups;
    use itap_telemetry::{ParamGuard, SimParams, simulate};

    /// A fleet set aside a chunk at a time reads back, for any group of
    /// devices, the rows a batch in memory gives that group.
    #[test]
    fn rows_set_aside_read_back_as_the_batch_gives_them() {
        let p = SimParams::default()
            .devices(7)
            .hours(2.0)
            .check()
            .expect("valid");
        let batch = simulate(&p);
        assert!(batch.tagged_rows() > 0 && batch.states().is_some());
        let dir = tempfile_dir("spill");
        let mut spill = Spill::create(&dir).expect("create");
        // Uneven chunks, the last one reversed in device order.
        let n = batch.len();
        for range in [0..1_000, 1_000..1_001, 1_001..4_000, 4_000..n] {
            let rows: Vec<usize> = if range.start == 4_000 {
                range.rev().collect()
            } else {
                range.collect()
            };
            spill.append(&batch.take(&rows)).expect("append");
        }
        assert_eq!(spill.rows(), n as u64);
        let path = spill.file.path.clone();
        let mut groups = spill.finish().expect("finish");
        let mut whole = BatchGroups::new(&batch);
        assert_eq!(groups.devices(), whole.devices());
        assert_eq!(groups.time_bounds(), batch.time_bounds());
        for group in [
            vec!["DEV-0003".to_owned()],
            vec!["DEV-0006".into(), "DEV-0000".into(), "DEV-0002".into()],
            batch.device_names().to_vec(),
        ] {
            let got = groups.load(&group).expect("load");
            let want = whole.load(&group).expect("load");
            assert_eq!(got.len(), want.len());
            assert_eq!(got.timestamps(), want.timestamps());
            let names = |b: &Batch| -> Vec<String> {
                (0..b.len())
                    .map(|r| b.device_names()[b.device_codes()[r] as usize].clone())
                    .collect()
            };
            assert_eq!(names(&got), names(&want));
            for k in 0..batch.schema().len() {
                let bits = |b: &Batch| b.signal(k).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want));
            }
            assert_eq!(got.states(), want.states());
            assert_eq!(got.error_codes(), want.error_codes());
            let tags = |b: &Batch| {
                (0..b.len())
                    .map(|r| b.tag_of(r).map(str::to_owned))
                    .collect::<Vec<_>>()
            };
            assert_eq!(tags(&got), tags(&want));
        }
        assert!(groups.load(&["DEV-9999".to_owned()]).is_err());
        assert!(path.exists());
        drop(groups);
        assert!(!path.exists(), "the spill file is removed when dropped");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A spill file left by a killed run is removed by the next spill in
    /// that folder; one still open is not.
    #[test]
    fn spill_files_of_killed_runs_are_removed() {
        let dir = tempfile_dir("stale");
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(format!("{SPILL_PREFIX}999999999.bin"));
        std::fs::write(&stale, b"left by a killed run").unwrap();
        let other = dir.join("scores.csv");
        std::fs::write(&other, b"kept").unwrap();
        let open = Spill::create(&dir).unwrap();
        assert!(!stale.exists(), "the stale spill file is removed");
        assert!(other.exists());
        // A second spill in the folder (another process's, in effect: its
        // name is made different here) leaves the open one alone.
        let held = open.file.path.clone();
        let moved = dir.join(format!("{SPILL_PREFIX}1.bin"));
        std::fs::rename(&held, &moved).unwrap();
        let second = Spill::create(&dir).unwrap();
        assert!(moved.exists(), "an open spill file is kept");
        drop(second);
        std::fs::rename(&moved, &held).unwrap();
        drop(open);
        assert!(!held.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("itap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
