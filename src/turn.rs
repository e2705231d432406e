//! The turn that processes take to hold the one writer of a log or of a stream file
//! (`docs/FORMAT.md`, "Many writer processes"), and the handle that shares a process's
//! writer between its threads: [`Shared`], behind both
//! [`SharedLogWriter`](crate::SharedLogWriter) and
//! [`SharedStreamWriter`](crate::SharedStreamWriter). What differs between the two, the
//! writer, how it opens, closes and hands over, is the [`Turned`] trait.

use std::fmt::Debug;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::commit::GroupCommit;
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::gate::{Gate, GateGuard};
use crate::log::writer::CleanLog;
use crate::stream::writer::CleanStream;
use zerocopy::little_endian::{I64, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// A writer that processes take turns holding: a [`LogWriter`](crate::LogWriter) for a
/// log, a [`StreamWriter`](crate::StreamWriter) for a stream file.
pub(crate) trait Turned: Sized + Send + 'static {
    /// What the writer said about the file when this process last held it.
    type Seen: Copy + Send + Debug;
    /// What this process's turns leave behind: for a log, the segments retention
    /// deleted and the seals still under way.
    type Left: Default + Send + Debug;
    /// What does not change while the handle lives: settings, what the first open
    /// repaired.
    type Facts: Send + Sync + Debug;
    /// How the writer opens when it takes the turn.
    type Options: Default + Send + Sync + Debug;
    /// The first bytes of this writer's handover record.
    const MAGIC: [u8; 8];
    /// The name of the keeper thread.
    const KEEPER: &'static str;

    /// The file of the turn's `flock` and handover record, and the file waiters lock.
    fn turn_files(at: &Path) -> (PathBuf, PathBuf);
    /// Whether `at` is what this writer writes, checked without changing or locking it,
    /// before any turn file is made beside it.
    fn check(at: &Path) -> Result<()>;
    /// The error for a turn file that is not a regular file.
    fn not_regular(at: &Path, path: PathBuf) -> Error;
    /// The error for a turn file whose contents no writer of this kind made (neither
    /// empty nor a handover record of [`MAGIC`](Self::MAGIC), taken or not).
    fn not_a_record(at: &Path, path: PathBuf) -> Error;
    /// The log's directory or the stream's file.
    fn at(&self) -> &Path;
    fn seen(&self) -> Self::Seen;
    fn facts(&self) -> Self::Facts;
    /// Opens the writer in full, validating and repairing.
    fn open(at: &Path, options: &Self::Options) -> Result<Self>;
    /// Opens the writer from a handover record: `None`, changing nothing, unless the
    /// file is as the record says.
    fn open_clean(at: &Path, options: &Self::Options, record: &CleanLog) -> Result<Option<Self>>;
    /// Closes the writer without a flush at the end of a turn, and if it closed cleanly
    /// runs `record` with what it left (the handover record's contents) before it
    /// releases the file's writer lock (a log's `LOCK`, a stream's own `flock`): any
    /// writer that opens the file after it finds the record, and invalidates it. With
    /// `hand_on` another process waits to open the file next: what it can reuse (a
    /// log's spare segments) is left for it rather than deleted.
    fn close_clean(self, left: &mut Self::Left, hand_on: bool, record: impl FnOnce(&CleanLog));
    /// Closes a writer that kept the file to itself.
    fn close(self, left: &mut Self::Left);
    /// Waits for what the turns left under way, when the last handle goes.
    fn finish(left: &mut Self::Left);
}

/// The handle many threads share: one writer per process, behind one lock, taking the
/// turn from other processes when it must.
#[derive(Debug)]
pub(crate) struct Shared<W: Turned> {
    handle: Arc<Handle<W>>,
    /// The handle's `inner`, held here as well so that a call reaches the lock with
    /// one load less.
    inner: Arc<Inner<W>>,
}

impl<W: Turned> Clone for Shared<W> {
    fn clone(&self) -> Self {
        Self {
            handle: Arc::clone(&self.handle),
            inner: Arc::clone(&self.inner),
        }
    }
}

/// How often a process holding the turn looks whether another process waits for it.
const KEEPER_TICK: Duration = Duration::from_millis(1);

