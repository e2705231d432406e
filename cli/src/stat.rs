//! `evstream stat FILE [--json]`: what a stream holds and how full it is.

use std::path::PathBuf;

use evstream::StreamReader;
use evstream::format::STREAM_HEADER_LEN;

use crate::encode;
use crate::failure::Failure;
use crate::output;
use crate::time::Zone;
use crate::units;

/// Examples shown by `evstream stat --help`.
pub const EXAMPLES: &str = "\
Examples:
  evstream stat sensors.evs
  evstream stat sensors.evs --json | jq .fill_percent

The first and last event timestamps are read from the event headers without checking
checksums (run `evstream verify` for that). stat only reads: it works while a writer
appends, and never changes the file.";

/// Arguments of `evstream stat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream file, or log directory
    file: PathBuf,
    /// Print one JSON object instead of text (sizes in bytes, times as Unix nanoseconds in
    /// a decimal string and as RFC 3339)
    #[arg(long)]
    json: bool,
}

/// What `stat` reports.
struct Stat {
    path: String,
    capacity: u64,
    write_offset: u64,
    event_count: u64,
    start: i64,
    first: Option<i64>,
    last: Option<i64>,
    /// Where walking the event headers stopped early, if it did.
    damage_at: Option<u64>,
    writer_active: bool,
    /// End of the event area (where the trailer starts).
    events_end: u64,
    durable_offset: u64,
    generation: u64,
    sealed: bool,
}

impl Stat {
    fn used(&self) -> u64 {
        self.write_offset
    }

    fn free(&self) -> u64 {
        self.events_end.saturating_sub(self.write_offset)
    }

    /// How much of the space events can use is used: the header and the events, of
    /// everything before the trailer (which takes the file's last 1 KiB or more, and
    /// never holds events); a stream that takes no more events is (nearly) 100% full.
    fn fill_percent(&self) -> f64 {
        if self.events_end == 0 {
            0.0
        } else {
            self.write_offset.min(self.events_end) as f64 * 100.0 / self.events_end as f64
        }
    }
}

/// Reads the header and walks the event headers, then prints.
pub fn run(args: Args, zone: &Zone) -> Result<(), Failure> {
    let path = args.file.as_path();
    if crate::archive::is_archive(path) {
        return crate::archive::stat(path, args.json, zone);
    }
    if path.is_dir() {
        return crate::logcmd::stat(path, args.json, zone);
    }
    let reader = StreamReader::open(path).map_err(|e| Failure::stream(path, &e))?;
    let mut stat = Stat {
        path: path.display().to_string(),
        capacity: reader.capacity(),
        write_offset: reader.write_offset(),
        event_count: reader.header_event_count(),
        start: reader.start_timestamp(),
        first: None,
        last: None,
        damage_at: None,
        writer_active: reader
            .writer_active()
            .map_err(|e| Failure::stream(path, &e))?,
        events_end: reader.events_end(),
        durable_offset: reader.durable_offset(),
        generation: reader.generation(),
        sealed: reader.is_sealed(),
    };
    for item in reader.iter_unverified() {
        match item {
            Ok(event) => {
                stat.first.get_or_insert(event.timestamp());
                stat.last = Some(event.timestamp());
            }
            Err(evstream::Error::Corrupt { offset, .. }) => stat.damage_at = Some(offset),
            Err(_) => {}
        }
    }
    let text = if args.json {
        json(&stat, zone)
    } else {
        text(&stat, zone)
    };
    output::line(&text)
}

/// A timestamp for the text report.
fn when(timestamp: Option<i64>, zone: &Zone) -> String {
    timestamp.map_or_else(|| "none".to_owned(), |t| zone.show(t).to_string())
}

fn text(stat: &Stat, zone: &Zone) -> String {
    let span = match (stat.first, stat.last) {
        (Some(first), Some(last)) => {
            units::duration(u128::try_from(i128::from(last) - i128::from(first)).unwrap_or(0))
        }
        _ => "none".to_owned(),
    };
    let mut lines = vec![
        format!("path:          {}", stat.path),
        format!("capacity:      {}", units::size_exact(stat.capacity)),
        format!("write offset:  {}", stat.write_offset),
        format!("used:          {}", units::size_exact(stat.used())),
        format!("free:          {}", units::size_exact(stat.free())),
        format!("fill:          {:.2}%", stat.fill_percent()),
        format!("events:        {}", stat.event_count),
        format!(
            "durable to:    {} ({} not yet flushed)",
            stat.durable_offset,
            units::size_exact(stat.write_offset.saturating_sub(stat.durable_offset))
        ),
        format!("generation:    {}", stat.generation),
        format!(
            "sealed:        {}",
            if stat.sealed {
                "yes (takes no more events)"
            } else {
                "no"
            }
        ),
        format!("created:       {}", zone.show(stat.start)),
        format!("first event:   {}", when(stat.first, zone)),
        format!("last event:    {}", when(stat.last, zone)),
        format!("span:          {span}"),
        writer_line(stat.writer_active),
    ];
    if let Some(offset) = stat.damage_at {
        lines.push(format!(
            "damage:        the event headers end early at byte offset {offset}; \
             run `evstream verify`"
        ));
    }
    lines.join("\n")
}

fn json(stat: &Stat, zone: &Zone) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"path\":");
    encode::json_string(&mut out, &stat.path);
    let time = |ns: Option<i64>| match ns {
        // Timestamps as decimal strings: exact in every JSON reader (a 19-digit number is
        // not, in jq 1.6 or JavaScript).
        Some(ns) => (format!("\"{ns}\""), format!("\"{}\"", zone.show(ns))),
        None => ("null".to_owned(), "null".to_owned()),
    };
    let (start, start_time) = time(Some(stat.start));
    let (first, first_time) = time(stat.first);
    let (last, last_time) = time(stat.last);
    let damage = stat.damage_at.map_or("null".to_owned(), |o| o.to_string());
    let rest = format!(
        ",\"capacity\":{},\"write_offset\":{},\"used_bytes\":{},\"free_bytes\":{},\
         \"fill_percent\":{:.4},\"event_count\":{},\"events_bytes\":{},\
         \"start_timestamp\":{start},\"start_time\":{start_time},\
         \"first_timestamp\":{first},\"first_time\":{first_time},\
         \"last_timestamp\":{last},\"last_time\":{last_time},\
         \"writer_active\":{},\"damage_offset\":{damage},\
         \"durable_offset\":{},\"generation\":{},\"sealed\":{}}}",
        stat.capacity,
        stat.write_offset,
        stat.used(),
        stat.free(),
        stat.fill_percent(),
        stat.event_count,
        stat.write_offset.saturating_sub(STREAM_HEADER_LEN),
        stat.writer_active,
        stat.durable_offset,
        stat.generation,
        stat.sealed,
    );
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

/// The report's `writer:` line, for a stream or a log.
pub fn writer_line(active: bool) -> String {
    format!(
        "writer:        {}",
        if active {
            "active (a process holds the writer lock)"
        } else {
            "none"
        }
    )
}
