//! The turn between writer processes handed over without a flush, through the handover
//! record in `TURN` (docs/FORMAT.md, "Many writer processes"): a flush after another
//! process's unflushed turn still makes every event before it durable, and a record
//! that is damaged, of another boot, or that does not match the log is not trusted: the
//! next turn opens the log in full, repairing what it finds.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use evstream::{LogOptions, LogReader, LogWriter, SharedLogWriter, StreamReader, WriteBack};
use reliability_support::{child_test, env_count};

/// Length of the handover record, and where its fields are (FORMAT.md).
const RECORD_LEN: usize = 188;
const GENERATION: usize = 8;
const BOOT: usize = 16;
const WRITE_OFFSET: usize = 144;
const CHECKSUM: usize = 184;

/// Event `seq` of writer `key`: the key, the number, and filler.
fn payload(key: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(16));
    p.extend_from_slice(&key.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.resize(len.max(16), (key ^ seq) as u8);
    p
}

/// Every event of the log as (key, seq), checking that each reads back whole.
fn events(path: &Path) -> Vec<(u64, u64)> {
    let reader = LogReader::open(path).unwrap();
    reader
        .iter()
        .unwrap()
        .map(|event| {
            let event = event.unwrap();
            let p = event.payload();
            let key = u64::from_le_bytes(p[..8].try_into().unwrap());
            let seq = u64::from_le_bytes(p[8..16].try_into().unwrap());
            assert_eq!(p, payload(key, seq, p.len()).as_slice());
            (key, seq)
        })
        .collect()
}

