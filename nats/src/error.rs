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

    /// A subject `ship` cannot publish on: a wildcard (`*`, `>`), an empty token (`a..b`,
    /// `.a`, `a.`), whitespace, or nothing at all.
    ///
    /// Name one concrete subject, such as `app.events`.
    #[error("subject {subject:?} cannot be published on: {reason}")]
    BadSubject {
        /// The subject as given.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The JetStream stream named for a ship does not take its subject: none of the
    /// stream's subjects (or, for a stream without any, its name) matches it, so every
    /// publish would find no stream.
    ///
    /// Ship to a subject of that stream, or name the stream whose subjects take it (or
    /// leave `--stream` out: the stream that takes the subject is found by it).
    #[error(
        "JetStream stream {stream} does not take subject {subject} (its subjects: {}); ship \
         to one of its subjects, or name the stream that takes {subject}",
        subjects.join(", ")
    )]
    SubjectNotInStream {
        /// The JetStream stream.
        stream: String,
        /// The subject given to ship on.
        subject: String,
        /// The subjects the stream takes.
        subjects: Vec<String>,
    },

    /// An event too large to be one message: the server's `max_payload` (1 MiB by
    /// default), or the JetStream stream's `max_msg_size`, is below its payload and
    /// headers. No retry can publish it, and the ship cannot go past it.
    ///
    /// Raise the limit (`max_payload` in the server's configuration, the stream's
    /// maximum message size), then ship again: it resumes with this event.
    #[error(
        "the event at position {position} ({size} B of payload) is too large to publish: \
         {reason}; raise the server's max_payload or the stream's maximum message size"
    )]
    TooLarge {
        /// The event's position in the source.
        position: u64,
        /// Its payload's length.
        size: u64,
        /// What the client or the server said.
        reason: String,
    },

    /// A message that this ship did not publish stands where its own must be: the last
    /// message on the subject, or a later message in the same JetStream stream.
    ///
    /// `ship` resumes after its own last message and states it as the one each publish
    /// must follow, so it cannot go on after someone else's. Give the source a subject
    /// (and a JetStream stream) that nothing else publishes to, or remove the message.
    #[error("{0}")]
    ForeignMessage(Box<ForeignMessage>),

    /// The target was pulled from another JetStream stream than the one pulled now: a
    /// stream of another name, or one of the same name that was deleted and made again
    /// (JetStream gave it another creation time).
    ///
    /// The pull record beside the target counts in the stream sequences of the stream it
    /// was written for; in another stream they name other messages, so the pull appends
    /// nothing. Pull into a new target, or remove the record to append the stream's
    /// messages from its first.
    #[error("{0}")]
    OtherStream(Box<OtherStream>),

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

/// The message in the way of a ship; see [`Error::ForeignMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForeignMessage {
    /// The JetStream stream.
    pub stream: String,
    /// The message's subject.
    pub subject: String,
    /// Its stream sequence.
    pub sequence: u64,
    /// Its `Nats-Msg-Id` header, if it has one.
    pub id: Option<String>,
    /// The source being shipped.
    pub path: PathBuf,
    /// The source's identity, with which the ids of its messages start.
    pub identity: String,
}

impl std::fmt::Display for ForeignMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "JetStream stream {} holds at sequence {} a message on {} (",
            self.stream, self.sequence, self.subject
        )?;
        match &self.id {
            Some(id) => write!(f, "Nats-Msg-Id {id}")?,
            None => write!(f, "no Nats-Msg-Id")?,
        }
        write!(
            f,
            ") that this ship of {} did not publish (its ids start {}:); ship needs a subject \
             and a JetStream stream that nothing else publishes to",
            self.path.display(),
            self.identity
        )
    }
}

/// The pull record and the stream it does not belong to; see [`Error::OtherStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtherStream {
    /// The pull record.
    pub record: PathBuf,
    /// The JetStream stream the record was written for.
    pub pulled: String,
    /// When that stream was created (RFC 3339, as JetStream reported it).
    pub pulled_created: String,
    /// The JetStream stream pulled now.
    pub stream: String,
    /// When it was created.
    pub created: String,
}

impl std::fmt::Display for OtherStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pull record {} was written pulling JetStream stream {} created {}, ",
            self.record.display(),
            self.pulled,
            self.pulled_created
        )?;
        if self.pulled == self.stream {
            write!(
                f,
                "but stream {} was created {}: it was deleted and made again",
                self.stream, self.created
            )?;
        } else {
            write!(f, "not stream {} (created {})", self.stream, self.created)?;
        }
        write!(
            f,
            ", and the sequences the record holds are not its own; pull into a new target, \
             or remove the record to append the stream from its first message"
        )
    }
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
