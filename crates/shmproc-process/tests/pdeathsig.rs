//! `PR_SET_PDEATHSIG`: when the parent process is killed, its children die
//! too, under every start method, even though the child was started from a
//! test thread (children are created from a long-lived launcher thread).

mod common;

use shmproc_shm::os;
use shmproc_sync::{Event, RawValue};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role, wait_until};

#[test]
fn children_die_with_a_killed_parent() {
    if role().as_deref() == Some("parent") {
        let method = arg("method").expect("method");
        let ctx = common::context_named(&method);
        let started = Event::open(&arg("started").expect("name")).expect("event");
        let pid = RawValue::<i32>::open(&arg("pid").expect("name")).expect("value");
        // Started from a short-lived thread, which ends before the parent is
        // killed: the child must not die with that thread, only with the process.
        let p = std::thread::spawn(move || {
            ctx.builder()
                .target(common::sleeper, (started, pid))
                .start()
        })
        .join()
        .expect("thread")
        .expect("start");
        let block = Event::new().expect("event");
        let _ = block.wait_timeout(TIMEOUT); // killed before this returns
        drop(p);
        return;
    }
    let _w = Watchdog::named(TIMEOUT, "pdeathsig");
    let shm = TestShm::new();
    for method in ["fork", "spawn", "forkserver"] {
        let (s, v) = (shm.name("started"), shm.name("pid"));
        let started = Event::create(&s).expect("event");
        let pid = RawValue::create(&v, 0i32).expect("value");
        let mut parent = Child::spawn(
            current_test!(),
            "parent",
            &[("method", method), ("started", &s), ("pid", &v)],
        )
        .expect("spawn parent");
        assert!(
            started.wait_timeout(TIMEOUT).is_ok(),
            "{method}: child did not start"
        );
        let child = os::Pid::from_raw(pid.load()).expect("a stored pid");
        assert!(
            os::pid_alive(child),
            "{method}: outlived the thread that started it"
        );
        parent.kill();
        let _ = parent.wait_timeout(TIMEOUT);
        let gone = wait_until(TIMEOUT, || !os::pid_alive(child));
        if !gone {
            let _ = os::kill(child, os::SIGKILL);
        }
        assert!(gone, "{method}: child {child} survived its killed parent");
    }
}
