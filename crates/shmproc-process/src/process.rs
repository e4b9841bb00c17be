//! `Process`: create, start, join, signal; the registry of this process's
//! children; `active_children`; cleanup at exit.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use shmproc_shm::os::{self, Pid};

use crate::boot_record::{Boot, MAX_HANDLE_FDS};
use crate::child::ChildInfo;
use crate::context::{Context, default_context};
use crate::error::ProcessError;
use crate::identity::ProcessInfo;
use crate::reexec::ROLE_CHILD;
use crate::report::Report;
use crate::start_method::StartMethod;
use crate::target::{FnTarget, Target};
use crate::transfer::{Transfer, pack_args};

/// The next default name's number (low 32 bits) and the pid it counts for
/// (high 32 bits): a forked child counts from 1 again without being told.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_number() -> u64 {
    let me = u64::from(os::identity::pid() as u32) << 32;
    // Relaxed: only this word matters (a unique number per process).
    let mut cur = COUNTER.load(Ordering::Relaxed);
    loop {
        let n = if (cur & !0xffff_ffff) == me {
            cur & 0xffff_ffff
        } else {
            1
        };
        let next = me | ((n + 1) & 0xffff_ffff);
        match COUNTER.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return n,
            Err(now) => cur = now,
        }
    }
}

fn default_name() -> String {
    let n = next_number();
    match crate::identity::current_child() {
        Some(me) => format!("{}:{n}", me.name),
        None => format!("Process-{n}"),
    }
}

/// Builds a [`Process`] (Python's `Process(target=..., args=..., name=..., daemon=...)`).
#[derive(Debug)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    ctx: Option<Context>,
    target: Option<Target>,
}

impl Builder {
    /// The process's name (default `Process-N`; `<parent name>:N` in a child).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes it a daemon: terminated when its parent exits normally, and not
    /// allowed to start children.
    #[must_use]
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The context (start method and options); default: [`default_context`]
    /// at `start`.
    #[must_use]
    pub fn context(mut self, ctx: Context) -> Self {
        self.ctx = Some(ctx);
        self
    }

    /// Shorthand for `.context(get_context(method))`.
    #[must_use]
    pub fn start_method(self, method: StartMethod) -> Self {
        self.context(Context::new(method))
    }

    /// The target: a plain `fn` and its arguments, under every start method.
    /// The arguments are encoded now (shared objects become handles) and
    /// decoded in the child.
    #[must_use]
    pub fn target<A: Transfer>(mut self, f: fn(A), args: A) -> Self {
        self.target = Some(Target::Fn {
            f: FnTarget::new(f),
            packed: pack_args(&args),
        });
        self
    }

    /// The target: a closure, run in a forked child (the `fork` start method
    /// only; `start` is [`ProcessError::ClosureNeedsFork`] otherwise).
    #[must_use]
    pub fn closure(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.target = Some(Target::Closure(Box::new(f)));
        self
    }

    /// The process, not started.
    pub fn build(self) -> Process {
        Process {
            name: self.name.unwrap_or_else(default_name),
            daemon: self.daemon,
            ctx: self.ctx,
            target: self.target,
            started: None,
        }
    }

    /// Builds and starts the process.
    ///
    /// # Errors
    /// As [`Process::start`].
    pub fn start(self) -> Result<Process, ProcessError> {
        let mut p = self.build();
        p.start()?;
        Ok(p)
    }
}

/// Starting processes in a context (here, not in `context`, which sits
/// below `Process`).
impl Context {
    /// A process running `target(args)` in this context.
    pub fn process<A: Transfer>(&self, target: fn(A), args: A) -> Process {
        self.builder().target(target, args).build()
    }

    /// A process builder in this context.
    pub fn builder(&self) -> Builder {
        Process::builder().context(*self)
    }
}

