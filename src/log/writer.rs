//! The one writer of a log: appends to the newest segment, rolls, seals, retains.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::format;
use crate::log::config::{CONFIG_FILE, LogOptions, WriteBack, sync_dir};
use crate::log::position::{MAX_SEGMENT, Position};
use crate::log::retention::{self, Retired};
use crate::log::segment::{self, SegmentEntry, SegmentIndex, next_name, segment_name};
use crate::stream::open::{HeldLock, LockKind, check_writable, lock_exclusive, now_nanos};
use crate::stream::reader::StreamReader;
use crate::stream::writer::{
    CleanStream, FlushWake, Prefault, Recovery, StreamWriter, WriterOptions,
};
use crate::sys::{Prefaulter, WarmMapping};

/// With [`WriteBack::Lazy`], retired segments that may wait for their seal (flush and
/// index) before the sealing thread seals the oldest. No roll ever waits for the sealing
/// thread, under either policy.
const MAX_UNSEALED: usize = 8;

/// Retired segments the sealing thread's queue holds without growing: a roll allocates
/// nothing while the sealing thread keeps up.
const QUEUE_CAPACITY: usize = MAX_UNSEALED + 8;

/// With [`WriteBack::Lazy`], how long a retired segment waits before the sealing thread
/// flushes it anyway: the kernel's default age for writing back a dirty page
/// (`dirty_expire_centisecs`), so that the flush finds the pages mostly written back.
const LAZY_SEAL_AFTER: Duration = Duration::from_secs(30);

/// Name of the file whose exclusive lock marks the log's one writer.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// What a log writer that closed cleanly left ([`LogWriter::close_clean`]): every segment
/// before the newest sealed, the newest in place under its name, as `segment` says.
/// [`LogWriter::open_clean`] opens the log from it without the checks of
/// [`LogWriter::open`]; `SharedLogWriter` hands it from one process's turn to the next
/// (FORMAT.md, "Many writer processes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanLog {
    /// The newest segment's sequence number and the log-wide index of its first event.
    pub(crate) seq: u64,
    pub(crate) base: u64,
    /// The newest event's timestamp before the newest segment, if there is one.
    pub(crate) last_before: Option<i64>,
    pub(crate) segment: CleanStream,
}

/// The sealing a writer closed by [`LogWriter::close_clean`] left under way: its sealing
/// thread, sealing the segments it rolled past. Dropping it waits for the thread.
#[derive(Debug)]
pub(crate) struct Closing(Background);

impl Closing {
    /// Whether the sealing is done.
    pub(crate) fn is_finished(&self) -> bool {
        self.0.threads.iter().all(JoinHandle::is_finished)
    }
}

/// What [`LogWriter::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRecovery {
    /// What opening the newest segment repaired (see [`Recovery`]).
    pub newest: Recovery,
    /// Segments before the newest whose writer died before the background thread had
    /// flushed and indexed them (usually none with [`WriteBack::Eager`] while the disk
    /// keeps up with the writer; with [`WriteBack::Lazy`] up to 8 while the background
    /// thread keeps up; more under either policy when it falls behind: see
    /// [`WriteBack`] for the bound), with what opening each repaired.
    pub unsealed: Vec<(u64, Recovery)>,
    /// Events of the newest segments that were dropped because a segment before them had
    /// lost events to a power loss: they lay past a gap, and were never flushed (a flush
    /// covers every older segment first).
    pub dropped_after_gap: u64,
    /// The newest segment, if it was found under its preparation name: its writer
    /// rolled into it and died before renaming it into place. It was renamed, its
    /// events kept.
    pub renamed: Option<u64>,
}

impl LogRecovery {
    /// Whether the log was opened exactly as it was found.
    pub fn is_clean(&self) -> bool {
        self.newest.is_clean()
            && self.unsealed.is_empty()
            && self.dropped_after_gap == 0
            && self.renamed.is_none()
    }
}

/// Appends events to a log. One per log, across all processes.
///
/// Appends go to the newest segment exactly as with a [`StreamWriter`]: a copy into the
/// mapping and one atomic store, no system call. When an event does not fit, or its
/// timestamp starts a new roll interval, the writer **rolls**: it takes the next
/// segment, already created, preallocated and prefaulted by a background thread, and
/// continues there at once (waking that thread if it sleeps: at most one system call).
/// The background threads then rename the new segment into place, apply retention,
/// flush the old segment and write its time index, and prepare the segment after.
///
/// # Durability
/// As for a stream: an append that returned [`Ok`] survives a crash of the process; one
/// covered by a successful [`flush`](Self::flush) survives power loss. A flush first waits
/// until every older segment is flushed, so flushed events always form a prefix of the
/// log. Dropping the writer does not flush the newest segment (it does wait for the
/// background flush of older ones). When older segments are flushed without a call to
/// `flush` is the log's write-back policy ([`LogOptions::write_back`]): by default when
/// the kernel's own write-back has had time to do most of the work
/// ([`WriteBack::Lazy`]), or at once ([`WriteBack::Eager`]); no append ever waits for
/// the disk.
///
/// # Examples
/// ```
/// use evstream::{LogOptions, LogReader, LogWriter};
///
/// # fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("sensors");
/// let options = LogOptions::default()
///     .segment_size(1 << 20)
///     .retain_size(Some(64 << 20));
/// let mut log = LogWriter::create(&path, options)?;
/// let first = log.append(1_700_000_000_000_000_000, b"temp=21.5")?;
/// log.append_now(b"temp=21.7")?;
/// log.flush()?; // both events now survive power loss
///
/// let reader = LogReader::open(&path)?;
/// let events: Vec<_> = reader.iter()?.collect::<evstream::Result<_>>()?;
/// assert_eq!(events.len(), 2);
/// assert_eq!(events[0].position(), first);
/// assert_eq!(events[1].payload(), b"temp=21.7");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
// A cache line's alignment: the fields an append touches take the same lines wherever
// the writer lives (on a stack, in a shared writer's allocation).
#[repr(align(64))]
pub struct LogWriter {
    dir: PathBuf,
    options: LogOptions,
    segment: StreamWriter,
    seq: u64,
    /// Log-wide index of the newest segment's first event.
    base: u64,
    /// The newest segment's time index, kept as events are appended; `None` when the
    /// segment was opened with events in it (the background thread builds it at seal).
    index: Option<SegmentIndex>,
    /// The newest event's timestamp before this segment (or `i64::MIN`): the lowest
    /// timestamp the next append may have.
    floor: i64,
    /// The newest event's timestamp before this segment, if one is known: unlike
    /// `floor`, it tells an event stamped `i64::MIN` from none.
    last_before: Option<i64>,
    /// An append at or past this timestamp starts a new roll interval (or fills an
    /// empty segment and sets it).
    roll_at: i64,
    /// Whether `roll_at` is the end of an interval, not `i64::MAX` standing for "no end"
    /// (which an event stamped `i64::MAX` reaches without starting a new interval).
    interval_end_exact: bool,
    /// Largest event, header included, a segment holds.
    largest: u64,
    /// Once the newest segment's write offset reaches this, the next segment is
    /// prepared in the background (`u64::MAX`: asked for already).
    prepare_at: u64,
    /// Set by a flush: what `prepare_at` goes back to once the next append has woken
    /// the preparing thread ([`Background::resumed`]).
    resume_at: Option<u64>,
    /// When a flush last set `resume_at`.
    flush_wake: FlushWake,
    /// The writer resumed after a flush in the newest segment (it woke the preparing
    /// thread through `resume_at`): the next roll tells the new segment so
    /// ([`StreamWriter::resume_after_pause`]).
    paused_in_segment: bool,
    background: Background,
    recovery: LogRecovery,
    _lock: HeldLock,
}

