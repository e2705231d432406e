//! The one writer of a stream: creation, recovery on open, appends, and durability.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use zerocopy::little_endian::{I64, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::error::{Corruption, Error, Result};
use crate::failpoint::failpoint;
use crate::format::{
    self, EVENT_HEADER_LEN, EventHeader, MIN_CAPACITY, STREAM_HEADER_LEN, StreamHeader,
    TRAILER_SLOT_LEN, Trailer,
};
use crate::stream::open::{
    HeldLock, LockKind, lock_exclusive, now_nanos, open_regular, read_identity, read_other_record,
    read_stream_header,
};
use crate::sys::{self, Prefaulter, Presence, WriteMap};

/// The page size assumed when clearing stale bytes; a multiple of every disk sector.
const PAGE: u64 = 4096;

/// Default of [`WriterOptions::huge_pages`].
const HUGE_PAGES_DEFAULT: bool = false;

/// How the writer maps pages ahead of the write cursor.
///
/// The first write to each 4 KiB page of a fresh mapping takes a page fault that costs
/// microseconds; prefaulting ahead of the cursor in large chunks moves that cost off the
/// append path. On kernels without `MADV_POPULATE_WRITE` (before Linux 5.14) prefaulting
/// quietly does nothing and appends fault page by page.
///
/// # Latency
/// Measured in `docs/BENCHMARKS.md` (1 KiB appends into a fresh stream, 2-core VM):
/// [`Inline`](Self::Inline) and [`StreamWriter::prefault_all`] meet an append p99.9 of
/// at most 1 µs (medians 521 ns and 620 ns). [`Background`](Self::Background) does when
/// appends are paced (p99.9 781 ns at one append every 2 µs) but falls behind an appender
/// that runs flat out: that appender writes ~10 GB/s while the thread populates ~1.5 GB/s,
/// so it overtakes the thread and faults itself (p99.9 12 µs). Inline pays instead with
/// one slow append per chunk (a few milliseconds for the default 4 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Prefault {
    /// No prefaulting: every first touch of a page faults inside `append`.
    Off,
    /// `append` itself prefaults the next chunk when the cursor gets within a chunk of the
    /// prefaulted end: one slow append per chunk instead of one fault per page.
    Inline,
    /// A background thread keeps the pages ahead of the cursor prefaulted, so appends
    /// rarely fault at all. Costs one thread per writer, and an appender that runs flat
    /// out overtakes it (see [Latency](#latency)).
    ///
    /// The same thread unmaps the pages behind the cursor (their write-back then costs
    /// the appending CPU no TLB shootdowns) and syncs the trailer record that moves the
    /// dirty limit ahead, stored half a step early, so that appends do not wait for that
    /// sync. In the other modes the append that reaches the limit syncs the raise itself,
    /// once every 32 MiB (milliseconds when write-back is in flight). In every mode the
    /// first append after an open that follows a clean close syncs it: a closing writer
    /// brings the limit back to its write offset, so that opens scan nothing past it.
    ///
    /// A woken thread may wait milliseconds for a CPU (on two CPUs, behind the appender
    /// itself), and pages it populated may be written back before the appender gets to
    /// them, which write-protects them again. So while the thread has not yet reported
    /// the pages ahead of the appender populated, the appender populates them itself,
    /// 64 KiB at a time, rather than fault on every page: from the writer's creation or
    /// open, and from the first append after a flush (after which the appender may have
    /// paused while the kernel wrote those pages back), at most once every 100 ms. One
    /// append in every 64 KiB then takes tens of microseconds more, until the thread has
    /// caught up (a few appends, where hundreds would each fault), or for one chunk at
    /// most ([`WriterOptions::prefault_chunk`]): past that the appender runs flat out
    /// and outruns the thread for good.
    #[default]
    Background,
}

/// Options for [`StreamWriter::create_with`] and [`StreamWriter::open_with`].
#[derive(Debug, Clone)]
pub struct WriterOptions {
    prefault: Prefault,
    prefault_chunk: u64,
    recover_torn_tail: bool,
    pub(crate) check_durable: bool,
    huge_pages: bool,
    /// Created with the dirty limit at the end of the event area (see
    /// [`reserve_whole`](Self::reserve_whole)).
    reserve_whole: bool,
    /// Created as version 3, with a CRC seed drawn at random (a log's segments).
    seeded: bool,
    /// How long the pages behind the write offset stay mapped before the prefaulting
    /// thread unmaps them (see [`keep_mapped`](Self::keep_mapped)); zero: at once.
    keep_mapped: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            prefault: Prefault::default(),
            prefault_chunk: 4 << 20,
            recover_torn_tail: true,
            check_durable: false,
            huge_pages: HUGE_PAGES_DEFAULT,
            reserve_whole: false,
            seeded: false,
            keep_mapped: Duration::ZERO,
        }
    }
}

impl WriterOptions {
    /// How pages ahead of the cursor are prefaulted (default [`Prefault::Background`]).
    pub fn prefault(mut self, prefault: Prefault) -> Self {
        self.prefault = prefault;
        self
    }

    /// Bytes prefaulted at a time (default 4 MiB, rounded up to whole 4 KiB pages).
    /// The background thread stays up to four chunks ahead of the cursor.
    pub fn prefault_chunk(mut self, bytes: u64) -> Self {
        self.prefault_chunk = bytes.max(1).div_ceil(PAGE) * PAGE;
        self
    }

    /// Whether to ask for transparent huge pages on the writer's mapping (default `false`).
    ///
    /// With `true` the writer advises its mapping `MADV_HUGEPAGE`, so the page cache behind
    /// it is filled in folios of up to 2 MiB instead of 4 KiB pages. That makes the first
    /// touch of fresh pages much cheaper and lets later readers map the file faster, but
    /// the kernel tracks dirtiness per folio, so a [`flush`](StreamWriter::flush) writes
    /// back every dirty folio it touches whole.
    ///
    /// Measured on the development machine (`docs/BENCHMARKS.md`, 10,000 events of 1 KiB):
    /// creating and filling a stream took ~7 ms instead of ~11 ms (1.34x `BufWriter`
    /// 8 KiB instead of 0.93x), and a verified replay of the file with the open timed went
    /// from 1.31x to 1.90x a `BufReader` parse. But past a stream's first few megabytes an
    /// append followed by a flush took 1.5x to 3.4x as long (~680 µs instead of ~200 µs),
    /// each flush writing 2 MiB instead of 68 KiB to 1 MiB; flushing every 100 KiB, from
    /// no difference to 1.4x. Turn it on for streams that are filled fast
    /// and flushed rarely; leave it off when every few events are flushed.
    ///
    /// # Platform-specific behavior
    /// Advice only. It takes effect on Linux with transparent huge pages set to `always`
    /// or `madvise` (`/sys/kernel/mm/transparent_hugepage/enabled`) and a file system
    /// whose page cache holds large folios (ext4 and XFS on recent kernels); elsewhere
    /// the kernel refuses or ignores it and the writer behaves as with `false`. The
    /// stream's bytes and durability guarantees are the same either way.
    pub fn huge_pages(mut self, huge_pages: bool) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// [`StreamWriter::create_with`] makes the whole event area the dirty limit, so that
    /// appends never wait for a raise; dropping the writer brings the limit back (see
    /// `StreamWriter::reserve_whole`). For a log's segments, created ahead of use.
    pub(crate) fn reserve_whole(mut self) -> Self {
        self.reserve_whole = true;
        self
    }

    /// Whether [`StreamWriter::open_with`] also checks every event below the durable
    /// watermark (default `false`).
    ///
    /// By default opening checks only the events above the watermark, which a power loss
    /// can have torn, so it costs what is not yet durable rather than the whole stream.
    /// With `true` it checks the whole stream first, like
    /// [`StreamReader::verify`](crate::StreamReader::verify), and refuses damage below the
    /// watermark with [`Error::Corrupt`], leaving the file unchanged.
    pub fn check_durable(mut self, check: bool) -> Self {
        self.check_durable = check;
        self
    }

    /// Whether [`StreamWriter::open_with`] may truncate a torn tail (default `true`).
    ///
    /// With `false`, a torn tail is refused with [`Error::Corrupt`] like any other damage
    /// and the file is left unchanged, so it can be inspected first.
    pub fn recover_torn_tail(mut self, recover: bool) -> Self {
        self.recover_torn_tail = recover;
        self
    }

    /// Creates the stream as format version 3, its events' checksums seeded with a CRC
    /// seed drawn at random (a log's segments, which the log may recycle).
    pub(crate) fn seeded(mut self) -> Self {
        self.seeded = true;
        self
    }

    /// With [`Prefault::Background`], keeps the pages behind the write offset mapped for
    /// `time` after the writer passed them, before its prefaulting thread unmaps them
    /// (at once by default): a log whose retired segments are recycled soon after (lazy
    /// write-back) writes their next life through the same page-table entries, with no
    /// fault ([`StreamWriter::warm_mapping`]). Pages still mapped when the kernel writes
    /// them back cost the appending CPU a TLB shootdown each, which is why the time is
    /// short and eager write-back, which writes a retired segment back at once, keeps
    /// none.
    pub(crate) fn keep_mapped(mut self, time: Duration) -> Self {
        self.keep_mapped = time;
        self
    }
}

/// A CRC seed for a version 3 stream, drawn at random: valid
/// ([`format::seed_is_valid`]) and none of `avoid` (the seeds of the file's previous
/// life).
pub(crate) fn draw_seed(avoid: &[u32]) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    loop {
        // `RandomState` keys come from the operating system's randomness (once per
        // thread, then varied per call); the clock and a counter vary them further.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(now_nanos());
        hasher.write_u32(std::process::id());
        hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
        let bits = hasher.finish();
        let seed = (bits ^ (bits >> 32)) as u32;
        if format::seed_is_valid(seed) && !avoid.contains(&seed) {
            return seed;
        }
    }
}

/// What [`StreamWriter::open`] repaired; see [`StreamWriter::recovery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Where the torn tail began and why its first event failed, if there was one.
    pub torn_at: Option<(u64, Corruption)>,
    /// Events the header counted that were dropped with the torn tail.
    pub dropped_events: u64,
    /// Bytes between the torn event and the header's write offset that were dropped.
    pub dropped_bytes: u64,
    /// The header's event count was one short of the events found (a writer stopped
    /// between publishing an event's offset and its count) and was corrected.
    pub count_repaired: bool,
    /// Length of the span past the write offset that held bytes of an append that never
    /// published (a writer stopped mid-append), now zeroed.
    pub stale_bytes_cleared: u64,
}

