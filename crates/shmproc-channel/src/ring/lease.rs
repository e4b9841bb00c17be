//! Side leases: the first thread to operate on a side runs it with plain
//! loads and stores ([`Ring::fast_push`], [`Ring::fast_pop`]) until another
//! thread revokes the lease, after which the side runs the CAS protocol for
//! good.
//!
//! Invariants (module docs of [`ring`](super), "Leases"): the lease word
//! only moves free -> held -> revoking -> fenced -> shared (or straight to
//! shared); the CAS protocol runs on a side only once it is shared, or by
//! the holder itself, never beside a holder's plain stores; a holder's
//! `active` record is set (then the light fence, then the lease re-checked)
//! for the whole of each leased operation, and a revoker reads it only after
//! its heavy fence.

use shmproc_shm::sync::{Ordering, spin_loop};
use shmproc_sync::{asym, owner};

use super::Storage;
use super::layout::LEASE_FREE;
use super::layout::{FLAG_FENCES, IndexLine};
use super::stamp::{EMPTY, FULL, stamp};
use super::{Ring, Side};
use crate::error::Corrupt;

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
#[cfg(not(any(fuzzing, shmproc_loom)))]
const LEASE_SPINS: u32 = 256;
/// Fuzz builds: one thread of one process, so an `active` record that is
/// set is a scribble, never a holder mid-operation (as `STUCK_LIMIT`).
/// Loom: one look (a spin is a yield there; more only add states).
#[cfg(any(fuzzing, shmproc_loom))]
const LEASE_SPINS: u32 = 1;

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
        lease_state_of(self.line(side).lease.load(Ordering::Relaxed))
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
        // Mutant: the revoker skips its heavy fence.
        if shmproc_sync::mutant!("lease_no_heavy_fence") {
            return true;
        }
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
        let (tid, record) = owner::my_tid_and_record();
        let mine = lease_word(LEASE_HELD, tid);
        // Relaxed: a pre-check that keeps non-holders from writing `active`;
        // the check that counts is the one after the fence.
        if line.lease.load(Ordering::Relaxed) != mine {
            return false;
        }
        // Relaxed, then the light fence: the Dekker pair with the revoker's
        // lease CAS and heavy fence (module docs, "Leases"). A compiler
        // fence when every user can issue membarrier, else a SeqCst fence.
        line.active.store(record, Ordering::Relaxed);
        let fences = self.header().flags.load(Ordering::Relaxed) & FLAG_FENCES != 0;
        asym::light(!fences && asym::ready());
        // Mutant: the holder skips its re-check after the fence.
        if shmproc_sync::mutant!("lease_skip_recheck") {
            return true;
        }
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
    #[inline(always)]
    pub(crate) fn fast_push(&self, fill: impl FnOnce(*mut u8)) -> Fast<()> {
        let line = &self.header().tail;
        if !self.enter(line) {
            return Fast::Other;
        }
        // Relaxed: only the holder moves the tail while the lease is held
        // (and this thread's own earlier moves are program-ordered).
        let p = line.value.load(Ordering::Relaxed);
        // `maxsize` messages already (see `room`): full.
        if !self.room(p) {
            self.leave(line);
            return Fast::Idle;
        }
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
        // A `fill` that unwinds (an in-place writer's panic) sent nothing:
        // the stamp is still EMPTY and the tail unmoved; only the operation
        // must be closed. (No landing pad when `fill` cannot unwind.)
        let open = Leave { ring: self, line };
        fill(self.storage.payload_ptr(p & self.mask));
        std::mem::forget(open);
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
    #[inline(always)]
    pub(crate) fn fast_pop<R>(&self, read: impl FnOnce(*const u8) -> R) -> Fast<R> {
        self.fast_pop_if(|src| Some(read(src)))
    }

    /// [`fast_pop`](Self::fast_pop) where `read` may decline the message
    /// (`None`: a record the CAS protocol must handle, such as a
    /// `ByteQueue`'s side or cancelled record): it then stays published,
    /// untouched, and the answer is [`Fast::Other`].
    #[inline(always)]
    pub(crate) fn fast_pop_if<R>(&self, read: impl FnOnce(*const u8) -> Option<R>) -> Fast<R> {
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
        let Some(r) = read(self.storage.payload_ptr(p & self.mask)) else {
            self.leave(line);
            return Fast::Other;
        };
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

/// Closes a leased operation whose body unwound ([`Ring::fast_push`]).
struct Leave<'a, S: Storage> {
    ring: &'a Ring<S>,
    line: &'a IndexLine,
}

impl<S: Storage> Drop for Leave<'_, S> {
    fn drop(&mut self) {
        self.ring.leave(self.line);
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

/// A lease word as the diagnostic [`LeaseState`] (what
/// [`Ring::lease_state`] reports, and `shmproc_channel::inspect` for a copy
/// of the header); [`Corrupt`] for a value no process writes.
pub(super) fn lease_state_of(l: u64) -> Result<LeaseState, Corrupt> {
    decode_lease(l).map(|w| match w {
        Word::Free => LeaseState::Free,
        Word::Shared => LeaseState::Shared,
        Word::Held(tid) => LeaseState::Held(tid),
        Word::Revoking(tid) | Word::Fenced(tid) => LeaseState::Revoking(tid),
    })
}
