//! The benchmark runner behind `evstream bench`, and the measured operations the Criterion
//! benches in `benches/benches/` time.
//!
//! Every system writes or reads exactly the stream format: evstream itself, and `std`
//! baselines that go through [`evstream::stdio`]:
//!
//! | system | how it writes |
//! | --- | --- |
//! | evstream | [`StreamWriter::append`] into the memory-mapped file |
//! | `BufWriter` 8 KiB / 1 MiB | [`stdio::EventWriter::append`] into a `BufWriter<File>` |
//! | `write_all` per event | [`stdio::EventWriter::append_framed`] on a bare `File`: one `write(2)` per event |
//! | channel | a bounded channel of `(i64, Vec<u8>)` into a thread that owns a `BufWriter<File>` (8 KiB) |
//! | limit | CRC and copy into a `Vec` whose pages are already faulted in |
//!
//! Appends are measured two ways. **Cold**: the timed region creates the file, appends every
//! event, and closes it (for evstream, `create_with`, appends, drop; evstream's create
//! preallocates the file and syncs its header and directory entry). **Warm**: the file is
//! created and its pages made resident before the clock starts (evstream:
//! [`StreamWriter::prefault_all`]; `std`: the whole length written with zeros and the
//! position rewound), and the timed region ends when the last event has reached the page
//! cache (evstream: the last append returns; `std`: the final header is written and the
//! `BufWriter` flushed; channel: the writer thread has finished). No system syncs to disk
//! inside a timed region except evstream's cold `create`.
//!
//! Replay reads a file written by evstream with the page cache warm: evstream's verified
//! and unverified iteration against a `BufReader<File>` parse that checks every checksum
//! ([`stdio::EventReader`]). A timed replay either opens the file, visits every event and
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
//! evstream also runs cold with [`WriterOptions::huge_pages`] on
//! ([`AppendMethod::EvstreamHugePages`]), replays a copy of the stream written that way
//! ([`ReplayMode::OpenHugePages`]), and compares appends that each end with a flush,
//! huge pages off and on ([`flush_once`]), since that is what the option makes dearer.
//!
//! Runs of different systems are interleaved, repeat after repeat, so that a noisy
//! neighbour slows all of them alike; the report quotes medians.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

pub mod latency;
pub mod log;

use evstream::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN, capacity_for_events};
use evstream::stdio::{self, EventReader, EventWriter};
use evstream::{Error, Prefault, Result, StreamReader, StreamWriter, WriterOptions};

/// Events per [`StreamWriter::append_batch`] call in [`AppendMethod::EvstreamBatch`].
pub const BATCH_EVENTS: usize = 64;
/// Capacity of the small `BufWriter` baseline: `std`'s default.
const SMALL_BUFFER: usize = 8 * 1024;
/// Capacity of the large `BufWriter` baseline.
const LARGE_BUFFER: usize = 1024 * 1024;
/// Events in flight in the channel baseline.
const CHANNEL_BOUND: usize = 1024;
/// Distinct payload start positions in the workload's source buffer.
const PAYLOAD_VARIANTS: usize = 256;
/// Bytes of events a latency run writes at most (unless that is under 1,000 events).
const LATENCY_BYTES: u64 = 128 << 20;
/// Appends per latency run however large the payload.
const MIN_LATENCY_EVENTS: u64 = 1_000;
/// Highest latency the histograms track; slower appends are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Appends per flush run, each followed by [`StreamWriter::flush`].
const FLUSH_EVENTS: u64 = 200;
/// Stream bytes appended and flushed, untimed, before a flush run starts, so that its
/// appends land where a long-lived stream's do rather than in the file's first pages.
const FLUSH_SKIP: u64 = 16 << 20;
/// Runs of each flush row (alternating huge pages off and on).
const FLUSH_RUNS: u32 = 5;
/// Spare capacity past a flush run's events. A page-cache folio never extends past the end
/// of the file, so without it the timed appends would land in the file's last, partial
/// 2 MiB and always in small folios.
const FLUSH_SLACK: u64 = 4 << 20;

/// What `evstream bench` measures and where.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Events per append run and in the replayed file (default 10,000).
    pub events: u64,
    /// Payload bytes per event (default 1024).
    pub payload_size: usize,
    /// Directory for the stream files; `None` makes (and afterwards removes) a fresh
    /// directory under [`std::env::temp_dir`]. Its file system is part of what is measured.
    pub dir: Option<PathBuf>,
    /// Measured repeats of every append and replay run; `None` picks as many as fit in
    /// [`time_budget`](Self::time_budget), at least 5 and at most 51.
    pub repeats: Option<u32>,
    /// Rough wall-clock time for the append and replay repeats when `repeats` is `None`.
    pub time_budget: Duration,
    /// Whether to measure replay.
    pub replay: bool,
    /// Whether to measure per-append latency.
    pub latency: bool,
    /// Whether to measure appends that each end with a flush, huge pages off and on.
    pub flush: bool,
    /// Appends per latency run (default 100,000, so that p99.9 rests on 100 samples),
    /// lowered for large payloads so that a run writes at most 128 MiB.
    pub latency_events: u64,
    /// Latency runs per method (default 5); percentiles are medians over runs.
    pub latency_runs: u32,
    /// Interval between appends in the paced latency runs (default 2 µs: 500,000 events/s,
    /// about 0.5 GB/s of 1 KiB events), which show evstream's prefaulting at a steady rate
    /// rather than flat out.
    pub latency_pace: Duration,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            events: 10_000,
            payload_size: 1024,
            dir: None,
            repeats: None,
            time_budget: Duration::from_secs(25),
            replay: true,
            latency: true,
            flush: true,
            latency_events: 100_000,
            latency_runs: 5,
            latency_pace: Duration::from_micros(2),
        }
    }
}

/// A way of appending events to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendMethod {
    /// [`StreamWriter`] with the given prefault mode. In warm runs the writer is created
    /// with [`Prefault::Off`] and [`StreamWriter::prefault_all`] is called untimed, so
    /// the mode only matters for cold runs.
    Evstream(Prefault),
    /// [`StreamWriter`] with [`Prefault::Background`] and
    /// [`WriterOptions::huge_pages`] on. Cold runs only (the Criterion bench and
    /// `evstream bench` skip it warm).
    EvstreamHugePages,
    /// [`StreamWriter::append_batch`] with [`BATCH_EVENTS`] events per call (the last batch
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
    fn warm_label(self) -> &'static str {
        match self {
            Self::Evstream(_) => "evstream (prefault_all)",
            other => other.label(),
        }
    }

    fn warm_id(self) -> &'static str {
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

/// A way of reading every event of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplayMethod {
    /// [`StreamReader::iter`]: every checksum checked.
    EvstreamVerified,
    /// [`StreamReader::iter_unverified`]: bounds checked, checksums not.
    EvstreamUnverified,
    /// [`stdio::EventReader`] over a `BufReader<File>` (8 KiB): payloads copied into a
    /// reused buffer, every checksum checked. The replay baseline.
    BufReader,
    /// The limit: one CRC-32 pass over the stream's bytes through a read-only mapping, no
    /// parsing. Opened afresh ([`ReplayMode::Open`]) it measures the page faults of mapping
    /// the page-cached file plus the checksum; reused, the checksum over resident pages.
    LimitCrc,
    /// The floor of checking every event on its own: one `crc32fast::hash` call per event
    /// over as many bytes as its checksum covers (its last `12 + size` bytes), walking the
    /// sizes in the headers, through the same mapping as [`LimitCrc`](Self::LimitCrc). No
    /// checksum is compared and nothing is yielded; it counts the events it hashed.
    LimitCrcPerEvent,
}

impl ReplayMethod {
    /// Every replay method, baseline last.
    pub const ALL: [ReplayMethod; 5] = [
        ReplayMethod::LimitCrc,
        ReplayMethod::LimitCrcPerEvent,
        ReplayMethod::EvstreamVerified,
        ReplayMethod::EvstreamUnverified,
        ReplayMethod::BufReader,
    ];

