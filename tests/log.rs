//! Logs: what a user of `LogWriter`, `LogReader` and cursors is promised, tried against a
//! plain model (`Vec` of what was appended) with real directories and small segments, so
//! that every test rolls many times.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use evstream::{
    Error, LogOptions, LogReader, LogWriter, Position, RetireReason, SharedLogWriter, WriteBack,
};

const HOUR: i64 = 3_600_000_000_000;

/// What was appended: position, timestamp, payload.
type Model = Vec<(Position, i64, Vec<u8>)>;

fn small() -> LogOptions {
    LogOptions::default().segment_size(8192)
}

/// Payload `i`: its length varies from 0 to 300 bytes, its bytes depend on `i`.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 301) as usize;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

/// Appends `n` events with timestamps `ts(i)` and returns the model.
fn fill(log: &mut LogWriter, n: u64, ts: impl Fn(u64) -> i64) -> Model {
    (0..n)
        .map(|i| {
            let p = payload(i);
            let pos = log.append(ts(i), &p).unwrap();
            (pos, ts(i), p)
        })
        .collect()
}

fn read_all(dir: &Path) -> Model {
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
fn events_survive_rolls_in_order_at_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 2000, |i| i as i64 / 3);
    assert!(log.segment() > 30, "only {} rolls", log.segment());
    assert_eq!(read_all(&path), model);
    // Positions resume exactly, in the middle of a segment and at a segment's start.
    let reader = LogReader::open(&path).unwrap();
    for k in [0, 1, 777, 1999] {
        let (pos, _, _) = &model[k];
        let parsed: Position = pos.to_string().parse().unwrap();
        let got: Vec<_> = reader
            .iter_from(parsed)
            .unwrap()
            .map(|e| e.unwrap().timestamp())
            .collect();
        let want: Vec<_> = model[k..].iter().map(|m| m.1).collect();
        assert_eq!(got, want, "from {pos}");
    }
    // A reopened writer continues after the last event, in the same segment.
    drop(log);
    let mut log = LogWriter::open(&path).unwrap();
    assert!(log.recovery().is_clean(), "{:?}", log.recovery());
    let pos = log.append(1000, b"after reopen").unwrap();
    assert!(pos > model.last().unwrap().0);
    assert_eq!(log.event_count(), 2001);
    let verification = LogReader::open(&path).unwrap().verify().unwrap();
    assert!(verification.is_ok(), "{verification:?}");
    assert_eq!(verification.events, 2001);
}

#[test]
fn segment_names_sort_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    fill(&mut log, 3000, |i| i as i64);
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".evs") && !n.starts_with('.'))
        .collect();
    names.sort();
    let seqs: Vec<u64> = names.iter().map(|n| n[..8].parse().unwrap()).collect();
    assert!(seqs.len() > 50);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{names:?}");
}

#[test]
fn one_writer_per_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let log = LogWriter::create(&path, small()).unwrap();
    assert!(matches!(LogWriter::open(&path), Err(Error::Locked { .. })));
    assert!(LogReader::open(&path).unwrap().writer_active().unwrap());
    drop(log);
    assert!(!LogReader::open(&path).unwrap().writer_active().unwrap());
    LogWriter::open(&path).unwrap();
    assert!(matches!(
        LogWriter::create(&path, small()),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn an_event_larger_than_a_segment_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    log.append(1, b"x").unwrap();
    let err = log.append(2, &vec![7u8; 8192]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EventTooLarge {
                segment_size: 8192,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("does not fit in a segment"), "{err}");
    let largest = match err {
        Error::EventTooLarge { largest, .. } => largest,
        _ => unreachable!(),
    };
    // The largest event that fits does, alone in a fresh segment.
    let big = vec![9u8; (largest - 16) as usize];
    let pos = log.append(3, &big).unwrap();
    assert_eq!(pos.segment(), 1);
    assert_eq!(
        log.append_with(4, 8192, |_| panic!("fill ran"))
            .unwrap_err()
            .to_string(),
        text
    );
    let all = read_all(&path);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].2, big);
}

#[test]
fn out_of_order_timestamps_are_refused_across_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 200, |i| 1000 + i as i64);
    let seg = log.segment();
    // Fill the segment so that the next append rolls.
    while log.segment() == seg {
        log.append(5000, &[1; 200]).unwrap();
    }
    let err = log.append(4999, b"late").unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                previous: 5000,
                got: 4999
            }
        ),
        "{err:?}"
    );
    assert!(model.len() < read_all(&path).len());
}

#[test]
fn rolls_at_utc_aligned_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(1 << 20)
        .roll_interval(Some(Duration::from_secs(3600)));
    let mut log = LogWriter::create(&path, options).unwrap();
    // 2024-05-01T00:00Z is a multiple of an hour since the epoch.
    let t0 = 1_714_521_600_000_000_000i64;
    let stamps = [
        t0 + 5,
        t0 + HOUR - 1,
        t0 + HOUR,
        t0 + HOUR + 7,
        t0 + 3 * HOUR + 1,
    ];
    let positions: Vec<Position> = stamps
        .iter()
        .map(|&t| log.append(t, b"e").unwrap())
        .collect();
    let segments: Vec<u64> = positions.iter().map(|p| p.segment()).collect();
    assert_eq!(segments, [0, 0, 1, 1, 2]);
    // Reopening keeps the interval of the newest segment.
    drop(log);
    let mut log = LogWriter::open(&path).unwrap();
    assert_eq!(log.append(t0 + 3 * HOUR + 9, b"e").unwrap().segment(), 2);
    assert_eq!(log.append(t0 + 4 * HOUR, b"e").unwrap().segment(), 3);
}

/// An event refused as larger than a segment changes nothing, not even the roll interval
/// of the next event: an hourly log keeps each hour in its own segments.
#[test]
fn a_refused_event_does_not_set_the_roll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = small().roll_interval(Some(Duration::from_secs(3600)));
    let mut log = LogWriter::create(&path, options).unwrap();
    let t0 = 1_714_521_600_000_000_000i64;
    // Refused, stamped at the start of the next hour.
    assert!(matches!(
        log.append(t0 + HOUR, &[0u8; 9000]),
        Err(Error::EventTooLarge { .. })
    ));
    let first = log.append(t0 + HOUR - 1, b"last of the hour").unwrap();
    let next = log.append(t0 + HOUR, b"first of the next").unwrap();
    assert_eq!((first.segment(), next.segment()), (0, 1));
}

/// An out-of-order append is refused naming the log's last timestamp, also when the
/// timestamp is older than the segment before the newest.
#[test]
fn out_of_order_names_the_last_event_across_a_roll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    log.append(10, &[1u8; 4000]).unwrap();
    assert_eq!(log.append(20, &[2u8; 4000]).unwrap().segment(), 1);
    match log.append(5, b"late") {
        Err(Error::OutOfOrder { previous, got }) => assert_eq!((previous, got), (20, 5)),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.event_count(), 2);
}

