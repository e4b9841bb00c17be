//! Entry points shared by the fuzz targets in `fuzz/` and the tests that
//! replay their corpora on stable. Not part of the public API.

#![deny(clippy::indexing_slicing)]

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;

use shmproc_shm::sync::real::{AtomicU8, Ordering};
use shmproc_shm::{DATA_OFFSET, Offset, Segment};

use crate::bytes::ByteQueue;
use crate::error::{
    GetError, GetTimeoutError, PutBytesTimeoutError, PutError, TryGetError, TryPutBytesError,
    TryPutError,
};
use crate::queue::Queue;
use crate::ring::RING_HEADER_LEN;
use crate::storage::SegmentStorage;

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

/// An anonymous segment kept across fuzz inputs: a copy of its bytes right
/// after creation, and the handle (or the handle's parts) that maps it,
/// parked between inputs.
struct Kept {
    fresh: Vec<u8>,
    /// `None` while an input has it out (or after an input panicked with
    /// it: the next one builds the segment anew).
    parked: Option<Box<dyn Any>>,
}

/// The key of a kept segment: (structure, shape).
type Key = (&'static str, u64);

thread_local! {
    /// One kept segment per (structure, shape).
    static KEPT: RefCell<HashMap<Key, Kept>> = RefCell::new(HashMap::new());
}

/// The parts kept for `key` (made by `create` the first time), with the
/// segment's bytes written back to what they were right after `create`:
/// the same bytes as a new segment's, without the `memfd_create`,
/// `ftruncate`, `mmap`, page faults and `munmap` that made each input cost
/// a millisecond. Only what maps the segment and what was validated from
/// its fresh bytes (geometry) is kept: the caller builds a new handle on
/// the parts for each input ([`Reused`]), so no other process-local state
/// survives an input. Give the parts back with [`park`].
fn take<T: Any>(key: Key, create: impl FnOnce() -> T, seg_of: impl Fn(&T) -> &Segment) -> T {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if let Some(k) = kept.get_mut(&key) {
            if let Some(parts) = k.parked.take() {
                let parts = *parts.downcast::<T>().expect("the kept parts' type");
                reset(seg_of(&parts), &k.fresh);
                return parts;
            }
        }
        let parts = create();
        let file = File::from(
            seg_of(&parts)
                .fd()
                .try_clone_to_owned()
                .expect("dup the segment fd"),
        );
        let len = file.metadata().expect("fstat the segment").len();
        let mut fresh = vec![0u8; usize::try_from(len).expect("segment length")];
        file.read_exact_at(&mut fresh, 0)
            .expect("read the fresh segment");
        kept.insert(
            key,
            Kept {
                fresh,
                parked: None,
            },
        );
        parts
    })
}

/// Writes `fresh` over the start of `seg`'s mapping: one copy, where a
/// `pwrite` on its fd cost a system call per input.
#[allow(unsafe_code)] // One copy into this thread's own mapping (SAFETY below).
fn reset(seg: &Segment, fresh: &[u8]) {
    let n = fresh.len().min(seg.len());
    // SAFETY: `seg.as_ptr()` starts a live read-write mapping of `seg.len()`
    // bytes (`n` at most are written), which `fresh`, a heap buffer, does
    // not overlap. The segment is an anonymous one that [`take`] created in
    // this thread, mapped by no other process or thread, and no handle on
    // it runs while its parts are parked: nothing accesses these bytes
    // during the copy, and every later access (atomics, through the
    // handle built next) comes after it in this thread.
    unsafe { std::ptr::copy_nonoverlapping(fresh.as_ptr(), seg.as_ptr(), n) };
}

/// Parks the parts of `key` for the next input ([`take`]).
fn park<T: Any>(key: Key, parts: T) {
    KEPT.with(|kept| {
        if let Some(k) = kept.borrow_mut().get_mut(&key) {
            k.parked = Some(Box::new(parts));
        }
    });
}

/// A handle that can be taken apart into what [`take`] keeps.
trait Keep: Sized {
    type Parts: Any;
    fn into_parts(self) -> Self::Parts;
    fn from_parts(parts: Self::Parts) -> Self;
}

impl Keep for Queue<u64> {
    type Parts = SegmentStorage;
    fn into_parts(self) -> SegmentStorage {
        self.into_storage()
    }
    fn from_parts(storage: SegmentStorage) -> Self {
        Queue::from_storage(storage, shmproc_shm::SegmentKind::QUEUE)
    }
}

impl Keep for ByteQueue {
    type Parts = SegmentStorage;
    fn into_parts(self) -> SegmentStorage {
        self.into_storage()
    }
    fn from_parts(storage: SegmentStorage) -> Self {
        ByteQueue::from_storage(storage)
    }
}

/// A handle built for one input on a kept segment; its parts are parked
/// again when it drops.
struct Reused<H: Keep> {
    key: Key,
    h: Option<H>,
}

impl<H: Keep> Reused<H> {
    fn new(key: Key, create: impl FnOnce() -> H) -> Self {
        let parts = take(
            key,
            || create().into_parts(),
            |s: &H::Parts| {
                (s as &dyn Any)
                    .downcast_ref::<SegmentStorage>()
                    .expect("a ring storage")
                    .segment()
            },
        );
        Self {
            key,
            h: Some(H::from_parts(parts)),
        }
    }
}

impl<H: Keep> std::ops::Deref for Reused<H> {
    type Target = H;
    fn deref(&self) -> &H {
        self.h.as_ref().expect("the handle, until drop")
    }
}

impl<H: Keep> Drop for Reused<H> {
    fn drop(&mut self) {
        if let Some(h) = self.h.take() {
            park(self.key, h.into_parts());
        }
    }
}

/// A `Queue<u64>` of capacity `cap` on a kept segment, as new.
fn fresh_queue(cap: usize) -> Reused<Queue<u64>> {
    Reused::new(("queue", cap as u64), || {
        Queue::<u64>::new(cap).expect("create an anonymous queue")
    })
}

/// A `ByteQueue` of `cap` slots of `slot` bytes on a kept segment, as new.
fn fresh_byte_queue(cap: usize, slot: usize) -> Reused<ByteQueue> {
    Reused::new(("bytes", (cap as u64) << 32 | slot as u64), || {
        ByteQueue::new(cap, slot).expect("create an anonymous byte queue")
    })
}

