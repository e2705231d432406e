//! Corruption: every bit of small multi-event streams flipped in turn, the file truncated
//! at every offset, and headers that lie (write offset past the end or mid-event, wrong
//! counts, event sizes that overflow, CRC-valid events out of order or too long).
//!
//! Every case goes through every way in: `StreamReader::open` with verified and
//! unverified iteration, `verify`, `seek_time` and `follow`; `StreamWriter::open`
//! (recovery); and the plain-`std::io` parser `evstream::stdio::EventReader`. The checks:
//! - nothing panics (each case runs under `catch_unwind` so a panic names the case);
//! - a flipped bit inside an event's header or payload is reported at exactly that
//!   event, and no reader ever yields an event whose bytes differ from what was written;
//! - the writer either refuses with a typed error, leaving the file byte for byte
//!   unchanged, or recovers a prefix of the original events;
//! - no single allocation during a case is larger than the file (plus 4 KiB for paths
//!   and messages), measured by a counting global allocator.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use evstream::format::EventHeader;
use evstream::{Corruption, Error, HeaderProblem, StreamReader, StreamWriter};
use reliability_support::Rng;
use zerocopy::IntoBytes;

/// Forwards to the system allocator and records, per thread while armed, the largest
/// single request.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s
// guarantees are ours; `note` only touches const-initialized thread-locals without
// destructors and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, LARGEST.with(|l| l.get()))
}

/// Slack for allocations that do not depend on the file: paths, error messages.
const SLACK: usize = 4096;

/// One event of a test stream.
#[derive(Debug, Clone)]
struct Spec {
    timestamp: i64,
    payload: Vec<u8>,
}

/// A stream file in memory, with the offset of each event.
#[derive(Debug, Clone)]
struct Image {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
    events: Vec<Spec>,
    write_offset: u64,
}

fn encode(events: &[Spec], free: usize) -> Image {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&[0u8; 24]);
    let mut offsets = Vec::new();
    for event in events {
        offsets.push(bytes.len() as u64);
        let header = EventHeader::for_payload(event.timestamp, &event.payload).unwrap();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&event.payload);
    }
    let write_offset = bytes.len() as u64;
    bytes[0..8].copy_from_slice(&write_offset.to_le_bytes());
    bytes[8..16].copy_from_slice(&(events.len() as u64).to_le_bytes());
    bytes[16..24].copy_from_slice(&1_700_000_000i64.to_le_bytes());
    bytes.resize(bytes.len() + free, 0);
    Image {
        bytes,
        offsets,
        events: events.to_vec(),
        write_offset,
    }
}

/// Streams with events of the given payload sizes (random, non-zero payload bytes).
fn stream(seed: u64, sizes: &[usize], free: usize) -> Image {
    let mut rng = Rng::new(seed);
    let events: Vec<Spec> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut payload = vec![0u8; size];
            rng.fill(&mut payload);
            payload.iter_mut().for_each(|b| *b |= 1);
            Spec {
                timestamp: 1_000 + i as i64 / 2,
                payload,
            }
        })
        .collect();
    // The stream a writer makes has the same bytes as this encoding.
    encode(&events, free)
}

/// What the readers and the writer made of one damaged file.
#[derive(Debug)]
struct Outcome {
    /// `Ok(events read before an error)` or the error `StreamReader::open` returned.
    reader: Result<(usize, Option<Error>), Error>,
    /// Events a recovering writer kept, or its error.
    writer: Result<usize, Error>,
}

/// The number of events readers found, if they found no damage.
fn clean_read(outcome: &Outcome) -> Option<usize> {
    match &outcome.reader {
        Ok((n, None)) => Some(*n),
        _ => None,
    }
}