impl Recovery {
    /// Whether the stream was opened exactly as it was found.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Appends events to a stream file. One per file, across all processes.
///
/// A writer holds the file's exclusive lock for its whole life and maps the file read-write.
/// Each append writes the event's bytes past the write offset, then publishes them by
/// storing the new write offset (with `Release` ordering) and then the event count, so
/// readers, in this process or others, only ever see whole events.
///
/// # Durability
/// - **Process crash:** every append that returned `Ok` survives: its bytes are in the
///   kernel's page cache, which outlives the process.
/// - **Power loss or kernel crash:** what the last successful [`flush`](Self::flush)
///   covered survives. Later appends may be partly on disk; the next
///   [`open`](Self::open) truncates such a torn tail (see [`Recovery`]).
/// - Dropping a writer does not flush.
///
/// The file must be changed only through evstream while it is open: see the
/// [safety contract](crate#safety-contract).
#[derive(Debug)]
pub struct StreamWriter {
    path: PathBuf,
    map: WriteMap,
    capacity: u64,
    /// End of the event area: the trailer's offset.
    events_end: u64,
    write_offset: u64,
    event_count: u64,
    last_timestamp: Option<i64>,
    synced_to: u64,
    poisoned: bool,
    /// An [`append_with`](Self::append_with) fill panicked (a caller caught the unwind and
    /// kept the writer): bytes past the write offset may hold its payload, so neither the
    /// drop nor [`close_clean`](Self::close_clean) may vouch that they are as a clean
    /// writer leaves them.
    fill_panicked: bool,
    /// Events found above the watermark on open, which the first flush reads back from
    /// the device before it moves the watermark over them.
    read_back: Option<(u64, u64)>,
    /// The current trailer record, as last stored in the mapping.
    trailer: Trailer,
    /// The dirty limit of a record known to be on stable storage: no append writes past
    /// it before a record with a higher limit is.
    durable_limit: u64,
    /// Appends that end past this take the slow path of [`reserve_bytes`](Self::reserve_bytes):
    /// the durable limit, or half a step before it, where the next raise is stored and
    /// handed to the background thread to sync.
    dirty_check: u64,
    /// The background sync of the current record, when it raised the limit and is not
    /// known to be synced yet.
    pending_raise: Option<u64>,
    recovery: Recovery,
    prefault: Prefaulting,
    // Holds the exclusive lock; dropped last.
    _lock: HeldLock,
}

impl Drop for StreamWriter {
    /// Brings the dirty limit back to the write offset, so that the next open has no
    /// stale bytes to look for (its first append raises the limit again). Stored,
    /// not synced: nothing past the write offset was written, so the lower limit is safe
    /// whether it reaches the disk or not. Not after a panic (an append cut short may
    /// have written past the offset), for a sealed stream, or for a poisoned writer.
    fn drop(&mut self) {
        let lowered = self.write_offset;
        if self.trailer.dirty_limit > lowered
            && !self.trailer.sealed
            && !self.poisoned
            && !self.fill_panicked
            && !std::thread::panicking()
        {
            self.trailer = store_trailer(
                &self.map,
                &self.trailer,
                Trailer {
                    dirty_limit: lowered,
                    ..self.trailer
                },
            );
        }
    }
}

/// What a stream writer that closed cleanly left behind ([`StreamWriter::close_clean`]):
/// enough for the next writer of the same boot to open the stream without validating the
/// events above the watermark ([`StreamWriter::open_clean`]). The file's identity (device,
/// inode, CRC seed, generation) and its counters as the writer left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanStream {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) seed: u32,
    pub(crate) generation: u64,
    pub(crate) durable_offset: u64,
    pub(crate) durable_count: u64,
    pub(crate) write_offset: u64,
    pub(crate) event_count: u64,
    pub(crate) last_timestamp: Option<i64>,
    /// The dirty limit the writer left (not brought back to the write offset), and
    /// whether a record with it reached stable storage.
    pub(crate) dirty_limit: u64,
    pub(crate) limit_synced: bool,
}

