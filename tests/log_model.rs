//! A log against a plain model (every event appended, with its position) over random
//! operations: appends of every size (empty, all zeros, larger than a segment, out of
//! order), rolls by size and by time, flushes, reopened writers, retention by segment
//! count with and without cursors holding it, cursor commits, cursor files damaged by a
//! flipped bit, and every way of reading.
//!
//! The promises checked after each operation: an append's position is the next place in
//! the newest segment, or the start of the next segment when it rolls (and only then); a
//! refused append changes nothing; readers see exactly the appended events that retention
//! kept, in order, at their positions; retention deletes whole segments, oldest first,
//! never the newest and (unless told to) never one a cursor still needs, nor any while a
//! cursor cannot be read; seek, tail, lag, `stat` (which cursor holds how many segments)
//! and cursors agree with the model; a reopened writer continues where the last one
//! stopped, with nothing to repair.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use evstream::{Error, LogOptions, LogReader, LogWriter, Position, WriteBack};
use proptest::prelude::*;

const HEADER: u64 = 24;
const EVENT_HEADER: u64 = 16;

#[derive(Debug, Clone)]
enum Payload {
    /// `len` bytes that depend on the event's index.
    Varied(usize),
    /// `len` zero bytes.
    Zeros(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// Append with a timestamp this far after (or before, if negative) the last one.
    Append {
        step: i64,
        payload: Payload,
    },
    Flush,
    Reopen,
    ReadAll,
    SeekTime(i64),
    Tail(usize),
    /// Commit cursor `name` at the event this far (a fraction of the events) into the log.
    Commit {
        name: usize,
        at: u8,
    },
    RemoveCursor(usize),
    /// Flip a bit of cursor `name`'s file, if it has one (the same bit each time).
    DamageCursor(usize),
    Retain,
}

const CURSORS: [&str; 2] = ["billing", "audit.v2"];

fn op() -> impl Strategy<Value = Op> {
    let payload = prop_oneof![
        8 => (0usize..300).prop_map(Payload::Varied),
        2 => (0usize..300).prop_map(Payload::Zeros),
        1 => (1000usize..3200).prop_map(Payload::Varied),
        1 => (2900usize..12_000).prop_map(Payload::Zeros),
    ];
    prop_oneof![
        12 => (-3i64..25, payload).prop_map(|(step, payload)| Op::Append { step, payload }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReadAll),
        1 => (-10i64..2000).prop_map(Op::SeekTime),
        1 => (0usize..12).prop_map(Op::Tail),
        1 => (0usize..2, any::<u8>()).prop_map(|(name, at)| Op::Commit { name, at }),
        1 => (0usize..2).prop_map(Op::RemoveCursor),
        1 => (0usize..2).prop_map(Op::DamageCursor),
        1 => Just(Op::Retain),
    ]
}

#[derive(Debug, Clone)]
struct Event {
    position: Position,
    timestamp: i64,
    payload: Vec<u8>,
}

impl Event {
    fn next_position(&self) -> Position {
        Position::new(
            self.position.segment(),
            self.position.offset() + EVENT_HEADER + self.payload.len() as u64,
        )
        .unwrap()
    }
}

/// What the log should hold.
#[derive(Debug, Default)]
struct Model {
    /// Every event appended, retired ones included.
    events: Vec<Event>,
    /// The newest segment and its write offset.
    segment: u64,
    offset: u64,
    /// End of the roll interval of the newest segment's first event.
    roll_at: Option<i64>,
    /// Index of the first event not retired.
    first_kept: usize,
    /// The oldest segment that still exists.
    first_segment: u64,
    cursors: [Option<Position>; 2],
    /// Whether each cursor's file is damaged (until committed again or removed).
    damaged: [bool; 2],
}

impl Model {
    /// Whether a damaged cursor holds every segment (without `retain_past_cursors`).
    fn damage_holds(&self, past_cursors: bool) -> bool {
        !past_cursors && self.damaged.iter().any(|&d| d)
    }

    fn kept(&self) -> &[Event] {
        &self.events[self.first_kept..]
    }

    fn end(&self) -> Position {
        Position::new(self.segment, self.offset).unwrap()
    }

    /// Events of the segment `first_segment`, which must still be kept.
    fn in_first_segment(&self) -> usize {
        self.events[self.first_kept..]
            .iter()
            .take_while(|e| e.position.segment() == self.first_segment)
            .count()
    }

