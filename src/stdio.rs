//! The stream format read and written with plain `std::io`, for baselines and cross-checks.
//!
//! This is a second, independent implementation of the byte layout that `docs/FORMAT.md`
//! defines: headers are encoded and decoded with [`byteorder`] and checksummed with
//! [`crc32fast`] directly, sharing nothing with the memory-mapped writer but the length
//! constants in [`crate::format`]. Because it shares no code, the tests in this module
//! that compare its output with [`StreamWriter`](crate::StreamWriter)'s, byte for byte,
//! check both implementations against each other.
//!
//! It covers the header and the events, the part of the format version 1 defined and
//! version 2 left unchanged; it neither writes nor reads the version 2 trailer. Its output
//! is a version 1 stream, which [`upgrade_v1`](crate::upgrade_v1) turns into a version 2
//! one once the file has room for the trailer. Its checksums are unseeded (version 2's):
//! it reads the events of version 1 and 2 files, not those of version 3 files (a log's
//! segments), whose checksums are seeded with the seed their trailer holds.
//!
//! The benchmarks' `std` baselines (`BufWriter`, one `write_all` per event, a writer
//! thread fed by a channel, and the `BufReader` parser) all go through this module, so
//! they write and read exactly the format the crate does and cannot drift from it.
//!
//! # Examples
//!
//! ```
//! use std::io::Cursor;
//! use evstream::stdio::{EventReader, EventWriter};
//!
//! fn main() -> std::io::Result<()> {
//!     let mut writer = EventWriter::new(Cursor::new(Vec::new()), 1_000)?;
//!     writer.append(1_001, b"hello")?;
//!     writer.append(1_002, b"world")?;
//!     let bytes = writer.finish()?.into_inner();
//!
//!     let mut reader = EventReader::new(bytes.as_slice())?;
//!     let mut payload = Vec::new();
//!     assert_eq!(reader.read_event(&mut payload)?, Some(1_001));
//!     assert_eq!(payload, b"hello");
//!     assert_eq!(reader.read_event(&mut payload)?, Some(1_002));
//!     assert_eq!(reader.read_event(&mut payload)?, None);
//!     Ok(())
//! }
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};

use byteorder::{LittleEndian, ReadBytesExt, WriteBytesExt};

use crate::error::Corruption;
use crate::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN};

/// Length of the stream header, as an array length.
pub const STREAM_HEADER_SIZE: usize = 24;
/// Length of an event header, as an array length.
pub const EVENT_HEADER_SIZE: usize = 16;
/// Offset of the checksum in an event header; the checksum covers the bytes before it.
const CHECKSUM_AT: usize = 12;
/// Payloads up to this size are read straight into a buffer of the claimed size; larger
/// claims grow the buffer only as bytes actually arrive, so a damaged size field cannot
/// make the reader allocate gigabytes up front.
const TRUSTED_PAYLOAD_LEN: u64 = 1 << 20;

const _: () = assert!(STREAM_HEADER_SIZE as u64 == STREAM_HEADER_LEN);
const _: () = assert!(EVENT_HEADER_SIZE as u64 == EVENT_HEADER_LEN);

/// Why this module rejected a stream or an event.
///
/// Delivered inside an [`io::Error`] (of kind [`io::ErrorKind::InvalidData`] when reading,
/// [`io::ErrorKind::InvalidInput`] when writing); [`CodecError::from_io`] gets it back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The stream header's write offset lies before the first event.
    #[error("stream header write offset {write_offset} is below the 24-byte header")]
    WriteOffsetTooSmall {
        /// The write offset stored in the header.
        write_offset: u64,
    },
    /// An event before the write offset is damaged; `reason` says how.
    #[error("corrupt event at byte offset {offset}: {reason}")]
    Corrupt {
        /// File offset of the damaged event.
        offset: u64,
        /// What is wrong with it.
        reason: Corruption,
    },
    /// The header's event count disagrees with the events found before the write offset.
    #[error("the stream header counts {header} events but {found} were found")]
    CountMismatch {
        /// The count stored in the header.
        header: u64,
        /// The events read.
        found: u64,
    },
    /// A payload is longer than the format's `u32` size field can describe.
    #[error("payload of {len} bytes exceeds the format's maximum of {max}", max = u32::MAX)]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// An appended timestamp is lower than the previous event's; streams are ordered.
    #[error("timestamp {got} is lower than the previous event's {previous}")]
    TimestampOutOfOrder {
        /// The previous event's timestamp.
        previous: i64,
        /// The rejected timestamp.
        got: i64,
    },
}

