//! Async followers of evstream logs and stream files, for tokio services.
//!
//! [`LogFollower`] and [`StreamFollower`] are [`Stream`](futures_core::Stream)s of owned
//! [`Event`]s (timestamp, payload as [`Bytes`](bytes::Bytes), position, next position)
//! that wait for a writer in this or another process without a thread of their own: a
//! follower that has caught up takes a [`WaitTicket`](evstream::WaitTicket) (registered
//! on the stream's futex, as a blocking follower does before it sleeps) and parks it with
//! its task's waker in a [`WaitPool`], a few threads that each sleep on the tickets of up
//! to 127 followers at once and wake their tasks when the writer publishes. Followers are
//! cancel safe: dropping a `next()` future loses no event.
//!
//! [`commit_cursor`] saves a log's named cursor without blocking the runtime.
//!
//! # Examples
//! ```
//! use evstream::{LogOptions, LogReader, LogWriter};
//! use evstream_tokio::{LogFollower, commit_cursor};
//! use futures_util::StreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> evstream::Result<()> {
//! # let dir = tempfile::tempdir().expect("temporary directory");
//! # let path = dir.path().join("app");
//! let mut log = LogWriter::create(&path, LogOptions::default())?;
//! let producer = std::thread::spawn(move || -> evstream::Result<()> {
//!     for reading in ["temp=21.5", "temp=21.7"] {
//!         log.append_now(reading.as_bytes())?;
//!     }
//!     Ok(())
//! });
//! let reader = LogReader::open(&path)?;
//! let mut events = LogFollower::new(reader.iter_cursor("billing")?);
//! for expected in ["temp=21.5", "temp=21.7"] {
//!     let event = events.next().await.expect("a follower never ends by itself")?;
//!     assert_eq!(&event.payload[..], expected.as_bytes());
//!     commit_cursor(&reader, "billing", event.next_position).await?;
//! }
//! producer.join().expect("producer")?;
//! # Ok(())
//! # }
//! ```

mod follow;
mod pool;

pub use follow::{Event, LogFollower, StreamFollower};
pub use pool::WaitPool;

use evstream::{LogReader, Position, Result};

/// Saves `position` durably as `reader`'s log's cursor `name`
/// ([`LogReader::commit_cursor`]) on tokio's blocking threads, so that its fsyncs do not
/// stall the runtime; awaited outside a tokio runtime (another executor), on a thread
/// of its own.
///
/// The commit is not cancelled with its future: dropped before it is ready, the commit
/// still completes (an earlier position committed so may then land after a later one).
///
/// # Errors
/// As [`LogReader::commit_cursor`]; [`Error::Io`](evstream::Error::Io) if the blocking
/// task could not run (the runtime shutting down, or no thread to be had).
pub async fn commit_cursor(reader: &LogReader, name: &str, position: Position) -> Result<()> {
    let (reader, name) = (reader.clone(), name.to_owned());
    let dir = reader.dir().to_owned();
    let failed = |dir, e: &dyn std::fmt::Display| {
        Err(evstream::Error::Io {
            op: "commit a cursor in",
            path: dir,
            source: std::io::Error::other(e.to_string()),
        })
    };
    let commit = move || reader.commit_cursor(&name, position);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(commit)
            .await
            .unwrap_or_else(|e| failed(dir, &e)),
        Err(_) => {
            let (send, receive) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("evstream-commit".into())
                .spawn(move || {
                    let _ = send.send(commit());
                });
            if let Err(e) = spawned {
                return failed(dir, &e);
            }
            receive.await.unwrap_or_else(|e| failed(dir, &e))
        }
    }
}
