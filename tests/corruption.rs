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

use evstream::format::{
    EventHeader, TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, Trailer, capacity_for_events,
    decode_trailer, trailer_offset,
};
use evstream::{
    Corruption, Error, HeaderProblem, Prefault, StreamReader, StreamWriter, WriterOptions,
};
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
    /// Whether the durable watermark covers every event (else it covers none).
    flushed: bool,
    /// Where the trailer starts (the end of the event area).
    trailer_at: u64,
}

/// The stream file a writer leaves after appending `events` (and flushing them all, with
/// `flushed`), with at least `free` bytes of event area after them.
///
/// Both trailer slots hold a valid record: the older one (sequence 1) with a watermark
/// that covers nothing, the current one (sequence 2) with the real watermark.
fn encode(events: &[Spec], free: usize, flushed: bool) -> Image {
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
    let capacity = capacity_for_events(write_offset - 24 + free as u64).unwrap();
    let trailer_at = trailer_offset(capacity).unwrap();
    bytes.resize(capacity as usize, 0);
    let older = Trailer {
        dirty_limit: trailer_at,
        ..Trailer::empty()
    };
    let current = if flushed && !events.is_empty() {
        Trailer {
            sequence: 2,
            durable_offset: write_offset,
            durable_count: events.len() as u64,
            durable_last_timestamp: events.last().map(|e| e.timestamp),
            ..older
        }
    } else {
        Trailer {
            sequence: 2,
            ..older
        }
    };
    for trailer in [older, current] {
        let at = (trailer_at + Trailer::slot(trailer.sequence) * 512) as usize;
        let record = trailer.encode();
        bytes[at..at + record.as_bytes().len()].copy_from_slice(record.as_bytes());
    }
    Image {
        bytes,
        offsets,
        events: events.to_vec(),
        write_offset,
        flushed,
        trailer_at,
    }
}

/// Streams with events of the given payload sizes (random, non-zero payload bytes, or
/// with `zero_sectors` a short prefix and zeros).
fn stream(seed: u64, sizes: &[usize], free: usize, flushed: bool, zero_sectors: bool) -> Image {
    let mut rng = Rng::new(seed);
    let events: Vec<Spec> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            let mut payload = vec![0u8; size];
            if zero_sectors {
                let tag = format!("rec{i:05}:");
                let n = tag.len().min(size);
                payload[..n].copy_from_slice(&tag.as_bytes()[..n]);
            } else {
                rng.fill(&mut payload);
                payload.iter_mut().for_each(|b| *b |= 1);
            }
            Spec {
                timestamp: 1_000 + i as i64 / 2,
                payload,
            }
        })
        .collect();
    // The stream a writer makes has the same bytes as this encoding.
    encode(&events, free, flushed)
}

/// What the readers and the writers made of one damaged file.
#[derive(Debug)]
struct Outcome {
    /// `Ok(events read before an error)` or the error `StreamReader::open` returned.
    reader: Result<(usize, Option<Error>), Error>,
    /// Events a recovering writer (default options) kept, or its error.
    writer: Result<usize, Error>,
    /// Whether that writer left the file byte for byte as it found it.
    writer_unchanged: bool,
    /// Events a writer that also checks the durable events kept, or its error.
    checked: Result<usize, Error>,
}

/// The number of events readers found, if they found no damage.
fn clean_read(outcome: &Outcome) -> Option<usize> {
    match &outcome.reader {
        Ok((n, None)) => Some(*n),
        _ => None,
    }
}

