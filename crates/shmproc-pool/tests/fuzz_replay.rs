//! Replays the corpus of the fuzz target `pool_frames`
//! (`fuzz/corpus/pool_frames/`, plus `fuzz/regressions/pool_frames/`) on
//! stable, through the same entry point as the cargo-fuzz target, and checks
//! that the seeds mean what they say.

use shmproc_pool::__private::pool_frames;
use shmproc_testing::{replay_fuzz_corpus, write_fuzz_seeds};

#[test]
fn replay_pool_frames() {
    replay_fuzz_corpus("pool_frames", pool_frames);
}

/// A results frame answering batch `id` (`items`: each chunk's item count):
/// `chunks` are `(status, offset, bytes)`, inline unless `fd_tail` (then
/// the blob rides in a segment, its length in the flags' next byte).
fn seed(id: u8, items: &[u8], chunks: &[(u64, u64, &[u8])], fd: bool) -> Vec<u8> {
    let n = items.len() as u8;
    let mut d = vec![id, n | if fd { 8 } else { 0 }];
    d.extend(items.iter().map(|&k| k - 1));
    let blob: Vec<u8> = chunks.iter().flat_map(|c| c.2.iter().copied()).collect();
    if fd {
        d.push(blob.len() as u8);
    }
    let mut words = vec![
        5,
        2 + 3 * chunks.len() as u64,
        blob.len() as u64,
        u64::from(fd),
    ];
    words.extend([u64::from(id), chunks.len() as u64]);
    for c in chunks {
        words.extend([c.0, c.1, c.2.len() as u64]);
    }
    for w in words {
        d.extend(w.to_le_bytes());
    }
    d.extend(blob);
    d
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ok-one", seed(7, &[3], &[(0, 0, b"abc")], false)),
        (
            "ok-panic-codec",
            seed(
                9,
                &[3, 4, 2],
                &[(0, 0, b"xyz"), (1, 2, b"boom"), (2, 0, b"bad")],
                false,
            ),
        ),
        (
            "ok-in-fd",
            seed(1, &[2, 2], &[(0, 0, b"0123"), (0, 0, b"45")], true),
        ),
        (
            "panic-offset-past-chunk",
            seed(3, &[2], &[(1, 2, b"p")], false),
        ),
        ("empty-batch", seed(0, &[], &[], false)),
    ]
}

/// Writes the seeds to `fuzz/corpus/pool_frames/seed-<name>` (run by hand).
#[test]
#[ignore = "writes into fuzz/corpus/pool_frames; run by hand to regenerate the seeds"]
fn write_pool_frames_seeds() {
    write_fuzz_seeds("pool_frames", seeds());
}

#[test]
fn seeds_run_clean() {
    for (_, data) in seeds() {
        pool_frames(&data);
    }
}

/// A results frame whose chunk lengths wrap around to the blob's length
/// (`u64::MAX` then 2 over a 1-byte blob): before the lengths were
/// checked one by one, their sum overflowed (a panic in debug builds, an
/// out-of-range slice in release).
#[test]
fn wrapping_chunk_lengths_are_an_error() {
    let mut d = vec![4, 2, 0, 0];
    let words = [5u64, 8, 1, 0, 4, 2, 0, 0, u64::MAX, 0, 0, 2];
    for w in words {
        d.extend(w.to_le_bytes());
    }
    d.push(b'x');
    pool_frames(&d);
}
