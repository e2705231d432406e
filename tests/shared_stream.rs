//! Many threads appending to one stream file through a `SharedStreamWriter`: what each
//! append and each flush promises, checked by reading the real file back; and writers
//! opened separately, as processes open them, taking turns.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::Path;

mod shared_support;

use evstream::{Error, SharedStreamWriter, StreamReader, StreamWriter};
use shared_support::{
    THREADS, assert_batches_whole, assert_each_threads_order, decode, payload, race,
};

/// Every event of the stream: offset, timestamp, payload, verified.
fn read_all(path: &Path) -> Vec<(u64, i64, Vec<u8>)> {
    StreamReader::open(path)
        .unwrap()
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.offset(), e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

#[test]
fn every_append_is_in_the_stream_once_at_its_offset_in_each_threads_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 4 << 20).unwrap();
    let n = 3000;
    let returned = race(&stream, |t, stream| {
        (0..n)
            .map(|i| stream.append(7, &payload(t, i)).unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(stream.event_count(), THREADS * n);
    drop(stream);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * n);
    assert!(events.iter().all(|(_, ts, _)| *ts == 7));
    let counts = assert_each_threads_order(events.iter().map(|(_, _, p)| p.as_slice()));
    assert_eq!(counts, vec![n; THREADS as usize]);
    // The offset each append returned is where its event is.
    let at: HashMap<u64, (u64, u64)> = events.iter().map(|(o, _, p)| (*o, decode(p))).collect();
    for (t, offsets) in returned.iter().enumerate() {
        for (i, offset) in offsets.iter().enumerate() {
            assert_eq!(at[offset], (t as u64, i as u64), "event at {offset}");
        }
    }
}

#[test]
fn append_now_timestamps_never_decrease_in_stream_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 4 << 20).unwrap();
    let n = 3000;
    let returned = race(&stream, |t, stream| {
        (0..n)
            .map(|i| stream.append_now(&payload(t, i)).unwrap())
            .collect::<Vec<_>>()
    });
    drop(stream);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * n);
    for pair in events.windows(2) {
        assert!(
            pair[0].1 <= pair[1].1,
            "timestamps in stream order: {} then {}",
            pair[0].1,
            pair[1].1
        );
    }
    let at: HashMap<u64, i64> = events.iter().map(|(o, ts, _)| (*o, *ts)).collect();
    for (offset, ts) in returned.iter().flatten() {
        assert_eq!(at[offset], *ts, "the timestamp returned is the event's");
    }
}

#[test]
fn flush_covers_every_append_that_returned_before_it_on_any_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 4 << 20).unwrap();
    let rounds = 150;
    race(&stream, |t, stream| {
        for i in 0..rounds {
            let p = payload(t, i);
            let offset = stream.append(0, &p).unwrap();
            // Other threads' flushes are under way at any moment: this one must still
            // cover this append, which returned before it began.
            stream.flush().unwrap();
            let durable = StreamReader::open(stream.path()).unwrap().durable_offset();
            let end = offset + 16 + p.len() as u64;
            assert!(
                durable >= end,
                "thread {t} round {i}: flushed to {durable}, event ends at {end}"
            );
        }
    });
}

#[test]
fn a_full_stream_refuses_every_thread_and_writes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 64 << 10).unwrap();
    // Each thread appends until the stream refuses it, then tries once more, and a
    // batch: each refusal is `Full`.
    let appended = race(&stream, |t, stream| {
        let mut i = 0;
        loop {
            match stream.append(1, &payload(t, i)) {
                Ok(_) => i += 1,
                Err(Error::Full { .. }) => break,
                Err(e) => panic!("thread {t}: {e}"),
            }
        }
        let big = vec![0u8; 4096];
        assert!(matches!(stream.append(1, &big), Err(Error::Full { .. })));
        let batch = [(1, big.as_slice()), (1, b"".as_slice())];
        assert!(matches!(
            stream.append_batch(&batch),
            Err(Error::Full { .. })
        ));
        i
    });
    let offset = stream.write_offset();
    drop(stream);
    let reader = StreamReader::open(&path).unwrap();
    assert_eq!(
        reader.write_offset(),
        offset,
        "nothing written past the last event"
    );
    let events = read_all(&path);
    let counts = assert_each_threads_order(events.iter().map(|(_, _, p)| p.as_slice()));
    assert_eq!(counts, appended, "every append that returned, and no other");
    let (last, _, p) = events.last().unwrap();
    assert_eq!(last + 16 + p.len() as u64, offset);
    assert!(reader.verify().unwrap().is_ok());
}

