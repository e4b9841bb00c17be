//! The lock-free bounded MPMC ring: Vyukov's per-slot sequence stamps,
//! extended with an owner pid per claim so that a crashed peer never wedges
//! the ring.
//!
//! # The algorithm
//! After Dmitry Vyukov, "Bounded MPMC queue"
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>):
//! every slot carries a *stamp* saying which position (`tail`/`head` value)
//! it currently serves, so a producer or consumer learns from the slot alone
//! whether it may use it; neither side reads the other side's index on its
//! fast path (that is what makes a process-local cached copy of the other
//! index unnecessary: the stamp *is* the up-to-date copy, on the slot's own
//! line).
//!
//! Vyukov claims a position with a CAS on the index and then owns the slot
//! implicitly. Here the claim is a CAS **on the stamp**, which records the
//! claimant's pid in the same word, so a claim is never anonymous, not even
//! for one instruction. The publish (`WRITING` to `FULL`) and the release
//! (`READING` to the next lap's `EMPTY`) are plain `Release` stores: nobody
//! else changes a live claimant's stamp (see "Crash safety"), so they need
//! no CAS. Each index is advanced after the publish or release (so that the
//! side polling the slot can take it one locked instruction sooner); anyone
//! who finds the slot at an index claimed, published or done moves that
//! index along ("helping").
//!
//! Per message, each side pays two locked instructions (its claim CAS and
//! its index advance) and, before looking for sleepers, a compiler fence
//! only: a sleeper issues `membarrier` instead (`shmproc_sync::asym`; see
//! `Ring::block`'s light first sleep). Against the same ring with CAS
//! publish/release and `SeqCst` wake checks (queue_hotpath, 64 B, 1 -> 1,
//! shared L3): 8.0-8.5 -> 10.3 M msgs/s, busy-poll ping-pong 90-132 ->
//! 88-98 ns.
//!
//! # Fast paths
//! [`Ring::try_claim_push`] and [`Ring::try_claim_pop`] first try the common
//! case inline, with one CAS on the exact expected stamp and no load before
//! it: a producer CASes `EMPTY(tail)` to `WRITING(tail, pid)`, a consumer
//! `FULL(head)` to `READING(head, pid)`. When the slot's line sits in the
//! other side's cache, that is one ownership transfer instead of a shared
//! read followed by an upgrade (in a busy-poll ping-pong, the consumer's
//! claim is then one transfer after the publish instead of two). A failed
//! CAS returns the stamp it found, and the exact answers are decided from
//! it without another access: `EMPTY(head)` is "empty", `WRITING(head)` is
//! "busy", the previous lap's stamp at the tail is "full". Every other stamp
//! goes through the validating loop (`*_slow`), which is where [`Corrupt`]
//! is decided.
//!
//! A CAS takes the line even when it fails, so retries do not repeat it:
//! [`Ring::try_claim_push_again`] and [`Ring::try_claim_pop_again`] (what
//! blocking calls use after their first attempt, and `try_get` after
//! "busy") load the stamp first and CAS only a claimable one, so a waiter
//! does not pull the line away from the side filling or draining the slot
//! (nor bounce it between several idle waiters).
//!
//! # Stamps (`u64`)
//! `pos[40] | pid[22] | state[2]`, where `pos` is a position modulo 2^40 and
//! `pos & mask` is always the slot's own index:
//!
//! | state | pid | meaning | next |
//! |---|---|---|---|
//! | `EMPTY(p)` | 0 | free for the producer of position `p` | `WRITING(p)` by a producer's CAS |
//! | `WRITING(p, pid)` | producer | claimed, payload being written | `FULL(p)` (publish), or `EMPTY(p + cap)` when a consumer finds `pid` dead (skip) |
//! | `FULL(p)` | 0 | published, waiting for the consumer of `p` | `READING(p)` by a consumer's CAS |
//! | `READING(p, pid)` | consumer | claimed, payload being read | `EMPTY(p + cap)` (release), or by a producer of `p + cap` when `pid` is dead (reclaim) |
//!
//! Any other value (a pid of 0 where one is needed, a pid where none is, a
//! position not congruent to the slot index, a position more than one lap
//! behind the index) is impossible and reported as [`Corrupt`]. Every loop is
//! bounded: each iteration either returns, or makes progress (an index
//! moves), and a loop that sees the same index too many times in a row, or
//! runs too long in total, reports [`Corrupt`] instead of spinning forever.
//!
//! # Leases
//! Most queues have one producer thread and one consumer thread, and the
//! CAS protocol's locked instructions are then pure cost: each one waits
//! for the store buffer to drain, so every message pays a cache-line
//! transfer in full (64 B, 1 -> 1: 0.41x a minimal SPSC ring). So each
//! side has a *lease* (`IndexLine::lease`): the first thread to operate on
//! a side takes it (a CAS from free), and while it holds it, it runs that
//! side with plain loads and stores (`Ring::fast_push`,
//! `Ring::fast_pop`): check the exact stamp at its index, copy the
//! payload, store the next stamp (`FULL(p)`, or `EMPTY(p + cap)`), store
//! the index. No claim stamp is written: the stamps the other side reads
//! are the same in both modes, so the other side need not know which mode
//! this one runs. A leased producer also prefetches, for writing, the
//! lines of the slot a few positions ahead, so its stores never wait.
//!
//! The first operation on a side by any other thread revokes the lease,
//! and the side is *shared* from then on, for good (a second thread on a
//! side usually means more to come; a lease that bounced between threads
//! would pay a `membarrier` per bounce). Revocation is a Dekker pair made
//! asymmetric with `membarrier` (as the sleeper check, `shmproc_sync::asym`):
//! - the holder, per operation, stores its owner record into
//!   `IndexLine::active`, issues a compiler fence, and checks that the
//!   lease is still its own; it stores 0 into `active` (`Release`) when done;
//! - the revoker CASes the lease from held to *revoking*, issues the heavy
//!   fence, CASes it to *fenced*, and from then on reads `active`: once it
//!   is 0 (`Acquire`), every store of the holder's last operation is
//!   visible, and its next operation sees the lease gone. Then the side
//!   becomes shared (CAS).
//!
//! Either the holder's lease check comes after the revoker's barrier (it
//! sees the revocation and runs the CAS protocol), or its `active` store
//! came before it (the revoker waits for the 0). A revoker that finds the
//! holder inside an operation waits a little, then reports "not now"
//! (full, or busy), and blocking calls retry; with `check_dead`, a holder
//! whose process is dead inside an operation ([`owner::record_owner_dead`]
//! on its `active` record) is passed over. A thread that finds its own
//! lease being revoked hands the side over itself. A process that cannot
//! issue `membarrier` sets [`FLAG_FENCES`], never takes a lease, and, as a
//! revoker, waits for the holder to hand the side over at its next
//! operation, or to end ([`owner::tid_gone`]).
//!
//! Identity is the kernel tid (cached per thread, refreshed after a fork):
//! two threads never share one, a forked child's thread has its own, and a
//! tid reused by a new thread after the holder ended may take the lease
//! over (the old holder is in no operation). The CAS protocol runs only
//! while the side is shared or by the holder itself (every entry to it
//! asks `Ring::lease` first), never beside a holder's plain stores.
//!
//! What a dead holder leaves is what the CAS protocol already repairs: a
//! producer killed before its publish leaves the slot `EMPTY` (nothing was
//! sent, the next producer writes the position again), after it the tail
//! one behind a `FULL` stamp (helped along, as a claimed position is). A
//! consumer killed before its release leaves the message published: the
//! next consumer takes it (it was never returned to anyone, so nothing is
//! lost, where the CAS protocol loses the message of a consumer killed
//! mid-read); after it, the head one behind (helped along).
//!
//! # Crash safety
//! - A producer that dies between its claim and its publish leaves
//!   `WRITING(p, pid)`; a consumer that waits on it checks (only after
//!   spinning, and then once per sleep slice) whether `pid` is alive, with the
//!   start time recorded in the slot's `owner` word against pid reuse; if it is
//!   dead, the consumer skips the position (counted in
//!   [`RingHeader::skipped_writes`]).
//! - **A live claimant is never judged dead**, which is what lets publish
//!   and release be plain stores. A claimant is dead when no process has its
//!   pid (or it is a zombie), or when the slot's owner record was written
//!   *for this claim* and the pid's start time differs (the pid was reused).
//!   The record is stored right after the claim CAS, so for a few
//!   instructions it is missing or left over from an earlier claim; it is
//!   therefore tagged with the claim's lap (`pos >> log2(capacity)`, 10
//!   bits) and counts only when the tag matches
//!   ([`owner::tagged_owner_dead`]). A stale record (another lap, or
//!   another pid) proves nothing, and the claimant is taken to be alive.
//!   Before its store, publish (and release) still checks that the stamp is
//!   its own claim, so a corrupt peer's write is reported (not sent /
//!   [`Corrupt`]) instead of overwritten, but for the instant between that
//!   load and the store. Processes that share a ring must share a pid
//!   namespace (true of every liveness check here).
//! - A consumer that dies between its claim and its release loses the message
//!   it held; the producer of the next lap finds `READING(p, pid)` with `pid`
//!   dead, reclaims the slot and counts it in
//!   [`RingHeader::abandoned_reads`].
//! - A process killed while asleep in a blocking call leaves its sleeper
//!   registration counted, and every publish (or release) on the other side
//!   would then make a futex call for nobody. So a sleeper registers as a
//!   bit of the waiters word standing for its owner record in its side's
//!   index line (`IndexLine::sleepers`); a waker whose wakes woke nobody
//!   `REPAIR_AFTER` (256) times in a row clears the bits of records whose
//!   owners are dead (`Ring::repair_sleepers`).

