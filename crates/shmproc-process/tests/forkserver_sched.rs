//! The fork server runs as `SCHED_BATCH` (it never preempts the client on
//! wake-up), and its children run as `SCHED_OTHER`, as the client's own
//! children would.

use shmproc_process::{StartMethod, get_context, start_forkserver};
use shmproc_shm::os;
use shmproc_testing::{TIMEOUT, Watchdog};

/// Exits with 0 when running as `SCHED_OTHER`, 3 otherwise.
fn check_policy(_: ()) {
    if os::sched_policy().ok() != Some(os::SCHED_OTHER) {
        std::process::exit(3);
    }
}

/// Policy of process `pid` (field 41 of `/proc/<pid>/stat`).
fn policy_of(pid: os::Pid) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(41 - 3)?.parse().ok()
}

#[test]
fn server_is_batch_and_children_are_not() {
    let _w = Watchdog::named(TIMEOUT, "forkserver_sched");
    if os::sched_policy().ok() != Some(os::SCHED_OTHER) {
        // The server keeps the policy it inherits unless it is SCHED_OTHER.
        return;
    }
    let server = start_forkserver().expect("fork server");
    let ctx = get_context(StartMethod::ForkServer);
    for _ in 0..3 {
        let p = ctx
            .builder()
            .target(check_policy, ())
            .start()
            .expect("start");
        assert_eq!(p.join().expect("join"), 0, "a child runs as SCHED_OTHER");
    }
    if let Some(policy) = policy_of(server) {
        assert_eq!(policy, os::SCHED_BATCH, "the server runs as SCHED_BATCH");
    }
}
