//! What a roll costs the appending thread: it allocates nothing. The segment it rolls
//! into comes prepared by the preparing thread with an index that has room for the
//! whole segment, and the queue the old segment joins is allocated when the writer
//! opens; an allocation at a roll is code run once a segment, cold, on the appending
//! thread (microseconds), as is any reallocation of the index while appending.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use evstream::{LogOptions, LogWriter, WriteBack};

/// Forwards to the system allocator and counts, per thread while armed, the requests.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s
// guarantees are ours; `note` only touches const-initialized thread-locals without
// destructors and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, COUNT.with(Cell::get))
}

/// Appends through several rolls, with either write-back policy, with and without
/// retention (which deletes and recycles segments behind the writer), allocate nothing
/// on the appending thread: not at a roll, not in the appends between.
#[test]
fn appends_and_rolls_allocate_nothing() {
    for (policy, retain) in [
        (WriteBack::Eager, None),
        (WriteBack::Lazy, None),
        (WriteBack::Eager, Some(2)),
        (WriteBack::Lazy, Some(2)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions::default()
            .segment_size(1 << 20)
            .write_back(policy)
            .retain_segments(retain);
        let mut log = LogWriter::create(dir.path().join("log"), options).unwrap();
        let payload = [7u8; 200];
        // Whatever runs once per process or writer (the first append's lazy statics).
        for i in 0..10 {
            log.append(i, &payload).unwrap();
        }
        let mut i = 10;
        while log.segment() < 8 {
            let (position, count) = allocations(|| log.append(i, &payload).unwrap());
            assert_eq!(
                count, 0,
                "{policy:?}, retaining {retain:?}: the append at {position} allocated"
            );
            i += 1;
        }
        drop(log);
    }
}

/// An `append_with` whose `fill` panics after the log rolled for its event (a new roll
/// interval) wrote no event: the events after it are placed by their own intervals, as
/// if it had never been called, through a `LogWriter` and through a `SharedLogWriter`.
#[test]
fn a_panicking_fill_after_a_roll_leaves_the_intervals_to_the_next_events() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    const HOUR: i64 = 3_600_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::default()
        .segment_size(1 << 20)
        .roll_interval(Some(std::time::Duration::from_secs(3600)));
    let segments_of = |append: &mut dyn FnMut(i64) -> evstream::Position| -> Vec<u64> {
        (1..5).map(|hour| append(hour * HOUR).segment()).collect()
    };

    let mut control = LogWriter::create(dir.path().join("control"), options.clone()).unwrap();
    control.append(0, b"hour 0").unwrap();
    let expected = segments_of(&mut |t| control.append(t, b"x").unwrap());
    assert_eq!(expected, [1, 2, 3, 4]);

    let mut log = LogWriter::create(dir.path().join("log"), options.clone()).unwrap();
    log.append(0, b"hour 0").unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        log.append_with(10 * HOUR, 4, |_| panic!("fill failed"))
    }));
    assert!(panicked.is_err());
    assert_eq!(segments_of(&mut |t| log.append(t, b"x").unwrap()), expected);

    let shared = evstream::SharedLogWriter::create(dir.path().join("shared"), options).unwrap();
    shared.append(0, b"hour 0").unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        shared.append_with(10 * HOUR, 4, |_| panic!("fill failed"))
    }));
    assert!(panicked.is_err());
    assert_eq!(
        segments_of(&mut |t| shared.append(t, b"x").unwrap()),
        expected
    );
}
