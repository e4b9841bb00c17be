//! [`Pid`]: a process id that is always positive.

use std::fmt;
use std::num::NonZeroI32;

/// A process id (or a thread id, for `gettid`): always positive.
///
/// `kill(0, sig)` signals the caller's whole process group and
/// `kill(-1, sig)` every process the caller may signal; a `Pid` can be
/// neither, so no signal sent through shmproc goes to a group by mistake
/// (rustix's `Pid(NonZeroI32)`, with the sign checked too).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Pid(NonZeroI32);

impl Pid {
    /// `raw` as a pid; `None` for 0 and negative values.
    pub const fn from_raw(raw: i32) -> Option<Pid> {
        if raw <= 0 {
            return None;
        }
        match NonZeroI32::new(raw) {
            Some(n) => Some(Pid(n)),
            None => None,
        }
    }

    /// An unsigned id (a segment header's creator pid, an owner record) as a
    /// pid; `None` for 0 and for values above `i32::MAX`.
    pub fn from_u32(raw: u32) -> Option<Pid> {
        i32::try_from(raw).ok().and_then(Pid::from_raw)
    }

    /// A pid the kernel just returned (`getpid`, `fork`, `posix_spawn`,
    /// `setsid`), which is positive by the kernel's contract.
    pub(crate) fn from_kernel(raw: i32) -> Pid {
        Pid::from_raw(raw).expect("the kernel returned a non-positive process id")
    }

    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0.get()
    }

    /// The number, unsigned (it is positive).
    pub const fn as_u32(self) -> u32 {
        self.0.get().unsigned_abs()
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_raw(), f)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_raw(), f)
    }
}

impl fmt::LowerHex for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.as_raw(), f)
    }
}

/// A string that is not a positive process id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a process id (a positive integer)")]
pub struct ParsePidError(pub String);

impl std::str::FromStr for Pid {
    type Err = ParsePidError;

    fn from_str(s: &str) -> Result<Pid, ParsePidError> {
        s.parse::<i32>()
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| ParsePidError(s.to_owned()))
    }
}

impl From<Pid> for i32 {
    fn from(p: Pid) -> i32 {
        p.as_raw()
    }
}

impl From<Pid> for i64 {
    fn from(p: Pid) -> i64 {
        i64::from(p.as_raw())
    }
}

impl From<Pid> for u32 {
    fn from(p: Pid) -> u32 {
        p.as_u32()
    }
}

#[cfg(test)]
mod tests {
    use super::Pid;

    #[test]
    fn only_positive_ids_are_pids() {
        assert_eq!(Pid::from_raw(0), None);
        assert_eq!(Pid::from_raw(-1), None);
        assert_eq!(Pid::from_raw(i32::MIN), None);
        assert_eq!(Pid::from_raw(7).map(Pid::as_raw), Some(7));
        assert_eq!(Pid::from_u32(0), None);
        assert_eq!(Pid::from_u32(u32::MAX), None);
        assert_eq!(Pid::from_u32(42).map(u32::from), Some(42));
    }
}
