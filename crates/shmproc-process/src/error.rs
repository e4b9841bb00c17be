//! Errors of process creation, arguments and joins.
//!
//! Layer 0 (foundations): uses `start_method`.

use std::io;

use crate::start_method::StartMethod;

/// Everything that can go wrong starting, joining or signalling a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `start` was called on a process that was already started.
    #[error("process {name:?} was already started")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },
    /// The operation needs a started process.
    #[error("process {name:?} was not started")]
    NotStarted {
        /// The process's name.
        name: String,
    },
    /// The process has no target.
    #[error("process {name:?} has no target")]
    NoTarget {
        /// The process's name.
        name: String,
    },
    /// A `join_timeout` / `join_deadline` passed with the process running
    /// (it is left running).
    #[error("process {name:?} is still running after {waited:?}")]
    Timeout {
        /// The process's name.
        name: String,
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// `close` on a process that is still running.
    #[error("process {name:?} (pid {pid}) is still running; join it before close")]
    StillRunning {
        /// The process's name.
        name: String,
        /// Its pid.
        pid: shmproc_shm::os::Pid,
    },
    /// A closure target can only run in a forked child: `spawn` and
    /// `forkserver` start a fresh image and need a plain `fn`.
    #[error(
        "a closure target needs the fork start method (this process uses {method}); use a plain fn with Transfer arguments"
    )]
    ClosureNeedsFork {
        /// The start method in use.
        method: StartMethod,
    },
    /// `fork` was refused because the process has other threads.
    #[error(
        "refusing to fork: this process has {threads} threads, and a forked child of a \
         multi-threaded process may deadlock on a lock another thread held (malloc's, stdout's); \
         use the spawn or forkserver start method, or allow it with Context::allow_fork_with_threads"
    )]
    ForkWithThreads {
        /// Threads counted in `/proc/self/task`.
        threads: usize,
    },
    /// A daemon process may not start children (as in Python).
    #[error("daemonic processes are not allowed to have children")]
    DaemonCannotHaveChildren,
    /// The target `fn` is not in the main executable (a `dylib`), so its
    /// address cannot be found again in a re-executed image.
    #[error(
        "the target fn at {addr:#x} is not inside the main executable; spawn and forkserver need a fn linked into the executable"
    )]
    TargetOutsideExecutable {
        /// The function's address.
        addr: usize,
    },
    /// A spawned child found a boot record that was not written by a parent
    /// running the same executable, or was malformed.
    #[error("bad boot record: {0}")]
    BadBoot(String),
    /// The arguments could not be encoded or decoded.
    #[error("argument {what}: {detail}")]
    Args {
        /// Which value.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// An argument could not be passed: malformed, not encodable, or a
    /// shared object that could not be reopened in the child.
    #[error(transparent)]
    Transfer(#[from] shmproc_shm::transfer::TransferError),
    /// `set_start_method` was called a second time without `force`.
    #[error("the start method was already set to {current}; pass force = true to change it")]
    StartMethodAlreadySet {
        /// The method in force.
        current: StartMethod,
    },
    /// The fork server is gone or answered nonsense.
    #[error("fork server: {0}")]
    ForkServer(String),
    /// An internal failure (a helper thread is gone).
    #[error("internal: {0}")]
    Internal(String),
    /// A segment error (the child's report segment).
    #[error(transparent)]
    Segment(#[from] shmproc_shm::SegmentError),
    /// An operating-system error.
    #[error("{op}: {source}")]
    Os {
        /// The call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ProcessError {
    pub(crate) fn os(op: &'static str) -> impl FnOnce(io::Error) -> ProcessError {
        move |source| ProcessError::Os { op, source }
    }

    pub(crate) fn args(what: &'static str, detail: impl Into<String>) -> ProcessError {
        ProcessError::Args {
            what,
            detail: detail.into(),
        }
    }
}
