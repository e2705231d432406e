//! The operating-system boundary: the memory mappings and every `unsafe` block in the crate.
//!
//! # The contract the safe API relies on
//!
//! A mapped file is memory that other processes can change, so Rust's guarantees only
//! hold while everybody follows these rules, which evstream's own writer and readers do.
//! They are stated for users in the crate documentation ("Safety contract"); each
//! `// SAFETY:` comment below names the one it relies on.
//!
//! 1. **Published bytes never change while a reader is open.** Bytes between the stream
//!    header and the published `write_offset` are written once, before they are
//!    published, and never again while a reader holds the shared reader-presence lock
//!    ([`set_presence`]). Recovery of a torn tail in
//!    [`StreamWriter::open`](crate::StreamWriter::open), the one writer of published
//!    bytes, takes that lock exclusively first, and is refused while any reader holds it.
//! 2. **One writer.** Only the holder of the file's exclusive lock writes, and it writes
//!    only past the published `write_offset` (and the header fields, through atomics).
//! 3. **The file never shrinks.** A stream's length is fixed when it is created. Another
//!    program that truncates a mapped stream makes readers and writers that touch the lost
//!    pages die with `SIGBUS`; nothing in evstream can prevent that.
//! 4. **Header fields are only accessed atomically.** `write_offset` and `event_count` are
//!    8-byte fields at offsets 0 and 8, and every mapping starts on a page boundary, so
//!    they are naturally aligned `AtomicU64`s. The writer stores `write_offset` with
//!    `Release` after the event's bytes; readers load it with `Acquire` before they look at
//!    the bytes, so a reader never sees a partly written event.
//!
//! 5. **Wait words are only accessed atomically.** The 32-bit wake sequence and waiter
//!    count at trailer bytes 256 and 260 ([`WAIT_SEQ_AT`], [`WAITERS_AT`]) are 4-byte
//!    aligned (the trailer starts on a 512-byte boundary) and every process touches them
//!    only through `AtomicU32` and the futex system call.
//!
//! Readers never build a slice over bytes past the published `write_offset`: those may be
//! under construction by the writer, in this process or another.

use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence, fence,
};

use memmap2::{Advice, MmapOptions, MmapRaw, UncheckedAdvice};

use crate::format::{
    EVENT_COUNT_AT, START_TIMESTAMP_AT, STREAM_HEADER_LEN, TRAILER_RECORD_LEN, TrailerRecord,
    WRITE_OFFSET_AT,
};

/// Header field offsets as `usize`, checked against the format.
const HEADER: usize = STREAM_HEADER_LEN as usize;

/// Returns the 8 bytes at `at` of a mapping as an atomic, or `None` unless they lie
/// inside the mapping and `at` is a multiple of 8.
#[inline]
fn word_at(raw: &MmapRaw, at: usize) -> Option<&AtomicU64> {
    if !at.is_multiple_of(8) || at.checked_add(8)? > raw.len() {
        return None;
    }
    // SAFETY: the 8 bytes lie inside the mapping (checked above). Mappings start on a page
    // boundary, so `ptr + at` with `at` a multiple of 8 is 8-byte aligned as `AtomicU64`
    // requires. The memory lives as long as `raw`, which the returned reference borrows.
    // The words handed out are the header fields and the trailer records, which every
    // process that follows the module contract accesses only atomically (rule 4), so
    // there is no data race.
    Some(unsafe { &*raw.as_ptr().add(at).cast::<AtomicU64>() })
}

/// Returns the 4 bytes at `at` of a mapping as an atomic, or `None` unless they lie
/// inside the mapping and `at` is a multiple of 4.
fn word32_at(raw: &MmapRaw, at: usize) -> Option<&AtomicU32> {
    if !at.is_multiple_of(4) || at.checked_add(4)? > raw.len() {
        return None;
    }
    // SAFETY: the 4 bytes lie inside the mapping (checked above), and `ptr + at` is 4-byte
    // aligned because the mapping starts on a page boundary and `at` is a multiple of 4.
    // The reference borrows `raw`, so the memory outlives it. Only the wait words are
    // handed out, which every process accesses atomically (rule 5): no data race.
    Some(unsafe { &*raw.as_ptr().add(at).cast::<AtomicU32>() })
}

/// Offset of the wake sequence (the futex word) from the trailer's start.
pub(crate) const WAIT_SEQ_AT: u64 = crate::format::WAIT_WORDS_AT;
/// Offset of the waiter count from the trailer's start.
pub(crate) const WAITERS_AT: u64 = crate::format::WAIT_WORDS_AT + 4;

/// The two wait words of a stream, borrowed from some mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitWords<'a> {
    seq: &'a AtomicU32,
    waiters: &'a AtomicU32,
}

impl<'a> WaitWords<'a> {
    /// The wait words of the trailer at mapping offset `trailer_at`, or `None` if the
    /// mapping does not hold them.
    #[inline]
    fn in_map(raw: &'a MmapRaw, trailer_at: u64) -> Option<Self> {
        let seq_at = usize::try_from(trailer_at.checked_add(WAIT_SEQ_AT)?).ok()?;
        let waiters_at = usize::try_from(trailer_at.checked_add(WAITERS_AT)?).ok()?;
        Some(Self {
            seq: word32_at(raw, seq_at)?,
            waiters: word32_at(raw, waiters_at)?,
        })
    }

    /// Changes the wake sequence and wakes every sleeper: the writer's rare path, once
    /// [`WriteMap::wake_followers`] found a follower registered.
    #[cold]
    #[inline(never)]
    pub fn wake_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(self.seq);
    }

    /// The follower's half, before its last look: counts itself as a waiter and returns
    /// the wake sequence to sleep on, and whether the barrier on every writer's CPU
    /// (which writers that publish with only a compiler fence rely on) was made; without
    /// it a wake from such a writer can be missed, so the caller must not sleep long.
    /// Every `register` must be followed by `unregister`.
    pub fn register(&self) -> (u32, bool) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let barrier = barrier_all_writers();
        (self.seq.load(Ordering::SeqCst), barrier)
    }

    /// Sleeps until the wake sequence differs from `seen`, a wake, a signal or `timeout`
    /// (`None`: no limit). May return early; callers look again.
    pub fn sleep(&self, seen: u32, timeout: Option<std::time::Duration>) {
        futex_wait(self.seq, seen, timeout);
    }

    /// Registers once more while an earlier registration still holds: the count never
    /// falls to zero between the two, so the barrier that made the first one visible to
    /// every writer covers this one; returns the wake sequence to sleep on. Every
    /// `register_again` must be followed by `unregister`.
    pub fn register_again(&self) -> u32 {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Undoes one `register`.
    pub fn unregister(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// The wake sequence, the futex word a follower sleeps on.
    pub fn seq(&self) -> &'a AtomicU32 {
        self.seq
    }
}

/// The most words one [`futex_wait_any`] call sleeps on (the kernel's `FUTEX_WAITV_MAX`).
pub(crate) const WAIT_ANY_MAX: usize = 128;

/// Sleeps until one of `words` differs from the value paired with it, one of them is
/// woken, a signal, or `timeout` (`None`: no limit); one thread, many futexes
/// (`futex_waitv`, Linux 5.16). May return early; callers look again. Only the first
/// [`WAIT_ANY_MAX`] words are waited on. Returns `false` if the kernel cannot (an older
/// kernel, elsewhere than Linux, or a refusal of the call): then it slept at most 0.5 ms.
pub(crate) fn futex_wait_any(
    words: &[(&AtomicU32, u32)],
    timeout: Option<std::time::Duration>,
) -> bool {
    #[cfg(target_os = "linux")]
    {
        /// `struct futex_waitv` of `linux/futex.h`.
        #[repr(C)]
        struct FutexWaitv {
            val: u64,
            uaddr: u64,
            flags: u32,
            reserved: u32,
        }
        /// `FUTEX2_SIZE_U32`: 4-byte words, shared (no `FUTEX2_PRIVATE`), so a wake from
        /// another process that maps the file finds the sleeper.
        const FUTEX2_SIZE_U32: u32 = 0x02;
        let waiters: Vec<FutexWaitv> = words
            .iter()
            .take(WAIT_ANY_MAX)
            .map(|(word, seen)| FutexWaitv {
                val: u64::from(*seen),
                uaddr: word.as_ptr() as u64,
                flags: FUTEX2_SIZE_U32,
                reserved: 0,
            })
            .collect();
        // The timeout of futex_waitv is absolute, on the monotonic clock.
        let deadline = timeout.map(|t| {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec into `now`, which lives until it
            // returns; CLOCK_MONOTONIC always exists on Linux.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
            // `c_long` is 32 bits wide on some targets.
            #[allow(clippy::useless_conversion)]
            let nanos = i64::from(now.tv_nsec).saturating_add(i64::from(t.subsec_nanos()));
            libc::timespec {
                tv_sec: now
                    .tv_sec
                    .saturating_add(
                        libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX / 2),
                    )
                    .saturating_add(nanos / 1_000_000_000),
                tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
            }
        });
        let deadline_ptr = deadline
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        let count = libc::c_uint::try_from(waiters.len()).unwrap_or(0);
        // SAFETY: `waiters` holds `count` (at most 128) initialized `struct futex_waitv`s,
        // each naming a live, aligned 4-byte atomic that the caller borrows until the call
        // returns; the kernel only reads them and compares each word with its value
        // atomically with queueing the sleeper, so no wake after the caller's last look is
        // lost. `deadline_ptr` is null or points at `deadline`, alive until the call
        // returns. EAGAIN, EINTR and ETIMEDOUT all mean "look again".
        let result = unsafe {
            libc::syscall(
                libc::SYS_futex_waitv,
                waiters.as_ptr(),
                count,
                0 as libc::c_uint,
                deadline_ptr,
                libc::CLOCK_MONOTONIC,
            )
        };
        let looked_again = matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR)
        );
        if result >= 0 || looked_again {
            return true;
        }
        // ENOSYS (before Linux 5.16), or a refusal that would repeat at once: sleep
        // briefly instead, so the caller polls rather than spins.
    }
    let pause = std::time::Duration::from_micros(500);
    std::thread::sleep(timeout.map_or(pause, |t| t.min(pause)));
    false
}

