//! The on-disk layout: constants, header structs, the event checksum, and the parser.
//!
//! `docs/FORMAT.md` is the written authority for the layout; this module implements it
//! and nothing else. Every function here works on plain byte slices and is safe; the
//! mapping that produces those slices lives in the `sys` module.
//!
//! All integers are little-endian. A stream file (format version 2 or 3) is:
//!
//! ```text
//! 0        8            16               24                        T        T+1024  len
//! +--------+------------+----------------+-------------------------+--------+----+---+
//! | write  | event      | start          | event | event | (free)  | slot 0 | 1  |pad|
//! | offset | count      | timestamp      |                         |   trailer   |   |
//! +--------+------------+----------------+-------------------------+--------+----+---+
//!
//! T = trailer_offset(len) = len rounded down to 512, minus 1024
//!
//! slot record (first 72 bytes of each 512-byte slot):
//!   0 magic "EVSTREAM" | 8 version | 12 flags | 16 sequence | 24 durable offset |
//!   32 durable count | 40 durable last timestamp | 48 generation | 56 dirty limit |
//!   version 2: 64 crc of 0..64 | 68 zero
//!   version 3: 64 CRC seed     | 68 crc of 0..68
//!
//! Every event's checksum is seeded with the file's CRC seed (0 in version 2).
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
/// The smallest stream file: one 512-byte sector for the header and at least one empty
/// event, then the two-sector trailer.
pub const MIN_CAPACITY: u64 = SECTOR_LEN + TRAILER_LEN;
/// The largest payload the `u32` size field can describe.
pub const MAX_PAYLOAD: u64 = u32::MAX as u64;
/// The unit a disk writes atomically, as the trailer relies on (see `docs/FORMAT.md`).
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
    ///
    /// The checksum is version 2's (seed 0); see [`for_payload_seeded`](Self::for_payload_seeded)
    /// for a version 3 stream's.
    pub fn for_payload(timestamp: i64, payload: &[u8]) -> Option<Self> {
        Self::for_payload_seeded(0, timestamp, payload)
    }

    /// Builds the header for `payload` in a stream whose CRC seed is `seed` (0 for
    /// version 2), checksum included.
    ///
    /// Returns `None` when the payload is longer than [`MAX_PAYLOAD`].
    pub fn for_payload_seeded(seed: u32, timestamp: i64, payload: &[u8]) -> Option<Self> {
        let size = u32::try_from(payload.len()).ok()?;
        Some(Self::sealed(seed, timestamp, size, payload))
    }

    /// Builds a header with its checksum, seeded with `seed`, computed over `payload`,
    /// whose length is `size`.
    #[inline]
    pub(crate) fn sealed(seed: u32, timestamp: i64, size: u32, payload: &[u8]) -> Self {
        let mut header = Self {
            timestamp: I64::new(timestamp),
            size: U32::new(size),
            checksum: U32::ZERO,
        };
        header.checksum = U32::new(checksum(seed, &header.checked_prefix(), payload));
        header
    }

    /// The header's 16 bytes as one little-endian number: the timestamp in the low 64
    /// bits, then the size, then the checksum. A writer stores it as one value from
    /// registers, so that no copy of the header is read back in wider loads than it was
    /// built with (which stalls on store forwarding).
    #[inline]
    pub(crate) fn to_word(self) -> u128 {
        u128::from(self.timestamp.get() as u64)
            | (u128::from(self.size.get()) << 64)
            | (u128::from(self.checksum.get()) << 96)
    }

    /// The 12 bytes the checksum covers ahead of the payload: timestamp and size.
    #[inline]
    fn checked_prefix(&self) -> [u8; CHECKED_PREFIX_LEN] {
        prefix_bytes(self.timestamp.get(), self.size.get())
    }
}

/// Bytes of the event header the checksum covers ahead of the payload (timestamp, size).
const CHECKED_PREFIX_LEN: usize = 12;

/// The timestamp and size as the checksum sees them: little-endian, back to back.
#[inline]
fn prefix_bytes(timestamp: i64, size: u32) -> [u8; CHECKED_PREFIX_LEN] {
    let mut prefix = [0u8; CHECKED_PREFIX_LEN];
    let (ts, sz) = prefix.split_at_mut(8);
    ts.copy_from_slice(&timestamp.to_le_bytes());
    sz.copy_from_slice(&size.to_le_bytes());
    prefix
}

/// The reflected IEEE CRC-32 polynomial.
const CRC32_POLY: u32 = 0xEDB8_8320;

/// Slicing tables for the 12-byte prefix: `PREFIX_TABLES[k][b]` is the CRC register's
/// change from byte `b` followed by `k` zero bytes.
static PREFIX_TABLES: [[u32; 256]; CHECKED_PREFIX_LEN] = prefix_tables();

