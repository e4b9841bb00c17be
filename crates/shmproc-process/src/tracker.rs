//! Crash cleanup of shared segments, without Python's resource-tracker bugs.
//!
//! Layer 1 (helper processes and re-exec): uses `reexec` (to start the
//! tracker) and `session` (the tag it watches).
//!
//! What leaks, what an orphan is and how it is removed:
//! [`shmproc_shm::cleanup`]. This module holds the part that needs re-exec.
//!
//! # Python's design, and its bugs
//! Python's `resource_tracker` is told about every segment (`register`) and
//! unlinks, when the program ends, whatever was not `unregister`ed. Keeping
//! its own list is where its bugs come from (bpo-38119 and friends): it
//! unlinks segments that *other* processes still use (a segment made by one
//! program and opened by an unrelated one), and it warns about "leaked"
//! segments that were handed over on purpose.
//!
//! # shmproc's design
//! shmproc keeps no list: what may be removed is judged from the segments'
//! headers and from `/proc` by [`shmproc_shm::cleanup`] (see its docs for
//! the rules that make a segment an orphan, and for why its cleaners may
//! race harmlessly). This module only adds the two cleaners that need a
//! process of their own:
//! - **The parent of a killed child.** When `join`, `exitcode`, `is_alive` or
//!   `active_children` reaps a child that died by a signal, the parent sweeps
//!   that child's segments ([`reap_segments_of`]) at once.
//! - **The session tracker, for a top-level program that is itself killed.**
//!   The first time a process creates a named segment, and has no session
//!   yet, it starts a tracker: the same executable, re-executed with
//!   `--shmproc-tracker` and intercepted before `main` (as `spawn` children
//!   are), in a session of its own (`setsid`, so a Ctrl-C or a process-group
//!   kill of the program does not take it down), its standard streams on
//!   `/dev/null`. Every named segment the program creates afterwards carries
//!   the session's tag, and so do those of its children: forked ones inherit
//!   it, `spawn` and `forkserver` ones get it in `SHMPROC_SESSION`. The
//!   tracker waits on a pidfd for the program to end (however it ends), then
//!   removes the session's orphans ([`cleanup::reap_session`]), and stays
//!   while some of its segments remain (a creator still running, a user
//!   still mapping one), checking with a backoff up to once a second, for at
//!   most [`TRACKER_LINGER`]. Then it exits. While the program runs it does
//!   nothing at all: one blocked `poll`.
//!
//! So a segment is never removed under a user (no bpo-38119), nothing is
//! reported as leaked (the tracker prints nothing), and a program that was
//! SIGKILLed leaves nothing in `/dev/shm` once nobody uses what it made.
//!
//! Set `SHMPROC_TRACKER=0` to start no tracker (segments are then tagged
//! with no session). [`reap_orphaned_segments`] removes every orphan in
//! `/dev/shm`, whatever its session (for segments made with the tracker
//! disabled, or by a program that does not link this crate; run it at
//! start-up, or from the CLI's `clean`, which calls
//! [`cleanup::reap_orphaned_segments`] without linking this crate).

use std::ffi::CString;
use std::time::{Duration, Instant};

use shmproc_shm::cleanup;
use shmproc_shm::os::{self, Pid};

use crate::reexec::{ROLE_TRACKER, env_block};
use crate::session::{ENV_SESSION, NO_SESSION};

/// The environment variable that turns the tracker off (`0`, `off`, `false`, `no`).
pub const ENV_TRACKER: &str = "SHMPROC_TRACKER";
/// How long a tracker stays after its program ended, while segments of its
/// session remain that it may not remove yet.
pub const TRACKER_LINGER: Duration = Duration::from_secs(3600);

/// Installs [`session`] as `shmproc-shm`'s session provider (before `main`).
pub(crate) fn install() {
    let _ = shmproc_shm::set_session_provider(session);
}

/// The session tag for a named segment this process creates (0: none),
/// starting the tracker the first time (the public
/// [`tracker_session`](crate::tracker_session)).
pub(crate) fn session() -> u64 {
    crate::session::get_or_start(inherit_or_start)
}

