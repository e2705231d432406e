//! Many threads appending to one log through a `SharedLogWriter`: what each append and
//! each flush promises, checked by reading the real files back, with small segments so
//! that the threads race through many rolls.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Barrier;
use std::time::Duration;

mod shared_support;

use evstream::{Error, LogOptions, LogReader, LogWriter, Position, SharedLogWriter, StreamReader};
use shared_support::{
    THREADS, assert_batches_whole, assert_each_threads_order, decode, payload, race,
};

fn small() -> LogOptions {
    LogOptions::default().segment_size(16 << 10)
}

/// Every event of the log: position, timestamp, payload, verified.
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

#[test]
fn every_append_is_in_the_log_once_at_its_position_in_each_threads_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    let n = 3000;
    let returned = race(&log, |t, log| {
        (0..n)
            .map(|i| log.append(7, &payload(t, i)).unwrap())
            .collect::<Vec<_>>()
    });
    drop(log);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * n);
    assert!(
        events[events.len() - 1].0.segment() > 5,
        "rolled many times"
    );
    assert!(events.iter().all(|(_, ts, _)| *ts == 7));
    assert_each_append_where_it_returned(&events, &returned);
}

/// Each event of `events` at a distinct position, each thread's events in log order its
/// appends in its own order, and the position thread `t`'s append `i` returned
/// (`returned[t][i]`) where its event is.
fn assert_each_append_where_it_returned(
    events: &[(Position, i64, Vec<u8>)],
    returned: &[Vec<Position>],
) {
    let at: HashMap<Position, (u64, u64)> =
        events.iter().map(|(pos, _, p)| (*pos, decode(p))).collect();
    assert_eq!(at.len(), events.len(), "positions are distinct");
    assert_each_threads_order(events.iter().map(|(_, _, p)| p.as_slice()));
    for (t, positions) in returned.iter().enumerate() {
        for (i, pos) in positions.iter().enumerate() {
            assert_eq!(at[pos], (t as u64, i as u64), "event at {pos}");
        }
    }
}

/// Threads appending in bursts of hundreds (each burst long enough for the lock to
/// favour its thread, the next thread's burst taking that away), while another thread
/// keeps reading the count of events: every append is in the log once, at the position
/// it returned, in each thread's order, and the count read never goes back.
#[test]
fn appends_in_bursts_beside_a_reading_thread_are_each_in_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    let bursts = 12;
    let burst = 400;
    let done = std::sync::atomic::AtomicU64::new(0);
    let (returned, looks) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut last, mut looks) = (0, 0_u64);
            while done.load(std::sync::atomic::Ordering::Relaxed) < THREADS {
                let count = log.event_count();
                assert!(count >= last, "the count went back from {last} to {count}");
                last = count;
                looks += 1;
            }
            looks
        });
        let returned = race(&log, |t, log| {
            let mut positions = Vec::new();
            for b in 0..bursts {
                for i in 0..burst {
                    positions.push(log.append(7, &payload(t, b * burst + i)).unwrap());
                }
                std::thread::sleep(Duration::from_micros(200 * (t + 1)));
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            positions
        });
        (returned, reader.join().unwrap())
    });
    assert!(looks > 0);
    drop(log);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * bursts * burst);
    assert_each_append_where_it_returned(&events, &returned);
}

#[test]
fn append_now_timestamps_never_decrease_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    let n = 3000;
    let returned = race(&log, |t, log| {
        (0..n)
            .map(|i| log.append_now(&payload(t, i)).unwrap())
            .collect::<Vec<_>>()
    });
    drop(log);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * n);
    for pair in events.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "timestamps in log order: {} then {}",
            pair[0].1,
            pair[1].1
        );
    }
    let at: HashMap<Position, i64> = events.iter().map(|(p, ts, _)| (*p, *ts)).collect();
    for (pos, ts) in returned.iter().flatten() {
        assert_eq!(at[pos], *ts, "the timestamp returned is the event's");
    }
}

#[test]
fn flush_covers_every_append_that_returned_before_it_on_any_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, LogOptions::default().segment_size(1 << 20)).unwrap();
    let rounds = 150;
    race(&log, |t, log| {
        for i in 0..rounds {
            let p = payload(t, i);
            let pos = log.append(0, &p).unwrap();
            // Other threads' flushes are under way at any moment: this one must still
            // cover this append, which returned before it began.
            log.flush().unwrap();
            let segment = LogReader::open(log.dir())
                .unwrap()
                .segment_files()
                .unwrap()
                .into_iter()
                .find(|(seq, _)| *seq == pos.segment())
                .unwrap()
                .1;
            let durable = StreamReader::open(&segment).unwrap().durable_offset();
            let end = pos.offset() + 16 + p.len() as u64;
            assert!(
                durable >= end,
                "thread {t} round {i}: flushed to {durable}, event ends at {end}"
            );
        }
    });
}

