//! Loom models of the ring on heap storage (the same code as in a segment).
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shmproc-channel --test loom --release
//! ```
//! Every thread stores (a stamp CAS) and waits by looping with a loom yield,
//! so loom explores more than one interleaving (`LOOM_LOG=info ... --
//! --nocapture` prints the count). Payloads live in loom's `UnsafeCell`, so a
//! read racing a write of the same slot is reported.
#![cfg(all(shmproc_loom, not(shmproc_shuttle)))]

use loom::sync::Arc;
use loom::thread;
use shmproc_channel::__private::{Pop, Push, Ring};
use shmproc_channel::HeapStorage;

/// Up to `tries` attempts to put `v`; `false` if the ring stayed full.
/// Retries go through `try_claim_push_again` (load first), as `Queue::put`'s.
fn try_put(r: &Ring<HeapStorage>, v: u64, tries: u32) -> bool {
    for i in 0..tries {
        let push = if i == 0 {
            r.try_claim_push(false)
        } else {
            r.try_claim_push_again(false)
        };
        match push.expect("consistent ring") {
            Push::Claimed(c) => {
                r.write(&c, 0, &v.to_le_bytes());
                assert!(r.publish(c), "nobody takes a live producer's slot");
                return true;
            }
            Push::Full => thread::yield_now(),
        }
    }
    false
}

/// Up to `tries` attempts to get a message (retries load first, as
/// `Queue::get`'s).
fn try_get(r: &Ring<HeapStorage>, tries: u32) -> Option<u64> {
    for i in 0..tries {
        let pop = if i == 0 {
            r.try_claim_pop(false)
        } else {
            r.try_claim_pop_again(false)
        };
        match pop.expect("consistent ring") {
            Pop::Claimed(c) => {
                let mut b = [0u8; 8];
                r.read(&c, 0, &mut b);
                assert!(r.release(c), "nobody takes a live consumer's slot");
                return Some(u64::from_le_bytes(b));
            }
            Pop::Empty | Pop::Busy => thread::yield_now(),
        }
    }
    None
}

fn put(r: &Ring<HeapStorage>, v: u64) {
    while !try_put(r, v, 1) {}
}

fn get(r: &Ring<HeapStorage>) -> u64 {
    loop {
        if let Some(v) = try_get(r, 1) {
            return v;
        }
    }
}

/// 2 producers and 2 consumers, one message each, on `cap` slots. Threads
/// give up after a few yields (an unbounded spin explodes the model); the
/// main thread then finishes their work alone. Each message must arrive
/// exactly once, whatever the interleaving.
fn two_by_two(cap: u64) {
    // Four threads: with 2 preemptions the model runs for many minutes
    // (116,150 iterations / 38 s with 1 preemption), so these models cap the
    // bound at 1 whatever LOOM_MAX_PREEMPTIONS says; the 2-thread model
    // below runs with the bound from the environment.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(model.preemption_bound.map_or(1, |b| b.min(1)));
    model.check(move || {
        let r = Arc::new(Ring::new(HeapStorage::new(cap, 8), false));
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let r = r.clone();
                thread::spawn(move || (!try_put(&r, v, 2)).then_some(v))
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                thread::spawn(move || try_get(&r, 2))
            })
            .collect();
        let unsent: Vec<u64> = producers
            .into_iter()
            .filter_map(|p| p.join().expect("producer"))
            .collect();
        let mut got: Vec<u64> = consumers
            .into_iter()
            .filter_map(|c| c.join().expect("consumer"))
            .collect();
        for v in unsent {
            while !try_put(&r, v, 1) {
                got.push(get(&r));
            }
        }
        while got.len() < 2 {
            got.push(get(&r));
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2], "each message exactly once");
        assert_eq!(r.len(), 0);
    });
}

#[test]
fn mpmc_2x2_two_slots() {
    two_by_two(2);
}

/// One slot: every message reuses it, so the lap (wrap-around) logic and
/// the Full/Empty decisions are exercised.
#[test]
fn mpmc_2x2_one_slot() {
    two_by_two(1);
}

/// One producer, one consumer, three messages through one slot: FIFO order
/// across laps.
#[test]
fn spsc_order_across_laps() {
    loom::model(|| {
        let r = Arc::new(Ring::new(HeapStorage::new(1, 8), false));
        let r2 = r.clone();
        let p = thread::spawn(move || {
            for v in 0..3 {
                put(&r2, v);
            }
        });
        for v in 0..3 {
            assert_eq!(get(&r), v);
        }
        p.join().expect("producer");
    });
}

/// Exact maxsize: two producers race for a ring of 2 slots that holds at
/// most 1 message, while a consumer takes at most one. However the claims
/// interleave (and however stale a producer's view of the head), the ring
/// never holds more than 1: what was sent minus what was taken is what the
/// main thread then drains, and that is at most 1.
#[test]
fn maxsize_is_exact_with_racing_producers() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(model.preemption_bound.map_or(1, |b| b.min(1)));
    model.check(|| {
        let r = Arc::new(Ring::new(HeapStorage::with_maxsize(2, 1, 8), false));
        let producers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let r = r.clone();
                thread::spawn(move || try_put(&r, v, 2))
            })
            .collect();
        let r2 = r.clone();
        let consumer = thread::spawn(move || try_get(&r2, 1));
        let sent = producers
            .into_iter()
            .map(|p| p.join().expect("producer"))
            .filter(|&s| s)
            .count();
        let taken = usize::from(consumer.join().expect("consumer").is_some());
        let mut left = 0;
        while try_get(&r, 1).is_some() {
            left += 1;
        }
        assert_eq!(sent, taken + left, "each message exactly once");
        assert!(left <= 1, "the ring held {left} > maxsize 1");
        // And a full ring refuses: one in, the next put is Full.
        assert!(try_put(&r, 3, 1));
        assert!(!try_put(&r, 4, 1), "maxsize 1 holds one message");
    });
}
