//! The reading commands on a live log whose retention deletes and recycles segments
//! while they run: none fails because a segment it listed was taken before it opened it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::{run, s};

/// Runs of each command while the writer rolls flat out.
const ROUNDS: usize = 150;

/// `stat`, `verify`, `tail -n 3`, `cat --since` and `cat` of a log of 4 KiB segments
/// keeping two, while a writer thread appends as fast as it can (a roll every few dozen
/// events, each followed by a retention run): every run succeeds with its output.
#[test]
fn reading_commands_never_fail_because_retention_took_a_listed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let options = evstream::LogOptions::default()
        .segment_size(4096)
        .retain_segments(Some(2));
    let mut log = evstream::LogWriter::create(&path, options).unwrap();
    for t in 0..200 {
        log.append(t, &[b'x'; 64]).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut t = 200i64;
            while !stop.load(Ordering::Relaxed) {
                // The commands' promise is under test here, not the writer's.
                if let Err(e) = log.append(t, &[b'x'; 64]) {
                    eprintln!("the writer stopped: {e}");
                    break;
                }
                t += 1;
            }
            let _turn = support::forking();
            drop(log);
        }
    });
    let log = s(&path);
    // A reading that starts, then falls behind retention while it prints, is told so
    // (the events printed are counted); it never fails before its first event.
    let started = |run: &support::Run| {
        run.code == 0 || (!run.lines().is_empty() && run.stderr.contains("deleted by retention"))
    };
    for round in 0..ROUNDS {
        let stat = run(&["stat", log]);
        assert_eq!(stat.code, 0, "stat, round {round}: {}", stat.stderr);
        let verify = run(&["verify", log]);
        assert_eq!(verify.code, 0, "verify, round {round}: {}", verify.stderr);
        let tail = run(&["tail", log, "-n", "3", "--format", "raw"]);
        assert!(started(&tail), "tail, round {round}: {}", tail.stderr);
        // The last three, and those appended while it printed them.
        assert!(tail.lines().len() >= 3, "tail, round {round}");
        let since = run(&["cat", log, "--since", "@0", "--format", "raw"]);
        assert!(
            started(&since),
            "cat --since, round {round}: {}",
            since.stderr
        );
        let cat = run(&["cat", log, "--format", "raw"]);
        assert!(started(&cat), "cat, round {round}: {}", cat.stderr);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
