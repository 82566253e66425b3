//! Alerts: the streaming state machine that turns scored rows into alert events
//! (open on k of m rows or a duration or a burst, close after a quiet time, merge,
//! cooldown), and [`build_alerts`], which runs it over scored rows.

use std::collections::{BTreeMap, VecDeque};

use itap_telemetry::format_timestamp;
use serde::{Deserialize, Serialize};

use crate::alert_params::{AlertParams, AlertRule, CheckedAlerts, Severity};
use crate::evaluate::{Attribution, ScoredRows, Share, Threshold};
use crate::threshold::ScoreSketch;

/// The version of the alerts.json layout.
pub const ALERTS_FORMAT_VERSION: u32 = 1;

/// What alerts.json holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsFile {
    /// Layout version ([`ALERTS_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The threshold the alerts were built at.
    pub threshold: Threshold,
    /// The `[alerts]` settings used.
    pub params: AlertParams,
    /// The alerts, by start then device.
    pub alerts: Vec<Alert>,
}

/// One alert: a span of one device's rows above the threshold, with what is
/// behind it and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: `DEVICE@<start, RFC 3339>`.
    pub id: String,
    /// Device id.
    pub device: String,
    /// The first row above the threshold of the window that opened it, RFC 3339.
    pub start: String,
    /// Its last row above the threshold, RFC 3339.
    pub end: String,
    /// The row with the highest score, RFC 3339.
    pub peak_at: String,
    /// When the opening condition was met, RFC 3339.
    pub opened_at: String,
    /// `start`, UTC µs.
    pub start_us: i64,
    /// `end`, UTC µs.
    pub end_us: i64,
    /// `peak_at`, UTC µs.
    pub peak_us: i64,
    /// `opened_at`, UTC µs.
    pub opened_us: i64,
    /// Whether the alert was still open (not quiet long enough) when reported.
    pub open: bool,
    /// Rows above the threshold in it.
    pub rows: u64,
    /// The highest score.
    pub peak_score: f64,
    /// −log10 of the share of calibration scores at or above the peak
    /// ([`ScoreSketch::tail_log10`]).
    pub peak_tail_log10: f64,
    /// Mean score of its rows above the threshold.
    pub mean_score: f64,
    /// Info, warning or critical.
    pub severity: Severity,
    /// The rule that opened it: `k_of_m 3/6`, `duration 60s`, `burst 5 in 2 min`.
    pub rule: String,
    /// The dominant family (the largest share), when contributions were given.
    pub family: Option<String>,
    /// Each family's share of the summed contribution magnitudes over its rows,
    /// largest first (ties by name).
    pub families: Vec<Share>,
    /// The five features with the largest shares.
    pub top_features: Vec<Share>,
    /// The team it goes to.
    pub route: String,
    /// Labels added by rules.
    pub labels: Vec<String>,
    /// In evaluation: the fault kind of the labelled event it overlaps most.
    pub fault: Option<String>,
}

/// One scored row given to an [`AlertTracker`].
#[derive(Debug, Clone, Copy)]
pub struct AlertRow<'a> {
    /// Device id.
    pub device: &'a str,
    /// UTC µs.
    pub ts_us: i64,
    /// The score (NaN counts as not above the threshold).
    pub score: f64,
    /// Per-feature contributions in the tracker's feature order, if known; only
    /// read for rows above the threshold.
    pub contributions: Option<&'a [f64]>,
}

/// An alert being built.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Acc {
    start_us: i64,
    end_us: i64,
    opened_us: i64,
    peak_us: i64,
    rows: u64,
    peak_score: f64,
    sum_score: f64,
    contrib: Vec<f64>,
    rule: String,
    /// The last row above the close level.
    last_busy_us: i64,
}

impl Acc {
    fn add(&mut self, ts: i64, score: f64, contrib: Option<&[f64]>) {
        self.rows += 1;
        self.sum_score += score;
        self.end_us = self.end_us.max(ts);
        if score > self.peak_score {
            self.peak_score = score;
            self.peak_us = ts;
        }
        if let Some(c) = contrib {
            for (acc, v) in self.contrib.iter_mut().zip(c) {
                if v.is_finite() {
                    *acc += v.abs();
                }
            }
        }
    }
}

