//! Many producers: one log fed by several threads through a
//! [`SharedLogWriter`], set against one thread appending through a plain [`LogWriter`].
//!
//! - **Throughput**: `events` events of `payload_size` bytes into a fresh log of
//!   `segment_size` segments, by one thread through a [`LogWriter`] (today's single
//!   writer), and through one [`SharedLogWriter`] by 1, 2 and 4 threads, each appending
//!   its share. Each log is created before the timer starts; the timer runs from the
//!   moment every thread is released until the last append of the last thread returned.
//!   The systems take turns going first, round after round (round 0 warms up), each run
//!   after the write-back of the ones before (`syncfs`, untimed); the report quotes
//!   medians and each row's ratio to the single [`LogWriter`].
//! - **Latency**: every append timed, with 1 and 2 threads each paced at `pace`
//!   (default 4 µs: 250,000 events/s per thread), into a fresh log, rolls included; the
//!   percentiles are over the appends of all threads.
//!
//! - **Uncontended**: what the shared writer costs one thread alone. One thread appends
//!   blocks of `uncontended_block` events into one log in steady state (holding
//!   `retain` segments, 4 by default, so that rolls recycle), in turn through a
//!   [`LogWriter`], a [`SharedLogWriter`] made from it and a [`std::sync::Mutex`]
//!   around it (each made and taken apart again untimed, and each block led by 1,024
//!   untimed appends through its system, as a writer that lives longer than a block
//!   would have made), `uncontended_blocks` blocks each. Blocks of a millisecond or so in turn in one log, rather than whole runs in
//!   logs of their own, put the three systems through the same moments of a shared,
//!   noisy machine and the same files. The report quotes each system's median block,
//!   and what the shared writer and the `Mutex` cost over the [`LogWriter`] as the
//!   median (and quartiles) of the ratios of blocks of the same round: a slower moment
//!   of the machine slows the blocks of a round alike.
//!
//! Every event is stamped with the same timestamp, so that the threads need no shared
//! clock to stay in order and every system does the same work per event.

use std::fmt;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use evstream::format::EVENT_HEADER_LEN;
use evstream::{LogOptions, LogWriter, Result, SharedLogWriter};
use hdrhistogram::Histogram;

use crate::{BenchDir, Summary, fmt_rate, new_histogram, next_serial};

/// The one timestamp of every event.
const TIMESTAMP: i64 = 1_700_000_000_000_000_000;

/// What [`run`] measures.
#[derive(Debug, Clone)]
pub struct ManyConfig {
    /// Events per throughput run, shared between the threads (default 4,000,000).
    pub events: u64,
    /// Payload bytes per event (default 64).
    pub payload_size: usize,
    /// Segment size (default 64 MiB).
    pub segment_size: u64,
    /// Thread counts of the shared writer's throughput runs (default 1, 2, 4).
    pub threads: Vec<usize>,
    /// Measured repeats (default 5).
    pub repeats: u32,
    /// Interval between one thread's appends in the latency runs (default 4 µs);
    /// `None` skips them.
    pub pace: Option<Duration>,
    /// Appends per thread in each latency run (default 500,000).
    pub paced_events: u64,
    /// The directory (it must exist) in which the run makes a directory of its own;
    /// `None`: the system's temporary directory.
    pub dir: Option<std::path::PathBuf>,
    /// Process counts of the multi-process runs (default 1, 2), each process appending
    /// its share through its own [`SharedLogWriter::open`]; run only with `appender`.
    pub processes: Vec<usize>,
    /// The command that runs [`append_child`] (a program and its first arguments, to
    /// which the log's path, the events and the payload size are added); `None` skips
    /// the multi-process runs.
    pub appender: Option<Vec<std::ffi::OsString>>,
    /// Steady state: each log keeps its newest `retain` segments
    /// ([`LogOptions::retain_segments`]) and already holds them when the timer starts
    /// (written untimed by one [`LogWriter`], then written back), so that every roll
    /// recycles a retired segment instead of filling fresh pages; `None` (the default):
    /// fresh logs.
    pub retain: Option<u64>,
    /// Blocks of the uncontended comparison, each system (default 400); 0 skips it.
    pub uncontended_blocks: u32,
    /// Appends per block of the uncontended comparison (default 20,000).
    pub uncontended_block: u64,
}

