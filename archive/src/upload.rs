//! `archive`: uploading a log's sealed segments, each once, verified, with the log's
//! named cursor recording how far the archive is complete.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use evstream::format::STREAM_HEADER_LEN;
use evstream::{LogReader, Position, StreamReader};
use futures_util::TryStreamExt as _;
use md5::{Digest as _, Md5};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutPayload};

use crate::error::{Error, Result};
use crate::layout::{self, Name, SegmentIndex};
use crate::store::Archive;

/// The cursor `archive` records its progress in unless told otherwise.
pub const DEFAULT_CURSOR: &str = "archive";

/// What [`archive_log`] does.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// The log's named cursor that records which segments are archived (and so holds
    /// local retention until they are).
    pub cursor: String,
    /// Keep running, archiving each segment as it is sealed, until `stop` is set.
    pub follow: bool,
    /// With `follow`: how often to look for newly sealed segments.
    pub poll: Duration,
    /// Set to end a following archive after its current upload (an upload that fails is
    /// then not tried again).
    pub stop: Option<Arc<AtomicBool>>,
    /// Archive-side retention: delete archived segments whose last event is older than
    /// this (against the system clock).
    pub retain_age: Option<Duration>,
    /// Archive-side retention: delete the oldest archived segments while the archive's
    /// segment objects total more than this many bytes.
    pub retain_size: Option<u64>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        Self {
            cursor: DEFAULT_CURSOR.to_owned(),
            follow: false,
            poll: Duration::from_millis(500),
            stop: None,
            retain_age: None,
            retain_size: None,
        }
    }
}

/// Something [`archive_log`] did, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Segment `seq` was uploaded and verified (`bytes` in its object).
    Uploaded {
        /// The segment's sequence number.
        seq: u64,
        /// The segment object's length.
        bytes: u64,
    },
    /// Segment `seq` was found already archived (a previous run uploaded it).
    AlreadyArchived {
        /// The segment's sequence number.
        seq: u64,
    },
    /// Archive-side retention deleted segment `seq`'s objects.
    Deleted {
        /// The segment's sequence number.
        seq: u64,
    },
    /// A following archive met an error and will try again.
    Retrying {
        /// The error, as text.
        error: String,
    },
}

/// What [`archive_log`] did in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Segments uploaded by this run.
    pub uploaded: u64,
    /// Bytes uploaded in segment objects.
    pub bytes: u64,
    /// Segments found already archived.
    pub already: u64,
    /// Segments deleted by archive-side retention.
    pub deleted: u64,
    /// The cursor's position at the end: the next segment to archive.
    pub cursor: Option<Position>,
}

/// A segment present in the archive, as the listing shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Present {
    pub(crate) segment: Option<(Key, u64)>,
    pub(crate) index: Option<(Key, i64)>,
}

