//! The contestants of the ping-pong and of the queue streams, each a
//! [`Link`]: one direction of a channel, made before the fork and used by
//! forked processes (threads for crossbeam-channel only). Messages are `Pod`
//! values whose first 8 bytes carry a sequence number.
//!
//! The two floors written for these benches are here: an atomic (busy-poll)
//! and a futex (blocking) ping-pong word, and a minimal SPSC spin ring in
//! shared memory; then our `Queue`, a `SOCK_SEQPACKET` socket pair,
//! ipc-channel's bytes channel and crossbeam-channel. The pipe's own
//! contestants are in [`crate::pipe`].

#![allow(
    unsafe_code,
    reason = "the floors: atomics and an SPSC ring in a MAP_SHARED mmap, payloads copied through raw pointers"
)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use bytemuck::Pod;
use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender};
use shmproc_channel::{ByteQueue, Queue, TryGetError, TryPutError};
use shmproc_shm::os;
use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};

use crate::harness::SharedMap;

/// One direction of a channel: made before the fork, used afterwards by one
/// or more processes (threads for crossbeam). Failures panic, which a forked
/// child reports as exit code 101.
pub(crate) trait Link<T> {
    /// Sends `m` (blocking or spinning until there is room).
    fn send(&self, m: &T);
    /// Receives the next message into `m` (blocking or spinning until one comes).
    fn recv(&self, m: &mut T);
}

/// The sequence number in a message's first 8 bytes.
#[inline]
pub(crate) fn seq_of<T: Pod>(m: &T) -> u64 {
    let b = bytemuck::bytes_of(m);
    u64::from_ne_bytes(b[..8].try_into().expect("messages are at least 8 bytes"))
}

/// Writes `seq` into a message's first 8 bytes.
#[inline]
pub(crate) fn set_seq<T: Pod>(m: &mut T, seq: u64) {
    bytemuck::bytes_of_mut(m)[..8].copy_from_slice(&seq.to_ne_bytes());
}

// -- the atomic floor

/// One word per direction; the message is the word's new value (sequence
/// numbers only ever grow, so a change is a message). `last` is this
/// process's copy (each forked process has its own).
pub(crate) struct AtomicLink {
    map: SharedMap,
    last: AtomicU64,
}

impl AtomicLink {
    pub(crate) fn new() -> Self {
        Self {
            map: SharedMap::new(4096),
            last: AtomicU64::new(0),
        }
    }
    #[inline]
    fn word(&self) -> &AtomicU64 {
        &self.map.atomics(0, 1)[0]
    }
}

impl Link<u64> for AtomicLink {
    fn send(&self, m: &u64) {
        // Release: publishes the sender's writes before the message to the receiver.
        self.word().store(*m, Ordering::Release);
    }
    fn recv(&self, m: &mut u64) {
        let last = self.last.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the Release store in `send`.
            let v = self.word().load(Ordering::Acquire);
            if v != last {
                self.last.store(v, Ordering::Relaxed);
                *m = v;
                return;
            }
            std::hint::spin_loop();
        }
    }
}

// -- the futex floor

/// One futex word per direction: `send` stores and always wakes, `recv`
/// always sleeps until the word changes (no spinning): a raw futex wake.
pub(crate) struct FutexLink {
    map: SharedMap,
    last: AtomicU32,
}

impl FutexLink {
    pub(crate) fn new() -> Self {
        Self {
            map: SharedMap::new(4096),
            last: AtomicU32::new(0),
        }
    }
    #[inline]
    fn word(&self) -> &AtomicU32 {
        // SAFETY: `at` checked bounds and alignment; the zero-filled word is a valid
        // AtomicU32 and lives as long as `self.map`, which `&self` borrows.
        unsafe { &*self.map.at::<AtomicU32>(0) }
    }
}

impl Link<u64> for FutexLink {
    fn send(&self, m: &u64) {
        // Truncated: consecutive sequence numbers still differ.
        let v = *m as u32;
        // Release: publishes the sender's writes to the receiver's Acquire load.
        self.word().store(v, Ordering::Release);
        os::futex_wake(self.word(), 1);
    }
    fn recv(&self, m: &mut u64) {
        let last = self.last.load(Ordering::Relaxed);
        loop {
            // Acquire: pairs with the Release store in `send`.
            let v = self.word().load(Ordering::Acquire);
            if v != last {
                self.last.store(v, Ordering::Relaxed);
                *m = u64::from(v);
                return;
            }
            os::futex_wait(self.word(), last, Some(Duration::from_secs(1)));
        }
    }
}

// -- the minimal SPSC ring