/// A row above the threshold that may still belong to an opening window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Candidate {
    ts: i64,
    score: f64,
    contrib: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DeviceState {
    /// The last `open_m` rows while no alert is open: (ts, above).
    ring: VecDeque<(i64, bool)>,
    ring_above: usize,
    /// Start of the current run of rows above the threshold.
    run_start: Option<i64>,
    /// Rows above the threshold that an opening window may still use.
    above: VecDeque<Candidate>,
    open: Option<Acc>,
    /// Closed, but a new alert may still merge into it.
    pending: Option<Acc>,
    cooldown_until: Option<i64>,
    last_ts: i64,
    suppressed: u64,
}

impl DeviceState {
    fn reset_detectors(&mut self) {
        self.ring.clear();
        self.ring_above = 0;
        self.run_start = None;
        self.above.clear();
    }
}

/// A burst rule, in microseconds.
#[derive(Debug, Clone)]
struct Burst {
    rows: usize,
    within_us: i64,
    name: String,
}

/// The streaming alert state machine: one row at a time, devices interleaved,
/// each device's rows in time order. State is per device (a `BTreeMap`, so every
/// output is deterministic); the same rows give the same alerts however the
/// devices are interleaved.
///
/// - **Open**: when `open_k` of the device's last `open_m` rows are above the
///   threshold, or (if set) its rows have stayed above it for
///   `min_duration_seconds`, or a `burst` rule's rows fall within its window, or
///   (if `single_row_at` is set) one row is that extreme by itself. The
///   alert starts at the first row above the threshold of that window; it holds
///   every row of the window above the threshold and every later one until it
///   closes. Rules are tried in that order; the first met names the alert.
/// - **Close**: once more than `quiet_seconds` have passed since its last row
///   above the close level (`close_fraction` × threshold, for a negative
///   threshold threshold − (1 − f)·|threshold|). Its end is its last row above the
///   threshold; it closes at that last busy row + `quiet_seconds`.
/// - **Merge**: an alert that would start at most `merge_gap_seconds` after the
///   device's previous alert ended reopens that alert instead (same id).
/// - **Cooldown**: until `cooldown_seconds` after a close, an opening that does
///   not merge is suppressed (counted in [`suppressed`](Self::suppressed)).
///
/// A closed alert is returned once no later alert can merge into it.
#[derive(Debug, Clone)]
pub struct AlertTracker {
    params: CheckedAlerts,
    threshold: f64,
    close_level: f64,
    quiet_us: i64,
    merge_us: i64,
    cooldown_us: i64,
    duration_us: i64,
    bursts: Vec<Burst>,
    max_burst_us: i64,
    sketch: ScoreSketch,
    features: Vec<String>,
    families: Vec<String>,
    devices: BTreeMap<String, DeviceState>,
    suppressed: u64,
}