/// Builds [`PREFIX_TABLES`] at compile time (an out-of-range index there would fail the
/// build, never a run).
#[allow(clippy::indexing_slicing)]
const fn prefix_tables() -> [[u32; 256]; CHECKED_PREFIX_LEN] {
    let mut tables = [[0u32; 256]; CHECKED_PREFIX_LEN];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                CRC32_POLY ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < CHECKED_PREFIX_LEN {
        let mut byte = 0;
        while byte < 256 {
            let prev = tables[k - 1][byte];
            tables[k][byte] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
}

/// The finished CRC-32 of the 12 prefix bytes seeded with `seed`, computed as one round
/// of twelve independent table lookups (a general-purpose CRC takes two dependent rounds
/// for 12 bytes, plus the setup of a call).
#[inline]
fn prefix_checksum(seed: u32, prefix: &[u8; CHECKED_PREFIX_LEN]) -> u32 {
    let (low, high) = prefix.split_at(8);
    let low = low.try_into().map_or(0, u64::from_le_bytes);
    let high = high.try_into().map_or(0, u32::from_le_bytes);
    // The register starts as the inverted seed (all ones for seed 0), which is the same
    // as xoring it into the first four bytes.
    let low = low ^ u64::from(!seed);
    let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11] = &PREFIX_TABLES;
    let at = |table: &[u32; 256], word: u64, byte: u32| -> u32 {
        let index = (word >> (8 * byte)) & 0xFF;
        table.get(index as usize).copied().unwrap_or(0)
    };
    let high = u64::from(high);
    let crc = at(t11, low, 0)
        ^ at(t10, low, 1)
        ^ at(t9, low, 2)
        ^ at(t8, low, 3)
        ^ at(t7, low, 4)
        ^ at(t6, low, 5)
        ^ at(t5, low, 6)
        ^ at(t4, low, 7)
        ^ at(t3, high, 0)
        ^ at(t2, high, 1)
        ^ at(t1, high, 2)
        ^ at(t0, high, 3);
    !crc
}

/// The CRC-32 (IEEE) of an event, seeded with `seed`: header bytes 0..12 followed by the
/// payload.
///
/// The 12 checked header bytes are not contiguous with the payload (the stored checksum
/// lies between them). Payloads of 16 to 143 bytes take the carry-less multiplication
/// of `sys::event_crc_clmul` where the CPU has it; otherwise the prefix's CRC comes from
/// [`prefix_checksum`], and `crc32fast` continues from it over the payload, in one call.
#[inline(always)]
fn checksum(seed: u32, prefix: &[u8; CHECKED_PREFIX_LEN], payload: &[u8]) -> u32 {
    if let Some(crc) = crate::sys::event_crc_clmul(seed, prefix, payload) {
        return crc;
    }
    let mut hasher = crc32fast::Hasher::new_with_initial(prefix_checksum(seed, prefix));
    hasher.update(payload);
    hasher.finalize()
}

/// The checksum stored for an event with this timestamp and payload.
///
/// Covering the timestamp and size means an all-zero region never checks out as an
/// event. Payloads longer than [`MAX_PAYLOAD`] cannot be stored; their size field is
/// taken as `u32::MAX` here.
///
/// This is version 2's checksum (seed 0); [`event_checksum_seeded`] gives a version 3
/// stream's.
pub fn event_checksum(timestamp: i64, payload: &[u8]) -> u32 {
    event_checksum_seeded(0, timestamp, payload)
}

/// The checksum stored for an event with this timestamp and payload in a stream whose
/// CRC seed is `seed` (see [`Trailer::seed`]): the CRC-32 continued from `seed`, as
/// zlib's `crc32(seed, ...)` computes it. Seed 0 gives [`event_checksum`].
///
/// ```
/// use evstream::format::{event_checksum, event_checksum_seeded};
/// assert_eq!(event_checksum_seeded(0, 7, b"abc"), event_checksum(7, b"abc"));
/// assert_ne!(event_checksum_seeded(1, 7, b"abc"), event_checksum(7, b"abc"));
/// ```
pub fn event_checksum_seeded(seed: u32, timestamp: i64, payload: &[u8]) -> u32 {
    let size = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    EventHeader::sealed(seed, timestamp, size, payload)
        .checksum
        .get()
}

/// The seed under which an event with this timestamp and payload has the checksum
/// `stored`: the one `seed` for which `event_checksum_seeded(seed, timestamp, payload)`
/// is `stored`.
///
/// A CRC continued from a register is affine in that register: the checksum under
/// `seed` is the checksum under 0 xored with `seed` carried through the event's bytes as
/// zeros, which is `seed` times x to the power of the event's bit count, modulo the
/// polynomial. That product is inverted here. Any event yields some seed, garbage
/// included; only a second event that checks out under it shows it to be its file's
/// (what [`Salvage`](crate::salvage::Salvage) does when a version 3 stream's trailer is
/// lost).
///
/// ```
/// use evstream::format::{event_checksum_seeded, seed_of_event};
/// let stored = event_checksum_seeded(0x1234_5678, 7, b"abc");
/// assert_eq!(seed_of_event(7, b"abc", stored), 0x1234_5678);
/// ```
pub fn seed_of_event(timestamp: i64, payload: &[u8], stored: u32) -> u32 {
    let carried = stored ^ event_checksum_seeded(0, timestamp, payload);
    let bits = (CHECKED_PREFIX_LEN as u64 + payload.len() as u64) * 8;
    multiply_mod_poly(power_mod_poly(X_INVERSE, bits), carried)
}

/// `x⁻¹` modulo the CRC polynomial, in the reflected representation (the top bit is
/// `x⁰`): the register that one step of the CRC over a zero bit takes to `x⁰`.
const X_INVERSE: u32 = ((0x8000_0000 ^ CRC32_POLY) << 1) | 1;

/// `a · b` modulo the CRC polynomial, both reflected (zlib's `multmodp`).
pub(crate) const fn multiply_mod_poly(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 == 1 {
            (b >> 1) ^ CRC32_POLY
        } else {
            b >> 1
        };
    }
    product
}

/// `base` to the power `exponent` modulo the CRC polynomial, reflected.
pub(crate) const fn power_mod_poly(mut base: u32, mut exponent: u64) -> u32 {
    let mut result = 1u32 << 31;
    while exponent != 0 {
        if exponent & 1 == 1 {
            result = multiply_mod_poly(result, base);
        }
        base = multiply_mod_poly(base, base);
        exponent >>= 1;
    }
    result
}

/// Whether `seed` may be a version 3 stream's CRC seed: not 0 (which is version 2), and
/// not the one value under which twelve zero bytes (an event header of zeros) would have
/// the checksum 0, so that an all-zero event header never checks out.
pub fn seed_is_valid(seed: u32) -> bool {
    seed != 0 && prefix_checksum(seed, &[0; CHECKED_PREFIX_LEN]) != 0
}

/// Bytes an event with a payload of `len` bytes occupies, or `None` past the format's limit.
#[inline]
pub fn event_len(len: usize) -> Option<u64> {
    let len = u64::try_from(len).ok().filter(|&l| l <= MAX_PAYLOAD)?;
    Some(EVENT_HEADER_LEN + len)
}

/// One event as parsed from the events region, before or after its checksum is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEvent<'a> {
    /// The event's timestamp.
    pub timestamp: i64,
    /// The checksum stored in the event's header.
    pub stored_checksum: u32,
    /// The header bytes the checksum covers (timestamp and size), as in the file.
    pub prefix: &'a [u8; CHECKED_PREFIX_LEN],
    /// The payload, `size` bytes.
    pub payload: &'a [u8],
}

impl RawEvent<'_> {
    /// Bytes the event occupies.
    #[inline]
    pub fn len(&self) -> usize {
        EVENT_HEADER_LEN as usize + self.payload.len()
    }

    /// The checksum computed over the event's bytes, seeded with `seed`.
    #[inline]
    pub fn computed_checksum(&self, seed: u32) -> u32 {
        checksum(seed, self.prefix, self.payload)
    }

    /// Checks the stored checksum against the event's bytes, seeded with `seed`.
    #[inline]
    pub fn verify(&self, seed: u32) -> Result<(), Corruption> {
        let stored = self.stored_checksum;
        let computed = self.computed_checksum(seed);
        if stored == computed {
            Ok(())
        } else {
            Err(Corruption::ChecksumMismatch { stored, computed })
        }
    }
}

