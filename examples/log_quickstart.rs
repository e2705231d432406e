//! The README's log example, word for word below this comment (a test checks that they
//! match): run it any number of times; each run adds two events to `app-log` in the
//! current directory, which takes 2 to 3 MiB on disk.
//!
//! Run: `cargo run --example log_quickstart`

use evstream::{LogOptions, LogReader, LogWriter};
use std::time::{Duration, SystemTime};

#[rustfmt::skip] // aligned as in the README
fn main() -> evstream::Result<()> {
    let options = LogOptions::default()
        .segment_size(1 << 20)                               // 1 MiB segments, preallocated
        .roll_interval(Some(Duration::from_secs(3600)))     // and a new one every hour
        .retain_size(Some(64 << 20));                        // keep about 64 MiB
    let mut log = LogWriter::open_or_create("app-log", options)?; // resumes if it exists
    let position = log.append_at(SystemTime::now(), b"temp=21.5")?;
    log.append_now(b"temp=21.7")?;                          // wall clock, monotonic
    log.flush()?;                                            // durable from here

    let reader = LogReader::open("app-log")?;                // no lock; any process
    for event in reader.iter_from(position)? {
        let event = event?;                                  // CRC checked
        println!("{} @{} {:?}", event.timestamp(), event.position(), event.payload());
    }
    let mut events = reader.iter_cursor("billing")?;        // where "billing" stopped
    while let Some(event) = events.next_timeout(Duration::from_millis(100))? {
        // ... process the event, then:
        reader.commit_after("billing", &event)?;            // resume after it next time
    }
    println!("{:?}", reader.stat()?);                        // segments, disk, cursors
    Ok(())
}
