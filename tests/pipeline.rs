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
