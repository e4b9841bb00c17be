//! The `forkserver` start method.
//!
//! On first use, the process starts a server: the same executable, run
//! again (`posix_spawn` of `/proc/self/exe`) and intercepted before `main`,
//! so it is single-threaded and small. Requests and replies travel over a
//! `SOCK_SEQPACKET` socket pair:
//!
//! - request: `b'S'`, the child's report segment (fd) and its handle fds
//!   (`SCM_RIGHTS`); the report holds the boot record;
//! - the server `fork`s (safe: it has one thread), the child runs the
//!   target as a `spawn` child would;
//! - reply: `b'P'` + pid, and a pidfd of the child (`SCM_RIGHTS`), opened
//!   by the server before it can reap the child, so the pidfd can never
//!   name a recycled pid; or `b'E'` + errno.
//!
//! The children are the server's, so only the server can `waitpid` them: it
//! polls their pidfds and, on exit, writes the status into the child's
//! report segment and wakes the futex there; `join` in the parent waits on
//! the pidfd, then on that word.
//!
//! Lifetimes: the server sets `PR_SET_PDEATHSIG(SIGKILL)` (it is created
//! from the launcher thread, so it dies with the parent process) and also
//! exits on end-of-file on its socket. Its children take their own
//! parent-death signal relative to the server, so killing the parent takes
//! the whole tree down.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use shmproc_shm::os::{self, Pid};

use crate::error::ProcessError;
use crate::report::Report;

