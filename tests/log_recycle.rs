//! Recycled segments: a log with retention reuses the file of a segment it retires as a
//! later segment (`docs/FORMAT.md`, "Recycling retired segments"). What a user is
//! promised, tried with real directories and small segments: every event appended is
//! read back, at its position, and no event of a file's previous life ever is; a segment
//! a reader has open is deleted, never recycled; logs whose segments are format version
//! 2 keep opening, appending and recycling.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use evstream::format::{
    TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, Trailer, decode_trailer, event_checksum, trailer_offset,
};
use evstream::{LogOptions, LogReader, LogWriter, Position, SharedLogWriter, StreamReader};

const SEGMENT: u64 = 8192;

fn options(retain: u64) -> LogOptions {
    LogOptions::default()
        .segment_size(SEGMENT)
        .retain_segments(Some(retain))
}

/// Payload of event `i`: its index, then bytes that depend on it; 20 to 300 bytes.
fn payload(i: u64) -> Vec<u8> {
    let len = 20 + (i * 37 % 281) as usize;
    let mut p: Vec<u8> = (0..len).map(|k| (i as usize * 31 + k) as u8).collect();
    p[..8].copy_from_slice(&i.to_le_bytes());
    p
}

/// The segment files of the log: sequence number, path, inode.
fn segments(dir: &Path) -> Vec<(u64, PathBuf, u64)> {
    let mut found: Vec<(u64, PathBuf, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let seq: u64 = name.strip_suffix(".evs")?.split_once('-')?.0.parse().ok()?;
            let ino = e.metadata().ok()?.ino();
            Some((seq, e.path(), ino))
        })
        .collect();
    found.sort();
    found
}

/// Every event of the log, as (position, timestamp, payload), checked in order.
fn read_all(dir: &Path) -> Vec<(Position, i64, Vec<u8>)> {
    LogReader::open(dir)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.position(), e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

/// Asserts that the log holds exactly events `first..end` of [`payload`], each at the
/// position its append returned.
fn assert_holds(dir: &Path, positions: &[Position], first: u64, end: u64) {
    let events = read_all(dir);
    assert_eq!(events.len() as u64, end - first, "events kept");
    for (k, (position, timestamp, p)) in events.iter().enumerate() {
        let i = first + k as u64;
        assert_eq!(*p, payload(i), "event {i}: a payload not appended there");
        assert_eq!(*timestamp, i as i64, "event {i}");
        assert_eq!(*position, positions[i as usize], "event {i}");
    }
}

/// Asserts that the log holds the newest of events `0..end` of [`payload`] (each event's
/// timestamp is its number), from the first it kept on, each at its position, and that
/// every segment reads as exactly its own events.
fn assert_kept_as_appended(dir: &Path, positions: &[Position], end: u64) {
    let first = read_all(dir)[0].1 as u64;
    assert_holds(dir, positions, first, end);
    for (_, file, _) in segments(dir) {
        check_segment(&file, base_of(&file));
    }
}

/// Whether the newest segment at `file` is a recycled one: bytes of a previous life lie
/// past its events (a created segment is all zeros there), none of them read as events.
fn holds_a_previous_life(file: &Path) -> bool {
    let bytes = std::fs::read(file).unwrap();
    let end = u64::from_le_bytes(bytes[0..8].try_into().unwrap()) as usize;
    let trailer = trailer_offset(bytes.len() as u64).unwrap() as usize;
    bytes[end.min(trailer)..trailer].iter().any(|&b| b != 0)
}

/// Checks segment `file` (named with its first event's index `base`) against
/// [`payload`]: event `k` in it is event `base + k`, and nothing else is read.
fn check_segment(file: &Path, base: u64) -> u64 {
    let reader = StreamReader::open(file).unwrap();
    let mut n = 0;
    for (k, event) in reader.iter().enumerate() {
        let event = event.unwrap();
        assert_eq!(
            event.payload(),
            payload(base + k as u64),
            "{file:?} event {k}"
        );
        n += 1;
    }
    n
}

fn base_of(file: &Path) -> u64 {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    name.strip_suffix(".evs")
        .unwrap()
        .split_once('-')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[test]
fn retired_segments_are_recycled_and_their_old_events_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(3)).unwrap();
    let mut positions = Vec::new();
    // Inode -> the seed of its file's last life seen.
    let mut seeds: HashMap<u64, u32> = HashMap::new();
    let mut seen_seq = 0;
    let mut recycled = 0;
    for i in 0..6000u64 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
        if log.segment() == seen_seq {
            continue;
        }
        // A roll: the new newest segment has one event. The background threads catch
        // up (a writer this fast outruns them, and then creates segments while no
        // retired one is ready yet).
        seen_seq = log.segment();
        drop(log.take_retired());
        let (seq, file, ino) = segments(&path).pop().unwrap();
        assert_eq!(seq, seen_seq);
        let seed = StreamReader::open(&file).unwrap().crc_seed();
        assert_ne!(seed, 0, "segment {seq} is not version 3");
        if holds_a_previous_life(&file) {
            recycled += 1;
            assert_ne!(seeds.get(&ino), Some(&seed), "segment {seq} kept its seed");
            assert_eq!(check_segment(&file, base_of(&file)), 1);
        }
        seeds.insert(ino, seed);
    }
    eprintln!("{recycled} of {} segments were recycled", log.segment());
    // Every roll once retention deletes, but for the first few.
    assert!(
        recycled + 8 > log.segment(),
        "{recycled} of {} segments were recycled",
        log.segment()
    );
    // Every kept event, in order, and only those.
    log.flush().unwrap();
    drop(log);
    assert_kept_as_appended(&path, &positions, 6000);
    // The writer's open (after a close) and appends on top.
    let mut log = LogWriter::open(&path).unwrap();
    for i in 6000..7000u64 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
    }
    drop(log);
    let first = read_all(&path)[0].1 as u64;
    assert_holds(&path, &positions, first, 7000);
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
}

