//! The lock in front of a process's shared writer: a lock that threads appending flat
//! out take in **slices** rather than in turns of one append each.
//!
//! Two threads that take a plain lock by turns, one append each, move the writer's state
//! (the lock, the write offset, the tail of the mapping) from one core's cache to the
//! other's at every append: on the 2-vCPU machine of `docs/BENCHMARKS.md` one such move
//! takes about 170 ns, five times a whole 64-byte append. So:
//!
//! - A thread that finds the lock taken keeps trying while the same hold lasts (a roll,
//!   a large event: up to 100 µs, yielding its CPU now and then), and gets the lock as
//!   soon as it is released. If it sees the lock taken again and again by others while
//!   it tries, the holder appends flat out: it **sleeps**, out of the holder's way, and
//!   the holder goes on appending alone, at one thread's speed.
//! - A sleeper wakes by itself every [`NAP`]. Once it has waited [`SLICE`] for the
//!   lock, it **arrives**: at its next release the holder lets the lock go to it and
//!   keeps out of it until that thread took it. The sleepers keep the time, not the
//!   holder: a holder's release looks whether anyone waits, and only while others do,
//!   counts the acquisition for them and looks whether a thread arrived (no clock, no
//!   wake); the holder appends on until the arrived thread takes the lock. A holder that stopped appending keeps no one waiting longer than a
//!   nap; a thread that arrived or handed over gives up waiting for the other after
//!   [`AT_MOST`].
//!
//! - The lock underneath is a [`BiasedLock`]: once one thread took it 256 times in a
//!   row, that thread takes it with plain loads and stores, no atomic
//!   read-modify-write, until another thread takes it (which costs that thread a
//!   `membarrier` call, a microsecond or a few). So a thread appending alone, and the
//!   holder of a slice, pay a few loads and stores an append for the lock. A sleeper
//!   woken by its nap takes the lock from the thread it is biased to only if that thread
//!   stopped taking it; from one still taking it, the sleeper takes it once it waited a
//!   slice.
//!
//! What this costs and promises: under contention an append waits at most about one
//! slice per thread ahead of it, plus the time to wake (`SharedLogWriter`'s docs); threads
//! appending at once together keep near one thread's rate; an append that finds the
//! lock free costs a few loads and stores more than the writer's own append (an
//! uncontended compare-and-swap and a store, until the lock is biased to its thread).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{BiasedGuard, BiasedLock};

/// How long a thread sleeps waiting for the lock, while others take it, before it
/// comes to take it over. Each handover costs the new holder the writer's cache
/// lines and its share of a wake-up: with 2 threads appending flat out into a log in
/// steady state, slices of 0.5 ms gave 0.70–0.78x of one thread's rate, 2 ms 0.81–0.82x
/// (`evstream bench --many --many-retain 4`).
pub(crate) const SLICE: Duration = Duration::from_millis(2);

/// How many times a thread that found the lock taken sees it taken again by others,
/// while it tries, before it sleeps: they append flat out.
const RETAKEN: u32 = 4;

/// How long a thread that found the lock taken keeps trying while one hold lasts.
const HOLD_AT_MOST: Duration = Duration::from_micros(100);

/// Tries a thread makes, a [`pause`](Gate::pause) apart, between two yields of its CPU.
/// (The host of a virtual machine takes a long spin for an idle CPU, and may run
/// something else on it for milliseconds.)
const YIELD_EVERY: u32 = 32;

/// How long a sleeper sleeps before it looks again by itself.
const NAP: Duration = Duration::from_micros(200);

/// How long a thread that handed the lock over keeps out of it if no one takes it, and
/// how long a thread that came to take the lock over waits for the holder to let it go.
const AT_MOST: Duration = Duration::from_millis(2);

/// A lock taken in slices under contention; see the module's docs.
#[derive(Debug)]
pub(crate) struct Gate<T> {
    inner: BiasedLock<T>,
    /// The [`me`] of the thread that waited a slice and takes the lock over, or 0: the
    /// holder keeps out of the lock from its next release.
    arrived: AtomicUsize,
    /// The [`me`] of the thread that handed the lock over and keeps out of it until
    /// another took it, or 0.
    barred: AtomicUsize,
    /// How many times the lock was taken (stored by each holder): tells a thread that
    /// tries whether the holder is the same.
    taken: AtomicU64,
    /// Threads that wait for the lock asleep, or awake to take it over.
    waiting: AtomicUsize,
}

