//! Every system call of the workspace, in one place.
//!
//! Each function is a thin, documented wrapper over one Linux call (or a very
//! small group of them), returning [`std::io::Result`] with the OS error kept.
//! Nothing outside this module calls `libc` directly: the other crates of the
//! workspace, and the rest of this one, go through these functions.
//!
//! # References
//! The man pages named on each function: `man 2 futex`, `man 3 shm_open`, ...
#![allow(unsafe_code)] // The syscall fence: this module is where unsafe FFI lives.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::sync::real::AtomicU32;

/// A process id as the kernel gives it (always positive for a real process).
pub type Pid = i32;

/// Converts a `-1`-on-error return into an `io::Result`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600)`, then
/// `fchmod(fd, 0600)` so the process umask cannot widen or narrow the mode.
///
/// `name` starts with `/` and contains no other `/` (checked by the caller).
///
/// # References
/// `man 3 shm_open`, `man 2 fchmod`
#[doc(alias = "shm_open")]
pub fn shm_create_exclusive(name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), flags, 0o600) })?;
    // SAFETY: `fd` was just returned by a successful `shm_open` and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on a valid, open descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) })?;
    Ok(fd)
}

/// `shm_open(name, O_RDWR | O_CLOEXEC)`: opens an existing named segment.
///
/// # References
/// `man 3 shm_open`
#[doc(alias = "shm_open")]
pub fn shm_open_existing(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by a successful `shm_open` and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`: removes the name; mappings stay valid until unmapped.
///
/// # References
/// `man 3 shm_unlink`
pub fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`: an anonymous segment.
///
/// # References
/// `man 2 memfd_create`
pub fn memfd_create(debug_name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `debug_name` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt(unsafe { libc::memfd_create(debug_name.as_ptr(), flags) })?;
    // SAFETY: `fd` was just returned by a successful `memfd_create` and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)`: fixes
/// the size of a memfd for good, so no process holding it can shrink it under
/// another's mapping (which would turn accesses into `SIGBUS`).
///
/// # References
/// `man 2 fcntl` (File Sealing)
#[doc(alias = "F_ADD_SEALS")]
pub fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain syscall on a valid, open descriptor.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// `posix_fallocate(fd, 0, len)`: reserves the backing pages now, so a full
/// `/dev/shm` is an `ENOSPC` error here and never a `SIGBUS` on first touch.
///
/// # References
/// `man 3 posix_fallocate`
#[doc(alias = "posix_fallocate")]
pub fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: plain syscall on a valid, open descriptor; it returns the error number directly.
    let err = unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) };
    if err == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(err))
    }
}

/// `fcntl(F_DUPFD, 3)` without `FD_CLOEXEC`: a duplicate of `fd` that a child
/// started with `exec` inherits under the same number.
///
/// # References
/// `man 2 fcntl`
#[doc(alias = "dup")]
pub fn dup_inheritable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall on a valid, open descriptor.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) })?;
    // SAFETY: `new` was just returned by a successful `fcntl(F_DUPFD)` and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Takes ownership of a descriptor number received from elsewhere (an
