//! The on-disk layout: constants, header structs, the event checksum, and the parser.
//!
//! `docs/FORMAT.md` is the written authority for the layout; this module implements it
//! and nothing else. Every function here works on plain byte slices and is safe; the
//! mapping that produces those slices lives in the `sys` module.
//!
//! All integers are little-endian. A stream file is:
//!
//! ```text
//! 0        8            16               24
//! +--------+------------+----------------+----------------------------------+
//! | write  | event      | start          | event | event | ... | (free)     |
//! | offset | count      | timestamp      |                                  |
//! +--------+------------+----------------+----------------------------------+
//!
//! event:  0          8      12         16
//!         +----------+------+----------+-----------------+
//!         | timestamp| size | checksum | payload (size)  |
//!         +----------+------+----------+-----------------+
//! ```

use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::Corruption;

/// Length of the stream header at the start of the file.
pub const STREAM_HEADER_LEN: u64 = 24;
/// Length of the header in front of every event's payload.
pub const EVENT_HEADER_LEN: u64 = 16;
/// Byte offset of `write_offset` in the stream header.
pub const WRITE_OFFSET_AT: usize = 0;
/// Byte offset of `event_count` in the stream header.
pub const EVENT_COUNT_AT: usize = 8;
/// Byte offset of `start_timestamp` in the stream header.
pub const START_TIMESTAMP_AT: usize = 16;
/// The smallest stream file: the header and one empty event.
pub const MIN_CAPACITY: u64 = STREAM_HEADER_LEN + EVENT_HEADER_LEN;
/// The largest payload the `u32` size field can describe.
pub const MAX_PAYLOAD: u64 = u32::MAX as u64;
/// The unit a disk writes atomically, as recovery assumes (see `docs/FORMAT.md`).
pub const SECTOR_LEN: u64 = 512;

/// The stream header, bytes 0..24 of the file.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StreamHeader {
    /// Where the next event goes: 24 plus the bytes of all published events.
    pub write_offset: U64,
    /// Number of published events.
    pub event_count: U64,
    /// Unix nanoseconds when the stream was created.
    pub start_timestamp: I64,
}

/// The header in front of every event's payload.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct EventHeader {
    /// Unix nanoseconds; non-decreasing along the stream.
    pub timestamp: I64,
    /// Payload length in bytes.
    pub size: U32,
    /// CRC-32 over header bytes 0..12 followed by the payload.
    pub checksum: U32,
}

const _: () = assert!(size_of::<StreamHeader>() as u64 == STREAM_HEADER_LEN);
const _: () = assert!(size_of::<EventHeader>() as u64 == EVENT_HEADER_LEN);

impl EventHeader {
    /// Builds the header for `payload`, checksum included.
    ///
    /// Returns `None` when the payload is longer than [`MAX_PAYLOAD`].
    pub fn for_payload(timestamp: i64, payload: &[u8]) -> Option<Self> {
        let size = u32::try_from(payload.len()).ok()?;
        Some(Self::sealed(timestamp, size, payload))
    }

    /// Builds a header with its checksum computed over `payload`, whose length is `size`.
    pub(crate) fn sealed(timestamp: i64, size: u32, payload: &[u8]) -> Self {
        let mut header = Self {
            timestamp: I64::new(timestamp),
            size: U32::new(size),
            checksum: U32::ZERO,
        };
        header.checksum = U32::new(checksum(header.checked_prefix(), payload));
        header
    }

    /// The 12 bytes the checksum covers ahead of the payload.
    fn checked_prefix(&self) -> &[u8] {
        let bytes = self.as_bytes();
        bytes.get(..12).unwrap_or(bytes)
    }
}

/// The CRC-32 (IEEE) of an event: header bytes 0..12 followed by the payload.
fn checksum(prefix: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix);
    hasher.update(payload);
    hasher.finalize()
}

/// The checksum stored for an event with this timestamp and payload.
///
/// Covering the timestamp and size means an all-zero region never checks out as an
/// event. Payloads longer than [`MAX_PAYLOAD`] cannot be stored; their size field is
/// taken as `u32::MAX` here.
pub fn event_checksum(timestamp: i64, payload: &[u8]) -> u32 {
    let size = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    EventHeader::sealed(timestamp, size, payload).checksum.get()
}

