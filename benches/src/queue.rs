//! The cases of `queue` and `queue_compare` (issue 4): who carries the
//! messages ([`Who`]), the one-way latency of each (a ping-pong) and its
//! throughput in N -> M streams.
//!
//! Messages are `Pod` values of the message size (`u64`, `[u8; 64]`,
//! `[u8; 4096]`, `[u8; 65536]`: `Queue` has no bytes path yet) whose first
//! 8 bytes carry a sequence number.

use std::time::Duration;

use bytemuck::Pod;

use crate::links::{
    AtomicLink, ByteLink, CrossbeamLink, FutexLink, InPlaceLink, IpcLink, Link, QueueLink,
    SocketLink, SpscRing, seq_of, set_seq,
};
use crate::pingpong::{self, Latency};
use crate::sizes::LinkSizes;
use crate::stream::{SENTINEL, Stream};

/// The message sizes of the issue, in bytes.
pub const SIZES: [usize; 4] = [8, 64, 4096, 65536];
/// The stream shapes: (producers, consumers).
pub const SHAPES: [(usize, usize); 3] = [(1, 1), (2, 2), (4, 1)];

/// Slots of a stream's queue or ring (and crossbeam's bound): 4 MiB of
/// payload, between 8 and 1024 slots.
fn stream_capacity(size: usize) -> usize {
    ((4 << 20) / size).clamp(8, 1024)
}

/// Slots of a ping-pong's queues (one message in flight at a time).
const PINGPONG_CAPACITY: usize = 64;

/// Who carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
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
    /// `Queue::put_with` / `get_into`: the message copied once each way,
    /// from the user's buffer into the slot and from the slot into the
    /// user's buffer (streams 1 -> 1 only).
    QueueInPlace,
    /// `ByteQueue::put_bytes` / `get_bytes_into` the user's buffer (1 -> 1 streams
    /// and latency).
    ByteQueue,
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
    /// The ping-pong contestants, in table order.
    pub const LATENCY: [Self; 10] = [
        Self::AtomicFloor,
        Self::SpscRing,
        Self::QueueSpin,
        Self::FutexFloor,
        Self::QueueWoken,
        Self::QueueBlock,
        Self::ByteQueue,
        Self::UnixSocket,
        Self::IpcChannel,
        Self::Crossbeam,
    ];
    /// The stream contestants, in table order.
    pub const STREAM: [Self; 8] = [
        Self::SpscRing,
        Self::QueueSpin,
        Self::QueueBlock,
        Self::QueueInPlace,
        Self::ByteQueue,
        Self::UnixSocket,
        Self::IpcChannel,
        Self::Crossbeam,
    ];

    /// The bench id and table label.
    pub fn name(self) -> &'static str {
        match self {
            Self::AtomicFloor => "atomic_pingpong",
            Self::SpscRing => "spsc_ring",
            Self::QueueSpin => "shmproc_queue_spin",
            Self::FutexFloor => "futex_pingpong",
            Self::QueueBlock => "shmproc_queue",
            Self::QueueInPlace => "shmproc_queue_inplace",
            Self::ByteQueue => "shmproc_bytequeue",
            Self::QueueWoken => "shmproc_queue_woken",
            Self::UnixSocket => "unix_seqpacket",
            Self::IpcChannel => "ipc_channel",
            Self::Crossbeam => "crossbeam_threads",
        }
    }

    /// The untimed pause before each ping (nanoseconds): the receiver is
    /// asleep when the message comes.
    pub fn gap_ns(self) -> u64 {
        match self {
            Self::FutexFloor | Self::QueueWoken => 20_000,
            _ => 0,
        }
    }

    /// Busy-poll contestants: their ping-pongs time a batch of round trips
    /// per sample.
    pub fn is_busy(self) -> bool {
        matches!(self, Self::AtomicFloor | Self::SpscRing | Self::QueueSpin)
    }

    /// System-call contestants: their streams get the smaller budget.
    pub fn is_syscall(self) -> bool {
        matches!(self, Self::UnixSocket | Self::IpcChannel)
    }

    /// Whether this contestant has a ping-pong of `size`-byte messages.
    pub fn has_latency(self, size: usize) -> bool {
        if self == Self::QueueInPlace {
            return false;
        }
        !matches!(self, Self::AtomicFloor | Self::FutexFloor) || size == 8
    }

    /// Whether this contestant has a stream of this shape: the spinning
    /// ones only 1 -> 1, where each process has a CPU of its own (with more
    /// processes than CPUs, a spinner burns the time slice its peer needs).
    pub fn has_stream(self, producers: usize, consumers: usize) -> bool {
        match self {
            Self::SpscRing | Self::QueueSpin | Self::QueueInPlace | Self::ByteQueue => {
                (producers, consumers) == (1, 1)
            }
            Self::AtomicFloor | Self::FutexFloor | Self::QueueWoken => false,
            _ => true,
        }
    }
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