    /// A human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream iter (verified)",
            Self::EvstreamUnverified => "evstream iter_unverified",
            Self::BufReader => "BufReader parse + CRC",
            Self::LimitCrc => "limit: CRC-32 over a fresh mapping",
            Self::LimitCrcPerEvent => "floor: one CRC-32 call per event, fresh mapping",
        }
    }

    /// The name for tables of a [`ReplayMode::Reused`] run.
    pub fn reused_label(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream iter (verified), reader reused",
            Self::EvstreamUnverified => "evstream iter_unverified, reader reused",
            Self::BufReader => "BufReader parse + CRC, file reused",
            Self::LimitCrc => "limit: CRC-32 over the resident mapping",
            Self::LimitCrcPerEvent => "floor: one CRC-32 call per event, resident",
        }
    }

    /// A stable identifier for JSON and Criterion.
    pub fn id(self) -> &'static str {
        match self {
            Self::EvstreamVerified => "evstream_verified",
            Self::EvstreamUnverified => "evstream_unverified",
            Self::BufReader => "bufreader",
            Self::LimitCrc => "limit_crc",
            Self::LimitCrcPerEvent => "limit_crc_per_event",
        }
    }
}

/// The events every system appends: `events` payloads of `payload_size` bytes with
/// non-decreasing timestamps. Payload contents vary from event to event.
#[derive(Debug, Clone)]
pub struct Workload {
    events: u64,
    payload_size: usize,
    source: Vec<u8>,
}

impl Workload {
    /// A workload of `events` events of `payload_size` bytes each.
    pub fn new(events: u64, payload_size: usize) -> Self {
        // A cheap, fixed pseudo-random byte sequence (xorshift).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let source = (0..payload_size + PAYLOAD_VARIANTS)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes().first().copied().unwrap_or_default()
            })
            .collect();
        Self {
            events,
            payload_size,
            source,
        }
    }

    /// Number of events.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes per payload.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// Payload bytes over all events: what the MB/s figures count.
    pub fn payload_bytes(&self) -> u64 {
        self.events * self.payload_size as u64
    }

    /// The stream's length once every event is written: header and events.
    pub fn stream_len(&self) -> u64 {
        STREAM_HEADER_LEN + self.events * (EVENT_HEADER_LEN + self.payload_size as u64)
    }

    /// The capacity of a stream file that holds the workload: [`stream_len`](Self::stream_len)
    /// rounded up to a 512-byte sector, plus the format's 1 KiB trailer.
    pub fn capacity(&self) -> u64 {
        capacity_for_events(self.stream_len() - STREAM_HEADER_LEN).unwrap_or(u64::MAX)
    }

    /// The payload of event `i`.
    pub fn payload(&self, i: u64) -> &[u8] {
        let start = (i % PAYLOAD_VARIANTS as u64) as usize;
        self.source
            .get(start..start + self.payload_size)
            .unwrap_or_default()
    }

    /// The timestamp of event `i`.
    pub fn timestamp(i: u64) -> i64 {
        1_700_000_000_000_000_000 + i as i64
    }
}

/// How the directories [`BenchDir::within`] makes are named: this, the process id, a dash,
/// a serial number. An interrupted run's clean-up removes those of its own process.
pub const RUN_DIR_PREFIX: &str = "evstream-bench-";

/// A directory for bench files; removed on drop if this process made it.
#[derive(Debug)]
pub struct BenchDir {
    path: PathBuf,
    owned: bool,
}

impl BenchDir {
    /// Uses `dir` if given (it must exist), else creates a fresh directory under
    /// [`std::env::temp_dir`] that is removed with everything in it on drop.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be created.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            return Ok(Self {
                path: dir.to_owned(),
                owned: false,
            });
        }
        Self::within(&std::env::temp_dir())
    }

    /// Creates a fresh directory in `base` (which must exist), named
    /// [`RUN_DIR_PREFIX`] + this process's id + a serial number so that no other run's
    /// files, even ones a killed run left, can collide with this one's; it is removed
    /// with everything in it on drop, whether the run succeeded or failed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be created.
    pub fn within(base: &Path) -> Result<Self> {
        let path = base.join(format!(
            "{}{}-{}",
            RUN_DIR_PREFIX,
            std::process::id(),
            next_serial()
        ));
        fs::create_dir(&path).map_err(|e| io_error("create directory", &path, e))?;
        Ok(Self { path, owned: true })
    }

    /// Writes back every dirty page of the directory's file system (`syncfs`) and waits
    /// for it, so that the next timed run does not share the disk and the CPU with the
    /// write-back of the runs before it. Untimed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be opened or the sync fails.
    pub fn settle(&self) -> Result<()> {
        let dir = fs::File::open(&self.path).map_err(|e| io_error("open", &self.path, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error("syncfs", &self.path, e.into()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path in the directory that no other call has returned in this process.
    pub fn fresh_file(&self) -> PathBuf {
        self.path.join(format!(
            "bench-{}-{}.evs",
            std::process::id(),
            next_serial()
        ))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Removes a bench file on drop, whatever happened to the run.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Times the events of one run: either not at all, or each one into a histogram.
trait Probe {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T;

    /// The duration of the last event timed, in nanoseconds (0 if none was).
    fn last_ns(&self) -> u64 {
        0
    }
}

/// Times nothing; the whole run is timed from outside.
struct Untimed;

impl Probe for Untimed {
    #[inline(always)]
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        f()
    }
}

/// Records the duration of every event in nanoseconds.
struct PerEvent<'a> {
    histogram: &'a mut Histogram<u64>,
    last: u64,
}

impl<'a> PerEvent<'a> {
    fn new(histogram: &'a mut Histogram<u64>) -> Self {
        Self { histogram, last: 0 }
    }
}

/// Like [`PerEvent`], but starts events at a fixed interval, spinning until each one's
/// start time. An event that starts late (the one before took longer than the interval)
/// starts at once, so the schedule catches up; the histogram records service time only.
struct Paced<'a> {
    inner: PerEvent<'a>,
    interval: Duration,
    next: Option<Instant>,
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

/// Runs `method` once over `workload` in a fresh file in `dir` and returns the time of
/// the timed region (see the [module documentation](self) for what it covers).
///
/// The file is removed afterwards.
///
/// # Errors
///
/// Whatever the system under test returns, as [`Error`]; `std` failures arrive as
/// [`Error::Io`].
pub fn append_once(
    method: AppendMethod,
    mode: Mode,
    workload: &Workload,
    dir: &BenchDir,
) -> Result<Duration> {
    append_run(method, mode, workload, dir, &mut Untimed)
}

fn append_run<P: Probe>(
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
fn append_to<P: Probe>(
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

/// Appends the workload with evstream: one [`StreamWriter::append`] per event when `batch`
/// is 1, else [`StreamWriter::append_batch`] calls of `batch` events (the probe times each
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

/// A limit for cold appends: the workload's stream length of bytes put into the fresh page
/// cache of a new file, with no events encoded and no checksum, 1 MiB at a time. It is
/// what any writer of that file pays at least before its own work: a mapping-based writer
/// the first-touch faults (a zeroed folio per page, the file system's page-mkwrite), a
/// `write(2)`-based one the copy into new folios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FillLimit {
    /// Create the file, preallocate its capacity (`fallocate`, as evstream's create does
    /// with `posix_fallocate`), map it shared, copy the bytes into the mapping, unmap,
    /// close.
    Mapping,
    /// As [`Mapping`](Self::Mapping), with `madvise(MADV_POPULATE_WRITE)` over the whole
    /// mapping before the copy: every page faulted in one call (as
    /// [`StreamWriter::prefault_all`] does).
    MappingPopulated,
    /// As [`Mapping`](Self::Mapping), with `madvise(MADV_HUGEPAGE)` first (as
    /// [`WriterOptions::huge_pages`] does), so the kernel may back it with large folios.
    MappingHugePages,
    /// Create the file, `write(2)` the bytes in 1 MiB calls, close: what `BufWriter` 1 MiB
    /// does beneath its encoding.
    Write,
}

impl FillLimit {
    /// Every fill limit.
    pub const ALL: [FillLimit; 4] = [
        FillLimit::Mapping,
        FillLimit::MappingPopulated,
        FillLimit::MappingHugePages,
        FillLimit::Write,
    ];

    /// A human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mapping => "limit: fill fresh page cache via mapping",
            Self::MappingPopulated => "limit: fill via mapping, POPULATE_WRITE",
            Self::MappingHugePages => "limit: fill via mapping, MADV_HUGEPAGE",
            Self::Write => "limit: fill fresh page cache via write(2)",
        }
    }

    /// A stable identifier for JSON.
    pub fn id(self) -> &'static str {
        match self {
            Self::Mapping => "fill_mapping",
            Self::MappingPopulated => "fill_mapping_populated",
            Self::MappingHugePages => "fill_mapping_huge_pages",
            Self::Write => "fill_write",
        }
    }

    /// The limit that bounds a cold append row with identifier `id`: the mapping fill for
    /// evstream (with huge pages, the huge-page fill), `write(2)` for the `std` systems and
    /// for the mapping fills themselves.
    fn for_cold_row(id: &str) -> &'static str {
        if id == AppendMethod::EvstreamHugePages.id() {
            Self::MappingHugePages.id()
        } else if id.starts_with("evstream") {
            Self::Mapping.id()
        } else {
            Self::Write.id()
        }
    }
}

