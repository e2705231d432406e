//! A log writer that many threads and many processes share: one [`LogWriter`] per
//! process behind a lock, a group commit that lets one flush serve every thread waiting
//! for one, and the turn that processes take to hold the log's writer.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::commit::GroupCommit;
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::format;
use crate::log::config::{CONFIG_FILE, LogOptions};
use crate::log::position::Position;
use crate::log::retention::Retired;
use crate::log::writer::{CleanLog, Closing, LogRecovery, LogWriter};
use crate::stream::writer::CleanStream;
use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

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
/// segments a turn rolled past are sealed in the background after it. A handover
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
/// With one thread of one process the lock costs an uncontended atomic swap per append;
/// a program with one writing thread that wants nothing in the way keeps [`LogWriter`].
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
    handle: Arc<Handle>,
}

/// How often a process holding the turn looks whether another process waits for it.
const KEEPER_TICK: Duration = Duration::from_millis(1);

/// The longest a process keeps the turn while another process waits and it is still
/// appending (an idle one hands it over at the next look, [`KEEPER_TICK`]).
pub(crate) const TURN_LENGTH: Duration = Duration::from_millis(40);

/// The file whose exclusive `flock` is the turn of the processes appending to a log.
pub(crate) const TURN_FILE: &str = "TURN";

/// The file that processes waiting for the turn hold a shared `flock` on.
pub(crate) const WANT_FILE: &str = "WANT";

/// The handles' common part: dropping the last one stops the keeper thread and gives
/// the log back.
#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    turn: Mutex<Turn>,
    commit: GroupCommit,
    dir: PathBuf,
    options: LogOptions,
    /// What the first open repaired.
    recovery: LogRecovery,
    /// The turn files, when processes take turns; `None` for a writer made from a
    /// [`LogWriter`], which keeps the log to itself.
    processes: Option<Processes>,
    /// The running boot's identity, for the handover record; `None` where it cannot be
    /// read (then no record is written, and every turn opens the log in full).
    boot: Option<[u8; BOOT_LEN]>,
    /// The keeper thread is to stop.
    stop: Mutex<bool>,
    stopping: Condvar,
    /// Whether this process has the turn, for the keeper's look.
    holding: AtomicBool,
    /// Calls that used the writer: stored (not added to, an atomic read-modify-write
    /// would cost every append) under the turn's lock, read by the keeper to tell
    /// whether this process is idle.
    uses: AtomicU64,
    /// When this process took the turn, in nanoseconds after `epoch`.
    since: AtomicU64,
    epoch: Instant,
    /// Set by the keeper when another process waits and this one has had the turn for
    /// [`TURN_LENGTH`]: the next call gives the turn up before it goes on. (The keeper
    /// does not take the lock itself from a thread that keeps appending: a lock that
    /// lets a running thread take it again could keep the keeper out for long.)
    handover: AtomicBool,
}

/// This process's part in the log's turn.
#[derive(Debug)]
struct Turn {
    /// The log's writer while this process has the turn.
    writer: Option<LogWriter>,
    /// What the writer said when this process last gave the turn up.
    last: Seen,
    /// Segments retention deleted during this process's turns, not yet taken.
    retired: Vec<Retired>,
    /// The generation of the handover record this process's turn was opened from (0
    /// for none): the next record it writes has the one after.
    generation: u64,
    /// The sealing of segments that this process's writers rolled past, still under way
    /// after they closed ([`LogWriter::close_clean`]).
    closing: Vec<Closing>,
}

/// The writer's counters as this process last saw them.
#[derive(Debug, Clone, Copy)]
struct Seen {
    event_count: u64,
    last_timestamp: Option<i64>,
    segment: u64,
    end: Position,
}

impl Seen {
    fn of(writer: &LogWriter) -> Self {
        Self {
            event_count: writer.event_count(),
            last_timestamp: writer.last_timestamp(),
            segment: writer.segment(),
            end: writer.end(),
        }
    }
}

/// The files of the processes' turn, each opened on its own: `flock`s belong to the
/// open file.
#[derive(Debug)]
struct Processes {
    /// Locked exclusively while this process has the turn.
    turn: File,
    /// Locked shared while this process waits for the turn.
    want: File,
    /// Tried exclusively by the keeper: failing, another process waits.
    probe: File,
}

impl From<LogWriter> for SharedLogWriter {
    /// Shares `writer` between this process's threads. It keeps the log to itself:
    /// other processes' writers get [`Error::Locked`] until the last handle is dropped.
    fn from(writer: LogWriter) -> Self {
        Self::assemble(writer, None)
    }
}

