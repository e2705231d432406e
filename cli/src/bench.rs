//! `evstream bench`: the library's benchmark runner, with progress on standard error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use evstream_bench::{self as bench, BenchConfig, BenchDir};

use crate::failure::Failure;
use crate::output;
use crate::progress;
use crate::units;

/// Examples shown by `evstream bench --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream bench                            # 10,000 events of 1 KiB in a temporary directory
  evstream bench --events 100000 --size 128
  evstream bench --dir /mnt/nvme --json > bench.json
  evstream bench --log                      # 1 GiB through a log of 64 MiB segments
  evstream bench --log --large-log 10GiB    # and open, seek, tail on a 10 GiB log

Compares evstream's appends (cold: file creation timed; warm: pages resident) and replay
with std I/O baselines that write the same format, and measures per-append latency.
Systems run interleaved and the tables quote medians; the file system of --dir (default:
a fresh temporary directory, removed afterwards, also on Ctrl-C) is part of what is
measured. Progress shows on standard error when it is a terminal.";

/// Arguments of `evstream bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events per append run and in the replayed file (at least 1)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = parse_events)]
    events: u64,
    /// Payload size of every event: bytes or with a unit (128, 4KiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_payload_size, default_value = "1024")]
    size: usize,
    /// Directory for the benchmark files (default: a temporary directory)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Measured repeats of every run (default: as many as fit in --seconds, 5 to 51)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeats: Option<u32>,
    /// Rough time budget for the throughput repeats, in seconds
    #[arg(long, value_name = "S", default_value_t = 25)]
    seconds: u64,
    /// Skip the per-append latency measurement
    #[arg(long)]
    no_latency: bool,
    /// Skip the replay measurement
    #[arg(long)]
    no_replay: bool,
    /// Skip the append + flush comparison (huge pages off and on)
    #[arg(long)]
    no_flush: bool,
    /// Print the report as JSON on standard output instead of tables
    #[arg(long)]
    json: bool,
    /// Benchmark logs instead: continuous logging through rolling segments against
    /// `BufWriter` rolling files (with two bounds: fresh mapped files filled with no
    /// encoding, and evstream into segments populated in advance), append latency with
    /// rolls, and (with --large-log) open, seek and tail on a large log
    #[arg(long, conflicts_with = "json")]
    log: bool,
    /// Log: bytes of events per run (default 1GiB)
    #[arg(long, value_name = "SIZE", requires = "log", value_parser = units::parse_size)]
    log_bytes: Option<u64>,
    /// Log: the size of a large log to write once and time open, seek and tail on
    #[arg(long, value_name = "SIZE", requires = "log", value_parser = units::parse_size)]
    large_log: Option<u64>,
    /// Log: bytes of events timed per steady-state run, once the log holds its retention
    /// of 4 segments (default: as --log-bytes; 0 skips the steady-state comparison)
    #[arg(long, value_name = "SIZE", requires = "log", value_parser = units::parse_size)]
    steady_bytes: Option<u64>,
    /// Log: run only the steady-state comparison (no fresh logs, no latency)
    #[arg(long, requires = "log")]
    steady_only: bool,
    /// Benchmark many producers instead: one log fed by 1, 2 and 4 threads through one
    /// SharedLogWriter, beside one thread through a LogWriter, and 1 and 2 processes
    /// each with its own SharedLogWriter; what the shared writer costs one thread alone
    /// (beside a LogWriter, and a LogWriter behind a std Mutex); and the append latency
    /// of 1 and 2 threads each paced at 250,000 events/s; events of 64 bytes
    #[arg(long, conflicts_with_all = ["json", "log", "follow_latency"])]
    many: bool,
    /// Many producers: events per throughput run, shared between the threads (default
    /// 4000000)
    #[arg(long, value_name = "N", requires = "many", value_parser = parse_events)]
    many_events: Option<u64>,
    /// Many producers: each log in steady state instead of fresh, keeping its newest N
    /// segments and holding them before the timer starts, so that rolls recycle
    /// segments
    #[arg(long, value_name = "N", requires = "many", value_parser = clap::value_parser!(u64).range(1..))]
    many_retain: Option<u64>,
    /// Measure instead the latency from a writer process's append to a follower process
    /// holding the event, per rate and wait strategy (and the async follower of
    /// evstream-tokio), with the follower's CPU use, and an idle blocking follower's CPU
    /// use and wakeups
    #[arg(long, conflicts_with_all = ["json", "log"])]
    follow_latency: bool,
    /// Follower latency: the writer's rates, events per second (comma-separated)
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        requires = "follow_latency",
        default_value = "10000,100000,1000000",
        value_parser = clap::value_parser!(u64).range(1..=100_000_000)
    )]
    rates: Vec<u64>,
    /// Follower latency: seconds of events per rate and strategy
    #[arg(long, value_name = "S", requires = "follow_latency", default_value_t = 1.0, value_parser = parse_seconds)]
    run_seconds: f64,
    /// Follower latency: seconds the idle follower waits (0 skips it)
    #[arg(long, value_name = "S", requires = "follow_latency", default_value_t = 2.0, value_parser = parse_seconds)]
    idle_seconds: f64,
}

