//! File descriptors: duplicating and adopting them, waiting for them to
//! become readable (`poll`), and passing them between processes over Unix
//! sockets (`socketpair`, `sendmsg`/`recvmsg` with `SCM_RIGHTS`).
#![allow(unsafe_code)] // Syscall fence: fcntl, poll, socketpair, sendmsg and recvmsg through libc.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cvt;

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
    recv_with_fds_flags(sock, buf, 0)
}

/// [`recv_with_fds`] without waiting (`MSG_DONTWAIT`): `WouldBlock` when
/// nothing is there yet. A caller that polls for a message before it
/// sleeps in the blocking form.
///
/// # References
/// `man 2 recvmsg`, `man 7 unix` (`SCM_RIGHTS`)
#[doc(alias = "recvmsg")]
pub fn recv_with_fds_nowait(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_with_fds_flags(sock, buf, libc::MSG_DONTWAIT)
}

/// `recv(sock, buf, MSG_DONTWAIT)`: what a stream socket has, up to
/// `buf.len()` bytes, without waiting (`WouldBlock` when nothing is there;
/// `Ok(0)` at EOF), whatever the socket's blocking mode. `EINTR` is retried.
///
/// # References
/// `man 2 recv`
#[doc(alias = "recv")]
pub fn recv_nowait(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn recv_with_fds_flags(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, Vec<OwnedFd>)> {
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
        let n =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
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