#[test]
fn seek_by_time_matches_the_model_even_with_damaged_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    // Duplicate timestamps, some spanning segment boundaries.
    let model = fill(&mut log, 3000, |i| (i as i64 / 7) * 10);
    log.flush().unwrap();
    let reader = LogReader::open(&path).unwrap();
    let expect = |t: i64| model.iter().find(|m| m.1 >= t).map(|m| m.0);
    let probes: Vec<i64> = (-5..4300).step_by(3).collect();
    for &t in &probes {
        assert_eq!(reader.seek_time(t).unwrap(), expect(t), "t={t}");
    }
    // Damage indexes three ways: a flipped byte (checksum), a consistent index that lies
    // (an entry's timestamp changed and the checksum recomputed), and a missing one.
    let idx: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    assert!(idx.len() > 20);
    for (k, file) in idx.iter().enumerate() {
        let mut bytes = std::fs::read(file).unwrap();
        match k % 3 {
            0 => bytes[20] ^= 0x40,
            1 => {
                let n = bytes.len();
                // The first entry's timestamp: after the 56-byte header, 8 bytes in.
                bytes[64] ^= 0x01;
                let crc = crc32fast::hash(&bytes[..n - 4]);
                bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            _ => bytes.clear(),
        }
        if bytes.is_empty() {
            std::fs::remove_file(file).unwrap();
        } else {
            std::fs::write(file, bytes).unwrap();
        }
    }
    for &t in &probes {
        assert_eq!(
            reader.seek_time(t).unwrap(),
            expect(t),
            "t={t} (damaged indexes)"
        );
    }
    let since: Vec<i64> = reader
        .iter_since(2000)
        .unwrap()
        .map(|e| e.unwrap().timestamp())
        .collect();
    let want: Vec<i64> = model.iter().map(|m| m.1).filter(|&t| t >= 2000).collect();
    assert_eq!(since, want);
}

#[test]
fn tail_returns_the_newest_events_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 1500, |i| i as i64);
    let reader = LogReader::open(&path).unwrap();
    for n in [0, 1, 10, 60, 200, 1500, 5000] {
        let got: Vec<_> = reader
            .tail(n)
            .unwrap()
            .iter()
            .map(|e| (e.position(), e.timestamp(), e.payload().to_vec()))
            .collect();
        let want = &model[model.len().saturating_sub(n)..];
        assert_eq!(got, want, "tail {n}");
    }
    let stat = reader.stat().unwrap();
    assert_eq!(stat.events, 1500);
    assert_eq!(stat.first_timestamp, Some(0));
    assert_eq!(stat.last_timestamp, Some(1499));
    assert_eq!(stat.segments, log.segment() + 1);
    assert!(stat.writer_active);
}

#[test]
fn a_follower_crosses_rolls_without_waiting_or_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let reader = LogReader::open(&path).unwrap();
    let mut follow = reader.iter_from(reader.end().unwrap()).unwrap();
    let writer = std::thread::spawn(move || {
        let model = fill(&mut log, 3000, |i| i as i64);
        (model, log)
    });
    let mut seen = Vec::new();
    while seen.len() < 3000 {
        match follow.next_timeout(Duration::from_secs(10)).unwrap() {
            Some(e) => seen.push((e.position(), e.timestamp(), e.payload().to_vec())),
            None => panic!(
                "follower stuck at {} after {} events",
                follow.position(),
                seen.len()
            ),
        }
    }
    let (model, log) = writer.join().unwrap();
    assert!(log.segment() > 50);
    assert_eq!(seen, model);
    assert!(follow.try_next().unwrap().is_none());
}

#[test]
fn retention_deletes_oldest_whole_segments_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = small().retain_segments(Some(5));
    let mut log = LogWriter::create(&path, options).unwrap();
    let model = fill(&mut log, 3000, |i| i as i64);
    log.flush().unwrap();
    let mut retired = log.take_retired();
    retired.extend(log.enforce_retention().unwrap());
    let reader = LogReader::open(&path).unwrap();
    let stat = reader.stat().unwrap();
    assert_eq!(stat.segments, 5);
    assert_eq!(stat.last_segment, log.segment());
    // Deleted oldest first, each once, for the count limit, and every event of them.
    let seqs: Vec<u64> = retired.iter().map(|r| r.segment).collect();
    assert_eq!(seqs, (0..stat.first_segment).collect::<Vec<_>>());
    assert!(retired.iter().all(|r| r.reason == RetireReason::Count));
    let lost: u64 = retired.iter().map(|r| r.events).sum();
    assert_eq!(lost, stat.first_event);
    // What is left is exactly the model's tail.
    assert_eq!(read_all(&path), model[lost as usize..]);
    // A position in a deleted segment says so.
    let err = reader.iter_from(model[0].0).unwrap_err();
    assert!(
        matches!(err, Error::Retired { first_segment, .. } if first_segment == stat.first_segment),
        "{err:?}"
    );
}

#[test]
fn retention_by_size_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = small().retain_size(Some(10 * 8192));
    let mut log = LogWriter::create(&path, options).unwrap();
    fill(&mut log, 3000, |i| i as i64);
    log.enforce_retention().unwrap();
    let stat = LogReader::open(&path).unwrap().stat().unwrap();
    assert_eq!(stat.disk_bytes - stat.spare_bytes, 10 * 8192);
    drop(log);

    let path = dir.path().join("aged");
    let options = small().retain_age(Some(Duration::from_secs(3600)));
    let mut log = LogWriter::create(&path, options).unwrap();
    let now = log.next_timestamp();
    // Two hours ago, then now: the old segments go, the recent ones stay.
    fill(&mut log, 500, |i| now - 2 * HOUR + i as i64);
    let recent = log.segment() + 1;
    let model = fill(&mut log, 500, |i| now + i as i64);
    let retired = log.enforce_retention().unwrap();
    assert!(retired.iter().all(|r| r.reason == RetireReason::Age));
    assert!(
        retired
            .iter()
            .all(|r| r.last_timestamp.unwrap() < now - HOUR)
    );
    let all = read_all(&path);
    assert_eq!(all.first().unwrap().0.segment(), recent - 1);
    assert!(all.ends_with(&model));
}

#[test]
fn cursors_resume_report_lag_and_hold_retention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small().retain_segments(Some(3))).unwrap();
    let model = fill(&mut log, 100, |i| i as i64);
    let reader = LogReader::open(&path).unwrap();
    // Consume 40 events, committing each.
    let mut events = reader.iter_cursor("billing").unwrap();
    for _ in 0..40 {
        let e = events.next().unwrap().unwrap();
        reader.commit_cursor("billing", e.next_position()).unwrap();
    }
    let cursor = reader.cursor("billing").unwrap().unwrap();
    assert_eq!(cursor, model[40].0);
    let lag = reader.cursor_lag("billing").unwrap().unwrap();
    assert_eq!(lag.events, 60);
    let bytes: u64 = model[40..].iter().map(|m| 16 + m.2.len() as u64).sum();
    assert_eq!(lag.bytes, bytes);
    // The writer goes on far past the retention limit: the cursor's segment stays.
    let more = fill(&mut log, 2000, |i| 100 + i as i64);
    log.enforce_retention().unwrap();
    let lag = reader.cursor_lag("billing").unwrap().unwrap();
    assert_eq!(lag.events, 60 + 2000);
    let resumed: Vec<i64> = reader
        .iter_cursor("billing")
        .unwrap()
        .map(|e| e.unwrap().timestamp())
        .collect();
    let want: Vec<i64> = model[40..].iter().chain(&more).map(|m| m.1).collect();
    assert_eq!(resumed, want);
    // Once it catches up, retention applies.
    reader.commit_cursor("billing", log.end()).unwrap();
    assert_eq!(reader.cursor_lag("billing").unwrap().unwrap().events, 0);
    log.enforce_retention().unwrap();
    assert_eq!(reader.stat().unwrap().segments, 3);
    // A damaged cursor is refused, named, and left as it is.
    let file = path.join("cursors").join("billing");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(matches!(
        reader.cursor("billing"),
        Err(Error::BadCursor { .. })
    ));
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert!(matches!(
        reader.commit_cursor("../x", log.end()),
        Err(Error::BadCursor { .. })
    ));
}

