//! Log benchmarks: continuous logging through rolling segments against `BufWriter`
//! rolling files, append latency with rolls included, and the cost of opening, seeking
//! and tailing a large log.
//!
//! - **Throughput**: `total_bytes` of events (header included) of one payload size
//!   through a [`LogWriter`] of `segment_size` segments (once with each write-back
//!   policy, [`evstream::WriteBack`]), and through a
//!   `BufWriter<File>` of 1 MiB writing the same format ([`EventWriter`]) into
//!   files of the same size, a new file whenever the next event does not fit. Each
//!   timed region starts before the log (or first file) is created and ends when the
//!   last event is in the page cache (evstream: the last append returned; `BufWriter`:
//!   flushed). Neither syncs inside it, except that evstream's background thread flushes
//!   each segment it seals (with eager write-back at once, with lazy only once 8 wait). Beside them run two bounds on what any log of mapped
//!   segments could reach here: the **limit**, the same bytes copied into fresh mapped
//!   files of the segment size that a second thread creates, preallocates and populates
//!   one ahead, nothing encoded (`mapped_limit`); and **prefaulted**, evstream's own
//!   appends into segments all populated before the timer starts, so populating fresh
//!   pages costs nothing (`floor_run`). The five take turns going first, repeat after
//!   repeat, and every run (latency runs too) starts after the write-back of the ones
//!   before has finished (`syncfs`, untimed), so that no run pays for another's dirty
//!   pages.
//! - **Steady state**: a log of `segment_size` segments keeping the newest
//!   `steady_retain`, already holding them when the timer starts, so that every roll
//!   also retires a segment, against a rotating `BufWriter` logger that deletes its
//!   oldest file beyond as many (`steady_comparison`).
//! - **Latency**: every append of such runs timed, paced at `pace` (default 2 µs:
//!   500,000 events/s), rolls included, with the median and slowest of the appends
//!   that rolled (the first into each new segment); and beside it the floor the machine
//!   sets: the same appends into segments of the same size, all created and prefaulted
//!   before the first append, so that no background preparation or write-back runs,
//!   and a roll only takes the next one ready (the least any roll can do). Beside the
//!   two fresh logs (eager and lazy), a lazy log in steady state: already holding as many
//!   full segments as it keeps (`steady_retain`), written back, so that every roll
//!   recycles a retired segment (`steady_latency_run`). The floor and the three logs
//!   take turns going first for `latency_rounds` rounds (default 3),
//!   and each one's appends and rolls are pooled over them: a run of 512 MiB through
//!   64 MiB segments rolls 8 times, too few for a median, and a tail percentile of one
//!   short run moves with whatever else the machine did in that second. Each row also
//!   counts the page faults the appending thread took during its timed appends: a
//!   fault costs an append microseconds, so a row with more than one fault in a
//!   thousand appends has a fault for its p99.9.
//! - **Large log**: a log of `large_bytes` written once, then, each with fresh objects
//!   and the page cache warm: [`LogWriter::open`], [`LogReader::seek_time`] to points
//!   spread over the log (after a fresh [`LogReader::open`]), and [`LogReader::tail`] of
//!   10 events. With [`LogBenchConfig::command`] set to the `evstream` binary, the same
//!   from fresh processes too: each command timed from spawn to exit, beside the
//!   binary's `--version` (the cost of starting a process at all).

use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::time::{Duration, Instant};

use evstream::format::{EVENT_HEADER_LEN, STREAM_HEADER_LEN};
use evstream::stdio::EventWriter;
use evstream::{LogOptions, LogReader, LogWriter, Result, StreamWriter};

use crate::{
    BenchDir, LARGE_BUFFER, Paced, PerEvent, Summary, Workload, io_err, new_histogram, next_serial,
    now_nanos,
};

/// Payload bytes of every event of the large log ([`LogBenchConfig::large_bytes`]).
pub const LARGE_LOG_PAYLOAD: usize = 1024;

/// What [`run`] measures.
#[derive(Debug, Clone)]
pub struct LogBenchConfig {
    /// Bytes of events per throughput run (default 1 GiB).
    pub total_bytes: u64,
    /// Segment (and baseline file) size (default 64 MiB).
    pub segment_size: u64,
    /// Payload sizes, one throughput comparison each (default 64 B and 1 KiB).
    pub payload_sizes: Vec<usize>,
    /// Measured repeats of each throughput run (default 3).
    pub repeats: u32,
    /// Interval between appends of the latency runs (default 2 µs); `None` skips them.
    pub pace: Option<Duration>,
    /// Rounds of latency runs (default 3, at least 1): the floor and the two logs once
    /// each a round, taking turns going first; each one's runs are pooled.
    pub latency_rounds: u32,
    /// Size of the large log for open, seek and tail (default 0: skipped).
    pub large_bytes: u64,
    /// Whether to run the throughput comparison through fresh logs (default `true`).
    pub fresh: bool,
    /// Bytes of events timed per steady-state run, once the log already holds its
    /// retention (default 1 GiB; 0 skips the steady-state comparison).
    pub steady_bytes: u64,
    /// Segments the steady-state runs keep: `retain_segments` of the log, files kept by
    /// the rotating baseline (default 4).
    pub steady_retain: u64,
    /// The directory (it must exist) in which the run makes a directory of its own for
    /// its files, removed when the run ends ([`BenchDir::within`]); `None`: the system's
    /// temporary directory.
    pub dir: Option<std::path::PathBuf>,
    /// The `evstream` binary, to time commands on the large log from fresh processes;
    /// `None` skips them.
    pub command: Option<std::path::PathBuf>,
}

