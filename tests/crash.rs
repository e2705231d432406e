//! Crash test with real processes: a child writer is killed with `SIGKILL` at random
//! moments, during `create`, during `open` (recovery) and between appends, and the parent
//! checks what survives.
//!
//! The child is this test binary run again with only the ignored test `crash_child`
//! selected. It appends numbered events of the mixed workload (every size class, both
//! `append` and `append_with`, flushing now and then) and reports each acknowledged event
//! on its stdout as `ACK index offset`, after `append` returned. After every kill the
//! parent checks:
//!
//! - opening never panics and needs no repair beyond what a crash may leave (a count one
//!   short, stale bytes past the write offset), and a new writer gets the lock at once;
//! - every acknowledged event is present at its acknowledged offset, byte for byte;
//! - the events are an exact prefix of what was sent: no gap, no duplicate, nothing else;
//! - the event count a writer reports matches a scan, and the header count is that or one
//!   short;
//! - after recovery nothing but zeros lies past the write offset.
//!
//! `EVSTREAM_CRASH_KILLS` sets the number of kills (default 200); `scripts/soak.sh`
//! runs thousands.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use evstream::{Error, StreamWriter};
use reliability_support::{
    Rng, Workload, assert_prefix_of, child_test, env_count, read_stream, zero_from,
};

/// Small enough that streams fill up and are created again every few dozen kills.
const CAPACITY: u64 = 4 << 20;

/// The child: create or open the stream, then append until killed or full.
#[test]
#[ignore = "child process of `sigkill_at_random_moments`"]
fn crash_child() {
    let Ok(path) = std::env::var("EVSTREAM_CRASH_PATH") else {
        return;
    };
    let generation = env_count("EVSTREAM_CRASH_GENERATION", 0);
    let mut rng = Rng::new(env_count("EVSTREAM_CRASH_SEED", 0));
    let workload = Workload::mixed(generation);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut say = |line: String| {
        // One write per line: the pipe delivers it whole or not at all.
        out.write_all(format!("{line}\n").as_bytes()).unwrap();
        out.flush().unwrap();
    };
    let mut writer = if Path::new(&path).exists() {
        say("PHASE open".into());
        StreamWriter::open(&path).unwrap()
    } else {
        say("PHASE create".into());
        StreamWriter::create(&path, CAPACITY).unwrap()
    };
    say(format!("READY {}", writer.event_count()));
    loop {
        let index = writer.event_count();
        let payload = workload.payload(index);
        let timestamp = workload.timestamp(index);
        let appended = if rng.chance(1, 2) {
            writer.append(timestamp, &payload)
        } else {
            writer.append_with(timestamp, payload.len(), |buf| {
                buf.copy_from_slice(&payload)
            })
        };
        match appended {
            Ok(offset) => say(format!("ACK {index} {offset}")),
            Err(Error::Full { .. }) => {
                say("FULL".into());
                return;
            }
            Err(e) => panic!("append {index}: {e}"),
        }
        if rng.chance(1, 12) {
            writer.flush().unwrap();
        }
    }
}

/// When the parent kills the child.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// A fixed time after spawning: lands in start-up, `create` or `open`.
    AfterSpawn(Duration),
    /// Right after the child announces `create` or `open`, plus a short delay.
    InPhase(Duration),
    /// After this many acknowledged appends, plus a short delay.
    AfterAcks(u64, Duration),
}

/// What the child said before it died.
#[derive(Debug, Default)]
struct Report {
    acks: Vec<(u64, u64)>,
    /// The last phase announced, and whether the child got past it (`READY`).
    phase: Option<String>,
    ready: bool,
    full: bool,
}

