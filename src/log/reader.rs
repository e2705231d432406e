//! Reading a log: iteration and follow across segments, seek by time, tail, stat, cursors.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Corruption, Error, Result};
use crate::format::STREAM_HEADER_LEN;
use crate::log::config::LogOptions;
use crate::log::cursor;
use crate::log::position::Position;
use crate::log::retention::{self, RetentionHold};
use crate::log::segment::{self, SegmentEntry, SegmentIndex};
use crate::log::writer::LOCK_FILE;
use crate::stream::open::{now_nanos, writer_lock_held};
use crate::stream::reader::{Sleeper, StreamReader, WaitStrategy};
use crate::stream::wait::WaitTicket;

/// How often a follower that waits at the end of the newest segment lists the directory
/// to look for the next segment, unless it has a reason to (a seal, its successor's name
/// found); a safety net for a successor under an unexpected name.
const RELIST_EVERY: Duration = Duration::from_millis(1);

/// A follower at the end of the newest segment lists the directory again only if the
/// directory changed since its last listing (its modification time), or at least this
/// often: a listing costs time in proportion to the segments (milliseconds for
/// thousands), and a follower of a log that keeps months of them looks after every event.
const RELIST_ANYWAY: Duration = Duration::from_secs(1);

/// A directory's modification time is trusted to tell a later change only once it is at
/// least this old at the listing: a file system may stamp times in coarse ticks (a few
/// milliseconds), so that a change in the tick of the listing may leave the time as it was.
const MTIME_SETTLED: Duration = Duration::from_millis(50);

/// How many looks of a spinning follower pass between two checks for the successor.
const SPINS_PER_PROBE: u32 = 1024;

/// How many times a call lists the segments again when retention took one it listed
/// (deleted it, or renamed it away for recycling) before the call opened it.
const RELIST_TRIES: u32 = 64;

/// Whether `e` says that a listed segment's file is gone: its name no longer there, or
/// no longer naming the file that was opened (`StreamReader::open`'s identity check).
/// Retention does that to the oldest segments between a reader's listing and its open.
fn vanished(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// One event of a log: its position, timestamp and payload.
///
/// The payload is not copied: the event holds its segment's mapping (shared with the
/// iterator that produced it), so it stays valid and unchanged as long as the event
/// lives, even after the iterator moved on or retention deleted the segment's file.
#[derive(Debug, Clone)]
pub struct LogEvent {
    segment: Arc<StreamReader>,
    position: Position,
    timestamp: i64,
    checksum: u32,
    len: usize,
}

impl LogEvent {
    /// The event's position in the log.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The event's timestamp (Unix nanoseconds).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The event's timestamp as a [`SystemTime`] ([`time_of`](crate::time_of)).
    pub fn time(&self) -> SystemTime {
        crate::time_of(self.timestamp)
    }

    /// The checksum stored with the event (verified when the event was read).
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// The event's payload, borrowed from the segment's mapping.
    pub fn payload(&self) -> &[u8] {
        self.segment
            .bytes_at(self.position.offset() + 16, self.len)
            .unwrap_or(&[])
    }

    /// The position just past this event: **the position to commit** to a cursor once
    /// this event is processed, so that the consumer resumes with the event after it.
    ///
    /// This is the one answer to "which position do I commit": the next event to
    /// consume, never the one just processed (committing [`position`](Self::position)
    /// would deliver the event again after a restart). [`LogReader::commit_after`] commits
    /// it for you; [`LogIter::position`] right after the iterator returned this event is
    /// the same position. It is valid even while no event is there yet (the iterator
    /// resumes there, or in the next segment if the writer rolled).
    pub fn next_position(&self) -> Position {
        Position::of(
            self.position.segment(),
            self.position.offset() + 16 + self.len as u64,
        )
    }
}

/// A consumer's distance from the end of the log; see [`LogReader::lag`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Lag {
    /// Events at or after the position.
    pub events: u64,
    /// Bytes of those events, headers included.
    pub bytes: u64,
}

/// A summary of a log; see [`LogReader::stat`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStat {
    /// Number of segment files.
    pub segments: u64,
    /// Sequence number of the oldest segment.
    pub first_segment: u64,
    /// Sequence number of the newest segment.
    pub last_segment: u64,
    /// Events in the log (in its segments now; not those of segments missing from its
    /// middle, whose sequence numbers lie between `first_segment` and `last_segment`
    /// without a file: `segments` is then less than the range).
    pub events: u64,
    /// Log-wide index of the oldest event kept (events before it were retired).
    pub first_event: u64,
    /// Bytes the log's files take on disk: its segments (each preallocated to the
    /// segment size) and the [spare](Self::spare_bytes).
    pub disk_bytes: u64,
    /// Bytes of the spare segment: the next one, created and preallocated ahead of the
    /// roll that needs it (by a writer open now, or left for the next one), under a
    /// hidden name (`.next-SEQUENCE.evs`); 0 if there is none. Counted in
    /// [`disk_bytes`](Self::disk_bytes).
    pub spare_bytes: u64,
    /// Bytes of events in the newest segment, its header included.
    pub newest_write_offset: u64,
    /// Timestamp of the oldest event kept.
    pub first_timestamp: Option<i64>,
    /// Timestamp of the newest event.
    pub last_timestamp: Option<i64>,
    /// Position of the oldest event kept.
    pub start: Position,
    /// Position just past the newest event.
    pub end: Position,
    /// Whether a writer has the log open.
    pub writer_active: bool,
    /// Named cursors that keep segments the retention limits would delete, most first,
    /// with how many segments and bytes each keeps beyond what the limits would leave;
    /// a damaged cursor is always listed (it keeps every such segment). Empty without
    /// retention limits, and with [`LogOptions::retain_past_cursors`]. A consumer that
    /// was forgotten shows here long before its cursor fills the disk.
    pub held: Vec<RetentionHold>,
}

impl LogStat {
    /// The oldest event's timestamp as a [`SystemTime`].
    pub fn first_time(&self) -> Option<SystemTime> {
        self.first_timestamp.map(crate::time_of)
    }

    /// The newest event's timestamp as a [`SystemTime`].
    pub fn last_time(&self) -> Option<SystemTime> {
        self.last_timestamp.map(crate::time_of)
    }
}

/// The result of [`LogReader::verify`]: every segment checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogVerification {
    /// Segments checked.
    pub segments: u64,
    /// Valid events found.
    pub events: u64,
    /// The first problem: a damaged event (its position and what is wrong) or a
    /// segment whose first-event index does not follow from the one before.
    pub damage: Option<(Position, LogDamage)>,
}

