//! The futex layer: deadlines, bounded sleeps on shared futex words, wakes.
//!
//! Every blocking wait in this crate is a loop of *bounded* sleeps
//! ([`SLICE`] at most) so that a waiter regularly re-checks the liveness of
//! whoever it waits for: a peer killed by `SIGKILL` never wakes anybody.
//! Callers spin briefly ([`SPIN_LIMIT`]) before sleeping: a futex wake costs
//! about 100 cache-line hand-offs on the reference machine.
//!
//! Wakers only make a system call when a waiter registered itself (a waiters
//! bit or a waiters count, per primitive).
//!
//! Under `cfg(shmproc_loom)` the wait and the wake are the model's futex
//! (`crate::model`): a waiter blocks until its word changes, and no wake
//! the real futex would deliver is lost, so a wake-up the protocol forgot
//! is a deadlock that loom reports.
//!
//! Public (hidden from the docs) so that `shmproc-channel` blocks the same way.

use std::time::{Duration, Instant};

use shmproc_shm::sync::AtomicU32;

/// The longest a waiter sleeps before re-checking the peer it waits for.
/// Bounds the time to notice a dead lock owner (one slice plus a `/proc` read).
pub const SLICE: Duration = Duration::from_millis(50);

/// Spin iterations before a waiter registers itself and sleeps.
#[cfg(not(any(shmproc_loom, fuzzing)))]
pub const SPIN_LIMIT: u32 = 100;
/// Loom: one spin, so the models reach the sleeping path without exploding.
#[cfg(shmproc_loom)]
pub const SPIN_LIMIT: u32 = 1;
/// Fuzz builds (`cfg(fuzzing)`): every target is one thread of one process,
/// so what a spin waits for (a peer's publish, release or lease exit) never
/// happens while it spins: a state that says "busy" is a scribble, and
/// rounds 2 to 100 would repeat round 1 on the same bytes (under ASan and
/// libFuzzer's comparison tracing, 100 rounds of the claim protocol were
/// most of `queue_corrupt`'s time). Two keep every kind of round reachable:
/// the first attempt, a retry (`_again`), and the last one, which checks
/// liveness. As `STUCK_LIMIT` and `LEASE_SPINS` in shmproc-channel's ring.
#[cfg(all(fuzzing, not(shmproc_loom)))]
pub const SPIN_LIMIT: u32 = 2;

/// How long a waiter on a channel (a `Queue` or a `Pipe`) spins before it
/// registers and sleeps: about a futex wake-up round trip on the reference
/// machine (5-6 us), so that the answer to a message that had to wake its
/// receiver is caught without a second sleep. Bounded in time, not in
/// iterations: a `pause` lasts from a few cycles to over a hundred,
/// depending on the CPU, and a queue attempt costs more than a pipe check.
pub const SPIN_TIME: Duration = Duration::from_micros(10);

/// The spinning phase of a channel wait: at least [`SPIN_LIMIT`] spins,
/// and until [`SPIN_TIME`] has passed.
#[derive(Debug)]
pub struct Spin {
    n: u32,
    since: Option<Instant>,
    over: bool,
    /// `Some`: an adaptive phase of this long (see [`Spin::with_budget`]).
    budget: Option<Duration>,
}

impl Default for Spin {
    fn default() -> Self {
        Self::new()
    }
}

impl Spin {
    /// A wait that has not spun yet.
    pub fn new() -> Self {
        Spin {
            n: 0,
            since: None,
            over: false,
            budget: None,
        }
    }

    /// A wait that spins for `budget` (and at least [`ADAPTIVE_MIN_SPINS`]
    /// spins) instead of [`SPIN_TIME`]: an adaptive waiter's phase (see
    /// [`SpinBudget`]).
    pub fn with_budget(budget: Duration) -> Self {
        Spin {
            n: 0,
            since: None,
            over: false,
            budget: Some(budget),
        }
    }

