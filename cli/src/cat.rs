//! `evstream cat FILE`: every event, or a filtered range, one a line; optionally following.

use std::path::PathBuf;

use crate::failure::Failure;
use crate::output::{Format, Layout, Printer, Template};
use crate::source::{Event, Flow, Source, Start, Stop};
use crate::time::{self, TimeSpec, Zone};

/// Examples shown by `evstream cat --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream cat sensors.evs
  evstream cat sensors.evs --since -1h                 # the last hour
  evstream cat sensors.evs --since yesterday --until today
  evstream cat sensors.evs --since 2024-05-01T12:00:00Z --until 2024-05-01T13:00:00Z
  evstream cat sensors.evs --since @1714564800 -n 100  # Unix seconds; the first 100
  evstream cat sensors.evs --format jsonl | jq -r .payload
  evstream cat sensors.evs --template '{time} {offset} {payload}\\n'
  evstream cat sensors.evs --format jsonl | evstream append copy.evs --format jsonl
  evstream cat sensors.evs --format binary | ssh host evstream append copy.evs --format binary
  evstream cat sensors.evs --follow --local
  evstream cat app-log/ --since -1h                    # a log: a directory of segments
  evstream cat app-log/ --cursor billing --follow      # resume where the last run stopped

TIME is RFC 3339 (2024-05-01T12:00:00Z, 2024-05-01T14:00:00.5+02:00), a date (2024-05-01)
or date and time without an offset, read in UTC (local time with --local), now, today,
yesterday, relative (-1h, -15m, -2d, '1h30m ago'), or Unix time with its unit (1714564800s,
1714564800000ms, ...us, ...ns, @1714564800). A bare number is refused. --since is
inclusive and --until exclusive. Offsets are those printed by --format jsonl; a log's
events have positions (SEGMENT:OFFSET) instead. cat only reads (but for --cursor): it
works while a writer appends, and follows a log across its segments.

--cursor NAME commits the cursor past the events written to standard output (every 4096
events, when --follow waits, and at the end, each time after flushing), never past one
not written. Written is not read: events in a pipe's buffer when its reader stops (| head,
a crash) are past the cursor and lost to the next run. For a consumer that may stop, take
batches through a file and remove it once handled (a batch left behind is handled again):
  [ -s batch ] || evstream cat app-log --cursor billing -n 1000 > batch
  handle < batch && rm batch";

/// Arguments of `evstream cat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file, or log directory
    file: PathBuf,
    /// How to print each event
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Print each event through a template such as '{time} {offset} {payload}\n'
    /// (placeholders: time timestamp offset size checksum payload text hex base64 json)
    #[arg(long, value_name = "TEMPLATE", value_parser = Template::parse, conflicts_with = "format")]
    template: Option<Template>,
    /// Start at the event at this byte offset (as printed by --format jsonl)
    #[arg(long, value_name = "N")]
    from_offset: Option<u64>,
    /// Only events at or after TIME (RFC 3339, date, now, -1h, yesterday, 1714564800s, ...)
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    since: Option<TimeSpec>,
    /// Only events before TIME
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    until: Option<TimeSpec>,
    /// Print the first N events (as `head -n`; `tail -n` prints the last N)
    #[arg(long = "lines", short = 'n', visible_alias = "limit", value_name = "N")]
    lines: Option<u64>,
    /// After the last event, keep printing new events as a writer appends them, until
    /// interrupted (Ctrl-C)
    #[arg(long, short)]
    follow: bool,
    /// Log only: start at the named cursor's position (the start of the log the first
    /// time) and commit the cursor past the events written to standard output, so the next
    /// run resumes after them (events a pipe's reader did not read are past it too)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["from_offset", "since"],
          value_parser = crate::cursor::cursor_name)]
    cursor: Option<String>,
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

impl Filter {
    /// The filter for `--since`, `--until` and a limit, times read in `zone`.
    ///
    /// # Errors
    /// A usage failure for a time outside the range of timestamps.
    pub fn new(
        since: Option<TimeSpec>,
        until: Option<TimeSpec>,
        limit: Option<u64>,
        zone: &Zone,
    ) -> Result<Self, Failure> {
        let now = time::now();
        let resolve = |spec: Option<TimeSpec>, flag: &str| {
            spec.map(|spec| {
                spec.resolve(zone, now)
                    .map_err(|why| Failure::usage(format!("{flag}: {why}")))
            })
            .transpose()
        };
        Ok(Self {
            since: resolve(since, "--since")?,
            until: resolve(until, "--until")?,
            limit,
        })
    }

    fn full(&self, printed: u64) -> bool {
        self.limit.is_some_and(|limit| printed >= limit)
    }
}

/// Prints the events the arguments select.
pub fn run(args: Args, zone: Zone) -> Result<(), Failure> {
    if crate::archive::is_archive(&args.file) {
        if args.follow || args.cursor.is_some() || args.from_offset.is_some() {
            return Err(Failure::usage(
                "--follow, --cursor and --from-offset read a log or a stream file, not an archive",
            ));
        }
        let filter = Filter::new(args.since, args.until, args.lines, &zone)?;
        let layout = Layout::new(args.format, args.template);
        return crate::archive::cat(&args.file, layout, filter, zone);
    }
    let mut source = Source::open(&args.file)?;
    if let Some(name) = args.cursor {
        source = source.with_cursor(name)?;
    }
    let filter = Filter::new(args.since, args.until, args.lines, &zone)?;
    let start = match (args.from_offset, filter.since) {
        (Some(offset), _) => Start::Offset(offset),
        (None, Some(since)) => Start::Time(since),
        (None, None) => Start::Beginning,
    };
    let mut printer = Printer::stdout(Layout::new(args.format, args.template), zone)?;
    show(&source, start, filter, &mut printer, args.follow)
}

/// Prints events of `source` from `start` that pass `filter`, then, with `follow`, new
/// events as they are published.
pub fn show(
    source: &Source,
    start: Start,
    filter: Filter,
    printer: &mut Printer,
    follow: bool,
) -> Result<(), Failure> {
    if filter.full(0) {
        return Ok(());
    }
    let result = {
        let printer = std::cell::RefCell::new(&mut *printer);
        let mut idle = || printer.borrow_mut().flush();
        let mut visit = |event: &Event<'_>| {
            let timestamp = event.timestamp;
            if filter.until.is_some_and(|until| timestamp >= until) {
                return Ok(Flow::Before);
            }
            if filter.since.is_some_and(|since| timestamp < since) {
                return Ok(Flow::Skipped);
            }
            let mut printer = printer.borrow_mut();
            printer.event(event)?;
            Ok(if filter.full(printer.printed()) {
                Flow::Last
            } else {
                Flow::Shown
            })
        };
        source.visit(start, follow, &mut idle, &mut visit)
    };
    match result {
        Ok(()) => printer.flush(),
        Err(Stop::Visitor(failure)) => Err(failure),
        Err(Stop::Read(failure)) => {
            printer.flush()?;
            let printed = printer.printed();
            let events = if printed == 1 {
                "event was"
            } else {
                "events were"
            };
            Err(failure.with_context(&format!(" ({printed} {events} printed before it)")))
        }
    }
}
