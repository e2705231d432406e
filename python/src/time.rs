//! Times between Python and the store: Unix nanoseconds as `int` (numpy's integers too), or
//! aware `datetime`s.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyAny, PyBool, PyInt, PyModule};

/// `datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)` and `datetime.timedelta`.
struct Epoch {
    epoch: Py<PyAny>,
    timedelta: Py<PyAny>,
    datetime: Py<PyAny>,
}

static EPOCH: PyOnceLock<Epoch> = PyOnceLock::new();

fn epoch(py: Python<'_>) -> PyResult<&Epoch> {
    EPOCH.get_or_try_init(py, || {
        let module = PyModule::import(py, "datetime")?;
        let utc = module.getattr("timezone")?.getattr("utc")?;
        let datetime = module.getattr("datetime")?;
        let epoch = datetime.call((1970, 1, 1, 0, 0, 0, 0, utc), None)?;
        Ok::<_, PyErr>(Epoch {
            epoch: epoch.unbind(),
            timedelta: module.getattr("timedelta")?.unbind(),
            datetime: datetime.unbind(),
        })
    })
}

/// Unix nanoseconds from an `int` (or another integer type `operator.index` takes, such
/// as numpy's `int64`) or a timezone-aware `datetime` (to the nanosecond for one that
/// holds nanoseconds, as pandas' `Timestamp` does).
///
/// # Errors
/// `TypeError` for another type, `ValueError` for a naive `datetime` (its zone is
/// unknown), `OverflowError` for a time outside the store's range.
pub fn to_ns(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = value.py();
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "a time is an int (Unix nanoseconds) or a datetime, not a bool",
        ));
    }
    if value.is_instance_of::<PyInt>() {
        return value.extract::<i64>();
    }
    let epoch = epoch(py)?;
    let is_datetime = value.is_instance(epoch.datetime.bind(py))?;
    // An integer of another type (numpy's `int64`, ...): what `operator.index` takes.
    if !is_datetime && value.hasattr("__index__")? {
        return value.call_method0("__index__")?.extract::<i64>();
    }
    if !is_datetime {
        return Err(PyTypeError::new_err(format!(
            "a time is an int (Unix nanoseconds) or a datetime, not {}",
            value.get_type().name()?
        )));
    }
    if value.call_method0("utcoffset")?.is_none() {
        return Err(PyValueError::new_err(
            "a naive datetime has no time zone; give it one (tzinfo=datetime.timezone.utc)",
        ));
    }
    let delta = value.call_method1("__sub__", (epoch.epoch.bind(py),))?;
    let days: i64 = delta.getattr("days")?.extract()?;
    let seconds: i64 = delta.getattr("seconds")?.extract()?;
    let micros: i64 = delta.getattr("microseconds")?.extract()?;
    // A datetime that holds nanoseconds (pandas' `Timestamp`) subtracts to a timedelta
    // that holds them too (pandas' `Timedelta.nanoseconds`, 0 to 999).
    let nanos: i64 = match delta.getattr("nanoseconds") {
        Ok(nanos) => nanos.extract()?,
        Err(_) => 0,
    };
    // In 128 bits: the whole seconds alone may pass 64 bits' nanoseconds where the
    // time does not (in the second before the earliest one they hold).
    let ns = (i128::from(days) * 86_400 + i128::from(seconds)) * 1_000_000_000
        + i128::from(micros) * 1000
        + i128::from(nanos);
    i64::try_from(ns).map_err(|_| {
        PyOverflowError::new_err("the datetime is outside the range of Unix nanoseconds in 64 bits")
    })
}

/// An optional time argument.
pub fn opt_ns(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    value.filter(|v| !v.is_none()).map(to_ns).transpose()
}

/// A timezone-aware UTC `datetime` for `ns` (microseconds: the nanoseconds are cut).
pub fn to_datetime(py: Python<'_>, ns: i64) -> PyResult<Bound<'_, PyAny>> {
    let epoch = epoch(py)?;
    let seconds = ns.div_euclid(1_000_000_000);
    let micros = ns.rem_euclid(1_000_000_000) / 1000;
    let delta = epoch.timedelta.bind(py).call((0, seconds, micros), None)?;
    epoch.epoch.bind(py).call_method1("__add__", (delta,))
}
