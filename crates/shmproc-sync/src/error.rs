//! Errors: small per-operation types for the hot paths, and [`SyncError`] for
//! setup (create / open), wrapping the segment layer's [`SegmentError`].

use std::fmt;

use shmproc_shm::SegmentError;

/// The lock was acquired, but its previous owner died while holding it.
///
/// Like [`std::sync::PoisonError`]: the data the lock protects may be
/// half-updated. The caller holds the lock (inside `guard`, or plainly for
/// the `acquire` forms) and decides whether to repair, use or discard the
/// state. Only the acquirer that took the lock over from the dead owner gets
/// this; the lock is then back to normal.
pub struct OwnerDied<G> {
    guard: G,
    pid: u32,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G, pid: u32) -> Self {
        Self { guard, pid }
    }

    /// The pid of the owner that died.
    pub fn dead_owner(&self) -> u32 {
        self.pid
    }

    /// The guard (the lock is held).
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
            pid: self.pid,
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied")
            .field("dead_owner", &self.pid)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock acquired, but its previous owner (pid {}) died while holding it",
            self.pid
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// The result of a blocking lock: the guard, or the guard wrapped in
/// [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// Why a `try_lock` / `try_acquire` did not simply succeed.
pub enum TryLockError<G> {
    /// Another thread or process holds the lock.
    WouldBlock,
    /// Acquired, from an owner that died ([`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

/// Why a `lock_timeout` / `acquire_timeout` did not simply succeed.
pub enum LockTimeoutError<G> {
    /// The timeout passed with the lock held by someone else.
    Timeout,
    /// Acquired, from an owner that died ([`OwnerDied`]).
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::OwnerDied(e) => f.debug_tuple("OwnerDied").field(e).finish(),
        }
    }
}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::Timeout => f.write_str("Timeout"),
            LockTimeoutError::OwnerDied(e) => f.debug_tuple("OwnerDied").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::WouldBlock => f.write_str("the lock is held by someone else"),
            TryLockError::OwnerDied(e) => e.fmt(f),
        }
    }
}
impl<G> std::error::Error for TryLockError<G> {}

impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockTimeoutError::Timeout => f.write_str("timed out waiting for the lock"),
            LockTimeoutError::OwnerDied(e) => e.fmt(f),
        }
    }
}
impl<G> std::error::Error for LockTimeoutError<G> {}

impl<G> TryLockError<G> {
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> TryLockError<H> {
        match self {
            TryLockError::WouldBlock => TryLockError::WouldBlock,
            TryLockError::OwnerDied(e) => TryLockError::OwnerDied(e.map(f)),
        }
    }
}

impl<G> LockTimeoutError<G> {
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockTimeoutError<H> {
        match self {
            LockTimeoutError::Timeout => LockTimeoutError::Timeout,
            LockTimeoutError::OwnerDied(e) => LockTimeoutError::OwnerDied(e.map(f)),
        }
    }
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
    /// Stored, but the lock's previous owner had died holding it.
    #[error(transparent)]
    OwnerDied(OwnerDied<()>),
}

/// An error creating or opening a synchronisation object or a shared value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The segment could not be created or opened, or holds something else:
    /// the source says which (wrong kind, type or length, not found, ...).
    #[error("cannot {op} {what}")]
    Segment {
        /// "create" or "open".
        op: &'static str,
        /// The object, e.g. `Lock`, `Value`.
        what: String,
        /// The segment layer's error (boxed: it is large, and setup is rare).
        #[source]
        source: Box<SegmentError>,
    },
    /// An argument is out of range (e.g. a barrier of 0 parties).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The segment passed validation but its contents do not describe a valid
    /// object (written by a buggy or hostile process).
    #[error("segment {name} is corrupt: {what} is {found}")]
    Corrupt {
        /// The segment.
        name: String,
        /// Which field.
        what: &'static str,
        /// The value found.
        found: u64,
    },
}

impl SyncError {
    /// The segment error behind a [`SyncError::Segment`].
    pub fn segment_error(&self) -> Option<&SegmentError> {
        match self {
            SyncError::Segment { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
