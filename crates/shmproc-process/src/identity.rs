//! The identity of the current process (`current_process()`,
//! `parent_process()`), set once by a child's bootstrap.
//!
//! Layer 0 (foundations): uses no other module of this crate.

use std::sync::atomic::{AtomicPtr, Ordering};

use shmproc_shm::os::{self, Pid};

/// The identity of a process, as `current_process()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its name (`MainProcess` for the top-level process).
    pub name: String,
    /// Its pid.
    pub pid: Pid,
    /// Whether it is a daemon (then it may not start children).
    pub daemon: bool,
    /// The process that started it, for a child started by shmproc.
    pub parent: Option<ParentInfo>,
}

impl ProcessInfo {
    /// The identity of a child named `name`, started by `parent_pid`.
    pub(crate) fn child(name: String, daemon: bool, parent_pid: Pid) -> ProcessInfo {
        ProcessInfo {
            name,
            // A placeholder: `current()` reads the pid when asked (a forked
            // child's is not known before the fork).
            pid: parent_pid,
            daemon,
            parent: Some(ParentInfo {
                pid: parent_pid,
                start_time: None,
            }),
        }
    }
}

/// The process that started this one (`parent_process()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentInfo {
    /// The parent's pid.
    pub pid: Pid,
    /// Reserved: the parent's start time, when known.
    pub start_time: Option<u64>,
}

impl ParentInfo {
    /// Whether the parent is still alive (for a fork-server child, the
    /// process that asked for it, not the server).
    pub fn is_alive(&self) -> bool {
        shmproc_shm::OwnerRecord::pid_only(self.pid.as_u32()).is_alive()
    }
}

static CURRENT: AtomicPtr<ProcessInfo> = AtomicPtr::new(std::ptr::null_mut());

pub(crate) fn set_current(info: &'static ProcessInfo) {
    // Lock-free, so a forked child can replace it whatever another thread
    // was doing at the fork.
    let p = std::ptr::from_ref(info).cast_mut();
    // Release: pairs with the Acquire load in `current`.
    CURRENT.store(p, Ordering::Release);
}

/// The identity of the calling process.
pub(crate) fn current() -> ProcessInfo {
    match current_child() {
        // The pid is not known before a fork: read it now.
        Some(info) => ProcessInfo {
            pid: os::identity::pid(),
            ..info.clone()
        },
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid: os::identity::pid(),
            daemon: false,
            parent: None,
        },
    }
}

/// The identity of the calling process when shmproc started it, without a
/// copy (`start` asks on every call); `None` at the top.
pub(crate) fn current_child() -> Option<&'static ProcessInfo> {
    // Acquire: pairs with the Release store in `set_current`.
    let p = CURRENT.load(Ordering::Acquire);
    std::ptr::NonNull::new(p).map(leaked_info)
}

#[allow(unsafe_code)] // Reads back the `&'static ProcessInfo` stored in `set_current`.
fn leaked_info(p: std::ptr::NonNull<ProcessInfo>) -> &'static ProcessInfo {
    // SAFETY: non-null values of CURRENT come from the `&'static ProcessInfo`
    // given to `set_current` (a leaked `Box`, or a field of a forked child's
    // leaked `Started`), valid for 'static and never freed.
    unsafe { p.as_ref() }
}
