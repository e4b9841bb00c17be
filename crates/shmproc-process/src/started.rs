//! A started child as its parent keeps it ([`Started`]: pid, pidfd, report,
//! exit code; `poll`, `signal`, `join`), and the registry of this process's
//! children that have not been reaped yet.
//!
//! The two live together because they share one invariant: a child is in
//! the registry from its start until the `poll` that reaps it, and only
//! that `poll` takes it out.
//!
//! Layer 2 (this process's children): uses `forkserver::client` (is the
//! server alive?) and `tracker` (sweep a killed child's segments), both
//! layer 1, and the layer-0 `identity`, `report`, `start_method` and
//! `error`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use shmproc_shm::os::{self, Pid};

use crate::error::ProcessError;
use crate::forkserver::client::server_alive;
use crate::identity::ProcessInfo;
use crate::report::Report;
use crate::start_method::StartMethod;
use crate::tracker::reap_segments_of;

/// A started child: what the parent keeps.
///
/// For `fork` it is created before the child: the child then finds its
/// identity and its report in its copy of it, without allocating.
#[derive(Debug)]
pub(crate) struct Started {
    /// Stored once, right after the child is created (`fork`: 0 until then,
    /// before anyone else can see this `Started`).
    pid: AtomicI32,
    /// A fork-server child's pidfd, from the server; our own children's is
    /// opened only when something needs one (a timed join, the sentinel):
    /// `join`, `terminate` and the exit code work on the unreaped pid, which
    /// cannot name another process before `poll` reaps it.
    pidfd: OnceLock<OwnedFd>,
    /// Its name and daemon flag (and, in a `fork` child, its own
    /// `current_process()`).
    pub(crate) info: ProcessInfo,
    pub(crate) method: StartMethod,
    pub(crate) report: Report,
    exit: Mutex<Option<i32>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        // Dropped only once reaped (the registry holds running children):
        // nobody writes the report any more, so it can serve another child.
        // A fork-server child's only if the server has not claimed it to
        // write the status it got from `waitpid` (see `report`).
        let reaped = self.exit.get_mut().is_ok_and(|e| e.is_some());
        if reaped && (self.method != StartMethod::ForkServer || self.report.release_from_server()) {
            let r = std::mem::replace(&mut self.report, Report::placeholder());
            r.recycle();
        }
    }
}

impl Started {
    pub(crate) fn new(
        pid: Option<Pid>,
        pidfd: Option<OwnedFd>,
        info: ProcessInfo,
        method: StartMethod,
        report: Report,
    ) -> Started {
        Started {
            pid: AtomicI32::new(pid.map_or(0, Pid::as_raw)),
            pidfd: pidfd.map(OnceLock::from).unwrap_or_default(),
            info,
            method,
            report,
            exit: Mutex::new(None),
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        // Relaxed: stored before the `Started` is shared (the registry's
        // lock, or the thread that created it). Still 0 only in the forked
        // child's own copy, which describes the calling process.
        Pid::from_raw(self.pid.load(Ordering::Relaxed)).unwrap_or_else(os::identity::pid)
    }

    /// Stores the pid of a forked child, right after the fork (see `pid`).
    pub(crate) fn set_pid(&self, pid: Pid) {
        // Relaxed: published with the `Started` (see `Started::pid`).
        self.pid.store(pid.as_raw(), Ordering::Relaxed);
    }

    fn exit_lock(&self) -> MutexGuard<'_, Option<i32>> {
        self.exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        if let Some(pidfd) = self.pidfd.get() {
            if self.poll()?.is_some() {
                return Ok(());
            }
            return match os::pidfd_send_signal(pidfd.as_fd(), sig) {
                Err(e) if e.raw_os_error() == Some(3) => Ok(()), // ESRCH: it just ended
                r => r.map_err(ProcessError::os("pidfd_send_signal")),
            };
        }
        // Our own child (a fork-server child always has a pidfd). Holding
        // `exit`: only `poll` reaps, under it, so an unreaped child (running,
        // or a zombie, which ignores signals) still owns its pid.
        let g = self.exit_lock();
        if g.is_some() {
            return Ok(());
        }
        let r = os::kill(self.pid(), sig);
        drop(g);
        match r {
            Err(e) if e.raw_os_error() == Some(3) => Ok(()), // ESRCH: reaped from outside
            r => r.map_err(ProcessError::os("kill")),
        }
    }