#[test]
fn a_segment_a_reader_has_open_is_deleted_not_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(2)).unwrap();
    let mut i = 0u64;
    while log.segment() < 6 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
    }
    drop(log.take_retired());
    drop(log);
    // The oldest segment, held open by a reader.
    let (seq, file, ino) = segments(&path).remove(0);
    let reader = StreamReader::open(&file).unwrap();
    let held: Vec<Vec<u8>> = reader
        .iter()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert!(!held.is_empty());
    let mut log = LogWriter::open(&path).unwrap();
    while log.segment() < seq + 30 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
        // The held file never shows up under another segment's name (nor as the next
        // segment prepared).
        for (other, _, n) in segments(&path) {
            assert!(
                n != ino || other == seq,
                "segment {seq}'s file became {other}"
            );
        }
    }
    let retired = log.take_retired();
    assert!(retired.iter().any(|r| r.segment == seq), "not retired");
    drop(log);
    // The reader still reads the events it had, intact.
    let again: Vec<Vec<u8>> = reader
        .iter()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(again, held);
    assert!(!file.exists(), "the retired segment is still named");
}

/// Rewrites every segment of the closed log at `dir` as format version 2: each event's
/// checksum unseeded, each trailer record version 2 (seed 0), as a log written before
/// version 3 has them.
fn downgrade_to_version_2(dir: &Path) {
    for (_, file, _) in segments(dir) {
        let mut bytes = std::fs::read(&file).unwrap();
        let at = trailer_offset(bytes.len() as u64).unwrap() as usize;
        let slot = |b: &[u8], i: usize| -> [u8; TRAILER_RECORD_LEN] {
            let s = at + i * TRAILER_SLOT_LEN as usize;
            b[s..s + TRAILER_RECORD_LEN].try_into().unwrap()
        };
        let current = decode_trailer([&slot(&bytes, 0), &slot(&bytes, 1)], at as u64).unwrap();
        let end = u64::from_le_bytes(bytes[0..8].try_into().unwrap()) as usize;
        let mut pos = 24;
        while pos < end {
            let ts = i64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap());
            let size = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let crc = event_checksum(ts, &bytes[pos + 16..pos + 16 + size]);
            bytes[pos + 12..pos + 16].copy_from_slice(&crc.to_le_bytes());
            pos += 16 + size;
        }
        let v2 = Trailer { seed: 0, ..current };
        for i in 0..2 {
            let s = at + i * TRAILER_SLOT_LEN as usize;
            bytes[s..s + TRAILER_RECORD_LEN].fill(0);
        }
        let s = at + Trailer::slot(v2.sequence) as usize * TRAILER_SLOT_LEN as usize;
        bytes[s..s + TRAILER_RECORD_LEN].copy_from_slice(&v2.to_bytes());
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(StreamReader::open(&file).unwrap().crc_seed(), 0);
    }
}

