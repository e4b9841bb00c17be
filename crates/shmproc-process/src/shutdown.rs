//! What a process does with its children when it exits normally (Python's
//! exit handler): terminate the daemons, join the others.
//!
//! Layer 2 (this process's children): uses `started`.

use std::sync::Once;
use std::time::Duration;

use shmproc_shm::os;

use crate::started::{has_registered, registered};

/// How long a daemon child gets between `SIGTERM` and `SIGKILL` at exit.
pub const DAEMON_TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// Python's exit handler: terminate daemon children, then join the others.
#[inline]
pub(crate) fn shutdown_children() {
    if has_registered() {
        shutdown_registered_children();
    }
}

/// [`shutdown_children`] once this process has registered children.
#[inline(never)]
fn shutdown_registered_children() {
    let all = registered();
    let (daemons, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.info.daemon);
    for d in &daemons {
        let _ = d.signal(os::SIGTERM);
    }
    for d in daemons {
        if !matches!(d.join_timeout(DAEMON_TERMINATE_GRACE), Ok(Some(_))) {
            let _ = d.signal(os::SIGKILL);
            let _ = d.join_timeout(DAEMON_TERMINATE_GRACE);
        }
    }
    for o in others {
        let _ = o.join();
    }
}

extern "C" fn at_exit_hook() {
    let _ = std::panic::catch_unwind(shutdown_children);
}

/// Registers the exit handler, once per process.
pub(crate) fn register_at_exit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = os::at_exit(at_exit_hook) {
            os::write_stderr_raw(format!("shmproc: atexit failed: {e}\n").as_bytes());
        }
    });
}
