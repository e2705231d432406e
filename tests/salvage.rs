//! `evstream::salvage`: a resynchronizing scan yields every event that checks out, in
//! order, and accounts for every other byte as a damaged range, whatever the file holds.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;

use evstream::Corruption;
use evstream::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN, TRAILER_LEN, event_checksum};
use evstream::salvage::{DamagedRange, Found, Salvage};
use evstream::{LogOptions, LogWriter, StreamWriter};
use proptest::prelude::*;

/// What a full salvage scan found: events (offset, timestamp, payload) and ranges.
#[derive(Debug, Default)]
struct Scan {
    events: Vec<(u64, i64, Vec<u8>)>,
    damaged: Vec<DamagedRange>,
}

fn scan(path: &Path) -> Scan {
    let mut salvage = Salvage::open(path).unwrap();
    let mut scan = Scan::default();
    while let Some(found) = salvage.next_found().unwrap() {
        match found {
            Found::Event(e) => scan
                .events
                .push((e.offset, e.timestamp, e.payload.to_vec())),
            Found::Damaged(range) => scan.damaged.push(range),
        }
    }
    scan
}

/// A stream of `events` in a fresh file; returns the file's bytes too.
fn write(dir: &Path, events: &[(i64, Vec<u8>)], capacity: u64) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("s.evs");
    let mut writer = StreamWriter::create(&path, capacity).unwrap();
    for (t, p) in events {
        writer.append(*t, p).unwrap();
    }
    drop(writer);
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// The same as [`write`], but the file is a log's segment: a version 3 stream, whose
/// checksums are seeded with the seed its trailer keeps.
fn write_segment(dir: &Path, events: &[(i64, Vec<u8>)]) -> (std::path::PathBuf, Vec<u8>) {
    let log = dir.join("log");
    let mut writer = LogWriter::create(&log, LogOptions::default().segment_size(1 << 16)).unwrap();
    for (t, p) in events {
        writer.append(*t, p).unwrap();
    }
    drop(writer);
    let segments: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "evs"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let path = dir.join("s.evs");
    std::fs::copy(&segments[0], &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Seeded: the first event does not check out under version 2's checksum.
    let (t, p) = &events[0];
    let stored = u32::from_le_bytes(bytes[36..40].try_into().unwrap());
    assert_ne!(stored, event_checksum(*t, p), "not a seeded segment");
    (path, bytes)
}

/// Zeroes both trailer slots of `bytes`: the trailer's records, the seed among them, lost.
fn lose_trailer(bytes: &mut [u8]) {
    let len = bytes.len();
    bytes[len - TRAILER_LEN as usize..].fill(0);
}

fn offsets(events: &[(i64, Vec<u8>)]) -> Vec<u64> {
    let mut at = STREAM_HEADER_LEN;
    events
        .iter()
        .map(|(_, p)| {
            let this = at;
            at += EVENT_HEADER_LEN + p.len() as u64;
            this
        })
        .collect()
}

#[test]
fn an_intact_stream_is_salvaged_whole_with_no_damage() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..50).map(|i| (i, vec![i as u8; i as usize])).collect();
    let (path, _) = write(dir.path(), &events, 1 << 16);
    let scan = scan(&path);
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    let got: Vec<(i64, Vec<u8>)> = scan.events.into_iter().map(|(_, t, p)| (t, p)).collect();
    assert_eq!(got, events);
}

#[test]
fn a_flipped_payload_byte_loses_exactly_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..10)
        .map(|i| (i, format!("payload {i}").into_bytes()))
        .collect();
    let (path, mut bytes) = write(dir.path(), &events, 4096);
    let at = offsets(&events);
    bytes[at[4] as usize + 18] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    assert_eq!(scan.damaged.len(), 1);
    let range = scan.damaged[0].clone();
    assert_eq!((range.offset, range.len), (at[4], at[5] - at[4]));
    assert!(
        matches!(range.reason, Corruption::ChecksumMismatch { .. }),
        "{range:?}"
    );
    assert_eq!(scan.events.len(), 9);
    assert!(scan.events.iter().all(|(_, t, _)| *t != 4));
}

#[test]
fn a_destroyed_size_field_is_searched_past_byte_by_byte() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..10).map(|i| (i, vec![b'x'; 100])).collect();
    let (path, mut bytes) = write(dir.path(), &events, 4096);
    let at = offsets(&events);
    // The size field of event 3 now claims 7 bytes: the search must find event 4.
    bytes[at[3] as usize + 8..at[3] as usize + 12].copy_from_slice(&7u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    assert_eq!(scan.damaged.len(), 1, "{:?}", scan.damaged);
    assert_eq!(
        (scan.damaged[0].offset, scan.damaged[0].len),
        (at[3], at[4] - at[3])
    );
    assert_eq!(scan.events.len(), 9);
}