impl LogVerification {
    /// Whether every segment is intact and they follow each other.
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
    }
}

/// What [`LogReader::verify`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogDamage {
    /// A damaged event.
    Event(Corruption),
    /// The segment's header counts events that do not match its events.
    CountMismatch,
    /// The segment's name says its first event is the log's `named`-th, but the
    /// segments before it hold events up to `expected`.
    Discontinuity {
        /// From the name.
        named: u64,
        /// From the previous segment.
        expected: u64,
    },
    /// A sequence number is missing between two segments.
    MissingSegment,
}

/// Reads a log: any number of readers, in any process, while the writer appends.
///
/// A reader holds no lock and keeps nothing open between calls but what its iterators
/// and events hold. Every call looks at the directory as it is then.
///
/// # Examples
/// ```
/// use evstream::{LogOptions, LogReader, LogWriter};
///
/// # fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("app");
/// let mut log = LogWriter::create(&path, LogOptions::default().segment_size(4096))?;
/// for t in 0..1000 {
///     log.append(t, b"a reading of some 32 bytes......")?; // rolls every ~80 events
/// }
/// let reader = LogReader::open(&path)?;
/// assert!(reader.stat()?.segments > 10);
/// let at = reader.seek_time(500)?.expect("an event at or after 500");
/// let event = reader.iter_from(at)?.next().expect("an event")?;
/// assert_eq!(event.timestamp(), 500);
/// let last: Vec<i64> = reader.tail(2)?.iter().map(|e| e.timestamp()).collect();
/// assert_eq!(last, [998, 999]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: PathBuf,
    options: LogOptions,
}

/// The settings of the log in `dir`; a directory that does not exist holds no log
/// ([`Error::NotALog`]), as one without a `LOG` file.
pub(crate) fn read_options(dir: &Path) -> Result<LogOptions> {
    LogOptions::read(dir).map_err(|e| match e {
        Error::Io { path, source, .. }
            if source.kind() == std::io::ErrorKind::NotFound && path == dir =>
        {
            Error::NotALog {
                path,
                reason: "it does not exist",
            }
        }
        other => other,
    })
}

