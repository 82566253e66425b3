//! The validation policy through the library: a real-world file whose clock was
//! set back (one device repeats an hour with other values) is refused under
//! `reject`, and under `quarantine` its conflicting rows are set aside into a
//! quarantine CSV with their reasons while the rest is stored, trained on and
//! scored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use itap::eval::EvalParams;
use itap::features::FeatureParams;
use itap::store::{RangeQuery, Store};
use itap::telemetry::{Batch, ReadOptions};
use itap::validate::{Policy, QUARANTINE_REASONS_COLUMN, ValidationParams};
use itap::{ParamGuard, QUARANTINE_FILE, RunParams, Source, StoreSettings, TrainingSet};

/// 3 devices at 1 min for 4 h (2026-10-25, the night clocks go back in Europe);
/// DEV-A's clock is set back an hour at 02:00, so its 01:00–01:59 appears twice,
/// the second time (file lines 362–538) with the values of the next real hour.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/repeated_hour.csv")
}

const ROWS: u64 = 780;
const REPEATED: u64 = 60;

fn params(policy: Policy, db: &Path, out: &Path) -> RunParams {
    RunParams {
        source: Source::Csv(fixture()),
        read: ReadOptions::default(),
        validation: ValidationParams::default().policy(policy).check().unwrap(),
        store: StoreSettings {
            url: format!("sqlite://{}", db.display()),
            ..StoreSettings::default()
        }
        .check()
        .unwrap(),
        features: FeatureParams::default().check().unwrap(),
        detector: itap::default_detector().check().unwrap(),
        training: TrainingSet::default(),
        eval: EvalParams::default().check().unwrap(),
        alerts: itap::eval::AlertParams::default().check().unwrap(),
        out_dir: out.to_path_buf(),
        config_json: serde_json::json!({"test": "quarantine"}),
        memory_rows: 0,
        group_rows: itap::DEFAULT_GROUP_ROWS,
    }
}

fn stored(db: &Path) -> Batch {
    let rt = itap::store_runtime().unwrap();
    rt.block_on(async {
        let store = Store::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let b = store
            .load_range("telemetry", &RangeQuery::all())
            .await
            .unwrap();
        store.close().await;
        b
    })
}

/// (device, timestamp, temp_c bits) of every row: what distinguishes the two
/// copies of the repeated hour.
fn rows(b: &Batch) -> BTreeSet<(String, i64, u64)> {
    let temp = b.signal_by_name("temp_c").unwrap();
    (0..b.len())
        .map(|r| {
            (
                b.device_of(r).to_owned(),
                b.timestamps()[r],
                temp[r].to_bits(),
            )
        })
        .collect()
}

/// The quarantine file's data lines: (reason, device, timestamp as found). The
/// fixture's own fields hold no comma, so the reason is what precedes the last six.
fn quarantine_lines(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{QUARANTINE_REASONS_COLUMN},timestamp,device_id,state,rpm,temp_c,vibration_g")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(7, ',').collect();
            assert_eq!(f.len(), 7, "{l}");
            (f[6].to_owned(), f[4].to_owned(), f[5].to_owned())
        })
        .collect()
}

#[test]
fn the_fixture_repeats_an_hour_with_conflicting_values() {
    let report = itap::validate::validate_file(
        fixture(),
        &ReadOptions::default(),
        &ValidationParams::default().check().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(report.rows, ROWS);
    assert_eq!(report.count_of("time.duplicate_conflict"), REPEATED);
    assert_eq!(report.count_of("time.clock_jump_back"), 1);
    assert_eq!(report.rows_with_errors, REPEATED);
    assert!(!report.verdict.is_storable());
}

#[test]
fn reject_refuses_the_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("itap.db"), dir.path().join("out"));
    match itap::run(&params(Policy::Reject, &db, &out), &mut |_| {}) {
        Err(itap::Error::Refused { report, .. }) => {
            assert_eq!(report.policy, Policy::Reject);
            assert_eq!(report.rows_with_errors, REPEATED);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!db.exists(), "the store was not opened");
    assert!(!out.exists(), "no artifact, no quarantine file");

    // read_validated alone: a quarantine path is not used under reject.
    let q = dir.path().join("q.csv");
    let reject = ValidationParams::default().check().unwrap();
    let e = itap::read_validated(&fixture(), &ReadOptions::default(), &reject, Some(&q));
    assert!(matches!(e, Err(itap::Error::Refused { .. })), "{e:?}");
    assert!(!q.exists());
}