impl StreamWriter {
    /// Creates a stream of `capacity` bytes at `path` with default options.
    ///
    /// See [`create_with`](Self::create_with).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// writer.append(1_700_000_000_000_000_000, b"hello")?;
    /// writer.flush()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create(path: impl AsRef<Path>, capacity: u64) -> Result<Self> {
        Self::create_with(path, capacity, WriterOptions::default())
    }

    /// Creates a stream of `capacity` bytes at `path`, fully allocated, and opens it.
    ///
    /// The file is built under a temporary name in the same directory, its blocks are
    /// reserved (`posix_fallocate`, so writes through the mapping can never meet a full
    /// disk), its header is written and synced, and only then is it renamed into place
    /// and the directory synced. No reader ever sees a half-made stream.
    ///
    /// # Errors
    /// - [`Error::AlreadyExists`] if `path` exists; it is never replaced.
    /// - [`Error::BadCapacity`] if `capacity` is below [`format::MIN_CAPACITY`] (1536
    ///   bytes: a sector for the header and events, and the trailer) or exceeds what this
    ///   platform can map.
    /// - [`Error::Io`] if the directory cannot be written or the disk cannot hold
    ///   `capacity` bytes; no file is left behind.
    ///
    /// # Examples
    /// A stream whose appends never fault (every page mapped up front), for a
    /// latency-critical writer:
    /// ```
    /// use evstream::{Prefault, StreamWriter, WriterOptions};
    ///
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("ticks.evs");
    /// let options = WriterOptions::default().prefault(Prefault::Inline);
    /// let mut writer = StreamWriter::create_with(&path, 4 << 20, options)?;
    /// writer.append_now(b"tick")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_with(
        path: impl AsRef<Path>,
        capacity: u64,
        options: WriterOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let maximum = isize::MAX as u64;
        if !(MIN_CAPACITY..=maximum).contains(&capacity) {
            return Err(Error::BadCapacity {
                path: path.to_owned(),
                capacity,
                minimum: MIN_CAPACITY,
                maximum,
            });
        }
        if path.symlink_metadata().is_ok() {
            return Err(Error::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let name = path.file_name().ok_or_else(|| Error::NotAFile {
            path: path.to_owned(),
            kind: "path without a file name",
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        remove_abandoned_temps(&dir, &prefix);
        let start = now_nanos();
        let (temp, file) = create_temp(&dir, &prefix).map_err(|e| Error::io("create", path, e))?;
        let mut cleanup = RemoveOnDrop(Some(temp.clone()));
        lock_exclusive(&file, path)?;
        sys::preallocate(&file, capacity).map_err(|e| Error::io("preallocate", path, e))?;
        failpoint!("create:after_preallocate");
        let header = StreamHeader {
            write_offset: U64::new(STREAM_HEADER_LEN),
            event_count: U64::ZERO,
            start_timestamp: I64::new(start),
        };
        file.write_all_at(header.as_bytes(), 0)
            .map_err(|e| Error::io("write header of", path, e))?;
        let trailer_at = format::trailer_offset(capacity).unwrap_or(capacity);
        let trailer = Trailer {
            dirty_limit: if options.reserve_whole {
                trailer_at
            } else {
                dirty_step_past(STREAM_HEADER_LEN, trailer_at)
            },
            seed: if options.seeded { draw_seed(&[]) } else { 0 },
            ..Trailer::empty()
        };
        file.write_all_at(
            trailer.encode().as_bytes(),
            trailer_at + Trailer::slot(trailer.sequence) * TRAILER_SLOT_LEN,
        )
        .map_err(|e| Error::io("write trailer of", path, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
        failpoint!("create:after_header");
        sys::rename_noreplace(&temp, path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                path: path.to_owned(),
            },
            _ => Error::io("rename into place", path, e),
        })?;
        cleanup.0 = None;
        failpoint!("create:after_rename");
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", &dir, e))?;
        let map = WriteMap::new(&file, capacity, options.huge_pages, trailer_at)
            .map_err(|e| Error::io("map", path, e))?;
        Ok(Self::assemble(
            path,
            file,
            map,
            options,
            (trailer, true),
            0,
            None,
            Recovery::default(),
        ))
    }

    /// Opens an existing stream to append to it, with default options.
    ///
    /// See [`open_with`](Self::open_with) for what is checked and repaired.
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    ///
    /// # Examples
    /// Resuming a stream after a restart, and learning what the previous run left:
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// # drop(evstream::StreamWriter::create(&path, 1 << 20)?);
    /// let mut writer = evstream::StreamWriter::open(&path)?;
    /// if !writer.recovery().is_clean() {
    ///     eprintln!("recovered: {:?}", writer.recovery());
    /// }
    /// writer.append_now(b"service started")?;
    /// writer.flush()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, WriterOptions::default())
    }

    /// Opens an existing stream to append to it, checking what is not yet durable.
    ///
    /// Takes the exclusive writer lock, checks the file's identity (the trailer's magic
    /// and version) before anything else, then the header, then every event's checksum
    /// and timestamp order **from the durable watermark up** to the write offset: the
    /// open costs what the last flush did not cover, not the whole stream (see
    /// [`WriterOptions::check_durable`] for a full check). What it repairs is reported by
    /// [`recovery`](Self::recovery):
    /// - a **torn tail**: damage above the watermark, which a power loss can leave (pages
    ///   written since the last flush reach the disk in any order). The stream is
    ///   truncated to the last valid event, the dropped bytes zeroed, and the
    ///   [generation](Self::generation) incremented. Nothing below the watermark is ever
    ///   dropped;
    /// - a wrong **event count** (derived data: the durable count plus the events above
    ///   the watermark), left by a writer that stopped between its header stores;
    /// - **stale bytes** past the write offset from an append that never published.
    ///
    /// # Errors
    /// Refused errors leave the file byte for byte unchanged.
    /// - [`Error::NotAStream`] for a file that is not a stream of version 2 or 3,
    ///   [`Error::DamagedTrailer`] for a damaged trailer.
    /// - [`Error::Locked`] if another writer holds the stream (after a grace period of
    ///   20 ms for a lock that is being released).
    /// - [`Error::ReadersPresent`] if a torn tail must be dropped while a
    ///   [`StreamReader`](crate::StreamReader) has the stream open, in any process.
    /// - [`Error::Corrupt`] for damage below the watermark with
    ///   [`check_durable`](WriterOptions::check_durable), or for any damage with
    ///   [`recover_torn_tail(false)`](WriterOptions::recover_torn_tail), naming the offset
    ///   of the first damaged event and the watermark.
    /// - [`Error::BadHeader`] for a write offset outside the event area or below the
    ///   watermark.
    /// - [`Error::NotAFile`], or [`Error::Io`] for a missing path or lacking permission,
    ///   or for a handover record that shared writers left in `NAME.turn`
    ///   ([`SharedStreamWriter`](crate::SharedStreamWriter)) that this open cannot
    ///   invalidate (it zeroes the record's magic before it changes the stream).
    pub fn open_with(path: impl AsRef<Path>, options: WriterOptions) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = open_regular(path, true)?;
        lock_exclusive(&file, path)?;
        failpoint!("open:after_lock");
        // Identity first: nothing else of the file is read, mapped or trusted before it.
        let identity = read_identity(&file, path, len)?;
        let header = read_stream_header(&file, path, &identity)?;
        let trailer = identity.trailer;
        let watermark = trailer.durable_offset;
        let mut map = WriteMap::new(&file, len, options.huge_pages, identity.trailer_at)
            .map_err(|e| Error::io("map", path, e))?;

        let old_offset = header.write_offset.get();
        let header_count = header.event_count.get();
        let published = map.published();
        let corrupt = |offset: u64, reason| Error::Corrupt {
            path: path.to_owned(),
            offset,
            watermark,
            reason,
        };
        let watermark_pos = (watermark - STREAM_HEADER_LEN) as usize;
        if options.check_durable {
            format::check_durable(
                trailer.seed,
                published,
                (
                    watermark_pos,
                    trailer.durable_count,
                    trailer.durable_last_timestamp,
                ),
            )
            .map_err(|(pos, reason)| corrupt(STREAM_HEADER_LEN + pos as u64, reason))?;
        }
        // Events below the watermark are on stable storage: only what lies above it can
        // be a torn tail, so only that is checked.
        let scan = format::scan_from(
            trailer.seed,
            published,
            watermark_pos,
            trailer.durable_last_timestamp,
        );
        // Before a torn tail is dropped from the watermark up: is the watermark where an
        // event ends? (A record can pass its checksum and still lie about that.)
        if format::torn_at_watermark(&scan, watermark_pos) {
            let other = read_other_record(&file, identity.trailer_at, &trailer);
            format::check_watermark(
                published,
                format::watermark_walk_start(&trailer, other),
                (
                    watermark_pos,
                    trailer.durable_count,
                    trailer.durable_last_timestamp,
                ),
            )
            .map_err(|(pos, reason)| corrupt(STREAM_HEADER_LEN + pos as u64, reason))?;
        }
        let found = trailer.durable_count + scan.count;
        let mut recovery = Recovery::default();
        if let Some((pos, reason)) = scan.damage {
            let offset = STREAM_HEADER_LEN + pos as u64;
            if !options.recover_torn_tail {
                return Err(corrupt(offset, reason));
            }
            recovery.torn_at = Some((offset, reason));
            recovery.dropped_events = header_count.saturating_sub(found);
            recovery.dropped_bytes = old_offset - offset;
        }
        // The count is derived data (the durable count plus the events above the
        // watermark): a writer that stopped between its header stores leaves it off.
        recovery.count_repaired = recovery.torn_at.is_none() && header_count != found;

        // Validation passed: from here on the file may change. A handover record left
        // for the processes' turn is not to be trusted after this writer.
        crate::turn::void_record::<Self>(path)?;
        let new_offset = STREAM_HEADER_LEN + scan.valid_len as u64;
        let mut trailer = trailer;
        let dirty_limit = trailer.dirty_limit.max(old_offset);
        // Where this open brings a limit it finds far ahead: about `DIRTY_STEP` past the
        // write offset.
        let wanted = dirty_step_past(new_offset, map.events_end());
        // Dropping a torn tail rewrites bytes that readers may have seen (they were
        // published): only with no reader present, which the presence lock ensures until
        // it is released below (a reader waits for it). Everything else this open writes
        // lies past the write offset, where readers never look.
        let rewriting = recovery.torn_at.is_some();
        if rewriting {
            match sys::set_presence(&file, Presence::Rewriter) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Error::ReadersPresent {
                        path: path.to_owned(),
                    });
                }
                Err(e) => return Err(Error::io("lock reader presence of", path, e)),
            }
        }
        if recovery.torn_at.is_some() {
            // Readers polling the trailer learn of the recovery before any byte changes.
            trailer = store_trailer(
                &map,
                &trailer,
                Trailer {
                    generation: trailer.generation + 1,
                    ..trailer
                },
            );
            failpoint!("open:after_generation");
        }
        if recovery.torn_at.is_some() || recovery.count_repaired {
            map.publish(new_offset, found);
            failpoint!("open:after_truncate");
        }
        // The dropped bytes: only pages that hold anything, skipping holes, so that a
        // header that lies about a sparse file never makes recovery allocate its length.
        clear_stale(&mut map, &file, new_offset, old_offset);
        // Then up to the dirty limit, the end of what may ever have been written: past
        // it the bytes are as the file was created, and a writer that closed brought it
        // back to its write offset, so the open after a clean close reads nothing here.
        recovery.stale_bytes_cleared = clear_stale(&mut map, &file, old_offset, dirty_limit);
        failpoint!("open:after_zero");
        let touched_end = old_offset + recovery.stale_bytes_cleared;
        // Whether the record this writer starts from is known to be on stable storage.
        let mut trailer_synced = false;
        if touched_end > new_offset || recovery.count_repaired || recovery.torn_at.is_some() {
            map.sync_range(0, touched_end)
                .and_then(|()| sync_trailer(&map, &trailer))
                .map_err(|e| Error::io("msync", path, e))?;
            trailer_synced = true;
        }
        if rewriting {
            sys::set_presence(&file, Presence::Unlock)
                .map_err(|e| Error::io("unlock reader presence of", path, e))?;
        }
        // Everything from the write offset to the dirty limit is zero now. A limit far
        // ahead (as `upgrade_v1`, or a writer that died with a reserved segment, leaves
        // it) is brought back about `DIRTY_STEP` past the events, so that later opens
        // scan little. Any other limit is left as found, so that an open that repairs
        // nothing writes nothing; the appends raise it when they reach it (at once after
        // a writer that closed, which left it at its write offset).
        if dirty_limit > wanted.saturating_add(DIRTY_STEP) {
            // The bytes cleared above must be zero on the disk before a record that no
            // longer covers them is.
            map.sync_range(new_offset, dirty_limit.saturating_sub(new_offset))
                .map_err(|e| Error::io("msync", path, e))?;
            trailer = store_trailer(
                &map,
                &trailer,
                Trailer {
                    dirty_limit: wanted,
                    ..trailer
                },
            );
            sync_trailer(&map, &trailer).map_err(|e| Error::io("msync", path, e))?;
            trailer_synced = true;
        }
        // The events above the watermark may sit in pages whose write-back failed: the
        // kernel then marks them clean, and a later `msync` would succeed without writing
        // them. Writing them again (the same bytes, from the mapping) makes them dirty, so
        // the first flush really puts them on disk, or fails.
        let durable = trailer.durable_offset;
        if new_offset > durable {
            redirty(&map, &file, durable, new_offset).map_err(|e| Error::io("rewrite", path, e))?;
        }
        Ok(Self::assemble(
            path,
            file,
            map,
            options,
            (trailer, trailer_synced),
            found,
            scan.last_timestamp,
            recovery,
        ))
    }

    /// Opens the stream at `path` to append to it after a writer of this boot closed it
    /// cleanly and said what it left (`clean`): the same writer as [`open_with`](Self::open_with)
    /// gives, without validating the events above the watermark (a clean writer wrote
    /// them and the page cache holds them) and without rewriting them. `None`, with
    /// nothing changed, unless the file is that stream exactly as `clean` says: same
    /// device and inode, seed, generation, watermark, write offset, event count, dirty
    /// limit, not sealed. The first flush
    /// still reads the events above the watermark back from the device, as after
    /// [`open_with`](Self::open_with).
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with) for a file that is not a stream or is locked.
    pub(crate) fn open_clean(
        path: &Path,
        options: WriterOptions,
        clean: &CleanStream,
    ) -> Result<Option<Self>> {
        use std::os::unix::fs::MetadataExt;
        let (file, len) = open_regular(path, true)?;
        lock_exclusive(&file, path)?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if (meta.dev(), meta.ino()) != (clean.dev, clean.ino) {
            return Ok(None);
        }
        let identity = read_identity(&file, path, len)?;
        let header = read_stream_header(&file, path, &identity)?;
        let trailer = identity.trailer;
        let same = !trailer.sealed
            && trailer.seed == clean.seed
            && trailer.generation == clean.generation
            && trailer.durable_offset == clean.durable_offset
            && trailer.durable_count == clean.durable_count
            && trailer.dirty_limit == clean.dirty_limit
            && clean.dirty_limit >= clean.write_offset
            && header.write_offset.get() == clean.write_offset
            && header.event_count.get() == clean.event_count
            && clean.event_count >= clean.durable_count
            && (clean.event_count == 0) == clean.last_timestamp.is_none();
        // What the record says of the bytes past the write offset (that no writer wrote
        // there since), checked where an append that did not publish would have left its
        // event: at the write offset.
        if !same
            || event_at(
                &file,
                clean.write_offset,
                clean.seed,
                clean.dirty_limit.min(identity.trailer_at),
            )
        {
            return Ok(None);
        }
        let map = WriteMap::new(&file, len, options.huge_pages, identity.trailer_at)
            .map_err(|e| Error::io("map", path, e))?;
        Ok(Some(Self::assemble(
            path,
            file,
            map,
            options,
            (trailer, clean.limit_synced),
            clean.event_count,
            clean.last_timestamp,
            Recovery::default(),
        )))
    }

    /// Closes the writer, and says what it left if it leaves the stream clean for
    /// [`open_clean`](Self::open_clean): not poisoned, not sealed. Unlike a drop it
    /// leaves the dirty limit where it is (nothing was written between the write offset
    /// and it), so that the next writer need not raise it again; a full open after it
    /// clears and brings back what lies there, as after a crash. `None` (and closed as
    /// a drop does) otherwise. `before_unlock` runs with what it left before the file's
    /// writer lock is released.
    pub(crate) fn close_clean(
        mut self,
        before_unlock: impl FnOnce(&CleanStream),
    ) -> Option<CleanStream> {
        use std::os::unix::fs::MetadataExt;
        if self.poisoned || self.trailer.sealed || self.fill_panicked || std::thread::panicking() {
            return None;
        }
        let meta = self._lock.file().metadata().ok()?;
        let clean = CleanStream {
            dev: meta.dev(),
            ino: meta.ino(),
            seed: self.trailer.seed,
            generation: self.trailer.generation,
            durable_offset: self.trailer.durable_offset,
            durable_count: self.trailer.durable_count,
            write_offset: self.write_offset,
            event_count: self.event_count,
            last_timestamp: self.last_timestamp,
            dirty_limit: self.trailer.dirty_limit,
            limit_synced: self.durable_limit >= self.trailer.dirty_limit,
        };
        // The drop brings a limit above the write offset back to it: this copy of the
        // record (the file's is left as it is) tells it there is nothing to do.
        self.trailer.dirty_limit = self.write_offset;
        // The prefaulting thread is told to stop, not waited for: the next holder of the
        // turn need not wait while it finishes a chunk (it only maps pages, and unmaps
        // the file when it ends).
        if let Prefaulting::Background(pretoucher) =
            std::mem::replace(&mut self.prefault, Prefaulting::Off)
        {
            pretoucher.detach();
        }
        // The mapping outlives the writer here: if nothing else holds it (the prefaulting
        // thread ended), it is unmapped by a thread of its own, since unmapping a
        // segment's populated pages takes milliseconds that the next holder of the turn
        // would wait.
        let pages = self.map.prefaulter();
        before_unlock(&clean);
        drop(self);
        if pages.is_last() {
            let _ = std::thread::Builder::new()
                .name("evstream-unmap".into())
                .spawn(move || drop(pages));
        }
        Some(clean)
    }

    /// This writer's mapping, to be kept once the writer is gone for the file's next
    /// life ([`recycle`](Self::recycle)); `None` if the file's identity cannot be read.
    pub(crate) fn warm_mapping(&self) -> Option<sys::WarmMapping> {
        self.map.warm(self._lock.file()).ok()
    }

    /// Resets the retired segment file at `spare` for a new life as an empty version 3
    /// stream of `capacity` bytes, and renames it to `path` (`docs/FORMAT.md`,
    /// "Recycling retired segments", steps 2 and 3): the header (write offset 24, count 0,
    /// start now) and both trailer slots (records of a new seed, none of the file's
    /// previous seeds, dirty limit reserved whole) are written and synced before the
    /// rename, so that after any crash or power loss no event of the previous life checks
    /// out under the name `path`. Only the header's and the trailer's pages are synced:
    /// the previous life's dirty pages are not written back for this.
    ///
    /// # Errors
    /// [`Error::Locked`] or [`Error::ReadersPresent`] if a writer or a reader has the
    /// file open; [`Error::NotAStream`] or [`Error::DamagedTrailer`] if it is not a
    /// stream with a valid trailer, [`Error::BadCapacity`] if it is not `capacity` bytes
    /// long; [`Error::Io`]. The caller deletes the spare then.
    ///
    /// `warm` is the mapping of the segment's previous life, if it was kept
    /// ([`warm_mapping`](Self::warm_mapping)); it is used only if it maps this very file.
    pub(crate) fn recycle(
        spare: &Path,
        path: &Path,
        capacity: u64,
        options: WriterOptions,
        warm: Option<sys::WarmMapping>,
    ) -> Result<Self> {
        let (file, len) = open_regular(spare, true)?;
        lock_exclusive(&file, spare)?;
        match sys::set_presence(&file, Presence::Rewriter) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::ReadersPresent {
                    path: spare.to_owned(),
                });
            }
            Err(e) => return Err(Error::io("lock reader presence of", spare, e)),
        }
        if len != capacity {
            return Err(Error::BadCapacity {
                path: spare.to_owned(),
                capacity: len,
                minimum: capacity,
                maximum: capacity,
            });
        }
        let identity = read_identity(&file, spare, len)?;
        let trailer_at = identity.trailer_at;
        // Every seed the file's records held, valid or not (the seed's word of each slot,
        // whatever its version and checksum): the new one is none of them.
        let mut avoid = vec![identity.trailer.seed];
        for slot in 0..2 {
            let mut record = format::TrailerRecord::new_zeroed();
            if file
                .read_exact_at(record.as_mut_bytes(), trailer_at + slot * TRAILER_SLOT_LEN)
                .is_ok()
            {
                avoid.push(record.word_64.get());
            }
        }
        let seed = draw_seed(&avoid);
        let header = StreamHeader {
            write_offset: U64::new(STREAM_HEADER_LEN),
            event_count: U64::ZERO,
            start_timestamp: I64::new(now_nanos()),
        };
        // Both slots are rewritten (and synced before the file gets a name anything
        // opens), so the sequence starts afresh, whatever the previous life reached.
        let first = Trailer {
            sequence: 1,
            dirty_limit: trailer_at,
            seed,
            ..Trailer::empty()
        };
        let second = Trailer {
            sequence: 2,
            ..first
        };
        let write = || -> std::io::Result<()> {
            file.write_all_at(header.as_bytes(), 0)?;
            for record in [first, second] {
                let at = trailer_at + Trailer::slot(record.sequence) * TRAILER_SLOT_LEN;
                file.write_all_at(record.encode().as_bytes(), at)?;
            }
            // No follower is registered on the file now (each holds the presence lock
            // that this one holds alone): what `waiters` counts are followers that died
            // registered, which would make every append of the new life wake no one.
            file.write_all_at(&0u32.to_le_bytes(), trailer_at + sys::WAITERS_AT)?;
            Ok(())
        };
        write().map_err(|e| Error::io("reset", spare, e))?;
        // Through the mapping of the segment's previous life if it was kept: the pages
        // it still maps (written shortly before it retired) cost no fault.
        let map = WriteMap::reusing(&file, len, options.huge_pages, trailer_at, warm)
            .map_err(|e| Error::io("map", spare, e))?;
        map.sync_range(0, STREAM_HEADER_LEN)
            .and_then(|()| map.sync_range(trailer_at, format::TRAILER_LEN))
            .map_err(|e| Error::io("msync", spare, e))?;
        failpoint!("recycle:after_reset");
        sys::rename_noreplace(spare, path).map_err(|e| Error::io("rename into place", path, e))?;
        failpoint!("recycle:after_rename");
        sys::set_presence(&file, Presence::Unlock)
            .map_err(|e| Error::io("unlock reader presence of", path, e))?;
        Ok(Self::assemble(
            path,
            file,
            map,
            options,
            (second, true),
            0,
            None,
            Recovery::default(),
        ))
    }

    #[expect(clippy::too_many_arguments, reason = "one private constructor")]
    fn assemble(
        path: &Path,
        file: File,
        map: WriteMap,
        options: WriterOptions,
        (trailer, trailer_synced): (Trailer, bool),
        event_count: u64,
        last_timestamp: Option<i64>,
        recovery: Recovery,
    ) -> Self {
        let write_offset = map.write_offset();
        let capacity = map.len() as u64;
        let events_end = map.events_end();
        let mut prefault = Prefaulting::start(&map, &options, write_offset);
        let (durable_limit, pending_raise) = if trailer_synced {
            (trailer.dirty_limit, None)
        } else {
            // Read, not written, by this open: the writer before may have stored it and
            // stopped before its sync. Until it is synced (in the background, or by the
            // first append that needs it) no limit past the write offset is relied on.
            let slot = slot_offset(&map, trailer.sequence);
            (write_offset, prefault.request_sync(slot, TRAILER_SLOT_LEN))
        };
        let mut writer = Self {
            path: path.to_owned(),
            map,
            capacity,
            events_end,
            write_offset,
            event_count,
            last_timestamp,
            // Events above the watermark may be unsynced (a writer before us may have
            // crashed), so the first flush covers them all.
            synced_to: trailer.durable_offset,
            poisoned: false,
            fill_panicked: false,
            read_back: (write_offset > trailer.durable_offset)
                .then_some((trailer.durable_offset, write_offset)),
            trailer,
            durable_limit,
            dirty_check: durable_limit,
            pending_raise,
            recovery,
            prefault,
            _lock: HeldLock::new(file, LockKind::Writer),
        };
        writer.update_dirty_check();
        writer
    }

    /// Appends one event and publishes it; returns the byte offset where it landed.
    ///
    /// The event is visible to readers when this returns and survives a crash of this
    /// process; call [`flush`](Self::flush) to make it survive power loss.
    ///
    /// # Errors
    /// Nothing is written on error.
    /// - [`Error::OutOfOrder`] if `timestamp` is lower than the last event's.
    /// - [`Error::Full`] if the event does not fit in the space left.
    /// - [`Error::PayloadTooLarge`] for payloads over `u32::MAX` bytes.
    /// - [`Error::Sealed`] once the stream is [sealed](Self::seal).
    /// - [`Error::Poisoned`] after a failed flush.
    #[inline]
    pub fn append(&mut self, timestamp: i64, payload: &[u8]) -> Result<u64> {
        self.append_inline(timestamp, payload)
    }

    /// [`append`](Self::append), inlined into a caller that appends for a log.
    #[inline(always)]
    pub(crate) fn append_inline(&mut self, timestamp: i64, payload: &[u8]) -> Result<u64> {
        let (offset, end) = self.reserve(timestamp, payload.len())?;
        let header =
            EventHeader::sealed(self.trailer.seed, timestamp, payload.len() as u32, payload);
        #[cfg(feature = "failpoints")]
        {
            self.map
                .write_unpublished(offset + EVENT_HEADER_LEN, &[payload]);
            failpoint!("append:after_payload");
            self.map.write_unpublished_word(offset, header.to_word());
        }
        // Unpublished, the two writes may go in either order: one check of the range.
        #[cfg(not(feature = "failpoints"))]
        self.map
            .write_unpublished_event(offset, header.to_word(), payload);
        failpoint!("append:after_header");
        self.commit(timestamp, end);
        Ok(offset)
    }

    /// Appends a batch of events and publishes them together, with one store of the write
    /// offset and the count after all are written; returns the offset of the first one
    /// (the write offset, for an empty batch).
    ///
    /// Readers, in this process or any other, see either none of the batch or all of it,
    /// and followers are woken once for the whole batch. Every event is checked before a
    /// byte is written: timestamps must not decrease within the batch nor from the last
    /// event, every payload must fit the format, and the whole batch the space left. For
    /// many small events this saves the per-event publication (two `Release` stores and a
    /// look at the wait words each).
    ///
    /// As with [`append`](Self::append), the events are visible to readers when this
    /// returns and survive a crash of this process; [`flush`](Self::flush) makes them
    /// survive power loss. A crash before the write offset is stored leaves none of the
    /// batch published. The header's event count (derived data) is stored just after the
    /// offset; a crash between the two leaves it short by the batch, not by one event as
    /// for `append`, until the next writer's open recomputes it, and
    /// [`Verification::is_ok`](crate::Verification::is_ok) reports the mismatch until then.
    ///
    /// # Errors
    /// Nothing is written on error.
    /// - [`Error::OutOfOrder`] if a timestamp is lower than the one before it (in the
    ///   batch or the last event of the stream).
    /// - [`Error::Full`] if the batch does not fit in the space left (`needed` counts the
    ///   whole batch).
    /// - [`Error::PayloadTooLarge`] for a payload over `u32::MAX` bytes.
    /// - [`Error::Sealed`], [`Error::Poisoned`] as for [`append`](Self::append).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let first = writer.append_batch(&[(1, b"a".as_slice()), (2, b"bc"), (2, b"")])?;
    /// assert_eq!(first, 24);
    /// // Out of order within the batch: refused, nothing written.
    /// assert!(writer.append_batch(&[(3, b"x".as_slice()), (1, b"y")]).is_err());
    ///
    /// let reader = evstream::StreamReader::open(&path)?;
    /// assert_eq!(reader.iter().count(), 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_batch(&mut self, events: &[(i64, &[u8])]) -> Result<u64> {
        let first_offset = self.write_offset;
        let Some(&(last_timestamp, _)) = events.last() else {
            return Ok(first_offset);
        };
        // Check every event, and the space for all of them, before writing anything.
        self.check_appendable()?;
        let mut previous = self.last_timestamp.unwrap_or(i64::MIN);
        let mut needed = 0u64;
        for &(timestamp, payload) in events {
            if timestamp < previous {
                return Err(Error::OutOfOrder {
                    previous,
                    got: timestamp,
                });
            }
            previous = timestamp;
            #[expect(
                clippy::unnecessary_lazy_evaluations,
                reason = "the error is built only on the failure path"
            )]
            let len = format::event_len(payload.len())
                .ok_or_else(|| Error::PayloadTooLarge { len: payload.len() })?;
            needed = needed.saturating_add(len);
        }
        let (_, end) = self.reserve_bytes(needed)?;
        let mut offset = first_offset;
        for &(timestamp, payload) in events {
            let header =
                EventHeader::sealed(self.trailer.seed, timestamp, payload.len() as u32, payload);
            self.map
                .write_unpublished_event(offset, header.to_word(), payload);
            offset += EVENT_HEADER_LEN + payload.len() as u64;
        }
        self.commit_many(last_timestamp, end, events.len() as u64);
        Ok(first_offset)
    }

    /// Appends `payload` stamped with the wall clock, never earlier than the last event.
    ///
    /// Returns the offset and the timestamp used. Errors as for [`append`](Self::append).
    pub fn append_now(&mut self, payload: &[u8]) -> Result<(u64, i64)> {
        let timestamp = self.next_timestamp();
        self.append(timestamp, payload).map(|o| (o, timestamp))
    }

    /// The wall-clock timestamp [`append_now`](Self::append_now) would use now.
    pub fn next_timestamp(&self) -> i64 {
        now_nanos().max(self.last_timestamp.unwrap_or(i64::MIN))
    }

    /// Appends an event of `len` bytes whose payload `fill` writes straight into the
    /// mapping, so a producer can serialize without an intermediate buffer.
    ///
    /// `fill` receives exactly `len` zeroed-or-stale bytes and must overwrite all it means
    /// to keep; the checksum is computed after it returns. If `fill` panics, nothing is
    /// published. Errors as for [`append`](Self::append), checked before `fill` runs.
    pub fn append_with<F>(&mut self, timestamp: i64, len: usize, fill: F) -> Result<u64>
    where
        F: FnOnce(&mut [u8]),
    {
        let (offset, end) = self.reserve(timestamp, len)?;
        let payload_at = offset + EVENT_HEADER_LEN;
        let header = match self.map.unpublished_mut(payload_at, len) {
            Some(buf) => {
                // Left set if `fill` unwinds; a fill that panicked before stays counted.
                let before = self.fill_panicked;
                self.fill_panicked = true;
                fill(buf);
                self.fill_panicked = before;
                failpoint!("append:after_payload");
                EventHeader::sealed(self.trailer.seed, timestamp, len as u32, buf)
            }
            // `reserve` checked the space; an empty range is always available.
            None => EventHeader::sealed(self.trailer.seed, timestamp, len as u32, &[]),
        };
        self.map.write_unpublished_word(offset, header.to_word());
        failpoint!("append:after_header");
        self.commit(timestamp, end);
        Ok(offset)
    }

    /// Checks that an event of `len` payload bytes may be appended; returns its span.
    #[inline]
    fn reserve(&mut self, timestamp: i64, len: usize) -> Result<(u64, u64)> {
        self.check_appendable()?;
        if let Some(previous) = self.last_timestamp
            && timestamp < previous
        {
            return Err(Error::OutOfOrder {
                previous,
                got: timestamp,
            });
        }
        // `Error` has drop glue, so `ok_or` would build and drop one on every append.
        #[expect(
            clippy::unnecessary_lazy_evaluations,
            reason = "the error is built only on the failure path"
        )]
        let needed = format::event_len(len).ok_or_else(|| Error::PayloadTooLarge { len })?;
        self.reserve_bytes(needed)
    }

    /// Poisons the writer: appends and flushes fail with [`Error::Poisoned`] from now
    /// on. For a log whose older segment failed to flush.
    pub(crate) fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Refuses appends to a poisoned writer or a sealed stream.
    #[inline]
    fn check_appendable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        if self.trailer.sealed {
            return Err(Error::Sealed {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Checks that `needed` more bytes of events fit, and raises the dirty limit over them
    /// if need be; returns their span. The caller checked poisoning, the seal and order.
    #[inline]
    fn reserve_bytes(&mut self, needed: u64) -> Result<(u64, u64)> {
        let available = self.events_end - self.write_offset;
        if needed > available {
            return Err(Error::Full { needed, available });
        }
        let end = self.write_offset + needed;
        if end > self.dirty_check {
            self.dirty_limit_slow(end)?;
        }
        Ok((self.write_offset, end))
    }

    /// Makes sure a durable record's dirty limit covers `end`. Half a step before the
    /// limit, the raise is stored and its sync handed to the background thread, so that
    /// the append that crosses the old limit finds it synced, most of the time; otherwise
    /// that append syncs it.
    #[cold]
    fn dirty_limit_slow(&mut self, end: u64) -> Result<()> {
        if let Some(id) = self.pending_raise {
            match self.prefault.sync_result(id) {
                Some(Ok(())) => self.trailer_synced(),
                Some(Err(e)) => {
                    self.poisoned = true;
                    return Err(Error::io("msync", &self.path, e));
                }
                None => {}
            }
        }
        if end > self.durable_limit {
            if end <= self.trailer.dirty_limit {
                // Raised already; its sync is still running, and this append needs it.
                sync_trailer(&self.map, &self.trailer).map_err(|e| {
                    self.poisoned = true;
                    Error::io("msync", &self.path, e)
                })?;
                self.trailer_synced();
            } else {
                self.raise_dirty_limit(end)?;
            }
        } else if end > self.dirty_check {
            // Half a step from the durable limit, nothing pending, a thread to sync it
            // (what `update_dirty_check` put the check there for): raise it ahead.
            let next = store_trailer(
                &self.map,
                &self.trailer,
                Trailer {
                    dirty_limit: dirty_step_past(end, self.events_end),
                    ..self.trailer
                },
            );
            self.trailer = next;
            self.pending_raise = self
                .prefault
                .request_sync(slot_offset(&self.map, next.sequence), TRAILER_SLOT_LEN);
        }
        self.update_dirty_check();
        Ok(())
    }

    /// Moves the dirty limit to the end of the event area, durably: appends never raise
    /// it again. Dropping the writer brings it back to the write offset (not synced: a
    /// lower limit over bytes never written is safe on the disk or not), so that the next
    /// open has nothing past the events to scan.
    pub(crate) fn reserve_whole(&mut self) -> Result<()> {
        if self.durable_limit >= self.events_end {
            return Ok(());
        }
        self.commit_trailer(Trailer {
            dirty_limit: self.events_end,
            ..self.trailer
        })
    }

    /// The current record is on stable storage.
    fn trailer_synced(&mut self) {
        self.durable_limit = self.trailer.dirty_limit;
        self.pending_raise = None;
        self.update_dirty_check();
    }

    /// Where the next append takes [`dirty_limit_slow`](Self::dirty_limit_slow): half a
    /// step early when a raise can be synced in the background, at the limit otherwise.
    fn update_dirty_check(&mut self) {
        let ahead = self.pending_raise.is_none()
            && self.prefault.syncs_in_background()
            && self.durable_limit < self.events_end;
        self.dirty_check = if ahead {
            self.durable_limit.saturating_sub(DIRTY_STEP / 2)
        } else {
            self.durable_limit
        };
    }

    /// Moves the trailer's dirty limit to at least `end` (and up to [`DIRTY_STEP`] past
    /// it), durably, before any byte is written past the old limit.
    #[cold]
    fn raise_dirty_limit(&mut self, end: u64) -> Result<()> {
        let limit = dirty_step_past(end, self.events_end);
        self.commit_trailer(Trailer {
            dirty_limit: limit,
            ..self.trailer
        })
    }

    /// Stores `next` as the current trailer record and syncs it; a failed sync poisons
    /// the writer like a failed flush.
    fn commit_trailer(&mut self, next: Trailer) -> Result<()> {
        let next = store_trailer(&self.map, &self.trailer, next);
        self.trailer = next;
        // A seal ends follows: wake the followers so they see it now.
        self.map.wake_followers();
        sync_trailer(&self.map, &next).map_err(|e| {
            self.poisoned = true;
            Error::io("msync", &self.path, e)
        })?;
        self.trailer_synced();
        Ok(())
    }

    /// Publishes the event that ends at `end`.
    #[inline(always)]
    fn commit(&mut self, timestamp: i64, end: u64) {
        self.commit_many(timestamp, end, 1);
    }

    /// Publishes `events` events ending at `end`, the last stamped `timestamp`: one store
    /// of the write offset and one of the count, then one wake of the followers.
    #[inline(always)]
    fn commit_many(&mut self, timestamp: i64, end: u64, events: u64) {
        self.write_offset = end;
        self.event_count += events;
        self.last_timestamp = Some(timestamp);
        #[cfg(feature = "failpoints")]
        {
            self.map.publish_offset(end);
            failpoint!("append:after_offset");
        }
        self.map.publish(end, self.event_count);
        self.map.wake_followers();
        failpoint!("append:after_count");
        self.prefault.advance(end);
    }

    /// Writes every event appended so far, and the header, to stable storage, then moves
    /// the durable watermark up to them.
    ///
    /// Syncs (`msync(MS_SYNC)`) the header and the bytes written since the last successful
    /// flush, then stores the new watermark (offset, event count, last timestamp) in the
    /// trailer and syncs that. When this returns `Ok`, those events survive power loss,
    /// provided the disk honours cache flushes, and a later open will never drop them:
    /// damage below the watermark is refused as corruption, never truncated. The first
    /// flush after [`open`](Self::open) also covers every event found above the watermark
    /// on open.
    ///
    /// # Errors
    /// [`Error::Io`] if the kernel reports a write-back failure. That is final: the kernel
    /// may have dropped the dirty pages, so the writer refuses further appends and flushes
    /// with [`Error::Poisoned`], and the watermark stays where it was. Reopen the stream to
    /// continue from what is on disk.
    pub fn flush(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let end = self.write_offset;
        if end == self.trailer.durable_offset && end == self.synced_to {
            return Ok(());
        }
        failpoint!("flush:before_sync");
        // The event pages this flush writes back are final but for the last: unmapped
        // first, their write-back need not write-protect them in this mapping (one TLB
        // shootdown per page on every CPU running this process).
        let from = (self.synced_to / PAGE * PAGE).max(PAGE);
        let _ = self.map.release(from, end.saturating_sub(from));
        // Pages below `synced_to` are clean, so syncing from 0 writes only the header and
        // the new events, in one call.
        let result = self.map.sync_range(0, end).and_then(|()| {
            // A failure the prefaulting thread's sync learned of is this flush's too.
            if let Some(e) = self.prefault.failure() {
                return Err(e);
            }
            if let Some((from, to)) = self.read_back {
                read_back(
                    self._lock.file(),
                    &self.path,
                    self.map.published(),
                    from,
                    to,
                )?;
                self.read_back = None;
            }
            failpoint!("flush:after_data");
            let next = store_trailer(
                &self.map,
                &self.trailer,
                Trailer {
                    durable_offset: end,
                    durable_count: self.event_count,
                    durable_last_timestamp: self.last_timestamp,
                    ..self.trailer
                },
            );
            self.trailer = next;
            sync_trailer(&self.map, &next)
        });
        failpoint!("flush:after_trailer");
        match result {
            Ok(()) => {
                self.synced_to = end;
                self.trailer_synced();
                self.prefault.flushed(self.write_offset);
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(Error::io("msync", &self.path, e))
            }
        }
    }

    /// Writes the events in `from..from + len` (as far as they are written) back to the
    /// device and waits for it, without making them durable: the durable watermark
    /// stays, and no device cache is flushed (see [`sys::write_back_range`]). A later
    /// [`flush`](Self::flush) then writes only what is still dirty. Lets a log's sealing
    /// thread write a retired segment back in bounded steps, looking between them whether
    /// retention took the segment.
    ///
    /// # Errors
    /// [`Error::Io`] if the kernel reports a write-back failure; that poisons the writer
    /// as a failed flush does (the later flush might not see the failure again).
    pub(crate) fn write_back(&mut self, from: u64, len: u64) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let to = from.saturating_add(len).min(self.write_offset);
        if to <= from {
            return Ok(());
        }
        sys::write_back_range(self._lock.file(), from, to - from).map_err(|e| {
            self.poisoned = true;
            Error::io("write back", &self.path, e)
        })
    }

    /// Flushes, then marks the stream sealed, durably: it takes no more events.
    ///
    /// Afterwards every `append` returns [`Error::Sealed`], here and in any writer that
    /// opens the stream later; readers see [`StreamReader::is_sealed`](crate::StreamReader::is_sealed)
    /// turn `true`, so a follower knows no more events will come. Sealing a sealed stream
    /// does nothing.
    ///
    /// # Errors
    /// As [`flush`](Self::flush); the stream is not sealed then.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// writer.append(1, b"last words")?;
    /// writer.seal()?;
    /// assert!(matches!(writer.append(2, b"more"), Err(evstream::Error::Sealed { .. })));
    /// assert!(evstream::StreamReader::open(&path)?.is_sealed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn seal(&mut self) -> Result<()> {
        self.flush()?;
        if self.trailer.sealed {
            return Ok(());
        }
        self.commit_trailer(Trailer {
            sealed: true,
            ..self.trailer
        })
    }

    /// Wakes the followers asleep on this stream's wait words (a log's roll: the stream
    /// takes no more events, its successor is in place).
    pub(crate) fn wake_followers(&self) {
        self.map.wake_followers();
    }

    /// Whether the stream is sealed (see [`seal`](Self::seal)).
    pub fn is_sealed(&self) -> bool {
        self.trailer.sealed
    }

    /// The durable watermark: events before this offset are on stable storage (as of the
    /// last successful [`flush`](Self::flush), or as found on open).
    pub fn durable_offset(&self) -> u64 {
        self.trailer.durable_offset
    }

    /// The stream's recovery generation: how many times a writer's open dropped a torn
    /// tail (see [`Error::Recovered`]).
    pub fn generation(&self) -> u64 {
        self.trailer.generation
    }

    /// The CRC seed every event's checksum in this stream is seeded with: 0 for a
    /// format version 2 stream, never 0 for version 3 (`docs/FORMAT.md`, "Version 3:
    /// seeded checksums").
    pub fn crc_seed(&self) -> u32 {
        self.trailer.seed
    }

    /// Prefaults the whole unwritten part of the mapping now.
    ///
    /// For callers that would rather pay every page fault up front, such as before a
    /// latency-critical phase. Does nothing on kernels without `MADV_POPULATE_WRITE`.
    pub fn prefault_all(&mut self) -> Result<()> {
        let from = self.write_offset;
        self.map
            .prefaulter()
            .populate(from, self.events_end - from)
            .or_else(ignore_unsupported)
            .map_err(|e| Error::io("prefault", &self.path, e))
    }

    /// Prefaults `len` bytes of the unwritten part of the mapping from `from` (clamped to
    /// the file); for the log's preparing thread, which prefaults a segment in chunks.
    pub(crate) fn prefault_range(&self, from: u64, len: u64) -> Result<()> {
        let from = from.max(self.write_offset).min(self.capacity);
        self.map
            .prefaulter()
            .populate(from, len.min(self.capacity - from))
            .or_else(ignore_unsupported)
            .map_err(|e| Error::io("prefault", &self.path, e))
    }

    /// Tells the writer that it may have stood still for long (a log's prepared segment,
    /// rolled into after the log was flushed and then appended to again), so that the
    /// pages its prefaulting thread populated ahead may have been written back since and
    /// write-protected again; the first `populated` bytes were populated again meanwhile.
    /// The thread is woken soon to populate the rest again, and until it reports, the
    /// writer does so itself a little at a time, instead of faulting on every page.
    pub(crate) fn resume_after_pause(&mut self, populated: u64) {
        self.prefault
            .resume_after_pause(self.write_offset, populated);
    }

    /// A handle that prefaults this writer's pages from another thread, also after the
    /// writer moved on (the log's preparing thread touches a prepared segment's first
    /// pages again just before the roll into it).
    pub(crate) fn prefaulter(&self) -> Prefaulter {
        self.map.prefaulter()
    }

    /// The stream file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file is now at `path` (a log's roll renamed it into place): errors name it
    /// there.
    pub(crate) fn renamed(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The file's length: the most bytes the stream can hold, header included.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The write offset: where the next event goes.
    pub fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Bytes left for events (each event takes 16 bytes plus its payload): the event
    /// area ends where the trailer starts, 1 to 2 KiB before the end of the file.
    pub fn available(&self) -> u64 {
        self.events_end - self.write_offset
    }

    /// Number of events in the stream.
    pub fn event_count(&self) -> u64 {
        self.event_count
    }

    /// The timestamp of the last event, if there is one.
    pub fn last_timestamp(&self) -> Option<i64> {
        self.last_timestamp
    }

    /// The stream's start timestamp (Unix nanoseconds when it was created).
    pub fn start_timestamp(&self) -> i64 {
        self.map.start_timestamp()
    }

    /// The offset up to which events are known to be on stable storage.
    pub fn synced_offset(&self) -> u64 {
        self.synced_to
    }

    /// What [`open`](Self::open) repaired; clean for a created stream.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }
}

/// How far past the write offset the writer moves the dirty limit at a time.
const DIRTY_STEP: u64 = 32 << 20;

/// A 4 KiB block aligned for direct I/O.
#[derive(
    Clone, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable,
)]
#[repr(C, align(4096))]
struct Block([u8; 4096]);

