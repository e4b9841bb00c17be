//! Every system call of the workspace, in one place.
//!
//! Each function is a thin, documented wrapper over one Linux call (or a very
//! small group of them), returning [`std::io::Result`] with the OS error kept.
//! Nothing outside this module calls `libc` directly: the other crates of the
//! workspace, and the rest of this one, go through these functions.
//!
//! # Layout
//! The calls are grouped by API area in small private modules, as rustix
//! does in `src/backend/linux_raw/*/syscalls.rs`; everything is re-exported
//! here, so every function is `os::name` whichever file holds it:
//! - `shm`: named and anonymous segments, seals, reserving space;
//! - `futex`: futex wait and wake, `membarrier`;
//! - `pid`: [`Pid`], a process id that is always positive;
//! - `process`: process ids, signals and pidfds, the parent-death signal,
//!   sessions, `atexit`;
//! - `spawn`: `fork`, `posix_spawn`, `_exit`, waiting for children;
//! - `fd`: duplicating, adopting, polling and passing descriptors;
//! - `procfs`: everything read from `/proc` (liveness, start times, the
//!   `/dev/shm` entries processes map or hold open);
//! - `sys`: randomness, CPU counts, prefaulting, raw stderr writes;
//! - [`identity`]: the cached pid and start time of the calling process.
//!
//! This file holds no unsafe code; each module that calls `libc` opts in
//! with its own `#![allow(unsafe_code)]`.
//!
//! # References
//! The man pages named on each function: `man 2 futex`, `man 3 shm_open`, ...

use std::io;

mod fd;
mod futex;
pub mod identity;
mod pid;
mod process;
mod procfs;
mod shm;
mod spawn;
mod sys;

pub use fd::{
    MAX_PASSED_FDS, adopt_fd, dup_inheritable, poll_readable, recv_nowait, recv_with_fds,
    recv_with_fds_nowait, send_with_fds, socketpair_seqpacket,
};
pub use futex::{
    FutexWait, futex_wait, futex_wake, membarrier_global_expedited,
    membarrier_register_global_expedited,
};
pub use process::{
    SIGINT, SIGKILL, SIGTERM, at_exit, geteuid, getpid, getppid, gettid, kill, new_session,
    pidfd_open, pidfd_send_signal, set_parent_death_signal, stdio_to_dev_null,
};
pub use procfs::{
    maps_file, pid_alive, process_start_time, process_state, shm_in_use, thread_count,
    thread_count_cached,
};
pub use shm::{
    FsSpace, fallocate, fs_space, memfd_create, seal_size, shm_create_exclusive, shm_open_existing,
    shm_unlink,
};
pub use spawn::{
    ExitStatus, Forked, exit_now, fork, spawn_exe, try_wait, wait, wait_ended_unreaped,
};
pub use sys::{
    affinity_cpu_count, online_cpu_count, populate_read, populate_write, random_bytes, random_u64,
    write_stderr_raw,
};

pub use pid::{ParsePidError, Pid};

/// Converts a `-1`-on-error return into an `io::Result`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
