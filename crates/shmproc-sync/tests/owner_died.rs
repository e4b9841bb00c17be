//! SIGKILL a child while it holds a Lock, an RLock (recursively), a
//! Condition's lock or a Value's lock: the survivors get `OwnerDied` (not
//! holding the lock), the lock stays poisoned (every later lock reports it)
//! until someone repairs the state under `lock_ignoring_poison` and clears
//! the poison, and the primitive works normally afterwards.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{Condition, Event, Lock, LockTimeoutError, RLock, TryLockError, Value};
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const T: Duration = Duration::from_secs(20);

/// In the child: takes the lock with `hold`, says so, and waits to be killed.
fn child_holds(hold: impl FnOnce()) {
    let held = Event::open(&arg("held").expect("held")).expect("open held");
    let never = Event::open(&arg("never").expect("never")).expect("open never");
    hold();
    held.set();
    // Killed while waiting here; finishing the wait is a test failure.
    assert!(never.wait_timeout(T).is_ok(), "the parent never killed us");
}

/// In the parent: starts the child, waits until it holds the lock, lets
/// `while_held` start waiters, kills the child and reaps it.
fn kill_while_holding(test: &str, shm: &TestShm, obj: &str, while_held: impl FnOnce()) {
    let (hn, nn) = (shm.name("held"), shm.name("never"));
    let held = Event::create(&hn).expect("create held");
    let _never = Event::create(&nn).expect("create never");
    let mut child = Child::spawn(
        test,
        "holder",
        &[("obj", obj), ("held", &hn), ("never", &nn)],
    )
    .expect("spawn holder");
    assert!(
        held.wait_timeout(T).is_ok(),
        "the child never took the lock"
    );
    while_held();
    child.kill();
    assert_eq!(child.wait_timeout(T).code(), -9);
}

#[test]
fn lock_holder_killed() {
    if role().is_some() {
        let lock = Lock::open(&arg("obj").expect("obj")).expect("open lock");
        child_holds(|| std::mem::forget(lock.lock().expect("first holder")));
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("lock");
    let lock = Lock::create(&name).expect("create lock");
    std::thread::scope(|s| {
        let mut waiter = None;
        kill_while_holding(current_test!(), &shm, &name, || {
            assert!(lock.try_lock().is_err(), "held by the child");
            // A waiter already asleep when the holder dies.
            waiter = Some(s.spawn(|| match lock.lock_timeout(T) {
                Err(LockTimeoutError::OwnerDied(died)) => {
                    assert!(died.dead_owner().is_some_and(|p| p > 0));
                }
                other => panic!("expected OwnerDied, got {other:?}"),
            }));
        });
        waiter.expect("started").join().expect("waiter passed");
    });
    // Not held, and poisoned: every later lock reports it.
    assert!(!lock.is_locked());
    assert!(lock.is_poisoned());
    match lock.try_lock() {
        Err(TryLockError::OwnerDied(d)) => assert_eq!(d.dead_owner(), None),
        other => panic!("expected the poison, got {other:?}"),
    }
    assert!(!lock.is_locked(), "a poisoned lock is not left held");
    // Repair under the lock, clear the poison: back to normal.
    let g = lock.lock_ignoring_poison();
    lock.clear_poison();
    drop(g);
    let g = lock.try_lock().expect("free and clean");
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    drop(g);
    assert_eq!(lock.owner_deaths(), 1);
    assert!(!lock.is_locked());
}

#[test]
fn lock_holder_killed_is_noticed_within_a_second() {
    if role().is_some() {
        let lock = Lock::open(&arg("obj").expect("obj")).expect("open lock");
        child_holds(|| std::mem::forget(lock.lock().expect("first holder")));
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("lock");
    let lock = Lock::create(&name).expect("create lock");
    kill_while_holding(current_test!(), &shm, &name, || {});
    // The bound: the next acquirer gets the lock within one second.
    match lock.lock_timeout(Duration::from_secs(1)) {
        Err(LockTimeoutError::OwnerDied(died)) => assert!(died.dead_owner().is_some()),
        other => panic!("expected OwnerDied within 1 s, got {other:?}"),
    }
    assert!(lock.acquire().is_err(), "poisoned until cleared");
    lock.clear_poison();
    lock.acquire().expect("clean");
    lock.release().expect("held");
}

#[test]
fn rlock_held_recursively_when_killed() {
    if role().is_some() {
        let lock = RLock::open(&arg("obj").expect("obj")).expect("open rlock");
        child_holds(|| {
            for _ in 0..3 {
                lock.acquire().expect("recursive acquire");
            }
            assert_eq!(lock.recursion_count(), 3);
        });
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("rlock");
    let lock = RLock::create(&name).expect("create rlock");
    kill_while_holding(current_test!(), &shm, &name, || {
        assert!(lock.try_lock().is_err());
        assert!(lock.release().is_err(), "only the owner releases");
    });
    match lock.acquire_timeout(T) {
        Err(LockTimeoutError::OwnerDied(_)) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(!lock.is_locked(), "reported, not held");
    assert!(lock.lock().is_err(), "poisoned until cleared");
    // Repaired at level 1: one release frees it.
    let g = lock.lock_ignoring_poison();
    assert_eq!(lock.recursion_count(), 1);
    lock.clear_poison();
    drop(g);
    assert!(!lock.is_locked());
    let a = lock.lock().expect("clean");
    let b = lock.lock().expect("recursive");
    drop((b, a));
    assert!(!lock.is_locked());
}

#[test]
fn condition_lock_holder_killed() {
    if role().is_some() {
        let cond = Condition::open(&arg("obj").expect("obj")).expect("open condition");
        child_holds(|| std::mem::forget(cond.lock().expect("first holder")));
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("cond");
    let cond = Condition::create(&name).expect("create condition");
    kill_while_holding(current_test!(), &shm, &name, || {});
    match cond.lock_timeout(T) {
        Err(LockTimeoutError::OwnerDied(_)) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(!cond.is_owned());
    assert!(cond.is_poisoned());
    let g = cond.lock_ignoring_poison();
    cond.clear_poison();
    cond.notify_all().expect("held");
    let (g, notified) = cond
        .wait_timeout(g, Duration::from_millis(10))
        .expect("clean");
    assert!(!notified);
    drop(g);
    assert!(!cond.is_owned());
}

#[test]
fn value_holder_killed_mid_update() {
    if role().is_some() {
        let v = Value::<[u64; 2]>::open(&arg("obj").expect("obj")).expect("open value");
        child_holds(|| {
            let mut g = v.lock().expect("first holder");
            g[0] = 1; // half of an update that keeps both halves equal
            std::mem::forget(g);
        });
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("value");
    let v = Value::create(&name, [0u64, 0]).expect("create value");
    kill_while_holding(current_test!(), &shm, &name, || {});
    match v.lock_timeout(T) {
        Err(LockTimeoutError::OwnerDied(died)) => assert!(died.dead_owner().is_some()),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Nobody reads the half-update without being told.
    assert!(v.load().is_err());
    assert!(v.store([5, 5]).is_err());
    {
        let mut g = v.lock_ignoring_poison();
        assert_eq!(*g, [1, 0], "the half-done update is visible");
        g[1] = 1; // repaired
        v.get_lock().clear_poison();
    }
    assert_eq!(v.load().expect("clean"), [1, 1]);
}
