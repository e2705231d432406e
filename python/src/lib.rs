//! The `evstream` Python module: logs and stream files from Python, a thin layer over the
//! store that converts values, releases the GIL while it reads, waits and flushes, and
//! raises the store's errors as exception classes (`evstream.Error` and one subclass per
//! variant). `pip install ./python` builds it with maturin; `python/evstream.pyi` types it.

mod columns;
mod errors;
mod event;
mod log;
mod process;
mod stream;
mod time;
mod wait;

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors::IntoPy;

/// Reads every event of the log directory or stream file `path` with the store's
/// verified iterator (checksums and order), touching each payload, and returns how many
/// there were. No Python object is made per event: this is the Rust side of
/// `python/bench.py`'s comparison.
#[pyfunction]
fn _count_verified(py: Python<'_>, path: PathBuf) -> PyResult<u64> {
    py.detach(|| -> evstream::Result<u64> {
        let mut count = 0u64;
        let mut bytes = 0u64;
        if path.is_dir() {
            for event in evstream::LogReader::open(&path)?.iter()? {
                let event = event?;
                bytes =
                    bytes.wrapping_add(u64::from(event.payload().first().copied().unwrap_or(0)));
                count += 1;
            }
        } else {
            let reader = evstream::StreamReader::open(&path)?;
            for event in reader.iter() {
                let event = event?;
                bytes =
                    bytes.wrapping_add(u64::from(event.payload().first().copied().unwrap_or(0)));
                count += 1;
            }
        }
        std::hint::black_box(bytes);
        Ok(count)
    })
    .py_err(&path)
}

#[pymodule(name = "evstream")]
fn evstream_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<log::PyLogWriter>()?;
    module.add_class::<log::PyLogReader>()?;
    module.add_class::<log::PyLogIterator>()?;
    module.add_class::<log::LogStat>()?;
    module.add_class::<log::Lag>()?;
    module.add_class::<stream::PyStreamWriter>()?;
    module.add_class::<stream::PyStreamReader>()?;
    module.add_class::<stream::PyStreamIterator>()?;
    module.add_class::<stream::StreamStat>()?;
    module.add_class::<event::Event>()?;
    module.add_function(wrap_pyfunction!(_count_verified, module)?)?;
    errors::register(module)?;
    Ok(())
}
