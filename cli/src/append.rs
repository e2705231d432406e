//! `evstream append FILE [PAYLOAD ...]`: arguments, lines of standard input, or all of it.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use evstream::{Prefault, Recovery, StreamWriter, WriterOptions};

use crate::failure::{Failure, os_reason};
use crate::time;
use crate::units;

/// Examples shown by `evstream append --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream append sensors.evs 'temp=21.5' 'temp=21.7'     # two events
  tail -F app.log | evstream append app.evs              # one event per line
  evstream append photos.evs --raw < cat.jpg             # one event, all of stdin
  evstream append sensors.evs --timestamp 2024-05-01T12:00:00Z 'late reading'
  evstream append sensors.evs -- -5                      # a payload that starts with '-'

Without --sync the events survive a crash of evstream but may be lost with the machine's
power; --sync writes them to disk before exiting. Events are appended in one open of the
file, as fast as the library appends. When arguments are given, all of them must fit or
none is appended; lines from standard input are appended until the stream is full.";

/// Arguments of `evstream append`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file (create it first with `evstream create`)
    file: PathBuf,
    /// Payloads, one event each; without any, each line of standard input is one event
    /// (its newline removed)
    #[arg(value_name = "PAYLOAD")]
    payloads: Vec<OsString>,
    /// Read all of standard input as a single event
    #[arg(long, conflicts_with = "payloads")]
    raw: bool,
    /// Timestamp for every event: Unix nanoseconds or RFC 3339 (default: the wall clock,
    /// never earlier than the last event's)
    #[arg(long, value_name = "NS", value_parser = time::parse_time, allow_hyphen_values = true)]
    timestamp: Option<i64>,
    /// Flush the events to disk before exiting
    #[arg(long)]
    sync: bool,
}

/// Opens the stream once, appends every event, flushes if asked.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = args.file.as_path();
    let from_stdin = args.payloads.is_empty() && !args.raw;
    // Prefaulting ahead of the cursor pays off for a long feed from standard input only.
    let prefault = if from_stdin {
        Prefault::Background
    } else {
        Prefault::Off
    };
    // A one-shot command checks the whole stream first, the flushed events too, and
    // refuses damage anywhere (leaving the file unchanged) rather than append after it.
    let options = WriterOptions::default()
        .prefault(prefault)
        .check_durable(true);
    let mut writer =
        StreamWriter::open_with(path, options).map_err(|e| Failure::stream(path, &e))?;
    report_recovery(path, writer.recovery());

    let mut appender = Appender {
        writer: &mut writer,
        path,
        timestamp: args.timestamp,
        appended: 0,
    };
    let result = if args.raw {
        appender.raw()
    } else if from_stdin {
        appender.lines()
    } else {
        appender.arguments(&args.payloads)
    };
    let appended = appender.appended;
    let result = result.map_err(|failure| {
        if appended > 0 {
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
    // What was appended is flushed even when a later event failed.
    if args.sync {
        writer.flush().map_err(|e| Failure::stream(path, &e))?;
    }
    result
}

/// Tells on standard error what opening the stream repaired, if anything.
fn report_recovery(path: &Path, recovery: &Recovery) {
    if let Some((offset, reason)) = &recovery.torn_at {
        let events = match recovery.dropped_events {
            1 => "1 event".to_owned(),
            n => format!("{n} events"),
        };
        eprintln_quiet(&format!(
            "note: {}: dropped the torn tail a crash left at byte offset {offset} \
             ({events}, {}): {reason}",
            path.display(),
            units::size(recovery.dropped_bytes)
        ));
    }
    if recovery.count_repaired {
        eprintln_quiet(&format!(
            "note: {}: corrected the header's event count, which a crash left wrong",
            path.display()
        ));
    }
}

/// Prints a line on standard error, ignoring a closed standard error.
fn eprintln_quiet(text: &str) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{text}");
}

/// Appends events to an open writer, counting them.
struct Appender<'a> {
    writer: &'a mut StreamWriter,
    path: &'a Path,
    timestamp: Option<i64>,
    appended: u64,
}

impl Appender<'_> {
    fn append(&mut self, payload: &[u8]) -> Result<(), Failure> {
        let result = match self.timestamp {
            Some(timestamp) => self.writer.append(timestamp, payload),
            None => self.writer.append_now(payload).map(|(offset, _)| offset),
        };
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
            let events = match payloads.len() {
                1 => "the event needs".to_owned(),
                n => format!("the {n} events need"),
            };
            return Err(Failure::data(format!(
                "{} is full: {events} {} and {} are free; start a new stream",
                self.path.display(),
                units::size_exact(needed),
                units::size_exact(available)
            )));
        }
        if let (Some(got), Some(previous)) = (self.timestamp, self.writer.last_timestamp())
            && got < previous
        {
            return Err(Failure::stream(
                self.path,
                &evstream::Error::OutOfOrder { previous, got },
            ));
        }
        for payload in payloads {
            self.append(payload.as_bytes())?;
        }
        Ok(())
    }

    /// One event per line of standard input, newline removed; a last line without a
    /// newline is an event too.
    fn lines(&mut self) -> Result<(), Failure> {
        let mut input = BufReader::with_capacity(1 << 20, io::stdin().lock());
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            let read = input.read_until(b'\n', &mut line).map_err(stdin_failure)?;
            if read == 0 {
                return Ok(());
            }
            let payload = line.strip_suffix(b"\n").unwrap_or(&line);
            self.append(payload)?;
        }
    }

    /// All of standard input as one event.
    fn raw(&mut self) -> Result<(), Failure> {
        let mut payload = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut payload)
            .map_err(stdin_failure)?;
        self.append(&payload)
    }
}

/// A failure reading standard input.
fn stdin_failure(error: io::Error) -> Failure {
    Failure::data(format!("cannot read standard input: {}", os_reason(&error)))
}
