//! Printing events in the formats `cat` and `tail` offer, or through a `--template`.

use std::io::{self, BufWriter, IsTerminal, StdoutLock, Write};

use crate::encode;
use crate::failure::Failure;
use crate::source::Event;
use crate::time::Zone;

/// How `cat` and `tail` print each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The time (RFC 3339, nanoseconds), a space, and the payload as text:
    /// `\n`, `\t`, `\\`, other control characters and bytes that are not UTF-8 escaped.
    Text,
    /// One JSON object a line, the exact form that `append --format jsonl` reads back:
    /// `offset`, `timestamp` (Unix nanoseconds as a decimal string, exact in any JSON
    /// reader), `time` (RFC 3339), `size`, and `payload` if it is UTF-8, else
    /// `payload_base64`.
    Jsonl,
    /// The same as `jsonl`.
    Json,
    /// The time, a space, and the payload in lowercase hex.
    Hex,
    /// The payload bytes exactly as stored, each followed by a newline (the inverse of
    /// `append` reading lines; loses timestamps and cannot carry payloads with newlines).
    Raw,
    /// The stream's own event framing (16-byte header with timestamp, size and CRC-32,
    /// then the payload), back to back: `append --format binary` reads it back exactly.
    Binary,
}

/// A user's `--template`: literal text with `{field}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Time,
    Timestamp,
    Offset,
    Size,
    Checksum,
    Payload,
    Text,
    Hex,
    Base64,
    Json,
}

/// The placeholders a template may hold, with what each prints, for help and errors.
pub const TEMPLATE_FIELDS: &str = "{time} RFC 3339 time, {timestamp} Unix nanoseconds, \
{offset} byte offset, {size} payload bytes, {checksum} CRC-32 in hex, {payload} the payload's \
bytes as stored, {text} the payload escaped as in --format text, {hex} and {base64} the payload \
encoded, {json} the payload as a JSON string (base64 string when not UTF-8); escapes \\n \\t \
\\r \\0 \\\\, and {{ }} for braces";

impl Template {
    /// Parses a template such as `'{time} {offset} {payload}\n'`.
    ///
    /// # Errors
    /// A message for clap naming the unknown placeholder or the unfinished escape.
    pub fn parse(input: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = input.chars().peekable();
        let bad = |why: String| format!("{why}; a template may use {TEMPLATE_FIELDS}");
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('\\') => '\\',
                        Some(other) => return Err(bad(format!("unknown escape \\{other}"))),
                        None => return Err(bad("a lone \\ at the end".into())),
                    };
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                }
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push(b'{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push(b'}');
                }
                '}' => return Err(bad("a lone } (write }} for a brace)".into())),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(bad(format!("{{{name} is not closed"))),
                        }
                    }
                    let piece = match name.as_str() {
                        "time" => Piece::Time,
                        "timestamp" => Piece::Timestamp,
                        "offset" => Piece::Offset,
                        "size" => Piece::Size,
                        "checksum" => Piece::Checksum,
                        "payload" => Piece::Payload,
                        "text" => Piece::Text,
                        "hex" => Piece::Hex,
                        "base64" => Piece::Base64,
                        "json" => Piece::Json,
                        other => return Err(bad(format!("unknown placeholder {{{other}}}"))),
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                c => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self(pieces))
    }

    /// Appends `event` to `out` through the template.
    fn render(&self, out: &mut Vec<u8>, zone: &Zone, event: &Event<'_>) {
        let payload = event.payload;
        for piece in &self.0 {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                Piece::Literal(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(())
                }
                Piece::Time => write!(out, "{}", zone.show(event.timestamp)),
                Piece::Timestamp => write!(out, "{}", event.timestamp),
                Piece::Offset => match event.position {
                    Some(position) => write!(out, "{position}"),
                    None => write!(out, "{}", event.offset),
                },
                Piece::Size => write!(out, "{}", payload.len()),
                Piece::Checksum => write!(out, "{:08x}", event.checksum),
                Piece::Payload => {
                    out.extend_from_slice(payload);
                    Ok(())
                }
                Piece::Text => {
                    encode::text(out, payload);
                    Ok(())
                }
                Piece::Hex => {
                    encode::hex(out, payload);
                    Ok(())
                }
                Piece::Base64 => {
                    encode::base64(out, payload);
                    Ok(())
                }
                Piece::Json => {
                    match std::str::from_utf8(payload) {
                        Ok(text) => encode::json_string(out, text),
                        Err(_) => {
                            out.push(b'"');
                            encode::base64(out, payload);
                            out.push(b'"');
                        }
                    }
                    Ok(())
                }
            };
        }
    }
}

/// How each event is printed: a format or a template.
#[derive(Debug, Clone)]
pub enum Layout {
    /// One of the fixed formats.
    Format(Format),
    /// A user's template.
    Template(Template),
}

impl Layout {
    /// The template if one is given, else the format.
    pub fn new(format: Format, template: Option<Template>) -> Self {
        template.map_or(Self::Format(format), Self::Template)
    }
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
    layout: Layout,
    zone: Zone,
    line: Vec<u8>,
    printed: u64,
}

