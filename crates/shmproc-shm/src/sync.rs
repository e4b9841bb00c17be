//! The atomics and `UnsafeCell` shim: `std` normally, `loom` under
//! `cfg(shmproc_loom)`.
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
#[cfg(shmproc_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// Spin-wait hint (`core::hint::spin_loop`, or a loom yield).
#[inline]
pub fn spin_loop() {
    #[cfg(not(shmproc_loom))]
    core::hint::spin_loop();
    #[cfg(shmproc_loom)]
    loom::thread::yield_now();
}

/// Gives up the CPU (`std::thread::yield_now`, or a loom yield).
#[inline]
pub fn yield_now() {
    #[cfg(not(shmproc_loom))]
    std::thread::yield_now();
    #[cfg(shmproc_loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` whose accesses loom can track.
///
/// Outside loom it is a `#[repr(transparent)]` wrapper over
/// `core::cell::UnsafeCell`, so it has the layout of `T`.
#[cfg(not(shmproc_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(shmproc_loom))]
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

#[cfg(shmproc_loom)]
pub use loom::cell::UnsafeCell;
