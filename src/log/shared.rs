//! A log writer that many threads and many processes share: one [`LogWriter`] per
//! process behind a lock, with the group commit of [`crate::commit`] and the turn of
//! [`crate::turn`] that processes take to hold the log's writer.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::format;
use crate::log::config::{CONFIG_FILE, LogOptions};
use crate::log::position::Position;
use crate::log::retention::Retired;
use crate::log::writer::{CleanLog, Closing, LogRecovery, LogWriter};
use crate::turn::{Shared, Turned};

/// Appends events to a log from many threads and many processes: a handle that is
/// [`Clone`], [`Send`] and [`Sync`], whose appends and flush take `&self`.
///
/// **Threads.** Every clone appends through the same [`LogWriter`], each append under a
/// lock held only for the copy into the mapping and its publication, so that:
///
/// - **each append is all or nothing**, exactly as [`LogWriter::append`]: a refused one
///   writes nothing;
/// - **the order of the log is the order in which appends took the lock**: the
///   positions they return increase in that order, and an append that returned before
///   another began has the lower position;
/// - **[`append_now`](Self::append_now) reads the clock inside that order**, so that the
///   timestamps of the log never decrease, however the threads race (each is the wall
///   clock, or the last event's timestamp if the clock is behind it);
/// - **[`flush`](Self::flush) is a group commit**: it covers every append that returned,
///   on any thread, before the flush began, and the threads that call `flush` while one
///   is under way share the next one: one `msync` of the newest segment for all of them.
///
/// **Processes.** Any number of processes may each [`open`](Self::open) the same log,
/// with the same promises between all their appends. They take **turns**: the process
/// whose turn it is holds the log's one [`LogWriter`] and appends at full speed; when
/// another process waits for the turn, the holder hands it over as soon as it is idle
/// (within a millisecond), and after at most 40 ms of appending (the first call after
/// that gives it up, then waits for its next turn). Handing over closes the holder's
/// writer without a flush (the next process reads the events from the page cache) and
/// leaves a record of what it left in the log's `TURN` file; taking the turn opens the
/// log's writer from that record, without checking again what a clean writer of this
/// boot wrote (or, without a valid record, as [`LogWriter::open`] does), so that the
/// process sees every event the others appended and continues after the last. The
/// segments a turn rolled past are sealed in the background after it (under lazy
/// write-back, the default, by the next holder as its own come due: [`WriteBack::Lazy`](crate::WriteBack::Lazy)
/// says when). A handover
/// costs closing and opening the writer, a few milliseconds: several processes
/// appending at full speed get less than one process's rate together (`evstream bench
/// --many`); threads of one process sharing a handle pay nothing of it. The turn
/// is an exclusive `flock` on the log's `TURN` file (waiters hold `WANT` shared), so a
/// process that dies, even killed in the middle of an append or a roll, loses the turn
/// at once, and the next process's open repairs what it left, as a writer's open after
/// a crash always does: no event whose append returned is lost, and the others go on
/// within the time of one turn and one open (see `docs/FORMAT.md`, "Many writer
/// processes"). A writer that keeps the log to itself (a [`LogWriter`], or a
/// `SharedLogWriter` made [`from`](From::from) one) excludes them, and they it, with
/// [`Error::Locked`].
///
/// **Threads appending at once** take the lock in slices rather than one append each
/// (moving the writer between two cores' caches at every append would cost several
/// appends): a thread that finds the lock taken waits for it while the same hold lasts,
/// but if others keep taking it meanwhile, it sleeps, looking again every 0.2 ms; the
/// holder goes on appending alone, and once a sleeper has waited 2 ms, lets it take
/// the lock over. So under contention threads together keep near one thread's rate,
/// and one append waits at most about 2 ms for each thread ahead of it (plus a nap and
/// a scheduler's wake-up); an append that finds the lock free waits for nothing.
///
/// With one thread of one process, the lock is biased to that thread after its first
/// 256 appends: an append then takes it with a few plain loads and stores, no atomic
/// read-modify-write. What is left of the lock and the turn's bookkeeping costs about
/// 2–3 ns an append, 10–15% of a 64-byte append into a log in steady state on the
/// machine of `docs/BENCHMARKS.md` (a `Mutex<LogWriter>` costs 31–73% there; `evstream
/// bench --many`, "uncontended"); a program with one writing thread that wants nothing
/// in the way keeps [`LogWriter`].
/// Another thread's first call after the biased thread's (an append, a flush, a look at
/// `event_count`) costs that thread a `membarrier` system call (a microsecond or a
/// few), and the biased thread its next 256 appends without the bias.
///
/// # Durability
/// As for [`LogWriter`]: an append that returned [`Ok`] survives a crash of the process;
/// one covered by a successful [`flush`](Self::flush) survives power loss, whichever
/// process appended it: a flush covers every event of the log appended before it began,
/// those of the other processes' turns included (it waits for the seals of the segments
/// they rolled past). Handing the turn over makes nothing durable, and neither does
/// dropping the last clone, which closes the writer as dropping a [`LogWriter`] does
/// (and gives the turn up): call [`flush`](Self::flush) first for that.
///
/// # Examples
/// ```
/// use evstream::{LogOptions, LogReader, SharedLogWriter};
///
/// # fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app");
/// let log = SharedLogWriter::open_or_create(&path, LogOptions::default().segment_size(1 << 20))?;
/// std::thread::scope(|s| {
///     let workers: Vec<_> = (0..4)
///         .map(|worker| {
///             let log = log.clone();
///             s.spawn(move || -> evstream::Result<()> {
///                 for i in 0..100 {
///                     log.append_now(format!("worker {worker} step {i}").as_bytes())?;
///                 }
///                 log.flush() // all this worker's events now survive power loss
///             })
///         })
///         .collect();
///     workers.into_iter().try_for_each(|w| w.join().expect("a worker panicked"))
/// })?;
/// let reader = LogReader::open(&path)?;
/// assert_eq!(reader.iter()?.count(), 400);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SharedLogWriter {
    shared: Shared<LogWriter>,
}

