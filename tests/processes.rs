//! A writer and a reader in different processes, sharing one stream file.
//!
//! The test binary re-executes itself as the child: `EVSTREAM_CHILD` selects its role.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evstream::{StreamReader, StreamWriter, format::STREAM_HEADER_LEN};
use reliability_support::spawn_child;

const EVENTS: u64 = 50_000;

fn payload(i: u64) -> Vec<u8> {
    let len = (i % 97) as usize * 3;
    let mut v = i.to_le_bytes().to_vec();
    v.extend((0..len).map(|j| (i as usize + j) as u8));
    v
}

fn write_events(path: &Path) {
    let mut writer = StreamWriter::open(path).unwrap();
    for i in 0..EVENTS {
        writer.append(i as i64, &payload(i)).unwrap();
        if i % 5000 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    writer.flush().unwrap();
}

/// Follows the stream until every event arrived; panics on any mismatch.
fn follow_events(path: &Path) {
    let reader = StreamReader::open(path).unwrap();
    let mut follow = reader.follow(STREAM_HEADER_LEN).unwrap();
    for i in 0..EVENTS {
        let event = follow
            .next_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("event {i} did not arrive within 30 s"));
        assert_eq!(event.timestamp(), i as i64);
        assert_eq!(event.payload(), payload(i));
    }
}

/// Events per batch in the batch test: a snapshot must always hold a multiple of it.
const BATCH: u64 = 7;
/// Batches the batch test appends.
const BATCHES: u64 = 3000;

