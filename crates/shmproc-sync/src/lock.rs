//! [`Lock`] and [`RLock`]: segment-backed handles over [`RawLock`] and [`RawRLock`].

use std::fmt;
use std::ops::Deref;
use std::os::fd::OwnedFd;

use shmproc_shm::SegmentKind;

use crate::error::SyncError;
use crate::handle::{Handle, Place, fixed_layout, fixed_options, segment_accessors};
use crate::raw::{RawLock, RawRLock};

/// An interprocess lock (Python's `multiprocessing.Lock`), robust to a holder
/// that dies.
///
/// The handle dereferences to its shared [`RawLock`], which has every method:
/// [`lock`](RawLock::lock) / [`try_lock`](RawLock::try_lock) /
/// [`lock_timeout`](RawLock::lock_timeout) return a [`LockGuard`](crate::LockGuard)
/// that releases on drop; [`acquire`](RawLock::acquire) /
/// [`release`](RawLock::release) are the Python forms.
///
/// If the holder dies, the next acquirer gets the lock together with an
/// [`OwnerDied`](crate::OwnerDied) error within about 50 ms (waiters sleep in
/// 50 ms slices and check the owner's pid and start time).
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
///     let _guard = lock.lock().expect("no holder died");
///     assert!(other.try_lock().is_err());
/// }
/// // A holder that died is reported, and the lock is held all the same:
/// let guard = match other.lock() {
///     Ok(g) => g,
///     Err(died) => {
///         eprintln!("{died}; repairing the protected state");
///         died.into_inner()
///     }
/// };
/// drop(guard);
/// # Ok(()) }
/// ```
///
/// # Fork
/// A forked child shares the lock (the mapping is shared); a lock held by the
/// parent at the fork is still held by the parent.
pub struct Lock {
    h: Handle<RawLock>,
}

impl Lock {
    const WHAT: &'static str = "Lock";

    fn create_at(place: Place<'_>) -> Result<Self, SyncError> {
        let h = Handle::create(
            place,
            Self::WHAT,
            fixed_layout::<RawLock>(SegmentKind::LOCK),
            |_, _| Ok(()),
        )?;
        Ok(Self { h })
    }

    /// A new unlocked lock in an anonymous segment (share it by fork, or by
    /// fd with [`inheritable_fd`](Self::inheritable_fd) and [`open_fd`](Self::open_fd)).
    ///
    /// # Errors
    /// [`SyncError::Segment`] when the segment cannot be created.
    pub fn new() -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous)
    }

    /// A new unlocked lock in the named segment `name`; other processes
    /// [`open`](Self::open) it. Dropping this handle unlinks the name.
    ///
    /// # Errors
    /// [`SyncError::Segment`] (name taken, invalid, no space, ...).
    pub fn create(name: &str) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name))
    }

    /// Opens the lock named `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`]: not found, or not a `Lock` (`WrongKind`), ...
    pub fn open(name: &str) -> Result<Self, SyncError> {
        let h = Handle::open(
            Some(name),
            None,
            Self::WHAT,
            fixed_options::<RawLock>(SegmentKind::LOCK),
        )?;
        Ok(Self { h })
    }

    /// Opens the lock behind `fd`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, SyncError> {
        let h = Handle::open(
            None,
            Some(fd),
            Self::WHAT,
            fixed_options::<RawLock>(SegmentKind::LOCK),
        )?;
        Ok(Self { h })
    }

    /// The shared lock state.
    pub fn raw(&self) -> &RawLock {
        self.h.state()
    }
}

segment_accessors!(Lock);

impl Deref for Lock {
    type Target = RawLock;
    fn deref(&self) -> &RawLock {
        self.h.state()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("segment", &self.h)
            .field("state", self.raw())
            .finish()
    }
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
pub struct RLock {
    h: Handle<RawRLock>,
}

impl RLock {
    const WHAT: &'static str = "RLock";

    fn create_at(place: Place<'_>) -> Result<Self, SyncError> {
        let h = Handle::create(
            place,
            Self::WHAT,
            fixed_layout::<RawRLock>(SegmentKind::RLOCK),
            |_, _| Ok(()),
        )?;
        Ok(Self { h })
    }

    /// A new unlocked recursive lock in an anonymous segment.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new() -> Result<Self, SyncError> {
        Self::create_at(Place::Anonymous)
    }

    /// A new unlocked recursive lock in the named segment `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create(name: &str) -> Result<Self, SyncError> {
        Self::create_at(Place::Named(name))
    }

    /// Opens the recursive lock named `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`]: not found, not an `RLock`, ...
    pub fn open(name: &str) -> Result<Self, SyncError> {
        let h = Handle::open(
            Some(name),
            None,
            Self::WHAT,
            fixed_options::<RawRLock>(SegmentKind::RLOCK),
        )?;
        Ok(Self { h })
    }

    /// Opens the recursive lock behind `fd`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, SyncError> {
        let h = Handle::open(
            None,
            Some(fd),
            Self::WHAT,
            fixed_options::<RawRLock>(SegmentKind::RLOCK),
        )?;
        Ok(Self { h })
    }

    /// The shared lock state.
    pub fn raw(&self) -> &RawRLock {
        self.h.state()
    }
}

segment_accessors!(RLock);

impl Deref for RLock {
    type Target = RawRLock;
    fn deref(&self) -> &RawRLock {
        self.h.state()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("segment", &self.h)
            .field("state", self.raw())
            .finish()
    }
}
