//! This process's crash-cleanup session tag: set once, by the first named
//! segment (which starts the tracker, see `tracker`), or inherited from the
//! parent (through `fork`, or in [`ENV_SESSION`]).
//!
//! Layer 0 (foundations): uses no other module of this crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that carries the session tag to `spawn` and
/// `forkserver` children.
pub(crate) const ENV_SESSION: &str = "SHMPROC_SESSION";
/// This process's session tag; 0 while not known yet, [`NO_SESSION`] when
/// there is none (tracker disabled, or it could not start).
static SESSION: AtomicU64 = AtomicU64::new(0);
/// Set by the thread that starts the tracker.
static STARTING: AtomicBool = AtomicBool::new(false);
/// The value of `SESSION` when this process has no session.
pub(crate) const NO_SESSION: u64 = u64::MAX;

/// This process's session tag (0: none); the first caller runs `start`
/// (which returns the tag, or [`NO_SESSION`]) while later ones wait for it.
pub(crate) fn get_or_start(start: fn() -> u64) -> u64 {
    let s = SESSION.load(Ordering::Acquire);
    if s != 0 {
        return if s == NO_SESSION { 0 } else { s };
    }
    if STARTING
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let s = start();
        // Release: pairs with the Acquire loads above and below.
        SESSION.store(s, Ordering::Release);
        return if s == NO_SESSION { 0 } else { s };
    }
    // Another thread is starting it (or was, in the parent of this forked
    // child, and will never finish here): wait a bounded time.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let s = SESSION.load(Ordering::Acquire);
        if s != 0 {
            return if s == NO_SESSION { 0 } else { s };
        }
        std::thread::yield_now();
    }
    0
}

/// The session tag already known to this process (inherited through fork,
/// or made by [`get_or_start`]), without starting anything.
pub(crate) fn known() -> Option<u64> {
    match SESSION.load(Ordering::Acquire) {
        0 | NO_SESSION => None,
        s => Some(s),
    }
}
