//! A queue's ring decoded from a copy of its segment
//! ([`shmproc_shm::inspect::Snapshot`]), for tools: every field of the
//! [`RingHeader`](super::RingHeader), checked on its own.
//!
//! Invariants: only `get`-based reads of the copy (any bytes, any length,
//! never a panic); offsets come from the layout types (`offset_of!`), never
//! from numbers written here.

use std::mem::offset_of;

use shmproc_shm::inspect::{Problem, Snapshot, u32_at, u64_at};
use shmproc_sync::owner;

use super::LeaseState;
use super::RingHeader;
use super::layout::{
    FLAG_FENCES, IndexLine, MAX_CAPACITY, MAX_SLOT_SIZE, RING_HEADER_LEN, RING_MAGIC,
    SLEEPER_SLOTS, ring_bytes, slot_geometry,
};
use super::lease::lease_state_of;
use super::sleepers::{is_sleeper_record, sleeper_count};

/// A process registered as asleep on one side of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sleeper {
    /// Its pid, from its owner record.
    pub pid: u32,
    /// Whether it was alive when judged (a dead one stays registered until
    /// a waker repairs the registry).
    pub alive: bool,
}

/// The live state of a queue's ring, decoded from a copy of its header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingState {
    /// Slots (a power of two).
    pub capacity: u64,
    /// The most messages the queue holds (Python's `maxsize`).
    pub maxsize: u64,
    /// Payload bytes per slot.
    pub slot_size: u64,
    /// Bytes from one slot to the next.
    pub stride: u64,
    /// Whether the queue was closed.
    pub closed: bool,
    /// The next position to consume.
    pub head: u64,
    /// The next position to produce.
    pub tail: u64,
    /// Messages in the queue: `tail - head`, clamped to `0..=maxsize` (as
    /// `Queue::qsize`; a copy of a busy queue is a moment's snapshot).
    pub len: u64,
    /// Positions skipped because their producer died mid-put.
    pub skipped_writes: u64,
    /// Messages lost because their consumer died mid-get.
    pub abandoned_reads: u64,
    /// `JoinableQueue`: items put and not yet `task_done`.
    pub unfinished: u64,
    /// Whether a user of the queue cannot issue `membarrier` (fences on every wake).
    pub fences: bool,
    /// The producers' lease (`None`: a value no process writes; see the problems).
    pub producer_lease: Option<LeaseState>,
    /// The consumers' lease (as `producer_lease`).
    pub consumer_lease: Option<LeaseState>,
    /// Consumers registered as asleep (the waiters word's count).
    pub sleeping_consumers: u32,
    /// Producers registered as asleep.
    pub sleeping_producers: u32,
    /// The sleeper records of consumers (up to 13 are recorded).
    pub consumer_sleepers: Vec<Sleeper>,
    /// The sleeper records of producers.
    pub producer_sleepers: Vec<Sleeper>,
}

/// [`inspect_ring`]'s answer: the state, when the copy holds a ring header,
/// and everything wrong with it, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingReport {
    /// The decoded state (`None`: too short to hold a ring header).
    pub ring: Option<RingState>,
    /// Everything wrong; empty for a consistent ring.
    pub problems: Vec<Problem>,
}

