//! One segment, read and judged: what `ls` shows as a row and `inspect` in
//! full, built from the owning crates' `inspect` decoders.

use std::collections::HashSet;

use serde::Serialize;
use shmproc_channel::LeaseState;
use shmproc_channel::PipeMode;
use shmproc_channel::inspect::{
    PipeReport, RingReport, RingState, Sleeper, inspect_pipe, inspect_ring,
};
use shmproc_shm::cleanup::{self, SegmentInfo};
use shmproc_shm::inspect::{HeaderReport, Problem, Snapshot, state_name};
use shmproc_shm::{LAYOUT_VERSION, MAGIC, STATE_READY, SegmentKind};
use shmproc_sync::inspect::{LockReport, inspect_lock};

/// How many bytes of a segment are read: the header, and the control
/// lines of every kind decoded here (a pipe's end at 1024).
pub(crate) const SNAPSHOT_LEN: usize = 4096;

/// A field found wrong.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProblemOut {
    pub(crate) field: String,
    pub(crate) found: String,
    pub(crate) expected: String,
}

impl From<Problem> for ProblemOut {
    fn from(p: Problem) -> Self {
        Self {
            field: p.field,
            found: p.found,
            expected: p.expected,
        }
    }
}

/// The header, field by field (`null`: the file is too short to hold it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HeaderOut {
    pub(crate) magic: Option<String>,
    pub(crate) layout_version: Option<u32>,
    pub(crate) header_len: Option<u32>,
    pub(crate) segment_len: Option<u64>,
    pub(crate) fingerprint: Option<String>,
    pub(crate) kind: Option<u32>,
    pub(crate) state: Option<u32>,
    pub(crate) creator_pid: Option<u32>,
    pub(crate) flags: Option<u32>,
    pub(crate) capacity: Option<u64>,
    pub(crate) session: Option<u64>,
    pub(crate) type_name: Option<String>,
}

impl From<&HeaderReport> for HeaderOut {
    fn from(h: &HeaderReport) -> Self {
        Self {
            magic: h.magic.map(|m| format!("{m:#018x}")),
            layout_version: h.layout_version,
            header_len: h.header_len,
            segment_len: h.segment_len,
            fingerprint: h.fingerprint.map(|f| format!("{f:#018x}")),
            kind: h.kind.map(|k| k.0),
            state: h.state,
            creator_pid: h.creator_pid,
            flags: h.flags,
            capacity: h.capacity,
            session: h.session,
            type_name: h.type_name.clone(),
        }
    }
}

/// How full a queue or a pipe is.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fill {
    /// `"messages"` (queues) or `"bytes"` (pipes).
    pub(crate) unit: &'static str,
    /// Messages (or bytes, both rings together) waiting.
    pub(crate) used: u64,
    /// The most it holds (both rings together for a pipe).
    pub(crate) capacity: u64,
    /// A pipe's bytes waiting per ring (ring `e` is read by end `e`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rings: Option<[u64; 2]>,
}

/// A side lease of a queue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeaseOut {
    /// `free`, `held`, `revoking`, `shared`, or `corrupt`.
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tid: Option<u32>,
    /// Whether the holding thread still exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) alive: Option<bool>,
}

impl LeaseOut {
    fn of(l: Option<LeaseState>) -> Self {
        let held = |state, tid| Self {
            state,
            tid: Some(tid),
            alive: Some(!shmproc_sync::owner::tid_gone(tid)),
        };
        let plain = |state| Self {
            state,
            tid: None,
            alive: None,
        };
        match l {
            Some(LeaseState::Free) => plain("free"),
            Some(LeaseState::Shared) => plain("shared"),
            Some(LeaseState::Held(t)) => held("held", t),
            Some(LeaseState::Revoking(t)) => held("revoking", t),
            _ => plain("corrupt"),
        }
    }

    pub(crate) fn describe(&self) -> String {
        let alive = |a: Option<bool>| if a == Some(false) { " (gone)" } else { "" };
        match (self.state, self.tid) {
            ("free", _) => "free (nobody has used this side yet)".to_owned(),
            ("shared", _) => "shared (the multi-thread protocol)".to_owned(),
            ("held", Some(t)) => format!("held by thread {t}{}", alive(self.alive)),
            ("revoking", Some(t)) => {
                format!("being revoked from thread {t}{}", alive(self.alive))
            }
            (s, _) => s.to_owned(),
        }
    }
}

/// A process registered as asleep on a queue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SleeperOut {
    pub(crate) pid: u32,
    pub(crate) alive: bool,
}

impl From<&Sleeper> for SleeperOut {
    fn from(s: &Sleeper) -> Self {
        Self {
            pid: s.pid,
            alive: s.alive,
        }
    }
}