fn inherit_or_start() -> u64 {
    if let Ok(v) = std::env::var(ENV_TRACKER) {
        if matches!(v.trim(), "0" | "off" | "false" | "no") {
            return NO_SESSION;
        }
    }
    if let Some(s) = std::env::var(ENV_SESSION)
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .filter(|s| *s != 0 && *s != NO_SESSION)
    {
        return s;
    }
    let root = os::getpid();
    // The pid in the low half (for people reading headers), a random high half
    // so a recycled pid never names an old session.
    let tag = (os::random_u64() << 32) | u64::from(root.as_u32());
    match start_tracker(root, tag) {
        Ok(()) => tag,
        Err(e) => {
            os::write_stderr_raw(
                format!(
                    "shmproc: could not start the resource tracker ({e}); segments of a \
                     killed program may stay in /dev/shm (see reap_orphaned_segments)\n"
                )
                .as_bytes(),
            );
            NO_SESSION
        }
    }
}

fn start_tracker(root: Pid, tag: u64) -> std::io::Result<()> {
    let bad = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
    let argv0 = CString::new("shmproc-tracker").map_err(bad)?;
    let arg = CString::new(format!("{ROLE_TRACKER}{root}:{tag:x}")).map_err(bad)?;
    // The program's environment (the tracker itself makes no segments).
    let env = env_block(None);
    let env_refs: Vec<&std::ffi::CStr> = env.iter().map(CString::as_c_str).collect();
    os::spawn_exe(c"/proc/self/exe", &[&argv0, &arg], &env_refs, &[]).map(drop)
}

/// The tracker process (`--shmproc-tracker=<root pid>:<tag>`), intercepted
/// before `main`. Never returns.
pub(crate) fn run_tracker(arg: &[u8]) -> ! {
    let parsed = std::str::from_utf8(arg).ok().and_then(|s| {
        let (root, tag) = s.split_once(':')?;
        Some((
            Pid::from_raw(root.parse::<i32>().ok()?)?,
            u64::from_str_radix(tag, 16).ok()?,
        ))
    });
    let Some((root, tag)) = parsed.filter(|&(_, t)| t != 0) else {
        os::exit_now(2);
    };
    let _ = os::new_session();
    let _ = os::stdio_to_dev_null();
    wait_for_exit(root);
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let reap = cleanup::reap_session(tag);
        if reap.remaining == 0 || start.elapsed() > TRACKER_LINGER {
            break;
        }
        #[allow(clippy::disallowed_methods)]
        // polling /dev/shm and /proc with a backoff: nothing to wait on
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    os::exit_now(0)
}

/// Returns once the process `root` (this process's parent) has ended.
fn wait_for_exit(root: Pid) {
    if os::getppid() != Some(root) {
        return; // already gone: we were handed to another reaper
    }
    let Ok(fd) = os::pidfd_open(root) else {
        // No pidfd (a kernel before 5.3): watch for being re-parented.
        while os::getppid() == Some(root) {
            #[allow(clippy::disallowed_methods)] // nothing to block on without a pidfd
            std::thread::sleep(Duration::from_millis(200));
        }
        return;
    };
    // Checked again after `pidfd_open`: if the parent was still `root` then,
    // the pidfd names it and not a process that recycled its pid.
    if os::getppid() != Some(root) {
        return;
    }
    use std::os::fd::AsFd;
    loop {
        match os::poll_readable(&[fd.as_fd()], None) {
            Ok(r) if r.first() == Some(&true) => return,
            Ok(_) => {}                                      // interrupted
            Err(_) if os::getppid() != Some(root) => return, // cannot poll: fall back
            Err(_) => {
                #[allow(clippy::disallowed_methods)] // fallback polling of the parent pid
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Removes the segments created by `pid`, a process that died abnormally,
/// that were not persisted and that no live process maps or holds open.
/// Returns the names removed. Does nothing while `pid` is alive.
///
/// The same as [`cleanup::reap_segments_of`], kept at this path.
pub fn reap_segments_of(pid: Pid) -> Vec<String> {
    cleanup::reap_segments_of(pid)
}

/// Removes every shmproc segment in `/dev/shm`, of any session, whose
/// creator is dead, that was not persisted, and that no live process maps
/// or holds open (for segments no tracker watched: run it at start-up, or
/// from a cleanup tool). Returns the names removed.
///
/// The same as [`cleanup::reap_orphaned_segments`], kept at this path.
pub fn reap_orphaned_segments() -> Vec<String> {
    cleanup::reap_orphaned_segments()
}
