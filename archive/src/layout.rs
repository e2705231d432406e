//! The archive's objects: their names and the index object's bytes.
//!
//! Under the prefix, each archived segment is two objects:
//!
//! - `SSSSSSSS-BBBBBBBBBBBBBBBBBBBB.evs`: the segment file's bytes from 0 to its write
//!   offset (the stream header and every event, exactly as in the log; the preallocated
//!   free space and the trailer are left out). `S` is the segment's sequence number and
//!   `B` the log-wide index of its first event, as in the log's own segment names.
//! - `SSSSSSSS-BBBBBBBBBBBBBBBBBBBB-FFFFFFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLLLLLL.idx`: the
//!   segment's index (below), named with its first (`F`) and last (`L`) timestamps (each
//!   as `timestamp + 2^63`, 20 decimal digits), so that one listing is enough to find the
//!   segment holding a time. It is uploaded after the segment object was verified: a
//!   segment object without its index right after the newest archived segment is an
//!   upload in progress or interrupted, which readers ignore. (Archive-side retention
//!   deletes the index first, so objects without their pair below the oldest archived
//!   segment are its leftovers, ignored too; anywhere else a segment without both its
//!   objects is missing, see [`ArchiveGap`](crate::ArchiveGap).)
//!
//! The index object (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `EVARCIX1` |
//! | 8..16 | sequence number |
//! | 16..24 | first-event index `B` |
//! | 24..32 | the segment object's length (the segment's write offset) |
//! | 32..40 | event count |
//! | 40..48 | first timestamp |
//! | 48..56 | last timestamp |
//! | 56..64 | the local segment file's capacity |
//! | 64..68 | CRC-32 of the whole segment object |
//! | 68..72 | the segment's CRC seed, which its events' checksums are seeded with (0 for a format version 2 segment; archives written before format version 3 hold 0 here) |
//! | 72..80 | entry count |
//! | 80.. | entries, 24 bytes each: offset u64, timestamp i64, ordinal u64 |
//! | last 4 | CRC-32 of everything before it |
//!
//! One entry for the first event, then one for the first event at least
//! [`STRIDE`] bytes past the previous entry.

use evstream::format::{EVENT_HEADER_LEN, EventHeader, STREAM_HEADER_LEN, event_checksum_seeded};
use zerocopy::FromBytes;

/// Segment bytes between two entries of an index object.
pub const STRIDE: u64 = 64 << 10;
const MAGIC: [u8; 8] = *b"EVARCIX1";
const HEADER_LEN: usize = 80;
const ENTRY_LEN: usize = 24;
/// The most entries an index object may claim (a 1 TiB segment at the stride).
const MAX_ENTRIES: u64 = 1 << 24;
const BIAS: u64 = 1 << 63;

/// The name of segment `seq`'s object.
pub(crate) fn segment_name(seq: u64, base: u64) -> String {
    format!("{seq:08}-{base:020}.evs")
}

/// The name of segment `seq`'s index object.
pub(crate) fn index_name(seq: u64, base: u64, first: i64, last: i64) -> String {
    let biased = |t: i64| (t as u64) ^ BIAS;
    format!(
        "{seq:08}-{base:020}-{:020}-{:020}.idx",
        biased(first),
        biased(last)
    )
}

/// What an object's name says, `None` for names that are not the archive's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    Segment {
        seq: u64,
        base: u64,
    },
    Index {
        seq: u64,
        base: u64,
        first: i64,
        last: i64,
    },
}

pub(crate) fn parse_name(name: &str) -> Option<Name> {
    let digits = |s: &str, n: usize| -> Option<u64> {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let unbias = |v: u64| (v ^ BIAS) as i64;
    if let Some(stem) = name.strip_suffix(".evs") {
        let (seq, base) = stem.split_once('-')?;
        return Some(Name::Segment {
            seq: digits(seq, 8)?,
            base: digits(base, 20)?,
        });
    }
    let stem = name.strip_suffix(".idx")?;
    let mut parts = stem.split('-');
    let seq = digits(parts.next()?, 8)?;
    let base = digits(parts.next()?, 20)?;
    let first = unbias(digits(parts.next()?, 20)?);
    let last = unbias(digits(parts.next()?, 20)?);
    if parts.next().is_some() {
        return None;
    }
    Some(Name::Index {
        seq,
        base,
        first,
        last,
    })
}

/// One entry of an index: an event's offset, timestamp and ordinal in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of the event in the segment.
    pub offset: u64,
    /// The event's timestamp.
    pub timestamp: i64,
    /// The event's index in the segment, from 0.
    pub ordinal: u64,
}

