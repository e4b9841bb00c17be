//! Crash cleanup: the one place that lists shmproc segments, judges whether
//! their creator is alive, and removes the orphans.
//!
//! # What can leak
//! A named segment is unlinked by its creator's handle when it drops
//! (unless [`persist`](crate::Segment::persist)ed). Only a creator that
//! never runs its destructors leaves one behind: a process killed by a
//! signal, one that calls `exit` with handles alive, one that leaks a
//! handle on purpose.
//!
//! # What an orphan is
//! shmproc keeps no list of segments (Python's `resource_tracker` does, and
//! that is where its bugs come from, bpo-38119: it unlinks segments other
//! programs still use). Every segment's header records its creator's pid,
//! whether it was persisted on purpose, and a session tag; the kernel knows
//! who maps it. A segment is an **orphan**, and may be removed, when all of
//! these hold:
//! 1. its header can be read (a file without one, e.g. of a creator killed
//!    between `shm_open` and writing the header, is not ours to judge);
//! 2. it was **not persisted** ([`FLAG_PERSISTENT`](crate::FLAG_PERSISTENT));
//! 3. its **creator is dead**, by the one liveness rule,
//!    [`OwnerRecord::is_alive`] (the header records only the pid: a recycled
//!    pid makes a segment look in use, never the reverse);
//! 4. **no live process maps it or holds it open** ([`in_use`]): a segment
//!    still in use is left alone, whoever made it, and removed later, once
//!    its last user is gone.
//!
//! [`list`] and [`SegmentInfo`] report rules 1-3 ([`SegmentInfo::is_abandoned`]);
//! [`is_orphan`] adds rule 4; [`remove_unused`] checks rule 4 again just
//! before it unlinks.
//!
//! # Who calls it
//! Anyone may, at any time, with no coordination:
//! - a parent that reaps a child killed by a signal ([`reap_segments_of`],
//!   from `shmproc-process`);
//! - the session tracker of `shmproc-process`, once its program ended
//!   ([`reap_session`]);
//! - a `ByteQueue` sweeping its own leaked side segments (which are
//!   persisted, so it judges them itself and removes them through
//!   [`remove_unused`]);
//! - a start-up hook or a command-line tool (`shmproc ls` is [`list`],
//!   `shmproc clean` is [`reap_orphaned_segments`]); none of this needs
//!   `shmproc-process` (and its pre-`main` hook) to be linked.
//!
//! Unlike iceoryx2's monitoring, which hands one "cleaner" exclusive
//! ownership, no cleaner owns anything here: every step is idempotent, so
//! they may race for one segment harmlessly. Listing and judging only read;
//! removal is one `shm_unlink`, which fails with "not found" for every
//! cleaner but the first (only the first reports the name as removed), and
//! the judgement errs only towards keeping a segment.
//!
//! # Limits
//! - A process that knows a name but has neither opened nor mapped it yet
//!   cannot be seen; it gets a "not found" error when it opens it (never
//!   undefined behaviour).
//! - Between listing and unlinking, a name could be removed and created
//!   again by someone else; the new segment would then be unlinked (its
//!   mapping stays valid). Generated names
//!   ([`SegmentName::unique`](crate::SegmentName::unique)) are never
//!   reused, so only user-chosen names reused at once can meet this.
//! - Only the `/proc` entries this process may read are seen (see
//!   [`os::shm_in_use`]).
//!
//! # Examples
//! `shmproc ls` and `shmproc clean`, in short (`no_run`: the clean removes
//! every orphan of the machine, not only this example's):
//! ```no_run
//! use shmproc_shm::cleanup;
//! for seg in cleanup::list() {
//!     match &seg.header {
//!         Ok(h) => println!("{} pid {} alive {:?}", seg.name, h.creator_pid, seg.creator_alive),
//!         Err(e) => println!("{} unreadable: {e}", seg.name),
//!     }
//! }
//! let removed = cleanup::reap_orphaned_segments();
//! # let _ = removed;
//! ```

use std::collections::HashSet;

use crate::error::SegmentError;
use crate::name::NAME_PREFIX;
use crate::os::{self, Pid};
use crate::owner::OwnerRecord;
use crate::segment::{PeekedHeader, Segment};

/// Where named segments live.
const SHM_DIR: &str = "/dev/shm";

/// One entry of `/dev/shm` as crash cleanup sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The name as `/dev/shm` lists it (without the leading `/`; every
    /// function here also takes it with one).
    pub name: String,
    /// Its header, or why it cannot be read: truncated (a creator between
    /// `shm_open` and writing the header), corrupt or not shmproc's, another
    /// layout version, not readable by this user.
    pub header: Result<PeekedHeader, SegmentError>,
    /// Whether its creator was alive when it was listed, by
    /// [`OwnerRecord::is_alive`]; `None` when the header cannot be read.
    pub creator_alive: Option<bool>,
}

