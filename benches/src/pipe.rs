//! The cases of `pipe` and `pipe_compare` (issue 5): the contestants of the
//! `Pipe` benches, their one-way latency (a ping-pong) and the one-way
//! stream of byte messages between two forked processes, and the memcpy
//! baseline.
//!
//! The ping-pong's floors (the atomic and futex ping-pongs) and its
//! ipc-channel case are the queue's ([`crate::queue::latency`]); the pipe's
//! own contestants plug into the same ping-pong as `Link`s.
//!
//! Buffers on both sides of every copy are page-aligned (`AlignedBuf`):
//! DESIGN.md measured glibc's memcpy 25-40x slower when the destination sits
//! a few bytes past the source modulo 4 KiB (4K aliasing), and a `Vec` of
//! 64 KiB or more starts 16 bytes into a page.

#![allow(
    unsafe_code,
    reason = "page-aligned local buffers (std::alloc with a 4096 alignment), pipe2"
)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender};
use shmproc_channel::{Connection, Pipe, PipeMode};

use crate::links::Link;
use crate::pingpong::{self, Latency};
use crate::queue::{self, Who};
use crate::sizes::LinkSizes;
use crate::stream::{SENTINEL, Stream};

/// Stream message sizes: 64 B, 64 KiB, 1 MiB, 64 MiB.
pub const STREAM_SIZES: [usize; 4] = [64, 64 << 10, 1 << 20, 64 << 20];

/// The ring size (per direction) of the streams' pipes: room for at least
/// two messages in place (so `reserve` works and the writer can run ahead
/// of the reader by a message), and at least [`STREAM_RING_MIN`].
fn ring_capacity(size: usize) -> usize {
    (2 * (size + 64)).next_power_of_two().max(STREAM_RING_MIN)
}

/// The smallest ring of the streams' pipes: 4 MiB, four times the default
/// of `Pipe::new()` (which `shmproc_pipe_default` measures beside it, in
/// the same rounds). At 64 KiB, copy-in/copy-out through a ring of 4 MiB
/// against one of 1 MiB, same run, shared L3: 28.4 against 21.4 GB/s
/// (zero-copy 28.5 against 28.4). With a 1 MiB ring the reader copies lines
/// that still sit in the writer's 512 KiB L2; with 4 MiB the writer runs
/// far enough ahead for them to come from the L3, which is faster here.
/// (Issue 5's third session had measured the opposite for zero-copy, 21
/// against 25 GB/s, in runs whose placement was not yet told apart.)
const STREAM_RING_MIN: usize = 4 << 20;

// ---- page-aligned buffers -------------------------------------------------------

