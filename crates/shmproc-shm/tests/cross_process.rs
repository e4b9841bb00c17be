//! Two processes (not threads) share segments: by name, by inherited fd, by
//! fork, and a process that is not a child of the creator opens one by name.
#![allow(unsafe_code)] // Adopting an inherited descriptor (`os::adopt_fd`) and `fork_child` are unsafe by contract.

use std::os::fd::AsRawFd;
use std::time::Duration;

use shmproc_shm::os;
use shmproc_shm::{ShmBox, ShmSlice};
use shmproc_testing::{
    Child, TIMEOUT, TestShm, arg, arg_parsed, current_test, fork_child, role, wait_until,
};

#[test]
fn child_process_opens_by_name_and_both_see_each_others_writes() {
    if role().as_deref() == Some("child") {
        let name = arg("name").expect("name");
        let s = ShmSlice::<u64>::open_with_len(&name, 4).expect("child opens by name");
        // The parent's writes are visible here...
        assert_eq!(s.to_vec(), [10, 11, 12, 13]);
        // ...and ours are visible there.
        s.set(0, u64::from(std::process::id())).unwrap();
        s.set(3, 99).unwrap();
        return;
    }
    let shm = TestShm::new();
    let name = shm.name("pair");
    let s = ShmSlice::<u64>::create_from_slice(&name, &[10, 11, 12, 13]).unwrap();
    let child = Child::spawn(current_test!(), "child", &[("name", &name)]).unwrap();
    let child_pid = child.pid();
    child.expect_success(TIMEOUT);
    assert_eq!(s.to_vec(), [u64::from(child_pid.as_u32()), 11, 12, 99]);
}

#[test]
fn anonymous_segment_travels_to_a_child_as_an_inherited_fd() {
    if role().as_deref() == Some("child") {
        let fd: i32 = arg_parsed("fd");
        // SAFETY: the parent passed this inherited descriptor to us alone.
        let fd = unsafe { os::adopt_fd(fd) }.expect("inherited fd is open");
        let b = ShmBox::<[u32; 4]>::open_fd(fd).expect("child opens the fd");
        let mut v = b.load();
        assert_eq!(v, [1, 2, 3, 4]);
        v.reverse();
        b.store(v);
        return;
    }
    let b = ShmBox::new([1u32, 2, 3, 4]).unwrap();
    assert!(b.segment().name().is_none());
    let fd = b.segment().inheritable_fd().unwrap();
    let raw = fd.as_raw_fd().to_string();
    let child = Child::spawn(current_test!(), "child", &[("fd", &raw)]).unwrap();
    drop(fd);
    child.expect_success(TIMEOUT);
    assert_eq!(b.load(), [4, 3, 2, 1]);
}

#[test]
fn forked_child_shares_anonymous_and_named_segments() {
    let shm = TestShm::new();
    let named = ShmBox::create(&shm.name("fork"), 5u64).unwrap();
    let anon = ShmSlice::new(3, 0u32).unwrap();
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let child = unsafe {
        fork_child(|| {
            named.store(named.load() * 10);
            anon.set(2, 7).map_or(1, |()| 0)
        })
    };
    assert_eq!(child.wait_timeout(TIMEOUT), os::ExitStatus::Exited(0));
    assert_eq!(named.load(), 50);
    assert_eq!(anon.to_vec(), [0, 0, 7]);
    // The child's exit did not unlink the parent's segment.
    assert!(
        named
            .segment()
            .name()
            .is_some_and(|n| shmproc_shm::Segment::exists(n.as_str()))
    );
}

/// Layout of the report an unrelated process writes back.
const READY: usize = 0;
const PID: usize = 1;
const PPID: usize = 2;

#[test]
fn unrelated_process_opens_by_name() {
    match role().as_deref() {
        Some("launcher") => {
            // Start the opener and exit at once without waiting: the opener is
            // re-parented and is no child of the test process.
            let name = arg("name").expect("name");
            let opener = Child::spawn_with(current_test!(), "opener", &[("name", &name)], |cmd| {
                cmd.env_remove("SHMPROC_TEST_PARENT");
            })
            .expect("spawn opener");
            std::mem::forget(opener);
            return;
        }
        Some("opener") => {
            let name = arg("name").expect("name");
            let s = ShmSlice::<u64>::open(&name).expect("opens by name");
            s.set(PID, u64::from(std::process::id())).unwrap();
            s.set(PPID, os::getppid().map_or(0, |p| u64::from(p.as_u32())))
                .unwrap();
            s.set(READY, 1).unwrap();
            return;
        }
        _ => {}
    }
    let shm = TestShm::new();
    let name = shm.name("unrelated");
    let s = ShmSlice::create(&name, 3, 0u64).unwrap();
    let launcher = Child::spawn(current_test!(), "launcher", &[("name", &name)]).unwrap();
    let launcher_pid = launcher.pid();
    launcher.expect_success(TIMEOUT);
    assert!(
        wait_until(TIMEOUT, || s.get(READY) == Some(1)),
        "the unrelated process never wrote its report"
    );
    let opener = os::Pid::from_u32(s.get(PID).unwrap() as u32).expect("a reported pid");
    let opener_parent = s.get(PPID).unwrap();
    assert_ne!(opener, launcher_pid);
    assert_ne!(
        opener_parent,
        u64::from(os::getpid().as_u32()),
        "the opener must not be our child"
    );
    // It is not our child: waitpid on it fails with ECHILD.
    assert!(os::try_wait(opener).is_err());
    // Let the opener finish before the segment goes (it only needs the mapping).
    wait_until(Duration::from_secs(10), || !os::pid_alive(opener));
}
