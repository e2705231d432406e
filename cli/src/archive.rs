//! `evstream archive LOG --to s3://BUCKET/PREFIX` and `evstream restore`, and the reading
//! commands (`cat`, `tail`, `stat`, `verify`) given an `s3://` archive instead of a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evstream::LogOptions;
use evstream_archive::{
    Archive, ArchiveOptions, ArchiveReader, ArchivedEvent, Error, Location, Progress, Settings,
    archive_log, error_chain,
};

use crate::cat::Filter;
use crate::failure::Failure;
use crate::output::{self, Layout, Printer};
use crate::source::Event;
use crate::time::{self, TimeSpec, Zone};
use crate::units;

/// Examples shown by `evstream archive --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream archive app-log --to s3://events/app
  evstream archive app-log --to s3://events/app --follow --retain-age 400d
  evstream archive app-log --to s3://events/app --endpoint http://127.0.0.1:8333
  evstream cat s3://events/app --since 2026-05-01T12:00:00Z --until 2026-05-01T13:00:00Z
  evstream tail s3://events/app -n 20
  evstream stat s3://events/app
  evstream verify s3://events/app
  evstream restore s3://events/app --to app-copy --since -7d

Uploads each sealed segment once, with its index, checks each upload against the
segment's checksum, then moves the log's cursor (`archive`, or --cursor NAME) past it: the
log's retention keeps every segment the cursor has not passed, so nothing is deleted
locally before it is archived. Run again (or with --follow), it goes on where it stopped.
Credentials and endpoint: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION, AWS_ENDPOINT_URL, or the profile AWS_PROFILE (else default) of
~/.aws/credentials and ~/.aws/config; --endpoint and --region override them.";

/// Examples shown by `evstream restore --help`.
pub const RESTORE_EXAMPLES: &str = "\
Examples:
  evstream restore s3://events/app --to app-copy
  evstream restore s3://events/app --to app-last-week --since -7d

Builds a new log from the archive's events (from --since on) as .NAME.restoring beside
LOG and renames it into place when complete. The events keep their timestamps and
payloads; their positions are the new log's.";

/// Where the archive is and how to reach it.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The S3 endpoint URL (default: AWS_ENDPOINT_URL, the profile's endpoint_url, or AWS)
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The S3 region (default: AWS_REGION, the profile's region, or us-east-1)
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

/// Arguments of `evstream archive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The log directory
    log: PathBuf,
    /// The archive: s3://BUCKET/PREFIX
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    to: String,
    #[command(flatten)]
    connection: Connection,
    /// Keep running and archive each segment as it is sealed, until interrupted
    #[arg(long, short)]
    follow: bool,
    /// The log's cursor that records which segments are archived
    #[arg(long, value_name = "NAME", default_value = evstream_archive::DEFAULT_CURSOR)]
    cursor: String,
    /// Archive side: delete archived segments whose newest event is older than DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retain_age: Option<Duration>,
    /// Archive side: delete the oldest archived segments while they take more than SIZE
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    retain_size: Option<u64>,
}

/// Arguments of `evstream restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The archive: s3://BUCKET/PREFIX
    url: String,
    /// The log to create (it must not exist)
    #[arg(long, value_name = "LOG")]
    to: PathBuf,
    /// Only events at or after TIME (as for `cat --since`)
    #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
    since: Option<TimeSpec>,
    /// The new log's segment size (default: the archived log's)
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    segment_size: Option<u64>,
    #[command(flatten)]
    connection: Connection,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let nanos = time::duration(text)?;
    u64::try_from(nanos)
        .ok()
        .filter(|&n| n > 0)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text}: a duration must be positive"))
}

/// Whether a reading command's FILE argument is an archive URL.
pub fn is_archive(file: &Path) -> bool {
    file.to_str().is_some_and(Location::is_url)
}

/// The failure for an archive error: one line, exit status 1 (2 for a bad URL, endpoint
/// or region).
fn failure(e: &Error) -> Failure {
    match e {
        Error::Url { .. } | Error::Malformed { .. } => Failure::usage(e.to_string()),
        // These say all a user needs; their causes are the client's internals.
        Error::Unreachable { .. } | Error::Denied { .. } | Error::NoBucket { .. } => {
            Failure::data(e.to_string())
        }
        // A store's XML error body spans lines: the failure is one line.
        _ => Failure::data(error_chain(e).replace(['\n', '\r'], " ")),
    }
}

