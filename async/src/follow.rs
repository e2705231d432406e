//! The async followers: a log's and a stream file's, as [`Stream`]s of owned events.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use evstream::{Corruption, Error, LogEvent, LogIter, Position, Result, StreamReader};
use futures_core::Stream;

use crate::pool::{LOOK_EVERY, Parking, WaitPool};

/// One event, copied out of the file: what an async follower yields.
///
/// `P` is where the event is: a log's [`Position`], or a stream file's byte offset
/// (`u64`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event<P = Position> {
    /// The event's timestamp (Unix nanoseconds).
    pub timestamp: i64,
    /// The event's payload.
    pub payload: Bytes,
    /// Where the event is.
    pub position: P,
    /// Where the event after it is: what a consumer that has processed this event
    /// resumes from (for a log, what to commit to a cursor).
    pub next_position: P,
}

impl From<LogEvent> for Event<Position> {
    fn from(e: LogEvent) -> Self {
        Self {
            timestamp: e.timestamp(),
            payload: Bytes::copy_from_slice(e.payload()),
            position: e.position(),
            next_position: e.next_position(),
        }
    }
}

/// The longest a follower that caught up keeps looking before it parks.
const LOOK_MAX: Duration = Duration::from_micros(50);

/// When a follower that caught up parks at once, and when it first keeps looking: a
/// parked wait costs two wake-ups (the pool's thread, then the task), several
/// microseconds each, which a writer publishing every few microseconds would pay on
/// every event. So a follower whose last event came within [`LOOK_MAX`] of its catching
/// up looks again for up to twice that gap (at most `LOOK_MAX`), handing the runtime back
/// between looks (its task wakes itself, so other tasks run), and parks only then; one
/// whose writer is slower parks at once, spending no CPU on looks that would find
/// nothing.
#[derive(Debug, Default)]
struct Pace {
    /// When the follower last found nothing to read, if it has not read since.
    caught_up: Option<Instant>,
    /// How long the last event took to come after the follower caught up.
    last_gap: Option<Duration>,
}

impl Pace {
    /// An event was read.
    fn found(&mut self) {
        if let Some(at) = self.caught_up.take() {
            self.last_gap = Some(at.elapsed());
        }
    }

    /// Nothing was read: whether to look again before parking.
    fn look_again(&mut self) -> bool {
        let now = Instant::now();
        let since = *self.caught_up.get_or_insert(now);
        let window = match self.last_gap {
            Some(gap) if gap <= LOOK_MAX => gap.saturating_mul(2).min(LOOK_MAX),
            _ => return false,
        };
        now.duration_since(since) < window
    }
}

/// Follows a log from a position, across rolls, as a [`Stream`] of owned events.
///
/// It yields every event from its position on, in order, and waits for the writer (in
/// this or another process) when it has caught up: its task sleeps and a thread of its
/// [`WaitPool`] wakes it at the writer's publish or roll. The stream never ends by
/// itself; a read error (a damaged event, a segment retired under it) comes out as one
/// `Err` item, after which it ends.
///
/// # Waiting
/// A follower whose writer published its last event within 50 µs of the follower
/// catching up keeps looking (for at most twice that gap) before it parks, yielding to
/// the runtime between looks; a slower writer's follower parks at once. Parking costs a
/// thread hop that a writer publishing every few microseconds would otherwise add to
/// every event.
///
/// # Cancel safety
/// An event is taken from the log only in the `poll` that returns it, so dropping a
/// `next()` future (in a `select!`, a timeout) loses nothing: the next call returns the
/// same event. Dropping the follower takes its parked wait back from the pool at once.
///
/// # Examples
/// ```
/// use evstream::{LogOptions, LogReader, LogWriter};
/// use evstream_tokio::LogFollower;
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().expect("temporary directory");
/// # let path = dir.path().join("app");
/// let mut log = LogWriter::create(&path, LogOptions::default())?;
/// let reader = LogReader::open(&path)?;
/// let mut follow = LogFollower::new(reader.iter_from(reader.end()?)?);
/// std::thread::spawn(move || log.append(7, b"hello"));
/// let event = follow.next().await.expect("a follower never ends by itself")?;
/// assert_eq!((event.timestamp, &event.payload[..]), (7, &b"hello"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LogFollower {
    iter: LogIter,
    pool: WaitPool,
    /// The follower's place in the pool, and the segment its ticket is on.
    parked: Option<(Parking, u64)>,
    pace: Pace,
    done: bool,
}