/// A heap buffer starting on a page boundary, every page touched at birth.
struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuf {
    fn new(len: usize, fill: u8) -> Self {
        let layout = Layout::from_size_align(len.max(1), 4096).expect("buffer layout");
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        let mut b = Self { ptr, layout };
        b.fill(fill);
        b
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` initialised
        // (zeroed) bytes, owned by `self`, which `&self` borrows.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// A buffer made on first use, in the process that uses it (after the
/// fork: no copy-on-write faults inside a timed run).
#[derive(Default)]
struct LazyBuf(RefCell<Option<AlignedBuf>>);

impl LazyBuf {
    fn with<R>(&self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut b = self.0.borrow_mut();
        let buf = b.get_or_insert_with(|| AlignedBuf::new(len, 0xa5));
        assert!(buf.len() >= len, "one message size per link");
        f(&mut buf[..len])
    }
}

fn seq_in(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().expect("messages are at least 8 bytes"))
}

fn put_seq(b: &mut [u8], seq: u64) {
    b[..8].copy_from_slice(&seq.to_ne_bytes());
}

// ---- latency contestants -----------------------------------------------------------

/// Who carries the ping-pong messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lat {
    /// Busy-poll floor: one atomic word per direction (8 B only; the queue's).
    AtomicFloor,
    /// `Connection::poll(Some(Duration::ZERO))` in a spin loop, then `recv_bytes_into`.
    PipeSpin,
    /// `Connection::readable()` in a spin loop (no clock read), then
    /// `recv_bytes_into` (for comparison with `PipeSpin`; no target).
    PipeReadable,
    /// Blocking floor: a futex word per direction, always wake, always wait
    /// (8 B only), a pause before each ping (the queue's).
    FutexFloor,
    /// `send_bytes` / `recv_bytes_into` (spin briefly, then sleep on a futex)
    /// with a pause before each ping, so that the receiver is asleep.
    PipeWoken,
    /// `send_bytes` / `recv_bytes_into`, back to back.
    PipeBlock,
    /// `pipe(2)`, blocking `write_all` / `read_exact`.
    OsPipe,
    /// `socketpair(AF_UNIX, SOCK_STREAM)`, blocking `write_all` / `read_exact`.
    UnixStream,
    /// ipc-channel's bytes channel (the queue's).
    IpcChannel,
}

impl Lat {
    /// The ping-pong contestants, in table order.
    pub const ALL: [Self; 9] = [
        Self::AtomicFloor,
        Self::PipeSpin,
        Self::PipeReadable,
        Self::FutexFloor,
        Self::PipeWoken,
        Self::PipeBlock,
        Self::OsPipe,
        Self::UnixStream,
        Self::IpcChannel,
    ];

    /// The bench id and table label.
    pub fn name(self) -> &'static str {
        match self {
            Self::AtomicFloor => Who::AtomicFloor.name(),
            Self::PipeSpin => "shmproc_pipe_spin",
            Self::PipeReadable => "shmproc_pipe_readable",
            Self::FutexFloor => Who::FutexFloor.name(),
            Self::PipeWoken => "shmproc_pipe_woken",
            Self::PipeBlock => "shmproc_pipe",
            Self::OsPipe => "os_pipe",
            Self::UnixStream => "unix_stream",
            Self::IpcChannel => Who::IpcChannel.name(),
        }
    }

    /// Busy-poll contestants time `busy_batch` round trips per sample.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            Self::AtomicFloor | Self::PipeSpin | Self::PipeReadable
        )
    }

    /// The untimed pause before each ping (ns), as the Queue's futex floor.
    pub fn gap_ns(self) -> u64 {
        match self {
            Self::FutexFloor | Self::PipeWoken => Who::FutexFloor.gap_ns(),
            _ => 0,
        }
    }

    /// Whether this contestant has a ping-pong of `size`-byte messages.
    pub fn has_size(self, size: usize) -> bool {
        !matches!(self, Self::AtomicFloor | Self::FutexFloor) || size == 8
    }
}

/// How a ping-pong receiver waits for the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvWait {
    /// `recv_bytes_into` blocks (spins briefly, then sleeps on a futex).
    Block,
    /// `poll(Some(Duration::ZERO))` until true.
    Poll,
    /// `readable()` until true.
    Readable,
}

/// One direction of a duplex pipe's ping-pong: sends on `tx`, receives on
/// `rx` (the ping is a -> b, the pong b -> a). Each forked process uses its
/// own copy of the cells, and one end each.
struct PipeLink<'a> {
    tx: &'a RefCell<Connection>,
    rx: &'a RefCell<Connection>,
    wait: RecvWait,
}

impl<T: Pod> Link<T> for PipeLink<'_> {
    fn send(&self, m: &T) {
        self.tx
            .borrow_mut()
            .send_bytes(bytemuck::bytes_of(m))
            .expect("send_bytes");
    }
    fn recv(&self, m: &mut T) {
        let mut c = self.rx.borrow_mut();
        match self.wait {
            RecvWait::Block => {}
            RecvWait::Poll => {
                while !c.poll(Some(Duration::ZERO)).expect("poll") {
                    std::hint::spin_loop();
                }
            }
            RecvWait::Readable => {
                while !c.readable() {
                    std::hint::spin_loop();
                }
            }
        }
        let n = c
            .recv_bytes_into(bytemuck::bytes_of_mut(m))
            .expect("recv_bytes_into");
        assert_eq!(n, size_of::<T>(), "pipe message size");
    }
}

/// A byte-stream file pair (pipe(2), a SOCK_STREAM socket pair): messages
/// of one fixed size, written whole and read exactly.
struct FdLink<W, R> {
    tx: W,
    rx: R,
}

impl FdLink<File, File> {
    /// `pipe2(O_CLOEXEC)` (`std::io::pipe` is newer than the MSRV).
    fn os_pipe() -> Self {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: the read end was just returned by a successful pipe2 and is
        // owned by no one else.
        let rx = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        // SAFETY: as above, the write end.
        let tx = unsafe { OwnedFd::from_raw_fd(fds[1]) };
        Self {
            tx: File::from(tx),
            rx: File::from(rx),
        }
    }
}

impl FdLink<UnixStream, UnixStream> {
    fn unix_stream() -> Self {
        let (tx, rx) = UnixStream::pair().expect("socketpair");
        Self { tx, rx }
    }
}

impl<T: Pod, W, R> Link<T> for FdLink<W, R>
where
    for<'a> &'a W: Write,
    for<'a> &'a R: Read,
{
    fn send(&self, m: &T) {
        (&self.tx).write_all(bytemuck::bytes_of(m)).expect("write");
    }
    fn recv(&self, m: &mut T) {
        (&self.rx)
            .read_exact(bytemuck::bytes_of_mut(m))
            .expect("read");
    }
}

fn pipe_latency<T: Pod>(wait: RecvWait, rtts: u64, batch_gap: (u64, u64), d: Duration) -> Latency {
    let (a, b) = Pipe::new().expect("Pipe::new");
    let (a, b) = (RefCell::new(a), RefCell::new(b));
    let ping = PipeLink {
        tx: &a,
        rx: &b,
        wait,
    };
    let pong = PipeLink {
        tx: &b,
        rx: &a,
        wait,
    };
    pingpong::procs::<T, _>(&ping, &pong, rtts, batch_gap, d)
}

fn fd_latency<T: Pod, W, R>(
    make: fn() -> FdLink<W, R>,
    rtts: u64,
    batch_gap: (u64, u64),
    d: Duration,
) -> Latency
where
    for<'a> &'a W: Write,
    for<'a> &'a R: Read,
{
    pingpong::procs::<T, _>(&make(), &make(), rtts, batch_gap, d)
}

/// One ping-pong run of `who` with `size`-byte messages (8 or 4096), about
/// `rtts` round trips, `batch` per timed sample (1 for the cases with a
/// pause); `None` when `who` has no such size.
pub fn latency(who: Lat, size: usize, rtts: u64, batch: u64, sz: &LinkSizes) -> Option<Latency> {
    if !who.has_size(size) {
        return None;
    }
    let d = sz.deadline;
    let bg = if who.gap_ns() > 0 {
        (1, who.gap_ns())
    } else {
        (batch, 0)
    };
    match (who, size) {
        (Lat::AtomicFloor, _) => queue::latency(Who::AtomicFloor, 8, rtts, batch, sz),
        (Lat::FutexFloor, _) => queue::latency(Who::FutexFloor, 8, rtts, 1, sz),
        (Lat::IpcChannel, _) => queue::latency(Who::IpcChannel, size, rtts, 1, sz),
        (Lat::PipeSpin | Lat::PipeReadable | Lat::PipeBlock | Lat::PipeWoken, 8 | 4096) => {
            let wait = match who {
                Lat::PipeSpin => RecvWait::Poll,
                Lat::PipeReadable => RecvWait::Readable,
                _ => RecvWait::Block,
            };
            Some(if size == 8 {
                pipe_latency::<u64>(wait, rtts, bg, d)
            } else {
                pipe_latency::<[u8; 4096]>(wait, rtts, bg, d)
            })
        }
        (Lat::OsPipe, 8) => Some(fd_latency::<u64, _, _>(FdLink::os_pipe, rtts, bg, d)),
        (Lat::OsPipe, 4096) => Some(fd_latency::<[u8; 4096], _, _>(FdLink::os_pipe, rtts, bg, d)),
        (Lat::UnixStream, 8) => Some(fd_latency::<u64, _, _>(FdLink::unix_stream, rtts, bg, d)),
        (Lat::UnixStream, 4096) => Some(fd_latency::<[u8; 4096], _, _>(
            FdLink::unix_stream,
            rtts,
            bg,
            d,
        )),
        (_, other) => panic!("no ping-pong of {other} bytes"),
    }
}

// ---- stream contestants ------------------------------------------------------------

/// Who carries the stream (or, for memcpy, the copies of one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tput {
    /// `send_bytes` + `recv_bytes_into`, a one-way pipe with a ring of
    /// `ring_capacity`.
    PipeCopy,
    /// `reserve` + write in place + `commit`, `recv_bytes_ref` read in place;
    /// the same pipe.
    PipeZeroCopy,
    /// `send_bytes` + `recv_bytes_into` over `Pipe::new()` (duplex, 1 MiB
    /// rings: 1 MiB and 64 MiB messages stream through in chunks).
    PipeDefault,
    /// `pipe(2)`: `write_all` + `read_exact`.
    OsPipe,
    /// `socketpair(AF_UNIX, SOCK_STREAM)`: `write_all` + `read_exact`.
    UnixStream,
    /// ipc-channel's bytes channel: `send(&[u8])` + `recv() -> Vec<u8>`.
    IpcChannel,
    /// `copy_from_slice` between two page-aligned buffers in one process.
    Memcpy,
}

impl Tput {
    /// The stream contestants, in table order.
    pub const ALL: [Self; 7] = [
        Self::Memcpy,
        Self::PipeCopy,
        Self::PipeZeroCopy,
        Self::PipeDefault,
        Self::OsPipe,
        Self::UnixStream,
        Self::IpcChannel,
    ];

    /// The bench id and table label.
    pub fn name(self) -> &'static str {
        match self {
            Self::PipeCopy => "shmproc_pipe_copy",
            Self::PipeZeroCopy => "shmproc_pipe_zerocopy",
            Self::PipeDefault => "shmproc_pipe_default",
            Self::OsPipe => "os_pipe",
            Self::UnixStream => "unix_stream",
            Self::IpcChannel => "ipc_channel",
            Self::Memcpy => "memcpy",
        }
    }

    /// System-call contestants: their streams get the smaller budget.
    pub fn is_syscall(self) -> bool {
        matches!(self, Self::OsPipe | Self::UnixStream | Self::IpcChannel)
    }
}

/// One direction of a stream of `len`-byte messages whose first 8 bytes
/// carry a sequence number. Made before the fork; each side keeps its
/// buffers and connection state in its own copy.
trait ByteLink {
    fn send(&self, seq: u64, len: usize);
    /// Receives one message (of `len` bytes, checked), returning its sequence number.
    fn recv(&self, len: usize) -> u64;
    /// Untimed messages before the start line, to fault in rings and buffers.
    fn warm_msgs(&self, _len: usize) -> u64 {
        2
    }
}

/// A one-way pipe: `copy` (send_bytes / recv_bytes_into) or zero-copy
/// (reserve + commit / recv_bytes_ref).
struct PipeStream {
    tx: RefCell<Connection>,
    rx: RefCell<Connection>,
    zero_copy: bool,
    ring: usize,
    src: LazyBuf,
    dst: LazyBuf,
}

impl PipeStream {
    fn new(mode: PipeMode, ring: Option<usize>, zero_copy: bool) -> Self {
        let (rx, tx, ring) = match ring {
            Some(cap) => {
                let (r, t) = Pipe::options(mode, cap).build().expect("Pipe::build");
                (r, t, cap)
            }
            None => {
                let (r, t) = Pipe::new().expect("Pipe::new");
                (r, t, shmproc_channel::DEFAULT_CAPACITY)
            }
        };
        Self {
            tx: RefCell::new(tx),
            rx: RefCell::new(rx),
            zero_copy,
            ring,
            src: LazyBuf::default(),
            dst: LazyBuf::default(),
        }
    }
}

impl ByteLink for PipeStream {
    fn send(&self, seq: u64, len: usize) {
        let mut tx = self.tx.borrow_mut();
        self.src.with(len, |src| {
            put_seq(src, seq);
            if self.zero_copy {
                // The one copy: the message is written in place in the ring.
                let mut g = tx.reserve(len).expect("reserve");
                g.copy_from_slice(src);
                g.commit();
            } else {
                tx.send_bytes(src).expect("send_bytes");
            }
        });
    }
    fn recv(&self, len: usize) -> u64 {
        let mut rx = self.rx.borrow_mut();
        if self.zero_copy {
            // Read in place: only the sequence number is looked at.
            let g = rx.recv_bytes_ref().expect("recv_bytes_ref");
            assert_eq!(g.len(), len, "pipe message size");
            return seq_in(&g);
        }
        self.dst.with(len, |dst| {
            let n = rx.recv_bytes_into(dst).expect("recv_bytes_into");
            assert_eq!(n, len, "pipe message size");
            seq_in(dst)
        })
    }
    fn warm_msgs(&self, len: usize) -> u64 {
        // One lap of the ring, and one message more.
        let span = (len as u64 + 64).next_multiple_of(64);
        ((self.ring as u64).div_ceil(span) + 1).min(1 << 16)
    }
}

/// pipe(2) or a SOCK_STREAM socket pair.
struct FdStream<W, R> {
    link: FdLink<W, R>,
    src: LazyBuf,
    dst: LazyBuf,
}

impl<W, R> ByteLink for FdStream<W, R>
where
    for<'a> &'a W: Write,
    for<'a> &'a R: Read,
{
    fn send(&self, seq: u64, len: usize) {
        self.src.with(len, |src| {
            put_seq(src, seq);
            (&self.link.tx).write_all(src).expect("write");
        });
    }
    fn recv(&self, len: usize) -> u64 {
        self.dst.with(len, |dst| {
            (&self.link.rx).read_exact(dst).expect("read");
            seq_in(dst)
        })
    }
}

/// ipc-channel's bytes channel; the receiver gets a fresh `Vec` per message.
struct IpcStream {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
    src: LazyBuf,
}

impl ByteLink for IpcStream {
    fn send(&self, seq: u64, len: usize) {
        self.src.with(len, |src| {
            put_seq(src, seq);
            self.tx.send(src).expect("ipc send");
        });
    }
    fn recv(&self, len: usize) -> u64 {
        let v = self.rx.recv().expect("ipc recv");
        assert_eq!(v.len(), len, "ipc message size");
        seq_in(&v)
    }
}

/// One stream run: a producer process sends `total` messages of `len` bytes
/// (sequence numbers 1..=total, then a sentinel) to a consumer process, the
/// two pinned to different CPUs, after `warm` untimed messages; the time
/// from the start line to the consumer's last message. Panics when a
/// message is lost or duplicated, a worker fails, or the deadline passes
/// (the workers are then killed and reaped).
fn stream_procs<L: ByteLink>(
    link: &L,
    len: usize,
    total: u64,
    warm: u64,
    what: &str,
    deadline: Duration,
) -> Duration {
    let st = Stream::new(1, 1, total);
    st.procs(
        |i| {
            if i == 0 {
                for _ in 0..warm {
                    link.send(0, len);
                }
                if !st.wait_go() {
                    return 2;
                }
                for seq in 1..=total {
                    link.send(seq, len);
                }
                link.send(SENTINEL, len);
            } else {
                for _ in 0..warm {
                    link.recv(len);
                }
                if !st.wait_go() {
                    return 2;
                }
                st.consume(0, || link.recv(len));
            }
            0
        },
        what,
        deadline,
    )
}

/// `total` copies of a page-aligned `len`-byte buffer into another, in this
/// process (after one untimed copy).
fn memcpy_run(len: usize, total: u64) -> Duration {
    let mut src = AlignedBuf::new(len, 0x5a);
    let mut dst = AlignedBuf::new(len, 0xa5);
    dst[..len].copy_from_slice(&src[..len]);
    let t = Instant::now();
    for seq in 1..=total {
        put_seq(&mut src, seq);
        dst[..len].copy_from_slice(std::hint::black_box(&src[..len]));
        std::hint::black_box(&mut dst[..]);
    }
    let el = t.elapsed();
    assert_eq!(seq_in(&dst), total, "memcpy");
    el
}

/// One stream run of `who`: `total` messages of `size` bytes, one way
/// (for memcpy: `total` copies in this process).
pub fn throughput(who: Tput, size: usize, total: u64, sz: &LinkSizes) -> Duration {
    let d = sz.deadline;
    let what = who.name();
    match who {
        Tput::Memcpy => memcpy_run(size, total),
        Tput::PipeCopy | Tput::PipeZeroCopy | Tput::PipeDefault => {
            let link = match who {
                Tput::PipeDefault => PipeStream::new(PipeMode::Duplex, None, false),
                _ => PipeStream::new(
                    PipeMode::Simplex,
                    Some(ring_capacity(size)),
                    who == Tput::PipeZeroCopy,
                ),
            };
            let warm = if sz.warm { link.warm_msgs(size) } else { 0 };
            stream_procs(&link, size, total, warm, what, d)
        }
        Tput::OsPipe => fd_stream(FdLink::os_pipe(), size, total, sz, what),
        Tput::UnixStream => fd_stream(FdLink::unix_stream(), size, total, sz, what),
        Tput::IpcChannel => {
            let (tx, rx) = ipc_channel::ipc::bytes_channel().expect("ipc bytes_channel");
            let link = IpcStream {
                tx,
                rx,
                src: LazyBuf::default(),
            };
            let warm = if sz.warm { link.warm_msgs(size) } else { 0 };
            stream_procs(&link, size, total, warm, what, d)
        }
    }
}

fn fd_stream<W, R>(
    link: FdLink<W, R>,
    size: usize,
    total: u64,
    sz: &LinkSizes,
    what: &str,
) -> Duration
where
    for<'a> &'a W: Write,
    for<'a> &'a R: Read,
{
    let link = FdStream {
        link,
        src: LazyBuf::default(),
        dst: LazyBuf::default(),
    };
    let warm = if sz.warm { link.warm_msgs(size) } else { 0 };
    stream_procs(&link, size, total, warm, what, sz.deadline)
}
