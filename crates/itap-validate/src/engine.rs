//! The checks over batches, in one pass, with per-device state carried from chunk
//! to chunk so that a file read in chunks gives exactly the findings of the file
//! read whole.

use std::collections::{BTreeMap, VecDeque};

use rayon::prelude::*;

use itap_telemetry::{Batch, MICROS_PER_SEC, Schema, State, format_timestamp};

use crate::checks::{Check, Severity};
use crate::findings::{At, Findings, NO_COLUMN};
use crate::index::{Insert, TimeIndex};
use crate::params::{CheckedValidation, Resolved};
use crate::report::{ColumnStats, DeviceSummary, Finding, TimeBounds};

/// Steps looked at to find a device's sampling interval in `auto` mode.
const INTERVAL_SAMPLE: usize = 32;

/// Devices whose rows are checked together in a batch of more than
/// [`TILED_ABOVE`] devices (see [`Engine::check_batch`]).
const TILE_DEVICES: usize = 16;

/// Devices in a batch above which its rows are checked a tile at a time: fewer
/// devices' checking state stays in the processor's cache as it is.
const TILED_ABOVE: usize = 256;

/// Rows ordered by tile at a time.
const TILE_WINDOW: usize = 1 << 18;

/// Tiles of one part of a window: the parts are checked in parallel.
const PART_TILES: usize = 8;

/// Where each column of the checked data sits in the findings' column table.
#[derive(Debug, Clone)]
pub(crate) struct ColumnMap {
    /// Names findings may refer to.
    pub(crate) names: Vec<String>,
    pub(crate) timestamp: u32,
    pub(crate) device: Option<u32>,
    /// One entry per schema signal.
    pub(crate) signals: Vec<u32>,
}

impl ColumnMap {
    /// The map of an in-memory batch: `timestamp, device_id, <signals…>`.
    pub(crate) fn for_batch(schema: &Schema) -> Self {
        let mut names = vec!["timestamp".to_owned(), "device_id".to_owned()];
        names.extend(schema.names().map(str::to_owned));
        ColumnMap {
            timestamp: 0,
            device: Some(1),
            signals: (2..names.len() as u32).collect(),
            names,
        }
    }
}

/// How rows of a batch are located in the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRefs<'a> {
    /// 1-based line of each row, for file input.
    pub(crate) lines: Option<&'a [u64]>,
    /// 0-based ordinal of each row among the input's data rows; `None` = `base + r`.
    pub(crate) ordinals: Option<&'a [u64]>,
    pub(crate) base: u64,
}

/// Per-row results of one batch.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Rows with an error-severity row finding.
    pub(crate) bad: Vec<bool>,
    /// Reasons of bad rows, `(row, reason)`, when wanted.
    pub(crate) reasons: Option<Vec<(usize, String)>>,
}

impl Outcome {
    pub(crate) fn new(want_reasons: bool) -> Self {
        Outcome {
            bad: Vec::new(),
            reasons: want_reasons.then(Vec::new),
        }
    }

    fn apply(&mut self, r: usize, hit: crate::findings::Hit) {
        if hit.bad_row {
            self.bad[r] = true;
        }
        if let (Some(reason), Some(list)) = (hit.reason, self.reasons.as_mut()) {
            list.push((r, reason));
        }
    }
}

#[derive(Debug, Clone)]
struct SignalInfo {
    min: Option<f64>,
    max: Option<f64>,
    non_negative: bool,
}

/// Statistics of one signal column.
#[derive(Debug, Clone, Default)]
struct Stat {
    count: u64,
    missing: u64,
    non_finite: u64,
    min: f64,
    max: f64,
    sum: f64,
    finite: u64,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    delta: i64,
    line: Option<u64>,
    row: u64,
    ts: i64,
}

/// One device's runs of one signal: missing values, and one repeated value.
#[derive(Debug, Clone, Copy)]
struct SignalRuns {
    missing: u64,
    longest_missing: u64,
    stuck_value: f64,
    stuck_len: u64,
}

impl Default for SignalRuns {
    fn default() -> Self {
        SignalRuns {
            missing: 0,
            longest_missing: 0,
            stuck_value: f64::NAN,
            stuck_len: 0,
        }
    }
}

/// What the checks remember of one device between its rows.
#[derive(Debug, Clone)]
struct Dev {
    empty_name: bool,
    rows: u64,
    first: i64,
    last: i64,
    prev: Option<i64>,
    index: TimeIndex,
    ring: VecDeque<(i64, u64)>,
    interval: Option<i64>,
    pending: Vec<Step>,
    gaps: u64,
    longest_step: Option<i64>,
    /// One per schema signal.
    signals: Vec<SignalRuns>,
}

impl Dev {
    fn new(name: &str, k: usize, interval: Option<i64>) -> Self {
        Dev {
            empty_name: name.trim().is_empty(),
            rows: 0,
            first: i64::MAX,
            last: i64::MIN,
            prev: None,
            index: TimeIndex::default(),
            ring: VecDeque::new(),
            interval,
            pending: Vec::new(),
            gaps: 0,
            longest_step: None,
            signals: vec![SignalRuns::default(); k],
        }
    }

    /// Counts a row at `t` into the device's rows and time bounds.
    fn count(&mut self, t: i64) {
        self.rows += 1;
        self.first = self.first.min(t);
        self.last = self.last.max(t);
    }
}

