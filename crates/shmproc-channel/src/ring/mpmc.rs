//! The lock-free MPMC protocol (what the loom models check): claiming a
//! position by a CAS on its slot's stamp (fast paths and validating loops),
//! publishing and releasing it with plain stores, helping the indices
//! along, skipping dead producers and reclaiming dead consumers' slots, the
//! payload copies, `len` and `close`.
//!
//! Invariants (module docs of [`ring`](super), "Stamps" and "Crash
//! safety"): only a claim CAS takes a slot, nobody but its claimant (or a
//! process that found it dead) changes a claimed stamp, every index is moved
//! only from `p` to `p + 1` by a CAS (or by a lease holder, `lease.rs`), and
//! every loop is bounded by a [`Guard`], which reports [`Corrupt`] instead of
//! spinning.

use shmproc_shm::sync::{Ordering, fence, spin_loop};
use shmproc_sync::futex;
use shmproc_sync::owner;

use super::Storage;
use super::lease::Lease;
use super::stamp::{EMPTY, FULL, READING, WRITING, is_writing_at, lap_diff, stamp};
use super::{Ring, Side, SlotHeader};
use crate::error::Corrupt;

/// Iterations of one operation that see the same index value before it
/// reports [`Corrupt`] (legitimately, a handful).
#[cfg(not(any(shmproc_loom, fuzzing)))]
const STUCK_LIMIT: u32 = 10_000;
/// Loom, and fuzz builds (`cfg(fuzzing)`: one process, so an index that
/// stays put is a scribble, never a peer mid-operation): a few.
#[cfg(any(shmproc_loom, fuzzing))]
const STUCK_LIMIT: u32 = 8;

/// Iterations of one operation in total before it reports [`Corrupt`].
const TOTAL_LIMIT: u32 = 1 << 20;

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
}

