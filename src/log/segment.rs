//! Segments: their names, the directory scan, and the sparse time index of each sealed one.
//!
//! A segment is named `SSSSSSSS-BBBBBBBBBBBBBBBBBBBB.evs`: its sequence number (8 decimal
//! digits) and the log-wide index of its first event (20 decimal digits), so `ls` lists
//! segments in log order and a directory listing alone tells how many events came before
//! each. The next segment is prepared as `.next-SSSSSSSS.evs`; the writer rolls into it
//! under that name, and its preparing thread renames it into place right after (until
//! then [`list`] gives it as the newest segment once it holds an event). A sealed
//! segment's index is `SSSSSSSS.idx`; see [`SegmentIndex`].

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{I64, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::format::STREAM_HEADER_LEN;
use crate::log::config::{create_temp, sync_dir};
use crate::log::position::MAX_SEGMENT;
use crate::stream::reader::StreamReader;

/// Segment bytes between two entries of a segment's time index.
pub(crate) const INDEX_STRIDE: u64 = 64 << 10;
/// Prefix of the segment a writer prepares ahead of a roll.
pub(crate) const NEXT_PREFIX: &str = ".next-";

/// One segment found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    /// Sequence number: 0 for the log's first segment, one more for each roll.
    pub seq: u64,
    /// Log-wide index of the segment's first event.
    pub base: u64,
    /// The segment file.
    pub path: PathBuf,
}

impl SegmentEntry {
    /// Opens the segment's reader. A segment listed under its preparation name (rolled
    /// into, its rename still to come) and renamed since is opened under its final name.
    ///
    /// # Errors
    /// As [`StreamReader::open`].
    pub(crate) fn open(&self) -> Result<StreamReader> {
        match StreamReader::open(&self.path) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && self.is_pending() =>
            {
                let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
                StreamReader::open(dir.join(segment_name(self.seq, self.base)))
            }
            opened => opened,
        }
    }

    /// Whether the segment is listed under its preparation name: the writer rolled into
    /// it and its rename into place had not happened when the directory was listed.
    pub(crate) fn is_pending(&self) -> bool {
        self.path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(NEXT_PREFIX))
    }
}

/// The file name of segment `seq` whose first event is the log's `base`-th.
pub(crate) fn segment_name(seq: u64, base: u64) -> String {
    format!("{seq:08}-{base:020}.evs")
}

/// The name under which segment `seq` is prepared before it is rolled into place.
pub(crate) fn next_name(seq: u64) -> String {
    format!("{NEXT_PREFIX}{seq:08}.evs")
}

/// The name under which retired segment `seq` waits to be recycled as a later segment:
/// a leftover for the next writer's open to delete (it starts with `.` and
/// [`NEXT_PREFIX`]), never opened by readers.
pub(crate) fn spare_name(seq: u64) -> String {
    format!(".{NEXT_PREFIX}spare-{seq:08}.evs")
}

/// The name under which a writer that hands its turn to a waiting process leaves the
/// retired segment `seq` it kept for recycling, for the next writer: renamed from
/// [`spare_name`] once that writer's preparing thread stopped, so untouched since
/// retention took it out of the log. The next writer's open takes it as a spare
/// ([`remove_leftovers`]); never opened by readers.
pub(crate) fn kept_name(seq: u64) -> String {
    format!(".{NEXT_PREFIX}kept-{seq:08}.evs")
}

/// The sequence number in `name` if it is `prefix`, a decimal number of at least eight
/// digits, and `.evs`.
fn seq_in(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(".evs")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where the spare at `path` (named by [`spare_name`]) is left for the next writer:
/// `None` if it is not so named (a spare kept already, say).
pub(crate) fn kept_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let seq = seq_in(name, &format!(".{NEXT_PREFIX}spare-"))?;
    Some(path.with_file_name(kept_name(seq)))
}

/// The file name of segment `seq`'s time index.
pub(crate) fn index_name(seq: u64) -> String {
    format!("{seq:08}.idx")
}

/// The temporary file segment `seq`'s index is written to before it is renamed into place.
fn index_temp_name(seq: u64) -> String {
    format!(".idx-{seq:08}.tmp")
}

