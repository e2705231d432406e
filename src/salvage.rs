//! Salvage: every readable event of a damaged stream file, and the damaged byte ranges
//! between them.
//!
//! A [`StreamReader`](crate::StreamReader) stops at the first damaged event, as it must:
//! the format has no markers to find the next event by, so what follows damage cannot be
//! trusted in general. [`Salvage`] goes on anyway: after a damaged event it looks for the
//! next offset where a whole event checks out (its CRC-32 over timestamp, size and
//! payload matches, and its timestamp is not earlier than the last event salvaged), and
//! reports the bytes in between as a [`DamagedRange`]. A random 16-byte header passes the
//! checksum with probability 2⁻³², so events it finds after damage are real events with
//! overwhelming likelihood; the events it yields are always in timestamp order, so they can
//! be appended to a new stream as they come.
//!
//! Like a reader, it holds the file's reader-presence lock from its open to its drop
//! (FORMAT.md, "Locks"): no writer's recovery rewrites bytes under the scan, and a log
//! never recycles a segment under salvage into a later one (retention deletes it
//! instead, and the scan goes on reading the deleted file's bytes).
//!
//! It reads the file with plain positioned reads, never maps it and never writes it, so
//! it works on files whose header is damaged too: when the header's write offset is out
//! of range, the whole file is scanned, and trailing zeros (the unused part of a
//! preallocated stream) are not reported as damage.
//!
//! # A lost trailer
//!
//! A version 3 stream (a log's segment) seeds every event's checksum with a value its
//! trailer keeps (FORMAT.md, "Version 3: seeded checksums"). When no trailer slot holds
//! a valid record, the seed is found from the events themselves: a checksum is affine in
//! its seed, so each event yields the one seed it checks out under
//! ([`seed_of_event`]), and the seed is taken once the
//! two events after it check out under the same seed too. [`Salvage::open`] first scans
//! for an event that checks out under the seed field of a damaged trailer slot or under
//! 0 (version 2), and only if none does, for three such events in a row; it then starts
//! over with the seed they show, so that every intact event is found, those before them
//! included. A version 3 stream with no three intact events in a row yields none of them.
//!
//! The seed enters a checksum as the event's first four bytes do, so damage can pass for
//! a seed: events damaged alike (the same bits flipped at the same place of each) whose
//! file has no intact event to show its true seed. Three such events in a row would be
//! taken for intact, under a wrong seed; random damage rarely does that (the two later
//! events must carry the first one's change, at its place). Salvage of a file whose
//! trailer is intact never derives a seed.
//!
//! # Limits
//!
//! The first candidate tried after a damaged event is the offset its size field points
//! to, whatever the size. After that, the byte-by-byte search considers events with
//! payloads of at most [`Salvage::search_limit`] bytes (1 MiB, or twice the largest
//! payload seen so far if that is more), so that garbage whose size field happens to be
//! small enough does not make it checksum gigabytes at every offset. A larger event right
//! after damage that the size field does not lead to is reported as part of the damage.
//!
//! # Examples
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("app.evs");
//! use evstream::StreamWriter;
//! use evstream::salvage::{Found, Salvage};
//!
//! let mut writer = StreamWriter::create(&path, 4096)?;
//! writer.append(1, b"first")?;
//! writer.append(2, b"second")?;
//! writer.append(3, b"third")?;
//! drop(writer);
//! // Flip a byte of the second event's payload (at 24 + 21 + 16).
//! let mut bytes = std::fs::read(&path)?;
//! bytes[24 + 21 + 16] ^= 0xff;
//! std::fs::write(&path, &bytes)?;
//!
//! let mut salvage = Salvage::open(&path)?;
//! let mut events = Vec::new();
//! let mut damaged = Vec::new();
//! while let Some(found) = salvage.next_found()? {
//!     match found {
//!         Found::Event(event) => events.push(event.payload.to_vec()),
//!         Found::Damaged(range) => damaged.push((range.offset, range.len)),
//!     }
//! }
//! assert_eq!(events, [b"first".to_vec(), b"third".to_vec()]);
//! assert_eq!(damaged, [(45, 22)]);
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error, Result};
use crate::format::{
    EVENT_HEADER_LEN, STREAM_HEADER_LEN, event_checksum_seeded, seed_is_valid, seed_of_event,
};
use crate::stream::open::{HeldLock, LockKind, announce_reader, check_still_named, open_regular};

