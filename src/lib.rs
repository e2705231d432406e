//! An append-only binary event store on memory-mapped files.
//!
//! The normal way to use it is a **log** ([`LogWriter`], [`LogReader`]): a directory of
//! rolling segments that grows without bound, rolls by size or by UTC-aligned interval,
//! deletes its oldest segments by size, age or count, gives every event a stable
//! [`Position`], and keeps named cursors for consumers. Each segment is a **stream**: one
//! preallocated file of fixed capacity, a 24-byte header, then events packed back to
//! back, each a 16-byte header (timestamp, size, CRC-32) and its payload, and at the end
//! a trailer (format version 2) with a magic number, the durable watermark (how far a
//! flush put events on stable storage), a recovery generation and a sealed flag. One
//! [`StreamWriter`] per file appends and publishes events; any number of
//! [`StreamReader`]s, in the same process or others, iterate zero-copy [`EventView`]s of
//! the published events, also while the writer appends. A single stream file can be
//! used on its own. The byte layout is specified in `docs/FORMAT.md` and implemented in
//! [`format`](mod@format).
//!
//! A program that logs from many threads shares one [`SharedLogWriter`] between them
//! (`Clone`, `Send`, `Sync`, `&self` appends): each append all or nothing, the log's
//! order the order the appends took their turn, [`append_now`](SharedLogWriter::append_now)
//! timestamps never decreasing in it, and a group-commit
//! [`flush`](SharedLogWriter::flush) that covers every append returned before it, from
//! any thread, with one sync for all the threads waiting on it. Processes that each
//! [`open`](SharedLogWriter::open) one on the same log take turns holding its writer, and
//! one killed at any instant costs the others no event whose append returned.
//! A single stream file is shared between threads and processes the same way through
//! [`SharedStreamWriter`]s, with the same promises, group commit and turns.
//!
//! ```
//! # fn main() -> evstream::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sensors");
//! use evstream::{LogOptions, LogReader, LogWriter};
//!
//! let mut log = LogWriter::create(&path, LogOptions::default().segment_size(64 << 20))?;
//! log.append(1_700_000_000_000_000_000, b"temp=21.5")?;
//! log.append_now(b"temp=21.7")?;
//! log.flush()?; // both events now survive power loss
//!
//! let reader = LogReader::open(&path)?;
//! for event in reader.iter()? {
//!     let event = event?;
//!     println!("{} {} {:?}", event.position(), event.timestamp(), event.payload());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A single stream:
//!
//! ```
//! # fn main() -> evstream::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sensors.evs");
//! use evstream::{StreamReader, StreamWriter};
//!
//! let mut writer = StreamWriter::create(&path, 64 << 20)?;
//! writer.append(1_700_000_000_000_000_000, b"temp=21.5")?;
//! writer.append_now(b"temp=21.7")?;
//! writer.flush()?; // both events now survive power loss
//!
//! let reader = StreamReader::open(&path)?;
//! for event in reader.iter() {
//!     let event = event?;
//!     println!("{} {:?}", event.timestamp(), event.payload());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Safety contract
//!
//! Readers hand out `&[u8]` views that point straight into a shared memory mapping of
//! the file, so Rust's guarantees about those views hold only while every process that
//! touches the file follows these rules. evstream's own writers and readers do; the rules
//! bind other programs and the user:
//!
//! 1. **Published bytes never change while a reader has the stream open.** Bytes between
//!    the stream header and the published write offset are written once, before they
//!    are published, and never again while any [`StreamReader`] is open, in this process
//!    or another. The one writer that rewrites published bytes, recovery of a torn tail in
//!    [`StreamWriter::open`], first takes the reader-presence lock alone (an
//!    open-file-description byte-range lock that every reader holds shared for its
//!    life); while a reader is open it is refused with [`Error::ReadersPresent`] and
//!    changes nothing. So an [`EventView`] never changes under its borrow. (On platforms
//!    without OFD locks, which evstream does not target, this guarantee falls back to the
//!    generation check: [`Error::Recovered`].)
//! 2. **One writer.** Only the holder of the file's exclusive `flock` writes, and only
//!    past the published write offset (and the header's fields, atomically).
//! 3. **The file never shrinks.** A stream's length is fixed when it is created; evstream
//!    never truncates it. Another program that truncates a mapped stream makes readers and
//!    writers that touch the lost pages die with `SIGBUS`: nothing in a library can catch
//!    that.
//! 4. **Header fields are accessed atomically.** The write offset and the event count are
//!    naturally aligned 8-byte fields; the writer stores the offset with `Release` after
//!    the event's bytes, readers load it with `Acquire` before they read them, so a
//!    reader never sees a partly written event.
//!
//! 5. **Objects stay in the process that opened them.** A child made by `fork()` without
//!    `exec` shares its parent's open file descriptions, and with them the parent's
//!    `flock` and presence locks, and its parent's shared mappings, but not the parent's
//!    background threads. A writer or reader used there would append under the parent's
//!    lock, beside the parent's writer; dropped there, it would release the parent's
//!    locks (its drop unlocks explicitly) and wait for threads that do not exist. So a
//!    forked child must neither use nor drop what its parent opened: it opens its own,
//!    and leaves the parent's alone (`std::process::exit` runs no destructor of values
//!    still in scope; `std::mem::forget` leaks one). `std::process::Command` is safe:
//!    its child `exec`s at once. (The Python package enforces this itself: in a forked
//!    child every use raises `Locked` and dropping runs nothing.)
//!
//! Editing a stream file in place with another tool while evstream has it open
//! (`dd conv=notrunc`, a text editor's save) breaks rule 1 or 3. Copying it, reading it
//! and deleting it are all fine: an unlinked file stays mapped until its last user is
//! done. All `unsafe` code lives in one private module, `src/sys.rs`, each block with a
//! `// SAFETY:` comment that names the rule it relies on.
//!
//! # Durability
//!
//! An append that returned `Ok` survives a crash of the process; one covered by a
//! successful [`StreamWriter::flush`] or [`LogWriter::flush`] survives power loss and is
//! never dropped by a later recovery: damage below the durable watermark is reported as
//! corruption, not truncated. See [`StreamWriter`] and [`LogWriter`].
//!
//! # Identity
//!
//! Every open checks the trailer's magic number and format version before it trusts any
//! other byte, and a file that is not a stream ([`Error::NotAStream`]) is never changed.
//! Version 1 streams are converted with [`upgrade_v1`].
//!
//! # Platform-specific behavior
//!
//! evstream targets Linux (`posix_fallocate`, `renameat2`, `MADV_POPULATE_WRITE`,
//! `flock`) and builds on other Unix systems with fallbacks where noted.

