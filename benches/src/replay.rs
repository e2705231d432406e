//! The replay runs: [`ReplayMethod`] with the open timed or not ([`ReplayMode`]), each timed
//! by [`replay_once`], over a file written by [`write_replay_file`].

use std::fs::File;
use std::hint::black_box;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use evstream::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN};
use evstream::stdio::EventReader;
use evstream::{Prefault, Result, StreamReader, StreamWriter, WriterOptions};

use crate::{Workload, io_err};

/// A way of reading every event of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayMethod {
    /// [`StreamReader::iter`](evstream::StreamReader::iter): every checksum checked.
    EvstreamVerified,
    /// [`StreamReader::iter_unverified`](evstream::StreamReader::iter_unverified): bounds checked, checksums not.
    EvstreamUnverified,
    /// [`stdio::EventReader`](evstream::stdio::EventReader) over a `BufReader<File>` (8 KiB): payloads copied into a
    /// reused buffer, every checksum checked. The replay baseline.
    BufReader,
    /// The limit: one CRC-32 pass over the stream's bytes through a read-only mapping, no
    /// parsing. Opened afresh ([`ReplayMode::Open`]) it measures the page faults of mapping
    /// the page-cached file plus the checksum; reused, the checksum over resident pages.
    LimitCrc,
    /// The floor of checking every event on its own: one `crc32fast::hash` call per event
    /// over as many bytes as its checksum covers (its last `12 + size` bytes), walking the
    /// sizes in the headers, through the same mapping as [`LimitCrc`](Self::LimitCrc). No
    /// checksum is compared and nothing is yielded; it counts the events it hashed.
    LimitCrcPerEvent,
}

impl ReplayMethod {
    /// Every replay method, baseline last.
    pub const ALL: [ReplayMethod; 5] = [
        ReplayMethod::LimitCrc,
        ReplayMethod::LimitCrcPerEvent,
        ReplayMethod::EvstreamVerified,
        ReplayMethod::EvstreamUnverified,
        ReplayMethod::BufReader,
    ];

    /// A human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream iter (verified)",
            Self::EvstreamUnverified => "evstream iter_unverified",
            Self::BufReader => "BufReader parse + CRC",
            Self::LimitCrc => "limit: CRC-32 over a fresh mapping",
            Self::LimitCrcPerEvent => "floor: one CRC-32 call per event, fresh mapping",
        }
    }

    /// The name for tables of a [`ReplayMode::Reused`] run.
    pub fn reused_label(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream iter (verified), reader reused",
            Self::EvstreamUnverified => "evstream iter_unverified, reader reused",
            Self::BufReader => "BufReader parse + CRC, file reused",
            Self::LimitCrc => "limit: CRC-32 over the resident mapping",
            Self::LimitCrcPerEvent => "floor: one CRC-32 call per event, resident",
        }
    }

    /// A stable identifier for JSON and Criterion.
    pub fn id(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream_verified",
            Self::EvstreamUnverified => "evstream_unverified",
            Self::BufReader => "bufreader",
            Self::LimitCrc => "limit_crc",
            Self::LimitCrcPerEvent => "limit_crc_per_event",
        }
    }
}

/// Writes `workload` to a new stream at `path` with evstream, for replay runs.
///
/// # Errors
///
/// As for [`StreamWriter::create`](evstream::StreamWriter::create) and [`StreamWriter::append`](evstream::StreamWriter::append).
pub fn write_replay_file(path: &Path, workload: &Workload) -> Result<()> {
    write_replay_file_with(path, workload, false)
}

/// Like [`write_replay_file`], with [`WriterOptions::huge_pages`](evstream::WriterOptions::huge_pages) set to `huge_pages`,
/// which decides the size of the page-cache folios a reader then maps.
///
/// # Errors
///
/// As for [`StreamWriter::create`](evstream::StreamWriter::create) and [`StreamWriter::append`](evstream::StreamWriter::append).
pub fn write_replay_file_with(path: &Path, workload: &Workload, huge_pages: bool) -> Result<()> {
    let options = WriterOptions::default()
        .prefault(Prefault::Off)
        .huge_pages(huge_pages);
    let capacity = workload.capacity();
    let mut writer = StreamWriter::create_with(path, capacity, options)?;
    for i in 0..workload.events() {
        writer.append(Workload::timestamp(i), workload.payload(i))?;
    }
    Ok(())
}

/// Whether opening the stream is part of a timed replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayMode {
    /// Open, visit every event, close: all timed.
    Open,
    /// As [`Open`](Self::Open), over a stream written with [`WriterOptions::huge_pages`](evstream::WriterOptions::huge_pages)
    /// on (see [`write_replay_file_with`]); the caller passes that file.
    OpenHugePages,
    /// The reader (or file) is opened and one full pass made before the clock starts; the
    /// timed pass is a second one. For evstream the mapping's pages are then all mapped,
    /// as for a long-lived reader.
    Reused,
}

impl ReplayMode {
    /// `"replay"`, `"replay_huge_pages"` or `"replay_reused"`: the mode of the report's rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "replay",
            Self::OpenHugePages => "replay_huge_pages",
            Self::Reused => "replay_reused",
        }
    }
}