#[test]
fn refused_appends_write_nothing_and_a_panicking_fill_wedges_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    log.append(100, b"first").unwrap();
    let results = race(&log, |t, log| match t {
        0 => {
            let huge = vec![0u8; 32 << 10];
            matches!(log.append(100, &huge), Err(Error::EventTooLarge { .. }))
        }
        1 => matches!(log.append(5, b"too old"), Err(Error::OutOfOrder { .. })),
        2 => {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = log.append_with(100, 40, |_| panic!("the fill fails"));
            }));
            panicked.is_err()
        }
        _ => (0..500).all(|i| log.append(100, &payload(3, i)).is_ok()),
    });
    assert_eq!(results, vec![true; THREADS as usize]);
    // The handle still appends after the panic.
    log.append(100, b"last").unwrap();
    drop(log);
    let events = read_all(&path);
    assert_eq!(
        events.len(),
        502,
        "first, 500 of thread 3, last: nothing else"
    );
    assert_eq!(events[0].2, b"first");
    assert_eq!(events[501].2, b"last");
    for (k, (_, _, p)) in events[1..501].iter().enumerate() {
        assert_eq!(decode(p), (3, k as u64));
    }
}

#[test]
fn a_batch_is_contiguous_in_the_log_and_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    let batches = 200;
    let batch = 10;
    race(&log, |t, log| {
        for b in 0..batches {
            let payloads: Vec<Vec<u8>> = (0..batch).map(|k| payload(t, b * batch + k)).collect();
            let events: Vec<(i64, &[u8])> = payloads.iter().map(|p| (9, p.as_slice())).collect();
            log.append_batch(&events).unwrap();
        }
        // Refused: the second event is older than the first; nothing of it is written.
        let refused = [(10, b"x".as_slice()), (9, b"y".as_slice())];
        assert!(matches!(
            log.append_batch(&refused),
            Err(Error::OutOfOrder { .. })
        ));
    });
    drop(log);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * batches * batch);
    assert_batches_whole(events.iter().map(|e| e.2.as_slice()), batch);
}