#[test]
fn quarantine_sets_the_repeated_hour_aside_and_runs_on_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("itap.db"), dir.path().join("out"));
    let mut stages = Vec::new();
    let summary = itap::run(&params(Policy::Quarantine, &db, &out), &mut |t| {
        stages.push((t.stage.clone(), t.detail.clone()))
    })
    .unwrap();
    assert_eq!(summary.rows_quarantined, REPEATED);
    let q = out.join(QUARANTINE_FILE);
    assert!(summary.artifacts.contains(&q));
    let (stage, detail) = &stages[0];
    assert_eq!(stage, "read+validate");
    assert!(detail.contains("60 set aside"), "{detail}");

    // Every set-aside row is DEV-A's second 01:xx with the conflict as reason.
    let lines = quarantine_lines(&q);
    assert_eq!(lines.len() as u64, REPEATED);
    for (i, (reason, device, ts)) in lines.iter().enumerate() {
        assert_eq!(device, "DEV-A");
        assert_eq!(ts, &format!("2026-10-25T01:{i:02}:00"));
        assert!(reason.starts_with("line "), "{reason}");
        assert!(reason.contains("time.duplicate_conflict"), "{reason}");
    }

    // Stored, trained and scored: exactly the other rows (first copies kept).
    let (valid, _) = itap::read_validated(
        &fixture(),
        &ReadOptions::default(),
        &ValidationParams::default()
            .policy(Policy::Quarantine)
            .check()
            .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(valid.len() as u64, ROWS - REPEATED);
    let db_rows = stored(&db);
    assert_eq!(db_rows.len() as u64, ROWS - REPEATED);
    assert_eq!(rows(&db_rows), rows(&valid));
    let keys: BTreeSet<(String, i64)> =
        rows(&db_rows).into_iter().map(|(d, t, _)| (d, t)).collect();
    assert_eq!(keys.len() as u64, ROWS - REPEATED, "one row per key");
    let scores = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count() as u64 - 1, ROWS - REPEATED);
}

/// Streamed (more rows than memory_rows), the quarantine works the same: the
/// same rows set aside with the same reasons, the same rows stored, and the
/// analysis of the rest equal to the in-memory run's.
#[test]
fn a_streamed_run_under_quarantine_sets_the_same_rows_aside() {
    let dir = tempfile::tempdir().unwrap();
    let held = params(
        Policy::Quarantine,
        &dir.path().join("held.db"),
        &dir.path().join("held"),
    );
    let whole = itap::run(&held, &mut |_| {}).unwrap();
    let mut streamed = params(
        Policy::Quarantine,
        &dir.path().join("streamed.db"),
        &dir.path().join("streamed"),
    );
    streamed.memory_rows = 100;
    // One group: the fleet-wide parts from every device, as in memory.
    streamed.group_rows = 1_000;
    let mut stages = Vec::new();
    let got = itap::run(&streamed, &mut |t| stages.push(t.stage.clone())).unwrap();
    assert_eq!(stages[..3], ["read+validate", "set aside", "ingest"]);
    assert_eq!(got.rows_quarantined, REPEATED);
    assert_eq!(
        quarantine_lines(&dir.path().join("streamed").join(QUARANTINE_FILE)),
        quarantine_lines(&dir.path().join("held").join(QUARANTINE_FILE))
    );
    assert_eq!(
        rows(&stored(&dir.path().join("streamed.db"))),
        rows(&stored(&dir.path().join("held.db")))
    );
    assert_eq!(got.evaluation, whole.evaluation);
    assert_eq!(got.alerts, whole.alerts);
}

#[test]
fn a_file_level_error_refuses_even_under_quarantine_and_writes_no_quarantine_file() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.csv");
    let p = ValidationParams::default()
        .policy(Policy::Quarantine)
        .declared_signals(Some(vec!["temp_c".into(), "pressure".into()]))
        .check()
        .unwrap();
    let e = itap::read_validated(&fixture(), &ReadOptions::default(), &p, Some(&q));
    match e {
        Err(itap::Error::Refused { reason, .. }) => {
            assert!(reason.contains("pressure"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!q.exists(), "a refused file leaves no quarantine file");
}