#[test]
fn refused_appends_write_nothing_and_a_panicking_fill_wedges_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 1 << 20).unwrap();
    stream.append(100, b"first").unwrap();
    let results = race(&stream, |t, stream| match t {
        0 => {
            let huge = vec![0u8; 2 << 20];
            matches!(stream.append(100, &huge), Err(Error::Full { .. }))
        }
        1 => matches!(stream.append(5, b"too old"), Err(Error::OutOfOrder { .. })),
        2 => {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = stream.append_with(100, 40, |_| panic!("the fill fails"));
            }));
            panicked.is_err()
        }
        _ => (0..500).all(|i| stream.append(100, &payload(3, i)).is_ok()),
    });
    assert_eq!(results, vec![true; THREADS as usize]);
    // Every handle still appends and flushes after the panic.
    stream.append(100, b"last").unwrap();
    stream.flush().unwrap();
    drop(stream);
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
    // Reopened, the stream is as the appends left it: nothing to repair.
    let reopened = StreamWriter::open(&path).unwrap();
    assert!(reopened.recovery().is_clean(), "{:?}", reopened.recovery());
    assert_eq!(reopened.event_count(), 502);
}

#[test]
fn a_batch_is_contiguous_in_the_stream_and_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 4 << 20).unwrap();
    let batches = 200;
    let batch = 10;
    race(&stream, |t, stream| {
        for b in 0..batches {
            let payloads: Vec<Vec<u8>> = (0..batch).map(|k| payload(t, b * batch + k)).collect();
            let events: Vec<(i64, &[u8])> = payloads.iter().map(|p| (9, p.as_slice())).collect();
            stream.append_batch(&events).unwrap();
        }
        // Refused: the second event is older than the first; nothing of it is written.
        let refused = [(10, b"x".as_slice()), (9, b"y".as_slice())];
        assert!(matches!(
            stream.append_batch(&refused),
            Err(Error::OutOfOrder { .. })
        ));
    });
    drop(stream);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * batches * batch);
    assert_batches_whole(events.iter().map(|e| e.2.as_slice()), batch);
}

#[test]
fn a_seal_from_one_thread_stops_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    // Room for the others' appends while the sealing thread waits for its CPU on a busy
    // machine: the seal, not a full stream, is what stops them.
    let stream = SharedStreamWriter::create(&path, 64 << 20).unwrap();
    let appended = race(&stream, |t, stream| {
        let mut i = 0;
        loop {
            if t == 0 && i == 200 {
                stream.seal().unwrap();
            }
            match stream.append(1, &payload(t, i)) {
                Ok(_) => i += 1,
                Err(Error::Sealed { .. }) => return i,
                Err(e) => panic!("thread {t}: {e}"),
            }
        }
    });
    assert!(stream.is_sealed());
    let durable = stream.durable_offset();
    drop(stream);
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.is_sealed());
    assert_eq!(reader.durable_offset(), durable);
    assert_eq!(
        reader.write_offset(),
        durable,
        "the seal covers every event"
    );
    let events = read_all(&path);
    assert_eq!(
        assert_each_threads_order(events.iter().map(|(_, _, p)| p.as_slice())),
        appended
    );
}