/// Wakes every thread asleep on `word` in [`futex_wait_any`] (or a follower's sleep).
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    futex_wake(word);
}

/// `membarrier(2)` commands, from `linux/membarrier.h`.
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

#[cfg(target_os = "linux")]
fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes two integers and no memory; an unknown command or a
    // kernel without it (ENOSYS, EINVAL, EPERM) is reported by the result, nothing else.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        ) == 0
    }
}

/// Whether this process's writers may publish with only a compiler fence before their
/// look at the waiter count: true once the process is registered for expedited global
/// memory barriers (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`, Linux 4.16), done at the
/// first call. A follower's [`barrier_all_writers`] then runs a full barrier on every
/// CPU that runs such a writer, which is what the fence would have done.
pub(crate) fn writer_light_barrier() -> bool {
    #[cfg(target_os = "linux")]
    {
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED))
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A full memory barrier on every CPU that runs a thread of a process registered by
/// [`writer_light_barrier`] (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`); `false` if the system
/// cannot (then no writer could register either, unless a sandbox forbids the call to
/// this process only).
fn barrier_all_writers() -> bool {
    #[cfg(target_os = "linux")]
    {
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only reads the address (as a key); `word` is a live, aligned
    // 4-byte atomic in a shared mapping. No FUTEX_PRIVATE_FLAG: followers in other
    // processes wait on the same file page. The result (how many woke) is not needed.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, seen: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos()),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 4-byte atomic in a shared mapping; the kernel
    // compares it with `seen` atomically with queueing the sleeper, so a wake after the
    // caller's last look is never lost. `ts_ptr` is null or points at `ts`, which lives
    // until the call returns. EAGAIN, EINTR and ETIMEDOUT all mean "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            ts_ptr,
        );
    }
}

/// Elsewhere than Linux there is no futex: waking is a no-op and sleeping a short sleep,
/// so followers poll.
#[cfg(not(target_os = "linux"))]
fn futex_wake(_word: &AtomicU32) {}

#[cfg(not(target_os = "linux"))]
fn futex_wait(_word: &AtomicU32, _seen: u32, timeout: Option<std::time::Duration>) {
    let pause = std::time::Duration::from_micros(500);
    std::thread::sleep(timeout.map_or(pause, |t| t.min(pause)));
}

/// A read-write mapping of just the page holding a stream's wait words, for a follower.
///
/// It holds the reader-presence lock shared for its life, as a reader does: a wait
/// ticket may outlive the reader it was taken from, and the registrations it counts in
/// `waiters` must not be carried into a recycled segment's next life, whose reset
/// (which takes that lock alone) clears the word of registrations no follower alive
/// holds.
#[derive(Debug)]
pub(crate) struct WaitMap {
    raw: MmapRaw,
    /// The trailer's offset inside `raw`.
    trailer_in_map: u64,
    /// The file reopened for the mapping, holding the presence lock shared.
    _present: File,
}

impl WaitMap {
    /// Maps the page of `file` (reopened for writing through `/proc/self/fd`, so the
    /// same inode) holding the wait words of the trailer at `trailer_at`, present as a
    /// reader. Fails where the file is not writable for this process, or while a writer
    /// holds the presence lock alone; callers then poll.
    pub fn new(file: &File, trailer_at: u64) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        if !set_presence(&rw, Presence::Reader)? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "a writer holds the reader-presence lock alone",
            ));
        }
        let page = page_size();
        let start = trailer_at / page * page;
        let trailer_in_map = trailer_at - start;
        let len = usize::try_from(trailer_in_map + WAITERS_AT + 4)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad wait-word offset"))?;
        let raw = MmapOptions::new().offset(start).len(len).map_raw(&rw)?;
        let map = Self {
            raw,
            trailer_in_map,
            _present: rw,
        };
        if map.words().is_none() {
            return Err(io::Error::other("wait words outside the mapping"));
        }
        Ok(map)
    }

    /// The wait words.
    pub fn words(&self) -> Option<WaitWords<'_>> {
        WaitWords::in_map(&self.raw, self.trailer_in_map)
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// A header field of a mapping that holds the header (checked when the mapping is made).
#[inline]
fn header_field(raw: &MmapRaw, at: usize) -> &AtomicU64 {
    static ZERO: AtomicU64 = AtomicU64::new(0);
    // Every mapping is at least `HEADER` bytes (checked in `map_whole`) and `at` is a field
    // constant, so the fallback is never taken.
    word_at(raw, at).unwrap_or(&ZERO)
}

/// Loads the 64-byte trailer record at `at` word by word with `Acquire`.
fn load_record(raw: &MmapRaw, at: u64) -> [u8; TRAILER_RECORD_LEN] {
    let mut out = [0u8; TRAILER_RECORD_LEN];
    let Ok(at) = usize::try_from(at) else {
        return out;
    };
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        if let Some(word) = word_at(raw, at + i * 8) {
            chunk.copy_from_slice(&u64::from_le(word.load(Ordering::Acquire)).to_le_bytes());
        }
    }
    out
}

/// A read-write mapping of a whole stream file, owned by its one writer.
#[derive(Debug)]
pub(crate) struct WriteMap {
    raw: Arc<MmapRaw>,
    /// The mapping's first byte (`raw`'s pointer, which never changes), kept here so
    /// that an append reaches the mapping without loading it through `raw`.
    base: NonNull<u8>,
    /// End of the event area (the trailer's offset): event writes never reach past it.
    events_end: u64,
    /// Whether wakes may skip the fence ([`writer_light_barrier`]).
    light_barrier: bool,
    /// The waiter count in the trailer, if it lies inside the mapping (checked once,
    /// when mapped, as [`word32_at`] checks).
    waiters: Option<NonNull<AtomicU32>>,
    /// The write offset in the header: read from it when mapped, then as this writer,
    /// the only one that changes it, last stored it. Every write checks against it, so
    /// it is kept here rather than loaded from the mapping's first page each time.
    published: u64,
}

// SAFETY: `base` and `waiters` point into the mapping that `raw` owns (an
// `Arc<MmapRaw>`, itself `Send` and `Sync`), and are dereferenced only as `raw` is, under
// the same rules: bytes written through `&mut self` only, header and wait words only
// atomically. So the map moves to, and is shared with, other threads as `raw` would be.
unsafe impl Send for WriteMap {}
// SAFETY: as for `Send`.
unsafe impl Sync for WriteMap {}

impl WriteMap {
    /// Maps all of `file`, which must be open for reading and writing, locked by the caller
    /// for exclusive writing, and at least [`HEADER`] bytes long.
    ///
    /// With `huge_pages`, asks for transparent huge pages (`madvise(MADV_HUGEPAGE)`), so
    /// the page cache behind the mapping is filled in large folios (up to 2 MiB) where the
    /// kernel and file system support them. Advice only: a refusal is ignored.
    ///
    /// Event bytes are written only below `events_end`, the trailer's offset.
    pub fn new(file: &File, len: u64, huge_pages: bool, events_end: u64) -> io::Result<Self> {
        Self::reusing(file, len, huge_pages, events_end, None)
    }

