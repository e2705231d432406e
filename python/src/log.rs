//! `evstream.LogWriter`, `evstream.LogReader` and the iterator over a log's events.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyAny, PyBool, PyString};

use evstream::format::STREAM_HEADER_LEN;
use evstream::{LogEvent, LogIter, LogOptions, LogReader, LogWriter, Position};

use crate::columns;
use crate::errors::IntoPy;
use crate::event::{Event, Place};
use crate::process::Owned;
use crate::time::{opt_ns, to_ns};
use crate::wait::{BATCH, Shared, Wait};

/// A writer that was closed: `ValueError`, as for a closed Python file.
fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a closed writer")
}

/// A lock poisoned by a panic elsewhere (none is expected): the state is not trusted.
fn poisoned() -> PyErr {
    PyValueError::new_err("the object was left unusable by an earlier failure")
}

/// A duration argument: seconds (`int` or `float`, not a `bool`) or a
/// `datetime.timedelta`.
pub fn duration(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Duration> {
    // `roll=False` is no "do not roll", nor `retain_age=True` "keep": never 0 or 1 s.
    // Neither is numpy's bool (`numpy.False_`, a cell of a boolean column), which is no
    // `bool` but converts to a float as one does.
    if value.is_instance_of::<PyBool>() || is_numpy_bool(value)? {
        return Err(PyTypeError::new_err(format!(
            "{what} is a number of seconds or a datetime.timedelta, not a bool"
        )));
    }
    let seconds: f64 = if value.hasattr("total_seconds")? {
        value.call_method0("total_seconds")?.extract()?
    } else {
        value.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} is a number of seconds or a datetime.timedelta"
            ))
        })?
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a positive duration, not {seconds}"))
    })
}

/// Whether `value` is one of numpy's bools (`numpy.bool`, named `numpy.bool_` before
/// numpy 2), told by its type's module and name so that numpy need not be imported.
fn is_numpy_bool(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    let kind = value.get_type();
    let name = kind.name()?;
    if name != "bool" && name != "bool_" {
        return Ok(false);
    }
    Ok(kind.module()?.to_cow()?.starts_with("numpy"))
}

/// `roll`: `"hourly"`, `"daily"`, seconds or a `timedelta`.
fn roll_interval(value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if let Ok(name) = value.cast::<PyString>() {
        return match &*name.to_cow()? {
            "hourly" => Ok(Duration::from_secs(3600)),
            "daily" => Ok(Duration::from_secs(86_400)),
            other => Err(PyValueError::new_err(format!(
                "roll is \"hourly\", \"daily\", seconds or a timedelta, not {other:?}"
            ))),
        };
    }
    duration(value, "roll")
}

/// A position argument: `"SEGMENT:OFFSET"`, or an `Event` (its next position: where a
/// consumer that processed it resumes).
fn position_arg(value: &Bound<'_, PyAny>) -> PyResult<Position> {
    let text: String = match value.cast::<Event>() {
        Ok(event) => event.getattr("next_position")?.extract()?,
        Err(_) => value.extract().map_err(|_| {
            PyTypeError::new_err("a position is a \"SEGMENT:OFFSET\" string or an Event")
        })?,
    };
    text.parse::<Position>()
        .map_err(|e| PyValueError::new_err(format!("{text:?} is not a position: {e}")))
}

/// Appends to a log: a directory of rolling segments, with retention.
///
/// One writer per log at a time, across processes (`Locked` otherwise). Only the process
/// that opened it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "LogWriter")]
pub struct PyLogWriter {
    inner: Owned<Mutex<Option<LogWriter>>>,
}

impl PyLogWriter {
    fn new(writer: LogWriter) -> Self {
        let dir = writer.dir().to_owned();
        Self {
            inner: Owned::new("LogWriter", &dir, Mutex::new(Some(writer))),
        }
    }

    fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut LogWriter) -> PyResult<R>,
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
impl PyLogWriter {
    /// Creates a log in the new directory `path`.
    #[staticmethod]
    #[pyo3(signature = (path, segment_size=None, roll=None, retain_size=None, retain_age=None, retain_segments=None, retain_past_cursors=false))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        segment_size: Option<u64>,
        roll: Option<&Bound<'_, PyAny>>,
        retain_size: Option<u64>,
        retain_age: Option<&Bound<'_, PyAny>>,
        retain_segments: Option<u64>,
        retain_past_cursors: bool,
    ) -> PyResult<Self> {
        let mut options = LogOptions::default();
        if let Some(size) = segment_size {
            options = options.segment_size(size);
        }
        let roll = roll
            .filter(|r| !r.is_none())
            .map(roll_interval)
            .transpose()?;
        let age = retain_age
            .filter(|a| !a.is_none())
            .map(|a| duration(a, "retain_age"))
            .transpose()?;
        options = options
            .roll_interval(roll)
            .retain_size(retain_size)
            .retain_age(age)
            .retain_segments(retain_segments)
            .retain_past_cursors(retain_past_cursors);
        let writer = py
            .detach(|| LogWriter::create(&path, options))
            .py_err(&path)?;
        Ok(Self::new(writer))
    }

    /// Opens the log in `path` for appending, repairing what a crash left.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let writer = py.detach(|| LogWriter::open(&path)).py_err(&path)?;
        Ok(Self::new(writer))
    }

    /// Appends one event; returns its position `"SEGMENT:OFFSET"`.
    fn append(
        &self,
        py: Python<'_>,
        timestamp_ns: &Bound<'_, PyAny>,
        payload: &[u8],
    ) -> PyResult<String> {
        let timestamp = to_ns(timestamp_ns)?;
        self.with(py, |w| {
            let position = w.append(timestamp, payload).py_err(w.dir())?;
            Ok(position.to_string())
        })
    }

    /// Appends one event stamped with the current time (never below the last event's).
    fn append_now(&self, py: Python<'_>, payload: &[u8]) -> PyResult<String> {
        self.with(py, |w| {
            Ok(w.append_now(payload).py_err(w.dir())?.0.to_string())
        })
    }

    /// Makes every appended event durable (survives power loss) before returning.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |w| py.detach(|| w.flush()).py_err(w.dir()))
    }

    /// Flushes and closes the writer; later calls raise `ValueError`. Closing twice is
    /// allowed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self
            .inner
            .get()?
            .lock_py_attached(py)
            .map_err(|_| poisoned())?;
        let Some(mut writer) = guard.take() else {
            return Ok(());
        };
        let dir = writer.dir().to_owned();
        py.detach(move || {
            let flushed = writer.flush();
            drop(writer);
            flushed
        })
        .py_err(&dir)
    }

    /// The position the next event will get.
    #[getter]
    fn end(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |w| Ok(w.end().to_string()))
    }

    /// The log's directory (also once the writer is closed, and in a process forked
    /// since, to open it again there).
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

/// Reads a log: iteration, seek by time, tail, stat, cursors, columnar replay. Only the
/// process that opened it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "LogReader", frozen)]
pub struct PyLogReader {
    inner: Owned<LogReader>,
}

