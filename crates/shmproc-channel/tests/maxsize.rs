//! Exact `maxsize`, as Python: a queue created with capacity `n` holds `n`
//! values, not the ring's power of two, on the leased and the shared path,
//! and never more under concurrency.
#![cfg(not(shmproc_loom))]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Barrier;

use shmproc_channel::{
    ByteQueue, GetTimeoutError, JoinableQueue, LeaseState, Queue, QueueError, SimpleQueue,
    TryGetError, TryPutBytesError, TryPutError,
};
use shmproc_shm::sync::{AtomicU64, Ordering};
use shmproc_shm::{DATA_OFFSET, Offset};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog, stress_or};

/// Fills `q` (capacity 3) through `try_put`: exactly 3 go in.
fn holds_exactly_three(q: &Queue<u64>) {
    assert_eq!(q.capacity(), 3);
    assert!(q.empty() && !q.full());
    for lap in 0..5u64 {
        for i in 0..3 {
            q.try_put(lap * 10 + i).expect("room");
        }
        assert!(q.full());
        assert_eq!(q.qsize(), 3);
        assert_eq!(q.try_put(99), Err(TryPutError::Full(99)));
        assert_eq!(
            q.put_timeout(99, std::time::Duration::from_millis(1))
                .map_err(|e| e.is_timeout()),
            Err(true)
        );
        assert_eq!(q.put_many(&[1, 2]), Ok(0));
        assert_eq!(q.try_get(), Ok(lap * 10));
        q.try_put(lap * 10 + 3).expect("one free again");
        assert_eq!(q.try_put(99), Err(TryPutError::Full(99)));
        for i in 1..4 {
            assert_eq!(q.try_get(), Ok(lap * 10 + i));
        }
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
    }
}

#[test]
fn queue_holds_exactly_its_capacity_leased() {
    let q = Queue::<u64>::new(3).expect("create");
    holds_exactly_three(&q);
    // One thread on each side: both leased, so the leased put refused.
    assert!(matches!(q.producer_lease(), Ok(LeaseState::Held(_))));
    assert!(matches!(q.consumer_lease(), Ok(LeaseState::Held(_))));
}

#[test]
fn queue_holds_exactly_its_capacity_shared() {
    let q = Queue::<u64>::new(3).expect("create");
    // Another thread puts and gets first: this one revokes both leases.
    std::thread::scope(|s| {
        s.spawn(|| {
            q.put(1).expect("put");
            assert_eq!(q.get(), Ok(1));
        });
    });
    q.put(2).expect("put");
    assert_eq!(q.get(), Ok(2));
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    assert_eq!(q.consumer_lease(), Ok(LeaseState::Shared));
    holds_exactly_three(&q);
}

#[test]
fn every_queue_type_holds_exactly_its_capacity() {
    let j = JoinableQueue::<u64>::new(3).expect("create");
    assert_eq!(j.capacity(), 3);
    for i in 0..3 {
        j.try_put(i).expect("room");
    }
    assert_eq!(j.try_put(9), Err(TryPutError::Full(9)));
    assert_eq!(j.unfinished_tasks(), 3, "a refused put is not counted");
    assert!(j.full());

    let s = SimpleQueue::<u64>::with_capacity(3).expect("create");
    for i in 0..3 {
        s.put(i).expect("room");
    }
    assert_eq!(s.as_queue().try_put(9), Err(TryPutError::Full(9)));
    assert_eq!(s.as_queue().capacity(), 3);

    let b = ByteQueue::new(3, 64).expect("create");
    assert_eq!(b.capacity(), 3);
    b.try_put_bytes(b"a").expect("room");
    b.try_put_bytes(&[7; 1000]).expect("room (side segment)");
    drop(
        b.try_reserve(1)
            .expect("room (a cancelled record holds its slot)"),
    );
    assert!(b.full());
    assert!(matches!(b.try_put_bytes(b"x"), Err(TryPutBytesError::Full)));
    assert!(matches!(b.try_reserve(1), Err(TryPutBytesError::Full)));
    assert_eq!(b.try_get_bytes().expect("a"), b"a");
    b.try_put_bytes(b"b").expect("one free again");
    assert_eq!(b.try_get_bytes().expect("big").len(), 1000);
    assert_eq!(b.try_get_bytes().expect("b"), b"b");
    assert!(b.empty());

    // A power of two is unchanged; 1 is a power of two.
    assert_eq!(Queue::<u8>::new(4).expect("create").capacity(), 4);
    let one = Queue::<u8>::new(1).expect("create");
    one.try_put(1).expect("room");
    assert_eq!(one.try_put(2), Err(TryPutError::Full(2)));
}

#[test]
fn an_opener_sees_the_same_maxsize() {
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 5).expect("create");
    let other = Queue::<u64>::open(&name).expect("open");
    assert_eq!(other.capacity(), 5);
    for i in 0..5 {
        other.try_put(i).expect("room");
    }
    assert!(q.full() && other.full());
    assert_eq!(other.try_put(5), Err(TryPutError::Full(5)));
    let bn = shm.name("b");
    let _b = ByteQueue::create(&bn, 6, 64).expect("create");
    assert_eq!(ByteQueue::open(&bn).expect("open").capacity(), 6);
}

