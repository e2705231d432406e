//! `evstream cat FILE`: every event, or a filtered range, one a line; optionally following.

use std::path::PathBuf;
use std::time::Duration;

use evstream::format::STREAM_HEADER_LEN;
use evstream::{EventView, StreamReader};

use crate::failure::Failure;
use crate::output::{Format, Printer};
use crate::time;

/// Examples shown by `evstream cat --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream cat sensors.evs
  evstream cat sensors.evs --format json | jq .payload
  evstream cat sensors.evs --since 2024-05-01T12:00:00Z --until 2024-05-01T13:00:00Z
  evstream cat sensors.evs --since 1714564800000000000 --limit 100
  evstream cat sensors.evs --from-offset 4096 --format hex
  evstream cat sensors.evs --format raw | evstream append copy.evs
  evstream cat sensors.evs --follow

TIME is RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.25+02:00), a date
(2024-05-01, midnight UTC) or Unix nanoseconds. --since is inclusive and --until
exclusive. Offsets are those printed by --format json. cat only reads: it works while a
writer appends, and never changes the file.";

/// Arguments of `evstream cat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file
    file: PathBuf,
    /// How to print each event
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Start at the event at this byte offset (as printed by --format json)
    #[arg(long, value_name = "N")]
    from_offset: Option<u64>,
    /// Only events at or after TIME
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    since: Option<i64>,
    /// Only events before TIME
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    until: Option<i64>,
    /// Print at most N events
    #[arg(long, short = 'n', value_name = "N")]
    limit: Option<u64>,
    /// After the last event, keep printing new events as a writer appends them, until
    /// interrupted (Ctrl-C)
    #[arg(long, short)]
    follow: bool,
}

/// Which events to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Skip events before this timestamp.
    pub since: Option<i64>,
    /// Stop at the first event at or after this timestamp.
    pub until: Option<i64>,
    /// Stop after printing this many.
    pub limit: Option<u64>,
}

/// What to do with an event.
enum Verdict {
    Print,
    Skip,
    Stop,
}

impl Filter {
    fn judge(&self, event: &EventView<'_>) -> Verdict {
        let timestamp = event.timestamp();
        if self.until.is_some_and(|until| timestamp >= until) {
            Verdict::Stop
        } else if self.since.is_some_and(|since| timestamp < since) {
            Verdict::Skip
        } else {
            Verdict::Print
        }
    }

    fn full(&self, printed: u64) -> bool {
        self.limit.is_some_and(|limit| printed >= limit)
    }
}

/// Where printing starts, and whether that offset came from the user unchecked.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Byte offset of the first event to read.
    pub offset: u64,
    /// Whether the offset was given by the user (it may not be an event's start).
    pub from_user: bool,
}

/// Prints the events the arguments select.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = args.file.as_path();
    let stream_failure = |e: evstream::Error| Failure::stream(path, &e);
    let reader = StreamReader::open(path).map_err(stream_failure)?;
    let mut start = Start {
        offset: args.from_offset.unwrap_or(STREAM_HEADER_LEN),
        from_user: args.from_offset.is_some(),
    };
    if let Some(since) = args.since {
        let first = reader
            .seek_time(since)
            .map_err(stream_failure)?
            .unwrap_or(reader.write_offset());
        if first > start.offset {
            start = Start {
                offset: first,
                from_user: false,
            };
        }
    }
    let filter = Filter {
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    let mut printer = Printer::stdout(args.format);
    show(&reader, start, filter, &mut printer, args.follow)
}

/// Prints events of `reader` from `start` that pass `filter`, then, with `follow`, new
/// events as they are published.
pub fn show(
    reader: &StreamReader,
    start: Start,
    filter: Filter,
    printer: &mut Printer,
    follow: bool,
) -> Result<(), Failure> {
    let path = reader.path();
    let mut next = start.offset;
    if filter.full(0) {
        return Ok(());
    }
    let events = reader
        .iter_from(start.offset)
        .map_err(|e| Failure::stream(path, &e))?;
    for item in events {
        let event = match item {
            Ok(event) => event,
            Err(error) => return Err(read_failure(reader, start, &error, printer)),
        };
        match filter.judge(&event) {
            Verdict::Stop => return printer.flush(),
            Verdict::Skip => {}
            Verdict::Print => printer.event(&event)?,
        }
        next = event.next_offset();
        if filter.full(printer.printed()) {
            return printer.flush();
        }
    }
    printer.flush()?;
    if !follow {
        return Ok(());
    }
    let mut follow = reader.follow(next).map_err(|e| Failure::stream(path, &e))?;
    loop {
        let event = match follow.try_next() {
            Ok(Some(event)) => event,
            Ok(None) => {
                // Nothing new: show what was printed before waiting.
                printer.flush()?;
                match follow.next_timeout(Duration::from_secs(1)) {
                    Ok(Some(event)) => event,
                    Ok(None) => continue,
                    Err(error) => return Err(read_failure(reader, start, &error, printer)),
                }
            }
            Err(error) => return Err(read_failure(reader, start, &error, printer)),
        };
        match filter.judge(&event) {
            Verdict::Stop => return printer.flush(),
            Verdict::Skip => {}
            Verdict::Print => printer.event(&event)?,
        }
        if filter.full(printer.printed()) {
            return printer.flush();
        }
    }
}

/// The failure for an error met while reading, after printing what came before it.
fn read_failure(
    reader: &StreamReader,
    start: Start,
    error: &evstream::Error,
    printer: &mut Printer,
) -> Failure {
    if let Err(closed) = printer.flush() {
        return closed;
    }
    let path = reader.path();
    if let evstream::Error::Corrupt { offset, reason, .. } = error
        && start.from_user
        && *offset == start.offset
        && start.offset != STREAM_HEADER_LEN
    {
        // The library cannot tell an offset inside an event from a damaged event.
        return Failure::data(format!(
            "{}: no valid event starts at byte offset {offset} ({reason}); use an offset \
             printed by `evstream cat --format json`",
            path.display()
        ));
    }
    let printed = printer.printed();
    let events = if printed == 1 {
        "event was"
    } else {
        "events were"
    };
    Failure::stream(path, error).with_context(&format!(" ({printed} {events} printed before it)"))
}
