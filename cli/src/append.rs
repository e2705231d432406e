//! `evstream append FILE [PAYLOAD ...]`: arguments, or records of standard input (lines,
//! all of it, JSON Lines, CSV, binary frames).

use std::ffi::OsString;
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evstream::{
    LogRecovery, LogWriter, Prefault, Recovery, RetireReason, Retired, SharedLogWriter,
    SharedStreamWriter, StreamWriter, WriterOptions,
};

use crate::create;
use crate::failure::{self, Failure};
use crate::import::{Fields, InputFormat, Limit, Reader, TimeUnit};
use crate::progress;
use crate::staged::Staged;
use crate::time::{self, TimeSpec, Zone};
use crate::units;

/// Examples shown by `evstream append --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream append sensors.evs 'temp=21.5' 'temp=21.7'     # two events
  tail -F app.log | evstream append app.evs              # one event per line
  evstream append photos.evs --format raw < cat.jpg      # one event, all of stdin
  evstream append sensors.evs --timestamp 2024-05-01T12:00:00Z 'late reading'
  evstream append sensors.evs -- -5                      # a payload that starts with '-'
  evstream cat a.evs --format jsonl | evstream append b.evs --format jsonl --create
  evstream cat a.evs --format binary | evstream append b.evs --format binary --create
  evstream append app.evs --format jsonl --time-field ts < app.jsonl   # import any JSON Lines
  evstream append app.evs --format csv --time-field time --time-unit ms < app.csv
  evstream append app.evs --wait=10s 'x'                 # to itself: wait up to 10 s for it

Without --sync the events survive a crash of evstream but may be lost with the machine's
power; --sync writes them to disk before exiting. Several appends may run at once on one
stream or log, taking turns (FILE.turn and FILE.want are made beside a stream for that);
--wait takes the file to itself instead. Events are appended in one open of the
file, as fast as the library appends. When arguments are given, all of them must fit or
none is appended: they are checked together (their order, each one's size, a stream's
space for all of them) and appended with no other writer's event between them, stamped
with one time (only a log that cannot make its next segment midway, as on a full disk,
may keep the ones before it; the message then says so). Records from standard input
are appended until one fails (the message names it and says how many were appended). Each record is read no
further than the largest event the stream or log can take (its free space, a segment's
largest event; at least 64 KiB, and for JSON Lines and CSV six times that, as JSON may
escape a byte as six): a longer one, such as input without newlines, fails as an argument
that long does, with nothing of it appended and nothing more read.

Times in records (jsonl `timestamp`/`time`, --time-field values) are used as they are and
must not decrease; --timestamp is for events without a time of their own, which otherwise
get the wall clock (never earlier than the last event's).

With --create, a stream that does not exist yet and is fed from standard input is built
under a temporary name beside FILE (.FILE.PID.partial) and renamed to FILE, flushed, only
when all of the input was appended; a failure or Ctrl-C leaves no FILE. For a live feed
that readers should see as it grows, create the stream first and append without --create.";

/// Arguments of `evstream append`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file (create it first with `evstream create`, or pass --create), or log
    /// directory (create it with `evstream create DIR --log`)
    file: PathBuf,
    /// Payloads, one event each; without any, events are read from standard input
    #[arg(value_name = "PAYLOAD")]
    payloads: Vec<OsString>,
    /// How to read standard input
    #[arg(long, value_enum, default_value_t = InputFormat::Lines, conflicts_with = "payloads")]
    format: InputFormat,
    /// Read all of standard input as a single event (the same as --format raw)
    #[arg(long, conflicts_with_all = ["payloads", "format"])]
    raw: bool,
    /// Import: the JSON field or CSV column that holds each event's time (a TIME, or a
    /// number in --time-unit)
    #[arg(long, value_name = "NAME")]
    time_field: Option<String>,
    /// Import: the field or column to store as the payload (default: the whole record)
    #[arg(long, value_name = "NAME", requires = "time_field")]
    payload_field: Option<String>,
    /// Import: the unit of numeric times in --time-field (read exactly, to the nanosecond)
    #[arg(long, value_enum, value_name = "UNIT", requires = "time_field")]
    time_unit: Option<TimeUnit>,
    /// Timestamp for events without their own: RFC 3339, a date, now, -1h, 1714564800s,
    /// @1714564800, ... (default: the wall clock, never earlier than the last event's)
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    timestamp: Option<TimeSpec>,
    /// Flush the events to disk before exiting
    #[arg(long)]
    sync: bool,
    /// Append with the file to itself (not in turns with other appends), waiting for the
    /// writer lock if another process holds it: up to DURATION (such as 10s, 2m), or
    /// without a value as long as it takes
    #[arg(long, value_name = "DURATION", num_args = 0..=1, require_equals = true,
          default_missing_value = "forever", value_parser = parse_wait)]
    wait: Option<Wait>,
    /// Create the stream if it does not exist (of --capacity). Fed from standard input, it
    /// is built under a temporary name and appears, flushed, only once all of the input
    /// was appended: an interrupted copy never passes for a whole one
    #[arg(long)]
    create: bool,
    /// Capacity of a stream made by --create
    #[arg(long, value_name = "SIZE", requires = "create", value_parser = create::parse_capacity,
          default_value = "64MiB")]
    capacity: u64,
}

