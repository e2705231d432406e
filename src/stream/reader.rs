//! Readers: zero-copy iteration, seeking by time, and following a live stream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Corruption, Error, Result};
use crate::format::{self, RawEvent, STREAM_HEADER_LEN, TRAILER_SLOT_LEN, Trailer};
use crate::stream::open::{
    HeldLock, LockKind, announce_reader, check_still_named, check_write_offset, open_regular,
    read_identity, read_other_record, read_stream_header, reopen, writer_lock_held,
};
use crate::stream::wait::WaitTicket;
use crate::sys::{ReadMap, WaitMap};

/// Stream bytes between two entries of the sparse time index.
const INDEX_STRIDE: u64 = 64 << 10;

/// One event, borrowed from the stream's mapping: nothing is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    offset: u64,
    timestamp: i64,
    checksum: u32,
    payload: &'a [u8],
}

impl<'a> EventView<'a> {
    fn new(offset: u64, raw: RawEvent<'a>) -> Self {
        Self {
            offset,
            timestamp: raw.timestamp,
            checksum: raw.stored_checksum,
            payload: raw.payload,
        }
    }

    /// Byte offset of the event in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The event's timestamp (Unix nanoseconds).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The event's payload, borrowed from the mapping.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The checksum stored with the event.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }

    /// Offset of the event that follows this one.
    pub fn next_offset(&self) -> u64 {
        self.offset + format::EVENT_HEADER_LEN + self.payload.len() as u64
    }
}

/// The result of [`StreamReader::verify`]: a full scan of the published events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verification {
    /// Valid events before the first damaged one (a trailer record's problem, see
    /// `damage`, ends no event).
    pub events: u64,
    /// Offset just past the last valid event.
    pub valid_end: u64,
    /// The published write offset that was scanned up to.
    pub write_offset: u64,
    /// The event count stored in the header when the snapshot was taken (by
    /// [`StreamReader::open`] or [`StreamReader::refresh`]).
    pub header_event_count: u64,
    /// The count loaded just before the snapshot's write offset: no more than the
    /// events in the snapshot unless the header lies.
    count_floor: u64,
    /// The count loaded just after the snapshot's write offset, or, if that trails the
    /// events by more than one, the count loaded again after the scan (capped at the
    /// events): a batch publishes its events with one store of the offset and then one of
    /// the count, so while one is in flight the count trails by the whole batch.
    count_ceiling: u64,
    /// Timestamp of the first valid event.
    pub first_timestamp: Option<i64>,
    /// Timestamp of the last valid event.
    pub last_timestamp: Option<i64>,
    /// The first problem's offset and what it is: a damaged event, or a trailer record
    /// that contradicts the events below its durable watermark (format validity rule 5:
    /// an event crosses the watermark, at that event's offset,
    /// [`Corruption::WatermarkInsideEvent`]; or the events that end at it are not the
    /// record's count, [`Corruption::DurableCountMismatch`], or its last timestamp,
    /// [`Corruption::DurableTimestampMismatch`], at the watermark). A record's problem
    /// comes before damage above the watermark; the events are counted in `events` all
    /// the same.
    pub damage: Option<(u64, Corruption)>,
}

impl Verification {
    /// Whether every event of the snapshot is intact and the header's event count agrees.
    ///
    /// The count is stored after the write offset, so while a writer appends it may trail
    /// the events by one; counts loaded just before and just after the write offset bound
    /// the events of a consistent stream.
    pub fn is_ok(&self) -> bool {
        self.damage.is_none()
            && self.count_floor <= self.events
            && self.events <= self.count_ceiling.saturating_add(1)
    }
}

/// Reads a stream: from a snapshot of its published events, or following new ones.
///
/// Opening never waits for a writer and works while one appends, in this or another
/// process. A reader holds a shared reader-presence lock for its life, which only keeps
/// a writer's recovery from rewriting bytes under it.
/// A reader is `Send` and `Sync`; share one behind an `Arc` or open as many as needed.
///
/// A reader works on a snapshot: [`write_offset`](Self::write_offset) is the published
/// write offset as of [`open`](Self::open) or the last [`refresh`](Self::refresh), and
/// [`iter`](Self::iter) stops there. [`follow`](Self::follow) waits for new events.
///
/// Opening checks only the header; events are checked as they are read (see
/// [`iter`](Self::iter)) or all at once with [`verify`](Self::verify).
///
/// The [`EventView`]s a reader hands out borrow the file's shared mapping: they stay
/// valid and unchanged as long as the file is changed only through evstream (the
/// [safety contract](crate#safety-contract)). A reader holds the stream's shared
/// reader-presence lock from open to drop, and a writer's recovery that would rewrite
/// published bytes is refused while it does ([`Error::ReadersPresent`]), in this process
/// or any other.
#[derive(Debug)]
pub struct StreamReader {
    path: PathBuf,
    map: ReadMap,
    /// End of the event area: the trailer's offset.
    trailer_at: u64,
    /// The trailer as of open or the last refresh.
    trailer: Trailer,
    published: u64,
    /// Header event counts loaded just before and just after `published`.
    counts: (u64, u64),
    index: Mutex<TimeIndex>,
    /// Holds the shared reader-presence lock for the reader's life.
    presence: HeldLock,
    /// The wait words' page for wait tickets, mapped at the first one (`None` inside if
    /// it cannot be).
    wait_map: OnceLock<Option<Arc<WaitMap>>>,
}

