//! Crash injection (`RUSTFLAGS="--cfg shmproc_crash_points"`, a CI step of
//! its own, so the default build tests the shipped hot path): a
//! producer aborts between claiming a slot and publishing it, or a consumer
//! between claiming and releasing. The queue keeps working and the counts
//! prove that nothing else was lost or duplicated.
//!
//! Both ways a side can run: shared (the CAS protocol: a dead producer's
//! claim is skipped, a dead consumer's message is lost and counted) and
//! leased (one thread's plain stores: a dead producer leaves nothing
//! published, a dead consumer's message is delivered again).
#![cfg(all(not(shmproc_loom), shmproc_crash_points))]

use std::time::Duration;

use shmproc_channel::{GetTimeoutError, LeaseState, Queue, TryGetError};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, arg_parsed, current_test, role};

const SIGABRT: i32 = 6;

fn spawn_crashing(test: &str, r: &str, q: &str, point: &str, after: u64, n: u64) -> Child {
    Child::spawn_with(test, r, &[("q", q), ("n", &n.to_string())], |cmd| {
        cmd.env("SHMPROC_CRASH_POINT", point)
            .env("SHMPROC_CRASH_AFTER", after.to_string());
    })
    .expect("spawn")
}

#[test]
fn producer_killed_between_claim_and_publish_is_skipped() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        for i in 0..arg_parsed::<u64>("n") {
            q.put(i).expect("put");
        }
        panic!("the crash point never fired");
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 64).expect("create");
    share_both_sides(&q);
    let cap = q.capacity() as u64;
    let mut expected_skips = 0;
    for round in 0..6u64 {
        // The producer sends `k` messages, then dies holding the claim of
        // message k; `k` varies so the dead slot lands all around the ring.
        let k = 5 + round * 13 % cap;
        let child = spawn_crashing(current_test!(), "producer", &name, "put-claimed", k, cap);
        assert_eq!(child.wait_timeout(TIMEOUT).code(), -SIGABRT);
        expected_skips += 1;
        // Its k messages arrive, in order, exactly once.
        for i in 0..k {
            assert_eq!(q.get_timeout(TIMEOUT), Ok(i), "round {round}");
        }
        // The dead claim is skipped (not a hang), then the queue is empty.
        // Wait for the skip itself (a sleep slice plus a liveness check),
        // not for a fixed time: under load the first check can come late.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while q.skipped_writes() < expected_skips && std::time::Instant::now() < deadline {
            assert_eq!(
                q.get_timeout(Duration::from_millis(100)),
                Err(GetTimeoutError::Timeout)
            );
        }
        assert_eq!(q.skipped_writes(), expected_skips);
        // A full lap through every slot, the skipped one included.
        for i in 0..cap {
            q.try_put(1000 + i).expect("room");
        }
        assert!(q.full());
        for i in 0..cap {
            assert_eq!(q.try_get(), Ok(1000 + i));
        }
        assert!(q.empty());
    }
    assert_eq!(q.abandoned_reads(), 0);
}

#[test]
fn consumer_killed_mid_read_loses_only_that_message() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        loop {
            let _ = q.get_timeout(TIMEOUT).expect("get");
        }
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 16).expect("create");
    share_both_sides(&q);
    let cap = q.capacity() as u64;
    for round in 0..4u64 {
        let j = round * 3 % cap; // messages the consumer takes before dying on message j
        let base = round * 1000;
        for i in 0..cap {
            q.put(base + i).expect("room");
        }
        let child = spawn_crashing(current_test!(), "consumer", &name, "get-claimed", j, 0);
        assert_eq!(child.wait_timeout(TIMEOUT).code(), -SIGABRT);
        // Messages 0..=j are gone (j of them consumed, message j lost); the
        // rest arrive exactly once, in order.
        for i in j + 1..cap {
            assert_eq!(q.try_get(), Ok(base + i), "round {round}");
        }
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
        // The next lap reclaims the dead reader's slot and counts the loss.
        for i in 0..cap {
            q.put_timeout(base + 500 + i, TIMEOUT)
                .expect("room after reclaim");
        }
        assert_eq!(q.abandoned_reads(), round + 1);
        for i in 0..cap {
            assert_eq!(q.try_get(), Ok(base + 500 + i));
        }
    }
    assert_eq!(q.skipped_writes(), 0);
}

/// Takes both leases here and has a second thread revoke them, so every
/// process after runs the CAS protocol (the shared mode these tests are
/// about).
fn share_both_sides(q: &Queue<u64>) {
    q.put(0).expect("put");
    assert_eq!(q.get(), Ok(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            q.put(1).expect("put");
            assert_eq!(q.get(), Ok(1));
        });
    });
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    assert_eq!(q.consumer_lease(), Ok(LeaseState::Shared));
}

/// Asserts that a side's lease is held by a thread that no longer exists
/// (the dead child's).
fn held_by_the_dead(state: Result<LeaseState, shmproc_channel::Corrupt>) {
    match state {
        Ok(LeaseState::Held(tid)) => assert!(
            !std::path::Path::new(&format!("/proc/{tid}")).exists(),
            "the holder {tid} is alive"
        ),
        other => panic!("expected a held lease, found {other:?}"),
    }
}

#[test]
fn leased_producer_killed_mid_put_leaves_nothing_behind() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        for i in 0..arg_parsed::<u64>("n") {
            q.put(i).expect("put");
        }
        panic!("the crash point never fired");
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 16).expect("create");
    let cap = q.capacity() as u64;
    // The child is the first producer: it takes the lease on its first put
    // and dies inside its 6th, a leased one (written, not yet published).
    let k = 5;
    let child = spawn_crashing(current_test!(), "producer", &name, "put-claimed", k, cap);
    assert_eq!(child.wait_timeout(TIMEOUT).code(), -SIGABRT);
    held_by_the_dead(q.producer_lease());
    for i in 0..k {
        assert_eq!(q.get_timeout(TIMEOUT), Ok(i));
    }
    // Nothing half-written shows, nothing needs skipping.
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.qsize(), 0);
    // The next producer takes the side back from the dead holder and
    // writes over the unpublished slot: a full lap, in order.
    for i in 0..cap {
        q.put_timeout(100 + i, TIMEOUT).expect("room");
    }
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    assert!(q.full());
    for i in 0..cap {
        assert_eq!(q.try_get(), Ok(100 + i));
    }
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
}

#[test]
fn leased_consumer_killed_mid_get_loses_nothing() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        loop {
            let _ = q.get_timeout(TIMEOUT).expect("get");
        }
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 16).expect("create");
    let cap = q.capacity() as u64;
    for i in 0..cap {
        q.put(i).expect("room");
    }
    // The child is the first consumer: it takes the lease on its first get
    // and dies inside its 4th, a leased one (read, not yet released).
    let j = 3;
    let child = spawn_crashing(current_test!(), "consumer", &name, "get-claimed", j, 0);
    assert_eq!(child.wait_timeout(TIMEOUT).code(), -SIGABRT);
    held_by_the_dead(q.consumer_lease());
    // The message it died reading was never returned to anyone: it comes
    // again, then the rest, each once, in order.
    assert_eq!(q.qsize() as u64, cap - j);
    for i in j..cap {
        assert_eq!(q.get_timeout(TIMEOUT), Ok(i));
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.consumer_lease(), Ok(LeaseState::Shared));
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
}