/// An archived segment's index: what the segment holds, the checksum of its object, and
/// a sparse map from time to offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    /// The segment's sequence number.
    pub seq: u64,
    /// The log-wide index of its first event.
    pub base: u64,
    /// The segment object's length: the segment's write offset.
    pub len: u64,
    /// Events in the segment.
    pub event_count: u64,
    /// The first event's timestamp (`i64::MIN` for none).
    pub first_timestamp: i64,
    /// The last event's timestamp (`i64::MIN` for none).
    pub last_timestamp: i64,
    /// The local segment file's capacity.
    pub capacity: u64,
    /// CRC-32 of the whole segment object.
    pub crc: u32,
    /// The segment's CRC seed (0 for a format version 2 segment).
    pub seed: u32,
    /// The sparse entries, in order.
    pub entries: Vec<Entry>,
}

impl SegmentIndex {
    /// An empty index of segment `seq`.
    pub(crate) fn new(seq: u64, base: u64, capacity: u64) -> Self {
        Self {
            seq,
            base,
            len: STREAM_HEADER_LEN,
            event_count: 0,
            first_timestamp: i64::MIN,
            last_timestamp: i64::MIN,
            capacity,
            crc: 0,
            seed: 0,
            entries: Vec::new(),
        }
    }

    /// Notes an event at `offset`, ending at `end`.
    pub(crate) fn note(&mut self, offset: u64, end: u64, timestamp: i64) {
        let due = self
            .entries
            .last()
            .is_none_or(|last| offset >= last.offset.saturating_add(STRIDE));
        if due {
            self.entries.push(Entry {
                offset,
                timestamp,
                ordinal: self.event_count,
            });
        }
        if self.event_count == 0 {
            self.first_timestamp = timestamp;
        }
        self.last_timestamp = timestamp;
        self.event_count += 1;
        self.len = end;
    }

    /// The object's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN + 4);
        out.extend_from_slice(&MAGIC);
        for v in [self.seq, self.base, self.len, self.event_count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.first_timestamp.to_le_bytes());
        out.extend_from_slice(&self.last_timestamp.to_le_bytes());
        out.extend_from_slice(&self.capacity.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.timestamp.to_le_bytes());
            out.extend_from_slice(&e.ordinal.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks an index object: its checksum, its magic, and entries in
    /// order inside the segment.
    ///
    /// # Errors
    /// Why the bytes are not a valid index.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or("shorter than an index")?;
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("the index's checksum does not match".into());
        }
        let u64_at = |at: usize| -> Result<u64, String> {
            body.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "shorter than an index".to_owned())
        };
        if body.get(..8) != Some(&MAGIC[..]) {
            return Err("not an archive index (magic)".into());
        }
        let crc_field = body
            .get(64..68)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or("shorter than an index")?;
        let seed = body
            .get(68..72)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or("shorter than an index")?;
        let mut index = Self {
            seq: u64_at(8)?,
            base: u64_at(16)?,
            len: u64_at(24)?,
            event_count: u64_at(32)?,
            first_timestamp: u64_at(40)? as i64,
            last_timestamp: u64_at(48)? as i64,
            capacity: u64_at(56)?,
            crc: crc_field,
            seed,
            entries: Vec::new(),
        };
        let count = u64_at(72)?;
        let rest = body.get(HEADER_LEN..).unwrap_or_default();
        if count > MAX_ENTRIES || rest.len() as u64 != count * ENTRY_LEN as u64 {
            return Err("the entry count does not match the index's length".into());
        }
        if index.len < STREAM_HEADER_LEN || (index.event_count == 0) != (count == 0) {
            return Err("the index's counts are inconsistent".into());
        }
        for chunk in rest.chunks_exact(ENTRY_LEN) {
            let field = |at: usize| {
                chunk
                    .get(at..at + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0)
            };
            let e = Entry {
                offset: field(0),
                timestamp: field(8) as i64,
                ordinal: field(16),
            };
            let in_order = match index.entries.last() {
                None => e.offset == STREAM_HEADER_LEN && e.ordinal == 0,
                Some(p) => {
                    e.offset > p.offset && e.timestamp >= p.timestamp && e.ordinal > p.ordinal
                }
            };
            if !in_order || e.offset >= index.len || e.ordinal >= index.event_count {
                return Err("the index's entries are out of order or out of range".into());
            }
            index.entries.push(e);
        }
        Ok(index)
    }

    /// The entry to start a scan from for the first event at or after `timestamp`.
    pub(crate) fn start_for(&self, timestamp: i64) -> Option<Entry> {
        let later = self.entries.partition_point(|e| e.timestamp < timestamp);
        later
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
    }

    /// The last entry whose ordinal is at most `ordinal`.
    pub(crate) fn at_or_before_ordinal(&self, ordinal: u64) -> Option<Entry> {
        let after = self.entries.partition_point(|e| e.ordinal <= ordinal);
        after
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
    }
}

