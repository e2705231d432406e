//! Where reading commands get their events: the one place that opens a stream for
//! reading, positions in it and walks it (following new events if asked).
//!
//! `cat` and `tail` see only [`Source`], [`Start`] and [`Event`], never a `StreamReader`,
//! so a source that is a directory of rolling segments can be added here as another
//! variant without changing the commands.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evstream::format::STREAM_HEADER_LEN;
use evstream::{LogIter, LogReader, Position, StreamReader};

use crate::failure::Failure;

/// One event as the commands print it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Where the event starts in its file.
    pub offset: u64,
    /// The event's position, when it comes from a log.
    pub position: Option<Position>,
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// The stored CRC-32.
    pub checksum: u32,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl<'a> From<evstream::EventView<'a>> for Event<'a> {
    fn from(view: evstream::EventView<'a>) -> Self {
        Self {
            offset: view.offset(),
            position: None,
            timestamp: view.timestamp(),
            checksum: view.checksum(),
            payload: view.payload(),
        }
    }
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first event.
    Beginning,
    /// The event at a byte offset the user gave (it may not be an event's start).
    Offset(u64),
    /// The first event at or after a time.
    Time(i64),
    /// The `n`-th event from the end.
    Last(u64),
}

/// What the visitor did with an event, and whether to go on.
///
/// A cursor is committed only past events the visitor printed ([`Flow::Shown`],
/// [`Flow::Last`]): an event it stopped before is the next run's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The event was printed; visit the next.
    Shown,
    /// The event was left out by a filter; visit the next.
    Skipped,
    /// The event was printed and is the last one wanted: stop after it.
    Last,
    /// Stop before this event: it was not printed.
    Before,
}

impl Flow {
    /// Whether the visit ends with this event.
    fn stops(self) -> bool {
        matches!(self, Self::Last | Self::Before)
    }

    /// Whether the event reached the printer.
    fn shown(self) -> bool {
        matches!(self, Self::Shown | Self::Last)
    }
}

/// Why a visit ended early.
#[derive(Debug)]
pub enum Stop {
    /// The visitor (or the idle callback) failed, such as output to a closed pipe.
    Visitor(Failure),
    /// The source's data failed: the failure names the file and the damage.
    Read(Failure),
}

/// A source of events: a stream file or a log directory.
#[derive(Debug)]
pub enum Source {
    /// One stream file.
    Stream(StreamReader),
    /// A log: a directory of rolling segments, optionally read through a named cursor
    /// that is committed as events are printed.
    Log {
        /// The log.
        reader: LogReader,
        /// The cursor to start from and commit to.
        cursor: Option<String>,
    },
}

impl Source {
    /// Opens `path` for reading: a log if it is a directory, else a stream file.
    ///
    /// # Errors
    /// A failure naming the file: missing, not a stream or log, unreadable.
    pub fn open(path: &Path) -> Result<Self, Failure> {
        if path.is_dir() {
            return LogReader::open(path)
                .map(|reader| Self::Log {
                    reader,
                    cursor: None,
                })
                .map_err(|e| Failure::stream(path, &e));
        }
        StreamReader::open(path)
            .map(Self::Stream)
            .map_err(|e| Failure::stream(path, &e))
    }

    /// Reads a log through cursor `name`: from its position (the start if it was never
    /// committed), committing as events are printed.
    ///
    /// # Errors
    /// A usage failure if the source is a stream file, which has no cursors.
    pub fn with_cursor(self, name: String) -> Result<Self, Failure> {
        match self {
            Self::Log { reader, .. } => Ok(Self::Log {
                reader,
                cursor: Some(name),
            }),
            Self::Stream(reader) => Err(Failure::usage(format!(
                "--cursor: {} is a stream file; cursors belong to logs (directories)",
                reader.path().display()
            ))),
        }
    }

