//! [`Barrier`]: Python's `multiprocessing.Barrier`, with dead-party detection.

#![allow(unsafe_code)] // Resolves the variable-length pid table after the fixed state.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::NonNull;
use std::time::Duration;

use shmproc_shm::sync::{AtomicU32, Ordering};
use shmproc_shm::{Offset, OpenOptions, Segment, SegmentKind, SegmentLayout, TypeSpec};

use crate::error::{BarrierWaitError, SyncError};
use crate::futex::{self, Deadline, SLICE, Wake};
use crate::handle::{Handle, Place, shared_object};
use crate::owner;
use crate::raw::{Acquired, RawLock};

const FILLING: u32 = 0;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// The most parties a barrier may have.
const MAX_PARTIES: u32 = 1 << 16;

/// The fixed part of a barrier's shared state; a table of `parties` pids
/// (`AtomicU32`, the parties now waiting) follows at offset 40.
///
/// # Layout (`repr(C)`, 40 bytes + 4 × parties, align 8)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock: RawLock` | guards every other field (crash-robust) |
/// | 16 | `seq: AtomicU32` | futex word, bumped on every state change |
/// | 20 | `state: AtomicU32` | 0 filling, 2 resetting, 3 broken (anything else reads as broken) |
/// | 24 | `count: AtomicU32` | parties waiting in this round (`< parties`) |
/// | 28 | `parties: AtomicU32` | copy of the header's capacity, checked at open |
/// | 32 | `generation: AtomicU32` | rounds completed (wrapping) |
/// | 36 | `reserved: AtomicU32` | 0 |
/// | 40 | `pids: [AtomicU32; parties]` | pids of the waiting parties, `count` valid |
#[repr(C)]
pub(crate) struct RawBarrier {
    lock: RawLock,
    seq: AtomicU32,
    state: AtomicU32,
    count: AtomicU32,
    parties: AtomicU32,
    generation: AtomicU32,
    reserved: AtomicU32,
}

shmproc_shm::shm_safe! {
    RawBarrier (size 40, align 8) {
        lock @ 0: RawLock,
        seq @ 16: AtomicU32,
        state @ 20: AtomicU32,
        count @ 24: AtomicU32,
        parties @ 28: AtomicU32,
        generation @ 32: AtomicU32,
        reserved @ 36: AtomicU32,
    }
}

type Action = Box<dyn Fn() + Send + Sync>;

/// An interprocess barrier (Python's `multiprocessing.Barrier`).
///
/// `parties` processes (or threads) call [`wait`](Self::wait); when the last
/// arrives, every one of them returns, each with a distinct index in
/// `0..parties`. The last to arrive first runs the action of **its own
/// handle** ([`with_action`](Self::with_action)), if any: a handle's action is
/// process-local and cannot travel to other processes.
///
/// The barrier breaks ([`BarrierWaitError::Broken`] for every waiter and for
/// later callers, until [`reset`](Self::reset)) when it is
/// [`abort`](Self::abort)ed, reset while parties wait, a wait times out, the
/// action panics, or **a waiting party dies**: waiters check each other's
/// pids every 50 ms.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let b = shmproc_sync::Barrier::new(1)?;
/// assert_eq!(b.wait()?, 0); // one party: never blocks
/// b.abort();
/// assert!(b.broken());
/// b.reset();
/// assert!(!b.broken());
/// # Ok(()) }
/// ```
pub struct Barrier {
    h: Handle<RawBarrier>,
    pids: NonNull<AtomicU32>,
    parties: u32,
    action: Option<Action>,
}

// SAFETY: `pids` points to atomics inside the mapping owned by `h` (Send +
// Sync); the action is Send + Sync.
unsafe impl Send for Barrier {}
// SAFETY: as above.
unsafe impl Sync for Barrier {}

/// Holds the barrier's internal lock.
struct Inner<'a> {
    b: &'a Barrier,
}

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        self.b.st().lock.release_raw();
    }
}

impl Barrier {
    const WHAT: &'static str = "Barrier";

    fn payload(parties: u64) -> Option<u64> {
        parties
            .checked_mul(4)?
            .checked_add(size_of::<RawBarrier>() as u64)
    }