/// The longest a process keeps the turn while another process waits and it is still
/// appending (an idle one hands it over at the next look, [`KEEPER_TICK`]).
const TURN_LENGTH: Duration = Duration::from_millis(40);

/// How long a process that handed the turn over waits for another to take it before it
/// waits for the turn again itself.
const HANDOVER_GRACE: Duration = Duration::from_millis(5);

/// How long taking the turn rides out a file found locked: the writer of a process that
/// just created it (and never took a turn) may still be closing.
const HANDOVER_PATIENCE: Duration = Duration::from_millis(500);

/// How long a full open on taking the turn rides out a log's segment found locked: a
/// process that had the turn may still be sealing it (see
/// [`LogWriter::close_clean`](crate::LogWriter)).
const SEALING_PATIENCE: Duration = Duration::from_secs(60);

/// The handles' common part: dropping the last one stops the keeper thread and gives
/// the file back.
#[derive(Debug)]
struct Handle<W: Turned> {
    inner: Arc<Inner<W>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner<W: Turned> {
    turn: Gate<Turn<W>>,
    commit: GroupCommit,
    /// The log's directory or the stream's file, as the caller named it: what the
    /// handle's paths and errors say.
    at: PathBuf,
    /// The same by its absolute path, which each turn opens: a change of the working
    /// directory while the handle lives does not change the file a relative path named.
    open_at: PathBuf,
    facts: W::Facts,
    options: W::Options,
    /// The turn files, when processes take turns; `None` for a writer made from one
    /// that keeps the file to itself.
    processes: Option<Processes>,
    /// The running boot's identity, for the handover record; `None` where it cannot be
    /// read (then no record is written, and every turn opens the file in full).
    boot: Option<[u8; BOOT_LEN]>,
    /// The keeper thread is to stop.
    stop: Mutex<bool>,
    stopping: Condvar,
    /// Whether this process has the turn, for the keeper's look.
    holding: AtomicBool,
    /// Calls that used the writer: stored (not added to, an atomic read-modify-write
    /// would cost every append) under the turn's lock, read by the keeper to tell
    /// whether this process is idle.
    uses: AtomicU64,
    /// When this process took the turn, in nanoseconds after `epoch`.
    since: AtomicU64,
    epoch: Instant,
    /// Set by the keeper when another process waits and this one has had the turn for
    /// [`TURN_LENGTH`]: the next call gives the turn up before it goes on. (The keeper
    /// does not take the lock itself from a thread that keeps appending: a lock that
    /// lets a running thread take it again could keep the keeper out for long.)
    handover: AtomicBool,
}

/// This process's part in the turn.
#[derive(Debug)]
pub(crate) struct Turn<W: Turned> {
    /// The writer while this process has the turn.
    writer: Option<W>,
    /// What the writer said when this process last gave the turn up.
    last: W::Seen,
    /// What this process's turns left behind.
    left: W::Left,
    /// The generation of the handover record this process's turn was opened from (0
    /// for none): the next record it writes has the one after.
    generation: u64,
}

impl<W: Turned> Turn<W> {
    /// The writer, if this process has the turn, and what its turns left.
    pub(crate) fn parts(&mut self) -> (Option<&mut W>, &mut W::Left) {
        (self.writer.as_mut(), &mut self.left)
    }
}

/// The files of the processes' turn, each opened on its own: `flock`s belong to the
/// open file.
#[derive(Debug)]
struct Processes {
    /// Locked exclusively while this process has the turn; holds the record.
    turn: File,
    turn_path: PathBuf,
    /// Locked shared while this process waits for the turn.
    want: File,
    want_path: PathBuf,
    /// Tried exclusively by the keeper: failing, another process waits.
    probe: File,
}

impl<W: Turned> From<W> for Shared<W> {
    /// Shares `writer` between this process's threads; it keeps the file to itself.
    fn from(writer: W) -> Self {
        let at = writer.at().to_owned();
        Self::assemble(writer, None, W::Options::default(), at)
    }
}

impl<W: Turned> Shared<W> {
    /// Makes the handle around `writer`, with its keeper thread if processes take turns;
    /// `at` is the file as the caller named it.
    fn assemble(writer: W, processes: Option<Processes>, options: W::Options, at: PathBuf) -> Self {
        let turns = processes.is_some();
        let inner = Arc::new(Inner {
            at,
            open_at: writer.at().to_owned(),
            facts: writer.facts(),
            options,
            turn: Gate::new(Turn {
                last: writer.seen(),
                writer: Some(writer),
                left: W::Left::default(),
                generation: 0,
            }),
            commit: GroupCommit::default(),
            processes,
            boot: boot_id(),
            stop: Mutex::new(false),
            stopping: Condvar::new(),
            holding: AtomicBool::new(true),
            uses: AtomicU64::new(0),
            since: AtomicU64::new(0),
            epoch: Instant::now(),
            handover: AtomicBool::new(false),
        });
        // Without its keeper a process keeps the turn until its last handle is dropped:
        // the others wait that long, and nothing is lost.
        let keeper = turns
            .then(|| {
                let theirs = Arc::clone(&inner);
                std::thread::Builder::new()
                    .name(W::KEEPER.into())
                    .spawn(move || keep(&theirs))
                    .ok()
            })
            .flatten();
        Self {
            inner: Arc::clone(&inner),
            handle: Arc::new(Handle { inner, keeper }),
        }
    }

