//! Columnar replay: the Arrow buffers of `timestamp`, `position` and `payload` built in
//! Rust (never one Python object per event), lent to pyarrow without a copy, and
//! assembled into a `pyarrow.Table` with `pyarrow.Array.from_buffers`.
//!
//! The table is made of chunks of up to [`CHUNK_EVENTS`] events (one record batch
//! each), so that no buffer is reallocated and copied as it grows, and so that the parts
//! of a log replayed by different threads join without a copy.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

/// Events from which a log's replay is split between threads.
pub const PARALLEL_EVENTS: u64 = 4 * CHUNK_EVENTS as u64;
/// Events per chunk.
const CHUNK_EVENTS: usize = 64 * 1024;
/// Payload bytes per chunk (a larger event gets a chunk of its own size).
const CHUNK_PAYLOAD: usize = 4 << 20;
/// Position bytes per event reserved (`SEGMENT:OFFSET` in decimal is rarely longer).
const POSITION_BYTES: usize = 16;

/// The buffers of one chunk's three columns.
#[derive(Default)]
pub struct Chunk {
    timestamps: Vec<u8>,
    position_offsets: Vec<u8>,
    positions: Vec<u8>,
    /// 32-bit offsets until the payloads pass 2 GiB, then 64-bit ones (`wide`).
    payload_offsets: Vec<u8>,
    payloads: Vec<u8>,
    wide: bool,
    rows: usize,
}

impl Chunk {
    /// An empty chunk with room for `events` events and `bytes` payload bytes.
    fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut chunk = Self {
            timestamps: Vec::with_capacity(events * 8),
            position_offsets: Vec::with_capacity((events + 1) * 4),
            positions: Vec::with_capacity(events * POSITION_BYTES),
            payload_offsets: Vec::with_capacity((events + 1) * 4),
            payloads: Vec::with_capacity(bytes),
            wide: false,
            rows: 0,
        };
        chunk
            .position_offsets
            .extend_from_slice(&0i32.to_le_bytes());
        chunk.payload_offsets.extend_from_slice(&0i32.to_le_bytes());
        chunk
    }

    /// Whether an event of `len` payload bytes should start the next chunk.
    fn is_full_for(&self, len: usize) -> bool {
        self.rows > 0
            && (self.rows >= CHUNK_EVENTS
                || self.payloads.len().saturating_add(len) > self.payloads.capacity())
    }

    fn push(&mut self, timestamp: i64, segment: Option<u64>, offset: u64, payload: &[u8]) {
        self.timestamps.extend_from_slice(&timestamp.to_le_bytes());
        if let Some(segment) = segment {
            push_decimal(&mut self.positions, segment);
            self.positions.push(b':');
        }
        push_decimal(&mut self.positions, offset);
        // A chunk's positions stay far below 2 GiB (at most 41 bytes each).
        let end = i32::try_from(self.positions.len()).unwrap_or(i32::MAX);
        self.position_offsets.extend_from_slice(&end.to_le_bytes());
        self.payloads.extend_from_slice(payload);
        self.rows += 1;
        let end = self.payloads.len();
        if !self.wide {
            if let Ok(end) = i32::try_from(end) {
                self.payload_offsets.extend_from_slice(&end.to_le_bytes());
                return;
            }
            self.widen();
        }
        let end = i64::try_from(end).unwrap_or(i64::MAX);
        self.payload_offsets.extend_from_slice(&end.to_le_bytes());
    }

    /// Turns the 32-bit payload offsets into 64-bit ones.
    fn widen(&mut self) {
        if self.wide {
            return;
        }
        let mut wide = Vec::with_capacity(self.payload_offsets.len() * 2 + 8);
        for chunk in self.payload_offsets.chunks_exact(4) {
            let mut narrow = [0u8; 4];
            narrow.copy_from_slice(chunk);
            wide.extend_from_slice(&i64::from(i32::from_le_bytes(narrow)).to_le_bytes());
        }
        self.payload_offsets = wide;
        self.wide = true;
    }
}

/// Receives the events of a replay, chunk by chunk.
pub struct Sink {
    chunks: Vec<Chunk>,
    current: Chunk,
}

impl Sink {
    /// Adds one event; `segment` is `None` for an event of a stream file (its position is
    /// the byte offset).
    pub fn push(&mut self, timestamp: i64, segment: Option<u64>, offset: u64, payload: &[u8]) {
        if self.current.is_full_for(payload.len()) {
            let next = Chunk::with_capacity(CHUNK_EVENTS, CHUNK_PAYLOAD);
            self.chunks.push(std::mem::replace(&mut self.current, next));
        }
        self.current.push(timestamp, segment, offset, payload);
    }
}

