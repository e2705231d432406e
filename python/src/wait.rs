//! Waiting for new events, and for an iterator another thread waits in, with the GIL
//! released, in slices short enough that Ctrl-C (`KeyboardInterrupt`) and other signals
//! are seen within a tenth of a second.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
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

/// A value that a thread may hold for a long time (an iterator waiting for new events),
/// whose other callers wait for it with the GIL released and see signals meanwhile:
/// Ctrl-C reaches a thread that waits for an iterator another thread follows.
///
/// The turn to hold the value is taken without the GIL, as a waiter woken by its release
/// takes it, so that threads sharing an iterator share its events as they did with a
/// plain mutex: the thread that let it go, back with the GIL, does not take it again
/// ahead of them every time.
pub struct Shared<T> {
    value: Mutex<T>,
    /// Whether a thread has the turn to hold `value`.
    held: Mutex<bool>,
    /// Notified when the turn is given up.
    released: Condvar,
}

/// Holds a [`Shared`] value; its drop releases the value, then gives up the turn (fields
/// drop in their order).
pub struct SharedGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    _turn: Turn<'a>,
}

/// The turn to hold a [`Shared`] value; dropping it gives it up and wakes a waiter.
struct Turn<'a> {
    held: &'a Mutex<bool>,
    released: &'a Condvar,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            *held = false;
        }
        self.released.notify_one();
    }
}

impl<T: Send> Shared<T> {
    pub fn new(value: T) -> Self {
        Self {
            value: Mutex::new(value),
            held: Mutex::new(false),
            released: Condvar::new(),
        }
    }

    /// The value, once no other thread holds it, waited for with the GIL released.
    ///
    /// # Errors
    /// The exception a signal handler raised while waiting (`KeyboardInterrupt`), or
    /// `poisoned()` if a holder panicked.
    pub fn lock(
        &self,
        py: Python<'_>,
        poisoned: impl Fn() -> PyErr,
    ) -> PyResult<SharedGuard<'_, T>> {
        // Uncontended: the turn at once, without releasing the GIL.
        let free = match self.held.try_lock() {
            Ok(mut held) if !*held => {
                *held = true;
                true
            }
            _ => false,
        };
        if !free {
            loop {
                let taken = py.detach(|| {
                    let held = self.held.lock().map_err(|_| ())?;
                    let (mut held, _) = self
                        .released
                        .wait_timeout_while(held, SLICE, |held| *held)
                        .map_err(|_| ())?;
                    if *held {
                        return Ok(false);
                    }
                    *held = true;
                    Ok(true)
                });
                match taken {
                    Ok(true) => break,
                    Ok(false) => py.check_signals()?,
                    Err(()) => return Err(poisoned()),
                }
            }
        }
        let turn = Turn {
            held: &self.held,
            released: &self.released,
        };
        // With the turn, no other thread holds `value`.
        let guard = self.value.lock().map_err(|_| poisoned())?;
        Ok(SharedGuard { guard, _turn: turn })
    }
}

impl<T> Deref for SharedGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
