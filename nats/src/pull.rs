//! Pulling: a durable JetStream consumer that appends every message to a local stream,
//! timestamps preserved, each message exactly once.
//!
//! Before a batch of messages is appended, a small record beside the target is replaced
//! durably: the JetStream stream's name and creation time, the stream sequence applied
//! before the batch, the target's event count, and the batch's stream sequences. The batch is then appended and flushed, and only then
//! acknowledged. After a kill at any point, the target's event count says how much of the
//! recorded batch reached it, and so which sequence was applied last; messages up to it
//! that the server delivers again are acknowledged and skipped. Sequences count in one
//! JetStream stream: a record written pulling another (another name, or the same name
//! deleted and made again, which JetStream gives another creation time) stops the pull
//! before it appends anything.
//!
//! A message is applied only if it is the next one the stream holds after the last
//! applied: its stream sequence is the next, or the stream no longer holds any sequence
//! between the two (deleted, or removed by its limits or retention), which the pull asks
//! JetStream when the sequences jump (a message get, the first at or after the missing
//! one). A delivery lost with a dropped connection is held by the stream, so the batch is
//! applied up to it, and the consumer is positioned again right after the last applied
//! message, as after any failed fetch. Only the last applied message is acknowledged
//! (`AckPolicy::All`), never one after a missing message.
//!
//! A target that the pull creates is written under a temporary name beside it
//! (`.NAME.pulling`) and renamed into place (never over anything, the directory synced)
//! only when the pull first catches up, so that no file under the target's name is ever
//! part of a first pull; a pull cut off before that goes on with the temporary one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind, RawMessageErrorKind};
use async_nats::jetstream::{self, consumer};
use evstream::{LogOptions, LogWriter, StreamWriter};
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::connect::{Connection, backoff, retrying};
use crate::error::{Error, OtherStream, Result};
use crate::report::{Report, Reporter};
use crate::ship::TIMESTAMP_HEADER;
use crate::state;

/// What [`PullOptions::create`] and [`PullOptions::create_log`] make when the target is
/// missing.
#[derive(Debug, Clone)]
enum Create {
    Stream(u64),
    Log(LogOptions),
}

/// What to pull and where to.
#[derive(Debug, Clone)]
pub struct PullOptions {
    stream: String,
    target: PathBuf,
    consumer: String,
    create: Option<Create>,
    batch: usize,
    until_end: bool,
}

impl PullOptions {
    /// Pulls the JetStream stream `stream` into `target`, an existing log directory or
    /// stream file.
    pub fn new(stream: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        Self {
            stream: stream.into(),
            target: target.into(),
            consumer: "evstream-pull".into(),
            create: None,
            batch: 512,
            until_end: false,
        }
    }

    /// The durable consumer's name (default `evstream-pull`): letters, digits, `-` and
    /// `_` only, as JetStream requires.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// Creates the target as a stream file of this capacity if it does not exist.
    ///
    /// The file is written as `.NAME.pulling` beside the target until the pull first
    /// holds every message the consumer had (it catches up), and only then renamed to
    /// the target's name, so that a pull interrupted before that leaves no file that
    /// could pass for a whole copy; the next pull takes the temporary file up again.
    pub fn create(mut self, capacity: u64) -> Self {
        self.create = Some(Create::Stream(capacity));
        self
    }

    /// Creates the target as a log with these settings if it does not exist; like
    /// [`create`](Self::create), as a directory `.NAME.pulling` renamed into place when
    /// the pull first catches up.
    pub fn create_log(mut self, options: LogOptions) -> Self {
        self.create = Some(Create::Log(options));
        self
    }

    /// Messages fetched and appended at a time (default 512).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Stops when the stream holds no message after the last one applied, instead of
    /// waiting for more.
    pub fn until_end(mut self, until_end: bool) -> Self {
        self.until_end = until_end;
        self
    }

