//! `Process` (Python's `multiprocessing.Process`) and its [`Builder`]:
//! create, start, join, signal; `active_children`.
//!
//! Layer 6 (the public handle): uses `boot` (layer 5, only to keep the
//! hook linked), `start::fork` and `start::exec` (layer 4), `started` and
//! `shutdown` (layer 2), and the layer-0 `context`, `start_method`,
//! `target`, `transfer`, `identity` and `error`.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use shmproc_shm::os::{self, Pid};

use crate::context::{Context, default_context};
use crate::error::ProcessError;
use crate::start_method::StartMethod;
use crate::started::{Started, register, registered};
use crate::target::{FnTarget, Target};
use crate::transfer::{PassAs, Transfer, pack_args_as};

/// The next default name's number (low 32 bits) and the pid it counts for
/// (high 32 bits): a forked child counts from 1 again without being told.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_number() -> u64 {
    let me = u64::from(os::identity::pid().as_u32()) << 32;
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
    pub fn target<A: Transfer, P: PassAs<A>>(mut self, f: fn(A), args: P) -> Self {
        self.target = Some(Target::Fn {
            f: FnTarget::new(f),
            packed: pack_args_as(&args).map_err(ProcessError::from),
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
            target: Mutex::new(self.target),
            started: OnceLock::new(),
        }
    }

    /// Builds and starts the process.
    ///
    /// # Errors
    /// As [`Process::start`].
    pub fn start(self) -> Result<Process, ProcessError> {
        let p = self.build();
        p.start()?;
        Ok(p)
    }
}

/// Starting processes in a context (here, not in `context`, which sits
/// below `Process`).
impl Context {
    /// A process running `target(args)` in this context.
    pub fn process<A: Transfer, P: PassAs<A>>(&self, target: fn(A), args: P) -> Process {
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
    /// Taken by `start` (under this lock, so two racing starts cannot both
    /// start a child): `start` takes `&self`, as Python's `p.start()`.
    target: Mutex<Option<Target>>,
    started: OnceLock<Arc<Started>>,
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
    pub fn new<A: Transfer, P: PassAs<A>>(target: fn(A), args: P) -> Process {
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
        if self.started.get().is_some() {
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
    pub fn start(&self) -> Result<(), ProcessError> {
        let mut slot = self
            .target
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.started.get().is_some() {
            return Err(ProcessError::AlreadyStarted {
                name: self.name.clone(),
            });
        }
        if crate::identity::current_child().is_some_and(|me| me.daemon) {
            return Err(ProcessError::DaemonCannotHaveChildren);
        }
        let target = slot.take().ok_or_else(|| ProcessError::NoTarget {
            name: self.name.clone(),
        })?;
        let ctx = self.ctx.unwrap_or_else(default_context);
        crate::boot::ensure_linked();
        crate::shutdown::register_at_exit();
        let started = match (ctx.start_method(), target) {
            (StartMethod::Fork, target) => {
                crate::start::fork::start_fork(&ctx, &self.name, self.daemon, target)?
            }
            (method, Target::Closure(_)) => return Err(ProcessError::ClosureNeedsFork { method }),
            (method, Target::Fn { f, packed }) => Arc::new(crate::start::exec::start_exec(
                method,
                &ctx,
                &self.name,
                self.daemon,
                f,
                packed?,
            )?),
        };
        register(Arc::clone(&started));
        // Cannot be set already: only a `start` holding `slot` sets it.
        let _ = self.started.set(started);
        drop(slot);
        Ok(())
    }

    fn started(&self) -> Result<&Arc<Started>, ProcessError> {
        self.started.get().ok_or_else(|| ProcessError::NotStarted {
            name: self.name.clone(),
        })
    }

    /// The pid, once started.
    pub fn pid(&self) -> Option<Pid> {
        self.started.get().map(|s| s.pid())
    }

    /// Python's `exitcode`: `None` while running (or not started); 0; the
    /// code passed to `exit`; 1 after a panic; `-N` when killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.started.get().and_then(|s| s.poll().ok().flatten())
    }

    /// Whether the child is running (reaps it if it has ended).
    pub fn is_alive(&self) -> bool {
        self.started
            .get()
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
        self.started()?.join()
    }

    /// Waits at most `timeout` for the child to end; returns its exit code
    /// (Python's `join(timeout)`, then `exitcode`).
    ///
    /// # Errors
    /// [`ProcessError::Timeout`] while the child still runs (it is left
    /// running: join again, or `terminate`), or as [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<i32, ProcessError> {
        let started = self.started()?;
        started
            .join_timeout(timeout)?
            .ok_or_else(|| self.timed_out(timeout))
    }

    /// Waits until `deadline` for the child to end; returns its exit code.
    ///
    /// # Errors
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: std::time::Instant) -> Result<i32, ProcessError> {
        let started = self.started()?;
        let waited = deadline.saturating_duration_since(std::time::Instant::now());
        started
            .join_until(Some(deadline))?
            .ok_or_else(|| self.timed_out(waited))
    }

    fn timed_out(&self, waited: Duration) -> ProcessError {
        ProcessError::Timeout {
            name: self.name.clone(),
            waited,
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
        self.started.get().and_then(|s| s.pidfd().ok())
    }

    /// The panic message of a child that panicked (exit code 1), or the
    /// error of a child whose bootstrap failed.
    pub fn panic_message(&self) -> Option<String> {
        self.started.get().and_then(|s| s.report.message())
    }

    /// The start method it was started with.
    pub fn start_method(&self) -> Option<StartMethod> {
        self.started.get().map(|s| s.method)
    }

    /// Releases the pidfd (if one was opened) and the report segment
    /// (Python's `close`).
    ///
    /// # Errors
    /// [`ProcessError::StillRunning`] while the child runs (the `Process` is
    /// given back inside the error's context: join first).
    pub fn close(self) -> Result<(), ProcessError> {
        if let Some(s) = self.started.get() {
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

/// The children of this process that are still running (Python's
/// `active_children`); finished ones are reaped on the way.
pub fn active_children() -> Vec<Process> {
    let all = registered();
    all.into_iter()
        .filter(|s| matches!(s.poll(), Ok(None)))
        .map(|s| Process {
            name: s.info.name.clone(),
            daemon: s.info.daemon,
            ctx: None,
            target: Mutex::new(None),
            started: OnceLock::from(s),
        })
        .collect()
}