impl Default for LogBenchConfig {
    fn default() -> Self {
        Self {
            total_bytes: 1 << 30,
            segment_size: 64 << 20,
            payload_sizes: vec![64, 1024],
            repeats: 3,
            pace: Some(Duration::from_micros(2)),
            latency_rounds: 3,
            large_bytes: 0,
            fresh: true,
            steady_bytes: 1 << 30,
            steady_retain: 4,
            dir: None,
            command: None,
        }
    }
}

/// One throughput comparison.
#[derive(Debug, Clone)]
pub struct LogThroughput {
    /// Payload bytes per event.
    pub payload_size: usize,
    /// Events per run.
    pub events: u64,
    /// evstream's runs.
    pub evstream: Summary,
    /// The `BufWriter` baseline's runs.
    pub bufwriter: Summary,
    /// The limit's runs: see `mapped_limit` in this module.
    pub limit: Summary,
    /// evstream's appends into segments prefaulted before the timer starts (the latency
    /// floor's setup, unpaced and timed from the first append to the last): what it
    /// would reach if populating fresh pages cost the appending thread nothing at all.
    pub prefaulted: Summary,
    /// evstream's runs with lazy write-back ([`evstream::WriteBack::Lazy`]).
    pub lazy: Summary,
}

impl LogThroughput {
    /// evstream's events per second at its median.
    pub fn evstream_rate(&self) -> f64 {
        self.events as f64 / self.evstream.median.as_secs_f64()
    }

    /// The baseline's events per second at its median.
    pub fn bufwriter_rate(&self) -> f64 {
        self.events as f64 / self.bufwriter.median.as_secs_f64()
    }

    /// The limit's events per second at its median: the most any writer of fresh mapped
    /// segments could reach here.
    pub fn limit_rate(&self) -> f64 {
        self.events as f64 / self.limit.median.as_secs_f64()
    }

    /// evstream's events per second with lazy write-back, at its median.
    pub fn lazy_rate(&self) -> f64 {
        self.events as f64 / self.lazy.median.as_secs_f64()
    }

    /// evstream's events per second into prefaulted segments, at its median.
    pub fn prefaulted_rate(&self) -> f64 {
        self.events as f64 / self.prefaulted.median.as_secs_f64()
    }
}

/// One steady-state comparison: a log that already holds its retention (so that every
/// roll also retires a segment) against a rotating `BufWriter` logger that deletes its
/// oldest file beyond as many.
#[derive(Debug, Clone)]
pub struct LogSteady {
    /// Payload bytes per event.
    pub payload_size: usize,
    /// Events timed per run.
    pub events: u64,
    /// The log's runs, one entry per configuration benchmarked: its name and runs.
    pub logs: Vec<(&'static str, Summary)>,
    /// The rotating `BufWriter` baseline's runs.
    pub bufwriter: Summary,
}

impl LogSteady {
    /// Events per second of `runs` at its median.
    pub fn rate(&self, runs: &Summary) -> f64 {
        self.events as f64 / runs.median.as_secs_f64()
    }
}

/// The log configurations the steady-state comparison runs, by name: the write-back
/// policies ([`evstream::WriteBack`]).
pub const STEADY_LOGS: &[&str] = &["evstream eager", "evstream lazy"];

/// Append latency over the latency runs of one target (pooled over the rounds), in
/// nanoseconds.
#[derive(Debug, Clone)]
pub struct LogLatency {
    /// What was appended to: `"log"` (eager write-back), `"lazy"` (lazy write-back),
    /// both fresh logs; `"steady"`, a lazy log in steady state, holding its retention and
    /// recycling a segment at every roll; or `"floor"` for segments prefaulted in
    /// advance.
    pub target: &'static str,
    /// Payload bytes per event.
    pub payload_size: usize,
    /// Appends timed, over all rounds.
    pub events: u64,
    /// Runs pooled (one a round).
    pub rounds: u32,
    /// Segments rolled, over all rounds.
    pub rolls: u64,
    /// Interval between appends.
    pub pace: Duration,
    /// Percentiles.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Slowest append.
    pub max: u64,
    /// The appends that rolled (the first into each new segment), in run order, round
    /// after round.
    pub roll_appends: Vec<u64>,
    /// Page faults the appending thread took during the timed appends, over all rounds
    /// (minor and major, from `/proc/thread-self/stat`; 0 where it cannot be read): each
    /// costs its append a few microseconds.
    pub faults: u64,
}

/// Page faults (minor and major) the calling thread has taken, from
/// `/proc/thread-self/stat`; 0 where that cannot be read.
fn thread_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0;
    };
    // After the command name, which is in parentheses and may hold spaces: state, ppid,
    // pgrp, session, tty_nr, tpgid, flags, minflt, cminflt, majflt.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or_else(Vec::new, |(_, rest)| rest.split_whitespace().collect());
    let field = |at: usize| {
        fields
            .get(at)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(7) + field(9)
}

impl LogLatency {
    /// Median and slowest of [`roll_appends`](Self::roll_appends), if there were any.
    pub fn roll_summary(&self) -> Option<(u64, u64)> {
        let mut sorted = self.roll_appends.clone();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        Some((sorted.get(sorted.len() / 2).copied().unwrap_or(max), max))
    }
}

