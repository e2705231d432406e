//! Opens and reads arbitrary bytes as a stream every way there is, checking what must
//! hold for any input. Shared by the cargo-fuzz target (`fuzz/fuzz_targets/`) and its
//! proptest twin (`tests/fuzz_open.rs`); depends on nothing but `evstream` and `std`.

use std::path::Path;
use std::time::Duration;

use evstream::format::{Trailer, capacity_for_events, trailer_offset};
use evstream::{Error, Prefault, StreamReader, StreamWriter, WriterOptions};

/// `bytes` followed by at least `free` zero bytes, made a version 2 stream file with
/// `trailer` (written to its slot): how the fuzzers reach past the identity check.
pub fn with_trailer(mut bytes: Vec<u8>, free: usize, trailer: Trailer) -> Vec<u8> {
    let capacity = capacity_for_events(bytes.len() as u64 + free as u64).expect("capacity");
    let trailer_at = trailer_offset(capacity).expect("trailer offset");
    bytes.resize(capacity as usize, 0);
    let slot = (trailer_at + Trailer::slot(trailer.sequence) * 512) as usize;
    let record = trailer.to_bytes();
    if let Some(place) = bytes.get_mut(slot..slot + record.len()) {
        place.copy_from_slice(&record);
    }
    bytes
}

/// Writes `data` to `path` and runs every reader and a recovering writer (one that also
/// checks the events below the durable watermark) over it.
///
/// Panics if anything panics inside evstream, or if:
/// - verified iteration, `follow` and `verify` disagree on the intact events;
/// - unverified iteration yields an event past the published write offset;
/// - a reader yields an error other than a typed corruption;
/// - a writer refuses the file (not a stream, or damaged) but changes it;
/// - a writer accepts the file and the result is not fully valid, or a second open
///   would repair anything.
pub fn open_any(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write the input");
    if let Ok(reader) = StreamReader::open(path) {
        let published = reader.write_offset();
        assert!((24..=data.len() as u64).contains(&published));
        let mut verified = 0u64;
        let mut damaged = false;
        for event in reader.iter() {
            match event {
                Ok(e) => {
                    assert!(e.next_offset() <= published);
                    verified += 1;
                }
                Err(Error::Corrupt { offset, .. }) => {
                    assert!(offset < published);
                    damaged = true;
                }
                Err(other) => panic!("iter: {other:?}"),
            }
        }
        for event in reader.iter_unverified() {
            match event {
                Ok(e) => assert!(e.next_offset() <= published),
                Err(Error::Corrupt { .. }) => {}
                Err(other) => panic!("iter_unverified: {other:?}"),
            }
        }
        let verification = reader.verify().expect("verify a snapshot");
        assert_eq!(verification.events, verified);
        // `verify` also checks the trailer record against the events, which iteration
        // does not: it finds every damaged event, and may find a record that lies.
        match &verification.damage {
            None => assert!(!damaged),
            Some((_, reason)) => assert!(damaged || lying_record(reason), "{reason:?}"),
        }
        for t in [i64::MIN, -1, 0, 1, i64::MAX] {
            match reader.seek_time(t) {
                Ok(Some(offset)) => assert!(offset < published),
                Ok(None) | Err(Error::Corrupt { .. }) => {}
                Err(other) => panic!("seek_time: {other:?}"),
            }
        }
        let mut follow = reader.follow(24).expect("follow from the start");
        let mut followed = 0u64;
        loop {
            match follow.next_timeout(Duration::ZERO) {
                Ok(Some(_)) => followed += 1,
                Ok(None) => break,
                Err(Error::Corrupt { .. }) => break,
                Err(other) => panic!("follow: {other:?}"),
            }
        }
        assert_eq!(followed, verified);
    }

    if let Ok(mut reader) = evstream::stdio::EventReader::new(data) {
        let mut payload = Vec::new();
        let mut n = 0usize;
        while let Ok(Some(_)) = reader.read_event(&mut payload) {
            n += 1;
            assert!(n <= data.len() / 16);
        }
    }

    // Checking the durable events too, so that the writer refuses damage anywhere.
    let options = || {
        WriterOptions::default()
            .prefault(Prefault::Off)
            .check_durable(true)
    };
    match StreamWriter::open_with(path, options()) {
        Ok(writer) => {
            let count = writer.event_count();
            drop(writer);
            let reader = StreamReader::open(path).expect("reopen after recovery");
            let verification = reader.verify().expect("verify after recovery");
            assert!(verification.damage.is_none(), "recovery left damage");
            assert_eq!(verification.events, count);
            assert_eq!(reader.header_event_count(), count);
            let again = StreamWriter::open_with(path, options()).expect("second open");
            assert!(again.recovery().is_clean(), "{:?}", again.recovery());
        }
        Err(
            Error::Corrupt { .. }
            | Error::BadHeader { .. }
            | Error::NotAStream { .. }
            | Error::DamagedTrailer { .. },
        ) => {
            let after = std::fs::read(path).expect("read back");
            assert!(after == data, "a refused open changed the file");
        }
        Err(other) => panic!("writer open: {other:?}"),
    }
}

/// Whether `reason` is a trailer record that contradicts the events below its
/// watermark (what `verify` finds beyond damaged events).
pub fn lying_record(reason: &evstream::Corruption) -> bool {
    matches!(
        reason,
        evstream::Corruption::DurableCountMismatch { .. }
            | evstream::Corruption::DurableTimestampMismatch { .. }
            | evstream::Corruption::WatermarkInsideEvent { .. }
    )
}
