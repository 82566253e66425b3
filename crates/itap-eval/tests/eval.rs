//! Evaluation on hand-made data whose right answers are known.

use itap_eval::ParamGuard;
use itap_eval::{
    AlertParams, EvalContext, EvalParams, InputDigest, METRICS_FORMAT_VERSION, MetricsFile,
    ScoreSketch, ScoredRows, Severity, ThresholdRule, evaluate_with, report_html, scores_csv,
    threshold_from_training, write_scores_csv,
};
use itap_telemetry::State;

/// `itap_eval::evaluate` with alerts opening on 2 of 30 rows: the hand-made series
/// here have a few rows above the threshold, fewer than the default `open_k`.
fn evaluate(
    rows: &ScoredRows<'_>,
    split: &itap_eval::Split,
    threshold: itap_eval::Threshold,
    params: &itap_eval::CheckedEval,
    attribution: Option<&itap_eval::Attribution<'_>>,
) -> itap_eval::Result<itap_eval::Evaluation> {
    let train: Vec<f64> = (0..rows.timestamps.len())
        .filter(|&r| split.is_train(rows.timestamps[r]))
        .map(|r| rows.scores[r])
        .collect();
    let sketch = ScoreSketch::from_scores(&train);
    let alerts = AlertParams::default().open(2, 30).check()?;
    Ok(evaluate_with(
        rows,
        &EvalContext {
            split,
            threshold,
            params,
            alerts: &alerts,
            calibration: &sketch,
            attribution,
        },
    )?
    .evaluation)
}

const S: i64 = 1_000_000; // one second in µs

/// Two devices sampled every 10 s for 1000 s. Device A has an `overheat` event at
/// 800–850 s and a `spike` at 900 s; device B a `dropout` at 750–760 s.
struct Data {
    ts: Vec<i64>,
    dev: Vec<u32>,
    devices: Vec<String>,
    states: Vec<State>,
    tags: Vec<u32>,
    tag_names: Vec<String>,
}

fn data() -> Data {
    let mut d = Data {
        ts: Vec::new(),
        dev: Vec::new(),
        devices: vec!["A".into(), "B".into()],
        states: Vec::new(),
        tags: Vec::new(),
        tag_names: vec![
            "".into(),
            "overheat".into(),
            "spike".into(),
            "dropout".into(),
        ],
    };
    for i in 0..=100 {
        let t = i * 10;
        for dev in 0..2u32 {
            d.ts.push(t * S);
            d.dev.push(dev);
            d.states.push(if dev == 1 && t == 990 {
                State::Maint
            } else {
                State::Run
            });
            let tag = match (dev, t) {
                (0, 800..=850) => 1,
                (0, 900) => 2,
                (1, 750..=760) => 3,
                _ => 0,
            };
            d.tags.push(tag);
        }
    }
    d
}

fn rows<'a>(d: &'a Data, scores: &'a [f64]) -> ScoredRows<'a> {
    ScoredRows {
        timestamps: &d.ts,
        device_codes: &d.dev,
        device_names: &d.devices,
        states: Some(&d.states),
        tag_codes: Some(&d.tags),
        tag_names: &d.tag_names,
        scores,
    }
}

/// Scores: 0.1 everywhere, 0.9 on the overheat rows from 820 s on (a 20 s delay),
/// 0.9 on three normal rows of B at 950–970 s (an alert), nothing on spike or
/// dropout.
fn scores(d: &Data) -> Vec<f64> {
    (0..d.ts.len())
        .map(|r| {
            let t = d.ts[r] / S;
            match (d.dev[r], t) {
                (0, 820..=850) => 0.9,
                (1, 950..=970) => 0.9,
                _ => 0.1,
            }
        })
        .collect()
}

