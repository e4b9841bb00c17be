//! What `queue` and `queue_compare` share (issue 4): the contestants, the
//! two-process ping-pong (one-way latency) and the N -> M stream
//! (throughput), and the two floors written for these benches: an atomic
//! ping-pong and a minimal SPSC spin ring in shared memory.
//!
//! Every contestant is a [`Link`]: one direction, made before the fork and
//! used by forked processes (threads for crossbeam-channel only). Messages
//! are `Pod` values of the message size (`u64`, `[u8; 64]`, `[u8; 4096]`,
//! `[u8; 65536]`: `Queue` has no bytes path yet) whose first 8 bytes carry a
//! sequence number.

#![allow(
    unsafe_code,
    reason = "the floors: atomics and an SPSC ring in a MAP_SHARED mmap, payloads copied through raw pointers"
)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use crossbeam_channel::{Receiver, Sender};
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender};
use shmproc_channel::{GetError, PutError, Queue};
use shmproc_shm::os::{self, ExitStatus};
use shmproc_shm::sync::{AtomicU32, AtomicU64, Ordering};

use crate::support::{Child, SharedMap, allowed_cpus, full_run, now_ns, pin_to};

/// The message sizes of the issue, in bytes.
pub(crate) const SIZES: [usize; 4] = [8, 64, 4096, 65536];
/// The latency sizes.
pub(crate) const LAT_SIZES: [usize; 2] = [8, 4096];
/// The stream shapes: (producers, consumers).
pub(crate) const SHAPES: [(usize, usize); 3] = [(1, 1), (2, 2), (4, 1)];

/// The sequence number that tells a consumer to stop.
const SENTINEL: u64 = u64::MAX;

// ---- sizes ----------------------------------------------------------------------

/// Message counts and repetitions: a real run (`--bench`) or the smoke run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QSizes {
    /// Round trips per busy-poll ping-pong (after a warm-up of a tenth).
    pub(crate) busy_rtts: u64,
    /// Round trips per blocking ping-pong.
    pub(crate) block_rtts: u64,
    /// Round trips per ping-pong with a pause before each ping ([`Who::gap_ns`]).
    pub(crate) woken_rtts: u64,
    /// Round trips per timed sample in busy-poll runs (a clock read costs
    /// about as much as a busy-poll hand-off; blocking runs time each one).
    pub(crate) busy_batch: u64,
    /// Bytes per stream run for the shared-memory and crossbeam contestants
    /// (message count capped at `fast_cap`).
    pub(crate) fast_bytes: u64,
    pub(crate) fast_cap: u64,
    /// The same for the system-call contestants (Unix socket, ipc-channel).
    pub(crate) slow_bytes: u64,
    pub(crate) slow_cap: u64,
    /// Rounds (medians over these) in queue_compare.
    pub(crate) reps: usize,
    /// Python: round trips per latency case, bytes per stream case.
    pub(crate) python_rtts: u64,
    pub(crate) python_bytes: u64,
    /// How long a run may take before its children are killed.
    pub(crate) deadline: Duration,
}

impl QSizes {
    pub(crate) fn for_this_run() -> Self {
        if full_run() {
            Self {
                busy_rtts: 100_000,
                block_rtts: 10_000,
                woken_rtts: 2_000,
                busy_batch: 10,
                fast_bytes: 256 << 20,
                fast_cap: 1_000_000,
                slow_bytes: 128 << 20,
                slow_cap: 50_000,
                reps: 7,
                python_rtts: 1000,
                python_bytes: 16 << 20,
                deadline: Duration::from_secs(120),
            }
        } else {
            Self {
                busy_rtts: 200,
                block_rtts: 50,
                woken_rtts: 20,
                busy_batch: 10,
                fast_bytes: 1 << 20,
                fast_cap: 2000,
                slow_bytes: 1 << 20,
                slow_cap: 500,
                reps: 1,
                python_rtts: 20,
                python_bytes: 64 << 10,
                deadline: Duration::from_secs(20),
            }
        }
    }

    /// Messages per stream run of `size`-byte messages.
    pub(crate) fn messages(&self, who: Who, size: usize) -> u64 {
        let (bytes, cap) = if who.is_syscall() {
            (self.slow_bytes, self.slow_cap)
        } else {
            (self.fast_bytes, self.fast_cap)
        };
        (bytes / size as u64).clamp(16, cap)
    }
}