impl StreamReader {
    /// Opens the stream at `path` for reading.
    ///
    /// Opening reads the trailer (magic number and version) before anything else, then
    /// the header; it never writes to the file.
    ///
    /// # Errors
    /// - [`Error::NotAStream`] for a file that is not a stream of version 2 or 3
    ///   (among them version 1 streams, which [`upgrade_v1`](crate::upgrade_v1)
    ///   converts), and [`Error::DamagedTrailer`] for a stream whose trailer is damaged.
    /// - [`Error::BadHeader`] for a write offset outside the event area or below the
    ///   durable watermark.
    /// - [`Error::Locked`] if a writer's recovery of a torn tail (which holds the
    ///   reader-presence lock alone while it rewrites bytes) lasts more than 2 s.
    /// - [`Error::NotAFile`] for a directory, FIFO or device; [`Error::Io`] for a missing
    ///   path or lacking permission.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// # let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// # writer.append(1, b"a")?;
    /// # writer.append(2, b"b")?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let mut total = 0;
    /// for event in reader.iter() {
    ///     total += event?.payload().len();
    /// }
    /// assert_eq!(total, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = open_regular(path, false)?;
        // Present before anything is read: from here on no recovery rewrites a byte.
        announce_reader(&file, path)?;
        // And the path still names this file: a log that recycles a segment takes its
        // name away while it holds the presence lock alone, so a reader that got the
        // file before and its lock after finds the name gone, and reads nothing of the
        // file's next life.
        check_still_named(&file, path)?;
        Self::read(file, path, len)
    }

    /// A second reader of this reader's file, with a snapshot (as of now) and a
    /// reader-presence lock of its own: the same file, also once its path was removed
    /// (a log's retention deleted the segment) or names another file (a stream created
    /// again there). Dropping either reader leaves the other as it is.
    ///
    /// The file cannot have changed lives in between: this reader's presence lock keeps a
    /// log from recycling it, and a writer from recovering it.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened again: on Linux it is opened through
    /// `/proc/self/fd`; elsewhere, or without `/proc`, through its path, which must still
    /// name it ([`NotFound`](std::io::ErrorKind::NotFound) otherwise). [`Error::Locked`]
    /// as [`open`](Self::open).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// writer.append(1, b"kept")?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// std::fs::remove_file(&path).unwrap();
    /// // Another stream made at the path is another file.
    /// evstream::StreamWriter::create(&path, 1 << 20)?.append(9, b"other")?;
    /// writer.append(2, b"after")?; // the first writer still appends to its file
    /// let again = reader.try_clone()?;
    /// let payloads = again
    ///     .iter()
    ///     .map(|event| Ok(event?.payload().to_vec()))
    ///     .collect::<evstream::Result<Vec<_>>>()?;
    /// assert_eq!(payloads, [b"kept".to_vec(), b"after".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_clone(&self) -> Result<Self> {
        let file = reopen(
            self.presence.file(),
            &self.path,
            libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
        .map_err(|e| Error::io("open", &self.path, e))?;
        announce_reader(&file, &self.path)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        Self::read(file, &self.path, len)
    }

    /// The reader of `file`, `len` bytes long and opened at `path`, on which the reader
    /// presence lock is held: its identity and header checked, then mapped.
    fn read(file: std::fs::File, path: &Path, len: u64) -> Result<Self> {
        // Checks identity, then the header, without mapping anything.
        let identity = read_identity(&file, path, len)?;
        read_stream_header(&file, path, &identity)?;
        let map = ReadMap::new(&file, len).map_err(|e| Error::io("map", path, e))?;
        let (published, counts) = snapshot(&map);
        check_write_offset(path, published, identity.trailer_at)?;
        Ok(Self {
            path: path.to_owned(),
            map,
            trailer_at: identity.trailer_at,
            trailer: identity.trailer,
            published,
            counts,
            index: Mutex::new(TimeIndex::default()),
            presence: HeldLock::new(file, LockKind::Reader),
            wait_map: OnceLock::new(),
        })
    }

    /// Picks up events published since the last open or refresh; returns the new write
    /// offset.
    ///
    /// Also reloads the trailer: [`generation`](Self::generation),
    /// [`durable_offset`](Self::durable_offset).
    ///
    /// # Errors
    /// [`Error::Recovered`] if a writer recovered the stream since this reader opened or
    /// last refreshed (the generation changed), [`Error::Regressed`] if the write offset
    /// moved back, [`Error::BadHeader`] if it now lies outside the event area. The
    /// snapshot is unchanged then.
    pub fn refresh(&mut self) -> Result<u64> {
        let trailer = self.live_trailer();
        let (now, counts) = snapshot(&self.map);
        self.check_published(now, self.published)?;
        if let Some(trailer) = trailer {
            self.trailer = trailer;
        }
        self.published = now;
        self.counts = counts;
        Ok(now)
    }

    /// Checks a freshly loaded write offset: inside the event area, not below `seen`, an
    /// offset this reader already relied on, and no recovery since the snapshot.
    fn check_published(&self, now: u64, seen: u64) -> Result<()> {
        self.check_generation()?;
        check_write_offset(&self.path, now, self.trailer_at)?;
        if now < seen {
            return Err(self.regressed(seen, now));
        }
        Ok(())
    }

    /// [`Error::Recovered`] if the live trailer's generation differs from the snapshot's.
    fn check_generation(&self) -> Result<()> {
        match self.live_trailer() {
            Some(live) if live.generation != self.trailer.generation => Err(Error::Recovered {
                path: self.path.clone(),
                was: self.trailer.generation,
                now: live.generation,
            }),
            _ => Ok(()),
        }
    }

    /// The error for a write offset that moved back from `was` to `now`:
    /// [`Error::Recovered`] when the generation says a recovery did it.
    fn regressed(&self, was: u64, now: u64) -> Error {
        match self.check_generation() {
            Err(recovered) => recovered,
            Ok(()) => Error::Regressed {
                path: self.path.clone(),
                was,
                now,
            },
        }
    }

    /// The trailer as the mapping holds it now, or `None` if neither slot checks out
    /// (which a writer's updates never cause: it rewrites one slot at a time).
    fn live_trailer(&self) -> Option<Trailer> {
        let a = self.map.load_record(self.trailer_at);
        let b = self.map.load_record(self.trailer_at + TRAILER_SLOT_LEN);
        format::decode_trailer([&a, &b], self.trailer_at).ok()
    }

    /// Whether the stream is sealed: its writer called
    /// [`StreamWriter::seal`](crate::StreamWriter::seal), so no more events will come.
    ///
    /// Reads the live trailer, not the snapshot: a follower that has caught up with a
    /// sealed stream has seen every event.
    pub fn is_sealed(&self) -> bool {
        self.live_trailer().is_some_and(|t| t.sealed)
    }

    /// The stream's recovery generation as of open or the last
    /// [`refresh`](Self::refresh). Every recovery that drops a torn tail increments it.
    pub fn generation(&self) -> u64 {
        self.trailer.generation
    }

    /// The CRC seed every event's checksum in this stream is seeded with: 0 for a
    /// format version 2 stream, never 0 for version 3 (`docs/FORMAT.md`, "Version 3:
    /// seeded checksums"). A program that checks the events' bytes itself (such as an
    /// archive of them) needs it.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// # let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// writer.append(7, b"abc")?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let event = reader.iter().next().unwrap()?;
    /// let expected = evstream::format::event_checksum_seeded(reader.crc_seed(), 7, b"abc");
    /// assert_eq!(event.checksum(), expected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn crc_seed(&self) -> u32 {
        self.trailer.seed
    }

    /// The durable watermark as of open or the last [`refresh`](Self::refresh): events
    /// before this offset were on stable storage, acknowledged by a writer's flush.
    pub fn durable_offset(&self) -> u64 {
        self.trailer.durable_offset
    }

    /// The stream file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length: the stream's capacity.
    pub fn capacity(&self) -> u64 {
        self.map.len()
    }

    /// The end of the event area: where the trailer starts, 1 to 2 KiB before the end of
    /// the file. Events never extend past it.
    pub fn events_end(&self) -> u64 {
        self.trailer_at
    }

    /// The write offset of this reader's snapshot.
    pub fn write_offset(&self) -> u64 {
        self.published
    }

    /// The event count in the header right now (it may trail the events by one append, or
    /// one [batch](crate::StreamWriter::append_batch), while a writer is mid-publication;
    /// [`verify`](Self::verify) counts for certain).
    pub fn header_event_count(&self) -> u64 {
        self.map.event_count()
    }

    /// The stream's start timestamp (Unix nanoseconds when it was created).
    pub fn start_timestamp(&self) -> i64 {
        self.map.start_timestamp()
    }

    /// Whether a writer, in any process, holds the stream open for appending now.
    ///
    /// Probes with a shared lock that is released at once; a writer that opens at that
    /// instant waits the moment out rather than failing.
    pub fn writer_active(&self) -> Result<bool> {
        let file = std::fs::File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        writer_lock_held(&file).map_err(|e| Error::io("probe lock of", &self.path, e))
    }

    /// The published events up to `end`, a write offset this reader saw published.
    ///
    /// # Errors
    /// [`Error::Regressed`] if the write offset has since moved back below `end`, which
    /// only a writer recovering a damaged tail under this reader does.
    fn events(&self, end: u64) -> Result<&[u8]> {
        self.map
            .published(end)
            .ok_or_else(|| self.regressed(end, self.map.write_offset()))
    }

    /// Iterates the events of this snapshot, verifying each checksum and the timestamp
    /// order.
    ///
    /// A damaged event yields one [`Error::Corrupt`] naming its offset and what is wrong,
    /// and the iteration ends there. Nothing is allocated per event.
    pub fn iter(&self) -> Events<'_> {
        Events::new(self, STREAM_HEADER_LEN, true)
    }

    /// Iterates without checking checksums, for callers who trust the file.
    ///
    /// Sizes are still bounds-checked, so damage can yield wrong payloads but never a
    /// read outside the published events.
    pub fn iter_unverified(&self) -> Events<'_> {
        Events::new(self, STREAM_HEADER_LEN, false)
    }

    /// Iterates verified events from `offset`, which must be the offset of an event (as
    /// from [`EventView::offset`] or [`EventView::next_offset`]) or the write offset.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is outside `24..=write_offset`. An offset
    /// inside an event is not detected here; the first item is then an error.
    pub fn iter_from(&self, offset: u64) -> Result<Events<'_>> {
        self.check_offset(offset)?;
        Ok(Events::new(self, offset, true))
    }

    fn check_offset(&self, offset: u64) -> Result<()> {
        if (STREAM_HEADER_LEN..=self.published).contains(&offset) {
            Ok(())
        } else {
            Err(Error::OffsetOutOfRange {
                offset,
                published: self.published,
            })
        }
    }

    /// Checks every published event of the snapshot, and the trailer record (as of open
    /// or the last [`refresh`](Self::refresh)) against them: an event ends at its durable
    /// watermark, and the events below it are as many as its durable count, the last one
    /// with its last durable timestamp. See [`Verification`].
    ///
    /// Damage is reported in the [`Verification`], not as an error.
    ///
    /// # Errors
    /// [`Error::Regressed`] if a writer moved the write offset back during the scan.
    pub fn verify(&self) -> Result<Verification> {
        self.verify_with_progress(|_, _| {})
    }

    /// Like [`verify`](Self::verify), calling `progress(bytes_done, bytes_total)` every
    /// few megabytes.
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_with_progress(&self, mut progress: impl FnMut(u64, u64)) -> Result<Verification> {
        let (count_floor, header_event_count) = self.counts;
        let end = self.published;
        let total = end - STREAM_HEADER_LEN;
        let mut result = Verification {
            events: 0,
            valid_end: STREAM_HEADER_LEN,
            write_offset: end,
            header_event_count,
            count_floor,
            count_ceiling: header_event_count,
            first_timestamp: None,
            last_timestamp: None,
            damage: None,
        };
        // Read-ahead over the written part only: asking for pages of a hole would make
        // some file systems (tmpfs) allocate them.
        let advised_end = crate::sys::first_hole(self.presence.file(), STREAM_HEADER_LEN, end)
            .unwrap_or(end)
            .max(STREAM_HEADER_LEN);
        self.map
            .advise_sequential(STREAM_HEADER_LEN, advised_end - STREAM_HEADER_LEN);
        let mut next_report = 0;
        // What the trailer record says of the events below its watermark, against the
        // events that end at or below it, and the one that crosses it, if any.
        let watermark = self.trailer.durable_offset;
        let mut durable: (u64, Option<i64>) = (0, None);
        let mut crossing: Option<(u64, u64)> = None;
        for event in self.iter() {
            match event {
                Ok(event) => {
                    if event.next_offset() <= watermark {
                        durable = (durable.0 + 1, Some(event.timestamp()));
                    } else if event.offset() < watermark {
                        crossing = Some((event.offset(), event.next_offset()));
                    }
                    result.events += 1;
                    result.valid_end = event.next_offset();
                    result.first_timestamp.get_or_insert(event.timestamp());
                    result.last_timestamp = Some(event.timestamp());
                    if result.valid_end >= next_report {
                        progress(result.valid_end - STREAM_HEADER_LEN, total);
                        next_report = result.valid_end + (8 << 20);
                    }
                }
                Err(Error::Corrupt { offset, reason, .. }) => {
                    result.damage = Some((offset, reason));
                }
                Err(other) => return Err(other),
            }
        }
        progress(result.valid_end - STREAM_HEADER_LEN, total);
        // Damage below the watermark hides what lies there; damage above it (a torn tail
        // a writer's open would drop) comes after the record's problem.
        let below_seen = result
            .damage
            .as_ref()
            .is_none_or(|(at, _)| *at >= watermark);
        if below_seen {
            let mismatch = match crossing {
                Some((offset, end)) => Some((offset, Corruption::WatermarkInsideEvent { end })),
                None => format::durable_mismatch(
                    (
                        self.trailer.durable_count,
                        self.trailer.durable_last_timestamp,
                    ),
                    durable,
                )
                .map(|reason| (watermark, reason)),
            };
            if mismatch.is_some() {
                result.damage = mismatch;
            }
        }
        if result.events > result.count_ceiling.saturating_add(1) {
            // A batch may have been in flight at the snapshot: by now its count is stored.
            let live = self.map.event_count();
            result.count_ceiling = result.count_ceiling.max(live.min(result.events));
        }
        Ok(result)
    }

    /// Offset of the first event with a timestamp at or after `timestamp`, or `None` if
    /// every event in the snapshot is earlier.
    ///
    /// Uses a sparse index (one entry per 64 KiB of stream) that it extends as it
    /// scans, so repeated seeks read at most about 64 KiB of events each.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if a damaged event lies before the answer.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let at_10 = writer.append(10, b"a")?;
    /// writer.append(20, b"b")?;
    ///
    /// let reader = evstream::StreamReader::open(&path)?;
    /// assert_eq!(reader.seek_time(5)?, Some(at_10)); // the first event at or after 5
    /// assert_eq!(reader.seek_time(10)?, Some(at_10));
    /// assert_eq!(reader.seek_time(21)?, None); // every event is earlier
    /// # Ok(())
    /// # }
    /// ```
    pub fn seek_time(&self, timestamp: i64) -> Result<Option<u64>> {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let (mut offset, mut previous) = index.start_for(timestamp);
        let events = self.events(self.published)?;
        while offset < self.published {
            let pos = (offset - STREAM_HEADER_LEN) as usize;
            let raw = format::read_verified(self.trailer.seed, events, pos, previous)
                .map_err(|reason| self.corrupt(offset, reason))?;
            let event = EventView::new(offset, raw);
            index.note(offset, event.timestamp());
            if event.timestamp() >= timestamp {
                return Ok(Some(offset));
            }
            previous = event.timestamp();
            offset = event.next_offset();
        }
        Ok(None)
    }

    /// Iterates verified events from the first one at or after `timestamp`.
    ///
    /// # Errors
    /// As [`seek_time`](Self::seek_time).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// for (t, reading) in [(10, "a"), (20, "b"), (30, "c")] {
    ///     writer.append(t, reading.as_bytes())?;
    /// }
    ///
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let recent: Vec<i64> = reader
    ///     .iter_since(15)?
    ///     .map(|event| event.map(|e| e.timestamp()))
    ///     .collect::<evstream::Result<_>>()?;
    /// assert_eq!(recent, [20, 30]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn iter_since(&self, timestamp: i64) -> Result<Events<'_>> {
        let offset = self.seek_time(timestamp)?.unwrap_or(self.published);
        Ok(Events::new(self, offset, true))
    }

    /// Follows the stream from `offset` (an event's offset, or the write offset to see only
    /// new events), waiting for events as a writer publishes them.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is outside `24..=write_offset`.
    ///
    /// # Examples
    /// A consumer that prints every new event until the writer has been quiet for a second:
    /// ```
    /// use std::time::Duration;
    ///
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let mut follow = reader.follow(reader.write_offset())?; // only events from now on
    ///
    /// // The writer usually lives in another thread or process.
    /// let producer = std::thread::spawn(move || -> evstream::Result<()> {
    ///     for reading in ["temp=21.5", "temp=21.7"] {
    ///         writer.append_now(reading.as_bytes())?;
    ///     }
    ///     Ok(())
    /// });
    ///
    /// let mut seen = Vec::new();
    /// while let Some(event) = follow.next_timeout(Duration::from_secs(1))? {
    ///     seen.push(event.payload().to_vec());
    ///     if seen.len() == 2 {
    ///         break;
    ///     }
    /// }
    /// producer.join().expect("producer thread")?;
    /// assert_eq!(seen, [b"temp=21.5".to_vec(), b"temp=21.7".to_vec()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn follow(&self, offset: u64) -> Result<Follow<'_>> {
        self.check_offset(offset)?;
        Ok(Follow {
            reader: self,
            offset,
            previous: i64::MIN,
            failed: None,
            strategy: WaitStrategy::default(),
            sleeper: Sleeper::default(),
            looked: None,
        })
    }

    /// Registers as a waiter for an event past `offset` without sleeping, for a thread
    /// that sleeps for many followers ([`WaitTicket::wait_any`]); `None` if there is no
    /// need to wait: an event is published past `offset`, or the stream is finished
    /// (sealed or full) there.
    ///
    /// The ticket is taken as a blocking [`Follow`] goes to sleep (`docs/FORMAT.md`,
    /// "Waking followers": register, then look once more), so a publish or seal after
    /// this call wakes it. Look again (a [`follow`](Self::follow) from `offset`) once it
    /// is [woken](WaitTicket::is_woken) or its [longest sleep](WaitTicket::longest_sleep)
    /// has passed.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// writer.append(1, b"one")?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// assert!(reader.wait_ticket(24).is_none(), "an event is there to read");
    /// assert!(reader.wait_ticket(reader.write_offset()).is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_ticket(&self, offset: u64) -> Option<WaitTicket> {
        WaitTicket::take(self.wait_map(), || {
            self.map.write_offset() > offset || finished(self, offset)
        })
    }

    /// Whether an event can still come: an error if the file was deleted (it has no name
    /// left) and no writer has it open, so that nothing will ever append to it again.
    /// A writer that still has a deleted file open may go on appending, and is followed.
    ///
    /// A blocking [`Follow`] that waits looks every 2 s itself; a follower that leaves its
    /// sleep to another thread ([`wait_ticket`](Self::wait_ticket)) calls this to know
    /// when to stop waiting. It costs two system calls (`fstat`, and a probe of the
    /// writer's lock).
    ///
    /// # Errors
    /// [`Error::Io`] with [`NotFound`](std::io::ErrorKind::NotFound) when the file is
    /// deleted with no writer left; [`Error::Io`] if `fstat` or the probe fails.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// std::fs::remove_file(&path).expect("remove the file");
    /// assert!(reader.check_abandoned().is_ok(), "its writer may still append");
    /// drop(writer);
    /// assert!(reader.check_abandoned().is_err(), "no event can come any more");
    /// # Ok(())
    /// # }
    /// ```
    pub fn check_abandoned(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let file = self.presence.file();
        let path = &self.path;
        let linked = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .nlink()
            > 0;
        if linked || writer_lock_held(file).map_err(|e| Error::io("probe lock of", path, e))? {
            return Ok(());
        }
        Err(Error::io(
            "follow",
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file was deleted, and no writer has it open",
            ),
        ))
    }

    /// The wait words' page, mapped at the first call.
    pub(crate) fn wait_map(&self) -> Option<Arc<WaitMap>> {
        self.wait_map
            .get_or_init(|| {
                WaitMap::new(self.presence.file(), self.trailer_at)
                    .ok()
                    .map(Arc::new)
            })
            .clone()
    }

    /// The write offset in the header right now (loaded with `Acquire`), not this
    /// reader's snapshot; for the log reader, which follows segments itself.
    pub(crate) fn live_write_offset(&self) -> Result<u64> {
        let now = self.map.write_offset();
        check_write_offset(&self.path, now, self.map.len())?;
        Ok(now)
    }

    /// The event count in the header right now (stored after the write offset).
    pub(crate) fn live_event_count(&self) -> u64 {
        self.map.event_count()
    }

    /// The verified event at `offset`, given the published write offset `end` (at or
    /// past it) and the previous event's timestamp.
    pub(crate) fn read_at(&self, offset: u64, end: u64, previous: i64) -> Result<EventView<'_>> {
        let events = self.events(end)?;
        let pos = offset
            .checked_sub(STREAM_HEADER_LEN)
            .and_then(|p| usize::try_from(p).ok())
            .ok_or(Error::OffsetOutOfRange {
                offset,
                published: end,
            })?;
        format::read_verified(self.trailer.seed, events, pos, previous)
            .map(|raw| EventView::new(offset, raw))
            .map_err(|reason| self.corrupt(offset, reason))
    }

    /// What a writer's open would keep of the events this reader's snapshot holds (see
    /// [`StreamWriter::open`](crate::StreamWriter::open)): the events below the durable
    /// watermark, and those above it up to the first damaged one. Returns their count,
    /// the newest one's timestamp, and whether the open would drop a torn tail. Reads
    /// only; a log's writer checks with it before it repairs anything.
    ///
    /// # Errors
    /// [`Error::Corrupt`] where the writer's open would refuse the stream: a torn tail
    /// starting at a watermark that is not where an event ends.
    pub(crate) fn kept_by_writer_open(&self) -> Result<(u64, Option<i64>, bool)> {
        let events = self.map.published(self.published).unwrap_or_default();
        let watermark = usize::try_from(self.trailer.durable_offset - STREAM_HEADER_LEN)
            .unwrap_or(usize::MAX)
            .min(events.len());
        let scan = format::scan_from(
            self.trailer.seed,
            events,
            watermark,
            self.trailer.durable_last_timestamp,
        );
        if format::torn_at_watermark(&scan, watermark) {
            let other = read_other_record(self.presence.file(), self.trailer_at, &self.trailer);
            format::check_watermark(
                events,
                format::watermark_walk_start(&self.trailer, other),
                (
                    watermark,
                    self.trailer.durable_count,
                    self.trailer.durable_last_timestamp,
                ),
            )
            .map_err(|(pos, reason)| self.corrupt(STREAM_HEADER_LEN + pos as u64, reason))?;
        }
        Ok((
            self.trailer.durable_count.saturating_add(scan.count),
            scan.last_timestamp,
            scan.damage.is_some(),
        ))
    }

    /// The `len` published bytes at `offset`, if they lie below the write offset.
    pub(crate) fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let events = self.map.published(self.map.write_offset())?;
        let start = usize::try_from(offset.checked_sub(STREAM_HEADER_LEN)?).ok()?;
        events.get(start..start.checked_add(len)?)
    }

    /// Iterates from `offset` without checking checksums, up to the snapshot's end.
    pub(crate) fn iter_unverified_from(&self, offset: u64) -> Result<Events<'_>> {
        self.check_offset(offset)?;
        Ok(Events::new(self, offset, false))
    }

    fn corrupt(&self, offset: u64, reason: Corruption) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            offset,
            watermark: self.trailer.durable_offset,
            reason,
        }
    }
}

