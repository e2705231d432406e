//! End-to-end latency from a writer process to a follower process (issue 11).
//!
//! The process that calls [`run`] is the writer. For each rate and wait strategy it
//! creates a stream (prefaulted, so the writer takes no page faults), starts a follower
//! process (the command in [`FollowLatencyConfig::follower`], normally the `evstream`
//! binary's hidden `bench-follower` subcommand, which calls [`follow_and_measure`]),
//! waits until the follower is following, then appends events at a fixed rate: it spins
//! on `CLOCK_MONOTONIC` until each event's scheduled time (an event that is late starts
//! at once), reads the clock, writes that reading into the payload's first 8 bytes
//! (little-endian nanoseconds) and calls [`StreamWriter::append`]. The follower reads the
//! clock as soon as it holds each event (verified, from its own mapping) and records
//! `now - stamp` in a histogram. The clock is the same across processes on one machine.
//!
//! The follower also measures its own CPU time (`CLOCK_PROCESS_CPUTIME_ID`) and its
//! voluntary and involuntary context switches (`/proc/thread-self/status`) from the first
//! event to the last, so the CPU column is the share of one core it used while events
//! arrived. A last event marked as such ends the run. The idle row is a blocking follower
//! on a stream that receives nothing for [`FollowLatencyConfig::idle`], then the end
//! event: its CPU share and wakeups (voluntary switches) per second over that time.
//!
//! With [`FollowLatencyConfig::async_follower`], each rate has one more row, `async`:
//! the follower process follows with `evstream-tokio`'s [`StreamFollower`] on a
//! current-thread tokio runtime ([`follow_and_measure_async`]), its waits served by the
//! crate's pool of waiting threads; its CPU and switches count every thread of the
//! process (the runtime's and the pool's).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

use evstream::format::{EVENT_HEADER_LEN, capacity_for_events};
use evstream::{Error, Prefault, Result, StreamReader, StreamWriter, WaitStrategy, WriterOptions};
use evstream_tokio::StreamFollower;

use crate::{BenchDir, Scratch, fmt_ns, fmt_rate, io_error, new_histogram};

/// Payload bytes of every event: the stamp (8), the end mark (1) and padding, so that an
/// event with its 16-byte header is 48 bytes, near the 40-byte events of the published
/// Chronicle Queue figures.
pub const PAYLOAD_LEN: usize = 32;

/// Where the end mark lies in the payload.
const END_MARK_AT: usize = 8;

/// Looks of [`WaitStrategy::SpinThenBlock`] in these runs.
pub const SPINS: u32 = 1_000;

/// How long the writer lets a new follower settle into its wait before the first event.
const SETTLE: Duration = Duration::from_millis(50);

/// The longest a run may take beyond its scheduled time before its follower is killed.
const GRACE: Duration = Duration::from_secs(30);

/// What [`run`] measures.
#[derive(Debug, Clone)]
pub struct FollowLatencyConfig {
    /// Events per second the writer aims at, one run each (default 10,000, 100,000 and
    /// 1,000,000).
    pub rates: Vec<u64>,
    /// Wait strategies, one follower each per rate (default block, spin-then-block with
    /// [`SPINS`] looks, busy-spin).
    pub strategies: Vec<WaitStrategy>,
    /// Time of events per run (default 1 s); a run has at least one event.
    pub run_time: Duration,
    /// How long the idle follower waits (default 2 s; zero skips the idle row).
    pub idle: Duration,
    /// Directory for the stream files (default: a fresh temporary directory).
    pub dir: Option<PathBuf>,
    /// The follower's program and its first arguments; [`run`] adds the stream's path and
    /// the strategy's name, which it passes to [`follow_and_measure`].
    pub follower: Vec<OsString>,
    /// One more follower per rate: the async follower, after the strategies (default on;
    /// the follower command is given [`ASYNC_FOLLOWER`] as the strategy's name).
    pub async_follower: bool,
}

impl Default for FollowLatencyConfig {
    fn default() -> Self {
        Self {
            rates: vec![10_000, 100_000, 1_000_000],
            strategies: vec![
                WaitStrategy::Block,
                WaitStrategy::SpinThenBlock { spins: SPINS },
                WaitStrategy::BusySpin,
            ],
            run_time: Duration::from_secs(1),
            idle: Duration::from_secs(2),
            dir: None,
            follower: Vec::new(),
            async_follower: true,
        }
    }
}