    /// Opens the file at `at` to append to it from this process, in turns with any
    /// other processes that opened it so, the writer opened with `options` on each turn;
    /// returns holding the turn.
    ///
    /// Every turn opens the file by its absolute path (a relative `at` is taken from the
    /// working directory now); errors name it as `at` does.
    pub(crate) fn open(at: &Path, options: W::Options) -> Result<Self> {
        let open_at = std::path::absolute(at).unwrap_or_else(|_| at.to_owned());
        let named = |e| named_as(e, &open_at, at);
        W::check(&open_at).map_err(named)?;
        let processes = Processes::open::<W>(&open_at).map_err(named)?;
        processes.wait_for_turn().map_err(named)?;
        let (writer, generation) = processes
            .open_writer::<W>(&open_at, &options, boot_id().as_ref())
            .map_err(named)?;
        let shared = Self::assemble(writer, Some(processes), options, at.to_owned());
        shared.inner().lock_turn().generation = generation;
        Ok(shared)
    }

    fn inner(&self) -> &Inner<W> {
        &self.inner
    }

    /// The log's directory or the stream's file.
    pub(crate) fn at(&self) -> &Path {
        &self.inner().at
    }

    /// `error` naming the file as the caller named it (the writer opens it by its
    /// absolute path).
    pub(crate) fn named(&self, error: Error) -> Error {
        self.inner().named(error)
    }

    /// What does not change while the handle lives.
    pub(crate) fn facts(&self) -> &W::Facts {
        &self.inner().facts
    }