impl LogWriter {
    /// Creates a log in the directory `dir` (made if missing, and it must be empty of
    /// logs) with its first segment, and opens it.
    ///
    /// # Errors
    /// - [`Error::AlreadyExists`] if `dir` already holds a log, or a log's segment files
    ///   (a log whose `LOG` file was lost: its events are never written over; the error
    ///   names the first segment); nothing is changed.
    /// - [`Error::BadCapacity`] for a segment size below 4 KiB or of 1 TiB or more.
    /// - [`Error::Io`] if the directory cannot be made or written, or the first segment
    ///   cannot be created (such as on a disk without room for it); what the call made
    ///   is then removed again, so that it can be retried.
    pub fn create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let dir = dir.as_ref();
        options.check(dir)?;
        // An empty path names no directory (`ENOENT`, as for `mkdir("")`), though
        // `create_dir_all` accepts it and a file joined to it lands in the working one.
        if dir.as_os_str().is_empty() {
            return Err(Error::io(
                "create directory",
                dir,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        let existed = dir.exists();
        if dir.is_dir()
            && let Some(first) = segment::list(dir)?.first()
        {
            return Err(Error::AlreadyExists {
                path: first.path.clone(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        options.write(dir)?;
        Self::open(dir).inspect_err(|e| {
            // Not when another writer took the log meanwhile, nor once a segment exists.
            let untouched = segment::list(dir).is_ok_and(|segments| segments.is_empty());
            if !matches!(e, Error::Locked { .. }) && untouched {
                let _ = std::fs::remove_file(dir.join(LOCK_FILE));
                let _ = std::fs::remove_file(dir.join(CONFIG_FILE));
                let _ = if existed {
                    sync_dir(dir)
                } else {
                    let _ = std::fs::remove_dir(dir);
                    match dir.parent() {
                        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
                        _ => sync_dir(Path::new(".")),
                    }
                };
            }
        })
    }

    /// Opens the log in `dir` if there is one, or creates it with `options` if there is
    /// not: what a program that should resume its log after a restart calls, and may run
    /// any number of times.
    ///
    /// An existing log keeps the settings it was created with (its `LOG` file), and
    /// `options` is then not used; [`options`](Self::options) gives the ones in force.
    /// Another process or thread creating the log at the same time is fine: one creates
    /// it, the other opens it (or finds it [`Locked`](Error::Locked), if the first still
    /// writes).
    ///
    /// # Errors
    /// As [`open`](Self::open) and [`create`](Self::create).
    ///
    /// # Examples
    /// ```
    /// use evstream::{LogOptions, LogWriter};
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// let options = LogOptions::default().segment_size(1 << 20);
    /// for run in 0..2 {
    ///     let mut log = LogWriter::open_or_create(&path, options.clone())?;
    ///     log.append_now(b"started")?;
    ///     assert_eq!(log.event_count(), run + 1);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_or_create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let settings = dir.join(CONFIG_FILE);
        match std::fs::symlink_metadata(&settings) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match Self::create(dir, options) {
                    // Created by another process since the look.
                    Err(Error::AlreadyExists { .. }) => Self::open(dir),
                    created => created,
                }
            }
            _ => Self::open(dir),
        }
    }

    /// Opens the log in `dir` to append to it.
    ///
    /// Takes the log's writer lock, removes what a writer that died mid-roll left (and
    /// adopts the segment it rolled into if it died before renaming it into place, see
    /// [`LogRecovery::renamed`]), and opens the newest segment as [`StreamWriter::open`]
    /// does (validating it, repairing a torn tail). If the segment before it was never completely flushed (its writer died
    /// between a roll and the background flush), it is validated and repaired too, and
    /// its index written. Costs the same whatever the number of segments.
    ///
    /// # Errors
    /// - [`Error::NotALog`] if `dir` holds no log or does not exist; nothing is changed.
    /// - [`Error::UnsupportedLogVersion`] for a log this build does not read; nothing is
    ///   changed.
    /// - [`Error::Locked`] if another writer has the log open.
    /// - As [`StreamWriter::open`] for a damaged segment, which is left unchanged.
    /// - [`Error::Io`] for a handover record that shared writers left in `TURN`
    ///   ([`SharedLogWriter`](crate::SharedLogWriter)) that this open cannot invalidate
    ///   (it zeroes the record's magic once its checks passed, before it changes the
    ///   log).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// # drop(evstream::LogWriter::create(&path, evstream::LogOptions::default().segment_size(1 << 20))?);
    /// let mut log = evstream::LogWriter::open(&path)?;
    /// if !log.recovery().is_clean() {
    ///     eprintln!("recovered: {:?}", log.recovery());
    /// }
    /// log.append_now(b"service started")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let options = crate::log::reader::read_options(dir)?;
        let lock = take_lock(dir)?;
        failpoint!("log_open:after_lock");
        let (chain, floor) = unsealed_chain(dir, &options)?;
        check_repairs(dir, &options, &chain, floor)?;
        // Checked: from here on the log may change. A handover record left for the
        // processes' turn is not to be trusted after this writer.
        crate::turn::void_record::<Self>(dir)?;
        if let Some(newest) = chain.last() {
            discard_unadopted(dir, newest.seq + 1)?;
        }
        record_boot(dir, &lock);
        let mut recovery = LogRecovery::default();
        let (newest, floor) = repair(dir, &options, &chain, floor, &mut recovery)?;
        Self::resume(dir, options, lock, &newest, floor, recovery)
    }

    /// The last phase of [`open`](Self::open): opens the newest segment (`floor` is the
    /// newest timestamp before it), removes what an earlier writer left, and starts the
    /// background threads.
    fn resume(
        dir: &Path,
        options: LogOptions,
        lock: std::fs::File,
        newest: &SegmentEntry,
        floor: Option<i64>,
        mut recovery: LogRecovery,
    ) -> Result<Self> {
        // Before the writer's open, which may repair it: a first event (read intact)
        // older than the newest event before it is not this log's.
        let first = StreamReader::open(&newest.path)?
            .iter()
            .next()
            .and_then(|event| event.ok().map(|e| e.timestamp()));
        if first.is_some_and(|first| floor.is_some_and(|floor| first < floor)) {
            return Err(first_too_old(&newest.path));
        }
        let segment = StreamWriter::open_with(&newest.path, WriterOptions::default())?;
        recovery.newest = segment.recovery().clone();
        Self::start(dir, options, lock, newest, segment, floor, recovery)
    }

    /// Opens the log in `dir` from what a writer of this boot that closed cleanly left
    /// (`clean`), skipping the checks and repairs of [`open`](Self::open): `None`, with
    /// nothing changed, unless the log is as `clean` says (its newest segment under its
    /// name, the same file with the same counters, no segment after it). Trusts that
    /// every segment before the newest is sealed and that the events above the newest
    /// segment's watermark are intact: only for a record the caller knows a clean writer
    /// of this boot made, and no other writer since.
    ///
    /// # Errors
    /// As [`open`](Self::open): [`Error::Locked`], [`Error::NotALog`], [`Error::Io`].
    pub(crate) fn open_clean(dir: &Path, clean: &CleanLog) -> Result<Option<Self>> {
        let options = crate::log::reader::read_options(dir)?;
        let lock = take_lock(dir)?;
        let segments = segment::list(dir)?;
        let Some(newest) = segments.last() else {
            return Ok(None);
        };
        if newest.seq != clean.seq || newest.base != clean.base || newest.is_pending() {
            return Ok(None);
        }
        let Some(segment) =
            StreamWriter::open_clean(&newest.path, WriterOptions::default(), &clean.segment)?
        else {
            return Ok(None);
        };
        record_boot(dir, &lock);
        // The segments before it without an index, which the writers that had the log
        // before may still be sealing (each holds a segment's lock until it is sealed):
        // this writer's flush waits for them, and seals those that were not.
        let mut foreign = VecDeque::new();
        let mut after = newest.seq;
        for entry in segments.iter().rev().skip(1) {
            if entry.seq + 1 != after || dir.join(segment::index_name(entry.seq)).exists() {
                break;
            }
            let written = std::fs::metadata(&entry.path)
                .and_then(|meta| meta.modified())
                .ok();
            foreign.push_front((entry.clone(), written));
            after = entry.seq;
        }
        let newest = newest.clone();
        let recovery = LogRecovery::default();
        let writer = Self::start(
            dir,
            options,
            lock,
            &newest,
            segment,
            clean.last_before,
            recovery,
        )?;
        {
            let mut state = writer.background.state();
            state.foreign = foreign;
            // The last roll's rename may not be synced yet: the first flush syncs it.
            state.unsynced_rename = true;
        }
        writer.background.shared.changed.notify_all();
        Ok(Some(writer))
    }

    /// Closes the writer without waiting for the seals of the segments it rolled past:
    /// the newest segment is closed, its successor put in place, the log's lock released,
    /// while the sealing thread goes on sealing them, each under its segment's lock
    /// (see [`Closing`]); under lazy write-back with `hand_on`, it leaves them unsealed
    /// for the next writer instead. If all went well, runs `record` with what the writer left, the
    /// state [`open_clean`](Self::open_clean) resumes from, before it releases the log's
    /// lock (not after a failed flush or seal, or if the newest segment's writer is not
    /// clean). Returns the segments retention deleted, and the sealing still under way.
    /// A retention run due after the last roll is left to the next writer's, unless
    /// `hand_on` (another process waits for the log): then it is waited for, briefly,
    /// and the segment it retires passes to that process with the other spares
    /// ([`Background::stop_preparing`]).
    pub(crate) fn close_clean(
        self,
        hand_on: bool,
        record: impl FnOnce(&CleanLog),
    ) -> (Vec<Retired>, Closing) {
        let Self {
            segment,
            seq,
            base,
            last_before,
            mut background,
            _lock: lock,
            ..
        } = self;
        let (settled, retired) = background.stop_preparing(hand_on);
        // The log's lock guards the newest segment from here on.
        if let Some(segment) = segment.close_clean(|_| {}).filter(|_| settled) {
            record(&CleanLog {
                seq,
                base,
                last_before,
                segment,
            });
        }
        drop(lock);
        (retired, Closing(background))
    }

    /// The last phase of [`open`](Self::open) and [`open_clean`](Self::open_clean): with
    /// the newest segment open, removes what an earlier writer left and starts the
    /// background threads.
    fn start(
        dir: &Path,
        options: LogOptions,
        lock: std::fs::File,
        newest: &SegmentEntry,
        segment: StreamWriter,
        floor: Option<i64>,
        recovery: LogRecovery,
    ) -> Result<Self> {
        let next = newest.seq + 1;
        // A segment the last writer prepared and never rolled into is kept for this one.
        let kept = segment::remove_leftovers(dir, next)?;
        let first = StreamReader::open(&newest.path)?
            .iter()
            .next()
            .transpose()?
            .map(|e| e.timestamp());
        // With room for the whole segment: no reallocation while appending.
        let index = (segment.event_count() == 0).then(|| index_for(options.segment_size));
        let largest = options.max_event();
        // The next segment is prepared once the newest is a quarter full, so that a writer
        // opened for a few appends does not pay for a segment it will not reach; at
        // once if the log rolls by time (a roll may come any moment) or it is that full already.
        let prepare_at = if options.roll_interval.is_some() {
            0
        } else {
            segment.capacity() / 4
        };
        let want = (segment.write_offset() >= prepare_at).then_some(next);
        let background = Background::start(dir, &options, want, kept)?;
        let mut writer = Self {
            dir: dir.to_owned(),
            segment,
            seq: newest.seq,
            base: newest.base,
            index,
            floor: floor.unwrap_or(i64::MIN),
            last_before: floor,
            roll_at: i64::MIN,
            interval_end_exact: true,
            largest,
            prepare_at: if want.is_some() { u64::MAX } else { prepare_at },
            resume_at: None,
            paused_in_segment: false,
            flush_wake: FlushWake::default(),
            background,
            recovery,
            options,
            _lock: HeldLock::new(lock, LockKind::Writer),
        };
        if let Some(first) = first {
            writer.set_roll_at(first);
        }
        Ok(writer)
    }

    /// Appends one event; returns its position.
    ///
    /// The event is visible to readers when this returns and survives a crash of this
    /// process; call [`flush`](Self::flush) to make it survive power loss. Rolls to a new
    /// segment first if the event does not fit or starts a new roll interval.
    ///
    /// # Errors
    /// Nothing is written on error.
    /// - [`Error::OutOfOrder`] if `timestamp` is lower than the last event's.
    /// - [`Error::EventTooLarge`] if the event cannot fit in a segment at all.
    /// - [`Error::Poisoned`] after a failed flush (of this or an older segment).
    /// - [`Error::Io`] if a roll needed a new segment and it could not be created (such
    ///   as a full disk); the append can be retried.
    #[inline]
    pub fn append(&mut self, timestamp: i64, payload: &[u8]) -> Result<Position> {
        if timestamp >= self.roll_at || timestamp < self.floor {
            self.before_append(timestamp, payload.len())?;
        }
        let offset = match self.segment.append_inline(timestamp, payload) {
            Ok(offset) => offset,
            // A full segment, or one sealed behind the writer's back: continue in the next.
            Err(Error::Full { .. } | Error::Sealed { .. }) => {
                self.roll_full(timestamp, payload.len())?;
                self.segment.append(timestamp, payload)?
            }
            Err(e) => return Err(e),
        };
        Ok(self.appended(offset, timestamp))
    }

    /// Appends an event of `len` bytes whose payload `fill` writes in place, as
    /// [`StreamWriter::append_with`] does; returns its position.
    ///
    /// # Errors
    /// As [`append`](Self::append), checked before `fill` runs.
    pub fn append_with<F>(&mut self, timestamp: i64, len: usize, fill: F) -> Result<Position>
    where
        F: FnOnce(&mut [u8]),
    {
        if timestamp >= self.roll_at || timestamp < self.floor {
            self.before_append(timestamp, len)?;
        }
        let needed = format::event_len(len).ok_or(Error::PayloadTooLarge { len })?;
        if needed > self.segment.available() {
            self.roll_full(timestamp, len)?;
        }
        if self.segment.event_count() > 0 {
            let offset = self.segment.append_with(timestamp, len, fill)?;
            return Ok(self.appended(offset, timestamp));
        }
        // The segment's first event set its roll interval above; if `fill` panics or the
        // append fails, no event was written, and the next one sets it again.
        let unset = UnsetOnUnwind(&mut self.roll_at);
        let offset = self.segment.append_with(timestamp, len, fill)?;
        std::mem::forget(unset);
        Ok(self.appended(offset, timestamp))
    }

    /// Appends an event stamped `time`, as [`append`](Self::append) does with its
    /// timestamp in Unix nanoseconds ([`timestamp_of`](crate::timestamp_of)).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] for a time no timestamp holds (before 1677 or after
    /// 2262); otherwise as [`append`](Self::append). Nothing is written on error.
    ///
    /// # Examples
    /// ```
    /// use std::time::SystemTime;
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut log = evstream::LogWriter::open_or_create(dir.path().join("app"), Default::default())?;
    /// let at = SystemTime::now();
    /// log.append_at(at, b"temp=21.5")?;
    /// let reader = evstream::LogReader::open(log.dir())?;
    /// assert_eq!(reader.tail(1)?[0].time(), at);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_at(&mut self, time: SystemTime, payload: &[u8]) -> Result<Position> {
        self.append(crate::timestamp_of(time)?, payload)
    }

    /// Appends `payload` stamped with the wall clock, never earlier than the last event;
    /// returns its position and the timestamp used.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_now(&mut self, payload: &[u8]) -> Result<(Position, i64)> {
        let timestamp = self.next_timestamp();
        self.append(timestamp, payload).map(|p| (p, timestamp))
    }

    /// The wall-clock timestamp [`append_now`](Self::append_now) would use now.
    pub fn next_timestamp(&self) -> i64 {
        self.segment.next_timestamp().max(self.floor)
    }

    #[inline]
    fn appended(&mut self, offset: u64, timestamp: i64) -> Position {
        let end = self.segment.write_offset();
        if let Some(index) = &mut self.index {
            index.note(offset, end, timestamp);
        }
        if end >= self.prepare_at {
            self.prepare_reached(end);
        }
        Position::of(self.seq, offset)
    }

