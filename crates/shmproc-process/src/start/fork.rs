//! The `fork` start method: fork this process, and run the target in the
//! child (a closure, or a plain `fn`).
//!
//! Layer 4 (starting a child; the parent's side): uses `child` (layer 3:
//! the forked child runs its bootstrap), `started` (layer 2), and the
//! layer-0 `context`, `target`, `identity`, `report`, `launcher`,
//! `start_method` and `error`.

use std::io::Write;
use std::sync::Arc;

use shmproc_shm::os::{self, Pid};

use crate::child::{ChildInfo, run_child};
use crate::context::Context;
use crate::error::ProcessError;
use crate::identity::ProcessInfo;
use crate::report::Report;
use crate::start_method::StartMethod;
use crate::started::Started;
use crate::target::Target;

/// Forks a child (on the launcher thread when a death signal is set).
pub(crate) fn start_fork(
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
        None,
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
                run_child(info, &started.report, move || target.run())
            }
            Ok(os::Forked::Parent(pid)) => {
                self.started.set_pid(pid);
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