/// Holds the lock; derefs to the value.
pub(crate) struct GateGuard<'a, T> {
    gate: &'a Gate<T>,
    guard: BiasedGuard<'a, T>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for GateGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (*self.guard).fmt(f)
    }
}

/// A number that tells this thread from every other living one: the address of a
/// thread-local, aligned, so even (as `BiasedLock` asks).
#[inline]
fn me() -> usize {
    thread_local! {
        static ME: u64 = const { 0 };
    }
    ME.with(|me| std::ptr::from_ref(me).addr())
}

impl<T> Gate<T> {
    /// A lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: BiasedLock::new(value),
            arrived: AtomicUsize::new(0),
            barred: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Takes the lock. The lock does not poison: a thread that panicked holding it
    /// left the value whole (the callers' values are).
    #[inline(always)]
    pub(crate) fn lock(&self) -> GateGuard<'_, T> {
        let me = me();
        // Through its bias, the lock is this thread's until another thread revokes
        // it (a thread that came to take over does): even one that handed over
        // (`barred`) may go on until then.
        if let Some(guard) = self.inner.try_lock_biased(me) {
            return self.held(guard);
        }
        if self.barred.load(Ordering::Relaxed) == 0
            && let Some(guard) = self.inner.try_lock_plain(me)
        {
            return self.held(guard);
        }
        self.lock_contended(me)
    }

    /// Runs `f` holding the lock, taken as [`lock`](Self::lock) takes it. Through the
    /// lock's bias to this thread, the lock is taken and released inline, with nothing
    /// kept across `f` but the slot and the thread's number.
    #[inline(always)]
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let me = me();
        if let Some(guard) = self.inner.try_lock_biased(me) {
            return f(&mut self.held(guard));
        }
        f(&mut self.lock_unbiased(me))
    }

    /// [`lock`](Self::lock) where the lock is not biased to this thread.
    #[inline(never)]
    fn lock_unbiased(&self, me: usize) -> GateGuard<'_, T> {
        if self.barred.load(Ordering::Relaxed) == 0
            && let Some(guard) = self.inner.try_lock_plain(me)
        {
            return self.held(guard);
        }
        self.lock_contended(me)
    }

    /// Whether a thread holds the lock now (a look that may be out of date as soon as it
    /// is taken).
    pub(crate) fn is_held(&self) -> bool {
        self.inner.is_held()
    }

    /// The guard of a lock just taken by `me`.
    #[inline]
    fn held<'a>(&'a self, guard: BiasedGuard<'a, T>) -> GateGuard<'a, T> {
        // Taken through its bias, the lock was this thread's already (it took it plainly
        // 256 times in a row first), and only sleepers look at `taken` (threads trying
        // the lock revoke the bias instead): the release counts it if one sleeps.
        if !guard.through_bias() {
            self.count_taken();
        }
        GateGuard { gate: self, guard }
    }

    /// Counts one more acquisition. Under the lock: a load and a store, no
    /// read-modify-write.
    #[inline]
    fn count_taken(&self) {
        let taken = self.taken.load(Ordering::Relaxed);
        self.taken.store(taken.wrapping_add(1), Ordering::Relaxed);
    }

    #[cold]
    fn lock_contended(&self, me: usize) -> GateGuard<'_, T> {
        let began = Instant::now();
        let mut tries: u32 = 0;
        let mut waiting = false;
        let mut arrival = began;
        let mut seen = self.taken.load(Ordering::Relaxed);
        let mut retaken = 0;
        let guard = loop {
            let barred = self.barred.load(Ordering::Acquire);
            if barred == me {
                // This thread handed the lock over: it keeps out until another took it,
                // unless no one is left to take it, or it waited long enough.
                if self.waiting.load(Ordering::Acquire) == usize::from(waiting)
                    || began.elapsed() > AT_MOST
                {
                    let _ =
                        self.barred
                            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
                } else {
                    self.wait(&mut waiting);
                    self.sleep();
                }
                continue;
            }
            if self.arrived.load(Ordering::Acquire) == me {
                // Came to take the lock over: the holder lets it go at its next
                // release, or it is free already.
                if (barred != 0 || tries.is_multiple_of(8))
                    && let Some(guard) = self.inner.try_lock(me)
                {
                    break guard;
                }
                tries = tries.wrapping_add(1);
                if arrival.elapsed() > AT_MOST {
                    let _ =
                        self.arrived
                            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
                } else if tries.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    Self::pause();
                }
                continue;
            }
            if !waiting {
                if let Some(guard) = self.inner.try_lock(me) {
                    break guard;
                }
                tries = tries.saturating_add(1);
                // A holder that takes the lock again and again while this thread tries
                // appends flat out: this thread sleeps until it waited a slice. While one
                // hold lasts (a roll, a large event), this thread keeps trying.
                let now = self.taken.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    retaken += 1;
                }
                if retaken < RETAKEN && began.elapsed() < HOLD_AT_MOST {
                    if tries.is_multiple_of(YIELD_EVERY) {
                        std::thread::yield_now();
                    } else {
                        Self::pause();
                    }
                    continue;
                }
            }
            // Asleep, out of the holder's way, a nap at a time. The first thread that
            // wakes having waited a slice comes to take the lock over. The others take
            // it if it is free, but take it from a thread it is biased to
            // (`BiasedLock`) only if no one took it since they last looked: a holder
            // still taking it hands it over to the one that waited a slice.
            self.wait(&mut waiting);
            if began.elapsed() >= SLICE
                && self
                    .arrived
                    .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                arrival = Instant::now();
                tries = 0;
                continue;
            }
            let now = self.taken.load(Ordering::Relaxed);
            let free = if now == seen {
                self.inner.try_lock(me)
            } else {
                self.inner.try_lock_unbiased(me)
            };
            if let Some(guard) = free {
                break guard;
            }
            seen = now;
            self.sleep();
        };
        if waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        // A new slice: whatever the last one barred is over.
        let _ = self
            .arrived
            .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
        let barred = self.barred.load(Ordering::Acquire);
        if barred != 0 {
            let _ = self
                .barred
                .compare_exchange(barred, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        self.held(guard)
    }

    /// Between two tries: each try takes the lock's cache line from the holder.
    #[inline]
    fn pause() {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }

    /// Counts this thread among the waiters, once.
    fn wait(&self, waiting: &mut bool) {
        if !*waiting {
            *waiting = true;
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Sleeps for a [`NAP`].
    fn sleep(&self) {
        std::thread::sleep(NAP);
    }
}

impl<T> std::ops::Deref for GateGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for GateGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for GateGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.gate.waiting.load(Ordering::Relaxed) != 0 {
            self.others_wait();
        }
    }
}

