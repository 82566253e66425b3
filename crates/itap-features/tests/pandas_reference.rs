//! Rolling mean/std/min/max against pandas on rows of the seed's reference data
//! (fixture and the script that made it in tests/data/).

mod common;

use itap_features::ParamGuard;
use std::path::Path;

use itap_features::{FeatureKind, FeatureParams, TrainSpan, WindowEngine, fit, transform};
use itap_telemetry::{ReadOptions, read_csv};

use common::close;

#[test]
fn rolling_statistics_match_pandas_within_1e_9() {
    for engine in [WindowEngine::Polars, WindowEngine::Native] {
        compare(engine);
    }
}

fn compare(engine: WindowEngine) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let batch = read_csv(dir.join("seed_subset.csv"), &ReadOptions::default()).unwrap();
    let params = FeatureParams::default()
        .windows(["30rows", "5m"])
        .window_engine(engine)
        .min_periods(1)
        .kinds([
            FeatureKind::Mean,
            FeatureKind::Std,
            FeatureKind::Min,
            FeatureKind::Max,
        ])
        .check()
        .unwrap();
    let fitted = fit(&batch, TrainSpan::All, &params).unwrap();
    let features = transform(&batch, &fitted).unwrap();

    let text = std::fs::read_to_string(dir.join("pandas_rolling.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let expected: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        expected.len(),
        batch.len(),
        "one reference row per input row"
    );
    assert_eq!(header.len(), 2 + 40);
    let mut compared = 0;
    let mut missing_windows = 0;
    for (j, name) in header.iter().enumerate().skip(2) {
        let ours = features
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no feature {name}"));
        for (r, fields) in expected.iter().enumerate() {
            assert_eq!(fields[1], batch.device_of(r), "row {r} is the same device");
            let want: f64 = if fields[j].is_empty() {
                f64::NAN
            } else {
                fields[j].parse().unwrap()
            };
            assert!(
                close(ours[r], want, 1e-9),
                "{engine:?}: {name} row {r} ({} {}): ours {} pandas {}",
                fields[0],
                fields[1],
                ours[r],
                want
            );
            compared += 1;
            missing_windows += usize::from(want.is_nan());
        }
    }
    assert_eq!(compared, 40 * batch.len());
    // The fixture exercises undefined values (a lone observation's std) too.
    assert!(missing_windows > 0);
    // And it has missing input values inside windows.
    let n_missing = (0..batch.schema().len())
        .map(|i| batch.signal(i).iter().filter(|v| v.is_nan()).count())
        .sum::<usize>();
    assert!(n_missing > 10, "{n_missing}");
}