/// Byte access to a segment's payload through this process's mapping, as
/// another process writes it (atomic bytes, bounds-checked: bytes outside
/// the payload are skipped). Offsets are from the start of the segment.
struct Scribe<'a>(&'a [AtomicU8]);

impl<'a> Scribe<'a> {
    /// The payload of `seg` as atomic bytes, resolved once (a checked
    /// `Segment::get` per byte was a few percent of a pipe input).
    #[allow(unsafe_code)] // One reference to the mapping's atomics (SAFETY below).
    fn new(seg: &'a Segment) -> Self {
        let n = seg.len().saturating_sub(DATA_OFFSET);
        let p = seg
            .resolve_slice(Offset::<AtomicU8>::new(DATA_OFFSET as u64), n)
            .expect("the payload resolves");
        // SAFETY: `resolve_slice` checked that the `n` bytes lie inside the
        // mapping, which lives as long as `seg` (`'a`); `AtomicU8` is valid
        // for every bit pattern and is only accessed atomically, so shared
        // references to it are sound whoever else writes the bytes (as
        // `Segment::get` argues for one value).
        Scribe(unsafe { p.as_ref() })
    }

    fn byte(&self, at: u64) -> Option<&AtomicU8> {
        let i = at.checked_sub(DATA_OFFSET as u64)?;
        self.0.get(usize::try_from(i).ok()?)
    }
    fn read(&self, at: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self
                .byte(at.wrapping_add(i as u64))
                .map_or(0, |a| a.load(Ordering::Relaxed));
        }
    }
    fn read8(&self, at: u64) -> u64 {
        let mut b = [0u8; 8];
        self.read(at, &mut b);
        u64::from_le_bytes(b)
    }
    fn write(&self, at: u64, bytes: &[u8]) {
        for (i, &v) in bytes.iter().enumerate() {
            if let Some(a) = self.byte(at.wrapping_add(i as u64)) {
                a.store(v, Ordering::Relaxed);
            }
        }
    }
}

/// The bit of the first byte of a `queue_ops` or `queue_corrupt` input that
/// picks its half: clear, the `Queue<u64>`; set, the `ByteQueue`. One
/// structure per input, not both in turn: an input then costs half the
/// operations, half the setup and half libFuzzer's feature collection
/// (the code it touches), and each half keeps every capacity (and the
/// byte half its side-segment range) among the bytes that select it.
const BYTES_HALF: u8 = 0x40;

/// `queue_ops`: a sequence of operations on an anonymous `Queue<u64>`,
/// checked against a `VecDeque` model (one process, so the queue must be
/// exactly a FIFO of capacity `cap`); or, when the first byte has
/// `BYTES_HALF` (0x40) set, the same on a `ByteQueue` (`bytes_ops`).
///
/// Input: capacity byte (`1 << (b % 6)`), then opcodes (`b % 8`): try_put,
/// try_get, put_many(n), get_many(n), zero-copy get, qsize/empty/full
/// checks, close, timed get on an empty queue.
///
/// A close past the second one is not made again (it is recorded in the
/// model as a close): the same call on the same state, two futex wakes
/// each, which some inputs repeated dozens of times.
pub fn queue_ops(data: &[u8]) {
    if data.first().is_some_and(|&c| c & BYTES_HALF != 0) {
        bytes_ops(data);
        return;
    }
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 6);
    let q = fresh_queue(cap);
    assert_eq!(q.capacity(), cap);
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut closes = 0u32;
    let mut next = 0u64;
    // Buffers reused by every batch of the input: an ASan allocation
    // records its stack (a tenth of an input's time went to that).
    let mut vals: Vec<u64> = Vec::with_capacity(8);
    let mut out: Vec<u64> = Vec::with_capacity(8);
    let mut want: Vec<u64> = Vec::with_capacity(8);
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
                    Err(TryPutError::Full(v)) => assert!(v == next && model.len() == cap),
                    Err(TryPutError::Closed(_)) => assert!(closed),
                    Err(e) => panic!("try_put: {e:?}"),
                }
            }
            1 => match q.try_get() {
                Ok(v) => assert_eq!(Some(v), model.pop_front()),
                Err(TryGetError::Empty) => assert!(model.is_empty() && !closed),
                Err(TryGetError::Closed) => assert!(model.is_empty() && closed),
                Err(e) => panic!("try_get: {e:?}"),
            },
            2 => {
                let n = usize::from(input.byte().unwrap_or(0) % 8);
                vals.clear();
                vals.extend((0..n as u64).map(|i| next + 1 + i));
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
                out.clear();
                match q.get_many(&mut out, n) {
                    Ok(k) => {
                        assert_eq!(k, n.min(model.len()));
                        want.clear();
                        want.extend(model.drain(..k));
                        assert_eq!(out, want);
                    }
                    Err(GetError::Closed) => assert!(closed && model.is_empty()),
                    Err(e) => panic!("get_many: {e:?}"),
                }
            }
            4 => match q.try_get_ref() {
                Ok(g) => assert_eq!(Some(*g), model.pop_front()),
                Err(TryGetError::Empty) => assert!(model.is_empty() && !closed),
                Err(TryGetError::Closed) => assert!(model.is_empty() && closed),
                Err(e) => panic!("try_get_ref: {e:?}"),
            },
            5 => {
                assert_eq!(q.qsize(), model.len());
                assert_eq!(q.empty(), model.is_empty());
                assert_eq!(q.full(), model.len() == cap);
            }
            6 => {
                if input.byte().unwrap_or(0) % 4 == 0 {
                    close_capped(|| q.close(), &mut closes, &mut closed);
                }
            }
            _ => {
                if model.is_empty() {
                    let r = q.get_timeout(std::time::Duration::ZERO);
                    let want = if closed {
                        GetTimeoutError::Closed
                    } else {
                        GetTimeoutError::Timeout
                    };
                    assert_eq!(r, Err(want));
                }
            }
        }
    }
    assert_eq!(q.skipped_writes(), 0);
    assert_eq!(q.abandoned_reads(), 0);
}

/// A close as the models record it: made the first two times (the first,
/// and one repeat on a closed queue), then only recorded. A repeat makes
/// the same call on the same state (two futex wakes each), which some
/// inputs asked for dozens of times.
fn close_capped(close: impl FnOnce(), closes: &mut u32, closed: &mut bool) {
    if *closes < 2 {
        close();
        *closes += 1;
    }
    *closed = true;
}

