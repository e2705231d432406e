//! `evstream.StreamWriter`, `evstream.StreamReader` and the iterator over a stream
//! file's events.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, RwLockExt};
use pyo3::types::PyAny;

use evstream::format::STREAM_HEADER_LEN;
use evstream::{Corruption, Error, EventView, StreamReader, StreamWriter};

use crate::columns;
use crate::errors::IntoPy;
use crate::event::{Event, Place};
use crate::process::Owned;
use crate::time::{opt_ns, to_ns};
use crate::wait::{BATCH, Shared, Wait};

fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a closed writer")
}

fn poisoned() -> PyErr {
    PyValueError::new_err("the object was left unusable by an earlier failure")
}

/// Appends to one stream file: a preallocated file of fixed capacity.
///
/// One writer per file at a time, across processes (`Locked` otherwise). Only the
/// process that opened it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "StreamWriter")]
pub struct PyStreamWriter {
    inner: Owned<Mutex<Option<StreamWriter>>>,
}

impl PyStreamWriter {
    fn new(writer: StreamWriter) -> Self {
        let path = writer.path().to_owned();
        Self {
            inner: Owned::new("StreamWriter", &path, Mutex::new(Some(writer))),
        }
    }

    fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut StreamWriter) -> PyResult<R>,
    ) -> PyResult<R> {
        let mut guard = self
            .inner
            .get()?
            .lock_py_attached(py)
            .map_err(|_| poisoned())?;
        let writer = guard.as_mut().ok_or_else(closed)?;
        f(writer)
    }
}

#[pymethods]
impl PyStreamWriter {
    /// Creates the stream file `path` with room for `capacity` bytes.
    #[staticmethod]
    #[pyo3(signature = (path, capacity=64 << 20))]
    fn create(py: Python<'_>, path: PathBuf, capacity: u64) -> PyResult<Self> {
        let writer = py
            .detach(|| StreamWriter::create(&path, capacity))
            .py_err(&path)?;
        Ok(Self::new(writer))
    }

    /// Opens the stream file `path` for appending, repairing what a crash left.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let writer = py.detach(|| StreamWriter::open(&path)).py_err(&path)?;
        Ok(Self::new(writer))
    }

    /// Appends one event; returns its byte offset.
    fn append(
        &self,
        py: Python<'_>,
        timestamp_ns: &Bound<'_, PyAny>,
        payload: &[u8],
    ) -> PyResult<u64> {
        let timestamp = to_ns(timestamp_ns)?;
        self.with(py, |w| {
            let offset = w.append(timestamp, payload);
            offset.py_err(w.path())
        })
    }

    /// Appends one event stamped with the current time; returns its byte offset.
    fn append_now(&self, py: Python<'_>, payload: &[u8]) -> PyResult<u64> {
        self.with(py, |w| Ok(w.append_now(payload).py_err(w.path())?.0))
    }

    /// Makes every appended event durable (survives power loss) before returning.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |w| py.detach(|| w.flush()).py_err(w.path()))
    }

    /// Flushes, then marks the stream sealed: it takes no more events, and followers end.
    fn seal(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |w| py.detach(|| w.seal()).py_err(w.path()))
    }

    /// Flushes and closes the writer; later calls raise `ValueError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self
            .inner
            .get()?
            .lock_py_attached(py)
            .map_err(|_| poisoned())?;
        let Some(mut writer) = guard.take() else {
            return Ok(());
        };
        let path = writer.path().to_owned();
        py.detach(move || {
            let flushed = if writer.is_sealed() {
                Ok(())
            } else {
                writer.flush()
            };
            drop(writer);
            flushed
        })
        .py_err(&path)
    }

    /// The byte offset the next event will get.
    #[getter]
    fn end(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |w| Ok(w.write_offset()))
    }

    /// Bytes still free for events.
    #[getter]
    fn available(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |w| Ok(w.available()))
    }

    /// The stream file (also once the writer is closed, and in a process forked since,
    /// to open it again there).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_owned()
    }

    /// Whether the writer was closed.
    #[getter]
    fn closed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self
            .inner
            .get()?
            .lock_py_attached(py)
            .map_err(|_| poisoned())?
            .is_none())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the writer; in a process forked from the one that opened it, does nothing
    /// (the writer is the other process's to close), so that a child leaving the
    /// parent's `with` block, as on `sys.exit`, is not stopped by `Locked`.
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        if self.inner.is_here() {
            self.close(py)?;
        }
        Ok(false)
    }
}

