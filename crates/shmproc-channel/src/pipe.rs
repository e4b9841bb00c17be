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
//! **One end is used by one process at a time.** An end is *claimed* by the
//! first process that uses it (its pid and start time go in the end's owner
//! record); a process that uses an end claimed by another process takes it
//! over, and the previous owner then gets [`ConnectionError::NotOwner`] from
//! its next call: that is how misuse is detected (one relaxed load per
//! call). A reader gets EOF when the writing end is closed, or when the
//! process that claimed it is dead (checked at every bounded sleep, so
//! within about 50 ms of a `SIGKILL`).
//!
//! Dropping a [`Connection`] closes the end only in the process that
//! claimed it: a never-used end dropped in the parent after a `fork` may be
//! the child's, so it stays open. Call [`Connection::close`] to close an end
//! explicitly, claimed or not. A never-claimed end whose creator process
//! died counts as closed. [`Connection::claim_now`] claims an end before its
//! first use (a `Process` child does so as it receives one), so that the
//! peer gets EOF if the claimer dies without ever using it.
//!
//! Messages of any size up to [`MAX_PIPE_MESSAGE_LEN`] stream through the
//! ring in chunks while the reader drains; a 1 GiB message through the
//! default 1 MiB rings is tested (`tests/pipe_gib.rs`).
//!
//! # Wake-ups
//! A waiter spins for about a futex wake-up's time (`futex::SPIN_TIME`, 10 µs), then
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
//! | 0 | 128 | [`PipeMeta`]: capacity, mode, the two [`EndRecord`]s |
//! | 128 | 384 | [`RingCtl`] of ring 0 (read by end 0): tail, head, wake lines |
//! | 512 | 384 | [`RingCtl`] of ring 1 |
//! | 3968 | cap | ring 0 data (4096 from the segment start) |
//! | 3968 + cap | cap | ring 1 data |
#![allow(unsafe_code)] // Raw copies into and out of the shared rings; every block justified.
#![deny(clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;
use shmproc_shm::sync::real::{AtomicU32, AtomicU64, Ordering, fence};
use shmproc_shm::{
    OpenOptions, PendingSegment, Segment, SegmentKind, SegmentLayout, ShmSafe, TypeSpec,
};
use shmproc_sync::futex::{self, Deadline, SLICE, Spin, Wake};
use shmproc_sync::{asym, owner};

pub use crate::error::ConnectionError;
use crate::error::Corrupt;

/// The smallest ring (per direction), in bytes.
pub const MIN_CAPACITY: usize = 4096;
/// The largest ring (per direction), in bytes.
pub const MAX_CAPACITY_BYTES: usize = 1 << 34;
/// The ring size (per direction) of [`Pipe::new`]. For streams of large
/// messages a larger ring ([`Pipe::options`]) pays: at 64 KiB, copy-in/
/// copy-out through a 4 MiB ring ran about 1.3x faster than through 1 MiB
/// on the reference machine (`benches/pipe_compare`), because the reader
/// then copies from the L3 instead of from the writer's L2.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// The longest message a pipe carries (1 TiB: any length a process can hold).
pub const MAX_PIPE_MESSAGE_LEN: u64 = 1 << 40;

const TAG_MSG: u32 = 0x4753_4d50; // "PMSG"
const TAG_PAD: u32 = 0x4441_5050; // "PPAD"
const LINE: u64 = 64;
const HDR: u64 = 16;
/// Where a record's seal sits in its header line.
const SEAL: u64 = 16;
/// Where an inline payload starts.
const INLINE: u64 = SEAL + 8;
const INLINE_MAX: u64 = LINE - INLINE;
const META_OFF: usize = 0;
const CTL_OFF: [usize; 2] = [128, 512];
const DATA0_OFF: u64 = 4096 - shmproc_shm::DATA_OFFSET as u64;
const MODE_DUPLEX: u32 = 1;
const MODE_SIMPLEX: u32 = 2;

/// Records at least this long are flagged `busy` while the writer fills
/// them (about a microsecond of copying and up).
const BUSY_MIN: u64 = 16 << 10;
/// How long a reader keeps spinning while the writer is `busy`, in spin
/// iterations (milliseconds), before it sleeps as usual.
const BUSY_SPIN_LIMIT: u32 = 1 << 16;

const READER_WAITING: u32 = 1;
const WRITER_WAITING: u32 = 2;

const SPEC: TypeSpec = TypeSpec {
    // Layout 2: sealed records (the seal key in `PipeMeta`, inline payload
    // at +24). Layout 3: the wake line's `heavy` word, light fences on the
    // hot paths (a layout 2 peer would sleep after a SeqCst fence only).
    // The name feeds the fingerprint, so older segments are refused.
    type_name: "shmproc_channel::Pipe/3",
    size: 1,
    align: 1,
    capacity: 0,
    slot_size: 0,
};

/// The owner record and state of one end.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `owner`: `pid << 40 \| start time`, 0 while unclaimed |
/// | 8 | 4 | `closed`: 1 once the end was closed |
/// | 12 | 4 | reserved |
#[repr(C)]
#[derive(Debug)]
pub struct EndRecord {
    owner: AtomicU64,
    closed: AtomicU32,
    _reserved: u32,
}

/// The first line of a pipe segment.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | `capacity`: bytes per ring (a power of two) |
/// | 8 | 4 | `mode`: 1 duplex, 2 simplex (end 0 reads, end 1 writes) |
/// | 12 | 4 | reserved |
/// | 16 | 32 | `ends`: two [`EndRecord`]s |
/// | 48 | 8 | `seal_key`: random, set at creation (see the module docs) |
/// | 56 | 72 | padding |
#[repr(C, align(128))]
#[derive(Debug)]
pub struct PipeMeta {
    capacity: AtomicU64,
    mode: AtomicU32,
    _reserved: u32,
    ends: [EndRecord; 2],
    seal_key: AtomicU64,
    _pad: [u8; 72],
}

/// One 128-byte line holding an index.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct IndexLine {
    value: AtomicU64,
    _pad: [u8; 120],
}

/// The wake line of a ring.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `wake`: futex word, bumped by a waker |
/// | 4 | 4 | `waiters`: `READER_WAITING \| WRITER_WAITING` bits |
/// | 8 | 4 | `armed`: 1 once the reader asked for its sentinel |
/// | 12 | 4 | `signalled`: 1 while a byte may sit in the sentinel |
/// | 16 | 4 | `busy`: 1 while the writer fills a large record (a hint) |
/// | 20 | 4 | `heavy`: 1 once a process using the pipe cannot issue `membarrier` (see [`shmproc_sync::asym`]) |
#[repr(C, align(128))]
#[derive(Debug)]
pub struct WakeLine {
    wake: AtomicU32,
    waiters: AtomicU32,
    armed: AtomicU32,
    signalled: AtomicU32,
    busy: AtomicU32,
    heavy: AtomicU32,
    _pad: [u8; 104],
}

/// The control block of one ring.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 128 | `tail` (written by the producer) |
/// | 128 | 128 | `head` (written by the consumer) |
/// | 256 | 128 | [`WakeLine`] |
#[repr(C)]
#[derive(Debug)]
pub struct RingCtl {
    tail: IndexLine,
    head: IndexLine,
    wake: WakeLine,
}

const _: () = {
    assert!(size_of::<EndRecord>() == 16);
    assert!(size_of::<PipeMeta>() == 128);
    assert!(offset_of!(PipeMeta, ends) == 16);
    assert!(offset_of!(PipeMeta, seal_key) == 48);
    assert!(SEAL % 8 == 0 && SEAL >= HDR && INLINE + INLINE_MAX == LINE);
    assert!(size_of::<IndexLine>() == 128);
    assert!(size_of::<WakeLine>() == 128);
    assert!(offset_of!(WakeLine, busy) == 16);
    assert!(offset_of!(WakeLine, heavy) == 20);
    assert!(offset_of!(RingCtl, tail) == 0);
    assert!(offset_of!(RingCtl, head) == 128);
    assert!(offset_of!(RingCtl, wake) == 256);
    assert!(size_of::<RingCtl>() == 384);
    assert!(CTL_OFF[0] >= META_OFF + size_of::<PipeMeta>());
    assert!(CTL_OFF[1] == CTL_OFF[0] + size_of::<RingCtl>());
    assert!(CTL_OFF[1] + size_of::<RingCtl>() <= DATA0_OFF as usize);
    assert!((DATA0_OFF as usize + shmproc_shm::DATA_OFFSET) % 4096 == 0);
    assert!(!std::mem::needs_drop::<PipeMeta>());
    assert!(!std::mem::needs_drop::<RingCtl>());
};

