//! Every try/timeout form of Lock, RLock, Value and Array returns the right
//! result; a corrupt lock word is reported as OwnerDied, never a hang;
//! `?` takes every lock error into `Box<dyn Error + Send + Sync>`.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::{Duration, Instant};

use shmproc_sync::{Array, Lock, LockTimeoutError, RLock, ReleaseError, TryLockError, Value};
use shmproc_testing::Watchdog;

const T: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_millis(20);

fn assert_times_out<G>(f: impl FnOnce() -> Result<G, LockTimeoutError>) {
    let start = Instant::now();
    assert!(matches!(f(), Err(LockTimeoutError::Timeout)));
    assert!(start.elapsed() >= SHORT);
}

#[test]
fn lock_forms() {
    let _wd = Watchdog::new(T);
    let lock = Lock::new().expect("lock");
    let g = lock.lock().expect("free");
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)));
    assert_times_out(|| lock.lock_timeout(SHORT));
    assert_times_out(|| lock.acquire_timeout(SHORT));
    assert_eq!(lock.owner_pid(), Some(std::process::id()));
    drop(g);
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
    lock.acquire_timeout(T).expect("free");
    // As in Python, another thread may release a Lock.
    std::thread::scope(|s| {
        s.spawn(|| lock.release().expect("held"))
            .join()
            .expect("no panic")
    });
    // A waiter blocked in lock() gets it when the holder releases.
    let g = lock.lock().expect("free");
    std::thread::scope(|s| {
        let h = s.spawn(|| lock.lock_timeout(T).map(drop).is_ok());
        drop(g);
        assert!(h.join().expect("no panic"));
    });
}

#[test]
fn rlock_forms() {
    let _wd = Watchdog::new(T);
    let lock = RLock::new().expect("rlock");
    let a = lock.try_lock().expect("free");
    let b = lock.lock_timeout(SHORT).expect("owner re-acquires at once");
    assert_eq!(lock.recursion_count(), 2);
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
            assert_times_out(|| lock.lock_timeout(SHORT));
            assert!(matches!(lock.release(), Err(ReleaseError::NotOwner { .. })));
            assert_eq!(lock.recursion_count(), 0);
        })
        .join()
        .expect("no panic");
    });
    drop((b, a));
    assert_eq!(lock.release(), Err(ReleaseError::NotLocked));
}

#[test]
fn value_and_array_forms() {
    let _wd = Watchdog::new(T);
    let v = Value::new(5i32).expect("value");
    let g = v.lock().expect("free");
    assert!(matches!(v.try_lock(), Err(TryLockError::WouldBlock)));
    assert_times_out(|| v.lock_timeout(SHORT));
    assert!(v.get_lock().is_locked());
    drop(g);
    *v.try_lock().expect("free") += 1;
    assert_eq!(v.load().expect("clean"), 6);

    let a = Array::new(4, 0u16).expect("array");
    let g = a.lock().expect("free");
    assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
    assert_times_out(|| a.lock_timeout(SHORT));
    drop(g);
    a.lock_timeout(T).expect("free")[3] = 9;
    assert_eq!(a.to_vec().expect("clean"), [0, 0, 0, 9]);
}

#[test]
fn corrupt_lock_word_is_taken_over_not_a_hang() {
    let _wd = Watchdog::new(T);
    let lock = Lock::new().expect("lock");
    // Garbage from a hostile writer: a pid that cannot exist, waiters bit set.
    lock.word_for_tests()
        .store(0xffff_ffff, std::sync::atomic::Ordering::Relaxed);
    match lock.lock_timeout(T) {
        Err(LockTimeoutError::OwnerDied(_)) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(!lock.is_locked());
    lock.clear_poison();
    drop(lock.lock().expect("clean again"));
}

/// Python's `with v.get_lock(): v.value += 1`, in a function returning a
/// boxed error: every lock error is `'static + Send + Sync`.
fn increment(
    v: &Value<u64>,
    a: &Array<u8>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    *v.lock()? += 1;
    *v.lock_timeout(T)? += 1;
    *v.lock_deadline(Instant::now() + T)? += 1;
    *v.try_lock()? += 1;
    a.set_str("hi")?;
    let lock = Lock::new()?;
    let _held = lock.lock()?;
    Ok(())
}

#[test]
fn question_mark_works_on_every_lock_call() {
    let _wd = Watchdog::new(T);
    let v = Value::new(0u64).expect("value");
    let a = Array::new(4, 0u8).expect("array");
    increment(&v, &a).expect("no holder died");
    assert_eq!(v.load().expect("clean"), 4);
    assert_eq!(a.to_string_lossy().expect("clean"), "hi");
    // A poisoned lock propagates through `?` with its message.
    v.get_lock()
        .word_for_tests()
        .store(0xffff_ffff, std::sync::atomic::Ordering::Relaxed);
    let e = increment(&v, &a).expect_err("the holder is dead");
    assert!(e.to_string().contains("died while holding it"), "{e}");
}
