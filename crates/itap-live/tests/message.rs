//! The wire format's properties: whatever bytes or JSON a peer sends, the decoder
//! answers with a reading or a reject (never a panic), and every row of a batch
//! survives encode → decode bit for bit.

use itap::ParamGuard;
use itap::telemetry::{
    Batch, BatchBuilder, Schema, Signal, SignalKind, SimParams, State, simulate,
};
use itap_live::{DecodeParams, Decoder, Reading, RejectReason, encode};
use proptest::prelude::*;
use serde_json::Value;

fn decoder(schema: &Schema) -> Decoder {
    Decoder::new(schema, DecodeParams::default().check().unwrap())
}

/// Decodes row `row`'s message as a receiver at the end of time would.
fn round_trip(batch: &Batch, row: usize) -> Reading {
    let topic = format!("itap/telemetry/{}", batch.device_of(row));
    decoder(batch.schema())
        .decode(&topic, &encode(batch, row), i64::MAX)
        .unwrap_or_else(|r| {
            panic!(
                "row {row} rejected: {r}\n{}",
                String::from_utf8_lossy(&encode(batch, row))
            )
        })
}

/// The reading equals the batch row, values bit for bit.
fn assert_row(batch: &Batch, row: usize, r: &Reading) {
    assert_eq!(r.ts, batch.timestamps()[row]);
    assert_eq!(r.device, batch.device_of(row));
    assert_eq!(r.state, batch.states().map(|s| s[row]));
    assert_eq!(r.error_code, batch.error_codes().map(|e| e[row]));
    assert_eq!(r.label.as_deref(), batch.tag_of(row));
    assert_eq!(r.values.len(), batch.schema().len());
    for (k, v) in r.values.iter().enumerate() {
        let want = batch.signal(k)[row];
        assert!(
            v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
            "row {row} signal {k}: {v:?} != {want:?}"
        );
    }
}

#[test]
fn every_row_of_a_simulated_fleet_round_trips() {
    let batch = simulate(&SimParams::default().devices(6).hours(2.0).check().unwrap());
    assert!(batch.tagged_rows() > 0 && batch.signal(1).iter().any(|v| v.is_nan()));
    for row in 0..batch.len() {
        assert_row(&batch, row, &round_trip(&batch, row));
    }
}

/// Any JSON value, nested a few levels, with awkward numbers and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |v| v.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("2026-01-01T00:00:10Z"),
            Just("DEV-0001"),
            Just("RUN"),
            Just("NaN"),
            Just("temp_c"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ts".to_owned()),
                    Just("device".to_owned()),
                    Just("state".to_owned()),
                    Just("signals".to_owned()),
                    Just("error_code".to_owned()),
                    Just("label".to_owned()),
                    Just("temp_c".to_owned()),
                    Just("rpm".to_owned()),
                    "[a-z_]{0,8}",
                ],
                inner,
                0..7
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let d = decoder(&Schema::default());
        match d.decode("itap/telemetry/DEV-0001", &bytes, 0) {
            Ok(r) => prop_assert_eq!(r.values.len(), 5),
            Err(r) => prop_assert!(RejectReason::from_code(r.code()).is_some()),
        }
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value(), now in any::<i64>()) {
        let d = decoder(&Schema::default());
        let text = v.to_string();
        match d.decode("itap/telemetry/DEV-0001", text.as_bytes(), now) {
            Ok(r) => {
                prop_assert_eq!(r.values.len(), 5);
                prop_assert_eq!(r.device, "DEV-0001");
            }
            Err(r) => {
                prop_assert!(RejectReason::from_code(r.code()).is_some());
                prop_assert!(r.detail.len() < 1024, "{}", r);
            }
        }
    }

    /// Messages that are almost right: one field of a good message replaced by
    /// an arbitrary value, or the text cut anywhere.
    #[test]
    fn damaged_messages_never_panic(
        field in prop_oneof![
            Just("ts"), Just("device"), Just("state"), Just("signals"),
            Just("error_code"), Just("label"), Just("extra"),
        ],
        v in json_value(),
        cut in 0usize..200,
    ) {
        let batch = simulate(&SimParams::default().devices(1).hours(0.01).check().unwrap());
        let d = decoder(batch.schema());
        let mut msg: Value = serde_json::from_slice(&encode(&batch, 0)).unwrap();
        msg[field] = v;
        let text = msg.to_string();
        let _ = d.decode("itap/telemetry/DEV-0000", text.as_bytes(), i64::MAX);
        let cut_at = cut.min(text.len());
        let _ = d.decode("itap/telemetry/DEV-0000", &text.as_bytes()[..cut_at], i64::MAX);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any row of a simulated batch (any seed and fleet size) decodes back to
    /// itself.
    #[test]
    fn simulated_rows_round_trip(
        seed in any::<u64>(),
        devices in 1usize..5,
        rows in prop::collection::vec(any::<prop::sample::Index>(), 1..40),
    ) {
        let batch = simulate(
            &SimParams::default().devices(devices).hours(0.25).seed(seed).check().unwrap(),
        );
        for i in rows {
            let row = i.index(batch.len());
            assert_row(&batch, row, &round_trip(&batch, row));
        }
    }
}

/// Rows with arbitrary values: any finite float or NaN, whole numbers in an
/// `int` signal, any timestamp from 1970 to 9999 with microseconds, devices and
/// tags with quotes, backslashes, control characters and non-ASCII text.
fn arbitrary_row() -> impl Strategy<Value = (i64, String, [f64; 3], State, i32, String)> {
    let value = prop_oneof![
        4 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
        1 => prop_oneof![Just(f64::MIN_POSITIVE), Just(5e-324), Just(f64::MAX), Just(-f64::MAX)],
    ];
    let int_value = prop_oneof![
        (-9_000_000_000_000_000i64..9_000_000_000_000_000).prop_map(|v| v as f64),
        Just(-0.0),
        Just(f64::NAN),
        Just(0.5),
    ];
    (
        0i64..253_402_300_799_999_999,
        "[^/+#\\x00-\\x1f\\x7f-\\x9f]{1,12}",
        (value.clone(), value, int_value).prop_map(|(a, b, c)| [a, b, c]),
        prop::sample::select(State::ALL.to_vec()),
        any::<i32>(),
        prop_oneof![Just(String::new()), "[a-z_\"\\\\é]{1,10}"],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_rows_round_trip(rows in prop::collection::vec(arbitrary_row(), 1..8)) {
        let schema = Schema::new(vec![
            Signal::new("a"),
            Signal::new("b"),
            Signal::new("n").kind(SignalKind::Int),
        ])
        .unwrap();
        let mut b = BatchBuilder::new(schema, true, true, true);
        for (ts, device, values, state, code, tag) in &rows {
            let dc = b.device_code(device);
            let tc = b.tag_code(tag);
            b.push(*ts, dc, values, *state, *code, tc).unwrap();
        }
        let batch = b.finish();
        for row in 0..batch.len() {
            assert_row(&batch, row, &round_trip(&batch, row));
        }
    }
}