impl Default for ManyConfig {
    fn default() -> Self {
        Self {
            events: 4_000_000,
            payload_size: 64,
            segment_size: 64 << 20,
            threads: vec![1, 2, 4],
            repeats: 5,
            pace: Some(Duration::from_micros(4)),
            paced_events: 500_000,
            dir: None,
            processes: vec![1, 2],
            appender: None,
            retain: None,
            uncontended_blocks: 400,
            uncontended_block: 20_000,
        }
    }
}

/// One system's throughput runs.
#[derive(Debug, Clone)]
pub struct ManyThroughput {
    /// `"LogWriter"`, `"shared"` for a [`SharedLogWriter`] shared by threads, or
    /// `"processes"` for processes each with its own.
    pub system: &'static str,
    /// Appending threads, or processes.
    pub threads: usize,
    /// The runs.
    pub runs: Summary,
}

/// One latency run.
#[derive(Debug, Clone)]
pub struct ManyLatency {
    /// `"LogWriter"` or `"shared"`.
    pub system: &'static str,
    /// Appending threads, each paced.
    pub threads: usize,
    /// Appends timed, all threads together.
    pub events: u64,
    /// Median, nanoseconds.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest append.
    pub max: u64,
}

/// The uncontended comparison: one thread, blocks alternating between the systems.
#[derive(Debug, Clone)]
pub struct ManyUncontended {
    /// Blocks timed, each system.
    pub blocks: u32,
    /// Appends per block.
    pub block: u64,
    /// A block through the [`LogWriter`]: the median.
    pub exclusive: Duration,
    /// A block through the [`SharedLogWriter`]: the median.
    pub shared: Duration,
    /// A block through a [`LogWriter`] in a [`std::sync::Mutex`], what a program shares
    /// one with otherwise: the median.
    pub mutex: Duration,
    /// A [`SharedLogWriter`] block over the [`LogWriter`] block of the same round.
    pub shared_over: Quartiles,
    /// A [`std::sync::Mutex`] block over the [`LogWriter`] block of the same round.
    pub mutex_over: Quartiles,
}

/// The quartiles of ratios, each less 1: `0.05` is 5% more.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quartiles {
    /// The first quartile.
    pub q1: f64,
    /// The median.
    pub median: f64,
    /// The third quartile.
    pub q3: f64,
}

impl Quartiles {
    /// The quartiles of `blocks[i] / base[i] - 1` over the rounds both timed.
    fn of_paired(blocks: &[Duration], base: &[Duration]) -> Self {
        let mut over: Vec<f64> = blocks
            .iter()
            .zip(base)
            .filter(|(_, base)| !base.is_zero())
            .map(|(block, base)| block.as_secs_f64() / base.as_secs_f64() - 1.0)
            .collect();
        over.sort_by(f64::total_cmp);
        let at = |q: usize| over.get(over.len().saturating_sub(1) * q / 4).copied();
        match (at(1), at(2), at(3)) {
            (Some(q1), Some(median), Some(q3)) => Self { q1, median, q3 },
            _ => Self::default(),
        }
    }
}

impl ManyUncontended {
    /// Nanoseconds an append of a median block takes: the [`LogWriter`]'s, the
    /// [`SharedLogWriter`]'s, the [`std::sync::Mutex`]'s.
    pub fn per_append_ns(&self) -> (f64, f64, f64) {
        let per = |block: Duration| block.as_secs_f64() * 1e9 / self.block as f64;
        (per(self.exclusive), per(self.shared), per(self.mutex))
    }
}

/// Everything [`run`] measured.
#[derive(Debug, Clone)]
pub struct ManyReport {
    /// The configuration.
    pub config: ManyConfig,
    /// The single [`LogWriter`] first, then the shared writer by thread count.
    pub throughput: Vec<ManyThroughput>,
    /// The uncontended comparison, unless skipped.
    pub uncontended: Option<ManyUncontended>,
    /// The paced latency runs.
    pub latency: Vec<ManyLatency>,
}

impl ManyReport {
    /// Events per second of `runs` at its median.
    pub fn rate(&self, runs: &Summary) -> f64 {
        self.config.events as f64 / runs.median.as_secs_f64()
    }
}

/// A system of the throughput comparison.
#[derive(Debug, Clone, Copy)]
enum System {
    Exclusive,
    Shared(usize),
    Processes(usize),
}

