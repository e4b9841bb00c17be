//! The ring's shared-memory layout: the constants, the [`RingHeader`] with
//! its two [`IndexLine`]s, the [`SlotHeader`], and the slot geometry.
//!
//! Invariants: every type here is `repr(C)` (the index lines and the header
//! `repr(C, align(128))`) of atomics only, with explicit reserved words, so
//! every bit pattern is valid; the compile-time assertions pin each offset
//! to the table in the type's docs ([`shmproc_shm::shm_safe!`]). A layout
//! change is a new [`RING_MAGIC`]. The assertions, the `ShmSafe` impls and
//! the in-segment initialisers are not built under loom (its atomics are other types, of other sizes).

use std::fmt;

use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};

use super::stamp::{EMPTY, stamp};

/// `IndexLine::lease`: nobody has operated on this side yet.
pub(super) const LEASE_FREE: u64 = 0;

/// The largest capacity of a ring (slots); positions are compared modulo
/// 2^40, so the capacity must stay far below that.
pub const MAX_CAPACITY: u64 = 1 << 30;

/// The largest payload of one slot, in bytes.
pub(crate) const MAX_SLOT_SIZE: u64 = 1 << 30;

/// `b"SHMRING\x04"`: the first word of a ring header. Version 2: plain-store
/// publish and release, tagged owner records and the fence flag (a
/// version-1 process, whose CAS protocol and untagged records assume other
/// rules, must not share a ring with a version-2 one). Version 3: the side
/// leases (`IndexLine::lease`, `IndexLine::active`; a version-2 process
/// would run the CAS protocol beside a lease holder's plain stores).
/// Version 4: `RingHeader::maxsize` (a version-3 producer would fill every
/// slot of a ring whose maxsize is smaller).
pub(crate) const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\x04");

/// Bytes of the ring header before the first slot.
pub(crate) const RING_HEADER_LEN: usize = 384;

/// Bytes of a slot's header (stamp and owner) before a small payload.
pub(crate) const SLOT_HEADER_LEN: usize = 16;

/// `RingHeader::flags` bit: a user of the ring cannot issue `membarrier`,
/// so every `wake` uses a SeqCst fence (see `Ring::heavy_fence`).
pub(crate) const FLAG_FENCES: u32 = 1;

/// Sleeper records per side, in the rest of that side's index line
/// (`IndexLine::sleepers`).
pub(crate) const SLEEPER_SLOTS: usize = 13;

/// Where the payload of a slot starts and how far apart slots are, for a
/// payload of `slot_size` bytes: payloads of up to 48 bytes share the slot
/// header's 64-byte line; larger ones start on the next line, 64-byte aligned
/// (DESIGN.md: 4K aliasing). Payloads of [`PAGE_STRIDE_MIN`] bytes or more
/// are a whole number of pages apart, so that every slot's payload has the
/// same offset in its page: with a stride of `64 + 65536`, slot `i`'s payload
/// sat `64 * i` bytes further into its page than slot 0's, so among 64
/// slots one always sat a few bytes past the user's buffer modulo 4 KiB,
/// where glibc's `memcpy` runs 25-40x slower, and the 64 KiB in-place stream
/// ran at 0.78-0.85x the minimal ring (whose slots are 64 KiB apart).
/// `None` on overflow.
pub(crate) const fn slot_geometry(slot_size: u64) -> Option<(u64, u64)> {
    if slot_size > MAX_SLOT_SIZE {
        return None;
    }
    let off = if slot_size <= 48 { 16 } else { 64 };
    let align = if slot_size >= PAGE_STRIDE_MIN {
        4096
    } else {
        64
    };
    let stride = (off + slot_size).div_ceil(align) * align;
    Some((off, stride))
}

/// The smallest payload whose slots are a whole number of pages apart
/// ([`slot_geometry`]): at most 1/4 of a slot is padding then.
pub(crate) const PAGE_STRIDE_MIN: u64 = 16384;

/// The payload bytes (after the segment header) of a ring of `capacity`
/// slots of `slot_size` bytes, or `None` when out of range.
pub(crate) const fn ring_bytes(capacity: u64, slot_size: u64) -> Option<u64> {
    if capacity == 0 || capacity > MAX_CAPACITY || !capacity.is_power_of_two() {
        return None;
    }
    let Some((_, stride)) = slot_geometry(slot_size) else {
        return None;
    };
    match capacity.checked_mul(stride) {
        Some(b) => b.checked_add(RING_HEADER_LEN as u64),
        None => None,
    }
}