    /// As [`new`](Self::new), but through `warm`, a mapping of the same file kept from
    /// an earlier writer ([`WarmMapping`]), if it maps this very file (the same device
    /// and inode) and `len` bytes of it: its page-table entries still in place, pages it
    /// maps cost no fault. Otherwise (or with `None`) the file is mapped anew.
    pub fn reusing(
        file: &File,
        len: u64,
        huge_pages: bool,
        events_end: u64,
        warm: Option<WarmMapping>,
    ) -> io::Result<Self> {
        let same = |warm: &WarmMapping| {
            warm.raw.len() as u64 == len && file_identity(file).is_ok_and(|id| id == warm.file)
        };
        let raw = match warm.filter(same) {
            Some(warm) => warm.raw,
            None => Arc::new(map_whole(len, |options| options.map_raw(file))?),
        };
        if huge_pages {
            // Advice only; without THP (or large folios in the file system) nothing changes.
            let _ = raw.advise(Advice::HugePage);
        }
        let events_end = events_end.min(len);
        let published = u64::from_le(header_field(&raw, WRITE_OFFSET_AT).load(Ordering::Relaxed));
        let waiters = events_end
            .checked_add(WAITERS_AT)
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| word32_at(&raw, at))
            .map(NonNull::from);
        let base = NonNull::new(raw.as_mut_ptr())
            .ok_or_else(|| io::Error::other("mapping at address zero"))?;
        Ok(Self {
            raw,
            base,
            published,
            events_end,
            light_barrier: writer_light_barrier(),
            waiters,
        })
    }

    /// End of the event area.
    pub fn events_end(&self) -> u64 {
        self.events_end
    }

    /// Length of the mapping (the stream's capacity).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// The header's word at `AT`, one of its field offsets, reached through [`Self::base`]
    /// with no check at run time.
    #[inline(always)]
    fn header_word<const AT: usize>(&self) -> &AtomicU64 {
        const { assert!(AT.is_multiple_of(8) && AT + 8 <= HEADER) };
        // SAFETY: every mapping is at least `HEADER` bytes (`map_whole`), so the 8 bytes
        // at `AT` (asserted above) lie inside it; the mapping starts on a page boundary,
        // so they are 8-byte aligned. `base` is the mapping's start, which lives as long
        // as `raw`, which `&self` borrows. The header fields are accessed only atomically
        // (rule 4 of the module contract), as in `word_at`.
        unsafe { &*self.base.as_ptr().add(AT).cast::<AtomicU64>() }
    }

    /// Stores the trailer record at file offset `at` (a slot's start) word by word with
    /// `Release`. Returns `false`, storing nothing, unless the record lies inside the
    /// trailer area (at or past the end of the event area).
    pub fn store_record(&self, at: u64, record: &TrailerRecord) -> bool {
        use zerocopy::IntoBytes;
        let record = record.as_bytes();
        let Ok(start) = usize::try_from(at) else {
            return false;
        };
        if at < self.events_end || word_at(&self.raw, start + TRAILER_RECORD_LEN - 8).is_none() {
            return false;
        }
        for (i, chunk) in record.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if let Some(field) = word_at(&self.raw, start + i * 8) {
                field.store(u64::from_le_bytes(word).to_le(), Ordering::Release);
            }
        }
        true
    }

    /// The published write offset, as this writer last stored it (only this writer
    /// changes it).
    #[inline]
    pub fn write_offset(&self) -> u64 {
        self.published
    }

    /// The start timestamp stored in the header.
    pub fn start_timestamp(&self) -> i64 {
        u64::from_le(
            self.header_word::<START_TIMESTAMP_AT>()
                .load(Ordering::Relaxed),
        ) as i64
    }

    /// Publishes events up to `write_offset`: stores it with `Release`, then the count.
    ///
    /// Moving the offset forward is only sound once the bytes up to it are written,
    /// which the writer guarantees; this method clamps it to the mapping.
    #[inline]
    pub fn publish(&mut self, write_offset: u64, event_count: u64) {
        let write_offset = write_offset.clamp(STREAM_HEADER_LEN, self.events_end);
        self.published = write_offset;
        self.header_word::<WRITE_OFFSET_AT>()
            .store(write_offset.to_le(), Ordering::Release);
        self.header_word::<EVENT_COUNT_AT>()
            .store(event_count.to_le(), Ordering::Release);
    }

    /// The writer's half of the wake protocol, after it published: wakes followers
    /// sleeping on this stream's wait words if any is registered. With no waiter there is
    /// no system call: a fence and a load, or, in a process registered for
    /// [`barrier_all_writers`] ([`writer_light_barrier`]), only a load, the follower's
    /// barrier on this CPU standing in for the fence.
    #[inline]
    pub fn wake_followers(&self) {
        // Pairs with the fence and the barrier in `WaitWords::register`: either this load
        // sees the follower's registration, or the follower's look at the write offset
        // sees the publish.
        if self.light_barrier {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
        let waiting = self.waiters.is_some_and(|waiters| {
            // SAFETY: `waiters` was checked, when mapped, to be an aligned word inside
            // the mapping (`word32_at`), which lives as long as `raw`, borrowed by
            // `&self`; the wait words are accessed only atomically (rule 5).
            unsafe { waiters.as_ref() }.load(Ordering::Relaxed) != 0
        });
        if waiting && let Some(words) = WaitWords::in_map(&self.raw, self.events_end) {
            words.wake_all();
        }
    }

    /// Stores `write_offset` alone, so a crash point can fall between it and the count.
    #[cfg(feature = "failpoints")]
    pub fn publish_offset(&mut self, write_offset: u64) {
        let write_offset = write_offset.clamp(STREAM_HEADER_LEN, self.events_end);
        self.published = write_offset;
        self.header_word::<WRITE_OFFSET_AT>()
            .store(write_offset.to_le(), Ordering::Release);
    }

    /// The published events, file offsets `24..write_offset`.
    ///
    /// Published bytes never change while `&self` is borrowed: writes go past the write
    /// offset, and moving it back ([`Self::publish`] with a lower offset followed by
    /// zeroing through [`Self::unpublished_mut`]) needs `&mut self` for the zeroing.
    pub fn published(&self) -> &[u8] {
        let end = (self.write_offset() as usize).clamp(HEADER, self.raw.len());
        // SAFETY: `HEADER..end` lies inside the mapping. Under the module contract no one
        // writes these bytes: this writer writes only past the write offset, and other
        // processes do not write at all. The slice borrows `self`, which keeps the mapping.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(HEADER), end - HEADER) }
    }

    /// Copies `parts` back to back into the unpublished space at `offset`.
    ///
    /// Returns `false`, writing nothing, unless the whole range lies between the published
    /// write offset and the end of the mapping.
    #[cfg(any(test, feature = "failpoints"))]
    #[inline]
    pub fn write_unpublished(&mut self, offset: u64, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let Some(start) = self.unpublished_range(offset, total) else {
            return false;
        };
        let mut at = start;
        for part in parts {
            // SAFETY: `unpublished_range` checked `start..start + total` is inside the
            // mapping and at or past the write offset, where no reader looks and only this
            // writer (borrowed mutably) writes. `part` is a separate Rust allocation or a
            // slice of another mapping, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.base.as_ptr().add(at),
                    part.len(),
                );
            }
            at += part.len();
        }
        true
    }

    /// Stores `word` little-endian as the 16 unpublished bytes at `offset` (an event
    /// header, [`EventHeader::to_word`](crate::format::EventHeader::to_word)).
    ///
    /// Returns `false`, writing nothing, unless the range lies between the published
    /// write offset and the end of the mapping.
    #[inline]
    pub fn write_unpublished_word(&mut self, offset: u64, word: u128) -> bool {
        let Some(start) = self.unpublished_range(offset, size_of::<u128>()) else {
            return false;
        };
        // SAFETY: `unpublished_range` checked `start..start + 16` is inside the mapping
        // and at or past the write offset, where no reader looks and only this writer
        // (borrowed mutably) writes. `write_unaligned` asks no alignment.
        unsafe {
            std::ptr::write_unaligned(self.base.as_ptr().add(start).cast::<u128>(), word.to_le());
        }
        true
    }

    /// Writes an event into the unpublished space at `offset`: its 16-byte header,
    /// stored as [`write_unpublished_word`](Self::write_unpublished_word) does, then
    /// `payload` after it; one check of the range for both.
    ///
    /// Returns `false`, writing nothing, unless the whole event lies between the
    /// published write offset and the end of the mapping.
    #[inline]
    pub fn write_unpublished_event(&mut self, offset: u64, header: u128, payload: &[u8]) -> bool {
        let Some(start) = payload
            .len()
            .checked_add(size_of::<u128>())
            .and_then(|len| self.unpublished_range(offset, len))
        else {
            return false;
        };
        // SAFETY: `unpublished_range` checked `start..start + 16 + payload.len()` is
        // inside the mapping and at or past the write offset, where no reader looks and
        // only this writer (borrowed mutably) writes. `payload` is a separate Rust
        // allocation or a slice of another mapping, so the ranges do not overlap;
        // `write_unaligned` asks no alignment.
        unsafe {
            let at = self.base.as_ptr().add(start);
            std::ptr::write_unaligned(at.cast::<u128>(), header.to_le());
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                at.add(size_of::<u128>()),
                payload.len(),
            );
        }
        if payload.len() <= PREFETCH_MAX_PAYLOAD {
            self.prefetch_ahead(start);
        }
        true
    }

    /// Asks the CPU to bring the cache line [`PREFETCH_AHEAD`] bytes past `at` into its
    /// cache (`PREFETCHW`, for writing, where the build targets CPUs that have it; else
    /// `PREFETCHT0`): the hardware's own prefetching stops at each 4 KiB page, and the
    /// first stores into a page (just populated by another CPU, or written back long
    /// ago) would otherwise each wait for their line. A hint only: no byte changes, and
    /// an address past the mapping or on a page not mapped yet is dropped.
    #[inline(always)]
    fn prefetch_ahead(&self, at: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let ahead = self
                .base
                .as_ptr()
                .wrapping_add(at)
                .wrapping_add(PREFETCH_AHEAD);
            // SAFETY: `_mm_prefetch` only hints the cache: it never faults, whatever the
            // address, and changes no memory; SSE is part of every x86-64 CPU.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(
                    ahead.cast_const().cast::<i8>(),
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// A mutable view of `len` unpublished bytes at `offset`, for serializing in place.
    pub fn unpublished_mut(&mut self, offset: u64, len: usize) -> Option<&mut [u8]> {
        let start = self.unpublished_range(offset, len)?;
        // SAFETY: the range is inside the mapping and past the write offset, so no reader
        // looks at it, and the `&mut self` borrow makes this the only view of it here.
        Some(unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(start), len) })
    }

    #[inline]
    fn unpublished_range(&self, offset: u64, len: usize) -> Option<usize> {
        let end = offset.checked_add(len as u64)?;
        if offset < self.write_offset() || end > self.events_end {
            return None;
        }
        usize::try_from(offset).ok()
    }

    /// Writes the mapped bytes `offset..offset + len` to stable storage (`msync(MS_SYNC)`).
    pub fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        sync_pages(&self.raw, offset, len)
    }

    /// This mapping, kept for a later writer of the same `file` (the one it maps) to
    /// write through ([`reusing`](Self::reusing)).
    pub fn warm(&self, file: &File) -> io::Result<WarmMapping> {
        Ok(WarmMapping {
            raw: Arc::clone(&self.raw),
            file: file_identity(file)?,
        })
    }

    /// A handle that prefaults pages of this mapping from any thread.
    pub fn prefaulter(&self) -> Prefaulter {
        Prefaulter {
            raw: Arc::clone(&self.raw),
        }
    }

    /// Unmaps the whole pages of `offset..offset + len`, keeping their contents; see
    /// [`release_pages`].
    pub fn release(&self, offset: u64, len: u64) -> io::Result<()> {
        release_pages(&self.raw, offset, len)
    }
}

