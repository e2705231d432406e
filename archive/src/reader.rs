//! Reading an archive as a log is read: events with their positions, from the start,
//! from a time or a position, the last N, with range reads of the objects that hold
//! them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use evstream::format::STREAM_HEADER_LEN;
use evstream::{LogOptions, LogWriter, Position};
use futures_util::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as Key;

use crate::error::{Error, Result};
use crate::layout::{self, Parse, SegmentIndex};
use crate::store::Archive;
use crate::upload::{Present, listing, runtime};

/// The first range read of a segment; later ones double, up to [`MAX_CHUNK`].
const FIRST_CHUNK: u64 = 128 << 10;
const MAX_CHUNK: u64 = 8 << 20;
/// The largest index object a reader accepts.
const MAX_INDEX: u64 = 512 << 20;

/// One event read from an archive: the same [`Position`] it had in its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    position: Position,
    timestamp: i64,
    checksum: u32,
    payload: Bytes,
}

impl ArchivedEvent {
    /// The event's position in the log it was archived from.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The event's timestamp (Unix nanoseconds).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The checksum stored with the event (verified when the event was read).
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// The event's payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The position just past this event.
    pub fn next_position(&self) -> Position {
        Position::new(
            self.position.segment(),
            self.position.offset() + 16 + self.payload.len() as u64,
        )
        .unwrap_or(self.position)
    }
}

/// One archived segment, as the archive's listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// The segment's sequence number in its log.
    pub seq: u64,
    /// The log-wide index of its first event.
    pub base: u64,
    /// The timestamp of its first event (`i64::MIN` for an empty segment).
    pub first_timestamp: i64,
    /// The timestamp of its last event (`i64::MIN` for an empty segment).
    pub last_timestamp: i64,
    /// The segment object's key.
    pub key: String,
    /// The segment object's length.
    pub len: u64,
    /// The index object's key.
    pub index_key: String,
}

/// Segments missing from an archive between the segments it holds, or after the newest:
/// sequence numbers without their pair of objects, whose events no reader can return.
///
/// The ends of an archive may legitimately hold objects without their pair, and those
/// are not gaps: archive-side retention deletes the oldest segments (the index, then
/// the segment object), so anything below the oldest archived segment is what it left;
/// an upload puts the segment object, then its index, one segment after the other, so
/// one segment object without its index right after the newest archived segment is an
/// upload in progress or interrupted. Any other hole is a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveGap {
    /// The first missing sequence number.
    pub first: u64,
    /// The last missing sequence number.
    pub last: u64,
    /// The objects of the missing segments that are there without their pair, each as
    /// `s3://BUCKET/KEY has no index object` (or `no segment object`).
    pub leftovers: Vec<String>,
}

impl ArchiveGap {
    /// How many segments are missing.
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

impl std::fmt::Display for ArchiveGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "segment {} is missing", self.first)?;
        } else {
            write!(f, "segments {} to {} are missing", self.first, self.last)?;
        }
        if !self.leftovers.is_empty() {
            write!(f, " ({})", self.leftovers.join("; "))?;
        }
        Ok(())
    }
}

/// What [`ArchiveReader::stat`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStat {
    /// Archived segments.
    pub segments: u64,
    /// Bytes in segment objects.
    pub bytes: u64,
    /// Events in all segments.
    pub events: u64,
    /// The first event's timestamp.
    pub first_timestamp: Option<i64>,
    /// The last event's timestamp.
    pub last_timestamp: Option<i64>,
    /// The first segment's sequence number and the last's.
    pub seqs: Option<(u64, u64)>,
    /// Objects without their pair at the archive's ends, left by an upload or by
    /// archive-side retention in progress or interrupted: not read, and not damage.
    pub incomplete: Vec<String>,
    /// Segments missing between the archived ones or after the newest (see
    /// [`ArchiveGap`]).
    pub gaps: Vec<ArchiveGap>,
    /// Objects whose index could not be read (named, with why).
    pub damaged: Vec<(String, String)>,
}

/// What [`ArchiveReader::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveVerification {
    /// Segments whose objects are whole.
    pub good_segments: u64,
    /// Events verified.
    pub events: u64,
    /// Segments missing between the archived ones or after the newest (see
    /// [`ArchiveGap`]).
    pub gaps: Vec<ArchiveGap>,
    /// Damaged objects: the key and what is wrong.
    pub damaged: Vec<(String, String)>,
}

impl ArchiveVerification {
    /// Whether every object is intact and no segment is missing.
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty() && self.gaps.is_empty()
    }
}