fn us(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

impl AlertTracker {
    /// A tracker at `threshold` (rows scoring above it count), with the
    /// calibration `sketch` for severity, and the feature names and families of
    /// the contribution vectors rows may carry.
    pub fn new(
        params: &CheckedAlerts,
        threshold: f64,
        sketch: &ScoreSketch,
        features: &[String],
        families: &[String],
    ) -> Self {
        let p = params.params();
        let bursts: Vec<Burst> = p
            .rules
            .iter()
            .filter_map(|r| match r {
                AlertRule::Burst {
                    rows,
                    within_minutes,
                } => Some(Burst {
                    rows: *rows as usize,
                    within_us: us(within_minutes * 60.0),
                    name: format!("burst {rows} in {within_minutes} min"),
                }),
                _ => None,
            })
            .collect();
        let f = p.close_fraction;
        AlertTracker {
            params: params.clone(),
            threshold,
            close_level: threshold - (1.0 - f) * threshold.abs(),
            quiet_us: us(p.quiet_seconds),
            merge_us: us(p.merge_gap_seconds),
            cooldown_us: us(p.cooldown_seconds),
            duration_us: us(p.min_duration_seconds),
            max_burst_us: bursts.iter().map(|b| b.within_us).max().unwrap_or(0),
            bursts,
            sketch: sketch.clone(),
            features: features.to_vec(),
            families: families.to_vec(),
            devices: BTreeMap::new(),
            suppressed: 0,
        }
    }

    /// A device's state (its recent rows above the threshold, its open or
    /// pending alert, its cooldown) as JSON, to resume it in another tracker
    /// with [`resume_device`](Self::resume_device); none for a device not seen.
    pub fn device_state(&self, device: &str) -> Option<String> {
        self.devices
            .get(device)
            .and_then(|st| serde_json::to_string(st).ok())
    }

    /// Resumes a device's state saved by [`device_state`](Self::device_state):
    /// the tracker then goes on with that device's next rows as the saving one
    /// would have.
    ///
    /// # Errors
    /// The JSON error when `json` is not such a state (nothing changes then).
    pub fn resume_device(&mut self, device: &str, json: &str) -> serde_json::Result<()> {
        let st: DeviceState = serde_json::from_str(json)?;
        self.suppressed += st.suppressed;
        self.devices.insert(device.to_owned(), st);
        Ok(())
    }

    /// Openings suppressed by cooldown so far (rows at which an alert would
    /// have opened), over all devices.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Takes one row; returns the alerts this row finalised (closed and beyond
    /// any merge), usually none.
    pub fn push(&mut self, row: AlertRow<'_>) -> Vec<Alert> {
        let mut out = Vec::new();
        if !self.devices.contains_key(row.device) {
            self.devices
                .insert(row.device.to_owned(), DeviceState::default());
        }
        let Some(st) = self.devices.get_mut(row.device) else {
            return out;
        };
        let cfg = Cfg {
            threshold: self.threshold,
            close_level: self.close_level,
            quiet_us: self.quiet_us,
            merge_us: self.merge_us,
            cooldown_us: self.cooldown_us,
            duration_us: self.duration_us,
            bursts: &self.bursts,
            max_burst_us: self.max_burst_us,
            single_row_at: self.params.params().single_row_at,
            sketch: &self.sketch,
            k: self.params.params().open_k as usize,
            m: self.params.params().open_m as usize,
            n_features: self.features.len(),
        };
        let mut finished = Vec::new();
        self.suppressed += cfg.step(st, &row, &mut finished);
        for acc in finished {
            out.push(self.to_alert(row.device, &acc, false));
        }
        out
    }

    /// Closes the alerts that have been quiet long enough as of `now_us` (no
    /// row of their device is expected before it) and returns those finalised.
    pub fn advance(&mut self, now_us: i64) -> Vec<Alert> {
        let mut done: Vec<(String, Acc)> = Vec::new();
        for (device, st) in &mut self.devices {
            if st
                .open
                .as_ref()
                .is_some_and(|a| now_us - a.last_busy_us > self.quiet_us)
            {
                close(st, self.quiet_us, self.cooldown_us);
            }
            let earliest = st.above.front().map_or(now_us.max(st.last_ts), |c| c.ts);
            if let Some(p) = st.pending.take_if(|p| earliest - p.end_us > self.merge_us) {
                done.push((device.clone(), p));
            }
        }
        let mut out: Vec<Alert> = done
            .iter()
            .map(|(d, a)| self.to_alert(d, a, false))
            .collect();
        sort_alerts(&mut out);
        out
    }

    /// Every alert not yet returned: those open (`open: true`) and those closed
    /// that a later alert could still merge into (`open: false`).
    pub fn open_alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for (device, st) in &self.devices {
            if let Some(a) = &st.open {
                out.push(self.to_alert(device, a, true));
            }
            if let Some(a) = &st.pending {
                out.push(self.to_alert(device, a, false));
            }
        }
        sort_alerts(&mut out);
        out
    }

    /// Ends the stream: every alert not yet returned, those still open with
    /// `open: true`, by start then device.
    pub fn finish(self) -> Vec<Alert> {
        self.open_alerts()
    }

    /// The alert an accumulator describes.
    fn to_alert(&self, device: &str, a: &Acc, open: bool) -> Alert {
        let p = &self.params;
        let (families, top_features) = shares(&a.contrib, &self.features, &self.families);
        let family = families.first().map(|s| s.name.clone());
        let tail = self.sketch.tail_log10(a.peak_score);
        let mut severity = p.severity_of(tail);
        let mut labels: Vec<String> = Vec::new();
        for r in &p.params().rules {
            if let AlertRule::DominantFamily {
                family: f,
                share,
                label,
                severity: s,
            } = r
                && let Some(top) = families.first()
                && top.name.eq_ignore_ascii_case(f)
                && top.share >= *share
            {
                let l = label
                    .clone()
                    .unwrap_or_else(|| format!("dominant_{}", f.to_lowercase()));
                if !labels.contains(&l) {
                    labels.push(l);
                }
                if let Some(s) = s {
                    severity = severity.max(*s);
                }
            }
        }
        let start = format_timestamp(a.start_us);
        Alert {
            id: format!("{device}@{start}"),
            device: device.to_owned(),
            start,
            end: format_timestamp(a.end_us),
            peak_at: format_timestamp(a.peak_us),
            opened_at: format_timestamp(a.opened_us),
            start_us: a.start_us,
            end_us: a.end_us,
            peak_us: a.peak_us,
            opened_us: a.opened_us,
            open,
            rows: a.rows,
            peak_score: a.peak_score,
            peak_tail_log10: tail,
            mean_score: a.sum_score / a.rows.max(1) as f64,
            severity,
            rule: a.rule.clone(),
            route: p.route(family.as_deref(), None),
            family,
            families,
            top_features,
            labels,
            fault: None,
        }
    }
}

