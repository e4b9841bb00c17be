//! Pool, serde calls: map/imap/imap_unordered/starmap/apply and their async
//! forms with callbacks, the initializer, maxtasksperchild, close/terminate
//! with work queued; and `map_into`/`map_slices` on arrays another process
//! created by name.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmproc_channel::Queue;
use shmproc_pool::{Callbacks, Pool, PoolError};
use shmproc_shm::ShmSlice;
use shmproc_testing::{Child, TestShm, Watchdog, arg, current_test, role};

const TIMEOUT: Duration = Duration::from_secs(60);

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[test]
fn the_tutorials_is_prime_with_bool_results() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let numbers = [10_000_019u64, 10_000_033, 10_000_079, 10_000_081];
    let want: Vec<bool> = numbers.iter().map(|&n| is_prime(n)).collect();
    assert_eq!(pool.map(is_prime, numbers).expect("map"), want);
    assert_eq!(pool.map(is_prime, &numbers[..]).expect("map"), want);
    let range = 10_000_000u64..10_050_000;
    let want: Vec<bool> = range.clone().map(is_prime).collect();
    assert_eq!(pool.map(is_prime, range).expect("map range"), want);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    name: String,
    lines: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    id: u32,
    label: String,
    sum: f64,
}

fn total(o: Order) -> Total {
    Total {
        id: o.id,
        label: o.name.to_uppercase(),
        sum: o.lines.iter().map(|l| l.1).sum(),
    }
}

fn orders(n: u32) -> Vec<Order> {
    (0..n)
        .map(|id| Order {
            id,
            name: format!("order-{id}-ü"),
            lines: (0..id % 7)
                .map(|k| (format!("item{k}"), f64::from(k) * 1.5))
                .collect(),
        })
        .collect()
}

#[test]
fn structs_and_strings_round_trip_in_order_with_any_chunksize() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let input = orders(500);
    let want: Vec<Total> = input.iter().cloned().map(total).collect();
    for cs in [None, Some(1), Some(7), Some(499), Some(10_000)] {
        assert_eq!(
            pool.map_chunked(total, &input, cs).expect("map"),
            want,
            "{cs:?}"
        );
    }
    // Empty, one item, fewer items than workers.
    assert_eq!(pool.map(total, Vec::<Order>::new()).expect("empty"), vec![]);
    assert_eq!(pool.map(total, &input[..1]).expect("one"), want[..1]);
    assert!(matches!(
        pool.map_chunked(total, &input, Some(0)),
        Err(PoolError::InvalidArgument(_))
    ));
    // A result larger than a message travels in a segment.
    let big: Vec<String> = pool
        .map(|n: usize| "x".repeat(n), [200_000usize, 3, 100_000])
        .expect("big results");
    assert_eq!(
        big.iter().map(String::len).collect::<Vec<_>>(),
        [200_000, 3, 100_000]
    );
}