impl CodecError {
    /// The `CodecError` inside `err`, if this module produced it.
    pub fn from_io(err: &io::Error) -> Option<&CodecError> {
        err.get_ref()?.downcast_ref()
    }

    fn invalid_data(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    fn invalid_input(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }
}

/// The three fields of the stream header (bytes 0..24), as plain integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Where the next event goes: 24 plus the bytes of all events.
    pub write_offset: u64,
    /// Number of events.
    pub event_count: u64,
    /// Unix nanoseconds when the stream was created.
    pub start_timestamp: i64,
}

impl Header {
    /// The header of an empty stream created at `start_timestamp`.
    pub fn empty(start_timestamp: i64) -> Self {
        Self {
            write_offset: STREAM_HEADER_LEN,
            event_count: 0,
            start_timestamp,
        }
    }
}

/// Writes `header` as the 24 little-endian bytes of a stream header.
///
/// # Errors
///
/// Whatever `w` returns.
pub fn write_stream_header<W: Write + ?Sized>(w: &mut W, header: &Header) -> io::Result<()> {
    let mut bytes = [0u8; STREAM_HEADER_SIZE];
    let mut out = bytes.as_mut_slice();
    out.write_u64::<LittleEndian>(header.write_offset)?;
    out.write_u64::<LittleEndian>(header.event_count)?;
    out.write_i64::<LittleEndian>(header.start_timestamp)?;
    w.write_all(&bytes)
}

/// Reads and checks a stream header.
///
/// # Errors
///
/// [`io::ErrorKind::UnexpectedEof`] if fewer than 24 bytes can be read;
/// [`CodecError::WriteOffsetTooSmall`] if the write offset lies inside the header.
pub fn read_stream_header<R: Read + ?Sized>(r: &mut R) -> io::Result<Header> {
    let mut bytes = [0u8; STREAM_HEADER_SIZE];
    r.read_exact(&mut bytes)?;
    let mut input = bytes.as_slice();
    let header = Header {
        write_offset: input.read_u64::<LittleEndian>()?,
        event_count: input.read_u64::<LittleEndian>()?,
        start_timestamp: input.read_i64::<LittleEndian>()?,
    };
    if header.write_offset < STREAM_HEADER_LEN {
        return Err(CodecError::WriteOffsetTooSmall {
            write_offset: header.write_offset,
        }
        .invalid_data());
    }
    Ok(header)
}

/// The 16-byte header for an event, checksum included.
///
/// # Errors
///
/// [`CodecError::PayloadTooLarge`] if `payload` is longer than `u32::MAX` bytes.
pub fn encode_event_header(timestamp: i64, payload: &[u8]) -> io::Result<[u8; EVENT_HEADER_SIZE]> {
    let size = u32::try_from(payload.len())
        .map_err(|_| CodecError::PayloadTooLarge { len: payload.len() }.invalid_input())?;
    let mut header = [0u8; EVENT_HEADER_SIZE];
    let (prefix, checksum) = header.split_at_mut(CHECKSUM_AT);
    let mut out = &mut *prefix;
    out.write_i64::<LittleEndian>(timestamp)?;
    out.write_u32::<LittleEndian>(size)?;
    let mut checksum = checksum;
    checksum.write_u32::<LittleEndian>(crc(prefix, payload))?;
    Ok(header)
}

/// The CRC-32 (IEEE) of an event: the 12 header bytes before the checksum, then the payload.
fn crc(prefix: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix);
    hasher.update(payload);
    hasher.finalize()
}

