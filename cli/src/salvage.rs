//! `evstream salvage SRC DST`: copy every readable event of a damaged stream to a new one.

use std::path::PathBuf;

use evstream::salvage::{Found, Salvage};
use evstream::{Prefault, StreamWriter, WriterOptions};

use crate::create;
use crate::failure::{self, Failure};
use crate::output;
use crate::progress;
use crate::time::Zone;
use crate::units;

/// Examples shown by `evstream salvage --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream salvage damaged.evs rescued.evs
  evstream salvage damaged.evs rescued.evs --capacity 1GiB

Reads SRC without changing it and writes the events whose checksums match, in order, to
DST, a new stream (the same capacity as SRC unless --capacity is given). After a damaged
event it searches for the next event that checks out and reports each skipped range on
standard output: its byte offset, its length and what was wrong at its start. DST is
created only when at least one event is found (or SRC is an intact empty stream); it is
flushed to disk before the command returns. Exit status 0 when the copy is made (with or without damage), 1 when SRC has no
readable event or cannot be read, or DST cannot be written.";

/// Arguments of `evstream salvage`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The damaged stream file (only read)
    src: PathBuf,
    /// The new stream file to write; it must not exist
    dst: PathBuf,
    /// Capacity of DST (default: SRC's length)
    #[arg(long, value_name = "SIZE", value_parser = create::parse_capacity)]
    capacity: Option<u64>,
}

/// Scans SRC, appends what checks out to DST, and reports the damaged ranges.
pub fn run(args: Args, zone: &Zone) -> Result<(), Failure> {
    let src = args.src.as_path();
    let dst = args.dst.as_path();
    if dst.exists() {
        return Err(Failure::stream(
            dst,
            &evstream::Error::AlreadyExists {
                path: dst.to_owned(),
            },
        ));
    }
    let mut salvage = Salvage::open(src).map_err(|e| Failure::stream(src, &e))?;
    if let Some(write_offset) = salvage.bad_write_offset() {
        failure::note(&format!(
            "{}: the header's write offset {write_offset} is out of range; scanning the whole file",
            src.display()
        ));
    }
    let capacity = match args.capacity {
        Some(capacity) => capacity,
        None => std::fs::metadata(src)
            .map(|m| m.len())
            .unwrap_or(0)
            .max(evstream::format::MIN_CAPACITY),
    };
    let bar = progress::bytes("salvaging", salvage.end());
    let mut writer: Option<StreamWriter> = None;
    let (mut events, mut event_bytes) = (0u64, 0u64);
    let (mut ranges, mut damaged_bytes) = (0u64, 0u64);
    let mut first_last: Option<(i64, i64)> = None;
    let result = loop {
        let found = match salvage.next_found() {
            Ok(Some(found)) => found,
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::stream(src, &e)),
        };
        match found {
            Found::Event(event) => {
                if writer.is_none() {
                    let options = WriterOptions::default().prefault(Prefault::Background);
                    match StreamWriter::create_with(dst, capacity, options) {
                        Ok(created) => writer = Some(created),
                        Err(e) => break Err(Failure::stream(dst, &e)),
                    }
                }
                let Some(out) = writer.as_mut() else {
                    break Ok(());
                };
                if let Err(e) = out.append(event.timestamp, event.payload) {
                    break Err(Failure::stream(dst, &e).with_context(&format!(
                        " (copying the event at byte offset {} of {})",
                        event.offset,
                        src.display()
                    )));
                }
                events += 1;
                event_bytes += evstream::format::EVENT_HEADER_LEN + event.payload.len() as u64;
                first_last = Some(
                    first_last.map_or((event.timestamp, event.timestamp), |(f, _)| {
                        (f, event.timestamp)
                    }),
                );
            }
            Found::Damaged(range) => {
                ranges += 1;
                damaged_bytes += range.len;
                let line = format!(
                    "damaged: byte offset {}, {} skipped: {}",
                    range.offset,
                    units::size_exact(range.len),
                    range.reason
                );
                let printed = match &bar {
                    Some(bar) => bar.suspend(|| output::line(&line)),
                    None => output::line(&line),
                };
                if let Err(failure) = printed {
                    break Err(failure);
                }
            }
        }
        if let Some(bar) = &bar {
            bar.set_position(salvage.position());
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let flushed = match writer.as_mut() {
        Some(out) => out.flush().map_err(|e| Failure::stream(dst, &e)),
        None => Ok(()),
    };
    result?;
    flushed?;
    if writer.is_none() {
        if ranges == 0 && salvage.bad_write_offset().is_none() {
            // An intact, empty stream: its copy is an empty stream.
            let options = WriterOptions::default().prefault(Prefault::Off);
            let mut empty = StreamWriter::create_with(dst, capacity, options)
                .map_err(|e| Failure::stream(dst, &e))?;
            empty.flush().map_err(|e| Failure::stream(dst, &e))?;
        } else {
            let damage = if ranges == 0 {
                String::new()
            } else {
                format!(
                    " ({}, {})",
                    plural(ranges, "damaged range"),
                    units::size_exact(damaged_bytes)
                )
            };
            return Err(Failure::data(format!(
                "{}: no readable event found{damage}: it is not a stream file, or none of its \
                 events survived; {} was not created",
                src.display(),
                dst.display()
            )));
        }
    }
    let span = first_last.map_or_else(String::new, |(first, last)| {
        format!(", {} to {}", zone.show(first), zone.show(last))
    });
    output::line(&format!(
        "salvaged {} ({}{span}) from {} to {}; skipped {} ({})",
        plural(events, "event"),
        units::size(event_bytes),
        src.display(),
        dst.display(),
        plural(ranges, "damaged range"),
        units::size_exact(damaged_bytes)
    ))
}

/// `1 event`, `2 events`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
