//! Crash points: a child process aborts at each named fail point of `append`, `flush`,
//! `create` and `open`, with every payload size class, and the parent checks the stream
//! it left behind exactly.
//!
//! Needs the `failpoints` feature:
//! `cargo test --features failpoints --test crash_points`.
//!
//! The child is this test binary run again with only `crash_points_child` selected and
//! `EVSTREAM_FAILPOINT=NAME:N` set, so the library aborts the process the N-th time it
//! passes `NAME`. The child opens (or creates) the stream, appends events of one size
//! class, alternating `append` and `append_with`, flushes every third event, and reports
//! each acknowledged append as `ACK index offset`. The parent asserts that the child died
//! of `SIGABRT` (the point was reached), then checks:
//!
//! - exactly the events the point implies are there (for example an abort after the
//!   payload leaves the event unpublished; one after the offset store leaves it
//!   published with the count one short), a byte-for-byte prefix of what was sent that
//!   holds every acknowledged event;
//! - a new writer gets the lock at once, recovers what the crash left (and reports it in
//!   [`Recovery`]), leaves only zeros past the write offset, and appends further events
//!   that read back correctly; a second open finds nothing to repair.
#![cfg(feature = "failpoints")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};

use evstream::failpoint::POINTS;
use evstream::{Recovery, StreamWriter};
use reliability_support::{
    SIZE_CLASSES, Workload, assert_prefix_of, child_test, env_count, read_stream, zero_from,
};

const CAPACITY: u64 = 1 << 20;
/// Appends per child run.
const EVENTS: u64 = 8;
/// The child flushes after every this many appends.
const FLUSH_EVERY: u64 = 3;
const SEED: u64 = 7;

/// Serializes the tests of this file. A test thread that spawns a child while another
/// thread's writer is open lends the writer's `flock` to the child between `fork` and
/// `exec` (locks belong to the open file description, which the child shares until
/// `exec` closes it). The other thread's next `open` would then see `Locked` for that
/// moment, so each test runs alone.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The child: open or create the stream, append `EVENTS` events of one size, flushing
/// every `FLUSH_EVERY`; expected to abort at the fail point set in its environment.
#[test]
#[ignore = "child process of the crash point tests"]
fn crash_points_child() {
    let Ok(path) = std::env::var("EVSTREAM_CP_PATH") else {
        return;
    };
    let size = env_count("EVSTREAM_CP_SIZE", 0) as usize;
    let workload = Workload::fixed(SEED, size);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut writer = if Path::new(&path).exists() {
        StreamWriter::open(&path).unwrap()
    } else {
        StreamWriter::create(&path, CAPACITY).unwrap()
    };
    for _ in 0..EVENTS {
        let index = writer.event_count();
        let payload = workload.payload(index);
        let timestamp = workload.timestamp(index);
        let offset = if index % 2 == 0 {
            writer.append(timestamp, &payload).unwrap()
        } else {
            writer
                .append_with(timestamp, size, |buf| buf.copy_from_slice(&payload))
                .unwrap()
        };
        out.write_all(format!("ACK {index} {offset}\n").as_bytes())
            .unwrap();
        out.flush().unwrap();
        if (index + 1) % FLUSH_EVERY == 0 {
            writer.flush().unwrap();
        }
    }
}

/// Runs the child against `path` with `EVSTREAM_FAILPOINT=spec`, asserts it aborted,
/// and returns its acknowledged `(index, offset)` pairs.
fn crash_child(path: &Path, size: usize, spec: &str) -> Vec<(u64, u64)> {
    let output = child_test("crash_points_child")
        .env("EVSTREAM_CP_PATH", path)
        .env("EVSTREAM_CP_SIZE", size.to_string())
        .env("EVSTREAM_FAILPOINT", spec)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "{spec} (size {size}) was not reached: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("ACK ")? + 4..];
            let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
            Some((parts.next()?, parts.next()?))
        })
        .collect()
}

/// What a crash must have left, checked before any writer opens the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    /// Events a reader finds.
    events: u64,
    /// The header's count is one short of them.
    count_short: bool,
}