impl LogReader {
    /// Opens the log in `dir` for reading.
    ///
    /// # Errors
    /// [`Error::NotALog`] if `dir` holds no log or does not exist;
    /// [`Error::UnsupportedLogVersion`] for a log this build does not read; [`Error::Io`]
    /// if it cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let options = read_options(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            options,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's settings.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    fn segments(&self) -> Result<Vec<SegmentEntry>> {
        let segments = segment::list(&self.dir)?;
        if segments.is_empty() {
            return Err(Error::NotALog {
                path: self.dir.clone(),
                reason: "it has no segment",
            });
        }
        Ok(segments)
    }

    /// `attempt` on a listing of the segments, listed again and retried while a segment
    /// it listed vanished before it was opened (retention took it; at most
    /// [`RELIST_TRIES`] times, then that error is returned): the answer is about the log
    /// as one listing found it, with every segment of that listing read.
    fn relisting<T>(&self, mut attempt: impl FnMut(&[SegmentEntry]) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            let segments = self.segments()?;
            match attempt(&segments) {
                Err(e) if vanished(&e) && tries < RELIST_TRIES => tries += 1,
                done => return done,
            }
        }
    }

    /// Whether segment `seq`, found gone, was taken by retention: the log now starts
    /// after it. A segment missing from the middle of the log was not.
    fn retired(&self, seq: u64) -> Result<bool> {
        Ok(self
            .segments()?
            .first()
            .is_some_and(|first| first.seq > seq))
    }

    /// Paths of the segment files, oldest first, with their sequence numbers.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed.
    pub fn segment_files(&self) -> Result<Vec<(u64, PathBuf)>> {
        Ok(segment::list(&self.dir)?
            .into_iter()
            .map(|s| (s.seq, s.path))
            .collect())
    }

    /// The position of the oldest event kept.
    ///
    /// # Errors
    /// [`Error::NotALog`] for a log without segments; [`Error::Io`].
    pub fn start(&self) -> Result<Position> {
        let segments = self.segments()?;
        let first = segments.first().map_or(0, |s| s.seq);
        Ok(Position::of(first, STREAM_HEADER_LEN))
    }

    /// The position just past the newest event: where the next one will go, unless the
    /// writer rolls first.
    ///
    /// # Errors
    /// As [`start`](Self::start), or for a damaged newest segment.
    pub fn end(&self) -> Result<Position> {
        self.relisting(end_in)
    }

    /// Iterates every event kept, oldest first, across segments (checksums verified).
    ///
    /// The iterator yields the events published when it reaches them, and ends at the
    /// newest one; use [`LogIter::next_timeout`] on it to wait for more.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn iter(&self) -> Result<LogIter> {
        // The oldest segment of a listing, taken by retention before it is opened, is
        // not this call's to report: the log then starts later.
        self.relisting(|segments| {
            let first = segments.first().map_or(0, |s| s.seq);
            self.iter_in(segments, Position::of(first, STREAM_HEADER_LEN))
        })
    }

    /// Iterates from `position` (an event's position, as from [`LogEvent::position`] or
    /// [`LogEvent::next_position`], or [`end`](Self::end)).
    ///
    /// # Errors
    /// - [`Error::Retired`] if retention deleted the position's segment.
    /// - [`Error::NoSuchPosition`] if the position lies past the end of the log or of
    ///   its segment. A position inside an event is found out when it is read: the
    ///   first item is then [`Error::Corrupt`].
    pub fn iter_from(&self, position: Position) -> Result<LogIter> {
        let segments = self.segments()?;
        self.iter_in(&segments, position).map_err(|e| {
            if vanished(&e) {
                retired_error(position, segments.first())
            } else {
                e
            }
        })
    }

    /// Iterates from `position` in the log `segments` lists; a segment gone since is
    /// [`vanished`].
    fn iter_in(&self, segments: &[SegmentEntry], position: Position) -> Result<LogIter> {
        let at = self.find(segments, position)?;
        let entry = segments.get(at).ok_or(Error::NoSuchPosition {
            position,
            end: position,
        })?;
        let current = Arc::new(entry.open()?);
        let end = current.live_write_offset()?;
        if position.offset() < STREAM_HEADER_LEN || position.offset() > end {
            return Err(Error::NoSuchPosition {
                position,
                end: end_in(segments).unwrap_or(Position::of(entry.seq, end)),
            });
        }
        let (seq, base) = (entry.seq, entry.base);
        Ok(LogIter {
            dir_identity: dir_identity(&self.dir),
            dir: self.dir.clone(),
            seq,
            segments: segments.to_vec(),
            current,
            offset: position.offset(),
            previous: i64::MIN,
            listed: Instant::now(),
            listed_stamp: None,
            done: false,
            base,
            strategy: WaitStrategy::default(),
            sleeper: Sleeper::default(),
            rolled: false,
            sealed_alone: false,
        })
    }

    /// The index in `segments` of `position`'s segment.
    fn find(&self, segments: &[SegmentEntry], position: Position) -> Result<usize> {
        let seq = position.segment();
        match segments.binary_search_by_key(&seq, |s| s.seq) {
            Ok(at) => Ok(at),
            Err(0) => Err(Error::Retired {
                position,
                first_segment: segments.first().map_or(0, |s| s.seq),
            }),
            Err(_) => Err(Error::NoSuchPosition {
                position,
                end: self.end()?,
            }),
        }
    }

    /// The position of the first event at or after `timestamp`, or `None` if every
    /// event is earlier.
    ///
    /// Costs O(log n) in the number of segments: a binary search over the segments'
    /// first timestamps (one event read from each segment it probes), then the
    /// segment's sparse time index (written when it was sealed; checked before use, and
    /// the newest segment, which has none yet, is scanned), then a scan of at most
    /// 64 KiB of events.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged event on the way; [`Error::NotALog`] if the
    /// answer may lie in a segment missing from the middle of the log (the segment
    /// before the gap holds only earlier events).
    pub fn seek_time(&self, timestamp: i64) -> Result<Option<Position>> {
        self.relisting(|segments| self.seek_in_log(segments, timestamp))
    }

    /// [`seek_time`](Self::seek_time) in the log `segments` lists; a segment gone since
    /// is [`vanished`].
    fn seek_in_log(&self, segments: &[SegmentEntry], timestamp: i64) -> Result<Option<Position>> {
        // Segments opened so far, by their index in `segments`.
        let mut opened: Vec<(usize, StreamReader)> = Vec::new();
        let first_at = |i: usize, opened: &mut Vec<(usize, StreamReader)>| -> Result<Option<i64>> {
            if let Some((_, reader)) = opened.iter().find(|(j, _)| *j == i) {
                return first_timestamp(reader);
            }
            let entry = segments.get(i).ok_or(Error::NotALog {
                path: self.dir.clone(),
                reason: "a segment vanished during a seek",
            })?;
            let reader = entry.open()?;
            let first = first_timestamp(&reader)?;
            opened.push((i, reader));
            Ok(first)
        };
        // The first segment at or after `i` that holds an event, and that event's
        // timestamp. Only the newest segment is empty, as a rule; but one sealed behind
        // its writer's back while empty is rolled out of and stays empty, and its events
        // are in the segments after it.
        let holding =
            |i: usize, opened: &mut Vec<(usize, StreamReader)>| -> Result<Option<(usize, i64)>> {
                for j in i..segments.len() {
                    if let Some(first) = first_at(j, opened)? {
                        return Ok(Some((j, first)));
                    }
                }
                Ok(None)
            };
        // The first segment from which on every event is at or after `timestamp`.
        // Timestamps do not decrease along the log, so the answer is in the segment
        // before it (which then holds an event before `timestamp`) or is the first event
        // from it on.
        let (mut lo, mut hi) = (0usize, segments.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match holding(mid, &mut opened)? {
                Some((_, first)) if first < timestamp => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let take = |i: usize, opened: &mut Vec<(usize, StreamReader)>| -> Result<StreamReader> {
            if let Some(at) = opened.iter().position(|(j, _)| *j == i) {
                return Ok(opened.swap_remove(at).1);
            }
            let entry = segments.get(i).ok_or(Error::NotALog {
                path: self.dir.clone(),
                reason: "a segment vanished during a seek",
            })?;
            entry.open()
        };
        if let Some(before) = lo.checked_sub(1) {
            let reader = take(before, &mut opened)?;
            let seq = segments.get(before).map_or(0, |s| s.seq);
            if let Some(offset) = seek_in(&self.dir, seq, &reader, timestamp)? {
                return Ok(Some(Position::of(seq, offset)));
            }
        }
        if let Some((at, _)) = holding(lo, &mut opened)? {
            // Every event of the segments before is earlier; but if segments are missing
            // between the one before and the one found (damage: retention only takes
            // the oldest), the first event at or after `timestamp` may have been in one
            // of them.
            let from = lo.saturating_sub(1);
            let between = segments.get(from..=at).unwrap_or_default();
            if between
                .windows(2)
                .any(|pair| matches!(pair, [a, b] if a.seq.checked_add(1) != Some(b.seq)))
            {
                return Err(Error::NotALog {
                    path: self.dir.clone(),
                    reason: "a segment is missing from the middle of it",
                });
            }
            let seq = segments.get(at).map_or(0, |s| s.seq);
            return Ok(Some(Position::of(seq, STREAM_HEADER_LEN)));
        }
        Ok(None)
    }

    /// Iterates from the first event at or after `timestamp`.
    ///
    /// # Errors
    /// As [`seek_time`](Self::seek_time).
    pub fn iter_since(&self, timestamp: i64) -> Result<LogIter> {
        // The seek and the iterator's start from one listing, so that retention taking
        // the segment found between the two is a retry, not an error.
        self.relisting(|segments| {
            let position = match self.seek_in_log(segments, timestamp)? {
                Some(position) => position,
                None => end_in(segments)?,
            };
            self.iter_in(segments, position)
        })
    }

    /// The newest `n` events, oldest first (fewer if the log holds fewer).
    ///
    /// Reads only the newest segments: a sealed one from its index's last entries, the
    /// newest by walking its event headers. Costs the same for any number of segments.
    /// Memory grows with the events returned, not with `n`: any `n`, `usize::MAX`
    /// included, asks for at most every event of the log.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if one of those events is damaged.
    pub fn tail(&self, n: usize) -> Result<Vec<LogEvent>> {
        let mut tries = 0;
        self.relisting(|segments| {
            tries += 1;
            self.tail_in(segments, n, tries > RELIST_TRIES)
        })
    }

    /// [`tail`](Self::tail) in the log `segments` lists. A segment gone since is
    /// [`vanished`] (and the caller lists again), unless `last_try`: then the events of
    /// the segments after it are the answer, retention having taken every older one.
    fn tail_in(
        &self,
        segments: &[SegmentEntry],
        n: usize,
        last_try: bool,
    ) -> Result<Vec<LogEvent>> {
        // Grown as events are found: `n` is the caller's, and may be any number.
        let mut found: VecDeque<LogEvent> = VecDeque::new();
        for entry in segments.iter().rev() {
            let need = n - found.len();
            if need == 0 {
                break;
            }
            let reader = match entry.open() {
                Ok(reader) => Arc::new(reader),
                // Retention took it meanwhile: nothing older is left either.
                Err(e) if vanished(&e) && last_try && !found.is_empty() => break,
                Err(e) => return Err(e),
            };
            let end = reader.write_offset();
            let start = match SegmentIndex::load(&self.dir, entry.seq, &reader) {
                Some((index, _)) => {
                    let keep = index.entries.partition_point(|e| {
                        e.ordinal.saturating_add(need as u64) <= index.event_count
                    });
                    keep.checked_sub(1)
                        .and_then(|i| index.entries.get(i))
                        .map_or(STREAM_HEADER_LEN, |e| e.offset)
                }
                None => STREAM_HEADER_LEN,
            };
            let mut offsets = last_offsets(&reader, start, need)?;
            if offsets.len() < need && start > STREAM_HEADER_LEN {
                // The index's ordinals were wrong: count from the start instead.
                offsets = last_offsets(&reader, STREAM_HEADER_LEN, need)?;
            }
            let mut previous = i64::MIN;
            let mut events = Vec::with_capacity(offsets.len());
            for offset in offsets {
                let view = reader.read_at(offset, end, previous)?;
                previous = view.timestamp();
                events.push(LogEvent {
                    segment: Arc::clone(&reader),
                    position: Position::of(entry.seq, offset),
                    timestamp: view.timestamp(),
                    checksum: view.checksum(),
                    len: view.payload().len(),
                });
            }
            for event in events.into_iter().rev() {
                found.push_front(event);
            }
        }
        Ok(found.into())
    }

    /// A summary: segments, events, disk use, time span, whether a writer is active, and
    /// which cursors hold retention back.
    ///
    /// Lists the directory and reads the oldest and newest segments, the cursors, and,
    /// with an age limit, the index of each segment the limits would delete.
    ///
    /// # Errors
    /// As [`tail`](Self::tail).
    pub fn stat(&self) -> Result<LogStat> {
        self.relisting(|segments| self.stat_in(segments))
    }

    /// [`stat`](Self::stat) of the log `segments` lists; a segment gone since is
    /// [`vanished`].
    fn stat_in(&self, segments: &[SegmentEntry]) -> Result<LogStat> {
        let (Some(first), Some(newest)) = (segments.first(), segments.last()) else {
            return Err(Error::NotALog {
                path: self.dir.clone(),
                reason: "it has no segment",
            });
        };
        let newest_reader = newest.open()?;
        let end = newest_reader.live_write_offset()?;
        // The oldest event: in the first segment, unless that one is empty (sealed behind
        // its writer's back while it held no event, and rolled out of).
        let mut first_event_timestamp = None;
        for entry in segments {
            first_event_timestamp = first_timestamp(&entry.open()?)?;
            if first_event_timestamp.is_some() {
                break;
            }
        }
        let last_timestamp = self
            .tail_in(segments, 1, false)?
            .first()
            .map(LogEvent::timestamp);
        let spare = self.dir.join(segment::next_name(newest.seq + 1));
        let spare_bytes = match std::fs::symlink_metadata(&spare) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io("stat", &spare, e)),
        };
        let held = retention::holds(&self.dir, segments, &self.options, now_nanos())?;
        // The events of segments missing from the middle (damage: retention never leaves
        // such a gap) lie between the end of the segment before the gap and the first
        // index of the one after it.
        let mut missing: u64 = 0;
        for pair in segments.windows(2) {
            if let [before, after] = pair
                && after.seq > before.seq + 1
            {
                let end = before
                    .base
                    .saturating_add(before.open()?.header_event_count());
                missing = missing.saturating_add(after.base.saturating_sub(end));
            }
        }
        Ok(LogStat {
            segments: segments.len() as u64,
            first_segment: first.seq,
            last_segment: newest.seq,
            events: (newest
                .base
                .saturating_add(newest_reader.header_event_count()))
            .saturating_sub(first.base)
            .saturating_sub(missing),
            first_event: first.base,
            disk_bytes: (segments.len() as u64)
                .saturating_mul(self.options.segment_size)
                .saturating_add(spare_bytes),
            spare_bytes,
            newest_write_offset: end,
            first_timestamp: first_event_timestamp,
            last_timestamp,
            start: Position::of(first.seq, STREAM_HEADER_LEN),
            end: Position::of(newest.seq, end),
            writer_active: self.writer_active()?,
            held,
        })
    }

    /// Whether a writer, in any process, has the log open now.
    ///
    /// # Errors
    /// [`Error::Io`] if the lock file cannot be probed.
    pub fn writer_active(&self) -> Result<bool> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(LOCK_FILE);
        // Without blocking: a `LOCK` that is a FIFO would wait for a writer to its other end.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path);
        match opened {
            Ok(file) => writer_lock_held(&file).map_err(|e| Error::io("probe lock of", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("open", &path, e)),
        }
    }

    /// Events and bytes from `position` to the end of the log.
    ///
    /// Reads the position's segment from the position on (or, if it is sealed, at most
    /// 64 KiB of it through its index) and the header of every later segment: the cost
    /// grows with the lag, not with the log.
    ///
    /// # Errors
    /// As [`iter_from`](Self::iter_from).
    pub fn lag(&self, position: Position) -> Result<Lag> {
        self.relisting(|segments| self.lag_in(segments, position))
    }

    /// [`lag`](Self::lag) in the log `segments` lists: the position's segment gone since
    /// is [`Error::Retired`], a later one [`vanished`] (so that the caller lists again
    /// and finds the position retired, or not).
    fn lag_in(&self, segments: &[SegmentEntry], position: Position) -> Result<Lag> {
        let at = self.find(segments, position)?;
        let mut lag = Lag::default();
        let (Some(entry), Some(newest)) = (segments.get(at), segments.last()) else {
            return Ok(lag);
        };
        let reader = open_segment(entry, position, segments.first())?;
        let end = reader.live_write_offset()?;
        // The positions `iter_from` takes, and no others.
        if position.offset() < STREAM_HEADER_LEN || position.offset() > end {
            return Err(Error::NoSuchPosition {
                position,
                end: end_in(segments).unwrap_or(Position::of(entry.seq, end)),
            });
        }
        let offset = position.offset();
        lag.bytes = end - offset;
        let index = if entry.seq == newest.seq {
            None // the newest segment has no index yet
        } else {
            SegmentIndex::load(&self.dir, entry.seq, &reader)
        };
        lag.events = match index {
            Some((index, _)) => {
                let from = index.at_or_before(offset);
                let (start, ordinal) =
                    from.map_or((STREAM_HEADER_LEN, 0), |e| (e.offset, e.ordinal));
                let before = reader
                    .iter_unverified_from(start)?
                    .take_while(|e| e.as_ref().is_ok_and(|e| e.offset() < offset));
                // A valid index that counts fewer events than the segment holds gives
                // a lag too small, never a wrong sign.
                index
                    .event_count
                    .saturating_sub(ordinal.saturating_add(before.count() as u64))
            }
            None => reader.iter_unverified_from(offset)?.count() as u64,
        };
        for later in segments.iter().skip(at + 1) {
            let reader = later.open()?;
            lag.bytes = lag
                .bytes
                .saturating_add(reader.live_write_offset()? - STREAM_HEADER_LEN);
        }
        if let Some(next) = segments.get(at + 1) {
            let newest_reader = newest.open()?;
            lag.events = lag.events.saturating_add(
                (newest
                    .base
                    .saturating_add(newest_reader.header_event_count()))
                .saturating_sub(next.base),
            );
        }
        Ok(lag)
    }

    /// The position saved under cursor `name`, or `None` if it was never committed.
    ///
    /// # Errors
    /// [`Error::BadCursor`] for an invalid name or a damaged cursor file.
    pub fn cursor(&self, name: &str) -> Result<Option<Position>> {
        cursor::load(&self.dir, name)
    }

    /// Saves `position` (the next event to consume: [`LogEvent::next_position`] of the
    /// last event processed, see there) under cursor `name`, durably: when this returns, the cursor survives power loss. A crash
    /// during the commit leaves the old position or the new one.
    ///
    /// Delivery is at least once: a consumer that crashes after processing an event but
    /// before committing sees it again. For exactly once, store the position in the same
    /// transaction as the consumer's own state (a database row, a file written with
    /// rename) and resume from there instead of from the cursor.
    ///
    /// The position must be one [`iter_from`](Self::iter_from) takes (in a segment of the
    /// log, from its first event's offset to its end), or one in a segment retention
    /// deleted since (the cursor then reads as [`Error::Retired`]). A position inside an
    /// event is not looked for, which would take a read of the segment from its start:
    /// reading from such a cursor fails with [`Error::Corrupt`] at that offset.
    ///
    /// # Errors
    /// [`Error::BadCursor`] for an invalid name; [`Error::NoSuchPosition`] for a position
    /// past the end of the log or of its segment, or inside a segment's header, with
    /// nothing written; [`Error::Io`] if the file cannot be written and synced.
    ///
    /// # Examples
    /// A consumer that resumes where it stopped:
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// # let mut log = evstream::LogWriter::create(&path, evstream::LogOptions::default().segment_size(1 << 20))?;
    /// # for t in 0..10 { log.append(t, b"event")?; }
    /// let reader = evstream::LogReader::open(&path)?;
    /// let mut events = reader.iter_cursor("billing")?; // from the start the first time
    /// for event in events.by_ref().take(3) {
    ///     let event = event?;
    ///     // ... process it, then:
    ///     reader.commit_cursor("billing", event.next_position())?;
    /// }
    /// assert_eq!(reader.lag(reader.cursor("billing")?.expect("committed"))?.events, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit_cursor(&self, name: &str, position: Position) -> Result<()> {
        cursor::check_name(name)?;
        match self.iter_from(position) {
            Ok(_) | Err(Error::Retired { .. }) => cursor::store(&self.dir, name, position),
            Err(e) => Err(e),
        }
    }

    /// Commits cursor `name` past `event`, once it is processed: the same as
    /// `commit_cursor(name, event.next_position())` ([`LogEvent::next_position`] says
    /// why that position).
    ///
    /// # Errors
    /// As [`commit_cursor`](Self::commit_cursor).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// # let mut log = evstream::LogWriter::create(&path, evstream::LogOptions::default().segment_size(1 << 20))?;
    /// # for t in 0..3 { log.append(t, b"event")?; }
    /// let reader = evstream::LogReader::open(&path)?;
    /// for event in reader.iter_cursor("billing")? {
    ///     let event = event?;
    ///     // ... process it, then:
    ///     reader.commit_after("billing", &event)?;
    /// }
    /// assert_eq!(reader.iter_cursor("billing")?.count(), 0); // all consumed
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit_after(&self, name: &str, event: &LogEvent) -> Result<()> {
        // The position after an event read from this log: no need to look for it.
        cursor::store(&self.dir, name, event.next_position())
    }

    /// Deletes cursor `name`; `false` if there was none.
    ///
    /// # Errors
    /// [`Error::BadCursor`] for an invalid name; [`Error::Io`].
    pub fn remove_cursor(&self, name: &str) -> Result<bool> {
        cursor::remove(&self.dir, name)
    }

    /// Every cursor and its position (or why its file could not be read).
    ///
    /// # Errors
    /// [`Error::Io`] if the cursor directory cannot be listed.
    pub fn cursors(&self) -> Result<Vec<(String, Result<Position>)>> {
        cursor::all(&self.dir)
    }

    /// Iterates from cursor `name`'s position, or from the start if it was never
    /// committed. Commit as you go with [`commit_cursor`](Self::commit_cursor).
    ///
    /// # Errors
    /// As [`cursor`](Self::cursor) and [`iter_from`](Self::iter_from): a cursor whose
    /// segment retention deleted gives [`Error::Retired`].
    pub fn iter_cursor(&self, name: &str) -> Result<LogIter> {
        match self.cursor(name)? {
            Some(position) => self.iter_from(position),
            None => self.iter(),
        }
    }

    /// The lag of cursor `name`, or `None` if it was never committed.
    ///
    /// # Errors
    /// As [`cursor`](Self::cursor) and [`lag`](Self::lag).
    pub fn cursor_lag(&self, name: &str) -> Result<Option<Lag>> {
        self.cursor(name)?.map(|p| self.lag(p)).transpose()
    }

    /// Checks every event of every segment, and that the segments follow each other:
    /// consecutive sequence numbers, each first-event index the one after the events
    /// before it, and timestamps that never decrease from one segment to the next.
    ///
    /// A segment that retention deletes while the check runs is passed over, with the
    /// older ones it already took: the check goes on with the segments after it.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::BadHeader`] for a segment that cannot be opened.
    pub fn verify(&self) -> Result<LogVerification> {
        self.relisting(|segments| self.verify_in(segments))
    }

    /// [`verify`](Self::verify) of the log `segments` lists, passing over the segments
    /// retention takes meanwhile; [`vanished`] if it took every one of them.
    fn verify_in(&self, segments: &[SegmentEntry]) -> Result<LogVerification> {
        let mut taken = None;
        let mut result = LogVerification {
            segments: 0,
            events: 0,
            damage: None,
        };
        let mut expected: Option<(u64, u64)> = None;
        // The last event's timestamp so far: timestamps never decrease along the log,
        // across segments too, as its iterators check.
        let mut last: Option<i64> = None;
        for entry in segments {
            let start = Position::of(entry.seq, STREAM_HEADER_LEN);
            if let Some((seq, base)) = expected {
                if entry.seq != seq {
                    result.damage = Some((start, LogDamage::MissingSegment));
                    break;
                }
                if entry.base != base {
                    result.damage = Some((
                        start,
                        LogDamage::Discontinuity {
                            named: entry.base,
                            expected: base,
                        },
                    ));
                    break;
                }
            }
            let reader = match entry.open() {
                Ok(reader) => reader,
                // Retention took it since the listing, and every segment before it:
                // what is left starts after it. A segment missing from the middle of
                // the log is reported.
                Err(e) if vanished(&e) && self.retired(entry.seq)? => {
                    expected = None;
                    taken = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let check = reader.verify()?;
            // An intact first event older than the event before it (in the segment
            // before): damage at the segment's start, where the iterators stop too.
            if let (Some(previous), Some(got)) = (last, check.first_timestamp)
                && got < previous
            {
                result.damage = Some((
                    start,
                    LogDamage::Event(Corruption::TimestampOutOfOrder { previous, got }),
                ));
                break;
            }
            result.segments += 1;
            result.events = result.events.saturating_add(check.events);
            if let Some((offset, reason)) = check.damage {
                result.damage = Some((Position::of(entry.seq, offset), LogDamage::Event(reason)));
                break;
            }
            if !check.is_ok() {
                result.damage = Some((start, LogDamage::CountMismatch));
                break;
            }
            last = check.last_timestamp.or(last);
            expected = Some((entry.seq + 1, entry.base.saturating_add(check.events)));
        }
        match taken {
            Some(e) if result.segments == 0 && result.damage.is_none() => Err(e),
            _ => Ok(result),
        }
    }
}

/// The device and inode of the directory at `dir`, if it can be read.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Opens a segment's reader; a segment deleted meanwhile is reported as retired.
fn open_segment(
    entry: &SegmentEntry,
    position: Position,
    first: Option<&SegmentEntry>,
) -> Result<StreamReader> {
    entry.open().map_err(|e| {
        if vanished(&e) {
            retired_error(position, first)
        } else {
            e
        }
    })
}

/// The error for `position`, whose segment retention took: the log now starts after
/// it, at `first` of a listing if that is later.
fn retired_error(position: Position, first: Option<&SegmentEntry>) -> Error {
    let after = position.segment().saturating_add(1);
    Error::Retired {
        position,
        first_segment: first.map_or(after, |f| f.seq.max(after)),
    }
}

/// The position just past the newest event of the log `segments` lists; its newest
/// segment gone since is [`vanished`].
fn end_in(segments: &[SegmentEntry]) -> Result<Position> {
    let Some(newest) = segments.last() else {
        return Ok(Position::of(0, STREAM_HEADER_LEN));
    };
    let reader = newest.open()?;
    Ok(Position::of(newest.seq, reader.live_write_offset()?))
}

/// The offsets of the last `n` events of a segment from `start` on (headers walked,
/// checksums not checked).
fn last_offsets(reader: &StreamReader, start: u64, n: usize) -> Result<VecDeque<u64>> {
    // Grown as events are found, never sized by `n`, which may be any number.
    let mut offsets: VecDeque<u64> = VecDeque::new();
    for event in reader.iter_unverified_from(start)? {
        let event = event?;
        if offsets.len() == n {
            offsets.pop_front();
        }
        offsets.push_back(event.offset());
    }
    Ok(offsets)
}

/// The timestamp of a segment's first event, `None` if it has none.
fn first_timestamp(reader: &StreamReader) -> Result<Option<i64>> {
    let end = reader.live_write_offset()?;
    if end <= STREAM_HEADER_LEN {
        return Ok(None);
    }
    reader
        .read_at(STREAM_HEADER_LEN, end, i64::MIN)
        .map(|e| Some(e.timestamp()))
}

/// The offset of the first event at or after `timestamp` in one segment.
fn seek_in(dir: &Path, seq: u64, reader: &StreamReader, timestamp: i64) -> Result<Option<u64>> {
    let end = reader.write_offset();
    let Some((index, _)) = SegmentIndex::load(dir, seq, reader) else {
        return reader.seek_time(timestamp);
    };
    // Scanning from the first event needs no trust in the index; an entry is trusted
    // only if the event it points to is there, intact, and has the timestamp it claims.
    let start = match index.start_for(timestamp) {
        None => STREAM_HEADER_LEN,
        Some(entry) => match reader.read_at(entry.offset, end, i64::MIN) {
            Ok(event) if event.timestamp() == entry.timestamp => entry.offset,
            _ => return reader.seek_time(timestamp),
        },
    };
    let (mut offset, mut previous) = (start, i64::MIN);
    while offset < end {
        let event = reader.read_at(offset, end, previous)?;
        if event.timestamp() >= timestamp {
            return Ok(Some(offset));
        }
        previous = event.timestamp();
        offset = event.next_offset();
    }
    Ok(None)
}

/// Iterates a log across segments, and follows it; see [`LogReader::iter`].
///
/// As an [`Iterator`] it yields every event published when it gets there and ends at the
/// newest (an error ends it too). [`next_timeout`](Self::next_timeout) waits for new
/// events instead, following the writer across rolls: at the end of a segment that has a
/// successor it moves on, never waits.
///
/// A follower waits at the end of the newest segment as a stream's [`Follow`](crate::Follow)
/// does, by its [`WaitStrategy`] (default [`Block`](WaitStrategy::Block): asleep on the
/// segment's futex, woken by the writer's publish, and by the roll that retires the
/// segment, so it moves to the successor at once).
#[derive(Debug)]
pub struct LogIter {
    dir: PathBuf,
    /// The directory's device and inode when the iterator started: another directory at
    /// its path later is another log, whose segments are not this one's successors.
    dir_identity: Option<(u64, u64)>,
    segments: Vec<SegmentEntry>,
    seq: u64,
    /// The log-wide index of the current segment's first event (from its name).
    base: u64,
    current: Arc<StreamReader>,
    offset: u64,
    previous: i64,
    listed: Instant,
    /// The directory's modification time at the last listing, if it was old enough then
    /// to tell a later change ([`MTIME_SETTLED`]): while it stays the same, no segment
    /// came or went, and a follower need not list again ([`RELIST_ANYWAY`]).
    listed_stamp: Option<SystemTime>,
    done: bool,
    strategy: WaitStrategy,
    /// Sleeps on the current segment's wait words.
    sleeper: Sleeper,
    /// The successor's file was seen: list the directory at the next look.
    rolled: bool,
    /// The current segment is sealed and a listing made since the seal was seen found no
    /// successor: it was sealed behind its writer's back (`StreamWriter::seal` on the
    /// newest segment), and the next writer's roll, which wakes its followers, brings the
    /// next event. Until then its seal is no reason not to wait.
    sealed_alone: bool,
}

impl LogIter {
    /// The position of the next event this iterator returns.
    pub fn position(&self) -> Position {
        Position::of(self.seq, self.offset)
    }

    /// Sets how [`next_timeout`](Self::next_timeout) waits at the end of the log (the
    /// default is [`WaitStrategy::Block`]).
    ///
    /// # Examples
    /// ```
    /// use evstream::{LogOptions, LogReader, LogWriter, WaitStrategy};
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// let _log = LogWriter::create(&path, LogOptions::default())?;
    /// let reader = LogReader::open(&path)?;
    /// let follow = reader.iter_from(reader.end()?)?.with_strategy(WaitStrategy::BusySpin);
    /// assert_eq!(follow.strategy(), WaitStrategy::BusySpin);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How [`next_timeout`](Self::next_timeout) waits.
    pub fn strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// The next event if one is published now, without waiting.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged event, [`Error::Regressed`] if a writer's
    /// recovery moved a segment's end back under this iterator, [`Error::Retired`] if
    /// retention deleted the segments it was about to read; [`Error::Io`]
    /// ([`NotFound`](std::io::ErrorKind::NotFound)) once the log's directory was deleted,
    /// or another directory (another log) is at its path.
    pub fn try_next(&mut self) -> Result<Option<LogEvent>> {
        self.step(true)
    }

    /// The next event, waiting up to `timeout` for the writer to publish one (also in a
    /// segment it has not rolled to yet). `Ok(None)` means the time passed; call again to
    /// keep waiting.
    ///
    /// How it waits is the [strategy](Self::with_strategy). With the default it sleeps
    /// on the newest segment's futex until the writer publishes or rolls (on Linux, with
    /// write permission on the segment; otherwise it polls about every half
    /// millisecond), so an idle follower takes no CPU and a new event, or the roll to a
    /// new segment, wakes it at once.
    ///
    /// # Errors
    /// As [`try_next`](Self::try_next).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<LogEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut spins = 0u32;
        loop {
            if let Some(event) = self.step(false)? {
                return Ok(Some(event));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if self.strategy.blocks_after(spins) {
                self.block(left);
            } else {
                spins = spins.saturating_add(1);
                if spins.is_multiple_of(SPINS_PER_PROBE) && self.successor_named() {
                    self.rolled = true;
                }
                std::hint::spin_loop();
            }
        }
    }

    /// Registers as a waiter on the current segment without sleeping, for a thread that
    /// sleeps for many followers ([`WaitTicket::wait_any`]); `None` if there is no need
    /// to wait: an event is published past [`position`](Self::position), the segment is
    /// sealed, or its successor is there (call [`try_next`](Self::try_next)). A sealed
    /// segment that `try_next` found without a successor (the newest segment, sealed
    /// behind its writer's back) is waited on: the next writer's roll out of it wakes
    /// the ticket.
    ///
    /// The ticket is taken as [`next_timeout`](Self::next_timeout) goes to sleep
    /// (register, then look once more), so the writer's next publish, seal or roll wakes
    /// it; then look again with `try_next`. Like `next_timeout`, it relies on the
    /// successor's name the writer gives it at a roll.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use evstream::{LogOptions, LogReader, LogWriter};
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("app");
    /// let mut log = LogWriter::create(&path, LogOptions::default())?;
    /// let reader = LogReader::open(&path)?;
    /// let mut follow = reader.iter_from(reader.end()?)?;
    /// let ticket = follow.wait_ticket().expect("nothing to read yet");
    /// log.append(1, b"hello")?;
    /// ticket.wait(Some(Duration::from_secs(5)));
    /// assert!(ticket.is_woken());
    /// assert_eq!(follow.try_next()?.expect("the event").payload(), b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_ticket(&mut self) -> Option<WaitTicket> {
        let current = Arc::clone(&self.current);
        let offset = self.offset;
        let mut rolled = false;
        let this = &*self;
        let ticket = WaitTicket::take(current.wait_map(), || {
            // As in `block`: the writer renames the successor into place before it wakes
            // the retired segment's followers.
            current
                .live_write_offset()
                .map_or(true, |end| end != offset)
                || (current.is_sealed() && !this.sealed_alone)
                || {
                    rolled = this.successor_named();
                    rolled
                }
        });
        self.rolled |= rolled;
        ticket
    }

    /// Sleeps on the current segment until its writer publishes, seals or rolls, `left`
    /// passes, or a spurious wake.
    fn block(&mut self, left: Option<Duration>) {
        let current = Arc::clone(&self.current);
        let offset = self.offset;
        let mut rolled = false;
        let mut sleeper = std::mem::take(&mut self.sleeper);
        let this = &*self;
        sleeper.block(&current, left, || {
            // After registering: the writer renames the successor into place before it
            // wakes the retired segment's followers, so either that wake finds this
            // follower registered or the successor's name is there to be seen now.
            current
                .live_write_offset()
                .map_or(true, |end| end != offset)
                || (current.is_sealed() && !this.sealed_alone)
                || {
                    rolled = this.successor_named();
                    rolled
                }
        });
        self.sleeper = sleeper;
        self.rolled |= rolled;
    }

    /// Whether the current segment's successor is in the directory under the name the
    /// writer gives it: the next sequence number and the log-wide index that follows
    /// the current segment's last event. One `stat`, no listing.
    fn successor_named(&self) -> bool {
        // Loaded after the caller looked at the write offset: the roll that this looks
        // for comes after the count's last store.
        let count = self.current.live_event_count();
        let name = segment::segment_name(self.seq + 1, self.base.saturating_add(count));
        std::fs::symlink_metadata(self.dir.join(name)).is_ok()
    }

    /// One attempt: the next event in this segment, or a move to the next segment.
    fn step(&mut self, relist: bool) -> Result<Option<LogEvent>> {
        loop {
            let end = self.current.live_write_offset()?;
            if end < self.offset {
                return Err(Error::Regressed {
                    path: self.current.path().to_owned(),
                    was: self.offset,
                    now: end,
                });
            }
            if self.offset < end {
                let view = self.current.read_at(self.offset, end, self.previous)?;
                let event = LogEvent {
                    segment: Arc::clone(&self.current),
                    position: Position::of(self.seq, self.offset),
                    timestamp: view.timestamp(),
                    checksum: view.checksum(),
                    len: view.payload().len(),
                };
                self.previous = view.timestamp();
                self.offset = view.next_offset();
                return Ok(Some(event));
            }
            // A sealed segment takes no more events: its successor exists, look now.
            let sealed = self.current.is_sealed();
            let rolled = std::mem::take(&mut self.rolled);
            let Some(next) = self.successor(relist, sealed || rolled)? else {
                // Sealed, and listed since: no successor yet.
                self.sealed_alone = sealed;
                return Ok(None);
            };
            // The writer stopped writing this segment before its successor appeared, so
            // its end, loaded again now, is final.
            if self.current.live_write_offset()? > self.offset {
                continue;
            }
            if next.seq != self.seq + 1 {
                return Err(self.gap_after(next.seq)?);
            }
            let first = self.segments.first().cloned();
            let position = Position::of(next.seq, STREAM_HEADER_LEN);
            self.current = Arc::new(open_segment(&next, position, first.as_ref())?);
            self.sleeper = Sleeper::default();
            self.sealed_alone = false;
            self.seq = next.seq;
            self.base = next.base;
            self.offset = STREAM_HEADER_LEN;
        }
    }

    /// Why the segment after the current one is not in the directory, the next being
    /// `next`: retention took it, oldest first, so the current one went before it; if the
    /// current one (or an older one) is still listed, one is missing from the middle of
    /// the log, which retention never does.
    #[cold]
    fn gap_after(&mut self, next: u64) -> Result<Error> {
        self.segments = segment::list(&self.dir)?;
        self.listed = Instant::now();
        self.listed_stamp = None;
        if self
            .segments
            .first()
            .is_some_and(|first| first.seq <= self.seq)
        {
            return Ok(Error::NotALog {
                path: self.dir.clone(),
                reason: "a segment is missing from the middle of it",
            });
        }
        Ok(Error::Retired {
            position: Position::of(self.seq + 1, STREAM_HEADER_LEN),
            first_segment: next,
        })
    }

    /// The segment after the current one, listing the directory again if needed: always
    /// if `force` (the current segment was sealed, or its successor's name seen);
    /// otherwise at most every millisecond unless `relist`, and only if the directory
    /// changed since the last listing or [`RELIST_ANYWAY`] passed.
    fn successor(&mut self, relist: bool, force: bool) -> Result<Option<SegmentEntry>> {
        let find =
            |segments: &[SegmentEntry], seq: u64| segments.iter().find(|s| s.seq > seq).cloned();
        if let Some(next) = find(&self.segments, self.seq) {
            return Ok(Some(next));
        }
        if !force && !relist && self.listed.elapsed() < RELIST_EVERY {
            return Ok(None);
        }
        // The directory's time before the listing: a change after this look stamps it
        // anew (once the time is settled), and the next look lists again.
        let stamp = std::fs::metadata(&self.dir)
            .and_then(|meta| meta.modified())
            .ok();
        if !force
            && stamp.is_some()
            && stamp == self.listed_stamp
            && self.listed.elapsed() < RELIST_ANYWAY
        {
            return Ok(None);
        }
        self.segments = segment::list(&self.dir)?;
        self.listed = Instant::now();
        self.listed_stamp =
            stamp.filter(|stamp| stamp.elapsed().is_ok_and(|age| age >= MTIME_SETTLED));
        if dir_identity(&self.dir) != self.dir_identity {
            // Deleted, and another log made at its path (or moved there): no event of
            // this log can come any more.
            self.segments.clear();
            return Err(Error::io(
                "follow",
                &self.dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the log was deleted, and another directory is at its path now",
                ),
            ));
        }
        Ok(find(&self.segments, self.seq))
    }
}

