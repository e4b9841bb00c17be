//! Eight children per start method exchange data through a Queue and a
//! Value (Python's `Queue` + `Value('i')` pattern).

mod common;

use shmproc_channel::Queue;
use shmproc_process::Shareable;
use shmproc_sync::Value;
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

const CHILDREN: u64 = 8;
const ITEMS: u64 = 50;

fn producer((id, queue, total): (u64, Queue<u64>, Value<u64>)) {
    for i in 0..ITEMS {
        queue.put_timeout(id * 1000 + i, TIMEOUT).expect("put");
    }
    *total.lock().expect("lock") += id;
}

#[test]
fn eight_children_share_a_queue_and_a_value() {
    let _w = Watchdog::named(TIMEOUT, "queue_value");
    let shm = TestShm::new();
    for (k, ctx) in common::contexts().into_iter().enumerate() {
        let m = ctx.start_method();
        // Anonymous queue (travels as an fd), named value (travels by name).
        let queue = Queue::<u64>::new(1024).expect("queue");
        let total = Value::create(&shm.name(&format!("total{k}")), 0u64).expect("value");
        let children: Vec<_> = (1..=CHILDREN)
            .map(|id| {
                let args = (
                    id,
                    queue.try_clone().expect("queue handle"),
                    total.try_clone().expect("value handle"),
                );
                ctx.builder().target(producer, args).start().expect("start")
            })
            .collect();
        let mut got = Vec::new();
        for _ in 0..CHILDREN * ITEMS {
            got.push(queue.get_timeout(TIMEOUT).expect("get"));
        }
        for c in &children {
            assert_eq!(c.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        }
        got.sort_unstable();
        let mut want: Vec<u64> = (1..=CHILDREN)
            .flat_map(|id| (0..ITEMS).map(move |i| id * 1000 + i))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "{m}");
        assert_eq!(
            total.load().expect("load"),
            CHILDREN * (CHILDREN + 1) / 2,
            "{m}"
        );
    }
}
