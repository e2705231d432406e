//! The waiting threads: a few threads, each asleep on the wait tickets of many followers
//! at once, that wake the followers' tasks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use evstream::{WaitBell, WaitTicket};

/// How often a thread with parked followers wakes them all even without a writer's wake,
/// so that each can look whether an event can still come (a stream file deleted with no
/// writer left: [`StreamReader::check_abandoned`](evstream::StreamReader::check_abandoned)).
pub(crate) const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The threads of the [global](WaitPool::global) pool.
const GLOBAL_THREADS: usize = 2;

/// Parked followers one thread takes before the pool starts another (one futex entry
/// is the thread's bell; followers of the same segment share an entry, so this bounds
/// the distinct entries too).
const PER_THREAD: usize = WaitTicket::WAIT_ANY_MAX - 1;

/// A small, bounded set of threads that sleep on behalf of async followers.
///
/// A follower with nothing to read takes a [`WaitTicket`] (registered as a waiter on
/// its stream or newest segment, its last look done) and parks it here with its task's
/// waker. One thread sleeps on up to 127 followers' tickets at once (`futex_waitv`), so
/// the writer's publish wakes that thread, which wakes the follower's task: no thread per
/// follower and no polling (but a wake of every parked follower every 2 s, for it to look
/// whether its stream can still grow). A thread starts when the first follower parks with every
/// running thread full, up to the pool's limit; past that, threads take more than 127
/// followers and poll the extra ones every half millisecond. Idle threads sleep with no
/// timeout and take no CPU; they end when the pool and every follower that uses it are
/// dropped (the [global](Self::global) pool's live as long as the process).
///
/// Cost: a wake passes through one more thread than a blocking follower's (the writer
/// wakes the pool's thread, which wakes the task). A woken follower's ticket is renewed
/// before its task is woken, so a follower that keeps up waits again on it at no cost;
/// one that was busy when the next event came takes a new ticket (a registration with
/// its barrier, and an interruption of the pool's thread to add it).
///
/// # Examples
/// ```
/// use evstream_tokio::WaitPool;
///
/// let pool = WaitPool::new(4);
/// assert_eq!(pool.max_threads(), 4);
/// assert_eq!(pool.threads(), 0); // started by the first follower that waits
/// ```
#[derive(Debug, Clone)]
pub struct WaitPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    max_threads: usize,
    waiters: Mutex<Vec<Arc<Waiter>>>,
    next_id: AtomicU64,
}

/// One waiting thread's shared state.
#[derive(Debug, Default)]
struct Waiter {
    bell: WaitBell,
    parked: Mutex<Vec<Parked>>,
    /// No thread serves it (none could be started): its followers are woken at once.
    orphan: bool,
    /// The pool is gone (and so are its followers, which hold it): the thread ends.
    closed: AtomicBool,
}

#[derive(Debug)]
struct Parked {
    id: u64,
    /// The follower's registration; `None` once given up (the follower did not come back
    /// to wait before the next wake), until the follower brings a new one.
    ticket: Option<Arc<WaitTicket>>,
    waker: Waker,
    /// Whether the follower waits on the ticket: it found nothing to read since the last
    /// wake.
    waiting: bool,
}

/// A follower's parked ticket; dropping it takes the ticket back (the thread stops
/// sleeping on it).
#[derive(Debug)]
pub(crate) struct Parking {
    waiter: Arc<Waiter>,
    id: u64,
    /// The waker the follower last parked or waited with (see [`looks`](Self::looks)).
    waker: Waker,
}