#[test]
fn per_fault_recall_events_delays_and_false_alerts() {
    let d = data();
    let s = scores(&d);
    let params = EvalParams {
        grace_seconds: 60.0,
        ..EvalParams::default()
    }
    .check()
    .unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    assert_eq!(split.cut_us, 700 * S);
    let train: Vec<f64> = (0..d.ts.len())
        .filter(|&r| split.is_train(d.ts[r]))
        .map(|r| s[r])
        .collect();
    let th = threshold_from_training(&train, params.rule()).unwrap();
    assert!(th.value < 0.5, "training scores are all low");
    let ev = evaluate(&rows(&d, &s), &split, th, &params, None).unwrap();

    // 700..=1000 s: 31 samples × 2 devices, minus B's MAINT row at 990 s.
    assert_eq!(ev.rows_evaluated, 61);
    assert_eq!(ev.rows_faulty, 6 + 1 + 2);
    let by = |t: &str| ev.per_fault.iter().find(|f| f.tag == t).unwrap().clone();
    let oh = by("overheat");
    assert_eq!(
        (oh.rows, oh.flagged),
        (6, 4),
        "820..850 flagged of 800..850"
    );
    assert_eq!((oh.events, oh.detected), (1, 1));
    assert_eq!(oh.delay_median_s, Some(20.0));
    assert_eq!(by("spike").recall, 0.0);
    assert_eq!(by("dropout").event_recall, 0.0);
    let e = &ev.events;
    assert_eq!(e.events, 3);
    assert_eq!(e.detected, 1);
    assert_eq!((e.alerts, e.true_alerts, e.false_alerts), (2, 1, 1));
    assert_eq!(e.alert_precision, Some(0.5), "B at 950 s overlaps no event");
    assert_eq!(e.delay_median_s, Some(20.0));
    // Two devices, 700–1000 s each.
    let days = 600.0 / 86_400.0;
    assert!((e.device_days - days).abs() < 1e-12);
    assert!((e.alerts_per_device_day - 2.0 / days).abs() < 1e-9);
    assert!((e.false_alerts_per_device_day - 1.0 / days).abs() < 1e-9);
    assert_eq!(ev.at_threshold.confusion.tp, 4);
    assert_eq!(ev.at_threshold.confusion.fp, 3);
    assert_eq!(ev.per_state.len(), 1, "MAINT is not evaluated");
    assert_eq!(ev.top_alerts[0].fault.as_deref(), Some("overheat"));
    assert_eq!(ev.top_alerts[0].device, "A");
    assert_eq!(ev.fleet.len(), 2);
    assert_eq!(ev.fleet[0].device, "A");
    assert_eq!(ev.fleet[0].alerts, 1);

    // With the default 300 s grace, B's alert at 950 s comes within the grace period
    // of B's dropout (750 s) and detects it, 200 s late; it is no longer false.
    let params = EvalParams::default().check().unwrap();
    let ev = evaluate(&rows(&d, &s), &split, th, &params, None).unwrap();
    assert_eq!(by_tag(&ev, "dropout").detected, 1);
    assert_eq!(by_tag(&ev, "dropout").delay_median_s, Some(200.0));
    assert_eq!(ev.events.false_alerts, 0);
    assert_eq!(ev.events.alert_precision, Some(1.0));
    assert_eq!(
        ev.events.detected, 2,
        "the spike at 900 s is after A's alert ended"
    );
}

#[test]
fn an_alert_open_at_the_events_start_detects_it_with_no_delay() {
    let d = data();
    // A's alert runs from 820 s through the spike at 900 s.
    let s: Vec<f64> = (0..d.ts.len())
        .map(|r| match (d.dev[r], d.ts[r] / S) {
            (0, 820..=910) => 0.9,
            _ => 0.1,
        })
        .collect();
    let params = EvalParams::default().check().unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    let th = threshold_from_training(&[0.1, 0.2], params.rule()).unwrap();
    let alerts = AlertParams::default().open(2, 30).check().unwrap();
    let sketch = ScoreSketch::from_scores(&[0.1, 0.2]);
    let ctx = EvalContext {
        split: &split,
        threshold: th,
        params: &params,
        alerts: &alerts,
        calibration: &sketch,
        attribution: None,
    };
    let out = evaluate_with(&rows(&d, &s), &ctx).unwrap();
    assert_eq!(out.alerts.len(), 1);
    let a = &out.alerts[0];
    assert_eq!(
        a.fault.as_deref(),
        Some("overheat"),
        "overlaps overheat longest"
    );
    assert!(a.open, "still open at the last row");
    assert_eq!(by_tag(&out.evaluation, "spike").delay_median_s, Some(0.0));
    assert_eq!(
        by_tag(&out.evaluation, "overheat").delay_median_s,
        Some(20.0)
    );
    assert_eq!(out.evaluation.events.alert_precision, Some(1.0));
    assert_eq!(out.evaluation.top_alerts[0], *a);
    // Two calibration scores: the largest is a 1-in-2 tail, the peak beyond it.
    assert!(a.peak_tail_log10 > 2f64.log10());
    assert_eq!(a.severity, Severity::Info);
}

