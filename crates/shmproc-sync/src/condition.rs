//! [`Condition`]: a condition variable over an [`RLock`](crate::RLock) or a
//! [`Lock`](crate::Lock)-style lock, in one segment.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use shmproc_shm::SegmentKind;
use shmproc_shm::sync::{AtomicU32, Ordering};

use crate::error::{LockResult, NotifyError, OwnerDied, ReleaseError, SyncError};
use crate::futex::{self, Deadline, SLICE, Wake};
use crate::handle::{Handle, Place, fixed_layout, fixed_options, shared_object};
use crate::owner;
use crate::raw::{Acquired, RawLock, RawRLock, acquire_forms};

/// The shared state of a [`Condition`].
///
/// # Layout (`repr(C)`, 40 bytes, align 8)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock: RawRLock` | the condition's lock (used non-recursively when `recursive == 0`) |
/// | 24 | `seq: AtomicU32` | futex word, bumped by every notify that signals someone |
/// | 28 | `waiting: AtomicU32` | waiters not yet signalled (changed under the lock) |
/// | 32 | `signals: AtomicU32` | signals not yet consumed (changed under the lock) |
/// | 36 | `recursive: AtomicU32` | 1: RLock semantics, 0: Lock semantics; read once at open |
#[repr(C)]
pub(crate) struct RawCondition {
    lock: RawRLock,
    seq: AtomicU32,
    waiting: AtomicU32,
    signals: AtomicU32,
    recursive: AtomicU32,
}

shmproc_shm::shm_safe! {
    RawCondition (size 40, align 8) {
        lock @ 0: RawRLock,
        seq @ 24: AtomicU32,
        waiting @ 28: AtomicU32,
        signals @ 32: AtomicU32,
        recursive @ 36: AtomicU32,
    }
}

/// An interprocess condition variable (Python's `multiprocessing.Condition`).
///
/// The condition owns its lock, in the same segment: an RLock by default
/// ([`new`](Self::new)), or a plain non-recursive lock
/// ([`new_over_lock`](Self::new_over_lock)). Lock it with
/// [`lock`](Self::lock), then [`wait`](Self::wait) with the guard (which
/// releases the lock while sleeping, every recursion level of it, and takes
/// it back), or [`notify`](Self::notify) while holding it.
///
/// `notify(n)` wakes at most `n` waiters; a waiter may still return early in
/// rare cases (a signal left by a waiter that died): use
/// [`wait_for`](Self::wait_for) with a predicate. If the lock's holder dies,
/// the next to take it, including a waiter waking up, gets
/// [`OwnerDied`].
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// let cond = shmproc_sync::Condition::new()?;
/// let g = cond.lock().expect("no holder died");
/// cond.notify_all()?; // nobody waits: no system call
/// let (g, notified) = cond.wait_timeout(g, Duration::from_millis(1)).expect("no holder died");
/// assert!(!notified);
/// drop(g);
/// # Ok(()) }
/// ```
pub struct Condition {
    h: Handle<RawCondition>,
    recursive: bool,
}

