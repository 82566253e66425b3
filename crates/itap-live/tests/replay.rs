//! Replays against a real broker (read from `ITAP_TEST_MQTT_URL`, for example
//! `mqtt://127.0.0.1:1883`; the tests that need one say they were skipped when it
//! is unset), and the failures that need none.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use itap::ParamGuard;
use itap::telemetry::{Batch, BatchBuilder, Schema, Signal, SimParams, State, simulate};
use itap_live::{BrokerUrl, DecodeParams, Decoder, Error, Pace, ReplayParams, replay};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;

/// The broker URL, or `None` after saying the test is skipped.
fn broker(test: &str) -> Option<String> {
    match std::env::var("ITAP_TEST_MQTT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("{test}: skipped: ITAP_TEST_MQTT_URL is not set");
            None
        }
    }
}

/// A topic prefix no other test or run uses.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("itap-test/{test}/{}-{nanos}", std::process::id())
}

/// A subscriber to `{prefix}/#` (QoS 1), subscribed when this returns; every
/// message arrives on the channel as (topic, payload).
async fn subscribe(url: &str, prefix: &str) -> mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let broker = BrokerUrl::parse(url).unwrap();
    let mut options = broker.mqtt_options(&format!("sub-{}", prefix.replace('/', "-")));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Keeps the client (and so the event loop's request channel) alive.
        let _client = client;
        let mut subscribed = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .expect("SUBACK within 10 s")
        .unwrap();
    rx
}

/// Publishes one message on `topic` (QoS 1) and returns once the broker has it.
async fn publish_marker(url: &str, topic: &str) {
    let schema = Schema::new(vec![Signal::new("x")]).unwrap();
    let mut b = BatchBuilder::new(schema, false, false, false);
    let code = b.device_code("END");
    b.push(0, code, &[0.0], State::Run, 0, 0).unwrap();
    let prefix = topic.strip_suffix("/END").unwrap();
    let params = ReplayParams::default()
        .url(url)
        .topic_prefix(prefix)
        .check()
        .unwrap();
    let s = replay(&b.finish(), &params, |_| {}).await.unwrap();
    assert_eq!(s.messages, 1);
}