/// The name of the async follower on the follower's command line and in the report.
pub const ASYNC_FOLLOWER: &str = "async";

/// How a follower process follows: a blocking [`Follow`](evstream::Follow) with a wait
/// strategy, or the async follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerMode {
    /// A blocking follower with this strategy ([`follow_and_measure`]).
    Blocking(WaitStrategy),
    /// `evstream-tokio`'s follower ([`follow_and_measure_async`]).
    Async,
}

/// Parses a strategy's name (as [`parse_strategy`]) or [`ASYNC_FOLLOWER`].
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_follower(name: &str) -> std::result::Result<FollowerMode, String> {
    if name == ASYNC_FOLLOWER {
        return Ok(FollowerMode::Async);
    }
    parse_strategy(name)
        .map(FollowerMode::Blocking)
        .map_err(|e| format!("{e}, nor {ASYNC_FOLLOWER}"))
}

/// The name of a strategy on the follower's command line and in the report.
pub fn strategy_name(strategy: WaitStrategy) -> String {
    match strategy {
        WaitStrategy::SpinThenBlock { spins } => format!("spin{spins}"),
        WaitStrategy::BusySpin => "busy-spin".to_owned(),
        _ => "block".to_owned(),
    }
}

/// Parses what [`strategy_name`] prints.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_strategy(name: &str) -> std::result::Result<WaitStrategy, String> {
    match name {
        "block" => Ok(WaitStrategy::Block),
        "busy-spin" => Ok(WaitStrategy::BusySpin),
        _ => name
            .strip_prefix("spin")
            .and_then(|n| n.parse().ok())
            .map(|spins| WaitStrategy::SpinThenBlock { spins })
            .ok_or_else(|| format!("{name:?} is not block, spinN or busy-spin")),
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock both processes stamp with.
pub fn monotonic_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::Monotonic))
}

/// This process's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::ProcessCPUTime))
}

fn timespec_ns(t: rustix::time::Timespec) -> u64 {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The calling thread's (voluntary, involuntary) context switches so far, from
/// `/proc/thread-self/status`; zeros where there is no such file.
fn context_switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

/// A snapshot of the follower's clocks and counters.
#[derive(Debug, Clone, Copy)]
struct Usage {
    wall: u64,
    cpu: u64,
    voluntary: u64,
    involuntary: u64,
}

impl Usage {
    fn now() -> Self {
        let (voluntary, involuntary) = context_switches();
        Self {
            wall: monotonic_ns(),
            cpu: cpu_ns(),
            voluntary,
            involuntary,
        }
    }
}

/// What a follower process measured, sent to the writer as one line on its standard
/// output (see [`to_line`](Self::to_line)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowerReport {
    /// Events received.
    pub events: u64,
    /// Latency percentiles, nanoseconds.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// The largest latency.
    pub max: u64,
    /// CPU time from the first event (or from following, if the first was the last) to
    /// the last.
    pub cpu_ns: u64,
    /// Wall time over the same span.
    pub wall_ns: u64,
    /// Voluntary context switches (sleeps, so wakeups) over the span.
    pub voluntary: u64,
    /// Involuntary context switches (preemptions by the scheduler) over the span.
    pub involuntary: u64,
}

const REPORT_KEYS: [&str; 9] = [
    "events",
    "p50",
    "p99",
    "p999",
    "max",
    "cpu_ns",
    "wall_ns",
    "voluntary",
    "involuntary",
];

impl FollowerReport {
    fn values(&self) -> [u64; 9] {
        [
            self.events,
            self.p50,
            self.p99,
            self.p999,
            self.max,
            self.cpu_ns,
            self.wall_ns,
            self.voluntary,
            self.involuntary,
        ]
    }