/// How long to wait for the writer lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until it is free.
    Forever,
    /// At most this long.
    For(Duration),
}

fn parse_wait(input: &str) -> Result<Wait, String> {
    if input == "forever" {
        return Ok(Wait::Forever);
    }
    let nanos = time::duration(input)?;
    let nanos = u64::try_from(nanos).map_err(|_| "a wait cannot be negative".to_owned())?;
    Ok(Wait::For(Duration::from_nanos(nanos)))
}

/// Opens (or creates) the stream once, appends every event, flushes if asked.
pub fn run(args: Args, zone: &Zone) -> Result<(), Failure> {
    let path = args.file.as_path();
    let format = if args.raw {
        InputFormat::Raw
    } else {
        args.format
    };
    let from_stdin = args.payloads.is_empty();
    let now = time::now();
    let timestamp = args
        .timestamp
        .map(|spec| spec.resolve(zone, now))
        .transpose()
        .map_err(|why| Failure::usage(format!("--timestamp: {why}")))?;
    // Check the import arguments before the stream is opened, let alone created.
    let reader = if from_stdin {
        let fields = Fields {
            time: args.time_field.clone(),
            payload: args.payload_field.clone(),
            unit: args.time_unit,
            zone: zone.clone(),
            now,
        };
        let input = Box::new(BufReader::with_capacity(1 << 20, io::stdin().lock()));
        Some(Reader::new(format, fields, input)?)
    } else {
        if args.time_field.is_some() {
            return Err(Failure::usage(
                "--time-field imports standard input; it does not go with PAYLOAD arguments",
            ));
        }
        None
    };
    // Prefaulting ahead of the cursor pays off for a long feed from standard input only.
    let prefault = if from_stdin && format != InputFormat::Raw {
        Prefault::Background
    } else {
        Prefault::Off
    };
    // A one-shot command checks the whole stream first, the flushed events too, and
    // refuses damage anywhere (leaving the file unchanged) rather than append after it.
    let options = WriterOptions::default()
        .prefault(prefault)
        .check_durable(true);
    let create = args.create.then_some(args.capacity);
    // A stream made from standard input appears only once all of it was appended.
    let (mut writer, staged) = open_writer(path, options, args.wait, create, from_stdin)?;
    match &writer {
        Target::Stream(stream) => report_recovery(path, stream.recovery()),
        Target::SharedStream(stream) => report_recovery(path, stream.recovery()),
        Target::Log(log) => report_log_recovery(path, log.recovery()),
        Target::Shared(log) => report_log_recovery(path, &log.recovery()),
    }

    let mut appender = Appender {
        writer: &mut writer,
        path,
        timestamp,
        appended: 0,
        partial: false,
    };
    let result = match reader {
        Some(reader) => appender.records(reader),
        None => appender.arguments(&args.payloads),
    };
    let appended = appender.appended;
    let partial = appender.partial;
    let result = result.map_err(|failure| {
        if partial {
            failure.with_context(
                " (the arguments before the failure may have been appended: the log keeps \
                 the events of a batch written before a segment it could not make)",
            )
        } else if staged.is_some() {
            failure.with_context(&format!(
                " ({} was not created; run again with all of the input)",
                path.display()
            ))
        } else if appended > 0 {
            let events = if appended == 1 {
                "event was"
            } else {
                "events were"
            };
            failure.with_context(&format!(" ({appended} {events} appended before it)"))
        } else {
            failure.with_context(" (nothing was appended)")
        }
    });
    // What was appended is flushed even when a later event failed; a new stream is
    // flushed before it appears under its name.
    if args.sync || (staged.is_some() && result.is_ok()) {
        writer.flush().map_err(|e| Failure::stream(path, &e))?;
    }
    match &mut writer {
        Target::Log(log) => report_retired(path, &log.take_retired()),
        Target::Shared(log) => report_retired(path, &log.take_retired()),
        Target::Stream(_) | Target::SharedStream(_) => {}
    }
    drop(writer);
    match staged {
        Some(staged) if result.is_ok() => staged.commit(),
        // A failure drops the temporary stream.
        _ => result,
    }
}