/// The segment files of the log, oldest first.
fn segments(path: &Path) -> Vec<PathBuf> {
    let reader = LogReader::open(path).unwrap();
    reader
        .segment_files()
        .unwrap()
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

/// Creates a log of 1 MiB segments under lazy write-back at `path`.
fn create_lazy_log(path: &Path) {
    let options = LogOptions::default()
        .segment_size(1 << 20)
        .write_back(WriteBack::Lazy);
    drop(LogWriter::create(path, options).unwrap());
}

#[test]
#[ignore = "child process of `a_flush_after_another_process_unflushed_turn_makes_its_events_durable`"]
fn turn_child() {
    let Some(path) = std::env::var_os("EVSTREAM_HANDOVER_PATH").map(PathBuf::from) else {
        return;
    };
    let count = env_count("EVSTREAM_HANDOVER_EVENTS", 0);
    let log = SharedLogWriter::open(&path).unwrap();
    if count == 0 {
        // Only opens (the crash point tests abort it there).
        return;
    }
    for seq in 0..count {
        log.append(seq as i64, &payload(1, seq, 1000)).unwrap();
    }
    let mut out = std::io::stdout().lock();
    out.write_all(b"APPENDED\n").unwrap();
    out.flush().unwrap();
    // Idle, holding the turn until another process wants it; never flushes.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_flush_after_another_process_unflushed_turn_makes_its_events_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    // Lazy write-back: the child's turn leaves up to 8 segments it rolled past unsealed,
    // and its handover leaves them so to this writer, whose flush seals them.
    create_lazy_log(&path);
    let theirs = 12_000;
    let mut child = child_test("turn_child")
        .env("EVSTREAM_HANDOVER_PATH", &path)
        .env("EVSTREAM_HANDOVER_EVENTS", theirs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The test harness's own lines share the child's output.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.ends_with("APPENDED\n") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child stopped");
    }

    // Takes the turn from the idle child, which hands it over without a flush, and
    // kills it at once: whatever its background thread had not sealed yet stays so.
    let log = SharedLogWriter::open(&path).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let turn = std::fs::read(path.join("TURN")).unwrap();
    assert!(
        turn.len() >= RECORD_LEN && turn[..8] == [0; 8],
        "the child left a handover record, and this turn took it"
    );
    let all = segments(&path);
    assert!(
        all.len() > 9,
        "the child rolled through {} segments",
        all.len()
    );
    let newest = StreamReader::open(all.last().unwrap()).unwrap();
    assert!(
        newest.durable_offset() < newest.write_offset(),
        "the handover did not flush the child's events"
    );
    drop(newest);

    let ours = 10;
    for seq in 0..ours {
        log.append(theirs as i64 + seq as i64, &payload(2, seq, 100))
            .unwrap();
    }
    log.flush().unwrap();

    // Everything is durable: each segment before the newest sealed (flushed first), the
    // newest flushed up to its last event.
    let all = segments(&path);
    for segment in &all[..all.len() - 1] {
        assert!(
            StreamReader::open(segment).unwrap().is_sealed(),
            "{} is sealed after the flush",
            segment.display()
        );
    }
    let newest = StreamReader::open(all.last().unwrap()).unwrap();
    assert_eq!(newest.durable_offset(), newest.write_offset());
    drop(newest);
    let expected: Vec<(u64, u64)> = (0..theirs)
        .map(|seq| (1, seq))
        .chain((0..ours).map(|seq| (2, seq)))
        .collect();
    assert_eq!(events(&path), expected);
    drop(log);
}

/// Whether each segment of the log but the newest is sealed, oldest first.
fn sealed_before_newest(path: &Path) -> Vec<bool> {
    let all = segments(path);
    all[..all.len() - 1]
        .iter()
        .map(|segment| StreamReader::open(segment).unwrap().is_sealed())
        .collect()
}

/// Under lazy write-back, a writer that hands the log to another process's writer
/// leaves the segments it rolled past to that writer, which seals them as its own come
/// due: never more than 8 unsealed behind the newest (its own and those left), and every
/// one sealed and indexed once the last writer closes, with every event in its place.
#[test]
fn a_lazy_handover_leaves_its_retired_segments_to_the_next_writer_which_seals_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    create_lazy_log(&path);
    // About a thousand 1,000-byte events a segment.
    let theirs = 3_500;
    let first = SharedLogWriter::open(&path).unwrap();
    for seq in 0..theirs {
        first.append(seq as i64, &payload(1, seq, 1000)).unwrap();
    }
    // Another writer (another process's, as far as the turn goes) takes the turn from
    // the idle first one, whose close hands the log on.
    let second = SharedLogWriter::open(&path).unwrap();
    let left = sealed_before_newest(&path);
    assert!(
        left.len() >= 3,
        "the first writer rolled past {} segments",
        left.len()
    );
    assert!(
        left.iter().all(|sealed| !sealed),
        "the handover left them unsealed: {left:?}"
    );

    // Nine more segments: 12 behind the newest, more than the 8 lazy write-back lets
    // wait, the oldest (those left) first.
    let ours = 9_500;
    for seq in 0..ours {
        second
            .append(theirs as i64 + seq as i64, &payload(2, seq, 1000))
            .unwrap();
    }
    let began = Instant::now();
    let unsealed = loop {
        let sealed = sealed_before_newest(&path);
        let unsealed = sealed.iter().filter(|sealed| !**sealed).count();
        assert!(
            sealed.len() >= 12,
            "{} segments behind the newest",
            sealed.len()
        );
        if unsealed <= 8 || began.elapsed() > Duration::from_secs(20) {
            assert!(
                sealed.iter().take_while(|sealed| **sealed).count() == sealed.len() - unsealed,
                "sealed oldest first: {sealed:?}"
            );
            break unsealed;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(unsealed <= 8, "{unsealed} retired segments wait unsealed");

    // The last writer to close, with no one waiting, seals them all.
    drop(second);
    drop(first);
    let all = segments(&path);
    for (seq, segment) in all[..all.len() - 1].iter().enumerate() {
        assert!(
            StreamReader::open(segment).unwrap().is_sealed(),
            "{} is sealed",
            segment.display()
        );
        assert!(
            path.join(format!("{seq:08}.idx")).exists(),
            "segment {seq} is indexed"
        );
    }
    let expected: Vec<(u64, u64)> = (0..theirs)
        .map(|seq| (1, seq))
        .chain((0..ours).map(|seq| (2, seq)))
        .collect();
    assert_eq!(events(&path), expected);
}

/// Has the idle holder of the turn (a `SharedLogWriter` of this process with no call
/// under way) give it up, with no process taking it: holds `WANT` as a waiting process
/// does until the handover record is in `TURN`.
fn hand_over_to_nobody(path: &Path) {
    let want = File::open(path.join("WANT")).unwrap();
    want.lock_shared().unwrap();
    let began = Instant::now();
    loop {
        let turn = std::fs::read(path.join("TURN")).unwrap();
        if turn.len() >= RECORD_LEN && &turn[..8] == b"evsturn1" {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the turn was not handed over"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    want.unlock().unwrap();
}

/// Rewrites `at..at + bytes.len()` of the record in `TURN`, and its checksum if `seal`.
fn edit_record(path: &Path, at: usize, bytes: &[u8], seal: bool) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("TURN"))
        .unwrap();
    let mut record = [0u8; RECORD_LEN];
    file.read_exact_at(&mut record, 0).unwrap();
    record[at..at + bytes.len()].copy_from_slice(bytes);
    if seal {
        let crc = crc32fast::hash(&record[..CHECKSUM]);
        record[CHECKSUM..].copy_from_slice(&crc.to_le_bytes());
    }
    file.write_all_at(&record, 0).unwrap();
}

/// The generation of the record in `TURN`.
fn generation(path: &Path) -> u64 {
    let turn = std::fs::read(path.join("TURN")).unwrap();
    u64::from_le_bytes(turn[GENERATION..GENERATION + 8].try_into().unwrap())
}

#[test]
fn a_damaged_or_foreign_record_is_not_trusted_and_the_turn_opens_the_log_in_full() {
    type Edit = fn(&Path);
    let cases: [(&str, Option<Edit>); 4] = [
        ("an intact record", None),
        (
            "a record that fails its checksum",
            Some(|path| {
                edit_record(path, WRITE_OFFSET, &[0xff], false);
            }),
        ),
        (
            "a record of another boot",
            Some(|path| {
                edit_record(path, BOOT, b"not-this-boot-00000000000000000000", true);
            }),
        ),
        (
            "a record that does not match the newest segment",
            Some(|path| {
                let turn = std::fs::read(path.join("TURN")).unwrap();
                let offset =
                    u64::from_le_bytes(turn[WRITE_OFFSET..WRITE_OFFSET + 8].try_into().unwrap());
                edit_record(path, WRITE_OFFSET, &(offset - 8).to_le_bytes(), true);
            }),
        ),
    ];
    for (case, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let first =
            SharedLogWriter::create(&path, LogOptions::default().segment_size(1 << 20)).unwrap();
        let mut last = None;
        for seq in 0..50 {
            last = Some(first.append(seq, &payload(1, seq as u64, 40)).unwrap());
        }
        hand_over_to_nobody(&path);
        assert_eq!(
            generation(&path),
            1,
            "{case}: the first turn was opened in full"
        );
        let Some(edit) = edit else {
            // The next turn opens from the record, and goes on after the last event.
            let next = SharedLogWriter::open(&path).unwrap();
            assert!(next.recovery().is_clean(), "{case}");
            next.append(50, &payload(2, 0, 40)).unwrap();
            drop(next);
            assert_eq!(
                generation(&path),
                2,
                "{case}: the turn was opened from the record"
            );
            assert_eq!(events(&path).len(), 51, "{case}");
            drop(first);
            continue;
        };
        // The last event, never flushed, damaged: only a full open looks at it.
        let last = last.unwrap();
        let segment = segments(&path).pop().unwrap();
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.write_all_at(&[0xee], last.offset() + 16 + 20).unwrap();
        drop(file);
        edit(&path);
        let next = SharedLogWriter::open(&path).unwrap();
        let recovery = next.recovery();
        assert!(
            recovery.newest.torn_at.is_some() && recovery.newest.dropped_events == 1,
            "{case}: the full open repairs the damaged tail: {recovery:?}"
        );
        drop(next);
        assert_eq!(generation(&path), 1, "{case}: the turn was opened in full");
        assert_eq!(events(&path).len(), 49, "{case}");
        drop(first);
    }
}

/// Starts `turn_child` appending `count` events to the log at `path` (none: it only
/// opens it), aborting at the crash point `failpoint` if one is given; waits until it
/// appended them.
#[cfg(feature = "failpoints")]
fn holder(path: &Path, count: u64, failpoint: Option<&str>) -> std::process::Child {
    let mut command = child_test("turn_child");
    command
        .env("EVSTREAM_HANDOVER_PATH", path)
        .env("EVSTREAM_HANDOVER_EVENTS", count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(point) = failpoint {
        command.env("EVSTREAM_FAILPOINT", point);
    }
    let mut child = command.spawn().unwrap();
    if count > 0 {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.ends_with("APPENDED\n") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the child stopped");
        }
    }
    child
}

/// Waits for `child` and asserts it aborted at its crash point.
#[cfg(feature = "failpoints")]
fn assert_aborted(mut child: std::process::Child) {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_holder_killed_after_writing_the_record_or_after_opening_from_one_loses_nothing() {
    let theirs = 3000;
    let expected: Vec<(u64, u64)> = (0..theirs).map(|seq| (1, seq)).chain([(2, 0)]).collect();
    let options = LogOptions::default().segment_size(1 << 20);

    // Killed between writing the record and releasing the turn: the record stands.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, options.clone()).unwrap());
    let child = holder(&path, theirs, Some("handover:after_record"));
    // The idle child hands the turn over to this open, and dies right after the record.
    let log = SharedLogWriter::open(&path).unwrap();
    assert_aborted(child);
    assert!(log.recovery().is_clean());
    log.append(theirs as i64, &payload(2, 0, 100)).unwrap();
    drop(log);
    assert_eq!(
        generation(&path),
        2,
        "the turn was opened from the dead holder's record"
    );
    assert_eq!(events(&path), expected);

    // Killed right after opening from a record: it took the record, so none is left, and
    // the next turn opens the log in full.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, options).unwrap());
    let mut first = holder(&path, theirs, None);
    assert_aborted(holder(&path, 0, Some("handover:after_open")));
    let log = SharedLogWriter::open(&path).unwrap();
    log.append(theirs as i64, &payload(2, 0, 100)).unwrap();
    drop(log);
    assert_eq!(generation(&path), 1, "the turn was opened in full");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(events(&path), expected);
}

/// The payload of the append a plain writer is killed in.
const DEAD: [u8; 200] = [0x55; 200];

#[test]
#[ignore = "child process of `an_append_killed_between_two_turns_never_comes_back`"]
fn plain_writer_child() {
    let Some(path) = std::env::var_os("EVSTREAM_PLAIN_PATH").map(PathBuf::from) else {
        return;
    };
    // Killed at the crash point inside its first append: written, never published.
    if path.is_dir() {
        let mut log = LogWriter::open(&path).unwrap();
        log.append(i64::MAX - 1, &DEAD).unwrap();
    } else {
        let mut writer = evstream::StreamWriter::open(&path).unwrap();
        writer.append(i64::MAX - 1, &DEAD).unwrap();
    }
}

/// What a power loss can leave of `file` once the page at `at` went back to
/// `page`: every other page as in the page cache.
#[cfg(feature = "failpoints")]
fn power_loss_image(file: &Path, image: &Path, at: u64, page: &[u8]) {
    std::fs::copy(file, image).unwrap();
    let out = OpenOptions::new().write(true).open(image).unwrap();
    out.write_all_at(page, at).unwrap();
}

/// A writer that opens between two turns and is killed in its first append, before
/// the append returned (so before it changed anything the handover record is checked
/// against), leaves the event's bytes past the write offset. The next turn must not
/// trust the record over them: the event never comes back, not to a reader after that
/// turn, nor after a power loss that keeps the header's new write offset but not the
/// page of the next turn's appends (the page as the turn's open left it on the disk),
/// which end past the killed event's end.
#[cfg(feature = "failpoints")]
#[test]
fn an_append_killed_between_two_turns_never_comes_back() {
    use evstream::{SharedStreamWriter, StreamWriter};
    let dead = |payloads: &[Vec<u8>]| payloads.iter().any(|p| p.as_slice() == DEAD);
    let killed = |path: &Path| {
        let status = child_test("plain_writer_child")
            .env("EVSTREAM_PLAIN_PATH", path)
            .env("EVSTREAM_FAILPOINT", "append:after_header")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    };
    let page_at = |offset: u64| offset / 4096 * 4096;
    let read_page = |file: &Path, at: u64| {
        let mut page = vec![0u8; 4096];
        File::open(file)
            .unwrap()
            .read_exact_at(&mut page, at)
            .unwrap();
        page
    };

    // A stream file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    drop(StreamWriter::create(&path, 1 << 20).unwrap());
    let shared = SharedStreamWriter::open(&path).unwrap();
    for seq in 0..50 {
        shared.append(seq, &payload(1, seq as u64, 100)).unwrap();
    }
    shared.flush().unwrap();
    let end = shared.write_offset();
    drop(shared);
    assert_eq!(
        std::fs::read(beside(&path, ".turn")).unwrap()[..8],
        *b"evsturs1"
    );
    killed(&path);
    let shared = SharedStreamWriter::open(&path).unwrap();
    let page = read_page(&path, page_at(end));
    shared.append(100, &payload(2, 0, 300)).unwrap();
    shared.append(101, &payload(2, 1, 300)).unwrap();
    drop(shared);
    let stream_payloads = |path: &Path| -> Vec<Vec<u8>> {
        let reader = StreamReader::open(path).unwrap();
        reader
            .iter()
            .map(|e| e.unwrap().payload().to_vec())
            .collect()
    };
    assert!(!dead(&stream_payloads(&path)));
    let image = dir.path().join("image.evs");
    power_loss_image(&path, &image, page_at(end), &page);
    drop(StreamWriter::open(&image).unwrap());
    let after = stream_payloads(&image);
    assert!(
        !dead(&after),
        "the killed append came back after a power loss"
    );
    assert_eq!(after.len(), 50, "the flushed events survive");

    // A log.
    let path = dir.path().join("log");
    drop(LogWriter::create(&path, LogOptions::default().segment_size(1 << 20)).unwrap());
    let shared = SharedLogWriter::open(&path).unwrap();
    for seq in 0..50 {
        shared.append(seq, &payload(1, seq as u64, 100)).unwrap();
    }
    shared.flush().unwrap();
    let end = shared.end().offset();
    drop(shared);
    assert_eq!(std::fs::read(path.join("TURN")).unwrap()[..8], *b"evsturn1");
    killed(&path);
    let shared = SharedLogWriter::open(&path).unwrap();
    let segment = segments(&path).pop().unwrap();
    let page = read_page(&segment, page_at(end));
    shared.append(100, &payload(2, 0, 300)).unwrap();
    shared.append(101, &payload(2, 1, 300)).unwrap();
    drop(shared);
    let log_payloads = |path: &Path| -> Vec<Vec<u8>> {
        let reader = LogReader::open(path).unwrap();
        let events = reader.iter().unwrap();
        events.map(|e| e.unwrap().payload().to_vec()).collect()
    };
    assert!(!dead(&log_payloads(&path)));
    let image = dir.path().join("image");
    std::fs::create_dir(&image).unwrap();
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), image.join(entry.file_name())).unwrap();
        }
    }
    power_loss_image(
        &segment,
        &image.join(segment.file_name().unwrap()),
        page_at(end),
        &page,
    );
    drop(LogWriter::open(&image).unwrap());
    let after = log_payloads(&image);
    assert!(
        !dead(&after),
        "the killed append came back after a power loss"
    );
    assert_eq!(after.len(), 50, "the flushed events survive");
}

