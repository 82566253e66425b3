//! Whatever the bytes, the validator answers with a report: no panic, no error for
//! in-memory input, and findings that agree with the strict reader.

use itap_validate::ParamGuard;
use proptest::prelude::*;

use itap_telemetry::{CsvReader, ReadOptions, Schema};
use itap_validate::{Policy, Report, ValidationParams, validate_batch, validate_reader};

fn opts() -> ReadOptions {
    ReadOptions {
        declared: Schema::default().signals().to_vec(),
        infer_rows: 3,
        ..ReadOptions::default()
    }
}

fn params(policy: Policy) -> itap_validate::CheckedValidation {
    ValidationParams::default()
        .policy(policy)
        .max_missing_run(2)
        .stuck_samples(2)
        .clock_jump("30s")
        .now(Some("2026-06-01T00:00:00Z"))
        .check()
        .unwrap()
}

fn run(bytes: &[u8], policy: Policy) -> Report {
    let mut q = Vec::new();
    let r = validate_reader(bytes, "p.csv", &opts(), &params(policy), Some(&mut q))
        .expect("in-memory input never fails to validate");
    // The quarantine output is CSV with one line per bad row (plus the header),
    // unless the header itself was unusable.
    if r.layout.is_some() {
        let lines = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(q.as_slice())
            .byte_records()
            .count() as u64;
        assert_eq!(lines, r.rows_with_errors);
    }
    r
}

const FIXED: [&str; 6] = [
    "schema.field_count",
    "schema.encoding",
    "schema.type",
    "time.unparseable",
    "range.unknown_state",
    "range.empty_device",
];

/// CSV-ish text from a small alphabet of fields that matter.
fn csvish() -> impl Strategy<Value = Vec<u8>> {
    let header = prop::sample::select(vec![
        "timestamp,device_id,state,rpm,temp_c,error_code,anomaly_tag",
        "ts,machine,temp_c",
        "timestamp,rpm,label",
        "time,device,state,x,y",
        "\u{feff}timestamp,device_id,temp_c",
        "device_id,rpm",
    ]);
    let field = prop::sample::select(vec![
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:10Z",
        "2026-01-01 00:00:20",
        "2026-01-01T02:00:30+02:00",
        "2025-12-31T23:59:00Z",
        "2031-01-01T00:00:00Z",
        "A",
        "B",
        "",
        " ",
        "RUN",
        "IDLE",
        "run",
        "BROKEN",
        "1500",
        "-3",
        "55.5",
        "1e999",
        "-inf",
        "NaN",
        "NA",
        "abc",
        "\"1,5\"",
        "0",
        "1",
        "2",
        "overheat_drift",
        "\u{e9}",
    ]);
    let line = prop_oneof![
        9 => prop::collection::vec(field, 1..9).prop_map(|f| f.join(",")),
        1 => Just(String::new()), // a blank line
    ];
    (
        header,
        prop::collection::vec(line, 0..40),
        prop::sample::select(vec!["\n", "\r\n"]),
    )
        .prop_map(|(h, lines, nl)| {
            let mut s = String::from(h);
            for l in lines {
                s.push_str(nl);
                s.push_str(&l);
            }
            s.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        for policy in [Policy::Reject, Policy::Quarantine] {
            let r = run(&bytes, policy);
            prop_assert_eq!(r.input.bytes, Some(bytes.len() as u64));
            prop_assert!(r.rows_accepted <= r.rows);
            let back = Report::from_json(&r.to_json()).expect("the report round-trips");
            prop_assert_eq!(back.verdict, r.verdict);
        }
    }

    #[test]
    fn lenient_and_strict_readers_agree(bytes in csvish()) {
        let r = run(&bytes, Policy::Quarantine);
        // Every located example points at the line that holds its value.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for f in r.findings.iter().filter(|f| {
            ["schema.type", "time.unparseable", "range.unknown_state"].contains(&f.check.as_str())
        }) {
            for e in &f.examples {
                let line = e.line.expect("a file row has a line");
                let found = text.lines().nth(line as usize - 1).unwrap_or_default();
                prop_assert!(found.contains(e.value.as_str()), "{e:?} vs line {line}: {found:?}");
            }
        }
        let strict = CsvReader::from_reader(
            std::io::Cursor::new(bytes.clone()), "p.csv", &opts()
        ).and_then(|rd| rd.read_all());
        let fixed: u64 = FIXED.iter().map(|id| r.count_of(id)).sum();
        match strict {
            Ok(batch) => {
                // What the strict reader reads, the lenient one reads without a
                // fixed-check finding, and checking the batch in memory finds the same.
                prop_assert_eq!(fixed, 0, "{:#?}", r.findings);
                prop_assert_eq!(r.rows, batch.len() as u64);
                let (mem, validated) = validate_batch(batch, &params(Policy::Quarantine));
                prop_assert_eq!(&mem.columns, &r.columns);
                prop_assert_eq!(mem.rows_accepted, r.rows_accepted);
                for (a, b) in mem.checks.iter().zip(&r.checks) {
                    if !["schema.unknown_column", "schema.bom"].contains(&a.id.as_str()) {
                        prop_assert_eq!(a, b);
                    }
                }
                if let Ok(v) = validated {
                    prop_assert_eq!(v.len() as u64, r.rows_accepted);
                }
            }
            Err(itap_telemetry::Error::Parse { .. } | itap_telemetry::Error::Csv { .. }) => {
                // A bad row: a fixed-check finding; unless the header is unusable
                // too, which the strict reader may not reach (it stops at the rows
                // it reads to infer columns).
                let header_rejected = r.layout.is_none()
                    && r.verdict == itap_validate::Verdict::Rejected;
                prop_assert!(fixed > 0 || header_rejected, "{:#?}", r.findings);
            }
            Err(_) => {
                // No header, a missing column or an unusable name: a file finding.
                prop_assert!(r.layout.is_none(), "{:#?}", r.findings);
                prop_assert_eq!(r.verdict, itap_validate::Verdict::Rejected);
            }
        }
    }
}
