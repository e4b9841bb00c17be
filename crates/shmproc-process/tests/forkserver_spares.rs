//! The fork server's pre-forked spares: they die with the server, a child
//! that asked for no death signal outlives the server although its spare
//! had one, and a spare killed before it was used becomes a child killed
//! by that signal (the start itself succeeds).
//!
//! One test in this binary: it kills the fork server of its own process.

mod common;

use std::time::Duration;

use shmproc_process::{Shareable, StartMethod, get_context, start_forkserver};
use shmproc_shm::os;
use shmproc_sync::{Event, RawValue};
use shmproc_testing::{TIMEOUT, Watchdog, wait_until};

fn noop(_: ()) {}

/// The server's children (`/proc/<pid>/task/<pid>/children`), if the
/// kernel lists them.
fn children_of(pid: os::Pid) -> Option<Vec<os::Pid>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    Some(
        s.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

fn start_sleeper(ctx: shmproc_process::Context) -> (shmproc_process::Process, os::Pid) {
    let started = Event::new().expect("event");
    let pid = RawValue::new(0i32).expect("value");
    let p = ctx
        .builder()
        .target(
            common::sleeper,
            (
                started.try_clone().expect("clone"),
                pid.try_clone().expect("clone"),
            ),
        )
        .start()
        .expect("start");
    assert!(
        started.wait_timeout(TIMEOUT).is_ok(),
        "sleeper did not start"
    );
    let child = os::Pid::from_raw(pid.load()).expect("the sleeper stored its pid");
    assert_eq!(p.pid(), Some(child));
    (p, child)
}

#[test]
fn spares_follow_the_server() {
    let _w = Watchdog::named(TIMEOUT * 2, "forkserver_spares");
    let ctx = get_context(StartMethod::ForkServer);

    // A spare killed while it waits: the next start gets it, and it is
    // reported as a child killed by that signal.
    let server = start_forkserver().expect("server");
    let p = ctx.builder().target(noop, ()).start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let used = p.pid().expect("pid");
    if let Some(kids) = children_of(server) {
        // Once the used child is reaped, one spare waits.
        assert!(
            wait_until(TIMEOUT, || children_of(server)
                .is_some_and(|k| k.len() == 1 && k[0] != used)),
            "one spare waits: {kids:?}"
        );
        let spare = children_of(server).expect("children")[0];
        os::kill(spare, os::SIGKILL).expect("kill the spare");
        assert!(wait_until(TIMEOUT, || !os::pid_alive(spare)));
        let p = ctx.builder().target(noop, ()).start().expect("start");
        assert_eq!(p.pid(), Some(spare));
        assert_eq!(p.join().expect("join"), -os::SIGKILL);
        let p = ctx.builder().target(noop, ()).start().expect("start");
        assert_eq!(p.join().expect("join"), 0);
    }

    // Kill the server: the spare and the default child die with it; the
    // child that asked for no death signal lives on.
    let (keep, keep_pid) = start_sleeper(ctx.parent_death_signal(None));
    let (die, die_pid) = start_sleeper(ctx);
    let others: Vec<os::Pid> = children_of(server)
        .unwrap_or_default()
        .into_iter()
        .filter(|&p| p != keep_pid)
        .collect();
    os::kill(server, os::SIGKILL).expect("kill the server");
    assert!(
        wait_until(TIMEOUT, || !os::pid_alive(die_pid)),
        "a child survived its fork server"
    );
    for p in others {
        assert!(
            wait_until(TIMEOUT, || !os::pid_alive(p)),
            "spare {p} survived its fork server"
        );
    }
    // A wrong death signal would have landed by now; give it a moment more.
    assert!(
        !wait_until(Duration::from_millis(50), || !os::pid_alive(keep_pid)),
        "no death signal was asked for"
    );
    keep.kill().expect("kill");
    assert_eq!(keep.join().expect("join"), -os::SIGKILL);
    assert_eq!(die.join().expect("join"), -os::SIGKILL);

    // A new server starts on the next use.
    let p = ctx.builder().target(noop, ()).start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    assert_ne!(start_forkserver().expect("server"), server);
}
