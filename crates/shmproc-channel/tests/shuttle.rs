//! The ring's scenarios at a size loom cannot explore exhaustively: 3
//! producers x 3 consumers, leases and sleepers included, with and without
//! a death, under shuttle's randomised scheduler (sequentially consistent:
//! it complements the loom models, which explore weak-memory outcomes of
//! smaller configurations). The model world is `shmproc_sync::model`, on
//! shuttle's runtime.
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom --cfg shmproc_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test -p shmproc-channel --test shuttle --release -- --nocapture
//! ```
//! `SHMPROC_SHUTTLE_SCHEDULES` sets the schedules per scenario (default
//! 50,000: two scenarios, 100,000 in all).
#![cfg(shmproc_shuttle)]
#![allow(unsafe_code)] // `Shared`: the ring on heap storage, sent to shuttle threads.

use std::sync::Arc;

use shmproc_channel::__private::Ring;
use shmproc_channel::HeapStorage;
use shmproc_sync::model;
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::thread;

fn schedules() -> usize {
    std::env::var("SHMPROC_SHUTTLE_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000)
}

const PER_PRODUCER: u64 = 2;

/// The heap ring, shared by the model's threads. Outside loom the heap
/// storage's payload cells are not `Sync` (it serves one thread in
/// production); the slot protocol is what gives each thread exclusive
/// access to a payload, and is what this test checks.
struct Shared(Ring<HeapStorage>);

// SAFETY: every access to a payload cell is made by the holder of the
// slot's claim (or lease), exclusive by the ring's protocol; shuttle runs
// one thread at a time and its atomics are sequentially consistent, so
// there is no unsynchronised concurrent access to the cells; the rest of
// the ring is atomics.
unsafe impl Sync for Shared {}
// SAFETY: as for `Sync`; nothing in the ring is tied to a thread.
unsafe impl Send for Shared {}

impl std::ops::Deref for Shared {
    type Target = Ring<HeapStorage>;
    fn deref(&self) -> &Ring<HeapStorage> {
        &self.0
    }
}

fn put_spin(r: &Ring<HeapStorage>, v: u64) {
    let mut again = false;
    while !r.model_try_put(v, true, again).expect("consistent ring") {
        again = true;
        thread::yield_now();
    }
}

/// Each live producer's messages arrived exactly once (`got`: all
/// consumers' messages).
fn exactly_once(got: &[u64], live: &[u64]) {
    let mut seen = got.to_vec();
    seen.sort_unstable();
    let mut want: Vec<u64> = live
        .iter()
        .flat_map(|p| (0..PER_PRODUCER).map(move |i| p * 100 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(seen, want, "each message exactly once: {got:?}");
}

/// One consumer's messages: each producer's in the order sent.
fn fifo(mine: &[u64]) {
    for p in 1..=3u64 {
        let from_p: Vec<u64> = mine.iter().copied().filter(|v| v / 100 == p).collect();
        let mut sorted = from_p.clone();
        sorted.sort_unstable();
        assert_eq!(from_p, sorted, "FIFO per producer: {mine:?}");
    }
}

/// 3 producers x 3 consumers through 2 slots, blocking puts and gets (the
/// futex blocks until woken: a lost wake-up is a deadlock shuttle reports).
/// Consumers stop once all 6 messages were taken.
#[test]
fn mpmc_3x3_blocking() {
    let n = schedules();
    shuttle::check_random(
        || {
            let r = Arc::new(Shared(Ring::new(HeapStorage::new(2, 8), false)));
            let total = (3 * PER_PRODUCER) as usize;
            let taken = Arc::new(AtomicUsize::new(0));
            let producers: Vec<_> = (1..=3u64)
                .map(|p| {
                    let r = r.clone();
                    model::spawn(model::fresh(), move || {
                        for i in 0..PER_PRODUCER {
                            r.model_put(p * 100 + i).expect("put");
                        }
                    })
                })
                .collect();
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let (r, taken) = (r.clone(), taken.clone());
                    model::spawn(model::fresh(), move || {
                        let mut got = Vec::new();
                        // A ticket per message: blocking gets never wait
                        // for a message that no producer will send.
                        while taken.fetch_add(1, Ordering::SeqCst) < total {
                            got.push(r.model_get().expect("get"));
                        }
                        got
                    })
                })
                .collect();
            for p in producers {
                p.join().expect("producer");
            }
            let mut got = Vec::new();
            for c in consumers {
                let mine = c.join().expect("consumer").expect("alive");
                fifo(&mine);
                got.extend(mine);
            }
            exactly_once(&got, &[1, 2, 3]);
        },
        n,
    );
    println!("shuttle mpmc_3x3_blocking: {n} schedules");
}

/// 3 producers x 3 consumers, and producer 1 dies at `put-claimed` on its
/// first message (futex waits time out, as the survivors must notice the
/// death). The live producers' messages arrive exactly once and, one
/// consumer at a time, in order; the ring carries a message afterwards.
#[test]
fn mpmc_3x3_with_a_death() {
    let n = schedules();
    shuttle::check_random(
        || {
            model::set_timeouts(true);
            let r = Arc::new(Shared(Ring::new(HeapStorage::new(2, 8), false)));
            let total = (2 * PER_PRODUCER) as usize;
            let taken = Arc::new(AtomicUsize::new(0));
            let mut producers = Vec::new();
            for p in 1..=3u64 {
                let r = r.clone();
                producers.push(model::spawn(model::fresh(), move || {
                    if p == 1 {
                        model::die_at("put-claimed");
                    }
                    for i in 0..PER_PRODUCER {
                        put_spin(&r, p * 100 + i);
                    }
                }));
            }
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let (r, taken) = (r.clone(), taken.clone());
                    model::spawn(model::fresh(), move || {
                        let mut got = Vec::new();
                        while taken.load(Ordering::SeqCst) < total {
                            if let Some(v) = r.model_try_get(true, true).expect("get") {
                                taken.fetch_add(1, Ordering::SeqCst);
                                got.push(v);
                            } else {
                                thread::yield_now();
                            }
                        }
                        got
                    })
                })
                .collect();
            let mut got = Vec::new();
            for c in consumers {
                let mine = c.join().expect("consumer").expect("alive");
                fifo(&mine);
                got.extend(mine);
            }
            let mut producers = producers.into_iter();
            let dead = producers.next().expect("producer 1");
            for p in producers {
                assert!(p.join().expect("producer").is_some());
            }
            exactly_once(&got, &[2, 3]);
            put_spin(&r, 7);
            assert_eq!(r.model_try_get(true, true).expect("get"), Some(7));
            model::reap();
            assert!(dead.join().expect("dead producer").is_none());
        },
        n,
    );
    println!("shuttle mpmc_3x3_with_a_death: {n} schedules");
}