    /// Runs `f` on the writer, taking the turn first if another process has it.
    #[inline(always)]
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut W) -> Result<T>) -> Result<T> {
        let inner = self.inner();
        let result = inner.turn.run(|turn| {
            // Counted as the call begins (the keeper also looks whether a call is under
            // way: a call that spans its look, a roll waiting for its segment, is no
            // idleness), so that the call's result goes straight to the caller.
            let uses = inner.uses.load(Ordering::Relaxed);
            inner.uses.store(uses.wrapping_add(1), Ordering::Relaxed);
            if turn.writer.is_none() || inner.handover.load(Ordering::Relaxed) {
                inner.renew_turn(turn)?;
            }
            match turn.writer.as_mut() {
                Some(writer) => f(writer),
                None => Err(Error::Locked {
                    path: inner.open_at.clone(),
                }),
            }
        });
        result.map_err(|e| inner.named(e))
    }

    /// What `f` reads from the writer if this process has the turn, or what it saw
    /// when it last gave it up.
    pub(crate) fn seen<T>(&self, f: impl FnOnce(W::Seen) -> T) -> T {
        let turn = self.inner().lock_turn();
        f(turn.writer.as_ref().map_or(turn.last, W::seen))
    }

    /// Runs `f` on this process's part of the turn, without taking the turn.
    pub(crate) fn turn<T>(&self, f: impl FnOnce(&mut Turn<W>) -> T) -> T {
        f(&mut self.inner().lock_turn())
    }

    /// The group commit: runs `flush` on the writer (taking the turn first if another
    /// process has it) as [`GroupCommit::flush`] says.
    pub(crate) fn flush(&self, flush: impl FnOnce(&mut W) -> Result<()>) -> Result<()> {
        let inner = self.inner();
        inner.commit.flush(&inner.at, || self.with(flush))
    }

    /// The writer back, if this is the last handle (waiting for the turn first if
    /// another process has it); this handle again otherwise. From then on the file is
    /// this writer's alone.
    pub(crate) fn into_writer(self) -> std::result::Result<W, Self> {
        let Self {
            handle,
            inner: direct,
        } = self;
        let handle = match Arc::try_unwrap(handle) {
            Ok(handle) => handle,
            Err(handle) => {
                return Err(Self {
                    handle,
                    inner: direct,
                });
            }
        };
        let inner = &handle.inner;
        let mut turn = inner.lock_turn();
        if turn.writer.is_none() && inner.take_turn(&mut turn).is_err() {
            drop(turn);
            return Err(Self {
                handle: Arc::new(handle),
                inner: direct,
            });
        }
        let Some(writer) = turn.writer.take() else {
            drop(turn);
            return Err(Self {
                handle: Arc::new(handle),
                inner: direct,
            });
        };
        // The writer holds its lock by itself: other processes that take the turn find
        // the file locked. Dropping the handle stops the keeper.
        if let Some(processes) = &inner.processes {
            let _ = processes.turn.unlock();
        }
        drop(turn);
        Ok(writer)
    }
}

impl<W: Turned> Inner<W> {
    /// This process's part of the turn. The lock does not poison: a thread that
    /// panicked while it held it left the writer whole (an append cut short publishes
    /// nothing).
    #[inline]
    fn lock_turn(&self) -> GateGuard<'_, Turn<W>> {
        self.turn.lock()
    }

    /// `error` naming the file as the caller named it ([`named_as`]).
    #[cold]
    fn named(&self, error: Error) -> Error {
        named_as(error, &self.open_at, &self.at)
    }

    /// Hands the turn over if the keeper asked for it, then takes it (again) if this
    /// process does not have it.
    #[cold]
    fn renew_turn(&self, turn: &mut Turn<W>) -> Result<()> {
        if self.handover.load(Ordering::Relaxed) {
            self.hand_over(turn);
        }
        if turn.writer.is_none() {
            self.take_turn(turn)?;
        }
        Ok(())
    }

    /// Waits for the turn and opens the writer, which repairs what a process that died
    /// holding the turn left.
    #[cold]
    fn take_turn(&self, turn: &mut Turn<W>) -> Result<()> {
        let Some(processes) = &self.processes else {
            return Err(Error::Locked {
                path: self.open_at.clone(),
            });
        };
        processes.wait_for_turn()?;
        let (writer, generation) =
            processes.open_writer::<W>(&self.open_at, &self.options, self.boot.as_ref())?;
        turn.last = writer.seen();
        turn.writer = Some(writer);
        turn.generation = generation;
        let since = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since.store(since, Ordering::Relaxed);
        self.handover.store(false, Ordering::Relaxed);
        self.holding.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the turn up because another process waits, and lets it in before this
    /// process waits again: released, the turn could be taken back at once by this
    /// running thread, ahead of a waiter the kernel has only just woken.
    #[cold]
    fn hand_over(&self, turn: &mut Turn<W>) {
        self.handover.store(false, Ordering::Relaxed);
        if turn.writer.is_none() {
            return;
        }
        self.release(turn, true);
        self.let_in();
    }

    /// Right after this process gave the turn up to a waiting process: waits until
    /// another process took it (or [`HANDOVER_GRACE`] passed), so that this process's
    /// next call does not take it back first.
    fn let_in(&self) {
        let Some(processes) = &self.processes else {
            return;
        };
        let deadline = Instant::now() + HANDOVER_GRACE;
        while Instant::now() < deadline {
            match processes.turn.try_lock() {
                Ok(()) => {
                    let _ = processes.turn.unlock();
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => return,
            }
        }
    }

    /// Gives the turn up: closes the writer without a flush ([`Turned::close_clean`]),
    /// writes the handover record if it closed cleanly, and lets the next process in.
    /// The next process sees the events in the page cache, and the record spares its
    /// open the checks above the watermark.
    fn release(&self, turn: &mut Turn<W>, hand_on: bool) {
        if let Some(writer) = turn.writer.take() {
            turn.last = writer.seen();
            match &self.processes {
                Some(processes) => {
                    let generation = &mut turn.generation;
                    writer.close_clean(&mut turn.left, hand_on, |clean| {
                        if let Some(boot) = self.boot.as_ref() {
                            *generation = generation.wrapping_add(1);
                            processes.write_record(&Handover::encode(
                                W::MAGIC,
                                *generation,
                                boot,
                                clean,
                            ));
                            failpoint!("handover:after_record");
                        }
                    });
                }
                None => writer.close(&mut turn.left),
            }
        }
        self.holding.store(false, Ordering::Relaxed);
        if let Some(processes) = &self.processes {
            let _ = processes.turn.unlock();
        }
    }

    /// Whether another process waits for the turn.
    fn wanted(&self) -> bool {
        self.processes
            .as_ref()
            .is_some_and(|processes| match processes.probe.try_lock() {
                Ok(()) => {
                    let _ = processes.probe.unlock();
                    false
                }
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Error(_)) => false,
            })
    }
}

