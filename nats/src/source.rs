//! Where shipped events come from: a stream file or a log, read from a position and
//! followed live on a thread of its own, so that waiting for events never blocks the
//! network tasks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use evstream::{LogReader, Position, StreamReader};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::state;

/// One event on its way to JetStream.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The event's position in its source: a stream file's byte offset, or a log's
    /// [`Position`] as a number.
    pub position: u64,
    /// The position of the event after it.
    pub next: u64,
    /// The event's timestamp, Unix nanoseconds.
    pub timestamp: i64,
    /// The payload, copied out of the mapping.
    pub payload: Bytes,
}

/// What the reading thread sends.
pub(crate) enum Batch {
    /// Events in order.
    Events(Vec<Outgoing>),
    /// The source's published end was reached (sent only when asked to stop there).
    End,
    /// Reading failed.
    Failed(evstream::Error),
}

/// A stream file or a log directory as a source of events.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A single stream file.
    Stream(PathBuf),
    /// A log directory.
    Log(PathBuf),
}

impl Source {
    /// A log if `path` is a directory, else a stream file; checked by opening it.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            LogReader::open(path)?;
            Ok(Self::Log(path.to_owned()))
        } else {
            StreamReader::open(path)?;
            Ok(Self::Stream(path.to_owned()))
        }
    }

    /// What identifies this source in message ids, so that a source recreated at the
    /// same path gets new ones: a stream's start timestamp; for a log, the creation time
    /// and inode of its settings file, which is written once when the log is created.
    pub fn identity(&self) -> Result<String> {
        match self {
            Self::Stream(path) => Ok(format!(
                "{:016x}",
                StreamReader::open(path)?.start_timestamp()
            )),
            Self::Log(dir) => {
                use std::os::unix::fs::MetadataExt;
                let settings = dir.join("LOG");
                let meta = std::fs::metadata(&settings).map_err(|e| evstream::Error::Io {
                    op: "stat",
                    path: settings.clone(),
                    source: e,
                })?;
                let born = meta
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(
                        meta.mtime_nsec() as u128 + meta.mtime() as u128 * 1_000_000_000,
                        |d| d.as_nanos(),
                    );
                Ok(format!("L{:x}-{:x}", born, meta.ino()))
            }
        }
    }

    /// The first position of the source.
    pub fn first_position(&self) -> Result<u64> {
        match self {
            Self::Stream(_) => Ok(evstream::format::STREAM_HEADER_LEN),
            Self::Log(dir) => Ok(LogReader::open(dir)?.start()?.as_u64()),
        }
    }

    /// Bytes of published events at or after `position`.
    pub fn lag_bytes(&self, position: u64) -> Result<u64> {
        match self {
            Self::Stream(path) => Ok(StreamReader::open(path)?
                .write_offset()
                .saturating_sub(position)),
            Self::Log(dir) => Ok(LogReader::open(dir)?
                .lag(Position::from_u64(position))?
                .bytes),
        }
    }

    /// The saved position of cursor `name`: a log's named cursor, or for a stream file
    /// the file `FILE.ship.NAME` beside it.
    pub fn cursor(&self, name: &str) -> Result<Option<u64>> {
        match self {
            Self::Stream(path) => {
                let file = stream_cursor_path(path, name);
                let Some(text) = state::read(&file)? else {
                    return Ok(None);
                };
                state::fields(&text)("next")
                    .and_then(|n| n.parse().ok())
                    .map(Some)
                    .ok_or_else(|| Error::state(&file, "no `next=POSITION` line"))
            }
            Self::Log(dir) => Ok(LogReader::open(dir)?.cursor(name)?.map(Position::as_u64)),
        }
    }

    /// Saves `position` durably as cursor `name`.
    pub fn commit_cursor(&self, name: &str, position: u64) -> Result<()> {
        match self {
            Self::Stream(path) => state::write_atomic(
                &stream_cursor_path(path, name),
                &format!("next={position}\n"),
            ),
            Self::Log(dir) => {
                Ok(LogReader::open(dir)?.commit_cursor(name, Position::from_u64(position))?)
            }
        }
    }

    /// Starts a thread that reads events from `position` and sends them in batches of up
    /// to `batch` events, following the source; with `stop_at_end`, it sends
    /// [`Batch::End`] once it has sent everything published when it got there. The thread
    /// ends when the receiver is dropped.
    pub fn spawn(
        &self,
        position: u64,
        batch: usize,
        stop_at_end: bool,
    ) -> Result<mpsc::Receiver<Batch>> {
        let (tx, rx) = mpsc::channel(4);
        let batch = batch.max(1);
        let spawned = match self {
            Self::Stream(path) => {
                let mut reader = StreamReader::open(path)?;
                std::thread::Builder::new()
                    .name("evstream-ship-reader".into())
                    .spawn(move || {
                        read_loop(&tx, position, stop_at_end, |from| {
                            read_stream_batch(&mut reader, from, batch, stop_at_end)
                        })
                    })
            }
            Self::Log(dir) => {
                let reader = LogReader::open(dir)?;
                std::thread::Builder::new()
                    .name("evstream-ship-reader".into())
                    .spawn(move || {
                        read_loop(&tx, position, stop_at_end, |from| {
                            read_log_batch(&reader, from, batch, stop_at_end)
                        })
                    })
            }
        };
        spawned.map_err(|e| evstream::Error::Io {
            op: "spawn the reading thread for",
            path: self.path().to_owned(),
            source: e,
        })?;
        Ok(rx)
    }

    fn path(&self) -> &Path {
        match self {
            Self::Stream(path) | Self::Log(path) => path,
        }
    }
}