/// Slots of a stream's queue or ring (and crossbeam's bound): 4 MiB of
/// payload, between 8 and 1024 slots.
pub(crate) fn stream_capacity(size: usize) -> usize {
    ((4 << 20) / size).clamp(8, 1024)
}

/// Slots of a ping-pong's queues (one message in flight at a time).
const PINGPONG_CAPACITY: usize = 64;

// ---- contestants ----------------------------------------------------------------

/// Who carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Who {
    /// Busy-poll floor: one atomic word per direction (8 B latency only).
    AtomicFloor,
    /// Minimal SPSC spin ring in shared memory (1 -> 1 only).
    SpscRing,
    /// `Queue::try_put` / `try_get`, spinning until they succeed.
    QueueSpin,
    /// Blocking floor: one futex word per direction, always `FUTEX_WAKE`,
    /// always `FUTEX_WAIT` (8 B latency only); a pause before each ping.
    FutexFloor,
    /// `Queue::put` / `get` (spin briefly, then sleep on a futex).
    QueueBlock,
    /// `Queue::put` / `get` with a pause before each ping, longer than
    /// `get`'s spin, so that every message wakes a sleeping receiver (latency only).
    QueueWoken,
    /// `socketpair(AF_UNIX, SOCK_SEQPACKET)`, blocking `write`/`read`.
    UnixSocket,
    /// ipc-channel's bytes channel (`IpcBytesSender`/`IpcBytesReceiver`).
    IpcChannel,
    /// crossbeam-channel `bounded`, between threads.
    Crossbeam,
}

impl Who {
    pub(crate) const LATENCY: [Self; 9] = [
        Self::AtomicFloor,
        Self::SpscRing,
        Self::QueueSpin,
        Self::FutexFloor,
        Self::QueueWoken,
        Self::QueueBlock,
        Self::UnixSocket,
        Self::IpcChannel,
        Self::Crossbeam,
    ];
    pub(crate) const STREAM: [Self; 6] = [
        Self::SpscRing,
        Self::QueueSpin,
        Self::QueueBlock,
        Self::UnixSocket,
        Self::IpcChannel,
        Self::Crossbeam,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AtomicFloor => "atomic_pingpong",
            Self::SpscRing => "spsc_ring",
            Self::QueueSpin => "shmproc_queue_spin",
            Self::FutexFloor => "futex_pingpong",
            Self::QueueBlock => "shmproc_queue",
            Self::QueueWoken => "shmproc_queue_woken",
            Self::UnixSocket => "unix_seqpacket",
            Self::IpcChannel => "ipc_channel",
            Self::Crossbeam => "crossbeam_threads",
        }
    }

    /// The untimed pause before each ping (nanoseconds): the receiver is
    /// asleep when the message comes.
    pub(crate) fn gap_ns(self) -> u64 {
        match self {
            Self::FutexFloor | Self::QueueWoken => 20_000,
            _ => 0,
        }
    }

    fn is_syscall(self) -> bool {
        matches!(self, Self::UnixSocket | Self::IpcChannel)
    }

    /// Whether this contestant has a ping-pong of `size`-byte messages.
    pub(crate) fn has_latency(self, size: usize) -> bool {
        !matches!(self, Self::AtomicFloor | Self::FutexFloor) || size == 8
    }

    /// Whether this contestant has a stream of this shape: the spinning
    /// ones only 1 -> 1, where each process has a CPU of its own (with more
    /// processes than CPUs, a spinner burns the time slice its peer needs).
    pub(crate) fn has_stream(self, producers: usize, consumers: usize) -> bool {
        match self {
            Self::SpscRing | Self::QueueSpin => (producers, consumers) == (1, 1),
            Self::AtomicFloor | Self::FutexFloor | Self::QueueWoken => false,
            _ => true,
        }
    }
}

/// One direction of a channel: made before the fork, used afterwards by one
/// or more processes (threads for crossbeam). Failures panic, which a forked
/// child reports as exit code 101.
pub(crate) trait Link<T> {
    fn send(&self, m: &T);
    fn recv(&self, m: &mut T);
}

fn seq_of<T: Pod>(m: &T) -> u64 {
    let b = bytemuck::bytes_of(m);
    u64::from_ne_bytes(b[..8].try_into().expect("messages are at least 8 bytes"))
}

