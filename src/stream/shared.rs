//! [`SharedStreamWriter`]: one stream's writer shared by the threads of a process, behind
//! a lock, with the group commit the log's shared writer uses ([`crate::commit`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::commit::GroupCommit;
use crate::error::Result;
use crate::stream::writer::{Recovery, StreamWriter};

/// A stream's writer for many threads: [`Clone`], [`Send`] and [`Sync`], whose appends
/// and flush take `&self`.
///
/// Every clone appends to the same [`StreamWriter`], one call at a time:
/// - **Each append is all or nothing**, and the stream's order is the order in which the
///   appends took the lock, so each thread's events are in the stream in its own order.
/// - **[`append_now`](Self::append_now) reads the clock once it holds the lock**, so its
///   timestamps never decrease in the stream's order, whichever thread appended.
/// - **[`append_batch`](Self::append_batch) is contiguous**: no other thread's event
///   comes between its events, and it is checked whole before a byte is written.
/// - **[`flush`](Self::flush) is a group commit**: it covers every append that returned,
///   on any thread, before the flush began, and the threads that call `flush` while one
///   runs share the next one: one sync for all of them.
///
/// The writer keeps the stream to itself, as a [`StreamWriter`] does: another writer,
/// in this process or another, gets [`Error::Locked`](crate::Error::Locked) until the
/// last handle is dropped. Readers are unaffected.
///
/// # Durability
/// As [`StreamWriter`]'s: an append that returned survives a crash of the process; one
/// covered by a successful [`flush`](Self::flush) survives power loss. Dropping the last
/// handle does not flush.
///
/// # Examples
/// ```
/// # fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("events.evs");
/// let stream = evstream::SharedStreamWriter::create(&path, 1 << 20)?;
/// std::thread::scope(|s| {
///     for worker in 0..4u8 {
///         let stream = stream.clone();
///         s.spawn(move || -> evstream::Result<()> {
///             for _ in 0..100 {
///                 stream.append_now(&[worker])?;
///             }
///             stream.flush() // all this worker's events now survive power loss
///         });
///     }
/// });
/// let reader = evstream::StreamReader::open(&path)?;
/// assert_eq!(reader.iter().count(), 400);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SharedStreamWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<StreamWriter>,
    commit: GroupCommit,
    path: PathBuf,
    capacity: u64,
    recovery: Recovery,
}

impl From<StreamWriter> for SharedStreamWriter {
    /// Shares `writer` between this process's threads.
    fn from(writer: StreamWriter) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: writer.path().to_owned(),
                capacity: writer.capacity(),
                recovery: writer.recovery().clone(),
                writer: Mutex::new(writer),
                commit: GroupCommit::default(),
            }),
        }
    }
}

impl SharedStreamWriter {
    /// Creates a stream of `capacity` bytes at `path`, as [`StreamWriter::create`] does,
    /// and shares its writer. (For other options, make the writer with
    /// [`StreamWriter::create_with`] and share it with [`From`].)
    ///
    /// # Errors
    /// As [`StreamWriter::create`].
    pub fn create(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        StreamWriter::create(path, capacity).map(Self::from)
    }