/// A writer's mapping kept after the writer, with the file it maps (device and inode),
/// so that a later writer of that file writes through the same page-table entries
/// ([`WriteMap::reusing`]): a log's retired segment, recycled. Holding it keeps the
/// mapping; dropping the last holder unmaps it.
#[derive(Debug)]
pub(crate) struct WarmMapping {
    raw: Arc<MmapRaw>,
    file: (u64, u64),
}

/// The device and inode of `file`: which file a [`WarmMapping`] maps.
fn file_identity(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// Prefaults pages of a writer's mapping; cheap to clone and `Send`.
#[derive(Debug, Clone)]
pub(crate) struct Prefaulter {
    raw: Arc<MmapRaw>,
}

impl Prefaulter {
    /// The mapping's length in bytes.
    pub fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Whether this is the last handle on the mapping (its writer and every other handle
    /// dropped): dropping it then unmaps the pages. A look that another thread's drop may
    /// make out of date at once.
    pub fn is_last(&self) -> bool {
        Arc::strong_count(&self.raw) == 1
    }

    /// Maps the pages of `offset..offset + len` writable ahead of use
    /// (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14 and later). Contents are unchanged.
    pub fn populate(&self, offset: u64, len: u64) -> io::Result<()> {
        let (offset, len) = clamp_range(offset, len, self.raw.len());
        if len == 0 {
            return Ok(());
        }
        self.raw.advise_range(Advice::PopulateWrite, offset, len)
    }

    /// Writes `offset..offset + len` back to stable storage (`msync(MS_SYNC)`), as
    /// [`WriteMap::sync_range`] does, from any thread.
    pub fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        sync_pages(&self.raw, offset, len)
    }

    /// Unmaps the whole pages of `offset..offset + len`, keeping their contents; see
    /// [`release_pages`].
    pub fn release(&self, offset: u64, len: u64) -> io::Result<()> {
        release_pages(&self.raw, offset, len)
    }
}

/// Writes the mapped bytes `offset..offset + len` (clamped to the mapping) to stable
/// storage (`msync(MS_SYNC)`).
fn sync_pages(raw: &MmapRaw, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = clamp_range(offset, len, raw.len());
    if len == 0 {
        return Ok(());
    }
    raw.flush_range(offset, len)
}

/// Drops this mapping's page-table entries for the whole pages inside
/// `offset..offset + len` (`madvise(MADV_DONTNEED)`), keeping their contents: the
/// mapping is shared and file-backed, so the pages stay in the page cache (dirty ones
/// still dirty) and the next touch maps the same bytes again.
///
/// A writer releases the pages behind its write offset, which it never writes again.
/// Their write-back then has no mapping to write-protect, so it sends no TLB
/// shootdown to the CPU that is appending.
fn release_pages(raw: &MmapRaw, offset: u64, len: u64) -> io::Result<()> {
    let (start, len) = clamp_range(offset, len, raw.len());
    let page = usize::try_from(page_size()).unwrap_or(4096);
    // Whole pages only (the mapping starts page-aligned): a partial page at either
    // end may be the one being written.
    let first = start.div_ceil(page) * page;
    let end = (start + len) / page * page;
    if end <= first {
        return Ok(());
    }
    // SAFETY: `MADV_DONTNEED` on a `MAP_SHARED` file mapping only removes page-table
    // entries: dirty bits move to the page cache and a later access maps the same
    // file page again, so every byte read through this mapping (or any slice into it
    // that is alive) stays as it was. `first..end` lies within the mapping
    // (`clamp_range`), and the kernel validates the range as well.
    unsafe { raw.unchecked_advise_range(UncheckedAdvice::DontNeed, first, end - first) }
}

/// How far past an event a writer asks for the next lines ([`WriteMap::prefetch_ahead`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PREFETCH_AHEAD: usize = 2048;

/// The largest payload after which a writer prefetches ([`WriteMap::prefetch_ahead`]).
/// Measured: 64 and 200-byte appends took 0.83 and 0.94 times as long with it, 1 KiB
/// appends 1.3 times (a large event's copy keeps the hardware's own prefetching busy
/// within the page).
const PREFETCH_MAX_PAYLOAD: usize = 240;

/// A read-only mapping of a whole stream file.
#[derive(Debug)]
pub(crate) struct ReadMap {
    raw: MmapRaw,
}

impl ReadMap {
    /// Maps all `len` bytes of `file` read-only; `len` must be at least [`HEADER`].
    pub fn new(file: &File, len: u64) -> io::Result<Self> {
        let raw = map_whole(len, |options| options.map_raw_read_only(file))?;
        Ok(Self { raw })
    }

    /// Length of the mapping (the stream's capacity).
    pub fn len(&self) -> u64 {
        self.raw.len() as u64
    }

    fn field(&self, at: usize) -> &AtomicU64 {
        // Atomic loads from read-only memory are sound for lock-free 8-byte atomics.
        header_field(&self.raw, at)
    }

    /// The trailer record at file offset `at` (a slot's start), loaded word by word.
    pub fn load_record(&self, at: u64) -> [u8; TRAILER_RECORD_LEN] {
        load_record(&self.raw, at)
    }

    /// The published write offset, loaded with `Acquire`: every event before it is
    /// completely written and visible.
    pub fn write_offset(&self) -> u64 {
        u64::from_le(self.field(WRITE_OFFSET_AT).load(Ordering::Acquire))
    }

    /// The event count stored in the header (may trail `write_offset` by one event).
    pub fn event_count(&self) -> u64 {
        u64::from_le(self.field(EVENT_COUNT_AT).load(Ordering::Acquire))
    }

    /// The start timestamp stored in the header.
    pub fn start_timestamp(&self) -> i64 {
        u64::from_le(self.field(START_TIMESTAMP_AT).load(Ordering::Relaxed)) as i64
    }

    /// The bytes at file offsets `24..end`, or `None` unless `24 <= end` and `end` is at
    /// most the write offset published right now.
    pub fn published(&self, end: u64) -> Option<&[u8]> {
        if end < STREAM_HEADER_LEN || end > self.write_offset() || end > self.len() {
            return None;
        }
        let len = usize::try_from(end - STREAM_HEADER_LEN).ok()?;
        // SAFETY: `24..end` lies inside the mapping and at or before the published write
        // offset (loaded with `Acquire` just now), so the writer finished these bytes and,
        // under the module contract, never changes them again. The slice borrows `self`.
        Some(unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(HEADER), len) })
    }

    /// Tells the kernel the bytes `offset..offset + len` will be read in order soon.
    pub fn advise_sequential(&self, offset: u64, len: u64) {
        let (offset, len) = clamp_range(offset, len, self.raw.len());
        if len > 0 {
            // Advice only; a kernel that declines changes nothing observable.
            let _ = self.raw.advise_range(Advice::Sequential, offset, len);
            let _ = self.raw.advise_range(Advice::WillNeed, offset, len);
        }
    }
}

