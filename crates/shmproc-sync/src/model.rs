//! The model's world (`cfg(shmproc_loom)` only): who each loom thread is,
//! which "processes" died, the futex, and the seeded mutants. With
//! `cfg(shmproc_shuttle)` as well, the same world runs on shuttle's
//! runtime (randomised schedules of bigger configurations).
//!
//! In production the identity of a thread is its kernel tid and that of a
//! process its pid and start time; every loom thread shares one of each.
//! Here each loom thread gets its own [`Identity`], set by the model
//! ([`spawn`]) or allocated on first use, and [`crate::owner`]'s identity and
//! liveness functions answer from this registry instead of the kernel and
//! `/proc`. So leases (keyed by tid), claims and sleeper records (keyed by
//! pid and start time) run unchanged under loom, a thread can reuse an ended
//! thread's tid ([`spawn`] with that identity), and a thread can die
//! ([`die`]): its process is then reported dead to every liveness check, and
//! the thread stops for good (it is parked until the model [`reap`]s it at
//! the end, and its stack unwinds only then, so nothing it would have done
//! after the point of death happens while the survivors run).
//!
//! A thread's end and a process's death synchronise with whoever learns of
//! them: the ending thread makes a `Release` RMW on one loom word, and a
//! liveness check that answers "dead" or "gone" an `Acquire` RMW on it, so
//! everything the dead thread did happens before what the survivor does
//! about it (the kernel's exit path and the survivor's `/proc` read order
//! them in production; without this loom would report the survivor's
//! reclaim of a dead writer's slot as a data race).
//!
//! The registry itself is plain (not loom-tracked) state: loom runs one thread at a
//! time, and what it models, the kernel's view of which processes exist, is
//! sequentially consistent. No loom operation runs while its lock is held.
//!
//! # The futex
//! [`futex_wait`] blocks (on a loom `Condvar`) until the word differs from
//! the expected value, and [`futex_wake`] wakes every waiter; the check of
//! the word and the sleep are atomic with respect to a wake (both hold the
//! same loom mutex), as the kernel's hash-bucket lock makes them. So a wake
//! that the real futex would deliver is never lost, and a wake the protocol
//! forgot is a waiter blocked for good: loom reports the deadlock. Every
//! waker in this workspace changes the word before it wakes, so a waiter
//! that returns only once the word changed is exact for them. The real wait
//! is bounded (a slice, then a liveness check); models of a death, where a
//! survivor must time out to notice it, switch [`set_timeouts`] on: a wait
//! then returns at once (a loom yield, then "slice elapsed") when the word
//! is unchanged.
//!
//! # Mutants
//! [`mutant`] (through the [`mutant!`](crate::mutant) macro, `false` outside
//! the model) names a seeded bug that the model must catch: the
//! environment variable `SHMPROC_MUTANT` selects at most one, in the one
//! loom build (no rebuild per mutant).
#![allow(clippy::disallowed_types)]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex as StdMutex, OnceLock};

#[cfg(not(shmproc_shuttle))]
use loom as rt;
#[cfg(shmproc_shuttle)]
use shuttle as rt;

use rt::sync::{Condvar, Mutex};
use shmproc_shm::sync::{AtomicU32, AtomicUsize, Ordering};

/// A model thread's identity: its process (pid and start time) and its tid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The process id (as in lock words and stamps).
    pub pid: u32,
    /// The thread id (as in lease words).
    pub tid: u32,
    /// The process's start time (as in owner records).
    pub start: u64,
}

impl Identity {
    /// Another thread of the same process (a new tid).
    pub fn new_thread(&self) -> Identity {
        let tid = next_id();
        Identity { tid, ..*self }
    }
}

#[derive(Debug)]
struct Entry {
    id: Identity,
    /// The thread runs (set by [`spawn`] or first use, cleared at its end).
    running: bool,
    /// Its process died ([`die`]).
    dead: bool,
}

