//! Real `nats-server` processes for the tests: each on free loopback ports with its own
//! store directory, stopped when dropped.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary, or `None` (with the reason printed) where it is missing.
pub fn server_binary() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join("nats-server");
        if path.exists() {
            return Some(path);
        }
    }
    eprintln!(
        "SKIPPED: nats-server is not installed (Debian package nats-server; .ci/run installs it)"
    );
    None
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

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
