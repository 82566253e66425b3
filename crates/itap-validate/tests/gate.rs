//! The type gate: validated rows come only from a report that accepts them, for the
//! file it was made for, with the settings it was made with.

use itap_validate::ParamGuard;
use std::fs;
use std::path::Path;

use itap_telemetry::{
    BatchBuilder, ReadOptions, Schema, Signal, SimParams, State, TimeZone, simulate, write_csv,
};
use itap_validate::{
    Check, Error, Level, Policy, QUARANTINE_REASONS_COLUMN, ValidatedChunks, ValidationParams,
    Verdict, sha256_file, validate_batch, validate_file,
};

const CSV: &str = "timestamp,device_id,rpm,temp_c\n\
                   2026-01-01T00:00:00Z,A,1500,50.0\n\
                   2026-01-01T00:00:10Z,A,1501,200.0\n\
                   2026-01-01T00:00:20Z,A,1502,50.2\n\
                   2026-01-01T00:00:00Z,B,abc,50.0\n\
                   2026-01-01T00:00:10Z,B,1500,50.1\n";

fn opts() -> ReadOptions {
    ReadOptions {
        declared: Schema::default().signals().to_vec(),
        ..ReadOptions::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn count_rows(chunks: ValidatedChunks) -> usize {
    chunks.map(|c| c.unwrap().len()).sum()
}

#[test]
fn a_rejected_file_yields_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.csv", CSV);
    let params = ValidationParams::default().check().unwrap();
    let report = validate_file(&path, &opts(), &params, None).unwrap();
    assert_eq!(report.verdict, Verdict::Rejected);
    assert_eq!(report.rows_accepted, 0);
    let e = ValidatedChunks::open(&path, &opts(), &params, &report, 100).unwrap_err();
    match &e {
        Error::Rejected { errors, first, .. } => {
            assert_eq!(*errors, 2);
            assert!(
                first.starts_with("schema.type on `rpm` at line 5"),
                "{first}"
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn quarantine_yields_the_good_rows_and_writes_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.csv", CSV);
    let qpath = dir.path().join("out/quarantine.csv");
    let params = ValidationParams::default()
        .policy(Policy::Quarantine)
        .check()
        .unwrap();
    let report = validate_file(&path, &opts(), &params, Some(&qpath)).unwrap();
    assert_eq!(report.verdict, Verdict::Quarantined);
    assert_eq!((report.rows_with_errors, report.rows_accepted), (2, 3));
    let chunks = ValidatedChunks::open(&path, &opts(), &params, &report, 2).unwrap();
    assert_eq!(chunks.rows_expected(), 3);
    let mut keys = Vec::new();
    for c in chunks {
        let b = c.unwrap();
        keys.extend((0..b.len()).map(|r| (b.device_of(r).to_owned(), b.signal(0)[r])));
    }
    assert_eq!(
        keys,
        [
            ("A".to_owned(), 1500.0),
            ("A".to_owned(), 1502.0),
            ("B".to_owned(), 1500.0)
        ]
    );

    let q = fs::read_to_string(&qpath).unwrap();
    let lines: Vec<_> = q.lines().collect();
    assert_eq!(lines.len(), 3, "{q}");
    assert_eq!(
        lines[0],
        format!("{QUARANTINE_REASONS_COLUMN},timestamp,device_id,rpm,temp_c")
    );
    assert_eq!(
        lines[1],
        "\"line 3: range.out_of_range: temp_c = 200: outside the declared range [-40, 150]\",\
         2026-01-01T00:00:10Z,A,1501,200.0"
    );
    assert_eq!(
        lines[2],
        "line 5: schema.type: rpm = abc: not a number,2026-01-01T00:00:00Z,B,abc,50.0"
    );
    let names: Vec<_> = fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["quarantine.csv"],
        "no temporary file is left behind"
    );

    // Fixed by hand, the quarantined rows validate: the reasons column is ignored.
    let fixed = q.replace(",200.0", ",51.0").replace(",abc,", ",1499,");
    let fixed_path = write(dir.path(), "fixed.csv", &fixed);
    let again = validate_file(&fixed_path, &opts(), &params, None).unwrap();
    assert_eq!(again.verdict, Verdict::Valid, "{:#?}", again.findings);
    assert_eq!(again.count_of("schema.unknown_column"), 1);
    assert_eq!(again.rows, 2);
}

#[test]
fn a_changed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough (20,000 rows, 0.7 MB) that opening reads only its beginning.
    let mut good = String::from("timestamp,device_id,rpm\n");
    for i in 0..20_000i64 {
        good.push_str(&format!(
            "{},A,{}\n",
            itap_telemetry::format_timestamp((1_767_225_600 + i * 10) * 1_000_000),
            1500 + i % 2
        ));
    }
    let good = good.as_str();
    let changed = |v: &str| {
        let mut s = good.to_owned();
        let at = s.len() - 5; // the last row's rpm
        s.replace_range(at..at + 4, v);
        s
    };
    let path = write(dir.path(), "t.csv", good);
    let params = ValidationParams::default().check().unwrap();
    let report = validate_file(&path, &opts(), &params, None).unwrap();
    assert_eq!(report.verdict, Verdict::Valid);
    assert_eq!(report.input.sha256, Some(sha256_file(&path).unwrap()));

    // Changed before opening: refused at once.
    fs::write(&path, changed("1502")).unwrap();
    let e = ValidatedChunks::open(&path, &opts(), &params, &report, 10).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");

    // Changed after opening, while being read: the last item is an error.
    fs::write(&path, good).unwrap();
    let mut chunks = ValidatedChunks::open(&path, &opts(), &params, &report, 10).unwrap();
    fs::write(&path, changed("1503")).unwrap();
    let items: Vec<_> = chunks.by_ref().collect();
    assert!(
        matches!(items.last(), Some(Err(Error::DigestMismatch { .. }))),
        "{items:?}"
    );
    assert!(chunks.next().is_none());
}

#[test]
fn a_report_for_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.csv",
        "timestamp,device_id,rpm\n2026-01-01T00:00:00,A,1500\n",
    );
    let params = ValidationParams::default().check().unwrap();
    let report = validate_file(&path, &opts(), &params, None).unwrap();
    let mismatch = |e: Error| match e {
        Error::ReportMismatch { reason, .. } => reason,
        other => panic!("{other}"),
    };
    let other_params = ValidationParams::default().gap_factor(4.0).check().unwrap();
    let e = ValidatedChunks::open(&path, &opts(), &other_params, &report, 10).unwrap_err();
    assert!(mismatch(e).contains("validation parameters"));
    let mut other_opts = opts();
    other_opts.timezone = TimeZone::fixed(3600).unwrap();
    let e = ValidatedChunks::open(&path, &other_opts, &params, &report, 10).unwrap_err();
    assert!(mismatch(e).contains("read options"));
    let undeclared = ReadOptions::default();
    let e = ValidatedChunks::open(&path, &undeclared, &params, &report, 10).unwrap_err();
    assert!(mismatch(e).contains("signal declarations"));
    assert_eq!(
        count_rows(ValidatedChunks::open(&path, &opts(), &params, &report, 10).unwrap()),
        1
    );
}

