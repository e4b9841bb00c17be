//! Crash points for tests (`--cfg shmproc_crash_points`, never in a shipped
//! build: the tested hot path is the shipped one): the process aborts at a
//! named point of the protocol when `SHMPROC_CRASH_POINT` names it, after
//! `SHMPROC_CRASH_AFTER` (default 0) passes through it.
//!
//! | point | where |
//! |---|---|
//! | `put-claimed` | a producer, after claiming a slot, before publishing it |
//! | `get-claimed` | a consumer, after claiming a slot, before releasing it |

/// Aborts here if the environment says so (a no-op without the cfg).
#[cfg(shmproc_crash_points)]
#[cfg_attr(shmproc_loom, allow(dead_code))]
pub(crate) fn point(name: &'static str) {
    use shmproc_shm::sync::real::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static CONFIG: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static PASSES: AtomicU64 = AtomicU64::new(0);
    let cfg = CONFIG.get_or_init(|| {
        let point = std::env::var("SHMPROC_CRASH_POINT").ok()?;
        let after = std::env::var("SHMPROC_CRASH_AFTER")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Some((point, after))
    });
    if let Some((point, after)) = cfg {
        if point == name && PASSES.fetch_add(1, Ordering::Relaxed) >= *after {
            std::process::abort();
        }
    }
}

/// Under the model: the calling model thread dies here when its model
/// named this point (`shmproc_sync::model::die_at`).
#[cfg(all(shmproc_loom, not(shmproc_crash_points)))]
pub(crate) fn point(name: &'static str) {
    shmproc_sync::model::crash_point(name);
}

/// Without the cfg: nothing.
#[cfg(not(any(shmproc_crash_points, shmproc_loom)))]
#[inline(always)]
pub(crate) fn point(_name: &'static str) {}
