//! The `forkserver` start method: [`client`] (the parent's side: start the
//! server, take a spare, hand it a child) and [`server`] (the server process
//! and its spares). They sit at different layers (client 1, server 4) and
//! share only the protocol, described here.
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
//! or after [`SPARE_DELAY`](server::SPARE_DELAY) while they run: forking right away would compete
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

pub(crate) mod client;
pub(crate) mod server;
