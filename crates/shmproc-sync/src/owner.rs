//! Who we are (pid, tid) and whether a recorded owner is still alive.
//!
//! A lock records its owner's pid in the futex word, and next to it an
//! *owner record*: the pid again and the low 40 bits of the owner's start
//! time (`/proc/<pid>/stat` field 22). A waiter that finds the pid alive but
//! with another start time knows the pid was reused by an unrelated process
//! and that the real owner is dead.
//!
//! Limits: the record is written just after the lock word changes hands, so in
//! the few instructions between them it can be missing or stale; a stale
//! record only counts when it names the *same* pid as the word, which needs
//! the previous holder to have died and its pid to have been recycled to the
//! new holder in that window.
//!
//! Public (hidden from the docs) so that `shmproc-channel` records and checks
//! slot claimants the same way.

use std::cell::Cell;

use shmproc_shm::os;

/// The largest pid the lock word can hold (Linux's `PID_MAX_LIMIT` is 2^22).
pub const PID_MASK: u32 = (1 << 22) - 1;

const START_BITS: u32 = 40;
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The calling process's pid, as stored in lock words (cached, fork-aware).
#[inline]
pub fn my_pid() -> u32 {
    // Pids are positive and below PID_MAX_LIMIT; mask defensively.
    (os::identity::pid() as u32) & PID_MASK
}

thread_local! {
    /// (pid the cache was filled in, tid): refreshed after a fork.
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's kernel tid (cached per thread, refreshed after fork).
#[inline]
pub fn my_tid() -> u32 {
    let pid = my_pid();
    TID.with(|c| {
        let (p, t) = c.get();
        if p == pid && t != 0 {
            t
        } else {
            let t = os::gettid() as u32;
            c.set((pid, t));
            t
        }
    })
}

/// This process's owner record: `pid << 40 | start_time & (2^40 - 1)`.
#[inline]
pub fn my_record() -> u64 {
    (u64::from(my_pid()) << START_BITS) | (os::identity::start_time() & START_MASK)
}

/// Whether the process `pid` (taken from a lock word) still holds what it
/// holds: it exists, is not a zombie, and, when `record` names the same pid,
/// has the recorded start time.
pub fn owner_alive(pid: u32, record: u64) -> bool {
    let Ok(p) = os::Pid::try_from(pid) else {
        return false;
    };
    if !os::pid_alive(p) {
        return false;
    }
    if record >> START_BITS == u64::from(pid) {
        let recorded = record & START_MASK;
        if let Some(start) = os::process_start_time(p) {
            if recorded != 0 && start & START_MASK != recorded {
                // The pid now belongs to another process: the owner is gone.
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_identity_is_alive() {
        assert!(owner_alive(my_pid(), my_record()));
        assert!(owner_alive(my_pid(), 0));
        assert_eq!(my_tid(), os::gettid() as u32);
    }

    #[test]
    fn a_record_with_another_start_time_means_dead() {
        let rec = my_record() ^ 1;
        assert!(!owner_alive(my_pid(), rec));
        assert!(!owner_alive(0, 0));
    }
}
