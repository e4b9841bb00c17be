//! Loom model of the `Pod` path's claim protocol (model 5 of issue 23):
//! the chunk cursor, the workers' state words with their pending record,
//! the done flags, and the pool's reading of a dead worker's words
//! (`settle_dead`, `lost_pending`), through the functions production runs
//! (`shmproc_pool::claim`, over loom atomics on the heap).
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmproc-pool --test loom_pool --release -- --nocapture
//! ```
//! Two workers claim the chunks of one job while the pool (the model's
//! main thread) watches them; worker 0 dies for good at one crash point of
//! `claim.rs` (its process is then reported dead, `shmproc_sync::model`).
//! The pool settles the dead worker's words as `run_job` does and, when a
//! chunk is lost, starts a replacement in the slot with that chunk as its
//! retry. Checked in every interleaving: the pool finishes (a lost chunk
//! would keep it waiting: loom reports the spin as a deadlock or as too
//! many branches), the done counts plus what the pool settled make exactly
//! the job's chunks, every done flag is set, and every chunk ran exactly
//! once (twice only when the dead worker died after running it and before
//! its done flag, the one case a retry must repeat). `SHMPROC_MUTANT`
//! seeds the bugs listed in `.ci/loom-mutants`.
//!
//! Preemption bounds (each test states its own): four threads (two
//! workers, the pool, a replacement). Both races this model found in
//! `lost_pending` need two forced switches (a worker preempted between its
//! cursor load and its pending record, or between its done flag and its
//! next claim, while the pool reads), so bound 2 everywhere, and 3 where it
//! is cheap (`pending`, `flagged`: 26k and 34k interleavings). All five
//! pass at bound 3 too (219k-247k interleavings for `claimed`, `held`,
//! `ran`; 100 s together on 2 busy cores: too long for every CI run).
#![cfg(all(shmproc_loom, not(shmproc_shuttle)))]

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32 as StdU32, Ordering as StdOrdering};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shmproc_pool::claim::{self, Dead, Table};
use shmproc_sync::model::{self, Identity};

const JOB: u64 = 1;
const CHUNKS: u64 = 2;
const WORKERS: usize = 2;

/// One job's words on the heap, and the model's bookkeeping.
struct Words {
    cursor: AtomicU64,
    done: AtomicU64,
    states: Vec<AtomicU64>,
    flags: Vec<AtomicU32>,
    /// Which model process runs in each slot now (plain: the model's own).
    ids: StdMutex<Vec<Identity>>,
    /// How often each chunk ran (plain: loom runs one thread at a time).
    runs: Vec<StdU32>,
    /// The pid of the slot's process once it runs (0 before: a process
    /// that is starting is alive, as a spawned worker is in production,
    /// but the model registers a thread only when it first runs).
    started: Vec<StdU32>,
}

impl Table for Words {
    type W = AtomicU64;
    type F = AtomicU32;
    fn workers(&self) -> usize {
        self.states.len()
    }
    fn cursor(&self) -> &AtomicU64 {
        &self.cursor
    }
    fn state(&self, slot: usize) -> &AtomicU64 {
        &self.states[slot]
    }
    fn flag(&self, c: u64) -> &AtomicU32 {
        &self.flags[c as usize]
    }
    fn alive(&self, slot: usize) -> bool {
        let id = self.ids.lock().unwrap()[slot];
        self.started[slot].load(StdOrdering::Relaxed) != id.pid
            || model::process_alive(id.pid, None)
    }
}

/// A worker of slot `slot`: its retry chunk (`u64::MAX`: none), then the
/// claim loop, as `worker.rs` runs it.
fn work(w: &Words, slot: usize, retry: u64) {
    w.started[slot].store(model::me().pid, StdOrdering::Relaxed);
    claim::work(
        &w.cursor,
        &w.states[slot],
        &w.done,
        |c| &w.flags[c as usize],
        (JOB, CHUNKS, retry, u64::MAX),
        |c| {
            w.runs[c as usize].fetch_add(1, StdOrdering::Relaxed);
        },
        || {},
    );
}

