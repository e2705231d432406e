//! The error type shared by every fallible call in the crate.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::TrailerProblem;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when creating, opening, writing or reading a stream.
///
/// Every variant that concerns a file names it, and every variant that concerns a place
/// in a file names the byte offset, so that a message is enough to find the problem.
///
/// The `Display` of an error is its own sentence; the cause (the operating system's
/// error of [`Error::Io`]) is its [`source`](std::error::Error::source), not repeated in
/// it. [`Error::message`] and [`Error::message_for`] give the whole line, cause included,
/// as the `evstream` tool and the Python module print it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on `path` failed.
    ///
    /// `op` names the operation (`"open"`, `"map"`, `"msync"`, ...); the cause is the
    /// [`source`](std::error::Error::source). Permission problems, missing files and
    /// a full disk all arrive here.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file (or directory) it was applied to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// [`StreamWriter::create`](crate::StreamWriter::create) was given a path that exists.
    ///
    /// Open it with [`StreamWriter::open`](crate::StreamWriter::open) instead, or remove it.
    #[error("{} already exists; choose another name or remove it first", path.display())]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
    },

    /// The path names something other than a regular file (a directory, a FIFO, a device...).
    #[error("{} is a {kind}, not a stream file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },

    /// Another writer, in this or another process, holds the stream's exclusive lock.
    ///
    /// One writer appends at a time: a [`StreamWriter`](crate::StreamWriter) or
    /// [`LogWriter`](crate::LogWriter) keeps the file to itself while it is open, and
    /// writers opened to share it ([`SharedStreamWriter`](crate::SharedStreamWriter),
    /// [`SharedLogWriter`](crate::SharedLogWriter)) take turns with each other but not
    /// with such a writer. Readers never wait for it.
    #[error(
        "{} is locked by another writer that keeps it to itself (writers opened to share it take turns)",
        path.display()
    )]
    Locked {
        /// The stream file.
        path: PathBuf,
    },

    /// The requested capacity is below [`format::MIN_CAPACITY`](crate::format::MIN_CAPACITY)
    /// (1536 bytes: a sector for the header and events, and the trailer), or larger than
    /// this platform can map; or a log's segment size is below 4 KiB, or 1 TiB or more.
    #[error(
        "capacity {capacity} for {} is out of range: it must be {minimum} to {maximum} bytes",
        path.display()
    )]
    BadCapacity {
        /// The file that was to be created.
        path: PathBuf,
        /// The capacity asked for.
        capacity: u64,
        /// The smallest capacity allowed.
        minimum: u64,
        /// The largest capacity allowed.
        maximum: u64,
    },

    /// The file is not a stream: it is shorter than the stream header or its header
    /// describes a layout the file cannot have. Nothing past the header was trusted.
    #[error(
        "{} is {}: {reason}",
        path.display(),
        if matches!(reason, HeaderProblem::CountMismatch { .. }) { "damaged" } else { "not a stream file" }
    )]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What the header says that cannot be.
        reason: HeaderProblem,
    },

    /// An event inside the published part of the stream is damaged.
    ///
    /// Events before `offset` are intact. Damage below the durable watermark `watermark`
    /// (data a successful flush covered) is never repaired: evstream refuses it and leaves
    /// the file byte for byte unchanged. Only events above the watermark can be a torn
    /// tail, which [`StreamWriter::open`](crate::StreamWriter::open) truncates.
    #[error(
        "{} is corrupt at byte offset {offset} ({} the durable watermark {watermark}): {reason}",
        path.display(),
        if offset < watermark { "in flushed data, below" } else { "above" }
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first damaged event.
        offset: u64,
        /// The durable watermark as the reader or writer knew it: events before it were
        /// acknowledged as flushed.
        watermark: u64,
        /// What is wrong with it.
        reason: Corruption,
    },

    /// The file is not an evstream stream of a version this crate reads.
    ///
    /// Identity (the trailer's magic number and format version) is checked before any
    /// other byte of a file is trusted, by readers and writers alike, and a file that
    /// fails it is never modified. A version 1 stream (no trailer) can be converted with
    /// [`upgrade_v1`](crate::upgrade_v1) or `evstream upgrade FILE`.
    #[error("{} is not a stream file: {reason}; it was left unchanged", path.display())]
    NotAStream {
        /// The file.
        path: PathBuf,
        /// Why it was not recognised.
        reason: Unrecognized,
    },

    /// The stream's trailer has the magic number but neither of its two slots checks
    /// out, or its fields contradict the file. The file was not modified.
    #[error(
        "{} has a damaged trailer at byte offset {offset}: {}",
        path.display(),
        TrailerWords(problem)
    )]
    DamagedTrailer {
        /// The file.
        path: PathBuf,
        /// Byte offset of the trailer.
        offset: u64,
        /// What is wrong with it.
        problem: TrailerProblem,
    },

    /// [`upgrade_v1`](crate::upgrade_v1) found no free room for the trailer: the version 1
    /// stream's events, or other non-zero bytes, occupy the last two whole 512-byte
    /// sectors of the file. The file was not modified; copy its events into a new stream
    /// instead.
    #[error(
        "{}: no room for the version 2 trailer at byte offset {trailer_at} (the write offset is {write_offset}, and everything from the trailer's offset on must be zero)",
        path.display()
    )]
    NoRoomForTrailer {
        /// The file.
        path: PathBuf,
        /// The version 1 header's write offset.
        write_offset: u64,
        /// Where the trailer would go.
        trailer_at: u64,
    },

    /// The stream is sealed: it takes no more events (see
    /// [`StreamWriter::seal`](crate::StreamWriter::seal)). Start a new stream.
    #[error("{} is sealed: it takes no more events; start a new stream", path.display())]
    Sealed {
        /// The stream file.
        path: PathBuf,
    },

    /// A writer recovered the stream (dropped a torn tail) since this reader opened or
    /// last refreshed it: its generation moved from `was` to `now`. Events this reader
    /// has not yet seen may have been replaced; reopen the reader and resume from an
    /// offset below the new write offset.
    #[error("{}: the stream was recovered (generation {was} -> {now}); reopen it", path.display())]
    Recovered {
        /// The stream file.
        path: PathBuf,
        /// The generation the reader had seen.
        was: u64,
        /// The generation the trailer holds now.
        now: u64,
    },

    /// Recovery had to rewrite bytes of the stream while readers had it open; it was
    /// refused and the file left unchanged, because readers' views must never change
    /// under them. Close the readers (or wait for them to finish) and open again.
    #[error("{}: recovery must rewrite bytes that open readers may be viewing", path.display())]
    ReadersPresent {
        /// The stream file.
        path: PathBuf,
    },

    /// An append's timestamp is lower than the previous event's.
    ///
    /// Timestamps are non-decreasing along a stream; seek by time relies on it.
    #[error(
        "timestamp {} ({got}) is earlier than the last event's {} ({previous}); \
         timestamps in a stream never decrease",
        Rfc3339(*got),
        Rfc3339(*previous)
    )]
    OutOfOrder {
        /// Timestamp of the last event in the stream.
        previous: i64,
        /// The timestamp that was refused.
        got: i64,
    },

    /// The event does not fit in the space left; nothing was written.
    ///
    /// Streams have a fixed capacity; start a new stream file.
    #[error("the stream is full: {}", Full(*needed, *available))]
    Full {
        /// Bytes the event needs, header included.
        needed: u64,
        /// Bytes left between the write offset and the end of the event area (where the
        /// trailer starts).
        available: u64,
    },

    /// A payload longer than the format's `u32` size field allows.
    #[error(
        "a payload of {} is larger than the maximum of {} an event can hold",
        Size(u64::try_from(*len).unwrap_or(u64::MAX)),
        Size(u64::from(u32::MAX))
    )]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },

    /// An earlier [`flush`](crate::StreamWriter::flush) failed, so the writer refuses
    /// further appends and flushes: the kernel may have dropped the unsynced pages and
    /// cannot be asked to write them again. Reopen the stream to recover.
    #[error("{}: an earlier flush failed; the writer accepts no more appends", path.display())]
    Poisoned {
        /// The stream file.
        path: PathBuf,
    },

    /// An offset handed to the reader is not within the published part of the stream.
    #[error("byte offset {offset} is outside the stream's events (24 to {published})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The published write offset.
        published: u64,
    },

    /// The stream's published write offset went backwards while it was being read,
    /// which only happens when a writer recovered a torn tail under a running reader.
    /// Reopen the reader.
    #[error("{}: published write offset moved back from {was} to {now}", path.display())]
    Regressed {
        /// The stream file.
        path: PathBuf,
        /// The write offset the reader had seen.
        was: u64,
        /// The write offset the header holds now.
        now: u64,
    },

    /// The directory is not a log: it lacks a valid `LOG` settings file, or its
    /// segments are inconsistent. Nothing in it was changed.
    #[error("{} is not a log: {reason}", path.display())]
    NotALog {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: &'static str,
    },

    /// The directory's `LOG` settings file names a log version this build does not read,
    /// such as one a newer evstream wrote. Nothing in the directory was changed; read it
    /// with an evstream that reads that version.
    #[error("{} is a log of version {version}; this build reads log version {supported}", path.display())]
    UnsupportedLogVersion {
        /// The directory.
        path: PathBuf,
        /// The version its `LOG` file names.
        version: u64,
        /// The version this build reads and writes.
        supported: u64,
    },

    /// An event can never fit in a segment of this log, however empty; nothing was
    /// written. Create the log with larger segments
    /// ([`LogOptions::segment_size`](crate::LogOptions::segment_size)).
    #[error(
        "an event of {needed} bytes does not fit in a segment of {segment_size} bytes (at most {largest} bytes per event)"
    )]
    EventTooLarge {
        /// Bytes the event needs, its 16-byte header included.
        needed: u64,
        /// The log's segment size.
        segment_size: u64,
        /// The largest event (header included) a segment holds.
        largest: u64,
    },

    /// The position names a segment that retention has deleted.
    ///
    /// Read from [`LogReader::start`](crate::LogReader::start) (the oldest event kept)
    /// instead.
    #[error(
        "position {position} was deleted by retention; the log now starts at segment {first_segment}"
    )]
    Retired {
        /// The position asked for.
        position: crate::Position,
        /// The oldest segment the log still has.
        first_segment: u64,
    },

    /// The position lies past the end of the log, or names no event boundary the reader
    /// can find (before a segment's first event, or past its last).
    #[error("position {position} is not in the log (no event starts there; the log ends at {end})")]
    NoSuchPosition {
        /// The position asked for.
        position: crate::Position,
        /// The log's end position.
        end: crate::Position,
    },

    /// A cursor name is not 1 to 64 characters of `A-Z a-z 0-9 _ - .` (not starting with
    /// `.`), or a cursor file is damaged. A damaged cursor file is left unchanged;
    /// commit the cursor again to replace it.
    #[error("cursor {name:?}: {reason}")]
    BadCursor {
        /// The cursor's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },

    /// A [`SystemTime`](std::time::SystemTime) that no timestamp holds: timestamps are
    /// Unix nanoseconds in an `i64`, from 1677-09-21T00:12:43.145224192Z to
    /// 2262-04-11T23:47:16.854775807Z. Nothing was written.
    #[error(
        "a time {unix_nanos} ns from the Unix epoch is outside the timestamps' range \
         (1677-09-21 to 2262-04-11 UTC)"
    )]
    TimeOutOfRange {
        /// The time, in nanoseconds since the Unix epoch (negative before it).
        unix_nanos: i128,
    },
}

