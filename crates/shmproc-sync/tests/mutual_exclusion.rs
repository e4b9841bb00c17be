//! Mutual exclusion across real processes: a shared **non-atomic** counter
//! incremented under the lock by several children reaches exactly N × K.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::{Lock, RLock, RawValue, Value};
use shmproc_testing::{Child, TestShm, Watchdog, arg, arg_parsed, current_test, role};

const CHILDREN: usize = 3;
const K: u64 = 20_000;
const T: Duration = Duration::from_secs(60);

fn spawn_all(test: &str, args: &[(&str, &str)]) -> Vec<Child> {
    (0..CHILDREN)
        .map(|_| Child::spawn(test, "incr", args).expect("spawn child"))
        .collect()
}

#[test]
fn lock_guards_a_raw_counter_across_processes() {
    if role().is_some() {
        let lock = Lock::open(&arg("lock").expect("lock name")).expect("open lock");
        let counter = RawValue::<u64>::open(&arg("counter").expect("name")).expect("open counter");
        for _ in 0..arg_parsed::<u64>("k") {
            let _g = lock.lock_timeout(T).expect("no timeout, no dead holder");
            counter.store(counter.load() + 1);
        }
        return;
    }
    let _wd = Watchdog::new(T);
    let shm = TestShm::new();
    let (ln, cn) = (shm.name("lock"), shm.name("counter"));
    let _lock = Lock::create(&ln).expect("create lock");
    let counter = RawValue::create(&cn, 0u64).expect("create counter");
    let k = K.to_string();
    for c in spawn_all(
        current_test!(),
        &[("lock", &ln), ("counter", &cn), ("k", &k)],
    ) {
        c.expect_success(T);
    }
    assert_eq!(counter.load(), CHILDREN as u64 * K);
}

#[test]
fn rlock_taken_recursively_guards_a_raw_counter_across_processes() {
    if role().is_some() {
        let lock = RLock::open(&arg("lock").expect("lock name")).expect("open rlock");
        let counter = RawValue::<u64>::open(&arg("counter").expect("name")).expect("open counter");
        for _ in 0..arg_parsed::<u64>("k") {
            let _outer = lock.lock_timeout(T).expect("no timeout, no dead holder");
            let _inner = lock.lock_timeout(T).expect("recursive");
            counter.store(counter.load() + 1);
        }
        return;
    }
    let _wd = Watchdog::new(T);
    let shm = TestShm::new();
    let (ln, cn) = (shm.name("rlock"), shm.name("counter"));
    let _lock = RLock::create(&ln).expect("create rlock");
    let counter = RawValue::create(&cn, 0u64).expect("create counter");
    let k = K.to_string();
    for c in spawn_all(
        current_test!(),
        &[("lock", &ln), ("counter", &cn), ("k", &k)],
    ) {
        c.expect_success(T);
    }
    assert_eq!(counter.load(), CHILDREN as u64 * K);
}

#[test]
fn value_guard_increments_across_processes_and_threads() {
    if role().is_some() {
        let v = Value::<u64>::open(&arg("value").expect("name")).expect("open value");
        let k = arg_parsed::<u64>("k");
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..k {
                        *v.lock_timeout(T).expect("no timeout, no dead holder") += 1;
                    }
                });
            }
        });
        return;
    }
    let _wd = Watchdog::new(T);
    let shm = TestShm::new();
    let vn = shm.name("value");
    let v = Value::create(&vn, 0u64).expect("create value");
    let k = K.to_string();
    for c in spawn_all(current_test!(), &[("value", &vn), ("k", &k)]) {
        c.expect_success(T);
    }
    assert_eq!(v.load().expect("no dead holder"), 2 * CHILDREN as u64 * K);
}
