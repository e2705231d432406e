//! The stream trailer as the `evstream` binary meets it: an event stamped `i64::MIN`
//! (which an earlier version stored and then refused), and trailer records that pass
//! their checksum but contradict the events, which `verify` reports.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use evstream::format::{TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, Trailer, decode_trailer};

mod support;

use support::*;

const EARLIEST: &str = "{\"timestamp\":\"-9223372036854775808\",\"payload\":\"x\"}\n";

/// A stream file written by an earlier version: one event stamped `i64::MIN`, flushed
/// (see `tests/min_timestamp.rs` of the library).
const OLD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/min_timestamp_v2.evs"
);

/// `verify`, `cat`, `append` and `salvage` of a stream or log whose first event is
/// stamped `i64::MIN` (`x`): all succeed, and the salvaged copy is as usable.
fn assert_usable(path: &Path) {
    run(&["verify", s(path)]).ok();
    assert_eq!(
        run(&["cat", s(path)]).ok().lines(),
        ["1677-09-21T00:12:43.145224192Z x"]
    );
    run_with(
        &["append", s(path), "--format", "jsonl", "--sync"],
        Some(b"{\"timestamp\":\"1\",\"payload\":\"y\"}\n"),
    )
    .ok();
    run(&["verify", s(path)]).ok();
    let both = [
        "1677-09-21T00:12:43.145224192Z x",
        "1970-01-01T00:00:00.000000001Z y",
    ];
    assert_eq!(run(&["cat", s(path)]).ok().lines(), both);
    let copy = path.with_extension("copy");
    run(&["salvage", s(path), s(&copy)]).ok();
    run(&["verify", s(&copy)]).ok();
    assert_eq!(run(&["cat", s(&copy)]).ok().lines(), both);
    run_with(
        &["append", s(&copy), "--format", "jsonl"],
        Some(b"{\"timestamp\":\"2\",\"payload\":\"z\"}\n"),
    )
    .ok();
    run(&["verify", s(&copy)]).ok();
}

#[test]
fn an_event_stamped_i64_min_leaves_a_stream_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.evs");
    run(&["create", s(&path), "--capacity", "64KiB"]).ok();
    run_with(
        &["append", s(&path), "--format", "jsonl", "--sync"],
        Some(EARLIEST.as_bytes()),
    )
    .ok();
    assert_usable(&path);
}

#[test]
fn an_event_stamped_i64_min_leaves_a_created_stream_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.evs");
    run_with(
        &[
            "append",
            s(&path),
            "--format",
            "jsonl",
            "--sync",
            "--create",
        ],
        Some(EARLIEST.as_bytes()),
    )
    .ok();
    assert_usable(&path);
}

#[test]
fn an_event_stamped_i64_min_leaves_a_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "64KiB"]).ok();
    run_with(
        &["append", s(&log), "--format", "jsonl", "--sync"],
        Some(EARLIEST.as_bytes()),
    )
    .ok();
    assert_usable(&log);
}

#[test]
fn a_stream_an_earlier_version_wrote_with_an_i64_min_event_is_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.evs");
    std::fs::copy(OLD_FILE, &path).unwrap();
    assert_usable(&path);
}

// ------------------------------------------------------------ trailer records that lie

/// A stream of 8 events (timestamps 10, 20, ... 80, payloads of 4 bytes: 20 bytes
/// each), all flushed, so the watermark is at 24 + 160 = 184.
fn eight(dir: &Path) -> PathBuf {
    let path = dir.join("eight.evs");
    let mut writer = Writer::create(&path, 4096);
    for i in 1..=8i64 {
        writer
            .append(i * 10, format!("ev{i:02}").as_bytes())
            .unwrap();
    }
    writer.flush().unwrap();
    path
}

/// Replaces the current trailer record by `change` of it, with a valid checksum, in
/// the next slot (as a writer would store it).
fn lie(path: &Path, change: impl FnOnce(Trailer) -> Trailer) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let at = evstream::format::trailer_offset(len).unwrap();
    let mut slots = [[0u8; TRAILER_RECORD_LEN]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        file.read_exact_at(slot, at + i as u64 * TRAILER_SLOT_LEN)
            .unwrap();
    }
    let current = decode_trailer([&slots[0], &slots[1]], at).unwrap();
    let next = Trailer {
        sequence: current.sequence + 1,
        ..change(current)
    };
    let slot = at + Trailer::slot(next.sequence) * TRAILER_SLOT_LEN;
    file.write_all_at(&next.to_bytes(), slot).unwrap();
}