/// Why a stream header was rejected; carried by [`Error::BadHeader`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The file is shorter than the 24-byte stream header.
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// The write offset lies before the first event or past the end of the file.
    WriteOffsetOutOfRange {
        /// The write offset stored in the header.
        write_offset: u64,
        /// The file's length.
        len: u64,
    },
    /// The write offset lies below the durable watermark: the header lost events a flush
    /// made durable.
    BelowWatermark {
        /// The write offset stored in the header.
        write_offset: u64,
        /// The durable watermark in the trailer.
        watermark: u64,
    },
    /// The event count does not match the events found by a scan.
    CountMismatch {
        /// The count stored in the header.
        header: u64,
        /// The number of valid events found.
        scanned: u64,
    },
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(
                    f,
                    "the file is {len} bytes, shorter than the 24-byte header"
                )
            }
            Self::WriteOffsetOutOfRange { write_offset, len } => write!(
                f,
                "the write offset {write_offset} is outside 24..={len} (the end of the event area)"
            ),
            Self::BelowWatermark {
                write_offset,
                watermark,
            } => write!(
                f,
                "the write offset {write_offset} lies below the durable watermark {watermark}"
            ),
            Self::CountMismatch { header, scanned } => write!(
                f,
                "the header counts {header} events but {scanned} were found"
            ),
        }
    }
}