// ---- ping-pong ----------------------------------------------------------------------

/// One ping-pong run of `who` with `size`-byte messages, about `rtts`
/// round trips (`None`: no such case, see [`Who::has_latency`]), `batch`
/// round trips per timed sample (1 for the cases with a pause, see
/// [`Who::gap_ns`]).
pub fn latency(who: Who, size: usize, rtts: u64, batch: u64, sz: &LinkSizes) -> Option<Latency> {
    if !who.has_latency(size) {
        return None;
    }
    let bg = (batch, who.gap_ns());
    let d = sz.deadline;
    Some(match who {
        Who::AtomicFloor => {
            pingpong::procs::<u64, _>(&AtomicLink::new(), &AtomicLink::new(), rtts, bg, d)
        }
        Who::FutexFloor => {
            pingpong::procs::<u64, _>(&FutexLink::new(), &FutexLink::new(), rtts, bg, d)
        }
        _ => by_size!(size, latency_of(who, rtts, bg, d)),
    })
}

fn latency_of<T: Pod + Send>(who: Who, rtts: u64, bg: (u64, u64), d: Duration) -> Latency {
    let size = size_of::<T>();
    match who {
        Who::SpscRing => pingpong::procs::<T, _>(
            &SpscRing::new(PINGPONG_CAPACITY, size),
            &SpscRing::new(PINGPONG_CAPACITY, size),
            rtts,
            bg,
            d,
        ),
        Who::QueueSpin | Who::QueueBlock | Who::QueueWoken => {
            let spin = who == Who::QueueSpin;
            pingpong::procs(
                &QueueLink::<T>::new(PINGPONG_CAPACITY, spin),
                &QueueLink::<T>::new(PINGPONG_CAPACITY, spin),
                rtts,
                bg,
                d,
            )
        }
        Who::ByteQueue => pingpong::procs::<T, _>(
            &ByteLink::new(PINGPONG_CAPACITY, size),
            &ByteLink::new(PINGPONG_CAPACITY, size),
            rtts,
            bg,
            d,
        ),
        Who::UnixSocket => {
            pingpong::procs::<T, _>(&SocketLink::new(), &SocketLink::new(), rtts, bg, d)
        }
        Who::IpcChannel => pingpong::procs::<T, _>(&IpcLink::new(), &IpcLink::new(), rtts, bg, d),
        Who::Crossbeam => pingpong::threads(
            &CrossbeamLink::<T>::new(PINGPONG_CAPACITY, d),
            &CrossbeamLink::<T>::new(PINGPONG_CAPACITY, d),
            rtts,
            bg,
        ),
        Who::AtomicFloor | Who::FutexFloor => unreachable!("8-byte words, handled by `latency`"),
        Who::QueueInPlace => unreachable!("streams only"),
    }
}

// ---- streams ------------------------------------------------------------------------

/// Messages a stream producer stages: as many as fit in 256 KiB, 2 to 64.
/// 64 messages of up to 4 KiB lie between a sequence number's store and the
/// send that reads it, so the store has long left the store buffer.
fn stage_len(size: usize) -> usize {
    ((256 << 10) / size.max(1)).clamp(2, 64)
}

/// How a stream's workers hold their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// The user's copy-in/copy-out (issue 18): the producer sends each
    /// message from its own buffer of messages (`user_len`, up to 4 MiB,
    /// not L1-resident), and the consumer receives each one into its own
    /// buffer of the same size and reads the sequence number there. Each
    /// contestant's natural call does the copies (`Queue::put(src[k])`,
    /// `dst[k] = get()`; the ring's `send(&src[k])`, `recv(&mut dst[k])`;
    /// `put_with`/`get_into`).
    User,
    /// Staged (the earlier benches): the producer cycles through 64
    /// messages (up to 256 KiB), the consumer reuses one local message.
    Staged,
}

impl Pattern {
    /// The suffix of this pattern's bench ids.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::User => "",
            Self::Staged => "_staged",
        }
    }
}

/// Messages in a user-pattern worker's buffer: as many as fit in 4 MiB,
/// 2 to 1024 (a user's data, bigger than L1 and than the staged 256 KiB).
fn user_len(size: usize) -> usize {
    ((4 << 20) / size.max(1)).clamp(2, 1024)
}

