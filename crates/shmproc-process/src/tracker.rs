//! Crash cleanup of shared segments, without Python's resource-tracker bugs.
//!
//! # Design
//! Python's `resource_tracker` is told about every segment (`register`) and
//! unlinks, when the program ends, whatever was not `unregister`ed. Two bugs
//! follow from keeping its own list (bpo-38119 and friends): it unlinks
//! segments that *other* processes still use (a segment made by one program
//! and opened by an unrelated one), and it warns about "leaked" segments that
//! were handed over on purpose.
//!
//! shmproc keeps no list: every segment already records its creator's pid in
//! its header, and the kernel knows who maps it. A segment is removed only
//! when all three hold:
//! 1. its creator **died abnormally** (killed by a signal: the one case where
//!    its own `Drop` could not unlink); the parent knows, because it reaps
//!    the child and sees the signal. A creator that exits normally has
//!    unlinked what it owned, or persisted it on purpose: never touched;
//! 2. the creator is not alive (checked again: pids are recycled only after
//!    the parent reaps, and the sweep runs right after the reap);
//! 3. **no live process maps it or holds it open** (`/proc/*/maps`,
//!    `/proc/*/fd`): a segment still in use is left alone, whoever made it.
//!
//! So a segment is never removed under a user (no bpo-38119), and nothing is
//! reported as leaked when it was not. The sweep runs in the parent when
//! `join`, `exitcode`, `is_alive` or `active_children` reaps a child that
//! died by a signal. [`reap_orphaned_segments`] applies the same rules to
//! every shmproc segment whose creator is dead and which nobody maps: for a
//! top-level program that was itself killed (run it at start-up, or from
//! the CLI's `clean`).
//!
//! Limits: a process that knows a name but has neither opened nor mapped it
//! yet cannot be seen; it gets a "not found" error when it opens it (never
//! undefined behaviour).

use std::collections::HashSet;
use std::io::Read;

use shmproc_shm::os::{self, Pid};
use shmproc_shm::{MAGIC, NAME_PREFIX, Segment};

/// `(name, creator pid)` of every shmproc segment in `/dev/shm`.
fn segments() -> Vec<(String, Pid)> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !name.starts_with(NAME_PREFIX) {
            continue;
        }
        let mut head = [0u8; 64];
        let ok = std::fs::File::open(e.path())
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok();
        if !ok {
            continue;
        }
        let magic = u64::from_ne_bytes(head[0..8].try_into().expect("8 bytes"));
        let creator = u32::from_ne_bytes(head[40..44].try_into().expect("4 bytes"));
        if magic == MAGIC {
            out.push((name, creator as Pid));
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
/// that no live process maps or holds open. Returns the names removed.
/// Does nothing while `pid` is alive.
pub fn reap_segments_of(pid: Pid) -> Vec<String> {
    if os::pid_alive(pid) {
        return Vec::new();
    }
    let candidates = segments()
        .into_iter()
        .filter(|(_, c)| *c == pid)
        .map(|(n, _)| n)
        .collect();
    remove_unused(candidates)
}

/// Removes every shmproc segment whose creator is dead and that no live
/// process maps or holds open (for a program that was itself killed: run
/// at start-up). Returns the names removed.
///
/// Persisted segments of a creator that has exited are removed too once
/// nobody uses them: call this only where that is the policy.
pub fn reap_orphaned_segments() -> Vec<String> {
    let candidates = segments()
        .into_iter()
        .filter(|(_, c)| !os::pid_alive(*c))
        .map(|(n, _)| n)
        .collect();
    remove_unused(candidates)
}
