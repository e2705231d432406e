//! Writer and reader behaviour on real files: round trips, limits, ordering, locking,
//! and readers that watch a writer append.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use evstream::{
    Error, Prefault, StreamReader, StreamWriter, WriterOptions,
    format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN},
};

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    (dir, path)
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn read_all(path: &Path) -> Vec<(u64, i64, Vec<u8>)> {
    let reader = StreamReader::open(path).unwrap();
    reader
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.offset(), e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

#[test]
fn round_trip_over_payload_sizes() {
    let sizes = [0usize, 1, 15, 16, 17, 4095, 4096, 4097, 1 << 20];
    for prefault in [Prefault::Off, Prefault::Inline, Prefault::Background] {
        let (_dir, path) = temp();
        let opts = WriterOptions::default().prefault(prefault);
        let mut writer = StreamWriter::create_with(&path, 4 << 20, opts).unwrap();
        let mut expected = Vec::new();
        let mut offset = STREAM_HEADER_LEN;
        for (i, &len) in sizes.iter().enumerate() {
            let data = payload(len, i as u8);
            let at = writer.append(i as i64 * 10, &data).unwrap();
            assert_eq!(at, offset);
            offset += EVENT_HEADER_LEN + len as u64;
            expected.push((at, i as i64 * 10, data));
        }
        assert_eq!(writer.write_offset(), offset);
        assert_eq!(writer.event_count(), sizes.len() as u64);
        writer.flush().unwrap();
        assert_eq!(read_all(&path), expected);

        // The bytes on disk are exactly what the format says.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4 << 20);
        assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), offset);
        assert_eq!(
            u64::from_le_bytes(bytes[8..16].try_into().unwrap()),
            sizes.len() as u64
        );
        let first = &bytes[24..40];
        assert_eq!(i64::from_le_bytes(first[0..8].try_into().unwrap()), 0);
        assert_eq!(u32::from_le_bytes(first[8..12].try_into().unwrap()), 0);
        assert_eq!(
            u32::from_le_bytes(first[12..16].try_into().unwrap()),
            crc32fast::hash(&bytes[24..36])
        );
    }
}

#[test]
fn huge_pages_round_trip_flush_and_reopen() {
    // 12 MiB spans several 2 MiB folios past the first few megabytes, where the kernel
    // hands out huge folios; flushing after single events there writes back whole folios.
    let (_dir, path) = temp();
    let capacity = 12 << 20;
    let mut expected = Vec::new();
    let mut ts = 0i64;
    for round in 0..2u8 {
        let opts = WriterOptions::default().huge_pages(true);
        let mut writer = if round == 0 {
            StreamWriter::create_with(&path, capacity, opts).unwrap()
        } else {
            let w = StreamWriter::open_with(&path, opts).unwrap();
            assert!(w.recovery().is_clean(), "{:?}", w.recovery());
            w
        };
        for i in 0..2_500u32 {
            let data = payload(1000 + (i as usize % 700), round.wrapping_add(i as u8));
            let at = writer.append(ts, &data).unwrap();
            expected.push((at, ts, data));
            ts += 1;
            if i % 97 == 0 {
                writer.flush().unwrap();
                assert_eq!(writer.synced_offset(), writer.write_offset());
            }
        }
        writer.flush().unwrap();
    }
    assert!(expected.last().unwrap().0 > 4 << 20);
    assert_eq!(read_all(&path), expected);
    let verification = StreamReader::open(&path).unwrap().verify().unwrap();
    assert!(verification.is_ok());
    assert_eq!(verification.events, expected.len() as u64);
}

#[test]
fn an_event_that_fills_the_capacity_exactly_fits() {
    let (_dir, path) = temp();
    // The event area of a 2 KiB stream ends at the trailer, at 1024.
    let capacity = 2048;
    assert_eq!(
        evstream::format::trailer_offset(capacity),
        Some(24 + 16 + 100 + 16 + 868)
    );
    let mut writer = StreamWriter::create(&path, capacity).unwrap();
    writer.append(1, &payload(100, 1)).unwrap();
    writer.append(2, &payload(868, 2)).unwrap();
    assert_eq!(writer.available(), 0);
    assert!(matches!(
        writer.append(3, b""),
        Err(Error::Full {
            needed: 16,
            available: 0
        })
    ));
    drop(writer);
    let events = read_all(&path);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].2, payload(868, 2));
}