#[test]
fn retention_past_cursors_says_which_cursor_lost_what() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = small().retain_segments(Some(2)).retain_past_cursors(true);
    let mut log = LogWriter::create(&path, options).unwrap();
    let model = fill(&mut log, 50, |i| i as i64);
    let reader = LogReader::open(&path).unwrap();
    reader.commit_cursor("slow", model[10].0).unwrap();
    fill(&mut log, 2000, |i| 50 + i as i64);
    log.flush().unwrap();
    let mut retired = log.take_retired();
    retired.extend(log.enforce_retention().unwrap());
    let first = &retired[0];
    assert_eq!(first.segment, 0);
    assert_eq!(first.cursors_behind.len(), 1);
    assert_eq!(first.cursors_behind[0].name, "slow");
    assert_eq!(first.cursors_behind[0].events_lost, first.events - 10);
    let later_losses: u64 = retired[1..]
        .iter()
        .flat_map(|r| &r.cursors_behind)
        .map(|l| l.events_lost)
        .sum();
    let later_events: u64 = retired[1..].iter().map(|r| r.events).sum();
    assert_eq!(later_losses, later_events);
    assert!(matches!(
        reader.iter_cursor("slow"),
        Err(Error::Retired { .. })
    ));
}

#[test]
fn a_directory_that_is_not_a_log_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("LOG"), b"something else\n").unwrap();
    for err in [
        LogWriter::open(dir.path()).unwrap_err(),
        LogReader::open(dir.path()).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotALog { .. }), "{err:?}");
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["LOG", "notes.txt"]);
    let file = dir.path().join("notes.txt");
    assert!(matches!(LogReader::open(&file), Err(Error::NotALog { .. })));
}

#[test]
fn events_outlive_their_iterator_and_their_deleted_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small().retain_segments(Some(2))).unwrap();
    let model = fill(&mut log, 30, |i| i as i64);
    let kept: Vec<_> = LogReader::open(&path)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    fill(&mut log, 2000, |i| 30 + i as i64);
    log.enforce_retention().unwrap();
    assert!(!path.join(evstream_first_segment_name()).exists());
    for (event, m) in kept.iter().zip(&model) {
        assert_eq!(event.payload(), m.2.as_slice());
    }
}

fn evstream_first_segment_name() -> &'static str {
    "00000000-00000000000000000000.evs"
}

/// A writer opened for a few appends at a time (as `evstream append` is) keeps every
/// event in order across reopens and rolls, leaves at most one prepared segment behind,
/// and never rolls into a file that merely has the prepared segment's name: one holding
/// events, one of another size, or one that is not a stream at all.
#[test]
fn short_lived_writers_never_roll_into_a_foreign_prepared_segment() {
    use evstream::StreamWriter;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, small()).unwrap());
    let hidden = |path: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        names.sort();
        names
    };
    let mut model = Model::new();
    let mut i = 0u64;
    for round in 0..60u64 {
        let mut log = LogWriter::open(&path).unwrap();
        for _ in 0..10 {
            let p = payload(i);
            model.push((log.append(i as i64, &p).unwrap(), i as i64, p));
            i += 1;
        }
        let next = path.join(format!(".next-{:08}.evs", log.segment() + 1));
        drop(log);
        let left = hidden(&path);
        assert!(left.len() <= 1, "round {round}: {left:?}");
        // Plant something else under the prepared segment's name now and then.
        match round % 4 {
            1 => {
                let _ = std::fs::remove_file(&next);
                let mut planted = StreamWriter::create(&next, 8192).unwrap();
                planted.append(-1, b"not an event of this log").unwrap();
            }
            2 => {
                let _ = std::fs::remove_file(&next);
                drop(StreamWriter::create(&next, 16384).unwrap());
            }
            3 => std::fs::write(&next, vec![0x42; 8192]).unwrap(),
            _ => {}
        }
    }
    assert!(LogReader::open(&path).unwrap().stat().unwrap().last_segment > 8);
    assert_eq!(read_all(&path), model);
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
}

/// The dirty limit in a segment file's trailer (read through the page cache).
fn dirty_limit_of(path: &Path) -> (u64, u64) {
    use evstream::format::{TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, decode_trailer, trailer_offset};
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    let at = trailer_offset(file.metadata().unwrap().len()).unwrap();
    let slot = |i: u64| {
        let mut record = [0u8; TRAILER_RECORD_LEN];
        file.read_exact_at(&mut record, at + i * TRAILER_SLOT_LEN)
            .unwrap();
        record
    };
    let (a, b) = (slot(0), slot(1));
    (decode_trailer([&a, &b], at).unwrap().dirty_limit, at)
}

/// A segment the writer rolls into is reserved whole, so appends in it never wait for a
/// raise of the dirty limit; once the writer closes, the limit is back near the events,
/// so that the next open scans little, and every event is there.
#[test]
fn rolled_segments_are_reserved_while_written_and_released_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let segment = 96u64 << 20;
    let mut log = LogWriter::create(&path, LogOptions::default().segment_size(segment)).unwrap();
    let event = vec![7u8; 64 << 10];
    let mut n = 0i64;
    while log.segment() == 0 {
        log.append(n, &event).unwrap();
        n += 1;
    }
    for _ in 0..10 {
        log.append(n, &event).unwrap();
        n += 1;
    }
    let newest = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "evs"))
            .collect();
        names.sort();
        names.pop().unwrap()
    };
    let (limit, events_end) = dirty_limit_of(&newest(&path));
    assert_eq!(limit, events_end, "the segment in use is reserved whole");
    drop(log);
    let (limit, events_end) = dirty_limit_of(&newest(&path));
    assert!(
        limit < events_end / 2,
        "after close the limit ({limit}) is back near the events"
    );
    assert_eq!(read_all(&path).len() as i64, n);
    let mut log = LogWriter::open(&path).unwrap();
    log.append(n, &event).unwrap();
    drop(log);
    assert_eq!(read_all(&path).len() as i64, n + 1);
}

/// Every file in `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Replaces the file at a path, whose length was the second argument.
type Replace = fn(&Path, usize);

