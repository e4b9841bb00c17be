//! Replays the corpus of the fuzz target `manager_frames`
//! (`fuzz/corpus/manager_frames/`, plus `fuzz/regressions/manager_frames/`)
//! on stable, through the same entry point as the cargo-fuzz target, and
//! checks that the seeds run clean.

use shmproc_manager::__private::manager_frames;
use shmproc_manager::manager::wire::{Kind, Op, Request, Val};
use shmproc_testing::{replay_fuzz_corpus, write_fuzz_seeds};

#[test]
fn replay_manager_frames() {
    replay_fuzz_corpus("manager_frames", manager_frames);
}

fn enc(r: &Request) -> Vec<u8> {
    postcard::to_allocvec(r).expect("a request encodes")
}

fn create(kind: Kind, maxsize: u64) -> Request {
    Request::Create {
        kind,
        ty: "t".into(),
        name: None,
        init: vec![1],
        maxsize,
    }
}

fn call(id: u64, op: Op) -> Request {
    Request::Call { id, op }
}

fn val(b: &[u8]) -> Val {
    Val::from(b.to_vec())
}

/// Requests of a session: ids count from 1 in creation order.
fn requests() -> Vec<Vec<Request>> {
    vec![
        // A dict: set, get, items, a nested proxy (itself), delete.
        vec![
            create(Kind::Dict, 0),
            call(1, Op::Set(b"k".to_vec(), val(b"v"))),
            call(1, Op::Get(b"k".to_vec())),
            call(1, Op::Cas(b"k".to_vec(), 1, val(b"w"))),
            call(1, Op::Items),
            call(
                1,
                Op::Set(
                    b"n".to_vec(),
                    Val {
                        bytes: vec![1],
                        refs: vec![1],
                    },
                ),
            ),
            call(1, Op::Del(b"k".to_vec())),
            call(1, Op::Len),
            Request::Count,
            Request::Release { id: 1 },
        ],
        // A list and a value; a wrong type; an unknown object.
        vec![
            create(Kind::List, 0),
            call(1, Op::Append(val(b"a"))),
            call(1, Op::Extend(vec![val(b"b"), val(b"c")])),
            call(1, Op::Index(-1)),
            call(1, Op::SetIndex(0, val(b"z"))),
            call(1, Op::Pop(None)),
            call(1, Op::All),
            create(Kind::Value, 0),
            call(2, Op::Load),
            call(2, Op::CasValue(1, val(b"x"))),
            call(2, Op::Get(b"k".to_vec())),
            call(9, Op::Len),
            Request::Pin { id: 1 },
            Request::Adopt {
                id: 1,
                kind: Kind::List,
                ty: "t".into(),
            },
            Request::Attach {
                id: 2,
                kind: Kind::Dict,
                ty: "t".into(),
            },
        ],
        // Blocking calls (the client is gone: they return at once).
        vec![
            create(Kind::Queue, 1),
            call(1, Op::Put(val(b"q"), 0)),
            call(1, Op::Put(val(b"q"), u64::MAX)),
            call(1, Op::QGet(u64::MAX)),
            call(1, Op::QGet(u64::MAX)),
            create(Kind::Lock, 0),
            call(2, Op::Acquire(0, u64::MAX)),
            call(2, Op::Acquire(0, 10)),
            call(2, Op::ReleaseLock(0)),
            create(Kind::Condition, 0),
            call(3, Op::Acquire(7, 0)),
            call(3, Op::CondWait(7, u64::MAX)),
            call(3, Op::Notify(7, u64::MAX)),
            create(Kind::Semaphore, 2),
            call(4, Op::SemRelease(1)),
            call(4, Op::SemValue),
            create(Kind::Barrier, 2),
            call(5, Op::BarrierWait(u64::MAX)),
            call(5, Op::Abort),
            call(5, Op::IsBroken),
            create(Kind::Event, 0),
            call(6, Op::Wait(u64::MAX)),
            call(6, Op::SetEvent),
            call(6, Op::IsSet),
            create(Kind::RLock, 0),
            call(7, Op::Acquire(1, 0)),
            call(7, Op::Acquire(1, 0)),
            call(7, Op::ReleaseLock(2)),
            Request::Shutdown,
        ],
    ]
}

/// Python's frame header: a 4-byte big-endian length.
fn socket_frames(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![0];
    for f in frames {
        d.extend((f.len() as i32).to_be_bytes());
        d.extend(f);
    }
    d
}

/// A length byte per frame.
fn direct_frames(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![1];
    for f in frames {
        d.push(f.len() as u8);
        d.extend(f);
    }
    d
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, reqs) in requests().iter().enumerate() {
        let frames: Vec<Vec<u8>> = reqs.iter().map(enc).collect();
        assert!(frames.iter().all(|f| f.len() < 256), "a seed frame is long");
        out.push((format!("socket-{i}"), socket_frames(&frames)));
        out.push((format!("direct-{i}"), direct_frames(&frames)));
    }
    // A long frame's header (-1, then 8 bytes), a truncated frame, one
    // over the limit, and garbage that decodes as nothing.
    let count = enc(&Request::Count);
    let mut long = vec![0];
    long.extend((-1i32).to_be_bytes());
    long.extend((count.len() as u64).to_be_bytes());
    long.extend(&count);
    out.push(("socket-long-header".into(), long));
    out.push(("socket-truncated".into(), vec![0, 0, 0, 1, 0, 7]));
    out.push(("socket-too-long".into(), vec![0, 0x7f, 0xff, 0xff, 0xff]));
    out.push(("direct-garbage".into(), vec![1, 4, 0xff, 0xff, 0xff, 0xff]));
    out
}

/// Writes the seeds to `fuzz/corpus/manager_frames/seed-<name>` (run by hand).
#[test]
#[ignore = "writes into fuzz/corpus/manager_frames; run by hand to regenerate the seeds"]
fn write_manager_frames_seeds() {
    write_fuzz_seeds("manager_frames", seeds());
}

#[test]
fn seeds_run_clean() {
    for (_, data) in seeds() {
        manager_frames(&data);
    }
}
