//! Semaphore and BoundedSemaphore: counting across processes, over-release
//! errors, and the try/timeout forms.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{BoundedSemaphore, ReleaseError, Semaphore, Timeout, WouldBlock};
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const T: Duration = Duration::from_secs(20);

#[test]
fn releases_from_children_wake_the_parent() {
    if role().is_some() {
        let sem = Semaphore::open(&arg("sem").expect("sem")).expect("open semaphore");
        for _ in 0..5 {
            sem.release().expect("unbounded");
        }
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("sem");
    let sem = Semaphore::create(&name, 0).expect("create semaphore");
    let children: Vec<Child> = (0..2)
        .map(|_| Child::spawn(current_test!(), "releaser", &[("sem", &name)]).expect("spawn"))
        .collect();
    for _ in 0..10 {
        sem.acquire_timeout(T).expect("a child releases");
    }
    for c in children {
        c.expect_success(T);
    }
    assert_eq!(sem.get_value(), 0);
    assert_eq!(sem.try_acquire(), Err(WouldBlock));
}

#[test]
fn bounded_semaphore_over_release_is_an_error_in_another_process() {
    if role().is_some() {
        let sem = BoundedSemaphore::open(&arg("sem").expect("sem")).expect("open");
        assert_eq!(sem.max_value(), 2);
        sem.release().expect("one slot was taken by the parent");
        assert_eq!(sem.release(), Err(ReleaseError::TooManyReleases { max: 2 }));
        return;
    }
    let _wd = Watchdog::new(T * 2);
    let shm = TestShm::new();
    let name = shm.name("bsem");
    let sem = BoundedSemaphore::create(&name, 2).expect("create");
    assert_eq!(sem.release(), Err(ReleaseError::TooManyReleases { max: 2 }));
    sem.try_acquire().expect("value 2");
    Child::spawn(current_test!(), "releaser", &[("sem", &name)])
        .expect("spawn")
        .expect_success(T);
    assert_eq!(sem.get_value(), 2);
    // An unbounded Semaphore segment is not a BoundedSemaphore.
    assert!(Semaphore::open(&name).is_err());
}

#[test]
fn try_and_timeout_forms() {
    let _wd = Watchdog::new(T);
    let sem = Semaphore::new(1).expect("semaphore");
    sem.try_acquire().expect("value 1");
    assert_eq!(sem.try_acquire(), Err(WouldBlock));
    let start = std::time::Instant::now();
    assert_eq!(sem.acquire_timeout(Duration::from_millis(20)), Err(Timeout));
    assert!(start.elapsed() >= Duration::from_millis(20));
    std::thread::scope(|s| {
        let h = s.spawn(|| sem.acquire_timeout(T));
        sem.release().expect("unbounded");
        assert_eq!(h.join().expect("no panic"), Ok(()));
    });
    sem.release().expect("unbounded");
    sem.acquire();
    assert_eq!(sem.get_value(), 0);
    let b = BoundedSemaphore::new(0).expect("bounded at 0");
    assert_eq!(b.try_acquire(), Err(WouldBlock));
    assert!(b.release().is_err());
}
