//! Asymmetric fences for a Dekker pair across processes: a free fence on the
//! hot side, `membarrier(2)` on the side that is about to sleep.
//!
//! A sleeper and a waker must not both miss each other: the waker stores its
//! progress and then loads "is anyone waiting?"; the sleeper stores "I am
//! waiting" and then loads the progress. On x86 each side needs a full fence
//! between its store and its load (store buffering), and on the hot side
//! (every message of a busy pipe) that fence waits for the store to leave the
//! core: with the index line in the peer's cache, a whole cache-line round
//! trip per message.
//!
//! With `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` the sleeper forces a
//! full barrier on every CPU running a registered process, so the hot side
//! needs only a compiler fence: either its store was issued before the
//! barrier reached its CPU (then the sleeper's re-check after the call sees
//! it), or its load runs after that barrier (then it sees the sleeper's
//! flag, stored before the call). This is the pattern of folly's
//! `asymmetricHeavyBarrier` and of liburcu's membarrier flavour, here
//! between processes.
//!
//! # Who may use the light side
//! Only a process registered with `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`
//! ([`enable`]; registration is per process and dropped by `exec`, so it is
//! redone per pid), and only while every process that may sleep on the
//! other side can issue the heavy barrier. A structure shares that fact in a
//! word of its own: a process whose [`enable`] fails sets it (see
//! `Connection` in `shmproc-channel`), and [`light`] then falls back to a
//! real fence. Where the kernel or a seccomp filter refuses `membarrier`,
//! both sides therefore use `SeqCst` fences, as before.
//!
//! # Under the model (`cfg(shmproc_loom)`)
//! This module is the one place where the asymmetric pair is mapped for
//! loom: [`light`] and [`heavy`] both become `fence(SeqCst)` (loom's), and
//! whether this "process" can issue `membarrier` (so [`ready`], [`enable`]
//! and [`heavy`]'s answer) is the model's (`model::membarrier`).
//!
//! Why that is sound for what the models check. `membarrier(GLOBAL_EXPEDITED)`
//! guarantees that, by the time it returns, every thread of every
//! registered process has run a full memory barrier, or was not running
//! user code in between (a context switch is one): for each light-side
//! thread, its program order is split at some point `B` into what is
//! ordered before the heavy side's later accesses and what is ordered after
//! its earlier ones, as if a `SeqCst` fence had been executed at `B`. A
//! compiler fence keeps the light side's store and load on either side of
//! any such `B`, so the pair behaves as store, `fence(SeqCst)`, load on the
//! light side against store, `fence(SeqCst)`, load on the heavy side: the
//! C11 store-buffering litmus with two `SeqCst` fences, which forbids both
//! loads missing the other store. Mapping both sides to `fence(SeqCst)` is
//! therefore exactly the guarantee the protocols rely on, and loom checks
//! every outcome the C11 model allows with it.
//!
//! What the mapping does not cover: the real light side is a compiler
//! fence only, so it orders nothing on its own (a protocol that leaned on
//! it without a heavy side's barrier, or whose heavy side ran before the
//! light side's store was issued, is not what loom sees); that the kernel
//! delivers the barrier to every CPU of a *registered* process (a process
//! that never registered, or whose registration was lost by `exec`, is
//! modelled only through `model::set_no_membarrier`, i.e. the
//! `FLAG_FENCES` fallback); and the first, light sleep of a waiter (after a
//! `SeqCst` fence only, [`LIGHT_SLEEP`]), which in production may miss a
//! wake by design and is late by at most that long: under the model its
//! waker's fence is a real one, so that miss is not explored.

#[cfg(not(shmproc_loom))]
use shmproc_shm::os;
#[cfg(not(shmproc_loom))]
use shmproc_shm::sync::real::fence;
use shmproc_shm::sync::real::{AtomicU8, AtomicU32, AtomicU64, Ordering};
#[cfg(not(shmproc_loom))]
use std::sync::atomic::compiler_fence;
use std::time::Duration;

#[cfg(not(shmproc_loom))]
use crate::owner;

/// How long the first sleep of a wait may last before the waiter issues the
/// heavy fence. That sleep follows a `SeqCst` fence only: a `membarrier`
/// costs about 5 us on the reference machine (an IPI into a busy vCPU) and
/// interrupts the peer, which, paid before every sleep, made a blocking
/// queue hand-off 2 us slower (`queue_compare`'s woken latency 0.53x ->
/// 0.94-1.34x a futex wake). Without the heavy fence a wake can be missed
/// when the waker's store is still in its store buffer as the waiter
/// registers (a window of tens of nanoseconds); the waiter then notices the
/// message at the end of this sleep, when it issues the heavy fence and
/// checks again. So, rarely, a wake-up is late by up to this long, and a
/// waiter that keeps sleeping pays one `membarrier` per wait, not per sleep.
///
/// Why 5 ms and not less: the wake-up of a futex sleeper whose timeout is
/// near is slower here (the guest's idle path differs when a timer is due
/// within a tick). `queue_hotpath woken`, same placement, one-way p50:
/// 100 us 3.6 us, 1 ms 3.5 us, 5 ms 2.7 us, 50 ms 2.7 us.
pub const LIGHT_SLEEP: Duration = Duration::from_millis(5);

