//! Opening with the wrong kind, type or length is a typed error.
#![cfg(not(shmproc_loom))] // Segments and processes: not modelled under loom.

use shmproc_shm::SegmentError;
use shmproc_sync::{
    Array, Barrier, Event, Lock, RLock, RawArray, RawValue, Semaphore, SyncError, Value,
};
use shmproc_testing::TestShm;

fn seg(e: SyncError) -> SegmentError {
    match e {
        SyncError::Segment { source, .. } => *source,
        other => panic!("expected a segment error, got {other}"),
    }
}

#[test]
fn wrong_kind_type_and_length_are_typed_errors() {
    let shm = TestShm::new();
    let (ln, vn, an) = (shm.name("lock"), shm.name("value"), shm.name("array"));
    let _l = Lock::create(&ln).expect("lock");
    let _v = Value::create(&vn, 1u64).expect("value");
    let _a = Array::create(&an, 8, 0u8).expect("array");

    let e = RLock::open(&ln).expect_err("a Lock is not an RLock");
    // What failed and why, in the message itself, and said once.
    let msg = e.to_string();
    assert!(msg.starts_with("cannot open RLock: "), "{msg}");
    assert!(msg.contains("holds a Lock, not a RLock"), "{msg}");
    assert!(
        std::error::Error::source(&e).is_none(),
        "no OS error behind a wrong kind"
    );
    let missing = Lock::open(&shm.name("missing")).expect_err("no such segment");
    let mut chain = vec![missing.to_string()];
    let mut cur = std::error::Error::source(&missing);
    while let Some(c) = cur {
        chain.push(c.to_string());
        cur = c.source();
    }
    assert!(chain[0].contains("does not exist"), "{chain:?}");
    assert_eq!(
        chain.len(),
        2,
        "the OS error once after the message: {chain:?}"
    );
    assert!(!chain[1].contains("does not exist"), "{chain:?}");
    assert!(matches!(seg(e), SegmentError::WrongKind { .. }));
    assert!(matches!(
        seg(Event::open(&ln).expect_err("kind")),
        SegmentError::WrongKind { .. }
    ));
    assert!(matches!(
        seg(Semaphore::open(&ln).expect_err("kind")),
        SegmentError::WrongKind { .. }
    ));
    assert!(matches!(
        seg(Barrier::open(&ln).expect_err("kind")),
        SegmentError::WrongKind { .. }
    ));

    assert!(matches!(
        seg(Value::<u32>::open(&vn).expect_err("type")),
        SegmentError::WrongType { .. }
    ));
    assert!(matches!(
        RawValue::<u64>::open(&vn).expect_err("kind"),
        SegmentError::WrongKind { .. }
    ));
    assert!(matches!(
        seg(Array::<u64>::open(&vn).expect_err("kind")),
        SegmentError::WrongKind { .. }
    ));

    assert_eq!(Array::<u8>::open(&an).expect("any length").len(), 8);
    assert!(matches!(
        seg(Array::<u8>::open_with_len(&an, 9).expect_err("length")),
        SegmentError::WrongLength { .. }
    ));
    assert!(matches!(
        seg(Array::<i8>::open(&an).expect_err("type")),
        SegmentError::WrongType { .. }
    ));
    assert!(matches!(
        RawArray::<u8>::open(&an).expect_err("kind"),
        SegmentError::WrongKind { .. }
    ));

    assert!(matches!(
        seg(Lock::open(&shm.name("missing")).expect_err("absent")),
        SegmentError::NotFound { .. }
    ));
    assert!(matches!(
        seg(Lock::create(&ln).expect_err("taken")),
        SegmentError::AlreadyExists { .. }
    ));
    assert!(matches!(
        Array::<u8>::new(0, 0),
        Err(SyncError::InvalidArgument { .. })
    ));
}
