//! Who unlinks a segment: the creator on drop, unless it persists it;
//! openers and forked children never do.

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
    let child = fork_child(|| {
        drop(creator.borrow_mut().take());
        0
    });
    assert_eq!(child.wait_timeout(TIMEOUT), os::ExitStatus::Exited(0));
    assert!(
        Segment::exists(&name),
        "ownership stays with the creating process"
    );
    drop(creator);
    assert!(!Segment::exists(&name), "the parent's drop unlinks it");
}