fn by_tag(ev: &itap_eval::Evaluation, tag: &str) -> itap_eval::FaultMetrics {
    ev.per_fault.iter().find(|f| f.tag == tag).unwrap().clone()
}

#[test]
fn per_fault_recall_uses_each_rows_own_score() {
    // Shift the scores by one row (the seed's misalignment bug): the overheat rows'
    // recall must change, proving rows and scores are paired, not re-ordered.
    let d = data();
    let s = scores(&d);
    let mut shifted = s.clone();
    shifted.rotate_right(2); // each row gets the score of the same device's previous sample
    let params = EvalParams::default().check().unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    let th = threshold_from_training(&[0.1, 0.2], params.rule()).unwrap();
    let a = evaluate(&rows(&d, &s), &split, th, &params, None).unwrap();
    let b = evaluate(&rows(&d, &shifted), &split, th, &params, None).unwrap();
    let rec = |e: &itap_eval::Evaluation| {
        e.per_fault
            .iter()
            .find(|f| f.tag == "overheat")
            .unwrap()
            .flagged
    };
    assert_eq!(rec(&a), 4);
    assert_eq!(
        rec(&b),
        3,
        "820..850 shifted by 10 s is 830..860: 830, 840, 850 in the event"
    );
    assert_ne!(
        a.at_threshold.confusion, b.at_threshold.confusion,
        "a shift moves a flagged row out of the event"
    );
}

/// (Whether test labels can move the threshold is tested through the whole
/// pipeline, in the root package's tests/run.rs.)
#[test]
fn a_target_alert_rate_reads_training_scores_only() {
    let d = data();
    let s = scores(&d);
    let params = EvalParams::default().check().unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    let train: Vec<f64> = (0..d.ts.len())
        .filter(|&r| split.is_train(d.ts[r]))
        .map(|r| s[r] + (r % 7) as f64 * 0.01)
        .collect();
    let r = threshold_from_training(&train, ThresholdRule::TargetAlertRate(0.5)).unwrap();
    let median = itap_eval::quantile(&train, 0.5).unwrap();
    assert_eq!(r.value, median);
}

#[test]
fn unlabelled_and_stateless_data_still_evaluates() {
    let d = data();
    let s = scores(&d);
    let mut r = rows(&d, &s);
    r.states = None;
    r.tag_codes = None;
    let params = EvalParams::default().check().unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    let th = threshold_from_training(&[0.1], params.rule()).unwrap();
    let ev = evaluate(&r, &split, th, &params, None).unwrap();
    assert_eq!(ev.rows_evaluated, 62);
    assert_eq!(ev.eval_states, ["all"]);
    assert!(!ev.labelled && ev.roc_auc.is_none() && ev.per_fault.is_empty());
    assert_eq!(ev.events.alerts, 2);
    assert_eq!(ev.events.alert_precision, None, "no labels, no precision");
}

