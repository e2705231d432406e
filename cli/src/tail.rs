//! `evstream tail FILE [-n N] [--follow]`: the last events, then optionally new ones.

use std::path::PathBuf;

use evstream::StreamReader;

use crate::cat::{self, Filter, Start};
use crate::failure::Failure;
use crate::output::{Format, Printer};

/// Examples shown by `evstream tail --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream tail sensors.evs              # the last 10 events
  evstream tail sensors.evs -n 100 --format json
  evstream tail sensors.evs -n 0 --follow   # only events appended from now on

tail only reads: it works while a writer appends, and never changes the file.";

/// Arguments of `evstream tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file
    file: PathBuf,
    /// How many of the last events to print
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 10)]
    count: u64,
    /// How to print each event
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// After the last event, keep printing new events as a writer appends them, until
    /// interrupted (Ctrl-C)
    #[arg(long, short)]
    follow: bool,
}

/// Prints the last `count` events, then follows if asked.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = args.file.as_path();
    let reader = StreamReader::open(path).map_err(|e| Failure::stream(path, &e))?;
    let offset = start_of_last(&reader, args.count);
    let mut printer = Printer::stdout(args.format);
    let start = Start {
        offset,
        from_user: false,
    };
    cat::show(&reader, start, Filter::default(), &mut printer, args.follow)
}

/// The offset of the `count`-th event from the end of the reader's snapshot.
///
/// The format has no backward links, so this walks the event headers twice (first to
/// count, then to the start) without checking checksums or reading payloads; the events
/// printed from there are checked as usual. Damage that misaligns the walk therefore
/// shows up as a failed checksum when printing; damage inside an earlier payload is
/// `verify`'s business.
fn start_of_last(reader: &StreamReader, count: u64) -> u64 {
    let headers = || reader.iter_unverified().map_while(Result::ok);
    let total = headers().count() as u64;
    let skip = total.saturating_sub(count);
    if skip == 0 {
        return evstream::format::STREAM_HEADER_LEN;
    }
    let Ok(before) = usize::try_from(skip - 1) else {
        return reader.write_offset();
    };
    headers()
        .nth(before)
        .map_or(reader.write_offset(), |event| event.next_offset())
}