    /// Opens the stream at `path` to append to it, as [`StreamWriter::open`] does
    /// (validating and repairing what a writer that died left), and shares its writer.
    ///
    /// # Errors
    /// As [`StreamWriter::open`]: [`Error::Locked`](crate::Error::Locked) if another
    /// writer has the stream, and so on.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        StreamWriter::open(path).map(Self::from)
    }

    /// The writer, for one call: a thread that panicked while it held it (in
    /// [`append_with`](Self::append_with)'s fill) left it whole, as an append cut short
    /// publishes nothing, so the lock's poison is passed over.
    #[inline]
    fn lock(&self) -> MutexGuard<'_, StreamWriter> {
        self.inner.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one event; returns the offset where it landed. As
    /// [`StreamWriter::append`].
    ///
    /// # Errors
    /// As [`StreamWriter::append`]; nothing is written on error.
    /// [`Error::OutOfOrder`](crate::Error::OutOfOrder) if `timestamp` is lower than the
    /// last event's, which may be another thread's: a caller that does not order its
    /// timestamps with the other threads' uses [`append_now`](Self::append_now).
    #[inline]
    pub fn append(&self, timestamp: i64, payload: &[u8]) -> Result<u64> {
        self.lock().append(timestamp, payload)
    }

    /// Appends an event of `len` bytes whose payload `fill` writes in place, as
    /// [`StreamWriter::append_with`] does; returns its offset. `fill` runs while the
    /// lock is held: the other threads' appends wait for it. If it panics, nothing is
    /// published and the other handles go on appending.
    ///
    /// # Errors
    /// As [`append`](Self::append), checked before `fill` runs.
    pub fn append_with<F>(&self, timestamp: i64, len: usize, fill: F) -> Result<u64>
    where
        F: FnOnce(&mut [u8]),
    {
        self.lock().append_with(timestamp, len, fill)
    }

    /// Appends an event stamped `time`, as [`append`](Self::append) does with its
    /// timestamp in Unix nanoseconds ([`timestamp_of`](crate::timestamp_of)).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`](crate::Error::TimeOutOfRange) for a time no timestamp
    /// holds (before 1677 or after 2262); otherwise as [`append`](Self::append). Nothing
    /// is written on error.
    pub fn append_at(&self, time: SystemTime, payload: &[u8]) -> Result<u64> {
        self.append(crate::timestamp_of(time)?, payload)
    }

    /// Appends `payload` stamped with the wall clock, read once this append holds the
    /// lock, and never earlier than the event before it (whichever thread appended
    /// that); returns its offset and the timestamp used.
    ///
    /// # Errors
    /// As [`append`](Self::append) (never
    /// [`Error::OutOfOrder`](crate::Error::OutOfOrder)).
    #[inline]
    pub fn append_now(&self, payload: &[u8]) -> Result<(u64, i64)> {
        self.lock().append_now(payload)
    }

    /// Appends `events` with no other thread's event between them and publishes them
    /// together, as [`StreamWriter::append_batch`] does; returns the offset of the first
    /// (the write offset, for an empty batch).
    ///
    /// # Errors
    /// As [`StreamWriter::append_batch`]: the batch is checked whole (timestamp order,
    /// from the stream's last event whichever thread appended it, and the space for all
    /// of it) and nothing is written on error.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let stream = evstream::SharedStreamWriter::create(&path, 1 << 20)?;
    /// stream.append_batch(&[(1, b"a".as_slice()), (2, b"bc"), (2, b"")])?;
    /// // Out of order within the batch: refused, nothing written.
    /// assert!(stream.append_batch(&[(3, b"x".as_slice()), (1, b"y")]).is_err());
    /// assert_eq!(stream.event_count(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_batch(&self, events: &[(i64, &[u8])]) -> Result<u64> {
        self.lock().append_batch(events)
    }

    /// Makes every event appended so far, by any thread, survive power loss: a group
    /// commit.
    ///
    /// When this returns [`Ok`], every append that returned before this call began (on
    /// any thread), and every event before it in the stream, is covered, as by
    /// [`StreamWriter::flush`]. If no flush is under way, this thread flushes; if one is,
    /// it was started before this call and may not cover it, so this thread waits for it
    /// and then for the next, which the first of the waiting threads starts and all of
    /// them share. Appends from other threads wait while the flush runs.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if a write-back failed, to the thread that
    /// flushed; every thread that shared that flush, and every later append and flush,
    /// gets [`Error::Poisoned`](crate::Error::Poisoned): reopen the stream to go on.
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        inner.commit.flush(&inner.path, || self.lock().flush())
    }

    /// Flushes, then marks the stream sealed, durably, as [`StreamWriter::seal`] does:
    /// every later append, on any thread, returns
    /// [`Error::Sealed`](crate::Error::Sealed).
    ///
    /// # Errors
    /// As [`StreamWriter::seal`].
    pub fn seal(&self) -> Result<()> {
        self.lock().seal()
    }

    /// Whether the stream is sealed.
    pub fn is_sealed(&self) -> bool {
        self.lock().is_sealed()
    }

    /// The stream file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The file's length: the most bytes the stream can hold, header included.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Where the next event would go, as of now: another thread's append may come
    /// first.
    pub fn write_offset(&self) -> u64 {
        self.lock().write_offset()
    }

    /// Bytes left for events, as of now (each event takes 16 bytes plus its payload).
    pub fn available(&self) -> u64 {
        self.lock().available()
    }

    /// Number of events in the stream, as of now.
    pub fn event_count(&self) -> u64 {
        self.lock().event_count()
    }

    /// The timestamp of the last event, if there is one, as of now.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.lock().last_timestamp()
    }

    /// The durable watermark: events before this offset are on stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.lock().durable_offset()
    }

    /// The stream's recovery generation ([`StreamWriter::generation`]).
    pub fn generation(&self) -> u64 {
        self.lock().generation()
    }

    /// The stream's start timestamp (Unix nanoseconds when it was created).
    pub fn start_timestamp(&self) -> i64 {
        self.lock().start_timestamp()
    }

    /// What opening the stream repaired ([`StreamWriter::recovery`]) when the writer
    /// was opened.
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// The [`StreamWriter`] back, if this is the last handle; this handle again
    /// otherwise.
    ///
    /// # Errors
    /// `self`, unchanged, while other clones exist.
    pub fn into_writer(self) -> std::result::Result<StreamWriter, Self> {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Ok(inner.writer.into_inner().unwrap_or_else(|e| e.into_inner())),
            Err(inner) => Err(Self { inner }),
        }
    }
}