/// Loads the header's event count, the write offset, and the count again: the events
/// before that write offset number at least the first count and at most one more than
/// the second (the count is stored after the offset, both with `Release`).
fn snapshot(map: &ReadMap) -> (u64, (u64, u64)) {
    let before = map.event_count();
    let published = map.write_offset();
    let after = map.event_count();
    (published, (before, after))
}

/// A sparse index of (offset, timestamp) pairs over a prefix of the stream.
#[derive(Debug, Default)]
struct TimeIndex {
    entries: Vec<(u64, i64)>,
}

impl TimeIndex {
    /// Where to start scanning for the first event at or after `timestamp`, and the
    /// timestamp of the event before that point (for the order check).
    fn start_for(&self, timestamp: i64) -> (u64, i64) {
        let later = self.entries.partition_point(|&(_, ts)| ts < timestamp);
        match later.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(&(offset, ts)) => (offset, ts),
            None => (STREAM_HEADER_LEN, i64::MIN),
        }
    }

    /// Records a verified event if it is far enough past the last entry.
    fn note(&mut self, offset: u64, timestamp: i64) {
        let due = match self.entries.last() {
            Some(&(last, _)) => offset >= last + INDEX_STRIDE,
            None => true,
        };
        if due {
            self.entries.push((offset, timestamp));
        }
    }
}