/// One index on a 128-byte line of its own (a *fixed* alignment, so every
/// build has the same layout; 128 because of the adjacent-line prefetcher),
/// and the records of the processes sleeping on the side that advances it.
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `value: AtomicU64` | the index |
/// | 8 | `lease: AtomicU64` | who may run this side's operations with plain stores (see "Leases" in the module docs): 0 free, 1 shared, `1 << 32 \| tid` held, `2 << 32 \| tid` being revoked, `3 << 32 \| tid` revoked and fenced |
/// | 16 | `active: AtomicU64` | the lease holder's owner record ([`owner::my_record`](shmproc_sync::owner::my_record)) while it is inside a leased operation, else 0 |
/// | 24 | `sleepers: [AtomicU64; 13]` | owner records of registered sleepers of this side (consumers for `head`, producers for `tail`); 0: free |
///
/// Everything here is written by this side only (the records once per
/// sleep, the lease once per change of hands, `active` twice per leased
/// operation), so the other side's accesses never take the line away.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct IndexLine {
    /// The index: a position counter that only grows (by CAS, or by the
    /// lease holder's plain stores).
    pub(crate) value: AtomicU64,
    /// See the table above and [`Ring::lease`](super::Ring::lease).
    pub(crate) lease: AtomicU64,
    /// See the table above and [`Ring::lease`](super::Ring::lease).
    pub(crate) active: AtomicU64,
    /// See the table above and [`Ring::repair_sleepers`](super::Ring::repair_sleepers).
    pub(crate) sleepers: [AtomicU64; SLEEPER_SLOTS],
}

impl IndexLine {
    fn new(v: u64) -> Self {
        Self {
            value: AtomicU64::new(v),
            lease: AtomicU64::new(LEASE_FREE),
            active: AtomicU64::new(0),
            sleepers: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The shared header of a ring, at the start of the queue segment's payload.
///
/// # Layout (`repr(C, align(128))`, 384 bytes)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `magic: AtomicU64` | [`RING_MAGIC`] (checked once at open) |
/// | 8 | `capacity: AtomicU64` | slots, a power of two (checked once at open, then kept locally) |
/// | 16 | `slot_size: AtomicU64` | payload bytes per slot (idem) |
/// | 24 | `stride: AtomicU64` | bytes from one slot to the next (idem) |
/// | 32 | `closed: AtomicU32` | 1 once `close` was called |
/// | 36 | `get_seq: AtomicU32` | futex word consumers sleep on |
/// | 40 | `get_waiters: AtomicU32` | consumers registered as sleeping: bit `i` (0..13) for the one holding record `i` of `head.sleepers`, bits 16..32 count those without a record; non-zero: wake |
/// | 44 | `put_seq: AtomicU32` | futex word producers sleep on |
/// | 48 | `put_waiters: AtomicU32` | producers registered as sleeping (idem, records in `tail.sleepers`) |
/// | 52 | `join_seq: AtomicU32` | futex word `join` sleeps on |
/// | 56 | `join_waiters: AtomicU32` | joiners registered as sleeping |
/// | 60 | `flags: AtomicU32` | bit 0 ([`FLAG_FENCES`]): a user cannot issue `membarrier`; other bits 0 |
/// | 64 | `skipped_writes: AtomicU64` | positions skipped because their producer died |
/// | 72 | `abandoned_reads: AtomicU64` | messages lost because their consumer died mid-read |
/// | 80 | `unfinished: AtomicU64` | `JoinableQueue`: items put and not yet `task_done` |
/// | 88 | `queue_id: AtomicU64` | `ByteQueue`: the queue's id in its side segments' names (48 random bits, set once by the first process that needs it); 0: none yet |
/// | 96 | `maxsize: AtomicU64` | the most messages the queue holds (Python's `maxsize`): `capacity` is the smallest power of two `>= maxsize` (checked once at open, then kept locally) |
/// | 104 | reserved `[AtomicU64; 3]` | 0 |
/// | 128 | `tail: IndexLine` | next position to produce (own 128-byte line), and the sleeping producers' records |
/// | 256 | `head: IndexLine` | next position to consume (own 128-byte line), and the sleeping consumers' records |
///
/// Slots follow at offset 384, `stride` bytes apart: `stamp: AtomicU64` at
/// 0, `owner: AtomicU64` (pid and start time of the claimant) at 8, the
/// payload at 16 (payloads up to 48 bytes) or 64.
///
/// Ranges: `head <= tail <= head + maxsize` in any consistent snapshot
/// (readers tolerate and validate torn snapshots; see `Ring::room` for why
/// producers never exceed `maxsize`).
#[repr(C, align(128))]
pub struct RingHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) slot_size: AtomicU64,
    pub(crate) stride: AtomicU64,
    pub(crate) closed: AtomicU32,
    pub(crate) get_seq: AtomicU32,
    pub(crate) get_waiters: AtomicU32,
    pub(crate) put_seq: AtomicU32,
    pub(crate) put_waiters: AtomicU32,
    pub(crate) join_seq: AtomicU32,
    pub(crate) join_waiters: AtomicU32,
    pub(crate) flags: AtomicU32,
    /// Positions skipped because their producer died between claim and publish.
    pub skipped_writes: AtomicU64,
    /// Messages lost because their consumer died between claim and release.
    pub abandoned_reads: AtomicU64,
    pub(crate) unfinished: AtomicU64,
    /// See the table above (a reserved word until `ByteQueue` side segments
    /// were named after their queue).
    pub(crate) queue_id: AtomicU64,
    pub(crate) maxsize: AtomicU64,
    _reserved: [AtomicU64; 3],
    pub(crate) tail: IndexLine,
    pub(crate) head: IndexLine,
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    IndexLine (size 128, align 128) {
        value @ 0: AtomicU64,
        lease @ 8: AtomicU64,
        active @ 16: AtomicU64,
        sleepers @ 24: [AtomicU64; SLEEPER_SLOTS],
    }
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    RingHeader (size RING_HEADER_LEN, align 128) {
        magic @ 0: AtomicU64,
        capacity @ 8: AtomicU64,
        slot_size @ 16: AtomicU64,
        stride @ 24: AtomicU64,
        closed @ 32: AtomicU32,
        get_seq @ 36: AtomicU32,
        get_waiters @ 40: AtomicU32,
        put_seq @ 44: AtomicU32,
        put_waiters @ 48: AtomicU32,
        join_seq @ 52: AtomicU32,
        join_waiters @ 56: AtomicU32,
        flags @ 60: AtomicU32,
        skipped_writes @ 64: AtomicU64,
        abandoned_reads @ 72: AtomicU64,
        unfinished @ 80: AtomicU64,
        queue_id @ 88: AtomicU64,
        maxsize @ 96: AtomicU64,
        _reserved @ 104: [AtomicU64; 3],
        tail @ 128: IndexLine,
        head @ 256: IndexLine,
    }
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    SlotHeader (size SLOT_HEADER_LEN, align 8) {
        stamp @ 0: AtomicU64,
        owner @ 8: AtomicU64,
    }
}

impl RingHeader {
    /// A fresh header (for heap storage).
    pub fn new(capacity: u64, maxsize: u64, slot_size: u64, stride: u64) -> Self {
        Self {
            magic: AtomicU64::new(RING_MAGIC),
            capacity: AtomicU64::new(capacity),
            slot_size: AtomicU64::new(slot_size),
            stride: AtomicU64::new(stride),
            closed: AtomicU32::new(0),
            get_seq: AtomicU32::new(0),
            get_waiters: AtomicU32::new(0),
            put_seq: AtomicU32::new(0),
            put_waiters: AtomicU32::new(0),
            join_seq: AtomicU32::new(0),
            join_waiters: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            skipped_writes: AtomicU64::new(0),
            abandoned_reads: AtomicU64::new(0),
            unfinished: AtomicU64::new(0),
            queue_id: AtomicU64::new(0),
            maxsize: AtomicU64::new(maxsize),
            _reserved: std::array::from_fn(|_| AtomicU64::new(0)),
            tail: IndexLine::new(0),
            head: IndexLine::new(0),
        }
    }

