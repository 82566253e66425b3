//! Validating a batch in memory.

use itap_telemetry::Batch;

use crate::checks::Check;
use crate::columns::required_columns;
use crate::engine::{ColumnMap, Engine, Outcome, RowRefs};
use crate::findings::At;
use crate::params::CheckedValidation;
use crate::report::{InputInfo, Report, Verdict, assemble};
use crate::validated::Validated;

/// Validates a batch held in memory.
///
/// Returns the report and, when the verdict lets rows be stored, the batch as
/// [`Validated`]: whole when valid (with or without warnings), only the rows
/// without an error finding when [`Verdict::Quarantined`]. A rejected batch comes
/// back unchanged in `Err`. Rows are checked in their order in the batch, as a file's
/// rows are; `line` is `None` in the examples and `row` is the batch row.
///
/// ```
/// use itap_validate::{validate_batch, ParamGuard, ValidationParams, Verdict};
/// use itap_telemetry::{simulate, SimParams};
/// let batch = simulate(&SimParams::default().devices(3).hours(1.0).check()?);
/// let params = ValidationParams::default().check()?;
/// let (report, validated) = validate_batch(batch, &params);
/// assert!(report.verdict.is_storable());
/// assert_eq!(validated.expect("storable").len(), 3 * 360);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_batch(
    batch: Batch,
    params: &CheckedValidation,
) -> (Report, Result<Validated<Batch>, Batch>) {
    let now_us = params.reference_time();
    let cols = ColumnMap::for_batch(batch.schema());
    let mut engine = start_engine(params, &batch, cols, now_us);
    if batch.is_empty() {
        engine
            .findings
            .hit(Check::NoRows, None, At::FILE, false, || {
                (String::new(), "the batch has no row".to_owned())
            });
    }
    let mut out = Outcome::new(false);
    let refs = RowRefs {
        lines: None,
        ordinals: None,
        base: 0,
    };
    engine.check_batch(&batch, refs, &mut out);
    let schema = batch.schema().clone();
    let report = assemble(
        engine.finish(),
        InputInfo {
            path: None,
            sha256: None,
            bytes: None,
        },
        params,
        now_us,
        None,
        None,
        Some(schema),
    );
    let result = match report.verdict {
        Verdict::Rejected => Err(batch),
        Verdict::Quarantined => {
            let keep: Vec<usize> = (0..batch.len()).filter(|&r| !out.bad[r]).collect();
            Ok(Validated::new(batch.take(&keep)))
        }
        Verdict::Valid | Verdict::ValidWithWarnings => Ok(Validated::new(batch)),
    };
    (report, result)
}

/// An engine for rows shaped like `batch` (its signals and optional
/// columns), with the column-level checks done.
fn start_engine(params: &CheckedValidation, batch: &Batch, cols: ColumnMap, now_us: i64) -> Engine {
    let mut names: Vec<&str> = vec!["timestamp", "device_id"];
    if batch.states().is_some() {
        names.push("state");
    }
    if batch.error_codes().is_some() {
        names.push("error_code");
    }
    if batch.tag_codes().is_some() {
        names.push("anomaly_tag");
    }
    names.extend(batch.schema().names());
    let mut engine = Engine::new(params, batch.schema(), cols, now_us);
    required_columns(
        &mut engine.findings,
        &params.params().required_columns,
        &names,
        |name| format!("required column `{name}` is not in the batch"),
    );
    engine.check_declared_signals(params.params().declared_signals.as_deref());
    engine
}

/// Validates an input that arrives a batch at a time — a fleet simulated a
/// block at a time, say — as [`validate_batch`] validates it whole: the
/// batches' rows are checked in order, each device's checking state carried
/// from one batch to the next, and [`finish`](BatchStream::finish) gives the
/// report of the whole. Only the checking state is held (a few hundred bytes
/// a device and the duplicate index), not the rows.
///
/// Every batch has the first one's signals and optional columns, and its
/// device dictionary begins with the previous batch's (the blocks of one
/// [`FleetSim`](itap_telemetry::FleetSim) share theirs).
///
/// ```
/// use itap_telemetry::{FleetSim, ParamGuard, SimParams, simulate};
/// use itap_validate::{BatchStream, InputInfo, ValidationParams, validate_batch};
/// let p = SimParams::default().devices(3).hours(1.0).check()?;
/// // A fixed "now", so that the two reports' reference times agree.
/// let params = ValidationParams::default()
///     .now(Some("2026-06-01T00:00:00Z"))
///     .check()?;
/// let mut sim = FleetSim::new(&p);
/// let first = sim.next_block(100).expect("rows");
/// let mut stream = BatchStream::new(&params, &first);
/// assert!(stream.check(&first)?.iter().all(|bad| !bad));
/// while let Some(block) = sim.next_block(100) {
///     stream.check(&block)?;
/// }
/// let report = stream.finish(InputInfo { path: None, sha256: None, bytes: None });
/// assert_eq!(report, validate_batch(simulate(&p), &params).0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BatchStream<'a> {
    params: &'a CheckedValidation,
    now_us: i64,
    engine: Engine,
    schema: itap_telemetry::Schema,
    columns: [bool; 3],
    devices: Vec<String>,
    rows: u64,
    out: Outcome,
}