/// Parses the event starting at `pos` of `events`, the published bytes after the stream
/// header. Checks only that the header and the payload it claims lie inside `events`.
///
/// The 16-byte header is read with one unaligned load and its fields taken from that
/// value (copying it through a header struct made the compiler store it and load it
/// back at another width, which stalls store forwarding on every event).
///
/// An all-zero event header is refused even without a checksum check (its checksum can
/// never match: the CRC-32 of twelve zero bytes is not zero), so that unverified
/// iteration stops at zeros (unwritten sectors, holes) instead of walking them 16 bytes
/// at a time.
#[inline]
pub(crate) fn parse_event(events: &[u8], pos: usize) -> Result<RawEvent<'_>, Corruption> {
    let rest = events.get(pos..).unwrap_or_default();
    let Some((header, body)) = rest.split_first_chunk::<{ EVENT_HEADER_LEN as usize }>() else {
        return Err(Corruption::TruncatedHeader {
            available: rest.len() as u64,
        });
    };
    let word = u128::from_le_bytes(*header);
    if word == 0 {
        return Err(Corruption::ChecksumMismatch {
            stored: 0,
            computed: checksum(0, &[0; CHECKED_PREFIX_LEN], &[]),
        });
    }
    // Bits 0..64 the timestamp, 64..96 the size, 96..128 the checksum.
    let timestamp = word as u64 as i64;
    let size = (word >> 64) as u32;
    let stored_checksum = (word >> 96) as u32;
    // Always `Some` (the header holds 16 bytes); the compiler removes the check.
    let Some((prefix, _)) = header.split_first_chunk::<CHECKED_PREFIX_LEN>() else {
        return Err(Corruption::TruncatedHeader {
            available: rest.len() as u64,
        });
    };
    match body.get(..size as usize) {
        Some(payload) => Ok(RawEvent {
            timestamp,
            stored_checksum,
            prefix,
            payload,
        }),
        None => Err(Corruption::TruncatedPayload {
            size,
            available: body.len() as u64,
        }),
    }
}

/// Parses and verifies (with the stream's CRC `seed`) the event at `pos`, also checking
/// its timestamp against `previous`.
#[inline]
pub(crate) fn read_verified(
    seed: u32,
    events: &[u8],
    pos: usize,
    previous: i64,
) -> Result<RawEvent<'_>, Corruption> {
    let event = parse_event(events, pos)?;
    event.verify(seed)?;
    let got = event.timestamp;
    if got < previous {
        return Err(Corruption::TimestampOutOfOrder { previous, got });
    }
    Ok(event)
}

/// The outcome of checking the events of an events region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes of valid events from the start of the region (the end of the last valid one).
    pub valid_len: usize,
    /// Number of valid events.
    pub count: u64,
    /// Timestamp of the last valid event.
    pub last_timestamp: Option<i64>,
    /// The first damaged event: its position in the region and what is wrong.
    pub damage: Option<(usize, Corruption)>,
}

/// Verifies every event of `events` in order, stopping at the first damaged one.
#[cfg(test)]
pub(crate) fn scan(events: &[u8]) -> Scan {
    scan_from(0, events, 0, None)
}

/// Verifies the events of `events` from position `start` on, in order, stopping at the
/// first damaged one; `previous` is the timestamp of the event before `start`, if any;
/// checksums are seeded with `seed`. `valid_len` and the damage position count from the
/// start of `events`; `count` counts only the events from `start` on.
pub(crate) fn scan_from(seed: u32, events: &[u8], start: usize, previous: Option<i64>) -> Scan {
    let mut scan = Scan {
        valid_len: start,
        count: 0,
        last_timestamp: previous,
        damage: None,
    };
    while scan.valid_len < events.len() {
        let previous = scan.last_timestamp.unwrap_or(i64::MIN);
        match read_verified(seed, events, scan.valid_len, previous) {
            Ok(event) => {
                scan.valid_len += event.len();
                scan.count += 1;
                scan.last_timestamp = Some(event.timestamp);
            }
            Err(reason) => {
                scan.damage = Some((scan.valid_len, reason));
                break;
            }
        }
    }
    scan
}

/// Checks what a trailer record claims of the events below its durable watermark: that an
/// event ends exactly at `end.0` (a position in `events`), and that `end.1` events lie
/// below it, the last stamped `end.2`. Walks the event headers only (sizes and timestamp
/// order, no checksums) from `start`, a position known to be where an event ends with its
/// count and last timestamp there: the watermark of the trailer's older record (the flush
/// before), so that the walk covers one flush's events, or `(0, 0, None)`.
///
/// A writer's open trusts the durable events without reading them, and checks only what
/// lies above the watermark. When the first event above it is damaged, the open would
/// drop everything from the watermark up as a torn tail, which is right after a power
/// loss but wrong for a record whose watermark lies inside an event (one that passes its
/// own checksum but does not describe the file): the open would then cut a durable event
/// in two. So in that case, and only then, the open checks the record first.
///
/// # Errors
/// The position and the problem: an event that crosses the watermark
/// ([`Corruption::WatermarkInsideEvent`]), or a count or last timestamp that do not match
/// (see [`durable_mismatch`]).
pub(crate) fn check_watermark(
    events: &[u8],
    start: (usize, u64, Option<i64>),
    end: (usize, u64, Option<i64>),
) -> Result<(), (usize, Corruption)> {
    walk_durable(None, events, start, end)
}

/// Checks every event below the watermark `end.0` (a position in `events`), checksums
/// (seeded with `seed`) included, then what the trailer record claims of them, as
/// [`check_watermark`] does.
///
/// # Errors
/// The first damaged event below the watermark, or what [`check_watermark`] reports.
pub(crate) fn check_durable(
    seed: u32,
    events: &[u8],
    end: (usize, u64, Option<i64>),
) -> Result<(), (usize, Corruption)> {
    walk_durable(Some(seed), events, (0, 0, None), end)
}

/// The walk of [`check_watermark`] and [`check_durable`]: from `start` to the watermark
/// `end.0`, checking checksums with the seed `verify` if it is given.
fn walk_durable(
    verify: Option<u32>,
    events: &[u8],
    start: (usize, u64, Option<i64>),
    end: (usize, u64, Option<i64>),
) -> Result<(), (usize, Corruption)> {
    let (watermark, count, last) = end;
    let (mut pos, mut seen, mut newest) = start;
    while pos < watermark {
        let event = match parse_event(events, pos) {
            Ok(event) => event,
            // The size field reaches past the write offset, and so past the watermark.
            Err(Corruption::TruncatedPayload { size, .. }) => {
                return Err((pos, crossing(pos, EVENT_HEADER_LEN + u64::from(size))));
            }
            Err(reason) => return Err((pos, reason)),
        };
        // Before the checksum, which covers bytes above the watermark: a torn tail there
        // is no damage to a durable event.
        if pos + event.len() > watermark {
            return Err((pos, crossing(pos, event.len() as u64)));
        }
        if let Some(seed) = verify {
            event.verify(seed).map_err(|reason| (pos, reason))?;
        }
        let previous = newest.unwrap_or(i64::MIN);
        if event.timestamp < previous {
            return Err((
                pos,
                Corruption::TimestampOutOfOrder {
                    previous,
                    got: event.timestamp,
                },
            ));
        }
        pos += event.len();
        seen += 1;
        newest = Some(event.timestamp);
    }
    match durable_mismatch((count, last), (seen, newest)) {
        Some(reason) => Err((watermark, reason)),
        None => Ok(()),
    }
}

