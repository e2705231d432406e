//! Hostile log directories: a real log (several small segments, their indexes, a prepared
//! next segment, cursors) damaged at random, then read every way there is and opened by a
//! writer. The promise: whatever the directory holds, every read operation and a writer's
//! open give a value or a typed [`evstream::Error`], never a panic; a refused writer open
//! changes no file; readers never change any file.
//!
//! Every call runs on its own (`catch_unwind`), so that a failing case names each call
//! that panicked and where, and proptest shrinks it to the smallest damage. The defects
//! these tests found (overflows on huge names, counts and sequence numbers; refused
//! writer opens that had sealed a segment first; errors of the wrong kind) each have a
//! test of their own at the end.
//!
//! `EVSTREAM_HOSTILE_CASES` sets the cases per property (default 64).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod reliability_support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use evstream::format::{
    EVENT_COUNT_AT, EVENT_HEADER_LEN, EventHeader, START_TIMESTAMP_AT, TRAILER_RECORD_LEN,
    TRAILER_SLOT_LEN, Trailer, WRITE_OFFSET_AT, decode_trailer, trailer_offset,
};
use evstream::{Error, LogIter, LogOptions, LogReader, LogWriter, Position, StreamWriter};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use reliability_support::env_count;
use zerocopy::little_endian::{I64, U32};
use zerocopy::{FromBytes, IntoBytes};

/// The template log's segment size: the smallest there is, so that it has several.
const SEGMENT_SIZE: u64 = 4096;
/// Events in the template log.
const EVENTS: u64 = 300;
/// The cursors the template log has (`fresh` and `a.b-c_9` were never committed).
const CURSOR_NAMES: [&str; 4] = ["billing", "audit", "fresh", "a.b-c_9"];
/// Bytes of an index file's header, before its entries (docs/FORMAT.md, "Segment index").
const INDEX_HEADER_LEN: usize = 56;
/// Where an index header keeps its number of entries.
const INDEX_ENTRIES_AT: usize = 48;
/// The 8-byte words of an index header after its magic.
const INDEX_HEADER_WORDS: usize = 6;
/// The index header word that holds the segment's event count.
const INDEX_EVENT_COUNT_WORD: u8 = 2;
/// Bytes of one index entry.
const INDEX_ENTRY_LEN: usize = 24;
/// Bytes of an index file's trailing checksum.
const CRC_LEN: usize = 4;
/// Bytes of a cursor file (docs/FORMAT.md, "Cursors").
const CURSOR_LEN: usize = 24;
/// Offset of a cursor's checksum, which covers the bytes before it.
const CURSOR_CRC_AT: usize = 16;
/// Events read from each position but the start (enough to cross into the next segment).
const PARTIAL: usize = 80;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: env_count("EVSTREAM_HOSTILE_CASES", 64) as u32,
        max_shrink_iters: 512,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The template log.
// ---------------------------------------------------------------------------------------

/// Payload `i`: empty, all zeros, or a pattern, of up to 89 bytes.
fn payload(i: u64) -> Vec<u8> {
    match i % 6 {
        0 => Vec::new(),
        1 => vec![0; (i % 50) as usize + 1],
        _ => (0..i * 37 % 90).map(|k| (i * 31 + k) as u8).collect(),
    }
}

/// Timestamp of event `i`: from -500 on, each twice.
fn timestamp(i: u64) -> i64 {
    (i / 2) as i64 * 10 - 500
}

/// A log written once per test, copied for every case.
struct Template {
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// The position of every event.
    positions: Vec<Position>,
    /// Positions every case reads from and measures the lag of.
    probe_positions: Vec<Position>,
    /// Timestamps every case seeks to.
    probe_timestamps: Vec<i64>,
    /// Segments in the template.
    segments: usize,
}

fn template() -> Template {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut writer =
        LogWriter::create(&log, LogOptions::default().segment_size(SEGMENT_SIZE)).unwrap();
    let positions: Vec<Position> = (0..EVENTS)
        .map(|i| writer.append(timestamp(i), &payload(i)).unwrap())
        .collect();
    writer.flush().unwrap();
    let end = writer.end();
    let reader = LogReader::open(&log).unwrap();
    reader.commit_cursor("billing", positions[41]).unwrap();
    reader.commit_cursor("audit", end).unwrap();
    drop(writer);
    let names = names(&log);
    let segments = names.iter().filter(|n| is_segment_name(n)).count();
    let indexes = names.iter().filter(|n| is_index_name(n)).count();
    assert!(segments >= 4, "{names:?}");
    assert_eq!(indexes, segments - 1, "{names:?}");
    // The newest segment is a quarter full: the next one is prepared.
    assert!(names.iter().any(|n| n.starts_with(".next-")), "{names:?}");
    let last = *positions.last().unwrap();
    let mut probe_positions = vec![
        positions[0],
        positions[41],
        Position::new(positions[41].segment(), positions[41].offset() + 1).unwrap(),
        last,
        end,
        Position::new(0, 0).unwrap(),
        Position::new(last.segment() + 3, 24).unwrap(),
        Position::from_u64(u64::MAX),
    ];
    // The first and the middle event of every segment.
    for seq in 0..=last.segment() {
        let of_segment: Vec<Position> = positions
            .iter()
            .copied()
            .filter(|p| p.segment() == seq)
            .collect();
        probe_positions.extend(of_segment.first());
        probe_positions.extend(of_segment.get(of_segment.len() / 2));
    }
    let (first, last) = (timestamp(0), timestamp(EVENTS - 1));
    let probe_timestamps = vec![
        i64::MIN,
        first - 1,
        first,
        (first + last) / 2,
        last,
        last + 1,
        i64::MAX,
    ];
    Template {
        _dir: dir,
        log,
        positions,
        probe_positions,
        probe_timestamps,
        segments,
    }
}

/// The names in a directory, sorted (none if it cannot be listed).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// `SSSSSSSS-BBBBBBBBBBBBBBBBBBBB.evs`, whatever its value.
fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".evs")
        .and_then(|stem| stem.split_once('-'))
        .is_some_and(|(s, b)| s.len() == 8 && b.len() == 20 && digits(s) && digits(b))
}

/// `SSSSSSSS.idx`.
fn is_index_name(name: &str) -> bool {
    name.strip_suffix(".idx")
        .is_some_and(|s| s.len() == 8 && digits(s))
}

/// Copies a directory tree of files and directories.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Damage.
// ---------------------------------------------------------------------------------------

/// A file of the log, picked when the damage is applied (`which` counts from the newest).
#[derive(Debug, Clone, Copy)]
enum Target {
    Segment(u8),
    Index(u8),
    Cursor(u8),
    Log,
    Lock,
    /// The prepared `.next-*` segment (or where it would be).
    Next,
    /// The `cursors` directory itself.
    CursorsDir,
}

/// Where a symlink points.
#[derive(Debug, Clone, Copy)]
enum Link {
    DevZero,
    /// A file outside the log.
    Outside,
    /// A path outside the log where nothing is.
    Missing,
    /// Another segment of the log (relative).
    Sibling(u8),
    /// Itself (`ELOOP`).
    Loop,
}

/// What happens to one file.
#[derive(Debug, Clone)]
enum Edit {
    Truncate {
        keep: usize,
    },
    Extend {
        by: u16,
        fill: u8,
    },
    Overwrite {
        at: usize,
        bytes: Vec<u8>,
    },
    Zeros {
        at: usize,
        len: u16,
    },
    FlipBit {
        at: usize,
        bit: u8,
    },
    /// Bytes written `back` bytes before the end (where a stream's trailer is).
    FromEnd {
        back: u16,
        bytes: Vec<u8>,
    },
    Delete,
    Empty,
    Directory,
    Symlink(Link),
    Socket,
}

/// A new segment name's base: relative to the old one, or set.
#[derive(Debug, Clone, Copy)]
enum Base {
    Delta(i16),
    Set(u64),
}

/// A name for a file that was not there.
#[derive(Debug, Clone)]
enum JunkName {
    Segment {
        seq: u32,
        base: u64,
    },
    Index {
        seq: u32,
    },
    Next {
        seq: u32,
    },
    /// One of [`NEAR_NAMES`].
    Near(u8),
}