// SAFETY: fixed-width integers and atomics only, `repr(C)`, explicit padding;
// any byte pattern is a valid value.
unsafe impl ShmSafe for PipeMeta {}
// SAFETY: as for `PipeMeta`.
unsafe impl ShmSafe for RingCtl {}

/// A fresh random seal key (std's per-process random hasher keys, mixed
/// with the time): not a secret from the peer, only unguessable for payload
/// bytes that were not made from it.
fn seal_key() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()))
}

fn payload_len(cap: u64) -> Option<u64> {
    DATA0_OFF.checked_add(cap.checked_mul(2)?)
}

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

/// Python's `multiprocessing.Pipe`: makes a pair of [`Connection`]s.
///
/// ```
/// # fn main() -> Result<(), shmproc_channel::ConnectionError> {
/// use shmproc_channel::Pipe;
/// let (mut a, mut b) = Pipe::new()?;
/// a.send_bytes(b"ping")?;
/// assert_eq!(b.recv_bytes()?, b"ping");
/// b.send(&42u64)?;
/// assert_eq!(a.recv::<u64>()?, 42);
/// b.close();
/// assert!(a.recv_bytes().unwrap_err().is_eof());
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
    /// [`ConnectionError::Capacity`], and as [`new`](Self::new).
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
            return Err(ConnectionError::Capacity(self.capacity));
        }
        let cap = self.capacity.next_power_of_two() as u64;
        let len = payload_len(cap).ok_or(ConnectionError::Capacity(self.capacity))?;
        let layout = SegmentLayout::new(SegmentKind::PIPE, SPEC.with_capacity(cap), len);
        let pending: PendingSegment = match name {
            Some(n) => Segment::create(n, &layout),
            None => Segment::create_anonymous(&layout),
        }
        .map_err(ConnectionError::segment("create"))?;
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

#[derive(Debug)]
struct Sentinels {
    /// Readable while ring `end` has something (read side of our pair).
    read: UnixStream,
    /// The write side of our own pair, to re-signal after a drain.
    self_signal: UnixStream,
    /// The write side of the peer's pair.
    peer: UnixStream,
}

/// Process-local view of one ring.
#[derive(Debug, Clone, Copy)]
struct Ring {
    ctl: NonNull<RingCtl>,
    data: NonNull<u8>,
    cap: u64,
    mask: u64,
}

impl Ring {
    #[inline]
    fn ctl(&self) -> &RingCtl {
        // SAFETY: `ctl` points into the mapping kept alive by the
        // connection's `Arc<Segment>` (checked in `attach`), and `RingCtl`
        // holds only atomics and padding: shared access is sound.
        unsafe { self.ctl.as_ref() }
    }

    /// The hot side of this ring's Dekker pairs (a writer publishing, a
    /// reader giving space back), between its index store and its load of
    /// `waiters`/`armed`: a compiler fence when this process is registered
    /// for `membarrier` (`light_ok`) and no user of the pipe said it cannot
    /// issue one, else a `SeqCst` fence. See [`shmproc_sync::asym`].
    #[inline]
    fn light_fence(&self, light_ok: bool) {
        asym::light(light_ok && self.ctl().wake.heavy.load(Ordering::Relaxed) == 0);
    }

    /// The sleeping side of this ring's Dekker pairs, between its store of
    /// `waiters` (or of `armed`/`signalled`) and its re-check of the index:
    /// a `membarrier` (or a `SeqCst` fence where that is unavailable, and
    /// then the ring's `heavy` word tells the hot side to fence too).
    fn heavy_fence(&self) {
        if !asym::heavy() {
            self.ctl().wake.heavy.store(1, Ordering::Relaxed);
        }
    }

    /// The fence of a waiter about to sleep: a `SeqCst` fence before its
    /// first (light, short) sleep, the heavy fence before every later one
    /// (see `shmproc_sync::asym::LIGHT_SLEEP`). Returns the longest that
    /// sleep may last.
    fn sleep_fence(&self, light: bool) -> Duration {
        if light {
            fence(Ordering::SeqCst);
            asym::LIGHT_SLEEP
        } else {
            self.heavy_fence();
            SLICE
        }
    }

    /// Tells the hot sides of this ring that a user cannot issue
    /// `membarrier` (sticky).
    fn require_fences(&self) {
        self.ctl().wake.heavy.store(1, Ordering::Relaxed);
        // SeqCst: orders the flag before this process's later waits.
        fence(Ordering::SeqCst);
    }

    /// Copies `n` bytes from `src` into the ring at position `pos`,
    /// wrapping around the end. `n <= cap`.
    fn copy_in(&self, pos: u64, src: &[u8]) {
        let off = pos & self.mask;
        let n = src.len() as u64;
        debug_assert!(n <= self.cap);
        let first = n.min(self.cap - off) as usize;
        let (a, b) = src.split_at(first);
        // SAFETY: `off + first <= cap` by construction (`off < cap` from the
        // local mask); the data area is `cap` bytes inside the mapping; the
        // bytes are between our tail and the reader's head + cap, which the
        // reader does not touch (SPSC protocol); `src` is local memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                a.as_ptr(),
                self.data.as_ptr().wrapping_add(off as usize),
                a.len(),
            )
        };
        if !b.is_empty() {
            // SAFETY: `b.len() = n - first <= cap`, at the start of the area.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.data.as_ptr(), b.len()) };
        }
    }

    /// Copies `n` bytes at position `pos` (wrapping) out of the ring into
    /// `dst`. `dst.len() <= cap`.
    fn copy_out(&self, pos: u64, dst: *mut u8, n: u64) {
        let off = pos & self.mask;
        debug_assert!(n <= self.cap);
        let first = n.min(self.cap - off);
        // SAFETY: `off + first <= cap` (as in `copy_in`); `dst` is valid for
        // `n` bytes (callers' contract, local memory); the bytes were
        // published by the writer (Acquire load of `tail` before this).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.data.as_ptr().wrapping_add(off as usize),
                dst,
                first as usize,
            )
        };
        if n > first {
            // SAFETY: `n - first <= cap` bytes at the start of the area; `dst
            // + first` stays inside the `n` bytes of `dst`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.as_ptr(),
                    dst.wrapping_add(first as usize),
                    (n - first) as usize,
                )
            };
        }
    }

    fn write_header(&self, pos: u64, tag: u32, len: u64) {
        self.copy_in(pos, &header_bytes(tag, len));
    }

    /// Copies the line at data offset `off` into `line`, when `off + LINE
    /// <= cap` (else leaves it alone).
    #[inline]
    fn read_line(&self, off: u64, line: &mut [u8; LINE as usize]) {
        if off <= self.cap - LINE {
            // SAFETY: `off + LINE <= cap`: inside the data area. Copied into
            // local memory, never borrowed; the caller uses the bytes only
            // once the record's seal (or `tail`) says they are published.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.as_ptr().wrapping_add(off as usize),
                    line.as_mut_ptr(),
                    line.len(),
                )
            };
        }
    }

    /// The seal word of the record line at data offset `off`, when `off` is
    /// a line start inside the ring.
    #[inline]
    #[allow(clippy::cast_ptr_alignment)] // checked: `off` is a multiple of 64, the area page-aligned
    fn seal_word(&self, off: u64) -> Option<&AtomicU64> {
        if off % LINE != 0 || off > self.cap - LINE {
            return None;
        }
        let p = self
            .data
            .as_ptr()
            .wrapping_add((off + SEAL) as usize)
            .cast::<u64>();
        // SAFETY: `off + SEAL + 8 <= cap`: inside the data area, which the
        // connection's `Arc<Segment>` keeps mapped (and `&self` borrows);
        // 8-aligned (the data area is page-aligned, `off + SEAL` a multiple
        // of 8); the word is only ever accessed atomically by the protocol
        // (the writer stores it, readers load it) while it is a seal.
        Some(unsafe { AtomicU64::from_ptr(p) })
    }

    /// Seals the record at `pos` (see the module docs).
    #[inline]
    fn seal(&self, pos: u64, key: u64) {
        if let Some(w) = self.seal_word(pos & self.mask) {
            // Release: pairs with the reader's Acquire load in `sealed`: the
            // header, the payload of a whole record and `tail` (stored
            // before) are visible to a reader that sees the seal.
            w.store(pos ^ key, Ordering::Release);
        }
    }

    /// Whether the record at `pos` (data offset `off`) carries its seal.
    #[inline]
    fn sealed(&self, pos: u64, off: u64, key: u64) -> bool {
        // Acquire: pairs with the Release store in `seal`.
        self.seal_word(off)
            .is_some_and(|w| w.load(Ordering::Acquire) == pos ^ key)
    }

    /// The tag of the line at data offset `off` (0 when the line is not
    /// inside the ring): a fixed-size read, no wrap-around path.
    #[inline]
    fn line_tag(&self, off: u64) -> u32 {
        let mut t = [0u8; 4];
        if off <= self.cap - LINE {
            // SAFETY: `off + 4 <= off + LINE <= cap`: inside the data area;
            // copied into local memory, never borrowed.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.as_ptr().wrapping_add(off as usize),
                    t.as_mut_ptr(),
                    t.len(),
                )
            };
        }
        u32::from_le_bytes(t)
    }

    #[inline]
    fn read_header(&self, pos: u64) -> (u32, u64) {
        let mut h = [0u8; HDR as usize];
        let off = pos & self.mask;
        if off <= self.cap - HDR {
            // SAFETY: `off + HDR <= cap`: inside the data area; the bytes are
            // copied (a fixed-size copy, no call), never borrowed.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.as_ptr().wrapping_add(off as usize),
                    h.as_mut_ptr(),
                    h.len(),
                )
            };
        } else {
            self.copy_out(pos, h.as_mut_ptr(), HDR);
        }
        parse_header(&h)
    }

    #[inline]
    fn wake(&self, bit: u32) {
        let w = &self.ctl().wake;
        if w.waiters.load(Ordering::Relaxed) & bit != 0 {
            w.waiters.fetch_and(!bit, Ordering::Relaxed);
            // Release: pairs with the waiter's Acquire load of `wake` before
            // it re-checks the indices.
            w.wake.fetch_add(1, Ordering::Release);
            futex::wake(&w.wake, u32::MAX);
        }
    }
}