fn jitter(x: u64) -> u64 {
    // Uneven work so that chunks come back out of order.
    let spins = (x * 7919) % 50_000;
    let mut h = x;
    for i in 0..spins {
        h = std::hint::black_box(h.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(h);
    x * 2
}

#[test]
fn imap_is_ordered_lazy_and_exact_size() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let it = pool.imap(jitter, 0..2_000u64).expect("imap");
    assert_eq!(it.len(), 2_000);
    let mut seen = 0;
    let mut it = it;
    while let Some(r) = it.next() {
        assert_eq!(r.expect("item"), seen * 2);
        seen += 1;
        assert_eq!(it.len() as u64, 2_000 - seen);
    }
    assert_eq!(seen, 2_000);
    // Composes with adapters.
    let sum: u64 = pool
        .imap_chunked(jitter, 0..100u64, 9)
        .expect("imap")
        .map(|r| r.expect("item"))
        .sum();
    assert_eq!(sum, (0..100u64).map(|x| x * 2).sum());
    // next_timeout: a result that is not back in time is a timeout, and
    // the iterator goes on afterwards.
    let mut it = pool.imap(slow_echo, [1u64, 2]).expect("imap");
    assert!(matches!(
        it.next_timeout(Duration::ZERO),
        Err(PoolError::Timeout)
    ));
    assert_eq!(it.next_timeout(TIMEOUT).expect("first"), Some(1));
    assert_eq!(it.next_timeout(TIMEOUT).expect("second"), Some(2));
    assert_eq!(it.next_timeout(TIMEOUT).expect("end"), None);
}

fn slow_echo(x: u64) -> u64 {
    let mut h = x;
    for i in 0..2_000_000u64 {
        h = std::hint::black_box(h.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(h);
    x
}

#[test]
fn imap_unordered_yields_every_result_once() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let it = pool.imap_unordered(jitter, 0..3_000u64).expect("imap");
    assert_eq!(it.len(), 3_000);
    let got: Vec<u64> = it.map(|r| r.expect("item")).collect();
    assert_eq!(got.len(), 3_000);
    let set: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(set, (0..3_000u64).map(|x| x * 2).collect());
}

fn picky(x: u64) -> u64 {
    assert!(x != 37, "no thirty-seven please");
    x
}

#[test]
fn a_panic_in_imap_ends_it_with_the_message_after_the_earlier_results() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let mut it = pool.imap(picky, 0..100u64).expect("imap");
    for k in 0..37 {
        let got = it.next();
        assert!(matches!(got, Some(Ok(x)) if x == k), "item {k}: {got:?}");
    }
    match it.next() {
        Some(Err(PoolError::TaskPanicked { message, index })) => {
            assert_eq!(index, 37);
            assert!(message.contains("no thirty-seven"), "{message}");
        }
        other => panic!("expected the panic, got {other:?}"),
    }
    assert!(it.next().is_none());
    match pool.map(picky, 0..100u64) {
        Err(PoolError::TaskPanicked { index, .. }) => assert_eq!(index, 37),
        other => panic!("expected the panic, got {other:?}"),
    }
    assert_eq!(pool.map(picky, [1u64, 2]).expect("serves on"), [1, 2]);
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn describe(name: String, n: u32, flag: bool) -> String {
    format!("{name}:{n}:{flag}")
}

fn forty_two() -> u64 {
    42
}

#[test]
fn starmap_and_apply_unpack_argument_tuples() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let pairs: Vec<(u64, u64)> = (0..300).map(|i| (i, 1000 * i)).collect();
    let want: Vec<u64> = pairs.iter().map(|&(a, b)| a + b).collect();
    assert_eq!(
        pool.starmap(add as fn(u64, u64) -> u64, &pairs)
            .expect("starmap"),
        want
    );
    assert_eq!(
        pool.apply(
            describe as fn(String, u32, bool) -> String,
            ("a".to_string(), 3, true)
        )
        .expect("apply"),
        "a:3:true"
    );
    assert_eq!(pool.apply(forty_two as fn() -> u64, ()).expect("apply"), 42);
    let r = pool
        .starmap_async(add as fn(u64, u64) -> u64, [(1u64, 2u64), (3, 4)])
        .expect("starmap_async");
    assert_eq!(r.get().expect("get"), [3, 7]);
}

#[test]
fn apply_async_many_at_once_with_callbacks_in_the_parent() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let me = std::process::id();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let results: Vec<_> = (0..200u64)
        .map(|x| {
            let (seen, errors) = (Arc::clone(&seen), Arc::clone(&errors));
            pool.apply_async_with(
                picky as fn(u64) -> u64,
                (x,),
                Callbacks::new()
                    .on_success(move |v: &u64| {
                        // Callbacks run in this process.
                        assert_eq!(std::process::id(), me);
                        seen.lock().expect("lock").insert(*v, ());
                    })
                    .on_error(move |e| {
                        assert!(matches!(e, PoolError::TaskPanicked { .. }));
                        errors.fetch_add(1, Ordering::SeqCst);
                    }),
            )
            .expect("apply_async")
        })
        .collect();
    for (x, r) in results.into_iter().enumerate() {
        assert!(r.wait_timeout(TIMEOUT));
        assert!(r.ready());
        if x == 37 {
            assert_eq!(r.successful(), Some(false));
            assert!(matches!(r.get(), Err(PoolError::TaskPanicked { .. })));
        } else {
            assert_eq!(r.successful(), Some(true));
            // The callback ran before the result reported ready.
            assert!(seen.lock().expect("lock").contains_key(&(x as u64)));
            assert_eq!(r.get().expect("get"), x as u64);
        }
    }
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    assert_eq!(seen.lock().expect("lock").len(), 199);

    let r = pool
        .map_async_with(
            jitter,
            0..50u64,
            Some(5),
            Callbacks::new().on_success(|v: &Vec<u64>| assert_eq!(v.len(), 50)),
        )
        .expect("map_async");
    assert_eq!(r.get_timeout(TIMEOUT).expect("get").len(), 50);
    assert!(matches!(
        r.get_timeout(TIMEOUT),
        Err(PoolError::InvalidArgument(_))
    ));
    let pending = pool
        .apply_async(slow_echo as fn(u64) -> u64, (9,))
        .expect("apply_async");
    assert!(matches!(
        pending.get_timeout(Duration::ZERO),
        Err(PoolError::Timeout)
    ));
    assert_eq!(pending.successful(), None);
    assert_eq!(pending.get().expect("get"), 9);
}

