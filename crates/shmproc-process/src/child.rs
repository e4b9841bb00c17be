//! The child side: the boot record, the bootstrap common to every start
//! method, and the identity of the current process.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicPtr, Ordering};

use shmproc_shm::os::{self, Pid};

use crate::entry::{ExeId, FnTarget};
use crate::error::ProcessError;
use crate::report::Report;
use crate::transfer::{Packer, Transfer, Unpacker};

const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"SHMPBOOT");

/// Everything a re-executed child needs, written by the parent into the
/// child's report segment.
#[derive(Debug)]
pub(crate) struct Boot {
    pub(crate) exe: ExeId,
    pub(crate) trampoline_off: u64,
    pub(crate) target_off: u64,
    pub(crate) type_hash: u64,
    pub(crate) parent_pid: Pid,
    pub(crate) pdeathsig: i32,
    pub(crate) daemon: bool,
    pub(crate) name: String,
    pub(crate) args: Vec<u8>,
    /// Descriptor numbers of the arguments' handles, as the parent holds them
    /// (`spawn` keeps the same numbers in the child).
    pub(crate) fds: Vec<i32>,
}

impl Boot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Packer::new();
        p.put_u64(BOOT_MAGIC);
        p.put_u64(self.exe.dev);
        p.put_u64(self.exe.ino);
        p.put_u64(self.trampoline_off);
        p.put_u64(self.target_off);
        p.put_u64(self.type_hash);
        p.put_u64(self.parent_pid as u32 as u64);
        p.put_u64(self.pdeathsig as u32 as u64);
        p.put_u64(u64::from(self.daemon));
        p.put_blob(self.name.as_bytes());
        p.put_blob(&self.args);
        p.put_u64(self.fds.len() as u64);
        for fd in &self.fds {
            p.put_u64(*fd as u32 as u64);
        }
        p.into_parts().0
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Boot, ProcessError> {
        let mut u = Unpacker::new(b, Vec::new());
        if u.take_u64()? != BOOT_MAGIC {
            return Err(ProcessError::BadBoot("magic".into()));
        }
        let exe = ExeId {
            dev: u.take_u64()?,
            ino: u.take_u64()?,
        };
        let trampoline_off = u.take_u64()?;
        let target_off = u.take_u64()?;
        let type_hash = u.take_u64()?;
        let parent_pid = u.take_u64()? as u32 as i32;
        let pdeathsig = u.take_u64()? as u32 as i32;
        let daemon = u.take_u64()? != 0;
        let name = String::unpack(&mut u)?;
        let args = u.take_blob()?.to_vec();
        let n = u.take_u64()?;
        if n > crate::MAX_HANDLE_FDS as u64 {
            return Err(ProcessError::BadBoot(format!("{n} descriptors")));
        }
        let mut fds = Vec::new();
        for _ in 0..n {
            fds.push(u.take_u64()? as u32 as i32);
        }
        u.finish()?;
        Ok(Boot {
            exe,
            trampoline_off,
            target_off,
            type_hash,
            parent_pid,
            pdeathsig,
            daemon,
            name,
            args,
            fds,
        })
    }
}

/// What `argv[1]` asked for (after `--shmproc-`). Returns only for roles
/// this build does not know.
pub(crate) fn dispatch(role: &[u8]) {
    let Ok(role) = std::str::from_utf8(role) else {
        return;
    };
    if let Some(fd) = role.strip_prefix("child=") {
        let Ok(fd) = fd.parse::<i32>() else {
            bootstrap_failed("bad --shmproc-child argument");
        };
        run_spawned(fd);
    }
    if let Some(fd) = role.strip_prefix("forkserver=") {
        let Ok(fd) = fd.parse::<i32>() else {
            bootstrap_failed("bad --shmproc-forkserver argument");
        };
        crate::forkserver::serve(fd);
    }
}

fn bootstrap_failed(msg: &str) -> ! {
    os::write_stderr_raw(format!("shmproc child bootstrap failed: {msg}\n").as_bytes());
    os::exit_now(1)
}

