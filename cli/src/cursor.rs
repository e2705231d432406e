//! `evstream cursor list|show|set|delete LOG [NAME]`: a log's named cursors, where each
//! stands, how far behind it is, and moving or removing one.

use std::path::{Path, PathBuf};

use evstream::{LogReader, Position};

use crate::encode;
use crate::failure::Failure;
use crate::output;
use crate::time::{self, TimeSpec, Zone};
use crate::units;

/// Examples shown by `evstream cursor --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream cursor list app-log                     # every cursor, its position and lag
  evstream cursor show app-log billing --json
  evstream cursor set app-log billing --at -1h     # replay the last hour
  evstream cursor set app-log billing --at 2024-05-01T12:00:00Z
  evstream cursor set app-log billing 3:1024       # a position printed by cat --format jsonl
  evstream cursor set app-log billing end          # skip everything not yet read
  evstream cursor delete app-log billing           # retention no longer waits for it

A cursor is a consumer's position in a log: `cat LOG --cursor NAME` (and `ship`) start
there and move it past what they printed; retention keeps the segments a cursor has not
consumed. Lag is the events and bytes from the cursor to the end of the log, and the
time from the first event not yet read to the newest event. `set` checks that the
position is the start of an event of the log (or its end) before it commits; move a
cursor while no consumer of it runs, since a running one commits its own position.";

/// Arguments of `evstream cursor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

/// What to do with the cursors.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Every cursor of the log: its position and lag, or why it cannot be read
    List {
        /// The log directory
        log: PathBuf,
        /// One JSON object a cursor, in an array
        #[arg(long)]
        json: bool,
    },
    /// One cursor: its position, lag and the first event it has not read
    Show {
        /// The log directory
        log: PathBuf,
        /// The cursor's name
        #[arg(value_parser = cursor_name)]
        name: String,
        /// A JSON object
        #[arg(long)]
        json: bool,
    },
    /// Move a cursor (or make one): to SEGMENT:OFFSET, `start`, `end`, or --at TIME
    Set {
        /// The log directory
        log: PathBuf,
        /// The cursor's name (1 to 64 of A-Z a-z 0-9 _ - .)
        #[arg(value_parser = cursor_name)]
        name: String,
        /// SEGMENT:OFFSET (an event's position), `start` (the oldest event kept) or `end`
        /// (after the newest)
        #[arg(
            value_name = "POSITION",
            required_unless_present = "at",
            conflicts_with = "at"
        )]
        position: Option<Target>,
        /// The first event at or after TIME (as for `cat --since`), or the end if none is
        #[arg(long, value_name = "TIME", value_parser = time::parse_time, allow_hyphen_values = true)]
        at: Option<TimeSpec>,
    },
    /// Remove a cursor: retention no longer keeps segments for it
    Delete {
        /// The log directory
        log: PathBuf,
        /// The cursor's name
        #[arg(value_parser = cursor_name)]
        name: String,
    },
}

/// Parses a cursor's name: one the library would refuse is a usage error (exit 2) before
/// any log is opened.
pub fn cursor_name(input: &str) -> Result<String, String> {
    evstream::check_cursor_name(input)
        .map(|()| input.to_owned())
        .map_err(|e| e.to_string())
}

/// Where `set` puts a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The oldest event kept.
    Start,
    /// After the newest event.
    End,
    /// A position the user gave.
    At(Position),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        match input {
            "start" => Ok(Self::Start),
            "end" => Ok(Self::End),
            _ => input.parse().map(Self::At).map_err(|_| {
                format!(
                    "{input:?} is not a position: write SEGMENT:OFFSET (such as 3:1024, as \
                     `cat --format jsonl` prints it), start or end"
                )
            }),
        }
    }
}

/// Runs `evstream cursor`.
pub fn run(args: Args, zone: &Zone) -> Result<(), Failure> {
    match args.action {
        Action::List { log, json } => list(&log, json, zone),
        Action::Show { log, name, json } => show(&log, &name, json, zone),
        Action::Set {
            log,
            name,
            position,
            at,
        } => set(&log, &name, position, at, zone),
        Action::Delete { log, name } => delete(&log, &name),
    }
}