/// Uploads every sealed segment of the log at `dir` not yet archived, oldest first:
/// the segment object, verified (the MD5 the store reports for it against the bytes
/// sent, or, where the store reports something else, the object read back against the
/// CRC-32 of the segment), then its index object; then commits the log's cursor past
/// the segment. A segment with both its objects already in the archive is not
/// uploaded again (one whose index is left without its segment object is); object names are fixed by the segment, so an upload repeated after a crash
/// replaces an object with the same bytes and never makes a second one.
///
/// The cursor is created at the log's first segment before the first upload, so that
/// from then on the log's retention keeps every segment until it is archived (unless
/// the log was created with `retain_past_cursors`).
///
/// # Errors
/// [`Error::Unreachable`] or [`Error::Denied`] from the first request (no retries), the
/// log's errors, a damaged local segment ([`evstream::Error`]), an upload that does not
/// verify ([`Error::UploadMismatch`]), and [`Error::Store`] once retries are exhausted.
/// With `follow`, errors after the first request are reported through `progress` as
/// [`Progress::Retrying`] and tried again.
///
/// # Examples
/// ```no_run
/// use evstream_archive::{Archive, ArchiveOptions, Progress, Settings, archive_log};
/// # fn main() -> evstream_archive::Result<()> {
/// let archive = Archive::connect("s3://events/app", &Settings::default())?;
/// let report = archive_log("app-log".as_ref(), &archive, &ArchiveOptions::default(), |p| {
///     if let Progress::Uploaded { seq, bytes } = p {
///         eprintln!("segment {seq}: {bytes} bytes");
///     }
/// })?;
/// println!("{} segments archived, cursor at {:?}", report.uploaded, report.cursor);
/// # Ok(())
/// # }
/// ```
pub fn archive_log(
    dir: &Path,
    archive: &Archive,
    options: &ArchiveOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<ArchiveReport> {
    let log = LogReader::open(dir)?;
    let runtime = runtime()?;
    let mut report = ArchiveReport::default();
    // The first request goes without retries: a store that is down or refuses the
    // credentials is reported at once.
    let mut present = runtime.block_on(list(archive, true))?;
    loop {
        let result = runtime.block_on(pass(
            &log,
            archive,
            options,
            &mut present,
            &mut report,
            &mut progress,
        ));
        match result {
            Ok(()) => {}
            // A following archive notes the error and tries again, unless it was asked to
            // stop meanwhile: it then ends with the error.
            Err(e)
                if options.follow
                    && !stopped(options)
                    && !matches!(e, Error::Log(_) | Error::Foreign { .. }) =>
            {
                progress(&Progress::Retrying {
                    error: crate::error_chain(&e),
                });
                std::thread::sleep(options.poll.max(Duration::from_secs(1)));
                if let Ok(fresh) = runtime.block_on(list(archive, false)) {
                    present = fresh;
                }
            }
            Err(e) => return Err(e),
        }
        report.cursor = log.cursor(&options.cursor)?;
        if !options.follow || stopped(options) {
            return Ok(report);
        }
        std::thread::sleep(options.poll);
    }
}

/// Whether the caller asked a following archive to stop.
fn stopped(options: &ArchiveOptions) -> bool {
    options
        .stop
        .as_ref()
        .is_some_and(|s| s.load(Ordering::Relaxed))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            op: "start the I/O runtime",
            path: ".".into(),
            source: e,
        })
}

