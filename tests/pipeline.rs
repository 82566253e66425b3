//! Training and scoring through the root crate's API on simulated data.

use itap::ParamGuard;
use itap::anomaly::DetectorParams;
use itap::eval::EvalParams;
use itap::features::FeatureParams;
use itap::telemetry::{SimParams, simulate};
use itap::{ModelFile, TrainingSet, split_by_time, train};

#[test]
fn train_save_load_and_score_give_the_same_scores() {
    let batch = simulate(&SimParams::default().devices(4).hours(3.0).check().unwrap());
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&batch, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    let detector = DetectorParams::default().check().unwrap();
    let trained = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &features,
        &detector,
    )
    .unwrap();
    let model = trained.model;
    let scored = model.score_features(trained.features).unwrap();
    assert_eq!(scored.scores.len(), batch.len());
    assert!(
        model.training.rows_used < model.training.rows_in_span,
        "faulty and MAINT rows left out"
    );
    assert!(model.training.excluded_as_faulty > 0);
    assert!(!model.feature_names.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m/model.json");
    model.save(&path).unwrap();
    let back = ModelFile::load(&path).unwrap();
    let again = back.score(&batch).unwrap();
    for (a, b) in scored.scores.iter().zip(&again.scores) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    // Faulty rows score higher on average than normal ones.
    let mean = |f: &dyn Fn(usize) -> bool| {
        let v: Vec<f64> = (0..batch.len())
            .filter(|&r| f(r))
            .map(|r| again.scores[r])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(&|r| batch.tag_of(r).is_some()) > mean(&|r| batch.tag_of(r).is_none()));

    std::fs::write(dir.path().join("bad.json"), "{\"format_version\": 99}").unwrap();
    let e = ModelFile::load(&dir.path().join("bad.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layout version 99"), "{e}");
}

#[test]
fn the_detector_reads_only_its_input_kinds() {
    use itap::features::FeatureKind;
    let batch = simulate(&SimParams::default().devices(3).hours(2.0).check().unwrap());
    let split = split_by_time(&batch, &EvalParams::default().check().unwrap()).unwrap();
    let features = FeatureParams::default().check().unwrap();
    let detector = itap::default_detector().check().unwrap();

    let model = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &features,
        &detector,
    )
    .unwrap()
    .model;
    let kinds = ["__chart_ewma__", "__missing_run", "error_code__streak"];
    assert_eq!(
        model.feature_names.len(),
        5 * 3 + 5 + 1,
        "{:?}",
        model.feature_names
    );
    for n in &model.feature_names {
        assert!(kinds.iter().any(|k| n.contains(k)), "{n}");
    }

    let every = TrainingSet {
        inputs: Vec::new(),
        ..TrainingSet::default()
    };
    let all = train(&batch, &split, &every, &features, &detector)
        .unwrap()
        .model;
    assert_eq!(all.feature_names.len(), 84);

    let only_mean = FeatureParams::default()
        .kinds([FeatureKind::Mean])
        .check()
        .unwrap();
    let e = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &only_mean,
        &detector,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("invalid parameter `inputs`") && e.contains("feature kinds"),
        "{e}"
    );
}

#[test]
fn scoring_data_without_the_models_signals_names_the_features() {
    let batch = simulate(&SimParams::default().devices(2).hours(1.0).check().unwrap());
    let split = split_by_time(&batch, &EvalParams::default().check().unwrap()).unwrap();
    let model = train(
        &batch,
        &split,
        &TrainingSet::default(),
        &FeatureParams::default().check().unwrap(),
        &itap::default_detector().check().unwrap(),
    )
    .unwrap()
    .model;
    let other = simulate(
        &SimParams::default()
            .devices(2)
            .hours(1.0)
            .signals(
                itap::telemetry::default_sim_signals()
                    .into_iter()
                    .take(4)
                    .collect(),
            )
            .check()
            .unwrap(),
    );
    match model.score(&other).unwrap_err() {
        itap::Error::FeatureMismatch { missing, extra } => {
            assert!(
                missing.contains(&"voltage_v__chart_ewma__45s".to_owned()),
                "{missing:?}"
            );
            assert!(extra.is_empty(), "{extra:?}");
        }
        e => panic!("expected a feature mismatch, got {e}"),
    }
}

#[test]
fn more_fitted_rows_than_max_training_rows_fit_a_seeded_sample_on_any_thread_count() {
    let batch = simulate(&SimParams::default().devices(4).hours(3.0).check().unwrap());
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&batch, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    let detector = DetectorParams::default().check().unwrap();
    let model_with = |max: u64, threads: usize| {
        let set = TrainingSet {
            max_training_rows: max,
            ..TrainingSet::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&batch, &split, &set, &features, &detector))
            .unwrap()
            .model
    };
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }
    let all = model_with(0, 2);
    let used = all.training.rows_used;
    assert!(used > 1_000, "{used}");
    assert_eq!(all.training.rows_sampled, None);
    // A limit at or above the fitted rows changes nothing.
    assert_eq!(json(&model_with(used, 2)), json(&all));
    // Below it: the scaler and the detector learn from exactly that many rows,
    // the same ones on every run and thread count, and the model differs.
    let sampled = model_with(1_000, 1);
    assert_eq!(sampled.training.rows_sampled, Some(1_000));
    assert_eq!(sampled.training.rows_used, used);
    assert_eq!(json(&sampled), json(&model_with(1_000, 2)));
    assert_eq!(json(&sampled), json(&model_with(1_000, 1)));
    assert_ne!(json(&sampled.detector), json(&all.detector));
    // The features' per-device baselines still learn from every fitted row.
    assert_eq!(json(&sampled.features), json(&all.features));
    // A limit too small to fit on is refused by name.
    let e = TrainingSet {
        max_training_rows: 10,
        ..TrainingSet::default()
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(e.contains("max_training_rows"), "{e}");
}