/// The thresholds the checks compare against, from the checked parameters.
#[derive(Debug)]
struct Limits {
    res: Resolved,
    max_missing_run: u64,
    stuck_samples: u64,
    gap_factor: f64,
    duplicate_window: usize,
    missing_rate_warning: f64,
    missing_rate_error: f64,
    /// The reference time for `time.future`.
    now_us: i64,
    /// The latest timestamp that is not in the future.
    future_limit: i64,
}

/// The bound on the duplicate-key index, shared by all devices.
#[derive(Debug)]
struct IndexBudget {
    /// Runs the index may still add.
    left: usize,
    /// Whether the bound was reached (reported once).
    reached: bool,
}

/// What the engine learned, for the report.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) rows: u64,
    pub(crate) rows_with_errors: u64,
    pub(crate) devices: u64,
    pub(crate) time: Option<TimeBounds>,
    pub(crate) columns: Vec<ColumnStats>,
    pub(crate) per_device: Vec<DeviceSummary>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) check_counts: Vec<u64>,
}

/// The columns of the batch being checked.
struct BatchView<'b> {
    ts: &'b [i64],
    codes: &'b [u32],
    states: Option<&'b [State]>,
    errs: Option<&'b [i32]>,
    /// One per schema signal.
    signals: Vec<&'b [f64]>,
}

/// One row under check: where it is, and where its findings go.
struct RowCheck<'a> {
    findings: &'a mut Findings,
    out: &'a mut Outcome,
    cols: &'a ColumnMap,
    r: usize,
    at: At<'a>,
    want_reasons: bool,
}

impl RowCheck<'_> {
    /// Records one occurrence at this row. `make` gives (value, detail), see
    /// [`Findings::hit`].
    fn hit(&mut self, check: Check, col: Option<u32>, make: impl FnOnce() -> (String, String)) {
        let hit = self
            .findings
            .hit(check, col, self.at, self.want_reasons, make);
        self.out.apply(self.r, hit);
    }

    /// This row continues a run already reported (missing or stuck): not counted
    /// again, but an error-severity run still makes the row bad.
    fn continued(&mut self, check: Check, detail: impl FnOnce() -> String) {
        let bad_row = self.findings.severity(check) == Some(Severity::Error);
        let hit = crate::findings::Hit {
            bad_row,
            reason: (bad_row && self.want_reasons).then(|| format!("{}: {}", check.id(), detail())),
        };
        self.out.apply(self.r, hit);
    }
}

impl Checker<'_> {
    /// Runs the row checks on row `r` of `b`, family by family, in a fixed
    /// order: the order of a row's quarantine reasons. Its flag and reasons go
    /// to `out` at `slot`.
    fn check_row(
        &mut self,
        rules: &Rules<'_>,
        b: &BatchView<'_>,
        r: usize,
        slot: usize,
        refs: RowRefs<'_>,
        out: &mut Outcome,
    ) {
        let t = b.ts[r];
        let d = b.codes[r] as usize;
        let want_reasons = out.reasons.is_some();
        let Rules {
            lim,
            cols,
            sig,
            names,
        } = rules;
        let dev = d
            .checked_sub(self.first)
            .and_then(|i| self.devices.get_mut(i));
        let (Some(dev), Some(dev_name)) = (dev, names.get(d)) else {
            return; // a batch's own dictionary always covers its codes
        };
        let mut row = RowCheck {
            findings: self.findings,
            out,
            cols,
            r: slot,
            at: At {
                line: refs.lines.and_then(|l| l.get(r).copied()),
                row: Some(
                    refs.ordinals
                        .and_then(|o| o.get(r).copied())
                        .unwrap_or(refs.base + r as u64),
                ),
                device: Some(dev_name.as_str()),
            },
            want_reasons,
        };
        let counts = &mut self.counts;
        counts.rows += 1;
        counts.tmin = counts.tmin.min(t);
        counts.tmax = counts.tmax.max(t);

        check_device_id(&mut row, dev);
        // A row from the future is not part of the device's time axis: it would
        // make a gap before it and a clock jump after it.
        if !check_future(&mut row, lim, t) {
            check_order(&mut row, lim, dev, dev_name, t);
            dev.prev = Some(t);
        }
        dev.count(t);

        let sig_buf = &mut *self.sig_buf;
        for (v, col) in sig_buf.iter_mut().zip(&b.signals) {
            *v = col[r];
        }
        let h = row_hash(sig_buf, b.states.map(|s| s[r]), b.errs.map_or(0, |e| e[r]));
        check_duplicate(&mut row, lim, self.budget, dev, t, h);

        let running = b.states.is_none_or(|s| s[r] == State::Run);
        check_signals(
            &mut row,
            lim,
            sig,
            self.stats.as_deref_mut(),
            dev,
            sig_buf,
            running,
        );
        if out.bad[slot] {
            counts.rows_with_errors += 1;
        }
    }
}

/// The streaming checker.
#[derive(Debug)]
pub(crate) struct Engine {
    lim: Limits,
    cols: ColumnMap,
    signal_names: Vec<String>,
    sig: Vec<SignalInfo>,
    pub(crate) findings: Findings,
    devices: Vec<Dev>,
    device_names: Vec<String>,
    budget: IndexBudget,
    stats: Vec<Stat>,
    counts: Counts,
    /// The signal values of the row being checked.
    sig_buf: Vec<f64>,
    /// The order rows are checked in, a window of rows at a time (reused).
    order: Vec<u32>,
}

