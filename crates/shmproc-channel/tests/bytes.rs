//! `ByteQueue`: byte messages of every size across processes (inline and
//! side segments), reserve/commit and dropped reservations, the too-large
//! error, a corrupt record length, a model-based property test, a producer
//! killed mid-record, and (feature `serde`) typed objects.
#![cfg(not(shmproc_loom))]

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use proptest::prelude::*;
use shmproc_channel::{ByteQueue, GetTimeoutError, MAX_MESSAGE_LEN, TryGetError, TryPutBytesError};
use shmproc_shm::DATA_OFFSET;
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, role};

const SLOT: usize = 256;
const SIGABRT: i32 = 6;

/// Tests of this binary that make side segments in this process run one at
/// a time, so each can check that none of its own is left over.
static SIDE: Mutex<()> = Mutex::new(());

fn side_lock() -> MutexGuard<'static, ()> {
    SIDE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Side segments in /dev/shm created by process `pid`.
fn side_leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("shmproc-{pid:x}-");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) && n.ends_with("-bq"))
                .collect()
        })
        .unwrap_or_default()
}

/// A message of `len` bytes whose content depends on `tag`.
fn msg(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag))
        .collect()
}

/// Every size of the contract: 0, 1, slot-1, slot, slot+1, 10x slot, MiBs.
fn sizes() -> Vec<usize> {
    vec![0, 1, SLOT - 1, SLOT, SLOT + 1, 10 * SLOT, (3 << 20) + 7]
}

#[test]
fn round_trips_of_every_size_across_processes() {
    if role().is_some() {
        let q = ByteQueue::open(&arg("q").expect("q")).expect("open");
        for (i, &len) in sizes().iter().enumerate() {
            let m = msg(len, i as u8);
            match i % 3 {
                0 => q.put_bytes(&m).expect("put"),
                1 => q.put_bytes_timeout(&m, TIMEOUT).expect("put"),
                _ => {
                    let mut w = q.reserve_timeout(len, TIMEOUT).expect("reserve");
                    w.copy_from_slice(&m);
                    w.commit().expect("commit");
                }
            }
            // A dropped reservation of the same size: never delivered.
            drop(q.reserve(len).expect("reserve"));
        }
        q.put_bytes(b"end").expect("put");
        return;
    }
    let _side = side_lock();
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("bq");
    let q = ByteQueue::create(&name, 4, SLOT).expect("create");
    assert_eq!(q.slot_size(), SLOT);
    let child = Child::spawn(current_test!(), "producer", &[("q", &name)]).expect("spawn");
    let pid = child.pid().as_u32();
    let mut buf = Vec::new();
    for (i, &len) in sizes().iter().enumerate() {
        let want = msg(len, i as u8);
        match i % 3 {
            0 => assert_eq!(q.get_bytes_timeout(TIMEOUT).expect("get"), want, "{len}"),
            1 => {
                q.get_bytes_into_vec_timeout(&mut buf, TIMEOUT)
                    .expect("get");
                assert_eq!(buf, want, "{len}");
            }
            _ => {
                let g = q.get_bytes_ref_timeout(TIMEOUT).expect("get");
                assert_eq!(&*g, &want[..], "{len}");
            }
        }
    }
    assert_eq!(q.get_bytes_timeout(TIMEOUT).expect("get"), b"end");
    child.expect_success(TIMEOUT);
    assert_eq!(q.try_get_bytes(), Err(TryGetError::Empty));
    assert_eq!((q.skipped_writes(), q.abandoned_reads()), (0, 0));
    assert!(side_leftovers(pid).is_empty(), "{:?}", side_leftovers(pid));
}

