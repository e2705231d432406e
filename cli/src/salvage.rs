//! `evstream salvage SRC DST`: copy every readable event of a damaged stream or log to a
//! new one.

use std::path::{Path, PathBuf};

use evstream::salvage::{Found, Salvage};
use evstream::{LogReader, LogWriter, Prefault, StreamWriter, WriterOptions};

use crate::create;
use crate::failure::{self, Failure};
use crate::output;
use crate::progress;
use crate::staged::Staged;
use crate::time::Zone;
use crate::units;

/// Examples shown by `evstream salvage --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream salvage damaged.evs rescued.evs
  evstream salvage damaged.evs rescued.evs --capacity 1GiB
  evstream salvage app.log rescued.log

Reads SRC without changing it and writes the events whose checksums match, in order, to
DST, a new stream (the same capacity as SRC unless --capacity is given; more when SRC was
cut short, so that every event found fits). After a damaged event it searches for the
next event that checks out and reports each skipped range on standard output: its byte
offset, its length and what was wrong at its start. DST is created only when at least one
event is found (or SRC is an intact empty stream): it is built under a temporary name
beside DST (.DST.PID.partial), flushed to disk, and renamed to DST only when complete, so
an interrupted salvage (Ctrl-C, a kill, an error) never leaves a partial DST. A log
directory is salvaged segment by segment, oldest first, into a new log with the same
segment size, roll interval and write-back policy but no retention limit, so that it
keeps every salvaged event (to apply limits again, copy it into a log created with them:
evstream cat DST --format binary | evstream append NEW --format binary); each damaged
range names its segment file, and an event whose timestamp is lower than the previous one
salvaged (possible only across damaged segments) is skipped and reported; a segment the
log's retention deletes before the salvage reaches it (a writer appending meanwhile) is
passed over with a note on standard error. The report on standard output never decides
whether DST is made: standard output closed early (| head) stops it quietly; standard
output that fails stops it, and the command exits 1 once DST is made, with the summary on
its error line. Exit status 0 when the copy is made (with or
without damage), 1 when SRC has no readable event or cannot be read, DST cannot be
written, or standard output failed.";

/// Arguments of `evstream salvage`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The damaged stream file or log directory (only read)
    src: PathBuf,
    /// The new stream file (or, for a log, log directory) to write; it must not exist
    dst: PathBuf,
    /// Capacity of DST (default: SRC's length); not for logs
    #[arg(long, value_name = "SIZE", value_parser = create::parse_capacity)]
    capacity: Option<u64>,
}

/// Where salvaged events go: a stream created on the first event, or a log.
// One sink per command: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Sink<'a> {
    Stream {
        path: &'a Path,
        capacity: u64,
        writer: Option<StreamWriter>,
    },
    Log {
        path: &'a Path,
        options: evstream::LogOptions,
        writer: Option<LogWriter>,
    },
}

impl Sink<'_> {
    fn created(&self) -> bool {
        match self {
            Self::Stream { writer, .. } => writer.is_some(),
            Self::Log { writer, .. } => writer.is_some(),
        }
    }

    /// Creates the destination (once) and appends an event to it.
    fn append(&mut self, timestamp: i64, payload: &[u8]) -> evstream::Result<()> {
        match self {
            Self::Stream {
                path,
                capacity,
                writer,
            } => {
                if writer.is_none() {
                    let options = WriterOptions::default().prefault(Prefault::Background);
                    *writer = Some(StreamWriter::create_with(path, *capacity, options)?);
                }
                match writer {
                    Some(w) => w.append(timestamp, payload).map(drop),
                    None => Ok(()),
                }
            }
            Self::Log {
                path,
                options,
                writer,
            } => {
                if writer.is_none() {
                    *writer = Some(LogWriter::create(path, options.clone())?);
                }
                match writer {
                    Some(w) => w.append(timestamp, payload).map(drop),
                    None => Ok(()),
                }
            }
        }
    }

    /// Creates an empty destination if none was created yet, and flushes it.
    fn finish(&mut self, create_empty: bool) -> evstream::Result<()> {
        match self {
            Self::Stream {
                path,
                capacity,
                writer,
            } => {
                if writer.is_none() && create_empty {
                    let options = WriterOptions::default().prefault(Prefault::Off);
                    *writer = Some(StreamWriter::create_with(path, *capacity, options)?);
                }
                writer.as_mut().map_or(Ok(()), StreamWriter::flush)
            }
            Self::Log {
                path,
                options,
                writer,
            } => {
                if writer.is_none() && create_empty {
                    *writer = Some(LogWriter::create(path, options.clone())?);
                }
                writer.as_mut().map_or(Ok(()), LogWriter::flush)
            }
        }
    }
}

