//! A tokio service that follows a log from its cursor: `cargo run -p evstream-tokio
//! --example follow_log -- DIR`.

use std::time::Duration;

use evstream::{LogOptions, LogReader, LogWriter};
use evstream_tokio::{LogFollower, commit_cursor};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> evstream::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tokio-demo-log".into());
    let mut log = match LogWriter::open(&dir) {
        Ok(log) => log,
        Err(_) => LogWriter::create(&dir, LogOptions::default())?,
    };
    // The writer: usually another process; a thread here.
    std::thread::spawn(move || -> evstream::Result<()> {
        for i in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            log.append_now(format!("reading {i}").as_bytes())?;
        }
        Ok(())
    });

    let reader = LogReader::open(&dir)?;
    // From where the "dashboard" cursor stopped (the start, the first time).
    let mut events = LogFollower::new(reader.iter_cursor("dashboard")?);
    loop {
        // Cancel safe: a timeout that drops `next()` loses no event.
        match tokio::time::timeout(Duration::from_secs(1), events.next()).await {
            Ok(Some(event)) => {
                let event = event?;
                println!("{} {:?}", event.position, event.payload);
                commit_cursor(&reader, "dashboard", event.next_position).await?;
            }
            Ok(None) => break,    // a log follower ends only after an error item
            Err(_quiet) => break, // a second without events
        }
    }
    Ok(())
}
