//! Real `nats-server` processes for the tests: each on free loopback ports with its own
//! store directory, stopped when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `nats-server` binary found on `PATH`, or `None` where it is missing: the calling
/// test then returns at once, and says so on the terminal (past `cargo test`'s capture of
/// a passing test's output), since `cargo test` counts it as passed.
///
/// # Panics
/// Where the server is required and missing: under CI (`CI` set, and not to `false` or
/// `0`) or with `EVSTREAM_REQUIRE_NATS_SERVER=1` (as `.ci/run` sets), a test that cannot
/// run fails.
pub fn server_binary() -> Option<PathBuf> {
    let mut why = "nats-server is not on PATH (install it: apt-get install nats-server".to_owned();
    if Path::new("/usr/sbin/nats-server").is_file() {
        why.push_str("; /usr/sbin/nats-server exists: add /usr/sbin to PATH");
    }
    why.push(')');
    crate::support::server_on_path("nats-server", &why, "EVSTREAM_REQUIRE_NATS_SERVER")
}

pub use crate::support::free_port;

/// One running server.
pub struct Server {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    /// The client port.
    pub port: u16,
    /// The store directory.
    pub store: PathBuf,
}

impl Server {
    /// A standalone JetStream server storing under `dir`, with optional `--user/--pass`.
    pub fn start(binary: &Path, dir: &Path, auth: Option<(&str, &str)>) -> Self {
        let port = free_port();
        let store = dir.join(format!("store-{port}"));
        let mut args = vec![
            "-js".to_owned(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            store.display().to_string(),
        ];
        if let Some((user, pass)) = auth {
            args.extend(["--user".into(), user.into(), "--pass".into(), pass.into()]);
        }
        Self::spawn(binary, args, port, store)
    }

    /// Three servers routed into one JetStream cluster.
    pub fn cluster(binary: &Path, dir: &Path) -> Vec<Self> {
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        (0..3)
            .map(|i| {
                let store = dir.join(format!("node{i}"));
                let args = vec![
                    "-js".to_owned(),
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    client[i].to_string(),
                    "-sd".into(),
                    store.display().to_string(),
                    "-n".into(),
                    format!("node{i}"),
                    "--cluster_name".into(),
                    "evstream-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route[i]),
                    "--routes".into(),
                    routes.clone(),
                ];
                Self::spawn(binary, args, client[i], store)
            })
            .collect()
    }

    fn spawn(binary: &Path, args: Vec<String>, port: u16, store: PathBuf) -> Self {
        let mut server = Self {
            child: None,
            binary: binary.to_owned(),
            args,
            port,
            store,
        };
        server.restart();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same port and store, and waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain NATS client over the text protocol, for what the tests do besides `evstream`:
/// publishing messages that no ship made, and asking JetStream about a stream.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    inbox: u32,
}

impl RawClient {
    /// Connects to the server on `port` (no authentication).
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        // Each request is written in pieces and waits for its reply: without this, Nagle's
        // algorithm holds a piece for the server's delayed acknowledgement (40 ms).
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().expect("clone the socket")),
            writer: stream,
            inbox: 0,
        };
        let info = client.line();
        assert!(info.starts_with("INFO "), "not a NATS server: {info}");
        client.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to nats-server");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("read from nats-server");
        assert!(!line.is_empty(), "nats-server closed the connection");
        line.trim_end().to_owned()
    }

    /// Sends `payload` (with `headers`, if any) to `subject` and returns the reply's body.
    fn request(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> String {
        self.inbox += 1;
        let inbox = format!("_INBOX.evstream-test.{}", self.inbox);
        self.send(format!("SUB {inbox} {}\r\n", self.inbox).as_bytes());
        let mut message = Vec::new();
        if headers.is_empty() {
            message.extend(format!("PUB {subject} {inbox} {}\r\n", payload.len()).as_bytes());
        } else {
            let mut head = String::from("NATS/1.0\r\n");
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            message.extend(
                format!(
                    "HPUB {subject} {inbox} {} {}\r\n",
                    head.len(),
                    head.len() + payload.len()
                )
                .as_bytes(),
            );
            message.extend(head.as_bytes());
        }
        message.extend(payload);
        message.extend(b"\r\n");
        self.send(&message);
        loop {
            let line = self.line();
            if line == "PING" {
                self.send(b"PONG\r\n");
                continue;
            }
            if line.starts_with("-ERR") {
                panic!("nats-server: {line}");
            }
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            let len: usize = rest
                .split(' ')
                .next_back()
                .and_then(|n| n.parse().ok())
                .expect("MSG line ends with the length");
            let mut body = vec![0u8; len + 2];
            self.reader.read_exact(&mut body).expect("read the reply");
            body.truncate(len);
            self.send(format!("UNSUB {}\r\n", self.inbox).as_bytes());
            return String::from_utf8(body).expect("a text reply");
        }
    }

    /// Publishes a message to `subject` that JetStream stores, and returns its stream
    /// sequence (from JetStream's acknowledgement).
    pub fn publish(&mut self, subject: &str, headers: &[(&str, &str)], payload: &[u8]) -> u64 {
        let reply = self.request(subject, headers, payload);
        let ack: serde_json::Value = serde_json::from_str(&reply).expect("a JSON ack");
        ack["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("JetStream did not store the message: {reply}"))
    }

    /// Creates JetStream stream `stream` (file storage) taking messages on `subjects`.
    pub fn create_stream(&mut self, stream: &str, subjects: &[&str]) {
        self.create_stream_with(stream, subjects, serde_json::json!({}));
    }

    /// [`create_stream`](Self::create_stream) with more settings: the fields of `more`
    /// (such as `{"duplicate_window": NANOSECONDS}`).
    pub fn create_stream_with(&mut self, stream: &str, subjects: &[&str], more: serde_json::Value) {
        let mut config = serde_json::json!({
            "name": stream,
            "subjects": subjects,
            "storage": "file",
            "num_replicas": 1,
        });
        if let (Some(config), Some(more)) = (config.as_object_mut(), more.as_object()) {
            config.extend(more.clone());
        }
        let reply = self.request(
            &format!("$JS.API.STREAM.CREATE.{stream}"),
            &[],
            config.to_string().as_bytes(),
        );
        assert!(
            !reply.contains("\"error\""),
            "create stream {stream}: {reply}"
        );
    }

    /// Deletes JetStream stream `stream` and its messages.
    pub fn delete_stream(&mut self, stream: &str) {
        let reply = self.request(&format!("$JS.API.STREAM.DELETE.{stream}"), &[], b"");
        assert!(
            reply.contains("\"success\":true"),
            "delete {stream}: {reply}"
        );
    }

    /// Removes every message of JetStream stream `stream` below sequence `sequence`.
    pub fn purge_below(&mut self, stream: &str, sequence: u64) {
        let request = serde_json::json!({ "seq": sequence });
        let reply = self.request(
            &format!("$JS.API.STREAM.PURGE.{stream}"),
            &[],
            request.to_string().as_bytes(),
        );
        assert!(
            reply.contains("\"success\":true"),
            "purge {stream}: {reply}"
        );
    }

    /// Deletes message `sequence` of JetStream stream `stream`.
    pub fn delete_message(&mut self, stream: &str, sequence: u64) {
        let request = serde_json::json!({ "seq": sequence });
        let reply = self.request(
            &format!("$JS.API.STREAM.MSG.DELETE.{stream}"),
            &[],
            request.to_string().as_bytes(),
        );
        assert!(
            reply.contains("\"success\":true"),
            "delete message {sequence} of {stream}: {reply}"
        );
    }

    /// The number of messages JetStream stream `stream` holds.
    pub fn stream_messages(&mut self, stream: &str) -> u64 {
        let reply = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), &[], b"");
        let info: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
        info["state"]["messages"]
            .as_u64()
            .unwrap_or_else(|| panic!("no stream info: {reply}"))
    }

    /// [`stream_messages`](Self::stream_messages), `None` if JetStream has no such
    /// stream.
    pub fn messages_if_any(&mut self, stream: &str) -> Option<u64> {
        let reply = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), &[], b"");
        let info: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
        info["state"]["messages"].as_u64()
    }
}

