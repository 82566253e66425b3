//! The columnar telemetry batch.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::schema::{Schema, State};

/// A columnar batch of telemetry rows.
///
/// Timestamps are UTC microseconds; device ids are dictionary codes into
/// [`Batch::device_names`]; each declared signal is one `f64` column with NaN for
/// a missing value; state, error code and the ground-truth tag are optional
/// columns. Tags are dictionary codes into [`Batch::tag_names`], whose entry 0 is
/// always the empty string, meaning "no fault".
///
/// Rows are never one heap object each: a batch of n rows and k signals is
/// `k + 3` or so flat vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    schema: Schema,
    ts: Vec<i64>,
    device_names: Vec<String>,
    device: Vec<u32>,
    signals: Vec<Vec<f64>>,
    state: Option<Vec<State>>,
    error_code: Option<Vec<i32>>,
    tag_names: Vec<String>,
    tag: Option<Vec<u32>>,
}

/// The columns of a [`Batch`], for building one whole (see [`Batch::from_columns`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchColumns {
    /// The signals.
    pub schema: Schema,
    /// UTC microseconds, one per row.
    pub timestamps: Vec<i64>,
    /// Distinct device ids.
    pub device_names: Vec<String>,
    /// One code per row into `device_names`.
    pub device_codes: Vec<u32>,
    /// One column per schema signal.
    pub signals: Vec<Vec<f64>>,
    /// Optional state column.
    pub states: Option<Vec<State>>,
    /// Optional error code column.
    pub error_codes: Option<Vec<i32>>,
    /// Tag dictionary; entry 0 must be `""`.
    pub tag_names: Vec<String>,
    /// Optional tag codes into `tag_names`.
    pub tag_codes: Option<Vec<u32>>,
}

impl Batch {
    /// A batch from whole columns.
    ///
    /// # Errors
    /// [`Error::Inconsistent`] when column lengths differ, the number of signal
    /// columns differs from the schema, a code is outside its dictionary, or the
    /// tag dictionary does not start with `""`.
    pub fn from_columns(c: BatchColumns) -> Result<Batch> {
        let n = c.timestamps.len();
        let bad = |what: String| Err(Error::Inconsistent(what));
        if c.signals.len() != c.schema.len() {
            return bad(format!(
                "{} signal columns for a schema of {}",
                c.signals.len(),
                c.schema.len()
            ));
        }
        let lens = [
            ("device_codes", Some(c.device_codes.len())),
            ("states", c.states.as_ref().map(Vec::len)),
            ("error_codes", c.error_codes.as_ref().map(Vec::len)),
            ("tag_codes", c.tag_codes.as_ref().map(Vec::len)),
        ];
        for (name, len) in lens {
            if let Some(len) = len.filter(|&l| l != n) {
                return bad(format!("{name} has {len} rows, timestamps {n}"));
            }
        }
        for (sig, col) in c.schema.signals().iter().zip(&c.signals) {
            if col.len() != n {
                return bad(format!(
                    "signal `{}` has {} rows, timestamps {n}",
                    sig.name,
                    col.len()
                ));
            }
        }
        if c.device_codes
            .iter()
            .any(|&d| d as usize >= c.device_names.len())
        {
            return bad("a device code is outside the device dictionary".into());
        }
        if c.tag_names.first().is_none_or(|t| !t.is_empty()) {
            return bad("the tag dictionary must start with \"\" (no fault)".into());
        }
        if let Some(t) = &c.tag_codes
            && t.iter().any(|&code| code as usize >= c.tag_names.len())
        {
            return bad("a tag code is outside the tag dictionary".into());
        }
        Ok(Batch {
            schema: c.schema,
            ts: c.timestamps,
            device_names: c.device_names,
            device: c.device_codes,
            signals: c.signals,
            state: c.states,
            error_code: c.error_codes,
            tag_names: c.tag_names,
            tag: c.tag_codes,
        })
    }

    /// The batch's columns, by value (the inverse of [`Batch::from_columns`]).
    pub fn into_columns(self) -> BatchColumns {
        BatchColumns {
            schema: self.schema,
            timestamps: self.ts,
            device_names: self.device_names,
            device_codes: self.device,
            signals: self.signals,
            states: self.state,
            error_codes: self.error_code,
            tag_names: self.tag_names,
            tag_codes: self.tag,
        }
    }

    /// The signals this batch carries.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether the batch has no row.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Timestamps, UTC microseconds, one per row.
    pub fn timestamps(&self) -> &[i64] {
        &self.ts
    }

    /// Device dictionary codes, one per row, indexing [`Batch::device_names`].
    pub fn device_codes(&self) -> &[u32] {
        &self.device
    }

    /// The distinct device ids, in order of first appearance.
    pub fn device_names(&self) -> &[String] {
        &self.device_names
    }

    /// The device id of a row.
    ///
    /// # Panics
    /// When `row` is out of bounds.
    pub fn device_of(&self, row: usize) -> &str {
        &self.device_names[self.device[row] as usize]
    }

