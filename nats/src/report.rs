//! What a ship or a pull tells its caller while it runs.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A progress or status report from [`ship`](crate::ship) or [`pull`](crate::pull).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// Connected (or reconnected) to a server.
    Connected,
    /// The connection was lost; the client reconnects with backoff.
    Disconnected,
    /// A server reported an error on the connection.
    ServerError(String),
    /// A failed publish or fetch; the run backs off and resumes from what JetStream holds.
    Retrying {
        /// What failed.
        reason: String,
    },
    /// Where a ship starts: the position of the first event it will publish.
    ShipStart {
        /// The position (for a stream file, the event's byte offset).
        position: u64,
        /// Why it starts there.
        from: ResumeFrom,
    },
    /// A stream file's ship cursor that was saved for another file at the same path (the
    /// file was created again since): the ship does not start from it, and its first save
    /// replaces it.
    CursorIgnored {
        /// The cursor file, `FILE.ship.NAME`.
        path: PathBuf,
        /// Why it is not this file's.
        reason: String,
    },
    /// Periodic progress of a ship: events acknowledged so far, and how far behind the
    /// source's published end it is.
    Shipped {
        /// Events acknowledged by JetStream in this run.
        events: u64,
        /// Payload bytes acknowledged in this run.
        bytes: u64,
        /// Bytes of published events not yet acknowledged.
        lag_bytes: u64,
    },
    /// Periodic progress of a pull: messages stored locally in this run.
    Pulled {
        /// Messages appended to the target in this run.
        events: u64,
        /// Messages the consumer still has pending on the server, as last reported.
        pending: u64,
    },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected => write!(f, "connected"),
            Self::Disconnected => write!(f, "disconnected; reconnecting"),
            Self::ServerError(e) => write!(f, "server error: {e}"),
            Self::Retrying { reason } => write!(f, "retrying after: {reason}"),
            Self::ShipStart { position, from } => {
                let why = match from {
                    ResumeFrom::Start => "the start of the source",
                    ResumeFrom::Cursor => "the cursor",
                    ResumeFrom::JetStream => "after the last event JetStream holds",
                };
                write!(f, "shipping from position {position} ({why})")
            }
            Self::CursorIgnored { path, reason } => {
                write!(f, "cursor {} not used: {reason}", path.display())
            }
            Self::Shipped {
                events,
                bytes,
                lag_bytes,
            } => write!(
                f,
                "shipped {events} events ({bytes} B), {lag_bytes} B behind"
            ),
            Self::Pulled { events, pending } => {
                write!(f, "pulled {events} events, {pending} pending on the server")
            }
        }
    }
}

/// Why a ship starts where it does; see [`Report::ShipStart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeFrom {
    /// Neither JetStream nor a cursor holds anything of this source.
    Start,
    /// The cursor's saved position (JetStream holds nothing later of this source).
    Cursor,
    /// Right after the last message of this source that JetStream holds.
    JetStream,
}

/// A shareable callback for [`Report`]s.
#[derive(Clone)]
pub(crate) struct Reporter(pub(crate) Arc<dyn Fn(Report) + Send + Sync>);

impl Reporter {
    pub(crate) fn new(f: impl Fn(Report) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn report(&self, report: Report) {
        (self.0)(report)
    }
}
