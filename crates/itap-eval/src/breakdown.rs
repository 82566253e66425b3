//! Breakdowns of the evaluated rows: per device, per operating state, per fault kind.

use std::collections::{BTreeMap, BTreeSet};

use itap_telemetry::State;

use crate::evaluate::{Breakdown, FaultMetrics, ScoredRows};
use crate::events::TagEvents;
use crate::metrics::{Confusion, quantile, ratio, roc_auc};

/// Fault tags coded the same way across parts whose own dictionaries differ;
/// entry 0 is "" (no fault).
#[derive(Debug, Clone)]
pub(crate) struct TagDictionary {
    /// The tags, by code.
    pub(crate) names: Vec<String>,
    codes: BTreeMap<String, u32>,
}

impl TagDictionary {
    pub(crate) fn new() -> Self {
        TagDictionary {
            names: vec![String::new()],
            codes: BTreeMap::from([(String::new(), 0)]),
        }
    }

    /// This dictionary's code of each tag of `names` (a part's dictionary, entry
    /// 0 "", which is 0 here too), adding the tags it did not know.
    pub(crate) fn codes_of(&mut self, names: &[String]) -> Vec<u32> {
        names
            .iter()
            .map(|n| {
                if let Some(&c) = self.codes.get(n) {
                    return c;
                }
                let c = self.names.len() as u32;
                self.names.push(n.clone());
                self.codes.insert(n.clone(), c);
                c
            })
            .collect()
    }
}

/// The evaluated rows of a fleet, or of the parts of it evaluated so far, in
/// compact columns: what the fleet-wide figures (ROC and PR, the sweep, the
/// confusion at the threshold, per state and per fault) are computed from.
/// Their order does not matter to any of them.
#[derive(Debug)]
pub(crate) struct Columns {
    /// Scores.
    pub(crate) scores: Vec<f64>,
    /// Fault tag codes into `tag_names` (0 = normal).
    pub(crate) tags: Vec<u32>,
    /// Operating states, one per row; empty without a state column.
    pub(crate) states: Vec<State>,
    /// The tag dictionary.
    pub(crate) tag_names: TagDictionary,
}

impl Columns {
    pub(crate) fn new() -> Self {
        Columns {
            scores: Vec::new(),
            tags: Vec::new(),
            states: Vec::new(),
            tag_names: TagDictionary::new(),
        }
    }

    /// Appends the rows of `rows` marked in `keep`, in their order (`codes`:
    /// [`TagDictionary::codes_of`] the rows' tag names).
    pub(crate) fn extend(&mut self, rows: &ScoredRows<'_>, keep: &[bool], codes: &[u32]) {
        let n = keep.iter().filter(|&&k| k).count();
        let kept = || (0..keep.len()).filter(|&r| keep[r]);
        self.scores.reserve(n);
        self.scores.extend(kept().map(|r| rows.scores[r]));
        self.tags.reserve(n);
        match rows.tag_codes {
            Some(t) => self.tags.extend(kept().map(|r| codes[t[r] as usize])),
            None => self.tags.extend(std::iter::repeat_n(0, n)),
        }
        if let Some(s) = rows.states {
            self.states.reserve(n);
            self.states.extend(kept().map(|r| s[r]));
        }
    }

    /// Each row's label: faulty or not.
    pub(crate) fn labels(&self) -> Vec<bool> {
        self.tags.iter().map(|&t| t != 0).collect()
    }
}

/// The figures of one group of evaluated rows (`s` their scores, `l` their labels).
fn breakdown(key: String, s: &[f64], l: &[bool], threshold: f64) -> Breakdown {
    let c = Confusion::count(s.iter().map(|&x| x > threshold), l.iter().copied());
    Breakdown {
        key,
        rows: s.len() as u64,
        faulty: l.iter().filter(|&&x| x).count() as u64,
        flagged: c.tp + c.fp,
        precision: c.precision(),
        recall: c.recall(),
        f1: c.f1(),
        roc_auc: roc_auc(s, l),
    }
}

/// One breakdown per device, in device-id order, of the rows of each device in
/// `by_device` (device code → rows of `rows`).
pub(crate) fn per_device(
    rows: &ScoredRows<'_>,
    by_device: &BTreeMap<u32, Vec<usize>>,
    threshold: f64,
) -> Vec<Breakdown> {
    let mut out: Vec<Breakdown> = by_device
        .iter()
        .map(|(&d, list)| {
            let s: Vec<f64> = list.iter().map(|&r| rows.scores[r]).collect();
            let l: Vec<bool> = list
                .iter()
                .map(|&r| rows.tag_codes.is_some_and(|t| t[r] != 0))
                .collect();
            breakdown(rows.device_names[d as usize].clone(), &s, &l, threshold)
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// One breakdown per operating state, in state order; none without a state
/// column. One state's rows are gathered at a time.
pub(crate) fn per_state(cols: &Columns, labels: &[bool], threshold: f64) -> Vec<Breakdown> {
    if cols.states.is_empty() {
        return Vec::new();
    }
    let present: BTreeSet<State> = cols.states.iter().copied().collect();
    present
        .into_iter()
        .map(|state| {
            // Sized exactly: one state may be most of the fleet's rows.
            let n = cols.states.iter().filter(|&&st| st == state).count();
            let (mut s, mut l) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for ((&x, &y), _) in cols
                .scores
                .iter()
                .zip(labels)
                .zip(&cols.states)
                .filter(|(_, st)| **st == state)
            {
                s.push(x);
                l.push(y);
            }
            breakdown(state.as_str().to_owned(), &s, &l, threshold)
        })
        .collect()
}

/// Row recall and event figures per fault kind, in tag order; none without ground
/// truth (`labelled`). Rows count with their own scores; `events` are keyed by
/// the columns' tag codes.
pub(crate) fn per_fault(
    cols: &Columns,
    threshold: f64,
    events: &BTreeMap<u32, TagEvents>,
    labelled: bool,
) -> Vec<FaultMetrics> {
    if !labelled {
        return Vec::new();
    }
    let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (&t, &s) in cols.tags.iter().zip(&cols.scores) {
        if t != 0 {
            let c = counts.entry(t).or_default();
            c.0 += 1;
            c.1 += u64::from(s > threshold);
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
                tag: cols.tag_names.names[code as usize].clone(),
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
