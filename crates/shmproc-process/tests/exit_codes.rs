//! Exit codes follow Python: 0, the code given to `exit`, 1 on panic (with
//! the message reported to the parent), `-N` when killed by signal `N`.

mod common;

use shmproc_process::{Process, Shareable};
use shmproc_sync::Event;
use shmproc_testing::{TIMEOUT, Watchdog};

fn returns(_: ()) {}

fn exits_with(k: i32) {
    std::process::exit(k)
}

fn panics(what: String) {
    panic!("boom: {what}");
}

fn blocks((started, never): (Event, Event)) {
    started.set();
    let _ = never.wait_timeout(TIMEOUT);
}

#[test]
fn exit_codes_under_every_start_method() {
    let _w = Watchdog::named(TIMEOUT, "exit_codes");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let p = ctx.builder().target(returns, ()).start().expect("start");
        assert_eq!(p.join().expect("join"), 0, "{m}");
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(p.panic_message(), None);

        let p = ctx.builder().target(exits_with, 7).start().expect("start");
        assert_eq!(p.join().expect("join"), 7, "{m}");

        let p = ctx.process(panics, "the message".to_string());
        let p = p;
        p.start().expect("start");
        assert_eq!(p.join().expect("join"), 1, "{m}");
        let msg = p.panic_message().expect("panic message reported");
        assert!(msg.contains("boom: the message"), "{m}: {msg}");

        for (sig, code) in [(15, -15), (9, -9)] {
            let started = Event::new().expect("event");
            let never = Event::new().expect("event");
            let args = (
                started.try_clone().expect("clone"),
                never.try_clone().expect("clone"),
            );
            let p = ctx.builder().target(blocks, args).start().expect("start");
            assert!(
                started.wait_timeout(TIMEOUT).is_ok(),
                "{m}: child did not start"
            );
            if sig == 15 {
                p.terminate().expect("terminate");
            } else {
                p.kill().expect("kill");
            }
            assert_eq!(p.join().expect("join"), code, "{m}");
            assert!(!p.is_alive());
        }
    }
}

#[test]
fn closure_target_needs_fork() {
    use shmproc_process::{ProcessError, StartMethod};
    let p = Process::builder()
        .start_method(StartMethod::Spawn)
        .closure(|| {})
        .build();
    assert!(matches!(
        p.start(),
        Err(ProcessError::ClosureNeedsFork { .. })
    ));
}

#[test]
fn closure_under_fork_reports_exit_code() {
    use shmproc_process::{StartMethod, get_context};
    let ctx = get_context(StartMethod::Fork).allow_fork_with_threads(true);
    let p = ctx
        .builder()
        .closure(|| std::process::exit(3))
        .start()
        .expect("start");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 3);
    let p = ctx
        .builder()
        .closure(|| panic!("in closure"))
        .start()
        .expect("start");
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 1);
    assert!(p.panic_message().expect("message").contains("in closure"));
}
