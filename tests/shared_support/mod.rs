//! What the tests of the writers many threads share (`SharedLogWriter`,
//! `SharedStreamWriter`) have in common: each thread's payloads, which name their thread
//! and their place in its order, and a race of threads started together.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Barrier;

/// Threads in each race.
pub const THREADS: u64 = 4;

/// Thread `t`'s event `i`: both in the first 16 bytes, then a length that varies.
pub fn payload(t: u64, i: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&t.to_le_bytes());
    p.extend_from_slice(&i.to_le_bytes());
    p.resize(16 + (i * 7 % 90) as usize, (t * 31 + i) as u8);
    p
}

/// The thread and the place of a payload made by [`payload`], its bytes checked.
pub fn decode(p: &[u8]) -> (u64, u64) {
    let t = u64::from_le_bytes(p[..8].try_into().unwrap());
    let i = u64::from_le_bytes(p[8..16].try_into().unwrap());
    assert_eq!(
        p,
        payload(t, i).as_slice(),
        "event {i} of thread {t}: bytes"
    );
    (t, i)
}

/// Checks that the payloads, in file order, hold each thread's events in its own order,
/// each once; returns how many each thread had.
pub fn assert_each_threads_order<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u64> {
    let mut next = vec![0u64; THREADS as usize];
    for p in payloads {
        let (t, i) = decode(p);
        assert_eq!(i, next[t as usize], "thread {t}'s events in its order");
        next[t as usize] += 1;
    }
    next
}

/// Runs `body(thread, writer)` on [`THREADS`] threads at once, each with its own clone
/// of `writer`, started together; returns what each returned.
pub fn race<W: Clone + Send + Sync, T: Send>(
    writer: &W,
    body: impl Fn(u64, &W) -> T + Sync,
) -> Vec<T> {
    let start = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let writer = writer.clone();
                let (start, body) = (&start, &body);
                s.spawn(move || {
                    start.wait();
                    body(t, &writer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Checks that the payloads, in file order, come in whole batches of `batch` events
/// (as [`payload`] numbered them, a batch's first a multiple of `batch`): no other
/// event between a batch's events.
pub fn assert_batches_whole<'a>(payloads: impl IntoIterator<Item = &'a [u8]>, batch: u64) {
    let payloads: Vec<&[u8]> = payloads.into_iter().collect();
    for chunk in payloads.chunks(batch as usize) {
        let (t, first) = decode(chunk[0]);
        assert_eq!(first % batch, 0, "a batch starts the chunk");
        for (k, p) in chunk.iter().enumerate() {
            assert_eq!(
                decode(p),
                (t, first + k as u64),
                "a batch's events together"
            );
        }
    }
}