#[test]
fn a_segment_whose_trailer_is_lost_is_salvaged_whole() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                1_700_000_000_000_000_000 + i / 3,
                vec![0u8; (i as usize * 5) % 70],
            )
        })
        .collect();
    let (path, mut bytes) = write_segment(dir.path(), &events);
    lose_trailer(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    assert!(scan.damaged.is_empty(), "{:?}", scan.damaged);
    let got: Vec<(i64, Vec<u8>)> = scan.events.into_iter().map(|(_, t, p)| (t, p)).collect();
    assert_eq!(got, events);
}

#[test]
fn a_segment_with_its_trailer_lost_and_damaged_events_loses_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, Vec<u8>)> = (0..8)
        .map(|i| (i, format!("payload {i}").into_bytes()))
        .collect();
    let (path, mut bytes) = write_segment(dir.path(), &events);
    lose_trailer(&mut bytes);
    let at = offsets(&events);
    // Events 0, 2 and 4 damaged: events 1 and 3 have no intact neighbours to show the seed
    // with, events 5 to 7 do.
    for i in [0, 2, 4] {
        bytes[at[i] as usize + 18] ^= 1;
    }
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    let found: Vec<i64> = scan.events.iter().map(|(_, t, _)| *t).collect();
    assert_eq!(found, [1, 3, 5, 6, 7]);
    let ranges: Vec<(u64, u64)> = scan.damaged.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(
        ranges,
        [
            (at[0], at[1] - at[0]),
            (at[2], at[3] - at[2]),
            (at[4], at[5] - at[4])
        ]
    );
}

#[test]
fn a_seed_no_second_event_confirms_is_never_trusted() {
    // One event, its trailer lost: any bytes yield a seed they check out under, so one
    // event alone shows nothing, and nothing is yielded as an event. (Three in a row are
    // needed.)
    let dir = tempfile::tempdir().unwrap();
    let events = vec![(5_i64, b"alone".to_vec())];
    let (path, mut bytes) = write_segment(dir.path(), &events);
    lose_trailer(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    assert!(scan.events.is_empty(), "{:?}", scan.events);
    assert_eq!(scan.damaged.len(), 1, "{:?}", scan.damaged);
}

#[test]
fn an_event_earlier_than_the_last_salvaged_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    // Write two streams' worth of events by hand: the third goes back in time.
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    writer.append(10, b"a").unwrap();
    writer.append(20, b"b").unwrap();
    writer.append(30, b"c").unwrap();
    drop(writer);
    let mut bytes = std::fs::read(&path).unwrap();
    // Rewrite event c (at 24 + 17 + 17) with timestamp 15 and a matching checksum.
    let c = 24 + 17 + 17;
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&15i64.to_le_bytes());
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = evstream::format::event_checksum(15, b"c");
    header[12..].copy_from_slice(&crc.to_le_bytes());
    bytes[c..c + 16].copy_from_slice(&header);
    std::fs::write(&path, &bytes).unwrap();
    let scan = scan(&path);
    assert_eq!(scan.events.len(), 2);
    assert_eq!(scan.damaged.len(), 1);
    assert!(matches!(
        scan.damaged[0].reason,
        Corruption::TimestampOutOfOrder {
            previous: 20,
            got: 15
        }
    ));
}

