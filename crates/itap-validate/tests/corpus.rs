//! A corpus of broken files: each gives its specific finding, with line and column,
//! and none panics.

use itap_telemetry::{ReadOptions, Schema};
use itap_validate::ParamGuard;
use itap_validate::{
    Check, Finding, Level, Policy, Report, Severity, ValidationParams, Verdict, validate_reader,
};

const HEADER: &str = "timestamp,device_id,state,rpm,temp_c,error_code,anomaly_tag\n";

fn opts() -> ReadOptions {
    ReadOptions {
        declared: Schema::default().signals().to_vec(),
        ..ReadOptions::default()
    }
}

fn params() -> ValidationParams {
    ValidationParams::default().now(Some("2026-06-01T00:00:00Z"))
}

fn validate_with(bytes: &[u8], p: ValidationParams) -> Report {
    validate_reader(bytes, "corpus.csv", &opts(), &p.check().unwrap(), None).unwrap()
}

fn validate(bytes: &[u8]) -> Report {
    validate_with(bytes, params())
}

/// Rows at 10 s steps for device A, from `2026-01-01T00:00:00Z`.
fn good_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "2026-01-01T00:{:02}:{:02}Z,A,RUN,{},{:.1},0,\n",
                i / 6,
                (i % 6) * 10,
                1500 + i % 7,
                50.0 + (i % 5) as f64 * 0.1
            )
        })
        .collect()
}

fn only<'a>(r: &'a Report, id: &str) -> &'a Finding {
    let mut it = r.findings_of(id);
    let f = it
        .next()
        .unwrap_or_else(|| panic!("no {id} finding in {:#?}", r.findings));
    assert!(it.next().is_none(), "more than one {id} finding");
    f
}

fn error_ids(r: &Report) -> Vec<&str> {
    r.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.check.as_str())
        .collect()
}

#[test]
fn a_clean_file_is_valid() {
    let r = validate(format!("{HEADER}{}", good_rows(30)).as_bytes());
    assert_eq!(r.verdict, Verdict::Valid, "{:#?}", r.findings);
    assert_eq!((r.rows, r.rows_accepted, r.devices), (30, 30, 1));
    assert!(r.findings.is_empty());
    assert_eq!(r.per_device[0].interval_s, Some(10.0));
    assert!(r.checks.iter().all(|c| c.count == 0));
    assert_eq!(r.checks.len(), Check::ALL.len());
}

#[test]
fn wrong_field_counts() {
    let csv = format!(
        "{HEADER}{}2026-01-01T00:10:00Z,A,RUN,1500,50.0,0\n2026-01-01T00:10:10Z,A,RUN,1500,50.0,0,,extra\n",
        good_rows(3)
    );
    let r = validate(csv.as_bytes());
    let f = only(&r, "schema.field_count");
    assert_eq!(f.count, 2);
    assert_eq!(f.examples[0].line, Some(5));
    assert_eq!(f.examples[0].value, "6");
    assert_eq!(f.examples[0].detail, "6 fields where the header has 7");
    assert_eq!(f.examples[1].line, Some(6));
    assert_eq!(f.examples[1].value, "8");
    assert_eq!(r.verdict, Verdict::Rejected);
    assert_eq!((r.rows, r.rows_with_errors, r.rows_accepted), (5, 2, 0));
}

