//! The session tracker: a top-level program that is itself SIGKILLed leaves
//! nothing in `/dev/shm` once nobody uses what it (and its children) made;
//! persisted segments and segments still mapped are left alone.

mod common;

use shmproc_process::{Shareable, StartMethod, get_context, tracker_session};
use shmproc_shm::{Segment, ShmBox, os};
use shmproc_sync::{Event, Value};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role, wait_until};

/// Pids of live processes whose command line holds `needle`.
fn processes_with_arg(needle: &str) -> Vec<os::Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| os::Pid::from_raw(e.file_name().to_str()?.parse::<i32>().ok()?))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == needle.as_bytes()))
        })
        .collect()
}

/// How long a cleanup may take before the test fails (it takes milliseconds;
/// well under the watchdogs, so a failure is an assertion, not an abort).
const CLEANUP: std::time::Duration = std::time::Duration::from_secs(20);

fn session_of(name: &str) -> u64 {
    Segment::peek(name).expect("peek").session
}

/// A child of the root: creates its segment, says so, and blocks.
fn child_creates((name, made): (String, Event)) {
    let v = Value::create(&name, 11u64).expect("child create");
    made.set();
    let never = Event::new().expect("event");
    let _ = never.wait_timeout(TIMEOUT);
    drop(v);
}

#[test]
fn a_killed_program_leaves_nothing_behind() {
    if role().as_deref() == Some("root") {
        let names: Vec<String> = (0..6)
            .map(|i| arg(&format!("n{i}")).expect("name"))
            .collect();
        let ready = Event::open(&arg("ready").expect("ready")).expect("ready");
        // Made by the program itself: plain, one a peer keeps mapped, one persisted.
        let a = Value::create(&names[0], 1u64).expect("create");
        let b = Value::create(&names[1], 2u64).expect("create");
        let mut p = ShmBox::create(&names[2], 3u64).expect("create");
        p.segment_mut().persist();
        assert_ne!(tracker_session(), 0, "no session");
        // Made by its children (fork inherits the session, spawn and the
        // fork server get it in the environment), which die with it.
        let mut kids = Vec::new();
        for (method, name) in [
            (StartMethod::Fork, &names[3]),
            (StartMethod::Spawn, &names[4]),
            (StartMethod::ForkServer, &names[5]),
        ] {
            let made = Event::new().expect("event");
            let ctx = get_context(method).allow_fork_with_threads(true);
            let k = ctx
                .builder()
                .target(child_creates, (name.clone(), made.try_clone().expect("h")))
                .start()
                .expect("start");
            assert!(
                made.wait_timeout(TIMEOUT).is_ok(),
                "{method:?} child did not start"
            );
            kids.push(k);
        }
        ready.set();
        let never = Event::new().expect("event");
        let _ = never.wait_timeout(TIMEOUT); // SIGKILLed before this returns
        drop((a, b, p, kids));
        return;
    }

    let _w = Watchdog::named(TIMEOUT * 2, "tracker");
    let shm = TestShm::new();
    let names: Vec<String> = (0..6).map(|i| shm.name(&format!("t{i}-"))).collect();
    let ready_name = shm.name("ready");
    let ready = Event::create(&ready_name).expect("event");
    let mut args: Vec<(String, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("n{i}"), n.clone()))
        .collect();
    args.push(("ready".into(), ready_name.clone()));
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut root = Child::spawn(current_test!(), "root", &args).expect("spawn root");
    assert!(
        ready.wait_timeout(TIMEOUT).is_ok(),
        "root did not get ready"
    );

    // One session for the program and all its children, not this test's.
    let session = session_of(&names[0]);
    assert_ne!(session, 0);
    assert_ne!(session, tracker_session());
    for n in &names {
        assert_eq!(session_of(n), session, "{n}");
    }
    assert!(Segment::peek(&names[2]).expect("peek").persistent);
    let tracker_arg = format!("--shmproc-tracker={}:{session:x}", root.pid());
    assert_eq!(processes_with_arg(&tracker_arg).len(), 1, "one tracker");

    // This process keeps using one of them.
    let kept = Value::<u64>::open(&names[1]).expect("open");
    root.kill();
    let _ = root.wait_timeout(TIMEOUT);

    let bare = |n: &String| n.trim_start_matches('/').to_owned();
    let expected = vec![bare(&names[1]), bare(&names[2])];
    assert!(
        wait_until(CLEANUP, || shm.leftovers().len() == expected.len() + 1),
        "not cleaned up: {:?}",
        shm.leftovers()
    );
    let mut left = shm.leftovers();
    left.retain(|n| *n != bare(&ready_name));
    assert_eq!(
        left, expected,
        "kept: the one still mapped, the persisted one"
    );
    assert_eq!(kept.load().expect("still readable"), 2);

    // Once the last user is gone, the tracker removes it too, then exits.
    drop(kept);
    assert!(
        wait_until(CLEANUP, || !Segment::exists(&names[1])),
        "unmapped segment not removed"
    );
    assert!(Segment::exists(&names[2]), "persisted segment removed");
    Segment::remove(&names[2]).expect("remove persisted");
    assert!(
        wait_until(CLEANUP, || processes_with_arg(&tracker_arg).is_empty()),
        "tracker still running"
    );
}