/// Drains `q` against `model` (cancelled records skipped): the model and
/// the queue end empty together, every message checked, none skipped.
fn drain_checked(q: &ByteQueue, mut model: VecDeque<Option<(usize, u64)>>) {
    model.retain(Option::is_some);
    while !model.is_empty() {
        let v = q.try_get_bytes().expect("the model has one");
        check_front(&mut model, &v);
    }
    assert!(q.try_get_bytes().is_err());
    assert_eq!(q.skipped_writes(), 0);
}

/// The message of the `bytes_ops` model: `len` bytes derived from `tag`.
fn message(len: usize, tag: u64) -> Vec<u8> {
    let mut m = Vec::new();
    message_into(&mut m, len, tag);
    m
}

/// [`message`] into `buf` (its allocation reused).
fn message_into(buf: &mut Vec<u8>, len: usize, tag: u64) {
    buf.clear();
    buf.extend((0..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(tag) as u8));
}

/// Pops the model's next message (`(len, tag)`: [`message`]`(len, tag)`)
/// and checks that `got` is it, byte for byte.
fn check_front(model: &mut VecDeque<Option<(usize, u64)>>, got: &[u8]) {
    match model.pop_front() {
        Some(Some((len, tag))) => assert!(
            got.len() == len
                && got
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i as u64).wrapping_mul(31).wrapping_add(tag) as u8),
            "got {got:?}, the model holds message({len}, {tag})"
        ),
        other => panic!("got {} bytes, the model holds {other:?}", got.len()),
    }
}

/// The bytes half of `queue_ops` (first byte with [`BYTES_HALF`] set): a
/// `ByteQueue` with 64-byte slots against a `VecDeque<Vec<u8>>` model.
/// Lengths are `byte % 65`: inline messages only. A side segment costs a
/// named segment's creation, mapping, opening and unlink (about seventeen
/// system calls, several times the rest of an input), so side messages and
/// their model check live in `bytes_records` (its model mode), where that
/// cost is the point, and this target keeps the speed of the ring's own
/// protocol. A close past the second is recorded, not made (as in
/// `queue_ops`).
///
/// Opcodes (`b % 8`): put, try_put, reserve+commit, reserve+drop (its
/// cancelled record holds a slot until a consumer skips it),
/// try_get_bytes, try_get_bytes_into, try_get_bytes_ref, qsize/close.
fn bytes_ops(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = fresh_byte_queue(cap, 64);
    // `Some((len, tag))`: [`message`]`(len, tag)` (the model keeps the
    // recipe, not a copy: an ASan allocation records its stack); `None`: a
    // dropped reservation, a cancelled record that holds its slot until a
    // consumer skips it.
    let mut model: VecDeque<Option<(usize, u64)>> = VecDeque::new();
    let mut m = Vec::new();
    let mut closed = false;
    let mut tag = 0u64;
    let mut buf = Vec::new();
    let mut closes = 0u32;
    while let Some(op) = input.byte() {
        tag += 1;
        let len = usize::from(input.byte().unwrap_or(0)) % 65;
        match op % 8 {
            0..=3 => {
                message_into(&mut m, len, tag);
                let r = match op % 8 {
                    0 => q
                        .put_bytes_timeout(&m, std::time::Duration::ZERO)
                        .map_err(|e| match e {
                            PutBytesTimeoutError::Timeout => TryPutBytesError::Full,
                            PutBytesTimeoutError::Closed => TryPutBytesError::Closed,
                            e => panic!("put_bytes_timeout: {e:?}"),
                        }),
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
                        model.push_back((op % 8 != 3).then_some((len, tag)));
                    }
                    Err(TryPutBytesError::Full) => {
                        assert!(!closed && model.len() == cap);
                    }
                    Err(TryPutBytesError::Closed) => assert!(closed),
                    Err(e) => panic!("put: {e:?}"),
                }
            }
            4..=6 => {
                // Consumers skip cancelled records.
                while model.front().is_some_and(Option::is_none) {
                    model.pop_front();
                }
                // Each form compared with the model where it returns its
                // bytes (no copy of them: ASan allocations are costly).
                let r = match op % 8 {
                    4 => q.try_get_bytes().map(|v| check_front(&mut model, &v)),
                    5 => q
                        .try_get_bytes_into_vec(&mut buf)
                        .map(|()| check_front(&mut model, &buf)),
                    _ => q.try_get_bytes_ref().map(|g| check_front(&mut model, &g)),
                };
                match r {
                    Ok(()) => {}
                    Err(TryGetError::Empty) => assert!(model.is_empty() && !closed),
                    Err(TryGetError::Closed) => assert!(model.is_empty() && closed),
                    Err(e) => panic!("get: {e:?}"),
                }
            }
            _ => {
                assert!(q.qsize() >= model.len());
                if len % 16 == 3 {
                    close_capped(|| q.close(), &mut closes, &mut closed);
                }
            }
        }
    }
    drain_checked(&q, model);
}

/// `queue_corrupt`: operations on an anonymous `Queue<u64>` interleaved with
/// random writes into the ring header, the indices and the slots (through
/// the segment's fd, as another process would). Every operation must return
/// (a value or an error); never panic, hang or access out of bounds.
///
/// Input: capacity byte (with `BYTES_HALF` (0x40) set: the `ByteQueue`
/// half, `bytes_corrupt`), then opcodes: `b % 4 == 3` writes 8 bytes (next)
/// at an offset (next 2 bytes, modulo the ring's length) into the ring;
/// otherwise try_put / try_get / zero-copy get.
pub fn queue_corrupt(data: &[u8]) {
    if data.first().is_some_and(|&c| c & BYTES_HALF != 0) {
        bytes_corrupt(data);
        return;
    }
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = fresh_queue(cap);
    let scribe = Scribe::new(q.segment());
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
                scribe.write(at, bytes.get(..len).unwrap_or(&[]));
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

/// The bytes half of `queue_corrupt` (first byte with [`BYTES_HALF`] set): a `ByteQueue`
/// (64-byte slots, inline messages only, so a scribbled record cannot leak
/// a side segment) whose record headers, lengths, indices and stamps are
/// scribbled between operations. Errors only.
fn bytes_corrupt(data: &[u8]) {
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 4);
    let q = fresh_byte_queue(cap, 64);
    let scribe = Scribe::new(q.segment());
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
                scribe.write(at, bytes.get(..len).unwrap_or(&[]));
            }
        }
    }
    let fd = q.segment().fd().try_clone_to_owned().expect("dup");
    if let Ok(q2) = ByteQueue::open_fd(fd) {
        let _ = q2.try_put_bytes(b"x");
        let _ = q2.try_get_bytes();
    }
}