    /// Retires the segments before the oldest one the log at `path` has now (deleted by
    /// retention that no `take_retired` reported: that of a writer's drop).
    fn retire_before(&mut self, path: &Path) {
        let start = LogReader::open(path).unwrap().stat().unwrap().first_segment;
        while self.first_segment < start {
            self.first_kept += self.in_first_segment();
            self.first_segment += 1;
        }
    }
}

fn bytes(payload: &Payload, index: usize) -> Vec<u8> {
    match *payload {
        Payload::Varied(len) => (0..len).map(|k| (index * 31 + k * 7 + 1) as u8).collect(),
        Payload::Zeros(len) => vec![0; len],
    }
}

fn as_model(
    events: impl Iterator<Item = evstream::Result<evstream::LogEvent>>,
) -> Vec<(Position, i64, Vec<u8>)> {
    events
        .map(|e| {
            let e = e.unwrap();
            (e.position(), e.timestamp(), e.payload().to_vec())
        })
        .collect()
}

fn triples(events: &[Event]) -> Vec<(Position, i64, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.position, e.timestamp, e.payload.clone()))
        .collect()
}

/// Checks every way of reading the log against the model.
fn check_reads(path: &Path, model: &Model, largest_ts: i64) -> Result<(), TestCaseError> {
    let reader = LogReader::open(path).unwrap();
    let kept = model.kept();
    prop_assert_eq!(as_model(reader.iter().unwrap()), triples(kept));
    let stat = reader.stat().unwrap();
    prop_assert_eq!(stat.first_segment, model.first_segment);
    prop_assert_eq!(stat.last_segment, model.segment);
    prop_assert_eq!(stat.events, kept.len() as u64);
    prop_assert_eq!(stat.first_event, model.first_kept as u64);
    prop_assert_eq!(stat.end, model.end());
    prop_assert_eq!(stat.first_timestamp, kept.first().map(|e| e.timestamp));
    prop_assert_eq!(
        stat.last_timestamp,
        model.events.last().map(|e| e.timestamp)
    );
    prop_assert!(reader.verify().unwrap().is_ok());
    // Seeks to a few points, iteration from every kept event's position (a sample).
    for t in [
        i64::MIN,
        -1,
        0,
        largest_ts / 2,
        largest_ts,
        largest_ts + 1,
        i64::MAX,
    ] {
        let expect = kept.iter().find(|e| e.timestamp >= t).map(|e| e.position);
        prop_assert_eq!(reader.seek_time(t).unwrap(), expect, "seek {}", t);
    }
    let step = (kept.len() / 5).max(1);
    for (i, event) in kept.iter().enumerate().step_by(step) {
        prop_assert_eq!(
            as_model(reader.iter_from(event.position).unwrap()),
            triples(&kept[i..])
        );
        let lag = reader.lag(event.position).unwrap();
        prop_assert_eq!(lag.events, (kept.len() - i) as u64);
        let lag_bytes: u64 = kept[i..]
            .iter()
            .map(|e| EVENT_HEADER + e.payload.len() as u64)
            .sum();
        prop_assert_eq!(lag.bytes, lag_bytes);
    }
    let lag = reader.lag(model.end()).unwrap();
    prop_assert_eq!((lag.events, lag.bytes), (0, 0));
    for (k, name) in CURSORS.iter().enumerate() {
        if model.damaged[k] {
            let refused = matches!(reader.cursor(name), Err(Error::BadCursor { .. }));
            prop_assert!(refused, "damaged cursor {} read", name);
            continue;
        }
        prop_assert_eq!(reader.cursor(name).unwrap(), model.cursors[k]);
        if let Some(at) = model.cursors[k]
            && at.segment() >= model.first_segment
        {
            let from = kept
                .iter()
                .position(|e| e.position >= at)
                .unwrap_or(kept.len());
            prop_assert_eq!(
                as_model(reader.iter_cursor(name).unwrap()),
                triples(&kept[from..])
            );
            prop_assert_eq!(
                reader.cursor_lag(name).unwrap().map(|l| l.events),
                Some((kept.len() - from) as u64)
            );
        }
    }
    Ok(())
}

/// Checks `stat`'s account of the cursors that hold retention: each cursor keeps the
/// segments the count limit would delete from its own segment on; a damaged one keeps
/// them all and is always listed; none with `retain_past_cursors` or without a limit.
fn check_held(
    path: &Path,
    model: &Model,
    retain: Option<u64>,
    past_cursors: bool,
) -> Result<(), TestCaseError> {
    let stat = LogReader::open(path).unwrap().stat().unwrap();
    let mut expect = Vec::new();
    if let Some(limit) = retain
        && !past_cursors
    {
        let segments = model.segment - model.first_segment + 1;
        let over = segments.saturating_sub(limit.max(1));
        let deleted = model.first_segment..model.first_segment + over;
        for (k, name) in CURSORS.iter().enumerate() {
            let Some(at) = model.cursors[k] else {
                continue;
            };
            let (position, held) = if model.damaged[k] {
                (None, over)
            } else {
                let held = deleted.clone().filter(|&seq| seq >= at.segment()).count() as u64;
                (Some(at), held)
            };
            if held > 0 || position.is_none() {
                expect.push((
                    name.to_string(),
                    position,
                    held,
                    held * stat_segment_size(&stat),
                ));
            }
        }
    }
    expect.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let held: Vec<_> = stat
        .held
        .iter()
        .map(|h| (h.cursor.clone(), h.position, h.segments, h.bytes))
        .collect();
    prop_assert_eq!(held, expect);
    Ok(())
}