    /// The newest segment's write offset reached `prepare_at`: the next segment is
    /// asked for, or, at the first append after a flush, the preparing thread told that
    /// the writer goes on.
    #[cold]
    fn prepare_reached(&mut self, end: u64) {
        if let Some(at) = self.resume_at.take() {
            self.background.resumed();
            self.paused_in_segment = true;
            self.prepare_at = at;
            if end < at {
                return;
            }
        }
        self.prepare_at = u64::MAX;
        self.background.want(self.seq + 1);
    }

    /// The slow checks before an append: order across segments, the roll interval.
    #[cold]
    fn before_append(&mut self, timestamp: i64, len: usize) -> Result<()> {
        if timestamp < self.floor {
            return Err(Error::OutOfOrder {
                previous: self.segment.last_timestamp().unwrap_or(self.floor),
                got: timestamp,
            });
        }
        if self.segment.event_count() == 0 {
            // The event will be the segment's first, and its interval the segment's: not
            // for an event that is refused.
            self.check_fits(len)?;
            self.set_roll_at(timestamp);
            return Ok(());
        }
        if let Some(previous) = self.segment.last_timestamp()
            && timestamp < previous
        {
            return Err(Error::OutOfOrder {
                previous,
                got: timestamp,
            });
        }
        if !self.starts_interval(timestamp) {
            // At `roll_at` = `i64::MAX` with no later interval (no roll interval, or the
            // last one): the event belongs to the newest segment.
            return Ok(());
        }
        self.check_fits(len)?;
        self.roll()?;
        self.set_roll_at(timestamp);
        Ok(())
    }

    /// Whether an event stamped `timestamp` (not before the newest segment's last event)
    /// starts a roll interval after the newest segment's.
    fn starts_interval(&self, timestamp: i64) -> bool {
        timestamp >= self.roll_at && (self.roll_at != i64::MAX || self.interval_end_exact)
    }

    /// Sets the end of the roll interval that holds `timestamp`. The last interval (the
    /// one whose end does not fit in an `i64`) and a log without a roll interval have no
    /// end: `roll_at` is then `i64::MAX` and `interval_end_exact` false, so that events
    /// stamped `i64::MAX` share their segment.
    fn set_roll_at(&mut self, timestamp: i64) {
        let end = self.options.roll_nanos().and_then(|interval| {
            timestamp
                .div_euclid(interval)
                .checked_add(1)?
                .checked_mul(interval)
        });
        self.roll_at = end.unwrap_or(i64::MAX);
        self.interval_end_exact = end.is_some();
    }

    fn check_fits(&self, len: usize) -> Result<()> {
        let needed = format::event_len(len).ok_or(Error::PayloadTooLarge { len })?;
        if needed > self.largest {
            return Err(Error::EventTooLarge {
                needed,
                segment_size: self.options.segment_size,
                largest: self.largest,
            });
        }
        Ok(())
    }

    /// Rolls because an event of `len` bytes stamped `timestamp` does not fit in the
    /// newest segment; it will be the new segment's first.
    #[cold]
    fn roll_full(&mut self, timestamp: i64, len: usize) -> Result<()> {
        self.check_fits(len)?;
        self.roll()?;
        self.set_roll_at(timestamp);
        Ok(())
    }

    /// Seals the newest segment and continues in the next one.
    fn roll(&mut self) -> Result<()> {
        let seq = self.seq + 1;
        if seq > MAX_SEGMENT {
            return Err(Error::NotALog {
                path: self.dir.clone(),
                reason: "the log has used every segment number (16,777,215)",
            });
        }
        let base = self
            .base
            .checked_add(self.segment.event_count())
            .ok_or_else(|| index_overflow(&self.dir.join(segment_name(self.seq, self.base))))?;
        let last = self.segment.last_timestamp();
        let retired_at = Instant::now();
        // The writer goes on in the new segment under its preparation name; the
        // preparing thread renames it into place and then wakes the old segment's
        // followers (FORMAT.md, "Rolling").
        // (Names are formatted there too: code that runs once a segment, run cold,
        // costs microseconds; so does an allocation, and the new segment's index comes
        // allocated from there as well.)
        let Self {
            background,
            segment: newest,
            index,
            base: old_base,
            seq: old_seq,
            ..
        } = self;
        background.roll_over(seq, base, |prepared, fresh_index| Retiring {
            segment: std::mem::replace(newest, prepared),
            base: *old_base,
            seq: *old_seq,
            index: index.replace(fresh_index),
            last_timestamp: last,
            prepare: seq + 1,
            retired_at,
        })?;
        failpoint!("roll:after_handoff");
        self.floor = last.unwrap_or(self.floor);
        self.last_before = last.or(self.last_before);
        self.seq = seq;
        self.base = base;
        // `retire` asked for the next segment already, and woke the preparing thread
        // if it slept (which a flush just before may have asked the next append to do).
        self.prepare_at = u64::MAX;
        self.resume_at = None;
        if std::mem::take(&mut self.paused_in_segment) {
            // Prepared, most likely, before the pause: the preparing thread touched its
            // first `RETOUCH_LEN` bytes again when the writer resumed, and the segment's
            // own prefaulting thread is to do the rest before the writer gets there.
            self.segment.resume_after_pause(RETOUCH_LEN);
        }
        Ok(())
    }

    /// Makes every event appended so far survive power loss.
    ///
    /// Waits until the background threads have renamed the newest segment into place and
    /// flushed every older segment, syncs the directory entries of the rolls, then
    /// flushes the newest segment as [`StreamWriter::flush`] does.
    ///
    /// # Errors
    /// [`Error::Io`] if a write-back failed, or the error that sealing an older segment
    /// met ([`Error::Corrupt`] for events damaged in the page cache since they were
    /// appended, found when the segment is read back to be indexed); after either the
    /// writer is poisoned: appends and flushes fail with [`Error::Poisoned`]. Reopen the
    /// log to continue from what is on disk.
    pub fn flush(&mut self) -> Result<()> {
        self.wait_retired()?;
        // Renamed into place since the roll into it: the flush's errors name the segment
        // as it is named.
        if self.segment.path().file_name().is_some_and(|name| {
            name.as_encoded_bytes()
                .starts_with(segment::NEXT_PREFIX.as_bytes())
        }) {
            self.segment
                .renamed(self.dir.join(segment_name(self.seq, self.base)));
        }
        self.segment.flush()?;
        self.after_flush();
        Ok(())
    }

    /// Waits until the background threads dealt with every segment rolled past (see
    /// `Background::wait_retired`). Their failure is a failed flush of an older segment:
    /// it poisons the writer, so that no append after it returns `Ok`.
    fn wait_retired(&mut self) -> Result<()> {
        let waited = self.background.wait_retired();
        if waited.is_err() {
            self.segment.poison();
        }
        waited
    }

    /// After a flush the writer may pause, and the pages prefaulted in the prepared
    /// segment be written back meanwhile (write-protected again), by the kernel or a sync
    /// of the whole file system, while the preparing thread, which watches the newest
    /// segment fill, sleeps once it stops filling: the next append wakes it, at most
    /// once every [`FLUSH_WAKE_EVERY`](crate::stream::writer::FLUSH_WAKE_EVERY), so
    /// that it touches those pages again before the roll (`RETOUCH_LEN`).
    fn after_flush(&mut self) {
        if self.resume_at.is_none() && self.flush_wake.due() {
            self.resume_at = Some(self.prepare_at);
            self.prepare_at = 0;
        }
    }

    /// Applies the retention limits now, instead of waiting for the next roll, and
    /// returns what was deleted (also reported by [`take_retired`](Self::take_retired)
    /// for deletions made in the background).
    ///
    /// A named cursor holds the segment it is in and every later one, unless
    /// [`LogOptions::retain_past_cursors`] is set; [`LogReader::stat`](crate::LogReader::stat)
    /// says which cursors hold how much ([`LogStat::held`](crate::LogStat::held)).
    ///
    /// # Errors
    /// - [`Error::BadCursor`] if the limits call for a deletion while a cursor's file
    ///   cannot be read (damaged): where that cursor stands is not known, so nothing is
    ///   deleted until it is committed again or removed. The background runs after each
    ///   roll hold back the same way, and
    ///   [`take_retention_error`](Self::take_retention_error) reports it.
    /// - [`Error::Io`] if a segment could not be read or deleted.
    pub fn enforce_retention(&mut self) -> Result<Vec<Retired>> {
        self.wait_retired()?;
        let _turn = self.background.retention_turn();
        retention::apply(
            &self.dir,
            &self.options,
            now_nanos(),
            &[],
            None,
            &mut Vec::new(),
        )
    }

    /// Segments the background thread deleted by retention since the last call, once it
    /// has dealt with every segment rolled so far.
    pub fn take_retired(&mut self) -> Vec<Retired> {
        let mut state = self.background.settled();
        std::mem::take(&mut state.retired)
    }

    /// Why the background retention after the last roll failed, if it did, once it has
    /// dealt with every segment rolled so far; `None` once a later run succeeded. A
    /// failed run deletes nothing more and is tried again after the next roll; the
    /// writer goes on. Most often [`Error::BadCursor`]: a cursor whose file is damaged
    /// holds every segment (see [`enforce_retention`](Self::enforce_retention)).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let mut log = evstream::LogWriter::create(dir.path().join("app"), evstream::LogOptions::default().segment_size(1 << 20))?;
    /// for retired in log.take_retired() {
    ///     eprintln!("retention deleted segment {}", retired.segment);
    /// }
    /// if let Some(e) = log.take_retention_error() {
    ///     eprintln!("retention is held back: {e}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn take_retention_error(&mut self) -> Option<Error> {
        let mut state = self.background.settled();
        state.retention_error.take()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's settings.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// Sequence number of the newest segment, the one appends go to.
    pub fn segment(&self) -> u64 {
        self.seq
    }

    /// The position the next event will get, unless a roll comes first.
    pub fn end(&self) -> Position {
        Position::of(self.seq, self.segment.write_offset())
    }

    /// Events in the log since it was created, including retired ones.
    pub fn event_count(&self) -> u64 {
        self.base.saturating_add(self.segment.event_count())
    }

    /// The newest event's timestamp, if the log has one.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.segment.last_timestamp().or(self.last_before)
    }

    /// What [`open`](Self::open) repaired.
    pub fn recovery(&self) -> &LogRecovery {
        &self.recovery
    }
}

/// The first phase of [`LogWriter::open`]: takes the log's writer lock (`LOCK`, made if
/// missing).
fn take_lock(dir: &Path) -> Result<std::fs::File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    lock_exclusive(&lock, dir)?;
    Ok(lock)
}

