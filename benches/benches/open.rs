//! Opening a large flushed stream for writing, against a plain `std` open and header
//! read, and against the full check that version 1 did on every open.
//!
//! The stream holds 2 GiB of events (64 KiB payloads), all flushed, in a file with
//! 64 MiB of free space after them (so the writer's scan for stale bytes past the write
//! offset has room to cost something), written once per run into a temporary directory;
//! its pages are warm (just written). `EVSTREAM_OPEN_BENCH_MIB` sets the event bytes in
//! MiB (default 2048; 16 in criterion's test mode, `cargo test --benches` or
//! `cargo bench -- --test`, which only checks that the bench runs).
//!
//! `cargo bench -p evstream-bench --bench open` runs it (about a minute, most of it
//! writing the file).

use std::io::Read;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use evstream::format::capacity_for_events;
use evstream::{Prefault, StreamReader, StreamWriter, WriterOptions};

/// Whether the bench runs once to check that it works, as criterion's test mode does:
/// `cargo test --benches` (no `--bench` argument) or `cargo bench -- --test`.
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench")
}

fn open(c: &mut Criterion) {
    let mib: u64 = std::env::var("EVSTREAM_OPEN_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if test_mode() { 16 } else { 2048 });
    let dir = tempfile::tempdir_in(std::env::var_os("EVSTREAM_BENCH_DIR").unwrap_or(".".into()))
        .expect("create a temporary directory");
    let path = dir.path().join("big.evs");
    let payload = vec![0x5a_u8; 64 << 10];
    let event = 16 + payload.len() as u64;
    let events = (mib << 20) / event;
    let capacity = capacity_for_events(events * event + (64 << 20)).expect("capacity");
    let mut writer = StreamWriter::create(&path, capacity).expect("create the stream");
    for i in 0..events {
        writer.append(i as i64, &payload).expect("append");
    }
    writer.flush().expect("flush");
    drop(writer);
    let options = || WriterOptions::default().prefault(Prefault::Off);

    let mut group = c.benchmark_group(format!("open/{mib}MiB_flushed"));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("evstream_writer_open", |b| {
        b.iter(|| drop(StreamWriter::open_with(&path, options()).expect("open")));
    });
    group.bench_function("evstream_reader_open", |b| {
        b.iter(|| drop(StreamReader::open(&path).expect("open")));
    });
    // The std baseline: open the file and read its 24-byte header.
    group.bench_function("std_open_read_header", |b| {
        b.iter(|| {
            let mut file = std::fs::File::open(&path).expect("open");
            let mut header = [0u8; 24];
            file.read_exact(&mut header).expect("read");
            header
        });
    });
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    // What every writer open cost before the durable watermark: a check of every event.
    group.bench_function("evstream_writer_open_check_durable", |b| {
        b.iter(|| {
            drop(StreamWriter::open_with(&path, options().check_durable(true)).expect("open"))
        });
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
