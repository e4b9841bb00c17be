//! Segments created by a child that is SIGKILLed are removed when the
//! parent reaps it, unless another process still maps them (bpo-38119).

mod common;

use shmproc_process::Shareable;
use shmproc_sync::{Event, Value};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

fn creates_then_blocks((names, started): (Vec<String>, Event)) {
    let made: Vec<Value<u64>> = names
        .iter()
        .map(|n| Value::create(n, 7).expect("create"))
        .collect();
    started.set();
    let never = Event::new().expect("event");
    let _ = never.wait_timeout(TIMEOUT);
    drop(made);
}

#[test]
fn killed_childs_segments_are_removed_unless_in_use() {
    let _w = Watchdog::named(TIMEOUT, "no leftovers");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let shm = TestShm::new();
        let names: Vec<String> = (0..3).map(|i| shm.name(&format!("seg{i}"))).collect();
        let started = Event::new().expect("event");
        let p = ctx
            .builder()
            .target(
                creates_then_blocks,
                (names.clone(), started.try_clone().expect("h")),
            )
            .start()
            .expect("start");
        assert!(
            started.wait_timeout(TIMEOUT).is_ok(),
            "{m}: child did not start"
        );
        // The parent keeps using one of them: that one must survive.
        let kept = Value::<u64>::open(&names[1]).expect("open");
        p.kill().expect("kill");
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), -9, "{m}");
        assert_eq!(kept.load().expect("still readable"), 7);
        assert_eq!(
            shm.leftovers(),
            vec![names[1].trim_start_matches('/').to_owned()],
            "{m}"
        );
        drop(kept);
        // Nobody maps it now: the session tracker removes it (see
        // tests/tracker.rs), unless that is the one of this test process,
        // which waits for this process to end; sweep it here either way.
        let _ = shm.sweep();
    }
}
