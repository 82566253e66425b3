//! Alert storage tests, run on SQLite always and on PostgreSQL when
//! `ITAP_TEST_POSTGRES_URL` is set (each test in its own schema, dropped and
//! re-created first).

use itap_store::{AlertQuery, AlertRecord, AlertsWritten, Error, Store, StoreOptions};
use itap_telemetry::Schema;

/// A store per backend for one test, each with datasets `plant` and `lab`: SQLite
/// in a temporary folder, and PostgreSQL in schema `itap_test_alerts_<name>` when
/// the server is configured.
async fn stores(name: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(Store::connect(&url).await.unwrap(), Some(dir))];
    match std::env::var("ITAP_TEST_POSTGRES_URL") {
        Ok(pg) if !pg.is_empty() => {
            let schema = format!("itap_test_alerts_{name}");
            // Start from nothing, whatever an earlier run left.
            let admin = sqlx::PgPool::connect(&pg).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&admin)
            .await
            .unwrap();
            admin.close().await;
            let store = Store::connect_with(&StoreOptions::new(pg).pg_schema(schema))
                .await
                .unwrap();
            out.push((store, None));
        }
        _ => eprintln!("{name}: PostgreSQL part skipped: ITAP_TEST_POSTGRES_URL is not set"),
    }
    for (store, _) in &out {
        for dataset in ["plant", "lab"] {
            store
                .ensure_dataset(dataset, &Schema::default())
                .await
                .unwrap();
        }
    }
    out
}

/// 2026-01-01T00:00:00Z in UTC microseconds.
const T0: i64 = 1_767_225_600_000_000;
const MINUTE: i64 = 60_000_000;

/// An alert of `device` from `T0 + start` to `T0 + end` minutes.
fn alert(id: &str, device: &str, start: i64, end: i64, severity: &str) -> AlertRecord {
    AlertRecord {
        id: id.to_owned(),
        device: device.to_owned(),
        start_us: T0 + start * MINUTE,
        end_us: T0 + end * MINUTE,
        peak_us: T0 + start * MINUTE + (end - start) * MINUTE / 2,
        rows: (end - start + 1) as u64 * 6,
        peak_score: 0.1 + 0.2,
        mean_score: 1.0 / 3.0,
        severity: severity.to_owned(),
        family: "thermal".to_owned(),
        route: "maintenance".to_owned(),
        rule: "peak_score >= 0.8 for 3 rows".to_owned(),
        // Whitespace and key order that jsonb would not keep.
        detail: r#"{"shares": {"thermal": 0.75, "electrical": 0.25},  "top": ["temp_c"]}"#
            .to_owned(),
        model: "sha256:0123abcd".to_owned(),
    }
}

fn ids(alerts: &[AlertRecord]) -> Vec<&str> {
    alerts.iter().map(|a| a.id.as_str()).collect()
}

fn written(inserted: u64, updated: u64, unchanged: u64) -> AlertsWritten {
    AlertsWritten {
        inserted,
        updated,
        unchanged,
    }
}

