//! Validation against declared signals: a declared signal the input lacks rejects
//! it, naming the column; a signal column not declared is a warning; without a
//! declaration the signals are the header's and neither check finds anything.

use std::fs;

use itap_telemetry::{Batch, BatchBuilder, ReadOptions, Schema, Signal, State};
use itap_validate::ParamGuard;
use itap_validate::{
    Check, Error, Finding, Level, Policy, Report, Scope, Severity, ValidatedChunks,
    ValidationParams, Verdict, validate_batch, validate_file, validate_reader,
};

const MISSING: &str = "schema.missing_signal";
const UNDECLARED: &str = "schema.undeclared_column";

/// Two devices, six clean rows each, signals `temp_c` and `rpm` (no `voltage_v`).
fn csv(header: &str) -> String {
    let mut s = format!("{header}\n");
    for i in 0..6 {
        for d in ["A", "B"] {
            s.push_str(&format!(
                "2026-01-01T00:00:{:02}Z,{d},{:.1},{}\n",
                i * 10,
                50.0 + i as f64 * 0.1,
                1500 + i
            ));
        }
    }
    s
}

/// The same rows as a batch.
fn batch() -> Batch {
    let schema = Schema::new(vec![Signal::new("temp_c"), Signal::new("rpm")]).unwrap();
    let mut b = BatchBuilder::new(schema, false, false, false);
    for i in 0..6i64 {
        for d in ["A", "B"] {
            let code = b.device_code(d);
            let values = [50.0 + i as f64 * 0.1, 1500.0 + i as f64];
            b.push(
                1_767_225_600_000_000 + i * 10_000_000,
                code,
                &values,
                State::Run,
                0,
                0,
            )
            .unwrap();
        }
    }
    b.finish()
}

fn declaring(names: &[&str]) -> ValidationParams {
    ValidationParams::default()
        .now(Some("2026-06-01T00:00:00Z"))
        .declared_signals(Some(names.iter().map(|&n| n.to_owned()).collect()))
}

fn on_file(text: &str, p: &ValidationParams) -> Report {
    validate_reader(
        text.as_bytes(),
        "declared.csv",
        &ReadOptions::default(),
        &p.clone().check().unwrap(),
        None,
    )
    .unwrap()
}

fn only<'a>(r: &'a Report, id: &str) -> &'a Finding {
    let found: Vec<_> = r.findings_of(id).collect();
    assert_eq!(found.len(), 1, "{id}: {:#?}", r.findings);
    found[0]
}

#[test]
fn a_missing_declared_signal_rejects_a_batch_naming_the_column() {
    let p = declaring(&["temp_c", "rpm", "voltage_v"]);
    let (report, result) = validate_batch(batch(), &p.check().unwrap());
    assert_eq!(report.verdict, Verdict::Rejected);
    assert_eq!(report.rows_accepted, 0);
    assert_eq!(
        result.unwrap_err(),
        batch(),
        "nothing storable: the batch comes back"
    );
    let f = only(&report, MISSING);
    assert_eq!(
        (f.severity, f.scope, f.count, f.column.as_deref()),
        (Severity::Error, Scope::File, 1, Some("voltage_v"))
    );
    assert!(
        f.message.contains("`voltage_v`") && f.message.contains("add the column"),
        "{}",
        f.message
    );
    assert_eq!(
        f.examples[0].detail,
        "no column `voltage_v`; the input's signals are temp_c, rpm"
    );
    assert!(report.first_error().unwrap().contains("voltage_v"));
    assert_eq!(report.count_of(UNDECLARED), 0);
}