/// Where a record's payload starts, and how many bytes the record spans.
fn record_shape(len: u64) -> (u64, u64) {
    if len <= INLINE_MAX {
        (INLINE, LINE)
    } else {
        (LINE, LINE + len.div_ceil(LINE) * LINE)
    }
}

/// A record header's 16 bytes.
#[inline]
fn header_bytes(tag: u32, len: u64) -> [u8; HDR as usize] {
    let mut h = [0u8; HDR as usize];
    let (t, l) = h.split_at_mut(8);
    if let Some(t) = t.first_chunk_mut::<4>() {
        *t = tag.to_le_bytes();
    }
    l.copy_from_slice(&len.to_le_bytes());
    h
}

/// A record header's tag and length, from its first bytes.
#[inline]
fn parse_header(h: &[u8]) -> (u32, u64) {
    let tag = h.first_chunk::<4>().map_or(0, |t| u32::from_le_bytes(*t));
    let len = h
        .get(8..)
        .and_then(|l| l.first_chunk::<8>())
        .map_or(0, |l| u64::from_le_bytes(*l));
    (tag, len)
}

/// Copies a short `src` into `dst` (the shorter length) in 8-byte words:
/// no call for the few bytes of an inline record.
#[inline]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let (Some(dst), Some(src)) = (dst.get_mut(..n), src.get(..n)) else {
        return;
    };
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// A record header at the reader's head.
#[derive(Debug, Clone, Copy)]
struct Rec {
    len: u64,
    payload: u64,
    span: u64,
    streamed: bool,
}

/// One end of a [`Pipe`] (Python's `multiprocessing.connection.Connection`).
///
/// Send and receive byte messages of any length ([`send_bytes`](Self::send_bytes),
/// [`recv_bytes`](Self::recv_bytes)), `Pod` values ([`send`](Self::send),
/// [`recv`](Self::recv)) and, with the `serde` feature, objects
/// (`send_obj`, `recv_obj`, postcard). See the [module docs](self) for the
/// ownership rule (one process per end at a time) and EOF.
///
/// # Fork
/// A forked child inherits the connection (the mapping is shared); the first
/// call in the child claims the end for the child.
#[derive(Debug)]
pub struct Connection {
    seg: Arc<Segment>,
    end: usize,
    can_read: bool,
    can_write: bool,
    rx: Ring,
    tx: Ring,
    meta: NonNull<PipeMeta>,
    claimed_pid: u32,
    /// This process is registered for `membarrier` (set at the claim): the
    /// hot paths may use compiler fences (see [`Ring::light_fence`]).
    light: bool,
    closed: bool,
    rx_head: u64,
    rx_cached_tail: u64,
    tx_tail: u64,
    tx_cached_head: u64,
    /// The pipe's seal key (read once at attach; any value is safe).
    seal_key: u64,
    sentinels: Option<Sentinels>,
}