/// The file whose exclusive `flock` is the turn of the processes appending to a log.
pub(crate) const TURN_FILE: &str = "TURN";

/// The file that processes waiting for the turn hold a shared `flock` on.
pub(crate) const WANT_FILE: &str = "WANT";

/// The writer's counters as this process last saw them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    event_count: u64,
    last_timestamp: Option<i64>,
    segment: u64,
    end: Position,
}

/// What this process's turns at the log left behind.
#[derive(Debug, Default)]
pub(crate) struct Left {
    /// Segments retention deleted during this process's turns, not yet taken.
    retired: Vec<Retired>,
    /// The sealing of segments that this process's writers rolled past, still under way
    /// after they closed ([`LogWriter::close_clean`]).
    closing: Vec<Closing>,
}

/// The log's settings, and what the first open repaired.
#[derive(Debug)]
pub(crate) struct Facts {
    options: LogOptions,
    recovery: LogRecovery,
}

impl Turned for LogWriter {
    type Seen = Seen;
    type Left = Left;
    type Facts = Facts;
    type Options = ();
    const MAGIC: [u8; 8] = *b"evsturn1";
    const KEEPER: &'static str = "evstream-log-turn";

    fn turn_files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(TURN_FILE), dir.join(WANT_FILE))
    }

    /// A log this process may write: its lock file and newest segment open for writing
    /// (opened, not changed), so that an open refused for want of permission leaves no
    /// turn file behind. Only a refusal counts here: a segment renamed or retired since
    /// the listing (the writer of another process rolls, recycles) is the open's to meet.
    fn check(dir: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        crate::log::reader::read_options(dir)?;
        let refused = |e: &std::io::Error| {
            e.kind() == std::io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(libc::EROFS)
        };
        let writable = |path: &Path| match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Err(e) if refused(&e) => Err(Error::io("open", path, e)),
            _ => Ok(()),
        };
        writable(&dir.join(crate::log::writer::LOCK_FILE))?;
        if let Some(newest) = crate::log::segment::list(dir)?.last() {
            writable(&newest.path)?;
        }
        Ok(())
    }

    fn not_regular(_: &Path, path: PathBuf) -> Error {
        Error::NotALog {
            path,
            reason: "a file of its writers' turn is not a regular file",
        }
    }

    fn not_a_record(_: &Path, path: PathBuf) -> Error {
        Error::NotALog {
            path,
            reason: "a file of its writers' turn holds what no evstream writer wrote",
        }
    }

    fn at(&self) -> &Path {
        self.dir()
    }

    fn seen(&self) -> Seen {
        Seen {
            event_count: self.event_count(),
            last_timestamp: self.last_timestamp(),
            segment: self.segment(),
            end: self.end(),
        }
    }

    fn facts(&self) -> Facts {
        Facts {
            options: self.options().clone(),
            recovery: self.recovery().clone(),
        }
    }

    fn open(dir: &Path, (): &()) -> Result<Self> {
        LogWriter::open(dir)
    }

    fn open_clean(dir: &Path, (): &(), record: &CleanLog) -> Result<Option<Self>> {
        LogWriter::open_clean(dir, record)
    }

    /// The segments this turn rolled past are sealed in the background meanwhile, each
    /// under its own lock, which the next writer waits for before its flush counts them
    /// (under lazy write-back with `hand_on`, left unsealed for the next writer).
    fn close_clean(self, left: &mut Left, hand_on: bool, record: impl FnOnce(&CleanLog)) {
        let (retired, closing) = LogWriter::close_clean(self, hand_on, record);
        left.retired.extend(retired);
        left.closing.retain(|closing| !closing.is_finished());
        left.closing.push(closing);
    }

    fn close(mut self, left: &mut Left) {
        left.retired.extend(self.take_retired());
    }

    fn finish(left: &mut Left) {
        // Waits for the seals still under way.
        left.closing.clear();
    }
}

