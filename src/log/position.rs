//! Positions: where an event lives in a log, stable across rolls and retention.

use std::fmt;
use std::str::FromStr;

/// Bits of a [`Position`] that hold the byte offset inside the segment.
const OFFSET_BITS: u32 = 40;
/// The largest segment sequence number a [`Position`] can hold.
pub(crate) const MAX_SEGMENT: u64 = (1 << (64 - OFFSET_BITS)) - 1;
/// The largest segment (file length) whose offsets a [`Position`] can hold: 1 TiB.
pub(crate) const MAX_SEGMENT_LEN: u64 = 1 << OFFSET_BITS;

/// The stable position of an event in a log: its segment's sequence number and its byte
/// offset inside that segment, packed into 64 bits.
///
/// A position never changes once the event is appended: rolls add segments after it and
/// retention removes whole segments before it, neither renumbers anything. Positions
/// order like the events they name. They print as `SEGMENT:OFFSET` (for example
/// `42:1048600`) and parse back from that form; [`as_u64`](Self::as_u64) and
/// [`from_u64`](Self::from_u64) give the packed form (segment in the top 24 bits, offset
/// in the low 40), for storing a position in 8 bytes.
///
/// # Examples
/// ```
/// use evstream::Position;
///
/// let position: Position = "42:1048600".parse()?;
/// assert_eq!(position.segment(), 42);
/// assert_eq!(position.offset(), 1_048_600);
/// assert_eq!(position.to_string(), "42:1048600");
/// assert_eq!(Position::from_u64(position.as_u64()), position);
/// # Ok::<(), evstream::ParsePositionError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(u64);

/// As [`Display`](fmt::Display): `SEGMENT:OFFSET`, so that a `Debug` dump of a struct
/// holding positions ([`LogStat`](crate::LogStat)) reads as the CLI prints them.
impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Position {
    /// The position of byte `offset` of segment `segment`, or `None` if either is out of
    /// range (segments up to 16,777,215, offsets below 2^40).
    pub fn new(segment: u64, offset: u64) -> Option<Self> {
        (segment <= MAX_SEGMENT && offset < MAX_SEGMENT_LEN)
            .then_some(Self((segment << OFFSET_BITS) | offset))
    }

    /// Built from parts the caller has already range-checked.
    pub(crate) fn of(segment: u64, offset: u64) -> Self {
        Self(((segment & MAX_SEGMENT) << OFFSET_BITS) | (offset & (MAX_SEGMENT_LEN - 1)))
    }

    /// The segment's sequence number.
    pub fn segment(self) -> u64 {
        self.0 >> OFFSET_BITS
    }

    /// The event's byte offset inside its segment file.
    pub fn offset(self) -> u64 {
        self.0 & (MAX_SEGMENT_LEN - 1)
    }

    /// The packed 64-bit form.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// A position from its packed 64-bit form (every value is some position; whether an
    /// event lives there is checked when a reader uses it).
    pub fn from_u64(packed: u64) -> Self {
        Self(packed)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment(), self.offset())
    }
}

/// The error from parsing a [`Position`] that is not `SEGMENT:OFFSET` with both numbers
/// in range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a log position (SEGMENT:OFFSET, such as 42:1048600)")]
pub struct ParsePositionError {
    text: String,
}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = || ParsePositionError { text: s.to_owned() };
        let (segment, offset) = s.split_once(':').ok_or_else(fail)?;
        let segment = segment.parse().map_err(|_| fail())?;
        let offset = offset.parse().map_err(|_| fail())?;
        Self::new(segment, offset).ok_or_else(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        let a = Position::new(3, 24).expect("in range");
        let b = Position::new(3, 1 << 39).expect("in range");
        let c = Position::new(4, 24).expect("in range");
        assert!(a < b && b < c);
        for p in [a, b, c] {
            assert_eq!(p.to_string().parse::<Position>(), Ok(p));
            assert_eq!(Position::from_u64(p.as_u64()), p);
        }
        assert_eq!(Position::new(MAX_SEGMENT + 1, 0), None);
        assert_eq!(Position::new(0, MAX_SEGMENT_LEN), None);
        for bad in ["", "1", "1:", ":2", "a:2", "1:2:3", "-1:5", "16777216:0"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} parsed");
        }
    }
}