impl Processes {
    /// Opens the turn files of the writer `W` of `at` (made if missing; never through
    /// a symbolic link, never anything but a regular file).
    fn open<W: Turned>(at: &Path) -> Result<Self> {
        let (turn_path, want_path) = W::turn_files(at);
        let file = |path: &Path| -> Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| Error::io("open", path, e))?;
            let regular = file
                .metadata()
                .map_err(|e| Error::io("stat", path, e))?
                .is_file();
            if !regular {
                return Err(W::not_regular(at, path.to_owned()));
            }
            Ok(file)
        };
        Ok(Self {
            turn: file(&turn_path)?,
            want: file(&want_path)?,
            probe: file(&want_path)?,
            turn_path,
            want_path,
        })
    }

    /// Waits until this process has the turn: says so on the waiters' file (so that
    /// the process holding it hands it over), then waits for the turn's.
    fn wait_for_turn(&self) -> Result<()> {
        self.want
            .lock_shared()
            .map_err(|e| Error::io("lock", &self.want_path, e))?;
        let taken = self.turn.lock();
        let _ = self.want.unlock();
        taken.map_err(|e| Error::io("lock", &self.turn_path, e))
    }

    /// Opens the writer once this process has the turn, from the handover record if
    /// the last holder left a valid one of this boot that matches the file
    /// ([`Turned::open_clean`]), in full ([`Turned::open`]) otherwise; returns it with
    /// the record's generation (0 without one). Gives the turn back if it cannot.
    fn open_writer<W: Turned>(
        &self,
        at: &Path,
        options: &W::Options,
        boot: Option<&[u8; BOOT_LEN]>,
    ) -> Result<(W, u64)> {
        let record = match self.take_record::<W>(at, boot) {
            Ok(record) => record,
            Err(e) => {
                let _ = self.turn.unlock();
                return Err(e);
            }
        };
        if let Some((generation, clean)) = record
            && let Ok(Some(writer)) = W::open_clean(at, options, &clean)
        {
            failpoint!("handover:after_open");
            return Ok((writer, generation));
        }
        let started = Instant::now();
        loop {
            match W::open(at, options) {
                Ok(writer) => return Ok((writer, 0)),
                Err(Error::Locked { path })
                    if started.elapsed() < HANDOVER_PATIENCE
                        || (path != at && started.elapsed() < SEALING_PATIENCE) =>
                {
                    std::thread::sleep(KEEPER_TICK);
                }
                Err(e) => {
                    let _ = self.turn.unlock();
                    return Err(e);
                }
            }
        }
    }

    /// Reads the handover record from the turn's file and invalidates it at once,
    /// before anything else is done with the file (so that a holder killed later in
    /// its turn leaves none); the record, if it was valid, of the writer `W` and of this
    /// boot (`boot`). None if it could not be invalidated. Under the turn's `flock`, so
    /// that no record is being written meanwhile.
    ///
    /// # Errors
    /// `W::not_a_record`, changing nothing, for a file that is neither empty nor a
    /// record of `W` (taken or not): a file of that name that evstream did not make.
    fn take_record<W: Turned>(
        &self,
        at: &Path,
        boot: Option<&[u8; BOOT_LEN]>,
    ) -> Result<Option<(u64, CleanLog)>> {
        let len = self
            .turn
            .metadata()
            .map_err(|e| Error::io("stat", &self.turn_path, e))?
            .len();
        let mut bytes = [0u8; HANDOVER_LEN];
        let read = self
            .turn
            .read_at(&mut bytes, 0)
            .map_err(|e| Error::io("read", &self.turn_path, e))?;
        let magic = bytes.get(..W::MAGIC.len()).unwrap_or_default();
        let taken = magic.iter().all(|&b| b == 0);
        let ours = len == 0 || (len == HANDOVER_LEN as u64 && (taken || magic == W::MAGIC));
        if !ours {
            return Err(W::not_a_record(at, self.turn_path.clone()));
        }
        if taken {
            return Ok(None);
        }
        if self.turn.write_all_at(&[0; 8], 0).is_err() || read != HANDOVER_LEN {
            return Ok(None);
        }
        Ok(boot.and_then(|boot| Handover::decode(W::MAGIC, &bytes, boot)))
    }

    /// Writes `record` into the turn's file (no sync: a record that a power loss tears
    /// fails its checksum, and one that survives it names another boot). Best effort: a
    /// record not written costs the next holder a full open.
    fn write_record(&self, record: &Handover) {
        let _ = self.turn.write_all_at(record.as_bytes(), 0);
    }
}

