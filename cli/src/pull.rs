//! `evstream pull --from nats://HOST:PORT --stream NAME --to TARGET`.

use std::path::PathBuf;

use evstream_nats::PullOptions;

use crate::failure::Failure;
use crate::nats::{self, ConnectArgs};
use crate::units;

/// Examples shown by `evstream pull --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream pull --from nats://127.0.0.1:4222 --stream APP --to copy.log --create-log
  evstream pull --from nats://127.0.0.1:4222 --stream APP --to copy.evs --create 1GiB
  evstream pull --from nats://a:4222,nats://b:4222 --stream APP --to copy.evs --until-end

A durable JetStream consumer (default name evstream-pull) appends each message to the
stream file, with the timestamp from its Evstream-Timestamp header (or the time JetStream
stored it). A pull killed at any moment and restarted neither loses nor duplicates a
message: the file pull.CONSUMER in the log (FILE.pull.CONSUMER beside a stream file)
records what was applied, and from which JetStream stream (its name and creation time):
a pull from another stream, or from one deleted and made again, is refused before it
appends anything. A target made by --create or --create-log is written as
.NAME.pulling beside it and renamed to NAME once the pull first catches up, so a pull
cut off before that leaves nothing under NAME (the next pull goes on with .NAME.pulling).";

/// Arguments of `evstream pull`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// NATS server URL(s): nats://HOST:PORT, comma-separated or repeated
    #[arg(long, required = true, value_name = "URL")]
    from: Vec<String>,
    /// The JetStream stream to read
    #[arg(long, value_name = "NAME")]
    stream: String,
    /// The log directory or stream file to append to
    #[arg(long, value_name = "TARGET")]
    to: PathBuf,
    /// The durable consumer's name
    #[arg(long, default_value = "evstream-pull", value_name = "NAME")]
    consumer: String,
    /// Create the target as a stream file of this capacity if it does not exist (1GiB);
    /// it gets its name once the pull first catches up
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, conflicts_with = "create_log")]
    create: Option<u64>,
    /// Create the target as a log if it does not exist; it gets its name once the pull
    /// first catches up
    #[arg(long)]
    create_log: bool,
    /// With --create-log: the size of each segment
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, requires = "create_log")]
    segment_size: Option<u64>,
    /// Stop when the stream holds no message after the last one appended, instead of
    /// waiting for more
    #[arg(long)]
    until_end: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs `evstream pull`.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut options = PullOptions::new(&args.stream, &args.to)
        .consumer(&args.consumer)
        .until_end(args.until_end);
    if let Some(capacity) = args.create {
        options = options.create(capacity);
    }
    if args.create_log {
        let mut log = evstream::LogOptions::default();
        if let Some(size) = args.segment_size {
            log = log.segment_size(size);
        }
        options = options.create_log(log);
    }
    let connection = args.connect.connection(&args.from);
    let report = args.connect.reporter("pull");
    let summary = nats::block_on(evstream_nats::pull(&connection, &options, report))?
        .map_err(nats::failure)?;
    if !args.connect.quiet {
        eprintln!(
            "evstream pull: done: {} events appended, {} redelivered ones skipped, last sequence {}",
            summary.events, summary.skipped, summary.last_sequence
        );
    }
    Ok(())
}