// SAFETY: the raw pointers point into the mapping owned by `seg` (`Arc`,
// `Send + Sync`); all shared state is atomics; local state moves with the value.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens end `end` of the named pipe `name` (made with
    /// [`Pipe::create`]/[`Pipe::build_named`]) in this process. It has no
    /// [`sentinel`](Self::sentinel).
    ///
    /// # Errors
    /// [`ConnectionError::Segment`] (not found, not a pipe, truncated...),
    /// [`ConnectionError::Corrupt`].
    pub fn open(name: &str, end: PipeEnd) -> Result<Connection> {
        let seg = OpenOptions::new(SegmentKind::PIPE, SPEC)
            .payload_len(payload_len)
            .open(name)
            .map_err(ConnectionError::segment("open"))?;
        Self::attach(Arc::new(seg), end.index(), None)
    }

    /// Opens end `end` of the pipe whose segment descriptor is `fd` (an
    /// anonymous pipe's [`segment`](Self::segment) fd, passed to another
    /// process). Like [`open`](Self::open) it has no sentinel, and it is an
    /// opener: dropping it never unlinks or unmaps anything but its own view.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd, end: PipeEnd) -> Result<Connection> {
        let seg = OpenOptions::new(SegmentKind::PIPE, SPEC)
            .payload_len(payload_len)
            .open_fd(fd)
            .map_err(ConnectionError::segment("open"))?;
        Self::attach(Arc::new(seg), end.index(), None)
    }

    /// The pipe's segment (its [`fd`](Segment::fd) is what
    /// [`open_fd`](Self::open_fd) takes).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Gives up this process's claim on the end, for handing it to another
    /// process (`shmproc_process` does this when a `Connection` is passed to
    /// a child): when this process holds the claim, the owner record goes
    /// back to "unclaimed", so the next process to use the end claims it.
    /// Afterwards this handle's calls fail with
    /// [`NotOwner`](ConnectionError::NotOwner) and its drop does not close
    /// the end. A never-used end is left as it is (the drop of a never-used
    /// handle never closes). Messages already received stay received; the
    /// next owner starts at the published indices.
    pub fn release_claim(&self) {
        let me = owner::my_pid();
        if self.claimed_pid != me {
            return;
        }
        let rec = self.my_end().owner.load(Ordering::Relaxed);
        if (rec >> 40) as u32 == me {
            // Release: publishes our last stores of head/tail (already
            // Release) before the record that lets the next owner claim;
            // pairs with the claimer's AcqRel swap. A failed exchange means
            // someone took the end over meanwhile: nothing to give up.
            let _ =
                self.my_end()
                    .owner
                    .compare_exchange(rec, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    fn attach(seg: Arc<Segment>, end: usize, sentinels: Option<Sentinels>) -> Result<Self> {
        let cap = seg.capacity();
        if !cap.is_power_of_two() || cap < MIN_CAPACITY as u64 || cap > MAX_CAPACITY_BYTES as u64 {
            return Err(Corrupt::new("pipe capacity", cap).into());
        }
        let need = payload_len(cap).ok_or(Corrupt::new("pipe capacity", cap))?;
        if (seg.data_len() as u64) < need {
            return Err(Corrupt::new("pipe segment length", seg.data_len() as u64).into());
        }
        let base = NonNull::new(seg.data_ptr()).ok_or(Corrupt::new("null mapping", 0))?;
        let meta = base.cast::<PipeMeta>();
        let ring = |i: usize| -> Ring {
            let idx = i.min(1);
            let ctl_off = CTL_OFF.get(idx).copied().unwrap_or(CTL_OFF[0]);
            let data_off = DATA0_OFF + cap * idx as u64;
            Ring {
                // SAFETY: `ctl_off + 384 <= DATA0_OFF <= need <= data_len`.
                ctl: unsafe { base.add(ctl_off) }.cast(),
                // SAFETY: `data_off + cap <= need <= data_len`.
                data: unsafe { base.add(data_off as usize) },
                cap,
                mask: cap - 1,
            }
        };
        // SAFETY: `PipeMeta` is at payload offset 0 inside the mapping,
        // atomics only.
        let mode = unsafe { meta.as_ref() }.mode.load(Ordering::Relaxed);
        let (can_read, can_write) = match (mode, end) {
            (MODE_DUPLEX, _) => (true, true),
            (MODE_SIMPLEX, 0) => (true, false),
            (MODE_SIMPLEX, _) => (false, true),
            (m, _) => return Err(Corrupt::new("pipe mode", u64::from(m)).into()),
        };
        Ok(Connection {
            rx: ring(end),
            tx: ring(1 - end),
            seg,
            end,
            can_read,
            can_write,
            meta,
            claimed_pid: 0,
            light: false,
            closed: false,
            rx_head: 0,
            rx_cached_tail: 0,
            tx_tail: 0,
            tx_cached_head: 0,
            // SAFETY: as for `mode` above.
            seal_key: unsafe { meta.as_ref() }.seal_key.load(Ordering::Relaxed),
            sentinels,
        })
    }

    #[inline]
    fn meta(&self) -> &PipeMeta {
        // SAFETY: payload offset 0 of the mapping kept alive by `seg`; atomics only.
        unsafe { self.meta.as_ref() }
    }

    #[inline]
    fn my_end(&self) -> &EndRecord {
        let [a, b] = &self.meta().ends;
        if self.end == 0 { a } else { b }
    }

    #[inline]
    fn peer_end(&self) -> &EndRecord {
        let [a, b] = &self.meta().ends;
        if self.end == 0 { b } else { a }
    }

    /// Which end this is.
    pub fn end(&self) -> PipeEnd {
        if self.end == 0 {
            PipeEnd::First
        } else {
            PipeEnd::Second
        }
    }

    /// The segment's name (`None` for an anonymous pipe).
    pub fn name(&self) -> Option<&str> {
        self.seg.name().map(|n| n.as_str())
    }

    /// Whether this process claimed the end and still holds it, and it is
    /// open: the fast paths' check (one relaxed load of our owner record);
    /// `false` sends the caller to [`claim`](Self::claim), which reports why.
    #[inline]
    fn holds_end(&self) -> bool {
        let me = owner::my_pid();
        !self.closed
            && self.claimed_pid == me
            && (self.my_end().owner.load(Ordering::Relaxed) >> 40) as u32 == me
    }

    /// Claims the end for this process (first use here), or checks that we
    /// still hold it.
    /// Claims the end for this process now rather than at its first use, so
    /// that from here on its peer gets EOF when this process dies, even if it
    /// never used the end. `shmproc-process` calls it in a child as it
    /// unpacks a `Connection` from its arguments. Taking over an end another
    /// process claimed makes that process's next call fail with
    /// [`ConnectionError::NotOwner`].
    ///
    /// # Errors
    /// [`ConnectionError::Closed`] when the end is closed.
    pub fn claim_now(&mut self) -> Result<()> {
        self.claim()
    }

    fn claim(&mut self) -> Result<()> {
        if self.closed {
            return Err(ConnectionError::Closed);
        }
        let me = owner::my_pid();
        let rec = self.my_end().owner.load(Ordering::Relaxed);
        if self.claimed_pid == me {
            if (rec >> 40) as u32 != me {
                return Err(ConnectionError::NotOwner {
                    owner: (rec >> 40) as u32,
                });
            }
            return Ok(());
        }
        if self.my_end().closed.load(Ordering::Acquire) != 0 {
            self.closed = true;
            return Err(ConnectionError::Closed);
        }
        // AcqRel: Acquire pairs with the previous owner's Release publication
        // of head/tail; Release publishes our claim.
        self.my_end()
            .owner
            .swap(owner::my_record(), Ordering::AcqRel);
        self.claimed_pid = me;
        self.light = asym::enable();
        if !self.light {
            // This process can only fence: both rings' hot sides must too.
            self.rx.require_fences();
            self.tx.require_fences();
        }
        // Acquire: pairs with the previous owner's Release stores of the indices.
        self.rx_head = self.rx.ctl().head.value.load(Ordering::Acquire);
        self.rx_cached_tail = self.rx_head;
        self.tx_tail = self.tx.ctl().tail.value.load(Ordering::Acquire);
        self.tx_cached_head = self.tx_tail.saturating_sub(self.tx.cap);
        Ok(())
    }

    /// Whether the peer end was closed (one load, no liveness check).
    #[inline]
    fn peer_closed(&self) -> bool {
        // Acquire: pairs with the Release store of `closed` in `close`.
        self.peer_end().closed.load(Ordering::Acquire) != 0
    }

    /// Whether the peer end is closed or its process is gone. `check_alive`
    /// reads `/proc` (slow path only).
    fn peer_gone(&self, check_alive: bool) -> bool {
        if self.peer_closed() {
            return true;
        }
        if !check_alive {
            return false;
        }
        let p = self.peer_end();
        let rec = p.owner.load(Ordering::Relaxed);
        if rec == 0 {
            // Unclaimed: held by the creator's process as far as we know.
            let creator = self.seg.creator_pid();
            return creator != owner::my_pid() && !owner::owner_alive(creator, 0);
        }
        !owner::owner_alive((rec >> 40) as u32, rec)
    }

    // ------------------------------------------------------------ writing

    fn check_write(&mut self) -> Result<()> {
        if !self.can_write {
            return Err(ConnectionError::WrongDirection("send"));
        }
        self.claim()?;
        // One Acquire load; a dead (not closed) peer is noticed when the
        // ring fills and the writer sleeps.
        if self.peer_gone(false) {
            return Err(ConnectionError::BrokenPipe);
        }
        Ok(())
    }

    #[inline]
    fn tx_free(&mut self, need: u64) -> Result<bool> {
        let used = self.tx_tail.wrapping_sub(self.tx_cached_head);
        if self.tx.cap.saturating_sub(used) >= need && used <= self.tx.cap {
            return Ok(true);
        }
        // Acquire: pairs with the reader's Release store of `head`, so its
        // copies out of the freed bytes are done before we overwrite them.
        let head = self.tx.ctl().head.value.load(Ordering::Acquire);
        let used = self.tx_tail.wrapping_sub(head);
        if used > self.tx.cap {
            return Err(Corrupt::new("pipe head", head).into());
        }
        self.tx_cached_head = head;
        Ok(self.tx.cap - used >= need)
    }

    /// Waits until `need` bytes are free in the sending ring.
    fn wait_space(&mut self, need: u64) -> Result<()> {
        let mut spin = Spin::new();
        let mut light = true;
        loop {
            if self.tx_free(need)? {
                return Ok(());
            }
            if self.peer_gone(false) {
                return Err(ConnectionError::BrokenPipe);
            }
            if spin.more() {
                std::hint::spin_loop();
                continue;
            }
            let ring = self.tx;
            let w = &ring.ctl().wake;
            // Acquire: pairs with the reader's Release `fetch_add` in `Ring::wake`.
            let seq = w.wake.load(Ordering::Acquire);
            w.waiters.fetch_or(WRITER_WAITING, Ordering::Relaxed);
            // The heavy fence (after a light first sleep): pairs with the
            // reader's light fence between its store of `head` and its load
            // of `waiters` (Dekker: one of us sees the other).
            let cap = ring.sleep_fence(light);
            if self.tx_free(need)? {
                return Ok(());
            }
            if self.peer_closed() {
                return Err(ConnectionError::BrokenPipe);
            }
            let woke = futex::wait(&w.wake, seq, cap);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return Err(ConnectionError::BrokenPipe);
            }
        }
    }

    /// Publishes bytes up to `tx_tail` that start no record (chunks of a
    /// streamed message).
    #[inline]
    fn publish_tail(&mut self) {
        self.publish(None);
    }

    /// Publishes up to `tx_tail`, sealing the record that starts at `pos`.
    #[inline]
    fn publish_record(&mut self, pos: u64) {
        self.publish(Some(pos));
    }

    #[inline]
    fn publish(&mut self, record: Option<u64>) {
        let ctl = self.tx.ctl();
        // Release: pairs with the reader's Acquire load of `tail`: the
        // record's bytes are visible before the index that covers them.
        ctl.tail.value.store(self.tx_tail, Ordering::Release);
        if let Some(pos) = record {
            // After `tail`: a reader that sees the seal sees `tail` cover
            // the record.
            self.tx.seal(pos, self.seal_key);
        }
        // The light fence: pairs with the reader's heavy fence after it sets
        // `waiters` / clears `signalled` (Dekker).
        self.tx.light_fence(self.light);
        self.tx.wake(READER_WAITING);
        if ctl.wake.armed.load(Ordering::Relaxed) != 0 {
            signal(
                &ctl.wake.signalled,
                self.sentinels.as_ref().map(|s| &s.peer),
            );
        }
    }

    /// Sets or clears the `busy` hint of the sending ring: while it is set,
    /// a reader waiting for data keeps spinning instead of sleeping (a large
    /// record is being filled and will be published soon), so neither side
    /// pays a futex wake per record. Only a hint: a reader spins at most
    /// [`BUSY_SPIN_LIMIT`] rounds on it, whatever its value.
    #[inline]
    fn set_busy(&self, busy: bool) {
        self.tx
            .ctl()
            .wake
            .busy
            .store(u32::from(busy), Ordering::Relaxed);
    }

    /// Pads the sending ring to its end when `span` bytes would wrap.
    fn pad_for(&mut self, span: u64) -> Result<()> {
        let off = self.tx_tail & self.tx.mask;
        let room = self.tx.cap - off;
        if span > room {
            self.wait_space(room)?;
            let pos = self.tx_tail;
            self.tx.write_header(pos, TAG_PAD, room);
            self.tx_tail = pos.wrapping_add(room);
            self.publish_record(pos);
        }
        Ok(())
    }

    /// Sends one byte message (Python's `send_bytes`), of any length up to
    /// [`MAX_PIPE_MESSAGE_LEN`]. A message longer than the ring streams
    /// through while the reader drains it. Blocks while the ring is full.
    ///
    /// # Errors
    /// [`ConnectionError::BrokenPipe`] when the peer closed or died;
    /// [`Closed`](ConnectionError::Closed), [`NotOwner`](ConnectionError::NotOwner),
    /// [`WrongDirection`](ConnectionError::WrongDirection), [`Corrupt`](ConnectionError::Corrupt).
    #[inline]
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<()> {
        if self.try_send_fast(buf) {
            return Ok(());
        }
        self.send_bytes_slow(buf)
    }

    /// The fast path of [`send_bytes`](Self::send_bytes): a record that fits
    /// before the ring's end, in space known to be free, on an end this
    /// process holds, the peer open. `false`: nothing was written, and the
    /// general path (which waits, pads, streams and reports errors) runs.
    #[inline]
    fn try_send_fast(&mut self, buf: &[u8]) -> bool {
        let len = buf.len() as u64;
        let (_, span) = record_shape(len);
        let off = self.tx_tail & self.tx.mask;
        if !self.can_write
            || span > self.tx.cap - off
            || !self.holds_end()
            || self.peer_closed()
            || !matches!(self.tx_free(span), Ok(true))
        {
            return false;
        }
        let at = self.tx.data.as_ptr().wrapping_add(off as usize);
        if len <= INLINE_MAX {
            // Header and payload at once; the seal word is left alone (a
            // reader may be watching it) and stored last.
            let mut line = [0u8; LINE as usize];
            let (h, rest) = line.split_at_mut(HDR as usize);
            h.copy_from_slice(&header_bytes(TAG_MSG, len));
            copy_small(
                rest.get_mut((INLINE - HDR) as usize..).unwrap_or_default(),
                buf,
            );
            let (h, p) = line.split_at(HDR as usize);
            let p = p.get((INLINE - HDR) as usize..).unwrap_or_default();
            // SAFETY: `off + HDR <= off + span <= cap`: inside the data area;
            // the line is free space (`tx_free`) beyond the published tail,
            // which the reader does not touch (SPSC protocol).
            unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), at, h.len()) };
            // SAFETY: `off + INLINE + INLINE_MAX = off + LINE <= cap`, free
            // space as above.
            unsafe {
                std::ptr::copy_nonoverlapping(p.as_ptr(), at.wrapping_add(INLINE as usize), p.len())
            };
        } else {
            let busy = len >= BUSY_MIN;
            if busy {
                self.set_busy(true);
            }
            // SAFETY: `off + LINE + len <= off + span <= cap`: inside the data
            // area, free space as above; `buf` is local memory.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buf.as_ptr(),
                    at.wrapping_add(LINE as usize),
                    buf.len(),
                )
            };
            let h = header_bytes(TAG_MSG, len);
            // SAFETY: `off + HDR <= off + span <= cap`, free space as above.
            unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), at, h.len()) };
        }
        let pos = self.tx_tail;
        self.tx_tail = pos.wrapping_add(span);
        self.publish_record(pos);
        if len >= BUSY_MIN {
            self.set_busy(false);
        }
        true
    }

    #[inline(never)]
    fn send_bytes_slow(&mut self, buf: &[u8]) -> Result<()> {
        self.check_write()?;
        let len = buf.len() as u64;
        if len > MAX_PIPE_MESSAGE_LEN {
            return Err(ConnectionError::TooLong {
                len,
                max: MAX_PIPE_MESSAGE_LEN,
            });
        }
        let (payload, span) = record_shape(len);
        if span <= self.tx.cap {
            self.pad_for(span)?;
            self.wait_space(span)?;
            let pos = self.tx_tail;
            let busy = len >= BUSY_MIN;
            if busy {
                self.set_busy(true);
            }
            self.tx.copy_in(pos.wrapping_add(payload), buf);
            self.tx.write_header(pos, TAG_MSG, len);
            self.tx_tail = pos.wrapping_add(span);
            self.publish_record(pos);
            if busy {
                self.set_busy(false);
            }
            return Ok(());
        }
        // Streamed: the header line, then chunks as space frees up.
        self.wait_space(LINE)?;
        let pos = self.tx_tail;
        self.tx.write_header(pos, TAG_MSG, len);
        self.tx_tail = pos.wrapping_add(LINE);
        self.publish_record(pos);
        let mut rest = buf;
        while !rest.is_empty() {
            self.wait_space(LINE.min(rest.len() as u64))?;
            let free = self.tx.cap - self.tx_tail.wrapping_sub(self.tx_cached_head);
            let n = free.min(rest.len() as u64) as usize;
            let (now, later) = rest.split_at(n);
            self.tx.copy_in(self.tx_tail, now);
            self.tx_tail = self.tx_tail.wrapping_add(n as u64);
            self.publish_tail();
            rest = later;
        }
        let pad = self.tx_tail.wrapping_neg() & (LINE - 1);
        if pad > 0 {
            self.wait_space(pad)?;
            self.tx_tail = self.tx_tail.wrapping_add(pad);
            self.publish_tail();
        }
        Ok(())
    }

    /// Sends `buf[offset..offset + size]` (Python's `send_bytes(buf, offset, size)`).
    ///
    /// # Panics
    /// When the range is not inside `buf`.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send_bytes_range(&mut self, buf: &[u8], offset: usize, size: usize) -> Result<()> {
        let end = offset.checked_add(size).expect("offset + size overflows");
        let part = buf
            .get(offset..end)
            .expect("offset + size must be within the buffer");
        self.send_bytes(part)
    }

    /// Sends a `Pod` value as a message of `size_of::<T>()` bytes.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes).
    pub fn send<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.send_bytes(bytemuck::bytes_of(value))
    }

    /// Reserves `len` bytes in the sending ring, to be written in place and
    /// sent with [`SendGuard::commit`] (dropping the guard sends nothing).
    /// At most the ring size minus one line.
    ///
    /// # Errors
    /// [`ConnectionError::TooLarge`], and as [`send_bytes`](Self::send_bytes).
    pub fn reserve(&mut self, len: usize) -> Result<SendGuard<'_>> {
        self.check_write()?;
        let len64 = len as u64;
        let (payload, span) = record_shape(len64);
        if span > self.tx.cap {
            return Err(ConnectionError::TooLarge {
                len: len64,
                max: self.tx.cap - LINE,
            });
        }
        self.pad_for(span)?;
        self.wait_space(span)?;
        let off = (self.tx_tail.wrapping_add(payload) & self.tx.mask) as usize;
        // SAFETY: the record does not wrap (`pad_for`), so `off + len <= cap`,
        // inside the data area.
        let ptr = unsafe { self.tx.data.as_ptr().add(off) };
        // The caller fills the reservation next: a large one is `busy`
        // until committed or dropped.
        let busy = len64 >= BUSY_MIN;
        if busy {
            self.set_busy(true);
        }
        Ok(SendGuard {
            conn: self,
            ptr,
            len,
            busy,
        })
    }

    // ------------------------------------------------------------ reading

    fn check_read(&mut self) -> Result<()> {
        if !self.can_read {
            return Err(ConnectionError::WrongDirection("receive"));
        }
        self.claim()
    }

    /// Bytes available to read (refreshing the cached tail when needed).
    fn rx_avail(&mut self, need: u64) -> Result<u64> {
        let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
        if avail >= need && avail <= self.rx.cap {
            return Ok(avail);
        }
        // Acquire: pairs with the writer's Release store of `tail` in `publish_tail`.
        let tail = self.rx.ctl().tail.value.load(Ordering::Acquire);
        let avail = tail.wrapping_sub(self.rx_head);
        if avail > self.rx.cap {
            return Err(Corrupt::new("pipe tail", tail).into());
        }
        self.rx_cached_tail = tail;
        Ok(avail)
    }

    #[inline]
    fn publish_head(&mut self) {
        // Release: pairs with the writer's Acquire load of `head` in `tx_free`.
        self.rx
            .ctl()
            .head
            .value
            .store(self.rx_head, Ordering::Release);
        // The light fence: pairs with the writer's heavy fence in
        // `wait_space` (Dekker).
        self.rx.light_fence(self.light);
        self.rx.wake(WRITER_WAITING);
    }

    /// Waits until at least `need` bytes are readable. `Ok(false)`: the
    /// peer is gone and they will never come; `Err(Timeout)` at the deadline.
    fn wait_data(&mut self, need: u64, deadline: Deadline) -> Result<bool> {
        let mut spin = Spin::new();
        let mut light = true;
        // Without a deadline, keep spinning while the writer is filling a
        // large record (`busy`, bounded by BUSY_SPIN_LIMIT): it is about to
        // be published, and sleeping would cost both sides a futex call.
        let patient = deadline.slice(Duration::MAX) == Some(Duration::MAX);
        loop {
            if self.rx_avail(need)? >= need {
                return Ok(true);
            }
            if self.peer_gone(false) {
                return Ok(self.rx_avail(need)? >= need);
            }
            if (spin.more() && !deadline.expired())
                || (patient
                    && spin.count() < BUSY_SPIN_LIMIT
                    && self.rx.ctl().wake.busy.load(Ordering::Relaxed) != 0)
            {
                std::hint::spin_loop();
                continue;
            }
            if deadline.expired() {
                return Err(ConnectionError::Timeout);
            }
            let ring = self.rx;
            let w = &ring.ctl().wake;
            // Acquire: pairs with the writer's Release `fetch_add` in `Ring::wake`.
            let seq = w.wake.load(Ordering::Acquire);
            w.waiters.fetch_or(READER_WAITING, Ordering::Relaxed);
            // The heavy fence (after a light first sleep): pairs with the
            // writer's light fence in `publish` (Dekker).
            let cap = ring.sleep_fence(light);
            if self.rx_avail(need)? >= need {
                return Ok(true);
            }
            if self.peer_closed() {
                return Ok(self.rx_avail(need)? >= need);
            }
            let Some(slice) = deadline.slice(cap) else {
                return Err(ConnectionError::Timeout);
            };
            let woke = futex::wait(&w.wake, seq, slice);
            light = false;
            if woke == Wake::SliceElapsed && self.peer_gone(true) {
                return Ok(self.rx_avail(need)? >= need);
            }
        }
    }

    /// The next message's header, skipping pad records. Waits up to `deadline`.
    fn next_record(&mut self, deadline: Deadline) -> Result<Rec> {
        loop {
            if !self.wait_data(LINE, deadline)? {
                if self.rx_avail(1)? > 0 {
                    return Err(Corrupt::new("pipe record cut short", self.rx_head).into());
                }
                return Err(ConnectionError::Eof);
            }
            let (tag, len) = self.rx.read_header(self.rx_head);
            match tag {
                TAG_PAD => {
                    let room = self.rx.cap - (self.rx_head & self.rx.mask);
                    if len != room {
                        return Err(Corrupt::new("pipe pad length", len).into());
                    }
                    if !self.wait_data(len, deadline)? {
                        return Err(Corrupt::new("pipe pad cut short", len).into());
                    }
                    self.rx_head = self.rx_head.wrapping_add(len);
                    self.publish_head();
                }
                TAG_MSG => {
                    if len > MAX_PIPE_MESSAGE_LEN {
                        return Err(Corrupt::new("pipe message length", len).into());
                    }
                    let (payload, span) = record_shape(len);
                    let streamed = span > self.rx.cap;
                    if !streamed && (self.rx_head & self.rx.mask) + span > self.rx.cap {
                        return Err(Corrupt::new("pipe record wraps", len).into());
                    }
                    return Ok(Rec {
                        len,
                        payload,
                        span,
                        streamed,
                    });
                }
                other => return Err(Corrupt::new("pipe record tag", u64::from(other)).into()),
            }
        }
    }

    /// The fast path of the copying receives: a whole record that does not
    /// wrap, already published, on an end this process holds, whose length
    /// fits `dst` (equals it when `exact`). `None`: nothing was consumed (at
    /// most the cached tail was refreshed), and the general path (which
    /// waits, skips pads, streams and reports errors) runs.
    #[inline]
    fn try_recv_fast(&mut self, dst: &mut [u8], exact: bool) -> Option<usize> {
        if !self.can_read || !self.holds_end() {
            return None;
        }
        let head = self.rx_head;
        let off = head & self.rx.mask;
        // The seal says the record at the head is complete and `tail`
        // covers it (Acquire); none yet: the general path waits on `tail`.
        if !self.rx.sealed(head, off, self.seal_key) {
            return None;
        }
        let at = self.rx.data.as_ptr().wrapping_add(off as usize);
        let mut line = [0u8; LINE as usize];
        self.rx.read_line(off, &mut line);
        let (tag, len) = parse_header(&line);
        if tag != TAG_MSG || len > dst.len() as u64 || (exact && len != dst.len() as u64) {
            return None;
        }
        // A streamed message (longer than the ring) or a record that would
        // wrap (corrupt): the general path.
        let (_, span) = record_shape(len);
        if span > self.rx.cap - off {
            return None;
        }
        let n = len as usize;
        let dst = dst.get_mut(..n)?;
        if len <= INLINE_MAX {
            copy_small(dst, line.get(INLINE as usize..).unwrap_or_default());
        } else {
            // SAFETY: `off + LINE + len <= off + span <= cap`: inside the data
            // area; published (sealed, written before the seal); `dst` holds
            // `len` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(at.wrapping_add(LINE as usize), dst.as_mut_ptr(), n)
            };
        }
        self.rx_head = head.wrapping_add(span);
        // `tail` covers the record (see above): a cached tail left behind
        // the new head is raised to it, a lower bound of the real one.
        if self.rx_cached_tail.wrapping_sub(self.rx_head) > self.rx.cap {
            self.rx_cached_tail = self.rx_head;
        }
        self.publish_head();
        self.after_recv();
        Some(n)
    }

    /// Copies the body of `rec` (at the head) into `dst` (valid for
    /// `rec.len` bytes) and consumes the record.
    fn take_body(&mut self, rec: Rec, dst: *mut u8) -> Result<()> {
        if !rec.streamed {
            if !self.wait_data(rec.span, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            self.rx
                .copy_out(self.rx_head.wrapping_add(rec.payload), dst, rec.len);
            self.rx_head = self.rx_head.wrapping_add(rec.span);
            self.publish_head();
            self.after_recv();
            return Ok(());
        }
        self.rx_head = self.rx_head.wrapping_add(LINE);
        self.publish_head();
        let mut done = 0u64;
        while done < rec.len {
            if !self.wait_data(1, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            let avail = self.rx_cached_tail.wrapping_sub(self.rx_head);
            let n = avail.min(rec.len - done);
            // SAFETY: `done + n <= rec.len`, inside `dst` (caller's contract).
            let at = unsafe { dst.add(done as usize) };
            self.rx.copy_out(self.rx_head, at, n);
            self.rx_head = self.rx_head.wrapping_add(n);
            self.publish_head();
            done += n;
        }
        let pad = self.rx_head.wrapping_neg() & (LINE - 1);
        if pad > 0 {
            if !self.wait_data(pad, Deadline::NEVER)? {
                return Err(ConnectionError::Truncated);
            }
            self.rx_head = self.rx_head.wrapping_add(pad);
            self.publish_head();
        }
        self.after_recv();
        Ok(())
    }

    fn recv_vec(&mut self, max: u64, deadline: Deadline) -> Result<Vec<u8>> {
        self.check_read()?;
        let rec = self.next_record(deadline)?;
        if rec.len > max {
            return Err(ConnectionError::TooLong { len: rec.len, max });
        }
        let n = usize::try_from(rec.len).map_err(|_| ConnectionError::TooLong {
            len: rec.len,
            max: usize::MAX as u64,
        })?;
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| ConnectionError::TooLong {
                len: rec.len,
                max: 0,
            })?;
        self.take_body(rec, v.as_mut_ptr())?;
        // SAFETY: `take_body` initialised all `n` bytes of the reserved capacity.
        unsafe { v.set_len(n) };
        Ok(v)
    }

    /// Receives the next byte message (Python's `recv_bytes`). Blocks until
    /// one arrives or the peer is gone.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] when the peer closed (or died) and every
    /// message was received; [`Truncated`](ConnectionError::Truncated),
    /// [`Closed`](ConnectionError::Closed), [`NotOwner`](ConnectionError::NotOwner),
    /// [`WrongDirection`](ConnectionError::WrongDirection), [`Corrupt`](ConnectionError::Corrupt).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_vec(MAX_PIPE_MESSAGE_LEN, Deadline::NEVER)
    }

    /// As [`recv_bytes`](Self::recv_bytes), giving up after `timeout` when no
    /// message has started (a message that has started is received whole).
    ///
    /// # Errors
    /// [`ConnectionError::Timeout`], and as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_vec(MAX_PIPE_MESSAGE_LEN, Deadline::after(timeout))
    }

    /// Receives the next message if it is at most `max` bytes (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// # Errors
    /// [`ConnectionError::TooLong`] (the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_max(&mut self, max: usize) -> Result<Vec<u8>> {
        self.recv_vec(max as u64, Deadline::NEVER)
    }

    /// Receives the next message into `buf`, returning its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`ConnectionError::BufferTooShort`] with the length needed (the
    /// message stays readable), and as [`recv_bytes`](Self::recv_bytes).
    #[inline]
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        if let Some(n) = self.try_recv_fast(buf, false) {
            return Ok(n);
        }
        self.recv_bytes_into_slow(buf)
    }

    #[inline(never)]
    fn recv_bytes_into_slow(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        if rec.len > buf.len() as u64 {
            return Err(ConnectionError::BufferTooShort { needed: rec.len });
        }
        self.take_body(rec, buf.as_mut_ptr())?;
        Ok(rec.len as usize)
    }

    /// Receives a `Pod` value sent with [`send`](Self::send).
    ///
    /// # Errors
    /// [`ConnectionError::WrongSize`] (the message stays readable), and as
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn recv<T: Pod>(&mut self) -> Result<T> {
        let mut v = T::zeroed();
        if self
            .try_recv_fast(bytemuck::bytes_of_mut(&mut v), true)
            .is_some()
        {
            return Ok(v);
        }
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        let expected = size_of::<T>() as u64;
        if rec.len != expected {
            return Err(ConnectionError::WrongSize {
                expected,
                found: rec.len,
            });
        }
        self.take_body(rec, bytemuck::bytes_of_mut(&mut v).as_mut_ptr())?;
        Ok(v)
    }

    /// Receives the next message, borrowed in place in the ring when it fits
    /// (copied when it streamed). The message is consumed when the guard drops.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes).
    pub fn recv_bytes_ref(&mut self) -> Result<RecvGuard<'_>> {
        self.check_read()?;
        let rec = self.next_record(Deadline::NEVER)?;
        if rec.streamed {
            let mut v: Vec<u8> = Vec::new();
            let n = rec.len as usize;
            v.try_reserve_exact(n)
                .map_err(|_| ConnectionError::TooLong {
                    len: rec.len,
                    max: 0,
                })?;
            self.take_body(rec, v.as_mut_ptr())?;
            // SAFETY: `take_body` initialised all `n` bytes.
            unsafe { v.set_len(n) };
            return Ok(RecvGuard {
                conn: self,
                body: Body::Owned(v),
                span: 0,
            });
        }
        if !self.wait_data(rec.span, Deadline::NEVER)? {
            return Err(ConnectionError::Truncated);
        }
        let off = (self.rx_head.wrapping_add(rec.payload) & self.rx.mask) as usize;
        // SAFETY: the record does not wrap (checked in `next_record`), so the
        // payload is inside the data area.
        let ptr = unsafe { self.rx.data.as_ptr().add(off) };
        Ok(RecvGuard {
            span: rec.span,
            body: Body::InPlace {
                ptr,
                len: rec.len as usize,
            },
            conn: self,
        })
    }

    /// After consuming: keep the sentinel honest (drain it once the ring is
    /// empty).
    #[inline]
    fn after_recv(&self) {
        let w = &self.rx.ctl().wake;
        if w.armed.load(Ordering::Relaxed) == 0 || w.signalled.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.rx.ctl().tail.value.load(Ordering::Acquire) != self.rx_head {
            return;
        }
        self.rearm();
    }

    /// Drains the sentinel, then re-signals it if something is waiting.
    fn rearm(&self) {
        let Some(s) = &self.sentinels else { return };
        let mut buf = [0u8; 64];
        while matches!((&s.read).read(&mut buf), Ok(n) if n > 0) {}
        let w = &self.rx.ctl().wake;
        w.signalled.store(0, Ordering::Relaxed);
        // The heavy fence: pairs with the writer's light fence in `publish`
        // between its store of `tail` and its load of `armed`/swap of
        // `signalled`.
        self.rx.heavy_fence();
        if self.peek_readable() || self.peer_gone(false) {
            signal(&w.signalled, Some(&s.self_signal));
        }
    }

    fn peek_readable(&self) -> bool {
        let ctl = self.rx.ctl();
        let head = ctl.head.value.load(Ordering::Relaxed);
        let off = head & self.rx.mask;
        if self.rx.sealed(head, off, self.seal_key) {
            if self.rx.line_tag(off) == TAG_MSG {
                return true;
            }
        } else if self.rx.seal_word(off).is_some() {
            // No seal at a line start: nothing published there yet (see
            // `poll_fast`); the writer's `tail` line is left alone.
            return false;
        }
        // A sealed pad, or a head that is not a line start (corrupt).
        // Acquire: pairs with the writer's Release store of `tail`.
        let tail = ctl.tail.value.load(Ordering::Acquire);
        let (tag, len) = self.rx.read_header(head);
        let avail = tail.wrapping_sub(head);
        if avail == 0 || avail > self.rx.cap {
            return avail != 0; // corrupt counts as "ready": recv reports it
        }
        !(tag == TAG_PAD && avail <= len)
    }

    /// Whether `recv` would not block now: a message is waiting, or the
    /// peer is gone (EOF). Python's `poll()` with no timeout.
    ///
    /// Like `poll(Some(Duration::ZERO))` it looks at the record seal only
    /// (see the module docs): a writer killed between publishing `tail` and
    /// the seal (two consecutive stores) leaves a last message that these
    /// two do not report; `recv`, `poll` with a timeout and [`wait`] (which
    /// checks liveness) still deliver it.
    pub fn readable(&self) -> bool {
        self.can_read && (self.peek_readable() || self.peer_gone(false))
    }

    /// Whether a small message can be sent without blocking.
    pub fn writable(&self) -> bool {
        if !self.can_write || self.closed {
            return false;
        }
        let ctl = self.tx.ctl();
        let used = ctl
            .tail
            .value
            .load(Ordering::Relaxed)
            .wrapping_sub(ctl.head.value.load(Ordering::Acquire));
        used.saturating_add(2 * LINE) <= self.tx.cap
    }

    /// Whether this end was closed.
    pub fn closed(&self) -> bool {
        self.closed || self.my_end().closed.load(Ordering::Relaxed) != 0
    }

    /// Waits up to `timeout` (`None`: forever) for a message or EOF;
    /// `Ok(true)` when [`recv`](Self::recv_bytes) would not block (Python's
    /// `poll(timeout)`).
    ///
    /// # Errors
    /// [`Closed`](ConnectionError::Closed), [`NotOwner`](ConnectionError::NotOwner),
    /// [`WrongDirection`](ConnectionError::WrongDirection), [`Corrupt`](ConnectionError::Corrupt).
    #[inline]
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        if timeout == Some(Duration::ZERO) {
            if let Some(ready) = self.poll_fast() {
                return Ok(ready);
            }
        }
        self.poll_slow(timeout)
    }

    #[inline(never)]
    fn poll_slow(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.check_read()?;
        if timeout == Some(Duration::ZERO) {
            return self.poll_now();
        }
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        match self.next_record(deadline) {
            Ok(_) | Err(ConnectionError::Eof) => Ok(true),
            Err(ConnectionError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The busy-poll check of `poll(Some(Duration::ZERO))` on an end this
    /// process holds: `Some(true)` when a message header is at the head,
    /// `Some(false)` when nothing is there and the peer is open; `None`
    /// for everything else (a pad, EOF, a corrupt index): [`poll_now`](Self::poll_now)
    /// decides.
    #[inline]
    fn poll_fast(&mut self) -> Option<bool> {
        if !self.can_read || !self.holds_end() {
            return None;
        }
        let head = self.rx_head;
        let off = head & self.rx.mask;
        if self.rx.sealed(head, off, self.seal_key) {
            // A message (whole or streamed) is ready; a pad: the general path.
            return (self.rx.line_tag(off) == TAG_MSG).then_some(true);
        }
        // No seal: a writer seals every record it publishes (after `tail`),
        // so nothing is there yet, unless `tail` was already seen to cover
        // the head, the head is not a line start (corrupt) or the peer
        // closed (EOF): the general path decides those.
        let avail = self.rx_cached_tail.wrapping_sub(head);
        if (1..=self.rx.cap).contains(&avail) || self.rx.seal_word(off).is_none() {
            return None;
        }
        (!self.peer_closed()).then_some(false)
    }

    /// `poll(Some(Duration::ZERO))`: whether a message (or EOF, or a corrupt
    /// record that `recv` reports at once) is there, without spinning or
    /// reading the clock. Skips a complete pad record at the ring's end.
    fn poll_now(&mut self) -> Result<bool> {
        // A pad record is followed by a message header at offset 0 (never a
        // second pad): two rounds at most.
        for _ in 0..2 {
            if self.rx_avail(LINE)? < LINE {
                return Ok(self.peer_gone(false));
            }
            let (tag, len) = self.rx.read_header(self.rx_head);
            let room = self.rx.cap - (self.rx_head & self.rx.mask);
            if tag != TAG_PAD || len != room {
                return Ok(true);
            }
            if self.rx_avail(len)? < len {
                return Ok(self.peer_gone(false));
            }
            self.rx_head = self.rx_head.wrapping_add(len);
            self.publish_head();
        }
        Ok(true)
    }

    /// A descriptor that is readable while [`readable`](Self::readable)
    /// holds because of a message or a `close` (not a peer's death: see
    /// [`wait`]), for `poll(2)` or `shmproc_process::wait`. `None` for an
    /// end opened by name.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        let s = self.sentinels.as_ref()?;
        if self.can_read {
            let w = &self.rx.ctl().wake;
            w.armed.store(1, Ordering::Relaxed);
            // The heavy fence: pairs with the writer's light fence in
            // `publish` (it sees `armed`, or we see its data below).
            self.rx.heavy_fence();
            if self.peek_readable() || self.peer_gone(false) {
                signal(&w.signalled, Some(&s.self_signal));
            }
        }
        Some(s.read.as_fd())
    }

    /// Closes this end (Python's `close`): the peer's `recv` gets EOF once
    /// it has drained, its `send` gets `BrokenPipe`. Idempotent.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Release: pairs with the peer's Acquire load in `peer_gone`.
        self.my_end().closed.store(1, Ordering::Release);
        // SeqCst: pairs with the waiters' fences (they see `closed`, or we
        // see their `waiters` bit and wake them).
        fence(Ordering::SeqCst);
        for r in [self.tx, self.rx] {
            let w = &r.ctl().wake;
            w.waiters.store(0, Ordering::Relaxed);
            // Release: pairs with the waiters' Acquire loads of `wake`.
            w.wake.fetch_add(1, Ordering::Release);
            futex::wake(&w.wake, u32::MAX);
        }
        if self.tx.ctl().wake.armed.load(Ordering::Relaxed) != 0 {
            signal(
                &self.tx.ctl().wake.signalled,
                self.sentinels.as_ref().map(|s| &s.peer),
            );
        }
    }

    /// Sends any `Serialize` object, encoded with postcard.
    ///
    /// # Errors
    /// [`ConnectionError::Encode`], and as [`send_bytes`](Self::send_bytes).
    #[cfg(feature = "serde")]
    pub fn send_obj<T: serde::Serialize + ?Sized>(&mut self, obj: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(obj).map_err(ConnectionError::Encode)?;
        self.send_bytes(&bytes)
    }

    /// Receives an object sent with [`send_obj`](Self::send_obj).
    ///
    /// # Errors
    /// [`ConnectionError::Decode`], and as [`recv_bytes`](Self::recv_bytes).
    #[cfg(feature = "serde")]
    pub fn recv_obj<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv_bytes()?;
        postcard::from_bytes(&bytes).map_err(ConnectionError::Decode)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Only the process that used the end closes it (see the module docs).
        if self.claimed_pid != 0 && self.claimed_pid == owner::my_pid() {
            let rec = self.my_end().owner.load(Ordering::Relaxed);
            if (rec >> 40) as u32 == self.claimed_pid {
                self.close();
            }
        }
    }
}