/// Why a file was not recognised as a stream; carried by [`Error::NotAStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unrecognized {
    /// The file is shorter than the smallest stream ([`MIN_CAPACITY`](crate::format::MIN_CAPACITY)).
    TooShort {
        /// The file's length.
        len: u64,
    },
    /// There is no trailer magic number where the trailer belongs: the file is not a
    /// stream, or it is a version 1 stream.
    NoMagic {
        /// Where the trailer was looked for.
        trailer_at: u64,
    },
    /// The trailer names a format version this crate does not read.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
}

impl fmt::Display for Unrecognized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "the file is {len} bytes, shorter than the smallest stream ({} bytes)",
                crate::format::MIN_CAPACITY
            ),
            Self::NoMagic { trailer_at } => write!(
                f,
                "no evstream trailer at byte offset {trailer_at} (a version 1 stream can be \
                 converted with `evstream upgrade FILE`)"
            ),
            Self::UnsupportedVersion { version } => write!(
                f,
                "format version {version} is not supported (this build reads versions {} and {})",
                crate::format::FORMAT_VERSION_2,
                crate::format::FORMAT_VERSION
            ),
        }
    }
}

/// What is wrong with a damaged event; carried by [`Error::Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// Fewer than 16 bytes remain before the write offset, so no event header fits.
    TruncatedHeader {
        /// Bytes left before the write offset.
        available: u64,
    },
    /// The event's size field points past the write offset.
    TruncatedPayload {
        /// Payload bytes the size field claims.
        size: u32,
        /// Payload bytes left before the write offset.
        available: u64,
    },
    /// The stored CRC does not match the event's bytes.
    ChecksumMismatch {
        /// The CRC stored in the event header.
        stored: u32,
        /// The CRC computed over the event's bytes.
        computed: u32,
    },
    /// The events below the durable watermark do not number the trailer's durable
    /// event count.
    DurableCountMismatch {
        /// The count the trailer holds.
        trailer: u64,
        /// The events found below the watermark.
        scanned: u64,
    },
    /// The event's timestamp is lower than the one before it.
    TimestampOutOfOrder {
        /// The previous event's timestamp.
        previous: i64,
        /// This event's timestamp.
        got: i64,
    },
    /// The events below the durable watermark number the trailer's durable count, but
    /// the last of them is not stamped with the trailer's durable last timestamp.
    DurableTimestampMismatch {
        /// The last durable timestamp the trailer holds.
        trailer: i64,
        /// The timestamp of the last event below the watermark.
        found: i64,
    },
    /// The durable watermark lies inside this event, which ends at byte offset `end`:
    /// a trailer's watermark lies where an event ends.
    WatermarkInsideEvent {
        /// Byte offset where the event ends (as its size field says).
        end: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader { available } => write!(
                f,
                "only {available} bytes remain before the write offset, an event header needs 16"
            ),
            Self::TruncatedPayload { size, available } => write!(
                f,
                "the event claims a {size}-byte payload but only {available} bytes remain before the write offset"
            ),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::DurableCountMismatch { trailer, scanned } => write!(
                f,
                "the trailer counts {trailer} durable events but {scanned} were found below the watermark"
            ),
            Self::TimestampOutOfOrder { previous, got } => write!(
                f,
                "timestamp {got} is lower than the previous event's {previous}"
            ),
            Self::DurableTimestampMismatch { trailer, found } => write!(
                f,
                "the trailer's last durable timestamp is {trailer} but the last event below the watermark is stamped {found}"
            ),
            Self::WatermarkInsideEvent { end } => write!(
                f,
                "the event ends at byte offset {end}, past the durable watermark: the trailer's watermark must lie where an event ends"
            ),
        }
    }
}

