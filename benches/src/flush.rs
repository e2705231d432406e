//! Appends that each end with a flush, huge pages off and on: [`flush_once`].

use std::time::{Duration, Instant};

use evstream::format::{EVENT_HEADER_LEN, capacity_for_events};
use evstream::{Result, StreamWriter, WriterOptions};

use crate::{BenchDir, Scratch, Workload};

/// Appends per flush run, each followed by [`StreamWriter::flush`](evstream::StreamWriter::flush).
pub(crate) const FLUSH_EVENTS: u64 = 200;
/// Stream bytes appended and flushed, untimed, before a flush run starts, so that its
/// appends land where a long-lived stream's do rather than in the file's first pages.
const FLUSH_SKIP: u64 = 16 << 20;
/// Runs of each flush row (alternating huge pages off and on).
pub(crate) const FLUSH_RUNS: u32 = 5;
/// Spare capacity past a flush run's events. A page-cache folio never extends past the end
/// of the file, so without it the timed appends would land in the file's last, partial
/// 2 MiB and always in small folios.
const FLUSH_SLACK: u64 = 4 << 20;

/// Appends `workload`'s first events (at most 200) to a stream that already holds 16 MiB,
/// each followed by [`StreamWriter::flush`](evstream::StreamWriter::flush), and returns the time they took.
///
/// The 16 MiB are appended and flushed before the clock starts, and the stream has 4 MiB
/// to spare after the timed events, so those land where a long-lived stream's do: there
/// the page cache holds large folios, and a flush writes back every dirty folio it
/// touches whole.
///
/// # Errors
///
/// As for [`StreamWriter::create`](evstream::StreamWriter::create), [`StreamWriter::append`](evstream::StreamWriter::append) and [`StreamWriter::flush`](evstream::StreamWriter::flush).
pub fn flush_once(huge_pages: bool, workload: &Workload, dir: &BenchDir) -> Result<Duration> {
    let path = dir.fresh_file();
    let _scratch = Scratch(path.clone());
    let events = workload.events().min(FLUSH_EVENTS);
    let fill = vec![0x5a_u8; 1 << 20];
    let fill_events = FLUSH_SKIP / fill.len() as u64;
    let event_len = |len: usize| EVENT_HEADER_LEN + len as u64;
    let capacity = capacity_for_events(
        fill_events * event_len(fill.len())
            + events * event_len(workload.payload_size())
            + FLUSH_SLACK,
    )
    .unwrap_or(u64::MAX);
    let options = WriterOptions::default().huge_pages(huge_pages);
    let mut writer = StreamWriter::create_with(&path, capacity, options)?;
    for _ in 0..fill_events {
        writer.append(0, &fill)?;
    }
    writer.flush()?;
    let start = Instant::now();
    for i in 0..events {
        writer.append(Workload::timestamp(i), workload.payload(i))?;
        writer.flush()?;
    }
    Ok(start.elapsed())
}
