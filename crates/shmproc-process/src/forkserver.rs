//! The `forkserver` start method.
//!
//! On first use, the process starts a server: the same executable, run
//! again (`posix_spawn` of `/proc/self/exe`) and intercepted before `main`,
//! so it is single-threaded and small.
//!
//! # Spares
//! A start should not wait for a `fork`, so the server keeps one **spare**:
//! a child it has already forked (safe: the server has one thread), which
//! waits in `recvmsg` on a socket pair of its own and runs nothing until it
//! receives a target. The server *announces* each spare to the client as
//! soon as it exists, over their `SOCK_SEQPACKET` socket pair: `b'A'` + pid,
//! with the spare's pidfd and the spare's socket end (`SCM_RIGHTS`). The
//! pidfd is opened right after the `fork`, before the server could reap the
//! child, so it can never name a recycled pid.
//!
//! A start then never waits for the server:
//! 1. take the next announcement (already queued on the socket, unless the
//!    server is still forking it);
//! 2. send the spare its target: `b'R'` with the report (which holds the
//!    boot record) and the handle fds; the spare maps the report and runs
//!    as a `spawn` child would. If the spare died meanwhile (killed from
//!    outside), the send fails and the server reports how it ended: the
//!    start succeeded and the child was killed;
//! 3. tell the server which report segment belongs to that pid: `b'S'` +
//!    token + pid, with the report (`SCM_RIGHTS`). The spare goes first:
//!    the server, woken by this message, may take the client's CPU for a
//!    moment, and the child should not wait for that (traced: about 25 µs).
//!    A child that ends before its report reaches the server is kept until
//!    it does.
//!
//! The server forks the next spare once the children it started have ended,
//! or after [`SPARE_DELAY`] while they run: forking right away would compete
//! with the child just started for the CPU (measured on 2 cores: slower).
//! If that `fork` fails the server announces `b'E'` + errno instead; the
//! client's next start fails with it and asks again (`b'N'`).
//!
//! # Exit codes
//! The children are the server's, so only the server can `waitpid` them.
//! A child writes its own exit code into its report just before `_exit`;
//! the server polls the pidfds and, when a child ends, writes the status it
//! got from `waitpid` as well (the only one when the child was killed),
//! unless the parent has already taken the report back for another child
//! (the `claim` word of the report). `join` in the parent waits on the
//! pidfd, then reads the word.
//!
//! # Lifetimes
//! The server sets `PR_SET_PDEATHSIG(SIGKILL)` (it is created from the
//! launcher thread, so it dies with the parent process) and also exits on
//! end-of-file on its socket. A spare sets `PR_SET_PDEATHSIG(SIGKILL)`
//! against the server, and exits on end-of-file on its own socket, so spares
//! never outlive the server (or an unused announcement). A child then takes
//! the death signal its context asks for, still relative to the server, or
//! clears it when the context asks for none; so killing the parent takes the
//! whole tree down.

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
            let pid = i32::from_le_bytes(rest.try_into().expect("4 bytes"));
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
    req[5..].copy_from_slice(&pid.to_le_bytes());
    // An error means the server is gone, and with it (death signal) the
    // child: `join` reports it killed, and the next start starts a new
    // server.
    let _ = os::send_with_fds(c.sock.as_fd(), &req, &[report.fd()]);
    drop(g);
    Ok((pid, pidfd))
}

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
    let sock = match crate::target::adopt(sock_fd) {
        Ok(s) => s,
        Err(_) => os::exit_now(1),
    };
    let parent = os::getppid();
    if !matches!(os::set_parent_death_signal(os::SIGKILL, parent), Ok(true)) {
        os::exit_now(0);
    }
    // Look the executable up once: every child inherits the answers instead
    // of reading /proc/self/maps before it can call its target.
    crate::target::warm_caches();
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
                    .find(|c| c.pid == pid && c.report.is_none())
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
                b.extend_from_slice(&pid.to_le_bytes());
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
    if let Some((start, end)) = crate::target::exe_bounds() {
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
        Ok(report) => crate::child::run_from_report(report, Ok(fds), Some(server)),
        Err(e) => {
            os::write_stderr_raw(
                format!("shmproc child bootstrap failed: report segment: {e}\n").as_bytes(),
            );
            os::exit_now(1)
        }
    }
}