/// Reads one stream file: iteration, seek by time, follow, tail, stat. Only the process
/// that opened it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "StreamReader", frozen)]
pub struct PyStreamReader {
    /// Refreshed before each use (under the write lock; used under the read lock, so
    /// that calls of several threads share it); iterators read through readers of their
    /// own of the same file ([`StreamReader::try_clone`]).
    inner: Owned<RwLock<StreamReader>>,
}

#[pymethods]
impl PyStreamReader {
    /// Opens the stream file `path` for reading.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| StreamReader::open(&path)).py_err(&path)?;
        Ok(Self {
            inner: Owned::new("StreamReader", &path, RwLock::new(inner)),
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyStreamIterator> {
        self.iter(py, None, None)
    }

    /// The events from `since` (inclusive) to `until` (exclusive), up to the end as it is
    /// when reached.
    #[pyo3(signature = (since=None, until=None))]
    fn iter(
        &self,
        py: Python<'_>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyStreamIterator> {
        let (since, until) = (opt_ns(since)?, opt_ns(until)?);
        let (reader, start) = self.iterate(py, since)?;
        Ok(PyStreamIterator::new(reader, start, until, None, None))
    }

    /// Follows the stream: its events from `since` (from its end if every event is
    /// earlier), or from byte `offset`, or from the start, then each new one as the
    /// writer appends it, until the stream is sealed or full. With a `timeout` (seconds)
    /// the iteration also ends when no event came for that long. An `offset` where no
    /// event starts raises `OffsetOutOfRange` when it is read.
    #[pyo3(signature = (timeout=None, since=None, offset=None))]
    fn follow(
        &self,
        py: Python<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
        since: Option<&Bound<'_, PyAny>>,
        offset: Option<u64>,
    ) -> PyResult<PyStreamIterator> {
        let timeout = timeout
            .filter(|t| !t.is_none())
            .map(|t| crate::log::duration(t, "timeout"))
            .transpose()?;
        let since = opt_ns(since)?;
        let (reader, start) = self.iterate(py, since)?;
        // A `since` after every event: the follow starts where the next event will.
        let start = offset.or(start).unwrap_or(reader.write_offset());
        // The first event starts at the header's end; anywhere else the caller's offset
        // may fall inside an event.
        let given = offset.filter(|&at| at != STREAM_HEADER_LEN);
        Ok(PyStreamIterator::new(
            reader,
            Some(start),
            None,
            Some(Wait::new(timeout)),
            given,
        ))
    }

    /// The last `n` events, oldest first (reads the stream from the start).
    fn tail(&self, py: Python<'_>, n: usize) -> PyResult<Vec<Py<Event>>> {
        let guard = self.fresh(py)?;
        let reader = &*guard;
        let last = py
            .detach(|| -> evstream::Result<VecDeque<EventView<'_>>> {
                let mut last = VecDeque::with_capacity(n.min(BATCH));
                for event in reader.iter() {
                    let event = event?;
                    if n > 0 {
                        if last.len() == n {
                            last.pop_front();
                        }
                        last.push_back(event);
                    }
                }
                Ok(last)
            })
            .py_err(self.inner.path())?;
        last.iter().map(|e| stream_event(py, e)).collect()
    }

    /// A summary of the stream file (reads its header and trailer, not its events).
    fn stat(&self, py: Python<'_>) -> PyResult<StreamStat> {
        let guard = self.fresh(py)?;
        let reader = &*guard;
        let writer_active = py
            .detach(|| reader.writer_active())
            .py_err(self.inner.path())?;
        Ok(StreamStat {
            capacity: reader.capacity(),
            write_offset: reader.write_offset(),
            events: reader.header_event_count(),
            durable_offset: reader.durable_offset(),
            sealed: reader.is_sealed(),
            generation: reader.generation(),
            writer_active,
        })
    }

    /// The events from `since` to `until` as a `pyarrow.Table`, as `LogReader.to_arrow`
    /// (the `position` column holds byte offsets in decimal).
    #[pyo3(signature = (since=None, until=None))]
    fn to_arrow<'py>(
        &self,
        py: Python<'py>,
        since: Option<&Bound<'py, PyAny>>,
        until: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (since, until) = (opt_ns(since)?, opt_ns(until)?);
        let guard = self.fresh(py)?;
        let reader = &*guard;
        let chunks = py
            .detach(|| {
                let start = match since {
                    Some(ts) => reader.seek_time(ts)?,
                    None => Some(STREAM_HEADER_LEN),
                };
                let estimate = match (since, until) {
                    (None, None) => usize::try_from(reader.header_event_count()).unwrap_or(0),
                    _ => 0,
                };
                columns::collect(estimate, |sink| {
                    let Some(start) = start else {
                        return Ok(());
                    };
                    for event in reader.iter_from(start)? {
                        let event = event?;
                        if until.is_some_and(|u| event.timestamp() >= u) {
                            break;
                        }
                        sink.push(event.timestamp(), None, event.offset(), event.payload());
                    }
                    Ok::<_, evstream::Error>(())
                })
            })
            .py_err(self.inner.path())?;
        columns::table(py, chunks)
    }