/// Rows checked, rows with an error finding, and their time bounds.
#[derive(Debug, Clone, Copy)]
struct Counts {
    rows: u64,
    rows_with_errors: u64,
    tmin: i64,
    tmax: i64,
}

impl Counts {
    const NONE: Counts = Counts {
        rows: 0,
        rows_with_errors: 0,
        tmin: i64::MAX,
        tmax: i64::MIN,
    };

    fn add(&mut self, o: Counts) {
        self.rows += o.rows;
        self.rows_with_errors += o.rows_with_errors;
        self.tmin = self.tmin.min(o.tmin);
        self.tmax = self.tmax.max(o.tmax);
    }
}

/// What the row checks read and never change.
struct Rules<'a> {
    lim: &'a Limits,
    cols: &'a ColumnMap,
    sig: &'a [SignalInfo],
    /// Every device's name, by code.
    names: &'a [String],
}

/// What the row checks change: the state of the devices from code `first` on,
/// the findings, the duplicate-key index's budget, the counts and, checking in
/// input order, the signal statistics.
struct Checker<'a> {
    devices: &'a mut [Dev],
    first: usize,
    /// The signal statistics, counted row by row (`None`: counted apart).
    stats: Option<&'a mut [Stat]>,
    findings: &'a mut Findings,
    budget: &'a mut IndexBudget,
    counts: Counts,
    /// The signal values of the row being checked.
    sig_buf: &'a mut [f64],
}

/// One part of a window checked on its own (see [`Engine::check_batch`]).
struct PartResult {
    /// Where its rows begin in the window's `order` (as many as `out` has
    /// flags).
    from: usize,
    findings: Findings,
    runs_added: usize,
    counts: Counts,
    /// Flags and reasons by position in the part's rows.
    out: Outcome,
}

impl Engine {
    pub(crate) fn new(
        params: &CheckedValidation,
        schema: &Schema,
        cols: ColumnMap,
        now_us: i64,
    ) -> Self {
        let p = params.params();
        let sig = schema
            .signals()
            .iter()
            .map(|s| SignalInfo {
                min: s.min,
                max: s.max,
                non_negative: p.non_negative.iter().any(|n| n == &s.name),
            })
            .collect::<Vec<_>>();
        let k = sig.len();
        let res = params.resolved.clone();
        Engine {
            lim: Limits {
                max_missing_run: p.max_missing_run,
                stuck_samples: p.stuck_samples,
                gap_factor: p.gap_factor,
                duplicate_window: p.duplicate_window,
                missing_rate_warning: p.missing_rate_warning,
                missing_rate_error: p.missing_rate_error,
                now_us,
                future_limit: now_us.saturating_add(res.future_tolerance_us),
                res,
            },
            findings: Findings::new(
                params.resolved.levels.clone(),
                p.max_examples,
                cols.names.clone(),
            ),
            cols,
            signal_names: schema.names().map(str::to_owned).collect(),
            sig,
            devices: Vec::new(),
            device_names: Vec::new(),
            budget: IndexBudget {
                left: p.max_tracked_runs,
                reached: false,
            },
            stats: vec![
                Stat {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    ..Stat::default()
                };
                k
            ],
            counts: Counts::NONE,
            sig_buf: vec![0.0; k],
            order: Vec::new(),
        }
    }

    /// With declared signals, checks the input's signal columns against them
    /// (see [`crate::columns::declared_signals`]); `None` checks nothing.
    pub(crate) fn check_declared_signals(&mut self, declared: Option<&[String]>) {
        if let Some(declared) = declared {
            crate::columns::declared_signals(&mut self.findings, declared, &self.cols);
        }
    }

    /// Counts rows that never reached a batch (they failed a fixed check).
    pub(crate) fn count_unreadable_rows(&mut self, n: u64) {
        self.counts.rows += n;
        self.counts.rows_with_errors += n;
    }