/// A log whose segment files were replaced by something else (junk of the same size, an
/// empty file, a stream of another size with its own events, a truncated copy), at the
/// newest place, the one before it, and the oldest: every writer and reader open, and
/// reading what they open, gives a typed error or events, never a panic; and an open
/// that refuses changes no file.
#[test]
fn segments_replaced_by_other_files_are_refused_without_a_change() {
    use evstream::StreamWriter;
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    let mut log = LogWriter::create(&template, small()).unwrap();
    let model = fill(&mut log, 300, |i| i as i64);
    log.flush().unwrap();
    drop(log);
    let mut segments: Vec<_> = std::fs::read_dir(&template)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".evs") && !n.starts_with('.'))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{segments:?}");
    let places = [
        segments.len() - 1, // the newest
        segments.len() - 2, // the one before it
        0,                  // the oldest
    ];
    let replacements: [(&str, Replace); 5] = [
        ("junk", |p, len| {
            std::fs::write(
                p,
                (0..len).map(|i| (i * 131 % 251) as u8).collect::<Vec<_>>(),
            )
            .unwrap()
        }),
        ("empty", |p, _| std::fs::write(p, b"").unwrap()),
        ("another stream", |p, _| {
            std::fs::remove_file(p).unwrap();
            let mut other = StreamWriter::create(p, 16384).unwrap();
            other.append(-5, b"not of this log").unwrap();
            other.flush().unwrap();
        }),
        ("another stream of the segment size", |p, _| {
            std::fs::remove_file(p).unwrap();
            let mut other = StreamWriter::create(p, 8192).unwrap();
            other.append(-5, b"not of this log either").unwrap();
            other.flush().unwrap();
        }),
        ("truncated", |p, len| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..len / 3]).unwrap();
        }),
    ];
    let mut refused = 0;
    for &place in &places {
        for (what, replace) in &replacements {
            let case = format!("{what} at {}", segments[place]);
            let path = dir.path().join(format!("case-{refused}-{place}-{what}"));
            std::fs::create_dir(&path).unwrap();
            for (name, bytes) in snapshot(&template) {
                std::fs::write(path.join(name), bytes).unwrap();
            }
            let target = path.join(&segments[place]);
            let len = std::fs::metadata(&target).unwrap().len() as usize;
            replace(&target, len);
            let before = snapshot(&path);
            let replaced = std::fs::read(&target).unwrap();
            match LogWriter::open(&path) {
                // Only a sealed segment the writer does not read again may differ.
                Ok(writer) => {
                    assert_eq!(place, 0, "{case}: accepted");
                    drop(writer);
                }
                Err(e) => {
                    assert!(
                        !matches!(e, Error::Io { .. }),
                        "{case}: refused with a bare I/O error: {e}"
                    );
                    assert_eq!(
                        snapshot(&path),
                        before,
                        "{case}: refused ({e}) but changed files"
                    );
                    refused += 1;
                }
            }
            assert_eq!(std::fs::read(&target).unwrap(), replaced, "{case}: changed");
            // Readers: a typed error or events; no panic, whatever the writer did.
            if let Ok(reader) = LogReader::open(&path) {
                let _ = reader.stat();
                let _ = reader.tail(5);
                let _ = reader.verify();
                let _ = reader.seek_time(150);
                if let Ok(iter) = reader.iter() {
                    let read: Vec<_> = iter.take(model.len() + 10).collect();
                    assert!(read.len() <= model.len() + 10, "{case}");
                }
            }
        }
    }
    assert_eq!(
        refused,
        2 * replacements.len(),
        "refused at the newest two places"
    );
}

/// A writer's open that must drop a torn tail of the newest segment while a reader has
/// that segment open is refused (`ReadersPresent`) and changes no file, not even the
/// segment before it that it would seal first; once the reader is gone it repairs both.
#[test]
fn a_writer_open_refused_for_readers_present_changes_nothing() {
    use evstream::StreamReader;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let mut i = 0u64;
    while log.segment() == 0 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
    }
    log.flush().unwrap();
    let last = log.append(i as i64, &[9u8; 200]).unwrap(); // not flushed
    drop(log);
    // As after a power loss: the seal of segment 0 never finished (no index), and the
    // newest segment's unflushed last event is torn.
    std::fs::remove_file(path.join("00000000.idx")).unwrap();
    let newest = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("00000001-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[last.offset() as usize + 16 + 100] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();

    let reader = StreamReader::open(&newest).unwrap();
    let before = snapshot(&path);
    let refused = LogWriter::open(&path).map(drop).unwrap_err();
    assert!(
        matches!(refused, Error::ReadersPresent { .. }),
        "{refused:?}"
    );
    assert_eq!(snapshot(&path), before, "a refused open changed files");
    drop(reader);

    let log = LogWriter::open(&path).unwrap();
    assert!(log.recovery().newest.torn_at.is_some());
    assert_eq!(log.recovery().unsealed.len(), 1);
    assert_eq!(log.event_count(), i);
    assert!(path.join("00000000.idx").exists());
}

/// `tail` with any count, the largest included, returns what the log holds: its memory
/// grows with the events found, never with the count asked for.
#[test]
fn tail_of_any_count_returns_what_the_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 300, |i| i as i64);
    log.flush().unwrap(); // the older segments sealed and indexed
    let reader = LogReader::open(&path).unwrap();
    assert!(reader.stat().unwrap().segments > 3);
    for n in [usize::MAX, usize::MAX / 2, 1 << 40, 1_000_000_000, 301, 300] {
        let tail: Vec<i64> = reader
            .tail(n)
            .unwrap()
            .iter()
            .map(|e| e.timestamp())
            .collect();
        assert_eq!(
            tail,
            model.iter().map(|m| m.1).collect::<Vec<_>>(),
            "n = {n}"
        );
    }
}

/// The segment a roll interval gives each event, computed without the writer: one per
/// interval of the Unix epoch's grid, in order.
fn interval_segments(stamps: &[i64], interval: i64) -> Vec<u64> {
    let mut segment = 0;
    let mut current = None;
    stamps
        .iter()
        .map(|&t| {
            let k = i128::from(t).div_euclid(i128::from(interval));
            if current.is_some_and(|c| c != k) {
                segment += 1;
            }
            current = Some(k);
            segment
        })
        .collect()
}

/// Events at the ends of the timestamp range share a segment exactly when they share a
/// roll interval: the interval holding `i64::MAX` has no end to roll at, and events
/// stamped `i64::MAX` (with or without a roll interval) fill one segment instead of
/// taking one each; near `i64::MIN` the intervals are the epoch's grid as anywhere.
#[test]
fn events_at_the_ends_of_time_roll_by_their_interval() {
    let min = i64::MIN;
    let cases: [(&str, Option<i64>, Vec<i64>); 4] = [
        (
            "max-hourly",
            Some(HOUR),
            vec![
                i64::MAX - HOUR,
                i64::MAX - 1,
                i64::MAX,
                i64::MAX,
                i64::MAX,
                i64::MAX,
                i64::MAX,
                i64::MAX,
            ],
        ),
        ("max-unrolled", None, vec![i64::MAX; 6]),
        (
            "max-whole-range",
            Some(i64::MAX),
            vec![0, i64::MAX - 1, i64::MAX, i64::MAX],
        ),
        (
            "min-hourly",
            Some(HOUR),
            vec![
                min,
                min,
                min + 1,
                min + 2_836_854_775_807,
                min + 2_836_854_775_808,
                min + 2_836_854_775_808 + HOUR,
                -1,
                0,
            ],
        ),
    ];
    for (name, interval, stamps) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let options = small().roll_interval(interval.map(|n| Duration::from_nanos(n as u64)));
        let mut log = LogWriter::create(&path, options).unwrap();
        let half = stamps.len() / 2;
        let mut segments: Vec<u64> = stamps[..half]
            .iter()
            .map(|&t| log.append(t, b"e").unwrap().segment())
            .collect();
        // A reopened writer keeps the newest segment's interval.
        drop(log);
        let mut log = LogWriter::open(&path).unwrap();
        segments.extend(
            stamps[half..]
                .iter()
                .map(|&t| log.append(t, b"e").unwrap().segment()),
        );
        let want = match interval {
            Some(interval) => interval_segments(&stamps, interval),
            None => vec![0; stamps.len()],
        };
        assert_eq!(segments, want, "{name}");
        drop(log);
        let reader = LogReader::open(&path).unwrap();
        assert_eq!(
            reader.stat().unwrap().segments,
            want.last().unwrap() + 1,
            "{name}"
        );
        let read: Vec<i64> = reader
            .iter()
            .unwrap()
            .map(|e| e.unwrap().timestamp())
            .collect();
        assert_eq!(read, stamps, "{name}");
    }
}

/// Flips one bit of cursor `name`'s file.
fn damage_cursor(log: &Path, name: &str) {
    let file = log.join("cursors").join(name);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
}

