//! Entry points shared by the fuzz targets in `fuzz/` and the tests that
//! replay their corpora on stable. Not part of the public API.

#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;

use shmproc_shm::DATA_OFFSET;

use crate::bytes::ByteQueue;
use crate::error::{GetError, PutBytesError, PutError};
use crate::queue::Queue;
use crate::ring::RING_HEADER_LEN;

/// A little reader over the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for _ in 0..8 {
            v = (v << 8) | u64::from(self.byte().unwrap_or(0));
        }
        v
    }
}

/// `queue_ops`: a sequence of operations on an anonymous `Queue<u64>`,
/// checked against a `VecDeque` model (one process, so the queue must be
/// exactly a FIFO of capacity `cap`).
///
/// Input: capacity byte (`1 << (b % 6)`), then opcodes (`b % 8`): try_put,
/// try_get, put_many(n), get_many(n), zero-copy get, qsize/empty/full
/// checks, close, timed get on an empty queue.
pub fn queue_ops(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 6);
    let q = Queue::<u64>::new(cap).expect("create an anonymous queue");
    assert_eq!(q.capacity(), cap);
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut next = 0u64;
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                next += 1;
                let r = q.try_put(next);
                match r {
                    Ok(()) => {
                        assert!(!closed && model.len() < cap);
                        model.push_back(next);
                    }
                    Err(PutError::Full(v)) => assert!(v == next && model.len() == cap),
                    Err(PutError::Closed(_)) => assert!(closed),
                    Err(e) => panic!("try_put: {e:?}"),
                }
            }
            1 => match q.try_get() {
                Ok(v) => assert_eq!(Some(v), model.pop_front()),
                Err(GetError::Empty) => assert!(model.is_empty() && !closed),
                Err(GetError::Closed) => assert!(model.is_empty() && closed),
                Err(e) => panic!("try_get: {e:?}"),
            },
            2 => {
                let n = usize::from(input.byte().unwrap_or(0) % 8);
                let vals: Vec<u64> = (0..n as u64).map(|i| next + 1 + i).collect();
                next += n as u64;
                match q.put_many(&vals) {
                    Ok(k) => {
                        assert!(!closed || k == 0);
                        assert_eq!(k, n.min(cap - model.len()));
                        model.extend(vals.iter().take(k));
                    }
                    Err(PutError::Closed(())) => assert!(closed && n > 0),
                    Err(e) => panic!("put_many: {e:?}"),
                }
            }
            3 => {
                let n = usize::from(input.byte().unwrap_or(0) % 8);
                let mut out = Vec::new();
                match q.get_many(&mut out, n) {
                    Ok(k) => {
                        assert_eq!(k, n.min(model.len()));
                        let want: Vec<u64> = model.drain(..k).collect();
                        assert_eq!(out, want);
                    }
                    Err(GetError::Closed) => assert!(closed && model.is_empty()),
                    Err(e) => panic!("get_many: {e:?}"),
                }
            }
            4 => match q.try_get_ref() {
                Ok(g) => assert_eq!(Some(*g), model.pop_front()),
                Err(GetError::Empty) => assert!(model.is_empty() && !closed),
                Err(GetError::Closed) => assert!(model.is_empty() && closed),
                Err(e) => panic!("try_get_ref: {e:?}"),
            },
            5 => {
                assert_eq!(q.qsize(), model.len());
                assert_eq!(q.empty(), model.is_empty());
                assert_eq!(q.full(), model.len() == cap);
            }
            6 => {
                if input.byte().unwrap_or(0) % 4 == 0 {
                    q.close();
                    closed = true;
                }
            }
            _ => {
                if model.is_empty() {
                    let r = q.get_timeout(std::time::Duration::ZERO);
                    let want = if closed {
                        GetError::Closed
                    } else {
                        GetError::Timeout
                    };
                    assert_eq!(r, Err(want));
                }
            }
        }
    }
    assert_eq!(q.skipped_writes(), 0);
    assert_eq!(q.abandoned_reads(), 0);
    bytes_ops(data);
}

/// The message of the `bytes_ops` model: `len` bytes derived from `tag`.
fn message(len: usize, tag: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(tag) as u8)
        .collect()
}

/// The bytes half of `queue_ops`, run over the same input after the
/// `Queue<u64>` half (so older corpus entries stay meaningful): a
/// `ByteQueue` with 64-byte slots against a `VecDeque<Vec<u8>>` model.
/// Lengths are `3 * byte` (up to 765: inline and side segments).
///
/// Opcodes (`b % 8`): put, try_put, reserve+commit, reserve+drop (its
/// cancelled record holds a slot until a consumer skips it),
/// try_get_bytes, try_get_bytes_into, try_get_bytes_ref, qsize/close.
fn bytes_ops(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = ByteQueue::new(cap, 64).expect("create an anonymous byte queue");
    // `None`: a dropped reservation, a cancelled record that holds its slot
    // until a consumer skips it.
    let mut model: VecDeque<Option<Vec<u8>>> = VecDeque::new();
    let mut closed = false;
    let mut tag = 0u64;
    let mut buf = Vec::new();
    while let Some(op) = input.byte() {
        tag += 1;
        let len = 3 * usize::from(input.byte().unwrap_or(0));
        let m = message(len, tag);
        match op % 8 {
            0..=3 => {
                let r = match op % 8 {
                    0 => q.put_bytes_timeout(&m, std::time::Duration::ZERO),
                    1 => q.try_put_bytes(&m),
                    k => q.try_reserve(len).map(|mut w| {
                        w.copy_from_slice(&m);
                        if k == 2 {
                            w.commit().expect("commit");
                        }
                    }),
                };
                match r {
                    Ok(()) => {
                        assert!(!closed && model.len() < cap);
                        model.push_back((op % 8 != 3).then_some(m));
                    }
                    Err(PutBytesError::Full | PutBytesError::Timeout) => {
                        assert!(!closed && model.len() == cap);
                    }
                    Err(PutBytesError::Closed) => assert!(closed),
                    Err(e) => panic!("put: {e:?}"),
                }
            }
            4..=6 => {
                let r = match op % 8 {
                    4 => q.try_get_bytes(),
                    5 => q.try_get_bytes_into(&mut buf).map(|()| buf.clone()),
                    _ => q.try_get_bytes_ref().map(|g| g.to_vec()),
                };
                // Consumers skip cancelled records.
                while model.front().is_some_and(Option::is_none) {
                    model.pop_front();
                }
                match r {
                    Ok(v) => assert_eq!(Some(Some(v)), model.pop_front()),
                    Err(GetError::Empty) => assert!(model.is_empty() && !closed),
                    Err(GetError::Closed) => assert!(model.is_empty() && closed),
                    Err(e) => panic!("get: {e:?}"),
                }
            }
            _ => {
                assert!(q.qsize() >= model.len());
                if len % 16 == 3 {
                    q.close();
                    closed = true;
                }
            }
        }
    }
    // Drain, so no side segment outlives the queue.
    for m in model.into_iter().flatten() {
        assert_eq!(q.try_get_bytes().expect("the model has one"), m);
    }
    assert!(q.try_get_bytes().is_err());
    assert_eq!(q.skipped_writes(), 0);
}

