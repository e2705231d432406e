//! [`SharedStreamWriter`]: one stream file's writer shared by the threads of a process
//! behind a lock, with the group commit of [`crate::commit`], and by processes that take
//! turns holding it ([`crate::turn`]), as the log's shared writer is.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::log::writer::CleanLog;
use crate::stream::open::{open_regular, read_identity};
use crate::stream::writer::{Recovery, StreamWriter, WriterOptions};
use crate::turn::{Shared, Turned};

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
/// Threads appending at once take the lock in slices of about 2 ms, as those of a
/// [`SharedLogWriter`](crate::SharedLogWriter) do, so that together they keep near one
/// thread's rate.
///
/// **Processes.** Any number of processes may each [`open`](Self::open) the same
/// stream, with the same promises between all their appends: they take turns holding
/// its one [`StreamWriter`], as the processes appending to a log do
/// ([`SharedLogWriter`](crate::SharedLogWriter)), through two files made beside the
/// stream, `NAME.turn` and `NAME.want`. A writer that keeps the stream to itself (a
/// [`StreamWriter`], or a `SharedStreamWriter` made [`from`](From::from) one) excludes
/// them, and they it, with [`Error::Locked`]. Readers are unaffected.
///
/// # Durability
/// As [`StreamWriter`]'s: an append that returned survives a crash of the process; one
/// covered by a successful [`flush`](Self::flush) survives power loss, whichever process
/// appended it. Handing the turn over makes nothing durable, and neither does dropping
/// the last handle.
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
    shared: Shared<StreamWriter>,
}

/// The stream's counters as this process last saw them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    write_offset: u64,
    available: u64,
    event_count: u64,
    last_timestamp: Option<i64>,
    durable_offset: u64,
    generation: u64,
    sealed: bool,
}

/// What does not change while the handle lives.
#[derive(Debug)]
pub(crate) struct Facts {
    capacity: u64,
    start_timestamp: i64,
    recovery: Recovery,
}

/// `NAME` with `suffix` added: the turn's files beside the stream `NAME`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// The stream file `path` names: the file a symbolic link points to (through any chain
/// of links), so that writers naming the stream through a link and writers naming it
/// directly take turns on the same files; `path` itself if it is no link, or a link
/// that leads nowhere.
fn resolved(path: &Path) -> Cow<'_, Path> {
    let link = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
    match link.then(|| std::fs::canonicalize(path)) {
        Some(Ok(real)) => Cow::Owned(real),
        _ => Cow::Borrowed(path),
    }
}

impl Turned for StreamWriter {
    type Seen = Seen;
    type Left = ();
    type Facts = Facts;
    type Options = WriterOptions;
    const MAGIC: [u8; 8] = *b"evsturs1";
    const KEEPER: &'static str = "evstream-stream-turn";

    /// Beside the stream file itself: a symbolic link to it is resolved first.
    fn turn_files(path: &Path) -> (PathBuf, PathBuf) {
        let file = resolved(path);
        (beside(&file, ".turn"), beside(&file, ".want"))
    }

    /// A stream this process may write: opened for writing (not changed), so that an
    /// open refused for want of permission leaves no turn file behind.
    fn check(path: &Path) -> Result<()> {
        let (file, len) = open_regular(path, true)?;
        read_identity(&file, path, len).map(drop)
    }

    fn not_regular(_: &Path, path: PathBuf) -> Error {
        let why = std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a file of the stream's writers' turn is not a regular file",
        );
        Error::io("open", &path, why)
    }

    fn not_a_record(_: &Path, path: PathBuf) -> Error {
        let why = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a file of the stream's writers' turn holds what no evstream writer wrote \
             (move it away if it is not needed)",
        );
        Error::io("open", &path, why)
    }

    fn at(&self) -> &Path {
        self.path()
    }

    fn seen(&self) -> Seen {
        Seen {
            write_offset: self.write_offset(),
            available: self.available(),
            event_count: self.event_count(),
            last_timestamp: self.last_timestamp(),
            durable_offset: self.durable_offset(),
            generation: self.generation(),
            sealed: self.is_sealed(),
        }
    }

    fn facts(&self) -> Facts {
        Facts {
            capacity: self.capacity(),
            start_timestamp: self.start_timestamp(),
            recovery: self.recovery().clone(),
        }
    }

    fn open(path: &Path, options: &WriterOptions) -> Result<Self> {
        StreamWriter::open_with(path, options.clone())
    }

    /// A stream's record has the log's fields zero. A writer asked to check the flushed
    /// events too ([`WriterOptions::check_durable`]) opens in full: the record vouches for
    /// the events above the watermark only.
    fn open_clean(path: &Path, options: &WriterOptions, record: &CleanLog) -> Result<Option<Self>> {
        if options.check_durable
            || record.seq != 0
            || record.base != 0
            || record.last_before.is_some()
        {
            return Ok(None);
        }
        StreamWriter::open_clean(path, options.clone(), &record.segment)
    }

    fn close_clean(self, (): &mut (), _hand_on: bool, record: impl FnOnce(&CleanLog)) {
        StreamWriter::close_clean(self, |segment| {
            record(&CleanLog {
                seq: 0,
                base: 0,
                last_before: None,
                segment: *segment,
            });
        });
    }

    fn close(self, (): &mut ()) {}

    fn finish((): &mut ()) {}
}