/// A cursor whose file is damaged holds every segment: retention, in the background or
/// enforced, deletes nothing while it cannot be read, says why, and `stat` names it.
/// Committed again, it holds from its new position; removed, it holds nothing.
#[test]
fn a_damaged_cursor_holds_every_segment_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small().retain_segments(Some(2))).unwrap();
    let mut model = fill(&mut log, 50, |i| i as i64);
    let reader = LogReader::open(&path).unwrap();
    reader.commit_cursor("slow", model[10].0).unwrap();
    damage_cursor(&path, "slow");
    model.extend(fill(&mut log, 2000, |i| 50 + i as i64));
    log.flush().unwrap();
    assert_eq!(log.take_retired(), []);
    let background = log.take_retention_error();
    assert!(
        matches!(&background, Some(Error::BadCursor { name, .. }) if name == "slow"),
        "{background:?}"
    );
    let refused = log.enforce_retention().unwrap_err();
    assert!(
        matches!(&refused, Error::BadCursor { name, .. } if name == "slow"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("retention"), "{refused}");
    // Nothing the cursor may need is gone.
    assert_eq!(read_all(&path), model);
    let stat = reader.stat().unwrap();
    assert!(stat.segments > 10);
    assert_eq!(stat.held.len(), 1);
    let hold = &stat.held[0];
    assert_eq!((hold.cursor.as_str(), hold.position), ("slow", None));
    assert_eq!(hold.segments, stat.segments - 2);
    assert_eq!(hold.bytes, hold.segments * 8192);
    // Committed again, at the start of segment 3: segments 0 to 2 go.
    let at = model.iter().find(|m| m.0.segment() == 3).unwrap().0;
    reader.commit_cursor("slow", at).unwrap();
    let stat = reader.stat().unwrap();
    assert_eq!(stat.held[0].position, Some(at));
    assert_eq!(stat.held[0].segments, stat.segments - 2 - 3);
    let retired: Vec<u64> = log
        .enforce_retention()
        .unwrap()
        .iter()
        .map(|r| r.segment)
        .collect();
    assert_eq!(retired, [0, 1, 2]);
    assert!(read_all(&path).starts_with(&[model.iter().find(|m| m.0 == at).unwrap().clone()]));
    // Removed, it holds nothing.
    damage_cursor(&path, "slow");
    assert!(log.enforce_retention().is_err());
    assert!(reader.remove_cursor("slow").unwrap());
    log.enforce_retention().unwrap();
    let stat = reader.stat().unwrap();
    assert_eq!((stat.segments, stat.held.len()), (2, 0));
}

/// `stat` says which cursors keep segments that the retention limits would delete, and
/// how many and how much beyond what the limits would leave; none with
/// `retain_past_cursors`, where the limits win.
#[test]
fn stat_says_which_cursor_holds_retention_and_by_how_much() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small().retain_segments(Some(3))).unwrap();
    let reader = LogReader::open(&path).unwrap();
    fill(&mut log, 10, |i| i as i64);
    log.flush().unwrap();
    assert_eq!(reader.stat().unwrap().held, []);
    let forgotten = log.end();
    reader.commit_cursor("forgotten", forgotten).unwrap();
    fill(&mut log, 300, |i| 10 + i as i64);
    let lagging = log.end();
    reader.commit_cursor("lagging", lagging).unwrap();
    fill(&mut log, 2000, |i| 310 + i as i64);
    log.flush().unwrap();
    assert!(lagging.segment() > 3);
    // Caught up: holds nothing, and is not listed.
    reader.commit_cursor("current", log.end()).unwrap();
    let stat = reader.stat().unwrap();
    assert_eq!(stat.first_segment, 0);
    let over = stat.segments - 3; // what the limit would delete
    let lag = lagging.segment();
    let held: Vec<(&str, Option<Position>, u64, u64)> = stat
        .held
        .iter()
        .map(|h| (h.cursor.as_str(), h.position, h.segments, h.bytes))
        .collect();
    assert_eq!(
        held,
        [
            ("forgotten", Some(forgotten), over, over * 8192),
            ("lagging", Some(lagging), over - lag, (over - lag) * 8192),
        ]
    );
    // Once the forgotten cursor is removed, retention stops at the lagging one's
    // segment: the limit and what that cursor holds add up to the log.
    assert!(reader.remove_cursor("forgotten").unwrap());
    log.enforce_retention().unwrap();
    let stat = reader.stat().unwrap();
    assert_eq!(stat.first_segment, lag);
    assert_eq!(stat.held.len(), 1);
    assert_eq!(stat.held[0].segments, stat.segments - 3);
    drop(log);

    let path = dir.path().join("past");
    let options = small().retain_segments(Some(3)).retain_past_cursors(true);
    let mut log = LogWriter::create(&path, options).unwrap();
    let reader = LogReader::open(&path).unwrap();
    reader.commit_cursor("forgotten", log.end()).unwrap();
    fill(&mut log, 2000, |i| i as i64);
    assert_eq!(reader.stat().unwrap().held, []);
}

/// `open_or_create` creates a log the first time and resumes it every time after, with
/// the settings it was created with; run twice, a program neither fails nor starts over.
#[test]
fn open_or_create_creates_once_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::open_or_create(&path, small()).unwrap();
    let first = log.append(1, b"first run").unwrap();
    drop(log);
    let mut log = LogWriter::open_or_create(&path, small().segment_size(1 << 20)).unwrap();
    assert_eq!(log.options(), &small());
    let second = log.append(2, b"second run").unwrap();
    assert!(second > first);
    drop(log);
    assert_eq!(read_all(&path).len(), 2);
    // A directory that is not a log is refused as `open` refuses it.
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a log").unwrap();
    assert!(LogWriter::open_or_create(&file, small()).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"not a log");
}

/// Threads of one process that create the same log at once fare as processes do: one
/// creates it, and every other opens it (a `LogWriter` may find it `Locked`), none fails
/// on another's settings file written beside its own.
#[test]
fn threads_that_create_one_log_at_once_all_open_it() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let start = std::sync::Barrier::new(4);
        let results: Vec<evstream::Result<()>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        if round % 2 == 0 {
                            LogWriter::open_or_create(&path, small()).map(drop)
                        } else {
                            SharedLogWriter::open_or_create(&path, small()).map(drop)
                        }
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for result in results {
            match result {
                Ok(()) => {}
                Err(Error::Locked { .. }) if round % 2 == 0 => {}
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert_eq!(LogReader::open(&path).unwrap().options(), &small());
    }
}

/// `stat` counts the spare segment, prepared ahead of the next roll, in the disk use.
#[test]
fn stat_counts_the_spare_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    // With a roll interval the writer prepares the next segment at once.
    let options = small().roll_interval(Some(Duration::from_secs(3600)));
    let mut log = LogWriter::create(&path, options).unwrap();
    log.append(0, b"e").unwrap();
    let spare = path.join(".next-00000001.evs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !spare.exists() {
        assert!(std::time::Instant::now() < deadline, "no spare prepared");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(log); // the spare stays for the next writer
    let stat = LogReader::open(&path).unwrap().stat().unwrap();
    assert_eq!(stat.segments, 1);
    assert_eq!(stat.spare_bytes, 8192);
    assert_eq!(stat.disk_bytes, 2 * 8192);
}

/// The `SystemTime` forms of timestamps, the one position to commit, and positions in
/// `Debug` output as `SEGMENT:OFFSET`.
#[test]
fn times_commits_and_debug_read_as_a_user_expects() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    log.append_at(at, b"a").unwrap();
    log.append_at(at + Duration::from_secs(1), b"b").unwrap();
    let far = UNIX_EPOCH + Duration::from_secs(300 * 365 * 86_400);
    assert!(matches!(
        log.append_at(far, b"never"),
        Err(Error::TimeOutOfRange { .. })
    ));
    let reader = LogReader::open(&path).unwrap();
    let events: Vec<_> = reader.iter().unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].time(), at);
    assert_eq!(events[0].timestamp(), 1_700_000_000_123_456_789);
    let stat = reader.stat().unwrap();
    assert_eq!(stat.first_time(), Some(at));
    assert_eq!(stat.last_time(), Some(at + Duration::from_secs(1)));
    let shown = format!("{stat:?}");
    assert!(shown.contains("start: 0:24,"), "{shown}");
    assert!(shown.contains(&format!("end: {},", stat.end)), "{shown}");
    // Committed after the first event, the cursor resumes with the second.
    reader.commit_after("c", &events[0]).unwrap();
    assert_eq!(reader.cursor("c").unwrap(), Some(events[0].next_position()));
    let resumed: Vec<_> = reader
        .iter_cursor("c")
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(resumed, [b"b".to_vec()]);
    assert!(SystemTime::now() > at);
}

