//! Retention: deleting whole old segments by total size, age and count, and saying so.

use std::path::Path;

use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::format::STREAM_HEADER_LEN;
use crate::log::config::{LogOptions, sync_dir};
use crate::log::cursor;
use crate::log::position::Position;
use crate::log::segment::{self, SegmentEntry, SegmentIndex, index_name, spare_name};

/// Why retention deleted a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetireReason {
    /// The log's segments took more than [`LogOptions::retain_size`] bytes.
    Size,
    /// The segment's newest event was older than [`LogOptions::retain_age`].
    Age,
    /// The log had more than [`LogOptions::retain_segments`] segments.
    Count,
}

/// A named cursor that had not consumed a segment when retention deleted it (only with
/// [`LogOptions::retain_past_cursors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CursorLoss {
    /// The cursor's name.
    pub name: String,
    /// The cursor's position when the segment was deleted.
    pub position: Position,
    /// Events of the deleted segment at or after the cursor: lost to it.
    pub events_lost: u64,
}

/// One segment deleted by retention: what, why, and who lost what.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retired {
    /// The segment's sequence number.
    pub segment: u64,
    /// Log-wide index of its first event.
    pub first_event: u64,
    /// Events it held.
    pub events: u64,
    /// Length of the deleted file.
    pub bytes: u64,
    /// Timestamp of its newest event, if it held any.
    pub last_timestamp: Option<i64>,
    /// The limit that made retention delete it.
    pub reason: RetireReason,
    /// Cursors that had not consumed all of it.
    pub cursors_behind: Vec<CursorLoss>,
}

/// A named cursor that keeps segments the retention limits would delete (see
/// [`LogStat::held`](crate::LogStat::held)): a consumer that lags, or one that was
/// forgotten, makes the log grow past its limits by this much.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionHold {
    /// The cursor's name.
    pub cursor: String,
    /// The cursor's position, or `None` if its file cannot be read (damaged): where it
    /// stands is then not known, and it holds every segment the limits would delete
    /// until it is committed again or removed.
    pub position: Option<Position>,
    /// Segments the limits would delete that this cursor keeps.
    pub segments: u64,
    /// Bytes those segments take on disk.
    pub bytes: u64,
}

/// What retention needs to know of a segment that has no index yet (retired and not
/// sealed), from the writer, which knows it without reading the segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) seq: u64,
    pub(crate) events: u64,
    pub(crate) last_timestamp: Option<i64>,
}

/// What retention needs to know about a segment.
struct Facts {
    entry: SegmentEntry,
    bytes: u64,
    events: u64,
    last_timestamp: Option<i64>,
}

fn facts(dir: &Path, entry: &SegmentEntry, bytes: u64, known: &[Known]) -> Result<Facts> {
    if let Some(known) = known.iter().find(|k| k.seq == entry.seq) {
        return Ok(Facts {
            entry: entry.clone(),
            bytes,
            events: known.events,
            last_timestamp: known.last_timestamp,
        });
    }
    let reader = entry.open()?;
    let (events, last_timestamp) = match SegmentIndex::load(dir, entry.seq, &reader) {
        Some((index, last)) => (index.event_count, last),
        // No index (a segment not sealed yet, another process's writer may be sealing
        // it): one pass over its events for both.
        None => {
            let mut events = 0;
            let mut last = None;
            for event in reader.iter() {
                last = Some(event?.timestamp());
                events += 1;
            }
            (events, last)
        }
    };
    Ok(Facts {
        entry: entry.clone(),
        bytes,
        events,
        last_timestamp,
    })
}

/// A segment the limits would delete, cursors aside.
struct Candidate {
    entry: SegmentEntry,
    bytes: u64,
    reason: RetireReason,
    /// Read when the age limit needed them.
    facts: Option<Facts>,
}

