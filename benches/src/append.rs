//! The append runs: [`AppendMethod`] cold or warm ([`Mode`]), each timed by [`append_once`],
//! and the probes that time a run's events one by one for the latency rows.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use evstream::stdio::{self, EventWriter};
use evstream::{Prefault, Result, StreamWriter, WriterOptions};

use crate::{BenchDir, Scratch, Workload, io_err, now_nanos};

/// Events per [`StreamWriter::append_batch`](evstream::StreamWriter::append_batch) call in [`AppendMethod::EvstreamBatch`].
pub const BATCH_EVENTS: usize = 64;
/// Capacity of the small `BufWriter` baseline: `std`'s default.
const SMALL_BUFFER: usize = 8 * 1024;
/// Capacity of the large `BufWriter` baseline.
pub(crate) const LARGE_BUFFER: usize = 1024 * 1024;
/// Events in flight in the channel baseline.
const CHANNEL_BOUND: usize = 1024;

/// A way of appending events to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendMethod {
    /// [`StreamWriter`] with the given prefault mode. In warm runs the writer is created
    /// with [`Prefault::Off`] and [`StreamWriter::prefault_all`] is called untimed, so
    /// the mode only matters for cold runs.
    Evstream(Prefault),
    /// [`StreamWriter`] with [`Prefault::Background`] and
    /// [`WriterOptions::huge_pages`](evstream::WriterOptions::huge_pages) on. Cold runs only (the Criterion bench and
    /// `evstream bench` skip it warm).
    EvstreamHugePages,
    /// [`StreamWriter::append_batch`](evstream::StreamWriter::append_batch) with [`BATCH_EVENTS`] events per call (the last batch
    /// may be shorter), [`Prefault::Background`]; warm, prefaulted like the others.
    EvstreamBatch,
    /// [`stdio::EventWriter`] over a `BufWriter<File>` with `std`'s default 8 KiB buffer.
    BufWriter8K,
    /// [`stdio::EventWriter`] over a `BufWriter<File>` with a 1 MiB buffer.
    BufWriter1M,
    /// One `write_all` of header and payload per event on an unbuffered `File`.
    WritePerEvent,
    /// A bounded channel feeding a writer thread that owns a `BufWriter<File>` (8 KiB).
    Channel,
    /// The limit: checksum and copy each event into a `Vec` whose pages are faulted in.
    /// Only meaningful warm; a cold run measures the same thing.
    AnonMemory,
}

impl AppendMethod {
    /// The systems every append comparison runs, baseline (`WritePerEvent`) included.
    pub const ALL: [AppendMethod; 10] = [
        AppendMethod::Evstream(Prefault::Background),
        AppendMethod::Evstream(Prefault::Inline),
        AppendMethod::Evstream(Prefault::Off),
        AppendMethod::EvstreamHugePages,
        AppendMethod::EvstreamBatch,
        AppendMethod::BufWriter8K,
        AppendMethod::BufWriter1M,
        AppendMethod::WritePerEvent,
        AppendMethod::Channel,
        AppendMethod::AnonMemory,
    ];

    /// A human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Evstream(Prefault::Background) => "evstream (prefault background)",
            Self::Evstream(Prefault::Inline) => "evstream (prefault inline)",
            Self::Evstream(Prefault::Off) => "evstream (prefault off)",
            Self::Evstream(_) => "evstream",
            Self::EvstreamHugePages => "evstream (background, huge pages)",
            Self::EvstreamBatch => "evstream append_batch (64 per call)",
            Self::BufWriter8K => "BufWriter 8 KiB",
            Self::BufWriter1M => "BufWriter 1 MiB",
            Self::WritePerEvent => "write_all per event",
            Self::Channel => "channel + BufWriter thread",
            Self::AnonMemory => "limit: CRC + copy into Vec",
        }
    }

    /// A stable identifier for JSON and Criterion.
    pub fn id(self) -> &'static str {
        match self {
            Self::Evstream(Prefault::Background) => "evstream_background",
            Self::Evstream(Prefault::Inline) => "evstream_inline",
            Self::Evstream(Prefault::Off) => "evstream_off",
            Self::Evstream(_) => "evstream",
            Self::EvstreamHugePages => "evstream_huge_pages",
            Self::EvstreamBatch => "evstream_batch",
            Self::BufWriter8K => "bufwriter_8k",
            Self::BufWriter1M => "bufwriter_1m",
            Self::WritePerEvent => "write_per_event",
            Self::Channel => "channel",
            Self::AnonMemory => "anon_memory",
        }
    }

    /// The label for a warm run, where evstream's prefault mode does not apply.
    pub(crate) fn warm_label(self) -> &'static str {
        match self {
            Self::Evstream(_) => "evstream (prefault_all)",
            other => other.label(),
        }
    }

    pub(crate) fn warm_id(self) -> &'static str {
        match self {
            Self::Evstream(_) => "evstream_prefaulted",
            other => other.id(),
        }
    }
}

