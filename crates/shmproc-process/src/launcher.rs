//! The launcher thread: every child is created from this one long-lived
//! thread.
//!
//! Layer 0 (foundations): uses `error`.
//!
//! `PR_SET_PDEATHSIG` fires when the **thread** that created the child exits,
//! not the process (DESIGN.md, TOOLING.md §10). Under `cargo test` each test
//! is a thread, and in any program a short-lived worker thread may start a
//! process: its children would be killed when that thread ends. Creating
//! every child from one thread that lives as long as the process makes the
//! signal mean what users expect: "the parent process died".
//!
//! The caller hands a job to the thread and blocks until it returns; the
//! hop costs a few microseconds per start. A process that disables the
//! parent-death signal for a child creates that child on the calling thread
//! instead.

use std::sync::Mutex;
use std::sync::mpsc;

use shmproc_shm::os::{self, Pid};

use crate::error::ProcessError;

type Job = Box<dyn FnOnce() + Send>;

struct Launcher {
    tx: mpsc::Sender<Job>,
    tid: Pid,
    owner: Pid,
}

static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);

fn sender() -> Result<mpsc::Sender<Job>, ProcessError> {
    let mut g = LAUNCHER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let me = os::identity::pid();
    if let Some(l) = g.as_ref().filter(|l| l.owner == me) {
        return Ok(l.tx.clone());
    }
    // None yet, or inherited through fork (that thread does not exist here).
    let (tx, rx) = mpsc::channel::<Job>();
    let (tid_tx, tid_rx) = mpsc::sync_channel::<Pid>(1);
    std::thread::Builder::new()
        .name("shmproc-launcher".into())
        .spawn(move || {
            let _ = tid_tx.send(os::gettid());
            while let Ok(job) = rx.recv() {
                job();
            }
        })
        .map_err(ProcessError::os("spawn the launcher thread"))?;
    let tid = tid_rx
        .recv()
        .map_err(|_| ProcessError::Internal("launcher thread died".into()))?;
    *g = Some(Launcher {
        tx: tx.clone(),
        tid,
        owner: me,
    });
    Ok(tx)
}

/// The launcher thread's id, if this process has one.
pub(crate) fn tid() -> Option<Pid> {
    let g = LAUNCHER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    g.as_ref()
        .filter(|l| l.owner == os::identity::pid())
        .map(|l| l.tid)
}

/// Starts the launcher thread now (so a thread count taken next includes it).
pub(crate) fn ensure() -> Result<(), ProcessError> {
    sender().map(drop)
}

/// Whether the calling thread is the process's main thread: it lives as long
/// as the process (a Rust `main` that returns calls `exit`), so children it
/// creates need no hop to the launcher.
pub(crate) fn on_main_thread() -> bool {
    thread_local! {
        // `(pid, tid)` when last asked: `gettid` once per thread and process
        // (a forked child's thread has a new tid, and a new cached pid).
        static TID: std::cell::Cell<(i32, i32)> = const { std::cell::Cell::new((0, 0)) };
    }
    let pid = os::identity::pid().as_raw();
    let tid = TID.with(|c| match c.get() {
        (p, t) if p == pid => t,
        _ => {
            let t = os::gettid().as_raw();
            c.set((pid, t));
            t
        }
    });
    tid == pid
}

/// Runs `f` on the launcher thread and returns its result.
pub(crate) fn run<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ProcessError> {
    let tx = sender()?;
    let (rtx, rrx) = mpsc::sync_channel::<R>(1);
    tx.send(Box::new(move || {
        let _ = rtx.send(f());
    }))
    .map_err(|_| ProcessError::Internal("launcher thread is gone".into()))?;
    rrx.recv()
        .map_err(|_| ProcessError::Internal("launcher thread dropped the job".into()))
}