/// Checks the crashed stream at `path`, recovers it with a new writer, appends two more
/// events, and checks again. Returns what recovery repaired.
fn check_and_recover(
    path: &Path,
    workload: &Workload,
    acks: &[(u64, u64)],
    expect: Expect,
    context: &str,
) -> Recovery {
    let contents = read_stream(path).unwrap();
    assert!(contents.error.is_none(), "{context}: {:?}", contents.error);
    assert_prefix_of(&contents.events, workload, context);
    assert_eq!(
        contents.events.len() as u64,
        expect.events,
        "{context}: events"
    );
    let expected_count = expect.events - u64::from(expect.count_short);
    assert_eq!(
        contents.header_count, expected_count,
        "{context}: header count"
    );
    for &(index, offset) in acks {
        let event = contents.events.get(index as usize);
        assert_eq!(
            event.map(|e| e.offset),
            Some(offset),
            "{context}: ack {index}"
        );
    }

    let mut writer =
        StreamWriter::open(path).unwrap_or_else(|e| panic!("{context}: lock or open: {e}"));
    let recovery = writer.recovery().clone();
    assert_eq!(
        writer.event_count(),
        expect.events,
        "{context}: recovered count"
    );
    assert_eq!(recovery.count_repaired, expect.count_short, "{context}");
    let write_offset = writer.write_offset();
    assert_eq!(
        write_offset,
        24 + workload.bytes_of(expect.events),
        "{context}"
    );
    // Recovery zeroed everything a crashed append left past the write offset.
    assert!(
        zero_from(path, write_offset),
        "{context}: stale bytes past the write offset"
    );
    for _ in 0..2 {
        let index = writer.event_count();
        writer
            .append(workload.timestamp(index), &workload.payload(index))
            .unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let after = read_stream(path).unwrap();
    assert!(after.error.is_none(), "{context}: {:?}", after.error);
    assert_prefix_of(&after.events, workload, context);
    assert_eq!(after.events.len() as u64, expect.events + 2, "{context}");
    assert_eq!(after.header_count, expect.events + 2, "{context}");
    let again = StreamWriter::open(path).unwrap_or_else(|e| panic!("{context}: reopen: {e:?}"));
    assert!(
        again.recovery().is_clean(),
        "{context}: {:?}",
        again.recovery()
    );
    drop(again);
    assert!(zero_from(path, after.write_offset), "{context}");
    recovery
}

fn points_with(prefix: &str) -> Vec<&'static str> {
    POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

#[test]
fn every_point_is_listed_and_covered() {
    // The log's points are reached by `tests/log_crash.rs`.
    let covered: usize = [
        "append:",
        "flush:",
        "create:",
        "open:",
        "log_open:",
        "roll:",
        "seal:",
        "retain:",
        "recycle:",
        "cursor:",
        // Reached by `tests/shared_handover.rs`.
        "handover:",
    ]
    .iter()
    .map(|p| points_with(p).len())
    .sum();
    assert_eq!(covered, POINTS.len(), "a point no test below reaches");
    assert_eq!(points_with("append:").len(), 4);
    assert_eq!(points_with("flush:").len(), 3);
    assert_eq!(points_with("create:").len(), 3);
    assert_eq!(points_with("open:").len(), 4);
}

#[test]
fn abort_inside_append() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for point in points_with("append:") {
        for &size in SIZE_CLASSES {
            for nth in [1, 2, 5] {
                let path = dir
                    .path()
                    .join(format!("a-{}-{size}-{nth}.evs", &point[7..]));
                let workload = Workload::fixed(SEED, size);
                let acks = crash_child(&path, size, &format!("{point}:{nth}"));
                let context = format!("{point}:{nth}, size {size}");
                // Appends before the nth returned; the nth did not.
                assert_eq!(acks.len() as u64, nth - 1, "{context}: acks");
                let expect = match point {
                    "append:after_payload" | "append:after_header" => Expect {
                        events: nth - 1,
                        count_short: false,
                    },
                    "append:after_offset" => Expect {
                        events: nth,
                        count_short: true,
                    },
                    "append:after_count" => Expect {
                        events: nth,
                        count_short: false,
                    },
                    other => panic!("unexpected point {other}"),
                };
                let recovery = check_and_recover(&path, &workload, &acks, expect, &context);
                // The unpublished bytes of the torn append were found and cleared.
                let left_bytes = match point {
                    "append:after_payload" => size > 0,
                    "append:after_header" => true,
                    _ => false,
                };
                assert_eq!(recovery.stale_bytes_cleared > 0, left_bytes, "{context}");
                assert_eq!(recovery.torn_at, None, "{context}");
                runs += 1;
            }
        }
    }
    eprintln!("crash points: {runs} aborts inside append");
}