/// Maps `len` bytes with `map`, checking first that `len` holds the header and fits in
/// `usize`, and after that the mapping has exactly that length.
fn map_whole(
    len: u64,
    map: impl FnOnce(&mut MmapOptions) -> io::Result<MmapRaw>,
) -> io::Result<MmapRaw> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len >= HEADER)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad mapping length"))?;
    let raw = map(MmapOptions::new().len(len))?;
    if raw.len() != len {
        return Err(io::Error::other("mapping has the wrong length"));
    }
    Ok(raw)
}

/// Clamps `offset..offset + len` to a mapping of `map_len` bytes.
fn clamp_range(offset: u64, len: u64, map_len: usize) -> (usize, usize) {
    let map_len = map_len as u64;
    let start = offset.min(map_len);
    let end = offset.saturating_add(len).min(map_len);
    (start as usize, (end - start) as usize)
}

/// Reserves the blocks of `file`'s first `len` bytes (`posix_fallocate`), so writes through
/// the mapping never hit a full disk.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length exceeds off_t"))?;
    // SAFETY: `posix_fallocate` takes a file descriptor and two integers; `file` keeps the
    // descriptor open for the call. It touches no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Writes the dirty pages of `file` in `offset..offset + len` to the device and waits
/// for that write-back (`sync_file_range` with `SYNC_FILE_RANGE_WAIT_BEFORE`, `WRITE`
/// and `WAIT_AFTER`), so that a later `msync(MS_SYNC)` of the range finds them clean.
///
/// Nothing it writes is durable: it writes no metadata and flushes no device cache;
/// only the later sync makes the bytes survive power loss. A write-back error it
/// returns may not be returned again by that sync (the open file's error cursor moves
/// on), so the caller must treat it as the sync's failure. Elsewhere than on Linux it
/// does nothing, and the later sync does all the work.
pub(crate) fn write_back_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let too_far = || io::Error::new(io::ErrorKind::InvalidInput, "range exceeds off_t");
        let offset = libc::off64_t::try_from(offset).map_err(|_| too_far())?;
        let len = libc::off64_t::try_from(len).map_err(|_| too_far())?;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: `sync_file_range` takes a file descriptor, two integers and flags;
        // `file` keeps the descriptor open for the call. It touches no memory of ours.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        Ok(())
    }
}

/// The next range of `file` at or after `from` that may hold non-zero bytes, found with
/// `lseek(SEEK_DATA)` and `lseek(SEEK_HOLE)`; `None` if only zeros follow `from`.
///
/// Holes, and on Linux's common file systems preallocated blocks that were never written
/// (and are not in the page cache), are skipped. A file system without `SEEK_DATA`
/// support reports everything up to the end of the file as data, or an error.
pub(crate) fn data_range(file: &File, from: u64) -> io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let from = libc::off_t::try_from(from)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset exceeds off_t"))?;
    // SAFETY: `lseek` takes a file descriptor and two integers; `file` keeps the descriptor
    // open for the call. It touches no memory of ours; the file position it moves is not
    // used by evstream, whose file I/O is positional or through the mapping.
    let start = unsafe { libc::lseek(file.as_raw_fd(), from, libc::SEEK_DATA) };
    if start < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(err),
        };
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(file.as_raw_fd(), start, libc::SEEK_HOLE) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some((start as u64, end as u64)))
}

/// The start of the first hole of `file` at or after `from` (`lseek(SEEK_HOLE)`), or
/// `None` if there is none before the end of the file. A file system that cannot tell
/// reports none.
///
/// On some file systems (ext4, XFS) preallocated blocks that were never written count as
/// holes too; below a stream's write offset every byte was written, so a hole there is
/// damage either way.
pub(crate) fn first_hole(file: &File, from: u64, len: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let from_off = libc::off_t::try_from(from).ok()?;
    // SAFETY: `lseek` takes a file descriptor and two integers; `file` keeps the descriptor
    // open for the call. It touches no memory of ours; the file position it moves is not
    // used by evstream, whose file I/O is positional or through the mapping.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), from_off, libc::SEEK_HOLE) };
    u64::try_from(hole).ok().filter(|&h| h < len)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
    };
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: both pointers are NUL-terminated strings that live across the call;
    // `renameat2` reads them and nothing else of ours.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // File systems without RENAME_NOREPLACE: a hard link also refuses to replace.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(err),
    }
}

/// Whether a process with this id exists (`kill(pid, 0)`), as far as this process can
/// tell: `true` also when it exists but belongs to another user, and for ids that cannot
/// name a single process (0 and ids past `pid_t`), which callers must leave alone.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: `kill` with signal 0 sends nothing; it only checks that `pid` names a
    // process this one may signal. It touches no memory of ours.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Where the reader-presence lock lies: one byte far past the end of any stream file.
/// Byte-range locks are advisory and may lie past the end of a file; this range never
/// covers data, so nothing but evstream's own presence protocol looks at it.
const PRESENCE_AT: libc::off_t = 1 << 62;

/// The reader-presence lock a file description can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A reader: shared with every other reader.
    Reader,
    /// A writer about to rewrite bytes readers may have seen: alone.
    Rewriter,
    /// None (releases what the description held).
    Unlock,
}

/// Sets the reader-presence lock of `file`'s open file description without waiting: an
/// open-file-description byte-range lock (`fcntl(F_OFD_SETLK)`), independent of the
/// writer's `flock` and released when the description is closed (also when the process
/// dies). Returns `Ok(false)` if a conflicting lock is held through another description,
/// in this process or another.
///
/// # Platform-specific behavior
/// Linux only (3.15 and later). Elsewhere this does nothing and returns `Ok(true)`: the
/// guarantee that recovery never rewrites bytes under an open reader does not hold there.
#[cfg(target_os = "linux")]
pub(crate) fn set_presence(file: &File, presence: Presence) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let kind = match presence {
        Presence::Reader => libc::F_RDLCK,
        Presence::Rewriter => libc::F_WRLCK,
        Presence::Unlock => libc::F_UNLCK,
    };
    // SAFETY: `flock` is a plain C struct of integers, for which all zeros is valid
    // (and `l_pid` must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = PRESENCE_AT;
    lock.l_len = 1;
    // SAFETY: `fcntl(F_OFD_SETLK)` reads the `flock` struct we pass, which lives across
    // the call; `file` keeps the descriptor open. It touches no other memory of ours.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// See the Linux version: elsewhere there is no OFD lock, and nothing is locked.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_presence(_file: &File, _presence: Presence) -> io::Result<bool> {
    Ok(true)
}