#[test]
fn full_leaves_the_stream_intact_and_usable() {
    let (_dir, path) = temp();
    // The smallest stream: events in 24..512, the trailer after.
    let mut writer = StreamWriter::create(&path, 1536).unwrap();
    writer.append(1, &[7; 100]).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = writer.append(2, &[8; 400]).unwrap_err();
    assert!(matches!(
        err,
        Error::Full {
            needed: 416,
            available: 372
        }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A smaller event still fits, and the refused one did not move the clock.
    writer.append(1, &[9; 356]).unwrap();
    assert_eq!(writer.available(), 0);
    drop(writer);
    assert_eq!(read_all(&path).len(), 2);
}

#[test]
fn capacity_and_existing_files_are_checked() {
    let (_dir, path) = temp();
    assert!(matches!(
        StreamWriter::create(&path, 1535),
        Err(Error::BadCapacity {
            capacity: 1535,
            minimum: 1536,
            ..
        })
    ));
    assert!(!path.exists(), "a refused create leaves no file");
    let mut w = StreamWriter::create(&path, 1536).unwrap();
    w.append(5, b"").unwrap();
    drop(w);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        StreamWriter::create(&path, 4096),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // No temporary files are left in the directory.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("s.evs")]);
}

#[test]
fn create_removes_temporary_files_of_dead_creators_only() {
    let (dir, path) = temp();
    // The id of a process that has exited (and been reaped), and of one that runs: ours.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let alive = std::process::id();
    let abandoned = dir
        .path()
        .join(format!(".s.evs.{gone}.1700000000000000000.tmp"));
    let in_progress = dir
        .path()
        .join(format!(".s.evs.{gone}.1700000000000000001.tmp"));
    let unlocked_but_alive = dir
        .path()
        .join(format!(".s.evs.{alive}.1700000000000000003.tmp"));
    std::fs::write(&unlocked_but_alive, b"partial").unwrap();
    let other_stream = dir.path().join(".s.evs.old.4244.1700000000000000002.tmp");
    for p in [&abandoned, &in_progress, &other_stream] {
        std::fs::write(p, b"partial").unwrap();
    }
    // A live creator holds the lock on its temporary file.
    let held = std::fs::File::open(&in_progress).unwrap();
    held.try_lock().unwrap();
    let writer = StreamWriter::create(&path, 4096).unwrap();
    assert!(!abandoned.exists());
    assert!(in_progress.exists());
    assert!(other_stream.exists());
    // A live creator that has not taken its lock yet keeps its temporary file.
    assert!(unlocked_but_alive.exists());
    drop((writer, held));
}

#[test]
fn reopen_and_continue() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    let start = writer.start_timestamp();
    writer.append(10, b"a").unwrap();
    writer.append(20, b"bb").unwrap();
    drop(writer);

    let mut writer = StreamWriter::open(&path).unwrap();
    assert!(writer.recovery().is_clean());
    assert_eq!(writer.event_count(), 2);
    assert_eq!(writer.last_timestamp(), Some(20));
    assert_eq!(writer.start_timestamp(), start);
    assert!(matches!(
        writer.append(19, b"late"),
        Err(Error::OutOfOrder {
            previous: 20,
            got: 19
        })
    ));
    writer.append(20, b"same time is fine").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let events = read_all(&path);
    assert_eq!(
        events.iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![10, 20, 20]
    );
}

#[test]
fn append_now_never_goes_backwards() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    let future = i64::MAX - 5;
    writer.append(future, b"from the future").unwrap();
    let (_, ts) = writer.append_now(b"now").unwrap();
    assert_eq!(ts, future);
    let (_dir2, path2) = temp();
    let mut fresh = StreamWriter::create(&path2, 1 << 16).unwrap();
    let (_, a) = fresh.append_now(b"1").unwrap();
    let (_, b) = fresh.append_now(b"2").unwrap();
    assert!(b >= a);
    assert!(a >= fresh.start_timestamp());
}