/// The report on standard output: each damaged range, then the summary. It comes second
/// to DST: a standard output that is closed or fails stops the report, never the
/// salvage; the first failure is kept for the end.
#[derive(Default)]
struct Report {
    failed: Option<Failure>,
}

impl Report {
    /// Prints `text` (above the progress bar, if one is shown), unless standard output
    /// already failed.
    fn line(&mut self, bar: Option<&indicatif::ProgressBar>, text: &str) {
        if self.failed.is_some() {
            return;
        }
        let printed = match bar {
            Some(bar) => bar.suspend(|| output::line(text)),
            None => output::line(text),
        };
        if let Err(failure) = printed {
            self.failed = Some(failure);
        }
    }

    /// The command's outcome once DST is made and `summary` was printed: success, also
    /// when the reader of standard output closed it early (as `head` does: it wanted no
    /// more), and a failure naming DST and the summary when writing failed otherwise.
    fn outcome(self, summary: &str) -> Result<(), Failure> {
        match self.failed {
            None | Some(Failure::ClosedOutput) => Ok(()),
            Some(Failure::Interrupted) => Err(Failure::Interrupted),
            Some(Failure::Error { message, .. }) => Err(Failure::data(format!(
                "{message} (the report there is incomplete); the salvage itself completed: \
                 {summary}"
            ))),
        }
    }
}

/// What a salvage found, across every file it scanned.
#[derive(Default)]
struct Tally {
    events: u64,
    event_bytes: u64,
    ranges: u64,
    damaged_bytes: u64,
    first_last: Option<(i64, i64)>,
    last_timestamp: Option<i64>,
    bad_header: bool,
}

