//! Where shipped events come from: a stream file or a log, read from a position and
//! followed live by the async followers of `evstream-tokio`, whose waits never block the
//! network tasks.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use evstream::{LogReader, Position, StreamReader};
use evstream_tokio::{Event, LogFollower, StreamFollower};
use futures_util::StreamExt;

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

/// What [`Follower::next_batch`] returns.
pub(crate) enum Batch {
    /// Events in order.
    Events(Vec<Outgoing>),
    /// The source's published end was reached (sent only when asked to stop there).
    End,
    /// Reading failed.
    Failed(evstream::Error),
}

/// A cursor as [`Source::cursor`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Saved {
    /// No cursor of that name.
    None,
    /// The position it holds.
    At(u64),
    /// A stream file's cursor that was saved for another file at the same path.
    Stale {
        /// The cursor file.
        file: PathBuf,
        /// Why it is not this file's.
        reason: String,
    },
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
    /// the file `FILE.ship.NAME` beside it, if it is this file's.
    ///
    /// A log's cursors live in its directory and go with it. A stream file's cursor lies
    /// beside the file and outlives it, so it names the file it was saved for:
    /// `source=` holds the file's identity (`identity`, its start timestamp in hex, the
    /// same as in its message ids), which a rename keeps and a file created anew at the
    /// path does not have. A cursor of another file is [`Saved::Stale`]. A cursor of an
    /// earlier evstream has only its `next=` line: it is taken to be this file's if it
    /// lies within the file's events (from the header's end to the published end), and
    /// stale otherwise; the next commit names the file.
    pub fn cursor(&self, name: &str, identity: &str) -> Result<Saved> {
        match self {
            Self::Stream(path) => {
                let file = stream_cursor_path(path, name);
                let Some(text) = state::read(&file)? else {
                    return Ok(Saved::None);
                };
                let field = state::fields(&text);
                let next: u64 = field("next")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Error::state(&file, "no `next=POSITION` line"))?;
                let stale = |reason: String| {
                    Ok(Saved::Stale {
                        file: file.clone(),
                        reason,
                    })
                };
                match field("source") {
                    Some(saved) if saved == identity => Ok(Saved::At(next)),
                    Some(saved) => stale(format!(
                        "it was saved for another stream file at this path (identity {saved}; \
                         this one's is {identity}: the file was created again since)"
                    )),
                    None => {
                        let end = StreamReader::open(path)?.write_offset();
                        let first = evstream::format::STREAM_HEADER_LEN;
                        if (first..=end).contains(&next) {
                            Ok(Saved::At(next))
                        } else {
                            stale(format!(
                                "its position {next} lies outside this file's events ({first} \
                                 to {end}): it was saved for an earlier file at this path"
                            ))
                        }
                    }
                }
            }
            Self::Log(dir) => Ok(LogReader::open(dir)?
                .cursor(name)?
                .map_or(Saved::None, |p| Saved::At(p.as_u64()))),
        }
    }

    /// Saves `position` durably as cursor `name`; a stream file's names the file by
    /// `identity` (see [`cursor`](Self::cursor)).
    pub fn commit_cursor(&self, name: &str, position: u64, identity: &str) -> Result<()> {
        match self {
            Self::Stream(path) => state::write_atomic(
                &stream_cursor_path(path, name),
                &format!("next={position}\nsource={identity}\n"),
            ),
            Self::Log(dir) => {
                Ok(LogReader::open(dir)?.commit_cursor(name, Position::from_u64(position))?)
            }
        }
    }

    /// Follows the source from `position`: an async follower of the log or stream file
    /// (`evstream-tokio`), whose waits for the writer are served by its pool of waiting
    /// threads, never by the network tasks' threads.
    pub fn follow(&self, position: u64) -> Result<Follower> {
        let inner = match self {
            Self::Stream(path) => Inner::Stream(StreamFollower::open(path, position)?),
            Self::Log(dir) => {
                let reader = LogReader::open(dir)?;
                Inner::Log(LogFollower::new(
                    reader.iter_from(Position::from_u64(position))?,
                ))
            }
        };
        Ok(Follower {
            inner,
            failed: None,
        })
    }
}

/// `FILE.ship.NAME`, the cursor file of a stream file.
fn stream_cursor_path(path: &Path, name: &str) -> PathBuf {
    let mut file = path.file_name().unwrap_or_default().to_os_string();
    file.push(format!(".ship.{name}"));
    path.with_file_name(file)
}

/// A source followed from a position; see [`Source::follow`].
pub(crate) struct Follower {
    inner: Inner,
    /// An error met after the events of the batch that came before it.
    failed: Option<evstream::Error>,
}

enum Inner {
    Stream(StreamFollower),
    Log(LogFollower),
}