#[test]
fn a_log_of_version_2_segments_opens_appends_and_recycles_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(4)).unwrap();
    let mut positions = Vec::new();
    for i in 0..300u64 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
    }
    log.flush().unwrap();
    drop(log);
    // Prepared segments are not part of the log: removed, as an old writer's would be
    // replaced.
    for e in std::fs::read_dir(&path).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with(".next-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    downgrade_to_version_2(&path);
    let old: HashMap<u64, PathBuf> = segments(&path)
        .into_iter()
        .map(|(_, file, ino)| (ino, file))
        .collect();
    let first = read_all(&path)[0].1 as u64;
    assert_holds(&path, &positions, first, 300);
    // The newest segment (version 2) takes more events, and stays version 2.
    let mut log = LogWriter::open(&path).unwrap();
    let newest = log.segment();
    positions.push(log.append(300, &payload(300)).unwrap());
    let file = segments(&path).pop().unwrap().1;
    assert_eq!(StreamReader::open(&file).unwrap().crc_seed(), 0);
    let mut reborn = 0;
    let mut seen_seq = log.segment();
    for i in 301..3000u64 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
        if log.segment() == seen_seq {
            continue;
        }
        seen_seq = log.segment();
        // Once the background threads dealt with the roll, the new segment has its name.
        drop(log.take_retired());
        let (seq, file, ino) = segments(&path).pop().unwrap();
        assert_eq!(seq, seen_seq);
        if old.contains_key(&ino) && holds_a_previous_life(&file) {
            // A version 2 segment's file, recycled: version 3 now.
            assert_ne!(StreamReader::open(&file).unwrap().crc_seed(), 0);
            reborn += 1;
        }
    }
    log.flush().unwrap();
    assert!(log.segment() > newest + 10);
    drop(log);
    let first = read_all(&path)[0].1 as u64;
    assert_holds(&path, &positions, first, 3000);
    assert!(reborn > 0, "no version 2 segment was recycled");
}

/// Readers that open segments by name while the writer rolls and recycles as fast as it
/// can: every segment a reader opens holds exactly the events its name says (its
/// first-event index `B` and on), never a later life's.
#[test]
fn readers_opening_segments_by_name_never_see_another_life() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(2)).unwrap();
    let stop = AtomicBool::new(false);
    let checked = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut checked = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for entry in std::fs::read_dir(&path).unwrap().flatten() {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            let Some(base) = name
                                .strip_suffix(".evs")
                                .and_then(|s| s.split_once('-'))
                                .filter(|(seq, _)| seq.len() == 8)
                                .and_then(|(_, b)| b.parse::<u64>().ok())
                            else {
                                continue;
                            };
                            // Gone by now, or renamed away: as a retired segment.
                            let Ok(reader) = StreamReader::open(entry.path()) else {
                                continue;
                            };
                            for (k, event) in reader.iter().enumerate() {
                                let event = event.unwrap();
                                let i = base + k as u64;
                                assert_eq!(
                                    event.payload(),
                                    payload(i),
                                    "{name}: event {k} is not event {i}"
                                );
                                checked += 1;
                            }
                        }
                    }
                    checked
                })
            })
            .collect();
        let started = Instant::now();
        let mut i = 0u64;
        while started.elapsed() < Duration::from_secs(2) {
            log.append(i as i64, &payload(i)).unwrap();
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    assert!(checked > 0);
    drop(log);
}