/// `FILE.ship.NAME`, the cursor file of a stream file.
fn stream_cursor_path(path: &Path, name: &str) -> PathBuf {
    let mut file = path.file_name().unwrap_or_default().to_os_string();
    file.push(format!(".ship.{name}"));
    path.with_file_name(file)
}

/// Sends batches read by `read` from `position` on, until the receiver goes away, the
/// end is reached (with `stop_at_end`, an empty batch), or reading fails. Without
/// `stop_at_end`, an empty batch means a wait passed with nothing new.
fn read_loop(
    tx: &mpsc::Sender<Batch>,
    mut position: u64,
    stop_at_end: bool,
    mut read: impl FnMut(u64) -> evstream::Result<Vec<Outgoing>>,
) {
    loop {
        let message = match read(position) {
            Ok(events) => match events.last() {
                Some(last) => {
                    position = last.next;
                    Batch::Events(events)
                }
                None if stop_at_end => Batch::End,
                None if tx.is_closed() => return,
                None => continue,
            },
            Err(e) => Batch::Failed(e),
        };
        let last = !matches!(message, Batch::Events(_));
        if tx.blocking_send(message).is_err() || last {
            return;
        }
    }
}

/// How long one wait for new events lasts before the reading thread looks whether its
/// receiver is still there.
const WAIT: Duration = Duration::from_millis(200);

/// Up to `max` events of a stream file from `position`. An empty result means the
/// published end was reached (with `stop_at_end`) or a wait of [`WAIT`] passed with
/// nothing new.
fn read_stream_batch(
    reader: &mut StreamReader,
    position: u64,
    max: usize,
    stop_at_end: bool,
) -> evstream::Result<Vec<Outgoing>> {
    let outgoing = |e: evstream::EventView<'_>| Outgoing {
        position: e.offset(),
        next: e.next_offset(),
        timestamp: e.timestamp(),
        payload: Bytes::copy_from_slice(e.payload()),
    };
    reader.refresh()?;
    let mut follow = reader.follow(position)?;
    collect(max, stop_at_end, outgoing, |wait| match wait {
        None => follow.try_next(),
        Some(wait) => follow.next_timeout(wait),
    })
}

/// As [`read_stream_batch`], for a log.
fn read_log_batch(
    reader: &LogReader,
    position: u64,
    max: usize,
    stop_at_end: bool,
) -> evstream::Result<Vec<Outgoing>> {
    let outgoing = |e: evstream::LogEvent| Outgoing {
        position: e.position().as_u64(),
        next: e.next_position().as_u64(),
        timestamp: e.timestamp(),
        payload: Bytes::copy_from_slice(e.payload()),
    };
    let mut iter = reader.iter_from(Position::from_u64(position))?;
    collect(max, stop_at_end, outgoing, |wait| match wait {
        None => iter.try_next(),
        Some(wait) => iter.next_timeout(wait),
    })
}

/// Up to `max` events: those published now, or, if there are none and `stop_at_end` is
/// off, those published within one [`WAIT`]. `next(None)` returns the next event if one
/// is published, `next(Some(wait))` waits up to `wait` for one.
fn collect<E>(
    max: usize,
    stop_at_end: bool,
    outgoing: impl Fn(E) -> Outgoing,
    mut next: impl FnMut(Option<Duration>) -> evstream::Result<Option<E>>,
) -> evstream::Result<Vec<Outgoing>> {
    let mut events = Vec::new();
    let mut wait = (!stop_at_end).then_some(WAIT);
    while events.len() < max {
        // Wait only for the first event of a batch; then take what is published.
        let waiting = if events.is_empty() { wait.take() } else { None };
        match next(waiting)? {
            Some(event) => events.push(outgoing(event)),
            None => break,
        }
    }
    Ok(events)
}
