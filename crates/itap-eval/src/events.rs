//! Ground-truth events, matched against tracker alerts for the event- and
//! alert-level figures (detections, delays, true and false alerts).

use std::collections::BTreeMap;

use crate::alert_params::CheckedAlerts;
use crate::evaluate::{EventMetrics, ScoredRows};
use crate::metrics::{quantile, ratio};
use crate::params::EvalParams;
use crate::tracker::Alert;

/// A ground-truth event: a run of one device's evaluated rows with one fault tag.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) device: u32,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) tag: u32,
}

/// The rows of each device for which `keep` is true, in time order.
pub(crate) fn per_device_rows(rows: &ScoredRows<'_>, keep: &[bool]) -> BTreeMap<u32, Vec<usize>> {
    // Each device's list sized exactly (counted first): a fleet's lists hold
    // every evaluated row, and doubling vectors would hold up to twice that.
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for (r, &k) in keep.iter().enumerate() {
        if k {
            *counts.entry(rows.device_codes[r]).or_default() += 1;
        }
    }
    let mut by: BTreeMap<u32, Vec<usize>> = counts
        .into_iter()
        .map(|(d, n)| (d, Vec::with_capacity(n)))
        .collect();
    for (r, &k) in keep.iter().enumerate() {
        if k && let Some(list) = by.get_mut(&rows.device_codes[r]) {
            list.push(r);
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
                Some(s) if s.tag == t => s.end = rows.timestamps[r],
                _ => {
                    if let Some(s) = cur.take() {
                        out.push(s);
                    }
                    if t != 0 {
                        cur = Some(Span {
                            device: d,
                            start: rows.timestamps[r],
                            end: rows.timestamps[r],
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

impl TagEvents {
    /// Adds another part's events of the same tag.
    pub(crate) fn merge(&mut self, other: TagEvents) {
        self.events += other.events;
        self.detected += other.detected;
        self.delays_s.extend(other.delays_s);
    }
}

/// The time an event can be detected in: from its start to its end, and at least
/// the grace period.
fn window(e: &Span, grace_us: i64) -> (i64, i64) {
    (e.start, e.end.max(e.start + grace_us))
}

/// Whether the alert's span `[start, end]` meets the window (both inclusive).
fn overlaps(a: &Alert, (ws, we): (i64, i64)) -> bool {
    a.start_us <= we && a.end_us >= ws
}

/// Each alert's device code (by name), `None` for a device not in the rows.
fn alert_devices(rows: &ScoredRows<'_>, alerts: &[Alert]) -> Vec<Option<u32>> {
    let by_name: BTreeMap<&str, u32> = rows
        .device_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    alerts
        .iter()
        .map(|a| by_name.get(a.device.as_str()).copied())
        .collect()
}

/// The positions of `items` per device code, each list in the items' order;
/// items with no code are left out. Matching alerts and events device by device
/// through it keeps the cost linear in the fleet: a scan of every event for
/// every alert grew with the square of the fleet (10,000 devices: 10⁵ alerts
/// against 10⁵ events).
fn positions_by_device<T>(
    items: &[T],
    code: impl Fn(&T) -> Option<u32>,
) -> BTreeMap<u32, Vec<usize>> {
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(c) = code(item) {
            by.entry(c).or_default().push(i);
        }
    }
    by
}

/// Fills each alert's `fault`: the tag of the event whose detection window its
/// span overlaps longest (ties: the earlier event), and routes it again (a
/// `route` rule may name the fault kind).
pub(crate) fn label_alerts(
    rows: &ScoredRows<'_>,
    evs: &[Span],
    alerts: &mut [Alert],
    grace_s: f64,
    params: &CheckedAlerts,
) {
    let grace_us = (grace_s * 1e6) as i64;
    let codes = alert_devices(rows, alerts);
    let evs_of = positions_by_device(evs, |e| Some(e.device));
    for (a, code) in alerts.iter_mut().zip(codes) {
        let Some(mine) = code.and_then(|c| evs_of.get(&c)) else {
            continue;
        };
        let best = mine
            .iter()
            .map(|&i| &evs[i])
            .filter_map(|e| {
                let w = window(e, grace_us);
                overlaps(a, w).then(|| (a.end_us.min(w.1) - a.start_us.max(w.0), e))
            })
            .max_by(|x, y| x.0.cmp(&y.0).then(y.1.start.cmp(&x.1.start)));
        if let Some((_, e)) = best {
            a.fault = Some(rows.tag_names[e.tag as usize].clone());
            a.route = params.route(a.family.as_deref(), a.fault.as_deref());
        }
    }
}

/// How the events of one part of the fleet were detected by its alerts: the
/// events of each fault tag (codes of `rows`) and every detection delay,
/// seconds, in event order. `alerts` must carry their `fault`
/// ([`label_alerts`]).
pub(crate) fn detections(
    rows: &ScoredRows<'_>,
    evs: &[Span],
    alerts: &[Alert],
    grace_s: f64,
) -> (BTreeMap<u32, TagEvents>, Vec<f64>) {
    let grace_us = (grace_s * 1e6) as i64;
    let codes = alert_devices(rows, alerts);
    let alerts_of = positions_by_device(&codes, |&c| c);
    let mut by_tag: BTreeMap<u32, TagEvents> = BTreeMap::new();
    let mut all_delays = Vec::new();
    for e in evs {
        let w = window(e, grace_us);
        let first = alerts_of
            .get(&e.device)
            .into_iter()
            .flatten()
            .map(|&i| &alerts[i])
            .filter(|a| overlaps(a, w))
            .map(|a| a.start_us)
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
    (by_tag, all_delays)
}

/// What the event- and alert-level figures are made of, summed over the parts
/// of a fleet.
#[derive(Debug, Default)]
pub(crate) struct EventCounts {
    /// Ground-truth events.
    pub(crate) events: u64,
    /// Of those, detected.
    pub(crate) detected: u64,
    /// Every detection delay, seconds.
    pub(crate) delays_s: Vec<f64>,
    /// Evaluated device-days.
    pub(crate) device_days: f64,
    /// Whether the rows carried ground truth.
    pub(crate) labelled: bool,
}

/// The event- and alert-level figures from the counts and every alert (with
/// its `fault`).
pub(crate) fn event_metrics(
    counts: &EventCounts,
    alerts: &[Alert],
    p: &EvalParams,
) -> EventMetrics {
    let true_alerts = alerts.iter().filter(|a| a.fault.is_some()).count() as u64;
    let n_alerts = alerts.len() as u64;
    let false_alerts = n_alerts - true_alerts;
    let device_days = counts.device_days;
    let per_day = |n: u64| {
        if device_days > 0.0 {
            n as f64 / device_days
        } else {
            0.0
        }
    };
    EventMetrics {
        events: counts.events,
        detected: counts.detected,
        event_recall: ratio(counts.detected, counts.events),
        delay_median_s: quantile(&counts.delays_s, 0.5),
        delay_p90_s: quantile(&counts.delays_s, 0.9),
        alerts: n_alerts,
        true_alerts,
        false_alerts,
        alert_precision: (counts.labelled && n_alerts > 0).then(|| ratio(true_alerts, n_alerts)),
        device_days,
        alerts_per_device_day: per_day(n_alerts),
        false_alerts_per_device_day: per_day(false_alerts),
        grace_s: p.grace_seconds,
    }
}

/// Each device's days from its first to its last selected row, by device code.
pub(crate) fn days_of_each(
    rows: &ScoredRows<'_>,
    by_device: &BTreeMap<u32, Vec<usize>>,
) -> Vec<(u32, f64)> {
    by_device
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(&d, list)| {
            let (a, b) = (
                rows.timestamps[list[0]],
                rows.timestamps[list[list.len() - 1]],
            );
            (d, (b - a) as f64 / 86_400e6)
        })
        .collect()
}

/// Days from each device's first to its last selected row, summed (by device
/// code).
pub(crate) fn device_days(rows: &ScoredRows<'_>, by_device: &BTreeMap<u32, Vec<usize>>) -> f64 {
    days_of_each(rows, by_device).iter().map(|d| d.1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert_params::{AlertParams, Severity};
    use itap_telemetry::ParamGuard;

    /// A small generator (SplitMix64): the test's spans are the same on every run.
    struct Mix(u64);
    impl Mix {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    fn alert(device: &str, start_us: i64, end_us: i64) -> Alert {
        Alert {
            id: format!("{device}-{start_us}"),
            device: device.to_owned(),
            start: String::new(),
            end: String::new(),
            peak_at: String::new(),
            opened_at: String::new(),
            start_us,
            end_us,
            peak_us: start_us,
            opened_us: start_us,
            open: false,
            rows: 1,
            peak_score: 1.0,
            peak_tail_log10: 1.0,
            mean_score: 1.0,
            severity: Severity::Warning,
            rule: "test".to_owned(),
            family: None,
            families: Vec::new(),
            top_features: Vec::new(),
            route: String::new(),
            labels: Vec::new(),
            fault: None,
        }
    }

    /// What the matching was before it went device by device: every event
    /// scanned for every alert, and every alert for every event.
    fn by_scan(
        rows: &ScoredRows<'_>,
        evs: &[Span],
        alerts: &mut [Alert],
        grace_us: i64,
    ) -> Vec<Option<i64>> {
        let codes = alert_devices(rows, alerts);
        for (a, code) in alerts.iter_mut().zip(&codes) {
            let best = evs
                .iter()
                .filter(|e| Some(e.device) == *code)
                .filter_map(|e| {
                    let w = window(e, grace_us);
                    overlaps(a, w).then(|| (a.end_us.min(w.1) - a.start_us.max(w.0), e))
                })
                .max_by(|x, y| x.0.cmp(&y.0).then(y.1.start.cmp(&x.1.start)));
            a.fault = best.map(|(_, e)| rows.tag_names[e.tag as usize].clone());
        }
        evs.iter()
            .map(|e| {
                let w = window(e, grace_us);
                alerts
                    .iter()
                    .zip(&codes)
                    .filter(|(a, c)| **c == Some(e.device) && overlaps(a, w))
                    .map(|(a, _)| a.start_us)
                    .min()
            })
            .collect()
    }

    #[test]
    fn matching_device_by_device_equals_scanning_every_alert_and_event() {
        let names: Vec<String> = (0..7).map(|d| format!("D{d}")).collect();
        let tags: Vec<String> = ["", "a", "b", "c"].map(str::to_owned).to_vec();
        let rows = ScoredRows {
            timestamps: &[],
            device_codes: &[],
            device_names: &names,
            states: None,
            tag_codes: None,
            tag_names: &tags,
            scores: &[],
        };
        let mut mix = Mix(7);
        // Short spans on a short axis: many overlaps, equal overlaps and equal
        // starts, so the ties are exercised; device 6 has events and no alert, an
        // alert on "ghost" has no device in the rows.
        let mut evs: Vec<Span> = Vec::new();
        for d in 0..7u32 {
            for _ in 0..40 {
                let start = mix.below(400) as i64 * 10;
                evs.push(Span {
                    device: d,
                    start,
                    end: start + mix.below(6) as i64 * 10,
                    tag: 1 + mix.below(3) as u32,
                });
            }
        }
        let mut alerts: Vec<Alert> = (0..300)
            .map(|_| {
                let start = mix.below(400) as i64 * 10;
                alert(
                    &names[mix.below(6) as usize],
                    start,
                    start + mix.below(8) as i64 * 10,
                )
            })
            .collect();
        alerts.push(alert("ghost", 0, 4_000));
        let grace_s = 0.00002;
        let mut expected = alerts.clone();
        let first = by_scan(&rows, &evs, &mut expected, (grace_s * 1e6) as i64);

        let params = AlertParams::default().check().unwrap();
        label_alerts(&rows, &evs, &mut alerts, grace_s, &params);
        let labelled: Vec<&Option<String>> = alerts.iter().map(|a| &a.fault).collect();
        let want: Vec<&Option<String>> = expected.iter().map(|a| &a.fault).collect();
        assert_eq!(labelled, want);
        assert!(alerts.iter().filter(|a| a.fault.is_some()).count() > 100);
        assert!(alerts.iter().any(|a| a.fault.is_none()));

        let p = EvalParams {
            grace_seconds: grace_s,
            ..EvalParams::default()
        };
        let (by_tag, all_delays) = detections(&rows, &evs, &alerts, p.grace_seconds);
        let detected = first.iter().filter(|f| f.is_some()).count() as u64;
        assert_eq!(by_tag.values().map(|t| t.detected).sum::<u64>(), detected);
        assert_eq!(all_delays.len() as u64, detected);
        assert!(detected > 0 && detected < evs.len() as u64, "{detected}");
        let delays: Vec<f64> = evs
            .iter()
            .zip(&first)
            .filter_map(|(e, f)| f.map(|s| (s - e.start).max(0) as f64 / 1e6))
            .collect();
        let mut got: Vec<f64> = by_tag.values().flat_map(|t| t.delays_s.clone()).collect();
        let mut want = delays;
        got.sort_by(f64::total_cmp);
        want.sort_by(f64::total_cmp);
        assert_eq!(got, want);
    }
}