/// Bytes read from the file at a time.
const WINDOW: u64 = 1 << 20;
/// The smallest payload limit of the byte-by-byte search.
const MIN_SEARCH_LIMIT: u64 = 1 << 20;
/// How many events after one a seed derived from it must check out for, in a row, to be
/// taken as the file's (see [A lost trailer](self#a-lost-trailer)).
const CONFIRMATIONS: usize = 2;

/// A range of bytes that held no readable event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// File offset of the first skipped byte: where a damaged event starts.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// What was wrong with the event at `offset` ("the write offset" in its message is
    /// the end of the scan: the file's end when the header's write offset was out of range).
    pub reason: Corruption,
}

/// An event that checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalvagedEvent<'a> {
    /// File offset of the event.
    pub offset: u64,
    /// Unix nanoseconds.
    pub timestamp: i64,
    /// The payload.
    pub payload: &'a [u8],
}

/// What [`Salvage::next_found`] found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// An event whose checksum matches, in timestamp order with those before it.
    Event(SalvagedEvent<'a>),
    /// Bytes skipped because no event could be read there.
    Damaged(DamagedRange),
}

/// A resynchronizing scan over a stream file's events; see the [module docs](self).
#[derive(Debug)]
pub struct Salvage {
    path: PathBuf,
    /// The file, with its reader-presence lock held shared.
    file: HeldLock,
    /// Where the scan ends: the header's write offset, or the file's length.
    end: u64,
    /// The header's write offset when it was out of range.
    bad_write_offset: Option<u64>,
    /// Where the next event is expected.
    pos: u64,
    last_timestamp: Option<i64>,
    largest_payload: u64,
    /// The CRC seed the events' checksums are seeded with, if known.
    seed: Seed,
    /// Whether a check may derive the seed from the events, while it is unknown.
    derive: bool,
    /// File offset of `buf[0]`.
    buf_at: u64,
    buf: Vec<u8>,
}