/// The segments of `segments` (oldest first) that the limits of `options` would delete
/// at `now` if no cursor held them, oldest first: never the newest one. A segment whose
/// age cannot be read is an error if `strict`, and ends the list otherwise.
fn candidates(
    dir: &Path,
    segments: &[SegmentEntry],
    options: &LogOptions,
    now: i64,
    strict: bool,
    known: &[Known],
) -> Result<Vec<Candidate>> {
    let Some((_newest, old)) = segments.split_last() else {
        return Ok(Vec::new());
    };
    if !options.has_limits() {
        return Ok(Vec::new());
    }
    let len = |s: &SegmentEntry| std::fs::metadata(&s.path).map_or(0, |m| m.len());
    let mut count = segments.len() as u64;
    let mut total: u64 = segments.iter().map(len).sum();
    let age_limit = options
        .retain_age
        .map(|age| now.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)));
    let mut found = Vec::new();
    for entry in old {
        let bytes = len(entry);
        let mut facts_read = None;
        let mut aged = |limit: i64| -> Result<bool> {
            let facts = match facts(dir, entry, bytes, known) {
                Ok(facts) => facts,
                Err(e) if strict => return Err(e),
                Err(_) => return Ok(false),
            };
            Ok(facts_read
                .insert(facts)
                .last_timestamp
                .is_none_or(|last| last < limit))
        };
        let reason = if options.retain_segments.is_some_and(|n| count > n) {
            RetireReason::Count
        } else if options.retain_size.is_some_and(|n| total > n) {
            RetireReason::Size
        } else if let Some(limit) = age_limit
            && aged(limit)?
        {
            RetireReason::Age
        } else {
            break;
        };
        count -= 1;
        total = total.saturating_sub(bytes);
        found.push(Candidate {
            entry: entry.clone(),
            bytes,
            reason,
            facts: facts_read,
        });
    }
    Ok(found)
}

/// Applies the retention limits of `options` to the log in `dir`, deleting whole
/// segments oldest first and never the newest one; `now` is the writer's clock in Unix
/// nanoseconds; `known` tells what it needs of segments without an index yet. Returns
/// what it deleted.
///
/// A named cursor holds the segment it is in and every later one (unless
/// [`LogOptions::retain_past_cursors`]); a cursor whose file cannot be read holds them
/// all, since where it stands is not known, and is reported as an error.
///
/// Each deletion removes the segment file, then its index, then syncs the directory; a
/// process killed in between leaves at most an index without a segment, which the next
/// run removes, and a log that opens.
///
/// With `spare` given and empty, the first segment it retires that is the log's segment
/// size and that no reader has open is not removed but renamed to its spare name (see
/// [`take_spare`]), and `spare` set to that path, for the preparing thread to recycle.
///
/// Each segment file it removes is opened first and pushed to `removed_open`: removed
/// while open, a file loses its name at once and its pages only when the last
/// descriptor closes, which for a segment in memory takes milliseconds; the caller
/// drops `removed_open` once nothing waits for the run.
///
/// # Errors
/// [`Error::BadCursor`] when the limits would delete a segment and a damaged cursor
/// stops it (nothing is deleted); [`Error::Io`] and others for a segment that cannot be
/// read or deleted.
pub(crate) fn apply(
    dir: &Path,
    options: &LogOptions,
    now: i64,
    known: &[Known],
    mut spare: Option<&mut Option<std::path::PathBuf>>,
    removed_open: &mut Vec<std::fs::File>,
) -> Result<Vec<Retired>> {
    let segments = segment::list(dir)?;
    remove_orphan_indexes(dir, segments.first().map(|s| s.seq))?;
    let candidates = candidates(dir, &segments, options, now, true, known)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let cursors = cursor::holding(dir)?;
    if !options.retain_past_cursors
        && let Some((name, _)) = cursors.iter().find(|(_, p)| p.is_none())
    {
        return Err(Error::BadCursor {
            name: name.clone(),
            reason: "the cursor file is damaged, so retention deletes nothing it may need: \
                     commit the cursor again or remove it",
        });
    }
    // Only known positions from here: with `retain_past_cursors` the limits win over
    // every cursor, a damaged one included.
    let cursors: Vec<(String, Position)> = cursors
        .into_iter()
        .filter_map(|(name, p)| p.map(|p| (name, p)))
        .collect();
    let mut retired = Vec::new();
    for candidate in candidates {
        let entry = &candidate.entry;
        // A cursor in this segment or before holds it, even at its very end: once the
        // segment is gone its position could not be told from a lost one.
        let held = cursors.iter().any(|(_, p)| p.segment() <= entry.seq);
        if held && !options.retain_past_cursors {
            break;
        }
        let facts = match candidate.facts {
            Some(facts) => facts,
            None => facts(dir, entry, candidate.bytes, known)?,
        };
        let behind: Vec<CursorLoss> = cursors
            .iter()
            .filter(|(_, p)| p.segment() <= entry.seq)
            .map(|(name, p)| CursorLoss {
                name: name.clone(),
                position: *p,
                events_lost: if p.segment() == entry.seq {
                    events_from(&facts, p.offset())
                } else {
                    facts.events
                },
            })
            .filter(|loss| loss.events_lost > 0)
            .collect();
        let kept = match spare.as_deref_mut() {
            Some(slot @ None) if candidate.bytes == options.segment_size => {
                take_spare(dir, entry).map(|path| *slot = Some(path))
            }
            _ => None,
        };
        if kept.is_none() {
            // Kept open across its deletion, so that its pages are freed when the
            // caller drops it, not in the deletion (see `apply`).
            if let Ok(file) = open_to_hold(&entry.path) {
                removed_open.push(file);
            }
            std::fs::remove_file(&entry.path).map_err(|e| Error::io("remove", &entry.path, e))?;
        }
        failpoint!("retain:after_remove");
        let index = dir.join(index_name(entry.seq));
        match std::fs::remove_file(&index) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &index, e)),
        }
        sync_dir(dir)?;
        retired.push(Retired {
            segment: entry.seq,
            first_event: entry.base,
            events: facts.events,
            bytes: facts.bytes,
            last_timestamp: facts.last_timestamp,
            reason: candidate.reason,
            cursors_behind: behind,
        });
    }
    Ok(retired)
}