/// Names that are almost one of the log's, or its temporaries.
const NEAR_NAMES: [&str; 11] = [
    "..next-00000009.evs",
    ".idx-00000001.tmp",
    ".LOG.4242.tmp",
    "cursors/.billing.1.2.tmp",
    "cursors/fresh",
    "00000001-0000000000000000001.evs",
    "00000001-00000000000000000000.evs.tmp",
    "0000001a-00000000000000000000.evs",
    "00000001.idx.tmp",
    "lock",
    "LOG~",
];

/// What a new file holds.
#[derive(Debug, Clone)]
enum Content {
    Empty,
    Bytes(Vec<u8>),
    Zeros(u16),
    /// A copy of a segment.
    CopyOf(u8),
    /// A stream of its own (of the segment size, or twice it) with these events.
    Stream {
        double: bool,
        events: Vec<i64>,
        flush: bool,
        seal: bool,
    },
}

/// One damage to a log directory. `which` picks a segment (or index) counting from the
/// newest, round; a damage whose target is gone (or not a regular file, for byte
/// changes) does nothing.
#[derive(Debug, Clone)]
enum Damage {
    File {
        target: Target,
        edit: Edit,
    },
    /// A segment renamed to another sequence number and first-event index.
    Rename {
        which: u8,
        seq: i8,
        base: Base,
    },
    /// A copy of a segment under another name.
    Copy {
        which: u8,
        seq: i8,
        base: Base,
    },
    Junk {
        name: JunkName,
        content: Content,
    },
    /// A stream header field set: `field` 0 the write offset, 1 the event count, 2 the
    /// start time.
    Header {
        which: u8,
        field: u8,
        value: u64,
    },
    /// A field of a segment's trailer set, written as a valid record in the next slot:
    /// `field` 0 the sealed flag (`value & 1`), 1 the durable offset, 2 the durable
    /// count, 3 the durable last timestamp, 4 the generation, 5 the dirty limit, 6 the
    /// sequence number.
    Trailer {
        which: u8,
        field: u8,
        value: u64,
    },
    /// An event header field of one of the template's events (`event`, round) set:
    /// `field` 0 the timestamp, 1 the size, 2 the checksum; with `fix_crc` the checksum
    /// is then recomputed over the payload the size covers.
    Event {
        event: u16,
        field: u8,
        value: u64,
        fix_crc: bool,
    },
    /// A word of an index file set (see [`index_word_at`]), its checksum recomputed or
    /// not.
    Index {
        which: u8,
        word: u8,
        value: u64,
        fix_crc: bool,
    },
    /// An entry added to an index file, its count and checksum made to match.
    IndexEntry {
        which: u8,
        offset: u64,
        timestamp: i64,
        ordinal: u64,
    },
    /// A valid cursor file holding this position.
    Cursor {
        name: u8,
        position: u64,
    },
    /// A setting of the `LOG` file changed, added or (`None`) removed.
    Setting {
        key: u8,
        value: Option<u64>,
    },
}

const SETTING_KEYS: [&str; 8] = [
    "segment-size",
    "roll-ns",
    "retain-size",
    "retain-age-ns",
    "retain-segments",
    "retain-past-cursors",
    "write-back",
    "a-setting-of-a-later-version",
];

/// Bytes of a stream's header, before its first event.
const STREAM_HEADER: usize = evstream::format::STREAM_HEADER_LEN as usize;
/// A first-event index for a segment name that is huge but leaves room for sums.
const HUGE_BASE: u64 = 10_000_000_000_000_000_000;

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..4200,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        Just(1 << 32),
        Just(1 << 40),
        any::<u64>(),
    ]
}

fn interesting_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-600i64..1600, Just(i64::MIN), Just(i64::MAX), any::<i64>(),]
}

/// A sequence number for a new name: near the log's, the largest there is, or past it.
fn junk_seq() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..12,
        Just(16_777_215),
        Just(16_777_216),
        Just(99_999_999),
    ]
}

fn junk_base() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..400,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(HUGE_BASE),
    ]
}

fn base() -> impl Strategy<Value = Base> {
    prop_oneof![
        (-60i16..60).prop_map(Base::Delta),
        junk_base().prop_map(Base::Set),
    ]
}

/// Settings values that are valid, invalid, or extreme, but never ask for a huge segment.
fn setting_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..5,
        Just(4095),
        Just(SEGMENT_SIZE),
        Just(2 * SEGMENT_SIZE),
        Just(1 << 20),
        Just(1 << 40),
        Just(u64::MAX),
        Just(3_600_000_000_000),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => any::<u8>().prop_map(Target::Segment),
        2 => any::<u8>().prop_map(Target::Index),
        1 => any::<u8>().prop_map(Target::Cursor),
        1 => Just(Target::Log),
        1 => Just(Target::Lock),
        1 => Just(Target::Next),
        1 => Just(Target::CursorsDir),
    ]
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        Just(Link::DevZero),
        Just(Link::Outside),
        Just(Link::Missing),
        any::<u8>().prop_map(Link::Sibling),
        Just(Link::Loop),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(|keep| Edit::Truncate { keep }),
        (1u16..9000, any::<u8>()).prop_map(|(by, fill)| Edit::Extend { by, fill }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(at, bytes)| Edit::Overwrite { at, bytes }),
        (any::<usize>(), 1u16..4096).prop_map(|(at, len)| Edit::Zeros { at, len }),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit { at, bit }),
        (1u16..1100, prop::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(back, bytes)| Edit::FromEnd { back, bytes }),
        Just(Edit::Delete),
        Just(Edit::Empty),
        Just(Edit::Directory),
        link().prop_map(Edit::Symlink),
        Just(Edit::Socket),
    ]
}

fn junk_name() -> impl Strategy<Value = JunkName> {
    prop_oneof![
        3 => (junk_seq(), junk_base()).prop_map(|(seq, base)| JunkName::Segment { seq, base }),
        1 => junk_seq().prop_map(|seq| JunkName::Index { seq }),
        1 => junk_seq().prop_map(|seq| JunkName::Next { seq }),
        2 => (0..NEAR_NAMES.len() as u8).prop_map(JunkName::Near),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        Just(Content::Empty),
        prop::collection::vec(any::<u8>(), 1..600).prop_map(Content::Bytes),
        (1u16..9000).prop_map(Content::Zeros),
        any::<u8>().prop_map(Content::CopyOf),
        (
            any::<bool>(),
            prop::collection::vec(interesting_i64(), 0..4),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(double, mut events, flush, seal)| {
                events.sort_unstable();
                Content::Stream {
                    double,
                    events,
                    flush,
                    seal,
                }
            }),
    ]
}

/// Damage to files, names and directories (checksums left as they fall).
fn file_damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (target(), edit()).prop_map(|(target, edit)| Damage::File { target, edit }),
        1 => (any::<u8>(), -3i8..=3, base())
            .prop_map(|(which, seq, base)| Damage::Rename { which, seq, base }),
        1 => (any::<u8>(), -3i8..=3, base())
            .prop_map(|(which, seq, base)| Damage::Copy { which, seq, base }),
        2 => (junk_name(), content()).prop_map(|(name, content)| Damage::Junk { name, content }),
    ]
}

