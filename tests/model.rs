//! The store against a plain model, `Vec<(i64, Vec<u8>)>`, over random operations.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use evstream::{Error, Prefault, StreamReader, StreamWriter, WriterOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append with a timestamp this far after (or before, if negative) the last one.
    Append {
        step: i64,
        payload: Vec<u8>,
    },
    Flush,
    Reopen,
    ReadAll,
    SeekTime(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-3i64..20, prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(step, payload)| Op::Append { step, payload }),
        1 => (0i64..40, prop::collection::vec(any::<u8>(), 1500..3000))
            .prop_map(|(step, payload)| Op::Append { step, payload }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReadAll),
        1 => (-5i64..600).prop_map(Op::SeekTime),
    ]
}

fn options(prefault: u8) -> WriterOptions {
    let mode = match prefault % 3 {
        0 => Prefault::Off,
        1 => Prefault::Inline,
        _ => Prefault::Background,
    };
    WriterOptions::default().prefault(mode).prefault_chunk(8192)
}

fn check_reader(path: &std::path::Path, model: &[(i64, Vec<u8>)]) {
    let reader = StreamReader::open(path).unwrap();
    let pairs = |events: evstream::Events<'_>| -> Vec<(i64, Vec<u8>)> {
        events
            .map(|e| {
                let e = e.unwrap();
                (e.timestamp(), e.payload().to_vec())
            })
            .collect()
    };
    assert_eq!(pairs(reader.iter()), model);
    assert_eq!(pairs(reader.iter_unverified()), model);
    let check = reader.verify().unwrap();
    assert!(check.is_ok());
    assert_eq!(check.events, model.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn store_agrees_with_model(ops in prop::collection::vec(op(), 1..120), capacity in 1536u64..40_000, prefault in any::<u8>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.evs");
        let mut writer = StreamWriter::create_with(&path, capacity, options(prefault)).unwrap();
        let mut model: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut used = 24u64;
        let end = evstream::format::trailer_offset(capacity).unwrap();
        for op in ops {
            match op {
                Op::Append { step, payload } => {
                    let last = model.last().map_or(0, |e| e.0);
                    let ts = last + step;
                    let needed = 16 + payload.len() as u64;
                    match writer.append(ts, &payload) {
                        Ok(offset) => {
                            prop_assert!(model.last().is_none_or(|e| e.0 <= ts));
                            prop_assert!(needed <= end - used);
                            prop_assert_eq!(offset, used);
                            used += needed;
                            model.push((ts, payload));
                        }
                        Err(Error::OutOfOrder { previous, got }) => {
                            prop_assert_eq!(previous, last);
                            prop_assert_eq!(got, ts);
                            prop_assert!(!model.is_empty() && ts < last);
                        }
                        Err(Error::Full { needed: n, available }) => {
                            prop_assert_eq!(n, needed);
                            prop_assert_eq!(available, end - used);
                            prop_assert!(needed > available);
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                    }
                }
                Op::Flush => writer.flush().unwrap(),
                Op::Reopen => {
                    drop(writer);
                    writer = StreamWriter::open_with(&path, options(prefault)).unwrap();
                    prop_assert!(writer.recovery().is_clean());
                    prop_assert_eq!(writer.event_count(), model.len() as u64);
                    prop_assert_eq!(writer.write_offset(), used);
                }
                Op::ReadAll => check_reader(&path, &model),
                Op::SeekTime(t) => {
                    let reader = StreamReader::open(&path).unwrap();
                    let mut expect = None;
                    let mut offset = 24u64;
                    for (ts, payload) in &model {
                        if *ts >= t {
                            expect = Some(offset);
                            break;
                        }
                        offset += 16 + payload.len() as u64;
                    }
                    prop_assert_eq!(reader.seek_time(t).unwrap(), expect);
                }
            }
        }
        prop_assert_eq!(writer.event_count(), model.len() as u64);
        drop(writer);
        check_reader(&path, &model);
    }
}