static INIT_TAG: AtomicU64 = AtomicU64::new(0);

fn init_worker((q, tag): (Queue<u32>, u64)) {
    INIT_TAG.store(tag, Ordering::SeqCst);
    q.put(std::process::id()).expect("put pid");
}

fn read_tag(_: u64) -> (u32, u64) {
    (std::process::id(), INIT_TAG.load(Ordering::SeqCst))
}

fn drain(q: &Queue<u32>) -> Vec<u32> {
    std::iter::from_fn(|| q.try_get().ok()).collect()
}

#[test]
fn the_initializer_runs_once_in_each_worker_before_its_tasks() {
    let _w = Watchdog::new(TIMEOUT);
    let q = Queue::<u32>::new(64).expect("queue");
    let pool = Pool::builder()
        .processes(3)
        .initializer(init_worker, (&q, 77u64))
        .build()
        .expect("pool");
    // `build` returns once every worker ran it.
    let mut inits = drain(&q);
    inits.sort_unstable();
    let mut pids: Vec<u32> = pool.pids().iter().map(|p| p.as_raw() as u32).collect();
    pids.sort_unstable();
    assert_eq!(inits, pids);
    for (pid, tag) in pool.map_chunked(read_tag, 0..300u64, Some(1)).expect("map") {
        assert!(pids.contains(&pid));
        assert_eq!(tag, 77);
    }
    assert!(drain(&q).is_empty(), "the initializer ran again");
}

fn init_panics(_: u64) {
    panic!("no config file");
}

#[test]
fn a_failing_initializer_fails_the_build() {
    let _w = Watchdog::new(TIMEOUT);
    match Pool::builder()
        .processes(2)
        .initializer(init_panics, 1u64)
        .build()
    {
        Err(PoolError::Initializer(m)) => assert!(m.contains("no config file"), "{m}"),
        other => panic!("expected an initializer error, got {other:?}"),
    }
}

#[test]
fn maxtasksperchild_recycles_workers_and_results_stay_right() {
    let _w = Watchdog::new(TIMEOUT);
    let q = Queue::<u32>::new(1024).expect("queue");
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(5)
        .initializer(init_worker, (&q, 5u64))
        .build()
        .expect("pool");
    let first = pool.pids();
    // 60 one-item tasks: at least 12 workers in all.
    let got = pool.map_chunked(read_tag, 0..60u64, Some(1)).expect("map");
    let used: BTreeSet<u32> = got.iter().map(|(p, _)| *p).collect();
    assert!(used.len() >= 12, "only {} workers served", used.len());
    assert!(got.iter().all(|(_, tag)| *tag == 5));
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for (p, _) in &got {
        *counts.entry(*p).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c <= 5), "{counts:?}");
    // The Pod path counts its chunks too.
    let v: Vec<u64> = (0..40).collect();
    assert_eq!(
        pool.map_pod_chunked(|x: u64| x + 1, &v, Some(1))
            .expect("map_pod"),
        v.iter().map(|x| x + 1).collect::<Vec<_>>()
    );
    assert_ne!(pool.pids(), first);
    // Every worker that ever started ran the initializer once.
    let inits = drain(&q);
    let set: BTreeSet<u32> = inits.iter().copied().collect();
    assert_eq!(set.len(), inits.len());
    assert!(used.is_subset(&set));
}

