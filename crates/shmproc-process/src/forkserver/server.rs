//! The fork server process and its spares (protocol: the
//! [`forkserver`](super) docs). Runs before `main`, single-threaded.
//!
//! Layer 4 (starting a child; the server's side): uses `child` (layer 3: a
//! spare runs as a `spawn` child would), and the layer-0 `target` and `report`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use shmproc_shm::os::{self, Pid};

use crate::child::run_from_report;
use crate::report::Report;
use crate::target::{adopt, exe_bounds, warm_caches};

/// How long the server waits, without a spare and while children it
/// started run, before it forks the next spare anyway.
pub(crate) const SPARE_DELAY: Duration = Duration::from_millis(1);

/// A child of the server: a spare, announced, or a started child.
struct Served {
    pid: Pid,
    /// Opened right after the fork, before the server can reap it.
    pidfd: OwnedFd,
    /// The report (mapped only when the child ends) and its token, once the
    /// client has said which child it started with this spare.
    report: Option<(OwnedFd, u32)>,
    /// Its exit status, if it ended before its report came.
    ended: Option<i32>,
}

struct Server {
    /// The client's socket (`None` only in a spare, which closes its copy).
    sock: Option<OwnedFd>,
    me: Pid,
    children: Vec<Served>,
    /// Announcements not yet claimed by a report (0 or 1).
    unused: usize,
    /// The last announcement was an error; wait for the client's `N`.
    owed: bool,
}

/// The server's main loop (runs before `main`, single-threaded; never returns).
pub(crate) fn serve(sock_fd: i32) -> ! {
    let sock = match adopt(sock_fd) {
        Ok(s) => s,
        Err(_) => os::exit_now(1),
    };
    let Some(parent) = os::getppid() else {
        os::exit_now(0)
    };
    if !matches!(os::set_parent_death_signal(os::SIGKILL, parent), Ok(true)) {
        os::exit_now(0);
    }
    // Look the executable up once: every child inherits the answers instead
    // of reading /proc/self/maps before it can call its target.
    warm_caches();
    let mut server = Server {
        sock: Some(sock),
        me: os::getpid(),
        children: Vec::new(),
        unused: 0,
        owed: false,
    };
    server.announce_spare();
    loop {
        server.serve_once();
    }
}