impl LogFollower {
    /// Follows `iter` (from [`LogReader::iter_from`](evstream::LogReader::iter_from) and
    /// its kin), its waits served by the [global](WaitPool::global) pool.
    pub fn new(iter: LogIter) -> Self {
        Self {
            iter,
            pool: WaitPool::global(),
            parked: None,
            pace: Pace::default(),
            done: false,
        }
    }

    /// Serves this follower's waits from `pool` instead.
    #[must_use]
    pub fn with_pool(mut self, pool: WaitPool) -> Self {
        self.pool = pool;
        self.parked = None;
        self
    }

    /// The position of the next event it yields.
    pub fn position(&self) -> Position {
        self.iter.position()
    }

    /// The next event if one is published now, without waiting.
    ///
    /// # Errors
    /// As [`LogIter::try_next`].
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        if self.done {
            return Ok(None);
        }
        match self.iter.try_next() {
            Ok(event) => Ok(event.map(Event::from)),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl Stream for LogFollower {
    type Item = Result<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some((parking, _)) = &mut this.parked {
            parking.looks(cx.waker());
        }
        loop {
            if this.done {
                this.parked = None;
                return Poll::Ready(None);
            }
            match this.try_next() {
                Ok(Some(event)) => {
                    this.pace.found();
                    return Poll::Ready(Some(Ok(event)));
                }
                Err(e) => {
                    this.parked = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(None) => {}
            }
            if this.pace.look_again() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // A ticket on a segment the follower has left wakes it no more.
            let segment = this.iter.position().segment();
            if this.parked.as_ref().is_some_and(|(_, s)| *s != segment) {
                this.parked = None;
            }
            if let Some((parking, _)) = &mut this.parked
                && parking.wait(cx.waker())
            {
                return Poll::Pending;
            }
            let Some(ticket) = this.iter.wait_ticket() else {
                // The last look found something: read it.
                continue;
            };
            match &mut this.parked {
                Some((parking, _)) => parking.rearm(ticket, cx.waker()),
                None => {
                    this.parked = Some((this.pool.park(ticket, cx.waker().clone()), segment));
                }
            }
            return Poll::Pending;
        }
    }
}

/// Follows a stream file from a byte offset as a [`Stream`] of owned events, as
/// [`LogFollower`] does a log.
///
/// It ends (`None`) once the stream is finished: sealed, or too full to take another
/// event, with every event seen. A read error comes out as one `Err` item, after which
/// it ends; so does a file deleted with no writer left to append to it (an
/// [`Error::Io`] with [`NotFound`](std::io::ErrorKind::NotFound), within about 2 s of
/// the last writer's going: a waiting follower looks that often, as
/// [`StreamReader::check_abandoned`] tells).
///
/// # Cancel safety
/// As [`LogFollower`]'s: dropping a `next()` future loses no event.
///
/// # Examples
/// ```
/// use evstream::StreamWriter;
/// use evstream_tokio::StreamFollower;
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().expect("temporary directory");
/// # let path = dir.path().join("events.evs");
/// let mut writer = StreamWriter::create(&path, 1 << 20)?;
/// let mut follow = StreamFollower::open(&path, 24)?; // from the first event
/// std::thread::spawn(move || -> evstream::Result<()> {
///     writer.append(1, b"one")?;
///     writer.seal()
/// });
/// let event = follow.next().await.expect("an event")?;
/// assert_eq!((event.position, &event.payload[..]), (24, &b"one"[..]));
/// assert!(follow.next().await.is_none(), "sealed: the follower ends");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StreamFollower {
    reader: StreamReader,
    offset: u64,
    /// The timestamp of the event before `offset` (of those this follower read), which
    /// the next may not be below; each read is a new [`Follow`](evstream::Follow), which
    /// checks the order only among the events it reads itself.
    previous: i64,
    pool: WaitPool,
    parked: Option<Parking>,
    pace: Pace,
    done: bool,
    /// When it last looked whether its file was deleted with no writer left.
    looked: Instant,
}

impl StreamFollower {
    /// Opens the stream file at `path` and follows it from byte `offset` (24 is the first
    /// event, [`StreamReader::write_offset`] the end).
    ///
    /// # Errors
    /// As [`StreamReader::open`] and [`StreamReader::follow`].
    pub fn open(path: impl AsRef<Path>, offset: u64) -> Result<Self> {
        Self::new(StreamReader::open(path)?, offset)
    }

