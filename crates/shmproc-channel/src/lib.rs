//! Shared-memory ring buffers for shmproc: Python's `multiprocessing.Queue`,
//! `JoinableQueue` and `SimpleQueue`, lock-free, zero-copy where it can be,
//! and robust to processes that die mid-operation.
//!
//! | Python | shmproc |
//! |---|---|
//! | `Queue(maxsize)` | [`Queue::<T>::new`](Queue::new) / [`create`](Queue::create)`(name, n)` / [`open`](Queue::open)`(name)` |
//! | `put`, `put(timeout=)`, `put_nowait` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout) / [`put_deadline`](Queue::put_deadline), [`try_put`](Queue::try_put) |
//! | `get`, `get(timeout=)`, `get_nowait` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout) / [`get_deadline`](Queue::get_deadline), [`try_get`](Queue::try_get); in place: [`get_ref`](Queue::get_ref) |
//! | `qsize()`, `empty()`, `full()`, `close()` | [`qsize`](Queue::qsize), [`empty`](Queue::empty), [`full`](Queue::full) (exact), [`close`](Queue::close) |
//! | `JoinableQueue`: `task_done()`, `join()` | [`JoinableQueue`]: [`task_done`](JoinableQueue::task_done), [`join`](JoinableQueue::join), [`join_timeout`](JoinableQueue::join_timeout) / [`join_deadline`](JoinableQueue::join_deadline) |
//! | `SimpleQueue` | [`SimpleQueue`] |
//! | `queue.Full`, `queue.Empty` | [`TryPutError::Full`], [`PutTimeoutError::Timeout`]; [`TryGetError::Empty`], [`GetTimeoutError::Timeout`]: one error enum per form, so a `put` caller never matches `Full` |
//! | `Queue` of any object (pickled, any size) | [`ByteQueue`]: [`put_bytes`](ByteQueue::put_bytes) / [`get_bytes`](ByteQueue::get_bytes) of any length up to [`MAX_MESSAGE_LEN`]; zero-copy [`reserve`](ByteQueue::reserve) → [`commit`](WriteGuard::commit) and [`get_bytes_ref`](ByteQueue::get_bytes_ref); feature `serde`: `put_obj` / `get_obj` (postcard) |
//!
//! [`Queue`] elements are `bytemuck::Pod` (plain data, valid for any bytes:
//! another process's memory is untrusted). [`ByteQueue`] carries byte
//! messages of any length (inline in the slot, or through a side segment
//! when longer: see [`bytes`]), and with the `serde` feature (off by
//! default) any `Serialize` object.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmproc_channel::ByteQueue;
//! let q = ByteQueue::new(64, 1024)?; // 64 slots, 1 KiB inline each
//! q.put_bytes(b"any length")?;
//! q.put_bytes(&vec![0u8; 4 << 20])?; // 4 MiB: through a side segment
//! assert_eq!(q.get_bytes()?, b"any length");
//! assert_eq!(q.get_bytes()?.len(), 4 << 20);
//! # Ok(()) }
//! ```
//!
//! # Layout of a queue segment
//! ```text
//!  segment  0        128          256      384      512                 512 + cap * stride
//!           +--------+------------+--------+--------+-------------------+
//!           | segment| ring meta  | tail   | head   | slot 0 | slot 1 ..|
//!           | header | (line 0)   | line   | line   |                   |
//!           +--------+------------+--------+--------+-------------------+
//!  payload  ^ DATA_OFFSET = 0     128      256      384
//! ```
//! The ring header's docs (`RingHeader`, in `src/ring/layout.rs`) have the
//! offset table; each slot is a stamp, an owner record and the payload (at
//! 16 for payloads up to 48 bytes, else at 64), `stride` (a multiple of 64)
//! bytes apart.
//!
//! # Untrusted memory
//! The capacity, slot size and stride are read once at open, checked
//! against the segment header (whose fingerprint covers them) and the real
//! mapping size, and kept in the handle; every slot index is `pos & mask`
//! with the local mask. Stamps and indices read later are validated: an
//! impossible value gives a [`Corrupt`] error, never an out-of-bounds
//! access, a panic or an endless spin.
//!
//! # Borrowed guards: the trust model
//! [`ReadGuard`], [`BytesGuard`], [`RecvGuard`] and a [`WriteGuard`]/
//! [`SendGuard`] lend `&T`, `&[u8]` or `&mut [u8]` straight into shared
//! memory (zero-copy), which STYLE's rule "never a reference over bytes
//! another process may write" would forbid. They are the one exception, and
//! this is its argument, stated once:
//! - The bytes lent belong to this process by the protocol: a slot it
//!   claimed (its stamp names this process and the claim's lap), or a pipe
//!   range between the reader's head and the writer's tail, or a side
//!   segment this process unlinked before lending it. No process *following
//!   the protocol* writes them while the guard lives.
//! - The range was bounds-checked against lengths kept in this process (the
//!   slot size and ring capacity read once at open), never against a length
//!   read from shared memory afterwards, so a scribbling process cannot move
//!   the borrow out of the mapping.
//! - A process that breaks the protocol can change the borrowed bytes under
//!   the reader (as it could corrupt any shared structure): the contents are
//!   then wrong, which is what `Pod` types (valid for any bits) and byte
//!   slices tolerate, but nothing outside the range is touched and no
//!   invariant of this process's memory depends on them.
//!
//! Each guard's docs link here.
//!
//! # Model checking
//! The ring's and the pipe's protocols run under loom (`--cfg shmproc_loom`,
//! heap storage, the production code): `shmproc_sync::model` gives each
//! loom thread its own pid and tid, maps both sides of the asymmetric fence
//! to `fence(SeqCst)` (soundness argued in `shmproc_sync::asym`), blocks
//! futex waiters until their word changes (a lost wake-up is a deadlock
//! loom reports), and lets a thread die at a crash point (reported dead to
//! every liveness check). The pipe's seam is `pipe/heap.rs`: its control
//! blocks with loom atomics, a loom atomic per line for the seals, and a
//! loom-tracked cell per data byte, which every copy in or out registers
//! (a byte read without a happens-before edge from its write, or
//! overwritten while the reader may still read it, is a causality
//! violation); in a production build the seam is the segment and the
//! tracking compiles to nothing. Bound = loom's preemption bound.
//!
//! | model (`tests/`) | protocol | bound |
//! |---|---|---|
//! | `loom.rs` `mpmc_2x2_*`, `maxsize_*` | stamp CAS claims, helping, maxsize | 1 |
//! | `loom.rs` `spsc_order_across_laps` | laps, FIFO (with leases) | 2 |
//! | `loom_asym.rs` `lease_revoked_while_holder_runs` | revocation (heavy fence, `active`, "not now") | 2 |
//! | `loom_asym.rs` `lease_handover_without_membarrier` | `FLAG_FENCES`: hand-over by the holder, or its end | 3 |
//! | `loom_asym.rs` `lease_reused_tid` | a new thread with the ended holder's tid | 2 |
//! | `loom_asym.rs` `sleeper_get_is_woken_by_put`, `sleeper_put_is_woken_by_get` | registration vs publish/release: no lost wake-up | 3 |
//! | `loom_asym.rs` `two_repairers_of_one_dead_sleeper` | `repair_sleepers` racing a live sleeper | 2 |
//! | `loom_asym.rs` `death_at_put_claimed`, `death_at_get_claimed` | survivors' repair after a death at each crash point | 2 |
//! | `loom_pipe.rs` `pipe_reader_and_writer_wait` | the pipe's reader and writer waits (register, fence, re-check, futex) against publish and `publish_head`; seals; no lost wake-up | 3 |
//! | `loom_pipe.rs` `pipe_message_across_wrap` | a streamed message wrapping the ring, chunk waits on both sides | 2 |
//! | `loom_pipe.rs` `pipe_heavy_waits_without_membarrier` | the heavy side: `heavy` word set at the claim, heavy fence and liveness check per later sleep (waits time out) | 3 |
//! | `loom_pipe.rs` `pipe_release_claim_hands_over` | `release_claim`, then a fresh claim of the end by another process | 2 |
//! | `shmproc-pool` `loom_pool.rs` `pool_death_at_*` | the `Pod` pool's cursor, pending records, done flags and `lost_pending`, a worker dying at each of five points | 3 (`pending`, `flagged`), 2 |
//!
//! `tests/shuttle.rs` runs 3 producers x 3 consumers (blocking, and with a
//! producer dying at `put-claimed`) under shuttle's randomised,
//! sequentially consistent scheduler: 50,000 schedules each in CI. It found
//! that a consumer (or producer) helping the index past positions that
//! others kept releasing reported a healthy ring [`Corrupt`] ("slot stamp
//! ahead of head") after `capacity` such helps in one call; the bound is
//! now on the stamp (at most one lap ahead), not on the count. The pool's
//! model found two races in `lost_pending` (see `shmproc-pool`'s
//! `claim.rs`), now fixed.
//!
//! Each model has seeded mutants (`SHMPROC_MUTANT`, checked by
//! `.ci/loom-mutants`) that it must catch. Unchecked: configurations
//! beyond these thread counts, message counts and bounds; the pipe's
//! in-place guards (`reserve`, `recv_bytes_ref`: raw pointers the model
//! does not track), its sentinels and `poll`/`wait`, and a peer's death
//! (EOF, `BrokenPipe`); what the `heavy` word buys (the model's light side
//! is a `SeqCst` fence either way, so a light side left without a
//! `membarrier` to back it cannot be expressed: only the word's accesses
//! are checked); for the same reason, any ordering that the light side's
//! `SeqCst` fence gives besides store-load (it is also a release and an
//! acquire fence under the model, a compiler fence in production): a
//! `Release` store after a light fence weakened to `Relaxed`
//! (`release_claim`'s exchange, tried as a mutant) is not caught; the
//! first, light sleep's designed miss (the model's waker
//! always fences); lost wake-ups where waits time out (the death models
//! and the pipe's heavy model); the pool's serde path, its watch loop's
//! bookkeeping around `settle_dead` (retries, aborts) and a replacement
//! that dies before it shows its retry; loom treats `SeqCst` accesses as
//! `AcqRel`, so protocols that pair `SeqCst` accesses without a fence (the
//! sync crate's semaphore and event) are modelled with timed-out waits
//! only (the pool's claim words are all `SeqCst`, and its argument in
//! `claim.rs` uses only acquire/release edges, which is what loom checks);
//! and the kernel itself (`membarrier`'s delivery, futex, `/proc`), which
//! the model stands in for.
//!
//! # Examples
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use shmproc_channel::{GetError, GetTimeoutError, Queue, TryGetError};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Job { id: u32, weight: f32 }
//!
//! let q = Queue::<Job>::new(64)?; // or Queue::create(name, 64) / Queue::open(name)
//! q.put(Job { id: 1, weight: 0.5 })?;
//! assert_eq!(q.qsize(), 1);
//! assert_eq!(q.get()?.id, 1);
//! assert_eq!(q.get_timeout(Duration::from_millis(1)), Err(GetTimeoutError::Timeout));
//! q.close();
//! assert_eq!(q.try_get(), Err(TryGetError::Closed));
//! assert_eq!(q.get(), Err(GetError::Closed));
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
// Under loom only the ring and the pipe's ends are built; the blocking
// layer and the queues are not.
#![cfg_attr(shmproc_loom, allow(dead_code))]