impl Iterator for LogIter {
    type Item = Result<LogEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.try_next().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::LogWriter;

    /// The follower's last look before it sleeps finds the successor under the name the
    /// writer gives it at the roll (its preparing thread renames it right after), and not
    /// before: the check that no roll is missed.
    #[test]
    fn a_follower_finds_its_successor_by_name_once_the_writer_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = LogWriter::create(&path, LogOptions::default().segment_size(4096)).unwrap();
        log.append(0, &[0; 32]).unwrap();
        let reader = LogReader::open(&path).unwrap();
        let mut follow = reader.iter().unwrap();
        assert!(follow.try_next().unwrap().is_some());
        let first = log.segment();
        let mut t = 1;
        while log.segment() == first {
            assert!(!follow.successor_named(), "a successor before the roll");
            log.append(t, &[0; 32]).unwrap();
            t += 1;
        }
        let rolled = std::time::Instant::now();
        while !follow.successor_named() {
            assert!(
                rolled.elapsed() < Duration::from_secs(10),
                "no successor found after the roll"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // And the follower gets there, the event that did not fit first.
        let mut last = 0;
        while let Some(event) = follow.try_next().unwrap() {
            last = event.timestamp();
            assert_eq!(event.position().segment() > first, last == t - 1);
        }
        assert_eq!(last, t - 1);
    }
}
