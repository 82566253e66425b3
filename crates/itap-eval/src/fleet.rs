//! The fleet summary (alerts per device) and the alerts listed first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert_params::Severity;
use crate::evaluate::{ScoredRows, Share};
use crate::metrics::quantile;
use crate::tracker::Alert;

/// One device's alerts, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAlerts {
    /// Device id.
    pub device: String,
    /// Alerts of this device.
    pub alerts: u64,
    /// Of those, severity info.
    pub info: u64,
    /// Of those, severity warning.
    pub warning: u64,
    /// Of those, severity critical.
    pub critical: u64,
    /// 95th percentile of the alerts' `peak_tail_log10`; none without alerts.
    pub severity_p95: Option<f64>,
    /// Each dominant family's share of the device's alerts, largest first (ties
    /// by name); alerts without a family count in no entry.
    pub dominant_families: Vec<Share>,
}

/// One summary per evaluated device (those with no alert too), by device id.
pub(crate) fn fleet(
    rows: &ScoredRows<'_>,
    by_device: &BTreeMap<u32, Vec<usize>>,
    alerts: &[Alert],
) -> Vec<DeviceAlerts> {
    let mut names: Vec<&str> = by_device
        .keys()
        .map(|&d| rows.device_names[d as usize].as_str())
        .collect();
    names.sort_unstable();
    // Each device's alerts, in their order, gathered once (not a scan of every
    // alert per device).
    let mut of_device: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in alerts {
        of_device.entry(a.device.as_str()).or_default().push(a);
    }
    names
        .into_iter()
        .map(|name| {
            let mine = of_device.remove(name).unwrap_or_default();
            let count = |s: Severity| mine.iter().filter(|a| a.severity == s).count() as u64;
            let tails: Vec<f64> = mine.iter().map(|a| a.peak_tail_log10).collect();
            let mut fam: BTreeMap<&str, u64> = BTreeMap::new();
            for a in &mine {
                if let Some(f) = &a.family {
                    *fam.entry(f.as_str()).or_default() += 1;
                }
            }
            let mut dominant_families: Vec<Share> = fam
                .into_iter()
                .map(|(f, n)| Share {
                    name: f.to_owned(),
                    share: n as f64 / mine.len() as f64,
                })
                .collect();
            dominant_families.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.name.cmp(&b.name)));
            DeviceAlerts {
                device: name.to_owned(),
                alerts: mine.len() as u64,
                info: count(Severity::Info),
                warning: count(Severity::Warning),
                critical: count(Severity::Critical),
                severity_p95: quantile(&tails, 0.95),
                dominant_families,
            }
        })
        .collect()
}

/// The `top_n` alerts with the highest peak score (ties: the earlier start, then
/// the device).
pub(crate) fn top_alerts(alerts: &[Alert], top_n: usize) -> Vec<Alert> {
    let mut ranked: Vec<&Alert> = alerts.iter().collect();
    ranked.sort_by(|a, b| {
        b.peak_score
            .total_cmp(&a.peak_score)
            .then(a.start_us.cmp(&b.start_us))
            .then(a.device.cmp(&b.device))
    });
    ranked.into_iter().take(top_n).cloned().collect()
}