/// Runs the many-producer benchmarks, calling `progress` with a line now and then.
///
/// # Errors
/// The first failure of any run.
pub fn run(config: &ManyConfig, progress: &mut dyn FnMut(&str)) -> Result<ManyReport> {
    let dir = match &config.dir {
        Some(base) => BenchDir::within(base)?,
        None => BenchDir::new(None)?,
    };
    let payload = vec![0x5a_u8; config.payload_size];
    let mut systems = vec![System::Exclusive];
    systems.extend(config.threads.iter().map(|&t| System::Shared(t.max(1))));
    if config.appender.is_some() {
        systems.extend(
            config
                .processes
                .iter()
                .map(|&p| System::Processes(p.max(1))),
        );
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); systems.len()];
    for round in 0..=config.repeats {
        for k in 0..systems.len() {
            let which = (k + round as usize) % systems.len();
            let Some(&system) = systems.get(which) else {
                continue;
            };
            dir.settle()?;
            let time = throughput_run(&dir, config, system, &payload)?;
            if let (true, Some(runs)) = (round > 0, times.get_mut(which)) {
                runs.push(time);
            }
        }
        progress(&format!("bench many: round {round}/{}", config.repeats));
    }
    let throughput = systems
        .iter()
        .zip(times)
        .filter_map(|(system, runs)| {
            let (system, threads) = match *system {
                System::Exclusive => ("LogWriter", 1),
                System::Shared(threads) => ("shared", threads),
                System::Processes(processes) => ("processes", processes),
            };
            Some(ManyThroughput {
                system,
                threads,
                runs: Summary::of(runs)?,
            })
        })
        .collect();
    let uncontended = if config.uncontended_blocks > 0 {
        progress("bench many: uncontended");
        dir.settle()?;
        Some(uncontended_run(&dir, config, &payload)?)
    } else {
        None
    };
    let mut latency = Vec::new();
    if let Some(pace) = config.pace {
        for system in [System::Exclusive, System::Shared(1), System::Shared(2)] {
            progress("bench many: paced latency");
            dir.settle()?;
            latency.push(latency_run(&dir, config, system, pace, &payload)?);
        }
    }
    Ok(ManyReport {
        config: config.clone(),
        throughput,
        uncontended,
        latency,
    })
}

/// Appends that each block of the uncontended comparison makes untimed before its timer
/// starts, through the same system: a shared writer made for the block takes its lock
/// plainly 256 times before the lock is biased to the appending thread, which a writer
/// that lives for more than a block pays once.
const BLOCK_LEAD: u32 = 1024;

/// The uncontended comparison: one thread, blocks rotating between a [`LogWriter`], a
/// [`SharedLogWriter`] made from it and a [`std::sync::Mutex`] around it (each taken
/// apart again, untimed, after its block), in one log in steady state: all write into
/// the same files and mappings, which on their own differ from one log to another by
/// more than the costs measured (the page cache's folios, say).
fn uncontended_run(dir: &BenchDir, config: &ManyConfig, payload: &[u8]) -> Result<ManyUncontended> {
    let steady = ManyConfig {
        retain: Some(config.retain.unwrap_or(4)),
        ..config.clone()
    };
    let mut writer = fresh_log(dir, &steady)?;
    let path = writer.dir().to_owned();
    let block = config.uncontended_block.max(1);
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    // Block 0 of each warms up, untimed.
    for round in 0..=config.uncontended_blocks as usize {
        for k in 0..times.len() {
            let which = (k + round) % times.len();
            let elapsed = match which {
                0 => {
                    for _ in 0..BLOCK_LEAD {
                        writer.append(TIMESTAMP, payload)?;
                    }
                    let start = Instant::now();
                    for _ in 0..block {
                        writer.append(TIMESTAMP, payload)?;
                    }
                    start.elapsed()
                }
                1 => {
                    let shared = SharedLogWriter::from(writer);
                    for _ in 0..BLOCK_LEAD {
                        shared.append(TIMESTAMP, payload)?;
                    }
                    let start = Instant::now();
                    for _ in 0..block {
                        shared.append(TIMESTAMP, payload)?;
                    }
                    let elapsed = start.elapsed();
                    writer = shared.into_writer().map_err(|_| {
                        crate::io_error(
                            "take the shared writer apart",
                            &path,
                            std::io::Error::other("it has another handle"),
                        )
                    })?;
                    elapsed
                }
                _ => {
                    let mutex = std::sync::Mutex::new(writer);
                    for _ in 0..BLOCK_LEAD {
                        mutex
                            .lock()
                            .map_err(|_| panicked())?
                            .append(TIMESTAMP, payload)?;
                    }
                    let start = Instant::now();
                    for _ in 0..block {
                        mutex
                            .lock()
                            .map_err(|_| panicked())?
                            .append(TIMESTAMP, payload)?;
                    }
                    let elapsed = start.elapsed();
                    writer = mutex.into_inner().map_err(|_| panicked())?;
                    elapsed
                }
            };
            if let (true, Some(runs)) = (round > 0, times.get_mut(which)) {
                runs.push(elapsed);
            }
        }
    }
    drop(writer);
    let _ = std::fs::remove_dir_all(path);
    let [base, shared_blocks, mutex_blocks] = &times;
    let shared_over = Quartiles::of_paired(shared_blocks, base);
    let mutex_over = Quartiles::of_paired(mutex_blocks, base);
    let [exclusive, shared, mutex] =
        times.map(|runs| Summary::of(runs).map_or(Duration::ZERO, |runs| runs.median));
    Ok(ManyUncontended {
        blocks: config.uncontended_blocks,
        block,
        exclusive,
        shared,
        mutex,
        shared_over,
        mutex_over,
    })
}