#[pymethods]
impl PyLogReader {
    /// Opens the log in `path` for reading.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| LogReader::open(&path)).py_err(&path)?;
        let dir = inner.dir().to_owned();
        Ok(Self {
            inner: Owned::new("LogReader", &dir, inner),
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyLogIterator> {
        self.iter(py, None, None)
    }

    /// The events from `since` (inclusive) to `until` (exclusive), times as Unix
    /// nanoseconds or aware `datetime`s; up to the end of the log as it is when reached.
    #[pyo3(signature = (since=None, until=None))]
    fn iter(
        &self,
        py: Python<'_>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyLogIterator> {
        let reader = self.inner.get()?;
        let (since, until) = (opt_ns(since)?, opt_ns(until)?);
        let iter = py.detach(|| start(reader, since)).py_err(reader.dir())?;
        Ok(PyLogIterator::new(reader.dir(), iter, until, None, None))
    }

    /// Follows the log: its events from `since`, or from `position` (such as
    /// `reader.end()` for new events only), or from the start, then each new one as the
    /// writer appends it (across rolls). With a `timeout` (seconds) the iteration ends
    /// when no event came for that long; without, it waits until interrupted. A
    /// `position` outside the log's events raises `NoSuchPosition` (or `Retired`, in a
    /// segment retention deleted) at once; one inside an event, when it is read.
    #[pyo3(signature = (timeout=None, since=None, position=None))]
    fn follow(
        &self,
        py: Python<'_>,
        timeout: Option<&Bound<'_, PyAny>>,
        since: Option<&Bound<'_, PyAny>>,
        position: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyLogIterator> {
        let reader = self.inner.get()?;
        let timeout = timeout
            .filter(|t| !t.is_none())
            .map(|t| duration(t, "timeout"))
            .transpose()?;
        let since = opt_ns(since)?;
        let position = position
            .filter(|p| !p.is_none())
            .map(position_arg)
            .transpose()?;
        let iter = py
            .detach(|| match position {
                Some(at) => reader.iter_from(at),
                None => start(reader, since),
            })
            .py_err(reader.dir())?;
        // A segment's first event starts at its header's end; anywhere else the
        // caller's position may fall inside an event.
        let given = position.filter(|p| p.offset() != STREAM_HEADER_LEN);
        Ok(PyLogIterator::new(
            reader.dir(),
            iter,
            None,
            Some(Wait::new(timeout)),
            given,
        ))
    }

    /// The last `n` events, oldest first.
    fn tail(&self, py: Python<'_>, n: usize) -> PyResult<Vec<Py<Event>>> {
        let reader = self.inner.get()?;
        let events = py.detach(|| reader.tail(n)).py_err(reader.dir())?;
        events.iter().map(|e| log_event(py, e)).collect()
    }

    /// A summary: segments, events, disk use, time span, whether a writer is active.
    fn stat(&self, py: Python<'_>) -> PyResult<LogStat> {
        let reader = self.inner.get()?;
        let stat = py.detach(|| reader.stat()).py_err(reader.dir())?;
        Ok(LogStat {
            segments: stat.segments,
            first_segment: stat.first_segment,
            last_segment: stat.last_segment,
            events: stat.events,
            disk_bytes: stat.disk_bytes,
            first_timestamp: stat.first_timestamp,
            last_timestamp: stat.last_timestamp,
            start: stat.start.to_string(),
            end: stat.end.to_string(),
            writer_active: stat.writer_active,
        })
    }

    /// The position of the log's first event still kept.
    fn start_position(&self, py: Python<'_>) -> PyResult<String> {
        let reader = self.inner.get()?;
        Ok(py
            .detach(|| reader.start())
            .py_err(reader.dir())?
            .to_string())
    }

    /// The position after the log's last published event.
    fn end(&self, py: Python<'_>) -> PyResult<String> {
        let reader = self.inner.get()?;
        Ok(py.detach(|| reader.end()).py_err(reader.dir())?.to_string())
    }

    /// The position stored in cursor `name`, or `None` if it was never committed.
    fn cursor(&self, py: Python<'_>, name: &str) -> PyResult<Option<String>> {
        let reader = self.inner.get()?;
        Ok(py
            .detach(|| reader.cursor(name))
            .py_err(reader.dir())?
            .map(|p| p.to_string()))
    }

    /// The events from cursor `name` on (from the start of the log if it was never
    /// committed), up to the end of the log.
    fn iter_cursor(&self, py: Python<'_>, name: &str) -> PyResult<PyLogIterator> {
        let reader = self.inner.get()?;
        let iter = py
            .detach(|| reader.iter_cursor(name))
            .py_err(reader.dir())?;
        Ok(PyLogIterator::new(reader.dir(), iter, None, None, None))
    }

    /// Stores `position` in cursor `name`, atomically and durably. `position` is
    /// `"SEGMENT:OFFSET"` or an `Event`, which commits the position after it.
    fn commit_cursor(
        &self,
        py: Python<'_>,
        name: &str,
        position: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let reader = self.inner.get()?;
        let position = position_arg(position)?;
        py.detach(|| reader.commit_cursor(name, position))
            .py_err(reader.dir())
    }

    /// How far cursor `name` is behind the end of the log, or `None` if it was never
    /// committed.
    fn lag(&self, py: Python<'_>, name: &str) -> PyResult<Option<Lag>> {
        let reader = self.inner.get()?;
        let lag = py.detach(|| reader.cursor_lag(name)).py_err(reader.dir())?;
        Ok(lag.map(|l| Lag {
            events: l.events,
            bytes: l.bytes,
        }))
    }

    /// The events from `since` to `until` as a `pyarrow.Table` with columns `timestamp`
    /// (`timestamp[ns, tz=UTC]`), `position` (`string`) and `payload` (`binary`), built
    /// without a Python object per event.
    #[pyo3(signature = (since=None, until=None))]
    fn to_arrow<'py>(
        &self,
        py: Python<'py>,
        since: Option<&Bound<'py, PyAny>>,
        until: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let reader = self.inner.get()?;
        let (since, until) = (opt_ns(since)?, opt_ns(until)?);
        let chunks = py
            .detach(|| replay(reader, since, until))
            .py_err(reader.dir())?;
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

    /// The log's directory (also in a process forked since, to open it again there).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_owned()
    }
}

/// The chunks of `to_arrow`: the time range split in as many parts as there are cores
/// (up to 4; one for fewer than [`columns::PARALLEL_EVENTS`] events), each replayed by a
/// thread of its own (by the calling thread if none can be started) from its start found
/// by time (`iter_since`), the parts joined in order. Timestamps never decrease, so the
/// parts neither overlap nor leave a gap.
fn replay(
    reader: &LogReader,
    since: Option<i64>,
    until: Option<i64>,
) -> evstream::Result<Vec<columns::Chunk>> {
    let stat = reader.stat()?;
    let whole = since.is_none() && until.is_none();
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let parts = match (stat.first_timestamp, stat.last_timestamp) {
        (Some(first), Some(last)) if stat.events >= columns::PARALLEL_EVENTS && cores > 1 => {
            let low = i128::from(since.unwrap_or(first).max(first));
            let high = i128::from(until.map_or(last, |u| u.min(last)));
            let count = cores as i128;
            // Boundaries between the parts: `low < b1 <= ... < high`, or none.
            (1..count)
                .filter_map(|k| i64::try_from(low + (high - low) * k / count).ok())
                .filter(|&b| i128::from(b) > low)
                .collect::<Vec<i64>>()
        }
        _ => Vec::new(),
    };
    let estimate = if whole {
        usize::try_from(stat.events / (parts.len() as u64 + 1)).unwrap_or(0)
    } else {
        0
    };
    // Part k covers [start_k, end_k): the first starts at `since`, the last ends at `until`.
    let starts = std::iter::once(since).chain(parts.iter().copied().map(Some));
    let ends = parts
        .iter()
        .copied()
        .map(Some)
        .chain(std::iter::once(until));
    let ranges: Vec<(Option<i64>, Option<i64>)> = starts.zip(ends).collect();
    std::thread::scope(|scope| {
        // A part whose thread cannot be started (the process is at its limit of threads,
        // as under a container's task limit) is replayed on this thread, in its turn.
        let parts: Vec<_> = ranges
            .iter()
            .map(|&(from, to)| {
                std::thread::Builder::new()
                    .name("evstream-replay".into())
                    .spawn_scoped(scope, move || replay_part(reader, from, to, estimate))
                    .map_err(|_| (from, to))
            })
            .collect();
        let mut chunks = Vec::new();
        for part in parts {
            let part = match part {
                Ok(handle) => match handle.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err((from, to)) => replay_part(reader, from, to, estimate),
            };
            chunks.extend(part?);
        }
        Ok(chunks)
    })
}

/// The chunks of the events from `since` (inclusive) to `until` (exclusive).
fn replay_part(
    reader: &LogReader,
    since: Option<i64>,
    until: Option<i64>,
    estimate: usize,
) -> evstream::Result<Vec<columns::Chunk>> {
    let mut iter = start(reader, since)?;
    columns::collect(estimate, |sink| {
        while let Some(event) = iter.try_next()? {
            if until.is_some_and(|u| event.timestamp() >= u) {
                break;
            }
            let at = event.position();
            sink.push(
                event.timestamp(),
                Some(at.segment()),
                at.offset(),
                event.payload(),
            );
        }
        Ok(())
    })
}

/// The events from the first at or after `since`, or from the first.
fn start(reader: &LogReader, since: Option<i64>) -> evstream::Result<LogIter> {
    match since {
        Some(ts) => reader.iter_since(ts),
        None => reader.iter(),
    }
}

fn log_event(py: Python<'_>, event: &LogEvent) -> PyResult<Py<Event>> {
    Event::new(
        py,
        event.timestamp(),
        event.payload(),
        Place::Log(event.position(), event.next_position()),
    )
}

/// Iterates a log's events, reading them in batches with the GIL released. Only the
/// process that made it may use it (see [`Owned`]).
#[pyclass(module = "evstream", name = "LogIterator")]
pub struct PyLogIterator {
    state: Owned<Shared<IterState>>,
    /// The position of the next event `__next__` returns, stored after each call: read
    /// without the state's lock, which a follower holds while it waits.
    next: Mutex<Position>,
}

struct IterState {
    iter: LogIter,
    until: Option<i64>,
    wait: Option<Wait>,
    /// The position the caller gave, until an event is read there: damage met exactly
    /// there means that no event starts at it.
    given: Option<Position>,
    ready: VecDeque<Py<Event>>,
    failed: Option<evstream::Error>,
    done: bool,
    /// The position of the event at or after `until` that ended the iteration: the
    /// iterator read it, but it is the next event, not one returned.
    stopped: Option<Position>,
}

impl PyLogIterator {
    fn new(
        dir: &Path,
        iter: LogIter,
        until: Option<i64>,
        wait: Option<Wait>,
        given: Option<Position>,
    ) -> Self {
        let next = Mutex::new(iter.position());
        let state = IterState {
            iter,
            until,
            wait,
            given,
            ready: VecDeque::new(),
            failed: None,
            done: false,
            stopped: None,
        };
        Self {
            state: Owned::new("LogIterator", dir, Shared::new(state)),
            next,
        }
    }
}

impl IterState {
    /// The next event of the log `dir`, reading (or waiting for) a batch if none is
    /// ready; `None` at the end.
    fn next(&mut self, py: Python<'_>, dir: &Path) -> PyResult<Option<Py<Event>>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if let Some(error) = self.failed.take() {
                self.done = true;
                return Err(crate::errors::at_position(error, dir, self.given));
            }
            if self.done {
                return Ok(None);
            }
            let (iter, until, wait, given) =
                (&mut self.iter, self.until, &mut self.wait, self.given);
            let (events, failed, ended, stopped) = match wait {
                None => py.detach(|| read_batch(iter, until)),
                Some(wait) => {
                    let error = |e| crate::errors::at_position(e, dir, given);
                    let Some(first) = wait.next(py, error, |slice| iter.next_timeout(slice))?
                    else {
                        self.done = true;
                        return Ok(None);
                    };
                    let mut batch = py.detach(|| read_batch(iter, None));
                    batch.0.insert(0, first);
                    batch.2 = false;
                    batch.3 = None;
                    batch
                }
            };
            if !events.is_empty() {
                self.given = None;
            }
            self.done = ended;
            self.stopped = stopped;
            self.failed = failed;
            for event in &events {
                self.ready.push_back(log_event(py, event)?);
            }
        }
    }

