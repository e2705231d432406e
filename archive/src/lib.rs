//! Archiving an [`evstream`] log's sealed segments to S3-compatible object storage, and
//! reading them back.
//!
//! - [`archive_log`] uploads every sealed segment not yet archived, each with an index
//!   object, verifies each upload, and records its progress in one of the log's named
//!   cursors, which holds the log's retention until a segment is safely archived.
//! - [`ArchiveReader`] reads an archive as [`evstream::LogReader`] reads a log: events in
//!   order with the [`evstream::Position`] they had in the log, from a time (found
//!   through one listing and the indexes, then range reads: an hour of a large archive
//!   costs a handful of requests), from a position, or the last N; `stat`, `verify`
//!   and `restore` (rebuilding a local log).
//!
//! The objects are described in [`layout`]. The network code lives in this crate so that
//! the store has none.

mod error;
pub mod layout;
mod reader;
mod store;
mod upload;

pub use error::{Error, Result};
pub use reader::{
    ArchiveGap, ArchiveIter, ArchiveReader, ArchiveStat, ArchiveVerification, ArchivedEvent,
    ArchivedSegment,
};
pub use store::{Archive, Location, Settings};
pub use upload::{ArchiveOptions, ArchiveReport, DEFAULT_CURSOR, Progress, archive_log};

/// An error and its causes, as one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