/// Bytes an event with a payload of `len` bytes occupies, or `None` past the format's limit.
pub fn event_len(len: usize) -> Option<u64> {
    let len = u64::try_from(len).ok().filter(|&l| l <= MAX_PAYLOAD)?;
    Some(EVENT_HEADER_LEN + len)
}

/// One event as parsed from the events region, before or after its checksum is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEvent<'a> {
    pub header: EventHeader,
    pub payload: &'a [u8],
}

impl RawEvent<'_> {
    /// Bytes the event occupies.
    pub fn len(&self) -> usize {
        EVENT_HEADER_LEN as usize + self.payload.len()
    }

    /// The checksum computed over the event's bytes.
    pub fn computed_checksum(&self) -> u32 {
        checksum(self.header.checked_prefix(), self.payload)
    }

    /// Checks the stored checksum against the event's bytes.
    pub fn verify(&self) -> Result<(), Corruption> {
        let stored = self.header.checksum.get();
        let computed = self.computed_checksum();
        if stored == computed {
            Ok(())
        } else {
            Err(Corruption::ChecksumMismatch { stored, computed })
        }
    }
}

/// Parses the event starting at `pos` of `events`, the published bytes after the stream
/// header. Checks only that the header and the payload it claims lie inside `events`.
pub(crate) fn parse_event(events: &[u8], pos: usize) -> Result<RawEvent<'_>, Corruption> {
    let rest = events.get(pos..).unwrap_or_default();
    let Ok((header, body)) = EventHeader::read_from_prefix(rest) else {
        return Err(Corruption::TruncatedHeader {
            available: rest.len() as u64,
        });
    };
    let size = header.size.get();
    match body.get(..size as usize) {
        Some(payload) => Ok(RawEvent { header, payload }),
        None => Err(Corruption::TruncatedPayload {
            size,
            available: body.len() as u64,
        }),
    }
}

/// Parses and verifies the event at `pos`, also checking its timestamp against `previous`.
pub(crate) fn read_verified(
    events: &[u8],
    pos: usize,
    previous: i64,
) -> Result<RawEvent<'_>, Corruption> {
    let event = parse_event(events, pos)?;
    event.verify()?;
    let got = event.header.timestamp.get();
    if got < previous {
        return Err(Corruption::TimestampOutOfOrder { previous, got });
    }
    Ok(event)
}

/// The outcome of checking every event of an events region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes of valid events from the start of the region.
    pub valid_len: usize,
    /// Number of valid events.
    pub count: u64,
    /// Timestamp of the last valid event.
    pub last_timestamp: Option<i64>,
    /// The first damaged event: its position in the region and what is wrong.
    pub damage: Option<(usize, Corruption)>,
}

/// Verifies every event of `events` in order, stopping at the first damaged one.
pub(crate) fn scan(events: &[u8]) -> Scan {
    let mut scan = Scan {
        valid_len: 0,
        count: 0,
        last_timestamp: None,
        damage: None,
    };
    while scan.valid_len < events.len() {
        let previous = scan.last_timestamp.unwrap_or(i64::MIN);
        match read_verified(events, scan.valid_len, previous) {
            Ok(event) => {
                scan.valid_len += event.len();
                scan.count += 1;
                scan.last_timestamp = Some(event.header.timestamp.get());
            }
            Err(reason) => {
                scan.damage = Some((scan.valid_len, reason));
                break;
            }
        }
    }
    scan
}

/// Whether the damaged event at `pos` of `events` looks like the torn tail a power loss
/// leaves: some disk sector it spans reads as zeros within the event, or within the
/// event's 16-byte header.
///
/// A sector the disk never wrote reads back as zeros (the file is preallocated and
/// recovery zeroes what it drops), so a torn event has at least one sector whose part
/// inside the event is all zero. `events` starts at file offset 24, and sectors are
/// aligned to file offsets. The event spans its claimed size when that fits, otherwise
/// the rest of the region.
///
/// The header is checked on its own because the writer writes it after the payload:
/// when the header straddles two sectors and the kernel wrote one of them back between
/// the two writes, that sector holds the payload and only the header's part of it is
/// still zero.
pub(crate) fn looks_torn(events: &[u8], pos: usize) -> bool {
    let claimed_end = parse_event(events, pos)
        .ok()
        .map(|event| pos + event.len())
        .unwrap_or(events.len());
    let header_end = (pos + EVENT_HEADER_LEN as usize).min(claimed_end);
    zero_sector_part(events, pos, claimed_end) || zero_sector_part(events, pos, header_end)
}