/// One pass: every sealed segment from the cursor on.
async fn pass(
    log: &LogReader,
    archive: &Archive,
    options: &ArchiveOptions,
    present: &mut BTreeMap<u64, Present>,
    report: &mut ArchiveReport,
    progress: &mut impl FnMut(&Progress),
) -> Result<()> {
    let segments = log.segment_files()?;
    let Some(&(first, _)) = segments.first() else {
        return Ok(());
    };
    let from = match log.cursor(&options.cursor)? {
        Some(position) => position.segment(),
        None => {
            let start = Position::new(first, STREAM_HEADER_LEN).unwrap_or(Position::from_u64(0));
            log.commit_cursor(&options.cursor, start)?;
            first
        }
    };
    let candidates: Vec<(u64, PathBuf)> = segments
        .into_iter()
        .filter(|(seq, _)| *seq >= from)
        .collect();
    let archived = |present: &BTreeMap<u64, Present>, seq: u64| {
        present.get(&seq).is_some_and(|p| p.index.is_some())
    };
    // An index whose segment object is gone (deleted in the bucket) does not make the
    // segment archived: once the index is checked to be this segment's, the segment is
    // uploaded again, and the index after it.
    let whole = |present: &BTreeMap<u64, Present>, seq: u64| {
        present.get(&seq).is_some_and(|p| p.segment.is_some())
    };
    // While one segment travels, the next is read and checked.
    let mut ahead: Option<(u64, tokio::task::JoinHandle<Result<Prep>>)> = None;
    for (at, (seq, path)) in candidates.iter().enumerate() {
        let seq = *seq;
        if stopped(options) {
            break;
        }
        if archived(present, seq) && whole(present, seq) {
            match check_archived(archive, path, present.get(&seq))? {
                Prep::Ready(_) => {}
                Prep::Gone => continue,
                Prep::NotSealed => break,
            }
            report.already += 1;
            progress(&Progress::AlreadyArchived { seq });
        } else {
            if archived(present, seq) {
                match check_archived(archive, path, present.get(&seq))? {
                    Prep::Ready(_) => {}
                    Prep::Gone => continue,
                    Prep::NotSealed => break,
                }
            }
            let handle = match ahead.take() {
                Some((ready, handle)) if ready == seq => handle,
                _ => prepare_in_background(seq, path.clone()),
            };
            let prepared = handle.await.map_err(|e| Error::Io {
                op: "read",
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
            let prepared = match prepared {
                Prep::Ready(prepared) => prepared,
                // Deleted by the log's retention since the listing (a log that retains
                // past cursors): nothing to archive.
                Prep::Gone => continue,
                // The newest segment, or one the writer has not sealed yet: later.
                Prep::NotSealed => break,
            };
            if let Some((next, next_path)) = candidates.get(at + 1)
                && !archived(present, *next)
            {
                ahead = Some((*next, prepare_in_background(*next, next_path.clone())));
            }
            let (entry, bytes) = upload_retrying(archive, options, &prepared, progress).await?;
            present.insert(seq, entry);
            report.uploaded += 1;
            report.bytes += bytes;
            progress(&Progress::Uploaded { seq, bytes });
        }
        let next =
            Position::new(seq + 1, STREAM_HEADER_LEN).unwrap_or(Position::from_u64(u64::MAX));
        log.commit_cursor(&options.cursor, next)?;
        retain(archive, options, present, report, progress).await?;
    }
    retain(archive, options, present, report, progress).await
}

/// Whether the local segment at `path` is sealed and is the one the archive holds under
/// its sequence number: the same first-event index, first and last timestamps and
/// length. [`Prep::Ready`] (with nothing prepared) if so.
///
/// # Errors
/// [`Error::Foreign`] if the archive's segment is another log's.
fn check_archived(archive: &Archive, path: &Path, present: Option<&Present>) -> Result<Prep> {
    let segment = match StreamReader::open(path) {
        Ok(segment) => segment,
        Err(evstream::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Prep::Gone);
        }
        Err(e) => return Err(e.into()),
    };
    if !segment.is_sealed() {
        return Ok(Prep::NotSealed);
    }
    let mut first = None;
    let mut last = None;
    for event in segment.iter_unverified() {
        let event = event?;
        first.get_or_insert(event.timestamp());
        last = Some(event.timestamp());
    }
    let (index_key, name) = present
        .and_then(|p| p.index.as_ref())
        .map(|(key, _)| (key.to_string(), key.filename().and_then(layout::parse_name)))
        .unwrap_or_default();
    let length = present
        .and_then(|p| p.segment.as_ref())
        .map(|(_, len)| *len);
    let same = match name {
        Some(Name::Index {
            base,
            first: f,
            last: l,
            ..
        }) => {
            base == base_of(path)
                && first.unwrap_or(i64::MIN) == f
                && last.unwrap_or(i64::MIN) == l
                && length.is_none_or(|len| len == segment.write_offset())
        }
        _ => false,
    };
    if same {
        Ok(Prep::Ready(Prepared {
            index: SegmentIndex::new(0, 0, 0),
            bytes: Bytes::new(),
        }))
    } else {
        Err(Error::Foreign {
            key: format!("s3://{}/{index_key}", archive.location.bucket()),
            path: path.to_owned(),
        })
    }
}

/// A segment read and checked, ready to upload.
#[derive(Debug)]
struct Prepared {
    index: SegmentIndex,
    bytes: Bytes,
}

#[derive(Debug)]
enum Prep {
    Ready(Prepared),
    NotSealed,
    Gone,
}

fn prepare_in_background(seq: u64, path: PathBuf) -> tokio::task::JoinHandle<Result<Prep>> {
    tokio::task::spawn_blocking(move || prepare(seq, path))
}

/// Reads segment `seq`, if sealed: every event verified (checksums and order) into the
/// index, the bytes up to the write offset, their CRC-32.
fn prepare(seq: u64, path: PathBuf) -> Result<Prep> {
    let segment = match StreamReader::open(&path) {
        Ok(segment) => segment,
        Err(evstream::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Prep::Gone);
        }
        Err(e) => return Err(e.into()),
    };
    if !segment.is_sealed() {
        return Ok(Prep::NotSealed);
    }
    let mut index = SegmentIndex::new(seq, base_of(&path), segment.capacity());
    index.seed = segment.crc_seed();
    for event in segment.iter() {
        let event = event?;
        index.note(event.offset(), event.next_offset(), event.timestamp());
    }
    let len = segment.write_offset();
    if index.len != len {
        return Err(Error::Io {
            op: "archive",
            path,
            source: std::io::Error::other("the segment's events do not reach its write offset"),
        });
    }
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    if let Err(e) = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut bytes)) {
        return Err(Error::Io {
            op: "read",
            path,
            source: e,
        });
    }
    // A sealed segment's bytes never change: these are the events just verified.
    index.crc = crc32fast::hash(&bytes);
    Ok(Prep::Ready(Prepared {
        index,
        bytes: Bytes::from(bytes),
    }))
}