impl Report {
    fn take(&mut self, line: &str) {
        // libtest may have printed `test crash_child ... ` ahead of the first line.
        let start = ["ACK ", "PHASE ", "READY ", "FULL"]
            .iter()
            .filter_map(|key| line.find(key))
            .min();
        let Some(start) = start else { return };
        let line = line[start..].trim();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
            self.acks
                .push((parts.next().unwrap(), parts.next().unwrap()));
        } else if let Some(phase) = line.strip_prefix("PHASE ") {
            self.phase = Some(phase.to_owned());
        } else if line.starts_with("READY ") {
            self.ready = true;
        } else if line == "FULL" {
            self.full = true;
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    kills: u64,
    in_create: u64,
    in_open: u64,
    in_appends: u64,
    full: u64,
    count_repaired: u64,
    stale_cleared: u64,
    temp_files_left: u64,
    acked_events: u64,
}

#[test]
fn sigkill_at_random_moments() {
    let kills = env_count("EVSTREAM_CRASH_KILLS", 200);
    let seed = env_count("EVSTREAM_CRASH_SEED", 0x00c0_ffee);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.evs");
    let copy = dir.path().join("copy.evs");
    let stderr_path = dir.path().join("child.stderr");
    let mut generation = 0u64;
    // Every acknowledged (index -> offset) of the current stream, across all kills.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut tally = Tally::default();
    let started = Instant::now();

    let mut cycle = 0u64;
    while tally.kills < kills {
        cycle += 1;
        let fresh = cycle.is_multiple_of(20) && path.exists();
        if fresh {
            // Start a new stream now and then, besides when one fills up, and kill its
            // writer inside `create`, so that enough kills land there.
            std::fs::remove_file(&path).unwrap();
            acked.clear();
            generation += 1;
        }
        let plan = match if fresh { 1 } else { rng.below(8) } {
            0 => Plan::AfterSpawn(Duration::from_micros(rng.range(0, 4_000))),
            1 | 2 => Plan::InPhase(Duration::from_micros(rng.range(0, 600))),
            _ => Plan::AfterAcks(rng.range(1, 250), Duration::from_micros(rng.range(0, 300))),
        };
        let mut child = child_test("crash_child")
            .env("EVSTREAM_CRASH_PATH", &path)
            .env("EVSTREAM_CRASH_GENERATION", generation.to_string())
            .env("EVSTREAM_CRASH_SEED", rng.next_u64().to_string())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut report = Report::default();
        match plan {
            Plan::AfterSpawn(delay) => std::thread::sleep(delay),
            Plan::InPhase(delay) => {
                for line in lines.by_ref() {
                    report.take(&line.unwrap());
                    if report.phase.is_some() {
                        break;
                    }
                }
                std::thread::sleep(delay);
            }
            Plan::AfterAcks(n, delay) => {
                for line in lines.by_ref() {
                    report.take(&line.unwrap());
                    if report.acks.len() as u64 >= n {
                        break;
                    }
                }
                std::thread::sleep(delay);
            }
        }
        child.kill().unwrap();
        for line in lines {
            report.take(&line.unwrap());
        }
        let status = child.wait().unwrap();
        let child_err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if report.full && status.success() {
            tally.full += 1;
        } else {
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "the child died on its own ({status}); its stderr:\n{child_err}"
            );
            tally.kills += 1;
            match (&report.phase, report.ready) {
                (Some(p), false) if p == "create" => tally.in_create += 1,
                (Some(p), false) if p == "open" => tally.in_open += 1,
                (Some(_), true) => tally.in_appends += 1,
                _ => {} // killed before the child said anything
            }
        }
        for &(index, offset) in &report.acks {
            if let Some(previous) = acked.insert(index, offset) {
                assert_eq!(previous, offset, "event {index} acknowledged twice");
            }
        }
        tally.acked_events += report.acks.len() as u64;

        tally.temp_files_left += remove_temp_files(dir.path());
        let workload = Workload::mixed(generation);
        let context = format!("kill {} ({plan:?}, generation {generation})", tally.kills);
        check_after_crash(&path, &copy, &workload, &acked, &mut tally, &context);
        if tally.kills.is_multiple_of(4) && path.exists() {
            // Recover the real file here now and then, so the child also opens streams a
            // previous writer recovered.
            let writer = StreamWriter::open(&path).unwrap();
            assert_eq!(
                writer.event_count(),
                read_stream(&path).unwrap().events.len() as u64
            );
        }
        if report.full {
            std::fs::remove_file(&path).unwrap();
            acked.clear();
            generation += 1;
        }
    }
    eprintln!(
        "crash: {} kills in {:.1?}: {} during create, {} during open, {} while appending; \
         {} streams filled up; {} acknowledged appends; recovery repaired {} counts and \
         cleared stale bytes {} times; {} temporary files left by kills during create",
        tally.kills,
        started.elapsed(),
        tally.in_create,
        tally.in_open,
        tally.in_appends,
        tally.full,
        tally.acked_events,
        tally.count_repaired,
        tally.stale_cleared,
        tally.temp_files_left,
    );
    // The plan mix must actually reach every phase, or the test proves less than it says.
    if kills >= 100 {
        assert!(tally.in_create > 0, "no kill landed during create");
        assert!(tally.in_open > 0, "no kill landed during open");
        assert!(tally.in_appends > kills / 2, "too few kills during appends");
    }
}

