//! Single-process basics: FIFO, capacity, full/empty, zero-copy reads,
//! batches, opening by name and fd, and the typed open errors.
#![cfg(not(shmproc_loom))]

use shmproc_channel::{Queue, QueueError, TryGetError, TryPutError};
use shmproc_testing::TestShm;

#[test]
fn fifo_capacity_and_full() {
    let q = Queue::<u64>::new(3).expect("create");
    assert_eq!(q.capacity(), 3, "exactly the maxsize asked for");
    assert!(q.empty() && !q.full());
    for i in 0..3 {
        q.try_put(i).expect("room");
    }
    assert!(q.full());
    assert_eq!(q.qsize(), 3);
    assert_eq!(q.try_put(9), Err(TryPutError::Full(9)));
    for i in 0..3 {
        assert_eq!(q.try_get(), Ok(i));
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    // Many laps around the ring.
    for i in 0..1000 {
        q.put(i).expect("room");
        assert_eq!(q.get(), Ok(i));
    }
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
}

#[test]
fn zero_copy_guard_releases_on_drop() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Big {
        data: [u64; 512],
    }
    let q = Queue::<Big>::new(1).expect("create");
    q.put(Big { data: [7; 512] }).expect("room");
    {
        let g = q.try_get_ref().expect("a message");
        assert_eq!(g.data[511], 7);
        assert!(
            q.try_put(Big { data: [0; 512] }).is_err(),
            "slot still held"
        );
    }
    q.try_put(Big { data: [8; 512] })
        .expect("released by the guard");
    assert_eq!(q.get().expect("message").data[0], 8);
}

#[test]
fn batches() {
    let q = Queue::<u32>::new(8).expect("create");
    assert_eq!(q.put_many(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), Ok(8));
    let mut out = Vec::new();
    assert_eq!(q.get_many(&mut out, 5), Ok(5));
    assert_eq!(q.get_many(&mut out, 5), Ok(3));
    assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(q.get_many(&mut out, 5), Ok(0));
}

#[test]
fn named_open_and_fd() {
    let shm = TestShm::new();
    let name = shm.name("q");
    let q = Queue::<[u8; 3]>::create(&name, 16).expect("create");
    let other = Queue::<[u8; 3]>::open(&name).expect("open");
    other.put(*b"abc").expect("put");
    assert_eq!(q.get(), Ok(*b"abc"));
    let by_fd = Queue::<[u8; 3]>::open_fd(q.inheritable_fd().expect("fd")).expect("open fd");
    by_fd.put(*b"xyz").expect("put");
    assert_eq!(other.try_get(), Ok(*b"xyz"));
    assert!(q.name().is_some_and(|n| n.contains(&name)));
    // Another element type or kind is a typed error.
    assert!(matches!(
        Queue::<u32>::open(&name),
        Err(QueueError::Segment { .. })
    ));
    assert!(matches!(
        shmproc_channel::JoinableQueue::<[u8; 3]>::open(&name),
        Err(QueueError::Segment { .. })
    ));
    assert!(matches!(
        Queue::<u8>::new(0),
        Err(QueueError::InvalidArgument { .. })
    ));
}
