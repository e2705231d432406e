//! A consumer that resumes from a named cursor: it follows a log (such as the one
//! `log_forever` writes), aggregates the readings, and commits its cursor every second,
//! so that after a crash or restart it continues where it stopped (at least once: the
//! events after the last commit are seen again).
//!
//! Run: `cargo run --release --example log_consumer -- /tmp/sensors-log dashboard [SECONDS]`
//!
//! For exactly once, a consumer keeps the position in the same transaction as its own
//! state (here that would be `sum` and `count`, written together with the position) and
//! resumes from that instead of the cursor.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use evstream::{Error, LogReader};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "sensors-log".to_owned());
    let name = args.next().unwrap_or_else(|| "dashboard".to_owned());
    let seconds = args.next().and_then(|s| s.parse::<u64>().ok());
    match run(&dir, &name, seconds.map(Duration::from_secs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, name: &str, duration: Option<Duration>) -> Result<(), Error> {
    let reader = LogReader::open(dir)?;
    let mut events = match reader.iter_cursor(name) {
        Err(Error::Retired { first_segment, .. }) => {
            // Retention deleted what this consumer had not read: start at the oldest kept.
            eprintln!("{name}: fell behind retention; resuming at segment {first_segment}");
            reader.iter()?
        }
        other => other?,
    };
    eprintln!("{name}: resuming at {}", events.position());
    let start = Instant::now();
    let mut last_commit = Instant::now();
    let (mut sum, mut count) = (0.0f64, 0u64);
    while duration.is_none_or(|d| start.elapsed() < d) {
        if let Some(event) = events.next_timeout(Duration::from_millis(100))?
            && let Some(value) = event.payload().get(4..12)
        {
            let bytes: [u8; 8] = value.try_into().unwrap_or_default();
            sum += f64::from_le_bytes(bytes);
            count += 1;
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            reader.commit_cursor(name, events.position())?;
            last_commit = Instant::now();
            let lag = reader.lag(events.position())?;
            eprintln!(
                "{name}: {count} readings, mean {:.3}; {} events ({} bytes) behind",
                sum / count.max(1) as f64,
                lag.events,
                lag.bytes
            );
        }
    }
    reader.commit_cursor(name, events.position())?;
    Ok(())
}
