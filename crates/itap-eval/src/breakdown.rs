//! Breakdowns of the evaluated rows: per device, per operating state, per fault kind.

use std::collections::BTreeMap;

use itap_telemetry::State;

use crate::evaluate::{Breakdown, FaultMetrics, ScoredRows, Selection};
use crate::events::TagEvents;
use crate::metrics::{Confusion, quantile, ratio, roc_auc};

/// The evaluated rows (positions in `sel`) of each key, keys in order; rows whose
/// key is `None` are left out.
fn group<K: Ord>(sel: &Selection, key: impl Fn(usize) -> Option<K>) -> BTreeMap<K, Vec<usize>> {
    let mut by: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, &r) in sel.rows.iter().enumerate() {
        if let Some(k) = key(r) {
            by.entry(k).or_default().push(i);
        }
    }
    by
}

/// The figures of one group of evaluated rows (`members` are positions in `sel`).
fn breakdown(sel: &Selection, key: String, members: &[usize]) -> Breakdown {
    let s: Vec<f64> = members.iter().map(|&i| sel.scores[i]).collect();
    let l: Vec<bool> = members.iter().map(|&i| sel.labels[i]).collect();
    let c = Confusion::count(members.iter().map(|&i| sel.flagged[i]), l.iter().copied());
    Breakdown {
        key,
        rows: members.len() as u64,
        faulty: l.iter().filter(|&&x| x).count() as u64,
        flagged: c.tp + c.fp,
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        roc_auc: roc_auc(&s, &l),
    }
}

/// One breakdown per device, in device-id order.
pub(crate) fn per_device(rows: &ScoredRows<'_>, sel: &Selection) -> Vec<Breakdown> {
    group(sel, |r| {
        Some(rows.device_names[rows.device_codes[r] as usize].as_str())
    })
    .iter()
    .map(|(d, m)| breakdown(sel, (*d).to_owned(), m))
    .collect()
}

/// One breakdown per operating state, in state order; none without a state column.
pub(crate) fn per_state(rows: &ScoredRows<'_>, sel: &Selection) -> Vec<Breakdown> {
    let Some(states) = rows.states else {
        return Vec::new();
    };
    group(sel, |r| Some::<State>(states[r]))
        .iter()
        .map(|(s, m)| breakdown(sel, s.as_str().to_owned(), m))
        .collect()
}

/// Row recall and event figures per fault kind, in tag order; none without ground
/// truth. Rows count with their own scores.
pub(crate) fn per_fault(
    rows: &ScoredRows<'_>,
    sel: &Selection,
    events: &BTreeMap<u32, TagEvents>,
) -> Vec<FaultMetrics> {
    let Some(tags) = rows.tag_codes else {
        return Vec::new();
    };
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (i, &r) in sel.rows.iter().enumerate() {
        if tags[r] != 0 {
            let c = counts.entry(tags[r]).or_default();
            c.0 += 1;
            c.1 += u64::from(sel.flagged[i]);
        }
    }
    let mut codes: Vec<u32> = counts.keys().chain(events.keys()).copied().collect();
    codes.sort_unstable();
    codes.dedup();
    let none = TagEvents::default();
    let mut per_fault: Vec<FaultMetrics> = codes
        .into_iter()
        .map(|code| {
            let (rows_k, flagged_k) = counts.get(&code).copied().unwrap_or_default();
            let ev = events.get(&code).unwrap_or(&none);
            FaultMetrics {
                tag: rows.tag_names[code as usize].clone(),
                rows: rows_k,
                flagged: flagged_k,
                recall: ratio(flagged_k, rows_k),
                events: ev.events,
                detected: ev.detected,
                event_recall: ratio(ev.detected, ev.events),
                delay_median_s: quantile(&ev.delays_s, 0.5),
                delay_p90_s: quantile(&ev.delays_s, 0.9),
            }
        })
        .collect();
    per_fault.sort_by(|a, b| a.tag.cmp(&b.tag));
    per_fault
}