#[tokio::test]
async fn alerts_round_trip_exactly() {
    let mut edge = alert("EDGE", "DEV-0002", 0, 0, "critical");
    // The storable extremes, and values that only survive an exact round trip.
    edge.start_us = -(1 << 53);
    edge.end_us = 1 << 53;
    edge.peak_us = 1_767_225_600_123_457;
    edge.rows = i64::MAX as u64;
    edge.peak_score = -0.0;
    edge.mean_score = f64::MIN_POSITIVE;
    edge.severity = "whatever the caller says".to_owned();
    edge.family = "élec'trique \"quoted\"; DROP TABLE itap_alerts; --".to_owned();
    edge.detail = String::new();
    edge.model = String::new();
    let alerts = vec![
        alert("DEV-0001-20260101T000000Z", "DEV-0001", 0, 5, "warning"),
        edge,
        alert("DEV-0003-20260101T001000Z", "DEV-0003", 10, 12, "info"),
    ];
    for (store, _dir) in stores("roundtrip").await {
        let w = store.put_alerts("plant", &alerts).await.unwrap();
        assert_eq!(w, written(3, 0, 0), "{:?}", store.backend());
        for a in &alerts {
            let back = store.alert("plant", &a.id).await.unwrap();
            assert_eq!(back.as_ref(), Some(a), "{:?}", store.backend());
            // Bit for bit, except that -0.0 is stored as 0.0 (as SQLite would).
            let back = back.unwrap();
            assert_eq!(back.peak_score.to_bits(), (a.peak_score + 0.0).to_bits());
            assert_eq!(back.mean_score.to_bits(), a.mean_score.to_bits());
        }
        assert_eq!(store.alert("plant", "nope").await.unwrap(), None);
        let all = store.alerts("plant", &AlertQuery::all()).await.unwrap();
        assert_eq!(
            ids(&all),
            [
                "EDGE",
                "DEV-0001-20260101T000000Z",
                "DEV-0003-20260101T001000Z"
            ]
        );
        assert_eq!(store.stats("plant").await.unwrap().alerts, 3);
        assert_eq!(store.stats("lab").await.unwrap().alerts, 0);
        // Nothing is stored for an empty call.
        assert_eq!(
            store.put_alerts("plant", &[]).await.unwrap(),
            written(0, 0, 0)
        );
    }
}

#[tokio::test]
async fn storing_the_same_alerts_again_stores_each_once() {
    let alerts: Vec<AlertRecord> = (0..5)
        .map(|i| {
            alert(
                &format!("A{i}"),
                &format!("DEV-000{i}"),
                i * 10,
                i * 10 + 3,
                "warning",
            )
        })
        .collect();
    for (store, _dir) in stores("idempotent").await {
        assert_eq!(
            store.put_alerts("plant", &alerts).await.unwrap(),
            written(5, 0, 0)
        );
        for _ in 0..2 {
            assert_eq!(
                store.put_alerts("plant", &alerts).await.unwrap(),
                written(0, 0, 5),
                "{:?}",
                store.backend()
            );
        }
        // A re-run that also found one new alert.
        let mut more = alerts.clone();
        more.push(alert("A5", "DEV-0005", 50, 51, "info"));
        assert_eq!(
            store.put_alerts("plant", &more).await.unwrap(),
            written(1, 0, 5)
        );
        let all = store.alerts("plant", &AlertQuery::all()).await.unwrap();
        assert_eq!(all, more);
        assert_eq!(store.stats("plant").await.unwrap().alerts, 6);
    }
}

#[tokio::test]
async fn a_call_of_many_blocks_counts_each_alert_once() {
    // 1,234 alerts: more than two of the blocks a call is written in.
    let alerts: Vec<AlertRecord> = (0..1_234)
        .map(|i| {
            alert(
                &format!("A{i:04}"),
                &format!("DEV-{:04}", i % 97),
                i,
                i + 2,
                "warning",
            )
        })
        .collect();
    for (store, _dir) in stores("blocks").await {
        // Every third stored first.
        let some: Vec<AlertRecord> = alerts.iter().step_by(3).cloned().collect();
        assert_eq!(
            store.put_alerts("plant", &some).await.unwrap(),
            written(412, 0, 0)
        );
        // Of those, every seventh (i = 0, 21, 42, …) grew since.
        let mut now = alerts.clone();
        let mut grown = 0;
        for (i, a) in now.iter_mut().enumerate() {
            if i % 21 == 0 {
                a.end_us += MINUTE;
                a.rows += 6;
                grown += 1;
            }
        }
        assert_eq!(
            store.put_alerts("plant", &now).await.unwrap(),
            written(1_234 - 412, grown, 412 - grown),
            "{:?}",
            store.backend()
        );
        assert_eq!(
            store.alerts("plant", &AlertQuery::all()).await.unwrap(),
            now,
            "{:?}",
            store.backend()
        );
        assert_eq!(
            store.put_alerts("plant", &now).await.unwrap(),
            written(0, 0, 1_234)
        );
    }
}

