//! A `loom` model of the group commit (`GroupCommit::flush` in `src/commit.rs`) behind
//! `SharedLogWriter::flush` and `SharedStreamWriter::flush`:
//! a flush that returns `Ok` covers every append that returned, on any thread, before
//! the flush began; one that shared a failed flush returns an error.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_group_commit`.
//!
//! The model follows the code: the writer (a `Mutex` holding the count of events
//! appended and the count made durable, as the writer behind the handle), and the
//! commit state (flushes started, finished, one running, the last failed) under its own
//! `Mutex` with a `Condvar`. A flush reads the number of flushes started, and needs the
//! next one: the first flush to start after the call began. Each thread appends, then
//! flushes, then checks what its flush promised. A control model in which a caller
//! joins the flush under way (which started before the call, and may have missed its
//! append) must be caught.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use loom::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Writer {
    appended: u64,
    durable: u64,
    poisoned: bool,
}

#[derive(Default)]
struct Commit {
    started: u64,
    finished: u64,
    running: bool,
    failed: Option<u64>,
}

struct Log {
    writer: Mutex<Writer>,
    commit: Mutex<Commit>,
    committed: Condvar,
    /// Whether the first flush's write-back fails.
    fail_first: bool,
    /// The control: join a flush under way instead of waiting for the next.
    join_running: bool,
}

impl Log {
    fn new(fail_first: bool, join_running: bool) -> Self {
        Self {
            writer: Mutex::new(Writer::default()),
            commit: Mutex::new(Commit::default()),
            committed: Condvar::new(),
            fail_first,
            join_running,
        }
    }

    /// An append: returns the number of events once it is in.
    fn append(&self) -> u64 {
        let mut writer = self.writer.lock().unwrap();
        writer.appended += 1;
        writer.appended
    }

    /// `LogWriter::flush` under the writer lock: everything appended becomes durable,
    /// unless the write-back fails, which poisons the writer.
    fn writer_flush(&self, number: u64) -> Result<(), ()> {
        let mut writer = self.writer.lock().unwrap();
        if writer.poisoned || (self.fail_first && number == 1) {
            writer.poisoned = true;
            return Err(());
        }
        writer.durable = writer.appended;
        Ok(())
    }

    /// `SharedLogWriter::flush`.
    fn flush(&self) -> Result<(), ()> {
        let mut commit = self.commit.lock().unwrap();
        let needed = if self.join_running && commit.running {
            commit.started
        } else {
            commit.started + 1
        };
        loop {
            if commit.finished >= needed {
                return match commit.failed {
                    Some(failed) if failed >= needed => Err(()),
                    _ => Ok(()),
                };
            }
            if !commit.running {
                commit.running = true;
                commit.started += 1;
                let number = commit.started;
                drop(commit);
                let result = self.writer_flush(number);
                commit = self.commit.lock().unwrap();
                commit.running = false;
                commit.finished = number;
                if result.is_err() {
                    commit.failed = Some(number);
                }
                drop(commit);
                self.committed.notify_all();
                return result;
            }
            commit = self.committed.wait(commit).unwrap();
        }
    }
}

/// Each of `threads` threads appends once and flushes; an `Ok` flush must cover the
/// thread's own append (and so every append that returned before it began). Returns
/// how many flushes returned `Ok`.
fn model(threads: usize, fail_first: bool, join_running: bool) -> usize {
    let log = Arc::new(Log::new(fail_first, join_running));
    let work = |log: &Log| {
        let mine = log.append();
        let result = log.flush();
        if result.is_ok() {
            let durable = log.writer.lock().unwrap().durable;
            assert!(
                durable >= mine,
                "a flush returned Ok with {durable} durable, before append {mine}"
            );
        }
        result.is_ok()
    };
    let others: Vec<_> = (1..threads)
        .map(|_| {
            let log = Arc::clone(&log);
            loom::thread::spawn(move || work(&log))
        })
        .collect();
    let mut ok = usize::from(work(&log));
    for other in others {
        ok += usize::from(other.join().unwrap());
    }
    let commit = log.commit.lock().unwrap();
    assert!(!commit.running, "no flush left running");
    assert!(
        commit.started as usize <= threads,
        "never more flushes than callers"
    );
    ok
}

#[test]
fn a_flush_covers_every_append_that_returned_before_it() {
    loom::model(|| {
        assert_eq!(model(2, false, false), 2);
    });
}

#[test]
fn three_threads_share_flushes() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        assert_eq!(model(3, false, false), 3);
    });
}

#[test]
fn no_one_who_shared_a_failed_flush_is_told_it_succeeded() {
    loom::model(|| {
        // The first flush fails and poisons the writer: every later one fails too, so
        // no thread may return Ok.
        assert_eq!(model(2, true, false), 0);
    });
}

#[test]
#[should_panic(expected = "a flush returned Ok")]
fn joining_the_flush_under_way_is_caught() {
    loom::model(|| {
        model(2, false, true);
    });
}
