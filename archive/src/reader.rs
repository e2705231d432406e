//! Reading an archive as a log is read: events with their positions, from the start,
//! from a time or a position, the last N, with range reads of the objects that hold
//! them.

use std::collections::HashMap;
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
use crate::upload::{list, runtime};

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
    /// Segment objects without an index: interrupted uploads, ignored by readers.
    pub incomplete: Vec<String>,
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
    /// Damaged objects: the key and what is wrong.
    pub damaged: Vec<(String, String)>,
}

impl ArchiveVerification {
    /// Whether every object is intact.
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Reads an archive: the segments one listing shows, each read through its index with
/// range reads.
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
    indexes: Mutex<HashMap<u64, Arc<SegmentIndex>>>,
}

impl ArchiveReader {
    /// Lists the archive (one request per thousand objects).
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`] (at once, without retries), or
    /// [`Error::Store`].
    pub fn open(archive: Archive) -> Result<Self> {
        let runtime = runtime()?;
        let present = runtime.block_on(list(&archive, true))?;
        let mut segments = Vec::new();
        let mut incomplete = Vec::new();
        for (seq, p) in present {
            match (p.segment, p.index) {
                (Some((key, len)), Some((index_key, _))) => {
                    let name = index_key.filename().and_then(layout::parse_name);
                    if let Some(layout::Name::Index {
                        base, first, last, ..
                    }) = name
                    {
                        segments.push(ArchivedSegment {
                            seq,
                            base,
                            first_timestamp: first,
                            last_timestamp: last,
                            key: key.to_string(),
                            len,
                            index_key: index_key.to_string(),
                        });
                    }
                }
                (Some((key, _)), None) => incomplete.push(key.to_string()),
                // An index whose segment object is gone (retention interrupted).
                _ => {}
            }
        }
        Ok(Self {
            archive,
            runtime,
            segments,
            incomplete,
            indexes: Mutex::new(HashMap::new()),
        })
    }

    /// The archived segments, oldest first.
    pub fn segments(&self) -> &[ArchivedSegment] {
        &self.segments
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
    /// offset from its index, then range reads from there.
    ///
    /// # Errors
    /// The index object's errors ([`Error::Corrupt`] names it).
    pub fn iter_since(&self, timestamp: i64) -> Result<ArchiveIter<'_>> {
        let at = self.segments.partition_point(|s| {
            s.last_timestamp < timestamp
                || s.first_timestamp == i64::MIN && s.last_timestamp == i64::MIN
        });
        let Some(segment) = self.segments.get(at) else {
            return Ok(ArchiveIter::new(
                self,
                at,
                STREAM_HEADER_LEN,
                Some(timestamp),
            ));
        };
        let index = self.index(segment)?;
        let offset = index
            .start_for(timestamp)
            .map_or(STREAM_HEADER_LEN, |e| e.offset);
        Ok(ArchiveIter::new(self, at, offset, Some(timestamp)))
    }

    /// Events from `position` (an event's start, as [`ArchivedEvent::position`]; a
    /// position in a segment no longer archived starts at the next one there is).
    pub fn iter_from(&self, position: Position) -> ArchiveIter<'_> {
        let at = self
            .segments
            .partition_point(|s| s.seq < position.segment());
        let offset = match self.segments.get(at) {
            Some(s) if s.seq == position.segment() => position.offset().max(STREAM_HEADER_LEN),
            _ => STREAM_HEADER_LEN,
        };
        ArchiveIter::new(self, at, offset, None)
    }

    /// The last `n` events, oldest first, read from the newest segments' ends through
    /// their indexes.
    ///
    /// # Errors
    /// As the iterator's.
    pub fn tail(&self, n: u64) -> Result<Vec<ArchivedEvent>> {
        let mut out: Vec<ArchivedEvent> = Vec::new();
        for at in (0..self.segments.len()).rev() {
            let wanted = n.saturating_sub(out.len() as u64);
            if wanted == 0 {
                break;
            }
            let Some(segment) = self.segments.get(at) else {
                break;
            };
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
            incomplete: self.incomplete.iter().map(|k| self.url(k)).collect(),
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
    /// and CRC-32 against the index, every event's checksum and order, the event count.
    /// `progress` is called after each segment with the segments done and in all.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Denied`]; damage is reported in the result.
    pub fn verify(&self, mut progress: impl FnMut(usize, usize)) -> Result<ArchiveVerification> {
        let mut out = ArchiveVerification::default();
        for key in &self.incomplete {
            out.damaged.push((
                self.url(key),
                "a segment object without its index (an interrupted upload)".into(),
            ));
        }
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
    /// [`Error::Exists`] if `dir` exists; the archive's errors (a damaged object stops
    /// the restore, naming it); the log's errors.
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

/// Why an object is damaged, without its name (for lists that name it).
fn reason(e: &Error) -> String {
    match e {
        Error::Corrupt { offset, reason, .. } => format!("at byte {offset}: {reason}"),
        e => crate::error_chain(e),
    }
}

/// An iterator over an archive's events, in order, verified (checksum and timestamp
/// order). After an error (a damaged object, named), the next call goes on with the
/// next segment, so a caller may report it and continue.
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
        }
    }

    fn next_segment(&mut self) {
        self.at += 1;
        self.offset = STREAM_HEADER_LEN;
        self.buffer = Bytes::new();
        self.buffer_at = 0;
        self.chunk = FIRST_CHUNK;
        self.index = None;
        self.previous = i64::MIN;
        if self.single {
            self.at = usize::MAX;
        }
    }

    fn step(&mut self) -> Result<Option<ArchivedEvent>> {
        loop {
            let Some(segment) = self.reader.segments.get(self.at) else {
                return Ok(None);
            };
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
                if matches!(e, Error::Corrupt { .. }) {
                    self.next_segment();
                } else {
                    self.at = usize::MAX;
                }
                Some(Err(e))
            }
        }
    }
}
