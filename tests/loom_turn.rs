//! A `loom` model of the processes' turn at a log (`src/log/shared.rs`; FORMAT.md, "Many
//! writer processes", "The handover record"): what a process killed at any step of its
//! turn leaves, and what the next holder makes of it.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_turn`.
//!
//! The model follows the protocol. `TURN`'s `flock` is a `Mutex` whose guard holds the
//! file's content, the handover record: the kernel drops a dead process's `flock`, so a
//! process killed at a step drops its guard there and stops, and what it wrote stays. The
//! newest segment as the page cache holds it is a row of event slots, a write offset (the
//! events published), whether bytes lie past the write offset (an event cut short), and
//! a repair generation. A process takes the turn, takes the record (zeroing its magic),
//! opens the writer (from the record if it is valid and matches the segment, else in full,
//! which clears what lies past the write offset and moves the generation), writes each
//! event past the write offset, publishes it, counts it acknowledged, and gives the turn
//! up by writing the record of what it leaves. One process may be killed after any step.
//!
//! What is checked is the user's promise: every acknowledged event is in the log once,
//! each process's in its order, and no writer ever goes on from a segment holding a cut
//! short event it was told was not there (the record vouches that nothing lies past the
//! write offset). A control in which the taker leaves the record valid during its turn
//! must be caught.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use loom::sync::{Arc, Mutex};

/// The handover record: what a clean writer left, for the next holder to check.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Record {
    write_offset: usize,
    generation: u64,
}

/// The newest segment, as the page cache holds it.
#[derive(Default)]
struct Segment {
    /// The event in each slot: (process, its event number).
    slots: Vec<(usize, usize)>,
    /// Events published.
    write_offset: usize,
    /// Bytes lie past the write offset: an event cut short.
    torn: bool,
    /// Moved by a repair.
    generation: u64,
}

struct Log {
    /// `TURN`: its `flock`, and the record in it (`None` once the magic is zeroed).
    turn: Mutex<Option<Record>>,
    segment: Mutex<Segment>,
    /// Events whose append returned, per process, in order.
    acknowledged: Mutex<Vec<Vec<usize>>>,
    /// The control: the taker leaves the record as it is.
    keep_record: bool,
}

/// Where a process stops: killed after this many steps (`usize::MAX`: never).
struct Kill(usize);

impl Kill {
    /// One more step; whether the process is still alive to take it.
    fn step(&mut self) -> bool {
        if self.0 == 0 {
            return false;
        }
        self.0 = self.0.saturating_sub(1);
        true
    }
}

impl Log {
    fn new(processes: usize, keep_record: bool) -> Self {
        Self {
            turn: Mutex::new(None),
            segment: Mutex::new(Segment::default()),
            acknowledged: Mutex::new(vec![Vec::new(); processes]),
            keep_record,
        }
    }

    /// One turn of `process`, appending `events` events numbered from `first`; returns
    /// whether the process is still alive.
    fn turn(&self, process: usize, first: usize, events: usize, kill: &mut Kill) -> bool {
        if !kill.step() {
            return false;
        }
        let mut turn = self.turn.lock().unwrap();
        // Take the record: its magic zeroed before anything else is done.
        let record = *turn;
        if !self.keep_record {
            *turn = None;
        }
        if !kill.step() {
            return false;
        }
        // Open the writer: from the record if it matches, else in full.
        let mut position = {
            let mut segment = self.segment.lock().unwrap();
            let matches = record.is_some_and(|r| {
                r.write_offset == segment.write_offset && r.generation == segment.generation
            });
            if matches {
                assert!(
                    !segment.torn,
                    "a writer went on from a record vouching for a segment with an event cut short"
                );
            } else if segment.torn {
                segment.torn = false;
                segment.generation += 1;
            }
            segment.write_offset
        };
        for event in first..first + events {
            if !kill.step() {
                return false;
            }
            // The event's bytes, past the write offset.
            {
                let mut segment = self.segment.lock().unwrap();
                segment.slots.truncate(position);
                segment.slots.push((process, event));
                segment.torn = true;
            }
            if !kill.step() {
                return false;
            }
            // Its publication: the write offset moves past it.
            {
                let mut segment = self.segment.lock().unwrap();
                position += 1;
                segment.write_offset = position;
                segment.torn = false;
            }
            if !kill.step() {
                return false;
            }
            self.acknowledged.lock().unwrap()[process].push(event);
        }
        if !kill.step() {
            return false;
        }
        // Closed cleanly: the record of what the writer left, then the turn given up.
        let generation = self.segment.lock().unwrap().generation;
        *turn = Some(Record {
            write_offset: position,
            generation,
        });
        if !kill.step() {
            return false;
        }
        drop(turn);
        true
    }

    /// After every process: each acknowledged event is in the log once, each
    /// process's in its order.
    fn check(&self) {
        let segment = self.segment.lock().unwrap();
        let log = &segment.slots[..segment.write_offset];
        for (process, acknowledged) in self.acknowledged.lock().unwrap().iter().enumerate() {
            let theirs: Vec<usize> = log
                .iter()
                .filter(|(p, _)| *p == process)
                .map(|&(_, e)| e)
                .collect();
            assert!(
                theirs.starts_with(acknowledged),
                "process {process}'s acknowledged events {acknowledged:?}, the log's {theirs:?}"
            );
        }
    }
}

/// Process 0 is killed after `kill` steps of its two turns; process 1 takes two turns
/// unharmed. Each turn appends one event.
fn model(kill: usize, keep_record: bool) {
    let log = Arc::new(Log::new(2, keep_record));
    let other = {
        let log = Arc::clone(&log);
        loom::thread::spawn(move || {
            let mut never = Kill(usize::MAX);
            for turn in 0..2 {
                assert!(log.turn(1, turn, 1, &mut never));
            }
        })
    };
    let mut killed = Kill(kill);
    for turn in 0..2 {
        if !log.turn(0, turn, 1, &mut killed) {
            break;
        }
    }
    other.join().unwrap();
    // A last holder opens the log: the same checks.
    assert!(log.turn(1, 2, 1, &mut Kill(usize::MAX)));
    log.check();
}

/// Steps in one turn of one event: take the lock, take the record, write, publish,
/// acknowledge, write the record, give the turn up.
const STEPS_PER_TURN: usize = 7;

#[test]
fn a_process_killed_at_any_step_of_its_turn_costs_no_acknowledged_event() {
    for kill in 0..=2 * STEPS_PER_TURN {
        loom::model(move || model(kill, false));
    }
}

#[test]
#[should_panic(expected = "vouching for a segment with an event cut short")]
fn a_record_left_valid_during_the_turn_is_caught() {
    for kill in 0..=2 * STEPS_PER_TURN {
        loom::model(move || model(kill, true));
    }
}
