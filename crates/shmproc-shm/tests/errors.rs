//! Every bad input produces its own error variant, for real, with a message
//! that names the segment and the problem.
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use std::error::Error as _;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use shmproc_shm::{
    DATA_OFFSET, NameError, OpenOptions, Segment, SegmentError, SegmentKind, SegmentLayout, ShmBox,
    ShmSlice, TypeSpec, os,
};
use shmproc_testing::{Child, TIMEOUT, TestShm, arg, current_test, fork_child, role};

fn dev_shm(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name.trim_start_matches('/'))
}

fn layout(payload: u64) -> SegmentLayout {
    SegmentLayout::new(SegmentKind::TEST, TypeSpec::bytes(), payload)
}

fn os_errno(e: &SegmentError) -> Option<i32> {
    e.source()?.downcast_ref::<std::io::Error>()?.raw_os_error()
}

/// Asserts the message names the segment and contains `what`.
fn assert_message(e: &SegmentError, name: &str, what: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(name.trim_start_matches('/')),
        "{msg:?} does not name {name:?}"
    );
    assert!(msg.contains(what), "{msg:?} does not say {what:?}");
}

#[test]
fn invalid_names() {
    let long = "n".repeat(300);
    let cases: [(&str, NameError, &str); 5] = [
        ("", NameError::Empty, "empty"),
        ("/", NameError::Empty, "empty"),
        (
            &long,
            NameError::TooLong { len: 300, max: 255 },
            "300 bytes long",
        ),
        ("a/b", NameError::Slash, "'/'"),
        ("a\0b", NameError::Nul, "NUL"),
    ];
    for (name, reason, what) in cases {
        for e in [
            ShmBox::create(name, 1u8).unwrap_err(),
            ShmBox::<u8>::open(name).unwrap_err(),
            Segment::remove(name).unwrap_err(),
        ] {
            match &e {
                SegmentError::InvalidName { name: n, reason: r } => {
                    assert_eq!((n.as_str(), *r), (name, reason));
                }
                other => panic!("{name:?}: expected InvalidName, got {other:?}"),
            }
            assert!(e.to_string().contains("invalid segment name"), "{e}");
            assert!(e.to_string().contains(what), "{e}");
        }
    }
}

#[test]
fn size_zero() {
    let shm = TestShm::new();
    let name = shm.name("zero");
    let e = Segment::create(&name, &layout(0)).unwrap_err();
    assert!(matches!(e, SegmentError::ZeroSize { .. }), "{e:?}");
    assert_message(&e, &name, "size 0");
    let e = ShmSlice::create(&name, 0, 0u32).unwrap_err();
    assert!(matches!(e, SegmentError::ZeroSize { .. }), "{e:?}");
    let e = Segment::create_anonymous(&layout(0)).unwrap_err();
    assert!(matches!(e, SegmentError::ZeroSize { .. }), "{e:?}");
    assert!(!dev_shm(&name).exists());
}