/// Scans SRC, appends what checks out to DST, and reports the damaged ranges.
pub fn run(args: Args, zone: &Zone) -> Result<(), Failure> {
    let src = args.src.as_path();
    let dst = args.dst.as_path();
    // DST is built under a temporary name and appears only when complete.
    let staged = Staged::new(dst)?;
    let temp = staged.temp();
    let (files, mut sink) = if src.is_dir() {
        if args.capacity.is_some() {
            return Err(Failure::usage(
                "--capacity is for stream files; a salvaged log keeps its segment size",
            ));
        }
        let log = LogReader::open(src).map_err(|e| Failure::stream(src, &e))?;
        let files = log
            .segment_files()
            .map_err(|e| Failure::stream(src, &e))?
            .into_iter()
            .map(|(seq, path)| (Some(seq), path))
            .collect::<Vec<_>>();
        let sink = Sink::Log {
            path: temp,
            options: without_retention(log.options()),
            writer: None,
        };
        (files, sink)
    } else {
        let capacity = match args.capacity {
            Some(capacity) => capacity,
            None => default_capacity(src),
        };
        let sink = Sink::Stream {
            path: temp,
            capacity,
            writer: None,
        };
        (vec![(None, src.to_owned())], sink)
    };
    let mut tally = Tally::default();
    let mut report = Report::default();
    let mut result = Ok(());
    for (seq, file) in &files {
        let opened = match seq {
            Some(seq) => open_segment(src, *seq, file),
            None => Salvage::open(file)
                .map(|salvage| Some((salvage, file.clone())))
                .map_err(|e| Failure::stream(file, &e)),
        };
        result = match opened {
            Ok(Some((salvage, file))) => salvage_file(
                salvage,
                &file,
                seq.is_some(),
                dst,
                &mut sink,
                &mut tally,
                &mut report,
            ),
            Ok(None) => Ok(()),
            Err(failure) => Err(failure),
        };
        if result.is_err() {
            break;
        }
    }
    let intact_and_empty = tally.ranges == 0 && !tally.bad_header;
    let finished = sink
        .finish(intact_and_empty)
        .map_err(|e| Failure::stream(dst, &e));
    let created = sink.created();
    // Closed before the rename: a log's threads know it by its directory's name.
    drop(sink);
    let not_created =
        |failure: Failure| failure.with_context(&format!(" ({} was not created)", dst.display()));
    result.map_err(not_created)?;
    finished.map_err(not_created)?;
    if created {
        staged.commit()?;
    } else {
        let damage = if tally.ranges == 0 {
            String::new()
        } else {
            format!(
                " ({}, {})",
                units::count(tally.ranges, "damaged range"),
                units::size_exact(tally.damaged_bytes)
            )
        };
        return Err(Failure::data(format!(
            "{}: no readable event found{damage}: it is not a stream file, or none of its \
             events survived; {} was not created",
            src.display(),
            dst.display()
        )));
    }
    let span = tally.first_last.map_or_else(String::new, |(first, last)| {
        format!(", {} to {}", zone.show(first), zone.show(last))
    });
    let summary = format!(
        "salvaged {} ({}{span}) from {} to {}; skipped {} ({})",
        units::count(tally.events, "event"),
        units::size(tally.event_bytes),
        src.display(),
        dst.display(),
        units::count(tally.ranges, "damaged range"),
        units::size_exact(tally.damaged_bytes)
    );
    report.line(None, &summary);
    report.outcome(&summary)
}

/// DST's capacity when none is given: SRC's length, or more if SRC's events could
/// reach further than a stream of that length holds them (a truncated SRC, whose last
/// bytes a stream of its length keeps for its trailer), so that every salvaged event fits.
fn default_capacity(src: &Path) -> u64 {
    let len = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
    len.max(events_capacity(src))
        .max(evstream::format::MIN_CAPACITY)
}

/// The capacity that holds every event SRC's scan can find (its events lie between the
/// stream header and where the scan ends), or 0 if SRC cannot be opened to scan.
fn events_capacity(src: &Path) -> u64 {
    Salvage::open(src).map_or(0, |salvage| {
        let events = salvage
            .end()
            .saturating_sub(evstream::format::STREAM_HEADER_LEN);
        evstream::format::capacity_for_events(events).unwrap_or(u64::MAX)
    })
}

/// Opens segment `seq` of the log `src`, listed at `path`, for its salvage: under its
/// final name if it was listed under its preparation name and renamed since, and `None`
/// (with a note) if retention deleted it since the listing, the log now starting after
/// it. A log whose writer appends with retention loses its oldest segments while the
/// salvage runs; those are passed over, as `verify` passes over them.
fn open_segment(src: &Path, seq: u64, path: &Path) -> Result<Option<(Salvage, PathBuf)>, Failure> {
    let gone = |e: &evstream::Error| {
        matches!(e, evstream::Error::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound)
    };
    let error = match Salvage::open(path) {
        Ok(salvage) => return Ok(Some((salvage, path.to_owned()))),
        Err(e) if gone(&e) => e,
        Err(e) => return Err(Failure::stream(path, &e)),
    };
    let segments = LogReader::open(src)
        .and_then(|log| log.segment_files())
        .map_err(|e| Failure::stream(src, &e))?;
    if let Some((_, renamed)) = segments.iter().find(|(s, p)| *s == seq && p != path) {
        return Salvage::open(renamed)
            .map(|salvage| Some((salvage, renamed.clone())))
            .map_err(|e| Failure::stream(renamed, &e));
    }
    if segments.first().is_some_and(|(first, _)| *first > seq) {
        failure::note(&format!(
            "{}: deleted by the log's retention before it was salvaged (a writer appends \
             to {}); going on with the next segment",
            path.display(),
            src.display()
        ));
        return Ok(None);
    }
    Err(Failure::stream(path, &error))
}