/// Refuses, reading only, an index of segment `seq` that [`SegmentIndex::write`] could
/// not write: one whose path is a directory (a rename cannot replace it), or whose
/// temporary's path holds anything but a regular file. A writer's open checks this
/// before its first repair, so that the index write cannot refuse it halfway.
///
/// # Errors
/// [`Error::Io`], as the write would fail.
pub(crate) fn check_index_writable(dir: &Path, seq: u64) -> Result<()> {
    let path = dir.join(index_name(seq));
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
        return Err(Error::io(
            "write index",
            &path,
            std::io::Error::from(std::io::ErrorKind::IsADirectory),
        ));
    }
    let temp = dir.join(index_temp_name(seq));
    if std::fs::symlink_metadata(&temp).is_ok_and(|m| !m.is_file()) {
        return Err(Error::io(
            "write index",
            &temp,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    Ok(())
}

/// Parses a segment file name; `None` for anything else.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".evs")?;
    let (seq, base) = stem.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq, 8) || !digits(base, 20) {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    (seq <= MAX_SEGMENT).then_some(())?;
    Some((seq, base.parse().ok()?))
}

/// The log's segments, oldest first.
///
/// # Errors
/// [`Error::Io`] if the directory cannot be read; [`Error::NotALog`] if two segments
/// have the same sequence number.
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentEntry>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        if let Some((seq, base)) = name.to_str().and_then(parse_name) {
            segments.push(SegmentEntry {
                seq,
                base,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    if segments
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.seq == b.seq))
    {
        return Err(Error::NotALog {
            path: dir.to_owned(),
            reason: "two segment files have the same sequence number",
        });
    }
    if let Some(pending) = segments.last().and_then(|newest| rolled_into(dir, newest)) {
        segments.push(pending);
    }
    Ok(segments)
}

/// The segment after `newest` if the writer rolled into it under its preparation name
/// and has not renamed it into place yet: `.next-N+1` holding an event (a segment only
/// prepared holds none), its first event the one after `newest`'s last (by `newest`'s
/// header count, final once the writer rolled past it). See FORMAT.md, "Rolling".
/// If the writer renamed it into place while the directory was scanned, the segment
/// under its final name. Errors reading either file are read as "no such segment".
fn rolled_into(dir: &Path, newest: &SegmentEntry) -> Option<SegmentEntry> {
    let seq = newest
        .seq
        .checked_add(1)
        .filter(|&seq| seq <= MAX_SEGMENT)?;
    let path = dir.join(next_name(seq));
    if !std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file()) {
        return renamed_since(dir, newest, seq);
    }
    if !same_boot(dir) {
        return None;
    }
    let Ok(next) = StreamReader::open(&path) else {
        return renamed_since(dir, newest, seq);
    };
    if next.header_event_count() == 0 && next.live_event_count() == 0 {
        return None;
    }
    // Not a file merely under that name: a segment of the same size whose first event
    // is intact and not older than the segment before's first (the writer's open checks
    // it against that segment's last before it adopts it).
    let before = newest.open().ok()?;
    let first = next.iter().next()?.ok()?.timestamp();
    let first_before = before
        .iter()
        .next()
        .and_then(|e| e.ok())
        .map(|e| e.timestamp());
    if next.capacity() != before.capacity() || first_before.is_some_and(|t| first < t) {
        return None;
    }
    let count = before.header_event_count();
    Some(SegmentEntry {
        seq,
        base: newest.base.checked_add(count)?,
        path,
    })
}

/// Segment `seq`, after `newest`, under the name the writer renames it to at a roll
/// (the log-wide index after `newest`'s last event), if it is there: a listing that ran
/// while the writer renamed it misses both its names in the scan, and finds it here.
fn renamed_since(dir: &Path, newest: &SegmentEntry, seq: u64) -> Option<SegmentEntry> {
    let count = newest.open().ok()?.header_event_count();
    let base = newest.base.checked_add(count)?;
    let path = dir.join(segment_name(seq, base));
    std::fs::symlink_metadata(&path)
        .is_ok_and(|meta| meta.is_file())
        .then_some(SegmentEntry { seq, base, path })
}

/// Removes what earlier writers left: prepared segments other than segment `next` (the
/// one the log rolls into next, which the new writer may adopt), spares, creation
/// temporaries, and index temporaries. The spares a writer left for this one
/// ([`kept_name`]) are taken instead: renamed back to their spare names (so that a crash
/// in their recycling leaves a spare for the next open to delete, as any), and returned,
/// oldest first. Only the holder of the log's writer lock calls this, so no live writer
/// owns them, but for index temporaries: a process that had the log before may still be
/// sealing the segments its turn rolled past, and rename its temporary into place while
/// this runs (one gone since the listing is left alone), or find it removed (that
/// segment then has no index, which only spares readers a scan).
pub(crate) fn remove_leftovers(dir: &Path, next: u64) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut removed = false;
    let keep = next_name(next);
    let kept_prefix = format!(".{NEXT_PREFIX}kept-");
    let mut kept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = (name.starts_with(NEXT_PREFIX) && name != keep)
            || name.starts_with(&format!(".{NEXT_PREFIX}"))
            || (name.starts_with(".idx-") && name.ends_with(".tmp"));
        if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Some(seq) = seq_in(&name, &kept_prefix) {
                let spare = dir.join(spare_name(seq));
                if crate::sys::rename_noreplace(&entry.path(), &spare).is_ok() {
                    kept.push((seq, spare));
                    continue;
                }
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed = true,
                // Gone since the listing: an index temporary that another process's
                // sealing thread, sealing after its turn, renamed into place.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", entry.path(), e)),
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    kept.sort_unstable();
    Ok(kept.into_iter().map(|(_, path)| path).collect())
}