/// Iterator over the events of a [`StreamReader`] snapshot; see [`StreamReader::iter`].
#[derive(Debug)]
pub struct Events<'a> {
    reader: &'a StreamReader,
    events: &'a [u8],
    regressed: Option<Error>,
    pos: usize,
    previous: i64,
    verify: bool,
    done: bool,
}

impl<'a> Events<'a> {
    fn new(reader: &'a StreamReader, offset: u64, verify: bool) -> Self {
        let (events, regressed) = match reader.events(reader.published) {
            Ok(events) => (events, None),
            Err(e) => (&[][..], Some(e)),
        };
        let pos = offset.saturating_sub(STREAM_HEADER_LEN) as usize;
        Self {
            reader,
            events,
            pos,
            previous: i64::MIN,
            verify,
            done: pos >= events.len() && regressed.is_none(),
            regressed,
        }
    }

    /// The offset of the next event this iterator would yield (to resume from later).
    pub fn offset(&self) -> u64 {
        STREAM_HEADER_LEN + self.pos as u64
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<EventView<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.regressed.take() {
            self.done = true;
            return Some(Err(e));
        }
        let parsed = if self.verify {
            format::read_verified(
                self.reader.trailer.seed,
                self.events,
                self.pos,
                self.previous,
            )
        } else {
            format::parse_event(self.events, self.pos)
        };
        let offset = self.offset();
        match parsed {
            Ok(raw) => {
                let event = EventView::new(offset, raw);
                self.pos += raw.len();
                self.previous = event.timestamp;
                self.done = self.pos >= self.events.len();
                Some(Ok(event))
            }
            Err(reason) => {
                self.done = true;
                Some(Err(self.reader.corrupt(offset, reason)))
            }
        }
    }
}