#[test]
fn close_lets_queued_work_finish_and_terminate_fails_it() {
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(2).expect("pool");
    let rs: Vec<_> = (0..6u64)
        .map(|x| {
            pool.apply_async(slow_echo as fn(u64) -> u64, (x,))
                .expect("apply")
        })
        .collect();
    pool.close();
    assert!(matches!(pool.map(picky, [1u64]), Err(PoolError::Closed)));
    pool.join().expect("join");
    for (x, r) in rs.into_iter().enumerate() {
        assert_eq!(r.get().expect("finished before join"), x as u64);
    }
    let pool = Pool::new(2).expect("pool");
    let pids = pool.pids();
    let rs: Vec<_> = (0..20u64)
        .map(|x| {
            pool.apply_async(slow_echo as fn(u64) -> u64, (x,))
                .expect("apply")
        })
        .collect();
    pool.terminate();
    let mut closed = 0;
    for r in rs {
        match r.get() {
            Ok(_) => {}
            Err(PoolError::Closed) => closed += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(closed > 0);
    for pid in pids {
        assert!(!shmproc_shm::os::pid_alive(pid), "{pid} still alive");
    }
}

fn triple(x: f64) -> f64 {
    x * 3.0
}

fn halves(input: &[u32], out: &mut [u32]) {
    for (x, y) in input.iter().zip(out.iter_mut()) {
        *y = x / 2;
    }
}

/// The arrays' owner: an unrelated process (this test binary in a role)
/// creates them by name, says so, and keeps them until told to go.
#[test]
fn map_into_and_map_slices_on_arrays_another_process_created() {
    if role().is_some() {
        let (a, b, c, d) = (
            arg("a").expect("a"),
            arg("b").expect("b"),
            arg("c").expect("c"),
            arg("d").expect("d"),
        );
        let xs: Vec<f64> = (0..10_000).map(f64::from).collect();
        let _a = ShmSlice::create_from_slice(&a, &xs).expect("a");
        let _b = ShmSlice::create(&b, xs.len(), 0.0f64).expect("b");
        let us: Vec<u32> = (0..50_000).collect();
        let _c = ShmSlice::create_from_slice(&c, &us).expect("c");
        let _d = ShmSlice::create(&d, us.len(), 0u32).expect("d");
        let ctl = Queue::<u32>::open(&arg("ctl").expect("ctl")).expect("ctl");
        ctl.put(1).expect("ready");
        // Stays until the parent has checked the results.
        let back = Queue::<u32>::open(&arg("back").expect("back")).expect("back");
        back.get_timeout(TIMEOUT).expect("done");
        return;
    }
    let _w = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let names: Vec<String> = ["a", "b", "c", "d", "ctl", "back"]
        .iter()
        .map(|t| shm.name(t))
        .collect();
    let ctl = Queue::<u32>::create(&names[4], 4).expect("ctl");
    let back = Queue::<u32>::create(&names[5], 4).expect("back");
    let args: Vec<(&str, &str)> = ["a", "b", "c", "d", "ctl", "back"]
        .iter()
        .copied()
        .zip(names.iter().map(String::as_str))
        .collect();
    let child = Child::spawn(current_test!(), "owner", &args).expect("spawn");
    ctl.get_timeout(TIMEOUT).expect("owner ready");
    let a = ShmSlice::<f64>::open(&names[0]).expect("a");
    let b = ShmSlice::<f64>::open(&names[1]).expect("b");
    let c = ShmSlice::<u32>::open(&names[2]).expect("c");
    let d = ShmSlice::<u32>::open(&names[3]).expect("d");
    let pool = Pool::new(2).expect("pool");
    pool.map_into(triple, &a, &b).expect("map_into");
    assert_eq!(
        b.to_vec(),
        (0..10_000).map(|x| f64::from(x) * 3.0).collect::<Vec<_>>()
    );
    pool.map_slices_chunked(halves, &c, &d, Some(999))
        .expect("map_slices");
    assert_eq!(
        d.to_vec(),
        (0..50_000u32).map(|x| x / 2).collect::<Vec<_>>()
    );
    // In place: input and output one array (the copy path).
    pool.map_into(triple, &b, &b).expect("in place");
    assert_eq!(b.to_vec()[7], 63.0);
    back.put(1).expect("done");
    child.expect_success(TIMEOUT);
}

#[test]
fn pool_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool>();
    send::<shmproc_pool::AsyncResult<Vec<String>>>();
    send::<shmproc_pool::IMap<u64>>();
    send::<shmproc_pool::IMapUnordered<u64>>();
    // A result waited for in another thread.
    let _w = Watchdog::new(TIMEOUT);
    let pool = Pool::new(1).expect("pool");
    let r = pool
        .apply_async(add as fn(u64, u64) -> u64, (2, 3))
        .expect("apply_async");
    let got = std::thread::spawn(move || r.get()).join().expect("thread");
    assert_eq!(got.expect("get"), 5);
}
