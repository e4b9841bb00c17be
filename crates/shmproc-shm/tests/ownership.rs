//! Who unlinks a segment: the creator on drop, unless it persists it;
//! openers and forked children never do.
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use shmproc_shm::{Segment, ShmBox, os};
use shmproc_testing::{TIMEOUT, TestShm, fork_child};

#[test]
fn creator_unlinks_on_drop_and_openers_do_not() {
    let shm = TestShm::new();
    let name = shm.name("own");
    let creator = ShmBox::create(&name, 1u32).unwrap();
    assert!(creator.segment().is_owner());
    let opener = ShmBox::<u32>::open(&name).unwrap();
    assert!(!opener.segment().is_owner());
    drop(opener);
    assert!(Segment::exists(&name), "an opener's drop only unmaps");
    // A reader that still has it mapped keeps working after the unlink.
    let reader = ShmBox::<u32>::open(&name).unwrap();
    drop(creator);
    assert!(!Segment::exists(&name), "the creator's drop unlinks");
    reader.store(5);
    assert_eq!(reader.load(), 5);
}

#[test]
fn persist_keeps_the_name_until_removed() {
    let shm = TestShm::new();
    let name = shm.name("persist");
    let mut creator = ShmBox::create(&name, 9u64).unwrap();
    creator.segment_mut().persist();
    drop(creator);
    assert!(Segment::exists(&name));
    let mut again = ShmBox::<u64>::open(&name).unwrap();
    assert_eq!(again.load(), 9);
    again.segment_mut().take_ownership();
    drop(again);
    assert!(!Segment::exists(&name), "the new owner unlinked it");
    assert!(matches!(
        Segment::remove(&name),
        Err(shmproc_shm::SegmentError::NotFound { .. })
    ));
}

#[test]
fn a_forked_child_dropping_the_creators_handle_does_not_unlink() {
    let shm = TestShm::new();
    let name = shm.name("forkdrop");
    // The child drops its copy of the creator's handle; the parent keeps its own.
    let creator = std::cell::RefCell::new(Some(ShmBox::create(&name, 1u8).unwrap()));
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let child = unsafe {
        fork_child(|| {
            drop(creator.borrow_mut().take());
            0
        })
    };
    assert_eq!(child.wait_timeout(TIMEOUT), os::ExitStatus::Exited(0));
    assert!(
        Segment::exists(&name),
        "ownership stays with the creating process"
    );
    drop(creator);
    assert!(!Segment::exists(&name), "the parent's drop unlinks it");
}

#[test]
fn peek_reads_creator_persistence_and_session_without_mapping() {
    use shmproc_shm::{STATE_READY, SegmentError, SegmentKind};
    let shm = TestShm::new();
    let name = shm.name("peek");
    let mut b = ShmBox::create(&name, 1u64).unwrap();
    let h = Segment::peek(&name).unwrap();
    assert_eq!(h.state, STATE_READY);
    assert_eq!(h.kind, SegmentKind::BOX);
    assert_eq!(h.creator_pid, os::getpid().as_u32());
    assert!(!h.persistent && !b.segment().is_persistent());
    // No session provider in a program that does not install one.
    assert_eq!(h.session, 0);
    assert_eq!(b.segment().session(), 0);

    // The header records persistence, for crash cleanup in other processes.
    b.segment_mut().persist();
    assert!(Segment::peek(&name).unwrap().persistent);
    b.segment_mut().take_ownership();
    assert!(!Segment::peek(&name).unwrap().persistent);
    drop(b);
    assert!(matches!(
        Segment::peek(&name),
        Err(SegmentError::NotFound { .. })
    ));

    // Files in /dev/shm that are not (whole) shmproc segments are errors.
    let foreign = shm.name("foreign");
    let path = std::path::Path::new("/dev/shm").join(&foreign);
    std::fs::write(&path, [0x42u8; 100]).unwrap();
    assert!(matches!(
        Segment::peek(&foreign),
        Err(SegmentError::Corrupt { field: "magic", .. })
    ));
    std::fs::write(&path, [0u8; 10]).unwrap();
    assert!(matches!(
        Segment::peek(&foreign),
        Err(SegmentError::Truncated { len: 10, .. })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        Segment::peek("bad/name"),
        Err(SegmentError::InvalidName { .. })
    ));
}
