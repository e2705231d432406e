//! [`run`]: the repeats of every case that `evstream bench` measures, interleaved, and the
//! rows of its [`BenchReport`] made from them.

use std::hint::black_box;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use evstream::format::EVENT_HEADER_LEN;
use evstream::{Prefault, Result};

use crate::{
    AppendMethod, BenchDir, FLUSH_EVENTS, FLUSH_RUNS, FillLimit, Mode, Paced, PerEvent, Probe,
    ReplayMethod, ReplayMode, RunPercentiles, Scratch, Summary, Workload, append_once, append_run,
    fill_once, flush_once, fmt_ns, io_error, median_u64, new_histogram, replay_once,
    write_replay_file_with,
};

/// Bytes of events a latency run writes at most (unless that is under 1,000 events).
const LATENCY_BYTES: u64 = 128 << 20;
/// Appends per latency run however large the payload.
const MIN_LATENCY_EVENTS: u64 = 1_000;

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
pub(crate) fn append_cases() -> Vec<(AppendMethod, Mode)> {
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
pub(crate) fn replay_cases() -> Vec<(ReplayMethod, ReplayMode)> {
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
pub(crate) struct LatencyCase {
    pub(crate) method: AppendMethod,
    pub(crate) mode: Mode,
    pub(crate) pace: Option<Duration>,
}

/// The latency cases: evstream in every prefault mode and prefaulted, the baselines cold,
/// and the in-memory limit, all flat out; then evstream paced with and without prefaulting.
pub(crate) fn latency_cases(pace: Duration) -> Vec<LatencyCase> {
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
