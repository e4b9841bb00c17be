//! [`RawRLock`]: the recursive lock, owned by one thread of one process.

use std::fmt;
use std::marker::PhantomData;

use shmproc_shm::sync::{AtomicU32, Ordering};

use super::acquire_forms;
use super::lock::{Acquired, RawLock};
use crate::error::{OwnerDied, ReleaseError};
use crate::futex::Deadline;
use crate::owner;

/// A recursive interprocess lock, laid out for shared memory: the state of
/// an [`RLock`](crate::RLock) (and of a [`Condition`](crate::Condition)'s
/// default lock).
///
/// The owner is one thread (pid and tid); it may acquire again, and only it
/// may release. If the owning **process** dies, the next acquirer takes the
/// lock over, poisons it and reports [`OwnerDied`] (see [`RawLock`]'s
/// "Poison"). A thread that exits while its process lives keeps the lock
/// held, as in Python.
///
/// # Layout (`repr(C)`, 24 bytes, align 8)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock: RawLock` | the process-level lock (see [`RawLock`]) |
/// | 16 | `owner_tid: AtomicU32` | tid of the owning thread, 0 when free |
/// | 20 | `count: AtomicU32` | recursion level, written only by the owner |
#[repr(C)]
pub struct RawRLock {
    lock: RawLock,
    owner_tid: AtomicU32,
    count: AtomicU32,
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    RawRLock (size 24, align 8) {
        lock @ 0: RawLock,
        owner_tid @ 16: AtomicU32,
        count @ 20: AtomicU32,
    }
}

impl fmt::Debug for RawRLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRLock")
            .field("owner_pid", &self.lock.owner_pid())
            .field("owner_tid", &self.owner_tid.load(Ordering::Relaxed))
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for RawRLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawRLock {
    /// An unlocked recursive lock (all zeroes).
    #[cfg(not(shmproc_loom))]
    pub const fn new() -> Self {
        Self {
            lock: RawLock::new(),
            owner_tid: AtomicU32::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// An unlocked recursive lock (all zeroes).
    #[cfg(shmproc_loom)]
    pub fn new() -> Self {
        Self {
            lock: RawLock::new(),
            owner_tid: AtomicU32::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// The process-level lock inside (the non-recursive flavour of a
    /// condition uses it alone).
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn inner(&self) -> &RawLock {
        &self.lock
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        self.lock.owner_pid() == Some(owner::my_pid())
            && self.owner_tid.load(Ordering::Relaxed) == owner::my_tid()
    }

    /// Whether anyone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The recursion level when the calling thread holds the lock, else 0.
    pub fn recursion_count(&self) -> u32 {
        if self.is_owned() {
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// How many times a dead owner's lock was taken over (wrapping).
    pub fn owner_deaths(&self) -> u32 {
        self.lock.owner_deaths()
    }

    /// Acquires (recursively when already owned) until `deadline`, as the
    /// API answers: `None` when the deadline passed, `Some(Err)` when a
    /// holder died and the lock is poisoned (not held). A recursive
    /// acquisition never reports poison: the caller holds the lock already.
    pub(crate) fn acquire_checked(&self, deadline: Deadline) -> Option<Result<(), OwnerDied>> {
        if self.is_owned() {
            self.acquire_until(deadline)?;
            return Some(Ok(()));
        }
        let a = self.lock.acquire_until(deadline)?;
        if let Err(e) = self.lock.admit(a) {
            return Some(Err(e));
        }
        self.owner_tid.store(owner::my_tid(), Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Some(Ok(()))
    }

    /// Acquires (recursively when already owned) until `deadline`, ignoring
    /// poison.
    pub(crate) fn acquire_until(&self, deadline: Deadline) -> Option<Acquired> {
        if self.is_owned() {
            let c = self.count.load(Ordering::Relaxed);
            // A corrupt 0 while we own the word: we are at least at level 1.
            let c = c.max(1);
            let next = c
                .checked_add(1)
                .expect("RLock recursion level overflowed u32::MAX");
            self.count.store(next, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let a = self.lock.acquire_until(deadline)?;
        self.owner_tid.store(owner::my_tid(), Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Some(a)
    }

    /// Releases every level at once; returns the level to restore
    /// (`Condition::wait`). The caller owns the lock.
    pub(crate) fn release_all(&self) -> u32 {
        let c = self.count.load(Ordering::Relaxed).max(1);
        self.count.store(0, Ordering::Relaxed);
        self.owner_tid.store(0, Ordering::Relaxed);
        self.lock.release_raw();
        c
    }

    /// Re-acquires at recursion level `level` (after [`release_all`](Self::release_all)).
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn restore(&self, level: u32, deadline: Deadline) -> Option<Acquired> {
        let a = self.lock.acquire_until(deadline)?;
        self.owner_tid.store(owner::my_tid(), Ordering::Relaxed);
        self.count.store(level.max(1), Ordering::Relaxed);
        Some(a)
    }

    /// Whether a holder died while holding the lock and the poison was not
    /// cleared since.
    pub fn is_poisoned(&self) -> bool {
        self.lock.is_poisoned()
    }

    /// Clears the poison once the protected state is repaired (see
    /// [`RawLock::clear_poison`]).
    pub fn clear_poison(&self) {
        self.lock.clear_poison();
    }

    /// Blocks until acquired, poisoned or not: the way to repair the state
    /// after [`OwnerDied`], then [`clear_poison`](Self::clear_poison).
    ///
    /// # Panics
    /// As [`acquire`](Self::acquire).
    pub fn lock_ignoring_poison(&self) -> RLockGuard<'_> {
        if let Some(Acquired::FromDead(_)) = self.acquire_until(Deadline::NEVER) {
            self.lock.poison();
        }
        RLockGuard::new(self)
    }

    /// Releases one level; the lock is free when the level reaches 0.
    ///
    /// # Errors
    /// [`ReleaseError::NotLocked`] when free, [`ReleaseError::NotOwner`] when
    /// another thread owns it.
    pub fn release(&self) -> Result<(), ReleaseError> {
        let Some(pid) = self.lock.owner_pid() else {
            return Err(ReleaseError::NotLocked);
        };
        let tid = self.owner_tid.load(Ordering::Relaxed);
        if pid != owner::my_pid() || tid != owner::my_tid() {
            return Err(ReleaseError::NotOwner {
                owner_pid: pid,
                owner_tid: tid,
            });
        }
        match self.count.load(Ordering::Relaxed) {
            0 => {
                self.release_all();
                Err(ReleaseError::Corrupt {
                    what: "RLock owned with a recursion level of 0",
                })
            }
            1 => {
                self.release_all();
                Ok(())
            }
            c => {
                self.count.store(c - 1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    acquire_forms!(RLockGuard<'_>, RLockGuard::new);
}

/// Holds one level of a [`RawRLock`]; releases it on drop. Not `Send`: only
/// the owning thread may release.
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<shmproc_sync::RLockGuard<'static>>();
/// ```
#[must_use = "the lock level is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RawRLock,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    fn new(lock: &'a RawRLock) -> Self {
        Self {
            lock,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds a level of.
    pub fn raw(&self) -> &'a RawRLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("lock", self.lock)
            .finish()
    }
}
