//! Ship evstream logs and streams into NATS JetStream, and pull them back, exactly once.
//!
//! evstream is the fast, crash-safe store on one host; JetStream replicates, retains and
//! fans out across hosts. [`ship`] follows a log (or a stream file) and publishes each
//! event as one JetStream message (payload, timestamp header, a message id unique to the
//! event), keeping its position in one of the log's named cursors; [`pull`] is a durable
//! consumer that appends a JetStream stream to a local log (or stream file).
//! Both survive a `kill -9` at any moment: a restart neither loses nor duplicates an
//! event. This crate is separate from the store so that `evstream` itself has no network
//! or async dependency; its functions are `async` on tokio.
//!
//! # Examples
//!
//! ```no_run
//! use evstream_nats::{Connection, ShipOptions, StreamSettings};
//!
//! # async fn run() -> evstream_nats::Result<()> {
//! let connection = Connection::new(["nats://127.0.0.1:4222"]);
//! let options = ShipOptions::new("app.log", "app.events")
//!     .create_stream(StreamSettings::default())
//!     .cursor("shipper")
//!     .until_end(true);
//! let summary = evstream_nats::ship(&connection, &options, |report| eprintln!("{report}")).await?;
//! println!("shipped {} events", summary.events);
//! # Ok(())
//! # }
//! ```

mod connect;
mod error;
mod pull;
mod report;
mod ship;
mod source;
mod state;

pub use connect::Connection;
pub use error::{Error, ForeignMessage, OtherStream, Result};
pub use pull::{PullOptions, PullSummary, pull};
pub use report::{Report, ResumeFrom};
pub use ship::{
    NEXT_HEADER, ShipOptions, ShipSummary, StreamSettings, TIMESTAMP_HEADER, check_subject, ship,
};