/// `membarrier(2)` commands for this process's own threads, from `linux/membarrier.h`.
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
#[cfg(target_os = "linux")]
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether locks may be biased: true once this process is registered for expedited
/// private memory barriers (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`, Linux 4.14),
/// done at the first call.
fn bias_allowed() -> bool {
    #[cfg(target_os = "linux")]
    {
        static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *REGISTERED.get_or_init(|| membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A full memory barrier on every CPU that runs a thread of this process
/// (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`). Only called once [`bias_allowed`] registered
/// the process, after which the kernel does not refuse it; a process forked since has
/// to register again, which this does. It keeps trying rather than return without the
/// barrier: going on without it could let two threads hold a lock at once.
#[cold]
fn barrier_all_threads() {
    #[cfg(target_os = "linux")]
    loop {
        if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
            return;
        }
        if !membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// How many threads a [`BiasedLock`] can be biased to over its life (a thread that
/// ended leaves its slot to the next thread given its identity).
const BIAS_SLOTS: usize = 32;

/// How many times in a row one thread takes a [`BiasedLock`] plainly before the lock is
/// biased to it.
const BIAS_AFTER: u32 = 256;

/// A lock that costs the thread that takes it again and again no atomic
/// read-modify-write: an asymmetric (biased) lock.
///
/// It is a plain lock (a compare-and-swap to take, a store to release) that is
/// **biased** to a thread once that thread took it [`BIAS_AFTER`] times in a row. The
/// thread it is biased to takes it by marking its own slot "inside" and checking that
/// the bias still holds, with no fence between the two; it releases it by clearing the
/// mark. Another thread takes the plain lock, then **revokes** the bias: it clears the
/// bias, runs a memory barrier on every CPU of this process (`membarrier(2)`), and waits
/// until the slot is no longer marked. The barrier is what the biased thread's missing
/// fence would have done: after it, either the revoking thread sees the mark, or the
/// biased thread sees the bias gone and takes the plain lock like anyone else.
///
/// Each thread is known by an even number unique among the living threads (the address
/// of an aligned thread-local). A slot belongs to that number for the lock's life, so
/// that a thread still on its way into the lock after its bias was revoked only ever
/// marks its own slot; the slot holds the number, with [`INSIDE`] added while the thread
/// holds the lock through it, so that one load tells a thread both that the slot is its
/// own and that it is not inside already. Without `membarrier` the lock is never biased.
///
/// A thread that holds the lock and tries it again gets `None`, however it holds it:
/// the bias is given at the release of the plain lock, never under it, and a thread
/// whose slot is marked is inside already. (A caller that waits for the lock would wait
/// for good then, as with a `std` `Mutex`; never two guards at once.)
///
/// The lock does not poison: its users leave their values whole when they panic.
pub(crate) struct BiasedLock<T> {
    /// The plain lock.
    locked: AtomicBool,
    /// 0, or 1 + the slot of the thread the lock is biased to.
    biased: AtomicUsize,
    /// Whether the lock may be biased (the process is registered for the barrier).
    may_bias: bool,
    slots: [BiasSlot; BIAS_SLOTS],
    /// Who took the plain lock last, and how many times in a row. Under the plain lock.
    run: UnsafeCell<(usize, u32)>,
    value: UnsafeCell<T>,
}

/// Added to a thread's number in its [`BiasSlot`] while it holds the lock through it.
const INSIDE: usize = 1;

/// A thread a [`BiasedLock`] may be biased to: a cache line of its own, which only its
/// thread writes once it has it.
#[derive(Default)]
#[repr(align(64))]
struct BiasSlot {
    /// 0 for a free slot; else the thread's number (set once, under the plain lock),
    /// plus [`INSIDE`] while the thread holds the lock through its bias (only that
    /// thread adds and removes it).
    word: AtomicUsize,
}

impl BiasSlot {
    /// Whether the slot is `me`'s, inside or not.
    fn owned_by(&self, me: usize) -> bool {
        self.word.load(Ordering::Relaxed) & !INSIDE == me
    }
}

// SAFETY: the lock hands out `&mut T` to one thread at a time (the plain lock, or the
// bias, which a thread revokes before it goes on with the plain lock), so it is `Sync`
// when `T` may be sent between threads, as `std::sync::Mutex` is. `run` is only
// touched under the plain lock.
unsafe impl<T: Send> Sync for BiasedLock<T> {}
// SAFETY: the lock owns its value; sending it sends the value.
unsafe impl<T: Send> Send for BiasedLock<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for BiasedLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BiasedLock")
            .field("locked", &self.locked)
            .field("biased", &self.biased)
            .finish_non_exhaustive()
    }
}

/// Holds a [`BiasedLock`]; releases it when dropped.
pub(crate) struct BiasedGuard<'a, T> {
    lock: &'a BiasedLock<T>,
    /// The slot this thread holds the lock through, or `None` for the plain lock.
    slot: Option<&'a BiasSlot>,
    /// The taker's number.
    me: usize,
    /// Holding the plain lock: bias the lock to the taker at its release.
    bias: bool,
    /// Released by the thread that took it, as `std::sync::MutexGuard`.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl<T> BiasedLock<T> {
    /// A lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            biased: AtomicUsize::new(0),
            may_bias: bias_allowed(),
            slots: std::array::from_fn(|_| BiasSlot::default()),
            run: UnsafeCell::new((0, 0)),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock for thread `me` (an even number no other living thread has) if it
    /// is free, or biased to another thread, which may make this wait until that thread
    /// released it; `None` if another thread holds the plain lock, or this one holds the
    /// lock already.
    #[inline]
    pub(crate) fn try_lock(&self, me: usize) -> Option<BiasedGuard<'_, T>> {
        self.try_lock_biased(me).or_else(|| self.try_lock_plain(me))
    }

    /// Takes the lock for thread `me` if it is biased to `me`; `None` otherwise.
    #[inline]
    pub(crate) fn try_lock_biased(&self, me: usize) -> Option<BiasedGuard<'_, T>> {
        debug_assert_eq!(me & INSIDE, 0, "a thread's number is even");
        let biased = self.biased.load(Ordering::Relaxed);
        // `me` exactly: this thread's slot, and this thread not inside already.
        if let Some(slot) = biased.checked_sub(1).and_then(|at| self.slots.get(at))
            && slot.word.load(Ordering::Relaxed) == me
        {
            slot.word.store(me | INSIDE, Ordering::Relaxed);
            // The light side of the barrier: `barrier_all_threads` in a revoking thread
            // orders this store before the load below on this CPU.
            compiler_fence(Ordering::SeqCst);
            if self.biased.load(Ordering::Acquire) == biased {
                return Some(BiasedGuard {
                    lock: self,
                    slot: Some(slot),
                    me,
                    bias: false,
                    _not_send: std::marker::PhantomData,
                });
            }
            slot.word.store(me, Ordering::Release);
        }
        None
    }

    /// As [`try_lock`](Self::try_lock), but `None` rather than revoking a bias to
    /// another thread: for a thread that should not cut that thread's run of
    /// acquisitions short.
    pub(crate) fn try_lock_unbiased(&self, me: usize) -> Option<BiasedGuard<'_, T>> {
        if self.biased_to_another(me) {
            return None;
        }
        self.try_lock(me)
    }

    /// Whether the lock is biased to a thread other than `me`.
    fn biased_to_another(&self, me: usize) -> bool {
        let biased = self.biased.load(Ordering::Relaxed);
        biased
            .checked_sub(1)
            .and_then(|at| self.slots.get(at))
            .is_some_and(|slot| !slot.owned_by(me))
    }

    /// Takes the plain lock, revoking another thread's bias.
    pub(crate) fn try_lock_plain(&self, me: usize) -> Option<BiasedGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let biased = self.biased.load(Ordering::Relaxed);
        if let Some(slot) = biased.checked_sub(1).and_then(|at| self.slots.get(at)) {
            if !slot.owned_by(me) {
                self.revoke(slot);
            } else if slot.word.load(Ordering::Relaxed) != me {
                // This thread holds the lock through its bias already.
                self.locked.store(false, Ordering::Release);
                return None;
            }
        }
        // SAFETY: `run` is only touched under the plain lock, taken above.
        let run = unsafe { &mut *self.run.get() };
        let mut bias = false;
        if run.0 == me {
            run.1 = run.1.saturating_add(1);
            bias = run.1 == BIAS_AFTER && self.may_bias;
        } else {
            *run = (me, 1);
        }
        Some(BiasedGuard {
            lock: self,
            slot: None,
            me,
            bias,
            _not_send: std::marker::PhantomData,
        })
    }

    /// Whether a thread holds the lock now, plainly or through its bias (a look that may
    /// be out of date as soon as it is taken).
    pub(crate) fn is_held(&self) -> bool {
        self.locked.load(Ordering::Acquire)
            || self
                .biased
                .load(Ordering::Acquire)
                .checked_sub(1)
                .and_then(|at| self.slots.get(at))
                .is_some_and(|slot| slot.word.load(Ordering::Acquire) & INSIDE != 0)
    }

    /// Takes the bias from the thread of `slot`, and waits until it released the lock
    /// if it holds it. Under the plain lock.
    #[cold]
    fn revoke(&self, slot: &BiasSlot) {
        self.biased.store(0, Ordering::Relaxed);
        barrier_all_threads();
        let mut tries: u32 = 0;
        while slot.word.load(Ordering::Acquire) & INSIDE != 0 {
            tries = tries.saturating_add(1);
            if tries < 64 {
                std::hint::spin_loop();
            } else if tries < 1024 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    /// Biases the lock to `me`, if a slot is its or free. Under the plain lock, as it is
    /// released.
    #[cold]
    fn bias_to(&self, me: usize) {
        let at = self
            .slots
            .iter()
            .position(|slot| slot.owned_by(me))
            .or_else(|| {
                let free = self
                    .slots
                    .iter()
                    .position(|slot| slot.word.load(Ordering::Relaxed) == 0)?;
                self.slots.get(free)?.word.store(me, Ordering::Relaxed);
                Some(free)
            });
        if let Some(at) = at {
            self.biased.store(at + 1, Ordering::Release);
        }
    }
}

impl<T> BiasedGuard<'_, T> {
    /// The number of the thread that took the lock.
    #[inline]
    pub(crate) fn taker(&self) -> usize {
        self.me
    }

    /// Whether the lock was taken through its bias to this thread (not plainly).
    #[inline]
    pub(crate) fn through_bias(&self) -> bool {
        self.slot.is_some()
    }
}