/// The path field of an [`Error`] that names a file or directory (borrowed as `error` is:
/// shared or mutable), or `None`: the one list behind [`Error::path`] and
/// [`Error::path_mut`].
macro_rules! path_of {
    ($error:expr) => {
        match $error {
            Error::Io { path, .. }
            | Error::AlreadyExists { path }
            | Error::NotAFile { path, .. }
            | Error::Locked { path }
            | Error::BadCapacity { path, .. }
            | Error::BadHeader { path, .. }
            | Error::Corrupt { path, .. }
            | Error::NotAStream { path, .. }
            | Error::DamagedTrailer { path, .. }
            | Error::NoRoomForTrailer { path, .. }
            | Error::Sealed { path }
            | Error::Recovered { path, .. }
            | Error::ReadersPresent { path }
            | Error::Poisoned { path }
            | Error::Regressed { path, .. }
            | Error::NotALog { path, .. }
            | Error::UnsupportedLogVersion { path, .. } => Some(path),
            Error::OutOfOrder { .. }
            | Error::Full { .. }
            | Error::PayloadTooLarge { .. }
            | Error::OffsetOutOfRange { .. }
            | Error::EventTooLarge { .. }
            | Error::Retired { .. }
            | Error::NoSuchPosition { .. }
            | Error::BadCursor { .. }
            | Error::TimeOutOfRange { .. } => None,
        }
    };
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The file or directory the error concerns, if it names one.
    ///
    /// Errors about a value rather than a file ([`Error::OutOfOrder`], [`Error::Full`],
    /// [`Error::Retired`], ...) name none: the caller knows what it was writing or reading.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let missing = dir.path().join("missing.evs");
    /// let error = evstream::StreamReader::open(&missing).unwrap_err();
    /// assert_eq!(error.path(), Some(missing.as_path()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        path_of!(self).map(PathBuf::as_path)
    }

    /// The file or directory the error is about, to change: for
    /// [`SharedLogWriter`](crate::SharedLogWriter) and
    /// [`SharedStreamWriter`](crate::SharedStreamWriter), which open their file by its
    /// absolute path and name it as their caller did.
    pub(crate) fn path_mut(&mut self) -> Option<&mut PathBuf> {
        path_of!(self)
    }

    /// The error on one line: its message followed by each cause behind it,
    /// `: `-separated, the operating system's reasons in words
    /// (`cannot open app.evs: no such file or directory`).
    ///
    /// The `Display` of an error leaves its cause to
    /// [`source`](std::error::Error::source); this line says why as well. When the
    /// caller knows which file it was working on, [`Error::message_for`] names it in the
    /// errors that carry no path of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let missing = dir.path().join("missing.evs");
    /// let error = evstream::StreamReader::open(&missing).unwrap_err();
    /// assert_eq!(
    ///     error.message(),
    ///     format!("cannot open {}: no such file or directory", missing.display())
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            match cause.downcast_ref::<io::Error>() {
                Some(io) => message.push_str(&Self::os_reason(io)),
                None => message.push_str(&cause.to_string()),
            }
            source = cause.source();
        }
        message
    }

    /// [`Error::message`] for an error met while working on `file` (the stream or log
    /// the caller opened): the line is prefixed with `file` when the error names no
    /// path of its own, or one outside `file`, so that every message names the file.
    /// This is the line the `evstream` tool prints after `error:`, and the message of
    /// the Python module's exceptions.
    ///
    /// # Examples
    ///
    /// ```
    /// use evstream::Error;
    /// use std::path::Path;
    ///
    /// let error = Error::Full { needed: 40, available: 16 };
    /// assert_eq!(
    ///     error.message_for(Path::new("app.evs")),
    ///     "app.evs is full: the event needs 40 B and 16 B are free; start a new stream"
    /// );
    /// ```
    #[must_use]
    pub fn message_for(&self, file: &Path) -> String {
        match self {
            Self::Full { needed, available } => {
                format!("{} is full: {}", file.display(), Full(*needed, *available))
            }
            _ => match self.path() {
                Some(path) if path.starts_with(file) => self.message(),
                _ => format!("{}: {}", file.display(), self.message()),
            },
        }
    }

    /// The operating system's reason in words, as [`Error::message`] writes it: without
    /// the `(os error N)` suffix, and in lower case for the common ones
    /// (`no such file or directory`, `permission denied`, `no space left on device`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    ///
    /// let error = io::Error::from(io::ErrorKind::PermissionDenied);
    /// assert_eq!(evstream::Error::os_reason(&error), "permission denied");
    /// ```
    #[must_use]
    pub fn os_reason(error: &io::Error) -> String {
        match error.kind() {
            io::ErrorKind::NotFound => "no such file or directory".into(),
            io::ErrorKind::PermissionDenied => "permission denied".into(),
            io::ErrorKind::StorageFull => "no space left on device".into(),
            _ => {
                let text = error.to_string();
                let text = match text.find(" (os error") {
                    Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
                    None => text,
                };
                // The operating system's sentences start with a capital ("File name too
                // long"); inside a message they do not. An acronym ("IO error") stays.
                let mut chars = text.chars();
                match (error.raw_os_error(), chars.next(), chars.next()) {
                    (Some(_), Some(first), Some(second))
                        if first.is_uppercase() && !second.is_uppercase() =>
                    {
                        first.to_lowercase().chain(text.chars().skip(1)).collect()
                    }
                    _ => text,
                }
            }
        }
    }
}