impl Printer {
    /// A printer of events on standard output, times shown in `zone`.
    ///
    /// # Errors
    /// A usage failure for the binary format when standard output is a terminal.
    pub fn stdout(layout: Layout, zone: Zone) -> Result<Self, Failure> {
        if matches!(layout, Layout::Format(Format::Binary)) && io::stdout().is_terminal() {
            return Err(Failure::usage(
                "--format binary writes binary frames; pipe them (to `evstream append --format \
                 binary`) or redirect them to a file",
            ));
        }
        Ok(Self {
            out: BufWriter::with_capacity(64 << 10, io::stdout().lock()),
            layout,
            zone,
            line: Vec::with_capacity(256),
            printed: 0,
        })
    }

    /// Events printed so far.
    pub fn printed(&self) -> u64 {
        self.printed
    }

    /// Prints one event.
    ///
    /// # Errors
    /// [`Failure::ClosedOutput`] when the reader of standard output has gone.
    pub fn event(&mut self, event: &Event<'_>) -> Result<(), Failure> {
        self.line.clear();
        match &self.layout {
            Layout::Format(format) => format_event(&mut self.line, *format, &self.zone, event),
            Layout::Template(template) => template.render(&mut self.line, &self.zone, event),
        }
        self.out
            .write_all(&self.line)
            .map_err(|e| Failure::output(&e))?;
        self.printed += 1;
        Ok(())
    }

    /// Writes out everything buffered.
    ///
    /// # Errors
    /// As for [`event`](Self::event); [`Failure::ClosedOutput`] also when nothing was
    /// buffered but the reader of standard output has gone, so that a follow that waits
    /// (`evstream tail -f LOG | head -1`) ends then, not at the next event.
    pub fn flush(&mut self) -> Result<(), Failure> {
        self.out.flush().map_err(|e| Failure::output(&e))?;
        if reader_gone() {
            return Err(Failure::ClosedOutput);
        }
        Ok(())
    }
}

/// Whether standard output is a pipe or socket whose reader has gone: `poll` reports an
/// error or a hang-up on it at once (a terminal, a file or `/dev/null` never does).
fn reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdout = io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok_and(|ready| {
        ready > 0
            && fds
                .first()
                .is_some_and(|fd| fd.revents().intersects(PollFlags::ERR | PollFlags::HUP))
    })
}

/// Appends `event` to `line` in `format` (a line with its newline, or a binary frame).
pub fn format_event(line: &mut Vec<u8>, format: Format, zone: &Zone, event: &Event<'_>) {
    let payload = event.payload;
    // Writing to a Vec cannot fail.
    match format {
        Format::Text => {
            let _ = write!(line, "{} ", zone.show(event.timestamp));
            encode::text(line, payload);
        }
        Format::Hex => {
            let _ = write!(line, "{} ", zone.show(event.timestamp));
            encode::hex(line, payload);
        }
        Format::Raw => line.extend_from_slice(payload),
        Format::Binary => {
            // A stored payload always fits the format's size field, so this cannot fail.
            let _ = evstream::stdio::encode_event(line, event.timestamp, payload);
            return;
        }
        Format::Json | Format::Jsonl => {
            // A log's events carry their position ("SEGMENT:OFFSET") instead.
            let _ = match event.position {
                Some(position) => write!(line, "{{\"position\":\"{position}\",\"timestamp\""),
                None => write!(line, "{{\"offset\":{},\"timestamp\"", event.offset),
            };
            let _ = write!(
                line,
                ":\"{}\",\"time\":\"{}\",\"size\":{},",
                event.timestamp,
                zone.show(event.timestamp),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn render(template: &str, payload: &[u8]) -> String {
        let event = Event {
            offset: 24,
            position: None,
            timestamp: 1_714_564_800_000_000_001,
            checksum: 0xdead_beef,
            payload,
        };
        let mut out = Vec::new();
        Template::parse(template)
            .unwrap()
            .render(&mut out, &Zone::Utc, &event);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn templates_fill_every_placeholder() {
        assert_eq!(
            render("{time} {offset} {payload}\\n", b"hi"),
            "2024-05-01T12:00:00.000000001Z 24 hi\n"
        );
        assert_eq!(
            render(
                "{timestamp}|{size}|{checksum}|{hex}|{base64}|{json}|{text}",
                b"a\n"
            ),
            "1714564800000000001|2|deadbeef|610a|YQo=|\"a\\n\"|a\\n"
        );
        assert_eq!(render("{json}", &[0xff]), "\"/w==\"");
        assert_eq!(render("{{{size}}}\\t\\\\\\0", b""), "{0}\t\\\0");
    }

    #[test]
    fn bad_templates_name_the_problem() {
        for (bad, says) in [
            ("{nope}", "unknown placeholder {nope}"),
            ("{time", "is not closed"),
            ("x}", "lone }"),
            ("\\q", "unknown escape"),
            ("\\", "lone \\"),
        ] {
            let msg = Template::parse(bad).unwrap_err();
            assert!(msg.contains(says), "{bad:?}: {msg}");
            assert!(msg.contains("{payload}"), "{msg}");
        }
    }
}