    /// The pidfd (see the field), opened now if needed.
    pub(crate) fn pidfd(&self) -> Result<BorrowedFd<'_>, ProcessError> {
        if let Some(fd) = self.pidfd.get() {
            return Ok(fd.as_fd());
        }
        let g = self.exit_lock();
        if self.pidfd.get().is_none() {
            let fd = if g.is_none() {
                // Not reaped (see `signal`): the pid is still this child's.
                os::pidfd_open(self.pid()).map_err(ProcessError::os("pidfd_open"))?
            } else {
                // Reaped: stand in with a descriptor that is always readable
                // (poll(2) reports a regular file, here a memfd, as ready).
                os::memfd_create(c"shmproc-ended").map_err(ProcessError::os("memfd_create"))?
            };
            let _ = self.pidfd.set(fd);
        }
        drop(g);
        self.pidfd
            .get()
            .map(AsFd::as_fd)
            .ok_or_else(|| ProcessError::Internal("pidfd not set".into()))
    }

    /// Blocks until the child has ended (not reaping it: `poll` does).
    fn wait_ended(&self) -> Result<(), ProcessError> {
        match self.method {
            StartMethod::Fork | StartMethod::Spawn => match os::wait_ended_unreaped(self.pid()) {
                // ECHILD: reaped meanwhile by `poll` on another thread, which
                // the caller's next `poll` sees (or reports, if reaped from
                // outside).
                Err(e) if e.raw_os_error() == Some(10) => Ok(()),
                r => r.map_err(ProcessError::os("waitid")),
            },
            StartMethod::ForkServer => os::poll_readable(&[self.pidfd()?], None)
                .map(drop)
                .map_err(ProcessError::os("poll")),
        }
    }

    fn exited(&self) -> bool {
        self.pidfd().is_ok_and(|fd| {
            os::poll_readable(&[fd], Some(Duration::ZERO))
                .is_ok_and(|r| r.first().copied().unwrap_or(false))
        })
    }

    /// The exit code if the child has ended (reaping it), without blocking
    /// (beyond a fork-server child's status being written).
    pub(crate) fn poll(&self) -> Result<Option<i32>, ProcessError> {
        let mut g = self.exit_lock();
        if let Some(c) = *g {
            return Ok(Some(c));
        }
        let code = match self.method {
            StartMethod::Fork | StartMethod::Spawn => {
                match os::try_wait(self.pid()).map_err(ProcessError::os("waitpid"))? {
                    Some(st) => st.code(),
                    None => return Ok(None),
                }
            }
            StartMethod::ForkServer => {
                if !self.exited() {
                    return Ok(None);
                } else if let Some(c) = self.report.status() {
                    // Written by the child itself just before it exited.
                    c
                } else {
                    // Dead; the server writes the status right after reaping it.
                    loop {
                        if let Some(c) = self.report.wait_status(Duration::from_millis(20)) {
                            break c;
                        }
                        if !server_alive() {
                            // The server died first: nobody can reap it any more.
                            break self.report.status().unwrap_or(-os::SIGKILL);
                        }
                    }
                }
            }
        };
        *g = Some(code);
        drop(g);
        let pid = self.pid();
        with_registry(|r| r.retain(|c| c.pid() != pid));
        if code < 0 {
            // Killed: it could not remove the segments it created.
            reap_segments_of(pid);
        }
        Ok(Some(code))
    }

    /// Waits for the child to end ([`Process::join`](crate::Process::join)).
    pub(crate) fn join(&self) -> Result<i32, ProcessError> {
        if let Some(code) = *self.exit_lock() {
            return Ok(code);
        }
        loop {
            self.wait_ended()?;
            if let Some(code) = self.poll()? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout` ([`Process::join_timeout`](crate::Process::join_timeout));
    /// `Ok(None)` while it still runs.
    pub(crate) fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (forever for `None`); `Ok(None)` while it
    /// still runs.
    pub(crate) fn join_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<i32>, ProcessError> {
        loop {
            if let Some(code) = self.poll()? {
                return Ok(Some(code));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            os::poll_readable(&[self.pidfd()?], left).map_err(ProcessError::os("poll"))?;
        }
    }
}

/// The children this process started and has not reaped yet: [`register`]
/// adds one when it starts, [`Started::poll`] removes it when it reaps it.
struct Registry {
    /// The raw pid of the process the list belongs to (0: none yet).
    owner: i32,
    children: Vec<Arc<Started>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    owner: 0,
    children: Vec::new(),
});

fn with_registry<R>(f: impl FnOnce(&mut Vec<Arc<Started>>) -> R) -> R {
    let mut g = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let me = os::identity::pid();
    if g.owner != me.as_raw() {
        // Inherited through fork: those are the parent's children. Forget,
        // never drop: a dropped entry would recycle a report segment that
        // the parent still uses for that child.
        std::mem::forget(std::mem::take(&mut g.children));
        g.owner = me.as_raw();
    }
    f(&mut g.children)
}

/// The pid of the process that last registered a child (0: none yet): a
/// forked child, which inherits its parent's value, has no children of its
/// own to wait for until it registers one.
static PARENT_OF_REGISTERED: AtomicI32 = AtomicI32::new(0);

/// Adds a child that was just started to the registry.
pub(crate) fn register(started: Arc<Started>) {
    let me = os::identity::pid();
    if PARENT_OF_REGISTERED.load(Ordering::Relaxed) != me.as_raw() {
        PARENT_OF_REGISTERED.store(me.as_raw(), Ordering::Relaxed);
    }
    with_registry(|r| r.push(started));
}

/// The registered children (running, or ended and not reaped yet).
pub(crate) fn registered() -> Vec<Arc<Started>> {
    with_registry(|r| r.clone())
}

/// Whether this process itself (not a parent it was forked from) has
/// registered a child.
#[inline]
pub(crate) fn has_registered() -> bool {
    // Relaxed: the value is this process's own pid only if this process
    // stored it (program order), and then the registry lock orders the rest.
    PARENT_OF_REGISTERED.load(Ordering::Relaxed) == os::identity::pid().as_raw()
}