/// The chunked path (`train_and_score`, `score_rows`, `evaluate_scores_and_write`),
/// which never holds every row's features, gives the very model, scores and
/// files of the whole path (`train`, `score_features`, `evaluate_and_write`), for
/// each detector, with and without a training sample, on one and two threads.
#[test]
fn chunked_training_scoring_and_evaluation_equal_the_whole_matrix_path() {
    use itap::anomaly::DetectorKind;
    use itap::eval::AlertParams;
    // Devices out of order and interleaved in time, as a file has them.
    let batch = simulate(&SimParams::default().devices(5).hours(4.0).check().unwrap());
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(&batch, &eval).unwrap();
    let features = FeatureParams::default().check().unwrap();
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }
    let ctx = itap::RunContext {
        input: itap::eval::InputDigest {
            path: "simulated".to_owned(),
            sha256: None,
        },
        config: serde_json::Value::Null,
        alerts: AlertParams::default().check().unwrap(),
    };
    for kind in [
        DetectorKind::Residual,
        DetectorKind::Pca,
        DetectorKind::IsolationForest,
    ] {
        let detector = DetectorParams::default().detector(kind).check().unwrap();
        // No limit; a sample, the held-back rows scored in training; a sample
        // and no held-back slice, the sketch's rows (every fitted row, more than
        // the limit) scored by the scoring pass.
        for (max, calibration_fraction) in [(0, 0.2), (1_500, 0.2), (1_500, 0.0)] {
            let set = TrainingSet {
                max_training_rows: max,
                calibration_fraction,
                ..TrainingSet::default()
            };
            let whole = train(&batch, &split, &set, &features, &detector).unwrap();
            let model = whole.model;
            let scored = model.score_features(whole.features).unwrap();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let chunked = pool
                    .install(|| itap::train_and_score(&batch, &split, &set, &features, &detector))
                    .unwrap();
                let what = format!(
                    "{kind:?}, max_training_rows {max}, calibration {calibration_fraction}, {threads} threads"
                );
                assert_eq!(json(&chunked.model), json(&model), "model: {what}");
                assert_eq!(chunked.scores.len(), scored.scores.len());
                for (r, (a, b)) in chunked.scores.iter().zip(&scored.scores).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "row {r}: {what}");
                }
                assert_eq!(
                    json(&pool.install(|| model.score_rows(&batch)).unwrap()),
                    json(&scored.scores)
                );
                // Scores and the contributions of the rows asked for, in one
                // pass, equal the whole matrix's; the same as a pass of their own.
                let mut sorted = scored.scores.clone();
                sorted.sort_by(f64::total_cmp);
                let cut = sorted[sorted.len() / 2];
                let wanted = |r: usize, s: f64| s > cut && !r.is_multiple_of(3);
                let (again, kept) = pool
                    .install(|| model.score_and_explain(&batch, wanted))
                    .unwrap();
                assert_eq!(json(&again), json(&scored.scores));
                let flags: Vec<bool> = (0..batch.len())
                    .map(|r| wanted(r, scored.scores[r]))
                    .collect();
                let n = flags.iter().filter(|&&f| f).count();
                assert!(n > 10, "{n} rows asked for: {what}");
                assert_eq!(kept.len(), n);
                assert_eq!(
                    kept,
                    pool.install(|| model.contributions_of(&batch, &flags))
                        .unwrap()
                );
                for (r, &f) in flags.iter().enumerate() {
                    match kept.get(r) {
                        Some(c) => {
                            assert!(f);
                            assert_eq!(json(&c), json(&model.contributions(&scored, r)));
                        }
                        None => assert!(!f, "row {r} missing: {what}"),
                    }
                }
            }
            if max != 0 || calibration_fraction == 0.0 {
                continue;
            }
            // The files of both evaluations, alerts and their attribution included.
            let dir = tempfile::tempdir().unwrap();
            let (a, b) = (dir.path().join("whole"), dir.path().join("chunked"));
            let ra =
                itap::evaluate_and_write(&batch, &scored, &model, &split, &eval, &ctx, &a).unwrap();
            let rb = itap::evaluate_scores_and_write(
                &batch,
                &scored.scores,
                &model,
                &split,
                &eval,
                &ctx,
                &b,
            )
            .unwrap();
            assert_eq!(json(&ra.alerts), json(&rb.alerts));
            assert!(!ra.alerts.is_empty(), "{kind:?}: the data raises alerts");
            assert!(ra.alerts.iter().any(|x| x.family.is_some()));
            for name in ["metrics.json", "alerts.json", "scores.csv", "report.html"] {
                let (x, y) = (
                    std::fs::read(a.join(name)).unwrap(),
                    std::fs::read(b.join(name)).unwrap(),
                );
                assert!(x == y, "{name} differs: {kind:?}");
            }
        }
    }
}
