//! The checks over batches, in one pass, with per-device state carried from chunk
//! to chunk so that a file read in chunks gives exactly the findings of the file
//! read whole.

use std::collections::{BTreeMap, VecDeque};

use itap_telemetry::{Batch, MICROS_PER_SEC, Schema, State, format_timestamp};

use crate::checks::{Check, Severity};
use crate::findings::{At, Findings, NO_COLUMN};
use crate::index::{Insert, TimeIndex};
use crate::params::{CheckedValidation, Resolved};
use crate::report::{ColumnStats, DeviceSummary, Finding, TimeBounds};

/// Steps looked at to find a device's sampling interval in `auto` mode.
const INTERVAL_SAMPLE: usize = 32;

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
    miss_run: Vec<u64>,
    longest_miss: Vec<u64>,
    stuck_val: Vec<f64>,
    stuck_len: Vec<u64>,
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
            miss_run: vec![0; k],
            longest_miss: vec![0; k],
            stuck_val: vec![f64::NAN; k],
            stuck_len: vec![0; k],
        }
    }
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

/// The streaming checker.
#[derive(Debug)]
pub(crate) struct Engine {
    res: Resolved,
    max_missing_run: u64,
    stuck_samples: u64,
    gap_factor: f64,
    duplicate_window: usize,
    missing_rate_warning: f64,
    missing_rate_error: f64,
    now_us: i64,
    cols: ColumnMap,
    signal_names: Vec<String>,
    sig: Vec<SignalInfo>,
    pub(crate) findings: Findings,
    devices: Vec<Dev>,
    device_names: Vec<String>,
    budget: usize,
    tracking_limited: bool,
    stats: Vec<Stat>,
    rows: u64,
    rows_with_errors: u64,
    tmin: i64,
    tmax: i64,
    sig_buf: Vec<f64>,
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
        Engine {
            res: params.resolved.clone(),
            max_missing_run: p.max_missing_run,
            stuck_samples: p.stuck_samples,
            gap_factor: p.gap_factor,
            duplicate_window: p.duplicate_window,
            missing_rate_warning: p.missing_rate_warning,
            missing_rate_error: p.missing_rate_error,
            now_us,
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
            budget: p.max_tracked_runs,
            tracking_limited: false,
            stats: vec![
                Stat {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    ..Stat::default()
                };
                k
            ],
            rows: 0,
            rows_with_errors: 0,
            tmin: i64::MAX,
            tmax: i64::MIN,
            sig_buf: vec![0.0; k],
        }
    }

    /// Counts rows that never reached a batch (they failed a fixed check).
    pub(crate) fn count_unreadable_rows(&mut self, n: u64) {
        self.rows += n;
        self.rows_with_errors += n;
    }

    /// Checks the rows of `batch`, in order, after every row checked before.
    ///
    /// Device codes must index `batch.device_names()`, and a later batch's device
    /// dictionary must extend an earlier one's (as [`BatchBuilder::take_chunk`]
    /// gives). `out` gets one flag per row.
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
            self.devices.push(Dev::new(name, k, self.res.interval_us));
            self.device_names.push(name.clone());
        }
        let want_reasons = out.reasons.is_some();
        let ts = batch.timestamps();
        let codes = batch.device_codes();
        let states = batch.states();
        let errs = batch.error_codes();
        let signals: Vec<&[f64]> = (0..k).map(|i| batch.signal(i)).collect();
        let future_limit = self.now_us.saturating_add(self.res.future_tolerance_us);
        let Engine {
            findings,
            devices,
            device_names,
            stats,
            cols,
            sig,
            sig_buf,
            ..
        } = self;
        for r in 0..n {
            let t = ts[r];
            let d = codes[r] as usize;
            let (Some(dev), Some(dev_name)) = (devices.get_mut(d), device_names.get(d)) else {
                continue; // a batch's own dictionary always covers its codes
            };
            let at = At {
                line: refs.lines.and_then(|l| l.get(r).copied()),
                row: Some(
                    refs.ordinals
                        .and_then(|o| o.get(r).copied())
                        .unwrap_or(refs.base + r as u64),
                ),
                device: Some(dev_name.as_str()),
            };
            self.rows += 1;
            self.tmin = self.tmin.min(t);
            self.tmax = self.tmax.max(t);

            if dev.empty_name {
                let hit = findings.hit(Check::EmptyDevice, cols.device, at, want_reasons, || {
                    (String::new(), "the device id is empty".to_owned())
                });
                out.apply(r, hit);
            }
            let future = t > future_limit;
            if future {
                let hit = findings.hit(
                    Check::Future,
                    Some(cols.timestamp),
                    at,
                    want_reasons,
                    || {
                        (
                            format_timestamp(t),
                            format!(
                                "later than the reference time {} plus {} s",
                                format_timestamp(self.now_us),
                                self.res.future_tolerance_us / MICROS_PER_SEC
                            ),
                        )
                    },
                );
                out.apply(r, hit);
            }

            // Order, gaps and clock jumps, against the device's previous row. A row
            // from the future is not part of the device's time axis: it would make
            // a gap before it and a clock jump after it.
            match dev.prev {
                _ if future => {}
                Some(p) if t > p => {
                    let delta = t.saturating_sub(p);
                    dev.longest_step = Some(dev.longest_step.map_or(delta, |l| l.max(delta)));
                    let step = Step {
                        delta,
                        line: at.line,
                        row: at.row.unwrap_or(0),
                        ts: t,
                    };
                    match dev.interval {
                        Some(iv) => gap(findings, dev_name, dev, iv, self.gap_factor, step),
                        None => {
                            dev.pending.push(step);
                            if dev.pending.len() >= INTERVAL_SAMPLE {
                                settle_interval(findings, dev_name, dev, self.gap_factor);
                            }
                        }
                    }
                }
                Some(p) if t < p => {
                    let back = p.saturating_sub(t);
                    let check = if back >= self.res.clock_jump_us {
                        Check::ClockJumpBack
                    } else {
                        Check::OutOfOrder
                    };
                    let hit = findings.hit(check, Some(cols.timestamp), at, want_reasons, || {
                        (
                            format_timestamp(t),
                            format!(
                                "{} s before the device's previous row at {}",
                                seconds(back),
                                format_timestamp(p)
                            ),
                        )
                    });
                    out.apply(r, hit);
                }
                _ => {}
            }
            if !future {
                dev.prev = Some(t);
            }
            dev.rows += 1;
            dev.first = dev.first.min(t);
            dev.last = dev.last.max(t);

            // Duplicate keys: exact membership from the run index; values compared
            // against the rows remembered in the ring.
            for (slot, col) in sig_buf.iter_mut().zip(&signals) {
                *slot = col[r];
            }
            let h = row_hash(sig_buf, states.map(|s| s[r]), errs.map_or(0, |e| e[r]));
            let dup = match dev.index.insert(t, &mut self.budget) {
                Insert::Present => true,
                Insert::Added => false,
                Insert::Full => {
                    if !self.tracking_limited {
                        self.tracking_limited = true;
                        findings.hit(Check::DuplicateTrackingLimited, None, at, false, || {
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
                let hit = findings.hit(check, Some(cols.timestamp), at, want_reasons, || {
                    let detail = match check {
                        Check::DuplicateEqual => {
                            "repeats an earlier row of the device with equal values"
                        }
                        Check::DuplicateConflict => {
                            "repeats an earlier row of the device with different values"
                        }
                        _ => "repeats a row of the device too far back to compare values",
                    };
                    (format_timestamp(t), detail.to_owned())
                });
                out.apply(r, hit);
            }
            if self.duplicate_window > 0 {
                if dev.ring.len() == self.duplicate_window {
                    dev.ring.pop_front();
                }
                dev.ring.push_back((t, h));
            }

            // Signals: completeness, ranges, stuck sensors, statistics.
            let running = states.is_none_or(|s| s[r] == State::Run);
            for (j, &v) in sig_buf.iter().enumerate() {
                let col = cols.signals.get(j).copied();
                let st = &mut stats[j];
                if v.is_nan() {
                    st.missing += 1;
                    dev.stuck_len[j] = 0;
                    dev.miss_run[j] += 1;
                    let run = dev.miss_run[j];
                    dev.longest_miss[j] = dev.longest_miss[j].max(run);
                    if run >= self.max_missing_run {
                        let hit = if run == self.max_missing_run {
                            findings.hit(Check::MissingRun, col, at, want_reasons, || {
                                (
                                    String::new(),
                                    format!("missing for {run} consecutive samples"),
                                )
                            })
                        } else {
                            continued(findings, Check::MissingRun, want_reasons, || {
                                format!("missing for {run} consecutive samples")
                            })
                        };
                        out.apply(r, hit);
                    }
                    continue;
                }
                dev.miss_run[j] = 0;
                st.count += 1;
                let info = &sig[j];
                if !v.is_finite() {
                    st.non_finite += 1;
                    let hit = findings.hit(Check::NonFinite, col, at, want_reasons, || {
                        (v.to_string(), "an infinite value".to_owned())
                    });
                    out.apply(r, hit);
                    dev.stuck_len[j] = 0;
                    continue;
                }
                st.finite += 1;
                st.sum += v;
                st.min = st.min.min(v);
                st.max = st.max.max(v);
                if info.non_negative && v < 0.0 {
                    let hit = findings.hit(Check::Negative, col, at, want_reasons, || {
                        (
                            v.to_string(),
                            "negative, but this signal cannot be".to_owned(),
                        )
                    });
                    out.apply(r, hit);
                } else if info.min.is_some_and(|lo| v < lo) || info.max.is_some_and(|hi| v > hi) {
                    let hit = findings.hit(Check::OutOfRange, col, at, want_reasons, || {
                        (
                            v.to_string(),
                            format!("outside the declared range {}", range_text(info)),
                        )
                    });
                    out.apply(r, hit);
                }
                if running {
                    if dev.stuck_len[j] > 0 && v == dev.stuck_val[j] {
                        dev.stuck_len[j] += 1;
                    } else {
                        dev.stuck_val[j] = v;
                        dev.stuck_len[j] = 1;
                    }
                    let len = dev.stuck_len[j];
                    if len >= self.stuck_samples {
                        let hit = if len == self.stuck_samples {
                            findings.hit(Check::Stuck, col, at, want_reasons, || {
                                (
                                    v.to_string(),
                                    format!("the same value for {len} samples while running"),
                                )
                            })
                        } else {
                            continued(findings, Check::Stuck, want_reasons, || {
                                format!("the same value {v} for {len} samples while running")
                            })
                        };
                        out.apply(r, hit);
                    }
                } else {
                    dev.stuck_len[j] = 0;
                }
            }
            if out.bad[r] {
                self.rows_with_errors += 1;
            }
        }
    }

    /// Finishes the checks that need the whole input and returns the summary.
    pub(crate) fn finish(mut self) -> Summary {
        let gap_factor = self.gap_factor;
        for (dev, name) in self.devices.iter_mut().zip(&self.device_names) {
            if dev.interval.is_none() && !dev.pending.is_empty() {
                settle_interval(&mut self.findings, name, dev, gap_factor);
            }
        }
        let parsed: u64 = self.devices.iter().map(|d| d.rows).sum();
        let mut columns = Vec::with_capacity(self.stats.len());
        for (j, st) in self.stats.iter().enumerate() {
            let name = self.signal_names[j].clone();
            let rate = if parsed == 0 {
                0.0
            } else {
                st.missing as f64 / parsed as f64
            };
            let col = self.cols.signals.get(j).copied();
            let check = if rate > self.missing_rate_error {
                Some(Check::MostlyMissing)
            } else if rate > self.missing_rate_warning {
                Some(Check::MissingRate)
            } else {
                None
            };
            if let Some(check) = check {
                let threshold = if check == Check::MostlyMissing {
                    ("missing_rate_error", self.missing_rate_error)
                } else {
                    ("missing_rate_warning", self.missing_rate_warning)
                };
                self.findings.hit(check, col, At::FILE, false, || {
                    (
                        format!("{rate}"),
                        format!(
                            "{} of {parsed} values missing ({:.3}%), above {} = {}",
                            st.missing,
                            rate * 100.0,
                            threshold.0,
                            threshold.1
                        ),
                    )
                });
            }
            columns.push(ColumnStats {
                name,
                count: st.count,
                missing: st.missing,
                missing_rate: rate,
                non_finite: st.non_finite,
                min: (st.finite > 0).then_some(st.min),
                max: (st.finite > 0).then_some(st.max),
                mean: (st.finite > 0).then(|| st.sum / st.finite as f64),
            });
        }
        let per_device = self
            .devices
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
                    .zip(&d.longest_miss)
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, n)| (s.clone(), *n))
                    .collect::<BTreeMap<_, _>>(),
            })
            .collect::<Vec<_>>();
        let time = (parsed > 0).then(|| TimeBounds {
            first: format_timestamp(self.tmin),
            last: format_timestamp(self.tmax),
            first_us: self.tmin,
            last_us: self.tmax,
        });
        let check_counts = Check::ALL.iter().map(|&c| self.findings.total(c)).collect();
        let findings = build_findings(&self);
        Summary {
            rows: self.rows,
            rows_with_errors: self.rows_with_errors,
            devices: per_device.len() as u64,
            time,
            columns,
            per_device,
            findings,
            check_counts,
        }
    }
}

