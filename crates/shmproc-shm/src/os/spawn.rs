//! Child processes: starting them (`fork`, `posix_spawn`), leaving a forked
//! child (`_exit`), and waiting for them to end (`waitpid`, `waitid`).
#![allow(unsafe_code)] // Syscall fence: fork, _exit, posix_spawn, waitpid and waitid through libc.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Pid, cvt};

/// What [`fork`] returned in the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// This is the new child process.
    Child,
    /// This is the parent; the child has this pid.
    Parent(Pid),
}

/// `fork()`.
///
/// # Errors
/// The OS error when no process could be created (`EAGAIN`, `ENOMEM`).
///
/// # Safety
/// - If the calling process has other threads, the child must restrict itself
///   to async-signal-safe operations until it calls `exec` or [`exit_now`]:
///   a lock (the allocator's, stdout's) held by another thread at the moment of
///   the fork stays locked forever in the child.
/// - The child must leave through [`exit_now`] (or `exec`), never by returning
///   into code that would run the parent's destructors or test harness twice.
///
/// # References
/// `man 2 fork`
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the post-fork restrictions (`# Safety` above).
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(match Pid::from_raw(pid) {
        None => Forked::Child,
        Some(child) => Forked::Parent(child),
    })
}

/// `_exit(code)`: ends the process at once, without running `atexit`
/// handlers, destructors or stdio flushes (right for a forked child).
///
/// # References
/// `man 2 _exit`
#[doc(alias = "_exit")]
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `posix_spawn(path, argv, envp)` with an empty signal mask, keeping the
/// descriptors in `keep` open in the child under the same numbers even if
/// they are close-on-exec (a `dup2(fd, fd)` file action clears the flag in
/// the child only, glibc 2.29 and later), so no other child started at the
/// same time inherits them.
///
/// glibc runs it as `clone(CLONE_VM | CLONE_VFORK)` + `execve`: no copy of
/// the parent's page tables, and safe in a multi-threaded process.
///
/// # References
/// `man 3 posix_spawn`, `man 3 posix_spawn_file_actions_adddup2`
#[doc(alias = "posix_spawn")]
pub fn spawn_exe(
    path: &CStr,
    argv: &[&CStr],
    envp: &[&CStr],
    keep: &[BorrowedFd<'_>],
) -> io::Result<Pid> {
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
    argv_p.push(std::ptr::null_mut());
    let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|s| s.as_ptr().cast_mut()).collect();
    envp_p.push(std::ptr::null_mut());

    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: `actions` is valid for writes; init fills it.
    let err = unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: `attr` is valid for writes; init fills it.
    let err = unsafe { libc::posix_spawnattr_init(attr.as_mut_ptr()) };
    if err != 0 {
        // SAFETY: `actions` was initialised above and is destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
        return Err(io::Error::from_raw_os_error(err));
    }
    let result = (|| {
        for fd in keep {
            let raw = fd.as_raw_fd();
            // SAFETY: `actions` was initialised above; `raw` is an open descriptor.
            let err =
                unsafe { libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), raw, raw) };
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `empty` is valid for writes; sigemptyset fills it.
        unsafe { libc::sigemptyset(empty.as_mut_ptr()) };
        // SAFETY: `attr` was initialised above; `empty` was filled by sigemptyset.
        let err = unsafe { libc::posix_spawnattr_setsigmask(attr.as_mut_ptr(), empty.as_ptr()) };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        let flags = libc::c_short::try_from(libc::POSIX_SPAWN_SETSIGMASK).unwrap_or(0);
        // SAFETY: `attr` was initialised above.
        let err = unsafe { libc::posix_spawnattr_setflags(attr.as_mut_ptr(), flags) };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        let mut pid: libc::pid_t = 0;
        // SAFETY: `path` is NUL-terminated; `argv_p` and `envp_p` are
        // NULL-terminated arrays of NUL-terminated strings that outlive the call;
        // `actions` and `attr` were initialised above.
        let err = unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv_p.as_ptr(),
                envp_p.as_ptr(),
            )
        };
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
        Ok(Pid::from_kernel(pid))
    })();
    // SAFETY: both were initialised above and are destroyed exactly once.
    unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
    // SAFETY: as above.
    unsafe { libc::posix_spawnattr_destroy(attr.as_mut_ptr()) };
    result
}

/// How a process ended, decoded from a `waitpid` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)` or returned from `main`.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's convention: the exit code, or `-N` when killed by signal `N`.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -s,
        }
    }
}

/// `waitpid(pid, WNOHANG)`: reaps `pid` if it has ended; `Ok(None)` if it is
/// still running.
///
/// # References
/// `man 2 waitpid`
#[doc(alias = "waitpid")]
pub fn try_wait(pid: Pid) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable int for the duration of the call.
    let ret = cvt(unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::WNOHANG) })?;
    if ret == 0 {
        return Ok(None);
    }
    Ok(Some(decode_status(status)))
}

/// `waitpid(pid, 0)`: blocks until `pid` ends and reaps it.
///
/// # References
/// `man 2 waitpid`
#[doc(alias = "waitpid")]
pub fn wait(pid: Pid) -> io::Result<ExitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the duration of the call.
        let ret = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if ret == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(decode_status(status));
    }
}

fn decode_status(status: libc::c_int) -> ExitStatus {
    if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    }
}

/// `waitid(P_PID, pid, WEXITED | WNOWAIT)`: blocks until child `pid` has
/// ended, **without** reaping it. The child stays a zombie, so its pid
/// cannot name another process until a later `waitpid` reaps it. Restarts
/// after a signal.
///
/// # Errors
/// `ECHILD` when `pid` is not an unreaped child of this process (reaped by
/// another thread meanwhile, or by the kernel when `SIGCHLD` is ignored).
///
/// # References
/// `man 2 waitid`
#[doc(alias = "waitid")]
pub fn wait_ended_unreaped(pid: Pid) -> io::Result<()> {
    let id: libc::id_t = pid.as_u32();
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    loop {
        // SAFETY: `info` is valid, writable storage for one siginfo_t for the
        // whole call (zeroed, as `waitid` may leave it untouched).
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