    /// Visits the events from `start` in order, calling `visit` on each, until it says
    /// stop ([`Flow::Last`] or [`Flow::Before`]) or the events end; with `follow`, then
    /// waits for new events (calling `idle` before each wait, such as to flush output)
    /// until `visit` stops.
    ///
    /// # Errors
    /// [`Stop::Visitor`] with what `visit` or `idle` returned, [`Stop::Read`] for damage.
    pub fn visit(
        &self,
        start: Start,
        follow: bool,
        idle: &mut dyn FnMut() -> Result<(), Failure>,
        visit: &mut dyn FnMut(&Event<'_>) -> Result<Flow, Failure>,
    ) -> Result<(), Stop> {
        if follow {
            stop_on_ctrl_c();
        }
        match self {
            Self::Stream(reader) => visit_stream(reader, start, follow, idle, visit),
            Self::Log { reader, cursor } => {
                visit_log(reader, cursor.as_deref(), start, follow, idle, visit)
            }
        }
    }
}

/// Set by the first Ctrl-C once a follow installed its handler ([`stop_on_ctrl_c`]).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C end a follow in an orderly way instead of killing the process.
///
/// A follower that waits counts itself among the stream's waiters, a word in the file
/// (FORMAT.md, "Waking followers"), and takes itself off when it stops waiting; a process
/// killed while it waits leaves the count one too high for the life of the file, and
/// every later append pays a wake-up call for it. So the first Ctrl-C only sets a flag,
/// which the follow loops look at between events and after each wait (of at most a
/// second); they then return [`Failure::Interrupted`] (exit 130). A second Ctrl-C ends
/// the process at once, as a kill would. A process started with Ctrl-C ignored (such as
/// a job a script runs in the background) keeps ignoring it.
fn stop_on_ctrl_c() {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        if sigint_ignored() {
            return;
        }
        // Best effort: without a handler Ctrl-C ends the process as before.
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    });
}

/// Whether this process was started with SIGINT ignored, from the kernel's account of
/// it (`SigIgn` in `/proc/self/status`, a mask with bit `N - 1` for signal `N`).
pub(crate) fn sigint_ignored() -> bool {
    const SIGINT: u32 = 2;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status
                .lines()
                .find_map(|line| line.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (SIGINT - 1)) != 0)
}

/// Whether Ctrl-C asked a follow to stop.
fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Events between two cursor commits while printing (a commit syncs to disk).
const COMMIT_EVERY: u64 = 4096;

