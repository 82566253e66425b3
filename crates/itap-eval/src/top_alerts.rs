//! The alerts with the highest peaks, in detail: span, peak, fault tag and, when
//! contributions are given, the features and families behind the peak.

use std::collections::BTreeMap;

use itap_telemetry::format_timestamp;

use crate::evaluate::{AlertDetail, Attribution, ScoredRows, Share};
use crate::events::Span;

/// The `top_n` alerts with the highest peak score (ties: the earlier alert first).
pub(crate) fn top_alerts(
    rows: &ScoredRows<'_>,
    alerts: &[Span],
    by_device: &BTreeMap<u32, Vec<usize>>,
    top_n: usize,
    attribution: Option<&Attribution<'_>>,
) -> Vec<AlertDetail> {
    let mut ranked: Vec<(f64, usize)> = alerts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let peak = a
                .rows
                .iter()
                .map(|&r| rows.scores[r])
                .fold(f64::NEG_INFINITY, f64::max);
            (peak, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked
        .iter()
        .take(top_n)
        .map(|&(peak, i)| alert_detail(rows, &alerts[i], peak, by_device, attribution))
        .collect()
}

fn alert_detail(
    rows: &ScoredRows<'_>,
    a: &Span,
    peak: f64,
    by_device: &BTreeMap<u32, Vec<usize>>,
    attribution: Option<&Attribution<'_>>,
) -> AlertDetail {
    let peak_row = a
        .rows
        .iter()
        .copied()
        .find(|&r| rows.scores[r] == peak)
        .unwrap_or(a.rows[0]);
    let (top_features, top_families) = match attribution {
        Some(att) => shares(att, peak_row),
        None => (Vec::new(), Vec::new()),
    };
    AlertDetail {
        device: rows.device_names[a.device as usize].clone(),
        start: format_timestamp(a.start),
        end: format_timestamp(a.end),
        rows: a.rows.len() as u64,
        peak_score: peak,
        peak_at: format_timestamp(rows.timestamps[peak_row]),
        fault_tag: fault_tag(rows, a, by_device),
        top_features,
        top_families,
    }
}

/// The tag most evaluated rows of the alert's span carry (ties: the first by name).
fn fault_tag(
    rows: &ScoredRows<'_>,
    a: &Span,
    by_device: &BTreeMap<u32, Vec<usize>>,
) -> Option<String> {
    let mut tag_counts: BTreeMap<&str, u64> = BTreeMap::new();
    if let Some(list) = by_device.get(&a.device) {
        for &r in list {
            let ts = rows.timestamps[r];
            if ts >= a.start
                && ts <= a.end
                && let Some(t) = rows.tag(r)
            {
                *tag_counts.entry(t).or_default() += 1;
            }
        }
    }
    tag_counts
        .iter()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        .map(|(t, _)| (*t).to_owned())
}

/// The top five features and every family by share of the contributions at `row`,
/// largest first; those with no share are left out.
fn shares(att: &Attribution<'_>, row: usize) -> (Vec<Share>, Vec<Share>) {
    let c = (att.contributions)(row);
    let total: f64 = c.iter().map(|v| v.abs()).filter(|v| v.is_finite()).sum();
    let mut feats: Vec<Share> = att
        .features
        .iter()
        .zip(&c)
        .filter(|(_, v)| v.is_finite())
        .map(|(f, v)| Share {
            name: f.clone(),
            share: if total > 0.0 { v.abs() / total } else { 0.0 },
        })
        .collect();
    let mut fam: BTreeMap<&str, f64> = BTreeMap::new();
    for (f, s) in att.families.iter().zip(&feats) {
        *fam.entry(f.as_str()).or_default() += s.share;
    }
    feats.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name)));
    // Features that did not deviate at all explain nothing: not listed.
    feats.retain(|s| s.share > 0.0);
    feats.truncate(5);
    let mut fams: Vec<Share> = fam
        .into_iter()
        .map(|(name, share)| Share {
            name: name.to_owned(),
            share,
        })
        .collect();
    fams.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name)));
    fams.retain(|s| s.share > 0.0);
    (feats, fams)
}