impl SegmentInfo {
    /// Reads the header of `name` and judges its creator now.
    pub fn peek(name: &str) -> Self {
        let bare = name.strip_prefix('/').unwrap_or(name).to_owned();
        let header = Segment::peek(&bare);
        let creator_alive = header
            .as_ref()
            .ok()
            .map(|h| OwnerRecord::pid_only(h.creator_pid).is_alive());
        Self {
            name: bare,
            header,
            creator_alive,
        }
    }

    /// Whether the header could be read (a shmproc segment of this layout
    /// version).
    pub fn is_readable(&self) -> bool {
        self.header.is_ok()
    }

    /// The creator, as the header records it (a pid only).
    pub fn creator(&self) -> Option<OwnerRecord> {
        self.header
            .as_ref()
            .ok()
            .map(|h| OwnerRecord::pid_only(h.creator_pid))
    }

    /// The creator a generated name carries (`shmproc-<pid hex>-...`, see
    /// [`SegmentName::unique`](crate::SegmentName::unique)): for judging a
    /// file whose header cannot be read, when the caller knows it made such
    /// names. Any name of that shape parses, so this proves nothing about
    /// who really created the file.
    pub fn named_creator(&self) -> Option<OwnerRecord> {
        let pid = self
            .name
            .strip_prefix(NAME_PREFIX)?
            .split('-')
            .next()
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit()))?;
        u32::from_str_radix(pid, 16).ok().map(OwnerRecord::pid_only)
    }

    /// Whether it was persisted on purpose (`false` when unreadable).
    pub fn persistent(&self) -> bool {
        self.header.as_ref().is_ok_and(|h| h.persistent)
    }

    /// The crash-cleanup session its creator tagged it with (`None` when
    /// unreadable or untagged).
    pub fn session(&self) -> Option<u64> {
        self.header
            .as_ref()
            .ok()
            .map(|h| h.session)
            .filter(|&s| s != 0)
    }

    /// Rules 1-3 of the [module docs](self): readable, not persisted, and
    /// its creator was dead when listed. Whether it is still in use is
    /// [`is_orphan`]'s question.
    pub fn is_abandoned(&self) -> bool {
        self.is_readable() && !self.persistent() && self.creator_alive == Some(false)
    }
}

/// Every shmproc segment in `/dev/shm`, sorted by name: each entry whose
/// header is shmproc's (whatever its name: users choose their own), and
/// each entry named like a generated name (`shmproc-...`) whose header
/// cannot be read.
pub fn list() -> Vec<SegmentInfo> {
    scan(|_| true)
        .into_iter()
        .filter(|s| s.is_readable() || s.name.starts_with(NAME_PREFIX))
        .collect()
}

/// The `/dev/shm` entries whose names (without the leading `/`) pass
/// `filter`, readable or not, sorted by name. Only those are peeked.
pub fn list_matching(filter: impl FnMut(&str) -> bool) -> Vec<SegmentInfo> {
    scan(filter)
}

fn scan(mut filter: impl FnMut(&str) -> bool) -> Vec<SegmentInfo> {
    let Ok(dir) = std::fs::read_dir(SHM_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| filter(n))
        .collect();
    names.sort();
    names.iter().map(|n| SegmentInfo::peek(n)).collect()
}

/// The names (without the leading `/`) of the `/dev/shm` entries some live
/// process maps or holds open ([`os::shm_in_use`]).
pub fn in_use() -> HashSet<String> {
    os::shm_in_use()
}

/// Whether `info` is an orphan (all four rules of the [module docs](self)),
/// with `in_use` from [`in_use`].
pub fn is_orphan(info: &SegmentInfo, in_use: &HashSet<String>) -> bool {
    info.is_abandoned() && !in_use.contains(&info.name)
}