/// The files of the log's segments (`*.evs` not starting with `.`), in log order.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".evs") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}

/// Retention never pays for writing back what it deletes: a segment that retention
/// deletes at the roll past it is deleted before its flush, with either write-back
/// policy (a reader that held it open sees it was never flushed), and its events were
/// never promised to survive anything but its deletion.
#[test]
fn retention_deletes_a_retired_segment_without_flushing_it() {
    for policy in [evstream::WriteBack::Eager, evstream::WriteBack::Lazy] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let options = small().retain_segments(Some(1)).write_back(policy);
        let mut log = LogWriter::create(&path, options).unwrap();
        let mut i = 0u64;
        let mut opened = Vec::new();
        while log.segment() < 6 {
            if log.end().offset() == 24 {
                // The newest segment, held open from its first event on.
                let [.., newest] = &segment_files(&path)[..] else {
                    panic!("no segment");
                };
                opened.push(evstream::StreamReader::open(newest).unwrap());
            }
            log.append(i as i64, &payload(i)).unwrap();
            i += 1;
        }
        let retired = log.take_retired();
        assert_eq!(
            retired.iter().map(|r| r.segment).collect::<Vec<_>>(),
            (0..6).collect::<Vec<_>>(),
            "{policy:?}"
        );
        assert_eq!(segment_files(&path).len(), 1);
        for (seq, reader) in opened.iter_mut().take(6).enumerate() {
            reader.refresh().unwrap();
            assert!(reader.write_offset() > 24);
            assert!(!reader.is_sealed(), "{policy:?}: segment {seq} was sealed");
            assert_eq!(
                reader.durable_offset(),
                24,
                "{policy:?}: segment {seq} was flushed before its deletion"
            );
        }
        // What is kept is the log as appended.
        log.flush().unwrap();
        drop(log);
        let kept = read_all(&path);
        assert_eq!(kept.last().unwrap().2, payload(i - 1));
    }
}

/// Eager write-back of segments larger than one write-back step (4 MiB): every retired
/// segment the log keeps is flushed to its end, sealed and indexed, and the log reads
/// back as appended, with and without retention.
#[test]
fn eager_write_back_seals_segments_of_many_steps_whole() {
    for retain in [None, Some(2)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let options = LogOptions::default()
            .segment_size(9 << 20)
            .retain_segments(retain)
            .write_back(WriteBack::Eager);
        let mut log = LogWriter::create(&path, options).unwrap();
        let mut model = Model::new();
        let mut i = 0u64;
        while log.segment() < 3 {
            let payload = vec![(i % 251) as u8; 1000 + (i % 48) as usize];
            let position = log.append(i as i64, &payload).unwrap();
            model.push((position, i as i64, payload));
            i += 1;
        }
        // Retention has run after every roll, and every retired segment is sealed.
        let retired = log.take_retired();
        let files = segment_files(&path);
        assert_eq!(files.len(), if retain.is_some() { 2 } else { 4 });
        let (older, newest) = files.split_at(files.len() - 1);
        for file in older {
            let reader = evstream::StreamReader::open(file).unwrap();
            assert!(reader.write_offset() > 8 << 20, "{file:?}");
            assert_eq!(reader.durable_offset(), reader.write_offset(), "{file:?}");
            assert!(reader.is_sealed(), "{file:?}");
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                path.join(format!("{}.idx", &name[..8])).exists(),
                "{file:?}"
            );
        }
        assert!(
            !evstream::StreamReader::open(&newest[0])
                .unwrap()
                .is_sealed()
        );
        drop(log);
        let kept = read_all(&path);
        let gone: u64 = retired.iter().map(|r| r.events).sum();
        assert_eq!(kept, model[gone as usize..], "{retain:?}");
    }
}

/// Lazy write-back: the writer flushes no retired segment by itself while fewer than 8
/// wait (the kernel writes them back in its own time); a flush seals and indexes every
/// one of them, oldest first, before it flushes the newest.
#[test]
fn lazy_write_back_flushes_retired_segments_at_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = small().write_back(evstream::WriteBack::Lazy);
    let mut log = LogWriter::create(&path, options).unwrap();
    let mut i = 0u64;
    while log.segment() < 5 {
        log.append(i as i64, &payload(i)).unwrap();
        i += 1;
    }
    // Retention has run after every roll (none is set), and nothing was sealed.
    assert!(log.take_retired().is_empty());
    let files = segment_files(&path);
    assert_eq!(files.len(), 6);
    for file in &files {
        let reader = evstream::StreamReader::open(file).unwrap();
        assert_eq!(reader.durable_offset(), 24, "{file:?}");
        assert!(!reader.is_sealed());
    }
    log.flush().unwrap();
    for (k, file) in files.iter().enumerate() {
        let reader = evstream::StreamReader::open(file).unwrap();
        assert_eq!(reader.durable_offset(), reader.write_offset(), "{file:?}");
        // Every one but the newest is sealed and indexed.
        assert_eq!(reader.is_sealed(), k + 1 < files.len(), "{file:?}");
        let index = path.join(format!("{k:08}.idx"));
        assert_eq!(index.exists(), k + 1 < files.len(), "{index:?}");
    }
    drop(log);
    assert_eq!(read_all(&path).len() as u64, i);
}

/// The names of the log's segment files and of its prepared ones, sorted.
fn evs_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".evs"))
        .collect();
    names.sort();
    names
}

/// A log whose writer rolled into its newest segment and died before that segment's
/// rename into place (the rename is the preparing thread's, after the roll): the
/// segment, still under its preparation name, holds acknowledged events. Readers see
/// them at once, and the next writer's open adopts the segment under its final name,
/// after a crash of the process (the same boot) and never loses them.
#[test]
fn events_appended_before_a_rolls_rename_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 120, |i| i as i64);
    let newest = log.segment();
    assert!(newest >= 2, "too few rolls: {newest}");
    drop(log);
    // As the writer left it had its process died between the roll and the rename.
    let files = evs_names(&path);
    let named = files
        .iter()
        .find(|n| n.starts_with(&format!("{newest:08}-")))
        .unwrap();
    let pending = format!(".next-{newest:08}.evs");
    std::fs::rename(path.join(named), path.join(&pending)).unwrap();
    assert_eq!(read_all(&path), model, "readers before the open");

    let log = LogWriter::open(&path).unwrap();
    assert_eq!(log.recovery().renamed, Some(newest));
    assert!(!log.recovery().is_clean());
    assert_eq!(log.event_count(), 120);
    drop(log);
    assert!(evs_names(&path).contains(named), "{:?}", evs_names(&path));
    assert_eq!(read_all(&path), model, "after the open");
    assert!(LogReader::open(&path).unwrap().verify().unwrap().is_ok());
    assert!(LogWriter::open(&path).unwrap().recovery().is_clean());
}

