//! Processes for shmproc: Python's `multiprocessing.Process` and its start
//! methods, for Rust.
//!
//! ```no_run
//! use shmproc_process::{Process, Shareable};
//! use shmproc_sync::Value;
//!
//! fn worker((name, counter): (String, Value<u64>)) {
//!     *counter.lock().expect("lock") += 1;
//!     println!("[{name}] done");
//! }
//!
//! let counter = Value::new(0u64)?;
//! let mut children = Vec::new();
//! for i in 0..4 {
//!     let args = (format!("worker-{i}"), counter.try_clone()?);
//!     children.push(Process::builder().target(worker, args).start()?);
//! }
//! for c in &children {
//!     assert_eq!(c.join()?, 0);
//! }
//! assert_eq!(counter.load().expect("load"), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Start methods
//! | method | how | target | threads in the parent |
//! |---|---|---|---|
//! | [`StartMethod::ForkServer`] (default) | a single-threaded server, started on first use, forks the child ahead of time (a waiting *spare*) | `fn(A)` | fine |
//! | [`StartMethod::Spawn`] | `posix_spawn` of `/proc/self/exe`, intercepted before `main` | `fn(A)` | fine |
//! | [`StartMethod::Fork`] | `fork` | `fn(A)` or a closure | refused unless [allowed](Context::allow_fork_with_threads) |
//!
//! `spawn` and `forkserver` need **no setup**: a function placed in
//! `.init_array` intercepts a child before `main` (a plain program or a
//! `cargo test` binary alike) and finds the target `fn` by its offset in the
//! same executable, with checks that make misuse an error (see
//! [how the child finds its target](crate#how-the-child-finds-its-target)).
//!
//! # Arguments and shared objects
//! Arguments implement [`Transfer`]: plain values, `String`, `Vec`, tuples,
//! [`PodArg`] (any `Pod`), [`Serde`] (any `serde` type, feature `serde`) and
//! every [`Shareable`] shared object (`Value`, `Array`, `Lock`, `Event`, ...),
//! which travels as a handle (segment name, or fd) and is reopened in the
//! child, under every start method.
//!
//! # Exit codes (Python's)
//! `None` while running; 0; the code given to `std::process::exit`; 1 after
//! a panic (the message: [`Process::panic_message`]); `-N` when killed by
//! signal `N`.
//!
//! # Lifetimes
//! - Children receive `PR_SET_PDEATHSIG` (`SIGKILL` by default,
//!   [`Context::parent_death_signal`]). The signal fires when the *thread*
//!   that created the child ends, so every child is created from one
//!   long-lived launcher thread: children die with the parent process, not
//!   with the thread (or the `cargo test` test) that started them. After the
//!   `prctl` the child compares `getppid()` with its parent, closing the race
//!   with a parent that died first.
//! - When a process exits normally (returns from `main` or calls `exit`), an
//!   `atexit` handler terminates its daemon children (`SIGTERM`, then
//!   `SIGKILL` after [`DAEMON_TERMINATE_GRACE`]) and joins the others, as
//!   Python does; a child does the same for its own children before it exits.
//!   A daemon may not start children ([`ProcessError::DaemonCannotHaveChildren`]).
//! - Segments created by a child that was killed are removed when the parent
//!   reaps it, if nobody maps them any more (see [`reap_segments_of`]); those
//!   of a top-level program that was itself killed, by its session tracker, a
//!   small process started with the first named segment (see
//!   [`tracker_session`] and the `tracker` module source).
//!
//! # How the child finds its target
//! See the `target` and `boot` module sources: the parent records the target's and a
//! typed trampoline's offsets from a reference function; the child checks it
//! runs the same executable file (device and inode), that the addresses lie
//! inside it, and that the argument type's hash matches, before calling.
#![deny(unsafe_op_in_unsafe_fn)]

// The modules, top layer first. A module uses only modules listed below it
// (`forkserver` is a namespace for two: its `server` is in layer 4, its
// `client` in layer 1). Each module's `//!` docs name its layer and what it
// uses.

// Layer 6, the public handle: `Process`, `Builder`, `Context::process`.
mod process;

// Layer 5, the entry before `main`: the `.init_array` hook, which reads the
// role in `argv[1]` and becomes a spawn child, the fork server or the tracker.
mod boot;

// Layer 4, starting a child: the fork server's side (`forkserver::server`)
// and the parent's (`start::fork`, `start::exec`).
mod forkserver;
mod start;