/// `queue_corrupt`: operations on an anonymous `Queue<u64>` interleaved with
/// random writes into the ring header, the indices and the slots (through
/// the segment's fd, as another process would). Every operation must return
/// (a value or an error); never panic, hang or access out of bounds.
///
/// Input: capacity byte, then opcodes: `b % 4 == 3` writes 8 bytes (next)
/// at an offset (next 2 bytes, modulo the ring's length) into the ring;
/// otherwise try_put / try_get / zero-copy get.
pub fn queue_corrupt(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = Queue::<u64>::new(cap).expect("create an anonymous queue");
    let file = File::from(
        q.segment()
            .fd()
            .try_clone_to_owned()
            .expect("dup the segment fd"),
    );
    let ring_len = q.segment().data_len() as u64;
    let mut n = 0u64;
    while let Some(op) = input.byte() {
        match op % 4 {
            0 => {
                n += 1;
                let _ = q.try_put(n);
            }
            1 => {
                let _ = q.try_get();
            }
            2 => {
                if let Ok(g) = q.try_get_ref() {
                    let _ = *g;
                }
                assert!(q.qsize() <= cap);
                let _ = (q.empty(), q.full());
            }
            _ => {
                let hi = u64::from(input.byte().unwrap_or(0));
                let lo = u64::from(input.byte().unwrap_or(0));
                // Mostly the header lines and the first slots.
                let off = ((hi << 8) | lo) % ring_len.max(1);
                let bytes = input.u64().to_le_bytes();
                let at = DATA_OFFSET as u64 + off;
                let end = (DATA_OFFSET as u64 + ring_len).min(at + 8);
                let len = (end - at) as usize;
                let _ = file.write_at(bytes.get(..len).unwrap_or(&[]), at);
            }
        }
    }
    // Whatever state it is in, a fresh opener validates the header (the
    // geometry words may have been scribbled) and operations still return.
    let fd = q.segment().fd().try_clone_to_owned().expect("dup");
    if let Ok(q2) = Queue::<u64>::open_fd(fd) {
        let _ = q2.try_put(1);
        let _ = q2.try_get();
    }
    let _ = RING_HEADER_LEN;
    bytes_corrupt(data);
}

/// The bytes half of `queue_corrupt`, over the same input: a `ByteQueue`
/// (64-byte slots, inline messages only, so a scribbled record cannot leak
/// a side segment) whose record headers, lengths, indices and stamps are
/// scribbled between operations. Errors only.
fn bytes_corrupt(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = ByteQueue::new(cap, 64).expect("create an anonymous byte queue");
    let file = File::from(
        q.segment()
            .fd()
            .try_clone_to_owned()
            .expect("dup the segment fd"),
    );
    let ring_len = q.segment().data_len() as u64;
    let mut buf = Vec::new();
    while let Some(op) = input.byte() {
        match op % 4 {
            0 => {
                let len = usize::from(input.byte().unwrap_or(0) % 65);
                if let Ok(mut w) = q.try_reserve(len) {
                    w.fill(op);
                    if op & 4 == 0 {
                        let _ = w.commit();
                    }
                }
            }
            1 => {
                let _ = q.try_get_bytes_into(&mut buf);
                assert!(buf.len() <= q.slot_size());
            }
            2 => {
                if let Ok(g) = q.try_get_bytes_ref() {
                    assert!(g.len() <= q.slot_size());
                }
                assert!(q.qsize() <= cap);
            }
            _ => {
                let hi = u64::from(input.byte().unwrap_or(0));
                let lo = u64::from(input.byte().unwrap_or(0));
                let off = ((hi << 8) | lo) % ring_len.max(1);
                let bytes = input.u64().to_le_bytes();
                let at = DATA_OFFSET as u64 + off;
                let end = (DATA_OFFSET as u64 + ring_len).min(at + 8);
                let len = (end - at) as usize;
                let _ = file.write_at(bytes.get(..len).unwrap_or(&[]), at);
            }
        }
    }
    let fd = q.segment().fd().try_clone_to_owned().expect("dup");
    if let Ok(q2) = ByteQueue::open_fd(fd) {
        let _ = q2.try_put_bytes(b"x");
        let _ = q2.try_get_bytes();
    }
}
