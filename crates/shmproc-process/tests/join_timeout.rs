//! `join_timeout` and the `is_alive` / `exitcode` transitions.

mod common;

use std::time::Duration;

use shmproc_process::{Process, ProcessError, Shareable};
use shmproc_sync::Event;
use shmproc_testing::{TIMEOUT, Watchdog};

fn waits_for((go,): (Event,)) {
    assert!(go.wait_timeout(TIMEOUT).is_ok(), "never released");
}

#[test]
fn join_timeout_and_is_alive_transitions() {
    let _w = Watchdog::named(TIMEOUT, "join_timeout");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let go = Event::new().expect("event");
        let p = ctx.process(waits_for, (go.try_clone().expect("handle"),));
        assert!(!p.is_alive(), "{m}: not started yet");
        assert_eq!(p.exitcode(), None);
        assert_eq!(p.pid(), None);
        assert!(p.sentinel().is_none());
        assert!(matches!(
            p.join_timeout(Duration::ZERO),
            Err(ProcessError::NotStarted { .. })
        ));

        p.start().expect("start");
        assert!(matches!(
            p.start(),
            Err(ProcessError::AlreadyStarted { .. })
        ));
        assert!(p.pid().is_some());
        assert!(p.is_alive(), "{m}: running");
        assert_eq!(p.exitcode(), None);
        assert!(
            matches!(
                p.join_timeout(Duration::from_millis(20)),
                Err(ProcessError::Timeout { .. })
            ),
            "{m}"
        );
        assert!(
            matches!(
                p.join_deadline(std::time::Instant::now()),
                Err(ProcessError::Timeout { .. })
            ),
            "{m}: a passed deadline looks once"
        );
        assert!(p.is_alive(), "{m}: still running after a timed-out join");

        let shown: Vec<_> = shmproc_process::active_children()
            .iter()
            .filter_map(Process::pid)
            .collect();
        assert!(
            shown.contains(&p.pid().expect("pid")),
            "{m}: in active_children"
        );

        go.set();
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        assert!(!p.is_alive(), "{m}: ended");
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(p.join().expect("join again"), 0);
        assert_eq!(
            p.join_deadline(std::time::Instant::now()).expect("ended"),
            0
        );
        let pid = p.pid();
        assert!(
            !shmproc_process::active_children()
                .iter()
                .any(|c| c.pid() == pid),
            "{m}: reaped children leave active_children"
        );
        p.close().expect("close after join");
    }
}

#[test]
fn close_refuses_a_running_child() {
    let _w = Watchdog::named(TIMEOUT, "close");
    let ctx = common::contexts()[1];
    let go = Event::new().expect("event");
    let p = ctx
        .builder()
        .target(waits_for, (go.try_clone().expect("h"),))
        .start()
        .expect("start");
    let pid = p.pid().expect("pid");
    let sentinel_ready = shmproc_process::wait(
        &[p.sentinel().expect("sentinel")],
        Some(Duration::from_millis(10)),
    )
    .expect("wait");
    assert!(
        sentinel_ready.is_empty(),
        "the sentinel is not ready while the child runs"
    );
    assert!(matches!(p.close(), Err(ProcessError::StillRunning { pid: q, .. }) if q == pid));
    go.set();
    // The Process was consumed by `close`; the child is still ours: find it.
    let again = shmproc_process::active_children()
        .into_iter()
        .find(|c| c.pid() == Some(pid));
    if let Some(c) = again {
        assert_eq!(c.join_timeout(TIMEOUT).expect("join"), 0);
    }
}
