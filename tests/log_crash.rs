//! Logs under crashes: real writer processes killed with `SIGKILL` while they append,
//! roll, retain and commit cursors, and power-loss images of a log taken across segments.
//!
//! The child is this test binary run again with only the ignored test `log_child`
//! selected. It opens (or creates) a log of 8 KiB segments, appends numbered events
//! (payload and timestamp derived from the event's log-wide index), commits a cursor now
//! and then, flushes now and then, and reports each acknowledged event on its stdout as
//! `ACK index position` after `append` returned, and each flush as `FLUSHED count`. After
//! every kill the parent checks that:
//!
//! - the log opens for writing at once (lock released, leftovers of a roll removed);
//! - its events are an exact run of the numbered events, without gap or duplicate,
//!   starting at the oldest segment kept and holding every acknowledged event at its
//!   acknowledged position, byte for byte;
//! - the cursor reads back as a position the child committed (never damaged);
//! - `verify` finds every segment intact and each following the one before.
//!
//! `EVSTREAM_LOG_KILLS` sets the number of kills (default 40) and `EVSTREAM_LOG_IMAGES`
//! the number of power-loss images (default 400).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use evstream::{LogOptions, LogReader, LogWriter, Position, WriteBack};
use reliability_support::{Rng, child_test, env_count};

const SEGMENT: u64 = 8192;

fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(2_654_435_761) % 700) as usize;
    (0..len)
        .map(|k| (index as usize).wrapping_mul(7).wrapping_add(k) as u8 | 1)
        .collect()
}

fn timestamp(index: u64) -> i64 {
    1_700_000_000_000_000_000 + index as i64 * 1000
}

fn options(retain: bool) -> LogOptions {
    let policy = if std::env::var("EVSTREAM_LOG_LAZY").is_ok() {
        WriteBack::Lazy
    } else {
        WriteBack::Eager
    };
    let options = LogOptions::default()
        .segment_size(SEGMENT)
        .write_back(policy);
    if retain {
        options.retain_segments(Some(6)).retain_past_cursors(true)
    } else {
        options
    }
}

/// The child: append numbered events until killed.
#[test]
#[ignore = "child process of the tests below"]
fn log_child() {
    let Ok(dir) = std::env::var("EVSTREAM_LOG_DIR") else {
        return;
    };
    let retain = std::env::var("EVSTREAM_LOG_RETAIN").is_ok();
    let limit = env_count("EVSTREAM_LOG_EVENTS", u64::MAX);
    let mut rng = Rng::new(env_count("EVSTREAM_LOG_SEED", 1));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut say = |line: String| {
        out.write_all(format!("{line}\n").as_bytes()).unwrap();
        out.flush().unwrap();
    };
    let dir = PathBuf::from(dir);
    let mut log = if dir.join("LOG").exists() {
        LogWriter::open(&dir).unwrap()
    } else {
        LogWriter::create(&dir, options(retain)).unwrap()
    };
    let reader = LogReader::open(&dir).unwrap();
    say(format!("READY {}", log.event_count()));
    let mut sent = 0;
    while sent < limit {
        let index = log.event_count();
        let position = log.append(timestamp(index), &payload(index)).unwrap();
        say(format!("ACK {index} {position}"));
        sent += 1;
        if rng.below(8) == 0 {
            // Said before the commit: a kill may land between the two.
            say(format!("CURSOR {position}"));
            reader.commit_cursor("consumer", position).unwrap();
        }
        if rng.below(16) == 0 {
            log.flush().unwrap();
            say(format!("FLUSHED {}", log.event_count()));
        }
    }
    say("DONE".into());
}

/// What a child reported before it died.
#[derive(Default)]
struct Report {
    acks: BTreeMap<u64, Position>,
    cursors: Vec<Position>,
}

