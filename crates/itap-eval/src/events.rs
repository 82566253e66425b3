//! Events and alerts: runs of one device's rows, matched against each other for the
//! event-level figures (detections, delays, false alerts).

use std::collections::BTreeMap;

use crate::evaluate::{EventMetrics, ScoredRows};
use crate::metrics::{quantile, ratio};
use crate::params::EvalParams;

/// A run of rows of one device: an event (same tag) or an alert (flagged rows).
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) device: u32,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) rows: Vec<usize>,
    pub(crate) tag: u32,
}

/// The rows of each device for which `keep` is true, in time order.
pub(crate) fn per_device_rows(rows: &ScoredRows<'_>, keep: &[bool]) -> BTreeMap<u32, Vec<usize>> {
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (r, &k) in keep.iter().enumerate() {
        if k {
            by.entry(rows.device_codes[r]).or_default().push(r);
        }
    }
    for v in by.values_mut() {
        v.sort_by_key(|&r| rows.timestamps[r]);
    }
    by
}

/// Ground-truth events: maximal runs of one device's evaluated rows with one tag.
pub(crate) fn events(rows: &ScoredRows<'_>, by_device: &BTreeMap<u32, Vec<usize>>) -> Vec<Span> {
    let Some(tags) = rows.tag_codes else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (&d, list) in by_device {
        let mut cur: Option<Span> = None;
        for &r in list {
            let t = tags[r];
            match &mut cur {
                Some(s) if s.tag == t => {
                    s.end = rows.timestamps[r];
                    s.rows.push(r);
                }
                _ => {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                    if t != 0 {
                        cur = Some(Span {
                            device: d,
                            start: rows.timestamps[r],
                            end: rows.timestamps[r],
                            rows: vec![r],
                            tag: t,
                        });
                    }
                }
            }
        }
        if let Some(s) = cur {
            out.push(s);
        }
    }
    out
}

/// Alerts: runs of one device's flagged rows, merged across gaps up to `gap_us`.
pub(crate) fn alerts(
    rows: &ScoredRows<'_>,
    by_device: &BTreeMap<u32, Vec<usize>>,
    threshold: f64,
    gap_us: i64,
) -> Vec<Span> {
    let mut out = Vec::new();
    for (&d, list) in by_device {
        let mut cur: Option<Span> = None;
        for &r in list.iter().filter(|&&r| rows.scores[r] > threshold) {
            let ts = rows.timestamps[r];
            match &mut cur {
                Some(s) if ts - s.end <= gap_us => {
                    s.end = ts;
                    s.rows.push(r);
                }
                _ => {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                    cur = Some(Span {
                        device: d,
                        start: ts,
                        end: ts,
                        rows: vec![r],
                        tag: 0,
                    });
                }
            }
        }
        if let Some(s) = cur {
            out.push(s);
        }
    }
    out
}

/// The events and alerts of the evaluated rows, per device.
#[derive(Debug)]
pub(crate) struct Spans {
    /// The evaluated rows of each device, in time order.
    pub(crate) by_device: BTreeMap<u32, Vec<usize>>,
    /// Ground-truth events.
    pub(crate) events: Vec<Span>,
    /// Alerts at the operating threshold.
    pub(crate) alerts: Vec<Span>,
}

impl Spans {
    /// The spans of the rows for which `keep` is true.
    pub(crate) fn find(
        rows: &ScoredRows<'_>,
        keep: &[bool],
        threshold: f64,
        p: &EvalParams,
    ) -> Self {
        let by_device = per_device_rows(rows, keep);
        let events = events(rows, &by_device);
        let gap_us = (p.alert_gap_seconds * 1e6) as i64;
        let alerts = alerts(rows, &by_device, threshold, gap_us);
        Spans {
            by_device,
            events,
            alerts,
        }
    }
}

/// The events of one fault tag and how they were detected.
#[derive(Debug, Default)]
pub(crate) struct TagEvents {
    /// Events of this tag.
    pub(crate) events: u64,
    /// Of those, detected.
    pub(crate) detected: u64,
    /// Detection delays of the detected ones, seconds, in event order.
    pub(crate) delays_s: Vec<f64>,
}

/// The time an event can be detected in: from its start to its end, and at least
/// the grace period.
fn window(e: &Span, grace_us: i64) -> (i64, i64) {
    (e.start, e.end.max(e.start + grace_us))
}

fn overlaps(a: &Span, (ws, we): (i64, i64)) -> bool {
    a.start <= we && a.end >= ws
}

/// The event-level figures, and the events of each fault tag (for the per-fault
/// breakdown).
pub(crate) fn event_metrics(
    rows: &ScoredRows<'_>,
    spans: &Spans,
    p: &EvalParams,
) -> (EventMetrics, BTreeMap<u32, TagEvents>) {
    let (evs, als) = (&spans.events, &spans.alerts);
    let grace_us = (p.grace_seconds * 1e6) as i64;
    let mut by_tag: BTreeMap<u32, TagEvents> = BTreeMap::new();
    let mut all_delays = Vec::new();
    for e in evs {
        let w = window(e, grace_us);
        let first = als
            .iter()
            .filter(|a| a.device == e.device && overlaps(a, w))
            .map(|a| a.start)
            .min();
        let entry = by_tag.entry(e.tag).or_default();
        entry.events += 1;
        if let Some(start) = first {
            entry.detected += 1;
            let d = (start - e.start).max(0) as f64 / 1e6;
            entry.delays_s.push(d);
            all_delays.push(d);
        }
    }
    let false_alerts = als
        .iter()
        .filter(|a| {
            !evs.iter()
                .any(|e| e.device == a.device && overlaps(a, window(e, grace_us)))
        })
        .count() as u64;
    let device_days = device_days(rows, &spans.by_device);
    let detected = by_tag.values().map(|v| v.detected).sum::<u64>();
    let metrics = EventMetrics {
        events: evs.len() as u64,
        detected,
        event_recall: ratio(detected, evs.len() as u64),
        delay_median_s: quantile(&all_delays, 0.5),
        delay_p90_s: quantile(&all_delays, 0.9),
        alerts: als.len() as u64,
        false_alerts,
        device_days,
        false_alerts_per_device_day: if device_days > 0.0 {
            false_alerts as f64 / device_days
        } else {
            0.0
        },
        alert_gap_s: p.alert_gap_seconds,
        grace_s: p.grace_seconds,
    };
    (metrics, by_tag)
}

/// Days from each device's first to its last evaluated row, summed.
fn device_days(rows: &ScoredRows<'_>, by_device: &BTreeMap<u32, Vec<usize>>) -> f64 {
    by_device
        .values()
        .map(|list| {
            let (a, b) = (
                rows.timestamps[list[0]],
                rows.timestamps[list[list.len() - 1]],
            );
            (b - a) as f64 / 86_400e6
        })
        .sum()
}