impl std::iter::FusedIterator for Events<'_> {}

/// How a [`Follow`] waits for the writer when it has caught up, like the idle strategies
/// of Aeron: trade CPU for latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Sleep in the kernel until the writer publishes (a futex on the stream's wait
    /// words, across processes). An idle follower uses no CPU. The default.
    #[default]
    Block,
    /// Look `spins` times in a busy loop first, then block: lower latency for a stream
    /// that publishes often, one core's worth of CPU for a short while after each event.
    SpinThenBlock {
        /// Looks before blocking.
        spins: u32,
    },
    /// Never sleep: look in a busy loop until an event arrives or the timeout passes.
    /// The lowest latency, and a whole core while waiting.
    BusySpin,
}

impl WaitStrategy {
    /// Whether a follower that has looked `spins` times in a busy loop should now block.
    pub(crate) fn blocks_after(self, spins: u32) -> bool {
        match self {
            Self::Block => true,
            Self::SpinThenBlock { spins: limit } => spins >= limit,
            Self::BusySpin => false,
        }
    }
}

/// Follows a live stream; see [`StreamReader::follow`].
///
/// A `Follow` is also a blocking [`Iterator`]: `next` waits as long as it takes for the
/// next event and returns `None` once the stream is [finished](Self::is_finished)
/// (sealed or full, with every event seen).
///
/// On Linux a waiting follower sleeps on a futex in the stream's trailer (its wait
/// words, see `docs/FORMAT.md`), which the writer wakes when it publishes; this needs
/// write permission on the file (to count itself as a waiter). Without it, and elsewhere
/// than Linux, a follower polls, looking about every half millisecond. Registering
/// writes to the trailer's wait words, so a followed stream's modification time can
/// change even while no writer appends.
///
/// A futex cannot be registered with an async runtime's reactor (it is no file
/// descriptor). An async follower instead takes a [`WaitTicket`] with
/// [`StreamReader::wait_ticket`] and leaves the sleep to a thread that sleeps for many
/// followers at once ([`WaitTicket::wait_any`]); the `evstream-tokio` crate does this for
/// tokio.
#[derive(Debug)]
pub struct Follow<'a> {
    reader: &'a StreamReader,
    offset: u64,
    previous: i64,
    failed: Option<Corruption>,
    strategy: WaitStrategy,
    sleeper: Sleeper,
    /// When the follower last looked whether the file was deleted with no writer left (or
    /// first waited): set only once it waits, so that a `Follow` made to read what is
    /// there (as the async followers make one per event) reads no clock for it.
    looked: Option<Instant>,
}

