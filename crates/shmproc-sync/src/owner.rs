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
//! The packed word is only an encoding: whether its owner is alive is
//! judged by the workspace's one liveness rule,
//! [`OwnerRecord::is_alive`](shmproc_shm::OwnerRecord::is_alive), on the
//! [`OwnerRecord`] that [`owner_record`] unpacks.
//!
//! Under `cfg(shmproc_loom)` every identity and liveness answer here comes
//! from the model's registry (`crate::model`), one thread and process per
//! loom thread; the default build's functions are unchanged.
//!
//! Public (hidden from the docs) so that `shmproc-channel` records and checks
//! slot claimants the same way.

use std::cell::Cell;

use shmproc_shm::{OwnerRecord, os};

/// The largest pid the lock word can hold (Linux's `PID_MAX_LIMIT` is 2^22).
pub const PID_MASK: u32 = (1 << 22) - 1;

const START_BITS: u32 = 40;
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The calling process's pid, as stored in lock words (cached, fork-aware).
#[inline]
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn my_pid() -> u32 {
    #[cfg(shmproc_loom)]
    return crate::model::me().pid;
    // Pids are positive and below PID_MAX_LIMIT; mask defensively.
    os::identity::pid().as_u32() & PID_MASK
}

thread_local! {
    /// (pid the cache was filled in, tid, owner record): refreshed after a
    /// fork (the pid differs then).
    static ME: Cell<(u32, u32, u64)> = const { Cell::new((0, 0, 0)) };
}

/// The calling thread's tid and its process's owner record together (one
/// cache look-up for a hot path that needs both, such as a leased queue
/// operation; cached per thread, refreshed after fork).
#[inline]
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn my_tid_and_record() -> (u32, u64) {
    #[cfg(shmproc_loom)]
    return (crate::model::me().tid, my_record());
    let pid = my_pid();
    ME.with(|c| {
        let (p, t, r) = c.get();
        if p == pid && t != 0 {
            (t, r)
        } else {
            refresh_me(c, pid)
        }
    })
}

/// Fills this thread's identity cache (first use, or after a fork), out
/// of line so that the leased queue operations inlining
/// [`my_tid_and_record`] stay small.
#[cold]
#[inline(never)]
fn refresh_me(c: &Cell<(u32, u32, u64)>, pid: u32) -> (u32, u64) {
    let t = os::gettid().as_u32();
    let r = (u64::from(pid) << START_BITS) | (os::identity::start_time() & START_MASK);
    c.set((pid, t, r));
    (t, r)
}

/// The calling thread's kernel tid (cached per thread, refreshed after fork).
#[inline]
pub fn my_tid() -> u32 {
    my_tid_and_record().0
}

/// This process's owner record: `pid << 40 | start_time & (2^40 - 1)`.
#[inline]
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn my_record() -> u64 {
    #[cfg(shmproc_loom)]
    return (u64::from(my_pid()) << START_BITS) | (crate::model::me().start & START_MASK);
    my_tid_and_record().1
}

/// Bits 30..40 of a *tagged* record (ring slot claims) carry a tag naming
/// the claim (the lap of the claimed position), in place of the start
/// time's high bits; the start time keeps its low 30 bits (124 days of
/// ticks at 100 Hz).
const TAG_SHIFT: u32 = 30;
const TAG_MAX: u64 = (1 << (START_BITS - TAG_SHIFT)) - 1;
const TAG_FIELD: u64 = TAG_MAX << TAG_SHIFT;

/// This process's owner record for a claim tagged `tag` (only its low 10
/// bits are kept): [`my_record`] with bits 30..40 replaced by the tag.
#[inline]
pub fn my_tagged_record(tag: u64) -> u64 {
    (my_record() & !TAG_FIELD) | ((tag & TAG_MAX) << TAG_SHIFT)
}