/// Reads the file's bytes `from..to` from the device itself (`O_DIRECT`, past the page
/// cache) and checks that they are the published bytes; an error if they are not.
///
/// A write-back that failed leaves its pages clean in the page cache, and some file
/// systems lose more than the data (ext4 may fail to mark preallocated extents as
/// written, so they read back as zeros however often the pages are written again). A
/// writer that finds events above the watermark checks them this way once, at its first
/// flush, before the watermark covers them. Where direct I/O is not supported (tmpfs)
/// there is no device to check and this does nothing.
///
/// The file is opened again for direct I/O through `file`, the writer's own descriptor
/// ([`reopen`]), not by `path`: the file may have been renamed since the writer opened it
/// (a log's segment put in place by its roll, a stream renamed by its user), and another
/// file may have its old name.
fn read_back(
    file: &File,
    path: &Path,
    published: &[u8],
    from: u64,
    to: u64,
) -> std::io::Result<()> {
    const BLOCK: u64 = 4096;
    let direct = match crate::stream::open::reopen(file, path, libc::O_DIRECT | libc::O_CLOEXEC) {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut buf = vec![Block([0; 4096]); 256];
    let mut at = from / BLOCK * BLOCK;
    while at < to {
        let bytes = zerocopy::IntoBytes::as_mut_bytes(buf.as_mut_slice());
        let want = (to.div_ceil(BLOCK) * BLOCK - at).min(bytes.len() as u64) as usize;
        let Some(chunk) = bytes.get_mut(..want) else {
            break;
        };
        let n = match direct.read_at(chunk, at) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        };
        let start = at.max(from);
        let end = (at + n as u64).min(to);
        let on_device = chunk.get((start - at) as usize..(end - at) as usize);
        let in_memory =
            published.get((start - STREAM_HEADER_LEN) as usize..(end - STREAM_HEADER_LEN) as usize);
        if on_device.is_none() || on_device != in_memory {
            return Err(std::io::Error::other(format!(
                "the events in {from}..{to} did not read back from the device \
                 (an earlier write-back failed); they are not durable"
            )));
        }
        at += n as u64;
    }
    Ok(())
}

