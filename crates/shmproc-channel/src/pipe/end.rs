//! [`Connection`], one end of a pipe: opening and attaching, the claim (one
//! process per end at a time) and its release, the peer's liveness, `close`
//! and `Drop`.
// Pointers into the mapping at attach, the shared views of the meta line,
// and `Send`; every block justified.
#![allow(unsafe_code)]

#[cfg(not(shmproc_loom))]
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::Arc;

use shmproc_shm::sync::{Ordering, fence};
#[cfg(not(shmproc_loom))]
use shmproc_shm::{Offset, OpenOptions, Segment, SegmentKind, ShmRegion};
use shmproc_sync::{asym, futex, owner};

use super::byte_ring::Ring;
#[cfg(not(shmproc_loom))]
use super::layout::{CTL_OFF, DATA0_OFF, MAX_CAPACITY_BYTES, MIN_CAPACITY, SPEC, payload_len};
use super::layout::{EndRecord, MODE_DUPLEX, MODE_SIMPLEX, PipeMeta};

/// What holds a pipe's memory: its segment, or under the model a
/// [`HeapPipe`](super::heap::HeapPipe).
#[cfg(not(shmproc_loom))]
type Backing = Segment;
#[cfg(shmproc_loom)]
type Backing = super::heap::HeapPipe;
#[cfg(not(shmproc_loom))]
use super::ConnectionError;
use super::poll::{Sentinels, signal};
use super::{ClaimError, PipeEnd, Result};
use crate::error::Corrupt;

/// One end of a [`Pipe`](super::Pipe) (Python's `multiprocessing.connection.Connection`).
///
/// Send and receive byte messages of any length ([`send_bytes`](Self::send_bytes),
/// [`recv_bytes`](Self::recv_bytes)), `Pod` values ([`send`](Self::send),
/// [`recv`](Self::recv)) and, with the `serde` feature, objects
/// (`send_obj`, `recv_obj`, postcard). See [Ends and processes](#ends-and-processes)
/// below for the ownership rule (one process per end at a time) and EOF.
///
/// # Forms and errors
/// Every call that can block comes in four forms (crossbeam's shape), each
/// with its own error, so that a match covers exactly what can happen:
///
/// | form | waits | error |
/// |---|---|---|
/// | `recv_bytes()`, `send_bytes(buf)`, ... | until done | [`RecvError`](super::RecvError), [`SendError`](super::SendError) |
/// | `try_recv_bytes()`, `try_send_bytes(buf)`, ... | never | [`TryRecvError`](super::TryRecvError) (adds `Empty`), [`TrySendError`](super::TrySendError) (adds `Full`) |
/// | `recv_bytes_timeout(d)`, `send_bytes_timeout(buf, d)`, ... | at most `d` | [`RecvTimeoutError`](super::RecvTimeoutError), [`SendTimeoutError`](super::SendTimeoutError) (add `Timeout`) |
/// | `recv_bytes_deadline(t)`, `send_bytes_deadline(buf, t)`, ... | until the instant `t` | as `_timeout` |
///
/// The same holds for `recv_bytes_max`, `recv_bytes_into`,
/// `recv_bytes_ref`, `recv` (`Pod`), `recv_obj`, `send_bytes_range`, `send`
/// (`Pod`), `reserve` and `send_obj`. A deadline bounds the wait for a
/// message to *start*: one that fits in the ring is sent or received whole
/// or not at all; one longer than the ring, once started, streams to its
/// end. A passed deadline (or a zero timeout) still makes one attempt, like
/// `try_`. The fast paths read no clock: a `_timeout` form reads it only
/// when it has to wait. [`poll`](Self::poll) (Python's `poll(timeout)`)
/// and [`poll_deadline`](Self::poll_deadline) answer `Ok(false)` when the
/// time passes.
///
/// # Fork
/// A forked child inherits the connection (the mapping is shared); the first
/// call in the child claims the end for the child.
///
/// # Ends and processes
/// **One end is used by one process at a time.** An end is *claimed* by the
/// first process that uses it (its pid and start time go in the end's owner
/// record); a process that uses an end claimed by another process takes it
/// over, and the previous owner then gets `NotOwner` ([`RecvError::NotOwner`](super::RecvError::NotOwner),
/// [`SendError::NotOwner`](super::SendError::NotOwner), ...) from its next call: that is how misuse is detected (one relaxed load per
/// call). A reader gets EOF when the writing end is closed, or when the
/// process that claimed it is dead (checked at every bounded sleep, so
/// within about 50 ms of a `SIGKILL`).
///
/// Dropping a [`Connection`] closes the end only in the process that
/// claimed it: a never-used end dropped in the parent after a `fork` may be
/// the child's, so it stays open. Call [`Connection::close`] to close an end
/// explicitly, claimed or not. A never-claimed end whose creator process
/// died counts as closed. [`Connection::claim_now`] claims an end before its
/// first use (a `Process` child does so as it receives one), so that the
/// peer gets EOF if the claimer dies without ever using it.
///
/// `Send` (an end may move to another thread) but not `Sync`: one end has
/// one user at a time, and its cached indices are plain fields.
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<shmproc_channel::Connection>();
/// ```
#[derive(Debug)]
pub struct Connection {
    seg: Arc<Backing>,
    end: usize,
    pub(super) can_read: bool,
    pub(super) can_write: bool,
    pub(super) rx: Ring,
    pub(super) tx: Ring,
    meta: NonNull<PipeMeta>,
    claimed_pid: u32,
    /// This process is registered for `membarrier` (set at the claim): the
    /// hot paths may use compiler fences (see [`Ring::light_fence`]).
    pub(super) light: bool,
    pub(super) closed: bool,
    pub(super) rx_head: u64,
    pub(super) rx_cached_tail: u64,
    pub(super) tx_tail: u64,
    pub(super) tx_cached_head: u64,
    /// The pipe's seal key (read once at attach; any value is safe).
    pub(super) seal_key: u64,
    pub(super) sentinels: Option<Sentinels>,
    /// How long this end's waits for data (`[0]`) and for room (`[1]`)
    /// spin before sleeping, learned from its recent waits
    /// ([`SpinBudget`](shmproc_sync::futex::SpinBudget), as the queue's).
    pub(super) spin_budget: [shmproc_sync::futex::SpinBudget; 2],
}

