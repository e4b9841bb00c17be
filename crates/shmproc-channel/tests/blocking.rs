//! Blocking calls: a consumer blocked on an empty queue and a producer
//! blocked on a full one are woken (threads and processes), timeouts expire
//! (lower bounds only), and close wakes and fails the sleepers.
#![cfg(not(shmproc_loom))]
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use std::time::{Duration, Instant};

use shmproc_channel::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, SimpleQueue, TryGetError,
    TryPutError,
};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role};

#[test]
fn timeouts_wait_at_least_the_timeout() {
    let q = Queue::<u32>::new(1).expect("create");
    let d = Duration::from_millis(30);
    let t0 = Instant::now();
    assert_eq!(q.get_timeout(d), Err(GetTimeoutError::Timeout));
    assert!(t0.elapsed() >= d);
    q.put(1).expect("room");
    let t0 = Instant::now();
    assert_eq!(q.put_timeout(2, d), Err(PutTimeoutError::Timeout(2)));
    assert!(t0.elapsed() >= d);
    assert!(q.get_ref_timeout(d).is_ok());
}

#[test]
fn blocked_consumer_and_producer_are_woken_by_threads() {
    let _wd = Watchdog::new(TIMEOUT);
    let q = Queue::<u64>::new(2).expect("create");
    std::thread::scope(|s| {
        let getter = s.spawn(|| (0..1000).map(|_| q.get().expect("get")).sum::<u64>());
        for i in 0..1000 {
            q.put(i).expect("put"); // blocks whenever the ring is full
        }
        assert_eq!(getter.join().expect("getter"), 999 * 1000 / 2);
    });
}

#[test]
fn blocked_consumer_is_woken_by_another_process() {
    if role().is_some() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        // Blocks until the parent puts, then answers.
        let v = q.get_timeout(TIMEOUT).expect("get");
        let back = Queue::<u64>::open(&arg("back").expect("back")).expect("open back");
        back.put(v + 1).expect("put");
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let (qn, bn) = (shm.name("q"), shm.name("back"));
    let q = Queue::<u64>::create(&qn, 4).expect("create");
    let back = Queue::<u64>::create(&bn, 4).expect("create");
    let child =
        Child::spawn(current_test!(), "getter", &[("q", &qn), ("back", &bn)]).expect("spawn");
    // The child is (most likely) asleep in get by now; either way the put
    // must reach it.
    q.put(41).expect("put");
    assert_eq!(back.get_timeout(TIMEOUT), Ok(42));
    child.expect_success(TIMEOUT);
}

#[test]
fn close_fails_puts_drains_gets_and_wakes_sleepers() {
    let _wd = Watchdog::new(TIMEOUT);
    let q = Queue::<u32>::new(4).expect("create");
    q.put(1).expect("put");
    q.put(2).expect("put");
    q.close();
    assert!(q.is_closed());
    assert_eq!(q.try_put(3), Err(TryPutError::Closed(3)));
    assert_eq!(q.put(3), Err(PutError::Closed(3)));
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.try_get(), Ok(2));
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.try_get(), Err(TryGetError::Closed));

    // Sleepers on both sides are woken by close.
    let empty = Queue::<u32>::new(1).expect("create");
    let full = Queue::<u32>::new(1).expect("create");
    full.put(0).expect("put");
    std::thread::scope(|s| {
        let g = s.spawn(|| empty.get());
        let p = s.spawn(|| full.put(1));
        // Give both a chance to sleep (not needed for correctness).
        std::thread::yield_now();
        empty.close();
        full.close();
        assert_eq!(g.join().expect("getter"), Err(GetError::Closed));
        assert_eq!(p.join().expect("putter"), Err(PutError::Closed(1)));
    });
}

#[test]
fn simple_queue_put_get_empty_close() {
    let q = SimpleQueue::<u16>::new().expect("create");
    assert!(q.empty());
    q.put(7).expect("put");
    assert!(!q.empty());
    assert_eq!(q.get(), Ok(7));
    q.close();
    assert_eq!(q.get(), Err(GetError::Closed));
    assert_eq!(q.put(1), Err(PutError::Closed(1)));
}

