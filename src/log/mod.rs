//! Logs: unbounded event streams kept as a directory of rolling segments.
//!
//! A log is a directory. Each **segment** is an ordinary stream file of fixed capacity
//! (its format unchanged, see `docs/FORMAT.md`), named so that `ls` lists segments in log
//! order. One [`LogWriter`] per log appends to the newest segment and **rolls** to a
//! new one when it is full or when a roll interval (hourly, daily, any duration, aligned
//! to UTC) passes; the next segment is created, preallocated and prefaulted in the
//! background before it is needed. Any number of [`LogReader`]s iterate, follow, seek by
//! time and tail the log across segments. **Retention** deletes whole old segments by
//! total size, age and count; **named cursors** let a consumer resume after a crash.
//!
//! Modules: `segment` (names, the directory scan, the per-segment time index),
//! `writer`, `shared` (the writer many threads share), `reader`, `retention`, `cursor`, `time` (timestamps as `SystemTime`s).

pub(crate) mod config;
pub(crate) mod cursor;
pub(crate) mod position;
pub(crate) mod reader;
pub(crate) mod retention;
pub(crate) mod segment;
pub(crate) mod shared;
pub(crate) mod time;
pub(crate) mod writer;
