//! The `Pod` path's claim protocol over an abstract word store: the chunk
//! cursor (`CURSOR`, `job << 32 | next chunk`), each worker's state word
//! (`done << 32 | held chunk + 1`, with [`PENDING`] while it claims), the
//! job's count of chunks done and its done flags, and the pool's reading
//! of a dead worker's words ([`settle_dead`], with `lost_pending`).
//!
//! Production runs it over the control block's words in shared memory
//! (`worker.rs`, `lib.rs`); the loom model (`tests/loom_pool.rs`,
//! `--cfg shmproc_loom`) runs the same functions over loom atomics on the
//! heap ([`Word`] and [`Flag`] are implemented for both), with a model
//! thread dying at each crash point named here:
//!
//! | point | where |
//! |---|---|
//! | `pool-pending` | a worker, its chunk stored as pending, before its compare-and-swap on the cursor |
//! | `pool-claimed` | after the swap won, before the chunk shows as held |
//! | `pool-held` | the chunk held, before it runs |
//! | `pool-ran` | the chunk ran, before its done flag |
//! | `pool-flagged` | the done flag set, before the worker counts the chunk |
//!
//! Every access is `SeqCst`, as it always was: the protocol reads words of
//! several workers and the cursor and relies on one total order of them.

// Private to the crate outside the model, where `lib.rs` declares the
// module `pub` (doc-hidden) for the loom model.
#![cfg_attr(not(shmproc_loom), allow(unreachable_pub))]

use shmproc_shm::sync::real;

use crate::worker::PENDING;

/// A 64-bit word of the protocol (every access `SeqCst`).
pub trait Word {
    /// `load(SeqCst)`.
    fn load(&self) -> u64;
    /// `fetch_add(v, SeqCst)`.
    fn fetch_add(&self, v: u64) -> u64;
    /// `fetch_sub(v, SeqCst)`.
    fn fetch_sub(&self, v: u64) -> u64;
    /// `fetch_and(v, SeqCst)`.
    fn fetch_and(&self, v: u64) -> u64;
    /// `compare_exchange(current, new, SeqCst, SeqCst)`.
    fn compare_exchange(&self, current: u64, new: u64) -> Result<u64, u64>;
}

/// A chunk's done flag (every access `SeqCst`).
pub trait Flag {
    /// `load(SeqCst)`.
    fn load(&self) -> u32;
    /// `store(v, SeqCst)`.
    fn store(&self, v: u32);
}

macro_rules! impl_words {
    ($w:ty, $f:ty, $o:path) => {
        impl Word for $w {
            #[inline]
            fn load(&self) -> u64 {
                <$w>::load(self, $o)
            }
            #[inline]
            fn fetch_add(&self, v: u64) -> u64 {
                <$w>::fetch_add(self, v, $o)
            }
            #[inline]
            fn fetch_sub(&self, v: u64) -> u64 {
                <$w>::fetch_sub(self, v, $o)
            }
            #[inline]
            fn fetch_and(&self, v: u64) -> u64 {
                <$w>::fetch_and(self, v, $o)
            }
            #[inline]
            fn compare_exchange(&self, current: u64, new: u64) -> Result<u64, u64> {
                <$w>::compare_exchange(self, current, new, $o, $o)
            }
        }
        impl Flag for $f {
            #[inline]
            fn load(&self) -> u32 {
                <$f>::load(self, $o)
            }
            #[inline]
            fn store(&self, v: u32) {
                <$f>::store(self, v, $o)
            }
        }
    };
}

impl_words!(real::AtomicU64, real::AtomicU32, real::Ordering::SeqCst);
// Under the model the shim's atomics are loom's (or shuttle's): other types.
#[cfg(shmproc_loom)]
impl_words!(
    shmproc_shm::sync::AtomicU64,
    shmproc_shm::sync::AtomicU32,
    shmproc_shm::sync::Ordering::SeqCst
);

/// A crash point of the table above: under the model, the calling model
/// thread dies here when its model named the point; nothing otherwise.
#[inline(always)]
fn crash(name: &'static str) {
    #[cfg(shmproc_loom)]
    shmproc_sync::model::crash_point(name);
    #[cfg(not(shmproc_loom))]
    let _ = name;
}

/// Whether the seeded mutant `name` runs (`SHMPROC_MUTANT`, model only).
macro_rules! mutant {
    ($name:literal) => {{
        #[cfg(shmproc_loom)]
        let on = shmproc_sync::mutant!($name);
        #[cfg(not(shmproc_loom))]
        let on = false;
        on
    }};
}