    /// Initialises a zeroed header in a segment being created (before
    /// publication, so `Relaxed`: the segment's Release publish orders them).
    #[cfg(not(shmproc_loom))]
    pub(crate) fn init(&self, capacity: u64, maxsize: u64, slot_size: u64, stride: u64) {
        self.magic.store(RING_MAGIC, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.maxsize.store(maxsize, Ordering::Relaxed);
        self.slot_size.store(slot_size, Ordering::Relaxed);
        self.stride.store(stride, Ordering::Relaxed);
    }
}

impl fmt::Debug for RingHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingHeader")
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
            .field("maxsize", &self.maxsize.load(Ordering::Relaxed))
            .field("tail", &self.tail.value.load(Ordering::Relaxed))
            .field("head", &self.head.value.load(Ordering::Relaxed))
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The header of one slot.
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `stamp: AtomicU64` | `pos[40] pid[22] state[2]`, see the [module docs](super) |
/// | 8 | `owner: AtomicU64` | the claimant's owner record (pid and start time), a hint against pid reuse |
#[repr(C)]
#[derive(Debug)]
pub struct SlotHeader {
    pub(crate) stamp: AtomicU64,
    pub(crate) owner: AtomicU64,
}

impl SlotHeader {
    /// A slot serving position `index` (for heap storage).
    pub fn new(index: u64) -> Self {
        Self {
            stamp: AtomicU64::new(stamp(index, 0, EMPTY)),
            owner: AtomicU64::new(0),
        }
    }

    /// Initialises a zeroed slot in a segment being created.
    #[cfg(not(shmproc_loom))]
    pub(crate) fn init(&self, index: u64) {
        self.stamp.store(stamp(index, 0, EMPTY), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        assert_eq!(slot_geometry(8), Some((16, 64)));
        assert_eq!(slot_geometry(48), Some((16, 64)));
        assert_eq!(slot_geometry(49), Some((64, 128)));
        assert_eq!(slot_geometry(4096), Some((64, 4160)));
        assert_eq!(slot_geometry(MAX_SLOT_SIZE + 1), None);
        assert_eq!(ring_bytes(3, 8), None);
        assert_eq!(ring_bytes(0, 8), None);
        assert_eq!(ring_bytes(4, 8), Some(384 + 256));
    }
}