#[test]
fn append_with_serializes_in_place() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    let at = writer
        .append_with(7, 5, |buf| buf.copy_from_slice(b"hello"))
        .unwrap();
    writer
        .append_with(8, 0, |buf| assert!(buf.is_empty()))
        .unwrap();
    assert!(matches!(
        writer.append_with(9, 1 << 16, |_| panic!("must not run when full")),
        Err(Error::Full { .. })
    ));
    assert!(matches!(
        writer.append_with(1, 1, |_| panic!("must not run out of order")),
        Err(Error::OutOfOrder { .. })
    ));
    drop(writer);
    let events = read_all(&path);
    assert_eq!(events[0], (at, 7, b"hello".to_vec()));
    assert_eq!(events[1].2, b"");
}

#[test]
fn a_panicking_fill_publishes_nothing() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    writer.append(1, b"kept").unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer.append_with(2, 4, |_| panic!("producer failed"))
    }));
    assert!(result.is_err());
    assert_eq!(writer.event_count(), 1);
    writer.append(3, b"next").unwrap();
    drop(writer);
    let events = read_all(&path);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].2, b"next");
    assert!(StreamWriter::open(&path).unwrap().recovery().is_clean());
}

#[test]
fn second_writer_is_locked_out_until_the_first_drops() {
    let (_dir, path) = temp();
    let writer = StreamWriter::create(&path, 4096).unwrap();
    match StreamWriter::open(&path) {
        Err(Error::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.writer_active().unwrap());
    drop(writer);
    assert!(!reader.writer_active().unwrap());
    let _again = StreamWriter::open(&path).unwrap();
}

#[test]
fn reader_in_another_thread_sees_events_as_published() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 8 << 20).unwrap();
    let reader = Arc::new(StreamReader::open(&path).unwrap());
    const N: u64 = 20_000;
    let handle = {
        let reader = Arc::clone(&reader);
        std::thread::spawn(move || {
            let mut follow = reader.follow(STREAM_HEADER_LEN).unwrap();
            for i in 0..N {
                let event = follow
                    .next_timeout(Duration::from_secs(10))
                    .unwrap()
                    .expect("event within 10 s");
                assert_eq!(event.timestamp(), i as i64);
                assert_eq!(event.payload(), payload((i % 300) as usize, i as u8));
            }
            // Nothing beyond what was written.
            assert!(follow.try_next().unwrap().is_none());
        })
    };
    for i in 0..N {
        writer
            .append(i as i64, &payload((i % 300) as usize, i as u8))
            .unwrap();
        if i % 1000 == 0 {
            std::thread::yield_now();
        }
    }
    handle.join().unwrap();
}

#[test]
fn snapshot_refresh_and_resume() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    writer.append(1, b"one").unwrap();
    let mut reader = StreamReader::open(&path).unwrap();
    writer.append(2, b"two").unwrap();
    assert_eq!(reader.iter().count(), 1, "a snapshot stops at open");
    let resume = reader.iter().last().unwrap().unwrap().next_offset();
    assert_eq!(reader.refresh().unwrap(), writer.write_offset());
    let rest: Vec<_> = reader
        .iter_from(resume)
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(rest, vec![b"two".to_vec()]);
    assert!(matches!(
        reader.iter_from(10),
        Err(Error::OffsetOutOfRange { offset: 10, .. })
    ));
    assert!(matches!(
        reader.iter_from(writer.write_offset() + 1),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // An offset inside an event is caught by the checksum, not trusted.
    let mut inside = reader.iter_from(STREAM_HEADER_LEN + 1).unwrap();
    assert!(matches!(
        inside.next(),
        Some(Err(Error::Corrupt { offset: 25, .. }))
    ));
    assert!(inside.next().is_none());
}

#[test]
fn seek_by_time_finds_the_first_event_at_or_after() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 16 << 20).unwrap();
    // 50,000 events, timestamps 0, 0, 2, 2, 4, 4, ... with 100-byte payloads,
    // spanning many index strides.
    let mut offsets = Vec::new();
    for i in 0..50_000i64 {
        offsets.push(writer.append((i / 2) * 2, &[i as u8; 100]).unwrap());
    }
    let reader = StreamReader::open(&path).unwrap();
    for probe in [-5i64, 0, 1, 2, 3, 777, 12_345, 49_998, 49_999] {
        let expect = offsets.get(((probe.max(0) + 1) / 2 * 2) as usize).copied();
        assert_eq!(reader.seek_time(probe).unwrap(), expect, "probe {probe}");
    }
    // Out of order probes use the index built so far.
    for probe in [40_000i64, 10, 30_001, 2] {
        let expect = offsets[((probe + 1) / 2 * 2) as usize];
        assert_eq!(reader.seek_time(probe).unwrap(), Some(expect));
    }
    assert_eq!(reader.seek_time(50_000).unwrap(), None);
    let since: Vec<i64> = reader
        .iter_since(49_996)
        .unwrap()
        .map(|e| e.unwrap().timestamp())
        .collect();
    assert_eq!(since, vec![49_996, 49_996, 49_998, 49_998]);
}

