//! Crash cleanup of shared segments, without Python's resource-tracker bugs.
//!
//! Layer 1 (helper processes and re-exec): uses `reexec` (to start the
//! tracker) and `session` (the tag it watches).
//!
//! # What can leak
//! A named segment is unlinked by its creator's handle when it drops (unless
//! [`persist`](shmproc_shm::Segment::persist)ed). Only a creator that never
//! runs its destructors leaves one behind: a process killed by a signal, one
//! that calls `exit` with handles alive, one that leaks a handle on purpose.
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
//! shmproc keeps no list. Every segment's header records its creator's pid,
//! whether it was persisted on purpose, and a **session** tag; the kernel
//! knows who maps it. A segment is removed only when all of these hold:
//! 1. it was **not persisted** ([`FLAG_PERSISTENT`](shmproc_shm::FLAG_PERSISTENT)
//!    in its header);
//! 2. its **creator is dead** (pids are recycled only after a reap; a
//!    recycled pid makes the segment look in use, never the reverse);
//! 3. **no live process maps it or holds it open** (`/proc/*/maps`,
//!    `/proc/*/fd`): a segment still in use is left alone, whoever made it,
//!    and removed later, once the last user is gone.
//!
//! Two cleaners apply these rules:
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
//!   removes the session's segments that rules 1-3 allow, and stays while
//!   some remain (a creator still running, a user still mapping one),
//!   checking with a backoff up to once a second, for at most
//!   [`TRACKER_LINGER`]. Then it exits. While the program runs it does
//!   nothing at all: one blocked `poll`.
//!
//! So a segment is never removed under a user (no bpo-38119), nothing is
//! reported as leaked (the tracker prints nothing), and a program that was
//! SIGKILLed leaves nothing in `/dev/shm` once nobody uses what it made.
//!
//! Set `SHMPROC_TRACKER=0` to start no tracker (segments are then tagged
//! with no session). [`reap_orphaned_segments`] applies rules 1-3 to every
//! shmproc segment in `/dev/shm`, whatever its session (for segments made
//! with the tracker disabled, or by a program that does not link this crate;
//! run it at start-up, or from the CLI's `clean`).
//!
//! Limits: a process that knows a name but has neither opened nor mapped it
//! yet cannot be seen; it gets a "not found" error when it opens it (never
//! undefined behaviour). A creator killed between `shm_open` and writing the
//! header leaves a file without one; it is not shmproc's to judge and stays.

use std::collections::HashSet;
use std::ffi::CString;
use std::time::{Duration, Instant};

use shmproc_shm::os::{self, Pid};
use shmproc_shm::{PeekedHeader, Segment};

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
    let tag = (os::random_u64() << 32) | u64::from(root.unsigned_abs());
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
            root.parse::<Pid>().ok()?,
            u64::from_str_radix(tag, 16).ok()?,
        ))
    });
    let Some((root, tag)) = parsed.filter(|(r, t)| *r > 0 && *t != 0) else {
        os::exit_now(2);
    };
    let _ = os::new_session();
    let _ = os::stdio_to_dev_null();
    wait_for_exit(root);
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let mine: Vec<(String, PeekedHeader)> = segments()
            .into_iter()
            .filter(|(_, h)| h.session == tag && !h.persistent)
            .collect();
        if mine.is_empty() || start.elapsed() > TRACKER_LINGER {
            break;
        }
        let dead: Vec<String> = mine
            .into_iter()
            .filter(|(_, h)| !creator_alive(h))
            .map(|(n, _)| n)
            .collect();
        remove_unused(dead);
        #[allow(clippy::disallowed_methods)]
        // polling /dev/shm and /proc with a backoff: nothing to wait on
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    os::exit_now(0)
}

/// Returns once the process `root` (this process's parent) has ended.
fn wait_for_exit(root: Pid) {
    if os::getppid() != root {
        return; // already gone: we were handed to another reaper
    }
    let Ok(fd) = os::pidfd_open(root) else {
        // No pidfd (a kernel before 5.3): watch for being re-parented.
        while os::getppid() == root {
            #[allow(clippy::disallowed_methods)] // nothing to block on without a pidfd
            std::thread::sleep(Duration::from_millis(200));
        }
        return;
    };
    // Checked again after `pidfd_open`: if the parent was still `root` then,
    // the pidfd names it and not a process that recycled its pid.
    if os::getppid() != root {
        return;
    }
    use std::os::fd::AsFd;
    loop {
        match os::poll_readable(&[fd.as_fd()], None) {
            Ok(r) if r.first() == Some(&true) => return,
            Ok(_) => {}                                // interrupted
            Err(_) if os::getppid() != root => return, // cannot poll: fall back
            Err(_) => {
                #[allow(clippy::disallowed_methods)] // fallback polling of the parent pid
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn creator_alive(h: &PeekedHeader) -> bool {
    i32::try_from(h.creator_pid).is_ok_and(|p| p > 0 && os::pid_alive(p))
}

/// `(name, header)` of every shmproc segment in `/dev/shm` whose header can
/// be read.
fn segments() -> Vec<(String, PeekedHeader)> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        // Any name: users choose their own. The magic and layout version
        // (checked by `peek`) say whether it is a shmproc segment.
        if let Ok(h) = Segment::peek(&name) {
            out.push((name, h));
        }
    }
    out
}
/// Names of `/dev/shm` entries mapped or held open by any live process.
fn in_use() -> HashSet<String> {
    let mut used = HashSet::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return used;
    };
    for p in proc_dir.flatten() {
        let fname = p.file_name();
        let Some(pid) = fname.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) {
            for line in maps.lines() {
                if let Some(i) = line.find("/dev/shm/") {
                    let rest = &line[i + "/dev/shm/".len()..];
                    used.insert(rest.trim_end_matches(" (deleted)").to_owned());
                }
            }
        }
        if let Ok(fds) = std::fs::read_dir(p.path().join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    if let Some(rest) = target.to_str().and_then(|t| t.strip_prefix("/dev/shm/")) {
                        used.insert(rest.trim_end_matches(" (deleted)").to_owned());
                    }
                }
            }
        }
    }
    used
}

fn remove_unused(candidates: Vec<String>) -> Vec<String> {
    if candidates.is_empty() {
        return candidates;
    }
    let used = in_use();
    candidates
        .into_iter()
        .filter(|n| !used.contains(n))
        .filter(|n| Segment::remove(n).is_ok())
        .collect()
}

/// Removes the segments created by `pid`, a process that died abnormally,
/// that were not persisted and that no live process maps or holds open.
/// Returns the names removed. Does nothing while `pid` is alive.
pub fn reap_segments_of(pid: Pid) -> Vec<String> {
    if os::pid_alive(pid) {
        return Vec::new();
    }
    let candidates = segments()
        .into_iter()
        .filter(|(_, h)| !h.persistent && i32::try_from(h.creator_pid) == Ok(pid))
        .map(|(n, _)| n)
        .collect();
    remove_unused(candidates)
}

/// Removes every shmproc segment in `/dev/shm`, of any session, whose
/// creator is dead, that was not persisted, and that no live process maps
/// or holds open (for segments no tracker watched: run it at start-up, or
/// from a cleanup tool). Returns the names removed.
pub fn reap_orphaned_segments() -> Vec<String> {
    let candidates = segments()
        .into_iter()
        .filter(|(_, h)| !h.persistent && !creator_alive(h))
        .map(|(n, _)| n)
        .collect();
    remove_unused(candidates)
}