/// A row that continues a run already reported (missing or stuck): not counted
/// again, but an error-severity run still makes the row bad.
fn continued(
    findings: &Findings,
    check: Check,
    want_reason: bool,
    detail: impl FnOnce() -> String,
) -> crate::findings::Hit {
    let bad_row = findings.severity(check) == Some(Severity::Error);
    crate::findings::Hit {
        bad_row,
        reason: (bad_row && want_reason).then(|| format!("{}: {}", check.id(), detail())),
    }
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
            e.max_missing_run
        ),
        Check::Stuck => format!(
            "runs of at least stuck_samples = {} equal values while running (counted once per run)",
            e.stuck_samples
        ),
        Check::Gap => format!(
            "steps longer than gap_factor = {} × the device's sampling interval",
            e.gap_factor
        ),
        Check::ClockJumpBack => format!(
            "steps back of at least clock_jump = {} s",
            seconds(e.res.clock_jump_us)
        ),
        Check::OutOfOrder => format!(
            "rows earlier than the device's previous row by less than clock_jump = {} s",
            seconds(e.res.clock_jump_us)
        ),
        Check::Future => format!(
            "timestamps after {} (the reference time) + future_tolerance = {} s",
            format_timestamp(e.now_us),
            seconds(e.res.future_tolerance_us)
        ),
        _ => check.describe().to_owned(),
    }
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

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(3_600_000_000), "3600");
        assert_eq!(seconds(1_500_000), "1.5");
    }
}