#[test]
fn a_shared_writer_keeps_the_stream_to_itself_until_the_last_handle_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::from(StreamWriter::create(&path, 1 << 20).unwrap());
    stream.append(1, b"a").unwrap();
    assert!(matches!(
        StreamWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        SharedStreamWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    let clone = stream.clone();
    let stream = stream.into_writer().unwrap_err();
    drop(clone);
    let mut writer = stream.into_writer().unwrap();
    writer.append(2, b"b").unwrap();
    drop(writer);
    let reopened = SharedStreamWriter::open(&path).unwrap();
    assert_eq!(reopened.event_count(), 2);
    assert!(reopened.recovery().is_clean());
    assert_eq!(reopened.last_timestamp(), Some(2));
}

#[test]
fn shared_writers_take_turns_and_an_exclusive_one_keeps_the_stream_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 1 << 20).unwrap();
    // The turn's files are beside the stream, named from it.
    assert!(dir.path().join("s.evs.turn").is_file());
    assert!(dir.path().join("s.evs.want").is_file());
    stream.append(1, b"a").unwrap();
    // The shared writer has the turn: an exclusive writer is refused.
    assert!(matches!(
        StreamWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    // A second shared writer (as another process opens one) gets the turn once the
    // first is idle, and the first gets it back.
    let other = SharedStreamWriter::open(&path).unwrap();
    other.append(2, b"b").unwrap();
    stream.append(3, b"c").unwrap();
    assert_eq!(other.event_count(), 2, "as it last saw the stream");
    assert_eq!(stream.event_count(), 3);
    drop(other);
    let mut writer = stream.into_writer().unwrap();
    assert!(matches!(
        SharedStreamWriter::open(&path),
        Err(Error::Locked { .. })
    ));
    writer.append(4, b"d").unwrap();
    drop(writer);
    assert_holds_a_to_d(&path);
}

/// Writers opened separately (as by separate processes, each with its own turn files)
/// appending at the same time: every event present, each writer's in its order, with
/// `append_now` timestamps never decreasing across the turns, and a flush by one
/// covering the others' events.
#[test]
fn separately_opened_writers_interleave_by_turns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    drop(SharedStreamWriter::create(&path, 8 << 20).unwrap());
    let n = 3000;
    let start = std::sync::Barrier::new(THREADS as usize);
    let returned: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (path, start) = (&path, &start);
                s.spawn(move || {
                    let stream = SharedStreamWriter::open(path).unwrap();
                    start.wait();
                    (0..n)
                        .map(|i| stream.append_now(&payload(t, i)).unwrap().0)
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let last = SharedStreamWriter::open(&path).unwrap();
    last.flush().unwrap();
    let end = last.write_offset();
    drop(last);
    assert_eq!(
        StreamReader::open(&path).unwrap().durable_offset(),
        end,
        "one flush covers every writer's events"
    );
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * n);
    assert_each_threads_order(events.iter().map(|(_, _, p)| p.as_slice()));
    for pair in events.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "timestamps never decrease");
    }
    let at: HashMap<u64, (u64, u64)> = events.iter().map(|(o, _, p)| (*o, decode(p))).collect();
    for (t, offsets) in returned.iter().enumerate() {
        for (i, offset) in offsets.iter().enumerate() {
            assert_eq!(at[offset], (t as u64, i as u64));
        }
    }
}

#[test]
fn append_batch_now_stamps_a_batch_once_in_the_streams_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let stream = SharedStreamWriter::create(&path, 4 << 20).unwrap();
    let stamped = race(&stream, |t, stream| {
        (0..200)
            .map(|b| {
                let payloads: Vec<Vec<u8>> = (0..5).map(|k| payload(t, b * 5 + k)).collect();
                let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                stream.append_batch_now(&refs).unwrap()
            })
            .collect::<Vec<_>>()
    });
    drop(stream);
    let events = read_all(&path);
    assert_eq!(events.len() as u64, THREADS * 1000);
    for pair in events.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "timestamps never decrease");
    }
    let at: HashMap<u64, i64> = events.iter().map(|(o, ts, _)| (*o, *ts)).collect();
    for chunk in events.chunks(5) {
        let (t, first) = decode(&chunk[0].2);
        for (k, (_, ts, p)) in chunk.iter().enumerate() {
            assert_eq!(
                decode(p),
                (t, first + k as u64),
                "a batch's events together"
            );
            assert_eq!(*ts, chunk[0].1, "one timestamp for the batch");
        }
    }
    for (offset, ts) in stamped.iter().flatten() {
        assert_eq!(at[offset], *ts, "the timestamp returned is the batch's");
    }
}

