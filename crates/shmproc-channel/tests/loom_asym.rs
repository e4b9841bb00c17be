//! Loom models of the asymmetric protocols: side leases, the sleeper
//! registry and its repair, and repair after a death, on heap storage,
//! through the same code a `Queue` runs (`Ring::model_put`/`model_get`
//! compose the leased fast paths, the CAS protocol and `Ring::block` as
//! `Queue::put`/`get` do).
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmproc-channel --test loom_asym --release -- --nocapture
//! ```
//! Each model prints the interleavings it explored. The model's world
//! (`shmproc_sync::model`) gives every loom thread its own pid and tid, maps
//! both sides of the asymmetric fence to `fence(SeqCst)` (see
//! `shmproc_sync::asym`), and blocks futex waiters until their word changes,
//! so a lost wake-up is a deadlock that loom reports. `SHMPROC_MUTANT=name`
//! seeds one bug; `.ci/loom-mutants` checks that each is caught.
//!
//! Preemption bounds (each model states its own): 3 for the two-thread
//! models (every interleaving with up to three forced switches: a sleeper
//! race needs one between the registration and its re-check and one
//! between the publish and the waiters load, and a revocation one more
//! inside the holder's operation), 2 for three or more threads (the bug in
//! `repair_sleepers` fixed with these models needed 2; 3 runs for many
//! minutes on 2 cores). All of them together: about a minute on 2 cores.
#![cfg(all(shmproc_loom, not(shmproc_shuttle)))]

use loom::sync::Arc;
use loom::thread;
use shmproc_channel::__private::Ring;
use shmproc_channel::HeapStorage;
use shmproc_sync::model::{self, Identity};

type R = Arc<Ring<HeapStorage>>;

/// Runs `f` under loom with preemption bound `bound` (capped by
/// `LOOM_MAX_PREEMPTIONS` when that is lower) and prints the number of
/// interleavings explored.
use shmproc_sync::model::check;

fn ring(cap: u64) -> R {
    Arc::new(Ring::new(HeapStorage::new(cap, 8), false))
}

/// Puts `v`, retrying after "full"/"not now" with a yield (a revoker that
/// finds the holder inside an operation retries, as blocking calls do
/// after their bounded sleep).
fn put_spin(r: &Ring<HeapStorage>, v: u64) {
    let mut again = false;
    while !r.model_try_put(v, true, again).expect("consistent ring") {
        again = true;
        thread::yield_now();
    }
}

/// Drains what is left (the main thread, alone at the end).
fn drain(r: &Ring<HeapStorage>, got: &mut Vec<u64>) {
    while let Some(v) = r.model_try_get(true, true).expect("consistent ring") {
        got.push(v);
    }
}

/// Each message exactly once and in order per producer (`per_producer`:
/// each producer's values, in the order sent).
fn exactly_once_fifo(got: &[u64], per_producer: &[&[u64]]) {
    let mut all: Vec<u64> = per_producer
        .iter()
        .flat_map(|p| p.iter().copied())
        .collect();
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    all.sort_unstable();
    assert_eq!(sorted, all, "each message exactly once: got {got:?}");
    for p in per_producer {
        let mine: Vec<u64> = got.iter().copied().filter(|v| p.contains(v)).collect();
        assert_eq!(&mine[..], *p, "FIFO per producer: got {got:?}");
    }
}

/// Leases 1: the holder runs two leased puts while another process's
/// thread revokes the producers' lease and puts. The revocation finds the
/// holder before, inside ("not now", then retry) or after an operation.
/// Checks: every message once, FIFO per producer, and (through loom's
/// cells) no plain store of the holder beside the revoker's CAS claim.
/// Bound 2: three threads of many steps each.
#[test]
fn lease_revoked_while_holder_runs() {
    check("lease_revoked_while_holder_runs", 2, || {
        let r = ring(4);
        let h = {
            let r = r.clone();
            model::spawn(model::fresh(), move || {
                put_spin(&r, 1);
                put_spin(&r, 2);
            })
        };
        let v = {
            let r = r.clone();
            model::spawn(model::fresh(), move || put_spin(&r, 10))
        };
        h.join().expect("holder");
        v.join().expect("revoker");
        let mut got = Vec::new();
        drain(&r, &mut got);
        exactly_once_fifo(&got, &[&[1, 2], &[10]]);
    });
}

