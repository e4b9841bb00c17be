//! Contexts (`get_context`) and the start method in force
//! (`set_start_method`, `get_start_method`).
//!
//! Layer 0 (foundations): uses `error` and `start_method`. `Context::process`
//! and `Context::builder` are in `process` (layer 6), which this module
//! does not know.

use std::sync::Mutex;

use shmproc_shm::os;

use crate::error::ProcessError;
use crate::start_method::{DEFAULT_START_METHOD, StartMethod};

struct Setting {
    method: Option<StartMethod>,
    /// The raw pid of the process the setting belongs to (0: none yet).
    owner: i32,
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
    if let (Some(current), true, false) = (g.method, g.owner == me.as_raw(), force) {
        return Err(ProcessError::StartMethodAlreadySet { current });
    }
    *g = Setting {
        method: Some(method),
        owner: me.as_raw(),
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
        Some(m) if g.owner == os::identity::pid().as_raw() => m,
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
}

impl Default for Context {
    fn default() -> Self {
        default_context()
    }
}