/// What [`Error::DamagedTrailer`] says is wrong with the trailer, in words.
struct TrailerWords<'a>(&'a TrailerProblem);

impl fmt::Display for TrailerWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            TrailerProblem::NoMagic => f.write_str("neither slot starts with the magic number"),
            TrailerProblem::UnsupportedVersion { version } => {
                write!(
                    f,
                    "its format version {version} is not one this build reads"
                )
            }
            TrailerProblem::Damaged => f.write_str("the checksums of both of its slots fail"),
            TrailerProblem::Inconsistent => f.write_str(
                "its current record contradicts itself or the file's length, or sets a flag \
                 this version does not define",
            ),
            TrailerProblem::WrongSlot { sequence, slot } => write!(
                f,
                "neither slot holds a valid record: the record with sequence number {sequence} \
                 checks out but sits in slot {slot}, where no writer puts it (it belongs in \
                 slot {})",
                sequence % 2
            ),
        }
    }
}

/// What [`Error::Full`] says after "is full: ".
struct Full(u64, u64);

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the event needs {} and {} are free; start a new stream",
            Size(self.0),
            Size(self.1)
        )
    }
}

/// Bytes in human units with the exact count when they differ: `512 B`,
/// `64 MiB (67108864 bytes)` (one decimal unless whole).
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let bytes = self.0;
        if bytes < 1024 {
            return write!(f, "{bytes} B");
        }
        // Tenths of the unit, rounded, and the decimal left out when it is 0 ("2 KiB",
        // not "2.0 KiB", for 2047 bytes); the next unit once they round to 1024 of this.
        let tenths = |scale: u128| (u128::from(bytes) * 10 + scale / 2) / scale;
        let mut scale: u128 = 1024;
        let mut unit = "KiB";
        for next in UNITS.iter().skip(1) {
            if tenths(scale) < 10_240 {
                break;
            }
            scale *= 1024;
            unit = next;
        }
        let tenths = tenths(scale);
        if tenths % 10 == 0 {
            write!(f, "{} {unit} ({bytes} bytes)", tenths / 10)
        } else {
            write!(f, "{}.{} {unit} ({bytes} bytes)", tenths / 10, tenths % 10)
        }
    }
}

