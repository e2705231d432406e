//! The single-file stream: one preallocated file, one writer, any number of readers.
//!
//! [`open`] checks and opens stream files (path, header, writer lock); [`writer`] creates,
//! recovers and appends; [`shared`] shares a writer between threads; [`reader`] iterates, seeks and follows;
//! [`wait`] lets one thread sleep for many followers.

pub(crate) mod open;
pub(crate) mod reader;
pub(crate) mod shared;
pub(crate) mod upgrade;
pub(crate) mod wait;
pub(crate) mod writer;