impl std::fmt::Debug for BatchStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("devices", &self.devices.len())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn optional_columns(batch: &Batch) -> [bool; 3] {
    [
        batch.states().is_some(),
        batch.error_codes().is_some(),
        batch.tag_codes().is_some(),
    ]
}

impl<'a> BatchStream<'a> {
    /// A stream of batches shaped like `like` (its rows are not checked:
    /// pass it to [`check`](BatchStream::check) too when they are the first).
    pub fn new(params: &'a CheckedValidation, like: &Batch) -> Self {
        let now_us = params.reference_time();
        let cols = ColumnMap::for_batch(like.schema());
        BatchStream {
            params,
            now_us,
            engine: start_engine(params, like, cols, now_us),
            schema: like.schema().clone(),
            columns: optional_columns(like),
            devices: Vec::new(),
            rows: 0,
            out: Outcome::new(false),
        }
    }

    /// Checks the next batch's rows: for each, whether it has an
    /// error-severity finding (the rows a quarantine sets aside).
    ///
    /// # Errors
    /// [`Error::Telemetry`](crate::Error::Telemetry) ([`Inconsistent`](itap_telemetry::Error::Inconsistent))
    /// when the batch's signals or optional columns are not the first
    /// batch's, or its device dictionary does not begin with the previous
    /// batch's; nothing of it is checked then.
    pub fn check(&mut self, batch: &Batch) -> crate::Result<&[bool]> {
        let names = batch.device_names();
        let inconsistent = |what: &str| {
            Err(crate::Error::Telemetry(
                itap_telemetry::Error::Inconsistent(format!("a batch of the stream has {what}")),
            ))
        };
        if batch.schema() != &self.schema || optional_columns(batch) != self.columns {
            return inconsistent("other columns than the first");
        }
        if names.len() < self.devices.len() || names[..self.devices.len()] != self.devices[..] {
            return inconsistent("a device dictionary that does not extend the previous one");
        }
        self.devices.extend_from_slice(&names[self.devices.len()..]);
        let refs = RowRefs {
            lines: None,
            ordinals: None,
            base: self.rows,
        };
        self.engine.check_batch(batch, refs, &mut self.out);
        self.rows += batch.len() as u64;
        Ok(&self.out.bad)
    }

    /// Rows checked so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The report of every row checked, as [`validate_batch`] gives for them
    /// taken whole; `input` names where they came from.
    pub fn finish(mut self, input: InputInfo) -> Report {
        if self.rows == 0 {
            self.engine
                .findings
                .hit(Check::NoRows, None, At::FILE, false, || {
                    (String::new(), "the batch has no row".to_owned())
                });
        }
        assemble(
            self.engine.finish(),
            input,
            self.params,
            self.now_us,
            None,
            None,
            Some(self.schema),
        )
    }
}

#[cfg(test)]
mod stream_tests {
    use itap_telemetry::{Batch, ParamGuard, SimParams, simulate};

    use super::{BatchStream, validate_batch};
    use crate::{InputInfo, ValidationParams};

    fn none() -> InputInfo {
        InputInfo {
            path: None,
            sha256: None,
            bytes: None,
        }
    }

    /// A conflicting copy of a row, arriving batches later, is found as
    /// validating the whole finds it: each device's checking state is carried
    /// from batch to batch.
    #[test]
    fn a_stream_of_batches_finds_what_the_whole_batch_finds() {
        let batch = simulate(&SimParams::default().devices(2).hours(0.5).check().unwrap());
        let n = batch.len();
        let mut rows: Vec<usize> = (0..n).collect();
        rows.push(5);
        let mut c = batch.take(&rows).into_columns();
        c.signals[0][n] += 1.0;
        let whole = Batch::from_columns(c).unwrap();
        let params = ValidationParams::default()
            .now(Some("2026-06-01T00:00:00Z"))
            .check()
            .unwrap();
        let (want, _) = validate_batch(whole.clone(), &params);
        assert_eq!(want.rows_with_errors, 1);

        let mut stream = BatchStream::new(&params, &whole);
        let mut bad = Vec::new();
        for piece in [0..100, 100..n, n..n + 1] {
            let part = whole.take(&piece.collect::<Vec<_>>());
            bad.extend_from_slice(stream.check(&part).unwrap());
        }
        assert_eq!(stream.rows(), n as u64 + 1);
        assert_eq!(stream.finish(none()), want);
        let flagged: Vec<usize> = (0..bad.len()).filter(|&r| bad[r]).collect();
        assert_eq!(flagged, [n]);
    }

    #[test]
    fn a_batch_that_does_not_extend_the_stream_is_refused() {
        let batch = simulate(&SimParams::default().devices(2).hours(0.1).check().unwrap());
        let params = ValidationParams::default().check().unwrap();
        let mut stream = BatchStream::new(&params, &batch);
        stream.check(&batch).unwrap();
        // The same devices, their dictionary in the other order.
        let mut c = batch.clone().into_columns();
        c.device_names.reverse();
        for code in &mut c.device_codes {
            *code = 1 - *code;
        }
        let reordered = Batch::from_columns(c).unwrap();
        let err = stream.check(&reordered).unwrap_err().to_string();
        assert!(err.contains("device dictionary"), "{err}");
        // Nothing of it was checked.
        assert_eq!(stream.rows(), batch.len() as u64);
        assert_eq!(stream.finish(none()).rows, batch.len() as u64);
    }
}
