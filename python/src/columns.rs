//! Columnar replay: the Arrow buffers of `timestamp`, `position` and `payload` built in
//! Rust (never one Python object per event), lent to pyarrow without a copy, and
//! assembled into a `pyarrow.Table` with `pyarrow.Array.from_buffers`.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

/// The buffers of the three columns, filled event by event.
#[derive(Default)]
pub struct Columns {
    timestamps: Vec<u8>,
    position_offsets: Vec<u8>,
    positions: Vec<u8>,
    /// 32-bit offsets until the payloads pass 2 GiB, then 64-bit ones (`wide`).
    payload_offsets: Vec<u8>,
    payloads: Vec<u8>,
    wide: bool,
    rows: usize,
}

impl Columns {
    /// Empty columns, with room for about `events` events of `bytes` payload bytes.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut columns = Self {
            timestamps: Vec::with_capacity(events * 8),
            position_offsets: Vec::with_capacity((events + 1) * 4),
            positions: Vec::with_capacity(events * 12),
            payload_offsets: Vec::with_capacity((events + 1) * 4),
            payloads: Vec::with_capacity(bytes),
            wide: false,
            rows: 0,
        };
        columns
            .position_offsets
            .extend_from_slice(&0i32.to_le_bytes());
        columns
            .payload_offsets
            .extend_from_slice(&0i32.to_le_bytes());
        columns
    }

    /// Adds one event; `segment` is `None` for an event of a stream file (its position is
    /// the byte offset).
    pub fn push(&mut self, timestamp: i64, segment: Option<u64>, offset: u64, payload: &[u8]) {
        self.timestamps.extend_from_slice(&timestamp.to_le_bytes());
        if let Some(segment) = segment {
            push_decimal(&mut self.positions, segment);
            self.positions.push(b':');
        }
        push_decimal(&mut self.positions, offset);
        // At most 41 bytes a position: past 50 million events `table` refuses the column
        // rather than wrap (checked there).
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
        let mut wide = Vec::with_capacity(self.payload_offsets.len() * 2 + 8);
        for chunk in self.payload_offsets.chunks_exact(4) {
            let mut narrow = [0u8; 4];
            narrow.copy_from_slice(chunk);
            wide.extend_from_slice(&i64::from(i32::from_le_bytes(narrow)).to_le_bytes());
        }
        self.payload_offsets = wide;
        self.wide = true;
    }

    /// The `pyarrow.Table`: `timestamp` (`timestamp[ns, tz=UTC]`), `position` (`string`)
    /// and `payload` (`binary`, or `large_binary` past 2 GiB).
    ///
    /// # Errors
    /// `OverflowError` if the positions pass 2 GiB (some 50 million events), and
    /// pyarrow's exceptions.
    pub fn table<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if i32::try_from(self.positions.len()).is_err() {
            return Err(PyOverflowError::new_err(
                "the position column would exceed 2 GiB; read the log in parts (since, until)",
            ));
        }
        let pa = PyModule::import(py, "pyarrow")?;
        let n = self.rows;
        let utc = pa.call_method1("timestamp", ("ns", "UTC"))?;
        let timestamps = from_buffers(&pa, &utc, n, vec![None, Some(self.timestamps)])?;
        let string = pa.call_method0("string")?;
        let positions = from_buffers(
            &pa,
            &string,
            n,
            vec![None, Some(self.position_offsets), Some(self.positions)],
        )?;
        let binary = pa.call_method0(if self.wide { "large_binary" } else { "binary" })?;
        let payloads = from_buffers(
            &pa,
            &binary,
            n,
            vec![None, Some(self.payload_offsets), Some(self.payloads)],
        )?;
        let arrays = PyList::new(py, [timestamps, positions, payloads])?;
        let names = PyList::new(py, ["timestamp", "position", "payload"])?;
        pa.getattr("Table")?
            .call_method1("from_arrays", (arrays, names))
    }
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