impl Salvage {
    /// Opens `path` for a salvage scan; reads its 24-byte header and its trailer, and,
    /// when the trailer holds no valid record, the events as far as it takes to find
    /// their checksums' seed (see [A lost trailer](self#a-lost-trailer)).
    ///
    /// The scan holds the file's reader-presence lock until it is dropped, as a
    /// [`StreamReader`](crate::StreamReader) does: a writer's recovery waits for it
    /// ([`Error::ReadersPresent`]), and a log's retention deletes a segment under
    /// salvage rather than recycle it, so that the scan reads the bytes the file held
    /// when it was opened.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened or read (of kind not found also when the path
    /// was renamed or replaced while it was opened: a log's segment that retention took),
    /// [`Error::NotAFile`] for a directory or other non-regular file, [`Error::BadHeader`]
    /// for a file shorter than the header, [`Error::Locked`] if a writer's recovery of the
    /// file lasts more than 2 s.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = open_regular(path, false)?;
        // Present before anything is read, and the path still naming the file then: a
        // log that recycles a segment takes its name away while it holds the lock alone.
        announce_reader(&file, path)?;
        let file = HeldLock::new(file, LockKind::Reader);
        check_still_named(file.file(), path)?;
        let file_ref = file.file();
        if len < STREAM_HEADER_LEN {
            return Err(Error::BadHeader {
                path: path.to_owned(),
                reason: crate::HeaderProblem::TooShort { len },
            });
        }
        let mut offset = [0u8; 8];
        file_ref
            .read_exact_at(&mut offset, crate::format::WRITE_OFFSET_AT as u64)
            .map_err(|e| Error::io("read header of", path, e))?;
        let write_offset = u64::from_le_bytes(offset);
        // A version 2 stream's events end where its trailer begins; the trailer is not
        // damage.
        let identity = crate::stream::open::read_identity(file_ref, path, len).ok();
        let events_end = identity
            .as_ref()
            .and_then(|_| crate::format::trailer_offset(len))
            .unwrap_or(len);
        let seed = match &identity {
            Some(identity) => Seed::Known(identity.trailer.seed),
            None => Seed::Unknown {
                hint: damaged_trailer_seed(file_ref, len),
            },
        };
        let (end, bad_write_offset) = if (STREAM_HEADER_LEN..=events_end).contains(&write_offset) {
            (write_offset, None)
        } else {
            (events_end, Some(write_offset))
        };
        let mut salvage = Self {
            path: path.to_owned(),
            file,
            end,
            bad_write_offset,
            pos: STREAM_HEADER_LEN,
            last_timestamp: None,
            largest_payload: 0,
            seed,
            derive: false,
            buf_at: 0,
            buf: Vec::new(),
        };
        salvage.settle_seed()?;
        Ok(salvage)
    }

    /// With the trailer's seed lost, scans ahead until some event settles it, then starts
    /// over from the first event: an event before the first two that show the seed (one
    /// whose successor is damaged) still checks out under it.
    ///
    /// The first pass takes only the damaged trailer's seed or 0, each shown by any one
    /// event; only a file in which no event checks out under either has its seed derived
    /// from its events, in a second pass.
    fn settle_seed(&mut self) -> Result<()> {
        for derive in [false, true] {
            if let Seed::Known(_) = self.seed {
                break;
            }
            self.derive = derive;
            while let Seed::Unknown { .. } = self.seed {
                if self.next_found()?.is_none() {
                    break;
                }
            }
            self.pos = STREAM_HEADER_LEN;
            self.last_timestamp = None;
            self.largest_payload = 0;
        }
        Ok(())
    }

    /// Where the scan ends: the header's write offset, or the file's length when the
    /// header's write offset is out of range.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The scan's position: bytes before it have been reported.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The header's write offset if it was out of range (so the whole file is scanned).
    pub fn bad_write_offset(&self) -> Option<u64> {
        self.bad_write_offset
    }

    /// The largest payload the byte-by-byte search after damage considers.
    pub fn search_limit(&self) -> u64 {
        MIN_SEARCH_LIMIT.max(self.largest_payload.saturating_mul(2))
    }

    /// The next event or damaged range, or `None` at the end.
    ///
    /// # Errors
    /// [`Error::Io`] if reading the file fails.
    pub fn next_found(&mut self) -> Result<Option<Found<'_>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let reason = match self.check(start, None)? {
            Ok(size) => return Ok(Some(Found::Event(self.accept(start, size)?))),
            Err(reason) => reason,
        };
        let next = self.resync(start)?;
        self.pos = next;
        if next == self.end && self.bad_write_offset.is_some() && self.all_zero(start, next)? {
            // The unused, zeroed part of the file past the last event.
            return Ok(None);
        }
        Ok(Some(Found::Damaged(DamagedRange {
            offset: start,
            len: next - start,
            reason,
        })))
    }

    /// Takes the checked event at `at` with a payload of `size` bytes.
    fn accept(&mut self, at: u64, size: u32) -> Result<SalvagedEvent<'_>> {
        let len = EVENT_HEADER_LEN + u64::from(size);
        self.pos = at + len;
        self.largest_payload = self.largest_payload.max(u64::from(size));
        let timestamp = read_i64(self.read(at, EVENT_HEADER_LEN)?);
        self.last_timestamp = Some(timestamp);
        let bytes = self.read(at, len)?;
        Ok(SalvagedEvent {
            offset: at,
            timestamp,
            payload: bytes.get(EVENT_HEADER_LEN as usize..).unwrap_or_default(),
        })
    }

    /// The first offset after the damaged event at `from` where an event checks out, or
    /// the end.
    fn resync(&mut self, from: u64) -> Result<u64> {
        // The offset the damaged event's size field points to, if an event checks out there.
        if let Some(header) = self.header_at(from)? {
            let next = from + EVENT_HEADER_LEN + u64::from(header.1);
            if next == self.end || (next < self.end && self.check(next, None)?.is_ok()) {
                return Ok(next);
            }
        }
        let limit = self.search_limit();
        let mut at = from + 1;
        while at < self.end {
            if self.check(at, Some(limit))?.is_ok() {
                return Ok(at);
            }
            at += 1;
        }
        Ok(self.end)
    }

    /// The timestamp and size of the event header at `at`, if 16 bytes fit before the end.
    fn header_at(&mut self, at: u64) -> Result<Option<(i64, u32, u32)>> {
        if self.end.saturating_sub(at) < EVENT_HEADER_LEN {
            return Ok(None);
        }
        let bytes = self.read(at, EVENT_HEADER_LEN)?;
        let timestamp = read_i64(bytes);
        let size = read_u32(bytes.get(8..).unwrap_or_default());
        let checksum = read_u32(bytes.get(12..).unwrap_or_default());
        Ok(Some((timestamp, size, checksum)))
    }

    /// Checks the event at `at`: `Ok(Ok(size))` if it is whole, its checksum matches and
    /// its timestamp is in order; otherwise what is wrong. With `limit`, a larger claimed
    /// payload is refused without reading it.
    fn check(
        &mut self,
        at: u64,
        limit: Option<u64>,
    ) -> Result<std::result::Result<u32, Corruption>> {
        let Some((timestamp, size, stored)) = self.header_at(at)? else {
            return Ok(Err(Corruption::TruncatedHeader {
                available: self.end.saturating_sub(at),
            }));
        };
        let available = self.end - at - EVENT_HEADER_LEN;
        if u64::from(size) > available {
            return Ok(Err(Corruption::TruncatedPayload { size, available }));
        }
        if let Some(limit) = limit
            && (u64::from(size) > limit || (stored == 0 && timestamp == 0))
        {
            // Not worth checksumming during a search: zeros, or a payload past the limit.
            return Ok(Err(Corruption::ChecksumMismatch {
                stored,
                computed: !stored,
            }));
        }
        let (known, derive) = (self.seed, self.derive);
        let bytes = self.read(at, EVENT_HEADER_LEN + u64::from(size))?;
        let payload = bytes.get(EVENT_HEADER_LEN as usize..).unwrap_or_default();
        let (seed, derived) = match known {
            Seed::Known(seed) => (seed, false),
            // A seed tried before this event was read is shown right by the event alone;
            // one derived from the event must be shown right by the events after it.
            Seed::Unknown { hint } => match [hint, Some(0)]
                .into_iter()
                .flatten()
                .find(|&seed| event_checksum_seeded(seed, timestamp, payload) == stored)
            {
                Some(seed) => (seed, false),
                None if derive => (seed_of_event(timestamp, payload, stored), true),
                None => (hint.unwrap_or(0), false),
            },
        };
        let computed = event_checksum_seeded(seed, timestamp, payload);
        if computed != stored {
            return Ok(Err(Corruption::ChecksumMismatch { stored, computed }));
        }
        if let Some(previous) = self.last_timestamp
            && timestamp < previous
        {
            return Ok(Err(Corruption::TimestampOutOfOrder {
                previous,
                got: timestamp,
            }));
        }
        if derived {
            let next = at + EVENT_HEADER_LEN + u64::from(size);
            if !seed_is_valid(seed) || !self.confirms(next, seed, timestamp, limit)? {
                // Reported as the checksum under the seed the file most likely had.
                let likely = match known {
                    Seed::Known(seed) | Seed::Unknown { hint: Some(seed) } => seed,
                    Seed::Unknown { hint: None } => 0,
                };
                return Ok(Err(Corruption::ChecksumMismatch {
                    stored,
                    computed: self.checksum_at(at, likely)?,
                }));
            }
        }
        if let Seed::Unknown { .. } = known {
            self.seed = Seed::Known(seed);
        }
        Ok(Ok(size))
    }

    /// Whether the [`CONFIRMATIONS`] events from `at` on each check out under `seed`, in
    /// order after `previous`: what shows a seed derived from the event before them to be
    /// the file's.
    fn confirms(
        &mut self,
        mut at: u64,
        seed: u32,
        mut previous: i64,
        limit: Option<u64>,
    ) -> Result<bool> {
        for _ in 0..CONFIRMATIONS {
            let Some((timestamp, size, stored)) = self.header_at(at)? else {
                return Ok(false);
            };
            let available = self.end - at - EVENT_HEADER_LEN;
            if u64::from(size) > available
                || limit.is_some_and(|limit| u64::from(size) > limit)
                || timestamp < previous
                || self.checksum_at(at, seed)? != stored
            {
                return Ok(false);
            }
            previous = timestamp;
            at += EVENT_HEADER_LEN + u64::from(size);
        }
        Ok(true)
    }

    /// The checksum under `seed` of the event at `at`, whose size was checked to fit.
    fn checksum_at(&mut self, at: u64, seed: u32) -> Result<u32> {
        let Some((timestamp, size, _)) = self.header_at(at)? else {
            return Ok(0);
        };
        let bytes = self.read(at, EVENT_HEADER_LEN + u64::from(size))?;
        let payload = bytes.get(EVENT_HEADER_LEN as usize..).unwrap_or_default();
        Ok(event_checksum_seeded(seed, timestamp, payload))
    }

    /// Whether every byte of `from..to` is zero.
    fn all_zero(&mut self, from: u64, to: u64) -> Result<bool> {
        let mut at = from;
        while at < to {
            let len = (to - at).min(WINDOW);
            if self.read(at, len)?.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += len;
        }
        Ok(true)
    }

    /// The `len` bytes at `at`, which lie before the end; read through a window of the
    /// file so that a byte-by-byte search does not read each byte many times.
    fn read(&mut self, at: u64, len: u64) -> Result<&[u8]> {
        let cached = at >= self.buf_at && at + len <= self.buf_at + self.buf.len() as u64;
        if !cached {
            let want = len.max(WINDOW).min(self.end - at).max(len);
            let want = usize::try_from(want).map_err(|_| {
                Error::io(
                    "read",
                    &self.path,
                    std::io::Error::new(std::io::ErrorKind::OutOfMemory, "event too large"),
                )
            })?;
            self.buf.resize(want, 0);
            self.file
                .file()
                .read_exact_at(&mut self.buf, at)
                .map_err(|e| Error::io("read", &self.path, e))?;
            self.buf_at = at;
        }
        let from = usize::try_from(at - self.buf_at).unwrap_or(usize::MAX);
        let to = usize::try_from(len).map_or(usize::MAX, |len| from.saturating_add(len));
        Ok(self.buf.get(from..to).unwrap_or_default())
    }
}