    /// Follows `reader`'s stream from byte `offset`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`](evstream::Error::OffsetOutOfRange) if `offset` is
    /// outside the published events.
    pub fn new(mut reader: StreamReader, offset: u64) -> Result<Self> {
        reader.refresh()?;
        reader.follow(offset)?;
        Ok(Self {
            reader,
            offset,
            previous: i64::MIN,
            pool: WaitPool::global(),
            parked: None,
            pace: Pace::default(),
            done: false,
            looked: Instant::now(),
        })
    }

    /// Serves this follower's waits from `pool` instead.
    #[must_use]
    pub fn with_pool(mut self, pool: WaitPool) -> Self {
        self.pool = pool;
        self.parked = None;
        self
    }

    /// The byte offset of the next event it yields.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next event if one is published now, without waiting.
    ///
    /// # Errors
    /// As [`Follow::try_next`](evstream::Follow::try_next).
    pub fn try_next(&mut self) -> Result<Option<Event<u64>>> {
        if self.done {
            return Ok(None);
        }
        let mut read = || -> Result<Option<Event<u64>>> {
            if self.offset > self.reader.write_offset() {
                // Past the reader's snapshot: move it up to what is published now.
                self.reader.refresh()?;
            }
            let mut follow = self.reader.follow(self.offset)?;
            Ok(follow.try_next()?.map(|e| Event {
                timestamp: e.timestamp(),
                payload: Bytes::copy_from_slice(e.payload()),
                position: e.offset(),
                next_position: e.next_offset(),
            }))
        };
        match read() {
            Ok(Some(event)) if event.timestamp < self.previous => {
                self.done = true;
                Err(Error::Corrupt {
                    path: self.reader.path().to_owned(),
                    offset: event.position,
                    watermark: self.reader.durable_offset(),
                    reason: Corruption::TimestampOutOfOrder {
                        previous: self.previous,
                        got: event.timestamp,
                    },
                })
            }
            Ok(Some(event)) => {
                self.offset = event.next_position;
                self.previous = event.timestamp;
                Ok(Some(event))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Whether the stream is finished at this follower's position (sealed or full, every
    /// event seen).
    fn finished(&mut self) -> bool {
        if self.offset > self.reader.write_offset() && self.reader.refresh().is_err() {
            // The next look reports the error.
            return false;
        }
        self.reader
            .follow(self.offset)
            .is_ok_and(|f| f.is_finished())
    }
}

impl Stream for StreamFollower {
    type Item = Result<Event<u64>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(parking) = &mut this.parked {
            parking.looks(cx.waker());
        }
        loop {
            if this.done {
                this.parked = None;
                return Poll::Ready(None);
            }
            match this.try_next() {
                Ok(Some(event)) => {
                    this.pace.found();
                    return Poll::Ready(Some(Ok(event)));
                }
                Err(e) => {
                    this.parked = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(None) => {}
            }
            if this.finished() {
                this.done = true;
                continue;
            }
            // The pool wakes a parked follower every `LOOK_EVERY`: half that since the
            // last look makes each of those wakes look, not every other one.
            if this.looked.elapsed() >= LOOK_EVERY / 2 {
                this.looked = Instant::now();
                if let Err(e) = this.reader.check_abandoned() {
                    this.done = true;
                    this.parked = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.pace.look_again() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if this.parked.as_mut().is_some_and(|p| p.wait(cx.waker())) {
                return Poll::Pending;
            }
            let Some(ticket) = this.reader.wait_ticket(this.offset) else {
                continue;
            };
            match &mut this.parked {
                Some(parking) => parking.rearm(ticket, cx.waker()),
                None => this.parked = Some(this.pool.park(ticket, cx.waker().clone())),
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower spends CPU on looks only while its writer keeps a pace the looks can
    /// catch: never before its first event, never after a gap longer than the window.
    #[test]
    fn a_follower_looks_again_only_at_a_fast_writers_pace() {
        let mut pace = Pace::default();
        assert!(!pace.look_again(), "no event seen yet: park at once");
        // The next event came 1 ms after catching up: a slow writer.
        pace.caught_up = Instant::now().checked_sub(Duration::from_millis(1));
        pace.found();
        assert!(!pace.look_again(), "a slow writer's follower parks at once");
        // The next event came within a few microseconds: look again, for a while only.
        pace.caught_up = None;
        pace.found();
        pace.last_gap = Some(Duration::from_micros(5));
        assert!(pace.look_again());
        pace.caught_up = Instant::now().checked_sub(LOOK_MAX);
        assert!(!pace.look_again(), "the window has passed: park");
    }
}
