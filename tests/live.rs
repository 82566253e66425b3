//! Live scoring equals batch scoring: the same model, the same rows, fed row by
//! row in arrival order (all devices interleaved, in small batches, with device
//! states saved and resumed along the way), give the scores `ModelFile::score`
//! gives on the whole batch, and the same flagged rows.

use std::path::Path;

use itap::ParamGuard;
use itap::eval::{AlertParams, EvalParams};
use itap::features::FeatureParams;
use itap::telemetry::{Batch, ReadOptions, SimParams, read_csv, simulate};
use itap::{LiveRow, LiveScorer, ModelFile, TrainingSet, default_detector, split_by_time, train};

fn trained(batch: &Batch) -> ModelFile {
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(batch, &eval).unwrap();
    train(
        batch,
        &split,
        &TrainingSet::default(),
        &FeatureParams::default().check().unwrap(),
        &default_detector().check().unwrap(),
    )
    .unwrap()
    .model
}

/// Scores `batch` live in arrival order, `per_call` rows at a time, moving every
/// device's state to a new scorer (saved and resumed) every `restart_every`
/// calls, and compares with batch scoring.
fn assert_live_equals_batch(
    batch: &Batch,
    model: ModelFile,
    per_call: usize,
    restart_every: usize,
) {
    let eval = EvalParams::default().check().unwrap();
    let alerts = AlertParams::default().check().unwrap();
    let want = model.score(batch).unwrap().scores;
    let mut live = LiveScorer::new(model.clone(), &eval, &alerts).unwrap();
    // The same rows without restarts, for the alerts.
    let mut plain = LiveScorer::new(model.clone(), &eval, &alerts).unwrap();
    let (mut got_alerts, mut want_alerts) = (Vec::new(), Vec::new());
    let threshold = live.threshold().value;
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&r| (batch.timestamps()[r], batch.device_codes()[r]));
    let nsig = batch.schema().len();
    let values: Vec<Vec<f64>> = order
        .iter()
        .map(|&r| (0..nsig).map(|s| batch.signal(s)[r]).collect())
        .collect();
    let mut flagged = 0;
    for (call, chunk) in order.chunks(per_call).enumerate() {
        let base = call * per_call;
        let rows: Vec<LiveRow<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, &r)| LiveRow {
                device: batch.device_of(r),
                ts: batch.timestamps()[r],
                state: batch.states().map(|s| s[r]),
                error_code: batch.error_codes().map(|e| e[r]),
                values: &values[base + i],
            })
            .collect();
        let got = live.score(&rows).unwrap();
        plain.score(&rows).unwrap();
        got_alerts.extend(live.alerts(None).0);
        want_alerts.extend(plain.alerts(None).0);
        for (s, &r) in got.iter().zip(chunk) {
            let w = want[r];
            assert!(
                (s.score - w).abs() <= 1e-9 * w.abs().max(1.0),
                "row {r} ({} at {}): live {} batch {w}",
                batch.device_of(r),
                batch.timestamps()[r],
                s.score
            );
            assert_eq!(s.flagged, w > threshold, "row {r}");
            assert_eq!(s.flagged, s.family.is_some());
            flagged += usize::from(s.flagged);
        }
        if restart_every > 0 && call % restart_every == restart_every - 1 {
            let mut next = LiveScorer::new(model.clone(), &eval, &alerts).unwrap();
            for d in batch.device_names() {
                if let Some(bytes) = live.saved_state(d) {
                    next.resume(d, &bytes).unwrap();
                }
            }
            live = next;
        }
    }
    assert!(
        flagged > 0,
        "some rows are flagged, so the comparison means something"
    );
    let (done, open) = live.alerts(None);
    got_alerts.extend(done);
    got_alerts.extend(open);
    let (done, open) = plain.alerts(None);
    want_alerts.extend(done);
    want_alerts.extend(open);
    assert!(!want_alerts.is_empty());
    assert_eq!(
        got_alerts, want_alerts,
        "alerts go on across saves and resumes"
    );
}

#[test]
fn live_scores_equal_batch_scores_on_the_simulator() {
    let batch = simulate(&SimParams::default().devices(5).hours(4.0).check().unwrap());
    let model = trained(&batch);
    assert_live_equals_batch(&batch, model, 37, 11);
}

#[test]
fn live_scores_equal_batch_scores_on_the_seed_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/seed_telemetry_54k.csv");
    let batch = read_csv(&path, &ReadOptions::default()).unwrap();
    let model = trained(&batch);
    assert_live_equals_batch(&batch, model, 500, 0);
}

#[test]
fn a_row_out_of_order_is_refused_and_scores_nothing() {
    let batch = simulate(&SimParams::default().devices(2).hours(2.0).check().unwrap());
    let model = trained(&batch);
    let eval = EvalParams::default().check().unwrap();
    let alerts = AlertParams::default().check().unwrap();
    let mut live = LiveScorer::new(model, &eval, &alerts).unwrap();
    let v = vec![50.0; batch.schema().len()];
    let row = |ts| LiveRow {
        device: "DEV-0001",
        ts,
        state: None,
        error_code: Some(0),
        values: &v,
    };
    live.score(&[row(10)]).unwrap();
    let err = live.score(&[row(20), row(15)]).unwrap_err();
    assert!(err.to_string().contains("DEV-0001"), "{err}");
    assert_eq!(
        live.last_ts("DEV-0001"),
        Some(10),
        "nothing of the refused call was taken"
    );
    let short = vec![1.0; 2];
    let bad = LiveRow {
        values: &short,
        ..row(30)
    };
    assert!(live.score(&[bad]).is_err());
}