/// A log written by the evstream before format version 3 (`tests/fixtures/log_v2`: 4 KiB
/// segments, the newest 3 kept, 120 events `event number 1` to `event number 120`
/// appended by `evstream append`, and the next segment prepared as a version 2 file):
/// it opens, reads, takes appends, and its version 2 segments are recycled as version 3
/// ones as retention retires them, every event read back in order.
#[test]
fn a_log_written_before_version_3_opens_appends_and_recycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::create_dir(&path).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log_v2");
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), path.join(entry.file_name())).unwrap();
    }
    let expected = |i: u64| format!("event number {i}").into_bytes();
    let payloads =
        |dir: &Path| -> Vec<Vec<u8>> { read_all(dir).into_iter().map(|(_, _, p)| p).collect() };
    assert_eq!(payloads(&path), (1..=120).map(expected).collect::<Vec<_>>());
    let old: HashMap<u64, PathBuf> = segments(&path)
        .into_iter()
        .map(|(_, file, ino)| {
            assert_eq!(StreamReader::open(&file).unwrap().crc_seed(), 0);
            (ino, file)
        })
        .collect();
    let next = path.join(".next-00000002.evs");
    let next_ino = std::fs::metadata(&next).unwrap().ino();
    let mut log = LogWriter::open(&path).unwrap();
    assert!(log.recovery().is_clean());
    let mut reborn = 0;
    let mut seen_seq = log.segment();
    let mut last = 0;
    for i in 121..=600u64 {
        log.append_now(&expected(i)).unwrap();
        last = i;
        if log.segment() == seen_seq {
            continue;
        }
        seen_seq = log.segment();
        drop(log.take_retired());
        let (seq, file, ino) = segments(&path).pop().unwrap();
        let seed = StreamReader::open(&file).unwrap().crc_seed();
        if seq == 2 {
            // The version 2 segment an old writer prepared, adopted as it is.
            assert_eq!(ino, next_ino);
            assert_eq!(seed, 0);
        } else if (old.contains_key(&ino) || ino == next_ino) && holds_a_previous_life(&file) {
            assert_ne!(seed, 0);
            reborn += 1;
        }
    }
    drop(log);
    assert!(reborn > 0, "no version 2 segment was recycled");
    let kept = payloads(&path);
    let first = last + 1 - kept.len() as u64;
    assert_eq!(kept, (first..=last).map(expected).collect::<Vec<_>>());
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
}

/// A retired segment kept for recycling is never left behind as a file: a writer that
/// closes deletes the ones it did not recycle, and a writer's open deletes one that a
/// crash left (as it deletes every `..next-` leftover), changing nothing else.
#[test]
fn spares_are_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(2)).unwrap();
    let mut positions = Vec::new();
    for i in 0..1000u64 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
    }
    drop(log);
    let spares = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..next-spare-"))
            .collect()
    };
    assert_eq!(spares(&path), Vec::<String>::new());
    // One left by a crash between retention's rename and the recycling.
    let (_, file, _) = segments(&path).remove(0);
    std::fs::copy(&file, path.join("..next-spare-00000000.evs")).unwrap();
    let before = read_all(&path);
    drop(LogWriter::open(&path).unwrap());
    assert_eq!(spares(&path), Vec::<String>::new());
    assert_eq!(read_all(&path), before);
}

