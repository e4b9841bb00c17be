//! [`RawSemaphore`] and [`RawEvent`]: counters and flags on futex words.

use std::fmt;
use std::time::Duration;

use shmproc_shm::sync::{AtomicU32, Ordering, spin_loop};

use crate::error::{ReleaseError, Timeout, WouldBlock};
use crate::futex::{self, Deadline, SLICE, SPIN_LIMIT};

/// A counting semaphore, laid out for shared memory: the state of a
/// [`Semaphore`](crate::Semaphore) or [`BoundedSemaphore`](crate::BoundedSemaphore).
///
/// A semaphore has no owner, so a process that dies after `acquire` simply
/// never releases (as in Python); waiters still sleep in bounded slices.
///
/// # Layout (`repr(C)`, 16 bytes, align 4)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `value: AtomicU32` | futex word: the counter |
/// | 4 | `waiters: AtomicU32` | processes / threads registered as sleeping |
/// | 8 | `max: AtomicU32` | the bound (`u32::MAX` when unbounded); read once at open |
/// | 12 | `reserved: AtomicU32` | 0 |
///
/// Any bit pattern is a valid state; a value above `max` (only a corrupting
/// writer can make one) makes every release fail until acquires bring it down.
#[repr(C)]
pub struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
    max: AtomicU32,
    reserved: AtomicU32,
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    RawSemaphore (size 16, align 4) {
        value @ 0: AtomicU32,
        waiters @ 4: AtomicU32,
        max @ 8: AtomicU32,
        reserved @ 12: AtomicU32,
    }
}

impl fmt::Debug for RawSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSemaphore")
            .field("value", &self.value.load(Ordering::Relaxed))
            .field("max", &self.max.load(Ordering::Relaxed))
            .finish()
    }
}

impl RawSemaphore {
    /// A semaphore holding `value`, bounded by `max` (`u32::MAX`: unbounded).
    pub fn new(value: u32, max: u32) -> Self {
        Self {
            value: AtomicU32::new(value),
            waiters: AtomicU32::new(0),
            max: AtomicU32::new(max),
            reserved: AtomicU32::new(0),
        }
    }

    /// Initialises a zeroed semaphore in a segment being created.
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn init(&self, value: u32, max: u32) {
        self.value.store(value, Ordering::Relaxed);
        self.max.store(max, Ordering::Relaxed);
    }

    /// The bound stored in shared memory (read once at open by handles).
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn stored_max(&self) -> u32 {
        self.max.load(Ordering::Relaxed)
    }

