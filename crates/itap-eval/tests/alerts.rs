//! The alert tracker on hand-made rows whose right alerts are known, and the
//! threshold from a target of alerts per device-day.

use itap_eval::{
    Alert, AlertParams, AlertRow, AlertRule, AlertTracker, EvalParams, ParamGuard, ScoreSketch,
    ScoredRows, Severity, ThresholdRule, build_alerts,
};
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const S: i64 = 1_000_000; // one second in µs
const TH: f64 = 1.0;

fn sketch() -> ScoreSketch {
    // Uniform 0..1: the share at or above x is about 1 − x.
    ScoreSketch::from_scores(
        &(0..10_000)
            .map(|i| f64::from(i) / 10_000.0)
            .collect::<Vec<_>>(),
    )
}

/// Runs one device "D" through a tracker: `(seconds, score)` rows; returns the
/// alerts each push returned (with the second it came at) and those of finish.
fn run_at(params: AlertParams, rows: &[(i64, f64)]) -> (Vec<(i64, Alert)>, Vec<Alert>, u64) {
    let p = params.check().unwrap();
    let mut t = AlertTracker::new(&p, TH, &sketch(), &[], &[]);
    let mut pushed = Vec::new();
    for &(s, score) in rows {
        for a in t.push(AlertRow {
            device: "D",
            ts_us: s * S,
            score,
            contributions: None,
        }) {
            pushed.push((s, a));
        }
    }
    let suppressed = t.suppressed();
    (pushed, t.finish(), suppressed)
}

fn all(params: AlertParams, rows: &[(i64, f64)]) -> Vec<Alert> {
    let (pushed, rest, _) = run_at(params, rows);
    pushed.into_iter().map(|p| p.1).chain(rest).collect()
}

/// Rows every 10 s from 0 to `until` s, `hi` at the given seconds, 0.1 elsewhere.
fn series(until: i64, above: &[i64], hi: f64) -> Vec<(i64, f64)> {
    (0..=until / 10)
        .map(|i| i * 10)
        .map(|s| (s, if above.contains(&s) { hi } else { 0.1 }))
        .collect()
}

#[test]
fn opens_on_k_of_m_and_not_on_k_minus_1() {
    let p = || {
        AlertParams::default()
            .open(2, 30)
            .open(3, 6)
            .single_row_at(0.0)
    };
    assert!(all(p(), &series(600, &[100, 120], 2.0)).is_empty());
    let a = all(p(), &series(600, &[100, 120, 140], 2.0));
    assert_eq!(a.len(), 1);
    let a = &a[0];
    assert_eq!(
        (a.start_us, a.opened_us, a.end_us),
        (100 * S, 140 * S, 140 * S)
    );
    assert_eq!(a.rows, 3);
    assert_eq!(a.rule, "k_of_m 3/6");
    assert_eq!(a.id, "D@1970-01-01T00:01:40Z");
    // Three above rows spread over more than six rows do not open.
    assert!(all(p(), &series(600, &[100, 130, 160], 2.0)).is_empty());
    // NaN is never above.
    let mut rows = series(600, &[100, 120], 2.0);
    rows[14].1 = f64::NAN;
    assert!(all(p(), &rows).is_empty());
}

#[test]
fn quiet_close_and_hysteresis() {
    let p = AlertParams::default()
        .open(2, 30)
        .quiet_seconds(60.0)
        .merge_gap_seconds(0.0)
        .cooldown_seconds(0.0);
    let rows = series(600, &[0, 10, 20], 2.0);
    let (pushed, rest, _) = run_at(p.clone(), &rows);
    assert!(rest.is_empty());
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0].0, 90,
        "closed once more than 60 s passed since 20 s"
    );
    assert!(!pushed[0].1.open);
    assert_eq!(pushed[0].1.end_us, 20 * S);

    // Rows between half the threshold and the threshold keep it open, without
    // counting as its rows.
    let mut rows = rows;
    for r in rows.iter_mut().filter(|r| (30..=100).contains(&r.0)) {
        r.1 = 0.7;
    }
    let (pushed, _, _) = run_at(p.clone().close_fraction(0.5), &rows);
    assert_eq!(
        pushed[0].0, 170,
        "quiet counted from 100 s, the last row above 0.5"
    );
    assert_eq!((pushed[0].1.end_us, pushed[0].1.rows), (20 * S, 3));
    let (pushed, _, _) = run_at(p, &rows);
    assert_eq!(pushed[0].0, 90, "without hysteresis 0.7 is quiet");

    // Still open at the end: reported by finish with open = true.
    let (pushed, rest, _) = run_at(
        AlertParams::default().open(2, 30),
        &series(100, &[70, 80, 90], 2.0),
    );
    assert!(pushed.is_empty());
    assert!(rest[0].open);
}

