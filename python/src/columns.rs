//! Columnar replay: the Arrow buffers of `timestamp`, `position` and `payload` built in
//! Rust, one Python `bytes` per buffer (never one object per event), and assembled into
//! a `pyarrow.Table` with `pyarrow.Array.from_buffers`.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyModule};

/// The buffers of the three columns, filled event by event.
#[derive(Default)]
pub struct Columns {
    timestamps: Vec<u8>,
    position_offsets: Vec<u8>,
    positions: Vec<u8>,
    payload_offsets: Vec<u8>,
    payloads: Vec<u8>,
    rows: usize,
}

impl Columns {
    /// Empty columns, with room for about `events` events of `bytes` payload bytes.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut columns = Self {
            timestamps: Vec::with_capacity(events * 8),
            position_offsets: Vec::with_capacity((events + 1) * 4),
            positions: Vec::with_capacity(events * 12),
            payload_offsets: Vec::with_capacity((events + 1) * 8),
            payloads: Vec::with_capacity(bytes),
            rows: 0,
        };
        columns
            .position_offsets
            .extend_from_slice(&0i32.to_le_bytes());
        columns
            .payload_offsets
            .extend_from_slice(&0i64.to_le_bytes());
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
        // Positions are at most 41 bytes each: an i32 offset overflows only past 50
        // million events, checked in `table`.
        let end = i32::try_from(self.positions.len()).unwrap_or(i32::MAX);
        self.position_offsets.extend_from_slice(&end.to_le_bytes());
        self.payloads.extend_from_slice(payload);
        let end = i64::try_from(self.payloads.len()).unwrap_or(i64::MAX);
        self.payload_offsets.extend_from_slice(&end.to_le_bytes());
        self.rows += 1;
    }

    /// The `pyarrow.Table`: `timestamp` (`timestamp[ns, tz=UTC]`), `position` (`string`,
    /// or `large_string` past 2 GiB) and `payload` (`binary`, or `large_binary` past 2 GiB).
    pub fn table<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pa = PyModule::import(py, "pyarrow")?;
        let n = self.rows;
        let utc = pa.call_method1("timestamp", ("ns", "UTC"))?;
        let timestamps = from_buffers(&pa, &utc, n, &[None, Some(&self.timestamps)])?;

        let string = if i32::try_from(self.positions.len()).is_ok() {
            pa.call_method0("string")?
        } else {
            return Err(PyOverflowError::new_err(
                "the positions column exceeds 2 GiB; read the log in parts (since/until)",
            ));
        };
        let positions = from_buffers(
            &pa,
            &string,
            n,
            &[None, Some(&self.position_offsets), Some(&self.positions)],
        )?;

        let payloads = if i32::try_from(self.payloads.len()).is_ok() {
            // 32-bit offsets, as `binary` wants them.
            let mut narrow = Vec::with_capacity((n + 1) * 4);
            for chunk in self.payload_offsets.chunks_exact(8) {
                let mut wide = [0u8; 8];
                wide.copy_from_slice(chunk);
                let value = i32::try_from(i64::from_le_bytes(wide)).unwrap_or(i32::MAX);
                narrow.extend_from_slice(&value.to_le_bytes());
            }
            let binary = pa.call_method0("binary")?;
            from_buffers(
                &pa,
                &binary,
                n,
                &[None, Some(&narrow), Some(&self.payloads)],
            )?
        } else {
            let binary = pa.call_method0("large_binary")?;
            from_buffers(
                &pa,
                &binary,
                n,
                &[None, Some(&self.payload_offsets), Some(&self.payloads)],
            )?
        };
        let arrays = PyList::new(py, [timestamps, positions, payloads])?;
        let names = PyList::new(py, ["timestamp", "position", "payload"])?;
        pa.getattr("Table")?
            .call_method1("from_arrays", (arrays, names))
    }
}

/// `pyarrow.Array.from_buffers(kind, n, buffers, null_count=0)`, each buffer a `bytes`
/// made here and wrapped by `pyarrow.py_buffer` without a copy.
fn from_buffers<'py>(
    pa: &Bound<'py, PyModule>,
    kind: &Bound<'py, PyAny>,
    n: usize,
    buffers: &[Option<&Vec<u8>>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = pa.py();
    let mut list = Vec::with_capacity(buffers.len());
    for buffer in buffers {
        list.push(match buffer {
            Some(bytes) => pa.call_method1("py_buffer", (PyBytes::new(py, bytes),))?,
            None => py.None().into_bound(py),
        });
    }
    pa.getattr("Array")?
        .call_method1("from_buffers", (kind, n, PyList::new(py, list)?, 0))
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