/// Removes `.next-SEQ` if it holds events (or is no stream) and was not adopted as the
/// newest segment: a segment the writer rolled into before a reboot (never flushed, as
/// a flush waits for its rename), or a file that is not this log's. Left in place, it
/// would read as the newest segment once this writer records the boot.
fn discard_unadopted(dir: &Path, seq: u64) -> Result<()> {
    let path = dir.join(next_name(seq));
    if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file()) {
        return Ok(());
    }
    let used = StreamReader::open(&path).map_or(true, |r| {
        r.header_event_count() > 0 || r.write_offset() > format::STREAM_HEADER_LEN
    });
    if used {
        std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// Records the running boot's identity in the held `LOCK` file (unsynced: a copy lost
/// to a power loss reads as another boot, the safe side), so that the next writer's
/// open can tell a crash of this process from a reboot. Called once the open has
/// decided what to adopt. Best effort: a failure leaves a file that reads as another
/// boot. Only into a `LOCK` that is a regular file of its own (no symbolic link, no
/// other name for the file): never into a file that is not the log's.
fn record_boot(dir: &Path, lock: &std::fs::File) {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let own = match (
        std::fs::symlink_metadata(dir.join(LOCK_FILE)),
        lock.metadata(),
    ) {
        (Ok(named), Ok(held)) => {
            named.file_type().is_file()
                && named.ino() == held.ino()
                && named.dev() == held.dev()
                && held.nlink() == 1
        }
        _ => false,
    };
    if !own {
        return;
    }
    let id = segment::boot_id().unwrap_or_default();
    let mut line = id.into_bytes();
    line.push(b'\n');
    // Written over what the file holds, then cut to its length: never emptied first. A
    // process killed in between leaves the line whole at the start (this boot's identity
    // rewritten in place, the usual case, changes no byte); an empty `LOCK` would read
    // as another boot, and the next open would remove the segment a writer killed in a
    // roll left under its preparation name, acknowledged events and all.
    if lock.write_all_at(&line, 0).is_ok() {
        failpoint!("log_open:record_boot");
        let _ = lock.set_len(line.len() as u64);
    }
}

/// The second phase of [`LogWriter::open`]: the segments whose background seal never
/// finished (their writer died first) and the newest one, oldest first, and the newest
/// timestamp before them. A log without segments gets its first one here.
fn unsealed_chain(dir: &Path, options: &LogOptions) -> Result<(Vec<SegmentEntry>, Option<i64>)> {
    let mut segments = segment::list(dir)?;
    if let [.., before, pending] = segments.as_slice()
        && pending.is_pending()
        && !rolled_into(options, before, pending)
    {
        // Not the segment this log's writer rolled into: left for `remove_leftovers`
        // and the preparing thread, which replace it.
        segments.pop();
    }
    let newest = match segments.pop() {
        Some(newest) => newest,
        None => {
            let entry = SegmentEntry {
                seq: 0,
                base: 0,
                path: dir.join(segment_name(0, 0)),
            };
            drop(StreamWriter::create_with(
                &entry.path,
                options.segment_size,
                quiet().seeded(),
            )?);
            sync_dir(dir)?;
            entry
        }
    };
    // The segments before the newest whose background seal never finished (the
    // writer died first), newest first. Those before them are sealed.
    let mut floor: Option<i64> = None;
    let mut unsealed = Vec::new();
    while let Some(previous) = segments.pop() {
        let after = unsealed.last().unwrap_or(&newest);
        if previous.seq + 1 != after.seq {
            break;
        }
        let reader = StreamReader::open(&previous.path)?;
        if let Some((_, last)) = SegmentIndex::load(dir, previous.seq, &reader) {
            floor = last.or(floor);
            break;
        }
        unsealed.push(previous);
    }
    let mut chain: Vec<SegmentEntry> = unsealed.into_iter().rev().collect();
    chain.push(newest);
    Ok((chain, floor))
}

/// Whether `pending`, listed under its preparation name after `before`, is the segment
/// the log's writer rolled into: a stream of the log's segment size whose first event is
/// intact and not older than the newest event `before` keeps. Reads only.
fn rolled_into(options: &LogOptions, before: &SegmentEntry, pending: &SegmentEntry) -> bool {
    let (Ok(before), Ok(pending)) = (before.open(), pending.open()) else {
        return false;
    };
    let Some(Ok(first)) = pending.iter().next() else {
        return false;
    };
    let last_before = before
        .kept_by_writer_open()
        .ok()
        .and_then(|(_, last, _)| last);
    pending.capacity() == options.segment_size
        && last_before.is_none_or(|last| first.timestamp() >= last)
}

/// The third phase of [`LogWriter::open`], reading only: every refusal of the repairs
/// ([`repair`]) checked first, on what they will keep, so that a refused open changes
/// no file. `chain` is from [`unsealed_chain`], `floor` the newest timestamp before it.
fn check_repairs(
    dir: &Path,
    options: &LogOptions,
    chain: &[SegmentEntry],
    floor: Option<i64>,
) -> Result<()> {
    // Nothing is repaired in a segment that is not one of this log's: each must open
    // as a stream (a typed refusal otherwise) of the log's segment size, and one that
    // holds flushed events must follow on from the one before it (a power loss can
    // tear only events that were never flushed, and a flush waits for every older
    // segment's seal).
    let mut before: Option<(u64, u64)> = None;
    // The first-event index after the last segment as the repairs leave it, and the
    // newest timestamp before the next segment.
    let mut kept_end: Option<u64> = None;
    let mut kept_floor = floor.unwrap_or(i64::MIN);
    let mut past_gap = false;
    for (k, entry) in chain.iter().enumerate() {
        let reader = StreamReader::open(&entry.path)?;
        if reader.capacity() != options.segment_size {
            return Err(Error::NotALog {
                path: entry.path.clone(),
                reason: "a segment file is not of the log's segment size",
            });
        }
        let flushed = reader.durable_offset() > format::STREAM_HEADER_LEN;
        if let Some((base, count)) = before
            && base.checked_add(count) != Some(entry.base)
            && flushed
        {
            return Err(not_following(&entry.path));
        }
        if entry
            .base
            .checked_add(reader.header_event_count())
            .is_none()
        {
            return Err(index_overflow(&entry.path));
        }
        before = Some((entry.base, reader.header_event_count()));
        past_gap |= kept_end.is_some_and(|end| end != entry.base);
        if past_gap {
            // Dropped by the repairs, as lying past a gap: only if it holds no flushed
            // event.
            if flushed {
                return Err(not_following(&entry.path));
            }
            continue;
        }
        let (kept, last, torn) = reader.kept_by_writer_open()?;
        kept_end = Some(
            entry
                .base
                .checked_add(kept)
                .ok_or_else(|| index_overflow(&entry.path))?,
        );
        if k + 1 == chain.len() {
            // The newest segment's first event, read intact, must not be older than
            // the last event before it.
            match reader.iter().next() {
                Some(Ok(first)) if first.timestamp() < kept_floor => {
                    return Err(first_too_old(&entry.path));
                }
                Some(Err(e)) if kept > 0 => return Err(e),
                _ => {}
            }
        }
        if k + 1 < chain.len() {
            // The repairs index this segment by reading every event they keep,
            // checksums included: damage there (below the watermark, where the
            // writer's open itself does not look) refuses the open, so look first.
            for event in reader
                .iter()
                .take(usize::try_from(kept).unwrap_or(usize::MAX))
            {
                event?;
            }
        }
        kept_floor = last.unwrap_or(kept_floor);
        // The writer's lock, and readers if a torn tail is to be dropped: checked
        // without this reader, which counts as one.
        drop(reader);
        check_writable(&entry.path, torn)?;
        // Each segment before the newest gets its index written by the repairs.
        if k + 1 < chain.len() {
            segment::check_index_writable(dir, entry.seq)?;
        }
    }
    Ok(())
}

/// The fourth phase of [`LogWriter::open`]: seals (repairs, flushes, indexes) each
/// segment of `chain` before the newest, or, past a segment that lost events to a power
/// loss, drops the later ones (never flushed) for an empty segment. Returns the newest
/// segment and the newest timestamp before it.
fn repair(
    dir: &Path,
    options: &LogOptions,
    chain: &[SegmentEntry],
    mut floor: Option<i64>,
    recovery: &mut LogRecovery,
) -> Result<(SegmentEntry, Option<i64>)> {
    let mut expected: Option<u64> = None;
    let mut newest = None;
    for (k, entry) in chain.iter().enumerate() {
        if let Some(base) = expected
            && entry.base != base
        {
            // The segment before lost events to the power loss (a torn tail, or a
            // header older than its events), so this segment and every later one
            // lie past a gap, and none of their events was flushed (a flush waits
            // for every older segment's seal): drop them, as a stream drops the
            // events after its torn tail, and continue with an empty segment.
            let gone = chain.get(k..).unwrap_or_default();
            // A power loss leaves no flushed event past a gap; flushed events there
            // mean the files disagree for another reason, and nothing is dropped.
            for later in gone {
                if StreamReader::open(&later.path)?.durable_offset() > format::STREAM_HEADER_LEN {
                    return Err(not_following(&later.path));
                }
            }
            for gone in gone {
                let reader = StreamReader::open(&gone.path)?;
                recovery.dropped_after_gap += reader.header_event_count();
                drop(reader);
                std::fs::remove_file(&gone.path).map_err(|e| Error::io("remove", &gone.path, e))?;
                let _ = std::fs::remove_file(dir.join(segment::index_name(gone.seq)));
            }
            let path = dir.join(segment_name(entry.seq, base));
            drop(StreamWriter::create_with(
                &path,
                options.segment_size,
                quiet().seeded(),
            )?);
            sync_dir(dir)?;
            newest = Some(SegmentEntry {
                seq: entry.seq,
                base,
                path,
            });
            break;
        }
        if k + 1 == chain.len() {
            newest = Some(if entry.is_pending() {
                // The writer rolled into it and died before renaming it into place: it
                // holds acknowledged events, and takes its final name now.
                let path = dir.join(segment_name(entry.seq, entry.base));
                crate::sys::rename_noreplace(&entry.path, &path)
                    .map_err(|e| Error::io("roll into place", &path, e))?;
                sync_dir(dir)?;
                recovery.renamed = Some(entry.seq);
                SegmentEntry {
                    path,
                    ..entry.clone()
                }
            } else {
                entry.clone()
            });
            break;
        }
        let (last, count, repair) = seal_unsealed(dir, entry)?;
        recovery.unsealed.push((entry.seq, repair));
        floor = last.or(floor);
        expected = Some(
            entry
                .base
                .checked_add(count)
                .ok_or_else(|| index_overflow(&entry.path))?,
        );
    }
    let newest = newest.ok_or(Error::NotALog {
        path: dir.to_owned(),
        reason: "it has no segment",
    })?;
    Ok((newest, floor))
}

/// Options of the segments the writer prepares: prefaulted whole, up front.
fn quiet() -> WriterOptions {
    WriterOptions::default().prefault(Prefault::Off)
}

/// The refusal of a newest segment that starts before the log's last event.
fn first_too_old(path: &Path) -> Error {
    Error::NotALog {
        path: path.to_owned(),
        reason: "the newest segment's first event is older than the last event before it",
    }
}

/// The refusal of a segment whose first-event index (in its name) leaves no room for its
/// events below 2^64: not a name this log's writer gave.
fn index_overflow(path: &Path) -> Error {
    Error::NotALog {
        path: path.to_owned(),
        reason: "a segment's first-event index leaves no room for its events",
    }
}

/// The refusal of a segment with flushed events that does not follow on from the one
/// before it.
fn not_following(path: &Path) -> Error {
    Error::NotALog {
        path: path.to_owned(),
        reason: "a segment holds flushed events, but the segment before it ends at another \
                 event than its name says",
    }
}

/// Opens a segment whose seal never finished for writing (validating and repairing it
/// as [`StreamWriter::open`] does), flushes it and writes its index if it can; returns its newest
/// timestamp, its event count and what was repaired.
fn seal_unsealed(dir: &Path, entry: &SegmentEntry) -> Result<(Option<i64>, u64, Recovery)> {
    let mut writer = StreamWriter::open_with(&entry.path, quiet())?;
    writer.seal()?;
    let repair = writer.recovery().clone();
    let last = writer.last_timestamp();
    let count = writer.event_count();
    let reader = StreamReader::open(&entry.path)?;
    let index = SegmentIndex::build(&reader)?;
    // As for a seal in the background (see `seal`): an index that cannot be written (no
    // room, no inode left) costs readers a scan of this segment and loses nothing, so the
    // open goes on; the next open looks at this segment again and writes it then.
    let _ = index.write(dir, entry.seq, last);
    sync_dir(dir)?;
    // The segment's lock is held until its index is written: another writer that seals
    // it too (a turn's sealing thread, `settle_foreign`) waits, then finds it done.
    drop(writer);
    Ok((last, count, repair))
}

/// Sets a roll interval's end back to `i64::MIN` when dropped (forgotten once the
/// event it was set for is written), so that the next append sets it again.
struct UnsetOnUnwind<'a>(&'a mut i64);

impl Drop for UnsetOnUnwind<'_> {
    fn drop(&mut self) {
        *self.0 = i64::MIN;
    }
}

