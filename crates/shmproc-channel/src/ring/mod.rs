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
//! # Maxsize
//! The ring has a power-of-two number of slots, the smallest that holds the
//! queue's requested capacity (`RingHeader::maxsize`, Python's `maxsize`).
//! When that is smaller, a producer also refuses a position `p` with
//! `p - head >= maxsize` (`Ring::room`: against a process-local cached
//! head first, the real one only when that check fails), so the queue holds
//! exactly `maxsize` messages; the stamps alone bound it otherwise, at the
//! cost of one predictable branch.
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
//! issue `membarrier` sets [`FLAG_FENCES`](layout::FLAG_FENCES), never takes a lease, and, as a
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
//!
//! # Files
//! - `mod.rs`: these docs, `Side`, [`Ring`] and its accessors, the stamp
//!   check, the index advance and the liveness check shared by the others;
//! - `layout.rs`: the constants and the shared types ([`RingHeader`],
//!   [`IndexLine`](layout::IndexLine), [`SlotHeader`]), their offset assertions, [`slot_geometry`];
//! - `stamp.rs`: stamp encoding and position arithmetic;
//! - `mpmc.rs`: the CAS protocol ([`Push`], [`Pop`], [`Claim`]), what loom models;
//! - `sleepers.rs`: the sleeper registry, `wake` and `block`;
//! - `lease.rs`: the side leases and the leased fast paths.
//!
//! The [`Storage`] trait lives with its two implementations in `storage.rs`.

#![deny(clippy::indexing_slicing)]

use shmproc_shm::sync::{AtomicU64, Ordering};
use shmproc_sync::owner;

use crate::error::Corrupt;

#[cfg(not(shmproc_loom))]
pub(crate) mod inspect;
mod layout;
mod lease;
#[cfg(shmproc_loom)]
mod model;
mod mpmc;
mod sleepers;
mod stamp;

/// Where a ring's header and slots live: a shared-memory segment, or the
/// heap (for loom and single-process use). Implementations take the index
/// modulo the capacity themselves, so any index is in bounds.
pub trait Storage {
    /// The ring header.
    fn header(&self) -> &RingHeader;
    /// The capacity (slots, a power of two), validated when the storage was
    /// made (never re-read).
    fn capacity(&self) -> u64;
    /// The most messages the ring holds (`1..=capacity`), validated when
    /// the storage was made (never re-read).
    fn maxsize(&self) -> u64;
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

/// `JoinableQueue`'s task count: decrements the unfinished count
/// (saturating) and wakes joiners at 0. Here, not in `joinable.rs`, because
/// the ring itself uncounts the position of a producer that died before
/// publishing (`mpmc.rs`), and the ring uses no queue module.
#[cfg(not(shmproc_loom))]
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
        shmproc_sync::futex::wake(&hdr.join_seq, u32::MAX);
    }
    Ok(())
}

pub use layout::MAX_CAPACITY;
pub(crate) use layout::{RingHeader, SlotHeader, ring_bytes, slot_geometry};
pub use lease::LeaseState;
pub use mpmc::{Pop, Push};
// For the segment storage and the queues only, which loom does not build.
#[cfg(not(shmproc_loom))]
pub(crate) use layout::{MAX_SLOT_SIZE, RING_HEADER_LEN, RING_MAGIC};
#[cfg(not(shmproc_loom))]
pub(crate) use lease::Fast;
#[cfg(not(shmproc_loom))]
pub(crate) use mpmc::Claim;
#[cfg(not(shmproc_loom))]
pub(crate) use sleepers::Until;
use stamp::{EMPTY, FULL, Stamp, decode};

/// Which side of the ring a blocking call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Consumers, waiting for a message.
    Get,
    /// Producers, waiting for a free slot.
    Put,
}

/// The ring algorithm over a `Storage` (`src/storage.rs`).
///
/// The capacity, maxsize, mask and slot size are copied from the storage
/// once and never re-read from shared memory; every slot index is
/// `pos & mask`.
#[derive(Debug)]
pub struct Ring<S> {
    storage: S,
    cap: u64,
    mask: u64,
    /// The most messages in the ring (`1..=cap`; Python's `maxsize`).
    maxsize: u64,
    /// `maxsize < cap`: producers check [`room`](Self::room) before a claim.
    limited: bool,
    /// This handle's last look at the head index, for
    /// [`room`](Self::room) (rtrb's `cached_head`; never shared). Only
    /// ever a value the head had, so never ahead of it.
    cached_head: std::sync::atomic::AtomicU64,
    /// `log2(cap)`: `pos >> lap_shift` is the lap of a position, the tag of
    /// its claim's owner record.
    lap_shift: u32,
    slot_size: usize,
    joinable: bool,
    /// Pauses of the next [`busy_backoff`](Self::busy_backoff) (this
    /// handle's, never shared: a heuristic with no part in correctness).
    busy_pauses: std::sync::atomic::AtomicU32,
    /// Per side (`Side::Get`, `Side::Put`), this handle's wakes in a row
    /// that woke nobody (see [`REPAIR_AFTER`](sleepers::REPAIR_AFTER); never shared).
    idle_wakes: [std::sync::atomic::AtomicU32; 2],
    /// Per side (`Side::Get`, `Side::Put`), this handle's adaptive spin
    /// budget for blocking waits (see [`SpinBudget`](shmproc_sync::futex::SpinBudget); never shared).
    spin_budget: [shmproc_sync::futex::SpinBudget; 2],
}

