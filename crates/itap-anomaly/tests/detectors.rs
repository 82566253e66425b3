//! What the detectors do: outliers score high, the NaN rules, errors, the linfa
//! traits, the run-time choice of detector, and the scaler's parity with
//! linfa-preprocessing.

mod common;

use common::{correlated, roc_auc};
use itap_anomaly::ParamGuard;
use itap_anomaly::ndarray::{Array1, Array2, Axis, array, s};
use itap_anomaly::{
    Detector, DetectorKind, DetectorParams, Error, FittedDetector, IsolationForestParams,
    PcaParams, StandardScaler, StandardScalerParams, average_path_length, finite_rows,
};

/// 2,000 correlated rows, then 20 rows far off the correlation structure.
fn with_outliers() -> (Array2<f64>, Vec<bool>) {
    let mut x = correlated(2020, 6, 8);
    for i in 2000..2020 {
        for j in 0..6 {
            x[[i, j]] = if (i + j) % 2 == 0 { 4.0 } else { -4.0 };
        }
    }
    let labels = (0..2020).map(|i| i >= 2000).collect();
    (x, labels)
}

#[test]
fn iforest_finds_outliers_and_scores_in_range() {
    let (x, labels) = with_outliers();
    let m = IsolationForestParams::default()
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    let s = m.score(x.view()).unwrap();
    assert!(s.iter().all(|&v| v > 0.0 && v <= 1.0));
    assert!(roc_auc(&s.to_vec(), &labels) > 0.99);
    assert!(s.slice(s![2000..]).iter().all(|&v| v > 0.6));
    assert_eq!(
        (m.samples(), m.trees(), m.n_features(), m.training_rows()),
        (256, 200, 6, 2020)
    );
    // the score is 2^(−E[h]/c(ψ))
    let h = m.mean_path_lengths(x.view()).unwrap();
    for (sv, hv) in s.iter().zip(&h) {
        assert!((sv - (-hv / average_path_length(256)).exp2()).abs() < 1e-12);
    }
}

#[test]
fn small_training_sets_cap_the_subsample() {
    let x = correlated(40, 3, 1);
    let m = IsolationForestParams::default()
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    assert_eq!(m.samples(), 40);
    let err = IsolationForestParams::default()
        .check()
        .unwrap()
        .fit(x.slice(s![..1, ..]))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::TooFewRows {
            rows: 1,
            needed: 2,
            ..
        }
    ));
}

#[test]
fn feature_subsampling_still_detects() {
    let (x, labels) = with_outliers();
    let m = IsolationForestParams::default()
        .max_features(0.34)
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    assert!(roc_auc(&m.score(x.view()).unwrap().to_vec(), &labels) > 0.95);
}

