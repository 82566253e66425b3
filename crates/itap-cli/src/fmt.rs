//! Number formatting shared by the commands' summaries.

/// A count with thousands separators: `864000` → `864,000`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// An optional metric, three decimals, or `–`.
pub(crate) fn metric(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.3}"))
}

/// Where a threshold came from, in words.
pub(crate) fn threshold_rule(t: &itap::eval::Threshold) -> String {
    use itap::eval::ThresholdRule::*;
    match t.rule {
        TrainingQuantile(q) => format!("{q} quantile of the held-back training scores"),
        TargetAlertRate(r) => format!("{r} of the held-back training rows above it"),
        TargetFalseAlerts(n) => {
            format!("at most {n} alerts per device-day on the held-back training rows")
        }
    }
}

/// The alerts by severity and route, and the fleet's busiest devices.
pub(crate) fn print_alerts(alerts: &[itap::eval::Alert], ev: &itap::eval::Evaluation) {
    use std::collections::BTreeMap;
    let mut by_sev: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_route: BTreeMap<&str, u64> = BTreeMap::new();
    for a in alerts {
        *by_sev.entry(a.severity.as_str()).or_default() += 1;
        *by_route.entry(a.route.as_str()).or_default() += 1;
    }
    let join = |m: &BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "alerts: {} on {} of {} devices ({}); routed: {}",
        alerts.len(),
        ev.fleet.iter().filter(|d| d.alerts > 0).count(),
        ev.fleet.len(),
        if alerts.is_empty() {
            "none".to_owned()
        } else {
            join(&by_sev)
        },
        if alerts.is_empty() {
            "–".to_owned()
        } else {
            join(&by_route)
        },
    );
}

/// Alert-level figures: precision, event recall, delays, false alerts.
pub(crate) fn print_alert_metrics(ev: &itap::eval::Evaluation) {
    let e = &ev.events;
    let secs = |v: Option<f64>| v.map_or("–".to_owned(), |s| format!("{:.0} s", s));
    println!(
        "alert precision {}  event recall {:.3} ({} of {} events)  delay median {} p90 {}  false alerts per device-day {:.2} ({} of {} alerts)",
        metric(e.alert_precision),
        e.event_recall,
        e.detected,
        e.events,
        secs(e.delay_median_s),
        secs(e.delay_p90_s),
        e.false_alerts_per_device_day,
        e.false_alerts,
        e.alerts
    );
    for f in &ev.per_fault {
        println!(
            "  {:<16} event recall {:.3}  delay median {} p90 {}  row recall {:.3}",
            f.tag,
            f.event_recall,
            secs(f.delay_median_s),
            secs(f.delay_p90_s),
            f.recall
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(864_000), "864,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
