//! Locks read from a copy of their segments, for tools (`shmproc ls`,
//! `shmproc inspect`): who holds the lock, whether that process died, and
//! whether the lock is poisoned.
//!
//! The input is a [`Snapshot`]: bytes read through a read-only descriptor,
//! never a mapping, and never trusted; no input makes these functions panic.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmproc_shm::{SegmentName, inspect::Snapshot};
//! use shmproc_sync::{Lock, inspect};
//!
//! let name = SegmentName::unique("doc-inspect");
//! let lock = Lock::create(name.as_str())?;
//! let _held = lock.lock()?;
//! let report = inspect::inspect_lock(&Snapshot::read(name.as_str(), 4096)?).expect("a lock");
//! let state = report.lock.expect("16 bytes");
//! assert_eq!(state.owner_pid, Some(std::process::id()));
//! assert_eq!(state.holder_alive(), Some(true));
//! # Ok(()) }
//! ```

use shmproc_shm::inspect::{Problem, Snapshot};
use shmproc_shm::{SegmentKind, TypeSpec};

pub use crate::raw::LockSnapshot;
use crate::raw::{RawLock, RawRLock};

/// [`inspect_lock`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockReport {
    /// The lock at the start of the payload (`None`: the copy is too short).
    pub lock: Option<LockSnapshot>,
    /// Everything wrong, field by field; empty for a consistent segment.
    pub problems: Vec<Problem>,
}

/// Decodes the lock of a `Lock`, `RLock`, `Value` or `Array` segment (each
/// starts its payload with a [`RawLock`]) from `snap`; `None` for other
/// kinds. The holder's liveness is judged when asked
/// ([`LockSnapshot::holder_alive`]).
pub fn inspect_lock(snap: &Snapshot) -> Option<LockReport> {
    let header = snap.header();
    let kind = header.kind?;
    let spec = match kind {
        SegmentKind::LOCK => Some(TypeSpec::of::<RawLock>()),
        SegmentKind::RLOCK => Some(TypeSpec::of::<RawRLock>()),
        SegmentKind::VALUE | SegmentKind::ARRAY => None,
        _ => return None,
    };
    let mut problems = Vec::new();
    if let Some(spec) = spec {
        let want = spec.fingerprint();
        if let Some(fp) = header.fingerprint.filter(|&fp| fp != want) {
            problems.push(Problem::new(
                "fingerprint",
                format!("{fp:#018x}"),
                format!("{want:#018x} (a {kind} of this layout)"),
            ));
        }
        if snap.payload_len() != spec.size {
            problems.push(Problem::new(
                "segment length",
                format!("{} payload bytes", snap.payload_len()),
                format!("{} (one {})", spec.size, spec.stable_name()),
            ));
        }
    }
    let lock = LockSnapshot::decode(snap.payload());
    if lock.is_none() {
        problems.push(Problem::new(
            "lock",
            format!("{} bytes", snap.payload().len()),
            format!("{} bytes after the segment header", LockSnapshot::LEN),
        ));
    }
    Some(LockReport { lock, problems })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lock;
    use shmproc_shm::SegmentName;

    #[test]
    fn a_held_lock_and_any_bytes() {
        let name = SegmentName::unique("inspect-l");
        let lock = Lock::create(name.as_str()).expect("create");
        let snap = || Snapshot::read(name.as_str(), 4096).expect("read");
        let free = inspect_lock(&snap()).expect("a lock");
        assert_eq!(free.problems, []);
        assert_eq!(free.lock.and_then(|l| l.owner_pid), None);
        let g = lock.lock().expect("lock");
        let held = inspect_lock(&snap())
            .expect("a lock")
            .lock
            .expect("decoded");
        assert_eq!(held.owner_pid, Some(std::process::id()));
        assert_eq!(held.holder_alive(), Some(true));
        assert!(!held.poisoned);
        drop(g);

        let base = snap().bytes().to_vec();
        for n in 0..=base.len() {
            let prefix = base.get(..n).expect("in range").to_vec();
            let r = inspect_lock(&Snapshot::from_bytes("x", prefix, n as u64));
            if n >= 40 {
                assert!(r.is_some(), "{n} bytes: the kind is readable");
            }
        }
        assert!(LockSnapshot::decode(&[0xff; 16]).is_some_and(|l| l.poisoned));
    }
}