/// Opens a writer on `bytes` written to `path` and checks what holds for any input: a
/// refusal is typed and leaves the file unchanged; an accepted stream reads back as a
/// prefix of the original events, intact when `intact` (the writer checked every event),
/// and opening it again repairs nothing.
fn open_writer(
    path: &Path,
    bytes: &[u8],
    original: &Image,
    case: &str,
    options: WriterOptions,
    intact: bool,
) -> (Result<usize, Error>, bool) {
    std::fs::write(path, bytes).unwrap();
    let limit = bytes.len() + SLACK;
    let (writer, largest) = largest_allocation(|| StreamWriter::open_with(path, options.clone()));
    assert!(largest <= limit, "{case}: writer allocated {largest} bytes");
    let after = std::fs::read(path).unwrap();
    let unchanged = after == bytes;
    match writer {
        Ok(w) => {
            let n = w.event_count() as usize;
            drop(w);
            // Recovery kept a prefix of the original events.
            let (kept, _) = read_all_ways(path, original, case).unwrap();
            if intact {
                assert_eq!(kept.0, n, "{case}: recovered stream");
                assert!(kept.1.is_none(), "{case}: recovered stream is damaged");
            }
            // And recovering it again changes nothing.
            let again = StreamWriter::open_with(path, options).unwrap();
            assert!(
                again.recovery().is_clean(),
                "{case}: {:?}",
                again.recovery()
            );
            (Ok(n), unchanged)
        }
        Err(e) => {
            assert!(unchanged, "{case}: refused ({e}) but changed the file");
            assert!(
                matches!(
                    e,
                    Error::Corrupt { .. }
                        | Error::BadHeader { .. }
                        | Error::NotAStream { .. }
                        | Error::DamagedTrailer { .. }
                ),
                "{case}: unexpected error {e:?}"
            );
            (Err(e), true)
        }
    }
}

/// Runs every reader and both writers over `bytes`, checking what holds for any input.
fn run_case(path: &Path, bytes: &[u8], original: &Image, case: &str) -> Outcome {
    std::fs::write(path, bytes).unwrap();
    let limit = bytes.len() + SLACK;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (reader, largest) = largest_allocation(|| read_all_ways(path, original, case));
        assert!(largest <= limit, "{case}: reader allocated {largest} bytes");
        assert!(
            std::fs::read(path).unwrap() == bytes,
            "{case}: readers changed the file"
        );
        let stdio_largest = largest_allocation(|| stdio_read(bytes)).1;
        assert!(
            stdio_largest <= limit,
            "{case}: stdio reader allocated {stdio_largest} bytes"
        );
        let options = WriterOptions::default().prefault(Prefault::Off);
        let (writer, writer_unchanged) =
            open_writer(path, bytes, original, case, options.clone(), false);
        let (checked, _) = open_writer(
            path,
            bytes,
            original,
            case,
            options.check_durable(true),
            true,
        );
        Outcome {
            reader: reader.map(|(r, _)| r),
            writer,
            writer_unchanged,
            checked,
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
    // `verify` also checks the trailer record against the events, which iteration does
    // not; this file's records describe the events.
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
        ("mixed", stream(1, &[0, 1, 13, 500, 40], 64, true, false)),
        (
            "mixed unflushed",
            stream(1, &[0, 1, 13, 500, 40], 64, false, false),
        ),
        // Events that end exactly on a sector boundary.
        ("aligned", stream(2, &[488 - 16, 496, 7], 24, true, false)),
        (
            "aligned unflushed",
            stream(2, &[488 - 16, 496, 7], 24, false, false),
        ),
        // Records of a short tag and zeros: every event holds a zero-filled sector, as a
        // torn write would (defect 1 of issue 9).
        (
            "zero sectors",
            stream(3, &[1100, 1100, 1100], 64, true, true),
        ),
    ]
}

/// The byte offsets whose bits the flip test flips: the header, every event, some free
/// space, and both trailer slot records.
fn flip_positions(image: &Image) -> Vec<usize> {
    let record = Trailer::empty().encode().as_bytes().len() as u64;
    let mut at: Vec<u64> = (0..(image.write_offset + 64).min(image.trailer_at)).collect();
    for slot in [image.trailer_at, image.trailer_at + 512] {
        at.extend(slot..slot + record);
    }
    at.into_iter().map(|a| a as usize).collect()
}

/// Which bits of byte `at` to flip: all of them in flushed events, else one (a different
/// one from byte to byte), which keeps the run short.
fn bits_to_flip(image: &Image, at: usize) -> Vec<u32> {
    if image.flushed && event_at(image, at as u64).is_some() {
        if image.events.iter().any(|e| e.payload.len() > 1000) {
            // The long zero-sector records: every other bit.
            (0..8)
                .filter(|b| (*b as usize + at).is_multiple_of(2))
                .collect()
        } else {
            (0..8).collect()
        }
    } else {
        vec![(at % 8) as u32]
    }
}

