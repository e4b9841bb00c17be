//! Entry points shared by the fuzz targets in `fuzz/` and the tests that
//! replay their corpora on stable. Not part of the public API.

#![deny(clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;

use shmproc_shm::DATA_OFFSET;

use crate::error::{GetError, PutError};
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
}