fn append_batches(path: &Path) {
    let mut writer = StreamWriter::open(path).unwrap();
    for b in 0..BATCHES {
        let payloads: Vec<Vec<u8>> = (b * BATCH..(b + 1) * BATCH).map(payload).collect();
        let events: Vec<(i64, &[u8])> = payloads
            .iter()
            .zip(b * BATCH..)
            .map(|(p, i)| (i as i64, p.as_slice()))
            .collect();
        writer.append_batch(&events).unwrap();
        if b % 300 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Takes snapshot after snapshot until every batch arrived; panics if one ever holds part
/// of a batch or an event that differs from what was appended.
fn watch_batches(path: &Path) {
    let mut reader = StreamReader::open(path).unwrap();
    let mut seen = 0u64;
    let mut offset = STREAM_HEADER_LEN;
    let mut snapshots = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen < BATCHES * BATCH {
        assert!(
            std::time::Instant::now() < deadline,
            "only {seen} events in 60 s"
        );
        reader.refresh().unwrap();
        for event in reader.iter_from(offset).unwrap() {
            let event = event.unwrap();
            assert_eq!(event.timestamp(), seen as i64);
            assert_eq!(event.payload(), payload(seen));
            offset = event.next_offset();
            seen += 1;
        }
        assert_eq!(seen % BATCH, 0, "a snapshot ended inside a batch");
        snapshots += 1;
    }
    eprintln!("{snapshots} snapshots");
}

/// Runs the child's role when this process was started as a child; returns whether it was.
fn run_as_child() -> bool {
    let Ok(role) = std::env::var("EVSTREAM_CHILD") else {
        return false;
    };
    let path = std::env::var("EVSTREAM_CHILD_PATH").unwrap();
    match role.as_str() {
        "writer" => write_events(Path::new(&path)),
        "reader" => follow_events(Path::new(&path)),
        "batch_watcher" => watch_batches(Path::new(&path)),
        other => panic!("unknown role {other}"),
    }
    true
}

#[test]
fn reader_process_follows_writer_in_this_process() {
    if run_as_child() {
        return;
    }
    write_here_read_in_child(
        "reader",
        "reader_process_follows_writer_in_this_process",
        write_events,
    );
}

/// Creates a stream, starts a child in `role` (running `test`) on it, calls `write` here
/// on it, and asserts that the child succeeds.
fn write_here_read_in_child(role: &str, test: &str, write: fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    drop(StreamWriter::create(&path, 64 << 20).unwrap());
    let mut child = spawn_child(role, test, &path);
    write(&path);
    assert!(child.wait().unwrap().success(), "{role} process failed");
}

#[test]
fn reader_here_follows_writer_process() {
    if run_as_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("y.evs");
    drop(StreamWriter::create(&path, 64 << 20).unwrap());
    let mut child = spawn_child("writer", "reader_here_follows_writer_process", &path);
    follow_events(&path);
    assert!(child.wait().unwrap().success(), "writer process failed");
    // The child's lock died with it: a writer here can take over at once.
    let writer = StreamWriter::open(&path).unwrap();
    assert!(writer.recovery().is_clean());
    assert_eq!(writer.event_count(), EVENTS);
}

/// Runs `test` of this binary as a child in `role`, with piped standard input and output,
/// and waits until it prints a line containing `marker`.
fn spawn_until(
    test: &str,
    role: &str,
    path: &Path,
    marker: &str,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env("EVSTREAM_CHILD", role)
        .env("EVSTREAM_CHILD_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(marker) {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{role} ended early");
    }
    (child, out)
}

#[test]
fn a_writer_in_another_process_holds_the_lock() {
    if std::env::var("EVSTREAM_CHILD").as_deref() == Ok("holder") {
        let path = std::env::var("EVSTREAM_CHILD_PATH").unwrap();
        // Another test thread of the parent may be forking at the instant the parent's
        // writer closes: the forked child shares the lock until its exec, which a loaded
        // machine can delay past the open's grace period. Ride that out.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let _writer = loop {
            match StreamWriter::open(&path) {
                Err(evstream::Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        println!("locked");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        return;
    }
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.evs");
    drop(StreamWriter::create(&path, 4096).unwrap());
    let (mut child, _out) = spawn_until(
        "a_writer_in_another_process_holds_the_lock",
        "holder",
        &path,
        "locked",
    );
    assert!(matches!(
        StreamWriter::open(&path),
        Err(evstream::Error::Locked { .. })
    ));
    assert!(StreamReader::open(&path).unwrap().writer_active().unwrap());
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!StreamReader::open(&path).unwrap().writer_active().unwrap());
    StreamWriter::open(&path).unwrap();
}

/// Builds a stream whose last events (above the durable watermark) are torn: the sector
/// holding the end of the last one reads as zeros. Returns the offset of the torn event.
fn torn_stream(path: &Path) -> u64 {
    let mut writer = StreamWriter::create(path, 1 << 20).unwrap();
    for i in 0..4 {
        writer.append(i, &payload(i as u64)).unwrap();
    }
    writer.flush().unwrap();
    let torn = writer.append(4, &[0x5a; 3000]).unwrap();
    let end = writer.write_offset();
    drop(writer);
    let data = std::fs::read(path).unwrap();
    let mut data = data;
    let sector = ((end - 1) / 512 * 512) as usize;
    data[sector..end as usize].fill(0);
    std::fs::write(path, data).unwrap();
    torn
}

/// Views never change while borrowed, across processes: a writer whose recovery must
/// rewrite bytes is refused while a reader in another process has the stream open, and
/// proceeds once that reader is gone, whether it closed the stream or was killed.
#[test]
fn recovery_waits_for_reader_processes() {
    use std::io::Write;
    if std::env::var("EVSTREAM_CHILD").as_deref() == Ok("viewer") {
        let path = std::env::var("EVSTREAM_CHILD_PATH").unwrap();
        let reader = StreamReader::open(&path).unwrap();
        let views: Vec<&[u8]> = reader
            .iter()
            .map_while(|e| e.ok().map(|e| e.payload()))
            .collect();
        let copies: Vec<Vec<u8>> = views.iter().map(|v| v.to_vec()).collect();
        println!("viewing {}", views.len());
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        // Nothing changed under the borrow.
        assert_eq!(views.len(), 4);
        for (view, copy) in views.iter().zip(&copies) {
            assert!(*view == copy.as_slice(), "a view changed under its borrow");
        }
        println!("unchanged");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.evs");
    let torn = torn_stream(&path);
    let viewer = || {
        spawn_until(
            "recovery_waits_for_reader_processes",
            "viewer",
            &path,
            "viewing 4",
        )
    };
    let before = std::fs::read(&path).unwrap();

    // A viewer that is killed: its presence ends with the process.
    let (mut child, _out) = viewer();
    for _ in 0..3 {
        assert!(matches!(
            StreamWriter::open(&path),
            Err(evstream::Error::ReadersPresent { .. })
        ));
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "changed under a reader"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A viewer that checks its views after the refused recovery and closes the stream.
    let (mut child, mut out) = viewer();
    assert!(matches!(
        StreamWriter::open(&path),
        Err(evstream::Error::ReadersPresent { .. })
    ));
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "viewer failed: {rest}");
    assert!(rest.contains("unchanged"), "{rest}");
    assert!(
        std::fs::read(&path).unwrap() == before,
        "changed under a reader"
    );

    // No reader left: recovery drops the torn event.
    let writer = StreamWriter::open(&path).unwrap();
    assert_eq!(writer.recovery().torn_at.as_ref().map(|t| t.0), Some(torn));
    assert_eq!(writer.event_count(), 4);
    assert_eq!(writer.generation(), 1);
}

/// A reader that was dropped is gone for every writer at once, even while other threads
/// of the process start child processes (a child shares the parent's open files from its
/// fork until its `exec`): recovery right after a reader closed is never refused.
#[test]
fn a_dropped_reader_never_blocks_recovery_while_processes_start() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut started = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let status = Command::new("true").stdin(Stdio::null()).status().unwrap();
                assert!(status.success());
                started += 1;
            }
            started
        })
    };
    let rounds = std::env::var("EVSTREAM_PRESENCE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for round in 0..rounds {
        let path = dir.path().join(format!("p{round}.evs"));
        let torn = torn_stream(&path);
        drop(StreamReader::open(&path).unwrap());
        let writer = StreamWriter::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: a dropped reader blocked recovery: {e}"));
        assert_eq!(writer.recovery().torn_at.as_ref().map(|t| t.0), Some(torn));
        drop(writer);
        std::fs::remove_file(&path).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(spawner.join().unwrap() > 0);
}

/// A reader in another process, taking snapshots as fast as it can while batches are
/// appended here, never sees part of a batch: `append_batch` publishes once per batch.
#[test]
fn a_reader_process_never_sees_part_of_a_batch() {
    if run_as_child() {
        return;
    }
    write_here_read_in_child(
        "batch_watcher",
        "a_reader_process_never_sees_part_of_a_batch",
        append_batches,
    );
}
