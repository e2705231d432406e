//! `evstream tail FILE [-n N] [--since TIME] [--follow]`: the last events, then optionally
//! new ones.

use std::path::PathBuf;

use crate::cat::{self, Filter};
use crate::failure::Failure;
use crate::output::{Format, Layout, Printer, Template};
use crate::source::{Source, Start};
use crate::time::{self, TimeSpec, Zone};

/// Examples shown by `evstream tail --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream tail sensors.evs                     # the last 10 events
  evstream tail sensors.evs -n 100 --format jsonl
  evstream tail sensors.evs --since -15m -n 1000  # at most the last 1000 of the last 15 minutes
  evstream tail sensors.evs -n 0 --follow       # only events appended from now on
  evstream tail sensors.evs -f --template '{time} {text}\\n'

-n N prints the last N events, as `tail -n` prints the last N lines (`cat -n` prints the
first N). tail only reads: it works while a writer appends, and never changes the file.";

/// Arguments of `evstream tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file, or log directory
    file: PathBuf,
    /// Print the last N events
    #[arg(
        short = 'n',
        long = "lines",
        visible_alias = "limit",
        value_name = "N",
        default_value_t = 10
    )]
    count: u64,
    /// Only events at or after TIME (as for `cat --since`)
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    since: Option<TimeSpec>,
    /// How to print each event
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Print each event through a template (as for `cat --template`)
    #[arg(long, value_name = "TEMPLATE", value_parser = Template::parse, conflicts_with = "format")]
    template: Option<Template>,
    /// After the last event, keep printing new events as a writer appends them, until
    /// interrupted (Ctrl-C)
    #[arg(long, short)]
    follow: bool,
}

/// Prints the last `count` events, then follows if asked.
pub fn run(args: Args, zone: Zone) -> Result<(), Failure> {
    if crate::archive::is_archive(&args.file) {
        if args.follow {
            return Err(Failure::usage(
                "--follow reads a log or a stream file, not an archive",
            ));
        }
        let filter = Filter::new(args.since, None, None, &zone)?;
        let layout = Layout::new(args.format, args.template);
        return crate::archive::tail(&args.file, layout, args.count, filter, zone);
    }
    let source = Source::open(&args.file)?;
    let filter = Filter::new(args.since, None, None, &zone)?;
    let mut printer = Printer::stdout(Layout::new(args.format, args.template), zone)?;
    cat::show(
        &source,
        Start::Last(args.count),
        filter,
        &mut printer,
        args.follow,
    )
}
