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
        }
    }
}

/// One system's throughput runs.
#[derive(Debug, Clone)]
pub struct ManyThroughput {
    /// `"LogWriter"`, or `"shared"` for a [`SharedLogWriter`].
    pub system: &'static str,
    /// Appending threads.
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

/// Everything [`run`] measured.
#[derive(Debug, Clone)]
pub struct ManyReport {
    /// The configuration.
    pub config: ManyConfig,
    /// The single [`LogWriter`] first, then the shared writer by thread count.
    pub throughput: Vec<ManyThroughput>,
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
            };
            Some(ManyThroughput {
                system,
                threads,
                runs: Summary::of(runs)?,
            })
        })
        .collect();
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
        latency,
    })
}

/// A fresh log in `dir` for one run.
fn fresh_log(dir: &BenchDir, config: &ManyConfig) -> Result<LogWriter> {
    let path = dir.path().join(format!("many-{}", next_serial()));
    LogWriter::create(
        &path,
        LogOptions::default().segment_size(config.segment_size),
    )
}

/// One throughput run of `system`; returns the time from the threads' release to the
/// last append.
fn throughput_run(
    dir: &BenchDir,
    config: &ManyConfig,
    system: System,
    payload: &[u8],
) -> Result<Duration> {
    let mut log = fresh_log(dir, config)?;
    let path = log.dir().to_owned();
    let elapsed = match system {
        System::Exclusive => {
            let start = Instant::now();
            for _ in 0..config.events {
                log.append(TIMESTAMP, payload)?;
            }
            let elapsed = start.elapsed();
            drop(log);
            elapsed
        }
        System::Shared(threads) => {
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
            "Many producers: {} events of {} B (+{} B header) into a fresh log of {} MiB segments, shared between the threads; medians of {} runs",
            c.events,
            c.payload_size,
            EVENT_HEADER_LEN,
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
                "{:>10}  {} thread{}  {:>8.1}ms  {:>12} events/s  {:>5.2}x  (spread ±{:.0}%)",
                row.system,
                row.threads,
                if row.threads == 1 { " " } else { "s" },
                row.runs.median.as_secs_f64() * 1e3,
                fmt_rate(rate),
                rate / base,
                row.runs.spread() * 100.0
            )?;
        }
        writeln!(
            f,
            "(ratios to one thread appending through LogWriter; shared: one SharedLogWriter, every thread appending its share)"
        )?;
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
