//! Outputs that appear whole or not at all.
//!
//! A command that makes a new stream or log and fills it (`salvage`, `append --create`
//! from standard input) builds it under a temporary name beside the final one,
//! `.NAME.PID.partial`, flushes it, and renames it into place (never over an existing
//! path) only when it is complete. A failure removes it; so does Ctrl-C, which then ends
//! the command with status 130. A process killed outright (`SIGKILL`, a crash) leaves the
//! hidden temporary, never a partial output under the final name; the next output staged
//! for the same name removes such leftovers of processes that are gone.
//!
//! A temporary name is longer than the final one, and a stream file made under it gets
//! a temporary of its own from the library (`.TEMP.PID.N.tmp`): for a long final name,
//! NAME in `.NAME.PID.partial` is shortened (its start and a hash of all of it), so that
//! every name fits in a directory entry whatever name a file system allows.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

use crate::failure::{self, Failure, os_reason};

/// Exit status after Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED: i32 = 130;

/// Temporaries being built, removed by the Ctrl-C handler.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<PathBuf>> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a temporary file or directory, whichever it is; a symbolic link is removed,
/// never followed.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            // A log being built there may still have its background threads at work
            // (making or renaming a segment): a file that appears during the removal
            // makes it fail, so try again a few times.
            for _ in 0..50 {
                if std::fs::remove_dir_all(path).is_ok() || path.symlink_metadata().is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// An output being built under a temporary name; see the module docs.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    temp: PathBuf,
    /// Renamed into place, or to be kept where it is.
    settled: bool,
}

impl Staged {
    /// Reserves the temporary name for a new output at `path`, after removing what
    /// earlier processes that are gone left for it, and makes Ctrl-C remove it.
    ///
    /// # Errors
    /// A failure if `path` already exists (it is never replaced) or has no file name.
    pub fn new(path: &Path) -> Result<Self, Failure> {
        if path.symlink_metadata().is_ok() {
            return Err(Failure::stream(
                path,
                &evstream::Error::AlreadyExists {
                    path: path.to_owned(),
                },
            ));
        }
        let name = path
            .file_name()
            .ok_or_else(|| Failure::usage(format!("{} names no file", path.display())))?
            .to_string_lossy()
            .into_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = short_name(&name);
        remove_abandoned(&dir, &name);
        let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        static HANDLER: Once = Once::new();
        HANDLER.call_once(|| {
            // Best effort: without a handler Ctrl-C still stops the command, and the
            // output is still not under its final name.
            let _ = ctrlc::set_handler(|| {
                // Held until the exit: a rename into place cannot start after this.
                let pending = pending();
                for temp in pending.iter() {
                    remove(temp);
                }
                failure::note("interrupted: the output was not created");
                std::process::exit(INTERRUPTED);
            });
        });
        let mut pending = pending();
        // A leftover under this process's id is from an earlier process that had it.
        remove(&temp);
        pending.push(temp.clone());
        Ok(Self {
            path: path.to_owned(),
            temp,
            settled: false,
        })
    }

    /// Where to build the output.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Renames the finished output (closed, and flushed by the caller) into place, never
    /// over a path that appeared meanwhile, and syncs the directory.
    ///
    /// # Errors
    /// A failure if the rename fails; if the final name was taken meanwhile, the output is
    /// kept, whole, under its temporary name, which the message gives.
    pub fn commit(mut self) -> Result<(), Failure> {
        let mut pending = pending();
        let renamed = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.temp,
            rustix::fs::CWD,
            &self.path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(std::io::Error::from);
        pending.retain(|p| p != &self.temp);
        drop(pending);
        match renamed {
            Ok(()) => {
                self.settled = true;
                let dir = match self.path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| {
                        Failure::data(format!(
                            "cannot sync directory {}: {}",
                            dir.display(),
                            os_reason(&e)
                        ))
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.settled = true;
                Err(Failure::data(format!(
                    "{} appeared while the output was being made, and was not replaced; \
                     the complete output is in {}",
                    self.path.display(),
                    self.temp.display()
                )))
            }
            Err(e) => Err(Failure::data(format!(
                "cannot rename {} to {}: {}",
                self.temp.display(),
                self.path.display(),
                os_reason(&e)
            ))),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut pending = pending();
        remove(&self.temp);
        pending.retain(|p| p != &self.temp);
    }
}

/// The longest name a directory entry takes on Linux's file systems (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Room the library's own temporary for a stream created under a temporary name needs
/// beyond that name: `.` before it and `.PID.N.tmp` after it (a 20-digit `N`).
const LIBRARY_TEMP: usize = 1 + 1 + 10 + 1 + 20 + 4;

/// The longest temporary name this module makes.
pub const MAX_TEMP: usize = NAME_MAX - LIBRARY_TEMP;

/// Whether the library's temporary for creating a stream at `path` fits in a directory
/// entry; when it does not, the stream is made under a [`Staged`] name and renamed.
pub fn library_temp_fits(path: &Path) -> bool {
    path.file_name()
        .is_none_or(|name| name.len() + LIBRARY_TEMP <= NAME_MAX)
}

/// `name` as it appears in `.NAME.PID.partial`: itself when that fits in [`MAX_TEMP`]
/// bytes, otherwise its first bytes and `~` and a hash of all of it (FNV-1a, the same
/// in every process, so that leftovers are found again).
fn short_name(name: &str) -> String {
    // `.` + NAME + `.` + a process id of at most 10 digits + `.partial`
    let room = MAX_TEMP - (1 + 1 + 10 + ".partial".len());
    if name.len() <= room {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let suffix = format!("~{hash:016x}");
    let mut keep = room - suffix.len();
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", name.get(..keep).unwrap_or_default())
}

/// Removes `.NAME.PID.partial` files and directories of `dir` whose process is gone.
fn remove_abandoned(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".partial"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        // Only what a staged output is: a stream file or a log's directory. A FIFO, a
        // socket, a device or a symbolic link under such a name is not ours to remove.
        let ours = entry
            .file_type()
            .is_ok_and(|kind| kind.is_file() || kind.is_dir());
        if !alive && ours {
            remove(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary name fits, with room for the library's own temporary beside it, for
    /// every name a directory entry takes; a name that already fits is kept; the
    /// shortened name is the same in every process and differs for different names.
    #[test]
    fn temporary_names_fit() {
        let pid = u32::MAX;
        assert_eq!(short_name("sensors.evs"), "sensors.evs");
        for len in [1, 100, 190, 200, 222, 223, 240, 250, 251, 255] {
            for unit in ["k", "\u{e9}", "\u{1f600}"] {
                let name: String = unit.repeat(len / unit.len());
                let short = short_name(&name);
                let temp = format!(".{short}.{pid}.partial");
                assert!(temp.len() <= MAX_TEMP, "{len} {unit}: {}", temp.len());
                assert!(temp.len() + LIBRARY_TEMP <= NAME_MAX);
                assert_eq!(short, short_name(&name), "the same in every run");
                let other = format!("x{}", name.get(unit.len()..).unwrap_or_default());
                if short != name {
                    assert_ne!(short, short_name(&other), "{len} {unit}");
                }
            }
        }
    }
}