    /// The current value (Python's `get_value()`).
    pub fn get_value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    fn try_take(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self.value.compare_exchange_weak(
                v,
                v - 1,
                // Acquire: pairs with the Release increment in `release`.
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Decrements, waiting until `deadline`; `false` when it expired.
    pub(crate) fn acquire_until(&self, deadline: Deadline) -> bool {
        for _ in 0..SPIN_LIMIT {
            if self.try_take() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            spin_loop();
        }
        loop {
            if self.try_take() {
                return true;
            }
            let Some(slice) = deadline.slice(SLICE) else {
                return false;
            };
            // SeqCst, with the re-check of `value` below: pairs with the SeqCst
            // increment and `waiters` load in `release` (store-buffer pattern:
            // either the releaser sees us registered, or we see its increment).
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.value.load(Ordering::SeqCst) == 0 {
                futex::wait(&self.value, 0, slice);
            }
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Blocks until the value is positive, then decrements it.
    pub fn acquire(&self) {
        self.acquire_until(Deadline::NEVER);
    }

    /// Decrements if positive.
    ///
    /// # Errors
    /// [`WouldBlock`] when the value is 0.
    pub fn try_acquire(&self) -> Result<(), WouldBlock> {
        if self.try_take() {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// Decrements, waiting at most `timeout` for the value to be positive.
    ///
    /// # Errors
    /// [`Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.acquire_by(Deadline::after(timeout))
    }

    /// Decrements, waiting until `deadline` for the value to be positive.
    ///
    /// # Errors
    /// [`Timeout`].
    pub fn acquire_deadline(&self, deadline: std::time::Instant) -> Result<(), Timeout> {
        self.acquire_by(Deadline::at(deadline))
    }

    fn acquire_by(&self, deadline: Deadline) -> Result<(), Timeout> {
        if self.acquire_until(deadline) {
            Ok(())
        } else {
            Err(Timeout)
        }
    }

    /// Increments, failing at `max` (the caller's cached bound), and wakes a
    /// waiter if one is registered.
    ///
    /// # Errors
    /// [`ReleaseError::TooManyReleases`] when the value is already `max`.
    pub fn release_bounded(&self, max: u32) -> Result<(), ReleaseError> {
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if v >= max {
                return Err(ReleaseError::TooManyReleases { max });
            }
            match self.value.compare_exchange_weak(
                v,
                v + 1,
                // SeqCst: Release for the acquirer's Acquire CAS in `try_take`,
                // and SeqCst for the store-buffer pairing with `waiters` (see
                // `acquire_until`).
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        // SeqCst: pairs with the waiter's SeqCst `waiters` increment.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, 1);
        }
        Ok(())
    }
}

/// A flag that processes can wait for, laid out for shared memory: the
/// state of an [`Event`](crate::Event).
///
/// # Layout (`repr(C)`, 8 bytes, align 4)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `flag: AtomicU32` | futex word: 0 clear, anything else set |
/// | 4 | `waiters: AtomicU32` | registered sleepers |
#[repr(C)]
pub struct RawEvent {
    flag: AtomicU32,
    waiters: AtomicU32,
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    RawEvent (size 8, align 4) {
        flag @ 0: AtomicU32,
        waiters @ 4: AtomicU32,
    }
}

impl fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEvent")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Default for RawEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl RawEvent {
    /// A clear event.
    pub fn new() -> Self {
        Self {
            flag: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the SeqCst (release) swap in `set`, so what the
        // setter wrote before `set` is visible after `is_set` returns true.
        self.flag.load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        // SeqCst: Release for `is_set`'s Acquire, and the store-buffer pairing
        // with the waiters' SeqCst `waiters` increment.
        self.flag.swap(1, Ordering::SeqCst);
        // SeqCst: pairs with the waiter's SeqCst `waiters` increment.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.flag, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(0, Ordering::Relaxed);
    }

    /// Waits until set or until `deadline`; returns whether it is set.
    pub(crate) fn wait_until(&self, deadline: Deadline) -> bool {
        if self.is_set() {
            return true;
        }
        // SeqCst: pairs with the SeqCst swap and load in `set`.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let set = loop {
            // SeqCst: the other half of the store-buffer pairing above.
            if self.flag.load(Ordering::SeqCst) != 0 {
                break true;
            }
            let Some(slice) = deadline.slice(SLICE) else {
                break false;
            };
            futex::wait(&self.flag, 0, slice);
        };
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        set
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.wait_until(Deadline::NEVER);
    }

    /// Waits at most `timeout` for the flag (Python's `wait(timeout)`, whose
    /// `True` is `Ok`).
    ///
    /// # Errors
    /// [`Timeout`] when the flag is still clear.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Timeout> {
        self.wait_by(Deadline::after(timeout))
    }

    /// Waits until `deadline` for the flag.
    ///
    /// # Errors
    /// [`Timeout`] when the flag is still clear.
    pub fn wait_deadline(&self, deadline: std::time::Instant) -> Result<(), Timeout> {
        self.wait_by(Deadline::at(deadline))
    }

    fn wait_by(&self, deadline: Deadline) -> Result<(), Timeout> {
        if self.wait_until(deadline) {
            Ok(())
        } else {
            Err(Timeout)
        }
    }

    /// Whether the flag is set, without waiting.
    ///
    /// # Errors
    /// [`WouldBlock`] when it is clear.
    pub fn try_wait(&self) -> Result<(), WouldBlock> {
        if self.is_set() {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }
}
