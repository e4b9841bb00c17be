//! `shmproc inspect NAME`: one segment, field by field.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmproc_shm::SegmentKind;
use shmproc_shm::cleanup::{self, SegmentInfo};
use shmproc_shm::inspect::state_name;

use crate::report::{self, SegmentReport, human_bytes};

/// Prints the report of segment `name`; exit code 1 when it cannot be read
/// or something in it is wrong.
pub(crate) fn run(name: &str, json: bool) -> ExitCode {
    let bare = name
        .strip_prefix("/dev/shm/")
        .or_else(|| name.strip_prefix('/'))
        .unwrap_or(name);
    let info = SegmentInfo::peek(bare);
    let r = report::build(&info, &cleanup::in_use(), true);
    if json {
        crate::emit_json(&r);
    } else {
        crate::emit(&text(&r));
    }
    if r.error.is_some() || r.corrupt {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The report as text: the header table (bad fields marked), the kind's
/// live state, the judgement, and every problem.
fn text(r: &SegmentReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "segment  /{}", r.name);
    if let Some(e) = &r.error {
        let _ = writeln!(o, "UNREADABLE: {e}");
        return o;
    }
    if let Some(size) = r.size {
        let _ = writeln!(
            o,
            "file     /dev/shm/{} ({}, {size} bytes)",
            r.name,
            human_bytes(size)
        );
    }
    header(&mut o, r);
    kind_state(&mut o, r);
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(o, "judgement");
    let _ = writeln!(
        o,
        "  mapped or held open by a live process: {}",
        yes_no(r.in_use)
    );
    let _ = writeln!(o, "  persisted: {}", yes_no(r.persistent));
    let _ = writeln!(
        o,
        "  removed by `shmproc clean`: {}",
        if r.orphan {
            "yes (an orphan: its creator died)"
        } else {
            "no"
        }
    );
    if r.problems.is_empty() {
        let _ = writeln!(o, "problems: none");
    } else {
        let _ = writeln!(o, "CORRUPT: {} problem(s)", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(
                o,
                "  {}: found {}, expected {}",
                p.field, p.found, p.expected
            );
        }
    }
    o
}

/// The header, one field a line, each bad field marked.
fn header(o: &mut String, r: &SegmentReport) {
    let Some(h) = &r.header else { return };
    let _ = writeln!(o, "header");
    let show = |v: Option<String>| v.unwrap_or_else(|| "(past the end of the file)".to_owned());
    let rows: [(&str, Option<String>); 12] = [
        ("magic", h.magic.clone()),
        ("layout_version", h.layout_version.map(|v| v.to_string())),
        ("header_len", h.header_len.map(|v| v.to_string())),
        ("segment_len", h.segment_len.map(|v| v.to_string())),
        ("fingerprint", h.fingerprint.clone()),
        ("kind", h.kind.map(|k| format!("{k} ({})", SegmentKind(k)))),
        (
            "state",
            h.state
                .map(|s| format!("{s} ({})", state_name(s).unwrap_or("unknown"))),
        ),
        (
            "creator_pid",
            h.creator_pid.map(|p| {
                let alive = match r.creator_alive {
                    Some(true) => "alive",
                    Some(false) => "dead",
                    None => "unknown",
                };
                format!("{p} ({alive})")
            }),
        ),
        (
            "flags",
            h.flags.map(|f| {
                let what = if f & shmproc_shm::FLAG_PERSISTENT != 0 {
                    "persistent"
                } else {
                    "not persisted"
                };
                format!("{f:#x} ({what})")
            }),
        ),
        ("capacity", h.capacity.map(|v| v.to_string())),
        ("session", h.session.map(|v| v.to_string())),
        (
            "type name",
            Some(
                h.type_name
                    .clone()
                    .unwrap_or_else(|| "(none recorded)".to_owned()),
            ),
        ),
    ];
    for (field, value) in rows {
        let mark = r
            .problems
            .iter()
            .find(|p| {
                p.field == field || (field == "type name" && p.field.starts_with("type name"))
            })
            .map_or_else(String::new, |p| {
                format!("  <- CORRUPT: expected {}", p.expected)
            });
        let _ = writeln!(o, "  {field:<15} {}{mark}", show(value));
    }
}

/// The kind's live state: a queue's indices, leases and sleepers; a pipe's
/// ends and rings; a lock's holder.
fn kind_state(o: &mut String, r: &SegmentReport) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    if let Some(q) = &r.queue {
        let _ = writeln!(o, "queue");
        let _ = writeln!(
            o,
            "  messages        {}/{} ({} slots of {} bytes, stride {})",
            q.len, q.maxsize, q.capacity, q.slot_size, q.stride
        );
        let _ = writeln!(o, "  head            {} (next to get)", q.head);
        let _ = writeln!(o, "  tail            {} (next to put)", q.tail);
        let _ = writeln!(o, "  closed          {}", yes_no(q.closed));
        let _ = writeln!(o, "  producer lease  {}", q.producer_lease.describe());
        let _ = writeln!(o, "  consumer lease  {}", q.consumer_lease.describe());
        let sleepers = |n: u32, list: &[report::SleeperOut]| {
            let pids: Vec<String> = list
                .iter()
                .map(|s| format!("{}{}", s.pid, if s.alive { "" } else { " (dead)" }))
                .collect();
            if pids.is_empty() {
                n.to_string()
            } else {
                format!("{n}: {}", pids.join(", "))
            }
        };
        let _ = writeln!(
            o,
            "  asleep in get   {}",
            sleepers(q.sleeping_consumers, &q.consumer_sleepers)
        );
        let _ = writeln!(
            o,
            "  asleep in put   {}",
            sleepers(q.sleeping_producers, &q.producer_sleepers)
        );
        let _ = writeln!(
            o,
            "  skipped writes  {} (producers that died mid-put)",
            q.skipped_writes
        );
        let _ = writeln!(
            o,
            "  abandoned reads {} (consumers that died mid-get)",
            q.abandoned_reads
        );
        if r.kind.as_deref() == Some("JoinableQueue") {
            let _ = writeln!(
                o,
                "  unfinished      {} (put, not yet task_done)",
                q.unfinished
            );
        }
    }
    if let Some(p) = &r.pipe {
        let _ = writeln!(o, "pipe");
        let _ = writeln!(
            o,
            "  mode            {}, {} per ring",
            p.mode.unwrap_or("unknown"),
            human_bytes(p.capacity)
        );
        for (i, e) in p.ends.iter().enumerate() {
            let owner = match (e.owner_pid, e.owner_alive) {
                (None, _) => "unclaimed".to_owned(),
                (Some(pid), Some(false)) => format!("process {pid} (dead)"),
                (Some(pid), _) => format!("process {pid} (alive)"),
            };
            let _ = writeln!(
                o,
                "  end {i}           {owner}{}",
                if e.closed { ", closed" } else { "" }
            );
        }
        for g in &p.rings {
            let mut flags = Vec::new();
            if g.reader_waiting {
                flags.push("reader asleep");
            }
            if g.writer_waiting {
                flags.push("writer asleep");
            }
            if g.busy {
                flags.push("writer filling a large record");
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" ({})", flags.join(", "))
            };
            let _ = writeln!(
                o,
                "  ring {}          {} waiting for end {}: head {}, tail {}{flags}",
                g.reader_end,
                human_bytes(g.used),
                g.reader_end,
                g.head,
                g.tail
            );
        }
    }
    if let Some(l) = &r.lock {
        let _ = writeln!(o, "lock");
        let holder = match (l.owner_pid, l.owner_died) {
            (None, _) => "none (unlocked)".to_owned(),
            (Some(p), false) => format!("process {p} (alive)"),
            (Some(p), true) => {
                format!("process {p} (DIED holding it: the next acquirer gets OwnerDied)")
            }
        };
        let _ = writeln!(o, "  holder          {holder}");
        let _ = writeln!(o, "  poisoned        {}", yes_no(l.poisoned));
        let _ = writeln!(o, "  owner deaths    {}", l.owner_deaths);
        let _ = writeln!(o, "  waiters         {}", yes_no(l.waiters));
    }
}
