//! Waiting on and waking shared futex words (`futex`), and process-wide
//! memory barriers (`membarrier`).
#![allow(unsafe_code)] // Syscall fence: futex and membarrier through libc::syscall.

use std::io;
use std::time::Duration;

use crate::sync::real::AtomicU32;

/// The result of a [`futex_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by a `futex_wake` (or spuriously): re-check the condition.
    Woken,
    /// The word did not hold the expected value when the call began.
    ValueChanged,
    /// The timeout passed.
    TimedOut,
    /// A signal interrupted the wait.
    Interrupted,
}

/// `futex(word, FUTEX_WAIT, expected, timeout)` on a **shared** futex word
/// (no `FUTEX_PRIVATE_FLAG`), so it pairs with wakers in other processes that
/// map the same page.
///
/// The timeout is relative; `None` waits until woken.
///
/// # References
/// `man 2 futex`
#[doc(alias = "futex")]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call; `ts_ptr`
    // is null or points to a timespec that outlives the call. FUTEX_WAIT only
    // reads the word atomically and never writes through either pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if ret == 0 {
        return FutexWait::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::ValueChanged,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        Some(libc::EINTR) => FutexWait::Interrupted,
        // EFAULT/EINVAL cannot happen for a valid aligned atomic; report a wake so
        // the caller re-checks its condition instead of sleeping forever.
        _ => FutexWait::Woken,
    }
}

/// `futex(word, FUTEX_WAKE, n)` on a shared futex word: wakes up to `n`
/// waiters, in any process. Returns how many were woken.
///
/// # References
/// `man 2 futex`
#[doc(alias = "futex")]
pub fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access
    // memory through the pointer beyond using its address as a key.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    usize::try_from(ret).unwrap_or(0)
}

/// `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0)`: from now on
/// this process receives the barriers of [`membarrier_global_expedited`]
/// (idempotent; `exec` drops the registration).
///
/// # Errors
/// `ENOSYS` or `EINVAL` where the kernel lacks the command, `EPERM` where a
/// seccomp filter forbids the call.
///
/// # References
/// `man 2 membarrier`
#[doc(alias = "membarrier")]
pub fn membarrier_register_global_expedited() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0)`: every thread of every
/// registered process that is running now executes a full memory barrier
/// before the call returns (the others pass one when they are scheduled),
/// and so does the caller. The heavy half of an asymmetric Dekker pair.
///
/// # Errors
/// As [`membarrier_register_global_expedited`].
///
/// # References
/// `man 2 membarrier`
#[doc(alias = "membarrier")]
pub fn membarrier_global_expedited() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
}

// From <linux/membarrier.h> (stable kernel ABI since 4.16).
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

fn membarrier(cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: membarrier takes integers only (cmd, flags 0, cpu_id 0) and
    // touches no user memory.
    let ret = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_wait_reports_value_mismatch_and_timeout() {
        let w = AtomicU32::new(7);
        assert_eq!(futex_wait(&w, 8, None), FutexWait::ValueChanged);
        assert_eq!(
            futex_wait(&w, 7, Some(Duration::from_millis(1))),
            FutexWait::TimedOut
        );
        assert_eq!(futex_wake(&w, 1), 0);
    }
}