/// The tracker's settings, borrowed for one step (so the device state can be
/// borrowed mutably beside them).
struct Cfg<'a> {
    threshold: f64,
    close_level: f64,
    quiet_us: i64,
    merge_us: i64,
    cooldown_us: i64,
    duration_us: i64,
    bursts: &'a [Burst],
    max_burst_us: i64,
    single_row_at: f64,
    sketch: &'a ScoreSketch,
    k: usize,
    m: usize,
    n_features: usize,
}

/// Moves the open alert to pending, starting the cooldown.
fn close(st: &mut DeviceState, quiet_us: i64, cooldown_us: i64) {
    if let Some(a) = st.open.take() {
        let closed = a.last_busy_us.saturating_add(quiet_us);
        st.cooldown_until = Some(closed.saturating_add(cooldown_us));
        st.pending = Some(a);
    }
}

impl Cfg<'_> {
    /// One row of one device; finalised alerts go to `out`. Returns 1 when an
    /// opening was suppressed by cooldown.
    fn step(&self, st: &mut DeviceState, row: &AlertRow<'_>, out: &mut Vec<Acc>) -> u64 {
        let ts = row.ts_us;
        st.last_ts = ts;
        let above = row.score > self.threshold;
        let busy = row.score > self.close_level;
        if st
            .open
            .as_ref()
            .is_some_and(|a| ts - a.last_busy_us > self.quiet_us)
        {
            close(st, self.quiet_us, self.cooldown_us);
        }
        if let Some(a) = &mut st.open {
            if above {
                a.add(ts, row.score, row.contributions);
            }
            if busy {
                a.last_busy_us = ts;
            }
            return 0;
        }
        // No alert open: feed the opening detectors.
        st.ring.push_back((ts, above));
        st.ring_above += usize::from(above);
        if st.ring.len() > self.m
            && let Some((_, a)) = st.ring.pop_front()
        {
            st.ring_above -= usize::from(a);
        }
        st.run_start = if above {
            st.run_start.or(Some(ts))
        } else {
            None
        };
        if above {
            st.above.push_back(Candidate {
                ts,
                score: row.score,
                contrib: row.contributions.map(<[f64]>::to_vec),
            });
        }
        let mut horizon = st.ring.front().map_or(ts, |r| r.0);
        if let Some(r) = st.run_start {
            horizon = horizon.min(r);
        }
        if self.max_burst_us > 0 {
            horizon = horizon.min(ts - self.max_burst_us);
        }
        while st.above.front().is_some_and(|c| c.ts < horizon) {
            st.above.pop_front();
        }
        let mut suppressed = 0;
        let single = (above
            && self.single_row_at > 0.0
            && self.sketch.tail_log10(row.score) >= self.single_row_at)
            .then(|| (ts, format!("single row at {}", self.single_row_at)));
        if let Some((start, rule)) = self.opening(st, ts).or(single) {
            let merge = st
                .pending
                .as_ref()
                .is_some_and(|p| start - p.end_us <= self.merge_us);
            if merge {
                if let Some(mut acc) = st.pending.take() {
                    self.absorb(st, &mut acc, start, ts, busy);
                    st.open = Some(acc);
                }
            } else if st.cooldown_until.is_some_and(|c| ts < c) {
                st.suppressed += 1;
                suppressed = 1;
            } else {
                if let Some(p) = st.pending.take() {
                    out.push(p);
                }
                let mut acc = Acc {
                    start_us: start,
                    end_us: start,
                    opened_us: ts,
                    peak_us: start,
                    rows: 0,
                    peak_score: f64::NEG_INFINITY,
                    sum_score: 0.0,
                    contrib: vec![0.0; self.n_features],
                    rule,
                    last_busy_us: ts,
                };
                self.absorb(st, &mut acc, start, ts, busy);
                st.open = Some(acc);
            }
        }
        if st.open.is_none() {
            let earliest = st.above.front().map_or(ts, |c| c.ts);
            if let Some(p) = st.pending.take_if(|p| earliest - p.end_us > self.merge_us) {
                out.push(p);
            }
        }
        suppressed
    }

    /// Moves the opening window's rows (from `start`) into `acc` and resets the
    /// detectors.
    fn absorb(&self, st: &mut DeviceState, acc: &mut Acc, start: i64, ts: i64, busy: bool) {
        let mut last = acc.last_busy_us;
        for c in st.above.iter().filter(|c| c.ts >= start) {
            acc.add(c.ts, c.score, c.contrib.as_deref());
            last = last.max(c.ts);
        }
        if busy {
            last = last.max(ts);
        }
        acc.last_busy_us = last;
        st.reset_detectors();
    }

    /// The start and name of the first opening rule met at `ts`, if any.
    fn opening(&self, st: &DeviceState, ts: i64) -> Option<(i64, String)> {
        if st.ring_above >= self.k
            && let Some(&(start, _)) = st.ring.iter().find(|r| r.1)
        {
            return Some((start, format!("k_of_m {}/{}", self.k, self.m)));
        }
        if self.duration_us > 0
            && let Some(rs) = st.run_start
            && ts - rs >= self.duration_us
        {
            return Some((rs, format!("duration {}s", self.duration_us as f64 / 1e6)));
        }
        for b in self.bursts {
            let from = ts - b.within_us;
            let n = st.above.iter().rev().take_while(|c| c.ts >= from).count();
            if n >= b.rows
                && let Some(c) = st.above.iter().find(|c| c.ts >= from)
            {
                return Some((c.ts, b.name.clone()));
            }
        }
        None
    }
}