/// Opens the segment file at `path` to read, not following a symbolic link, only to
/// hold it across its removal.
fn open_to_hold(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Takes segment `entry` out of the log for recycling, in place of its deletion
/// (`docs/FORMAT.md`, "Recycling retired segments", step 1): with its reader-presence
/// lock held alone (so no reader has it open, and one that opens it meanwhile finds its
/// name gone once it gets its lock), renames it to its spare name without replacing.
/// Returns the spare's path, or `None` (nothing changed) if a reader has it open or it
/// cannot be renamed: the caller deletes it then.
fn take_spare(dir: &Path, entry: &SegmentEntry) -> Option<std::path::PathBuf> {
    use crate::sys::{Presence, set_presence};
    let (file, _) = crate::stream::open::open_regular(&entry.path, true).ok()?;
    if !set_presence(&file, Presence::Rewriter).ok()? {
        return None;
    }
    let spare = dir.join(spare_name(entry.seq));
    let renamed = crate::sys::rename_noreplace(&entry.path, &spare).is_ok();
    failpoint!("retain:after_spare_rename");
    // Released explicitly: a child forked meanwhile may share the description.
    let _ = set_presence(&file, Presence::Unlock);
    renamed.then_some(spare)
}

/// The cursors that keep segments the limits of `options` would delete at `now`, most
/// segments first; a damaged cursor is listed also when it keeps nothing. Reads only;
/// empty with [`LogOptions::retain_past_cursors`], where no cursor holds anything.
pub(crate) fn holds(
    dir: &Path,
    segments: &[SegmentEntry],
    options: &LogOptions,
    now: i64,
) -> Result<Vec<RetentionHold>> {
    if options.retain_past_cursors || !options.has_limits() {
        return Ok(Vec::new());
    }
    let cursors = cursor::holding(dir)?;
    if cursors.is_empty() {
        return Ok(Vec::new());
    }
    // Read as far as it can be: a damaged segment ends what `stat` counts, rather than
    // failing it.
    let candidates = candidates(dir, segments, options, now, false, &[])?;
    let mut holds: Vec<RetentionHold> = cursors
        .into_iter()
        .map(|(name, position)| {
            let kept = candidates
                .iter()
                .filter(|c| position.is_none_or(|p| p.segment() <= c.entry.seq));
            let (segments, bytes) =
                kept.fold((0u64, 0u64), |(n, b), c| (n + 1, b.saturating_add(c.bytes)));
            RetentionHold {
                cursor: name,
                position,
                segments,
                bytes,
            }
        })
        .filter(|hold| hold.segments > 0 || hold.position.is_none())
        .collect();
    holds.sort_by(|a, b| {
        b.segments
            .cmp(&a.segments)
            .then_with(|| a.cursor.cmp(&b.cursor))
    });
    Ok(holds)
}

/// Events of a segment at or after byte `offset` (a cursor's position in it).
fn events_from(facts: &Facts, offset: u64) -> u64 {
    if offset <= STREAM_HEADER_LEN {
        return facts.events;
    }
    let Ok(reader) = facts.entry.open() else {
        return facts.events;
    };
    reader
        .iter_unverified_from(offset.min(reader.write_offset()))
        .map_or(facts.events, |events| events.count() as u64)
}

/// Removes index files of segments before `first` (left by a retention killed between
/// its two deletions), or every index if the log has no segment.
fn remove_orphan_indexes(dir: &Path, first: Option<u64>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".idx"))
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if first.is_none_or(|first| seq < first) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