/// [`Corruption::WatermarkInsideEvent`] for the event at position `pos` of the events
/// region, `len` bytes long.
fn crossing(pos: usize, len: u64) -> Corruption {
    Corruption::WatermarkInsideEvent {
        end: (STREAM_HEADER_LEN + pos as u64).saturating_add(len),
    }
}

/// What is wrong when a trailer record's durable count and last timestamp (`claimed`)
/// are not those of the events that end at its watermark (`found`): the count first,
/// then the timestamp. `None` when they agree.
pub(crate) fn durable_mismatch(
    claimed: (u64, Option<i64>),
    found: (u64, Option<i64>),
) -> Option<Corruption> {
    if claimed.0 != found.0 {
        return Some(Corruption::DurableCountMismatch {
            trailer: claimed.0,
            scanned: found.0,
        });
    }
    match (claimed.1, found.1) {
        (Some(trailer), Some(found)) if trailer != found => {
            Some(Corruption::DurableTimestampMismatch { trailer, found })
        }
        _ => None,
    }
}

/// Where [`check_watermark`] can start for the record `current`, given the record in the
/// other trailer slot: that record's watermark, count and last timestamp (positions in
/// the events region) if it is older and lies at or below `current`'s (watermarks and
/// counts only grow), else the start of the region.
pub(crate) fn watermark_walk_start(
    current: &Trailer,
    other: Option<Trailer>,
) -> (usize, u64, Option<i64>) {
    other
        .filter(|o| {
            o.sequence < current.sequence
                && o.durable_offset <= current.durable_offset
                && o.durable_count <= current.durable_count
        })
        .and_then(|o| {
            let pos = usize::try_from(o.durable_offset.checked_sub(STREAM_HEADER_LEN)?).ok()?;
            Some((pos, o.durable_count, o.durable_last_timestamp))
        })
        .unwrap_or((0, 0, None))
}

/// Whether a writer's open must [`check_watermark`] before it drops a torn tail: the
/// first damaged event is the first above a watermark that is not the start of the
/// events region.
pub(crate) fn torn_at_watermark(scan: &Scan, watermark: usize) -> bool {
    watermark > 0
        && scan
            .damage
            .as_ref()
            .is_some_and(|(pos, _)| *pos == watermark)
}

/// The magic number at the start of each trailer slot: the bytes `EVSTREAM`.
pub const MAGIC: [u8; 8] = *b"EVSTREAM";
/// The newest format version this crate reads and writes: version 3, whose trailer
/// records carry a CRC seed. It also reads and writes version 2 ([`FORMAT_VERSION_2`]).
pub const FORMAT_VERSION: u32 = 3;
/// Format version 2: the trailer records carry no CRC seed (it is 0).
pub const FORMAT_VERSION_2: u32 = 2;
/// Length of one trailer slot: one disk sector, written atomically.
pub const TRAILER_SLOT_LEN: u64 = SECTOR_LEN;
/// Length of the trailer: two slots, written alternately.
pub const TRAILER_LEN: u64 = 2 * TRAILER_SLOT_LEN;
/// Bytes at the start of a version 2 record that its checksum covers.
pub const TRAILER_CHECKED_LEN: usize = 64;
/// Bytes at the start of a version 3 record that its checksum covers (the seed too).
pub const TRAILER_CHECKED_LEN_V3: usize = 68;
/// Length of the slot record (the checked fields, the checksum, and 4 more bytes: reserved
/// in version 2, the seed ahead of the checksum in version 3).
pub const TRAILER_RECORD_LEN: usize = 72;
/// Byte offset, from the trailer's start, of the 64 bytes reserved for words readers wait
/// on. They lie in slot 0 outside its record, change without a flush, and are never
/// trusted: no checksum covers them.
pub const WAIT_WORDS_AT: u64 = 256;
/// Length of the wait-word area.
pub const WAIT_WORDS_LEN: u64 = 64;
/// Bit of [`TrailerRecord::flags`]: the stream is sealed and takes no more events. The
/// other bits are zero; a record with one of them set is inconsistent.
pub const FLAG_SEALED: u32 = 1;
/// What [`TrailerRecord::durable_last_timestamp`] holds when `durable_count` is 0. It is
/// not a marker: with a count above 0 the same value is a real event's timestamp.
pub const NO_DURABLE_TIMESTAMP: i64 = i64::MIN;

/// Where the trailer of a file of `len` bytes starts: the last two whole 512-byte sectors
/// (aligned to file offsets) of the file, or `None` if the file is too short to hold the
/// stream header, one empty event and the trailer ([`MIN_CAPACITY`]).
///
/// This is also where the event area ends: events lie in `24..trailer_offset(len)`.
pub fn trailer_offset(len: u64) -> Option<u64> {
    if len < MIN_CAPACITY {
        return None;
    }
    Some(len / SECTOR_LEN * SECTOR_LEN - TRAILER_LEN)
}

/// The smallest capacity whose event area holds `events_len` bytes of events (each event
/// is 16 bytes plus its payload): the header, the events rounded up to a whole 512-byte
/// sector, and the trailer. `None` on overflow.
///
/// ```
/// use evstream::format::{capacity_for_events, trailer_offset};
/// let capacity = capacity_for_events(1000).unwrap();
/// assert_eq!(capacity, 2048);
/// assert!(trailer_offset(capacity).unwrap() >= 24 + 1000);
/// ```
pub fn capacity_for_events(events_len: u64) -> Option<u64> {
    let end = STREAM_HEADER_LEN.checked_add(events_len)?;
    let sectors = end.div_ceil(SECTOR_LEN).checked_mul(SECTOR_LEN)?;
    Some(sectors.checked_add(TRAILER_LEN)?.max(MIN_CAPACITY))
}

/// One trailer slot's record, the first 72 bytes of the slot; the rest of the slot is zero
/// (slot 0 also holds the wait words, see [`WAIT_WORDS_AT`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct TrailerRecord {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// [`FLAG_SEALED`]; other bits are zero.
    pub flags: U32,
    /// Incremented on every trailer write; the valid slot with the higher one is current.
    pub sequence: U64,
    /// The durable watermark: events before this offset are on stable storage.
    pub durable_offset: U64,
    /// Number of events before `durable_offset`.
    pub durable_count: U64,
    /// Timestamp of the last event before `durable_offset` when `durable_count` is above
    /// 0 (any `i64`, `i64::MIN` included); [`NO_DURABLE_TIMESTAMP`] when it is 0.
    pub durable_last_timestamp: I64,
    /// Incremented by every recovery that moves the write offset back.
    pub generation: U64,
    /// No byte at or past this offset in the event area was written since the stream
    /// was created: the writer moves this limit forward (durably) before writing past it.
    pub dirty_limit: U64,
    /// Version 2: the CRC-32 of bytes 0..64 of the record. Version 3: the CRC seed.
    pub word_64: U32,
    /// Version 2: zero (not covered by the checksum). Version 3: the CRC-32 of bytes
    /// 0..68 of the record.
    pub word_68: U32,
}

