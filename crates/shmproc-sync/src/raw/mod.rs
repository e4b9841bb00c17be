//! The shared state structs, usable on any storage: in a segment (what the
//! handle types hold), or on the heap (process-local use, loom models).
//!
//! Every struct is `#[repr(C)]`, made of atomics only, valid for every bit
//! pattern, with its layout asserted at compile time and tabulated in its docs.

mod lock;
mod rlock;
mod semaphore;

#[cfg(not(shmproc_loom))]
pub(crate) use lock::Acquired;
pub use lock::{LockGuard, RawLock, ShmThreadId};
pub use rlock::{RLockGuard, RawRLock};
pub use semaphore::{RawEvent, RawSemaphore};
