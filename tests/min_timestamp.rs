//! An event stamped `i64::MIN`, the earliest timestamp there is, is an event like any
//! other: streams and logs that hold one open, read, verify, take more events and
//! salvage, whether the library wrote them now or an earlier version of it did (which
//! stored such a stream's trailer exactly as this one does, and then refused it).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use evstream::salvage::{Found, Salvage};
use evstream::{LogOptions, LogReader, LogWriter, StreamReader, StreamWriter, WriterOptions};

/// A 4096-byte stream written by `evstream create --capacity 4096` then `evstream append
/// --format jsonl --sync` of one event stamped `i64::MIN` (payload `x`), by the version
/// before the trailer told "no durable event" by its count: its current trailer record
/// holds a durable count of 1 and a last durable timestamp of `i64::MIN`.
const OLD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/min_timestamp_v2.evs"
);

fn events(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let reader = StreamReader::open(path).unwrap();
    reader
        .iter()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

/// Every reader, a full check and a writer that checks every durable event accept
/// the stream, and it holds `expected`.
fn assert_valid(path: &Path, expected: &[(i64, &[u8])]) {
    let expected: Vec<(i64, Vec<u8>)> = expected.iter().map(|(t, p)| (*t, p.to_vec())).collect();
    assert_eq!(events(path), expected);
    let verification = StreamReader::open(path).unwrap().verify().unwrap();
    assert!(verification.is_ok(), "{verification:?}");
    assert_eq!(verification.events, expected.len() as u64);
    let writer =
        StreamWriter::open_with(path, WriterOptions::default().check_durable(true)).unwrap();
    assert!(writer.recovery().is_clean(), "{:?}", writer.recovery());
    assert_eq!(writer.last_timestamp(), expected.last().map(|e| e.0));
}

#[test]
fn a_stream_whose_first_event_is_stamped_i64_min_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    writer.append(i64::MIN, b"x").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_valid(&path, &[(i64::MIN, b"x")]);

    // A second event at the same time, flushed, and one after it.
    let mut writer = StreamWriter::open(&path).unwrap();
    writer.append(i64::MIN, b"y").unwrap();
    writer.flush().unwrap();
    writer.append(5, b"z").unwrap();
    drop(writer);
    assert_valid(&path, &[(i64::MIN, b"x"), (i64::MIN, b"y"), (5, b"z")]);
}

#[test]
fn a_sealed_stream_of_i64_min_events_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let mut writer = StreamWriter::create(&path, 4096).unwrap();
    writer.append(i64::MIN, b"x").unwrap();
    writer.seal().unwrap();
    drop(writer);
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.is_sealed());
    assert!(reader.verify().unwrap().is_ok());
    assert_eq!(events(&path), [(i64::MIN, b"x".to_vec())]);
}

/// A copy of the file the earlier version wrote.
fn old_file(dir: &Path) -> PathBuf {
    let path = dir.join("old.evs");
    std::fs::copy(OLD_FILE, &path).unwrap();
    path
}

#[test]
fn a_file_written_before_the_fix_opens_reads_verifies_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_file(dir.path());
    assert_valid(&path, &[(i64::MIN, b"x")]);
    // Nothing above was a repair: the file is as it was.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(OLD_FILE).unwrap()
    );

    let mut writer = StreamWriter::open(&path).unwrap();
    writer.append(i64::MIN, b"again").unwrap();
    writer.append(7, b"later").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_valid(
        &path,
        &[(i64::MIN, b"x"), (i64::MIN, b"again"), (7, b"later")],
    );
}