/// How often a follower that waits looks whether its file was deleted with no writer
/// left to append to it (no event can then come).
const ABANDONED_LOOK: Duration = Duration::from_secs(2);

/// The longest sleep of a follower that could not make the barrier on the writers' CPUs
/// (a sandbox that forbids `membarrier` to it alone).
const UNFENCED_SLEEP: Duration = Duration::from_millis(10);

/// A follower's sleep on a stream's wait words, mapped at the first wait; shared by
/// [`Follow`] and the log's iterator (one per segment).
#[derive(Debug, Default)]
pub(crate) struct Sleeper {
    /// The mapped wait words: `None` until the first wait, then `Some(None)` if they
    /// cannot be mapped (polling then).
    wait: Option<Option<WaitMap>>,
}

impl Sleeper {
    /// Sleeps until `reader`'s writer wakes its followers (a publish, a seal, a log's
    /// roll), `left` passes, or a spurious wake, unless `ready`, the last look taken
    /// after registering as a waiter (`docs/FORMAT.md`, "Waking followers"), finds
    /// something to do. Where the wait words cannot be mapped it sleeps 0.5 ms instead.
    pub(crate) fn block(
        &mut self,
        reader: &StreamReader,
        left: Option<Duration>,
        ready: impl FnOnce() -> bool,
    ) {
        let wait = self
            .wait
            .get_or_insert_with(|| WaitMap::new(reader.presence.file(), reader.trailer_at).ok());
        let Some(words) = wait.as_ref().and_then(WaitMap::words) else {
            // No wait words: poll.
            let pause = Duration::from_micros(500);
            std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
            return;
        };
        let (seen, barrier) = words.register();
        // The last look, after registering: a wake from here on changes the sequence
        // before the sleep starts, or finds the sleeper.
        if !ready() {
            // Without the barrier a writer that skips its fence may miss this follower:
            // sleep briefly, so a missed wake costs at most that.
            let left = if barrier {
                left
            } else {
                Some(left.map_or(UNFENCED_SLEEP, |l| l.min(UNFENCED_SLEEP)))
            };
            words.sleep(seen, left);
        }
        words.unregister();
    }
}