/// The log of one run in `dir`: fresh, or in the steady state of
/// [`ManyConfig::retain`], holding its retention, its pages written back.
pub(crate) fn fresh_log(dir: &BenchDir, config: &ManyConfig) -> Result<LogWriter> {
    let path = dir.path().join(format!("many-{}", next_serial()));
    let options = LogOptions::default()
        .segment_size(config.segment_size)
        .retain_segments(config.retain);
    let mut log = LogWriter::create(&path, options)?;
    if let Some(retain) = config.retain {
        let payload = vec![0x33_u8; config.payload_size];
        let event_len = EVENT_HEADER_LEN + config.payload_size as u64;
        let fill = (retain + 1) * config.segment_size / event_len;
        for _ in 0..fill {
            log.append(TIMESTAMP, &payload)?;
        }
        log.flush()?;
        dir.settle()?;
    }
    Ok(log)
}

/// One throughput run of `system`; returns the time from the threads' release to the
/// last append.
fn throughput_run(
    dir: &BenchDir,
    config: &ManyConfig,
    system: System,
    payload: &[u8],
) -> Result<Duration> {
    let threads = match system {
        System::Processes(processes) => return processes_run(dir, config, processes),
        System::Exclusive => 0,
        System::Shared(threads) => threads,
    };
    let mut log = fresh_log(dir, config)?;
    let path = log.dir().to_owned();
    let elapsed = match threads {
        0 => {
            let start = Instant::now();
            for _ in 0..config.events {
                log.append(TIMESTAMP, payload)?;
            }
            let elapsed = start.elapsed();
            drop(log);
            elapsed
        }
        threads => {
            let shared = SharedLogWriter::from(log);
            let per_thread = config.events / threads as u64;
            let extra = config.events % threads as u64;
            let start = Barrier::new(threads + 1);
            let elapsed = std::thread::scope(|s| -> Result<Duration> {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (shared, start) = (&shared, &start);
                        let n = per_thread + u64::from((t as u64) < extra);
                        s.spawn(move || -> Result<()> {
                            start.wait();
                            for _ in 0..n {
                                shared.append(TIMESTAMP, payload)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                start.wait();
                let began = Instant::now();
                for handle in handles {
                    handle.join().map_err(|_| panicked())??;
                }
                Ok(began.elapsed())
            })?;
            drop(shared);
            elapsed
        }
    };
    let _ = std::fs::remove_dir_all(&path);
    Ok(elapsed)
}

/// One latency run of `system`, each thread paced at `pace`.
fn latency_run(
    dir: &BenchDir,
    config: &ManyConfig,
    system: System,
    pace: Duration,
    payload: &[u8],
) -> Result<ManyLatency> {
    let mut log = fresh_log(dir, config)?;
    let path = log.dir().to_owned();
    let mut histogram = new_histogram()?;
    let (name, threads) = match system {
        System::Processes(_) => {
            return Err(crate::io_error(
                "time",
                &path,
                std::io::Error::other("the paced latency runs are of threads"),
            ));
        }
        System::Exclusive => {
            let mut next = Instant::now();
            for _ in 0..config.paced_events {
                next = pace_to(next, pace);
                let begun = Instant::now();
                log.append(TIMESTAMP, payload)?;
                record(&mut histogram, begun);
            }
            drop(log);
            ("LogWriter", 1)
        }
        System::Shared(threads) => {
            let shared = SharedLogWriter::from(log);
            let start = Barrier::new(threads);
            let histograms = std::thread::scope(|s| -> Result<Vec<Histogram<u64>>> {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let (shared, start) = (&shared, &start);
                        s.spawn(move || -> Result<Histogram<u64>> {
                            let mut histogram = new_histogram()?;
                            start.wait();
                            let mut next = Instant::now();
                            for _ in 0..config.paced_events {
                                next = pace_to(next, pace);
                                let begun = Instant::now();
                                shared.append(TIMESTAMP, payload)?;
                                record(&mut histogram, begun);
                            }
                            Ok(histogram)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(|_| panicked())?)
                    .collect()
            })?;
            for h in &histograms {
                let _ = histogram.add(h);
            }
            drop(shared);
            ("shared", threads)
        }
    };
    let _ = std::fs::remove_dir_all(&path);
    Ok(ManyLatency {
        system: name,
        threads,
        events: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    })
}

/// One multi-process run: `processes` children of [`ManyConfig::appender`] each open the
/// log and say so, then all are told to start at once; returns the time from then until
/// the last one reported its last append.
fn processes_run(dir: &BenchDir, config: &ManyConfig, processes: usize) -> Result<Duration> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let log = fresh_log(dir, config)?;
    let path = log.dir().to_owned();
    drop(log);
    let failed = |what: &str| {
        crate::io_error(
            "run an appender process",
            &path,
            std::io::Error::other(what.to_owned()),
        )
    };
    let Some((program, first)) = config.appender.as_ref().and_then(|c| c.split_first()) else {
        return Err(failed("no appender command"));
    };
    let per = config.events / processes as u64;
    let extra = config.events % processes as u64;
    let mut children = Vec::new();
    for k in 0..processes {
        let n = per + u64::from((k as u64) < extra);
        let child = Command::new(program)
            .args(first)
            .arg(&path)
            .arg(n.to_string())
            .arg(config.payload_size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| crate::io_error("start", program, e))?;
        children.push(child);
    }
    let mut lines = Vec::new();
    for child in &mut children {
        let out = child.stdout.take().ok_or_else(|| failed("no output"))?;
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| crate::io_error("read from", program, e))?;
        if line.trim() != "READY" {
            return Err(failed(&format!("said {line:?} instead of READY")));
        }
        lines.push(reader);
    }
    let began = Instant::now();
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            stdin
                .write_all(b"GO\n")
                .map_err(|e| crate::io_error("write to", program, e))?;
        }
    }
    for reader in &mut lines {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| crate::io_error("read from", program, e))?;
        if line.trim() != "DONE" {
            return Err(failed(&format!("said {line:?} instead of DONE")));
        }
    }
    let elapsed = began.elapsed();
    for mut child in children {
        drop(child.stdin.take());
        let status = child
            .wait()
            .map_err(|e| crate::io_error("wait for", program, e))?;
        if !status.success() {
            return Err(failed(&format!("exited with {status}")));
        }
    }
    let _ = std::fs::remove_dir_all(&path);
    Ok(elapsed)
}