#[test]
fn non_utf8_bytes() {
    let mut csv = format!("{HEADER}{}", good_rows(2)).into_bytes();
    csv.extend_from_slice(b"2026-01-01T00:01:00Z,\xFF\xFEdev,RUN,1500,50.0,0,\n");
    csv.extend_from_slice(b"2026-01-01T00:01:10Z,A,RUN,15\xC300,50.0,0,\n");
    csv.extend_from_slice(b"2026-01-01T00:01:20Z,A,RUN,1500,50.0,0,fault\xE9\n");
    let r = validate(&csv);
    let f = r
        .findings_of("schema.encoding")
        .map(|f| {
            (
                f.column.clone().unwrap(),
                f.examples[0].line.unwrap(),
                f.count,
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        f,
        [
            ("device_id".to_owned(), 4, 1),
            ("rpm".to_owned(), 5, 1),
            ("anomaly_tag".to_owned(), 6, 1)
        ]
    );
    assert_eq!(r.verdict, Verdict::Rejected);
    // Non-UTF-8 in a column nobody reads is no finding.
    let mut ignored = b"timestamp,device_id,rpm,comment\n".to_vec();
    ignored.extend_from_slice(b"2026-01-01T00:00:00Z,A,1500,caf\xE9\n");
    let r = validate(&ignored);
    assert_eq!(error_ids(&r), Vec::<&str>::new());
    assert_eq!(
        only(&r, "schema.unknown_column").column.as_deref(),
        Some("comment")
    );
}

#[test]
fn a_bom_is_noted_and_skipped() {
    let csv = format!("\u{feff}{HEADER}{}", good_rows(5));
    let r = validate(csv.as_bytes());
    let f = only(&r, "schema.bom");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(r.layout.as_ref().unwrap().timestamp, "timestamp");
    assert_eq!(r.verdict, Verdict::Valid);
    assert_eq!(r.rows, 5);
}

#[test]
fn crlf_endings_read_like_lf() {
    let lf = format!("{HEADER}{}", good_rows(20));
    let crlf = lf.replace('\n', "\r\n");
    let (a, b) = (validate(lf.as_bytes()), validate(crlf.as_bytes()));
    assert_eq!(b.verdict, Verdict::Valid, "{:#?}", b.findings);
    assert_eq!(a.columns, b.columns);
    assert_eq!(a.rows, b.rows);
    assert_ne!(a.input.sha256, b.input.sha256);
}

#[test]
fn lines_are_true_with_crlf_blank_lines_and_quoted_newlines() {
    let csv = "timestamp,device_id,rpm,note\r\n\
               2026-01-01T00:00:00Z,A,1500,\"two\r\nlines\"\r\n\
               \r\n\
               2026-01-01T00:00:10Z,A,oops,x\r\n\
               \n\
               2026-01-01T00:00:20Z,A,1500\r\n";
    let r = validate(csv.as_bytes());
    assert_eq!(only(&r, "schema.type").examples[0].line, Some(5));
    assert_eq!(only(&r, "schema.field_count").examples[0].line, Some(7));
    assert_eq!(r.rows, 3);
}

#[test]
fn an_empty_file_has_no_header() {
    let r = validate(b"");
    let f = only(&r, "schema.no_header");
    assert_eq!(f.severity, Severity::Error);
    assert_eq!(r.verdict, Verdict::Rejected);
    assert_eq!(r.rows, 0);
    assert_eq!(r.input.bytes, Some(0));
    assert_eq!(
        r.input.sha256.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
}

#[test]
fn a_header_alone_has_no_rows() {
    let r = validate(HEADER.as_bytes());
    assert_eq!(only(&r, "schema.no_rows").severity, Severity::Warning);
    assert_eq!(r.verdict, Verdict::ValidWithWarnings);
    assert_eq!((r.rows, r.rows_accepted), (0, 0));
    assert!(r.time.is_none());
}

#[test]
fn quoted_fields_are_unquoted() {
    let csv = "timestamp,device_id,rpm,temp_c\n\
               \"2026-01-01T00:00:00Z\",\"press, line 2\",\"1500\",\"50.5\"\n\
               \"2026-01-01T00:00:10Z\",\"press, line 2\",1501,\"50.6\"\n";
    let r = validate(csv.as_bytes());
    assert_eq!(r.verdict, Verdict::Valid, "{:#?}", r.findings);
    assert_eq!(r.per_device[0].id, "press, line 2");
    assert_eq!(r.columns[1].max, Some(50.6));
}

#[test]
fn text_in_numeric_fields() {
    let csv = format!(
        "{HEADER}{}2026-01-01T00:00:30Z,A,RUN,fast,50.0,0,\n2026-01-01T00:00:40Z,A,RUN,1500,50.0,E5,\n",
        good_rows(3)
    );
    let r = validate(csv.as_bytes());
    let found: Vec<_> = r
        .findings_of("schema.type")
        .map(|f| {
            let e = &f.examples[0];
            (e.line, e.column.clone().unwrap(), e.value.clone())
        })
        .collect();
    assert_eq!(
        found,
        [
            (Some(5), "rpm".to_owned(), "fast".to_owned()),
            (Some(6), "error_code".to_owned(), "E5".to_owned())
        ]
    );
}

#[test]
fn nan_and_infinity_spellings() {
    let missing = ["", "NaN", "nan", "NAN", "-nan", "NA", "n/a", "null", "None"];
    let infinite = [
        "inf",
        "-inf",
        "+inf",
        "Inf",
        "INF",
        "Infinity",
        "-Infinity",
        "infinity",
        "1e999",
    ];
    let mut csv = String::from("timestamp,device_id,temp_c\n");
    for (i, v) in missing.iter().chain(&infinite).enumerate() {
        csv.push_str(&format!(
            "2026-01-01T00:{:02}:{:02}Z,A,{v}\n",
            i / 6,
            (i % 6) * 10
        ));
    }
    let r = validate(csv.as_bytes());
    let temp = &r.columns[0];
    assert_eq!(temp.missing, missing.len() as u64);
    assert_eq!(temp.non_finite, infinite.len() as u64);
    assert_eq!((temp.min, temp.max, temp.mean), (None, None, None));
    let f = only(&r, "range.non_finite");
    assert_eq!(f.count, infinite.len() as u64);
    assert_eq!(f.examples[0].line, Some(2 + missing.len() as u64));
    assert_eq!(f.examples[0].value, "inf");
    assert_eq!(f.examples[1].value, "-inf");
    assert!(r.findings_of("schema.type").next().is_none());
}

#[test]
fn offsets_are_converted_to_utc() {
    let csv = "timestamp,device_id,rpm\n\
               2026-01-01T02:00:00+02:00,A,1500\n\
               2026-01-01T00:00:10Z,A,1501\n\
               2025-12-31T19:00:20-0500,A,1502\n\
               2026-01-01 00:00:30,A,1503\n";
    let r = validate(csv.as_bytes());
    assert_eq!(r.verdict, Verdict::Valid, "{:#?}", r.findings);
    let t = r.time.unwrap();
    assert_eq!(
        (t.first.as_str(), t.last.as_str()),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z")
    );
    assert_eq!(r.per_device[0].interval_s, Some(10.0));
}

#[test]
fn duplicate_and_out_of_order_rows() {
    let csv = format!(
        "{HEADER}{}\
         2026-01-01T00:00:40Z,A,RUN,1504,50.4,0,\n\
         2026-01-01T00:00:20Z,A,RUN,1502,50.2,0,\n\
         2026-01-01T00:00:20Z,A,RUN,9999,50.2,0,\n\
         2026-01-01T00:00:15Z,A,RUN,1502,50.2,0,\n",
        good_rows(6)
    );
    let r = validate(csv.as_bytes());
    let equal = only(&r, "time.duplicate_equal");
    assert_eq!((equal.count, equal.examples[0].line), (2, Some(8)));
    assert_eq!(equal.examples[1].line, Some(9));
    assert_eq!(equal.severity, Severity::Warning);
    let conflict = only(&r, "time.duplicate_conflict");
    assert_eq!((conflict.count, conflict.examples[0].line), (1, Some(10)));
    assert_eq!(conflict.examples[0].value, "2026-01-01T00:00:20Z");
    assert_eq!(conflict.examples[0].column.as_deref(), Some("timestamp"));
    let ooo = only(&r, "time.out_of_order");
    let lines: Vec<_> = ooo.examples.iter().map(|e| e.line.unwrap()).collect();
    assert_eq!(lines, [8, 9, 11], "steps back of 10, 20 and 5 s");
    assert_eq!(
        ooo.examples[2].detail,
        "5 s before the device's previous row at 2026-01-01T00:00:20Z"
    );
    assert_eq!(r.verdict, Verdict::Rejected);
    assert_eq!(r.rows_with_errors, 1);
}

#[test]
fn a_missing_required_column() {
    let r = validate(b"device_id,rpm\nA,1500\n");
    let f = only(&r, "schema.missing_column");
    assert_eq!(f.examples[0].value, "timestamp");
    assert!(f.examples[0].detail.contains("device_id,rpm"), "{f:?}");
    assert_eq!(r.verdict, Verdict::Rejected);
    assert!(r.layout.is_none() && r.schema.is_none());

    let csv = "timestamp,rpm\n2026-01-01T00:00:00Z,1500\n";
    let r = validate_with(
        csv.as_bytes(),
        params().required_columns(["device_id", "rpm"]),
    );
    let f = only(&r, "schema.missing_column");
    assert_eq!((f.count, f.examples[0].value.as_str()), (1, "device_id"));
    assert_eq!(r.verdict, Verdict::Rejected);
    assert_eq!(r.rows, 1, "the rows are still checked");
}

#[test]
fn a_signal_column_that_cannot_be_named() {
    let r = validate(b"timestamp,device_id,flow rate\n2026-01-01T00:00:00Z,A,1.5\n");
    let f = only(&r, "schema.bad_header");
    assert!(f.examples[0].detail.contains("ASCII letters"), "{f:?}");
    assert_eq!(r.verdict, Verdict::Rejected);
}

#[test]
fn values_states_devices_and_timestamps() {
    let csv = format!(
        "{HEADER}{}\
         2026-01-01T00:00:30Z,A,RUN,1500,151.5,0,\n\
         2026-01-01T00:00:40Z,A,RUN,-5,50.0,0,\n\
         2026-01-01T00:00:50Z,A,STOPPED,1500,50.0,0,\n\
         2026-01-01T00:01:00Z, ,RUN,1500,50.0,0,\n\
         2026-13-01T00:01:10Z,A,RUN,1500,50.0,0,\n\
         2026-07-01T00:00:00Z,A,RUN,1500,50.0,0,\n\
         2026-01-01T00:01:10Z,A,RUN,1500,50.0,0,\n",
        good_rows(3)
    );
    let r = validate(csv.as_bytes());
    let at = |id: &str| {
        let f = only(&r, id);
        (f.examples[0].line.unwrap(), f.examples[0].value.clone())
    };
    assert_eq!(at("range.out_of_range"), (5, "151.5".to_owned()));
    assert_eq!(
        only(&r, "range.out_of_range").message,
        "values outside the declared range [-40, 150]"
    );
    assert_eq!(at("range.negative"), (6, "-5".to_owned()));
    assert!(
        r.findings_of("range.out_of_range")
            .all(|f| f.column.as_deref() == Some("temp_c")),
        "a negative rpm is range.negative only"
    );
    assert_eq!(at("range.unknown_state"), (7, "STOPPED".to_owned()));
    assert_eq!(at("range.empty_device"), (8, String::new()));
    assert_eq!(
        at("time.unparseable"),
        (9, "2026-13-01T00:01:10Z".to_owned())
    );
    assert_eq!(at("time.future"), (10, "2026-07-01T00:00:00Z".to_owned()));
    // The row from the future is not part of the time axis: no gap before it, no
    // clock jump after it.
    assert!(
        r.findings_of("time.gap").next().is_none(),
        "{:#?}",
        r.findings
    );
    assert!(r.findings_of("time.clock_jump_back").next().is_none());
    assert_eq!(r.rows_with_errors, 6);
    assert_eq!(r.rows, 10);
}

#[test]
fn gaps_are_counted_with_the_longest() {
    // 10 s sampling with a 40 s and a 2 min hole.
    let mut csv = String::from("timestamp,device_id,rpm\n");
    let mut t = 0;
    for i in 0..60 {
        t += match i {
            20 => 40,
            40 => 120,
            _ => 10,
        };
        csv.push_str(&format!(
            "{},A,{}\n",
            itap_telemetry::format_timestamp((1_767_225_600 + t) * 1_000_000),
            1500 + i % 3
        ));
    }
    let r = validate(csv.as_bytes());
    let f = only(&r, "time.gap");
    assert_eq!((f.count, f.severity), (2, Severity::Warning));
    assert_eq!(f.examples[0].line, Some(22));
    assert_eq!(f.examples[1].value, "120 s");
    let d = &r.per_device[0];
    assert_eq!(
        (d.gaps, d.longest_step_s, d.interval_s),
        (2, Some(120.0), Some(10.0))
    );
    // A configured interval replaces the median; 40 s is then 1.33 intervals.
    let r = validate_with(csv.as_bytes(), params().expected_interval("30s"));
    assert_eq!(only(&r, "time.gap").count, 1);
}

#[test]
fn a_clock_that_steps_back_an_hour() {
    // A local-time series that repeats an hour at a daylight-saving change, with
    // other readings in the repeated hour.
    let mut csv = String::from("timestamp,device_id,temp_c\n");
    let mut push = |secs: i64, v: f64| {
        csv.push_str(&format!(
            "{},A,{v}\n",
            itap_telemetry::format_timestamp((1_767_225_600 + secs) * 1_000_000)
        ))
    };
    for i in 0..720 {
        push(i * 10, 50.0 + (i % 10) as f64);
    }
    for i in 360..720 {
        push(i * 10, 60.0 + (i % 10) as f64);
    }
    let r = validate(csv.as_bytes());
    let jump = only(&r, "time.clock_jump_back");
    assert_eq!((jump.count, jump.examples[0].line), (1, Some(722)));
    assert_eq!(
        jump.examples[0].detail,
        "3590 s before the device's previous row at 2026-01-01T01:59:50Z"
    );
    let dup = only(&r, "time.duplicate_conflict");
    assert_eq!(dup.count, 360);
    assert_eq!(r.verdict, Verdict::Rejected);
    assert!(r.findings_of("time.out_of_order").next().is_none());

    // With the duplicate window smaller than the repeated hour, the earlier values
    // are gone: the keys are still found (exactly), but cannot be compared.
    let r = validate_with(csv.as_bytes(), params().duplicate_window(100));
    assert_eq!(r.count_of("time.duplicate_unverified"), 360);
    assert_eq!(r.count_of("time.duplicate_conflict"), 0);
}

#[test]
fn stuck_sensors_while_running_only() {
    let mut csv = String::from("timestamp,device_id,state,rpm,temp_c\n");
    for i in 0..100 {
        let state = if (50..80).contains(&i) { "IDLE" } else { "RUN" };
        let temp = if i < 40 {
            55.25
        } else {
            50.0 + i as f64 * 0.01
        };
        let rpm = if (45..85).contains(&i) {
            300
        } else {
            1500 + i % 4
        };
        csv.push_str(&format!(
            "{},A,{state},{rpm},{temp}\n",
            itap_telemetry::format_timestamp((1_767_225_600 + i * 10) * 1_000_000)
        ));
    }
    let r = validate(csv.as_bytes());
    let f = only(&r, "sensor.stuck");
    // temp_c is stuck for 40 samples from line 2 (found at its 30th, line 31);
    // rpm is 300 for 40 samples, but 30 of them are IDLE, so never 30 while RUN.
    assert_eq!(f.column.as_deref(), Some("temp_c"));
    assert_eq!((f.count, f.examples[0].line), (1, Some(31)));
    assert_eq!(f.examples[0].value, "55.25");
    assert_eq!(r.verdict, Verdict::ValidWithWarnings);
}

#[test]
fn missing_runs_and_rates() {
    let mut csv = String::from("timestamp,device_id,temp_c,rpm\n");
    for i in 0..200 {
        let temp = if (100..140).contains(&i) {
            String::new()
        } else {
            "50.5".into()
        };
        csv.push_str(&format!(
            "{},A,{temp},{}\n",
            itap_telemetry::format_timestamp((1_767_225_600 + i * 10) * 1_000_000),
            1500 + i % 3
        ));
    }
    let r = validate_with(csv.as_bytes(), params().severity(Check::Stuck, Level::Off));
    let run = only(&r, "completeness.missing_run");
    assert_eq!((run.count, run.examples[0].line), (1, Some(131)));
    assert_eq!(r.per_device[0].longest_missing_run["temp_c"], 40);
    let rate = only(&r, "completeness.missing_rate");
    assert_eq!(rate.column.as_deref(), Some("temp_c"));
    assert_eq!(r.columns[0].missing_rate, 0.2);
    let r = validate_with(
        csv.as_bytes(),
        params()
            .severity(Check::Stuck, Level::Off)
            .missing_rate_error(0.1),
    );
    assert_eq!(
        only(&r, "completeness.mostly_missing").severity,
        Severity::Error
    );
    assert_eq!(r.verdict, Verdict::Rejected);
    assert_eq!(r.rows_with_errors, 0, "a file-level error marks no row");
}

#[test]
fn severity_overrides_change_the_verdict() {
    let csv = format!(
        "{HEADER}{}2026-01-01T00:00:30Z,A,RUN,1500,151.5,0,\n",
        good_rows(3)
    );
    let r = validate_with(
        csv.as_bytes(),
        params().severity(Check::OutOfRange, Level::Warning),
    );
    assert_eq!(r.verdict, Verdict::ValidWithWarnings);
    assert_eq!(only(&r, "range.out_of_range").severity, Severity::Warning);
    let r = validate_with(
        csv.as_bytes(),
        params().severity(Check::OutOfRange, Level::Off),
    );
    assert_eq!(r.verdict, Verdict::Valid);
    let off = r
        .checks
        .iter()
        .find(|c| c.id == "range.out_of_range")
        .unwrap();
    assert_eq!((off.level, off.count), (Level::Off, 0));
}

#[test]
fn quarantine_policy_accepts_the_good_rows() {
    let csv = format!(
        "{HEADER}{}2026-01-01T00:00:30Z,A,RUN,1500,151.5,0,\n2026-01-01T00:00:40Z,A,RUN,1500,50.1,0,\n",
        good_rows(3)
    );
    let r = validate_with(csv.as_bytes(), params().policy(Policy::Quarantine));
    assert_eq!(r.verdict, Verdict::Quarantined);
    assert_eq!((r.rows, r.rows_with_errors, r.rows_accepted), (5, 1, 4));
    assert!(r.has_errors());
    // A file-level error still rejects the whole file.
    let r = validate_with(b"device_id,rpm\nA,1\n", params().policy(Policy::Quarantine));
    assert_eq!(r.verdict, Verdict::Rejected);
}

#[test]
fn examples_are_the_first_rows_and_bounded() {
    let mut csv = String::from("timestamp,device_id,rpm\n");
    for i in 0..50 {
        csv.push_str(&format!(
            "2026-01-01T00:{:02}:{:02}Z,A,-{i}\n",
            i / 6,
            (i % 6) * 10
        ));
    }
    let r = validate_with(csv.as_bytes(), params().max_examples(3));
    let f = only(&r, "range.negative");
    assert_eq!(f.count, 49, "-0 is not negative");
    let lines: Vec<_> = f.examples.iter().map(|e| e.line.unwrap()).collect();
    assert_eq!(lines, [3, 4, 5]);
}

#[test]
fn files_without_a_device_column_are_one_device() {
    let csv = "ts,temp_c\n2026-01-01T00:00:00Z,50\n2026-01-01T00:00:10Z,50.1\n";
    let r = validate_reader(
        csv.as_bytes(),
        "press-07.csv",
        &opts(),
        &params().check().unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(r.per_device[0].id, "press-07");
    assert_eq!(r.layout.unwrap().device, None);
    assert_eq!(r.verdict, Verdict::Valid);
}

#[test]
fn the_report_round_trips_through_json() {
    let csv = format!(
        "{HEADER}{}2026-01-01T00:00:30Z,A,RUN,-1,151.5,0,\n",
        good_rows(5)
    );
    let r = validate(csv.as_bytes());
    let json = r.to_json();
    assert!(json.contains("\"format_version\": 1"), "{json}");
    let back = Report::from_json(&json).unwrap();
    assert_eq!(back, r);
    let wrong = json.replace("\"format_version\": 1", "\"format_version\": 99");
    assert!(Report::from_json(&wrong).is_err());
    assert!(Report::from_json("{}").is_err());
}
