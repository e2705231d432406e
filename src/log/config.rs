//! A log's settings: the builder callers use and the `LOG` file that keeps them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN};
use crate::log::position::MAX_SEGMENT_LEN;

/// Name of the file that marks a directory as a log and holds its settings.
pub(crate) const CONFIG_FILE: &str = "LOG";
/// The version of the settings file (and of the log's layout) this build reads and writes.
const LOG_VERSION: u64 = 1;
/// First line of the settings file: `evstream-log VERSION`.
const MAGIC_LINE: &str = "evstream-log 1";
/// What the first line starts with, whatever the version.
const MAGIC_PREFIX: &str = "evstream-log ";
/// The longest settings file accepted (it is a few short lines).
const MAX_CONFIG_LEN: u64 = 4096;
/// The smallest segment: room for the stream header and a few small events.
pub(crate) const MIN_SEGMENT: u64 = 4096;

/// When a log's writer has the kernel write segments back to disk: the write-back
/// policy of [`LogOptions::write_back`].
///
/// Either way an append that returned survives a crash of the process (it is in the
/// page cache), and [`LogWriter::flush`](crate::LogWriter::flush) makes every event
/// before it survive power loss. The policies differ in what a power loss takes
/// without a flush, and in what the writer pays for it: under neither does an append
/// or a roll wait for the disk.
///
/// What the next [`LogWriter::open`](crate::LogWriter::open) re-checks after a crash
/// is the same under both: every segment whose flush had not finished (each read whole,
/// checksums included, then flushed and indexed), whether the crash was of the
/// process or of the machine. With eager write-back those are the retired segments the
/// disk had not caught up with, at most about the kernel's dirty-memory limit's worth of
/// segments (with `vm.dirty_ratio` 20 on a machine of 16 GiB, some 3 GiB); with lazy
/// write-back the newest and up to 8 retired segments (more if the sealing thread falls
/// behind the disk, within the same limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteBack {
    /// Each segment is flushed by a background thread as soon as the writer rolls past
    /// it, so that a power loss without a flush takes at most the newest segment and the
    /// retired ones whose flush had not finished: none while the disk keeps up with the
    /// writer. No append waits for those flushes: a writer faster than the disk runs
    /// ahead of them, until the kernel's limit on dirty memory (`vm.dirty_ratio`,
    /// `vm.dirty_bytes`) slows the background preparation of new segments and with it
    /// the writer.
    ///
    /// The flush writes the segment back 4 MiB at a time, then makes it durable
    /// (`msync`) and seals it; between two steps the thread applies retention after a
    /// roll, so that retention never waits for a segment's flush, and pauses while the
    /// next segment is being prepared, unless a [`flush`](crate::LogWriter::flush) waits.
    /// A segment that retention deletes (or keeps to recycle) before its flush finished
    /// is not written back any further: while the writer outruns the disk, the flushes
    /// of the segments retention is about to delete are cut short, and those, like the
    /// newest, do not survive a power loss without a flush.
    ///
    /// The disk's speed then sets a share of the writer's: on two cores, writing every
    /// segment back as it is retired takes CPU from the appending thread (a log in steady
    /// state measured 1.2–1.3x a rotating `BufWriter` eager, against 1.6x lazy,
    /// `docs/BENCHMARKS.md`).
    Eager,
    /// Segments are not flushed when the writer rolls past them: the kernel writes
    /// them back in its own time (usually within 30 seconds), so no append waits for
    /// the disk, and a segment retention deletes before then never reaches it. A
    /// retired segment is flushed (then indexed) in the background once 8 younger ones
    /// wait, once it has waited 30 seconds (the kernel has usually written it back
    /// already, so the flush costs little), at a [`flush`](crate::LogWriter::flush), or
    /// when the writer is dropped. A [`SharedLogWriter`](crate::SharedLogWriter) that
    /// gives the log up to another process's writer waiting for it leaves its retired
    /// segments to that writer instead, which flushes them as its own come due (up to 8
    /// waiting, theirs and its own; 30 seconds after they were last written; at its
    /// flush or its close). A power loss without a flush may take anything the kernel
    /// had not written back yet: the newest segment and up to 8 retired ones (those
    /// retired in the last 30 seconds).
    ///
    /// The default: as with a file written through `std::fs::File` and never synced,
    /// what has not been flushed reaches the disk when the kernel writes it back, and
    /// what must survive a power loss is made durable by a flush.
    ///
    /// The pages the writer wrote in the last second stay mapped, where a writer under
    /// eager write-back unmaps them as soon as it has passed them: a segment retention
    /// retires and recycles within that second (a log appending fast, or keeping few
    /// segments) takes its next life's appends through the same page-table entries,
    /// with no page fault: a log of 64 MiB segments keeping 4, appending 1 KiB events
    /// flat out, faulted in no segment but the first two it recycled, measured
    /// (`docs/BENCHMARKS.md`). The cost: the kernel write-protects each page
    /// it writes back while it is mapped, with a TLB shootdown to the appending CPU
    /// (a microsecond or two in the append it interrupts), so a flush, or the kernel's
    /// periodic write-back, costs the appender a little more for the pages of that last
    /// second.
    #[default]
    Lazy,
}