/// Lies that pass the checksums: header and trailer fields, events with their checksum
/// recomputed, indexes and cursors that are valid files describing something else, and
/// settings.
fn lie() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<u8>(), 0u8..3, interesting_u64()).prop_map(|(which, field, value)| Damage::Header {
            which,
            field,
            value
        }),
        (any::<u8>(), 0u8..7, interesting_u64()).prop_map(|(which, field, value)| {
            Damage::Trailer {
                which,
                field,
                value,
            }
        }),
        (any::<u16>(), 0u8..3, interesting_u64(), any::<bool>()).prop_map(
            |(event, field, value, fix_crc)| Damage::Event {
                event,
                field,
                value,
                fix_crc
            }
        ),
        // Timestamps out of order, checksums intact.
        (any::<u16>(), interesting_i64()).prop_map(|(event, t)| Damage::Event {
            event,
            field: 0,
            value: t as u64,
            fix_crc: true,
        }),
        (any::<u8>(), 0u8..12, interesting_u64(), any::<bool>()).prop_map(
            |(which, word, value, fix_crc)| Damage::Index {
                which,
                word,
                value,
                fix_crc
            }
        ),
        (
            any::<u8>(),
            interesting_u64(),
            interesting_i64(),
            interesting_u64()
        )
            .prop_map(|(which, offset, timestamp, ordinal)| Damage::IndexEntry {
                which,
                offset,
                timestamp,
                ordinal
            }),
        (
            0..CURSOR_NAMES.len() as u8,
            prop_oneof![
                (0u64..8, 0u64..4200).prop_map(|(s, o)| s << 40 | o),
                interesting_u64()
            ]
        )
            .prop_map(|(name, position)| Damage::Cursor { name, position }),
        (
            0..SETTING_KEYS.len() as u8,
            prop::option::weighted(0.8, setting_value())
        )
            .prop_map(|(key, value)| Damage::Setting { key, value }),
    ]
}

/// The places of a damage case: the log, and a directory beside it that symlinks reach.
struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    log: PathBuf,
    outside: PathBuf,
    missing: PathBuf,
}

impl Case {
    fn new(template: &Template) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let log = root.join("log");
        copy_tree(&template.log, &log);
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        // A file outside the log that looks like one of its segments.
        let first = names(&log)
            .into_iter()
            .find(|n| is_segment_name(n))
            .unwrap();
        std::fs::copy(log.join(first), outside.join("victim")).unwrap();
        Self {
            _dir: dir,
            missing: outside.join("missing"),
            outside: outside.join("victim"),
            root,
            log,
        }
    }

    /// The segment names, oldest first.
    fn segments(&self) -> Vec<String> {
        names(&self.log)
            .into_iter()
            .filter(|n| is_segment_name(n))
            .collect()
    }

    /// The one of `names` that `which` picks, counting from the newest.
    fn pick(&self, names: &[String], which: u8) -> Option<PathBuf> {
        let n = names.len();
        (n > 0).then(|| self.log.join(&names[n - 1 - which as usize % n]))
    }

    /// The segment `which` (0 is the newest).
    fn segment(&self, which: u8) -> Option<PathBuf> {
        self.pick(&self.segments(), which)
    }

    /// The segment file whose name has sequence number `seq`.
    fn segment_numbered(&self, seq: u64) -> Option<PathBuf> {
        let prefix = format!("{seq:08}-");
        self.segments()
            .into_iter()
            .find(|n| n.starts_with(&prefix))
            .map(|n| self.log.join(n))
    }

    fn path_of(&self, target: Target) -> Option<PathBuf> {
        match target {
            Target::Segment(which) => self.segment(which),
            Target::Index(which) => {
                let indexes: Vec<String> = names(&self.log)
                    .into_iter()
                    .filter(|n| is_index_name(n))
                    .collect();
                self.pick(&indexes, which)
            }
            Target::Cursor(which) => {
                let cursors = self.log.join("cursors");
                let files = names(&cursors);
                let n = files.len();
                (n > 0).then(|| cursors.join(&files[n - 1 - which as usize % n]))
            }
            Target::Log => Some(self.log.join("LOG")),
            Target::Lock => Some(self.log.join("LOCK")),
            Target::Next => {
                let next = names(&self.log)
                    .into_iter()
                    .find(|n| n.starts_with(".next-"));
                Some(self.log.join(next.unwrap_or_else(|| {
                    let newest = self.segments().last().map_or(0, |n| seq_of(n));
                    format!(".next-{:08}.evs", newest + 1)
                })))
            }
            Target::CursorsDir => Some(self.log.join("cursors")),
        }
    }

    fn apply(&self, damage: &Damage, template: &Template) -> std::io::Result<()> {
        match damage {
            Damage::File { target, edit } => match self.path_of(*target) {
                Some(path) => self.edit(&path, edit),
                None => Ok(()),
            },
            Damage::Rename { which, seq, base } | Damage::Copy { which, seq, base } => {
                let Some(from) = self.segment(*which) else {
                    return Ok(());
                };
                let name = from.file_name().unwrap().to_string_lossy().into_owned();
                let new_seq = (seq_of(&name) as i64 + i64::from(*seq)).max(0) as u64;
                let old_base = base_of(&name);
                let new_base = match *base {
                    Base::Delta(d) => old_base.saturating_add_signed(i64::from(d)),
                    Base::Set(b) => b,
                };
                let to = self.log.join(format!("{new_seq:08}-{new_base:020}.evs"));
                if to == from {
                    return Ok(());
                }
                remove_any(&to)?;
                if matches!(damage, Damage::Rename { .. }) {
                    std::fs::rename(&from, &to)
                } else if std::fs::symlink_metadata(&from)?.is_file() {
                    std::fs::copy(&from, &to).map(drop)
                } else {
                    Ok(())
                }
            }
            Damage::Junk { name, content } => {
                let name = match name {
                    JunkName::Segment { seq, base } => format!("{seq:08}-{base:020}.evs"),
                    JunkName::Index { seq } => format!("{seq:08}.idx"),
                    JunkName::Next { seq } => format!(".next-{seq:08}.evs"),
                    JunkName::Near(k) => NEAR_NAMES[*k as usize % NEAR_NAMES.len()].to_owned(),
                };
                let path = self.log.join(name);
                if !path.parent().unwrap().is_dir() {
                    return Ok(());
                }
                self.create(&path, content)
            }
            Damage::Header {
                which,
                field,
                value,
            } => {
                let at = [WRITE_OFFSET_AT, EVENT_COUNT_AT, START_TIMESTAMP_AT][*field as usize % 3];
                self.modify(self.segment(*which), |bytes| {
                    if let Some(word) = bytes.get_mut(at..at + 8) {
                        word.copy_from_slice(&value.to_le_bytes());
                    }
                })
            }
            Damage::Trailer {
                which,
                field,
                value,
            } => self.modify(self.segment(*which), |bytes| {
                lie_in_trailer(bytes, *field, *value);
            }),
            Damage::Event {
                event,
                field,
                value,
                fix_crc,
            } => {
                let position = template.positions[*event as usize % template.positions.len()];
                self.modify(self.segment_numbered(position.segment()), |bytes| {
                    lie_in_event(bytes, position.offset() as usize, *field, *value, *fix_crc);
                })
            }
            Damage::Index {
                which,
                word,
                value,
                fix_crc,
            } => self.modify(self.path_of(Target::Index(*which)), |bytes| {
                let Some(at) = index_word_at(bytes.len(), *word) else {
                    return;
                };
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
                if *fix_crc {
                    fix_index_crc(bytes);
                }
            }),
            Damage::IndexEntry {
                which,
                offset,
                timestamp,
                ordinal,
            } => self.modify(self.path_of(Target::Index(*which)), |bytes| {
                if bytes.len() < INDEX_HEADER_LEN + CRC_LEN {
                    return;
                }
                let end = bytes.len() - CRC_LEN;
                let mut entry = Vec::with_capacity(INDEX_ENTRY_LEN);
                entry.extend_from_slice(&offset.to_le_bytes());
                entry.extend_from_slice(&timestamp.to_le_bytes());
                entry.extend_from_slice(&ordinal.to_le_bytes());
                bytes.splice(end..end, entry);
                let count = &mut bytes[INDEX_ENTRIES_AT..INDEX_ENTRIES_AT + 8];
                let n = u64::from_le_bytes((&*count).try_into().unwrap()).wrapping_add(1);
                count.copy_from_slice(&n.to_le_bytes());
                fix_index_crc(bytes);
            }),
            Damage::Cursor { name, position } => {
                let cursors = self.log.join("cursors");
                if !std::fs::symlink_metadata(&cursors).is_ok_and(|m| m.is_dir()) {
                    return Ok(());
                }
                let path = cursors.join(CURSOR_NAMES[*name as usize % CURSOR_NAMES.len()]);
                remove_any(&path)?;
                std::fs::write(path, cursor_bytes(*position))
            }
            Damage::Setting { key, value } => {
                let path = self.log.join("LOG");
                if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                    return Ok(());
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    return Ok(());
                };
                let key = SETTING_KEYS[*key as usize % SETTING_KEYS.len()];
                let mut lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{key} ")))
                    .map(str::to_owned)
                    .collect();
                if let Some(value) = value {
                    lines.push(format!("{key} {value}"));
                }
                std::fs::write(&path, lines.join("\n") + "\n")
            }
        }
    }

    /// Rewrites a regular file's bytes (nothing if it is missing or not a regular file).
    fn modify(
        &self,
        path: Option<PathBuf>,
        change: impl FnOnce(&mut Vec<u8>),
    ) -> std::io::Result<()> {
        let Some(path) = path else {
            return Ok(());
        };
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let mut bytes = std::fs::read(&path)?;
        change(&mut bytes);
        std::fs::write(&path, bytes)
    }

    fn edit(&self, path: &Path, edit: &Edit) -> std::io::Result<()> {
        let some = Some(path.to_owned());
        match edit {
            Edit::Truncate { keep } => self.modify(some, |b| b.truncate(keep % (b.len() + 1))),
            Edit::Extend { by, fill } => {
                self.modify(some, |b| b.resize(b.len() + *by as usize, *fill))
            }
            Edit::Overwrite { at, bytes } => self.modify(some, |b| {
                if !b.is_empty() {
                    let at = at % b.len();
                    let end = (at + bytes.len()).min(b.len());
                    b[at..end].copy_from_slice(&bytes[..end - at]);
                }
            }),
            Edit::Zeros { at, len } => self.modify(some, |b| {
                if !b.is_empty() {
                    let at = at % b.len();
                    let end = (at + *len as usize).min(b.len());
                    b[at..end].fill(0);
                }
            }),
            Edit::FlipBit { at, bit } => self.modify(some, |b| {
                if !b.is_empty() {
                    let at = at % b.len();
                    b[at] ^= 1 << bit;
                }
            }),
            Edit::FromEnd { back, bytes } => self.modify(some, |b| {
                let at = b.len().saturating_sub(*back as usize);
                let end = (at + bytes.len()).min(b.len());
                b[at..end].copy_from_slice(&bytes[..end - at]);
            }),
            Edit::Delete => remove_any(path),
            Edit::Empty => {
                remove_any(path)?;
                std::fs::write(path, b"")
            }
            Edit::Directory => {
                remove_any(path)?;
                std::fs::create_dir(path)
            }
            Edit::Symlink(link) => {
                let to = match link {
                    Link::DevZero => PathBuf::from("/dev/zero"),
                    Link::Outside => self.outside.clone(),
                    Link::Missing => self.missing.clone(),
                    Link::Sibling(which) => match self.segment(*which) {
                        Some(p) => PathBuf::from(p.file_name().unwrap()),
                        None => self.outside.clone(),
                    },
                    Link::Loop => PathBuf::from(path.file_name().unwrap()),
                };
                remove_any(path)?;
                std::os::unix::fs::symlink(to, path)
            }
            Edit::Socket => {
                remove_any(path)?;
                drop(std::os::unix::net::UnixListener::bind(path)?);
                Ok(())
            }
        }
    }

    fn create(&self, path: &Path, content: &Content) -> std::io::Result<()> {
        remove_any(path)?;
        match content {
            Content::Empty => std::fs::write(path, b""),
            Content::Bytes(bytes) => std::fs::write(path, bytes),
            Content::Zeros(len) => std::fs::write(path, vec![0u8; *len as usize]),
            Content::CopyOf(which) => match self.segment(*which) {
                Some(from) if std::fs::symlink_metadata(&from)?.is_file() => {
                    std::fs::copy(from, path).map(drop)
                }
                _ => Ok(()),
            },
            Content::Stream {
                double,
                events,
                flush,
                seal,
            } => {
                let capacity = if *double {
                    2 * SEGMENT_SIZE
                } else {
                    SEGMENT_SIZE
                };
                let mut stream = StreamWriter::create(path, capacity).unwrap();
                for (k, t) in events.iter().enumerate() {
                    stream.append(*t, &payload(k as u64)).unwrap();
                }
                if *flush {
                    stream.flush().unwrap();
                }
                if *seal {
                    stream.seal().unwrap();
                }
                Ok(())
            }
        }
    }
}