/// `pipe_frames`: the framing of a [`Pipe`](crate::Pipe) with a
/// corrupted ring. One process holds both ends of an anonymous pipe (4 KiB
/// rings); the writing end sends messages, bytes from the input are
/// scribbled into the meta line, the indices, the record headers and the
/// payload between operations (through the segment's fd, as another process
/// would), then the writer is closed and the reader receives until EOF or an
/// error. Every call must return; never a panic, a hang or an out-of-bounds
/// access.
///
/// Input: a config byte (bit 0: simplex, bit 1: which end writes when
/// duplex), then opcodes. While the writer is open (`b % 8`): send_bytes
/// (length `16 * byte`; `try_send_bytes` when bit 4 is set), send a `u64`,
/// reserve (commit or drop), poll with a zero timeout, scribble 8 bytes,
/// add a delta to 8 bytes, forge a record header near the head, close the
/// writer. Once closed: recv_bytes_max (bit 3: `try_recv_bytes_max`),
/// recv_bytes_into (bit 3: `recv_bytes_into_timeout(0)`), recv `u64`,
/// recv_bytes_ref, poll/readable, and the
/// same three scribbles. Then a bounded drain, and a second reader opened
/// on the segment's fd drains too.
///
/// Bounded by construction (pipe.rs: a reader waits only for a live writer
/// that has not closed): nothing is received while the writer is open
/// except `poll` with a zero timeout; a send runs only when the harness,
/// which knows the writer's tail and reads the head, sees it cannot wait
/// for space (the head is then never scribbled, so it moves only by the
/// reader); after the close, scribbles spare the writer's `closed` word.
pub fn pipe_frames(data: &[u8]) {
    use crate::pipe::{Connection, Pipe, PipeEnd, PipeMode};
    use std::time::Duration;

    // Layout of pipe.rs (payload offsets), restated here on purpose: the
    // harness plays "another process" and writes by offset.
    const CAP: u64 = 4096;
    const LINE: u64 = 64;
    const META_ENDS: u64 = 16;
    const CTL: [u64; 2] = [128, 512];
    const DATA0: u64 = 4096 - DATA_OFFSET as u64;
    const TAG_MSG: u32 = 0x4753_4d50;
    const TAG_PAD: u32 = 0x4441_5050;
    const PAYLOAD_LEN: u64 = DATA0 + 2 * CAP;

    /// The payload offset of an 8-byte scribble (`r`: the reader's ring).
    fn pick_offset(input: &mut Input<'_>, r: u64, head: u64) -> u64 {
        let sel = input.byte().unwrap_or(0);
        let x = u64::from(input.byte().unwrap_or(0)) << 8 | u64::from(input.byte().unwrap_or(0));
        let ring_data = DATA0 + CAP * r;
        match sel % 4 {
            // Control words: capacity/mode, the end records, each ring's
            // tail, head, wake and waiters/armed words.
            0 => {
                let words: [u64; 14] = [
                    0,
                    8,
                    META_ENDS,
                    META_ENDS + 8,
                    META_ENDS + 16,
                    META_ENDS + 24,
                    CTL[0],
                    CTL[0] + 128,
                    CTL[0] + 256,
                    CTL[0] + 264,
                    CTL[1],
                    CTL[1] + 128,
                    CTL[1] + 256,
                    CTL[1] + 264,
                ];
                words.get((x % 14) as usize).copied().unwrap_or(0)
            }
            // A record header field near the reader's head.
            1 => ring_data + (head.wrapping_add((x >> 1) * LINE) & (CAP - 1)) + (x & 1) * 8,
            // Anywhere in the reader's ring.
            2 => ring_data + x % CAP,
            _ => x % PAYLOAD_LEN,
        }
    }

    let mut input = Input(data);
    let Some(config) = input.byte() else { return };
    let (mode, w_end) = if config & 1 != 0 {
        (PipeMode::Simplex, 1usize)
    } else {
        (PipeMode::Duplex, usize::from((config >> 1) & 1))
    };
    let r_end = 1 - w_end;
    // The kept pipe's creating ends stay parked; each input opens its own
    // ends on the same mapping (`attach` validates the meta line as
    // `open_fd` does; the segment header is never scribbled here).
    let key = ("pipe", u64::from(config & 1));
    let kept = take(
        key,
        || {
            Pipe::options(mode, CAP as usize)
                .build()
                .expect("create an anonymous pipe")
        },
        |(a, _): &(Connection, Connection)| a.segment(),
    );
    let pick = |end: usize| {
        if end == 0 {
            PipeEnd::First
        } else {
            PipeEnd::Second
        }
    };
    let opened = (
        kept.0.attach_same(pick(r_end)),
        kept.0.attach_same(pick(w_end)),
    );
    let (mut r, mut w) = match opened {
        (Ok(r), Ok(w)) => (r, w),
        _ => panic!("open the kept pipe"),
    };
    let scribe = Scribe::new(kept.0.segment());
    let r_idx = r_end as u64;
    let tail_off = if r_end == 0 { CTL[0] } else { CTL[1] };
    let head_off = tail_off + 128;
    let w_closed_off = META_ENDS + 16 * w_end as u64 + 8;
    let read8 = |off: u64| -> u64 { scribe.read8(DATA_OFFSET as u64 + off) };
    let write = |off: u64, bytes: &[u8], forbid: (u64, u64)| {
        let end = (off + bytes.len() as u64).min(PAYLOAD_LEN);
        if off >= end || (off < forbid.1 && forbid.0 < end) {
            return;
        }
        let n = (end - off) as usize;
        scribe.write(DATA_OFFSET as u64 + off, bytes.get(..n).unwrap_or(&[]));
    };
    // Scribble / delta / forged header; `forbid` is the range to spare.
    let corrupt = |op: u8, input: &mut Input<'_>, forbid: (u64, u64)| {
        let head = read8(head_off);
        match op {
            0 => {
                let off = pick_offset(input, r_idx, head);
                write(off, &input.u64().to_le_bytes(), forbid);
            }
            1 => {
                let off = pick_offset(input, r_idx, head);
                let delta = i64::from(input.byte().unwrap_or(0) as i8) * 8;
                let v = read8(off).wrapping_add_signed(delta);
                write(off, &v.to_le_bytes(), forbid);
            }
            _ => {
                let k = u64::from(input.byte().unwrap_or(0));
                let pos = head.wrapping_add((k % 8) * LINE) & (CAP - 1);
                let sel = input.byte().unwrap_or(0);
                let tag = match sel % 3 {
                    0 => TAG_MSG,
                    1 => TAG_PAD,
                    _ => input.u64() as u32,
                };
                let len = match sel / 3 % 4 {
                    0 => u64::from(input.byte().unwrap_or(0)),
                    1 => CAP - pos,
                    2 => u64::from(input.byte().unwrap_or(0)) << 12,
                    _ => input.u64(),
                };
                let mut h = [0u8; 16];
                let (t4, l8) = h.split_at_mut(8);
                for (d, s) in t4.iter_mut().zip(tag.to_le_bytes()) {
                    *d = s;
                }
                l8.copy_from_slice(&len.to_le_bytes());
                write(DATA0 + CAP * r_idx + pos, &h, forbid);
            }
        }
    };

    // Phase 1: the writer is open. Its first send claims its end; from then
    // on the harness knows its tail `t` exactly (every change is published).
    let mut t = 0u64;
    let mut writer_ok = w.send(&0x5eed_u64).is_ok();
    if writer_ok {
        t = LINE;
        assert_eq!(read8(tail_off), t, "the tail the writer published");
    }
    // Whether a record of `span` bytes can be sent without waiting for
    // space, and the tail after its pad. The head does not move meanwhile.
    let fits = |t: u64, span: u64| -> Option<u64> {
        if span > CAP {
            return None;
        }
        let head = read8(head_off);
        let ok = |t: u64, need: u64| {
            let used = t.wrapping_sub(head);
            used > CAP || CAP - used >= need // > CAP: a Corrupt error, no wait
        };
        let room = CAP - (t & (CAP - 1));
        let t2 = if span > room {
            if !ok(t, room) {
                return None;
            }
            t.wrapping_add(room)
        } else {
            t
        };
        ok(t2, span).then_some(t2)
    };
    // pipe.rs's record_shape: inline up to INLINE_MAX = 40 bytes.
    let shape = |len: u64| {
        if len <= 40 {
            LINE
        } else {
            LINE + len.div_ceil(LINE) * LINE
        }
    };
    let phase1_forbid = (head_off, head_off + 8);
    let mut ops = 0u32;
    let mut msg = Vec::new();
    while let Some(op) = input.byte() {
        ops += 1;
        match op % 8 {
            0..=2 if writer_ok => {
                let len = match op % 8 {
                    1 => 8,
                    _ => 16 * u64::from(input.byte().unwrap_or(0)),
                };
                let span = shape(len);
                let Some(t_pad) = fits(t, span) else { continue };
                // One buffer for every send of the input (ASan allocations
                // and the page faults of its quarantine were a tenth of an
                // input's time).
                message_into(&mut msg, len as usize, u64::from(ops));
                let r = match op % 8 {
                    // Bit 4: the `try_` form (room is known to be free).
                    0 if op & 16 == 0 => w
                        .send_bytes(&msg)
                        .map(|()| t_pad.wrapping_add(span))
                        .map_err(|_| ()),
                    0 => w
                        .try_send_bytes(&msg)
                        .map(|()| t_pad.wrapping_add(span))
                        .map_err(|_| ()),
                    1 => w
                        .send(&u64::from(ops))
                        .map(|()| t_pad.wrapping_add(span))
                        .map_err(|_| ()),
                    _ => w.reserve(len as usize).map_err(|_| ()).map(|mut g| {
                        g.copy_from_slice(&msg);
                        if op & 8 == 0 {
                            g.commit();
                            t_pad.wrapping_add(span)
                        } else {
                            t_pad
                        }
                    }),
                };
                match r {
                    Ok(t_new) => {
                        // A dropped reservation without a pad publishes
                        // nothing (the shared tail may hold a scribble).
                        if t_new != t {
                            assert_eq!(read8(tail_off), t_new, "the tail the writer published");
                        }
                        t = t_new;
                    }
                    // The tail may have moved partway: no more sends.
                    Err(_) => writer_ok = false,
                }
            }
            0..=2 => {}
            3 => {
                let _ = r.poll(Some(Duration::ZERO));
                let _ = (r.readable(), w.writable(), w.closed());
            }
            4..=6 => corrupt(op % 8 - 4, &mut input, phase1_forbid),
            _ => break,
        }
    }
    w.close();

    // Phase 2: the writer is closed; every read ends (data, EOF or error).
    let phase2_forbid = (w_closed_off, w_closed_off + 4);
    let mut buf = Vec::new();
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let max = 64 * usize::from(input.byte().unwrap_or(0));
                // Bit 3: the `try_` form.
                let v = if op & 8 == 0 {
                    r.recv_bytes_max(max).ok()
                } else {
                    r.try_recv_bytes_max(max).ok()
                };
                if let Some(v) = v {
                    assert!(v.len() <= max);
                }
            }
            1 => {
                buf.resize(16 * usize::from(input.byte().unwrap_or(0)), 0);
                let n = if op & 8 == 0 {
                    r.recv_bytes_into(&mut buf).ok()
                } else {
                    r.recv_bytes_into_timeout(&mut buf, Duration::ZERO).ok()
                };
                if let Some(n) = n {
                    assert!(n <= buf.len());
                }
            }
            2 => {
                let _ = r.recv::<u64>();
            }
            3 => {
                if let Ok(g) = r.recv_bytes_ref() {
                    let _ = g.iter().fold(0u8, |a, &b| a ^ b);
                }
            }
            4 => {
                let _ = r.poll(Some(Duration::ZERO));
                let _ = r.readable();
            }
            k => corrupt(k - 5, &mut input, phase2_forbid),
        }
    }
    // Drain: each success consumes at least a line of at most a ring's worth
    // (nothing is scribbled now), and the first error stops it. The cap on
    // the length keeps a forged huge length from allocating.
    for _ in 0..=CAP / LINE {
        if r.recv_bytes_max(1 << 20).is_err() {
            break;
        }
    }
    // A fresh reader on the scribbled segment (it takes the end over): its
    // open validates the layout, and it drains to an end as well.
    if let Ok(mut r2) = w.attach_same(pick(r_end)) {
        for _ in 0..=CAP / LINE {
            if r2.recv_bytes_max(1 << 20).is_err() {
                break;
            }
        }
    }
    drop(r);
    park(key, kept);
}