/// Holds a [`Condition`]'s lock (one level, for the RLock flavour); releases
/// it on drop. Not `Send`:
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<shmproc_sync::ConditionGuard<'static>>();
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cond.release();
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl Condition {
    const WHAT: &'static str = "Condition";

    fn create_at(place: Place<'_>, recursive: bool) -> Result<Self, SyncError> {
        let layout = fixed_layout::<RawCondition>(SegmentKind::CONDITION);
        let h = Handle::create(place, Self::WHAT, layout, |s: &RawCondition, _| {
            s.recursive.store(u32::from(recursive), Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Self { h, recursive })
    }

    fn from_handle(h: Handle<RawCondition>) -> Result<Self, SyncError> {
        let recursive = match h.state().recursive.load(Ordering::Relaxed) {
            0 => false,
            1 => true,
            other => {
                return Err(SyncError::Corrupt {
                    name: h.segment().label().to_owned(),
                    what: "the condition's lock flavour",
                    found: u64::from(other),
                });
            }
        };
        Ok(Self { h, recursive })
    }

    /// A new condition over an RLock, anonymous.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new() -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous, true)
    }

    /// A new condition over a non-recursive lock, anonymous.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new_over_lock() -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous, false)
    }

    /// A new condition over an RLock, named `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create(name: &str) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name), true)
    }

    /// A new condition over a non-recursive lock, named `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create_over_lock(name: &str) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name), false)
    }

    fn from_source(source: shmproc_shm::Source<'_>) -> Result<Self, SyncError> {
        let opts = fixed_options::<RawCondition>(SegmentKind::CONDITION);
        Self::from_handle(Handle::open(source, Self::WHAT, opts)?)
    }

    /// Whether the lock is recursive (an RLock).
    pub fn is_recursive(&self) -> bool {
        self.recursive
    }

    fn st(&self) -> &RawCondition {
        self.h.state()
    }

    fn acquire_until(&self, deadline: Deadline) -> Option<Acquired> {
        if self.recursive {
            self.st().lock.acquire_until(deadline)
        } else {
            self.st().lock.inner().acquire_until(deadline)
        }
    }

    /// Whether the caller holds the lock (for the non-recursive flavour: some
    /// thread of this process does).
    pub fn is_owned(&self) -> bool {
        if self.recursive {
            self.st().lock.is_owned()
        } else {
            self.st().lock.inner().owner_pid() == Some(owner::my_pid())
        }
    }

    fn guard(&self) -> ConditionGuard<'_> {
        ConditionGuard {
            cond: self,
            _not_send: PhantomData,
        }
    }

    /// The process-level lock word (both flavours).
    fn raw_lock(&self) -> &RawLock {
        self.st().lock.inner()
    }

    fn acquire_checked(&self, deadline: Deadline) -> Option<Result<(), OwnerDied>> {
        if self.recursive {
            self.st().lock.acquire_checked(deadline)
        } else {
            let lock = self.raw_lock();
            let a = lock.acquire_until(deadline)?;
            Some(lock.admit(a))
        }
    }

    acquire_forms!(ConditionGuard<'_>, Self::guard);

    /// Releases the lock (one level for the RLock flavour).
    ///
    /// # Errors
    /// [`ReleaseError`].
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.recursive {
            self.st().lock.release()
        } else {
            self.raw_lock().release()
        }
    }

    /// Locks whether poisoned or not: the way to repair the protected state
    /// after [`OwnerDied`], then [`clear_poison`](Self::clear_poison).
    pub fn lock_ignoring_poison(&self) -> ConditionGuard<'_> {
        if let Some(Acquired::FromDead(_)) = self.acquire_until(Deadline::NEVER) {
            self.raw_lock().poison();
        }
        self.guard()
    }

    /// Whether a holder died holding the lock and the poison was not cleared.
    pub fn is_poisoned(&self) -> bool {
        self.raw_lock().is_poisoned()
    }

    /// Clears the poison once the protected state is repaired.
    pub fn clear_poison(&self) {
        self.raw_lock().clear_poison();
    }

    /// After a wait re-acquired the lock: a poisoned lock is released (the
    /// guard dropped) and reported.
    fn after_wait<'a, R>(
        &'a self,
        guard: ConditionGuard<'a>,
        died: Option<u32>,
        ok: impl FnOnce(ConditionGuard<'a>) -> R,
    ) -> LockResult<R> {
        if died.is_some() {
            self.raw_lock().poison();
        }
        if self.is_poisoned() {
            drop(guard);
            return Err(OwnerDied::new(died));
        }
        Ok(ok(guard))
    }

    /// The core of `wait`: called with the lock held; returns with it held.
    /// Returns (notified, dead owner seen while re-acquiring).
    fn wait_inner(&self, deadline: Deadline) -> (bool, Option<u32>) {
        let st = self.st();
        let mut died = None;
        // Under the lock: register as a waiter.
        st.waiting.store(
            st.waiting.load(Ordering::Relaxed).saturating_add(1),
            Ordering::Relaxed,
        );
        loop {
            let seq = st.seq.load(Ordering::Relaxed);
            let level = if self.recursive {
                st.lock.release_all()
            } else {
                st.lock.inner().release_raw();
                1
            };
            let mut timed_out = false;
            loop {
                if st.seq.load(Ordering::Relaxed) != seq {
                    break;
                }
                let Some(slice) = deadline.slice(SLICE) else {
                    timed_out = true;
                    break;
                };
                // A slice elapsing is not an event here: the notifier is not
                // an owner whose death we could detect; just re-check.
                let _: Wake = futex::wait(&st.seq, seq, slice);
            }
            let again = if self.recursive {
                st.lock.restore(level, Deadline::NEVER)
            } else {
                st.lock.inner().acquire_until(Deadline::NEVER)
            };
            if let Some(Acquired::FromDead(p)) = again {
                died = Some(p);
            }
            // Under the lock again: consume a signal, or give up, or sleep on.
            let signals = st.signals.load(Ordering::Relaxed);
            let waiting = st.waiting.load(Ordering::Relaxed);
            if signals > 0 {
                st.signals.store(signals - 1, Ordering::Relaxed);
                st.waiting
                    .store(waiting.saturating_sub(1), Ordering::Relaxed);
                return (true, died);
            }
            if timed_out || deadline.expired() {
                st.waiting
                    .store(waiting.saturating_sub(1), Ordering::Relaxed);
                return (false, died);
            }
        }
    }

    /// Releases the lock, sleeps until notified, re-acquires it.
    ///
    /// # Errors
    /// [`OwnerDied`] when a holder died (now or earlier) and the lock is
    /// poisoned: the guard is dropped, the lock not held.
    ///
    /// # Panics
    /// If `guard` belongs to another condition.
    pub fn wait<'a>(&'a self, guard: ConditionGuard<'a>) -> LockResult<ConditionGuard<'a>> {
        assert!(std::ptr::eq(guard.cond, self), "guard of another Condition");
        let (_, died) = self.wait_inner(Deadline::NEVER);
        self.after_wait(guard, died, |g| g)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; the `bool` is
    /// `false` when it timed out (Python's return value).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_until(guard, Deadline::after(timeout))
    }

    /// As [`wait_timeout`](Self::wait_timeout), giving up at `deadline`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_deadline<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Instant,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_until(guard, Deadline::at(deadline))
    }

    fn wait_until<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Deadline,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        assert!(std::ptr::eq(guard.cond, self), "guard of another Condition");
        let (notified, died) = self.wait_inner(deadline);
        self.after_wait(guard, died, |g| (g, notified))
    }

    /// Waits until `predicate()` is true (checked under the lock first).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_for<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        predicate: impl FnMut() -> bool,
    ) -> LockResult<ConditionGuard<'a>> {
        self.wait_for_until(guard, Deadline::NEVER, predicate)
            .map(|(g, _)| g)
    }

    /// As [`wait_for`](Self::wait_for), giving up after `timeout`; the `bool`
    /// is the predicate's last value (Python's return value).
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
        predicate: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_for_until(guard, Deadline::after(timeout), predicate)
    }

    /// As [`wait_for_timeout`](Self::wait_for_timeout), giving up at `deadline`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    ///
    /// # Panics
    /// As [`wait`](Self::wait).
    pub fn wait_for_deadline<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Instant,
        predicate: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_for_until(guard, Deadline::at(deadline), predicate)
    }

    fn wait_for_until<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Deadline,
        mut predicate: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        assert!(std::ptr::eq(guard.cond, self), "guard of another Condition");
        let mut died = None;
        let mut ok = predicate();
        while !ok && !deadline.expired() {
            if let (_, Some(p)) = self.wait_inner(deadline) {
                died.get_or_insert(p);
                // The state the predicate reads may be half-updated.
                break;
            }
            ok = predicate();
        }
        self.after_wait(guard, died, |g| (g, ok))
    }

    /// Wakes at most `n` waiters. The caller must hold the lock.
    ///
    /// # Errors
    /// [`NotifyError`] when the caller does not hold the lock.
    pub fn notify(&self, n: u32) -> Result<(), NotifyError> {
        if !self.is_owned() {
            return Err(NotifyError);
        }
        let st = self.st();
        let waiting = st.waiting.load(Ordering::Relaxed);
        let signals = st.signals.load(Ordering::Relaxed).min(waiting);
        let k = n.min(waiting - signals);
        if k > 0 {
            st.signals.store(signals + k, Ordering::Relaxed);
            st.seq.fetch_add(1, Ordering::Relaxed);
            futex::wake(&st.seq, k);
        }
        Ok(())
    }

    /// Wakes every waiter. The caller must hold the lock.
    ///
    /// # Errors
    /// [`NotifyError`] when the caller does not hold the lock.
    pub fn notify_all(&self) -> Result<(), NotifyError> {
        self.notify(u32::MAX)
    }
}

shared_object!(Condition, "Condition");

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("segment", &self.h)
            .field("recursive", &self.recursive)
            .field("lock", &self.st().lock)
            .finish()
    }
}