#[test]
fn files_that_are_not_streams_are_refused_or_yield_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"tiny").unwrap();
    assert!(matches!(
        Salvage::open(&short),
        Err(evstream::Error::BadHeader { .. })
    ));
    assert!(matches!(
        Salvage::open(dir.path()),
        Err(evstream::Error::NotAFile { .. })
    ));
    assert!(matches!(
        Salvage::open(dir.path().join("missing")),
        Err(evstream::Error::Io { .. })
    ));
    let zeros = dir.path().join("zeros");
    std::fs::write(&zeros, vec![0u8; 4096]).unwrap();
    // A write offset of 0 is out of range: the whole file is scanned, and zeros are not
    // damage.
    let scan = scan(&zeros);
    assert!(
        scan.events.is_empty() && scan.damaged.is_empty(),
        "{scan:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever bytes are overwritten, salvage never fails or panics; every event it
    /// yields is one that was written, in order; the events and ranges tile the scanned
    /// region exactly; and every event outside the damaged bytes is found.
    #[test]
    fn damage_anywhere_is_accounted_for(
        sizes in proptest::collection::vec(0usize..80, 1..30),
        damage in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        header_too in any::<bool>(),
        segment in any::<bool>(),
        trailer_lost in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<(i64, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as i64 * 3, (0..n).map(|j| (i * 7 + j) as u8).collect()))
            .collect();
        let (path, mut bytes) = if segment {
            write_segment(dir.path(), &events)
        } else {
            write(dir.path(), &events, 4096)
        };
        if trailer_lost {
            lose_trailer(&mut bytes);
        }
        let at = offsets(&events);
        let end = *at.last().unwrap() + EVENT_HEADER_LEN + events.last().unwrap().1.len() as u64;
        let first = if header_too { 0 } else { STREAM_HEADER_LEN as usize };
        let mut touched = Vec::new();
        for (pos, value) in &damage {
            let pos = first + *pos as usize % (end as usize - first);
            if bytes[pos] != *value {
                bytes[pos] = *value;
                touched.push(pos as u64);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let salvage = Salvage::open(&path).unwrap();
        let scan_end = salvage.end();
        drop(salvage);
        let scan = scan(&path);
        // Every event yielded is one that was written, at its place, in order.
        let mut previous = i64::MIN;
        for (offset, t, p) in &scan.events {
            let i = at.iter().position(|a| a == offset);
            prop_assert!(i.is_some(), "an event at {} that was never written", offset);
            let i = i.unwrap();
            prop_assert_eq!((t, p), (&events[i].0, &events[i].1));
            prop_assert!(*t >= previous);
            previous = *t;
        }
        // Events and damaged ranges tile the region from the header to where the scan
        // stopped, in order.
        let mut pieces: Vec<(u64, u64)> = scan
            .events
            .iter()
            .map(|(o, _, p)| (*o, EVENT_HEADER_LEN + p.len() as u64))
            .chain(scan.damaged.iter().map(|r| (r.offset, r.len)))
            .collect();
        pieces.sort_unstable();
        let mut next = STREAM_HEADER_LEN;
        for (offset, len) in &pieces {
            prop_assert_eq!(*offset, next);
            next += len;
        }
        prop_assert!(next <= scan_end);
        // With the stream header and every size field intact, every event whose bytes
        // were not touched is found: the search after damage stops at the first event
        // that checks out, which is the next intact one. (A damaged size field may point
        // to a later event and skip the ones between; that is the one way to lose one.)
        let size_fields_intact = touched.iter().all(|&t| {
            t >= STREAM_HEADER_LEN
                && !at.iter().any(|&o| (o + 8..o + 12).contains(&t))
        });
        // A segment whose trailer is lost needs three intact events in a row to show its
        // checksums' seed.
        let untouched = |i: usize| {
            let len = EVENT_HEADER_LEN + events[i].1.len() as u64;
            touched.iter().all(|&t| t < at[i] || t >= at[i] + len)
        };
        let seed_shown = !(segment && trailer_lost)
            || (2..events.len()).any(|i| untouched(i - 2) && untouched(i - 1) && untouched(i));
        if size_fields_intact && seed_shown {
            for (i, &offset) in at.iter().enumerate() {
                let len = EVENT_HEADER_LEN + events[i].1.len() as u64;
                if touched.iter().all(|&t| t < offset || t >= offset + len) {
                    prop_assert!(
                        scan.events.iter().any(|(o, _, _)| *o == offset),
                        "event {} at {} was intact and lost", i, offset
                    );
                }
            }
        }
    }
}

/// A log segment under salvage is intact for as long as the scan reads it: retention
/// may delete it meanwhile (its bytes stay readable through the open file), but never
/// recycles it into a later segment, whose reset header and new events would read as
/// damage under the old seed.
#[test]
fn a_log_segment_being_salvaged_is_never_recycled_under_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(16 << 10)
        .retain_segments(Some(2));
    let mut log = LogWriter::create(&path, options).unwrap();
    let payload = |i: i64| format!("event {i:06} of the first segment").into_bytes();
    let mut written = Vec::new();
    let mut t = 0;
    while log.segment() == 0 {
        let position = log.append(t, &payload(t)).unwrap();
        if position.segment() == 0 {
            written.push((t, payload(t)));
        }
        t += 1;
    }
    let first = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("00000000-"))
        })
        .unwrap();
    let mut salvage = Salvage::open(&first).unwrap();
    // The writer goes on: segment 0 is retired, and a later segment is written where a
    // recycled file would hold it.
    while log.segment() < 8 {
        log.append(t, &[0xa5; 200]).unwrap();
        t += 1;
    }
    log.flush().unwrap();
    let mut events = Vec::new();
    let mut damaged = Vec::new();
    while let Some(found) = salvage.next_found().unwrap() {
        match found {
            Found::Event(e) => events.push((e.timestamp, e.payload.to_vec())),
            Found::Damaged(range) => damaged.push(range),
        }
    }
    assert!(
        damaged.is_empty(),
        "intact events read as damage: {damaged:?}"
    );
    assert_eq!(events, written);
}