/// Parses a duration in seconds: a finite number from 0 to one hour.
fn parse_seconds(input: &str) -> Result<f64, String> {
    match input.trim().parse::<f64>() {
        Ok(s) if (0.0..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "{input:?} is not a number of seconds from 0 to 3600"
        )),
    }
}

/// Parses the event count, which must be at least 1: with none there is nothing to time.
fn parse_events(input: &str) -> Result<u64, String> {
    match input.trim().parse::<u64>() {
        Ok(0) => Err("a benchmark needs at least 1 event (there is nothing to time in 0)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{input:?} is not a number of events")),
    }
}

/// Parses a payload SIZE, which must fit the format's `u32` size field.
fn parse_payload_size(input: &str) -> Result<usize, String> {
    let bytes = units::parse_size(input)?;
    if bytes > evstream::format::MAX_PAYLOAD {
        return Err(format!(
            "a payload can be at most {} bytes",
            evstream::format::MAX_PAYLOAD
        ));
    }
    usize::try_from(bytes).map_err(|_| format!("{input:?} is too large for this machine"))
}

/// Runs the benchmark and prints the report.
pub fn run(args: Args) -> Result<(), Failure> {
    if args.log {
        return run_log(&args);
    }
    if args.many {
        return run_many(&args);
    }
    if args.follow_latency {
        return run_follow_latency(&args);
    }
    let dir_failure = |e: &evstream::Error| {
        let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        Failure::stream(&dir, e).with_context(" (while benchmarking)")
    };
    // The directory is made here rather than by the runner, so that Ctrl-C can remove it.
    let dir = BenchDir::new(args.dir.as_deref()).map_err(|e| dir_failure(&e))?;
    let owned = args.dir.is_none();
    let path = dir.path().to_owned();
    // Best effort: without a handler Ctrl-C still stops the run, leaving files behind.
    let _ = ctrlc::set_handler(move || {
        INTERRUPTED_RUN.store(true, Ordering::SeqCst);
        clean_up(&path, owned);
        std::process::exit(INTERRUPTED);
    });
    let config = BenchConfig {
        events: args.events,
        payload_size: args.size,
        dir: Some(dir.path().to_owned()),
        repeats: args.repeats,
        time_budget: Duration::from_secs(args.seconds),
        latency: !args.no_latency,
        replay: !args.no_replay,
        flush: !args.no_flush,
        ..BenchConfig::default()
    };
    let spinner = progress::spinner("benchmarking");
    let mut progress = |line: &str| {
        if let Some(spinner) = &spinner {
            spinner.set_message(line.to_owned());
        }
    };
    let report =
        unless_interrupted(bench::run(&config, &mut progress).map_err(|e| dir_failure(&e)));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    drop(dir);
    let report = report?;
    if args.json {
        output::line(report.to_json().trim_end())
    } else {
        output::line(report.to_string().trim_end())
    }
}

/// Bytes of one event of the large log `bench --log --large-log` writes.
const LARGE_LOG_EVENT_LEN: u64 =
    evstream::format::EVENT_HEADER_LEN + bench::log::LARGE_LOG_PAYLOAD as u64;