/// The same segment found after a reboot (the `LOCK` file names another boot): its
/// events were never flushed (a flush waits for the rename and the directory sync), and
/// the segment before may have lost events to the power loss, so the segment's place in
/// the log is not known. Readers do not read it, and the writer's open removes it and
/// continues after the segment before.
#[test]
fn a_segment_rolled_into_before_a_reboot_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let model = fill(&mut log, 120, |i| i as i64);
    let newest = log.segment();
    drop(log);
    let files = evs_names(&path);
    let named = files
        .iter()
        .find(|n| n.starts_with(&format!("{newest:08}-")))
        .unwrap();
    let pending = format!(".next-{newest:08}.evs");
    std::fs::rename(path.join(named), path.join(&pending)).unwrap();
    std::fs::write(path.join("LOCK"), "00000000-0000-0000-0000-000000000000\n").unwrap();
    let before: Model = model
        .iter()
        .filter(|(p, _, _)| p.segment() < newest)
        .cloned()
        .collect();
    assert!(before.len() < model.len());
    assert_eq!(read_all(&path), before);

    let mut log = LogWriter::open(&path).unwrap();
    assert_eq!(log.recovery().renamed, None);
    assert_eq!(log.event_count(), before.len() as u64);
    assert_eq!(log.segment(), newest - 1);
    assert!(!path.join(&pending).exists());
    log.append(1000, b"after").unwrap();
    drop(log);
    assert_eq!(read_all(&path).len(), before.len() + 1);
}

/// The writer records the boot in `LOCK` only when `LOCK` is the log's own regular
/// file: through a symbolic link it writes nothing into the file linked to.
#[test]
fn the_boot_is_never_written_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, small()).unwrap());
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"not the log's").unwrap();
    std::fs::remove_file(path.join("LOCK")).unwrap();
    std::os::unix::fs::symlink(&outside, path.join("LOCK")).unwrap();
    let mut log = LogWriter::open(&path).unwrap();
    log.append(1, b"x").unwrap();
    drop(log);
    assert_eq!(std::fs::read(&outside).unwrap(), b"not the log's");
    // Its own regular file gets the boot.
    std::fs::remove_file(path.join("LOCK")).unwrap();
    drop(LogWriter::open(&path).unwrap());
    let held = std::fs::read_to_string(path.join("LOCK")).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(held.trim(), boot.trim());
}

/// The name a log's next segment is prepared under is never taken from a file another
/// writer has open: the preparation fails (and the roll that needs it reports it) instead
/// of removing that file from under its writer, and every event appended before stays.
#[test]
fn a_file_another_writer_holds_under_the_next_segments_name_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, small()).unwrap();
    let held_path = path.join(".next-00000001.evs");
    let mut held = evstream::StreamWriter::create(&held_path, 8192).unwrap();
    held.append(1, b"another writer's event").unwrap();
    let mut appended = 0;
    let failed = loop {
        match log.append(appended, &payload(appended as u64)) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(
            appended < 10_000,
            "the log rolled over a file another writer holds"
        );
    };
    assert!(matches!(failed, Error::Locked { .. }), "{failed}");
    let reader = evstream::StreamReader::open(&held_path).unwrap();
    assert_eq!(reader.iter().count(), 1);
    drop(held);
    drop(log);
    // Once the other writer's file is gone, the log holds every event it appended.
    std::fs::remove_file(&held_path).unwrap();
    let events = LogReader::open(&path).unwrap().iter().unwrap().count();
    assert_eq!(events, appended as usize);
}

/// A log whose segment starts earlier than the segment before it ended (each segment
/// valid on its own: a file restored from elsewhere, or written by another program) is
/// damaged there, and `verify` says so where reading stops, rather than calling the
/// log whole while its iterator refuses to go on.
#[test]
fn verify_reports_a_segment_that_starts_before_the_one_before_it_ended() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::create_dir(&log).unwrap();
    std::fs::write(log.join("LOG"), "evstream-log 1\nsegment-size 65536\n").unwrap();
    let segment = |name: &str, stamps: &[i64]| {
        let mut writer = evstream::StreamWriter::create(log.join(name), 65536).unwrap();
        for &t in stamps {
            writer.append(t, b"reading").unwrap();
        }
        writer.flush().unwrap();
    };
    segment("00000000-00000000000000000000.evs", &[10, 20, 30]);
    segment("00000001-00000000000000000003.evs", &[25, 40]);

    let reader = LogReader::open(&log).unwrap();
    let check = reader.verify().unwrap();
    let (at, damage) = check.damage.expect("damage");
    assert_eq!((at.segment(), at.offset()), (1, 24));
    assert!(
        matches!(
            damage,
            evstream::LogDamage::Event(evstream::Corruption::TimestampOutOfOrder {
                previous: 30,
                got: 25
            })
        ),
        "{damage:?}"
    );
    assert_eq!(check.events, 3, "the events before it");
    // Reading stops at the same event.
    let (read, stopped) = read_until_error(&reader);
    assert_eq!(read, 3);
    assert!(stopped.is_some(), "the iterator refuses the segment too");
}

/// A flush that fails because an older segment could not be sealed (here: one of its
/// events damaged on disk below the watermark, which an open does not read, found when
/// the segment is read back to be indexed) poisons the writer: no append after it
/// returns `Ok` for an event that no flush can then make durable.
#[test]
fn a_flush_failed_in_an_older_segment_poisons_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    let mut ts = 0;
    while writer.segment() < 2 {
        writer.append(ts, &[b'a'; 100]).unwrap();
        ts += 1;
    }
    writer.append(ts, &[b'b'; 100]).unwrap();
    ts += 1;
    writer.append(ts, &[b'b'; 100]).unwrap();
    ts += 1;
    writer.flush().unwrap();
    drop(writer);
    // The second event's payload of the newest segment, below its durable watermark.
    let newest = LogReader::open(&path)
        .unwrap()
        .segment_files()
        .unwrap()
        .pop()
        .unwrap()
        .1;
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[24 + 116 + 16 + 5] ^= 0xff;
    std::fs::write(&newest, &bytes).unwrap();

    let mut writer = LogWriter::open(&path).unwrap();
    while writer.segment() == 2 {
        writer.append(ts, &[b'c'; 100]).unwrap();
        ts += 1;
    }
    assert!(
        writer.flush().is_err(),
        "the damaged segment cannot be sealed"
    );
    assert!(matches!(
        writer.append(ts, b"after"),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(writer.flush(), Err(Error::Poisoned { .. })));
}

/// `lag` and `commit_cursor` take exactly the positions `iter_from` takes: inside a
/// segment's header or past a segment's end is `NoSuchPosition` for all three, never a
/// lag or a committed cursor.
#[test]
fn lag_refuses_the_positions_iter_from_refuses() {
    let at = |segment, offset| Position::new(segment, offset).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    let mut last = at(0, 24);
    for i in 0..200 {
        last = writer.append(i, &[7_u8; 40]).unwrap();
    }
    drop(writer);
    let reader = LogReader::open(&path).unwrap();
    let end = reader.end().unwrap();
    assert!(end.segment() > 1);
    for position in [
        at(0, 0),
        at(0, 23),
        at(0, 4096),
        at(end.segment(), end.offset() + 1),
        at(end.segment(), 5000),
        at(end.segment() + 1, 24),
    ] {
        assert!(
            matches!(
                reader.iter_from(position),
                Err(Error::NoSuchPosition { .. })
            ),
            "iter_from {position}"
        );
        assert!(
            matches!(reader.lag(position), Err(Error::NoSuchPosition { .. })),
            "lag {position}: {:?}",
            reader.lag(position)
        );
        // Nor is a cursor committed there: it keeps its last position.
        assert!(matches!(
            reader.commit_cursor("c", position),
            Err(Error::NoSuchPosition { .. })
        ));
        assert_eq!(reader.cursor("c").unwrap(), None);
    }
    for position in [at(0, 24), last, end] {
        assert!(reader.iter_from(position).is_ok());
        assert!(reader.lag(position).is_ok());
        reader.commit_cursor("c", position).unwrap();
        assert_eq!(reader.cursor("c").unwrap(), Some(position));
    }
    assert_eq!(reader.lag(end).unwrap().events, 0);
    assert_eq!(reader.lag(last).unwrap().events, 1);
}