impl<T> std::ops::Deref for BiasedGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock (the plain lock, or the bias with its slot
        // marked inside), so no other thread touches the value until it is dropped.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for BiasedGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the
        // guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for BiasedGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        match self.slot {
            Some(slot) => slot.word.store(self.me, Ordering::Release),
            None => {
                if self.bias {
                    // Still under the plain lock.
                    self.lock.bias_to(self.me);
                }
                self.lock.locked.store(false, Ordering::Release);
            }
        }
    }
}

/// The CRC-32 (IEEE) of an event's 12 checked header bytes (`prefix`) followed by its
/// `payload`, seeded with `seed` as [`crate::format`] defines it, computed with
/// carry-less multiplication: for payloads of [`CLMUL_MIN`] to [`CLMUL_MAX`] bytes, on
/// an x86-64 CPU with `PCLMULQDQ` and SSE4.1. `None` for other lengths and CPUs: the
/// caller computes it the general way.
///
/// A general CRC call folds its input one 16-byte block after another, each fold waiting
/// for the last; here the prefix, with the seed, is the first block and every block is
/// folded straight to the last in one step, the folds independent of each other (then
/// one fold for a partial last block, and the reduction to 32 bits). At 64-byte payloads
/// that takes about a third of an event's checksum time off (`docs/BENCHMARKS.md`).
#[inline(always)]
pub(crate) fn event_crc_clmul(seed: u32, prefix: &[u8; 12], payload: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if (CLMUL_MIN..=CLMUL_MAX).contains(&payload.len()) && clmul::available() {
            // SAFETY: the CPU has the features the function is compiled for (checked
            // just above), and the payload's length is in the range it takes.
            return Some(unsafe { clmul::event_crc(seed, prefix, payload) });
        }
    }
    let _ = (seed, prefix, payload);
    None
}

/// The shortest payload [`event_crc_clmul`] takes: one whole block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const CLMUL_MIN: usize = 16;