#![deny(clippy::indexing_slicing)]

use std::fmt;

use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};
use shmproc_sync::futex::{self, Deadline, SLICE, Spin};
use shmproc_sync::{asym, owner};

use crate::error::Corrupt;

/// The largest capacity of a ring (slots); positions are compared modulo
/// 2^40, so the capacity must stay far below that.
pub const MAX_CAPACITY: u64 = 1 << 30;

/// The largest payload of one slot, in bytes.
pub const MAX_SLOT_SIZE: u64 = 1 << 30;

/// `b"SHMRING\x03"`: the first word of a ring header. Version 2: plain-store
/// publish and release, tagged owner records and the fence flag (a
/// version-1 process, whose CAS protocol and untagged records assume other
/// rules, must not share a ring with a version-2 one). Version 3: the side
/// leases (`IndexLine::lease`, `IndexLine::active`; a version-2 process
/// would run the CAS protocol beside a lease holder's plain stores).
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\x03");

/// Bytes of the ring header before the first slot.
pub const RING_HEADER_LEN: usize = 384;

/// Bytes of a slot's header (stamp and owner) before a small payload.
pub const SLOT_HEADER_LEN: usize = 16;

/// `RingHeader::flags` bit: a user of the ring cannot issue `membarrier`,
/// so every `wake` uses a SeqCst fence (see `Ring::heavy_fence`).
pub const FLAG_FENCES: u32 = 1;

/// The state bits of a stamp.
pub(crate) const EMPTY: u64 = 0;
pub(crate) const WRITING: u64 = 1;
pub(crate) const FULL: u64 = 2;
pub(crate) const READING: u64 = 3;

const STATE_BITS: u32 = 2;
const PID_BITS: u32 = 22;
const POS_SHIFT: u32 = STATE_BITS + PID_BITS;
const POS_BITS: u32 = 64 - POS_SHIFT;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const PID_MASK: u64 = (1 << PID_BITS) - 1;

/// Iterations of one operation that see the same index value before it
/// reports [`Corrupt`] (legitimately, a handful).
#[cfg(not(shmproc_loom))]
const STUCK_LIMIT: u32 = 10_000;
#[cfg(shmproc_loom)]
const STUCK_LIMIT: u32 = 8;
/// Pauses between the spinning attempts of a producer waiting for room
/// (a consumer waiting for a message pauses once: it polls for latency). A
/// full ring frees up only as fast as its consumer releases slots, and every
/// look at the slot being drained pulls its line away from that consumer.
/// In queue_compare A/B runs (64 B, 1 -> 1, blocking put/get) this was worth
/// a few percent of throughput, within the machine's noise; the producer
/// spins about 4x longer (some 10 us) before it sleeps.
const PUT_PAUSES: u32 = 4;

/// The most pauses of a blocking get's back-off after it found the head
/// position claimed and not yet published ([`Ring::busy_backoff`]; a pause
/// is about 23 ns here, so about 1.5 us).
const BUSY_PAUSES_MAX: u32 = 64;

/// Sleeper records per side, in the rest of that side's index line
/// (`IndexLine::sleepers`).
pub const SLEEPER_SLOTS: usize = 13;

/// The bits of a waiters word that stand for sleeper records (bit `i`:
/// record `i` is registered).
const TRACKED_MASK: u32 = (1 << SLEEPER_SLOTS) - 1;
/// Where a waiters word counts the sleepers registered without a record.
const UNTRACKED_SHIFT: u32 = 16;
const UNTRACKED_ONE: u32 = 1 << UNTRACKED_SHIFT;
/// A sleeper record being repaired (see `Ring::repair_sleepers`): its pid
/// field, 2^24 - 1, is beyond any pid, so it is never taken for free nor
/// for a live sleeper's.
const REPAIRING: u64 = u64::MAX;

/// Wakes in a row that found a registered sleeper count but woke nobody
/// before a waker checks the registered sleepers' liveness
/// ([`Ring::repair_sleepers`]): a futex wake costs about a microsecond, so a
/// count left by a killed sleeper costs some 0.3 ms of system calls before
/// it is repaired, and a `/proc` read per record at most every 256 wakes.
const REPAIR_AFTER: u32 = 256;

/// Iterations of one operation in total before it reports [`Corrupt`].
const TOTAL_LIMIT: u32 = 1 << 20;

/// Encodes a stamp.
#[inline]
pub(crate) const fn stamp(pos: u64, pid: u32, state: u64) -> u64 {
    ((pos & POS_MASK) << POS_SHIFT) | ((pid as u64 & PID_MASK) << STATE_BITS) | state
}

/// A decoded stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) pos: u64,
    pub(crate) pid: u32,
    pub(crate) state: u64,
}

#[inline]
pub(crate) const fn decode(s: u64) -> Stamp {
    Stamp {
        pos: s >> POS_SHIFT,
        pid: ((s >> STATE_BITS) & PID_MASK) as u32,
        state: s & ((1 << STATE_BITS) - 1),
    }
}

/// Whether `s` is `WRITING(p, pid)` for some pid other than 0.
#[inline]
const fn is_writing_at(s: u64, p: u64) -> bool {
    let st = decode(s);
    st.state == WRITING && st.pid != 0 && st.pos == p & POS_MASK
}

/// `a - b` for positions modulo 2^40, sign-extended.
#[inline]
pub(crate) const fn lap_diff(a: u64, b: u64) -> i64 {
    let d = a.wrapping_sub(b) & POS_MASK;
    ((d << POS_SHIFT) as i64) >> POS_SHIFT
}

/// Where the payload of a slot starts and how far apart slots are, for a
/// payload of `slot_size` bytes: payloads of up to 48 bytes share the slot
/// header's 64-byte line; larger ones start on the next line, 64-byte aligned
/// (DESIGN.md: 4K aliasing). `None` on overflow.
pub const fn slot_geometry(slot_size: u64) -> Option<(u64, u64)> {
    if slot_size > MAX_SLOT_SIZE {
        return None;
    }
    let off = if slot_size <= 48 { 16 } else { 64 };
    let stride = (off + slot_size).div_ceil(64) * 64;
    Some((off, stride))
}

/// The payload bytes (after the segment header) of a ring of `capacity`
/// slots of `slot_size` bytes, or `None` when out of range.
pub const fn ring_bytes(capacity: u64, slot_size: u64) -> Option<u64> {
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
/// | 16 | `active: AtomicU64` | the lease holder's owner record ([`owner::my_record`]) while it is inside a leased operation, else 0 |
/// | 24 | `sleepers: [AtomicU64; 13]` | owner records of registered sleepers of this side (consumers for `head`, producers for `tail`); 0: free |
///
/// Everything here is written by this side only (the records once per
/// sleep, the lease once per change of hands, `active` twice per leased
/// operation), so the other side's accesses never take the line away.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct IndexLine {
    /// The index: a position counter that only grows (by CAS, or by the
    /// lease holder's plain stores).
    pub(crate) value: AtomicU64,
    /// See the table above and [`Ring::lease`].
    pub(crate) lease: AtomicU64,
    /// See the table above and [`Ring::lease`].
    pub(crate) active: AtomicU64,
    /// See the table above and [`Ring::repair_sleepers`].
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
/// | 88 | reserved `[AtomicU64; 5]` | 0 |
/// | 128 | `tail: IndexLine` | next position to produce (own 128-byte line), and the sleeping producers' records |
/// | 256 | `head: IndexLine` | next position to consume (own 128-byte line), and the sleeping consumers' records |
///
/// Slots follow at offset 384, `stride` bytes apart: `stamp: AtomicU64` at
/// 0, `owner: AtomicU64` (pid and start time of the claimant) at 8, the
/// payload at 16 (payloads up to 48 bytes) or 64.
///
/// Ranges: `head <= tail <= head + capacity` in any consistent snapshot
/// (readers tolerate and validate torn snapshots).
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
    _reserved: [AtomicU64; 5],
    pub(crate) tail: IndexLine,
    pub(crate) head: IndexLine,
}

#[cfg(not(shmproc_loom))]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RingHeader>() == RING_HEADER_LEN);
    assert!(align_of::<RingHeader>() == 128);
    assert!(offset_of!(RingHeader, magic) == 0);
    assert!(offset_of!(RingHeader, capacity) == 8);
    assert!(offset_of!(RingHeader, slot_size) == 16);
    assert!(offset_of!(RingHeader, stride) == 24);
    assert!(offset_of!(RingHeader, closed) == 32);
    assert!(offset_of!(RingHeader, get_seq) == 36);
    assert!(offset_of!(RingHeader, get_waiters) == 40);
    assert!(offset_of!(RingHeader, put_seq) == 44);
    assert!(offset_of!(RingHeader, put_waiters) == 48);
    assert!(offset_of!(RingHeader, join_seq) == 52);
    assert!(offset_of!(RingHeader, join_waiters) == 56);
    assert!(offset_of!(RingHeader, flags) == 60);
    assert!(offset_of!(RingHeader, skipped_writes) == 64);
    assert!(offset_of!(RingHeader, abandoned_reads) == 72);
    assert!(offset_of!(RingHeader, unfinished) == 80);
    assert!(offset_of!(RingHeader, tail) == 128);
    assert!(offset_of!(RingHeader, head) == 256);
    assert!(size_of::<IndexLine>() == 128);
    assert!(offset_of!(IndexLine, lease) == 8);
    assert!(offset_of!(IndexLine, active) == 16);
    assert!(offset_of!(IndexLine, sleepers) == 24);
    assert!(size_of::<SlotHeader>() == SLOT_HEADER_LEN);
    assert!(offset_of!(SlotHeader, stamp) == 0);
    assert!(offset_of!(SlotHeader, owner) == 8);
};