/// Runs `limit` once for `workload` in a fresh file in `dir` and returns the time from
/// creating the file to closing it. The file is removed afterwards.
///
/// # Errors
///
/// [`Error::Io`] if creating, preallocating, mapping or writing the file fails.
pub fn fill_once(limit: FillLimit, workload: &Workload, dir: &BenchDir) -> Result<Duration> {
    let path = dir.fresh_file();
    let _scratch = Scratch(path.clone());
    let len = usize::try_from(workload.stream_len()).unwrap_or(usize::MAX);
    let block = vec![0x5a_u8; LARGE_BUFFER];
    let start = Instant::now();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    if limit == FillLimit::Write {
        for chunk in block_sizes(len, block.len()) {
            file.write_all(block.get(..chunk).unwrap_or_default())
                .map_err(io_err("write", &path))?;
        }
    } else {
        rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::empty(),
            0,
            workload.capacity(),
        )
        .map_err(|e| io_error("fallocate", &path, e.into()))?;
        let mut map = map_new_file(&file, &path)?;
        match limit {
            FillLimit::MappingPopulated => map
                .advise(memmap2::Advice::PopulateWrite)
                .map_err(io_err("madvise", &path))?,
            FillLimit::MappingHugePages => {
                // Advice only, as for evstream's huge_pages option.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            FillLimit::Mapping | FillLimit::Write => {}
        }
        let mut at = 0;
        for chunk in block_sizes(len, block.len()) {
            if let Some(dst) = map.get_mut(at..at + chunk) {
                dst.copy_from_slice(block.get(..chunk).unwrap_or_default());
            }
            at += chunk;
        }
        black_box(&map);
        drop(map);
    }
    drop(file);
    Ok(start.elapsed())
}

/// Maps `file` shared and writable: a file the bench created itself with `create_new`
/// (its path given for errors), which no other process knows of and which nothing
/// truncates while the mapping lives.
fn map_new_file(file: &File, path: &Path) -> Result<memmap2::MmapMut> {
    // SAFETY: as the caller promises, the file is the bench's own and new: no other
    // process writes or truncates it, so the mapping's bytes change only through it.
    unsafe { memmap2::MmapMut::map_mut(file) }.map_err(io_err("mmap", path))
}

/// The sizes of the blocks that cover `len` bytes `block` bytes at a time.
fn block_sizes(len: usize, block: usize) -> impl Iterator<Item = usize> {
    let block = block.max(1);
    (0..len.div_ceil(block)).map(move |i| block.min(len - i * block))
}

/// Writes `workload` to a new stream at `path` with evstream, for replay runs.
///
/// # Errors
///
/// As for [`StreamWriter::create`] and [`StreamWriter::append`].
pub fn write_replay_file(path: &Path, workload: &Workload) -> Result<()> {
    write_replay_file_with(path, workload, false)
}

/// Like [`write_replay_file`], with [`WriterOptions::huge_pages`] set to `huge_pages`,
/// which decides the size of the page-cache folios a reader then maps.
///
/// # Errors
///
/// As for [`StreamWriter::create`] and [`StreamWriter::append`].
pub fn write_replay_file_with(path: &Path, workload: &Workload, huge_pages: bool) -> Result<()> {
    let options = WriterOptions::default()
        .prefault(Prefault::Off)
        .huge_pages(huge_pages);
    let capacity = workload.capacity();
    let mut writer = StreamWriter::create_with(path, capacity, options)?;
    for i in 0..workload.events() {
        writer.append(Workload::timestamp(i), workload.payload(i))?;
    }
    Ok(())
}

/// Whether opening the stream is part of a timed replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayMode {
    /// Open, visit every event, close: all timed.
    Open,
    /// As [`Open`](Self::Open), over a stream written with [`WriterOptions::huge_pages`]
    /// on (see [`write_replay_file_with`]); the caller passes that file.
    OpenHugePages,
    /// The reader (or file) is opened and one full pass made before the clock starts; the
    /// timed pass is a second one. For evstream the mapping's pages are then all mapped,
    /// as for a long-lived reader.
    Reused,
}

impl ReplayMode {
    /// `"replay"`, `"replay_huge_pages"` or `"replay_reused"`: the mode of the report's rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "replay",
            Self::OpenHugePages => "replay_huge_pages",
            Self::Reused => "replay_reused",
        }
    }
}

/// Visits every event of `reader`; returns how many there were.
fn evstream_pass(reader: &StreamReader, verified: bool) -> Result<u64> {
    let mut events = 0u64;
    let mut digest = 0i64;
    let visit = |event: Result<evstream::EventView<'_>>| -> Result<()> {
        let event = event?;
        digest = digest.wrapping_add(event.timestamp());
        black_box(event.payload());
        events += 1;
        Ok(())
    };
    if verified {
        reader.iter().try_for_each(visit)?;
    } else {
        reader.iter_unverified().try_for_each(visit)?;
    }
    black_box(digest);
    Ok(events)
}

/// Parses every event of `file` from its start through a `BufReader`; returns the count.
fn bufreader_pass(mut file: &File, path: &Path) -> Result<u64> {
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("seek", path))?;
    let mut reader = EventReader::new(BufReader::new(file)).map_err(io_err("read", path))?;
    let mut payload = Vec::new();
    let mut events = 0u64;
    let mut digest = 0i64;
    while let Some(timestamp) = reader
        .read_event(&mut payload)
        .map_err(io_err("read", path))?
    {
        digest = digest.wrapping_add(timestamp);
        black_box(payload.as_slice());
        events += 1;
    }
    black_box(digest);
    Ok(events)
}

/// The stream header's write offset in `map`, at most the mapping's length.
fn written_end(map: &[u8]) -> usize {
    let end = map
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    usize::try_from(end).unwrap_or(usize::MAX).min(map.len())
}

/// The replay limit's pass: CRC-32 over the stream's written bytes (the stream header's
/// write offset says how many), without parsing them: it counts no events.
fn limit_crc_pass(map: &[u8]) -> Option<u64> {
    let end = written_end(map);
    black_box(crc32fast::hash(map.get(..end).unwrap_or_default()));
    None
}