#![deny(unsafe_op_in_unsafe_fn)]

mod commit;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
pub mod format;
mod gate;
mod log;
pub mod salvage;
pub mod stdio;
mod stream;
mod sys;
mod turn;

pub use error::{Corruption, Error, HeaderProblem, Result, Unrecognized};
pub use log::config::{LogOptions, WriteBack};
pub use log::cursor::check_cursor_name;
pub use log::position::{ParsePositionError, Position};
pub use log::reader::{Lag, LogDamage, LogEvent, LogIter, LogReader, LogStat, LogVerification};
pub use log::retention::{CursorLoss, RetentionHold, RetireReason, Retired};
pub use log::shared::SharedLogWriter;
pub use log::time::{time_of, timestamp_of};
pub use log::writer::{LogRecovery, LogWriter};
pub use stream::reader::{EventView, Events, Follow, StreamReader, Verification, WaitStrategy};
pub use stream::shared::SharedStreamWriter;
pub use stream::upgrade::upgrade_v1;
pub use stream::wait::{WaitBell, WaitTicket};
pub use stream::writer::{Prefault, Recovery, StreamWriter, WriterOptions};

/// Tests that keep threads busy take turns: run at once on a 2-core machine (the test
/// harness runs a binary's tests in parallel), they would measure the scheduler rather
/// than the code.
#[cfg(test)]
pub(crate) fn busy_threads_alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}