/// Removes the entries of `dir` whose names start with `prefix` with `remove`: what an
/// interrupted run left. The run goes on in another thread meanwhile and may still add
/// files, so this retries until none is left.
fn remove_ours(dir: &Path, prefix: &str, remove: fn(&Path) -> std::io::Result<()>) {
    for _ in 0..100 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let ours: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        if ours.is_empty() {
            return;
        }
        for path in ours {
            let _ = remove(&path);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Exit status after Ctrl-C, as shells report a process killed by SIGINT.
const INTERRUPTED: i32 = 130;

/// Set by the Ctrl-C handler before it removes the run's files.
static INTERRUPTED_RUN: AtomicBool = AtomicBool::new(false);

/// Passes `result` on, unless Ctrl-C interrupted the run: the run's failure is then the
/// handler removing its files under it, and the handler ends the process (130) once
/// they are gone, so this thread waits for that instead of reporting it.
fn unless_interrupted<T>(result: Result<T, Failure>) -> Result<T, Failure> {
    if result.is_err() && INTERRUPTED_RUN.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    result
}

/// Removes what the interrupted run left: the whole directory if it made it, else the
/// files it was writing in the user's directory. The run goes on in another thread
/// meanwhile and may add a file, so this retries until nothing is left.
fn clean_up(dir: &Path, owned: bool) {
    if !owned {
        let prefix = format!("bench-{}-", std::process::id());
        return remove_ours(dir, &prefix, |path| std::fs::remove_file(path));
    }
    for _ in 0..100 {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `bench --log`: the log benchmarks of `evstream_bench::log`.
fn run_log(args: &Args) -> Result<(), Failure> {
    let mut config = bench::log::LogBenchConfig {
        dir: args.dir.clone(),
        large_bytes: args.large_log.unwrap_or(0),
        // The large log's commands are timed from fresh processes of this binary.
        command: std::env::current_exe().ok(),
        ..bench::log::LogBenchConfig::default()
    };
    if let Some(bytes) = args.log_bytes {
        config.total_bytes = bytes;
        config.steady_bytes = bytes;
    }
    // Every payload size needs at least one event, or there is nothing to time.
    let largest = config.payload_sizes.iter().max().map_or(0, |&size| {
        evstream::format::EVENT_HEADER_LEN + u64::try_from(size).unwrap_or(u64::MAX)
    });
    if config.total_bytes < largest {
        return Err(Failure::usage(format!(
            "--log-bytes {} is less than one event of the largest size benchmarked ({} bytes of payload and {} of header); give at least {largest}",
            config.total_bytes,
            largest - evstream::format::EVENT_HEADER_LEN,
            evstream::format::EVENT_HEADER_LEN,
        )));
    }
    if let Some(repeats) = args.repeats {
        config.repeats = repeats;
    }
    if args.no_latency {
        config.pace = None;
    }
    if let Some(bytes) = args.steady_bytes {
        if bytes > 0 && bytes < largest {
            return Err(Failure::usage(format!(
                "--steady-bytes {bytes} is less than one event of the largest size benchmarked; give 0 (to skip) or at least {largest}"
            )));
        }
        config.steady_bytes = bytes;
    }
    if args.steady_only {
        config.fresh = false;
        config.pace = None;
        if config.steady_bytes == 0 {
            return Err(Failure::usage(
                "--steady-only with --steady-bytes 0 leaves nothing to run".to_owned(),
            ));
        }
    }
    if config.large_bytes > 0 && config.large_bytes < LARGE_LOG_EVENT_LEN {
        return Err(Failure::usage(format!(
            "--large-log {} is less than one of its events ({} bytes of payload and {} of header); give at least {LARGE_LOG_EVENT_LEN}",
            config.large_bytes,
            bench::log::LARGE_LOG_PAYLOAD,
            evstream::format::EVENT_HEADER_LEN,
        )));
    }
    // The run works in a directory of its own, `RUN_DIR_PREFIX` + this process's id, in
    // --dir or the temporary directory; Ctrl-C removes it as an error would.
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let prefix = format!("{}{}-", bench::RUN_DIR_PREFIX, std::process::id());
    let their_base = base.clone();
    // Best effort: without a handler Ctrl-C still stops the run, leaving files behind.
    let _ = ctrlc::set_handler(move || {
        INTERRUPTED_RUN.store(true, Ordering::SeqCst);
        remove_ours(&their_base, &prefix, |path| std::fs::remove_dir_all(path));
        std::process::exit(INTERRUPTED);
    });
    let spinner = progress::spinner("benchmarking");
    let mut progress = |line: &str| {
        if let Some(spinner) = &spinner {
            spinner.set_message(line.to_owned());
        }
    };
    let report = unless_interrupted(
        bench::log::run(&config, &mut progress)
            .map_err(|e| Failure::stream(&base, &e).with_context(" (while benchmarking logs)")),
    );
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    output::line(report?.to_string().trim_end())
}

/// `bench --many`: `evstream_bench::many`, many threads appending to one log.
fn run_many(args: &Args) -> Result<(), Failure> {
    let mut config = bench::many::ManyConfig {
        dir: args.dir.clone(),
        ..bench::many::ManyConfig::default()
    };
    if let Some(events) = args.many_events {
        config.events = events;
    }
    config.retain = args.many_retain;
    // The multi-process rows run this binary's hidden `bench-appender`.
    config.appender = std::env::current_exe()
        .ok()
        .map(|program| vec![program.into_os_string(), APPENDER_COMMAND.into()]);
    if let Some(repeats) = args.repeats {
        config.repeats = repeats;
    }
    if args.no_latency {
        config.pace = None;
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let spinner = progress::spinner("benchmarking");
    let mut progress = |line: &str| {
        if let Some(spinner) = &spinner {
            spinner.set_message(line.to_owned());
        }
    };
    let report = bench::many::run(&config, &mut progress).map_err(|e| {
        Failure::stream(&base, &e).with_context(" (while benchmarking many producers)")
    });
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    output::line(report?.to_string().trim_end())
}

/// `bench --follow-latency`: `evstream_bench::latency`, with this binary as the follower.
fn run_follow_latency(args: &Args) -> Result<(), Failure> {
    let dir_failure = |e: &evstream::Error| {
        let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        Failure::stream(&dir, e).with_context(" (while benchmarking followers)")
    };
    let program = std::env::current_exe().map_err(|e| {
        dir_failure(&evstream::Error::Io {
            op: "find this program",
            path: PathBuf::from("/proc/self/exe"),
            source: e,
        })
    })?;
    let config = bench::latency::FollowLatencyConfig {
        rates: args.rates.clone(),
        run_time: Duration::from_secs_f64(args.run_seconds),
        idle: Duration::from_secs_f64(args.idle_seconds),
        dir: args.dir.clone(),
        follower: vec![program.into_os_string(), FOLLOWER_COMMAND.into()],
        ..bench::latency::FollowLatencyConfig::default()
    };
    let spinner = progress::spinner("benchmarking");
    let mut progress = |line: &str| {
        if let Some(spinner) = &spinner {
            spinner.set_message(line.to_owned());
        }
    };
    let report = bench::latency::run(&config, &mut progress).map_err(|e| dir_failure(&e));
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    output::line(report?.to_string().trim_end())
}

/// The hidden subcommand that runs the follower side of `bench --follow-latency`.
pub const FOLLOWER_COMMAND: &str = "bench-follower";

/// Arguments of the hidden `evstream bench-follower`.
#[derive(Debug, clap::Args)]
pub struct FollowerArgs {
    /// The stream the benchmark writes
    path: PathBuf,
    /// block, spinN (spin N looks, then block), busy-spin, or async (evstream-tokio's
    /// follower)
    #[arg(value_parser = bench::latency::parse_follower)]
    strategy: bench::latency::FollowerMode,
}

/// Follows the stream, measuring, and prints the report line for the writer.
pub fn run_follower(args: &FollowerArgs) -> Result<(), Failure> {
    let out = &mut std::io::stdout().lock();
    let report = match args.strategy {
        bench::latency::FollowerMode::Blocking(strategy) => {
            bench::latency::follow_and_measure(&args.path, strategy, out)
        }
        bench::latency::FollowerMode::Async => {
            bench::latency::follow_and_measure_async(&args.path, out)
        }
    }
    .map_err(|e| Failure::stream(&args.path, &e))?;
    output::line(&report.to_line())
}

/// The hidden subcommand that runs an appending process of `bench --many`.
pub const APPENDER_COMMAND: &str = "bench-appender";

/// Arguments of the hidden `evstream bench-appender`.
#[derive(Debug, clap::Args)]
pub struct AppenderArgs {
    /// The log the benchmark appends to
    path: PathBuf,
    /// Events to append
    events: u64,
    /// Payload bytes of each
    size: usize,
}

/// Opens the log, says READY, appends when told to, says DONE.
pub fn run_appender(args: &AppenderArgs) -> Result<(), Failure> {
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    bench::many::append_child(&args.path, args.events, args.size, &mut input, &mut out)
        .map_err(|e| Failure::stream(&args.path, &e))
}