    /// The record of the last applied batch: `pull.CONSUMER` inside a log directory,
    /// `FILE.pull.CONSUMER` beside a stream file.
    pub fn record_path(&self) -> PathBuf {
        if self.target.is_dir() {
            return self.target.join(format!("pull.{}", self.consumer));
        }
        stream_record_path(&self.target, &self.consumer)
    }
}

/// What a finished pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullSummary {
    /// Messages appended to the target in this run.
    pub events: u64,
    /// Messages delivered again that the target already held, skipped.
    pub skipped: u64,
    /// The stream sequence of the last message the target holds.
    pub last_sequence: u64,
}

/// Which JetStream stream the sequences of a pull count in: its name and when JetStream
/// created it. JetStream keeps the creation time through restarts (it is part of the
/// stream's stored configuration); a stream deleted and made again under the same name
/// gets another, and its sequences start again at 1.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    stream: String,
    created: OffsetDateTime,
}

impl Origin {
    fn of(info: &jetstream::stream::Info) -> Self {
        Self {
            stream: info.config.name.clone(),
            created: info.created,
        }
    }

    /// The creation time as the record holds it: RFC 3339, UTC, to the nanosecond.
    fn created_text(&self) -> String {
        self.created
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.created.unix_timestamp_nanos().to_string())
    }

    /// Refuses to go on with `record`, written pulling `self`, from stream `now`.
    fn check(&self, record: &Path, now: &Self) -> Result<()> {
        if self == now {
            return Ok(());
        }
        Err(Error::OtherStream(Box::new(OtherStream {
            record: record.to_owned(),
            pulled: self.stream.clone(),
            pulled_created: self.created_text(),
            stream: now.stream.clone(),
            created: now.created_text(),
        })))
    }
}

/// The durable record of the batch being applied.
///
/// A text file of `key=value` lines: `stream=` and `created=` (the [`Origin`]: the
/// JetStream stream's name and creation time), `before=`, `base=` and `sequences=`.
/// Records of earlier versions have no `stream=` or `created=` line: the stream is then
/// taken to be the one pulled, and the next record written names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// The JetStream stream the sequences count in (`None` in earlier versions' records).
    origin: Option<Origin>,
    /// The last sequence applied before the batch.
    before: u64,
    /// The target's event count before the batch.
    base: u64,
    /// The batch's stream sequences, in order.
    sequences: Vec<u64>,
}

impl Record {
    fn parse(path: &Path, text: &str) -> Result<Self> {
        let field = state::fields(text);
        let number = |key: &str| -> Result<u64> {
            field(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::state(path, format!("no valid `{key}=` line")))
        };
        let sequences = match field("sequences") {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| s.parse::<u64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::state(path, format!("bad sequence list: {e}")))?,
        };
        let origin = match (field("stream"), field("created")) {
            (None, None) => None,
            (Some(stream), Some(created)) => Some(Origin {
                stream: stream.to_owned(),
                created: OffsetDateTime::parse(created, &Rfc3339).map_err(|e| {
                    Error::state(path, format!("bad `created=` time {created:?}: {e}"))
                })?,
            }),
            _ => {
                return Err(Error::state(
                    path,
                    "a `stream=` line without a `created=` line, or the other way round",
                ));
            }
        };
        Ok(Self {
            origin,
            before: number("before")?,
            base: number("base")?,
            sequences,
        })
    }

    fn render(&self) -> String {
        let list: Vec<String> = self.sequences.iter().map(u64::to_string).collect();
        let origin = match &self.origin {
            Some(origin) => format!(
                "stream={}\ncreated={}\n",
                origin.stream,
                origin.created_text()
            ),
            None => String::new(),
        };
        format!(
            "{origin}before={}\nbase={}\nsequences={}\n",
            self.before,
            self.base,
            list.join(",")
        )
    }

    /// The last sequence the target holds, given its event count now.
    fn applied(&self, path: &Path, count: u64) -> Result<u64> {
        let Some(done) = count.checked_sub(self.base) else {
            return Err(Error::state(
                path,
                format!(
                    "the target holds {count} events, fewer than the {} it held before the last batch",
                    self.base
                ),
            ));
        };
        match usize::try_from(done).ok().and_then(|d| d.checked_sub(1)) {
            None => Ok(self.before),
            Some(i) => self.sequences.get(i).copied().ok_or_else(|| {
                Error::state(
                    path,
                    format!(
                        "the target holds {done} events past the last batch, which had {}",
                        self.sequences.len()
                    ),
                )
            }),
        }
    }
}