fn run_child(
    dir: &Path,
    seed: u64,
    retain: bool,
    kill_after: Option<Duration>,
    env: &[(&str, String)],
) -> (Report, std::process::ExitStatus) {
    let mut cmd = child_test("log_child");
    cmd.env("EVSTREAM_LOG_DIR", dir)
        .env("EVSTREAM_LOG_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if retain {
        cmd.env("EVSTREAM_LOG_RETAIN", "1");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut process = cmd.spawn().unwrap();
    let stdout = process.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut report = Report::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut words = line.split(' ');
            match words.next() {
                Some("ACK") => {
                    let index: u64 = words.next().unwrap().parse().unwrap();
                    let position: Position = words.next().unwrap().parse().unwrap();
                    report.acks.insert(index, position);
                }
                Some("CURSOR") => report.cursors.push(words.next().unwrap().parse().unwrap()),
                _ => {}
            }
        }
        report
    });
    if let Some(after) = kill_after {
        let start = Instant::now();
        while start.elapsed() < after {
            if process.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = process.kill();
    }
    let status = process.wait().unwrap();
    (reader.join().unwrap(), status)
}

/// Checks the log in `dir` against everything children acknowledged so far.
fn check(dir: &Path, acked: &BTreeMap<u64, Position>, cursors: &[Position], context: &str) {
    let log = LogWriter::open(dir).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let count = log.event_count();
    drop(log);
    let reader = LogReader::open(dir).unwrap();
    let verification = reader.verify().unwrap();
    assert!(verification.is_ok(), "{context}: {verification:?}");
    let stat = reader.stat().unwrap();
    let mut index = stat.first_event;
    for event in reader.iter().unwrap() {
        let event = event.unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(
            event.timestamp(),
            timestamp(index),
            "{context}: event {index}"
        );
        assert_eq!(
            event.payload(),
            payload(index).as_slice(),
            "{context}: event {index}"
        );
        if let Some(&position) = acked.get(&index) {
            assert_eq!(event.position(), position, "{context}: event {index}");
        }
        index += 1;
    }
    assert_eq!(index, count, "{context}: events read vs the writer's count");
    if let Some((&last, _)) = acked.last_key_value() {
        assert!(
            index > last,
            "{context}: acknowledged event {last} lost (log ends at {index})"
        );
    }
    if let Some(cursor) = reader.cursor("consumer").unwrap() {
        assert!(
            cursors.contains(&cursor),
            "{context}: cursor {cursor} never committed"
        );
    }
}

/// Whether the child got as far as writing the log's settings (a kill may come first).
fn created(dir: &Path) -> bool {
    dir.join("LOG").exists()
}

fn kills(retain: bool, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut acked = BTreeMap::new();
    let mut cursors = Vec::new();
    let rounds = env_count("EVSTREAM_LOG_KILLS", 40);
    let mut rng = Rng::new(1);
    for round in 0..rounds {
        let after = Duration::from_micros(5000 + rng.below(80_000));
        let (report, status) = run_child(&path, round + 1, retain, Some(after), env);
        assert_eq!(
            status.signal(),
            Some(libc_sigkill()),
            "round {round}: child ended otherwise: {status:?}"
        );
        acked.extend(report.acks);
        cursors.extend(report.cursors);
        if !created(&path) {
            assert!(acked.is_empty());
            continue;
        }
        check(&path, &acked, &cursors, &format!("round {round}"));
    }
    let stat = LogReader::open(&path).unwrap().stat().unwrap();
    assert!(
        stat.last_segment > 5,
        "too few rolls to mean anything: {stat:?}"
    );
}

const fn libc_sigkill() -> i32 {
    9
}

#[test]
fn sigkill_while_appending_and_rolling() {
    kills(false, &[]);
}

#[test]
fn sigkill_while_retaining_and_committing_cursors() {
    kills(true, &[]);
}

/// With lazy write-back the retired segments wait unflushed (or are deleted so by
/// retention): a kill still loses no acknowledged event.
#[test]
fn sigkill_with_lazy_write_back() {
    let lazy = [("EVSTREAM_LOG_LAZY", "1".to_owned())];
    kills(false, &lazy);
    kills(true, &lazy);
}