#[test]
fn reserve_commit_and_dropped_reservations() {
    let _side = side_lock();
    let q = ByteQueue::new(2, 64).expect("create");
    // Inline: written in place, committed.
    let mut w = q.try_reserve(5).expect("room");
    assert_eq!(w.len(), 5);
    w.copy_from_slice(b"hello");
    w.commit().expect("commit");
    // Dropped: the slot is published as cancelled and skipped.
    let mut w = q.try_reserve(3).expect("room");
    w.copy_from_slice(b"bad");
    drop(w);
    assert_eq!(q.try_get_bytes().expect("message"), b"hello");
    assert_eq!(q.try_get_bytes(), Err(TryGetError::Empty));
    // Side segment, committed and dropped.
    let big = msg(5000, 9);
    let mut w = q.try_reserve(big.len()).expect("room");
    w.copy_from_slice(&big);
    w.commit().expect("commit");
    drop(q.try_reserve(7000).expect("room"));
    assert!(q.full());
    assert!(matches!(q.try_reserve(1), Err(TryPutBytesError::Full)));
    assert!(matches!(q.try_reserve(9000), Err(TryPutBytesError::Full)));
    assert_eq!(&*q.try_get_bytes_ref().expect("message"), &big[..]);
    assert_eq!(q.try_get_bytes(), Err(TryGetError::Empty));
    // A full lap still works.
    for i in 0..4u8 {
        q.put_bytes(&[i; 64]).expect("put");
        assert_eq!(q.get_bytes().expect("get"), [i; 64]);
    }
    assert!(side_leftovers(std::process::id()).is_empty());
}