    /// The line the follower prints: `follower events=N p50=NS ...`.
    pub fn to_line(&self) -> String {
        let mut line = String::from("follower");
        for (key, value) in REPORT_KEYS.iter().zip(self.values()) {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }

    /// Parses what [`to_line`](Self::to_line) printed; `None` if a field is missing.
    pub fn parse_line(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next()? != "follower" {
            return None;
        }
        let mut values = [None; 9];
        for word in words {
            let (key, value) = word.split_once('=')?;
            let at = REPORT_KEYS.iter().position(|k| *k == key)?;
            *values.get_mut(at)? = Some(value.parse::<u64>().ok()?);
        }
        let [
            events,
            p50,
            p99,
            p999,
            max,
            cpu_ns,
            wall_ns,
            voluntary,
            involuntary,
        ] = values;
        Some(Self {
            events: events?,
            p50: p50?,
            p99: p99?,
            p999: p999?,
            max: max?,
            cpu_ns: cpu_ns?,
            wall_ns: wall_ns?,
            voluntary: voluntary?,
            involuntary: involuntary?,
        })
    }

    /// CPU use as a percentage of one core over the measured span.
    pub fn cpu_percent(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.cpu_ns as f64 * 100.0 / self.wall_ns as f64
    }

    /// Voluntary context switches per second over the measured span.
    pub fn wakeups_per_s(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.voluntary as f64 * 1e9 / self.wall_ns as f64
    }
}

/// The follower's side: follows the stream at `path` from its current end with
/// `strategy`, prints `ready` on `out` once it follows, and records each event's latency
/// until the event marked as the last (or the end of a sealed stream).
///
/// # Errors
/// Whatever opening or following the stream returns; [`Error::Io`] if `out` fails.
pub fn follow_and_measure(
    path: &Path,
    strategy: WaitStrategy,
    out: &mut dyn Write,
) -> Result<FollowerReport> {
    let reader = StreamReader::open(path)?;
    let mut follow = reader
        .follow(reader.write_offset())?
        .with_strategy(strategy);
    let stdout_error = |e: io::Error| io_error("write to", "<standard output>", e);
    writeln!(out, "ready").map_err(stdout_error)?;
    out.flush().map_err(stdout_error)?;
    let mut histogram = new_histogram()?;
    let mut start = Usage::now();
    let mut events = 0u64;
    for event in &mut follow {
        let event = event?;
        let now = monotonic_ns();
        let payload = event.payload();
        let stamp = payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(now, u64::from_le_bytes);
        let last = payload.get(END_MARK_AT).is_some_and(|&b| b != 0);
        // The span starts at the first event, unless that ends the run (the idle row):
        // then it is the whole wait since following began.
        if events == 0 && !last {
            start = Usage::now();
        }
        events += 1;
        histogram.saturating_record(now.saturating_sub(stamp).max(1));
        if last {
            break;
        }
    }
    let end = Usage::now();
    Ok(FollowerReport {
        events,
        p50: histogram.value_at_quantile(0.5),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        cpu_ns: end.cpu.saturating_sub(start.cpu),
        wall_ns: end.wall.saturating_sub(start.wall),
        voluntary: end.voluntary.saturating_sub(start.voluntary),
        involuntary: end.involuntary.saturating_sub(start.involuntary),
    })
}

/// The async follower's side: as [`follow_and_measure`], with `evstream-tokio`'s
/// [`StreamFollower`] on a current-thread tokio runtime. Its CPU time and context
/// switches are the whole process's: the runtime's thread and the pool's waiting thread.
///
/// # Errors
/// As [`follow_and_measure`]; [`Error::Io`] if the runtime cannot be built.
pub fn follow_and_measure_async(path: &Path, out: &mut dyn Write) -> Result<FollowerReport> {
    use futures_util::StreamExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| io_error("start a runtime for", path, e))?;
    runtime.block_on(async {
        let reader = StreamReader::open(path)?;
        let offset = reader.write_offset();
        let mut follow = StreamFollower::new(reader, offset)?;
        let stdout_error = |e: io::Error| io_error("write to", "<standard output>", e);
        writeln!(out, "ready").map_err(stdout_error)?;
        out.flush().map_err(stdout_error)?;
        let mut histogram = new_histogram()?;
        let mut start = Usage::now_process();
        let mut events = 0u64;
        while let Some(event) = follow.next().await {
            let event = event?;
            let now = monotonic_ns();
            let payload = &event.payload[..];
            let stamp = payload
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(now, u64::from_le_bytes);
            let last = payload.get(END_MARK_AT).is_some_and(|&b| b != 0);
            if events == 0 && !last {
                start = Usage::now_process();
            }
            events += 1;
            histogram.saturating_record(now.saturating_sub(stamp).max(1));
            if last {
                break;
            }
        }
        let end = Usage::now_process();
        Ok(FollowerReport {
            events,
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            cpu_ns: end.cpu.saturating_sub(start.cpu),
            wall_ns: end.wall.saturating_sub(start.wall),
            voluntary: end.voluntary.saturating_sub(start.voluntary),
            involuntary: end.involuntary.saturating_sub(start.involuntary),
        })
    })
}