/// A power-loss image of a live log: segments sealed by the background thread (those
/// with an index) are on disk whole; in the newest segment and those not sealed yet,
/// every 512-byte sector past what the last flush covered is, independently, the
/// current one or the one before (zeros, or the header as of that flush); the newest
/// segment's rename may be lost if the segment before it was not sealed yet.
#[test]
fn power_loss_images_across_segments() {
    power_loss_images(WriteBack::Eager);
}

/// The same with lazy write-back: retired segments wait unflushed until a flush (or
/// until 8 younger ones wait), and every flushed event survives every image.
#[test]
fn power_loss_images_with_lazy_write_back() {
    power_loss_images(WriteBack::Lazy);
}

fn power_loss_images(policy: WriteBack) {
    let images = env_count("EVSTREAM_LOG_IMAGES", 400);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options(false).write_back(policy)).unwrap();
    let mut rng = Rng::new(2);
    // (position, events in the log) as of the last successful flush.
    let mut flushed = (log.end(), 0u64);
    let mut made = 0;
    let mut lost_rename = 0;
    let mut gaps = 0;
    // Lazy write-back: flushes are rarer, so that retired segments pile up unflushed.
    let flush_one_in = if policy == WriteBack::Lazy { 60 } else { 10 };
    while made < images {
        let index = log.event_count();
        log.append(timestamp(index), &payload(index)).unwrap();
        if rng.below(flush_one_in) == 0 {
            log.flush().unwrap();
            flushed = (log.end(), log.event_count());
        }
        if rng.below(3) != 0 {
            continue;
        }
        let image = dir.path().join(format!("image-{made}"));
        let outcome = power_loss_image(&path, &image, flushed, &mut rng);
        lost_rename += u64::from(outcome.0);
        let writer = LogWriter::open(&image).unwrap_or_else(|e| panic!("image {made}: {e}"));
        gaps += u64::from(writer.recovery().dropped_after_gap > 0);
        drop(writer);
        let reader = LogReader::open(&image).unwrap();
        let verification = reader.verify().unwrap();
        assert!(verification.is_ok(), "image {made}: {verification:?}");
        let mut count = 0;
        for event in reader.iter().unwrap() {
            let event = event.unwrap();
            assert_eq!(event.payload(), payload(count).as_slice(), "image {made}");
            count += 1;
        }
        assert!(
            count >= flushed.1,
            "image {made}: {count} events, {} were flushed",
            flushed.1
        );
        assert!(count <= log.event_count());
        std::fs::remove_dir_all(&image).unwrap();
        made += 1;
    }
    eprintln!("{made} images, {lost_rename} with a lost rename, {gaps} with a gap dropped");
    assert!(log.segment() > 10, "too few rolls: {}", log.segment());
}

/// Copies the log at `from` to `to` as a power loss could leave it; returns whether the
/// newest segment's rename was lost.
fn power_loss_image(from: &Path, to: &Path, flushed: (Position, u64), rng: &mut Rng) -> (bool,) {
    std::fs::create_dir_all(to).unwrap();
    let mut segments: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() || name.starts_with('.') || name == "LOCK" {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&name)).unwrap();
        if name.ends_with(".evs") {
            segments.push((name[..8].parse().unwrap(), to.join(&name)));
        }
    }
    segments.sort();
    let newest = segments.last().unwrap().0;
    let sealed = |seq: u64| to.join(format!("{seq:08}.idx")).exists();
    let mut lost_rename = false;
    for (seq, file) in &segments {
        // Sealed segments were flushed whole by the background thread, and so was
        // everything before the last flush.
        if (*seq != newest && sealed(*seq)) || *seq < flushed.0.segment() {
            continue;
        }
        let mut bytes = std::fs::read(file).unwrap();
        // What a flush made durable: the log's last flush, or the segment's own durable
        // watermark if the sealing thread flushed it since (and had not written its index
        // when the image was taken).
        let from_log = if *seq == flushed.0.segment() {
            flushed.0.offset()
        } else {
            24
        };
        let watermark = evstream::StreamReader::open(file).unwrap().durable_offset();
        let durable = from_log.max(watermark);
        let (durable, old_count) = (durable as usize, flushed_count_in(&bytes, durable));
        let mut old = bytes.clone();
        old[durable..].fill(0);
        old[0..8].copy_from_slice(&(durable as u64).to_le_bytes());
        old[8..16].copy_from_slice(&old_count.to_le_bytes());
        // The trailer is written only by a flush or a seal, after the events it covers
        // are on disk, so it is as the last flush of this segment left it: current.
        let trailer = evstream::format::trailer_offset(bytes.len() as u64).unwrap() as usize;
        for sector in 0..trailer / 512 {
            let range = sector * 512..(sector + 1) * 512;
            if range.end > durable.max(512) || sector == 0 {
                if sector == 0 && durable >= 512 && rng.below(2) == 0 {
                    bytes[0..16].copy_from_slice(&old[0..16]); // only the header is older
                } else if rng.below(2) == 0 {
                    bytes[range.clone()].copy_from_slice(&old[range]);
                }
            }
        }
        std::fs::write(file, &bytes).unwrap();
        let _ = std::fs::remove_file(to.join(format!("{seq:08}.idx")));
        // The roll's rename is made durable by the seal of the segment before.
        if *seq == newest && newest > 0 && !sealed(newest - 1) && rng.below(4) == 0 {
            std::fs::rename(file, to.join(format!(".next-{newest:08}.evs"))).unwrap();
            lost_rename = true;
        }
    }
    (lost_rename,)
}