/// Pulls messages into the target until the stream holds none after the last applied
/// (with [`PullOptions::until_end`]) or forever.
///
/// Each message is applied only after the one before it in the stream, so no message is
/// lost or applied twice across failures: a lost connection, a fetch cut off, deliveries
/// lost in flight. See the module documentation.
///
/// # Errors
/// [`Error::Unreachable`] or [`Error::Unauthorized`] if the first connection fails;
/// [`Error::JetStream`] if the stream does not exist, or JetStream refuses the message
/// get request that tells a message missing from the deliveries from one gone from the
/// stream (a permission the account lacks); [`Error::BadMessage`] for a message
/// that cannot be an event (its timestamp lower than the previous one's);
/// [`Error::Store`] if the target cannot be opened or written; [`Error::State`] if the
/// record beside it cannot be read or written, or contradicts the target;
/// [`Error::OtherStream`] if the record was written pulling another JetStream stream
/// (another name, or this name's stream before it was deleted and made again), at the
/// start or when the pull positions its consumer again after a failure.
pub async fn pull(
    connection: &Connection,
    options: &PullOptions,
    report: impl Fn(Report) + Send + Sync + 'static,
) -> Result<PullSummary> {
    let reporter = Reporter::new(report);
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if options.consumer.is_empty() || !options.consumer.chars().all(valid) {
        return Err(Error::BadOption(format!(
            "consumer name {:?}: use letters, digits, '-' and '_'",
            options.consumer
        )));
    }
    let (client, losses) = connection.connect_watching(&reporter).await?;
    let js = jetstream::new(client);
    let stream = retrying(
        &reporter,
        &format!("stream {}", options.stream),
        || js.get_stream(&options.stream),
        |e| matches!(e.kind(), GetStreamErrorKind::Request),
    )
    .await?;
    let origin = Origin::of(stream.cached_info());
    let (mut writer, mut temporary) = open_target(options)?;
    let mut record_path = record_of(
        &writer,
        temporary.as_deref().unwrap_or(&options.target),
        options,
    );
    let mut summary = PullSummary::default();
    let mut applied = match state::read(&record_path)? {
        Some(text) => {
            let record = Record::parse(&record_path, &text)?;
            // The sequences of another stream (or of this name's earlier stream) name
            // other messages: resuming from them would skip or repeat some.
            if let Some(pulled) = &record.origin {
                pulled.check(&record_path, &origin)?;
            }
            record.applied(&record_path, writer.event_count())?
        }
        None => 0,
    };
    summary.last_sequence = applied;

    // The local record, not the server's acknowledgement floor, says what the target
    // holds: a killed run may leave deliveries that the server only redelivers after its
    // ack wait, and acknowledging later messages would skip them. So the durable consumer
    // is positioned afresh at every start, right after the last applied sequence, and
    // again after every failure.
    let what = format!("consumer {}", options.consumer);
    let mut consumer = Some(
        retrying(
            &reporter,
            &what,
            || position(&stream, options, applied + 1),
            passing,
        )
        .await?,
    );
    let mut failures = 0usize;
    let mut last_report = std::time::Instant::now();
    loop {
        let Some(current) = &consumer else {
            // After a failure: the consumer's deliveries since the last applied message
            // may be lost, so it starts again right after it, in the same stream (not
            // one deleted and made again meanwhile). Retried for as long as the
            // connection is down, like a fetch.
            match js.get_stream(&options.stream).await {
                Ok(now) => origin.check(&record_path, &Origin::of(now.cached_info()))?,
                Err(e) if matches!(e.kind(), GetStreamErrorKind::Request) => {
                    reporter.report(Report::Retrying {
                        reason: format!("stream {}: {e}", options.stream),
                    });
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
                Err(e) => return Err(Error::jetstream(format!("stream {}", options.stream), e)),
            }
            match position(&stream, options, applied + 1).await {
                Ok(positioned) => consumer = Some(positioned),
                Err(e) if passing(&e) => {
                    reporter.report(Report::Retrying {
                        reason: format!("{what}: {e}"),
                    });
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => return Err(Error::jetstream(what, e)),
            }
            continue;
        };
        let (mut batch, failed) = fetch(current, options.batch, losses.clone()).await;
        if let Some(reason) = &failed {
            reporter.report(Report::Retrying {
                reason: format!("fetch: {reason}"),
            });
        }
        if batch.is_empty() {
            let mut again = failed.is_some();
            if again {
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff(failures)).await;
            }
            match next_stored(&stream, options, applied + 1).await {
                Ok(None) => {
                    if let Some(written) = temporary.take() {
                        writer = finish(writer, &written, &options.target)?;
                        record_path = record_of(&writer, &options.target, options);
                    }
                    if options.until_end {
                        return Ok(summary);
                    }
                }
                Ok(Some(_)) if again => {}
                Ok(Some(sequence)) => {
                    // The stream holds a message after the last applied one. If the
                    // consumer has nothing left to deliver, it delivered it already and
                    // it never arrived (in a fetch cut off by a loss not seen as one).
                    match current.get_info().await {
                        Ok(info) if info.num_pending > 0 => {}
                        Ok(_) => {
                            reporter.report(Report::Retrying {
                                reason: format!(
                                    "message {sequence} was delivered but never arrived; \
                                     fetching again from it"
                                ),
                            });
                            again = true;
                        }
                        Err(e) => {
                            reporter.report(Report::Retrying {
                                reason: format!("consumer info: {e}"),
                            });
                            again = true;
                        }
                    }
                }
                Err(Lookup::Failed(reason)) => {
                    reporter.report(Report::Retrying { reason });
                    again = true;
                }
                Err(Lookup::Refused(e)) => return Err(e),
            }
            if again {
                consumer = None;
            }
            continue;
        }
        let sequences = batch
            .iter()
            .map(|message| {
                message
                    .info()
                    .map(|info| info.stream_sequence)
                    .map_err(|e| Error::BadMessage {
                        stream: options.stream.clone(),
                        sequence: 0,
                        reason: format!("no delivery information: {e}"),
                    })
            })
            .collect::<Result<Vec<u64>>>()?;
        // The messages that follow the last applied one with none missing between.
        let mut whole = sequences.len();
        let mut from = 0;
        let mut expected = applied + 1;
        while let Some((at, sequence, missing)) = first_jump(expected, &sequences, from) {
            let verdict = match next_stored(&stream, options, missing).await {
                // Nothing between the two is in the stream any more: deleted, or
                // removed by the stream's limits or retention.
                Ok(None) => None,
                Ok(Some(stored)) if stored >= sequence => None,
                Ok(Some(stored)) => Some(format!(
                    "message {sequence} arrived while message {stored} was missing (delivered \
                     and lost); fetching again from {missing}"
                )),
                Err(Lookup::Failed(reason)) => Some(reason),
                Err(Lookup::Refused(e)) => return Err(e),
            };
            if let Some(reason) = verdict {
                reporter.report(Report::Retrying { reason });
                whole = at;
                break;
            }
            expected = sequence + 1;
            from = at + 1;
        }
        let cut = whole < batch.len();
        batch.truncate(whole);
        applied = apply(
            &mut writer,
            options,
            &origin,
            &record_path,
            applied,
            &batch,
            &mut summary,
        )?;
        summary.last_sequence = applied;
        if let Some(last) = batch.last() {
            // With AckPolicy::All, this acknowledges the messages applied, never one
            // after a missing message. A lost ack only means a redelivery, which the
            // record turns into skips.
            if let Err(e) = last.ack().await {
                reporter.report(Report::Retrying {
                    reason: format!("acknowledge: {e}"),
                });
            }
        }
        if cut || failed.is_some() {
            consumer = None;
        } else {
            failures = 0;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            let pending = batch
                .last()
                .and_then(|m| m.info().ok())
                .map_or(0, |i| i.pending);
            reporter.report(Report::Pulled {
                events: summary.events,
                pending,
            });
            last_report = std::time::Instant::now();
        }
    }
}

/// Whether a consumer request failed for a reason that may pass (a lost connection, a
/// timeout while a cluster elects a leader).
fn passing(e: &ConsumerError) -> bool {
    matches!(
        e.kind(),
        ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request | ConsumerErrorKind::Other
    )
}

/// The durable consumer, made afresh to deliver from stream sequence `start` on: the one
/// of that name deleted (if any), and created again with every message acknowledged
/// explicitly (`AckPolicy::All`: an acknowledgement covers the messages before it).
async fn position(
    stream: &jetstream::stream::Stream,
    options: &PullOptions,
    start: u64,
) -> std::result::Result<consumer::PullConsumer, ConsumerError> {
    match stream.delete_consumer(&options.consumer).await {
        Ok(_) => {}
        // Nothing to reset: the first pull under this name.
        Err(e)
            if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(e) => return Err(e),
    }
    let config = consumer::pull::Config {
        durable_name: Some(options.consumer.clone()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start,
        },
        ..Default::default()
    };
    stream.create_consumer(config).await
}

/// One fetch of up to `max` messages, and why it ended early if it did: a failed request,
/// or a connection lost meanwhile (a change of `losses`), after which the server's
/// deliveries to it may be lost. A loss the client has not seen yet may also end a fetch
/// early without an error: what arrived is what the caller checks.
async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
    mut losses: watch::Receiver<u64>,
) -> (Vec<jetstream::Message>, Option<String>) {
    losses.mark_unchanged();
    let fetched = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_millis(500))
        .messages()
        .await;
    let mut messages = match fetched {
        Ok(messages) => messages,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(Ok(message)) => batch.push(message),
                Some(Err(e)) => return (batch, Some(e.to_string())),
                None => return (batch, None),
            },
            _ = losses.changed() => return (batch, Some("the connection was lost".into())),
        }
    }
}