#[test]
fn unverified_iteration_skips_only_the_checksum() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    writer.append(1, b"abc").unwrap();
    writer.append(2, b"def").unwrap();
    drop(writer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[24 + 16] ^= 0xff; // first payload byte
    std::fs::write(&path, &bytes).unwrap();
    let reader = StreamReader::open(&path).unwrap();
    let verified: Vec<_> = reader.iter().collect();
    assert_eq!(verified.len(), 1);
    assert!(matches!(
        verified[0],
        Err(Error::Corrupt { offset: 24, .. })
    ));
    let unverified: Vec<_> = reader.iter_unverified().map(|e| e.unwrap()).collect();
    assert_eq!(unverified.len(), 2);
    assert_eq!(unverified[0].payload(), &[b'a' ^ 0xff, b'b', b'c']);
    let check = reader.verify().unwrap();
    assert!(!check.is_ok());
    assert_eq!(check.events, 0);
    assert_eq!(check.damage.as_ref().map(|d| d.0), Some(24));
}

#[test]
fn verify_reports_counts_and_timestamps() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    for i in 0..1000 {
        writer.append(100 + i, &payload(i as usize, 3)).unwrap();
    }
    let reader = StreamReader::open(&path).unwrap();
    let mut calls = 0;
    let check = reader
        .verify_with_progress(|done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
    assert!(check.is_ok());
    assert!(calls >= 1);
    assert_eq!(check.events, 1000);
    assert_eq!(check.header_event_count, 1000);
    assert_eq!(check.first_timestamp, Some(100));
    assert_eq!(check.last_timestamp, Some(1099));
    assert_eq!(check.valid_end, writer.write_offset());
}

#[test]
fn readers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StreamReader>();
    check::<StreamWriter>();
}

#[test]
fn verify_agrees_with_a_live_writer() {
    const EVENTS: i64 = 5_000;
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    writer.append(0, b"first").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for i in 1..EVENTS {
                writer.append(i, &[i as u8; 20]).unwrap();
                if i % 8 == 0 {
                    std::thread::yield_now();
                }
            }
            // Hold the writer, and its lock, until the reader is done.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let end = 24 + 21 + (EVENTS as u64 - 1) * 36;
    let mut reader = StreamReader::open(&path).unwrap();
    let mut rounds = 0;
    let mut partial = 0;
    while rounds < 100 || reader.write_offset() < end {
        let check = reader.verify().unwrap();
        assert!(check.is_ok(), "{check:?}");
        assert_eq!(check.valid_end, reader.write_offset());
        assert!(reader.writer_active().unwrap());
        partial += u32::from(reader.write_offset() < end);
        reader.refresh().unwrap();
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.join().unwrap();
    println!("{rounds} checks, {partial} of them while the writer was appending");
}

/// Issue 9, defect 9: two `create`s of one path racing. The loser used to delete the
/// winner's temporary file as abandoned (its lock not yet taken), and one of them then
/// failed with `Io "rename into place": NotFound`.
#[test]
fn concurrent_creates_of_one_path_lose_with_already_exists() {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let rounds = 400;
    for round in 0..rounds {
        let path = Arc::new(dir.path().join(format!("r{round}.evs")));
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (path, barrier) = (Arc::clone(&path), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    StreamWriter::create_with(
                        &*path,
                        4096,
                        WriterOptions::default().prefault(Prefault::Off),
                    )
                    .map(drop)
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for result in &results {
            assert!(
                matches!(result, Ok(()) | Err(Error::AlreadyExists { .. })),
                "round {round}: {result:?}"
            );
        }
        assert!(StreamReader::open(&*path).is_ok());
    }
    // No temporary file is left behind by any round.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// Issue 9, defect 8: `next_timeout(Duration::MAX)` overflowed `Instant` and panicked; it
/// waits without a deadline.
#[test]
fn follow_without_a_deadline() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let reader = StreamReader::open(&path).unwrap();
    let mut follow = reader.follow(reader.write_offset()).unwrap();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writer.append(7, b"late").unwrap();
        writer
    });
    let event = follow.next_timeout(Duration::MAX).unwrap().unwrap();
    assert_eq!((event.timestamp(), event.payload()), (7, &b"late"[..]));
    drop(producer.join().unwrap());
}