/// A queue's live state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueOut {
    pub(crate) capacity: u64,
    pub(crate) maxsize: u64,
    pub(crate) slot_size: u64,
    pub(crate) stride: u64,
    pub(crate) head: u64,
    pub(crate) tail: u64,
    pub(crate) len: u64,
    pub(crate) closed: bool,
    pub(crate) skipped_writes: u64,
    pub(crate) abandoned_reads: u64,
    pub(crate) unfinished: u64,
    pub(crate) fences: bool,
    pub(crate) producer_lease: LeaseOut,
    pub(crate) consumer_lease: LeaseOut,
    pub(crate) sleeping_consumers: u32,
    pub(crate) sleeping_producers: u32,
    pub(crate) consumer_sleepers: Vec<SleeperOut>,
    pub(crate) producer_sleepers: Vec<SleeperOut>,
}

impl From<&RingState> for QueueOut {
    fn from(r: &RingState) -> Self {
        Self {
            capacity: r.capacity,
            maxsize: r.maxsize,
            slot_size: r.slot_size,
            stride: r.stride,
            head: r.head,
            tail: r.tail,
            len: r.len,
            closed: r.closed,
            skipped_writes: r.skipped_writes,
            abandoned_reads: r.abandoned_reads,
            unfinished: r.unfinished,
            fences: r.fences,
            producer_lease: LeaseOut::of(r.producer_lease),
            consumer_lease: LeaseOut::of(r.consumer_lease),
            sleeping_consumers: r.sleeping_consumers,
            sleeping_producers: r.sleeping_producers,
            consumer_sleepers: r.consumer_sleepers.iter().map(SleeperOut::from).collect(),
            producer_sleepers: r.producer_sleepers.iter().map(SleeperOut::from).collect(),
        }
    }
}

/// One end of a pipe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PipeEndOut {
    pub(crate) owner_pid: Option<u32>,
    pub(crate) owner_alive: Option<bool>,
    pub(crate) closed: bool,
}

/// One ring of a pipe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PipeRingOut {
    /// The end that reads it (the other end writes it).
    pub(crate) reader_end: usize,
    pub(crate) head: u64,
    pub(crate) tail: u64,
    pub(crate) used: u64,
    pub(crate) reader_waiting: bool,
    pub(crate) writer_waiting: bool,
    pub(crate) busy: bool,
}

/// A pipe's live state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PipeOut {
    pub(crate) capacity: u64,
    /// `duplex`, `simplex`, or `null` when the mode word is corrupt.
    pub(crate) mode: Option<&'static str>,
    pub(crate) ends: Vec<PipeEndOut>,
    pub(crate) rings: Vec<PipeRingOut>,
}

/// A lock's live state (`Lock`, `RLock`, and the lock of `Value`/`Array`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LockOut {
    /// The holder's pid (`null`: unlocked).
    pub(crate) owner_pid: Option<u32>,
    /// Whether the holder is alive (`null`: unlocked).
    pub(crate) owner_alive: Option<bool>,
    /// The holder died holding it: the next acquirer gets `OwnerDied`.
    pub(crate) owner_died: bool,
    pub(crate) poisoned: bool,
    pub(crate) owner_deaths: u32,
    pub(crate) waiters: bool,
}

/// Everything `ls` and `inspect` say about one segment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SegmentReport {
    /// The name, without the leading `/` (the file in `/dev/shm`).
    pub(crate) name: String,
    /// The file's length in bytes.
    pub(crate) size: Option<u64>,
    /// `Queue`, `Lock`, ..., or `kind N` for a number this build does not know.
    pub(crate) kind: Option<String>,
    /// The element type its creator recorded.
    pub(crate) element_type: Option<String>,
    /// `uninit`, `initialising`, `ready`, `poisoned`, or `null`.
    pub(crate) state: Option<String>,
    pub(crate) creator_pid: Option<u32>,
    /// Whether the creator is alive (`null`: unknown, the header is unreadable).
    pub(crate) creator_alive: Option<bool>,
    pub(crate) persistent: bool,
    /// Whether a live process maps it or holds it open.
    pub(crate) in_use: bool,
    /// Whether `shmproc clean` removes it.
    pub(crate) orphan: bool,
    pub(crate) fill: Option<Fill>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queue: Option<QueueOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pipe: Option<PipeOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lock: Option<LockOut>,
    /// Why it could not be read at all.
    pub(crate) error: Option<String>,
    pub(crate) corrupt: bool,
    pub(crate) problems: Vec<ProblemOut>,
    /// The header, field by field (`inspect` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) header: Option<HeaderOut>,
}

impl SegmentReport {
    /// One word for `ls`'s STATUS column.
    pub(crate) fn status(&self) -> String {
        if self.error.is_some() {
            "unreadable".to_owned()
        } else if self.corrupt {
            "corrupt".to_owned()
        } else if let Some(s) = self.state.as_deref().filter(|s| *s != "ready") {
            s.to_owned()
        } else if self.orphan {
            "orphan".to_owned()
        } else {
            "ok".to_owned()
        }
    }

