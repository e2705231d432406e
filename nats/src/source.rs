//! Where shipped events come from: a stream file read from a position, following it live,
//! on a thread of its own so that waiting for events never blocks the network tasks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use evstream::StreamReader;
use tokio::sync::mpsc;

use crate::error::Result;

/// One event on its way to JetStream.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The event's position in its source (a stream file: its byte offset).
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

/// A stream file as a source of events.
#[derive(Debug, Clone)]
pub(crate) struct StreamSource {
    path: PathBuf,
}

impl StreamSource {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// The identity of the stream, used in message ids: its start timestamp in hex, so a
    /// stream recreated at the same path gets new ids.
    pub fn identity(&self) -> Result<String> {
        let reader = StreamReader::open(&self.path)?;
        Ok(format!("{:016x}", reader.start_timestamp()))
    }

    /// The first position of the stream.
    pub fn first_position(&self) -> u64 {
        evstream::format::STREAM_HEADER_LEN
    }

    /// The published end position right now.
    pub fn end(&self) -> Result<u64> {
        Ok(StreamReader::open(&self.path)?.write_offset())
    }

    /// Starts a thread that reads events from `position` and sends them in batches of up
    /// to `batch` events, following the stream; with `stop_at_end`, it sends
    /// [`Batch::End`] once it has sent everything published when it got there. The thread
    /// ends when the receiver is dropped.
    pub fn spawn(
        &self,
        position: u64,
        batch: usize,
        stop_at_end: bool,
    ) -> Result<mpsc::Receiver<Batch>> {
        let mut reader = StreamReader::open(&self.path)?;
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("evstream-ship-reader".into())
            .spawn(move || read_loop(&mut reader, position, batch.max(1), stop_at_end, &tx))
            .map_err(|e| evstream::Error::Io {
                op: "spawn the reading thread for",
                path: self.path.clone(),
                source: e,
            })?;
        Ok(rx)
    }
}

fn read_loop(
    reader: &mut StreamReader,
    mut position: u64,
    batch: usize,
    stop_at_end: bool,
    tx: &mpsc::Sender<Batch>,
) {
    loop {
        let events = match read_batch(reader, position, batch, stop_at_end) {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.blocking_send(Batch::Failed(e));
                return;
            }
        };
        let message = match events.last() {
            Some(last) => {
                position = last.next;
                Batch::Events(events)
            }
            None => Batch::End,
        };
        let end = matches!(message, Batch::End);
        if tx.blocking_send(message).is_err() || end {
            return;
        }
    }
}

/// Up to `max` events from `position`; waits for at least one unless `stop_at_end`, in
/// which case an empty result means the published end was reached.
fn read_batch(
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
    loop {
        reader.refresh()?;
        let mut events = Vec::new();
        for event in reader.iter_from(position)?.take(max) {
            events.push(outgoing(event?));
        }
        if !events.is_empty() || stop_at_end {
            return Ok(events);
        }
        let mut follow = reader.follow(position)?;
        if let Some(event) = follow.next_timeout(Duration::from_millis(200))? {
            let mut events = vec![outgoing(event)];
            while events.len() < max {
                match follow.try_next()? {
                    Some(event) => events.push(outgoing(event)),
                    None => break,
                }
            }
            return Ok(events);
        }
    }
}
