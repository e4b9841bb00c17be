//! Crash cleanup across processes: a child that dies without dropping its
//! segments leaves orphans, which `cleanup` lists as such and removes,
//! except a persisted one and one that a live process still maps.

use shmproc_shm::cleanup::{self, SegmentInfo};
use shmproc_shm::{OwnerRecord, Segment, SegmentKind, SegmentLayout, TypeSpec};
use shmproc_testing::{Child, TIMEOUT, TestShm, arg, current_test, role};

const SPEC: TypeSpec = TypeSpec {
    type_name: "shmproc_shm::tests::cleanup",
    size: 1,
    align: 1,
    capacity: 0,
    slot_size: 0,
};

fn info(name: &str) -> SegmentInfo {
    let mut found = cleanup::list_matching(|n| n == name);
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found.remove(0)
}

#[test]
fn a_dead_creators_segments_are_orphans_unless_persisted_or_mapped() {
    if role().is_some() {
        // Three segments, never dropped: this process "crashes" with them.
        let layout = SegmentLayout::new(SegmentKind::RAW, SPEC, 64);
        for tag in ["plain", "kept", "mapped"] {
            let mut seg = Segment::create(&arg(tag).expect("name"), &layout)
                .expect("create")
                .publish();
            if tag == "kept" {
                seg.persist();
            }
            std::mem::forget(seg);
        }
        return;
    }
    let shm = TestShm::new();
    let (plain, kept, mapped) = (shm.name("plain"), shm.name("kept"), shm.name("mapped"));
    let child = Child::spawn(
        current_test!(),
        "creator",
        &[("plain", &plain), ("kept", &kept), ("mapped", &mapped)],
    )
    .expect("spawn");
    let pid = child.pid();
    assert_eq!(child.wait_timeout(TIMEOUT).code(), 0);
    let user = Segment::open(&mapped, SegmentKind::RAW, SPEC).expect("open");

    let used = cleanup::in_use();
    let plain_info = info(&plain);
    assert_eq!(
        plain_info.creator(),
        Some(OwnerRecord::pid_only(pid.as_u32()))
    );
    assert_eq!(plain_info.creator_alive, Some(false));
    assert!(plain_info.is_abandoned() && cleanup::is_orphan(&plain_info, &used));
    let kept_info = info(&kept);
    assert!(kept_info.persistent() && !kept_info.is_abandoned());
    let mapped_info = info(&mapped);
    assert!(mapped_info.is_abandoned() && !cleanup::is_orphan(&mapped_info, &used));

    // Only the orphan goes; a second reap (or a racing cleaner) finds nothing.
    assert_eq!(cleanup::reap_segments_of(pid), std::slice::from_ref(&plain));
    assert!(cleanup::reap_segments_of(pid).is_empty());
    assert!(Segment::exists(&kept) && Segment::exists(&mapped));
    // Its last user gone, the mapped one is an orphan too.
    drop(user);
    assert_eq!(cleanup::reap_segments_of(pid), [mapped]);
    Segment::remove(&kept).expect("remove the persisted one");
    assert!(shm.leftovers().is_empty());
}