/// `create` in a directory that holds a log's segments whose `LOG` file was lost
/// refuses, whatever the segment size asked for, and changes nothing: no file is added,
/// and no segment's bytes are written over.
#[test]
fn create_over_the_segments_of_a_log_without_settings_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    for i in 0..300 {
        writer.append(i, &[9_u8; 40]).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    std::fs::remove_file(path.join("LOG")).unwrap();
    let snapshot = |path: &Path| {
        let mut files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name(), std::fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&path);
    for size in [4096, 8192] {
        let created = LogWriter::create(&path, LogOptions::default().segment_size(size));
        assert!(
            matches!(created, Err(Error::AlreadyExists { .. })),
            "segment size {size}: {created:?}"
        );
        assert!(
            snapshot(&path) == before,
            "segment size {size}: the directory changed"
        );
    }
}

/// A segment missing from the middle of a log (retention deletes the oldest first, so it
/// never leaves such a gap) stops a reader with an error that says so, after every event
/// before it; it is never reported as retention having taken it, and `stat` does not
/// count its events.
#[test]
fn a_segment_missing_from_the_middle_is_not_called_retired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    for i in 0..300 {
        writer.append(i, &[5_u8; 40]).unwrap();
    }
    drop(writer);
    let reader = LogReader::open(&path).unwrap();
    let segments = reader.segment_files().unwrap();
    assert!(segments.len() > 3);
    let before: usize = {
        let first = evstream::StreamReader::open(&segments[0].1)
            .unwrap()
            .iter()
            .count();
        let second = evstream::StreamReader::open(&segments[1].1)
            .unwrap()
            .iter()
            .count();
        first + second
    };
    let gone = evstream::StreamReader::open(&segments[2].1)
        .unwrap()
        .iter()
        .count() as u64;
    let all = reader.stat().unwrap().events;
    std::fs::remove_file(&segments[2].1).unwrap();
    // stat counts the events the log still holds.
    assert_eq!(reader.stat().unwrap().events, all - gone);
    let (read, stopped) = read_until_error(&reader);
    assert_eq!(read, before);
    assert!(
        matches!(stopped, Some(Error::NotALog { .. })),
        "{stopped:?}"
    );
}

/// A time whose first event at or after it may have been in a segment missing from the
/// middle of a log (every event before the gap is earlier) is refused with the error
/// that says so, by `seek_time` and `iter_since` alike: it is not answered with the
/// first event after the gap, which would skip the missing events without a word.
#[test]
fn a_time_that_falls_in_a_segment_missing_from_the_middle_is_not_found_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut writer = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
    for i in 0..300 {
        writer.append(i * 10, &[5_u8; 40]).unwrap();
    }
    drop(writer);
    let reader = LogReader::open(&path).unwrap();
    let segments = reader.segment_files().unwrap();
    assert!(segments.len() > 3);
    let first_of = |i: usize| {
        evstream::StreamReader::open(&segments[i].1)
            .unwrap()
            .iter()
            .next()
            .unwrap()
            .unwrap()
            .timestamp()
    };
    let (gone, after) = (first_of(2), first_of(3));
    std::fs::remove_file(&segments[2].1).unwrap();
    for ts in [gone - 5, gone, gone + 10, after - 10, after] {
        let sought = reader.seek_time(ts);
        assert!(
            matches!(sought, Err(Error::NotALog { .. })),
            "{ts}: {sought:?}"
        );
        let iter = reader.iter_since(ts).map(drop);
        assert!(matches!(iter, Err(Error::NotALog { .. })), "{ts}: {iter:?}");
    }
    // Times whose answer is on either side of the gap are found as before.
    let start = reader.start().unwrap();
    assert_eq!(reader.seek_time(0).unwrap(), Some(start));
    assert_eq!(
        reader.seek_time(gone - 10).unwrap().unwrap().segment(),
        segments[1].0
    );
    let next = reader.seek_time(after + 10).unwrap().unwrap();
    assert_eq!(next.segment(), segments[3].0);
    assert_eq!(
        reader
            .iter_since(after + 10)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .timestamp(),
        after + 10
    );
}

/// How many events a reader of the whole log yields before its first error, and that
/// error.
fn read_until_error(reader: &LogReader) -> (usize, Option<Error>) {
    let mut read = 0;
    for event in reader.iter().unwrap() {
        match event {
            Ok(_) => read += 1,
            Err(e) => return (read, Some(e)),
        }
    }
    (read, None)
}

/// A log deleted and made again at the same path is another log: an iterator of the old
/// one stops with `NotFound` instead of reading the new one's segments from the sequence
/// number it had reached, as if they followed its own.
#[test]
fn an_iterator_of_a_log_replaced_at_its_path_stops_with_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default().segment_size(4096);
    let mut log = LogWriter::create(&path, options.clone()).unwrap();
    while log.segment() < 3 {
        log.append(1, &[1; 100]).unwrap();
    }
    let reader = LogReader::open(&path).unwrap();
    let mut follow = reader.iter_from(reader.end().unwrap()).unwrap();
    assert!(follow.try_next().unwrap().is_none());
    drop(log);
    std::fs::remove_dir_all(&path).unwrap();
    let mut log = LogWriter::create(&path, options).unwrap();
    while log.segment() < 6 {
        log.append(2, &[2; 100]).unwrap();
    }
    for _ in 0..2 {
        match follow.next_timeout(Duration::from_millis(50)) {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

/// A segment sealed behind its writer's back while it held no event (a segment is a
/// stream file, which `StreamWriter::seal` seals) is rolled out of by the next writer and
/// stays in the log empty: a seek by time looks past it, and `stat` takes the log's
/// first event from the segments after it.
#[test]
fn an_empty_segment_sealed_behind_the_writers_back_hides_no_event_from_a_seek() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap());
    let first = LogReader::open(&path).unwrap().segment_files().unwrap()[0]
        .1
        .clone();
    let mut segment = evstream::StreamWriter::open(&first).unwrap();
    segment.seal().unwrap();
    drop(segment);
    let mut writer = LogWriter::open(&path).unwrap();
    let model = fill(&mut writer, 200, |i| 100 + i as i64 * 10);
    drop(writer);
    let reader = LogReader::open(&path).unwrap();
    assert_eq!(
        reader.segment_files().unwrap()[0].0,
        0,
        "the empty segment stays"
    );
    assert!(model[0].0.segment() >= 1);
    for probe in [
        i64::MIN,
        0,
        100,
        105,
        1000,
        1005,
        model[199].1,
        model[199].1 + 1,
    ] {
        let want = model.iter().find(|m| m.1 >= probe).map(|m| m.0);
        assert_eq!(reader.seek_time(probe).unwrap(), want, "seek {probe}");
        let since: Vec<Position> = reader
            .iter_since(probe)
            .unwrap()
            .map(|e| e.unwrap().position())
            .collect();
        let want: Vec<Position> = model.iter().filter(|m| m.1 >= probe).map(|m| m.0).collect();
        assert_eq!(since, want, "since {probe}");
    }
    let stat = reader.stat().unwrap();
    assert_eq!(stat.first_timestamp, Some(100));
    assert_eq!(stat.last_timestamp, Some(model[199].1));
}