/// `bytes_records`: a [`ByteQueue`] (64-byte slots, up to 4 of them) whose
/// record headers (kind, name length, message length, name) and slots are
/// scribbled between puts and gets, inline messages and side segments
/// mixed, a side record duplicated into another slot included. Every call
/// returns (a message, `Empty`, `Closed` or an error); a message never
/// exceeds the slot (inline) or [`MAX_MESSAGE_LEN`](crate::MAX_MESSAGE_LEN),
/// and nothing is allocated for a length no side segment backs. The side
/// segments a scribble orphaned are removed at the end (by this queue's id,
/// which no scribble reaches), so nothing is left in `/dev/shm`.
///
/// Input: a capacity byte (`1 << (b % 3)`), then opcodes (`b % 8`): put
/// (`try_put_bytes`), reserve + commit or drop, `try_get_bytes_into`,
/// `try_get_bytes_ref`, forge a record header field, copy a record header
/// to another slot, write 8 bytes anywhere in the slots, and
/// qsize/empty/full with a zero-timeout get. Lengths: `b % 65` below 0x80
/// (inline), `65 + 8 * (b - 0x80)` from 0x80 (side segments, to 1081).
/// Side segments are the costly part (about seventeen system calls each),
/// so an input asks for at most 2 of them, or 16 when its capacity byte is
/// 0xf0 or more; later long lengths are inline (`b % 65`).
///
/// **Model mode** (bit 3, 0x08, of the capacity byte): no scribbles; the
/// same puts, reserves and gets, plus `put_bytes_timeout(0)`,
/// `try_get_bytes`, `get_bytes_timeout(0)` and `close`, checked against a
/// `VecDeque` model, message contents included, side messages and
/// cancelled side reservations mixed with inline ones (the side-segment
/// half of `queue_ops`' model, which keeps that target's inputs free of
/// system calls). Opcodes (`b % 8`): put (`put_bytes_timeout(0)` when bit
/// 3 is set), reserve + commit or drop, `try_get_bytes_into`
/// (`try_get_bytes` with bit 3), `try_get_bytes_ref`,
/// `get_bytes_timeout(0)`, close (when the next byte is `0 % 8`), qsize,
/// and qsize/empty/full with a zero-timeout get.
pub fn bytes_records(data: &[u8]) {
    use crate::bytes::side_suffix;
    use crate::ring::slot_geometry;

    const SLOT: usize = 64;
    let mut input = Input(data);
    let Some(c) = input.byte() else { return };
    let cap = 1usize << (c % 3);
    let q = Reused::new(("bytes-side", cap as u64), || {
        let q = ByteQueue::new(cap, SLOT).expect("create an anonymous byte queue");
        // One side message through, so the queue id is in the fresh
        // bytes (the same for every input: the cleanup's suffix).
        q.try_put_bytes(&[1u8; SLOT + 1]).expect("a side put");
        q.try_get_bytes().expect("a side get");
        q
    });
    let suffix = side_suffix(q.queue_id());
    let scribe = Scribe::new(q.segment());
    let ring_slot = SLOT as u64;
    let (payload_off, stride) = slot_geometry(ring_slot).expect("slot geometry");
    // Records v3: the words in the 16 bytes before the payload (the end of
    // the slot header's line), a side record's name at the payload, so the
    // 64-byte record header is contiguous from 16 bytes before the payload.
    let record_at = |i: u64| -> u64 {
        DATA_OFFSET as u64 + RING_HEADER_LEN as u64 + (i % cap as u64) * stride + payload_off - 16
    };
    let slots_end = DATA_OFFSET as u64 + RING_HEADER_LEN as u64 + cap as u64 * stride;
    let write = |at: u64, bytes: &[u8]| {
        let end = slots_end.min(at + bytes.len() as u64);
        if at < end {
            scribe.write(at, bytes.get(..(end - at) as usize).unwrap_or(&[]));
        }
    };
    let sides = std::cell::Cell::new(if c >= 0xf0 { 16u32 } else { 2 });
    let len_of = |b: u8| -> usize {
        if b < 0x80 || sides.get() == 0 {
            usize::from(b) % 65
        } else {
            sides.set(sides.get() - 1);
            65 + 8 * usize::from(b - 0x80)
        }
    };
    if c & RECORDS_MODEL != 0 {
        records_model(&q, cap, input, len_of);
        return;
    }
    let mut buf = Vec::new();
    let mut scribbled = false;
    let mut tag = 0u64;
    while let Some(op) = input.byte() {
        tag += 1;
        match op % 8 {
            0 => {
                let m = message(len_of(input.byte().unwrap_or(0)), tag);
                let _ = q.try_put_bytes(&m);
            }
            1 => {
                let len = len_of(input.byte().unwrap_or(0));
                if let Ok(mut w) = q.try_reserve(len) {
                    w.fill(op);
                    if op & 8 == 0 {
                        let _ = w.commit();
                    }
                }
            }
            2 => {
                if q.try_get_bytes_into(&mut buf).is_ok() {
                    assert!(buf.len() <= 65 + 8 * 127);
                }
            }
            3 => {
                if let Ok(g) = q.try_get_bytes_ref() {
                    assert!(g.len() <= 65 + 8 * 127);
                    let _ = g.iter().fold(0u8, |a, &b| a ^ b);
                }
            }
            4 => {
                scribbled = true;
                let at = record_at(u64::from(input.byte().unwrap_or(0)));
                let sel = input.byte().unwrap_or(0);
                let v = u64::from(input.byte().unwrap_or(0));
                match sel % 4 {
                    // kind: inline, side, cancelled, or anything.
                    0 => write(at, &(v % 5).to_le_bytes()[..4]),
                    // name_len.
                    1 => write(at + 4, &(v % 64).to_le_bytes()[..4]),
                    // len: small, the slot edge, huge, or anything.
                    2 => {
                        let len = match v % 5 {
                            0 => v,
                            1 => SLOT as u64 + (v & 1),
                            2 => 0x80_0000_0002,
                            3 => crate::MAX_MESSAGE_LEN + (v & 1),
                            _ => input.u64(),
                        };
                        write(at + 8, &len.to_le_bytes());
                    }
                    // One byte of the name.
                    _ => write(at + 16 + v % 48, &[input.byte().unwrap_or(0)]),
                }
            }
            5 => {
                // Copy slot i's record header over slot j's.
                scribbled = true;
                let from = record_at(u64::from(input.byte().unwrap_or(0)));
                let to = record_at(u64::from(input.byte().unwrap_or(0)));
                let mut h = [0u8; crate::bytes::RECORD_HEADER_LEN];
                scribe.read(from, &mut h);
                write(to, &h);
            }
            6 => {
                scribbled = true;
                let start = DATA_OFFSET as u64 + RING_HEADER_LEN as u64;
                let x = u64::from(input.byte().unwrap_or(0)) << 8
                    | u64::from(input.byte().unwrap_or(0));
                write(start + x % (slots_end - start), &input.u64().to_le_bytes());
            }
            _ => {
                assert!(q.qsize() <= cap);
                let _ = (q.empty(), q.full());
                let _ = q.get_bytes_timeout(std::time::Duration::ZERO);
            }
        }
    }
    // Drain: each get takes a slot (or fails on it); bounded.
    for _ in 0..=2 * cap {
        if matches!(
            q.try_get_bytes(),
            Err(TryGetError::Empty | TryGetError::Closed)
        ) {
            break;
        }
    }
    if scribbled {
        for info in shmproc_shm::cleanup::list_matching(|n| {
            n.starts_with(shmproc_shm::NAME_PREFIX) && n.ends_with(&suffix)
        }) {
            let _ = shmproc_shm::Segment::remove(&info.name);
        }
    }
}