    /// Checks the rows of `batch`, in order, after every row checked before.
    ///
    /// Device codes must index `batch.device_names()`, and a later batch's device
    /// dictionary must extend an earlier one's (as [`BatchBuilder::take_chunk`]
    /// gives). `out` gets one flag per row.
    ///
    /// A batch of more than [`TILED_ABOVE`] devices is checked a tile of
    /// [`TILE_DEVICES`] devices at a time (within windows of [`TILE_WINDOW`]
    /// rows), each device's rows in input order: the checks of a row depend
    /// only on its device's earlier rows, and the checking state of a few
    /// devices stays in the processor's cache where thousands of devices
    /// visited in turn would not. Parts of [`PART_TILES`] tiles are checked in
    /// parallel, each with its own findings, counts and share of the index
    /// budget, and merged in part order. Nothing of the result depends on the
    /// order or the number of threads: the signal statistics are summed column
    /// by column in input order, counts add up, examples are the first by row
    /// number, flags and reasons are put back by row, and a window that could
    /// fill the duplicate-key index (whose first refused row depends on the
    /// order) is checked in input order.
    ///
    /// [`BatchBuilder::take_chunk`]: itap_telemetry::BatchBuilder::take_chunk
    pub(crate) fn check_batch(&mut self, batch: &Batch, refs: RowRefs<'_>, out: &mut Outcome) {
        let n = batch.len();
        out.bad.clear();
        out.bad.resize(n, false);
        if let Some(list) = out.reasons.as_mut() {
            list.clear();
        }
        let k = self.sig.len();
        for name in batch.device_names().iter().skip(self.device_names.len()) {
            self.devices
                .push(Dev::new(name, k, self.lim.res.interval_us));
            self.device_names.push(name.clone());
        }
        let view = BatchView {
            ts: batch.timestamps(),
            codes: batch.device_codes(),
            states: batch.states(),
            errs: batch.error_codes(),
            signals: (0..k).map(|i| batch.signal(i)).collect(),
        };
        let devices = batch.device_names().len();
        let tiles = devices.div_ceil(TILE_DEVICES);
        let want_reasons = out.reasons.is_some();
        let Engine {
            lim,
            cols,
            sig,
            findings,
            devices: states,
            device_names,
            budget,
            stats,
            counts,
            sig_buf,
            order,
            ..
        } = self;
        let rules = Rules {
            lim,
            cols,
            sig,
            names: device_names,
        };
        let mut starts = Vec::new();
        for start in (0..n).step_by(TILE_WINDOW) {
            let end = (start + TILE_WINDOW).min(n);
            // Each row adds at most two runs to the index.
            if devices <= TILED_ABOVE || budget.left < (end - start) * 2 {
                let mut ck = Checker {
                    devices: states,
                    first: 0,
                    stats: Some(stats),
                    findings,
                    budget,
                    counts: Counts::NONE,
                    sig_buf,
                };
                for r in start..end {
                    ck.check_row(&rules, &view, r, r, refs, out);
                }
                counts.add(ck.counts);
                continue;
            }
            // The window's statistics, in input order (which also brings its
            // values into the cache for the tiles).
            let window: Vec<&[f64]> = view.signals.iter().map(|c| &c[start..end]).collect();
            count_values(stats, &window);
            by_tile(&view.codes[start..end], tiles, order, &mut starts);
            let template = &*findings;
            let left = budget.left;
            let k = sig_buf.len();
            let parts: Vec<PartResult> = states
                .par_chunks_mut(PART_TILES * TILE_DEVICES)
                .enumerate()
                .map(|(p, part)| {
                    let from = starts[(p * PART_TILES).min(tiles)] as usize;
                    let to = starts[((p + 1) * PART_TILES).min(tiles)] as usize;
                    let mut found = template.empty_like();
                    let mut budget = IndexBudget {
                        left,
                        reached: false,
                    };
                    let mut buf = vec![0.0; k];
                    let mut part_out = Outcome::new(want_reasons);
                    part_out.bad.resize(to - from, false);
                    let mut ck = Checker {
                        devices: part,
                        first: p * PART_TILES * TILE_DEVICES,
                        stats: None,
                        findings: &mut found,
                        budget: &mut budget,
                        counts: Counts::NONE,
                        sig_buf: &mut buf,
                    };
                    for (i, &o) in order[from..to].iter().enumerate() {
                        ck.check_row(&rules, &view, start + o as usize, i, refs, &mut part_out);
                    }
                    let counts = ck.counts;
                    PartResult {
                        from,
                        findings: found,
                        runs_added: left - budget.left,
                        counts,
                        out: part_out,
                    }
                })
                .collect();
            for part in parts {
                findings.absorb(part.findings);
                budget.left -= part.runs_added;
                counts.add(part.counts);
                let rows = &order[part.from..part.from + part.out.bad.len()];
                for (&o, &bad) in rows.iter().zip(&part.out.bad) {
                    out.bad[start + o as usize] |= bad;
                }
                if let (Some(list), Some(reasons)) = (out.reasons.as_mut(), part.out.reasons) {
                    list.extend(
                        reasons
                            .into_iter()
                            .map(|(i, why)| (start + rows[i] as usize, why)),
                    );
                }
            }
        }
        if let Some(list) = out.reasons.as_mut() {
            // Stable: a row's reasons keep the order its checks gave them.
            list.sort_by_key(|&(r, _)| r);
        }
    }

    /// Finishes the checks that need the whole input and returns the summary.
    pub(crate) fn finish(mut self) -> Summary {
        for (dev, name) in self.devices.iter_mut().zip(&self.device_names) {
            if dev.interval.is_none() && !dev.pending.is_empty() {
                settle_interval(&mut self.findings, name, dev, self.lim.gap_factor);
            }
        }
        let parsed: u64 = self.devices.iter().map(|d| d.rows).sum();
        let Counts {
            rows,
            rows_with_errors,
            tmin,
            tmax,
        } = self.counts;
        let columns = self.column_stats(parsed);
        let per_device = self.device_summaries();
        let time = (parsed > 0).then(|| TimeBounds {
            first: format_timestamp(tmin),
            last: format_timestamp(tmax),
            first_us: tmin,
            last_us: tmax,
        });
        let check_counts = Check::ALL.iter().map(|&c| self.findings.total(c)).collect();
        let findings = build_findings(&self);
        Summary {
            rows,
            rows_with_errors,
            devices: per_device.len() as u64,
            time,
            columns,
            per_device,
            findings,
            check_counts,
        }
    }

