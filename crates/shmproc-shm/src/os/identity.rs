//! The calling process's pid and start time, cached per process.
//!
//! Lock fast paths record their owner and must not pay a `getpid` system
//! call each time (glibc no longer caches it). The cache is reset in a forked
//! child by a `pthread_atfork` child handler (registered on first use), so
//! after [`fork`](super::fork) the child sees its own pid. A child created by a raw
//! `clone`/`vfork` that bypasses glibc's `fork` would keep the parent's
//! values: don't use shmproc locks from such a child.
//!
//! # References
//! `man 3 pthread_atfork`, `man 5 proc` (`/proc/pid/stat`, field 22)
#![allow(unsafe_code)] // Syscall fence: registers its fork handler with pthread_atfork.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use super::Pid;

static PID: AtomicI32 = AtomicI32::new(0);
/// `start_time + 1`, so that 0 means "not cached yet".
static START: AtomicU64 = AtomicU64::new(0);
/// The child handler's registration: [`UNREGISTERED`], [`REGISTERING`],
/// [`REGISTERED`] or [`FAILED`]. Not a `std::sync::Once`: a thread that
/// forks while another is inside `call_once` leaves its child a `Once`
/// that stays "running" forever, and the child's first `pid()` then
/// blocked for good (seen in the channel tests, whose test threads fork
/// while others start).
static ATFORK: AtomicU8 = AtomicU8::new(UNREGISTERED);
const UNREGISTERED: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
const FAILED: u8 = 3;

extern "C" fn reset_in_child() {
    // Only atomic stores: async-signal-safe, as a fork handler must be.
    PID.store(0, Ordering::Relaxed);
    START.store(0, Ordering::Relaxed);
}

/// Registers the child handler once; whether it is registered, that
/// is, whether the caller may cache. Never waits: while another thread
/// registers it (or, in a forked child, was registering it at the
/// fork, and never will finish), callers just do not cache.
fn register() -> bool {
    // Acquire: pairs with the Release store below (the handler is in
    // glibc's list before anyone caches).
    match ATFORK.load(Ordering::Acquire) {
        REGISTERED => return true,
        UNREGISTERED => {}
        _ => return false,
    }
    if ATFORK
        .compare_exchange(
            UNREGISTERED,
            REGISTERING,
            Ordering::Acquire,
            Ordering::Acquire,
        )
        .is_err()
    {
        return ATFORK.load(Ordering::Acquire) == REGISTERED;
    }
    // SAFETY: registers a handler that only performs two relaxed atomic
    // stores (async-signal-safe); the function lives for the whole program.
    let ret = unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
    // ENOMEM is the only documented failure; without the handler the
    // cache would be stale after fork, so never cache in that case.
    let state = if ret == 0 { REGISTERED } else { FAILED };
    // Release: pairs with the Acquire loads above.
    ATFORK.store(state, Ordering::Release);
    if ret != 0 {
        eprintln!("shmproc: pthread_atfork failed ({ret}); pid caching disabled");
    }
    ret == 0
}

/// The pid of the calling process (`getpid`, cached; see the module docs).
#[inline]
pub fn pid() -> Pid {
    if let Some(p) = Pid::from_raw(PID.load(Ordering::Relaxed)) {
        return p;
    }
    pid_slow()
}

/// [`pid`] before the cache is filled (or after a fork), out of line so
/// that the hot paths that inline `pid` stay small.
#[cold]
#[inline(never)]
fn pid_slow() -> Pid {
    let p = super::getpid();
    if register() {
        PID.store(p.as_raw(), Ordering::Relaxed);
    }
    p
}

/// The start time of the calling process in clock ticks since boot
/// (cached), or 0 when `/proc` cannot tell.
#[inline]
pub fn start_time() -> u64 {
    let s = START.load(Ordering::Relaxed);
    if s != 0 {
        return s - 1;
    }
    start_time_slow()
}

#[cold]
#[inline(never)]
fn start_time_slow() -> u64 {
    let s = super::process_start_time(super::getpid()).unwrap_or(0);
    if register() {
        START.store(s.saturating_add(1), Ordering::Relaxed);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn cached_identity_matches_the_kernel() {
        assert_eq!(super::pid(), super::super::getpid());
        assert_eq!(
            Some(super::start_time()),
            super::super::process_start_time(super::super::getpid())
        );
    }

    /// A child forked while another thread of its parent was
    /// registering the fork handler inherits a registration that never
    /// finishes: its identity calls must still answer (uncached)
    /// instead of waiting for it, as a `std::sync::Once` did.
    #[test]
    #[allow(unsafe_code)] // fork, to run the child side.
    fn a_registration_cut_off_by_fork_does_not_block_the_child() {
        use super::super::{
            ExitStatus, Forked, exit_now, fork, getpid, process_start_time, try_wait,
        };
        // SAFETY: the child only does atomic stores, system calls, a
        // `/proc` read, and leaves through `exit_now`.
        match unsafe { fork() }.expect("fork") {
            Forked::Child => {
                // What the child of a fork during registration sees.
                super::ATFORK.store(super::REGISTERING, super::Ordering::Relaxed);
                super::PID.store(0, super::Ordering::Relaxed);
                super::START.store(0, super::Ordering::Relaxed);
                let ok = super::pid() == getpid()
                    && Some(super::start_time()) == process_start_time(getpid())
                    && super::PID.load(super::Ordering::Relaxed) == 0;
                exit_now(if ok { 0 } else { 1 })
            }
            Forked::Parent(child) => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                let status = loop {
                    if let Some(st) = try_wait(child).expect("waitpid") {
                        break st;
                    }
                    assert!(std::time::Instant::now() < deadline, "the child blocked");
                    std::thread::yield_now();
                };
                assert_eq!(status, ExitStatus::Exited(0));
            }
        }
    }
}