/// `NAME` with `suffix` added.
#[cfg(feature = "failpoints")]
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A file by the name of a turn file that evstream did not make (a user's
/// `data.evs.turn`, a `TURN` in a log's directory) is never written: opening a shared
/// writer is refused with a typed error naming it, and the file, and the stream or log,
/// stay byte for byte as they were; a plain writer's open leaves it alone too.
#[test]
fn a_foreign_turn_file_is_refused_and_left_unchanged() {
    use evstream::{Error, SharedStreamWriter, StreamWriter};
    let dir = tempfile::tempdir().unwrap();
    let foreign: Vec<u8> = (0..1024_u32).map(|i| (i * 7 + 1) as u8).collect();
    let short = b"notes about data.evs\n".to_vec();

    let stream = dir.path().join("data.evs");
    let mut writer = StreamWriter::create(&stream, 1 << 20).unwrap();
    writer.append(1, b"kept").unwrap();
    writer.flush().unwrap();
    drop(writer);
    let turn = dir.path().join("data.evs.turn");
    for contents in [&foreign, &short] {
        std::fs::write(&turn, contents).unwrap();
        let before = std::fs::read(&stream).unwrap();
        match SharedStreamWriter::open(&stream) {
            Err(Error::Io { path, .. }) => assert_eq!(path, turn),
            other => panic!("expected an error naming the turn file, got {other:?}"),
        }
        assert_eq!(&std::fs::read(&turn).unwrap(), contents);
        assert_eq!(std::fs::read(&stream).unwrap(), before);
        drop(StreamWriter::open(&stream).unwrap());
        assert_eq!(&std::fs::read(&turn).unwrap(), contents);
    }

    let log = dir.path().join("log");
    let mut writer = LogWriter::create(&log, LogOptions::default().segment_size(1 << 20)).unwrap();
    writer.append(1, b"kept").unwrap();
    writer.flush().unwrap();
    drop(writer);
    std::fs::write(log.join("TURN"), &foreign).unwrap();
    let segment = segments(&log).pop().unwrap();
    let before = std::fs::read(&segment).unwrap();
    match SharedLogWriter::open(&log) {
        Err(Error::NotALog { path, .. }) => assert_eq!(path, log.join("TURN")),
        other => panic!("expected NotALog naming TURN, got {other:?}"),
    }
    assert_eq!(std::fs::read(log.join("TURN")).unwrap(), foreign);
    assert_eq!(std::fs::read(&segment).unwrap(), before);
    drop(LogWriter::open(&log).unwrap());
    assert_eq!(std::fs::read(log.join("TURN")).unwrap(), foreign);
    let reader = LogReader::open(&log).unwrap();
    let kept: Vec<Vec<u8>> = reader
        .iter()
        .unwrap()
        .map(|e| e.unwrap().payload().to_vec())
        .collect();
    assert_eq!(kept, [b"kept".to_vec()]);
}

#[test]
#[ignore = "child process of `an_open_refused_for_want_of_permission_leaves_no_turn_file`"]
fn unprivileged_open_child() {
    let Some(path) = std::env::var_os("EVSTREAM_UNPRIVILEGED_PATH").map(PathBuf::from) else {
        return;
    };
    let refused = if path.is_dir() {
        SharedLogWriter::open(&path).is_err()
    } else {
        evstream::SharedStreamWriter::open(&path).is_err()
    };
    assert!(
        refused,
        "a user who may not write {} was let in",
        path.display()
    );
}

/// A user who may not write a stream or log (here: `nobody`, in a directory anyone may
/// write) gets an error from a shared writer's open and leaves no turn file behind: the
/// owner's writers then still take turns. (Needs root, to run the child as `nobody`,
/// and `setpriv`; skipped otherwise.)
#[test]
fn an_open_refused_for_want_of_permission_leaves_no_turn_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !root || !setpriv {
        eprintln!("skipped: needs root and setpriv to run a child as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let stream = dir.path().join("s.evs");
    drop(evstream::StreamWriter::create(&stream, 1 << 20).unwrap());
    let log = dir.path().join("log");
    drop(LogWriter::create(&log, LogOptions::default().segment_size(1 << 20)).unwrap());
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = std::env::current_exe().unwrap();
    // The test binary must be reachable by nobody.
    let mut reachable = true;
    for ancestor in exe.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor).map_or(0, |m| m.mode());
        reachable &= mode & 0o001 != 0;
    }
    if !reachable {
        eprintln!("skipped: the test binary is not reachable by nobody");
        return;
    }
    for path in [&stream, &log] {
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args([
                "unprivileged_open_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env("EVSTREAM_UNPRIVILEGED_PATH", path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{}: {status}", path.display());
    }
    for name in ["s.evs.turn", "s.evs.want", "log/TURN", "log/WANT"] {
        assert!(!dir.path().join(name).exists(), "{name} was left behind");
    }
    // The owner's writers still take turns.
    let first = evstream::SharedStreamWriter::open(&stream).unwrap();
    first.append(1, b"one").unwrap();
    drop(first);
    let second = evstream::SharedStreamWriter::open(&stream).unwrap();
    second.append(2, b"two").unwrap();
    let first = SharedLogWriter::open(&log).unwrap();
    first.append(1, b"one").unwrap();
    drop(first);
    SharedLogWriter::open(&log)
        .unwrap()
        .append(2, b"two")
        .unwrap();
}

#[test]
#[ignore = "child process of `a_writer_opened_by_a_relative_path_keeps_to_its_file_when_the_working_directory_changes`"]
fn relative_path_child() {
    let Some(first) = std::env::var_os("EVSTREAM_RELATIVE_FIRST").map(PathBuf::from) else {
        return;
    };
    let second = PathBuf::from(std::env::var_os("EVSTREAM_RELATIVE_SECOND").unwrap());
    std::env::set_current_dir(&first).unwrap();
    let log = SharedLogWriter::open("log").unwrap();
    let stream = evstream::SharedStreamWriter::open("s.evs").unwrap();
    log.append(1, b"one").unwrap();
    stream.append(1, b"one").unwrap();
    // The program moves to another directory, which holds a log and a stream of the
    // same names; another writer of each (as another process) takes a turn, so that
    // the next append opens the writer again.
    std::env::set_current_dir(&second).unwrap();
    let other = SharedLogWriter::open(first.join("log")).unwrap();
    other.append(2, b"two").unwrap();
    drop(other);
    let other = evstream::SharedStreamWriter::open(first.join("s.evs")).unwrap();
    other.append(2, b"two").unwrap();
    drop(other);
    log.append(3, b"three").unwrap();
    stream.append(3, b"three").unwrap();
    assert_eq!(log.dir(), Path::new("log"));
    assert_eq!(stream.path(), Path::new("s.evs"));
    // Errors name the files as the program did: here, the stream held by a writer that
    // keeps it to itself once the turn went to another writer and was given up.
    drop(evstream::SharedStreamWriter::open(first.join("s.evs")).unwrap());
    let alone = evstream::StreamWriter::open(first.join("s.evs")).unwrap();
    match stream.append(4, b"four") {
        Err(evstream::Error::Locked { path }) => assert_eq!(path, Path::new("s.evs")),
        other => panic!("{other:?}"),
    }
    drop(alone);
    log.flush().unwrap();
    stream.flush().unwrap();
}

/// A shared writer opened by a relative path opens its file again at every turn: by
/// the path it was given then, not by what the path names from another working
/// directory (the events appended after the program changed its directory went to a log
/// and a stream of the same names there, at positions that the program was told were
/// its own log's).
#[test]
fn a_writer_opened_by_a_relative_path_keeps_to_its_file_when_the_working_directory_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for d in [&first, &second] {
        std::fs::create_dir(d).unwrap();
        create_lazy_log(&d.join("log"));
        drop(evstream::StreamWriter::create(d.join("s.evs"), 1 << 20).unwrap());
    }
    let out = child_test("relative_path_child")
        .env("EVSTREAM_RELATIVE_FIRST", &first)
        .env("EVSTREAM_RELATIVE_SECOND", &second)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (d, expected) in [(&first, vec![1, 2, 3]), (&second, vec![])] {
        let log: Vec<i64> = LogReader::open(d.join("log"))
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| e.unwrap().timestamp())
            .collect();
        let stream: Vec<i64> = StreamReader::open(d.join("s.evs"))
            .unwrap()
            .iter()
            .map(|e| e.unwrap().timestamp())
            .collect();
        assert_eq!(log, expected, "the log in {}", d.display());
        assert_eq!(stream, expected, "the stream in {}", d.display());
    }
}