/// A retired segment whose trailer records count near the largest sequence a record may
/// have is recycled into a valid segment: the new life's records start their sequence
/// afresh instead of continuing past the limit.
#[test]
fn a_segment_whose_sequence_is_near_its_limit_is_recycled_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(2)).unwrap();
    let mut i = 0u64;
    while log.segment() < 3 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
    }
    drop(log);
    // The oldest segment: its current record stored again with the sequence 2^63 - 2.
    let (_, file, ino) = segments(&path).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = trailer_offset(bytes.len() as u64).unwrap() as usize;
    let slot = |b: &[u8], k: usize| -> [u8; TRAILER_RECORD_LEN] {
        let s = at + k * TRAILER_SLOT_LEN as usize;
        b[s..s + TRAILER_RECORD_LEN].try_into().unwrap()
    };
    let current = decode_trailer([&slot(&bytes, 0), &slot(&bytes, 1)], at as u64).unwrap();
    let high = Trailer {
        sequence: (1 << 63) - 2,
        ..current
    };
    bytes[at..at + 2 * TRAILER_SLOT_LEN as usize].fill(0);
    bytes[at..at + TRAILER_RECORD_LEN].copy_from_slice(&high.to_bytes());
    std::fs::write(&file, &bytes).unwrap();
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
    let mut log = LogWriter::open(&path).unwrap();
    let mut recycled = false;
    let mut seen_seq = log.segment();
    while !recycled && log.segment() < 40 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
        if log.segment() != seen_seq {
            seen_seq = log.segment();
            drop(log.take_retired());
            let (_, newest, n) = segments(&path).pop().unwrap();
            recycled = n == ino && holds_a_previous_life(&newest);
        }
    }
    assert!(recycled, "the segment was not recycled");
    for _ in 0..20 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
    }
    drop(log);
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
    assert_eq!(read_all(&path).last().unwrap().2, payload(i - 1));
}

/// A writer that pauses between bursts, flushing before most pauses, while every file of
/// the log is written back (the pages mapped ahead in the newest segment and in the
/// prepared one included, so that they are write-protected when it resumes), its bursts
/// crossing rolls into recycled segments. Every event retention keeps is read back with
/// its bytes, zeros included, at its position, while the writer is open and after a
/// reopen; none of a file's previous life is.
#[test]
fn appends_after_pauses_with_write_back_cross_rolls_into_recycled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(1 << 20)
        .retain_segments(Some(3));
    let mut log = LogWriter::create(&path, options).unwrap();
    // Every third payload all zeros, the others `payload`'s.
    let bytes = |i: u64| {
        if i.is_multiple_of(3) {
            vec![0u8; 1 + (i * 53 % 2000) as usize]
        } else {
            payload(i)
        }
    };
    let mut positions = Vec::new();
    let mut i = 0u64;
    for burst in 0..8 {
        // About 1.5 MiB a burst: one or two rolls.
        while i < (burst + 1) * 3400 {
            positions.push(log.append(i as i64, &bytes(i)).unwrap());
            i += 1;
        }
        if burst % 4 != 3 {
            log.flush().unwrap();
        }
        for entry in std::fs::read_dir(&path).unwrap() {
            // A file the background threads renamed or deleted meanwhile is passed over.
            if let Ok(file) = std::fs::File::open(entry.unwrap().path())
                && file.metadata().unwrap().is_file()
            {
                file.sync_all().unwrap();
            }
        }
        // Long enough for the background threads to take the writer for idle.
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(log.segment() > 8, "{} rolls", log.segment());
    let end = i;
    let check = |what: &str| {
        let events = read_all(&path);
        let first = events[0].1 as u64;
        assert_eq!(events.len() as u64, end - first, "{what}: events kept");
        for (k, (position, timestamp, p)) in events.iter().enumerate() {
            let i = first + k as u64;
            assert_eq!(*timestamp, i as i64, "{what}: event {i}");
            assert!(*p == bytes(i), "{what}: event {i} changed");
            assert_eq!(*position, positions[i as usize], "{what}: event {i}");
        }
    };
    check("the writer open");
    drop(log);
    check("after the writer closed");
    let log = LogWriter::open(&path).unwrap();
    drop(log);
    check("after a reopen");
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
}

/// Names of the files in `dir` whose names start with `prefix`, with their inodes.
fn hidden_files(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            name.starts_with(prefix)
                .then(|| (name, e.metadata().map(|m| m.ino()).unwrap_or(0)))
        })
        .collect();
    found.sort();
    found
}