    /// The fill level, or a lock's holder, for `ls`'s FILL column.
    pub(crate) fn fill_text(&self) -> String {
        if let Some(l) = &self.lock {
            return match (l.owner_pid, l.owner_died) {
                (None, _) => "unlocked".to_owned(),
                (Some(p), false) => format!("held by {p}"),
                (Some(p), true) => format!("held by {p} (dead)"),
            };
        }
        match &self.fill {
            Some(f) if f.unit == "messages" => format!("{}/{}", f.used, f.capacity),
            Some(Fill {
                rings: Some([a, b]),
                capacity,
                ..
            }) => format!(
                "{} + {} of {}",
                human_bytes(*a),
                human_bytes(*b),
                human_bytes(capacity / 2)
            ),
            _ => "-".to_owned(),
        }
    }
}

/// Reads and judges the segment `info` names (`in_use`: from
/// [`cleanup::in_use`]). `with_header`: include the header field by field.
pub(crate) fn build(
    info: &SegmentInfo,
    in_use: &HashSet<String>,
    with_header: bool,
) -> SegmentReport {
    let mut r = SegmentReport {
        name: info.name.clone(),
        size: None,
        kind: None,
        element_type: None,
        state: None,
        creator_pid: None,
        creator_alive: info.creator_alive,
        persistent: info.persistent(),
        in_use: in_use.contains(&info.name),
        orphan: cleanup::is_orphan(info, in_use),
        fill: None,
        queue: None,
        pipe: None,
        lock: None,
        error: None,
        corrupt: false,
        problems: Vec::new(),
        header: None,
    };
    let snap = match Snapshot::read(&info.name, SNAPSHOT_LEN) {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    r.size = Some(snap.file_len());
    let header = snap.header();
    r.kind = header.kind.map(|k| k.to_string());
    r.element_type = header.type_name.clone();
    r.state = header
        .state
        .map(|s| state_name(s).map_or_else(|| format!("state {s}"), str::to_owned));
    r.creator_pid = header.creator_pid;
    if r.creator_alive.is_none() {
        r.creator_alive = header
            .creator_pid
            .filter(|&p| p != 0)
            .map(|p| shmproc_shm::OwnerRecord::pid_only(p).is_alive());
    }
    r.persistent = header.persistent();
    if with_header {
        r.header = Some(HeaderOut::from(&header));
    }
    let mut problems = header.problems.clone();
    // The kind's own layout means something only under our magic and version.
    let ours = header.magic == Some(MAGIC) && header.layout_version == Some(LAYOUT_VERSION);
    let ready = header.state == Some(STATE_READY);
    if ours && ready {
        match header.kind {
            Some(SegmentKind::QUEUE | SegmentKind::JOINABLE_QUEUE | SegmentKind::SIMPLE_QUEUE) => {
                let RingReport {
                    ring, problems: p, ..
                } = inspect_ring(&snap);
                problems.extend(p);
                if let Some(ring) = ring {
                    r.fill = Some(Fill {
                        unit: "messages",
                        used: ring.len,
                        capacity: ring.maxsize,
                        rings: None,
                    });
                    r.queue = Some(QueueOut::from(&ring));
                }
            }
            Some(SegmentKind::PIPE) => {
                let PipeReport {
                    pipe, problems: p, ..
                } = inspect_pipe(&snap);
                problems.extend(p);
                if let Some(pipe) = pipe {
                    let [r0, r1] = pipe.rings;
                    r.fill = Some(Fill {
                        unit: "bytes",
                        used: r0.used.saturating_add(r1.used),
                        capacity: pipe.capacity.saturating_mul(2),
                        rings: Some([r0.used, r1.used]),
                    });
                    r.pipe = Some(PipeOut {
                        capacity: pipe.capacity,
                        mode: pipe.mode.map(|m| match m {
                            PipeMode::Duplex => "duplex",
                            PipeMode::Simplex => "simplex",
                        }),
                        ends: pipe
                            .ends
                            .iter()
                            .map(|e| PipeEndOut {
                                owner_pid: e.owner_pid,
                                owner_alive: e.owner_alive,
                                closed: e.closed,
                            })
                            .collect(),
                        rings: pipe
                            .rings
                            .iter()
                            .enumerate()
                            .map(|(i, g)| PipeRingOut {
                                reader_end: i,
                                head: g.head,
                                tail: g.tail,
                                used: g.used,
                                reader_waiting: g.reader_waiting,
                                writer_waiting: g.writer_waiting,
                                busy: g.busy,
                            })
                            .collect(),
                    });
                }
            }
            _ => {
                if let Some(LockReport {
                    lock, problems: p, ..
                }) = inspect_lock(&snap)
                {
                    problems.extend(p);
                    r.lock = lock.map(|l| {
                        let alive = l.holder_alive();
                        LockOut {
                            owner_pid: l.owner_pid,
                            owner_alive: alive,
                            owner_died: alive == Some(false),
                            poisoned: l.poisoned,
                            owner_deaths: l.owner_deaths,
                            waiters: l.waiters,
                        }
                    });
                }
            }
        }
    }
    r.corrupt = !problems.is_empty();
    r.problems = problems.into_iter().map(ProblemOut::from).collect();
    r
}

/// `n` bytes for a person: `768 B`, `4.5 KiB`, `1.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = "KiB";
    for u in UNITS.iter().skip(1) {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 20), "1.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