/// Settings of a log, chosen when it is created ([`LogWriter::create`]) and kept in the
/// log directory's `LOG` file, so every later writer and reader uses the same ones.
///
/// Retention limits are all off by default: a log keeps everything until told otherwise.
///
/// # Disk use
/// Each segment is preallocated whole when it is created, and the writer prepares the
/// next one (a hidden spare, `.next-SEQUENCE.evs`) before the roll that needs it, once
/// the newest segment is a quarter full (at once with a roll interval), so a log takes
/// its segments plus one: with the default 64 MiB segments, 128 MiB from then on
/// ([`LogStat::disk_bytes`](crate::LogStat::disk_bytes) counts the spare).
/// With retention, the segment a roll retires is normally not deleted but recycled as
/// the next one to prepare (its file and its pages in memory reused, none allocated or
/// zero-filled; `docs/FORMAT.md`, "Recycling retired segments"): until the preparing
/// thread takes it, which is at once unless it is busy, it waits under a hidden name
/// (`..next-spare-SEQUENCE.evs`) that `disk_bytes` does not count; up to two wait, so a
/// log with retention may take its segments plus three. A segment a reader has open is deleted instead.
/// A process that hands its turn at the log to another waiting for it
/// ([`SharedLogWriter`](crate::SharedLogWriter)) leaves its spares to that process
/// (`..next-kept-SEQUENCE.evs`, until its open takes them) rather than deleting them.
/// A roll interval starts a segment per interval that holds events, however few. For a
/// small or slow log choose small segments (1 MiB holds some 20,000 events of 32 bytes);
/// the default suits a log that takes many events a second, where a larger segment
/// means fewer rolls and fewer files.
///
/// # Examples
/// A log of 64 MiB segments that rolls hourly and keeps about 10 GiB or a week of data,
/// whichever is less:
/// ```
/// use std::time::Duration;
/// use evstream::LogOptions;
///
/// let options = LogOptions::default()
///     .segment_size(64 << 20)
///     .roll_interval(Some(Duration::from_secs(3600)))
///     .retain_size(Some(10 << 30))
///     .retain_age(Some(Duration::from_secs(7 * 86_400)));
/// assert_eq!(options.get_segment_size(), 64 << 20);
/// ```
///
/// [`LogWriter::create`]: crate::LogWriter::create
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    pub(crate) segment_size: u64,
    pub(crate) roll_interval: Option<Duration>,
    pub(crate) retain_size: Option<u64>,
    pub(crate) retain_age: Option<Duration>,
    pub(crate) retain_segments: Option<u64>,
    pub(crate) retain_past_cursors: bool,
    pub(crate) write_back: WriteBack,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            roll_interval: None,
            retain_size: None,
            retain_age: None,
            retain_segments: None,
            retain_past_cursors: false,
            write_back: WriteBack::Lazy,
        }
    }
}

