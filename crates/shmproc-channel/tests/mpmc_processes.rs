//! 4 producer and 2 consumer processes, `N` messages per producer, each
//! `(producer, sequence)`: every message is received exactly once and each
//! consumer sees each producer's messages in order.
#![cfg(not(shmproc_loom))]

use shmproc_channel::{GetError, GetTimeoutError, Queue};
use shmproc_shm::ShmSlice;
use shmproc_testing::{Child, TestShm, Watchdog, arg, arg_parsed, current_test, role, stress_or};

const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 2;
/// Messages per producer: the 1M under `SHMPROC_STRESS`, 50k by default.
fn n() -> u64 {
    stress_or(1_000_000, 50_000)
}

/// Bitmap words per producer.
fn words() -> usize {
    n().div_ceil(64) as usize
}
const T: std::time::Duration = std::time::Duration::from_secs(120);

fn producer(q: &Queue<u64>, p: u64) {
    for seq in 0..n() {
        q.put((p << 32) | seq).expect("put");
    }
}

/// Receives until the queue is closed and drained; checks per-producer
/// order locally and writes one bitmap per producer into `out`.
fn consumer(q: &Queue<u64>, out: &ShmSlice<u64>, c: u64) {
    let mut next = [0u64; PRODUCERS as usize];
    let mut seen = vec![vec![0u64; words()]; PRODUCERS as usize];
    let mut batch = Vec::with_capacity(64);
    loop {
        batch.clear();
        match q.get_many(&mut batch, 64) {
            Ok(0) => match q.get_timeout(T) {
                Ok(m) => batch.push(m),
                Err(GetTimeoutError::Closed) => break,
                Err(e) => panic!("consumer {c}: {e}"),
            },
            Ok(_) => {}
            Err(GetError::Closed) => break,
            Err(e) => panic!("consumer {c}: {e}"),
        }
        for &m in &batch {
            let (p, seq) = ((m >> 32) as usize, m & 0xffff_ffff);
            assert!(p < PRODUCERS as usize && seq < n(), "bad message {m:#x}");
            assert!(seq >= next[p], "producer {p}: {seq} after {}", next[p]);
            next[p] = seq + 1;
            seen[p][(seq / 64) as usize] |= 1 << (seq % 64);
        }
    }
    for (p, bits) in seen.iter().enumerate() {
        let at = ((c as usize) * PRODUCERS as usize + p) * words();
        out.write_from(at, bits).expect("in bounds");
    }
}

#[test]
fn four_producers_two_consumers_exactly_once_in_order() {
    if let Some(r) = role() {
        let q = Queue::<u64>::open(&arg("q").expect("q")).expect("open");
        if r == "producer" {
            producer(&q, arg_parsed("i"));
        } else {
            let out = ShmSlice::<u64>::open(&arg("out").expect("out")).expect("open out");
            consumer(&q, &out, arg_parsed("i"));
        }
        return;
    }
    let _wd = Watchdog::named(T * 2, "4x2 processes");
    let shm = TestShm::new();
    let (qn, on) = (shm.name("q"), shm.name("out"));
    let q = Queue::<u64>::create(&qn, 1024).expect("create");
    let total = (CONSUMERS * PRODUCERS) as usize * words();
    let out = ShmSlice::<u64>::create(&on, total, 0).expect("create out");
    let spawn = |r: &str, i: u64| {
        Child::spawn(
            current_test!(),
            r,
            &[("q", &qn), ("out", &on), ("i", &i.to_string())],
        )
        .expect("spawn")
    };
    let consumers: Vec<_> = (0..CONSUMERS).map(|i| spawn("consumer", i)).collect();
    let producers: Vec<_> = (0..PRODUCERS).map(|i| spawn("producer", i)).collect();
    for p in producers {
        p.expect_success(T);
    }
    q.close();
    for c in consumers {
        c.expect_success(T);
    }
    let all = out.to_vec();
    for p in 0..PRODUCERS as usize {
        let mut count = 0u64;
        for w in 0..words() {
            let a = all[p * words() + w];
            let b = all[(PRODUCERS as usize + p) * words() + w];
            assert_eq!(a & b, 0, "producer {p}: a message received twice");
            count += u64::from((a | b).count_ones());
        }
        assert_eq!(count, n(), "producer {p}: messages lost");
    }
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
    assert!(q.empty());
}
