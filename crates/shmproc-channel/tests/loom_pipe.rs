//! Loom models of the pipe (model 3 of issue 23): its SPSC byte ring, the
//! seals, the writer's and the reader's waits with their Dekker fences, the
//! `heavy` word, and `release_claim`, through the production `Connection`
//! code over a heap pipe (`pipe::heap`: loom atomics for the control
//! blocks and seals, a loom-tracked cell per data byte).
//!
//! ```sh
//! RUSTFLAGS="--cfg shmproc_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmproc-channel --test loom_pipe --release -- --nocapture
//! ```
//! Each end runs in a model thread of its own process
//! (`shmproc_sync::model`); futex waits block until their word changes, so
//! a lost wake-up is a deadlock that loom reports (except in
//! `pipe_heavy_waits_without_membarrier`, which needs waits that time out to
//! reach the heavy side). Rings of 128 bytes (two lines): two short
//! messages fill one, and a 150-byte message (a record of 256 bytes)
//! streams through it, wrapping. Checked in every interleaving: each
//! message arrives once, in order, with its bytes; no byte of the ring is
//! read without a happens-before edge from its write, or overwritten while
//! the reader may still read it (loom's cell tracking); no waiter sleeps
//! forever. `SHMPROC_MUTANT` seeds the bugs listed in `.ci/loom-mutants`.
//!
//! Preemption bounds (each test states its own): 3 for the two-thread
//! models of the waits (a lost wake-up needs a switch between the waiter's
//! registration and its re-check, and one between the publish and the
//! waiters load; the third covers the message's bytes against the index),
//! 2 for the longer runs: the wrap (many steps) and the hand-over (three
//! threads, 53k interleavings at 2).
#![cfg(all(shmproc_loom, not(shmproc_shuttle)))]

use loom::sync::atomic::AtomicBool;
use shmproc_channel::__private::heap_pipe;
use shmproc_channel::PipeEnd;
use shmproc_sync::model;

const CAP: u64 = 128;

use shmproc_sync::model::check;

/// The test message `i`: `len` bytes of `i`.
fn msg(i: u8, len: usize) -> Vec<u8> {
    vec![i; len]
}

/// Receives `lens.len()` messages through `recv_bytes_into` (the fast
/// path where a sealed record is there, else the general one) and checks
/// each: message `i` is `lens[i]` bytes of `i + 1`.
fn recv_all(c: &mut shmproc_channel::Connection, lens: &[usize]) {
    let mut buf = [0u8; 256];
    for (i, &len) in lens.iter().enumerate() {
        let n = c.recv_bytes_into(&mut buf).expect("recv");
        assert_eq!(&buf[..n], &msg(i as u8 + 1, len)[..], "message {i}");
    }
}

/// Writer and reader waits, light (the first sleep, after a `SeqCst`
/// fence): the reader blocks on an empty ring while the writer sends two
/// messages; the writer then blocks on the full ring (two lines) for its
/// third. No interleaving may lose either wake-up. Bound 3: two threads.
#[test]
fn pipe_reader_and_writer_wait() {
    check("pipe_reader_and_writer_wait", 3, || {
        let p = heap_pipe(CAP);
        let mut r = p.end(PipeEnd::First).expect("end");
        let mut w = p.end(PipeEnd::Second).expect("end");
        let t = model::spawn(model::fresh(), move || {
            recv_all(&mut r, &[3, 5, 8]);
        });
        for (i, len) in [3, 5, 8].into_iter().enumerate() {
            w.send_bytes(&msg(i as u8 + 1, len)).expect("send");
        }
        t.join().expect("reader");
    });
}

/// Messages split across the ring's wrap: 7 bytes (line 0), then 150
/// bytes, which stream (the record, 256 bytes, is longer than the ring):
/// header line at offset 64, payload from offset 0 in chunks as the reader
/// drains, both sides waiting for each other in turn, and, when the
/// writer's first chunk was one line and the reader was quick, a chunk
/// that wraps the ring's end (copied in two pieces by `copy_in` and
/// `copy_out`: 1,698 and 2,031 of the 21k interleavings); then 50 bytes,
/// whose record (128 bytes) does not fit before the end: a pad record,
/// then the record at offset 0, filling the ring. Bound 2: many steps
/// (two waits per chunk); it passes at bound 3 too (696k interleavings,
/// 138 s here, run once: too long for every CI run).
#[test]
fn pipe_message_across_wrap() {
    check("pipe_message_across_wrap", 2, || {
        let p = heap_pipe(CAP);
        let mut r = p.end(PipeEnd::First).expect("end");
        let mut w = p.end(PipeEnd::Second).expect("end");
        let t = model::spawn(model::fresh(), move || {
            recv_all(&mut r, &[7, 150, 50]);
        });
        for (i, len) in [7, 150, 50].into_iter().enumerate() {
            w.send_bytes(&msg(i as u8 + 1, len)).expect("send");
        }
        t.join().expect("reader");
    });
}

