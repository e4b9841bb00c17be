//! The `spawn` and `forkserver` start methods: a fresh image of this
//! program runs the boot record (re-executed by this process, or forked by
//! the fork server from a spare).
//!
//! Layer 4 (starting a child; the parent's side): uses `started` (layer 2),
//! `forkserver::client` and `reexec` (layer 1), and the layer-0
//! `boot_record`, `target`, `identity`, `report`, `launcher`, `context`,
//! `start_method` and `error`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use shmproc_shm::os::{self, Pid};

use crate::boot_record::{Boot, MAX_HANDLE_FDS};
use crate::context::Context;
use crate::error::ProcessError;
use crate::identity::ProcessInfo;
use crate::reexec::{ROLE_CHILD, spawn_self};
use crate::report::Report;
use crate::start_method::StartMethod;
use crate::started::Started;
use crate::target::{FnTarget, exe_id};

/// `spawn` and `forkserver`: a fresh image runs the boot record.
pub(crate) fn start_exec(
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
    let exe = exe_id().ok_or_else(|| ProcessError::BadBoot("cannot stat /proc/self/exe".into()))?;
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
                let r = spawn_self(&arg, &keep);
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
    Started::new(Some(pid), pidfd, info, method, report)
}