/// Why [`next_stored`] has no answer.
enum Lookup {
    /// The request failed (a lost connection, a timeout): ask again later.
    Failed(String),
    /// JetStream refused it (a permission it lacks): the pull cannot tell lost messages
    /// from gone ones.
    Refused(Error),
}

/// The sequence of the first message the stream holds at or after `sequence`, on any
/// subject (`None` if there is none): a message get request with `next_by_subj` `>`.
///
/// What the stream no longer holds (deleted, or removed by its limits or retention) is
/// gone for every reader, and a pull passes over it; a message it holds that the
/// consumer's deliveries skipped was lost on the way, and is fetched again.
async fn next_stored(
    stream: &jetstream::stream::Stream,
    options: &PullOptions,
    sequence: u64,
) -> std::result::Result<Option<u64>, Lookup> {
    match stream.get_first_raw_message_by_subject(">", sequence).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(e) => match e.kind() {
            RawMessageErrorKind::NoMessageFound => Ok(None),
            RawMessageErrorKind::JetStream(_) | RawMessageErrorKind::InvalidSubject => {
                Err(Lookup::Refused(Error::jetstream(
                    format!(
                        "first message at or after sequence {sequence} of stream {}",
                        options.stream
                    ),
                    e,
                )))
            }
            RawMessageErrorKind::Other => Err(Lookup::Failed(format!(
                "first message at or after sequence {sequence}: {e}"
            ))),
        },
    }
}