#[derive(Debug, Default)]
struct World {
    next: u32,
    entries: Vec<Entry>,
    timeouts: bool,
    /// Pids of processes that cannot issue `membarrier`.
    no_membarrier: Vec<u32>,
}

/// Thrown (with `resume_unwind`, no panic hook) through a reaped dead thread.
#[derive(Debug)]
struct Died;

rt::lazy_static! {
    static ref WORLD: StdMutex<World> = StdMutex::new(World { next: 100, ..World::default() });
    static ref FUTEX: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    static ref GRAVE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());
    static ref EXITS: AtomicUsize = AtomicUsize::new(0);
}

/// A thread ended or a process died (module docs).
fn exit_release() {
    // Release: everything the exiting thread did happens before an
    // `exit_acquire` that reads this or a later value (a release sequence
    // of RMWs).
    EXITS.fetch_add(1, Ordering::Release);
}

/// A liveness check learnt of an end or a death (module docs).
fn exit_acquire() {
    // Acquire RMW: reads the latest value, so it synchronises with every
    // `exit_release` before it.
    EXITS.fetch_add(0, Ordering::Acquire);
}

rt::thread_local! {
    static ME: Cell<Option<Identity>> = Cell::new(None);
    static DIE_AT: Cell<Option<&'static str>> = Cell::new(None);
}

fn world<R>(f: impl FnOnce(&mut World) -> R) -> R {
    let mut w = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut w)
}

fn next_id() -> u32 {
    world(|w| {
        w.next += 1;
        w.next
    })
}

/// A new process's first thread (not running until [`spawn`]ed as).
pub fn fresh() -> Identity {
    let id = next_id();
    Identity {
        pid: id,
        tid: id,
        start: 1,
    }
}

fn adopt(id: Identity) {
    ME.with(|c| c.set(Some(id)));
    world(|w| {
        // A tid reused by a new thread: the old entry (ended) gives way.
        w.entries.retain(|e| e.id.tid != id.tid || e.running);
        w.entries.push(Entry {
            id,
            running: true,
            dead: false,
        });
    });
}

/// The calling model thread's identity (a fresh process's, on first use).
pub fn me() -> Identity {
    if let Some(id) = ME.with(Cell::get) {
        return id;
    }
    let id = fresh();
    adopt(id);
    id
}

/// Spawns a loom thread running `f` as `id`: `None` when it died
/// ([`die`]) and was reaped. A thread with an ended thread's tid is that
/// tid reused.
#[cfg(not(shmproc_shuttle))]
pub fn spawn<F, T>(id: Identity, f: F) -> rt::thread::JoinHandle<Option<T>>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    rt::thread::spawn(move || run_as(id, f))
}

/// Shuttle: as under loom (shuttle's threads must be `Send`).
#[cfg(shmproc_shuttle)]
pub fn spawn<F, T>(id: Identity, f: F) -> rt::thread::JoinHandle<Option<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    rt::thread::spawn(move || run_as(id, f))
}

fn run_as<T>(id: Identity, f: impl FnOnce() -> T) -> Option<T> {
    adopt(id);
    let r = catch_unwind(AssertUnwindSafe(f));
    exit_release();
    world(|w| {
        for e in w.entries.iter_mut().filter(|e| e.id == id) {
            e.running = false;
        }
    });
    match r {
        Ok(v) => Some(v),
        Err(p) if p.is::<Died>() => None,
        Err(p) => resume_unwind(p),
    }
}

/// The calling thread's process dies here: every liveness check reports it
/// dead from now on, and the thread stops until [`reap`] (then unwinds to
/// its [`spawn`]).
pub fn die() -> ! {
    let me = me();
    exit_release();
    world(|w| {
        for e in w
            .entries
            .iter_mut()
            .filter(|e| e.id.pid == me.pid && e.id.start == me.start)
        {
            e.dead = true;
            e.running = false;
        }
    });
    let (m, cv) = &*GRAVE;
    let mut reaped = m.lock().unwrap_or_else(|e| e.into_inner());
    while !*reaped {
        reaped = cv.wait(reaped).unwrap_or_else(|e| e.into_inner());
    }
    drop(reaped);
    resume_unwind(Box::new(Died))
}

