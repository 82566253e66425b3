//! `serve` against a real broker: replayed telemetry is stored and scored exactly
//! as batch scoring scores it; hostile messages are refused with a reason and the
//! server goes on; two shards score every row exactly once.
//!
//! Each test starts its own Mosquitto on a free loopback port (no message queue
//! limit, no persistence), so tests do not see each other's messages. They run
//! when `ITAP_TEST_MQTT_URL` is set (it says MQTT tests are wanted here) and the
//! `mosquitto` program is found; otherwise they say they skipped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use itap::ParamGuard;
use itap::eval::{AlertParams, EvalParams};
use itap::features::FeatureParams;
use itap::store::{ScoreQuery, Store};
use itap::telemetry::{Batch, SimParams, simulate};
use itap::validate::ValidationParams;
use itap::{LiveScorer, ModelFile, TrainingSet, default_detector, split_by_time, train};
use itap_live::{
    DecodeParams, Decoder, Pace, ReplayParams, ServeParams, ServeStats, Shard, replay, serve,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// A private Mosquitto, stopped on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker(test: &str) -> Option<Broker> {
    if std::env::var("ITAP_TEST_MQTT_URL").map_or(true, |v| v.is_empty()) {
        eprintln!("{test}: skipped: ITAP_TEST_MQTT_URL is not set");
        return None;
    }
    let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(exe) = exe else {
        eprintln!("{test}: skipped: the mosquitto program is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 1000\n"
        ),
    )
    .unwrap();
    let child = Command::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Broker {
        child,
        port,
        _dir: dir,
    })
}

fn trained(batch: &Batch) -> ModelFile {
    let eval = EvalParams::default().check().unwrap();
    let split = split_by_time(batch, &eval).unwrap();
    train(
        batch,
        &split,
        &TrainingSet::default(),
        &FeatureParams::default().check().unwrap(),
        &default_detector().check().unwrap(),
    )
    .unwrap()
    .model
}

fn scorer(model: &ModelFile) -> LiveScorer {
    LiveScorer::new(
        model.clone(),
        &EvalParams::default().check().unwrap(),
        &AlertParams::default().check().unwrap(),
    )
    .unwrap()
}

fn decoder(model: &ModelFile) -> Decoder {
    Decoder::new(&model.schema, DecodeParams::default().check().unwrap())
}