fn seq_of(segment_name: &str) -> u64 {
    segment_name[..8].parse().unwrap()
}

fn base_of(segment_name: &str) -> u64 {
    segment_name[9..29].parse().unwrap()
}

/// Removes whatever is at `path`, if anything.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A valid cursor file holding `position`.
fn cursor_bytes(position: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CURSOR_LEN);
    bytes.extend_from_slice(b"EVCURSR1");
    bytes.extend_from_slice(&position.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..CURSOR_CRC_AT]);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes
}

/// Where word `word` of an index file of `len` bytes is: 0 to 5 are the header's `seq`,
/// `write_offset`, `event_count`, `first_timestamp`, `last_timestamp` and `entries`, and
/// 6 on the words of the entries, round.
fn index_word_at(len: usize, word: u8) -> Option<usize> {
    let word = word as usize;
    if word < INDEX_HEADER_WORDS {
        return (len >= INDEX_HEADER_LEN + CRC_LEN).then_some(8 + word * 8);
    }
    let entry_words = len.checked_sub(INDEX_HEADER_LEN + CRC_LEN)? / 8;
    (entry_words > 0).then(|| INDEX_HEADER_LEN + (word - INDEX_HEADER_WORDS) % entry_words * 8)
}

fn fix_index_crc(bytes: &mut [u8]) {
    let end = bytes.len() - CRC_LEN;
    let crc = crc32fast::hash(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
}

/// Writes a valid trailer record with one field changed into the slot after the current
/// one (or into the slot its new sequence number picks).
fn lie_in_trailer(bytes: &mut [u8], field: u8, value: u64) {
    let Some(at) = trailer_offset(bytes.len() as u64) else {
        return;
    };
    let at = at as usize;
    let slot = |k: usize| -> [u8; TRAILER_RECORD_LEN] {
        let from = at + k * TRAILER_SLOT_LEN as usize;
        bytes[from..from + TRAILER_RECORD_LEN].try_into().unwrap()
    };
    let (a, b) = (slot(0), slot(1));
    let Ok(mut trailer) = decode_trailer([&a, &b], at as u64) else {
        return;
    };
    trailer.sequence += 1;
    match field {
        0 => trailer.sealed = value & 1 == 1,
        1 => trailer.durable_offset = value,
        2 => trailer.durable_count = value,
        3 => trailer.durable_last_timestamp = Some(value as i64),
        4 => trailer.generation = value,
        5 => trailer.dirty_limit = value,
        _ => trailer.sequence = value,
    }
    let from = at + Trailer::slot(trailer.sequence) as usize * TRAILER_SLOT_LEN as usize;
    bytes[from..from + TRAILER_RECORD_LEN].copy_from_slice(&trailer.to_bytes());
}

/// Sets a field of the event header at `offset`, and its checksum over the payload its
/// (new) size covers if `fix_crc` and that payload is in the file.
fn lie_in_event(bytes: &mut [u8], offset: usize, field: u8, value: u64, fix_crc: bool) {
    let header_len = EVENT_HEADER_LEN as usize;
    let Some(raw) = bytes.get(offset..offset + header_len) else {
        return;
    };
    let mut header = EventHeader::read_from_bytes(raw).unwrap();
    match field {
        0 => header.timestamp = I64::new(value as i64),
        1 => header.size = U32::new(value as u32),
        _ => header.checksum = U32::new(value as u32),
    }
    if fix_crc {
        let start = offset + header_len;
        let size = header.size.get() as usize;
        if let Some(payload) = bytes.get(start..start.saturating_add(size))
            && let Some(fixed) = EventHeader::for_payload(header.timestamp.get(), payload)
        {
            header = fixed;
        }
    }
    bytes[offset..offset + header_len].copy_from_slice(header.as_bytes());
}

// ---------------------------------------------------------------------------------------
// What a directory holds.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
    Special,
}

