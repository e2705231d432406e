//! A `loom` model of how a writer wakes followers (`WaitWords` in `src/sys.rs`): no
//! lost wake-up, whatever the interleaving.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_wakeup`.
//!
//! The futex is modelled by what the kernel guarantees: `futex_wait(word, seen)` compares
//! the word with `seen` and queues the sleeper atomically (a mutex here), and
//! `futex_wake` wakes every queued sleeper (a condition variable). The follower sleeps
//! with no timeout, so a lost wake-up leaves it asleep forever, which loom reports as a
//! deadlock. A control model where the writer looks for waiters before it publishes
//! must be caught.
//!
//! This models the writer with its fence. A writer in a process registered for
//! `membarrier` global expedited barriers skips the fence, and the follower's
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` after registering runs it on the
//! writer's CPU instead; loom cannot model that system call (see `docs/FORMAT.md`,
//! "Waking followers", for the argument).
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use loom::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct Stream {
    write_offset: AtomicU64,
    seq: AtomicU32,
    waiters: AtomicU32,
    /// The kernel's futex queue for `seq`.
    queue: Mutex<()>,
    wakeup: Condvar,
}

impl Stream {
    fn futex_wait(&self, seen: u32) {
        let guard = self.queue.lock().unwrap();
        if self.seq.load(Ordering::SeqCst) == seen {
            drop(self.wakeup.wait(guard).unwrap());
        }
    }

    fn futex_wake(&self) {
        let _guard = self.queue.lock().unwrap();
        self.wakeup.notify_all();
    }

    /// `WriteMap::wake_followers` (with the fence), after the publish.
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            self.futex_wake();
        }
    }

    /// The writer's append: publish, then wake (or, in the control, the reverse).
    fn append(&self, end: u64, wake_first: bool) {
        if wake_first {
            self.wake();
            self.write_offset.store(end, Ordering::Release);
        } else {
            self.write_offset.store(end, Ordering::Release);
            self.wake();
        }
    }

    /// `Follow::next_timeout` with `WaitStrategy::Block` and no timeout: returns once
    /// the write offset reaches `want`.
    fn follow_until(&self, want: u64) {
        loop {
            if self.write_offset.load(Ordering::Acquire) >= want {
                return;
            }
            // `Follow::block`: register, look once more, sleep, unregister.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let seen = self.seq.load(Ordering::SeqCst);
            if self.write_offset.load(Ordering::Acquire) < want {
                self.futex_wait(seen);
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One follower, one append: every interleaving up to `LOOM_MAX_PREEMPTIONS` (3 unless
/// set) preemptions. (Two followers and two appends did not finish in 10 minutes.)
fn model(wake_first: bool) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        let stream = Arc::new(Stream::default());
        let follower = {
            let stream = stream.clone();
            loom::thread::spawn(move || stream.follow_until(1))
        };
        stream.append(1, wake_first);
        follower.join().unwrap();
    });
}

#[test]
fn no_lost_wakeup() {
    if std::env::var("LOOM_WAKEUP_CONTROL").is_ok() {
        model(true);
        return;
    }
    model(false);
}

/// The control runs in a child process: loom's deadlock report aborts the process (a
/// panic while its threads unwind), which `should_panic` cannot catch.
#[test]
fn control_waking_before_publishing_loses_wakeups() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_lost_wakeup",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LOOM_WAKEUP_CONTROL", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the control model passed");
    assert!(
        stderr.contains("deadlock"),
        "no lost wake-up reported: {stderr}"
    );
}