/// Whether file creation and first-touch page faults are inside the timed region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Creating the file (and faulting its pages) is timed.
    Cold,
    /// The file is created and its pages made resident before timing starts.
    Warm,
}

impl Mode {
    /// `"cold"` or `"warm"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cold => "cold",
            Self::Warm => "warm",
        }
    }
}

/// Times the events of one run: either not at all, or each one into a histogram.
pub(crate) trait Probe {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T;

    /// The duration of the last event timed, in nanoseconds (0 if none was).
    fn last_ns(&self) -> u64 {
        0
    }
}

/// Times nothing; the whole run is timed from outside.
pub(crate) struct Untimed;

impl Probe for Untimed {
    #[inline(always)]
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        f()
    }
}

/// Records the duration of every event in nanoseconds.
pub(crate) struct PerEvent<'a> {
    histogram: &'a mut Histogram<u64>,
    last: u64,
}

impl<'a> PerEvent<'a> {
    pub(crate) fn new(histogram: &'a mut Histogram<u64>) -> Self {
        Self { histogram, last: 0 }
    }
}

/// Like [`PerEvent`], but starts events at a fixed interval, spinning until each one's
/// start time. An event that starts late (the one before took longer than the interval)
/// starts at once, so the schedule catches up; the histogram records service time only.
pub(crate) struct Paced<'a> {
    pub(crate) inner: PerEvent<'a>,
    pub(crate) interval: Duration,
    pub(crate) next: Option<Instant>,
}

impl Probe for Paced<'_> {
    #[inline(always)]
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let next = *self.next.get_or_insert_with(Instant::now);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        self.next = Some(next + self.interval);
        self.inner.time(f)
    }

    fn last_ns(&self) -> u64 {
        self.inner.last
    }
}

impl Probe for PerEvent<'_> {
    #[inline(always)]
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(ns.max(1));
        self.last = ns;
        out
    }

    fn last_ns(&self) -> u64 {
        self.last
    }
}

/// Runs `method` once over `workload` in a fresh file in `dir` and returns the time of
/// the timed region (see the [crate documentation](crate) for what it covers).
///
/// The file is removed afterwards.
///
/// # Errors
///
/// Whatever the system under test returns, as [`Error`](evstream::Error); `std` failures arrive as
/// [`Error::Io`](evstream::Error::Io).
pub fn append_once(
    method: AppendMethod,
    mode: Mode,
    workload: &Workload,
    dir: &BenchDir,
) -> Result<Duration> {
    append_run(method, mode, workload, dir, &mut Untimed)
}

pub(crate) fn append_run<P: Probe>(
    method: AppendMethod,
    mode: Mode,
    workload: &Workload,
    dir: &BenchDir,
    probe: &mut P,
) -> Result<Duration> {
    let path = dir.fresh_file();
    let _scratch = Scratch(path.clone());
    append_to(&path, method, mode, workload, probe)
}

/// Runs `method` once, writing a new stream at `path` (nothing for the in-memory limit).
pub(crate) fn append_to<P: Probe>(
    path: &Path,
    method: AppendMethod,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
) -> Result<Duration> {
    match method {
        AppendMethod::Evstream(prefault) => {
            evstream_append(path, prefault, false, 1, mode, workload, probe)
        }
        AppendMethod::EvstreamHugePages => {
            evstream_append(path, Prefault::Background, true, 1, mode, workload, probe)
        }
        AppendMethod::EvstreamBatch => evstream_append(
            path,
            Prefault::Background,
            false,
            BATCH_EVENTS,
            mode,
            workload,
            probe,
        ),
        AppendMethod::BufWriter8K => bufwriter_append(path, SMALL_BUFFER, mode, workload, probe),
        AppendMethod::BufWriter1M => bufwriter_append(path, LARGE_BUFFER, mode, workload, probe),
        AppendMethod::WritePerEvent => per_event_append(path, mode, workload, probe),
        AppendMethod::Channel => channel_append(path, mode, workload, probe),
        AppendMethod::AnonMemory => anon_append(workload, probe),
    }
}

/// Appends the workload with evstream: one [`StreamWriter::append`](evstream::StreamWriter::append) per event when `batch`
/// is 1, else [`StreamWriter::append_batch`](evstream::StreamWriter::append_batch) calls of `batch` events (the probe times each
/// call).
fn evstream_append<P: Probe>(
    path: &Path,
    prefault: Prefault,
    huge_pages: bool,
    batch: usize,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
) -> Result<Duration> {
    let capacity = workload.capacity();
    let mut events: Vec<(i64, &[u8])> = Vec::with_capacity(batch);
    let mut write = |writer: &mut StreamWriter, probe: &mut P| -> Result<()> {
        if batch <= 1 {
            for i in 0..workload.events() {
                let payload = workload.payload(i);
                probe.time(|| writer.append(Workload::timestamp(i), payload))?;
            }
            return Ok(());
        }
        let mut i = 0;
        while i < workload.events() {
            let end = (i + batch as u64).min(workload.events());
            events.clear();
            events.extend((i..end).map(|k| (Workload::timestamp(k), workload.payload(k))));
            probe.time(|| writer.append_batch(&events))?;
            i = end;
        }
        Ok(())
    };
    match mode {
        Mode::Cold => {
            let start = Instant::now();
            let mut writer = StreamWriter::create_with(
                path,
                capacity,
                WriterOptions::default()
                    .prefault(prefault)
                    .huge_pages(huge_pages),
            )?;
            write(&mut writer, probe)?;
            drop(writer);
            Ok(start.elapsed())
        }
        Mode::Warm => {
            let options = WriterOptions::default()
                .prefault(Prefault::Off)
                .huge_pages(huge_pages);
            let mut writer = StreamWriter::create_with(path, capacity, options)?;
            writer.prefault_all()?;
            let start = Instant::now();
            write(&mut writer, probe)?;
            let elapsed = start.elapsed();
            drop(writer);
            Ok(elapsed)
        }
    }
}