/// Whether the claimant `pid` of a claim tagged `tag` is certainly dead:
/// no process has its pid (or it is a zombie), or `record` was written for
/// this very claim (same pid, same tag) and the pid now belongs to a
/// process with another start time. A record that does not name this
/// claim (not yet written, or left by an earlier claim) proves nothing, so
/// a live claimant is never judged dead, even in the instructions between
/// its claim and its record (the weakness [`owner_alive`] has).
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn tagged_owner_dead(pid: u32, record: u64, tag: u64) -> bool {
    let mine = record >> START_BITS == u64::from(pid)
        && (record & TAG_FIELD) >> TAG_SHIFT == tag & TAG_MAX;
    #[cfg(shmproc_loom)]
    return !crate::model::process_alive(pid, mine.then_some((record, START_MASK & !TAG_FIELD)));
    let owner = if mine {
        OwnerRecord::with_start_bits(pid, record, START_MASK & !TAG_FIELD)
    } else {
        OwnerRecord::pid_only(pid)
    };
    !owner.is_alive()
}

/// Whether the process that wrote `record` (one of its [`my_record`]s, as a
/// sleeper registers it) is certainly gone: as [`owner_alive`] for the pid
/// the record names (a record naming no valid pid names nobody alive).
pub fn record_owner_dead(record: u64) -> bool {
    let pid = u32::try_from(record >> START_BITS).unwrap_or(0);
    !owner_alive(pid, record)
}

/// Whether no thread has the kernel tid `tid` any more (in this pid
/// namespace): a thread that ended, or whose process died. A tid reused
/// since by another thread counts as present.
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn tid_gone(tid: u32) -> bool {
    #[cfg(shmproc_loom)]
    return !crate::model::thread_alive(tid);
    match os::Pid::from_u32(tid) {
        // A thread, not an owner: no start time to compare, so the bare
        // check. `pid_alive` asks `kill(tid, 0)` and `/proc/<tid>/stat`,
        // both of which answer for any thread, not only a process's first.
        Some(t) => !os::pid_alive(t),
        None => true,
    }
}

/// The owner a lock word's `pid` and its packed `record` name: the pid
/// with the record's start time bits when the record names the same pid
/// (otherwise the record, not yet written or left by an earlier owner,
/// proves nothing, and only the pid is checked).
pub fn owner_record(pid: u32, record: u64) -> OwnerRecord {
    if record >> START_BITS == u64::from(pid) {
        OwnerRecord::with_start_bits(pid, record, START_MASK)
    } else {
        OwnerRecord::pid_only(pid)
    }
}

/// Whether the process `pid` (taken from a lock word) still holds what it
/// holds: [`OwnerRecord::is_alive`] for [`owner_record`]`(pid, record)`
/// (it exists, is not a zombie, and, when `record` names the same pid, has
/// the recorded start time).
#[cfg_attr(shmproc_loom, allow(unreachable_code, unused_variables))]
pub fn owner_alive(pid: u32, record: u64) -> bool {
    #[cfg(shmproc_loom)]
    return crate::model::process_alive(
        pid,
        (record >> START_BITS == u64::from(pid)).then_some((record, START_MASK)),
    );
    owner_record(pid, record).is_alive()
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn own_identity_is_alive() {
        assert!(owner_alive(my_pid(), my_record()));
        assert!(owner_alive(my_pid(), 0));
        assert_eq!(my_tid(), os::gettid().as_u32());
    }

    #[test]
    fn tagged_records_name_one_claim() {
        let rec = my_tagged_record(5);
        assert!(!tagged_owner_dead(my_pid(), rec, 5));
        // Another start time, for this claim: dead.
        assert!(tagged_owner_dead(my_pid(), rec ^ 1, 5));
        // Another start time, but recorded for another claim: proves nothing.
        assert!(!tagged_owner_dead(my_pid(), rec ^ 1, 6));
        // Tags compare modulo 2^10.
        assert!(tagged_owner_dead(my_pid(), rec ^ 1, 5 + 1024));
        // No such process.
        assert!(tagged_owner_dead(0, 0, 0));
    }

    #[test]
    fn a_record_with_another_start_time_means_dead() {
        let rec = my_record() ^ 1;
        assert!(!owner_alive(my_pid(), rec));
        assert!(!owner_alive(0, 0));
    }
}