/// Reads an archive: the segments one listing shows, each read through its index with
/// range reads.
///
/// Segments missing between the archived ones ([`ArchiveGap`]) are damage: the
/// iterators return [`Error::Missing`] where the missing events would be, `tail`
/// fails, [`verify`](Self::verify) and [`stat`](Self::stat) report them.
///
/// # Examples
/// ```no_run
/// use evstream_archive::{Archive, ArchiveReader, Settings};
/// # fn main() -> evstream_archive::Result<()> {
/// let archive = Archive::connect("s3://events/app", &Settings::default())?;
/// let reader = ArchiveReader::open(archive)?;
/// for event in reader.iter_since(1_714_564_800_000_000_000)?.take(10) {
///     let event = event?;
///     println!("{} {}", event.position(), event.timestamp());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ArchiveReader {
    archive: Archive,
    runtime: tokio::runtime::Runtime,
    segments: Vec<ArchivedSegment>,
    incomplete: Vec<String>,
    gaps: Vec<ArchiveGap>,
    indexes: Mutex<HashMap<u64, Arc<SegmentIndex>>>,
}

impl ArchiveReader {
    /// Lists the archive (one request per thousand objects).
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`] (at once, without retries),
    /// [`Error::NoBucket`], or [`Error::Store`]; [`Error::NoArchive`] if no object
    /// directly under the prefix has an archive's name (a mistyped prefix), with the
    /// prefixes below it that hold an archive, if any.
    pub fn open(archive: Archive) -> Result<Self> {
        let runtime = runtime()?;
        let listing = runtime.block_on(listing(&archive, true))?;
        let bucket = archive.location.bucket().to_owned();
        if listing.present.is_empty() {
            return Err(Error::NoArchive {
                url: archive.location.to_string(),
                nested: listing
                    .nested
                    .iter()
                    .map(|p| format!("s3://{bucket}/{p}"))
                    .collect(),
            });
        }
        let shape = Shape::of(listing.present, |key| format!("s3://{bucket}/{key}"));
        Ok(Self {
            archive,
            runtime,
            segments: shape.segments,
            incomplete: shape.incomplete,
            gaps: shape.gaps,
            indexes: Mutex::new(HashMap::new()),
        })
    }

    /// The archived segments, oldest first.
    pub fn segments(&self) -> &[ArchivedSegment] {
        &self.segments
    }

    /// The segments missing between the archived ones, oldest first.
    pub fn gaps(&self) -> &[ArchiveGap] {
        &self.gaps
    }

    /// The error for the gap that holds sequence number `seq`, if one does.
    fn missing(&self, seq: u64) -> Option<Error> {
        self.gaps
            .iter()
            .find(|g| g.first <= seq && seq <= g.last)
            .map(|gap| Error::Missing {
                url: self.archive.location.to_string(),
                gap: gap.clone(),
            })
    }

    /// `s3://BUCKET/KEY`.
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.archive.location.bucket())
    }

    /// The capacity of the archived log's segment files (from the newest segment's
    /// index), `None` for an empty archive.
    ///
    /// # Errors
    /// The index object's errors.
    pub fn segment_capacity(&self) -> Result<Option<u64>> {
        match self.segments.last() {
            Some(segment) => Ok(Some(self.index(segment)?.capacity)),
            None => Ok(None),
        }
    }

    /// The connection (its request count, its location).
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Every event from the archive's first.
    pub fn iter(&self) -> ArchiveIter<'_> {
        ArchiveIter::new(self, 0, STREAM_HEADER_LEN, None)
    }

    /// Events from the first at or after `timestamp`: the segment from the listing, the
    /// offset from its index, then range reads from there. If segments are missing just
    /// before that segment, and so may have held such events, the first item is
    /// [`Error::Missing`]. If that segment's index is damaged, the next item is
    /// [`Error::Corrupt`] naming it, and reading goes on with the segment after it, as
    /// [`iter`](Self::iter) does.
    ///
    /// # Errors
    /// The index object's errors but damage: [`Error::Unreachable`], [`Error::Denied`],
    /// [`Error::Store`].
    pub fn iter_since(&self, timestamp: i64) -> Result<ArchiveIter<'_>> {
        let at = self.segments.partition_point(|s| {
            s.last_timestamp < timestamp
                || s.first_timestamp == i64::MIN && s.last_timestamp == i64::MIN
        });
        // Timestamps never decrease along a log: the events of a gap lie between the
        // segment before it and the one after it.
        let before = at.checked_sub(1).and_then(|i| self.segments.get(i));
        let expect = match (before, self.segments.get(at)) {
            (Some(before), Some(segment)) if timestamp <= segment.first_timestamp => {
                Some(before.seq + 1)
            }
            (Some(before), None) => Some(before.seq + 1),
            _ => None,
        };
        let Some(segment) = self.segments.get(at) else {
            let mut iter = ArchiveIter::new(self, at, STREAM_HEADER_LEN, Some(timestamp));
            iter.expect = expect;
            return Ok(iter);
        };
        let (offset, damage) = match self.index(segment) {
            Ok(index) => (
                index
                    .start_for(timestamp)
                    .map_or(STREAM_HEADER_LEN, |e| e.offset),
                None,
            ),
            // A damaged index is the iterator's to report: it then goes on with the next
            // segment, whose events are as readable as ever.
            Err(e @ Error::Corrupt { .. }) => (STREAM_HEADER_LEN, Some(e)),
            Err(e) => return Err(e),
        };
        let mut iter = ArchiveIter::new(self, at, offset, Some(timestamp));
        iter.expect = expect;
        iter.damage = damage;
        Ok(iter)
    }

    /// Events from `position` (an event's start, as [`ArchivedEvent::position`]). A
    /// position before the oldest archived segment (deleted by archive-side retention)
    /// starts at the oldest; a position in a gap starts with [`Error::Missing`], then
    /// the segment after the gap.
    pub fn iter_from(&self, position: Position) -> ArchiveIter<'_> {
        let at = self
            .segments
            .partition_point(|s| s.seq < position.segment());
        let offset = match self.segments.get(at) {
            Some(s) if s.seq == position.segment() => position.offset().max(STREAM_HEADER_LEN),
            _ => STREAM_HEADER_LEN,
        };
        let mut iter = ArchiveIter::new(self, at, offset, None);
        if self
            .segments
            .first()
            .is_some_and(|oldest| oldest.seq <= position.segment())
        {
            iter.expect = Some(position.segment());
        }
        iter
    }

    /// The last `n` events, oldest first, read from the newest segments' ends through
    /// their indexes.
    ///
    /// # Errors
    /// As the iterator's; [`Error::Missing`] if segments are missing after the newest
    /// archived one, or between two segments the `n` events span.
    pub fn tail(&self, n: u64) -> Result<Vec<ArchivedEvent>> {
        let mut out: Vec<ArchivedEvent> = Vec::new();
        let after_newest = self.segments.last().map_or(0, |s| s.seq + 1);
        if n > 0
            && let Some(e) = self
                .gaps
                .last()
                .filter(|g| g.last >= after_newest)
                .and_then(|g| self.missing(g.last))
        {
            return Err(e);
        }
        for at in (0..self.segments.len()).rev() {
            let wanted = n.saturating_sub(out.len() as u64);
            if wanted == 0 {
                break;
            }
            let Some(segment) = self.segments.get(at) else {
                break;
            };
            if let Some(after) = self.segments.get(at + 1)
                && after.seq != segment.seq + 1
                && let Some(e) = self.missing(segment.seq + 1)
            {
                return Err(e);
            }
            let index = self.index(segment)?;
            let from_ordinal = index.event_count.saturating_sub(wanted);
            let offset = index
                .at_or_before_ordinal(from_ordinal)
                .map_or(STREAM_HEADER_LEN, |e| e.offset);
            let mut events = Vec::new();
            let mut iter = ArchiveIter::new(self, at, offset, None);
            iter.single = true;
            for event in iter {
                events.push(event?);
            }
            let skip = events
                .len()
                .saturating_sub(usize::try_from(wanted).unwrap_or(usize::MAX));
            events.drain(..skip);
            events.append(&mut out);
            out = events;
        }
        Ok(out)
    }

    /// Counts and time span from the indexes (one small read each, several at once).
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`]; a damaged index is reported in
    /// [`ArchiveStat::damaged`].
    pub fn stat(&self) -> Result<ArchiveStat> {
        let mut stat = ArchiveStat {
            incomplete: self.incomplete.clone(),
            gaps: self.gaps.clone(),
            ..ArchiveStat::default()
        };
        let results = self.runtime.block_on(
            futures_util::stream::iter(self.segments.iter())
                .map(|s| async move { (s, self.fetch_index(s).await) })
                .buffered(16)
                .collect::<Vec<_>>(),
        );
        for (segment, index) in results {
            match index {
                Ok(index) => {
                    stat.segments += 1;
                    stat.bytes += segment.len;
                    stat.events += index.event_count;
                    if index.event_count > 0 {
                        stat.first_timestamp.get_or_insert(index.first_timestamp);
                        stat.last_timestamp = Some(index.last_timestamp);
                    }
                    let first = stat.seqs.map_or(segment.seq, |(f, _)| f);
                    stat.seqs = Some((first, segment.seq));
                }
                Err(e @ (Error::Unreachable { .. } | Error::Denied { .. })) => return Err(e),
                Err(e) => stat
                    .damaged
                    .push((self.url(&segment.index_key), reason(&e))),
            }
        }
        Ok(stat)
    }

    /// Reads every object whole and checks it: the index, the segment object's length
    /// and CRC-32 against the index, every event's checksum and order, the event count;
    /// and that no segment is missing between the archived ones ([`ArchiveGap`]).
    /// `progress` is called after each segment with the segments done and in all.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`]; damage is reported in the result.
    pub fn verify(&self, mut progress: impl FnMut(usize, usize)) -> Result<ArchiveVerification> {
        let mut out = ArchiveVerification {
            gaps: self.gaps.clone(),
            ..ArchiveVerification::default()
        };
        for (done, segment) in self.segments.iter().enumerate() {
            match self.verify_segment(segment) {
                Ok(events) => {
                    out.good_segments += 1;
                    out.events += events;
                }
                Err(e @ (Error::Unreachable { .. } | Error::Denied { .. })) => return Err(e),
                Err(e @ Error::Corrupt { .. }) => {
                    let key = match &e {
                        Error::Corrupt { key, .. } => key.clone(),
                        _ => self.url(&segment.key),
                    };
                    out.damaged.push((key, reason(&e)));
                }
                Err(e) => out.damaged.push((self.url(&segment.key), reason(&e))),
            }
            progress(done + 1, self.segments.len());
        }
        Ok(out)
    }

    fn verify_segment(&self, segment: &ArchivedSegment) -> Result<u64> {
        let index = self.index(segment)?;
        let key = Key::from(segment.key.as_str());
        let bytes = self.runtime.block_on(async {
            self.archive.count();
            self.archive
                .store
                .get(&key)
                .await
                .map_err(|e| self.archive.error("read", &key, e))?
                .bytes()
                .await
                .map_err(|e| self.archive.error("read", &key, e))
        })?;
        let corrupt = |offset: u64, reason: String| Error::Corrupt {
            key: self.url(&segment.key),
            offset,
            reason,
        };
        if bytes.len() as u64 != index.len {
            return Err(corrupt(
                bytes.len() as u64,
                format!("{} bytes, the index says {}", bytes.len(), index.len),
            ));
        }
        let crc = crc32fast::hash(&bytes);
        let mut offset = STREAM_HEADER_LEN;
        let mut events = 0u64;
        let mut previous = i64::MIN;
        while offset < index.len {
            let at = usize::try_from(offset).unwrap_or(usize::MAX);
            let rest = bytes.get(at..).unwrap_or_default();
            match layout::parse_event(index.seed, rest, index.len - offset) {
                Parse::Event(e) => {
                    if e.timestamp < previous {
                        return Err(corrupt(offset, "timestamps go backwards".into()));
                    }
                    previous = e.timestamp;
                    events += 1;
                    offset += 16 + e.len as u64;
                }
                Parse::Need(_) => return Err(corrupt(offset, "truncated event".into())),
                Parse::Bad(reason) => return Err(corrupt(offset, reason)),
            }
        }
        if events != index.event_count {
            return Err(corrupt(
                offset,
                format!("{events} events, the index says {}", index.event_count),
            ));
        }
        if crc != index.crc {
            return Err(corrupt(
                0,
                format!("CRC-32 {crc:08x}, the index says {:08x}", index.crc),
            ));
        }
        Ok(events)
    }

    /// Segment `segment`'s index, read once and kept.
    fn index(&self, segment: &ArchivedSegment) -> Result<Arc<SegmentIndex>> {
        if let Some(index) = self
            .indexes
            .lock()
            .ok()
            .and_then(|m| m.get(&segment.seq).cloned())
        {
            return Ok(index);
        }
        let index = self.runtime.block_on(self.fetch_index(segment))?;
        let index = Arc::new(index);
        if let Ok(mut map) = self.indexes.lock() {
            map.insert(segment.seq, Arc::clone(&index));
        }
        Ok(index)
    }

    async fn fetch_index(&self, segment: &ArchivedSegment) -> Result<SegmentIndex> {
        let key = Key::from(segment.index_key.as_str());
        self.archive.count();
        let result = self
            .archive
            .store
            .get(&key)
            .await
            .map_err(|e| self.archive.error("read", &key, e))?;
        let corrupt = |reason: String| Error::Corrupt {
            key: self.url(&segment.index_key),
            offset: 0,
            reason,
        };
        if result.meta.size > MAX_INDEX {
            return Err(corrupt("larger than any index".into()));
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.archive.error("read", &key, e))?;
        let index = SegmentIndex::decode(&bytes).map_err(corrupt)?;
        if index.seq != segment.seq || index.base != segment.base {
            return Err(corrupt("the index describes another segment".into()));
        }
        if index.event_count > 0
            && (index.first_timestamp != segment.first_timestamp
                || index.last_timestamp != segment.last_timestamp)
        {
            return Err(corrupt("the index's times differ from its name".into()));
        }
        if Position::new(segment.seq, index.len).is_none() {
            // No log has such a segment: its events would have no position to print.
            return Err(Error::Corrupt {
                key: self.url(&segment.key),
                offset: 0,
                reason: format!(
                    "segment {} of {} bytes is beyond any log's positions (segment numbers up to {}, segments under 1 TiB)",
                    segment.seq,
                    index.len,
                    Position::from_u64(u64::MAX).segment()
                ),
            });
        }
        if index.len != segment.len {
            return Err(Error::Corrupt {
                key: self.url(&segment.key),
                offset: segment.len,
                reason: format!(
                    "{} bytes, its index says {} (truncated or replaced)",
                    segment.len, index.len
                ),
            });
        }
        Ok(index)
    }

    fn range(&self, segment: &ArchivedSegment, start: u64, end: u64) -> Result<Bytes> {
        let key = Key::from(segment.key.as_str());
        self.runtime.block_on(async {
            self.archive.count();
            self.archive
                .store
                .get_range(&key, start..end)
                .await
                .map_err(|e| self.archive.error("read", &key, e))
        })
    }

    /// Rebuilds a log at `dir` from the archive's events (from `since`, if given), with
    /// `options`; the log is built as `.NAME.restoring` beside it and renamed into place
    /// when complete, so that `dir` never holds part of a restore. Returns the events
    /// appended. Positions are those of the new log.
    ///
    /// # Errors
    /// [`Error::Exists`] if `dir` exists; [`Error::Restoring`] if another restore to
    /// `dir` is under way; the archive's errors (a damaged object or a
    /// missing segment, [`Error::Missing`], stops the restore, naming it); the log's
    /// errors.
    pub fn restore(&self, dir: &Path, since: Option<i64>, options: LogOptions) -> Result<u64> {
        if std::fs::symlink_metadata(dir).is_ok() {
            return Err(Error::Exists {
                path: dir.to_owned(),
            });
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.with_file_name(format!(".{name}.restoring"));
        if temp.join("LOG").is_file() {
            // What a killed restore left, unless another restore is building it now:
            // its writer holds that log.
            if evstream::LogReader::open(&temp)
                .and_then(|log| log.writer_active())
                .unwrap_or(false)
            {
                return Err(Error::Restoring {
                    path: dir.to_owned(),
                    temp,
                });
            }
            std::fs::remove_dir_all(&temp).map_err(|e| Error::Io {
                op: "remove the unfinished restore",
                path: temp.clone(),
                source: e,
            })?;
        }
        let mut log = LogWriter::create(&temp, options)?;
        let mut count = 0u64;
        let copied = (|| {
            let events = match since {
                Some(t) => self.iter_since(t)?,
                None => self.iter(),
            };
            for event in events {
                let event = event?;
                log.append(event.timestamp(), event.payload())?;
                count += 1;
            }
            log.flush()?;
            Ok(())
        })();
        drop(log);
        if let Err(e) = copied {
            // Nothing of a failed restore stays behind.
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
        if std::fs::symlink_metadata(dir).is_ok() {
            return Err(Error::Exists {
                path: dir.to_owned(),
            });
        }
        std::fs::rename(&temp, dir).map_err(|e| Error::Io {
            op: "rename the restored log into place",
            path: dir.to_owned(),
            source: e,
        })?;
        Ok(count)
    }
}

/// A listing arranged: the archived segments (both objects there), the objects left
/// alone at the ends by an upload or by archive-side retention, and the gaps.
#[derive(Debug, Default)]
struct Shape {
    segments: Vec<ArchivedSegment>,
    incomplete: Vec<String>,
    gaps: Vec<ArchiveGap>,
}

impl Shape {
    /// Arranges the listing `present`, naming keys with `url`.
    ///
    /// Uploads go oldest first, each segment object before its index, and archive-side
    /// retention deletes oldest first, each index before its segment object, never the
    /// newest archived segment. So between the oldest and the newest archived segments
    /// every sequence number has both objects; below the oldest, retention may have left
    /// anything (an interrupted deletion; an index whose segment object went between two
    /// pages of the listing); after the newest, an upload leaves at most the next
    /// segment's object. Everything else is a gap.
    fn of(present: BTreeMap<u64, Present>, url: impl Fn(&Key) -> String) -> Self {
        let complete = |p: &Present| p.segment.is_some() && p.index.is_some();
        let alone = |p: &Present| match (&p.segment, &p.index) {
            (Some((key, _)), None) => Some(format!("{} has no index object", url(key))),
            (None, Some((key, _))) => Some(format!("{} has no segment object", url(key))),
            _ => None,
        };
        let keys = |p: &Present| {
            [
                p.segment.as_ref().map(|(k, _)| url(k)),
                p.index.as_ref().map(|(k, _)| url(k)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
        };
        let mut shape = Self::default();
        let oldest = present.iter().find(|(_, p)| complete(p)).map(|(s, _)| *s);
        let newest = present.iter().rfind(|(_, p)| complete(p)).map(|(s, _)| *s);
        let Some((oldest, newest)) = oldest.zip(newest) else {
            // Nothing archived yet: a lone segment object is the first upload, in
            // progress or interrupted; anything else is what is left of lost segments.
            match (present.first_key_value(), present.last_key_value()) {
                (Some((_, p)), _) if present.len() == 1 && p.index.is_none() => {
                    shape.incomplete = keys(p);
                }
                (Some((&first, _)), Some((&last, _))) => shape.gaps.push(ArchiveGap {
                    first,
                    last,
                    leftovers: present.values().filter_map(alone).collect(),
                }),
                _ => {}
            }
            return shape;
        };
        for p in present.range(..oldest).map(|(_, p)| p) {
            shape.incomplete.extend(keys(p));
        }
        let mut previous: Option<u64> = None;
        let mut leftovers = Vec::new();
        for (&seq, p) in present.range(oldest..=newest) {
            let (Some((key, len)), Some((index_key, _))) = (&p.segment, &p.index) else {
                leftovers.extend(alone(p));
                continue;
            };
            let Some(layout::Name::Index {
                base, first, last, ..
            }) = index_key.filename().and_then(layout::parse_name)
            else {
                // The listing keeps only objects whose names parse.
                leftovers.extend(alone(p));
                continue;
            };
            if let Some(previous) = previous
                && seq != previous + 1
            {
                shape.gaps.push(ArchiveGap {
                    first: previous + 1,
                    last: seq - 1,
                    leftovers: std::mem::take(&mut leftovers),
                });
            }
            previous = Some(seq);
            shape.segments.push(ArchivedSegment {
                seq,
                base,
                first_timestamp: first,
                last_timestamp: last,
                key: key.to_string(),
                len: *len,
                index_key: index_key.to_string(),
            });
        }
        let after: Vec<(u64, &Present)> = present
            .range(newest.saturating_add(1)..)
            .map(|(s, p)| (*s, p))
            .collect();
        match after.as_slice() {
            [] => {}
            [(seq, p)] if *seq == newest + 1 && p.index.is_none() => {
                shape.incomplete.extend(keys(p));
            }
            [.., (last, _)] => shape.gaps.push(ArchiveGap {
                first: newest + 1,
                last: *last,
                leftovers: after.iter().filter_map(|(_, p)| alone(p)).collect(),
            }),
        }
        shape
    }
}

/// Why an object is damaged, without its name (for lists that name it).
fn reason(e: &Error) -> String {
    match e {
        Error::Corrupt { offset, reason, .. } => format!("at byte {offset}: {reason}"),
        e => crate::error_chain(e),
    }
}

/// An iterator over an archive's events, in order, verified (checksum and timestamp
/// order). Where segments are missing ([`ArchiveGap`]) it returns [`Error::Missing`]
/// before the events after them (or at the end, for segments missing after the newest).
/// After a damaged object ([`Error::Corrupt`]) or a gap, the next call goes on with the
/// next segment there is, so a caller may report it and continue.
#[derive(Debug)]
pub struct ArchiveIter<'a> {
    reader: &'a ArchiveReader,
    at: usize,
    offset: u64,
    since: Option<i64>,
    /// The bytes read and where they start in the segment.
    buffer: Bytes,
    buffer_at: u64,
    chunk: u64,
    index: Option<Arc<SegmentIndex>>,
    previous: i64,
    /// Stop at the end of the first segment (for `tail`).
    single: bool,
    /// The sequence number the segment at `at` should have (the one after the segment
    /// read before it), checked once when reading reaches it; `None` when reading
    /// starts there.
    expect: Option<u64>,
    /// The damage found in the segment at `at` before iteration began (its index, by
    /// `iter_since`): returned when reading reaches it.
    damage: Option<Error>,
}

impl<'a> ArchiveIter<'a> {
    fn new(reader: &'a ArchiveReader, at: usize, offset: u64, since: Option<i64>) -> Self {
        Self {
            reader,
            at,
            offset,
            since,
            buffer: Bytes::new(),
            buffer_at: 0,
            chunk: FIRST_CHUNK,
            index: None,
            previous: i64::MIN,
            single: false,
            expect: None,
            damage: None,
        }
    }

    fn next_segment(&mut self) {
        self.expect = self.reader.segments.get(self.at).map(|s| s.seq + 1);
        self.at += 1;
        self.offset = STREAM_HEADER_LEN;
        self.buffer = Bytes::new();
        self.buffer_at = 0;
        self.chunk = FIRST_CHUNK;
        self.index = None;
        self.previous = i64::MIN;
        if self.single {
            self.at = usize::MAX;
            self.expect = None;
        }
    }

    fn step(&mut self) -> Result<Option<ArchivedEvent>> {
        loop {
            let Some(segment) = self.reader.segments.get(self.at) else {
                // Past the newest segment: segments missing after it held the newest
                // events.
                return match self.expect.take().and_then(|seq| self.reader.missing(seq)) {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            };
            if let Some(seq) = self.expect.take()
                && seq != segment.seq
                && let Some(e) = self.reader.missing(seq)
            {
                return Err(e);
            }
            if let Some(e) = self.damage.take() {
                return Err(e);
            }
            let index = match &self.index {
                Some(index) => Arc::clone(index),
                None => {
                    let index = self.reader.index(segment)?;
                    self.index = Some(Arc::clone(&index));
                    index
                }
            };
            if self.offset >= index.len {
                self.next_segment();
                continue;
            }
            let room = index.len - self.offset;
            let mut need = 16u64;
            loop {
                let have_from = self.offset.checked_sub(self.buffer_at);
                let bytes = match have_from {
                    Some(skip) => self.buffer.slice(
                        usize::try_from(skip)
                            .unwrap_or(usize::MAX)
                            .min(self.buffer.len())..,
                    ),
                    None => Bytes::new(),
                };
                if (bytes.len() as u64) < need.min(room) || have_from.is_none() {
                    let end = self
                        .offset
                        .saturating_add(need.max(self.chunk))
                        .min(index.len);
                    self.buffer = self.reader.range(segment, self.offset, end)?;
                    self.buffer_at = self.offset;
                    self.chunk = (self.chunk * 2).min(MAX_CHUNK);
                    if (self.buffer.len() as u64) < (end - self.offset) {
                        return Err(Error::Corrupt {
                            key: self.reader.url(&segment.key),
                            offset: self.offset + self.buffer.len() as u64,
                            reason: "the object ends before its index says".into(),
                        });
                    }
                    continue;
                }
                match layout::parse_event(index.seed, &bytes, room) {
                    Parse::Need(n) => need = n,
                    Parse::Bad(reason) => {
                        return Err(Error::Corrupt {
                            key: self.reader.url(&segment.key),
                            offset: self.offset,
                            reason,
                        });
                    }
                    Parse::Event(e) => {
                        if e.timestamp < self.previous {
                            return Err(Error::Corrupt {
                                key: self.reader.url(&segment.key),
                                offset: self.offset,
                                reason: "timestamps go backwards".into(),
                            });
                        }
                        self.previous = e.timestamp;
                        let position = Position::new(segment.seq, self.offset)
                            .unwrap_or(Position::from_u64(0));
                        let payload = bytes.slice(e.payload_at..e.payload_at + e.len);
                        self.offset += 16 + e.len as u64;
                        if self.since.is_some_and(|since| e.timestamp < since) {
                            break;
                        }
                        self.since = None;
                        return Ok(Some(ArchivedEvent {
                            position,
                            timestamp: e.timestamp,
                            checksum: e.checksum,
                            payload,
                        }));
                    }
                }
            }
        }
    }
}

impl Iterator for ArchiveIter<'_> {
    type Item = Result<ArchivedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(event) => event.map(Ok),
            Err(e) => {
                match e {
                    Error::Corrupt { .. } => self.next_segment(),
                    // Reading goes on with the segment after the gap.
                    Error::Missing { .. } => {}
                    _ => {
                        self.at = usize::MAX;
                        self.expect = None;
                    }
                }
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A listing under prefix `p`: for each sequence number, which of its objects are
    /// there (`s` the segment object, `i` the index).
    fn listing(objects: &[(u64, &str)]) -> BTreeMap<u64, Present> {
        objects
            .iter()
            .map(|&(seq, which)| {
                let base = seq * 100;
                let present = Present {
                    segment: which.contains('s').then(|| {
                        (
                            Key::from(format!("p/{}", layout::segment_name(seq, base))),
                            1000,
                        )
                    }),
                    index: which.contains('i').then(|| {
                        let name = layout::index_name(seq, base, 10, 20);
                        (Key::from(format!("p/{name}")), 20)
                    }),
                };
                (seq, present)
            })
            .collect()
    }

    fn shape(objects: &[(u64, &str)]) -> Shape {
        Shape::of(listing(objects), |key| format!("s3://b/{key}"))
    }

    fn seqs(shape: &Shape) -> Vec<u64> {
        shape.segments.iter().map(|s| s.seq).collect()
    }

    fn gaps(shape: &Shape) -> Vec<(u64, u64, usize)> {
        shape
            .gaps
            .iter()
            .map(|g| (g.first, g.last, g.leftovers.len()))
            .collect()
    }

    #[test]
    fn a_hole_between_archived_segments_is_a_gap() {
        let whole = shape(&[(0, "si"), (1, "si"), (2, "si"), (3, "si")]);
        assert_eq!(seqs(&whole), [0, 1, 2, 3]);
        assert!(whole.gaps.is_empty() && whole.incomplete.is_empty());

        // Both objects gone, the index gone, the segment object gone.
        let holes = shape(&[
            (0, "si"),
            (2, "si"),
            (3, "s"),
            (4, "si"),
            (5, "i"),
            (6, "si"),
        ]);
        assert_eq!(seqs(&holes), [0, 2, 4, 6]);
        assert_eq!(gaps(&holes), [(1, 1, 0), (3, 3, 1), (5, 5, 1)]);
        assert_eq!(
            holes.gaps[1].to_string(),
            "segment 3 is missing (s3://b/p/00000003-00000000000000000300.evs has no index object)"
        );
        assert!(
            holes.gaps[2]
                .to_string()
                .ends_with(".idx has no segment object)")
        );
        let run = shape(&[(0, "si"), (3, "s"), (5, "si")]);
        assert_eq!(gaps(&run), [(1, 4, 1)]);
        assert!(
            run.gaps[0]
                .to_string()
                .starts_with("segments 1 to 4 are missing (")
        );
        // Far apart: the gap is one range, found without walking it.
        let far = shape(&[(0, "si"), (99_999_999, "si")]);
        assert_eq!(gaps(&far), [(1, 99_999_998, 0)]);
    }

    #[test]
    fn what_retention_and_an_upload_leave_at_the_ends_is_not_a_gap() {
        // Below the oldest: retention's leftovers, whatever they are.
        let below = shape(&[(0, "s"), (2, "i"), (3, "si"), (4, "si")]);
        assert_eq!(seqs(&below), [3, 4]);
        assert!(below.gaps.is_empty());
        assert_eq!(below.incomplete.len(), 2);
        // After the newest: the next segment's object, before its index.
        let upload = shape(&[(3, "si"), (4, "si"), (5, "s")]);
        assert!(upload.gaps.is_empty());
        assert_eq!(
            upload.incomplete,
            ["s3://b/p/00000005-00000000000000000500.evs"]
        );
        // The first upload of all.
        let first = shape(&[(0, "s")]);
        assert!(first.segments.is_empty() && first.gaps.is_empty());
        assert_eq!(first.incomplete.len(), 1);
        assert!(shape(&[]).gaps.is_empty());
    }

    #[test]
    fn anything_else_after_the_newest_is_a_gap() {
        // An index without its segment object, a segment object that is not the next,
        // two segment objects.
        assert_eq!(gaps(&shape(&[(3, "si"), (4, "i")])), [(4, 4, 1)]);
        assert_eq!(gaps(&shape(&[(3, "si"), (5, "s")])), [(4, 5, 1)]);
        assert_eq!(gaps(&shape(&[(3, "si"), (4, "s"), (5, "s")])), [(4, 5, 2)]);
        // Nothing archived, but more than one upload's leftovers.
        assert_eq!(gaps(&shape(&[(0, "s"), (1, "s")])), [(0, 1, 2)]);
        assert_eq!(gaps(&shape(&[(0, "i")])), [(0, 0, 1)]);
    }

    /// Every state that uploads and archive-side retention pass through, in the order
    /// `upload.rs` makes their requests, with the archiver killed after any request and
    /// run again: none has a gap, and the archived segments follow each other.
    #[test]
    fn no_state_of_an_upload_or_a_retention_killed_anywhere_is_a_gap() {
        const SEALED: u64 = 25;
        const KEEP: usize = 4;
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        // States with objects left alone below the oldest archived segment, and after
        // the newest: the model reaches both.
        let (mut below, mut after) = (0, 0);
        let mut check = |state: &BTreeMap<u64, String>| {
            let objects: Vec<(u64, &str)> = state.iter().map(|(s, w)| (*s, w.as_str())).collect();
            let shape = shape(&objects);
            assert!(shape.gaps.is_empty(), "{state:?}: {:?}", shape.gaps);
            let seqs = seqs(&shape);
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{state:?}");
            let alone = |seq: &u64| state.get(seq).is_some_and(|w| w.len() == 1);
            below += u32::from(
                seqs.first()
                    .is_some_and(|f| state.keys().any(|s| s < f && alone(s))),
            );
            after += u32::from(seqs.last().is_some_and(|l| alone(&(l + 1))));
        };
        for _ in 0..200 {
            let mut state: BTreeMap<u64, String> = BTreeMap::new();
            let mut cursor = 0;
            let mut steps = 0u64;
            // Runs until one is not killed before it archived every sealed segment.
            'runs: loop {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let kill_at = steps + 1 + (seed >> 33) % 30;
                // The cursor moves on as segments are archived; a run starts from it.
                let start = cursor;
                for seq in start..SEALED {
                    if !state.get(&seq).is_some_and(|w| w.contains('i')) {
                        for object in ["s", "i"] {
                            state.entry(seq).or_default().push_str(object);
                            steps += 1;
                            check(&state);
                            if steps == kill_at {
                                continue 'runs;
                            }
                        }
                    }
                    cursor = seq + 1;
                    loop {
                        let complete: Vec<u64> = state
                            .iter()
                            .filter(|(_, w)| w.contains('s') && w.contains('i'))
                            .map(|(s, _)| *s)
                            .collect();
                        let (Some(&oldest), true) = (complete.first(), complete.len() > KEEP)
                        else {
                            break;
                        };
                        for object in ['i', 's'] {
                            let entry = state.entry(oldest).or_default();
                            *entry = entry.replace(object, "");
                            if entry.is_empty() {
                                state.remove(&oldest);
                            }
                            steps += 1;
                            check(&state);
                            if steps == kill_at {
                                continue 'runs;
                            }
                        }
                    }
                }
                break;
            }
        }
        assert!(below > 0 && after > 0, "{below} {after}");
    }
}
