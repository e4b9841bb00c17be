//! [`RawLock`]: the owner-recording, crash-robust lock state machine.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering, spin_loop};

use crate::error::{LockResult, LockTimeoutError, OwnerDied, ReleaseError, TryLockError};

/// In `deaths`: set by the acquirer that took the lock over from a dead
/// holder, cleared by [`RawLock::clear_poison`]; the low 31 bits count the
/// take-overs.
const POISONED: u32 = 1 << 31;
use crate::futex::{self, Deadline, LOCK_SPIN_LIMIT, SLICE, Wake};
use crate::owner::{self, PID_MASK};

/// Set while a waiter may be sleeping on the word.
pub(crate) const WAITERS: u32 = 1 << 31;
const GEN_SHIFT: u32 = 22;
/// Bumped on every take-over from a dead owner, so the take-over CAS is unique.
const GEN_MASK: u32 = 0x1ff << GEN_SHIFT;
const GEN_ONE: u32 = 1 << GEN_SHIFT;

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Plainly.
    Clean,
    /// Taken over from this dead owner.
    FromDead(u32),
}

/// A non-recursive interprocess lock, laid out for shared memory.
///
/// This is the state a [`Lock`](crate::Lock) segment holds (and the lock
/// inside a [`Value`](crate::Value), [`Array`](crate::Array),
/// [`Condition`](crate::Condition) and [`Barrier`](crate::Barrier)); its
/// methods are what those types expose. It is owned by a **process**: like
/// Python's `multiprocessing.Lock`, any thread of any process may
/// [`release`](Self::release) it, and a guard may be sent between threads.
///
/// # Layout (`repr(C)`, 16 bytes, align 8)
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `word: AtomicU32` | futex word: bit 31 waiters, bits 22..31 take-over generation, bits 0..22 owner pid (0 = unlocked) |
/// | 4 | `deaths: AtomicU32` | bit 31 poisoned (a holder died; cleared by [`clear_poison`](Self::clear_poison)), bits 0..31 how many times a dead owner's lock was taken over (wrapping) |
/// | 8 | `owner: AtomicU64` | owner record `pid << 40 \| start_time & (2^40-1)`, 0 when unknown; detects pid reuse |
///
/// # Protocol
/// | word (pid, waiters) | meaning | next |
/// |---|---|---|
/// | (0, 0) | unlocked | CAS to (me, 0) fast path, or (me, 1) after sleeping |
/// | (p, 0) | locked, nobody sleeping | waiter CASes to (p, 1) then sleeps |
/// | (p, 1) | locked, maybe sleepers | release stores (0, 0) and wakes one |
/// | (p, *) with p dead | owner died | a waiter CASes to (me, 1) with gen + 1, sets poisoned, releases, reports [`OwnerDied`] |
///
/// # Poison
/// A holder that dies leaves the lock **poisoned**, as a panicking holder
/// leaves a `std::sync::Mutex`: the acquirer that takes it over, and every
/// later `lock`/`acquire` until [`clear_poison`](Self::clear_poison), gets
/// [`OwnerDied`] and does not hold the lock. Repair with
/// [`lock_ignoring_poison`](Self::lock_ignoring_poison), then `clear_poison`.
///
/// Waiters sleep in slices of at most 50 ms and check the owner's liveness
/// (pid exists, is not a zombie, has the recorded start time) after each
/// slice that nobody cut short. Every bit pattern is a valid state.
#[repr(C)]
pub struct RawLock {
    word: AtomicU32,
    deaths: AtomicU32,
    owner: AtomicU64,
}

#[cfg(not(shmproc_loom))]
shmproc_shm::shm_safe! {
    RawLock (size 16, align 8) {
        word @ 0: AtomicU32,
        deaths @ 4: AtomicU32,
        owner @ 8: AtomicU64,
    }
}