#[test]
fn too_large_is_an_error_and_nothing_is_enqueued() {
    let _side = side_lock();
    let q = ByteQueue::new(2, 64).expect("create");
    let len = usize::try_from(MAX_MESSAGE_LEN + 1).expect("64-bit");
    match q.try_reserve(len) {
        Err(TryPutBytesError::TooLarge { len: l, max }) => {
            assert_eq!((l, max), (MAX_MESSAGE_LEN + 1, MAX_MESSAGE_LEN));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(q.empty());
    assert_eq!(q.try_get_bytes(), Err(TryGetError::Empty));
    q.close();
    assert!(matches!(
        q.try_put_bytes(b"x"),
        Err(TryPutBytesError::Closed)
    ));
    assert_eq!(q.try_get_bytes(), Err(TryGetError::Closed));
}

/// Writes `bytes` at `off` bytes into slot 0's record header (records v3:
/// the kind and length words in the last 16 bytes of the slot header's
/// line, then a side record's name at the start of the payload).
fn scribble(q: &ByteQueue, off: u64, bytes: &[u8]) {
    let file = File::from(q.segment().fd().try_clone_to_owned().expect("dup"));
    // Segment header, ring header (384), the slot header line's first 48
    // bytes (the ring's stamp and owner, then padding).
    let at = DATA_OFFSET as u64 + 384 + 48 + off;
    file.write_all_at(bytes, at).expect("write");
}

#[test]
fn corrupt_record_length_is_reported_and_the_queue_stays_usable() {
    let _side = side_lock();
    let q = ByteQueue::new(1, 64).expect("create");
    for (off, bytes) in [
        (8, u64::MAX.to_le_bytes().to_vec()), // inline length far above the slot
        (8, 65u64.to_le_bytes().to_vec()),    // one past the slot
        (0, 7u32.to_le_bytes().to_vec()),     // unknown kind
        (0, 2u32.to_le_bytes().to_vec()),     // "side" with an inline length
    ] {
        q.put_bytes(b"abc").expect("put");
        scribble(&q, off, &bytes);
        assert!(
            matches!(q.try_get_bytes(), Err(TryGetError::Corrupt(_))),
            "{off} {bytes:?}"
        );
        // The slot was released: the queue keeps working.
        q.put_bytes(b"next").expect("put");
        assert_eq!(q.try_get_bytes().expect("get"), b"next");
    }
    // A side record naming a segment that is not there.
    q.put_bytes(b"abc").expect("put");
    let name = b"/shmproc-1-000000000000-bq";
    let mut h = Vec::new();
    h.extend(2u32.to_le_bytes());
    h.extend((name.len() as u32).to_le_bytes());
    h.extend(1000u64.to_le_bytes());
    h.extend(name);
    scribble(&q, 0, &h);
    assert!(matches!(q.try_get_ref(), Err(TryGetError::Corrupt(_))));
    q.put_bytes(b"ok").expect("put");
    assert_eq!(q.try_get_bytes().expect("get"), b"ok");
}

trait TryGetRef {
    fn try_get_ref(&self) -> Result<Vec<u8>, TryGetError>;
}
impl TryGetRef for ByteQueue {
    fn try_get_ref(&self) -> Result<Vec<u8>, TryGetError> {
        self.try_get_bytes_ref().map(|g| g.to_vec())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(usize),
    Reserve(usize, bool),
    Get(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![0..=64usize, 60..=70usize, 64..=400usize];
    prop_oneof![
        3 => len.clone().prop_map(Op::Put),
        1 => (len, any::<bool>()).prop_map(|(l, c)| Op::Reserve(l, c)),
        4 => (0..4u8).prop_map(Op::Get),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Mixed sizes (inline and side) against a `VecDeque<Vec<u8>>` model.
    #[test]
    fn mixed_sizes_match_a_fifo_model(cap_log in 0..3u32, ops in proptest::collection::vec(op(), 1..60)) {
        let _side = side_lock();
        let cap = 1usize << cap_log;
        let q = ByteQueue::new(cap, 64).expect("create");
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut buf = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Put(len) => {
                    let m = msg(len, i as u8);
                    match q.try_put_bytes(&m) {
                        Ok(()) => model.push_back(m),
                        Err(TryPutBytesError::Full) => prop_assert_eq!(q.qsize(), cap),
                        Err(e) => prop_assert!(false, "put: {e}"),
                    }
                }
                Op::Reserve(len, commit) => match q.try_reserve(len) {
                    Ok(mut w) => {
                        let m = msg(len, i as u8);
                        w.copy_from_slice(&m);
                        if commit {
                            w.commit().expect("commit");
                            model.push_back(m);
                        }
                    }
                    Err(TryPutBytesError::Full) => prop_assert_eq!(q.qsize(), cap),
                    Err(e) => prop_assert!(false, "reserve: {e}"),
                },
                Op::Get(3) => {
                    // Into a fixed buffer shorter than some messages: a
                    // longer one is refused and stays at the front.
                    let mut small = [0u8; 100];
                    match q.try_get_bytes_into(&mut small) {
                        Ok(n) => prop_assert_eq!(Some(small[..n].to_vec()), model.pop_front()),
                        Err(TryGetError::TooLong { len, max: 100 }) => {
                            prop_assert_eq!(Some(len as usize), model.front().map(Vec::len));
                            prop_assert!(len > 100);
                        }
                        Err(TryGetError::Empty) => prop_assert!(model.is_empty()),
                        Err(e) => prop_assert!(false, "get into: {e}"),
                    }
                }
                Op::Get(how) => {
                    let got = match how {
                        0 => q.try_get_bytes(),
                        1 => q.try_get_bytes_into_vec(&mut buf).map(|()| buf.clone()),
                        _ => q.try_get_ref(),
                    };
                    match got {
                        Ok(m) => prop_assert_eq!(Some(m), model.pop_front()),
                        Err(TryGetError::Empty) => prop_assert!(model.is_empty()),
                        Err(e) => prop_assert!(false, "get: {e}"),
                    }
                }
            }
            prop_assert!(q.qsize() >= model.len());
        }
        while let Some(m) = model.pop_front() {
            prop_assert_eq!(q.try_get_bytes().expect("model says there is one"), m);
        }
        prop_assert_eq!(q.try_get_bytes(), Err(TryGetError::Empty));
        prop_assert!(side_leftovers(std::process::id()).is_empty());
    }
}

#[test]
#[cfg_attr(
    not(shmproc_crash_points),
    ignore = "needs RUSTFLAGS=--cfg shmproc_crash_points"
)]
fn producer_killed_mid_record_is_skipped_and_its_side_segment_swept() {
    if role().is_some() {
        let q = ByteQueue::open(&arg("q").expect("q")).expect("open");
        let big = arg("big").expect("big") == "1";
        for i in 0u8.. {
            let len = if big && i == 3 { 10 * SLOT } else { 8 };
            if i % 2 == 0 {
                q.put_bytes(&msg(len, i)).expect("put");
            } else {
                let mut w = q.reserve(len).expect("reserve");
                w.copy_from_slice(&msg(len, i));
                w.commit().expect("commit");
            }
        }
        unreachable!("the crash point fires");
    }
    // The queue makes side segments in this process too (the 300-byte
    // messages below), which the model test's leftover check would see.
    let _side = side_lock();
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("bq");
    let q = ByteQueue::create(&name, 8, SLOT).expect("create");
    for (round, big) in [(0u64, "0"), (1, "1")] {
        // The producer sends 3 messages, then dies holding the claim of the
        // 4th (in round 1 a side message, its segment already made).
        let child = Child::spawn_with(
            current_test!(),
            "producer",
            &[("q", &name), ("big", big)],
            |c| {
                c.env("SHMPROC_CRASH_POINT", "put-claimed")
                    .env("SHMPROC_CRASH_AFTER", "3");
            },
        )
        .expect("spawn");
        let pid = child.pid().as_u32();
        assert_eq!(child.wait_timeout(TIMEOUT).code(), -SIGABRT);
        for i in 0..3u8 {
            assert_eq!(q.get_bytes_timeout(TIMEOUT).expect("get"), msg(8, i));
        }
        // A blocked consumer notices the dead claimant (after a sleep slice
        // and a liveness check) and skips its position; nothing else arrives.
        // Wait for the skip itself rather than for a fixed time: under load
        // the first check can come late.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while q.skipped_writes() < round + 1 && std::time::Instant::now() < deadline {
            assert_eq!(
                q.get_bytes_timeout(Duration::from_millis(100)),
                Err(GetTimeoutError::Timeout)
            );
        }
        assert_eq!(q.skipped_writes(), round + 1);
        let leaked = side_leftovers(pid);
        assert_eq!(leaked.len(), usize::from(big == "1"), "{leaked:?}");
        let swept = q.sweep_side_segments();
        for l in &leaked {
            assert!(swept.contains(&format!("/{l}")), "{swept:?}");
        }
        assert!(side_leftovers(pid).is_empty());
        // The queue keeps working through every slot.
        for i in 0..8u8 {
            q.try_put_bytes(&msg(300, i)).expect("room");
        }
        for i in 0..8u8 {
            assert_eq!(q.try_get_bytes().expect("get"), msg(300, i));
        }
    }
}