/// Under eager write-back a process seals the segments its turn rolled past after it
/// gave the turn up, writing each index under a temporary name (`.idx-N.tmp`) and
/// renaming it into place, while the next turn's open removes what earlier writers
/// left, temporaries included: a temporary renamed away between the open's listing and
/// its removal costs the open nothing (it failed with `Io { op: "remove" }`, not
/// found, and the append that took the turn with it). Here a thread writes and renames
/// index temporaries as such a sealing thread does, over and over, while writers open.
#[test]
fn an_index_renamed_into_place_during_a_turns_open_fails_no_open() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(1 << 20)
        .write_back(WriteBack::Eager);
    drop(LogWriter::create(&path, options).unwrap());
    let stop = AtomicBool::new(false);
    let failed = std::thread::scope(|s| {
        s.spawn(|| {
            let names: Vec<(PathBuf, PathBuf)> = (1..=16)
                .map(|seq| {
                    (
                        path.join(format!(".idx-{seq:08}.tmp")),
                        path.join(format!("{seq:08}.idx")),
                    )
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for (temp, _) in &names {
                    std::fs::write(temp, b"index").unwrap();
                }
                // As the sealing thread, which writes no index if the open removed
                // its temporary first.
                for (temp, index) in &names {
                    let _ = std::fs::rename(temp, index);
                }
            }
        });
        let failed: Vec<evstream::Error> = (0..500)
            .filter_map(|_| SharedLogWriter::open(&path).err())
            .collect();
        stop.store(true, Ordering::Relaxed);
        failed
    });
    assert!(
        failed.is_empty(),
        "{} of 500 opens failed, the first with {:?}",
        failed.len(),
        failed.first()
    );
}