/// Writes one event (header, then payload) with two `write_all` calls.
///
/// Meant for a buffered writer; for an unbuffered one, [`encode_event`] into a scratch
/// buffer and write that once. Returns the bytes written.
///
/// # Errors
///
/// [`CodecError::PayloadTooLarge`] for a payload over `u32::MAX` bytes, and whatever `w`
/// returns.
pub fn write_event<W: Write + ?Sized>(
    w: &mut W,
    timestamp: i64,
    payload: &[u8],
) -> io::Result<u64> {
    let header = encode_event_header(timestamp, payload)?;
    w.write_all(&header)?;
    w.write_all(payload)?;
    Ok(EVENT_HEADER_LEN + payload.len() as u64)
}

/// Appends one encoded event (header, then payload) to `out`. Returns the bytes added.
///
/// # Errors
///
/// [`CodecError::PayloadTooLarge`] for a payload over `u32::MAX` bytes; `out` is then
/// unchanged.
pub fn encode_event(out: &mut Vec<u8>, timestamp: i64, payload: &[u8]) -> io::Result<u64> {
    let header = encode_event_header(timestamp, payload)?;
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(EVENT_HEADER_LEN + payload.len() as u64)
}

/// The fields of a decoded event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventHeader {
    timestamp: i64,
    size: u32,
    checksum: u32,
}

fn decode_event_header(bytes: &[u8; EVENT_HEADER_SIZE]) -> io::Result<EventHeader> {
    let mut input = bytes.as_slice();
    Ok(EventHeader {
        timestamp: input.read_i64::<LittleEndian>()?,
        size: input.read_u32::<LittleEndian>()?,
        checksum: input.read_u32::<LittleEndian>()?,
    })
}

