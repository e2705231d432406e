//! `evstream verify FILE`: a full checksum scan, with a progress bar for large files.

use std::path::PathBuf;

use evstream::format::STREAM_HEADER_LEN;
use evstream::{Corruption, StreamReader};

use crate::failure::Failure;
use crate::output;
use crate::progress;
use crate::units;

/// Examples shown by `evstream verify --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream verify sensors.evs && echo intact

Exit status 0 when every event's checksum and timestamp order are valid, the header's
event count matches and the trailer agrees with the events (its durable watermark ends an
event, below which lie as many events as it counts, the last with its timestamp); 1
otherwise, with the byte offset and reason of the first problem (and for a bad event, the
number of good events before it). verify only reads: it works while a writer
appends, and never changes the file.";

/// Streams with at least this many bytes of events get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 64 << 20;

/// Arguments of `evstream verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file, or log directory
    file: PathBuf,
}

/// Scans every event; exit status 1 on the first bad one or a wrong event count.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = args.file.as_path();
    if crate::archive::is_archive(path) {
        return crate::archive::verify(path);
    }
    if path.is_dir() {
        return crate::logcmd::verify(path);
    }
    let reader = StreamReader::open(path).map_err(|e| Failure::stream(path, &e))?;
    let bytes = reader.write_offset().saturating_sub(STREAM_HEADER_LEN);
    let bar = progress_bar(bytes);
    let verification = reader.verify_with_progress(|done, _| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let verification = verification.map_err(|e| Failure::stream(path, &e))?;
    let good = verification.events;
    let events = if good == 1 { "event" } else { "events" };
    if let Some((offset, reason)) = &verification.damage {
        let watermark = reader.durable_offset();
        if trailer_problem(reason) {
            return Err(Failure::data(format!(
                "{} is corrupt: its trailer contradicts its events at byte offset {offset} (durable watermark {watermark}): {reason}",
                path.display()
            )));
        }
        let flushed = if *offset < watermark {
            format!(" (in flushed data, below the durable watermark {watermark})")
        } else {
            String::new()
        };
        return Err(Failure::data(format!(
            "{} is corrupt at byte offset {offset}{flushed}: {reason} ({good} good {events} before it)",
            path.display()
        )));
    }
    // The header's count may trail the events by one while a writer is mid-append, or
    // after one stopped there, and by a batch while one is being published; `is_ok`
    // allows exactly that.
    if !verification.is_ok() {
        return Err(Failure::data(format!(
            "{} is damaged: the header counts {} events but {good} valid {events} were found",
            path.display(),
            verification.header_event_count
        )));
    }
    output::line(&format!(
        "ok: {}: {good} {events}, {} of events, every checksum valid",
        path.display(),
        units::size(bytes)
    ))
}

/// Whether `reason` is a trailer record that contradicts the events below its
/// watermark, rather than a damaged event.
fn trailer_problem(reason: &Corruption) -> bool {
    matches!(
        reason,
        Corruption::DurableCountMismatch { .. }
            | Corruption::DurableTimestampMismatch { .. }
            | Corruption::WatermarkInsideEvent { .. }
    )
}

/// A bar on standard error for a scan of `bytes` bytes, if it is long and stderr is a
/// terminal.
fn progress_bar(bytes: u64) -> Option<indicatif::ProgressBar> {
    if bytes < PROGRESS_THRESHOLD {
        return None;
    }
    progress::bytes("verifying", bytes)
}