/// The first message of `sequences`, from index `from` on, that does not follow the one
/// before it (or, for the first, the last applied message) with no sequence between: its
/// index, its sequence and the first sequence missing before it. Every sequence below
/// `expected` (the one after the last applied) is a redelivery of a message the target
/// holds.
fn first_jump(mut expected: u64, sequences: &[u64], from: usize) -> Option<(usize, u64, u64)> {
    for (at, &sequence) in sequences.iter().enumerate().skip(from) {
        if sequence > expected {
            return Some((at, sequence, expected));
        }
        expected = expected.max(sequence + 1);
    }
    None
}

/// The local store messages are appended to.
// One target per pull: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Stream(StreamWriter),
    Log(LogWriter),
}

impl Target {
    fn event_count(&self) -> u64 {
        match self {
            Self::Stream(w) => w.event_count(),
            Self::Log(w) => w.event_count(),
        }
    }

    fn append(&mut self, timestamp: i64, payload: &[u8]) -> evstream::Result<()> {
        match self {
            Self::Stream(w) => w.append(timestamp, payload).map(drop),
            Self::Log(w) => w.append(timestamp, payload).map(drop),
        }
    }

    fn flush(&mut self) -> evstream::Result<()> {
        match self {
            Self::Stream(w) => w.flush(),
            Self::Log(w) => w.flush(),
        }
    }
}

