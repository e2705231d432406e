//! An append-only binary event-stream store on a memory-mapped file.
//!
//! A stream is one preallocated file of fixed capacity: a 24-byte header, then events
//! packed back to back, each a 16-byte header (timestamp, size, CRC-32) and its payload.
//! One [`StreamWriter`] per file appends and publishes events; any number of
//! [`StreamReader`]s, in the same process or others, iterate zero-copy [`EventView`]s of
//! the published events, also while the writer appends. The byte layout is specified in
//! `docs/FORMAT.md` and implemented in [`format`](mod@format).
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
//! The safe API relies on the stream file being changed only through evstream while it is
//! mapped. In particular, another program that truncates a mapped stream makes its readers
//! and writer die with `SIGBUS` on the next access to the lost pages; evstream itself never
//! shrinks a file. Published events are never rewritten, except when
//! [`StreamWriter::open`] recovers a torn tail, which only drops events that fail their
//! checksum. The full contract is documented in the `sys` module's source.
//!
//! # Durability
//!
//! An append that returned `Ok` survives a crash of the process; one covered by a
//! successful [`StreamWriter::flush`] survives power loss. See [`StreamWriter`].
//!
//! # Platform-specific behavior
//!
//! evstream targets Linux (`posix_fallocate`, `renameat2`, `MADV_POPULATE_WRITE`,
//! `flock`) and builds on other Unix systems with fallbacks where noted.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod bench;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
#[cfg(not(feature = "failpoints"))]
mod failpoint;
mod file;
pub mod format;
mod reader;
pub mod stdio;
mod sys;
mod writer;

pub use error::{Corruption, Error, HeaderProblem, Result};
pub use reader::{EventView, Events, Follow, StreamReader, Verification};
pub use writer::{Prefault, Recovery, StreamWriter, WriterOptions};