#[test]
fn a_report_read_back_from_json_still_opens_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.csv");
    let sim = SimParams::default().devices(3).hours(0.5).check().unwrap();
    write_csv(&simulate(&sim), &path).unwrap();
    let params = ValidationParams::default().check().unwrap();
    let report = validate_file(&path, &opts(), &params, None).unwrap();
    assert!(report.verdict.is_storable(), "{:#?}", report.findings);
    let back = itap_validate::Report::from_json(&report.to_json()).unwrap();
    assert_eq!(
        count_rows(ValidatedChunks::open(&path, &opts(), &params, &back, 100).unwrap()),
        3 * 180
    );
}

fn batch_with_a_bad_row() -> itap_telemetry::Batch {
    let schema = Schema::new(vec![Signal::new("temp_c").range(-40.0, 150.0)]).unwrap();
    let mut b = BatchBuilder::new(schema, true, false, false);
    let a = b.device_code("A");
    for (i, v) in [50.0, 500.0, 51.0].into_iter().enumerate() {
        b.push(i as i64 * 10_000_000, a, &[v], State::Run, 0, 0)
            .unwrap();
    }
    b.finish()
}

#[test]
fn validate_batch_quarantines_or_hands_the_batch_back() {
    let reject = ValidationParams::default().check().unwrap();
    let original = batch_with_a_bad_row();
    let (report, result) = validate_batch(original.clone(), &reject);
    assert_eq!(report.verdict, Verdict::Rejected);
    let f = report.findings_of("range.out_of_range").next().unwrap();
    assert_eq!((f.examples[0].row, f.examples[0].line), (Some(1), None));
    assert_eq!(
        result.unwrap_err(),
        original,
        "a rejected batch comes back whole"
    );

    let quarantine = ValidationParams::default()
        .policy(Policy::Quarantine)
        .check()
        .unwrap();
    let (report, result) = validate_batch(original.clone(), &quarantine);
    assert_eq!(report.verdict, Verdict::Quarantined);
    let good = result.unwrap();
    assert_eq!(good.signal(0), [50.0, 51.0]);
    assert_eq!(good.get().len(), 2);
    assert_eq!(good.into_inner().timestamps(), [0, 20_000_000]);

    let lenient = ValidationParams::default()
        .severity(Check::OutOfRange, Level::Warning)
        .check()
        .unwrap();
    let (report, result) = validate_batch(original.clone(), &lenient);
    assert_eq!(report.verdict, Verdict::ValidWithWarnings);
    assert_eq!(*result.unwrap(), original);
}