/// A TCP proxy on a free loopback port in front of a server's port, whose connections are
/// cut as a network failure would cut them: both sockets shut down at once, whatever is in
/// flight lost. The test cuts them ([`Proxy::cut`]), or the proxy cuts each connection
/// once the server sent a number of bytes through it, in the middle of whatever the
/// server was sending.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    live: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    stopping: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

impl Proxy {
    /// Forwards connections to `port` on loopback; with `cut_after`, cuts each connection
    /// once the server sent that many bytes through it.
    pub fn start(port: u16, cut_after: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        let proxy = Self {
            port: listener.local_addr().expect("the proxy's address").port(),
            live: Arc::default(),
            stopping: Arc::default(),
            cuts: Arc::default(),
        };
        let live = Arc::clone(&proxy.live);
        let stopping = Arc::clone(&proxy.stopping);
        let cuts = Arc::clone(&proxy.cuts);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let clone = |s: &TcpStream| s.try_clone().expect("clone a socket");
                live.lock().unwrap().push((clone(&client), clone(&server)));
                let (mut upstream, mut to_server) = (clone(&client), clone(&server));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut upstream, &mut to_server);
                    let _ = upstream.shutdown(Shutdown::Both);
                    let _ = to_server.shutdown(Shutdown::Both);
                });
                let cuts = Arc::clone(&cuts);
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let mut sent = 0u64;
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buffer) {
                        if n == 0 || to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        if cut_after.is_some_and(|limit| sent >= limit) {
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        });
        proxy
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Cuts every live connection.
    pub fn cut(&self) {
        let pairs: Vec<_> = self.live.lock().unwrap().drain(..).collect();
        for (client, server) in &pairs {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(pairs.len() as u64, Ordering::SeqCst);
    }

    /// Connections cut so far (those already closed when [`cut`](Self::cut) shut them
    /// down included).
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then stops.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}