#[tokio::test]
async fn an_alert_that_grew_replaces_the_stored_one() {
    let first = alert("A", "DEV-0001", 0, 5, "warning");
    let other = alert("B", "DEV-0002", 0, 5, "warning");
    let mut grown = first.clone();
    grown.end_us += 7 * MINUTE;
    grown.peak_us = grown.end_us;
    grown.rows += 42;
    grown.peak_score = 0.97;
    grown.severity = "critical".to_owned();
    grown.detail = r#"{"shares":{"thermal":1.0}}"#.to_owned();
    for (store, _dir) in stores("grown").await {
        store
            .put_alerts("plant", &[first.clone(), other.clone()])
            .await
            .unwrap();
        assert_eq!(
            store
                .put_alerts("plant", &[grown.clone(), other.clone()])
                .await
                .unwrap(),
            written(0, 1, 1),
            "{:?}",
            store.backend()
        );
        assert_eq!(
            store.alert("plant", "A").await.unwrap(),
            Some(grown.clone())
        );
        assert_eq!(
            store.alerts("plant", &AlertQuery::all()).await.unwrap(),
            [grown.clone(), other.clone()]
        );
        // Any one field differing is a change, the text fields included.
        let mut renamed = grown.clone();
        renamed.model = "sha256:ffff".to_owned();
        assert_eq!(
            store.put_alerts("plant", &[renamed]).await.unwrap(),
            written(0, 1, 0)
        );
        // Storing an older version again replaces the newer one: the caller decides.
        assert_eq!(
            store
                .put_alerts("plant", std::slice::from_ref(&first))
                .await
                .unwrap(),
            written(0, 1, 0)
        );
        assert_eq!(
            store.alert("plant", "A").await.unwrap(),
            Some(first.clone())
        );
    }
}

#[tokio::test]
async fn queries_filter_limit_and_order() {
    // Three devices whose byte order differs from a locale's ("DEV-10" < "DEV-2" <
    // "dev-1"), two alerts starting at the same time (ordered by device, then id).
    let alerts = vec![
        alert("c", "dev-1", 0, 2, "info"),
        alert("b", "DEV-2", 0, 30, "critical"),
        alert("a", "DEV-2", 0, 4, "warning"),
        alert("d", "DEV-10", 0, 1, "warning"),
        alert("e", "DEV-10", 20, 25, "critical"),
        alert("f", "DEV-2", 40, 40, "info"),
        alert("g", "dev-1", 40, 41, "unknown"),
    ];
    let at = |m: i64| T0 + m * MINUTE;
    for (store, _dir) in stores("queries").await {
        // Stored in another order than read.
        let mut reversed = alerts.clone();
        reversed.reverse();
        store.put_alerts("plant", &reversed).await.unwrap();
        let q = |q: AlertQuery| {
            let store = store.clone();
            async move { store.alerts("plant", &q).await.unwrap() }
        };
        let b = store.backend();

        let all = q(AlertQuery::all()).await;
        assert_eq!(ids(&all), ["d", "a", "b", "c", "e", "f", "g"], "{b:?}");

        let dev = q(AlertQuery::all().device("DEV-2")).await;
        assert_eq!(ids(&dev), ["a", "b", "f"], "{b:?}");
        assert!(q(AlertQuery::all().device("dev-2")).await.is_empty());

        // Alerts overlapping [since, until): ends at or after since, starts before
        // until; "b" (0..30) began before the window and is still in it.
        let window = q(AlertQuery::all().since(at(21)).until(at(40))).await;
        assert_eq!(ids(&window), ["b", "e"], "{b:?}");
        // The edges: an alert ending exactly at `since` is in, one starting
        // exactly at `until` is out.
        assert_eq!(
            ids(&q(AlertQuery::all().since(at(25))).await),
            ["b", "e", "f", "g"]
        );
        assert_eq!(
            ids(&q(AlertQuery::all().since(at(26))).await),
            ["b", "f", "g"]
        );
        assert_eq!(
            ids(&q(AlertQuery::all().until(at(20))).await),
            ["d", "a", "b", "c"]
        );
        assert_eq!(
            ids(&q(AlertQuery::all().until(at(20) + 1)).await),
            ["d", "a", "b", "c", "e"]
        );

        let warn = q(AlertQuery::all().severity_at_least("warning")).await;
        assert_eq!(ids(&warn), ["d", "a", "b", "e"], "{b:?}");
        let crit = q(AlertQuery::all().severity_at_least("critical")).await;
        assert_eq!(ids(&crit), ["b", "e"]);
        // "info" and above: every known severity, not the unknown one.
        let info = q(AlertQuery::all().severity_at_least("info")).await;
        assert_eq!(ids(&info), ["d", "a", "b", "c", "e", "f"]);

        assert_eq!(ids(&q(AlertQuery::all().limit(2)).await), ["d", "a"]);
        // Newest first: the exact reverse, and a limit keeps the newest.
        let mut reverse = ids(&all);
        reverse.reverse();
        assert_eq!(
            ids(&q(AlertQuery::all().newest_first()).await),
            reverse,
            "{b:?}"
        );
        assert_eq!(
            ids(&q(AlertQuery::all().newest_first().limit(2)).await),
            reverse[..2],
            "{b:?}"
        );
        assert_eq!(
            ids(&q(AlertQuery::all().device("DEV-2").newest_first()).await),
            ["f", "b", "a"]
        );
        assert!(q(AlertQuery::all().limit(0)).await.is_empty());
        let combined = AlertQuery::all()
            .device("DEV-2")
            .since(at(1))
            .severity_at_least("warning")
            .limit(5);
        assert_eq!(ids(&q(combined).await), ["a", "b"]);

        let err = store
            .alerts("plant", &AlertQuery::all().severity_at_least("urgent"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParam(_)), "{err}");
        assert!(err.to_string().contains("\"urgent\""), "{err}");
    }
}