#[test]
fn the_duplicate_index_is_bounded_and_says_so() {
    // Timestamps that go back by ever longer steps: every row starts a new run of
    // the exact index.
    let mut csv = String::from("timestamp,device_id,rpm\n");
    for i in 0..3000i64 {
        let t = 1_767_225_600 + 10_000_000 - i * i;
        csv.push_str(&format!(
            "{},A,1500\n",
            itap_telemetry::format_timestamp(t * 1_000_000)
        ));
    }
    // ... and the last row repeats row 2000's key, a thousand rows back.
    let earlier = csv.lines().nth(2001).unwrap().to_owned();
    csv.push_str(&earlier);
    csv.push('\n');
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "scrambled.csv", &csv);
    let opts = ReadOptions::default();

    let exact = ValidationParams::default()
        .clock_jump("1d")
        .duplicate_window(10)
        .severity(Check::OutOfOrder, Level::Off)
        .check()
        .unwrap();
    let r = validate_file(&path, &opts, &exact, None).unwrap();
    assert_eq!(r.count_of("time.duplicate_tracking_limited"), 0);
    assert_eq!(r.count_of("time.duplicate_unverified"), 1, "found exactly");

    let bounded = ValidationParams::default()
        .clock_jump("1d")
        .duplicate_window(10)
        .max_tracked_runs(1000)
        .severity(Check::OutOfOrder, Level::Off)
        .check()
        .unwrap();
    let r = validate_file(&path, &opts, &bounded, None).unwrap();
    let f = r
        .findings_of("time.duplicate_tracking_limited")
        .next()
        .unwrap();
    assert_eq!(f.severity, itap_validate::Severity::Warning);
    assert!(f.examples[0].line.is_some());
    assert_eq!(
        r.count_of("time.duplicate_unverified"),
        0,
        "the documented limit: a key beyond the window, after the index filled, is missed"
    );
}

#[test]
fn validated_chunks_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<ValidatedChunks>();
    assert_send::<itap_validate::Validated<itap_telemetry::Batch>>();
}
