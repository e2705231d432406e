//! Shipping: follow a stream and publish each event to JetStream exactly once, in order.
//!
//! Each event becomes one message on the subject: the payload is the event's payload,
//! `Evstream-Timestamp` carries its timestamp (Unix nanoseconds) and `Evstream-Next` the
//! position after it, and `Nats-Msg-Id` is `SOURCE:POSITION`, unique to the event.
//! Publishes are pipelined, at most `window` awaiting their acknowledgement. Every
//! publish but the first of a run states the id of the message it must follow
//! (`Nats-Expected-Last-Msg-Id`), so JetStream refuses a message whose predecessor did not
//! arrive: the stream never has a gap or a reordering. The first states the stream's
//! last sequence (`Nats-Expected-Last-Sequence`), which JetStream keeps through a
//! restart, whereas it forgets the last message id once that message is older than the
//! duplicate window. After a refusal, a lost connection
//! or a restart, the ship asks JetStream for the last message on the subject and resumes
//! right after it; resent messages that JetStream already holds are dropped by its
//! duplicate window. The cursor, saved only after acknowledgements, is where a ship
//! resumes when JetStream holds nothing of this source.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamByNameError, GetStreamByNameErrorKind,
    GetStreamError, GetStreamErrorKind, PublishErrorKind,
};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::{self, stream};

use crate::connect::{Connection, backoff, retrying};
use crate::error::{Error, ForeignMessage, Result};
use crate::report::{Report, Reporter, ResumeFrom};
use crate::source::{Batch, Follower, Saved, Source};

/// Header carrying the event's timestamp, Unix nanoseconds in decimal.
pub const TIMESTAMP_HEADER: &str = "Evstream-Timestamp";
/// Header carrying the position of the event after this one in its source.
pub const NEXT_HEADER: &str = "Evstream-Next";

/// How to create the JetStream stream when it does not exist.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Replicas of each message (1 to 5; 3 survives the loss of one node).
    pub replicas: usize,
    /// Discard messages older than this (`None`: keep).
    pub max_age: Option<Duration>,
    /// Discard the oldest messages beyond this many bytes (`None`: no limit).
    pub max_bytes: Option<u64>,
    /// The window in which JetStream drops messages whose id it has seen (default 2 min;
    /// at most `max_age`, which JetStream requires, so a shorter `max_age` shortens it).
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_age: None,
            max_bytes: None,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// What to ship and where.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    source: PathBuf,
    subject: String,
    stream: Option<String>,
    create: Option<StreamSettings>,
    cursor: Option<String>,
    window: usize,
    until_end: bool,
}

impl ShipOptions {
    /// Ships `source`, a stream file or a log directory, to `subject`.
    pub fn new(source: impl Into<PathBuf>, subject: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            subject: subject.into(),
            stream: None,
            create: None,
            cursor: None,
            window: 256,
            until_end: false,
        }
    }

    /// The JetStream stream to publish into (default: the one whose subjects take
    /// `subject`, or, with [`create_stream`](Self::create_stream), one named after the
    /// subject).
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = Some(name.into());
        self
    }

    /// Creates the JetStream stream with these settings if it does not exist.
    pub fn create_stream(mut self, settings: StreamSettings) -> Self {
        self.create = Some(settings);
        self
    }

    /// Saves the position durably under this cursor name after acknowledgements, and
    /// starts from it: for a log, one of its named cursors (so retention keeps what the
    /// ship still needs, and `evstream stat` shows the ship's lag); for a stream file, the
    /// file `FILE.ship.NAME` beside it, which names the file it was saved for (its start
    /// timestamp): a cursor saved for another file at the same path (one created again
    /// since) is not used, which [`Report::CursorIgnored`] says, and the first save
    /// replaces it.
    pub fn cursor(mut self, name: impl Into<String>) -> Self {
        self.cursor = Some(name.into());
        self
    }

    /// At most this many publishes awaiting acknowledgement (default 256).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Stops once everything published when the ship catches up is acknowledged, instead
    /// of following the source forever.
    pub fn until_end(mut self, until_end: bool) -> Self {
        self.until_end = until_end;
        self
    }

    fn stream_name(&self) -> String {
        self.stream.clone().unwrap_or_else(|| {
            self.subject
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    }
}

/// What a finished ship did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipSummary {
    /// Events JetStream acknowledged in this run (duplicates included).
    pub events: u64,
    /// Of those, the ones JetStream reported as duplicates it already held.
    pub duplicates: u64,
    /// Payload bytes acknowledged.
    pub bytes: u64,
    /// The position after the last acknowledged event.
    pub position: u64,
}