/// Every entry under `root` (symlinks not followed), files with their bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let node = if meta.is_file() {
                Node::File(std::fs::read(&path).unwrap())
            } else if meta.is_dir() {
                walk(root, &path, into);
                Node::Dir
            } else if meta.is_symlink() {
                Node::Link(std::fs::read_link(&path).unwrap())
            } else {
                Node::Special
            };
            into.insert(path.strip_prefix(root).unwrap().to_owned(), node);
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// The paths that differ between two snapshots, but for `allowed` ones that appeared
/// as empty files.
fn changes(
    before: &BTreeMap<PathBuf, Node>,
    after: &BTreeMap<PathBuf, Node>,
    allowed: &[PathBuf],
) -> Vec<String> {
    let mut changed = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => changed.push(format!("{} removed", path.display())),
            Some(now) if now != node => changed.push(format!("{} changed", path.display())),
            Some(_) => {}
        }
    }
    for (path, node) in after {
        let created_lock = allowed.contains(path) && *node == Node::File(Vec::new());
        if !before.contains_key(path) && !created_lock {
            changed.push(format!("{} created", path.display()));
        }
    }
    changed
}

// ---------------------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------------------

/// Panics on the writer's background threads (named `evstream-*`), which nothing else
/// would see.
static BACKGROUND_PANICS: AtomicUsize = AtomicUsize::new(0);
/// One case at a time in this binary, so that a background panic is blamed on its case.
static SERIAL: Mutex<()> = Mutex::new(());
/// Outcomes seen, by operation and error variant, printed at the end of each test.
static OUTCOMES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// Where this thread last panicked (file and line) and its message.
    static LAST_PANIC: RefCell<(String, u32, String)> =
        const { RefCell::new((String::new(), 0, String::new())) };
}

fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            if name.is_some_and(|n| n.starts_with("evstream-")) {
                BACKGROUND_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            let (file, line) = info
                .location()
                .map_or((String::new(), 0), |l| (l.file().to_owned(), l.line()));
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = (file, line, message));
            previous(info);
        }));
    });
}

/// The error's variant, and for an I/O error its operation and kind.
fn variant(e: &Error) -> String {
    match e {
        Error::Io { op, source, .. } => format!("Io({op}, {:?})", source.kind()),
        other => {
            let debug = format!("{other:?}");
            debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    }
}

fn count(outcome: String) {
    *OUTCOMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(outcome)
        .or_default() += 1;
}

fn print_outcomes(test: &str) {
    let outcomes = std::mem::take(&mut *OUTCOMES.lock().unwrap_or_else(|e| e.into_inner()));
    eprintln!("{test}: outcomes");
    for (what, count) in outcomes {
        eprintln!("  {count:6}  {what}");
    }
}

/// The calls of one case: each runs alone, a panic is kept and the case goes on, so
/// that a failure names every call that panicked and where.
#[derive(Default)]
struct Calls {
    panics: Vec<String>,
    broken: Vec<String>,
}

impl Calls {
    /// Runs `f`, notes its outcome; `None` if it panicked.
    fn run<T>(
        &mut self,
        op: &str,
        f: impl FnOnce() -> evstream::Result<T>,
    ) -> Option<evstream::Result<T>> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(result) => {
                let what = match &result {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => variant(e),
                };
                count(format!("{op}: {what}"));
                Some(result)
            }
            Err(_) => {
                let (file, line, message) = LAST_PANIC.with(|last| last.borrow().clone());
                let panic = format!("{op} panicked at {file}:{line}: {message}");
                if !self.panics.contains(&panic) {
                    self.panics.push(panic);
                }
                None
            }
        }
    }

    /// Iterates to the end, the first error or `limit` events: positions increase, and
    /// there are no more events than the files could hold (`bound`).
    fn drain(
        &mut self,
        op: &str,
        open: impl FnOnce() -> evstream::Result<LogIter>,
        bound: usize,
        limit: usize,
    ) {
        let Some(Ok(mut iter)) = self.run(op, open) else {
            return;
        };
        let mut previous: Option<Position> = None;
        let item = format!("{op} item");
        for _ in 0..=bound.min(limit) {
            let Some(Ok(Some(event))) = self.run(&item, || iter.next().transpose()) else {
                return;
            };
            if let Some(p) = previous.filter(|&p| p >= event.position()) {
                self.broken
                    .push(format!("{op}: {} after {p}", event.position()));
                return;
            }
            let _ = event.payload().len();
            let _ = event.next_position();
            previous = Some(event.position());
        }
        if limit >= bound {
            self.broken.push(format!("{op}: more than {bound} events"));
        }
    }

    /// Every read operation on the log.
    fn read_everything(&mut self, log: &Path, template: &Template, extra: &Probes, bound: usize) {
        let Some(Ok(reader)) = self.run("LogReader::open", || LogReader::open(log)) else {
            return;
        };
        let _ = reader.options();
        self.run("segment_files", || reader.segment_files());
        self.run("start", || reader.start());
        let end = self.run("end", || reader.end()).and_then(Result::ok);
        self.drain("iter", || reader.iter(), bound, usize::MAX);
        let mut positions = template.probe_positions.clone();
        positions.extend(extra.positions.iter().map(|&p| Position::from_u64(p)));
        positions.extend(end);
        for &position in &positions {
            self.drain("iter_from", || reader.iter_from(position), bound, PARTIAL);
            self.run("lag", || reader.lag(position));
        }
        if let Some(end) = end
            && let Some(Ok(mut follow)) = self.run("iter_from", || reader.iter_from(end))
        {
            self.run("try_next at the end", || follow.try_next());
            self.run("next_timeout at the end", || {
                follow.next_timeout(Duration::ZERO)
            });
        }
        let mut timestamps = template.probe_timestamps.clone();
        timestamps.push(extra.timestamp);
        for &t in &timestamps {
            self.run("seek_time", || reader.seek_time(t));
            self.drain("iter_since", || reader.iter_since(t), bound, PARTIAL);
        }
        for n in [0, 1, 10, bound + 1] {
            let op = format!("tail({})", if n > 10 { "more than all" } else { "n" });
            if let Some(Ok(tail)) = self.run(&op, || reader.tail(n)) {
                if tail.len() > n {
                    self.broken
                        .push(format!("tail({n}) gave {} events", tail.len()));
                }
                let _ = tail.iter().map(|e| e.payload().len()).sum::<usize>();
            }
        }
        self.run("stat", || reader.stat());
        self.run("writer_active", || reader.writer_active());
        if let Some(Ok(v)) = self.run("verify", || reader.verify())
            && v.events as usize > bound
        {
            self.broken
                .push(format!("verify counted {} events", v.events));
        }
        let mut names: Vec<String> = CURSOR_NAMES.iter().map(|&n| n.to_owned()).collect();
        names.push("../x".to_owned());
        if let Some(Ok(cursors)) = self.run("cursors", || reader.cursors()) {
            for (name, position) in cursors {
                self.run("cursors item", || position);
                names.push(name);
            }
        }
        for name in &names {
            self.run("cursor", || reader.cursor(name));
            self.run("cursor_lag", || reader.cursor_lag(name));
            self.drain("iter_cursor", || reader.iter_cursor(name), bound, PARTIAL);
        }
    }
}

/// Positions and a timestamp drawn for one case, besides the template's probes.
#[derive(Debug, Clone)]
struct Probes {
    positions: Vec<u64>,
    timestamp: i64,
}

fn probes() -> impl Strategy<Value = Probes> {
    (
        prop::collection::vec(
            prop_oneof![
                (0u64..8, 0u64..4200).prop_map(|(s, o)| s << 40 | o),
                any::<u64>()
            ],
            0..3,
        ),
        interesting_i64(),
    )
        .prop_map(|(positions, timestamp)| Probes {
            positions,
            timestamp,
        })
}

