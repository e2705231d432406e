//! Shipping throughput against a plain `async-nats` publish loop, side by side, and the
//! shipping lag of a stream appended to at a steady rate.
//!
//! `cargo bench -p evstream-nats --bench ship` starts its own `nats-server` (JetStream,
//! file storage in a temporary directory, a free loopback port), then:
//! - for 64 B and 1 KiB events, ships a stream of them with [`evstream_nats::ship`] and
//!   publishes the same messages (payload, the same three headers, the same window of
//!   acknowledgements awaited) with a bare loop over `async-nats`, interleaved, and prints
//!   the medians and their ratio;
//! - appends 1 KiB events at 10,000 per second for 3 s while a ship follows the stream,
//!   and prints the lag from each append to a subscriber of the subject receiving it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use evstream::StreamWriter;
use evstream_nats::{Connection, ShipOptions};
use futures_util::StreamExt;

const WINDOW: usize = 256;
const ROUNDS: usize = 5;

struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path) -> Option<(ServerGuard, String)> {
    let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = ServerGuard(child);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((guard, format!("nats://127.0.0.1:{port}")))
}

fn write_stream(path: &Path, events: u64, size: usize) {
    let mut writer = StreamWriter::create(path, events * (16 + size as u64) + 4096).unwrap();
    let payload = vec![0x5au8; size];
    for i in 0..events {
        writer.append(i as i64, &payload).unwrap();
    }
    writer.flush().unwrap();
}

async fn fresh_stream(js: &jetstream::Context, name: &str, subject: &str) {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The bare loop: the same messages, the same window, no evstream in the way.
async fn plain_loop(js: &jetstream::Context, subject: &str, events: u64, size: usize) -> Duration {
    let payload = bytes::Bytes::from(vec![0x5au8; size]);
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut last: Option<String> = None;
    for i in 0..events {
        if in_flight.len() >= WINDOW {
            let ack: jetstream::context::PublishAckFuture = in_flight.pop_front().unwrap();
            ack.await.unwrap();
        }
        let id = format!("0000000000000000:{i}");
        let mut headers = HeaderMap::new();
        headers.insert("Evstream-Timestamp", i.to_string().as_str());
        headers.insert("Evstream-Next", (i + 1).to_string().as_str());
        let mut publish = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers)
            .message_id(&id);
        if let Some(last) = &last {
            publish = publish.expected_last_message_id(last);
        }
        in_flight.push_back(js.send_publish(subject.to_owned(), publish).await.unwrap());
        last = Some(id);
    }
    for ack in in_flight {
        ack.await.unwrap();
    }
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn throughput(url: &str, dir: &Path, size: usize, events: u64) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let source = dir.join(format!("source-{size}.evs"));
    write_stream(&source, events, size);
    let connection = Connection::new([url]);
    let (mut shipped, mut plain, mut setup) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let subject = format!("bench.ship.{size}.{round}");
        fresh_stream(&js, "SHIP", &subject).await;
        let options = ShipOptions::new(&source, &subject)
            .stream("SHIP")
            .window(WINDOW)
            .until_end(true);
        // Timed from the moment the ship starts publishing, as the loop is: connecting
        // and finding where to resume are a ship's one-off costs, reported apart.
        let started = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mark = std::sync::Arc::clone(&started);
        let call = Instant::now();
        let summary = evstream_nats::ship(&connection, &options, move |report| {
            if let evstream_nats::Report::ShipStart { .. } = report {
                *mark.lock().unwrap() = Some(Instant::now());
            }
        })
        .await
        .unwrap();
        let start = started.lock().unwrap().unwrap();
        shipped.push(start.elapsed());
        setup.push(start - call);
        assert_eq!(summary.events, events);

        let subject = format!("bench.plain.{size}.{round}");
        fresh_stream(&js, "PLAIN", &subject).await;
        plain.push(plain_loop(&js, &subject, events, size).await);
    }
    let (s, p) = (median(shipped), median(plain));
    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!(
        "{size:>5} B x {events}: ship {:>9.0} events/s, plain loop {:>9.0} events/s, ship/plain {:.2} (ship costs {:+.1}%); ship start-up {:?}",
        rate(s),
        rate(p),
        rate(s) / rate(p),
        (s.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0,
        median(setup)
    );
}

async fn lag(url: &str, dir: &Path) {
    const RATE: u64 = 10_000;
    const SECONDS: u64 = 3;
    let events = RATE * SECONDS;
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client.clone());
    fresh_stream(&js, "LAG", "bench.lag").await;
    let source = dir.join("lag.evs");
    let mut writer = StreamWriter::create(&source, events * 1040 + 4096).unwrap();
    let mut subscriber = client.subscribe("bench.lag").await.unwrap();
    client.flush().await.unwrap();
    let (go, ready) = std::sync::mpsc::channel::<()>();
    let appender = std::thread::spawn(move || {
        // Appends start once the ship is following: its start-up is not shipping lag.
        if ready.recv().is_err() {
            return;
        }
        let payload = vec![7u8; 1024];
        let start = Instant::now();
        for i in 0..events {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / RATE);
            // Sleep, not spin: a spinning appender would take a core from the ship and
            // the server on a small machine.
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
            writer.append(now_nanos(), &payload).unwrap();
        }
    });
    let connection = Connection::new([url]);
    let options = ShipOptions::new(&source, "bench.lag")
        .stream("LAG")
        .window(WINDOW);
    let mut lags = Vec::with_capacity(events as usize);
    let receive = async {
        while lags.len() < events as usize {
            let message = subscriber.next().await.unwrap();
            let sent: i64 = message
                .headers
                .as_ref()
                .unwrap()
                .get("Evstream-Timestamp")
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            lags.push(Duration::from_nanos((now_nanos() - sent).max(0) as u64));
        }
    };
    let go = std::sync::Mutex::new(Some(go));
    let report = move |report| {
        if let evstream_nats::Report::ShipStart { .. } = report
            && let Some(go) = go.lock().unwrap().take()
        {
            let _ = go.send(());
        }
    };
    tokio::select! {
        result = evstream_nats::ship(&connection, &options, report) => panic!("ship ended: {result:?}"),
        () = receive => {}
    }
    appender.join().unwrap();
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    println!(
        "lag, 1 KiB at {RATE}/s for {SECONDS} s: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lags[lags.len() - 1]
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, url)) = start_server(dir.path()) else {
        println!("SKIPPED: nats-server is not installed");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        throughput(&url, dir.path(), 64, 100_000).await;
        throughput(&url, dir.path(), 1024, 50_000).await;
        lag(&url, dir.path()).await;
    });
}