/// `seal` is durable and final: appends are refused here and in every later writer, and
/// readers see it live.
#[test]
fn a_sealed_stream_takes_no_more_events() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    writer.append(1, b"one").unwrap();
    let reader = StreamReader::open(&path).unwrap();
    let mut follow = reader.follow(24).unwrap();
    assert!(!reader.is_sealed());
    assert!(!writer.is_sealed());
    assert!(follow.next_timeout(Duration::ZERO).unwrap().is_some());
    assert!(!follow.is_finished(), "not sealed yet");
    writer.seal().unwrap();
    assert!(writer.is_sealed());
    assert!(reader.is_sealed(), "the reader sees the live trailer");
    assert!(
        follow.is_finished(),
        "a caught-up follower of a sealed stream is done"
    );
    let behind = reader.follow(24).unwrap();
    assert!(!behind.is_finished(), "one event is still to be read");
    assert_eq!(writer.durable_offset(), writer.write_offset());
    assert!(matches!(
        writer.append(2, b"two"),
        Err(Error::Sealed { .. })
    ));
    assert!(matches!(
        writer.append_with(2, 3, |_| {}),
        Err(Error::Sealed { .. })
    ));
    writer.seal().unwrap();
    drop(writer);
    let mut again = StreamWriter::open(&path).unwrap();
    assert!(again.is_sealed());
    assert!(matches!(again.append(2, b"two"), Err(Error::Sealed { .. })));
    drop(again);
    assert_eq!(read_all(&path).len(), 1);
    assert!(StreamReader::open(&path).unwrap().is_sealed());
}

/// In a stream of several megabytes of mixed event sizes, a damaged payload byte anywhere
/// (first event, middle, last) is reported at exactly its event's offset, after every
/// earlier event was yielded intact.
#[test]
fn damage_deep_in_a_large_stream_is_reported_at_its_offset() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 8 << 20).unwrap();
    let mut offsets = Vec::new();
    // About 5 MiB of events of varied sizes.
    for i in 0..5000u64 {
        let len = [40usize, 1000, 64, 3000][i as usize % 4];
        offsets.push(writer.append(i as i64, &payload(len, i as u8)).unwrap());
    }
    drop(writer);
    let intact = read_all(&path);
    assert_eq!(intact.len(), offsets.len());

    for &victim in &[0usize, 1500, 2999, 4999] {
        let copy = path.with_extension(format!("damaged{victim}"));
        let mut bytes = std::fs::read(&path).unwrap();
        // The last payload byte of the victim: inside the checksum, outside every header.
        let end = offsets[victim] + EVENT_HEADER_LEN + intact[victim].2.len() as u64;
        bytes[end as usize - 1] ^= 0x10;
        std::fs::write(&copy, &bytes).unwrap();

        let reader = StreamReader::open(&copy).unwrap();
        let mut seen = 0usize;
        let mut failure = None;
        for event in reader.iter() {
            match event {
                Ok(e) => {
                    assert_eq!(e.offset(), intact[seen].0);
                    assert_eq!(e.payload(), &intact[seen].2[..]);
                    seen += 1;
                }
                Err(e) => failure = Some(e),
            }
        }
        assert_eq!(seen, victim, "events before the damage");
        match failure {
            Some(Error::Corrupt { offset, .. }) => assert_eq!(offset, offsets[victim]),
            other => panic!("expected Corrupt at {}, got {other:?}", offsets[victim]),
        }
    }
}