    /// The values of signal `i` (schema order), NaN for missing.
    ///
    /// # Panics
    /// When `i` is not below `schema().len()`.
    pub fn signal(&self, i: usize) -> &[f64] {
        &self.signals[i]
    }

    /// The values of a signal by name.
    pub fn signal_by_name(&self, name: &str) -> Option<&[f64]> {
        self.schema
            .index_of(name)
            .map(|i| self.signals[i].as_slice())
    }

    /// The operating state column, if present.
    pub fn states(&self) -> Option<&[State]> {
        self.state.as_deref()
    }

    /// The error code column (0 = OK), if present.
    pub fn error_codes(&self) -> Option<&[i32]> {
        self.error_code.as_deref()
    }

    /// The ground-truth tag codes, if present, indexing [`Batch::tag_names`].
    pub fn tag_codes(&self) -> Option<&[u32]> {
        self.tag.as_deref()
    }

    /// The tag dictionary; entry 0 is `""` ("no fault").
    pub fn tag_names(&self) -> &[String] {
        &self.tag_names
    }

    /// The fault tag of a row, `None` when the row is normal or there is no tag column.
    pub fn tag_of(&self, row: usize) -> Option<&str> {
        let code = *self.tag.as_ref()?.get(row)?;
        (code != 0).then(|| self.tag_names[code as usize].as_str())
    }

    /// The number of rows with a fault tag.
    pub fn tagged_rows(&self) -> usize {
        self.tag
            .as_ref()
            .map_or(0, |t| t.iter().filter(|&&c| c != 0).count())
    }

    /// A new batch of the given rows, in the given order (rows may repeat).
    ///
    /// Dictionaries are kept whole, so codes stay comparable with `self`'s.
    ///
    /// # Panics
    /// When a row index is out of bounds.
    pub fn take(&self, rows: &[usize]) -> Batch {
        let pick_i64 = |v: &[i64]| rows.iter().map(|&r| v[r]).collect::<Vec<_>>();
        Batch {
            schema: self.schema.clone(),
            ts: pick_i64(&self.ts),
            device_names: self.device_names.clone(),
            device: rows.iter().map(|&r| self.device[r]).collect(),
            signals: self
                .signals
                .iter()
                .map(|col| rows.iter().map(|&r| col[r]).collect())
                .collect(),
            state: self
                .state
                .as_ref()
                .map(|c| rows.iter().map(|&r| c[r]).collect()),
            error_code: self
                .error_code
                .as_ref()
                .map(|c| rows.iter().map(|&r| c[r]).collect()),
            tag_names: self.tag_names.clone(),
            tag: self
                .tag
                .as_ref()
                .map(|c| rows.iter().map(|&r| c[r]).collect()),
        }
    }

    /// Row indices ordered by (timestamp, device id), stable for equal keys.
    pub fn order_by_time(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| {
            self.ts[a]
                .cmp(&self.ts[b])
                .then_with(|| self.device_of(a).cmp(self.device_of(b)))
        });
        idx
    }

    /// Row indices ordered by (device id, timestamp), stable for equal keys: the
    /// order per-device work wants.
    pub fn order_by_device(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| {
            self.device_of(a)
                .cmp(self.device_of(b))
                .then_with(|| self.ts[a].cmp(&self.ts[b]))
        });
        idx
    }

    /// The smallest and largest timestamp, `None` for an empty batch.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        let min = *self.ts.iter().min()?;
        let max = *self.ts.iter().max()?;
        Some((min, max))
    }
}

/// Builds a [`Batch`] row by row (or column by column) with dictionary coding.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    batch: Batch,
    device_index: HashMap<String, u32>,
    tag_index: HashMap<String, u32>,
}

impl BatchBuilder {
    /// An empty builder for `schema`, with or without the optional columns.
    pub fn new(schema: Schema, with_state: bool, with_error_code: bool, with_tag: bool) -> Self {
        let k = schema.len();
        BatchBuilder {
            batch: Batch {
                schema,
                ts: Vec::new(),
                device_names: Vec::new(),
                device: Vec::new(),
                signals: vec![Vec::new(); k],
                state: with_state.then(Vec::new),
                error_code: with_error_code.then(Vec::new),
                tag_names: vec![String::new()],
                tag: with_tag.then(Vec::new),
            },
            device_index: HashMap::new(),
            tag_index: HashMap::new(),
        }
    }

    /// Reserves room for `rows` more rows.
    pub fn reserve(&mut self, rows: usize) {
        let b = &mut self.batch;
        b.ts.reserve(rows);
        b.device.reserve(rows);
        for c in &mut b.signals {
            c.reserve(rows);
        }
        if let Some(c) = &mut b.state {
            c.reserve(rows);
        }
        if let Some(c) = &mut b.error_code {
            c.reserve(rows);
        }
        if let Some(c) = &mut b.tag {
            c.reserve(rows);
        }
    }

