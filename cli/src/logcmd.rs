//! The log side of `stat` and `verify`: what a log directory holds, and a full check.

use std::path::Path;

use evstream::{LogDamage, LogReader, RetentionHold};

use crate::encode;
use crate::failure::Failure;
use crate::output;
use crate::time::Zone;
use crate::units;

/// `stat DIR`: segments, events, disk use, time span, writer, and every cursor's lag.
pub fn stat(path: &Path, json: bool, zone: &Zone) -> Result<(), Failure> {
    let fail = |e: evstream::Error| Failure::stream(path, &e);
    let reader = LogReader::open(path).map_err(fail)?;
    let stat = reader.stat().map_err(fail)?;
    let options = reader.options();
    let mut cursors = Vec::new();
    for (name, position) in reader.cursors().map_err(fail)? {
        let lag = position
            .map_err(|e| e.message())
            .and_then(|p| reader.lag(p).map(|lag| (p, lag)).map_err(|e| e.message()));
        cursors.push((name, lag));
    }
    let when = |t: Option<i64>| t.map_or_else(|| "none".to_owned(), |t| zone.show(t).to_string());
    if json {
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"path\":");
        encode::json_string(&mut out, &path.display().to_string());
        // Timestamps and nanoseconds as decimal strings (exact in every JSON reader),
        // times beside them in RFC 3339 as the stream's `stat --json` writes them.
        let time = |t: Option<i64>| t.map_or("null".to_owned(), |t| format!("\"{t}\""));
        let shown =
            |t: Option<i64>| t.map_or("null".to_owned(), |t| format!("\"{}\"", zone.show(t)));
        let nanos = |d: Option<std::time::Duration>| {
            d.map_or("null".to_owned(), |d| format!("\"{}\"", d.as_nanos()))
        };
        let number = |n: Option<u64>| n.map_or("null".to_owned(), |n| n.to_string());
        out.extend_from_slice(
            format!(
                ",\"log\":true,\"segments\":{},\"first_segment\":{},\"last_segment\":{},\
                 \"segment_size\":{},\"roll_ns\":{},\"retain_size\":{},\"retain_age_ns\":{},\
                 \"retain_segments\":{},\"retain_past_cursors\":{},\
                 \"disk_bytes\":{},\"events\":{},\"first_event\":{},\
                 \"first_timestamp\":{},\"first_time\":{},\"last_timestamp\":{},\
                 \"last_time\":{},\"start\":\"{}\",\"end\":\"{}\",\
                 \"writer_active\":{},\"spare_bytes\":{},\"held\":{},\"cursors\":[",
                stat.segments,
                stat.first_segment,
                stat.last_segment,
                options.get_segment_size(),
                nanos(options.get_roll_interval()),
                number(options.get_retain_size()),
                nanos(options.get_retain_age()),
                number(options.get_retain_segments()),
                options.get_retain_past_cursors(),
                stat.disk_bytes,
                stat.events,
                stat.first_event,
                time(stat.first_timestamp),
                shown(stat.first_timestamp),
                time(stat.last_timestamp),
                shown(stat.last_timestamp),
                stat.start,
                stat.end,
                stat.writer_active,
                stat.spare_bytes,
                held_json(&stat.held)
            )
            .as_bytes(),
        );
        for (k, (name, lag)) in cursors.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"name\":");
            encode::json_string(&mut out, name);
            match lag {
                Ok((position, lag)) => out.extend_from_slice(
                    format!(
                        ",\"position\":\"{position}\",\"lag_events\":{},\"lag_bytes\":{}}}",
                        lag.events, lag.bytes
                    )
                    .as_bytes(),
                ),
                Err(why) => {
                    out.extend_from_slice(b",\"error\":");
                    encode::json_string(&mut out, why);
                    out.push(b'}');
                }
            }
        }
        out.extend_from_slice(b"]}");
        return output::line(&String::from_utf8_lossy(&out));
    }
    let span = match (stat.first_timestamp, stat.last_timestamp) {
        (Some(first), Some(last)) => {
            units::duration(u128::try_from(i128::from(last) - i128::from(first)).unwrap_or(0))
        }
        _ => "none".to_owned(),
    };
    let retention = [
        options
            .get_retain_size()
            .map(|b| format!("size {}", units::size(b))),
        options
            .get_retain_age()
            .map(|d| format!("age {}", units::duration(d.as_nanos()))),
        options
            .get_retain_segments()
            .map(|n| units::count(n, "segment")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let mut lines = vec![
        format!("path:          {} (log)", path.display()),
        format!(
            "segments:      {} ({} to {}), {} each",
            stat.segments,
            stat.first_segment,
            stat.last_segment,
            units::size_exact(options.get_segment_size())
        ),
        format!(
            "disk:          {}{}",
            units::size_exact(stat.disk_bytes),
            if stat.spare_bytes > 0 {
                format!(
                    ", of which {} is the spare (next) segment",
                    units::size(stat.spare_bytes)
                )
            } else {
                String::new()
            }
        ),
        format!(
            "roll:          {}",
            options.get_roll_interval().map_or_else(
                || "when full".to_owned(),
                |d| format!(
                    "when full, and every {} (UTC)",
                    units::duration(d.as_nanos())
                )
            )
        ),
        format!(
            "retention:     {}",
            if retention.is_empty() {
                "none (keeps everything)".to_owned()
            } else if options.get_retain_past_cursors() {
                format!("{}, also past cursors", retention.join(", "))
            } else {
                retention.join(", ")
            }
        ),
        format!(
            "events:        {} (log-wide index of the first: {})",
            stat.events, stat.first_event
        ),
        format!("positions:     {} to {}", stat.start, stat.end),
        format!("first event:   {}", when(stat.first_timestamp)),
        format!("last event:    {}", when(stat.last_timestamp)),
        format!("span:          {span}"),
        crate::stat::writer_line(stat.writer_active),
    ];
    for (name, lag) in &cursors {
        lines.push(match lag {
            Ok((position, lag)) => format!(
                "cursor:        {name} at {position}, {} events ({}) behind",
                lag.events,
                units::size(lag.bytes)
            ),
            Err(why) => format!("cursor:        {name}: {why}"),
        });
    }
    lines.extend(stat.held.iter().map(held_line));
    output::line(&lines.join("\n"))
}

/// The `held:` line of a cursor that keeps segments the retention limits would delete.
fn held_line(hold: &RetentionHold) -> String {
    let segments = if hold.segments == 1 {
        "segment"
    } else {
        "segments"
    };
    match hold.position {
        Some(position) => format!(
            "held:          cursor {} at {position} keeps {} {segments} ({}) that retention would delete",
            hold.cursor,
            hold.segments,
            units::size(hold.bytes)
        ),
        None => format!(
            "held:          cursor {} is damaged and keeps every segment retention would \
             delete ({} {segments}, {}): commit it again or remove it",
            hold.cursor,
            hold.segments,
            units::size(hold.bytes)
        ),
    }
}

/// The `held` array of `stat --json`.
fn held_json(holds: &[RetentionHold]) -> String {
    let mut out = Vec::new();
    out.push(b'[');
    for (k, hold) in holds.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"cursor\":");
        encode::json_string(&mut out, &hold.cursor);
        let position = hold
            .position
            .map_or_else(|| "null".to_owned(), |p| format!("\"{p}\""));
        out.extend_from_slice(
            format!(
                ",\"position\":{position},\"damaged\":{},\"segments\":{},\"bytes\":{}}}",
                hold.position.is_none(),
                hold.segments,
                hold.bytes
            )
            .as_bytes(),
        );
    }
    out.push(b']');
    String::from_utf8_lossy(&out).into_owned()
}