#[test]
fn advance_closes_quiet_alerts() {
    let p = AlertParams::default()
        .open(2, 30)
        .quiet_seconds(60.0)
        .merge_gap_seconds(0.0)
        .check()
        .unwrap();
    let mut t = AlertTracker::new(&p, TH, &sketch(), &[], &[]);
    for s in [0, 10, 20] {
        t.push(AlertRow {
            device: "D",
            ts_us: s * S,
            score: 2.0,
            contributions: None,
        });
    }
    assert_eq!(t.open_alerts().len(), 1);
    assert!(t.open_alerts()[0].open);
    assert!(
        t.advance(80 * S).is_empty(),
        "60 s quiet is not more than 60 s"
    );
    let closed = t.advance(81 * S);
    assert_eq!(closed.len(), 1);
    assert!(!closed[0].open);
    assert!(t.open_alerts().is_empty() && t.finish().is_empty());
}

#[test]
fn merge_gap_joins_alerts() {
    let bursts = series(1200, &[0, 10, 20, 300, 310, 320], 2.0);
    let p = || {
        AlertParams::default()
            .open(2, 30)
            .quiet_seconds(30.0)
            .cooldown_seconds(0.0)
    };
    let merged = all(p().merge_gap_seconds(600.0), &bursts);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].rows, 6);
    assert_eq!(
        (merged[0].start_us, merged[0].end_us),
        (0, 320 * S),
        "one alert from the first burst to the second"
    );
    assert_eq!(merged[0].id, "D@1970-01-01T00:00:00Z");
    let split = all(p().merge_gap_seconds(200.0), &bursts);
    assert_eq!(split.len(), 2);
    assert_eq!(split[1].start_us, 300 * S);
}

#[test]
fn one_row_beyond_the_single_row_tail_opens_at_once() {
    // The sketch is uniform 0..1 (10,000 rows): 0.9995 has a tail of about
    // 10^-3.3, 2.0 lies far beyond every training score.
    let p = || {
        AlertParams::default()
            .open(2, 30)
            .open(3, 6)
            .single_row_at(4.0)
    };
    let a = all(p(), &series(600, &[100], 2.0));
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].rule, "single row at 4");
    assert_eq!((a[0].start_us, a[0].rows), (100 * S, 1));
    // Above the threshold, but not that extreme: no alert from one row.
    let mut tracker = AlertTracker::new(&p().check().unwrap(), 0.5, &sketch(), &[], &[]);
    for (s, score) in series(600, &[100], 0.9995) {
        assert!(
            tracker
                .push(AlertRow {
                    device: "D",
                    ts_us: s * S,
                    score,
                    contributions: None,
                })
                .is_empty()
        );
    }
    assert!(tracker.finish().is_empty());
    // Off: the same extreme row alone opens nothing.
    assert!(all(p().single_row_at(0.0), &series(600, &[100], 2.0)).is_empty());
    // Out of range is refused, naming the key.
    let e = p().single_row_at(0.5).check().unwrap_err().to_string();
    assert!(e.contains("single_row_at"), "{e}");
}