/// Sets `word` and writes one byte to `sock` on the 0 → 1 transition.
fn signal(word: &AtomicU32, sock: Option<&UnixStream>) {
    // AcqRel: pairs with the reader's store of 0 in `rearm`.
    if word.swap(1, Ordering::AcqRel) == 0 {
        if let Some(mut s) = sock {
            // Non-blocking: a full socket is already readable.
            let _ = s.write(&[1]);
        }
    }
}

/// A reservation in the sending ring ([`Connection::reserve`]): write the
/// message in place, then [`commit`](Self::commit).
#[derive(Debug)]
pub struct SendGuard<'a> {
    conn: &'a mut Connection,
    ptr: *mut u8,
    len: usize,
    /// Whether the reservation set the `busy` hint (cleared on drop).
    busy: bool,
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        if self.busy {
            self.conn.set_busy(false);
        }
    }
}

impl SendGuard<'_> {
    /// Sends the message.
    pub fn commit(self) {
        let len = self.len as u64;
        let c = &mut *self.conn;
        let (_, span) = record_shape(len);
        let pos = c.tx_tail;
        c.tx.write_header(pos, TAG_MSG, len);
        c.tx_tail = pos.wrapping_add(span);
        c.publish_record(pos);
    }
}

impl std::ops::Deref for SendGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is free space of the sending ring beyond
        // the published tail: the reader never reads it and we are its only
        // writer (we hold `&mut Connection`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for SendGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[derive(Debug)]