/// A child process (Python's `multiprocessing.Process`).
///
/// ```no_run
/// use shmproc_process::{Process, StartMethod};
///
/// fn worker((name, n): (String, u64)) {
///     println!("[{name}] {n}");
/// }
///
/// let mut p = Process::builder()
///     .start_method(StartMethod::Spawn)
///     .target(worker, ("Process-1".to_string(), 2))
///     .start()?;
/// assert_eq!(p.join()?, 0);
/// # Ok::<(), shmproc_process::ProcessError>(())
/// ```
///
/// Dropping a started `Process` does not stop the child: it stays in
/// [`active_children`] and is joined (or, a daemon, terminated) when this
/// process exits normally, as in Python.
pub struct Process {
    name: String,
    daemon: bool,
    ctx: Option<Context>,
    target: Option<Target>,
    started: Option<Arc<Started>>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("pid", &self.pid())
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

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
    info: ProcessInfo,
    method: StartMethod,
    report: Report,
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

impl Process {
    /// A builder.
    pub fn builder() -> Builder {
        Builder {
            name: None,
            daemon: false,
            ctx: None,
            target: None,
        }
    }

    /// A process running `target(args)` with the default context.
    pub fn new<A: Transfer>(target: fn(A), args: A) -> Process {
        Self::builder().target(target, args).build()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the process (before `start`, the child sees the new name).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether it is (or will start as) a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    /// [`ProcessError::AlreadyStarted`] after `start` (as Python).
    pub fn set_daemon(&mut self, daemon: bool) -> Result<(), ProcessError> {
        if self.started.is_some() {
            return Err(ProcessError::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        self.daemon = daemon;
        Ok(())
    }

    /// Starts the child.
    ///
    /// # Errors
    /// [`ProcessError::AlreadyStarted`], [`ProcessError::NoTarget`],
    /// [`ProcessError::DaemonCannotHaveChildren`] (this process is a daemon),
    /// [`ProcessError::ClosureNeedsFork`], [`ProcessError::ForkWithThreads`],
    /// [`ProcessError::TargetOutsideExecutable`], an argument error, or the
    /// OS error of `fork` / `posix_spawn`.
    pub fn start(&mut self) -> Result<(), ProcessError> {
        if self.started.is_some() {
            return Err(ProcessError::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        if crate::identity::current_child().is_some_and(|me| me.daemon) {
            return Err(ProcessError::DaemonCannotHaveChildren);
        }
        let target = self.target.take().ok_or_else(|| ProcessError::NoTarget {
            name: self.name.clone(),
        })?;
        let ctx = self.ctx.unwrap_or_else(default_context);
        crate::boot::ensure_linked();
        register_at_exit();
        let started = match (ctx.start_method(), target) {
            (StartMethod::Fork, target) => start_fork(&ctx, &self.name, self.daemon, target)?,
            (method, Target::Closure(_)) => return Err(ProcessError::ClosureNeedsFork { method }),
            (method, Target::Fn { f, packed }) => Arc::new(start_exec(
                method,
                &ctx,
                &self.name,
                self.daemon,
                f,
                packed?,
            )?),
        };
        let me = os::identity::pid();
        if PARENT_OF_REGISTERED.load(Ordering::Relaxed) != me {
            PARENT_OF_REGISTERED.store(me, Ordering::Relaxed);
        }
        with_registry(|r| r.push(Arc::clone(&started)));
        self.started = Some(started);
        Ok(())
    }

    fn started(&self) -> Result<&Arc<Started>, ProcessError> {
        self.started
            .as_ref()
            .ok_or_else(|| ProcessError::NotStarted {
                name: self.name.clone(),
            })
    }

    /// The pid, once started.
    pub fn pid(&self) -> Option<Pid> {
        self.started.as_ref().map(|s| s.pid())
    }

    /// Python's `exitcode`: `None` while running (or not started); 0; the
    /// code passed to `exit`; 1 after a panic; `-N` when killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.started.as_ref().and_then(|s| s.poll().ok().flatten())
    }

    /// Whether the child is running (reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        self.started
            .as_ref()
            .is_some_and(|s| matches!(s.poll(), Ok(None)))
    }

    /// Waits for the child to end; returns its exit code.
    ///
    /// Our own child (`fork`, `spawn`) is waited for with
    /// `waitid(WEXITED | WNOWAIT)`, then reaped under the lock that guards
    /// its exit code, so no other thread can ever signal a recycled pid; a
    /// fork-server child, on its pidfd.
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], or the OS error of
    /// `waitid`/`waitpid` (`poll` for a fork-server child).
    pub fn join(&self) -> Result<i32, ProcessError> {
        let s = self.started()?;
        if let Some(code) = *s.exit_lock() {
            return Ok(code);
        }
        loop {
            s.wait_ended()?;
            if let Some(code) = s.poll()? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout`; `Ok(None)` if the child is still running.
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        let s = self.started()?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(code) = s.poll()? {
                return Ok(Some(code));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            os::poll_readable(&[s.pidfd()?], left).map_err(ProcessError::os("poll"))?;
        }
    }

    /// Sends `SIGTERM` (Python's `terminate`). A no-op once it has ended.
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], or the OS error.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        self.signal(os::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill`). A no-op once it has ended.
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], or the OS error.
    pub fn kill(&self) -> Result<(), ProcessError> {
        self.signal(os::SIGKILL)
    }

    /// Sends signal `sig` through the pidfd (never to a recycled pid).
    ///
    /// # Errors
    /// [`ProcessError::NotStarted`], or the OS error.
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        self.started()?.signal(sig)
    }

    /// The sentinel: a pidfd that becomes readable when the child ends
    /// (pass it to [`wait`](crate::wait) beside other descriptors). Opened
    /// on the first call; asked for only after the child was reaped, a
    /// descriptor that is always readable (the pid may name another process
    /// by then). `None` before `start`, or if no descriptor could be opened.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.started.as_ref().and_then(|s| s.pidfd().ok())
    }