    /// Each signal's statistics over the `parsed` rows, and its missing rate
    /// checked (`completeness.missing_rate`, `completeness.mostly_missing`).
    fn column_stats(&mut self, parsed: u64) -> Vec<ColumnStats> {
        let mut columns = Vec::with_capacity(self.stats.len());
        for (j, st) in self.stats.iter().enumerate() {
            let rate = if parsed == 0 {
                0.0
            } else {
                st.missing as f64 / parsed as f64
            };
            let col = self.cols.signals.get(j).copied();
            missing_rate(&mut self.findings, &self.lim, col, st.missing, parsed, rate);
            columns.push(ColumnStats {
                name: self.signal_names[j].clone(),
                count: st.count,
                missing: st.missing,
                missing_rate: rate,
                non_finite: st.non_finite,
                min: (st.finite > 0).then_some(st.min),
                max: (st.finite > 0).then_some(st.max),
                mean: (st.finite > 0).then(|| st.sum / st.finite as f64),
            });
        }
        columns
    }

    /// One summary per device with rows, in order of first appearance.
    fn device_summaries(&self) -> Vec<DeviceSummary> {
        self.devices
            .iter()
            .zip(&self.device_names)
            .filter(|(d, _)| d.rows > 0)
            .map(|(d, name)| DeviceSummary {
                id: name.clone(),
                rows: d.rows,
                first: format_timestamp(d.first),
                last: format_timestamp(d.last),
                interval_s: d.interval.map(seconds_f),
                gaps: d.gaps,
                longest_step_s: d.longest_step.map(seconds_f),
                longest_missing_run: self
                    .signal_names
                    .iter()
                    .zip(&d.signals)
                    .filter(|(_, s)| s.longest_missing > 0)
                    .map(|(s, runs)| (s.clone(), runs.longest_missing))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect()
    }
}

/// Counts one value into its signal's statistics.
fn count_value(st: &mut Stat, v: f64) {
    if v.is_nan() {
        st.missing += 1;
        return;
    }
    st.count += 1;
    if !v.is_finite() {
        st.non_finite += 1;
        return;
    }
    st.finite += 1;
    st.sum += v;
    st.min = st.min.min(v);
    st.max = st.max.max(v);
}

/// Counts a batch's signal values into each signal's statistics in input
/// order (the sums do not depend on the order rows are checked in), four
/// signals at a time so that their sums are independent chains of additions
/// kept in registers.
fn count_values(stats: &mut [Stat], signals: &[&[f64]]) {
    let mut quads = stats.chunks_exact_mut(4).zip(signals.chunks_exact(4));
    for (st, cols) in &mut quads {
        count_group::<4>(st, cols);
    }
    let done = signals.len() / 4 * 4;
    for (st, col) in stats[done..].iter_mut().zip(&signals[done..]) {
        count_group::<1>(std::slice::from_mut(st), std::slice::from_ref(col));
    }
}

/// [`count_values`] of `N` signals. Branch-free: a value that is not finite
/// adds 0.0 to its sum, which leaves every sum as it was (a sum starts at
/// +0.0 and so is never −0.0).
// The N signals are walked in lockstep by index: the row loop is over all of them.
#[allow(clippy::needless_range_loop)]
fn count_group<const N: usize>(stats: &mut [Stat], signals: &[&[f64]]) {
    let n = signals.first().map_or(0, |c| c.len());
    let cols: [&[f64]; N] = std::array::from_fn(|i| &signals[i][..n]);
    let mut missing = [0u64; N];
    let mut non_finite = [0u64; N];
    let mut sum: [f64; N] = std::array::from_fn(|i| stats[i].sum);
    let mut min: [f64; N] = std::array::from_fn(|i| stats[i].min);
    let mut max: [f64; N] = std::array::from_fn(|i| stats[i].max);
    for r in 0..n {
        for i in 0..N {
            let v = cols[i][r];
            let nan = v.is_nan();
            let finite = v.is_finite();
            missing[i] += u64::from(nan);
            non_finite[i] += u64::from(!finite && !nan);
            sum[i] += if finite { v } else { 0.0 };
            min[i] = if finite { min[i].min(v) } else { min[i] };
            max[i] = if finite { max[i].max(v) } else { max[i] };
        }
    }
    for (i, st) in stats.iter_mut().enumerate().take(N) {
        let present = n as u64 - missing[i];
        st.missing += missing[i];
        st.count += present;
        st.non_finite += non_finite[i];
        st.finite += present - non_finite[i];
        st.sum = sum[i];
        st.min = min[i];
        st.max = max[i];
    }
}

/// The rows of a window (`codes` are its rows' devices), as offsets in it,
/// ordered by tile of [`TILE_DEVICES`] devices and in input order within a
/// tile: a counting sort.
fn by_tile(codes: &[u32], tiles: usize, order: &mut Vec<u32>, starts: &mut Vec<u32>) {
    let tile = |c: u32| (c as usize / TILE_DEVICES).min(tiles - 1);
    let mut next = vec![0u32; tiles + 1];
    for &c in codes {
        next[tile(c) + 1] += 1;
    }
    for t in 1..=tiles {
        next[t] += next[t - 1];
    }
    starts.clone_from(&next);
    order.clear();
    order.resize(codes.len(), 0);
    for (i, &c) in codes.iter().enumerate() {
        let slot = &mut next[tile(c)];
        order[*slot as usize] = i as u32;
        *slot += 1;
    }
}

/// `range.empty_device`.
fn check_device_id(row: &mut RowCheck<'_>, dev: &Dev) {
    if dev.empty_name {
        row.hit(Check::EmptyDevice, row.cols.device, || {
            (String::new(), "the device id is empty".to_owned())
        });
    }
}

/// `time.future`: whether the row lies after the reference time plus the tolerance.
fn check_future(row: &mut RowCheck<'_>, lim: &Limits, t: i64) -> bool {
    let future = t > lim.future_limit;
    if future {
        row.hit(Check::Future, Some(row.cols.timestamp), || {
            (
                format_timestamp(t),
                format!(
                    "later than the reference time {} plus {} s",
                    format_timestamp(lim.now_us),
                    lim.res.future_tolerance_us / MICROS_PER_SEC
                ),
            )
        });
    }
    future
}

/// The time axis against the device's previous row: a step forward is measured for
/// gaps (`time.gap`, once the interval is known); a step back is
/// `time.clock_jump_back` or `time.out_of_order`.
fn check_order(row: &mut RowCheck<'_>, lim: &Limits, dev: &mut Dev, name: &str, t: i64) {
    match dev.prev {
        Some(p) if t > p => {
            let delta = t.saturating_sub(p);
            dev.longest_step = Some(dev.longest_step.map_or(delta, |l| l.max(delta)));
            let step = Step {
                delta,
                line: row.at.line,
                row: row.at.row.unwrap_or(0),
                ts: t,
            };
            match dev.interval {
                Some(iv) => gap(row.findings, name, dev, iv, lim.gap_factor, step),
                None => {
                    dev.pending.push(step);
                    if dev.pending.len() >= INTERVAL_SAMPLE {
                        settle_interval(row.findings, name, dev, lim.gap_factor);
                    }
                }
            }
        }
        Some(p) if t < p => {
            let back = p.saturating_sub(t);
            let check = if back >= lim.res.clock_jump_us {
                Check::ClockJumpBack
            } else {
                Check::OutOfOrder
            };
            row.hit(check, Some(row.cols.timestamp), || {
                (
                    format_timestamp(t),
                    format!(
                        "{} s before the device's previous row at {}",
                        seconds(back),
                        format_timestamp(p)
                    ),
                )
            });
        }
        _ => {}
    }
}

/// Duplicate keys (`time.duplicate_*`): exact membership from the device's run
/// index; values compared, through their hash `h`, with the rows remembered in the
/// ring.
fn check_duplicate(
    row: &mut RowCheck<'_>,
    lim: &Limits,
    budget: &mut IndexBudget,
    dev: &mut Dev,
    t: i64,
    h: u64,
) {
    let dup = match dev.index.insert(t, &mut budget.left) {
        Insert::Present => true,
        Insert::Added => false,
        Insert::Full => {
            if !budget.reached {
                budget.reached = true;
                row.findings
                    .hit(Check::DuplicateTrackingLimited, None, row.at, false, || {
                        (
                            String::new(),
                            "the duplicate-key index is full from this row on".to_owned(),
                        )
                    });
            }
            dev.ring.iter().any(|e| e.0 == t)
        }
    };
    if dup {
        let earlier = dev.ring.iter().rev().find(|e| e.0 == t).map(|e| e.1);
        let check = match earlier {
            Some(e) if e == h => Check::DuplicateEqual,
            Some(_) => Check::DuplicateConflict,
            None => Check::DuplicateUnverified,
        };
        row.hit(check, Some(row.cols.timestamp), || {
            let detail = match check {
                Check::DuplicateEqual => "repeats an earlier row of the device with equal values",
                Check::DuplicateConflict => {
                    "repeats an earlier row of the device with different values"
                }
                _ => "repeats a row of the device too far back to compare values",
            };
            (format_timestamp(t), detail.to_owned())
        });
    }
    if lim.duplicate_window > 0 {
        if dev.ring.len() == lim.duplicate_window {
            dev.ring.pop_front();
        }
        dev.ring.push_back((t, h));
    }
}

/// The row's signal values: completeness, ranges, stuck sensors; counted into
/// `stats` when given.
fn check_signals(
    row: &mut RowCheck<'_>,
    lim: &Limits,
    sig: &[SignalInfo],
    mut stats: Option<&mut [Stat]>,
    dev: &mut Dev,
    values: &[f64],
    running: bool,
) {
    for (j, &v) in values.iter().enumerate() {
        if let Some(st) = stats.as_deref_mut().and_then(|s| s.get_mut(j)) {
            count_value(st, v);
        }
        let col = row.cols.signals.get(j).copied();
        let runs = &mut dev.signals[j];
        if v.is_nan() {
            check_missing(row, lim.max_missing_run, runs, col);
            continue;
        }
        runs.missing = 0;
        if !check_range(row, &sig[j], col, v) {
            runs.stuck_len = 0;
            continue;
        }
        if running {
            check_stuck(row, lim.stuck_samples, runs, col, v);
        } else {
            runs.stuck_len = 0;
        }
    }
}

/// A missing value: `completeness.missing_run` once a run reaches `max_run`.
fn check_missing(row: &mut RowCheck<'_>, max_run: u64, runs: &mut SignalRuns, col: Option<u32>) {
    runs.stuck_len = 0;
    runs.missing += 1;
    let run = runs.missing;
    runs.longest_missing = runs.longest_missing.max(run);
    if run == max_run {
        row.hit(Check::MissingRun, col, || {
            (
                String::new(),
                format!("missing for {run} consecutive samples"),
            )
        });
    } else if run > max_run {
        row.continued(Check::MissingRun, || {
            format!("missing for {run} consecutive samples")
        });
    }
}

/// A present value: `range.non_finite`, else `range.negative` or
/// `range.out_of_range`. Whether the value is finite.
fn check_range(row: &mut RowCheck<'_>, info: &SignalInfo, col: Option<u32>, v: f64) -> bool {
    if !v.is_finite() {
        row.hit(Check::NonFinite, col, || {
            (v.to_string(), "an infinite value".to_owned())
        });
        return false;
    }
    if info.non_negative && v < 0.0 {
        row.hit(Check::Negative, col, || {
            (
                v.to_string(),
                "negative, but this signal cannot be".to_owned(),
            )
        });
    } else if info.min.is_some_and(|lo| v < lo) || info.max.is_some_and(|hi| v > hi) {
        row.hit(Check::OutOfRange, col, || {
            (
                v.to_string(),
                format!("outside the declared range {}", range_text(info)),
            )
        });
    }
    true
}

/// A finite value while running: `sensor.stuck` once one value repeats for
/// `stuck_samples` samples.
fn check_stuck(
    row: &mut RowCheck<'_>,
    stuck_samples: u64,
    runs: &mut SignalRuns,
    col: Option<u32>,
    v: f64,
) {
    if runs.stuck_len > 0 && v == runs.stuck_value {
        runs.stuck_len += 1;
    } else {
        runs.stuck_value = v;
        runs.stuck_len = 1;
    }
    let len = runs.stuck_len;
    if len == stuck_samples {
        row.hit(Check::Stuck, col, || {
            (
                v.to_string(),
                format!("the same value for {len} samples while running"),
            )
        });
    } else if len > stuck_samples {
        row.continued(Check::Stuck, || {
            format!("the same value {v} for {len} samples while running")
        });
    }
}

/// A signal's share of missing values: `completeness.mostly_missing` above
/// `missing_rate_error`, else `completeness.missing_rate` above
/// `missing_rate_warning`.
fn missing_rate(
    findings: &mut Findings,
    lim: &Limits,
    col: Option<u32>,
    missing: u64,
    parsed: u64,
    rate: f64,
) {
    let (check, threshold) = if rate > lim.missing_rate_error {
        (
            Check::MostlyMissing,
            ("missing_rate_error", lim.missing_rate_error),
        )
    } else if rate > lim.missing_rate_warning {
        (
            Check::MissingRate,
            ("missing_rate_warning", lim.missing_rate_warning),
        )
    } else {
        return;
    };
    findings.hit(check, col, At::FILE, false, || {
        (
            format!("{rate}"),
            format!(
                "{missing} of {parsed} values missing ({:.3}%), above {} = {}",
                rate * 100.0,
                threshold.0,
                threshold.1
            ),
        )
    });
}

fn gap(findings: &mut Findings, name: &str, dev: &mut Dev, interval: i64, factor: f64, s: Step) {
    if (s.delta as f64) > factor * interval as f64 {
        dev.gaps += 1;
        findings.hit(
            Check::Gap,
            None,
            At {
                line: s.line,
                row: Some(s.row),
                device: Some(name),
            },
            false,
            || {
                (
                    format!("{} s", seconds(s.delta)),
                    format!(
                        "no row for {} s before {} ({:.1} × the {} s interval)",
                        seconds(s.delta),
                        format_timestamp(s.ts),
                        s.delta as f64 / interval as f64,
                        seconds(interval)
                    ),
                )
            },
        );
    }
}

/// Fixes a device's interval (the median of its first steps) and judges the steps
/// that waited for it.
fn settle_interval(findings: &mut Findings, name: &str, dev: &mut Dev, factor: f64) {
    let mut deltas: Vec<i64> = dev.pending.iter().map(|s| s.delta).collect();
    deltas.sort_unstable();
    let Some(&median) = deltas.get(deltas.len() / 2) else {
        return;
    };
    dev.interval = Some(median);
    for s in std::mem::take(&mut dev.pending) {
        gap(findings, name, dev, median, factor, s);
    }
}

fn build_findings(e: &Engine) -> Vec<Finding> {
    e.findings
        .accs
        .iter()
        .filter(|(_, acc)| acc.count > 0)
        .filter_map(|(&(ci, col), acc)| {
            let check = *Check::ALL.get(ci)?;
            let severity = e.findings.severity(check)?;
            let column = (col != NO_COLUMN)
                .then(|| e.findings.column_name(col).map(str::to_owned))
                .flatten();
            Some(Finding {
                check: check.id().to_owned(),
                severity,
                scope: check.scope(),
                message: message(e, check, col),
                column,
                count: acc.count,
                examples: acc.examples.clone(),
            })
        })
        .collect()
}

fn message(e: &Engine, check: Check, col: u32) -> String {
    let sig = e.cols.signals.iter().position(|&c| c == col);
    match check {
        Check::OutOfRange => match sig.and_then(|j| e.sig.get(j)) {
            Some(info) => format!("values outside the declared range {}", range_text(info)),
            None => check.describe().to_owned(),
        },
        Check::MissingRun => format!(
            "runs of at least max_missing_run = {} consecutive missing samples (counted once per run)",
            e.lim.max_missing_run
        ),
        Check::Stuck => format!(
            "runs of at least stuck_samples = {} equal values while running (counted once per run)",
            e.lim.stuck_samples
        ),
        Check::Gap => format!(
            "steps longer than gap_factor = {} × the device's sampling interval",
            e.lim.gap_factor
        ),
        Check::ClockJumpBack => format!(
            "steps back of at least clock_jump = {} s",
            seconds(e.lim.res.clock_jump_us)
        ),
        Check::OutOfOrder => format!(
            "rows earlier than the device's previous row by less than clock_jump = {} s",
            seconds(e.lim.res.clock_jump_us)
        ),
        Check::MissingSignal => format!(
            "declared signal `{}` is not a signal column of the input: add the column, or \
             remove it from the declared signals",
            column(e, col)
        ),
        Check::UndeclaredColumn => format!(
            "signal column `{}` is not declared: declare it, or remove the column",
            column(e, col)
        ),
        Check::Future => format!(
            "timestamps after {} (the reference time) + future_tolerance = {} s",
            format_timestamp(e.lim.now_us),
            seconds(e.lim.res.future_tolerance_us)
        ),
        _ => check.describe().to_owned(),
    }
}

/// The name of column `col` in the findings' column table.
fn column(e: &Engine, col: u32) -> &str {
    e.findings.column_name(col).unwrap_or("?")
}

fn range_text(info: &SignalInfo) -> String {
    let f = |v: Option<f64>, inf: &str| v.map_or_else(|| inf.to_owned(), |v| v.to_string());
    format!("[{}, {}]", f(info.min, "-inf"), f(info.max, "inf"))
}

/// Microseconds as seconds, in the shortest exact form.
pub(crate) fn seconds(us: i64) -> String {
    if us % MICROS_PER_SEC == 0 {
        (us / MICROS_PER_SEC).to_string()
    } else {
        seconds_f(us).to_string()
    }
}

fn seconds_f(us: i64) -> f64 {
    us as f64 / MICROS_PER_SEC as f64
}

/// A 64-bit hash of a row's measured values (signals, state, error code; not the
/// ground-truth tag), to tell equal duplicates from conflicting ones. Missing
/// values hash alike.
fn row_hash(values: &[f64], state: Option<State>, error_code: i32) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let mut mix = |x: u64| {
        h = (h.rotate_left(5) ^ x).wrapping_mul(K);
    };
    for &v in values {
        mix(if v.is_nan() {
            0x7FF8_0000_0000_0000
        } else {
            v.to_bits()
        });
    }
    mix(state.map_or(0, |s| s as u64 + 1));
    mix(error_code as u32 as u64);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hash_tells_values_apart() {
        let a = row_hash(&[1.0, f64::NAN], Some(State::Run), 0);
        assert_eq!(a, row_hash(&[1.0, -f64::NAN], Some(State::Run), 0));
        assert_ne!(a, row_hash(&[1.0, 2.0], Some(State::Run), 0));
        assert_ne!(a, row_hash(&[1.0, f64::NAN], Some(State::Idle), 0));
        assert_ne!(a, row_hash(&[1.0, f64::NAN], Some(State::Run), 5));
        assert_ne!(
            row_hash(&[1.0, 2.0], None, 0),
            row_hash(&[2.0, 1.0], None, 0)
        );
    }

    /// Four signals at a time, branch-free (a tiled window), gives the
    /// statistics of counting each value in turn (checking in input order),
    /// bit for bit (five signals: a group and one left).
    #[test]
    fn signal_statistics_are_those_of_counting_value_by_value() {
        let pick = [
            0.5,
            -0.0,
            0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -3.25,
            1e300,
        ];
        let cols: Vec<Vec<f64>> = (0..5)
            .map(|j| {
                (0..97)
                    .map(|r| pick[(r * (j + 3) + r / 7) % pick.len()])
                    .collect()
            })
            .collect();
        let fresh = || Stat {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Stat::default()
        };
        let mut want = vec![fresh(); 5];
        for (st, col) in want.iter_mut().zip(&cols) {
            for &v in col {
                count_value(st, v);
            }
        }
        let mut got = vec![fresh(); 5];
        let slices: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        // In two batches, as a stream counts them.
        count_values(
            &mut got,
            &slices.iter().map(|c| &c[..40]).collect::<Vec<_>>(),
        );
        count_values(
            &mut got,
            &slices.iter().map(|c| &c[40..]).collect::<Vec<_>>(),
        );
        let key = |s: &Stat| {
            (
                [s.count, s.missing, s.non_finite, s.finite],
                [s.sum.to_bits(), s.min.to_bits(), s.max.to_bits()],
            )
        };
        assert_eq!(
            got.iter().map(key).collect::<Vec<_>>(),
            want.iter().map(key).collect::<Vec<_>>()
        );
        assert!(want.iter().all(|s| s.missing > 0 && s.non_finite > 0));
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(3_600_000_000), "3600");
        assert_eq!(seconds(1_500_000), "1.5");
    }
}