    /// `to_arrow(since, until).to_pandas()`.
    #[pyo3(signature = (since=None, until=None))]
    fn to_pandas<'py>(
        &self,
        py: Python<'py>,
        since: Option<&Bound<'py, PyAny>>,
        until: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.to_arrow(py, since, until)?.call_method0("to_pandas")
    }

    /// The stream file's path (also in a process forked since, to open it again there).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_owned()
    }
}

impl PyStreamReader {
    /// A reader of its own of this reader's file for an iterator (which moves its
    /// snapshot forward as it goes), and where reading from `since` starts. The file is
    /// the one this reader opened, also once its path was removed or names another.
    fn iterate(&self, py: Python<'_>, since: Option<i64>) -> PyResult<(StreamReader, Option<u64>)> {
        let reader = {
            let guard = self
                .inner
                .get()?
                .read_py_attached(py)
                .map_err(|_| poisoned())?;
            let held = &*guard;
            py.detach(|| held.try_clone()).py_err(self.inner.path())?
        };
        let start = py
            .detach(|| match since {
                Some(ts) => reader.seek_time(ts),
                None => Ok(Some(STREAM_HEADER_LEN)),
            })
            .py_err(self.inner.path())?;
        Ok((reader, start))
    }

    /// The reader, its snapshot moved to the events published now.
    fn fresh(&self, py: Python<'_>) -> PyResult<RwLockReadGuard<'_, StreamReader>> {
        let lock = self.inner.get()?;
        {
            let mut guard = lock.write_py_attached(py).map_err(|_| poisoned())?;
            let reader = &mut *guard;
            py.detach(|| reader.refresh()).py_err(self.inner.path())?;
        }
        lock.read_py_attached(py).map_err(|_| poisoned())
    }
}

fn stream_event(py: Python<'_>, event: &EventView<'_>) -> PyResult<Py<Event>> {
    Event::new(
        py,
        event.timestamp(),
        event.payload(),
        Place::Stream(event.offset(), event.next_offset()),
    )
}

/// Iterates a stream file's events, reading them in batches with the GIL released. Only
/// the process that made it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "StreamIterator")]
pub struct PyStreamIterator {
    state: Owned<Shared<StreamState>>,
}

struct StreamState {
    /// The iterator's own reader, refreshed before each batch.
    reader: StreamReader,
    /// Where the next batch starts; `None`: nothing to read (a `since` past the end).
    offset: Option<u64>,
    previous: i64,
    until: Option<i64>,
    wait: Option<Wait>,
    /// The byte offset the caller gave, until an event is read there: damage met exactly
    /// there means that no event starts at it.
    given: Option<u64>,
    ready: VecDeque<Py<Event>>,
    failed: Option<Error>,
    done: bool,
}

impl PyStreamIterator {
    fn new(
        reader: StreamReader,
        offset: Option<u64>,
        until: Option<i64>,
        wait: Option<Wait>,
        given: Option<u64>,
    ) -> Self {
        let path = reader.path().to_owned();
        let state = StreamState {
            reader,
            done: offset.is_none(),
            offset,
            previous: i64::MIN,
            until,
            wait,
            given,
            ready: VecDeque::new(),
            failed: None,
        };
        Self {
            state: Owned::new("StreamIterator", &path, Shared::new(state)),
        }
    }
}

/// What one batch read: events, the error that stopped it, whether it reached the end.
type Batch<'r> = (Vec<EventView<'r>>, Option<Error>, bool);