/// `append_batch` and `append` interleaved read back as one sequence, offsets included.
#[test]
fn batches_and_single_appends_read_back_in_order() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let mut model: Vec<(u64, i64, Vec<u8>)> = Vec::new();
    let mut ts = 0i64;
    for round in 0..50usize {
        let payloads: Vec<Vec<u8>> = (0..round % 9)
            .map(|k| payload(k * 13, round as u8))
            .collect();
        let batch: Vec<(i64, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(k, p)| (ts + (k as i64) / 2, p.as_slice()))
            .collect();
        let before = writer.write_offset();
        let first = writer.append_batch(&batch).unwrap();
        assert_eq!(
            first, before,
            "the first event lands at the old write offset"
        );
        let mut at = first;
        for (t, p) in &batch {
            model.push((at, *t, p.to_vec()));
            at += EVENT_HEADER_LEN + p.len() as u64;
        }
        assert_eq!(writer.write_offset(), at);
        ts = batch.last().map_or(ts, |&(t, _)| t);
        let single = payload(round, 7);
        model.push((writer.append(ts, &single).unwrap(), ts, single));
    }
    assert_eq!(writer.event_count(), model.len() as u64);
    drop(writer);
    assert_eq!(read_all(&path), model);
    // A writer reopening the stream counts the same events.
    assert_eq!(
        StreamWriter::open(&path).unwrap().event_count(),
        model.len() as u64
    );
}

/// A batch refused for any reason (out of order inside it or against the stream's last
/// event, too large for the space left, a sealed stream) changes no byte of the file, and
/// the writer goes on appending as if it had not been tried.
#[test]
fn a_refused_batch_writes_nothing() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 64 << 10).unwrap();
    writer.append(10, b"first").unwrap();
    let big = vec![0xab_u8; 40 << 10];
    let file = || std::fs::read(&path).unwrap();
    let before = file();
    type Batch<'a> = Vec<(i64, &'a [u8])>;
    let cases: Vec<(&str, Batch)> = vec![
        (
            "out of order inside",
            vec![(11, b"a"), (12, b"b"), (11, b"c")],
        ),
        ("before the last event", vec![(9, b"a"), (12, b"b")]),
        (
            "too large for the space",
            vec![(11, b"a"), (11, &big), (12, &big)],
        ),
    ];
    for (case, batch) in cases {
        let offset = writer.write_offset();
        let err = writer.append_batch(&batch).unwrap_err();
        match (case, &err) {
            (
                "out of order inside",
                Error::OutOfOrder {
                    previous: 12,
                    got: 11,
                },
            )
            | (
                "before the last event",
                Error::OutOfOrder {
                    previous: 10,
                    got: 9,
                },
            )
            | ("too large for the space", Error::Full { .. }) => {}
            _ => panic!("{case}: unexpected {err:?}"),
        }
        assert_eq!(file(), before, "{case}: the file changed");
        assert_eq!(writer.write_offset(), offset, "{case}");
        assert_eq!(writer.event_count(), 1, "{case}");
    }
    // Still usable, and the refused timestamps left no trace on the order check.
    writer
        .append_batch(&[(10, b"x".as_slice()), (11, b"y")])
        .unwrap();
    writer.seal().unwrap();
    let sealed = file();
    assert!(matches!(
        writer.append_batch(&[(20, b"z".as_slice())]),
        Err(Error::Sealed { .. })
    ));
    assert_eq!(file(), sealed);
    drop(writer);
    let events = read_all(&path);
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.2.as_slice()).collect();
    assert_eq!(payloads, [b"first".as_slice(), b"x", b"y"]);
}