/// The appending process of the multi-process runs: opens the log at `path` through a
/// [`SharedLogWriter`], writes `READY` to `out`, waits for a line on `input`, appends
/// `events` events of `payload_size` bytes, writes `DONE`, and closes the log.
///
/// # Errors
/// The first failure to open, append or talk to the parent.
pub fn append_child(
    path: &std::path::Path,
    events: u64,
    payload_size: usize,
    input: &mut dyn std::io::BufRead,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let io = |op| move |e| crate::io_error(op, "<pipe>", e);
    let log = SharedLogWriter::open(path)?;
    let payload = vec![0x5a_u8; payload_size];
    out.write_all(b"READY\n").map_err(io("write"))?;
    out.flush().map_err(io("write"))?;
    let mut line = String::new();
    input.read_line(&mut line).map_err(io("read"))?;
    for _ in 0..events {
        log.append(TIMESTAMP, &payload)?;
    }
    out.write_all(b"DONE\n").map_err(io("write"))?;
    out.flush().map_err(io("write"))?;
    drop(log);
    Ok(())
}

/// The error of a benchmark thread that panicked.
fn panicked() -> evstream::Error {
    crate::io_error(
        "run a benchmark thread",
        "<thread>",
        std::io::Error::other("it panicked"),
    )
}