/// Where Linux gives the identity of the running boot: a new random UUID at each boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The running boot's identity (see [`BOOT_ID`]), or `None` where it cannot be read.
pub(crate) fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

/// Whether the log's last writer opened it during the running boot: its `LOCK` file
/// holds this boot's identity (FORMAT.md, "The `LOCK` file"). Then no power loss came
/// between that writer's writes and now, and its unflushed page cache is intact. An
/// unreadable, missing or other identity reads as another boot, the safe side.
pub(crate) fn same_boot(dir: &Path) -> bool {
    let Some(now) = boot_id() else {
        return false;
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut held = [0u8; 80];
    // Without blocking: a `LOCK` that is a FIFO would wait for a writer to its other end.
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(dir.join(crate::log::writer::LOCK_FILE))
        .and_then(|mut file| std::io::Read::read(&mut file, &mut held));
    let Ok(len) = read else {
        return false;
    };
    held.get(..len)
        .and_then(|held| std::str::from_utf8(held).ok())
        .is_some_and(|held| held.trim() == now)
}

/// The fixed part of an index file.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct IndexHeader {
    magic: [u8; 8],
    seq: U64,
    write_offset: U64,
    event_count: U64,
    first_timestamp: I64,
    last_timestamp: I64,
    entries: U64,
}

/// One entry of an index file.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawIndexEntry {
    offset: U64,
    timestamp: I64,
    ordinal: U64,
}

const INDEX_MAGIC: [u8; 8] = *b"EVLOGIX1";
const INDEX_HEADER_LEN: usize = size_of::<IndexHeader>();
const INDEX_ENTRY_LEN: usize = size_of::<RawIndexEntry>();

/// A point of a segment the index remembers: an event's offset, timestamp and ordinal
/// (its index within the segment, from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub timestamp: i64,
    pub ordinal: u64,
}

