//! `evstream.Event`: one event read from a log or a stream.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use evstream::Position;

/// Where an event sits: a log's position, or a stream's byte offset.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    /// In a log: its position and the position after it.
    Log(Position, Position),
    /// In a stream file: its byte offset and the offset after it.
    Stream(u64, u64),
}

/// The arguments of `Event._restore`: timestamp, payload, position, next position.
type Restore = (i64, Py<PyBytes>, String, String);

/// One event: its timestamp, payload and position.
#[pyclass(frozen, module = "evstream", name = "Event")]
pub struct Event {
    timestamp: i64,
    payload: Py<PyBytes>,
    place: Place,
}

impl Event {
    /// An event with a copy of `payload`.
    pub fn new(py: Python<'_>, timestamp: i64, payload: &[u8], place: Place) -> PyResult<Py<Self>> {
        Py::new(
            py,
            Self {
                timestamp,
                payload: PyBytes::new(py, payload).unbind(),
                place,
            },
        )
    }
}

impl Event {
    /// Where the event sits.
    pub fn place(&self) -> Place {
        self.place
    }
}

#[pymethods]
impl Event {
    /// Unix nanoseconds.
    #[getter]
    fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The timestamp as a timezone-aware UTC `datetime` (to the microsecond).
    #[getter]
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::time::to_datetime(py, self.timestamp)
    }

    /// The payload.
    #[getter]
    fn payload(&self, py: Python<'_>) -> Py<PyBytes> {
        self.payload.clone_ref(py)
    }

    /// `SEGMENT:OFFSET` in a log; the byte offset in decimal in a stream file.
    #[getter]
    fn position(&self) -> String {
        match self.place {
            Place::Log(at, _) => at.to_string(),
            Place::Stream(at, _) => at.to_string(),
        }
    }

    /// Where the next event starts: what a consumer that processed this one commits.
    #[getter]
    fn next_position(&self) -> String {
        match self.place {
            Place::Log(_, next) => next.to_string(),
            Place::Stream(_, next) => next.to_string(),
        }
    }

    /// The byte offset in the event's segment or stream file.
    #[getter]
    fn offset(&self) -> u64 {
        match self.place {
            Place::Log(at, _) => at.offset(),
            Place::Stream(at, _) => at,
        }
    }

    /// The event again from what [`__reduce__`](Self::__reduce__) kept: `position` and
    /// `next_position` as `SEGMENT:OFFSET` (a log's event) or decimal byte offsets (a
    /// stream file's).
    #[staticmethod]
    fn _restore(
        timestamp: i64,
        payload: Py<PyBytes>,
        position: &str,
        next_position: &str,
    ) -> PyResult<Self> {
        let bad = || PyValueError::new_err(format!("{position:?} is not an event's position"));
        let place = if position.contains(':') {
            Place::Log(
                position.parse().map_err(|_| bad())?,
                next_position.parse().map_err(|_| bad())?,
            )
        } else {
            Place::Stream(
                position.parse().map_err(|_| bad())?,
                next_position.parse().map_err(|_| bad())?,
            )
        };
        Ok(Self {
            timestamp,
            payload,
            place,
        })
    }

    /// Pickles (and copies) the event as its values: `Event._restore` and its arguments.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, Restore)> {
        let py = slf.py();
        let event = slf.get();
        Ok((
            slf.get_type().getattr("_restore")?,
            (
                event.timestamp,
                event.payload.clone_ref(py),
                event.position(),
                event.next_position(),
            ),
        ))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let payload = self.payload.bind(py).as_bytes();
        format!(
            "Event(timestamp={}, position='{}', payload=<{} bytes>)",
            self.timestamp,
            self.position(),
            payload.len()
        )
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        let Ok(other) = other.cast::<Event>() else {
            return false;
        };
        let other = other.get();
        self.timestamp == other.timestamp
            && self.position() == other.position()
            && self.payload.bind(py).as_bytes() == other.payload.bind(py).as_bytes()
    }
}
