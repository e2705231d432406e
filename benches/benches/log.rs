//! The log benchmarks of `evstream_bench::log`, printed as tables.
//!
//! `cargo bench -p evstream-bench --bench log` runs the defaults (1 GiB through 64 MiB
//! segments, 64 B and 1 KiB events, 3 repeats, the steady state with 1 GiB timed, paced
//! latency in 3 rounds). Environment variables change them: `EVSTREAM_LOG_BENCH_BYTES` (of the
//! steady state too), `EVSTREAM_LOG_BENCH_STEADY` (0 skips it), `EVSTREAM_LOG_BENCH_SEGMENT`,
//! `EVSTREAM_LOG_BENCH_REPEATS`, `EVSTREAM_LOG_BENCH_LARGE` (bytes of the large log for
//! open, seek and tail; 0 skips it), `EVSTREAM_LOG_BENCH_PACE_NS` (0 skips latency),
//! `EVSTREAM_LOG_BENCH_LATENCY_ROUNDS`, `EVSTREAM_LOG_BENCH_DIR`.
//!
//! In criterion's test mode (`cargo test --benches`, which CI runs, or
//! `cargo bench -- --test`) every part runs once on a few MiB, to check that it runs, not
//! to time it; the environment variables still apply.

use std::time::Duration;

use evstream_bench::log::{LogBenchConfig, run};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Whether the bench runs once to check that it works, as criterion's test mode does:
/// `cargo test --benches` (no `--bench` argument) or `cargo bench -- --test`.
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|arg| arg == "--test") || !args.iter().any(|arg| arg == "--bench")
}

fn main() {
    // `cargo bench` passes `--bench`, and `-- --test` adds `--test`; `cargo test`
    // passes neither. Nothing else is expected.
    let mut config = LogBenchConfig::default();
    if test_mode() {
        config.total_bytes = 4 << 20;
        config.steady_bytes = 4 << 20;
        config.segment_size = 1 << 20;
        config.repeats = 1;
        config.latency_rounds = 1;
        config.large_bytes = 8 << 20;
    }
    if let Some(bytes) = env("EVSTREAM_LOG_BENCH_BYTES") {
        config.total_bytes = bytes;
        config.steady_bytes = bytes;
    }
    if let Some(bytes) = env("EVSTREAM_LOG_BENCH_STEADY") {
        config.steady_bytes = bytes;
    }
    if let Some(bytes) = env("EVSTREAM_LOG_BENCH_SEGMENT") {
        config.segment_size = bytes;
    }
    if let Some(n) = env("EVSTREAM_LOG_BENCH_REPEATS") {
        config.repeats = n as u32;
    }
    if let Some(bytes) = env("EVSTREAM_LOG_BENCH_LARGE") {
        config.large_bytes = bytes;
    }
    if let Some(ns) = env("EVSTREAM_LOG_BENCH_PACE_NS") {
        config.pace = (ns > 0).then(|| Duration::from_nanos(ns));
    }
    if let Some(n) = env("EVSTREAM_LOG_BENCH_LATENCY_ROUNDS") {
        config.latency_rounds = u32::try_from(n).unwrap_or(u32::MAX);
    }
    config.dir = std::env::var_os("EVSTREAM_LOG_BENCH_DIR").map(Into::into);
    let mut progress = |line: &str| eprintln!("{line}");
    match run(&config, &mut progress) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