#[test]
fn cooldown_suppresses_separate_alerts() {
    let rows = series(1500, &[0, 10, 20, 300, 310, 320, 1000, 1010, 1020], 2.0);
    let p = AlertParams::default()
        .open(2, 30)
        .quiet_seconds(30.0)
        .merge_gap_seconds(0.0)
        .cooldown_seconds(900.0);
    let (pushed, rest, suppressed) = run_at(p.clone(), &rows);
    let alerts: Vec<Alert> = pushed.into_iter().map(|p| p.1).chain(rest).collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[0].end_us, 20 * S, "the second burst extends nothing");
    assert_eq!(
        alerts[1].start_us,
        1000 * S,
        "after the cooldown (ends 950 s)"
    );
    assert!(suppressed >= 1);
    let without = all(p.cooldown_seconds(0.0), &rows);
    assert_eq!(without.len(), 3);
}

#[test]
fn burst_and_duration_rules_open() {
    let rows = series(600, &[100, 120, 140], 2.0);
    let strict = || {
        AlertParams::default()
            .open(2, 30)
            .open(6, 6)
            .single_row_at(0.0)
    };
    assert!(all(strict(), &rows).is_empty());
    let burst = strict().rules(vec![AlertRule::Burst {
        rows: 3,
        within_minutes: 1.0,
    }]);
    let a = all(burst, &rows);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, "burst 3 in 1 min");
    assert_eq!(a[0].start_us, 100 * S);
    let slow = series(600, &[100, 140, 180], 2.0);
    let burst = strict().rules(vec![AlertRule::Burst {
        rows: 3,
        within_minutes: 1.0,
    }]);
    assert!(
        all(burst, &slow).is_empty(),
        "80 s apart is not within 1 min"
    );

    let run = series(600, &[100, 110, 120, 130], 2.0);
    let a = all(strict().min_duration_seconds(30.0), &run);
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].rule.as_str(), a[0].start_us),
        ("duration 30s", 100 * S)
    );
    assert!(all(strict().min_duration_seconds(40.0), &run).is_empty());
}

fn with_contrib(params: AlertParams, contrib: &[f64]) -> Alert {
    let p = params.check().unwrap();
    let features = ["temp_z".to_owned(), "vib_z".to_owned(), "amp_z".to_owned()];
    let families = [
        "Temperature".to_owned(),
        "Vibration".to_owned(),
        "Electrical".to_owned(),
    ];
    // Peak 0.9 of uniform 0..1 calibration scores: −log10 0.1 = 1, info.
    let mut t = AlertTracker::new(&p, 0.5, &sketch(), &features, &families);
    for s in [0, 10, 20] {
        t.push(AlertRow {
            device: "D",
            ts_us: s * S,
            score: 0.9,
            contributions: Some(contrib),
        });
    }
    t.finish().remove(0)
}

#[test]
fn families_labels_severity_and_routes() {
    let a = with_contrib(AlertParams::default().open(2, 30), &[3.0, -1.0, 0.0]);
    assert_eq!(a.family.as_deref(), Some("Temperature"));
    assert!((a.families[0].share - 0.75).abs() < 1e-12);
    assert_eq!(a.families.len(), 2, "no zero shares");
    assert_eq!(a.top_features[0].name, "temp_z");
    assert_eq!(a.route, "thermal", "default route rules");
    assert!(a.labels.is_empty());

    let rule = |share, severity| AlertRule::DominantFamily {
        family: "temperature".into(),
        share,
        label: None,
        severity,
    };
    let a = with_contrib(
        AlertParams::default()
            .open(2, 30)
            .rules(vec![rule(0.7, Some(Severity::Critical))]),
        &[3.0, 1.0, 0.0],
    );
    assert_eq!(a.labels, ["dominant_temperature"]);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(
        a.route, "operations",
        "given rules replace the default routes"
    );
    let a = with_contrib(
        AlertParams::default()
            .open(2, 30)
            .rules(vec![rule(0.8, Some(Severity::Critical))]),
        &[3.0, 1.0, 0.0],
    );
    assert!(a.labels.is_empty());
    assert_eq!(a.severity, Severity::Info);

    // Routes: the first match wins; else the default route.
    let routes = AlertParams::default()
        .open(2, 30)
        .default_route("ops")
        .rules(vec![
            AlertRule::route_family("Vibration", "maintenance"),
            AlertRule::route_family("Electrical", "electrical"),
            AlertRule::route_family("Electrical", "never"),
        ]);
    assert_eq!(
        with_contrib(routes.clone(), &[0.0, 0.0, 1.0]).route,
        "electrical"
    );
    assert_eq!(with_contrib(routes.clone(), &[1.0, 0.0, 0.0]).route, "ops");
    assert_eq!(with_contrib(routes, &[0.0, 0.0, 0.0]).family, None);
}