/// A worker's side of one job: runs the `retry` chunk first (when there
/// is one, below `n_chunks`), then claims chunks from `cursor` until it is
/// spent, another job's, or `budget` chunks are done. `run(c)` runs chunk
/// `c`; `wake()` wakes the pool (after the job's last chunk). Returns the
/// chunks done.
#[allow(clippy::too_many_arguments)]
pub fn work<'a, W: Word, F: Flag + 'a>(
    cursor: &W,
    state: &W,
    done_word: &W,
    flag: impl Fn(u64) -> &'a F,
    (job, n_chunks, retry, budget): (u64, u64, u64, u64),
    mut run: impl FnMut(u64),
    mut wake: impl FnMut(),
) -> u64 {
    let done = std::cell::Cell::new(0u64);
    // `held`: whether the slot already shows the chunk as held.
    let mut do_chunk = |c: u64, held: bool| {
        if !held {
            // Hold the chunk (the slot's low half was 0).
            state.fetch_add(c + 1);
        }
        crash("pool-held");
        run(c);
        crash("pool-ran");
        // The chunk's done flag first (the pool reads it when this worker
        // dies before the next step), then done + 1 and held = 0 in one
        // atomic step.
        flag(c).store(1);
        crash("pool-flagged");
        state.fetch_add((1u64 << 32).wrapping_sub(c + 1));
        // Only the call's last chunk wakes the pool: a wake per chunk would
        // have the pool's thread compete with the workers for the CPUs.
        // (A chunk lost to a death is found by the pool's periodic check.)
        if done_word.fetch_add(1) + 1 >= n_chunks {
            wake();
        }
        done.set(done.get() + 1);
    };
    if retry < n_chunks {
        do_chunk(retry, false);
    }
    loop {
        if done.get() >= budget {
            // `maxtasksperchild`: leave; the pool replaces this worker.
            break;
        }
        let v = cursor.load();
        let c = v & 0xffff_ffff;
        if v >> 32 != job || c >= n_chunks {
            break;
        }
        if mutant!("pool_claim_unannounced") {
            // The claim first, the slot after: a death in between loses
            // the chunk (what the pending record is for).
            if cursor.compare_exchange(v, v + 1).is_ok() {
                crash("pool-claimed");
                do_chunk(c, false);
            }
            continue;
        }
        // Record the chunk as pending before claiming it, so that the
        // pool can tell, if this worker dies right after the claim,
        // which chunk it took (see `lost_pending`).
        state.fetch_add(PENDING | (c + 1));
        crash("pool-pending");
        if cursor.compare_exchange(v, v + 1).is_ok() {
            crash("pool-claimed");
            state.fetch_sub(PENDING);
            do_chunk(c, true);
        } else {
            state.fetch_sub(PENDING | (c + 1));
        }
    }
    done.get()
}

/// The pool's view of one job's words.
pub trait Table {
    /// The state words' and the cursor's type.
    type W: Word;
    /// The done flags' type.
    type F: Flag;
    /// The number of worker slots.
    fn workers(&self) -> usize;
    /// The chunk cursor.
    fn cursor(&self) -> &Self::W;
    /// Worker `slot`'s state word.
    fn state(&self, slot: usize) -> &Self::W;
    /// Chunk `c`'s done flag.
    fn flag(&self, c: u64) -> &Self::F;
    /// Whether worker `slot`'s process is alive.
    fn alive(&self, slot: usize) -> bool;
}

/// What the words of a dead worker say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    /// It held nothing that is not done or held elsewhere.
    Nothing,
    /// It finished chunk `c` (done flag set) but died before counting it:
    /// the pool counts it.
    Finished(u64),
    /// Chunk `c` is lost unless run again.
    Lost(u64),
}

