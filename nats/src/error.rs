//! The error type of shipping and pulling.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a ship or a pull.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local stream or log failed (open, read, append, flush).
    #[error(transparent)]
    Store(#[from] evstream::Error),

    /// No server of the list could be reached when connecting for the first time.
    ///
    /// Check the URL, that the server runs, and the network. Once connected, a lost
    /// connection is retried with backoff instead.
    #[error("cannot reach NATS at {servers}: {reason}")]
    Unreachable {
        /// The server URLs, comma-separated.
        servers: String,
        /// What the client reported.
        reason: String,
    },

    /// The server refused the credentials (user and password, credentials file).
    #[error("NATS at {servers} refused the credentials: {reason}")]
    Unauthorized {
        /// The server URLs, comma-separated.
        servers: String,
        /// What the server said.
        reason: String,
    },

    /// A connection option is unusable: a credentials file that cannot be read, a
    /// malformed URL.
    #[error("bad connection option: {0}")]
    BadOption(String),

    /// A JetStream request failed for good (the stream does not exist and was not to be
    /// created, the account has no JetStream, a configuration the server refuses).
    #[error("JetStream: {what}: {reason}")]
    JetStream {
        /// What was being done.
        what: String,
        /// What the server or client reported.
        reason: String,
    },

    /// A message pulled from JetStream cannot be stored as an event.
    #[error("message {sequence} of JetStream stream {stream}: {reason}")]
    BadMessage {
        /// The JetStream stream.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// Why it cannot be stored.
        reason: String,
    },

    /// A state file (a ship cursor or a pull record) could not be read or written.
    #[error("state file {}: {reason}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl Error {
    pub(crate) fn jetstream(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn state(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::State {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