/// argument, an environment variable), after checking that it is open.
///
/// # Errors
/// `EBADF` when `raw` is not an open descriptor of this process.
///
/// # Safety
/// - Nothing else in this process owns `raw`: after this call the returned
///   [`OwnedFd`] closes it on drop.
pub unsafe fn adopt_fd(raw: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table; an invalid number gives EBADF.
    cvt(unsafe { libc::fcntl(raw, libc::F_GETFD) })?;
    // SAFETY: `raw` is open (checked above) and owned by nobody else (caller's contract).
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Free and total bytes of the filesystem holding `path` (`statvfs`).
///
/// # References
/// `man 3 statvfs`
#[doc(alias = "statvfs")]
pub fn fs_space(path: &CStr) -> io::Result<FsSpace> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is NUL-terminated and `st` is valid for writes of one `statvfs`.
    cvt(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: `statvfs` succeeded, so it filled the struct (and it was zeroed before).
    let st = unsafe { st.assume_init() };
    Ok(FsSpace {
        total: st.f_blocks.saturating_mul(st.f_frsize),
        available: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

/// Sizes reported by [`fs_space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    /// Size of the filesystem in bytes (0 when it has no limit).
    pub total: u64,
    /// Bytes an unprivileged process may still allocate.
    pub available: u64,
}

/// The result of a [`futex_wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FutexWait {
    /// Woken by a `futex_wake` (or spuriously): re-check the condition.
    Woken,
    /// The word did not hold the expected value when the call began.
    ValueChanged,
    /// The timeout passed.
    TimedOut,
    /// A signal interrupted the wait.
    Interrupted,
}

/// `futex(word, FUTEX_WAIT, expected, timeout)` on a **shared** futex word
/// (no `FUTEX_PRIVATE_FLAG`), so it pairs with wakers in other processes that
/// map the same page.
///
/// The timeout is relative; `None` waits until woken.
///
/// # References
/// `man 2 futex`
#[doc(alias = "futex")]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned 32-bit atomic for the whole call; `ts_ptr`
    // is null or points to a timespec that outlives the call. FUTEX_WAIT only
    // reads the word atomically and never writes through either pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if ret == 0 {
        return FutexWait::Woken;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::ValueChanged,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        Some(libc::EINTR) => FutexWait::Interrupted,
        // EFAULT/EINVAL cannot happen for a valid aligned atomic; report a wake so
        // the caller re-checks its condition instead of sleeping forever.
        _ => FutexWait::Woken,
    }
}

/// `futex(word, FUTEX_WAKE, n)` on a shared futex word: wakes up to `n`
/// waiters, in any process. Returns how many were woken.
///
/// # References
/// `man 2 futex`
#[doc(alias = "futex")]
pub fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE does not access
    // memory through the pointer beyond using its address as a key.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    usize::try_from(ret).unwrap_or(0)
}

/// `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0)`: from now on
/// this process receives the barriers of [`membarrier_global_expedited`]
/// (idempotent; `exec` drops the registration).
///
/// # Errors
/// `ENOSYS` or `EINVAL` where the kernel lacks the command, `EPERM` where a
/// seccomp filter forbids the call.
///
/// # References
/// `man 2 membarrier`
#[doc(alias = "membarrier")]
pub fn membarrier_register_global_expedited() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0)`: every thread of every
/// registered process that is running now executes a full memory barrier
/// before the call returns (the others pass one when they are scheduled),
/// and so does the caller. The heavy half of an asymmetric Dekker pair.
///
/// # Errors
/// As [`membarrier_register_global_expedited`].
///
/// # References
/// `man 2 membarrier`
#[doc(alias = "membarrier")]
pub fn membarrier_global_expedited() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
}

// From <linux/membarrier.h> (stable kernel ABI since 4.16).
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

fn membarrier(cmd: libc::c_int) -> io::Result<()> {
    // SAFETY: membarrier takes integers only (cmd, flags 0, cpu_id 0) and
    // touches no user memory.
    let ret = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getpid()`.
pub fn getpid() -> Pid {
    std::process::id() as Pid
}

/// `getppid()`.
pub fn getppid() -> Pid {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// `gettid()`: the kernel id of the calling thread.
pub fn gettid() -> Pid {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// `geteuid()`.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether process `pid` is alive: it exists and is not a zombie.
///
/// `kill(pid, 0)` alone reports a zombie (dead, not yet reaped) as alive, and
/// a holder that died is exactly such a zombie until its parent reaps it, so
/// the process state in `/proc/<pid>/stat` is checked as well.
///
/// # References
/// `man 2 kill`, `man 5 proc` (`/proc/pid/stat`, field 3)
pub fn pid_alive(pid: Pid) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check.
    let ret = unsafe { libc::kill(pid, 0) };
    if ret == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    match process_state(pid) {
        Some(b'Z' | b'X') => false,
        Some(_) => true,
        // No /proc entry: either /proc is not mounted (trust `kill`) or the
        // process went away between the two checks (ask `kill` again).
        None => {
            // SAFETY: signal 0 performs only the existence and permission check.
            let again = unsafe { libc::kill(pid, 0) };
            again == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
        }
    }
}

/// The one-letter state of process `pid` from `/proc/<pid>/stat`
/// (`R`, `S`, `D`, `Z`, ...), or `None` when there is no such process.
pub fn process_state(pid: Pid) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ": the
    // state follows the *last* closing parenthesis.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The start time of process `pid` in clock ticks since boot
/// (`/proc/<pid>/stat`, field 22): with the pid it names one process even
/// after the pid is reused.
pub fn process_start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    // Fields after the command: state is field 3, starttime is field 22.
    stat.get(close + 2..)?
        .split_ascii_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// `SIGKILL`.
pub const SIGKILL: i32 = libc::SIGKILL;
/// `SIGTERM`.
pub const SIGTERM: i32 = libc::SIGTERM;

/// `kill(pid, sig)`.
///
/// # References
/// `man 2 kill`
pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; an invalid pid or signal is reported as an error.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
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
    Ok(getppid() == expected_parent)
}

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
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
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
    let ret = cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
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
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
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

