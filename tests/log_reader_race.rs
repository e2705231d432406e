//! A reader's calls on a live log whose retention deletes and recycles segments while
//! they run: each lists the segments and then opens some, and a segment retention took
//! in between never turns into an error.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use evstream::{Error, LogOptions, LogReader, LogWriter};

/// Calls of each kind the reader makes while the writer rolls flat out.
const ROUNDS: usize = 3000;

/// `stat`, `iter`, `end`, `seek_time`, `iter_since`, `tail`, `lag` and `verify` on a log
/// of 4 KiB segments keeping two, while a writer thread appends as fast as it can (a
/// roll every few dozen events, each followed by a retention run that deletes the
/// oldest segment or takes it for recycling): every call answers, about the log as it
/// is, never with the error of a segment that vanished under it, and never without the
/// newest segment because the writer renamed it while the directory was listed.
#[test]
fn reader_calls_never_fail_because_retention_took_a_listed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(4096)
        .retain_segments(Some(2));
    let mut log = LogWriter::create(&path, options).unwrap();
    // Rolled a few times before the reader starts: the log keeps a full segment.
    for t in 0..200 {
        log.append(t, &[t as u8; 64]).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut t = 200i64;
            while !stop.load(Ordering::Relaxed) {
                // The writer's promise too: readers listing, verifying and holding
                // segments never make an append fail.
                if let Err(e) = log.append(t, &[t as u8; 64]) {
                    return Err(e.to_string());
                }
                t += 1;
            }
            Ok(log.segment())
        }
    });
    let reader = LogReader::open(&path).unwrap();
    let started = Instant::now();
    let mut rolled_past = 0;
    for round in 0..ROUNDS {
        let stat = reader
            .stat()
            .unwrap_or_else(|e| panic!("stat, round {round}: {e}"));
        assert!(stat.first_segment <= stat.last_segment, "{stat:?}");
        assert_eq!(
            stat.segments,
            stat.last_segment - stat.first_segment + 1,
            "{stat:?}"
        );
        assert_eq!(stat.start.segment(), stat.first_segment, "{stat:?}");
        assert_eq!(stat.end.segment(), stat.last_segment, "{stat:?}");
        // Retention keeps the full segment before the newest: never an empty count.
        assert!(stat.events >= 1, "{stat:?}");
        assert!(
            stat.first_event + stat.events >= stat.first_event,
            "{stat:?}"
        );
        assert!(stat.first_timestamp <= stat.last_timestamp, "{stat:?}");
        rolled_past = rolled_past.max(stat.first_segment);

        let mut events = reader
            .iter()
            .unwrap_or_else(|e| panic!("iter, round {round}: {e}"));
        let first = events
            .try_next()
            .unwrap_or_else(|e| panic!("first event, round {round}: {e}"));
        assert!(first.is_some(), "a log with events iterated from none");

        reader
            .end()
            .unwrap_or_else(|e| panic!("end, round {round}: {e}"));
        let newest = stat.last_timestamp.unwrap();
        // The newest event stat saw, or a later one, is found: a listing made while the
        // writer renames its newest segment into place still lists that segment.
        let at = reader
            .seek_time(newest)
            .unwrap_or_else(|e| panic!("seek_time, round {round}: {e}"));
        assert!(at.is_some(), "round {round}: nothing at or after {newest}");
        let event = reader
            .iter_since(newest)
            .unwrap_or_else(|e| panic!("iter_since, round {round}: {e}"))
            .try_next()
            .unwrap_or_else(|e| panic!("iter_since's event, round {round}: {e}"))
            .expect("an event at or after the newest one");
        assert!(event.timestamp() >= newest, "round {round}: {event:?}");

        let tail = reader
            .tail(3)
            .unwrap_or_else(|e| panic!("tail, round {round}: {e}"));
        assert_eq!(tail.len(), 3, "round {round}");
        assert!(tail.windows(2).all(|w| w[0].timestamp() < w[1].timestamp()));
        assert!(tail[2].timestamp() >= newest, "round {round}: {tail:?}");

        // A position retention took is reported as retired, as documented.
        match reader.lag(stat.start) {
            Ok(_) | Err(Error::Retired { .. }) => {}
            Err(e) => panic!("lag, round {round}: {e}"),
        }
        let verified = reader
            .verify()
            .unwrap_or_else(|e| panic!("verify, round {round}: {e}"));
        assert!(verified.is_ok(), "round {round}: {verified:?}");
        assert!(verified.segments >= 1, "round {round}: {verified:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let last = writer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the writer failed while the reader ran: {e}"));
    // The race was run: the writer rolled and retention took segments meanwhile.
    assert!(
        rolled_past > 5 && last > 5,
        "retention took {rolled_past} segments, the writer reached {last}, in {:?}",
        started.elapsed()
    );
}