/// The longest payload [`event_crc_clmul`] takes (8 whole blocks and a partial one);
/// longer payloads go to `crc32fast`, whose loop folds four blocks at a time.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const CLMUL_MAX: usize = 16 * clmul::BLOCKS + 15;

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod clmul {
    /// The most whole payload blocks the kernel folds in one step.
    pub(super) const BLOCKS: usize = 8;

    /// The multiplier of the reflected 33-bit form that moves a 64-bit half of a block
    /// forward by `e - 32` bits, as the Intel paper on CRC with `PCLMULQDQ` and
    /// `crc32fast` build them: `x^e` modulo the CRC polynomial, reflected (`format`'s
    /// arithmetic, where `x` is bit 30), shifted up one.
    const fn key(e: u32) -> i64 {
        ((crate::format::power_mod_poly(1 << 30, e as u64) as u64) << 1) as i64
    }

    /// For `j` blocks of distance: the keys that fold a block forward by `128 * j` bits
    /// (low half, high half). Index 0 is unused.
    #[allow(clippy::indexing_slicing)] // evaluated at compile time: cannot panic at run time
    pub(super) const FOLD: [(i64, i64); BLOCKS + 1] = {
        let mut keys = [(0, 0); BLOCKS + 1];
        let mut j = 1;
        while j <= BLOCKS {
            let bits = 128 * j as u32;
            keys[j] = (key(bits + 32), key(bits - 32));
            j += 1;
        }
        keys
    };

    /// Barrett reduction constants: `floor(x^95 / P)` reflected, and the CRC polynomial
    /// `P` reflected, with its `x^32` term.
    const BARRETT_MU: i64 = 0xb4e5_b025_f701_1641_u64 as i64;
    const BARRETT_POLY: i64 = 0x1_db71_0641;

    #[cfg(target_arch = "x86_64")]
    pub(super) use x86::{available, event_crc};

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64 as arch;
        use std::sync::atomic::{AtomicU8, Ordering};

        use super::{BARRETT_MU, BARRETT_POLY, BLOCKS, FOLD};

        /// 0 not looked yet, 1 present, 2 absent.
        static AVAILABLE: AtomicU8 = AtomicU8::new(0);

        /// Whether this CPU has `PCLMULQDQ`, SSSE3 and SSE4.1 (looked up once).
        #[inline(always)]
        pub(in crate::sys) fn available() -> bool {
            match AVAILABLE.load(Ordering::Relaxed) {
                1 => true,
                2 => false,
                _ => look(),
            }
        }

        #[cold]
        fn look() -> bool {
            let present = std::arch::is_x86_feature_detected!("pclmulqdq")
                && std::arch::is_x86_feature_detected!("ssse3")
                && std::arch::is_x86_feature_detected!("sse4.1");
            AVAILABLE.store(if present { 1 } else { 2 }, Ordering::Relaxed);
            present
        }

        /// Folds `a` forward by the distance of `keys` onto `b`.
        #[inline]
        #[target_feature(enable = "pclmulqdq,sse2")]
        fn fold(a: arch::__m128i, b: arch::__m128i, keys: (i64, i64)) -> arch::__m128i {
            let keys = arch::_mm_set_epi64x(keys.1, keys.0);
            let low = arch::_mm_clmulepi64_si128(a, keys, 0x00);
            let high = arch::_mm_clmulepi64_si128(a, keys, 0x11);
            arch::_mm_xor_si128(arch::_mm_xor_si128(b, low), high)
        }

        /// The 16 bytes of `bytes` at `at` (which must hold them).
        #[inline]
        #[target_feature(enable = "sse2")]
        fn block(bytes: &[u8], at: usize) -> arch::__m128i {
            match bytes.get(at..at + 16) {
                // SAFETY: the slice holds 16 readable bytes, and `_mm_loadu_si128` takes
                // any alignment.
                Some(b) => unsafe { arch::_mm_loadu_si128(b.as_ptr().cast()) },
                None => arch::_mm_setzero_si128(),
            }
        }

        /// The checksum of [`event_crc_clmul`](super::super::event_crc_clmul).
        ///
        /// # Safety
        /// The CPU has `PCLMULQDQ`, SSSE3 and SSE4.1 ([`available`]).
        #[target_feature(enable = "pclmulqdq,sse2,ssse3,sse4.1")]
        pub(in crate::sys) fn event_crc(seed: u32, prefix: &[u8; 12], payload: &[u8]) -> u32 {
            // The checked bytes are `prefix ‖ payload`, the register starting as `!seed`.
            // Four zero bytes in front change no CRC that starts from zero, and starting
            // from `!seed` is the same as starting from zero with `!seed` xored into the
            // first four bytes: so the message is taken as `0000 ‖ prefix ‖ payload`
            // from zero, its first block built from registers.
            let (low, high) = prefix.split_at(8);
            let low = low.try_into().map_or(0, u64::from_le_bytes) ^ u64::from(!seed);
            let high = high.try_into().map_or(0, u32::from_le_bytes);
            let first = arch::_mm_set_epi64x(
                ((low >> 32) | (u64::from(high) << 32)) as i64,
                (low << 32) as i64,
            );
            let n = payload.len();
            let whole = (n / 16).clamp(1, BLOCKS);
            // Every block folded straight onto the last whole one.
            // (`whole` is 1 to `BLOCKS`, so every distance below has its keys.)
            let keys = |distance: usize| FOLD.get(distance).copied().unwrap_or_default();
            let mut x = fold(first, block(payload, 16 * (whole - 1)), keys(whole));
            let mut i = 0;
            while i + 1 < whole {
                x = fold(block(payload, 16 * i), x, keys(whole - 1 - i));
                i += 1;
            }
            // A partial last block of `r` bytes: `x` and those bytes are `16 + r` bytes of
            // message; the first `r` are folded forward onto the last 16, which are the
            // high `16 - r` bytes of `x` and the `r` bytes loaded (from a load ending at
            // the payload's end, its overlap dropped by the blend).
            let r = n - 16 * whole;
            if r > 0 {
                let seq = arch::_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                let shl = arch::_mm_add_epi8(seq, arch::_mm_set1_epi8(r as i8 - 16));
                let shr = arch::_mm_xor_si128(shl, arch::_mm_set1_epi8(-128));
                let head = arch::_mm_shuffle_epi8(x, shl);
                let tail = block(payload, n - 16);
                let last = arch::_mm_blendv_epi8(arch::_mm_shuffle_epi8(x, shr), tail, shr);
                x = fold(head, last, keys(1));
            }
            // 128 bits to the 32-bit CRC: fold the low half into the high (96 bits
            // left), then a Barrett reduction.
            let (k3, k4) = keys(1);
            let k = arch::_mm_set_epi64x(k4, k3);
            let x = arch::_mm_xor_si128(
                arch::_mm_clmulepi64_si128(x, k, 0x10),
                arch::_mm_srli_si128(x, 8),
            );
            let barrett = arch::_mm_set_epi64x(BARRETT_POLY, BARRETT_MU);
            let t = arch::_mm_clmulepi64_si128(x, barrett, 0x00);
            let t = arch::_mm_clmulepi64_si128(t, barrett, 0x10);
            !(arch::_mm_extract_epi32(arch::_mm_xor_si128(x, t), 2) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};

    /// A file of `len` zero bytes, open for reading and writing.
    fn zeroed_file(path: &Path, len: u64) -> File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap();
        file.set_len(len).unwrap();
        file
    }

    /// What a write through a mapping made from `warm` lands in: the file it was asked
    /// to map, never the file `warm` maps, even one of the same length; and through
    /// the kept mapping of the same file (renamed meanwhile), the same file's bytes.
    #[test]
    fn a_kept_mapping_is_used_only_for_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let len = 64 << 10;
        let a = zeroed_file(&dir.path().join("a"), len);
        let b = zeroed_file(&dir.path().join("b"), len);
        let bytes = [0xa5_u8; 16];
        let at = HEADER as u64;
        // A mapping of `a`, kept; then `b` mapped "reusing" it.
        let warm = WriteMap::new(&a, len, false, len)
            .unwrap()
            .warm(&a)
            .unwrap();
        let mut map = WriteMap::reusing(&b, len, false, len, Some(warm)).unwrap();
        assert!(map.write_unpublished(at, &[&bytes]));
        map.sync_range(0, len).unwrap();
        let mut read = [0_u8; 16];
        b.read_exact_at(&mut read, at).unwrap();
        assert_eq!(read, bytes, "the write reached the file asked for");
        a.read_exact_at(&mut read, at).unwrap();
        assert_eq!(read, [0; 16], "the kept mapping's file is untouched");
        // Nor is a kept mapping of another length than the one asked for.
        let warm = WriteMap::new(&b, len / 2, false, len / 2)
            .unwrap()
            .warm(&b)
            .unwrap();
        let kept = Arc::clone(&warm.raw);
        let map = WriteMap::reusing(&b, len, false, len, Some(warm)).unwrap();
        assert!(!Arc::ptr_eq(&map.raw, &kept));
        assert_eq!(map.len() as u64, len);
        // The same file, renamed and opened again: its kept mapping is used, and writes
        // through it are the file's.
        let warm = WriteMap::new(&a, len, false, len)
            .unwrap()
            .warm(&a)
            .unwrap();
        let kept = Arc::clone(&warm.raw);
        std::fs::rename(dir.path().join("a"), dir.path().join("a2")).unwrap();
        let again = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("a2"))
            .unwrap();
        let mut map = WriteMap::reusing(&again, len, false, len, Some(warm)).unwrap();
        assert!(Arc::ptr_eq(&map.raw, &kept), "the kept mapping was used");
        assert!(map.write_unpublished(at, &[&bytes]));
        map.sync_range(0, len).unwrap();
        again.read_exact_at(&mut read, at).unwrap();
        assert_eq!(read, bytes);
    }

    /// A number for this thread, as the gate gives one.
    fn me() -> usize {
        thread_local! {
            static ME: u64 = const { 0 };
        }
        ME.with(|me| std::ptr::from_ref(me).addr())
    }

    /// Threads that each take the lock in runs of 1 to 600 times in a row (so that it
    /// is biased to one, then revoked by another, again and again) never hold it at
    /// once: a read and a later write of the value, not atomic, lose no count. Each
    /// thread first takes it 300 times alone, in turn, so that every one of them has
    /// held the bias before they contend, however the scheduler then runs them.
    #[test]
    fn a_biased_lock_lets_one_thread_in_at_a_time() {
        let _alone = crate::busy_threads_alone();
        let lock = BiasedLock::new(0_u64);
        let turn = AtomicU64::new(1);
        let until = Instant::now() + Duration::from_millis(600);
        let (takes, biased): (Vec<u64>, Vec<u64>) = std::thread::scope(|s| {
            let threads: Vec<_> = (1..=3_u64)
                .map(|seed| {
                    let (lock, turn) = (&lock, &turn);
                    s.spawn(move || {
                        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        let (mut takes, mut biased) = (0_u64, 0_u64);
                        while turn.load(Ordering::Acquire) != seed {
                            std::thread::yield_now();
                        }
                        for _ in 0..300 {
                            let mut held = lock.try_lock(me()).unwrap();
                            biased += u64::from(held.through_bias());
                            *held += 1;
                            takes += 1;
                        }
                        turn.store(seed + 1, Ordering::Release);
                        while turn.load(Ordering::Acquire) <= 3 {
                            std::thread::yield_now();
                        }
                        while Instant::now() < until {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            for _ in 0..1 + rng % 600 {
                                let mut held = loop {
                                    if let Some(held) = lock.try_lock(me()) {
                                        break held;
                                    }
                                    std::hint::spin_loop();
                                };
                                biased += u64::from(held.through_bias());
                                let seen = *held;
                                for _ in 0..rng % 64 {
                                    std::hint::spin_loop();
                                }
                                *held = seen + 1;
                                takes += 1;
                            }
                            if rng % 4 == 0 {
                                std::thread::yield_now();
                            }
                        }
                        (takes, biased)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).unzip()
        });
        let total: u64 = takes.iter().sum();
        assert_eq!(*lock.try_lock(me()).unwrap(), total, "takes: {takes:?}");
        if bias_allowed() {
            // Otherwise the test would only have tried the plain lock.
            assert!(
                biased.iter().all(|&b| b > 0),
                "taken through a bias: {biased:?} of {takes:?}"
            );
        }
    }

    /// A thread that takes a lock biased to another, which holds it, gets it only once
    /// that thread released it.
    #[test]
    fn taking_a_lock_biased_to_a_holder_waits_for_its_release() {
        let _alone = crate::busy_threads_alone();
        let lock = BiasedLock::new(());
        let holding = AtomicBool::new(false);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..2 * BIAS_AFTER {
                    drop(lock.try_lock(me()).unwrap());
                }
                let held = lock.try_lock(me()).unwrap();
                holding.store(true, Ordering::SeqCst);
                held_tx.send(held.through_bias()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                holding.store(false, Ordering::SeqCst);
                drop(held);
            });
            let through_bias = held_rx.recv().unwrap();
            assert_eq!(through_bias, bias_allowed());
            let took = loop {
                if let Some(took) = lock.try_lock(me()) {
                    break took;
                }
                std::thread::yield_now();
            };
            assert!(!holding.load(Ordering::SeqCst), "both held the lock");
            drop(took);
        });
    }

    /// A thread that holds the lock, plainly or through its bias, gets `None` when it
    /// tries it again: never a second guard.
    #[test]
    fn a_holder_trying_the_lock_again_gets_none() {
        let lock = BiasedLock::new(0_u32);
        let mut plain_at_bias = false;
        for _ in 0..2 * BIAS_AFTER {
            let held = lock.try_lock(me()).unwrap();
            plain_at_bias |= !held.through_bias();
            assert!(lock.try_lock(me()).is_none(), "a second guard");
            assert!(lock.try_lock_unbiased(me()).is_none(), "a second guard");
            assert!(lock.try_lock_plain(me()).is_none(), "a second guard");
        }
        assert!(plain_at_bias);
        let held = lock.try_lock(me()).unwrap();
        assert_eq!(held.through_bias(), bias_allowed());
        assert!(lock.try_lock(me()).is_none(), "a second guard");
        assert!(lock.try_lock_plain(me()).is_none(), "a second guard");
        assert!(lock.try_lock_biased(me()).is_none(), "a second guard");
        drop(held);
        assert!(lock.try_lock(me()).is_some());
    }

    /// A lock biased to a thread that has ended is taken at once by another.
    #[test]
    fn a_lock_biased_to_an_ended_thread_is_free() {
        let _alone = crate::busy_threads_alone();
        let lock = BiasedLock::new(0_u32);
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..2 * BIAS_AFTER {
                    *lock.try_lock(me()).unwrap() += 1;
                }
            });
        });
        let held = lock.try_lock(me()).unwrap();
        assert_eq!(*held, 2 * BIAS_AFTER);
        assert!(!held.through_bias());
    }

    /// The carry-less kernel's fold keys are the published ones: 128 bits (crc32fast's
    /// `K3`, `K4`) and 512 bits (`K1`, `K2`, its four-block loop's), so the keys for the
    /// distances between, built the same way, are too.
    #[test]
    fn the_fold_keys_are_the_published_constants() {
        assert_eq!(clmul::FOLD[1], (0x1_7519_97d0, 0x0_ccaa_009e));
        assert_eq!(clmul::FOLD[4], (0x1_5444_2bd4, 0x1_c6e4_1596));
    }
}