impl Follower {
    /// The next batch of up to `max` events: those published now, or, if there are none
    /// and `stop_at_end` is off, waits for the next one (for ever on a finished stream
    /// file, which takes no more events). With `stop_at_end` and nothing published,
    /// [`Batch::End`]. Cancel safe.
    pub async fn next_batch(&mut self, max: usize, stop_at_end: bool) -> Batch {
        if let Some(e) = self.failed.take() {
            return Batch::Failed(e);
        }
        let mut events = Vec::new();
        if !stop_at_end {
            let first = match &mut self.inner {
                Inner::Stream(follow) => follow.next().await.map(|e| e.map(|e| outgoing(e, |p| p))),
                Inner::Log(follow) => follow
                    .next()
                    .await
                    .map(|e| e.map(|e| outgoing(e, Position::as_u64))),
            };
            match first {
                Some(Ok(event)) => events.push(event),
                Some(Err(e)) => return Batch::Failed(e),
                None => std::future::pending().await,
            }
        }
        while events.len() < max.max(1) {
            let next = match &mut self.inner {
                Inner::Stream(follow) => follow.try_next().map(|e| e.map(|e| outgoing(e, |p| p))),
                Inner::Log(follow) => follow
                    .try_next()
                    .map(|e| e.map(|e| outgoing(e, Position::as_u64))),
            };
            match next {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) if events.is_empty() => return Batch::Failed(e),
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        if events.is_empty() {
            Batch::End
        } else {
            Batch::Events(events)
        }
    }
}

/// An event of the follower as one on its way to JetStream.
/// `number` gives a position as the number in message ids.
fn outgoing<P>(e: Event<P>, number: impl Fn(P) -> u64) -> Outgoing {
    Outgoing {
        position: number(e.position),
        next: number(e.next_position),
        timestamp: e.timestamp,
        payload: e.payload,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use evstream::StreamWriter;

    fn stream_file(path: &Path, events: usize) -> Source {
        let mut writer = StreamWriter::create(path, 1 << 20).unwrap();
        for i in 0..events {
            writer.append(i as i64, b"payload").unwrap();
        }
        writer.flush().unwrap();
        Source::open(path).unwrap()
    }

    #[test]
    fn a_stream_files_cursor_names_the_file_and_another_files_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.evs");
        let source = stream_file(&path, 10);
        let identity = source.identity().unwrap();
        assert_eq!(source.cursor("c", &identity).unwrap(), Saved::None);
        source.commit_cursor("c", 64, &identity).unwrap();
        let file = dir.path().join("app.evs.ship.c");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("next=64\nsource={identity}\n")
        );
        assert_eq!(source.cursor("c", &identity).unwrap(), Saved::At(64));

        // A rename keeps the identity (the cursor file is renamed with it).
        let moved = dir.path().join("moved.evs");
        std::fs::rename(&path, &moved).unwrap();
        std::fs::rename(&file, dir.path().join("moved.evs.ship.c")).unwrap();
        let renamed = Source::open(&moved).unwrap();
        assert_eq!(renamed.identity().unwrap(), identity);
        assert_eq!(renamed.cursor("c", &identity).unwrap(), Saved::At(64));
        std::fs::rename(&moved, &path).unwrap();
        std::fs::rename(dir.path().join("moved.evs.ship.c"), &file).unwrap();

        // A file created again at the path has another identity: the cursor is stale.
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = stream_file(&path, 3);
        let new_identity = again.identity().unwrap();
        assert_ne!(new_identity, identity);
        let Saved::Stale {
            file: stale,
            reason,
        } = again.cursor("c", &new_identity).unwrap()
        else {
            panic!("the cursor of the earlier file was taken");
        };
        assert_eq!(stale, file);
        assert!(
            reason.contains(&identity) && reason.contains(&new_identity),
            "{reason}"
        );
    }

    #[test]
    fn an_earlier_cursor_without_the_files_identity_is_read_if_it_lies_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.evs");
        let source = stream_file(&path, 10);
        let identity = source.identity().unwrap();
        let end = StreamReader::open(&path).unwrap().write_offset();
        let file = dir.path().join("app.evs.ship.c");
        for (next, saved) in [(24, Some(24)), (end, Some(end)), (end + 1, None), (0, None)] {
            std::fs::write(&file, format!("next={next}\n")).unwrap();
            let found = source.cursor("c", &identity).unwrap();
            match saved {
                Some(position) => assert_eq!(found, Saved::At(position), "next={next}"),
                None => assert!(
                    matches!(found, Saved::Stale { .. }),
                    "next={next}: {found:?}"
                ),
            }
        }
        std::fs::write(&file, "source=x\n").unwrap();
        assert!(matches!(
            source.cursor("c", &identity),
            Err(Error::State { .. })
        ));
    }
}