impl<'a> Follow<'a> {
    /// Sets how this follower waits (the default is [`WaitStrategy::Block`]).
    ///
    /// # Examples
    /// ```
    /// use evstream::WaitStrategy;
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// # let _writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let follow = reader
    ///     .follow(reader.write_offset())?
    ///     .with_strategy(WaitStrategy::SpinThenBlock { spins: 10_000 });
    /// assert_eq!(follow.strategy(), WaitStrategy::SpinThenBlock { spins: 10_000 });
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// How this follower waits.
    pub fn strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// Returns the next event, waiting up to `timeout` for a writer to publish one.
    ///
    /// `Ok(None)` means the timeout passed with no new event, or the stream is
    /// [finished](Self::is_finished) (then it returns at once); call again to keep waiting.
    /// How it waits is the [strategy](Self::with_strategy); with the default, a follower
    /// sleeps until the writer's publish wakes it, never past `timeout`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a damaged event (after which every call returns it again),
    /// [`Error::Recovered`] if a writer recovered the stream (its generation changed),
    /// [`Error::Regressed`] if the write offset moved back below this position;
    /// [`Error::Io`] (`NotFound`) once the file was deleted and no writer has it open, so
    /// that no event can come (a follower that waits looks every 2 s; a writer that still
    /// has the deleted file open may go on appending, and is followed).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<EventView<'a>>> {
        // A timeout too long to represent (such as `Duration::MAX`) waits forever.
        let deadline = Instant::now().checked_add(timeout);
        let mut spins = 0u32;
        loop {
            if let Some(event) = self.try_next()? {
                return Ok(Some(event));
            }
            // The seal is in the checksummed trailer: look at it now and then while spinning.
            if spins.is_multiple_of(1024) && self.is_finished() {
                return Ok(None);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if self.strategy.blocks_after(spins) {
                let looked = *self.looked.get_or_insert(now);
                self.block(Some(left.map_or(ABANDONED_LOOK, |l| l.min(ABANDONED_LOOK))))?;
                if looked.elapsed() >= ABANDONED_LOOK {
                    self.looked = Some(Instant::now());
                    self.reader.check_abandoned()?;
                }
            } else {
                spins = spins.saturating_add(1);
                std::hint::spin_loop();
            }
        }
    }