/// Spins until `next`; returns when the append after this one is due.
fn pace_to(next: Instant, pace: Duration) -> Instant {
    while Instant::now() < next {
        std::hint::spin_loop();
    }
    next + pace
}

fn record(histogram: &mut Histogram<u64>, begun: Instant) {
    let ns = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
    histogram.saturating_record(ns.max(1));
}

impl fmt::Display for ManyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "Many producers: {} events of {} B (+{} B header) into {} of {} MiB segments, shared between the threads; medians of {} runs",
            c.events,
            c.payload_size,
            EVENT_HEADER_LEN,
            match c.retain {
                Some(retain) => format!(
                    "a log in steady state (keeping its newest {retain}, holding them before the timer starts)"
                ),
                None => "a fresh log".to_owned(),
            },
            c.segment_size >> 20,
            c.repeats
        )?;
        let base = self
            .throughput
            .first()
            .map_or(f64::NAN, |first| self.rate(&first.runs));
        for row in &self.throughput {
            let rate = self.rate(&row.runs);
            writeln!(
                f,
                "{:>10}  {} {}  {:>8.1}ms  {:>12} events/s  {:>5.2}x  (spread ±{:.0}%)",
                row.system,
                row.threads,
                match (row.system, row.threads) {
                    ("processes", 1) => "process  ",
                    ("processes", _) => "processes",
                    (_, 1) => "thread   ",
                    _ => "threads  ",
                },
                row.runs.median.as_secs_f64() * 1e3,
                fmt_rate(rate),
                rate / base,
                row.runs.spread() * 100.0
            )?;
        }
        writeln!(
            f,
            "(ratios to one thread appending through LogWriter; shared: one SharedLogWriter, every thread appending its share; processes: each its own SharedLogWriter, taking turns)"
        )?;
        // Several processes against one process alone, the comparison that matters to
        // a program choosing between them.
        let alone = self
            .throughput
            .iter()
            .find(|row| row.system == "processes" && row.threads == 1)
            .map(|row| self.rate(&row.runs));
        for row in &self.throughput {
            if let (Some(alone), "processes", 2..) = (alone, row.system, row.threads) {
                writeln!(
                    f,
                    "{} processes together: {:.2}x one process alone",
                    row.threads,
                    self.rate(&row.runs) / alone
                )?;
            }
        }
        if let Some(u) = &self.uncontended {
            let (exclusive, shared, mutex) = u.per_append_ns();
            let pct = |q: Quartiles| {
                format!(
                    "{:+.1}%, quartiles {:+.1}% to {:+.1}%",
                    q.median * 100.0,
                    q.q1 * 100.0,
                    q.q3 * 100.0
                )
            };
            writeln!(
                f,
                "\nOne thread, uncontended: {} rounds of a block of {} appends each into one log in steady state, in turn through a LogWriter, a SharedLogWriter made from it and a Mutex around it; median block, and over LogWriter the median of the rounds' ratios",
                u.blocks, u.block
            )?;
            writeln!(f, " LogWriter         {exclusive:>6.1} ns an append")?;
            writeln!(
                f,
                "    shared         {shared:>6.1} ns an append  ({})",
                pct(u.shared_over)
            )?;
            writeln!(
                f,
                " Mutex<LogWriter>  {mutex:>6.1} ns an append  ({})",
                pct(u.mutex_over)
            )?;
        }
        if let (false, Some(pace)) = (self.latency.is_empty(), c.pace) {
            writeln!(
                f,
                "\nAppend latency (ns), each thread paced at one append every {} ns ({} events/s per thread), rolls included",
                pace.as_nanos(),
                fmt_rate(1e9 / pace.as_nanos().max(1) as f64)
            )?;
            writeln!(
                f,
                "{:>10}  {:>7}  {:>9}  {:>6}  {:>6}  {:>7}  {:>9}",
                "system", "threads", "appends", "p50", "p99", "p99.9", "max"
            )?;
            for row in &self.latency {
                writeln!(
                    f,
                    "{:>10}  {:>7}  {:>9}  {:>6}  {:>6}  {:>7}  {:>9}",
                    row.system, row.threads, row.events, row.p50, row.p99, row.p999, row.max
                )?;
            }
        }
        Ok(())
    }
}