/// The floor of shared-memory rings: one producer, one consumer, a
/// power-of-two array of 64-byte-aligned slots, the producer's and the
/// consumer's index each on its own 128-byte line, each side keeping a
/// cached copy of the other's index, spinning when full or empty. No stamps,
/// no crash safety, no blocking.
pub(crate) struct SpscRing {
    map: SharedMap,
    cap: u64,
    stride: usize,
    len: usize,
    /// This process's copies (each forked process has its own).
    tail: AtomicU64,
    head_cache: AtomicU64,
    head: AtomicU64,
    tail_cache: AtomicU64,
}

const RING_TAIL: usize = 0;
const RING_HEAD: usize = 128;
const RING_SLOTS: usize = 256;

impl SpscRing {
    pub(crate) fn new(capacity: usize, len: usize) -> Self {
        let cap = capacity.next_power_of_two();
        let stride = len.next_multiple_of(64);
        Self {
            map: SharedMap::new(RING_SLOTS + cap * stride),
            cap: cap as u64,
            stride,
            len,
            tail: AtomicU64::new(0),
            head_cache: AtomicU64::new(0),
            head: AtomicU64::new(0),
            tail_cache: AtomicU64::new(0),
        }
    }

    #[inline]
    fn index(&self, off: usize) -> &AtomicU64 {
        &self.map.atomics(off, 1)[0]
    }

    #[inline]
    fn slot(&self, pos: u64) -> *mut u8 {
        // Masked below `cap`, which is a usize.
        let i = (pos & (self.cap - 1)) as usize;
        self.map.at::<u8>(RING_SLOTS + i * self.stride)
    }
}

impl<T: Pod> Link<T> for SpscRing {
    fn send(&self, m: &T) {
        assert_eq!(size_of::<T>(), self.len, "message size");
        let t = self.tail.load(Ordering::Relaxed);
        while t - self.head_cache.load(Ordering::Relaxed) == self.cap {
            // Acquire: pairs with the consumer's Release store of head (the slot is free).
            let h = self.index(RING_HEAD).load(Ordering::Acquire);
            self.head_cache.store(h, Ordering::Relaxed);
            std::hint::spin_loop();
        }
        let src = bytemuck::bytes_of(m);
        // SAFETY: the slot holds `stride >= len` bytes inside the map (`slot` checked
        // its start; the map was sized for `cap` slots); it is free (head passed it)
        // and only this producer writes it until the Release store below.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.slot(t), src.len()) };
        // Release: publishes the payload to the consumer's Acquire load of tail.
        self.index(RING_TAIL).store(t + 1, Ordering::Release);
        self.tail.store(t + 1, Ordering::Relaxed);
    }

    fn recv(&self, m: &mut T) {
        assert_eq!(size_of::<T>(), self.len, "message size");
        let h = self.head.load(Ordering::Relaxed);
        while h == self.tail_cache.load(Ordering::Relaxed) {
            // Acquire: pairs with the producer's Release store of tail (payload written).
            let t = self.index(RING_TAIL).load(Ordering::Acquire);
            self.tail_cache.store(t, Ordering::Relaxed);
            std::hint::spin_loop();
        }
        let dst = bytemuck::bytes_of_mut(m);
        // SAFETY: as in `send`: the slot is in the map and published (tail passed
        // it); the producer does not touch it until the Release store of head below.
        unsafe { std::ptr::copy_nonoverlapping(self.slot(h), dst.as_mut_ptr(), dst.len()) };
        // Release: hands the slot back to the producer (its Acquire load of head).
        self.index(RING_HEAD).store(h + 1, Ordering::Release);
        self.head.store(h + 1, Ordering::Relaxed);
    }
}

// -- shmproc's Queue

/// `Queue<T>`: blocking `put`/`get`, or `try_put`/`try_get` in a spin loop.
pub(crate) struct QueueLink<T> {
    q: Queue<T>,
    spin: bool,
}

impl<T: Pod> QueueLink<T> {
    pub(crate) fn new(capacity: usize, spin: bool) -> Self {
        Self {
            q: Queue::new(capacity).expect("Queue::new"),
            spin,
        }
    }
}

impl<T: Pod> Link<T> for QueueLink<T> {
    fn send(&self, m: &T) {
        if !self.spin {
            if let Err(e) = self.q.put(*m) {
                panic!("put: {e}");
            }
            return;
        }
        loop {
            match self.q.try_put(*m) {
                Ok(()) => return,
                Err(TryPutError::Full(_)) => std::hint::spin_loop(),
                Err(e) => panic!("try_put: {e}"),
            }
        }
    }
    fn recv(&self, m: &mut T) {
        if !self.spin {
            *m = self.q.get().expect("get");
            return;
        }
        loop {
            match self.q.try_get() {
                Ok(v) => {
                    *m = v;
                    return;
                }
                Err(TryGetError::Empty) => std::hint::spin_loop(),
                Err(e) => panic!("try_get: {e}"),
            }
        }
    }
}