/// Invalidates the handover record that processes of `W` left in the turn's file of
/// `at`, if the file holds one: for a writer that opens `at` other than from the record
/// (`StreamWriter::open_with`, `LogWriter::open`), once its checks passed and before it
/// changes anything. An open in between two turns that changes nothing the record is
/// checked against (one killed in its first append, before it published) would
/// otherwise leave a record that still matches, over bytes past the write offset that
/// the record says are zero. Only the record's magic is zeroed, and only in a regular
/// file that begins with `W`'s magic; a missing file is nothing to do.
///
/// # Errors
/// [`Error::Io`] if the file holds a record that cannot be invalidated (it could not be
/// opened for writing, or the write failed): the caller's open must not go on.
pub(crate) fn void_record<W: Turned>(at: &Path) -> Result<()> {
    let (path, _) = W::turn_files(at);
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
    };
    let (file, writable) = match open(true) {
        Ok(file) => (file, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // A symbolic link is never a turn file; nor can a file exist whose name is too
        // long (a stream's own name, near the limit, leaves no room for `.turn`).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENAMETOOLONG)) => {
            return Ok(());
        }
        Err(e) => match open(false) {
            Ok(file) => (file, false),
            Err(_) => return Err(Error::io("open", &path, e)),
        },
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return Ok(());
    }
    let mut magic = [0u8; 8];
    let read = file
        .read_at(&mut magic, 0)
        .map_err(|e| Error::io("read", &path, e))?;
    if read < magic.len() || magic != W::MAGIC {
        return Ok(());
    }
    if !writable {
        let why = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "it holds a handover record that this process cannot invalidate",
        );
        return Err(Error::io("open for writing", &path, why));
    }
    file.write_all_at(&[0; 8], 0)
        .map_err(|e| Error::io("write", &path, e))
}

/// `error` with a path that begins with `open_at` (the absolute path a shared writer
/// opens: the file, a segment in the log's directory, a stream's `NAME.turn`) named from
/// `at` instead (the path its caller gave, which `open_at` is made from), so that the
/// errors of a writer opened by a relative path name its files as the caller does.
#[cold]
fn named_as(mut error: Error, open_at: &Path, at: &Path) -> Error {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    if open_at != at
        && let Some(path) = error.path_mut()
        && let Some(rest) = path
            .as_os_str()
            .as_bytes()
            .strip_prefix(open_at.as_os_str().as_bytes())
    {
        let mut named = at.as_os_str().as_bytes().to_vec();
        named.extend_from_slice(rest);
        *path = PathBuf::from(std::ffi::OsString::from_vec(named));
    }
    error
}