/// Timings on the large log.
#[derive(Debug, Clone)]
pub struct LargeLog {
    /// Bytes of events in it.
    pub bytes: u64,
    /// Segments.
    pub segments: u64,
    /// `LogWriter::open` (until it returns).
    pub writer_open: Summary,
    /// `LogReader::open` then one `seek_time`, to points spread over the log.
    pub seek: Summary,
    /// `LogReader::open` then `tail(10)`.
    pub tail: Summary,
    /// Whole commands in fresh processes, if [`LogBenchConfig::command`] was set.
    pub processes: Vec<(&'static str, Summary)>,
}

/// Everything [`run`] measured.
#[derive(Debug, Clone)]
pub struct LogBenchReport {
    /// The configuration.
    pub config: LogBenchConfig,
    /// One comparison per payload size.
    pub throughput: Vec<LogThroughput>,
    /// One steady-state comparison per payload size.
    pub steady: Vec<LogSteady>,
    /// One latency run per payload size.
    pub latency: Vec<LogLatency>,
    /// The large log, if measured.
    pub large: Option<LargeLog>,
}

/// Runs the log benchmarks, calling `progress` with a line now and then.
///
/// # Errors
/// The first failure of either system.
pub fn run(config: &LogBenchConfig, progress: &mut dyn FnMut(&str)) -> Result<LogBenchReport> {
    // A directory of this run's own, in the one given, removed at the end even on error.
    let dir = match &config.dir {
        Some(base) => BenchDir::within(base)?,
        None => BenchDir::new(None)?,
    };
    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    let mut steady = Vec::new();
    if config.steady_bytes > 0 {
        for &size in &config.payload_sizes {
            steady.push(steady_comparison(&dir, config, size, progress)?);
        }
    }
    for &size in &config.payload_sizes {
        let workload = Workload::new(config.total_bytes / (EVENT_HEADER_LEN + size as u64), size);
        let mut times: [Vec<Duration>; 5] = Default::default();
        for round in (0..=config.repeats).filter(|_| config.fresh) {
            // Each system goes first in turn.
            for k in 0..5 {
                let system = (k + round as usize) % 5;
                dir.settle()?;
                let time = match system {
                    0 => {
                        let eager = evstream::WriteBack::Eager;
                        log_run(&dir, config, eager, &workload, &mut crate::Untimed)?.0
                    }
                    1 => rolling_bufwriter(&dir, config, &workload)?,
                    2 => mapped_limit(&dir, config, &workload)?,
                    3 => {
                        let lazy = evstream::WriteBack::Lazy;
                        log_run(&dir, config, lazy, &workload, &mut crate::Untimed)?.0
                    }
                    _ => floor_run(&dir, config, &workload, &mut crate::Untimed)?.0,
                };
                // Round 0 warms up.
                if let (true, Some(runs)) = (round > 0, times.get_mut(system)) {
                    runs.push(time);
                }
            }
            progress(&format!(
                "bench log: {size} B events, round {round}/{}",
                config.repeats
            ));
        }
        let [ev, bw, limit, lazy, prefaulted] = times;
        if let (Some(evstream), Some(bufwriter), Some(limit), Some(prefaulted), Some(lazy)) = (
            Summary::of(ev),
            Summary::of(bw),
            Summary::of(limit),
            Summary::of(prefaulted),
            Summary::of(lazy),
        ) {
            throughput.push(LogThroughput {
                payload_size: size,
                events: workload.events(),
                evstream,
                bufwriter,
                limit,
                prefaulted,
                lazy,
            });
        }
        if let Some(pace) = config.pace {
            latency.extend(latency_runs(&dir, config, &workload, pace, progress)?);
        }
    }
    let large = if config.large_bytes > 0 {
        Some(large_log(&dir, config, progress)?)
    } else {
        None
    };
    Ok(LogBenchReport {
        config: config.clone(),
        throughput,
        steady,
        latency,
        large,
    })
}

/// The targets of the latency runs, in report order.
const LATENCY_TARGETS: [&str; 4] = ["floor", "log", "lazy", "steady"];

/// The latency runs of one payload size: [`LATENCY_TARGETS`] take turns going first,
/// round after round, each run after the write-back of the ones before (untimed); each
/// target's appends and rolls are pooled over the rounds.
fn latency_runs(
    dir: &BenchDir,
    config: &LogBenchConfig,
    workload: &Workload,
    pace: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<LogLatency>> {
    let size = workload.payload_size();
    let rounds = config.latency_rounds.max(1);
    let mut pooled = Vec::with_capacity(LATENCY_TARGETS.len());
    for _ in LATENCY_TARGETS {
        pooled.push((new_histogram()?, 0u64, Vec::new(), 0u64));
    }
    for round in 0..rounds {
        progress(&format!(
            "bench log: latency, {size} B events, paced, round {}/{rounds}",
            round + 1
        ));
        for k in 0..LATENCY_TARGETS.len() {
            let turn = (k + round as usize) % LATENCY_TARGETS.len();
            let (Some(&target), Some((histogram, rolls, roll_appends, faults))) =
                (LATENCY_TARGETS.get(turn), pooled.get_mut(turn))
            else {
                continue;
            };
            dir.settle()?;
            let mut probe = Paced {
                inner: PerEvent::new(histogram),
                interval: pace,
                next: None,
            };
            let run = match target {
                "floor" => floor_run(dir, config, workload, &mut probe)?,
                "lazy" => log_run(dir, config, evstream::WriteBack::Lazy, workload, &mut probe)?,
                "steady" => steady_latency_run(dir, config, workload, &mut probe)?,
                _ => log_run(
                    dir,
                    config,
                    evstream::WriteBack::Eager,
                    workload,
                    &mut probe,
                )?,
            };
            *rolls += run.1;
            roll_appends.extend(run.2);
            *faults += run.3;
        }
    }
    Ok(LATENCY_TARGETS
        .iter()
        .zip(pooled)
        .map(
            |(&target, (histogram, rolls, roll_appends, faults))| LogLatency {
                target,
                payload_size: size,
                events: histogram.len(),
                rounds,
                rolls,
                pace,
                p50: histogram.value_at_quantile(0.5),
                p99: histogram.value_at_quantile(0.99),
                p999: histogram.value_at_quantile(0.999),
                p9999: histogram.value_at_quantile(0.9999),
                max: histogram.max(),
                roll_appends,
                faults,
            },
        )
        .collect())
}

/// The steady-state comparison for events of `size` bytes of payload: each log of
/// [`STEADY_LOGS`] and the rotating baseline take turns going first, round after round
/// (round 0 warms up), each run after the write-back of the ones before (untimed).
fn steady_comparison(
    dir: &BenchDir,
    config: &LogBenchConfig,
    size: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<LogSteady> {
    let event_len = EVENT_HEADER_LEN + size as u64;
    let per_segment = ((config.segment_size - STREAM_HEADER_LEN) / event_len).max(1);
    let fill = per_segment * config.steady_retain;
    let timed = (config.steady_bytes / event_len).max(1);
    let workload = Workload::new(fill + timed, size);
    let systems = STEADY_LOGS.len() + 1;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); systems];
    for round in 0..=config.repeats {
        for k in 0..systems {
            let system = (k + round as usize) % systems;
            let time = match STEADY_LOGS.get(system) {
                Some(name) => steady_log(dir, config, name, &workload, fill)?,
                None => steady_bufwriter(dir, config, &workload, fill)?,
            };
            if let (true, Some(runs)) = (round > 0, times.get_mut(system)) {
                runs.push(time);
            }
        }
        progress(&format!(
            "bench log: steady state, {size} B events, round {round}/{}",
            config.repeats
        ));
    }
    let mut summaries = times
        .into_iter()
        .map(|t| Summary::of(t).unwrap_or_else(zero_summary));
    let logs = STEADY_LOGS
        .iter()
        .zip(summaries.by_ref())
        .map(|(name, s)| (*name, s))
        .collect();
    Ok(LogSteady {
        payload_size: size,
        events: timed,
        logs,
        bufwriter: summaries.next().unwrap_or_else(zero_summary),
    })
}

/// The options of the steady-state log named `name` (see [`STEADY_LOGS`]).
fn steady_options(config: &LogBenchConfig, name: &str) -> LogOptions {
    let policy = if name.ends_with("lazy") {
        evstream::WriteBack::Lazy
    } else {
        evstream::WriteBack::Eager
    };
    LogOptions::default()
        .segment_size(config.segment_size)
        .retain_segments(Some(config.steady_retain))
        .write_back(policy)
}

/// One steady-state run of a log: its first `fill` events (as many segments as it
/// keeps) appended untimed and their write-back waited for, then the rest timed, from
/// the first of them to the last append's return.
fn steady_log(
    dir: &BenchDir,
    config: &LogBenchConfig,
    name: &str,
    workload: &Workload,
    fill: u64,
) -> Result<Duration> {
    let path = dir.path().join(format!("steady-{}", next_serial()));
    let mut log = LogWriter::create(&path, steady_options(config, name))?;
    for i in 0..fill {
        log.append(Workload::timestamp(i), workload.payload(i))?;
    }
    log.flush()?;
    dir.settle()?;
    let start = Instant::now();
    for i in fill..workload.events() {
        log.append(Workload::timestamp(i), workload.payload(i))?;
    }
    let elapsed = start.elapsed();
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    dir.settle()?;
    Ok(elapsed)
}

/// One steady-state run of the baseline: a 1 MiB `BufWriter` writing the same events
/// into files of the segment size, a new file whenever the next event does not fit,
/// deleting the oldest file once more than `steady_retain` exist; the first `fill`
/// events untimed (and written back), the rest timed until the last file is flushed.
fn steady_bufwriter(
    dir: &BenchDir,
    config: &LogBenchConfig,
    workload: &Workload,
    fill: u64,
) -> Result<Duration> {
    let path = dir.path().join(format!("rotating-{}", next_serial()));
    std::fs::create_dir(&path).map_err(io_err("create directory", &path))?;
    let event_len = EVENT_HEADER_LEN + workload.payload_size() as u64;
    let per_file = ((config.segment_size - STREAM_HEADER_LEN) / event_len).max(1);
    let mut files = std::collections::VecDeque::new();
    let mut start = None;
    let mut i = 0;
    let mut file_no = 0u64;
    while i < workload.events() {
        let name = path.join(format!("{file_no:08}.evs"));
        let file = File::create(&name).map_err(io_err("create", &name))?;
        files.push_back(name.clone());
        while files.len() as u64 > config.steady_retain {
            if let Some(oldest) = files.pop_front() {
                std::fs::remove_file(&oldest).map_err(io_err("remove", &oldest))?;
            }
        }
        let mut writer =
            EventWriter::new(BufWriter::with_capacity(LARGE_BUFFER, file), now_nanos())
                .map_err(io_err("write", &name))?;
        for _ in 0..per_file.min(workload.events() - i) {
            if i == fill {
                dir.settle()?;
                start = Some(Instant::now());
            }
            writer
                .append(Workload::timestamp(i), workload.payload(i))
                .map_err(io_err("write", &name))?;
            i += 1;
        }
        writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(io_err("write", &name))?;
        file_no += 1;
    }
    let elapsed = start.map_or(Duration::ZERO, |start| start.elapsed());
    let _ = std::fs::remove_dir_all(&path);
    dir.settle()?;
    Ok(elapsed)
}

/// One run through a fresh log with the write-back `policy`; returns the time to the
/// last append, the rolls, the time of each append that rolled as the probe measured
/// it, and the page faults the appending thread took during the appends.
fn log_run<P: crate::Probe>(
    dir: &BenchDir,
    config: &LogBenchConfig,
    policy: evstream::WriteBack,
    workload: &Workload,
    probe: &mut P,
) -> Result<(Duration, u64, Vec<u64>, u64)> {
    let path = dir.path().join(format!("log-{}", next_serial()));
    let options = LogOptions::default()
        .segment_size(config.segment_size)
        .write_back(policy);
    let start = Instant::now();
    let mut log = LogWriter::create(&path, options)?;
    let mut roll_appends = Vec::new();
    let faults = thread_faults();
    for i in 0..workload.events() {
        let payload = workload.payload(i);
        let position = probe.time(|| log.append(Workload::timestamp(i), payload))?;
        if position.offset() == STREAM_HEADER_LEN && position.segment() > 0 {
            roll_appends.push(probe.last_ns());
        }
    }
    let elapsed = start.elapsed();
    let faults = thread_faults().saturating_sub(faults);
    let rolls = log.segment();
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    Ok((elapsed, rolls, roll_appends, faults))
}

/// A latency run of a log in steady state, with lazy write-back: the log first holds as
/// many full segments as it keeps (`steady_retain`), appended untimed and written back,
/// so that every roll of the timed appends retires a segment and recycles it, as in a
/// log that has run for a while. Returns what [`log_run`] does.
fn steady_latency_run<P: crate::Probe>(
    dir: &BenchDir,
    config: &LogBenchConfig,
    workload: &Workload,
    probe: &mut P,
) -> Result<(Duration, u64, Vec<u64>, u64)> {
    let path = dir.path().join(format!("steady-latency-{}", next_serial()));
    let mut log = LogWriter::create(&path, steady_options(config, "evstream lazy"))?;
    let event_len = EVENT_HEADER_LEN + workload.payload_size() as u64;
    let per_segment = ((config.segment_size - STREAM_HEADER_LEN) / event_len).max(1);
    let first = Workload::timestamp(0);
    let events = workload.events().max(1);
    for i in 0..per_segment * config.steady_retain {
        log.append(first, workload.payload(i % events))?;
    }
    log.flush()?;
    dir.settle()?;
    let from = log.segment();
    let mut roll_appends = Vec::new();
    let faults = thread_faults();
    let start = Instant::now();
    for i in 0..workload.events() {
        let payload = workload.payload(i);
        let position = probe.time(|| log.append(Workload::timestamp(i), payload))?;
        if position.offset() == STREAM_HEADER_LEN && position.segment() > from {
            roll_appends.push(probe.last_ns());
        }
    }
    let elapsed = start.elapsed();
    let faults = thread_faults().saturating_sub(faults);
    let rolls = log.segment() - from;
    drop(log);
    let _ = std::fs::remove_dir_all(&path);
    Ok((elapsed, rolls, roll_appends, faults))
}

/// The latency floor: the same appends into segments of the log's size, every page of
/// every one created and prefaulted (untimed) before the first append. A roll here does
/// the least any roll can: it finds the next segment full, takes the one ready after it
/// and continues there (no system call, no thread woken, the full one kept aside until
/// the run ends), so its time is what switching to another mapping costs by itself.
/// Returns the time from the first append to the last, the rolls, the time of each
/// append that rolled and the appending thread's page faults, as [`log_run`] does.
fn floor_run<P: crate::Probe>(
    dir: &BenchDir,
    config: &LogBenchConfig,
    workload: &Workload,
    probe: &mut P,
) -> Result<(Duration, u64, Vec<u64>, u64)> {
    let serial = next_serial();
    let create = |index: u64| -> Result<StreamWriter> {
        let path = dir.path().join(format!("floor-{serial}-{index}.evs"));
        let mut writer = StreamWriter::create(&path, config.segment_size)?;
        writer.prefault_all()?;
        Ok(writer)
    };
    let mut writer = create(0)?;
    let event_len = EVENT_HEADER_LEN + workload.payload_size() as u64;
    let per_segment = (writer.available() / event_len).max(1);
    let segments = workload.events().div_ceil(per_segment).max(1);
    let mut ready = (1..segments)
        .map(create)
        .collect::<Result<std::collections::VecDeque<_>>>()?;
    let mut full = Vec::with_capacity(ready.len());
    let mut roll_appends = Vec::new();
    let faults = thread_faults();
    let start = Instant::now();
    for i in 0..workload.events() {
        let payload = workload.payload(i);
        let timestamp = Workload::timestamp(i);
        let rolled = probe.time(|| match writer.append(timestamp, payload) {
            Ok(_) => Ok(false),
            Err(evstream::Error::Full { .. }) => {
                let next = ready.pop_front().ok_or(evstream::Error::Full {
                    needed: event_len,
                    available: 0,
                })?;
                full.push(std::mem::replace(&mut writer, next));
                writer.append(timestamp, payload).map(|_| true)
            }
            Err(e) => Err(e),
        })?;
        if rolled {
            roll_appends.push(probe.last_ns());
        }
    }
    let elapsed = start.elapsed();
    let faults = thread_faults().saturating_sub(faults);
    full.push(writer);
    let rolls = full.len() as u64 - 1;
    for writer in full.into_iter().chain(ready) {
        let path = writer.path().to_owned();
        drop(writer);
        let _ = std::fs::remove_file(&path);
    }
    Ok((elapsed, rolls, roll_appends, faults))
}

/// The baseline: the same events through a 1 MiB `BufWriter` into files of the segment
/// size, a new one whenever the next event does not fit.
fn rolling_bufwriter(
    dir: &BenchDir,
    config: &LogBenchConfig,
    workload: &Workload,
) -> Result<Duration> {
    let path = dir.path().join(format!("files-{}", next_serial()));
    let event_len = EVENT_HEADER_LEN + workload.payload_size() as u64;
    let per_file = ((config.segment_size - STREAM_HEADER_LEN) / event_len).max(1);
    let start = Instant::now();
    std::fs::create_dir(&path).map_err(io_err("create directory", &path))?;
    let mut i = 0;
    let mut file_no = 0u64;
    while i < workload.events() {
        let name = path.join(format!("{file_no:08}.evs"));
        let file = File::create(&name).map_err(io_err("create", &name))?;
        let mut writer =
            EventWriter::new(BufWriter::with_capacity(LARGE_BUFFER, file), now_nanos())
                .map_err(io_err("write", &name))?;
        for _ in 0..per_file.min(workload.events() - i) {
            writer
                .append(Workload::timestamp(i), workload.payload(i))
                .map_err(io_err("write", &name))?;
            i += 1;
        }
        writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(io_err("write", &name))?;
        file_no += 1;
    }
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&path);
    Ok(elapsed)
}