/// Unix nanoseconds as RFC 3339 in UTC with nine fractional digits
/// (`2024-05-01T12:00:00.123456789Z`).
struct Rfc3339(i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NANOS_PER_SEC: i64 = 1_000_000_000;
        const SECS_PER_DAY: i64 = 86_400;
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        // Howard Hinnant's civil_from_days, on the days since 1970-01-01; an i64 of
        // nanoseconds is at most 106 752 days from it, far from overflow.
        let z = secs.div_euclid(SECS_PER_DAY) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{LogOptions, LogReader, LogWriter};

    /// Opening a log in a directory that does not exist is [`Error::NotALog`], as the
    /// docs of both opens promise, for the reader and the writer alike; nothing is made.
    #[test]
    fn a_missing_directory_is_not_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        for error in [
            LogReader::open(&missing).unwrap_err(),
            LogWriter::open(&missing).err().unwrap(),
        ] {
            match &error {
                Error::NotALog { path, reason } => {
                    assert_eq!(path, &missing);
                    assert!(reason.contains("does not exist"), "{error}");
                }
                other => panic!("expected NotALog, got {other:?}"),
            }
        }
        assert!(!missing.exists());
    }

    /// A `LOG` file of another version names both versions, and the directory is left
    /// as it was.
    #[test]
    fn a_log_of_a_newer_version_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        drop(LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap());
        let settings = path.join("LOG");
        let text = std::fs::read_to_string(&settings).unwrap().replacen(
            "evstream-log 1",
            "evstream-log 7",
            1,
        );
        std::fs::write(&settings, &text).unwrap();
        for error in [
            LogReader::open(&path).unwrap_err(),
            LogWriter::open(&path).err().unwrap(),
        ] {
            assert!(
                matches!(
                    error,
                    Error::UnsupportedLogVersion {
                        version: 7,
                        supported: 1,
                        ..
                    }
                ),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains("version 7") && message.contains("reads log version 1"),
                "{message}"
            );
        }
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), text);
    }

    /// The message of an I/O failure names the operation and the path; the reason is the
    /// source, not repeated in the message.
    #[test]
    fn an_io_error_keeps_its_cause_in_the_source() {
        let cause = io::Error::from(io::ErrorKind::PermissionDenied);
        let error = Error::io("read cursor", "app/cursors/billing", cause);
        assert_eq!(error.to_string(), "cannot read cursor app/cursors/billing");
        assert_eq!(
            error.message(),
            "cannot read cursor app/cursors/billing: permission denied"
        );
        let source = std::error::Error::source(&error).unwrap();
        assert_eq!(
            source.downcast_ref::<io::Error>().unwrap().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    /// A line names the file the caller worked on once: not again when the error names
    /// it or a file in it, before the error when the error names none or another.
    #[test]
    fn a_message_names_the_file_once() {
        let app = std::path::Path::new("app");
        let full = Error::Full {
            needed: 2048,
            available: 100,
        };
        assert_eq!(
            full.message_for(Path::new("s.evs")),
            "s.evs is full: the event needs 2 KiB (2048 bytes) and 100 B are free; \
             start a new stream"
        );
        let corrupt = Error::Corrupt {
            path: "app/00000001.evs".into(),
            offset: 300,
            watermark: 200,
            reason: Corruption::TruncatedHeader { available: 3 },
        };
        assert_eq!(
            corrupt.message_for(app),
            "app/00000001.evs is corrupt at byte offset 300 (above the durable watermark 200): \
             only 3 bytes remain before the write offset, an event header needs 16"
        );
        let cursor = Error::BadCursor {
            name: "a/b".into(),
            reason: "a bad name",
        };
        assert_eq!(cursor.message_for(app), "app: cursor \"a/b\": a bad name");
        let temporary = Error::io(
            "create",
            ".s.evs.tmp",
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert_eq!(
            temporary.message_for(Path::new("s.evs")),
            "s.evs: cannot create .s.evs.tmp: no space left on device"
        );
        let late = Error::OutOfOrder {
            previous: 1_714_564_800_000_000_001,
            got: -1,
        };
        assert_eq!(
            late.to_string(),
            "timestamp 1969-12-31T23:59:59.999999999Z (-1) is earlier than the last event's \
             2024-05-01T12:00:00.000000001Z (1714564800000000001); timestamps in a stream \
             never decrease"
        );
    }
}
