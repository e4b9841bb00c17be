//! `lock_api` over `RawLock`: the familiar guards, process-local.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use std::time::Duration;

use shmproc_sync::ShmThreadId;
use shmproc_sync::raw::RawLock;
use shmproc_testing::Watchdog;

type Mutex<T> = lock_api::Mutex<RawLock, T>;
type ReentrantMutex<T> = lock_api::ReentrantMutex<RawLock, ShmThreadId, T>;

#[test]
fn lock_api_mutex_and_reentrant_mutex() {
    let _wd = Watchdog::new(Duration::from_secs(20));
    let m = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    *m.lock() += 1;
                }
            });
        }
    });
    assert_eq!(*m.lock(), 20_000);
    let g = m.lock();
    assert!(m.try_lock().is_none());
    assert!(m.try_lock_for(Duration::from_millis(5)).is_none());
    drop(g);
    assert!(m.try_lock().is_some());

    let r = ReentrantMutex::new(());
    let a = r.lock();
    let b = r.lock();
    drop((b, a));
    assert!(!r.is_locked());
}
