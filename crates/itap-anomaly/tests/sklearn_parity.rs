//! Parity with scikit-learn's IsolationForest on a committed fixture made by
//! `scripts/make_iforest_fixture.py`: 3,000 rows of the seed platform's five signals,
//! labels, and scikit-learn's negated `score_samples` (200 trees, 256 samples).

mod common;

use common::{ranks, roc_auc, spearman};
use itap_anomaly::ParamGuard;
use itap_anomaly::ndarray::Array2;
use itap_anomaly::{Detector, IsolationForestParams};

struct Fixture {
    x: Array2<f64>,
    labels: Vec<bool>,
    sklearn: Vec<f64>,
    meta: serde_json::Value,
}

fn fixture() -> Fixture {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let text = std::fs::read_to_string(format!("{dir}iforest_fixture.csv")).expect("fixture csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header[5..], ["label", "sklearn_score"]);
    let (mut values, mut labels, mut sklearn) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let f: Vec<f64> = line
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect();
        assert_eq!(f.len(), 7);
        values.extend_from_slice(&f[..5]);
        labels.push(f[5] == 1.0);
        sklearn.push(f[6]);
    }
    let n = labels.len();
    let meta = std::fs::read_to_string(format!("{dir}iforest_fixture.json")).expect("fixture json");
    Fixture {
        x: Array2::from_shape_vec((n, 5), values).expect("shape"),
        labels,
        sklearn,
        meta: serde_json::from_str(&meta).expect("json"),
    }
}

fn our_scores(x: &Array2<f64>, seed: u64) -> Vec<f64> {
    let params = IsolationForestParams::default()
        .trees(200)
        .max_samples(256)
        .seed(seed);
    let model = params.check().unwrap().fit(x.view()).unwrap();
    model.score(x.view()).unwrap().to_vec()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

// One forest's ROC-AUC on this fixture moves with its seed by about 0.004 (one
// standard deviation, scikit-learn's and ours alike), so two single forests of the
// same algorithm differ by more than 0.01 in about one pair of seeds out of ten.
// The tests therefore hold each side's single forest against the other side's
// expected AUC (the mean over seeds 0..9), within 0.01, and the two expectations
// against each other within 0.005.

#[test]
fn auc_and_rank_order_match_scikit_learn() {
    let f = fixture();
    assert_eq!(f.labels.len(), 3000);
    let ours = our_scores(&f.x, 42);
    let auc_sklearn = roc_auc(&f.sklearn, &f.labels);
    let auc_ours = roc_auc(&ours, &f.labels);
    let rho = spearman(&ours, &f.sklearn);
    let ours_expected = mean(
        &(0..10)
            .map(|s| roc_auc(&our_scores(&f.x, s), &f.labels))
            .collect::<Vec<_>>(),
    );
    let sklearn_expected = f.meta["sklearn_auc_seeds_0_9_mean"].as_f64().unwrap();
    eprintln!(
        "ROC-AUC seed 42: ours {auc_ours:.4}, scikit-learn {auc_sklearn:.4}; \
         mean over seeds 0..9: ours {ours_expected:.4}, scikit-learn {sklearn_expected:.4}; \
         Spearman with scikit-learn's scores {rho:.4}"
    );
    // the fixture's record of scikit-learn's AUC agrees with the scores in it
    assert!((auc_sklearn - f.meta["sklearn_auc"].as_f64().unwrap()).abs() < 1e-9);

    assert!(
        (auc_ours - sklearn_expected).abs() <= 0.01,
        "our ROC-AUC {auc_ours} vs scikit-learn's expected {sklearn_expected}"
    );
    assert!(
        (auc_sklearn - ours_expected).abs() <= 0.01,
        "scikit-learn's ROC-AUC {auc_sklearn} vs our expected {ours_expected}"
    );
    assert!(
        (ours_expected - sklearn_expected).abs() <= 0.005,
        "expected ROC-AUC {ours_expected} vs scikit-learn's {sklearn_expected}"
    );
    assert!(rho >= 0.95, "Spearman correlation with scikit-learn {rho}");
    // the same scale as scikit-learn's scores, not only the same order
    assert!((mean(&ours) - mean(&f.sklearn)).abs() < 0.01);
}

#[test]
fn rank_helpers_are_right() {
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    assert_eq!(
        roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]),
        1.0
    );
    assert_eq!(
        roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]),
        0.0
    );
    assert_eq!(
        roc_auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]),
        0.5
    );
    // one of four positive-negative pairs misordered
    assert_eq!(
        roc_auc(&[0.1, 0.6, 0.5, 0.9], &[false, false, true, true]),
        0.75
    );
    assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 35.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
}