/// Receives until the marker (or 30 s pass: a failure).
async fn receive_until_marker(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    marker: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the marker within 30 s")
            .expect("the subscriber runs");
        if msg.0 == marker {
            return got;
        }
        got.push(msg);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn fleet() -> Batch {
    // 3 devices × 10 minutes at 10 s: 180 rows, with states, error codes and tags.
    simulate(
        &SimParams::default()
            .devices(3)
            .hours(10.0 / 60.0)
            .check()
            .unwrap(),
    )
}

#[test]
fn a_replay_delivers_every_row_once_in_order() {
    let Some(url) = broker("a_replay_delivers_every_row_once_in_order") else {
        return;
    };
    let batch = fleet();
    let prefix = unique_prefix("every-row");
    runtime().block_on(async {
        let mut rx = subscribe(&url, &prefix).await;
        let params = ReplayParams::default()
            .url(url.clone())
            .topic_prefix(prefix.clone())
            .inflight(16) // a window smaller than the batch
            .check()
            .unwrap();
        let mut last = None;
        let summary = replay(&batch, &params, |p| {
            assert!(p.acknowledged <= p.published && p.published <= p.total);
            last = Some(p);
        })
        .await
        .unwrap();
        assert_eq!(summary.messages, batch.len() as u64);
        assert_eq!(summary.devices, 3);
        assert_eq!(summary.time_span, batch.time_bounds());
        let last = last.expect("progress was reported");
        assert_eq!(last.acknowledged, batch.len() as u64);

        let marker = format!("{prefix}/END");
        publish_marker(&url, &marker).await;
        let got = receive_until_marker(&mut rx, &marker).await;
        assert_eq!(got.len(), batch.len(), "every row exactly once");

        // Each message decodes back to its row, and each device's rows arrive in
        // time order.
        let decoder = Decoder::new(batch.schema(), DecodeParams::default().check().unwrap());
        let mut rows_by_key: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for r in 0..batch.len() {
            rows_by_key.insert((batch.device_of(r).to_owned(), batch.timestamps()[r]), r);
        }
        let mut last_ts: BTreeMap<String, i64> = BTreeMap::new();
        let mut seen = vec![false; batch.len()];
        for (topic, payload) in &got {
            let reading = decoder.decode(topic, payload, i64::MAX).unwrap();
            assert_eq!(topic, &format!("{prefix}/{}", reading.device));
            if let Some(prev) = last_ts.insert(reading.device.clone(), reading.ts) {
                assert!(
                    prev < reading.ts,
                    "{}: {prev} then {}",
                    reading.device,
                    reading.ts
                );
            }
            let row = rows_by_key[&(reading.device.clone(), reading.ts)];
            assert!(!seen[row], "row {row} twice");
            seen[row] = true;
            assert_eq!(payload, &itap_live::encode(&batch, row));
            for (k, v) in reading.values.iter().enumerate() {
                assert_eq!(v.to_bits(), batch.signal(k)[row].to_bits());
            }
            assert_eq!(reading.label.as_deref(), batch.tag_of(row));
        }
        assert!(seen.iter().all(|&s| s));
    });
}

#[test]
fn a_fixed_rate_paces_the_messages() {
    let Some(url) = broker("a_fixed_rate_paces_the_messages") else {
        return;
    };
    let batch = fleet();
    let rows: Vec<usize> = (0..41).collect();
    let batch = batch.take(&rows);
    let params = ReplayParams::default()
        .url(url)
        .topic_prefix(unique_prefix("rate"))
        .pace(Pace::Rate(100.0))
        .check()
        .unwrap();
    let started = Instant::now();
    let s = runtime().block_on(replay(&batch, &params, |_| {})).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(s.messages, 41);
    // 41 messages at 100/s: the last is due 0.4 s after the first.
    assert!(elapsed >= 0.39, "{elapsed} s");
    assert!(s.seconds >= 0.39 && s.rate() <= 106.0, "{s:?}");
}

#[test]
fn a_speed_follows_the_datas_clock() {
    let Some(url) = broker("a_speed_follows_the_datas_clock") else {
        return;
    };
    // Rows 10 s apart over 60 s of data, played at 100×: 0.6 s.
    let schema = Schema::new(vec![Signal::new("x")]).unwrap();
    let mut b = BatchBuilder::new(schema, false, false, false);
    let code = b.device_code("D1");
    for i in 0..7 {
        b.push(i * 10_000_000, code, &[i as f64], State::Run, 0, 0)
            .unwrap();
    }
    let params = ReplayParams::default()
        .url(url)
        .topic_prefix(unique_prefix("speed"))
        .pace(Pace::Speed(100.0))
        .check()
        .unwrap();
    let s = runtime()
        .block_on(replay(&b.finish(), &params, |_| {}))
        .unwrap();
    assert_eq!(s.messages, 7);
    assert!(s.seconds >= 0.59, "{s:?}");
}

#[test]
fn an_unreachable_broker_is_an_error_naming_it() {
    // Port 1 on loopback: nothing listens there.
    let params = ReplayParams::default()
        .url("mqtt://127.0.0.1:1")
        .check()
        .unwrap();
    let e = runtime()
        .block_on(replay(&fleet(), &params, |_| {}))
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("mqtt://127.0.0.1:1"), "{e}");
}

#[test]
fn a_device_that_cannot_be_a_topic_level_is_refused_before_connecting() {
    let schema = Schema::new(vec![Signal::new("x")]).unwrap();
    let mut b = BatchBuilder::new(schema, false, false, false);
    let code = b.device_code("line/7");
    b.push(0, code, &[1.0], State::Run, 0, 0).unwrap();
    // Nothing listens on port 1: the refusal must come first.
    let params = ReplayParams::default()
        .url("mqtt://127.0.0.1:1")
        .check()
        .unwrap();
    let e = runtime()
        .block_on(replay(&b.finish(), &params, |_| {}))
        .unwrap_err();
    assert!(matches!(e, Error::DeviceTopic { .. }), "{e:?}");
    assert!(e.to_string().contains("`line/7`"), "{e}");
}