/// Leases 2: the revoker cannot issue `membarrier` (it sets `FLAG_FENCES`)
/// and waits for the holder to hand the side over at its next operation,
/// or to end. Bound 3: two threads.
#[test]
fn lease_handover_without_membarrier() {
    check("lease_handover_without_membarrier", 3, || {
        let r = ring(4);
        // The holder takes the lease before the revoker starts.
        let holder = model::fresh();
        let h = {
            let r = r.clone();
            model::spawn(holder, move || {
                put_spin(&r, 1);
                put_spin(&r, 2);
            })
        };
        let v = {
            let r = r.clone();
            model::spawn(model::fresh(), move || {
                model::set_no_membarrier();
                put_spin(&r, 10);
            })
        };
        h.join().expect("holder");
        v.join().expect("revoker");
        let mut got = Vec::new();
        drain(&r, &mut got);
        exactly_once_fifo(&got, &[&[1, 2], &[10]]);
    });
}

/// Leases 3: the holder ends, and a new thread of its process gets its
/// tid (reused) and so the lease, while a third thread revokes. Bound 2.
#[test]
fn lease_reused_tid() {
    check("lease_reused_tid", 2, || {
        let r = ring(4);
        let holder: Identity = model::fresh();
        let r1 = r.clone();
        model::spawn(holder, move || put_spin(&r1, 1))
            .join()
            .expect("first holder");
        let v = {
            let r = r.clone();
            model::spawn(model::fresh(), move || put_spin(&r, 10))
        };
        let r2 = r.clone();
        // Same pid, same start, same tid: the ended thread's tid reused.
        let h2 = model::spawn(holder, move || put_spin(&r2, 2));
        h2.join().expect("second holder");
        v.join().expect("revoker");
        let mut got = Vec::new();
        drain(&r, &mut got);
        exactly_once_fifo(&got, &[&[1, 2], &[10]]);
    });
}

/// Sleepers 1: a consumer blocks in `get` while a producer puts: the
/// consumer registers, fences (the heavy side) and re-checks; the producer
/// publishes, fences (the light side) and loads the waiters word. No
/// interleaving may lose the wake-up (a lost one blocks the consumer for
/// good: a deadlock to loom). Bound 3: two threads.
#[test]
fn sleeper_get_is_woken_by_put() {
    check("sleeper_get_is_woken_by_put", 3, || {
        let r = ring(2);
        let c = {
            let r = r.clone();
            model::spawn(model::fresh(), move || r.model_get().expect("get"))
        };
        r.model_put(7).expect("put");
        assert_eq!(c.join().expect("consumer"), Some(7));
    });
}

/// Sleepers 2, the mirror: a producer blocks in `put` on a full ring (one
/// slot) while a consumer takes the message that fills it. Bound 3.
#[test]
fn sleeper_put_is_woken_by_get() {
    check("sleeper_put_is_woken_by_get", 3, || {
        let r = ring(1);
        r.model_put(1).expect("first put");
        let p = {
            let r = r.clone();
            model::spawn(model::fresh(), move || r.model_put(2).expect("put"))
        };
        assert_eq!(r.model_get().expect("get"), 1);
        p.join().expect("producer");
        assert_eq!(r.model_get().expect("get"), 2);
    });
}

