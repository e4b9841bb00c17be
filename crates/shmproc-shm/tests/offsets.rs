//! `Offset<T>` resolves only inside the payload and only when aligned;
//! `Segment::get` hands out atomics that work across processes; an opener
//! blocks until the creator publishes.
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmproc_shm::{
    DATA_OFFSET, Offset, OffsetError, OpenOptions, Segment, SegmentKind, SegmentLayout, TypeSpec,
    os,
};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog, fork_child};

fn layout(payload: u64) -> SegmentLayout {
    SegmentLayout::new(SegmentKind::TEST, TypeSpec::of::<u64>(), payload)
}

#[test]
fn offsets_are_bounds_and_alignment_checked() {
    let seg = Segment::create_anonymous(&layout(64)).unwrap().publish();
    let end = seg.len() as u64;
    assert_eq!(end, DATA_OFFSET as u64 + 64);

    // Inside, aligned: fine, first and last slot.
    assert!(seg.resolve(Offset::<u64>::in_payload(0)).is_ok());
    assert!(seg.resolve(Offset::<u64>::in_payload(56)).is_ok());
    assert!(seg.resolve_slice(Offset::<u64>::in_payload(0), 8).is_ok());

    // One byte past the end.
    let e = seg.resolve(Offset::<u64>::in_payload(57)).unwrap_err();
    assert!(matches!(e, OffsetError::OutOfBounds { .. }), "{e:?}");
    assert!(seg.resolve_slice(Offset::<u64>::in_payload(0), 9).is_err());
    // The header is not reachable through an offset.
    let e = seg.resolve(Offset::<u64>::new(0)).unwrap_err();
    assert!(
        matches!(e, OffsetError::OutOfBounds { offset: 0, .. }),
        "{e:?}"
    );
    // Misaligned.
    let e = seg.resolve(Offset::<u64>::in_payload(4)).unwrap_err();
    assert_eq!(
        e,
        OffsetError::Misaligned {
            offset: DATA_OFFSET as u64 + 4,
            align: 8
        }
    );
    // Overflowing arithmetic is an error, not a wrap-around.
    assert!(seg.resolve(Offset::<u64>::new(u64::MAX - 3)).is_err());
    assert!(
        seg.resolve_slice(Offset::<u64>::in_payload(0), usize::MAX)
            .is_err()
    );
    assert!(e.to_string().contains("not aligned"));
}

#[test]
fn atomics_resolved_from_offsets_work_across_processes() {
    let seg = Segment::create_anonymous(&layout(16)).unwrap().publish();
    let counter: &AtomicU64 = seg.get(Offset::in_payload(0)).unwrap();
    let flag: &AtomicU32 = seg.get(Offset::in_payload(8)).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
            unsafe {
                fork_child(|| {
                    for _ in 0..10_000 {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    flag.fetch_add(1, Ordering::Release);
                    os::futex_wake(flag, 1);
                    0
                })
            }
        })
        .collect();
    for c in children {
        assert_eq!(c.wait_timeout(TIMEOUT), os::ExitStatus::Exited(0));
    }
    assert_eq!(flag.load(Ordering::Acquire), 2);
    assert_eq!(counter.load(Ordering::Relaxed), 20_000);
}

#[test]
fn opener_blocks_until_the_creator_publishes() {
    let _dog = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("publish");
    let pending = Segment::create(&name, &layout(8)).unwrap();
    let value: &AtomicU64 = pending.segment().get(Offset::in_payload(0)).unwrap();
    let opener = {
        let name = name.clone();
        std::thread::spawn(move || {
            let opts =
                OpenOptions::new(SegmentKind::TEST, TypeSpec::of::<u64>()).init_timeout(TIMEOUT);
            let seg = opts.open(&name)?;
            let v: &AtomicU64 = seg.get(Offset::in_payload(0)).expect("in bounds");
            Ok::<u64, shmproc_shm::SegmentError>(v.load(Ordering::Relaxed))
        })
    };
    // Whatever the opener saw first, it may only return after `publish`, and
    // then it must see what the creator wrote before publishing.
    value.store(0xfeed, Ordering::Relaxed);
    let seg = pending.publish();
    assert_eq!(opener.join().unwrap().unwrap(), 0xfeed);
    drop(seg);
}
