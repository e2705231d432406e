//! Converting a version 1 stream (no trailer) to version 2, explicitly and only after
//! every event checks out.

use std::os::unix::fs::FileExt;
use std::path::Path;

use zerocopy::IntoBytes;

use crate::error::{Error, HeaderProblem, Result, Unrecognized};
use crate::format::{self, STREAM_HEADER_LEN, TRAILER_SLOT_LEN, Trailer};
use crate::stream::open::{lock_exclusive, open_regular, read_header, read_identity};
use crate::sys::ReadMap;

/// Converts the version 1 stream at `path` to format version 2 in place.
///
/// Version 1 files have no trailer, so they carry no magic number, durable watermark or
/// generation, and evstream 2 refuses to open them ([`Error::NotAStream`]). This call
/// takes the writer lock, checks every event (checksums, timestamp order, the header's
/// event count), checks that the trailer's place (the last two whole 512-byte sectors of
/// the file, which a version 1 stream may use for events) lies past the write offset and
/// holds only zeros, syncs the file, and only then writes the trailer: the durable
/// watermark at the write offset (all of a verified version 1 stream is taken as
/// durable), generation 0, not sealed. A version 1 reader still reads the result.
///
/// Returns `true` if it converted the file, `false` if it already was a version 2
/// stream (which is left unchanged).
///
/// # Errors
/// Refusals leave the file byte for byte unchanged.
/// - [`Error::Corrupt`] for a damaged event; [`Error::BadHeader`] for a header that
///   does not describe the events (a write offset past the trailer's place, a wrong
///   event count): such a file is not a stream this call recognises.
/// - [`Error::NoRoomForTrailer`] if events or other bytes occupy the trailer's place.
/// - [`Error::NotAStream`] for a file too short to hold a trailer or with an unknown
///   format version, [`Error::DamagedTrailer`] for a damaged version 2 trailer.
/// - [`Error::Locked`] if a writer has the file open; [`Error::Io`] as usual.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("old.evs");
/// // A version 1 stream: header and events, no trailer, zeros to the end.
/// let mut bytes = Vec::new();
/// let mut writer = evstream::stdio::EventWriter::new(std::io::Cursor::new(&mut bytes), 0)?;
/// writer.append(1, b"from version 1")?;
/// writer.finish()?;
/// bytes.resize(4096, 0);
/// std::fs::write(&path, &bytes)?;
/// assert!(matches!(
///     evstream::StreamReader::open(&path),
///     Err(evstream::Error::NotAStream { .. })
/// ));
///
/// assert!(evstream::upgrade_v1(&path)?);
/// let reader = evstream::StreamReader::open(&path)?;
/// assert_eq!(reader.iter().next().transpose()?.map(|e| e.payload()), Some(&b"from version 1"[..]));
/// # Ok(())
/// # }
/// ```
pub fn upgrade_v1(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let (file, len) = open_regular(path, true)?;
    lock_exclusive(&file, path)?;
    let trailer_at = match read_identity(&file, path, len) {
        Ok(_) => return Ok(false),
        Err(Error::NotAStream {
            reason: Unrecognized::NoMagic { trailer_at },
            ..
        }) => trailer_at,
        Err(e) => return Err(e),
    };
    let header = read_header(&file, path, len)?;
    let write_offset = header.write_offset.get();
    if write_offset > trailer_at {
        return Err(Error::NoRoomForTrailer {
            path: path.to_owned(),
            write_offset,
            trailer_at,
        });
    }
    let map = ReadMap::new(&file, len).map_err(|e| Error::io("map", path, e))?;
    let events = map
        .published(write_offset)
        .ok_or_else(|| Error::BadHeader {
            path: path.to_owned(),
            reason: HeaderProblem::WriteOffsetOutOfRange { write_offset, len },
        })?;
    let scan = format::scan_from(0, events, 0, None);
    if let Some((pos, reason)) = scan.damage {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            offset: STREAM_HEADER_LEN + pos as u64,
            watermark: STREAM_HEADER_LEN,
            reason,
        });
    }
    let header_count = header.event_count.get();
    // A version 1 writer may have stopped between storing the offset and the count.
    if header_count != scan.count && header_count.checked_add(1) != Some(scan.count) {
        return Err(Error::BadHeader {
            path: path.to_owned(),
            reason: HeaderProblem::CountMismatch {
                header: header_count,
                scanned: scan.count,
            },
        });
    }
    let mut tail = vec![0u8; (len - trailer_at) as usize];
    file.read_exact_at(&mut tail, trailer_at)
        .map_err(|e| Error::io("read", path, e))?;
    if tail.iter().any(|&b| b != 0) {
        return Err(Error::NoRoomForTrailer {
            path: path.to_owned(),
            write_offset,
            trailer_at,
        });
    }
    drop(map);
    // Every check passed: the events go to stable storage first, then the trailer.
    file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    let trailer = Trailer {
        durable_offset: write_offset,
        durable_count: scan.count,
        durable_last_timestamp: scan.last_timestamp,
        // A version 1 writer may have left stale bytes anywhere past the write offset:
        // the first writer to open the stream clears them once.
        dirty_limit: trailer_at,
        ..Trailer::empty()
    };
    let slot_at = trailer_at + Trailer::slot(trailer.sequence) * TRAILER_SLOT_LEN;
    file.write_all_at(trailer.encode().as_bytes(), slot_at)
        .map_err(|e| Error::io("write trailer of", path, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
    Ok(true)
}