/// How many events the files under `root` could hold: each takes at least its header.
fn event_bound(snapshot: &BTreeMap<PathBuf, Node>) -> usize {
    let held: usize = snapshot
        .values()
        .map(|n| match n {
            Node::File(b) => b.len(),
            _ => 0,
        })
        .sum();
    held / EVENT_HEADER_LEN as usize + 16
}

/// Applies `damages` to a copy of the template, then reads it every way, opens a writer
/// (which appends and flushes if it opens), and reads it again: no panic anywhere, no
/// reader changes a file, a refused writer changes none.
fn check(template: &Template, damages: &[Damage], extra: &Probes) -> Result<(), String> {
    let case = Case::new(template);
    for damage in damages {
        case.apply(damage, template)
            .map_err(|e| format!("applying {damage:?}: {e}"))?;
    }
    let background = BACKGROUND_PANICS.load(Ordering::SeqCst);
    let mut calls = Calls::default();
    let before = snapshot(&case.root);
    calls.read_everything(&case.log, template, extra, event_bound(&before));
    let changed = changes(&before, &snapshot(&case.root), &[]);
    if !changed.is_empty() {
        calls
            .broken
            .push(format!("readers changed files: {changed:?}"));
    }
    // Creating the lock file (also through a symlink) is what a refused open may do.
    let mut allowed = vec![PathBuf::from("log/LOCK")];
    if let Ok(to) = std::fs::read_link(case.log.join("LOCK")) {
        let to = if to.is_absolute() {
            to
        } else {
            case.log.join(to)
        };
        if let Ok(inside) = to.strip_prefix(&case.root) {
            allowed.push(inside.to_owned());
        }
    }
    match calls.run("LogWriter::open", || LogWriter::open(&case.log)) {
        None => {}
        Some(Err(e)) => {
            let changed = changes(&before, &snapshot(&case.root), &allowed);
            if !changed.is_empty() {
                calls.broken.push(format!(
                    "a refused writer open ({}: {e}) changed files: {changed:?}",
                    variant(&e)
                ));
            }
        }
        Some(Ok(mut writer)) => {
            let t = writer.last_timestamp().map_or(0, |t| t.saturating_add(1));
            calls.run("append", || writer.append(t, b"after the damage"));
            calls.run("flush", || writer.flush());
            calls.run("drop the writer", || {
                drop(writer);
                Ok(())
            });
            let before = snapshot(&case.root);
            calls.read_everything(&case.log, template, extra, event_bound(&before));
            let changed = changes(&before, &snapshot(&case.root), &[]);
            if !changed.is_empty() {
                calls
                    .broken
                    .push(format!("readers changed files after a writer: {changed:?}"));
            }
        }
    }
    let now = BACKGROUND_PANICS.load(Ordering::SeqCst);
    if now != background {
        calls.panics.push(format!(
            "{} panic(s) on the writer's background threads",
            now - background
        ));
    }
    let mut problems = calls.panics;
    problems.extend(calls.broken);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs `check` over the damage drawn by `strategy`, shrinking a failure to its smallest.
fn run_property(test: &str, strategy: impl Strategy<Value = Vec<Damage>>) {
    watch_panics();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let template = template();
    let mut runner = TestRunner::new(config());
    let result = runner.run(&(strategy, probes()), |(damages, extra)| {
        check(&template, &damages, &extra).map_err(TestCaseError::fail)
    });
    print_outcomes(test);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Whatever happened to the files, names and directories of a log (bytes truncated,
/// extended, overwritten or flipped in segments, indexes, cursors, `LOG`, `LOCK` or the
/// prepared segment; files deleted or replaced by an empty file, a directory, a socket
/// or a symlink to `/dev/zero`, outside the log, to nothing or to itself; segments
/// renamed or copied to other sequence numbers and bases; junk under segment-like and
/// temporary names, foreign streams among them), every read operation and a writer's
/// open give a value or a typed error, never a panic; readers change no file; a refused
/// writer open changes no file but for creating its lock file.
#[test]
fn damaged_files_and_names_give_values_or_typed_errors() {
    run_property(
        "damaged_files_and_names_give_values_or_typed_errors",
        prop::collection::vec(file_damage(), 1..5),
    );
}

/// The same promise when the damage passes the checksums: stream header and trailer
/// fields, events with recomputed checksums, valid index files and cursors that
/// describe something else, settings changed or removed, and byte damage besides.
#[test]
fn checksummed_lies_give_values_or_typed_errors() {
    run_property(
        "checksummed_lies_give_values_or_typed_errors",
        prop::collection::vec(prop_oneof![3 => lie(), 1 => file_damage()], 1..5),
    );
}

/// One of each kind of damage, each alone, at the newest segment, the one before it or
/// the oldest (whatever the random draws).
fn every_kind(template: &Template) -> Vec<Damage> {
    let oldest = (template.segments - 1) as u8;
    let edits = [
        Edit::Truncate { keep: 100 },
        Edit::Truncate { keep: 0 },
        Edit::Extend { by: 512, fill: 0 },
        Edit::Overwrite {
            at: 40,
            bytes: vec![0xff; 16],
        },
        Edit::Zeros { at: 0, len: 24 },
        Edit::FlipBit { at: 30, bit: 3 },
        Edit::FromEnd {
            back: 1024,
            bytes: vec![0xa5; 72],
        },
        Edit::Delete,
        Edit::Empty,
        Edit::Directory,
        Edit::Symlink(Link::DevZero),
        Edit::Symlink(Link::Outside),
        Edit::Symlink(Link::Missing),
        Edit::Symlink(Link::Sibling(2)),
        Edit::Symlink(Link::Loop),
        Edit::Socket,
    ];
    let mut damages = Vec::new();
    for edit in &edits {
        for target in [
            Target::Segment(0),
            Target::Segment(1),
            Target::Index(0),
            Target::Cursor(0),
            Target::Log,
            Target::Lock,
            Target::Next,
            Target::CursorsDir,
        ] {
            damages.push(Damage::File {
                target,
                edit: edit.clone(),
            });
        }
    }
    for which in [0, oldest] {
        for (seq, base) in [
            (1, Base::Delta(0)),
            (-1, Base::Delta(0)),
            (0, Base::Delta(5)),
            (2, Base::Set(HUGE_BASE)),
            (0, Base::Set(u64::MAX)),
        ] {
            damages.push(Damage::Rename { which, seq, base });
            damages.push(Damage::Copy { which, seq, base });
        }
        for field in 0..3 {
            for value in [0, 25, u64::MAX] {
                damages.push(Damage::Header {
                    which,
                    field,
                    value,
                });
            }
        }
    }
    for (which, field) in (0..7).map(|f| (0, f)).chain([(1, 0), (1, 1)]) {
        for value in [0, u64::MAX] {
            damages.push(Damage::Trailer {
                which,
                field,
                value,
            });
        }
    }
    for word in 0..12 {
        for value in [1, u64::MAX] {
            damages.push(Damage::Index {
                which: 0,
                word,
                value,
                fix_crc: true,
            });
        }
    }
    for (offset, timestamp, ordinal) in [(100, 0, 1), (200, i64::MAX, u64::MAX - 1), (24, 0, 0)] {
        damages.push(Damage::IndexEntry {
            which: 1,
            offset,
            timestamp,
            ordinal,
        });
    }
    let events = template.positions.len() as u16;
    for event in [0, 41, events - 1] {
        for (field, value, fix_crc) in [
            (0, i64::MIN as u64, true),
            (0, 1_000_000, true),
            (1, 0, false),
            (1, u64::from(u32::MAX), true),
            (2, 0, false),
        ] {
            damages.push(Damage::Event {
                event,
                field,
                value,
                fix_crc,
            });
        }
    }
    for name in [0, 2] {
        for position in [0, 24, 1 << 40 | 25, 7 << 40 | 24, u64::MAX] {
            damages.push(Damage::Cursor { name, position });
        }
    }
    for key in 0..SETTING_KEYS.len() as u8 {
        for value in [None, Some(1), Some(u64::MAX)] {
            damages.push(Damage::Setting { key, value });
        }
    }
    let contents = [
        Content::Empty,
        Content::Bytes(vec![7; 100]),
        Content::Zeros(SEGMENT_SIZE as u16),
        Content::CopyOf(0),
        Content::CopyOf(oldest),
        Content::Stream {
            double: false,
            events: vec![-5, 2_000],
            flush: true,
            seal: false,
        },
        Content::Stream {
            double: true,
            events: vec![],
            flush: false,
            seal: false,
        },
        Content::Stream {
            double: false,
            events: vec![i64::MAX],
            flush: true,
            seal: true,
        },
    ];
    let newest = (template.segments - 1) as u32;
    for content in &contents {
        for name in [
            JunkName::Segment {
                seq: newest + 1,
                base: EVENTS,
            },
            JunkName::Next { seq: newest + 1 },
        ] {
            damages.push(Damage::Junk {
                name,
                content: content.clone(),
            });
        }
    }
    for name in [
        JunkName::Segment { seq: 1, base: 3 },
        JunkName::Segment {
            seq: 9,
            base: HUGE_BASE,
        },
        JunkName::Segment {
            seq: 16_777_215,
            base: 0,
        },
        JunkName::Segment {
            seq: 99_999_999,
            base: 0,
        },
        JunkName::Index { seq: 0 },
        JunkName::Index { seq: newest },
        JunkName::Index { seq: 30 },
        JunkName::Next { seq: 40 },
    ] {
        for content in [Content::Bytes(vec![7; 100]), Content::CopyOf(1)] {
            damages.push(Damage::Junk {
                name: name.clone(),
                content,
            });
        }
    }
    for near in 0..NEAR_NAMES.len() as u8 {
        damages.push(Damage::Junk {
            name: JunkName::Near(near),
            content: Content::Bytes(vec![1; 24]),
        });
    }
    damages
}

/// Every kind of damage at least once, each alone (whatever the random draws): the same
/// promise as the properties above.
#[test]
fn every_kind_of_damage_alone_gives_values_or_typed_errors() {
    watch_panics();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let template = template();
    let extra = Probes {
        positions: vec![],
        timestamp: 0,
    };
    let damages = every_kind(&template);
    let count = damages.len();
    let mut failures = Vec::new();
    for damage in damages {
        let one = [damage];
        if let Err(e) = check(&template, &one, &extra) {
            failures.push(format!("{:?}: {e}", one[0]));
        }
    }
    print_outcomes("every_kind_of_damage_alone_gives_values_or_typed_errors");
    eprintln!("{count} damages tried");
    assert!(
        failures.is_empty(),
        "{} of {count} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Defects found, each reduced to its smallest reproduction.
// ---------------------------------------------------------------------------------------

/// A log of `SEGMENT_SIZE` segments holding `events` events (timestamps 100 on), flushed,
/// its writer dropped.
fn small_log(dir: &Path, events: u64) -> PathBuf {
    let log = dir.join("log");
    let mut writer =
        LogWriter::create(&log, LogOptions::default().segment_size(SEGMENT_SIZE)).unwrap();
    for i in 0..events {
        writer.append(100 + i as i64, &[7; 100]).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    log
}

/// Opens a writer on `log`, which must be refused; checks that the refused open changed
/// no file (but those `allowed`), and returns its error.
fn refused_writer_open(log: &Path, allowed: &[PathBuf]) -> Error {
    let before = snapshot(log);
    let refused = LogWriter::open(log).map(drop).unwrap_err();
    let changed = changes(&before, &snapshot(log), allowed);
    assert!(
        changed.is_empty(),
        "refused ({refused}) but changed {changed:?}"
    );
    refused
}

/// The number of segments of `log` (the prepared one not counted).
fn segment_count(log: &Path) -> u64 {
    names(log)
        .iter()
        .filter(|n| n.ends_with(".evs") && !n.starts_with('.'))
        .count() as u64
}

/// The file of `log`'s segment `seq`.
fn segment_file(log: &Path, seq: u64) -> PathBuf {
    let prefix = format!("{seq:08}-");
    log.join(
        names(log)
            .into_iter()
            .find(|n| n.starts_with(&prefix))
            .unwrap(),
    )
}

/// A call named for the failure message.
type Named<'a> = (&'a str, Box<dyn FnOnce() + 'a>);

/// Runs each call, and fails naming every one that panicked.
fn assert_no_panic(calls: Vec<Named<'_>>) {
    watch_panics();
    let mut panicked = Vec::new();
    for (what, call) in calls {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err() {
            let (file, line, message) = LAST_PANIC.with(|last| last.borrow().clone());
            panicked.push(format!("{what} panicked at {file}:{line}: {message}"));
        }
    }
    assert!(panicked.is_empty(), "{}", panicked.join("\n"));
}

/// Segment names that give a first-event index near `u64::MAX`: `stat`, `lag` and
/// `verify` return values or typed errors (they used to add the index and an event
/// count unchecked, and panic).
#[test]
fn readers_give_values_for_a_huge_first_event_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    let segments: Vec<String> = names(&log)
        .into_iter()
        .filter(|n| is_segment_name(n))
        .collect();
    assert_eq!(segments.len(), 2, "{segments:?}");
    for name in &segments {
        let huge = format!("{}-{:020}.evs", &name[..8], u64::MAX);
        std::fs::rename(log.join(name), log.join(huge)).unwrap();
    }
    let reader = LogReader::open(&log).unwrap();
    let start = reader.start().unwrap();
    assert_no_panic(vec![
        ("stat", Box::new(|| drop(reader.stat()))),
        ("lag", Box::new(|| drop(reader.lag(start)))),
        ("verify", Box::new(|| drop(reader.verify()))),
    ]);
}

/// A sealed segment whose index is valid (checksum and all) but counts fewer events
/// than the segment holds: `lag` from a later event of that segment is a value (it used
/// to subtract past zero and panic).
#[test]
fn lag_from_an_index_that_counts_too_few_events_is_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    let index = log.join("00000000.idx");
    let mut bytes = std::fs::read(&index).unwrap();
    let at = index_word_at(bytes.len(), INDEX_EVENT_COUNT_WORD).unwrap();
    bytes[at..at + 8].copy_from_slice(&1u64.to_le_bytes());
    fix_index_crc(&mut bytes);
    std::fs::write(&index, bytes).unwrap();
    let reader = LogReader::open(&log).unwrap();
    let third = reader.iter().unwrap().nth(2).unwrap().unwrap().position();
    assert_eq!(third.segment(), 0);
    assert_no_panic(vec![("lag", Box::new(|| drop(reader.lag(third))))]);
}

/// A newest segment whose trailer record (checksum and all) has the sequence number
/// `u64::MAX`: the open refuses it as damaged (`Inconsistent`), since no writer could
/// ever add one to it (it used to open, and the next trailer write panicked).
#[test]
fn a_trailer_sequence_at_its_maximum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 1);
    let segment = log.join("00000000-00000000000000000000.evs");
    let mut bytes = std::fs::read(&segment).unwrap();
    lie_in_trailer(&mut bytes, 6, u64::MAX);
    std::fs::write(&segment, bytes).unwrap();
    let refused = LogWriter::open(&log).map(drop).unwrap_err();
    assert!(
        matches!(refused, Error::DamagedTrailer { .. }),
        "{refused:?}"
    );
}

/// A newest segment named with a first-event index near `u64::MAX`: the open refuses it
/// if its events do not fit below 2^64, and otherwise the roll that would pass 2^64 is
/// refused with a typed error (a roll used to add unchecked, and panic).
#[test]
fn a_huge_first_event_index_is_refused_or_stops_the_roll() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 1);
    let name = |base: u64| log.join(format!("00000000-{base:020}.evs"));
    std::fs::rename(name(0), name(u64::MAX)).unwrap();
    let refused = LogWriter::open(&log).map(drop).unwrap_err();
    assert!(matches!(refused, Error::NotALog { .. }), "{refused:?}");
    // Room for the one event: the open succeeds, the roll is refused.
    std::fs::rename(name(u64::MAX), name(u64::MAX - 1)).unwrap();
    let mut writer = LogWriter::open(&log).unwrap();
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = writer.append(1_000 + i, &[1; 600]) {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(Error::NotALog { .. })),
        "{refused:?}"
    );
}