#[test]
fn severity_from_the_peaks_tail() {
    let levels = || AlertParams::default().open(2, 30).severity_levels(1.0, 3.0);
    let peak = |score: f64| {
        let p = levels().check().unwrap();
        let mut t = AlertTracker::new(&p, 0.4, &sketch(), &[], &[]);
        for s in [0, 10, 20] {
            t.push(AlertRow {
                device: "D",
                ts_us: s * S,
                score,
                contributions: None,
            });
        }
        t.finish().remove(0)
    };
    // Uniform 0..1 calibration: −log10(1 − 0.5) ≈ 0.3, −log10(0.05) ≈ 1.3.
    assert_eq!(peak(0.5).severity, Severity::Info);
    assert_eq!(peak(0.95).severity, Severity::Warning);
    let c = peak(5.0);
    assert_eq!(c.severity, Severity::Critical);
    assert!(c.peak_tail_log10 > 4.0, "extrapolated beyond the largest");
}

fn two_devices(order: &[(usize, i64)]) -> Vec<Alert> {
    let p = AlertParams::default()
        .open(2, 30)
        .quiet_seconds(60.0)
        .check()
        .unwrap();
    let mut t = AlertTracker::new(&p, TH, &sketch(), &[], &[]);
    let mut out = Vec::new();
    for &(d, s) in order {
        let score = match (d, s) {
            (0, 100..=150) | (0, 500..=520) | (1, 200..=240) => 2.0,
            _ => 0.1,
        };
        out.extend(t.push(AlertRow {
            device: ["A", "B"][d],
            ts_us: s * S,
            score,
            contributions: None,
        }));
    }
    out.extend(t.finish());
    out.sort_by(|a, b| a.start_us.cmp(&b.start_us).then(a.device.cmp(&b.device)));
    out
}

#[test]
fn ids_are_stable_and_independent_of_interleaving() {
    let times: Vec<i64> = (0..=100).map(|i| i * 10).collect();
    let ab: Vec<(usize, i64)> = times.iter().flat_map(|&s| [(0, s), (1, s)]).collect();
    let ba: Vec<(usize, i64)> = times.iter().flat_map(|&s| [(1, s), (0, s)]).collect();
    let serial: Vec<(usize, i64)> = [0, 1]
        .iter()
        .flat_map(|&d| times.iter().map(move |&s| (d, s)))
        .collect();
    let a = two_devices(&ab);
    assert_eq!(a.len(), 2, "A's two bursts merge; one of B");
    assert_eq!(a, two_devices(&ab), "re-run");
    assert_eq!(a, two_devices(&ba));
    assert_eq!(a, two_devices(&serial));
    let ids: Vec<&str> = a.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["A@1970-01-01T00:01:40Z", "B@1970-01-01T00:03:20Z"]);
}

/// Four devices, one row a minute for `days`, uniform noise scores.
struct Noise {
    ts: Vec<i64>,
    dev: Vec<u32>,
    names: Vec<String>,
    tags: Vec<String>,
    scores: Vec<f64>,
}

fn noise(seed: u64, days: f64) -> Noise {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = (days * 1440.0) as i64;
    let mut d = Noise {
        ts: Vec::new(),
        dev: Vec::new(),
        names: (0..4).map(|i| format!("dev{i}")).collect(),
        tags: vec![String::new()],
        scores: Vec::new(),
    };
    for i in 0..n {
        for dev in 0..4 {
            d.ts.push(i * 60 * S);
            d.dev.push(dev);
            d.scores.push(rng.random::<f64>());
        }
    }
    d
}

fn scored(d: &Noise) -> ScoredRows<'_> {
    ScoredRows {
        timestamps: &d.ts,
        device_codes: &d.dev,
        device_names: &d.names,
        states: None,
        tag_codes: None,
        tag_names: &d.tags,
        scores: &d.scores,
    }
}