/// `verify` of a snapshot taken while batches are being published finds the stream
/// consistent every time: the header count may trail by a whole batch for an instant,
/// which is no damage.
#[test]
fn verify_during_batches_is_always_ok() {
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    let appender = std::thread::spawn(move || {
        let payloads: Vec<Vec<u8>> = (0..50).map(|k| payload(k % 7, k as u8)).collect();
        let mut batches = 0u64;
        loop {
            let batch: Vec<(i64, &[u8])> = payloads
                .iter()
                .map(|p| (batches as i64, p.as_slice()))
                .collect();
            if writer.append_batch(&batch).is_err() {
                return batches; // full
            }
            batches += 1;
            std::thread::yield_now();
        }
    });
    let mut checks = 0;
    while !appender.is_finished() || checks < 20 {
        let check = StreamReader::open(&path).unwrap().verify().unwrap();
        assert!(check.is_ok(), "{check:?}");
        assert_eq!(check.events % 50, 0, "a snapshot inside a batch: {check:?}");
        checks += 1;
    }
    assert!(appender.join().unwrap() > 0);
}

/// A snapshot taken between a batch's two stores (the write offset past all its events,
/// the count not yet raised) verifies as consistent once the count is stored; if the
/// count is never stored (the writer died between them), `is_ok` reports the mismatch.
#[test]
fn verify_accepts_a_count_that_catches_up_with_a_batch() {
    use std::os::unix::fs::FileExt;
    let (_dir, path) = temp();
    let mut writer = StreamWriter::create(&path, 1 << 20).unwrap();
    writer.append(1, b"before").unwrap();
    let batch: Vec<(i64, &[u8])> = (0..50).map(|k| (2 + k, b"batch".as_slice())).collect();
    writer.append_batch(&batch).unwrap();
    drop(writer);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let set_count = |count: u64| file.write_at(&count.to_le_bytes(), 8).unwrap();

    // The count as it was before the batch's count store.
    set_count(1);
    let reader = StreamReader::open(&path).unwrap();
    assert_eq!(reader.header_event_count(), 1);
    // The writer stores the count after the snapshot, before the scan ends.
    set_count(51);
    let check = reader.verify().unwrap();
    assert_eq!(check.events, 51);
    assert_eq!(check.header_event_count, 1, "the count as of the snapshot");
    assert!(check.is_ok(), "{check:?}");

    // Never stored: a count short by the batch is reported.
    set_count(1);
    let check = StreamReader::open(&path).unwrap().verify().unwrap();
    assert!(!check.is_ok(), "{check:?}");
}

/// A writer unmaps the pages behind its write offset (on each flush, and in its
/// prefaulting thread as it moves on). Whatever the mode, every event keeps its bytes:
/// in a view borrowed before, in the file read through the page cache, and across a
/// reopen, also with payloads full of zeros.
#[test]
fn events_keep_their_bytes_after_the_writer_releases_their_pages() {
    for mode in [Prefault::Off, Prefault::Inline, Prefault::Background] {
        let (_dir, path) = temp();
        let options = WriterOptions::default().prefault(mode).prefault_chunk(8192);
        let mut writer = StreamWriter::create_with(&path, 4 << 20, options).unwrap();
        let mut expected = Vec::new();
        let first = payload(3000, 1);
        writer.append(0, &first).unwrap();
        expected.push(first.clone());
        writer.flush().unwrap();
        let reader = StreamReader::open(&path).unwrap();
        let view = reader.iter().next().unwrap().unwrap();
        for i in 1..1500u32 {
            let p = if i % 3 == 0 {
                vec![0u8; 1 + i as usize % 2000]
            } else {
                payload(1 + (i as usize * 7) % 2500, i as u8)
            };
            writer.append(i64::from(i), &p).unwrap();
            expected.push(p);
            if i % 50 == 0 {
                writer.flush().unwrap();
            }
        }
        writer.flush().unwrap();
        assert_eq!(
            view.payload(),
            &first[..],
            "{mode:?}: a borrowed view changed"
        );
        let bytes = std::fs::read(&path).unwrap();
        let mut at = STREAM_HEADER_LEN as usize;
        for (i, p) in expected.iter().enumerate() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let start = at + EVENT_HEADER_LEN as usize;
            assert_eq!(
                &bytes[start..start + len],
                &p[..],
                "{mode:?}: event {i} in the file"
            );
            at = start + len;
        }
        drop(writer);
        let after: Vec<Vec<u8>> = read_all(&path).into_iter().map(|(_, _, p)| p).collect();
        assert_eq!(after, expected, "{mode:?}: events after reopen");
    }
}

