//! An application that logs indefinitely: simulated sensor readings appended to a log
//! that rolls every minute or every 4 MiB and keeps about 64 MiB, flushed once a second,
//! resumed after a restart. Retention reports what it deletes, and which consumers it
//! overtook.
//!
//! Run: `cargo run --release --example log_forever -- /tmp/sensors-log [SECONDS]`
//! (without SECONDS it runs until interrupted), and alongside it
//! `cargo run --release --example log_consumer -- /tmp/sensors-log dashboard`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use evstream::{Error, LogOptions, LogWriter};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "sensors-log".to_owned());
    let seconds = args.next().and_then(|s| s.parse::<u64>().ok());
    match run(&dir, seconds.map(Duration::from_secs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, duration: Option<Duration>) -> Result<(), Error> {
    let options = LogOptions::default()
        .segment_size(4 << 20)
        .roll_interval(Some(Duration::from_secs(60)))
        .retain_size(Some(64 << 20))
        // A consumer that falls far behind loses data rather than filling the disk.
        .retain_past_cursors(true);
    // Resumes the log after a restart (its settings are those it was created with).
    let mut log = LogWriter::open_or_create(dir, options)?;
    if !log.recovery().is_clean() {
        eprintln!("recovered after a crash: {:?}", log.recovery());
    }
    eprintln!(
        "logging to {dir} from event {} (segment {})",
        log.event_count(),
        log.segment()
    );
    let start = Instant::now();
    let mut last_flush = Instant::now();
    let mut reading = [0u8; 12];
    let mut n: u64 = 0;
    while duration.is_none_or(|d| start.elapsed() < d) {
        // 16 sensors, one reading each every 100 µs or so.
        let sensor = (n % 16) as u32;
        let value = 20.0 + (n as f64 / 1000.0).sin();
        reading[..4].copy_from_slice(&sensor.to_le_bytes());
        reading[4..].copy_from_slice(&value.to_le_bytes());
        log.append_now(&reading)?;
        n += 1;
        if last_flush.elapsed() >= Duration::from_secs(1) {
            log.flush()?; // everything so far survives power loss
            last_flush = Instant::now();
            if let Some(e) = log.take_retention_error() {
                eprintln!("retention is held back: {e}");
            }
            for retired in log.take_retired() {
                eprintln!(
                    "retention deleted segment {} ({} events, {:?})",
                    retired.segment, retired.events, retired.reason
                );
                for loss in &retired.cursors_behind {
                    eprintln!(
                        "  consumer {} lost {} events it had not read",
                        loss.name, loss.events_lost
                    );
                }
            }
        }
        if n.is_multiple_of(64) {
            std::thread::sleep(Duration::from_micros(6400));
        }
    }
    log.flush()?;
    eprintln!("appended {n} events; the log ends at {}", log.end());
    Ok(())
}
