//! Parity with the seed platform's reference file and its validation figures.

use itap_validate::ParamGuard;
use std::path::PathBuf;

use itap_telemetry::{ReadOptions, Schema, read_csv};
use itap_validate::{
    Level, Severity, ValidatedChunks, ValidationParams, Verdict, validate_batch, validate_file,
};

fn seed_csv() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/seed_telemetry_54k.csv");
    assert!(
        p.exists(),
        "{} is missing: it is committed in the repository's testdata/",
        p.display()
    );
    p
}

/// The repository's copy of the reference file is the one the seed platform
/// wrote: its SHA-256 is the one recorded in testdata/SHA256SUMS (a changed copy
/// would silently change every figure the tests compare with).
#[test]
fn the_committed_copy_is_the_reference_file() {
    let sums = std::fs::read_to_string(seed_csv().with_file_name("SHA256SUMS")).unwrap();
    let recorded = sums
        .lines()
        .find(|l| l.ends_with(" seed_telemetry_54k.csv"))
        .and_then(|l| l.split_whitespace().next())
        .expect("testdata/SHA256SUMS names seed_telemetry_54k.csv");
    assert_eq!(itap_validate::sha256_file(seed_csv()).unwrap(), recorded);
}

/// The read options the CLI uses with the default config: the five signals
/// declared with their valid ranges.
fn opts() -> ReadOptions {
    ReadOptions {
        declared: Schema::default().signals().to_vec(),
        ..ReadOptions::default()
    }
}

#[test]
fn seed_file_validates_with_the_seeds_figures() {
    let params = ValidationParams::default().check().unwrap();
    let r = validate_file(seed_csv(), &opts(), &params, None).unwrap();
    assert_eq!((r.rows, r.devices), (54_000, 25));
    assert_eq!(
        r.input.sha256.as_deref(),
        Some("7eabed57b01bc958d9f24dd07abe9af349b5f554135fbb0630f2e33b04002397")
    );
    let t = r.time.as_ref().unwrap();
    assert_eq!(
        (t.first.as_str(), t.last.as_str()),
        ("2026-01-01T00:00:00Z", "2026-01-01T05:59:50Z")
    );
    // Missing rates: 371 of 54,000 for the three signals a dropout loses.
    for c in &r.columns {
        let expected = match c.name.as_str() {
            "temp_c" | "vibration_g" | "current_a" => 371,
            _ => 0,
        };
        assert_eq!(c.missing, expected, "{}", c.name);
        assert_eq!(c.missing_rate, expected as f64 / 54_000.0);
    }
    let temp = r.columns.iter().find(|c| c.name == "temp_c").unwrap();
    assert!((temp.missing_rate - 0.006_870_37).abs() < 1e-8);

    // The range checks ran, at error level, over declared ranges, and found nothing.
    let schema = r.schema.as_ref().unwrap();
    assert!(
        schema
            .signals()
            .iter()
            .all(|s| s.min.is_some() && s.max.is_some())
    );
    for id in ["range.out_of_range", "range.non_finite", "range.negative"] {
        let c = r.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!((c.level, c.count), (Level::Error, 0), "{id}");
    }

    // Valid with warnings: exactly the three missing-rate warnings.
    assert_eq!(r.verdict, Verdict::ValidWithWarnings);
    assert_eq!((r.totals.errors, r.totals.warnings), (0, 3));
    let warned: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(|f| (f.check.as_str(), f.column.as_deref().unwrap()))
        .collect();
    assert_eq!(
        warned,
        [
            ("completeness.missing_rate", "temp_c"),
            ("completeness.missing_rate", "vibration_g"),
            ("completeness.missing_rate", "current_a")
        ]
    );
    // Every device is sampled every 10 s without a gap; dropouts last at most 5 rows.
    for d in &r.per_device {
        assert_eq!(
            (d.rows, d.interval_s, d.gaps),
            (2160, Some(10.0), 0),
            "{}",
            d.id
        );
        assert!(d.longest_missing_run.values().all(|&n| n <= 5));
    }
}

#[test]
fn seed_rows_come_back_validated_and_whole() {
    let params = ValidationParams::default().check().unwrap();
    let path = seed_csv();
    let r = validate_file(&path, &opts(), &params, None).unwrap();
    let plain = read_csv(&path, &opts()).unwrap();
    let mut ts = Vec::with_capacity(54_000);
    let mut chunks = 0;
    for chunk in ValidatedChunks::open(&path, &opts(), &params, &r, 10_000).unwrap() {
        let b = chunk.unwrap();
        ts.extend_from_slice(b.timestamps());
        chunks += 1;
    }
    assert_eq!(chunks, 6);
    assert_eq!(ts, plain.timestamps());

    // The same rows in memory give the same verdict and statistics.
    let (mem, validated) = validate_batch(plain, &params);
    assert_eq!(mem.verdict, Verdict::ValidWithWarnings);
    assert_eq!(mem.columns, r.columns);
    assert_eq!(mem.checks, r.checks);
    assert_eq!(validated.unwrap().len(), 54_000);
}
