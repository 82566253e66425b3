//! What the process tests share: a private Mosquitto on a free port, and the
//! `itap` binary run in a folder.

#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

/// A child process killed (SIGKILL) and reaped when dropped.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Mosquitto on a free port with no queue limit (its default keeps
/// 1,000 messages per offline client and drops the rest), or says why the test
/// is skipped: `ITAP_TEST_MQTT_URL` unset (MQTT tests not wanted) or no
/// `mosquitto` installed.
pub(crate) fn broker(dir: &Path) -> Option<(Guard, u16)> {
    if std::env::var("ITAP_TEST_MQTT_URL").map_or(true, |v| v.is_empty()) {
        eprintln!("skipped: ITAP_TEST_MQTT_URL is not set");
        return None;
    }
    let Some(exe) = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped: mosquitto is not installed");
        return None;
    };
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 1000\n"
        ),
    )
    .unwrap();
    let child = Process::new(exe)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Some((Guard(child), port))
}

/// A port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 30 s) until something listens on `port`.
pub(crate) fn wait_for_port(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `itap` run in `dir`.
pub(crate) fn itap(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("itap").unwrap();
    c.current_dir(dir);
    c
}

/// Runs `query` on a pool over the SQLite file `db` (which must exist), on a
/// runtime of its own, and closes the pool.
pub(crate) fn on_sqlite<T>(db: &Path, query: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let out = query(&pool).await;
        pool.close().await;
        out
    })
}