/// Opens the target to append to, and, for a target that this pull creates, the temporary
/// name it is written under until it first holds everything the consumer had.
///
/// A missing target that `create` asks for is made at `.NAME.pulling` beside it (an
/// interrupted pull's is taken up again), so that nothing under the target's name ever
/// holds part of a first pull; [`finish`] renames it into place.
fn open_target(options: &PullOptions) -> Result<(Target, Option<PathBuf>)> {
    let path = &options.target;
    let create = match &options.create {
        Some(create) if !exists(path)? => create,
        _ => return Ok((open_existing(path)?, None)),
    };
    let temporary = temporary_path(path)?;
    if exists(&temporary)? {
        return Ok((open_existing(&temporary)?, Some(temporary)));
    }
    let writer = match create {
        Create::Stream(capacity) => {
            // A record beside a stream file that is gone describes nothing any more.
            state::remove(&stream_record_path(path, &options.consumer))?;
            Target::Stream(StreamWriter::create(&temporary, *capacity)?)
        }
        Create::Log(log) => Target::Log(LogWriter::create(&temporary, log.clone())?),
    };
    Ok((writer, Some(temporary)))
}

/// A log if `path` is a directory, else a stream file.
fn open_existing(path: &Path) -> Result<Target> {
    if path.is_dir() {
        Ok(Target::Log(LogWriter::open(path)?))
    } else {
        Ok(Target::Stream(StreamWriter::open(path)?))
    }
}

/// Whether anything (a link included) is at `path`.
fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("stat", path, e)),
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Store(evstream::Error::Io {
        op,
        path: path.to_owned(),
        source,
    })
}

/// `.NAME.pulling` beside `target`.
fn temporary_path(target: &Path) -> Result<PathBuf> {
    let Some(name) = target.file_name() else {
        return Err(Error::BadOption(format!(
            "target {} has no file name",
            target.display()
        )));
    };
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(".pulling");
    Ok(target.with_file_name(temporary))
}

/// `FILE.pull.CONSUMER` beside a stream file.
fn stream_record_path(target: &Path, consumer: &str) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".pull.{consumer}"));
    target.with_file_name(name)
}