/// Checks that `subject` is one concrete subject that [`ship`] can publish on: not empty,
/// tokens separated by single dots, none empty, no wildcard (`*`, `>`) and no whitespace
/// or control character.
///
/// # Errors
/// [`Error::BadSubject`], saying what is wrong.
///
/// # Examples
///
/// ```
/// assert!(evstream_nats::check_subject("app.events").is_ok());
/// assert!(evstream_nats::check_subject("app.*").is_err());
/// assert!(evstream_nats::check_subject("app..events").is_err());
/// ```
pub fn check_subject(subject: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(Error::BadSubject {
            subject: subject.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if subject.is_empty() {
        return refuse("it is empty");
    }
    if subject.contains(['*', '>']) {
        return refuse("wildcards ('*', '>') name many subjects; ship publishes on one");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("it holds whitespace or a control character");
    }
    if subject.split('.').any(str::is_empty) {
        return refuse("it has an empty token (a leading, trailing or doubled '.')");
    }
    Ok(())
}

/// Ships events until the end of the source (with [`ShipOptions::until_end`]) or
/// forever, reconnecting and resuming after failures.
///
/// At every start and after every failure the ship looks at the last message on the
/// subject. If it is not one this source published (an id of this source and its
/// `Evstream-Next` header), or a later message of another subject follows it in the
/// JetStream stream, the ship stops with [`Error::ForeignMessage`] before publishing
/// anything more: it could neither resume after that message nor publish behind it.
///
/// # Errors
/// [`Error::BadSubject`] if the subject is not one concrete subject (see
/// [`check_subject`]); [`Error::SubjectNotInStream`] if the JetStream stream named (or
/// created before, with other subjects) does not take the subject, found at the start
/// before anything is published; [`Error::ForeignMessage`] if the subject's or the JetStream
/// stream's last message is not this source's;
/// [`Error::TooLarge`] for an event too large to be one message, once the events before
/// it are acknowledged;
/// [`Error::Unreachable`] or [`Error::Unauthorized`] if the first connection fails;
/// [`Error::JetStream`] if the JetStream stream is missing (and not to be created), at
/// the start or once it is gone while shipping, or refuses its configuration; [`Error::Store`] if the source cannot be read;
/// [`Error::State`] if the cursor cannot be written.
pub async fn ship(
    connection: &Connection,
    options: &ShipOptions,
    report: impl Fn(Report) + Send + Sync + 'static,
) -> Result<ShipSummary> {
    check_subject(&options.subject)?;
    let reporter = Reporter::new(report);
    let source = Source::open(&options.source)?;
    let identity = source.identity()?;
    let client = connection.connect(&reporter).await?;
    // The context holds a permit for every acknowledgement not yet awaited (5,000 by
    // default), and the pump awaits them only once `window` are in flight: with fewer
    // permits than that, a publish would wait for ever for one.
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(options.window.max(5_000))
        .build(client);
    let mut stream = open_stream(&js, options, &reporter).await?;
    if let Some(name) = &options.cursor
        && let Saved::Stale { file, reason } = source.cursor(name, &identity)?
    {
        reporter.report(Report::CursorIgnored { path: file, reason });
    }
    let mut summary = ShipSummary::default();
    let mut progress = Progress::new();
    let mut failures = 0usize;
    loop {
        let point = match resume_point(&stream, options, &source, &identity).await {
            Ok(point) => point,
            Err(Error::JetStream { what, reason }) => {
                reporter.report(Report::Retrying {
                    reason: format!("{what}: {reason}"),
                });
                let name = stream.cached_info().config.name.clone();
                if stream_gone(&js, &name).await {
                    // Deleted, or lost with a server's store: no retry brings it back.
                    if options.create.is_none() {
                        return Err(Error::jetstream(
                            format!("stream {name}"),
                            "it no longer exists (deleted, or lost with the server's store); \
                             create it, or pass --create-stream",
                        ));
                    }
                    stream = open_stream(&js, options, &reporter).await?;
                    continue;
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        summary.position = point.start;
        reporter.report(Report::ShipStart {
            position: point.start,
            from: point.from,
        });
        let run = Run {
            js: &js,
            options,
            source: &source,
            identity: &identity,
            reporter: &reporter,
        };
        match run
            .pump(
                point.start,
                point.last_sequence,
                &mut summary,
                &mut progress,
            )
            .await
        {
            Ok(()) => return Ok(summary),
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(reason)) => {
                reporter.report(Report::Retrying { reason });
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// The JetStream stream, created if asked.
async fn open_stream(
    js: &jetstream::Context,
    options: &ShipOptions,
    reporter: &Reporter,
) -> Result<stream::Stream> {
    let name = options.stream_name();
    if let Some(settings) = &options.create {
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![options.subject.clone()],
            num_replicas: settings.replicas,
            max_age: settings.max_age.unwrap_or_default(),
            max_bytes: settings
                .max_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(-1),
            // JetStream refuses a duplicate window longer than the stream keeps messages.
            duplicate_window: match settings.max_age {
                Some(age) if !age.is_zero() => settings.duplicate_window.min(age),
                _ => settings.duplicate_window,
            },
            storage: stream::StorageType::File,
            ..Default::default()
        };
        return retrying(
            reporter,
            &format!("create stream {name}"),
            || js.get_or_create_stream(config.clone()),
            |e: &CreateStreamError| {
                matches!(
                    e.kind(),
                    CreateStreamErrorKind::TimedOut
                        | CreateStreamErrorKind::JetStreamUnavailable
                        | CreateStreamErrorKind::Response
                )
            },
        )
        .await;
    }
    let found = match &options.stream {
        Some(_) => name,
        None => {
            let what = format!(
                "find the stream of subject {} (name one, or pass --create-stream)",
                options.subject
            );
            retrying(
                reporter,
                &what,
                || js.stream_by_subject(options.subject.clone()),
                |e: &GetStreamByNameError| matches!(e.kind(), GetStreamByNameErrorKind::Request),
            )
            .await?
        }
    };
    retrying(
        reporter,
        &format!("stream {found} (create it, or pass --create-stream)"),
        || js.get_stream(&found),
        |e: &GetStreamError| matches!(e.kind(), GetStreamErrorKind::Request),
    )
    .await
}

/// Whether JetStream says that stream `name` does not exist (not merely that it could
/// not be asked).
async fn stream_gone(js: &jetstream::Context, name: &str) -> bool {
    match js.get_stream(name).await {
        Err(e) => matches!(e.kind(), GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND),
        Ok(_) => false,
    }
}

/// Where a run of the ship starts; see [`resume_point`].
struct ResumePoint {
    /// The position of the first event to publish.
    start: u64,
    /// The JetStream stream's last sequence, which the run's first publish names as the
    /// one it must follow.
    last_sequence: u64,
    /// Why it starts there.
    from: ResumeFrom,
}

/// Where to start: right after the last message of this source that JetStream holds,
/// or the cursor, whichever is later; and the stream's last sequence, which the first
/// publish must follow.
///
/// The first publish of a run names the stream sequence it must follow
/// (`Nats-Expected-Last-Sequence`), not the last message's id: JetStream keeps the
/// sequence in its store, but the last message id only in memory, rebuilt at a restart
/// from the messages of the duplicate window, so that after a restart the id of an older
/// last message is unknown to it and every publish naming one would be refused.
async fn resume_point(
    stream: &stream::Stream,
    options: &ShipOptions,
    source: &Source,
    identity: &str,
) -> Result<ResumePoint> {
    let saved = match &options.cursor {
        Some(name) => source.cursor(name, identity)?,
        None => Saved::None,
    };
    let (cursor, from) = match saved {
        Saved::At(position) => (position, ResumeFrom::Cursor),
        // Another file's cursor (reported at the start) says nothing of this one.
        Saved::None | Saved::Stale { .. } => (source.first_position()?, ResumeFrom::Start),
    };
    let last = match stream
        .get_last_raw_message_by_subject(&options.subject)
        .await
    {
        Ok(message) => Some(message),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => None,
        Err(e) => {
            return Err(Error::jetstream(
                format!("last message on {}", options.subject),
                e,
            ));
        }
    };
    // Each publish names the stream's last message as the one it must follow, so a
    // later message on another subject of the stream would refuse every publish.
    let info = stream
        .get_info()
        .await
        .map_err(|e| Error::jetstream(format!("stream info for {}", options.subject), e))?;
    check_stream_takes(&info.config, &options.subject)?;
    let last_sequence = info.state.last_sequence;
    let Some(last) = last else {
        return Ok(ResumePoint {
            start: cursor,
            last_sequence,
            from,
        });
    };
    let is_ours = |message: &StreamMessage| {
        header(&message.headers, "Nats-Msg-Id")
            .and_then(|id| id.strip_prefix(identity))
            .is_some_and(|rest| rest.starts_with(':'))
    };
    let ours = is_ours(&last);
    let next = header(&last.headers, NEXT_HEADER).and_then(|n| n.parse::<u64>().ok());
    let foreign = |message: &StreamMessage| {
        Error::ForeignMessage(Box::new(ForeignMessage {
            stream: stream.cached_info().config.name.clone(),
            subject: message.subject.to_string(),
            sequence: message.sequence,
            id: header(&message.headers, "Nats-Msg-Id").map(str::to_owned),
            path: options.source.clone(),
            identity: identity.to_owned(),
        }))
    };
    let Some(next) = next.filter(|_| ours) else {
        return Err(foreign(&last));
    };
    if last_sequence > last.sequence {
        let sequence = last_sequence;
        let later = stream
            .get_raw_message(sequence)
            .await
            .map_err(|e| Error::jetstream(format!("message {sequence}"), e))?;
        if is_ours(&later) {
            // A publish of the run that just stopped, stored after the first question:
            // ask again (ship retries JetStream errors).
            return Err(Error::jetstream(
                format!("last message on {}", options.subject),
                "one of this ship's messages arrived while looking",
            ));
        }
        return Err(foreign(&later));
    }
    Ok(if next >= cursor {
        ResumePoint {
            start: next,
            last_sequence,
            from: ResumeFrom::JetStream,
        }
    } else {
        ResumePoint {
            start: cursor,
            last_sequence,
            from,
        }
    })
}

/// Checks that the JetStream stream of `config` takes messages on `subject`: that one of
/// its subjects, wildcards included, matches it (a stream without subjects takes its
/// name).
///
/// # Errors
/// [`Error::SubjectNotInStream`], naming the stream's subjects.
fn check_stream_takes(config: &stream::Config, subject: &str) -> Result<()> {
    let subjects = if config.subjects.is_empty() {
        vec![config.name.clone()]
    } else {
        config.subjects.clone()
    };
    if subjects
        .iter()
        .any(|pattern| subject_matches(pattern, subject))
    {
        return Ok(());
    }
    Err(Error::SubjectNotInStream {
        stream: config.name.clone(),
        subject: subject.to_owned(),
        subjects,
    })
}

/// Whether NATS subject pattern `pattern` matches the concrete `subject`, token by token:
/// `*` matches any one token, a final `>` one or more.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in pattern.split('.') {
        if wanted == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(token) if wanted == "*" || wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

/// Why a run of the pump stopped early.
enum Step {
    /// Back off, ask JetStream where it stands, and go on.
    Retry(String),
    /// Give up.
    Fatal(Error),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Self::Fatal(e)
    }
}

struct Run<'a> {
    js: &'a jetstream::Context,
    options: &'a ShipOptions,
    source: &'a Source,
    identity: &'a str,
    reporter: &'a Reporter,
}

struct InFlight {
    position: u64,
    next: u64,
    bytes: u64,
    ack: jetstream::context::PublishAckFuture,
}

/// When progress was last saved and reported.
struct Progress {
    saved: Instant,
    /// The position saved last (`None`: none yet in this ship).
    position: Option<u64>,
    reported: Instant,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            saved: now,
            position: None,
            reported: now,
        }
    }
}

impl Run<'_> {
    /// Publishes from `start` on, the first publish following stream sequence
    /// `last_sequence` and each later one the message before it.
    async fn pump(
        &self,
        start: u64,
        last_sequence: u64,
        summary: &mut ShipSummary,
        progress: &mut Progress,
    ) -> Result<(), Step> {
        let mut last_id: Option<String> = None;
        let mut follower = self.source.follow(start)?;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        loop {
            let batch = match follower.next_batch(256, true).await {
                Batch::End if !self.options.until_end => {
                    // Caught up: settle what is in flight and save it, so that while the
                    // source is quiet the cursor (where a ship starts once JetStream holds
                    // nothing of this source) is not left behind acknowledged events.
                    while !in_flight.is_empty() {
                        self.settle_one(&mut in_flight, summary).await?;
                    }
                    self.quiet(&mut follower, summary.position, progress)
                        .await?
                }
                batch => batch,
            };
            let events = match batch {
                Batch::Events(events) => events,
                Batch::Failed(e) => return Err(Step::Fatal(e.into())),
                Batch::End => {
                    while !in_flight.is_empty() {
                        self.settle_one(&mut in_flight, summary).await?;
                    }
                    self.save(summary.position)?;
                    return Ok(());
                }
            };
            for event in events {
                while in_flight.len() >= self.options.window {
                    self.settle_one(&mut in_flight, summary).await?;
                }
                let id = format!("{}:{}", self.identity, event.position);
                let mut headers = HeaderMap::new();
                headers.insert(TIMESTAMP_HEADER, event.timestamp.to_string().as_str());
                headers.insert(NEXT_HEADER, event.next.to_string().as_str());
                let bytes = event.payload.len() as u64;
                let mut publish = PublishMessage::build()
                    .payload(event.payload)
                    .headers(headers)
                    .message_id(&id);
                publish = match &last_id {
                    Some(last) => publish.expected_last_message_id(last),
                    None => publish.expected_last_sequence(last_sequence),
                };
                let ack = match self
                    .js
                    .send_publish(self.options.subject.clone(), publish)
                    .await
                {
                    Ok(ack) => ack,
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        // No retry publishes it: the ship ends with the events before it
                        // acknowledged and saved.
                        while !in_flight.is_empty() {
                            self.settle_one(&mut in_flight, summary).await?;
                        }
                        self.save(summary.position)?;
                        return Err(Step::Fatal(Error::TooLarge {
                            position: event.position,
                            size: bytes,
                            reason: e.to_string(),
                        }));
                    }
                    Err(e) => return Err(Step::Retry(format!("publish: {e}"))),
                };
                in_flight.push_back(InFlight {
                    position: event.position,
                    next: event.next,
                    bytes,
                    ack,
                });
                last_id = Some(id);
            }
            self.checkpoint(summary, progress)?;
        }
    }

    /// Waits for the next events of a source that has none ready, saving `position` once
    /// the last save is a second old, if no events come first.
    async fn quiet(
        &self,
        follower: &mut Follower,
        position: u64,
        progress: &mut Progress,
    ) -> Result<Batch, Step> {
        if progress.position != Some(position) {
            let wait = Duration::from_secs(1).saturating_sub(progress.saved.elapsed());
            tokio::select! {
                batch = follower.next_batch(256, false) => return Ok(batch),
                () = tokio::time::sleep(wait) => {
                    self.save(position)?;
                    progress.saved = Instant::now();
                    progress.position = Some(position);
                }
            }
        }
        Ok(follower.next_batch(256, false).await)
    }

    /// Awaits the oldest acknowledgement.
    async fn settle_one(
        &self,
        in_flight: &mut VecDeque<InFlight>,
        summary: &mut ShipSummary,
    ) -> Result<(), Step> {
        let Some(oldest) = in_flight.pop_front() else {
            return Ok(());
        };
        let ack = oldest.ack.await.map_err(|e| {
            let code = std::error::Error::source(&e)
                .and_then(|source| source.downcast_ref::<jetstream::Error>())
                .map(jetstream::Error::error_code);
            if code == Some(jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) {
                Step::Fatal(Error::TooLarge {
                    position: oldest.position,
                    size: oldest.bytes,
                    reason: e.to_string(),
                })
            } else {
                Step::Retry(format!("acknowledgement: {e}"))
            }
        })?;
        summary.events += 1;
        summary.duplicates += u64::from(ack.duplicate);
        summary.bytes += oldest.bytes;
        summary.position = oldest.next;
        Ok(())
    }

    /// Saves the cursor and reports progress, each at most once a second.
    fn checkpoint(&self, summary: &ShipSummary, progress: &mut Progress) -> Result<(), Step> {
        if progress.saved.elapsed() >= Duration::from_secs(1) {
            self.save(summary.position)?;
            progress.saved = Instant::now();
            progress.position = Some(summary.position);
        }
        if progress.reported.elapsed() >= Duration::from_secs(5) {
            let lag_bytes = self.source.lag_bytes(summary.position)?;
            self.reporter.report(Report::Shipped {
                events: summary.events,
                bytes: summary.bytes,
                lag_bytes,
            });
            progress.reported = Instant::now();
        }
        Ok(())
    }

    fn save(&self, position: u64) -> Result<()> {
        match &self.options.cursor {
            Some(name) => self.source.commit_cursor(name, position, self.identity),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_stream_name_is_the_subject_made_valid() {
        let options = ShipOptions::new("x.evs", "app.events-2");
        assert_eq!(options.stream_name(), "app_events-2");
        assert_eq!(options.stream("EVENTS").stream_name(), "EVENTS");
    }

    #[test]
    fn a_stream_takes_the_subjects_its_patterns_match() {
        for (pattern, subject) in [
            ("app.events", "app.events"),
            ("app.*", "app.events"),
            ("*.events", "app.events"),
            ("app.>", "app.events"),
            ("app.>", "app.events.eu"),
            (">", "app"),
            ("a.*.c", "a.b.c"),
        ] {
            assert!(subject_matches(pattern, subject), "{pattern} {subject}");
        }
        for (pattern, subject) in [
            ("app.events", "app.other"),
            ("app.events", "app.events.eu"),
            ("app.events.eu", "app.events"),
            ("app.*", "app.events.eu"),
            ("app.>", "app"),
            ("a.*.c", "a.b.d"),
        ] {
            assert!(!subject_matches(pattern, subject), "{pattern} {subject}");
        }
        let config = stream::Config {
            name: "APP".into(),
            subjects: vec!["app.events".into(), "audit.>".into()],
            ..Default::default()
        };
        assert!(check_stream_takes(&config, "audit.eu.login").is_ok());
        let err = check_stream_takes(&config, "app.other").unwrap_err();
        assert!(
            matches!(&err, Error::SubjectNotInStream { stream, subject, subjects }
                if stream == "APP" && subject == "app.other" && subjects.len() == 2),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("its subjects: app.events, audit.>"),
            "{err}"
        );
        let bare = stream::Config {
            name: "BARE".into(),
            ..Default::default()
        };
        assert!(check_stream_takes(&bare, "BARE").is_ok());
        assert!(check_stream_takes(&bare, "bare").is_err());
    }

    #[test]
    fn only_one_concrete_subject_can_be_shipped_to() {
        for good in ["app", "app.events", "a-b_c.D9", "\u{e9}v\u{e9}nements.x"] {
            assert!(check_subject(good).is_ok(), "{good:?}");
        }
        for bad in [
            "", "*", ">", "w.*", "app.>", "a*", "a..b", ".a", "a.", ".", "a b", "a\tb", "a\nb",
        ] {
            let err = check_subject(bad).unwrap_err();
            assert!(
                matches!(&err, Error::BadSubject { subject, .. } if subject == bad),
                "{bad:?}: {err}"
            );
        }
    }
}
