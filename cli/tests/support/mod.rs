//! Running the `evstream` binary from tests: spawning it, its outcome, and streams
//! written through the library, shared by the test files of this crate.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use evstream::{StreamReader, StreamWriter};

/// Nanoseconds in a second.
pub const SEC: i64 = 1_000_000_000;
/// 2024-05-01T12:00:00Z in Unix nanoseconds.
pub const NOON: i64 = 1_714_564_800 * SEC;

/// Held while spawning a process and while closing a writer.
///
/// A child inherits every descriptor open at the moment of its `fork` until its `exec`
/// closes them, and with them the writer's `flock`: a writer closed in that window stays
/// locked for a moment after `drop`, and a test opening it again would see "locked". The
/// tests run in parallel threads, so spawning and closing writers take turns.
pub static FORKING: Mutex<()> = Mutex::new(());

pub fn forking() -> MutexGuard<'static, ()> {
    FORKING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn spawn(command: &mut Command) -> Child {
    let _turn = forking();
    command.spawn().unwrap()
}

/// A [`StreamWriter`] that closes while no process is being spawned; see [`FORKING`].
pub struct Writer(Option<StreamWriter>);

impl Writer {
    pub fn open(path: &Path) -> Self {
        Self(Some(retry_locked(|| StreamWriter::open(path))))
    }

    pub fn create(path: &Path, capacity: u64) -> Self {
        Self(Some(retry_locked(|| StreamWriter::create(path, capacity))))
    }
}

/// Runs `open` again while it fails with [`evstream::Error::Locked`], for up to 5 s.
///
/// Even with [`FORKING`], a child spawned just before a writer closed can hold the
/// writer's file for a few microseconds more: the kernel lets the parent of a `vfork`
/// continue when the child drops its memory, before it closes its close-on-exec files.
pub fn retry_locked(mut open: impl FnMut() -> evstream::Result<StreamWriter>) -> StreamWriter {
    let start = Instant::now();
    loop {
        match open() {
            Err(evstream::Error::Locked { .. }) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.unwrap(),
        }
    }
}

impl Deref for Writer {
    type Target = StreamWriter;
    fn deref(&self) -> &StreamWriter {
        self.0.as_ref().unwrap()
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut StreamWriter {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _turn = forking();
        self.0.take();
    }
}

/// The binary under test, without the colour variables of the caller's environment.
pub fn evstream() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_evstream"));
    command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
    command
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).unwrap()
    }

    pub fn lines(&self) -> Vec<String> {
        self.out().lines().map(str::to_owned).collect()
    }

    /// Exit 0, nothing on standard error.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        assert_eq!(self.stderr, "", "unexpected stderr: {self:?}");
        self
    }

    /// Exit `code` with exactly one `error:` line on standard error containing `words`.
    pub fn fails(self, code: i32, words: &[&str]) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(lines[0].starts_with("error: "), "{self:?}");
        if code == 1 {
            assert_eq!(lines.len(), 1, "one line expected: {self:?}");
        }
        for word in words {
            assert!(
                self.stderr.contains(word),
                "{word:?} not in {:?}",
                self.stderr
            );
        }
        self
    }
}

pub fn from(output: Output) -> Run {
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_ne!(run.code, 101, "panicked: {run:?}");
    assert!(!run.stderr.contains("panicked"), "panicked: {run:?}");
    run
}

/// Runs `evstream ARGS` with `stdin` as standard input (empty if `None`).
pub fn run_with(args: &[&str], stdin: Option<&[u8]>) -> Run {
    run_command(evstream(), args, stdin)
}

/// Runs `command` (an [`evstream`] with its environment set) with `args` and `stdin`.
pub fn run_command(mut command: Command, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = spawn(
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut input = child.stdin.take().unwrap();
    let data = stdin.unwrap_or_default().to_vec();
    let feeder = std::thread::spawn(move || {
        // The command may exit before reading it all; that is its business.
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    from(output)
}

pub fn run(args: &[&str]) -> Run {
    run_with(args, None)
}

pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A stream at `dir/name` holding `events`, written through the library; every event but
/// the last is flushed (below the durable watermark), the last is not.
pub fn stream(dir: &Path, name: &str, capacity: u64, events: &[(i64, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let mut writer = Writer::create(&path, capacity);
    for (i, (ts, payload)) in events.iter().enumerate() {
        if i + 1 == events.len() {
            writer.flush().unwrap();
        }
        writer.append(*ts, payload).unwrap();
    }
    path
}

pub fn events_of(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let reader = StreamReader::open(path).unwrap();
    reader
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

/// The server binary `name` on `PATH`, for tests that run a real server; `None` where it
/// is missing: the test then returns, saying SKIPPED on the terminal (`why` says how to
/// install it). Under CI (`CI` set, not `false`/`0`) or with the variable `require` set
/// a missing server fails the test instead: a test whose server is missing never passes
/// silently.
pub fn server_on_path(name: &str, why: &str, require: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
    {
        return Some(found);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a server test")
        .to_owned();
    let flag =
        |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if flag("CI") || flag(require) {
        panic!("{test} cannot run: {why}; CI requires it to run");
    }
    // Straight to the process's standard error: `eprintln!` would be captured, and a
    // passing test's captured output is never shown.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: not run, counted as passed: {why}"
    );
    None
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