/// Writes `bytes` to fd 2 with plain `write(2)` calls: no lock, no
/// buffering, so it is safe in a forked child of a multi-threaded process.
/// Errors are ignored (there is nowhere left to report them).
///
/// # References
/// `man 2 write`
pub fn write_stderr_raw(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length for the whole call.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) if n > 0 => bytes = bytes.get(n..).unwrap_or_default(),
            _ => return,
        }
    }
}

/// Eight random bytes from the kernel (`getrandom`), for unique names.
///
/// # References
/// `man 2 getrandom`
#[doc(alias = "getrandom")]
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its full length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    // Entropy pool not ready (very early boot): fall back to time, pid and a counter.
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let c = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Number of CPUs this process may run on (`sched_getaffinity`), falling back
/// to the number online.
///
/// # References
/// `man 2 sched_getaffinity`
pub fn affinity_cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Number of CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), as Python's
/// `os.cpu_count()`.
pub fn online_cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_has_a_start_time() {
        assert!(pid_alive(getpid()));
        assert!(process_start_time(getpid()).is_some());
        assert!(!pid_alive(0));
        assert!(!pid_alive(-5));
    }

    #[test]
    fn futex_wait_reports_value_mismatch_and_timeout() {
        let w = AtomicU32::new(7);
        assert_eq!(futex_wait(&w, 8, None), FutexWait::ValueChanged);
        assert_eq!(
            futex_wait(&w, 7, Some(Duration::from_millis(1))),
            FutexWait::TimedOut
        );
        assert_eq!(futex_wake(&w, 1), 0);
    }

    #[test]
    fn random_values_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}

/// The calling process's pid and start time, cached per process.
///
/// Lock fast paths record their owner and must not pay a `getpid` system
/// call each time (glibc no longer caches it). The cache is reset in a forked
/// child by a `pthread_atfork` child handler (registered on first use), so
/// after [`fork`] the child sees its own pid. A child created by a raw
/// `clone`/`vfork` that bypasses glibc's `fork` would keep the parent's
/// values: don't use shmproc locks from such a child.
///
/// # References
/// `man 3 pthread_atfork`, `man 5 proc` (`/proc/pid/stat`, field 22)
pub mod identity {
    use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

    use super::Pid;

    static PID: AtomicI32 = AtomicI32::new(0);
    /// `start_time + 1`, so that 0 means "not cached yet".
    static START: AtomicU64 = AtomicU64::new(0);
    /// The child handler's registration: [`UNREGISTERED`], [`REGISTERING`],
    /// [`REGISTERED`] or [`FAILED`]. Not a `std::sync::Once`: a thread that
    /// forks while another is inside `call_once` leaves its child a `Once`
    /// that stays "running" forever, and the child's first `pid()` then
    /// blocked for good (seen in the channel tests, whose test threads fork
    /// while others start).
    static ATFORK: AtomicU8 = AtomicU8::new(UNREGISTERED);
    const UNREGISTERED: u8 = 0;
    const REGISTERING: u8 = 1;
    const REGISTERED: u8 = 2;
    const FAILED: u8 = 3;

    extern "C" fn reset_in_child() {
        // Only atomic stores: async-signal-safe, as a fork handler must be.
        PID.store(0, Ordering::Relaxed);
        START.store(0, Ordering::Relaxed);
    }