/// Runs every reader and the writer over `bytes`, checking what holds for any input.
fn run_case(path: &Path, bytes: &[u8], original: &Image, case: &str) -> Outcome {
    std::fs::write(path, bytes).unwrap();
    let limit = bytes.len() + SLACK;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (reader, largest) = largest_allocation(|| read_all_ways(path, original, case));
        assert!(largest <= limit, "{case}: reader allocated {largest} bytes");
        let stdio_largest = largest_allocation(|| stdio_read(bytes)).1;
        assert!(
            stdio_largest <= limit,
            "{case}: stdio reader allocated {stdio_largest} bytes"
        );
        let (writer, largest) = largest_allocation(|| StreamWriter::open(path));
        assert!(largest <= limit, "{case}: writer allocated {largest} bytes");
        let writer = match writer {
            Ok(w) => {
                let n = w.event_count() as usize;
                drop(w);
                // Recovery kept a prefix of the original events, intact.
                let (kept, _) = read_all_ways(path, original, case).unwrap();
                assert_eq!(kept.0, n, "{case}: recovered stream");
                assert!(kept.1.is_none(), "{case}: recovered stream is damaged");
                // And recovering it again changes nothing.
                let again = StreamWriter::open(path).unwrap();
                assert!(
                    again.recovery().is_clean(),
                    "{case}: {:?}",
                    again.recovery()
                );
                Ok(n)
            }
            Err(e) => {
                assert!(
                    std::fs::read(path).unwrap() == bytes,
                    "{case}: refused ({e}) but changed the file"
                );
                assert!(
                    matches!(e, Error::Corrupt { .. } | Error::BadHeader { .. }),
                    "{case}: unexpected error {e:?}"
                );
                Err(e)
            }
        };
        Outcome {
            reader: reader.map(|(r, _)| r),
            writer,
        }
    }));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{case}: panicked: {msg}");
        }
    }
}

/// Opens a reader and reads the stream every way there is. Returns the verified
/// iteration's events and its error, plus the number of `follow` events; checks that
/// every event any of them yields is the original one at that place.
#[allow(clippy::type_complexity)]
fn read_all_ways(
    path: &Path,
    original: &Image,
    case: &str,
) -> Result<((usize, Option<Error>), usize), Error> {
    let reader = StreamReader::open(path)?;
    let check = |i: usize, offset: u64, timestamp: i64, payload: &[u8], how: &str| {
        let spec = original.events.get(i);
        assert!(
            spec.is_some_and(|s| s.timestamp == timestamp && s.payload == payload)
                && original.offsets[i] == offset,
            "{case}: {how} yielded a changed event {i} at {offset}"
        );
    };
    let mut verified = 0;
    let mut error = None;
    for event in reader.iter() {
        match event {
            Ok(e) => {
                check(verified, e.offset(), e.timestamp(), e.payload(), "iter");
                verified += 1;
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Corrupt { .. } | Error::Regressed { .. }),
                    "{case}: {e:?}"
                );
                error = Some(e);
            }
        }
    }
    // Unverified iteration stays inside the published bytes whatever the sizes say.
    let mut unverified = 0usize;
    let published = reader.write_offset();
    for event in reader.iter_unverified() {
        match event {
            Ok(e) => {
                assert!(
                    e.next_offset() <= published,
                    "{case}: unverified past the end"
                );
                unverified += 1;
            }
            Err(_) => break,
        }
        assert!(
            unverified <= original.bytes.len(),
            "{case}: endless iteration"
        );
    }
    let verification = reader.verify().unwrap();
    assert_eq!(verification.events as usize, verified, "{case}: verify");
    assert_eq!(verification.damage.is_some(), error.is_some(), "{case}");
    for probe in [i64::MIN, 1_000, 1_001, 1_002, i64::MAX] {
        match reader.seek_time(probe) {
            Ok(Some(offset)) => assert!(offset < published, "{case}"),
            Ok(None) | Err(Error::Corrupt { .. }) => {}
            Err(e) => panic!("{case}: seek_time: {e:?}"),
        }
    }
    let mut follow = reader.follow(24)?;
    let mut followed = 0;
    loop {
        match follow.next_timeout(Duration::ZERO) {
            Ok(Some(e)) => {
                check(followed, e.offset(), e.timestamp(), e.payload(), "follow");
                followed += 1;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. }), "{case}: follow: {e:?}");
                break;
            }
        }
    }
    assert_eq!(followed, verified, "{case}: follow and iter disagree");
    Ok(((verified, error), followed))
}

