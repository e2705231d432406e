//! A `loom` model of how a writer publishes events to readers: the header's
//! `write_offset` and `event_count` as atomics, the events region as plain bytes.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_publication`.
//! Loom runs the writer and readers under every interleaving (and every outcome the
//! C++ memory model allows for the atomics) and fails on any read of an event byte that
//! is not ordered after its write, which is what a reader seeing a partly written event
//! would be.
//!
//! The model follows `src/sys.rs` and `src/stream/writer.rs`: the writer writes an event's
//! payload, then its header, past the published offset; then stores `write_offset`
//! with `Release` and `event_count` with `Release`. Readers load `write_offset` with
//! `Acquire` and only then read bytes before it (`ReadMap::published`), and read the
//! count with `Acquire`. A control model with `Relaxed` publication must be caught.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};

/// Event `i` of the model: a one-byte header holding the payload length and a checksum
/// byte, then the payload. Lengths vary so events straddle each other's bytes.
fn event(i: u8) -> Vec<u8> {
    let payload: Vec<u8> = (0..=i).map(|k| 0x10 * (i + 1) + k).collect();
    let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut bytes = vec![payload.len() as u8, sum];
    bytes.extend(payload);
    bytes
}

struct Stream {
    write_offset: AtomicU64,
    event_count: AtomicU64,
    bytes: Vec<UnsafeCell<u8>>,
}

impl Stream {
    fn new(len: usize) -> Self {
        Self {
            write_offset: AtomicU64::new(0),
            event_count: AtomicU64::new(0),
            bytes: (0..len).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    fn write(&self, at: usize, byte: u8) {
        // SAFETY (model): only the writer thread writes, and only past the published
        // offset; loom checks that no reader access races with this write.
        self.bytes[at].with_mut(|p| unsafe { *p = byte });
    }

    fn read(&self, at: usize) -> u8 {
        // SAFETY (model): readers read only before an offset they loaded; loom checks
        // that the write of this byte happens before.
        self.bytes[at].with(|p| unsafe { *p })
    }
}

/// The writer's append: payload first, then the header, then the two stores.
fn append(stream: &Stream, offset: usize, count: u64, bytes: &[u8], publish: Ordering) {
    for (k, &b) in bytes.iter().enumerate().skip(2) {
        stream.write(offset + k, b);
    }
    stream.write(offset, bytes[0]);
    stream.write(offset + 1, bytes[1]);
    let end = (offset + bytes.len()) as u64;
    stream.write_offset.store(end, publish);
    stream.event_count.store(count, publish);
}

/// A reader's look at the stream: loads the count, then the offset, then parses every
/// event before the offset and checks it is whole. Returns the events found.
fn read(stream: &Stream, load: Ordering, events: &[Vec<u8>]) -> usize {
    let count = stream.event_count.load(load);
    let end = stream.write_offset.load(load) as usize;
    let mut at = 0;
    let mut found = 0;
    while at < end {
        let len = stream.read(at) as usize;
        let sum = stream.read(at + 1);
        let payload: Vec<u8> = (0..len).map(|k| stream.read(at + 2 + k)).collect();
        let expected = &events[found];
        assert_eq!(len + 2, expected.len(), "event {found}: length");
        assert_eq!(sum, payload.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
        assert_eq!(&payload[..], &expected[2..], "event {found}: payload");
        at += 2 + len;
        found += 1;
    }
    assert_eq!(at, end, "the offset falls between events");
    // The count was stored after the offset it goes with, so a count loaded first never
    // exceeds the events the offset covers.
    assert!(
        count as usize <= found,
        "count {count} ahead of {found} events"
    );
    found
}

fn model(events_n: u8, readers: usize, publish: Ordering, load: Ordering) {
    let events: Vec<Vec<u8>> = (0..events_n).map(event).collect();
    let len: usize = events.iter().map(Vec::len).sum();
    let stream = Arc::new(Stream::new(len));
    let writer = {
        let stream = Arc::clone(&stream);
        let events = events.clone();
        loom::thread::spawn(move || {
            let mut offset = 0;
            for (i, e) in events.iter().enumerate() {
                append(&stream, offset, i as u64 + 1, e, publish);
                offset += e.len();
            }
        })
    };
    let others: Vec<_> = (1..readers)
        .map(|_| {
            let stream = Arc::clone(&stream);
            let events = events.clone();
            loom::thread::spawn(move || read(&stream, load, &events))
        })
        .collect();
    // Two looks from one reader: what it sees never goes back.
    let first = read(&stream, load, &events);
    let second = read(&stream, load, &events);
    assert!(second >= first);
    writer.join().unwrap();
    for r in others {
        r.join().unwrap();
    }
    assert_eq!(read(&stream, load, &events), events.len());
}

#[test]
fn release_acquire_publication_never_shows_a_partial_event() {
    loom::model(|| model(2, 1, Ordering::Release, Ordering::Acquire));
}

#[test]
fn two_readers_three_events() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| model(3, 2, Ordering::Release, Ordering::Acquire));
}

#[test]
#[should_panic(expected = "Causality violation")]
fn relaxed_publication_is_caught() {
    // The control: without Release/Acquire a reader may see the offset before the bytes.
    loom::model(|| model(1, 1, Ordering::Relaxed, Ordering::Relaxed));
}

#[test]
#[should_panic(expected = "Causality violation")]
fn publishing_before_the_bytes_is_caught() {
    // The control for the order of the steps: an offset stored before the header.
    loom::model(|| {
        let stream = Arc::new(Stream::new(3));
        let writer = {
            let stream = Arc::clone(&stream);
            loom::thread::spawn(move || {
                stream.write(2, 0x10);
                stream.write_offset.store(3, Ordering::Release);
                stream.write(0, 1);
                stream.write(1, 0x10);
            })
        };
        read(&stream, Ordering::Acquire, &[event(0)]);
        writer.join().unwrap();
    });
}