/// Lets the dead threads unwind (call at the end of the model, after the
/// checks; loom requires every thread to end).
pub fn reap() {
    let (m, cv) = &*GRAVE;
    *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cv.notify_all();
}

/// The calling thread will [`die`] at the crash point `name`
/// (`shmproc-channel`'s crash module names them).
pub fn die_at(name: &'static str) {
    DIE_AT.with(|c| c.set(Some(name)));
}

/// A crash point: dies here when [`die_at`] named it.
pub fn crash_point(name: &'static str) {
    if DIE_AT.with(Cell::get) == Some(name) {
        die();
    }
}

/// Whether a process `pid` is alive: some registered thread of it, not
/// dead, and, with `record = Some((bits, mask))`, with a start time equal
/// to `bits` under `mask` (another start time: the pid was reused, the
/// recorded owner is dead).
pub fn process_alive(pid: u32, record: Option<(u64, u64)>) -> bool {
    let alive = world(|w| {
        w.entries.iter().any(|e| {
            e.id.pid == pid
                && !e.dead
                && record.is_none_or(|(bits, mask)| e.id.start & mask == bits & mask)
        })
    });
    if !alive {
        exit_acquire();
    }
    alive
}

/// Whether a thread with `tid` runs.
pub fn thread_alive(tid: u32) -> bool {
    let alive = world(|w| w.entries.iter().any(|e| e.id.tid == tid && e.running));
    if !alive {
        exit_acquire();
    }
    alive
}

/// Futex waits time out at once (for models of a death).
pub fn set_timeouts(on: bool) {
    world(|w| w.timeouts = on);
}

/// The calling thread's process cannot issue `membarrier` (the
/// `FLAG_FENCES` fallback).
pub fn set_no_membarrier() {
    let pid = me().pid;
    world(|w| w.no_membarrier.push(pid));
}

/// Whether the calling thread's process can issue `membarrier`.
pub fn membarrier() -> bool {
    let pid = me().pid;
    world(|w| !w.no_membarrier.contains(&pid))
}

/// Whether the seeded mutant `name` is on (`SHMPROC_MUTANT=name`).
pub fn mutant(name: &str) -> bool {
    static SELECTED: OnceLock<Option<String>> = OnceLock::new();
    SELECTED
        .get_or_init(|| std::env::var("SHMPROC_MUTANT").ok())
        .as_deref()
        == Some(name)
}

/// The model's futex wait (see the module docs).
pub fn futex_wait(word: &AtomicU32, expected: u32) -> crate::futex::Wake {
    if world(|w| w.timeouts) {
        // SeqCst: as the kernel's read of the word.
        if word.load(Ordering::SeqCst) != expected {
            return crate::futex::Wake::Woken;
        }
        rt::thread::yield_now();
        return crate::futex::Wake::SliceElapsed;
    }
    let (m, cv) = &*FUTEX;
    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
    // SeqCst: as the kernel's read of the word, under the bucket lock.
    while word.load(Ordering::SeqCst) == expected {
        g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    crate::futex::Wake::Woken
}

/// The model's futex wake: wakes every waiter (they re-check their word).
pub fn futex_wake() {
    let (m, cv) = &*FUTEX;
    let _g = m.lock().unwrap_or_else(|e| e.into_inner());
    cv.notify_all();
}

/// Runs `f` as a loom model at preemption bound `bound` (or at
/// `LOOM_MAX_PREEMPTIONS` when that is lower) and prints how many
/// interleavings it explored and at which bound: the loom test files'
/// shared runner, whose lines the crates' model tables quote.
#[cfg(not(shmproc_shuttle))]
pub fn check(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(bound, |e| e.min(bound)));
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    b.check(move || {
        // Relaxed: a count read after the model ends.
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    println!(
        "loom model {name}: {} interleavings, preemption bound {}",
        runs.load(Ordering::Relaxed),
        b.preemption_bound.unwrap_or(bound)
    );
}