/// A writer that pauses between bursts while the whole file is written back, the pages
/// its prefaulting thread mapped ahead of it included (so that they are write-protected
/// again when it resumes). Every event keeps its bytes, zeros included, in a reader's
/// views while the writer is open and across a reopen.
#[test]
fn events_appended_after_pauses_with_write_back_keep_their_bytes() {
    let (_dir, path) = temp();
    let options = WriterOptions::default()
        .prefault(Prefault::Background)
        .prefault_chunk(16384);
    let mut writer = StreamWriter::create_with(&path, 8 << 20, options).unwrap();
    let mut expected = Vec::new();
    let mut i = 0u32;
    for burst in 0..4 {
        for _ in 0..300 {
            let p = if i.is_multiple_of(2) {
                vec![0u8; 1 + (i as usize * 13) % 3000]
            } else {
                payload(1 + (i as usize * 7) % 3000, i as u8)
            };
            writer.append(i64::from(i), &p).unwrap();
            expected.push(p);
            i += 1;
        }
        if burst % 2 == 0 {
            writer.flush().unwrap();
        }
        // Written back whole, the pages ahead of the writer included.
        std::fs::File::open(&path).unwrap().sync_all().unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let same = |seen: Vec<Vec<u8>>, what: &str| {
        assert_eq!(seen.len(), expected.len(), "{what}: events");
        for (n, (seen, expected)) in seen.iter().zip(&expected).enumerate() {
            assert!(seen == expected, "{what}: event {n} changed");
        }
    };
    let reader = StreamReader::open(&path).unwrap();
    same(
        reader
            .iter()
            .map(|event| event.unwrap().payload().to_vec())
            .collect(),
        "a reader's views, the writer open",
    );
    drop(writer);
    same(
        read_all(&path).into_iter().map(|(_, _, p)| p).collect(),
        "after reopen",
    );
}

/// The trailer as the file holds it (read through the page cache), decoded.
fn trailer_in_file(path: &Path, capacity: u64) -> evstream::format::Trailer {
    use evstream::format::{TRAILER_RECORD_LEN, TRAILER_SLOT_LEN};
    use std::os::unix::fs::FileExt;
    let at = evstream::format::trailer_offset(capacity).unwrap();
    let file = std::fs::File::open(path).unwrap();
    let slot = |i: u64| -> [u8; TRAILER_RECORD_LEN] {
        let mut record = [0u8; TRAILER_RECORD_LEN];
        file.read_exact_at(&mut record, at + i * TRAILER_SLOT_LEN)
            .unwrap();
        record
    };
    let (a, b) = (slot(0), slot(1));
    evstream::format::decode_trailer([&a, &b], at).unwrap()
}

/// The rule behind recovery's bounded scan: no event byte lies past the dirty limit of
/// the trailer. A writer raises the limit ahead of its appends (half a step early, synced
/// in the background); at every append, over several raises, and across reopens (which
/// trust no limit they did not sync), the trailer in the file covers every byte appended.
#[test]
fn the_trailer_covers_every_byte_appended() {
    let (_dir, path) = temp();
    let capacity = 120 << 20;
    for (reopen, size) in [(false, 64 << 10), (true, 1 << 20), (false, 1000)] {
        let _ = std::fs::remove_file(&path);
        let mut writer = StreamWriter::create(&path, capacity).unwrap();
        let event = payload(size, 3);
        let mut i = 0i64;
        while writer.available() >= event.len() as u64 + EVENT_HEADER_LEN {
            writer.append(i, &event).unwrap();
            i += 1;
            if size < 4096 && i % 64 != 0 {
                continue;
            }
            let trailer = trailer_in_file(&path, capacity);
            assert!(
                trailer.dirty_limit >= writer.write_offset(),
                "append {i}: {} bytes written, the trailer's dirty limit is {}",
                writer.write_offset(),
                trailer.dirty_limit
            );
            if reopen && i % 20 == 0 {
                drop(writer);
                writer = StreamWriter::open(&path).unwrap();
            }
        }
        drop(writer);
        assert_eq!(read_all(&path).len() as i64, i);
    }
}
