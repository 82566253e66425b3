//! Property: any batch written as CSV reads back to the same batch.

use itap_telemetry::{
    Batch, BatchColumns, CsvReader, ReadOptions, Schema, Signal, SignalKind, State, write_csv_to,
};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => any::<f64>().prop_filter("finite", |v| v.is_finite()),
        1 => Just(f64::NAN),
        1 => (-1000i32..1000).prop_map(f64::from),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    (1usize..40, 1usize..4, 1usize..4).prop_flat_map(|(n, k, devices)| {
        (
            proptest::collection::vec(-62_000_000_000_000_000i64..253_000_000_000_000_000, n),
            proptest::collection::vec(0..devices as u32, n),
            proptest::collection::vec(proptest::collection::vec(value(), n), k),
            proptest::collection::vec(0usize..3, n),
            proptest::collection::vec(-5i32..1000, n),
            proptest::collection::vec(0u32..3, n),
        )
            .prop_map(move |(ts, dev, signals, st, err, tags)| {
                let schema =
                    Schema::new((0..k).map(|j| Signal::new(format!("s{j}"))).collect()).unwrap();
                Batch::from_columns(BatchColumns {
                    schema,
                    timestamps: ts,
                    device_names: (0..devices).map(|d| format!("dev \"{d}\", x")).collect(),
                    device_codes: dev,
                    signals,
                    states: Some(st.into_iter().map(|i| State::ALL[i]).collect()),
                    error_codes: Some(err),
                    tag_names: vec![String::new(), "overheat_drift".into(), "odd, tag".into()],
                    tag_codes: Some(tags),
                })
                .unwrap()
            })
    })
}

fn read(bytes: Vec<u8>) -> Batch {
    CsvReader::from_reader(
        std::io::Cursor::new(bytes),
        "p.csv",
        &ReadOptions::default(),
    )
    .unwrap()
    .read_all()
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn write_then_read_is_identity(b in batch()) {
        let mut out = Vec::new();
        write_csv_to(&b, &mut out).unwrap();
        let back = read(out);
        prop_assert_eq!(back.len(), b.len());
        prop_assert_eq!(back.timestamps(), b.timestamps());
        prop_assert_eq!(back.states(), b.states());
        prop_assert_eq!(back.error_codes(), b.error_codes());
        for r in 0..b.len() {
            prop_assert_eq!(back.device_of(r), b.device_of(r));
            prop_assert_eq!(back.tag_of(r), b.tag_of(r));
        }
        for k in 0..b.schema().len() {
            for (x, y) in b.signal(k).iter().zip(back.signal(k)) {
                prop_assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{x} vs {y}");
            }
        }
    }
}

#[test]
fn int_signals_are_written_without_fraction() {
    let schema = Schema::new(vec![Signal::new("rpm").kind(SignalKind::Int)]).unwrap();
    let b = Batch::from_columns(BatchColumns {
        schema,
        timestamps: vec![0],
        device_names: vec!["a".into()],
        device_codes: vec![0],
        signals: vec![vec![1800.0]],
        states: None,
        error_codes: None,
        tag_names: vec![String::new()],
        tag_codes: None,
    })
    .unwrap();
    let mut out = Vec::new();
    write_csv_to(&b, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "timestamp,device_id,rpm\n1970-01-01T00:00:00Z,a,1800\n"
    );
}
