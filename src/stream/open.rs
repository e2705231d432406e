//! Opening stream files: path checks, the header read, the clock, and lock probing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use zerocopy::FromBytes;

use crate::error::{Error, HeaderProblem, Result, Unrecognized};
use crate::format::{
    self, STREAM_HEADER_LEN, StreamHeader, TRAILER_RECORD_LEN, TRAILER_SLOT_LEN, Trailer,
    TrailerProblem, decode_trailer,
};
use crate::sys::{self, Presence};

/// Opens `path` as a regular file, read-only or read-write, and returns it with its length.
///
/// The open does not block on a FIFO (`O_NONBLOCK`), and anything that is not a regular
/// file is refused with [`Error::NotAFile`] before a byte is read.
pub(crate) fn open_regular(path: &Path, write: bool) -> Result<(File, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => Error::NotAFile {
                path: path.to_owned(),
                kind: "directory",
            },
            // Opening a Unix socket fails before its kind could be checked below.
            Some(libc::ENXIO)
                if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket()) =>
            {
                Error::NotAFile {
                    path: path.to_owned(),
                    kind: "socket",
                }
            }
            _ => Error::io("open", path, e),
        })?;
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    let kind = meta.file_type();
    let what = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_socket() {
        Some("socket")
    } else if kind.is_block_device() || kind.is_char_device() {
        Some("device")
    } else {
        Some("special file")
    };
    if let Some(kind) = what {
        return Err(Error::NotAFile {
            path: path.to_owned(),
            kind,
        });
    }
    Ok((file, meta.len()))
}

/// What the identity check found: the trailer and where it lies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    /// The decoded current trailer slot.
    pub trailer: Trailer,
    /// The trailer's offset, which is also the end of the event area.
    pub trailer_at: u64,
}

/// Checks that a file of `len` bytes is a version 2 stream: reads the two trailer slot
/// records with `pread` (nothing is mapped yet) and decodes them.
///
/// This is the first look at any byte of the file; nothing else is trusted before it.
pub(crate) fn read_identity(file: &File, path: &Path, len: u64) -> Result<Identity> {
    let Some(trailer_at) = format::trailer_offset(len) else {
        return Err(Error::NotAStream {
            path: path.to_owned(),
            reason: Unrecognized::TooShort { len },
        });
    };
    let mut slots = [[0u8; TRAILER_RECORD_LEN]; 2];
    for (i, slot) in slots.iter_mut().enumerate() {
        file.read_exact_at(slot, trailer_at + i as u64 * TRAILER_SLOT_LEN)
            .map_err(|e| Error::io("read trailer of", path, e))?;
    }
    let [a, b] = &slots;
    let trailer = decode_trailer([a, b], trailer_at).map_err(|problem| match problem {
        TrailerProblem::NoMagic => Error::NotAStream {
            path: path.to_owned(),
            reason: Unrecognized::NoMagic { trailer_at },
        },
        TrailerProblem::UnsupportedVersion { version } => Error::NotAStream {
            path: path.to_owned(),
            reason: Unrecognized::UnsupportedVersion { version },
        },
        problem => Error::DamagedTrailer {
            path: path.to_owned(),
            offset: trailer_at,
            problem,
        },
    })?;
    Ok(Identity {
        trailer,
        trailer_at,
    })
}

/// The valid record in the trailer slot that `current` does not occupy, read again with
/// `pread`: the record before it (the watermark of the flush before, say). `None` if
/// that slot holds no valid record.
pub(crate) fn read_other_record(
    file: &File,
    trailer_at: u64,
    current: &Trailer,
) -> Option<Trailer> {
    let other = 1 - Trailer::slot(current.sequence);
    let mut slot = [0u8; TRAILER_RECORD_LEN];
    file.read_exact_at(&mut slot, trailer_at + other * TRAILER_SLOT_LEN)
        .ok()?;
    // Decoded in its own place, beside an empty slot: a record there is valid only if
    // its sequence names that slot, as for every other read of the trailer.
    let empty = [0u8; TRAILER_RECORD_LEN];
    let slots = if other == 0 {
        [&slot, &empty]
    } else {
        [&empty, &slot]
    };
    decode_trailer(slots, trailer_at).ok()
}

/// Reads and checks the stream header of a stream whose identity was checked: the write
/// offset must lie in the event area and at or above the durable watermark.
pub(crate) fn read_stream_header(
    file: &File,
    path: &Path,
    identity: &Identity,
) -> Result<StreamHeader> {
    let header = read_header(file, path, identity.trailer_at)?;
    let write_offset = header.write_offset.get();
    let watermark = identity.trailer.durable_offset;
    if write_offset < watermark {
        return Err(Error::BadHeader {
            path: path.to_owned(),
            reason: HeaderProblem::BelowWatermark {
                write_offset,
                watermark,
            },
        });
    }
    Ok(header)
}

/// Reads the stream header of a file and checks `24 <= write_offset <= len`.
pub(crate) fn read_header(file: &File, path: &Path, len: u64) -> Result<StreamHeader> {
    if len < STREAM_HEADER_LEN {
        return Err(Error::BadHeader {
            path: path.to_owned(),
            reason: HeaderProblem::TooShort { len },
        });
    }
    let mut bytes = [0u8; STREAM_HEADER_LEN as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| Error::io("read header of", path, e))?;
    let header = StreamHeader::read_from_bytes(&bytes).map_err(|_| Error::BadHeader {
        path: path.to_owned(),
        reason: HeaderProblem::TooShort { len },
    })?;
    check_write_offset(path, header.write_offset.get(), len)?;
    Ok(header)
}