#[test]
fn threshold_calibrated_meets_the_target_and_is_monotone() {
    let train = noise(1, 2.0);
    let sketch = ScoreSketch::from_scores(&train.scores);
    let cal = noise(2, 1.0);
    let rows = scored(&cal);
    let select = vec![true; cal.ts.len()];
    let alerts = AlertParams::default()
        .open(2, 30)
        .quiet_seconds(120.0)
        .merge_gap_seconds(120.0)
        .cooldown_seconds(0.0)
        .check()
        .unwrap();
    let days = 4.0 * (cal.ts.last().unwrap() - cal.ts[0]) as f64 / 86_400e6;
    let mut last = f64::NEG_INFINITY;
    for target in [20.0, 5.0, 1.0] {
        let eval = EvalParams::default()
            .target_false_alerts_per_device_day(Some(target))
            .check()
            .unwrap();
        let t = eval
            .threshold_calibrated(&sketch, &rows, &select, &alerts)
            .unwrap();
        assert_eq!(t.rule, ThresholdRule::TargetFalseAlerts(target));
        let n = build_alerts(&rows, &select, t.value, &sketch, &alerts, None).len() as f64;
        assert!(
            n <= target * days,
            "{n} alerts at {} > {target}/day",
            t.value
        );
        // The entry just below does not meet it: the lowest that does.
        let i = sketch.scores.iter().position(|&s| s == t.value).unwrap();
        assert!(i > 0);
        let below = build_alerts(&rows, &select, sketch.scores[i - 1], &sketch, &alerts, None);
        assert!(below.len() as f64 > target * days);
        assert!(t.value >= last, "a lower target never lowers the threshold");
        last = t.value;
        // The other rules are the sketch's quantiles.
        assert!(eval.threshold(&sketch).is_err(), "needs calibration rows");
    }
    let q = EvalParams::default().check().unwrap();
    assert_eq!(
        q.threshold_calibrated(&sketch, &rows, &select, &alerts)
            .unwrap(),
        q.threshold(&sketch).unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn alerts_never_overlap_and_hold_their_peak(
        seed in 0u64..1000,
        k in 1u32..4,
        extra in 0u32..4,
        quiet in 0.0f64..200.0,
        merge in 0.0f64..400.0,
        cooldown in 0.0f64..400.0,
        fraction in 0.5f64..1.0,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p = AlertParams::default().open(2, 30)
            .open(k, k + extra)
            .quiet_seconds(quiet)
            .merge_gap_seconds(merge)
            .cooldown_seconds(cooldown)
            .close_fraction(fraction)
            .min_duration_seconds(if seed % 2 == 0 { 30.0 } else { 0.0 })
            .rules(vec![AlertRule::Burst { rows: 2, within_minutes: 0.5 }])
            .check()
            .unwrap();
        let mut t = AlertTracker::new(&p, TH, &sketch(), &[], &[]);
        let mut alerts = Vec::new();
        for i in 0..400i64 {
            for d in ["a", "b", "c"] {
                if rng.random::<f64>() < 0.2 {
                    continue; // uneven sampling
                }
                let score = if rng.random::<f64>() < 0.3 { 1.5 } else { 0.5 };
                alerts.extend(t.push(AlertRow { device: d, ts_us: i * 10 * S, score, contributions: None }));
            }
            if i % 50 == 0 {
                alerts.extend(t.advance(i * 10 * S));
            }
        }
        alerts.extend(t.finish());
        alerts.sort_by(|a, b| a.device.cmp(&b.device).then(a.start_us.cmp(&b.start_us)));
        for a in &alerts {
            prop_assert!(a.rows >= 1);
            prop_assert!(a.start_us <= a.peak_us && a.peak_us <= a.end_us, "{a:?}");
            prop_assert!(a.start_us <= a.opened_us);
        }
        for w in alerts.windows(2) {
            if w[0].device == w[1].device {
                prop_assert!(w[0].end_us < w[1].start_us, "{:?} overlaps {:?}", w[0], w[1]);
                prop_assert!(w[0].id != w[1].id);
            }
        }
    }
}