/// A get form's result as `check_get` in [`records_model`] takes it: the
/// message's bytes, whichever way the form returns them.
fn got<B: std::ops::Deref<Target = [u8]>>(
    r: &Result<B, TryGetError>,
) -> Result<Option<&[u8]>, TryGetError> {
    match r {
        Ok(b) => Ok(Some(&**b)),
        Err(e) => Err(*e),
    }
}

/// The bit of `bytes_records`' capacity byte that selects its model mode.
const RECORDS_MODEL: u8 = 0x08;

/// `bytes_records`' model mode: the operations of its input on `q` (no
/// scribbles), each result checked against a model of the queue, message
/// contents included; `len_of` turns a length byte into a length (side
/// segments included). Ends with the queue drained, so no side segment
/// outlives the input.
fn records_model(q: &ByteQueue, cap: usize, mut input: Input<'_>, len_of: impl Fn(u8) -> usize) {
    // As in `bytes_ops`: `Some((len, tag))` is `message(len, tag)`, `None`
    // a dropped reservation (a cancelled record holding its slot).
    let mut model: VecDeque<Option<(usize, u64)>> = VecDeque::new();
    let mut closed = false;
    let mut closes = 0u32;
    let mut tag = 0u64;
    let mut m = Vec::new();
    let mut buf = Vec::new();
    // A get's result against the model (consumers skip cancelled records).
    let check_get = |model: &mut VecDeque<Option<(usize, u64)>>,
                     closed: bool,
                     r: Result<Option<&[u8]>, TryGetError>| {
        while model.front().is_some_and(Option::is_none) {
            model.pop_front();
        }
        match r {
            Ok(Some(got)) => check_front(model, got),
            Ok(None) => {}
            Err(TryGetError::Empty) => assert!(model.is_empty() && !closed),
            Err(TryGetError::Closed) => assert!(model.is_empty() && closed),
            Err(e) => panic!("get: {e:?}"),
        }
    };
    while let Some(op) = input.byte() {
        tag += 1;
        match op % 8 {
            0 | 1 => {
                let len = len_of(input.byte().unwrap_or(0));
                message_into(&mut m, len, tag);
                let r = match (op % 8, op & 8 != 0) {
                    (0, false) => q.try_put_bytes(&m),
                    (0, true) => q
                        .put_bytes_timeout(&m, std::time::Duration::ZERO)
                        .map_err(|e| match e {
                            PutBytesTimeoutError::Timeout => TryPutBytesError::Full,
                            PutBytesTimeoutError::Closed => TryPutBytesError::Closed,
                            e => panic!("put_bytes_timeout: {e:?}"),
                        }),
                    (_, commit) => q.try_reserve(len).map(|mut w| {
                        w.copy_from_slice(&m);
                        if commit {
                            w.commit().expect("commit");
                        }
                    }),
                };
                match r {
                    Ok(()) => {
                        assert!(!closed && model.len() < cap);
                        let kept = op % 8 == 0 || op & 8 != 0;
                        model.push_back(kept.then_some((len, tag)));
                    }
                    Err(TryPutBytesError::Full) => assert!(!closed && model.len() == cap),
                    Err(TryPutBytesError::Closed) => assert!(closed),
                    Err(e) => panic!("put: {e:?}"),
                }
            }
            2 if op & 8 != 0 => {
                let r = q.try_get_bytes();
                check_get(&mut model, closed, got(&r));
            }
            2 => {
                let r = q.try_get_bytes_into_vec(&mut buf).map(|()| &buf[..]);
                check_get(&mut model, closed, got(&r));
            }
            3 => {
                let r = q.try_get_bytes_ref();
                check_get(&mut model, closed, got(&r));
            }
            4 => {
                let r = q
                    .get_bytes_timeout(std::time::Duration::ZERO)
                    .map_err(|e| match e {
                        GetTimeoutError::Timeout => TryGetError::Empty,
                        GetTimeoutError::Closed => TryGetError::Closed,
                        e => panic!("get_bytes_timeout: {e:?}"),
                    });
                check_get(&mut model, closed, got(&r));
            }
            5 => {
                if input.byte().unwrap_or(0) % 8 == 0 {
                    close_capped(|| q.close(), &mut closes, &mut closed);
                }
            }
            6 => {
                let live = model.iter().filter(|r| r.is_some()).count();
                assert!(q.qsize() >= live && q.qsize() <= cap);
            }
            _ => {
                assert!(q.qsize() <= cap);
                // Cancelled records hold their slots until a get skips
                // them: the model counts them too.
                assert_eq!(q.full(), model.len() == cap);
                assert_eq!(q.empty(), model.is_empty());
            }
        }
    }
    // No side segment is left.
    drain_checked(q, model);
}