impl WaitPool {
    /// A pool of at most `max_threads` threads (at least one).
    pub fn new(max_threads: usize) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                max_threads: max_threads.max(1),
                waiters: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// The pool that followers use unless given another: at most 2 threads, started
    /// when first needed.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<WaitPool> = OnceLock::new();
        GLOBAL.get_or_init(|| Self::new(GLOBAL_THREADS)).clone()
    }

    /// The most threads this pool starts.
    pub fn max_threads(&self) -> usize {
        self.inner.max_threads
    }

    /// The threads started so far.
    pub fn threads(&self) -> usize {
        lock(&self.inner.waiters).len()
    }

    /// Parks `ticket`: `waker` is woken when the ticket is, or when its longest sleep
    /// has passed.
    pub(crate) fn park(&self, ticket: WaitTicket, waker: Waker) -> Parking {
        let waiter = self.pick();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if waiter.orphan {
            // Nothing would wake it: look again at once.
            waker.wake_by_ref();
            return Parking { waiter, id, waker };
        }
        lock(&waiter.parked).push(Parked {
            id,
            ticket: Some(Arc::new(ticket)),
            waker: waker.clone(),
            waiting: true,
        });
        // The thread may be asleep on a set without this ticket.
        waiter.bell.ring();
        Parking { waiter, id, waker }
    }

    /// The thread to park on: the first with room, a new one if none has room and the
    /// limit allows, else the least busy.
    fn pick(&self) -> Arc<Waiter> {
        let mut waiters = lock(&self.inner.waiters);
        let load = |w: &Arc<Waiter>| lock(&w.parked).len();
        if let Some(w) = waiters.iter().find(|w| load(w) < PER_THREAD) {
            return Arc::clone(w);
        }
        if waiters.len() < self.inner.max_threads {
            let waiter = Arc::new(Waiter::default());
            let run = Arc::clone(&waiter);
            let started = std::thread::Builder::new()
                .name("evstream-wait".into())
                .spawn(move || run.serve());
            if started.is_ok() {
                waiters.push(Arc::clone(&waiter));
                return waiter;
            }
        }
        match waiters.iter().min_by_key(|w| load(w)) {
            Some(w) => Arc::clone(w),
            // No thread could be started at all: a waiter without a thread, whose
            // followers are woken at once (they look again and park again).
            None => Arc::new(Waiter {
                orphan: true,
                ..Waiter::default()
            }),
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        for waiter in lock(&self.waiters).iter() {
            waiter.closed.store(true, Ordering::SeqCst);
            waiter.bell.ring();
        }
    }
}

impl Parking {
    /// Called as a poll of the follower begins, with that poll's `waker`, before it
    /// looks: if the follower last parked or waited with another waker (a `next()`
    /// dropped in one task, the follower then polled in another), it waits no more.
    ///
    /// Otherwise a writer's wake during its look would still find it waiting: the thread
    /// would renew its ticket (registered after the look, so deaf to the event that
    /// look missed) and wake the other waker, and the follower would then wait on that
    /// ticket with no wake to come for the event. With the same waker that wake reaches
    /// the polling task, which looks again.
    pub(crate) fn looks(&mut self, waker: &Waker) {
        if self.waker.will_wake(waker) {
            return;
        }
        self.waker = waker.clone();
        if let Some(p) = lock(&self.waiter.parked)
            .iter_mut()
            .find(|p| p.id == self.id)
        {
            p.waiting = false;
        }
    }

    /// Waits again on the parked ticket (renewed by the thread at its last wake, or the
    /// one the follower brought), with `waker`; `false` if there is none to wait on (the
    /// follower should take a new ticket and [`rearm`](Self::rearm)).
    ///
    /// A ticket here was registered before the follower's last look: it brought it
    /// itself, or the thread renewed it before it woke the follower (a renewal during
    /// the look needs the follower waiting then, which [`looks`](Self::looks) rules out
    /// for a poll with another waker than the last wait's).
    pub(crate) fn wait(&mut self, waker: &Waker) -> bool {
        if !self.waker.will_wake(waker) {
            self.waker = waker.clone();
        }
        let mut parked = lock(&self.waiter.parked);
        match parked.iter_mut().find(|p| p.id == self.id) {
            Some(p) if p.ticket.is_some() => {
                if !p.waker.will_wake(waker) {
                    p.waker = waker.clone();
                }
                p.waiting = true;
                true
            }
            _ => false,
        }
    }

