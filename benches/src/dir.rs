//! Where bench files live: [`BenchDir`], and [`Scratch`] files removed whatever happens.

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use evstream::Result;

use crate::io_error;

/// How the directories [`BenchDir::within`] makes are named: this, the process id, a dash,
/// a serial number. An interrupted run's clean-up removes those of its own process.
pub const RUN_DIR_PREFIX: &str = "evstream-bench-";

/// A directory for bench files; removed on drop if this process made it.
#[derive(Debug)]
pub struct BenchDir {
    path: PathBuf,
    owned: bool,
}

impl BenchDir {
    /// Uses `dir` if given (it must exist), else creates a fresh directory under
    /// [`std::env::temp_dir`] that is removed with everything in it on drop.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](evstream::Error::Io) if the directory cannot be created.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            return Ok(Self {
                path: dir.to_owned(),
                owned: false,
            });
        }
        Self::within(&std::env::temp_dir())
    }

    /// Creates a fresh directory in `base` (which must exist), named
    /// [`RUN_DIR_PREFIX`] + this process's id + a serial number so that no other run's
    /// files, even ones a killed run left, can collide with this one's; it is removed
    /// with everything in it on drop, whether the run succeeded or failed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](evstream::Error::Io) if the directory cannot be created.
    pub fn within(base: &Path) -> Result<Self> {
        let path = base.join(format!(
            "{}{}-{}",
            RUN_DIR_PREFIX,
            std::process::id(),
            next_serial()
        ));
        fs::create_dir(&path).map_err(|e| io_error("create directory", &path, e))?;
        Ok(Self { path, owned: true })
    }

    /// Writes back every dirty page of the directory's file system (`syncfs`) and waits
    /// for it, so that the next timed run does not share the disk and the CPU with the
    /// write-back of the runs before it. Untimed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](evstream::Error::Io) if the directory cannot be opened or the sync fails.
    pub fn settle(&self) -> Result<()> {
        let dir = fs::File::open(&self.path).map_err(|e| io_error("open", &self.path, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error("syncfs", &self.path, e.into()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path in the directory that no other call has returned in this process.
    pub fn fresh_file(&self) -> PathBuf {
        self.path.join(format!(
            "bench-{}-{}.evs",
            std::process::id(),
            next_serial()
        ))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Removes a bench file on drop, whatever happened to the run.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