/// The segment size, from what `stat` says the segments and the spare take.
fn stat_segment_size(stat: &evstream::LogStat) -> u64 {
    (stat.disk_bytes - stat.spare_bytes) / stat.segments
}

/// Applies what the background threads retired, as `take_retired` reports it, to the
/// model, checking that only whole segments went, oldest first, never the newest, and
/// never one a cursor needs.
fn retire(
    model: &mut Model,
    retired: &[evstream::Retired],
    past_cursors: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(
        retired.is_empty() || !model.damage_holds(past_cursors),
        "segments retired while a cursor was damaged"
    );
    for r in retired {
        prop_assert_eq!(r.segment, model.first_segment, "oldest first");
        prop_assert!(r.segment < model.segment, "never the newest");
        let in_segment = model.in_first_segment();
        prop_assert_eq!(r.first_event, model.first_kept as u64);
        prop_assert_eq!(r.events, in_segment as u64);
        if !past_cursors {
            for at in model.cursors.iter().flatten() {
                prop_assert!(
                    at.segment() > r.segment,
                    "segment {} retired under a cursor at {}",
                    r.segment,
                    at
                );
            }
        }
        model.first_kept += in_segment;
        model.first_segment = r.segment + 1;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("EVSTREAM_LOG_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96)
    ))]

    /// The log agrees with the model after every operation.
    #[test]
    fn log_agrees_with_model(
        ops in prop::collection::vec(op(), 1..150),
        segment_kib in 0u64..9,
        roll in prop::option::of(50u64..400),
        retain in prop::option::of(2u64..5),
        past_cursors in any::<bool>(),
        lazy in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let segment_size = 4096 + segment_kib * 1024;
        let options = LogOptions::default()
            .segment_size(segment_size)
            .roll_interval(roll.map(Duration::from_nanos))
            .retain_segments(retain)
            .retain_past_cursors(past_cursors)
            .write_back(if lazy { WriteBack::Lazy } else { WriteBack::Eager });
        let events_end = evstream::format::trailer_offset(segment_size).unwrap();
        let largest = events_end - HEADER;
        let mut log = LogWriter::create(&path, options).unwrap();
        let mut model = Model { offset: HEADER, ..Model::default() };
        let mut largest_ts = 0i64;
        for op in ops {
            match op {
                Op::Append { step, payload } => {
                    let last = model.events.last().map(|e| e.timestamp);
                    let ts = last.unwrap_or(0) + step;
                    let bytes = bytes(&payload, model.events.len());
                    let needed = EVENT_HEADER + bytes.len() as u64;
                    let out_of_order = last.is_some_and(|last| ts < last);
                    let too_large = needed > largest;
                    match log.append(ts, &bytes) {
                        Ok(position) => {
                            prop_assert!(!out_of_order && !too_large);
                            let in_interval = match (roll, model.roll_at) {
                                (Some(_), Some(at)) => ts < at,
                                _ => true,
                            };
                            let empty = model.offset == HEADER;
                            let fits = model.offset + needed <= events_end;
                            let stays = empty || (fits && in_interval);
                            if !stays {
                                model.segment += 1;
                                model.offset = HEADER;
                            }
                            if model.offset == HEADER {
                                model.roll_at = roll.map(|r| {
                                    let r = r as i64;
                                    (ts.div_euclid(r) + 1) * r
                                });
                            }
                            prop_assert_eq!(position, model.end(), "append {}", model.events.len());
                            model.offset += needed;
                            model.events.push(Event { position, timestamp: ts, payload: bytes });
                            largest_ts = ts;
                        }
                        Err(Error::OutOfOrder { previous, got }) => {
                            prop_assert!(out_of_order);
                            prop_assert_eq!(Some(previous), last);
                            prop_assert_eq!(got, ts);
                        }
                        Err(Error::EventTooLarge { needed: n, largest: l, .. }) => {
                            prop_assert!(too_large);
                            prop_assert_eq!((n, l), (needed, largest));
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                    }
                    prop_assert_eq!(log.end(), model.end());
                    prop_assert_eq!(log.event_count(), model.events.len() as u64);
                }
                Op::Flush => log.flush().unwrap(),
                Op::Reopen => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    drop(log);
                    log = LogWriter::open(&path).unwrap();
                    prop_assert!(log.recovery().is_clean(), "{:?}", log.recovery());
                    prop_assert_eq!(log.end(), model.end());
                    prop_assert_eq!(log.event_count(), model.events.len() as u64);
                    // A writer's drop waits for the seals, whose retention may delete.
                    let before = model.first_segment;
                    model.retire_before(&path);
                    prop_assert!(
                        before == model.first_segment || !model.damage_holds(past_cursors),
                        "segments retired while a cursor was damaged"
                    );
                }
                Op::ReadAll => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    check_reads(&path, &model, largest_ts)?;
                }
                Op::SeekTime(t) => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    let reader = LogReader::open(&path).unwrap();
                    let expect = model.kept().iter().find(|e| e.timestamp >= t).map(|e| e.position);
                    prop_assert_eq!(reader.seek_time(t).unwrap(), expect);
                }
                Op::Tail(n) => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    let reader = LogReader::open(&path).unwrap();
                    let kept = model.kept();
                    let from = kept.len().saturating_sub(n);
                    prop_assert_eq!(
                        as_model(reader.tail(n).unwrap().into_iter().map(Ok::<_, Error>)),
                        triples(&kept[from..])
                    );
                }
                Op::Commit { name, at } => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    // A kept event's position, or the end of the log.
                    let kept = model.kept();
                    let i = kept.len() * usize::from(at) / 255;
                    let position = match kept.get(i) {
                        // Past the event before it, as a consumer commits it.
                        Some(event) if i > 0 && at % 2 == 0 => {
                            let before = &kept[i - 1];
                            if before.position.segment() == event.position.segment() {
                                prop_assert_eq!(before.next_position(), event.position);
                            }
                            event.position
                        }
                        Some(event) => event.position,
                        None => model.end(),
                    };
                    let reader = LogReader::open(&path).unwrap();
                    reader.commit_cursor(CURSORS[name], position).unwrap();
                    model.cursors[name] = Some(position);
                    model.damaged[name] = false;
                    prop_assert_eq!(reader.cursor(CURSORS[name]).unwrap(), Some(position));
                }
                Op::RemoveCursor(name) => {
                    let reader = LogReader::open(&path).unwrap();
                    let removed = reader.remove_cursor(CURSORS[name]).unwrap();
                    prop_assert_eq!(removed, model.cursors[name].is_some());
                    model.cursors[name] = None;
                    model.damaged[name] = false;
                }
                Op::DamageCursor(name) => {
                    // What the background retired before the damage.
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    if model.cursors[name].is_some() {
                        let file = path.join("cursors").join(CURSORS[name]);
                        let mut bytes = std::fs::read(&file).unwrap();
                        bytes[9] ^= 1;
                        std::fs::write(&file, &bytes).unwrap();
                        // Flipped twice, the bit is back.
                        model.damaged[name] = !model.damaged[name];
                    }
                }
                Op::Retain => {
                    let retired = log.take_retired();
                    retire(&mut model, &retired, past_cursors)?;
                    let segments = model.segment - model.first_segment + 1;
                    let over = retain.map_or(0, |limit| segments.saturating_sub(limit.max(1)));
                    let retired = match log.enforce_retention() {
                        Ok(retired) => retired,
                        Err(Error::BadCursor { name, .. }) => {
                            // Refused only when the limit would delete and a damaged cursor
                            // stops it.
                            prop_assert!(model.damage_holds(past_cursors) && over > 0);
                            let k = CURSORS.iter().position(|c| *c == name).unwrap();
                            prop_assert!(model.damaged[k]);
                            Vec::new()
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
                    };
                    retire(&mut model, &retired, past_cursors)?;
                    check_held(&path, &model, retain, past_cursors)?;
                    let segments = model.segment - model.first_segment + 1;
                    if let Some(limit) = retain {
                        let held = model.damage_holds(past_cursors)
                            || (!past_cursors
                                && model
                                    .cursors
                                    .iter()
                                    .flatten()
                                    .any(|at| at.segment() <= model.first_segment));
                        prop_assert!(
                            segments <= limit.max(1) || held,
                            "{} segments kept, limit {}",
                            segments,
                            limit
                        );
                    } else {
                        prop_assert!(retired.is_empty());
                    }
                }
            }
        }
        let retired = log.take_retired();
        retire(&mut model, &retired, past_cursors)?;
        drop(log);
        model.retire_before(&path);
        check_reads(&path, &model, largest_ts)?;
    }
}
