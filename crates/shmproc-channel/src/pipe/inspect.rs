//! A pipe decoded from a copy of its segment
//! ([`shmproc_shm::inspect::Snapshot`]), for tools: the meta line, both
//! ends and both rings, every field checked on its own.
//!
//! Invariants: only `get`-based reads of the copy (any bytes, any length,
//! never a panic); offsets come from the layout types (`offset_of!`).

use std::mem::{offset_of, size_of};

use shmproc_shm::inspect::{Problem, Snapshot, u32_at, u64_at};
use shmproc_sync::owner;

use super::PipeMode;
use super::layout::{
    CTL_OFF, EndRecord, IndexLine, MAX_CAPACITY_BYTES, META_OFF, MIN_CAPACITY, MODE_DUPLEX,
    MODE_SIMPLEX, PipeMeta, READER_WAITING, RingCtl, SPEC, WRITER_WAITING, WakeLine, payload_len,
};

/// One end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeEndState {
    /// The pid of the process that claimed the end (`None`: unclaimed).
    pub owner_pid: Option<u32>,
    /// Whether that process was alive when judged (pid and start time).
    pub owner_alive: Option<bool>,
    /// Whether the end was closed.
    pub closed: bool,
}

/// One of a pipe's two byte rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeRingState {
    /// The writer's position (bytes written so far).
    pub tail: u64,
    /// The reader's position.
    pub head: u64,
    /// Bytes waiting to be read: `tail - head`, clamped to `0..=capacity`.
    pub used: u64,
    /// The reader is registered as asleep.
    pub reader_waiting: bool,
    /// The writer is registered as asleep (waiting for room).
    pub writer_waiting: bool,
    /// The writer is filling a large record.
    pub busy: bool,
    /// A user cannot issue `membarrier` (fences on every wake).
    pub heavy: bool,
}

/// The live state of a pipe, decoded from a copy of its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeState {
    /// Bytes per ring (a power of two).
    pub capacity: u64,
    /// Duplex or simplex (`None`: a value no process writes).
    pub mode: Option<PipeMode>,
    /// The two ends: end `e` reads ring `e`.
    pub ends: [PipeEndState; 2],
    /// The two rings: ring `e` is read by end `e` and written by the other.
    pub rings: [PipeRingState; 2],
}

/// [`inspect_pipe`]'s answer: the state, when the copy holds the pipe's
/// control lines, and everything wrong with it, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeReport {
    /// The decoded state (`None`: too short to hold the control lines).
    pub pipe: Option<PipeState>,
    /// Everything wrong; empty for a consistent pipe.
    pub problems: Vec<Problem>,
}