/// Where `append` writes: a stream file or a log to itself (`--wait`), or in turns with
/// the other processes appending to it.
enum Target {
    Stream(Box<StreamWriter>),
    SharedStream(Box<SharedStreamWriter>),
    Log(Box<LogWriter>),
    Shared(Box<SharedLogWriter>),
}

impl Target {
    fn append(&mut self, timestamp: Option<i64>, payload: &[u8]) -> evstream::Result<()> {
        match (self, timestamp) {
            (Self::Stream(w), Some(t)) => w.append(t, payload).map(drop),
            (Self::Stream(w), None) => w.append_now(payload).map(drop),
            (Self::SharedStream(w), Some(t)) => w.append(t, payload).map(drop),
            (Self::SharedStream(w), None) => w.append_now(payload).map(drop),
            (Self::Log(w), Some(t)) => w.append(t, payload).map(drop),
            (Self::Log(w), None) => w.append_now(payload).map(drop),
            (Self::Shared(w), Some(t)) => w.append(t, payload).map(drop),
            (Self::Shared(w), None) => w.append_now(payload).map(drop),
        }
    }

    /// Appends `payloads` all or none, with no other writer's event between them, every
    /// one stamped `timestamp` or, without one, the wall clock (never earlier than the
    /// event before them).
    ///
    /// The batch is checked whole first (timestamp order, each event's size, a stream's
    /// space for all of it), and on a shared writer within the same turn as the appends:
    /// nothing is written on error. The one exception is the library's: a log whose next
    /// segment cannot be created midway (an I/O error, such as a full disk) keeps the
    /// events before it.
    fn append_batch(&mut self, timestamp: Option<i64>, payloads: &[&[u8]]) -> evstream::Result<()> {
        let stamped = |t: i64| payloads.iter().map(|p| (t, *p)).collect::<Vec<_>>();
        match self {
            Self::Stream(w) => {
                let t = timestamp.unwrap_or_else(|| w.next_timestamp());
                w.append_batch(&stamped(t)).map(drop)
            }
            Self::SharedStream(w) => match timestamp {
                Some(t) => w.append_batch(&stamped(t)).map(drop),
                None => w.append_batch_now(payloads).map(drop),
            },
            Self::Log(w) => {
                // To itself: no other writer appends between the check and the appends.
                let t = timestamp.unwrap_or_else(|| w.next_timestamp());
                check_log_batch(w.options(), w.last_timestamp(), t, payloads)?;
                for payload in payloads {
                    w.append(t, payload)?;
                }
                Ok(())
            }
            Self::Shared(w) => match timestamp {
                Some(t) => w.append_batch(&stamped(t)).map(drop),
                None => {
                    // The wall clock, never earlier than the log's last event. Another
                    // process may append a later one before this batch takes its turn:
                    // the batch is then refused whole, and stamped again from that event.
                    let mut floor = w.last_timestamp().unwrap_or(i64::MIN);
                    let mut tries = 0;
                    loop {
                        let t = wall_clock().max(floor);
                        match w.append_batch(&stamped(t)) {
                            Err(evstream::Error::OutOfOrder { previous, .. })
                                if tries < RESTAMPS =>
                            {
                                floor = previous;
                                tries += 1;
                            }
                            other => return other.map(drop),
                        }
                    }
                }
            },
        }
    }

    /// The largest payload an event appended now can have: a stream's free space less an
    /// event header (for a shared stream, as this process last saw it: no more than that),
    /// a log's largest event less its header.
    fn largest_payload(&self) -> u64 {
        let event = match self {
            Self::Stream(w) => w.available(),
            Self::SharedStream(w) => w.available(),
            Self::Log(w) => largest_log_event(w.options()),
            Self::Shared(w) => largest_log_event(w.options()),
        };
        event.saturating_sub(evstream::format::EVENT_HEADER_LEN)
    }