/// A segment handed to the background thread at a roll.
#[derive(Debug)]
struct Retiring {
    segment: StreamWriter,
    /// Log-wide index of its first event.
    base: u64,
    seq: u64,
    index: Option<SegmentIndex>,
    last_timestamp: Option<i64>,
    /// The segment to prepare next.
    prepare: u64,
    /// When the writer rolled past it.
    retired_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// The prepared next segment (its sequence number), or why preparing it failed.
    prepared: Option<(u64, Result<StreamWriter>)>,
    /// Segments retention retired and kept for the preparing thread to recycle, instead
    /// of deleting them: at most [`MAX_SPARES`], oldest first.
    spares: VecDeque<Spare>,
    /// The segment to prepare, if not yet done.
    want: Option<u64>,
    /// The segment the writer is waiting for at a roll.
    waiting: Option<u64>,
    /// The segment the writer rolled into under its preparation name, and its final
    /// path: renamed by the preparing thread before anything else. The sealing thread
    /// waits for it before retention or a seal, so that the segment before it is never
    /// deleted or sealed while it is not in place.
    rename: Option<(u64, u64)>,
    /// A rename was made that no directory sync has covered yet.
    unsynced_rename: bool,
    /// The preparing thread is asleep (waiting on `to_preparer`): it must be woken. While
    /// it watches for a roll due soon ([`Watch`]) it is not, and looks on its own.
    preparer_asleep: bool,
    /// The writer appended again after a flush ([`Background::resumed`]): the
    /// preparing thread watches the newest segment again, and touches the prepared
    /// segment's first pages once more before the roll into it.
    resumed: bool,
    /// The preparing thread is creating a segment. The sealing thread writes nothing
    /// back meanwhile (unless a flush waits): the creation's syncs would wait behind the
    /// write-back, and the next roll perhaps for them.
    creating: bool,
    /// The preparing thread is at work on a segment: from taking the wish until its
    /// result is in `prepared` (longer than `creating`).
    preparing: bool,
    queue: VecDeque<Retiring>,
    /// Segments before the newest that the writers before this one may still be
    /// sealing, or left unsealed ([`LogWriter::open_clean`]), oldest first, with when
    /// each was last written: the sealing thread waits for each one's lock and seals it
    /// if they did not ([`settle_foreign`]), at once under eager write-back and as its
    /// own retired segments come due under lazy ([`foreign_due`]).
    foreign: VecDeque<(SegmentEntry, Option<SystemTime>)>,
    /// The writer stops to hand the log to another process's writer, waiting for it
    /// ([`Background::stop_preparing`]): under lazy write-back the retired segments are
    /// left unsealed, for that writer to seal as its own.
    handing_on: bool,
    /// An empty index for the next segment, allocated by the preparing thread so that a
    /// roll allocates nothing.
    next_index: Option<SegmentIndex>,
    /// Rolls so far, and the rolls the last retention run of the sealing thread had
    /// seen when it started: retention is due while they differ.
    rolls: u64,
    retained_rolls: u64,
    /// The writer waits for every retired segment's seal (a flush): the lazy policy
    /// seals them at once.
    urgent: bool,
    /// A retired segment's seal is under way, its write-back steps included.
    busy: bool,
    /// The sealing thread is applying retention.
    retaining: bool,
    /// A background flush failed: the log's writer is poisoned.
    failed: Option<Error>,
    poisoned: bool,
    retired: Vec<Retired>,
    /// Why the last background retention run failed, if it did (cleared by one that
    /// succeeds, and by `LogWriter::take_retention_error`).
    retention_error: Option<Error>,
    stop: bool,
    /// The log directory, for error messages.
    dir: PathBuf,
}

impl State {
    /// A background thread failed: the writer learns of `e` at its next call, and is
    /// poisoned.
    fn fail(&mut self, e: Error) {
        self.failed = Some(e);
        self.poisoned = true;
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The preparing thread sleeps on this one, so that a roll wakes it alone.
    to_preparer: Condvar,
    /// Serializes retention runs of the thread and of `enforce_retention`.
    retention: Mutex<()>,
}

/// The loop a background thread runs.
type ThreadBody = fn(&Shared, &Path, &LogOptions);

/// The background threads: one prepares the next segment, so that a roll never waits
/// for the disk; the other applies retention after each roll (a retired segment it
/// deletes is dropped unflushed), and flushes and indexes retired segments. With
/// [`WriteBack::Eager`] it flushes each at once, and may fall behind a writer that
/// outruns the disk. With [`WriteBack::Lazy`] it flushes one only when [`MAX_UNSEALED`]
/// younger ones wait, after [`LAZY_SEAL_AFTER`], or when the writer asks (a flush, a
/// drop). No roll ever waits for it.
#[derive(Debug)]
struct Background {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    lazy: bool,
}

impl Background {
    /// Starts the threads; `want` is the segment to prepare at once, `kept` the spares
    /// the last writer left for this one ([`segment::remove_leftovers`]), which the
    /// preparing thread recycles before any retired here (deleted beyond
    /// [`MAX_SPARES`]).
    fn start(
        dir: &Path,
        options: &LogOptions,
        want: Option<u64>,
        kept: Vec<PathBuf>,
    ) -> Result<Self> {
        let mut state = State {
            want,
            // Allocated here, not at the first rolls.
            queue: VecDeque::with_capacity(QUEUE_CAPACITY),
            dir: dir.to_owned(),
            ..State::default()
        };
        for path in kept {
            keep_spare(&mut state, Spare { path, warm: None });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            to_preparer: Condvar::new(),
            retention: Mutex::new(()),
        });
        // Dropped on error, which stops a thread already started.
        let mut background = Self {
            shared,
            threads: Vec::with_capacity(2),
            lazy: options.write_back == WriteBack::Lazy,
        };
        let threads: [(&str, ThreadBody); 2] = [
            ("evstream-log-prepare", run_preparer),
            ("evstream-log-seal", run_sealer),
        ];
        for (name, body) in threads {
            let theirs = Arc::clone(&background.shared);
            let (their_dir, options) = (dir.to_owned(), options.clone());
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(&theirs, &their_dir, &options))
                .map_err(|e| Error::io("spawn a thread for", dir, e))?;
            background.threads.push(thread);
        }
        Ok(background)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retention_turn(&self) -> MutexGuard<'_, ()> {
        self.shared
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&'a self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.shared
            .changed
            .wait(guard)
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Rolls into the prepared segment `seq` (whose first event is the log's `base`-th),
    /// waiting for the preparing thread if it is still at work: `retire` gets it and an
    /// empty index for it, and returns the segment rolled past, which goes to the
    /// sealing thread, while the rename of the new one goes to the preparing thread;
    /// that thread then wakes the sealing thread. One lock section, nothing allocated,
    /// and at most one thread woken (none if the preparing thread is awake, watching
    /// for the roll).
    fn roll_over(
        &self,
        seq: u64,
        base: u64,
        retire: impl FnOnce(StreamWriter, SegmentIndex) -> Retiring,
    ) -> Result<()> {
        let (mut state, prepared) = self.take_prepared(self.state(), seq);
        let prepared = prepared?;
        let index = state.next_index.take().unwrap_or_else(SegmentIndex::empty);
        let job = retire(prepared, index);
        state.want = Some(job.prepare);
        state.rename = Some((job.seq + 1, base));
        state.queue.push_back(job);
        state.rolls += 1;
        let asleep = state.preparer_asleep;
        // Woken after the unlock: a thread woken under the lock would find it held, and
        // the unlock would take a second system call to wake it again.
        drop(state);
        if asleep {
            self.shared.to_preparer.notify_one();
        }
        Ok(())
    }

    /// The prepared segment `seq`, waiting for the thread if it is still at work; the
    /// lock stays held from the take on.
    fn take_prepared<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        seq: u64,
    ) -> (MutexGuard<'a, State>, Result<StreamWriter>) {
        // Whether the preparation this call waits for started after the call began: the
        // failure of one started before (in the background, perhaps before the caller
        // made room on a full disk) is not reported; the preparation is tried again.
        let mut asked = false;
        loop {
            if state.poisoned {
                let e = poisoned(&mut state);
                return (state, Err(e));
            }
            match state.prepared.take() {
                Some((s, Ok(writer))) if s == seq => {
                    // Asked for while it was being prepared: it must not be prepared again
                    // (that would replace the file this writer is about to roll in).
                    if state.want == Some(seq) {
                        state.want = None;
                    }
                    return (state, Ok(writer));
                }
                Some((s, Err(e))) if s == seq && asked => {
                    // Not tried again in the background: the next roll asks.
                    if state.want == Some(seq) {
                        state.want = None;
                    }
                    return (state, Err(e));
                }
                Some(_) | None => {
                    if state.want != Some(seq) {
                        state.want = Some(seq);
                    }
                    // With no preparation under way, the next one starts after this
                    // call began; one under way now may fail for a reason since removed.
                    asked |= !state.preparing;
                    // Also when it was wanted already: the preparing thread may have
                    // passed over that wish while the slot held the segment just taken.
                    self.shared.to_preparer.notify_one();
                    state.waiting = Some(seq);
                    state = self.wait(state);
                    state.waiting = None;
                }
            }
        }
    }

    /// Asks for segment `seq` to be prepared, unless it is already.
    fn want(&self, seq: u64) {
        let mut state = self.state();
        if state.prepared.as_ref().is_some_and(|(s, _)| *s == seq) || state.want == Some(seq) {
            return;
        }
        state.want = Some(seq);
        let asleep = state.preparer_asleep;
        drop(state);
        if asleep {
            self.shared.to_preparer.notify_one();
        }
    }

    /// The writer appends again after a flush: wakes the preparing thread if it sleeps,
    /// to watch the newest segment again and touch the prepared one's first pages once
    /// more before the roll.
    fn resumed(&self) {
        let mut state = self.state();
        state.resumed = true;
        let asleep = state.preparer_asleep;
        drop(state);
        if asleep {
            self.shared.to_preparer.notify_one();
        }
    }