#[test]
fn a_corrupt_maxsize_is_an_error_at_open() {
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<u64>::create(&name, 5).expect("create");
    let file = File::from(q.segment().fd().try_clone_to_owned().expect("dup"));
    // RingHeader::maxsize, at payload offset 96.
    let at = DATA_OFFSET as u64 + 96;
    for bad in [0u64, 4, 9, u64::MAX] {
        file.write_all_at(&bad.to_le_bytes(), at).expect("write");
        match Queue::<u64>::open(&name) {
            Err(QueueError::Corrupt { what, found, .. }) => {
                assert_eq!((what, found), ("ring maxsize", bad))
            }
            other => panic!("maxsize {bad}: {other:?}"),
        }
    }
    file.write_all_at(&8u64.to_le_bytes(), at).expect("write");
    assert_eq!(
        Queue::<u64>::open(&name)
            .expect("8 fits 8 slots")
            .capacity(),
        8
    );
}

/// `tail - head`, read tail first: the head read after it is at least the
/// head when the tail was read, so this never exceeds what the ring held
/// at that instant (and may be negative).
fn held(tail: &AtomicU64, head: &AtomicU64) -> i64 {
    let t = tail.load(Ordering::Acquire);
    let h = head.load(Ordering::Acquire);
    t.wrapping_sub(h) as i64
}

/// Producers and consumers hammer a maxsize-5 queue (8 slots) while a
/// monitor checks the raw indices; then every message arrived exactly once,
/// in order per producer. `producers == consumers == 1` runs the leased
/// paths, more the shared ones.
fn hammer(producers: u64, consumers: u64) {
    let _wd = Watchdog::new(TIMEOUT);
    const MAX: i64 = 5;
    let n = stress_or(1_000_000, 50_000);
    let q = Queue::<u64>::new(MAX as usize).expect("create");
    let seg = q.segment();
    let tail = seg.get(Offset::<AtomicU64>::in_payload(128)).expect("tail");
    let head = seg.get(Offset::<AtomicU64>::in_payload(256)).expect("head");
    let done = AtomicU64::new(0);
    let (max_seen, total) = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            let mut most = 0;
            while done.load(Ordering::Acquire) == 0 {
                let d = held(tail, head);
                assert!(d <= MAX, "the queue held {d} > {MAX}");
                assert!(q.qsize() <= MAX as usize);
                most = most.max(d);
            }
            most
        });
        let getters: Vec<_> = (0..consumers)
            .map(|_| {
                s.spawn(|| {
                    let mut next = vec![0u64; producers as usize];
                    let mut got = 0u64;
                    loop {
                        match q.get_timeout(TIMEOUT) {
                            Ok(m) => {
                                let (p, seq) = ((m >> 32) as usize, m & 0xFFFF_FFFF);
                                assert!(seq >= next[p], "producer {p}: out of order");
                                next[p] = seq + 1;
                                got += 1;
                            }
                            Err(GetTimeoutError::Closed) => return got,
                            Err(e) => panic!("get: {e}"),
                        }
                    }
                })
            })
            .collect();
        let putters: Vec<_> = (0..producers)
            .map(|p| {
                let q = &q;
                s.spawn(move || {
                    for seq in 0..n {
                        q.put((p << 32) | seq).expect("put");
                    }
                })
            })
            .collect();
        for p in putters {
            p.join().expect("producer");
        }
        q.close();
        let total: u64 = getters
            .into_iter()
            .map(|g| g.join().expect("consumer"))
            .sum();
        done.store(1, Ordering::Release);
        (monitor.join().expect("monitor"), total)
    });
    assert_eq!(total, producers * n, "messages lost or duplicated");
    assert!(max_seen <= MAX);
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
}

#[test]
fn maxsize_holds_under_concurrency_leased() {
    hammer(1, 1);
}

#[test]
fn maxsize_holds_under_concurrency_shared() {
    hammer(3, 2);
}

/// Producers race `try_put` into a maxsize-5 queue with nobody consuming:
/// together they get exactly 5 in, every round.
#[test]
fn racing_producers_put_exactly_maxsize() {
    let _wd = Watchdog::new(TIMEOUT);
    const P: usize = 4;
    let q = Queue::<u64>::new(5).expect("create");
    let rounds = stress_or(20_000, 500);
    let barrier = Barrier::new(P + 1);
    let put = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..P {
            s.spawn(|| {
                for _ in 0..rounds {
                    barrier.wait();
                    let mut mine = 0;
                    while q.try_put(1).is_ok() {
                        mine += 1;
                    }
                    put.fetch_add(mine, Ordering::Relaxed);
                    barrier.wait();
                }
            });
        }
        for r in 0..rounds {
            barrier.wait();
            barrier.wait();
            assert_eq!(put.swap(0, Ordering::Relaxed), 5, "round {r}");
            assert!(q.full());
            let mut got = Vec::new();
            assert_eq!(q.get_many(&mut got, 10), Ok(5), "round {r}");
        }
    });
}