    /// The position of the next event [`next`](Self::next) returns.
    fn position(&self) -> Position {
        match self.ready.front().map(|event| event.get().place()) {
            Some(Place::Log(at, _)) => at,
            _ => self.stopped.unwrap_or_else(|| self.iter.position()),
        }
    }
}

#[pymethods]
impl PyLogIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<Event>>> {
        let mut guard = self.state.get()?.lock(py, poisoned)?;
        let next = guard.next(py, self.state.path());
        *self.next.lock().map_err(|_| poisoned())? = guard.position();
        next
    }

    /// The position of the next event this iterator returns (once an iteration ended at
    /// `until`, the first event at or after it). While another thread waits in
    /// `__next__` for new events, the position before that wait.
    #[getter]
    fn position(&self) -> PyResult<String> {
        self.state.get()?; // Only in the process that made the iterator.
        Ok(self.next.lock().map_err(|_| poisoned())?.to_string())
    }
}

/// Up to [`BATCH`] events published now; the error that stopped it; whether the end (of
/// the log, or `until`) was reached; the position of the event at or after `until` that
/// ended it.
fn read_batch(iter: &mut LogIter, until: Option<i64>) -> Batch {
    let mut events = Vec::with_capacity(64);
    while events.len() < BATCH {
        match iter.try_next() {
            Ok(Some(event)) => {
                if until.is_some_and(|u| event.timestamp() >= u) {
                    return (events, None, true, Some(event.position()));
                }
                events.push(event);
            }
            Ok(None) => return (events, None, true, None),
            Err(e) => return (events, Some(e), true, None),
        }
    }
    (events, None, false, None)
}