impl TrailerRecord {
    /// The stored checksum: at byte 64 in version 2, at byte 68 in version 3.
    pub fn stored_checksum(&self) -> u32 {
        if self.version.get() == FORMAT_VERSION_2 {
            self.word_64.get()
        } else {
            self.word_68.get()
        }
    }

    /// The CRC seed: 0 in version 2.
    pub fn seed(&self) -> u32 {
        if self.version.get() == FORMAT_VERSION_2 {
            0
        } else {
            self.word_64.get()
        }
    }
}

const _: () = assert!(size_of::<TrailerRecord>() == TRAILER_RECORD_LEN);

/// The stream state a trailer holds, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The slot write counter of the current slot.
    pub sequence: u64,
    /// Whether the stream is sealed.
    pub sealed: bool,
    /// The durable watermark (offset of the end of the last flushed event).
    pub durable_offset: u64,
    /// Events before the watermark.
    pub durable_count: u64,
    /// Timestamp of the last event before the watermark: `None` exactly when
    /// `durable_count` is 0 (encoded as [`NO_DURABLE_TIMESTAMP`], which with a count
    /// above 0 is a real timestamp).
    pub durable_last_timestamp: Option<i64>,
    /// The recovery generation.
    pub generation: u64,
    /// The offset below which every event byte ever written lies (in version 3: in
    /// this life of the file).
    pub dirty_limit: u64,
    /// The CRC seed every event's checksum is seeded with: 0 for a version 2 stream,
    /// which is what a record with seed 0 encodes as; anything else is version 3 (and
    /// must pass [`seed_is_valid`]).
    pub seed: u32,
}

impl Trailer {
    /// The trailer of a freshly created, empty stream.
    pub fn empty() -> Self {
        Self {
            sequence: 1,
            sealed: false,
            durable_offset: STREAM_HEADER_LEN,
            durable_count: 0,
            durable_last_timestamp: None,
            generation: 0,
            dirty_limit: STREAM_HEADER_LEN,
            seed: 0,
        }
    }

    /// The format version this trailer is encoded as: 2 for seed 0, else 3.
    pub fn version(&self) -> u32 {
        if self.seed == 0 {
            FORMAT_VERSION_2
        } else {
            FORMAT_VERSION
        }
    }

    /// Encodes the record, checksum included: as version 2 when the seed is 0, else as
    /// version 3.
    pub fn encode(&self) -> TrailerRecord {
        let mut record = TrailerRecord {
            magic: MAGIC,
            version: U32::new(self.version()),
            flags: U32::new(if self.sealed { FLAG_SEALED } else { 0 }),
            sequence: U64::new(self.sequence),
            durable_offset: U64::new(self.durable_offset),
            durable_count: U64::new(self.durable_count),
            durable_last_timestamp: I64::new(
                self.durable_last_timestamp
                    .filter(|_| self.durable_count > 0)
                    .unwrap_or(NO_DURABLE_TIMESTAMP),
            ),
            generation: U64::new(self.generation),
            dirty_limit: U64::new(self.dirty_limit),
            word_64: U32::new(self.seed),
            word_68: U32::ZERO,
        };
        set_record_checksum(&mut record);
        record
    }

    /// The encoded record as bytes, ready to be written at the start of its slot.
    pub fn to_bytes(&self) -> [u8; TRAILER_RECORD_LEN] {
        let mut out = [0u8; TRAILER_RECORD_LEN];
        out.copy_from_slice(self.encode().as_bytes());
        out
    }

    /// The slot (0 or 1) a record with this sequence number is written to.
    pub fn slot(sequence: u64) -> u64 {
        sequence % 2
    }
}

/// The checksum a record of its version must store: over bytes 0..64 in version 2, over
/// bytes 0..68 (the seed included) in version 3.
fn record_checksum(record: &TrailerRecord) -> u32 {
    let bytes = record.as_bytes();
    let checked = if record.version.get() == FORMAT_VERSION_2 {
        TRAILER_CHECKED_LEN
    } else {
        TRAILER_CHECKED_LEN_V3
    };
    crc32fast::hash(bytes.get(..checked).unwrap_or(bytes))
}

/// Stores `record`'s checksum where its version keeps it.
fn set_record_checksum(record: &mut TrailerRecord) {
    let crc = U32::new(record_checksum(record));
    if record.version.get() == FORMAT_VERSION_2 {
        record.word_64 = crc;
    } else {
        record.word_68 = crc;
    }
}

/// Why the bytes where a trailer belongs do not hold a usable one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrailerProblem {
    /// Neither slot starts with the magic number: this is not a stream.
    NoMagic,
    /// A slot has the magic number but a format version this crate does not know.
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// Both slots have the magic and version but neither checksum matches: the trailer of
    /// a stream is damaged.
    Damaged,
    /// The current slot's fields contradict each other or the file's length, or it sets
    /// a flag bit this version does not define.
    Inconsistent,
    /// No slot holds a valid record, and one that passes its checksum sits in the slot
    /// its sequence number does not name (a record with sequence `s` belongs in slot
    /// `s % 2`): no writer puts it there.
    WrongSlot {
        /// The record's sequence number.
        sequence: u64,
        /// The slot it was found in.
        slot: u64,
    },
}

/// A trailer record's `sequence` and `generation` lie below this (2^63): a writer adds one
/// to them, and no file could ever reach it (a record a nanosecond for 292 years).
pub const COUNTER_LIMIT: u64 = 1 << 63;