/// Writes the published bytes `from..to` of the file again, unchanged (`pwrite` of a copy
/// taken from the mapping), so that their pages are dirty whatever happened to an
/// earlier write-back of them. The bytes written are the bytes there, so no reader's view
/// of them changes.
fn redirty(map: &WriteMap, file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let published = map.published();
    let mut buf = Vec::new();
    let mut at = from;
    while at < to {
        let end = (at + CHUNK).min(to);
        let range = (at - STREAM_HEADER_LEN) as usize..(end - STREAM_HEADER_LEN) as usize;
        let Some(bytes) = published.get(range) else {
            break;
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        file.write_all_at(&buf, at)?;
        at = end;
    }
    Ok(())
}

/// The dirty limit [`DIRTY_STEP`] past `end`, page-aligned, within the event area.
fn dirty_step_past(end: u64, events_end: u64) -> u64 {
    end.saturating_add(DIRTY_STEP)
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .min(events_end)
}

/// Stores `next` as the new current trailer record in the mapping, in the slot the
/// current one does not occupy, and returns it (with its sequence number). Not synced.
fn store_trailer(map: &WriteMap, current: &Trailer, next: Trailer) -> Trailer {
    let next = Trailer {
        sequence: current.sequence + 1,
        ..next
    };
    map.store_record(slot_offset(map, next.sequence), &next.encode());
    next
}

/// Syncs the slot `trailer` was stored in.
fn sync_trailer(map: &WriteMap, trailer: &Trailer) -> std::io::Result<()> {
    map.sync_range(slot_offset(map, trailer.sequence), TRAILER_SLOT_LEN)
}

/// File offset of the slot a record with `sequence` goes to.
fn slot_offset(map: &WriteMap, sequence: u64) -> u64 {
    map.events_end() + Trailer::slot(sequence) * TRAILER_SLOT_LEN
}

/// Whether an event that checks out under `seed` begins at `at` in `file` and ends by
/// `limit`: what an append that never published leaves (its header is written with its
/// payload, or after it). Bytes of a recycled segment's previous life lie past its write
/// offset too, but no event of theirs checks out under the segment's new seed. `true` if
/// the bytes cannot be read.
fn event_at(file: &File, at: u64, seed: u32, limit: u64) -> bool {
    let mut header = [0_u8; EVENT_HEADER_LEN as usize];
    if at.saturating_add(EVENT_HEADER_LEN) > limit {
        return false;
    }
    if file.read_exact_at(&mut header, at).is_err() {
        return true;
    }
    if header.iter().all(|&b| b == 0) {
        return false;
    }
    let Ok(fields) = EventHeader::read_from_bytes(&header) else {
        return false;
    };
    let len = EVENT_HEADER_LEN + u64::from(fields.size.get());
    let Some(end) = at.checked_add(len).filter(|&end| end <= limit) else {
        return false;
    };
    let Ok(len) = usize::try_from(end - at) else {
        return false;
    };
    let mut event = vec![0_u8; len];
    if file.read_exact_at(&mut event, at).is_err() {
        return true;
    }
    format::read_verified(seed, &event, 0, i64::MIN).is_ok()
}

/// Zeroes every non-zero byte in `from..limit`, so that nothing an append which never
/// published (or a dropped torn tail) left behind can come back as an event after a
/// later power loss. Returns the length of the span that was cleared (from `from` to the
/// end of the last page that held any).
///
/// `limit` is the trailer's dirty limit: no event byte was ever written at or past it,
/// so the scan costs at most the distance from the write offset to it (about
/// [`DIRTY_STEP`] plus the last event after a crash, nothing after a clean close),
/// whatever the file's size.
///
/// Such bytes need not be contiguous: after a power cut each dirty page may or may not
/// have reached the disk, so a zero page can lie between stale ones, and a stale event
/// past it would line up with a later append whose page is lost in turn. So every page
/// to the end of the file is checked, except ranges the file system reports as holes
/// (`SEEK_DATA`), such as preallocated space that was never written.
fn clear_stale(map: &mut WriteMap, file: &File, from: u64, limit: u64) -> u64 {
    // Compared with `memcmp`, much faster than a byte loop.
    static ZERO_PAGE: [u8; PAGE as usize] = [0; PAGE as usize];
    let capacity = limit.min(map.events_end());
    let mut at = from;
    let mut cleared_to = from;
    while at < capacity {
        let (start, end) = match sys::data_range(file, at) {
            Ok(Some((start, end))) => (start.max(at), end.min(capacity)),
            Ok(None) => break,
            // The file system cannot tell: check everything.
            Err(_) => (at, capacity),
        };
        if start >= end {
            break;
        }
        let mut page = start;
        while page < end {
            let page_end = ((page / PAGE + 1) * PAGE).min(end);
            if let Some(bytes) = map.unpublished_mut(page, (page_end - page) as usize)
                && ZERO_PAGE.get(..bytes.len()) != Some(&*bytes)
            {
                bytes.fill(0);
                cleared_to = page_end;
            }
            page = page_end;
        }
        at = end;
    }
    cleared_to - from
}

/// Creates a new temporary file `PREFIX.PID.N.tmp` in `dir` for a `create`, `N` unique
/// in this process (creates of one path on several threads must not share it) and
/// unlikely to be reused by a later process of the same id.
fn create_temp(dir: &Path, prefix: &str) -> std::io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tries = 0;
    loop {
        let unique = (now_nanos() as u64).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let temp = dir.join(format!("{prefix}{}.{unique}.tmp", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            // A name taken by a leftover whose process had this id: try another.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Deletes temporary files a `create` of the same stream left when its process died.
///
/// A creator holds the exclusive lock on its temporary file from right after making it
/// until it is renamed into place, so a temporary whose creating process is gone and whose
/// lock can be taken is abandoned. Best effort: anything unexpected leaves the file where
/// it is.
fn remove_abandoned_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(middle) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        // `PID.N`: two numbers, so another stream's temporaries never match.
        let Some(pid) = middle.split_once('.').and_then(|(pid, nanos)| {
            let nanos_ok = nanos.trim_start_matches('-').parse::<u64>().is_ok();
            pid.parse::<u32>().ok().filter(|_| nanos_ok)
        }) else {
            continue;
        };
        // A creator takes the lock on its temporary only after making it, so a live
        // creator's temporary can be unlocked for an instant: leave those alone (a
        // concurrent create of the same path, in this process or another).
        if !entry.file_type().is_ok_and(|t| t.is_file()) || sys::process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if let Ok(file) = OpenOptions::new().read(true).open(&path)
            && file.try_lock().is_ok()
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn ignore_unsupported(e: std::io::Error) -> std::io::Result<()> {
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(e),
    }
}

/// Removes a temporary file unless forgotten.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The writer's prefaulting state.
#[derive(Debug)]
enum Prefaulting {
    Off,
    Inline {
        prefaulter: Prefaulter,
        chunk: u64,
        done_to: u64,
        capacity: u64,
        /// Pages below this (but for the header's) are unmapped; see [`Prefaulter::release`].
        released_to: u64,
    },
    Background(Pretoucher),
}

impl Prefaulting {
    fn start(map: &WriteMap, options: &WriterOptions, cursor: u64) -> Self {
        let capacity = map.len() as u64;
        match options.prefault {
            Prefault::Off => Self::Off,
            Prefault::Inline => Self::Inline {
                prefaulter: map.prefaulter(),
                chunk: options.prefault_chunk,
                done_to: cursor,
                capacity,
                released_to: PAGE,
            },
            Prefault::Background => Pretoucher::spawn(
                map.prefaulter(),
                cursor,
                options.prefault_chunk,
                capacity,
                options.keep_mapped,
            )
            .map_or(Self::Off, Self::Background),
        }
    }

    /// Called after each append with the new write offset.
    #[inline(always)]
    fn advance(&mut self, cursor: u64) {
        match self {
            Self::Off => {}
            Self::Inline {
                chunk,
                done_to,
                capacity,
                ..
            } => {
                if cursor + *chunk / 2 >= *done_to && *done_to < *capacity {
                    self.advance_inline(cursor);
                }
            }
            Self::Background(p) => p.advance(cursor),
        }
    }

    /// [`advance`](Self::advance) with [`Prefault::Inline`], the cursor near the end
    /// of the pages prefaulted: the next chunk.
    #[cold]
    fn advance_inline(&mut self, cursor: u64) {
        match self {
            Self::Off | Self::Background(_) => {}
            Self::Inline {
                prefaulter,
                chunk,
                done_to,
                capacity,
                released_to,
            } => {
                // The pages behind the cursor are final; see `Pretoucher::spawn`.
                if cursor > *released_to + *chunk {
                    let _ = prefaulter.release(*released_to, cursor - *released_to);
                    *released_to = cursor / PAGE * PAGE;
                }
                let from = (*done_to).max(cursor);
                if prefaulter.populate(from, *chunk).is_err() {
                    // Unsupported or failed: stop trying; appends fault as usual.
                    *done_to = *capacity;
                } else {
                    *done_to = (from + *chunk).min(*capacity);
                }
            }
        }
    }

    /// After a flush: the writer may pause here, and the pages mapped ahead of it be
    /// written back meanwhile (write-protected again), by the kernel or by a sync of the
    /// whole file system; the next append wakes the prefaulting thread, which maps them
    /// writable again from the write offset on. At most once every
    /// [`FLUSH_WAKE_EVERY`]: a writer that flushes after every few appends
    /// pauses at none of them, and should not pay for a wake each time.
    fn flushed(&mut self, cursor: u64) {
        if let Self::Background(p) = self
            && p.flush_wake.due()
        {
            p.rearm(0, cursor);
        }
    }

    /// The writer resumes at `cursor` after a pause of unknown length, with the pages up
    /// to `populated` mapped writable again (by someone else); see
    /// [`StreamWriter::resume_after_pause`].
    fn resume_after_pause(&mut self, cursor: u64, populated: u64) {
        if let Self::Background(p) = self {
            p.rearm(cursor + Pretoucher::GUARD_STEP, populated.max(cursor));
        }
    }

    /// Hands a sync of `offset..offset + len` to the background thread; its request
    /// number, or `None` without one.
    fn request_sync(&mut self, offset: u64, len: u64) -> Option<u64> {
        match self {
            Self::Background(p) => Some(p.request_sync(offset, len)),
            Self::Off | Self::Inline { .. } => None,
        }
    }

    /// The outcome of sync request `id`: `None` while it is still running.
    fn sync_result(&self, id: u64) -> Option<std::io::Result<()>> {
        match self {
            Self::Background(p) => p.sync_result(id),
            Self::Off | Self::Inline { .. } => Some(Ok(())),
        }
    }

    fn syncs_in_background(&self) -> bool {
        matches!(self, Self::Background(_))
    }

    /// The failure of a background sync not reported yet, once any sync under way has
    /// ended. The kernel reports a failed write-back to one sync of the file only,
    /// whatever range that sync covers: a background sync of the trailer's slot may be
    /// the one that learns that event pages never reached the device, and a flush's own
    /// `msync` then succeeds.
    fn failure(&self) -> Option<std::io::Error> {
        match self {
            Self::Background(p) => {
                let _ended = p.shared.syncing.lock().unwrap_or_else(|e| e.into_inner());
                p.shared.jobs().failed.take()
            }
            Self::Off | Self::Inline { .. } => None,
        }
    }
}

/// How often at most a flush makes the next append wake a background thread that maps
/// pages ahead of the writer again (a stream's prefaulting thread, a log's preparing
/// thread).
pub(crate) const FLUSH_WAKE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// When a flush last made the next append wake such a thread: a writer that flushes after
/// every few appends pauses at none of them, and should not pay for a wake each time.
#[derive(Debug, Default)]
pub(crate) struct FlushWake(Option<std::time::Instant>);

impl FlushWake {
    /// Whether this flush makes the next append wake the thread: if none did in the last
    /// [`FLUSH_WAKE_EVERY`].
    pub(crate) fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .0
            .is_some_and(|then| now.duration_since(then) < FLUSH_WAKE_EVERY)
        {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// The low bits of [`PretouchShared::refreshed`] that hold an offset.
const OFFSET_BITS: u32 = 48;
/// The bits of an epoch that [`PretouchShared::refreshed`] keeps.
const EPOCH_MASK: u64 = (1 << (64 - OFFSET_BITS)) - 1;

/// Packs an epoch (its low 16 bits) and an offset (below 2^48, clamped) into one word.
fn pack_refreshed(epoch: u64, offset: u64) -> u64 {
    ((epoch & EPOCH_MASK) << OFFSET_BITS) | offset.min((1 << OFFSET_BITS) - 1)
}

/// The epoch and offset [`pack_refreshed`] packed.
fn unpack_refreshed(word: u64) -> (u64, u64) {
    (word >> OFFSET_BITS, word & ((1 << OFFSET_BITS) - 1))
}

/// A background thread that keeps the pages ahead of the write cursor prefaulted,
/// unmaps the pages behind it, and runs the syncs the writer hands it.
#[derive(Debug)]
struct Pretoucher {
    shared: Arc<PretouchShared>,
    thread: Option<JoinHandle<()>>,
    /// The smaller of `wake_at` and the next check of `guard`: the one offset an append
    /// compares its new write offset with.
    next_wake: u64,
    /// The write offset at which the writer wakes the thread next.
    wake_at: u64,
    chunk: u64,
    /// The writer's own handle on the mapping, to populate pages itself while `guard` is
    /// armed.
    prefaulter: Prefaulter,
    /// Armed from the start, and by the first append after a flush: until the thread
    /// reports it has mapped the pages ahead of the writer (again), the writer does so
    /// itself, [`Self::GUARD_STEP`] at a time. Holds the offset up to which it has.
    guard: Option<u64>,
    /// Where the guard stands down in any case, a chunk past where it began: an
    /// appender that runs flat out outruns the thread for good, and would otherwise
    /// populate every page itself, in the thread's way.
    guard_until: u64,
    /// When a flush last made the next append wake the thread.
    flush_wake: FlushWake,
    /// The number of the last sync request.
    requested: u64,
}

#[derive(Debug)]
struct PretouchShared {
    cursor: AtomicU64,
    /// Raised by a flush: the next wake populates again from the write offset on, not
    /// only the chunk after the writer's.
    epoch: AtomicU64,
    /// What the thread has populated again since it saw the newest `epoch`: that epoch in
    /// the high 16 bits, the offset it reached in the low 48 (see [`pack_refreshed`]).
    refreshed: AtomicU64,
    stop: AtomicBool,
    sync: Mutex<SyncJobs>,
    /// Held by the thread from taking a sync request until its outcome is in `sync`: a
    /// flush takes it to wait for a sync under way, whose `msync` may be the one the
    /// kernel tells of a failed write-back anywhere in the file (see
    /// [`Prefaulting::failure`]).
    syncing: Mutex<()>,
}

/// Syncs the writer hands to its prefaulting thread (of the trailer slot that raises the
/// dirty limit, so that the append which needs the raise rarely waits for the disk).
#[derive(Debug, Default)]
struct SyncJobs {
    /// The newest request not yet taken: its number, offset and length.
    requested: Option<(u64, u64, u64)>,
    /// The highest request number completed.
    done: u64,
    /// A failed sync; the writer is poisoned when it learns of it.
    failed: Option<std::io::Error>,
}

impl Pretoucher {
    const CHUNKS_AHEAD: u64 = 4;
    /// How often an idle prefaulting thread populates the writer's next chunk again.
    const REPOPULATE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// Where the writer was at the thread's last wakes, kept while pages behind the
    /// writer stay mapped ([`WriterOptions::keep_mapped`]): at most this many, the
    /// oldest released early beyond that.
    const PASSED_KEPT: usize = 256;

    fn spawn(
        prefaulter: Prefaulter,
        cursor: u64,
        chunk: u64,
        capacity: u64,
        keep_mapped: Duration,
    ) -> Option<Self> {
        let shared = Arc::new(PretouchShared {
            cursor: AtomicU64::new(cursor),
            epoch: AtomicU64::new(0),
            refreshed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sync: Mutex::new(SyncJobs::default()),
            syncing: Mutex::new(()),
        });
        let theirs = Arc::clone(&shared);
        let writers = prefaulter.clone();
        let thread = std::thread::Builder::new()
            .name("evstream-prefault".into())
            .spawn(move || {
                let mut seen_epoch = 0;
                let mut done_to = theirs.cursor.load(Ordering::Relaxed);
                // The header's page is written by every append; it stays mapped.
                let mut released_to = PAGE;
                let mut populating = true;
                // Populated again up to here at the writer's last wake.
                let mut fresh_to = 0;
                let mut last_cursor = done_to;
                let mut moved_before = false;
                // Where the writer was, and when: the pages below each such offset are
                // unmapped once `keep_mapped` has passed since.
                let mut passed: std::collections::VecDeque<(u64, Instant)> =
                    std::collections::VecDeque::new();
                while !theirs.stop.load(Ordering::Relaxed) {
                    theirs.run_sync(&prefaulter);
                    let cursor = theirs.cursor.load(Ordering::Relaxed);
                    // What was populated again is fresh only if the writer woke this
                    // thread then and now, one chunk apart. Otherwise (a timeout, a
                    // sync, the first wake after them, or the first after a flush,
                    // where the writer may have paused): from the writer on.
                    let moved = cursor != last_cursor;
                    let epoch = theirs.epoch.load(Ordering::Acquire);
                    if epoch != seen_epoch || !moved || !moved_before {
                        fresh_to = 0;
                    }
                    seen_epoch = epoch;
                    // Everything from the cursor to `to` was populated after the flush
                    // that raised `epoch`: the writer's guard may stand down.
                    let report = |to| {
                        theirs
                            .refreshed
                            .store(pack_refreshed(epoch, to), Ordering::Release);
                    };
                    moved_before = moved;
                    last_cursor = cursor;
                    let target = cursor
                        .saturating_add(chunk * Self::CHUNKS_AHEAD)
                        .min(capacity);
                    done_to = done_to.max(cursor);
                    // The pages behind the cursor are final: unmapping them spares the
                    // appending CPU a TLB shootdown per page when they are written back.
                    // Kept mapped a while first if asked (a log that recycles the
                    // segment soon writes through them again).
                    let now = Instant::now();
                    if passed.back().is_none_or(|&(at, _)| at < cursor) {
                        passed.push_back((cursor, now));
                    }
                    let mut release_to = released_to;
                    while let Some(&(at, when)) = passed.front() {
                        if now.saturating_duration_since(when) < keep_mapped
                            && passed.len() <= Self::PASSED_KEPT
                        {
                            break;
                        }
                        release_to = release_to.max(at);
                        passed.pop_front();
                    }
                    if release_to > released_to + chunk {
                        let _ = prefaulter.release(released_to, release_to - released_to);
                        released_to = release_to / PAGE * PAGE;
                    }
                    // The writer's chunk and the next, populated again: pages populated
                    // long ago may have been written back since, and written back they
                    // are write-protected, so that the writer's first store to each
                    // would fault (a few microseconds in an append). Pages still mapped
                    // writable cost a walk of the page tables. At each wake only the
                    // chunk's worth one to two chunks ahead of the writer is new: done a
                    // chunk or more before the writer gets there rather than as it
                    // enters it, racing it (and late when other threads keep this CPU
                    // busy).
                    let from = fresh_to.max(cursor);
                    let to = cursor.saturating_add(2 * chunk).min(done_to);
                    if populating && from < to {
                        let _ = prefaulter.populate(from, to - from);
                        fresh_to = to;
                    }
                    if populating {
                        report(fresh_to);
                    }
                    while populating && done_to < target && !theirs.stop.load(Ordering::Relaxed) {
                        let from = done_to;
                        if prefaulter.populate(from, chunk).is_err() {
                            populating = false; // unsupported: appends fault as usual
                        }
                        done_to = (from + chunk).min(capacity);
                        if populating && from <= fresh_to.max(cursor) {
                            // Populated for the first time, and right after what was
                            // populated again: as good for the writer's guard.
                            fresh_to = done_to;
                            report(fresh_to);
                        }
                        // A sync the writer asked for goes before more prefaulting.
                        theirs.run_sync(&prefaulter);
                    }
                    // Parked until the writer moves on, asks for a sync, or stops (each
                    // unparks; an unpark before the park makes it return at once), or
                    // for a while: then the chunk ahead is populated again above, in
                    // case write-back write-protected it meanwhile.
                    std::thread::park_timeout(Self::REPOPULATE_EVERY);
                }
            })
            .ok()?;
        Some(Self {
            shared,
            thread: Some(thread),
            // Half a chunk in: a segment's first wake, which populates again from the
            // writer on, is then done with the writer's next chunk before the writer
            // enters it.
            //
            // The guard is armed from the start: the thread has populated nothing yet,
            // and a new stream's pages, fresh, fault the longest.
            next_wake: cursor,
            wake_at: cursor + chunk / 2,
            chunk,
            prefaulter: writers,
            guard: Some(cursor),
            guard_until: cursor + chunk,
            flush_wake: FlushWake::default(),
            requested: 0,
        })
    }

    /// How much the writer populates itself at a time while its guard is armed.
    const GUARD_STEP: u64 = 64 << 10;

    /// How often, in bytes appended, the writer looks whether the thread still keeps
    /// ahead of it, while its guard is down.
    const LAG_CHECK: u64 = Self::GUARD_STEP;

    #[inline(always)]
    fn advance(&mut self, cursor: u64) {
        if cursor >= self.next_wake {
            self.wake_or_guard(cursor);
        }
    }

    #[cold]
    fn wake_or_guard(&mut self, cursor: u64) {
        if cursor >= self.wake_at {
            self.wake_at = cursor + self.chunk;
            self.shared.cursor.store(cursor, Ordering::Relaxed);
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
        if self.guard.is_none() && self.lagging(cursor) {
            // The thread fell behind the writer (the CPUs are busy, or populating costs
            // as much as appending): the writer populates a step at a time itself, a
            // system call for 16 pages, rather than fault on every page.
            self.guard = Some(cursor);
            self.guard_until = cursor + self.chunk;
        }
        if let Some(guarded_to) = self.guard {
            // The thread, woken by this append or an earlier one, may take milliseconds
            // to run (on two CPUs, behind the writer or other busy threads), and the
            // writer meanwhile would fault on every page written back during its pause:
            // a few microseconds each, in hundreds of appends. Populating a step ahead
            // itself costs one append tens of microseconds instead, every
            // `GUARD_STEP`, until the thread reports it is ahead.
            if !self.lagging(cursor) || cursor >= self.guard_until {
                self.guard = None;
            } else if guarded_to < cursor + Self::GUARD_STEP {
                // Within a step of running out (rather than woken early, with pages
                // populated far ahead: see `resume_after_pause`).
                let from = guarded_to.max(cursor);
                let to = (from + Self::GUARD_STEP).min(self.prefaulter.len());
                if from < to && self.prefaulter.populate(from, to - from).is_err() {
                    self.guard = None; // unsupported: appends fault as usual
                } else {
                    self.guard = Some(to.max(guarded_to));
                }
            }
        }
        self.schedule(cursor + 1);
    }

    /// Whether the thread has not reported the pages a step ahead of `cursor`
    /// populated.
    fn lagging(&self, cursor: u64) -> bool {
        let epoch = self.shared.epoch.load(Ordering::Relaxed);
        let (their_epoch, their_to) =
            unpack_refreshed(self.shared.refreshed.load(Ordering::Acquire));
        their_epoch != epoch & EPOCH_MASK || their_to < cursor + Self::GUARD_STEP
    }

    /// Sets the offset of the next wake or check, at `at` or later.
    fn schedule(&mut self, at: u64) {
        self.next_wake = match self.guard {
            // Checked again half a step before the writer runs out of populated pages.
            Some(to) => self
                .wake_at
                .min(to.saturating_sub(Self::GUARD_STEP / 2).max(at)),
            // Whether the thread keeps ahead, looked at every step.
            None => self.wake_at.min(at.saturating_add(Self::LAG_CHECK)),
        };
    }

    /// The pages the thread populated ahead of the writer may have been written back
    /// since (write-protected again): it is to populate them again from the writer on,
    /// once woken at `wake_at`, and the writer's guard watches over it from `guarded_to`
    /// on (the pages before that being populated already).
    fn rearm(&mut self, wake_at: u64, guarded_to: u64) {
        self.shared.epoch.fetch_add(1, Ordering::Release);
        self.wake_at = wake_at;
        self.guard = Some(guarded_to);
        self.guard_until = guarded_to + self.chunk;
        self.schedule(0);
    }

    /// Asks the thread to sync `offset..offset + len`; returns the request's number.
    fn request_sync(&mut self, offset: u64, len: u64) -> u64 {
        self.requested += 1;
        {
            let mut jobs = self.shared.jobs();
            jobs.requested = Some((self.requested, offset, len));
        }
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        self.requested
    }

    /// The outcome of sync request `id`: `None` while it is still running.
    fn sync_result(&self, id: u64) -> Option<std::io::Result<()>> {
        let mut jobs = self.shared.jobs();
        if let Some(e) = jobs.failed.take() {
            return Some(Err(e));
        }
        (jobs.done >= id).then_some(Ok(()))
    }
}

impl PretouchShared {
    fn jobs(&self) -> MutexGuard<'_, SyncJobs> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the sync the writer asked for, if any.
    fn run_sync(&self, prefaulter: &Prefaulter) {
        let _syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        let Some((id, offset, len)) = self.jobs().requested.take() else {
            return;
        };
        let result = prefaulter.sync_range(offset, len);
        let mut jobs = self.jobs();
        match result {
            Ok(()) => jobs.done = jobs.done.max(id),
            Err(e) => jobs.failed = Some(e),
        }
    }
}

impl Pretoucher {
    /// Tells the thread to stop, without waiting for it to end.
    fn detach(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
        }
    }
}

impl Drop for Pretoucher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
