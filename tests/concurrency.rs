//! Concurrency across processes: one writer process appends a million events while
//! several reader processes tail the same file. Every reader must see every event
//! exactly once, in order, byte for byte, with no checksum failure.
//!
//! The children are this test binary run again with one ignored test selected. Readers
//! take turns between the two ways of tailing: `follow` (waits for each new event) and
//! `refresh` plus `iter_from` (re-reads the header and iterates the new snapshot).
//! `EVSTREAM_CONCURRENCY_EVENTS` sets the number of events (default 1,000,000) and
//! `EVSTREAM_CONCURRENCY_READERS` the number of readers (default 3).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use evstream::{StreamReader, StreamWriter};
use reliability_support::{child_test, env_count};

/// Event `i`: timestamp `i / 3` and a 4-to-44-byte payload derived from `i`.
fn event(i: u64) -> (i64, Vec<u8>) {
    let len = 4 + (i % 41) as usize;
    let seed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let payload = (0..len)
        .map(|k| (seed >> ((k % 8) * 8)) as u8 ^ k as u8)
        .collect();
    ((i / 3) as i64, payload)
}

fn check(i: u64, timestamp: i64, payload: &[u8]) {
    let (ts, expected) = event(i);
    assert_eq!(timestamp, ts, "event {i}: timestamp");
    assert!(payload == expected.as_slice(), "event {i}: payload");
}

fn path() -> Option<PathBuf> {
    std::env::var_os("EVSTREAM_CONCURRENCY_PATH").map(PathBuf::from)
}

#[test]
#[ignore = "child process of `one_writer_many_readers`"]
fn writer_child() {
    let Some(path) = path() else { return };
    let events = env_count("EVSTREAM_CONCURRENCY_EVENTS", 0);
    let mut writer = StreamWriter::open(&path).unwrap();
    for i in 0..events {
        let (timestamp, payload) = event(i);
        writer.append(timestamp, &payload).unwrap();
        if i % 100_000 == 99_999 {
            writer.flush().unwrap();
        }
    }
    writer.flush().unwrap();
    println!("WROTE {}", writer.event_count());
}

#[test]
#[ignore = "child process of `one_writer_many_readers`"]
fn reader_child() {
    let Some(path) = path() else { return };
    let events = env_count("EVSTREAM_CONCURRENCY_EVENTS", 0);
    let use_follow = env_count("EVSTREAM_CONCURRENCY_FOLLOW", 1) == 1;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut reader = StreamReader::open(&path).unwrap();
    let mut seen = 0u64;
    let mut polls = 0u64;
    if use_follow {
        let mut follow = reader.follow(24).unwrap();
        while seen < events {
            match follow.next_timeout(Duration::from_millis(100)).unwrap() {
                Some(e) => {
                    check(seen, e.timestamp(), e.payload());
                    seen += 1;
                }
                None => assert!(Instant::now() < deadline, "stalled at event {seen}"),
            }
        }
        assert_eq!(follow.try_next().unwrap(), None, "an event past the last");
    } else {
        let mut offset = 24;
        while seen < events {
            reader.refresh().unwrap();
            polls += 1;
            let mut iter = reader.iter_from(offset).unwrap();
            for e in iter.by_ref() {
                let e = e.unwrap();
                check(seen, e.timestamp(), e.payload());
                seen += 1;
            }
            offset = iter.offset();
            if offset == reader.write_offset() {
                std::thread::yield_now();
            }
            assert!(Instant::now() < deadline, "stalled at event {seen}");
        }
        assert_eq!(reader.verify().unwrap().events, events);
    }
    println!("READ {seen} {polls}");
}

fn spawn(name: &str, path: &std::path::Path, events: u64, follow: bool) -> Child {
    child_test(name)
        .env("EVSTREAM_CONCURRENCY_PATH", path)
        .env("EVSTREAM_CONCURRENCY_EVENTS", events.to_string())
        .env(
            "EVSTREAM_CONCURRENCY_FOLLOW",
            if follow { "1" } else { "0" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn value_after(stdout: &str, key: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

#[test]
fn one_writer_many_readers() {
    let events = env_count("EVSTREAM_CONCURRENCY_EVENTS", 1_000_000);
    let readers = env_count("EVSTREAM_CONCURRENCY_READERS", 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.evs");
    let bytes: u64 = (0..events).map(|i| 16 + event(i).1.len() as u64).sum();
    drop(
        StreamWriter::create(&path, evstream::format::capacity_for_events(bytes).unwrap()).unwrap(),
    );
    let started = Instant::now();
    // Readers first, so they tail from the very first event.
    let children: Vec<Child> = (0..readers)
        .map(|r| spawn("reader_child", &path, events, r % 2 == 0))
        .collect();
    let writer = spawn("writer_child", &path, events, false);
    let wrote = value_after(&finish(writer, "writer"), "WROTE ");
    assert_eq!(wrote, events);
    let mut snapshots = Vec::new();
    for (r, child) in children.into_iter().enumerate() {
        let out = finish(child, &format!("reader {r}"));
        assert_eq!(value_after(&out, "READ "), events, "reader {r}");
        let polls = out
            .find("READ ")
            .and_then(|i| out[i..].split_whitespace().nth(2)?.parse::<u64>().ok());
        snapshots.extend(polls.filter(|&p| p > 0));
    }
    eprintln!(
        "concurrency: {events} events, 1 writer and {readers} reader processes, every \
         reader saw every event once in order, in {:.1?}; the refreshing readers took \
         {snapshots:?} snapshots while the writer ran",
        started.elapsed()
    );
    // The stream is intact, and flushed to its end.
    let reader = StreamReader::open(&path).unwrap();
    let verification = reader.verify().unwrap();
    assert!(verification.is_ok());
    assert_eq!(verification.events, events);
    assert_eq!(reader.write_offset(), 24 + bytes);
    assert_eq!(reader.durable_offset(), 24 + bytes);
}