impl From<LogWriter> for SharedLogWriter {
    /// Shares `writer` between this process's threads. It keeps the log to itself:
    /// other processes' writers get [`Error::Locked`] until the last handle is dropped.
    fn from(writer: LogWriter) -> Self {
        Self {
            shared: Shared::from(writer),
        }
    }
}

impl SharedLogWriter {
    /// Creates a log in `dir` (as [`LogWriter::create`] does) and opens it to append
    /// from this process, as [`open`](Self::open) does.
    ///
    /// # Errors
    /// As [`LogWriter::create`], and as [`open`](Self::open).
    pub fn create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let dir = dir.as_ref();
        drop(LogWriter::create(dir, options)?);
        Self::open(dir)
    }

    /// Opens the log in `dir` to append to it from this process, beside any other
    /// processes that opened it so.
    ///
    /// The processes take turns: the one whose turn it is holds the log's
    /// [`LogWriter`] (opened as [`LogWriter::open`] does, validating and repairing
    /// what a writer that died left, unless the last holder closed it cleanly and said
    /// so) and appends; when another process waits, it
    /// hands the turn over as soon as it is idle, and after at most 40 ms
    /// of appending. A process that dies, even killed in the middle of an append,
    /// loses the turn at once (the kernel drops its `flock`s), and the next process
    /// repairs what it left when it opens the log: nothing another writer appended is
    /// lost. The call returns holding the turn.
    ///
    /// A relative `dir` is taken from the working directory at this call: every turn
    /// opens the log by that absolute path, whatever the working directory is by then,
    /// while [`dir`](Self::dir) and the errors name it as `dir` does.
    ///
    /// # Errors
    /// - As [`LogWriter::open`]: [`Error::NotALog`] if `dir` holds no log, and so on.
    /// - [`Error::Locked`] if a writer that keeps the log to itself (a [`LogWriter`], or
    ///   a `SharedLogWriter` made from one) has it open, after 0.5 s in which the lock
    ///   could have been one that a closing writer was releasing.
    /// - [`Error::Io`] if the turn files (`TURN`, `WANT`) cannot be opened or locked;
    ///   [`Error::NotALog`], with nothing written to it, if `TURN` holds what no
    ///   evstream writer wrote.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Shared::open(dir.as_ref(), ()).map(|shared| Self { shared })
    }

    /// Opens the log in `dir` as [`open`](Self::open) does, or creates it with
    /// `options` if there is none (as [`LogWriter::open_or_create`] does).
    ///
    /// # Errors
    /// As [`open`](Self::open) and [`LogWriter::create`].
    pub fn open_or_create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let dir = dir.as_ref();
        match std::fs::symlink_metadata(dir.join(CONFIG_FILE)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match LogWriter::create(dir, options) {
                    Ok(writer) => drop(writer),
                    // Made by another process since the look: opened below.
                    Err(Error::AlreadyExists { .. } | Error::Locked { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
        Self::open(dir)
    }

    /// Runs `f` on the log's writer, taking the turn first if another process has it.
    #[inline(always)]
    fn with<T>(&self, f: impl FnOnce(&mut LogWriter) -> Result<T>) -> Result<T> {
        self.shared.with(f)
    }

    /// What `f` reads from the writer if this process has the turn, or what it saw
    /// when it last gave it up.
    fn seen<T>(&self, f: impl FnOnce(Seen) -> T) -> T {
        self.shared.seen(f)
    }

    /// Appends one event; returns its position. As [`LogWriter::append`].
    ///
    /// # Errors
    /// As [`LogWriter::append`]; nothing is written on error. [`Error::OutOfOrder`] if
    /// `timestamp` is lower than the last event's, which may be another thread's: a
    /// caller that does not order its timestamps with the other threads' uses
    /// [`append_now`](Self::append_now). When another process has the turn, as
    /// [`open`](Self::open) for taking it ([`Error::Locked`] if a writer that keeps the
    /// log to itself has it by then).
    #[inline]
    pub fn append(&self, timestamp: i64, payload: &[u8]) -> Result<Position> {
        self.with(|writer| writer.append(timestamp, payload))
    }

    /// Appends an event of `len` bytes whose payload `fill` writes in place, as
    /// [`LogWriter::append_with`] does; returns its position. `fill` runs while this
    /// handle's lock is held: the other threads' appends wait for it, and a call on this
    /// writer (or a clone of it) from `fill` waits for itself for good, as a `Mutex`
    /// taken twice by one thread does.
    ///
    /// # Errors
    /// As [`append`](Self::append), checked before `fill` runs.
    pub fn append_with<F>(&self, timestamp: i64, len: usize, fill: F) -> Result<Position>
    where
        F: FnOnce(&mut [u8]),
    {
        self.with(|writer| writer.append_with(timestamp, len, fill))
    }

    /// Appends an event stamped `time`, as [`append`](Self::append) does with its
    /// timestamp in Unix nanoseconds ([`timestamp_of`](crate::timestamp_of)).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] for a time no timestamp holds (before 1677 or after
    /// 2262); otherwise as [`append`](Self::append). Nothing is written on error.
    pub fn append_at(&self, time: SystemTime, payload: &[u8]) -> Result<Position> {
        self.append(crate::timestamp_of(time)?, payload)
    }

    /// Appends `payload` stamped with the wall clock, read once this append holds its
    /// place in the log's order, and never earlier than the event before it (whichever
    /// thread appended that); returns its position and the timestamp used.
    ///
    /// # Errors
    /// As [`append`](Self::append) (never [`Error::OutOfOrder`]).
    #[inline]
    pub fn append_now(&self, payload: &[u8]) -> Result<(Position, i64)> {
        self.with(|writer| writer.append_now(payload))
    }

    /// Appends `events` one after another, with no other thread's event between them;
    /// returns the position of the first (the log's end, for an empty batch).
    ///
    /// Every event is checked before any is written: timestamps must not decrease within
    /// the batch nor from the last event of the log, and each event must fit in a
    /// segment. Readers see the events as each is published, not all at once. A batch
    /// that reaches the end of a segment continues in the next one; if that roll fails
    /// ([`Error::Io`]: the next segment could not be created, such as on a full disk),
    /// the events before it stay in the log and the rest are not written;
    /// [`event_count`](Self::event_count) then tells how many went in.
    ///
    /// # Errors
    /// - [`Error::OutOfOrder`] if a timestamp is lower than the one before it (in the
    ///   batch or the last event of the log); nothing is written.
    /// - [`Error::EventTooLarge`], [`Error::PayloadTooLarge`] if an event cannot fit in a
    ///   segment; nothing is written.
    /// - As [`append`](Self::append) otherwise.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = evstream::SharedLogWriter::create(dir.path().join("app"), Default::default())?;
    /// let first = log.append_batch(&[(1, b"a".as_slice()), (2, b"bc"), (2, b"")])?;
    /// assert_eq!(log.event_count(), 3);
    /// // Out of order within the batch: refused, nothing written.
    /// assert!(log.append_batch(&[(3, b"x".as_slice()), (1, b"y")]).is_err());
    /// assert_eq!(log.event_count(), 3);
    /// # let _ = first;
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_batch(&self, events: &[(i64, &[u8])]) -> Result<Position> {
        let options = &self.shared.facts().options;
        self.with(|writer| append_batch(writer, options, events))
    }

    /// Makes every event appended so far, by any thread, survive power loss: a group
    /// commit.
    ///
    /// When this returns [`Ok`], every append that returned before this call began (on
    /// any thread of this process), and every event before it in the log, is covered, as
    /// by [`LogWriter::flush`] (taking the turn first if another process has it). If no
    /// flush is under way, this
    /// thread flushes; if one is, it was started before this call and may not cover it,
    /// so this thread waits for it and then for the next, which the first of the waiting
    /// threads starts and all of them share. Appends from other threads wait while the
    /// flush runs (it syncs the newest segment, after waiting for the seals of older
    /// ones, as [`LogWriter::flush`] does).
    ///
    /// # Errors
    /// [`Error::Io`] if a write-back failed, to the thread that flushed; every thread
    /// that shared that flush, and every later append and flush until the writer is
    /// reopened (the next turn reopens it), gets [`Error::Poisoned`].
    /// [`Error::Locked`], to every thread that needed the flush, if it could not take
    /// the turn (a writer that keeps the log to itself has it); nothing is poisoned then.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush(LogWriter::flush)
    }

    /// Applies the retention limits now, as [`LogWriter::enforce_retention`] does
    /// (taking the turn first if another process has it).
    ///
    /// # Errors
    /// As [`LogWriter::enforce_retention`], and as [`open`](Self::open) for taking the
    /// turn.
    pub fn enforce_retention(&self) -> Result<Vec<Retired>> {
        self.with(LogWriter::enforce_retention)
    }

    /// Segments retention deleted since the last call, during this process's turns,
    /// as [`LogWriter::take_retired`].
    pub fn take_retired(&self) -> Vec<Retired> {
        self.shared.turn(|turn| {
            let (writer, left) = turn.parts();
            let mut retired = std::mem::take(&mut left.retired);
            if let Some(writer) = writer {
                retired.extend(writer.take_retired());
            }
            retired
        })
    }

    /// Why the background retention after the last roll failed, if it did and this
    /// process has the turn, as [`LogWriter::take_retention_error`].
    pub fn take_retention_error(&self) -> Option<Error> {
        self.shared
            .turn(|turn| turn.parts().0?.take_retention_error())
            .map(|e| self.shared.named(e))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        self.shared.at()
    }

    /// The log's settings.
    pub fn options(&self) -> &LogOptions {
        &self.shared.facts().options
    }

    /// Sequence number of the newest segment, as this process last saw it (another
    /// process may have rolled since).
    pub fn segment(&self) -> u64 {
        self.seen(|seen| seen.segment)
    }

    /// The position the next event would get, as this process last saw it: another
    /// thread's or process's append, or a roll, may come first.
    pub fn end(&self) -> Position {
        self.seen(|seen| seen.end)
    }

    /// Events in the log since it was created, including retired ones, as this process
    /// last saw it (other processes may have appended since).
    pub fn event_count(&self) -> u64 {
        self.seen(|seen| seen.event_count)
    }

    /// The newest event's timestamp, if the log has one, as this process last saw it.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.seen(|seen| seen.last_timestamp)
    }

    /// What opening the log repaired ([`LogWriter::recovery`]) when this handle was
    /// made.
    pub fn recovery(&self) -> LogRecovery {
        self.shared.facts().recovery.clone()
    }

    /// The [`LogWriter`] back, if this is the last handle (waiting for the turn first if
    /// another process has it); this handle again otherwise. From then on the log is
    /// this writer's alone: other processes get [`Error::Locked`]. Once it took turns,
    /// the writer names the log by the absolute path they opened ([`LogWriter::dir`]).
    ///
    /// # Errors
    /// `self`, unchanged, while other clones exist, or if the turn could not be taken.
    pub fn into_writer(self) -> std::result::Result<LogWriter, Self> {
        self.shared.into_writer().map_err(|shared| Self { shared })
    }
}

/// [`SharedLogWriter::append_batch`] on the writer: every event checked, then each
/// appended.
fn append_batch(
    writer: &mut LogWriter,
    options: &LogOptions,
    events: &[(i64, &[u8])],
) -> Result<Position> {
    let largest = options.max_event();
    let mut previous = writer.last_timestamp().unwrap_or(i64::MIN);
    for &(timestamp, payload) in events {
        if timestamp < previous {
            return Err(Error::OutOfOrder {
                previous,
                got: timestamp,
            });
        }
        previous = timestamp;
        let len = payload.len();
        let needed = format::event_len(len).ok_or(Error::PayloadTooLarge { len })?;
        if needed > largest {
            return Err(Error::EventTooLarge {
                needed,
                segment_size: options.segment_size,
                largest,
            });
        }
    }
    let mut first = None;
    for &(timestamp, payload) in events {
        let position = writer.append(timestamp, payload)?;
        first.get_or_insert(position);
    }
    Ok(first.unwrap_or_else(|| writer.end()))
}