impl fmt::Debug for RawLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawLock")
            .field("owner", &self.owner_pid())
            .field("owner_deaths", &self.owner_deaths())
            .finish()
    }
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// An unlocked lock (all zeroes, as a fresh segment is).
    #[cfg(not(shmproc_loom))]
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            deaths: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// An unlocked lock (all zeroes, as a fresh segment is).
    #[cfg(shmproc_loom)]
    pub fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            deaths: AtomicU32::new(0),
            owner: AtomicU64::new(0),
        }
    }

    /// The pid of the process holding the lock, if it is held.
    pub fn owner_pid(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            p => Some(p),
        }
    }

    /// Whether the lock is held (by anyone).
    pub fn is_locked(&self) -> bool {
        self.owner_pid().is_some()
    }

    /// How many times a dead owner's lock was taken over (wrapping at
    /// 2^31). This is how the [`lock_api`] path, which cannot report
    /// [`OwnerDied`], makes owner deaths observable.
    pub fn owner_deaths(&self) -> u32 {
        self.deaths.load(Ordering::Relaxed) & !POISONED
    }

    /// Whether a holder died while holding the lock and the poison was not
    /// cleared since (std's `Mutex::is_poisoned`).
    pub fn is_poisoned(&self) -> bool {
        self.deaths.load(Ordering::Relaxed) & POISONED != 0
    }

    /// Clears the poison (std's `Mutex::clear_poison`): call it once the
    /// state the lock protects is repaired, best while holding the lock
    /// from [`lock_ignoring_poison`](Self::lock_ignoring_poison).
    pub fn clear_poison(&self) {
        // Relaxed: the flag travels with the lock word's Release/Acquire
        // (it is read by the next acquirer after its Acquire CAS).
        self.deaths.fetch_and(!POISONED, Ordering::Relaxed);
    }

    /// Marks the lock poisoned; the caller holds it.
    pub(crate) fn poison(&self) {
        self.deaths.fetch_or(POISONED, Ordering::Relaxed);
    }

    /// Turns an acquisition into the API's answer: a take-over from a dead
    /// holder poisons the lock; a poisoned lock is released again and
    /// reported.
    pub(crate) fn admit(&self, a: Acquired) -> Result<(), OwnerDied> {
        let died = match a {
            Acquired::FromDead(p) => {
                self.poison();
                Some(p)
            }
            Acquired::Clean => None,
        };
        if died.is_some() || self.is_poisoned() {
            self.release_raw();
            return Err(OwnerDied::new(died));
        }
        Ok(())
    }

    #[inline]
    fn record_owner(&self) {
        // The line is ours right after the CAS; skip the store when the same
        // process takes the lock again (the common case under contention
        // between few processes, and always when uncontended).
        let me = owner::my_record();
        if self.owner.load(Ordering::Relaxed) != me {
            self.owner.store(me, Ordering::Relaxed);
        }
    }

    /// Attempts the uncontended acquisition once.
    ///
    /// One CAS from "unlocked, generation 0" (a lock never taken over from
    /// a dead owner): no load before it, which under contention would
    /// fetch the line shared and then again exclusive for the CAS (a
    /// process-shared pthread mutex's lock is one CAS as well). A lock with
    /// a take-over generation gets a second CAS from the value found.
    #[inline]
    fn fast(&self, me: u32) -> bool {
        // Acquire (both CASes): pairs with the Release `fetch_and` in
        // `release_raw`, so the previous holder's writes are visible to us.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(cur) => {
                cur & PID_MASK == 0
                    && self
                        .word
                        .compare_exchange(
                            cur,
                            (cur & GEN_MASK) | me,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
            }
        }
    }

    /// Tries to take the lock over from the dead owner seen in `observed`.
    fn take_over(&self, observed: u32, me: u32) -> Option<Acquired> {
        let dead = observed & PID_MASK;
        let generation = (observed & GEN_MASK).wrapping_add(GEN_ONE) & GEN_MASK;
        // Keep the waiters bit: other waiters may be asleep.
        let new = generation | me | WAITERS;
        self.word
            // Acquire: pairs with whatever Release the dead owner managed; the
            // protected data may still be half-written (hence OwnerDied).
            .compare_exchange(observed, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // Count within the low 31 bits, keeping the poison bit.
        let _ = self
            .deaths
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some((d & POISONED) | (d.wrapping_add(1) & !POISONED))
            });
        self.record_owner();
        Some(Acquired::FromDead(dead))
    }

    /// Whether the owner in `word` is dead (a `/proc` read: slow path only).
    fn owner_dead(&self, word: u32) -> bool {
        let pid = word & PID_MASK;
        pid != 0 && !owner::owner_alive(pid, self.owner.load(Ordering::Relaxed))
    }

    /// Acquires, waiting until `deadline`; `None` when it expired.
    /// A deadline that is already expired makes this a `try`, which still
    /// checks once whether a holder is dead.
    pub(crate) fn acquire_until(&self, deadline: Deadline) -> Option<Acquired> {
        let me = owner::my_pid();
        if self.fast(me) {
            self.record_owner();
            return Some(Acquired::Clean);
        }
        self.acquire_slow(me, deadline)
    }

    #[cold]
    #[allow(
        clippy::absurd_extreme_comparisons,
        reason = "LOCK_SPIN_LIMIT is 0 in the default build (no spin), 1 under loom"
    )]
    fn acquire_slow(&self, me: u32, deadline: Deadline) -> Option<Acquired> {
        let mut spins = 0;
        let mut slept = false;
        let mut checked_try = false;
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur & PID_MASK == 0 {
                // After sleeping we cannot know whether others sleep too: keep
                // the waiters bit set so our release wakes them.
                let new = (cur & GEN_MASK) | me | if slept { WAITERS } else { 0 };
                if self
                    .word
                    // Acquire: pairs with the Release `fetch_and` in `release_raw`.
                    .compare_exchange(cur, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.record_owner();
                    return Some(Acquired::Clean);
                }
                continue;
            }
            if deadline.expired() {
                // A `try` (or a timeout) still takes over from a dead owner,
                // so polling callers cannot hang on a crashed holder.
                if !checked_try && self.owner_dead(cur) {
                    if let Some(a) = self.take_over(cur, me) {
                        return Some(a);
                    }
                    checked_try = true;
                    continue;
                }
                return None;
            }
            if spins < LOCK_SPIN_LIMIT && cur & WAITERS == 0 {
                spins += 1;
                spin_loop();
                continue;
            }
            if cur & WAITERS == 0
                && self
                    .word
                    .compare_exchange(cur, cur | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            let Some(slice) = deadline.slice(SLICE) else {
                continue; // expired: handled at the top
            };
            slept = true;
            if futex::wait(&self.word, cur | WAITERS, slice) == Wake::SliceElapsed
                && self.owner_dead(cur | WAITERS)
            {
                if let Some(a) = self.take_over(cur | WAITERS, me) {
                    return Some(a);
                }
            }
        }
    }

    /// Releases without any ownership check. Returns `false` when it was not locked.
    ///
    /// One atomic read-modify-write: clear the owner and the waiters bit,
    /// keep the take-over generation (stable while the lock is held). The
    /// owner record is left as it is: it only counts while it names the pid
    /// in the word, and the next holder rewrites it.
    pub(crate) fn release_raw(&self) -> bool {
        // Release: pairs with the Acquire CAS of the next acquirer.
        let prev = self.word.fetch_and(GEN_MASK, Ordering::Release);
        if prev & PID_MASK == 0 {
            return false;
        }
        if prev & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
        true
    }

    /// The futex word, for tests of corrupt states.
    #[doc(hidden)]
    pub fn word_for_tests(&self) -> &AtomicU32 {
        &self.word
    }

    // ---- Python-style API -------------------------------------------------

    /// Blocks until the lock is acquired (Python's `acquire()`).
    ///
    /// # Errors
    /// [`OwnerDied`] when a holder died and the lock is poisoned: not held.
    pub fn acquire(&self) -> Result<(), OwnerDied> {
        self.admit(self.acquire_until(Deadline::NEVER).expect("no deadline"))
    }

    /// Acquires if free (Python's `acquire(block=False)`). Checks once
    /// whether the holder is dead, reading `/proc` when the lock is held.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] when held by a live owner;
    /// [`TryLockError::OwnerDied`] when poisoned (not held).
    #[doc(alias = "acquire_nowait")]
    pub fn try_acquire(&self) -> Result<(), TryLockError> {
        let me = owner::my_pid();
        let a = if self.fast(me) {
            self.record_owner();
            Acquired::Clean
        } else {
            self.acquire_slow(me, Deadline::after(Duration::ZERO))
                .ok_or(TryLockError::WouldBlock)?
        };
        Ok(self.admit(a)?)
    }

    /// Acquires, waiting at most `timeout` (Python's `acquire(timeout=t)`).
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`], or [`LockTimeoutError::OwnerDied`]
    /// (not held).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), LockTimeoutError> {
        self.acquire_by(Deadline::after(timeout))
    }

    /// Acquires, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<(), LockTimeoutError> {
        self.acquire_by(Deadline::at(deadline))
    }

    fn acquire_by(&self, deadline: Deadline) -> Result<(), LockTimeoutError> {
        let a = self
            .acquire_until(deadline)
            .ok_or(LockTimeoutError::Timeout)?;
        Ok(self.admit(a)?)
    }

    /// Releases the lock (Python's `release()`). As in Python, any thread or
    /// process may release a `Lock`, not only the one that acquired it.
    ///
    /// # Errors
    /// [`ReleaseError::NotLocked`] when it is not held.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.release_raw() {
            Ok(())
        } else {
            Err(ReleaseError::NotLocked)
        }
    }

    // ---- Guards --------------------------------------------------------------

    /// Blocks until the lock is acquired; the guard releases it on drop.
    ///
    /// # Errors
    /// [`OwnerDied`] when a holder died and the lock is poisoned (not held).
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        self.acquire().map(|()| LockGuard::new(self))
    }

    /// Acquires if free; see [`try_acquire`](Self::try_acquire).
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError> {
        self.try_acquire().map(|()| LockGuard::new(self))
    }

    /// Acquires, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockTimeoutError> {
        self.acquire_timeout(timeout).map(|()| LockGuard::new(self))
    }

    /// Acquires, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> Result<LockGuard<'_>, LockTimeoutError> {
        self.acquire_deadline(deadline)
            .map(|()| LockGuard::new(self))
    }

    /// Blocks until the lock is acquired, poisoned or not (taking it over
    /// from a dead holder poisons it): the way to repair the state after
    /// [`OwnerDied`], then [`clear_poison`](Self::clear_poison).
    pub fn lock_ignoring_poison(&self) -> LockGuard<'_> {
        self.acquire_ignoring_poison(Deadline::NEVER);
        LockGuard::new(self)
    }

    /// Acquires until `deadline` whether poisoned or not (a take-over
    /// poisons); whether it acquired.
    pub(crate) fn acquire_ignoring_poison(&self, deadline: Deadline) -> bool {
        match self.acquire_until(deadline) {
            Some(Acquired::FromDead(_)) => {
                self.poison();
                true
            }
            Some(Acquired::Clean) => true,
            None => false,
        }
    }
}

/// Holds a [`RawLock`] (of a [`Lock`](crate::Lock), [`Value`](crate::Value),
/// ...); releases it on drop.
///
/// `Send` (a `Lock` is owned by its process, and Python lets any thread
/// release it) but not `Sync`:
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<shmproc_sync::LockGuard<'static>>();
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a RawLock,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a RawLock) -> Self {
        Self {
            lock,
            _not_sync: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn raw(&self) -> &'a RawLock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release_raw();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock)
            .finish()
    }
}

/// `lock_api` support: `lock_api::Mutex<RawLock, T>` and friends work, with
/// one honest difference: [`lock_api::RawMutex::lock`] cannot report
/// [`OwnerDied`], so on that path the lock is acquired whether poisoned or
/// not (as [`RawLock::lock_ignoring_poison`]). A take-over still poisons it
/// and is counted in [`RawLock::owner_deaths`], which callers can compare
/// before and after.
/// (A `lock_api::Mutex` never goes into a segment: it is not `repr(C)`; use
/// [`Value`](crate::Value) for data shared between processes.)
#[cfg(not(shmproc_loom))]
#[allow(unsafe_code)]
// SAFETY: the lock is exclusive: `acquire_until` returns only after a CAS
// that installs this process's pid into a word whose pid field was 0 (or
// that of a dead process), and `unlock` is only called by the holder (the
// trait's contract).
unsafe impl lock_api::RawMutex for RawLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawLock::new();
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        self.acquire_ignoring_poison(Deadline::NEVER);
    }

    fn try_lock(&self) -> bool {
        self.acquire_ignoring_poison(Deadline::after(Duration::ZERO))
    }

    unsafe fn unlock(&self) {
        self.release_raw();
    }

    fn is_locked(&self) -> bool {
        RawLock::is_locked(self)
    }
}

#[cfg(not(shmproc_loom))]
#[allow(unsafe_code)]
// SAFETY: as for `RawMutex`; `try_lock_for` waits at most the given duration.
unsafe impl lock_api::RawMutexTimed for RawLock {
    type Duration = Duration;
    type Instant = std::time::Instant;

    fn try_lock_for(&self, timeout: Duration) -> bool {
        self.acquire_ignoring_poison(Deadline::after(timeout))
    }

    fn try_lock_until(&self, deadline: std::time::Instant) -> bool {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.try_lock_for(left)
    }
}

/// A `lock_api::GetThreadId` that is unique across processes
/// (`pid << 32 | tid`), for `lock_api::ReentrantMutex<RawLock, ShmThreadId, T>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShmThreadId;

