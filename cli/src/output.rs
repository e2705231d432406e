//! Printing events, one a line, in the formats `cat` and `tail` offer.

use std::io::{self, BufWriter, StdoutLock, Write};

use evstream::EventView;

use crate::encode;
use crate::failure::Failure;
use crate::time::Rfc3339;

/// How `cat` and `tail` print each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The timestamp (RFC 3339, UTC, nanoseconds), a space, and the payload as text:
    /// `\n`, `\t`, `\\`, other control characters and bytes that are not UTF-8 escaped.
    Text,
    /// One JSON object a line: `offset`, `timestamp` (Unix nanoseconds), `time`
    /// (RFC 3339), `size`, and `payload` if it is UTF-8, else `payload_base64`.
    Json,
    /// The timestamp, a space, and the payload in lowercase hex.
    Hex,
    /// The payload bytes exactly as stored, each followed by a newline (the inverse of
    /// `append` reading lines from standard input).
    Raw,
}

/// Prints `text` and a newline on standard output.
///
/// # Errors
/// [`Failure::ClosedOutput`] when the reader of standard output has gone.
pub fn line(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::output(&e))
}

/// Writes events to standard output through a buffer.
pub struct Printer {
    out: BufWriter<StdoutLock<'static>>,
    format: Format,
    line: Vec<u8>,
    printed: u64,
}

impl Printer {
    /// A printer of `format` lines on standard output.
    pub fn stdout(format: Format) -> Self {
        Self {
            out: BufWriter::with_capacity(64 << 10, io::stdout().lock()),
            format,
            line: Vec::with_capacity(256),
            printed: 0,
        }
    }

    /// Events printed so far.
    pub fn printed(&self) -> u64 {
        self.printed
    }

    /// Prints one event.
    ///
    /// # Errors
    /// [`Failure::ClosedOutput`] when the reader of standard output has gone.
    pub fn event(&mut self, event: &EventView<'_>) -> Result<(), Failure> {
        self.line.clear();
        format_event(&mut self.line, self.format, event);
        self.out
            .write_all(&self.line)
            .map_err(|e| Failure::output(&e))?;
        self.printed += 1;
        Ok(())
    }

    /// Writes out everything buffered.
    ///
    /// # Errors
    /// As for [`event`](Self::event).
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.out.flush().map_err(|e| Failure::output(&e))
    }
}

/// Appends `event` to `line` as one line (newline included) in `format`.
pub fn format_event(line: &mut Vec<u8>, format: Format, event: &EventView<'_>) {
    let payload = event.payload();
    // Writing to a Vec cannot fail.
    match format {
        Format::Text => {
            let _ = write!(line, "{} ", Rfc3339(event.timestamp()));
            encode::text(line, payload);
        }
        Format::Hex => {
            let _ = write!(line, "{} ", Rfc3339(event.timestamp()));
            encode::hex(line, payload);
        }
        Format::Raw => line.extend_from_slice(payload),
        Format::Json => {
            let _ = write!(
                line,
                "{{\"offset\":{},\"timestamp\":{},\"time\":\"{}\",\"size\":{},",
                event.offset(),
                event.timestamp(),
                Rfc3339(event.timestamp()),
                payload.len()
            );
            match std::str::from_utf8(payload) {
                Ok(text) => {
                    line.extend_from_slice(b"\"payload\":");
                    encode::json_string(line, text);
                }
                Err(_) => {
                    line.extend_from_slice(b"\"payload_base64\":\"");
                    encode::base64(line, payload);
                    line.push(b'"');
                }
            }
            line.push(b'}');
        }
    }
    line.push(b'\n');
}