    /// The error for a payload of `len` bytes that does not fit, as an argument that long
    /// gets it: a stream is full, an event is too large for a log's segments.
    fn too_large(&self, path: &Path, len: u64) -> Failure {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let Some(needed) = evstream::format::event_len(len) else {
            return Failure::stream(path, &evstream::Error::PayloadTooLarge { len });
        };
        let options = match self {
            Self::Stream(w) => Err(w.available()),
            Self::SharedStream(w) => Err(w.available()),
            Self::Log(w) => Ok(w.options()),
            Self::Shared(w) => Ok(w.options()),
        };
        let error = match options {
            Err(available) => evstream::Error::Full { needed, available },
            Ok(options) => evstream::Error::EventTooLarge {
                needed,
                segment_size: options.get_segment_size(),
                largest: largest_log_event(options),
            },
        };
        Failure::stream(path, &error)
    }

    /// Bytes left for events: a log has no limit (it rolls).
    fn available(&self) -> u64 {
        match self {
            Self::Stream(w) => w.available(),
            Self::SharedStream(w) => w.available(),
            Self::Log(_) | Self::Shared(_) => u64::MAX,
        }
    }

    fn flush(&mut self) -> evstream::Result<()> {
        match self {
            Self::Stream(w) => w.flush(),
            Self::SharedStream(w) => w.flush(),
            Self::Log(w) => w.flush(),
            Self::Shared(w) => w.flush(),
        }
    }
}

/// How many times a batch stamped with the wall clock is stamped again after another
/// process appended a later event first.
const RESTAMPS: u32 = 100;

/// The wall clock in Unix nanoseconds (the last representable one past 2262).
fn wall_clock() -> i64 {
    evstream::timestamp_of(std::time::SystemTime::now()).unwrap_or(i64::MAX)
}

/// The largest event, header included, a segment of a log with `options` holds.
fn largest_log_event(options: &evstream::LogOptions) -> u64 {
    let segment_size = options.get_segment_size();
    evstream::format::trailer_offset(segment_size).map_or(0, |end| {
        end.saturating_sub(evstream::format::STREAM_HEADER_LEN)
    })
}

/// Checks a batch for a log held to itself, as [`SharedLogWriter::append_batch`] checks
/// it: `timestamp` not lower than the log's `last`, and every event fits in a segment.
fn check_log_batch(
    options: &evstream::LogOptions,
    last: Option<i64>,
    timestamp: i64,
    payloads: &[&[u8]],
) -> evstream::Result<()> {
    if let Some(previous) = last
        && timestamp < previous
    {
        return Err(evstream::Error::OutOfOrder {
            previous,
            got: timestamp,
        });
    }
    let largest = largest_log_event(options);
    for payload in payloads {
        let len = payload.len();
        let needed =
            evstream::format::event_len(len).ok_or(evstream::Error::PayloadTooLarge { len })?;
        if needed > largest {
            return Err(evstream::Error::EventTooLarge {
                needed,
                segment_size: options.get_segment_size(),
                largest,
            });
        }
    }
    Ok(())
}

/// Tells on standard error what opening a log repaired.
fn report_log_recovery(path: &Path, recovery: &LogRecovery) {
    report_recovery(path, &recovery.newest);
    for (segment, repair) in &recovery.unsealed {
        report_recovery(&path.join(format!("segment {segment}")), repair);
    }
    if recovery.dropped_after_gap > 0 {
        failure::note(&format!(
            "{}: dropped {} unflushed events that lay past events a power loss destroyed",
            path.display(),
            recovery.dropped_after_gap
        ));
    }
}

/// Tells on standard error which segments retention deleted, why, and who lost what.
fn report_retired(path: &Path, retired: &[Retired]) {
    for r in retired {
        let why = match r.reason {
            RetireReason::Size => "the log exceeded its size limit",
            RetireReason::Age => "its events were older than the age limit",
            RetireReason::Count => "the log exceeded its segment limit",
            _ => "retention",
        };
        failure::note(&format!(
            "{}: deleted segment {} ({} events, {}): {why}",
            path.display(),
            r.segment,
            r.events,
            units::size(r.bytes)
        ));
        for loss in &r.cursors_behind {
            failure::note(&format!(
                "{}: cursor {} (at {}) lost {} events it had not read",
                path.display(),
                loss.name,
                loss.position,
                loss.events_lost
            ));
        }
    }
}

