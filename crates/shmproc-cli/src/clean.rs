//! `shmproc clean`: removes orphans through `shmproc_shm::cleanup`, the
//! one place that judges them.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmproc_shm::NAME_PREFIX;
use shmproc_shm::cleanup::{self, SegmentInfo};

/// Removes (or, with `dry_run`, lists) the orphans whose names start with
/// `prefix` (every orphan without one); with `all`, also the unreadable
/// files named like generated names whose pid is dead.
pub(crate) fn run(dry_run: bool, all: bool, prefix: Option<&str>) -> ExitCode {
    let matches = |n: &str| prefix.is_none_or(|p| n.starts_with(p));
    let in_use = cleanup::in_use();
    let listed = cleanup::list_matching(matches);
    let orphans: Vec<&SegmentInfo> = listed
        .iter()
        .filter(|s| cleanup::is_orphan(s, &in_use))
        .collect();
    let leftovers: Vec<&SegmentInfo> = if all {
        listed
            .iter()
            .filter(|s| is_dead_leftover(s) && !in_use.contains(&s.name))
            .collect()
    } else {
        Vec::new()
    };

    let removed: Vec<String> = if dry_run {
        orphans
            .iter()
            .chain(&leftovers)
            .map(|s| s.name.clone())
            .collect()
    } else {
        let mut removed = cleanup::reap_orphans_matching(matches);
        removed.extend(cleanup::remove_unused(
            leftovers.iter().map(|s| s.name.clone()),
        ));
        removed
    };

    let mut out = String::new();
    let verb = if dry_run { "would remove" } else { "removed" };
    for name in &removed {
        let why = listed
            .iter()
            .find(|s| &s.name == name)
            .map_or_else(String::new, describe);
        let _ = writeln!(out, "{verb} /dev/shm/{name}{why}");
    }
    let n = removed.len();
    let _ = match (n, dry_run) {
        (0, _) => writeln!(out, "nothing to clean"),
        (_, true) => writeln!(out, "{n} segment(s) would be removed (dry run)"),
        (_, false) => writeln!(out, "{n} segment(s) removed"),
    };
    crate::emit(&out);
    ExitCode::SUCCESS
}

/// An unreadable file named like a generated name (`shmproc-<pid hex>-...`)
/// whose pid is dead: a creator killed between `shm_open` and writing the
/// header, or a corrupt leftover of a dead program.
fn is_dead_leftover(s: &SegmentInfo) -> bool {
    !s.is_readable()
        && s.name.starts_with(NAME_PREFIX)
        && s.named_creator().is_some_and(|c| !c.is_alive())
}

/// `" (Queue, creator 1234 dead)"`, or why an unreadable file goes.
fn describe(s: &SegmentInfo) -> String {
    match (&s.header, s.creator()) {
        (Ok(h), Some(c)) => format!(" ({}, creator {} dead)", h.kind, c.pid()),
        _ => match s.named_creator() {
            Some(c) => format!(" (unreadable, pid {} in its name dead)", c.pid()),
            None => " (unreadable)".to_owned(),
        },
    }
}
