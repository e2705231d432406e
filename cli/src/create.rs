//! `evstream create FILE --capacity SIZE`, and `evstream create DIR --log ...`.

use std::path::PathBuf;
use std::time::Duration;

use evstream::{LogOptions, LogWriter, Prefault, StreamWriter, WriteBack, WriterOptions};

use crate::failure::Failure;
use crate::output;
use crate::staged::{self, Staged};
use crate::time;
use crate::units;

/// Examples shown by `evstream create --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream create sensors.evs --capacity 64MiB
  evstream create big.evs --capacity 1GiB
  evstream create tiny.evs --capacity 4096
  evstream create app-log --log                       # a log: 64 MiB segments, kept forever
  evstream create app-log --log --segment-size 256MiB --roll daily --retain-age 30d
  evstream create app-log --log --retain-size 10GiB --retain-segments 100
  evstream create app-log --log --retain-age 7d --retain-past-cursors  # 7 days, read or not
  evstream create app-log --log --write-back eager    # flush each segment once rolled past

The whole capacity is allocated on disk at once, so appends can never meet a full disk;
a stream that is full stays full (create a new one). An existing file is never replaced.
A log (--log) is a directory of such files, segments, that grows without bound: a new
segment is started when one is full or when the --roll interval (aligned to UTC) passes,
and the oldest segments are deleted when the log exceeds a --retain-* limit (never those
a named cursor still needs). Every command that takes a stream file takes a log too, but
`upgrade` (which converts version 1 stream files).";

/// Arguments of `evstream create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file to create (it must not exist), or with --log the log directory
    file: PathBuf,
    /// Size of the file, header included: bytes (4096) or with a unit (64MiB, 1GiB, 10MB)
    #[arg(long, short, value_name = "SIZE", value_parser = parse_capacity,
          required_unless_present = "log", conflicts_with = "log", allow_hyphen_values = true)]
    capacity: Option<u64>,
    /// Create a log: a directory of rolling segments instead of one file
    #[arg(long)]
    log: bool,
    /// Log: the size of each segment file (default 64MiB)
    #[arg(long, value_name = "SIZE", requires = "log", value_parser = crate::units::parse_size)]
    segment_size: Option<u64>,
    /// Log: also start a new segment every hour, every day (at midnight UTC), or every
    /// DURATION (such as 15m, 6h; aligned to the Unix epoch)
    #[arg(long, value_name = "hourly|daily|DURATION", requires = "log", value_parser = parse_roll)]
    roll: Option<Duration>,
    /// Log: delete the oldest segments while all of them take more than SIZE
    #[arg(long, value_name = "SIZE", requires = "log", value_parser = crate::units::parse_size)]
    retain_size: Option<u64>,
    /// Log: delete segments whose newest event is older than DURATION (such as 7d, 12h)
    #[arg(long, value_name = "DURATION", requires = "log", value_parser = parse_duration)]
    retain_age: Option<Duration>,
    /// Log: delete the oldest segments while there are more than N
    #[arg(long, value_name = "N", requires = "log", value_parser = clap::value_parser!(u64).range(1..))]
    retain_segments: Option<u64>,
    /// Log: let the --retain-* limits delete segments even before every named cursor
    /// has read them (by default a cursor that lags keeps them, and the log grows past
    /// its limits); each such deletion says which cursors lost which events
    #[arg(long, requires = "log")]
    retain_past_cursors: bool,
    /// Log: when segments the writer rolled past reach the disk without a flush: lazy
    /// (default), when the kernel writes them back; eager, each flushed at once (a power
    /// loss without a flush then takes less; a writer faster than the disk pays CPU for it)
    #[arg(long, value_name = "lazy|eager", requires = "log", value_enum)]
    write_back: Option<Policy>,
}

/// The write-back policies, as `--write-back` names them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Policy {
    Lazy,
    Eager,
}

/// Parses a positive DURATION.
fn parse_duration(input: &str) -> Result<Duration, String> {
    let nanos = time::duration(input)?;
    match u64::try_from(nanos) {
        Ok(nanos) if nanos > 0 => Ok(Duration::from_nanos(nanos)),
        _ => Err("a duration must be positive".to_owned()),
    }
}