/// `verify` exits 1 with one line naming the file, `words`, and that the file is
/// corrupt; the file is unchanged.
fn verify_refuses(path: &Path, words: &[&str]) {
    let before = std::fs::read(path).unwrap();
    let run = run(&["verify", s(path)]);
    let mut all = vec![s(path), "trailer"];
    all.extend_from_slice(words);
    let run = run.fails(1, &all);
    assert!(!run.stderr.contains("header counts"), "{run:?}");
    assert_eq!(std::fs::read(path).unwrap(), before);
}

#[test]
fn verify_refuses_a_durable_count_the_events_do_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let path = eight(dir.path());
    run(&["verify", s(&path)]).ok();
    lie(&path, |t| Trailer {
        durable_count: 7,
        ..t
    });
    verify_refuses(&path, &["byte offset 184", "counts 7 durable events", "8"]);
}

#[test]
fn verify_refuses_a_last_durable_timestamp_that_is_not_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = eight(dir.path());
    lie(&path, |t| Trailer {
        durable_last_timestamp: Some(70),
        ..t
    });
    let run = run(&["verify", s(&path)]);
    verify_refuses(&path, &["byte offset 184", "70", "80"]);
    // The cause named is the timestamp, not a count that matches.
    assert!(!run.stderr.contains("counts 8"), "{run:?}");
}

/// `append` checks the durable events before it writes, and names the same cause.
#[test]
fn append_refuses_a_last_durable_timestamp_that_is_not_the_last_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = eight(dir.path());
    lie(&path, |t| Trailer {
        durable_last_timestamp: Some(70),
        ..t
    });
    let before = std::fs::read(&path).unwrap();
    let run = run(&["append", s(&path), "more"]).fails(1, &[s(&path), "70", "80"]);
    assert!(!run.stderr.contains("counts 8"), "{run:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn verify_refuses_a_watermark_inside_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = eight(dir.path());
    // 24 + 7 events of 20 bytes = 164; the watermark 10 bytes into the eighth event.
    lie(&path, |t| Trailer {
        durable_offset: 174,
        durable_count: 7,
        durable_last_timestamp: Some(70),
        ..t
    });
    verify_refuses(&path, &["byte offset 164", "watermark 174", "184"]);
}

#[test]
fn verify_refuses_a_log_segment_whose_trailer_lies() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    run(&["create", s(&log), "--log", "--segment-size", "64KiB"]).ok();
    run(&["append", s(&log), "a", "b", "c", "--sync"]).ok();
    let segment = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "evs"))
        .unwrap();
    lie(&segment, |t| Trailer {
        durable_count: 2,
        ..t
    });
    let run = run(&["verify", s(&log)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("counts 2 durable events"), "{run:?}");
}

// ------------------------------------------------------------ damaged trailers in words

/// Moves the current trailer record to the other slot, where no writer puts a record of
/// its sequence number, and clears its own: neither slot holds a valid record.
fn move_to_wrong_slot(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let at = evstream::format::trailer_offset(len).unwrap();
    let mut slots = [[0u8; TRAILER_RECORD_LEN]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        file.read_exact_at(slot, at + i as u64 * TRAILER_SLOT_LEN)
            .unwrap();
    }
    let current = decode_trailer([&slots[0], &slots[1]], at).unwrap();
    let own = Trailer::slot(current.sequence);
    file.write_all_at(&[0; TRAILER_RECORD_LEN], at + own * TRAILER_SLOT_LEN)
        .unwrap();
    file.write_all_at(&current.to_bytes(), at + (1 - own) * TRAILER_SLOT_LEN)
        .unwrap();
}

/// A damaged trailer is described in a sentence, not by the name of the library's
/// variant (`WrongSlot { sequence: 4, slot: 1 }`, `Inconsistent`).
#[test]
fn a_damaged_trailer_is_described_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let wrong_slot = dir.path().join("wrong-slot.evs");
    let inconsistent = dir.path().join("inconsistent.evs");
    let original = eight(dir.path());
    std::fs::copy(&original, &wrong_slot).unwrap();
    std::fs::copy(&original, &inconsistent).unwrap();
    move_to_wrong_slot(&wrong_slot);
    // A watermark past the end of the event area.
    lie(&inconsistent, |t| Trailer {
        durable_offset: 1 << 20,
        ..t
    });
    for (path, words) in [
        (&wrong_slot, "where no writer puts it"),
        (&inconsistent, "contradicts itself or the file's length"),
    ] {
        for command in ["stat", "verify", "cat"] {
            let run = run(&[command, s(path)]).fails(1, &[s(path), "damaged trailer", words]);
            for debug in ["WrongSlot", "Inconsistent", "{", "}"] {
                assert!(!run.stderr.contains(debug), "{debug:?} in {run:?}");
            }
        }
    }
}
