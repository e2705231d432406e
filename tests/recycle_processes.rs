//! Readers in this process while writers and followers in other processes use a log
//! whose retention retires and recycles segments all the time: what a reader is
//! promised, tried with real processes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use evstream::{LogOptions, LogReader, LogWriter};
use reliability_support::child_test;

/// The `waiters` word of the stream file at `path` (trailer bytes 260..264), and its
/// inode.
fn waiters_of(path: &Path) -> (u32, u64) {
    use std::os::unix::fs::MetadataExt;
    let bytes = std::fs::read(path).unwrap();
    let at = evstream::format::trailer_offset(bytes.len() as u64).unwrap()
        + evstream::format::WAIT_WORDS_AT
        + 4;
    let at = at as usize;
    let word = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    (word, std::fs::metadata(path).unwrap().ino())
}

/// The segment files of the log in `dir`: named, and prepared under `.next-` (not the
/// retired ones waiting to be recycled, `..next-spare-`).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".evs") && !name.starts_with("..")
        })
        .collect();
    files.sort();
    files
}

#[test]
#[ignore = "child process of `a_follower_killed_asleep_costs_no_later_life_of_its_segment_a_system_call`"]
fn sleeping_follower() {
    let Some(path) = std::env::var_os("EVSTREAM_RECYCLE_PATH").map(PathBuf::from) else {
        return;
    };
    let reader = LogReader::open(&path).unwrap();
    let mut follow = reader.iter_from(reader.end().unwrap()).unwrap();
    // Asleep, registered on the newest segment's wait words, until killed.
    let _ = follow.next_timeout(Duration::from_secs(60));
}

/// A follower process killed while asleep on the newest segment leaves that file's
/// `waiters` word counting it. The segment is retired and, no reader having it open,
/// recycled as a later segment: its new life starts with no follower registered, so
/// that the writer's appends to it make no wake-up system call (`docs/FORMAT.md`,
/// "Waking followers": an append with no follower waiting makes none).
#[test]
fn a_follower_killed_asleep_costs_no_later_life_of_its_segment_a_system_call() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = LogOptions::default()
        .segment_size(4096)
        .retain_segments(Some(2));
    let mut log = LogWriter::create(&path, options).unwrap();
    let mut t = 0;
    let mut append = |log: &mut LogWriter| {
        log.append(t, &[t as u8; 200]).unwrap();
        t += 1;
    };
    for _ in 0..40 {
        append(&mut log);
    }
    // Also waits for the newest segment's rename into place.
    log.flush().unwrap();
    let newest = LogReader::open(&path)
        .unwrap()
        .segment_files()
        .unwrap()
        .pop()
        .unwrap()
        .1;
    assert_eq!(waiters_of(&newest).0, 0, "a follower before any started");
    let mut child = child_test("sleeping_follower")
        .env("EVSTREAM_RECYCLE_PATH", &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let (_, ino) = loop {
        let (waiters, ino) = waiters_of(&newest);
        if waiters == 1 {
            break (waiters, ino);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower never went to sleep"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // Rolls, until the file comes back as a later segment.
    let mut recycled = None;
    for _ in 0..2000 {
        append(&mut log);
        drop(log.take_retired());
        recycled = segment_files(&path)
            .into_iter()
            .find(|f| f != &newest && std::fs::metadata(f).is_ok_and(|m| m.ino() == ino));
        if recycled.is_some() {
            break;
        }
    }
    let recycled = recycled.expect("the segment the follower slept on was never recycled");
    assert_eq!(
        waiters_of(&recycled).0,
        0,
        "{recycled:?}, the segment the killed follower slept on in its earlier life, \
         counts a follower"
    );
    drop(log);
}
