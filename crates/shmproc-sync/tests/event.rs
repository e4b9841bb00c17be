//! Event: a child blocked in `wait` wakes when the parent sets the flag, and
//! the timeout forms report the flag.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{Event, Semaphore};
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const T: Duration = Duration::from_secs(20);

#[test]
fn child_waiting_wakes_when_parent_sets() {
    if role().is_some() {
        let ready = Semaphore::open(&arg("ready").expect("ready")).expect("open ready");
        let go = Event::open(&arg("go").expect("go")).expect("open go");
        assert!(
            !go.is_set(),
            "the parent sets it only after every child is ready"
        );
        ready.release().expect("unbounded");
        assert!(go.wait_timeout(T).is_ok(), "woken by the parent's set");
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let (rn, gn) = (shm.name("ready"), shm.name("go"));
    let ready = Semaphore::create(&rn, 0).expect("create ready");
    let go = Event::create(&gn).expect("create go");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            Child::spawn(current_test!(), "waiter", &[("ready", &rn), ("go", &gn)]).expect("spawn")
        })
        .collect();
    for _ in 0..2 {
        ready.acquire_timeout(T).expect("a child is ready");
    }
    go.set();
    for c in children {
        c.expect_success(T);
    }
}

#[test]
fn set_clear_and_timeouts() {
    let _wd = Watchdog::new(T);
    let ev = Event::new().expect("event");
    assert!(!ev.is_set());
    assert!(ev.try_wait().is_err());
    let start = std::time::Instant::now();
    assert!(ev.wait_timeout(Duration::from_millis(20)).is_err());
    assert!(start.elapsed() >= Duration::from_millis(20));
    ev.set();
    assert!(ev.is_set() && ev.try_wait().is_ok());
    assert!(ev.wait_timeout(Duration::ZERO).is_ok());
    ev.wait();
    ev.clear();
    assert!(ev.wait_timeout(Duration::from_millis(1)).is_err());
    std::thread::scope(|s| {
        let h = s.spawn(|| ev.wait_timeout(T));
        ev.set();
        assert!(h.join().expect("no panic").is_ok());
    });
}