#[test]
fn attribution_shares_and_artifacts() {
    let d = data();
    let s = scores(&d);
    let params = EvalParams::default().check().unwrap();
    let split = params.split(0, 1000 * S).unwrap();
    let th = threshold_from_training(&[0.1, 0.2], params.rule()).unwrap();
    let features = vec![
        "temp__z".to_owned(),
        "vib__z".to_owned(),
        "temp__delta".to_owned(),
    ];
    let families = vec![
        "Temperature".to_owned(),
        "Vibration".to_owned(),
        "Temperature".to_owned(),
    ];
    let contrib = |_r: usize| vec![3.0, -1.0, 0.0];
    let att = itap_eval::Attribution {
        method: "share of scaled deviation".into(),
        features: &features,
        families: &families,
        contributions: &contrib,
    };
    let mut names = d.devices.clone();
    names[1] = "<B&>".into();
    let mut r = rows(&d, &s);
    r.device_names = &names;
    let alert_params = AlertParams::default().open(2, 30).check().unwrap();
    let sketch = ScoreSketch::from_scores(&[0.1, 0.2]);
    let ctx = EvalContext {
        split: &split,
        threshold: th,
        params: &params,
        alerts: &alert_params,
        calibration: &sketch,
        attribution: Some(&att),
    };
    let out = evaluate_with(&r, &ctx).unwrap();
    let (ev, alerts) = (out.evaluation, out.alerts);
    let top = &ev.top_alerts[0];
    assert_eq!(top.top_features[0].name, "temp__z");
    assert!((top.top_features[0].share - 0.75).abs() < 1e-12);
    assert_eq!(top.families[0].name, "Temperature");
    assert_eq!(top.family.as_deref(), Some("Temperature"));
    assert_eq!(top.route, "thermal");

    let csv = scores_csv(&r, th.value);
    assert_eq!(csv.lines().count(), d.ts.len() + 1);
    assert!(csv.starts_with("timestamp,device_id,state,score,flagged,anomaly_tag\n"));
    assert!(
        csv.contains("1970-01-01T00:13:40Z,A,RUN,0.9,1,overheat\n") && csv.contains("<B&>"),
        "{}",
        &csv[..400]
    );

    let m = MetricsFile {
        format_version: METRICS_FORMAT_VERSION,
        input: InputDigest {
            path: "hand-made".into(),
            sha256: None,
        },
        config: serde_json::json!({"eval": {"train_fraction": 0.7}}),
        detector: "stand-in".into(),
        evaluation: ev,
    };
    let html = report_html("ITAP report", &m, &r, &alerts, 6).unwrap();
    assert!(html.contains("<h2>Alerts</h2>") && html.contains("<h2>Fleet</h2>"));
    assert!(html.contains("A@1970-01-01T00:13:40Z"), "the alert's id");
    assert!(html.contains("&lt;B&amp;&gt;@1970-01-01T00:15:50Z"));
    assert!(!html.contains("<B&>"), "names are escaped");
    assert!(html.contains(">thermal<") && html.contains(">overheat<"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        2 + 2 + 3 + 1,
        "2 timelines, ROC, PR, 3 bars, sweep"
    );
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing loaded from the network"
    );
    assert!(!html.contains("<script"), "self-contained, no scripts");
    let json = serde_json::to_string(&m).unwrap();
    let back: MetricsFile = serde_json::from_str(&json).unwrap();
    assert_eq!(back.evaluation.events.events, 3);
}

/// scores.csv written block by block on several threads is the text `scores_csv`
/// makes, whatever the thread count, and a path that cannot be written is an
/// error naming it.
#[test]
fn scores_file_streamed_in_blocks_equals_the_text() {
    // More rows than one block (65,536), not a multiple of it.
    let n = 150_001;
    let devices: Vec<String> = vec!["A".into(), "B,\"C\"".into()];
    let ts: Vec<i64> = (0..n as i64).map(|i| (i / 2) * 10 * S).collect();
    let dev: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let states: Vec<State> = (0..n)
        .map(|i| if i % 7 == 0 { State::Idle } else { State::Run })
        .collect();
    let tags: Vec<u32> = (0..n as u32).map(|i| u32::from(i % 1000 == 0)).collect();
    let tag_names: Vec<String> = vec!["".into(), "overheat".into()];
    let scores: Vec<f64> = (0..n)
        .map(|i| {
            if i % 5000 == 0 {
                f64::NAN
            } else {
                (i as f64 * 0.37).sin()
            }
        })
        .collect();
    let r = ScoredRows {
        timestamps: &ts,
        device_codes: &dev,
        device_names: &devices,
        states: Some(&states),
        tag_codes: Some(&tags),
        tag_names: &tag_names,
        scores: &scores,
    };
    let want = scores_csv(&r, 0.5);
    assert_eq!(want.lines().count(), n + 1);
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 2, 5] {
        let path = dir.path().join(format!("scores{threads}.csv"));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| write_scores_csv(&r, 0.5, &path))
            .unwrap();
        let got = std::fs::read_to_string(&path).unwrap();
        assert!(
            got == want,
            "{threads} threads: the file differs from the text"
        );
    }
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "x").unwrap();
    let e = write_scores_csv(&r, 0.5, &blocked.join("scores.csv")).unwrap_err();
    assert!(e.to_string().contains("a-file"), "{e}");
}
