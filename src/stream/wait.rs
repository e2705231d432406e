//! Waiting for many followers from one thread: the wait ticket a follower takes instead
//! of sleeping itself, and the bell that interrupts a thread asleep on many tickets.
//!
//! A blocking follower ([`Follow`](crate::Follow), [`LogIter`](crate::LogIter)) sleeps on
//! its stream's futex in its own thread (`docs/FORMAT.md`, "Waking followers"). An async
//! runtime cannot register a futex with its reactor, so an async follower hands the sleep
//! to a few threads that each sleep on many streams at once: it takes a [`WaitTicket`]
//! (steps 1 to 3 of the protocol: register as a waiter, load the wake sequence, take the
//! last look), and a thread sleeps on many tickets with [`WaitTicket::wait_any`]
//! (step 4, one `futex_waitv` call), interrupted by a [`WaitBell`] when its set changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys::{self, WaitMap};

/// How long a ticket that cannot sleep on the writer's wake may wait before its follower
/// looks again: one whose stream's wait words could not be mapped (no write permission,
/// or not Linux), so it polls.
const POLL: Duration = Duration::from_micros(500);

/// How long a ticket whose registration could not make the barrier on the writers' CPUs
/// (a sandbox that forbids `membarrier` to this process alone) may wait: a writer that
/// publishes with only a compiler fence may miss it.
const UNFENCED: Duration = Duration::from_millis(10);

/// A follower's registration as a waiter on a stream (for a log, its newest segment),
/// taken after it found nothing to read, with the last look done: a writer's publish,
/// seal or roll from then on changes the ticket's wake sequence and wakes whoever sleeps
/// on it.
///
/// Take one with [`StreamReader::wait_ticket`](crate::StreamReader::wait_ticket) or
/// [`LogIter::wait_ticket`](crate::LogIter::wait_ticket); sleep on one with
/// [`wait`](Self::wait) or on many from one thread with [`wait_any`](Self::wait_any).
/// Dropping it unregisters the waiter; a ticket is `Send`, so the thread that sleeps need
/// not be the one that took it. It keeps the page of the stream's wait words mapped, not
/// the stream's events, and holds the stream's reader-presence lock as a reader does (so
/// a log does not recycle a segment a ticket is registered on).
///
/// After a wake (or a spurious one), the follower looks again, with `try_next`, and takes
/// a new ticket if it still has nothing to read.
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// # fn main() -> evstream::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("events.evs");
/// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
/// let reader = evstream::StreamReader::open(&path)?;
/// let ticket = reader.wait_ticket(reader.write_offset()).expect("nothing to read yet");
/// assert!(!ticket.is_woken());
/// writer.append(1, b"hello")?; // the writer sees the registered waiter and wakes it
/// ticket.wait(Some(Duration::from_secs(5)));
/// assert!(ticket.is_woken());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WaitTicket {
    /// The stream's wait words, `None` where they cannot be mapped (the ticket polls).
    words: Option<Arc<WaitMap>>,
    /// The wake sequence loaded after registering.
    seen: u32,
    /// Whether the registration made the barrier on the writers' CPUs.
    barrier: bool,
}

impl WaitTicket {
    /// Registers on `map` (if any) and takes the last look, `ready`; `None` if it found
    /// something to do.
    pub(crate) fn take(map: Option<Arc<WaitMap>>, ready: impl FnOnce() -> bool) -> Option<Self> {
        let Some(map) = map else {
            return (!ready()).then_some(Self {
                words: None,
                seen: 0,
                barrier: false,
            });
        };
        let (seen, barrier) = map.words().map_or((0, false), |w| w.register());
        // Built before the last look, so that dropping it unregisters in every case.
        let ticket = Self {
            words: Some(map),
            seen,
            barrier,
        };
        (!ready()).then_some(ticket)
    }

    /// Whether the ticket's wake sequence changed since it was taken (a writer published,
    /// sealed or rolled and woke its followers), or the ticket polls: either way, its
    /// follower should look again.
    pub fn is_woken(&self) -> bool {
        self.word()
            .is_none_or(|word| word.load(Ordering::SeqCst) != self.seen)
    }