#[test]
fn a_missing_declared_signal_rejects_a_file_naming_the_column_under_either_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_voltage.csv");
    fs::write(&path, csv("timestamp,device_id,temp_c,rpm")).unwrap();
    let opts = ReadOptions::default();
    for policy in [Policy::Reject, Policy::Quarantine] {
        let p = declaring(&["voltage_v", "temp_c", "rpm", "current_a"])
            .policy(policy)
            .check()
            .unwrap();
        let report = validate_file(&path, &opts, &p, None).unwrap();
        assert_eq!(report.verdict, Verdict::Rejected, "{policy:?}");
        assert_eq!((report.rows, report.rows_accepted), (12, 0));
        let missing: Vec<_> = report
            .findings_of(MISSING)
            .map(|f| (f.column.as_deref().unwrap(), f.severity))
            .collect();
        assert_eq!(
            missing,
            [
                ("voltage_v", Severity::Error),
                ("current_a", Severity::Error)
            ]
        );
        match ValidatedChunks::open(&path, &opts, &p, &report, 100).unwrap_err() {
            Error::Rejected { first, .. } => assert!(
                first.starts_with("schema.missing_signal on `voltage_v`"),
                "{first}"
            ),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn an_undeclared_column_is_a_warning_and_the_rows_are_stored() {
    let p = declaring(&["temp_c"]).check().unwrap();
    let (report, result) = validate_batch(batch(), &p);
    assert_eq!(
        report.verdict,
        Verdict::ValidWithWarnings,
        "{:#?}",
        report.findings
    );
    let f = only(&report, UNDECLARED);
    assert_eq!(
        (f.severity, f.scope, f.column.as_deref()),
        (Severity::Warning, Scope::File, Some("rpm"))
    );
    assert!(f.message.contains("`rpm`"), "{}", f.message);
    assert_eq!(result.unwrap().len(), 12);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.csv");
    fs::write(&path, csv("timestamp,device_id,temp_c,rpm")).unwrap();
    let opts = ReadOptions::default();
    let report = validate_file(&path, &opts, &p, None).unwrap();
    assert_eq!(report.verdict, Verdict::ValidWithWarnings);
    assert_eq!(only(&report, UNDECLARED).column.as_deref(), Some("rpm"));
    assert_eq!(report.count_of(MISSING), 0);
    let rows: usize = ValidatedChunks::open(&path, &opts, &p, &report, 5)
        .unwrap()
        .map(|c| c.unwrap().len())
        .sum();
    assert_eq!(rows, 12);
    assert_eq!(
        report.schema.unwrap().names().collect::<Vec<_>>(),
        ["temp_c", "rpm"]
    );
}

#[test]
fn without_a_declaration_the_signals_are_the_headers() {
    let p = ValidationParams::default()
        .now(Some("2026-06-01T00:00:00Z"))
        .check()
        .unwrap();
    assert_eq!(p.params().declared_signals, None);
    let (report, result) = validate_batch(batch(), &p);
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    assert!(result.is_ok());
    let report = on_file(
        &csv("timestamp,device_id,temp_c,rpm"),
        &ValidationParams::default(),
    );
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
    for id in [MISSING, UNDECLARED] {
        assert_eq!(report.count_of(id), 0);
        let c = report.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.count, 0);
    }
    // Declaring exactly the header's signals, in another order, finds nothing.
    let report = on_file(
        &csv("timestamp,device_id,temp_c,rpm"),
        &declaring(&["rpm", "temp_c"]),
    );
    assert_eq!(report.verdict, Verdict::Valid, "{:#?}", report.findings);
}

#[test]
fn the_detail_says_why_a_declared_signal_was_not_found() {
    let r = on_file(
        &csv("timestamp,device_id,Temp_C,rpm"),
        &declaring(&["temp_c", "rpm"]),
    );
    let f = only(&r, MISSING);
    assert_eq!(f.column.as_deref(), Some("temp_c"));
    assert_eq!(
        f.examples[0].detail,
        "the input has a signal `Temp_C`; signal names are case-sensitive"
    );
    assert_eq!(only(&r, UNDECLARED).column.as_deref(), Some("Temp_C"));

    // A declared column that is present but not numeric is not read as a signal.
    let mut text = String::from("timestamp,device_id,temp_c,rpm\n");
    for i in 0..4 {
        text.push_str(&format!(
            "2026-01-01T00:00:{:02}Z,A,warm,{}\n",
            i * 10,
            1500 + i
        ));
    }
    let r = on_file(&text, &declaring(&["temp_c", "rpm"]));
    let f = only(&r, MISSING);
    assert!(
        f.examples[0]
            .detail
            .starts_with("`temp_c` is a column of the input but is not read as a signal"),
        "{}",
        f.examples[0].detail
    );
}

#[test]
fn severities_are_configurable_like_any_other_check() {
    let p = declaring(&["temp_c", "voltage_v"])
        .severity(Check::MissingSignal, Level::Warning)
        .severity(Check::UndeclaredColumn, Level::Off);
    let r = on_file(&csv("timestamp,device_id,temp_c,rpm"), &p);
    assert_eq!(r.verdict, Verdict::ValidWithWarnings);
    assert_eq!(only(&r, MISSING).severity, Severity::Warning);
    assert_eq!(r.count_of(UNDECLARED), 0);
    let level = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().level;
    assert_eq!(
        (level(MISSING), level(UNDECLARED)),
        (Level::Warning, Level::Off)
    );
    assert_eq!(Check::from_id(MISSING), Some(Check::MissingSignal));
    assert_eq!(Check::MissingSignal.default_severity(), Severity::Error);
    assert_eq!(
        Check::UndeclaredColumn.default_severity(),
        Severity::Warning
    );
    assert!(!Check::MissingSignal.is_fixed() && !Check::UndeclaredColumn.is_fixed());
}

#[test]
fn a_report_made_with_a_declaration_reads_back_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    fs::write(&path, csv("timestamp,device_id,temp_c,rpm")).unwrap();
    let opts = ReadOptions::default();
    let declared = declaring(&["temp_c", "rpm"]).check().unwrap();
    let report = validate_file(&path, &opts, &declared, None).unwrap();
    assert_eq!(report.verdict, Verdict::Valid);
    let plain = declaring(&[]).declared_signals(None).check().unwrap();
    assert!(matches!(
        ValidatedChunks::open(&path, &opts, &plain, &report, 5),
        Err(Error::ReportMismatch { .. })
    ));
    assert!(ValidatedChunks::open(&path, &opts, &declared, &report, 5).is_ok());
}
