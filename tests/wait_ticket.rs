//! Wait tickets: a follower's registration taken without sleeping, and one thread asleep
//! on many of them (what async followers build on).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use evstream::{
    LogOptions, LogReader, LogWriter, StreamReader, StreamWriter, WaitBell, WaitTicket,
};

const LONG: Option<Duration> = Some(Duration::from_secs(20));

#[test]
fn one_thread_asleep_on_many_streams_is_woken_by_the_one_that_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..20 {
        let path = dir.path().join(format!("{i}.evs"));
        writers.push(StreamWriter::create(&path, 1 << 16).unwrap());
        readers.push(StreamReader::open(&path).unwrap());
    }
    let tickets: Vec<WaitTicket> = readers
        .iter()
        .map(|r| r.wait_ticket(r.write_offset()).unwrap())
        .collect();
    let bell = WaitBell::new();
    let seen = bell.value();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writers[13].append(1, b"news").unwrap();
        writers
    });
    let refs: Vec<&WaitTicket> = tickets.iter().collect();
    let start = Instant::now();
    WaitTicket::wait_any(&refs, &bell, seen, LONG);
    assert!(start.elapsed() < Duration::from_secs(10), "not woken");
    let woken: Vec<usize> = (0..20).filter(|&i| tickets[i].is_woken()).collect();
    assert_eq!(woken, [13]);
    assert!(readers[13].wait_ticket(24).is_none(), "the event is there");
    writer.join().unwrap();
}

#[test]
fn the_bell_interrupts_a_thread_asleep_on_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let _writer = StreamWriter::create(&path, 1 << 16).unwrap();
    let reader = StreamReader::open(&path).unwrap();
    let ticket = reader.wait_ticket(reader.write_offset()).unwrap();
    let bell = Arc::new(WaitBell::new());
    let seen = bell.value();
    let ringer = Arc::clone(&bell);
    let ring = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        ringer.ring();
    });
    let start = Instant::now();
    WaitTicket::wait_any(&[&ticket], &bell, seen, LONG);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the bell did not wake it"
    );
    assert!(!ticket.is_woken(), "no writer published");
    ring.join().unwrap();
    // A ring before the sleep keeps it from starting.
    let start = Instant::now();
    WaitTicket::wait_any(&[&ticket], &bell, seen, LONG);
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// More tickets than one `futex_waitv` takes: the extra ones are polled, so a publish to
/// the last one still ends the sleep.
#[test]
fn tickets_past_the_limit_of_one_sleep_are_still_seen() {
    let dir = tempfile::tempdir().unwrap();
    let count = WaitTicket::WAIT_ANY_MAX + 20;
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for i in 0..count {
        let path = dir.path().join(format!("{i}.evs"));
        writers.push(StreamWriter::create(&path, 1 << 13).unwrap());
        readers.push(StreamReader::open(&path).unwrap());
    }
    let tickets: Vec<WaitTicket> = readers
        .iter()
        .map(|r| r.wait_ticket(r.write_offset()).unwrap())
        .collect();
    writers[count - 1].append(1, b"last").unwrap();
    let bell = WaitBell::new();
    let refs: Vec<&WaitTicket> = tickets.iter().collect();
    let start = Instant::now();
    while !tickets[count - 1].is_woken() {
        WaitTicket::wait_any(&refs, &bell, bell.value(), LONG);
        assert!(start.elapsed() < Duration::from_secs(10), "never seen");
    }
}

/// A ticket taken at the end of a full segment: only the roll, which puts the next event
/// in a new segment, can wake it.
#[test]
fn a_log_ticket_is_woken_by_the_roll_and_the_follower_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::default().segment_size(4096);
    // How many events fill a segment, learned on a scratch log.
    let fit = {
        let mut scratch = LogWriter::create(dir.path().join("scratch"), options.clone()).unwrap();
        let mut n = 0;
        loop {
            let first = scratch.segment();
            scratch.append(n, &[0; 200]).unwrap();
            if scratch.segment() != first {
                break;
            }
            n += 1;
        }
        n
    };
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, options).unwrap();
    let first = log.segment();
    for t in 0..fit {
        log.append(t, &[0; 200]).unwrap();
    }
    assert_eq!(log.segment(), first);
    let reader = LogReader::open(&path).unwrap();
    let mut follow = reader.iter_from(reader.end().unwrap()).unwrap();
    assert_eq!(follow.position().segment(), first);
    let ticket = follow.wait_ticket().expect("nothing to read at the end");
    log.append(fit, &[1; 200]).unwrap();
    assert_ne!(log.segment(), first, "the event did not roll");
    ticket.wait(LONG);
    assert!(ticket.is_woken(), "the roll did not wake the ticket");
    drop(ticket);
    let event = follow
        .try_next()
        .unwrap()
        .expect("the event in the new segment");
    assert_eq!(event.timestamp(), fit);
    assert_ne!(event.position().segment(), first);
}

#[test]
fn a_sealed_stream_needs_no_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.evs");
    let mut writer = StreamWriter::create(&path, 1 << 16).unwrap();
    writer.append(1, b"only").unwrap();
    writer.seal().unwrap();
    let reader = StreamReader::open(&path).unwrap();
    assert!(reader.wait_ticket(reader.write_offset()).is_none());
}

/// The newest segment of a log, sealed behind its writer's back (a segment is a stream
/// file): a follower that read all of it and found no successor waits on a ticket, which
/// the next writer's roll out of that segment wakes, and the event comes.
#[test]
fn a_log_ticket_at_a_sealed_newest_segment_is_woken_by_the_next_writers_roll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut log = LogWriter::create(&path, LogOptions::default()).unwrap();
    log.append(1, b"one").unwrap();
    drop(log);
    let reader = LogReader::open(&path).unwrap();
    let (_, newest) = reader.segment_files().unwrap().pop().unwrap();
    StreamWriter::open(&newest).unwrap().seal().unwrap();
    let mut follow = reader.iter().unwrap();
    assert_eq!(follow.try_next().unwrap().unwrap().timestamp(), 1);
    assert!(follow.try_next().unwrap().is_none(), "no successor yet");
    let ticket = follow
        .wait_ticket()
        .expect("a sealed segment without a successor is waited on");
    let mut log = LogWriter::open(&path).unwrap();
    log.append(2, b"two").unwrap();
    ticket.wait(LONG);
    assert!(
        ticket.is_woken(),
        "the roll out of the sealed segment did not wake it"
    );
    drop(ticket);
    let event = follow
        .try_next()
        .unwrap()
        .expect("the event in the next segment");
    assert_eq!(event.timestamp(), 2);
}