    /// When the clock was first read (the 16th spin), if it was: the start
    /// of the wait, give or take 16 spins.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Counts one more spin; `false` once the spinning phase is over. The
    /// clock is first read at the 16th spin (a wait that ends sooner reads
    /// none), then every 16 spins; the phase ends once [`SPIN_TIME`] has
    /// passed since that first read and [`SPIN_LIMIT`] spins were made.
    /// Under loom: after [`SPIN_LIMIT`] spins (no clock).
    #[inline]
    pub fn more(&mut self) -> bool {
        self.n = self.n.saturating_add(1);
        // Fuzz builds: no clock either; a spin there only repeats the
        // same look (see the fuzz build's `SPIN_LIMIT`), so SPIN_TIME of
        // it would be tens of identical attempts.
        if cfg!(any(shmproc_loom, fuzzing)) {
            return self.n < SPIN_LIMIT;
        }
        if !self.over && self.n % 16 == 0 {
            let start = *self.since.get_or_insert_with(Instant::now);
            self.over = match self.budget {
                None => self.n >= SPIN_LIMIT && start.elapsed() >= SPIN_TIME,
                Some(b) => self.n >= ADAPTIVE_MIN_SPINS && start.elapsed() >= b,
            };
        }
        !self.over
    }

    /// Spins so far.
    pub fn count(&self) -> u32 {
        self.n
    }
}

/// The fewest spins of an adaptive wait ([`Spin::with_budget`]).
pub const ADAPTIVE_MIN_SPINS: u32 = 16;

/// The shortest spin an adaptive waiter falls back to after its spins were
/// in vain: about a futex wake's system call, so a waiter on a slow peer
/// pays little more than the sleep itself.
pub const SPIN_TIME_MIN: Duration = Duration::from_micros(1);

/// A wait that slept and lasted longer than this was on a slow peer: its
/// spin was in vain ([`SpinBudget`]).
pub const LONG_WAIT: Duration = Duration::from_micros(50);

/// An adaptive spin budget, learned from a waiter's recent waits (one per
/// handle and side, process-local; a heuristic with no part in
/// correctness). It starts at [`SPIN_TIME`]. A wait that ended while
/// spinning, or that slept but ended within [`LONG_WAIT`] of its start,
/// doubles it back towards `SPIN_TIME`; a wait that lasted longer halves
/// it, down to [`SPIN_TIME_MIN`]. So a consumer fed back to back keeps
/// spinning (and its latency), and one fed every 100 us stops burning
/// 10 us per message. `LONG_WAIT` is well above a wake-up's own latency
/// (6 to 30 us here): with `2 * SPIN_TIME` as the line, a waiter whose
/// wake-ups took longer than 20 us stayed at the short spin, sleeping on
/// every back-to-back message (a ByteQueue ping-pong at 20 us one way
/// instead of under 1 us).
#[derive(Debug)]
pub struct SpinBudget {
    ns: std::sync::atomic::AtomicU32,
}

impl Default for SpinBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl SpinBudget {
    const MAX: u32 = SPIN_TIME.as_nanos() as u32;
    const MIN: u32 = SPIN_TIME_MIN.as_nanos() as u32;

    /// A budget of [`SPIN_TIME`].
    pub fn new() -> Self {
        Self {
            ns: std::sync::atomic::AtomicU32::new(Self::MAX),
        }
    }

    /// A spinning phase of the current budget.
    #[inline]
    pub fn spin(&self) -> Spin {
        // Relaxed: a process-local hint, ordered with nothing.
        let ns = self.ns.load(std::sync::atomic::Ordering::Relaxed);
        Spin::with_budget(Duration::from_nanos(u64::from(ns)))
    }

    /// The wait ended while spinning.
    #[inline]
    pub fn caught(&self) {
        // Relaxed: as in `spin`.
        let ns = self.ns.load(std::sync::atomic::Ordering::Relaxed);
        if ns < Self::MAX {
            self.set(ns.saturating_mul(2));
        }
    }