struct Client {
    sock: OwnedFd,
    pidfd: OwnedFd,
    pid: Pid,
    owner: Pid,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

fn start_server() -> Result<Client, ProcessError> {
    let (mine, theirs) = os::socketpair_seqpacket().map_err(ProcessError::os("socketpair"))?;
    let arg = format!(
        "--shmproc-forkserver={}",
        std::os::fd::AsRawFd::as_raw_fd(&theirs)
    );
    let pid = crate::launcher::run(move || crate::process::spawn_self(&arg, &[theirs.as_fd()]))??;
    let pidfd = os::pidfd_open(pid).map_err(ProcessError::os("pidfd_open"))?;
    Ok(Client {
        sock: mine,
        pidfd,
        pid,
        owner: os::identity::pid(),
    })
}

/// The fork server's pid, starting it if needed.
pub(crate) fn ensure_started() -> Result<Pid, ProcessError> {
    let mut g = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    client(&mut g).map(|c| c.pid)
}

fn client(g: &mut Option<Client>) -> Result<&Client, ProcessError> {
    let me = os::identity::pid();
    let stale = match g.as_ref() {
        None => true,
        Some(c) => {
            c.owner != me
                || os::poll_readable(&[c.pidfd.as_fd()], Some(std::time::Duration::ZERO))
                    .map_or(true, |r| r.first().copied().unwrap_or(true))
        }
    };
    if stale {
        // Inherited through fork (not our server), or the server died: a new one.
        if let Some(old) = g.take() {
            if old.owner != me {
                // The socket is a copy shared with the parent: forget it
                // without talking to the parent's server.
                std::mem::forget(old.sock);
                std::mem::forget(old.pidfd);
            } else {
                let _ = os::try_wait(old.pid);
            }
        }
        *g = Some(start_server()?);
    }
    g.as_ref()
        .ok_or_else(|| ProcessError::ForkServer("not started".into()))
}

/// Whether the fork server of this process is alive.
pub(crate) fn server_alive() -> bool {
    let g = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    g.as_ref().is_some_and(|c| {
        !os::poll_readable(&[c.pidfd.as_fd()], Some(std::time::Duration::ZERO))
            .map_or(true, |r| r.first().copied().unwrap_or(true))
    })
}

/// Asks the server for a child running the boot record in `report`.
pub(crate) fn start(
    report: &Report,
    fds: &[BorrowedFd<'_>],
) -> Result<(Pid, OwnedFd), ProcessError> {
    let mut g = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let c = client(&mut g)?;
    let mut all = vec![report.fd()];
    all.extend_from_slice(fds);
    os::send_with_fds(c.sock.as_fd(), b"S", &all)
        .map_err(ProcessError::os("send to fork server"))?;
    let mut buf = [0u8; 16];
    let (n, mut got) = os::recv_with_fds(c.sock.as_fd(), &mut buf)
        .map_err(ProcessError::os("recv from fork server"))?;
    match buf.get(..n) {
        Some([b'P', rest @ ..]) if rest.len() == 4 && got.len() == 1 => {
            let pid = i32::from_le_bytes(rest.try_into().expect("4 bytes"));
            let pidfd = got.pop().expect("one fd");
            Ok((pid, pidfd))
        }
        Some([b'E', rest @ ..]) if rest.len() == 4 => {
            let errno = i32::from_le_bytes(rest.try_into().expect("4 bytes"));
            Err(ProcessError::Os {
                op: "fork (in the fork server)",
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
        Some([]) | None => Err(ProcessError::ForkServer(
            "the server closed the connection".into(),
        )),
        Some(other) => Err(ProcessError::ForkServer(format!("bad reply {other:?}"))),
    }
}

struct Served {
    pid: Pid,
    pidfd: OwnedFd,
    report: Report,
}

/// The server's main loop (runs before `main`, single-threaded; never returns).
pub(crate) fn serve(sock_fd: i32) -> ! {
    let sock = match crate::entry::adopt(sock_fd) {
        Ok(s) => s,
        Err(_) => os::exit_now(1),
    };
    let parent = os::getppid();
    if !matches!(os::set_parent_death_signal(os::SIGKILL, parent), Ok(true)) {
        os::exit_now(0);
    }
    let mut children: Vec<Served> = Vec::new();
    loop {
        let mut fds: Vec<BorrowedFd<'_>> = vec![sock.as_fd()];
        fds.extend(children.iter().map(|c| c.pidfd.as_fd()));
        let ready = match os::poll_readable(&fds, None) {
            Ok(r) => r,
            Err(_) => os::exit_now(1),
        };
        let exited: Vec<usize> = ready
            .iter()
            .skip(1)
            .enumerate()
            .filter_map(|(i, r)| r.then_some(i))
            .collect();
        for &i in exited.iter().rev() {
            let Some(c) = children.get(i) else { continue };
            if let Ok(Some(st)) = os::try_wait(c.pid) {
                c.report.set_status(st.code());
                children.swap_remove(i);
            }
        }
        if ready.first().copied().unwrap_or(false) {
            let mut buf = [0u8; 16];
            match os::recv_with_fds(sock.as_fd(), &mut buf) {
                Ok((0, _)) | Err(_) => os::exit_now(0),
                Ok((n, fds)) => {
                    let reply = handle(&buf[..n.min(buf.len())], fds, &mut children, &sock);
                    let (bytes, pidfd) = match reply {
                        Ok((pid, pidfd)) => {
                            let mut b = vec![b'P'];
                            b.extend_from_slice(&pid.to_le_bytes());
                            (b, Some(pidfd))
                        }
                        Err(errno) => {
                            let mut b = vec![b'E'];
                            b.extend_from_slice(&errno.to_le_bytes());
                            (b, None)
                        }
                    };
                    let fds: Vec<BorrowedFd<'_>> = pidfd.iter().map(AsFd::as_fd).collect();
                    if os::send_with_fds(sock.as_fd(), &bytes, &fds).is_err() {
                        os::exit_now(0);
                    }
                }
            }
        }
    }
}

#[allow(unsafe_code)] // The server forks: it is single-threaded (started before `main`).
fn handle(
    req: &[u8],
    mut fds: Vec<OwnedFd>,
    children: &mut Vec<Served>,
    sock: &OwnedFd,
) -> Result<(Pid, OwnedFd), i32> {
    if req != b"S" || fds.is_empty() {
        return Err(22); // EINVAL
    }
    let report_fd = fds.remove(0);
    let report = Report::open(report_fd).map_err(|_| 22)?;
    let me = os::getpid();
    // SAFETY: the server runs before `main` in a fresh image and never starts a
    // thread, so the child may do anything; it leaves through `exit_now`.
    match unsafe { os::fork() } {
        Err(e) => Err(e.raw_os_error().unwrap_or(11)),
        Ok(os::Forked::Child) => {
            let _ = sock;
            crate::child::run_from_report(report, Ok(fds), Some(me))
        }
        Ok(os::Forked::Parent(pid)) => {
            drop(fds);
            let pidfd = os::pidfd_open(pid).map_err(|e| e.raw_os_error().unwrap_or(22))?;
            let for_client = pidfd
                .try_clone()
                .map_err(|e| e.raw_os_error().unwrap_or(22))?;
            children.push(Served { pid, pidfd, report });
            Ok((pid, for_client))
        }
    }
}