// SAFETY: repr(C, align(128)) of std atomics only, with explicit reserved
// words and no implicit padding (size asserted above), valid for every bit
// pattern, no pointers, no Drop.
#[cfg(not(shmproc_loom))]
#[allow(unsafe_code)]
unsafe impl shmproc_shm::ShmSafe for RingHeader {}
// SAFETY: repr(C) of two std atomics (asserted 16 bytes), as above.
#[cfg(not(shmproc_loom))]
#[allow(unsafe_code)]
unsafe impl shmproc_shm::ShmSafe for SlotHeader {}

impl RingHeader {
    /// A fresh header (for heap storage).
    pub fn new(capacity: u64, slot_size: u64, stride: u64) -> Self {
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
            _reserved: std::array::from_fn(|_| AtomicU64::new(0)),
            tail: IndexLine::new(0),
            head: IndexLine::new(0),
        }
    }

    /// Initialises a zeroed header in a segment being created (before
    /// publication, so `Relaxed`: the segment's Release publish orders them).
    #[cfg(not(shmproc_loom))]
    pub(crate) fn init(&self, capacity: u64, slot_size: u64, stride: u64) {
        self.magic.store(RING_MAGIC, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.slot_size.store(slot_size, Ordering::Relaxed);
        self.stride.store(stride, Ordering::Relaxed);
    }
}

impl fmt::Debug for RingHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingHeader")
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
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
/// | 0 | `stamp: AtomicU64` | `pos[40] pid[22] state[2]`, see the [module docs](self) |
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

/// Where a ring's header and slots live: a shared-memory segment, or the
/// heap (for loom and single-process use). Implementations take the index
/// modulo the capacity themselves, so any index is in bounds.
pub trait Storage {
    /// The ring header.
    fn header(&self) -> &RingHeader;
    /// The capacity, validated when the storage was made (never re-read).
    fn capacity(&self) -> u64;
    /// Payload bytes per slot, validated when the storage was made.
    fn slot_size(&self) -> usize;
    /// The header of slot `index & (capacity - 1)`.
    fn slot(&self, index: u64) -> &SlotHeader;
    /// Copies `src` into the payload of slot `index` at `offset` (clamped to
    /// the slot size).
    fn write_payload(&self, index: u64, offset: usize, src: &[u8]);
    /// Copies the payload of slot `index` from `offset` into `dst` (clamped).
    fn read_payload(&self, index: u64, offset: usize, dst: &mut [u8]);
    /// A pointer to the payload of slot `index` (`slot_size` bytes, aligned
    /// to 16), for zero-copy access by the holder of the slot's claim.
    fn payload_ptr(&self, index: u64) -> *mut u8;
    /// A hint: start fetching, for writing, the payload line of slot
    /// `index` when it is not the slot header's line. No effect on memory.
    #[inline]
    fn prefetch_payload(&self, index: u64) {
        let _ = index;
    }
    /// A hint: start fetching, for writing, the header line of slot
    /// `index`. No effect on memory.
    #[inline]
    fn prefetch_header(&self, index: u64) {
        let _ = index;
    }
}

/// The outcome of [`Ring::try_claim_push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// This position is ours to write, then [`Ring::publish`].
    Claimed(Claim),
    /// The slot of the next position still holds the previous lap (full),
    /// or another thread's lease of the producers' side is being revoked
    /// and its holder is inside a put (module docs, "Leases"): no room now.
    Full,
}

/// The outcome of [`Ring::try_claim_pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop {
    /// This position is ours to read, then [`Ring::release`].
    Claimed(Claim),
    /// Nothing was published at the head position: empty.
    Empty,
    /// The head position is claimed by a live producer still writing it,
    /// or another thread's lease of the consumers' side is being revoked
    /// and its holder is inside a get (module docs, "Leases").
    Busy,
}

/// A claimed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pos: u64,
    pid: u32,
}

impl Claim {
    /// The claimed position.
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

/// Counts the iterations of one operation; see [`STUCK_LIMIT`].
struct Guard {
    last: u64,
    stuck: u32,
    total: u32,
    forward: u64,
}

impl Guard {
    fn new() -> Self {
        Self {
            last: u64::MAX,
            stuck: 0,
            total: 0,
            forward: 0,
        }
    }

    fn observe(&mut self, index: u64, what: &'static str) -> Result<(), Corrupt> {
        self.total += 1;
        if index == self.last {
            self.stuck += 1;
            if self.stuck > STUCK_LIMIT {
                return Err(Corrupt::new(what, index));
            }
            spin_loop();
        } else {
            self.stuck = 0;
            self.last = index;
        }
        if self.total > TOTAL_LIMIT {
            return Err(Corrupt::new(what, index));
        }
        Ok(())
    }
}

/// Which side of the ring a blocking call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Consumers, waiting for a message.
    Get,
    /// Producers, waiting for a free slot.
    Put,
}

/// The ring algorithm over a [`Storage`].
///
/// The capacity, mask and slot size are copied from the storage once and
/// never re-read from shared memory; every slot index is `pos & mask`.
#[derive(Debug)]
pub struct Ring<S> {
    storage: S,
    cap: u64,
    mask: u64,
    /// `log2(cap)`: `pos >> lap_shift` is the lap of a position, the tag of
    /// its claim's owner record.
    lap_shift: u32,
    slot_size: usize,
    joinable: bool,
    /// Pauses of the next [`busy_backoff`](Self::busy_backoff) (this
    /// handle's, never shared: a heuristic with no part in correctness).
    busy_pauses: std::sync::atomic::AtomicU32,
    /// Per side (`Side::Get`, `Side::Put`), this handle's wakes in a row
    /// that woke nobody (see [`REPAIR_AFTER`]; never shared).
    idle_wakes: [std::sync::atomic::AtomicU32; 2],
}

