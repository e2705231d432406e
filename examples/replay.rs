//! Replaying a stream and aggregating over it: per-sensor count, mean, min and max of
//! the readings `log_sensors` writes, over the whole stream or from a point in time.
//!
//! Run: `cargo run --release --example replay -- /tmp/sensors.evs [SINCE_UNIX_NS]`

mod support;

use std::collections::BTreeMap;
use std::process::ExitCode;

use evstream::StreamReader;

#[derive(Default)]
struct Stats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// One reading as `log_sensors` writes it: 4 bytes of sensor id and 8 bytes of value,
/// little-endian; `None` for any other payload.
fn decode(payload: &[u8]) -> Option<(u32, f64)> {
    let (sensor, value) = payload.split_first_chunk::<4>()?;
    let value: [u8; 8] = value.try_into().ok()?;
    Some((u32::from_le_bytes(*sensor), f64::from_le_bytes(value)))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "sensors.evs".to_owned());
    let since = match args.next().map(|s| s.parse::<i64>()) {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(_)) => {
            eprintln!(
                "error: SINCE must be a time in Unix nanoseconds, such as 1714564800000000000\n\
                 usage: replay [FILE] [SINCE_UNIX_NS]"
            );
            return ExitCode::from(2);
        }
    };
    match replay(&path, since) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", support::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn replay(path: &str, since: Option<i64>) -> evstream::Result<()> {
    let reader = StreamReader::open(path)?;
    let events = match since {
        Some(t) => reader.iter_since(t)?,
        None => reader.iter(),
    };
    let mut stats: BTreeMap<u32, Stats> = BTreeMap::new();
    let mut span: Option<(i64, i64)> = None;
    for event in events {
        // Each event is checked against its CRC; a damaged one ends the replay here.
        let event = event?;
        let Some((sensor, value)) = decode(event.payload()) else {
            continue; // not a sensor reading
        };
        let s = stats.entry(sensor).or_insert(Stats {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Stats::default()
        });
        s.count += 1;
        s.sum += value;
        s.min = s.min.min(value);
        s.max = s.max.max(value);
        let ts = event.timestamp();
        span = Some(span.map_or((ts, ts), |(a, _)| (a, ts)));
    }
    if let Some((first, last)) = span {
        println!(
            "{} readings over {:.3} s",
            stats.values().map(|s| s.count).sum::<u64>(),
            (last - first) as f64 / 1e9
        );
    }
    println!("sensor  count      mean       min       max");
    for (sensor, s) in &stats {
        println!(
            "{sensor:>6} {:>6} {:>9.4} {:>9.4} {:>9.4}",
            s.count,
            s.sum / s.count as f64,
            s.min,
            s.max
        );
    }
    Ok(())
}
