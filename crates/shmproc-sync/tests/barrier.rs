//! Barrier: a 3-party barrier over several rounds across processes, the
//! action run once per round, and a party killed while waiting breaking it.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{Barrier, BarrierWaitError, Event, RawArray};
use shmproc_testing::{Child, TestShm, Watchdog, arg, arg_parsed, current_test, role};

const T: Duration = Duration::from_secs(20);
const ROUNDS: usize = 5;
const PARTIES: usize = 3;

/// One party: `ROUNDS` waits, recording each index at `[round][party]`, and
/// an action that counts rounds in the last slot.
fn party(b: Barrier, record_name: &str, me: usize) {
    let record = RawArray::<u32>::open(record_name).expect("open record");
    let actions = RawArray::<u32>::open(record_name).expect("open record");
    let b = b.with_action(move || {
        // Runs while every other party is blocked: a plain increment is safe.
        let n = actions.get(ROUNDS * PARTIES).expect("in bounds");
        actions.set(ROUNDS * PARTIES, n + 1).expect("in bounds");
    });
    for round in 0..ROUNDS {
        let idx = b.wait_timeout(T).expect("round completes");
        record.set(round * PARTIES + me, idx).expect("in bounds");
    }
}

#[test]
fn three_parties_over_several_rounds() {
    if role().is_some() {
        let b = Barrier::open(&arg("barrier").expect("barrier")).expect("open barrier");
        assert_eq!(b.parties(), PARTIES as u32);
        party(b, &arg("record").expect("record"), arg_parsed("me"));
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let (bn, rn) = (shm.name("barrier"), shm.name("record"));
    let b = Barrier::create(&bn, PARTIES as u32).expect("create barrier");
    let record = RawArray::create(&rn, ROUNDS * PARTIES + 1, u32::MAX).expect("create record");
    record.set(ROUNDS * PARTIES, 0).expect("in bounds");
    let children: Vec<Child> = (1..PARTIES)
        .map(|me| {
            let me = me.to_string();
            Child::spawn(
                current_test!(),
                "party",
                &[("barrier", &bn), ("record", &rn), ("me", &me)],
            )
            .expect("spawn party")
        })
        .collect();
    party(b, &rn, 0);
    for c in children {
        c.expect_success(T);
    }
    for round in 0..ROUNDS {
        let mut idx: Vec<u32> = (0..PARTIES)
            .map(|p| record.get(round * PARTIES + p).expect("in bounds"))
            .collect();
        idx.sort_unstable();
        assert_eq!(
            idx,
            [0, 1, 2],
            "round {round}: each party gets a distinct index"
        );
    }
    assert_eq!(
        record.get(ROUNDS * PARTIES),
        Some(ROUNDS as u32),
        "one action per round"
    );
}

#[test]
fn party_killed_while_waiting_breaks_the_barrier() {
    if role().is_some() {
        let b = Barrier::open(&arg("barrier").expect("barrier")).expect("open barrier");
        let waiting = Event::open(&arg("waiting").expect("waiting")).expect("open event");
        waiting.set();
        // Killed while waiting here (the third party never comes).
        let r = b.wait_timeout(T);
        panic!("the parent never killed us: {r:?}");
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let (bn, wn) = (shm.name("barrier"), shm.name("waiting"));
    let b = Barrier::create(&bn, 3).expect("create barrier");
    let waiting = Event::create(&wn).expect("create event");
    let mut child = Child::spawn(
        current_test!(),
        "party",
        &[("barrier", &bn), ("waiting", &wn)],
    )
    .expect("spawn party");
    assert!(waiting.wait_timeout(T).is_ok());
    assert!(
        shmproc_testing::wait_until(T, || b.n_waiting() == 1),
        "child is waiting"
    );
    std::thread::scope(|s| {
        let survivor = s.spawn(|| b.wait_timeout(T));
        assert!(
            shmproc_testing::wait_until(T, || b.n_waiting() == 2),
            "survivor is waiting"
        );
        child.kill();
        assert_eq!(
            survivor.join().expect("no panic"),
            Err(BarrierWaitError::Broken)
        );
    });
    assert_eq!(child.wait_timeout(T).code(), -9);
    assert!(b.broken());
    assert_eq!(b.wait_timeout(T), Err(BarrierWaitError::Broken));
    // Usable again after a reset: three threads complete a round.
    b.reset();
    assert!(!b.broken());
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait_timeout(T))).collect();
        let mut idx: Vec<u32> = hs
            .into_iter()
            .map(|h| h.join().expect("no panic").expect("round"))
            .collect();
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2]);
    });
}

#[test]
fn abort_reset_try_wait_and_timeout_in_one_process() {
    let _wd = Watchdog::new(T);
    let b = Barrier::new(2).expect("barrier");
    assert_eq!(b.parties(), 2);
    assert_eq!(b.try_wait(), Err(BarrierWaitError::WouldBlock));
    assert_eq!(b.n_waiting(), 0);
    // A timeout breaks the barrier, as in Python.
    let start = std::time::Instant::now();
    assert_eq!(
        b.wait_timeout(Duration::from_millis(20)),
        Err(BarrierWaitError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(b.broken());
    assert_eq!(b.try_wait(), Err(BarrierWaitError::Broken));
    b.reset();
    assert!(!b.broken());
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait_timeout(T));
        assert!(shmproc_testing::wait_until(T, || b.n_waiting() == 1));
        assert_eq!(b.try_wait(), Ok(1), "the last arrival completes the round");
        assert_eq!(h.join().expect("no panic"), Ok(0));
    });
    // Abort wakes a waiter with Broken.
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait_timeout(T));
        assert!(shmproc_testing::wait_until(T, || b.n_waiting() == 1));
        b.abort();
        assert_eq!(h.join().expect("no panic"), Err(BarrierWaitError::Broken));
    });
    assert!(b.broken());
    // Reset while someone waits: the waiter sees Broken, the barrier recovers.
    b.reset();
    std::thread::scope(|s| {
        let h = s.spawn(|| b.wait_timeout(T));
        assert!(shmproc_testing::wait_until(T, || b.n_waiting() == 1));
        b.reset();
        assert_eq!(h.join().expect("no panic"), Err(BarrierWaitError::Broken));
    });
    assert!(!b.broken());
    assert!(Barrier::new(0).is_err());
}

#[test]
fn a_panicking_action_breaks_the_barrier() {
    let _wd = Watchdog::new(T);
    let b = Barrier::new(1)
        .expect("barrier")
        .with_action(|| panic!("action failed"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.wait()));
    assert!(r.is_err(), "the panic reaches the caller");
    assert!(b.broken());
}
