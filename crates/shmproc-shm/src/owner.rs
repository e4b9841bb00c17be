//! [`OwnerRecord`]: who owns something, and the one rule that says whether
//! that owner is still alive.
//!
//! Every liveness judgement of the workspace goes through
//! [`OwnerRecord::is_alive`]: a lock's holder (`shmproc-sync` packs the
//! record into its lock words), a ring slot's claimant, a segment's creator
//! ([`cleanup`](crate::cleanup)), a queue's side segment. What differs is
//! only how much each of them recorded: a pid alone (a segment header), or
//! a pid and (some bits of) the owner's start time.

use crate::os::{self, Pid};

/// A process that owns something: its pid and, when it was recorded, its
/// start time (`/proc/<pid>/stat` field 22, clock ticks since boot), or the
/// low bits of it.
///
/// # The liveness rule
/// The owner is **alive** when a process with its pid exists and is not a
/// zombie (`kill(pid, 0)` and `/proc/<pid>/stat`), **and**, when a start
/// time was recorded, that process's start time has the recorded bits.
/// Everything else is dead: no such pid, a zombie (dead, not yet reaped), a
/// pid that is no process at all (0, negative, beyond `i32`), or a pid
/// reused by a process started at another time.
///
/// The rule errs one way only: what it cannot check (no `/proc`, a start
/// time it cannot read, a process it may not signal) counts as alive. A
/// live owner is never judged dead; a dead one whose pid was recycled looks
/// alive when no start time was recorded (segment headers record none), so
/// whatever it owned is kept, never removed under a user.
///
/// # Examples
/// ```
/// use shmproc_shm::OwnerRecord;
/// assert!(OwnerRecord::current().is_alive());
/// assert!(OwnerRecord::pid_only(std::process::id()).is_alive());
/// assert!(!OwnerRecord::pid_only(0).is_alive());
/// // Our pid with another start time: a process that reused our pid.
/// let me = OwnerRecord::current();
/// if let Some(t) = me.start_time() {
///     assert!(!OwnerRecord::new(me.pid(), t + 1).is_alive());
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerRecord {
    pid: u32,
    /// The recorded bits of the start time (`start & !start_mask == 0`);
    /// 0 means none were recorded.
    start: u64,
    /// Which bits of the start time `start` holds (0: none).
    start_mask: u64,
}

impl OwnerRecord {
    /// The owner `pid`, started at `start_time` (0: not recorded).
    pub const fn new(pid: u32, start_time: u64) -> Self {
        Self::with_start_bits(pid, start_time, u64::MAX)
    }

    /// The owner `pid`, with no start time recorded: a recycled pid makes it
    /// look alive.
    pub const fn pid_only(pid: u32) -> Self {
        Self::with_start_bits(pid, 0, 0)
    }

    /// The owner `pid`, of whose start time only the bits in `mask` were
    /// recorded (`start_bits & mask`; all of them 0: not recorded). Lock
    /// words keep 40 bits, tagged slot claims 30.
    pub const fn with_start_bits(pid: u32, start_bits: u64, mask: u64) -> Self {
        let start = start_bits & mask;
        Self {
            pid,
            start,
            start_mask: if start == 0 { 0 } else { mask },
        }
    }

    /// The calling process (its cached pid and start time; fork-aware).
    pub fn current() -> Self {
        Self::new(os::identity::pid().as_u32(), os::identity::start_time())
    }

    /// The process `pid` as it is now: its start time read from `/proc`
    /// (none recorded when it cannot be read).
    pub fn of(pid: Pid) -> Self {
        Self::new(pid.as_u32(), os::process_start_time(pid).unwrap_or(0))
    }

    /// The recorded pid.
    pub const fn pid(&self) -> u32 {
        self.pid
    }

    /// The recorded start time bits, or `None` when none were recorded.
    pub const fn start_time(&self) -> Option<u64> {
        if self.start_mask == 0 {
            None
        } else {
            Some(self.start)
        }
    }

    /// Whether the owner is alive: see [the rule](Self#the-liveness-rule).
    ///
    /// # References
    /// `man 2 kill`, `man 5 proc` (`/proc/pid/stat` fields 3 and 22)
    pub fn is_alive(&self) -> bool {
        let Some(pid) = Pid::from_u32(self.pid) else {
            return false;
        };
        if !os::pid_alive(pid) {
            return false;
        }
        if self.start_mask != 0 {
            if let Some(now) = os::process_start_time(pid) {
                if now & self.start_mask != self.start {
                    // The pid now belongs to another process.
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calling_process_is_alive() {
        let me = OwnerRecord::current();
        assert!(me.is_alive());
        assert_eq!(me.pid(), std::process::id());
        assert_eq!(OwnerRecord::of(os::getpid()), me);
        assert!(OwnerRecord::pid_only(me.pid()).is_alive());
        assert!(OwnerRecord::new(me.pid(), 0).is_alive());
    }

    #[test]
    fn another_start_time_means_a_reused_pid() {
        let me = OwnerRecord::current();
        let t = me.start_time().expect("/proc is mounted");
        assert!(!OwnerRecord::new(me.pid(), t ^ 1).is_alive());
        // Only the recorded bits count.
        let mask = (1 << 40) - 1;
        assert!(OwnerRecord::with_start_bits(me.pid(), t | (1 << 50), mask).is_alive());
        assert!(!OwnerRecord::with_start_bits(me.pid(), t ^ 1, mask).is_alive());
        // Recorded bits that are all 0: nothing recorded.
        assert_eq!(
            OwnerRecord::with_start_bits(me.pid(), 1 << 50, mask).start_time(),
            None
        );
    }

    #[test]
    fn no_process_is_dead() {
        assert!(!OwnerRecord::pid_only(0).is_alive());
        assert!(!OwnerRecord::pid_only(u32::MAX).is_alive());
        assert!(!OwnerRecord::pid_only(1 << 31).is_alive());
    }
}