/// Up to [`BATCH`] events published now from `offset`, the first checked against the
/// `previous` batch's last timestamp.
fn read_batch(reader: &StreamReader, offset: u64, previous: i64, until: Option<i64>) -> Batch<'_> {
    let mut events = Vec::with_capacity(64);
    let mut follow = match reader.follow(offset) {
        Ok(follow) => follow,
        Err(e) => return (events, Some(e), true),
    };
    while events.len() < BATCH {
        match follow.try_next() {
            Ok(Some(event)) => {
                if events.is_empty() && event.timestamp() < previous {
                    let reason = Corruption::TimestampOutOfOrder {
                        previous,
                        got: event.timestamp(),
                    };
                    let error = Error::Corrupt {
                        path: reader.path().to_owned(),
                        offset,
                        watermark: reader.durable_offset(),
                        reason,
                    };
                    return (events, Some(error), true);
                }
                if until.is_some_and(|u| event.timestamp() >= u) {
                    return (events, None, true);
                }
                events.push(event);
            }
            Ok(None) => return (events, None, true),
            Err(e) => return (events, Some(e), true),
        }
    }
    (events, None, false)
}

#[pymethods]
impl PyStreamIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Event>>> {
        let mut guard = self.state.get()?.lock(py, poisoned)?;
        let state = &mut *guard;
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some(error) = state.failed.take() {
                state.done = true;
                let path = state.reader.path();
                return Err(crate::errors::at_offset(error, path, state.given));
            }
            let (false, Some(offset)) = (state.done, state.offset) else {
                return Ok(None);
            };
            if let Err(e) = py.detach(|| state.reader.refresh()) {
                state.done = true;
                return Err(crate::errors::to_py(e, state.reader.path()));
            }
            let reader = &state.reader;
            let (previous, until, given) = (state.previous, state.until, state.given);
            let (events, failed, ended) = match &mut state.wait {
                None => py.detach(|| read_batch(reader, offset, previous, until)),
                Some(wait) => {
                    let error = |e| crate::errors::at_offset(e, reader.path(), given);
                    // One follower for the whole wait, as long as it is: it looks every
                    // 2 s whether the file was deleted with no writer left, when no event
                    // can come any more.
                    let mut follow = py.detach(|| reader.follow(offset)).map_err(error)?;
                    let first =
                        wait.next(py, error, |slice| match follow.next_timeout(slice)? {
                            Some(_) => Ok(Some(false)),
                            None if follow.is_finished() => Ok(Some(true)),
                            None => Ok(None),
                        })?;
                    match first {
                        None | Some(true) => {
                            state.done = true;
                            return Ok(None);
                        }
                        Some(false) => {
                            let (events, failed, _) =
                                py.detach(|| read_batch(reader, offset, previous, None));
                            (events, failed, false)
                        }
                    }
                }
            };
            if let Some(last) = events.last() {
                state.offset = Some(last.next_offset());
                state.previous = last.timestamp();
                state.given = None;
            }
            for event in &events {
                state.ready.push_back(stream_event(py, event)?);
            }
            state.done = ended;
            state.failed = failed;
        }
    }
}

/// The fields of a [`StreamStat`], in their order.
type StreamStatFields = (u64, u64, u64, u64, bool, u64, bool);

/// A summary of a stream file.
#[pyclass(module = "evstream", frozen, get_all)]
pub struct StreamStat {
    /// The file's size in bytes.
    pub capacity: u64,
    /// The byte offset after the last published event.
    pub write_offset: u64,
    /// Events, as the header counts them.
    pub events: u64,
    /// The durable watermark: events below it survive power loss.
    pub durable_offset: u64,
    /// Whether the stream is sealed.
    pub sealed: bool,
    /// How many times a writer's recovery rewrote published bytes.
    pub generation: u64,
    /// Whether a writer holds the file.
    pub writer_active: bool,
}

#[pymethods]
impl StreamStat {
    /// The summary again from what [`__reduce__`](Self::__reduce__) kept.
    #[staticmethod]
    fn _restore(
        capacity: u64,
        write_offset: u64,
        events: u64,
        durable_offset: u64,
        sealed: bool,
        generation: u64,
        writer_active: bool,
    ) -> Self {
        Self {
            capacity,
            write_offset,
            events,
            durable_offset,
            sealed,
            generation,
            writer_active,
        }
    }

    /// Pickles (and copies) the summary as its values.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, StreamStatFields)> {
        let s = slf.get();
        Ok((
            slf.get_type().getattr("_restore")?,
            (
                s.capacity,
                s.write_offset,
                s.events,
                s.durable_offset,
                s.sealed,
                s.generation,
                s.writer_active,
            ),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "StreamStat(capacity={}, write_offset={}, events={}, sealed={}, writer_active={})",
            self.capacity,
            self.write_offset,
            self.events,
            if self.sealed { "True" } else { "False" },
            if self.writer_active { "True" } else { "False" }
        )
    }
}