#[cfg(not(shmproc_loom))]
#[allow(unsafe_code)]
// SAFETY: tids are unique among the live threads of a pid namespace and never
// 0, so `pid << 32 | tid` is non-zero and unique among live threads of all
// processes; it is refreshed after fork (the tid cache is keyed by pid).
unsafe impl lock_api::GetThreadId for ShmThreadId {
    const INIT: Self = ShmThreadId;

    fn nonzero_thread_id(&self) -> std::num::NonZeroUsize {
        let id = (u64::from(owner::my_pid()) << 32) | u64::from(owner::my_tid());
        std::num::NonZeroUsize::new(id as usize).expect("a tid is never 0")
    }
}

/// A [`RawLock`] decoded from a copy of its 16 bytes (any bytes: every
/// pattern is a state), for tools that read a segment without mapping it
/// (`shmproc_sync::inspect`).
#[cfg(not(shmproc_loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockSnapshot {
    /// The pid in the lock word: the holder (`None`: unlocked).
    pub owner_pid: Option<u32>,
    /// The waiters bit: a waiter may be asleep.
    pub waiters: bool,
    /// The take-over generation (bumped on every take-over from a dead holder).
    pub generation: u32,
    /// A holder died and the poison was not cleared since.
    pub poisoned: bool,
    /// How many times a dead holder's lock was taken over.
    pub owner_deaths: u32,
    /// The holder's owner record (`pid << 40 | start time`), 0 when unknown.
    pub owner_record: u64,
}