fn set_seq<T: Pod>(m: &mut T, seq: u64) {
    bytemuck::bytes_of_mut(m)[..8].copy_from_slice(&seq.to_ne_bytes());
}

/// A zero-filled slice of `n` atomics at offset `off` of `map`.
fn atomics(map: &SharedMap, off: usize, n: usize) -> &[AtomicU64] {
    let first = map.at::<AtomicU64>(off);
    // Bounds and alignment of the first element are checked by `at`; the last:
    let _ = map.at::<AtomicU64>(off + (n.max(1) - 1) * size_of::<AtomicU64>());
    // SAFETY: `n` zero-filled (valid) AtomicU64s lie in bounds from `first`
    // (first and last checked above), and they live as long as `map`, which the
    // returned slice borrows.
    unsafe { std::slice::from_raw_parts(first, n) }
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
    fn word(&self) -> &AtomicU64 {
        &atomics(&self.map, 0, 1)[0]
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

    fn index(&self, off: usize) -> &AtomicU64 {
        &atomics(&self.map, off, 1)[0]
    }

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
                Err(PutError::Full(_)) => std::hint::spin_loop(),
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
                Err(GetError::Empty) => std::hint::spin_loop(),
                Err(e) => panic!("try_get: {e}"),
            }
        }
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

// ---- running workers -------------------------------------------------------------

/// The CPU for worker `i` of a run: `cpus[i]` cycled over the allowed CPUs,
/// or none on a one-CPU machine.
pub(crate) fn cpu_for(order: &[usize], i: usize) -> Option<usize> {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return None;
    }
    Some(cpus[order[i % order.len()] % cpus.len()])
}

/// Forks `n` workers (worker `i` pinned by `cpu(i)`, running `work(i)`),
/// runs `start` in this process, and reaps them all; a worker that fails or
/// outlives `deadline` fails the run (all of them are then killed and reaped).
pub(crate) fn run_procs(
    n: usize,
    cpu: impl Fn(usize) -> Option<usize>,
    work: impl Fn(usize) -> i32,
    start: impl FnOnce(),
    deadline: Duration,
) {
    let children: Vec<Child> = (0..n)
        .map(|i| {
            let c = cpu(i);
            let work = &work;
            Child::fork(move || {
                if let Some(c) = c {
                    if !pin_to(c) {
                        return 4;
                    }
                }
                work(i)
            })
        })
        .collect();
    start();
    let until = Instant::now() + deadline;
    for ch in children {
        let status = ch.wait(until.saturating_duration_since(Instant::now()));
        assert_eq!(status, ExitStatus::Exited(0), "a worker failed");
    }
}

/// `run_procs` with threads of this process instead of forked processes.
fn run_threads(
    n: usize,
    cpu: impl Fn(usize) -> Option<usize>,
    work: impl Fn(usize) -> i32 + Sync,
    start: impl FnOnce(),
) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let c = cpu(i);
                let work = &work;
                s.spawn(move || {
                    if let Some(c) = c {
                        assert!(pin_to(c), "pin thread to CPU {c}");
                    }
                    work(i)
                })
            })
            .collect();
        start();
        for h in handles {
            assert_eq!(
                h.join().expect("worker thread panicked"),
                0,
                "a worker failed"
            );
        }
    });
}

// ---- ping-pong ----------------------------------------------------------------------

/// Latency samples of one ping-pong run: one-way nanoseconds, each the mean
/// over `batch` round trips (halved).
#[derive(Debug, Clone)]
pub(crate) struct Latency {
    pub(crate) one_way_ns: Vec<f64>,
    pub(crate) batch: u64,
}

impl Latency {
    /// The `p` quantile (0..=1) of the samples, nearest rank.
    pub(crate) fn quantile(&self, p: f64) -> f64 {
        quantile(&self.one_way_ns, p)
    }
    /// The total one-way time (for criterion's `iter_custom`).
    pub(crate) fn total(&self) -> Duration {
        let ns: f64 = self.one_way_ns.iter().sum::<f64>() * self.batch as f64;
        Duration::from_nanos(ns as u64)
    }
}

/// The nearest-rank `p` quantile of `v`.
pub(crate) fn quantile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p * v.len() as f64) as usize).min(v.len() - 1);
    v[i]
}

/// Busy-waits `ns` nanoseconds (on this process's own CPU).
fn pause(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = now_ns() + ns;
    while now_ns() < until {
        std::hint::spin_loop();
    }
}