#[test]
fn abort_inside_flush() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    for point in points_with("flush:") {
        for &size in SIZE_CLASSES {
            for nth in [1, 2] {
                let path = dir
                    .path()
                    .join(format!("f-{}-{size}-{nth}.evs", &point[6..]));
                let workload = Workload::fixed(SEED, size);
                let acks = crash_child(&path, size, &format!("{point}:{nth}"));
                let context = format!("{point}:{nth}, size {size}");
                let events = nth * FLUSH_EVERY;
                assert_eq!(acks.len() as u64, events, "{context}: acks");
                let expect = Expect {
                    events,
                    count_short: false,
                };
                let recovery = check_and_recover(&path, &workload, &acks, expect, &context);
                assert!(recovery.is_clean(), "{context}: {recovery:?}");
                runs += 1;
            }
        }
    }
    eprintln!("crash points: {runs} aborts inside flush");
}

#[test]
fn abort_inside_create() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    let mut temp_files = 0;
    for point in points_with("create:") {
        for &size in SIZE_CLASSES {
            let sub = dir.path().join(format!("c-{}-{size}", &point[7..]));
            std::fs::create_dir(&sub).unwrap();
            let path = sub.join("s.evs");
            let workload = Workload::fixed(SEED, size);
            let acks = crash_child(&path, size, point);
            let context = format!("{point}, size {size}");
            assert!(acks.is_empty(), "{context}");
            // Before the rename nothing is at `path`; after it, a valid empty stream.
            assert_eq!(path.exists(), point == "create:after_rename", "{context}");
            let leftovers: Vec<_> = std::fs::read_dir(&sub)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "s.evs")
                .collect();
            temp_files += leftovers.len();
            if path.exists() {
                let recovery = check_and_recover(
                    &path,
                    &workload,
                    &acks,
                    Expect {
                        events: 0,
                        count_short: false,
                    },
                    &context,
                );
                assert!(recovery.is_clean(), "{context}");
            } else {
                // The path is free for a new stream; the crashed attempt did not claim it.
                let mut writer = StreamWriter::create(&path, CAPACITY).unwrap();
                writer
                    .append(workload.timestamp(0), &workload.payload(0))
                    .unwrap();
                drop(writer);
                let contents = read_stream(&path).unwrap();
                assert_prefix_of(&contents.events, &workload, &context);
                assert_eq!(contents.events.len(), 1, "{context}");
                // That create removed the temporary file the aborted one left.
                let names: Vec<_> = std::fs::read_dir(&sub)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, vec![std::ffi::OsString::from("s.evs")], "{context}");
            }
            runs += 1;
        }
    }
    eprintln!("crash points: {runs} aborts inside create, leaving {temp_files} temporary files");
}

/// States a stream can be in when a writer opens it after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prepared {
    /// Five events, nothing to repair.
    Clean,
    /// Five events, the header counting four (a crash between the two stores).
    CountShort,
    /// Four events and the bytes of an unpublished fifth past the write offset.
    Stale,
    /// Five events published, the last one (above the durable watermark) with its final
    /// sector lost to a power cut.
    Torn,
}