/// The limit for a log of fresh segments: the same bytes put into files of the segment
/// size through shared mappings, nothing encoded and no checksum, 1 MiB at a time, each
/// file created, preallocated and populated (`MADV_POPULATE_WRITE`) by a second thread
/// while the one before is filled, as a log's preparing thread does. Timed from the
/// first creation to the last byte copied; the files are unmapped and removed after.
/// No writer of fresh mapped segments can be faster on this machine: it pays the same
/// population and copy, plus its own encoding.
fn mapped_limit(dir: &BenchDir, config: &LogBenchConfig, workload: &Workload) -> Result<Duration> {
    let path = dir.path().join(format!("limit-{}", next_serial()));
    let event_len = EVENT_HEADER_LEN + workload.payload_size() as u64;
    let per_file = ((config.segment_size - STREAM_HEADER_LEN) / event_len).max(1);
    let files = workload.events().div_ceil(per_file);
    let block = vec![0x5a_u8; LARGE_BUFFER];
    let start = Instant::now();
    std::fs::create_dir(&path).map_err(io_err("create directory", &path))?;
    let prepare = |index: u64| -> Result<(File, memmap2::MmapMut)> {
        let name = path.join(format!("{index:08}.evs"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&name)
            .map_err(io_err("create", &name))?;
        rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::empty(),
            0,
            config.segment_size,
        )
        .map_err(|e| io_err("fallocate", &name)(e.into()))?;
        let map = crate::map_new_file(&file, &name)?;
        map.advise(memmap2::Advice::PopulateWrite)
            .map_err(io_err("madvise", &name))?;
        Ok((file, map))
    };
    let (elapsed, filled) = std::thread::scope(|scope| -> Result<(Duration, Vec<_>)> {
        // A rendezvous: the thread prepares one file ahead of the one being filled.
        let (send, receive) = std::sync::mpsc::sync_channel(0);
        let preparer = scope.spawn(move || -> Result<()> {
            for index in 0..files {
                if send.send(prepare(index)?).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut filled = Vec::new();
        let mut left = workload.events();
        while left > 0 {
            let Ok((file, mut map)) = receive.recv() else {
                break;
            };
            let events = per_file.min(left);
            left -= events;
            let len = usize::try_from(STREAM_HEADER_LEN + events * event_len).unwrap_or(usize::MAX);
            let mut at = 0;
            while at < len {
                let chunk = block.len().min(len - at);
                if let (Some(dst), Some(src)) = (map.get_mut(at..at + chunk), block.get(..chunk)) {
                    dst.copy_from_slice(src);
                }
                at += chunk;
            }
            filled.push((file, map));
        }
        let elapsed = start.elapsed();
        drop(receive);
        preparer
            .join()
            .map_err(|_| io_err("prepare files in", &path)(std::io::Error::other("panicked")))??;
        Ok((elapsed, filled))
    })?;
    drop(filled);
    let _ = std::fs::remove_dir_all(&path);
    Ok(elapsed)
}

/// Writes the large log, then times open, seek and tail on it.
fn large_log(
    dir: &BenchDir,
    config: &LogBenchConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<LargeLog> {
    let path = dir.path().join(format!("large-{}", next_serial()));
    let size = LARGE_LOG_PAYLOAD;
    let workload = Workload::new(config.large_bytes / (EVENT_HEADER_LEN + size as u64), size);
    progress(&format!(
        "bench log: writing a log of {} GiB",
        config.large_bytes as f64 / f64::from(1u32 << 30)
    ));
    let mut log = LogWriter::create(
        &path,
        LogOptions::default().segment_size(config.segment_size),
    )?;
    for i in 0..workload.events() {
        log.append(Workload::timestamp(i), workload.payload(i))?;
    }
    log.flush()?;
    let segments = log.segment() + 1;
    drop(log);
    dir.settle()?;
    progress("bench log: timing open, seek and tail");
    let (mut opens, mut seeks, mut tails) = (Vec::new(), Vec::new(), Vec::new());
    let points = 11u64;
    for k in 0..points {
        let start = Instant::now();
        let log = LogWriter::open(&path)?;
        opens.push(start.elapsed());
        drop(log);
        let target = Workload::timestamp(workload.events() * k / (points - 1));
        let start = Instant::now();
        let reader = LogReader::open(&path)?;
        let found = reader.seek_time(target)?;
        seeks.push(start.elapsed());
        if found.is_none() && k + 1 < points {
            return Err(evstream::Error::Io {
                op: "seek in",
                path: path.clone(),
                source: std::io::Error::other(format!("no event at or after {target}")),
            });
        }
        let start = Instant::now();
        let reader = LogReader::open(&path)?;
        let tail = reader.tail(10)?;
        tails.push(start.elapsed());
        std::hint::black_box(tail);
    }
    let summary = |s: Vec<Duration>| Summary::of(s).unwrap_or_else(zero_summary);
    let mut processes = Vec::new();
    if let Some(command) = &config.command {
        progress("bench log: timing commands in fresh processes");
        let last = Workload::timestamp(workload.events().saturating_sub(1));
        let mut runs: [(&'static str, Vec<Duration>); 4] = [
            ("evstream --version", Vec::new()),
            ("append (writer open, 1 event)", Vec::new()),
            ("cat --since T -n 1 (seek)", Vec::new()),
            ("tail -n 10", Vec::new()),
        ];
        for k in 0..points {
            let target = Workload::timestamp(workload.events() * k / (points - 1));
            let since = format!("{target}ns");
            let stamp = format!("{last}ns");
            let dir_arg = path.as_os_str();
            let commands: [Vec<&std::ffi::OsStr>; 4] = [
                vec!["--version".as_ref()],
                vec![
                    "append".as_ref(),
                    dir_arg,
                    "--timestamp".as_ref(),
                    stamp.as_ref(),
                    "x".as_ref(),
                ],
                vec![
                    "cat".as_ref(),
                    dir_arg,
                    "--since".as_ref(),
                    since.as_ref(),
                    "-n".as_ref(),
                    "1".as_ref(),
                ],
                vec!["tail".as_ref(), dir_arg, "-n".as_ref(), "10".as_ref()],
            ];
            for ((_, samples), args) in runs.iter_mut().zip(commands) {
                samples.push(time_command(command, &args)?);
            }
        }
        processes = runs
            .into_iter()
            .map(|(what, s)| (what, summary(s)))
            .collect();
    }
    let _ = std::fs::remove_dir_all(&path);
    Ok(LargeLog {
        bytes: workload.events() * (EVENT_HEADER_LEN + size as u64),
        segments,
        writer_open: summary(opens),
        seek: summary(seeks),
        tail: summary(tails),
        processes,
    })
}

/// Runs `command args` in a fresh process, output discarded; its time from spawn to
/// exit. A failing command is an error.
fn time_command(command: &std::path::Path, args: &[&std::ffi::OsStr]) -> Result<Duration> {
    let start = Instant::now();
    let output = std::process::Command::new(command)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(io_err("run", command))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(io_err("run", command)(std::io::Error::other(format!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    Ok(elapsed)
}

/// The summary of no runs.
fn zero_summary() -> Summary {
    Summary {
        samples: Vec::new(),
        median: Duration::ZERO,
        q1: Duration::ZERO,
        q3: Duration::ZERO,
        min: Duration::ZERO,
        max: Duration::ZERO,
    }
}

impl LogBenchReport {
    /// The throughput comparison through fresh logs, as a table.
    fn throughput_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "Log throughput: {} MiB of events through {} MiB segments, medians of {} runs",
            c.total_bytes >> 20,
            c.segment_size >> 20,
            c.repeats
        )?;
        writeln!(
            f,
            "{:>8}  {:>12}  {:>10}  {:>14}  {:>10}  {:>14}  {:>6}  {:>8}  {:>6}  {:>8}  {:>6}  {:>10}  {:>6}",
            "payload",
            "events",
            "evstream",
            "events/s",
            "BufWriter",
            "events/s",
            "ratio",
            "lazy",
            "ratio",
            "limit",
            "ratio",
            "prefaulted",
            "ratio"
        )?;
        for t in &self.throughput {
            writeln!(
                f,
                "{:>6} B  {:>12}  {:>8.0}ms  {:>14.0}  {:>8.0}ms  {:>14.0}  {:>5.2}x  {:>6.0}ms  {:>5.2}x  {:>6.0}ms  {:>5.2}x  {:>8.0}ms  {:>5.2}x",
                t.payload_size,
                t.events,
                t.evstream.median.as_secs_f64() * 1e3,
                t.evstream_rate(),
                t.bufwriter.median.as_secs_f64() * 1e3,
                t.bufwriter_rate(),
                t.evstream_rate() / t.bufwriter_rate(),
                t.lazy.median.as_secs_f64() * 1e3,
                t.lazy_rate() / t.bufwriter_rate(),
                t.limit.median.as_secs_f64() * 1e3,
                t.limit_rate() / t.bufwriter_rate(),
                t.prefaulted.median.as_secs_f64() * 1e3,
                t.prefaulted_rate() / t.bufwriter_rate()
            )?;
        }
        writeln!(
            f,
            "(ratios to BufWriter; evstream: eager write-back, lazy: lazy write-back; limit: the same bytes copied into fresh mapped files of the segment size, each created, preallocated and populated by a second thread ahead, nothing encoded; prefaulted: evstream's appends into segments all populated before the timer starts)"
        )?;
        Ok(())
    }
}

impl fmt::Display for LogBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        if !self.steady.is_empty() {
            writeln!(
                f,
                "Log steady state: {} MiB segments, the newest {} kept, the log holding them before the timer starts; then {} MiB of events timed, medians of {} runs",
                c.segment_size >> 20,
                c.steady_retain,
                c.steady_bytes >> 20,
                c.repeats
            )?;
            for s in &self.steady {
                let base = s.rate(&s.bufwriter);
                writeln!(
                    f,
                    "{:>6} B  {:>10} events  {:>22}: {:>8.0}ms  {:>12.0} events/s",
                    s.payload_size,
                    s.events,
                    "rotating BufWriter",
                    s.bufwriter.median.as_secs_f64() * 1e3,
                    base
                )?;
                for (name, runs) in &s.logs {
                    writeln!(
                        f,
                        "{:>6} B  {:>10} events  {:>22}: {:>8.0}ms  {:>12.0} events/s  {:>5.2}x",
                        s.payload_size,
                        s.events,
                        name,
                        runs.median.as_secs_f64() * 1e3,
                        s.rate(runs),
                        s.rate(runs) / base
                    )?;
                }
            }
            writeln!(
                f,
                "(ratios to the rotating BufWriter of 1 MiB, which deletes its oldest file beyond {}; same event bytes, CRC included)\n",
                c.steady_retain
            )?;
        }
        if !self.throughput.is_empty() {
            self.throughput_table(f)?;
        }
        if !self.latency.is_empty() {
            writeln!(
                f,
                "\nLog append latency (ns), paced, rolls included, pooled over {} rounds (floor, log, lazy and steady taking turns going first); floor: the same appends into segments all prefaulted in advance, a roll only taking the next; steady: a lazy log keeping {} segments, holding them (written back) before the first timed append",
                c.latency_rounds.max(1),
                c.steady_retain
            )?;
            writeln!(
                f,
                "{:>8}  {:>6}  {:>10}  {:>6}  {:>7}  {:>6}  {:>6}  {:>7}  {:>7}  {:>10}  {:>9}  {:>9}  {:>7}",
                "payload",
                "into",
                "appends",
                "rolls",
                "pace",
                "p50",
                "p99",
                "p99.9",
                "p99.99",
                "max",
                "roll p50",
                "roll max",
                "faults"
            )?;
            for l in &self.latency {
                let (roll_p50, roll_max) = l.roll_summary().map_or_else(
                    || ("-".to_owned(), "-".to_owned()),
                    |(p50, max)| (p50.to_string(), max.to_string()),
                );
                writeln!(
                    f,
                    "{:>6} B  {:>6}  {:>10}  {:>6}  {:>5}ns  {:>6}  {:>6}  {:>7}  {:>7}  {:>10}  {:>9}  {:>9}  {:>7}",
                    l.payload_size,
                    l.target,
                    l.events,
                    l.rolls,
                    l.pace.as_nanos(),
                    l.p50,
                    l.p99,
                    l.p999,
                    l.p9999,
                    l.max,
                    roll_p50,
                    roll_max,
                    l.faults
                )?;
            }
        }
        if let Some(large) = &self.large {
            writeln!(
                f,
                "\nLarge log: {:.1} GiB in {} segments, fresh objects, page cache warm (median, max of {} runs)",
                large.bytes as f64 / f64::from(1u32 << 30),
                large.segments,
                large.writer_open.samples.len()
            )?;
            for (what, s) in [
                ("writer open", &large.writer_open),
                ("reader open + seek by time", &large.seek),
                ("reader open + tail 10", &large.tail),
            ] {
                writeln!(
                    f,
                    "{what:>28}: {:>8.3} ms  (max {:.3} ms)",
                    s.median.as_secs_f64() * 1e3,
                    s.max.as_secs_f64() * 1e3
                )?;
            }
            if !large.processes.is_empty() {
                writeln!(f, "  fresh processes, spawn to exit (median, max):")?;
                for (what, s) in &large.processes {
                    writeln!(
                        f,
                        "{what:>32}: {:>8.3} ms  (max {:.3} ms)",
                        s.median.as_secs_f64() * 1e3,
                        s.max.as_secs_f64() * 1e3
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A small run rolls, times every append that rolled (and only those), and prints
    /// their median and slowest beside the percentiles; the floor rolls as often. The
    /// latency runs of every round are pooled.
    #[test]
    fn a_small_run_reports_every_roll() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogBenchConfig {
            total_bytes: 1 << 20,
            segment_size: 128 << 10,
            payload_sizes: vec![200],
            repeats: 1,
            pace: Some(Duration::from_nanos(500)),
            latency_rounds: 2,
            steady_bytes: 512 << 10,
            steady_retain: 2,
            dir: Some(dir.path().to_owned()),
            ..LogBenchConfig::default()
        };
        let report = run(&config, &mut |_| {}).unwrap();
        let [throughput] = &report.throughput[..] else {
            panic!("{:?}", report.throughput);
        };
        for runs in [
            &throughput.evstream,
            &throughput.bufwriter,
            &throughput.limit,
            &throughput.prefaulted,
            &throughput.lazy,
        ] {
            assert_eq!(runs.samples.len(), 1);
            assert!(runs.median > Duration::ZERO);
        }
        let [floor, log, lazy, steady] = &report.latency[..] else {
            panic!("{:?}", report.latency);
        };
        assert_eq!(
            (floor.target, log.target, lazy.target, steady.target),
            ("floor", "log", "lazy", "steady")
        );
        // The steady log rolls (and recycles) as it goes.
        assert!(steady.rolls >= 14, "{} rolls", steady.rolls);
        assert_eq!(steady.events, floor.events);
        assert_eq!(lazy.rolls, log.rolls);
        // Two rounds of at least 7 rolls each, pooled.
        assert!(log.rolls >= 14 && log.rolls % 2 == 0, "{} rolls", log.rolls);
        // Both hold the same events in segments of the same size.
        assert_eq!(floor.rolls, log.rolls);
        let events = 2 * (config.total_bytes / (EVENT_HEADER_LEN + 200));
        for run in [floor, log, lazy] {
            assert_eq!(run.rounds, 2);
            assert_eq!(run.events, events);
            assert_eq!(run.roll_appends.len() as u64, run.rolls);
            let (median, slowest) = run.roll_summary().unwrap();
            assert!(0 < median && median <= slowest && slowest <= run.max);
        }
        // The files of the floor and the limit are gone.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| {
                let name = n.to_string_lossy();
                ["floor-", "limit-", "steady-", "rotating-"]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // The steady state: every log configuration and the baseline, timed once each.
        let [steady] = &report.steady[..] else {
            panic!("{:?}", report.steady);
        };
        assert_eq!(steady.logs.len(), STEADY_LOGS.len());
        for runs in steady
            .logs
            .iter()
            .map(|(_, s)| s)
            .chain([&steady.bufwriter])
        {
            assert_eq!(runs.samples.len(), 1);
            assert!(runs.median > Duration::ZERO);
        }
        let text = report.to_string();
        for column in [
            "roll p50",
            "roll max",
            "faults",
            "limit",
            "prefaulted",
            "steady state",
            "pooled over 2 rounds",
        ] {
            assert!(text.contains(column), "{column}: {text}");
        }
    }
}
