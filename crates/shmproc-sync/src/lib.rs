//! Interprocess synchronisation for shmproc: Python's
//! `multiprocessing.synchronize` and `multiprocessing.sharedctypes`, in
//! shared memory, robust to processes that die.
//!
//! | Python | shmproc |
//! |---|---|
//! | `Lock()` | [`Lock::new`] / [`Lock::create`]`(name)` / [`Lock::open`]`(name)` |
//! | `RLock()` | [`RLock`] |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore`], [`BoundedSemaphore`] |
//! | `Event()` | [`Event`] |
//! | `Condition(lock)` | [`Condition`] (over an [`RLock`] by default, or a [`Lock`]) |
//! | `Barrier(n, action)` | [`Barrier`] |
//! | `Value('q', 0)`, `Array('d', 10)` | [`Value::<i64>::new(0)`](Value::new), [`Array::<f64>::new(10, 0.0)`](Array::new) |
//! | `RawValue`, `RawArray` | [`RawValue`], [`RawArray`] |
//! | `acquire(block=False)`, `acquire(timeout=t)` | `try_acquire()`, `acquire_timeout(t)` (and `try_lock`, `lock_timeout` returning guards) |
//!
//! Every object lives in a segment of its own: anonymous (`new`, shared by
//! fork or by fd) or named (`create(name)`, opened by name from any process
//! with `open(name)`). Opening a segment of another kind, element type or
//! length is a typed error ([`SyncError::Segment`] wrapping the segment
//! layer's `WrongKind` / `WrongType` / `WrongLength`).
//!
//! # Crash robustness
//! A lock word records its owner's pid (and the owner's start time, against
//! pid reuse). Waiters sleep on shared futexes in slices of at most 50 ms and
//! check the owner is alive; if it died, the next acquirer takes the lock
//! **and** gets [`OwnerDied`] (like `std`'s mutex poisoning), so the caller
//! can repair the protected state. Barrier waiters check the other waiting
//! parties the same way and see the barrier broken if one died. No robust
//! futex list is used (glibc owns it).
//!
//! # Blocking and wake-ups
//! Waiters spin briefly, then sleep on a shared futex; releasers make a wake
//! system call only when a waiter is registered (a waiters bit or count).
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmproc_sync::{Lock, RawValue};
//! let lock = Lock::new()?;
//! let counter = RawValue::new(0u64)?;
//! {
//!     let _g = lock.lock().expect("no holder died");
//!     counter.store(counter.load() + 1);
//! }
//! assert_eq!(counter.load(), 1);
//! # Ok(()) }
//! ```
//!
//! `shmproc_sync::raw` has the shared state structs themselves, which also
//! work on the heap (the loom models in `tests/loom.rs` use them there).
//!
//! # Building blocks
//! The other shmproc crates (the queues and pipes of `shmproc-channel`) wait
//! and judge owners with the same pieces as the locks here; they are public
//! and documented, with no semver promise beyond the workspace's own version:
//! - [`futex`]: waiting on a shared word with a [`Deadline`](futex::Deadline)
//!   in bounded slices, and the spin-then-sleep policy;
//! - [`asym`]: asymmetric Dekker fences across processes (a compiler fence on
//!   the hot side, `membarrier` on the side going to sleep);
//! - [`owner`]: the owner records written into lock words and slots, and the
//!   liveness check behind every "a holder died" report.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod asym;
mod error;
pub mod futex;
#[cfg(not(shmproc_loom))]
pub mod inspect;
#[cfg(shmproc_loom)]
pub mod model;
pub mod owner;
pub mod raw;

#[cfg(not(shmproc_loom))]
mod barrier;
#[cfg(not(shmproc_loom))]
mod condition;
#[cfg(not(shmproc_loom))]
mod handle;
#[cfg(not(shmproc_loom))]
mod lock;
#[cfg(not(shmproc_loom))]
mod semaphore;
#[cfg(not(shmproc_loom))]
mod shared;
#[cfg(not(shmproc_loom))]
mod value;

pub use error::{
    BarrierWaitError, LockResult, LockTimeoutError, NotifyError, OwnerDied, ReleaseError,
    SetStrError, SyncError, Timeout, TryLockError, WouldBlock,
};
pub use raw::{LockGuard, RLockGuard, ShmThreadId};

#[cfg(not(shmproc_loom))]
pub use barrier::Barrier;
#[cfg(not(shmproc_loom))]
pub use condition::{Condition, ConditionGuard};
#[cfg(not(shmproc_loom))]
pub use lock::{Lock, RLock};
#[cfg(not(shmproc_loom))]
pub use semaphore::{BoundedSemaphore, Event, Semaphore};
#[cfg(not(shmproc_loom))]
pub use shared::{SegmentState, Shared};
#[cfg(not(shmproc_loom))]
pub use value::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};

/// Whether the model runs the seeded mutant `name` (`SHMPROC_MUTANT`, see
/// `model`): `false`, a constant, outside `cfg(shmproc_loom)`.
#[doc(hidden)]
#[macro_export]
macro_rules! mutant {
    ($name:literal) => {{
        #[cfg(shmproc_loom)]
        let on = $crate::model::mutant($name);
        #[cfg(not(shmproc_loom))]
        let on = false;
        on
    }};
}
