//! Serialize, deserialize, score bit-identically; malformed models are refused.

mod common;

use common::correlated;
use itap_anomaly::ParamGuard;
use itap_anomaly::ndarray::Array2;
use itap_anomaly::{
    CheckedDetector, Detector, DetectorKind, DetectorParams, FittedDetector, IsolationForest,
    Model, PcaDetector, StandardScaler,
};

fn data() -> (Array2<f64>, Array2<f64>) {
    let train = correlated(3000, 8, 21);
    let mut test = correlated(1000, 8, 22);
    test[[3, 2]] = f64::NAN;
    test[[4, 0]] = 1e6;
    test[[5, 7]] = f64::NEG_INFINITY;
    (train, test)
}

fn round_trip(kind: DetectorKind) {
    let (train, test) = data();
    let scaler = StandardScaler::fit(train.view()).unwrap();
    let (ztrain, ztest) = (
        scaler.scale(train.view()).unwrap(),
        scaler.scale(test.view()).unwrap(),
    );
    let model = DetectorParams::default()
        .detector(kind)
        .check()
        .unwrap()
        .fit(ztrain.view())
        .unwrap();
    let before = model.score(ztest.view()).unwrap();

    let json = serde_json::to_string(&(&scaler, &model)).unwrap();
    let (scaler2, model2): (StandardScaler, Model) = serde_json::from_str(&json).unwrap();
    assert_eq!(scaler2, scaler);
    assert_eq!(model2, model);
    let after = model2
        .score(scaler2.scale(test.view()).unwrap().view())
        .unwrap();
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} became {b}");
    }
    // serializing again gives the same bytes
    assert_eq!(serde_json::to_string(&(&scaler2, &model2)).unwrap(), json);
    assert_eq!(model2.kind(), kind);
    assert!(json.contains(&format!("\"detector\":\"{kind}\"")));
}

#[test]
fn iforest_round_trip_is_bit_identical() {
    round_trip(DetectorKind::IsolationForest);
}

#[test]
fn pca_round_trip_is_bit_identical() {
    round_trip(DetectorKind::Pca);
}

#[test]
fn checked_params_round_trip() {
    let p = DetectorParams::default()
        .detector(DetectorKind::Pca)
        .check()
        .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<CheckedDetector>(&json).unwrap(), p);
    let bad = json.replace("0.95", "1.5");
    assert!(serde_json::from_str::<CheckedDetector>(&bad).is_err());
}

fn forest_json() -> serde_json::Value {
    let (train, _) = data();
    let m = itap_anomaly::IsolationForestParams::default()
        .trees(3)
        .max_samples(32)
        .check()
        .unwrap()
        .fit(train.view())
        .unwrap();
    serde_json::to_value(&m).unwrap()
}

#[test]
fn malformed_forests_are_refused() {
    let good = forest_json();
    assert!(serde_json::from_value::<IsolationForest>(good.clone()).is_ok());

    let mut v = good.clone();
    v["trees"][1]["left"][0] = serde_json::json!(100_000);
    let err = serde_json::from_value::<IsolationForest>(v)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tree 1"), "{err}");

    let mut v = good.clone();
    v["trees"][0]["feature"][0] = serde_json::json!(8);
    assert!(serde_json::from_value::<IsolationForest>(v).is_err());

    let mut v = good.clone();
    v["trees"].as_array_mut().unwrap().pop();
    let err = serde_json::from_value::<IsolationForest>(v)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 trees"), "{err}");

    let mut v = good.clone();
    v["params"]["trees"] = serde_json::json!(0);
    assert!(serde_json::from_value::<IsolationForest>(v).is_err());

    let mut v = good;
    v["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<IsolationForest>(v).is_err());
}

#[test]
fn malformed_pca_is_refused() {
    let (train, _) = data();
    let m = DetectorParams::default()
        .detector(DetectorKind::Pca)
        .check()
        .unwrap()
        .fit(train.view())
        .unwrap();
    let Model::Pca(pca) = m else {
        panic!("expected PCA")
    };
    let good = serde_json::to_value(&pca).unwrap();
    assert!(serde_json::from_value::<PcaDetector>(good.clone()).is_ok());
    let mut v = good.clone();
    v["eigenvalues"][0] = serde_json::json!(-1.0);
    assert!(serde_json::from_value::<PcaDetector>(v).is_err());
    let mut v = good;
    v["components"][0].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<PcaDetector>(v).is_err());
}