/// Decodes and checks a `Pipe` segment from `snap`, a copy of its first
/// bytes. The liveness of the ends' owners is judged now.
pub fn inspect_pipe(snap: &Snapshot) -> PipeReport {
    let b = snap.payload();
    let mut problems = Vec::new();
    let need = CTL_OFF[1] + size_of::<RingCtl>();
    if b.len() < need {
        problems.push(Problem::new(
            "pipe control lines",
            format!("{} bytes", b.len()),
            format!("{need} bytes after the segment header"),
        ));
        return PipeReport {
            pipe: None,
            problems,
        };
    }
    let u64f = |off: usize| u64_at(b, off).unwrap_or(0);
    let u32f = |off: usize| u32_at(b, off).unwrap_or(0);

    let capacity = u64f(META_OFF + offset_of!(PipeMeta, capacity));
    let cap_ok = capacity.is_power_of_two()
        && (MIN_CAPACITY as u64..=MAX_CAPACITY_BYTES as u64).contains(&capacity);
    if !cap_ok {
        problems.push(Problem::new(
            "pipe capacity",
            capacity,
            format!("a power of two in {MIN_CAPACITY}..={MAX_CAPACITY_BYTES}"),
        ));
    }
    let header = snap.header();
    if let Some(hc) = header.capacity.filter(|&hc| hc != capacity) {
        problems.push(Problem::new(
            "pipe capacity",
            capacity,
            format!("{hc} (the segment header's capacity)"),
        ));
    }
    let want_fp = SPEC.with_capacity(capacity).fingerprint();
    if let Some(fp) = header.fingerprint.filter(|&fp| fp != want_fp) {
        problems.push(Problem::new(
            "fingerprint",
            format!("{fp:#018x}"),
            format!("{want_fp:#018x} (a pipe of this layout and capacity)"),
        ));
    }
    if let Some(want) = payload_len(capacity).filter(|&w| w != snap.payload_len()) {
        problems.push(Problem::new(
            "segment length",
            format!("{} payload bytes", snap.payload_len()),
            format!("{want} (two rings of {capacity} bytes and the control lines)"),
        ));
    }
    let mode_word = u32f(META_OFF + offset_of!(PipeMeta, mode));
    let mode = match mode_word {
        MODE_DUPLEX => Some(PipeMode::Duplex),
        MODE_SIMPLEX => Some(PipeMode::Simplex),
        other => {
            problems.push(Problem::new(
                "pipe mode",
                other,
                "1 (duplex) or 2 (simplex)",
            ));
            None
        }
    };

    let end = |e: usize, problems: &mut Vec<Problem>| {
        let at = META_OFF + offset_of!(PipeMeta, ends) + e * size_of::<EndRecord>();
        let rec = u64f(at + offset_of!(EndRecord, owner));
        let closed = u32f(at + offset_of!(EndRecord, closed));
        if closed > 1 {
            problems.push(Problem::new(format!("end {e} closed"), closed, "0 or 1"));
        }
        let owner_pid = (rec != 0).then(|| u32::try_from(rec >> 40).unwrap_or(0));
        PipeEndState {
            owner_pid,
            owner_alive: owner_pid.map(|_| !owner::record_owner_dead(rec)),
            closed: closed != 0,
        }
    };
    let ends = [end(0, &mut problems), end(1, &mut problems)];

    let ring = |r: usize, problems: &mut Vec<Problem>| {
        let at = CTL_OFF.get(r).copied().unwrap_or(0);
        let tail = u64f(at + offset_of!(RingCtl, tail) + offset_of!(IndexLine, value));
        let head = u64f(at + offset_of!(RingCtl, head) + offset_of!(IndexLine, value));
        let wake = at + offset_of!(RingCtl, wake);
        let waiters = u32f(wake + offset_of!(WakeLine, waiters));
        // The tail lies before the head: a copy in address order reads it
        // first, so a consistent ring never shows more than `capacity`
        // bytes, and shows the head past the tail only when its reader
        // moved on while it was copied.
        let d = tail.wrapping_sub(head) as i64;
        let cap = capacity.min(MAX_CAPACITY_BYTES as u64) as i64;
        if d > cap || d < -cap {
            problems.push(Problem::new(
                format!("ring {r} head/tail"),
                format!("head {head}, tail {tail}"),
                format!("head <= tail <= head + {capacity} (the capacity)"),
            ));
        }
        if waiters & !(READER_WAITING | WRITER_WAITING) != 0 {
            problems.push(Problem::new(
                format!("ring {r} waiters"),
                format!("{waiters:#x}"),
                "bits 0 (reader) and 1 (writer) only",
            ));
        }
        PipeRingState {
            tail,
            head,
            used: d.clamp(0, cap) as u64,
            reader_waiting: waiters & READER_WAITING != 0,
            writer_waiting: waiters & WRITER_WAITING != 0,
            busy: u32f(wake + offset_of!(WakeLine, busy)) != 0,
            heavy: u32f(wake + offset_of!(WakeLine, heavy)) != 0,
        }
    };
    let rings = [ring(0, &mut problems), ring(1, &mut problems)];

    PipeReport {
        pipe: Some(PipeState {
            capacity,
            mode,
            ends,
            rings,
        }),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pipe;
    use shmproc_shm::SegmentName;

    #[test]
    fn a_live_pipe_reads_back_and_any_bytes_decode() {
        let name = SegmentName::unique("inspect-p");
        let (mut a, b) = Pipe::create(name.as_str()).expect("create");
        a.send_bytes(b"hello").expect("send");
        let snap = Snapshot::read(name.as_str(), 4096).expect("read");
        let r = inspect_pipe(&snap);
        assert_eq!(r.problems, []);
        let p = r.pipe.expect("a pipe");
        assert_eq!(p.mode, Some(PipeMode::Duplex));
        // End 0 wrote into ring 1 (read by end 1): one 64-byte record.
        assert_eq!(p.rings[1].used, 64);
        assert_eq!(p.rings[0].used, 0);
        assert_eq!(p.ends[0].owner_pid, Some(std::process::id()));
        assert_eq!(p.ends[0].owner_alive, Some(true));
        assert!(!p.ends[1].closed);
        drop(b);

        let base = snap.bytes().to_vec();
        for n in 0..=base.len() {
            let prefix = base.get(..n).expect("in range").to_vec();
            let r = inspect_pipe(&Snapshot::from_bytes("x", prefix, snap.file_len()));
            assert_eq!(r.pipe.is_some(), n >= shmproc_shm::DATA_OFFSET + need());
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..300 {
            let noise: Vec<u8> = (0..base.len())
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = inspect_pipe(&Snapshot::from_bytes("x", noise, x));
        }
    }

    fn need() -> usize {
        CTL_OFF[1] + size_of::<RingCtl>()
    }
}