/// The chunks of the events `feed` pushes; `events` (an estimate, 0 if unknown) sizes
/// the first chunk.
///
/// # Errors
/// The error `feed` returns.
pub fn collect<E>(
    events: usize,
    feed: impl FnOnce(&mut Sink) -> Result<(), E>,
) -> Result<Vec<Chunk>, E> {
    // Without an estimate (a time range), a small first chunk.
    let first = if events == 0 {
        4096
    } else {
        events.min(CHUNK_EVENTS)
    };
    let bytes = first.saturating_mul(64).clamp(64 << 10, CHUNK_PAYLOAD);
    let mut sink = Sink {
        chunks: Vec::new(),
        current: Chunk::with_capacity(first, bytes),
    };
    feed(&mut sink)?;
    let Sink {
        mut chunks,
        current,
    } = sink;
    if current.rows > 0 || chunks.is_empty() {
        chunks.push(current);
    }
    Ok(chunks)
}

/// The `pyarrow.Table` of `chunks`: `timestamp` (`timestamp[ns, tz=UTC]`), `position`
/// (`string`) and `payload` (`binary`, or `large_binary` past 2 GiB in a chunk), one
/// record batch a chunk.
///
/// # Errors
/// pyarrow's exceptions (such as `ImportError` without pyarrow).
pub fn table(py: Python<'_>, mut chunks: Vec<Chunk>) -> PyResult<Bound<'_, PyAny>> {
    let pa = PyModule::import(py, "pyarrow")?;
    let wide = chunks.iter().any(|c| c.wide);
    if wide {
        chunks.iter_mut().for_each(Chunk::widen);
    }
    let utc = pa.call_method1("timestamp", ("ns", "UTC"))?;
    let string = pa.call_method0("string")?;
    let binary = pa.call_method0(if wide { "large_binary" } else { "binary" })?;
    let (mut timestamps, mut positions, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in chunks {
        let n = chunk.rows;
        timestamps.push(from_buffers(
            &pa,
            &utc,
            n,
            vec![None, Some(chunk.timestamps)],
        )?);
        positions.push(from_buffers(
            &pa,
            &string,
            n,
            vec![None, Some(chunk.position_offsets), Some(chunk.positions)],
        )?);
        payloads.push(from_buffers(
            &pa,
            &binary,
            n,
            vec![None, Some(chunk.payload_offsets), Some(chunk.payloads)],
        )?);
    }
    let mut columns = Vec::with_capacity(3);
    for (arrays, kind) in [
        (timestamps, &utc),
        (positions, &string),
        (payloads, &binary),
    ] {
        columns.push(pa.call_method1("chunked_array", (PyList::new(py, arrays)?, kind))?);
    }
    let names = PyList::new(py, ["timestamp", "position", "payload"])?;
    pa.getattr("Table")?
        .call_method1("from_arrays", (PyList::new(py, columns)?, names))
}

/// `pyarrow.Array.from_buffers(kind, n, buffers, null_count=0)`, each buffer handed over
/// without a copy (see [`Buffer`]).
fn from_buffers<'py>(
    pa: &Bound<'py, PyModule>,
    kind: &Bound<'py, PyAny>,
    n: usize,
    buffers: Vec<Option<Vec<u8>>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = pa.py();
    let mut list = Vec::with_capacity(buffers.len());
    for buffer in buffers {
        list.push(match buffer {
            Some(bytes) => Buffer::wrap(pa, bytes)?,
            None => py.None().into_bound(py),
        });
    }
    pa.getattr("Array")?
        .call_method1("from_buffers", (kind, n, PyList::new(py, list)?, 0))
}

/// Bytes built in Rust and lent to pyarrow as they are: `pyarrow.foreign_buffer(address,
/// size, base)` reads them in place and holds `base`, this object, for as long as any
/// array uses them. The bytes are never changed, moved or freed while the object lives
/// (it is frozen, and no method touches them), so the address stays valid that long.
#[pyclass(frozen, module = "evstream")]
pub struct Buffer {
    bytes: Vec<u8>,
}

impl Buffer {
    /// A `pyarrow.Buffer` over `bytes`, without a copy.
    fn wrap<'py>(pa: &Bound<'py, PyModule>, bytes: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let size = bytes.len();
        let base = Bound::new(pa.py(), Self { bytes })?;
        // Moving the vector into the object moved its handle, not its heap block.
        let address = base.get().bytes.as_ptr() as usize;
        pa.call_method1("foreign_buffer", (address, size, base))
    }
}

/// Appends `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or(&[]));
}