/// A `spawn` child: reads its boot record and runs.
fn run_spawned(report_fd: i32) -> ! {
    let report = match crate::entry::adopt(report_fd).and_then(Report::open) {
        Ok(r) => r,
        Err(e) => bootstrap_failed(&e.to_string()),
    };
    let fds: Result<Vec<OwnedFd>, ProcessError> = (|| {
        let boot = Boot::decode(&report.boot()?)?;
        boot.fds.iter().map(|&n| crate::entry::adopt(n)).collect()
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
        me: Box::leak(Box::new(ChildInfo::identity(
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

impl ChildInfo {
    /// The identity of a child named `name`, started by `parent_pid`.
    pub(crate) fn identity(name: String, daemon: bool, parent_pid: Pid) -> ProcessInfo {
        ProcessInfo {
            name,
            pid: 0,
            daemon,
            parent: Some(ParentInfo {
                pid: parent_pid,
                start_time: None,
            }),
        }
    }
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
    crate::process::shutdown_children();
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

/// The identity of a process, as `current_process()` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its name (`MainProcess` for the top-level process).
    pub name: String,
    /// Its pid.
    pub pid: Pid,
    /// Whether it is a daemon (then it may not start children).
    pub daemon: bool,
    /// The process that started it, for a child started by shmproc.
    pub parent: Option<ParentInfo>,
}

/// The process that started this one (`parent_process()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentInfo {
    /// The parent's pid.
    pub pid: Pid,
    /// Reserved: the parent's start time, when known.
    pub start_time: Option<u64>,
}

impl ParentInfo {
    /// Whether the parent is still alive (for a fork-server child, the
    /// process that asked for it, not the server).
    pub fn is_alive(&self) -> bool {
        os::pid_alive(self.pid)
    }
}

static CURRENT: AtomicPtr<ProcessInfo> = AtomicPtr::new(std::ptr::null_mut());

fn set_current(info: &'static ProcessInfo) {
    // Lock-free, so a forked child can replace it whatever another thread
    // was doing at the fork.
    let p = std::ptr::from_ref(info).cast_mut();
    // Release: pairs with the Acquire load in `current`.
    CURRENT.store(p, Ordering::Release);
}

/// The identity of the calling process.
pub(crate) fn current() -> ProcessInfo {
    match current_child() {
        // The pid is not known before a fork: read it now.
        Some(info) => ProcessInfo {
            pid: os::identity::pid(),
            ..info.clone()
        },
        None => ProcessInfo {
            name: "MainProcess".into(),
            pid: os::identity::pid(),
            daemon: false,
            parent: None,
        },
    }
}

/// The identity of the calling process when shmproc started it, without a
/// copy (`start` asks on every call); `None` at the top.
pub(crate) fn current_child() -> Option<&'static ProcessInfo> {
    // Acquire: pairs with the Release store in `set_current`.
    let p = CURRENT.load(Ordering::Acquire);
    std::ptr::NonNull::new(p).map(leaked_info)
}

#[allow(unsafe_code)] // Reads back the `&'static ProcessInfo` stored in `set_current`.
fn leaked_info(p: std::ptr::NonNull<ProcessInfo>) -> &'static ProcessInfo {
    // SAFETY: non-null values of CURRENT come from the `&'static ProcessInfo`
    // given to `set_current` (a leaked `Box`, or a field of a forked child's
    // leaked `Started`), valid for 'static and never freed.
    unsafe { p.as_ref() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_record_roundtrip_and_corruption() {
        let b = Boot {
            exe: ExeId { dev: 1, ino: 2 },
            trampoline_off: 3,
            target_off: u64::MAX,
            type_hash: 5,
            parent_pid: 77,
            pdeathsig: 9,
            daemon: true,
            name: "Process-1".into(),
            args: vec![1, 2, 3],
            fds: vec![5, 6],
        };
        let enc = b.encode();
        let d = Boot::decode(&enc).expect("decode");
        assert_eq!((d.parent_pid, d.pdeathsig, d.daemon), (77, 9, true));
        assert_eq!(
            (d.name.as_str(), d.args.as_slice(), d.fds.as_slice()),
            ("Process-1", &[1u8, 2, 3][..], &[5, 6][..])
        );
        for cut in 0..enc.len() {
            assert!(Boot::decode(&enc[..cut]).is_err(), "truncated at {cut}");
        }
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert!(Boot::decode(&bad).is_err());
    }
}