/// Length of the boot identity in the handover record: the running boot's identity
/// (`/proc/sys/kernel/random/boot_id`, at most 64 bytes) padded with zeros.
const BOOT_LEN: usize = 64;

/// Bit 0 of [`Handover::flags`]: `last_before` holds a timestamp.
const HAS_LAST_BEFORE: u32 = 1;

/// Bit 1 of [`Handover::flags`]: `last_timestamp` holds a timestamp.
const HAS_LAST_TIMESTAMP: u32 = 2;

/// Bit 2 of [`Handover::flags`]: a trailer record with `dirty_limit` is on stable storage.
const LIMIT_SYNCED: u32 = 4;

/// The handover record a process that closed the writer cleanly leaves at the start of
/// the turn's file for the next holder (FORMAT.md, "The handover record"): what the
/// writer left ([`CleanLog`]; for a stream file, its [`CleanStream`] with the log's
/// fields zero), the boot that wrote it, a generation, and a checksum. Little-endian,
/// 188 bytes.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Handover {
    /// [`Turned::MAGIC`]; zeros once the next holder took the record.
    magic: [u8; 8],
    /// One more than the generation of the record the writing process's turn was
    /// opened from (1 after a full open).
    generation: U64,
    /// The boot identity, zero-padded ([`BOOT_LEN`]).
    boot: [u8; BOOT_LEN],
    /// The newest segment's sequence number and first event's log-wide index.
    seq: U64,
    base: U64,
    /// The newest timestamp before the newest segment (if [`HAS_LAST_BEFORE`]).
    last_before: I64,
    /// The newest segment file's (or the stream file's) device and inode.
    dev: U64,
    ino: U64,
    /// The stream's recovery generation, watermark (offset and count), write offset,
    /// event count and last timestamp (if [`HAS_LAST_TIMESTAMP`]).
    stream_generation: U64,
    durable_offset: U64,
    durable_count: U64,
    write_offset: U64,
    event_count: U64,
    last_timestamp: I64,
    /// The stream's dirty limit (synced if [`LIMIT_SYNCED`]).
    dirty_limit: U64,
    /// The stream's CRC seed (0 for a version 2 stream).
    seed: U32,
    /// [`HAS_LAST_BEFORE`], [`HAS_LAST_TIMESTAMP`], [`LIMIT_SYNCED`]; other bits zero.
    flags: U32,
    /// CRC-32 (`crc32fast`) of the bytes before it.
    checksum: U32,
}

/// Length of [`Handover`].
const HANDOVER_LEN: usize = size_of::<Handover>();

const _: () = assert!(HANDOVER_LEN == 188);

impl Handover {
    fn encode(magic: [u8; 8], generation: u64, boot: &[u8; BOOT_LEN], clean: &CleanLog) -> Self {
        let segment = &clean.segment;
        let flags = if clean.last_before.is_some() {
            HAS_LAST_BEFORE
        } else {
            0
        } | if segment.last_timestamp.is_some() {
            HAS_LAST_TIMESTAMP
        } else {
            0
        } | if segment.limit_synced {
            LIMIT_SYNCED
        } else {
            0
        };
        let mut record = Self {
            magic,
            generation: U64::new(generation),
            boot: *boot,
            seq: U64::new(clean.seq),
            base: U64::new(clean.base),
            last_before: I64::new(clean.last_before.unwrap_or(0)),
            dev: U64::new(segment.dev),
            ino: U64::new(segment.ino),
            stream_generation: U64::new(segment.generation),
            durable_offset: U64::new(segment.durable_offset),
            durable_count: U64::new(segment.durable_count),
            write_offset: U64::new(segment.write_offset),
            event_count: U64::new(segment.event_count),
            last_timestamp: I64::new(segment.last_timestamp.unwrap_or(0)),
            dirty_limit: U64::new(segment.dirty_limit),
            seed: U32::new(segment.seed),
            flags: U32::new(flags),
            checksum: U32::ZERO,
        };
        record.checksum = U32::new(record.computed_checksum());
        record
    }

    fn computed_checksum(&self) -> u32 {
        let bytes = self.as_bytes();
        crc32fast::hash(bytes.get(..HANDOVER_LEN - 4).unwrap_or(bytes))
    }