    /// Waits until every retired segment is flushed and indexed (or deleted by
    /// retention).
    fn wait_retired(&self) -> Result<()> {
        let mut state = self.state();
        if !state.queue.is_empty() || !state.foreign.is_empty() {
            state.urgent = true;
            self.shared.changed.notify_all();
        }
        while !state.queue.is_empty()
            || !state.foreign.is_empty()
            || state.busy
            || state.rename.is_some()
        {
            state = self.wait(state);
        }
        state.urgent = false;
        if state.poisoned {
            return Err(poisoned(&mut state));
        }
        if state.unsynced_rename {
            // The last roll's rename, when no seal synced the directory after it (the
            // segment rolled past was deleted by retention unsealed, or is being sealed).
            state.unsynced_rename = false;
            let dir = state.dir.clone();
            drop(state);
            if let Err(e) = sync_dir(&dir) {
                let mut state = self.state();
                state.poisoned = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// The state once the sealing thread has dealt with every roll so far: retention
    /// applied after it, and (eager policy) every retired segment sealed.
    fn settled(&self) -> MutexGuard<'_, State> {
        let mut state = self.state();
        while state.rolls != state.retained_rolls
            || state.retaining
            || state.busy
            || (!self.lazy && !state.queue.is_empty())
        {
            state = self.wait(state);
        }
        state
    }
}

/// The error of the failed background flush, once; [`Error::Poisoned`] after that.
fn poisoned(state: &mut State) -> Error {
    state.failed.take().unwrap_or_else(|| Error::Poisoned {
        path: state.dir.clone(),
    })
}

impl Background {
    /// Stops the threads, waiting for the preparing thread alone (which makes a rename
    /// still due, and leaves its prepared segment for the next writer): the sealing
    /// thread goes on to seal every retired segment (under lazy write-back with
    /// `hand_on`, it leaves them unsealed to the next writer instead: [`foreign_due`]),
    /// and runs no more retention (a run
    /// under way is waited for). With `hand_on` (another process waits to open the log
    /// next), a retention run due after the last roll is waited for too, up to
    /// [`HAND_ON_RETENTION`], so that the segment it retires passes to that process as a
    /// spare. Whether all went well so far, and the segments retention deleted.
    fn stop_preparing(&mut self, hand_on: bool) -> (bool, Vec<Retired>) {
        {
            let mut state = self.state();
            let until = Instant::now() + HAND_ON_RETENTION;
            while hand_on
                && state.rolls != state.retained_rolls
                && state.failed.is_none()
                && let Some(left) = until.checked_duration_since(Instant::now())
            {
                state = self
                    .shared
                    .changed
                    .wait_timeout(state, left)
                    .map_or_else(|e| e.into_inner().0, |(state, _)| state);
            }
            while state.retaining {
                state = self.wait(state);
            }
            state.retained_rolls = state.rolls;
            state.handing_on = hand_on;
            state.stop = true;
            self.shared.changed.notify_all();
            self.shared.to_preparer.notify_all();
        }
        let joined = match self.threads.is_empty() {
            true => true,
            false => self.threads.remove(0).join().is_ok(),
        };
        self.leave_prepared(hand_on);
        let mut state = self.state();
        let settled = joined && !state.poisoned && state.rename.is_none();
        (settled, std::mem::take(&mut state.retired))
    }

    /// Once the preparing thread stopped: closes the prepared segment, kept for the next
    /// writer, and deletes the spares, or with `hand_on` (a process waits to open the
    /// log next) leaves them for the next writer under their kept names
    /// ([`segment::kept_name`]): that writer's first segments are then recycled, not
    /// created, and this one does not wait to delete them (milliseconds each, their
    /// pages in memory freed) before it lets the next in.
    fn leave_prepared(&self, hand_on: bool) {
        // A prepared segment nobody took stays for the next writer, which adopts it
        // (see `prepare`): a writer opened for a few appends then finds its next
        // segment ready instead of preparing and removing one each time.
        //
        // Its mapping, prefaulted whole, takes milliseconds to unmap, as do the spares'
        // kept mappings: that is left to a thread of its own, so that a writer handing
        // the turn to another process does not keep it waiting for that (the file's
        // lock is released at once).
        let mut state = self.state();
        let prepared = match state.prepared.take() {
            Some((_, Ok(prepared))) => Some(prepared),
            _ => None,
        };
        let spares = std::mem::take(&mut state.spares);
        drop(state);
        // Each holds a mapping; the last holder unmaps it when dropped.
        let mut mappings: Vec<Box<dyn Send>> = Vec::new();
        if let Some(prepared) = prepared {
            mappings.push(Box::new(prepared.prefaulter()));
        }
        // A spare nobody recycled is a retired segment: deleted (or by the next open),
        // or left for the next writer. Renamed without replacing: a kept spare is one
        // this writer's retention took out of the log, and nothing has changed it since.
        for spare in spares {
            let left = hand_on
                && segment::kept_path(&spare.path)
                    .is_some_and(|kept| crate::sys::rename_noreplace(&spare.path, &kept).is_ok());
            if !left {
                let _ = std::fs::remove_file(&spare.path);
            }
            if let Some(warm) = spare.warm {
                mappings.push(Box::new(warm));
            }
        }
        if !mappings.is_empty() {
            let unmap = std::thread::Builder::new()
                .name("evstream-unmap".into())
                .spawn(move || drop(mappings));
            // Without a thread, unmapped here.
            drop(unmap);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        {
            let mut state = self.state();
            state.stop = true;
            self.shared.changed.notify_all();
            self.shared.to_preparer.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.leave_prepared(false);
    }
}

/// The preparing thread's loop: creates and prefaults the segment the next roll needs.
fn run_preparer(shared: &Shared, dir: &Path, options: &LogOptions) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = lock();
    // The newest segment, once this thread renamed it into place: how fast it fills.
    let mut watched: Option<Watch> = None;
    // Whether the writer's first segment was looked for, to watch it.
    let mut looked_up = false;
    // The prepared segment's mapping, until its first pages are touched again.
    let mut retouch: Option<Prefaulter> = None;
    // The prepared segment's mapping again, to touch its first pages once more right
    // after the roll into it.
    let mut entered: Option<Prefaulter> = None;
    loop {
        if let Some((seq, base)) = state.rename {
            drop(state);
            let to = dir.join(segment_name(seq, base));
            failpoint!("roll:before_rename");
            let renamed = crate::sys::rename_noreplace(&dir.join(next_name(seq)), &to);
            failpoint!("roll:after_rename");
            state = lock();
            watched = None;
            match renamed {
                Ok(()) => {
                    state.unsynced_rename = true;
                    watched = StreamReader::open(&to).ok().map(Watch::new);
                    // Followers asleep at the old segment's end move on to its
                    // successor now, not when the sealing thread gets to the seal
                    // (which wakes them again).
                    if let Some(old) = state.queue.iter().find(|job| job.seq + 1 == seq) {
                        old.segment.wake_followers();
                    }
                }
                Err(e) => state.fail(Error::io("roll into place", &to, e)),
            }
            state.rename = None;
            shared.changed.notify_all();
            if let Some(pages) = entered.take() {
                // Right after the roll, ahead of the writer: pages written back since
                // they were touched before the roll fault no more (see `RETOUCH_LEN`).
                drop(state);
                retouch_pages(&pages);
                state = lock();
            }
            continue;
        }
        if state.stop {
            return;
        }
        let wanted = state
            .want
            .filter(|&seq| state.prepared.as_ref().is_none_or(|(s, _)| *s != seq));
        // With a retention run due and no spare, the run may retire a segment to
        // recycle as this one: wait for it, unless the writer waits already (a seal
        // under way lets the run in between two of its steps).
        let retention_due = state.rolls != state.retained_rolls || state.retaining;
        let defer = state.spares.is_empty() && retention_due && wanted != state.waiting;
        if let Some(seq) = wanted
            && !defer
        {
            state.want = None;
            state.creating = true;
            state.preparing = true;
            let mut spare = state.spares.pop_front();
            drop(state);
            // Prefaulting stops early when the writer waits for the segment, or stops.
            let wanted_now = || {
                let state = lock();
                state.waiting == Some(seq) || state.stop
            };
            let created = || {
                lock().creating = false;
                shared.changed.notify_all();
            };
            let prepared = prepare(dir, options, seq, &mut spare, &created, &wanted_now);
            // What the roll into it takes beside it, made here: an index with room for
            // the whole segment, and a handle to touch its first pages again just
            // before the roll (below).
            let index = index_for(options.segment_size);
            retouch = prepared.as_ref().ok().map(StreamWriter::prefaulter);
            entered.clone_from(&retouch);
            state = lock();
            if state.next_index.is_none() {
                state.next_index = Some(index);
            }
            // Not used (the segment was adopted): kept for the next one.
            if let Some(spare) = spare {
                keep_spare(&mut state, spare);
            }
            // A prepared segment nobody takes is removed when the writer is dropped.
            state.prepared = Some((seq, prepared));
            state.preparing = false;
            shared.changed.notify_all();
            continue;
        }
        if std::mem::take(&mut state.resumed) {
            // The writer goes on after a flush and maybe a pause, during which the
            // prepared segment's first pages may have been written back: they are
            // touched again before the roll, at the pace measured from now.
            if retouch.is_none() {
                retouch.clone_from(&entered);
            }
            if let Some(watch) = &mut watched {
                watch.restart();
            }
        }
        let ready = state.prepared.as_ref().is_some_and(|(_, p)| p.is_ok());
        if ready
            && watched.is_none()
            && !looked_up
            && let Some(&(seq, _)) = state.prepared.as_ref()
        {
            // The writer's first segment, not renamed by this thread: watched as well,
            // so that the first roll finds this thread awake too.
            looked_up = true;
            drop(state);
            watched = newest_before(dir, seq).map(Watch::new);
            state = lock();
            continue;
        }
        let look = match &mut watched {
            Some(watch) if ready => watch.next_look(Instant::now()),
            _ => None,
        };
        if look.is_some_and(|after| after <= WATCH_EVERY)
            && let Some(pages) = retouch.take()
        {
            // The roll is due within `WATCH_FROM`: the new segment's header page and
            // first pages are mapped writable again, in case write-back or reclaim
            // unmapped or write-protected them since they were prefaulted, so that the
            // first appends into it fault on nothing (a fault there costs the roll
            // 10-30 µs). On pages still mapped it costs a walk of the page tables.
            drop(state);
            retouch_pages(&pages);
            state = lock();
            continue;
        }
        state.preparer_asleep = look.is_none_or(|after| after > WATCH_EVERY);
        state = match look {
            Some(after) => {
                shared
                    .to_preparer
                    .wait_timeout(state, after)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared
                .to_preparer
                .wait(state)
                .unwrap_or_else(|e| e.into_inner()),
        };
        state.preparer_asleep = false;
    }
}

/// Under [`WriteBack::Lazy`], how long the pages a segment's appends passed stay mapped
/// ([`WriterOptions::keep_mapped`]): a log appending fast enough to recycle a segment
/// within this time writes its next life through page-table entries still in place,
/// with no fault (64 MiB segments, 4 kept: 256 MiB, at 256 MiB/s or more). Well below
/// the kernel's age for writing back a dirty page (`dirty_expire_centisecs`, 30 s by
/// default), so that the periodic write-back finds few of them mapped.
const KEEP_MAPPED: Duration = Duration::from_secs(1);

/// Options of the log's segments: under lazy write-back, the pages behind the writer
/// stay mapped for [`KEEP_MAPPED`], for recycling.
fn segment_options(options: &LogOptions) -> WriterOptions {
    match options.write_back {
        WriteBack::Lazy => WriterOptions::default().keep_mapped(KEEP_MAPPED),
        WriteBack::Eager => WriterOptions::default(),
    }
}

/// Retired segments kept for recycling at most. One is enough while the preparing thread
/// waits for each retention run; a second covers the rolls where it cannot (the writer
/// waits for the segment already), so that the next segment is still a recycled one then.
const MAX_SPARES: usize = 2;

/// A retired segment kept for recycling.
#[derive(Debug)]
struct Spare {
    /// Its spare name.
    path: PathBuf,
    /// The mapping of its last life, kept if retention retired it before its writer was
    /// dropped (under lazy write-back, before its seal): the pages that life wrote
    /// last, still mapped ([`WriterOptions::keep_mapped`]), take its next life's
    /// appends with no fault.
    warm: Option<WarmMapping>,
}

/// Keeps `spare` for recycling, or deletes it if [`MAX_SPARES`] wait already.
fn keep_spare(state: &mut State, spare: Spare) {
    if state.spares.len() < MAX_SPARES {
        state.spares.push_back(spare);
    } else {
        let _ = std::fs::remove_file(spare.path);
    }
}

/// Bytes at the start of a prepared segment that the preparing thread touches again
/// just before the roll: the header's page and the pages of the appends until the
/// segment's prefaulting thread first wakes (one prefault chunk, 4 MiB by default).
/// A segment prepared long before the roll may have been written back since, and a
/// written-back page is write-protected: without this, every first store to one of
/// those pages would fault in the append. On pages still mapped writable it costs a
/// walk of the page tables.
const RETOUCH_LEN: u64 = 4 << 20;

/// Maps writable again the pages of a prepared segment that the roll into it and its
/// first appends touch: the first [`RETOUCH_LEN`] bytes and the trailer's page, whose
/// wait words every publication into the segment looks at.
fn retouch_pages(pages: &Prefaulter) {
    let _ = pages.populate(0, RETOUCH_LEN);
    let _ = pages.populate(
        pages.len().saturating_sub(format::TRAILER_LEN),
        format::TRAILER_LEN,
    );
}

/// An empty index with room for every entry a segment of `segment_size` bytes gets.
fn index_for(segment_size: u64) -> SegmentIndex {
    let entries = segment_size / segment::INDEX_STRIDE + 1;
    let mut index = SegmentIndex::empty();
    index
        .entries
        .reserve(usize::try_from(entries).unwrap_or(0).min(MAX_INDEX_RESERVE));
    index
}

/// Index entries allocated ahead at most (a 1 GiB segment's).
const MAX_INDEX_RESERVE: usize = 1 << 14;

/// The newest segment before `seq` as the directory lists it, open for reading.
fn newest_before(dir: &Path, seq: u64) -> Option<StreamReader> {
    let before = seq.checked_sub(1)?;
    let entry = segment::list(dir)
        .ok()?
        .into_iter()
        .find(|entry| entry.seq == before)?;
    StreamReader::open(&entry.path).ok()
}

/// How often the preparing thread looks for the writer's roll once it is due.
const WATCH_EVERY: Duration = Duration::from_micros(100);

/// How long before the newest segment is full, at the writer's pace, the preparing
/// thread starts looking for the roll every [`WATCH_EVERY`].
const WATCH_FROM: Duration = Duration::from_millis(10);

/// How soon the preparing thread looks at the newest segment again once it measures the
/// writer's pace afresh.
const WATCH_AFRESH: Duration = Duration::from_millis(1);

/// How long the preparing thread keeps looking at a newest segment that does not fill.
const WATCH_IDLE: Duration = Duration::from_millis(50);

/// The longest the preparing thread sleeps between two reads of a filling segment.
const WATCH_AT_MOST: Duration = Duration::from_secs(1);

/// The preparing thread's watch of the newest segment, whose next segment is ready: so
/// that the writer's roll finds it awake, and wakes no thread (a system call on the
/// appending thread, and a thread that may take its CPU). It reads the segment's
/// write offset now and then, sleeping a quarter of the time the rest of the segment
/// should take at the writer's last pace (a writer catching up after a stall goes
/// faster), then looks every [`WATCH_EVERY`] from [`WATCH_FROM`] before it is full:
/// about a hundred wakes of its own a roll. A writer that stops, or a roll that comes
/// early (a roll interval), finds it asleep and wakes it as before.
#[derive(Debug)]
struct Watch {
    segment: StreamReader,
    /// The write offset last read, when, and when it last moved.
    offset: u64,
    at: Instant,
    moved: Instant,
    /// Bytes a second at the last look.
    pace: f64,
    /// Whether the pace is measured afresh ([`restart`](Self::restart)): the next look
    /// comes after [`WATCH_AFRESH`].
    afresh: bool,
}

impl Watch {
    fn new(segment: StreamReader) -> Self {
        let now = Instant::now();
        Self {
            offset: segment
                .live_write_offset()
                .unwrap_or(format::STREAM_HEADER_LEN),
            segment,
            at: now,
            moved: now,
            pace: 0.0,
            afresh: false,
        }
    }

    /// Starts measuring the pace again from now, with a look [`WATCH_AFRESH`] later: the
    /// writer goes on after a flush, perhaps after a pause, which says nothing of its pace
    /// (and a roll may be near).
    fn restart(&mut self) {
        let now = Instant::now();
        self.offset = self.segment.live_write_offset().unwrap_or(self.offset);
        self.at = now;
        self.moved = now;
        self.pace = 0.0;
        self.afresh = true;
    }

    /// How long to sleep before the next look, the thread awake for the roll if it is
    /// [`WATCH_EVERY`] or less; `None`: sleep until woken.
    fn next_look(&mut self, now: Instant) -> Option<Duration> {
        let offset = self.segment.live_write_offset().ok()?;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        if offset != self.offset {
            if elapsed > 0.0 {
                self.pace = offset.saturating_sub(self.offset) as f64 / elapsed;
            }
            self.moved = now;
        }
        self.offset = offset;
        self.at = now;
        if now.saturating_duration_since(self.moved) > WATCH_IDLE {
            return None;
        }
        if self.pace <= 0.0 {
            return Some(if std::mem::take(&mut self.afresh) {
                WATCH_AFRESH
            } else {
                WATCH_IDLE / 2
            });
        }
        self.afresh = false;
        let left = self.segment.events_end().saturating_sub(offset) as f64 / self.pace;
        let left = Duration::try_from_secs_f64(left).unwrap_or(Duration::MAX);
        Some(if left <= WATCH_FROM {
            WATCH_EVERY
        } else {
            (left / 4).min(WATCH_AT_MOST)
        })
    }
}

/// Whether the preparing thread is creating a segment or is about to (one is wanted that
/// is not prepared yet), while the writer runs: the sealing thread then starts no flush.
fn creation_pending(state: &State) -> bool {
    let wanted = state
        .want
        .is_some_and(|seq| state.prepared.as_ref().is_none_or(|(s, _)| *s != seq));
    !state.stop && (state.creating || wanted)
}

/// Whether the sealing thread flushes the oldest retired segment now.
fn seal_due(state: &State, options: &LogOptions) -> bool {
    let Some(oldest) = state.queue.front() else {
        return false;
    };
    if creation_pending(state) {
        return false;
    }
    options.write_back == WriteBack::Eager
        || state.urgent
        || state.stop
        || state.queue.len() > MAX_UNSEALED
        || oldest.retired_at.elapsed() >= LAZY_SEAL_AFTER
}

/// Whether the sealing thread settles the oldest segment an earlier writer left
/// ([`settle_foreign`]) now: at once under eager write-back; under lazy write-back when
/// one of this writer's own retired segments would come due ([`seal_due`]): a flush
/// waits, the writer stops without handing the log on, more than [`MAX_UNSEALED`] wait
/// (its own and those left), or the segment was last written [`LAZY_SEAL_AFTER`] ago
/// (the file's modification time: a writer that had the log for less than that does
/// not restart the count).
fn foreign_due(state: &State, options: &LogOptions) -> bool {
    let Some((_, written)) = state.foreign.front() else {
        return false;
    };
    options.write_back == WriteBack::Eager
        || state.urgent
        || (state.stop && !state.handing_on)
        || state.foreign.len() + state.queue.len() > MAX_UNSEALED
        || foreign_wait(*written).is_zero()
}

/// How long until a segment an earlier writer left, last written at `written`, comes
/// due under lazy write-back; zero if its time is unknown.
fn foreign_wait(written: Option<SystemTime>) -> Duration {
    written
        .and_then(|written| written.elapsed().ok())
        .map_or(Duration::ZERO, |age| LAZY_SEAL_AFTER.saturating_sub(age))
}

/// Bytes of a retired segment the sealing thread writes back in one step. Between two
/// steps it looks at the log: after a roll it applies retention at once (so that the
/// preparing thread gets its spare to recycle without waiting for a whole segment's
/// write-back, and a segment retention takes is written back no further), and while the
/// next segment is wanted or being created it pauses (the creation's syncs would queue
/// behind the write-back).
const SEAL_STEP: u64 = 4 << 20;

/// The sealing thread's loop: after each roll applies retention (dropping the retired
/// segments it deleted, unflushed or with their write-back cut short), and writes back,
/// flushes and indexes retired segments in order when due ([`seal_due`]), in steps of
/// [`SEAL_STEP`]: all of them after a stop, but for a stop that hands a log under lazy
/// write-back on to another process's writer, which leaves them all unsealed.
fn run_sealer(shared: &Shared, dir: &Path, options: &LogOptions) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = lock();
    // The retired segment whose seal is under way (`state.busy`), out of the queue, and
    // how far its write-back has come.
    let mut sealing: Option<(Retiring, u64)> = None;
    loop {
        if state.stop && state.handing_on && options.write_back == WriteBack::Lazy {
            // Handing the log to another process's writer: the retired segments (and
            // those an earlier writer left) are left unsealed, each lock released as
            // its writer is dropped, for that writer to seal as its own come due. A
            // write-back under way is cut short.
            let queue = std::mem::take(&mut state.queue);
            state.busy = false;
            drop(state);
            drop(sealing);
            drop(queue);
            shared.changed.notify_all();
            return;
        }
        // Not while a seal is under way (`busy` is its flag): the segments an earlier
        // writer left come at the start, before this writer retires any.
        if sealing.is_none()
            && foreign_due(&state, options)
            && let Some((entry, _)) = state.foreign.front().cloned()
        {
            state.busy = true;
            drop(state);
            let result = settle_foreign(dir, &entry);
            state = lock();
            state.busy = false;
            match result {
                Ok(false) => {
                    // Its writer still seals it (tens of milliseconds): a retention run
                    // due goes first (below), so that this writer's rolls get spares
                    // meanwhile rather than new segments; otherwise this thread looks
                    // again in a millisecond, or at the next roll.
                    if !(state.rename.is_none() && state.rolls != state.retained_rolls) {
                        state = shared
                            .changed
                            .wait_timeout(state, FOREIGN_LOOK)
                            .map_or_else(|e| e.into_inner().0, |(state, _)| state);
                        continue;
                    }
                }
                settled => {
                    state.foreign.pop_front();
                    if let Err(e) = settled {
                        state.fail(e);
                    }
                    shared.changed.notify_all();
                    continue;
                }
            }
        }
        // While the newest segment is not in place yet, the segment before it is neither
        // deleted nor sealed (the preparing thread wakes this one after the rename); a
        // seal under way is of an older segment, and goes on.
        let in_place = state.rename.is_none();
        if in_place && state.rolls != state.retained_rolls {
            let rolls = state.rolls;
            // What retention needs to know of the segments not sealed yet, which have
            // no index to read it from.
            let known: Vec<retention::Known> = sealing
                .iter()
                .map(|(job, _)| job)
                .chain(state.queue.iter())
                .map(|job| retention::Known {
                    seq: job.seq,
                    events: job.segment.event_count(),
                    last_timestamp: job.last_timestamp,
                })
                .collect();
            state.retaining = true;
            // Retention keeps a retired segment for recycling while the preparing
            // thread has none.
            let want_spare = state.spares.len() < MAX_SPARES && !state.stop;
            let mut spare = None;
            let mut held = Vec::new();
            drop(state);
            let result = {
                let _turn = shared.retention.lock().unwrap_or_else(|e| e.into_inner());
                let slot = want_spare.then_some(&mut spare);
                retention::apply(dir, options, now_nanos(), &known, slot, &mut held)
            };
            state = lock();
            // A failure does not stop the writer: it is retried after the next roll,
            // and kept for `take_retention_error` until then.
            let mut deleted = Vec::new();
            match result {
                Ok(retired) => {
                    let gone: Vec<u64> = retired.iter().map(|r| r.segment).collect();
                    let (dropped, kept): (VecDeque<Retiring>, VecDeque<Retiring>) =
                        std::mem::take(&mut state.queue)
                            .into_iter()
                            .partition(|job| gone.contains(&job.seq));
                    // Room again for the rolls to come: a roll allocates nothing.
                    let room = QUEUE_CAPACITY.saturating_sub(kept.len());
                    state.queue = kept;
                    state.queue.reserve(room);
                    deleted.extend(dropped);
                    // The segment being sealed, if retention took it: the rest of it is
                    // not written back, and it is neither sealed nor indexed.
                    if let Some((job, _)) = sealing.take_if(|(job, _)| gone.contains(&job.seq)) {
                        deleted.push(job);
                        state.busy = false;
                    }
                    state.retired.extend(retired);
                    state.retention_error = None;
                }
                Err(e) => state.retention_error = Some(e),
            }
            drop(state);
            // The spare's last life, retired before its seal: its mapping is kept with
            // it, for the next life to write through.
            let warm = spare.as_ref().and_then(|spare| {
                deleted
                    .iter()
                    .find(|job| spare.file_name() == Some(segment::spare_name(job.seq).as_ref()))
                    .and_then(|job| job.segment.warm_mapping())
            });
            // Unmapped outside the lock: the last reference to a deleted file that is
            // being written back waits for that write-back.
            drop(deleted);
            state = lock();
            state.retained_rolls = rolls;
            state.retaining = false;
            // Only now, with the retired writers dropped (a dropped writer stores a
            // trailer record), may the preparing thread reset the spare.
            if let Some(path) = spare {
                keep_spare(&mut state, Spare { path, warm });
            }
            shared.changed.notify_all();
            // The preparing thread may be waiting for this run (for its spare).
            shared.to_preparer.notify_all();
            // The deleted segments' pages are freed here, once nothing waits for the
            // run (a writer handing the turn over does): milliseconds for each segment
            // in memory.
            drop(state);
            drop(held);
            state = lock();
            continue;
        }
        if let Some((mut job, written)) = sealing.take() {
            if creation_pending(&state) && !state.urgent {
                // Paused while the next segment is prepared, unless the writer waits
                // for this seal.
                sealing = Some((job, written));
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if written < job.segment.write_offset() {
                drop(state);
                #[cfg(test)]
                tests::wait_while_held(dir);
                if written == 0 {
                    // Pages still mapped (lazy write-back keeps the last second's) would
                    // each cost the appending CPU a TLB shootdown as they are written
                    // back: unmapped first, contents kept.
                    let pages = job.segment.prefaulter();
                    let _ = pages.release(0, pages.len());
                }
                let result = job.segment.write_back(written, SEAL_STEP);
                state = lock();
                match result {
                    Ok(()) => sealing = Some((job, written.saturating_add(SEAL_STEP))),
                    Err(e) => {
                        state.fail(e);
                        state.busy = false;
                        drop(state);
                        drop(job);
                        state = lock();
                        shared.changed.notify_all();
                    }
                }
                continue;
            }
            // Written back: the flush that remains makes it durable, then the seal.
            // The seal syncs the directory after every rename made so far.
            state.unsynced_rename = false;
            drop(state);
            let result = seal(dir, job);
            state = lock();
            state.busy = false;
            if let Err(e) = result {
                state.fail(e);
            }
            shared.changed.notify_all();
            continue;
        }
        if in_place
            && seal_due(&state, options)
            && let Some(mut job) = state.queue.pop_front()
        {
            state.busy = true;
            // Created under its preparation name, renamed into place since: the seal's
            // errors name the segment as it is named.
            job.segment
                .renamed(dir.join(segment_name(job.seq, job.base)));
            sealing = Some((job, 0));
            continue;
        }
        if !in_place {
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if state.stop && state.queue.is_empty() {
            return;
        }
        // A lazy seal comes due by age: wake for it (or for the oldest segment an
        // earlier writer left unsealed).
        let timeout = state
            .queue
            .front()
            .map(|oldest| LAZY_SEAL_AFTER.saturating_sub(oldest.retired_at.elapsed()))
            .into_iter()
            .chain(
                state
                    .foreign
                    .front()
                    .map(|(_, written)| foreign_wait(*written)),
            )
            .min();
        state = match timeout {
            Some(timeout) if options.write_back == WriteBack::Lazy => {
                shared
                    .changed
                    .wait_timeout(state, timeout.max(Duration::from_millis(1)))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            _ => shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Settles the segment `entry`, which a writer that had the log before may still be
/// sealing (another turn's sealing thread, [`LogWriter::close_clean`], holds the
/// segment's lock until it is sealed): `false` while its lock is held, without waiting;
/// once it is free, seals it if that writer did not (it died, or its flush failed),
/// syncs the directory, and returns `true`. A segment gone (deleted by retention) is
/// done with.
fn settle_foreign(dir: &Path, entry: &SegmentEntry) -> Result<bool> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    match std::fs::File::open(&entry.path) {
        Ok(file) => match file.try_lock() {
            Ok(()) => drop(file),
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &entry.path, e)),
        },
        Err(e) if gone(&e) => return Ok(true),
        Err(e) => return Err(Error::io("open", &entry.path, e)),
    }
    match StreamReader::open(&entry.path) {
        Ok(reader) if reader.is_sealed() => return sync_dir(dir).map(|()| true),
        Ok(_) => {}
        Err(Error::Io { source, .. }) if gone(&source) => return Ok(true),
        Err(e) => return Err(e),
    }
    match seal_unsealed(dir, entry) {
        // Another writer's sealing thread got to it first.
        Err(Error::Locked { .. }) => Ok(false),
        sealed => sealed.map(|_| true),
    }
}

/// Flushes a retired segment, syncs the directory (which makes the roll's rename
/// durable), and writes its index if it can.
fn seal(dir: &Path, job: Retiring) -> Result<()> {
    let Retiring {
        mut segment,
        base,
        seq,
        index,
        last_timestamp,
        ..
    } = job;
    let path = dir.join(segment_name(seq, base));
    // Flushes, then marks the segment sealed: a follower that sees the flag knows no
    // more events will come and moves on at once.
    segment.seal()?;
    failpoint!("seal:after_flush");
    let index = match index {
        Some(index) => index,
        None => SegmentIndex::build(&StreamReader::open(&path)?)?,
    };
    sync_dir(dir)?;
    // The index is rebuildable: failing to write it (a full disk) costs time-seeks into
    // this segment a scan, and loses nothing, so it does not poison the writer as a
    // failed flush does.
    if index.write(dir, seq, last_timestamp).is_ok() {
        let _ = sync_dir(dir);
    }
    // The segment's lock is held until here: a writer that waits for it (the next
    // turn's, after `LogWriter::close_clean`) finds it sealed and indexed, and writes
    // no index beside this one.
    drop(segment);
    Ok(())
}

/// How long a writer handing the turn to a waiting process waits for the retention run
/// due after its last roll (a millisecond or two, once the sealing thread is between two
/// steps of a seal), whose retired segment then passes to that process as a spare.
const HAND_ON_RETENTION: Duration = Duration::from_millis(20);

/// How often the sealing thread looks whether a segment another turn's writer still
/// seals is done, when nothing else is due.
const FOREIGN_LOOK: Duration = Duration::from_millis(1);

/// Bytes the preparing thread prefaults at a time, checking between chunks whether the
/// writer is already waiting for the segment.
const PREPARE_CHUNK: u64 = 1 << 20;

/// The segment a previous writer prepared at `path` and never rolled into, if it is
/// one: a stream of the log's segment size, empty, unsealed, untouched since its
/// creation (which was atomic: the file appears whole under its name or not at all).
/// Anything else there is not used, and is replaced.
///
/// # Errors
/// [`Error::Locked`] if a writer has the file open: it is neither adopted nor replaced.
fn adopt(path: &Path, options: &LogOptions) -> Result<Option<StreamWriter>> {
    if !path.exists() {
        return Ok(None);
    }
    let writer = match StreamWriter::open_with(path, WriterOptions::default()) {
        Ok(writer) => writer,
        Err(e @ Error::Locked { .. }) => return Err(e),
        Err(_) => return Ok(None),
    };
    let pristine = writer.capacity() == options.segment_size
        && writer.event_count() == 0
        && writer.write_offset() == format::STREAM_HEADER_LEN
        && !writer.is_sealed()
        && writer.generation() == 0;
    Ok(pristine.then_some(writer))
}

/// Creates segment `seq` under its preparation name (or adopts it, see [`adopt`]), calls
/// `created` (also when that failed), and prefaults it, chunk by chunk, until it is whole
/// or `wanted_now` says the writer is waiting for it: populating a segment costs about as
/// much as filling it, so a fast writer gets it early and the segment's own background
/// prefaulting (started at creation) keeps ahead of its appends from there, while a paced
/// writer gets it whole.
fn prepare(
    dir: &Path,
    options: &LogOptions,
    seq: u64,
    spare: &mut Option<Spare>,
    created: &dyn Fn(),
    wanted_now: &dyn Fn() -> bool,
) -> Result<StreamWriter> {
    let path = dir.join(next_name(seq));
    // The whole segment is its dirty limit from the start (or from adoption): a raise
    // while appending would sync the trailer behind the sealing thread's flush.
    let reserved = segment_options(options).reserve_whole().seeded();
    let writer = match adopt(&path, options) {
        Ok(Some(mut writer)) => writer.reserve_whole().map(|()| writer),
        // A file some writer has open is never removed from under it.
        Err(e) => Err(e),
        Ok(None) => {
            let _ = std::fs::remove_file(&path);
            // A retired segment, its pages in the page cache, reset for a new life
            // (`docs/FORMAT.md`, "Recycling retired segments"); if it cannot be (a
            // reader opened it, it is damaged), it is deleted and a segment created.
            let recycled = spare.take().and_then(|Spare { path: spare, warm }| {
                StreamWriter::recycle(&spare, &path, options.segment_size, reserved.clone(), warm)
                    .inspect_err(|_| {
                        // Either name, whichever the failure left it under.
                        let _ = std::fs::remove_file(&spare);
                        let _ = std::fs::remove_file(&path);
                    })
                    .ok()
            });
            match recycled {
                Some(writer) => Ok(writer),
                None => StreamWriter::create_with(&path, options.segment_size, reserved),
            }
        }
    };
    created();
    let writer = writer?;
    let mut at = writer.write_offset();
    // The trailer's page first: the roll's first append touches it, wherever the
    // chunks below stop.
    let pages = writer.prefaulter();
    let _ = pages.populate(
        pages.len().saturating_sub(format::TRAILER_LEN),
        format::TRAILER_LEN,
    );
    while at < writer.capacity() && !wanted_now() {
        writer.prefault_range(at, PREPARE_CHUNK)?;
        at += PREPARE_CHUNK;
    }
    Ok(writer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Logs (by directory) whose sealing thread waits before each write-back step while
    /// they are listed, and whether it has come to such a step: how a test holds a seal
    /// under way.
    static HELD: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());
    static HELD_CHANGED: Condvar = Condvar::new();

    /// The sealing thread's side: waits while `dir` is held.
    pub(super) fn wait_while_held(dir: &Path) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = held.iter_mut().find(|(d, _)| d == dir) {
            entry.1 = true;
            HELD_CHANGED.notify_all();
            held = HELD_CHANGED.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn hold(dir: &Path) {
        HELD.lock().unwrap().push((dir.to_owned(), false));
    }

    fn wait_until_held(dir: &Path) {
        let mut held = HELD.lock().unwrap();
        while !held.iter().any(|(d, arrived)| d == dir && *arrived) {
            held = HELD_CHANGED.wait(held).unwrap();
        }
    }

    fn release(dir: &Path) {
        HELD.lock().unwrap().retain(|(d, _)| d != dir);
        HELD_CHANGED.notify_all();
    }

    /// The segment file `seq` under its final name, if it has one.
    fn named(dir: &Path, seq: u64) -> Option<PathBuf> {
        let prefix = format!("{seq:08}-");
        std::fs::read_dir(dir).unwrap().flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(&prefix) && name.ends_with(".evs")).then(|| e.path())
        })
    }

    /// Eager write-back: a retired segment that retention takes while its write-back is
    /// under way is written back no further: retention runs between two steps of the
    /// write-back instead of after the whole of it, and the segment is dropped neither
    /// flushed nor sealed; the retired segment retention keeps is sealed.
    #[test]
    fn retention_cuts_short_the_seal_of_a_segment_it_takes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        hold(&path);
        let options = LogOptions::default()
            .segment_size(8192)
            .retain_segments(Some(2))
            .write_back(WriteBack::Eager);
        let mut log = LogWriter::create(&path, options).unwrap();
        // Held open from before its first event: retention then deletes it, and its
        // trailer stays readable.
        let first = StreamReader::open(named(&path, 0).unwrap()).unwrap();
        let payload = [7u8; 100];
        let mut i = 0;
        let mut append_until = |log: &mut LogWriter, seq: u64| {
            while log.segment() < seq {
                log.append(i, &payload).unwrap();
                i += 1;
            }
        };
        append_until(&mut log, 1);
        // The seal of segment 0 is under way, held before its first write-back step.
        wait_until_held(&path);
        append_until(&mut log, 3);
        while named(&path, 3).is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        release(&path);
        let retired: Vec<u64> = log.take_retired().iter().map(|r| r.segment).collect();
        assert_eq!(retired, [0, 1]);
        let mut first = first;
        first.refresh().unwrap();
        assert!(first.write_offset() > 24);
        assert!(
            !first.is_sealed(),
            "segment 0 was sealed after retention took it"
        );
        assert_eq!(first.durable_offset(), 24, "segment 0 was flushed");
        // The one retention keeps is sealed and indexed.
        let kept = StreamReader::open(named(&path, 2).unwrap()).unwrap();
        assert!(kept.is_sealed());
        assert_eq!(kept.durable_offset(), kept.write_offset());
        assert!(path.join(segment::index_name(2)).exists());
    }
}