fn visit_log(
    reader: &LogReader,
    cursor: Option<&str>,
    start: Start,
    follow: bool,
    idle: &mut dyn FnMut() -> Result<(), Failure>,
    visit: &mut dyn FnMut(&Event<'_>) -> Result<Flow, Failure>,
) -> Result<(), Stop> {
    let dir = reader.dir();
    let read = |e: &evstream::Error| Stop::Read(Failure::stream(dir, e));
    let events = match (cursor, start) {
        (Some(name), _) => reader.iter_cursor(name),
        (None, Start::Beginning) => reader.iter(),
        (None, Start::Offset(_)) => {
            return Err(Stop::Visitor(Failure::usage(format!(
                "{} is a log: start from a time, or from a cursor, not a byte offset",
                dir.display()
            ))));
        }
        // The seek and the start from one listing of the segments (the library's).
        (None, Start::Time(time)) => reader.iter_since(time),
        (None, Start::Last(count)) => last_events(reader, count),
    };
    let mut events = events.map_err(|e| read(&e))?;
    // The position past the last event printed, and how many were printed since the
    // last commit: the cursor never moves past an event that did not reach the output.
    let mut shown: Option<Position> = None;
    let mut uncommitted = 0u64;
    let commit = |shown: Option<Position>,
                  uncommitted: &mut u64,
                  idle: &mut dyn FnMut() -> Result<(), Failure>| {
        let (Some(name), Some(position)) = (cursor, shown) else {
            return Ok(());
        };
        if *uncommitted == 0 {
            return Ok(());
        }
        // What was printed reaches the output before the cursor moves past it.
        idle().map_err(Stop::Visitor)?;
        reader.commit_cursor(name, position).map_err(|e| read(&e))?;
        *uncommitted = 0;
        Ok(())
    };
    let result = loop {
        if follow && interrupted() {
            break Err(Stop::Visitor(Failure::Interrupted));
        }
        let next = match events.try_next() {
            Ok(Some(event)) => Ok(event),
            Ok(None) if !follow => break Ok(()),
            Ok(None) => {
                if let Err(stop) = commit(shown, &mut uncommitted, idle) {
                    break Err(stop);
                }
                if let Err(failure) = idle() {
                    break Err(Stop::Visitor(failure));
                }
                match events.next_timeout(Duration::from_secs(1)) {
                    Ok(Some(event)) => Ok(event),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let event = match next {
            Ok(event) => event,
            Err(e) => break Err(read(&e)),
        };
        let item = Event {
            offset: event.position().offset(),
            position: Some(event.position()),
            timestamp: event.timestamp(),
            checksum: event.checksum(),
            payload: event.payload(),
        };
        let flow = visit(&item).map_err(Stop::Visitor)?;
        if flow.shown() {
            shown = Some(event.next_position());
            uncommitted += 1;
        }
        if flow.stops() {
            break Ok(());
        }
        if uncommitted >= COMMIT_EVERY
            && let Err(stop) = commit(shown, &mut uncommitted, idle)
        {
            break Err(stop);
        }
    };
    match result {
        // Damage met on the way: what was printed before it stays consumed.
        Ok(()) | Err(Stop::Read(_)) => {
            let committed = commit(shown, &mut uncommitted, idle);
            result.and(committed)
        }
        // The output failed (a closed pipe): what reached it is unknown. Or Ctrl-C, which
        // ends a consumer reading a pipe too: as after a kill, the events since the last
        // commit (made before each wait) are the next run's first.
        Err(stop @ Stop::Visitor(_)) => Err(stop),
    }
}

/// How many times `--last` looks for the last events again when retention took the
/// segment of the first of them before the iterator opened it.
const LAST_TRIES: u32 = 64;

/// Iterates a log from the first of its last `count` events; if retention takes that
/// event's segment between the two steps, the last events are looked for again (the
/// log then holds others), at most [`LAST_TRIES`] times.
fn last_events(reader: &LogReader, count: u64) -> evstream::Result<LogIter> {
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let mut tries = 0;
    loop {
        let last = reader.tail(count)?;
        let position = match last.first() {
            Some(event) => event.position(),
            None => reader.end()?,
        };
        match reader.iter_from(position) {
            Err(evstream::Error::Retired { .. }) if tries < LAST_TRIES => tries += 1,
            done => return done,
        }
    }
}

fn visit_stream(
    reader: &StreamReader,
    start: Start,
    follow: bool,
    idle: &mut dyn FnMut() -> Result<(), Failure>,
    visit: &mut dyn FnMut(&Event<'_>) -> Result<Flow, Failure>,
) -> Result<(), Stop> {
    let path = reader.path();
    let read = |e: &evstream::Error| Stop::Read(Failure::stream(path, e));
    let offset = match start {
        Start::Beginning => STREAM_HEADER_LEN,
        Start::Offset(offset) => offset,
        Start::Time(time) => reader
            .seek_time(time)
            .map_err(|e| read(&e))?
            .unwrap_or(reader.write_offset()),
        Start::Last(count) => start_of_last(reader, count),
    };
    // Damage exactly at an offset the user gave is most likely a wrong offset.
    let user_offset = match start {
        Start::Offset(offset) if offset != STREAM_HEADER_LEN => Some(offset),
        _ => None,
    };
    let read_at = |e: &evstream::Error| match e {
        evstream::Error::Corrupt { offset, reason, .. } if Some(*offset) == user_offset => {
            Stop::Read(Failure::data(format!(
                "{}: no valid event starts at byte offset {offset} ({reason}); use an offset \
                 printed by `evstream cat --format json`",
                path.display()
            )))
        }
        other => read(other),
    };
    let mut next = offset;
    for item in reader.iter_from(offset).map_err(|e| read(&e))? {
        if follow && interrupted() {
            return Err(Stop::Visitor(Failure::Interrupted));
        }
        let event = item.map_err(|e| read_at(&e))?;
        next = event.next_offset();
        if visit(&event.into()).map_err(Stop::Visitor)?.stops() {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    let mut follow = reader.follow(next).map_err(|e| read(&e))?;
    loop {
        if interrupted() {
            return Err(Stop::Visitor(Failure::Interrupted));
        }
        let event = match follow.try_next().map_err(|e| read_at(&e))? {
            Some(event) => event,
            None => {
                idle().map_err(Stop::Visitor)?;
                match follow
                    .next_timeout(Duration::from_secs(1))
                    .map_err(|e| read_at(&e))?
                {
                    Some(event) => event,
                    // A sealed (or full) stream takes no more events: the follow ends.
                    None if follow.is_finished() => return Ok(()),
                    None => continue,
                }
            }
        };
        if visit(&event.into()).map_err(Stop::Visitor)?.stops() {
            return Ok(());
        }
    }
}

/// The offset of the `count`-th event from the end of the reader's snapshot.
///
/// The format has no backward links, so this walks the event headers twice (first to
/// count, then to the start) without checking checksums or reading payloads; the events
/// printed from there are checked as usual. Damage that misaligns the walk therefore
/// shows up as a failed checksum when printing; damage inside an earlier payload is
/// `verify`'s business.
fn start_of_last(reader: &StreamReader, count: u64) -> u64 {
    let headers = || reader.iter_unverified().map_while(Result::ok);
    let total = headers().count() as u64;
    let skip = total.saturating_sub(count);
    if skip == 0 {
        return STREAM_HEADER_LEN;
    }
    let Ok(before) = usize::try_from(skip - 1) else {
        return reader.write_offset();
    };
    headers()
        .nth(before)
        .map_or(reader.write_offset(), |event| event.next_offset())
}
