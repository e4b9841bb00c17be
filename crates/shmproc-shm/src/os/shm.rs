//! Shared-memory objects: named segments (`shm_open`, `shm_unlink`),
//! anonymous ones (`memfd_create`, size seals), and reserving their space
//! (`posix_fallocate`, `statvfs`).
#![allow(unsafe_code)] // Syscall fence: shm_open, memfd_create, fcntl and statvfs through libc.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

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
