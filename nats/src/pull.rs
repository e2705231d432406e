//! Pulling: a durable JetStream consumer that appends every message to a local stream,
//! timestamps preserved, each message exactly once.
//!
//! Before a batch of messages is appended, a small record beside the target is replaced
//! durably: the stream sequence applied before the batch, the target's event count, and
//! the batch's stream sequences. The batch is then appended and flushed, and only then
//! acknowledged. After a kill at any point, the target's event count says how much of the
//! recorded batch reached it, and so which sequence was applied last; messages up to it
//! that the server delivers again are acknowledged and skipped.
//!
//! A target that the pull creates is written under a temporary name beside it
//! (`.NAME.pulling`) and renamed into place (never over anything, the directory synced)
//! only when the pull first catches up, so that no file under the target's name is ever
//! part of a first pull; a pull cut off before that goes on with the temporary one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::context::{
    ConsumerInfoError, ConsumerInfoErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self, consumer};
use evstream::{LogOptions, LogWriter, StreamWriter};
use futures_util::StreamExt;

use crate::connect::{Connection, retrying};
use crate::error::{Error, Result};
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

    /// Stops when the consumer has nothing pending, instead of waiting for more.
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

/// The durable record of the batch being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
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
        Ok(Self {
            before: number("before")?,
            base: number("base")?,
            sequences,
        })
    }

    fn render(&self) -> String {
        let list: Vec<String> = self.sequences.iter().map(u64::to_string).collect();
        format!(
            "before={}\nbase={}\nsequences={}\n",
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

/// Pulls messages into the target until the consumer has nothing pending (with
/// [`PullOptions::until_end`]) or forever.
///
/// # Errors
/// [`Error::Unreachable`] or [`Error::Unauthorized`] if the first connection fails;
/// [`Error::JetStream`] if the stream does not exist; [`Error::BadMessage`] for a message
/// that cannot be an event (its timestamp lower than the previous one's);
/// [`Error::Store`] if the target cannot be opened or written; [`Error::State`] if the
/// record beside it cannot be read or written, or contradicts the target.
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
    let client = connection.connect(&reporter).await?;
    let js = jetstream::new(client);
    let stream = retrying(
        &reporter,
        &format!("stream {}", options.stream),
        || js.get_stream(&options.stream),
        |e| matches!(e.kind(), GetStreamErrorKind::Request),
    )
    .await?;
    let (mut writer, mut temporary) = open_target(options)?;
    let mut record_path = record_of(
        &writer,
        temporary.as_deref().unwrap_or(&options.target),
        options,
    );
    let mut summary = PullSummary::default();
    let mut applied = match state::read(&record_path)? {
        Some(text) => {
            Record::parse(&record_path, &text)?.applied(&record_path, writer.event_count())?
        }
        None => 0,
    };
    summary.last_sequence = applied;

    // The local record, not the server's acknowledgement floor, says what the target
    // holds: a killed run may leave deliveries that the server only redelivers after its
    // ack wait, and acknowledging later messages would skip them. So the durable consumer
    // is positioned afresh at every start, right after the last applied sequence.
    let passing = |e: &ConsumerError| {
        matches!(
            e.kind(),
            ConsumerErrorKind::TimedOut | ConsumerErrorKind::Request | ConsumerErrorKind::Other
        )
    };
    let what = format!("reset consumer {}", options.consumer);
    let delete = || async {
        match stream.delete_consumer(&options.consumer).await {
            Ok(_) => Ok(()),
            // Nothing to reset: the first pull under this name.
            Err(e)
                if matches!(e.kind(), ConsumerErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    retrying(&reporter, &what, delete, |e: &ConsumerError| passing(e)).await?;
    let config = consumer::pull::Config {
        durable_name: Some(options.consumer.clone()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: applied + 1,
        },
        ..Default::default()
    };
    let what = format!("consumer {}", options.consumer);
    let consumer: consumer::PullConsumer = retrying(
        &reporter,
        &what,
        || stream.create_consumer(config.clone()),
        |e: &ConsumerError| passing(e),
    )
    .await?;

    let mut last_report = std::time::Instant::now();
    loop {
        let fetched = consumer
            .fetch()
            .max_messages(options.batch)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut messages = match fetched {
            Ok(messages) => messages,
            Err(e) => {
                reporter.report(Report::Retrying {
                    reason: format!("fetch: {e}"),
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            match message {
                Ok(message) => batch.push(message),
                Err(e) => {
                    reporter.report(Report::Retrying {
                        reason: format!("fetch: {e}"),
                    });
                    break;
                }
            }
        }
        if batch.is_empty() {
            if options.until_end || temporary.is_some() {
                let info = retrying(
                    &reporter,
                    "consumer info",
                    || consumer.get_info(),
                    |e: &ConsumerInfoError| {
                        matches!(
                            e.kind(),
                            ConsumerInfoErrorKind::Request
                                | ConsumerInfoErrorKind::TimedOut
                                | ConsumerInfoErrorKind::NoResponders
                                | ConsumerInfoErrorKind::Offline
                        )
                    },
                )
                .await?;
                if info.num_pending == 0 && info.num_ack_pending == 0 {
                    if let Some(written) = temporary.take() {
                        writer = finish(writer, &written, &options.target)?;
                        record_path = record_of(&writer, &options.target, options);
                    }
                    if options.until_end {
                        return Ok(summary);
                    }
                }
            }
            continue;
        }
        applied = apply(
            &mut writer,
            options,
            &record_path,
            applied,
            &batch,
            &mut summary,
        )?;
        summary.last_sequence = applied;
        if let Some(last) = batch.last() {
            // With AckPolicy::All, this acknowledges the whole batch. A lost ack only
            // means a redelivery, which the record turns into skips.
            if let Err(e) = last.ack().await {
                reporter.report(Report::Retrying {
                    reason: format!("acknowledge: {e}"),
                });
            }
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

    #[test]
    fn the_record_says_which_sequence_was_applied_last() {
        let path = Path::new("t.pull.c");
        let record = Record {
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
    fn a_damaged_record_is_a_state_error() {
        let path = Path::new("t.pull.c");
        assert!(Record::parse(path, "before=1\n").is_err());
        assert!(Record::parse(path, "before=1\nbase=2\nsequences=3,x\n").is_err());
        let empty = Record::parse(path, "before=1\nbase=2\nsequences=\n").unwrap();
        assert!(empty.sequences.is_empty());
    }
}