/// The per-event floor's pass: one CRC-32 call over the last `12 + size` bytes of every
/// event before the stream header's write offset; returns the number of events.
fn per_event_crc_pass(map: &[u8]) -> Option<u64> {
    let end = written_end(map);
    let header = EVENT_HEADER_LEN as usize;
    let mut pos = STREAM_HEADER_LEN as usize;
    let mut events = 0u64;
    let mut digest = 0u32;
    while let Some(size) = map
        .get(pos + 8..pos + 12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    {
        let next = pos + header + size as usize;
        let Some(checked) = map.get(pos + 4..next).filter(|_| next <= end) else {
            break;
        };
        digest ^= crc32fast::hash(checked);
        events += 1;
        pos = next;
    }
    black_box(digest);
    Some(events)
}

/// Visits every event of the stream at `path` with `method` and returns the time of the
/// timed region (see [`ReplayMode`]) and the number of events seen: `None` for
/// [`ReplayMethod::LimitCrc`], which checksums the bytes without parsing them into events.
///
/// # Errors
///
/// As for [`StreamReader::open`] and its iterators; the `BufReader` parse's errors arrive
/// as [`Error::Io`] with the [`stdio::CodecError`] inside.
pub fn replay_once(
    method: ReplayMethod,
    mode: ReplayMode,
    path: &Path,
) -> Result<(Duration, Option<u64>)> {
    let open_start = Instant::now();
    match method {
        ReplayMethod::EvstreamVerified | ReplayMethod::EvstreamUnverified => {
            let verified = method == ReplayMethod::EvstreamVerified;
            let reader = StreamReader::open(path)?;
            timed_pass(mode, open_start, reader, |r| {
                evstream_pass(r, verified).map(Some)
            })
        }
        ReplayMethod::BufReader => {
            let file = File::open(path).map_err(io_err("open", path))?;
            timed_pass(mode, open_start, file, |f| {
                bufreader_pass(f, path).map(Some)
            })
        }
        ReplayMethod::LimitCrc | ReplayMethod::LimitCrcPerEvent => {
            let file = File::open(path).map_err(io_err("open", path))?;
            // SAFETY: the bench's own replay file, written and closed before the run; no
            // process truncates or writes it while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err("mmap", path))?;
            drop(file);
            if method == ReplayMethod::LimitCrc {
                timed_pass(mode, open_start, map, |m| Ok(limit_crc_pass(m)))
            } else {
                timed_pass(mode, open_start, map, |m| Ok(per_event_crc_pass(m)))
            }
        }
    }
}

/// Times `pass` over `source` as `mode` says: from `open_start` through closing `source`,
/// or, for [`ReplayMode::Reused`], only a second pass over the already used `source`.
fn timed_pass<S>(
    mode: ReplayMode,
    open_start: Instant,
    source: S,
    mut pass: impl FnMut(&S) -> Result<Option<u64>>,
) -> Result<(Duration, Option<u64>)> {
    let reused = mode == ReplayMode::Reused;
    let start = if reused {
        pass(&source)?;
        Instant::now()
    } else {
        open_start
    };
    let events = pass(&source)?;
    let pass_end = start.elapsed();
    drop(source);
    Ok((if reused { pass_end } else { start.elapsed() }, events))
}

/// Median, quartiles and extremes of a run's durations.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Every measured duration, in run order.
    pub samples: Vec<Duration>,
    /// The median duration.
    pub median: Duration,
    /// The first quartile.
    pub q1: Duration,
    /// The third quartile.
    pub q3: Duration,
    /// The fastest run.
    pub min: Duration,
    /// The slowest run.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples`; `None` if there are none.
    pub fn of(samples: Vec<Duration>) -> Option<Self> {
        let mut sorted = samples.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        let at = |q: f64| -> Option<Duration> {
            let pos = q * last as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let (a, b) = (sorted.get(lo)?.as_secs_f64(), sorted.get(hi)?.as_secs_f64());
            Some(Duration::from_secs_f64(a + (b - a) * (pos - lo as f64)))
        };
        Some(Self {
            median: at(0.5)?,
            q1: at(0.25)?,
            q3: at(0.75)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
            samples,
        })
    }

    /// Half the interquartile range as a fraction of the median: a noise gauge.
    pub fn spread(&self) -> f64 {
        let median = self.median.as_secs_f64();
        if median > 0.0 {
            (self.q3.as_secs_f64() - self.q1.as_secs_f64()) / 2.0 / median
        } else {
            0.0
        }
    }
}

/// One system's throughput.
#[derive(Debug, Clone, PartialEq)]
pub struct ThroughputRow {
    /// Human-readable name.
    pub method: &'static str,
    /// Stable identifier.
    pub id: &'static str,
    /// `"cold"`, `"warm"` or `"replay"`.
    pub mode: &'static str,
    /// The timed runs.
    pub summary: Summary,
    /// Events per second at the median time.
    pub events_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second at the median time.
    pub mb_per_sec: f64,
    /// Median time of the section's baseline divided by this row's: how many times faster.
    pub ratio: f64,
    /// Median time of the section's limit row divided by this row's (at most about 1):
    /// the fraction of the limit this system reaches. `None` where the section has none.
    pub of_limit: Option<f64>,
}

/// One system's per-append latency, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// Human-readable name (with the pace, for paced runs).
    pub method: String,
    /// Stable identifier (with a `_paced` suffix for paced runs).
    pub id: String,
    /// `"cold"` (file created at the start of each run) or `"warm"` (prefaulted first).
    pub mode: &'static str,
    /// The interval between append starts in a paced run; `None` for flat out.
    pub pace_ns: Option<u64>,
    /// Median over runs of each run's 50th percentile.
    pub p50: u64,
    /// Median over runs of each run's 99th percentile.
    pub p99: u64,
    /// Median over runs of each run's 99.9th percentile.
    pub p999: u64,
    /// Median over runs of each run's maximum.
    pub max: u64,
    /// The largest latency seen in any run.
    pub worst: u64,
    /// Appends timed, over all runs.
    pub samples: u64,
}

/// Everything one `evstream bench` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Events per append run and in the replayed file.
    pub events: u64,
    /// Payload bytes per event.
    pub payload_size: usize,
    /// Measured repeats of each append and replay run.
    pub repeats: u32,
    /// Appends per latency run (0 if latency was not measured).
    pub latency_events: u64,
    /// Latency runs per method.
    pub latency_runs: u32,
    /// Where the files were.
    pub dir: PathBuf,
    /// Append throughput, cold rows then warm rows; ratios are to `write_all` per event
    /// in the same mode.
    pub append: Vec<ThroughputRow>,
    /// Replay throughput; ratios are to the `BufReader` parse.
    pub replay: Vec<ThroughputRow>,
    /// Appends that each end with a flush: huge pages off, then on; ratios are to the
    /// first. Events per row: at most 200.
    pub flush: Vec<ThroughputRow>,
    /// Per-append latency; the first row is the cost of reading the clock twice.
    pub latency: Vec<LatencyRow>,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

/// The append cases of one repeat: every method cold (but the in-memory limit), then
/// evstream prefaulted and every method warm.
fn append_cases() -> Vec<(AppendMethod, Mode)> {
    let cold = AppendMethod::ALL
        .into_iter()
        .filter(|m| *m != AppendMethod::AnonMemory)
        .map(|m| (m, Mode::Cold));
    let warm = AppendMethod::ALL
        .into_iter()
        .filter(|m| {
            !matches!(m, AppendMethod::Evstream(p) if *p != Prefault::Background)
                && *m != AppendMethod::EvstreamHugePages
        })
        .map(|m| (m, Mode::Warm));
    cold.chain(warm).collect()
}