#[cfg(not(shmproc_loom))]
pub mod bytes;
mod crash;
mod error;
mod ring;
mod storage;

#[cfg(not(shmproc_loom))]
mod fuzzing;
#[cfg(not(shmproc_loom))]
pub mod inspect;
#[cfg(not(shmproc_loom))]
mod joinable;
#[cfg(all(feature = "serde", not(shmproc_loom)))]
mod obj;
mod pipe;
#[cfg(not(shmproc_loom))]
mod queue;
#[cfg(not(shmproc_loom))]
mod shared;
#[cfg(not(shmproc_loom))]
mod simple;

pub use error::{
    CommitError, Corrupt, GetError, GetTimeoutError, JoinTimeoutError, PutBytesError,
    PutBytesTimeoutError, PutError, PutTimeoutError, QueueError, TaskDoneError, TryGetError,
    TryPutBytesError, TryPutError,
};
#[cfg(feature = "serde")]
pub use error::{
    GetObjError, GetObjTimeoutError, PutObjError, PutObjTimeoutError, TryGetObjError,
    TryPutObjError,
};
pub use ring::{LeaseState, MAX_CAPACITY};
pub use storage::HeapStorage;

/// Not API: for benches, fuzzing and loom. The ring is crate-private; the
/// loom models (`tests/loom.rs`) drive it directly, and the fuzz targets
/// (`fuzz/`) and their corpus replay (`tests/fuzz_replay.rs`) call the fuzz
/// entry points, through these re-exports. No semver promise covers
/// anything here.
#[doc(hidden)]
pub mod __private {
    #[cfg(not(shmproc_loom))]
    pub use crate::fuzzing::{bytes_records, pipe_frames, pipe_open, queue_corrupt, queue_ops};
    /// The pipe on the heap, for its loom model (`tests/loom_pipe.rs`).
    #[cfg(shmproc_loom)]
    pub use crate::pipe::{HeapPipe, heap_pipe};
    pub use crate::ring::{Pop, Push, Ring};
}

#[cfg(not(shmproc_loom))]
pub use bytes::{ByteQueue, BytesGuard, MAX_MESSAGE_LEN, WriteGuard};
#[cfg(not(shmproc_loom))]
pub use joinable::JoinableQueue;
#[cfg(all(feature = "serde", not(shmproc_loom)))]
pub use obj::ObjQueue;
#[cfg(not(shmproc_loom))]
pub use pipe::{
    DEFAULT_CAPACITY, MAX_CAPACITY_BYTES, MAX_PIPE_MESSAGE_LEN, MIN_CAPACITY, Pipe, PipeMode, wait,
};
// Under the model too: the pipe's ends run on heap storage (`pipe::heap`).
pub use pipe::{
    ClaimError, Connection, ConnectionError, PipeEnd, PollError, RecvError, RecvGuard,
    RecvTimeoutError, SendError, SendGuard, SendTimeoutError, TryRecvError, TrySendError,
};
#[cfg(all(not(shmproc_loom), feature = "serde"))]
pub use pipe::{RecvObjError, SendObjError};
#[cfg(not(shmproc_loom))]
pub use queue::{Queue, ReadGuard};
#[cfg(not(shmproc_loom))]
pub use simple::SimpleQueue;