/// Runs a server on `port` until `done` says so, in the background.
fn spawn_serve(
    store: Store,
    model: &ModelFile,
    port: u16,
    shard: Option<Shard>,
    stats: Arc<ServeStats>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<itap_live::Result<itap_live::ServeSummary>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scorer = scorer(model);
    let decoder = decoder(model);
    let params = ServeParams {
        url: format!("mqtt://127.0.0.1:{port}"),
        dataset: "live".into(),
        shard,
        ..ServeParams::default()
    }
    .check()
    .unwrap();
    let handle = tokio::spawn(async move {
        let validation = ValidationParams::default().check().unwrap();
        serve(
            &store,
            scorer,
            decoder,
            &validation,
            &params,
            stats,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    (stop, handle)
}

/// Waits until `f` holds (or fails after 60 s).
async fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replay_all(batch: &Batch, port: u16) {
    let params = ReplayParams::default()
        .url(format!("mqtt://127.0.0.1:{port}"))
        .pace(Pace::Rate(0.0))
        .check()
        .unwrap();
    let sum = replay(batch, &params, |_| {}).await.unwrap();
    assert_eq!(sum.messages, batch.len() as u64);
}

async fn sqlite(dir: &Path) -> Store {
    Store::connect(&format!("sqlite://{}", dir.join("live.db").display()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_rows_are_stored_and_scored_as_batch_scoring_scores_them() {
    let Some(b) = broker("replay_then_serve") else {
        return;
    };
    let batch = simulate(&SimParams::default().devices(4).hours(3.0).check().unwrap());
    let model = trained(&batch);
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ServeStats::default());
    let (stop, handle) = spawn_serve(
        sqlite(dir.path()).await,
        &model,
        b.port,
        None,
        stats.clone(),
    );
    // The subscription is made before `serve` takes messages; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    replay_all(&batch, b.port).await;
    let n = batch.len() as u64;
    until("every row scored", || stats.snapshot().scored >= n).await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.scored, n);
    assert_eq!(summary.stored, n);
    assert_eq!(summary.rejected, 0);

    let store = sqlite(dir.path()).await;
    assert_eq!(store.row_count("live").await.unwrap(), n);
    let got = store.scores("live", &ScoreQuery::default()).await.unwrap();
    assert_eq!(got.len() as u64, n);
    let want = model.score(&batch).unwrap().scores;
    let threshold = scorer(&model).threshold().value;
    let mut key: Vec<usize> = (0..batch.len()).collect();
    key.sort_by(|&a, &b| {
        (batch.timestamps()[a], batch.device_of(a))
            .cmp(&(batch.timestamps()[b], batch.device_of(b)))
    });
    let mut flagged = 0;
    for (s, &r) in got.iter().zip(&key) {
        assert_eq!(
            (s.device.as_str(), s.ts_us),
            (batch.device_of(r), batch.timestamps()[r])
        );
        assert!(
            (s.score - want[r]).abs() <= 1e-9 * want[r].abs().max(1.0),
            "row {r}"
        );
        assert_eq!(s.flagged, want[r] > threshold, "row {r}");
        flagged += usize::from(s.flagged);
    }
    assert!(flagged > 0);
    let alerts = store
        .alerts("live", &itap::store::AlertQuery::all())
        .await
        .unwrap();
    assert!(!alerts.is_empty(), "the simulated faults raise alerts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_refused_with_a_reason_and_the_server_goes_on() {
    let Some(b) = broker("hostile") else {
        return;
    };
    let batch = simulate(&SimParams::default().devices(2).hours(2.0).check().unwrap());
    let model = trained(&batch);
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(ServeStats::default());
    let (stop, handle) = spawn_serve(
        sqlite(dir.path()).await,
        &model,
        b.port,
        None,
        stats.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut opts = MqttOptions::new("hostile-peer", "127.0.0.1", b.port);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    let driver = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Packet::Disconnect) = ev {
                break;
            }
        }
    });
    let t = "2026-01-01T00:10:00Z";
    let ok = |ts: &str, temp: &str| {
        format!(
            r#"{{"ts":"{ts}","device":"DEV-0009","state":"RUN","signals":{{"temp_c":{temp},"vibration_g":0.4,"voltage_v":24.0,"rpm":1500,"current_a":10.0}},"error_code":0}}"#
        )
    };
    let big = format!(
        r#"{{"ts":"{t}","device":"DEV-0009","pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let hostile: Vec<(String, Vec<u8>)> = vec![
        ("{not json".into(), b"{not json".to_vec()),
        ("wrong type".into(), ok(t, "\"hot\"").into_bytes()),
        (
            "unknown signal".into(),
            ok(t, "50").replace("temp_c", "warp_factor").into_bytes(),
        ),
        ("1 MB".into(), big.into_bytes()),
        ("NaN".into(), ok(t, "\"NaN\"").into_bytes()),
        ("1e999".into(), ok(t, "1e999").into_bytes()),
        (
            "future".into(),
            ok("2999-01-01T00:00:00Z", "50").into_bytes(),
        ),
        ("garbage".into(), vec![0xff, 0x00, 0xfe, 0x13, 0x37]),
        ("first good".into(), ok(t, "50").into_bytes()),
        (
            "out of order".into(),
            ok("2026-01-01T00:09:00Z", "50").into_bytes(),
        ),
        ("conflict".into(), ok(t, "51").into_bytes()),
        ("duplicate".into(), ok(t, "50").into_bytes()),
        (
            "second good".into(),
            ok("2026-01-01T00:10:10Z", "50").into_bytes(),
        ),
    ];
    for (_, payload) in &hostile {
        client
            .publish(
                "itap/telemetry/DEV-0009",
                QoS::AtLeastOnce,
                false,
                payload.clone(),
            )
            .await
            .unwrap();
    }
    until("every message handled", || {
        let s = stats.snapshot();
        s.rejected + s.scored + s.duplicates >= hostile.len() as u64
    })
    .await;
    // A reading with a missing value, alone in its step (nothing else is
    // sent): stored and scored, not refused as a "mostly missing" batch.
    let missing = ok("2026-01-01T00:10:20Z", "null").into_bytes();
    client
        .publish("itap/telemetry/DEV-0009", QoS::AtLeastOnce, false, missing)
        .await
        .unwrap();
    until("the reading with a missing value handled", || {
        let s = stats.snapshot();
        s.rejected + s.scored + s.duplicates > hostile.len() as u64
    })
    .await;
    stop.send(()).unwrap();
    let summary = handle.await.unwrap().unwrap();
    let _ = client.disconnect().await;
    driver.abort();
    let store = sqlite(dir.path()).await;
    let rejects = store.rejects("live", 100).await.unwrap();
    assert_eq!(summary.scored, 3, "{summary:?} {rejects:#?}");
    assert_eq!(summary.duplicates, 1, "{summary:?}");
    assert_eq!(summary.rejected, 10, "{summary:?}");
    let mut reasons: Vec<String> = rejects.into_iter().map(|r| r.reason).collect();
    reasons.sort();
    for want in [
        "json.malformed",
        "payload.too_large",
        "signal.unknown",
        "ts.future",
        "ts.out_of_order",
        "row.conflict",
    ] {
        assert!(
            reasons.iter().any(|r| r == want),
            "{want} not in {reasons:?}"
        );
    }
    assert_eq!(store.row_count("live").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_score_every_row_exactly_once() {
    let Some(b) = broker("shards") else {
        return;
    };
    let batch = simulate(&SimParams::default().devices(6).hours(1.0).check().unwrap());
    let model = trained(&batch);
    let dir = tempfile::tempdir().unwrap();
    let stats: Vec<Arc<ServeStats>> = (0..2).map(|_| Arc::new(ServeStats::default())).collect();
    let mut workers = Vec::new();
    for (i, st) in stats.iter().enumerate() {
        let shard = Shard {
            index: i as u32,
            count: 2,
        };
        workers.push(spawn_serve(
            sqlite(dir.path()).await,
            &model,
            b.port,
            Some(shard),
            st.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    replay_all(&batch, b.port).await;
    let n = batch.len() as u64;
    until("every row scored by one shard", || {
        stats.iter().map(|s| s.snapshot().scored).sum::<u64>() >= n
    })
    .await;
    let mut summaries = Vec::new();
    for (stop, handle) in workers {
        stop.send(()).unwrap();
        summaries.push(handle.await.unwrap().unwrap());
    }
    assert_eq!(summaries.iter().map(|s| s.scored).sum::<u64>(), n);
    assert!(
        summaries.iter().all(|s| s.scored > 0 && s.foreign > 0),
        "{summaries:?}"
    );
    assert_eq!(summaries[0].foreign, summaries[1].scored);
    let store = sqlite(dir.path()).await;
    assert_eq!(
        store
            .scores("live", &ScoreQuery::default())
            .await
            .unwrap()
            .len() as u64,
        n
    );
    assert_eq!(store.row_count("live").await.unwrap(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_be_reached_is_named_and_the_ledger_says_failed() {
    // No broker needed: port 1 on loopback refuses the connection.
    let batch = simulate(&SimParams::default().devices(2).hours(1.0).check().unwrap());
    let model = trained(&batch);
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let params = ServeParams {
        url: "mqtt://127.0.0.1:1".into(),
        dataset: "live".into(),
        ..ServeParams::default()
    }
    .check()
    .unwrap();
    let validation = ValidationParams::default().check().unwrap();
    let err = serve(
        &store,
        scorer(&model),
        decoder(&model),
        &validation,
        &params,
        Arc::new(ServeStats::default()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, itap_live::Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let ledger = store.ledger(Some("live")).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].status, "failed");
}