#[test]
fn fit_needs_finite_rows_and_a_mask_drops_them() {
    let (mut x, _) = with_outliers();
    x[[17, 4]] = f64::NAN;
    let params = IsolationForestParams::default().check().unwrap();
    match params.fit(x.view()) {
        Err(Error::NonFinite {
            row: 17,
            column: 4,
            value,
        }) => assert!(value.is_nan()),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let msg = params.fit(x.view()).unwrap_err().to_string();
    assert!(
        msg.contains("row 17, column 4") && msg.contains("finite_rows"),
        "{msg}"
    );
    let mask = finite_rows(x.view());
    assert_eq!(mask.iter().filter(|&&k| !k).count(), 1);
    let m = params.fit_rows(x.view(), &mask).unwrap();
    assert_eq!(m.training_rows(), 2019);
    assert!(matches!(
        params.fit_rows(x.view(), &mask[1..]),
        Err(Error::LengthMismatch { .. })
    ));
    assert!(matches!(
        params.fit_indices(x.view(), &[0, 5000]),
        Err(Error::RowOutOfRange { row: 5000, .. })
    ));
    // PCA refuses in the same way
    let pca = PcaParams::default().check().unwrap();
    assert!(matches!(
        pca.fit(x.view()),
        Err(Error::NonFinite {
            row: 17,
            column: 4,
            ..
        })
    ));
    assert!(pca.fit_rows(x.view(), &mask).is_ok());
}

#[test]
fn a_training_mask_changes_what_is_normal() {
    // 100 identical odd rows (5 %): in the training rows they mask each other (a
    // leaf they share adds c(n) to their path), left out they are isolated alone
    let mut x = correlated(2100, 6, 8);
    for i in 2000..2100 {
        for j in 0..6 {
            x[[i, j]] = if j % 2 == 0 { 3.0 } else { -3.0 };
        }
    }
    let params = IsolationForestParams::default().check().unwrap();
    let all = params.fit(x.view()).unwrap().score(x.view()).unwrap();
    let mask: Vec<bool> = (0..2100).map(|i| i < 2000).collect();
    let clean = params
        .fit_rows(x.view(), &mask)
        .unwrap()
        .score(x.view())
        .unwrap();
    let odd = |a: &Array1<f64>| a.slice(s![2000..]).mean().unwrap();
    assert!(
        odd(&clean) > odd(&all) + 0.1,
        "{} vs {}",
        odd(&clean),
        odd(&all)
    );
}

#[test]
fn iforest_nan_is_an_expectation_over_the_training_distribution() {
    let mut x = correlated(1000, 4, 2);
    x.column_mut(3).fill(1.0); // constant: never split on
    let m = IsolationForestParams::default()
        .trees(50)
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    let base = m.score(x.slice(s![..50, ..])).unwrap();
    let mut y = x.slice(s![..50, ..]).to_owned();
    y.column_mut(3).fill(f64::NAN);
    assert_eq!(
        m.score(y.view()).unwrap(),
        base,
        "NaN in an unused column changes nothing"
    );

    // every value unknown: each tree gives the size-weighted mean of its leaves,
    // which is the mean path length of its own subsample rows; so the score lies
    // between the lowest and highest training-row expectations and is ordinary
    let all_nan = Array2::from_elem((1, 4), f64::NAN);
    let s = m.score(all_nan.view()).unwrap()[0];
    assert!(s > 0.3 && s < 0.6, "{s}");

    // NaN in one informative column: between the scores of the row with that
    // column at its extremes
    let row = x.row(0).to_owned();
    let (mut lo, mut hi, mut nan) = (row.clone(), row.clone(), row.clone());
    let col = x.column(0);
    lo[0] = col.iter().cloned().fold(f64::INFINITY, f64::min);
    hi[0] = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    nan[0] = f64::NAN;
    let three = ndarray_rows(&[lo, hi, nan]);
    let sc = m.score(three.view()).unwrap();
    assert!(sc[2] < sc[0].max(sc[1]));
    assert!(sc[2].is_finite());
}

fn ndarray_rows(rows: &[Array1<f64>]) -> Array2<f64> {
    let views: Vec<_> = rows.iter().map(|r| r.view().insert_axis(Axis(0))).collect();
    itap_anomaly::ndarray::concatenate(Axis(0), &views).unwrap()
}

#[test]
fn wrong_width_is_an_error_not_a_panic() {
    let (x, _) = with_outliers();
    let m = DetectorParams::default()
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    let narrow = x.slice(s![.., ..5]);
    assert!(matches!(
        m.score(narrow),
        Err(Error::ColumnMismatch {
            expected: 6,
            found: 5
        })
    ));
    let p = DetectorParams::default()
        .detector(DetectorKind::Pca)
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    assert!(matches!(p.score(narrow), Err(Error::ColumnMismatch { .. })));
    assert!(matches!(
        IsolationForestParams::default()
            .check()
            .unwrap()
            .fit(Array2::<f64>::zeros((10, 0)).view()),
        Err(Error::NoColumns)
    ));
}

#[test]
fn pca_separates_t2_and_q() {
    // rank 2 plus small noise in 5 columns
    let x = correlated(4000, 5, 13);
    let pca = PcaParams::default().check().unwrap();
    let m = pca.fit(x.view()).unwrap();
    assert_eq!(m.n_components(), 2);
    let ratio = m.explained_variance_ratio();
    assert!((ratio.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(ratio[0] + ratio[1] > 0.95 && ratio[0] >= ratio[1]);
    for c in m.components().rows() {
        assert!((c.dot(&c) - 1.0).abs() < 1e-9);
    }

    // a row far along the first component: large T², small Q;
    // a row off the plane: small T², large Q
    let mean = Array1::from(m.mean().to_vec());
    let along = &mean + &(&m.components().row(0) * (6.0 * m.eigenvalues()[0].sqrt()));
    let off = {
        let comps = m.components();
        let (c0, c1) = (comps.row(0), comps.row(1));
        let mut d = Array1::<f64>::zeros(5);
        d[0] = 1.0;
        let d = &d - &(&c0 * c0.dot(&d)) - &(&c1 * c1.dot(&d));
        let n = d.dot(&d).sqrt();
        &mean + &(&d * (2.0 / n))
    };
    let st = m.statistics(ndarray_rows(&[along, off]).view()).unwrap();
    assert!(st.t2[0] > 30.0 && st.q[0] < 1e-9, "{st:?}");
    assert!(st.t2[1] < 1e-9 && st.q[1] > 3.9, "{st:?}");
    assert!(st.combined[0] > 1.0 && st.combined[1] > 1.0);
    assert_eq!(
        st.combined[0],
        (st.t2[0] / m.t2_limit()).max(st.q[0] / m.q_limit())
    );

    // about 1 % of the training rows exceed each limit, so 1–2 % the combined one
    let train = m.score(x.view()).unwrap();
    let above = train.iter().filter(|&&v| v > 1.0).count() as f64 / 4000.0;
    assert!((0.009..=0.021).contains(&above), "{above}");
}

#[test]
fn pca_caps_and_nan_rule() {
    let x = correlated(2000, 6, 4);
    let m = PcaParams::default()
        .max_components(Some(1))
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    assert_eq!(m.n_components(), 1);
    let all = PcaParams::default()
        .variance(1.0)
        .check()
        .unwrap()
        .fit(x.view())
        .unwrap();
    assert_eq!(all.n_components(), 6);
    // NaN means "at the training mean"
    let mut row = x.slice(s![..1, ..]).to_owned();
    row[[0, 2]] = f64::NAN;
    let mut imputed = row.clone();
    imputed[[0, 2]] = m.mean()[2];
    assert_eq!(
        m.score(row.view()).unwrap(),
        m.score(imputed.view()).unwrap()
    );
    // no variance at all
    let flat = Array2::from_elem((10, 3), 2.0);
    assert!(matches!(
        PcaParams::default().check().unwrap().fit(flat.view()),
        Err(Error::NoVariance { rows: 10 })
    ));
}

#[test]
fn detector_kind_and_params_from_text() {
    assert_eq!(
        "iforest".parse::<DetectorKind>().unwrap(),
        DetectorKind::IsolationForest
    );
    assert_eq!(" PCA ".parse::<DetectorKind>().unwrap(), DetectorKind::Pca);
    let err = "forest".parse::<DetectorKind>().unwrap_err().to_string();
    assert!(
        err.contains("\"iforest\", \"pca\" or \"residual\""),
        "{err}"
    );
    assert_eq!(DetectorKind::default(), DetectorKind::IsolationForest);
    for k in DetectorKind::ALL {
        assert_eq!(k.to_string().parse::<DetectorKind>().unwrap(), k);
    }

    let p: DetectorParams = serde_json::from_str(
        r#"{"detector": "pca", "pca": {"variance": 0.9}, "iforest": {"trees": 10}}"#,
    )
    .unwrap();
    let c = p.check().unwrap();
    assert_eq!(c.kind(), DetectorKind::Pca);
    assert_eq!(c.params_json()["variance"], 0.9);
    let bad: DetectorParams = serde_json::from_str(r#"{"iforest": {"trees": 0}}"#).unwrap();
    assert!(bad.check_ref().is_err());
    match bad.check() {
        Err(Error::InvalidParam(p)) => assert_eq!(p.name, "iforest.trees"),
        other => panic!("{other:?}"),
    }
    assert!(serde_json::from_str::<DetectorParams>(r#"{"detectr": "pca"}"#).is_err());
}

#[test]
fn both_detectors_behind_one_trait_object() {
    let (x, labels) = with_outliers();
    let fitted: Vec<Box<dyn FittedDetector>> = DetectorKind::ALL
        .iter()
        .map(|&k| {
            let d: Box<dyn Detector<Fitted = itap_anomaly::Model>> =
                Box::new(DetectorParams::default().detector(k).check().unwrap());
            Box::new(d.fit(x.view()).unwrap()) as Box<dyn FittedDetector>
        })
        .collect();
    for (f, k) in fitted.iter().zip(DetectorKind::ALL) {
        assert_eq!(f.kind(), k);
        assert_eq!(f.n_features(), 6);
        let auc = roc_auc(&f.score(x.view()).unwrap().to_vec(), &labels);
        // The calibrated detector reads each column alone: outliers that are
        // unusual only jointly escape it, so it ranks a little lower here.
        let floor = if k == DetectorKind::Residual {
            0.97
        } else {
            0.99
        };
        assert!(auc > floor, "{k}: {auc}");
    }
}

#[test]
fn linfa_fit_and_predict_match_the_direct_api() {
    use itap_anomaly::linfa::DatasetBase;
    use itap_anomaly::linfa::traits::{Fit, Predict, Transformer};

    let (x, _) = with_outliers();
    let ds = DatasetBase::from(x.clone());
    let scaler = StandardScalerParams.fit(&ds).unwrap();
    let ds = scaler.transform(ds);
    let params = IsolationForestParams::default().seed(5);
    let via_linfa = params.fit(&ds).unwrap(); // unchecked params: checked on the way
    let direct = Detector::fit(&params.check().unwrap(), ds.records.view()).unwrap();
    assert_eq!(via_linfa, direct);
    let scores: Array1<f64> = via_linfa.predict(&ds.records);
    assert_eq!(scores, direct.score(ds.records.view()).unwrap());
    // a dataset with scores as targets
    let with_targets = via_linfa.predict(ds.records.clone());
    assert_eq!(with_targets.targets, scores);
    // a wrong width gives NaN scores, not a panic
    let narrow: Array1<f64> = via_linfa.predict(&ds.records.slice(s![.., ..5]).to_owned());
    assert!(narrow.iter().all(|v| v.is_nan()));

    let pca = PcaParams::default().fit(&ds).unwrap();
    let ps: Array1<f64> = pca.predict(&ds.records);
    assert_eq!(ps, pca.score(ds.records.view()).unwrap());
    assert!(matches!(
        IsolationForestParams::default().trees(0).fit(&ds),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn scaler_matches_linfa_preprocessing_on_finite_data() {
    use linfa::traits::{Fit, Transformer};
    use linfa_preprocessing::linear_scaling::LinearScaler;

    let mut x = correlated(500, 5, 9);
    x.column_mut(4).fill(3.0); // constant column: kept unscaled by both
    let theirs = LinearScaler::standard()
        .fit(&linfa::DatasetBase::from(x.clone()))
        .unwrap();
    let ours = StandardScaler::fit(x.view()).unwrap();
    for j in 0..5 {
        assert!((ours.mean()[j] - theirs.offsets()[j]).abs() < 1e-12);
        assert!((ours.std()[j] * theirs.scales()[j] - 1.0).abs() < 1e-12);
    }
    let a = ours.scale(x.view()).unwrap();
    let b = theirs.transform(x.clone());
    assert!(
        a.iter()
            .zip(&b)
            .all(|(u, v)| (u - v).abs() <= 1e-12 * (1.0 + v.abs()))
    );

    // NaN: linfa-preprocessing's statistics turn NaN; ours skip it
    let mut y = x.clone();
    y[[0, 0]] = f64::NAN;
    let ours_nan = StandardScaler::fit(y.view()).unwrap();
    let rest = StandardScaler::fit(y.slice(s![1.., ..1])).unwrap();
    assert_eq!(ours_nan.mean()[0], rest.mean()[0]);
    assert_eq!(ours_nan.std()[0], rest.std()[0]);
    assert_eq!(ours_nan.mean()[1..], ours.mean()[1..]);
}

#[test]
fn scaler_transformer_keeps_dataset_parts() {
    use itap_anomaly::linfa::DatasetBase;
    use itap_anomaly::linfa::traits::Transformer;
    let x = array![[1.0, 2.0], [3.0, 4.0]];
    let ds = DatasetBase::new(x.clone(), array![0usize, 1]).with_feature_names(vec!["a", "b"]);
    let s = StandardScaler::fit(x.view()).unwrap();
    let out = s.transform(ds);
    assert_eq!(out.records, array![[-1.0, -1.0], [1.0, 1.0]]);
    assert_eq!(out.targets, array![0usize, 1]);
    assert_eq!(out.feature_names(), vec!["a".to_string(), "b".to_string()]);
}
