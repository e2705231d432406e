//! The events every system appends: [`Workload`].

use evstream::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN, capacity_for_events};

/// Distinct payload start positions in the workload's source buffer.
const PAYLOAD_VARIANTS: usize = 256;

/// The events every system appends: `events` payloads of `payload_size` bytes with
/// non-decreasing timestamps. Payload contents vary from event to event.
#[derive(Debug, Clone)]
pub struct Workload {
    events: u64,
    payload_size: usize,
    source: Vec<u8>,
}

impl Workload {
    /// A workload of `events` events of `payload_size` bytes each.
    pub fn new(events: u64, payload_size: usize) -> Self {
        // A cheap, fixed pseudo-random byte sequence (xorshift).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let source = (0..payload_size + PAYLOAD_VARIANTS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes().first().copied().unwrap_or_default()
            })
            .collect();
        Self {
            events,
            payload_size,
            source,
        }
    }

    /// Number of events.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes per payload.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// Payload bytes over all events: what the MB/s figures count.
    pub fn payload_bytes(&self) -> u64 {
        self.events * self.payload_size as u64
    }

    /// The stream's length once every event is written: header and events.
    pub fn stream_len(&self) -> u64 {
        STREAM_HEADER_LEN + self.events * (EVENT_HEADER_LEN + self.payload_size as u64)
    }

    /// The capacity of a stream file that holds the workload: [`stream_len`](Self::stream_len)
    /// rounded up to a 512-byte sector, plus the format's 1 KiB trailer.
    pub fn capacity(&self) -> u64 {
        capacity_for_events(self.stream_len() - STREAM_HEADER_LEN).unwrap_or(u64::MAX)
    }

    /// The payload of event `i`.
    pub fn payload(&self, i: u64) -> &[u8] {
        let start = (i % PAYLOAD_VARIANTS as u64) as usize;
        self.source
            .get(start..start + self.payload_size)
            .unwrap_or_default()
    }

    /// The timestamp of event `i`.
    pub fn timestamp(i: u64) -> i64 {
        1_700_000_000_000_000_000 + i as i64
    }
}