impl From<StreamWriter> for SharedStreamWriter {
    /// Shares `writer` between this process's threads. It keeps the stream to itself:
    /// other writers, shared or not, get [`Error::Locked`] until the last handle is
    /// dropped.
    fn from(writer: StreamWriter) -> Self {
        Self {
            shared: Shared::from(writer),
        }
    }
}

impl SharedStreamWriter {
    /// Creates a stream of `capacity` bytes at `path`, as [`StreamWriter::create`] does,
    /// and opens it to append from this process, as [`open`](Self::open) does. (For
    /// other options, make the writer with [`StreamWriter::create_with`] and share it
    /// with [`From`]: it then keeps the stream to itself.)
    ///
    /// # Errors
    /// As [`StreamWriter::create`], and as [`open`](Self::open).
    pub fn create(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        let path = path.as_ref();
        drop(StreamWriter::create(path, capacity)?);
        Self::open(path)
    }

    /// Opens the stream at `path` to append to it from this process, beside any other
    /// processes that opened it so.
    ///
    /// The processes take turns, as those of a log do
    /// ([`SharedLogWriter::open`](crate::SharedLogWriter::open)): the one whose turn it
    /// is holds the stream's [`StreamWriter`] (opened as [`StreamWriter::open`] does,
    /// validating and repairing what a writer that died left, unless the last holder
    /// closed it cleanly and said so) and appends; when another process waits, it hands
    /// the turn over as soon as it is idle, and after at most 40 ms of appending. The
    /// turn's files are made beside the stream: `NAME.turn` (its `flock`, and the
    /// handover record) and `NAME.want` (`docs/FORMAT.md`, "Many writer processes"),
    /// beside the file itself when `path` is a symbolic link, so that writers naming the
    /// stream through a link take turns with those naming it directly.
    /// A process that dies, even killed in the middle of an append, loses the turn at
    /// once, and the next process repairs what it left when it opens the stream: no
    /// event another writer appended is lost. The call returns holding the turn.
    ///
    /// A relative `path` is taken from the working directory at this call: every turn
    /// opens the stream by that absolute path, whatever the working directory is by
    /// then, while [`path`](Self::path) and the errors name it as `path` does.
    ///
    /// # Errors
    /// - As [`StreamWriter::open`]: [`Error::NotAStream`] if `path` is not a stream,
    ///   and so on.
    /// - [`Error::Locked`] if a writer that keeps the stream to itself (a
    ///   [`StreamWriter`], or a `SharedStreamWriter` made from one) has it open, after
    ///   0.5 s in which the lock could have been one that a closing writer was releasing.
    /// - [`Error::Io`] if the turn files cannot be made, opened or locked (the stream's
    ///   directory must be writable), or, with nothing written to it, if `NAME.turn`
    ///   holds what no evstream writer wrote (`InvalidData`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, WriterOptions::default())
    }

    /// Opens the stream at `path` as [`open`](Self::open) does, the writer opened with
    /// `options` on each turn that does not open from the handover record (as
    /// [`StreamWriter::open_with`] does; with
    /// [`check_durable`](WriterOptions::check_durable), every such open checks the whole
    /// stream).
    ///
    /// # Errors
    /// As [`open`](Self::open) and [`StreamWriter::open_with`].
    pub fn open_with(path: impl AsRef<Path>, options: WriterOptions) -> Result<Self> {
        Shared::open(path.as_ref(), options).map(|shared| Self { shared })
    }

    /// Runs `f` on the stream's writer, taking the turn first if another process has
    /// it.
    #[inline]
    fn with<T>(&self, f: impl FnOnce(&mut StreamWriter) -> Result<T>) -> Result<T> {
        self.shared.with(f)
    }

    /// What `f` reads from the writer if this process has the turn, or what it saw
    /// when it last gave it up.
    fn seen<T>(&self, f: impl FnOnce(Seen) -> T) -> T {
        self.shared.seen(f)
    }

    /// Appends one event; returns the offset where it landed. As
    /// [`StreamWriter::append`].
    ///
    /// # Errors
    /// As [`StreamWriter::append`]; nothing is written on error. When another process has
    /// the turn, as [`open`](Self::open) for taking it.
    /// [`Error::OutOfOrder`](crate::Error::OutOfOrder) if `timestamp` is lower than the
    /// last event's, which may be another thread's: a caller that does not order its
    /// timestamps with the other threads' uses [`append_now`](Self::append_now).
    #[inline]
    pub fn append(&self, timestamp: i64, payload: &[u8]) -> Result<u64> {
        self.with(|writer| writer.append(timestamp, payload))
    }

    /// Appends an event of `len` bytes whose payload `fill` writes in place, as
    /// [`StreamWriter::append_with`] does; returns its offset. `fill` runs while the
    /// lock is held: the other threads' appends wait for it, and a call on this writer
    /// (or a clone of it) from `fill` waits for itself for good, as a `Mutex` taken
    /// twice by one thread does. If it panics, nothing is published and the other
    /// handles go on appending.
    ///
    /// # Errors
    /// As [`append`](Self::append), checked before `fill` runs.
    pub fn append_with<F>(&self, timestamp: i64, len: usize, fill: F) -> Result<u64>
    where
        F: FnOnce(&mut [u8]),
    {
        self.with(|writer| writer.append_with(timestamp, len, fill))
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
        self.with(|writer| writer.append_now(payload))
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
        self.with(|writer| writer.append_batch(events))
    }

    /// Appends `payloads` as [`append_batch`](Self::append_batch) does, every one stamped
    /// with the wall clock read once the batch holds its place in the stream's order,
    /// never earlier than the event before it; returns the offset of the first and the
    /// timestamp used.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch) (never
    /// [`Error::OutOfOrder`](crate::Error::OutOfOrder)); nothing is written on error.
    pub fn append_batch_now(&self, payloads: &[&[u8]]) -> Result<(u64, i64)> {
        self.with(|writer| {
            let timestamp = writer.next_timestamp();
            let events: Vec<(i64, &[u8])> = payloads.iter().map(|p| (timestamp, *p)).collect();
            writer
                .append_batch(&events)
                .map(|offset| (offset, timestamp))
        })
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
    /// gets [`Error::Poisoned`](crate::Error::Poisoned) until the writer is reopened (the
    /// next turn reopens it). [`Error::Locked`](crate::Error::Locked), to every thread
    /// that needed the flush, if it could not take the turn (a writer that keeps the
    /// stream to itself has it); nothing is poisoned then.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush(StreamWriter::flush)
    }

    /// Flushes, then marks the stream sealed, durably, as [`StreamWriter::seal`] does:
    /// every later append, on any thread, returns
    /// [`Error::Sealed`](crate::Error::Sealed).
    ///
    /// # Errors
    /// As [`StreamWriter::seal`].
    pub fn seal(&self) -> Result<()> {
        self.with(StreamWriter::seal)
    }

    /// Whether the stream is sealed, as this process last saw it.
    pub fn is_sealed(&self) -> bool {
        self.seen(|seen| seen.sealed)
    }

    /// The stream file's path.
    pub fn path(&self) -> &Path {
        self.shared.at()
    }

    /// The file's length: the most bytes the stream can hold, header included.
    pub fn capacity(&self) -> u64 {
        self.shared.facts().capacity
    }

    /// Where the next event would go, as this process last saw it: another thread's
    /// or process's append may come first.
    pub fn write_offset(&self) -> u64 {
        self.seen(|seen| seen.write_offset)
    }

    /// Bytes left for events, as this process last saw it (each event takes 16 bytes
    /// plus its payload).
    pub fn available(&self) -> u64 {
        self.seen(|seen| seen.available)
    }

    /// Number of events in the stream, as this process last saw it.
    pub fn event_count(&self) -> u64 {
        self.seen(|seen| seen.event_count)
    }

    /// The timestamp of the last event, if there is one, as this process last saw it.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.seen(|seen| seen.last_timestamp)
    }

    /// The durable watermark, as this process last saw it: events before this offset
    /// are on stable storage.
    pub fn durable_offset(&self) -> u64 {
        self.seen(|seen| seen.durable_offset)
    }

    /// The stream's recovery generation ([`StreamWriter::generation`]).
    pub fn generation(&self) -> u64 {
        self.seen(|seen| seen.generation)
    }

    /// The stream's start timestamp (Unix nanoseconds when it was created).
    pub fn start_timestamp(&self) -> i64 {
        self.shared.facts().start_timestamp
    }

    /// What opening the stream repaired ([`StreamWriter::recovery`]) when the writer
    /// was opened.
    pub fn recovery(&self) -> &Recovery {
        &self.shared.facts().recovery
    }

    /// The [`StreamWriter`] back, if this is the last handle (waiting for the turn
    /// first if another process has it); this handle again otherwise. From then on the
    /// stream is this writer's alone: other processes get [`Error::Locked`].
    /// Once it took turns, the writer names the stream by the absolute path they opened
    /// ([`StreamWriter::path`]).
    ///
    /// # Errors
    /// `self`, unchanged, while other clones exist, or if the turn could not be taken.
    pub fn into_writer(self) -> std::result::Result<StreamWriter, Self> {
        self.shared.into_writer().map_err(|shared| Self { shared })
    }
}