impl LogOptions {
    /// Length of each segment file in bytes (default 64 MiB; see "Disk use" above for
    /// choosing it). An event larger than a segment's event area is refused with
    /// [`Error::EventTooLarge`].
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Roll to a new segment when an event's timestamp falls in a later interval than the
    /// segment's first event, intervals aligned to the Unix epoch (UTC): 1 hour rolls on
    /// the hour, 1 day at midnight UTC. `None` (the default) rolls only when full. The
    /// shortest interval is a nanosecond (`Some(Duration::ZERO)` is taken as that: every
    /// new timestamp starts a segment).
    pub fn roll_interval(mut self, interval: Option<Duration>) -> Self {
        self.roll_interval = interval.map(|d| d.max(Duration::from_nanos(1)));
        self
    }

    /// Delete the oldest segments while the segment files take more than `bytes` in all.
    /// The segment being written is never deleted: `Some(0)` keeps it alone.
    pub fn retain_size(mut self, bytes: Option<u64>) -> Self {
        self.retain_size = bytes.map(|bytes| bytes.max(1));
        self
    }

    /// Delete segments whose newest event is older than `age` (by the writer's clock).
    /// The segment being written is never deleted: `Some(Duration::ZERO)` keeps it alone
    /// (as a nanosecond does).
    pub fn retain_age(mut self, age: Option<Duration>) -> Self {
        self.retain_age = age.map(|age| age.max(Duration::from_nanos(1)));
        self
    }

    /// Delete the oldest segments while there are more than `count`. The segment being
    /// written is never deleted: `Some(0)` keeps it alone, as `Some(1)` does.
    pub fn retain_segments(mut self, count: Option<u64>) -> Self {
        self.retain_segments = count.map(|count| count.max(1));
        self
    }

    /// Whether retention may delete segments a named cursor has not consumed yet (default
    /// `false`: a cursor that lags holds the segments it needs, and the log grows past its
    /// limits, by as much as [`LogStat::held`](crate::LogStat::held) says; a cursor whose
    /// file is damaged holds every segment, and retention reports it as
    /// [`Error::BadCursor`](crate::Error::BadCursor) until it is committed again or
    /// removed). With `true` the limits win over every cursor, a damaged one included,
    /// and each deletion reports which readable cursors lost which events
    /// ([`Retired::cursors_behind`](crate::Retired)).
    pub fn retain_past_cursors(mut self, yes: bool) -> Self {
        self.retain_past_cursors = yes;
        self
    }

    /// When the writer has retired segments written back to disk (default
    /// [`WriteBack::Lazy`]); see [`WriteBack`] for what each policy costs and
    /// keeps after a power loss.
    ///
    /// # Examples
    /// ```
    /// use evstream::{LogOptions, WriteBack};
    ///
    /// let options = LogOptions::default()
    ///     .retain_segments(Some(4))
    ///     .write_back(WriteBack::Eager);
    /// assert_eq!(options.get_write_back(), WriteBack::Eager);
    /// ```
    pub fn write_back(mut self, policy: WriteBack) -> Self {
        self.write_back = policy;
        self
    }

    /// The write-back policy.
    pub fn get_write_back(&self) -> WriteBack {
        self.write_back
    }

    /// The segment size.
    pub fn get_segment_size(&self) -> u64 {
        self.segment_size
    }

    /// The roll interval, if any.
    pub fn get_roll_interval(&self) -> Option<Duration> {
        self.roll_interval
    }

    /// The size limit of retention, if any.
    pub fn get_retain_size(&self) -> Option<u64> {
        self.retain_size
    }

    /// The age limit of retention, if any.
    pub fn get_retain_age(&self) -> Option<Duration> {
        self.retain_age
    }

    /// The segment-count limit of retention, if any.
    pub fn get_retain_segments(&self) -> Option<u64> {
        self.retain_segments
    }

    /// Whether retention may delete what a cursor still needs.
    pub fn get_retain_past_cursors(&self) -> bool {
        self.retain_past_cursors
    }

    /// Whether any retention limit is set.
    pub(crate) fn has_limits(&self) -> bool {
        self.retain_size.is_some() || self.retain_age.is_some() || self.retain_segments.is_some()
    }