/// The segment's first-event index, from its file name.
fn base_of(path: &Path) -> u64 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".evs"))
        .and_then(|n| n.split_once('-'))
        .and_then(|(_, base)| base.parse().ok())
        .unwrap_or(0)
}

/// [`upload`], tried again for [`Settings::retry_for`](crate::Settings::retry_for) when
/// it fails for a reason that may pass (the store unreachable, a server error, a
/// connection cut in the middle of a request, an upload that did not arrive as sent).
/// The objects' names are fixed by the segment, so a repeated upload replaces them with
/// the same bytes. Not once `options.stop` is set: the run then ends with the error.
async fn upload_retrying(
    archive: &Archive,
    options: &ArchiveOptions,
    prepared: &Prepared,
    progress: &mut impl FnMut(&Progress),
) -> Result<(Present, u64)> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match upload(archive, prepared).await {
            Ok(done) => return Ok(done),
            Err(
                e
                @ (Error::Unreachable { .. } | Error::Store { .. } | Error::UploadMismatch { .. }),
            ) if started.elapsed() < archive.retry_for && !stopped(options) => {
                progress(&Progress::Retrying {
                    error: crate::error_chain(&e),
                });
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Uploads a prepared segment and its index, each verified.
async fn upload(archive: &Archive, prepared: &Prepared) -> Result<(Present, u64)> {
    let index = &prepared.index;
    let bytes = prepared.bytes.clone();
    let (seq, base, len) = (index.seq, index.base, index.len);
    let key = archive.location.key(&layout::segment_name(seq, base));
    put_verified(archive, &key, bytes, index.crc).await?;
    let index_key = archive.location.key(&layout::index_name(
        seq,
        base,
        index.first_timestamp,
        index.last_timestamp,
    ));
    let index_bytes = index.encode();
    let index_crc = crc32fast::hash(&index_bytes);
    put_verified(archive, &index_key, Bytes::from(index_bytes), index_crc).await?;
    Ok((
        Present {
            segment: Some((key, len)),
            index: Some((index_key, index.last_timestamp)),
        },
        len,
    ))
}

/// Puts `bytes` at `key` and checks that the store holds them.
async fn put_verified(archive: &Archive, key: &Key, bytes: Bytes, crc: u32) -> Result<()> {
    // The digest is computed while the bytes travel.
    let digest = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || {
            Md5::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
    };
    archive.count();
    let result = archive
        .store
        .put(key, PutPayload::from_bytes(bytes))
        .await
        .map_err(|e| archive.error("upload", key, e))?;
    let sent = digest.await.map_err(|e| Error::Io {
        op: "compute the MD5 of",
        path: key.as_ref().into(),
        source: std::io::Error::other(e),
    })?;
    let etag = result
        .e_tag
        .as_deref()
        .map(|t| t.trim_matches('"').to_ascii_lowercase());
    match etag {
        Some(stored) if stored.len() == 32 && stored.bytes().all(|b| b.is_ascii_hexdigit()) => {
            if stored != sent {
                return Err(Error::UploadMismatch {
                    key: key.to_string(),
                    sent: format!("MD5 {sent}"),
                    stored: format!("MD5 {stored}"),
                });
            }
        }
        // Not a plain MD5 (encryption with KMS, a store of another kind): read it back.
        _ => {
            archive.count();
            let back = archive
                .store
                .get(key)
                .await
                .map_err(|e| archive.error("read", key, e))?
                .bytes()
                .await
                .map_err(|e| archive.error("read", key, e))?;
            let stored = crc32fast::hash(&back);
            if stored != crc {
                return Err(Error::UploadMismatch {
                    key: key.to_string(),
                    sent: format!("CRC-32 {crc:08x}"),
                    stored: format!("CRC-32 {stored:08x}"),
                });
            }
        }
    }
    Ok(())
}

/// What a listing of the archive's prefix found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The archive's objects directly under the prefix, by segment.
    pub(crate) present: BTreeMap<u64, Present>,
    /// Up to [`NESTED`] prefixes below it that hold objects under an archive's names,
    /// first in key order: where an archive may be, when there is none under the prefix.
    pub(crate) nested: Vec<String>,
}

/// How many prefixes [`Listing::nested`] holds at most.
const NESTED: usize = 3;

/// What the archive holds, by segment.
pub(crate) async fn list(archive: &Archive, first: bool) -> Result<BTreeMap<u64, Present>> {
    Ok(listing(archive, first).await?.present)
}

/// What the archive holds, by segment, and where below the prefix other archives are.
pub(crate) async fn listing(archive: &Archive, first: bool) -> Result<Listing> {
    let store = if first {
        &archive.probe
    } else {
        &archive.store
    };
    let prefix = archive.location.prefix_key();
    archive.count();
    let objects: Vec<_> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| archive.error("list", prefix, e))?;
    let mut found = Listing::default();
    let present = &mut found.present;
    for meta in objects {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        // Only objects directly under the prefix.
        if meta.location.prefix_match(prefix).map(|p| p.count()) != Some(1) {
            if let Some((below, _)) = meta.location.as_ref().rsplit_once('/')
                && layout::parse_name(name).is_some()
                && found.nested.len() < NESTED
                && !found.nested.iter().any(|known| known == below)
            {
                found.nested.push(below.to_owned());
            }
            continue;
        }
        match layout::parse_name(name) {
            Some(Name::Segment { seq, .. }) => {
                present.entry(seq).or_default().segment = Some((meta.location.clone(), meta.size));
            }
            Some(Name::Index { seq, last, .. }) => {
                present.entry(seq).or_default().index = Some((meta.location.clone(), last));
            }
            None => {}
        }
    }
    Ok(found)
}