fn open(log: &Path) -> Result<LogReader, Failure> {
    LogReader::open(log).map_err(|e| Failure::stream(log, &e))
}

/// Where a cursor stands.
struct Standing {
    position: Position,
    events: u64,
    bytes: u64,
    /// The timestamp of the first event not yet read, if there is one.
    next: Option<i64>,
    /// From that event to the newest, in nanoseconds (0 when caught up).
    behind: u64,
}

/// Where the cursor at `position` stands in `reader`'s log, or why that cannot be told
/// (its segment was deleted, the log is damaged there).
fn standing(reader: &LogReader, position: Position) -> evstream::Result<Standing> {
    let lag = reader.lag(position)?;
    let next = reader
        .iter_from(position)?
        .try_next()?
        .map(|event| event.timestamp());
    let newest = reader.stat()?.last_timestamp;
    let behind = match (next, newest) {
        (Some(next), Some(newest)) => {
            u64::try_from(i128::from(newest) - i128::from(next)).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(Standing {
        position,
        events: lag.events,
        bytes: lag.bytes,
        next,
        behind,
    })
}

/// A cursor's state in words, for `list` and `show`.
fn describe(standing: &Result<Standing, String>, zone: &Zone) -> String {
    match standing {
        Ok(s) if s.events == 0 => format!("at {}, caught up", s.position),
        Ok(s) => format!(
            "at {}, {} ({}) behind, {} behind the newest (next unread {})",
            s.position,
            units::count(s.events, "event"),
            units::size(s.bytes),
            units::duration(u128::from(s.behind)),
            s.next
                .map_or_else(|| "none".to_owned(), |t| zone.show(t).to_string())
        ),
        Err(why) => format!("DAMAGED: {why}"),
    }
}

/// A cursor as a JSON object (timestamps as decimal strings, as everywhere).
fn json(out: &mut Vec<u8>, name: &str, standing: &Result<Standing, String>) {
    out.extend_from_slice(b"{\"name\":");
    encode::json_string(out, name);
    match standing {
        Ok(s) => {
            let next = s
                .next
                .map_or_else(|| "null".to_owned(), |t| format!("\"{t}\""));
            out.extend_from_slice(
                format!(
                    ",\"position\":\"{}\",\"lag_events\":{},\"lag_bytes\":{},\
                     \"lag_ns\":\"{}\",\"next_timestamp\":{next},\"damaged\":false}}",
                    s.position, s.events, s.bytes, s.behind
                )
                .as_bytes(),
            );
        }
        Err(why) => {
            out.extend_from_slice(b",\"damaged\":true,\"error\":");
            encode::json_string(out, why);
            out.push(b'}');
        }
    }
}

/// A cursor's name and its standing, or why it has none.
type Named = (String, Result<Standing, String>);

/// Every cursor's standing, damaged ones with their reason.
fn all(reader: &LogReader) -> Result<Vec<Named>, Failure> {
    let dir = reader.dir();
    let cursors = reader.cursors().map_err(|e| Failure::stream(dir, &e))?;
    Ok(cursors
        .into_iter()
        .map(|(name, position)| {
            let standing = position
                .and_then(|p| standing(reader, p))
                .map_err(|e| e.message());
            (name, standing)
        })
        .collect())
}

fn list(log: &Path, as_json: bool, zone: &Zone) -> Result<(), Failure> {
    let reader = open(log)?;
    let cursors = all(&reader)?;
    if as_json {
        let mut out = b"[".to_vec();
        for (k, (name, standing)) in cursors.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json(&mut out, name, standing);
        }
        out.push(b']');
        return output::line(&String::from_utf8_lossy(&out));
    }
    if cursors.is_empty() {
        return output::line(&format!("{}: no cursors", log.display()));
    }
    let width = cursors.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let lines = cursors
        .iter()
        .map(|(name, standing)| format!("{name:width$}  {}", describe(standing, zone)))
        .collect::<Vec<_>>();
    output::line(&lines.join("\n"))
}

fn show(log: &Path, name: &str, as_json: bool, zone: &Zone) -> Result<(), Failure> {
    let reader = open(log)?;
    let position = reader
        .cursor(name)
        .map_err(|e| Failure::stream(log, &e))?
        .ok_or_else(|| no_such_cursor(log, name))?;
    let standing = standing(&reader, position).map_err(|e| e.message());
    if as_json {
        let mut out = Vec::new();
        json(&mut out, name, &standing);
        return output::line(&String::from_utf8_lossy(&out));
    }
    match standing {
        Ok(_) => output::line(&format!("{name}: {}", describe(&standing, zone))),
        Err(why) => Err(Failure::data(format!(
            "{}: cursor {name:?} at {position} cannot be followed: {why}",
            log.display()
        ))),
    }
}

fn no_such_cursor(log: &Path, name: &str) -> Failure {
    Failure::data(format!(
        "{} has no cursor {name:?} (`evstream cursor list {}` shows those it has)",
        log.display(),
        log.display()
    ))
}

fn set(
    log: &Path,
    name: &str,
    target: Option<Target>,
    at: Option<TimeSpec>,
    zone: &Zone,
) -> Result<(), Failure> {
    let reader = open(log)?;
    let fail = |e: evstream::Error| Failure::stream(log, &e);
    let position = match (target, at) {
        (_, Some(spec)) => {
            let time = spec
                .resolve(zone, time::now())
                .map_err(|why| Failure::usage(format!("--at: {why}")))?;
            match reader.seek_time(time).map_err(fail)? {
                Some(position) => position,
                None => reader.end().map_err(fail)?,
            }
        }
        (Some(Target::Start), None) => reader.start().map_err(fail)?,
        (Some(Target::End) | None, None) => reader.end().map_err(fail)?,
        (Some(Target::At(position)), None) => {
            check_boundary(&reader, position)?;
            position
        }
    };
    reader.commit_cursor(name, position).map_err(fail)?;
    let standing = standing(&reader, position).map_err(|e| e.message());
    output::line(&format!(
        "cursor {name} of {}: {}",
        log.display(),
        describe(&standing, zone)
    ))
}

/// Checks that `position` starts an event of the log, or ends its segment's events: a
/// cursor anywhere else would read garbage as an event header.
fn check_boundary(reader: &LogReader, position: Position) -> Result<(), Failure> {
    let log = reader.dir();
    let fail = |e: evstream::Error| Failure::stream(log, &e);
    // Refuses a deleted segment and a place past the end, with what the log holds.
    reader.iter_from(position).map_err(fail)?;
    let Some(start) = Position::new(position.segment(), evstream::format::STREAM_HEADER_LEN) else {
        return Err(not_a_boundary(log, position));
    };
    if position == start {
        return Ok(());
    }
    let mut events = reader.iter_from(start).map_err(fail)?;
    while let Some(event) = events.try_next().map_err(fail)? {
        if event.position().segment() != position.segment() || event.position() > position {
            break;
        }
        if event.position() == position || event.next_position() == position {
            return Ok(());
        }
    }
    Err(not_a_boundary(log, position))
}

fn not_a_boundary(log: &Path, position: Position) -> Failure {
    Failure::usage(format!(
        "{}: no event starts at position {position}; use a position printed by \
         `evstream cat {} --format jsonl`, start, end or --at TIME",
        log.display(),
        log.display()
    ))
}

fn delete(log: &Path, name: &str) -> Result<(), Failure> {
    let reader = open(log)?;
    if reader
        .remove_cursor(name)
        .map_err(|e| Failure::stream(log, &e))?
    {
        output::line(&format!("deleted cursor {name} of {}", log.display()))
    } else {
        Err(no_such_cursor(log, name))
    }
}