/// Reads `bytes` with the plain-`std::io` parser until it stops.
fn stdio_read(bytes: &[u8]) -> usize {
    let Ok(mut reader) = evstream::stdio::EventReader::new(bytes) else {
        return 0;
    };
    let mut payload = Vec::new();
    let mut n = 0;
    while let Ok(Some(_)) = reader.read_event(&mut payload) {
        n += 1;
    }
    n
}

/// The event whose bytes (header or payload) contain file offset `at`, if any.
fn event_at(image: &Image, at: u64) -> Option<usize> {
    if at < 24 || at >= image.write_offset {
        return None;
    }
    Some(image.offsets.partition_point(|&o| o <= at) - 1)
}

fn test_streams() -> Vec<(&'static str, Image)> {
    vec![
        // Empty, tiny and sector-crossing events, and free space after them.
        ("mixed", stream(1, &[0, 1, 13, 500, 40], 64)),
        // Events that end exactly on a sector boundary.
        ("aligned", stream(2, &[488 - 16, 496, 7], 24)),
    ]
}

#[test]
fn every_bit_flip_is_caught_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flip.evs");
    let mut cases = 0;
    let (mut refused, mut recovered, mut in_events) = (0, 0, 0);
    for (name, image) in test_streams() {
        let n = image.events.len();
        for bit in 0..image.bytes.len() * 8 {
            let at = bit / 8;
            let mut bytes = image.bytes.clone();
            bytes[at] ^= 1 << (bit % 8);
            let case = format!("{name}: bit {bit} (byte {at})");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            match &outcome.writer {
                Ok(kept) if *kept < n => recovered += 1,
                Ok(_) => {}
                Err(_) => refused += 1,
            }
            if let Some(k) = event_at(&image, at as u64) {
                in_events += 1;
                // Detected, at exactly the damaged event.
                let (read, error) = outcome.reader.as_ref().unwrap();
                assert_eq!(*read, k, "{case}: events before the damage");
                match error {
                    Some(Error::Corrupt { offset, .. }) => {
                        assert_eq!(*offset, image.offsets[k], "{case}: damage offset");
                    }
                    other => panic!("{case}: flip in event {k} not detected: {other:?}"),
                }
                match &outcome.writer {
                    Ok(kept) => assert!(*kept <= k, "{case}: damaged event {k} kept"),
                    Err(Error::Corrupt { offset, .. }) => {
                        assert_eq!(*offset, image.offsets[k], "{case}");
                    }
                    Err(e) => panic!("{case}: {e:?}"),
                }
            } else if (16..24).contains(&at) || at as u64 >= image.write_offset {
                // The start timestamp and the free space: nothing to see for readers;
                // the writer clears the stray bit past the write offset.
                assert_eq!(clean_read(&outcome), Some(n), "{case}");
                assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
            } else if (8..16).contains(&at) {
                // The count: readers do not depend on it; the writer repairs one short
                // and refuses anything else.
                assert_eq!(clean_read(&outcome), Some(n), "{case}");
                let count = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                if count.checked_add(1) == Some(n as u64) {
                    assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
                } else {
                    assert!(
                        matches!(
                            outcome.writer,
                            Err(Error::BadHeader {
                                reason: HeaderProblem::CountMismatch { .. },
                                ..
                            })
                        ),
                        "{case}: {:?}",
                        outcome.writer
                    );
                }
            }
        }
    }
    eprintln!(
        "corruption: {cases} bit flips ({in_events} inside events, every one detected); \
         writer refused {refused}, recovered a shorter prefix {recovered}"
    );
}