/// Reads dead worker `i`'s slot for `job` and clears its held chunk (its
/// done count stays). `claimed_below`: after an abort, chunks from there on
/// were never claimed; `assigned[j]`: the retry chunk handed to slot `j`'s
/// replacement.
pub fn settle_dead<T: Table>(
    t: &T,
    i: usize,
    job: u64,
    claimed_below: u64,
    assigned: &[Option<u64>],
) -> Dead {
    let low = t.state(i).load() & 0xffff_ffff;
    let mut dead = Dead::Nothing;
    if low & PENDING != 0 {
        let c = (low & !PENDING).wrapping_sub(1);
        if lost_pending(t, c, i, job, claimed_below, assigned) {
            dead = Dead::Lost(c);
        }
    } else if low != 0 {
        let c = low - 1;
        if t.flag(c).load() != 0 && !mutant!("pool_finished_is_lost") {
            // Finished, but died before counting it.
            dead = Dead::Finished(c);
        } else {
            dead = Dead::Lost(c);
        }
    } else if let Some(c) = assigned.get(i).copied().flatten() {
        // A replacement that died before it showed its retry.
        // Held elsewhere first, then the flag (as in `lost_pending`).
        if !held_elsewhere(t, c, i, assigned) && t.flag(c).load() == 0 {
            dead = Dead::Lost(c);
        }
    }
    t.state(i).fetch_and(!0xffff_ffff);
    dead
}

/// Whether a slot other than `me` holds chunk `c` (its swap won) or was
/// handed `c` as its retry. A *pending* record of `c` is no holder: it may
/// be a worker whose swap is about to fail (it read the cursor before the
/// dead worker's swap moved it).
fn held_elsewhere<T: Table>(t: &T, c: u64, me: usize, assigned: &[Option<u64>]) -> bool {
    (0..t.workers()).filter(|&j| j != me).any(|j| {
        let low = t.state(j).load() & 0xffff_ffff;
        let shown = if mutant!("pool_pending_counts_as_held") {
            low & !PENDING
        } else {
            low
        };
        shown == c + 1 || assigned.get(j).copied().flatten() == Some(c)
    })
}

/// Worker `me` died with chunk `i` pending (stored before its
/// compare-and-swap on the cursor): whether its swap won, so that the
/// chunk is lost unless run again.
///
/// The order of the reads is the argument (every access `SeqCst`):
/// 1. The cursor: not past `i`, nobody's swap took `i` (the dead worker's
///    swap, if any, came before its death, before this read).
/// 2. Past `i`: someone's swap took it, after storing its pending record,
///    so before this read. Wait until no live worker shows `i` pending: the
///    winner, if alive, then shows `i` held or has finished it; a pending
///    record of `i` that appears later is a worker whose swap must fail
///    (the cursor is past `i`).
/// 3. No live worker holds `i` (strictly: held, not pending), then the
///    done flag: a holder sets the flag before it lets go, so a chunk
///    finished between the reads has its flag set by the second.
///
/// Found by the loom model (`tests/loom_pool.rs`): with the wait before
/// the cursor read and pending records counted as holders, a worker whose
/// swap was about to fail hid the dead worker's chunk (it was never run
/// and the pool waited forever: `pool_death_at_claimed`); with the flag
/// read before the holders, a worker finished the chunk and claimed the
/// next one between the two reads (the chunk ran and counted twice:
/// `pool_death_at_pending`).
fn lost_pending<T: Table>(
    t: &T,
    i: u64,
    me: usize,
    job: u64,
    claimed_below: u64,
    assigned: &[Option<u64>],
) -> bool {
    let cur = t.cursor().load();
    let next = if cur >> 32 == job {
        cur & 0xffff_ffff
    } else {
        u64::MAX
    };
    // Nobody's swap passed `i`: nothing was claimed.
    if i >= next.min(claimed_below) {
        return false;
    }
    // A live worker with `i` pending resolves it within instructions.
    for _ in 0..100_000 {
        if mutant!("pool_pending_no_wait") {
            break;
        }
        let busy = (0..t.workers())
            .any(|j| j != me && t.state(j).load() & 0xffff_ffff == PENDING | (i + 1) && t.alive(j));
        if !busy {
            break;
        }
        shmproc_shm::sync::yield_now();
    }
    if mutant!("pool_flag_before_shown") {
        return t.flag(i).load() == 0 && !held_elsewhere(t, i, me, assigned);
    }
    !held_elsewhere(t, i, me, assigned) && t.flag(i).load() == 0
}

/// Moves the cursor of `job` to its end; returns where it was and how many
/// chunks nobody had claimed yet.
pub fn abort_cursor<W: Word>(cursor: &W, job: u64, n_chunks: u64) -> (u64, u64) {
    let mut v = cursor.load();
    loop {
        let next = v & 0xffff_ffff;
        if v >> 32 != job || next >= n_chunks {
            return (n_chunks, 0);
        }
        match cursor.compare_exchange(v, (job << 32) | n_chunks) {
            Ok(_) => return (next, n_chunks - next),
            Err(cur) => v = cur,
        }
    }
}
