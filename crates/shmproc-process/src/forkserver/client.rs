//! The client of the fork server, in the parent: starts the server (once per
//! process), and starts a child by handing its boot record to the next
//! announced spare (protocol: the [`forkserver`](super) docs).
//!
//! Layer 1 (helper processes and re-exec): uses `reexec`, and the layer-0
//! `launcher`, `report` and `error`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use shmproc_shm::os::{self, Pid};

use crate::error::ProcessError;
use crate::reexec::{ROLE_FORKSERVER, spawn_self};
use crate::report::Report;

struct Client {
    sock: OwnedFd,
    pidfd: OwnedFd,
    pid: Pid,
    owner: Pid,
    /// The last announcement was an error: ask for another before waiting.
    owed: bool,
}

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

fn start_server() -> Result<Client, ProcessError> {
    let (mine, theirs) = os::socketpair_seqpacket().map_err(ProcessError::os("socketpair"))?;
    let arg = format!(
        "{ROLE_FORKSERVER}{}",
        std::os::fd::AsRawFd::as_raw_fd(&theirs)
    );
    let pid = crate::launcher::run(move || spawn_self(&arg, &[theirs.as_fd()]))??;
    let pidfd = os::pidfd_open(pid).map_err(ProcessError::os("pidfd_open"))?;
    Ok(Client {
        sock: mine,
        pidfd,
        pid,
        owner: os::identity::pid(),
        owed: false,
    })
}

/// The fork server's pid, starting it if needed.
pub(crate) fn ensure_started() -> Result<Pid, ProcessError> {
    let mut g = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    client(&mut g).map(|c| c.pid)
}

fn client(g: &mut Option<Client>) -> Result<&mut Client, ProcessError> {
    let me = os::identity::pid();
    let stale = match g.as_ref() {
        None => true,
        Some(c) => {
            c.owner != me
                || os::poll_readable(&[c.pidfd.as_fd()], Some(Duration::ZERO))
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
    g.as_mut()
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

/// Starts a child running the boot record in `report`: takes the next
/// announced spare, registers the report with the server, and sends the
/// spare its target (see the module docs). Returns the pid and a pidfd.
pub(crate) fn start(
    report: &Report,
    fds: &[BorrowedFd<'_>],
) -> Result<(Pid, OwnedFd), ProcessError> {
    let mut g = CLIENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let c = client(&mut g)?;
    if c.owed {
        os::send_with_fds(c.sock.as_fd(), b"N", &[])
            .map_err(ProcessError::os("send to fork server"))?;
        c.owed = false;
    }
    let mut buf = [0u8; 16];
    let (n, mut got) = os::recv_with_fds(c.sock.as_fd(), &mut buf)
        .map_err(ProcessError::os("recv from fork server"))?;
    let (pid, pidfd, spare) = match buf.get(..n) {
        Some([b'A', rest @ ..]) if rest.len() == 4 && got.len() == 2 => {
            let raw = i32::from_le_bytes(rest.try_into().expect("4 bytes"));
            let Some(pid) = Pid::from_raw(raw) else {
                return Err(ProcessError::ForkServer(format!(
                    "announced a spare with pid {raw}"
                )));
            };
            let spare = got.pop().expect("two fds");
            let pidfd = got.pop().expect("two fds");
            (pid, pidfd, spare)
        }
        Some([b'E', rest @ ..]) if rest.len() == 4 => {
            c.owed = true;
            let errno = i32::from_le_bytes(rest.try_into().expect("4 bytes"));
            return Err(ProcessError::Os {
                op: "fork (in the fork server)",
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        Some([]) | None => {
            return Err(ProcessError::ForkServer(
                "the server closed the connection".into(),
            ));
        }
        Some(other) => {
            return Err(ProcessError::ForkServer(format!(
                "bad announcement {other:?}"
            )));
        }
    };
    let mut all = vec![report.fd()];
    all.extend_from_slice(fds);
    // The spare first: it runs on its own while the server, woken by the
    // next message, may take this CPU for a moment. An error means the
    // spare died before it got its target (killed from outside): the
    // server reports that as its exit status.
    let _ = os::send_with_fds(spare.as_fd(), b"R", &all);
    drop(spare);
    let mut req = [0u8; 9];
    req[0] = b'S';
    req[1..5].copy_from_slice(&report.token().to_le_bytes());
    req[5..].copy_from_slice(&pid.as_raw().to_le_bytes());
    // An error means the server is gone, and with it (death signal) the
    // child: `join` reports it killed, and the next start starts a new
    // server.
    let _ = os::send_with_fds(c.sock.as_fd(), &req, &[report.fd()]);
    drop(g);
    Ok((pid, pidfd))
}