    /// Registers the child handler once; whether it is registered, that
    /// is, whether the caller may cache. Never waits: while another thread
    /// registers it (or, in a forked child, was registering it at the
    /// fork, and never will finish), callers just do not cache.
    fn register() -> bool {
        // Acquire: pairs with the Release store below (the handler is in
        // glibc's list before anyone caches).
        match ATFORK.load(Ordering::Acquire) {
            REGISTERED => return true,
            UNREGISTERED => {}
            _ => return false,
        }
        if ATFORK
            .compare_exchange(
                UNREGISTERED,
                REGISTERING,
                Ordering::Acquire,
                Ordering::Acquire,
            )
            .is_err()
        {
            return ATFORK.load(Ordering::Acquire) == REGISTERED;
        }
        // SAFETY: registers a handler that only performs two relaxed atomic
        // stores (async-signal-safe); the function lives for the whole program.
        let ret = unsafe { libc::pthread_atfork(None, None, Some(reset_in_child)) };
        // ENOMEM is the only documented failure; without the handler the
        // cache would be stale after fork, so never cache in that case.
        let state = if ret == 0 { REGISTERED } else { FAILED };
        // Release: pairs with the Acquire loads above.
        ATFORK.store(state, Ordering::Release);
        if ret != 0 {
            eprintln!("shmproc: pthread_atfork failed ({ret}); pid caching disabled");
        }
        ret == 0
    }

    /// The pid of the calling process (`getpid`, cached; see the module docs).
    #[inline]
    pub fn pid() -> Pid {
        let p = PID.load(Ordering::Relaxed);
        if p != 0 {
            return p;
        }
        let p = super::getpid();
        if register() {
            PID.store(p, Ordering::Relaxed);
        }
        p
    }

    /// The start time of the calling process in clock ticks since boot
    /// (cached), or 0 when `/proc` cannot tell.
    #[inline]
    pub fn start_time() -> u64 {
        let s = START.load(Ordering::Relaxed);
        if s != 0 {
            return s - 1;
        }
        start_time_slow()
    }

    #[cold]
    #[inline(never)]
    fn start_time_slow() -> u64 {
        let s = super::process_start_time(super::getpid()).unwrap_or(0);
        if register() {
            START.store(s.saturating_add(1), Ordering::Relaxed);
        }
        s
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn cached_identity_matches_the_kernel() {
            assert_eq!(super::pid(), super::super::getpid());
            assert_eq!(
                Some(super::start_time()),
                super::super::process_start_time(super::super::getpid())
            );
        }

        /// A child forked while another thread of its parent was
        /// registering the fork handler inherits a registration that never
        /// finishes: its identity calls must still answer (uncached)
        /// instead of waiting for it, as a `std::sync::Once` did.
        #[test]
        #[allow(unsafe_code)] // fork, to run the child side.
        fn a_registration_cut_off_by_fork_does_not_block_the_child() {
            use super::super::{
                ExitStatus, Forked, exit_now, fork, getpid, process_start_time, try_wait,
            };
            // SAFETY: the child only does atomic stores, system calls, a
            // `/proc` read, and leaves through `exit_now`.
            match unsafe { fork() }.expect("fork") {
                Forked::Child => {
                    // What the child of a fork during registration sees.
                    super::ATFORK.store(super::REGISTERING, super::Ordering::Relaxed);
                    super::PID.store(0, super::Ordering::Relaxed);
                    super::START.store(0, super::Ordering::Relaxed);
                    let ok = super::pid() == getpid()
                        && Some(super::start_time()) == process_start_time(getpid())
                        && super::PID.load(super::Ordering::Relaxed) == 0;
                    exit_now(if ok { 0 } else { 1 })
                }
                Forked::Parent(child) => {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    let status = loop {
                        if let Some(st) = try_wait(child).expect("waitpid") {
                            break st;
                        }
                        assert!(std::time::Instant::now() < deadline, "the child blocked");
                        std::thread::yield_now();
                    };
                    assert_eq!(status, ExitStatus::Exited(0));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Process control (used by shmproc-process): pidfds, poll, posix_spawn,
// descriptor passing and atexit.
// ---------------------------------------------------------------------------

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
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
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

/// `poll(fds, POLLIN)`: which of `fds` are readable (or hung up, or in
/// error) within `timeout` (`None`: wait until one is). A signal that
/// interrupts the wait returns all `false`; the caller re-checks and loops.
///
/// # References
/// `man 2 poll`
#[doc(alias = "poll")]
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |d| {
        // Round up so a short timeout does not become a busy 0 ms poll.
        let ms = d.as_nanos().div_ceil(1_000_000);
        libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
    });
    let n = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `pfds` is a valid, writable array of `n` pollfd for the whole call.
    let ret = unsafe { libc::poll(pfds.as_mut_ptr(), n, ms) };
    if ret == -1 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
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
        Ok(pid)
    })();
    // SAFETY: both were initialised above and are destroyed exactly once.
    unsafe { libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr()) };
    // SAFETY: as above.
    unsafe { libc::posix_spawnattr_destroy(attr.as_mut_ptr()) };
    result
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: two connected
/// message sockets (message boundaries kept, descriptors passable).
///
/// # References
/// `man 2 socketpair`, `man 7 unix`
#[doc(alias = "socketpair")]
pub fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is valid for writes of two ints.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    let [a, b] = fds;
    // SAFETY: `a` was just returned by a successful socketpair and is owned by no one else.
    let a = unsafe { OwnedFd::from_raw_fd(a) };
    // SAFETY: as above, for `b`.
    let b = unsafe { OwnedFd::from_raw_fd(b) };
    Ok((a, b))
}