    /// The panic message of a child that panicked (exit code 1), or the
    /// error of a child whose bootstrap failed.
    pub fn panic_message(&self) -> Option<String> {
        self.started.as_ref().and_then(|s| s.report.message())
    }

    /// The start method it was started with.
    pub fn start_method(&self) -> Option<StartMethod> {
        self.started.as_ref().map(|s| s.method)
    }

    /// Releases the pidfd (if one was opened) and the report segment
    /// (Python's `close`).
    ///
    /// # Errors
    /// [`ProcessError::StillRunning`] while the child runs (the `Process` is
    /// given back inside the error's context: join first).
    pub fn close(self) -> Result<(), ProcessError> {
        if let Some(s) = &self.started {
            if s.poll()?.is_none() {
                return Err(ProcessError::StillRunning {
                    name: self.name.clone(),
                    pid: s.pid(),
                });
            }
        }
        Ok(())
    }
}

impl Started {
    fn new(
        pid: Pid,
        pidfd: Option<OwnedFd>,
        info: ProcessInfo,
        method: StartMethod,
        report: Report,
    ) -> Started {
        Started {
            pid: AtomicI32::new(pid),
            pidfd: pidfd.map(OnceLock::from).unwrap_or_default(),
            info,
            method,
            report,
            exit: Mutex::new(None),
        }
    }

    fn pid(&self) -> Pid {
        // Relaxed: stored before the `Started` is shared (the registry's
        // lock, or the thread that created it).
        self.pid.load(Ordering::Relaxed)
    }