    /// The roll interval in nanoseconds, if any (at least 1).
    pub(crate) fn roll_nanos(&self) -> Option<i64> {
        self.roll_interval
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).max(1))
    }

    /// The largest event, header included, a segment's event area holds.
    pub(crate) fn max_event(&self) -> u64 {
        crate::format::trailer_offset(self.segment_size)
            .map_or(0, |end| end.saturating_sub(STREAM_HEADER_LEN))
    }

    /// Checks the settings; `dir` is named in the error.
    pub(crate) fn check(&self, dir: &Path) -> Result<()> {
        if !(MIN_SEGMENT..MAX_SEGMENT_LEN).contains(&self.segment_size) {
            return Err(Error::BadCapacity {
                path: dir.to_owned(),
                capacity: self.segment_size,
                minimum: MIN_SEGMENT,
                maximum: MAX_SEGMENT_LEN - 1,
            });
        }
        debug_assert!(self.max_event() > EVENT_HEADER_LEN);
        Ok(())
    }

    /// The settings file's text.
    fn to_text(&self) -> String {
        let mut text = format!("{MAGIC_LINE}\n");
        let mut line = |key: &str, value: u64| {
            let _ = writeln!(text, "{key} {value}");
        };
        let nanos =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        line("segment-size", self.segment_size);
        line("roll-ns", nanos(self.roll_interval));
        line("retain-size", self.retain_size.unwrap_or(0));
        line("retain-age-ns", nanos(self.retain_age));
        line("retain-segments", self.retain_segments.unwrap_or(0));
        line("retain-past-cursors", u64::from(self.retain_past_cursors));
        line(
            "write-back",
            match self.write_back {
                WriteBack::Eager => 0,
                WriteBack::Lazy => 1,
            },
        );
        text
    }

    /// Parses a settings file; `None` if it is not one.
    fn from_text(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC_LINE {
            return None;
        }
        // A file without the `write-back` line was written by a build that had only
        // the eager policy.
        let mut options = Self {
            write_back: WriteBack::Eager,
            ..Self::default()
        };
        let nonzero = |v: u64| (v != 0).then_some(v);
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "segment-size" => options.segment_size = value,
                "roll-ns" => options.roll_interval = nonzero(value).map(Duration::from_nanos),
                "retain-size" => options.retain_size = nonzero(value),
                "retain-age-ns" => options.retain_age = nonzero(value).map(Duration::from_nanos),
                "retain-segments" => options.retain_segments = nonzero(value),
                "retain-past-cursors" => options.retain_past_cursors = value != 0,
                // A policy this build does not know is the eager one: it keeps the most.
                "write-back" => {
                    options.write_back = if value == 1 {
                        WriteBack::Lazy
                    } else {
                        WriteBack::Eager
                    }
                }
                // Settings of later versions that this one does not know are ignored.
                _ => {}
            }
        }
        Some(options)
    }

    /// Writes the settings file into `dir` atomically (temporary file, fsync, rename
    /// without replacing, directory fsync).
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        // Unique in this process too: threads that create one log at once each write
        // their own (the one renamed first is the log's).
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let path = dir.join(CONFIG_FILE);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(
            ".{CONFIG_FILE}.{}.{serial}.tmp",
            std::process::id()
        ));
        let result = (|| {
            let mut file = create_temp(&temp)?;
            file.write_all(self.to_text().as_bytes())?;
            file.sync_all()
        })();
        result.map_err(|e| Error::io("write settings", &temp, e))?;
        crate::sys::rename_noreplace(&temp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.clone() },
                _ => Error::io("rename into place", &path, e),
            }
        })?;
        sync_dir(dir)
    }

    /// Reads the settings of the log in `dir`.
    ///
    /// # Errors
    /// [`Error::NotALog`] if `dir` has no valid settings file; nothing is changed.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let not_a_log = |reason: &'static str| Error::NotALog {
            path: dir.to_owned(),
            reason,
        };
        let meta = match std::fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) => return Err(Error::io("open log directory", dir, e)),
        };
        if !meta.is_dir() {
            return Err(not_a_log("it is not a directory"));
        }
        let (file, len) = match crate::stream::open::open_regular(&path, false) {
            Ok(opened) => opened,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_a_log(
                    "it is a directory without a LOG settings file, neither a stream file nor a log",
                ));
            }
            Err(e) => return Err(e),
        };
        if len > MAX_CONFIG_LEN {
            return Err(not_a_log("its LOG settings file is too long"));
        }
        let text = match std::io::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(not_a_log("its LOG settings file is not text"));
            }
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        if let Some(version) = other_version(&text) {
            return Err(Error::UnsupportedLogVersion {
                path: dir.to_owned(),
                version,
                supported: LOG_VERSION,
            });
        }
        let options = Self::from_text(&text)
            .ok_or_else(|| not_a_log("its LOG settings file is not valid"))?;
        // A size out of bounds here is the file's problem, not the caller's argument:
        // `BadCapacity` (a usage error) stays with `create`.
        options.check(dir).map_err(|_| {
            not_a_log(
                "its LOG settings file names a segment size out of bounds (4096 to 2^40 - 1 bytes)",
            )
        })?;
        Ok(options)
    }
}

