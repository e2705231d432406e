//! Replaying a stream and aggregating over it: per-sensor count, mean, min and max of
//! the readings `log_sensors` writes, over the whole stream or from a point in time.
//!
//! Run: `cargo run --release --example replay -- /tmp/sensors.evs [SINCE_UNIX_NS]`
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use evstream::{Error, StreamReader};

#[derive(Default)]
struct Stats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "sensors.evs".to_owned());
    let since: Option<i64> = args.next().map(|s| s.parse().expect("SINCE_UNIX_NS"));

    let reader = StreamReader::open(&path)?;
    let events = match since {
        Some(t) => reader.iter_since(t)?,
        None => reader.iter(),
    };
    let mut stats: BTreeMap<u32, Stats> = BTreeMap::new();
    let mut span: Option<(i64, i64)> = None;
    for event in events {
        // Each event is checked against its CRC; a damaged one ends the replay here.
        let event = event?;
        let p = event.payload();
        if p.len() != 12 {
            continue; // not a sensor reading
        }
        let sensor = u32::from_le_bytes(p[..4].try_into().unwrap());
        let value = f64::from_le_bytes(p[4..12].try_into().unwrap());
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