/// Worker `i` of a stream over `link`: producer `i`, or consumer
/// `i - producers`.
fn stream_work<T: Pod, L: Link<T>>(st: &Stream, link: &L, i: usize, pattern: Pattern) -> i32 {
    if !st.wait_go() {
        return 2;
    }
    let mut m = T::zeroed();
    let len = match pattern {
        Pattern::User => user_len(size_of::<T>()),
        Pattern::Staged => stage_len(size_of::<T>()),
    };
    if i < st.producers {
        // Producer i sends i+1, i+1+P, ...: together 1..=total, each once.
        // Each sequence number is written into its message `len` sends
        // before that message goes out (see [`stage_len`]), never just
        // before: a send that copies a message whose first 8 bytes were
        // stored an instant earlier reads them with wider loads, which the
        // CPU cannot forward from that store, so the copy waits until every
        // older store has left the store buffer, the previous messages'
        // stores into shared lines included. That stall serialised the
        // minimal ring's stores and cut its 64 B stream to a third (13
        // against 35-41 M msgs/s here; a perf profile put 96% of its
        // producer's samples on the copy's first loads).
        let step = st.producers as u64;
        let mut stage = vec![T::zeroed(); len];
        let lead = stage.len() as u64 * step;
        let mut seq = i as u64 + 1;
        for (k, msg) in (0u64..).zip(stage.iter_mut()) {
            set_seq(msg, seq + k * step);
        }
        let mut k = 0;
        while seq <= st.total {
            let msg = &mut stage[k];
            link.send(msg);
            set_seq(msg, seq + lead);
            seq += step;
            k = if k + 1 == stage.len() { 0 } else { k + 1 };
        }
        if st.producer_done() {
            set_seq(&mut m, SENTINEL);
            for _ in 0..st.consumers {
                link.send(&m);
            }
        }
    } else {
        match pattern {
            Pattern::Staged => st.consume(i - st.producers, || {
                link.recv(&mut m);
                seq_of(&m)
            }),
            Pattern::User => {
                let mut dst = vec![T::zeroed(); len];
                let mut k = 0;
                st.consume(i - st.producers, || {
                    let d = &mut dst[k];
                    link.recv(d);
                    k = if k + 1 == len { 0 } else { k + 1 };
                    seq_of(std::hint::black_box(&*d))
                });
            }
        }
    }
    0
}

/// One stream run of `who`: `total` messages of `size` bytes from
/// `producers` to `consumers` (`None`: no such case, see [`Who::has_stream`]);
/// the time from the start line to the last consumer done.
pub fn throughput(
    who: Who,
    size: usize,
    producers: usize,
    consumers: usize,
    total: u64,
    sz: &LinkSizes,
    pattern: Pattern,
) -> Option<Duration> {
    if !who.has_stream(producers, consumers) {
        return None;
    }
    let st = Stream::new(producers, consumers, total);
    Some(by_size!(size, stream_of(who, &st, sz.deadline, pattern)))
}

fn stream_of<T: Pod + Send>(who: Who, st: &Stream, d: Duration, pattern: Pattern) -> Duration {
    fn procs<T: Pod, L: Link<T>>(
        st: &Stream,
        link: &L,
        what: &str,
        d: Duration,
        pattern: Pattern,
    ) -> Duration {
        st.procs(|i| stream_work(st, link, i, pattern), what, d)
    }
    let size = size_of::<T>();
    let cap = stream_capacity(size);
    let what = who.name();
    match who {
        Who::SpscRing => procs::<T, _>(st, &SpscRing::new(cap, size), what, d, pattern),
        Who::QueueSpin => procs(st, &QueueLink::<T>::new(cap, true), what, d, pattern),
        Who::QueueBlock => procs(st, &QueueLink::<T>::new(cap, false), what, d, pattern),
        Who::QueueInPlace => procs(st, &InPlaceLink::<T>::new(cap), what, d, pattern),
        Who::ByteQueue => procs::<T, _>(st, &ByteLink::new(cap, size), what, d, pattern),
        Who::UnixSocket => procs::<T, _>(st, &SocketLink::new(), what, d, pattern),
        Who::IpcChannel => procs::<T, _>(st, &IpcLink::new(), what, d, pattern),
        Who::Crossbeam => {
            let link = CrossbeamLink::<T>::new(cap, d);
            st.threads(|i| stream_work(st, &link, i, pattern), what)
        }
        Who::AtomicFloor | Who::FutexFloor | Who::QueueWoken => {
            unreachable!("latency-only cases")
        }
    }
}