    fn exit_lock(&self) -> MutexGuard<'_, Option<i32>> {
        self.exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn signal(&self, sig: i32) -> Result<(), ProcessError> {
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
    fn pidfd(&self) -> Result<BorrowedFd<'_>, ProcessError> {
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
    fn poll(&self) -> Result<Option<i32>, ProcessError> {
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
                        if !crate::forkserver::client::server_alive() {
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
            crate::tracker::reap_segments_of(pid);
        }
        Ok(Some(code))
    }
}

/// Forks a child (on the launcher thread when a death signal is set).
fn start_fork(
    ctx: &Context,
    name: &str,
    daemon: bool,
    target: Target,
) -> Result<Arc<Started>, ProcessError> {
    let launcher = ctx.death_signal().is_some() && !crate::launcher::on_main_thread();
    if launcher {
        crate::launcher::ensure()?;
    }
    if !ctx.forks_with_threads() {
        let threads = os::thread_count_cached().unwrap_or(1);
        let ours = usize::from(crate::launcher::tid().is_some());
        if threads > 1 + ours {
            return Err(ProcessError::ForkWithThreads { threads });
        }
    }
    let me = os::identity::pid();
    // Everything the parent keeps is allocated now: after the fork, each
    // page the parent writes before the child has run costs a copy.
    let started = Arc::new(Started::new(
        0,
        None,
        ProcessInfo::child(name.to_owned(), daemon, me),
        StartMethod::Fork,
        Report::take(&[])?,
    ));
    let job = ForkJob {
        started: Arc::clone(&started),
        pdeathsig: ctx.death_signal(),
        parent: me,
        flush_stdio: !ctx.forks_with_threads(),
        target,
    };
    if launcher {
        crate::launcher::run(move || job.fork())??;
    } else {
        job.fork()?;
    }
    Ok(started)
}

struct ForkJob {
    /// What the parent keeps; the child reads its identity and report there.
    started: Arc<Started>,
    pdeathsig: Option<i32>,
    parent: Pid,
    flush_stdio: bool,
    target: Target,
}

impl ForkJob {
    #[allow(unsafe_code)] // `os::fork`: the child runs the target and leaves with `_exit`.
    fn fork(self) -> Result<Pid, ProcessError> {
        // Buffered output would otherwise be written twice (parent and child).
        let _ = std::io::stdout().flush();
        // SAFETY: `start_fork` refused a multi-threaded parent unless the
        // caller allowed it (`Context::allow_fork_with_threads`, whose docs
        // state the restrictions on the target); the child leaves through
        // `run_child`, which ends in `exit_now` and never returns here.
        match unsafe { os::fork() } {
            Err(e) => Err(ProcessError::os("fork")(e)),
            Ok(os::Forked::Child) => {
                let ForkJob {
                    started,
                    pdeathsig,
                    parent,
                    flush_stdio,
                    target,
                } = self;
                let started = leak(started);
                let info = ChildInfo {
                    me: &started.info,
                    pdeathsig,
                    pdeath_parent: parent,
                    flush_stdio,
                    self_report: false,
                };
                crate::child::run_child(info, &started.report, move || target.run())
            }
            Ok(os::Forked::Parent(pid)) => {
                // Relaxed: published with the `Started` (see `Started::pid`).
                self.started.pid.store(pid, Ordering::Relaxed);
                Ok(pid)
            }
        }
    }
}

/// A forked child's `Started`, kept for good: it never returns to the code
/// that would drop it (it leaves through `exit_now`).
#[allow(unsafe_code)] // `Arc::into_raw` turned into a `'static` reference.
fn leak(started: Arc<Started>) -> &'static Started {
    let p = Arc::into_raw(started);
    // SAFETY: `into_raw` gives up this strong reference without releasing
    // it, so the count never reaches zero and the `Started` is never freed:
    // the pointer stays valid (and shared, read-only) for the rest of the
    // process.
    unsafe { &*p }
}

/// `spawn` and `forkserver`: a fresh image runs the boot record.
fn start_exec(
    method: StartMethod,
    ctx: &Context,
    name: &str,
    daemon: bool,
    f: FnTarget,
    (args, fds): (Vec<u8>, Vec<OwnedFd>),
) -> Result<Started, ProcessError> {
    if fds.len() > MAX_HANDLE_FDS {
        return Err(ProcessError::args(
            "arguments",
            format!("{} descriptors, more than {MAX_HANDLE_FDS}", fds.len()),
        ));
    }
    let (trampoline_off, target_off) = f.offsets()?;
    let exe = crate::target::exe_id()
        .ok_or_else(|| ProcessError::BadBoot("cannot stat /proc/self/exe".into()))?;
    let boot = Boot {
        exe,
        trampoline_off,
        target_off,
        type_hash: f.type_hash,
        parent_pid: os::identity::pid(),
        pdeathsig: ctx.death_signal().unwrap_or(0),
        daemon,
        name: name.to_owned(),
        args,
        fds: fds.iter().map(AsRawFd::as_raw_fd).collect(),
    };
    let report = Report::take(&boot.encode())?;
    match method {
        StartMethod::ForkServer => {
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            let (pid, pidfd) = crate::forkserver::client::start(&report, &borrowed)?;
            Ok(finish(pid, Some(pidfd), name, daemon, method, report))
        }
        _ => {
            let arg = format!("{ROLE_CHILD}{}", report.fd().as_raw_fd());
            let job = move || {
                let mut keep: Vec<BorrowedFd<'_>> = vec![report.fd()];
                keep.extend(fds.iter().map(AsFd::as_fd));
                let r = crate::reexec::spawn_self(&arg, &keep);
                drop(keep);
                (r, report)
            };
            let (pid, report) =
                if ctx.death_signal().is_some() && !crate::launcher::on_main_thread() {
                    crate::launcher::run(job)?
                } else {
                    job()
                };
            Ok(finish(pid?, None, name, daemon, method, report))
        }
    }
}

fn finish(
    pid: Pid,
    pidfd: Option<OwnedFd>,
    name: &str,
    daemon: bool,
    method: StartMethod,
    report: Report,
) -> Started {
    let info = ProcessInfo::child(name.to_owned(), daemon, os::identity::pid());
    Started::new(pid, pidfd, info, method, report)
}

struct Registry {
    owner: Pid,
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
    if g.owner != me {
        // Inherited through fork: those are the parent's children. Forget,
        // never drop: a dropped entry would recycle a report segment that
        // the parent still uses for that child.
        std::mem::forget(std::mem::take(&mut g.children));
        g.owner = me;
    }
    f(&mut g.children)
}

/// The children of this process that are still running (Python's
/// `active_children`); finished ones are reaped on the way.
pub fn active_children() -> Vec<Process> {
    let all = with_registry(|r| r.clone());
    all.into_iter()
        .filter(|s| matches!(s.poll(), Ok(None)))
        .map(|s| Process {
            name: s.info.name.clone(),
            daemon: s.info.daemon,
            ctx: None,
            target: None,
            started: Some(s),
        })
        .collect()
}

/// How long a daemon child gets between `SIGTERM` and `SIGKILL` at exit.
pub const DAEMON_TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// The pid of the process that last registered a child (0: none yet): a
/// forked child, which inherits its parent's value, has no children of its
/// own to wait for until it registers one.
static PARENT_OF_REGISTERED: AtomicI32 = AtomicI32::new(0);

/// Python's exit handler: terminate daemon children, then join the others.
#[inline]
pub(crate) fn shutdown_children() {
    // Relaxed: the value is this process's own pid only if this process
    // stored it (program order), and then the registry lock orders the rest.
    if PARENT_OF_REGISTERED.load(Ordering::Relaxed) == os::identity::pid() {
        shutdown_registered_children();
    }
}

/// [`shutdown_children`] once this process has registered children.
#[inline(never)]
fn shutdown_registered_children() {
    let all = with_registry(|r| r.clone());
    let (daemons, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|s| s.info.daemon);
    for d in &daemons {
        let _ = d.signal(os::SIGTERM);
    }
    for d in daemons {
        let p = Process {
            name: d.info.name.clone(),
            daemon: true,
            ctx: None,
            target: None,
            started: Some(d),
        };
        if !matches!(p.join_timeout(DAEMON_TERMINATE_GRACE), Ok(Some(_))) {
            let _ = p.kill();
            let _ = p.join_timeout(DAEMON_TERMINATE_GRACE);
        }
    }
    for o in others {
        let p = Process {
            name: o.info.name.clone(),
            daemon: false,
            ctx: None,
            target: None,
            started: Some(o),
        };
        let _ = p.join();
    }
}

extern "C" fn at_exit_hook() {
    let _ = std::panic::catch_unwind(shutdown_children);
}

fn register_at_exit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = os::at_exit(at_exit_hook) {
            os::write_stderr_raw(format!("shmproc: atexit failed: {e}\n").as_bytes());
        }
    });
}
