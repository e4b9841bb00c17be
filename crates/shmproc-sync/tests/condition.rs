//! Condition: producer/consumer across processes, and the in-process rules
//! (notify needs the lock, wait_timeout reports a timeout, wait_for).
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{Condition, NotifyError, RawArray};
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const T: Duration = Duration::from_secs(20);
const ITEMS: u64 = 300;
const CONSUMERS: usize = 2;

// Shared words of the queue model: [available, consumed, done]
const AVAILABLE: usize = 0;
const CONSUMED: usize = 1;
const DONE: usize = 2;

#[test]
fn producer_and_consumers_across_processes() {
    if role().is_some() {
        let cond = Condition::open(&arg("cond").expect("cond")).expect("open condition");
        let q = RawArray::<u64>::open(&arg("q").expect("q")).expect("open words");
        let get = |i| q.get(i).expect("in bounds");
        let mut g = cond.lock_timeout(T).expect("lock");
        loop {
            let (g2, ok) = cond
                .wait_for_timeout(g, T, || get(AVAILABLE) > 0 || get(DONE) == 1)
                .expect("no dead holder");
            g = g2;
            assert!(ok, "consumer starved");
            if get(AVAILABLE) > 0 {
                q.set(AVAILABLE, get(AVAILABLE) - 1).expect("in bounds");
                q.set(CONSUMED, get(CONSUMED) + 1).expect("in bounds");
            } else {
                return; // done and drained
            }
        }
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let (cn, qn) = (shm.name("cond"), shm.name("q"));
    let cond = Condition::create(&cn).expect("create condition");
    let q = RawArray::create(&qn, 3, 0u64).expect("create words");
    let consumers: Vec<Child> = (0..CONSUMERS)
        .map(|_| {
            Child::spawn(current_test!(), "consumer", &[("cond", &cn), ("q", &qn)]).expect("spawn")
        })
        .collect();
    for _ in 0..ITEMS {
        let _g = cond.lock_timeout(T).expect("lock");
        q.set(AVAILABLE, q.get(AVAILABLE).expect("in bounds") + 1)
            .expect("in bounds");
        cond.notify(1).expect("held");
    }
    {
        let _g = cond.lock_timeout(T).expect("lock");
        q.set(DONE, 1).expect("in bounds");
        cond.notify_all().expect("held");
    }
    for c in consumers {
        c.expect_success(T);
    }
    assert_eq!(q.get(CONSUMED), Some(ITEMS));
    assert_eq!(q.get(AVAILABLE), Some(0));
}

#[test]
fn notify_requires_the_lock_and_wait_timeout_times_out() {
    let _wd = Watchdog::new(T);
    for cond in [
        Condition::new().expect("rlock flavour"),
        Condition::new_over_lock().expect("lock flavour"),
    ] {
        assert_eq!(cond.notify(1), Err(NotifyError));
        assert_eq!(cond.notify_all(), Err(NotifyError));
        let g = cond.lock().expect("lock");
        cond.notify(1).expect("held: no waiters is fine");
        let start = std::time::Instant::now();
        let (g, notified) = cond
            .wait_timeout(g, Duration::from_millis(20))
            .expect("lock");
        assert!(!notified);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(cond.is_owned(), "the lock is held again after a wait");
        let (g, ok) = cond
            .wait_for_timeout(g, Duration::from_millis(5), || false)
            .expect("lock");
        assert!(!ok);
        let g = cond.wait_for(g, || true).expect("true at once");
        drop(g);
        assert!(!cond.is_owned());
        assert!(cond.try_lock().is_ok());
    }
}

#[test]
fn rlock_condition_wait_releases_every_level() {
    let _wd = Watchdog::new(T);
    let cond = Condition::new().expect("condition");
    let flag = RawArray::new(1, 0u32).expect("flag");
    let outer = cond.lock().expect("lock");
    cond.acquire().expect("recursive level 2");
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // Can only get in if the waiter released both levels.
            let _g = cond.lock_timeout(T).expect("the waiter released the lock");
            flag.set(0, 1).expect("in bounds");
            cond.notify(1).expect("held");
        });
        let g = cond
            .wait_for(outer, || flag.get(0) == Some(1))
            .expect("lock");
        assert!(cond.is_owned());
        cond.release().expect("level 2");
        drop(g);
        h.join().expect("no panic");
    });
    assert!(!cond.is_owned());
}