#[tokio::test]
async fn bad_alerts_are_refused_and_nothing_is_stored() {
    let good = alert("G", "DEV-0001", 0, 5, "warning");
    let stored = alert("S", "DEV-0001", 10, 15, "warning");
    type Spoil = fn(&mut AlertRecord);
    let cases: Vec<(Spoil, &str, &str)> = vec![
        (|a| a.id = String::new(), "id", "is empty"),
        (|a| a.id = "  ".to_owned(), "id", "is empty"),
        (|a| a.device = String::new(), "device", "is empty"),
        (|a| a.peak_score = f64::NAN, "peak_score", "is NaN"),
        (
            |a| a.mean_score = f64::NEG_INFINITY,
            "mean_score",
            "is -inf",
        ),
        (
            |a| a.end_us = a.start_us - 1,
            "end_us",
            "is before start_us",
        ),
        (
            |a| a.peak_us = i64::MIN,
            "peak_us",
            "outside the storable range",
        ),
        (|a| a.rows = u64::MAX, "rows", "too large"),
        (
            |a| a.detail = "{\"open\":".to_owned(),
            "detail",
            "is not JSON",
        ),
        (|a| a.family = "a\0b".to_owned(), "family", "NUL"),
        (|a| a.id = "G".to_owned(), "id", "given twice"),
    ];
    for (store, _dir) in stores("bad").await {
        store
            .put_alerts("plant", std::slice::from_ref(&stored))
            .await
            .unwrap();
        for (spoil, field, reason) in &cases {
            // A valid alert first, a changed version of the stored one, then the
            // bad one: none of them may be written.
            let mut changed = stored.clone();
            changed.end_us += MINUTE;
            let mut bad = alert("B", "DEV-0002", 0, 5, "info");
            spoil(&mut bad);
            let err = store
                .put_alerts("plant", &[good.clone(), changed, bad.clone()])
                .await
                .unwrap_err();
            let msg = err.to_string();
            match &err {
                Error::InvalidAlert {
                    dataset,
                    index,
                    id,
                    field: f,
                    ..
                } => {
                    assert_eq!(
                        (dataset.as_str(), *index, id, *f),
                        ("plant", 2, &bad.id, *field),
                        "{msg}"
                    );
                }
                other => panic!("{field}: unexpected error {other}"),
            }
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
            assert!(msg.contains(reason), "{msg}");
            assert!(
                msg.contains(&format!("alerts[2] (id {:?})", bad.id)),
                "{msg}"
            );
            assert_eq!(
                store.alerts("plant", &AlertQuery::all()).await.unwrap(),
                std::slice::from_ref(&stored),
                "{:?}: {msg}",
                store.backend()
            );
        }

        // The dataset must exist, and be a valid name.
        let err = store
            .put_alerts("nowhere", std::slice::from_ref(&good))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NoSuchDataset(ref d) if d == "nowhere"),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = store
            .alerts("nowhere", &AlertQuery::all())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoSuchDataset(_)), "{err}");
        let err = store.alert("nowhere", "G").await.unwrap_err();
        assert!(matches!(err, Error::NoSuchDataset(_)), "{err}");
        let err = store
            .put_alerts("Bad-Name", std::slice::from_ref(&good))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DatasetName { .. }), "{err}");
        assert_eq!(store.stats("plant").await.unwrap().alerts, 1);
    }
}

