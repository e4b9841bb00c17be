//! Waiting: the sleeper registry (a bit per owner record in each side's
//! index line, plus a count of untracked sleepers), its repair after a
//! sleeper was killed, `wake`, `block` (spin, then futex sleeps) and the
//! blocking get's back-off after a busy slot.
//!
//! Invariants: a sleeper registers (record, then bit) before its re-check,
//! with the heavy fence between them, and a waker's light fence sits between
//! its publish or release and its waiters load (`shmproc_sync::asym`), so
//! either the waker sees the sleeper or the sleeper sees the change. A live
//! sleeper's record is never judged dead, and every registration is undone
//! when its [`Registered`] is dropped. None of this decides correctness of
//! the queue itself: a lost wake costs at most a sleep slice.

use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_loop};
use shmproc_sync::futex::{self, Deadline, SLICE, Spin};
use shmproc_sync::{asym, owner};

use super::Storage;
use super::layout::{FLAG_FENCES, SLEEPER_SLOTS};
use super::mpmc::Pop;
use super::{Ring, Side};
use crate::error::Corrupt;

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

/// The bits of a waiters word that stand for sleeper records (bit `i`:
/// record `i` is registered).
const TRACKED_MASK: u32 = (1 << SLEEPER_SLOTS) - 1;
/// Where a waiters word counts the sleepers registered without a record.
const UNTRACKED_SHIFT: u32 = 16;
const UNTRACKED_ONE: u32 = 1 << UNTRACKED_SHIFT;
/// Marks a sleeper record being repaired (see `Ring::repair_sleepers`):
/// the repairer's own owner record with this bit set (owner records use
/// bits 0..62), so it is never taken for free nor for a sleeper's, and it
/// is repaired again only once the repairer itself is dead.
const REPAIRING: u64 = 1 << 63;

/// Wakes in a row that found a registered sleeper count but woke nobody
/// before a waker checks the registered sleepers' liveness
/// ([`Ring::repair_sleepers`]): a futex wake costs about a microsecond, so a
/// count left by a killed sleeper costs some 0.3 ms of system calls before
/// it is repaired, and a `/proc` read per record at most every 256 wakes.
pub(super) const REPAIR_AFTER: u32 = 256;

/// When a blocking operation gives up: every form of an operation (`op`,
/// `try_op`, `op_timeout`, `op_deadline`) is one function over this.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// Already expired (the `try_` forms): one attempt, with liveness
    /// checks (a later one may not come), and no clock read.
    Now,
    /// At this deadline ([`Until::NEVER`] for the plain form).
    At(Deadline),
}

impl Until {
    /// No deadline: wait as long as it takes.
    pub(crate) const NEVER: Until = Until::At(Deadline::NEVER);
}

impl<S: Storage> Ring<S> {
    /// [`block`](Self::block) until `until`; for [`Until::Now`], one
    /// `attempt(true)` (`Ok(None)`: nothing now).
    #[inline]
    pub(crate) fn block_until<R, E>(
        &self,
        side: Side,
        until: Until,
        mut attempt: impl FnMut(bool) -> Result<Option<R>, E>,
    ) -> Result<Option<R>, E> {
        match until {
            Until::Now => attempt(true),
            Until::At(d) => self.block(side, d, attempt),
        }
    }

    #[inline]
    pub(super) fn words(&self, side: Side) -> (&AtomicU32, &AtomicU32) {
        let h = self.header();
        match side {
            Side::Get => (&h.get_seq, &h.get_waiters),
            Side::Put => (&h.put_seq, &h.put_waiters),
        }
    }