// Layer 3, running as a child: the bootstrap common to every start method.
mod child;

// Layer 2, this process's children: ending them at exit; each started child,
// and the registry of those not reaped yet.
mod shutdown;
mod started;

// Layer 1, helper processes and re-exec (with `forkserver::client`): the
// session tracker, which uses
mod tracker;
// re-executing this program in a role, and the argv strings of the roles.
mod reexec;

// Layer 0, foundations: data, codecs and process-local state; starts nothing.
// What a re-executed child reads: the boot record, its target's code offsets.
mod boot_record;
mod code_ref;
mod target;
// Settings and process-wide helpers: contexts, the launcher thread, the
// per-child report segment, waiting on sentinels.
mod context;
mod launcher;
mod report;
mod wait;
// The argument codec.
mod transfer;
// The error type, and the leaves that use nothing of this crate: the current
// process's identity, the session tag, the start methods.
mod error;
mod identity;
mod session;
mod start_method;

pub use boot_record::MAX_HANDLE_FDS;
pub use code_ref::{CodeRef, PlainFn, StarFn};
pub use context::{Context, default_context, get_context, get_start_method, set_start_method};
pub use error::ProcessError;
pub use identity::{ParentInfo, ProcessInfo};
pub use process::{Builder, Process, active_children};
pub use shmproc_shm::{SharedObject, SharedObject as Shareable, Source};
pub use shutdown::DAEMON_TERMINATE_GRACE;
pub use start_method::{DEFAULT_START_METHOD, StartMethod, get_all_start_methods};
pub use tracker::{ENV_TRACKER, TRACKER_LINGER, reap_orphaned_segments, reap_segments_of};
#[cfg(feature = "serde")]
pub use transfer::Serde;
pub use transfer::{Packer, PassAs, PodArg, Transfer, TransferError, Unpacker};
pub use wait::wait;

pub use shmproc_shm::os::Pid;

/// What `shmproc-mpi` reaches to carry a task `fn` to another machine (where
/// the executable's device and inode, which [`CodeRef`] checks, differ);
/// not part of the public API.
#[doc(hidden)]
pub mod __private {
    /// The offset of `addr` from this executable's reference point, checked
    /// to lie inside the executable.
    ///
    /// # Errors
    /// [`ProcessError::TargetOutsideExecutable`](crate::ProcessError::TargetOutsideExecutable).
    pub fn code_offset(addr: usize) -> Result<u64, crate::ProcessError> {
        crate::target::offset_of(addr)
    }

    /// The address `off` bytes from the reference point, if it lies inside
    /// the executable's mappings.
    pub fn code_address(off: u64) -> Option<usize> {
        let addr = crate::target::resolve_offset(off);
        crate::target::in_executable(addr).then_some(addr)
    }

    /// The hash of `A`'s name and size that [`CodeRef`](crate::CodeRef) records.
    pub fn type_hash<A>() -> u64 {
        crate::target::type_hash::<A>()
    }
}

/// Number of CPUs online (Python's `multiprocessing.cpu_count()`).
pub fn cpu_count() -> usize {
    shmproc_shm::os::online_cpu_count()
}

/// Number of CPUs this process may run on (its affinity mask; Python's
/// `os.process_cpu_count()`): the right default for a pool's size.
pub fn available_cpu_count() -> usize {
    shmproc_shm::os::affinity_cpu_count()
}

/// The identity of the calling process (Python's `current_process()`):
/// `MainProcess` at the top, the name given by its parent in a child.
pub fn current_process() -> ProcessInfo {
    identity::current()
}

/// The process that started this one, for a child started by shmproc
/// (Python's `parent_process()`); `None` at the top.
pub fn parent_process() -> Option<ParentInfo> {
    identity::current().parent
}

/// The fork server's pid, starting the server now (Python starts it on the
/// first `forkserver` start; call this early, before the program starts
/// threads or grows, if you like).
///
/// # Errors
/// When the server cannot be started.
pub fn start_forkserver() -> Result<Pid, ProcessError> {
    // The server is this program re-executed and intercepted before `main`:
    // keep the hook in the binary (see `boot`), as `Process::start` does.
    boot::ensure_linked();
    forkserver::client::ensure_started()
}

/// The session tag for a named segment this process creates (0: none),
/// starting the tracker the first time.
pub fn tracker_session() -> u64 {
    // The tracker is this program re-executed and intercepted before `main`:
    // keep the hook in the binary (see `boot`).
    boot::ensure_linked();
    tracker::session()
}