#[test]
fn larger_than_the_space_left() {
    let shm = TestShm::new();
    let name = shm.name("huge");
    let space = os::fs_space(c"/dev/shm").unwrap();
    assert!(
        space.total > 0,
        "/dev/shm has no size limit on this machine"
    );
    let e = Segment::create(&name, &layout(space.total + (1 << 30))).unwrap_err();
    match &e {
        SegmentError::NoSpace {
            requested, total, ..
        } => {
            assert!(*requested > space.total);
            assert_eq!(*total, space.total);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert_eq!(
        os_errno(&e),
        Some(28),
        "the OS error (ENOSPC) is the source"
    );
    assert_message(&e, &name, "no space");
    // A failed create leaves nothing behind.
    assert!(!dev_shm(&name).exists());

    // Larger than any mapping can be: refused before touching the OS.
    let e = Segment::create(&name, &layout(u64::MAX - 8)).unwrap_err();
    assert!(matches!(e, SegmentError::TooLarge { .. }), "{e:?}");
    assert_message(&e, &name, "more than the largest possible mapping");
}

#[test]
fn missing_and_already_existing() {
    let shm = TestShm::new();
    let name = shm.name("gone");
    let e = ShmBox::<u32>::open(&name).unwrap_err();
    assert!(matches!(e, SegmentError::NotFound { .. }), "{e:?}");
    assert_eq!(os_errno(&e), Some(2));
    assert_message(&e, &name, "does not exist");

    let _first = ShmBox::create(&name, 1u32).unwrap();
    let e = ShmBox::create(&name, 2u32).unwrap_err();
    assert!(matches!(e, SegmentError::AlreadyExists { .. }), "{e:?}");
    assert_eq!(os_errno(&e), Some(17));
    assert_message(&e, &name, "already exists");
}

#[test]
fn permission_denied() {
    if role().as_deref() == Some("stranger") {
        let name = arg("name").expect("name");
        let e = ShmBox::<u64>::open(&name).unwrap_err();
        assert!(matches!(e, SegmentError::PermissionDenied { .. }), "{e:?}");
        assert_eq!(os_errno(&e), Some(13));
        assert_message(&e, &name, "permission denied");
        return;
    }
    let shm = TestShm::new();
    let name = shm.name("mine");
    let seg = ShmBox::create(&name, 7u64).unwrap();
    let mode = std::fs::metadata(dev_shm(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "segments are private to their owner");
    if os::geteuid() == 0 {
        // Root bypasses file modes: ask another user (nobody) to open it.
        // Nobody may not reach this binary where it lies (a checkout in a
        // private 0700 directory), so it runs a copy placed where it can.
        use std::os::unix::process::CommandExt;
        struct RemoveDir(std::path::PathBuf);
        impl Drop for RemoveDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir =
            RemoveDir(std::env::temp_dir().join(format!("shmproc-perm-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.0.join("stranger");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Child::spawn_exe(
            &exe,
            current_test!(),
            "stranger",
            &[("name", &name)],
            |cmd| {
                cmd.uid(65534).gid(65534).current_dir(&dir.0);
            },
        )
        .unwrap()
        .expect_success(TIMEOUT);
    } else {
        std::fs::set_permissions(dev_shm(&name), std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = ShmBox::<u64>::open(&name).unwrap_err();
        assert!(matches!(e, SegmentError::PermissionDenied { .. }), "{e:?}");
        assert_message(&e, &name, "permission denied");
    }
    drop(seg);
}

#[test]
fn wrong_kind_type_and_length() {
    let shm = TestShm::new();
    let boxed = shm.name("box");
    let _b = ShmBox::create(&boxed, 1u64).unwrap();
    let e = ShmSlice::<u64>::open(&boxed).unwrap_err();
    assert!(
        matches!(
            e,
            SegmentError::WrongKind {
                found: SegmentKind::BOX,
                expected: SegmentKind::SLICE,
                ..
            }
        ),
        "{e:?}"
    );
    assert_message(&e, &boxed, "holds a box, not a slice");

    let slice = shm.name("slice");
    let _s = ShmSlice::create(&slice, 8, 0u32).unwrap();
    let e = ShmSlice::<f32>::open(&slice).unwrap_err();
    assert!(matches!(e, SegmentError::WrongType { .. }), "{e:?}");
    assert_message(&e, &slice, "holds `u32`");
    assert!(e.to_string().contains("f32"), "{e}");
    let e = ShmSlice::<u64>::open(&slice).unwrap_err();
    assert!(matches!(e, SegmentError::WrongType { .. }), "{e:?}");

    let e = ShmSlice::<u32>::open_with_len(&slice, 9).unwrap_err();
    assert!(
        matches!(
            e,
            SegmentError::WrongLength {
                found: 8,
                expected: 9,
                ..
            }
        ),
        "{e:?}"
    );
    assert_message(&e, &slice, "holds 8 elements, not 9");
    assert_eq!(ShmSlice::<u32>::open_with_len(&slice, 8).unwrap().len(), 8);
}

/// Overwrites `bytes` at `offset` of the segment file, as a hostile or buggy
/// process mapping it could.
fn scribble(name: &str, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev_shm(name))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn truncated_segments() {
    let shm = TestShm::new();
    // Shorter than a header.
    let tiny = shm.name("tiny");
    std::fs::write(dev_shm(&tiny), [0u8; 10]).unwrap();
    let e = ShmBox::<u8>::open(&tiny).unwrap_err();
    assert!(
        matches!(e, SegmentError::Truncated { len: 10, .. }),
        "{e:?}"
    );
    assert_message(&e, &tiny, "truncated");
    std::fs::remove_file(dev_shm(&tiny)).unwrap();

    // A header that claims more bytes than there are.
    let name = shm.name("short");
    let b = ShmBox::create(&name, [0u64; 4]).unwrap();
    let claimed = (b.segment().len() + 4096) as u64;
    scribble(&name, 16, &claimed.to_le_bytes());
    let e = ShmBox::<[u64; 4]>::open(&name).unwrap_err();
    assert!(
        matches!(e, SegmentError::Truncated { needed, .. } if needed == claimed),
        "{e:?}"
    );
    assert_message(&e, &name, "truncated");
}

#[test]
fn corrupt_headers() {
    let shm = TestShm::new();
    let name = shm.name("corrupt");
    let _b = ShmBox::create(&name, 3u32).unwrap();
    let open = || ShmBox::<u32>::open(&name).unwrap_err();

    scribble(&name, 0, b"NOTSHMPR");
    let e = open();
    assert!(
        matches!(e, SegmentError::Corrupt { field: "magic", .. }),
        "{e:?}"
    );
    assert_message(&e, &name, "corrupt: magic");
    scribble(&name, 0, b"SHMPROC\0");

    scribble(&name, 8, &77u32.to_le_bytes());
    let e = open();
    assert!(
        matches!(
            e,
            SegmentError::VersionMismatch {
                found: 77,
                expected: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_message(&e, &name, "layout version 77");
    scribble(&name, 8, &1u32.to_le_bytes());

    scribble(&name, 12, &65u32.to_le_bytes());
    let e = open();
    assert!(
        matches!(
            e,
            SegmentError::Corrupt {
                field: "header_len",
                ..
            }
        ),
        "{e:?}"
    );
    scribble(&name, 12, &64u32.to_le_bytes());

    scribble(&name, 36, &9u32.to_le_bytes());
    let e = open();
    assert!(
        matches!(e, SegmentError::Corrupt { field: "state", .. }),
        "{e:?}"
    );
    scribble(&name, 36, &2u32.to_le_bytes());

    scribble(&name, 24, &0xdead_beefu64.to_le_bytes());
    let e = open();
    assert!(
        matches!(
            e,
            SegmentError::WrongType {
                found: 0xdead_beef,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn still_initialising_past_the_timeout() {
    let shm = TestShm::new();
    let name = shm.name("slow");
    let pending = Segment::create(&name, &layout(64)).unwrap();
    let opts = OpenOptions::new(SegmentKind::TEST, TypeSpec::bytes())
        .init_timeout(Duration::from_millis(30));
    let e = opts.open(&name).unwrap_err();
    match &e {
        SegmentError::InitTimeout { waited, state, .. } => {
            assert!(*waited >= Duration::from_millis(30));
            assert_eq!(*state, shmproc_shm::STATE_INITIALIZING);
        }
        other => panic!("expected InitTimeout, got {other:?}"),
    }
    assert_message(&e, &name, "still being initialised");
    // Once published, the same open succeeds.
    let seg = pending.publish();
    let opened = opts.open(&name).unwrap();
    assert_eq!(opened.data_len(), 64);
    drop(seg);

    // A size-0 file (a creator between shm_open and ftruncate) times out too.
    let empty = shm.name("empty");
    std::fs::write(dev_shm(&empty), []).unwrap();
    let e = opts.open(&empty).unwrap_err();
    assert!(
        matches!(e, SegmentError::InitTimeout { state: 0, .. }),
        "{e:?}"
    );
    std::fs::remove_file(dev_shm(&empty)).unwrap();
}

#[test]
fn creator_that_gives_up_or_dies_poisons_the_segment() {
    let shm = TestShm::new();
    // Gives up: the pending segment is dropped unpublished.
    let name = shm.name("giveup");
    let pending = Segment::create(&name, &layout(8)).unwrap();
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(dev_shm(&name))
        .unwrap();
    drop(pending);
    assert!(!dev_shm(&name).exists(), "an abandoned segment is unlinked");
    let opts = OpenOptions::new(SegmentKind::TEST, TypeSpec::bytes()).init_timeout(TIMEOUT);
    let e = opts.open_fd(file.into()).unwrap_err();
    assert!(
        matches!(
            e,
            SegmentError::Poisoned {
                what: "gave up",
                ..
            }
        ),
        "{e:?}"
    );

    // Dies: a child creates a segment and exits before publishing it. Openers
    // see the dead creator at once instead of waiting out their timeout.
    let name = shm.name("died");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let child = unsafe {
        fork_child(|| {
            let pending = Segment::create(&name, &layout(8)).expect("create");
            std::mem::forget(pending);
            0
        })
    };
    assert_eq!(child.wait_timeout(TIMEOUT), os::ExitStatus::Exited(0));
    let e = opts.open(&name).unwrap_err();
    assert!(
        matches!(e, SegmentError::Poisoned { what: "died", .. }),
        "{e:?}"
    );
    assert_message(&e, &name, "never initialised");
    // The dead creator could not clean up: the harness finds and removes it.
    assert_eq!(shm.sweep(), vec![name.trim_start_matches('/').to_owned()]);
}

#[test]
fn sigkilled_creator_leaves_a_segment_the_sweeper_removes() {
    if role().as_deref() == Some("creator") {
        let name = arg("name").expect("name");
        let b = ShmBox::create(&name, 1u64).expect("create");
        // Tell the parent we are ready, then wait to be killed.
        b.store(2);
        // Wait to be killed (bounded, so a harness bug cannot hang CI).
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(TIMEOUT);
        return;
    }
    let shm = TestShm::new();
    let name = shm.name("killed");
    let mut child = Child::spawn(current_test!(), "creator", &[("name", &name)]).unwrap();
    assert!(shmproc_testing::wait_until(TIMEOUT, || {
        ShmBox::<u64>::open(&name).is_ok_and(|b| b.load() == 2)
    }));
    child.kill();
    assert_eq!(child.wait_timeout(TIMEOUT), os::ExitStatus::Signaled(9));
    assert_eq!(shm.sweep(), vec![name.clone()]);
    assert!(!dev_shm(&name).exists());
}

#[test]
fn space_is_reserved_at_create() {
    use std::os::unix::fs::MetadataExt;
    let shm = TestShm::new();
    let name = shm.name("reserved");
    let s = ShmSlice::create(&name, 1 << 20, 0u8).unwrap();
    let meta = std::fs::metadata(dev_shm(&name)).unwrap();
    assert_eq!(meta.len(), (DATA_OFFSET + (1 << 20)) as u64);
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "posix_fallocate reserved the pages"
    );
    drop(s);
    assert!(!dev_shm(&name).exists(), "the creator unlinks on drop");
}
