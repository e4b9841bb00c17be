//! The shared state structs, usable on any storage: in a segment (what the
//! handle types hold), or on the heap (process-local use, loom models).
//!
//! Every struct is `#[repr(C)]`, made of atomics only, valid for every bit
//! pattern, with its layout asserted at compile time and tabulated in its docs.

mod lock;
mod rlock;
mod semaphore;

/// The acquire and lock forms of a lock type, written once over its
/// `acquire_checked(&self, Deadline) -> Option<Result<(), OwnerDied>>`
/// (`None`: the deadline passed; `Some(Err)`: poisoned, not held):
/// `acquire`, `try_acquire`, `acquire_timeout`, `acquire_deadline` and the
/// guard forms `lock`, `try_lock`, `lock_timeout`, `lock_deadline`, the
/// guard made by `$guard(self)`.
macro_rules! acquire_forms {
    ($guard:ty, $make:expr) => {
        /// Blocks until acquired (Python's `acquire()`).
        ///
        /// # Errors
        /// [`OwnerDied`](crate::OwnerDied) when a holder died and the lock
        /// is poisoned (not held).
        pub fn acquire(&self) -> Result<(), crate::OwnerDied> {
            self.acquire_checked(crate::futex::Deadline::NEVER)
                .expect("no deadline")
        }

        /// Acquires if it can at once (Python's `acquire(block=False)`).
        ///
        /// # Errors
        /// [`TryLockError::WouldBlock`](crate::TryLockError::WouldBlock), or
        /// [`TryLockError::OwnerDied`](crate::TryLockError::OwnerDied) (not held).
        #[doc(alias = "acquire_nowait")]
        pub fn try_acquire(&self) -> Result<(), crate::TryLockError> {
            Ok(self
                .acquire_checked(crate::futex::Deadline::after(std::time::Duration::ZERO))
                .ok_or(crate::TryLockError::WouldBlock)??)
        }

        /// Acquires, waiting at most `timeout` (Python's `acquire(timeout=t)`).
        ///
        /// # Errors
        /// [`LockTimeoutError::Timeout`](crate::LockTimeoutError::Timeout), or
        /// [`LockTimeoutError::OwnerDied`](crate::LockTimeoutError::OwnerDied) (not held).
        pub fn acquire_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<(), crate::LockTimeoutError> {
            self.acquire_by(crate::futex::Deadline::after(timeout))
        }

        /// Acquires, waiting until `deadline`.
        ///
        /// # Errors
        /// As [`acquire_timeout`](Self::acquire_timeout).
        pub fn acquire_deadline(
            &self,
            deadline: std::time::Instant,
        ) -> Result<(), crate::LockTimeoutError> {
            self.acquire_by(crate::futex::Deadline::at(deadline))
        }

        fn acquire_by(
            &self,
            deadline: crate::futex::Deadline,
        ) -> Result<(), crate::LockTimeoutError> {
            Ok(self
                .acquire_checked(deadline)
                .ok_or(crate::LockTimeoutError::Timeout)??)
        }

        /// Blocks until acquired; the guard releases on drop.
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire).
        pub fn lock(&self) -> crate::LockResult<$guard> {
            self.acquire().map(|()| $make(self))
        }

        /// Acquires if it can at once; the guard releases on drop.
        ///
        /// # Errors
        /// As [`try_acquire`](Self::try_acquire).
        pub fn try_lock(&self) -> Result<$guard, crate::TryLockError> {
            self.try_acquire().map(|()| $make(self))
        }

        /// Acquires, waiting at most `timeout`; the guard releases on drop.
        ///
        /// # Errors
        /// As [`acquire_timeout`](Self::acquire_timeout).
        pub fn lock_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<$guard, crate::LockTimeoutError> {
            self.acquire_timeout(timeout).map(|()| $make(self))
        }

        /// Acquires, waiting until `deadline`; the guard releases on drop.
        ///
        /// # Errors
        /// As [`acquire_timeout`](Self::acquire_timeout).
        pub fn lock_deadline(
            &self,
            deadline: std::time::Instant,
        ) -> Result<$guard, crate::LockTimeoutError> {
            self.acquire_deadline(deadline).map(|()| $make(self))
        }
    };
}
pub(crate) use acquire_forms;

#[cfg(not(shmproc_loom))]
pub(crate) use lock::Acquired;
#[cfg(not(shmproc_loom))]
pub use lock::LockSnapshot;
pub use lock::{LockGuard, RawLock, ShmThreadId};
pub use rlock::{RLockGuard, RawRLock};
pub use semaphore::{RawEvent, RawSemaphore};