    /// Parks a new ticket in place of the one given up.
    pub(crate) fn rearm(&mut self, ticket: WaitTicket, waker: &Waker) {
        if !self.waker.will_wake(waker) {
            self.waker = waker.clone();
        }
        if self.waiter.orphan {
            waker.wake_by_ref();
            return;
        }
        let mut parked = lock(&self.waiter.parked);
        let entry = Parked {
            id: self.id,
            ticket: Some(Arc::new(ticket)),
            waker: waker.clone(),
            waiting: true,
        };
        match parked.iter_mut().find(|p| p.id == self.id) {
            Some(p) => *p = entry,
            None => parked.push(entry),
        }
        drop(parked);
        self.waiter.bell.ring();
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        let mut parked = lock(&self.waiter.parked);
        if let Some(at) = parked.iter().position(|p| p.id == self.id) {
            let had_ticket = parked.swap_remove(at).ticket.is_some();
            drop(parked);
            if had_ticket {
                // So that the thread stops sleeping on it, and the ticket unregisters.
                self.waiter.bell.ring();
            }
        }
    }
}

impl Waiter {
    /// The thread's loop: sleep on every parked ticket and the bell, wake the tasks
    /// whose tickets were woken.
    fn serve(&self) {
        let mut wake: Vec<Waker> = Vec::new();
        // When the parked followers were last all woken to look: kept across sleeps, so
        // that wakes of some followers (a busy writer's) do not put off everyone's look.
        let mut looked = std::time::Instant::now();
        loop {
            let seen = self.bell.value();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            let tickets: Vec<Arc<WaitTicket>> = {
                let mut parked = lock(&self.parked);
                for p in parked.iter_mut() {
                    // Woken before this sleep: wake now (a polling ticket sleeps first).
                    if p.ticket
                        .as_ref()
                        .is_some_and(|t| t.longest_sleep().is_none() && t.is_woken())
                    {
                        woken(p, &mut wake);
                    }
                }
                parked.iter().filter_map(|p| p.ticket.clone()).collect()
            };
            // Outside the lock: a waker may run code that parks again.
            wake.drain(..).for_each(Waker::wake);
            let refs: Vec<&WaitTicket> = tickets.iter().map(Arc::as_ref).collect();
            if refs.is_empty() {
                // Nobody to look for: the next parked follower's look is 2 s after it.
                looked = std::time::Instant::now();
            }
            let limit = (!refs.is_empty()).then(|| LOOK_EVERY.saturating_sub(looked.elapsed()));
            WaitTicket::wait_any(&refs, &self.bell, seen, limit);
            drop(refs);
            let look = looked.elapsed() >= LOOK_EVERY;
            if look {
                looked = std::time::Instant::now();
            }
            for p in lock(&self.parked).iter_mut() {
                let Some(ticket) = &p.ticket else {
                    continue;
                };
                let slept = tickets.iter().any(|t| Arc::ptr_eq(t, ticket));
                if slept && (look || ticket.is_woken() || ticket.longest_sleep().is_some()) {
                    woken(p, &mut wake);
                }
            }
            // Drops the tickets given up or renewed: they unregister.
            drop(tickets);
            wake.drain(..).for_each(Waker::wake);
        }
    }
}

/// A parked follower's ticket was woken: renew it before its task is woken (so that the
/// follower, having read what is new, can wait again on it) if the follower was waiting
/// on it and the writer's wake reaches it; else give it up (a follower busy with what it
/// read is left unregistered: its writer makes no wake calls for it). Its task is woken
/// either way.
fn woken(p: &mut Parked, wake: &mut Vec<Waker>) {
    let renew = p.waiting
        && p.ticket
            .as_ref()
            .is_some_and(|t| t.longest_sleep().is_none());
    p.ticket = if renew {
        p.ticket.as_ref().map(|t| Arc::new(t.renew()))
    } else {
        None
    };
    p.waiting = false;
    wake.push(p.waker.clone());
}

/// Locks `mutex`, through a poisoned lock too (no code holding these locks panics; the
/// data stays consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
