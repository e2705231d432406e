//! An application logging time-series events: simulated sensor readings, appended as
//! they happen, flushed once a second, with the stream reopened after a restart.
//!
//! Run: `cargo run --release --example log_sensors -- /tmp/sensors.evs`

mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use evstream::{Error, StreamWriter};

/// One reading, serialized as 4 bytes of sensor id and 8 bytes of value (little-endian).
fn encode(sensor: u32, value: f64, buf: &mut [u8]) {
    for (slot, byte) in buf
        .iter_mut()
        .zip(sensor.to_le_bytes().into_iter().chain(value.to_le_bytes()))
    {
        *slot = byte;
    }
}

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sensors.evs".to_owned());
    match log(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", support::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn log(path: &str) -> Result<(), Error> {
    // Resume an existing stream, or start a 64 MiB one.
    let mut writer = match StreamWriter::open(path) {
        Ok(writer) => {
            let r = writer.recovery();
            if !r.is_clean() {
                eprintln!(
                    "recovered {path}: dropped {} torn events ({} bytes){}",
                    r.dropped_events,
                    r.dropped_bytes,
                    if r.count_repaired {
                        ", corrected the event count"
                    } else {
                        ""
                    }
                );
            }
            writer
        }
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            StreamWriter::create(path, 64 << 20)?
        }
        Err(e) => return Err(e),
    };

    let started = Instant::now();
    let mut last_flush = Instant::now();
    let mut appended = 0u64;
    'run: while started.elapsed() < Duration::from_secs(2) {
        for sensor in 0..16u32 {
            let t = started.elapsed().as_secs_f64();
            let value = 20.0 + (t + f64::from(sensor)).sin();
            // Serialize straight into the mapping: no intermediate buffer.
            let ts = writer.next_timestamp();
            match writer.append_with(ts, 12, |buf| encode(sensor, value, buf)) {
                Ok(_) => appended += 1,
                Err(Error::Full { .. }) => {
                    eprintln!("{path} is full; a real application would roll to a new file");
                    break 'run;
                }
                Err(e) => return Err(e),
            }
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            writer.flush()?; // everything so far now survives power loss
            last_flush = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    writer.flush()?;
    println!(
        "appended {appended} readings; {path} holds {} events, {} of {} bytes used",
        writer.event_count(),
        writer.write_offset(),
        writer.capacity()
    );
    Ok(())
}
