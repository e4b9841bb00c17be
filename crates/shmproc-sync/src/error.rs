//! Errors: small per-operation types for the hot paths, and [`SyncError`] for
//! setup (create / open), wrapping the segment layer's [`SegmentError`].

use std::fmt;

/// A holder of the lock died while holding it, so the state the lock
/// protects may be half-updated.
///
/// Like [`std::sync::PoisonError`], the lock is then **poisoned**: every
/// later `lock`/`acquire` in any process returns this error (and does not
/// hold the lock) until someone repairs the state and clears the poison, so
/// no process reads a half-update without being told. To repair: take the
/// lock with `lock_ignoring_poison`, fix the state, call `clear_poison`
/// (see [`RawLock::clear_poison`](crate::raw::RawLock::clear_poison)).
///
/// It carries no guard, so it is `'static + Send + Sync` and `?` takes it
/// into `Box<dyn Error + Send + Sync>`: `*v.lock()? += 1` works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerDied {
    pid: Option<u32>,
}

impl OwnerDied {
    pub(crate) fn new(pid: Option<u32>) -> Self {
        Self { pid }
    }

    /// The pid of the holder that died, for the call that found it dead
    /// (`None` for the later calls that found the lock poisoned).
    pub fn dead_owner(&self) -> Option<u32> {
        self.pid
    }
}

impl fmt::Display for OwnerDied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(p) => write!(
                f,
                "the lock's holder (pid {p}) died while holding it; the lock is poisoned until the state is repaired and the poison cleared"
            ),
            None => f.write_str(
                "the lock is poisoned: an earlier holder died while holding it, and the poison was not cleared",
            ),
        }
    }
}

impl std::error::Error for OwnerDied {}

/// The result of a blocking lock: the guard, or [`OwnerDied`] (not held).
pub type LockResult<G> = Result<G, OwnerDied>;

/// Why a `try_lock` / `try_acquire` did not acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryLockError {
    /// Another thread or process holds the lock.
    #[error("the lock is held by someone else")]
    WouldBlock,
    /// A holder died and the lock is poisoned ([`OwnerDied`]; not held).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
}

/// Why a `lock_timeout` / `acquire_timeout` / `_deadline` form did not
/// acquire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockTimeoutError {
    /// The deadline passed with the lock held by someone else.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// A holder died and the lock is poisoned ([`OwnerDied`]; not held).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
}

/// A `try_*` call that would have had to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation would block")]
pub struct WouldBlock;

/// A `*_timeout` call whose timeout passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation timed out")]
pub struct Timeout;

/// Why a `release` failed (Python raises `ValueError` / `RuntimeError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The lock is not held.
    #[error("release of an unlocked lock")]
    NotLocked,
    /// The lock (an `RLock`) is held by another thread or process.
    #[error("cannot release an RLock owned by pid {owner_pid} tid {owner_tid}")]
    NotOwner {
        /// Pid of the owner.
        owner_pid: u32,
        /// Tid of the owning thread.
        owner_tid: u32,
    },
    /// A semaphore would exceed its maximum value (a `BoundedSemaphore`
    /// released more often than acquired).
    #[error("semaphore released too many times (maximum value {max})")]
    TooManyReleases {
        /// The maximum value.
        max: u32,
    },
    /// The shared state holds a value no valid lock has (another process
    /// wrote garbage); the lock was released anyway.
    #[error("corrupt shared state: {what}")]
    Corrupt {
        /// What was wrong.
        what: &'static str,
    },
}

/// Why a [`Barrier`](crate::Barrier) wait did not complete a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierWaitError {
    /// The barrier is broken: aborted, reset while we waited, a party timed
    /// out, a party died while waiting, or the action panicked. It stays
    /// broken until [`reset`](crate::Barrier::reset).
    #[error("the barrier is broken")]
    Broken,
    /// The timeout passed (the barrier is now broken, as in Python).
    #[error("timed out waiting at the barrier (the barrier is now broken)")]
    Timeout,
    /// `try_wait`: this party would not complete the round.
    #[error("the barrier round is not complete")]
    WouldBlock,
}

/// A [`Condition`](crate::Condition) `notify` from a thread that does not
/// hold its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot notify on an un-acquired lock")]
pub struct NotifyError;

/// A string too long for a byte [`Array`](crate::Array).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetStrError {
    /// The string does not fit.
    #[error("a string of {len} bytes does not fit in an array of {capacity} bytes")]
    TooLong {
        /// Bytes in the string.
        len: usize,
        /// Bytes in the array.
        capacity: usize,
    },
    /// A holder of the lock died: not stored (the lock is poisoned).
    #[error(transparent)]
    OwnerDied(#[from] OwnerDied),
}

/// An error creating or opening a synchronisation object or a shared value:
/// the workspace's one setup error, [`SetupError`](shmproc_shm::SetupError),
/// under this crate's name.
pub type SyncError = shmproc_shm::SetupError;
