//! The child side: the bootstrap common to every start method (identity,
//! parent-death signal, panic capture, the target, `_exit` with Python's
//! exit code), and the entry points of a re-executed child.
//!
//! Layer 3 (running as a child): uses `shutdown` (a child ends its own
//! children before it exits), and the layer-0 `boot_record`, `target`,
//! `identity`, `report` and `error`.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicPtr, Ordering};

use shmproc_shm::os::{self, Pid};

use crate::boot_record::Boot;
use crate::error::ProcessError;
use crate::identity::{ProcessInfo, current_child, set_current};
use crate::report::Report;
use crate::shutdown::shutdown_children;
use crate::target::{FnTarget, adopt};

/// Reports a bootstrap that cannot go on (to stderr) and exits with code 1.
pub(crate) fn bootstrap_failed(msg: &str) -> ! {
    os::write_stderr_raw(format!("shmproc child bootstrap failed: {msg}\n").as_bytes());
    os::exit_now(1)
}

/// A `spawn` child: reads its boot record and runs.
pub(crate) fn run_spawned(report_fd: i32) -> ! {
    let report = match adopt(report_fd).and_then(Report::open) {
        Ok(r) => r,
        Err(e) => bootstrap_failed(&e.to_string()),
    };
    let fds: Result<Vec<OwnedFd>, ProcessError> = (|| {
        let boot = Boot::decode(&report.boot()?)?;
        boot.fds.iter().map(|&n| adopt(n)).collect()
    })();
    run_from_report(report, fds, None);
}

/// Runs the child described by `report`'s boot record, with the handle
/// descriptors `fds` (`pdeath_parent`: the process whose death should kill
/// this one, when not the boot record's parent: the fork server).
pub(crate) fn run_from_report(
    report: Report,
    fds: Result<Vec<OwnedFd>, ProcessError>,
    pdeath_parent: Option<Pid>,
) -> ! {
    let boot = match report.boot().and_then(|b| Boot::decode(&b)) {
        Ok(b) => b,
        Err(e) => {
            report.set_message(&e.to_string());
            bootstrap_failed(&e.to_string())
        }
    };
    let info = ChildInfo {
        me: Box::leak(Box::new(ProcessInfo::child(
            boot.name.clone(),
            boot.daemon,
            boot.parent_pid,
        ))),
        pdeathsig: (boot.pdeathsig != 0).then_some(boot.pdeathsig),
        pdeath_parent: pdeath_parent.unwrap_or(boot.parent_pid),
        flush_stdio: true,
        self_report: pdeath_parent.is_some(),
    };
    run_child(info, Box::leak(Box::new(report)), move || {
        let target = FnTarget::resolve(
            boot.exe,
            boot.trampoline_off,
            boot.target_off,
            boot.type_hash,
        )?;
        target.call(&boot.args, fds?)
    })
}

/// How a child runs, whatever started it.
///
/// Everything a child keeps is allocated before it is created (for `fork`,
/// in the parent): a forked child then writes to few pages, and each page
/// it writes costs a copy (measured: a few microseconds each).
#[derive(Debug, Clone)]
pub(crate) struct ChildInfo {
    /// Its identity, for `current_process()` (the pid is filled in on
    /// reading), never freed.
    pub(crate) me: &'static ProcessInfo,
    pub(crate) pdeathsig: Option<i32>,
    /// The process whose death sends `pdeathsig` (the parent, or the fork server).
    pub(crate) pdeath_parent: Pid,
    /// Flush Rust's stdout before leaving (not in a fork of a multi-threaded
    /// parent, where another thread may have held its lock at the fork).
    pub(crate) flush_stdio: bool,
    /// Write the exit code into the report before leaving (fork-server
    /// children: the parent cannot `waitpid` them, and need not wait for
    /// the server to do it). Such a child also clears the death signal it
    /// had as a spare when `pdeathsig` is `None`.
    pub(crate) self_report: bool,
}

static PANIC_REPORT: AtomicPtr<Report> = AtomicPtr::new(std::ptr::null_mut());

/// The bootstrap common to every start method: identity, parent-death
/// signal, panic capture, the target, cleanup of this child's own children,
/// and `_exit` with Python's exit code.
///
/// It allocates nothing before the target runs, and leaves what it
/// inherited through `fork` (the parent's children, report pool, launcher,
/// fork-server client, name counter) alone: each of those notices the new
/// pid when first used and starts afresh.
pub(crate) fn run_child(
    info: ChildInfo,
    report: &'static Report,
    body: impl FnOnce() -> Result<(), ProcessError>,
) -> ! {
    set_current(info.me);
    if let Some(sig) = info.pdeathsig {
        match os::set_parent_death_signal(sig, info.pdeath_parent) {
            Ok(true) => {}
            Ok(false) => {
                // The parent died before the prctl: act as if the signal came.
                let _ = os::kill(os::getpid(), sig);
                os::exit_now(1);
            }
            Err(e) => bootstrap_failed(&format!("PR_SET_PDEATHSIG: {e}")),
        }
    } else if info.self_report {
        // A fork-server spare took the server's death signal while it
        // waited; this child asked for none.
        let _ = os::set_parent_death_signal(0, info.pdeath_parent);
    }
    // Release: pairs with the Acquire loads in `report_message`.
    PANIC_REPORT.store(std::ptr::from_ref(report).cast_mut(), Ordering::Release);
    // The hook captures nothing (a zero-sized box: no allocation), and the
    // one it replaces is forgotten, not freed (a free would write to the heap).
    std::mem::forget(std::panic::take_hook());
    std::panic::set_hook(Box::new(child_panic_hook));
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let msg = format!("child bootstrap failed: {e}");
            report.set_message(&msg);
            let name = current_child().map_or("?", |me| me.name.as_str());
            os::write_stderr_raw(format!("Process {name}: {msg}\n").as_bytes());
            1
        }
        Err(_) => 1,
    };
    shutdown_children();
    if info.flush_stdio {
        let _ = std::io::stdout().flush();
    }
    if info.self_report {
        report.set_status(code);
    }
    os::exit_now(code)
}

/// A child's panic hook: the message (with its location) goes to the
/// parent through the report, and to stderr.
fn child_panic_hook(p: &std::panic::PanicHookInfo<'_>) {
    let payload = p
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    let msg = match p.location() {
        Some(l) => format!(
            "panicked at {}:{}:{}:\n{payload}",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("panicked:\n{payload}"),
    };
    report_message(&msg);
    let name = current_child().map_or("?", |me| me.name.as_str());
    os::write_stderr_raw(format!("Process {name} (pid {}): {msg}\n", os::getpid()).as_bytes());
}

fn report_message(msg: &str) {
    // Acquire: pairs with the Release store in `run_child`.
    let r = PANIC_REPORT.load(Ordering::Acquire);
    // The pointer comes from a `&'static Report` (see `leaked`).
    if let Some(r) = std::ptr::NonNull::new(r) {
        leaked(r).set_message(msg);
    }
}

#[allow(unsafe_code)] // Reads back the `&'static Report` leaked in `run_child`.
fn leaked(r: std::ptr::NonNull<Report>) -> &'static Report {
    // SAFETY: the only non-null values ever stored in PANIC_REPORT come from
    // the `&'static Report` given to `run_child` (a leaked `Box`, or a field
    // of a forked child's leaked `Started`), valid for 'static, never freed.
    unsafe { r.as_ref() }
}