#[cfg(feature = "serde")]
#[test]
fn serde_objects_round_trip_and_bad_ones_are_typed_errors() {
    use shmproc_channel::GetObjError;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u32,
        name: String,
        data: Vec<u64>,
    }
    let _side = side_lock();
    let q = ByteQueue::new(4, 64).expect("create");
    let small = Job {
        id: 1,
        name: "small".into(),
        data: vec![1, 2, 3],
    };
    let big = Job {
        id: 2,
        name: "big".into(),
        data: (0..10_000).collect(),
    };
    q.put_obj(&small).expect("put");
    q.put_obj_timeout(&big, TIMEOUT).expect("put");
    q.try_put_obj(&"a string").expect("put");
    assert_eq!(q.get_obj::<Job>().expect("get"), small);
    assert_eq!(q.get_obj_timeout::<Job>(TIMEOUT).expect("get"), big);
    assert_eq!(q.try_get_obj::<String>().expect("get"), "a string");
    // Bytes that are not a Job: a typed error, and the queue goes on.
    q.put_bytes(&[0xff; 3]).expect("put");
    assert!(matches!(
        q.try_get_obj::<Job>(),
        Err(GetObjError::Decode(_))
    ));
    assert!(matches!(
        q.try_get_obj::<Job>(),
        Err(GetObjError::Get(TryGetError::Empty))
    ));
    q.put_obj(&small).expect("put");
    assert_eq!(q.try_get_obj::<Job>().expect("get"), small);
    assert!(side_leftovers(std::process::id()).is_empty());
}

