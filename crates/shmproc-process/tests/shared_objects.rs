//! Every shared object passes to a child under every start method through
//! one blanket impl, by value, even when the parent's handle was the named
//! creator and is dropped at once (the child opens through a descriptor, so
//! the unlinked name does not matter).

mod common;

use shmproc_channel::{Queue, SimpleQueue};
use shmproc_process::Shareable;
use shmproc_shm::Segment;
use shmproc_sync::{Event, Value};
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

type Moved = (Queue<u64>, SimpleQueue<u64>, Value<u64>, Event, u64);

fn child((queue, simple, total, done, id): Moved) {
    assert!(
        queue.name().is_some(),
        "a named queue keeps its name in the child"
    );
    assert!(!queue.segment().is_owner(), "the child only opened it");
    queue.put_timeout(id, TIMEOUT).expect("put");
    simple.put(id + 100).expect("put");
    *total.lock().expect("lock") += id;
    done.set();
}

#[test]
fn named_objects_moved_into_the_arguments_reach_the_child() {
    let _w = Watchdog::named(TIMEOUT, "named_objects_moved");
    let shm = TestShm::new();
    for (k, ctx) in common::contexts().into_iter().enumerate() {
        let m = ctx.start_method();
        let (qn, sn, vn, en) = (
            shm.name(&format!("q{k}")),
            shm.name(&format!("s{k}")),
            shm.name(&format!("v{k}")),
            shm.name(&format!("e{k}")),
        );
        let queue = Queue::<u64>::create(&qn, 4).expect("queue");
        let simple = SimpleQueue::<u64>::create(&sn).expect("simple queue");
        let total = Value::create(&vn, 0u64).expect("value");
        let done = Event::create(&en).expect("event");
        // The parent's own views, opened before the creators move away.
        let (q2, s2, v2, e2) = (
            Queue::<u64>::open(&qn).expect("open"),
            SimpleQueue::<u64>::open(&sn).expect("open"),
            Value::<u64>::open(&vn).expect("open"),
            Event::open(&en).expect("open"),
        );
        let p = ctx
            .builder()
            .target(child, (queue, simple, total, done, 7 + k as u64))
            .start()
            .expect("start");
        // The creators were dropped with the arguments: the names are gone.
        for n in [&qn, &sn, &vn, &en] {
            assert!(!Segment::exists(n), "{m}: {n} unlinked by its creator");
        }
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        assert!(e2.is_set(), "{m}");
        assert_eq!(q2.get_timeout(TIMEOUT).expect("get"), 7 + k as u64, "{m}");
        assert_eq!(s2.get_timeout(TIMEOUT).expect("get"), 107 + k as u64, "{m}");
        assert_eq!(v2.load().expect("load"), 7 + k as u64, "{m}");
    }
}

fn echo((input, output): (SimpleQueue<u64>, SimpleQueue<u64>)) {
    let v = input.get_timeout(TIMEOUT).expect("get");
    output.put(v * 2).expect("put");
}

#[test]
fn an_anonymous_simple_queue_passes_to_a_child() {
    let _w = Watchdog::named(TIMEOUT, "simple_queue_child");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let input = SimpleQueue::<u64>::new().expect("queue");
        let output = SimpleQueue::<u64>::new().expect("queue");
        let args = (
            input.try_clone().expect("clone"),
            output.try_clone().expect("clone"),
        );
        let p = ctx.builder().target(echo, args).start().expect("start");
        input.put(21).expect("put");
        assert_eq!(output.get_timeout(TIMEOUT).expect("get"), 42, "{m}");
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
    }
}

fn store((v, n): (Value<u64>, u64)) {
    v.store(n).expect("store");
}

fn store_both((v, q, n): (Value<u64>, Queue<u64>, u64)) {
    v.store(n).expect("store");
    q.put_timeout(n + 1, TIMEOUT).expect("put");
}

/// Python passes a `Value` or a `Queue` to a child and keeps using it:
/// `Process(target=f, args=(v, q, 7))`. Here `(&v, &q, 7)`: references to
/// shared objects travel as handles, no `try_clone` needed.
#[test]
fn references_to_shared_objects_pass_to_a_child() {
    let _w = Watchdog::named(TIMEOUT, "pass_by_ref");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let v = Value::new(0u64).expect("value");
        let q = Queue::<u64>::new(4).expect("queue");
        let p = ctx.process(store_both, (&v, &q, 7));
        p.start().expect("start");
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        assert_eq!(v.load().expect("load"), 7, "{m}");
        assert_eq!(q.try_get().expect("put by the child"), 8, "{m}");
    }
}

/// Python's `p = Process(target=f, args=(..)); p.start(); p.join()`: no
/// `mut` needed, and a second start is refused.
#[test]
fn start_takes_a_shared_reference() {
    let _w = Watchdog::named(TIMEOUT, "start_shared_ref");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let v = Value::new(0u64).expect("value");
        let p = ctx.process(store, (v.try_clone().expect("clone"), 42));
        p.start().expect("start");
        assert!(
            matches!(
                p.start(),
                Err(shmproc_process::ProcessError::AlreadyStarted { .. })
            ),
            "{m}"
        );
        assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        assert_eq!(v.load().expect("load"), 42, "{m}");
    }
}

#[cfg(feature = "serde")]
mod objects {
    use super::*;
    use shmproc_channel::ObjQueue;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        name: String,
        tags: Vec<String>,
        result: Option<(i32, f64)>,
    }

    fn job(id: u64) -> Job {
        Job {
            id,
            name: format!("job-{id}"),
            // Job 2 is far larger than a slot: it travels in a side segment.
            tags: (0..if id == 2 { 500 } else { 2 })
                .map(|i| format!("tag{i}"))
                .collect(),
            result: (id % 2 == 0).then_some((-(id as i32), 0.5)),
        }
    }

    fn producer((q, n): (ObjQueue<Job>, u64)) {
        for id in 0..n {
            q.put(&job(id)).expect("put");
        }
    }

    /// Python's `Queue` of any picklable object: a child puts structs with
    /// strings, vectors and options, one of them larger than a slot, and
    /// the parent gets them back equal, under every start method.
    #[test]
    fn any_serde_type_through_a_queue_across_processes() {
        let _w = Watchdog::named(TIMEOUT, "obj_queue");
        for ctx in common::contexts() {
            let m = ctx.start_method();
            let q = ObjQueue::<Job>::new(3).expect("queue");
            let p = ctx
                .builder()
                .target(producer, (q.try_clone().expect("clone"), 5))
                .start()
                .expect("start");
            for id in 0..5 {
                assert_eq!(q.get_timeout(TIMEOUT).expect("get"), job(id), "{m}");
            }
            assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
            assert!(q.empty(), "{m}");
            assert_eq!(q.capacity(), 3);
        }
    }
}