impl Guard {
    fn new() -> Self {
        Self {
            last: u64::MAX,
            stuck: 0,
            total: 0,
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

impl<S: Storage> Ring<S> {
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
        if !self.room(p) {
            return Ok(Push::Full);
        }
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
        slot.owner.store(
            owner::my_tagged_record((pos & super::stamp::POS_MASK) >> self.lap_shift),
            Ordering::Relaxed,
        );
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
                    // `maxsize` messages from the head on already (see `room`).
                    if !self.room(p) {
                        return Ok(Push::Full);
                    }
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
                // is stale. A corrupt stamp must not run the index away: an
                // advance from p succeeds only while the tail is p, and then
                // the slot is at most one lap ahead (`EMPTY(p + cap)`, or the
                // next lap's claim); a stamp further ahead is corrupt. (Not a
                // count of advances per call: producers that keep publishing
                // while this one helps make any number of them legitimate.)
                if self.advance(&hdr.tail.value, p) && d > self.cap_i() {
                    return Err(Corrupt::new("slot stamp ahead of tail", s));
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
            // Mutant: the publish weakened to Relaxed.
            let order = if shmproc_sync::mutant!("publish_relaxed") {
                Ordering::Relaxed
            } else {
                Ordering::Release
            };
            slot.stamp.store(stamp(claim.pos, 0, FULL), order);
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

    /// Gives up a claimed position without sending anything (the writer of
    /// an in-place put panicked): the slot goes to the next lap's producer
    /// as `EMPTY(p + cap)`, exactly what a consumer does for a dead
    /// producer's claim (counted in [`RingHeader::skipped_writes`]), and
    /// consumers step over the position. Returns `false` when the slot was
    /// no longer ours (see [`publish`](Self::publish)).
    pub fn cancel(&self, claim: Claim) -> bool {
        let slot = self.slot(claim.pos);
        let hdr = self.header();
        let next = stamp(claim.pos.wrapping_add(self.cap), 0, EMPTY);
        // AcqRel on success: Release hands the slot to the producer of
        // p + cap (its Acquire stamp load), as the consumer's skip does.
        // Relaxed on failure: the value is not used.
        let ok = slot
            .stamp
            .compare_exchange(
                stamp(claim.pos, claim.pid, WRITING),
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            hdr.skipped_writes.fetch_add(1, Ordering::Relaxed);
            #[cfg(not(shmproc_loom))]
            if self.joinable {
                let _ = super::uncount(hdr);
            }
        }
        // The position is done on the producers' side either way.
        self.advance(&hdr.tail.value, claim.pos);
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
        match self.try_claim_pop_slow(check_dead, |_| None) {
            Ok(Ok(pop)) => Ok(pop),
            // `refuse` never refuses.
            Ok(Err(_)) => Ok(Pop::Busy),
            Err(c) => Err(c),
        }
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
        match self.try_claim_pop_slow(check_dead, |_| None) {
            Ok(Ok(pop)) => Ok(pop),
            // `refuse` never refuses.
            Ok(Err(_)) => Ok(Pop::Busy),
            Err(c) => Err(c),
        }
    }

    /// [`try_claim_pop_again`](Self::try_claim_pop_again) that shows each
    /// published head position to `refuse` before claiming it: `refuse(p)`
    /// may read the record of position `p` with
    /// [`peek_payload`](Self::peek_payload) and answer `Some(x)` to leave
    /// it in the ring, which returns `Ok(Err(x))`.
    ///
    /// What `refuse` read is the record of `p` as published, not a torn or
    /// later one: the stamp was `FULL(p)` (Acquire) before the read, and a
    /// refusal counts only when the stamp is still `FULL(p)` after it (a
    /// seqlock's check; no producer writes a slot whose stamp is `FULL`,
    /// and a stamp never returns to a value it left, laps being part of
    /// it); an accepted position is claimed by a CAS from that same stamp.
    /// So a consumer can refuse a message too long for its buffer without
    /// taking it: it stays for the next get.
    ///
    /// # Errors
    /// As [`try_claim_pop`](Self::try_claim_pop).
    #[inline]
    pub fn try_claim_pop_unless(
        &self,
        check_dead: bool,
        refuse: impl FnMut(u64) -> Option<u64>,
    ) -> Result<Result<Pop, u64>, Corrupt> {
        if self.lease(Side::Get, check_dead)? == Lease::Wait {
            return Ok(Ok(Pop::Busy));
        }
        self.try_claim_pop_slow(check_dead, refuse)
    }

    /// The validating loop of [`try_claim_pop`](Self::try_claim_pop), with
    /// [`try_claim_pop_unless`](Self::try_claim_pop_unless)'s `refuse`.
    #[cold]
    #[inline(never)]
    fn try_claim_pop_slow(
        &self,
        check_dead: bool,
        mut refuse: impl FnMut(u64) -> Option<u64>,
    ) -> Result<Result<Pop, u64>, Corrupt> {
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
                        if let Some(x) = refuse(p) {
                            // Acquire (fence): orders `refuse`'s payload
                            // reads before the stamp's second load, so a
                            // stamp still FULL(p) proves them untorn (a
                            // seqlock's read side).
                            fence(Ordering::Acquire);
                            if slot.stamp.load(Ordering::Relaxed) == s {
                                return Ok(Err(x));
                            }
                            continue;
                        }
                        let claimed = stamp(p, me, READING);
                        // AcqRel: Acquire as the load above; Release publishes
                        // the claim to `advance` helpers.
                        if slot
                            .stamp
                            .compare_exchange(s, claimed, Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                        {
                            self.claimed(slot, p);
                            return Ok(Ok(Pop::Claimed(Claim { pos: p, pid: me })));
                        }
                    }
                    READING => {
                        self.advance(&hdr.head.value, p);
                    }
                    EMPTY => return Ok(Ok(Pop::Empty)),
                    _ => {
                        if !check_dead || self.alive(st, slot) {
                            return Ok(Ok(Pop::Busy));
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
                            // No JoinableQueue under loom (joinable.rs is not
                            // built there), so no ring is joinable.
                            #[cfg(not(shmproc_loom))]
                            if self.joinable {
                                let _ = super::uncount(hdr);
                            }
                            self.advance(&hdr.head.value, p);
                            self.wake(Side::Put);
                        }
                    }
                }
            } else if d > 0 {
                // Position p is done (released, or skipped by a consumer that
                // died before advancing the head), or our read is stale.
                // Bounded as in try_claim_push: one lap ahead at most once
                // the advance succeeds. (Counting advances per call, as
                // before, reported a healthy ring corrupt when other
                // consumers kept releasing positions while this one helped
                // the head past them: found by the shuttle 3 x 3 run.)
                if self.advance(&hdr.head.value, p) && d > self.cap_i() {
                    return Err(Corrupt::new("slot stamp ahead of head", s));
                }
            } else if d == -self.cap_i() {
                if st.state == READING {
                    // A consumer of the previous lap still reads this slot:
                    // position p cannot have been produced yet.
                    return Ok(Ok(Pop::Empty));
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

    /// A pointer to a claimed slot's payload.
    #[inline]
    pub fn payload_ptr(&self, claim: &Claim) -> *mut u8 {
        self.storage.payload_ptr(claim.pos & self.mask)
    }

    /// Messages in the ring, from the indices (clamped to `0..=maxsize`;
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
        // Between the two loads both indices may move on, so the snapshot
        // can exceed `maxsize` although the ring never does (`room`).
        let d = t.wrapping_sub(h) as i64;
        d.clamp(0, self.maxsize as i64) as u64
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
}
