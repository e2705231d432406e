//! A log writer that many threads share: one [`LogWriter`] behind a lock, and a group
//! commit that lets one flush serve every thread waiting for one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::format;
use crate::log::config::LogOptions;
use crate::log::position::Position;
use crate::log::retention::Retired;
use crate::log::writer::{LogRecovery, LogWriter};

/// Appends events to a log from many threads: a handle that is [`Clone`], [`Send`] and
/// [`Sync`], whose appends and flush take `&self`.
///
/// Every clone appends through the same [`LogWriter`] (one per log, across all
/// processes, as ever), each append under a lock held only for the copy into the
/// mapping and its publication, so that:
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
/// With one thread the lock costs an uncontended atomic swap per append; a program with
/// one writing thread that wants nothing in the way keeps [`LogWriter`].
///
/// # Durability
/// As for [`LogWriter`]: an append that returned [`Ok`] survives a crash of the process;
/// one covered by a successful [`flush`](Self::flush) survives power loss. Dropping the
/// last clone drops the [`LogWriter`], which does not flush the newest segment.
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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<LogWriter>,
    commit: Mutex<Commit>,
    /// A flush finished.
    committed: Condvar,
    dir: PathBuf,
    options: LogOptions,
}

/// The group commit's state: flushes are numbered in the order they start.
#[derive(Debug, Default)]
struct Commit {
    /// Flushes started so far.
    started: u64,
    /// The flushes numbered up to this one have finished.
    finished: u64,
    /// A flush is under way (the one numbered `started`).
    running: bool,
    /// The number of the last flush that failed, if one did.
    failed: Option<u64>,
}

impl From<LogWriter> for SharedLogWriter {
    /// Shares `writer` between threads.
    fn from(writer: LogWriter) -> Self {
        let dir = writer.dir().to_owned();
        let options = writer.options().clone();
        Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                commit: Mutex::new(Commit::default()),
                committed: Condvar::new(),
                dir,
                options,
            }),
        }
    }
}

impl SharedLogWriter {
    /// Creates a log in `dir` and opens it, as [`LogWriter::create`] does.
    ///
    /// # Errors
    /// As [`LogWriter::create`].
    pub fn create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        LogWriter::create(dir, options).map(Self::from)
    }

    /// Opens the log in `dir` to append to it, as [`LogWriter::open`] does.
    ///
    /// # Errors
    /// As [`LogWriter::open`]; [`Error::Locked`] if another writer has the log open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        LogWriter::open(dir).map(Self::from)
    }

    /// Opens the log in `dir`, or creates it with `options`, as
    /// [`LogWriter::open_or_create`] does.
    ///
    /// # Errors
    /// As [`LogWriter::open_or_create`].
    pub fn open_or_create(dir: impl AsRef<Path>, options: LogOptions) -> Result<Self> {
        LogWriter::open_or_create(dir, options).map(Self::from)
    }

    /// The writer, for one append or one call: a thread that panicked while it held it
    /// left it whole (an append cut short publishes nothing), so the lock's poison is
    /// passed over.
    #[inline]
    fn writer(&self) -> MutexGuard<'_, LogWriter> {
        self.inner.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one event; returns its position. As [`LogWriter::append`].
    ///
    /// # Errors
    /// As [`LogWriter::append`]; nothing is written on error. [`Error::OutOfOrder`] if
    /// `timestamp` is lower than the last event's, which may be another thread's: a
    /// caller that does not order its timestamps with the other threads' uses
    /// [`append_now`](Self::append_now).
    #[inline]
    pub fn append(&self, timestamp: i64, payload: &[u8]) -> Result<Position> {
        self.writer().append(timestamp, payload)
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
        self.writer().append_with(timestamp, len, fill)
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
        self.writer().append_now(payload)
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
        let mut writer = self.writer();
        let largest = self.inner.options.max_event();
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
                    segment_size: self.inner.options.segment_size,
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

    /// Makes every event appended so far, by any thread, survive power loss: a group
    /// commit.
    ///
    /// When this returns [`Ok`], every append that returned before this call began (on
    /// any thread) is covered, as by [`LogWriter::flush`]. If no flush is under way, this
    /// thread flushes; if one is, it was started before this call and may not cover it,
    /// so this thread waits for it and then for the next, which the first of the waiting
    /// threads starts and all of them share. Appends from other threads wait while the
    /// flush runs (it syncs the newest segment, after waiting for the seals of older
    /// ones, as [`LogWriter::flush`] does).
    ///
    /// # Errors
    /// [`Error::Io`] if a write-back failed, to the thread that flushed; every thread
    /// that shared that flush, and every later append and flush, gets
    /// [`Error::Poisoned`]. Reopen the log to continue from what is on disk.
    pub fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        let mut commit = inner.commit.lock().unwrap_or_else(|e| e.into_inner());
        // The first flush to start after this call began covers it.
        let needed = commit.started + 1;
        loop {
            if commit.finished >= needed {
                return match commit.failed {
                    Some(failed) if failed >= needed => Err(Error::Poisoned {
                        path: inner.dir.clone(),
                    }),
                    _ => Ok(()),
                };
            }
            if !commit.running {
                commit.running = true;
                commit.started += 1;
                let number = commit.started;
                drop(commit);
                let result = self.writer().flush();
                commit = inner.commit.lock().unwrap_or_else(|e| e.into_inner());
                commit.running = false;
                commit.finished = number;
                if result.is_err() {
                    commit.failed = Some(number);
                }
                drop(commit);
                inner.committed.notify_all();
                return result;
            }
            commit = inner
                .committed
                .wait(commit)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Applies the retention limits now, as [`LogWriter::enforce_retention`] does.
    ///
    /// # Errors
    /// As [`LogWriter::enforce_retention`].
    pub fn enforce_retention(&self) -> Result<Vec<Retired>> {
        self.writer().enforce_retention()
    }

    /// Segments the background thread deleted by retention since the last call, as
    /// [`LogWriter::take_retired`].
    pub fn take_retired(&self) -> Vec<Retired> {
        self.writer().take_retired()
    }

    /// Why the background retention after the last roll failed, if it did, as
    /// [`LogWriter::take_retention_error`].
    pub fn take_retention_error(&self) -> Option<Error> {
        self.writer().take_retention_error()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's settings.
    pub fn options(&self) -> &LogOptions {
        &self.inner.options
    }

    /// Sequence number of the newest segment, the one appends go to.
    pub fn segment(&self) -> u64 {
        self.writer().segment()
    }

    /// The position the next event will get, unless a roll or another thread's append
    /// comes first.
    pub fn end(&self) -> Position {
        self.writer().end()
    }

    /// Events in the log since it was created, including retired ones.
    pub fn event_count(&self) -> u64 {
        self.writer().event_count()
    }

    /// The newest event's timestamp, if the log has one.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.writer().last_timestamp()
    }

    /// What opening the log repaired ([`LogWriter::recovery`]).
    pub fn recovery(&self) -> LogRecovery {
        self.writer().recovery().clone()
    }

    /// The [`LogWriter`] back, if this is the last handle; this handle again otherwise.
    ///
    /// # Errors
    /// `self`, unchanged, while other clones exist.
    pub fn into_writer(self) -> std::result::Result<LogWriter, Self> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.writer.into_inner().unwrap_or_else(|e| e.into_inner())),
            Err(inner) => Err(Self { inner }),
        }
    }
}
