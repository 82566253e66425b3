//! A steady stream of telemetry stamped as it is sent, for measuring the time
//! from publish to stored score of a running `itap serve`: each message is a
//! simulated row whose timestamp is replaced by the wall clock at publish, so
//! the server's lag figure (`/api/health` → `lag`, `/metrics` →
//! `itap_row_lag_seconds`) is that time.
//!
//! Run (a broker, and `itap serve --http 127.0.0.1:8080 …` on it, first):
//!
//! ```sh
//! cargo run --release -p itap-live --example steady_load -- \
//!     --mqtt mqtt://127.0.0.1:1884 --rate 5000 --devices 100 --seconds 60
//! curl -s http://127.0.0.1:8080/api/health
//! ```

use std::time::{Duration, Instant};

use itap::ParamGuard;
use itap::telemetry::{SimParams, format_timestamp, simulate};
use itap_live::{BrokerUrl, DEFAULT_TOPIC_PREFIX, encode, now_micros};
use rumqttc::{AsyncClient, QoS};

struct Args {
    mqtt: String,
    rate: u64,
    devices: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        mqtt: "mqtt://127.0.0.1:1883".into(),
        rate: 5000,
        devices: 100,
        seconds: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--rate" => a.rate = num(&value),
            "--devices" => a.devices = num(&value) as usize,
            "--seconds" => a.seconds = num(&value),
            "--mqtt" => a.mqtt = value,
            _ => panic!("unknown flag {flag}: use --mqtt, --rate, --devices, --seconds"),
        }
    }
    a
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    // Realistic values: one simulated hour of the fleet, cycled.
    let sim = SimParams {
        devices: a.devices,
        hours: 1.0,
        ..SimParams::default()
    }
    .check()
    .expect("simulator parameters");
    let batch = simulate(&sim);
    let broker = BrokerUrl::parse(&a.mqtt).expect("broker URL");
    let mut options = broker.mqtt_options(&format!("itap-steady-{}", std::process::id()));
    options.set_inflight(2000);
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    let driver = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("connection: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    // Ticks of 10 ms, each publishing its share of the rate.
    let per_tick = a.rate as f64 / 100.0;
    let mut due = 0.0;
    let mut sent = 0u64;
    let mut row = 0usize;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while t0.elapsed() < Duration::from_secs(a.seconds) {
        tick.tick().await;
        due += per_tick;
        while due >= 1.0 {
            due -= 1.0;
            let original = String::from_utf8(encode(&batch, row)).expect("JSON is UTF-8");
            // {"ts":"<file time>",… → {"ts":"<now>",…
            let rest = &original[original[7..].find('"').expect("ts field") + 8..];
            let payload = format!("{{\"ts\":\"{}\"{rest}", format_timestamp(now_micros()));
            let topic = format!("{DEFAULT_TOPIC_PREFIX}/{}", batch.device_of(row));
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("publish");
            sent += 1;
            row = (row + 1) % batch.len();
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // Let the last acknowledgements arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = client.disconnect().await;
    driver.abort();
    println!(
        "published {sent} messages in {secs:.1} s ({:.0}/s) for {} devices",
        sent as f64 / secs,
        a.devices
    );
}