/// A process that hands the turn to one waiting for it leaves its spare segments to that
/// process instead of deleting them: the next writer's new segments are those files,
/// recycled, so that it neither creates (zero-fills) new ones nor waits for their
/// deletion. Every event appended on either side of the handover is read back, at its
/// position, no event of a file's earlier life ever is, and once the last writer closes
/// with no one waiting, no spare is left behind.
#[test]
fn a_handover_leaves_its_spares_to_the_next_writer_which_recycles_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let first = SharedLogWriter::create(&path, options(2)).unwrap();
    let mut positions = Vec::new();
    let mut i = 0_u64;
    // Rolls until a retired segment waits to be recycled, the writer idle.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spares = loop {
        for _ in 0..100 {
            positions.push(first.append(i as i64, &payload(i)).unwrap());
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
        let spares = hidden_files(&path, "..next-spare-");
        if !spares.is_empty() {
            break spares;
        }
        assert!(Instant::now() < deadline, "no spare waited for recycling");
    };
    let spare_inodes: Vec<u64> = spares.iter().map(|(_, ino)| *ino).collect();
    std::thread::scope(|s| {
        // The next process: waits for the turn, which the idle holder hands over.
        let next = s.spawn(|| SharedLogWriter::open(&path).unwrap());
        let second = next.join().unwrap();
        drop(first);
        // Taken back as its spares (or recycled already into its next segment).
        let taken: Vec<u64> = hidden_files(&path, "..next-spare-")
            .into_iter()
            .chain(hidden_files(&path, ".next-"))
            .map(|(_, ino)| ino)
            .collect();
        assert!(
            spare_inodes.iter().all(|ino| taken.contains(ino)),
            "the next writer took the spares left to it: {spare_inodes:?} among {taken:?}"
        );
        assert_eq!(hidden_files(&path, "..next-kept-"), Vec::new());
        // Within a few rolls, one of the spares left to it is one of its segments.
        let until = second.segment() + 5;
        while !segments(&path)
            .iter()
            .any(|(_, _, ino)| spare_inodes.contains(ino))
        {
            assert!(
                second.segment() < until,
                "no spare left at the handover became a segment of the next writer"
            );
            positions.push(second.append(i as i64, &payload(i)).unwrap());
            i += 1;
        }
        for _ in 0..400 {
            positions.push(second.append(i as i64, &payload(i)).unwrap());
            i += 1;
        }
        drop(second);
    });
    assert_kept_as_appended(&path, &positions, i);
    assert_eq!(
        hidden_files(&path, "..next-"),
        Vec::new(),
        "no spare left behind"
    );
}

/// Spares left for the next writer under their kept names that cannot be recycled (not a
/// stream, the wrong size) are deleted by the writer that takes them, and change nothing
/// else; a valid one is recycled, its earlier life never read.
#[test]
fn kept_spares_are_recycled_or_deleted_by_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(3)).unwrap();
    let mut positions = Vec::new();
    let mut i = 0_u64;
    while log.segment() < 4 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
        i += 1;
    }
    drop(log);
    // As a writer handing its turn over leaves them: a retired segment (a copy of the
    // oldest, events and all), a file of zeros, and one of the wrong size.
    let (_, oldest, _) = segments(&path).remove(0);
    let kept = path.join("..next-kept-00000000.evs");
    std::fs::copy(&oldest, &kept).unwrap();
    let kept_inode = std::fs::metadata(&kept).unwrap().ino();
    std::fs::write(
        path.join("..next-kept-00000001.evs"),
        vec![0_u8; SEGMENT as usize],
    )
    .unwrap();
    std::fs::write(path.join("..next-kept-00000002.evs"), b"not a stream").unwrap();
    let before = read_all(&path);
    let mut log = LogWriter::open(&path).unwrap();
    assert_eq!(
        read_all(&path),
        before,
        "taking them changed nothing of the log"
    );
    // Within a few rolls the valid one is a segment: recycled.
    let until = log.segment() + 4;
    while !segments(&path).iter().any(|(_, _, ino)| *ino == kept_inode) {
        assert!(
            log.segment() < until,
            "the valid kept spare was not recycled"
        );
        positions.push(log.append(i as i64, &payload(i)).unwrap());
        i += 1;
    }
    for _ in 0..200 {
        positions.push(log.append(i as i64, &payload(i)).unwrap());
        i += 1;
    }
    drop(log);
    assert_eq!(hidden_files(&path, "..next-"), Vec::new());
    assert_kept_as_appended(&path, &positions, i);
}