fn bare(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

/// Unlinks those of `candidates` (names, with or without the leading `/`)
/// that no live process maps or holds open *now*, and returns the ones this
/// call removed (a name already gone is not). The caller has judged the
/// other rules (or its own: a `ByteQueue` removes its persisted side
/// segments this way).
pub fn remove_unused(candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let candidates: Vec<String> = candidates.into_iter().collect();
    if candidates.is_empty() {
        return candidates;
    }
    let used = in_use();
    candidates
        .into_iter()
        .filter(|n| !used.contains(bare(n)))
        .filter(|n| Segment::remove(n).is_ok())
        .collect()
}

/// Removes the orphans created by `pid`, a process that died: its
/// segments that were not persisted and that no live process maps or holds
/// open. Returns the names removed. Does nothing while `pid` is alive (or
/// its pid was already reused).
pub fn reap_segments_of(pid: Pid) -> Vec<String> {
    let creator = OwnerRecord::pid_only(pid.as_u32());
    if creator.is_alive() {
        return Vec::new();
    }
    let candidates = list()
        .into_iter()
        .filter(|s| s.is_abandoned() && s.creator() == Some(creator))
        .map(|s| s.name);
    remove_unused(candidates)
}

/// Removes every orphan in `/dev/shm`, of any session (segments no tracker
/// watched: made with the tracker disabled, or by a program that does not
/// link `shmproc-process`): run it at start-up, or from a cleanup tool.
/// Returns the names removed.
pub fn reap_orphaned_segments() -> Vec<String> {
    reap_orphans_matching(|_| true)
}

/// [`reap_orphaned_segments`] limited to the `/dev/shm` entries whose names
/// (without the leading `/`) pass `filter`: a tool cleaning up after one
/// program (`shmproc clean --prefix`), or a test, leaves everyone else's
/// orphans to their own cleaners. Returns the names removed.
pub fn reap_orphans_matching(filter: impl FnMut(&str) -> bool) -> Vec<String> {
    let candidates = list_matching(filter)
        .into_iter()
        .filter(SegmentInfo::is_abandoned)
        .map(|s| s.name);
    remove_unused(candidates)
}

/// What [`reap_session`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionReap {
    /// The names removed.
    pub removed: Vec<String>,
    /// How many segments of the session, not persisted, are still there (a
    /// creator still running, a user still mapping one).
    pub remaining: usize,
}

/// Removes the orphans of session `session` (a tag from
/// [`set_session_provider`](crate::set_session_provider)'s provider) and
/// counts the segments of the session that remain. A session tag of 0
/// names no session: nothing is done.
pub fn reap_session(session: u64) -> SessionReap {
    if session == 0 {
        return SessionReap::default();
    }
    let mine: Vec<SegmentInfo> = list()
        .into_iter()
        .filter(|s| s.session() == Some(session) && !s.persistent())
        .collect();
    let total = mine.len();
    let removed = remove_unused(
        mine.into_iter()
            .filter(SegmentInfo::is_abandoned)
            .map(|s| s.name),
    );
    SessionReap {
        remaining: total - removed.len(),
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SegmentKind, SegmentLayout, SegmentName, TypeSpec};

    const SPEC: TypeSpec = TypeSpec {
        type_name: "shmproc_shm::cleanup test",
        size: 1,
        align: 1,
        capacity: 0,
        slot_size: 0,
    };

    #[test]
    fn a_live_segment_is_listed_and_not_an_orphan() {
        let name = SegmentName::unique("cleanup");
        let layout = SegmentLayout::new(SegmentKind::RAW, SPEC, 64);
        let seg = Segment::create(name.as_str(), &layout)
            .expect("create")
            .publish();
        let listed = list();
        let me = listed
            .iter()
            .find(|s| s.name == name.bare())
            .expect("listed");
        assert_eq!(
            me.creator(),
            Some(OwnerRecord::pid_only(std::process::id()))
        );
        assert_eq!(me.named_creator(), me.creator());
        assert_eq!(me.creator_alive, Some(true));
        assert!(!me.persistent() && !me.is_abandoned());
        assert!(!is_orphan(me, &in_use()));
        assert!(in_use().contains(name.bare()));
        // Our own pid is alive: nothing of ours is reaped.
        // (No machine-wide reaping here: other tests' leaks are theirs to check.)
        assert!(reap_segments_of(os::getpid()).is_empty());
        drop(seg);
        assert!(list_matching(|n| n == name.bare()).is_empty());
    }

    #[test]
    fn an_unreadable_file_is_listed_but_never_judged() {
        let name = format!("{NAME_PREFIX}test-cleanup-{:x}", os::random_u64());
        let path = std::path::Path::new(SHM_DIR).join(&name);
        std::fs::write(&path, b"not a header").expect("write /dev/shm");
        let found = list_matching(|n| n == name);
        let listed = list().into_iter().any(|s| s.name == name);
        let _ = std::fs::remove_file(&path);
        assert!(listed);
        let [info] = found.as_slice() else {
            panic!("expected one entry, got {found:?}")
        };
        assert!(!info.is_readable());
        assert_eq!(info.creator_alive, None);
        assert_eq!(info.named_creator(), None, "`test` is no hex pid");
        assert!(!info.is_abandoned());
    }

    #[test]
    fn removal_is_idempotent() {
        let name = format!("{NAME_PREFIX}test-cleanup-{:x}", os::random_u64());
        let path = std::path::Path::new(SHM_DIR).join(&name);
        std::fs::write(&path, b"x").expect("write /dev/shm");
        let file = std::fs::File::open(&path).expect("open");
        // Held open: kept.
        assert!(remove_unused([name.clone()]).is_empty());
        drop(file);
        assert_eq!(remove_unused([format!("/{name}")]), [format!("/{name}")]);
        // Already gone: not reported again.
        assert!(remove_unused([name.clone()]).is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn session_zero_is_no_session() {
        assert_eq!(reap_session(0), SessionReap::default());
    }
}