/// `Queue<T>`: `put_with` (the message copied from the caller's buffer
/// into the slot) and `get_into` (from the slot into the caller's buffer).
pub(crate) struct InPlaceLink<T> {
    q: Queue<T>,
}

impl<T: Pod> InPlaceLink<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            q: Queue::new(capacity).expect("Queue::new"),
        }
    }
}

impl<T: Pod> Link<T> for InPlaceLink<T> {
    fn send(&self, m: &T) {
        if let Err(e) = self.q.put_with(|slot| *slot = *m) {
            panic!("put_with: {e}");
        }
    }
    fn recv(&self, m: &mut T) {
        self.q.get_into(m).expect("get_into");
    }
}

/// `ByteQueue`: `put_bytes` of the message's bytes, `get_bytes_into` the
/// caller's message (one copy each way, as `Queue`'s; the pipe's
/// `recv_bytes_into` form).
pub(crate) struct ByteLink {
    q: ByteQueue,
}

impl ByteLink {
    /// A byte queue of `capacity` slots of `slot` bytes inline.
    pub(crate) fn new(capacity: usize, slot: usize) -> Self {
        Self {
            q: ByteQueue::new(capacity, slot).expect("ByteQueue::new"),
        }
    }
}

impl<T: Pod> Link<T> for ByteLink {
    fn send(&self, m: &T) {
        if let Err(e) = self.q.put_bytes(bytemuck::bytes_of(m)) {
            panic!("put_bytes: {e}");
        }
    }
    fn recv(&self, m: &mut T) {
        let n = self
            .q
            .get_bytes_into(bytemuck::bytes_of_mut(m))
            .expect("get_bytes_into");
        assert_eq!(n, size_of::<T>(), "a message of another size");
    }
}

// -- Unix socket

/// `socketpair(AF_UNIX, SOCK_SEQPACKET)`: one message per `write`, read
/// whole; several writers and readers may share the ends.
pub(crate) struct SocketLink {
    tx: File,
    rx: File,
}

impl SocketLink {
    pub(crate) fn new() -> Self {
        let (a, b) = os::socketpair_seqpacket().expect("socketpair");
        Self {
            tx: File::from(a),
            rx: File::from(b),
        }
    }
}

impl<T: Pod> Link<T> for SocketLink {
    fn send(&self, m: &T) {
        let b = bytemuck::bytes_of(m);
        let n = (&self.tx).write(b).expect("write");
        assert_eq!(n, b.len(), "a seqpacket write is all or nothing");
    }
    fn recv(&self, m: &mut T) {
        let b = bytemuck::bytes_of_mut(m);
        let n = (&self.rx).read(b).expect("read");
        assert_eq!(n, b.len(), "short seqpacket message");
    }
}

// -- ipc-channel

/// ipc-channel's bytes channel (its fastest path: no serialisation). The
/// receiver gets a fresh `Vec` per message; only the sequence number is
/// copied out of it.
pub(crate) struct IpcLink {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
}

impl IpcLink {
    pub(crate) fn new() -> Self {
        let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("ipc bytes_channel");
        Self { tx, rx }
    }
}

impl<T: Pod> Link<T> for IpcLink {
    fn send(&self, m: &T) {
        self.tx.send(bytemuck::bytes_of(m)).expect("ipc send");
    }
    fn recv(&self, m: &mut T) {
        let v = self.rx.recv().expect("ipc recv");
        assert_eq!(v.len(), size_of::<T>(), "ipc message size");
        bytemuck::bytes_of_mut(m)[..8].copy_from_slice(&v[..8]);
    }
}

// -- crossbeam-channel

/// `crossbeam_channel::bounded`, between threads of this process.
pub(crate) struct CrossbeamLink<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    deadline: Duration,
}

impl<T> CrossbeamLink<T> {
    pub(crate) fn new(capacity: usize, deadline: Duration) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Self { tx, rx, deadline }
    }
}

impl<T: Pod> Link<T> for CrossbeamLink<T> {
    fn send(&self, m: &T) {
        self.tx
            .send_timeout(*m, self.deadline)
            .expect("crossbeam send");
    }
    fn recv(&self, m: &mut T) {
        *m = self.rx.recv_timeout(self.deadline).expect("crossbeam recv");
    }
}