/// The pinger: `warm` untimed round trips, then `samples.len()` samples of
/// `batch` round trips, each sample's nanoseconds stored; an untimed pause
/// of `gap` ns before each (with `batch` 1).
fn pinger<T: Pod, L: Link<T>>(
    ping: &L,
    pong: &L,
    warm: u64,
    (batch, gap): (u64, u64),
    samples: &[AtomicU64],
) {
    let mut m = T::zeroed();
    let mut seq = 0;
    let mut trip = |m: &mut T| {
        seq += 1;
        set_seq(m, seq);
        ping.send(m);
        pong.recv(m);
        assert_eq!(seq_of(m), seq, "pong out of order");
    };
    for _ in 0..warm {
        pause(gap);
        trip(&mut m);
    }
    for s in samples {
        pause(gap);
        let t0 = now_ns();
        for _ in 0..batch {
            trip(&mut m);
        }
        s.store(now_ns() - t0, Ordering::Relaxed);
    }
}

/// The ponger: echoes `total` messages.
fn ponger<T: Pod, L: Link<T>>(ping: &L, pong: &L, total: u64) {
    let mut m = T::zeroed();
    for _ in 0..total {
        ping.recv(&mut m);
        pong.send(&m);
    }
}

struct PingPong {
    warm: u64,
    batch: u64,
    gap: u64,
    samples: u64,
    map: SharedMap,
}

impl PingPong {
    fn new(rtts: u64, batch: u64, gap: u64) -> Self {
        let batch = if gap > 0 {
            1
        } else {
            batch.clamp(1, rtts.max(1))
        };
        let samples = (rtts / batch).max(1);
        Self {
            warm: (rtts / 10).clamp(1, 1000),
            batch,
            gap,
            samples,
            map: SharedMap::new(usize::try_from(samples).expect("sample count") * 8 + 64),
        }
    }
    fn out(&self) -> &[AtomicU64] {
        atomics(
            &self.map,
            0,
            usize::try_from(self.samples).expect("sample count"),
        )
    }
    fn work<T: Pod, L: Link<T>>(&self, ping: &L, pong: &L, i: usize) -> i32 {
        if i == 0 {
            pinger(ping, pong, self.warm, (self.batch, self.gap), self.out());
        } else {
            ponger(ping, pong, self.warm + self.samples * self.batch);
        }
        0
    }
    fn result(&self) -> Latency {
        let div = 2.0 * self.batch as f64;
        Latency {
            one_way_ns: self
                .out()
                .iter()
                .map(|s| s.load(Ordering::Relaxed) as f64 / div)
                .collect(),
            batch: self.batch,
        }
    }
}

/// Ping-pong between two forked processes on different CPUs: `pp`'s round
/// trips over `ping` and back over `pong`.
fn pingpong_procs<T: Pod, L: Link<T>>(
    ping: &L,
    pong: &L,
    pp: &PingPong,
    deadline: Duration,
) -> Latency {
    run_procs(
        2,
        |i| cpu_for(&[0, 1], i),
        |i| pp.work(ping, pong, i),
        || {},
        deadline,
    );
    pp.result()
}

/// A ping-pong of any other [`Link`] pair (the pipe benches' contestants):
/// about `rtts` round trips over `ping` and back over `pong` between two
/// forked processes on different CPUs, `batch` round trips per timed sample,
/// an untimed pause of `gap_ns` before each ping (then `batch` is 1).
pub(crate) fn pingpong_links<T: Pod, L: Link<T>>(
    ping: &L,
    pong: &L,
    rtts: u64,
    (batch, gap_ns): (u64, u64),
    deadline: Duration,
) -> Latency {
    let pp = PingPong::new(rtts, batch, gap_ns);
    pingpong_procs(ping, pong, &pp, deadline)
}

/// The same between two threads of this process.
fn pingpong_threads<T: Pod, L: Link<T> + Sync>(ping: &L, pong: &L, pp: &PingPong) -> Latency {
    run_threads(
        2,
        |i| cpu_for(&[0, 1], i),
        |i| pp.work(ping, pong, i),
        || {},
    );
    pp.result()
}

/// Calls `$f::<T>($args)` with `T` the message type of `$size` bytes.
macro_rules! by_size {
    ($size:expr, $f:ident($($arg:expr),*)) => {
        match $size {
            8 => $f::<u64>($($arg),*),
            64 => $f::<[u8; 64]>($($arg),*),
            4096 => $f::<[u8; 4096]>($($arg),*),
            65536 => $f::<[u8; 65536]>($($arg),*),
            other => panic!("no message type of {other} bytes"),
        }
    };
}

