//! An evaluation built a group of devices at a time is the evaluation of the
//! whole: every figure, every alert, the report page, the scores' lines.

use itap_eval::ParamGuard;
use itap_eval::{
    AlertParams, Attribution, EvalContext, EvalParams, EvaluationParts, InputDigest,
    METRICS_FORMAT_VERSION, MetricsFile, ScoreSketch, ScoredRows, ScoresCsv, Split, Threshold,
    ThresholdRule, Timelines, evaluate_with, report_html, report_page, scores_csv,
};
use itap_telemetry::State;

const MIN: i64 = 60_000_000;

/// A small generator (SplitMix64): the same fleet on every run.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Rows with their own device and tag dictionaries.
struct Rows {
    ts: Vec<i64>,
    dev: Vec<u32>,
    devices: Vec<String>,
    states: Vec<State>,
    tags: Vec<u32>,
    tag_names: Vec<String>,
    scores: Vec<f64>,
}

impl Rows {
    fn scored(&self) -> ScoredRows<'_> {
        ScoredRows {
            timestamps: &self.ts,
            device_codes: &self.dev,
            device_names: &self.devices,
            states: Some(&self.states),
            tag_codes: Some(&self.tags),
            tag_names: &self.tag_names,
            scores: &self.scores,
        }
    }

    /// The rows of `devices`, in time order, with the devices and the tags
    /// coded in the opposite order (other codes than the whole's).
    fn part(&self, devices: &[&str]) -> Rows {
        let names: Vec<String> = devices.iter().rev().map(|d| (*d).to_owned()).collect();
        let tag_names: Vec<String> = std::iter::once(String::new())
            .chain(self.tag_names[1..].iter().rev().cloned())
            .collect();
        let mut out = Rows {
            ts: Vec::new(),
            dev: Vec::new(),
            devices: names.clone(),
            states: Vec::new(),
            tags: Vec::new(),
            tag_names: tag_names.clone(),
            scores: Vec::new(),
        };
        for r in 0..self.ts.len() {
            let name = &self.devices[self.dev[r] as usize];
            let Some(d) = names.iter().position(|n| n == name) else {
                continue;
            };
            let tag = &self.tag_names[self.tags[r] as usize];
            out.ts.push(self.ts[r]);
            out.dev.push(d as u32);
            out.states.push(self.states[r]);
            out.tags
                .push(tag_names.iter().position(|t| t == tag).unwrap() as u32);
            out.scores.push(self.scores[r]);
        }
        out
    }
}

/// 9 devices × 400 minutes: runs of three fault kinds (scoring high most of the
/// time), a MAINT stretch, scores with ties (rounded to 0.05) and NaN.
fn fleet() -> Rows {
    let mut mix = Mix(11);
    let devices: Vec<String> = (0..9).map(|d| format!("M-{d:02}")).collect();
    let tag_names: Vec<String> = ["", "bearing", "overheat", "leak"]
        .map(str::to_owned)
        .to_vec();
    let mut rows = Rows {
        ts: Vec::new(),
        dev: Vec::new(),
        devices,
        states: Vec::new(),
        tags: Vec::new(),
        tag_names,
        scores: Vec::new(),
    };
    let mut fault = [0u32; 9];
    for i in 0..400i64 {
        for d in 0..9u32 {
            let f = &mut fault[d as usize];
            if *f == 0 && mix.below(60) == 0 {
                *f = 1 + mix.below(3) as u32;
            } else if *f != 0 && mix.below(8) == 0 {
                *f = 0;
            }
            let state = if (150..170).contains(&i) && d % 3 == 0 {
                State::Maint
            } else if mix.below(10) == 0 {
                State::Idle
            } else {
                State::Run
            };
            let base = (mix.below(20) as f64) * 0.05;
            let score = match (*f, mix.below(50)) {
                (_, 0) => f64::NAN,
                (0, _) => base,
                (_, k) if k < 40 => 1.0 + base,
                _ => base,
            };
            rows.ts.push(i * MIN);
            rows.dev.push(d);
            rows.states.push(state);
            rows.tags.push(*f);
            rows.scores.push(score);
        }
    }
    rows
}

/// Training before minute 120 of the 400.
fn split() -> Split {
    Split {
        first_us: 0,
        cut_us: 120 * MIN,
        last_us: 399 * MIN,
        fraction: None,
    }
}

/// Each row's contributions, from its device, time and score only.
fn contributions(rows: &Rows, r: usize) -> Vec<f64> {
    let d = rows.devices[rows.dev[r] as usize].as_bytes()[3] as f64;
    let t = (rows.ts[r] / MIN) as f64;
    vec![rows.scores[r] * (d % 3.0), (t % 7.0) * 0.1, 0.25]
}