    /// The sleeper records of `side` (see [`IndexLine`](super::layout::IndexLine)).
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
        sleeper_count(self.words(side).1.load(Ordering::Relaxed))
    }

    /// Registers this thread as sleeping on `side`.
    ///
    /// The waiters word is a bit per sleeper record plus a count of
    /// untracked sleepers (see [`RingHeader`](super::RingHeader)): a sleeper first takes a free
    /// record (its owner record, `Relaxed`), then sets the record's bit, so
    /// that the registration and the bit that a repair takes back are one
    /// atomic change: a process killed at any instruction leaves either no
    /// bit, or a bit whose record names it. With every record taken, it
    /// counts itself as untracked.
    pub(super) fn register(&self, side: Side) -> Registered<'_> {
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
    /// the record and the value stored; `None` when all are taken.
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
    /// start time) is first taken by one repairer (a CAS to its own record
    /// marked `REPAIRING`, which no sleeper takes for free), which then
    /// clears its bit and only then frees it (`Release`). So among racing
    /// repairers one clears the bit, and a sleeper that takes the record
    /// next sets a bit that no late repairer clears under it. A record left
    /// `REPAIRING` by a repairer that was killed midway names that dead
    /// repairer, so it is repaired again; one being repaired by a live
    /// repairer is left alone. (Until the loom model
    /// `two_repairers_of_one_dead_sleeper` found it at preemption bound 2,
    /// `REPAIRING` named nobody, so a second repairer took a live
    /// repairer's in-progress record for a dead one, and its late clear
    /// and free hit the live sleeper that had just taken the record: that
    /// sleeper's wake-up came a sleep slice late.) A live sleeper's record is never judged
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
            // The sleeper's record, or the repairer's for one being repaired.
            let named = rec & !REPAIRING;
            // Mutant: the marker names nobody (the rule before the fix).
            let dead = if shmproc_sync::mutant!("repairing_names_nobody") && rec & REPAIRING != 0 {
                true
            } else {
                owner::record_owner_dead(named)
            };
            if rec != 0
                && dead
                && (shmproc_sync::mutant!("repair_no_first_cas")
                    || slot
                        .compare_exchange(
                            rec,
                            owner::my_record() | REPAIRING,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok())
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

    /// [`claim_pop_waiting`](Self::claim_pop_waiting) over
    /// [`try_claim_pop_unless`](Self::try_claim_pop_unless): `Ok(Err(x))`
    /// when `refuse` left the head record in the ring.
    ///
    /// # Errors
    /// As [`try_claim_pop`](Self::try_claim_pop).
    #[inline]
    pub(crate) fn claim_pop_waiting_unless(
        &self,
        check_dead: bool,
        refuse: impl FnMut(u64) -> Option<u64>,
    ) -> Result<Result<Pop, u64>, Corrupt> {
        let r = self.try_claim_pop_unless(check_dead, refuse)?;
        match r {
            Ok(Pop::Claimed(_)) | Err(_) => self.busy_claimed(),
            Ok(Pop::Busy) => self.busy_backoff(),
            Ok(Pop::Empty) => self.busy_empty(),
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
        // The spin adapts to this handle's recent waits on this side
        // (`SpinBudget`): back-to-back traffic keeps the full spin, a peer
        // that sends every 100 us gets about a microsecond of it.
        let [get_budget, put_budget] = &self.spin_budget;
        let budget = match side {
            Side::Get => get_budget,
            Side::Put => put_budget,
        };
        let mut spin = if cfg!(shmproc_loom) {
            Spin::new()
        } else {
            budget.spin()
        };
        loop {
            // No liveness checks while spinning: a slot claimed by a peer
            // that is busy writing or reading it is the common case, and a
            // check reads `/proc` (microseconds; in a 64 B stream whose
            // consumer keeps up they took several percent of the time). The
            // attempt after registering (below) checks, before any sleep.
            if let Some(r) = attempt(false)? {
                // Only a wait that spun teaches (one found ready at once
                // says nothing about spinning).
                if spin.count() > 0 {
                    budget.caught();
                }
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
        let began = spin.since().unwrap_or_else(std::time::Instant::now);
        let learn = |r| {
            if !cfg!(shmproc_loom) {
                budget.slept(began.elapsed());
            }
            r
        };
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
            // Mutant: the sleeper skips its fence before the re-check.
            if shmproc_sync::mutant!("sleeper_no_fence") {
            } else if light {
                fence(Ordering::SeqCst);
            } else {
                self.heavy_fence();
            }
            if let Some(r) = attempt(true)? {
                return Ok(Some(learn(r)));
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
                return Ok(Some(learn(r)));
            }
        }
    }
}

impl<S: Storage> Ring<S> {
    /// The sleeping side's fence in `block`, between the waiter
    /// registration and the re-check: a membarrier, paired with the light
    /// fence in `wake`. Where this process cannot issue one, a SeqCst fence,
    /// and [`FLAG_FENCES`] tells every user of the ring to fence in `wake` too.
    fn heavy_fence(&self) {
        if !asym::heavy() {
            self.header().flags.fetch_or(FLAG_FENCES, Ordering::SeqCst);
        }
    }
}

/// A sleeper's registration ([`Ring::register`]), undone when dropped
/// (also on early returns).
pub(super) struct Registered<'a> {
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

/// The sleepers a waiters word counts: its record bits and its untracked
/// count (see [`RingHeader`](super::RingHeader)).
pub(super) fn sleeper_count(waiters: u32) -> u32 {
    (waiters & TRACKED_MASK).count_ones() + (waiters >> UNTRACKED_SHIFT)
}

/// Whether a sleeper record names a sleeper: not free (0) and not being
/// repaired.
pub(super) fn is_sleeper_record(record: u64) -> bool {
    record != 0 && record & REPAIRING == 0
}