/// The version a settings file names on its first line, when it is not [`LOG_VERSION`].
fn other_version(text: &str) -> Option<u64> {
    let version = text.lines().next()?.strip_prefix(MAGIC_PREFIX)?;
    let version: u64 = version.parse().ok()?;
    (version != LOG_VERSION).then_some(version)
}

/// Creates the temporary file `path`, to be written, synced and renamed into place.
///
/// A regular file already there is what an interrupted write left, and is replaced;
/// anything else (a symbolic link, a directory) is not evstream's, and the exclusive
/// create refuses it (`AlreadyExists`) rather than write through it.
pub(crate) fn create_temp(path: &Path) -> std::io::Result<std::fs::File> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(path)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Syncs a directory, so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn settings_round_trip() {
        let options = LogOptions::default()
            .segment_size(1 << 20)
            .roll_interval(Some(Duration::from_secs(3600)))
            .retain_size(Some(5 << 20))
            .retain_age(Some(Duration::from_secs(60)))
            .retain_segments(Some(7))
            .retain_past_cursors(true);
        assert_eq!(
            LogOptions::from_text(&options.to_text()),
            Some(options.clone())
        );
        assert_eq!(options.get_write_back(), WriteBack::Lazy);
        assert!(options.to_text().ends_with("write-back 1\n"));
        let eager = options.write_back(WriteBack::Eager);
        assert!(eager.to_text().ends_with("write-back 0\n"));
        assert_eq!(LogOptions::from_text(&eager.to_text()), Some(eager));
        // Written by an older build: eager.
        assert_eq!(
            LogOptions::from_text("evstream-log 1\nsegment-size 4096\n")
                .map(|o| o.get_write_back()),
            Some(WriteBack::Eager)
        );
        assert_eq!(
            LogOptions::from_text("evstream-log 1\nsegment-size x\n"),
            None
        );
        assert_eq!(LogOptions::from_text("something else\n"), None);
        assert_eq!(MAGIC_LINE, format!("{MAGIC_PREFIX}{LOG_VERSION}"));
        assert_eq!(other_version(&LogOptions::default().to_text()), None);
        assert_eq!(
            other_version("evstream-log 2\nsegment-size 4096\n"),
            Some(2)
        );
        assert_eq!(other_version("evstream-log two\n"), None);
    }

    /// The temporary files of settings, cursors and indexes: a leftover regular file is
    /// replaced, while a symbolic link (to a file outside the log) or a directory under
    /// the name is refused, and what it points to is never written.
    #[test]
    fn a_temporary_file_is_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".x.tmp");
        std::fs::write(&temp, b"left by a crash").unwrap();
        let mut file = create_temp(&temp).unwrap();
        file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&temp).unwrap(), b"new");

        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"someone else's").unwrap();
        let link = dir.path().join(".link.tmp");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let refused = create_temp(&link).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&outside).unwrap(), b"someone else's");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

        let directory = dir.path().join(".dir.tmp");
        std::fs::create_dir(&directory).unwrap();
        assert!(create_temp(&directory).is_err());
        assert!(directory.is_dir());
    }
}
