//! Replays the corpora of the fuzz targets `queue_ops`, `queue_corrupt`,
//! `pipe_frames`, `bytes_records` and `pipe_open` (`fuzz/corpus/<target>/`, plus `fuzz/regressions/<target>/`)
//! on stable, through the same entry points as the cargo-fuzz targets.
//!
//! The seeds come from `write_queue_seeds`:
//! `cargo test -p shmproc-channel --test fuzz_replay -- --ignored write_queue_seeds`.
//!
//! Every input also runs under [`Capped`], this binary's allocator: a
//! request above [`ALLOC_CAP`] (a length word from shared memory sizing an
//! allocation, as libFuzzer's `-malloc_limit_mb` would report under
//! AddressSanitizer) is refused and fails the input.
#![cfg(not(shmproc_loom))]
// The global allocator below (`unsafe impl GlobalAlloc`); nothing else.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmproc_channel::__private as fuzzing;
use shmproc_testing::{fuzz_dir, replay_fuzz_corpus, write_fuzz_seeds};

/// The largest single allocation an input may ask for: far above what the
/// targets need (a few MiB), far below a forged length.
const ALLOC_CAP: usize = 256 << 20;

thread_local! {
    /// The largest request above [`ALLOC_CAP`] this thread made (0: none).
    static OVER_CAP: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, refusing requests above [`ALLOC_CAP`] (and
/// noting them for the thread that made them).
struct Capped;

// SAFETY: every request goes to `System` unchanged, or is refused with a
// null pointer, which `GlobalAlloc` allows.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ALLOC_CAP {
            OVER_CAP.with(|c| c.set(c.get().max(layout.size())));
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (refused requests return null,
        // which is never deallocated).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOC_CAP {
            OVER_CAP.with(|c| c.set(c.get().max(new_size)));
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// Runs `target` on `data`, failing when it asked for more than [`ALLOC_CAP`].
fn capped(target: fn(&[u8]), data: &[u8]) {
    OVER_CAP.with(|c| c.set(0));
    target(data);
    let over = OVER_CAP.with(Cell::get);
    assert!(
        over == 0,
        "an allocation of {over} bytes (above {ALLOC_CAP}): sized by a length from shared memory?"
    );
}

#[test]
fn replay_queue_ops() {
    replay_fuzz_corpus("queue_ops", |d| capped(fuzzing::queue_ops, d));
}

#[test]
fn replay_queue_corrupt() {
    replay_fuzz_corpus("queue_corrupt", |d| capped(fuzzing::queue_corrupt, d));
}

#[test]
fn replay_pipe_frames() {
    replay_fuzz_corpus("pipe_frames", |d| capped(fuzzing::pipe_frames, d));
}

#[test]
fn replay_bytes_records() {
    replay_fuzz_corpus("bytes_records", |d| capped(fuzzing::bytes_records, d));
}

#[test]
fn replay_pipe_open() {
    replay_fuzz_corpus("pipe_open", |d| capped(fuzzing::pipe_open, d));
}

/// The input of issue 21: a scribbled record announced 0x8000000002 bytes,
/// and `recv_bytes_ref` reserved them before a single byte had arrived
/// (AddressSanitizer stopped there; without it the reservation failed).
/// Now the `Vec` of a streamed message grows only as its bytes arrive.
#[test]
fn announced_length_allocates_nothing_ahead() {
    let path = fuzz_dir().join("regressions/pipe_frames/recv-bytes-ref-announced-0x8000000002");
    let data = std::fs::read(&path).expect("the regression input");
    capped(fuzzing::pipe_frames, &data);
}

/// The seeds themselves run clean (also when the corpus was minimised away
/// from them), each on both halves: as written (the `Queue<u64>`), and
/// with bit 6 of the capacity byte set (the `ByteQueue`).
#[test]
fn seeds_run_clean() {
    let both = |data: &[u8]| {
        let mut bytes = data.to_vec();
        if let Some(c) = bytes.first_mut() {
            *c |= 0x40;
        }
        [data.to_vec(), bytes]
    };
    for (_, data) in ops_seeds() {
        for d in both(&data) {
            fuzzing::queue_ops(&d);
        }
    }
    for (_, data) in corrupt_seeds() {
        for d in both(&data) {
            fuzzing::queue_corrupt(&d);
        }
    }
}

/// `queue_ops` seeds: capacity byte, then opcodes (see the entry point's docs).
fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "fill-drain-cap4",
            vec![2, 0, 0, 0, 0, 0, 5, 1, 1, 1, 1, 1, 5],
        ),
        ("laps-cap1", vec![0, 0, 1, 0, 1, 0, 4, 0, 0, 5, 1, 1]),
        ("batches-cap8", vec![3, 2, 7, 2, 7, 5, 3, 5, 3, 7, 5]),
        ("close-then-drain", vec![1, 0, 0, 6, 0, 0, 1, 1, 1, 7, 3, 2]),
        ("timed-get-empty", vec![5, 7, 0, 7, 1, 7]),
    ]
}

/// `queue_corrupt` seeds: capacity byte, then opcodes; `3, hi, lo, 8 bytes`
/// writes 8 bytes at ring offset `hi << 8 | lo`.
fn corrupt_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let w = |off: u16, v: u64| {
        let mut x = vec![3, (off >> 8) as u8, off as u8];
        x.extend_from_slice(&v.to_be_bytes());
        x
    };
    let mut seeds = Vec::new();
    // Header words (capacity, slot size, stride), indices, stamps.
    for (tag, off, v) in [
        ("capacity", 8u16, 3u64),
        ("stride", 24, 0),
        ("tail-far-ahead", 128, 1 << 50),
        ("tail-back", 128, 0),
        ("head-ahead", 256, 9),
        ("head-max", 256, u64::MAX),
        ("stamp0-garbage", 384, 0xdead_beef_dead_beef),
        ("stamp0-writing-pid0", 384, 1),
        ("stamp0-reading-dead", 384, (4_000_000 << 2) | 3),
        ("stamp1-far-ahead", 448, 1 << 60),
        ("closed", 32, 1),
        ("waiters", 40, u32::MAX as u64),
    ] {
        let mut d = vec![2, 0, 0, 1];
        d.extend(w(off, v));
        d.extend([0, 0, 1, 1, 1, 2, 0, 1]);
        seeds.push((tag, d));
    }
    seeds
}

/// Writes the seeds to `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand to regenerate the seeds"]
fn write_queue_seeds() {
    for (target, seeds) in [
        ("queue_ops", ops_seeds()),
        ("queue_corrupt", corrupt_seeds()),
    ] {
        write_fuzz_seeds(target, seeds);
    }
}