/// Decodes and checks the ring of a queue segment (`Queue`,
/// `JoinableQueue`, `SimpleQueue`, `ByteQueue`) from `snap`, a copy of its
/// first bytes. The liveness of sleepers is judged now.
pub fn inspect_ring(snap: &Snapshot) -> RingReport {
    let b = snap.payload();
    let mut problems = Vec::new();
    if b.len() < RING_HEADER_LEN {
        problems.push(Problem::new(
            "ring header",
            format!("{} bytes", b.len()),
            format!("{RING_HEADER_LEN} bytes after the segment header"),
        ));
        return RingReport {
            ring: None,
            problems,
        };
    }
    let u64f = |off: usize| u64_at(b, off).unwrap_or(0);
    let u32f = |off: usize| u32_at(b, off).unwrap_or(0);
    let line = |side: usize, field: usize| side + field;
    let tail_at = offset_of!(RingHeader, tail);
    let head_at = offset_of!(RingHeader, head);

    let magic = u64f(offset_of!(RingHeader, magic));
    if magic != RING_MAGIC {
        problems.push(Problem::new(
            "ring magic",
            format!("{magic:#018x}"),
            format!("{RING_MAGIC:#018x} (\"SHMRING\\x04\")"),
        ));
    }
    let capacity = u64f(offset_of!(RingHeader, capacity));
    if capacity == 0 || capacity > MAX_CAPACITY || !capacity.is_power_of_two() {
        problems.push(Problem::new(
            "ring capacity",
            capacity,
            format!("a power of two in 1..={MAX_CAPACITY}"),
        ));
    }
    if let Some(hc) = snap.header().capacity.filter(|&hc| hc != capacity) {
        problems.push(Problem::new(
            "ring capacity",
            capacity,
            format!("{hc} (the segment header's capacity)"),
        ));
    }
    let maxsize = u64f(offset_of!(RingHeader, maxsize));
    if maxsize == 0 || maxsize > capacity {
        problems.push(Problem::new(
            "maxsize",
            maxsize,
            format!("1..={capacity} (the capacity)"),
        ));
    }
    let slot_size = u64f(offset_of!(RingHeader, slot_size));
    let stride = u64f(offset_of!(RingHeader, stride));
    match slot_geometry(slot_size) {
        None => problems.push(Problem::new(
            "slot_size",
            slot_size,
            format!("at most {MAX_SLOT_SIZE}"),
        )),
        Some((_, s)) if s != stride => problems.push(Problem::new(
            "stride",
            stride,
            format!("{s} (for slots of {slot_size} bytes)"),
        )),
        Some(_) => {}
    }
    if let Some(want) = ring_bytes(capacity, slot_size) {
        if want != snap.payload_len() {
            problems.push(Problem::new(
                "segment length",
                format!("{} payload bytes", snap.payload_len()),
                format!("{want} ({capacity} slots of {stride} bytes and the ring header)"),
            ));
        }
    }
    let closed = u32f(offset_of!(RingHeader, closed));
    if closed > 1 {
        problems.push(Problem::new("closed", closed, "0 or 1"));
    }
    let flags = u32f(offset_of!(RingHeader, flags));
    if flags & !FLAG_FENCES != 0 {
        problems.push(Problem::new("ring flags", format!("{flags:#x}"), "0 or 1"));
    }

    // The tail lies before the head in the segment, so a copy made in
    // address order reads it first: a consistent ring never shows more than
    // `maxsize` messages, and shows a head past the tail only when
    // consumers moved on while it was copied (by less than a lap).
    let tail = u64f(line(tail_at, offset_of!(IndexLine, value)));
    let head = u64f(line(head_at, offset_of!(IndexLine, value)));
    let d = tail.wrapping_sub(head) as i64;
    // `Some(n)`: the tail is `n` ahead of the head.
    let ahead = u64::try_from(d).ok();
    let bad = match ahead {
        Some(n) => n > maxsize,
        None => d.unsigned_abs() > capacity.min(MAX_CAPACITY),
    };
    if bad {
        problems.push(Problem::new(
            "head/tail",
            format!("head {head}, tail {tail}"),
            format!("head <= tail <= head + {maxsize} (maxsize)"),
        ));
    }
    let len = ahead.map_or(0, |n| n.min(maxsize));

    let lease = |at: usize, what: &str, problems: &mut Vec<Problem>| {
        let w = u64f(line(at, offset_of!(IndexLine, lease)));
        match lease_state_of(w) {
            Ok(l) => Some(l),
            Err(_) => {
                problems.push(Problem::new(
                    what,
                    format!("{w:#x}"),
                    "free (0), shared (1), or (1, 2 or 3) << 32 | a tid",
                ));
                None
            }
        }
    };
    let producer_lease = lease(tail_at, "producer lease", &mut problems);
    let consumer_lease = lease(head_at, "consumer lease", &mut problems);

    let sleepers = |at: usize| -> Vec<Sleeper> {
        let first = line(at, offset_of!(IndexLine, sleepers));
        (0..SLEEPER_SLOTS)
            .filter_map(|i| u64_at(b, first + 8 * i))
            .filter(|&r| is_sleeper_record(r))
            .map(|r| Sleeper {
                pid: u32::try_from(r >> 40).unwrap_or(0),
                alive: !owner::record_owner_dead(r),
            })
            .collect()
    };

    RingReport {
        ring: Some(RingState {
            capacity,
            maxsize,
            slot_size,
            stride,
            closed: closed != 0,
            head,
            tail,
            len,
            skipped_writes: u64f(offset_of!(RingHeader, skipped_writes)),
            abandoned_reads: u64f(offset_of!(RingHeader, abandoned_reads)),
            unfinished: u64f(offset_of!(RingHeader, unfinished)),
            fences: flags & FLAG_FENCES != 0,
            producer_lease,
            consumer_lease,
            sleeping_consumers: sleeper_count(u32f(offset_of!(RingHeader, get_waiters))),
            sleeping_producers: sleeper_count(u32f(offset_of!(RingHeader, put_waiters))),
            consumer_sleepers: sleepers(head_at),
            producer_sleepers: sleepers(tail_at),
        }),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Queue;
    use shmproc_shm::SegmentName;

    fn snapshot_of(name: &SegmentName) -> Snapshot {
        Snapshot::read(name.as_str(), 4096).expect("read")
    }

    #[test]
    fn a_live_queue_reads_back() {
        let name = SegmentName::unique("inspect-q");
        let q = Queue::<u64>::create(name.as_str(), 5).expect("create");
        for i in 0..3 {
            q.put(i).expect("put");
        }
        q.get().expect("get");
        let r = inspect_ring(&snapshot_of(&name));
        assert_eq!(r.problems, []);
        let s = r.ring.expect("a ring");
        assert_eq!((s.capacity, s.maxsize, s.slot_size), (8, 5, 8));
        assert_eq!((s.head, s.tail, s.len), (1, 3, 2));
        assert_eq!(s.producer_lease, Some(LeaseState::Held(owner::my_tid())));
        assert_eq!(s.consumer_lease, Some(LeaseState::Held(owner::my_tid())));
        assert!(!s.closed);
        assert_eq!(s.sleeping_consumers, 0);
        q.close();
        assert!(
            inspect_ring(&snapshot_of(&name))
                .ring
                .expect("a ring")
                .closed
        );
    }

    #[test]
    fn scribbled_fields_are_named_and_any_bytes_decode() {
        let name = SegmentName::unique("inspect-q");
        let _q = Queue::<u32>::create(name.as_str(), 4).expect("create");
        let snap = snapshot_of(&name);
        let base = snap.bytes().to_vec();
        let at = |f: usize| shmproc_shm::DATA_OFFSET + f;
        let mut bytes = base.clone();
        bytes.splice(
            at(offset_of!(RingHeader, capacity))..at(offset_of!(RingHeader, capacity)) + 8,
            3u64.to_ne_bytes(),
        );
        bytes.splice(
            at(offset_of!(RingHeader, tail))..at(offset_of!(RingHeader, tail)) + 8,
            99u64.to_ne_bytes(),
        );
        let r = inspect_ring(&Snapshot::from_bytes("x", bytes, snap.file_len()));
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"ring capacity"), "{fields:?}");
        assert!(fields.contains(&"head/tail"), "{fields:?}");

        for n in 0..=base.len() {
            let prefix = base.get(..n).expect("in range").to_vec();
            let r = inspect_ring(&Snapshot::from_bytes("x", prefix, n as u64));
            assert_eq!(
                r.ring.is_some(),
                n >= shmproc_shm::DATA_OFFSET + RING_HEADER_LEN
            );
            // A prefix claims to be the whole file: too short for the ring.
            assert_eq!(r.problems.is_empty(), n == base.len(), "{n} bytes");
        }
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            let noise: Vec<u8> = (0..base.len())
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = inspect_ring(&Snapshot::from_bytes("x", noise, x % 8192));
        }
    }
}