/// Sleepers 3: a consumer was killed while registered (its record and bit
/// stay). Two repairers race over it while a live consumer, whose records
/// start at the same index, goes to sleep and a producer puts: neither
/// repairer may clear the live sleeper's bit (commit 45ba570's bug), so
/// the live consumer is woken. Bound 2: four threads (at bound 2 it found
/// a second repairer taking over a live repairer's in-progress record, now
/// fixed; the mutant `repairing_names_nobody` restores that rule).
#[test]
fn two_repairers_of_one_dead_sleeper() {
    check("two_repairers_of_one_dead_sleeper", 2, || {
        let r = ring(2);
        // 13 sleeper records: tids 13k + 5 all start at record 5.
        let dead = Identity {
            pid: 13 * 40 + 5,
            tid: 13 * 40 + 5,
            start: 1,
        };
        let live = Identity {
            pid: 13 * 41 + 5,
            tid: 13 * 41 + 5,
            start: 1,
        };
        let d = {
            let r = r.clone();
            model::spawn(dead, move || {
                r.model_register_get_sleeper();
                model::die();
            })
        };
        // The registration is in place before the others start (it is the
        // state a killed sleeper leaves).
        while r.model_sleepers(true) == 0 {
            thread::yield_now();
        }
        let repairers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                model::spawn(model::fresh(), move || r.model_repair_sleepers(true))
            })
            .collect();
        let c = {
            let r = r.clone();
            model::spawn(live, move || r.model_get().expect("get"))
        };
        for h in repairers {
            h.join().expect("repairer");
        }
        r.model_put(9).expect("put");
        assert_eq!(c.join().expect("consumer"), Some(9));
        model::reap();
        assert!(d.join().expect("dead sleeper").is_none());
    });
}

/// Death 1: a producer dies at `put-claimed` (its slot claimed, or, as
/// the lease holder, written but not published) while another producer
/// puts and a consumer gets. The survivors finish (the consumer skips a
/// dead producer's claim once it checks liveness; futex waits time out so
/// that it does), nothing is duplicated, only the dead producer's message
/// is missing, and the ring still carries a message afterwards. Bound 2.
#[test]
fn death_at_put_claimed() {
    check("death_at_put_claimed", 2, || {
        model::set_timeouts(true);
        let r = ring(2);
        let d = {
            let r = r.clone();
            model::spawn(model::fresh(), move || {
                model::die_at("put-claimed");
                put_spin(&r, 1);
            })
        };
        let p = {
            let r = r.clone();
            model::spawn(model::fresh(), move || put_spin(&r, 2))
        };
        let c = {
            let r = r.clone();
            model::spawn(model::fresh(), move || r.model_get().expect("get"))
        };
        assert_eq!(
            c.join().expect("consumer"),
            Some(2),
            "the survivor's message"
        );
        p.join().expect("producer");
        let mut got = Vec::new();
        drain(&r, &mut got);
        assert_eq!(got, [], "the dead producer sent nothing");
        put_spin(&r, 3);
        assert_eq!(r.model_get().expect("get"), 3);
        model::reap();
        assert!(d.join().expect("dead producer").is_none());
    });
}

/// Death 2: a consumer dies at `get-claimed` (holding a claimed message,
/// or, as the lease holder, inside its read) while another consumer gets.
/// Nothing is duplicated; the message the dead one held is lost under the
/// CAS protocol and kept under its lease (the next consumer takes it); the
/// producer of the next lap reclaims the dead reader's slot. Bound 2.
#[test]
fn death_at_get_claimed() {
    check("death_at_get_claimed", 2, || {
        model::set_timeouts(true);
        let r = ring(1);
        put_spin(&r, 1);
        let mortal = model::fresh();
        let try_gets = |r: R| {
            move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    if let Some(v) = r.model_try_get(true, true).expect("get") {
                        got.push(v);
                    }
                    thread::yield_now();
                }
                got
            }
        };
        let d = model::spawn(mortal, {
            let f = try_gets(r.clone());
            move || {
                model::die_at("get-claimed");
                f()
            }
        });
        let c = model::spawn(model::fresh(), try_gets(r.clone()));
        let mut got = c.join().expect("consumer").expect("survivor");
        // The mortal consumer is done: dead at its claim, or it found none.
        while model::thread_alive(mortal.tid) {
            thread::yield_now();
        }
        // The next lap's producer reclaims the slot once the reader is dead.
        put_spin(&r, 2);
        drain(&r, &mut got);
        let ones = got.iter().filter(|&&v| v == 1).count();
        assert!(ones <= 1, "message 1 duplicated: {got:?}");
        assert_eq!(got.iter().filter(|&&v| v == 2).count(), 1, "{got:?}");
        model::reap();
        if let Some(its) = d.join().expect("mortal consumer") {
            assert!(its.is_empty(), "it claimed nothing, or it died");
        }
    });
}