#[test]
fn a_fleet_evaluated_a_group_of_devices_at_a_time_is_evaluated_as_a_whole() {
    let whole = fleet();
    let params = EvalParams::default().check().unwrap();
    let split = split();
    let train: Vec<f64> = (0..whole.ts.len())
        .filter(|&r| split.is_train(whole.ts[r]))
        .map(|r| whole.scores[r])
        .collect();
    let sketch = ScoreSketch::from_scores(&train);
    let alerts = AlertParams::default().open(2, 5).check().unwrap();
    let threshold = Threshold {
        value: 0.8,
        rule: ThresholdRule::TrainingQuantile(0.99),
        training_rows: train.len() as u64,
    };
    let features = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let families = ["F".to_owned(), "G".to_owned(), "G".to_owned()];
    let evaluate = |rows: &Rows, parts: Option<&mut EvaluationParts>| {
        let contributions = |r: usize| contributions(rows, r);
        let att = Attribution {
            method: "test".to_owned(),
            features: &features,
            families: &families,
            contributions: &contributions,
        };
        let ctx = EvalContext {
            split: &split,
            threshold,
            params: &params,
            alerts: &alerts,
            calibration: &sketch,
            attribution: Some(&att),
        };
        match parts {
            Some(p) => {
                p.add(&rows.scored(), &ctx).unwrap();
                None
            }
            None => Some(evaluate_with(&rows.scored(), &ctx).unwrap()),
        }
    };
    let expected = evaluate(&whole, None).unwrap();
    let ev = &expected.evaluation;
    // The fleet exercises what is compared.
    assert!(
        ev.events.events > 20 && ev.events.detected > 0,
        "{:?}",
        ev.events
    );
    assert!(ev.events.false_alerts > 0 && expected.alerts.len() > 20);
    assert_eq!(ev.per_device.len(), 9);
    assert_eq!(ev.per_fault.len(), 3);
    assert_eq!(ev.per_state.len(), 2, "RUN and IDLE evaluated");
    assert!(ev.roc_auc.is_some_and(|a| a > 0.6 && a < 1.0));

    let metrics = |evaluation| MetricsFile {
        format_version: METRICS_FORMAT_VERSION,
        input: InputDigest {
            path: "fleet".into(),
            sha256: None,
        },
        config: serde_json::json!({}),
        detector: "test".into(),
        evaluation,
    };
    let page = report_html(
        "r",
        &metrics(ev.clone()),
        &whole.scored(),
        &expected.alerts,
        4,
    )
    .unwrap();
    let mut whole_lines: Vec<String> = scores_csv(&whole.scored(), threshold.value)
        .lines()
        .map(str::to_owned)
        .collect();
    whole_lines.sort();

    let dir = tempfile::tempdir().unwrap();
    for groups in [
        vec![
            vec!["M-04"],
            vec!["M-00", "M-08", "M-02"],
            vec!["M-01", "M-03", "M-05", "M-06", "M-07"],
        ],
        (0..9)
            .rev()
            .map(|d| {
                vec![
                    [
                        "M-00", "M-01", "M-02", "M-03", "M-04", "M-05", "M-06", "M-07", "M-08",
                    ][d],
                ]
            })
            .collect(),
    ] {
        let mut parts = EvaluationParts::new();
        let mut timelines = Timelines::new(split.cut_us, 4);
        let path = dir.path().join("scores.csv");
        let mut csv = ScoresCsv::create(&path).unwrap();
        for g in &groups {
            let part = whole.part(g);
            evaluate(&part, Some(&mut parts));
            timelines.offer(&part.scored());
            csv.append(&part.scored(), threshold.value).unwrap();
        }
        assert_eq!(parts.rows_evaluated(), ev.rows_evaluated);
        // The end needs no contributions: the alerts were made per group.
        let end = EvalContext {
            split: &split,
            threshold,
            params: &params,
            alerts: &alerts,
            calibration: &sketch,
            attribution: None,
        };
        let got = parts.finish(&end).unwrap();
        assert_eq!(got, expected, "groups {groups:?}");
        let got_page = report_page("r", &metrics(got.evaluation), &timelines, &got.alerts).unwrap();
        assert!(
            got_page == page,
            "the report page differs for groups {groups:?}"
        );
        csv.finish().unwrap().commit().unwrap();
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(lines, whole_lines);
    }
}

#[test]
fn a_device_in_two_parts_is_refused() {
    let whole = fleet();
    let params = EvalParams::default().check().unwrap();
    let split = split();
    let sketch = ScoreSketch::from_scores(&[0.1, 0.2]);
    let alerts = AlertParams::default().check().unwrap();
    let ctx = EvalContext {
        split: &split,
        threshold: Threshold {
            value: 0.8,
            rule: ThresholdRule::TrainingQuantile(0.99),
            training_rows: 2,
        },
        params: &params,
        alerts: &alerts,
        calibration: &sketch,
        attribution: None,
    };
    let mut parts = EvaluationParts::new();
    parts
        .add(&whole.part(&["M-01", "M-02"]).scored(), &ctx)
        .unwrap();
    parts.add(&whole.part(&["M-02"]).scored(), &ctx).unwrap();
    let err = parts.finish(&ctx).unwrap_err().to_string();
    assert!(err.contains("M-02") && err.contains("two parts"), "{err}");
}
