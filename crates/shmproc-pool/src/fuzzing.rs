//! The body of the `pool_frames` fuzz target (`fuzz/`), reached through
//! [`__private`](crate::__private); the same code runs on stable when
//! `tests/fuzz_replay.rs` replays its corpus. Not part of the public API.

use shmproc_shm::ShmSlice;

use crate::handler::check_results;
use crate::wire::{MAX_MSG, parse_frame};
use crate::worker::TASK_PANIC;

/// `pool_frames`: the parent's side of a worker's results frame: any bytes
/// as the received message (with, or without, a blob segment attached),
/// parsed with `wire::parse_frame`, then checked against a batch with
/// `handler::check_results`. Either is an error, never a panic; what passes
/// is consistent with the batch and backed by the frame's bytes.
///
/// Input: the batch's id byte, a flags byte (`% 8`: the batch's chunk
/// count; bit 3: attach a segment holding the message's last `b` bytes, `b`
/// the next byte), the item count of each chunk (one byte each, `% 8 + 1`),
/// then the message (at most `MAX_MSG` bytes, as the socket delivers).
pub(crate) fn pool_frames(data: &[u8]) {
    let [id, flags, rest @ ..] = data else {
        return;
    };
    let n = usize::from(flags % 8);
    let Some((items, rest)) = rest.split_at_checked(n) else {
        return;
    };
    let items: Vec<usize> = items.iter().map(|&b| usize::from(b % 8) + 1).collect();
    let (msg, fds) = match (flags & 8 != 0, rest.split_first()) {
        (true, Some((&b, msg))) => {
            let k = msg.len().saturating_sub(usize::from(b));
            let (msg, blob) = msg.split_at(k);
            let Ok(seg) = ShmSlice::from_slice(blob) else {
                return; // no memory for the segment (or an empty one refused)
            };
            let fd = seg.segment().fd().try_clone_to_owned().expect("dup");
            (msg, vec![fd])
        }
        _ => (rest, Vec::new()),
    };
    let Some(msg) = msg.get(..msg.len().min(MAX_MSG)) else {
        return;
    };
    let Ok(frame) = parse_frame(msg, fds) else {
        return;
    };
    let id = u64::from(*id);
    let items_of = |k: usize| items.get(k).copied().unwrap_or(0);
    if let Ok(results) = check_results(&frame, id, n, items_of) {
        assert_eq!(results.len(), n);
        let total: usize = results.iter().map(|r| r.bytes.len()).sum();
        assert_eq!(total, frame.blob.len());
        for (k, r) in results.iter().enumerate() {
            if r.status == TASK_PANIC {
                assert!(r.offset < items_of(k));
            }
        }
    }
}