/// Removes temporary files a kill during `create` left behind; returns how many.
fn remove_temp_files(dir: &Path) -> u64 {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".crash.evs.") && name.ends_with(".tmp") {
            std::fs::remove_file(entry.path()).unwrap();
            removed += 1;
        }
    }
    removed
}

fn check_after_crash(
    path: &Path,
    copy: &Path,
    workload: &Workload,
    acked: &BTreeMap<u64, u64>,
    tally: &mut Tally,
    context: &str,
) {
    if !path.exists() {
        // Killed before `create` renamed the stream into place: nothing was acknowledged.
        assert!(acked.is_empty(), "{context}: acknowledged events vanished");
        return;
    }
    // A reader sees exactly a prefix of what was sent, with no damage.
    let contents = read_stream(path).unwrap();
    assert!(
        contents.error.is_none(),
        "{context}: reader hit {:?}",
        contents.error
    );
    assert_prefix_of(&contents.events, workload, context);
    let found = contents.events.len() as u64;
    for (&index, &offset) in acked {
        assert!(index < found, "{context}: acknowledged event {index} lost");
        assert_eq!(contents.events[index as usize].offset, offset, "{context}");
    }
    assert!(
        contents.header_count == found || contents.header_count + 1 == found,
        "{context}: header counts {} events, {found} found",
        contents.header_count
    );

    // The dead writer's lock is gone: a new one gets it at once.
    let probe = File::open(path).unwrap();
    probe
        .try_lock()
        .unwrap_or_else(|e| panic!("{context}: lock still held: {e:?}"));
    probe.unlock().unwrap();
    drop(probe);

    // Recovery on a copy, so that the next child still meets the crashed state.
    std::fs::copy(path, copy).unwrap();
    let writer = StreamWriter::open(copy).unwrap_or_else(|e| panic!("{context}: open: {e}"));
    let recovery = writer.recovery().clone();
    assert_eq!(writer.event_count(), found, "{context}: writer count");
    assert_eq!(writer.write_offset(), contents.write_offset, "{context}");
    assert_eq!(
        recovery.torn_at, None,
        "{context}: a process crash tore nothing"
    );
    assert_eq!(recovery.dropped_events, 0, "{context}");
    assert_eq!(
        recovery.count_repaired,
        contents.header_count + 1 == found,
        "{context}: count repair"
    );
    tally.count_repaired += u64::from(recovery.count_repaired);
    tally.stale_cleared += u64::from(recovery.stale_bytes_cleared > 0);
    let write_offset = writer.write_offset();
    drop(writer);
    assert!(
        zero_from(copy, write_offset),
        "{context}: non-zero bytes past the write offset after recovery"
    );
    let again = read_stream(copy).unwrap();
    assert_eq!(
        again.events, contents.events,
        "{context}: recovery changed events"
    );
    assert_eq!(again.header_count, found, "{context}: recovered count");
    // A second recovery finds nothing to do.
    let writer = StreamWriter::open(copy).unwrap();
    assert!(
        writer.recovery().is_clean(),
        "{context}: {:?}",
        writer.recovery()
    );
}