/// One ping-pong run of `who` with `size`-byte messages, about `rtts`
/// round trips (`None`: no such case, see [`Who::has_latency`]), `batch`
/// round trips per timed sample (1 for the cases with a pause, see
/// [`Who::gap_ns`]).
pub(crate) fn latency(
    who: Who,
    size: usize,
    rtts: u64,
    batch: u64,
    sz: &QSizes,
) -> Option<Latency> {
    if !who.has_latency(size) {
        return None;
    }
    let pp = PingPong::new(rtts, batch, who.gap_ns());
    let d = sz.deadline;
    Some(match who {
        Who::AtomicFloor => {
            pingpong_procs::<u64, _>(&AtomicLink::new(), &AtomicLink::new(), &pp, d)
        }
        Who::FutexFloor => pingpong_procs::<u64, _>(&FutexLink::new(), &FutexLink::new(), &pp, d),
        _ => by_size!(size, latency_of(who, &pp, d)),
    })
}

fn latency_of<T: Pod + Send>(who: Who, pp: &PingPong, d: Duration) -> Latency {
    let size = size_of::<T>();
    match who {
        Who::SpscRing => pingpong_procs::<T, _>(
            &SpscRing::new(PINGPONG_CAPACITY, size),
            &SpscRing::new(PINGPONG_CAPACITY, size),
            pp,
            d,
        ),
        Who::QueueSpin | Who::QueueBlock | Who::QueueWoken => {
            let spin = who == Who::QueueSpin;
            pingpong_procs(
                &QueueLink::<T>::new(PINGPONG_CAPACITY, spin),
                &QueueLink::<T>::new(PINGPONG_CAPACITY, spin),
                pp,
                d,
            )
        }
        Who::UnixSocket => pingpong_procs::<T, _>(&SocketLink::new(), &SocketLink::new(), pp, d),
        Who::IpcChannel => pingpong_procs::<T, _>(&IpcLink::new(), &IpcLink::new(), pp, d),
        Who::Crossbeam => pingpong_threads(
            &CrossbeamLink::<T>::new(PINGPONG_CAPACITY, d),
            &CrossbeamLink::<T>::new(PINGPONG_CAPACITY, d),
            pp,
        ),
        Who::AtomicFloor | Who::FutexFloor => unreachable!("8-byte words, handled by `latency`"),
    }
}

// ---- streams ------------------------------------------------------------------------

/// Messages a stream producer stages: as many as fit in 256 KiB, 2 to 64.
/// 64 messages of up to 4 KiB lie between a sequence number's store and the
/// send that reads it, so the store has long left the store buffer.
fn stage_len(size: usize) -> usize {
    ((256 << 10) / size.max(1)).clamp(2, 64)
}

/// Most consumers of a stream.
const MAX_CONSUMERS: usize = 8;

/// The start line and the consumers' reports, in a shared map.
#[repr(C)]
struct StreamCtl {
    go: AtomicU32,
    ready: AtomicU32,
    producers_done: AtomicU32,
    _pad: u32,
    received: [AtomicU64; MAX_CONSUMERS],
    seq_sum: [AtomicU64; MAX_CONSUMERS],
    end_ns: [AtomicU64; MAX_CONSUMERS],
}

struct Stream {
    producers: usize,
    consumers: usize,
    total: u64,
    map: SharedMap,
}

impl Stream {
    fn new(producers: usize, consumers: usize, total: u64) -> Self {
        assert!((1..=MAX_CONSUMERS).contains(&consumers) && producers >= 1);
        Self {
            producers,
            consumers,
            total,
            map: SharedMap::new(4096),
        }
    }

    fn ctl(&self) -> &StreamCtl {
        // SAFETY: `at` checked bounds and alignment; the zero-filled bytes are a
        // valid StreamCtl (atomics and padding) living as long as `self.map`.
        unsafe { &*self.map.at::<StreamCtl>(0) }
    }

    /// Producers 0..P alternate between the CPUs, consumers start on the other one.
    fn cpu(&self, i: usize) -> Option<usize> {
        if i < self.producers {
            cpu_for(&[0, 1], i)
        } else {
            cpu_for(&[1, 0], i - self.producers)
        }
    }

