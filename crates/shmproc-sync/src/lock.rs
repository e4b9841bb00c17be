//! [`Lock`] and [`RLock`]: segment-backed handles over [`RawLock`] and [`RawRLock`].

use shmproc_shm::SegmentKind;

use crate::raw::{RawLock, RawRLock};
use crate::shared::{SegmentState, Shared};

/// An interprocess lock (Python's `multiprocessing.Lock`), robust to a holder
/// that dies.
///
/// The handle dereferences to its shared [`RawLock`], which has every method:
/// [`lock`](RawLock::lock) / [`try_lock`](RawLock::try_lock) /
/// [`lock_timeout`](RawLock::lock_timeout) return a [`LockGuard`](crate::LockGuard)
/// that releases on drop; [`acquire`](RawLock::acquire) /
/// [`release`](RawLock::release) are the Python forms.
///
/// If the holder dies, the next acquirer gets [`OwnerDied`](crate::OwnerDied)
/// within about 50 ms (waiters sleep in 50 ms slices and check the owner's
/// pid and start time), and the lock stays **poisoned**, as a
/// `std::sync::Mutex` whose holder panicked: every later `lock` reports it
/// until the state is repaired and the poison cleared.
///
/// The segment holds one [`RawLock`] (16 bytes) after the segment header.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_sync::Lock;
/// let name = shmproc_shm::SegmentName::unique("doc-lock");
/// let lock = Lock::create(name.as_str())?;
/// let other = Lock::open(name.as_str())?; // in any process
/// {
///     let _guard = lock.lock()?;
///     assert!(other.try_lock().is_err());
/// }
/// // After a holder died: report, repair, clear the poison.
/// if let Err(died) = other.lock() {
///     eprintln!("{died}");
///     let _repairing = other.lock_ignoring_poison();
///     // ... repair the protected state ...
///     other.clear_poison();
/// }
/// # Ok(()) }
/// ```
///
/// # Fork
/// A forked child shares the lock (the mapping is shared); a lock held by the
/// parent at the fork is still held by the parent.
pub type Lock = Shared<RawLock>;

impl SegmentState for RawLock {
    const KIND: SegmentKind = SegmentKind::LOCK;
    const WHAT: &'static str = "Lock";
}

/// A recursive interprocess lock (Python's `multiprocessing.RLock`), robust
/// to a holder that dies.
///
/// Owned by one thread of one process: the owner may acquire again, and only
/// the owner releases. Dereferences to [`RawRLock`], which has the methods
/// ([`lock`](RawRLock::lock) returns an [`RLockGuard`](crate::RLockGuard)).
/// If the owning process dies, the next acquirer gets the lock (at level 1)
/// with [`OwnerDied`](crate::OwnerDied).
///
/// The segment holds one [`RawRLock`] (24 bytes).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rlock = shmproc_sync::RLock::new()?;
/// let outer = rlock.lock().expect("no holder died");
/// let inner = rlock.lock().expect("no holder died"); // same thread: recursive
/// assert_eq!(rlock.recursion_count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!rlock.is_locked());
/// # Ok(()) }
/// ```
pub type RLock = Shared<RawRLock>;

impl SegmentState for RawRLock {
    const KIND: SegmentKind = SegmentKind::RLOCK;
    const WHAT: &'static str = "RLock";
}
