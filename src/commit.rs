//! The group commit shared by the writers that many threads append through
//! ([`SharedLogWriter`](crate::SharedLogWriter),
//! [`SharedStreamWriter`](crate::SharedStreamWriter)): one flush serves every thread
//! waiting for it. Modelled in `tests/loom_group_commit.rs`.

use std::path::Path;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Flushes numbered in the order they start: a call needs the first flush that starts
/// after it began, which covers every append that returned before the call.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<Commit>,
    /// A flush finished.
    committed: Condvar,
}

/// The group commit's state.
#[derive(Debug, Default)]
struct Commit {
    /// Flushes started so far.
    started: u64,
    /// The flushes numbered up to this one have finished.
    finished: u64,
    /// A flush is under way (the one numbered `started`).
    running: bool,
    /// The number of the last flush that failed, if one did, and how.
    failed: Option<(u64, Failure)>,
}

/// How a flush failed, as the threads that shared it are told.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// It could not take the turn: a writer that keeps the file to itself has it. The
    /// writer is not poisoned; the threads that shared the flush get [`Error::Locked`].
    Locked,
    /// Anything else, such as a write-back that failed: [`Error::Poisoned`].
    Poisoned,
}

impl GroupCommit {
    /// Waits until a flush that started after this call began has finished, running
    /// `flush` on this thread if none is under way when one must start.
    ///
    /// # Errors
    /// What `flush` returned, to the thread that ran it; to every other thread that
    /// needed a flush that failed, [`Error::Locked`] naming `path` if it could not take
    /// the turn, [`Error::Poisoned`] naming `path` otherwise.
    pub(crate) fn flush(&self, path: &Path, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        // No code panics while the lock is held: its poison is passed over.
        let mut commit = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The first flush to start after this call began covers it.
        let needed = commit.started + 1;
        loop {
            if commit.finished >= needed {
                return match commit.failed {
                    Some((failed, Failure::Locked)) if failed >= needed => Err(Error::Locked {
                        path: path.to_owned(),
                    }),
                    Some((failed, Failure::Poisoned)) if failed >= needed => Err(Error::Poisoned {
                        path: path.to_owned(),
                    }),
                    _ => Ok(()),
                };
            }
            if !commit.running {
                commit.running = true;
                commit.started += 1;
                let number = commit.started;
                drop(commit);
                let result = flush();
                commit = self.state.lock().unwrap_or_else(|e| e.into_inner());
                commit.running = false;
                commit.finished = number;
                match &result {
                    Ok(()) => {}
                    // The turn, or the file, held by a writer that keeps it to itself
                    // (a lock of one of a log's segments would name the segment).
                    Err(Error::Locked { path: locked }) if locked == path => {
                        commit.failed = Some((number, Failure::Locked));
                    }
                    Err(_) => commit.failed = Some((number, Failure::Poisoned)),
                }
                drop(commit);
                self.committed.notify_all();
                return result;
            }
            commit = self
                .committed
                .wait(commit)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}
