//! A bounded load on the HTTP API of a running `itap serve --http`: a fixed
//! number of keep-alive connections, each sending GET requests back to back
//! (the next one when the answer is in) for a fixed time, taking the paths in
//! turn. Prints, per path, the requests answered, their rate and the latency
//! p50/p90/p99/max. Any answer other than 200 is counted as an error (the run
//! goes on); a connection that fails is reopened.
//!
//! Run (`itap serve --http 127.0.0.1:8080 …` first, with a replay feeding it):
//!
//! ```sh
//! cargo run --release -p itap-live --example api_load -- \
//!     --url http://127.0.0.1:8080 --connections 100 --seconds 30 \
//!     --path '/api/alerts?limit=50' --path /api/devices/DEV-0003/scores
//! ```

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    host: String,
    connections: usize,
    seconds: u64,
    paths: Vec<String>,
}

fn args() -> Args {
    let mut url = "http://127.0.0.1:8080".to_owned();
    let mut a = Args {
        host: String::new(),
        connections: 100,
        seconds: 30,
        paths: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--url" => url = value,
            "--connections" => a.connections = num(&value).max(1) as usize,
            "--seconds" => a.seconds = num(&value),
            "--path" => {
                assert!(value.starts_with('/'), "--path {value:?} must start with /");
                a.paths.push(value);
            }
            _ => panic!("unknown flag {flag}: use --url, --connections, --seconds, --path"),
        }
    }
    a.host = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("--url {url:?}: only http:// is served"))
        .trim_end_matches('/')
        .to_owned();
    if a.paths.is_empty() {
        a.paths.push("/api/alerts".to_owned());
    }
    a
}

/// One answer read off a keep-alive connection: its status and body length.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut length = None;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| bad("content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                chunked = true;
            }
        }
    }
    if let Some(length) = length {
        while buf.len() < head_end + length {
            read_more(stream, buf).await?;
        }
    } else if chunked {
        // Chunks of "<hex size>\r\n<data>\r\n", ending with a size of 0.
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + i;
                }
                read_more(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[at..line_end]).map_err(|_| bad("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            let next = line_end + 2 + size + 2;
            while buf.len() < next {
                read_more(stream, buf).await?;
            }
            at = next;
            if size == 0 {
                break;
            }
        }
    } else {
        return Err(bad("neither content-length nor chunked"));
    }
    Ok(status)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut part = [0u8; 16 * 1024];
    let n = stream.read(&mut part).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&part[..n]);
    Ok(())
}

#[derive(Default)]
struct Tally {
    /// Latency of each answered request, in microseconds, per path.
    micros: Vec<Vec<u32>>,
    errors: Vec<u64>,
    reconnects: u64,
}

async fn connection(host: String, paths: Vec<String>, first: usize, until: Instant) -> Tally {
    let mut tally = Tally {
        micros: vec![Vec::new(); paths.len()],
        errors: vec![0; paths.len()],
        reconnects: 0,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut turn = first;
    let mut stream: Option<TcpStream> = None;
    while Instant::now() < until {
        let p = turn % paths.len();
        turn += 1;
        if stream.is_none() {
            match TcpStream::connect(&host).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    stream = Some(s);
                }
                Err(e) => {
                    eprintln!("connect {host}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", paths[p]);
        let t = Instant::now();
        let answer = match s.write_all(request.as_bytes()).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(200) => {
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.micros[p].push(us);
            }
            Ok(_) => tally.errors[p] += 1,
            Err(_) => {
                tally.errors[p] += 1;
                tally.reconnects += 1;
                stream = None;
            }
        }
    }
    tally
}

fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let until = Instant::now() + Duration::from_secs(a.seconds);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..a.connections)
        .map(|c| tokio::spawn(connection(a.host.clone(), a.paths.clone(), c, until)))
        .collect();
    let mut all = Tally {
        micros: vec![Vec::new(); a.paths.len()],
        errors: vec![0; a.paths.len()],
        reconnects: 0,
    };
    for task in tasks {
        let t = task.await.expect("connection task");
        for (p, m) in t.micros.into_iter().enumerate() {
            all.micros[p].extend(m);
            all.errors[p] += t.errors[p];
        }
        all.reconnects += t.reconnects;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} connections, {secs:.1} s, {} reconnects",
        a.connections, all.reconnects
    );
    for (p, path) in a.paths.iter().enumerate() {
        let m = &mut all.micros[p];
        m.sort_unstable();
        println!(
            "{path}: {} answered ({:.0}/s), {} errors, latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            m.len(),
            m.len() as f64 / secs,
            all.errors[p],
            quantile_ms(m, 0.50),
            quantile_ms(m, 0.90),
            quantile_ms(m, 0.99),
            quantile_ms(m, 1.0),
        );
    }
}
