//! [`Queue`]: a bounded MPMC queue of `Pod` values in shared memory.

#![allow(unsafe_code)] // ReadGuard: a `&T` to a claimed slot, in place (zero-copy read).
#![deny(clippy::indexing_slicing)]

use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::mem::{align_of, size_of};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::sync::{Ordering, spin_loop};
use shmproc_shm::{OpenOptions, Segment, SegmentKind, SegmentLayout, Source, TypeSpec};
use shmproc_sync::futex::{Deadline, SPIN_LIMIT};

use crate::crash;
use crate::error::{
    Corrupt, GetError, GetTimeoutError, PutError, PutTimeoutError, QueueError, Stop, TryGetError,
    TryPutError,
};
use crate::ring::{
    Claim, Fast, LeaseState, MAX_CAPACITY, Pop, Push, Ring, Side, Until, ring_bytes,
};
use crate::storage::SegmentStorage;

/// A bounded multi-producer, multi-consumer queue of `T: Pod` in a
/// shared-memory segment: Python's `multiprocessing.Queue`, for plain data.
///
/// Any process opens it by name ([`open`](Self::open)) or inherits it as an
/// fd ([`open_fd`](Self::open_fd)); values are copied into a slot once and
/// read from it (in place with [`get_ref`](Self::get_ref)). The ring is
/// lock-free (Vyukov's per-slot stamps, see `src/ring/mod.rs`); blocking
/// calls spin briefly, then sleep on a shared futex in bounded slices, and
/// the other side makes a wake system call only when someone sleeps.
///
/// | Python | shmproc |
/// |---|---|
/// | `Queue(maxsize)` | [`Queue::new`] (anonymous), [`Queue::create`] (named), [`Queue::open`] |
/// | `put(x)`, `put(x, timeout=t)`, `put_nowait(x)` | [`put`](Self::put), [`put_timeout`](Self::put_timeout) (or [`put_deadline`](Self::put_deadline)), [`try_put`](Self::try_put) |
/// | `get()`, `get(timeout=t)`, `get_nowait()` | [`get`](Self::get), [`get_timeout`](Self::get_timeout) (or [`get_deadline`](Self::get_deadline)), [`try_get`](Self::try_get) |
/// | `qsize()`, `empty()`, `full()` | [`qsize`](Self::qsize), [`empty`](Self::empty), [`full`](Self::full) (exact) |
/// | `close()` | [`close`](Self::close): later puts fail, gets drain then report [`GetError::Closed`] |
///
/// # One producer, one consumer
/// The first thread to put takes the producers' *lease*, and the first to
/// get the consumers': while a side has one thread, its operations run
/// with plain loads and stores, no locked instruction (64 B messages, one
/// producer and one consumer process: about the speed of a minimal SPSC
/// ring). The first put (or get) by another thread, in any process,
/// revokes that side's lease, and the side runs the multi-producer (or
/// multi-consumer) protocol from then on. See
/// [`producer_lease`](Self::producer_lease) and the ring's docs
/// (`src/ring/mod.rs`).
///
/// # Crash safety
/// A producer killed between claiming a slot and publishing it does not
/// wedge consumers: they skip its position once they see it dead
/// ([`skipped_writes`](Self::skipped_writes)); a lease holder killed
/// mid-put published nothing, and the next producer writes over it. A
/// consumer killed mid-read loses that one message, counted in
/// [`abandoned_reads`](Self::abandoned_reads); a lease holder killed inside
/// `get` had returned nothing, and its message goes to the next consumer.
///
/// # Fork
/// A forked child inherits the mapping and may use the handle; the creator
/// (and only it, in its own process) unlinks the name on drop.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_channel::Queue;
/// let name = format!("doc-queue-{}", std::process::id());
/// let q = Queue::<u64>::create(&name, 8)?;
/// let other = Queue::<u64>::open(&name)?; // any process, by name
/// other.put(42)?;
/// assert_eq!(q.get()?, 42);
/// assert!(q.try_get().is_err());
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    ring: Ring<SegmentStorage>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("segment", &self.ring.storage().segment().label())
            .field("maxsize", &self.ring.maxsize())
            .field("len", &self.ring.len())
            .finish()
    }
}

/// The ring's slots for a requested capacity (`maxsize`): the next power of
/// two (the ring holds exactly `maxsize`, see `Ring::room`).
fn ring_capacity(capacity: usize) -> Result<u64, QueueError> {
    let c = capacity as u64;
    if capacity == 0 || c > MAX_CAPACITY {
        return Err(QueueError::invalid(
            "queue",
            format!("capacity {}: must be 1..=2^30", capacity),
        ));
    }
    Ok(c.next_power_of_two())
}

impl<T: Pod> Queue<T> {
    const SLOT: u64 = {
        assert!(
            align_of::<T>() <= 16,
            "queue elements must be aligned to at most 16 bytes"
        );
        size_of::<T>() as u64
    };

    fn type_spec() -> TypeSpec {
        TypeSpec::of::<T>().with_slot_size(Self::SLOT)
    }