impl Server {
    fn sock(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Some(s) => s.as_fd(),
            None => os::exit_now(1),
        }
    }

    fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        if os::send_with_fds(self.sock(), bytes, fds).is_err() {
            // The client is gone.
            os::exit_now(0);
        }
    }

    /// Waits for a message or a child's end, and handles what came.
    fn serve_once(&mut self) {
        let running: Vec<usize> = (0..self.children.len())
            .filter(|&i| self.children.get(i).is_some_and(|c| c.ended.is_none()))
            .collect();
        let mut fds: Vec<BorrowedFd<'_>> = vec![self.sock()];
        fds.extend(
            running
                .iter()
                .filter_map(|&i| self.children.get(i))
                .map(|c| c.pidfd.as_fd()),
        );
        let started = self.children.len() > self.unused;
        // Without a spare, wake up after a while to fork one anyway.
        let timeout = (self.unused == 0 && !self.owed && started).then_some(SPARE_DELAY);
        let ready = match os::poll_readable(&fds, timeout) {
            Ok(r) => r,
            Err(_) => os::exit_now(1),
        };
        drop(fds);
        let idle = !ready.iter().any(|&r| r);
        // Messages first: a report always arrives before its child can end.
        if ready.first().copied().unwrap_or(false) {
            self.message();
        }
        for (k, &i) in running.iter().enumerate() {
            if !ready.get(1 + k).copied().unwrap_or(false) {
                continue;
            }
            let Some(c) = self.children.get_mut(i) else {
                continue;
            };
            if let Ok(Some(st)) = os::try_wait(c.pid) {
                c.ended = Some(st.code());
            }
        }
        // Report the ended children whose report is known; keep the others
        // until it comes.
        let mut i = 0;
        while i < self.children.len() {
            let done = self
                .children
                .get(i)
                .is_some_and(|c| c.ended.is_some() && c.report.is_some());
            if done {
                let c = self.children.swap_remove(i);
                if let (Some((report, token)), Some(code)) = (c.report, c.ended) {
                    // Mapped only now: off the start's path, and a child that
                    // wrote its own exit code needs nothing more.
                    report_status(report, token, code);
                }
            } else {
                i += 1;
            }
        }
        let started = self.children.iter().any(|c| c.report.is_some());
        if self.unused == 0 && !self.owed && (!started || idle) {
            self.announce_spare();
        }
    }

    /// One message from the client: a report for an announced child (`S`),
    /// or a request for a new announcement after an error (`N`).
    fn message(&mut self) {
        let mut buf = [0u8; 16];
        let (n, mut fds) = match os::recv_with_fds(self.sock(), &mut buf) {
            Ok((0, _)) | Err(_) => os::exit_now(0),
            Ok(m) => m,
        };
        match buf.get(..n) {
            Some([b'S', rest @ ..]) if rest.len() == 8 && fds.len() == 1 => {
                let token = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
                let pid = i32::from_le_bytes(rest[4..].try_into().unwrap_or_default());
                let Some(c) = self
                    .children
                    .iter_mut()
                    .find(|c| c.pid.as_raw() == pid && c.report.is_none())
                else {
                    // Not an announced spare: the pairing is lost; stop (the
                    // client sees the server die).
                    os::exit_now(1)
                };
                c.report = fds.pop().map(|fd| (fd, token));
                self.unused = self.unused.saturating_sub(1);
            }
            Some(b"N") => self.owed = false,
            // Our own client never sends anything else.
            _ => os::exit_now(1),
        }
    }

    /// Forks a spare and announces it (`A` + pid, its pidfd and its socket
    /// end), or announces the error (`E` + errno).
    fn announce_spare(&mut self) {
        match self.fork_spare() {
            Ok((pid, pidfd, sock)) => {
                let mut b = vec![b'A'];
                b.extend_from_slice(&pid.as_raw().to_le_bytes());
                self.send(&b, &[pidfd.as_fd(), sock.as_fd()]);
                // Only the client holds the spare's socket now: when it drops
                // an unused announcement, the spare sees end-of-file and exits.
                drop(sock);
                self.children.push(Served {
                    pid,
                    pidfd,
                    report: None,
                    ended: None,
                });
                self.unused += 1;
            }
            Err(errno) => {
                let mut b = vec![b'E'];
                b.extend_from_slice(&errno.to_le_bytes());
                self.send(&b, &[]);
                self.owed = true;
            }
        }
    }

    /// Forks a spare: a child that waits for its target on a socket pair of
    /// its own. Returns its pid, pidfd and the other end of the pair.
    #[allow(unsafe_code)] // The server forks: it is single-threaded (started before `main`).
    fn fork_spare(&mut self) -> Result<(Pid, OwnedFd, OwnedFd), i32> {
        let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(22);
        let (mine, theirs) = os::socketpair_seqpacket().map_err(errno)?;
        // SAFETY: the server runs before `main` in a fresh image and never
        // starts a thread, so the child may do anything; it never returns
        // here (`spare_main` ends in `exit_now`).
        match unsafe { os::fork() } {
            Err(e) => Err(errno(e)),
            Ok(os::Forked::Child) => {
                // Keep nothing of the server's: its client socket, its
                // children's pidfds and reports.
                drop(mine);
                self.sock = None;
                self.children.clear();
                spare_main(theirs, self.me)
            }
            Ok(os::Forked::Parent(pid)) => {
                drop(theirs);
                match os::pidfd_open(pid) {
                    Ok(pidfd) => Ok((pid, pidfd, mine)),
                    Err(e) => {
                        // Unreaped, so the pid is still this child's.
                        let _ = os::kill(pid, os::SIGKILL);
                        let _ = os::wait(pid);
                        Err(errno(e))
                    }
                }
            }
        }
    }
}

/// Writes a reaped child's status into its report, unless the parent has
/// taken the report back already (see `report`).
fn report_status(report: OwnedFd, token: u32, code: i32) {
    match Report::open(report) {
        Ok(r) => r.set_status_claimed(token, code),
        // The client would wait for this status forever: stop, so that it
        // sees the server die instead.
        Err(_) => os::exit_now(1),
    }
}

/// A spare: dies with the server, and runs nothing until it receives its
/// target's descriptors (the report first, then the handles).
fn spare_main(sock: OwnedFd, server: Pid) -> ! {
    if !matches!(os::set_parent_death_signal(os::SIGKILL, server), Ok(true)) {
        os::exit_now(1);
    }
    // Map the executable's pages now, while nothing waits for this child:
    // a fork maps none of them, and the bootstrap would otherwise take a
    // page fault on each code page it first runs (measured: about a third
    // of a fork-server start). Best effort (Linux 5.14 and later).
    if let Some((start, end)) = exe_bounds() {
        let _ = os::populate_read(start, end);
    }
    let mut buf = [0u8; 4];
    let mut fds = match os::recv_with_fds(sock.as_fd(), &mut buf) {
        Ok((1, fds)) if buf[0] == b'R' && !fds.is_empty() => fds,
        // End of stream: the announcement was dropped, or the server died.
        _ => os::exit_now(1),
    };
    drop(sock);
    let report = fds.remove(0);
    match Report::open(report) {
        Ok(report) => run_from_report(report, Ok(fds), Some(server)),
        Err(e) => {
            os::write_stderr_raw(
                format!("shmproc child bootstrap failed: report segment: {e}\n").as_bytes(),
            );
            os::exit_now(1)
        }
    }
}