fn connect(url: &str, connection: Option<&Connection>) -> Result<Archive, Failure> {
    let settings = Settings {
        endpoint: connection.and_then(|c| c.endpoint.clone()),
        region: connection.and_then(|c| c.region.clone()),
        ..Settings::default()
    };
    Archive::connect(url, &settings).map_err(|e| failure(&e))
}

fn open(file: &Path) -> Result<ArchiveReader, Failure> {
    let url = file.to_string_lossy();
    ArchiveReader::open(connect(&url, None)?).map_err(|e| failure(&e))
}

/// `evstream archive`.
pub fn run(args: Args) -> Result<(), Failure> {
    let archive = connect(&args.to, Some(&args.connection))?;
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow && !crate::source::sigint_ignored() {
        let flag = Arc::clone(&stop);
        // Without a handler Ctrl-C ends the process between two steps, which is safe too;
        // with one, the current upload finishes first. An upload to a store that is down
        // only retries: a second Ctrl-C ends the process at once, as a kill would (the
        // next run resumes), with the status of a follow that Ctrl-C ended.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let options = ArchiveOptions {
        cursor: args.cursor,
        follow: args.follow,
        stop: Some(stop),
        retain_age: args.retain_age,
        retain_size: args.retain_size,
        ..ArchiveOptions::default()
    };
    let location = archive.location().to_string();
    let report = archive_log(&args.log, &archive, &options, |p| match p {
        Progress::Uploaded { seq, bytes } => {
            crate::failure::note(&format!(
                "archived segment {seq} ({}) to {location}",
                units::size(*bytes)
            ));
        }
        Progress::Deleted { seq } => {
            crate::failure::note(&format!(
                "deleted archived segment {seq} (archive retention)"
            ));
        }
        Progress::Retrying { error } => crate::failure::note(&format!(
            "{}; trying again",
            error.replace(['\n', '\r'], " ")
        )),
        _ => {}
    })
    .map_err(|e| match &e {
        Error::Log(inner) => Failure::stream(&args.log, inner),
        _ => failure(&e),
    })?;
    output::line(&format!(
        "{}: {} archived now ({}), {} already archived, {} deleted by archive retention",
        args.log.display(),
        units::count(report.uploaded, "segment"),
        units::size(report.bytes),
        report.already,
        report.deleted
    ))
}

/// `evstream restore`.
pub fn restore(args: RestoreArgs, zone: &Zone) -> Result<(), Failure> {
    let reader = ArchiveReader::open(connect(&args.url, Some(&args.connection))?)
        .map_err(|e| failure(&e))?;
    let filter = Filter::new(args.since, None, None, zone)?;
    let mut options = LogOptions::default();
    if let Some(size) = args.segment_size {
        options = options.segment_size(size);
    } else if let Some(size) = reader.segment_capacity().map_err(|e| failure(&e))? {
        options = options.segment_size(size);
    }
    let count = reader
        .restore(&args.to, filter.since, options)
        .map_err(|e| match &e {
            Error::Log(inner) => Failure::stream(&args.to, inner),
            _ => failure(&e),
        })?;
    output::line(&format!(
        "{}: restored {count} events from {}",
        args.to.display(),
        args.url
    ))
}

fn print(printer: &mut Printer, event: &ArchivedEvent) -> Result<(), Failure> {
    printer.event(&Event {
        offset: event.position().offset(),
        position: Some(event.position()),
        timestamp: event.timestamp(),
        checksum: event.checksum(),
        payload: event.payload(),
    })
}

/// `evstream cat s3://...`: events from the archive; a damaged object or a gap (segments
/// missing between the archived ones) is named on standard error and skipped, and the
/// exit status is 1 at the end.
pub fn cat(file: &Path, layout: Layout, filter: Filter, zone: Zone) -> Result<(), Failure> {
    let reader = open(file)?;
    let mut printer = Printer::stdout(layout, zone)?;
    let events = match filter.since {
        Some(since) => reader.iter_since(since),
        None => Ok(reader.iter()),
    };
    let mut damage: Option<Failure> = None;
    let report = |e: &Error, damage: &mut Option<Failure>| {
        crate::failure::note(&format!("skipped: {}", error_chain(e)));
        damage.get_or_insert_with(|| failure(e));
    };
    match events {
        Err(e) => report(&e, &mut damage),
        Ok(events) => {
            for event in events {
                let event = match event {
                    Ok(event) => event,
                    Err(e @ (Error::Corrupt { .. } | Error::Missing { .. })) => {
                        printer.flush()?;
                        report(&e, &mut damage);
                        continue;
                    }
                    Err(e) => {
                        printer.flush()?;
                        return Err(failure(&e));
                    }
                };
                if filter.until.is_some_and(|until| event.timestamp() >= until) {
                    break;
                }
                print(&mut printer, &event)?;
                if filter.limit.is_some_and(|limit| printer.printed() >= limit) {
                    break;
                }
            }
        }
    }
    printer.flush()?;
    damage.map_or(Ok(()), Err)
}

