//! Start methods and contexts (`get_context`, `set_start_method`).

use std::fmt;
use std::sync::Mutex;

use shmproc_shm::os;

use crate::error::ProcessError;
use crate::process::{Builder, Process};
use crate::transfer::Transfer;

/// How a child process is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Re-execute this program (`/proc/self/exe`) and run a plain `fn`
    /// target there. Safe in a multi-threaded parent; slowest.
    Spawn,
    /// `fork` the calling process; the child runs a closure or a plain `fn`.
    /// Refused in a multi-threaded parent unless allowed
    /// ([`Context::allow_fork_with_threads`]).
    Fork,
    /// Ask a single-threaded server, started on first use, to `fork` the
    /// child; the child runs a plain `fn`. Safe with threads, and fast.
    ForkServer,
}

impl StartMethod {
    /// Python's name for the method.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
            StartMethod::ForkServer => "forkserver",
        }
    }

    /// Parses Python's name.
    pub fn from_name(s: &str) -> Option<StartMethod> {
        match s {
            "spawn" => Some(StartMethod::Spawn),
            "fork" => Some(StartMethod::Fork),
            "forkserver" => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default start method: `forkserver`, as Python 3.14 on Linux (safe
/// with threads, and faster than `spawn`).
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::ForkServer;

/// The start methods this platform supports, the default first.
pub fn get_all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::ForkServer,
        StartMethod::Spawn,
        StartMethod::Fork,
    ]
}

struct Setting {
    method: Option<StartMethod>,
    owner: os::Pid,
}

static METHOD: Mutex<Setting> = Mutex::new(Setting {
    method: None,
    owner: 0,
});

/// Sets the start method of this process, once: a second call is
/// [`ProcessError::StartMethodAlreadySet`] unless `force` (as Python's
/// `set_start_method(method, force=False)`).
///
/// # Errors
/// [`ProcessError::StartMethodAlreadySet`].
pub fn set_start_method(method: StartMethod, force: bool) -> Result<(), ProcessError> {
    let mut g = METHOD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let me = os::identity::pid();
    if let (Some(current), true, false) = (g.method, g.owner == me, force) {
        return Err(ProcessError::StartMethodAlreadySet { current });
    }
    *g = Setting {
        method: Some(method),
        owner: me,
    };
    Ok(())
}

/// The start method in force: the one set with [`set_start_method`], or
/// [`DEFAULT_START_METHOD`].
pub fn get_start_method() -> StartMethod {
    let g = METHOD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match g.method {
        Some(m) if g.owner == os::identity::pid() => m,
        _ => DEFAULT_START_METHOD,
    }
}

/// A start method with its options (Python's `get_context(method)`).
///
/// `Context` is `Copy`; its builder methods return a changed copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
    allow_fork_with_threads: bool,
    pdeathsig: Option<i32>,
}

/// The context of a start method (Python's `multiprocessing.get_context`).
pub fn get_context(method: StartMethod) -> Context {
    Context::new(method)
}

/// The context of the start method in force ([`get_start_method`]).
pub fn default_context() -> Context {
    Context::new(get_start_method())
}

impl Context {
    /// A context for `method`, children dying with their parent (`SIGKILL`).
    pub const fn new(method: StartMethod) -> Self {
        Self {
            method,
            allow_fork_with_threads: false,
            pdeathsig: Some(os::SIGKILL),
        }
    }

    /// The start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// Lets `fork` run in a process with other threads (refused by default).
    ///
    /// The forked child then holds a copy of every lock as it was at the
    /// fork, including locks that another thread held (the allocator's in
    /// non-glibc libcs, Rust's stdout, any `Mutex` of yours): the target must
    /// not touch them. `cargo test` runs every test on its own thread, so
    /// tests of `fork` need this.
    #[must_use]
    pub const fn allow_fork_with_threads(mut self, allow: bool) -> Self {
        self.allow_fork_with_threads = allow;
        self
    }

    /// Whether `fork` may run with other threads.
    pub fn forks_with_threads(&self) -> bool {
        self.allow_fork_with_threads
    }

    /// The signal a child receives when this process dies
    /// (`PR_SET_PDEATHSIG`); `None` to let children outlive it. Default:
    /// `SIGKILL`. Children are created from one long-lived thread, so the
    /// signal fires when the process dies, not when the starting thread ends.
    #[must_use]
    pub const fn parent_death_signal(mut self, sig: Option<i32>) -> Self {
        self.pdeathsig = sig;
        self
    }

    /// The parent-death signal of this context.
    pub fn death_signal(&self) -> Option<i32> {
        self.pdeathsig
    }

    /// A process running `target(args)` in this context.
    pub fn process<A: Transfer>(&self, target: fn(A), args: A) -> Process {
        self.builder().target(target, args).build()
    }

    /// A process builder in this context.
    pub fn builder(&self) -> Builder {
        Process::builder().context(*self)
    }
}

impl Default for Context {
    fn default() -> Self {
        default_context()
    }
}
