//! `evstream ship SOURCE --to nats://HOST:PORT --subject SUBJECT`.

use std::path::PathBuf;
use std::time::Duration;

use evstream_nats::{ShipOptions, StreamSettings};

use crate::failure::Failure;
use crate::nats::{self, ConnectArgs};
use crate::units;

/// Examples shown by `evstream ship --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream ship app.log --to nats://127.0.0.1:4222 --subject app.events --create-stream \\
      --stream APP --cursor shipper
  evstream ship app.evs --to nats://127.0.0.1:4222 --subject app.events --create-stream
  evstream ship app.evs --to nats://a:4222,nats://b:4222 --subject app.events \\
      --stream APP --cursor ship --until-end
  evstream ship app.evs --to tls://nats.example:4222 --creds app.creds --subject app.events

Each event becomes one JetStream message: its payload, an Evstream-Timestamp header (Unix
ns) and a Nats-Msg-Id unique to the event. A ship killed at any moment and restarted
leaves every event in JetStream exactly once, in order: it resumes after the last message
JetStream holds, and with --cursor also commits its position to the log's named cursor
(so retention keeps what it still has to ship; FILE.ship.NAME for a stream file). The
JetStream stream must take messages from this ship only: SUBJECT is one concrete subject
(no wildcard), and a message on it (or later in the stream) that this ship did not
publish stops it with an error naming that message, before it publishes anything.";

/// Arguments of `evstream ship`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory or stream file to ship
    file: PathBuf,
    /// NATS server URL(s): nats://HOST:PORT, comma-separated or repeated for a cluster
    #[arg(long, required = true, value_name = "URL")]
    to: Vec<String>,
    /// The subject to publish on: one concrete subject (no '*' or '>' wildcard, no empty
    /// token), which nothing else publishes to
    #[arg(long, value_parser = parse_subject)]
    subject: String,
    /// The JetStream stream (default: the one that takes SUBJECT); its subjects must take
    /// SUBJECT
    #[arg(long, value_name = "NAME")]
    stream: Option<String>,
    /// Save the position under this cursor name after acknowledgements (a log's named
    /// cursor; for a stream file, FILE.ship.NAME)
    #[arg(long, value_name = "NAME")]
    cursor: Option<String>,
    /// Create the JetStream stream if it does not exist
    #[arg(long)]
    create_stream: bool,
    /// With --create-stream: replicas of each message (1 to 5)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    /// With --create-stream: discard messages older than this (90s, 15m, 12h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = nats::parse_duration)]
    max_age: Option<Duration>,
    /// With --create-stream: discard the oldest messages beyond this size (10GiB)
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_bytes: Option<u64>,
    /// Publishes awaiting acknowledgement at most
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    window: u32,
    /// Stop when everything published so far is acknowledged, instead of following
    #[arg(long)]
    until_end: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// A subject `ship` can publish on (the library's check, as a usage error).
fn parse_subject(subject: &str) -> Result<String, String> {
    match evstream_nats::check_subject(subject) {
        Ok(()) => Ok(subject.to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `evstream ship`.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut options = ShipOptions::new(&args.file, &args.subject)
        .window(args.window as usize)
        .until_end(args.until_end);
    if let Some(stream) = &args.stream {
        options = options.stream(stream);
    }
    if let Some(name) = &args.cursor {
        options = options.cursor(name);
    }
    if args.create_stream {
        options = options.create_stream(StreamSettings {
            replicas: usize::from(args.replicas),
            max_age: args.max_age,
            max_bytes: args.max_bytes,
            ..StreamSettings::default()
        });
    }
    let connection = args.connect.connection(&args.to);
    let report = args.connect.reporter("ship");
    let summary = nats::block_on(evstream_nats::ship(&connection, &options, report))?
        .map_err(nats::failure)?;
    if !args.connect.quiet {
        eprintln!(
            "evstream ship: done: {} events acknowledged ({} already held), position {}",
            summary.events, summary.duplicates, summary.position
        );
    }
    Ok(())
}