#[test]
fn shared_writers_take_turns_and_an_exclusive_one_keeps_the_log_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = SharedLogWriter::create(&path, small()).unwrap();
    log.append(1, b"a").unwrap();
    // The shared writer has the turn: an exclusive writer is refused.
    assert!(matches!(LogWriter::open(&path), Err(Error::Locked { .. })));
    // A second shared writer (as another process opens one) gets the turn once the
    // first is idle, and the first gets it back.
    let other = SharedLogWriter::open(&path).unwrap();
    other.append(2, b"b").unwrap();
    log.append(3, b"c").unwrap();
    assert_eq!(other.event_count(), 2, "as it last saw the log");
    assert_eq!(log.event_count(), 3);
    drop(other);
    let clone = log.clone();
    assert!(clone.into_writer().is_err(), "another handle exists");
    let mut writer = log.into_writer().unwrap();
    assert!(matches!(
        SharedLogWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    writer.append(4, b"d").unwrap();
    drop(writer);
    // Made from a LogWriter, a shared writer keeps the log to itself too.
    let exclusive = SharedLogWriter::from(LogWriter::open(&path).unwrap());
    assert!(matches!(
        SharedLogWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    exclusive.append(5, b"e").unwrap();
    drop(exclusive);
    let events: Vec<(i64, Vec<u8>)> = read_all(&path)
        .into_iter()
        .map(|(_, ts, p)| (ts, p))
        .collect();
    let expected: Vec<(i64, Vec<u8>)> = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
        .into_iter()
        .map(|(ts, p)| (ts, p.as_bytes().to_vec()))
        .collect();
    assert_eq!(events, expected);
}

/// Writers opened separately (as by separate processes, each with its own turn files)
/// appending at the same time: every event present, each writer's in its order, with
/// `append_now` timestamps never decreasing across the turns.
#[test]
fn separately_opened_writers_interleave_by_turns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(SharedLogWriter::create(&path, small()).unwrap());
    let n = 3000;
    let start = Barrier::new(3);
    let returned: Vec<Vec<Position>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                let (path, start) = (&path, &start);
                s.spawn(move || {
                    let log = SharedLogWriter::open(path).unwrap();
                    start.wait();
                    (0..n)
                        .map(|i| log.append_now(&payload(t, i)).unwrap().0)
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let events = read_all(&path);
    assert_eq!(events.len() as u64, 3 * n);
    let mut next = [0u64; 3];
    for (_, _, p) in &events {
        let (t, i) = decode(p);
        assert_eq!(i, next[t as usize], "writer {t}'s events in its order");
        next[t as usize] += 1;
    }
    for pair in events.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "timestamps never decrease");
    }
    let at: HashMap<Position, (u64, u64)> =
        events.iter().map(|(pos, _, p)| (*pos, decode(p))).collect();
    for (t, positions) in returned.iter().enumerate() {
        for (i, pos) in positions.iter().enumerate() {
            assert_eq!(at[pos], (t as u64, i as u64));
        }
    }
}

/// The turn comes to a waiting writer soon, whether the holder is idle (handed over at
/// the keeper's next look, a millisecond) or appending flat out (after its 40 ms turn):
/// bounded here generously for a loaded machine, 1 s.
#[test]
fn a_waiting_writer_gets_the_turn_from_an_idle_or_a_busy_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let holder = SharedLogWriter::create(&path, small()).unwrap();
    holder.append(1, b"idle now").unwrap();
    let asked = std::time::Instant::now();
    let other = SharedLogWriter::open(&path).unwrap();
    let idle = asked.elapsed();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let busy = std::thread::scope(|s| {
        let appender = s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                holder.append_now(b"busy").unwrap();
                n += 1;
            }
            n
        });
        // Let the holder take the turn back and keep it busy.
        while holder.event_count() < 1000 {
            std::thread::yield_now();
        }
        let asked = std::time::Instant::now();
        other.append_now(b"got in").unwrap();
        let busy = asked.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(appender.join().unwrap() > 0);
        busy
    });
    assert!(
        idle < Duration::from_secs(1),
        "from an idle holder: {idle:?}"
    );
    assert!(
        busy < Duration::from_secs(1),
        "from a busy holder: {busy:?}"
    );
    println!("turn from an idle holder in {idle:?}, from a busy one in {busy:?}");
}

/// Threads of one process that each open (or create) the same log at once, as separate
/// parts of a program may: one creates it, every other opens it, and every append is
/// there, as between processes. (The settings file's temporary name was the process's
/// alone, so two threads creating the log at once removed each other's: `Io` errors,
/// "cannot rename into place".)
#[test]
fn threads_opening_or_creating_one_log_at_once_all_get_it() {
    for round in 0..100 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let start = Barrier::new(4);
        let failed: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (&path, &start);
                    s.spawn(move || -> evstream::Result<Position> {
                        start.wait();
                        SharedLogWriter::open_or_create(path, small())?.append(1, b"event")
                    })
                })
                .collect();
            threads
                .into_iter()
                .enumerate()
                .filter_map(|(t, h)| h.join().unwrap().err().map(|e| format!("thread {t}: {e}")))
                .collect()
        });
        assert!(failed.is_empty(), "round {round}: {failed:?}");
        assert_eq!(read_all(&path).len(), 4, "round {round}");
    }
}

/// A flush that cannot take the turn, because a writer that keeps the log to itself has
/// it, fails with `Locked` for every thread that needed it: nothing failed to reach the
/// disk, the writer is not poisoned, and once the log is free again the same handle
/// appends and flushes. (The threads that shared the first one's flush got `Poisoned`,
/// "the writer accepts no more appends", which was not so.)
#[test]
fn a_flush_that_cannot_take_the_turn_is_locked_for_every_thread_not_poisoned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let shared = SharedLogWriter::create(&path, small()).unwrap();
    shared.append(1, b"before").unwrap();
    // Another part of the program takes the log to itself (the idle handle gives it the
    // turn).
    let own = SharedLogWriter::open(&path).unwrap().into_writer().unwrap();
    let results = race(&shared, |_, log| log.flush());
    for (t, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(Error::Locked { .. })),
            "thread {t}'s flush: {result:?}"
        );
    }
    drop(own);
    shared.append(2, b"after").unwrap();
    shared.flush().unwrap();
    assert_eq!(read_all(&path).len(), 2);
}