/// Busy work of about `us` microseconds: the peer's wait outlasts its spin
/// and goes to sleep (a code path to reach, not a synchronisation).
fn busy(us: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

/// A process that cannot call `membarrier` (simulated with
/// `asym::force_fences`) shares two queues with one that can: its first
/// sleep sets the rings' fence flag, from then on both sides fence, and
/// blocking gets and puts (capacity 2: producers wait too) deliver
/// everything in order. Both sides now and then work longer than a wait's
/// spin, so both sleep.
#[test]
fn a_fence_only_process_shares_a_queue() {
    let _wd = Watchdog::new(TIMEOUT);
    let to = Queue::<u64>::new(2).expect("create");
    let back = Queue::<u64>::new(2).expect("create");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe {
        shmproc_testing::fork_child(|| {
            shmproc_sync::asym::force_fences();
            for i in 0..3000u64 {
                if i % 7 == 0 {
                    busy(50);
                }
                match to.get_timeout(TIMEOUT) {
                    Ok(v) if v == i => {}
                    _ => return 1,
                }
                if back.put_timeout(i * 2, TIMEOUT).is_err() {
                    return 2;
                }
            }
            0
        })
    };
    for i in 0..3000u64 {
        if i % 11 == 0 {
            busy(50);
        }
        to.put_timeout(i, TIMEOUT).expect("put");
        assert_eq!(back.get_timeout(TIMEOUT), Ok(i * 2));
    }
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
}

/// A consumer killed while asleep in `get`, and a producer killed while
/// asleep in `put`, leave their sleeper registrations behind; the other
/// side's wakes then find nobody to wake, and after a few hundred of them
/// a waker finds the registrations' owners dead and takes them back, so
/// that publishing stops making a futex call per message. Without the
/// repair the counts stay at 1 forever and the loop below fails.
#[test]
fn sleepers_killed_while_registered_are_taken_back() {
    let _wd = Watchdog::new(TIMEOUT);
    let empty = Queue::<u64>::new(1).expect("create");
    let full = Queue::<u64>::new(1).expect("create");
    full.put(0).expect("put");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let getter = unsafe {
        shmproc_testing::fork_child(|| match empty.get_timeout(TIMEOUT) {
            Err(GetTimeoutError::Timeout) => 0,
            _ => 1,
        })
    };
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let putter = unsafe {
        shmproc_testing::fork_child(|| match full.put_timeout(1, TIMEOUT) {
            Err(PutTimeoutError::Timeout(1)) => 0,
            _ => 1,
        })
    };
    let deadline = Instant::now() + TIMEOUT;
    while empty.sleeping_consumers() == 0 || full.sleeping_producers() == 0 {
        assert!(
            Instant::now() < deadline,
            "the children never went to sleep"
        );
        std::thread::yield_now();
    }
    getter.kill();
    putter.kill();
    let (g, p) = (getter.wait_timeout(TIMEOUT), putter.wait_timeout(TIMEOUT));
    assert_eq!((g.code(), p.code()), (-9, -9), "killed");
    // A sleeper is unregistered for a moment after each sleep slice; in
    // the rare case the kill fell there, the count is already 0.
    let stale = (empty.sleeping_consumers(), full.sleeping_producers());
    assert!(stale.0 <= 1 && stale.1 <= 1, "{stale:?}");

    // Each put wakes the consumers' side and each get the producers'.
    let _ = full.get().expect("get");
    let mut n = 0u64;
    while empty.sleeping_consumers() != 0 || full.sleeping_producers() != 0 {
        assert!(n < 10_000, "registrations never taken back: {stale:?}");
        empty.put(n).expect("put");
        assert_eq!(empty.get(), Ok(n));
        full.put(n).expect("put");
        assert_eq!(full.get(), Ok(n));
        n += 1;
    }
}