    /// The dictionary code of a device id, adding it if new.
    pub fn device_code(&mut self, device: &str) -> u32 {
        if let Some(&c) = self.device_index.get(device) {
            return c;
        }
        let c = self.batch.device_names.len() as u32;
        self.batch.device_names.push(device.to_owned());
        self.device_index.insert(device.to_owned(), c);
        c
    }

    /// The dictionary code of a tag; blank or whitespace-only tags are 0 ("no fault").
    pub fn tag_code(&mut self, tag: &str) -> u32 {
        let t = tag.trim();
        if t.is_empty() {
            return 0;
        }
        if let Some(&c) = self.tag_index.get(t) {
            return c;
        }
        let c = self.batch.tag_names.len() as u32;
        self.batch.tag_names.push(t.to_owned());
        self.tag_index.insert(t.to_owned(), c);
        c
    }

    /// Appends one row. `values` holds one value per signal, in schema order.
    /// Optional columns the builder was not made with ignore their argument.
    ///
    /// # Errors
    /// [`Error::Inconsistent`] when `values` has the wrong length.
    pub fn push(
        &mut self,
        ts: i64,
        device_code: u32,
        values: &[f64],
        state: State,
        error_code: i32,
        tag_code: u32,
    ) -> Result<()> {
        let b = &mut self.batch;
        if values.len() != b.signals.len() {
            return Err(Error::Inconsistent(format!(
                "a row has {} signal values, the schema {}",
                values.len(),
                b.signals.len()
            )));
        }
        b.ts.push(ts);
        b.device.push(device_code);
        for (col, &v) in b.signals.iter_mut().zip(values) {
            col.push(v);
        }
        if let Some(c) = &mut b.state {
            c.push(state);
        }
        if let Some(c) = &mut b.error_code {
            c.push(error_code);
        }
        if let Some(c) = &mut b.tag {
            c.push(tag_code);
        }
        Ok(())
    }

    /// The number of rows pushed so far.
    pub fn len(&self) -> usize {
        self.batch.ts.len()
    }

    /// Whether no row was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.batch.ts.is_empty()
    }

    /// The finished batch.
    pub fn finish(self) -> Batch {
        self.batch
    }

    /// Takes the rows pushed so far as a batch and leaves the builder empty, with
    /// its dictionaries kept so that codes stay stable across chunks.
    pub fn take_chunk(&mut self) -> Batch {
        let b = &mut self.batch;
        Batch {
            schema: b.schema.clone(),
            ts: std::mem::take(&mut b.ts),
            device_names: b.device_names.clone(),
            device: std::mem::take(&mut b.device),
            signals: b.signals.iter_mut().map(std::mem::take).collect(),
            state: b.state.as_mut().map(std::mem::take),
            error_code: b.error_code.as_mut().map(std::mem::take),
            tag_names: b.tag_names.clone(),
            tag: b.tag.as_mut().map(std::mem::take),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Signal;

    fn small() -> Batch {
        let schema = Schema::new(vec![Signal::new("a"), Signal::new("b")]).unwrap();
        let mut bb = BatchBuilder::new(schema, true, true, true);
        for (t, d, tag) in [
            (20, "y", ""),
            (10, "x", " "),
            (10, "y", "f1"),
            (20, "x", "f1"),
        ] {
            let dc = bb.device_code(d);
            let tc = bb.tag_code(tag);
            bb.push(t, dc, &[t as f64, f64::NAN], State::Run, 0, tc)
                .unwrap();
        }
        bb.finish()
    }

    #[test]
    fn dictionaries_and_tags() {
        let b = small();
        assert_eq!(b.len(), 4);
        assert_eq!(b.device_names(), ["y", "x"]);
        assert_eq!(b.device_of(1), "x");
        assert_eq!(b.tag_names(), ["", "f1"]);
        assert_eq!(b.tag_of(0), None);
        assert_eq!(b.tag_of(1), None, "a single space means no fault");
        assert_eq!(b.tag_of(2), Some("f1"));
        assert_eq!(b.tagged_rows(), 2);
        assert_eq!(b.time_bounds(), Some((10, 20)));
    }

    #[test]
    fn orders_and_take() {
        let b = small();
        assert_eq!(b.order_by_time(), [1, 2, 3, 0]);
        assert_eq!(b.order_by_device(), [1, 3, 2, 0]);
        let t = b.take(&b.order_by_time());
        assert_eq!(t.timestamps(), [10, 10, 20, 20]);
        assert_eq!(t.signal(0), [10.0, 10.0, 20.0, 20.0]);
        assert!(t.signal_by_name("b").unwrap().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn push_refuses_wrong_width() {
        let mut bb = BatchBuilder::new(Schema::default(), false, false, false);
        assert!(bb.push(0, 0, &[1.0], State::Run, 0, 0).is_err());
        assert!(bb.is_empty());
    }
}
