//! Crash injection (feature `crash-points`, on for this crate's tests): a
//! producer aborts between claiming a slot and publishing it, or a consumer
//! between claiming and releasing. The queue keeps working and the counts
//! prove that nothing else was lost or duplicated.
#![cfg(not(shmproc_loom))]

use std::time::Duration;

use shmproc_channel::{GetError, Queue};
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
                Err(GetError::Timeout)
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
        assert_eq!(q.try_get(), Err(GetError::Empty));
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