// SAFETY: the raw pointers point into the mapping owned by `seg` (`Arc`,
// `Send + Sync`); all shared state is atomics; local state moves with the value.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens end `end` of the named pipe `name` (made with
    /// [`Pipe::create`](super::Pipe::create)/[`Pipe::build_named`](super::Pipe::build_named)) in this process. It has no
    /// [`sentinel`](Self::sentinel).
    ///
    /// # Errors
    /// [`ConnectionError::Segment`] (not found, not a pipe, truncated...),
    /// [`ConnectionError::Corrupt`].
    #[cfg(not(shmproc_loom))]
    pub fn open(name: &str, end: PipeEnd) -> Result<Connection> {
        let seg = OpenOptions::new(SegmentKind::PIPE, SPEC)
            .payload_len(payload_len)
            .open(name)
            .map_err(ConnectionError::segment("open", "pipe"))?;
        Self::attach(Arc::new(seg), end.index(), None)
    }

    /// Opens end `end` of the pipe whose segment descriptor is `fd` (an
    /// anonymous pipe's [`segment`](Self::segment) fd, passed to another
    /// process). Like [`open`](Self::open) it has no sentinel, and it is an
    /// opener: dropping it never unlinks or unmaps anything but its own view.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(not(shmproc_loom))]
    pub fn open_fd(fd: OwnedFd, end: PipeEnd) -> Result<Connection> {
        let seg = OpenOptions::new(SegmentKind::PIPE, SPEC)
            .payload_len(payload_len)
            .open_fd(fd)
            .map_err(ConnectionError::segment("open", "pipe"))?;
        Self::attach(Arc::new(seg), end.index(), None)
    }

    /// Opens end `end` of the pipe `source` names.
    #[cfg(not(shmproc_loom))]
    pub(crate) fn open_source(source: shmproc_shm::Source<'_>, end: PipeEnd) -> Result<Connection> {
        let seg = OpenOptions::new(SegmentKind::PIPE, SPEC)
            .payload_len(payload_len)
            .open_source(source)
            .map_err(ConnectionError::segment("open", "pipe"))?;
        Self::attach(Arc::new(seg), end.index(), None)
    }

    /// The pipe's segment (its [`fd`](Segment::fd) is what
    /// [`open_fd`](Self::open_fd) takes).
    #[cfg(not(shmproc_loom))]
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Gives up this process's claim on the end, for handing it to another
    /// process (`shmproc_process` does this when a `Connection` is passed to
    /// a child): when this process holds the claim, the owner record goes
    /// back to "unclaimed", so the next process to use the end claims it.
    /// Afterwards this handle's calls fail with `NotOwner`
    /// ([`RecvError::NotOwner`](super::RecvError::NotOwner), ...) and its drop does not close
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

    /// End `end` of this connection's pipe, on the same mapping (no
    /// `mmap`): the fuzz harness (`fuzzing.rs`) opens fresh ends on a kept
    /// pipe this way, and `attach` validates the meta line as `open` does.
    #[cfg(not(shmproc_loom))]
    pub(crate) fn attach_same(&self, end: PipeEnd) -> Result<Connection> {
        Self::attach(Arc::clone(&self.seg), end.index(), None)
    }

    #[cfg(not(shmproc_loom))]
    pub(super) fn attach(
        seg: Arc<Segment>,
        end: usize,
        sentinels: Option<Sentinels>,
    ) -> Result<Self> {
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
        let ring = |i: usize| -> Result<Ring> {
            let idx = i.min(1);
            let ctl_off = CTL_OFF.get(idx).copied().unwrap_or(CTL_OFF[0]);
            let data_off = DATA0_OFF + cap * idx as u64;
            let data = ShmRegion::new(&seg, Offset::in_payload(data_off), cap as usize)
                .map_err(|_| Corrupt::new("pipe segment length", seg.data_len() as u64))?;
            Ok(Ring {
                // SAFETY: `ctl_off + 384 <= DATA0_OFF <= need <= data_len`.
                ctl: unsafe { base.add(ctl_off) }.cast(),
                // SAFETY: the connection holds `seg` (an `Arc`) for as long
                // as it uses its rings, so the data area stays mapped.
                data: unsafe { data.detach() },
                cap,
                mask: cap - 1,
            })
        };
        let (rx, tx) = (ring(end)?, ring(1 - end)?);
        Self::assemble(seg, end, meta, rx, tx, sentinels)
    }

    /// Under the model: end `end` of a heap pipe.
    #[cfg(shmproc_loom)]
    pub(super) fn attach(
        seg: Arc<Backing>,
        end: usize,
        sentinels: Option<Sentinels>,
    ) -> Result<Self> {
        let cap = seg.cap;
        let ring = |i: usize| {
            let (ctl, data) = seg.ring(i);
            Ring {
                ctl,
                data,
                cap,
                mask: cap - 1,
            }
        };
        let (rx, tx) = (ring(end), ring(1 - end));
        let meta = NonNull::from(&seg.meta);
        Self::assemble(seg, end, meta, rx, tx, sentinels)
    }

    /// The connection of end `end` over `seg`, whose meta line is `meta`.
    fn assemble(
        seg: Arc<Backing>,
        end: usize,
        meta: NonNull<PipeMeta>,
        rx: Ring,
        tx: Ring,
        sentinels: Option<Sentinels>,
    ) -> Result<Self> {
        // SAFETY: `meta` points to the `PipeMeta` inside `seg` (payload
        // offset 0 of the mapping, or the heap pipe's), atomics only.
        let mode = unsafe { meta.as_ref() }.mode.load(Ordering::Relaxed);
        let (can_read, can_write) = match (mode, end) {
            (MODE_DUPLEX, _) => (true, true),
            (MODE_SIMPLEX, 0) => (true, false),
            (MODE_SIMPLEX, _) => (false, true),
            (m, _) => return Err(Corrupt::new("pipe mode", u64::from(m)).into()),
        };
        Ok(Connection {
            rx,
            tx,
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
            spin_budget: Default::default(),
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
    #[cfg(not(shmproc_loom))]
    pub fn name(&self) -> Option<&str> {
        self.seg.name().map(|n| n.as_str())
    }

    /// Whether this process claimed the end and still holds it, and it is
    /// open: the fast paths' check (one relaxed load of our owner record);
    /// `false` sends the caller to [`claim`](Self::claim), which reports why.
    #[inline]
    pub(super) fn holds_end(&self) -> bool {
        let me = owner::my_pid();
        !self.closed
            && self.claimed_pid == me
            && (self.my_end().owner.load(Ordering::Relaxed) >> 40) as u32 == me
    }

    /// Claims the end for this process now rather than at its first use, so
    /// that from here on its peer gets EOF when this process dies, even if it
    /// never used the end. `shmproc-process` calls it in a child as it
    /// unpacks a `Connection` from its arguments. Taking over an end another
    /// process claimed makes that process's next call fail with `NotOwner`.
    ///
    /// # Errors
    /// [`ClaimError::Closed`] when the end is closed,
    /// [`ClaimError::NotOwner`] when this process claimed it and another
    /// took it over since.
    pub fn claim_now(&mut self) -> Result<(), ClaimError> {
        self.claim()
    }

    /// Claims the end for this process (first use here), or checks that we
    /// still hold it.
    pub(super) fn claim(&mut self) -> Result<(), ClaimError> {
        if self.closed {
            return Err(ClaimError::Closed);
        }
        let me = owner::my_pid();
        let rec = self.my_end().owner.load(Ordering::Relaxed);
        if self.claimed_pid == me {
            if (rec >> 40) as u32 != me {
                return Err(ClaimError::NotOwner {
                    owner: (rec >> 40) as u32,
                });
            }
            return Ok(());
        }
        if self.my_end().closed.load(Ordering::Acquire) != 0 {
            self.closed = true;
            return Err(ClaimError::Closed);
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
        // (The model's mutant `pipe_claim_keeps_head` skips the load: the
        // handle's own head, 0 for a fresh one, instead of the published.)
        if !shmproc_sync::mutant!("pipe_claim_keeps_head") {
            self.rx_head = self.rx.ctl().head.value.load(Ordering::Acquire);
        }
        self.rx_cached_tail = self.rx_head;
        self.tx_tail = self.tx.ctl().tail.value.load(Ordering::Acquire);
        self.tx_cached_head = self.tx_tail.saturating_sub(self.tx.cap);
        Ok(())
    }

    /// Whether the peer end was closed (one load, no liveness check).
    #[inline]
    pub(super) fn peer_closed(&self) -> bool {
        // Acquire: pairs with the Release store of `closed` in `close`.
        self.peer_end().closed.load(Ordering::Acquire) != 0
    }

    /// Whether the peer end is closed or its process is gone. `check_alive`
    /// reads `/proc` (slow path only).
    pub(super) fn peer_gone(&self, check_alive: bool) -> bool {
        if self.peer_closed() {
            return true;
        }
        if !check_alive {
            return false;
        }
        // (The model's mutant `pipe_live_peer_gone` takes a live peer for
        // a dead one at every liveness check.)
        if shmproc_sync::mutant!("pipe_live_peer_gone") {
            return true;
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

    /// Whether this end was closed.
    pub fn closed(&self) -> bool {
        self.closed || self.my_end().closed.load(Ordering::Relaxed) != 0
    }

    /// Closes this end (Python's `close`): the peer's `recv` gets EOF once
    /// it has drained, its `send` gets `BrokenPipe`
    /// ([`SendError::BrokenPipe`](super::SendError::BrokenPipe)). Idempotent.
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