/// Runs the benchmark described by `config`, calling `progress` with a line of text now
/// and then (the command prints these on stderr).
///
/// # Errors
///
/// The first failure of any system, or of creating the directory.
///
/// # Panics
///
/// Never by design; a panic in the channel baseline's writer thread is reported as an
/// error.
pub fn run(config: &BenchConfig, progress: &mut dyn FnMut(&str)) -> Result<BenchReport> {
    let began = Instant::now();
    let dir = BenchDir::new(config.dir.as_deref())?;
    let workload = Workload::new(config.events, config.payload_size);
    let cases = append_cases();
    let mut append_samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut fill_samples: Vec<Vec<Duration>> = vec![Vec::new(); FillLimit::ALL.len()];
    let replays = replay_cases();
    let mut replay_samples: Vec<Vec<Duration>> = vec![Vec::new(); replays.len()];

    let replay_file = dir.fresh_file();
    let _replay_scratch = Scratch(replay_file.clone());
    let huge_replay_file = dir.fresh_file();
    let _huge_replay_scratch = Scratch(huge_replay_file.clone());
    if config.replay {
        write_replay_file_with(&replay_file, &workload, false)?;
        write_replay_file_with(&huge_replay_file, &workload, true)?;
    }

    // One repeat of every case; repeat 0 is a discarded warm-up that also sizes the run.
    let mut one_repeat = |round: u32, keep: bool| -> Result<()> {
        let n = cases.len();
        for k in 0..n {
            // Rotate the order each repeat so no system always follows the same one.
            let idx = (k + round as usize) % n;
            let Some(&(method, mode)) = cases.get(idx) else {
                continue;
            };
            let time = append_once(method, mode, &workload, &dir)?;
            if keep && let Some(samples) = append_samples.get_mut(idx) {
                samples.push(time);
            }
        }
        for (limit, samples) in FillLimit::ALL.into_iter().zip(fill_samples.iter_mut()) {
            let time = fill_once(limit, &workload, &dir)?;
            if keep {
                samples.push(time);
            }
        }
        if config.replay {
            for (idx, &(method, mode)) in replays.iter().enumerate() {
                let file = match mode {
                    ReplayMode::OpenHugePages => &huge_replay_file,
                    ReplayMode::Open | ReplayMode::Reused => &replay_file,
                };
                let (time, seen) = replay_once(method, mode, file)?;
                if let Some(seen) = seen
                    && seen != workload.events()
                {
                    // Every other method, the per-event floor included, sees every event.
                    return Err(io_error(
                        "replay",
                        &replay_file,
                        io::Error::other(format!(
                            "{} saw {seen} of {} events",
                            method.label(),
                            workload.events()
                        )),
                    ));
                }
                if keep && let Some(samples) = replay_samples.get_mut(idx) {
                    samples.push(time);
                }
            }
        }
        Ok(())
    };

    progress(&format!(
        "bench: {} events x {} B in {}",
        workload.events(),
        workload.payload_size(),
        dir.path().display()
    ));
    let warmup_start = Instant::now();
    one_repeat(0, false)?;
    let per_repeat = warmup_start.elapsed();
    let repeats = config.repeats.unwrap_or_else(|| {
        let fit = config.time_budget.as_secs_f64() / per_repeat.as_secs_f64().max(1e-6);
        (fit as u32).clamp(5, 51)
    });
    let repeats = repeats.max(1);
    progress(&format!(
        "bench: warm-up took {:.2} s; {repeats} measured repeats",
        per_repeat.as_secs_f64()
    ));
    let mut last_report = Instant::now();
    for round in 1..=repeats {
        one_repeat(round, true)?;
        if last_report.elapsed() >= Duration::from_secs(2) || round == repeats {
            progress(&format!(
                "bench: repeat {round}/{repeats} ({:.0} s)",
                began.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
    }

    let append = throughput_rows(&cases, append_samples, fill_samples, &workload);
    let replay = if config.replay {
        replay_rows(&replays, replay_samples, &workload)
    } else {
        Vec::new()
    };
    let flush = if config.flush {
        flush_rows(&workload, &dir, progress)?
    } else {
        Vec::new()
    };
    let (latency_events, latency) = if config.latency {
        latency_rows(config, &dir, progress)?
    } else {
        (0, Vec::new())
    };
    Ok(BenchReport {
        events: workload.events(),
        payload_size: workload.payload_size(),
        repeats,
        latency_events,
        latency_runs: config.latency_runs,
        dir: dir.path().to_owned(),
        append,
        replay,
        flush,
        latency,
        elapsed: began.elapsed(),
    })
}

fn row(
    method: &'static str,
    id: &'static str,
    mode: &'static str,
    summary: Summary,
    workload: &Workload,
) -> ThroughputRow {
    let secs = summary.median.as_secs_f64().max(1e-12);
    ThroughputRow {
        method,
        id,
        mode,
        events_per_sec: workload.events() as f64 / secs,
        mb_per_sec: workload.payload_bytes() as f64 / secs / 1e6,
        summary,
        ratio: 1.0,
        of_limit: None,
    }
}

/// Sets every row's ratio to the median of the row with `baseline_id` over its own.
fn set_ratios(rows: &mut [ThroughputRow], mode: &str, baseline_id: &str) {
    for_ratio_to(rows, mode, |_| baseline_id, |r, ratio| r.ratio = ratio);
}

/// Sets every row's `of_limit` to the median of the row with `limit_id` over its own.
fn set_limit_ratios(rows: &mut [ThroughputRow], mode: &str, limit_id: &str) {
    for_ratio_to(
        rows,
        mode,
        |_| limit_id,
        |r, ratio| r.of_limit = Some(ratio),
    );
}

/// Calls `set` with every row of `mode` and the median of the row of `mode` whose id is
/// `base_of(row's id)` over its own; rows whose base is missing are left alone.
fn for_ratio_to<'a>(
    rows: &mut [ThroughputRow],
    mode: &str,
    base_of: impl Fn(&str) -> &'a str,
    set: impl Fn(&mut ThroughputRow, f64),
) {
    let bases: Vec<Option<f64>> = rows
        .iter()
        .map(|r| {
            let id = base_of(r.id);
            rows.iter()
                .find(|b| b.mode == mode && b.id == id)
                .map(|b| b.summary.median.as_secs_f64())
        })
        .collect();
    for (r, base) in rows.iter_mut().zip(bases) {
        if r.mode == mode
            && let Some(base) = base
        {
            let ratio = base / r.summary.median.as_secs_f64().max(1e-12);
            set(r, ratio);
        }
    }
}

fn throughput_rows(
    cases: &[(AppendMethod, Mode)],
    samples: Vec<Vec<Duration>>,
    fill_samples: Vec<Vec<Duration>>,
    workload: &Workload,
) -> Vec<ThroughputRow> {
    let mut rows: Vec<ThroughputRow> = cases
        .iter()
        .zip(samples)
        .filter_map(|(&(method, mode), samples)| {
            let summary = Summary::of(samples)?;
            let (label, id) = match mode {
                Mode::Cold => (method.label(), method.id()),
                Mode::Warm => (method.warm_label(), method.warm_id()),
            };
            Some(row(label, id, mode.name(), summary, workload))
        })
        .collect();
    let fills = FillLimit::ALL
        .into_iter()
        .zip(fill_samples)
        .filter_map(|(limit, samples)| {
            let summary = Summary::of(samples)?;
            Some(row(
                limit.label(),
                limit.id(),
                Mode::Cold.name(),
                summary,
                workload,
            ))
        });
    // The limits go last in the cold section, before the warm rows.
    let warm_at = rows
        .iter()
        .position(|r| r.mode == Mode::Warm.name())
        .unwrap_or(rows.len());
    rows.splice(warm_at..warm_at, fills);
    for mode in [Mode::Cold, Mode::Warm] {
        set_ratios(&mut rows, mode.name(), AppendMethod::WritePerEvent.id());
    }
    set_limit_ratios(&mut rows, Mode::Warm.name(), AppendMethod::AnonMemory.id());
    // Cold rows each against the fill of fresh page cache their kind of writer pays.
    for_ratio_to(
        &mut rows,
        Mode::Cold.name(),
        FillLimit::for_cold_row,
        |r, ratio| r.of_limit = Some(ratio),
    );
    rows
}

/// The replay cases of one repeat: every method with opening timed, then reused.
fn replay_cases() -> Vec<(ReplayMethod, ReplayMode)> {
    [
        ReplayMode::Open,
        ReplayMode::OpenHugePages,
        ReplayMode::Reused,
    ]
    .into_iter()
    .flat_map(|mode| ReplayMethod::ALL.map(|method| (method, mode)))
    .collect()
}

fn replay_rows(
    cases: &[(ReplayMethod, ReplayMode)],
    samples: Vec<Vec<Duration>>,
    workload: &Workload,
) -> Vec<ThroughputRow> {
    let mut rows: Vec<ThroughputRow> = cases
        .iter()
        .zip(samples)
        .filter_map(|(&(method, mode), samples)| {
            let label = match mode {
                ReplayMode::Open | ReplayMode::OpenHugePages => method.label(),
                ReplayMode::Reused => method.reused_label(),
            };
            Some(row(
                label,
                method.id(),
                mode.name(),
                Summary::of(samples)?,
                workload,
            ))
        })
        .collect();
    for mode in [
        ReplayMode::Open,
        ReplayMode::OpenHugePages,
        ReplayMode::Reused,
    ] {
        set_ratios(&mut rows, mode.name(), ReplayMethod::BufReader.id());
        set_limit_ratios(&mut rows, mode.name(), ReplayMethod::LimitCrc.id());
    }
    rows
}

/// Appends `workload`'s first events (at most 200) to a stream that already holds 16 MiB,
/// each followed by [`StreamWriter::flush`], and returns the time they took.
///
/// The 16 MiB are appended and flushed before the clock starts, and the stream has 4 MiB
/// to spare after the timed events, so those land where a long-lived stream's do: there
/// the page cache holds large folios, and a flush writes back every dirty folio it
/// touches whole.
///
/// # Errors
///
/// As for [`StreamWriter::create`], [`StreamWriter::append`] and [`StreamWriter::flush`].
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

fn flush_rows(
    workload: &Workload,
    dir: &BenchDir,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<ThroughputRow>> {
    progress(&format!(
        "bench: append + flush, huge pages off and on, {FLUSH_RUNS} runs"
    ));
    let mut samples = [Vec::new(), Vec::new()];
    for run in 0..FLUSH_RUNS {
        // Alternate which goes first, so neither always follows the other.
        for k in 0..2 {
            let huge = (k + run as usize) % 2 == 1;
            let time = flush_once(huge, workload, dir)?;
            if let Some(s) = samples.get_mut(usize::from(huge)) {
                s.push(time);
            }
        }
    }
    let flushed = Workload::new(workload.events().min(FLUSH_EVENTS), workload.payload_size());
    let [off, on] = samples;
    let mut rows: Vec<ThroughputRow> = [
        ("evstream append + flush", "evstream_flush", off),
        (
            "evstream append + flush, huge pages",
            "evstream_flush_huge_pages",
            on,
        ),
    ]
    .into_iter()
    .filter_map(|(label, id, samples)| {
        Some(row(label, id, "flush", Summary::of(samples)?, &flushed))
    })
    .collect();
    set_ratios(&mut rows, "flush", "evstream_flush");
    Ok(rows)
}

/// A histogram of 1 ns to a minute with three significant digits.
fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| {
        io_error(
            "create histogram",
            Path::new("<memory>"),
            io::Error::other(e),
        )
    })
}

/// Percentiles of one latency run.
#[derive(Debug, Clone, Copy)]
struct RunPercentiles {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl RunPercentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

fn median_u64(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn latency_row(case: &LatencyCase, runs: &[RunPercentiles], samples: u64) -> LatencyRow {
    let pick = |f: fn(&RunPercentiles) -> u64| median_u64(runs.iter().map(f).collect());
    let (label, id) = match case.mode {
        Mode::Cold => (case.method.label(), case.method.id()),
        Mode::Warm => (case.method.warm_label(), case.method.warm_id()),
    };
    let pace_ns = case
        .pace
        .map(|p| u64::try_from(p.as_nanos()).unwrap_or(u64::MAX));
    let (method, id) = match pace_ns {
        Some(ns) => (
            format!("{label}, paced {}", fmt_ns(ns)),
            format!("{id}_paced"),
        ),
        None => (label.to_owned(), id.to_owned()),
    };
    LatencyRow {
        method,
        id,
        mode: case.mode.name(),
        pace_ns,
        p50: pick(|r| r.p50),
        p99: pick(|r| r.p99),
        p999: pick(|r| r.p999),
        max: pick(|r| r.max),
        worst: runs.iter().map(|r| r.max).max().unwrap_or_default(),
        samples,
    }
}

/// One latency measurement: a method and mode, flat out or paced.
#[derive(Debug, Clone, Copy)]
struct LatencyCase {
    method: AppendMethod,
    mode: Mode,
    pace: Option<Duration>,
}

/// The latency cases: evstream in every prefault mode and prefaulted, the baselines cold,
/// and the in-memory limit, all flat out; then evstream paced with and without prefaulting.
fn latency_cases(pace: Duration) -> Vec<LatencyCase> {
    let case = |method, mode, pace| LatencyCase { method, mode, pace };
    // A batch call's latency is not an append's: no latency row for it.
    let mut cases: Vec<LatencyCase> = AppendMethod::ALL
        .into_iter()
        .filter(|m| *m != AppendMethod::AnonMemory && *m != AppendMethod::EvstreamBatch)
        .map(|m| case(m, Mode::Cold, None))
        .collect();
    cases.insert(
        3,
        case(AppendMethod::Evstream(Prefault::Off), Mode::Warm, None),
    );
    cases.push(case(AppendMethod::AnonMemory, Mode::Warm, None));
    for prefault in [Prefault::Background, Prefault::Inline, Prefault::Off] {
        cases.push(case(
            AppendMethod::Evstream(prefault),
            Mode::Cold,
            Some(pace),
        ));
    }
    cases
}

fn latency_rows(
    config: &BenchConfig,
    dir: &BenchDir,
    progress: &mut dyn FnMut(&str),
) -> Result<(u64, Vec<LatencyRow>)> {
    let event_len = EVENT_HEADER_LEN + config.payload_size as u64;
    let events = config
        .latency_events
        .min((LATENCY_BYTES / event_len).max(MIN_LATENCY_EVENTS));
    let workload = Workload::new(events, config.payload_size);
    let cases = latency_cases(config.latency_pace);
    let runs_per_case = config.latency_runs.max(1);
    let mut per_case: Vec<Vec<RunPercentiles>> = vec![Vec::new(); cases.len()];

    // The clock's own cost, measured the same way with nothing between the two reads.
    let mut clock_runs = Vec::new();
    for _ in 0..runs_per_case {
        let mut h = new_histogram()?;
        let mut probe = PerEvent::new(&mut h);
        for i in 0..workload.events() {
            probe.time(|| black_box(i));
        }
        clock_runs.push(RunPercentiles::of(&h));
    }

    for run in 0..runs_per_case {
        progress(&format!(
            "bench: latency run {}/{runs_per_case} ({} appends x {} systems)",
            run + 1,
            workload.events(),
            cases.len()
        ));
        for (idx, case) in cases.iter().enumerate() {
            let mut h = new_histogram()?;
            let probe = PerEvent::new(&mut h);
            match case.pace {
                None => append_run(case.method, case.mode, &workload, dir, &mut { probe })?,
                Some(interval) => {
                    let mut paced = Paced {
                        inner: probe,
                        interval,
                        next: None,
                    };
                    append_run(case.method, case.mode, &workload, dir, &mut paced)?
                }
            };
            if let Some(runs) = per_case.get_mut(idx) {
                runs.push(RunPercentiles::of(&h));
            }
        }
    }

    let samples = workload.events() * u64::from(runs_per_case);
    let mut clock = latency_row(
        &LatencyCase {
            method: AppendMethod::AnonMemory,
            mode: Mode::Warm,
            pace: None,
        },
        &clock_runs,
        samples,
    );
    clock.method = "clock overhead (Instant::now x2)".to_owned();
    clock.id = "clock".to_owned();
    let mut rows = vec![clock];
    for (case, runs) in cases.iter().zip(per_case) {
        rows.push(latency_row(case, &runs, samples));
    }
    Ok((workload.events(), rows))
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

fn write_throughput(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    width: usize,
    rows: &[&ThroughputRow],
) -> fmt::Result {
    writeln!(f, "{title}")?;
    writeln!(
        f,
        "  {:<width$} {:>12} {:>10} {:>8} {:>8} {:>8}",
        "method", "events/s", "MB/s", "ratio", "of limit", "spread"
    )?;
    for r in rows {
        let of_limit = r
            .of_limit
            .map_or_else(|| "-".to_owned(), |l| format!("{l:.2}x"));
        writeln!(
            f,
            "  {:<width$} {:>12} {:>10.0} {:>7.2}x {:>8} {:>7.1}%",
            r.method,
            fmt_rate(r.events_per_sec),
            r.mb_per_sec,
            r.ratio,
            of_limit,
            r.summary.spread() * 100.0
        )?;
    }
    writeln!(f)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "evstream bench: {} events x {} B payload, median of {} repeats, files in {}",
            self.events,
            self.payload_size,
            self.repeats,
            self.dir.display()
        )?;
        writeln!(
            f,
            "MB/s counts payload bytes (10^6); spread is half the interquartile range over the median.\n"
        )?;
        let width = self
            .append
            .iter()
            .chain(&self.replay)
            .chain(&self.flush)
            .map(|r| r.method.len())
            .chain(self.latency.iter().map(|r| r.method.len()))
            .max()
            .unwrap_or(0);
        let pick = |mode: &str| -> Vec<&ThroughputRow> {
            self.append.iter().filter(|r| r.mode == mode).collect()
        };
        write_throughput(
            f,
            "Append, cold (file creation timed); ratio vs write_all per event; of limit: evstream vs filling fresh page cache via a mapping, the rest vs via write(2)",
            width,
            &pick("cold"),
        )?;
        write_throughput(
            f,
            "Append, warm (file created and prefaulted untimed); ratio vs write_all per event",
            width,
            &pick("warm"),
        )?;
        let replay = |mode: &str| -> Vec<&ThroughputRow> {
            self.replay.iter().filter(|r| r.mode == mode).collect()
        };
        for (mode, title) in [
            (
                "replay",
                "Replay, open timed (page cache warm); ratio vs the BufReader parse",
            ),
            (
                "replay_huge_pages",
                "Replay, open timed, of a stream written with huge_pages(true); ratio vs the BufReader parse of that file",
            ),
            (
                "replay_reused",
                "Replay, second pass of an open reader (or file); ratio vs the BufReader parse",
            ),
        ] {
            let rows = replay(mode);
            if !rows.is_empty() {
                write_throughput(f, title, width, &rows)?;
            }
        }
        if !self.flush.is_empty() {
            let rows: Vec<&ThroughputRow> = self.flush.iter().collect();
            write_throughput(
                f,
                &format!(
                    "Append + flush, {} events into a stream already holding 16 MiB; ratio vs huge pages off",
                    self.events.min(FLUSH_EVENTS)
                ),
                width,
                &rows,
            )?;
        }
        if !self.latency.is_empty() {
            writeln!(
                f,
                "Append latency, {} B payload, {} appends x {} runs; percentiles are medians over runs",
                self.payload_size, self.latency_events, self.latency_runs
            )?;
            writeln!(
                f,
                "  {:<width$} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "method", "mode", "p50", "p99", "p99.9", "max", "worst"
            )?;
            for r in &self.latency {
                writeln!(
                    f,
                    "  {:<width$} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    r.method,
                    r.mode,
                    fmt_ns(r.p50),
                    fmt_ns(r.p99),
                    fmt_ns(r.p999),
                    fmt_ns(r.max),
                    fmt_ns(r.worst)
                )?;
            }
            writeln!(f)?;
        }
        write!(f, "total {:.1} s", self.elapsed.as_secs_f64())
    }
}

/// Appends `s` to `out` as a JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite `f64` as JSON (non-finite values, which JSON lacks, become `null`).
fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

fn json_throughput(out: &mut String, rows: &[ThroughputRow]) {
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n    {\"method\": ");
        json_str(out, r.method);
        out.push_str(", \"id\": ");
        json_str(out, r.id);
        out.push_str(", \"mode\": ");
        json_str(out, r.mode);
        let ns = |d: Duration| d.as_nanos().to_string();
        out.push_str(&format!(
            ", \"events_per_sec\": {}, \"mb_per_sec\": {}, \"ratio\": {}, \"of_limit\": {}, \"median_ns\": {}, \"q1_ns\": {}, \"q3_ns\": {}, \"min_ns\": {}, \"max_ns\": {}, \"samples_ns\": [{}]}}",
            json_f64(r.events_per_sec),
            json_f64(r.mb_per_sec),
            json_f64(r.ratio),
            r.of_limit.map_or_else(|| "null".to_owned(), json_f64),
            ns(r.summary.median),
            ns(r.summary.q1),
            ns(r.summary.q3),
            ns(r.summary.min),
            ns(r.summary.max),
            r.summary.samples.iter().map(|d| ns(*d)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str("\n  ]");
}

impl BenchReport {
    /// The report as a JSON object (hand-written; the fields mirror this struct's).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\n  \"events\": ");
        out.push_str(&self.events.to_string());
        out.push_str(&format!(
            ",\n  \"payload_size\": {},\n  \"repeats\": {},\n  \"latency_events\": {},\n  \"latency_runs\": {},\n  \"dir\": ",
            self.payload_size, self.repeats, self.latency_events, self.latency_runs
        ));
        json_str(&mut out, &self.dir.to_string_lossy());
        out.push_str(",\n  \"append\": ");
        json_throughput(&mut out, &self.append);
        out.push_str(",\n  \"replay\": ");
        json_throughput(&mut out, &self.replay);
        out.push_str(",\n  \"flush\": ");
        json_throughput(&mut out, &self.flush);
        out.push_str(",\n  \"latency\": [");
        for (i, r) in self.latency.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n    {\"method\": ");
            json_str(&mut out, &r.method);
            out.push_str(", \"id\": ");
            json_str(&mut out, &r.id);
            out.push_str(", \"mode\": ");
            json_str(&mut out, r.mode);
            out.push_str(", \"pace_ns\": ");
            out.push_str(&r.pace_ns.map_or("null".to_owned(), |ns| ns.to_string()));
            out.push_str(&format!(
                ", \"p50_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \"max_ns\": {}, \"worst_ns\": {}, \"samples\": {}}}",
                r.p50, r.p99, r.p999, r.max, r.worst, r.samples
            ));
        }
        out.push_str("\n  ],\n  \"elapsed_s\": ");
        out.push_str(&json_f64(self.elapsed.as_secs_f64()));
        out.push_str("\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn expected(workload: &Workload) -> Vec<(i64, Vec<u8>)> {
        (0..workload.events())
            .map(|i| (Workload::timestamp(i), workload.payload(i).to_vec()))
            .collect()
    }

    #[test]
    fn workload_payloads_vary_and_have_the_right_size() {
        let w = Workload::new(300, 40);
        assert_eq!(w.payload(0).len(), 40);
        assert_eq!(w.payload(299).len(), 40);
        assert_ne!(w.payload(0), w.payload(1));
        assert_eq!(w.payload_bytes(), 12_000);
        assert_eq!(w.stream_len(), 24 + 300 * 56);
        assert!(Workload::timestamp(1) > Workload::timestamp(0));
    }

    #[test]
    fn every_system_writes_a_stream_both_readers_accept() -> TestResult {
        let dir = tempfile::tempdir()?;
        let workload = Workload::new(300, 700);
        let want = expected(&workload);
        for method in AppendMethod::ALL {
            if method == AppendMethod::AnonMemory {
                continue;
            }
            for mode in [Mode::Cold, Mode::Warm] {
                let what = format!("{} {}", method.label(), mode.name());
                let path = dir
                    .path()
                    .join(format!("{}-{}.evs", method.id(), mode.name()));
                append_to(&path, method, mode, &workload, &mut Untimed)?;

                // The std baselines write the header and events (what format version 1
                // defined) without the version 2 trailer, which only evstream writes.
                let evstream = matches!(
                    method,
                    AppendMethod::Evstream(_)
                        | AppendMethod::EvstreamHugePages
                        | AppendMethod::EvstreamBatch
                );
                if evstream {
                    let reader = StreamReader::open(&path)?;
                    let got = reader
                        .iter()
                        .map(|e| e.map(|e| (e.timestamp(), e.payload().to_vec())))
                        .collect::<Result<Vec<_>>>()?;
                    assert!(got == want, "{what}: StreamReader saw other events");
                    assert_eq!(reader.write_offset(), workload.stream_len(), "{what}");
                }

                let mut parser = EventReader::new(BufReader::new(File::open(&path)?))?;
                assert_eq!(parser.header().event_count, workload.events(), "{what}");
                let mut payload = Vec::new();
                let mut parsed = Vec::new();
                while let Some(ts) = parser.read_event(&mut payload)? {
                    parsed.push((ts, payload.clone()));
                }
                assert!(
                    parsed == want,
                    "{what}: the BufReader parse saw other events"
                );
                let len = if evstream {
                    workload.capacity()
                } else {
                    workload.stream_len()
                };
                assert_eq!(fs::metadata(&path)?.len(), len, "{what}");
            }
        }
        Ok(())
    }

    #[test]
    fn an_empty_workload_runs_everywhere() -> TestResult {
        let dir = BenchDir::new(None)?;
        let workload = Workload::new(0, 100);
        for method in AppendMethod::ALL {
            for mode in [Mode::Cold, Mode::Warm] {
                append_once(method, mode, &workload, &dir)?;
            }
        }
        let path = dir.fresh_file();
        write_replay_file(&path, &workload)?;
        for (method, mode) in replay_cases() {
            let expected = (method != ReplayMethod::LimitCrc).then_some(0);
            assert_eq!(replay_once(method, mode, &path)?.1, expected);
        }
        Ok(())
    }

    #[test]
    fn replay_methods_see_every_event() -> TestResult {
        let dir = tempfile::tempdir()?;
        let workload = Workload::new(500, 100);
        let path = dir.path().join("replay.evs");
        write_replay_file(&path, &workload)?;
        for (method, mode) in replay_cases() {
            let (_, seen) = replay_once(method, mode, &path)?;
            // The limit checksums the bytes without parsing them into events.
            // The per-event floor hashes every event, so it counts them.
            let expected = (method != ReplayMethod::LimitCrc).then_some(500);
            assert_eq!(seen, expected, "{} {}", method.label(), mode.name());
        }
        Ok(())
    }

    #[test]
    fn replay_reports_damage() -> TestResult {
        let dir = tempfile::tempdir()?;
        let workload = Workload::new(20, 100);
        let path = dir.path().join("damaged.evs");
        write_replay_file(&path, &workload)?;
        let mut bytes = fs::read(&path)?;
        // A payload byte of the third event.
        if let Some(b) = bytes.get_mut(24 + 2 * 116 + 16 + 5) {
            *b ^= 1;
        }
        fs::write(&path, &bytes)?;
        assert!(matches!(
            replay_once(ReplayMethod::EvstreamVerified, ReplayMode::Open, &path),
            Err(Error::Corrupt { offset: 256, .. })
        ));
        let Err(Error::Io { source, .. }) =
            replay_once(ReplayMethod::BufReader, ReplayMode::Reused, &path)
        else {
            panic!("the BufReader parse missed the damage");
        };
        assert!(matches!(
            stdio::CodecError::from_io(&source),
            Some(stdio::CodecError::Corrupt { offset: 256, .. })
        ));
        // Unverified iteration does not look at checksums.
        assert_eq!(
            replay_once(ReplayMethod::EvstreamUnverified, ReplayMode::Open, &path)?.1,
            Some(20)
        );
        Ok(())
    }

    #[test]
    fn latency_runs_time_every_append() -> TestResult {
        let dir = BenchDir::new(None)?;
        let workload = Workload::new(1000, 64);
        for case in latency_cases(Duration::from_nanos(100)) {
            let mut h = new_histogram()?;
            append_run(
                case.method,
                case.mode,
                &workload,
                &dir,
                &mut PerEvent::new(&mut h),
            )?;
            assert_eq!(h.len(), 1000, "{}", case.method.label());
            assert!(h.min() >= 1);
        }
        let path = dir.path().to_owned();
        assert!(path.is_dir());
        assert_eq!(
            fs::read_dir(&path)?.count(),
            0,
            "runs leave no files behind"
        );
        drop(dir);
        assert!(!path.exists(), "the temporary directory is removed");
        Ok(())
    }

    #[test]
    fn summary_quartiles_interpolate() -> TestResult {
        let ms = |v: u64| Duration::from_millis(v);
        let s = Summary::of(vec![ms(5), ms(1), ms(4), ms(2), ms(3)]).ok_or("empty")?;
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (ms(1), ms(2), ms(3), ms(4), ms(5))
        );
        assert!((s.spread() - 1.0 / 3.0).abs() < 1e-9);
        let even = Summary::of(vec![ms(1), ms(2)]).ok_or("empty")?;
        assert_eq!(even.median, Duration::from_micros(1500));
        assert!(Summary::of(Vec::new()).is_none());
        Ok(())
    }

    #[test]
    fn a_small_run_reports_every_row() -> TestResult {
        let config = BenchConfig {
            events: 200,
            payload_size: 64,
            repeats: Some(2),
            latency_events: 300,
            latency_runs: 1,
            latency_pace: Duration::from_nanos(500),
            ..BenchConfig::default()
        };
        let mut lines = Vec::new();
        let report = run(&config, &mut |line| lines.push(line.to_owned()))?;
        assert!(!lines.is_empty());
        assert_eq!(report.repeats, 2);
        assert_eq!(
            report.append.len(),
            append_cases().len() + FillLimit::ALL.len()
        );
        assert_eq!(
            report.append.iter().filter(|r| r.mode == "cold").count(),
            13
        );
        assert_eq!(report.append.iter().filter(|r| r.mode == "warm").count(), 7);
        assert_eq!(report.replay.len(), 15);
        assert_eq!(
            report
                .replay
                .iter()
                .filter(|r| r.mode == "replay_huge_pages")
                .count(),
            5
        );
        assert_eq!(
            report
                .replay
                .iter()
                .filter(|r| r.mode == "replay_reused")
                .count(),
            5
        );
        // Every replay and append row is set against its limit, and each limit row
        // against itself: evstream cold against the mapping fill (with huge pages, the
        // huge-page fill), everything else cold against the write(2) fill.
        for r in report.replay.iter().chain(&report.append) {
            let of_limit = r.of_limit.ok_or("a row without its ratio to the limit")?;
            if [
                ReplayMethod::LimitCrc.id(),
                AppendMethod::AnonMemory.id(),
                FillLimit::Write.id(),
            ]
            .contains(&r.id)
            {
                assert!((of_limit - 1.0).abs() < 1e-9, "{} {of_limit}", r.method);
            }
        }
        let cold = |id: &str| {
            report
                .append
                .iter()
                .find(|r| r.mode == "cold" && r.id == id)
                .map(|r| (r.summary.median, r.of_limit))
        };
        let (fill, _) = cold(FillLimit::Mapping.id()).ok_or("no mapping fill row")?;
        let (evstream, of_limit) =
            cold(AppendMethod::Evstream(Prefault::Off).id()).ok_or("no evstream row")?;
        let expected = fill.as_secs_f64() / evstream.as_secs_f64();
        assert!((of_limit.ok_or("no ratio")? - expected).abs() < 1e-9);
        assert!(report.to_json().contains("\"fill_write\""));
        assert_eq!(
            report.latency.len(),
            1 + latency_cases(Duration::ZERO).len()
        );
        assert_eq!(
            report
                .latency
                .iter()
                .filter(|r| r.pace_ns == Some(500))
                .count(),
            3
        );
        for r in &report.flush {
            assert_eq!(r.summary.samples.len(), FLUSH_RUNS as usize, "{}", r.method);
            assert!(r.events_per_sec > 0.0 && r.ratio > 0.0, "{}", r.method);
        }
        for r in report.append.iter().chain(&report.replay) {
            assert_eq!(r.summary.samples.len(), 2, "{}", r.method);
            assert!(r.events_per_sec > 0.0 && r.ratio > 0.0, "{}", r.method);
            if r.id == "write_per_event" || r.id == "bufreader" {
                assert!(
                    (r.ratio - 1.0).abs() < 1e-12,
                    "{} is its own baseline",
                    r.method
                );
            }
        }
        for r in &report.latency {
            assert!(
                r.p50 <= r.p99 && r.p99 <= r.p999 && r.p999 <= r.worst,
                "{}",
                r.method
            );
            assert_eq!(r.samples, 300);
        }
        let table = report.to_string();
        for row in report.append.iter().chain(&report.replay) {
            assert!(
                table.contains(row.method),
                "{} missing from the table",
                row.method
            );
        }
        assert!(table.contains("p99.9"));
        let json = report.to_json();
        assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json.matches('[').count(), json.matches(']').count());
        assert_eq!(report.flush.len(), 2);
        assert_eq!(json.matches("\"events_per_sec\"").count(), 20 + 15 + 2);
        assert_eq!(json.matches("\"p999_ns\"").count(), report.latency.len());
        assert!(!report.dir.exists(), "the temporary directory is removed");
        Ok(())
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\u{1}");
        assert_eq!(out, r#""a\"b\\c\nd\u0001""#);
        assert_eq!(json_f64(f64::NAN), "null");
        assert_eq!(json_f64(1.5), "1.5");
    }
}