/// Family shares (all with a share > 0, largest first, ties by name) and the top
/// five features, from summed contribution magnitudes.
fn shares(contrib: &[f64], features: &[String], families: &[String]) -> (Vec<Share>, Vec<Share>) {
    let total: f64 = contrib.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return (Vec::new(), Vec::new());
    }
    let mut fam: BTreeMap<&str, f64> = BTreeMap::new();
    let mut feats: Vec<Share> = Vec::new();
    for (i, &v) in contrib.iter().enumerate() {
        if v > 0.0 {
            if let Some(f) = families.get(i) {
                *fam.entry(f.as_str()).or_default() += v / total;
            }
            if let Some(name) = features.get(i) {
                feats.push(Share {
                    name: name.clone(),
                    share: v / total,
                });
            }
        }
    }
    let by_share = |a: &Share, b: &Share| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name));
    feats.sort_by(by_share);
    feats.truncate(5);
    let mut fams: Vec<Share> = fam
        .into_iter()
        .map(|(name, share)| Share {
            name: name.to_owned(),
            share,
        })
        .collect();
    fams.sort_by(by_share);
    (fams, feats)
}

pub(crate) fn sort_alerts(v: &mut [Alert]) {
    v.sort_by(|a, b| a.start_us.cmp(&b.start_us).then(a.device.cmp(&b.device)));
}

/// Runs an [`AlertTracker`] over the rows of `rows` for which `select` is true,
/// in time order (ties by device code, so the result is deterministic), and
/// returns every alert (those still open at the last row with `open: true`), by
/// start then device. Contributions are asked of `attribution` only for rows
/// above the threshold.
pub fn build_alerts(
    rows: &ScoredRows<'_>,
    select: &[bool],
    threshold: f64,
    sketch: &ScoreSketch,
    params: &CheckedAlerts,
    attribution: Option<&Attribution<'_>>,
) -> Vec<Alert> {
    let n = rows
        .timestamps
        .len()
        .min(select.len())
        .min(rows.scores.len());
    // Sized exactly: with millions of rows a doubling vector would hold up to
    // twice what it needs while the alerts are built.
    let mut order: Vec<usize> = Vec::with_capacity(select[..n].iter().filter(|&&s| s).count());
    order.extend((0..n).filter(|&r| select[r]));
    order.sort_by_key(|&r| (rows.timestamps[r], rows.device_codes[r]));
    let (features, families) = attribution.map_or((&[][..], &[][..]), |a| (a.features, a.families));
    let mut tracker = AlertTracker::new(params, threshold, sketch, features, families);
    let mut out = Vec::new();
    for r in order {
        let score = rows.scores[r];
        let contributions = match attribution {
            Some(att) if score > threshold => Some((att.contributions)(r)),
            _ => None,
        };
        out.extend(tracker.push(AlertRow {
            device: &rows.device_names[rows.device_codes[r] as usize],
            ts_us: rows.timestamps[r],
            score,
            contributions: contributions.as_deref(),
        }));
    }
    out.extend(tracker.finish());
    sort_alerts(&mut out);
    out
}
