//! Daemon children: terminated when their parent exits normally; a daemon
//! may not start children.

mod common;

use shmproc_process::{ProcessError, Shareable, StartMethod, get_context};
use shmproc_shm::os;
use shmproc_sync::{Event, RawValue};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role, wait_until};

fn tries_to_start_a_child(_: ()) {
    let r = get_context(StartMethod::Spawn).process(noop, ()).start();
    std::process::exit(
        if matches!(r, Err(ProcessError::DaemonCannotHaveChildren)) {
            0
        } else {
            1
        },
    );
}

fn noop(_: ()) {}

#[test]
fn daemon_is_terminated_when_its_parent_exits_normally() {
    if role().as_deref() == Some("parent") {
        // Start a daemon that would outlive us (no parent-death signal), then
        // return normally: the exit handler must terminate it.
        let ctx = common::context_named(&arg("method").expect("method")).parent_death_signal(None);
        let started = Event::open(&arg("started").expect("name")).expect("event");
        let pid = RawValue::<i32>::open(&arg("pid").expect("name")).expect("value");
        let args = (started.try_clone().expect("h"), pid);
        let p = ctx
            .builder()
            .daemon(true)
            .target(common::sleeper, args)
            .start()
            .expect("start");
        assert!(p.daemon());
        // Return only once it runs, so the exit handler has something to stop.
        assert!(started.wait_timeout(TIMEOUT).is_ok());
        return;
    }
    let _w = Watchdog::named(TIMEOUT, "daemon cleanup");
    let shm = TestShm::new();
    for method in ["fork", "spawn", "forkserver"] {
        let (s, v) = (shm.name("started"), shm.name("pid"));
        let started = Event::create(&s).expect("event");
        let pid = RawValue::create(&v, 0i32).expect("value");
        let parent = Child::spawn(
            current_test!(),
            "parent",
            &[("method", method), ("started", &s), ("pid", &v)],
        )
        .expect("spawn parent");
        assert!(
            started.wait_timeout(TIMEOUT).is_ok(),
            "{method}: daemon did not start"
        );
        let daemon = os::Pid::from_raw(pid.load()).expect("a stored pid");
        parent.expect_success(TIMEOUT);
        let gone = wait_until(TIMEOUT, || !os::pid_alive(daemon));
        if !gone {
            let _ = os::kill(daemon, os::SIGKILL);
        }
        assert!(
            gone,
            "{method}: daemon {daemon} survived its parent's normal exit"
        );
    }
}

#[test]
fn a_daemon_cannot_start_children() {
    let _w = Watchdog::named(TIMEOUT, "daemon children");
    for ctx in common::contexts() {
        let p = ctx
            .builder()
            .daemon(true)
            .target(tries_to_start_a_child, ())
            .start()
            .expect("start");
        assert_eq!(
            p.join_timeout(TIMEOUT).expect("join"),
            0,
            "{}",
            ctx.start_method()
        );
    }
}