/// Visits every event of `reader`; returns how many there were.
fn evstream_pass(reader: &StreamReader, verified: bool) -> Result<u64> {
    let mut events = 0u64;
    let mut digest = 0i64;
    let visit = |event: Result<evstream::EventView<'_>>| -> Result<()> {
        let event = event?;
        digest = digest.wrapping_add(event.timestamp());
        black_box(event.payload());
        events += 1;
        Ok(())
    };
    if verified {
        reader.iter().try_for_each(visit)?;
    } else {
        reader.iter_unverified().try_for_each(visit)?;
    }
    black_box(digest);
    Ok(events)
}

/// Parses every event of `file` from its start through a `BufReader`; returns the count.
fn bufreader_pass(mut file: &File, path: &Path) -> Result<u64> {
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("seek", path))?;
    let mut reader = EventReader::new(BufReader::new(file)).map_err(io_err("read", path))?;
    let mut payload = Vec::new();
    let mut events = 0u64;
    let mut digest = 0i64;
    while let Some(timestamp) = reader
        .read_event(&mut payload)
        .map_err(io_err("read", path))?
    {
        digest = digest.wrapping_add(timestamp);
        black_box(payload.as_slice());
        events += 1;
    }
    black_box(digest);
    Ok(events)
}

/// The stream header's write offset in `map`, at most the mapping's length.
fn written_end(map: &[u8]) -> usize {
    let end = map
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    usize::try_from(end).unwrap_or(usize::MAX).min(map.len())
}

/// The replay limit's pass: CRC-32 over the stream's written bytes (the stream header's
/// write offset says how many), without parsing them: it counts no events.
fn limit_crc_pass(map: &[u8]) -> Option<u64> {
    let end = written_end(map);
    black_box(crc32fast::hash(map.get(..end).unwrap_or_default()));
    None
}

/// The per-event floor's pass: one CRC-32 call over the last `12 + size` bytes of every
/// event before the stream header's write offset; returns the number of events.
fn per_event_crc_pass(map: &[u8]) -> Option<u64> {
    let end = written_end(map);
    let header = EVENT_HEADER_LEN as usize;
    let mut pos = STREAM_HEADER_LEN as usize;
    let mut events = 0u64;
    let mut digest = 0u32;
    while let Some(size) = map
        .get(pos + 8..pos + 12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    {
        let next = pos + header + size as usize;
        let Some(checked) = map.get(pos + 4..next).filter(|_| next <= end) else {
            break;
        };
        digest ^= crc32fast::hash(checked);
        events += 1;
        pos = next;
    }
    black_box(digest);
    Some(events)
}

/// Visits every event of the stream at `path` with `method` and returns the time of the
/// timed region (see [`ReplayMode`]) and the number of events seen: `None` for
/// [`ReplayMethod::LimitCrc`], which checksums the bytes without parsing them into events.
///
/// # Errors
///
/// As for [`StreamReader::open`](evstream::StreamReader::open) and its iterators; the `BufReader` parse's errors arrive
/// as [`Error::Io`](evstream::Error::Io) with the [`stdio::CodecError`](evstream::stdio::CodecError) inside.
pub fn replay_once(
    method: ReplayMethod,
    mode: ReplayMode,
    path: &Path,
) -> Result<(Duration, Option<u64>)> {
    let open_start = Instant::now();
    match method {
        ReplayMethod::EvstreamVerified | ReplayMethod::EvstreamUnverified => {
            let verified = method == ReplayMethod::EvstreamVerified;
            let reader = StreamReader::open(path)?;
            timed_pass(mode, open_start, reader, |r| {
                evstream_pass(r, verified).map(Some)
            })
        }
        ReplayMethod::BufReader => {
            let file = File::open(path).map_err(io_err("open", path))?;
            timed_pass(mode, open_start, file, |f| {
                bufreader_pass(f, path).map(Some)
            })
        }
        ReplayMethod::LimitCrc | ReplayMethod::LimitCrcPerEvent => {
            let file = File::open(path).map_err(io_err("open", path))?;
            // SAFETY: the bench's own replay file, written and closed before the run; no
            // process truncates or writes it while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err("mmap", path))?;
            drop(file);
            if method == ReplayMethod::LimitCrc {
                timed_pass(mode, open_start, map, |m| Ok(limit_crc_pass(m)))
            } else {
                timed_pass(mode, open_start, map, |m| Ok(per_event_crc_pass(m)))
            }
        }
    }
}

/// Times `pass` over `source` as `mode` says: from `open_start` through closing `source`,
/// or, for [`ReplayMode::Reused`], only a second pass over the already used `source`.
fn timed_pass<S>(
    mode: ReplayMode,
    open_start: Instant,
    source: S,
    mut pass: impl FnMut(&S) -> Result<Option<u64>>,
) -> Result<(Duration, Option<u64>)> {
    let reused = mode == ReplayMode::Reused;
    let start = if reused {
        pass(&source)?;
        Instant::now()
    } else {
        open_start
    };
    let events = pass(&source)?;
    let pass_end = start.elapsed();
    drop(source);
    Ok((if reused { pass_end } else { start.elapsed() }, events))
}