    /// The wait ended after sleeping, `waited` after it began.
    pub fn slept(&self, waited: Duration) {
        // Relaxed: as in `spin`.
        let ns = self.ns.load(std::sync::atomic::Ordering::Relaxed);
        if waited <= LONG_WAIT {
            self.set(ns.saturating_mul(2));
        } else {
            self.set(ns / 2);
        }
    }

    /// The budget now (a diagnostic).
    pub fn current(&self) -> Duration {
        // Relaxed: as in `spin`.
        Duration::from_nanos(u64::from(
            self.ns.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    fn set(&self, ns: u32) {
        // Relaxed: as in `spin`.
        self.ns.store(
            ns.clamp(Self::MIN, Self::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Spin iterations of a lock waiter before it registers and sleeps.
///
/// None: a waiter that spins on the lock word keeps pulling the holder's
/// cache line away, and with a small value in the lock's line (`Value`)
/// every spin read also takes the data the holder is writing. Measured with
/// `benches/sync_compare` (two processes, 1M locked increments each, 2 CPUs),
/// as a ratio to a process-shared pthread mutex in the same run: 1000 spins
/// 0.66x, 100 spins 0.77x, 10 spins 1.05x, no spin 1.05x (an earlier
/// session); under SCHED_FIFO on a shared L3, seven paired runs, 10 spins
/// against none: `Value` 0.84-0.99x against 1.32-1.44x, `Lock` 0.82-1.00x
/// against 0.98-1.01x. glibc's default mutex does not spin either.
#[cfg(not(shmproc_loom))]
pub const LOCK_SPIN_LIMIT: u32 = 0;
/// Loom: see [`SPIN_LIMIT`].
#[cfg(shmproc_loom)]
pub const LOCK_SPIN_LIMIT: u32 = 1;

/// When a blocking call gives up: never, or at an instant.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// Wait forever.
    pub const NEVER: Deadline = Deadline(None);

    /// Give up `timeout` from now (forever when that overflows `Instant`).
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Give up at `deadline` (a `_deadline` form's argument; an instant in
    /// the past: at once).
    pub fn at(deadline: Instant) -> Self {
        Deadline(Some(deadline))
    }

    /// The next sleep: the time left, capped at `max`; `None` once expired.
    pub fn slice(&self, max: Duration) -> Option<Duration> {
        match self.0 {
            None => Some(max),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    None
                } else {
                    Some(left.min(max))
                }
            }
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.0.is_some_and(|d| Instant::now() >= d)
    }
}

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken, interrupted, or the word had already changed: re-check.
    Woken,
    /// The whole slice passed with nobody waking us: a good time to check
    /// that the peer is alive.
    SliceElapsed,
}

/// Sleeps while `word == expected`, for at most `slice`.
#[cfg(not(shmproc_loom))]
pub fn wait(word: &AtomicU32, expected: u32, slice: Duration) -> Wake {
    match shmproc_shm::os::futex_wait(word, expected, Some(slice)) {
        shmproc_shm::os::FutexWait::TimedOut => Wake::SliceElapsed,
        _ => Wake::Woken,
    }
}

/// Loom: the model's futex (`crate::model::futex_wait`): blocks until the
/// word changes (or, in a model of a death, times out at once).
#[cfg(shmproc_loom)]
pub fn wait(word: &AtomicU32, expected: u32, _slice: Duration) -> Wake {
    crate::model::futex_wait(word, expected)
}

/// Wakes up to `n` waiters sleeping on `word`, in any process; returns how
/// many it woke (0 also when the call failed).
#[cfg(not(shmproc_loom))]
#[inline]
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    shmproc_shm::os::futex_wake(word, n)
}

/// Loom: the model's futex wake (every waiter re-checks its word).
#[cfg(shmproc_loom)]
#[inline]
pub fn wake(_word: &AtomicU32, _n: u32) -> usize {
    crate::model::futex_wake();
    0
}