/// Parses `hourly`, `daily` or a DURATION.
fn parse_roll(input: &str) -> Result<Duration, String> {
    match input {
        "hourly" => Ok(Duration::from_secs(3600)),
        "daily" => Ok(Duration::from_secs(86_400)),
        other => parse_duration(other),
    }
}

/// Parses SIZE and checks it against the capacities the library accepts.
pub fn parse_capacity(input: &str) -> Result<u64, String> {
    let bytes = units::parse_size(input)?;
    let minimum = evstream::format::MIN_CAPACITY;
    if bytes < minimum {
        return Err(format!(
            "a stream needs at least {minimum} bytes (its header and one empty event)"
        ));
    }
    Ok(bytes)
}

/// Creates the stream and prints its name and capacity.
pub fn run(args: Args) -> Result<(), Failure> {
    let Some(capacity) = args.capacity else {
        return create_log(&args);
    };
    // (clap's `requires` takes the --log flag's default value for its presence.)
    let log_only = [
        ("--segment-size", args.segment_size.is_some()),
        ("--roll", args.roll.is_some()),
        ("--retain-size", args.retain_size.is_some()),
        ("--retain-age", args.retain_age.is_some()),
        ("--retain-segments", args.retain_segments.is_some()),
        ("--retain-past-cursors", args.retain_past_cursors),
        ("--write-back", args.write_back.is_some()),
    ];
    if let Some((flag, _)) = log_only.iter().find(|(_, given)| *given) {
        return Err(Failure::usage(format!(
            "{flag} is a setting of a log: add --log to create one (a stream file has a capacity, not segments)"
        )));
    }
    // No prefaulting: nothing is appended here.
    let options = WriterOptions::default().prefault(Prefault::Off);
    let created = if staged::library_temp_fits(&args.file) {
        StreamWriter::create_with(&args.file, capacity, options)
            .map_err(|e| Failure::stream(&args.file, &e))?
            .capacity()
    } else {
        // A name too long for the library's temporary beside it (`.NAME.PID.N.tmp`):
        // made under a shorter temporary name, and renamed to it.
        let staged = Staged::new(&args.file)?;
        let capacity = StreamWriter::create_with(staged.temp(), capacity, options)
            .map_err(|e| Failure::stream(&args.file, &e))?
            .capacity();
        staged.commit()?;
        capacity
    };
    output::line(&format!(
        "created {}: capacity {}",
        args.file.display(),
        units::size_exact(created)
    ))
}

/// Creates a log directory with its first segment.
fn create_log(args: &Args) -> Result<(), Failure> {
    let mut options = LogOptions::default()
        .roll_interval(args.roll)
        .retain_size(args.retain_size)
        .retain_age(args.retain_age)
        .retain_segments(args.retain_segments)
        .retain_past_cursors(args.retain_past_cursors);
    if let Some(size) = args.segment_size {
        options = options.segment_size(size);
    }
    match args.write_back {
        Some(Policy::Eager) => options = options.write_back(WriteBack::Eager),
        Some(Policy::Lazy) => options = options.write_back(WriteBack::Lazy),
        None => {}
    }
    let log = LogWriter::create(&args.file, options).map_err(|e| match &e {
        // The library names the log's first segment: removing it, as the library's words
        // for a file in the way suggest, would delete the log's oldest events.
        evstream::Error::AlreadyExists { path }
            if path.parent() == Some(&args.file)
                && path.extension().is_some_and(|extension| extension == "evs") =>
        {
            // The settings file FORMAT.md names ("Logs").
            let settings = args.file.join("LOG");
            let what = if settings.exists() {
                "already is a log"
            } else {
                "already holds a log's segments (its LOG settings file is missing)"
            };
            Failure::data(format!(
                "{} {what}: its first segment is {}; choose another name (nothing was changed)",
                args.file.display(),
                path.display()
            ))
        }
        _ => Failure::stream(&args.file, &e),
    })?;
    output::line(&format!(
        "created {}: a log of {} segments",
        args.file.display(),
        units::size_exact(log.options().get_segment_size())
    ))
}
