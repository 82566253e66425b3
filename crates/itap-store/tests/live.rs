//! Live tables (scores, device states, rejects): one commit is one transaction,
//! a score stored twice is stored once, a bad commit stores nothing. Run on
//! SQLite always and on PostgreSQL when `ITAP_TEST_POSTGRES_URL` is set.

use itap_store::{
    DeviceStateRecord, Error, LiveCommit, REJECT_PAYLOAD_BYTES, RejectRecord, ScoreQuery,
    ScoreRecord, Store, StoreOptions,
};
use itap_telemetry::Schema;

async fn stores(name: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(Store::connect(&url).await.unwrap(), Some(dir))];
    match std::env::var("ITAP_TEST_POSTGRES_URL") {
        Ok(pg) if !pg.is_empty() => {
            let schema = format!("itap_test_live_{name}");
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
        store
            .ensure_dataset("plant", &Schema::default())
            .await
            .unwrap();
    }
    out
}

const T0: i64 = 1_767_225_600_000_000;
const S: i64 = 1_000_000;

fn score(device: &str, i: i64, v: f64) -> ScoreRecord {
    ScoreRecord {
        device: device.to_owned(),
        ts_us: T0 + i * 10 * S,
        score: v,
        flagged: v > 5.0,
        family: (v > 5.0).then(|| "Temperature".to_owned()),
    }
}

#[tokio::test]
async fn a_commit_stores_scores_states_and_rejects_once() {
    for (store, _dir) in stores("commit").await {
        // more than one INSERT statement's worth of scores
        let scores: Vec<ScoreRecord> = (0..2500)
            .map(|i| score(if i % 2 == 0 { "A" } else { "B" }, i, (i % 13) as f64 * 0.5))
            .collect();
        let states = vec![
            DeviceStateRecord {
                device: "A".into(),
                ts_us: T0 + 2498 * 10 * S,
                rows: 1250,
                state: vec![0, 1, 2, 255],
            },
            DeviceStateRecord {
                device: "B".into(),
                ts_us: T0 + 2499 * 10 * S,
                rows: 1250,
                state: vec![7; 300],
            },
        ];
        let big = vec![b'x'; 1 << 20];
        let rejects = vec![
            RejectRecord::new(
                T0,
                "itap/telemetry/A",
                b"{not json",
                "json.malformed",
                "line 1",
            ),
            RejectRecord::new(
                T0 + S,
                "itap/telemetry/\0B",
                &big,
                "payload.too_large",
                "1 MB",
            ),
            RejectRecord::new(
                T0 + 2 * S,
                "t",
                &[0xff, 0xfe, 0],
                "payload.not_utf8",
                "bytes",
            ),
        ];
        let commit = LiveCommit {
            scores: &scores,
            states: &states,
            alerts: &[],
            rejects: &rejects,
        };
        store.commit_live("plant", &commit).await.unwrap();
        // The same scores again (a redelivery): stored once, the first kept.
        let mut again = scores.clone();
        again[0].score = 99.0;
        store
            .commit_live(
                "plant",
                &LiveCommit {
                    scores: &again,
                    ..LiveCommit::default()
                },
            )
            .await
            .unwrap();
        let back = store.scores("plant", &ScoreQuery::default()).await.unwrap();
        assert_eq!(back.len(), 2500);
        let mut want = scores.clone();
        want.sort_by(|a, b| (a.ts_us, &a.device).cmp(&(b.ts_us, &b.device)));
        assert_eq!(back, want);
        let a_only = store
            .scores(
                "plant",
                &ScoreQuery {
                    device: Some("A".into()),
                    since_us: Some(T0 + 100 * S),
                    until_us: Some(T0 + 200 * S),
                    limit: Some(3),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            a_only.iter().map(|s| s.ts_us).collect::<Vec<_>>(),
            vec![T0 + 100 * S, T0 + 120 * S, T0 + 140 * S]
        );
        assert_eq!(store.live_states("plant").await.unwrap(), states);
        let rj = store.rejects("plant", 10).await.unwrap();
        assert_eq!(rj.len(), 3);
        assert_eq!(rj[0].reason, "payload.not_utf8", "newest first");
        assert_eq!(rj[1].payload.len(), REJECT_PAYLOAD_BYTES);
        assert!(!rj[1].topic.contains('\0'));
        assert_eq!(store.live_counts("plant").await.unwrap(), (3, 2500));
    }
}

#[tokio::test]
async fn a_commit_with_a_bad_score_stores_nothing() {
    for (store, _dir) in stores("bad").await {
        let scores = vec![score("A", 0, 1.0), score("A", 1, f64::NAN)];
        let rejects = vec![RejectRecord::new(T0, "t", b"x", "json.malformed", "")];
        let err = store
            .commit_live(
                "plant",
                &LiveCommit {
                    scores: &scores,
                    rejects: &rejects,
                    ..LiveCommit::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidScore { index: 1, .. }), "{err}");
        assert_eq!(store.live_counts("plant").await.unwrap(), (0, 0));
        assert!(
            store
                .commit_live("nowhere", &LiveCommit::default())
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn many_device_states_go_in_one_commit_and_a_repeated_device_keeps_its_last() {
    for (store, _dir) in stores("many_states").await {
        // More than one statement's worth, and one device twice.
        let mut states: Vec<DeviceStateRecord> = (0..250)
            .map(|i| DeviceStateRecord {
                device: format!("D{i:03}"),
                ts_us: T0 + i,
                rows: 1,
                state: vec![1, i as u8],
            })
            .collect();
        states.push(DeviceStateRecord {
            device: "D007".into(),
            ts_us: T0 + 1000,
            rows: 2,
            state: vec![2],
        });
        let commit = |states| LiveCommit {
            scores: &[],
            states,
            alerts: &[],
            rejects: &[],
        };
        store.commit_live("plant", &commit(&states)).await.unwrap();
        let got = store.live_states("plant").await.unwrap();
        assert_eq!(got.len(), 250);
        let d7 = got.iter().find(|s| s.device == "D007").unwrap();
        assert_eq!(
            (d7.ts_us, d7.rows, d7.state.clone()),
            (T0 + 1000, 2, vec![2])
        );
        assert_eq!(got[249].state, vec![1, 249]);
        // A later commit replaces what it names and keeps the rest.
        store
            .commit_live("plant", &commit(&states[..3]))
            .await
            .unwrap();
        assert_eq!(store.live_states("plant").await.unwrap().len(), 250);
    }
}
