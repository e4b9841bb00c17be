//! Loom models of the lock and semaphore state machines, on heap storage.
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p shmproc-sync --test loom --release
//! ```
//! Every model has each thread store to shared state, so loom explores more
//! than one interleaving (`LOOM_LOG=info ... -- --nocapture` prints the count).
//! `RawRLock` is not modelled: loom threads share one OS thread, hence one
//! tid, and the RLock's owner is a tid.
#![cfg(all(shmproc_loom, not(shmproc_shuttle)))]
#![allow(unsafe_code)] // Non-atomic accesses through loom's UnsafeCell, to catch a broken lock.

use loom::sync::Arc;
use loom::thread;
use shmproc_shm::sync::UnsafeCell;
use shmproc_sync::TryLockError;
use shmproc_sync::raw::{RawEvent, RawLock, RawSemaphore};

/// Increments a non-atomic counter; loom reports a data race if two threads
/// are ever inside at once.
fn bump(cell: &UnsafeCell<u32>) {
    // SAFETY: called only while holding the lock (which is what loom checks).
    cell.with_mut(|p| unsafe { *p += 1 });
}

fn read(cell: &UnsafeCell<u32>) -> u32 {
    // SAFETY: called after every thread was joined.
    cell.with(|p| unsafe { *p })
}

#[test]
fn lock_is_mutually_exclusive() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (lock, data) = (lock.clone(), data.clone());
                thread::spawn(move || {
                    let _g = lock.lock().expect("no owner dies in the model");
                    bump(&data);
                })
            })
            .collect();
        for h in hs {
            h.join().expect("no panic");
        }
        assert_eq!(read(&data), 2);
        assert!(!lock.is_locked());
    });
}

#[test]
fn try_lock_never_admits_two() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let (l2, d2) = (lock.clone(), data.clone());
        let h = thread::spawn(move || match l2.try_lock() {
            Ok(_g) => {
                bump(&d2);
                1
            }
            Err(TryLockError::WouldBlock) => 0,
            Err(e) => panic!("nobody died: {e}"),
        });
        let mine = {
            let _g = lock.lock().expect("no owner dies in the model");
            bump(&data);
            1
        };
        let theirs = h.join().expect("no panic");
        assert_eq!(read(&data), mine + theirs);
    });
}

#[test]
fn semaphore_of_one_is_a_lock() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(1, u32::MAX));
        let data = Arc::new(UnsafeCell::new(0u32));
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (sem, data) = (sem.clone(), data.clone());
                thread::spawn(move || {
                    sem.acquire();
                    bump(&data);
                    sem.release_bounded(u32::MAX).expect("unbounded");
                })
            })
            .collect();
        for h in hs {
            h.join().expect("no panic");
        }
        assert_eq!(read(&data), 2);
        assert_eq!(sem.get_value(), 1);
    });
}

#[test]
fn semaphore_release_wakes_a_waiter_and_bound_holds() {
    loom::model(|| {
        // These primitives pair their waiter registration and the waker's
        // check with `SeqCst` accesses only (no fence), which C11 orders but
        // loom treats as AcqRel (its README: "false alarms"): with the
        // model's blocking futex loom reports a lost wake-up that no C11
        // execution has. So the futex times out here (a yield), as before.
        shmproc_sync::model::set_timeouts(true);
        let sem = Arc::new(RawSemaphore::new(0, 1));
        let data = Arc::new(UnsafeCell::new(0u32));
        let (s2, d2) = (sem.clone(), data.clone());
        let h = thread::spawn(move || {
            bump(&d2);
            s2.release_bounded(1).expect("below the bound");
        });
        sem.acquire();
        // The release happened-before our acquire: reading is race-free.
        assert_eq!(read(&data), 1);
        h.join().expect("no panic");
        assert_eq!(sem.get_value(), 0);
        sem.release_bounded(1).expect("below the bound");
        assert!(sem.release_bounded(1).is_err(), "over-release");
    });
}

#[test]
fn event_set_is_seen_by_a_waiter() {
    loom::model(|| {
        // These primitives pair their waiter registration and the waker's
        // check with `SeqCst` accesses only (no fence), which C11 orders but
        // loom treats as AcqRel (its README: "false alarms"): with the
        // model's blocking futex loom reports a lost wake-up that no C11
        // execution has. So the futex times out here (a yield), as before.
        shmproc_sync::model::set_timeouts(true);
        let ev = Arc::new(RawEvent::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let (e2, d2) = (ev.clone(), data.clone());
        let h = thread::spawn(move || {
            bump(&d2);
            e2.set();
        });
        ev.wait();
        assert_eq!(read(&data), 1);
        h.join().expect("no panic");
    });
}