    fn wait_go(&self) -> bool {
        let ctl = self.ctl();
        ctl.ready.fetch_add(1, Ordering::Release);
        os::futex_wake(&ctl.ready, 1);
        let give_up = Instant::now() + Duration::from_secs(60);
        // Acquire: pairs with the Release store of `go` in `start`.
        while ctl.go.load(Ordering::Acquire) == 0 {
            if Instant::now() > give_up {
                return false;
            }
            os::futex_wait(&ctl.go, 0, Some(Duration::from_millis(100)));
        }
        true
    }

    fn work<T: Pod, L: Link<T>>(&self, link: &L, i: usize) -> i32 {
        if !self.wait_go() {
            return 2;
        }
        let ctl = self.ctl();
        let mut m = T::zeroed();
        if i < self.producers {
            // Producer i sends i+1, i+1+P, ...: together 1..=total, each once.
            // Each sequence number is written into a staged message
            // `stage.len()` sends before that message goes out (see
            // [`stage_len`]), never just before: a send that copies a
            // message whose first 8 bytes were stored an instant earlier
            // reads them with wider loads, which the CPU cannot forward from
            // that store, so the copy waits until every older store has left
            // the store buffer, the previous messages' stores into shared
            // lines included. That stall serialised the minimal ring's
            // stores and cut its 64 B stream to a third (13 against 35-41 M
            // msgs/s here; a perf profile put 96% of its producer's samples
            // on the copy's first loads).
            let step = self.producers as u64;
            let mut stage = vec![T::zeroed(); stage_len(size_of::<T>())];
            let lead = stage.len() as u64 * step;
            let mut seq = i as u64 + 1;
            for (k, msg) in (0u64..).zip(stage.iter_mut()) {
                set_seq(msg, seq + k * step);
            }
            let mut k = 0;
            while seq <= self.total {
                let msg = &mut stage[k];
                link.send(msg);
                set_seq(msg, seq + lead);
                seq += step;
                k = if k + 1 == stage.len() { 0 } else { k + 1 };
            }
            // AcqRel: the last producer sees every other producer's sends done, so
            // the sentinels go after all messages.
            let done = ctl.producers_done.fetch_add(1, Ordering::AcqRel) + 1;
            if done as usize == self.producers {
                set_seq(&mut m, SENTINEL);
                for _ in 0..self.consumers {
                    link.send(&m);
                }
            }
        } else {
            let j = i - self.producers;
            let (mut n, mut sum) = (0u64, 0u64);
            loop {
                link.recv(&mut m);
                let s = seq_of(&m);
                if s == SENTINEL {
                    break;
                }
                n += 1;
                sum = sum.wrapping_add(s);
            }
            ctl.end_ns[j].store(now_ns(), Ordering::Relaxed);
            ctl.received[j].store(n, Ordering::Relaxed);
            ctl.seq_sum[j].store(sum, Ordering::Relaxed);
        }
        0
    }

    /// Waits for every worker at the start line, releases them, returns the start time.
    fn start(&self) -> u64 {
        let ctl = self.ctl();
        let all = u32::try_from(self.producers + self.consumers).expect("worker count");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Acquire: pairs with the workers' Release increments of `ready`.
            let r = ctl.ready.load(Ordering::Acquire);
            if r == all {
                break;
            }
            assert!(Instant::now() < deadline, "workers did not get ready");
            os::futex_wait(&ctl.ready, r, Some(Duration::from_millis(100)));
        }
        let t0 = now_ns();
        // Release: pairs with the workers' Acquire load of `go`.
        ctl.go.store(1, Ordering::Release);
        os::futex_wake(&ctl.go, u32::MAX);
        t0
    }

    /// Checks that every message arrived once; the time from the start to the last consumer done.
    fn result(&self, t0: u64, what: &str) -> Duration {
        let ctl = self.ctl();
        let c = self.consumers;
        let n: u64 = ctl.received[..c]
            .iter()
            .map(|x| x.load(Ordering::Relaxed))
            .sum();
        let sum = ctl.seq_sum[..c]
            .iter()
            .fold(0u64, |a, x| a.wrapping_add(x.load(Ordering::Relaxed)));
        let expect = (u128::from(self.total) * u128::from(self.total + 1) / 2) as u64;
        assert_eq!(n, self.total, "{what}: messages lost or duplicated");
        assert_eq!(sum, expect, "{what}: wrong messages received");
        let end = ctl.end_ns[..c]
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .max()
            .unwrap_or(t0);
        Duration::from_nanos(end.saturating_sub(t0))
    }
}

