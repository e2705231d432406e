//! Writers, readers and iterators belong to the process that opened them.
//!
//! After `os.fork()` the child holds a copy of each of its parent's objects, but not what
//! they stand on. A writer's background threads exist only in the parent; its `flock`,
//! and a reader's presence lock, are held through open file descriptions that parent and
//! child now share, so they are the parent's locks as much as the child's. Used in the
//! child, such an object would append under the parent's lock, into the parent's segments;
//! dropped there, its destructors would join threads that are not there (a panic, an
//! abort at exit) and unlock the parent's locks (another writer opens the stream while the
//! parent still writes; retention recycles a segment under the parent's reader).
//!
//! [`Owned`] holds such a value with the id of the process that made it. In any other
//! process it gives [`Locked`](crate::errors::Locked) instead of the value, and dropping
//! it there leaks the value: no destructor of the store runs, and the kernel closes the
//! child's descriptors when it exits, which releases no lock the parent holds through
//! its own.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;

/// A value of the store that only the process that made it may use or drop.
pub struct Owned<T> {
    /// The id of the process that made the value.
    pid: u32,
    /// The Python class of the object holding the value, for the error.
    class: &'static str,
    /// The stream file or log directory, for the error.
    path: PathBuf,
    /// Always `Some`, but for the moment [`Drop`] takes it out.
    value: Option<T>,
}

impl<T> Owned<T> {
    /// `value`, the state of a `class` object on the file `path`, owned by this process.
    pub fn new(class: &'static str, path: &Path, value: T) -> Self {
        Self {
            pid: std::process::id(),
            class,
            path: path.to_owned(),
            value: Some(value),
        }
    }

    /// The value, in the process that made it.
    ///
    /// # Errors
    /// `Locked` in any other process (a child forked since), naming the owner.
    pub fn get(&self) -> PyResult<&T> {
        let here = std::process::id();
        match &self.value {
            Some(value) if here == self.pid => Ok(value),
            _ => Err(crate::errors::opened_elsewhere(
                self.class, &self.path, self.pid, here,
            )),
        }
    }

    /// Whether this is the process that made the value.
    pub fn is_here(&self) -> bool {
        std::process::id() == self.pid
    }

    /// The stream file or log directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T> Drop for Owned<T> {
    /// Drops the value in the process that made it; leaks it in any other.
    fn drop(&mut self) {
        let value = self.value.take();
        if !self.is_here() {
            std::mem::forget(value);
        }
    }
}