/// `pipe_open`: [`Connection::open`](crate::Connection::open) of a named
/// pipe (4 KiB rings) whose segment header, meta line, end records, ring
/// indices and data were scribbled before the open. The open returns an
/// error or a connection; a connection's calls (receives of every form,
/// `try_send_bytes`, `poll`) return, whatever the bytes say. The pipe is
/// unlinked before the calls, so nothing is left in `/dev/shm`.
///
/// Input: a config byte (bit 0: simplex, bit 1: the end opened when
/// duplex), then scribbles until a 0xff byte: `sel` (`% 3`: a segment
/// header word, a meta or control word, anywhere; `/ 3 % 4`: a random
/// word, a small delta, zero, all ones), two offset bytes and, for random
/// words, 8 value bytes. Then opcodes on the connection (`b % 6`).
///
/// The peer's end record is never scribbled: the harness opens the peer
/// end and closes it, so every receive ends (data, EOF or an error), as in
/// `pipe_frames`.
pub fn pipe_open(data: &[u8]) {
    use crate::pipe::{Connection, Pipe, PipeEnd, PipeMode};
    use shmproc_shm::SegmentName;
    use std::time::Duration;

    const CAP: u64 = 4096;
    const META_ENDS: u64 = 16;
    const HEADER_WORDS: [u64; 8] = [0, 8, 12, 16, 24, 32, 36, 40];
    // Meta: capacity/mode, end records, seal key; each ring's tail, head,
    // wake and waiters/armed words (pipe/layout.rs).
    const CTL_WORDS: [u64; 14] = [0, 8, 16, 24, 32, 40, 48, 128, 256, 384, 392, 512, 640, 768];

    let mut input = Input(data);
    let Some(config) = input.byte() else { return };
    let (mode, end) = if config & 1 != 0 {
        (PipeMode::Simplex, 0usize)
    } else {
        (PipeMode::Duplex, usize::from((config >> 1) & 1))
    };
    let pick = |e: usize| {
        if e == 0 {
            PipeEnd::First
        } else {
            PipeEnd::Second
        }
    };
    let name = SegmentName::unique("fzp");
    let Ok((a, b)) = Pipe::options(mode, CAP as usize).build_named(name.as_str()) else {
        return; // /dev/shm full: nothing to test
    };
    let file = File::from(a.segment().fd().try_clone_to_owned().expect("dup"));
    let file_len = file.metadata().map_or(0, |m| m.len());
    let peer = 1 - end;
    let peer_rec = DATA_OFFSET as u64 + META_ENDS + 16 * peer as u64;
    while let Some(sel) = input.byte() {
        if sel == 0xff {
            break;
        }
        let x = u64::from(input.byte().unwrap_or(0)) << 8 | u64::from(input.byte().unwrap_or(0));
        let at = match sel % 3 {
            0 => HEADER_WORDS.get((x % 8) as usize).copied().unwrap_or(0),
            1 => DATA_OFFSET as u64 + CTL_WORDS.get((x % 14) as usize).copied().unwrap_or(0),
            _ => x % file_len.max(1),
        };
        let mut cur = [0u8; 8];
        let _ = file.read_at(&mut cur, at);
        let v = match sel / 3 % 4 {
            0 => input.u64(),
            1 => u64::from_le_bytes(cur).wrapping_add_signed(i64::from(x as i8)),
            2 => 0,
            _ => u64::MAX,
        };
        let n = file_len.saturating_sub(at).min(8);
        if at < peer_rec + 16 && peer_rec < at + n {
            continue; // spare the peer's end record
        }
        let _ = file.write_at(v.to_le_bytes().get(..n as usize).unwrap_or(&[]), at);
    }
    // A state word left "uninit" or "initialising" makes an open wait for
    // `DEFAULT_INIT_TIMEOUT` (2 s: a creator may still be at work), which
    // `segment_open` covers with a zero timeout: here it reads as ready or
    // poisoned instead.
    let mut state = [0u8; 4];
    if file.read_exact_at(&mut state, 36).is_ok() && u32::from_le_bytes(state) < 2 {
        let _ = file.write_at(&(u32::from_le_bytes(state) + 2).to_le_bytes(), 36);
    }
    let opened = Connection::open(name.as_str(), pick(end));
    let peer_closed = match Connection::open(name.as_str(), pick(peer)) {
        Ok(mut p) => {
            p.close();
            true
        }
        Err(_) => false,
    };
    drop((a, b)); // unlinks the name; the opened connections keep their maps
    let Ok(mut c) = opened else { return };
    let mut buf = Vec::new();
    while let Some(op) = input.byte() {
        match op % 6 {
            // Receives wait for a live peer; the peer is closed, so they
            // end (when it could not be opened, only the polls run).
            0 if peer_closed => {
                let _ = c.try_recv_bytes_max(64 * usize::from(input.byte().unwrap_or(0)));
            }
            1 if peer_closed => {
                buf.resize(16 * usize::from(input.byte().unwrap_or(0)), 0);
                if let Ok(n) = c.try_recv_bytes_into(&mut buf) {
                    assert!(n <= buf.len());
                }
            }
            2 if peer_closed => {
                let _ = c.try_recv::<u64>();
                if let Ok(g) = c.try_recv_bytes_ref() {
                    let _ = g.iter().fold(0u8, |a, &b| a ^ b);
                }
            }
            3 => {
                let m = message(16 * usize::from(input.byte().unwrap_or(0)), u64::from(op));
                let _ = c.try_send_bytes(&m);
            }
            4 => {
                let _ = c.poll(Some(Duration::ZERO));
                let _ = (c.readable(), c.writable(), c.closed());
            }
            _ => {
                if peer_closed {
                    let _ = c.recv_bytes_max(CAP as usize);
                }
            }
        }
    }
    drop(c);
    drop(file);
}