/// The events a segment held below `offset`, counted by walking its headers.
fn flushed_count_in(bytes: &[u8], offset: u64) -> u64 {
    let (mut at, mut count) = (24usize, 0u64);
    while (at as u64) < offset {
        let size = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + size;
        count += 1;
    }
    count
}

/// Crash points (feature `failpoints`): a child aborts at each named point of a log's
/// open, roll, seal, retention, recycling of a retired segment and cursor commit (the first, second and fifth time it
/// passes it), and the parent checks the log as after a kill, then that a writer
/// continues it.
#[cfg(feature = "failpoints")]
#[test]
fn abort_at_every_log_crash_point() {
    use evstream::failpoint::POINTS;
    let prefixes = [
        "log_open:",
        "roll:",
        "seal:",
        "retain:",
        "recycle:",
        "cursor:",
    ];
    let points: Vec<&str> = POINTS
        .iter()
        .copied()
        .filter(|p| prefixes.iter().any(|prefix| p.starts_with(prefix)))
        .collect();
    assert_eq!(points.len(), 12);
    let dir = tempfile::tempdir().unwrap();
    for point in points {
        let nths: &[u64] = if point.starts_with("log_open:") {
            &[1]
        } else {
            &[1, 2, 5]
        };
        for &nth in nths {
            let context = format!("{point}:{nth}");
            let path = dir.path().join(context.replace(':', "-"));
            // A first run without crash point, so that open has a log to find.
            let env = [("EVSTREAM_LOG_EVENTS", "50".to_owned())];
            let (first, status) = run_child(&path, 3, true, None, &env);
            assert!(status.success(), "{context}: setup run {status:?}");
            let env = [
                ("EVSTREAM_LOG_EVENTS", "600".to_owned()),
                ("EVSTREAM_FAILPOINT", context.clone()),
            ];
            let (report, status) = run_child(&path, 3, true, None, &env);
            assert_eq!(
                status.signal(),
                Some(6),
                "{context}: the point was not reached: {status:?}"
            );
            let mut acked = first.acks;
            acked.extend(report.acks);
            let mut cursors: Vec<Position> =
                first.cursors.into_iter().chain(report.cursors).collect();
            check(&path, &acked, &cursors, &context);
            // A writer continues the log, and a second open finds nothing to repair.
            let (more, status) = run_child(
                &path,
                4,
                true,
                None,
                &[("EVSTREAM_LOG_EVENTS", "100".to_owned())],
            );
            assert!(
                status.success(),
                "{context}: run after the crash {status:?}"
            );
            acked.extend(more.acks);
            cursors.extend(more.cursors);
            check(&path, &acked, &cursors, &format!("{context}, continued"));
            assert!(
                LogWriter::open(&path).unwrap().recovery().is_clean(),
                "{context}"
            );
        }
    }
}