/// One stream run: `producers` processes send `total` messages (together)
/// over `link` to `consumers` processes; the time from the start line to the
/// last consumer done.
fn stream_procs<T: Pod, L: Link<T>>(
    link: &L,
    producers: usize,
    consumers: usize,
    total: u64,
    what: &str,
    deadline: Duration,
) -> Duration {
    let st = Stream::new(producers, consumers, total);
    let mut t0 = 0;
    run_procs(
        producers + consumers,
        |i| st.cpu(i),
        |i| st.work(link, i),
        || t0 = st.start(),
        deadline,
    );
    st.result(t0, what)
}

/// The same with threads of this process.
fn stream_threads<T: Pod, L: Link<T> + Sync>(
    link: &L,
    producers: usize,
    consumers: usize,
    total: u64,
    what: &str,
) -> Duration {
    let st = Stream::new(producers, consumers, total);
    let mut t0 = 0;
    run_threads(
        producers + consumers,
        |i| st.cpu(i),
        |i| st.work(link, i),
        || t0 = st.start(),
    );
    st.result(t0, what)
}

/// One stream run of `who`: `total` messages of `size` bytes from
/// `producers` to `consumers` (`None`: no such case, see [`Who::has_stream`]).
pub(crate) fn throughput(
    who: Who,
    size: usize,
    producers: usize,
    consumers: usize,
    total: u64,
    sz: &QSizes,
) -> Option<Duration> {
    if !who.has_stream(producers, consumers) {
        return None;
    }
    let d = sz.deadline;
    Some(by_size!(
        size,
        stream_of(who, producers, consumers, total, d)
    ))
}

fn stream_of<T: Pod + Send>(who: Who, p: usize, c: usize, total: u64, d: Duration) -> Duration {
    let size = size_of::<T>();
    let cap = stream_capacity(size);
    let what = who.name();
    match who {
        Who::SpscRing => stream_procs::<T, _>(&SpscRing::new(cap, size), p, c, total, what, d),
        Who::QueueSpin => stream_procs(&QueueLink::<T>::new(cap, true), p, c, total, what, d),
        Who::QueueBlock => stream_procs(&QueueLink::<T>::new(cap, false), p, c, total, what, d),
        Who::UnixSocket => stream_procs::<T, _>(&SocketLink::new(), p, c, total, what, d),
        Who::IpcChannel => stream_procs::<T, _>(&IpcLink::new(), p, c, total, what, d),
        Who::Crossbeam => stream_threads(&CrossbeamLink::<T>::new(cap, d), p, c, total, what),
        Who::AtomicFloor | Who::FutexFloor | Who::QueueWoken => {
            unreachable!("latency-only cases")
        }
    }
}

// ---- Python -----------------------------------------------------------------------

/// Python's `multiprocessing.Queue` (`python/queue.py`): one-way latency
/// p50/p99 for 8 B and 4 KiB, 1 -> 1 msgs/s for every size.
#[derive(Debug, Clone, Default)]
pub(crate) struct PythonRun {
    /// (size, p50 ns, p99 ns)
    pub(crate) latency: Vec<(usize, f64, f64)>,
    /// (size, msgs/s)
    pub(crate) stream: Vec<(usize, f64)>,
}

/// Runs `python/queue.py`, or says why it could not.
pub(crate) fn python_queue(sz: &QSizes) -> Result<PythonRun, String> {
    let pin = if allowed_cpus().len() >= 2 {
        "pin"
    } else {
        "nopin"
    };
    let out = crate::support::run_python(
        "queue.py",
        &[
            &sz.python_rtts.to_string(),
            &sz.python_bytes.to_string(),
            pin,
        ],
    )?;
    let num = |key: String| {
        crate::support::json_number(&out, &key)
            .ok_or_else(|| format!("no {key} in python output: {out:?}"))
    };
    let mut r = PythonRun::default();
    for size in LAT_SIZES {
        r.latency.push((
            size,
            num(format!("lat{size}_p50_ns"))?,
            num(format!("lat{size}_p99_ns"))?,
        ));
    }
    for size in SIZES {
        r.stream
            .push((size, num(format!("tput{size}_msgs_per_s"))?));
    }
    Ok(r)
}