    /// The generation and the writer's state of a valid record with `magic` of the
    /// boot `boot`.
    fn decode(
        magic: [u8; 8],
        bytes: &[u8; HANDOVER_LEN],
        boot: &[u8; BOOT_LEN],
    ) -> Option<(u64, CleanLog)> {
        let record = Self::read_from_bytes(bytes).ok()?;
        let flags = record.flags.get();
        let valid = record.magic == magic
            && record.checksum.get() == record.computed_checksum()
            && record.boot == *boot
            && flags & !(HAS_LAST_BEFORE | HAS_LAST_TIMESTAMP | LIMIT_SYNCED) == 0;
        if !valid {
            return None;
        }
        let clean = CleanLog {
            seq: record.seq.get(),
            base: record.base.get(),
            last_before: (flags & HAS_LAST_BEFORE != 0).then(|| record.last_before.get()),
            segment: CleanStream {
                dev: record.dev.get(),
                ino: record.ino.get(),
                seed: record.seed.get(),
                generation: record.stream_generation.get(),
                durable_offset: record.durable_offset.get(),
                durable_count: record.durable_count.get(),
                write_offset: record.write_offset.get(),
                event_count: record.event_count.get(),
                last_timestamp: (flags & HAS_LAST_TIMESTAMP != 0)
                    .then(|| record.last_timestamp.get()),
                dirty_limit: record.dirty_limit.get(),
                limit_synced: flags & LIMIT_SYNCED != 0,
            },
        };
        Some((record.generation.get(), clean))
    }
}

/// The running boot's identity, zero-padded, for the handover record.
fn boot_id() -> Option<[u8; BOOT_LEN]> {
    let id = crate::log::segment::boot_id()?;
    let mut padded = [0u8; BOOT_LEN];
    padded.get_mut(..id.len())?.copy_from_slice(id.as_bytes());
    Some(padded)
}

impl<W: Turned> Handle<W> {
    /// Stops the keeper thread and waits for it.
    fn stop_keeper(&self) {
        *self.inner.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.stopping.notify_all();
    }
}

impl<W: Turned> Drop for Handle<W> {
    /// Gives the turn up (closing the writer), then stops the keeper: a process waiting
    /// for the turn gets it without waiting for this thread's stop.
    fn drop(&mut self) {
        {
            let mut turn = self.inner.lock_turn();
            // What the writer could leave to a process waiting for the turn is deleted if
            // none waits.
            let hand_on = self.inner.wanted();
            self.inner.release(&mut turn, hand_on);
        }
        // The keeper, woken meanwhile, finds the turn given up and does nothing more.
        self.stop_keeper();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        W::finish(&mut self.inner.lock_turn().left);
    }
}

/// The keeper thread: every [`KEEPER_TICK`], if another process waits for the turn,
/// hands it over when this process is idle (no call used the writer since the last
/// look), or has the next call hand it over once this process has had it for
/// [`TURN_LENGTH`].
fn keep<W: Turned>(inner: &Inner<W>) {
    let mut seen_uses = u64::MAX;
    loop {
        {
            let stop = inner.stop.lock().unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
            let (stop, _) = inner
                .stopping
                .wait_timeout(stop, KEEPER_TICK)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let uses = inner.uses.load(Ordering::Relaxed);
        if inner.holding.load(Ordering::Relaxed) && inner.wanted() {
            // Idle: no call began since the last look (a call counts as it begins), and
            // none is under way; nothing keeps the keeper from the lock.
            if uses == seen_uses && !inner.turn.is_held() {
                let mut turn = inner.lock_turn();
                if inner.uses.load(Ordering::Relaxed) == uses && turn.writer.is_some() {
                    inner.release(&mut turn, true);
                    // The turn's lock is held meanwhile: this process's threads wait.
                    inner.let_in();
                }
            } else {
                let now = u64::try_from(inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let held =
                    Duration::from_nanos(now.saturating_sub(inner.since.load(Ordering::Relaxed)));
                if held >= TURN_LENGTH {
                    inner.handover.store(true, Ordering::Relaxed);
                }
            }
        }
        seen_uses = uses;
    }
}