    /// Sleeps until the writer publishes (or seals), `left` passes, or a spurious wake.
    fn block(&mut self, left: Option<Duration>) -> Result<()> {
        let (reader, offset) = (self.reader, self.offset);
        self.sleeper.block(reader, left, || {
            reader.map.write_offset() > offset || finished(reader, offset)
        });
        Ok(())
    }

    /// Returns the next event if one is published now, without waiting.
    ///
    /// # Errors
    /// As [`next_timeout`](Self::next_timeout).
    pub fn try_next(&mut self) -> Result<Option<EventView<'a>>> {
        let published = self.published()?;
        if published > self.offset {
            self.read_at(published).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The offset of the next event to be returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether this follower has seen every event the stream will ever hold: the stream
    /// is [sealed](crate::StreamWriter::seal), or too full to take even an empty event,
    /// and no event is published past this position. [`next_timeout`](Self::next_timeout)
    /// then returns `Ok(None)` at once, and the iterator ends.
    pub fn is_finished(&self) -> bool {
        finished(self.reader, self.offset)
    }

    fn published(&self) -> Result<u64> {
        let now = self.reader.map.write_offset();
        self.reader.check_published(now, self.offset)?;
        Ok(now)
    }

    fn read_at(&mut self, published: u64) -> Result<EventView<'a>> {
        let reader: &'a StreamReader = self.reader;
        if let Some(reason) = &self.failed {
            return Err(reader.corrupt(self.offset, reason.clone()));
        }
        let events = reader.events(published)?;
        let pos = (self.offset - STREAM_HEADER_LEN) as usize;
        match format::read_verified(reader.trailer.seed, events, pos, self.previous) {
            Ok(raw) => {
                let event = EventView::new(self.offset, raw);
                self.offset = event.next_offset();
                self.previous = event.timestamp;
                Ok(event)
            }
            Err(reason) => {
                self.failed = Some(reason.clone());
                Err(reader.corrupt(self.offset, reason))
            }
        }
    }
}

/// Whether a follower at `offset` has seen every event `reader`'s stream will hold.
fn finished(reader: &StreamReader, offset: u64) -> bool {
    // Sealing comes after the last event is published, so once the seal is seen the
    // write offset loaded after it is final.
    let sealed = reader.is_sealed();
    let now = reader.map.write_offset();
    // A stream with no room for even an empty event takes no more either.
    let full = reader.trailer_at.saturating_sub(now) < format::EVENT_HEADER_LEN;
    (sealed || full) && now <= offset
}

impl<'a> Iterator for Follow<'a> {
    type Item = Result<EventView<'a>>;

    /// Waits as long as it takes for the next event; `None` once the stream is
    /// [finished](Follow::is_finished). After an error, every call returns it again.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) if self.is_finished() => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