impl<S: Storage> Ring<S> {
    /// A ring over `storage` (which validated its capacity). `joinable`:
    /// skipping a dead producer's position also un-counts its task.
    ///
    /// # Panics
    /// When the storage's capacity is not a power of two in
    /// `1..=MAX_CAPACITY`, or its maxsize not in `1..=capacity` (a storage
    /// bug: storages validate them).
    pub fn new(storage: S, joinable: bool) -> Self {
        let cap = storage.capacity();
        assert!(
            cap.is_power_of_two() && cap <= MAX_CAPACITY,
            "storage capacity must be a validated power of two"
        );
        let maxsize = storage.maxsize();
        assert!(
            (1..=cap).contains(&maxsize),
            "storage maxsize must be validated"
        );
        let slot_size = storage.slot_size();
        Self {
            storage,
            cap,
            mask: cap - 1,
            maxsize,
            limited: maxsize < cap,
            cached_head: std::sync::atomic::AtomicU64::new(0),
            lap_shift: cap.trailing_zeros(),
            slot_size,
            joinable,
            busy_pauses: std::sync::atomic::AtomicU32::new(1),
            idle_wakes: std::array::from_fn(|_| std::sync::atomic::AtomicU32::new(0)),
            spin_budget: std::array::from_fn(|_| shmproc_sync::futex::SpinBudget::new()),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub(crate) fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The storage back, this handle's local state dropped (the fuzz
    /// harness keeps a mapping across inputs: `fuzzing.rs`).
    pub(crate) fn into_storage(self) -> S {
        self.storage
    }

    /// The ring header.
    #[inline]
    pub fn header(&self) -> &RingHeader {
        self.storage.header()
    }

    /// The capacity in slots, a power of two (local copy).
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// The most messages the ring holds, `1..=capacity` (local copy).
    pub fn maxsize(&self) -> u64 {
        self.maxsize
    }

    /// Whether a producer may claim position `p` (just read from the tail)
    /// without the ring holding more than `maxsize` messages: `p - head <
    /// maxsize`. One predictable branch when `maxsize == capacity` (the
    /// stamps alone bound the ring then); otherwise checked against this
    /// handle's cached head first, and the real head is read only when
    /// that check fails (rtrb's `cached_head`).
    ///
    /// Exact under any number of producers: the head only grows, so a head
    /// value read at any time (cached or fresh) is `<=` the head now, and
    /// `p - head_read < maxsize` implies `p - head_now < maxsize`. A
    /// position is claimed once (by the CAS on its slot's stamp, made only
    /// after this check for that same `p`; the tail moves past a position
    /// only once it is claimed), so every claimed position is below
    /// `head + maxsize` for the head at every later instant: at most
    /// `maxsize` positions from the head on are claimed, published or
    /// being read. A `p` already behind the head (a stale tail read) passes
    /// (the difference is negative) and its stamp CAS fails.
    #[inline(always)]
    pub(crate) fn room(&self, p: u64) -> bool {
        if !self.limited {
            return true;
        }
        // Relaxed: a local hint (see the field).
        let h = self.cached_head.load(std::sync::atomic::Ordering::Relaxed);
        (p.wrapping_sub(h) as i64) < self.maxsize as i64 || self.room_slow(p)
    }

    #[cold]
    #[inline(never)]
    fn room_slow(&self, p: u64) -> bool {
        // Relaxed: only the count matters here (any value the head had is
        // a bound, see `room`); the slot's stamp, loaded with Acquire
        // before its payload is touched, orders the payload accesses.
        let h = self.header().head.value.load(Ordering::Relaxed);
        self.cached_head
            .store(h, std::sync::atomic::Ordering::Relaxed);
        (p.wrapping_sub(h) as i64) < self.maxsize as i64
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
        // Mutant: every claimant is taken for dead.
        if shmproc_sync::mutant!("claimant_always_dead") {
            return false;
        }
        !owner::tagged_owner_dead(st.pid, rec, st.pos >> self.lap_shift)
    }
}
