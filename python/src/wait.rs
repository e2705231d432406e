//! Waiting for new events with the GIL released, in slices short enough that Ctrl-C
//! (`KeyboardInterrupt`) and other signals are seen within a tenth of a second.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Events read (and converted) per release of the GIL.
pub const BATCH: usize = 4096;

/// How long one wait lasts at most before the signals are checked.
const SLICE: Duration = Duration::from_millis(100);

/// A follower's wait: for ever, or until `timeout` passes with no new event.
pub struct Wait {
    timeout: Option<Duration>,
}

impl Wait {
    /// A wait that ends after `timeout` without an event (`None`: never).
    pub fn new(timeout: Option<Duration>) -> Self {
        Self { timeout }
    }

    /// The next event from `next(slice)` (which waits up to `slice` for one), or `None`
    /// once the timeout passed without one.
    ///
    /// # Errors
    /// The store's error as `error` makes it an exception, or the exception a signal
    /// handler raised.
    pub fn next<T: Send>(
        &mut self,
        py: Python<'_>,
        error: impl Fn(evstream::Error) -> PyErr,
        mut next: impl FnMut(Duration) -> evstream::Result<Option<T>> + Send,
    ) -> PyResult<Option<T>> {
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            if let Some(event) = py.detach(|| next(slice)).map_err(&error)? {
                return Ok(Some(event));
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }
}