#[test]
fn a_program_that_exits_with_a_leaked_handle_leaves_nothing() {
    if role().as_deref() == Some("leaker") {
        let v = Value::create(&arg("name").expect("name"), 5u64).expect("create");
        // Never dropped: its destructor, which would unlink, never runs.
        std::mem::forget(v);
        return;
    }
    let _w = Watchdog::named(TIMEOUT * 2, "leaker");
    let shm = TestShm::new();
    let name = shm.name("leak");
    Child::spawn(current_test!(), "leaker", &[("name", &name)])
        .expect("spawn")
        .expect_success(TIMEOUT);
    assert!(
        wait_until(CLEANUP, || !Segment::exists(&name)),
        "leaked segment stayed"
    );
}

#[test]
fn children_join_the_parents_session_and_the_tracker_can_be_disabled() {
    if role().as_deref() == Some("untracked") {
        let v = Value::create(&arg("name").expect("name"), 1u64).expect("create");
        assert_eq!(tracker_session(), 0);
        assert_eq!(v.load().expect("load"), 1);
        assert_eq!(session_of(&arg("name").expect("name")), 0);
        return;
    }
    let _w = Watchdog::named(TIMEOUT * 2, "sessions");
    let shm = TestShm::new();
    let mine = shm.name("mine");
    let v = Value::create(&mine, 0u64).expect("create");
    let s = tracker_session();
    assert_ne!(s, 0);
    assert_eq!(session_of(&mine), s);
    for ctx in common::contexts() {
        let name = shm.name("child");
        let made = Event::new().expect("event");
        let p = ctx
            .builder()
            .target(child_creates, (name.clone(), made.try_clone().expect("h")))
            .start()
            .expect("start");
        assert!(made.wait_timeout(TIMEOUT).is_ok());
        let m = ctx.start_method();
        assert_eq!(session_of(&name), s, "{m}: child not in the session");
        p.terminate().expect("terminate");
        assert!(p.join_timeout(TIMEOUT).is_ok());
        assert!(
            wait_until(CLEANUP, || !Segment::exists(&name)),
            "{m}: killed child's segment stayed"
        );
    }
    drop(v);

    let name = shm.name("untracked");
    Child::spawn_with(current_test!(), "untracked", &[("name", &name)], |c| {
        c.env("SHMPROC_TRACKER", "0").env_remove("SHMPROC_SESSION");
    })
    .expect("spawn")
    .expect_success(TIMEOUT);
    // Its handle dropped normally: nothing left, tracker or not.
    assert!(!Segment::exists(&name));
}