/// Creates `path` for a `std` baseline; warm, its whole length is written with zeros
/// first (so its page-cache pages exist, as evstream's prefaulted pages do) and the
/// position rewound.
fn std_file(path: &Path, mode: Mode, len: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))?;
    if mode == Mode::Warm {
        let zeros = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            file.write_all(zeros.get(..n).unwrap_or_default())
                .map_err(io_err("write", path))?;
            left -= n as u64;
        }
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("seek", path))?;
    }
    Ok(file)
}

/// Runs `body` on a `std` baseline's file: the timed region starts before `create` when
/// cold and after it when warm, and ends once `body` returns (cold: after the file is
/// closed).
fn time_std<P: Probe>(
    path: &Path,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
    body: impl FnOnce(File, &mut P) -> io::Result<File>,
) -> Result<Duration> {
    let cold_start = Instant::now();
    let file = std_file(path, mode, workload.stream_len())?;
    let start = match mode {
        Mode::Cold => cold_start,
        Mode::Warm => Instant::now(),
    };
    let file = body(file, probe).map_err(io_err("write", path))?;
    let elapsed = match mode {
        Mode::Cold => {
            drop(file);
            start.elapsed()
        }
        Mode::Warm => {
            let elapsed = start.elapsed();
            drop(file);
            elapsed
        }
    };
    Ok(elapsed)
}

fn bufwriter_append<P: Probe>(
    path: &Path,
    capacity: usize,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
) -> Result<Duration> {
    time_std(path, mode, workload, probe, |file, probe| {
        let mut writer = EventWriter::new(BufWriter::with_capacity(capacity, file), now_nanos())?;
        for i in 0..workload.events() {
            let payload = workload.payload(i);
            probe.time(|| writer.append(Workload::timestamp(i), payload))?;
        }
        writer.finish()?.into_inner().map_err(|e| e.into_error())
    })
}

fn per_event_append<P: Probe>(
    path: &Path,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
) -> Result<Duration> {
    time_std(path, mode, workload, probe, |file, probe| {
        let mut writer = EventWriter::new(file, now_nanos())?;
        for i in 0..workload.events() {
            let payload = workload.payload(i);
            probe.time(|| writer.append_framed(Workload::timestamp(i), payload))?;
        }
        writer.finish()
    })
}

fn channel_append<P: Probe>(
    path: &Path,
    mode: Mode,
    workload: &Workload,
    probe: &mut P,
) -> Result<Duration> {
    time_std(path, mode, workload, probe, |file, probe| {
        let (tx, rx) = mpsc::sync_channel::<(i64, Vec<u8>)>(CHANNEL_BOUND);
        let consumer = thread::Builder::new()
            .name("bench-channel-writer".into())
            .spawn(move || -> io::Result<File> {
                let mut writer = EventWriter::new(BufWriter::new(file), now_nanos())?;
                for (timestamp, payload) in rx {
                    writer.append(timestamp, &payload)?;
                }
                writer.finish()?.into_inner().map_err(|e| e.into_error())
            })?;
        for i in 0..workload.events() {
            let payload = workload.payload(i);
            let sent = probe.time(|| tx.send((Workload::timestamp(i), payload.to_vec())));
            if sent.is_err() {
                break; // the writer failed; its error comes from `join`
            }
        }
        drop(tx);
        consumer
            .join()
            .map_err(|_| io::Error::other("the channel writer thread panicked"))?
    })
}

fn anon_append<P: Probe>(workload: &Workload, probe: &mut P) -> Result<Duration> {
    let len = usize::try_from(workload.stream_len()).unwrap_or(usize::MAX);
    // Filling with a non-zero byte makes the allocator's pages resident; clearing keeps them.
    let mut buf = vec![1u8; len];
    buf.clear();
    let start = Instant::now();
    for i in 0..workload.events() {
        let payload = workload.payload(i);
        probe
            .time(|| stdio::encode_event(&mut buf, Workload::timestamp(i), payload))
            .map_err(io_err("encode", Path::new("<memory>")))?;
    }
    let elapsed = start.elapsed();
    black_box(&buf);
    Ok(elapsed)
}