    /// A new ticket on the same stream, registered while this one still is, with the
    /// wake sequence as of now: a publish, seal or roll after this call wakes it.
    ///
    /// For a thread that sleeps for followers: when a ticket is woken, renewing it before
    /// waking its follower keeps the follower registered across the wake, so a follower
    /// that then reads what was published and finds nothing more can wait on the renewed
    /// ticket, without a registration of its own (whose barrier is a system call) and
    /// without interrupting the sleeping thread to add it. Since the registration never
    /// lapses, the renewal costs two atomic operations. The old ticket unregisters when
    /// dropped, as usual.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("events.evs");
    /// let mut writer = evstream::StreamWriter::create(&path, 1 << 20)?;
    /// let reader = evstream::StreamReader::open(&path)?;
    /// let ticket = reader.wait_ticket(reader.write_offset()).expect("nothing to read yet");
    /// writer.append(1, b"one")?;
    /// assert!(ticket.is_woken());
    /// let renewed = ticket.renew();
    /// drop(ticket);
    /// assert!(!renewed.is_woken());
    /// writer.append(2, b"two")?;
    /// renewed.wait(Some(Duration::from_secs(5)));
    /// assert!(renewed.is_woken());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn renew(&self) -> WaitTicket {
        let seen = self
            .words
            .as_ref()
            .and_then(|m| m.words())
            .map_or(0, |w| w.register_again());
        Self {
            words: self.words.clone(),
            seen,
            barrier: self.barrier,
        }
    }

    /// The longest a sleep on this ticket may last before its follower must look again
    /// even without a wake: `None` for a ticket a writer's wake always reaches; half a
    /// millisecond where the stream's wait words could not be mapped (without write
    /// permission on the file, or elsewhere than Linux: the follower polls); 10 ms where
    /// the barrier on the writers' CPUs could not be made.
    pub fn longest_sleep(&self) -> Option<Duration> {
        match (&self.words, self.barrier) {
            (None, _) => Some(POLL),
            (Some(_), true) => None,
            (Some(_), false) => Some(UNFENCED),
        }
    }

    /// Sleeps until the writer wakes this ticket, `timeout` passes (`None`: no limit, but
    /// never past [`longest_sleep`](Self::longest_sleep)), or a spurious wake.
    pub fn wait(&self, timeout: Option<Duration>) {
        let timeout = shorter(timeout, self.longest_sleep());
        match self.word() {
            Some(word) => {
                sys::futex_wait_any(&[(word, self.seen)], timeout);
            }
            None => std::thread::sleep(timeout.unwrap_or(POLL)),
        }
    }

    /// Sleeps until the writer of any of `tickets` wakes it, `bell` is
    /// [rung](WaitBell::ring) (its value is no longer `bell_seen`), `timeout` passes
    /// (`None`: no limit, but never past any ticket's
    /// [`longest_sleep`](Self::longest_sleep)), or a spurious wake: one thread asleep on
    /// many streams. Afterwards, [`is_woken`](Self::is_woken) tells which to look at.
    ///
    /// Tickets taken through the same reader at the same wake sequence share one futex
    /// entry.
    /// At most [`WAIT_ANY_MAX`](Self::WAIT_ANY_MAX) distinct entries fit in one sleep, the
    /// bell among them; with more, the sleep lasts at most half a millisecond (the extra
    /// tickets are polled).
    ///
    /// # Platform-specific behavior
    /// Sleeping on many futexes at once is `futex_waitv` (Linux 5.16 and later). Where it
    /// is missing, this returns after at most half a millisecond: the caller polls.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use evstream::{WaitBell, WaitTicket};
    ///
    /// # fn main() -> evstream::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut writers = Vec::new();
    /// let mut readers = Vec::new();
    /// for name in ["a.evs", "b.evs"] {
    ///     writers.push(evstream::StreamWriter::create(dir.path().join(name), 1 << 20)?);
    ///     readers.push(evstream::StreamReader::open(dir.path().join(name))?);
    /// }
    /// let tickets: Vec<WaitTicket> =
    ///     readers.iter().filter_map(|r| r.wait_ticket(r.write_offset())).collect();
    /// let bell = WaitBell::new();
    /// writers[1].append(1, b"to b")?;
    /// let refs: Vec<&WaitTicket> = tickets.iter().collect();
    /// WaitTicket::wait_any(&refs, &bell, bell.value(), Some(Duration::from_secs(5)));
    /// assert!(!tickets[0].is_woken());
    /// assert!(tickets[1].is_woken());
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_any(
        tickets: &[&WaitTicket],
        bell: &WaitBell,
        bell_seen: u32,
        timeout: Option<Duration>,
    ) {
        let mut words: Vec<(&AtomicU32, u32)> = Vec::with_capacity(tickets.len() + 1);
        words.push((&bell.word, bell_seen));
        let mut limit = timeout;
        for ticket in tickets {
            limit = shorter(limit, ticket.longest_sleep());
            let Some(word) = ticket.word() else {
                continue;
            };
            if !words
                .iter()
                .any(|(w, seen)| std::ptr::eq(*w, word) && *seen == ticket.seen)
            {
                words.push((word, ticket.seen));
            }
        }
        if words.len() > Self::WAIT_ANY_MAX {
            limit = shorter(limit, Some(POLL));
        }
        sys::futex_wait_any(&words, limit);
    }

    /// The most distinct futex entries one [`wait_any`](Self::wait_any) sleeps on, the
    /// bell's included (the kernel's `FUTEX_WAITV_MAX`).
    pub const WAIT_ANY_MAX: usize = sys::WAIT_ANY_MAX;

    fn word(&self) -> Option<&AtomicU32> {
        self.words.as_ref()?.words().map(|w| w.seq())
    }
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if let Some(words) = self.words.as_ref().and_then(|m| m.words()) {
            words.unregister();
        }
    }
}

/// The shorter of two optional limits (`None`: no limit).
fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Interrupts a thread asleep in [`WaitTicket::wait_any`] from another thread: for
/// example when a follower adds a ticket to the set it sleeps on, or gives one up.
///
/// The sleeper loads [`value`](Self::value) before it decides what to sleep on; a
/// [`ring`](Self::ring) after that load ends the sleep, or keeps it from starting.
#[derive(Debug, Default)]
pub struct WaitBell {
    word: AtomicU32,
}

impl WaitBell {
    /// A new bell.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bell's value now, to pass to [`WaitTicket::wait_any`].
    pub fn value(&self) -> u32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Changes the bell's value and wakes every thread asleep on it.
    pub fn ring(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_all(&self.word);
    }
}