/// `verify DIR`: every event of every segment, and that the segments follow each other.
pub fn verify(path: &Path) -> Result<(), Failure> {
    let fail = |e: evstream::Error| Failure::stream(path, &e);
    let reader = LogReader::open(path).map_err(fail)?;
    let verification = reader.verify().map_err(fail)?;
    let good = verification.events;
    let events = if good == 1 { "event" } else { "events" };
    if let Some((position, damage)) = &verification.damage {
        let what = match damage {
            LogDamage::Event(reason) => format!("corrupt at position {position}: {reason}"),
            LogDamage::CountMismatch => {
                format!(
                    "damaged: segment {}'s header count does not match its events",
                    position.segment()
                )
            }
            LogDamage::Discontinuity { named, expected } => format!(
                "damaged: segment {} says it starts at event {named}, the segments before end at {expected}",
                position.segment()
            ),
            LogDamage::MissingSegment => {
                format!(
                    "damaged: a segment is missing before segment {}",
                    position.segment()
                )
            }
            _ => format!("damaged at position {position}"),
        };
        return Err(Failure::data(format!(
            "{} is {what} ({good} good {events} before it)",
            path.display()
        )));
    }
    output::line(&format!(
        "ok: {} (log): {good} {events} in {}, every checksum valid",
        path.display(),
        units::count(verification.segments, "segment")
    ))
}
