//! `Pipe` and `Connection`: Python's `multiprocessing.Pipe` over shared
//! memory.
//!
//! A pipe is **one segment holding two SPSC byte rings**, one per direction
//! (ring `e` is read by end `e` and written by the other end), a wake word
//! per direction, and an owner record per end. A [`Connection`] is one end.
//!
//! # Protocol
//! Each ring is a single-producer single-consumer byte ring (rtrb's scheme):
//! the producer owns `tail`, the consumer owns `head`, each on its own
//! 128-byte line; each side keeps a private cached copy of the other's index
//! and refreshes it only when the cached value says "full" / "empty".
//! Messages are **records** starting at 64-byte aligned positions:
//!
//! ```text
//!  +0  tag  u32   TAG_MSG or TAG_PAD
//!  +4  0    u32
//!  +8  len  u64   payload bytes (TAG_PAD: bytes skipped, to the ring's end)
//!  +16 seal u64   the record's position XOR the pipe's seal key
//!  +24 payload, when len <= 40 (one 64-byte line in all)
//!  +64 payload, when len > 40; the record spans 64 + round_up(len, 64)
//! ```
//!
//! The writer stores `tail` (Release) and then the record's seal (Release,
//! after the header and, for a record written whole, its payload). The
//! reader's fast paths watch only the seal at their head: a seal equal to
//! `head ^ key` says the record there is complete, and that `tail` covers
//! it (Acquire on the seal), so a busy-polling reader pulls one cache line
//! per message, and the writer's `tail` line stays in the writer's cache.
//! Positions never repeat (64-bit), so a seal from an earlier lap never
//! matches; the key (random, per pipe) keeps payload bytes left over from
//! earlier laps from matching by accident. Anything else (no seal yet, a
//! pad, a streamed message, EOF, corruption) takes the general path, which
//! reads `tail` and ignores seals.
//!
//! A record that fits in the ring is written contiguously (a pad record
//! fills the end of the ring when it would wrap) and published at once, so
//! the reader can borrow it in place ([`RecvGuard`]). A longer record
//! *streams*: its header is published first, then the payload in chunks
//! (wrapping around the ring) as the reader drains; SPSC makes this safe.
//!
//! # Untrusted memory
//! The ring capacity is read once at open, checked (a power of two, at
//! least [`MIN_CAPACITY`]) against the segment length, and kept locally.
//! Every position in the data area is `pos & mask` with the local mask;
//! indices and record headers read from the segment are validated (an
//! impossible value is a [`Corrupt`] error); payload bytes are copied with
//! `ptr::copy_nonoverlapping`, never viewed as `&[u8]` while the writer may
//! write them (see [`RecvGuard`] for the one borrowed view and its rule).
//!
//! # Ends and processes
//! One end is used by one process at a time: see [`Connection`] for the
//! claim, when a reader gets EOF, and what dropping an end closes.
//!
//! Messages of any size up to [`MAX_PIPE_MESSAGE_LEN`] stream through the
//! ring in chunks while the reader drains; a 1 GiB message through the
//! default 1 MiB rings is tested (`tests/pipe_gib.rs`).
//!
//! # Wake-ups
//! A waiter spins for about a futex wake-up's time (`futex::SPIN_TIME`, 10 µs)
//! at most: each end learns from its recent waits how long spinning pays
//! (`futex::SpinBudget`, as the queue's waits: a peer that answers back to
//! back keeps the full spin, one that sends every 100 µs gets about 1 µs of
//! it, so an idle reader does not burn a tenth of a core), then it
//! sets its bit in the ring's `waiters` word and sleeps on the ring's futex
//! word in bounded slices. The waker and the sleeper form a Dekker pair
//! (each stores, then loads the other's word). The hot side (a writer
//! publishing, a reader giving space back: every message) fences with a
//! compiler fence only, and the sleeping side issues
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` ([`shmproc_sync::asym`]),
//! which forces the barrier onto the hot side's CPU: a `SeqCst` fence per
//! message cost about 12 ns of a 105 ns one-way busy-poll hop. A process
//! that cannot call `membarrier` (an old kernel, a seccomp filter) sets the
//! ring's `heavy` word when it claims its end, and from then on both sides
//! use `SeqCst` fences.
//!
//! # Sentinel
//! Pipes made by [`Pipe::new`] / [`Pipe::create`] carry a socket pair per
//! direction (inherited by `fork`). [`Connection::sentinel`] returns a
//! descriptor that is readable while a message (or EOF) is waiting, for
//! `poll`/`shmproc_process::wait`. The writer writes one byte only on the
//! "nothing signalled" → "signalled" transition, and only once the reader
//! asked for the sentinel. A death without `close` is not signalled on the
//! descriptor (a `SIGKILL` runs no code); [`wait`] also checks liveness.
//! Ends opened by name in another process have no sentinel.
//!
//! # Layout (payload offsets)
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 128 | [`PipeMeta`]: capacity, mode, the two [`EndRecord`](layout::EndRecord)s |
//! | 128 | 384 | [`RingCtl`](layout::RingCtl) of ring 0 (read by end 0): tail, head, wake lines |
//! | 512 | 384 | [`RingCtl`](layout::RingCtl) of ring 1 |
//! | 3968 | cap | ring 0 data (4096 from the segment start) |
//! | 3968 + cap | cap | ring 1 data |
//!
//! # Code layout
//! `layout` (the segment and record formats), `byte_ring` (one SPSC ring:
//! the raw copies, seals, fences and wake-ups), `end` (opening, claiming,
//! releasing and closing an end), `send`, `recv` and `poll` (readiness, the
//! sentinels and [`wait`]); under `cfg(shmproc_loom)` only, `heap` (the
//! pipe on the heap, on which the same code runs under loom:
//! `tests/loom_pipe.rs`).
// For every submodule: no index into a slice that could panic.
#![deny(clippy::indexing_slicing)]
// Under the model only the ends are built (on `heap`), not `Pipe`'s
// constructors, the segment openers or `wait`.
#![cfg_attr(shmproc_loom, allow(unused_imports, unreachable_pub))]

mod byte_ring;
mod end;
mod error;
#[cfg(shmproc_loom)]
mod heap;
#[cfg(not(shmproc_loom))]
pub(crate) mod inspect;
mod layout;
mod poll;
mod recv;
mod send;

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmproc_shm::sync::real::Ordering;
use shmproc_shm::{PendingSegment, Segment, SegmentKind, SegmentLayout};

use crate::error::Corrupt;
pub use end::Connection;
pub use error::{
    ClaimError, ConnectionError, PollError, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
#[cfg(feature = "serde")]
pub use error::{RecvObjError, SendObjError};
#[cfg(shmproc_loom)]
pub use heap::{HeapPipe, heap_pipe};
#[cfg_attr(shmproc_loom, allow(unused_imports))]
pub use layout::{DEFAULT_CAPACITY, MAX_CAPACITY_BYTES, MAX_PIPE_MESSAGE_LEN, MIN_CAPACITY};
use layout::{META_OFF, MODE_DUPLEX, MODE_SIMPLEX, PipeMeta, SPEC, payload_len, seal_key};
use poll::Sentinels;
#[cfg(not(shmproc_loom))]
pub use poll::wait;
pub use recv::RecvGuard;
pub use send::SendGuard;

/// Whether a pipe carries messages both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeMode {
    /// Both ends send and receive (Python's `Pipe()`).
    Duplex,
    /// The first end only receives, the second only sends (Python's
    /// `Pipe(duplex=False)`).
    Simplex,
}

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// The first connection of the pair (the reader of a simplex pipe).
    First,
    /// The second connection of the pair (the writer of a simplex pipe).
    Second,
}

impl PipeEnd {
    const fn index(self) -> usize {
        match self {
            PipeEnd::First => 0,
            PipeEnd::Second => 1,
        }
    }
}

type Result<T, E = ConnectionError> = std::result::Result<T, E>;

/// When a blocking call gives up: the one parameter of every `_until`
/// operation, from which its four forms are one-liners (`op`: `Never`,
/// `try_op`: `Now`, `op_timeout`: `Within`, `op_deadline`: `At`).
///
/// `Within` is turned into an instant only when the call has to wait (the
/// fast paths read no clock), and `Now` never reads the clock.
#[derive(Debug, Clone, Copy)]
pub(super) enum Until {
    /// No deadline.
    Never,
    /// Already passed: one attempt, no waiting.
    Now,
    /// This long after the call starts waiting.
    Within(Duration),
    /// At this instant.
    At(Instant),
}

impl Until {
    /// `timeout` from when the call starts waiting (zero: [`Now`](Self::Now)).
    pub(super) fn within(timeout: Duration) -> Self {
        if timeout.is_zero() {
            Until::Now
        } else {
            Until::Within(timeout)
        }
    }

    /// Whether there is no deadline.
    pub(super) fn is_never(&self) -> bool {
        matches!(self, Until::Never)
    }

    /// Whether this is one attempt with no waiting.
    pub(super) fn is_now(&self) -> bool {
        matches!(self, Until::Now)
    }

    /// Fixes a `Within` to an instant (a deadline past `Instant`'s range
    /// is none).
    fn start(&mut self) {
        if let Until::Within(d) = *self {
            *self = Instant::now()
                .checked_add(d)
                .map_or(Until::Never, Until::At);
        }
    }

    /// Whether the deadline has passed.
    pub(super) fn expired(&mut self) -> bool {
        self.start();
        match *self {
            Until::Never | Until::Within(_) => false,
            Until::Now => true,
            Until::At(t) => Instant::now() >= t,
        }
    }

    /// The next sleep: the time left, capped at `max`; `None` once passed.
    pub(super) fn slice(&mut self, max: Duration) -> Option<Duration> {
        self.start();
        match *self {
            Until::Never | Until::Within(_) => Some(max),
            Until::Now => None,
            Until::At(t) => {
                let left = t.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(max))
            }
        }
    }
}

/// The error of an operation's `try_` or `_timeout`/`_deadline` form: its
/// blocking form's error `E`, plus what the form returns when the deadline
/// passed first (`Empty`, `Full`, `Timeout`).
pub(super) trait GaveUp<E>: From<E> {
    /// The deadline passed before the operation could start.
    const GAVE_UP: Self;
}

impl GaveUp<RecvError> for TryRecvError {
    const GAVE_UP: Self = TryRecvError::Empty;
}
impl GaveUp<RecvError> for RecvTimeoutError {
    const GAVE_UP: Self = RecvTimeoutError::Timeout;
}
impl GaveUp<SendError> for TrySendError {
    const GAVE_UP: Self = TrySendError::Full;
}
impl GaveUp<SendError> for SendTimeoutError {
    const GAVE_UP: Self = SendTimeoutError::Timeout;
}

/// An `_until` operation's result (`Ok(None)`: the deadline passed before it
/// started) as its `try_` or `_timeout`/`_deadline` form returns it.
#[inline]
pub(super) fn gave_up<T, E, F: GaveUp<E>>(r: Result<Option<T>, E>) -> Result<T, F> {
    r.map_err(F::from)?.ok_or(F::GAVE_UP)
}

/// Runs an `_until` operation with [`Until::Never`] to completion: it never
/// gives up (`Ok(None)` would only mean "try again").
#[inline]
pub(super) fn forever<T, E>(mut op: impl FnMut() -> Result<Option<T>, E>) -> Result<T, E> {
    loop {
        if let Some(v) = op()? {
            return Ok(v);
        }
    }
}

/// Python's `multiprocessing.Pipe`: makes a pair of [`Connection`]s.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use std::time::Duration;
/// use shmproc_channel::{Pipe, RecvError, TryRecvError};
/// let (mut a, mut b) = Pipe::new()?;
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.recv_bytes()?, b"ping");
/// assert_eq!(b.try_recv_bytes(), Err(TryRecvError::Empty));
/// b.send(&42u64)?;
/// assert_eq!(a.recv_timeout::<u64>(Duration::from_secs(1))?, 42);
/// b.close();
/// assert_eq!(a.recv_bytes(), Err(RecvError::Eof));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipe {
    capacity: usize,
    mode: PipeMode,
}

impl Default for Pipe {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
            mode: PipeMode::Duplex,
        }
    }
}

#[cfg(not(shmproc_loom))]
impl Pipe {
    /// A duplex pipe (anonymous segment, shared by `fork`), rings of
    /// [`DEFAULT_CAPACITY`].
    ///
    /// # Errors
    /// [`ConnectionError::Segment`] or [`ConnectionError::Os`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection, Connection)> {
        Self::default().make(None)
    }

    /// A one-way pipe: the first connection receives, the second sends.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn simplex() -> Result<(Connection, Connection)> {
        Self::options(PipeMode::Simplex, DEFAULT_CAPACITY).make(None)
    }

    /// Options for [`build`](Self::build) / [`build_named`](Self::build_named):
    /// the mode and the ring size per direction (rounded up to a power of two).
    pub fn options(mode: PipeMode, capacity: usize) -> Self {
        Self { capacity, mode }
    }

    /// Makes an anonymous pipe with these options.
    ///
    /// # Errors
    /// [`ConnectionError::InvalidArgument`], and as [`new`](Self::new).
    pub fn build(&self) -> Result<(Connection, Connection)> {
        self.make(None)
    }

    /// Makes the named pipe `name` with these options; another process opens
    /// an end with [`Connection::open`].
    ///
    /// # Errors
    /// As [`build`](Self::build), and `AlreadyExists`.
    pub fn build_named(&self, name: &str) -> Result<(Connection, Connection)> {
        self.make(Some(name))
    }

    /// Makes the named duplex pipe `name` (default capacity). The segment is
    /// unlinked when both connections of this process are dropped.
    ///
    /// # Errors
    /// As [`build_named`](Self::build_named).
    pub fn create(name: &str) -> Result<(Connection, Connection)> {
        Self::default().make(Some(name))
    }

    fn make(&self, name: Option<&str>) -> Result<(Connection, Connection)> {
        if !(MIN_CAPACITY..=MAX_CAPACITY_BYTES).contains(&self.capacity) {
            return Err(capacity_error(self.capacity));
        }
        let cap = self.capacity.next_power_of_two() as u64;
        let len = payload_len(cap).ok_or_else(|| capacity_error(self.capacity))?;
        let layout = SegmentLayout::new(SegmentKind::PIPE, SPEC.with_capacity(cap), len);
        let pending: PendingSegment = match name {
            Some(n) => Segment::create(n, &layout),
            None => Segment::create_anonymous(&layout),
        }
        .map_err(ConnectionError::segment("create", "pipe"))?;
        let seg = pending.segment();
        let m = seg
            .get::<PipeMeta>(shmproc_shm::Offset::in_payload(META_OFF as u64))
            .map_err(|_| Corrupt::new("pipe meta offset", META_OFF as u64))?;
        m.capacity.store(cap, Ordering::Relaxed);
        let mode = match self.mode {
            PipeMode::Duplex => MODE_DUPLEX,
            PipeMode::Simplex => MODE_SIMPLEX,
        };
        m.mode.store(mode, Ordering::Relaxed);
        m.seal_key.store(seal_key(), Ordering::Relaxed);
        let seg = Arc::new(pending.publish());
        let socks = |op| -> Result<(UnixStream, UnixStream)> {
            let (a, b) = UnixStream::pair().map_err(|source| ConnectionError::Os { op, source })?;
            for s in [&a, &b] {
                s.set_nonblocking(true)
                    .map_err(|source| ConnectionError::Os { op, source })?;
            }
            Ok((a, b))
        };
        let (r0, w0) = socks("socketpair")?;
        let (r1, w1) = socks("socketpair")?;
        let dup = |s: &UnixStream| {
            s.try_clone()
                .map_err(|source| ConnectionError::Os { op: "dup", source })
        };
        let s0 = Sentinels {
            read: r0,
            self_signal: dup(&w0)?,
            peer: dup(&w1)?,
        };
        let s1 = Sentinels {
            read: r1,
            self_signal: w1,
            peer: w0,
        };
        let a = Connection::attach(Arc::clone(&seg), 0, Some(s0))?;
        let b = Connection::attach(seg, 1, Some(s1))?;
        Ok((a, b))
    }
}

#[cfg(not(shmproc_loom))]
fn capacity_error(capacity: usize) -> ConnectionError {
    ConnectionError::invalid(
        "pipe",
        format!("capacity {capacity}: must be {MIN_CAPACITY}..={MAX_CAPACITY_BYTES}"),
    )
}