/// Archive-side retention: deletes whole archived segments, oldest first, never the
/// newest. The index goes first (a reader then no longer sees the segment), then the
/// segment object. It first deletes the segment objects that an earlier run left below
/// the oldest archived segment, stopped between those two deletes: no reader reads them,
/// and their bytes would count against `retain_size` in place of archived segments.
async fn retain(
    archive: &Archive,
    options: &ArchiveOptions,
    present: &mut BTreeMap<u64, Present>,
    report: &mut ArchiveReport,
    progress: &mut impl FnMut(&Progress),
) -> Result<()> {
    if options.retain_age.is_none() && options.retain_size.is_none() {
        return Ok(());
    }
    let oldest = present
        .iter()
        .find(|(_, p)| p.index.is_some())
        .map(|(seq, _)| *seq);
    let leftovers: Vec<(u64, Key)> = present
        .range(..oldest.unwrap_or(0))
        .filter(|(_, p)| p.index.is_none())
        .filter_map(|(seq, p)| p.segment.as_ref().map(|(key, _)| (*seq, key.clone())))
        .collect();
    for (seq, key) in leftovers {
        archive.count();
        archive
            .store
            .delete(&key)
            .await
            .map_err(|e| archive.error("delete", &key, e))?;
        present.remove(&seq);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    loop {
        let complete: Vec<u64> = present
            .iter()
            .filter(|(_, p)| p.index.is_some())
            .map(|(seq, _)| *seq)
            .collect();
        let [oldest, _, ..] = complete.as_slice() else {
            return Ok(());
        };
        let total: u64 = present
            .values()
            .filter_map(|p| p.segment.as_ref().map(|(_, size)| *size))
            .sum();
        let Some(entry) = present.get(oldest) else {
            return Ok(());
        };
        let last = entry.index.as_ref().map_or(i64::MIN, |(_, last)| *last);
        let too_old = options.retain_age.is_some_and(|age| {
            let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
            last < now.saturating_sub(age)
        });
        let too_big = options.retain_size.is_some_and(|limit| total > limit);
        if !too_old && !too_big {
            return Ok(());
        }
        let seq = *oldest;
        for key in [
            entry.index.as_ref().map(|(k, _)| k.clone()),
            entry.segment.as_ref().map(|(k, _)| k.clone()),
        ]
        .into_iter()
        .flatten()
        {
            archive.count();
            archive
                .store
                .delete(&key)
                .await
                .map_err(|e| archive.error("delete", &key, e))?;
        }
        present.remove(&seq);
        report.deleted += 1;
        progress(&Progress::Deleted { seq });
    }
}
