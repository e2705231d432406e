//! The benchmark runner behind `evstream bench`, and the measured operations the Criterion
//! benches in `benches/benches/` time.
//!
//! Every system writes or reads exactly the stream format: evstream itself, and `std`
//! baselines that go through [`evstream::stdio`]:
//!
//! | system | how it writes |
//! | --- | --- |
//! | evstream | [`StreamWriter::append`](evstream::StreamWriter::append) into the memory-mapped file |
//! | `BufWriter` 8 KiB / 1 MiB | [`stdio::EventWriter::append`](evstream::stdio::EventWriter::append) into a `BufWriter<File>` |
//! | `write_all` per event | [`stdio::EventWriter::append_framed`](evstream::stdio::EventWriter::append_framed) on a bare `File`: one `write(2)` per event |
//! | channel | a bounded channel of `(i64, Vec<u8>)` into a thread that owns a `BufWriter<File>` (8 KiB) |
//! | limit | CRC and copy into a `Vec` whose pages are already faulted in |
//!
//! Appends are measured two ways. **Cold**: the timed region creates the file, appends every
//! event, and closes it (for evstream, `create_with`, appends, drop; evstream's create
//! preallocates the file and syncs its header and directory entry). **Warm**: the file is
//! created and its pages made resident before the clock starts (evstream:
//! [`StreamWriter::prefault_all`](evstream::StreamWriter::prefault_all); `std`: the whole length written with zeros and the
//! position rewound), and the timed region ends when the last event has reached the page
//! cache (evstream: the last append returns; `std`: the final header is written and the
//! `BufWriter` flushed; channel: the writer thread has finished). No system syncs to disk
//! inside a timed region except evstream's cold `create`.
//!
//! Replay reads a file written by evstream with the page cache warm: evstream's verified
//! and unverified iteration against a `BufReader<File>` parse that checks every checksum
//! ([`stdio::EventReader`](evstream::stdio::EventReader)). A timed replay either opens the file, visits every event and
//! closes it ([`ReplayMode::Open`]), or is the second full pass of a reader that is
//! already open ([`ReplayMode::Reused`]; for evstream, every page is then mapped). The
//! replay limit ([`ReplayMethod::LimitCrc`]) is one CRC-32 pass over the same bytes through
//! a read-only mapping: made afresh when the open is timed (the page faults and the
//! checksum), resident when reused. Beside it, the floor of checking events one by one
//! ([`ReplayMethod::LimitCrcPerEvent`]): one CRC-32 call per event over its checked bytes,
//! which bounds any reader that verifies each event on its own. Every row reports its
//! ratio to its section's limit.
//!
//! Cold appends are set against limits too ([`FillLimit`]): the same bytes put into a
//! fresh file's page cache through a shared mapping (plain, populated in one call, with
//! huge pages) and through `write(2)` in 1 MiB calls, measured in the same repeats;
//! evstream's cold rows report their ratio to the mapping fill, the `std` rows to the
//! `write(2)` fill.
//!
//! evstream also runs cold with [`WriterOptions::huge_pages`](evstream::WriterOptions::huge_pages) on
//! ([`AppendMethod::EvstreamHugePages`]), replays a copy of the stream written that way
//! ([`ReplayMode::OpenHugePages`]), and compares appends that each end with a flush,
//! huge pages off and on ([`flush_once`]), since that is what the option makes dearer.
//!
//! Runs of different systems are interleaved, repeat after repeat, so that a noisy
//! neighbour slows all of them alike; the report quotes medians.

pub mod latency;
pub mod log;
pub mod many;

mod append;
mod dir;
mod fill;
mod flush;
mod replay;
mod report;
mod run;
mod stats;
mod workload;

#[cfg(test)]
mod tests;

pub use append::{AppendMethod, BATCH_EVENTS, Mode, append_once};
pub use dir::{BenchDir, RUN_DIR_PREFIX};
pub use fill::{FillLimit, fill_once};
pub use flush::flush_once;
pub use replay::{
    ReplayMethod, ReplayMode, replay_once, write_replay_file, write_replay_file_with,
};
pub use run::{BenchConfig, BenchReport, LatencyRow, ThroughputRow, run};
pub use stats::Summary;
pub use workload::Workload;

pub(crate) use append::{LARGE_BUFFER, Paced, PerEvent, Probe, Untimed, append_run};
pub(crate) use dir::{Scratch, next_serial};
pub(crate) use fill::map_new_file;
pub(crate) use flush::{FLUSH_EVENTS, FLUSH_RUNS};
pub(crate) use report::{fmt_ns, fmt_rate};
pub(crate) use stats::{RunPercentiles, median_u64, new_histogram};

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use evstream::Error;

/// Unix nanoseconds now, for the `std` baselines' start timestamps (as evstream stamps its own).
fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An [`Error::Io`] for `op` on `path`.
fn io_error(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.into(),
        source,
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| io_error(op, path, e)
}
