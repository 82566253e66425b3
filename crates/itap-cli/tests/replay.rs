//! `itap replay` end to end: refusals and usage errors (no broker needed), and a
//! file played into the broker of `ITAP_TEST_MQTT_URL` (skipped, saying so, when
//! it is unset) with a subscriber counting what arrives.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn itap(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir.path());
    c
}

fn testdata(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
        .display()
        .to_string()
}

/// Port 1 on loopback: nothing listens there, so a test that reaches the
/// connection fails loudly.
const NOWHERE: &str = "mqtt://127.0.0.1:1";

#[test]
fn help_explains_the_format_and_the_pace() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args(["replay", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--speed")
                .and(predicate::str::contains("--rate"))
                .and(predicate::str::contains("--topic-prefix"))
                .and(predicate::str::contains("QoS 1"))
                .and(predicate::str::contains("docs/live.md"))
                .and(predicate::str::contains("Exit status")),
        );
}

#[test]
fn a_file_validation_refuses_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args(["replay", &testdata("repeated_hour.csv"), "--mqtt", NOWHERE])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("refused:")
                .and(predicate::str::contains("--policy quarantine")),
        );
}

#[test]
fn usage_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let csv = testdata("repeated_hour.csv");
    for (args, says) in [
        (
            vec!["--mqtt", "http://127.0.0.1:1883"],
            "`http://127.0.0.1:1883`",
        ),
        (vec!["--mqtt", NOWHERE, "--rate=-5"], "invalid --rate"),
        (vec!["--mqtt", NOWHERE, "--speed", "0"], "invalid --speed"),
        (
            vec!["--mqtt", NOWHERE, "--topic-prefix", "a/#"],
            "invalid --topic-prefix",
        ),
        (
            vec!["--mqtt", NOWHERE, "--speed", "2", "--rate", "5"],
            "cannot be used with",
        ),
        (vec![], "--mqtt"),
    ] {
        itap(&dir)
            .args(["replay", &csv])
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

#[test]
fn an_unreachable_broker_fails_with_its_url() {
    let dir = tempfile::tempdir().unwrap();
    itap(&dir)
        .args([
            "generate",
            "-q",
            "--devices",
            "1",
            "--hours",
            "0.01",
            "--out",
            "t.csv",
        ])
        .assert()
        .success();
    itap(&dir)
        .args(["replay", "t.csv", "--mqtt", NOWHERE])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot connect to the MQTT broker at mqtt://127.0.0.1:1",
        ));
}

#[test]
fn a_file_is_played_into_the_broker() {
    let url = match std::env::var("ITAP_TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("a_file_is_played_into_the_broker: skipped: ITAP_TEST_MQTT_URL is not set");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    // 2 devices × 3 minutes at 10 s: 36 rows.
    itap(&dir)
        .args([
            "generate",
            "-q",
            "--devices",
            "2",
            "--hours",
            "0.05",
            "--out",
            "t.csv",
        ])
        .assert()
        .success();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("itap-cli-test/{}-{nanos}", std::process::id());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (host, port) = {
        let b = itap_live::BrokerUrl::parse(&url).unwrap();
        (b.host().to_owned(), b.port())
    };
    let mut got = rt.block_on(async {
        let (client, mut eventloop) =
            AsyncClient::new(MqttOptions::new(format!("sub-{nanos}"), host, port), 100);
        client
            .subscribe(format!("{prefix}/#"), QoS::AtLeastOnce)
            .await
            .unwrap();
        // Subscribed before the replay starts.
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.unwrap() {
                break;
            }
        }
        let replay = tokio::task::spawn_blocking({
            let (dir, url, prefix) = (dir.path().to_owned(), url.clone(), prefix.clone());
            move || {
                Command::cargo_bin("itap")
                    .unwrap()
                    .current_dir(dir)
                    .args(["replay", "t.csv", "--mqtt", &url, "--topic-prefix", &prefix])
                    .output()
                    .unwrap()
            }
        });
        let mut got: BTreeMap<String, u32> = BTreeMap::new();
        let received = tokio::time::timeout(Duration::from_secs(60), async {
            while got.values().sum::<u32>() < 36 {
                if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.unwrap() {
                    *got.entry(p.topic.clone()).or_default() += 1;
                }
            }
        })
        .await;
        let out = replay.await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("replayed 36 messages from 2 devices") && stdout.contains("messages/s"),
            "{stdout}"
        );
        received.expect("36 messages within 60 s");
        got
    });
    assert_eq!(got.remove(&format!("{prefix}/DEV-0000")), Some(18));
    assert_eq!(got.remove(&format!("{prefix}/DEV-0001")), Some(18));
    assert!(got.is_empty(), "{got:?}");
}