/// A log whose segment before the newest has no index (as after a crash between a roll
/// and its seal, or a seal on a full disk) and whose newest segment is damaged below its
/// durable watermark: `LogWriter::open` refuses the newest (`Corrupt`) and changes no
/// file (it used to write the index of the segment before it first).
#[test]
fn a_writer_open_refused_for_a_corrupt_newest_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    std::fs::remove_file(log.join("00000000.idx")).unwrap();
    let newest = segment_file(&log, 1);
    let mut bytes = std::fs::read(&newest).unwrap();
    // A payload byte of the newest segment's first (flushed) event.
    bytes[STREAM_HEADER + EVENT_HEADER_LEN as usize] ^= 1;
    std::fs::write(&newest, bytes).unwrap();
    let refused = refused_writer_open(&log, &[]);
    assert!(matches!(refused, Error::Corrupt { .. }), "{refused:?}");
}

/// A log whose first segment has no index (as after a crash between a roll and its
/// seal) and is named with a first-event index near `u64::MAX`: `LogWriter::open`
/// refuses the log with a typed error (it used to add the segment's event count to that
/// index unchecked, and panic).
#[test]
fn an_unsealed_segment_with_a_huge_first_event_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    std::fs::remove_file(log.join("00000000.idx")).unwrap();
    let first = names(&log)
        .into_iter()
        .find(|n| n.starts_with("00000000-"))
        .unwrap();
    std::fs::rename(
        log.join(first),
        log.join(format!("00000000-{:020}.evs", u64::MAX)),
    )
    .unwrap();
    assert_no_panic(vec![(
        "LogWriter::open",
        Box::new(|| drop(LogWriter::open(&log))),
    )]);
}