/// One event parsed from a segment object's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub timestamp: i64,
    pub checksum: u32,
    /// Where the payload starts and its length, relative to the parsed slice.
    pub payload_at: usize,
    pub len: usize,
}

/// The outcome of parsing at the start of `bytes`.
pub(crate) enum Parse {
    Event(Parsed),
    /// More bytes are needed: at least this many from the start.
    Need(u64),
    Bad(String),
}

/// Parses and verifies the event at the start of `bytes`, where at most `room` bytes
/// belong to the segment from there on; checksums are seeded with `seed`, the segment's.
pub(crate) fn parse_event(seed: u32, bytes: &[u8], room: u64) -> Parse {
    if room < EVENT_HEADER_LEN {
        return Parse::Bad(format!("{room} bytes left, less than an event header"));
    }
    let Ok((header, _)) = EventHeader::read_from_prefix(bytes) else {
        return Parse::Need(EVENT_HEADER_LEN);
    };
    let size = u64::from(header.size.get());
    let total = EVENT_HEADER_LEN + size;
    if total > room {
        return Parse::Bad(format!(
            "an event of {size} bytes runs past the segment's end"
        ));
    }
    let start = EVENT_HEADER_LEN as usize;
    let Some(payload) = bytes.get(start..start + size as usize) else {
        return Parse::Need(total);
    };
    let timestamp = header.timestamp.get();
    let stored = header.checksum.get();
    let computed = event_checksum_seeded(seed, timestamp, payload);
    if stored != computed {
        return Parse::Bad(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    Parse::Event(Parsed {
        timestamp,
        checksum: stored,
        payload_at: start,
        len: size as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name(&segment_name(3, 99)),
            Some(Name::Segment { seq: 3, base: 99 })
        );
        for (first, last) in [(i64::MIN, i64::MAX), (-5, 7), (0, 0)] {
            assert_eq!(
                parse_name(&index_name(3, 99, first, last)),
                Some(Name::Index {
                    seq: 3,
                    base: 99,
                    first,
                    last
                })
            );
        }
        for bad in [
            "x.evs",
            "00000001.idx",
            "00000001-00000000000000000000-1-2.idx",
            "a",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_are_checked_with_their_segments_seed() {
        let seed = 0x1234_5678;
        let header = EventHeader::for_payload_seeded(seed, 5, b"abc").expect("a small payload");
        let mut bytes = header.timestamp.get().to_le_bytes().to_vec();
        bytes.extend_from_slice(&header.size.get().to_le_bytes());
        bytes.extend_from_slice(&header.checksum.get().to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(matches!(parse_event(seed, &bytes, 100), Parse::Event(_)));
        // Under version 2's seed (an archive written before version 3) it fails.
        assert!(matches!(parse_event(0, &bytes, 100), Parse::Bad(_)));
    }

    #[test]
    fn an_index_round_trips_and_damage_is_refused() {
        let mut index = SegmentIndex::new(1, 10, 1 << 20);
        let mut offset = STREAM_HEADER_LEN;
        for t in 0..10_000 {
            index.note(offset, offset + 40, t);
            offset += 40;
        }
        index.crc = 7;
        index.seed = 0x5eed_0003;
        let bytes = index.encode();
        assert_eq!(bytes.get(68..72), Some(&0x5eed_0003u32.to_le_bytes()[..]));
        assert_eq!(SegmentIndex::decode(&bytes), Ok(index.clone()));
        for at in [0, 9, 70, bytes.len() - 1] {
            let mut bad = bytes.clone();
            if let Some(b) = bad.get_mut(at) {
                *b ^= 1;
            }
            assert!(SegmentIndex::decode(&bad).is_err(), "flip at {at}");
        }
        assert!(SegmentIndex::decode(bytes.get(..bytes.len() - 30).unwrap_or_default()).is_err());
    }
}