impl<S: Storage> Ring<S> {
    /// A ring over `storage` (which validated its capacity). `joinable`:
    /// skipping a dead producer's position also un-counts its task.
    ///
    /// # Panics
    /// When the storage's capacity is not a power of two in
    /// `1..=MAX_CAPACITY` (a storage bug: storages validate it).
    pub fn new(storage: S, joinable: bool) -> Self {
        let cap = storage.capacity();
        assert!(
            cap.is_power_of_two() && cap <= MAX_CAPACITY,
            "storage capacity must be a validated power of two"
        );
        let slot_size = storage.slot_size();
        Self {
            storage,
            cap,
            mask: cap - 1,
            lap_shift: cap.trailing_zeros(),
            slot_size,
            joinable,
            busy_pauses: std::sync::atomic::AtomicU32::new(1),
            idle_wakes: std::array::from_fn(|_| std::sync::atomic::AtomicU32::new(0)),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub(crate) fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The ring header.
    #[inline]
    pub fn header(&self) -> &RingHeader {
        self.storage.header()
    }

    /// The capacity (local copy).
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// Payload bytes per slot (local copy).
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    #[inline]
    fn slot(&self, pos: u64) -> &SlotHeader {
        self.storage.slot(pos & self.mask)
    }

    /// Decodes and validates a stamp read from slot `pos & mask`.
    #[inline]
    fn check(&self, s: u64, pos: u64) -> Result<Stamp, Corrupt> {
        let st = decode(s);
        let index_ok = (st.pos ^ pos) & self.mask == 0;
        let pid_ok = match st.state {
            EMPTY | FULL => st.pid == 0,
            _ => st.pid != 0,
        };
        if index_ok && pid_ok {
            Ok(st)
        } else {
            Err(Corrupt::new("slot stamp", s))
        }
    }

    fn cap_i(&self) -> i64 {
        self.cap as i64
    }

    /// Moves `index` from `p` to `p + 1` if it is still `p`.
    #[inline]
    fn advance(&self, index: &AtomicU64, p: u64) -> bool {
        // AcqRel: the Release half publishes what this thread saw or did to
        // the stamp of position `p` (its publish or release, or the claimed
        // or done stamp it read with Acquire before helping) to every Acquire
        // load of the index in try_claim_push/try_claim_pop; the Acquire half
        // (and the Acquire failure ordering) pairs with the previous advance.
        index
            .compare_exchange(p, p.wrapping_add(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the claimant of stamp `st` (a `WRITING` or `READING` stamp
    /// of `slot`) may be alive: `false` only when it is certainly dead (see
    /// [`owner::tagged_owner_dead`]: the owner record counts only when it
    /// was written for this very claim, its tag being the claim's lap).
    fn alive(&self, st: Stamp, slot: &SlotHeader) -> bool {
        // Relaxed: a record not yet visible is one that does not name this
        // claim, which proves nothing (the claimant is taken to be alive).
        let rec = slot.owner.load(Ordering::Relaxed);
        !owner::tagged_owner_dead(st.pid, rec, st.pos >> self.lap_shift)
    }

    /// Claims the next position to write, without blocking. With
    /// `check_dead`, a slot still held by a consumer of the previous lap
    /// is reclaimed when that consumer is dead (a `/proc` read).
    ///
    /// # Errors
    /// [`Corrupt`] when the stamps or the index are inconsistent.
    #[inline]
    pub fn try_claim_push(&self, check_dead: bool) -> Result<Push, Corrupt> {
        // Fast path (module docs): the slot of the tail position is EMPTY
        // for it (the common case). A single CAS with the expected stamp,
        // instead of a load and then a CAS: when the slot's line sits in
        // another CPU's cache (its consumer released it), that is one
        // ownership transfer instead of a shared read followed by an
        // upgrade. Only the exact expected stamp is claimed; the previous
        // lap's stamp is "full"; anything else (helped, dead consumer,
        // corrupt) goes through the validating loop.
        if self.lease(Side::Put, check_dead)? == Lease::Wait {
            return Ok(Push::Full);
        }
        let hdr = self.header();
        // Acquire: pairs with the Release half of `advance` (what moved the
        // tail past position p - 1 happened before), as in
        // `try_claim_push_slow`.
        let p = hdr.tail.value.load(Ordering::Acquire);
        let slot = self.slot(p);
        let me = owner::my_pid();
        // AcqRel (success): Acquire pairs with the consumer's release (or a
        // reclaim) that stored EMPTY(p), so its payload reads happen before
        // our writes; Release: the claim is what `advance` publishes to index
        // readers. Relaxed (failure): the value found only decides "full"
        // (no payload access follows); the slow path reloads with Acquire.
        match slot.stamp.compare_exchange(
            stamp(p, 0, EMPTY),
            stamp(p, me, WRITING),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                self.claimed(slot, p);
                // The next put's payload line, while nobody touches it (a
                // consumer reads it only once that put is published).
                self.storage.prefetch_payload(p.wrapping_add(1) & self.mask);
                return Ok(Push::Claimed(Claim { pos: p, pid: me }));
            }
            // The previous lap still holds the slot (published, or claimed
            // by a live consumer): full, as the slow path would say.
            Err(s) if self.previous_lap_busy(s, p, check_dead) => return Ok(Push::Full),
            Err(_) => {}
        }
        self.try_claim_push_slow(check_dead)
    }

    /// [`try_claim_push`](Self::try_claim_push) for a retry (after
    /// [`Push::Full`]): loads the stamp first and CASes only a claimable
    /// one, so a producer waiting on a full ring does not take the slot's
    /// line away from the consumer reading it (see the module docs).
    ///
    /// # Errors
    /// As [`try_claim_push`](Self::try_claim_push).
    #[inline]
    pub fn try_claim_push_again(&self, check_dead: bool) -> Result<Push, Corrupt> {
        if self.lease(Side::Put, check_dead)? == Lease::Wait {
            return Ok(Push::Full);
        }
        self.try_claim_push_slow(check_dead)
    }

    /// Whether stamp `s`, found in the slot of tail position `p`, is the
    /// previous lap's, still published or claimed (by a consumer taken to be
    /// alive unless `check_dead`).
    #[inline]
    fn previous_lap_busy(&self, s: u64, p: u64, check_dead: bool) -> bool {
        match self.check(s, p) {
            Ok(st) if lap_diff(st.pos, p) == -self.cap_i() => match st.state {
                FULL | WRITING => true,
                READING => !check_dead,
                _ => false,
            },
            _ => false,
        }
    }

    /// Records this process as the owner of a slot it just claimed (a
    /// liveness hint). The store is unconditional: the claim CAS just took
    /// the slot's line for writing, so it costs no coherence traffic, and
    /// between two processes the record alternates anyway. The index is
    /// advanced later, by `publish` or `release`.
    #[inline]
    fn claimed(&self, slot: &SlotHeader, pos: u64) {
        // Not modelled under loom: a liveness hint only.
        #[cfg(not(shmproc_loom))]
        slot.owner.store(
            owner::my_tagged_record((pos & POS_MASK) >> self.lap_shift),
            Ordering::Relaxed,
        );
        #[cfg(shmproc_loom)]
        let _ = (slot, pos);
    }

    /// The validating loop of [`try_claim_push`](Self::try_claim_push).
    #[cold]
    #[inline(never)]
    fn try_claim_push_slow(&self, check_dead: bool) -> Result<Push, Corrupt> {
        let me = owner::my_pid();
        let hdr = self.header();
        let mut guard = Guard::new();
        loop {
            // Acquire: pairs with the Release half of `advance`, which runs
            // only after the position's stamp was claimed; the stamp read
            // below is therefore at least that claim.
            let p = hdr.tail.value.load(Ordering::Acquire);
            guard.observe(p, "tail index")?;
            let slot = self.slot(p);
            // Acquire: pairs with the consumer's release (or a reclaim) that
            // stored EMPTY(p): its reads of the payload happen before our writes.
            let s = slot.stamp.load(Ordering::Acquire);
            let st = self.check(s, p)?;
            let d = lap_diff(st.pos, p);
            if d == 0 {
                if st.state == EMPTY {
                    let claimed = stamp(p, me, WRITING);
                    // Acquire (success): as the load above. Release: the
                    // claim is what `advance` publishes to index readers.
                    if slot
                        .stamp
                        .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.claimed(slot, p);
                        self.storage.prefetch_payload(p.wrapping_add(1) & self.mask);
                        return Ok(Push::Claimed(Claim { pos: p, pid: me }));
                    }
                } else {
                    // Claimed by someone else: help the index along.
                    self.advance(&hdr.tail.value, p);
                }
            } else if d > 0 {
                // Position p is long done (a dead producer's position was
                // skipped before anyone advanced the tail), or our index read
                // is stale. Bounded: a corrupt stamp must not run the index away.
                if self.advance(&hdr.tail.value, p) {
                    guard.forward += 1;
                    if guard.forward > self.cap {
                        return Err(Corrupt::new("slot stamp ahead of tail", s));
                    }
                }
            } else if d == -self.cap_i() {
                match st.state {
                    // The consumer of the previous lap died mid-read.
                    // AcqRel: Acquire as the stamp load; Release orders
                    // nothing (the message is lost) but keeps the CAS
                    // symmetric with `release`.
                    READING
                        if check_dead
                            && !self.alive(st, slot)
                            && slot
                                .stamp
                                .compare_exchange(
                                    s,
                                    stamp(p, 0, EMPTY),
                                    Ordering::AcqRel,
                                    Ordering::Relaxed,
                                )
                                .is_ok() =>
                    {
                        hdr.abandoned_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    READING | WRITING | FULL => return Ok(Push::Full),
                    // EMPTY one lap behind the tail: the tail passed an
                    // unclaimed position. Impossible unless corrupt; the
                    // guard reports it if it persists.
                    _ => {}
                }
            } else {
                return Err(Corrupt::new("slot stamp behind tail", s));
            }
        }
    }

    /// Publishes a claimed position. Returns `false` when the slot is no
    /// longer ours (see the module docs: only a corrupt peer takes a live
    /// claimant's slot): the message was **not** sent.
    #[inline]
    pub fn publish(&self, claim: Claim) -> bool {
        let slot = self.slot(claim.pos);
        // A plain store, not a CAS: nobody else changes a live claimant's
        // stamp (module docs, "Crash safety"). The load checks that (a
        // corrupt peer's write); it reads our own line, so it is cheap.
        // Relaxed: the value only decides whether to store.
        let ok = slot.stamp.load(Ordering::Relaxed) == stamp(claim.pos, claim.pid, WRITING);
        if ok {
            // Release: pairs with the consumer's Acquire stamp load (or
            // claim CAS), publishing the payload. The store-load ordering
            // against a sleeping consumer's registration is `wake`'s light
            // fence, paired with the heavy one in `block`.
            slot.stamp
                .store(stamp(claim.pos, 0, FULL), Ordering::Release);
        }
        // Position p is done on the producers' side either way (published,
        // or skipped by a consumer that took us for dead): move the tail past
        // it unless a helper did. Only now, not at the claim: the consumer
        // polling this slot can take it one locked instruction sooner, and
        // producers that find the slot claimed meanwhile help the tail along.
        self.advance(&self.header().tail.value, claim.pos);
        self.wake(Side::Get);
        ok
    }

    /// Claims the next position to read, without blocking. With
    /// `check_dead`, a position whose producer is dead is skipped (a `/proc`
    /// read; callers spin a little before asking for it).
    ///
    /// # Errors
    /// [`Corrupt`] when the stamps or the index are inconsistent.
    #[inline]
    pub fn try_claim_pop(&self, check_dead: bool) -> Result<Pop, Corrupt> {
        // Fast path (module docs): one load of the head and one CAS of its
        // slot's stamp from FULL(p) (published: claim it). The stamp the CAS
        // found decides EMPTY(p) (nothing published: empty) and WRITING(p)
        // (busy, unless the caller wants the producer's liveness checked);
        // anything else goes through the validating loop.
        if self.lease(Side::Get, check_dead)? == Lease::Wait {
            return Ok(Pop::Busy);
        }
        let hdr = self.header();
        // Acquire: pairs with the Release half of `advance`, as in
        // `try_claim_pop_slow`.
        let p = hdr.head.value.load(Ordering::Acquire);
        let slot = self.slot(p);
        let me = owner::my_pid();
        // AcqRel (success): Acquire pairs with the producer's publish
        // (Release/SeqCst), so its payload writes happen before our reads;
        // Release publishes the claim to `advance` helpers. Relaxed
        // (failure): the value found only decides "empty" or "busy" (no
        // payload access follows); the slow path reloads with Acquire.
        match slot.stamp.compare_exchange(
            stamp(p, 0, FULL),
            stamp(p, me, READING),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                self.claimed(slot, p);
                return Ok(Pop::Claimed(Claim { pos: p, pid: me }));
            }
            Err(s) if s == stamp(p, 0, EMPTY) => return Ok(Pop::Empty),
            // A producer is writing it: busy (its liveness is the slow
            // path's business).
            Err(s) if !check_dead && is_writing_at(s, p) => return Ok(Pop::Busy),
            Err(_) => {}
        }
        self.try_claim_pop_slow(check_dead)
    }

    /// [`try_claim_pop`](Self::try_claim_pop) for a retry (after
    /// [`Pop::Empty`] or [`Pop::Busy`]): loads the stamp first and CASes
    /// only a published one, so a consumer waiting on a position being
    /// written does not take the slot's line away from its producer again
    /// (see the module docs).
    ///
    /// # Errors
    /// As [`try_claim_pop`](Self::try_claim_pop).
    #[inline]
    pub fn try_claim_pop_again(&self, check_dead: bool) -> Result<Pop, Corrupt> {
        if self.lease(Side::Get, check_dead)? == Lease::Wait {
            return Ok(Pop::Busy);
        }
        self.try_claim_pop_slow(check_dead)
    }

    /// The validating loop of [`try_claim_pop`](Self::try_claim_pop).
    #[cold]
    #[inline(never)]
    fn try_claim_pop_slow(&self, check_dead: bool) -> Result<Pop, Corrupt> {
        let me = owner::my_pid();
        let hdr = self.header();
        let mut guard = Guard::new();
        loop {
            // Acquire: pairs with the Release half of `advance` (see
            // try_claim_push_slow).
            let p = hdr.head.value.load(Ordering::Acquire);
            guard.observe(p, "head index")?;
            let slot = self.slot(p);
            // Acquire: pairs with the producer's publish (Release/SeqCst),
            // so its payload writes happen before our reads.
            let s = slot.stamp.load(Ordering::Acquire);
            let st = self.check(s, p)?;
            let d = lap_diff(st.pos, p);
            if d == 0 {
                match st.state {
                    FULL => {
                        let claimed = stamp(p, me, READING);
                        // AcqRel: Acquire as the load above; Release publishes
                        // the claim to `advance` helpers.
                        if slot
                            .stamp
                            .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            self.claimed(slot, p);
                            return Ok(Pop::Claimed(Claim { pos: p, pid: me }));
                        }
                    }
                    READING => {
                        self.advance(&hdr.head.value, p);
                    }
                    EMPTY => return Ok(Pop::Empty),
                    _ => {
                        if !check_dead || self.alive(st, slot) {
                            return Ok(Pop::Busy);
                        }
                        // The producer died between claim and publish: skip
                        // the position and free the slot for the next lap.
                        // AcqRel: Release hands the slot to the producer of
                        // p + cap (its Acquire stamp load).
                        let next = stamp(p.wrapping_add(self.cap), 0, EMPTY);
                        if slot
                            .stamp
                            .compare_exchange(s, next, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            hdr.skipped_writes.fetch_add(1, Ordering::Relaxed);
                            if self.joinable {
                                let _ = uncount(hdr);
                            }
                            self.advance(&hdr.head.value, p);
                            self.wake(Side::Put);
                        }
                    }
                }
            } else if d > 0 {
                // Position p is done (skipped by a consumer that died before
                // advancing the head), or our read is stale. Bounded as in
                // try_claim_push.
                if self.advance(&hdr.head.value, p) {
                    guard.forward += 1;
                    if guard.forward > self.cap {
                        return Err(Corrupt::new("slot stamp ahead of head", s));
                    }
                }
            } else if d == -self.cap_i() {
                if st.state == READING {
                    // A consumer of the previous lap still reads this slot:
                    // position p cannot have been produced yet.
                    return Ok(Pop::Empty);
                }
                // Otherwise the head passed a position never consumed:
                // impossible unless corrupt; the guard reports it if it persists.
            } else {
                return Err(Corrupt::new("slot stamp behind head", s));
            }
        }
    }

    /// Releases a position claimed by [`try_claim_pop`](Self::try_claim_pop)
    /// once its payload has been read. Returns `false` when the slot is no
    /// longer ours (only a corrupt peer takes it, see [`publish`](Self::publish)):
    /// what was read may be torn and must be discarded.
    #[inline]
    pub fn release(&self, claim: Claim) -> bool {
        let slot = self.slot(claim.pos);
        // A plain store, checked first, as in `publish`. Relaxed: the value
        // only decides whether to store.
        let ok = slot.stamp.load(Ordering::Relaxed) == stamp(claim.pos, claim.pid, READING);
        if ok {
            // Release: pairs with the next-lap producer's Acquire stamp load
            // (or claim CAS): our payload reads happen before its writes.
            slot.stamp.store(
                stamp(claim.pos.wrapping_add(self.cap), 0, EMPTY),
                Ordering::Release,
            );
        }
        // Position p is done on the consumers' side either way: move the
        // head past it unless a helper did (only now, as the tail in
        // `publish`: a producer waiting for this slot can take it one locked
        // instruction sooner; consumers that find it claimed help the head).
        self.advance(&self.header().head.value, claim.pos);
        self.wake(Side::Put);
        ok
    }

    /// Copies `src` into a claimed slot (clamped to the slot size).
    #[inline]
    pub fn write(&self, claim: &Claim, offset: usize, src: &[u8]) {
        self.storage
            .write_payload(claim.pos & self.mask, offset, src);
    }

    /// Copies a claimed slot's payload into `dst` (clamped to the slot size).
    #[inline]
    pub fn read(&self, claim: &Claim, offset: usize, dst: &mut [u8]) {
        self.storage
            .read_payload(claim.pos & self.mask, offset, dst);
    }

    /// For a sweep: the position of slot `index` when it holds a published
    /// record (`FULL`) or one being read by a live consumer (`READING`);
    /// `None` otherwise. A snapshot only: the slot may move on at once.
    pub(crate) fn peek_published(&self, index: u64) -> Option<u64> {
        let slot = self.slot(index);
        // Acquire: pairs with the producer's publish, as in try_claim_pop,
        // so a following payload copy sees the published record.
        let s = slot.stamp.load(Ordering::Acquire);
        let st = self.check(s, index).ok()?;
        match st.state {
            FULL => Some(st.pos),
            READING if self.alive(st, slot) => Some(st.pos),
            _ => None,
        }
    }

    /// Copies the payload of slot `index` into `dst` **without** holding its
    /// claim (a best-effort snapshot for a sweep: it may be torn, so callers
    /// re-check the stamp and validate what they read).
    pub(crate) fn peek_payload(&self, index: u64, dst: &mut [u8]) {
        self.storage.read_payload(index & self.mask, 0, dst);
    }

    /// A pointer to a claimed slot's payload.
    #[inline]
    pub fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        self.storage.payload_ptr(claim.pos & self.mask)
    }

    /// Messages in the ring, from the indices (clamped to `0..=capacity`;
    /// exact when no operation is in flight). The tail passes a position
    /// when it is published, the head when it is released (or when another
    /// producer or consumer helps the index past it), so a message counts
    /// from its publish until its consumer is done with it.
    #[allow(clippy::len_without_is_empty)] // `Queue::empty` is the query
    pub fn len(&self) -> u64 {
        let hdr = self.header();
        // Acquire both: pair with `advance`. The head is read first, so a
        // consistent ring gives tail >= head.
        let h = hdr.head.value.load(Ordering::Acquire);
        let t = hdr.tail.value.load(Ordering::Acquire);
        let d = t.wrapping_sub(h) as i64;
        d.clamp(0, self.cap_i()) as u64
    }

    /// Whether `close` was called (by any process).
    #[inline]
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.header().closed.load(Ordering::Acquire) != 0
    }

    /// Marks the ring closed and wakes every sleeper on both sides.
    pub fn close(&self) {
        let hdr = self.header();
        // Release: pairs with the Acquire load in `is_closed`.
        hdr.closed.store(1, Ordering::Release);
        for side in [Side::Get, Side::Put] {
            let (seq, _) = self.words(side);
            // Release: pairs with the Acquire load of the seq in `block`.
            seq.fetch_add(1, Ordering::Release);
            futex::wake(seq, u32::MAX);
        }
    }

    #[inline]
    fn words(&self, side: Side) -> (&AtomicU32, &AtomicU32) {
        let h = self.header();
        match side {
            Side::Get => (&h.get_seq, &h.get_waiters),
            Side::Put => (&h.put_seq, &h.put_waiters),
        }
    }

    /// The sleeper records of `side` (see [`IndexLine`]).
    fn sleeper_records(&self, side: Side) -> &[AtomicU64; SLEEPER_SLOTS] {
        let h = self.header();
        match side {
            Side::Get => &h.head.sleepers,
            Side::Put => &h.tail.sleepers,
        }
    }

    /// Processes registered as sleeping on `side` (a snapshot; counts a
    /// sleeper killed while registered until a waker repairs the count, see
    /// [`repair_sleepers`](Self::repair_sleepers)).
    pub(crate) fn sleepers(&self, side: Side) -> u32 {
        // Relaxed: a diagnostic snapshot.
        let w = self.words(side).1.load(Ordering::Relaxed);
        (w & TRACKED_MASK).count_ones() + (w >> UNTRACKED_SHIFT)
    }

    /// Registers this thread as sleeping on `side`.
    ///
    /// The waiters word is a bit per sleeper record plus a count of
    /// untracked sleepers (see [`RingHeader`]): a sleeper first takes a free
    /// record (its owner record, `Relaxed`), then sets the record's bit, so
    /// that the registration and the bit that a repair takes back are one
    /// atomic change: a process killed at any instruction leaves either no
    /// bit, or a bit whose record names it. With every record taken, it
    /// counts itself as untracked.
    fn register(&self, side: Side) -> Registered<'_> {
        let (_, waiters) = self.words(side);
        let record = self.take_sleeper_record(side);
        let add = record.map_or(UNTRACKED_ONE, |(i, _, _)| 1 << i);
        // SeqCst: the registration the heavy fence in `block` orders before
        // the re-check (a `fetch_or` of a bit not yet set, or an add).
        if record.is_some() {
            waiters.fetch_or(add, Ordering::SeqCst);
        } else {
            waiters.fetch_add(add, Ordering::SeqCst);
        }
        Registered { waiters, record }
    }