/// Salvages one stream file (a whole stream, or one segment of a log), open in
/// `salvage`, into `sink`.
fn salvage_file(
    mut salvage: Salvage,
    file: &Path,
    segment: bool,
    dst: &Path,
    sink: &mut Sink<'_>,
    tally: &mut Tally,
    report: &mut Report,
) -> Result<(), Failure> {
    if let Some(write_offset) = salvage.bad_write_offset() {
        tally.bad_header = true;
        failure::note(&format!(
            "{}: the header's write offset {write_offset} is out of range; scanning the whole file",
            file.display()
        ));
    }
    // In a log, damaged ranges name their segment; for a single stream the file is SRC.
    let place = |offset: u64| {
        if segment {
            format!("{} byte offset {offset}", file.display())
        } else {
            format!("byte offset {offset}")
        }
    };
    let bar = progress::bytes("salvaging", salvage.end());
    let result = loop {
        let found = match salvage.next_found() {
            Ok(Some(found)) => found,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::stream(file, &e)),
        };
        match found {
            Found::Event(event) => {
                let len = evstream::format::EVENT_HEADER_LEN + event.payload.len() as u64;
                if tally
                    .last_timestamp
                    .is_some_and(|last| event.timestamp < last)
                {
                    tally.ranges += 1;
                    tally.damaged_bytes += len;
                    let line = format!(
                        "damaged: {}, {} skipped: timestamp {} is lower than the previous event's",
                        place(event.offset),
                        units::size_exact(len),
                        event.timestamp
                    );
                    report.line(bar.as_ref(), &line);
                    continue;
                }
                if let Err(e) = sink.append(event.timestamp, event.payload) {
                    let hint = match e {
                        evstream::Error::Full { .. } if !segment => format!(
                            "; salvage again with a larger --capacity ({} holds every \
                             event {} can have)",
                            units::size_exact(events_capacity(file)),
                            file.display()
                        ),
                        _ => String::new(),
                    };
                    break Err(Failure::stream(dst, &e).with_context(&format!(
                        " (copying the event at byte offset {} of {}){hint}",
                        event.offset,
                        file.display()
                    )));
                }
                tally.events += 1;
                tally.event_bytes += len;
                tally.last_timestamp = Some(event.timestamp);
                tally.first_last = Some(
                    tally
                        .first_last
                        .map_or((event.timestamp, event.timestamp), |(f, _)| {
                            (f, event.timestamp)
                        }),
                );
            }
            Found::Damaged(range) => {
                tally.ranges += 1;
                tally.damaged_bytes += range.len;
                let line = format!(
                    "damaged: {}, {} skipped: {}",
                    place(range.offset),
                    units::size_exact(range.len),
                    range.reason
                );
                report.line(bar.as_ref(), &line);
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(salvage.position());
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

/// The settings of a log salvaged from one with `source`'s: the same segment size, roll
/// interval and write-back policy, and no retention limit. The copy keeps every event it
/// salvaged, while it is written and after: the source's cursors, which may have held its
/// retention back, are not copied, and its limits would delete salvaged events at once
/// (a size or segment count the copy exceeds, an age its events have).
fn without_retention(source: &evstream::LogOptions) -> evstream::LogOptions {
    source
        .clone()
        .retain_size(None)
        .retain_age(None)
        .retain_segments(None)
}