/// A scratch directory, on a RAM disk where there is one: recovery syncs, and this suite
/// runs tens of thousands of cases that test logic, not the disk.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

fn in_trailer(image: &Image, at: usize) -> bool {
    at as u64 >= image.trailer_at
}

#[test]
fn every_bit_flip_is_caught_or_harmless() {
    let dir = scratch();
    let path = dir.path().join("flip.evs");
    let mut cases = 0;
    let (mut flushed_refused, mut flushed_flips, mut truncated_unflushed) = (0, 0, 0);
    for (name, image) in test_streams() {
        let n = image.events.len();
        for at in flip_positions(&image) {
            for bit in bits_to_flip(&image, at) {
                let mut bytes = image.bytes.clone();
                bytes[at] ^= 1 << bit;
                let case = format!("{name}: bit {bit} of byte {at}");
                let outcome = run_case(&path, &bytes, &image, &case);
                cases += 1;
                if let Some(k) = event_at(&image, at as u64) {
                    // Detected by readers, at exactly the damaged event.
                    let (read, error) = outcome.reader.as_ref().unwrap();
                    assert_eq!(*read, k, "{case}: events before the damage");
                    match error {
                        Some(Error::Corrupt { offset, .. }) => {
                            assert_eq!(*offset, image.offsets[k], "{case}: damage offset");
                        }
                        other => panic!("{case}: flip in event {k} not detected: {other:?}"),
                    }
                    if image.flushed {
                        // Flushed data: refused by a checking writer, never truncated.
                        flushed_flips += 1;
                        match &outcome.checked {
                            Err(Error::Corrupt {
                                offset, watermark, ..
                            }) => {
                                assert_eq!(*offset, image.offsets[k], "{case}");
                                assert_eq!(*watermark, image.write_offset, "{case}");
                                flushed_refused += 1;
                            }
                            other => panic!("{case}: flushed damage not refused: {other:?}"),
                        }
                        assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
                        assert!(outcome.writer_unchanged, "{case}: flushed bytes rewritten");
                    } else {
                        // Above the watermark any damage may be a torn write: truncated
                        // at exactly the damaged event.
                        assert_eq!(outcome.writer.as_ref().ok(), Some(&k), "{case}");
                        assert_eq!(outcome.checked.as_ref().ok(), Some(&k), "{case}");
                        truncated_unflushed += 1;
                    }
                } else if (8..24).contains(&at)
                    || at as u64 >= image.write_offset
                    || in_trailer(&image, at)
                {
                    // The count (derived data, repaired), the start timestamp, the free
                    // space, and either trailer slot (the other one stands in): nothing
                    // to see for readers, nothing lost for the writer.
                    assert_eq!(clean_read(&outcome), Some(n), "{case}");
                    assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
                    assert_eq!(outcome.checked.as_ref().ok(), Some(&n), "{case}");
                } else {
                    // The write offset: refused below the watermark or outside the event
                    // area; a flushed stream never loses an event.
                    assert!(at < 8, "{case}");
                    if image.flushed {
                        match &outcome.writer {
                            Ok(kept) => assert_eq!(*kept, n, "{case}"),
                            Err(Error::BadHeader { .. }) => {}
                            Err(e) => panic!("{case}: {e:?}"),
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "corruption: {cases} bit flips; {flushed_flips} in flushed events, {flushed_refused} \
         of them refused by a checking writer and none truncated; {truncated_unflushed} in \
         unflushed events, each truncated at the damaged event"
    );
    assert_eq!(flushed_refused, flushed_flips);
    assert!(flushed_flips > 0 && truncated_unflushed > 0);
}

#[test]
fn truncation_at_every_offset() {
    let dir = scratch();
    let path = dir.path().join("cut.evs");
    let mut cases = 0;
    for (name, image) in test_streams() {
        let n = image.events.len();
        for len in 0..=image.bytes.len() {
            let case = format!("{name}: truncated to {len} bytes");
            let outcome = run_case(&path, &image.bytes[..len], &image, &case);
            cases += 1;
            if len == image.bytes.len() {
                assert_eq!(clean_read(&outcome), Some(n), "{case}");
                assert_eq!(outcome.writer.as_ref().ok(), Some(&n), "{case}");
                continue;
            }
            // A shorter file has no trailer where its length says the trailer is.
            // (Cut by a multiple of 512 bytes, the real trailer's slot 0 can land in the
            // place of slot 1, where its watermark contradicts the shorter file.)
            for result in [outcome.reader.as_ref().err(), outcome.writer.as_ref().err()] {
                assert!(
                    matches!(
                        result,
                        Some(Error::NotAStream { .. } | Error::DamagedTrailer { .. })
                    ),
                    "{case}: {result:?}"
                );
            }
        }
    }
    eprintln!("corruption: {cases} truncations");
}

#[test]
fn header_lies() {
    let dir = scratch();
    let path = dir.path().join("lie.evs");
    let mut cases = 0;
    for (name, image) in test_streams() {
        let n = image.events.len() as u64;
        let len = image.bytes.len() as u64;
        let end = image.trailer_at;

        // Write offsets everywhere: before the events, at and inside each event, in the
        // free space, in the trailer, just past the end, and absurd.
        let mut offsets: Vec<u64> = (0..=len + 1).collect();
        offsets.extend([len + 4096, 1 << 32, 1 << 63, u64::MAX - 15, u64::MAX]);
        for offset in offsets {
            let mut bytes = image.bytes.clone();
            bytes[0..8].copy_from_slice(&offset.to_le_bytes());
            let case = format!("{name}: write offset {offset}");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            let expected = if !(24..=end).contains(&offset) {
                Some(HeaderProblem::WriteOffsetOutOfRange {
                    write_offset: offset,
                    len: end,
                })
            } else if image.flushed && offset < image.write_offset {
                Some(HeaderProblem::BelowWatermark {
                    write_offset: offset,
                    watermark: image.write_offset,
                })
            } else {
                None
            };
            if let Some(problem) = expected {
                for result in [outcome.reader.as_ref().err(), outcome.writer.as_ref().err()] {
                    match result {
                        Some(Error::BadHeader { reason, .. }) => {
                            assert_eq!(*reason, problem, "{case}")
                        }
                        other => panic!("{case}: {other:?}"),
                    }
                }
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
            // Above the watermark the writer keeps the whole events and drops the rest.
            assert_eq!(outcome.writer.as_ref().ok(), Some(&whole), "{case}");
            assert_eq!(outcome.checked.as_ref().ok(), Some(&whole), "{case}");
        }

        // Counts that are wrong by a little and by a lot: derived data, repaired.
        let mut counts: Vec<u64> = (0..=n + 3).collect();
        counts.extend([u64::MAX - 1, u64::MAX, 1 << 63]);
        for count in counts {
            let mut bytes = image.bytes.clone();
            bytes[8..16].copy_from_slice(&count.to_le_bytes());
            let case = format!("{name}: event count {count}");
            let outcome = run_case(&path, &bytes, &image, &case);
            cases += 1;
            assert_eq!(clean_read(&outcome), Some(n as usize), "{case}");
            assert_eq!(outcome.writer.as_ref().ok(), Some(&(n as usize)), "{case}");
            assert_eq!(outcome.checked.as_ref().ok(), Some(&(n as usize)), "{case}");
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
                    assert_damage_handled(&image, &outcome, k, &case);
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
            assert_damage_handled(&image, &outcome, k, &case);
        }
    }
    eprintln!("corruption: {cases} header lies");
}

/// Damage at event `k`: below the watermark a checking writer refuses it and the default
/// writer keeps every event untouched; above it both truncate at `k`.
/// A trailer record whose durable watermark lies inside an event, with a count and a
/// last timestamp that pass the record's own checks (FORMAT.md, "Validity"): the writer's
/// open refuses the stream as corrupt below the watermark and changes no byte (it used
/// to take the event bytes at the watermark for a torn tail and cut the durable event
/// in two), and a reader still reads every event. Every such watermark of a stream of
/// mixed sizes, flushed twice, is tried, the lie written as a newer record (the other
/// slot then holds the last flush's record) and over the current one (the other slot
/// then holds the first flush's, where the open's check starts its walk).
#[test]
fn a_watermark_inside_an_event_is_refused_not_cut() {
    let dir = scratch();
    let path = dir.path().join("watermark.evs");
    let sizes = [0usize, 5, 83, 200, 0, 1000, 17];
    let mut writer = StreamWriter::create(&path, 1 << 14).unwrap();
    let mut starts = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        starts.push(writer.append(i as i64 * 10, &vec![7u8; size]).unwrap());
        if i == 2 {
            writer.flush().unwrap();
        }
    }
    writer.flush().unwrap();
    let end = writer.write_offset();
    drop(writer);
    let clean = std::fs::read(&path).unwrap();
    let trailer_at = trailer_offset(clean.len() as u64).unwrap() as usize;
    let slot = |k: usize| -> [u8; TRAILER_RECORD_LEN] {
        let from = trailer_at + k * TRAILER_SLOT_LEN as usize;
        clean[from..from + TRAILER_RECORD_LEN].try_into().unwrap()
    };
    let current = decode_trailer([&slot(0), &slot(1)], trailer_at as u64).unwrap();
    assert_eq!(current.durable_offset, end);
    let mut tried = 0;
    for watermark in 25..end {
        if starts.contains(&watermark) {
            continue;
        }
        // The events that start below it, at least one: a record with a watermark past
        // 24 counts at least one event, and at most one per 16 bytes.
        let below = starts.iter().filter(|&&s| s < watermark).count() as u64;
        let count = below.min((watermark - 24) / 16);
        if count == 0 {
            continue;
        }
        for sequence in [current.sequence + 1, current.sequence] {
            let lie = Trailer {
                sequence,
                durable_offset: watermark,
                durable_count: count,
                durable_last_timestamp: Some((count as i64 - 1) * 10),
                ..current
            };
            let mut bytes = clean.clone();
            let at = trailer_at + Trailer::slot(sequence) as usize * TRAILER_SLOT_LEN as usize;
            bytes[at..at + TRAILER_RECORD_LEN].copy_from_slice(&lie.to_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let case = format!("watermark {watermark}, count {count}, sequence {sequence}");
            match StreamWriter::open(&path).map(drop) {
                Err(Error::Corrupt {
                    watermark: claimed, ..
                }) => assert_eq!(claimed, watermark, "{case}"),
                other => panic!("{case}: {other:?}"),
            }
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "{case}: the file changed"
            );
            let reader = StreamReader::open(&path).unwrap();
            let read: Vec<usize> = reader.iter().map(|e| e.unwrap().payload().len()).collect();
            assert_eq!(read, sizes, "{case}");
            tried += 1;
        }
    }
    assert!(tried > 2000, "{tried} cases");
}

fn assert_damage_handled(image: &Image, outcome: &Outcome, k: usize, case: &str) {
    if image.flushed {
        assert!(
            matches!(&outcome.checked, Err(Error::Corrupt { offset, .. }) if *offset == image.offsets[k]),
            "{case}: {:?}",
            outcome.checked
        );
        assert_eq!(
            outcome.writer.as_ref().ok(),
            Some(&image.events.len()),
            "{case}"
        );
        assert!(outcome.writer_unchanged, "{case}");
    } else {
        assert_eq!(outcome.writer.as_ref().ok(), Some(&k), "{case}");
        assert_eq!(outcome.checked.as_ref().ok(), Some(&k), "{case}");
    }
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

/// A stream of 8 flushed events of 20 bytes each (timestamps 10 to 80), so that its
/// watermark is at 184, with its current trailer record replaced by `change` of it (a
/// valid record, in the next slot); returns the path and the file's bytes.
fn lying_record(
    dir: &Path,
    name: &str,
    change: impl FnOnce(Trailer) -> Trailer,
) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    for i in 1..=8i64 {
        writer
            .append(i * 10, format!("ev{i:02}").as_bytes())
            .unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = trailer_offset(bytes.len() as u64).unwrap() as usize;
    let slot = |bytes: &[u8], k: usize| -> [u8; TRAILER_RECORD_LEN] {
        let from = at + k * TRAILER_SLOT_LEN as usize;
        bytes[from..from + TRAILER_RECORD_LEN].try_into().unwrap()
    };
    let current = decode_trailer([&slot(&bytes, 0), &slot(&bytes, 1)], at as u64).unwrap();
    assert_eq!(current.durable_offset, 184);
    let lie = Trailer {
        sequence: current.sequence + 1,
        ..change(current)
    };
    let from = at + Trailer::slot(lie.sequence) as usize * TRAILER_SLOT_LEN as usize;
    bytes[from..from + TRAILER_RECORD_LEN].copy_from_slice(&lie.to_bytes());
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Format validity rule 5: the events below the watermark number the record's durable
/// count, the last has its last durable timestamp, and an event ends at the watermark.
/// A record that passes its checksum and its own checks but contradicts the events is
/// found by `verify` (a reader's full check, which reads every event anyway) and by a
/// writer that checks the durable events, each naming the lie with a typed reason; the
/// events themselves still read, and the file is not changed.
#[test]
fn verify_finds_a_trailer_record_that_contradicts_the_events() {
    let dir = scratch();
    type Change = fn(Trailer) -> Trailer;
    let cases: [(&str, Change, u64, Corruption); 5] = [
        (
            "one durable event too few",
            |t| Trailer {
                durable_count: 7,
                ..t
            },
            184,
            Corruption::DurableCountMismatch {
                trailer: 7,
                scanned: 8,
            },
        ),
        (
            "one durable event too many",
            |t| Trailer {
                durable_count: 9,
                ..t
            },
            184,
            Corruption::DurableCountMismatch {
                trailer: 9,
                scanned: 8,
            },
        ),
        (
            "the last durable timestamp of another event",
            |t| Trailer {
                durable_last_timestamp: Some(70),
                ..t
            },
            184,
            Corruption::DurableTimestampMismatch {
                trailer: 70,
                found: 80,
            },
        ),
        (
            "the watermark inside the last event",
            |t| Trailer {
                durable_offset: 174,
                durable_count: 7,
                durable_last_timestamp: Some(70),
                ..t
            },
            164,
            Corruption::WatermarkInsideEvent { end: 184 },
        ),
        (
            "the watermark inside the first event",
            |t| Trailer {
                durable_offset: 40,
                durable_count: 1,
                durable_last_timestamp: Some(10),
                ..t
            },
            24,
            Corruption::WatermarkInsideEvent { end: 44 },
        ),
    ];
    for (k, (case, change, offset, reason)) in cases.into_iter().enumerate() {
        let (path, bytes) = lying_record(dir.path(), &format!("lie{k}.evs"), change);
        let reader = StreamReader::open(&path).unwrap();
        let verification = reader.verify().unwrap();
        assert!(!verification.is_ok(), "{case}");
        assert_eq!(
            verification.damage,
            Some((offset, reason.clone())),
            "{case}"
        );
        assert_eq!(verification.events, 8, "{case}: every event still reads");
        assert_eq!(reader.iter().filter(|e| e.is_ok()).count(), 8, "{case}");
        drop(reader);
        let options = WriterOptions::default().check_durable(true);
        match StreamWriter::open_with(&path, options) {
            Err(Error::Corrupt {
                offset: at,
                reason: why,
                ..
            }) => {
                assert_eq!((at, why), (offset, reason.clone()), "{case}");
            }
            other => panic!("{case}: {other:?}"),
        }
        assert!(std::fs::read(&path).unwrap() == bytes, "{case}: changed");
    }
}

/// The message of each lie names its own cause: a timestamp mismatch is not reported
/// as a count that does not match (it used to read "counts 8 ... but 8 were found").
#[test]
fn each_lie_of_a_trailer_record_names_its_cause() {
    let count = Corruption::DurableCountMismatch {
        trailer: 7,
        scanned: 8,
    }
    .to_string();
    assert!(
        count.contains("counts 7") && count.contains("8 were found"),
        "{count}"
    );
    let timestamp = Corruption::DurableTimestampMismatch {
        trailer: 70,
        found: 80,
    }
    .to_string();
    assert!(
        timestamp.contains("timestamp is 70") && timestamp.contains("stamped 80"),
        "{timestamp}"
    );
    assert!(!timestamp.contains("counts"), "{timestamp}");
    let inside = Corruption::WatermarkInsideEvent { end: 184 }.to_string();
    assert!(
        inside.contains("184") && inside.contains("watermark"),
        "{inside}"
    );
}

/// A flushed stream of two events whose trailer slots are rewritten by `edit` (given
/// the file's bytes and the trailer's offset); returns the path and the bytes.
fn edited_trailer(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut [u8], usize),
) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join(name);
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    writer.append(1, b"one").unwrap();
    writer.append(2, b"two").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = trailer_offset(bytes.len() as u64).unwrap() as usize;
    edit(&mut bytes, at);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Both a reader's and a writer's open refuse `path` as a damaged trailer with
/// `problem`, and the file stays byte for byte as it was.
fn assert_refused(path: &Path, bytes: &[u8], problem: &evstream::format::TrailerProblem) {
    let reader = StreamReader::open(path).map(drop);
    let writer = StreamWriter::open(path).map(drop);
    for result in [reader, writer] {
        match result {
            Err(Error::DamagedTrailer { problem: found, .. }) => assert_eq!(&found, problem),
            other => panic!("{other:?}"),
        }
    }
    assert!(std::fs::read(path).unwrap() == bytes, "the file changed");
}

/// A record counts only in the slot its sequence names (`sequence % 2`): a copy of the
/// current record in the other slot is ignored, and a stream whose only record sits in
/// the wrong slot is refused. A writer that took it would store its next record over
/// it, with no other record left should that write tear.
#[test]
fn a_trailer_record_in_the_wrong_slot_is_not_used() {
    use evstream::format::TrailerProblem;
    let dir = scratch();
    let slot = |at: usize, k: usize| at + k * TRAILER_SLOT_LEN as usize;
    let current_slot = |bytes: &[u8], at: usize| -> usize {
        let record = |k: usize| -> [u8; TRAILER_RECORD_LEN] {
            bytes[slot(at, k)..slot(at, k) + TRAILER_RECORD_LEN]
                .try_into()
                .unwrap()
        };
        let current = decode_trailer([&record(0), &record(1)], at as u64).unwrap();
        Trailer::slot(current.sequence) as usize
    };

    // The current record copied over the other slot: two records with one sequence.
    let (path, _) = edited_trailer(dir.path(), "twice.evs", |bytes, at| {
        let k = current_slot(bytes, at);
        let record = bytes[slot(at, k)..slot(at, k) + TRAILER_RECORD_LEN].to_vec();
        let other = slot(at, 1 - k);
        bytes[other..other + TRAILER_RECORD_LEN].copy_from_slice(&record);
    });
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.verify().unwrap().is_ok());
    drop(reader);
    let mut writer = StreamWriter::open(&path).unwrap();
    writer.append(3, b"three").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(StreamReader::open(&path).unwrap().iter().count(), 3);

    // The current record moved to the other slot, its own slot zeroed.
    let mut sequence = 0;
    let mut moved_to = 0;
    let (path, bytes) = edited_trailer(dir.path(), "moved.evs", |bytes, at| {
        let k = current_slot(bytes, at);
        let from = slot(at, k);
        let record = bytes[from..from + TRAILER_SLOT_LEN as usize].to_vec();
        sequence = u64::from_le_bytes(record[16..24].try_into().unwrap());
        moved_to = 1 - k as u64;
        bytes[from..from + TRAILER_SLOT_LEN as usize].fill(0);
        let to = slot(at, 1 - k);
        bytes[to..to + TRAILER_RECORD_LEN].copy_from_slice(&record[..TRAILER_RECORD_LEN]);
    });
    assert_refused(
        &path,
        &bytes,
        &TrailerProblem::WrongSlot {
            sequence,
            slot: moved_to,
        },
    );
}

/// Flag bits other than bit 0 (sealed) are zero: a record that sets one, with a valid
/// checksum, means something this version cannot know, and the stream is refused.
#[test]
fn a_trailer_record_with_an_undefined_flag_is_refused() {
    let dir = scratch();
    let (path, bytes) = edited_trailer(dir.path(), "flags.evs", |bytes, at| {
        for k in 0..2 {
            let from = at + k * TRAILER_SLOT_LEN as usize;
            if bytes[from..from + 8] != *b"EVSTREAM" {
                continue;
            }
            bytes[from + 12] |= 0x80;
            let crc = crc32fast::hash(&bytes[from..from + 64]);
            bytes[from + 64..from + 68].copy_from_slice(&crc.to_le_bytes());
        }
    });
    assert_refused(
        &path,
        &bytes,
        &evstream::format::TrailerProblem::Inconsistent,
    );
}
