//! Replays the corpora of the fuzz targets `queue_ops`, `queue_corrupt` and
//! `pipe_frames` (`fuzz/corpus/<target>/`, plus `fuzz/regressions/<target>/`)
//! on stable, through the same entry points as the cargo-fuzz targets.
//!
//! The seeds come from `write_queue_seeds`:
//! `cargo test -p shmproc-channel --test fuzz_replay -- --ignored write_queue_seeds`.
#![cfg(not(shmproc_loom))]

use shmproc_channel::__private as fuzzing;
use shmproc_testing::{fuzz_dir, replay_fuzz_corpus};

#[test]
fn replay_queue_ops() {
    replay_fuzz_corpus("queue_ops", fuzzing::queue_ops);
}

#[test]
fn replay_queue_corrupt() {
    replay_fuzz_corpus("queue_corrupt", fuzzing::queue_corrupt);
}

#[test]
fn replay_pipe_frames() {
    replay_fuzz_corpus("pipe_frames", fuzzing::pipe_frames);
}

/// The seeds themselves run clean (also when the corpus was minimised away from them).
#[test]
fn seeds_run_clean() {
    for (_, data) in ops_seeds() {
        fuzzing::queue_ops(&data);
    }
    for (_, data) in corrupt_seeds() {
        fuzzing::queue_corrupt(&data);
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
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create the corpus directory");
        for (name, data) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), data).expect("write a seed");
        }
    }
}
