//! The start methods (`spawn`, `fork`, `forkserver`) and their names.
//!
//! Layer 0 (foundations): uses no other module of this crate.

use std::fmt;

/// How a child process is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Re-execute this program (`/proc/self/exe`) and run a plain `fn`
    /// target there. Safe in a multi-threaded parent; slowest.
    Spawn,
    /// `fork` the calling process; the child runs a closure or a plain `fn`.
    /// Refused in a multi-threaded parent unless allowed
    /// ([`Context::allow_fork_with_threads`](crate::Context::allow_fork_with_threads)).
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
