//! The calling process and the others: ids (`getpid`, `gettid`, ...),
//! signals (`kill`, `pidfd_open`, `pidfd_send_signal`, the parent-death
//! signal), leaving the terminal's session (`setsid`, `/dev/null` stdio) and
//! exit handlers (`atexit`).
#![allow(unsafe_code)] // Syscall fence: getppid, kill, pidfd_*, prctl, setsid, dup2, atexit via libc.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{Pid, cvt};

/// `getpid()`.
pub fn getpid() -> Pid {
    Pid::from_kernel(i32::try_from(std::process::id()).unwrap_or(i32::MAX))
}

/// `getppid()`; `None` when the parent lies outside this process's pid
/// namespace (the kernel answers 0).
pub fn getppid() -> Option<Pid> {
    // SAFETY: getppid has no preconditions and cannot fail.
    Pid::from_raw(unsafe { libc::getppid() })
}

/// `gettid()`: the kernel id of the calling thread.
pub fn gettid() -> Pid {
    // SAFETY: gettid has no preconditions and cannot fail.
    Pid::from_kernel(unsafe { libc::gettid() })
}

/// `geteuid()`.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `SIGKILL`.
pub const SIGKILL: i32 = libc::SIGKILL;
/// `SIGTERM`.
pub const SIGTERM: i32 = libc::SIGTERM;

/// `SIGINT`.
pub const SIGINT: i32 = libc::SIGINT;

/// `kill(pid, sig)`.
///
/// # References
/// `man 2 kill`
pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; `pid` is positive (a `Pid`), so it names one
    // process, never a group; an invalid signal is reported as an error.
    cvt(unsafe { libc::kill(pid.as_raw(), sig) }).map(drop)
}

/// `prctl(PR_SET_PDEATHSIG, sig)`, then a `getppid()` check that closes the
/// race with a parent that died before the `prctl`.
///
/// Returns `false` when the parent is already gone (the parent is no longer
/// `expected_parent`): the caller should exit.
///
/// The signal fires when the *thread* that forked this process exits, not
/// when the whole parent process does.
///
/// # References
/// `man 2 prctl` (`PR_SET_PDEATHSIG`)
#[doc(alias = "prctl")]
pub fn set_parent_death_signal(sig: i32, expected_parent: Pid) -> io::Result<bool> {
    let sig =
        libc::c_ulong::try_from(sig).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) })?;
    Ok(getppid() == Some(expected_parent))
}

/// `pidfd_open(pid, 0)`: a descriptor that names process `pid` for good (it
/// never refers to a later process that reuses the pid). It becomes readable
/// when the process exits; it works for any process, not only children.
///
/// The descriptor is close-on-exec.
///
/// # References
/// `man 2 pidfd_open`
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with two integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0u32) };
    let fd = libc::c_int::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    cvt(fd)?;
    // SAFETY: `fd` was just returned by a successful `pidfd_open` and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals the process behind a
/// pidfd, with no risk of hitting a process that reused its pid. `ESRCH`
/// once it has exited.
///
/// # References
/// `man 2 pidfd_send_signal`
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; the siginfo pointer is null, as allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsid()`: makes the calling process the leader of a new session and
/// process group, detached from any controlling terminal (so a Ctrl-C or a
/// hang-up meant for the program's group does not reach it).
///
/// # References
/// `man 2 setsid`
#[doc(alias = "setsid")]
pub fn new_session() -> io::Result<Pid> {
    // SAFETY: setsid has no preconditions.
    cvt(unsafe { libc::setsid() }).map(Pid::from_kernel)
}

/// Points standard input, output and error at `/dev/null` (`open` + `dup2`),
/// so a background helper process holds no pipe its parent's reader waits
/// on for end-of-file.
///
/// # References
/// `man 2 dup2`
#[doc(alias = "dup2")]
pub fn stdio_to_dev_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: dup2 on a descriptor we own onto a standard stream number;
        // the previous stream is closed atomically by the kernel.
        cvt(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// `atexit(f)`: runs `f` when the process calls `exit` (returning from
/// `main` included), not on `_exit` or death by a signal.
///
/// # References
/// `man 3 atexit`
#[doc(alias = "atexit")]
pub fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain function that lives for the whole program.
    let ret = unsafe { libc::atexit(f) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::ENOMEM))
    }
}
