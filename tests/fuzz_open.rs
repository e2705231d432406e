//! The proptest twin of the cargo-fuzz target `fuzz/fuzz_targets/open_iterate.rs`: the
//! same checks (`reliability_support/open_any.rs`) over arbitrary bytes, over valid
//! streams with random damage, and over every input kept in the fuzzer's corpus.
//!
//! `EVSTREAM_FUZZ_CASES` sets the cases per strategy (default 1500); `scripts/soak.sh`
//! runs many more.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "reliability_support/open_any.rs"]
mod open_any;
mod reliability_support;

use std::path::{Path, PathBuf};

use evstream::format::{EventHeader, Trailer};
use proptest::prelude::*;
use reliability_support::env_count;
use zerocopy::IntoBytes;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: env_count("EVSTREAM_FUZZ_CASES", 1500) as u32,
        ..ProptestConfig::default()
    }
}

/// A valid stream of these events, with at least `free` zero bytes after them, then the
/// trailer. With `flushed`, the durable watermark covers every event; otherwise none.
fn encode(events: &[(i64, Vec<u8>)], free: usize, flushed: bool) -> Vec<u8> {
    let mut bytes = vec![0u8; 24];
    for (ts, payload) in events {
        bytes.extend_from_slice(EventHeader::for_payload(*ts, payload).unwrap().as_bytes());
        bytes.extend_from_slice(payload);
    }
    let end = bytes.len() as u64;
    bytes[0..8].copy_from_slice(&end.to_le_bytes());
    bytes[8..16].copy_from_slice(&(events.len() as u64).to_le_bytes());
    let trailer = if flushed && !events.is_empty() {
        Trailer {
            durable_offset: end,
            durable_count: events.len() as u64,
            durable_last_timestamp: events.last().map(|e| e.0),
            ..Trailer::empty()
        }
    } else {
        Trailer::empty()
    };
    open_any::with_trailer(bytes, free, trailer)
}

/// Damage to a valid stream.
#[derive(Debug, Clone)]
enum Damage {
    Byte { at: usize, value: u8 },
    Zeros { at: usize, len: usize },
    Truncate { len: usize },
    Header { field: usize, value: u64 },
    Size { event_at: usize, value: u32 },
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2000,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        Just(1 << 32),
        any::<u64>(),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Damage::Byte { at, value }),
        (any::<usize>(), 1usize..600).prop_map(|(at, len)| Damage::Zeros { at, len }),
        any::<usize>().prop_map(|len| Damage::Truncate { len }),
        (0usize..3, interesting_u64()).prop_map(|(field, value)| Damage::Header { field, value }),
        (
            any::<usize>(),
            prop_oneof![0u32..700, Just(u32::MAX), any::<u32>()]
        )
            .prop_map(|(event_at, value)| Damage::Size { event_at, value }),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage, event_offsets: &[usize]) {
    let len = bytes.len();
    match *damage {
        Damage::Byte { at, value } if len > 0 => bytes[at % len] = value,
        Damage::Zeros { at, len: n } if len > 0 => {
            let at = at % len;
            let end = (at + n).min(len);
            bytes[at..end].fill(0);
        }
        Damage::Truncate { len: keep } => bytes.truncate(keep % (len + 1)),
        Damage::Header { field, value } if len >= 24 => {
            bytes[field * 8..field * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        Damage::Size { event_at, value } if !event_offsets.is_empty() => {
            let at = event_offsets[event_at % event_offsets.len()];
            if at + 12 <= len {
                bytes[at + 8..at + 12].copy_from_slice(&value.to_le_bytes());
            }
        }
        _ => {}
    }
}

fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.evs");
    (dir, path)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..1200)) {
        let (_dir, path) = scratch();
        open_any::open_any(&path, &data);
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_header(
        offset in 24u64..1200,
        count in 0u64..20,
        body in prop::collection::vec(any::<u8>(), 0..1200),
    ) {
        let (_dir, path) = scratch();
        let mut data = offset.to_le_bytes().to_vec();
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&7i64.to_le_bytes());
        data.extend_from_slice(&body);
        // With a valid trailer whose watermark claims nothing: all of it is unflushed.
        let data = open_any::with_trailer(data, 0, Trailer::empty());
        open_any::open_any(&path, &data);
    }

    #[test]
    fn damaged_valid_streams(
        events in prop::collection::vec(
            (0i64..4, prop::collection::vec(any::<u8>(), 0..700)), 0..8),
        free in 0usize..1200,
        flushed in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let (_dir, path) = scratch();
        let mut ts = 0;
        let events: Vec<(i64, Vec<u8>)> = events
            .into_iter()
            .map(|(step, payload)| {
                ts += step;
                (ts, payload)
            })
            .collect();
        let mut offsets = Vec::new();
        let mut at = 24;
        for (_, payload) in &events {
            offsets.push(at);
            at += 16 + payload.len();
        }
        let mut data = encode(&events, free, flushed);
        for d in &damages {
            apply(&mut data, d, &offsets);
        }
        open_any::open_any(&path, &data);
    }
}

/// Every input the fuzzer kept, and every crash it ever found (fixed since).
#[test]
fn fuzz_corpus_and_artifacts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let (_dir, path) = scratch();
    let mut inputs = 0;
    for sub in ["corpus/open_iterate", "regressions/open_iterate"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for entry in entries {
            let file = entry.unwrap().path();
            let data = std::fs::read(&file).unwrap();
            let result = std::panic::catch_unwind(|| open_any::open_any(&path, &data));
            assert!(result.is_ok(), "{} fails", file.display());
            // The corpus predates format version 2: also as the body of a version 2 file.
            let v2 = open_any::with_trailer(data, 0, Trailer::empty());
            let result = std::panic::catch_unwind(|| open_any::open_any(&path, &v2));
            assert!(result.is_ok(), "{} with a trailer fails", file.display());
            inputs += 1;
        }
    }
    eprintln!("fuzz: replayed {inputs} kept inputs");
    assert!(inputs > 0, "the fuzz corpus is missing");
}
