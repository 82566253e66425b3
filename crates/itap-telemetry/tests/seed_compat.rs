//! The seed platform's reference file loads unchanged, with the figures it was made with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use itap_telemetry::{ReadOptions, State, TimeZone, format_timestamp, read_csv};

fn seed_csv() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed_telemetry_54k.csv");
    assert!(
        p.exists(),
        "{} is missing: it is committed in the repository's testdata/",
        p.display()
    );
    p
}

#[test]
fn seed_reference_file_loads_with_its_known_figures() {
    let b = read_csv(seed_csv(), &ReadOptions::default()).unwrap();
    assert_eq!(b.len(), 54_000);
    assert_eq!(b.device_names().len(), 25);
    assert_eq!(
        b.schema().names().collect::<Vec<_>>(),
        ["rpm", "temp_c", "vibration_g", "current_a", "voltage_v"]
    );
    let missing = |name: &str| {
        b.signal_by_name(name)
            .unwrap()
            .iter()
            .filter(|v| v.is_nan())
            .count()
    };
    assert_eq!(missing("temp_c"), 371);
    assert_eq!(missing("rpm"), 0);
    assert_eq!(b.tagged_rows(), 18_567);
    let mut by_tag = BTreeMap::new();
    for r in 0..b.len() {
        if let Some(t) = b.tag_of(r) {
            *by_tag.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = [
        ("bearing_wear", 9_145),
        ("overheat_drift", 8_471),
        ("power_spike", 461),
        ("sensor_dropout", 490),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_tag, expected);
    // Naive timestamps are UTC.
    assert_eq!(format_timestamp(b.timestamps()[0]), "2026-01-01T00:00:00Z");
    assert_eq!(
        format_timestamp(b.time_bounds().unwrap().1),
        "2026-01-01T05:59:50Z"
    );
    let states = b.states().unwrap();
    assert!(states.contains(&State::Maint) && states.contains(&State::Idle));
    assert!(b.error_codes().unwrap().contains(&5));
}

#[test]
fn seed_naive_timestamps_follow_a_configured_zone() {
    let opts = ReadOptions {
        timezone: "+01:00".parse::<TimeZone>().unwrap(),
        ..ReadOptions::default()
    };
    let b = read_csv(seed_csv(), &opts).unwrap();
    assert_eq!(format_timestamp(b.timestamps()[0]), "2025-12-31T23:00:00Z");
}