/// Opens the stream for appending: waits for the writer lock if asked, creates the stream
/// if it is missing and `create` gives a capacity; with `stage`, under a temporary name,
/// to be renamed into place when every event was appended. A log or a stream is opened
/// to append in turns with other processes (a [`SharedLogWriter`], a
/// [`SharedStreamWriter`]), or, with `wait`, to itself (a [`LogWriter`], a
/// [`StreamWriter`], once no other writer has it); a stream whose directory takes no turn
/// files (read-only) is opened to itself too.
fn open_writer(
    path: &Path,
    options: WriterOptions,
    wait: Option<Wait>,
    create: Option<u64>,
    stage: bool,
) -> Result<(Target, Option<Staged>), Failure> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let mut raced = false;
    loop {
        let opened = if path.is_dir() && wait.is_none() {
            SharedLogWriter::open(path).map(|log| Target::Shared(Box::new(log)))
        } else if path.is_dir() {
            LogWriter::open(path).map(|log| Target::Log(Box::new(log)))
        } else if wait.is_none() {
            match SharedStreamWriter::open_with(path, options.clone()) {
                Ok(w) => Ok(Target::SharedStream(Box::new(w))),
                Err(e) if no_turn_files(path, &e) => StreamWriter::open_with(path, options.clone())
                    .map(|w| Target::Stream(Box::new(w))),
                Err(e) => Err(e),
            }
        } else {
            StreamWriter::open_with(path, options.clone()).map(|w| Target::Stream(Box::new(w)))
        };
        let error = match opened {
            Ok(writer) => return Ok((writer, None)),
            Err(evstream::Error::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && create.is_some() =>
            {
                if raced || (stage && path.symlink_metadata().is_ok()) {
                    // Created by another process yet still not there to open: a dangling
                    // symbolic link, which create (rightly) does not replace.
                    return Err(Failure::data(format!(
                        "{} exists but cannot be opened (a symbolic link to a missing file?); \
                         --create never replaces a path",
                        path.display()
                    )));
                }
                let capacity = create.unwrap_or(evstream::format::MIN_CAPACITY);
                // A name too long for the library's temporary beside it is made under a
                // shorter one too.
                if stage || !crate::staged::library_temp_fits(path) {
                    let staged = Staged::new(path)?;
                    let writer = StreamWriter::create_with(staged.temp(), capacity, options)
                        .map_err(|e| Failure::stream(path, &e))?;
                    return Ok((Target::Stream(Box::new(writer)), Some(staged)));
                }
                match StreamWriter::create_with(path, capacity, options.clone()) {
                    // Opened again in turns with other processes, unless `wait`.
                    Ok(writer) if wait.is_none() => {
                        drop(writer);
                        raced = true;
                        continue;
                    }
                    Ok(writer) => return Ok((Target::Stream(Box::new(writer)), None)),
                    // Another process created it first: open that one.
                    Err(evstream::Error::AlreadyExists { .. }) => {
                        raced = true;
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let waited = started.elapsed();
        let patience = match wait {
            Some(Wait::Forever) => true,
            Some(Wait::For(limit)) => waited < limit,
            None => false,
        };
        if !matches!(error, evstream::Error::Locked { .. }) || !patience {
            let failure = Failure::stream(path, &error);
            return Err(match (wait, &error) {
                // To itself, it waits for every other writer, those that share the file
                // too: the library's sentence names only one that keeps it to itself.
                (Some(_), evstream::Error::Locked { .. }) => Failure::data(format!(
                    "{} is locked by another writer, one that shares it with other writers or \
                     one that keeps it to itself; --wait takes it alone once no writer has it \
                     (waited {})",
                    path.display(),
                    units::duration(waited.as_nanos())
                )),
                (None, evstream::Error::Locked { .. }) => {
                    failure.with_context("; --wait waits for it")
                }
                _ => failure,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether `error` is the refusal to make or open the turn files beside the stream
/// `path`: for want of permission (a read-only directory), or because their names
/// (`NAME.turn`) are too long for a directory entry when NAME is 251 bytes or more, so
/// that no process can take turns on it.
fn no_turn_files(path: &Path, error: &evstream::Error) -> bool {
    matches!(error, evstream::Error::Io { path: at, source, .. }
    if at != path
        && matches!(
            source.kind(),
            io::ErrorKind::PermissionDenied
                | io::ErrorKind::ReadOnlyFilesystem
                | io::ErrorKind::InvalidFilename
        ))
}

/// Tells on standard error what opening the stream repaired, if anything.
fn report_recovery(path: &Path, recovery: &Recovery) {
    if let Some((offset, reason)) = &recovery.torn_at {
        let events = match recovery.dropped_events {
            1 => "1 event".to_owned(),
            n => format!("{n} events"),
        };
        failure::note(&format!(
            "{}: dropped the torn tail a crash left at byte offset {offset} \
             ({events}, {}): {reason}",
            path.display(),
            units::size(recovery.dropped_bytes)
        ));
    }
    if recovery.count_repaired {
        failure::note(&format!(
            "{}: corrected the header's event count, which a crash left wrong",
            path.display()
        ));
    }
}

/// Appends events to an open writer, counting them.
struct Appender<'a> {
    writer: &'a mut Target,
    path: &'a Path,
    timestamp: Option<i64>,
    appended: u64,
    /// A batch of arguments failed after some of it may have gone in.
    partial: bool,
}

impl Appender<'_> {
    fn append(&mut self, own: Option<i64>, payload: &[u8]) -> Result<(), Failure> {
        let result = self.writer.append(own.or(self.timestamp), payload);
        result.map_err(|e| Failure::stream(self.path, &e))?;
        self.appended += 1;
        Ok(())
    }

    /// One event per argument, all or none.
    fn arguments(&mut self, payloads: &[OsString]) -> Result<(), Failure> {
        let mut needed = 0u64;
        for payload in payloads {
            let len = payload.as_bytes().len();
            let event = evstream::format::event_len(len).ok_or_else(|| {
                Failure::stream(self.path, &evstream::Error::PayloadTooLarge { len })
            })?;
            needed = needed.saturating_add(event);
        }
        let available = self.writer.available();
        if needed > available {
            if let [_] = payloads {
                let full = evstream::Error::Full { needed, available };
                return Err(Failure::stream(self.path, &full));
            }
            // The library's sentence, for the whole batch (all or none).
            let events = format!("the {} events need", payloads.len());
            return Err(Failure::data(format!(
                "{} is full: {events} {} and {} are free; start a new stream",
                self.path.display(),
                units::size_exact(needed),
                units::size_exact(available)
            )));
        }
        // Other processes may append between this process's turns: one batch keeps the
        // arguments together and all or none, checked again in the turn.
        let payloads: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let result = self.writer.append_batch(self.timestamp, &payloads);
        if let Err(e) = result {
            let log = matches!(self.writer, Target::Log(_) | Target::Shared(_));
            self.partial = log && matches!(e, evstream::Error::Io { .. });
            return Err(Failure::stream(self.path, &e));
        }
        self.appended += payloads.len() as u64;
        Ok(())
    }

    /// Every record of standard input, with a progress bar on a terminal.
    fn records(&mut self, mut reader: Reader) -> Result<(), Failure> {
        let total = std::fs::metadata("/dev/stdin")
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len());
        let bar = match total {
            Some(total) if total >= PROGRESS_THRESHOLD => progress::bytes("appending", total),
            _ => None,
        };
        let mut payload = Vec::with_capacity(4096);
        let result = loop {
            // Each record is read no further than the largest event the target can take.
            let next = {
                let writer = &*self.writer;
                let path = self.path;
                let too_large = |len: u64| writer.too_large(path, len);
                let limit = Limit {
                    payload: writer.largest_payload(),
                    too_large: &too_large,
                };
                reader.next(&mut payload, &limit)
            };
            match next {
                Ok(Some(own)) => {
                    if let Err(failure) = self.append(own, &payload) {
                        let record = reader.records;
                        break Err(if record > 0 {
                            failure.with_context(&format!(" (standard input record {record})"))
                        } else {
                            failure
                        });
                    }
                }
                Ok(None) => break Ok(()),
                Err(failure) => break Err(failure),
            }
            if let Some(bar) = &bar
                && self.appended.is_multiple_of(1024)
            {
                bar.set_position(reader.consumed);
            }
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        result
    }
}

/// Standard input of at least this many bytes (a file) gets a progress bar on a terminal.
const PROGRESS_THRESHOLD: u64 = 16 << 20;
