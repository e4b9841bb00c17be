//! The seed program's first scenario: `worker(name, delay)` in two
//! processes started in parallel, then joined.

mod common;

use std::time::Duration;

use shmproc_sync::Array;
use shmproc_testing::{TIMEOUT, Watchdog};

/// `print(f"[{name}] starting work"); time.sleep(delay); print(f"[{name}] finished ...")`,
/// with the delay in milliseconds here to keep the test short; it records
/// that it ran in slot `slot` of `done`.
fn worker((name, delay_ms, slot, done): (String, u64, usize, Array<u64>)) {
    println!("[{name}] starting work");
    // The scenario is "work for `delay`": sleeping is the work.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(Duration::from_millis(delay_ms));
    println!("[{name}] finished after {delay_ms} ms");
    done.lock().expect("lock")[slot] = delay_ms;
}

#[test]
fn worker_name_delay_scenario() {
    let _w = Watchdog::named(TIMEOUT, "seed worker");
    for ctx in common::contexts() {
        let done = Array::new(2, 0u64).expect("array");
        let p1 = ctx.process(worker, ("Process-1", 20, 0, &done));
        let p2 = ctx.process(worker, ("Process-2", 30, 1, &done));
        p1.start().expect("start p1"); // run in parallel
        p2.start().expect("start p2");
        assert_eq!(p1.join_timeout(TIMEOUT).expect("join"), 0); // wait for p1 to finish
        assert_eq!(p2.join_timeout(TIMEOUT).expect("join"), 0);
        println!("All processes completed ({})", ctx.start_method());
        assert_eq!(done.to_vec().expect("read"), vec![20, 30]);
    }
}
