//! The single-file stream: one preallocated file, one writer, any number of readers.
//!
//! [`open`] checks and opens stream files (path, header, writer lock); [`writer`] creates,
//! recovers and appends; [`reader`] iterates, seeks and follows.

pub(crate) mod open;
pub(crate) mod reader;
pub(crate) mod writer;

/// Bytes at the end of a stream file that are not part of its event area.
pub(crate) const TRAILER_LEN: u64 = 0;