/// The heavy side: the reader's process cannot issue `membarrier`, so it
/// sets the ring's `heavy` word at its claim (the writer's light fences
/// become `SeqCst` ones), and its waits time out (the model's
/// `set_timeouts`), so that every sleep after the first goes through the
/// heavy fence and a liveness check of the writer. Lost wake-ups are not
/// what this model checks (a timed-out wait re-checks); the messages, their
/// order and bytes, and the heavy path's accesses are. Bound 3: two
/// threads (46k interleavings).
#[test]
fn pipe_heavy_waits_without_membarrier() {
    check("pipe_heavy_waits_without_membarrier", 3, || {
        model::set_timeouts(true);
        let p = heap_pipe(CAP);
        let mut r = p.end(PipeEnd::First).expect("end");
        let mut w = p.end(PipeEnd::Second).expect("end");
        let t = model::spawn(model::fresh(), move || {
            model::set_no_membarrier();
            recv_all(&mut r, &[3, 5, 8]);
        });
        for (i, len) in [3, 5, 8].into_iter().enumerate() {
            w.send_bytes(&msg(i as u8 + 1, len)).expect("send");
        }
        t.join().expect("reader");
    });
}

/// `release_claim`: the reader's process takes one message and gives the
/// end up; another process attaches the end afresh (as `Connection::open`
/// would), claims it and takes the rest, while the writer sends all three.
/// The two readers share nothing else but a `Relaxed` "released" flag: the
/// second must start at the head the first published (the mutant
/// `pipe_claim_keeps_head` starts it at its own handle's head instead: a
/// message read twice). Not caught here: `release_claim`'s exchange
/// weakened to `Relaxed`. The reason is the model's fence mapping: the
/// light fence in `publish_head` after the head store is a `SeqCst` fence
/// under the model, hence also a release fence, and a release fence
/// followed by any atomic store (the `Relaxed` exchange) synchronizes with
/// the acquire that reads it (C11 fence-to-atomic), so the head is
/// published anyway. In production that fence is a compiler fence, and
/// only the exchange's `Release` publishes the head (on x86 every store is
/// a release one; on a weaker CPU the mutant would be a real bug). Bound
/// 2: three threads.
#[test]
fn pipe_release_claim_hands_over() {
    check("pipe_release_claim_hands_over", 2, || {
        let p = heap_pipe(CAP);
        let mut w = p.end(PipeEnd::Second).expect("end");
        let released = loom::sync::Arc::new(AtomicBool::new(false));
        let first = {
            let mut r = p.end(PipeEnd::First).expect("end");
            let released = released.clone();
            model::spawn(model::fresh(), move || {
                recv_all(&mut r, &[3]);
                r.release_claim();
                released.store(true, loom::sync::atomic::Ordering::Relaxed);
                // Dropping the handed-over handle closes nothing.
                drop(r);
            })
        };
        let second = {
            let p = p.clone();
            let released = released.clone();
            model::spawn(model::fresh(), move || {
                while !released.load(loom::sync::atomic::Ordering::Relaxed) {
                    loom::thread::yield_now();
                }
                let mut r = p.end(PipeEnd::First).expect("end");
                let mut buf = [0u8; 256];
                for (i, len) in [(2u8, 5), (3, 8)] {
                    let n = r.recv_bytes_into(&mut buf).expect("recv");
                    assert_eq!(
                        &buf[..n],
                        &msg(i, len)[..],
                        "message {i} after the hand-over"
                    );
                }
            })
        };
        for (i, len) in [3, 5, 8].into_iter().enumerate() {
            w.send_bytes(&msg(i as u8 + 1, len)).expect("send");
        }
        first.join().expect("first reader");
        second.join().expect("second reader");
    });
}