impl<T> GateGuard<'_, T> {
    /// Others wait: counts this acquisition for the sleepers, and keeps out of the lock
    /// once one of them waited a slice and came for it.
    #[inline]
    fn others_wait(&mut self) {
        let gate = self.gate;
        if self.guard.through_bias() {
            gate.count_taken();
        }
        let arrived = gate.arrived.load(Ordering::Acquire);
        let me = self.guard.taker();
        if arrived != 0 && arrived != me {
            gate.barred.store(me, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Threads that each take the lock flat out for `run`, holding it 5 µs each time,
    /// each counting its acquisitions, and the longest any waited for one; `occasional`
    /// more threads take the lock once every millisecond.
    fn contend(flat_out: usize, occasional: usize, run: Duration) -> (Vec<u64>, Duration, u64) {
        let _alone = crate::busy_threads_alone();
        let gate = Gate::new(0_u64);
        let stop = AtomicBool::new(false);
        let longest = AtomicU64::new(0);
        // Takes the lock, noting how long that took.
        let take = || {
            let began = Instant::now();
            let held = gate.lock();
            let waited = u64::try_from(began.elapsed().as_nanos()).unwrap();
            longest.fetch_max(waited, Ordering::Relaxed);
            held
        };
        let (counts, occasional_takes) = std::thread::scope(|s| {
            let busy: Vec<_> = (0..flat_out)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = 0_u64;
                        while !stop.load(Ordering::Relaxed) {
                            let mut held = take();
                            // Not atomic: two holders at once would lose increments.
                            let seen = *held;
                            // Held for a while, as an append of a large event: released
                            // only for an instant between two.
                            let hold = Instant::now();
                            while hold.elapsed() < Duration::from_micros(5) {
                                std::hint::black_box(&mut *held);
                            }
                            *held = seen + 1;
                            mine += 1;
                        }
                        mine
                    })
                })
                .collect();
            let now_and_then: Vec<_> = (0..occasional)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = 0_u64;
                        while !stop.load(Ordering::Relaxed) {
                            let mut held = take();
                            *held += 1;
                            drop(held);
                            mine += 1;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        mine
                    })
                })
                .collect();
            std::thread::sleep(run);
            stop.store(true, Ordering::Relaxed);
            let counts: Vec<u64> = busy.into_iter().map(|t| t.join().unwrap()).collect();
            let occasional: u64 = now_and_then.into_iter().map(|t| t.join().unwrap()).sum();
            (counts, occasional)
        });
        let total: u64 = counts.iter().sum::<u64>() + occasional_takes;
        assert_eq!(*gate.lock(), total, "no two threads held the lock at once");
        assert_eq!(
            gate.waiting.load(Ordering::Relaxed),
            0,
            "no waiter left counted"
        );
        (
            counts,
            Duration::from_nanos(longest.load(Ordering::Relaxed)),
            occasional_takes,
        )
    }

    /// However many threads want the lock flat out, each gets it, again and again, and
    /// none waits long: the promise is about a slice per thread ahead of it (a
    /// millisecond or two here); the bound is loose enough for a loaded machine.
    #[test]
    fn every_thread_appending_flat_out_gets_the_lock_again_and_again() {
        for threads in [2, 3, 5] {
            let (counts, longest, _) = contend(threads, 0, Duration::from_millis(400));
            for (t, &count) in counts.iter().enumerate() {
                assert!(count > 100, "thread {t} of {threads} starved: {counts:?}");
            }
            assert!(
                longest < Duration::from_millis(100),
                "{threads} threads: a wait of {longest:?}"
            );
        }
    }

    /// A thread taking the lock now and then, beside threads taking it flat out, is not
    /// kept out: it gets it about every millisecond it asks.
    #[test]
    fn a_thread_taking_the_lock_now_and_then_is_not_kept_out_by_busy_ones() {
        let (counts, longest, occasional) = contend(2, 1, Duration::from_millis(400));
        assert!(
            occasional > 50,
            "the occasional thread got the lock {occasional} times"
        );
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
        assert!(
            longest < Duration::from_millis(100),
            "a wait of {longest:?}"
        );
    }

    /// A thread that handed the lock over to one that then stopped wanting it is not
    /// kept out for good: it takes the lock back.
    #[test]
    fn a_holder_that_handed_over_takes_the_lock_back_when_the_other_leaves() {
        let gate = Gate::new(());
        std::thread::scope(|s| {
            let busy = s.spawn(|| {
                let until = Instant::now() + Duration::from_millis(300);
                let mut longest = Duration::ZERO;
                while Instant::now() < until {
                    let began = Instant::now();
                    drop(gate.lock());
                    longest = longest.max(began.elapsed());
                }
                longest
            });
            // Threads that each take the lock once, while the busy thread has it, and
            // leave.
            for _ in 0..20 {
                s.spawn(|| drop(gate.lock())).join().unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            let longest = busy.join().unwrap();
            assert!(
                longest < Duration::from_millis(250),
                "a wait of {longest:?}"
            );
        });
        assert_eq!(gate.barred.load(Ordering::Relaxed), 0);
        assert_eq!(gate.arrived.load(Ordering::Relaxed), 0);
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }

    /// A holder that panics leaves the lock usable.
    #[test]
    fn a_holder_that_panicked_leaves_the_lock_usable() {
        let gate = Gate::new(1_u32);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = gate.lock();
                panic!("a holder panics");
            })
            .join()
        });
        assert!(result.is_err());
        assert_eq!(*gate.lock(), 1);
    }
}