/// Checks `24 <= write_offset <= len`.
pub(crate) fn check_write_offset(path: &Path, write_offset: u64, len: u64) -> Result<()> {
    if (STREAM_HEADER_LEN..=len).contains(&write_offset) {
        Ok(())
    } else {
        Err(Error::BadHeader {
            path: path.to_owned(),
            reason: HeaderProblem::WriteOffsetOutOfRange { write_offset, len },
        })
    }
}

/// Which lock a [`HeldLock`] releases when dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LockKind {
    /// The exclusive writer lock (`flock`).
    Writer,
    /// The shared reader-presence lock (an OFD lock).
    Reader,
}

/// An open file whose lock is released explicitly when it is dropped.
///
/// Closing the descriptor alone is not enough: both `flock` and OFD locks belong to the
/// open file description, which a child process forked by another thread shares until
/// its `exec` closes it. For that instant the lock would outlive its owner, and a writer
/// opening right after a reader closed could see a reader that is gone. An explicit
/// unlock acts on the shared description, so it releases the lock at once.
#[derive(Debug)]
pub(crate) struct HeldLock {
    file: File,
    kind: LockKind,
}

impl HeldLock {
    /// Takes ownership of `file`, on which the caller holds a lock of `kind`.
    pub(crate) fn new(file: File, kind: LockKind) -> Self {
        Self { file, kind }
    }

    /// The file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Errors cannot be reported from here; closing the descriptor releases the
        // lock in any case, only later.
        let _ = match self.kind {
            LockKind::Writer => self.file.unlock(),
            LockKind::Reader => sys::set_presence(&self.file, Presence::Unlock).map(drop),
        };
    }
}

/// How long a reader waits for a writer's recovery (which holds the presence lock alone)
/// to finish before reporting [`Error::Locked`].
const RECOVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the shared reader-presence lock on `file` (see `sys::set_presence`), waiting
/// out a recovery in progress.
pub(crate) fn announce_reader(file: &File, path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + RECOVERY_WAIT;
    loop {
        match sys::set_presence(file, Presence::Reader) {
            Ok(true) => return Ok(()),
            Ok(false) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(false) => {
                return Err(Error::Locked {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(Error::io("lock reader presence of", path, e)),
        }
    }
}

/// Checks that `path` still names the open `file` (same device and inode); an
/// [`Error::Io`] of kind not found if it names nothing or another file.
pub(crate) fn check_still_named(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let open = file
        .metadata()
        .map_err(|e| Error::io("read metadata of", path, e))?;
    let named = std::fs::metadata(path);
    match named {
        Ok(named) if named.dev() == open.dev() && named.ino() == open.ino() => Ok(()),
        Ok(_) => Err(Error::io(
            "open",
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                "the file was replaced while it was being opened",
            ),
        )),
        Err(e) => Err(Error::io("open", path, e)),
    }
}

/// Opens `file` (opened at `path`) again, read-only, with the open flags `flags`: a new
/// open file description of the same file (a lock taken on it is its own; one opened for
/// direct I/O reads past the page cache). On Linux through `/proc/self/fd`, which reaches
/// the file also once its name is gone or names another file; elsewhere, without
/// `/proc`, or if that fails, through `path`, which must still name it (an error of kind
/// not found otherwise).
pub(crate) fn reopen(file: &File, path: &Path, flags: i32) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    let same = |again: &File| {
        again
            .metadata()
            .is_ok_and(|m| m.dev() == open.dev() && m.ino() == open.ino())
    };
    let open_at = |at: &Path| OpenOptions::new().read(true).custom_flags(flags).open(at);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Ok(again) = open_at(Path::new(&link))
            && same(&again)
        {
            return Ok(again);
        }
    }
    let again = open_at(path)?;
    if !same(&again) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the file is no longer at its path",
        ));
    }
    Ok(again)
}

/// How long [`lock_exclusive`] rides out contention before reporting [`Error::Locked`].
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// Takes the exclusive writer lock on `file`, waiting at most [`LOCK_GRACE`].
///
/// The short grace period covers a lock that is being released: a process that spawns a
/// child shares its open files with the child until the child's `exec`, so a writer that
/// was just dropped may keep its lock for that instant. A writer that really holds the
/// lock is reported as [`Error::Locked`] after the grace period.
pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + LOCK_GRACE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
    }
}

/// Checks that a writer's open of `path` could go ahead now, and lets go: its writer
/// lock is free and, if `rewrite` (a torn tail to drop), no reader has the stream open.
/// For a log's writer, which checks every segment it will repair before it repairs the
/// first; a writer or reader that arrives after the check still gets its refusal later.
pub(crate) fn check_writable(path: &Path, rewrite: bool) -> Result<()> {
    let (file, _) = open_regular(path, true)?;
    lock_exclusive(&file, path)?;
    if rewrite {
        match crate::sys::set_presence(&file, crate::sys::Presence::Rewriter) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::ReadersPresent {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(Error::io("lock reader presence of", path, e)),
        }
    }
    // Closing the file releases both locks.
    Ok(())
}

/// Unix nanoseconds now, saturating at the ends of `i64`.
pub(crate) fn now_nanos() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Whether some process holds the exclusive writer lock on `file`.
///
/// Probes with a shared lock that is released at once. A writer opening in that
/// instant waits it out (see [`lock_exclusive`]). Reading `/proc/locks` instead would
/// not touch the lock, but the kernel hands that table out a page per `read`, so lines
/// can shift between reads and hide a held lock.
pub(crate) fn writer_lock_held(file: &File) -> io::Result<bool> {
    match file.try_lock_shared() {
        Ok(()) => {
            file.unlock()?;
            Ok(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}