/// The little-endian `i64` at the start of `bytes` (0 if there are fewer than 8).
/// What a scan knows of the CRC seed its events' checksums are seeded with.
#[derive(Debug, Clone, Copy)]
enum Seed {
    /// The trailer's record says it (0 for version 2).
    Known(u32),
    /// The trailer has no valid record, so the stream may be of version 2 (seed 0) or of
    /// version 3 with any seed: the first event that checks out under `hint` or 0 settles
    /// it, or else the seed derived from an event (`format::seed_of_event`) once the next
    /// event checks out under it too.
    Unknown {
        /// The seed field of a damaged trailer slot that still says version 3.
        hint: Option<u32>,
    },
}

/// The CRC seed of a stream whose trailer has no valid record, as far as the trailer
/// still tells it: the seed field of a slot that holds the magic and version 3, its
/// checksum failed or not (a torn record still most likely carries its file's seed).
fn damaged_trailer_seed(file: &File, len: u64) -> Option<u32> {
    use zerocopy::FromBytes as _;
    let at = crate::format::trailer_offset(len)?;
    for slot in 0..2 {
        let mut bytes = [0u8; crate::format::TRAILER_RECORD_LEN];
        if file
            .read_exact_at(&mut bytes, at + slot * crate::format::TRAILER_SLOT_LEN)
            .is_err()
        {
            continue;
        }
        if let Ok(record) = crate::format::TrailerRecord::read_from_bytes(&bytes)
            && record.magic == crate::format::MAGIC
            && record.version.get() == crate::format::FORMAT_VERSION
            && record.seed() != 0
        {
            return Some(record.seed());
        }
    }
    None
}

fn read_i64(bytes: &[u8]) -> i64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |b| i64::from_le_bytes(*b))
}

/// The little-endian `u32` at the start of `bytes` (0 if there are fewer than 4).
fn read_u32(bytes: &[u8]) -> u32 {
    bytes
        .first_chunk::<4>()
        .map_or(0, |b| u32::from_le_bytes(*b))
}