/// A handover record left by the last shared writer no longer matches once another
/// writer changed the stream: the next shared writer opens it in full and goes on after
/// every event.
#[test]
fn a_record_that_no_longer_matches_the_stream_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let shared = SharedStreamWriter::create(&path, 1 << 20).unwrap();
    shared.append(1, b"shared").unwrap();
    drop(shared);
    let record = std::fs::read(dir.path().join("s.evs.turn")).unwrap();
    assert_eq!(&record[..8], b"evsturs1", "the last holder left its record");
    let mut exclusive = StreamWriter::open(&path).unwrap();
    exclusive.append(2, b"exclusive").unwrap();
    drop(exclusive);
    let shared = SharedStreamWriter::open(&path).unwrap();
    assert_eq!(shared.event_count(), 2);
    assert_eq!(shared.last_timestamp(), Some(2));
    shared.append(3, b"after").unwrap();
    drop(shared);
    let payloads: Vec<Vec<u8>> = read_all(&path).into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(payloads, [&b"shared"[..], b"exclusive", b"after"]);
    assert!(StreamReader::open(&path).unwrap().verify().unwrap().is_ok());
}

/// A shared writer opened to check the flushed events too (`check_durable`, as
/// `evstream append` opens a stream) refuses damage below the durable watermark even
/// when the last holder left a handover record (which vouches only for the events above
/// it), and leaves the file unchanged.
#[test]
fn checking_the_flushed_events_is_not_skipped_for_a_handover_record() {
    use evstream::WriterOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    drop(StreamWriter::create(&path, 1 << 20).unwrap());
    let shared = SharedStreamWriter::open(&path).unwrap();
    for i in 0..10 {
        shared.append(i, &[b'a'; 100]).unwrap();
    }
    shared.flush().unwrap();
    drop(shared);
    let mut turn = path.as_os_str().to_owned();
    turn.push(".turn");
    assert_eq!(&std::fs::read(&turn).unwrap()[..8], b"evsturs1");
    // A payload byte of the second event, below the watermark.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24 + 116 + 16 + 5] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let options = WriterOptions::default().check_durable(true);
    assert!(matches!(
        SharedStreamWriter::open_with(&path, options),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// Writers that name the stream through a symbolic link take turns with those that name
/// it directly: the turn's files are those beside the file itself, so that neither
/// keeps the stream from the other (an append through the other name used to be
/// refused as by a writer keeping the stream to itself), and a writer that keeps it to
/// itself, opened through the link, invalidates the handover record the shared writers
/// left.
#[test]
fn writers_naming_the_stream_through_a_symbolic_link_take_turns_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let link = dir.path().join("current.evs");
    std::os::unix::fs::symlink("s.evs", &link).unwrap();
    let direct = SharedStreamWriter::create(&path, 1 << 20).unwrap();
    direct.append(1, b"a").unwrap();
    // Opened while the direct writer has the turn, as another process opens it.
    let linked = SharedStreamWriter::open(&link).unwrap();
    linked.append(2, b"b").unwrap();
    direct.append(3, b"c").unwrap();
    linked.append(4, b"d").unwrap();
    assert!(!dir.path().join("current.evs.turn").exists());
    drop(direct);
    drop(linked);
    let record = dir.path().join("s.evs.turn");
    assert_eq!(&std::fs::read(&record).unwrap()[..8], b"evsturs1");
    drop(StreamWriter::open(&link).unwrap());
    assert_eq!(
        std::fs::read(&record).unwrap()[..8],
        [0; 8],
        "the record is invalidated by a writer opened through the link"
    );
    assert_holds_a_to_d(&path);
}

/// Asserts that the stream at `path` holds the events `a` to `d` at timestamps 1 to 4,
/// and nothing else.
fn assert_holds_a_to_d(path: &std::path::Path) {
    let events: Vec<(i64, Vec<u8>)> = read_all(path)
        .into_iter()
        .map(|(_, ts, p)| (ts, p))
        .collect();
    let expected: Vec<(i64, Vec<u8>)> = [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
        .into_iter()
        .map(|(ts, p)| (ts, p.as_bytes().to_vec()))
        .collect();
    assert_eq!(events, expected);
}