/// A segment of the log's size that follows the newest one by name (the next sequence
/// number and first-event index) but starts with an event older than the log's last:
/// `LogWriter::open` refuses it (`NotALog`, "the newest segment's first event is older
/// than the last event before it") and changes no file, as docs/FORMAT.md promises (it
/// used to seal and index the segment before it first).
#[test]
fn a_writer_open_refused_for_an_old_newest_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 3);
    let mut foreign =
        StreamWriter::create(log.join("00000001-00000000000000000003.evs"), SEGMENT_SIZE).unwrap();
    foreign.append(0, b"older than the log").unwrap();
    foreign.flush().unwrap();
    drop(foreign);
    let refused = refused_writer_open(&log, &[PathBuf::from("LOCK")]);
    assert!(matches!(refused, Error::NotALog { .. }), "{refused:?}");
}

/// A `LOG` file that is not text (a byte that is not UTF-8 after a valid first line):
/// docs/FORMAT.md says a directory without a valid `LOG` is not a log, and both opens
/// refuse it as `NotALog` (they used to give `Error::Io`, as if it could not be read).
#[test]
fn a_settings_file_that_is_not_text_is_not_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 1);
    std::fs::write(
        log.join("LOG"),
        b"evstream-log 1\nsegment-size 4096\n\xff\n",
    )
    .unwrap();
    for refused in [
        LogReader::open(&log).map(drop).unwrap_err(),
        LogWriter::open(&log).map(drop).unwrap_err(),
    ] {
        assert!(matches!(refused, Error::NotALog { .. }), "{refused:?}");
    }
}

/// A segment replaced by a Unix socket: readers and the writer refuse it as
/// `NotAFile { kind: "socket" }` (opening a socket fails with `ENXIO` before its kind
/// could be checked, which used to give a bare `Error::Io`).
#[test]
fn a_segment_that_is_a_socket_is_not_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 1);
    let segment = log.join("00000000-00000000000000000000.evs");
    std::fs::remove_file(&segment).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&segment).unwrap());
    let reader = LogReader::open(&log).unwrap();
    for refused in [
        reader.iter().map(drop).unwrap_err(),
        LogWriter::open(&log).map(drop).unwrap_err(),
    ] {
        assert!(matches!(refused, Error::NotAFile { .. }), "{refused:?}");
    }
}

/// Two segments before the newest without a valid index (as after a crash between two
/// rolls and their seals), the second one's index path a directory: `LogWriter::open`
/// refuses the log, as it cannot write that index, and changes no file (it used to
/// write the first one's index before it found out).
#[test]
fn a_writer_open_refused_for_an_index_it_cannot_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 100);
    let segments = segment_count(&log);
    assert!(segments >= 3, "{segments} segments");
    std::fs::remove_file(log.join(format!("{:08}.idx", segments - 3))).unwrap();
    let blocked = log.join(format!("{:08}.idx", segments - 2));
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir(&blocked).unwrap();
    let refused = refused_writer_open(&log, &[]);
    assert!(
        matches!(&refused, Error::Io { path, .. } if *path == blocked),
        "{refused:?}"
    );
}

/// The temporary file of an index that a writer's open must write, found as a symbolic
/// link to a file outside the log: the open refuses it, and neither the link nor the
/// file it points to changes (the index used to be written through the link). A regular
/// file under that name, which an interrupted index write leaves, is replaced and the
/// open succeeds.
#[test]
fn an_index_temporary_is_never_written_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    std::fs::remove_file(log.join("00000000.idx")).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"not the log's").unwrap();
    let temp = log.join(".idx-00000000.tmp");
    std::os::unix::fs::symlink(&outside, &temp).unwrap();
    let refused = refused_writer_open(&log, &[]);
    assert!(
        matches!(&refused, Error::Io { path, .. } if *path == temp),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"not the log's");

    std::fs::remove_file(&temp).unwrap();
    std::fs::write(&temp, b"half an index").unwrap();
    drop(LogWriter::open(&log).unwrap());
    assert!(!temp.exists());
    let reader = LogReader::open(&log).unwrap();
    assert_eq!(reader.verify().unwrap().events, 40);
    assert!(log.join("00000000.idx").is_file());
}

/// The newest segment's trailer record claims a durable watermark inside its first event
/// (with a count that passes the record's own checks): `LogWriter::open` refuses the log
/// as corrupt and changes no file (the segment's open used to take the event's bytes at
/// the watermark for a torn tail and cut the event in two, and the log's open then
/// refused a segment it had already rewritten).
#[test]
fn a_writer_open_refused_for_a_watermark_inside_an_event_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 40);
    let newest = segment_file(&log, 1);
    let mut bytes = std::fs::read(&newest).unwrap();
    lie_in_trailer(&mut bytes, 2, 1);
    lie_in_trailer(&mut bytes, 1, 40);
    std::fs::write(&newest, bytes).unwrap();
    let refused = refused_writer_open(&log, &[]);
    assert!(
        matches!(refused, Error::Corrupt { watermark: 40, .. }),
        "{refused:?}"
    );
    // Readers still read every event.
    let reader = LogReader::open(&log).unwrap();
    assert_eq!(reader.iter().unwrap().count(), 40);
}

/// Two segments before the newest without an index (as after a crash between two rolls
/// and their seals), the second one damaged below its watermark: `LogWriter::open`
/// refuses the log as corrupt, since it cannot index that segment, and changes no file
/// (it used to write the first one's index before it found the damage).
#[test]
fn a_writer_open_refused_for_an_unindexable_segment_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = small_log(dir.path(), 100);
    let segments = segment_count(&log);
    assert!(segments >= 3, "{segments} segments");
    std::fs::remove_file(log.join(format!("{:08}.idx", segments - 3))).unwrap();
    std::fs::remove_file(log.join(format!("{:08}.idx", segments - 2))).unwrap();
    let damaged = segment_file(&log, segments - 2);
    let mut bytes = std::fs::read(&damaged).unwrap();
    // A payload byte of its first event, far below its watermark.
    bytes[STREAM_HEADER + EVENT_HEADER_LEN as usize] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let refused = refused_writer_open(&log, &[]);
    assert!(
        matches!(&refused, Error::Corrupt { path, .. } if *path == damaged),
        "{refused:?}"
    );
}