/// The sparse time index of a sealed segment: one entry per [`INDEX_STRIDE`] bytes of
/// events (the first event always has one), the segment's time bounds and event count.
///
/// Written by the writer once the segment is flushed (so an index also tells that the
/// segment was completely flushed), checked in full before use (magic, checksum, the
/// segment's sequence number, write offset and event count, entries in range and in
/// order), and rebuildable from the segment at any time. Readers also check each entry
/// they start from against the event found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub write_offset: u64,
    pub event_count: u64,
    pub entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    /// An empty index for a segment about to receive events.
    pub(crate) fn empty() -> Self {
        Self {
            write_offset: STREAM_HEADER_LEN,
            event_count: 0,
            entries: Vec::new(),
        }
    }

    /// Notes an event appended at `offset`, ending at `end`.
    #[inline]
    pub(crate) fn note(&mut self, offset: u64, end: u64, timestamp: i64) {
        let due = match self.entries.last() {
            Some(last) => offset >= last.offset + INDEX_STRIDE,
            None => true,
        };
        if due {
            self.entries.push(IndexEntry {
                offset,
                timestamp,
                ordinal: self.event_count,
            });
        }
        self.event_count += 1;
        self.write_offset = end;
    }

    /// Builds the index of a segment by reading every event (verified).
    pub(crate) fn build(reader: &StreamReader) -> Result<Self> {
        let mut index = Self::empty();
        for event in reader.iter() {
            let event = event?;
            index.note(event.offset(), event.next_offset(), event.timestamp());
        }
        Ok(index)
    }

    /// Timestamp of the segment's first event.
    pub(crate) fn first_timestamp(&self) -> Option<i64> {
        self.entries.first().map(|e| e.timestamp)
    }

    /// The entry to start a scan from for the first event at or after `timestamp`.
    pub(crate) fn start_for(&self, timestamp: i64) -> Option<IndexEntry> {
        let later = self.entries.partition_point(|e| e.timestamp < timestamp);
        later
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
    }

    /// The last entry at or before `offset`.
    pub(crate) fn at_or_before(&self, offset: u64) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.offset <= offset);
        after
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
    }

    /// Writes the index of segment `seq` into `dir` (temporary file, fsync, rename).
    pub(crate) fn write(&self, dir: &Path, seq: u64, last_timestamp: Option<i64>) -> Result<()> {
        let header = IndexHeader {
            magic: INDEX_MAGIC,
            seq: U64::new(seq),
            write_offset: U64::new(self.write_offset),
            event_count: U64::new(self.event_count),
            first_timestamp: I64::new(self.first_timestamp().unwrap_or(i64::MIN)),
            last_timestamp: I64::new(last_timestamp.unwrap_or(i64::MIN)),
            entries: U64::new(self.entries.len() as u64),
        };
        let mut bytes =
            Vec::with_capacity(INDEX_HEADER_LEN + self.entries.len() * INDEX_ENTRY_LEN + 4);
        bytes.extend_from_slice(header.as_bytes());
        for e in &self.entries {
            let raw = RawIndexEntry {
                offset: U64::new(e.offset),
                timestamp: I64::new(e.timestamp),
                ordinal: U64::new(e.ordinal),
            };
            bytes.extend_from_slice(raw.as_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let path = dir.join(index_name(seq));
        let temp = dir.join(index_temp_name(seq));
        // Refuses anything under that name but an interrupted write's leftover.
        let mut file = create_temp(&temp).map_err(|e| Error::io("write index", &temp, e))?;
        let result = (|| {
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Error::io("write index", &path, e)
        })
    }

    /// Loads and checks segment `seq`'s index against the segment as a reader sees it;
    /// `None` if it is missing, damaged or does not describe this segment. Also returns
    /// the last timestamp it records.
    pub(crate) fn load(
        dir: &Path,
        seq: u64,
        segment: &StreamReader,
    ) -> Option<(Self, Option<i64>)> {
        let path = dir.join(index_name(seq));
        let meta = std::fs::metadata(&path).ok()?;
        let most = INDEX_HEADER_LEN as u64
            + (segment.capacity() / INDEX_STRIDE + 2) * INDEX_ENTRY_LEN as u64
            + 4;
        if !meta.is_file() || meta.len() > most {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let (body, crc) = bytes.split_last_chunk::<4>()?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return None;
        }
        let (header, mut rest) = IndexHeader::read_from_prefix(body).ok()?;
        let write_offset = header.write_offset.get();
        let event_count = header.event_count.get();
        if header.magic != INDEX_MAGIC
            || header.seq.get() != seq
            || write_offset != segment.write_offset()
            || (event_count == 0) != (write_offset == STREAM_HEADER_LEN)
            || rest.len() as u64 != header.entries.get().checked_mul(INDEX_ENTRY_LEN as u64)?
        {
            return None;
        }
        let mut entries = Vec::with_capacity(rest.len() / INDEX_ENTRY_LEN);
        let mut previous: Option<IndexEntry> = None;
        while !rest.is_empty() {
            let (raw, tail) = RawIndexEntry::read_from_prefix(rest).ok()?;
            rest = tail;
            let e = IndexEntry {
                offset: raw.offset.get(),
                timestamp: raw.timestamp.get(),
                ordinal: raw.ordinal.get(),
            };
            let in_order = match previous {
                None => e.offset == STREAM_HEADER_LEN && e.ordinal == 0,
                Some(p) => {
                    e.offset > p.offset && e.timestamp >= p.timestamp && e.ordinal > p.ordinal
                }
            };
            if !in_order || e.offset >= write_offset || e.ordinal >= event_count {
                return None;
            }
            previous = Some(e);
            entries.push(e);
        }
        if entries.is_empty() != (event_count == 0) {
            return None;
        }
        let last = header.last_timestamp.get();
        let last = (event_count > 0).then_some(last);
        Some((
            Self {
                write_offset,
                event_count,
                entries,
            },
            last,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_sort_in_log_order() {
        let a = segment_name(9, 123);
        let b = segment_name(10, 99);
        assert!(a < b);
        assert_eq!(parse_name(&a), Some((9, 123)));
        assert_eq!(parse_name(&b), Some((10, 99)));
        for bad in [
            "00000001.evs",
            "0000001-00000000000000000000.evs",
            "00000001-00000000000000000000.evsx",
            ".next-00000001.evs",
            "99999999-00000000000000000000.evs",
            "0000000a-00000000000000000000.evs",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