/// Whether some sector's part of `events[from..to]` is all zero.
fn zero_sector_part(events: &[u8], from: usize, to: usize) -> bool {
    let sector = SECTOR_LEN as usize;
    let header = STREAM_HEADER_LEN as usize;
    let mut start = from;
    while start < to {
        // End of the sector holding file offset `header + start`, as a region position.
        let sector_end = (header + start) / sector * sector + sector - header;
        let end = sector_end.min(to);
        let Some(bytes) = events.get(start..end) else {
            return false;
        };
        if bytes.iter().all(|&b| b == 0) {
            return true;
        }
        start = end;
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn encode(events: &[(i64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (ts, payload) in events {
            let header = EventHeader::for_payload(*ts, payload).expect("small payload");
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(payload);
        }
        out
    }

    #[test]
    fn checksum_covers_timestamp_size_and_payload() {
        let base = event_checksum(1, b"abc");
        assert_ne!(base, event_checksum(2, b"abc"));
        assert_ne!(base, event_checksum(1, b"abd"));
        assert_ne!(base, event_checksum(1, b"ab"));
        // The zlib CRC-32 of the 12 header bytes and the payload, computed independently.
        let mut bytes = 1i64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert_eq!(base, crc32fast::hash(&bytes));
    }

    #[test]
    fn zeros_never_parse_as_a_valid_event() {
        let zeros = [0u8; 64];
        let scan = scan(&zeros);
        assert_eq!(scan.count, 0);
        assert!(matches!(
            scan.damage,
            Some((0, Corruption::ChecksumMismatch { stored: 0, .. }))
        ));
    }

    #[test]
    fn scan_counts_events_and_stops_at_damage() {
        let mut events = encode(&[(1, b"one"), (2, b""), (2, b"three")]);
        assert_eq!(
            scan(&events),
            Scan {
                valid_len: events.len(),
                count: 3,
                last_timestamp: Some(2),
                damage: None
            }
        );
        let last = events.len() - 1;
        events[last] ^= 1;
        let damaged = scan(&events);
        assert_eq!(damaged.count, 2);
        assert_eq!(damaged.valid_len, 16 + 3 + 16);
        assert!(matches!(
            damaged.damage,
            Some((35, Corruption::ChecksumMismatch { .. }))
        ));
    }

    #[test]
    fn truncation_and_order_are_reported() {
        let events = encode(&[(5, b"abcdef"), (4, b"x")]);
        let scan_all = scan(&events);
        assert_eq!(
            scan_all.damage,
            Some((
                22,
                Corruption::TimestampOutOfOrder {
                    previous: 5,
                    got: 4
                }
            ))
        );
        assert_eq!(
            scan(&events[..10]).damage,
            Some((0, Corruption::TruncatedHeader { available: 10 }))
        );
        assert_eq!(
            scan(&events[..20]).damage,
            Some((
                0,
                Corruption::TruncatedPayload {
                    size: 6,
                    available: 4
                }
            ))
        );
    }

    #[test]
    fn torn_means_a_zero_sector_inside_the_event() {
        // Event at region position 0 spans file offsets 24..24+16+1000, crossing the
        // sector boundary at file offset 512 (region position 488).
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut events = encode(&[(1, &payload)]);
        events[100] ^= 0x10; // a bit flip: damaged, but no zero sector
        assert!(!looks_torn(&events, 0));
        events[100] ^= 0x10;
        for b in &mut events[488..1000] {
            *b = 0; // the second sector never reached the disk
        }
        assert!(looks_torn(&events, 0));
        // A zeroed header alone is torn too.
        let mut zero_header = encode(&[(1, &payload)]);
        zero_header[..16].fill(0);
        assert!(looks_torn(&zero_header, 0));
    }
}
