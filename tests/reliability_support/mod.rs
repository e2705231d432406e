//! Shared helpers for the reliability tests (`crash`, `crash_points`, `power_loss`,
//! `corruption`, `full_disk`, `concurrency`): a seeded random number generator, the
//! deterministic workloads every test checks streams against, a reader that turns a
//! stream into plain data, and re-running the test binary itself as a child process.
//!
//! Each test binary compiles this module separately and uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use evstream::{Error, StreamReader};

/// splitmix64: small, fast, and good enough to drive test decisions reproducibly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Payload sizes that exercise every layout case: empty, tiny, small, crossing a 512-byte
/// sector, an event of exactly one 4 KiB page (4080 + 16), crossing a page, many pages.
pub const SIZE_CLASSES: &[usize] = &[0, 1, 13, 500, 4080, 5000, 70_000];

/// The events a test writes: event `i` always has the same timestamp and payload for a
/// given seed, so any stream can be checked against it after a crash.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    seed: u64,
    /// `Some(size)`: every payload has this size; `None`: sizes drawn from the classes.
    fixed: Option<usize>,
    /// Largest size class a mixed workload draws (index into `SIZE_CLASSES`).
    max_class: usize,
}

impl Workload {
    /// Sizes from every class, weighted toward small events.
    pub fn mixed(seed: u64) -> Self {
        Self {
            seed,
            fixed: None,
            max_class: SIZE_CLASSES.len() - 1,
        }
    }

    /// Sizes from the classes up to `max_bytes`.
    pub fn mixed_up_to(seed: u64, max_bytes: usize) -> Self {
        let max_class = SIZE_CLASSES
            .iter()
            .rposition(|&s| s <= max_bytes)
            .unwrap_or(0);
        Self {
            seed,
            fixed: None,
            max_class,
        }
    }

    /// Every payload `size` bytes.
    pub fn fixed(seed: u64, size: usize) -> Self {
        Self {
            seed,
            fixed: Some(size),
            max_class: 0,
        }
    }

    fn rng(&self, index: u64) -> Rng {
        Rng::new(self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ index)
    }

    pub fn size(&self, index: u64) -> usize {
        if let Some(size) = self.fixed {
            return size;
        }
        // Weights per class: 0, 1, 13, 500, 4080, 5000, 70000 bytes.
        const WEIGHTS: [u64; 7] = [8, 8, 30, 30, 10, 10, 4];
        let weights = &WEIGHTS[..=self.max_class];
        let total: u64 = weights.iter().sum();
        let mut pick = self.rng(index).below(total);
        for (class, &w) in weights.iter().enumerate() {
            if pick < w {
                return SIZE_CLASSES[class];
            }
            pick -= w;
        }
        unreachable!("the weights cover every pick")
    }

    /// Non-decreasing, with repeats (two events share each timestamp).
    pub fn timestamp(&self, index: u64) -> i64 {
        1_700_000_000_000_000_000 + (index / 2) as i64 * 1_000
    }

    pub fn payload(&self, index: u64) -> Vec<u8> {
        self.payload_sized(index, self.size(index))
    }

    /// The payload this workload's seed gives event `index`, made `size` bytes long.
    pub fn payload_sized(&self, index: u64, size: usize) -> Vec<u8> {
        let mut payload = vec![0u8; size];
        let mut rng = self.rng(index);
        rng.next_u64();
        rng.fill(&mut payload);
        // Never an all-zero page inside a payload: a zero page would look like lost data.
        if let Some(first) = payload.first_mut() {
            *first |= 1;
        }
        for chunk in payload.chunks_mut(512) {
            chunk[0] |= 0x80;
        }
        payload
    }

    /// Bytes the first `count` events occupy in a stream, event headers included.
    pub fn bytes_of(&self, count: u64) -> u64 {
        (0..count).map(|i| 16 + self.size(i) as u64).sum()
    }
}

/// One event read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    pub offset: u64,
    pub timestamp: i64,
    pub payload: Vec<u8>,
}

/// Everything a reader sees in a stream.
#[derive(Debug)]
pub struct Contents {
    pub events: Vec<ReadEvent>,
    pub write_offset: u64,
    pub header_count: u64,
    /// The error that ended the iteration early, if any.
    pub error: Option<Error>,
}

/// Reads every published event of the stream at `path` with a verifying reader.
pub fn read_stream(path: &Path) -> evstream::Result<Contents> {
    let reader = StreamReader::open(path)?;
    let mut events = Vec::new();
    let mut error = None;
    for event in reader.iter() {
        match event {
            Ok(e) => events.push(ReadEvent {
                offset: e.offset(),
                timestamp: e.timestamp(),
                payload: e.payload().to_vec(),
            }),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Ok(Contents {
        events,
        write_offset: reader.write_offset(),
        header_count: reader.header_event_count(),
        error,
    })
}

/// Asserts that `events` are exactly the first `events.len()` events of `workload`,
/// packed from offset 24: no gap, no duplicate, no foreign event.
pub fn assert_prefix_of(events: &[ReadEvent], workload: &Workload, context: &str) {
    let mut offset = 24;
    for (i, event) in events.iter().enumerate() {
        let i = i as u64;
        assert_eq!(event.offset, offset, "{context}: event {i} offset");
        assert_eq!(
            event.timestamp,
            workload.timestamp(i),
            "{context}: event {i} timestamp"
        );
        let expected = workload.payload(i);
        assert!(
            event.payload == expected,
            "{context}: event {i} payload differs ({} bytes read, {} expected)",
            event.payload.len(),
            expected.len()
        );
        offset += 16 + expected.len() as u64;
    }
}

/// A command that runs the single test `name` of the current test binary, ignored tests
/// included, without libtest capturing its output.
pub fn child_test(name: &str) -> Command {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}

/// Starts this test binary again as a child that runs the single test `test` in the role
/// `role` (`EVSTREAM_CHILD`) on `path` (`EVSTREAM_CHILD_PATH`), its output discarded.
pub fn spawn_child(role: &str, test: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("path of the test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("EVSTREAM_CHILD", role)
        .env("EVSTREAM_CHILD_PATH", path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the test binary")
}

/// A number from the environment, or `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether the bytes of `path` from `from` to the end of the event area (the trailer's
/// offset) are all zero.
pub fn zero_from(path: &Path, from: u64) -> bool {
    let bytes = std::fs::read(path).expect("read stream file");
    let end = evstream::format::trailer_offset(bytes.len() as u64).expect("a v2 stream length");
    bytes
        .get(from as usize..end as usize)
        .is_some_and(|tail| tail.iter().all(|&b| b == 0))
}