impl SharedLogWriter {
    /// Makes the handle around `writer`, with its keeper thread if processes take turns.
    fn assemble(writer: LogWriter, processes: Option<Processes>) -> Self {
        let turns = processes.is_some();
        let inner = Arc::new(Inner {
            dir: writer.dir().to_owned(),
            options: writer.options().clone(),
            recovery: writer.recovery().clone(),
            turn: Mutex::new(Turn {
                last: Seen::of(&writer),
                writer: Some(writer),
                retired: Vec::new(),
                generation: 0,
                closing: Vec::new(),
            }),
            commit: GroupCommit::default(),
            processes,
            boot: boot_id(),
            stop: Mutex::new(false),
            stopping: Condvar::new(),
            holding: AtomicBool::new(true),
            uses: AtomicU64::new(0),
            since: AtomicU64::new(0),
            epoch: Instant::now(),
            handover: AtomicBool::new(false),
        });
        // Without its keeper a process keeps the turn until its last handle is dropped:
        // the others wait that long, and nothing is lost.
        let keeper = turns
            .then(|| {
                let theirs = Arc::clone(&inner);
                std::thread::Builder::new()
                    .name("evstream-log-turn".into())
                    .spawn(move || keep(&theirs))
                    .ok()
            })
            .flatten();
        Self {
            handle: Arc::new(Handle { inner, keeper }),
        }
    }

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
    /// # Errors
    /// - As [`LogWriter::open`]: [`Error::NotALog`] if `dir` holds no log, and so on.
    /// - [`Error::Locked`] if a writer that keeps the log to itself (a [`LogWriter`], or
    ///   a `SharedLogWriter` made from one) has it open.
    /// - [`Error::Io`] if the turn files (`TURN`, `WANT`) cannot be opened or locked.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        crate::log::reader::read_options(dir)?;
        let processes = Processes::open(dir)?;
        processes.wait_for_turn(dir)?;
        let (writer, generation) = processes.open_writer(dir, boot_id().as_ref())?;
        let log = Self::assemble(writer, Some(processes));
        log.inner().lock_turn().generation = generation;
        Ok(log)
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

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    /// Runs `f` on the log's writer, taking the turn first if another process has it.
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut LogWriter) -> Result<T>) -> Result<T> {
        let inner = self.inner();
        let mut turn = inner.lock_turn();
        if inner.handover.load(Ordering::Relaxed) {
            inner.hand_over(&mut turn);
        }
        if turn.writer.is_none() {
            inner.take_turn(&mut turn)?;
        }
        let uses = inner.uses.load(Ordering::Relaxed);
        inner.uses.store(uses.wrapping_add(1), Ordering::Relaxed);
        let result = match turn.writer.as_mut() {
            Some(writer) => f(writer),
            None => Err(Error::Locked {
                path: inner.dir.clone(),
            }),
        };
        // Again at the end: a call that spans the keeper's look (a roll waiting for its
        // segment) is not idleness.
        inner.uses.store(uses.wrapping_add(2), Ordering::Relaxed);
        result
    }

    /// What `f` reads from the writer if this process has the turn, or what it saw
    /// when it last gave it up.
    fn seen<T>(&self, f: impl FnOnce(Seen) -> T) -> T {
        let turn = self.inner().lock_turn();
        f(turn.writer.as_ref().map_or(turn.last, Seen::of))
    }

    /// Appends one event; returns its position. As [`LogWriter::append`].
    ///
    /// # Errors
    /// As [`LogWriter::append`]; nothing is written on error. [`Error::OutOfOrder`] if
    /// `timestamp` is lower than the last event's, which may be another thread's: a
    /// caller that does not order its timestamps with the other threads' uses
    /// [`append_now`](Self::append_now). When another process has the turn, as
    /// [`open`](Self::open) for taking it ([`Error::Locked`] if a writer that keeps the
    /// log to itself has it by then); and an [`Error::Io`] from the flush that ended this
    /// process's last turn, once, if it failed (nothing is written then).
    #[inline]
    pub fn append(&self, timestamp: i64, payload: &[u8]) -> Result<Position> {
        self.with(|writer| writer.append(timestamp, payload))
    }

    /// Appends an event of `len` bytes whose payload `fill` writes in place, as
    /// [`LogWriter::append_with`] does; returns its position. `fill` runs while this
    /// handle's lock is held: the other threads' appends wait for it.
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
        let options = &self.inner().options;
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
    pub fn flush(&self) -> Result<()> {
        let inner = self.inner();
        inner
            .commit
            .flush(&inner.dir, || self.with(LogWriter::flush))
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
        let mut turn = self.inner().lock_turn();
        let mut retired = std::mem::take(&mut turn.retired);
        if let Some(writer) = turn.writer.as_mut() {
            retired.extend(writer.take_retired());
        }
        retired
    }

    /// Why the background retention after the last roll failed, if it did and this
    /// process has the turn, as [`LogWriter::take_retention_error`].
    pub fn take_retention_error(&self) -> Option<Error> {
        let mut turn = self.inner().lock_turn();
        turn.writer.as_mut()?.take_retention_error()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner().dir
    }

    /// The log's settings.
    pub fn options(&self) -> &LogOptions {
        &self.inner().options
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
        self.inner().recovery.clone()
    }

    /// The [`LogWriter`] back, if this is the last handle (waiting for the turn first if
    /// another process has it); this handle again otherwise. From then on the log is
    /// this writer's alone: other processes get [`Error::Locked`].
    ///
    /// # Errors
    /// `self`, unchanged, while other clones exist, or if the turn could not be taken.
    pub fn into_writer(self) -> std::result::Result<LogWriter, Self> {
        let handle = match Arc::try_unwrap(self.handle) {
            Ok(handle) => handle,
            Err(handle) => return Err(Self { handle }),
        };
        let inner = &handle.inner;
        let mut turn = inner.lock_turn();
        if turn.writer.is_none() && inner.take_turn(&mut turn).is_err() {
            drop(turn);
            return Err(Self {
                handle: Arc::new(handle),
            });
        }
        let Some(writer) = turn.writer.take() else {
            drop(turn);
            return Err(Self {
                handle: Arc::new(handle),
            });
        };
        // The writer holds `LOCK` by itself: other processes that take the turn find
        // the log locked. Dropping the handle stops the keeper.
        if let Some(processes) = &inner.processes {
            let _ = processes.turn.unlock();
        }
        drop(turn);
        Ok(writer)
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

/// How long a process that handed the turn over waits for another to take it before it
/// waits for the turn again itself.
const HANDOVER_GRACE: Duration = Duration::from_millis(5);

/// How long taking the turn rides out a log found locked: the writer of a process that
/// just created the log (and never took a turn) may still be closing.
const HANDOVER_PATIENCE: Duration = Duration::from_millis(500);

/// How long a full open on taking the turn rides out a segment found locked: a process
/// that had the turn may still be sealing it (see [`LogWriter::close_clean`]).
const SEALING_PATIENCE: Duration = Duration::from_secs(60);

impl Inner {
    /// This process's part of the turn: a thread that panicked while it held it left
    /// the writer whole (an append cut short publishes nothing), so the lock's poison
    /// is passed over.
    #[inline]
    fn lock_turn(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the turn and opens the log's writer, which repairs what a process that
    /// died holding the turn left.
    #[cold]
    fn take_turn(&self, turn: &mut Turn) -> Result<()> {
        let Some(processes) = &self.processes else {
            return Err(Error::Locked {
                path: self.dir.clone(),
            });
        };
        processes.wait_for_turn(&self.dir)?;
        let (writer, generation) = processes.open_writer(&self.dir, self.boot.as_ref())?;
        turn.last = Seen::of(&writer);
        turn.writer = Some(writer);
        turn.generation = generation;
        let since = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since.store(since, Ordering::Relaxed);
        self.handover.store(false, Ordering::Relaxed);
        self.holding.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the turn up because another process waits, and lets it in before this
    /// process waits again: released, the turn could be taken back at once by this
    /// running thread, ahead of a waiter the kernel has only just woken.
    #[cold]
    fn hand_over(&self, turn: &mut Turn) {
        self.handover.store(false, Ordering::Relaxed);
        if turn.writer.is_none() {
            return;
        }
        self.release(turn);
        self.let_in();
    }

    /// Right after this process gave the turn up to a waiting process: waits until
    /// another process took it (or [`HANDOVER_GRACE`] passed), so that this process's
    /// next call does not take it back first.
    fn let_in(&self) {
        let Some(processes) = &self.processes else {
            return;
        };
        let deadline = Instant::now() + HANDOVER_GRACE;
        while Instant::now() < deadline {
            match processes.turn.try_lock() {
                Ok(()) => {
                    let _ = processes.turn.unlock();
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => return,
            }
        }
    }

    /// Gives the turn up: closes the writer without a flush (whose sealing thread goes on
    /// sealing the segments it rolled past, see [`LogWriter::close_clean`]), writes the
    /// handover record if it closed cleanly, and lets the next process in. The next
    /// process sees the events in the page cache, and the record spares its open the
    /// checks above the watermark.
    fn release(&self, turn: &mut Turn) {
        if let Some(mut writer) = turn.writer.take() {
            turn.last = Seen::of(&writer);
            match &self.processes {
                Some(processes) => {
                    // The segments this turn rolled past are sealed in the background
                    // meanwhile, each under its own lock, which the next writer waits
                    // for before its flush counts them.
                    let (clean, retired, closing) = writer.close_clean();
                    turn.retired.extend(retired);
                    turn.closing.retain(|closing| !closing.is_finished());
                    turn.closing.push(closing);
                    if let (Some(clean), Some(boot)) = (clean, self.boot.as_ref()) {
                        turn.generation = turn.generation.wrapping_add(1);
                        processes.write_record(&Handover::encode(turn.generation, boot, &clean));
                        failpoint!("handover:after_record");
                    }
                }
                None => {
                    turn.retired.extend(writer.take_retired());
                    drop(writer);
                }
            }
        }
        self.holding.store(false, Ordering::Relaxed);
        if let Some(processes) = &self.processes {
            let _ = processes.turn.unlock();
        }
    }

    /// Whether another process waits for the turn.
    fn wanted(&self) -> bool {
        self.processes
            .as_ref()
            .is_some_and(|processes| match processes.probe.try_lock() {
                Ok(()) => {
                    let _ = processes.probe.unlock();
                    false
                }
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Error(_)) => false,
            })
    }
}

impl Processes {
    /// Opens the turn files of the log in `dir` (made if missing; never through a
    /// symbolic link, never anything but a regular file).
    fn open(dir: &Path) -> Result<Self> {
        let file = |name: &str| -> Result<File> {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            let regular = file
                .metadata()
                .map_err(|e| Error::io("stat", &path, e))?
                .is_file();
            if !regular {
                return Err(Error::NotALog {
                    path,
                    reason: "a file of its writers' turn is not a regular file",
                });
            }
            Ok(file)
        };
        Ok(Self {
            turn: file(TURN_FILE)?,
            want: file(WANT_FILE)?,
            probe: file(WANT_FILE)?,
        })
    }

    /// Waits until this process has the turn: says so on `WANT` (so that the process
    /// holding it hands it over), then waits for `TURN`.
    fn wait_for_turn(&self, dir: &Path) -> Result<()> {
        let want = dir.join(WANT_FILE);
        self.want
            .lock_shared()
            .map_err(|e| Error::io("lock", &want, e))?;
        let taken = self.turn.lock();
        let _ = self.want.unlock();
        taken.map_err(|e| Error::io("lock", dir.join(TURN_FILE), e))
    }
}

impl Processes {
    /// Opens the log's writer once this process has the turn, from the handover record
    /// if the last holder left a valid one of this boot that matches the log
    /// ([`LogWriter::open_clean`]), in full ([`LogWriter::open`]) otherwise; returns it
    /// with the record's generation (0 without one). Gives the turn back if it cannot.
    fn open_writer(&self, dir: &Path, boot: Option<&[u8; BOOT_LEN]>) -> Result<(LogWriter, u64)> {
        if let Some((generation, clean)) = self.take_record(boot)
            && let Ok(Some(writer)) = LogWriter::open_clean(dir, &clean)
        {
            failpoint!("handover:after_open");
            return Ok((writer, generation));
        }
        let started = Instant::now();
        loop {
            match LogWriter::open(dir) {
                Ok(writer) => return Ok((writer, 0)),
                Err(Error::Locked { path })
                    if started.elapsed() < HANDOVER_PATIENCE
                        || (path != dir && started.elapsed() < SEALING_PATIENCE) =>
                {
                    std::thread::sleep(KEEPER_TICK);
                }
                Err(e) => {
                    let _ = self.turn.unlock();
                    return Err(e);
                }
            }
        }
    }
}

impl Processes {
    /// Reads the handover record from `TURN` and invalidates it at once, before
    /// anything else is done with the log (so that a holder killed later in its turn
    /// leaves none); the record, if it was valid and of this boot (`boot`). None if it
    /// could not be invalidated.
    fn take_record(&self, boot: Option<&[u8; BOOT_LEN]>) -> Option<(u64, CleanLog)> {
        let mut bytes = [0u8; HANDOVER_LEN];
        let read = self.turn.read_at(&mut bytes, 0).ok()?;
        let magic = bytes.get(..HANDOVER_MAGIC.len())?;
        if magic.iter().all(|&b| b == 0) {
            return None;
        }
        self.turn.write_all_at(&[0; HANDOVER_MAGIC.len()], 0).ok()?;
        (read == HANDOVER_LEN).then_some(())?;
        Handover::decode(&bytes, boot?)
    }

    /// Writes `record` into `TURN` (no sync: a record that a power loss tears fails its
    /// checksum, and one that survives it names another boot). Best effort: a record not
    /// written costs the next holder a full open.
    fn write_record(&self, record: &Handover) {
        let _ = self.turn.write_all_at(record.as_bytes(), 0);
    }
}

/// Length of the boot identity in the handover record: the running boot's identity
/// (`/proc/sys/kernel/random/boot_id`, at most 64 bytes) padded with zeros.
const BOOT_LEN: usize = 64;

/// The handover record's first bytes.
const HANDOVER_MAGIC: [u8; 8] = *b"evsturn1";

/// Bit 0 of [`Handover::flags`]: `last_before` holds a timestamp.
const HAS_LAST_BEFORE: u32 = 1;

/// Bit 1 of [`Handover::flags`]: `last_timestamp` holds a timestamp.
const HAS_LAST_TIMESTAMP: u32 = 2;

/// Bit 2 of [`Handover::flags`]: a trailer record with `dirty_limit` is on stable storage.
const LIMIT_SYNCED: u32 = 4;

/// The handover record a process that closed the log's writer cleanly leaves at the
/// start of `TURN` for the next holder (FORMAT.md, "Many writer processes"): what the
/// writer left ([`CleanLog`]), the boot that wrote it, a generation, and a checksum.
/// Little-endian, 188 bytes.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Handover {
    /// [`HANDOVER_MAGIC`]; zeros once the next holder took the record.
    magic: [u8; 8],
    /// One more than the generation of the record the writing process's turn was
    /// opened from (1 after a full open).
    generation: U64,
    /// The boot identity, zero-padded ([`BOOT_LEN`]).
    boot: [u8; BOOT_LEN],
    /// The newest segment's sequence number and first event's log-wide index.
    seq: U64,
    base: U64,
    /// The newest timestamp before the newest segment (if [`HAS_LAST_BEFORE`]).
    last_before: I64,
    /// The newest segment file's device and inode.
    dev: U64,
    ino: U64,
    /// The newest segment's recovery generation, watermark (offset and count), write
    /// offset, event count and last timestamp (if [`HAS_LAST_TIMESTAMP`]).
    stream_generation: U64,
    durable_offset: U64,
    durable_count: U64,
    write_offset: U64,
    event_count: U64,
    last_timestamp: I64,
    /// The newest segment's dirty limit (synced if [`LIMIT_SYNCED`]).
    dirty_limit: U64,
    /// The newest segment's CRC seed (0 for a version 2 segment).
    seed: U32,
    /// [`HAS_LAST_BEFORE`], [`HAS_LAST_TIMESTAMP`], [`LIMIT_SYNCED`]; other bits zero.
    flags: U32,
    /// CRC-32 (`crc32fast`) of the bytes before it.
    checksum: U32,
}

/// Length of [`Handover`].
const HANDOVER_LEN: usize = size_of::<Handover>();

const _: () = assert!(HANDOVER_LEN == 188);

impl Handover {
    fn encode(generation: u64, boot: &[u8; BOOT_LEN], clean: &CleanLog) -> Self {
        let segment = &clean.segment;
        let flags = if clean.last_before.is_some() {
            HAS_LAST_BEFORE
        } else {
            0
        } | if segment.last_timestamp.is_some() {
            HAS_LAST_TIMESTAMP
        } else {
            0
        } | if segment.limit_synced {
            LIMIT_SYNCED
        } else {
            0
        };
        let mut record = Self {
            magic: HANDOVER_MAGIC,
            generation: U64::new(generation),
            boot: *boot,
            seq: U64::new(clean.seq),
            base: U64::new(clean.base),
            last_before: I64::new(clean.last_before.unwrap_or(0)),
            dev: U64::new(segment.dev),
            ino: U64::new(segment.ino),
            stream_generation: U64::new(segment.generation),
            durable_offset: U64::new(segment.durable_offset),
            durable_count: U64::new(segment.durable_count),
            write_offset: U64::new(segment.write_offset),
            event_count: U64::new(segment.event_count),
            last_timestamp: I64::new(segment.last_timestamp.unwrap_or(0)),
            dirty_limit: U64::new(segment.dirty_limit),
            seed: U32::new(segment.seed),
            flags: U32::new(flags),
            checksum: U32::ZERO,
        };
        record.checksum = U32::new(record.computed_checksum());
        record
    }

    fn computed_checksum(&self) -> u32 {
        let bytes = self.as_bytes();
        crc32fast::hash(bytes.get(..HANDOVER_LEN - 4).unwrap_or(bytes))
    }

    /// The generation and the writer's state of a valid record of the boot `boot`.
    fn decode(bytes: &[u8; HANDOVER_LEN], boot: &[u8; BOOT_LEN]) -> Option<(u64, CleanLog)> {
        let record = Self::read_from_bytes(bytes).ok()?;
        let flags = record.flags.get();
        let valid = record.magic == HANDOVER_MAGIC
            && record.checksum.get() == record.computed_checksum()
            && record.boot == *boot
            && flags & !(HAS_LAST_BEFORE | HAS_LAST_TIMESTAMP | LIMIT_SYNCED) == 0;
        if !valid {
            return None;
        }
        let clean = CleanLog {
            seq: record.seq.get(),
            base: record.base.get(),
            last_before: (flags & HAS_LAST_BEFORE != 0).then(|| record.last_before.get()),
            segment: CleanStream {
                dev: record.dev.get(),
                ino: record.ino.get(),
                seed: record.seed.get(),
                generation: record.stream_generation.get(),
                durable_offset: record.durable_offset.get(),
                durable_count: record.durable_count.get(),
                write_offset: record.write_offset.get(),
                event_count: record.event_count.get(),
                last_timestamp: (flags & HAS_LAST_TIMESTAMP != 0)
                    .then(|| record.last_timestamp.get()),
                dirty_limit: record.dirty_limit.get(),
                limit_synced: flags & LIMIT_SYNCED != 0,
            },
        };
        Some((record.generation.get(), clean))
    }
}

/// The running boot's identity, zero-padded, for the handover record.
fn boot_id() -> Option<[u8; BOOT_LEN]> {
    let id = crate::log::segment::boot_id()?;
    let mut padded = [0u8; BOOT_LEN];
    padded.get_mut(..id.len())?.copy_from_slice(id.as_bytes());
    Some(padded)
}

impl Handle {
    /// Stops the keeper thread and waits for it.
    fn stop_keeper(&self) {
        *self.inner.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.stopping.notify_all();
    }
}

impl Drop for Handle {
    /// Stops the keeper and gives the turn up (closing the writer).
    fn drop(&mut self) {
        self.stop_keeper();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        let mut turn = self.inner.lock_turn();
        self.inner.release(&mut turn);
        // Waits for the seals still under way.
        turn.closing.clear();
    }
}

/// The keeper thread: every [`KEEPER_TICK`], if another process waits for the turn,
/// hands it over when this process is idle (no call used the writer since the last
/// look), or has the next call hand it over once this process has had it for
/// [`TURN_LENGTH`].
fn keep(inner: &Inner) {
    let mut seen_uses = u64::MAX;
    loop {
        {
            let stop = inner.stop.lock().unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
            let (stop, _) = inner
                .stopping
                .wait_timeout(stop, KEEPER_TICK)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let uses = inner.uses.load(Ordering::Relaxed);
        if inner.holding.load(Ordering::Relaxed) && inner.wanted() {
            if uses == seen_uses {
                // Idle: nothing keeps the keeper from the lock.
                let mut turn = inner.lock_turn();
                if inner.uses.load(Ordering::Relaxed) == uses && turn.writer.is_some() {
                    inner.release(&mut turn);
                    // The turn's lock is held meanwhile: this process's threads wait.
                    inner.let_in();
                }
            } else {
                let now = u64::try_from(inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let held =
                    Duration::from_nanos(now.saturating_sub(inner.since.load(Ordering::Relaxed)));
                if held >= TURN_LENGTH {
                    inner.handover.store(true, Ordering::Relaxed);
                }
            }
        }
        seen_uses = uses;
    }
}