/// Decodes a trailer from its two slot records, as read from the file (slot 0 first);
/// `trailer_at` is the trailer's offset (the end of the event area), against which the
/// watermark is checked.
///
/// A slot holds a valid record when it starts with the magic, has version 2 or 3, its
/// checksum matches and its sequence number names that slot (`sequence % 2`). The
/// current record is the valid one with the higher sequence; it must then be consistent
/// (see [`TrailerProblem::Inconsistent`]). The other slot's record, valid or not, is not
/// looked at further.
///
/// # Errors
/// What is wrong when neither slot holds a valid record, or the current one is not
/// consistent; see [`TrailerProblem`].
pub fn decode_trailer(
    slots: [&[u8; TRAILER_RECORD_LEN]; 2],
    trailer_at: u64,
) -> Result<Trailer, TrailerProblem> {
    let mut best: Option<(Trailer, TrailerRecord)> = None;
    let mut problem = TrailerProblem::NoMagic;
    for (slot, bytes) in (0u64..).zip(slots) {
        let Ok(record) = TrailerRecord::read_from_bytes(bytes) else {
            continue;
        };
        if record.magic != MAGIC {
            continue;
        }
        let version = record.version.get();
        if version != FORMAT_VERSION && version != FORMAT_VERSION_2 {
            problem = TrailerProblem::UnsupportedVersion { version };
            continue;
        }
        if record.stored_checksum() != record_checksum(&record) {
            if problem == TrailerProblem::NoMagic {
                problem = TrailerProblem::Damaged;
            }
            continue;
        }
        let sequence = record.sequence.get();
        if Trailer::slot(sequence) != slot {
            // Never written there by a writer, which alternates slots by sequence: a
            // record out of place would make the next write overwrite the current record.
            if matches!(problem, TrailerProblem::NoMagic | TrailerProblem::Damaged) {
                problem = TrailerProblem::WrongSlot { sequence, slot };
            }
            continue;
        }
        let durable_count = record.durable_count.get();
        let trailer = Trailer {
            sequence,
            sealed: record.flags.get() & FLAG_SEALED != 0,
            durable_offset: record.durable_offset.get(),
            durable_count,
            // "No durable event" is a count of 0, not a timestamp: with a count above 0,
            // `i64::MIN` is an event's timestamp like any other.
            durable_last_timestamp: (durable_count > 0)
                .then_some(record.durable_last_timestamp.get()),
            generation: record.generation.get(),
            dirty_limit: record.dirty_limit.get(),
            seed: record.seed(),
        };
        if best.is_none_or(|(b, _)| trailer.sequence > b.sequence) {
            best = Some((trailer, record));
        }
    }
    let (trailer, record) = best.ok_or(problem)?;
    let events = trailer.durable_offset.saturating_sub(STREAM_HEADER_LEN);
    let consistent = (STREAM_HEADER_LEN..=trailer_at).contains(&trailer.durable_offset)
        && (trailer.durable_offset..=trailer_at).contains(&trailer.dirty_limit)
        && trailer.durable_count <= events / EVENT_HEADER_LEN
        && (trailer.durable_count == 0) == (events == 0)
        && (trailer.durable_count > 0
            || record.durable_last_timestamp.get() == NO_DURABLE_TIMESTAMP)
        // Bits this version does not define: a record that sets one means something this
        // reader cannot know.
        && record.flags.get() & !FLAG_SEALED == 0
        // Counters a writer increments: far below where they would overflow.
        && trailer.sequence < COUNTER_LIMIT
        && trailer.generation < COUNTER_LIMIT
        // A version 3 record's seed: never 0 (version 2's), never one under which a
        // header of zeros would check out.
        && (record.version.get() == FORMAT_VERSION_2 || seed_is_valid(trailer.seed));
    if consistent {
        Ok(trailer)
    } else {
        Err(TrailerProblem::Inconsistent)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The numbers FORMAT.md gives an implementation to check against.
    #[test]
    fn the_documented_checksums_and_the_one_invalid_nonzero_seed() {
        let t = 1_700_000_000_000_000_000;
        assert_eq!(event_checksum(t, b"abc"), 0x86C3_0C55);
        assert_eq!(event_checksum_seeded(0x1234_5678, t, b"abc"), 0xB73C_6E8F);
        assert_eq!(prefix_checksum(0x59A3_C794, &[0; CHECKED_PREFIX_LEN]), 0);
        assert!(!seed_is_valid(0x59A3_C794));
        assert!(!seed_is_valid(0));
        assert!(seed_is_valid(0x1234_5678));
        // "A lost trailer": x^-1 in the register's reflected representation, and the
        // seed the documented event yields back.
        assert_eq!(X_INVERSE, 0xDB71_0641);
        assert_eq!(multiply_mod_poly(X_INVERSE, 1 << 30), 1 << 31);
        assert_eq!(seed_of_event(t, b"abc", 0xB73C_6E8F), 0x1234_5678);
    }

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

    /// The event checksum as the format defines it, by `crc32fast` over one joined buffer.
    fn reference_checksum(timestamp: i64, payload: &[u8]) -> u32 {
        let mut bytes = timestamp.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        crc32fast::hash(&bytes)
    }

    #[test]
    fn the_table_prefix_checksum_agrees_with_a_plain_crc32() {
        // Every value of every prefix byte, alone, and payload lengths around the folded
        // path's thresholds of `crc32fast` (16, 64, 128, 256 bytes).
        for at in 0..CHECKED_PREFIX_LEN {
            for value in 0..=255u8 {
                let mut prefix = [0u8; CHECKED_PREFIX_LEN];
                prefix[at] = value;
                assert_eq!(
                    prefix_checksum(0, &prefix),
                    crc32fast::hash(&prefix),
                    "{at} {value}"
                );
            }
        }
        let payload: Vec<u8> = (0..600u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in 0..payload.len() {
            for timestamp in [i64::MIN, -1, 0, 1, 0x0123_4567_89ab_cdef, i64::MAX] {
                let p = &payload[..len];
                assert_eq!(
                    event_checksum(timestamp, p),
                    reference_checksum(timestamp, p),
                    "{len} {timestamp}"
                );
            }
        }
    }

    /// A seeded event checksum as the format defines it: zlib's `crc32(seed, ...)` over
    /// the 12 header bytes and the payload, joined.
    fn reference_prefixed(seed: u32, prefix: &[u8], payload: &[u8]) -> u32 {
        let mut hasher = crc32fast::Hasher::new_with_initial(seed);
        hasher.update(prefix);
        hasher.update(payload);
        hasher.finalize()
    }

    #[test]
    fn every_checksum_path_agrees_with_a_plain_crc32_at_every_seed_length_and_alignment() {
        // The carry-less path takes 16 to 143 bytes; around and inside it, at every
        // alignment of the payload, with size fields that are not the payload's length
        // (a reader checks a damaged header's size against its bytes), and with seeds
        // whose bits reach every byte of the first block.
        let bytes: Vec<u8> = (0..400u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for seed in [0, 1, 0x8000_0000, 0xFFFF_FFFF, 0x59A3_C794] {
            for len in 0..=200 {
                for align in [0, 1, 7, 8, 15] {
                    let payload = &bytes[align..align + len];
                    for size in [len as u32, 0, u32::MAX] {
                        let prefix = prefix_bytes(0x0123_4567_89ab_cdef ^ len as i64, size);
                        assert_eq!(
                            checksum(seed, &prefix, payload),
                            reference_prefixed(seed, &prefix, payload),
                            "seed {seed:#x} len {len} align {align} size {size}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn payloads_of_zeros_do_not_check_out_under_another_timestamp_size_or_seed() {
        // All-zero payloads, the commonest stale or torn content, through every path.
        for len in [0, 15, 16, 17, 64, 143, 144, 1024] {
            let zeros = vec![0u8; len];
            let c = event_checksum_seeded(9, 5, &zeros);
            assert_eq!(
                c,
                reference_prefixed(9, &prefix_bytes(5, len as u32), &zeros)
            );
            assert_ne!(c, event_checksum_seeded(9, 6, &zeros), "{len}");
            assert_ne!(c, event_checksum_seeded(10, 5, &zeros), "{len}");
            if len > 0 {
                assert_ne!(c, event_checksum_seeded(9, 5, &zeros[1..]), "{len}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn the_seed_of_an_event_is_the_seed_it_was_checksummed_with(
            seed in proptest::prelude::any::<u32>(),
            timestamp in proptest::prelude::any::<i64>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let stored = event_checksum_seeded(seed, timestamp, &payload);
            proptest::prop_assert_eq!(seed_of_event(timestamp, &payload, stored), seed);
        }

        #[test]
        fn the_checksum_of_any_event_is_the_plain_crc32_of_its_checked_bytes(
            seed in proptest::prelude::any::<u32>(),
            timestamp in proptest::prelude::any::<i64>(),
            size in proptest::prelude::any::<u32>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let prefix = prefix_bytes(timestamp, size);
            proptest::prop_assert_eq!(
                checksum(seed, &prefix, &payload),
                reference_prefixed(seed, &prefix, &payload)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn event_checksums_agree_with_a_plain_crc32(
            timestamp in proptest::prelude::any::<i64>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let ours = event_checksum(timestamp, &payload);
            proptest::prop_assert_eq!(ours, reference_checksum(timestamp, &payload));
            // And the parser's check accepts exactly that checksum.
            let header = EventHeader::for_payload(timestamp, &payload).unwrap();
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            let event = read_verified(0, &bytes, 0, i64::MIN).unwrap();
            proptest::prop_assert_eq!(event.timestamp, timestamp);
            proptest::prop_assert_eq!(event.payload, &payload[..]);
        }

        #[test]
        fn a_header_stored_as_one_word_is_the_header_s_bytes(
            seed in proptest::prelude::any::<u32>(),
            timestamp in proptest::prelude::any::<i64>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let header = EventHeader::for_payload_seeded(seed, timestamp, &payload).unwrap();
            proptest::prop_assert_eq!(&header.to_word().to_le_bytes()[..], header.as_bytes());
        }
    }

    /// The seeded event checksum as the format defines it: zlib's `crc32(seed, ...)`
    /// over one joined buffer.
    fn reference_seeded(seed: u32, timestamp: i64, payload: &[u8]) -> u32 {
        let mut bytes = timestamp.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        let mut hasher = crc32fast::Hasher::new_with_initial(seed);
        hasher.update(&bytes);
        hasher.finalize()
    }

    proptest::proptest! {
        #[test]
        fn seeded_checksums_agree_with_a_crc32_continued_from_the_seed(
            seed in proptest::prelude::any::<u32>(),
            timestamp in proptest::prelude::any::<i64>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let ours = event_checksum_seeded(seed, timestamp, &payload);
            proptest::prop_assert_eq!(ours, reference_seeded(seed, timestamp, &payload));
            let header = EventHeader::for_payload_seeded(seed, timestamp, &payload).unwrap();
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            proptest::prop_assert!(read_verified(seed, &bytes, 0, i64::MIN).is_ok());
            // Under any other seed the same bytes fail their check.
            let other = seed.wrapping_add(1);
            let failed = matches!(
                read_verified(other, &bytes, 0, i64::MIN),
                Err(Corruption::ChecksumMismatch { .. })
            );
            proptest::prop_assert!(failed);
        }
    }

    /// The one seed under which twelve zero bytes have the checksum 0: found by running
    /// the CRC backwards from a register that ends as all ones.
    fn zeros_passing_seed() -> u32 {
        let mut register = 0xFFFF_FFFFu32;
        for _ in 0..96 {
            register = if register & 0x8000_0000 != 0 {
                ((register ^ CRC32_POLY) << 1) | 1
            } else {
                register << 1
            };
        }
        !register
    }

    #[test]
    fn seed_zero_is_version_2_and_one_seed_is_never_valid() {
        assert_eq!(
            event_checksum_seeded(0, 5, b"xyz"),
            event_checksum(5, b"xyz")
        );
        assert!(!seed_is_valid(0));
        let bad = zeros_passing_seed();
        assert_eq!(reference_seeded(bad, 0, &[]), 0);
        assert!(!seed_is_valid(bad));
        assert!(seed_is_valid(bad ^ 1) && seed_is_valid(1) && seed_is_valid(u32::MAX));
    }

    #[test]
    fn a_version_3_record_carries_its_seed_inside_its_checksum() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        let seeded = Trailer {
            seed: 0x1234_5678,
            dirty_limit: 4096,
            ..Trailer::empty()
        };
        let bytes = record_bytes(&seeded);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
        assert_eq!(bytes[64..68], 0x1234_5678u32.to_le_bytes());
        assert_eq!(
            bytes[68..72],
            crc32fast::hash(&bytes[..68]).to_le_bytes(),
            "the checksum covers the seed"
        );
        assert_eq!(decode_trailer([&zero, &bytes], 4096), Ok(seeded));
        // Every byte of the seed is checked.
        for at in 64..68 {
            let mut flipped = bytes;
            flipped[at] ^= 0x10;
            assert_eq!(
                decode_trailer([&zero, &flipped], 4096),
                Err(TrailerProblem::Damaged),
                "byte {at}"
            );
        }
        // A version 2 record keeps its layout: the checksum at 64, zero at 68.
        let plain = record_bytes(&Trailer::empty());
        assert_eq!(u32::from_le_bytes(plain[8..12].try_into().unwrap()), 2);
        assert_eq!(plain[64..68], crc32fast::hash(&plain[..64]).to_le_bytes());
        assert_eq!(plain[68..72], [0; 4]);
        // A version 3 record with seed 0, or the seed that would pass zeros, is
        // inconsistent, with a valid checksum.
        for seed in [0, zeros_passing_seed()] {
            let mut record = seeded.encode();
            record.word_64 = U32::new(seed);
            set_record_checksum(&mut record);
            let bytes: [u8; TRAILER_RECORD_LEN] = record.as_bytes().try_into().unwrap();
            assert_eq!(
                decode_trailer([&zero, &bytes], 4096),
                Err(TrailerProblem::Inconsistent)
            );
        }
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

    fn record_bytes(trailer: &Trailer) -> [u8; TRAILER_RECORD_LEN] {
        trailer.to_bytes()
    }

    #[test]
    fn the_valid_slot_with_the_higher_sequence_is_current() {
        let older = Trailer {
            dirty_limit: 4096,
            ..Trailer::empty()
        };
        let newer = Trailer {
            sequence: 2,
            durable_offset: 100,
            durable_count: 2,
            durable_last_timestamp: Some(5),
            ..older
        };
        // Sequence 1 lives in slot 1, sequence 2 in slot 0.
        let (a, b) = (record_bytes(&older), record_bytes(&newer));
        assert_eq!(decode_trailer([&b, &a], 4096), Ok(newer));
        // A torn or flipped current slot: the other one stands in.
        for at in 0..TRAILER_CHECKED_LEN + 4 {
            let mut torn = b;
            torn[at] ^= 0x40;
            assert_eq!(decode_trailer([&torn, &a], 4096), Ok(older), "byte {at}");
        }
        // Bytes past the record (where the wait words live) are not checked.
        let mut slot = [0u8; 512];
        slot[..TRAILER_RECORD_LEN].copy_from_slice(&b);
        slot[300] = 0xff;
        let record: &[u8; TRAILER_RECORD_LEN] = slot[..TRAILER_RECORD_LEN].try_into().unwrap();
        assert_eq!(decode_trailer([record, &a], 4096), Ok(newer));
        // So are the 4 reserved bytes after the checksum, which it does not cover.
        let mut reserved = b;
        reserved[70] = 0x5a;
        assert_eq!(decode_trailer([&reserved, &a], 4096), Ok(newer));
    }

    #[test]
    fn a_record_counts_only_in_the_slot_its_sequence_names() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        let one = Trailer {
            dirty_limit: 4096,
            ..Trailer::empty()
        };
        let two = Trailer { sequence: 2, ..one };
        let three = Trailer {
            sequence: 3,
            durable_offset: 100,
            durable_count: 2,
            durable_last_timestamp: Some(5),
            ..one
        };
        let (one, two, three) = (record_bytes(&one), record_bytes(&two), record_bytes(&three));
        // Sequence 3 in slot 0 is out of place: the record in its own slot is current,
        // however low its sequence.
        assert_eq!(
            decode_trailer([&three, &one], 4096).map(|t| t.sequence),
            Ok(1)
        );
        // Two records that claim the same sequence: only the one in its slot counts.
        assert_eq!(
            decode_trailer([&three, &three], 4096).map(|t| t.sequence),
            Ok(3)
        );
        assert_eq!(
            decode_trailer([&two, &two], 4096).map(|t| t.sequence),
            Ok(2)
        );
        // Nothing valid in place: refused, naming the stray record.
        assert_eq!(
            decode_trailer([&one, &zero], 4096),
            Err(TrailerProblem::WrongSlot {
                sequence: 1,
                slot: 0
            })
        );
        assert_eq!(
            decode_trailer([&one, &two], 4096),
            Err(TrailerProblem::WrongSlot {
                sequence: 1,
                slot: 0
            })
        );
    }

    #[test]
    fn i64_min_is_a_durable_timestamp_when_the_count_is_not_zero() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        let earliest = Trailer {
            sequence: 2,
            durable_offset: 41,
            durable_count: 1,
            durable_last_timestamp: Some(i64::MIN),
            dirty_limit: 41,
            ..Trailer::empty()
        };
        let bytes = record_bytes(&earliest);
        assert_eq!(decode_trailer([&bytes, &zero], 4096), Ok(earliest));
        // The bytes are those "no durable event" has: told apart by the count.
        assert_eq!(bytes[40..48], i64::MIN.to_le_bytes());
        let none = record_bytes(&Trailer::empty());
        assert_eq!(none[40..48], i64::MIN.to_le_bytes());
        assert_eq!(decode_trailer([&zero, &none], 4096), Ok(Trailer::empty()));
        // A count of 0 with any other timestamp contradicts itself.
        let mut lying = TrailerRecord::read_from_bytes(&none).unwrap();
        lying.durable_last_timestamp = I64::new(0);
        set_record_checksum(&mut lying);
        let lying: [u8; TRAILER_RECORD_LEN] = lying.as_bytes().try_into().unwrap();
        assert_eq!(
            decode_trailer([&zero, &lying], 4096),
            Err(TrailerProblem::Inconsistent)
        );
    }

    #[test]
    fn a_record_with_an_undefined_flag_bit_is_inconsistent() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        for bit in 1..32 {
            let mut record = Trailer::empty().encode();
            record.flags = U32::new(FLAG_SEALED | 1 << bit);
            set_record_checksum(&mut record);
            let bytes: [u8; TRAILER_RECORD_LEN] = record.as_bytes().try_into().unwrap();
            assert_eq!(
                decode_trailer([&zero, &bytes], 4096),
                Err(TrailerProblem::Inconsistent),
                "bit {bit}"
            );
        }
        let sealed = Trailer {
            sealed: true,
            ..Trailer::empty()
        };
        assert_eq!(
            decode_trailer([&zero, &record_bytes(&sealed)], 4096),
            Ok(sealed)
        );
    }

    #[test]
    fn a_slot_with_the_magic_and_a_bad_checksum_makes_a_damaged_trailer() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        let mut bad = record_bytes(&Trailer::empty());
        bad[20] ^= 1;
        assert_eq!(
            decode_trailer([&bad, &zero], 4096),
            Err(TrailerProblem::Damaged)
        );
        assert_eq!(
            decode_trailer([&zero, &bad], 4096),
            Err(TrailerProblem::Damaged)
        );
        // Beside a valid record, it is only a torn slot.
        let good = record_bytes(&Trailer::empty());
        assert_eq!(decode_trailer([&bad, &good], 4096), Ok(Trailer::empty()));
    }

    #[test]
    fn trailer_problems_are_typed() {
        let zero = [0u8; TRAILER_RECORD_LEN];
        assert_eq!(
            decode_trailer([&zero, &zero], 4096),
            Err(TrailerProblem::NoMagic)
        );
        let mut v4 = record_bytes(&Trailer::empty());
        v4[8] = 4;
        assert_eq!(
            decode_trailer([&v4, &zero], 4096),
            Err(TrailerProblem::UnsupportedVersion { version: 4 })
        );
        let mut bad = record_bytes(&Trailer::empty());
        bad[30] ^= 1;
        assert_eq!(
            decode_trailer([&zero, &bad], 4096),
            Err(TrailerProblem::Damaged)
        );
        // A watermark past the event area, or a count the bytes cannot hold.
        for lie in [
            Trailer {
                durable_offset: 5000,
                dirty_limit: 5000,
                ..Trailer::empty()
            },
            Trailer {
                durable_offset: 40,
                durable_count: 2,
                durable_last_timestamp: Some(1),
                dirty_limit: 40,
                ..Trailer::empty()
            },
            Trailer {
                durable_offset: 40,
                durable_count: 0,
                dirty_limit: 40,
                ..Trailer::empty()
            },
        ] {
            let r = record_bytes(&lie);
            assert_eq!(
                decode_trailer([&zero, &r], 4096),
                Err(TrailerProblem::Inconsistent),
                "{lie:?}"
            );
        }
    }

    #[test]
    fn trailer_offsets_and_capacities() {
        assert_eq!(trailer_offset(MIN_CAPACITY - 1), None);
        assert_eq!(trailer_offset(1536), Some(512));
        assert_eq!(trailer_offset(2047), Some(512));
        assert_eq!(trailer_offset(2048), Some(1024));
        for n in [0u64, 1, 488, 489, 1000, 1 << 20] {
            let capacity = capacity_for_events(n).unwrap();
            let end = trailer_offset(capacity).unwrap();
            assert!(end >= STREAM_HEADER_LEN + n, "{n}");
            assert!(
                end - (STREAM_HEADER_LEN + n) < SECTOR_LEN,
                "{n}: not the smallest"
            );
        }
        assert_eq!(capacity_for_events(u64::MAX), None);
    }
}
