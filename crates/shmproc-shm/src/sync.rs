//! The atomics and `UnsafeCell` shim: `std` normally, `loom` under
//! `cfg(shmproc_loom)` (`shuttle` when `cfg(shmproc_shuttle)` is set too,
//! where the `UnsafeCell` is the plain wrapper: shuttle tracks no accesses).
//!
//! Lock-free code in the workspace takes its atomics from here, so the same
//! algorithm runs on shared memory in production and on heap storage under the
//! loom model checker. Structures that only ever live in a real mapping (the
//! segment header) use [`real`], which is `std` in every build.
#![allow(clippy::disallowed_types)]

/// Atomics that are always the real `core` ones, for fields that are read by
/// the kernel (futex words) or that only live in real mappings.
pub mod real {
    pub use core::sync::atomic::{
        AtomicI32, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering, fence,
    };
}

#[cfg(not(shmproc_loom))]
pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(all(shmproc_loom, not(shmproc_shuttle)))]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(shmproc_shuttle)]
pub use shuttle::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// Spin-wait hint (`core::hint::spin_loop`, or a loom yield).
#[inline]
pub fn spin_loop() {
    #[cfg(not(shmproc_loom))]
    core::hint::spin_loop();
    #[cfg(all(shmproc_loom, not(shmproc_shuttle)))]
    loom::thread::yield_now();
    #[cfg(shmproc_shuttle)]
    shuttle::thread::yield_now();
}

/// Gives up the CPU (`std::thread::yield_now`, or a loom yield).
#[inline]
pub fn yield_now() {
    #[cfg(not(shmproc_loom))]
    std::thread::yield_now();
    #[cfg(all(shmproc_loom, not(shmproc_shuttle)))]
    loom::thread::yield_now();
    #[cfg(shmproc_shuttle)]
    shuttle::thread::yield_now();
}

/// An `UnsafeCell` whose accesses loom can track.
///
/// Outside loom it is a `#[repr(transparent)]` wrapper over
/// `core::cell::UnsafeCell`, so it has the layout of `T`.
#[cfg(any(not(shmproc_loom), shmproc_shuttle))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(any(not(shmproc_loom), shmproc_shuttle))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }
    /// Runs `f` with a shared raw pointer to the contents.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Runs `f` with a unique raw pointer to the contents.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(all(shmproc_loom, not(shmproc_shuttle)))]
pub use loom::cell::UnsafeCell;