    /// Claims a free sleeper record of `side` for this process: its index,
    /// the record and the value stored; `None` when all are taken or under
    /// loom (a liveness hint only, not modelled).
    #[cfg(not(shmproc_loom))]
    fn take_sleeper_record(&self, side: Side) -> Option<(usize, &AtomicU64, u64)> {
        let rec = owner::my_record();
        let records = self.sleeper_records(side);
        // Start where this thread's id points, so concurrent sleepers of
        // one queue rarely race for the same record.
        let start = owner::my_tid() as usize % SLEEPER_SLOTS;
        (0..SLEEPER_SLOTS).find_map(|k| {
            let i = (start + k) % SLEEPER_SLOTS;
            let slot = records.get(i)?;
            // Relaxed load: a hint. Acquire CAS: pairs with a repair's
            // Release free, so our bit is set after its clear.
            (slot.load(Ordering::Relaxed) == 0
                && slot
                    .compare_exchange(0, rec, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok())
            .then_some((i, slot, rec))
        })
    }

    #[cfg(shmproc_loom)]
    fn take_sleeper_record(&self, _side: Side) -> Option<(usize, &AtomicU64, u64)> {
        None
    }

    /// After a wake that woke `woken` sleepers of `side`: counts the wakes
    /// in a row that woke nobody, and after [`REPAIR_AFTER`] of them
    /// repairs the count.
    fn after_wake(&self, side: Side, woken: usize) {
        let idle = match side {
            Side::Get => &self.idle_wakes[0],
            Side::Put => &self.idle_wakes[1],
        };
        // Relaxed: a process-local heuristic.
        let n = if woken == 0 {
            idle.load(std::sync::atomic::Ordering::Relaxed) + 1
        } else {
            0
        };
        if n >= REPAIR_AFTER {
            idle.store(0, std::sync::atomic::Ordering::Relaxed);
            self.repair_sleepers(side);
        } else {
            idle.store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Takes back the registrations of sleepers of `side` that were killed
    /// while registered: without this, their bits stay set and every later
    /// publish (or release) makes a futex system call for nobody.
    ///
    /// A record whose process is certainly gone
    /// ([`owner::record_owner_dead`]: no such pid, a zombie, or another
    /// start time) is first taken by one repairer (a CAS to
    /// `REPAIRING`, which no sleeper takes for free), which then clears its
    /// bit and only then frees it (`Release`). So among racing repairers
    /// one clears the bit, and a sleeper that takes the record next sets a
    /// bit that no late repairer clears under it. `REPAIRING` names no
    /// live process, so a record left so by a repairer that was killed
    /// midway is repaired again. A live sleeper's record is never judged
    /// dead; a corrupt peer's records at worst cost a live sleeper its bit,
    /// which delays its wake by at most a sleep slice (sleepers re-check
    /// after each). Untracked sleepers (beyond the [`SLEEPER_SLOTS`]
    /// records) are not repaired.
    #[cold]
    #[inline(never)]
    pub(crate) fn repair_sleepers(&self, side: Side) {
        let (_, waiters) = self.words(side);
        for (i, slot) in self.sleeper_records(side).iter().enumerate() {
            // Relaxed: as in `take_sleeper_record`.
            let rec = slot.load(Ordering::Relaxed);
            if rec != 0
                && owner::record_owner_dead(rec)
                && slot
                    .compare_exchange(rec, REPAIRING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // Relaxed: the bit of a dead sleeper orders nothing here;
                // the Release store below orders it before the next taker.
                waiters.fetch_and(!(1 << i), Ordering::Relaxed);
                // Release: pairs with the Acquire CAS in
                // `take_sleeper_record`, so the next sleeper's bit follows
                // this clear in the word's modification order.
                slot.store(0, Ordering::Release);
            }
        }
    }

    /// [`try_claim_pop`](Self::try_claim_pop) (or, with `again`,
    /// [`try_claim_pop_again`](Self::try_claim_pop_again)) for one attempt
    /// of a blocking get: after a [`Pop::Busy`] it backs off (see
    /// [`busy_backoff`](Self::busy_backoff)), and it keeps the back-off's
    /// state from what it found.
    ///
    /// # Errors
    /// As [`try_claim_pop`](Self::try_claim_pop).
    #[inline]
    pub(crate) fn claim_pop_waiting(&self, check_dead: bool, again: bool) -> Result<Pop, Corrupt> {
        let r = if again {
            self.try_claim_pop_again(check_dead)
        } else {
            self.try_claim_pop(check_dead)
        }?;
        match r {
            Pop::Claimed(_) => self.busy_claimed(),
            Pop::Busy => self.busy_backoff(),
            Pop::Empty => self.busy_empty(),
        }
        Ok(r)
    }

    /// Backs off after a blocking get found the head position claimed by a
    /// producer that has not published it yet ([`Pop::Busy`]).
    ///
    /// Every look at that slot now takes its stamp line from the producer,
    /// which needs the line back to publish: in a 64 B stream whose
    /// consumer keeps catching up, the two fought over the line for every
    /// message. So the back-off doubles with each `Busy`, from one pause
    /// (on top of `block`'s own) up to [`BUSY_PAUSES_MAX`], across the gets
    /// of this handle, and the
    /// producer meanwhile fills slots that the consumer then takes without
    /// a fight. A get that found the ring empty is waiting for a message
    /// that was not there yet (a ping-pong): from then on until it claims
    /// one ([`busy_empty`](Self::busy_empty),
    /// [`busy_claimed`](Self::busy_claimed)) it adds no pause, as before.
    /// queue_compare, 64 B, 1 -> 1, shared L3: 10.4 -> 14.2 M msgs/s
    /// (SEQPACKET 9.8x -> 13x).
    fn busy_backoff(&self) {
        // Under loom a pause is a yield: no back-off (it only adds states).
        if cfg!(shmproc_loom) {
            return;
        }
        // Relaxed: a process-local hint, ordered with nothing.
        let n = self.busy_pauses.load(std::sync::atomic::Ordering::Relaxed);
        // Pauses on top of the one `block` makes between attempts: none
        // for a get that found the ring empty.
        for _ in 0..n {
            spin_loop();
        }
        if n != 0 {
            self.busy_pauses.store(
                (n * 2).min(BUSY_PAUSES_MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// A blocking get found the ring empty: no extra pause after a `Busy`
    /// until it claims a message (see [`busy_backoff`](Self::busy_backoff)).
    fn busy_empty(&self) {
        // Relaxed: as in `busy_backoff`.
        self.busy_pauses
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// A blocking get claimed a message: a get that had found the ring
    /// empty re-arms the back-off (see [`busy_backoff`](Self::busy_backoff)).
    #[inline]
    fn busy_claimed(&self) {
        // Relaxed: as in `busy_backoff`.
        if self.busy_pauses.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            self.busy_pauses
                .store(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Wakes the sleepers of `side`, with a system call only when one is
    /// registered.
    #[inline]
    pub(crate) fn wake(&self, side: Side) {
        // Nobody sleeps under loom (futex waits are yields there).
        if cfg!(shmproc_loom) {
            return;
        }
        let (seq, waiters) = self.words(side);
        // Between our publish/release (a plain store) and the load of the
        // waiters count: the light fence, paired with the heavy one in
        // `block` (shmproc_sync::asym): either we see the waiter, or it sees
        // our change. A compiler fence where every user of the ring can
        // issue membarrier; a SeqCst fence once one said it cannot.
        let fences = self.header().flags.load(Ordering::Relaxed) & FLAG_FENCES != 0;
        asym::light(!fences && asym::ready());
        // Relaxed: ordered by the fence above.
        if waiters.load(Ordering::Relaxed) != 0 {
            // Release: pairs with the Acquire load of the seq in `block`.
            seq.fetch_add(1, Ordering::Release);
            let woken = futex::wake(seq, u32::MAX);
            self.after_wake(side, woken);
        }
    }

    /// Runs `attempt(check_dead)` until it returns `Some`: spinning for
    /// about a futex wake-up ([`futex::Spin`], with [`PUT_PAUSES`] pauses
    /// between a producer's attempts), then sleeping on `side`'s futex until
    /// `deadline`: a first light sleep ([`asym::LIGHT_SLEEP`], after a
    /// `SeqCst` fence only), then, after the heavy fence (`membarrier`), in
    /// bounded slices. A woken waiter tries again before it registers again.
    /// `check_dead` is false while spinning (no `/proc` reads on the fast
    /// path) and true from the first registered attempt on. Returns
    /// `Ok(None)` at the deadline.
    pub(crate) fn block<R, E>(
        &self,
        side: Side,
        deadline: Deadline,
        mut attempt: impl FnMut(bool) -> Result<Option<R>, E>,
    ) -> Result<Option<R>, E> {
        let mut spin = Spin::new();
        loop {
            // No liveness checks while spinning: a slot claimed by a peer
            // that is busy writing or reading it is the common case, and a
            // check reads `/proc` (microseconds; in a 64 B stream whose
            // consumer keeps up they took several percent of the time). The
            // attempt after registering (below) checks, before any sleep.
            if let Some(r) = attempt(false)? {
                return Ok(Some(r));
            }
            if deadline.expired() {
                return Ok(None);
            }
            if !spin.more() {
                break;
            }
            let pauses = match side {
                Side::Get => 1,
                Side::Put => PUT_PAUSES,
            };
            for _ in 0..pauses {
                spin_loop();
            }
        }
        let (seq, _) = self.words(side);
        // The first sleep is a light one (asym::LIGHT_SLEEP): no membarrier
        // before it, and short, so that a wake it missed is late by at
        // most that long; every later sleep follows the heavy fence.
        let mut light = true;
        loop {
            // Acquire: pairs with the Release increment in `wake`/`close`.
            let s0 = seq.load(Ordering::Acquire);
            // SeqCst, then the fence: the heavy one pairs with the light
            // fence in `wake` between the publish/release and its waiters
            // load (either we see the message, or the waker sees us).
            let registered = self.register(side);
            if light {
                fence(Ordering::SeqCst);
            } else {
                self.heavy_fence();
            }
            if let Some(r) = attempt(true)? {
                return Ok(Some(r));
            }
            let cap = if light { asym::LIGHT_SLEEP } else { SLICE };
            let Some(slice) = deadline.slice(cap) else {
                return Ok(None);
            };
            futex::wait(seq, s0, slice);
            light = false;
            drop(registered);
            // Woken (or the sleep ended): try before registering again, so
            // that a wake-up costs no fence.
            if let Some(r) = attempt(true)? {
                return Ok(Some(r));
            }
        }
    }
}

/// `IndexLine::lease`: nobody has operated on this side yet.
const LEASE_FREE: u64 = 0;
/// `IndexLine::lease`: the side runs the CAS protocol, for good.
const LEASE_SHARED: u64 = 1;
/// `IndexLine::lease` kinds in the high half (the low half is the holder's
/// tid): held, being revoked, revoked and fenced.
const LEASE_HELD: u64 = 1;
const LEASE_REVOKING: u64 = 2;
const LEASE_FENCED: u64 = 3;

/// A decoded lease word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Word {
    Free,
    Shared,
    Held(u32),
    Revoking(u32),
    Fenced(u32),
}

/// Pauses a revoker waits, re-reading `active`, for a holder that is inside
/// a leased operation (some tens of nanoseconds of work) before it reports
/// "not now".
const LEASE_SPINS: u32 = 256;

#[inline]
const fn lease_word(kind: u64, tid: u32) -> u64 {
    kind << 32 | tid as u64
}

/// A side's lease as a diagnostic ([`Queue::producer_lease`](crate::Queue::producer_lease)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody has put (or got) yet: the first thread to do so takes the lease.
    Free,
    /// One thread (this kernel tid, of any process) runs the side's
    /// operations with plain loads and stores.
    Held(u32),
    /// Another thread asked for the side; the holder (this tid) is being
    /// waited for.
    Revoking(u32),
    /// The side runs the multi-producer (or multi-consumer) CAS protocol,
    /// for good.
    Shared,
}

/// What a thread may do on a side now ([`Ring::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// This thread holds the side's lease: the leased fast paths are open
    /// to it (so is the CAS protocol, which it runs alone).
    Held,
    /// The side is shared: the CAS protocol.
    Shared,
    /// A revocation is waiting for the holder to leave a leased operation:
    /// no operation on this side now (the caller reports full/busy, and
    /// blocking calls retry).
    Wait,
}

/// The outcome of a leased fast path (`Ring::fast_push`, [`Ring::fast_pop`]).
#[derive(Debug)]
pub(crate) enum Fast<R> {
    /// Done: the message was sent (or taken, with what the reader returned).
    Done(R),
    /// Nothing to do now, decided from the exact stamp: the slot at the tail
    /// still holds the previous lap's message (full), or the head position
    /// was not produced yet (empty).
    Idle,
    /// Not decided here (no lease, or any other stamp): run the CAS protocol.
    Other,
}

impl<S: Storage> Ring<S> {
    #[inline]
    fn line(&self, side: Side) -> &IndexLine {
        let h = self.header();
        match side {
            Side::Get => &h.head,
            Side::Put => &h.tail,
        }
    }

    /// The lease of `side`, decoded (a diagnostic snapshot).
    ///
    /// # Errors
    /// [`Corrupt`] for a value no process writes.
    pub fn lease_state(&self, side_is_put: bool) -> Result<LeaseState, Corrupt> {
        let side = if side_is_put { Side::Put } else { Side::Get };
        // Relaxed: a snapshot.
        let l = self.line(side).lease.load(Ordering::Relaxed);
        decode_lease(l).map(|w| match w {
            Word::Free => LeaseState::Free,
            Word::Shared => LeaseState::Shared,
            Word::Held(tid) => LeaseState::Held(tid),
            Word::Revoking(tid) | Word::Fenced(tid) => LeaseState::Revoking(tid),
        })
    }

    /// Whether this thread may run an operation on `side` now, and how
    /// (module docs, "Leases"): every operation of the CAS protocol asks
    /// first ([`try_claim_push`](Self::try_claim_push) and the others do).
    /// The first thread to operate on a free side takes its lease; a
    /// thread that finds another thread's lease revokes it. With
    /// `check_dead`, a holder stuck inside a leased operation is checked
    /// for liveness (a `/proc` read), and a dead one's lease is taken back.
    ///
    /// # Errors
    /// [`Corrupt`] for a lease word no process writes, or one that keeps
    /// changing under us.
    #[inline]
    pub(crate) fn lease(&self, side: Side, check_dead: bool) -> Result<Lease, Corrupt> {
        if cfg!(shmproc_loom) {
            // Loom threads share one kernel tid: no leases (the CAS
            // protocol is what the loom models check).
            return Ok(Lease::Shared);
        }
        // Acquire: pairs with the Release (AcqRel) CAS that made the side
        // shared, which follows everything the last holder did.
        let l = self.line(side).lease.load(Ordering::Acquire);
        if l == LEASE_SHARED {
            return Ok(Lease::Shared);
        }
        if l == lease_word(LEASE_HELD, owner::my_tid()) {
            return Ok(Lease::Held);
        }
        self.lease_slow(side, l, check_dead)
    }

    #[cold]
    #[inline(never)]
    fn lease_slow(&self, side: Side, mut l: u64, check_dead: bool) -> Result<Lease, Corrupt> {
        let line = self.line(side);
        let me = owner::my_tid();
        // Every CAS below that succeeds moves the word one step along
        // free -> held -> revoking -> fenced -> shared (or straight to
        // shared), so a handful of rounds suffice; a word that keeps
        // changing is a corrupt peer's.
        for _ in 0..16 {
            // AcqRel on every successful CAS: Acquire as the load in
            // `lease`; Release orders this thread's earlier operations
            // before the change. Acquire on failure: the value is used.
            let next = match decode_lease(l)? {
                Word::Shared => return Ok(Lease::Shared),
                Word::Held(tid) if tid == me => return Ok(Lease::Held),
                Word::Free if self.may_lease() => lease_word(LEASE_HELD, me),
                // A process that cannot issue membarrier never holds a
                // lease: nobody could revoke it without the holder's help.
                Word::Free => LEASE_SHARED,
                Word::Held(tid) => lease_word(LEASE_REVOKING, tid),
                // The holder itself, outside any leased operation (it is
                // here), hands the side over: its plain stores precede
                // this CAS.
                Word::Revoking(tid) | Word::Fenced(tid) if tid == me => LEASE_SHARED,
                Word::Revoking(tid) => {
                    // The heavy fence: after it, the holder either sees the
                    // revocation at its next lease check or its `active`
                    // store is visible to us (module docs, "Leases").
                    if self.lease_fence() {
                        lease_word(LEASE_FENCED, tid)
                    } else if owner::tid_gone(tid) {
                        // No membarrier here: only the holder's own hand-over
                        // (at its next operation) or its end frees the side.
                        LEASE_SHARED
                    } else {
                        return Ok(Lease::Wait);
                    }
                }
                Word::Fenced(_) => {
                    // Fenced: the holder's `active` is up to date for us.
                    if !self.holder_out(line, check_dead) {
                        return Ok(Lease::Wait);
                    }
                    LEASE_SHARED
                }
            };
            l = match line
                .lease
                .compare_exchange(l, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => next,
                Err(found) => found,
            };
        }
        Err(Corrupt::new("side lease keeps changing", l))
    }

    /// Whether this process may take a lease: it can issue `membarrier`
    /// (so can, presumably, its peers: a peer that cannot sets
    /// [`FLAG_FENCES`], and then nobody takes a lease).
    fn may_lease(&self) -> bool {
        self.header().flags.load(Ordering::Relaxed) & FLAG_FENCES == 0 && asym::ready()
    }

    /// A revoker's heavy fence: `true` when it was a `membarrier`. When it
    /// could not be, [`FLAG_FENCES`] tells every holder to use real fences
    /// from now on (and nobody takes a lease any more).
    fn lease_fence(&self) -> bool {
        if asym::heavy() {
            return true;
        }
        self.header().flags.fetch_or(FLAG_FENCES, Ordering::SeqCst);
        false
    }

    /// After the revocation's heavy fence: whether the holder is outside
    /// any leased operation (its `active` is 0), waiting a little for it,
    /// or, with `check_dead`, dead inside one.
    fn holder_out(&self, line: &IndexLine, check_dead: bool) -> bool {
        for _ in 0..LEASE_SPINS {
            // Acquire: pairs with the holder's Release store of 0 at the end
            // of its operation, so its plain stores happen before our CAS
            // protocol touches the side.
            if line.active.load(Ordering::Acquire) == 0 {
                return true;
            }
            spin_loop();
        }
        // Relaxed: the record only names whom to check.
        let rec = line.active.load(Ordering::Relaxed);
        rec == 0 || (check_dead && owner::record_owner_dead(rec))
    }

    /// Opens a leased operation on `side`: `true` when this thread holds
    /// the lease (its `active` record is then set; close with
    /// [`leave`](Self::leave)).
    #[inline(always)]
    fn enter(&self, line: &IndexLine) -> bool {
        let mine = lease_word(LEASE_HELD, owner::my_tid());
        // Relaxed: a pre-check that keeps non-holders from writing `active`;
        // the check that counts is the one after the fence.
        if line.lease.load(Ordering::Relaxed) != mine {
            return false;
        }
        // Relaxed, then the light fence: the Dekker pair with the revoker's
        // lease CAS and heavy fence (module docs, "Leases"). A compiler
        // fence when every user can issue membarrier, else a SeqCst fence.
        line.active.store(owner::my_record(), Ordering::Relaxed);
        let fences = self.header().flags.load(Ordering::Relaxed) & FLAG_FENCES != 0;
        asym::light(!fences && asym::ready());
        // Relaxed: ordered by the fence above.
        if line.lease.load(Ordering::Relaxed) == mine {
            return true;
        }
        self.leave(line);
        false
    }

    /// Closes a leased operation.
    #[inline(always)]
    fn leave(&self, line: &IndexLine) {
        // Release: the operation's stores happen before a revoker's Acquire
        // load of 0 (`holder_out`).
        line.active.store(0, Ordering::Release);
    }

    /// The leased put: when this thread holds the producers' lease and the
    /// slot at the tail is free for it, `fill` writes the payload in place
    /// and the message is published, with plain loads and stores only
    /// (module docs, "Leases").
    #[inline]
    pub(crate) fn fast_push(&self, fill: impl FnOnce(*mut u8)) -> Fast<()> {
        if cfg!(shmproc_loom) {
            return Fast::Other;
        }
        let line = &self.header().tail;
        if !self.enter(line) {
            return Fast::Other;
        }
        // Relaxed: only the holder moves the tail while the lease is held
        // (and this thread's own earlier moves are program-ordered).
        let p = line.value.load(Ordering::Relaxed);
        let slot = self.slot(p);
        // Acquire: pairs with the consumer's Release of the slot, so its
        // payload reads happen before our writes.
        let s = slot.stamp.load(Ordering::Acquire);
        if s != stamp(p, 0, EMPTY) {
            self.leave(line);
            // The previous lap's message, not yet taken: full.
            return if s == stamp(p.wrapping_sub(self.cap), 0, FULL) {
                Fast::Idle
            } else {
                Fast::Other
            };
        }
        // Lines of a few messages ahead, for writing, while the consumer
        // (a lap behind there) leaves them alone: by the time we write them
        // they are ours, so our stores never wait for a transfer.
        let ahead = p.wrapping_add(FAST_AHEAD);
        self.storage.prefetch_header(ahead & self.mask);
        self.storage.prefetch_payload(ahead & self.mask);
        fill(self.storage.payload_ptr(p & self.mask));
        // Release: publishes the payload to the consumer's Acquire stamp load.
        slot.stamp.store(stamp(p, 0, FULL), Ordering::Release);
        // Release: pairs with `len`'s Acquire load.
        line.value.store(p.wrapping_add(1), Ordering::Release);
        self.leave(line);
        self.wake(Side::Get);
        Fast::Done(())
    }

    /// The leased get: when this thread holds the consumers' lease and the
    /// head position is published, `read` reads the payload in place, and
    /// the slot is released, with plain loads and stores only. A holder
    /// killed inside `read` leaves the message published: it is taken
    /// again by the next consumer (nothing was returned to anyone).
    #[inline]
    pub(crate) fn fast_pop<R>(&self, read: impl FnOnce(*const u8) -> R) -> Fast<R> {
        if cfg!(shmproc_loom) {
            return Fast::Other;
        }
        let line = &self.header().head;
        if !self.enter(line) {
            return Fast::Other;
        }
        // Relaxed: as the tail in `fast_push`.
        let p = line.value.load(Ordering::Relaxed);
        let slot = self.slot(p);
        // Acquire: pairs with the producer's Release publish, so its payload
        // writes happen before our reads.
        let s = slot.stamp.load(Ordering::Acquire);
        if s != stamp(p, 0, FULL) {
            self.leave(line);
            return if s == stamp(p, 0, EMPTY) {
                Fast::Idle
            } else {
                Fast::Other
            };
        }
        let r = read(self.storage.payload_ptr(p & self.mask));
        // Release: our payload reads happen before the next-lap producer's
        // writes (its Acquire stamp load).
        slot.stamp
            .store(stamp(p.wrapping_add(self.cap), 0, EMPTY), Ordering::Release);
        // Release: pairs with `len`'s Acquire load.
        line.value.store(p.wrapping_add(1), Ordering::Release);
        self.leave(line);
        self.wake(Side::Put);
        Fast::Done(r)
    }
}

/// How many slots ahead of its tail a leased producer prefetches.
const FAST_AHEAD: u64 = 4;

/// Decodes a lease word; [`Corrupt`] for a value no process writes.
fn decode_lease(l: u64) -> Result<Word, Corrupt> {
    let tid = (l & 0xFFFF_FFFF) as u32;
    let tid_ok = tid != 0 && tid <= owner::PID_MASK;
    match l >> 32 {
        _ if l == LEASE_FREE => Ok(Word::Free),
        _ if l == LEASE_SHARED => Ok(Word::Shared),
        LEASE_HELD if tid_ok => Ok(Word::Held(tid)),
        LEASE_REVOKING if tid_ok => Ok(Word::Revoking(tid)),
        LEASE_FENCED if tid_ok => Ok(Word::Fenced(tid)),
        _ => Err(Corrupt::new("side lease", l)),
    }
}

impl<S: Storage> Ring<S> {
    /// The sleeping side's fence in `block`, between the waiter
    /// registration and the re-check: a membarrier, paired with the light
    /// fence in `wake`. Where this process cannot issue one, a SeqCst fence,
    /// and [`FLAG_FENCES`] tells every user of the ring to fence in `wake` too.
    #[cfg(not(shmproc_loom))]
    fn heavy_fence(&self) {
        if !asym::heavy() {
            self.header().flags.fetch_or(FLAG_FENCES, Ordering::SeqCst);
        }
    }

    /// Under loom nobody sleeps (see `wake`): a SeqCst fence.
    #[cfg(shmproc_loom)]
    fn heavy_fence(&self) {
        fence(Ordering::SeqCst);
    }
}

/// Decrements the unfinished count (saturating) and wakes joiners at 0.
pub(crate) fn uncount(hdr: &RingHeader) -> Result<(), crate::error::TaskDoneError> {
    let mut cur = hdr.unfinished.load(Ordering::Relaxed);
    loop {
        if cur == 0 {
            return Err(crate::error::TaskDoneError);
        }
        // SeqCst: Release publishes the finished task's effects to `join`'s
        // Acquire load; SeqCst pairs with the joiner's registration + fence
        // (store-buffering excluded, as in Ring::publish).
        match hdr.unfinished.compare_exchange_weak(
            cur,
            cur - 1,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(v) => cur = v,
        }
    }
    if cur == 1 && hdr.join_waiters.load(Ordering::SeqCst) != 0 {
        // Release: pairs with the Acquire load of join_seq in `join_until`.
        hdr.join_seq.fetch_add(1, Ordering::Release);
        futex::wake(&hdr.join_seq, u32::MAX);
    }
    Ok(())
}

/// A sleeper's registration ([`Ring::register`]), undone when dropped
/// (also on early returns).
struct Registered<'a> {
    waiters: &'a AtomicU32,
    /// The sleeper record we hold (index, record, value), when one was free.
    record: Option<(usize, &'a AtomicU64, u64)>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // Relaxed: unregistering orders nothing (a waker that still sees
        // us makes one futex call too many).
        match self.record {
            // The bit first, then the record (see `Ring::repair_sleepers`).
            Some((i, slot, rec)) => {
                self.waiters.fetch_and(!(1 << i), Ordering::Relaxed);
                let _ = slot.compare_exchange(rec, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            // Never below zero: a corrupt count must not wrap.
            None => {
                let _ = self
                    .waiters
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        w.checked_sub(UNTRACKED_ONE)
                    });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        for (pos, pid, state) in [
            (0u64, 0u32, EMPTY),
            (5, 1234, WRITING),
            (POS_MASK, (1 << 22) - 1, READING),
        ] {
            let s = decode(stamp(pos, pid, state));
            assert_eq!((s.pos, s.pid, s.state), (pos, pid, state));
        }
        // Positions wrap modulo 2^40.
        assert_eq!(decode(stamp(POS_MASK + 3, 0, FULL)).pos, 2);
    }

    #[test]
    fn lap_diff_is_signed_modulo_2_40() {
        assert_eq!(lap_diff(5, 5), 0);
        assert_eq!(lap_diff(5, 9), -4);
        assert_eq!(lap_diff(9, 5), 4);
        assert_eq!(lap_diff(1, POS_MASK), 2);
        assert_eq!(lap_diff(POS_MASK, 1), -2);
        // Full 64-bit positions reduce modulo 2^40.
        assert_eq!(lap_diff(3, (7 << 40) + 1), 2);
    }

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