/// `evstream tail s3://...`.
pub fn tail(
    file: &Path,
    layout: Layout,
    count: u64,
    filter: Filter,
    zone: Zone,
) -> Result<(), Failure> {
    let reader = open(file)?;
    let mut printer = Printer::stdout(layout, zone)?;
    let events = reader.tail(count).map_err(|e| failure(&e))?;
    for event in events {
        if filter.since.is_some_and(|since| event.timestamp() < since) {
            continue;
        }
        print(&mut printer, &event)?;
    }
    printer.flush()
}

/// `evstream stat s3://...`.
pub fn stat(file: &Path, json: bool, zone: &Zone) -> Result<(), Failure> {
    let reader = open(file)?;
    let stat = reader.stat().map_err(|e| failure(&e))?;
    let location = reader.archive().location().to_string();
    let show = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| zone.show(t).to_string());
    if json {
        let text = format!(
            "{{\"archive\":{},\"segments\":{},\"bytes\":{},\"events\":{},\"first_timestamp\":{},\"last_timestamp\":{},\"incomplete\":{},\"missing\":{},\"damaged\":{}}}",
            serde_json::Value::from(location.as_str()),
            stat.segments,
            stat.bytes,
            stat.events,
            stat.first_timestamp
                .map_or("null".to_owned(), |t| format!("\"{t}\"")),
            stat.last_timestamp
                .map_or("null".to_owned(), |t| format!("\"{t}\"")),
            stat.incomplete.len(),
            stat.gaps.iter().map(|g| g.count()).sum::<u64>(),
            stat.damaged.len(),
        );
        return output::line(&text);
    }
    let seqs = stat
        .seqs
        .map_or_else(|| "-".to_owned(), |(a, b)| format!("{a} to {b}"));
    let mut text = format!(
        "archive:   {location}\nsegments:  {} ({seqs})\nsize:      {}\nevents:    {}\nfirst:     {}\nlast:      {}",
        stat.segments,
        units::size(stat.bytes),
        stat.events,
        show(stat.first_timestamp),
        show(stat.last_timestamp),
    );
    for key in &stat.incomplete {
        text.push_str(&format!(
            "\nincomplete: {key} (left alone by an upload or by archive retention, in progress or interrupted; not read)"
        ));
    }
    for gap in &stat.gaps {
        text.push_str(&format!("\ngap:       {gap}"));
    }
    for (key, why) in &stat.damaged {
        text.push_str(&format!("\ndamaged:   {key}: {why}"));
    }
    output::line(&text)
}

/// `evstream verify s3://...`: exit status 1 naming each damaged object and each gap.
pub fn verify(file: &Path) -> Result<(), Failure> {
    let reader = open(file)?;
    let location = reader.archive().location().to_string();
    let result = reader.verify(|_, _| {}).map_err(|e| failure(&e))?;
    if result.is_ok() {
        return output::line(&format!(
            "{location}: OK, {}, {}",
            units::count(result.good_segments, "segment"),
            units::count(result.events, "event")
        ));
    }
    for gap in &result.gaps {
        crate::failure::note(&format!("missing: {location}: {gap}"));
    }
    for (key, why) in &result.damaged {
        crate::failure::note(&format!("damaged: {key}: {why}"));
    }
    let mut found = Vec::new();
    if !result.gaps.is_empty() {
        let missing: u64 = result.gaps.iter().map(|g| g.count()).sum();
        let ranges: Vec<String> = result
            .gaps
            .iter()
            .map(|g| {
                if g.first == g.last {
                    g.first.to_string()
                } else {
                    format!("{} to {}", g.first, g.last)
                }
            })
            .collect();
        found.push(format!(
            "{} ({})",
            units::count(missing, "missing segment"),
            ranges.join(", ")
        ));
    }
    if !result.damaged.is_empty() {
        found.push(format!(
            "{} ({})",
            units::count(result.damaged.len() as u64, "damaged object"),
            result
                .damaged
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Err(Failure::data(format!(
        "{location}: {}, {} intact",
        found.join(", "),
        units::count(result.good_segments, "segment")
    )))
}
