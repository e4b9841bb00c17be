//! SharedMemoryManager: nothing left in /dev/shm after shutdown, after a
//! drop, and after its owner is SIGKILLed.

use std::time::Duration;

use shmproc_channel::{Connection, Pipe};
use shmproc_manager::SharedMemoryManager;
use shmproc_process::Process;
use shmproc_shm::Segment;
use shmproc_testing::{TIMEOUT, Watchdog, wait_until};

#[test]
fn shutdown_unlinks_everything() {
    let _w = Watchdog::new(TIMEOUT);
    let mut smm = SharedMemoryManager::start().expect("start");
    let a = smm.shared_memory(1000).expect("block");
    let l = smm.shareable_list(["x", "y"]).expect("list");
    let names = smm.names();
    assert_eq!(names.len(), 2);
    a.write(0, b"ok").expect("write");
    // Dropping a returned handle does not remove the block.
    drop(a);
    assert!(names.iter().all(|n| Segment::exists(n)));
    smm.shutdown().expect("shutdown");
    assert!(names.iter().all(|n| !Segment::exists(n)), "{names:?}");
    // The list's mapping stays readable after the unlink.
    assert_eq!(l.get(1).expect("get"), "y".into());
}

#[test]
fn drop_unlinks_everything() {
    let _w = Watchdog::new(TIMEOUT);
    let mut smm = SharedMemoryManager::start().expect("start");
    smm.shared_memory(10).expect("block");
    let names = smm.names();
    drop(smm);
    assert!(names.iter().all(|n| !Segment::exists(n)));
}

fn owner((mut conn,): (Connection,)) {
    let mut smm = SharedMemoryManager::start().expect("start");
    let _a = smm.shared_memory(4096).expect("block");
    let _l = smm.shareable_list([1i64, 2, 3]).expect("list");
    conn.send_obj(&smm.names()).expect("report names");
    // Killed while waiting here.
    let _ = conn.recv_bytes_timeout(TIMEOUT);
    std::mem::forget(smm);
}

#[test]
fn owner_sigkilled_leaves_nothing() {
    let _w = Watchdog::new(TIMEOUT);
    let (mut ours, theirs) = Pipe::new().expect("pipe");
    let p = Process::new(owner, (theirs,));
    p.start().expect("start");
    let names: Vec<String> = ours.recv_obj_timeout(TIMEOUT).expect("names");
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| Segment::exists(n)));
    p.kill().expect("kill");
    // Checked before the parent reaps the child (reaping would clean up too).
    assert!(
        wait_until(Duration::from_secs(30), || names
            .iter()
            .all(|n| !Segment::exists(n))),
        "left over: {names:?}"
    );
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), -9);
}