#[tokio::test]
async fn datasets_keep_their_own_alerts() {
    let plant = alert("SAME-ID", "DEV-0001", 0, 5, "warning");
    let mut lab = alert("SAME-ID", "RIG-7", 100, 110, "critical");
    lab.detail = "[]".to_owned();
    for (store, _dir) in stores("isolation").await {
        assert_eq!(
            store
                .put_alerts("plant", std::slice::from_ref(&plant))
                .await
                .unwrap(),
            written(1, 0, 0)
        );
        // The same id in another dataset is another alert: inserted, not updated.
        assert_eq!(
            store
                .put_alerts("lab", std::slice::from_ref(&lab))
                .await
                .unwrap(),
            written(1, 0, 0),
            "{:?}",
            store.backend()
        );
        assert_eq!(
            store.alert("plant", "SAME-ID").await.unwrap(),
            Some(plant.clone())
        );
        assert_eq!(
            store.alert("lab", "SAME-ID").await.unwrap(),
            Some(lab.clone())
        );
        assert_eq!(
            store.alerts("plant", &AlertQuery::all()).await.unwrap(),
            std::slice::from_ref(&plant)
        );
        assert_eq!(
            store.alerts("lab", &AlertQuery::all()).await.unwrap(),
            std::slice::from_ref(&lab)
        );
        // Re-storing one dataset's alert leaves the other's alone.
        let mut grown = plant.clone();
        grown.end_us += MINUTE;
        assert_eq!(
            store.put_alerts("plant", &[grown]).await.unwrap(),
            written(0, 1, 0)
        );
        assert_eq!(
            store.alert("lab", "SAME-ID").await.unwrap(),
            Some(lab.clone())
        );
        assert_eq!(store.stats("lab").await.unwrap().alerts, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_store_each_alert_once_and_count_it_once() {
    let alerts: Vec<AlertRecord> = (0..40)
        .map(|i| alert(&format!("A{i:02}"), "DEV-0001", i, i + 1, "warning"))
        .collect();
    for (store, _dir) in stores("concurrent").await {
        let mut reversed = alerts.clone();
        reversed.reverse();
        let (a, b) = (store.clone(), store.clone());
        let one = alerts.clone();
        let ta = tokio::spawn(async move { a.put_alerts("plant", &one).await.unwrap() });
        let tb = tokio::spawn(async move { b.put_alerts("plant", &reversed).await.unwrap() });
        let (wa, wb) = (ta.await.unwrap(), tb.await.unwrap());
        assert_eq!(wa.inserted + wb.inserted, 40, "{:?}", store.backend());
        assert_eq!(wa.unchanged + wb.unchanged, 40);
        assert_eq!(wa.updated + wb.updated, 0);
        assert_eq!(
            store.alerts("plant", &AlertQuery::all()).await.unwrap(),
            alerts
        );
    }
}