/// The record of `writer`, written at `writing`: inside a log (so that it moves with the
/// log's directory), beside the target for a stream file.
fn record_of(writer: &Target, writing: &Path, options: &PullOptions) -> PathBuf {
    match writer {
        Target::Log(_) => writing.join(format!("pull.{}", options.consumer)),
        Target::Stream(_) => stream_record_path(&options.target, &options.consumer),
    }
}

/// Gives a created target its name once it holds everything: flushes and closes it,
/// renames it from `temporary` to the target's name (never over anything there), syncs
/// the directory, and opens it again.
fn finish(mut writer: Target, temporary: &Path, target: &Path) -> Result<Target> {
    writer.flush()?;
    drop(writer);
    let dir = state::parent(target);
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        temporary,
        rustix::fs::CWD,
        target,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| io_error("rename", target, e.into()))?;
    state::sync_dir(dir).map_err(|e| io_error("fsync", dir, e))?;
    open_existing(target)
}

/// Appends the messages of `batch` not yet applied, durably, and returns the last
/// sequence applied.
fn apply(
    writer: &mut Target,
    options: &PullOptions,
    origin: &Origin,
    record_path: &Path,
    applied: u64,
    batch: &[jetstream::Message],
    summary: &mut PullSummary,
) -> Result<u64> {
    let mut fresh = Vec::with_capacity(batch.len());
    for message in batch {
        let info = message.info().map_err(|e| Error::BadMessage {
            stream: options.stream.clone(),
            sequence: 0,
            reason: format!("no delivery information: {e}"),
        })?;
        let sequence = info.stream_sequence;
        if sequence <= applied {
            summary.skipped += 1;
            continue;
        }
        let timestamp = match message
            .headers
            .as_ref()
            .and_then(|h| h.get(TIMESTAMP_HEADER))
        {
            Some(value) => value
                .as_str()
                .parse::<i64>()
                .map_err(|e| Error::BadMessage {
                    stream: options.stream.clone(),
                    sequence,
                    reason: format!("header {TIMESTAMP_HEADER}: {e}"),
                })?,
            None => i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        };
        fresh.push((sequence, timestamp, &message.payload));
    }
    let Some(&(last, _, _)) = fresh.last() else {
        return Ok(applied);
    };
    let record = Record {
        origin: Some(origin.clone()),
        before: applied,
        base: writer.event_count(),
        sequences: fresh.iter().map(|(s, _, _)| *s).collect(),
    };
    state::write_atomic(record_path, &record.render())?;
    for (sequence, timestamp, payload) in &fresh {
        writer.append(*timestamp, payload).map_err(|e| match e {
            evstream::Error::OutOfOrder { previous, got } => Error::BadMessage {
                stream: options.stream.clone(),
                sequence: *sequence,
                reason: format!("timestamp {got} is lower than the previous event's {previous}"),
            },
            other => other.into(),
        })?;
    }
    writer.flush()?;
    summary.events += fresh.len() as u64;
    Ok(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn origin(stream: &str, created: &str) -> Origin {
        Origin {
            stream: stream.into(),
            created: OffsetDateTime::parse(created, &Rfc3339).unwrap(),
        }
    }

    #[test]
    fn the_record_says_which_sequence_was_applied_last() {
        let path = Path::new("t.pull.c");
        let record = Record {
            origin: Some(origin("APP", "2026-12-07T10:05:41.345648716Z")),
            before: 7,
            base: 100,
            sequences: vec![8, 9, 12],
        };
        let parsed = Record::parse(path, &record.render()).unwrap();
        assert_eq!(parsed, record);
        assert_eq!(record.applied(path, 100).unwrap(), 7); // killed before any append
        assert_eq!(record.applied(path, 101).unwrap(), 8);
        assert_eq!(record.applied(path, 103).unwrap(), 12); // the whole batch
        assert!(record.applied(path, 99).is_err()); // the target lost events
        assert!(record.applied(path, 104).is_err()); // more than the batch
    }

    #[test]
    fn a_jump_in_the_sequences_is_found_and_redeliveries_are_not_jumps() {
        // Applied up to 10: the next expected is 11.
        assert_eq!(first_jump(11, &[11, 12, 13], 0), None);
        assert_eq!(first_jump(11, &[9, 10, 11, 12], 0), None); // redeliveries first
        assert_eq!(first_jump(11, &[12, 13], 0), Some((0, 12, 11)));
        assert_eq!(first_jump(11, &[11, 12, 15, 16], 0), Some((2, 15, 13)));
        // Past a jump found legitimate, the scan goes on after it.
        assert_eq!(first_jump(16, &[11, 12, 15, 16, 18], 3), Some((4, 18, 17)));
        assert_eq!(first_jump(16, &[11, 12, 15, 16, 17], 3), None);
        assert_eq!(first_jump(1, &[], 0), None);
    }

    #[test]
    fn a_created_target_is_written_under_a_hidden_name_beside_it() {
        assert_eq!(
            temporary_path(Path::new("/data/copy.evs")).unwrap(),
            Path::new("/data/.copy.evs.pulling")
        );
        assert_eq!(
            temporary_path(Path::new("copy.log")).unwrap(),
            Path::new(".copy.log.pulling")
        );
        assert!(matches!(
            temporary_path(Path::new("/")),
            Err(Error::BadOption(_))
        ));
    }

    #[test]
    fn the_record_names_the_stream_and_refuses_another() {
        let path = Path::new("t.pull.c");
        let pulled = origin("APP", "2026-12-07T10:05:41.345648716Z");
        let record = Record {
            origin: Some(pulled.clone()),
            before: 0,
            base: 0,
            sequences: vec![1, 2],
        };
        let text = record.render();
        assert!(
            text.starts_with("stream=APP\ncreated=2026-12-07T10:05:41.345648716Z\n"),
            "{text}"
        );
        assert_eq!(Record::parse(path, &text).unwrap(), record);
        // The same stream, its time written with another offset.
        assert!(
            pulled
                .check(path, &origin("APP", "2026-12-07T11:05:41.345648716+01:00"))
                .is_ok()
        );
        for (other, words) in [
            (
                origin("APP", "2026-12-07T10:05:41.345648717Z"),
                "deleted and made again",
            ),
            (
                origin("OTHER", "2026-12-07T10:05:41.345648716Z"),
                "not stream OTHER",
            ),
        ] {
            let err = pulled.check(path, &other).unwrap_err();
            let Error::OtherStream(detail) = &err else {
                panic!("{err}")
            };
            assert_eq!(detail.record, path);
            assert_eq!(detail.pulled, "APP");
            assert_eq!(detail.stream, other.stream);
            assert!(err.to_string().contains(words), "{err}");
        }
    }

    #[test]
    fn a_record_of_an_earlier_version_names_no_stream_and_is_read() {
        let path = Path::new("t.pull.c");
        let record = Record::parse(path, "before=7\nbase=100\nsequences=8,9\n").unwrap();
        assert_eq!(record.origin, None);
        assert_eq!(record.applied(path, 102).unwrap(), 9);
        assert!(!record.render().contains("stream="));
    }

    #[test]
    fn a_damaged_record_is_a_state_error() {
        let path = Path::new("t.pull.c");
        assert!(Record::parse(path, "before=1\n").is_err());
        assert!(Record::parse(path, "before=1\nbase=2\nsequences=3,x\n").is_err());
        let empty = Record::parse(path, "before=1\nbase=2\nsequences=\n").unwrap();
        assert!(empty.sequences.is_empty());
        // Half an origin, or a time that is not one.
        assert!(Record::parse(path, "stream=APP\nbefore=1\nbase=2\n").is_err());
        assert!(Record::parse(path, "created=2026-12-07T10:05:41Z\nbefore=1\nbase=2\n").is_err());
        assert!(Record::parse(path, "stream=APP\ncreated=yesterday\nbefore=1\nbase=2\n").is_err());
    }
}