/// What one batch read: see [`read_batch`].
type Batch = (
    Vec<LogEvent>,
    Option<evstream::Error>,
    bool,
    Option<Position>,
);

/// The fields of a [`LogStat`], in their order.
type LogStatFields = (
    u64,
    u64,
    u64,
    u64,
    u64,
    Option<i64>,
    Option<i64>,
    String,
    String,
    bool,
);

/// A summary of a log.
#[pyclass(module = "evstream", frozen, get_all)]
pub struct LogStat {
    /// Segments in the directory.
    pub segments: u64,
    /// The oldest segment's sequence number.
    pub first_segment: u64,
    /// The newest segment's sequence number.
    pub last_segment: u64,
    /// Events in the log.
    pub events: u64,
    /// Bytes the segments take on disk.
    pub disk_bytes: u64,
    /// The first event's timestamp (Unix ns), if any.
    pub first_timestamp: Option<i64>,
    /// The last event's timestamp (Unix ns), if any.
    pub last_timestamp: Option<i64>,
    /// The first event's position.
    pub start: String,
    /// The position after the last event.
    pub end: String,
    /// Whether a writer holds the log.
    pub writer_active: bool,
}

#[pymethods]
impl LogStat {
    /// The summary again from what [`__reduce__`](Self::__reduce__) kept.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn _restore(
        segments: u64,
        first_segment: u64,
        last_segment: u64,
        events: u64,
        disk_bytes: u64,
        first_timestamp: Option<i64>,
        last_timestamp: Option<i64>,
        start: String,
        end: String,
        writer_active: bool,
    ) -> Self {
        Self {
            segments,
            first_segment,
            last_segment,
            events,
            disk_bytes,
            first_timestamp,
            last_timestamp,
            start,
            end,
            writer_active,
        }
    }

    /// Pickles (and copies) the summary as its values: `LogStat._restore` and its fields.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, LogStatFields)> {
        let s = slf.get();
        Ok((
            slf.get_type().getattr("_restore")?,
            (
                s.segments,
                s.first_segment,
                s.last_segment,
                s.events,
                s.disk_bytes,
                s.first_timestamp,
                s.last_timestamp,
                s.start.clone(),
                s.end.clone(),
                s.writer_active,
            ),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "LogStat(segments={}, events={}, disk_bytes={}, start='{}', end='{}', writer_active={})",
            self.segments,
            self.events,
            self.disk_bytes,
            self.start,
            self.end,
            if self.writer_active { "True" } else { "False" }
        )
    }
}

/// A consumer's distance from the end of the log.
#[pyclass(module = "evstream", frozen, get_all)]
pub struct Lag {
    /// Events at or after the cursor.
    pub events: u64,
    /// Bytes of those events, headers included.
    pub bytes: u64,
}

#[pymethods]
impl Lag {
    /// The lag again from what [`__reduce__`](Self::__reduce__) kept.
    #[staticmethod]
    fn _restore(events: u64, bytes: u64) -> Self {
        Self { events, bytes }
    }

    /// Pickles (and copies) the lag as its values.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (u64, u64))> {
        let lag = slf.get();
        Ok((slf.get_type().getattr("_restore")?, (lag.events, lag.bytes)))
    }

    fn __repr__(&self) -> String {
        format!("Lag(events={}, bytes={})", self.events, self.bytes)
    }
}