#[test]
fn salvage_of_a_file_written_before_the_fix_gives_a_live_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_file(dir.path());
    let mut salvage = Salvage::open(&path).unwrap();
    let copy = dir.path().join("copy.evs");
    let mut writer = StreamWriter::create(&copy, 4096).unwrap();
    while let Some(found) = salvage.next_found().unwrap() {
        match found {
            Found::Event(event) => {
                writer.append(event.timestamp, event.payload).unwrap();
            }
            Found::Damaged(range) => panic!("no damage expected: {range:?}"),
        }
    }
    writer.flush().unwrap();
    drop(writer);
    assert_valid(&copy, &[(i64::MIN, b"x")]);
    let mut writer = StreamWriter::open(&copy).unwrap();
    writer.append(1, b"more").unwrap();
    drop(writer);
    assert_valid(&copy, &[(i64::MIN, b"x"), (1, b"more")]);
}

fn log_events(dir: &Path) -> Vec<(i64, Vec<u8>)> {
    LogReader::open(dir)
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

#[test]
fn a_log_whose_events_are_stamped_i64_min_stays_usable_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let options = LogOptions::default().segment_size(4096);
    let mut writer = LogWriter::create(&log, options).unwrap();
    // Enough events to fill the first segment and roll into the second.
    let payload = [7u8; 500];
    let mut expected = Vec::new();
    for _ in 0..12 {
        writer.append(i64::MIN, &payload).unwrap();
        expected.push((i64::MIN, payload.to_vec()));
    }
    writer.flush().unwrap();
    assert!(writer.segment() > 0, "the log rolled");
    drop(writer);

    let verification = LogReader::open(&log).unwrap().verify().unwrap();
    assert!(verification.is_ok(), "{verification:?}");
    assert_eq!(verification.events, 12);
    assert_eq!(log_events(&log), expected);
    // Every sealed segment's index, and seeking by time through it.
    let reader = LogReader::open(&log).unwrap();
    assert_eq!(
        reader.seek_time(i64::MIN).unwrap(),
        Some(reader.start().unwrap())
    );

    let mut writer = LogWriter::open(&log).unwrap();
    assert!(writer.recovery().is_clean(), "{:?}", writer.recovery());
    assert_eq!(writer.last_timestamp(), Some(i64::MIN));
    writer.append(3, b"after").unwrap();
    drop(writer);
    expected.push((3, b"after".to_vec()));
    assert_eq!(log_events(&log), expected);
}

/// A writer killed right after a roll's rename, before its first append into the new
/// segment, leaves the newest segment empty: the log's last event is in the one before.
#[test]
fn a_log_knows_its_last_event_is_stamped_i64_min_when_its_newest_segment_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut writer = LogWriter::create(&log, LogOptions::default().segment_size(4096)).unwrap();
    writer.append(i64::MIN, b"x").unwrap();
    writer.flush().unwrap();
    drop(writer);
    drop(StreamWriter::create(log.join("00000001-00000000000000000001.evs"), 4096).unwrap());

    let mut writer = LogWriter::open(&log).unwrap();
    assert_eq!(writer.segment(), 1);
    assert_eq!(writer.last_timestamp(), Some(i64::MIN));
    writer.append(i64::MIN, b"same time").unwrap();
    drop(writer);
    assert_eq!(
        log_events(&log),
        [(i64::MIN, b"x".to_vec()), (i64::MIN, b"same time".to_vec())]
    );
}

#[test]
fn a_log_whose_segment_was_written_before_the_fix_opens_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    drop(LogWriter::create(&log, LogOptions::default().segment_size(4096)).unwrap());
    // The log's only segment, replaced by the stream the earlier version wrote (of the
    // same size): what such a version's log held after the same append.
    let segment = LogReader::open(&log).unwrap().segment_files().unwrap()[0]
        .1
        .clone();
    std::fs::copy(OLD_FILE, &segment).unwrap();
    let verification = LogReader::open(&log).unwrap().verify().unwrap();
    assert!(verification.is_ok(), "{verification:?}");
    let mut writer = LogWriter::open(&log).unwrap();
    assert_eq!(writer.last_timestamp(), Some(i64::MIN));
    writer.append(i64::MIN, b"y").unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert_eq!(
        log_events(&log),
        [(i64::MIN, b"x".to_vec()), (i64::MIN, b"y".to_vec())]
    );
}