/// The (voluntary, involuntary) context switches of every thread of this process so far,
/// from `/proc/self/task/*/status`; zeros where there are none.
fn process_context_switches() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let mut sum = (0u64, 0u64);
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().parse().ok())
                .unwrap_or(0)
        };
        sum.0 += field("voluntary_ctxt_switches:");
        sum.1 += field("nonvoluntary_ctxt_switches:");
    }
    sum
}

impl Usage {
    /// As [`now`](Self::now), with the switches of every thread of the process.
    fn now_process() -> Self {
        let (voluntary, involuntary) = process_context_switches();
        Self {
            wall: monotonic_ns(),
            cpu: cpu_ns(),
            voluntary,
            involuntary,
        }
    }
}

/// One rate and strategy.
#[derive(Debug, Clone)]
pub struct FollowLatencyRow {
    /// The rate the writer aimed at, events per second.
    pub rate: u64,
    /// The rate it reached over the run.
    pub achieved: f64,
    /// The follower's wait strategy.
    pub strategy: WaitStrategy,
    /// Whether the follower was the async follower (then `strategy` is
    /// [`Block`](WaitStrategy::Block), how its pool's threads wait).
    pub async_follower: bool,
    /// What the follower measured.
    pub follower: FollowerReport,
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct FollowLatencyReport {
    /// One row per rate and strategy.
    pub rows: Vec<FollowLatencyRow>,
    /// The idle blocking follower, if measured.
    pub idle: Option<FollowerReport>,
    /// `/proc/loadavg` before and after the runs (empty where there is none).
    pub load: (String, String),
}

/// Runs the follower latency benchmark; `progress` hears about each run as it starts.
///
/// # Errors
/// [`Error::Io`] if a follower cannot be started or fails, and whatever the writer
/// returns.
pub fn run(
    config: &FollowLatencyConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<FollowLatencyReport> {
    let dir = BenchDir::new(config.dir.as_deref())?;
    let load_before = load_average();
    let mut rows = Vec::new();
    for &rate in &config.rates {
        for &strategy in &config.strategies {
            progress(&format!(
                "follower latency: {} events/s, {}",
                fmt_rate(rate as f64),
                strategy_name(strategy)
            ));
            let events = (rate as f64 * config.run_time.as_secs_f64()).ceil() as u64;
            rows.push(one_run(config, &dir, rate, events.max(1), strategy)?);
        }
        if config.async_follower {
            progress(&format!(
                "follower latency: {} events/s, {ASYNC_FOLLOWER}",
                fmt_rate(rate as f64)
            ));
            let events = (rate as f64 * config.run_time.as_secs_f64()).ceil() as u64;
            let mut row = one_run_named(
                config,
                &dir,
                rate,
                events.max(1),
                WaitStrategy::Block,
                ASYNC_FOLLOWER,
            )?;
            row.async_follower = true;
            rows.push(row);
        }
    }
    let idle = if config.idle.is_zero() {
        None
    } else {
        progress("follower latency: idle blocking follower");
        Some(idle_run(config, &dir)?)
    };
    Ok(FollowLatencyReport {
        rows,
        idle,
        load: (load_before, load_average()),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A stream with room for `events` and a follower process started on it.
struct Setup {
    _scratch: Scratch,
    writer: StreamWriter,
    follower: Follower,
}

fn set_up(
    config: &FollowLatencyConfig,
    dir: &BenchDir,
    events: u64,
    strategy: WaitStrategy,
) -> Result<Setup> {
    set_up_named(config, dir, events, &strategy_name(strategy))
}

/// As [`set_up`], the follower given `name` as its strategy.
fn set_up_named(
    config: &FollowLatencyConfig,
    dir: &BenchDir,
    events: u64,
    name: &str,
) -> Result<Setup> {
    let path = dir.fresh_file();
    let scratch = Scratch(path.clone());
    let bytes = events.saturating_mul(EVENT_HEADER_LEN + PAYLOAD_LEN as u64);
    let capacity = capacity_for_events(bytes).ok_or_else(|| {
        io_error(
            "size",
            &path,
            io::Error::other("too many events for one stream"),
        )
    })?;
    let mut writer = StreamWriter::create_with(
        &path,
        capacity,
        WriterOptions::default().prefault(Prefault::Off),
    )?;
    writer.prefault_all()?;
    let follower = Follower::start(&config.follower, &path, name)?;
    Ok(Setup {
        _scratch: scratch,
        writer,
        follower,
    })
}

fn one_run(
    config: &FollowLatencyConfig,
    dir: &BenchDir,
    rate: u64,
    events: u64,
    strategy: WaitStrategy,
) -> Result<FollowLatencyRow> {
    one_run_named(
        config,
        dir,
        rate,
        events,
        strategy,
        &strategy_name(strategy),
    )
}

/// As [`one_run`], the follower given `name` as its strategy.
fn one_run_named(
    config: &FollowLatencyConfig,
    dir: &BenchDir,
    rate: u64,
    events: u64,
    strategy: WaitStrategy,
    name: &str,
) -> Result<FollowLatencyRow> {
    let mut setup = set_up_named(config, dir, events, name)?;
    std::thread::sleep(SETTLE);
    let interval = 1_000_000_000 / rate.max(1);
    let mut payload = [0u8; PAYLOAD_LEN];
    let start = monotonic_ns();
    for i in 0..events {
        let due = start.saturating_add(i.saturating_mul(interval));
        while monotonic_ns() < due {
            std::hint::spin_loop();
        }
        append_stamped(&mut setup.writer, &mut payload, i + 1 == events)?;
    }
    let took = monotonic_ns().saturating_sub(start).max(1);
    let deadline = Instant::now() + GRACE;
    let follower = setup.follower.finish(deadline)?;
    Ok(FollowLatencyRow {
        rate,
        achieved: events as f64 * 1e9 / took as f64,
        strategy,
        async_follower: false,
        follower,
    })
}

fn idle_run(config: &FollowLatencyConfig, dir: &BenchDir) -> Result<FollowerReport> {
    let mut setup = set_up(config, dir, 1, WaitStrategy::Block)?;
    std::thread::sleep(config.idle);
    append_stamped(&mut setup.writer, &mut [0u8; PAYLOAD_LEN], true)?;
    setup.follower.finish(Instant::now() + GRACE)
}

/// Reads the clock, writes it into the payload (with the end mark if `last`) and appends
/// the event, stamped with the same reading.
fn append_stamped(
    writer: &mut StreamWriter,
    payload: &mut [u8; PAYLOAD_LEN],
    last: bool,
) -> Result<()> {
    if let Some(mark) = payload.get_mut(END_MARK_AT) {
        *mark = u8::from(last);
    }
    let stamp = monotonic_ns();
    if let Some(head) = payload.get_mut(..8) {
        head.copy_from_slice(&stamp.to_le_bytes());
    }
    writer.append(i64::try_from(stamp).unwrap_or(i64::MAX), payload)?;
    Ok(())
}

/// A follower process; killed if dropped before it finished.
struct Follower {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    path: PathBuf,
}

impl Follower {
    /// Starts `command` on `path` and waits for its `ready` line.
    fn start(command: &[OsString], path: &Path, strategy: &str) -> Result<Self> {
        let (program, leading) = command.split_first().ok_or_else(|| {
            io_error(
                "start follower",
                path,
                io::Error::other("no follower command"),
            )
        })?;
        let mut child = Command::new(program)
            .args(leading)
            .arg(path)
            .arg(strategy)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io_error("start follower", path, e))?;
        let stdout = child.stdout.take().ok_or_else(|| {
            io_error(
                "start follower",
                path,
                io::Error::other("no standard output"),
            )
        })?;
        let mut follower = Self {
            child,
            stdout: BufReader::new(stdout),
            path: path.to_owned(),
        };
        let line = follower.line()?;
        if line.trim() != "ready" {
            return Err(follower.failed(&format!("said {line:?} instead of ready")));
        }
        Ok(follower)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| io_error("read follower output", &self.path, e))?;
        Ok(line)
    }

    /// Kills the follower (if it still runs) and describes how it failed, with what it
    /// wrote on standard error.
    fn failed(&mut self, what: &str) -> Error {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        io_error(
            "follow",
            &self.path,
            io::Error::other(format!("the follower process {what}: {}", stderr.trim())),
        )
    }

    /// Waits until the follower exits (killing it at `deadline`) and returns its report.
    fn finish(&mut self, deadline: Instant) -> Result<FollowerReport> {
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= deadline => {
                    return Err(self.failed("did not finish in time"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(io_error("wait for follower", &self.path, e)),
            }
        }
        let line = self.line()?;
        FollowerReport::parse_line(&line)
            .ok_or_else(|| self.failed(&format!("reported {:?}", line.trim())))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl fmt::Display for FollowLatencyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Follower latency: writer process to follower process, {}-byte events \
             ({PAYLOAD_LEN}-byte payloads), append start to event held, CLOCK_MONOTONIC",
            EVENT_HEADER_LEN + PAYLOAD_LEN as u64
        )?;
        writeln!(
            f,
            "{:>9} {:>9} {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>9} {:>9}",
            "rate/s",
            "achieved",
            "strategy",
            "events",
            "p50",
            "p99",
            "p99.9",
            "max",
            "CPU",
            "wakeups/s",
            "preempted"
        )?;
        for row in &self.rows {
            let r = &row.follower;
            writeln!(
                f,
                "{:>9} {:>9} {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5.1}% {:>9.0} {:>9}",
                fmt_rate(row.rate as f64),
                fmt_rate(row.achieved),
                if row.async_follower {
                    ASYNC_FOLLOWER.to_owned()
                } else {
                    strategy_name(row.strategy)
                },
                r.events,
                fmt_ns(r.p50),
                fmt_ns(r.p99),
                fmt_ns(r.p999),
                fmt_ns(r.max),
                r.cpu_percent(),
                r.wakeups_per_s(),
                r.involuntary
            )?;
        }
        if let Some(idle) = &self.idle {
            writeln!(
                f,
                "Idle blocking follower: {:.1} s, CPU {:.3}% of one core, {} wakeups \
                 ({:.2}/s, the last one for the event that ends it)",
                idle.wall_ns as f64 / 1e9,
                idle.cpu_percent(),
                idle.voluntary,
                idle.wakeups_per_s()
            )?;
        }
        writeln!(
            f,
            "CPU: the follower's share of one core from its first event to its last; \
             wakeups: its voluntary context switches; preempted: its involuntary ones."
        )?;
        writeln!(
            f,
            "Load average before {}, after {}.",
            self.load.0, self.load.1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_round_trips_and_rejects_missing_fields() {
        let report = FollowerReport {
            events: 10,
            p50: 1,
            p99: 2,
            p999: 3,
            max: 4,
            cpu_ns: 5,
            wall_ns: 6,
            voluntary: 7,
            involuntary: 8,
        };
        assert_eq!(FollowerReport::parse_line(&report.to_line()), Some(report));
        assert_eq!(FollowerReport::parse_line("follower events=1 p50=2"), None);
        assert_eq!(FollowerReport::parse_line("ready"), None);
    }

    #[test]
    fn strategy_names_round_trip() {
        for strategy in FollowLatencyConfig::default().strategies {
            assert_eq!(parse_strategy(&strategy_name(strategy)), Ok(strategy));
        }
        assert!(parse_strategy("spinfast").is_err());
        assert_eq!(parse_follower(ASYNC_FOLLOWER), Ok(FollowerMode::Async));
        assert_eq!(
            parse_follower("block"),
            Ok(FollowerMode::Blocking(WaitStrategy::Block))
        );
        assert!(parse_follower("spinfast").is_err());
    }
}
