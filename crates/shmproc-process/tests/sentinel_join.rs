//! The sentinel and `join` without a pidfd opened at start: a sentinel asked
//! for only after the child was reaped is ready at once; `join` from two
//! threads at the same time; `terminate` of a child that already ended, and
//! of one never waited on.

mod common;

use std::time::Duration;

use shmproc_process::Shareable;
use shmproc_sync::Event;
use shmproc_testing::{TIMEOUT, Watchdog};

fn returns(_: ()) {}

fn waits_for((go,): (Event,)) {
    assert!(go.wait_timeout(TIMEOUT).is_ok(), "never released");
}

#[test]
fn sentinel_after_the_reap_is_ready() {
    let _w = Watchdog::named(TIMEOUT, "sentinel_after_reap");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let p = ctx.builder().target(returns, ()).start().expect("start");
        assert_eq!(p.join().expect("join"), 0, "{m}");
        let s = p.sentinel().expect("sentinel");
        let ready = shmproc_process::wait(&[s], Some(TIMEOUT)).expect("wait");
        assert_eq!(ready, vec![0], "{m}: an ended child's sentinel is ready");
        // The same descriptor every time.
        assert_eq!(
            std::os::fd::AsRawFd::as_raw_fd(&p.sentinel().expect("sentinel")),
            std::os::fd::AsRawFd::as_raw_fd(&s),
            "{m}"
        );
        p.terminate().expect("terminate after the end is a no-op");
        assert_eq!(p.exitcode(), Some(0), "{m}");
    }
}

#[test]
fn sentinel_taken_while_running_becomes_ready() {
    let _w = Watchdog::named(TIMEOUT, "sentinel_running");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let go = Event::new().expect("event");
        let p = ctx
            .builder()
            .target(waits_for, (go.try_clone().expect("handle"),))
            .start()
            .expect("start");
        let s = p.sentinel().expect("sentinel");
        let none = shmproc_process::wait(&[s], Some(Duration::from_millis(10))).expect("wait");
        assert!(none.is_empty(), "{m}: not ready while the child runs");
        go.set();
        let ready = shmproc_process::wait(&[s], Some(TIMEOUT)).expect("wait");
        assert_eq!(ready, vec![0], "{m}");
        assert_eq!(p.join().expect("join"), 0, "{m}");
    }
}

#[test]
fn join_from_two_threads() {
    let _w = Watchdog::named(TIMEOUT, "join_two_threads");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let go = Event::new().expect("event");
        let p = ctx
            .builder()
            .target(waits_for, (go.try_clone().expect("handle"),))
            .start()
            .expect("start");
        // Other handles to the same child (`Process` is not `Sync`).
        let handle = || {
            shmproc_process::active_children()
                .into_iter()
                .find(|c| c.pid() == p.pid())
                .expect("in active_children")
        };
        let (o, q, r) = (handle(), handle(), handle());
        let codes = std::thread::scope(|sc| {
            let a = sc.spawn(move || o.join());
            let b = sc.spawn(move || q.join());
            let c = sc.spawn(move || {
                loop {
                    // A third thread reaping through `is_alive` meanwhile.
                    if !r.is_alive() {
                        break r.exitcode();
                    }
                    std::thread::yield_now();
                }
            });
            go.set();
            (
                a.join().expect("thread a"),
                b.join().expect("thread b"),
                c.join().expect("thread c"),
            )
        });
        assert_eq!(codes.0.expect("join a"), 0, "{m}");
        assert_eq!(codes.1.expect("join b"), 0, "{m}");
        assert_eq!(codes.2, Some(0), "{m}");
        assert_eq!(p.join().expect("join"), 0, "{m}");
    }
}

#[test]
fn terminate_without_a_sentinel() {
    let _w = Watchdog::named(TIMEOUT, "terminate_no_sentinel");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let started = Event::new().expect("event");
        let never = Event::new().expect("event");
        let p = ctx
            .builder()
            .target(
                |(started, never): (Event, Event)| {
                    started.set();
                    let _ = never.wait_timeout(TIMEOUT);
                },
                (
                    started.try_clone().expect("handle"),
                    never.try_clone().expect("handle"),
                ),
            )
            .start()
            .expect("start");
        assert!(
            started.wait_timeout(TIMEOUT).is_ok(),
            "{m}: child did not start"
        );
        p.terminate().expect("terminate");
        assert_eq!(p.join().expect("join"), -15, "{m}");
        p.kill().expect("kill after the end is a no-op");
    }
}
