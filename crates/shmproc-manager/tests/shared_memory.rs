//! SharedMemory: create/open/new, name and size, byte access from another
//! process, unlink, the persist opt-out, close.

use std::time::Duration;

use shmproc_manager::SharedMemory;
use shmproc_process::Process;
use shmproc_shm::{Segment, SegmentError, SharedObject};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

fn fill(shm: SharedMemory) {
    let n = shm.size();
    let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    shm.write(0, &bytes).expect("child write");
}

fn fill_target((shm,): (SharedMemory,)) {
    fill(shm);
}

fn fill_named((name,): (String,)) {
    fill(SharedMemory::open(&name).expect("child open"));
}

#[test]
fn named_block_written_by_a_child() {
    let _w = Watchdog::new(TIMEOUT);
    let t = TestShm::new();
    let name = t.name("shm");
    let shm = SharedMemory::create(&name, 10_000).expect("create");
    assert_eq!(shm.name(), Some(name.as_str()));
    assert_eq!(shm.size(), 10_000);
    let p = Process::new(fill_named, (name.clone(),));
    p.start().expect("start");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    let v = shm.to_vec();
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    let mut four = [0u8; 4];
    shm.read(251, &mut four).expect("read");
    assert_eq!(four, [0, 1, 2, 3]);
    assert!(shm.read(9_998, &mut four).is_err(), "past the end");
    assert!(shm.write(10_000, &[1]).is_err(), "past the end");
    drop(shm);
    assert!(!Segment::exists(&name), "the creator unlinks on drop");
    assert!(t.leftovers().is_empty());
}

#[test]
fn anonymous_block_passed_to_a_child() {
    let _w = Watchdog::new(TIMEOUT);
    let shm = SharedMemory::new(4096).expect("new");
    assert_eq!(shm.name(), None);
    let p = Process::new(fill_target, (shm.try_clone().expect("clone"),));
    p.start().expect("start");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    assert_eq!(shm.buf().get(300), Some((300 % 251) as u8));
}

#[test]
fn unlink_close_and_persist() {
    let _w = Watchdog::new(Duration::from_secs(30));
    let t = TestShm::new();
    let name = t.name("persist");
    let mut a = SharedMemory::create(&name, 64).expect("create");
    assert!(matches!(
        SharedMemory::create(&name, 64),
        Err(SegmentError::AlreadyExists { .. })
    ));
    a.persist();
    a.close();
    // Persisted: the name outlives its creator.
    let mut b = SharedMemory::open(&name).expect("open after close");
    assert_eq!(b.size(), 64);
    b.unlink().expect("unlink by an opener");
    assert!(matches!(
        SharedMemory::open(&name),
        Err(SegmentError::NotFound { .. })
    ));
    // The mapping stays usable after unlink.
    b.write(0, b"still mapped").expect("write");
    assert!(matches!(b.unlink(), Err(SegmentError::NotFound { .. })));
    assert!(matches!(
        SharedMemory::create(&t.name("zero"), 0),
        Err(SegmentError::ZeroSize { .. })
    ));
    assert!(t.leftovers().is_empty());
}