    pub(crate) fn make(
        name: Option<&str>,
        kind: SegmentKind,
        capacity: usize,
    ) -> Result<Self, QueueError> {
        let cap = ring_capacity(capacity)?;
        let bytes = ring_bytes(cap, Self::SLOT).ok_or(QueueError::invalid(
            "queue",
            format!("capacity {}: must be 1..=2^30", capacity),
        ))?;
        let layout = SegmentLayout::new(kind, Self::type_spec().with_capacity(cap), bytes);
        let pending = match name {
            Some(n) => Segment::create(n, &layout),
            None => Segment::create_anonymous(&layout),
        }
        .map_err(QueueError::segment("create", "queue"))?;
        // Dropping `pending` on an error poisons and unlinks the segment.
        SegmentStorage::init(pending.segment(), Self::SLOT as usize, capacity as u64)?;
        let seg = pending.publish();
        let storage = SegmentStorage::new(seg, Self::SLOT as usize)?;
        Ok(Self::from_storage(storage, kind))
    }

    pub(crate) fn from_storage(storage: SegmentStorage, kind: SegmentKind) -> Self {
        Self {
            ring: Ring::new(storage, kind == SegmentKind::JOINABLE_QUEUE),
            _t: PhantomData,
        }
    }

    /// The storage back (its mapping and validated geometry), this handle's
    /// local state dropped: the fuzz harness (`fuzzing.rs`) keeps one
    /// mapping across inputs and builds a new handle on it for each.
    pub(crate) fn into_storage(self) -> SegmentStorage {
        self.ring.into_storage()
    }

    pub(crate) fn options(kind: SegmentKind) -> OpenOptions {
        OpenOptions::new(kind, Self::type_spec()).payload_len(|c| ring_bytes(c, Self::SLOT))
    }

    pub(crate) fn open_with(kind: SegmentKind, source: Source<'_>) -> Result<Self, QueueError> {
        let seg = Self::options(kind)
            .open_source(source)
            .map_err(QueueError::segment("open", "queue"))?;
        let storage = SegmentStorage::new(seg, Self::SLOT as usize)?;
        Ok(Self::from_storage(storage, kind))
    }