/// Builds the `Prepared` state at `path` with events of `size` bytes.
fn prepare(path: &Path, workload: &Workload, state: Prepared) {
    let mut writer = StreamWriter::create(path, CAPACITY).unwrap();
    // Four events flushed, the fifth not: only it lies above the durable watermark.
    for index in 0..5 {
        if index == 4 {
            writer.flush().unwrap();
        }
        writer
            .append(workload.timestamp(index), &workload.payload(index))
            .unwrap();
    }
    let last = 24 + workload.bytes_of(4);
    let end = writer.write_offset();
    drop(writer);
    let file = OpenOptions::new().write(true).open(path).unwrap();
    match state {
        Prepared::Clean => {}
        Prepared::CountShort => file.write_all_at(&4u64.to_le_bytes(), 8).unwrap(),
        Prepared::Stale => {
            file.write_all_at(&last.to_le_bytes(), 0).unwrap();
            file.write_all_at(&4u64.to_le_bytes(), 8).unwrap();
        }
        Prepared::Torn => {
            // The part of the last event inside its final 512-byte sector reverts to the
            // zeros it had before the event was written.
            let sector_start = ((end - 1) / 512 * 512).max(last);
            let zeros = vec![0u8; (end - sector_start) as usize];
            file.write_all_at(&zeros, sector_start).unwrap();
        }
    }
    file.sync_all().unwrap();
}

#[test]
fn abort_inside_open() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = 0;
    let states = [
        Prepared::Clean,
        Prepared::CountShort,
        Prepared::Stale,
        Prepared::Torn,
    ];
    for point in points_with("open:") {
        for &size in SIZE_CLASSES {
            for state in states {
                let needs_truncate = matches!(state, Prepared::CountShort | Prepared::Torn);
                if point == "open:after_truncate" && !needs_truncate {
                    continue; // Recovery passes this point only when it moves the offset.
                }
                if point == "open:after_generation" && state != Prepared::Torn {
                    continue; // Only dropping a torn tail bumps the generation.
                }
                let path = dir
                    .path()
                    .join(format!("o-{}-{size}-{state:?}.evs", &point[5..]));
                let workload = Workload::fixed(SEED, size);
                prepare(&path, &workload, state);
                let before = std::fs::read(&path).unwrap();
                let acks = crash_child(&path, size, point);
                let context = format!("{point}, size {size}, {state:?}");
                assert!(acks.is_empty(), "{context}");
                if point == "open:after_lock" {
                    let after = std::fs::read(&path).unwrap();
                    assert!(before == after, "{context}: file changed before validation");
                }
                let events = match state {
                    Prepared::Clean | Prepared::CountShort => 5,
                    Prepared::Stale | Prepared::Torn => 4,
                };
                // What the crashed open may already have repaired: after the truncate
                // point the count is right and the torn event is unpublished.
                let repaired = !matches!(point, "open:after_lock" | "open:after_generation");
                let (count_short, torn_published) = match state {
                    Prepared::CountShort => (!repaired, false),
                    Prepared::Torn => (false, !repaired),
                    _ => (false, false),
                };
                if torn_published {
                    // The reader sees the torn event as damage; the writer must recover it.
                    let contents = read_stream(&path).unwrap();
                    assert!(
                        contents.error.is_some(),
                        "{context}: torn event read as valid"
                    );
                    assert_prefix_of(&contents.events, &workload, &context);
                    assert_eq!(contents.events.len(), 4, "{context}");
                    let writer = StreamWriter::open(&path).unwrap();
                    assert_eq!(writer.event_count(), 4, "{context}");
                    assert_eq!(writer.recovery().dropped_events, 1, "{context}");
                    assert!(writer.recovery().torn_at.is_some(), "{context}");
                    drop(writer);
                }
                let recovery = check_and_recover(
                    &path,
                    &workload,
                    &acks,
                    Expect {
                        events,
                        count_short,
                    },
                    &context,
                );
                assert_eq!(recovery.torn_at, None, "{context}");
                runs += 1;
            }
        }
    }
    eprintln!("crash points: {runs} aborts inside open");
}

#[test]
fn lock_is_released_by_an_aborted_writer() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock.evs");
    crash_child(&path, 13, "append:after_header:3");
    let probe = File::open(&path).unwrap();
    assert!(
        probe.try_lock().is_ok(),
        "an aborted writer still holds the lock"
    );
}