/// Reads `size` payload bytes into `payload`, replacing its contents.
fn read_payload<R: Read + ?Sized>(r: &mut R, size: u32, payload: &mut Vec<u8>) -> io::Result<()> {
    let size_u64 = u64::from(size);
    if size_u64 <= TRUSTED_PAYLOAD_LEN || size_u64 <= payload.capacity() as u64 {
        let size = size as usize;
        // Resizing only when the length changes keeps a run of same-sized events from
        // zero-filling the buffer every time.
        if payload.len() < size {
            payload.resize(size, 0);
        } else {
            payload.truncate(size);
        }
        r.read_exact(payload.as_mut_slice())
    } else {
        payload.clear();
        let read = r.take(size_u64).read_to_end(payload)?;
        if read as u64 == size_u64 {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }
}

/// Reads one event into `payload` and checks its checksum; returns its timestamp.
///
/// Returns `Ok(None)` if `r` is at its end before the first byte of the event. It does not
/// know where the stream's published events end: the bytes after the write offset of a
/// preallocated file are zeros, which fail the checksum. Use [`EventReader`] to read a
/// stream file.
///
/// # Errors
///
/// [`io::ErrorKind::UnexpectedEof`] if `r` ends inside the event,
/// [`CodecError::Corrupt`] (offset 0, relative to where reading began) with
/// [`Corruption::ChecksumMismatch`] if the checksum does not match, and whatever `r` returns.
pub fn read_event<R: Read + ?Sized>(r: &mut R, payload: &mut Vec<u8>) -> io::Result<Option<i64>> {
    let mut bytes = [0u8; EVENT_HEADER_SIZE];
    let mut filled = 0;
    while filled < EVENT_HEADER_SIZE {
        let rest = bytes.get_mut(filled..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let header = decode_event_header(&bytes)?;
    read_payload(r, header.size, payload)?;
    verify(&bytes, &header, payload, 0)?;
    Ok(Some(header.timestamp))
}

fn verify(
    bytes: &[u8; EVENT_HEADER_SIZE],
    header: &EventHeader,
    payload: &[u8],
    offset: u64,
) -> io::Result<()> {
    let computed = crc(bytes.get(..CHECKSUM_AT).unwrap_or_default(), payload);
    if computed == header.checksum {
        Ok(())
    } else {
        Err(CodecError::Corrupt {
            offset,
            reason: Corruption::ChecksumMismatch {
                stored: header.checksum,
                computed,
            },
        }
        .invalid_data())
    }
}

/// Writes a stream through any [`Write`]: header first, events after it.
///
/// [`new`](Self::new) writes the header of an empty stream; [`finish`](Self::finish) seeks
/// back and writes the final one. Nothing is synced to disk: durability is the caller's
/// business (`File::sync_data` on the inner file).
#[derive(Debug)]
pub struct EventWriter<W: Write> {
    inner: W,
    header: Header,
    last_timestamp: Option<i64>,
    scratch: Vec<u8>,
}

impl<W: Write> EventWriter<W> {
    /// Starts a stream at the current position of `inner` (which should be its start)
    /// by writing the header of an empty stream created at `start_timestamp`.
    ///
    /// # Errors
    ///
    /// Whatever `inner` returns.
    pub fn new(mut inner: W, start_timestamp: i64) -> io::Result<Self> {
        let header = Header::empty(start_timestamp);
        write_stream_header(&mut inner, &header)?;
        Ok(Self {
            inner,
            header,
            last_timestamp: None,
            scratch: Vec::new(),
        })
    }

    /// Appends an event with two `write_all` calls (header, payload); returns its offset.
    ///
    /// # Errors
    ///
    /// [`CodecError::TimestampOutOfOrder`] or [`CodecError::PayloadTooLarge`] (nothing is
    /// written then), and whatever `inner` returns (the stream is then in an unknown state).
    pub fn append(&mut self, timestamp: i64, payload: &[u8]) -> io::Result<u64> {
        self.check_order(timestamp)?;
        let offset = self.header.write_offset;
        let len = write_event(&mut self.inner, timestamp, payload)?;
        self.published(timestamp, len);
        Ok(offset)
    }

    /// Appends an event with a single `write_all` of header and payload, assembled in a
    /// scratch buffer: one system call per event on an unbuffered `File`. Returns its offset.
    ///
    /// # Errors
    ///
    /// As for [`append`](Self::append).
    pub fn append_framed(&mut self, timestamp: i64, payload: &[u8]) -> io::Result<u64> {
        self.check_order(timestamp)?;
        let offset = self.header.write_offset;
        self.scratch.clear();
        let len = encode_event(&mut self.scratch, timestamp, payload)?;
        self.inner.write_all(&self.scratch)?;
        self.published(timestamp, len);
        Ok(offset)
    }

    /// The header as it will be written by [`finish`](Self::finish).
    pub fn header(&self) -> Header {
        self.header
    }

    /// The wrapped writer. The stream header in it is still that of an empty stream.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn check_order(&self, timestamp: i64) -> io::Result<()> {
        match self.last_timestamp {
            Some(previous) if timestamp < previous => Err(CodecError::TimestampOutOfOrder {
                previous,
                got: timestamp,
            }
            .invalid_input()),
            _ => Ok(()),
        }
    }

    fn published(&mut self, timestamp: i64, len: u64) {
        self.last_timestamp = Some(timestamp);
        self.header.write_offset += len;
        self.header.event_count += 1;
    }
}

impl<W: Write + Seek> EventWriter<W> {
    /// Seeks to the start, writes the final stream header, flushes, and returns `inner`,
    /// positioned just after the header.
    ///
    /// # Errors
    ///
    /// Whatever `inner` returns.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.seek(SeekFrom::Start(0))?;
        write_stream_header(&mut self.inner, &self.header)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads a stream through any [`Read`], checking every event as `StreamReader::iter` does:
/// checksum, timestamp order, the write offset as the end, and the header's event count.
#[derive(Debug)]
pub struct EventReader<R: Read> {
    inner: R,
    header: Header,
    offset: u64,
    events_read: u64,
    last_timestamp: Option<i64>,
}

impl<R: Read> EventReader<R> {
    /// Reads the stream header from `inner`, which must be at the start of the stream.
    ///
    /// # Errors
    ///
    /// As for [`read_stream_header`].
    pub fn new(mut inner: R) -> io::Result<Self> {
        let header = read_stream_header(&mut inner)?;
        Ok(Self {
            inner,
            header,
            offset: STREAM_HEADER_LEN,
            events_read: 0,
            last_timestamp: None,
        })
    }

    /// The stream header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// File offset of the next event.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next event's payload into `payload` and returns its timestamp, or
    /// `Ok(None)` at the write offset.
    ///
    /// # Errors
    ///
    /// [`CodecError::Corrupt`] with the event's offset and the [`Corruption`] found,
    /// [`CodecError::CountMismatch`] at the write offset if the header's count is wrong,
    /// [`io::ErrorKind::UnexpectedEof`] if the data ends before the write offset, and
    /// whatever `inner` returns. An error leaves the reader in an unspecified position.
    pub fn read_event(&mut self, payload: &mut Vec<u8>) -> io::Result<Option<i64>> {
        let available = self.header.write_offset - self.offset;
        if available == 0 {
            if self.events_read != self.header.event_count {
                return Err(CodecError::CountMismatch {
                    header: self.header.event_count,
                    found: self.events_read,
                }
                .invalid_data());
            }
            return Ok(None);
        }
        let offset = self.offset;
        let corrupt = |reason| CodecError::Corrupt { offset, reason }.invalid_data();
        if available < EVENT_HEADER_LEN {
            return Err(corrupt(Corruption::TruncatedHeader { available }));
        }
        let mut bytes = [0u8; EVENT_HEADER_SIZE];
        self.inner.read_exact(&mut bytes)?;
        let header = decode_event_header(&bytes)?;
        let after_header = available - EVENT_HEADER_LEN;
        if u64::from(header.size) > after_header {
            return Err(corrupt(Corruption::TruncatedPayload {
                size: header.size,
                available: after_header,
            }));
        }
        read_payload(&mut self.inner, header.size, payload)?;
        verify(&bytes, &header, payload, offset)?;
        if let Some(previous) = self.last_timestamp
            && header.timestamp < previous
        {
            return Err(corrupt(Corruption::TimestampOutOfOrder {
                previous,
                got: header.timestamp,
            }));
        }
        self.last_timestamp = Some(header.timestamp);
        self.offset += EVENT_HEADER_LEN + u64::from(header.size);
        self.events_read += 1;
        Ok(Some(header.timestamp))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A stream encoded by hand from the format description, sharing no code with the module.
    fn by_hand(start: i64, events: &[(i64, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (ts, payload) in events {
            let mut prefix = ts.to_le_bytes().to_vec();
            prefix.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            let mut checked = prefix.clone();
            checked.extend_from_slice(payload);
            body.extend_from_slice(&prefix);
            body.extend_from_slice(&crc32fast::hash(&checked).to_le_bytes());
            body.extend_from_slice(payload);
        }
        let mut file = (24 + body.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&(events.len() as u64).to_le_bytes());
        file.extend_from_slice(&start.to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    fn write_all(start: i64, events: &[(i64, &[u8])]) -> io::Result<Vec<u8>> {
        let mut writer = EventWriter::new(Cursor::new(Vec::new()), start)?;
        for (ts, payload) in events {
            writer.append(*ts, payload)?;
        }
        Ok(writer.finish()?.into_inner())
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<(i64, Vec<u8>)>> {
        let mut reader = EventReader::new(bytes)?;
        let mut out = Vec::new();
        let mut payload = Vec::new();
        while let Some(ts) = reader.read_event(&mut payload)? {
            out.push((ts, payload.clone()));
        }
        Ok(out)
    }

    fn codec_error(result: io::Result<impl std::fmt::Debug>) -> Option<CodecError> {
        CodecError::from_io(&result.err()?).cloned()
    }

    const EVENTS: &[(i64, &[u8])] = &[(5, b"first"), (5, b""), (9, &[0xff; 300]), (-1 + 11, b"x")];

    #[test]
    fn writes_the_documented_layout() -> TestResult {
        assert_eq!(write_all(77, EVENTS)?, by_hand(77, EVENTS));
        assert_eq!(write_all(-3, &[])?, by_hand(-3, &[]));
        Ok(())
    }

    #[test]
    fn framed_and_unframed_appends_write_the_same_bytes() -> TestResult {
        let mut framed = EventWriter::new(Cursor::new(Vec::new()), 1)?;
        for (ts, payload) in EVENTS {
            framed.append_framed(*ts, payload)?;
        }
        assert_eq!(framed.header().event_count, 4);
        assert_eq!(framed.finish()?.into_inner(), by_hand(1, EVENTS));
        Ok(())
    }

    #[test]
    fn encode_event_matches_write_event() -> TestResult {
        let mut encoded = Vec::new();
        let mut written = Vec::new();
        for (ts, payload) in EVENTS {
            let a = encode_event(&mut encoded, *ts, payload)?;
            let b = write_event(&mut written, *ts, payload)?;
            assert_eq!(a, b);
            assert_eq!(a, 16 + payload.len() as u64);
        }
        assert_eq!(encoded, written);
        assert_eq!(
            encoded.as_slice(),
            by_hand(0, EVENTS).get(24..).unwrap_or_default()
        );
        Ok(())
    }

    #[test]
    fn reads_back_what_it_wrote() -> TestResult {
        let bytes = write_all(0, EVENTS)?;
        let read = read_all(&bytes)?;
        let expected: Vec<(i64, Vec<u8>)> = EVENTS.iter().map(|(t, p)| (*t, p.to_vec())).collect();
        assert_eq!(read, expected);
        let mut body = bytes.get(24..).unwrap_or_default();
        let mut payload = Vec::new();
        assert_eq!(read_event(&mut body, &mut payload)?, Some(5));
        assert_eq!(payload, b"first");
        Ok(())
    }

    #[test]
    fn the_write_offset_ends_the_stream() -> TestResult {
        // A preallocated file: zeros after the published events.
        let mut bytes = write_all(0, EVENTS)?;
        bytes.resize(bytes.len() + 4096, 0);
        assert_eq!(read_all(&bytes)?.len(), EVENTS.len());
        // Without the bound, the zeros are an event whose checksum fails.
        let mut zeros: &[u8] = &[0; 64];
        let err = codec_error(read_event(&mut zeros, &mut Vec::new()));
        assert!(matches!(
            err,
            Some(CodecError::Corrupt {
                offset: 0,
                reason: Corruption::ChecksumMismatch { stored: 0, .. }
            })
        ));
        Ok(())
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_mismatch_at_its_event() -> TestResult {
        let clean = write_all(0, EVENTS)?;
        // The third event starts at 24 + (16 + 5) + 16 = 61; flip a payload byte of it.
        for at in [61 + 16 + 7, 61, 61 + 8] {
            let mut bytes = clean.clone();
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 0x04;
            }
            let err = codec_error(read_all(&bytes));
            match err {
                Some(CodecError::Corrupt { offset: 61, reason }) => {
                    // A flip in the size field may instead claim more than is published.
                    assert!(
                        matches!(
                            reason,
                            Corruption::ChecksumMismatch { .. }
                                | Corruption::TruncatedPayload { .. }
                        ),
                        "{reason:?}"
                    );
                }
                other => panic!("flip at {at}: {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn header_problems_are_reported() -> TestResult {
        let bytes = write_all(0, EVENTS)?;
        let mut low = bytes.clone();
        low.splice(0..8, 23u64.to_le_bytes());
        assert_eq!(
            codec_error(read_all(&low)),
            Some(CodecError::WriteOffsetTooSmall { write_offset: 23 })
        );
        let mut miscounted = bytes.clone();
        miscounted.splice(8..16, 5u64.to_le_bytes());
        assert_eq!(
            codec_error(read_all(&miscounted)),
            Some(CodecError::CountMismatch {
                header: 5,
                found: 4
            })
        );
        // Write offset 3 bytes into the last event (at 24 + 21 + 16 + 316 = 377).
        let mut short = bytes.clone();
        short.splice(0..8, 380u64.to_le_bytes());
        assert_eq!(
            codec_error(read_all(&short)),
            Some(CodecError::Corrupt {
                offset: 377,
                reason: Corruption::TruncatedHeader { available: 3 }
            })
        );
        let err = read_all(bytes.get(..10).unwrap_or_default()).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        Ok(())
    }

    #[test]
    fn a_data_tail_shorter_than_the_write_offset_is_unexpected_eof() -> TestResult {
        let bytes = write_all(0, EVENTS)?;
        let cut = bytes.get(..bytes.len() - 1).unwrap_or_default();
        let err = read_all(cut).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        Ok(())
    }

    #[test]
    fn a_huge_size_field_does_not_allocate_up_front() -> TestResult {
        // An event claiming u32::MAX payload bytes, followed by only 10.
        let mut bytes = 0i64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 14]);
        let mut payload = Vec::new();
        let err = read_event(&mut bytes.as_slice(), &mut payload).err();
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        assert!(payload.capacity() < 1 << 20, "{}", payload.capacity());
        // The stream reader rejects it against the write offset before reading.
        let mut stream = by_hand(0, &[]);
        stream.splice(0..8, (24u64 + 26).to_le_bytes());
        stream.splice(8..16, 1u64.to_le_bytes());
        stream.extend_from_slice(&bytes);
        assert_eq!(
            codec_error(read_all(&stream)),
            Some(CodecError::Corrupt {
                offset: 24,
                reason: Corruption::TruncatedPayload {
                    size: u32::MAX,
                    available: 10
                }
            })
        );
        Ok(())
    }

    #[test]
    fn out_of_order_timestamps_are_refused_and_detected() -> TestResult {
        let mut writer = EventWriter::new(Cursor::new(Vec::new()), 0)?;
        writer.append(10, b"a")?;
        assert_eq!(
            codec_error(writer.append(9, b"b")),
            Some(CodecError::TimestampOutOfOrder {
                previous: 10,
                got: 9
            })
        );
        assert_eq!(
            codec_error(writer.append_framed(9, b"b")),
            Some(CodecError::TimestampOutOfOrder {
                previous: 10,
                got: 9
            })
        );
        assert_eq!(writer.header().event_count, 1);
        let backwards = by_hand(0, &[(10, b"a"), (9, b"b")]);
        assert_eq!(
            codec_error(read_all(&backwards)),
            Some(CodecError::Corrupt {
                offset: 24 + 17,
                reason: Corruption::TimestampOutOfOrder {
                    previous: 10,
                    got: 9
                }
            })
        );
        Ok(())
    }

    /// Writes `events` with evstream's [`StreamWriter`] (some through `append_with`) into
    /// a file with room to spare, and returns the file's bytes and start timestamp.
    fn via_stream_writer(
        dir: &std::path::Path,
        events: &[(i64, Vec<u8>)],
    ) -> Result<(Vec<u8>, i64), Box<dyn std::error::Error>> {
        use crate::{Prefault, StreamWriter, WriterOptions};
        let path = dir.join(format!("w{}.evs", events.len()));
        let _ = std::fs::remove_file(&path);
        let needed: u64 = events.iter().map(|(_, p)| 16 + p.len() as u64).sum();
        let options = WriterOptions::default().prefault(Prefault::Off);
        let mut writer = StreamWriter::create_with(&path, 24 + needed + 5000, options)?;
        for (i, (ts, payload)) in events.iter().enumerate() {
            if i % 2 == 0 {
                writer.append(*ts, payload)?;
            } else {
                writer.append_with(*ts, payload.len(), |buf| buf.copy_from_slice(payload))?;
            }
        }
        let start = writer.start_timestamp();
        drop(writer);
        let bytes = std::fs::read(&path)?;
        std::fs::remove_file(&path)?;
        Ok((bytes, start))
    }

    fn via_stdio(start: i64, events: &[(i64, Vec<u8>)]) -> io::Result<Vec<u8>> {
        let mut writer = EventWriter::new(Cursor::new(Vec::new()), start)?;
        for (ts, payload) in events {
            writer.append(*ts, payload)?;
        }
        Ok(writer.finish()?.into_inner())
    }

    fn assert_same_stream(dir: &std::path::Path, events: &[(i64, Vec<u8>)]) -> TestResult {
        let (mapped, start) = via_stream_writer(dir, events)?;
        let ours = via_stdio(start, events)?;
        let published = mapped
            .get(..ours.len())
            .ok_or("the mapped file is too short")?;
        assert!(published == ours.as_slice(), "bytes 0..write_offset differ");
        // Past the write offset the preallocated event area is zeros, and the parser stops
        // there; the trailer follows.
        let trailer_at = crate::format::trailer_offset(mapped.len() as u64)
            .ok_or("the mapped file holds no trailer")? as usize;
        assert!(
            mapped
                .get(ours.len()..trailer_at)
                .unwrap_or_default()
                .iter()
                .all(|&b| b == 0)
        );
        let expected: Vec<(i64, Vec<u8>)> = events.to_vec();
        assert_eq!(read_all(&mapped)?, expected);
        Ok(())
    }

    #[test]
    fn writes_the_same_bytes_as_stream_writer() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sizes = [0usize, 1, 15, 16, 32, 256, 1024, 4096, 4097, 70_000];
        let events: Vec<(i64, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (
                    i64::MIN / 2 + (i as i64) * 3,
                    (0..n).map(|b| (b * 7 + i) as u8).collect(),
                )
            })
            .collect();
        assert_same_stream(dir.path(), &events)?;
        assert_same_stream(dir.path(), &[])?;
        Ok(())
    }

    #[test]
    fn stream_reader_reads_what_this_module_wrote() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("std.evs");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut writer = EventWriter::new(io::BufWriter::new(file), 42)?;
        for (ts, payload) in EVENTS {
            writer.append(*ts, payload)?;
        }
        // Room for the trailer after the last event, as a preallocated stream would have.
        writer
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .set_len(4096)?;
        // This module writes what version 1 defined (header and events); the trailer of
        // version 2 is added by the upgrade.
        assert!(matches!(
            crate::StreamReader::open(&path),
            Err(crate::Error::NotAStream { .. })
        ));
        assert!(crate::upgrade_v1(&path)?);
        let reader = crate::StreamReader::open(&path)?;
        assert_eq!(reader.start_timestamp(), 42);
        let got = reader
            .iter()
            .map(|e| e.map(|e| (e.offset(), e.timestamp(), e.payload().to_vec())))
            .collect::<crate::Result<Vec<_>>>()?;
        let offsets = [24u64, 45, 61, 377];
        let expected: Vec<(u64, i64, Vec<u8>)> = EVENTS
            .iter()
            .zip(offsets)
            .map(|((t, p), o)| (o, *t, p.to_vec()))
            .collect();
        assert_eq!(got, expected);
        // And the writer can take the stream over and append to it.
        let mut appender = crate::StreamWriter::open(&path)?;
        assert!(appender.recovery().is_clean(), "{:?}", appender.recovery());
        assert_eq!(appender.append(11, b"more")?, 394);
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn any_events_write_the_same_bytes_as_stream_writer(
            steps in proptest::collection::vec(
                (0i64..1_000, proptest::collection::vec(proptest::num::u8::ANY, 0..600)),
                0..24,
            ),
            first in proptest::num::i64::ANY,
        ) {
            let mut ts = first / 2;
            let events: Vec<(i64, Vec<u8>)> = steps
                .into_iter()
                .map(|(step, payload)| {
                    ts += step;
                    (ts, payload)
                })
                .collect();
            let dir = tempfile::tempdir().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            assert_same_stream(dir.path(), &events)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        }
    }
}