/// Side segments carry their queue's id: sweeping queue B never removes an
/// undelivered large message of queue A, even one whose producer is dead,
/// while B's own leaked side segment (a dead producer's reservation) goes.
#[test]
fn a_sweep_removes_only_its_own_queues_side_segments() {
    if let Some(r) = role() {
        let q = ByteQueue::open(&arg("q").expect("q")).expect("open");
        match r.as_str() {
            // Delivered to A's ring, never consumed; the producer then exits.
            "a-producer" => q.put_bytes(&msg(10 * SLOT, 7)).expect("put"),
            // Dies holding a reservation whose side segment is made: an
            // unreferenced side segment of B.
            _ => std::mem::forget(q.reserve(10 * SLOT).expect("reserve")),
        }
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let (a_name, b_name) = (shm.name("bqa"), shm.name("bqb"));
    let a = ByteQueue::create(&a_name, 4, SLOT).expect("create A");
    let b = ByteQueue::create(&b_name, 4, SLOT).expect("create B");
    let run = |role: &str, q: &str| {
        let child = Child::spawn(current_test!(), role, &[("q", q)]).expect("spawn");
        let pid = child.pid().as_u32();
        assert_eq!(child.wait_timeout(TIMEOUT).code(), 0, "{role}");
        pid
    };
    let a_pid = run("a-producer", &a_name);
    let b_pid = run("b-abandoner", &b_name);
    assert_eq!(side_leftovers(a_pid).len(), 1);
    assert_eq!(side_leftovers(b_pid).len(), 1);

    let swept = b.sweep_side_segments();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert!(side_leftovers(b_pid).is_empty(), "B's own leak is swept");
    assert_eq!(
        side_leftovers(a_pid).len(),
        1,
        "A's message survives B's sweep"
    );
    // A's own sweep keeps it too: a record still names it.
    assert!(a.sweep_side_segments().is_empty());
    assert_eq!(
        a.get_bytes_timeout(TIMEOUT).expect("get"),
        msg(10 * SLOT, 7)
    );
    assert!(side_leftovers(a_pid).is_empty(), "the consumer unlinked it");
}

/// `get_bytes_into` with a buffer too short leaves the message in the queue
/// (Python's `BufferTooShort`, as `Connection::recv_bytes_into`): a consumer
/// process with a 100-byte buffer and one with a large buffer share a
/// stream of mixed sizes (inline and side records); every message arrives
/// exactly once, and the short buffer never gets a longer one.
#[test]
fn too_long_for_the_buffer_stays_for_another_consumer() {
    const N: usize = 400;
    let len_of = |i: usize| (i * 37) % 180;
    if role().is_some() {
        let q = ByteQueue::open(&arg("q").expect("q")).expect("open");
        let back = ByteQueue::open(&arg("back").expect("back")).expect("open");
        let mut small = [0u8; 100];
        let mut refused = 0u64;
        loop {
            match q.get_bytes_into_timeout(&mut small, TIMEOUT) {
                Ok(n) => back.put_bytes(&small[..n]).expect("report"),
                Err(GetTimeoutError::TooLong { len, max: 100 }) => {
                    assert!(len > 100, "refused {len}");
                    refused += 1;
                    // The other consumer takes it; look again.
                    std::hint::spin_loop();
                }
                Err(GetTimeoutError::Closed) => break,
                Err(e) => panic!("get into: {e}"),
            }
        }
        back.put_bytes(format!("refused {refused}").as_bytes())
            .expect("report");
        return;
    }
    let _side = side_lock();
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let (qn, bn) = (shm.name("q"), shm.name("back"));
    let q = ByteQueue::create(&qn, 8, 128).expect("create");
    let back = ByteQueue::create(&bn, 64, 128).expect("create");
    let child =
        Child::spawn(current_test!(), "small", &[("q", &qn), ("back", &bn)]).expect("spawn");
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut big = vec![0u8; 4096];
    let mut child_got: Vec<Vec<u8>> = Vec::new();
    for i in 0..N {
        let m = msg(len_of(i), i as u8);
        // Full: the head may be a long message the child refuses, so take
        // one here (never wait for room the child cannot make).
        while let Err(e) = q.try_put_bytes(&m) {
            assert!(matches!(e, TryPutBytesError::Full), "put: {e}");
            if let Ok(n) = q.try_get_bytes_into(&mut big) {
                got.push(big[..n].to_vec());
            }
        }
        // Take one now and then, so both consumers compete.
        if i % 3 == 0 {
            if let Ok(n) = q.try_get_bytes_into(&mut big) {
                got.push(big[..n].to_vec());
            }
        }
        while let Ok(m) = back.try_get_bytes() {
            child_got.push(m);
        }
    }
    q.close();
    loop {
        match q.get_bytes_into_timeout(&mut big, TIMEOUT) {
            Ok(n) => got.push(big[..n].to_vec()),
            Err(GetTimeoutError::Closed) => break,
            Err(e) => panic!("get into: {e}"),
        }
    }
    let summary = loop {
        let m = back.get_bytes_timeout(TIMEOUT).expect("child's report");
        if m.starts_with(b"refused ") {
            break String::from_utf8(m).expect("utf-8");
        }
        child_got.push(m);
    };
    child.expect_success(TIMEOUT);
    assert!(child_got.iter().all(|m| m.len() <= 100), "{summary}");
    let mut all: Vec<Vec<u8>> = got.into_iter().chain(child_got).collect();
    all.sort();
    let mut want: Vec<Vec<u8>> = (0..N).map(|i| msg(len_of(i), i as u8)).collect();
    want.sort();
    assert_eq!(all.len(), N, "{summary}");
    assert!(all == want, "messages lost or duplicated ({summary})");
}