enum Body {
    InPlace { ptr: *const u8, len: usize },
    Owned(Vec<u8>),
}

/// A received message ([`Connection::recv_bytes_ref`]): borrowed in place in
/// the ring (or owned, for a message longer than the ring). Consumed when
/// dropped.
///
/// The in-place bytes are published and sit between the reader's head and
/// the writer's tail, which a writer following the protocol never writes;
/// a misbehaving writer could change them while borrowed (never out of
/// bounds: the range is inside the ring).
#[derive(Debug)]
pub struct RecvGuard<'a> {
    conn: &'a mut Connection,
    body: Body,
    span: u64,
}

impl std::ops::Deref for RecvGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.body {
            // SAFETY: see the type's docs: `ptr..ptr + len` is inside the
            // data area (the record does not wrap) and published.
            Body::InPlace { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Body::Owned(v) => v,
        }
    }
}

impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        if self.span > 0 {
            let c = &mut *self.conn;
            c.rx_head = c.rx_head.wrapping_add(self.span);
            c.publish_head();
            c.after_recv();
        }
    }
}

/// Waits until at least one of `conns` is [`readable`](Connection::readable)
/// (a message or EOF), or `timeout` passes; returns the indices of the ready
/// ones, empty on timeout (Python's `multiprocessing.connection.wait`).
///
/// Sleeps on the connections' sentinels when all have one, in slices that
/// re-check liveness (a peer killed by `SIGKILL` shows up within a slice);
/// otherwise in 1 ms slices.
///
/// # Errors
/// [`ConnectionError::Os`] when `poll` fails.
pub fn wait(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
    let fds: Option<Vec<BorrowedFd<'_>>> = conns.iter().map(|c| c.sentinel()).collect();
    let fds = fds.filter(|f| !f.is_empty());
    // Liveness (a `/proc` read per connection) every slice of SLICE.
    let liveness_every: u32 = if fds.is_some() { 1 } else { 50 };
    let mut round = 0u32;
    loop {
        let check_alive = round > 0 && round % liveness_every == 0;
        let ready: Vec<usize> = conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.readable() || (check_alive && c.can_read && c.peer_gone(true)))
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let Some(slice) = deadline.slice(SLICE) else {
            return Ok(Vec::new());
        };
        round = round.wrapping_add(1);
        match &fds {
            Some(fds) => {
                shmproc_shm::os::poll_readable(fds, Some(slice))
                    .map_err(|source| ConnectionError::Os { op: "poll", source })?;
            }
            None => {
                let local = AtomicU32::new(0);
                futex::wait(&local, 0, Duration::from_millis(1).min(slice));
            }
        }
    }
}