#[test]
fn truncation_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.evs");
    let mut cases = 0;
    for (name, image) in test_streams() {
        let n = image.events.len();
        for len in 0..=image.bytes.len() {
            let case = format!("{name}: truncated to {len} bytes");
            let outcome = run_case(&path, &image.bytes[..len], &image, &case);
            cases += 1;
            let expected = if len < 24 {
                Some(HeaderProblem::TooShort { len: len as u64 })
            } else if (len as u64) < image.write_offset {
                Some(HeaderProblem::WriteOffsetOutOfRange {
                    write_offset: image.write_offset,
                    len: len as u64,
                })
            } else {
                None
            };
            match expected {
                Some(problem) => {
                    for result in [outcome.reader.as_ref().err(), outcome.writer.as_ref().err()] {
                        match result {
                            Some(Error::BadHeader { reason, .. }) => {
                                assert_eq!(*reason, problem, "{case}")
                            }
                            other => panic!("{case}: {other:?}"),
                        }
                    }
                }
                None => {
                    assert_eq!(clean_read(&outcome), Some(n), "{case}");
                    assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
                }
            }
        }
    }
    eprintln!("corruption: {cases} truncations");
}

#[test]
fn header_lies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lie.evs");
    let mut cases = 0;
    for (name, image) in test_streams() {
        let n = image.events.len() as u64;
        let len = image.bytes.len() as u64;

        // Write offsets everywhere: before the events, at and inside each event, in the
        // free space, just past the end, and absurd.
        let mut offsets: Vec<u64> = (0..=len + 1).collect();
        offsets.extend([len + 4096, 1 << 32, 1 << 63, u64::MAX - 15, u64::MAX]);
        for offset in offsets {
            let mut bytes = image.bytes.clone();
            bytes[0..8].copy_from_slice(&offset.to_le_bytes());
            let case = format!("{name}: write offset {offset}");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            if !(24..=len).contains(&offset) {
                assert!(
                    matches!(
                        outcome.reader,
                        Err(Error::BadHeader {
                            reason: HeaderProblem::WriteOffsetOutOfRange { .. },
                            ..
                        })
                    ),
                    "{case}: {:?}",
                    outcome.reader
                );
                assert!(
                    matches!(outcome.writer, Err(Error::BadHeader { .. })),
                    "{case}"
                );
                continue;
            }
            // Events wholly before the offset read back; the rest is damage.
            let whole = image
                .offsets
                .iter()
                .zip(&image.events)
                .filter(|(o, e)| **o + 16 + e.payload.len() as u64 <= offset)
                .count();
            let (read, error) = outcome.reader.as_ref().unwrap();
            assert_eq!(*read, whole, "{case}");
            let at_boundary = offset == 24 + image.bytes_before(whole);
            assert_eq!(error.is_none(), at_boundary, "{case}: {error:?}");
            match &outcome.writer {
                Ok(kept) => {
                    assert!(*kept <= whole, "{case}");
                    // A whole-event offset with a count that does not match is refused,
                    // unless the count is exactly one short.
                    if at_boundary {
                        assert!(n == whole as u64 || n + 1 == whole as u64, "{case}");
                    }
                }
                Err(e) => assert!(
                    !at_boundary
                        || matches!(
                            e,
                            Error::BadHeader {
                                reason: HeaderProblem::CountMismatch { .. },
                                ..
                            }
                        ),
                    "{case}: {e:?}"
                ),
            }
        }

        // Counts that are wrong by a little and by a lot.
        let mut counts: Vec<u64> = (0..=n + 3).collect();
        counts.extend([u64::MAX - 1, u64::MAX, 1 << 63]);
        for count in counts {
            let mut bytes = image.bytes.clone();
            bytes[8..16].copy_from_slice(&count.to_le_bytes());
            let case = format!("{name}: event count {count}");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            assert_eq!(clean_read(&outcome), Some(n as usize), "{case}");
            if count == n || count.checked_add(1) == Some(n) {
                assert_eq!(outcome.writer.as_ref().ok(), Some(&(n as usize)), "{case}");
            } else {
                match &outcome.writer {
                    Err(Error::BadHeader {
                        reason: HeaderProblem::CountMismatch { header, scanned },
                        ..
                    }) => assert_eq!((*header, *scanned), (count, n), "{case}"),
                    other => panic!("{case}: {other:?}"),
                }
            }
        }

        // Event size fields that run past the write offset, the file, `u32` and `usize`
        // arithmetic, with the checksum left alone and recomputed.
        for (k, &event_offset) in image.offsets.iter().enumerate() {
            let at = event_offset as usize;
            let rest = (image.write_offset - event_offset - 16) as u32;
            let sizes = [
                0,
                1,
                rest,
                rest + 1,
                (len - event_offset) as u32,
                1 << 31,
                u32::MAX - 16,
                u32::MAX - 15,
                u32::MAX,
            ];
            for size in sizes {
                for reseal in [false, true] {
                    if reseal && size <= rest {
                        continue; // A resealed event inside the stream is a valid event.
                    }
                    let mut bytes = image.bytes.clone();
                    bytes[at + 8..at + 12].copy_from_slice(&size.to_le_bytes());
                    if reseal {
                        reseal_event(&mut bytes, at);
                    }
                    let case = format!("{name}: event {k} size {size} (resealed {reseal})");
                    let outcome = run_case(&path, &bytes, &image, &case);
                    cases += 1;
                    if size as usize == image.events[k].payload.len() {
                        continue;
                    }
                    let (read, error) = outcome.reader.as_ref().unwrap();
                    assert_eq!(*read, k, "{case}");
                    let reason = match error {
                        Some(Error::Corrupt { offset, reason, .. }) => {
                            assert_eq!(*offset, event_offset, "{case}");
                            reason
                        }
                        other => panic!("{case}: {other:?}"),
                    };
                    if u64::from(size) > u64::from(rest) {
                        assert!(
                            matches!(reason, Corruption::TruncatedPayload { .. }),
                            "{case}: {reason:?}"
                        );
                    }
                    if let Ok(kept) = outcome.writer {
                        assert!(kept <= k, "{case}");
                    }
                }
            }
        }

        // A CRC-valid event whose timestamp goes back in time.
        for k in 1..image.offsets.len() {
            let at = image.offsets[k] as usize;
            let mut bytes = image.bytes.clone();
            bytes[at..at + 8].copy_from_slice(&i64::MIN.to_le_bytes());
            reseal_event(&mut bytes, at);
            let case = format!("{name}: event {k} timestamp i64::MIN");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            let (read, error) = outcome.reader.as_ref().unwrap();
            assert_eq!(*read, k, "{case}");
            assert!(
                matches!(
                    error,
                    Some(Error::Corrupt {
                        reason: Corruption::TimestampOutOfOrder { .. },
                        ..
                    })
                ),
                "{case}: {error:?}"
            );
            assert!(
                matches!(outcome.writer, Err(Error::Corrupt { .. })),
                "{case}: a CRC-valid event is not a torn write"
            );
        }
    }
    eprintln!("corruption: {cases} header lies");
}

impl Image {
    fn bytes_before(&self, count: usize) -> u64 {
        self.events[..count]
            .iter()
            .map(|e| 16 + e.payload.len() as u64)
            .sum()
    }
}

/// Recomputes the checksum of the event at `at` over whatever its size field claims,
/// clamped to the bytes there are.
fn reseal_event(bytes: &mut [u8], at: usize) {
    let size = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
    let end = (at + 16).saturating_add(size).min(bytes.len());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[at..at + 12]);
    hasher.update(&bytes[at + 16..end]);
    bytes[at + 12..at + 16].copy_from_slice(&hasher.finalize().to_le_bytes());
}

#[test]
fn the_allocation_probe_sees_allocations() {
    // Without this the allocation limits above could pass vacuously.
    let (v, largest) = largest_allocation(|| vec![7u8; 100_000]);
    assert_eq!(v.len(), 100_000);
    assert!(largest >= 100_000, "{largest}");
    let ((), none) = largest_allocation(|| {});
    assert_eq!(none, 0);
}