#[cfg(not(shmproc_loom))]
impl LockSnapshot {
    /// Bytes a [`RawLock`] spans.
    pub const LEN: usize = std::mem::size_of::<RawLock>();

    /// Decodes the lock at the start of `bytes` (native endian); `None`
    /// when fewer than [`LEN`](Self::LEN) bytes are given.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        use std::mem::offset_of;
        let u32_at = |off: usize| {
            let b = bytes.get(off..)?.first_chunk::<4>()?;
            Some(u32::from_ne_bytes(*b))
        };
        let word = u32_at(offset_of!(RawLock, word))?;
        let deaths = u32_at(offset_of!(RawLock, deaths))?;
        let rec = bytes
            .get(offset_of!(RawLock, owner)..)?
            .first_chunk::<8>()
            .map(|b| u64::from_ne_bytes(*b))?;
        Some(Self {
            owner_pid: Some(word & PID_MASK).filter(|&p| p != 0),
            waiters: word & WAITERS != 0,
            generation: (word & GEN_MASK) >> GEN_SHIFT,
            poisoned: deaths & POISONED != 0,
            owner_deaths: deaths & !POISONED,
            owner_record: rec,
        })
    }

    /// Whether the holder is alive, judged now by the rule waiters use
    /// ([`owner::owner_alive`]: pid and, when recorded, start time);
    /// `None` when the lock is not held.
    pub fn holder_alive(&self) -> Option<bool> {
        self.owner_pid
            .map(|p| owner::owner_alive(p, self.owner_record))
    }
}