/// The pid for which this process's registration succeeded (0: none yet).
static REGISTERED: AtomicU32 = AtomicU32::new(0);

/// Makes this process behave as if `membarrier` were unavailable: [`enable`]
/// fails from now on, so structures claimed afterwards fall back to
/// `SeqCst` fences on both sides. For tests of that fallback and for
/// benchmarks; a process already registered keeps receiving barriers, which
/// is harmless.
pub fn force_fences() {
    UNAVAILABLE.store(1, Ordering::Relaxed);
    REGISTERED.store(0, Ordering::Relaxed);
}
/// Calls of [`heavy`] in this process (a diagnostic for benchmarks).
static HEAVY_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many times this process issued the heavy fence (a diagnostic).
pub fn heavy_calls() -> u64 {
    HEAVY_CALLS.load(Ordering::Relaxed)
}

/// 1 once registration failed: `membarrier` is unavailable here.
static UNAVAILABLE: AtomicU8 = AtomicU8::new(0);

/// Registers this process for the heavy barriers of other processes, once
/// per pid (a forked child registers again). `false` where `membarrier` is
/// unavailable: this process must then use real fences on both sides and
/// tell its peers so.
#[cfg(not(shmproc_loom))]
pub fn enable() -> bool {
    let me = owner::my_pid();
    if REGISTERED.load(Ordering::Relaxed) == me {
        return true;
    }
    if UNAVAILABLE.load(Ordering::Relaxed) != 0 {
        return false;
    }
    match os::membarrier_register_global_expedited() {
        Ok(()) => {
            REGISTERED.store(me, Ordering::Relaxed);
            true
        }
        Err(_) => {
            UNAVAILABLE.store(1, Ordering::Relaxed);
            false
        }
    }
}

/// Whether this process may use [`light`] fences: it is registered in this
/// pid (registering now, once, when it is not yet).
#[cfg(not(shmproc_loom))]
#[inline]
pub fn ready() -> bool {
    REGISTERED.load(Ordering::Relaxed) == owner::my_pid() || enable()
}

/// The hot side's fence between its store and its load. `light_ok`: this
/// process is registered and no peer said it cannot issue the heavy barrier
/// (otherwise a `SeqCst` fence).
#[cfg(not(shmproc_loom))]
#[inline]
pub fn light(light_ok: bool) {
    if light_ok {
        // Orders the compiler only: the CPU's store-load ordering comes from
        // the sleeper's `heavy` (module docs).
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The sleeping side's fence between its store and its load: a
/// `membarrier` when this process is (or now gets) registered, else a
/// `SeqCst` fence. Returns `false` when the heavy barrier was not
/// available, so the caller can tell its peers to stop using [`light`] ones.
#[cfg(not(shmproc_loom))]
pub fn heavy() -> bool {
    HEAVY_CALLS.fetch_add(1, Ordering::Relaxed);
    if ready() && os::membarrier_global_expedited().is_ok() {
        return true;
    }
    fence(Ordering::SeqCst);
    false
}

/// Loom: whether the model lets this thread's process issue `membarrier`.
#[cfg(shmproc_loom)]
pub fn enable() -> bool {
    let _ = (&REGISTERED, &UNAVAILABLE);
    crate::model::membarrier()
}

/// Loom: as [`enable`].
#[cfg(shmproc_loom)]
#[inline]
pub fn ready() -> bool {
    crate::model::membarrier()
}

/// Loom: `fence(SeqCst)` whatever `light_ok` says (module docs, "Under the
/// model"); the mutant `asym_light_noop` drops it, as if the compiler fence
/// were all there was.
#[cfg(shmproc_loom)]
#[inline]
pub fn light(light_ok: bool) {
    let _ = light_ok;
    if !crate::mutant!("asym_light_noop") {
        shmproc_shm::sync::fence(Ordering::SeqCst);
    }
}

/// Loom: `fence(SeqCst)`; `false` when the model says this process cannot
/// issue `membarrier` (the caller then tells its peers, as in production).
#[cfg(shmproc_loom)]
pub fn heavy() -> bool {
    HEAVY_CALLS.fetch_add(1, Ordering::Relaxed);
    shmproc_shm::sync::fence(Ordering::SeqCst);
    crate::model::membarrier()
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn enable_is_idempotent_and_heavy_agrees() {
        let first = enable();
        assert_eq!(enable(), first);
        // Where registration worked, the heavy barrier is available too.
        assert_eq!(heavy(), first);
        light(first);
        light(false);
    }
}