use shmproc_sync::model::check;

/// Worker 0 dies at `point`; the pool settles and replaces it.
fn death_at(point: &'static str) {
    let ids: Vec<Identity> = (0..WORKERS).map(|_| model::fresh()).collect();
    let w = Arc::new(Words {
        cursor: AtomicU64::new(JOB << 32),
        done: AtomicU64::new(0),
        states: (0..WORKERS).map(|_| AtomicU64::new(0)).collect(),
        flags: (0..CHUNKS).map(|_| AtomicU32::new(0)).collect(),
        ids: StdMutex::new(ids.clone()),
        runs: (0..CHUNKS).map(|_| StdU32::new(0)).collect(),
        started: (0..WORKERS).map(|_| StdU32::new(0)).collect(),
    });
    let mut threads = Vec::new();
    for (slot, id) in ids.iter().enumerate() {
        let w = w.clone();
        threads.push(model::spawn(*id, move || {
            if slot == 0 {
                model::die_at(point);
            }
            work(&w, slot, u64::MAX);
        }));
    }
    // The pool: `run_job`'s watch loop.
    let mut settled = 0u64;
    let mut settled_dead = [false; WORKERS];
    let mut assigned: Vec<Option<u64>> = vec![None; WORKERS];
    loop {
        let done: u64 = w
            .states
            .iter()
            .map(|s| s.load(Ordering::SeqCst) >> 32)
            .sum();
        if done + settled >= CHUNKS {
            assert_eq!(done + settled, CHUNKS, "a chunk counted twice");
            break;
        }
        for i in 0..WORKERS {
            if settled_dead[i] || w.alive(i) {
                continue;
            }
            let dead = claim::settle_dead(&*w, i, JOB, u64::MAX, &assigned);
            assigned[i] = None;
            settled_dead[i] = true;
            match dead {
                Dead::Nothing => {}
                Dead::Finished(_) => settled += 1,
                Dead::Lost(c) => {
                    // The replacement, with the lost chunk as its retry.
                    let id = model::fresh();
                    w.ids.lock().unwrap()[i] = id;
                    assigned[i] = Some(c);
                    settled_dead[i] = false;
                    let w = w.clone();
                    threads.push(model::spawn(id, move || work(&w, i, c)));
                }
            }
        }
        loom::thread::yield_now();
    }
    for c in 0..CHUNKS as usize {
        assert_eq!(w.flags[c].load(Ordering::SeqCst), 1, "chunk {c} not done");
    }
    let runs: Vec<u32> = w
        .runs
        .iter()
        .map(|r| r.load(StdOrdering::Relaxed))
        .collect();
    let total: u32 = runs.iter().sum();
    let repeat = u32::from(point == "pool-ran");
    assert!(
        runs.iter().all(|&r| r >= 1) && total <= CHUNKS as u32 + repeat,
        "each chunk exactly once (died at {point}): runs {runs:?}"
    );
    model::reap();
    for t in threads {
        t.join().expect("worker");
    }
}

/// Dies with its chunk pending, before its swap on the cursor. Bound 3.
#[test]
fn pool_death_at_pending() {
    check("pool_death_at_pending", 3, || death_at("pool-pending"));
}

/// Dies right after its swap won (the chunk shows only as pending).
/// Bound 2.
#[test]
fn pool_death_at_claimed() {
    check("pool_death_at_claimed", 2, || death_at("pool-claimed"));
}

/// Dies holding a chunk it has not run. Bound 2.
#[test]
fn pool_death_at_held() {
    check("pool_death_at_held", 2, || death_at("pool-held"));
}

/// Dies after running its chunk, before the done flag: the retry runs it
/// again (the one repeat allowed). Bound 2.
#[test]
fn pool_death_at_ran() {
    check("pool_death_at_ran", 2, || death_at("pool-ran"));
}

/// Dies after the done flag, before counting the chunk: the pool counts
/// it, nobody runs it again. Bound 3.
#[test]
fn pool_death_at_flagged() {
    check("pool_death_at_flagged", 3, || death_at("pool-flagged"));
}