    /// An anonymous queue that holds at most `capacity` values (Python's
    /// `maxsize`: the `capacity + 1`-th `try_put` is
    /// [`Full`](TryPutError::Full)), shared with children by fork or by fd.
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`] for 0 or more than 2^30; segment errors.
    pub fn new(capacity: usize) -> Result<Self, QueueError> {
        Self::make(None, SegmentKind::QUEUE, capacity)
    }

    /// A named queue that holds at most `capacity` values (as
    /// [`new`](Self::new)) that other processes [`open`](Self::open) by `name`.
    ///
    /// # Errors
    /// As [`new`](Self::new), plus the name errors and
    /// [`AlreadyExists`](shmproc_shm::SegmentError::AlreadyExists).
    pub fn create(name: &str, capacity: usize) -> Result<Self, QueueError> {
        Self::make(Some(name), SegmentKind::QUEUE, capacity)
    }

    /// Opens the named queue, which must hold `T`s.
    ///
    /// # Errors
    /// [`QueueError::Segment`] (not found, another kind or element type,
    /// truncated...), [`QueueError::Corrupt`] when the ring header disagrees
    /// with the segment header.
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Self::open_with(SegmentKind::QUEUE, Source::Name(name))
    }

    /// Opens the queue behind `fd` (from [`inheritable_fd`](Self::inheritable_fd)).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, QueueError> {
        Self::open_with(SegmentKind::QUEUE, Source::Fd(fd))
    }

    // ------------------------------------------------------------------ put
    //
    // Every form is `put_until` (one attempt loop over an `Until`) behind an
    // inline first attempt: the leased put (`fast_put`) runs inline, with
    // the value by value, and only when it did not send does a form call
    // its cold wrapper (the CAS protocol, the wait), which returns that
    // form's error with the value in it. Built inline, such an `Err` made
    // the compiler keep `value` where the `Result` holds it (at offset 1 for
    // byte arrays) and copy it from there in odd overlapping pieces, which
    // stalled each send until the store buffer drained (queue_hotpath
    // stream: 0.5x). `try_put` alone runs the CAS attempt inline too.

    /// One claim attempt; `again` for the retries of one call (see
    /// [`Ring::try_claim_push_again`]).
    #[inline]
    fn claim_put(&self, check_dead: bool, again: bool) -> Result<Option<Claim>, Stop> {
        if self.ring.is_closed() {
            return Err(Stop::Closed);
        }
        let r = if again {
            self.ring.try_claim_push_again(check_dead)
        } else {
            self.ring.try_claim_push(check_dead)
        };
        match r? {
            Push::Claimed(c) => Ok(Some(c)),
            Push::Full => Ok(None),
        }
    }

    /// Writes `value` into a claimed slot and publishes it; `false` when
    /// the slot was taken from us (retry).
    #[inline]
    fn fill(&self, claim: Claim, value: &T) -> bool {
        let dst = self.ring.payload_ptr(&claim).cast::<T>();
        // SAFETY: `dst` is the payload of the slot we claimed (WRITING with our
        // pid), so no process following the protocol touches it until our
        // publish; it lies inside the mapping (storage bounds) and holds
        // `slot_size == size_of::<T>()` bytes (the storage was made with
        // `Self::SLOT`), aligned to 16 >= align_of T (asserted in `SLOT`).
        // A typed write, not a byte copy of run-time length (no `memcpy` call).
        unsafe { dst.write(*value) };
        crash::point("put-claimed");
        self.ring.publish(claim)
    }

    /// One attempt to send `value`: `Ok(true)` sent, `Ok(false)` no room
    /// now. The leased fast path first (this thread holds the producers'
    /// lease: plain stores only), else a claim of the CAS protocol.
    #[inline]
    fn attempt_put(&self, value: &T, check_dead: bool, again: bool) -> Result<bool, Stop> {
        if self.ring.is_closed() {
            return Err(Stop::Closed);
        }
        let fast = self.ring.fast_push(|dst| {
            // The tail slot is free for this position (EMPTY) and ours alone
            // (we hold the producers' lease, inside a leased operation).
            // SAFETY: `dst` is that slot's payload, in bounds and aligned as in
            // `fill`; no process following the protocol reads it before the
            // publish.
            unsafe { dst.cast::<T>().write(*value) };
            crash::point("put-claimed");
        });
        match fast {
            Fast::Done(()) => return Ok(true),
            Fast::Idle => return Ok(false),
            Fast::Other => {}
        }
        match self.claim_put(check_dead, again)? {
            None => Ok(false),
            // `false`: the slot was taken from us (a corrupt peer); the
            // next attempt claims another.
            Some(c) => Ok(self.fill(c, value)),
        }
    }

    /// The put, after the caller's first attempt found no room: attempts
    /// until `value` is sent (`Ok(true)`) or `until` passes (`Ok(false)`).
    /// [`Until::Now`] is one more attempt, checking liveness.
    #[inline]
    fn put_until(&self, value: &T, until: Until) -> Result<bool, Stop> {
        // A retry loads the stamp before it CASes (see
        // `Ring::try_claim_push_again`); the blocking forms' first attempt
        // here CASes, as the inline one did.
        let mut again = matches!(until, Until::Now);
        let sent = self.ring.block_until(Side::Put, until, |cd| {
            let r = self.attempt_put(value, cd, again);
            again = true;
            r.map(|sent| sent.then_some(()))
        })?;
        Ok(sent.is_some())
    }

    /// [`put`](Self::put) after its first attempt found no room.
    #[cold]
    #[inline(never)]
    fn put_slow(&self, value: T) -> Result<(), PutError<T>> {
        loop {
            match self.put_until(&value, Until::NEVER) {
                Ok(true) => return Ok(()),
                // Without a deadline `block` does not give up; were it to,
                // waiting on is what `put` means.
                Ok(false) => {}
                Err(s) => return Err(PutError::stopped(s, value)),
            }
        }
    }

    /// [`put_deadline`](Self::put_deadline) (and `put_timeout`) after the
    /// first attempt found no room.
    #[cold]
    #[inline(never)]
    fn put_deadline_slow(&self, value: T, deadline: Deadline) -> Result<(), PutTimeoutError<T>> {
        match self.put_until(&value, Until::At(deadline)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PutTimeoutError::Timeout(value)),
            Err(s) => Err(PutError::stopped(s, value).into()),
        }
    }

    /// [`try_put`](Self::try_put) after its attempt failed: one more (a
    /// slot taken from us, which only a corrupt peer does, or a full ring
    /// seen by a CAS that lost the line), else the error with `value` back.
    #[cold]
    #[inline(never)]
    fn try_put_slow(&self, value: T, first: Result<bool, Stop>) -> Result<(), TryPutError<T>> {
        match first.and_then(|_| self.put_until(&value, Until::Now)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TryPutError::Full(value)),
            Err(s) => Err(PutError::stopped(s, value).into()),
        }
    }

    /// Puts `value`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`PutError::Closed`] once the queue is closed, [`PutError::Corrupt`];
    /// the value comes back in the error.
    #[inline]
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        if let Fast::Done(()) = self.fast_put(value) {
            return Ok(());
        }
        self.put_slow(value)
    }

    /// The leased put of `value`, the first attempt of every put form:
    /// [`Fast::Other`] also for a closed queue (the CAS attempt after it
    /// reports that).
    ///
    /// Always inline, with the value by value. Called out of line (as
    /// `attempt_put`, with the value behind a reference) the first attempt
    /// cost a call frame: the value stored to the stack, six saved
    /// registers pushed. In a 64 B stream whose consumer polls the slot the
    /// producer writes next, each message's stamp store waits for the line
    /// to come back, and every later store waits behind it (x86 commits
    /// stores in order): those dozen extra stores per message filled the
    /// store buffer, and the producer stalled at the next call's first push
    /// (`perf annotate`: 82 % of `attempt_put`'s samples on `push %rbx`).
    /// Inline, blocking `put`/`get` went from 0.64x to 0.95x the minimal
    /// SPSC ring (queue_compare `--stream64`, shared L3), level with the
    /// `try_` forms.
    #[inline(always)]
    fn fast_put(&self, value: T) -> Fast<()> {
        if self.ring.is_closed() {
            return Fast::Other;
        }
        self.ring.fast_push(|dst| {
            // SAFETY: `dst` is the tail slot's payload, free for this
            // position (EMPTY) and ours alone (the producers' lease, inside
            // a leased operation): in bounds and aligned as in `fill`, and
            // no process following the protocol reads it before the publish.
            unsafe { dst.cast::<T>().write(value) };
            crash::point("put-claimed");
        })
    }

    /// Puts `value`, waiting at most `timeout` for room
    /// ([`put_deadline`](Self::put_deadline) at now + `timeout`; a timeout
    /// too large for an `Instant` waits as long as it takes).
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`], [`PutTimeoutError::Closed`],
    /// [`PutTimeoutError::Corrupt`].
    #[inline]
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        if let Fast::Done(()) = self.fast_put(value) {
            return Ok(());
        }
        self.put_deadline_slow(value, Deadline::after(timeout))
    }

    /// Puts `value`, waiting for room until `deadline` (one attempt when it
    /// has passed).
    ///
    /// # Errors
    /// As [`put_timeout`](Self::put_timeout).
    #[inline]
    pub fn put_deadline(&self, value: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        if let Fast::Done(()) = self.fast_put(value) {
            return Ok(());
        }
        self.put_deadline_slow(value, Deadline::at(deadline))
    }

    /// Puts `value` if there is room now.
    ///
    /// # Errors
    /// [`TryPutError::Full`], [`TryPutError::Closed`], [`TryPutError::Corrupt`].
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        match self.fast_put(value) {
            Fast::Done(()) => return Ok(()),
            // Exact (the leased producer found the previous lap's message
            // at its tail): full, without the second look that
            // `try_put_slow` takes. In a caller's spin loop every look pulls
            // the line of the slot being drained away from its consumer.
            Fast::Idle => return Self::try_put_full(value),
            Fast::Other => {}
        }
        match self.attempt_put(&value, true, false) {
            Ok(true) => Ok(()),
            r => self.try_put_slow(value, r),
        }
    }

    /// [`try_put`](Self::try_put)'s exact "full", out of line (see `put`'s
    /// notes on building an `Err` with the value inline).
    #[cold]
    #[inline(never)]
    fn try_put_full(value: T) -> Result<(), TryPutError<T>> {
        Err(TryPutError::Full(value))
    }

    /// Puts as many of `values` as there is room for now, in order; returns
    /// how many (0 when the queue is full). The values not put stay in the
    /// caller's slice, so the error carries none.
    ///
    /// # Errors
    /// [`PutError::Closed`] or [`PutError::Corrupt`] when nothing was put.
    pub fn put_many(&self, values: &[T]) -> Result<usize, PutError<()>> {
        let mut n = 0;
        for v in values {
            match self.try_put(*v) {
                Ok(()) => n += 1,
                Err(TryPutError::Closed(_)) if n == 0 => return Err(PutError::Closed(())),
                Err(TryPutError::Corrupt(c)) if n == 0 => return Err(PutError::Corrupt(c)),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    // ------------------------------------------------------- put in place

    /// One attempt of an in-place put: `f` (taken from `f` only once a
    /// slot is ours) writes the message into the slot. `Ok(true)` sent,
    /// `Ok(false)` no room now.
    #[inline]
    fn attempt_put_with<F: FnOnce(&mut T)>(
        &self,
        f: &mut Option<F>,
        check_dead: bool,
        again: bool,
    ) -> Result<bool, Stop> {
        if self.ring.is_closed() {
            return Err(Stop::Closed);
        }
        let fast = self.ring.fast_push(|dst| {
            let f = f.take().expect("an in-place put writes once");
            // SAFETY: `dst` is the payload of the tail slot, free for this
            // position (EMPTY) and ours alone (the producers' lease, inside a
            // leased operation): in bounds, aligned to 16 >= align_of T and
            // `size_of::<T>()` bytes (as in `fill`); T: Pod, so the slot's old
            // bits are a valid T; no process following the protocol reads or
            // writes it before our publish (crate docs, borrowed guards).
            f(unsafe { &mut *dst.cast::<T>() });
            crash::point("put-claimed");
        });
        match fast {
            Fast::Done(()) => return Ok(true),
            Fast::Idle => return Ok(false),
            Fast::Other => {}
        }
        let Some(claim) = self.claim_put(check_dead, again)? else {
            return Ok(false);
        };
        let f = f.take().expect("an in-place put writes once");
        let dst = self.ring.payload_ptr(&claim).cast::<T>();
        // Unwinding out of `f` cancels the claim (nothing is sent).
        let open = CancelOnUnwind {
            ring: &self.ring,
            claim,
        };
        // SAFETY: `dst` is the payload of the slot we claimed (WRITING with our
        // pid): in bounds and aligned as in `fill`; T: Pod, so its old bits are
        // a valid T; nobody following the protocol touches it until our
        // publish (crate docs, borrowed guards).
        f(unsafe { &mut *dst });
        std::mem::forget(open);
        crash::point("put-claimed");
        if self.ring.publish(claim) {
            Ok(true)
        } else {
            Err(Stop::Corrupt(Corrupt::new(
                "slot taken while being written",
                claim.pos(),
            )))
        }
    }

    #[inline]
    fn put_with_until<F: FnOnce(&mut T)>(&self, f: F, until: Until) -> Result<bool, Stop> {
        let mut f = Some(f);
        // The leased put inline (as `fast_put`), the rest out of line.
        if !self.ring.is_closed() {
            let fast = self.ring.fast_push(|dst| {
                if let Some(f) = f.take() {
                    // SAFETY: as in `attempt_put_with`: the leased producer's
                    // free tail slot, in bounds, aligned, a valid T (Pod),
                    // untouched by others before our publish.
                    f(unsafe { &mut *dst.cast::<T>() });
                }
                crash::point("put-claimed");
            });
            if let Fast::Done(()) = fast {
                return Ok(true);
            }
        }
        self.put_with_slow(f, until)
    }

    /// [`put_with_until`](Self::put_with_until) after its leased attempt.
    #[cold]
    #[inline(never)]
    fn put_with_slow<F: FnOnce(&mut T)>(
        &self,
        mut f: Option<F>,
        until: Until,
    ) -> Result<bool, Stop> {
        if self.attempt_put_with(&mut f, false, false)? {
            return Ok(true);
        }
        let mut again = matches!(until, Until::Now);
        let sent = self.ring.block_until(Side::Put, until, |cd| {
            let r = self.attempt_put_with(&mut f, cd, again);
            again = true;
            r.map(|sent| sent.then_some(()))
        })?;
        Ok(sent.is_some())
    }

    /// Puts a message written in place: once a slot is claimed, `f` writes
    /// the message into it (the slot holds an old message's bits, or zeros,
    /// when `f` gets it), so a large `T` is copied once, by `f`, from
    /// wherever the user keeps it. Waits for room as long as it takes;
    /// `f` runs once, and only when the message will be sent.
    ///
    /// The slot is this process's by the ring protocol while `f` runs: see
    /// the crate's [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
    /// `f` should be short: consumers waiting for this position wait for it.
    ///
    /// # Errors
    /// [`PutError::Closed`] once the queue is closed (`f` did not run),
    /// [`PutError::Corrupt`].
    ///
    /// # Panics
    /// When `f` panics: the claim is given up first (nothing is sent; a
    /// consumer steps over the position, counted in
    /// [`skipped_writes`](Self::skipped_writes) when the queue ran the
    /// multi-producer protocol).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use shmproc_channel::Queue;
    /// let q = Queue::<[u8; 4096]>::new(4)?;
    /// let page = vec![7u8; 4096];
    /// q.put_with(|slot| slot.copy_from_slice(&page))?;
    /// let mut out = [0u8; 4096];
    /// q.get_into(&mut out)?;
    /// assert_eq!(out[4095], 7);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn put_with(&self, f: impl FnOnce(&mut T)) -> Result<(), PutError<()>> {
        match self.put_with_until(f, Until::NEVER) {
            Ok(_) => Ok(()),
            Err(s) => Err(PutError::stopped(s, ())),
        }
    }

    /// [`put_with`](Self::put_with), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`] (`f` did not run), and as
    /// [`put_with`](Self::put_with).
    #[inline]
    pub fn put_with_timeout(
        &self,
        f: impl FnOnce(&mut T),
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<()>> {
        match self.put_with_until(f, Until::At(Deadline::after(timeout))) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PutTimeoutError::Timeout(())),
            Err(s) => Err(PutError::stopped(s, ()).into()),
        }
    }

    /// [`put_with`](Self::put_with) if there is room now.
    ///
    /// # Errors
    /// [`TryPutError::Full`] (`f` did not run), and as
    /// [`put_with`](Self::put_with).
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put_with(&self, f: impl FnOnce(&mut T)) -> Result<(), TryPutError<()>> {
        match self.put_with_until(f, Until::Now) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TryPutError::Full(())),
            Err(s) => Err(PutError::stopped(s, ()).into()),
        }
    }

    // ------------------------------------------------------------------ get
    //
    // As for puts: every form is `get_until` (or `claim_until` for the
    // in-place forms) behind an inline leased attempt. The value is copied
    // into an out-parameter, not returned in a `Result`: carried in one, a
    // byte array sits at an odd offset and was copied from there in
    // overlapping pieces whose loads could not be forwarded from the stores
    // before them (the same stall as `put`'s).

    /// One claim attempt; `Ok(None)`: wait (empty, or a live producer is
    /// still writing the head position). `again` for the retries of one
    /// call (see [`Ring::try_claim_pop_again`]).
    #[inline]
    fn claim_get(&self, check_dead: bool, again: bool) -> Result<Option<Claim>, Stop> {
        match self.ring.claim_pop_waiting(check_dead, again)? {
            Pop::Claimed(c) => Ok(Some(c)),
            Pop::Empty if self.ring.is_closed() => Err(Stop::Closed),
            Pop::Empty | Pop::Busy => Ok(None),
        }
    }

    /// The non-blocking claim: `Ok(None)` when empty (a position a live
    /// producer is still writing is given a few spins first).
    #[inline]
    fn claim_get_now(&self) -> Result<Option<Claim>, Stop> {
        for spin in 0..=SPIN_LIMIT {
            let check_dead = spin == SPIN_LIMIT;
            let r = if spin == 0 {
                self.ring.try_claim_pop(check_dead)
            } else {
                self.ring.try_claim_pop_again(check_dead)
            };
            match r? {
                Pop::Claimed(c) => return Ok(Some(c)),
                Pop::Empty if self.ring.is_closed() => return Err(Stop::Closed),
                Pop::Empty => return Ok(None),
                // A producer is between claim and publish: give it a moment,
                // then (last round) check it is alive.
                Pop::Busy => spin_loop(),
            }
        }
        Ok(None)
    }

    /// Claims the next position by `until`: `Ok(None)` when it passed.
    #[inline]
    fn claim_until(&self, until: Until) -> Result<Option<Claim>, Stop> {
        match until {
            Until::Now => self.claim_get_now(),
            Until::At(deadline) => {
                let mut again = false;
                self.ring.block(Side::Get, deadline, |cd| {
                    let r = self.claim_get(cd, again);
                    again = true;
                    r
                })
            }
        }
    }

    /// Copies the claimed value into `out` (whole when `Ok`) and releases
    /// the slot.
    #[inline]
    fn take(&self, claim: Claim, out: &mut MaybeUninit<T>) -> Result<(), Corrupt> {
        let src = self.ring.payload_ptr(&claim).cast::<T>();
        // SAFETY: `src` is the payload of the slot we claimed (READING with our
        // pid): in bounds and aligned as in `fill`; the producer's Release
        // publish pairs with our Acquire claim; copied into a distinct local
        // of one T, never referenced in place, and T: Pod is valid for any
        // bits (torn bytes from a protocol breaker are still a valid T, and
        // `release` reports a slot taken from us).
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), 1) };
        crash::point("get-claimed");
        if self.ring.release(claim) {
            Ok(())
        } else {
            Err(Corrupt::new("slot taken while being read", claim.pos()))
        }
    }

    /// The leased get (this thread holds the consumers' lease: plain loads
    /// and stores only): `Ok(true)` with `out` written whole, `Ok(false)`
    /// when the head position is exactly not produced yet, `Err(None)` when
    /// the CAS protocol must decide.
    // Always inline: out of line, the call's frame (the out-parameter on
    // the stack, six saved registers) put a dozen more stores behind each
    // message's contended stamp store (see `fast_put`).
    #[inline(always)]
    fn fast_get(&self, out: &mut MaybeUninit<T>) -> Result<bool, Option<Stop>> {
        let fast = self.ring.fast_pop(|src| {
            // The head slot is published for this position (FULL; its Release
            // publish pairs with our Acquire stamp load) and ours alone (we
            // hold the consumers' lease, inside a leased operation).
            // SAFETY: `src` is that slot's payload, in bounds and aligned as in
            // `fill`, unwritten until our release; `out` is a distinct local of
            // one T; T: Pod is valid for any bits (copied out, never borrowed).
            unsafe { std::ptr::copy_nonoverlapping(src.cast::<T>(), out.as_mut_ptr(), 1) };
            crash::point("get-claimed");
        });
        match fast {
            Fast::Done(()) => Ok(true),
            Fast::Idle if self.ring.is_closed() => Err(Some(Stop::Closed)),
            Fast::Idle => Ok(false),
            Fast::Other => Err(None),
        }
    }

    /// One attempt of a blocking get: `Ok(true)` with `out` written whole,
    /// `Ok(false)` to wait.
    #[inline]
    fn attempt_get(
        &self,
        out: &mut MaybeUninit<T>,
        check_dead: bool,
        again: bool,
    ) -> Result<bool, Stop> {
        match self.fast_get(out) {
            Ok(got) => return Ok(got),
            Err(Some(e)) => return Err(e),
            Err(None) => {}
        }
        match self.claim_get(check_dead, again)? {
            Some(c) => self.take(c, out).map(|()| true).map_err(Stop::from),
            None => Ok(false),
        }
    }

    /// The get, after the caller's leased attempt: `Ok(true)` with `out`
    /// written whole, `Ok(false)` when nothing came by `until`.
    /// [`Until::Now`] claims what is there now (the leased attempt was the
    /// caller's).
    #[inline]
    fn get_until(&self, out: &mut MaybeUninit<T>, until: Until) -> Result<bool, Stop> {
        match until {
            Until::Now => match self.claim_get_now()? {
                Some(c) => self.take(c, out).map(|()| true).map_err(Stop::from),
                None => Ok(false),
            },
            Until::At(deadline) => {
                let mut again = false;
                let got = self.ring.block(Side::Get, deadline, |cd| {
                    let r = self.attempt_get(out, cd, again);
                    again = true;
                    r.map(|got| got.then_some(()))
                })?;
                Ok(got.is_some())
            }
        }
    }

    /// The leased get inline, else `slow` (out of line).
    #[inline]
    fn get_or<E>(&self, slow: impl FnOnce(&Self) -> Result<T, E>) -> Result<T, E> {
        let mut out = MaybeUninit::uninit();
        if let Ok(true) = self.fast_get(&mut out) {
            // SAFETY: `fast_get` wrote `out` whole when it answers true.
            return Ok(unsafe { out.assume_init() });
        }
        slow(self)
    }

    /// [`get`](Self::get) after its leased attempt.
    #[cold]
    #[inline(never)]
    fn get_slow(&self) -> Result<T, GetError> {
        let mut out = MaybeUninit::uninit();
        loop {
            match self.get_until(&mut out, Until::NEVER) {
                // SAFETY: `get_until` wrote `out` whole when it answers true.
                Ok(true) => return Ok(unsafe { out.assume_init() }),
                // Never without a deadline (see `put_slow`).
                Ok(false) => {}
                Err(s) => return Err(GetError::stopped(s)),
            }
        }
    }

    /// [`get_deadline`](Self::get_deadline) (and `get_timeout`) after the
    /// leased attempt.
    #[cold]
    #[inline(never)]
    fn get_deadline_slow(&self, deadline: Deadline) -> Result<T, GetTimeoutError> {
        let mut out = MaybeUninit::uninit();
        match self.get_until(&mut out, Until::At(deadline)) {
            // SAFETY: `get_until` wrote `out` whole when it answers true.
            Ok(true) => Ok(unsafe { out.assume_init() }),
            Ok(false) => Err(GetTimeoutError::Timeout),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    /// Takes the next value, waiting as long as it takes.
    ///
    /// # Errors
    /// [`GetError::Closed`] once the queue is closed and drained,
    /// [`GetError::Corrupt`].
    #[inline]
    pub fn get(&self) -> Result<T, GetError> {
        self.get_or(Self::get_slow)
    }

    /// Takes the next value, waiting at most `timeout`
    /// ([`get_deadline`](Self::get_deadline) at now + `timeout`).
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`], [`GetTimeoutError::Closed`],
    /// [`GetTimeoutError::Corrupt`].
    #[inline]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_or(|q| q.get_deadline_slow(Deadline::after(timeout)))
    }

    /// Takes the next value, waiting until `deadline` (one attempt when it
    /// has passed).
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    #[inline]
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.get_or(|q| q.get_deadline_slow(Deadline::at(deadline)))
    }

    /// Takes the next value if one is there now.
    ///
    /// # Errors
    /// [`TryGetError::Empty`], [`TryGetError::Closed`], [`TryGetError::Corrupt`].
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        let mut out = MaybeUninit::uninit();
        let r = match self.fast_get(&mut out) {
            Ok(got) => Ok(got),
            Err(Some(s)) => Err(s),
            Err(None) => self.get_until(&mut out, Until::Now),
        };
        match r {
            // SAFETY: `fast_get` and `get_until` write `out` whole when they
            // answer true.
            Ok(true) => Ok(unsafe { out.assume_init() }),
            Ok(false) => Err(TryGetError::Empty),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    /// `out` as the out-parameter of the get paths, which write a whole
    /// `T` into it or nothing.
    #[inline]
    fn as_out(out: &mut T) -> &mut MaybeUninit<T> {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout; the get paths only ever
        // write a whole `T` through it (a copy from a published slot, valid
        // for any bits as T: Pod), so `out` holds a valid T at every point.
        unsafe { &mut *std::ptr::from_mut(out).cast::<MaybeUninit<T>>() }
    }

    /// Takes the next value into `out` (one copy, from the slot straight
    /// into the caller's `T`: no value on the stack in between), waiting as
    /// long as it takes.
    ///
    /// # Errors
    /// As [`get`](Self::get); `out` is unchanged then.
    #[inline]
    pub fn get_into(&self, out: &mut T) -> Result<(), GetError> {
        let out = Self::as_out(out);
        if let Ok(true) = self.fast_get(out) {
            return Ok(());
        }
        self.get_into_slow(out)
    }

    #[cold]
    #[inline(never)]
    fn get_into_slow(&self, out: &mut MaybeUninit<T>) -> Result<(), GetError> {
        loop {
            match self.get_until(out, Until::NEVER) {
                Ok(true) => return Ok(()),
                // Never without a deadline (see `put_slow`).
                Ok(false) => {}
                Err(s) => return Err(GetError::stopped(s)),
            }
        }
    }

    /// [`get_into`](Self::get_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout); `out` is unchanged then.
    pub fn get_into_timeout(&self, out: &mut T, timeout: Duration) -> Result<(), GetTimeoutError> {
        let out = Self::as_out(out);
        if let Ok(true) = self.fast_get(out) {
            return Ok(());
        }
        match self.get_until(out, Until::At(Deadline::after(timeout))) {
            Ok(true) => Ok(()),
            Ok(false) => Err(GetTimeoutError::Timeout),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    /// [`get_into`](Self::get_into) if a value is there now.
    ///
    /// # Errors
    /// As [`try_get`](Self::try_get); `out` is unchanged then.
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get_into(&self, out: &mut T) -> Result<(), TryGetError> {
        let out = Self::as_out(out);
        let r = match self.fast_get(out) {
            Ok(got) => Ok(got),
            Err(Some(s)) => Err(s),
            Err(None) => self.get_until(out, Until::Now),
        };
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(TryGetError::Empty),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    /// Moves up to `max` values that are there now into `out`; returns how
    /// many (0 when the queue is empty).
    ///
    /// # Errors
    /// [`GetError::Closed`] or [`GetError::Corrupt`] when nothing was taken.
    pub fn get_many(&self, out: &mut Vec<T>, max: usize) -> Result<usize, GetError> {
        let mut n = 0;
        while n < max {
            match self.try_get() {
                Ok(v) => {
                    out.push(v);
                    n += 1;
                }
                Err(TryGetError::Closed) if n == 0 => return Err(GetError::Closed),
                Err(TryGetError::Corrupt(c)) if n == 0 => return Err(GetError::Corrupt(c)),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// Borrows the next value in place (zero-copy), waiting as long as it
    /// takes; the slot is released when the guard drops.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_ref(&self) -> Result<ReadGuard<'_, T>, GetError> {
        loop {
            match self.claim_until(Until::NEVER) {
                Ok(Some(c)) => return Ok(self.guard(c)),
                // Never without a deadline (see `put_slow`).
                Ok(None) => {}
                Err(s) => return Err(GetError::stopped(s)),
            }
        }
    }

    /// Borrows the next value in place, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_ref_timeout(&self, timeout: Duration) -> Result<ReadGuard<'_, T>, GetTimeoutError> {
        self.get_ref_until(Deadline::after(timeout))
    }

    /// Borrows the next value in place, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_ref_deadline(&self, deadline: Instant) -> Result<ReadGuard<'_, T>, GetTimeoutError> {
        self.get_ref_until(Deadline::at(deadline))
    }

    fn get_ref_until(&self, deadline: Deadline) -> Result<ReadGuard<'_, T>, GetTimeoutError> {
        match self.claim_until(Until::At(deadline)) {
            Ok(Some(c)) => Ok(self.guard(c)),
            Ok(None) => Err(GetTimeoutError::Timeout),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    /// Borrows the next value in place if one is there now.
    ///
    /// # Errors
    /// As [`try_get`](Self::try_get).
    #[doc(alias = "get_nowait")]
    pub fn try_get_ref(&self) -> Result<ReadGuard<'_, T>, TryGetError> {
        match self.claim_until(Until::Now) {
            Ok(Some(c)) => Ok(self.guard(c)),
            Ok(None) => Err(TryGetError::Empty),
            Err(s) => Err(GetError::stopped(s).into()),
        }
    }

    fn guard(&self, claim: Claim) -> ReadGuard<'_, T> {
        ReadGuard {
            ring: &self.ring,
            claim,
            ptr: self.ring.payload_ptr(&claim).cast::<T>(),
        }
    }

    // ---------------------------------------------------------------- state

    /// Messages in the queue now, from the indices: exact when no put or get
    /// is in flight (a message counts from its publish until its consumer
    /// has read it, see `Ring::len` in `src/ring/mpmc.rs`).
    pub fn qsize(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue holds no message now.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds [`capacity`](Self::capacity) messages now.
    pub fn full(&self) -> bool {
        self.ring.len() >= self.ring.maxsize()
    }

    /// The most values the queue holds: the capacity it was created with
    /// (Python's `maxsize`).
    pub fn capacity(&self) -> usize {
        self.ring.maxsize() as usize
    }

    /// Closes the queue for every process: later puts fail with
    /// [`PutError::Closed`]; gets drain what is there, then fail with
    /// [`GetError::Closed`]. Sleepers on both sides are woken.
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether the queue was closed (by any process).
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// Positions skipped so far because their producer died between claiming
    /// and publishing (those messages were never sent).
    pub fn skipped_writes(&self) -> u64 {
        self.ring.header().skipped_writes.load(Ordering::Relaxed)
    }

    /// Messages lost so far because their consumer died while reading them.
    pub fn abandoned_reads(&self) -> u64 {
        self.ring.header().abandoned_reads.load(Ordering::Relaxed)
    }

    /// Consumers (any process) registered as asleep in a blocking get now;
    /// a diagnostic snapshot. One killed while asleep stays counted until
    /// a producer, finding its wakes wake nobody, checks the registered
    /// sleepers' liveness and takes the count back (up to 13 sleepers per
    /// side are tracked that way).
    pub fn sleeping_consumers(&self) -> u32 {
        self.ring.sleepers(Side::Get)
    }

    /// Producers registered as asleep in a blocking put now (as
    /// [`sleeping_consumers`](Self::sleeping_consumers)).
    pub fn sleeping_producers(&self) -> u32 {
        self.ring.sleepers(Side::Put)
    }

    /// Who holds the producers' lease now (a diagnostic snapshot): the
    /// first thread to put takes it and runs its puts with plain stores; the
    /// first put by another thread revokes it, and from then on every
    /// producer runs the CAS protocol (see `src/ring/mod.rs`, "Leases").
    ///
    /// # Errors
    /// [`Corrupt`] for a lease word no process writes.
    pub fn producer_lease(&self) -> Result<LeaseState, Corrupt> {
        self.ring.lease_state(true)
    }

    /// Who holds the consumers' lease now (as
    /// [`producer_lease`](Self::producer_lease), for gets).
    ///
    /// # Errors
    /// [`Corrupt`] for a lease word no process writes.
    pub fn consumer_lease(&self) -> Result<LeaseState, Corrupt> {
        self.ring.lease_state(false)
    }

    /// The name, for a named queue.
    pub fn name(&self) -> Option<&str> {
        self.segment().name().map(shmproc_shm::SegmentName::as_str)
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        self.ring.storage().segment()
    }

    /// The underlying segment, to [`persist`](Segment::persist) it, say.
    pub fn segment_mut(&mut self) -> &mut Segment {
        self.ring.storage_mut().segment_mut()
    }

    /// A duplicate of the segment's fd that a child started with `exec`
    /// inherits; the child passes it to [`open_fd`](Self::open_fd).
    ///
    /// # Errors
    /// [`QueueError::Segment`] when the fd cannot be duplicated.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, QueueError> {
        self.segment()
            .inheritable_fd()
            .map_err(QueueError::segment("share", "queue"))
    }

    pub(crate) fn ring(&self) -> &Ring<SegmentStorage> {
        &self.ring
    }
}

/// Gives a claimed slot up when an in-place writer unwinds
/// ([`Queue::put_with`]).
struct CancelOnUnwind<'a> {
    ring: &'a Ring<SegmentStorage>,
    claim: Claim,
}

impl Drop for CancelOnUnwind<'_> {
    fn drop(&mut self) {
        let _ = self.ring.cancel(self.claim);
    }
}

/// A message borrowed in place from its slot ([`Queue::get_ref`]): no copy.
/// The slot is released (and a waiting producer woken) when the guard drops.
///
/// The slot is this process's by the ring protocol (its stamp says
/// `READING` with our pid) until then; a process that scribbles over it
/// anyway breaks the protocol, as it could any shared structure. See the
/// crate's [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
pub struct ReadGuard<'a, T> {
    ring: &'a Ring<SegmentStorage>,
    claim: Claim,
    ptr: *mut T,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` is the payload of the slot we claimed (READING with our
        // pid): inside the mapping (storage bounds), aligned to 16 >= align_of
        // T (asserted in Queue::SLOT), holding a published T (the producer's
        // Release publish pairs with our Acquire claim); T: Pod is valid for
        // any bits, and no process following the protocol writes the slot
        // before we release it in Drop, after this borrow ends.
        unsafe { &*self.ptr }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        crash::point("get-claimed");
        // `false` means the slot was no longer ours (a corrupt peer's
        // write): nothing to do here but not touch it again.
        let _ = self.ring.release(self.claim);
    }
}

impl<T: fmt::Debug> fmt::Debug for ReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadGuard").field(&**self).finish()
    }
}