    fn create_at(place: Place<'_>, parties: u32) -> Result<Self, SyncError> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(SyncError::invalid(
                Self::WHAT,
                format!("a barrier needs 1 to {MAX_PARTIES} parties, not {parties}"),
            ));
        }
        let layout = SegmentLayout::new(
            SegmentKind::BARRIER,
            TypeSpec::of::<RawBarrier>().with_capacity(u64::from(parties)),
            Self::payload(u64::from(parties)).expect("small"),
        );
        let h = Handle::create(place, Self::WHAT, layout, |s: &RawBarrier, _| {
            s.parties.store(parties, Ordering::Relaxed);
            Ok(())
        })?;
        Self::from_handle(h)
    }

    fn from_handle(h: Handle<RawBarrier>) -> Result<Self, SyncError> {
        let seg: &Segment = h.segment();
        let corrupt = |what, found| SyncError::Corrupt {
            name: seg.label().to_owned(),
            what,
            found,
        };
        let cap = seg.capacity();
        let parties = u32::try_from(cap)
            .ok()
            .filter(|&p| p > 0 && p <= MAX_PARTIES)
            .ok_or_else(|| corrupt("the number of parties", cap))?;
        let stored = h.state().parties.load(Ordering::Relaxed);
        if stored != parties {
            return Err(corrupt("the stored number of parties", u64::from(stored)));
        }
        let pids = seg
            .resolve_slice(
                Offset::<AtomicU32>::in_payload(size_of::<RawBarrier>() as u64),
                parties as usize,
            )
            .map_err(|_| corrupt("the segment length", seg.len() as u64))?
            .cast::<AtomicU32>();
        Ok(Self {
            h,
            pids,
            parties,
            action: None,
        })
    }

    /// A new barrier for `parties` parties, anonymous.
    ///
    /// # Errors
    /// [`SyncError::InvalidArgument`] for 0 or more than 65536 parties;
    /// [`SyncError::Segment`].
    pub fn new(parties: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous, parties)
    }

    /// A new barrier for `parties` parties, named `name`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn create(name: &str, parties: u32) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name), parties)
    }

    fn options() -> OpenOptions {
        OpenOptions::new(SegmentKind::BARRIER, TypeSpec::of::<RawBarrier>())
            .payload_len(Self::payload)
    }

    fn from_source(source: shmproc_shm::Source<'_>) -> Result<Self, SyncError> {
        Self::from_handle(Handle::open(source, Self::WHAT, Self::options())?)
    }

    /// Sets this handle's action, run by this process when it is the last
    /// party to arrive, before any party is released. If it panics, the
    /// barrier breaks and the panic continues in the caller of `wait`.
    #[must_use]
    pub fn with_action(mut self, action: impl Fn() + Send + Sync + 'static) -> Self {
        self.action = Some(Box::new(action));
        self
    }

    fn st(&self) -> &RawBarrier {
        self.h.state()
    }

    fn pid_slot(&self, i: u32) -> &AtomicU32 {
        assert!(i < self.parties, "slot index checked by callers");
        // SAFETY: `i < parties`, and `pids .. pids + parties` was resolved
        // inside the mapping at open (bounds and alignment checked).
        let p = unsafe { self.pids.as_ptr().add(i as usize) };
        // SAFETY: in bounds and aligned; AtomicU32 is valid for any bits and
        // shared access across processes is what it is for.
        unsafe { &*p }
    }

    /// `count`, clamped to the local `parties` (never trust shared memory).
    fn count(&self) -> u32 {
        self.st().count.load(Ordering::Relaxed).min(self.parties)
    }

    fn bump(&self) {
        self.st().seq.fetch_add(1, Ordering::Relaxed);
        futex::wake(&self.st().seq, u32::MAX);
    }

    fn set_state(&self, s: u32) {
        self.st().state.store(s, Ordering::Relaxed);
        self.bump();
    }

    fn state(&self) -> u32 {
        match self.st().state.load(Ordering::Relaxed) {
            s @ (FILLING | RESETTING) => s,
            _ => BROKEN,
        }
    }

    /// Takes the internal lock; a dead holder breaks the barrier.
    fn inner(&self) -> Inner<'_> {
        let a = self.st().lock.acquire_until(Deadline::NEVER);
        let g = Inner { b: self };
        if let Some(Acquired::FromDead(_)) = a {
            // The dead process was mid-update: nothing in here can be trusted.
            self.reap_dead();
            self.st().count.store(self.count(), Ordering::Relaxed);
            self.set_state(BROKEN);
        }
        g
    }

    /// Removes dead pids from the waiting table (lock held). Returns whether
    /// any was removed; then a filling barrier breaks, and a resetting one
    /// with nobody left finishes resetting.
    fn reap_dead(&self) -> bool {
        let mut n = self.count();
        let mut removed = false;
        let mut i = 0;
        while i < n {
            let pid = self.pid_slot(i).load(Ordering::Relaxed) & owner::PID_MASK;
            if owner::owner_alive(pid, 0) {
                i += 1;
            } else {
                n -= 1;
                let last = self.pid_slot(n).load(Ordering::Relaxed);
                self.pid_slot(i).store(last, Ordering::Relaxed);
                removed = true;
            }
        }
        if removed {
            self.st().count.store(n, Ordering::Relaxed);
            match self.state() {
                FILLING => self.set_state(BROKEN),
                RESETTING if n == 0 => self.set_state(FILLING),
                _ => self.bump(),
            }
        }
        removed
    }

    /// Removes one entry for this process and leaves (lock held).
    fn leave(&self) {
        let me = owner::my_pid();
        let n = self.count();
        if let Some(i) = (0..n).find(|&i| self.pid_slot(i).load(Ordering::Relaxed) == me) {
            let last = self.pid_slot(n - 1).load(Ordering::Relaxed);
            self.pid_slot(i).store(last, Ordering::Relaxed);
        }
        let n = n.saturating_sub(1);
        self.st().count.store(n, Ordering::Relaxed);
        if n == 0 && self.state() == RESETTING {
            self.set_state(FILLING);
        }
    }

    /// Sleeps on `seq` with the internal lock released, then re-takes it.
    fn sleep<'a>(&'a self, g: Inner<'a>, deadline: Deadline) -> (Inner<'a>, bool) {
        let seq = self.st().seq.load(Ordering::Relaxed);
        drop(g);
        let elapsed = match deadline.slice(SLICE) {
            Some(slice) => futex::wait(&self.st().seq, seq, slice) == Wake::SliceElapsed,
            None => false,
        };
        (self.inner(), elapsed)
    }

    fn wait_until(&self, deadline: Deadline, try_only: bool) -> Result<u32, BarrierWaitError> {
        let mut g = self.inner();
        // New arrivals wait for a reset in progress to finish.
        while self.state() == RESETTING {
            if try_only {
                return Err(BarrierWaitError::WouldBlock);
            }
            if deadline.expired() {
                return Err(BarrierWaitError::Timeout);
            }
            let (g2, elapsed) = self.sleep(g, deadline);
            g = g2;
            if elapsed {
                self.reap_dead();
            }
        }
        if self.state() == BROKEN {
            return Err(BarrierWaitError::Broken);
        }
        let idx = self.count();
        if idx >= self.parties {
            // Only a corrupting writer gets here.
            self.set_state(BROKEN);
            return Err(BarrierWaitError::Broken);
        }
        if idx + 1 == self.parties {
            if let Some(action) = &self.action {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(action)) {
                    self.set_state(BROKEN);
                    drop(g);
                    resume_unwind(panic);
                }
            }
            let st = self.st();
            st.count.store(0, Ordering::Relaxed);
            st.generation.fetch_add(1, Ordering::Relaxed);
            self.bump();
            return Ok(idx);
        }
        if try_only {
            return Err(BarrierWaitError::WouldBlock);
        }
        self.pid_slot(idx).store(owner::my_pid(), Ordering::Relaxed);
        self.st().count.store(idx + 1, Ordering::Relaxed);
        let generation = self.st().generation.load(Ordering::Relaxed);
        loop {
            let (g2, elapsed) = self.sleep(g, deadline);
            g = g2;
            if self.st().generation.load(Ordering::Relaxed) != generation {
                return Ok(idx);
            }
            if self.state() != FILLING {
                self.leave();
                return Err(BarrierWaitError::Broken);
            }
            if elapsed && self.reap_dead() {
                continue; // now broken: leave on the next turn
            }
            if deadline.expired() {
                // As in Python: a timeout breaks the barrier for everyone.
                self.set_state(BROKEN);
                self.leave();
                return Err(BarrierWaitError::Timeout);
            }
        }
    }

    /// Waits for all parties; returns this party's index in `0..parties`.
    ///
    /// # Errors
    /// [`BarrierWaitError::Broken`].
    ///
    /// # Panics
    /// Resumes a panic of the action (the barrier is broken first).
    pub fn wait(&self) -> Result<u32, BarrierWaitError> {
        self.wait_until(Deadline::NEVER, false)
    }

    /// As [`wait`](Self::wait), giving up after `timeout` (which breaks the
    /// barrier, as in Python).
    ///
    /// # Errors
    /// [`BarrierWaitError::Timeout`] or [`BarrierWaitError::Broken`].
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierWaitError> {
        self.wait_until(Deadline::after(timeout), false)
    }

    /// As [`wait_timeout`](Self::wait_timeout), giving up at `deadline`.
    ///
    /// # Errors
    /// [`BarrierWaitError::Timeout`] or [`BarrierWaitError::Broken`].
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_deadline(&self, deadline: std::time::Instant) -> Result<u32, BarrierWaitError> {
        self.wait_until(Deadline::at(deadline), false)
    }

    /// Arrives only if this completes the round (every other party waits).
    ///
    /// # Errors
    /// [`BarrierWaitError::WouldBlock`] (nothing changed), or
    /// [`BarrierWaitError::Broken`].
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn try_wait(&self) -> Result<u32, BarrierWaitError> {
        self.wait_until(Deadline::after(Duration::ZERO), true)
    }

    /// Returns the barrier to its initial state; parties waiting now get
    /// [`BarrierWaitError::Broken`].
    pub fn reset(&self) {
        let _g = self.inner();
        self.reap_dead();
        if self.count() > 0 {
            self.set_state(RESETTING);
        } else {
            self.set_state(FILLING);
        }
    }

    /// Breaks the barrier: waiting and later parties get
    /// [`BarrierWaitError::Broken`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        let _g = self.inner();
        self.set_state(BROKEN);
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        if self.state() == FILLING {
            self.count()
        } else {
            0
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state() == BROKEN
    }
}

shared_object!(Barrier, "Barrier");

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("segment", &self.h)
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .field("has_action", &self.action.is_some())
            .finish()
    }
}