/// The most descriptors [`send_with_fds`] passes in one message.
pub const MAX_PASSED_FDS: usize = 64;

/// `sendmsg` of one message `bytes` with `fds` attached (`SCM_RIGHTS`), on a
/// Unix socket. `EINTR` is retried.
///
/// # References
/// `man 2 sendmsg`, `man 7 unix` (`SCM_RIGHTS`)
#[doc(alias = "sendmsg")]
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice());
    let payload_u32 =
        u32::try_from(payload).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload_u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg` has a control buffer of `space` bytes, enough for one header.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        // SAFETY: `cmsg` points into `control` (checked non-null by construction:
        // controllen >= CMSG_SPACE(payload) >= sizeof(cmsghdr)).
        let hdr = unsafe { &mut *cmsg };
        hdr.cmsg_level = libc::SOL_SOCKET;
        hdr.cmsg_type = libc::SCM_RIGHTS;
        // SAFETY: pure size computation.
        hdr.cmsg_len = unsafe { libc::CMSG_LEN(payload_u32) } as usize;
        // SAFETY: CMSG_DATA points at `payload` writable bytes inside `control`.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: `data` has room for `payload` bytes (CMSG_SPACE above); the
        // source is `raw`, which does not overlap the control buffer.
        unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), data, payload) };
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `bytes`) and `control`, all live
        // for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `recvmsg` of one message into `buf`, with the descriptors attached to it
/// (`SCM_RIGHTS`, received close-on-exec). Returns the message length (0 at
/// end of stream) and the descriptors. `EINTR` is retried.
///
/// # References
/// `man 2 recvmsg`, `man 7 unix` (`SCM_RIGHTS`)
#[doc(alias = "recvmsg")]
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let max_payload = u32::try_from(MAX_PASSED_FDS * std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE(max_payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both
        // writable and live for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR reads only its control fields.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by CMSG_FIRSTHDR/NXTHDR lie inside `control`.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: pure size computation.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = hdr.cmsg_len.saturating_sub(header) / std::mem::size_of::<libc::c_int>();
            // SAFETY: CMSG_DATA points at the header's payload inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            for i in 0..count {
                let mut b = [0u8; std::mem::size_of::<libc::c_int>()];
                // SAFETY: `i < count`, so the `b.len()` bytes read stay inside
                // this header's payload; `b` is a separate local buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.wrapping_add(i * b.len()),
                        b.as_mut_ptr(),
                        b.len(),
                    );
                }
                let raw = libc::c_int::from_ne_bytes(b);
                // SAFETY: the kernel just installed `raw` in our table for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: `cmsg` is a valid header inside `msg`'s control buffer.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n, fds))
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

/// Number of threads of the calling process, or `None` when `/proc` cannot
/// tell.
///
/// One `statx` of `/proc/self/task`, whose link count Linux reports as
/// 2 + the number of threads (`proc_task_getattr`, the same count as field
/// 20 of `/proc/self/stat`): about 1.5 µs, no heap, against about 6 µs (and
/// a 32 KiB buffer) to list the directory, which remains the fallback when
/// the link count does not look like that (a count below 3 cannot be right:
/// the caller is a thread).
///
/// # References
/// `man 5 proc` (`/proc/pid/task`, `/proc/pid/stat` field 20)
pub fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata("/proc/self/task") {
        if let Some(n) = m.nlink().checked_sub(2).filter(|&n| n >= 1) {
            return usize::try_from(n).ok();
        }
    }
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// `SIGINT`.
pub const SIGINT: i32 = libc::SIGINT;

#[cfg(test)]
mod thread_count_tests {
    #[test]
    fn thread_count_matches_the_task_directory() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let listed = std::fs::read_dir("/proc/self/task").expect("/proc").count();
        assert_eq!(super::thread_count(), Some(listed));
        assert!(listed >= 2);
        drop(tx);
        let _ = t.join();
    }
}

/// `madvise(MADV_POPULATE_READ)` over the pages that hold `[start, end)`:
/// maps them now, as reading each would (file pages from the page cache),
/// so that code later running there takes no page faults. Changes no
/// memory contents. `EINVAL` before Linux 5.14; `ENOMEM` if part of the
/// range is not mapped.
///
/// # References
/// `man 2 madvise` (`MADV_POPULATE_READ`)
pub fn populate_read(start: usize, end: usize) -> io::Result<()> {
    madvise_range(start, end, libc::MADV_POPULATE_READ)
}

fn madvise_range(start: usize, end: usize, advice: libc::c_int) -> io::Result<()> {
    const PAGE: usize = 4096;
    let first = start & !(PAGE - 1);
    let len = end.saturating_sub(first);
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the populate advices only fault pages in; they never change
    // what any byte of the range holds, and unmapped ranges are an error.
    let ret = unsafe { libc::madvise(std::ptr::without_provenance_mut(first), len, advice) };
    cvt(ret).map(drop)
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
    cvt(unsafe { libc::setsid() })
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
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
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

/// [`thread_count`] from a descriptor of `/proc/self/task` that stays open
/// (close-on-exec) after the first call: one `fstat` instead of a path
/// lookup through `/proc/self` (about a third of the cost). A forked child
/// closes the copy it inherited (its parent's directory) and opens its own.
/// Falls back to [`thread_count`] when the descriptor cannot be opened, or
/// while another thread holds the cache (a fork may have copied it locked).
///
/// # References
/// `man 5 proc` (`/proc/pid/task`)
pub fn thread_count_cached() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    static TASK_DIR: std::sync::Mutex<Option<(Pid, std::fs::File)>> = std::sync::Mutex::new(None);
    let Ok(mut g) = TASK_DIR.try_lock() else {
        return thread_count();
    };
    let me = identity::pid();
    if g.as_ref().is_none_or(|(owner, _)| *owner != me) {
        // None yet, or inherited through fork: that names the parent's threads.
        *g = std::fs::File::open("/proc/self/task").ok().map(|f| (me, f));
    }
    let n = g
        .as_ref()
        .and_then(|(_, f)| f.metadata().ok())
        .and_then(|m| m.nlink().checked_sub(2).filter(|&n| n >= 1));
    match n {
        Some(n) => usize::try_from(n).ok(),
        None => thread_count(),
    }
}

#[cfg(test)]
mod process_wait_tests {
    #[test]
    fn thread_count_cached_counts_threads() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // Other tests' threads come and go: only a lower bound is certain.
        assert!(super::thread_count_cached().is_some_and(|n| n >= 2));
        assert!(super::thread_count_cached().is_some_and(|n| n >= 2));
        drop(tx);
        let _ = t.join();
    }
}
