//! [`ByteQueue`]: a bounded MPMC queue of byte messages of any length (and,
//! with the `serde` feature, of typed objects), over the same ring as
//! [`Queue`](crate::Queue).
//!
//! # Records
//! Every slot holds one record (records v3): a 64-byte *record header*
//! ([`RECORD_HEADER_LEN`]) whose first 16 bytes, the kind and length
//! words, lie at the end of the slot header's cache line (the ring's own
//! slot header uses the line's first 16 bytes), and whose rest, a side
//! record's name, lies at the start of the payload. The payload is the
//! inline data area (`slot_size` bytes, rounded up to 64, at least 64), 64-byte
//! aligned (DESIGN.md: 4K aliasing). So a message of up to 64 bytes costs
//! the two lines a `Queue` element of the same size costs, the stamp's (with
//! the words) and the data's. Offsets from the payload:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | -16 | `kind: u32` | 1 inline, 2 side segment, 3 cancelled (skipped by consumers); anything else is [`Corrupt`] |
//! | -12 | `name_len: u32` | side records: bytes of the side segment's name (at most 48) |
//! | -8 | `len: u64` | message length |
//! | 0 | `name: [u8; 48]` | side records: the side segment's name |
//! | 0 | data | inline records |
//!
//! The header is copied out of the slot (never referenced in place) and
//! validated against the **local** copy of the slot size: an inline length
//! above it, a side length at or below it (or above
//! [`MAX_MESSAGE_LEN`]), or a bad name is [`Corrupt`], never an
//! out-of-bounds access. The consumer then releases the slot, so the queue
//! stays usable.
//!
//! # Messages larger than a slot: side segments
//! A message longer than the slot's data area goes into a *side segment*:
//! a fresh named `shmproc_shm` segment (`/shmproc-<pid>-<random>-<queue id>-bq`,
//! the queue id being 48 random bits kept in the ring header) that
//! the producer creates, fills and publishes **before** claiming a slot; the
//! record only carries its name and length. The consumer opens it, unlinks
//! the name at once, releases the slot, then copies the bytes out (or lends
//! them in place through a [`BytesGuard`]: once unlinked, no other process
//! can reach those pages).
//!
//! Why not chunks over consecutive slots: in an MPMC ring, positions are
//! claimed one at a time by competing producers, so the chunks of one
//! message interleave with other producers' messages, and consumers would
//! have to reassemble per producer (or a producer would hold a lock across
//! k claims, which a crash wedges). A side segment keeps every record one
//! slot (one claim, one publish: the ring's crash machinery applies
//! unchanged), costs one `shm_open` + `mmap` per large message (small next
//! to copying more than a slot), lets the payload be written in place
//! ([`ByteQueue::reserve`]) at any size, and does not occupy ring capacity.
//!
//! **Limit**: [`MAX_MESSAGE_LEN`] (1 TiB) per message; above it, puts fail
//! with [`PutBytesError::TooLarge`] and nothing is enqueued. In practice the
//! limit is the space of `/dev/shm` ([`PutBytesError::Side`] with
//! `NoSpace`, again nothing enqueued).
//!
//! **Leaks**: a side segment is unlinked by its consumer, or by the producer
//! when the put fails or a [`WriteGuard`] is dropped. It outlives both only
//! when a process dies in a window: a producer between creating it and
//! publishing the record, or a consumer between claiming the record and
//! opening the segment (a few system calls), or when a queue is destroyed
//! with undelivered large messages still in it. [`ByteQueue::sweep_side_segments`]
//! removes the side segments of this queue (its id is in their names, so
//! another queue's are never touched) whose creator is dead, that no
//! published record references and that no process maps (run it when no
//! producer of the queue is mid-put, e.g. after joining the workers, or
//! before dropping the queue). Side segments are persisted (the consumer,
//! not the producer, unlinks them), so generic crash cleanup
//! ([`shmproc_shm::cleanup`]) leaves them alone: this sweep is theirs.
//!
//! # Nothing lost
//! A put either returns `Ok` (the message is delivered once) or an error
//! (nothing was enqueued). A [`WriteGuard`] dropped without
//! [`commit`](WriteGuard::commit) publishes a *cancelled* record that every
//! consumer skips; a producer killed between claim and publish leaves a
//! claim that consumers skip once they see it dead (the ring's
//! [`skipped_writes`](ByteQueue::skipped_writes)).

#![allow(unsafe_code)] // In-place views of claimed slots and of side segments (WriteGuard, BytesGuard).
#![deny(clippy::indexing_slicing)]

use std::convert::Infallible;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use shmproc_shm::sync::{Ordering, spin_loop};
use shmproc_shm::{
    NAME_PREFIX, Offset, OpenOptions, PendingSegment, Segment, SegmentKind, SegmentLayout,
    SegmentName, Source, TypeSpec, cleanup, os,
};
use shmproc_sync::futex::{Deadline, SPIN_LIMIT};

use crate::crash;
use crate::error::{
    CommitError, Corrupt, GetError, GetTimeoutError, PutBytesError, PutBytesTimeoutError,
    QueueError, TryGetError, TryPutBytesError,
};
#[cfg(feature = "serde")]
use crate::error::{
    GetObjError, GetObjTimeoutError, PutObjError, PutObjTimeoutError, TryGetObjError,
    TryPutObjError,
};
use crate::ring::{
    Claim, Fast, MAX_CAPACITY, MAX_SLOT_SIZE, Pop, Push, Ring, RingHeader, Side, Until, ring_bytes,
};
use crate::storage::SegmentStorage;

/// The largest message a [`ByteQueue`] takes (1 TiB); beyond it puts fail
/// with [`PutBytesError::TooLarge`].
pub const MAX_MESSAGE_LEN: u64 = 1 << 40;

/// A record's header: the kind and length words (16 bytes),
/// then a side record's segment name. Where it lies (records v3): the
/// words in the last 16 bytes of the slot header's cache line, right before
/// the payload (the ring's slot header is 16 bytes, and a byte queue's
/// payload starts on the next line), the name at the start of the payload.
/// An inline record's data starts at the payload too, 64-byte aligned: a
/// message of up to one line costs the two lines a `Queue` element of the
/// same size does (the stamp's and the data's); records v2, with the words
/// in the payload, cost a 64-byte message a third line each way (0.66x the
/// `Queue`'s throughput).
pub const RECORD_HEADER_LEN: usize = 64;

/// The kind and length words of a record header.
const WORDS_LEN: usize = 16;

/// The kind word of a record header (0, no kind, when `h` is short).
fn kind_of(h: &[u8]) -> u32 {
    h.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b))
}

/// The length word of a record header (0 when `h` is short).
fn len_of(h: &[u8]) -> u64 {
    h.get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The largest inline data area of one slot (a slot's payload is its
/// inline data area).
pub const MAX_INLINE: usize = (MAX_SLOT_SIZE as usize) - 64;

const KIND_INLINE: u32 = 1;
const KIND_SIDE: u32 = 2;
const KIND_CANCELLED: u32 = 3;
const NAME_CAP: usize = 48;
/// The tag at the end of side segment names.
const SIDE_TAG: &str = "-bq";

/// The element spec of a byte queue segment (the slot size is read from the
/// ring header at open, validated, and kept locally).
const QUEUE_SPEC: TypeSpec = TypeSpec {
    // "records v3": the words in the slot header's line, the data (or a
    // side record's name) at the payload (`RECORD_HEADER_LEN`; v2 kept the
    // words at the payload, v1 the data after a 64-byte header); the name
    // is part of the fingerprint, so an older process cannot open a v3 queue.
    type_name: "shmproc_channel::ByteQueue (records v3)",
    size: 1,
    align: 1,
    capacity: 0,
    slot_size: 0,
};

/// The spec of a side segment holding `len` bytes.
const fn side_spec(len: u64) -> TypeSpec {
    TypeSpec {
        type_name: "shmproc_channel::ByteQueue side",
        size: 1,
        align: 1,
        capacity: len,
        slot_size: 0,
    }
}

/// A decoded record header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Inline(usize),
    Side { len: u64, name: String },
    Cancelled,
}

/// A record's kind and length words: kind (u32 LE), the side name's length
/// (u32 LE), the message length (u64 LE). Built in registers, for the
/// leased put as for [`encode`].
#[inline(always)]
fn record_words(kind: u32, name_len: u32, len: u64) -> [u8; WORDS_LEN] {
    (u128::from(kind) | (u128::from(name_len) << 32) | (u128::from(len) << 64)).to_le_bytes()
}

fn encode(kind: u32, len: u64, name: &str) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let n = name.len().min(NAME_CAP);
    let (head, rest) = h.split_at_mut(WORDS_LEN);
    head.copy_from_slice(&record_words(kind, n as u32, len));
    if let (Some(w), Some(src)) = (rest.get_mut(..n), name.as_bytes().get(..n)) {
        w.copy_from_slice(src);
    }
    h
}

/// Validates a header copied out of a slot against the local inline size.
fn decode(h: &[u8; RECORD_HEADER_LEN], inline: usize, pos: u64) -> Result<Record, Corrupt> {
    let word = |r: std::ops::Range<usize>| -> u64 {
        let mut b = [0u8; 8];
        if let (Some(dst), Some(src)) = (b.get_mut(..r.len()), h.get(r)) {
            dst.copy_from_slice(src);
        }
        u64::from_le_bytes(b)
    };
    let (kind, len) = (kind_of(h), len_of(h));
    let name_len = word(4..8);
    match kind {
        KIND_INLINE => {
            if len > inline as u64 {
                return Err(Corrupt::new("record length above the slot size", len));
            }
            Ok(Record::Inline(len as usize))
        }
        KIND_SIDE => {
            if len <= inline as u64 || len > MAX_MESSAGE_LEN {
                return Err(Corrupt::new("side record length", len));
            }
            let name = usize::try_from(name_len)
                .ok()
                .filter(|&n| n <= NAME_CAP)
                .and_then(|n| h.get(16..16 + n))
                .and_then(|b| std::str::from_utf8(b).ok())
                .filter(|s| is_side_name(s))
                .ok_or(Corrupt::new("side record name", name_len))?;
            Ok(Record::Side {
                len,
                name: name.to_owned(),
            })
        }
        KIND_CANCELLED => Ok(Record::Cancelled),
        _ => Err(Corrupt::new("record kind", pos)),
    }
}

/// Whether `s` looks like a side segment name we generate (so a scribbled
/// record cannot make a consumer open and unlink an arbitrary segment).
fn is_side_name(s: &str) -> bool {
    s.starts_with("/shmproc-")
        && s.ends_with(SIDE_TAG)
        && s.len() > 1
        && !s.get(1..).is_some_and(|r| r.contains('/'))
}

/// A bounded multi-producer, multi-consumer queue of byte messages of any
/// length in shared memory: Python's `multiprocessing.Queue`, for bytes
/// (and, with the `serde` feature, for any serialisable object).
///
/// Messages up to [`slot_size`](Self::slot_size) bytes live in the slot;
/// longer ones (up to [`MAX_MESSAGE_LEN`]) go through a side segment (see
/// the [module docs](crate::bytes) for the record format, the choice and
/// the leak windows).
///
/// | Python | shmproc |
/// |---|---|
/// | `q.put(obj)` (pickled) | [`put_bytes`](Self::put_bytes), [`try_put_bytes`](Self::try_put_bytes), [`put_bytes_timeout`](Self::put_bytes_timeout) / [`put_bytes_deadline`](Self::put_bytes_deadline); zero-copy: [`reserve`](Self::reserve) → write → [`commit`](WriteGuard::commit); `serde`: `put_obj` |
/// | `q.get()` | [`get_bytes`](Self::get_bytes), [`try_get_bytes`](Self::try_get_bytes), [`get_bytes_timeout`](Self::get_bytes_timeout) / [`get_bytes_deadline`](Self::get_bytes_deadline), [`get_bytes_into_vec`](Self::get_bytes_into_vec); in place: [`get_bytes_ref`](Self::get_bytes_ref); `serde`: `get_obj` |
/// | `qsize()`, `empty()`, `full()`, `close()` | as [`Queue`](crate::Queue) |
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_channel::ByteQueue;
/// let q = ByteQueue::new(16, 256)?; // 16 slots of 256 inline bytes
/// q.put_bytes(b"hello")?;
/// let big = vec![7u8; 1 << 20]; // larger than a slot: a side segment
/// q.put_bytes(&big)?;
/// let mut w = q.reserve(3)?; // zero-copy: write in place, then commit
/// w.copy_from_slice(b"abc");
/// w.commit()?;
/// assert_eq!(q.get_bytes()?, b"hello");
/// assert_eq!(q.get_bytes()?.len(), 1 << 20);
/// assert_eq!(&*q.get_bytes_ref()?, b"abc"); // borrowed in place
/// # Ok(()) }
/// ```
pub struct ByteQueue {
    ring: Ring<SegmentStorage>,
    /// Inline bytes per slot (local, validated at open).
    inline: usize,
}

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("segment", &self.ring.storage().segment().label())
            .field("maxsize", &self.ring.maxsize())
            .field("slot_size", &self.inline)
            .field("len", &self.ring.len())
            .finish()
    }
}

fn payload_len_for(cap: u64, inline: usize) -> Option<u64> {
    ring_bytes(cap, inline as u64)
}

/// Where a record's words lie for the slot whose payload starts at
/// `payload`: the 16 bytes before it, the end of the slot header's line.
/// In bounds for every byte queue slot: the ring places a payload of more
/// than 48 bytes 64 bytes into its slot (`slot_geometry`), and a byte
/// queue's payload is at least 64 bytes (checked in `attach`), while the
/// ring's own slot header uses only the line's first 16 bytes.
fn words_at(payload: *mut u8) -> *mut u8 {
    payload.wrapping_sub(WORDS_LEN)
}

/// Writes a record header for the slot whose payload starts at `payload`:
/// the words, and a side record's name (see [`RECORD_HEADER_LEN`]).
///
/// # Safety
/// `payload` is the payload of a slot of this process's byte queue that the
/// caller may write (its claim, or the producers' lease in a leased put).
unsafe fn write_header(payload: *mut u8, h: &[u8; RECORD_HEADER_LEN]) {
    let (words, name) = h.split_at(WORDS_LEN);
    // SAFETY: the words' 16 bytes lie in the slot header's line (`words_at`),
    // which no process following the protocol touches but the slot's
    // writer; `h` is local memory.
    unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), words_at(payload), WORDS_LEN) };
    if kind_of(h) == KIND_SIDE {
        // SAFETY: a name's 48 bytes fit in the payload (at least 64 bytes,
        // checked in `attach`), the caller's to write; `h` is local.
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), payload, name.len()) };
    }
}

/// Copies the record header of the slot whose payload starts at `payload`
/// into local memory (a side record's name only when the words say side).
/// Torn bytes (a slot read without its claim, or a scribbling peer) are
/// caught by `decode` or the caller's stamp re-check.
///
/// # Safety
/// `payload` is the payload of a slot of this process's byte queue.
unsafe fn read_header(payload: *const u8) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let (words, name) = h.split_at_mut(WORDS_LEN);
    // SAFETY: as in `write_header`: in bounds of the slot; copied into
    // local memory, never referenced in place.
    unsafe {
        std::ptr::copy_nonoverlapping(words_at(payload.cast_mut()), words.as_mut_ptr(), WORDS_LEN)
    };
    if kind_of(words) == KIND_SIDE {
        // SAFETY: as in `write_header`: inside the payload; local copy.
        unsafe { std::ptr::copy_nonoverlapping(payload, name.as_mut_ptr(), name.len()) };
    }
    h
}

impl ByteQueue {
    /// The inline bytes of a slot for a requested `slot_size` (rounded up to
    /// a multiple of 64).
    fn inline_size(slot_size: usize) -> Result<usize, QueueError> {
        slot_size
            .max(1)
            .checked_next_multiple_of(64)
            .filter(|&s| s <= MAX_INLINE)
            .ok_or(QueueError::invalid(
                "ByteQueue",
                format!("slot size {}: must be at most 2^30 - 64 bytes", slot_size),
            ))
    }

    fn make(name: Option<&str>, capacity: usize, slot_size: usize) -> Result<Self, QueueError> {
        if capacity == 0 || capacity as u64 > MAX_CAPACITY {
            return Err(QueueError::invalid(
                "ByteQueue",
                format!("capacity {}: must be 1..=2^30", capacity),
            ));
        }
        let cap = (capacity as u64).next_power_of_two();
        let inline = Self::inline_size(slot_size)?;
        let ring_slot = inline;
        let bytes = payload_len_for(cap, inline).ok_or(QueueError::invalid(
            "ByteQueue",
            format!("capacity {}: must be 1..=2^30", capacity),
        ))?;
        let layout = SegmentLayout::new(SegmentKind::QUEUE, QUEUE_SPEC.with_capacity(cap), bytes);
        let pending = match name {
            Some(n) => Segment::create(n, &layout),
            None => Segment::create_anonymous(&layout),
        }
        .map_err(QueueError::segment("create", "ByteQueue"))?;
        SegmentStorage::init(pending.segment(), ring_slot, capacity as u64)?;
        let seg = pending.publish();
        let storage = SegmentStorage::new(seg, ring_slot)?;
        Ok(Self {
            ring: Ring::new(storage, false),
            inline,
        })
    }

    /// A handle on a validated storage, and the storage back: the fuzz
    /// harness (`fuzzing.rs`) keeps one mapping across inputs.
    pub(crate) fn from_storage(storage: SegmentStorage) -> Self {
        let inline = crate::ring::Storage::slot_size(&storage);
        Self {
            ring: Ring::new(storage, false),
            inline,
        }
    }
    pub(crate) fn into_storage(self) -> SegmentStorage {
        self.ring.into_storage()
    }

    fn attach(seg: Segment) -> Result<Self, QueueError> {
        // The slot size is read once here, validated (range, and by
        // SegmentStorage::new against the ring header and the mapping's
        // real length) and kept locally.
        let hdr = seg
            .get(Offset::<RingHeader>::in_payload(0))
            .map_err(|_| Corrupt::new("ring header offset", 0))?;
        let ring_slot = hdr.slot_size.load(Ordering::Relaxed);
        // At least 64 (a side record's name fits, and the payload starts
        // on the line after the slot header: `words_at`).
        if !(64..=MAX_INLINE as u64).contains(&ring_slot) || ring_slot % 64 != 0 {
            return Err(Corrupt::new("byte queue slot size", ring_slot).into());
        }
        let ring_slot = ring_slot as usize;
        let storage = SegmentStorage::new(seg, ring_slot)?;
        Ok(Self {
            ring: Ring::new(storage, false),
            inline: ring_slot,
        })
    }

    /// An anonymous byte queue that holds at most `capacity` messages
    /// (Python's `maxsize`), of up to `slot_size` bytes inline (rounded up
    /// to a multiple of 64; longer ones go through side segments).
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`] for a capacity of 0 or above 2^30, or a slot
    /// size above 1 GiB; segment errors.
    pub fn new(capacity: usize, slot_size: usize) -> Result<Self, QueueError> {
        Self::make(None, capacity, slot_size)
    }

    /// A named byte queue that other processes [`open`](Self::open) by `name`.
    ///
    /// # Errors
    /// As [`new`](Self::new), plus the name errors and
    /// [`AlreadyExists`](shmproc_shm::SegmentError::AlreadyExists).
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, QueueError> {
        Self::make(Some(name), capacity, slot_size)
    }

    /// Opens the named byte queue (its capacity and slot size come from the
    /// segment, validated).
    ///
    /// # Errors
    /// [`QueueError::Segment`] (not found, not a byte queue, truncated...),
    /// [`QueueError::Corrupt`].
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Self::open_source(Source::Name(name))
    }

    /// Opens the byte queue behind `fd` (from [`inheritable_fd`](Self::inheritable_fd)).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, QueueError> {
        Self::open_source(Source::Fd(fd))
    }

    pub(crate) fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        let seg = OpenOptions::new(SegmentKind::QUEUE, QUEUE_SPEC)
            .open_source(source)
            .map_err(QueueError::segment("open", "ByteQueue"))?;
        Self::attach(seg)
    }

    // ------------------------------------------------------------------ put
    //
    // Every form of an operation is one `*_until(.., Until)` that answers
    // `Ok(None)` when nothing happened by the deadline; `settle` and
    // `forever` turn that into each form's error.

    fn claim_put(&self, check_dead: bool) -> Result<Option<Claim>, PutBytesError> {
        if self.ring.is_closed() {
            return Err(PutBytesError::Closed);
        }
        match self.ring.try_claim_push(check_dead)? {
            Push::Claimed(c) => Ok(Some(c)),
            Push::Full => Ok(None),
        }
    }

    /// Claims a slot by `until`: `Ok(None)` when none came free.
    fn claim_slot(&self, until: Until) -> Result<Option<Claim>, PutBytesError> {
        self.ring
            .block_until(Side::Put, until, |cd| self.claim_put(cd))
    }

    fn check_len(len: usize) -> Result<u64, PutBytesError> {
        let l = len as u64;
        if l > MAX_MESSAGE_LEN {
            return Err(PutBytesError::TooLarge {
                len: l,
                max: MAX_MESSAGE_LEN,
            });
        }
        Ok(l)
    }

    /// Creates a side segment of `len` bytes (not yet holding data).
    fn create_side(&self, len: u64) -> Result<PendingSegment, PutBytesError> {
        let name = side_name(self.queue_id());
        let layout = SegmentLayout::new(SegmentKind::RAW, side_spec(len), len);
        Segment::create(&name, &layout).map_err(|e| PutBytesError::Side(Box::new(e)))
    }

    /// The put: `Ok(Some(()))` sent, `Ok(None)` no room by `until` (nothing
    /// enqueued).
    fn put_until(&self, data: &[u8], until: Until) -> Result<Option<()>, PutBytesError> {
        let len = Self::check_len(data.len())?;
        if data.len() <= self.inline {
            if self.ring.is_closed() {
                return Err(PutBytesError::Closed);
            }
            if self.fast_put(data) {
                return Ok(Some(()));
            }
            loop {
                // Every attempt of the wait tries the leased put first, as
                // `Queue::put`'s: a leased producer that found the ring full
                // goes on with plain stores once there is room.
                let got = self.ring.block_until(Side::Put, until, |cd| {
                    if !self.ring.is_closed() && self.fast_put(data) {
                        return Ok(Some(None));
                    }
                    self.claim_put(cd).map(|c| c.map(Some))
                })?;
                let claim = match got {
                    None => return Ok(None),
                    Some(None) => return Ok(Some(())),
                    Some(Some(claim)) => claim,
                };
                let payload = self.ring.payload_ptr(&claim);
                // SAFETY: the payload of the slot we claimed (WRITING).
                unsafe { write_header(payload, &encode(KIND_INLINE, len, "")) };
                self.ring.write(&claim, 0, data);
                crash::point("put-claimed");
                if self.ring.publish(claim) {
                    return Ok(Some(()));
                }
                // The slot was no longer ours (a corrupt peer's write): not
                // sent; retry.
            }
        }
        // Large: fill and publish the side segment first, so the slot claim
        // is held only for writing the record header.
        let pending = self.create_side(len)?;
        let seg = pending.segment();
        let dst = seg.data_ptr();
        debug_assert!(seg.data_len() >= data.len());
        // SAFETY: `dst` is the payload of a segment we just created with
        // `len == data.len()` payload bytes (create sized it), not yet
        // published, so no other process maps it; `data` is local memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        let mut seg = pending.publish();
        let name = seg_name(&seg);
        // From here the consumer unlinks it; until the record is published,
        // failures below remove it ourselves.
        seg.persist();
        drop(seg);
        self.publish_side(len, &name, until)
    }

    /// The leased put of an inline message (this thread holds the
    /// producers' lease: plain stores only, as `Queue::put`'s); `false`
    /// when the CAS protocol must decide (no lease, or no room now).
    ///
    /// Always inline (see `Queue::fast_put`): the words are built in
    /// registers (`encode`'s whole header is for the CAS path and side
    /// records).
    #[inline(always)]
    fn fast_put(&self, data: &[u8]) -> bool {
        let words = record_words(KIND_INLINE, 0, data.len() as u64);
        let fast = self.ring.fast_push(|dst| {
            // SAFETY: `dst` is the tail slot's payload, free for this
            // position (EMPTY) and ours alone (leased operation); the words
            // lie in its slot header's line, before it (`words_at`);
            // `words` is local memory.
            unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), words_at(dst), words.len()) };
            // SAFETY: `data.len() <= self.inline` (the caller checked), the
            // payload's size; `data` is local memory.
            unsafe { copy_bytes(data.as_ptr(), dst, data.len()) };
            crash::point("put-claimed");
        });
        matches!(fast, Fast::Done(()))
    }

    /// The leased get of an inline record of at most `max` bytes (this
    /// thread holds the consumers' lease): `copy(src, len)` copies the
    /// record's data out and answers `false` to decline it (no memory).
    /// `None` when the CAS protocol must decide: no lease, nothing
    /// published, or a record it handles (side, cancelled, corrupt, longer
    /// than `max`), which stays published untouched.
    #[inline(always)]
    fn fast_get(&self, max: u64, copy: impl FnOnce(*const u8, usize) -> bool) -> Option<usize> {
        let fast = self.ring.fast_pop_if(|src| {
            let mut h = [0u8; WORDS_LEN];
            // SAFETY: `src` is the head slot's payload, published for this
            // position (FULL, Acquire) and ours alone (leased operation);
            // its words lie in the slot header's line (`words_at`); `h` is
            // local.
            unsafe {
                std::ptr::copy_nonoverlapping(words_at(src.cast_mut()), h.as_mut_ptr(), h.len())
            };
            let len = len_of(&h);
            if kind_of(&h) != KIND_INLINE || len > self.inline as u64 || len > max {
                return None;
            }
            let len = len as usize;
            // `len <= inline`: the data lies inside the payload.
            let ok = copy(src, len);
            crash::point("get-claimed");
            ok.then_some(len)
        });
        match fast {
            Fast::Done(n) => Some(n),
            Fast::Idle | Fast::Other => None,
        }
    }

    /// Claims a slot and publishes a side record for the already published
    /// segment `name`; removes the segment when nothing was sent.
    fn publish_side(
        &self,
        len: u64,
        name: &str,
        until: Until,
    ) -> Result<Option<()>, PutBytesError> {
        loop {
            let claim = match self.claim_slot(until) {
                Ok(Some(c)) => c,
                r => {
                    let _ = Segment::remove(name);
                    return r.map(|_| None);
                }
            };
            // SAFETY: the payload of the slot we claimed (WRITING).
            unsafe { write_header(self.ring.payload_ptr(&claim), &encode(KIND_SIDE, len, name)) };
            crash::point("put-claimed");
            if self.ring.publish(claim) {
                return Ok(Some(()));
            }
        }
    }

    /// Puts a copy of `data` (any length up to [`MAX_MESSAGE_LEN`]),
    /// waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`PutBytesError::TooLarge`], [`PutBytesError::Side`] (the side segment
    /// of a large message could not be created, e.g. `/dev/shm` full),
    /// [`PutBytesError::Closed`], [`PutBytesError::Corrupt`]. On any error
    /// nothing was enqueued.
    #[inline(always)]
    pub fn put_bytes(&self, data: &[u8]) -> Result<(), PutBytesError> {
        // The leased put inline (as `Queue::put`); the rest out of line.
        if data.len() <= self.inline && !self.ring.is_closed() && self.fast_put(data) {
            return Ok(());
        }
        self.put_bytes_slow(data)
    }

    #[inline(never)]
    fn put_bytes_slow(&self, data: &[u8]) -> Result<(), PutBytesError> {
        forever(|| self.put_until(data, Until::NEVER))
    }

    /// Puts a copy of `data`, waiting at most `timeout` for room
    /// ([`put_bytes_deadline`](Self::put_bytes_deadline) at now + `timeout`).
    ///
    /// # Errors
    /// As [`put_bytes`](Self::put_bytes), plus [`PutBytesTimeoutError::Timeout`].
    pub fn put_bytes_timeout(
        &self,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), PutBytesTimeoutError> {
        let until = Until::At(Deadline::after(timeout));
        settle(self.put_until(data, until), PutBytesTimeoutError::Timeout)
    }

    /// Puts a copy of `data`, waiting for room until `deadline`.
    ///
    /// # Errors
    /// As [`put_bytes_timeout`](Self::put_bytes_timeout).
    pub fn put_bytes_deadline(
        &self,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), PutBytesTimeoutError> {
        let until = Until::At(Deadline::at(deadline));
        settle(self.put_until(data, until), PutBytesTimeoutError::Timeout)
    }

    /// Puts a copy of `data` if there is room now.
    ///
    /// # Errors
    /// As [`put_bytes`](Self::put_bytes), plus [`TryPutBytesError::Full`].
    #[doc(alias = "put_nowait")]
    pub fn try_put_bytes(&self, data: &[u8]) -> Result<(), TryPutBytesError> {
        settle(self.put_until(data, Until::Now), TryPutBytesError::Full)
    }

    fn reserve_until(
        &self,
        len: usize,
        until: Until,
    ) -> Result<Option<WriteGuard<'_>>, PutBytesError> {
        let l = Self::check_len(len)?;
        let side = if len > self.inline {
            Some(self.create_side(l)?)
        } else {
            None
        };
        // On an error or no room, `side` drops here: poisoned and unlinked.
        let Some(claim) = self.claim_slot(until)? else {
            return Ok(None);
        };
        let ptr = match &side {
            Some(p) => p.segment().data_ptr(),
            None => self.ring.payload_ptr(&claim),
        };
        Ok(Some(WriteGuard {
            q: self,
            claim: Some(claim),
            side,
            ptr,
            len,
        }))
    }

    /// Reserves room for a message of exactly `len` bytes, waiting for a
    /// slot as long as it takes: write it in place through the guard, then
    /// [`commit`](WriteGuard::commit). Dropping the guard instead sends
    /// nothing (consumers skip the slot).
    ///
    /// While the guard lives, consumers wait at its position (FIFO order):
    /// keep it short.
    ///
    /// # Errors
    /// As [`put_bytes`](Self::put_bytes).
    pub fn reserve(&self, len: usize) -> Result<WriteGuard<'_>, PutBytesError> {
        forever(|| self.reserve_until(len, Until::NEVER))
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`put_bytes_timeout`](Self::put_bytes_timeout).
    pub fn reserve_timeout(
        &self,
        len: usize,
        timeout: Duration,
    ) -> Result<WriteGuard<'_>, PutBytesTimeoutError> {
        let until = Until::At(Deadline::after(timeout));
        settle(
            self.reserve_until(len, until),
            PutBytesTimeoutError::Timeout,
        )
    }

    /// [`reserve`](Self::reserve), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`put_bytes_timeout`](Self::put_bytes_timeout).
    pub fn reserve_deadline(
        &self,
        len: usize,
        deadline: Instant,
    ) -> Result<WriteGuard<'_>, PutBytesTimeoutError> {
        let until = Until::At(Deadline::at(deadline));
        settle(
            self.reserve_until(len, until),
            PutBytesTimeoutError::Timeout,
        )
    }

    /// [`reserve`](Self::reserve) if there is room now.
    ///
    /// # Errors
    /// As [`try_put_bytes`](Self::try_put_bytes).
    pub fn try_reserve(&self, len: usize) -> Result<WriteGuard<'_>, TryPutBytesError> {
        settle(self.reserve_until(len, Until::Now), TryPutBytesError::Full)
    }

    // ------------------------------------------------------------------ get

    /// One claim attempt of a blocking get (`Ok(None)`: nothing yet). A
    /// record longer than `max` is left in the queue and reported as
    /// [`GetError::TooLong`].
    fn claim_get(&self, check_dead: bool, max: u64) -> Result<Option<Claim>, GetError> {
        let pop = if max == u64::MAX {
            self.ring.claim_pop_waiting(check_dead, false)?
        } else {
            self.ring
                .claim_pop_waiting_unless(check_dead, |p| self.longer_than(p, max))?
                .map_err(|len| GetError::TooLong { len, max })?
        };
        match pop {
            Pop::Claimed(c) => Ok(Some(c)),
            Pop::Empty if self.ring.is_closed() => Err(GetError::Closed),
            Pop::Empty | Pop::Busy => Ok(None),
        }
    }

    /// The non-blocking claim (`Ok(None)`: empty), giving a position a live
    /// producer is still writing a few spins; `max` as in
    /// [`claim_get`](Self::claim_get).
    fn claim_get_now(&self, max: u64) -> Result<Option<Claim>, GetError> {
        for spin in 0..=SPIN_LIMIT {
            let check_dead = spin == SPIN_LIMIT;
            let pop = if max == u64::MAX {
                self.ring.try_claim_pop(check_dead)?
            } else {
                self.ring
                    .try_claim_pop_unless(check_dead, |p| self.longer_than(p, max))?
                    .map_err(|len| GetError::TooLong { len, max })?
            };
            match pop {
                Pop::Claimed(c) => return Ok(Some(c)),
                Pop::Empty if self.ring.is_closed() => return Err(GetError::Closed),
                Pop::Empty => return Ok(None),
                Pop::Busy => spin_loop(),
            }
        }
        Ok(None)
    }

    /// For a consumer deciding whether to claim position `p` (published):
    /// its message's length when that is more than `max`. Reads the record
    /// without its claim; the ring proves the read untorn before it counts
    /// ([`Ring::try_claim_pop_unless`](crate::ring::Ring::try_claim_pop_unless)).
    /// A header that does not decode is claimed, and reported as corrupt
    /// then, as by every get.
    fn longer_than(&self, p: u64, max: u64) -> Option<u64> {
        // SAFETY: the payload of slot `p` of this queue; read without its
        // claim, into local memory (the ring re-checks the stamp).
        let h = unsafe { read_header(crate::ring::Storage::payload_ptr(self.ring.storage(), p)) };
        let (kind, len) = (kind_of(&h), len_of(&h));
        ((kind == KIND_INLINE || kind == KIND_SIDE) && len > max).then_some(len)
    }

    /// Claims the next record that is not cancelled and decodes its header;
    /// `Ok(None)` when none came by `until`. A corrupt header releases the
    /// slot and reports [`Corrupt`] (the queue stays usable). A record
    /// longer than `max` stays in the queue: [`GetError::TooLong`].
    fn next_record(&self, until: Until, max: u64) -> Result<Option<(Claim, Record)>, GetError> {
        match self.next_or_fast(until, max, || None::<Infallible>)? {
            None => Ok(None),
            Some(Next::Claimed(claim, rec)) => Ok(Some((claim, rec))),
            Some(Next::Taken(never)) => match never {},
        }
    }

    /// [`next_record`](Self::next_record), where every attempt of a
    /// blocking wait first tries `fast`, the caller's leased get
    /// ([`fast_get`](Self::fast_get) with its copy): a leased consumer that
    /// found the ring empty takes the next inline message with plain stores
    /// as soon as it is published, as `Queue::get` does (before, the wait
    /// claimed it by the CAS protocol: 1.5x the `Queue`'s 8 B latency).
    fn next_or_fast<X>(
        &self,
        until: Until,
        max: u64,
        mut fast: impl FnMut() -> Option<X>,
    ) -> Result<Option<Next<X>>, GetError> {
        loop {
            let claim = match until {
                Until::Now => self.claim_get_now(max)?,
                Until::At(d) => {
                    let got = self.ring.block(Side::Get, d, |cd| {
                        if let Some(x) = fast() {
                            return Ok(Some(Err(x)));
                        }
                        self.claim_get(cd, max).map(|c| c.map(Ok))
                    })?;
                    match got {
                        Some(Err(x)) => return Ok(Some(Next::Taken(x))),
                        Some(Ok(claim)) => Some(claim),
                        None => None,
                    }
                }
            };
            let Some(claim) = claim else {
                return Ok(None);
            };
            crash::point("get-claimed");
            // SAFETY: the payload of the slot we claimed (READING).
            let h = unsafe { read_header(self.ring.payload_ptr(&claim)) };
            match decode(&h, self.inline, claim.pos()) {
                Ok(Record::Cancelled) => {
                    let _ = self.ring.release(claim);
                }
                Ok(r) => return Ok(Some(Next::Claimed(claim, r))),
                Err(c) => {
                    let _ = self.ring.release(claim);
                    return Err(c.into());
                }
            }
        }
    }

    fn release(&self, claim: Claim) -> Result<(), GetError> {
        if self.ring.release(claim) {
            Ok(())
        } else {
            Err(Corrupt::new("slot taken while being read", claim.pos()).into())
        }
    }

    /// Opens and unlinks the side segment of a claimed record, then releases
    /// the slot.
    fn take_side(&self, claim: Claim, len: u64, name: &str) -> Result<Segment, GetError> {
        let opened = OpenOptions::new(SegmentKind::RAW, side_spec(len))
            .init_timeout(Duration::ZERO)
            .open(name);
        if let Ok(seg) = &opened {
            // Unlinked at once: nobody else can reach it now.
            let _ = Segment::remove(seg_name(seg).as_str());
        }
        self.release(claim)?;
        match opened {
            Ok(seg) if seg.data_len() as u64 >= len => Ok(seg),
            Ok(_) => Err(Corrupt::new("side segment shorter than its record", len).into()),
            Err(_) => Err(Corrupt::new("side segment missing", len).into()),
        }
    }

    /// The get into `out`: `Ok(None)` when nothing came by `until`.
    fn get_into_until(&self, out: &mut Vec<u8>, until: Until) -> Result<Option<()>, GetError> {
        out.clear();
        let mut fast = || {
            self.fast_get(u64::MAX, |src, len| {
                if out.try_reserve(len).is_err() {
                    return false;
                }
                // SAFETY: `src..src + len` is the record's data inside the
                // claimed-by-lease slot (fast_get); `out` has room for `len`
                // bytes (reserved above) and is local memory.
                unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len) };
                // SAFETY: the `len` bytes were just initialised by the copy
                // and `len <= capacity`.
                unsafe { out.set_len(len) };
                true
            })
        };
        if fast().is_some() {
            return Ok(Some(()));
        }
        let (claim, rec) = match self.next_or_fast(until, u64::MAX, fast)? {
            None => return Ok(None),
            Some(Next::Taken(_)) => return Ok(Some(())),
            Some(Next::Claimed(claim, rec)) => (claim, rec),
        };
        match rec {
            Record::Inline(len) => {
                out.resize(len, 0);
                self.ring.read(&claim, 0, out);
                self.release(claim).map(Some)
            }
            Record::Side { len, name } => {
                let seg = self.take_side(claim, len, &name)?;
                let n = len as usize;
                // `len` is backed: the side segment maps at least `len`
                // bytes (checked in take_side), so the allocation never
                // runs ahead of the bytes; still, a failure is an error.
                out.try_reserve_exact(n)
                    .map_err(|_| GetError::NoMemory { len })?;
                let src = seg.data_ptr();
                // SAFETY: `src..src + n` is inside the side segment's payload
                // (data_len >= len checked in take_side); its name is unlinked
                // and its producer unmapped it after publishing, so no process
                // writes it; `out` has room for `n` bytes (reserved above) and
                // is distinct local memory.
                unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), n) };
                // SAFETY: the `n` bytes were just initialised by the copy and
                // `n <= capacity` (reserved above).
                unsafe { out.set_len(n) };
                Ok(Some(()))
            }
            Record::Cancelled => unreachable!("next_record skips cancelled records"),
        }
    }

    /// Takes the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`GetError::Closed`] once closed and drained; [`GetError::Corrupt`]
    /// for a corrupt record (its slot is released: the queue stays usable)
    /// or a side segment that vanished; [`GetError::NoMemory`] when a
    /// message from a side segment cannot be copied out.
    pub fn get_bytes(&self) -> Result<Vec<u8>, GetError> {
        let mut v = Vec::new();
        self.get_bytes_into_vec(&mut v)?;
        Ok(v)
    }

    /// Takes the next message, waiting at most `timeout`
    /// ([`get_bytes_deadline`](Self::get_bytes_deadline) at now + `timeout`).
    ///
    /// # Errors
    /// As [`get_bytes`](Self::get_bytes), plus [`GetTimeoutError::Timeout`].
    pub fn get_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, GetTimeoutError> {
        let mut v = Vec::new();
        self.get_bytes_into_vec_timeout(&mut v, timeout)?;
        Ok(v)
    }

    /// Takes the next message, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_deadline(&self, deadline: Instant) -> Result<Vec<u8>, GetTimeoutError> {
        let mut v = Vec::new();
        self.get_bytes_into_vec_deadline(&mut v, deadline)?;
        Ok(v)
    }

    /// Takes the next message if one is there now.
    ///
    /// # Errors
    /// As [`get_bytes`](Self::get_bytes), plus [`TryGetError::Empty`].
    #[doc(alias = "get_nowait")]
    pub fn try_get_bytes(&self) -> Result<Vec<u8>, TryGetError> {
        let mut v = Vec::new();
        self.try_get_bytes_into_vec(&mut v)?;
        Ok(v)
    }

    /// Takes the next message into `out` (cleared first; its allocation is
    /// reused), waiting as long as it takes.
    ///
    /// # Errors
    /// As [`get_bytes`](Self::get_bytes); `out` is empty then.
    pub fn get_bytes_into_vec(&self, out: &mut Vec<u8>) -> Result<(), GetError> {
        forever(|| self.get_into_until(out, Until::NEVER))
    }

    /// [`get_bytes_into_vec`](Self::get_bytes_into_vec), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_into_vec_timeout(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), GetTimeoutError> {
        let until = Until::At(Deadline::after(timeout));
        settle(self.get_into_until(out, until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_into_vec`](Self::get_bytes_into_vec), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_into_vec_deadline(
        &self,
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(), GetTimeoutError> {
        let until = Until::At(Deadline::at(deadline));
        settle(self.get_into_until(out, until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_into_vec`](Self::get_bytes_into_vec) if a message is there now.
    ///
    /// # Errors
    /// As [`try_get_bytes`](Self::try_get_bytes).
    pub fn try_get_bytes_into_vec(&self, out: &mut Vec<u8>) -> Result<(), TryGetError> {
        settle(self.get_into_until(out, Until::Now), TryGetError::Empty)
    }

    /// Takes the next message into `buf`, returning its length, waiting as
    /// long as it takes: [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into)'s
    /// contract (Python's `recv_bytes_into`). A message longer than `buf` is
    /// not taken: [`GetError::TooLong`] says how long it is, and it stays
    /// in the queue for the next get (by this consumer with a bigger
    /// buffer, or another one). Bytes of `buf` past the message are left
    /// as they were.
    ///
    /// # Errors
    /// [`GetError::TooLong`], and as [`get_bytes`](Self::get_bytes) but
    /// [`NoMemory`](GetError::NoMemory).
    #[inline(always)]
    pub fn get_bytes_into(&self, buf: &mut [u8]) -> Result<usize, GetError> {
        // The leased get inline (as `Queue::get`); the rest out of line.
        let dst = buf.as_mut_ptr();
        let got = self.fast_get(buf.len() as u64, |src, len| {
            // SAFETY: `src..src + len` is the record's data inside the
            // claimed-by-lease slot (fast_get); `len <= buf.len()` (the
            // `max` given); `buf` is local memory.
            unsafe { copy_bytes(src, dst, len) };
            true
        });
        if let Some(n) = got {
            return Ok(n);
        }
        self.get_bytes_into_slow(buf)
    }

    #[inline(never)]
    fn get_bytes_into_slow(&self, buf: &mut [u8]) -> Result<usize, GetError> {
        forever(|| self.get_slice_until(buf, Until::NEVER))
    }

    /// [`get_bytes_into`](Self::get_bytes_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`], and as [`get_bytes_into`](Self::get_bytes_into).
    pub fn get_bytes_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, GetTimeoutError> {
        let until = Until::At(Deadline::after(timeout));
        settle(self.get_slice_until(buf, until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_into`](Self::get_bytes_into), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_bytes_into_timeout`](Self::get_bytes_into_timeout).
    pub fn get_bytes_into_deadline(
        &self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, GetTimeoutError> {
        let until = Until::At(Deadline::at(deadline));
        settle(self.get_slice_until(buf, until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_into`](Self::get_bytes_into) if a message is there now.
    ///
    /// # Errors
    /// [`TryGetError::Empty`], and as [`get_bytes_into`](Self::get_bytes_into).
    pub fn try_get_bytes_into(&self, buf: &mut [u8]) -> Result<usize, TryGetError> {
        settle(self.get_slice_until(buf, Until::Now), TryGetError::Empty)
    }

    /// The get into `buf`: `Ok(None)` when nothing came by `until`.
    fn get_slice_until(&self, buf: &mut [u8], until: Until) -> Result<Option<usize>, GetError> {
        let max = buf.len() as u64;
        let dst = buf.as_mut_ptr();
        let fast = || {
            self.fast_get(max, |src, len| {
                // SAFETY: `src..src + len` is the record's data inside the
                // claimed-by-lease slot (fast_get); `len <= max = buf.len()`;
                // `buf` is local memory.
                unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
                true
            })
        };
        if let Some(n) = fast() {
            return Ok(Some(n));
        }
        let (claim, rec) = match self.next_or_fast(until, max, fast)? {
            None => return Ok(None),
            Some(Next::Taken(n)) => return Ok(Some(n)),
            Some(Next::Claimed(claim, rec)) => (claim, rec),
        };
        match rec {
            Record::Inline(len) => {
                // `len <= max`: next_record left longer records in the ring.
                let Some(dst) = buf.get_mut(..len) else {
                    let _ = self.ring.release(claim);
                    return Err(Corrupt::new("record changed while claimed", len as u64).into());
                };
                self.ring.read(&claim, 0, dst);
                self.release(claim).map(|()| Some(len))
            }
            Record::Side { len, name } => {
                let seg = self.take_side(claim, len, &name)?;
                let n = len as usize;
                let Some(dst) = buf.get_mut(..n) else {
                    return Err(Corrupt::new("record changed while claimed", len).into());
                };
                let src = seg.data_ptr();
                // SAFETY: `src..src + n` is inside the side segment's payload
                // (data_len >= len checked in take_side); its name is unlinked
                // and its producer unmapped it after publishing, so no process
                // writes it; `dst` is `n` bytes of distinct local memory.
                unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
                Ok(Some(n))
            }
            Record::Cancelled => unreachable!("next_record skips cancelled records"),
        }
    }

    fn guard_until(&self, until: Until) -> Result<Option<BytesGuard<'_>>, GetError> {
        let Some((claim, rec)) = self.next_record(until, u64::MAX)? else {
            return Ok(None);
        };
        match rec {
            Record::Inline(len) => Ok(Some(BytesGuard {
                ring: &self.ring,
                claim: Some(claim),
                _side: None,
                ptr: self.ring.payload_ptr(&claim),
                len,
            })),
            Record::Side { len, name } => {
                let seg = self.take_side(claim, len, &name)?;
                Ok(Some(BytesGuard {
                    ring: &self.ring,
                    claim: None,
                    ptr: seg.data_ptr(),
                    _side: Some(seg),
                    len: len as usize,
                }))
            }
            Record::Cancelled => unreachable!("next_record skips cancelled records"),
        }
    }

    /// Borrows the next message in place (zero-copy), waiting as long as it
    /// takes; see [`BytesGuard`] for the contract.
    ///
    /// # Errors
    /// As [`get_bytes`](Self::get_bytes).
    #[doc(alias = "recv")]
    pub fn get_bytes_ref(&self) -> Result<BytesGuard<'_>, GetError> {
        forever(|| self.guard_until(Until::NEVER))
    }

    /// [`get_bytes_ref`](Self::get_bytes_ref), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_ref_timeout(
        &self,
        timeout: Duration,
    ) -> Result<BytesGuard<'_>, GetTimeoutError> {
        let until = Until::At(Deadline::after(timeout));
        settle(self.guard_until(until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_ref`](Self::get_bytes_ref), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_bytes_timeout`](Self::get_bytes_timeout).
    pub fn get_bytes_ref_deadline(
        &self,
        deadline: Instant,
    ) -> Result<BytesGuard<'_>, GetTimeoutError> {
        let until = Until::At(Deadline::at(deadline));
        settle(self.guard_until(until), GetTimeoutError::Timeout)
    }

    /// [`get_bytes_ref`](Self::get_bytes_ref) if a message is there now.
    ///
    /// # Errors
    /// As [`try_get_bytes`](Self::try_get_bytes).
    pub fn try_get_bytes_ref(&self) -> Result<BytesGuard<'_>, TryGetError> {
        settle(self.guard_until(Until::Now), TryGetError::Empty)
    }

    // ---------------------------------------------------------------- state

    /// Messages in the queue now, from the indices (as
    /// [`Queue::qsize`](crate::Queue::qsize); a cancelled reservation counts
    /// until a consumer skips it).
    pub fn qsize(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue holds no message now.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds [`capacity`](Self::capacity) messages now.
    pub fn full(&self) -> bool {
        self.ring.len() >= self.ring.maxsize()
    }

    /// The most messages the queue holds: the capacity it was created with.
    pub fn capacity(&self) -> usize {
        self.ring.maxsize() as usize
    }

    /// The largest message stored inline in a slot; longer ones go through
    /// a side segment.
    pub fn slot_size(&self) -> usize {
        self.inline
    }

    /// Closes the queue for every process (as [`Queue::close`](crate::Queue::close)).
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether the queue was closed (by any process).
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// Positions skipped because their producer died between claim and publish.
    pub fn skipped_writes(&self) -> u64 {
        self.ring.header().skipped_writes.load(Ordering::Relaxed)
    }

    /// Messages lost because their consumer died while reading them.
    pub fn abandoned_reads(&self) -> u64 {
        self.ring.header().abandoned_reads.load(Ordering::Relaxed)
    }

    /// Consumers (any process) registered as asleep in a blocking get now;
    /// a diagnostic snapshot. One killed while asleep stays counted until
    /// a producer, finding its wakes wake nobody, checks the registered
    /// sleepers' liveness and takes the count back (up to 13 sleepers per
    /// side are tracked that way).
    pub fn sleeping_consumers(&self) -> u32 {
        self.ring.sleepers(Side::Get)
    }

    /// Producers registered as asleep in a blocking put now (as
    /// [`sleeping_consumers`](Self::sleeping_consumers)).
    pub fn sleeping_producers(&self) -> u32 {
        self.ring.sleepers(Side::Put)
    }

    /// The name, for a named queue.
    pub fn name(&self) -> Option<&str> {
        self.segment().name().map(SegmentName::as_str)
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        self.ring.storage().segment()
    }

    /// A duplicate of the segment's fd for a child started with `exec`.
    ///
    /// # Errors
    /// [`QueueError::Segment`] when the fd cannot be duplicated.
    pub fn inheritable_fd(&self) -> Result<OwnedFd, QueueError> {
        self.segment()
            .inheritable_fd()
            .map_err(QueueError::segment("share", "ByteQueue"))
    }

    /// This queue's id, as its side segments' names carry it: read from
    /// the ring header, where the first process that needs one stores 48
    /// random bits (never 0).
    pub(crate) fn queue_id(&self) -> u64 {
        let id = &self.ring.header().queue_id;
        // Relaxed: the id is a value on its own, published with nothing
        // else; the CAS makes every process agree on the first one stored.
        let cur = id.load(Ordering::Relaxed);
        if cur != 0 {
            return cur;
        }
        let fresh = (os::random_u64() & QUEUE_ID_MASK).max(1);
        match id.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => fresh,
            Err(other) => other,
        }
    }

    /// Removes leaked side segments (see the [module docs](crate::bytes)):
    /// the side segments of **this** queue (named with its id) whose
    /// creator is dead, that no record still in this queue names, and that
    /// no live process maps or holds open. Returns the names removed.
    ///
    /// Another queue's side segments are never touched, whatever state it
    /// is in. Run it when no producer of this queue is mid-put and no
    /// consumer mid-get (live ones are safe; one that dies meanwhile, or a
    /// consumer between claiming a record of a dead producer and opening
    /// its segment, may lose that message), typically after joining the
    /// workers. Racing with another sweep or with crash cleanup is harmless
    /// (see [`cleanup`]).
    pub fn sweep_side_segments(&self) -> Vec<String> {
        let id = self.ring.header().queue_id.load(Ordering::Relaxed);
        if id == 0 {
            return Vec::new(); // no side segment was ever named after this queue
        }
        let mut referenced = Vec::new();
        let cap = self.ring.capacity();
        for i in 0..cap {
            if let Some(pos) = self.ring.peek_published(i) {
                // SAFETY: the payload of slot `i` of this queue; read
                // without its claim, into local memory (checked below).
                let h = unsafe {
                    read_header(crate::ring::Storage::payload_ptr(self.ring.storage(), i))
                };
                // Torn reads are possible (the slot may move on meanwhile):
                // keep the name only if the stamp did not change.
                if self.ring.peek_published(i) == Some(pos) {
                    if let Ok(Record::Side { name, .. }) = decode(&h, self.inline, pos) {
                        referenced.push(name);
                    }
                }
            }
        }
        let suffix = side_suffix(id);
        let candidates =
            cleanup::list_matching(|n| n.starts_with(NAME_PREFIX) && n.ends_with(&suffix))
                .into_iter()
                .map(|info| {
                    // A creator killed before writing the header left no pid
                    // there: the one in the name (ours, by the suffix) says.
                    let dead = match info.creator_alive {
                        Some(alive) => !alive,
                        None => info.named_creator().is_some_and(|c| !c.is_alive()),
                    };
                    (format!("/{}", info.name), dead)
                })
                .filter(|(name, dead)| *dead && !referenced.contains(name))
                .map(|(name, _)| name);
        cleanup::remove_unused(candidates)
    }
}

/// Typed objects (feature `serde`), encoded with
/// [postcard](https://docs.rs/postcard): compact (varints, no field names),
/// `no_std`, a stable documented wire format (1.x), and no schema to share
/// beyond the Rust type itself. Python pickles; we serialise. Objects larger
/// than a slot go through a side segment like any bytes.
#[cfg(feature = "serde")]
impl ByteQueue {
    fn encode_obj<T: serde::Serialize + ?Sized, E>(v: &T) -> Result<Vec<u8>, PutObjError<E>> {
        postcard::to_allocvec(v).map_err(PutObjError::Encode)
    }

    fn decode_obj<T: serde::de::DeserializeOwned, E>(g: &[u8]) -> Result<T, GetObjError<E>> {
        postcard::from_bytes(g).map_err(GetObjError::Decode)
    }

    /// Puts `value`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`PutObjError::Encode`] (nothing sent), or [`put_bytes`](Self::put_bytes)'s
    /// errors in [`PutObjError::Put`].
    pub fn put_obj<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), PutObjError> {
        Ok(self.put_bytes(&Self::encode_obj(value)?)?)
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`put_obj`](Self::put_obj), with
    /// [`put_bytes_timeout`](Self::put_bytes_timeout)'s errors.
    pub fn put_obj_timeout<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), PutObjTimeoutError> {
        Ok(self.put_bytes_timeout(&Self::encode_obj(value)?, timeout)?)
    }

    /// Puts `value`, waiting for room until `deadline`.
    ///
    /// # Errors
    /// As [`put_obj_timeout`](Self::put_obj_timeout).
    pub fn put_obj_deadline<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Instant,
    ) -> Result<(), PutObjTimeoutError> {
        Ok(self.put_bytes_deadline(&Self::encode_obj(value)?, deadline)?)
    }

    /// Puts `value` if there is room now.
    ///
    /// # Errors
    /// As [`put_obj`](Self::put_obj), with
    /// [`try_put_bytes`](Self::try_put_bytes)'s errors.
    pub fn try_put_obj<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), TryPutObjError> {
        Ok(self.try_put_bytes(&Self::encode_obj(value)?)?)
    }

    /// Takes the next message as a `T`, decoded in place (no copy of the
    /// bytes), waiting as long as it takes.
    ///
    /// # Errors
    /// [`GetObjError::Decode`] when the message is not a valid `T`: it was
    /// consumed, and the queue stays usable; or
    /// [`get_bytes`](Self::get_bytes)'s errors in [`GetObjError::Get`].
    pub fn get_obj<T: serde::de::DeserializeOwned>(&self) -> Result<T, GetObjError> {
        Self::decode_obj(&self.get_bytes_ref()?)
    }

    /// [`get_obj`](Self::get_obj), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_obj`](Self::get_obj), with
    /// [`get_bytes_timeout`](Self::get_bytes_timeout)'s errors.
    pub fn get_obj_timeout<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, GetObjTimeoutError> {
        Self::decode_obj(&self.get_bytes_ref_timeout(timeout)?)
    }

    /// [`get_obj`](Self::get_obj), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_obj_timeout`](Self::get_obj_timeout).
    pub fn get_obj_deadline<T: serde::de::DeserializeOwned>(
        &self,
        deadline: Instant,
    ) -> Result<T, GetObjTimeoutError> {
        Self::decode_obj(&self.get_bytes_ref_deadline(deadline)?)
    }

    /// [`get_obj`](Self::get_obj) if a message is there now.
    ///
    /// # Errors
    /// As [`get_obj`](Self::get_obj), with
    /// [`try_get_bytes`](Self::try_get_bytes)'s errors.
    pub fn try_get_obj<T: serde::de::DeserializeOwned>(&self) -> Result<T, TryGetObjError> {
        Self::decode_obj(&self.try_get_bytes_ref()?)
    }
}

/// The plain form's answer from an `*_until(.., Until::NEVER)`: without a
/// deadline `block` does not give up, so `Ok(None)` does not come; were it
/// to, waiting on is what the plain form means.
/// Copies `n` bytes from `src` to `dst`: up to 64 bytes inline, in two
/// overlapping moves of the largest power-of-two width that fits (as a
/// `memcpy` does inside), since a call's frame adds stores to a leased
/// put's, which wait behind its contended stamp store (see
/// `Queue::fast_put`); longer, `copy_nonoverlapping`.
///
/// # Safety
/// As `copy_nonoverlapping(src, dst, n)`.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    /// Two moves of `W`-byte chunks, at the start and at the end (they
    /// overlap when `n < 2 * W`).
    ///
    /// # Safety
    /// As `copy_bytes`, with `W <= n <= 2 * W`.
    #[inline(always)]
    unsafe fn two<const W: usize>(src: *const u8, dst: *mut u8, n: usize) {
        // SAFETY: `0..W` lies in `src`'s `n` bytes (`W <= n`); an
        // unaligned read of plain bytes into a local.
        let a = unsafe { src.cast::<[u8; W]>().read_unaligned() };
        // In bounds: `n - W..n` lies in `src`'s `n` bytes.
        let tail = src.wrapping_add(n - W);
        // SAFETY: `tail..tail + W` lies in `src`'s `n` bytes; as above.
        let b = unsafe { tail.cast::<[u8; W]>().read_unaligned() };
        // SAFETY: `0..W` lies in `dst`'s `n` bytes; an unaligned write.
        unsafe { dst.cast::<[u8; W]>().write_unaligned(a) };
        let tail = dst.wrapping_add(n - W);
        // SAFETY: `tail..tail + W` lies in `dst`'s `n` bytes; as above.
        unsafe { tail.cast::<[u8; W]>().write_unaligned(b) };
    }
    // In every arm: the caller's contract, and `W <= n <= 2 * W` for the
    // arm's width `W` by its range.
    match n {
        0 => {}
        // SAFETY: see above (W = 1).
        1 => unsafe { two::<1>(src, dst, n) },
        // SAFETY: see above (W = 2).
        2..=3 => unsafe { two::<2>(src, dst, n) },
        // SAFETY: see above (W = 4).
        4..=7 => unsafe { two::<4>(src, dst, n) },
        // SAFETY: see above (W = 8).
        8..=15 => unsafe { two::<8>(src, dst, n) },
        // SAFETY: see above (W = 16).
        16..=31 => unsafe { two::<16>(src, dst, n) },
        // SAFETY: see above (W = 32).
        32..=64 => unsafe { two::<32>(src, dst, n) },
        // SAFETY: the caller's contract.
        _ => unsafe { std::ptr::copy_nonoverlapping(src, dst, n) },
    }
}

/// What a get's wait found ([`ByteQueue::next_or_fast`]).
enum Next<X> {
    /// The leased get took the message (`X`: its result).
    Taken(X),
    /// A record claimed by the CAS protocol.
    Claimed(Claim, Record),
}

fn forever<R, E>(mut op: impl FnMut() -> Result<Option<R>, E>) -> Result<R, E> {
    loop {
        if let Some(r) = op()? {
            return Ok(r);
        }
    }
}

/// A `try_` or deadline form's answer: `none` (`Full`, `Empty`, `Timeout`)
/// when nothing happened by the deadline.
fn settle<R, E, F: From<E>>(r: Result<Option<R>, E>, none: F) -> Result<R, F> {
    match r {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(none),
        Err(e) => Err(e.into()),
    }
}

/// The bits of a queue id (48: 12 hex digits in side segment names).
const QUEUE_ID_MASK: u64 = (1 << 48) - 1;

/// How the names of queue `id`'s side segments end: `-<id hex>-bq`.
pub(crate) fn side_suffix(id: u64) -> String {
    format!("-{id:012x}{SIDE_TAG}")
}

/// A fresh side segment name for queue `id`:
/// `/shmproc-<pid hex>-<random hex>-<id hex>-bq` (at most 44 bytes: a pid
/// has at most 6 hex digits, `PID_MAX_LIMIT` being 2^22).
fn side_name(id: u64) -> String {
    let pid = os::identity::pid();
    let rand = os::random_u64() & 0xffff_ffff_ffff;
    format!("/{NAME_PREFIX}{pid:x}-{rand:012x}{}", side_suffix(id))
}

fn seg_name(seg: &Segment) -> String {
    seg.name()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default()
}

/// Room for one message, reserved by [`ByteQueue::reserve`]: write the
/// message in place through `&mut [u8]` (exactly the reserved length), then
/// [`commit`](Self::commit).
///
/// The bytes are the slot's payload (or a fresh side segment for a message
/// longer than a slot); the slot is this producer's by the ring protocol
/// (stamp `WRITING` with our pid) until commit, so no process following the
/// protocol reads or writes them meanwhile. The initial contents are
/// unspecified (an earlier message's bytes, or zeros).
///
/// Dropping the guard without committing sends nothing: the slot is
/// published as a *cancelled* record that consumers skip (it still holds
/// its slot, and counts in [`qsize`](ByteQueue::qsize), until a consumer
/// passes it), and a side segment is unlinked. See the crate's
/// [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
pub struct WriteGuard<'a> {
    q: &'a ByteQueue,
    claim: Option<Claim>,
    side: Option<PendingSegment>,
    ptr: *mut u8,
    len: usize,
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGuard")
            .field("len", &self.len)
            .field("side", &self.side.is_some())
            .finish()
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is the inline data area of the slot we
        // claimed (len <= the local inline size, the slot's payload size)
        // or the payload of the side segment
        // we created with `len` bytes; u8 is valid for any bits; no process
        // following the protocol touches them before our publish (the slot
        // is WRITING with our pid; the side segment is not yet published).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl WriteGuard<'_> {
    /// Publishes the message.
    ///
    /// # Errors
    /// [`CommitError::Taken`] when the slot was no longer this producer's
    /// (only another process writing over the queue's memory does that; a
    /// live producer is never judged dead): the message was **not** sent.
    pub fn commit(mut self) -> Result<(), CommitError> {
        let claim = self.claim.take().expect("claimed until commit or drop");
        let len = self.len as u64;
        let ring = &self.q.ring;
        match self.side.take() {
            None => {
                // SAFETY: the payload of the slot we claimed (WRITING).
                unsafe { write_header(ring.payload_ptr(&claim), &encode(KIND_INLINE, len, "")) };
                crash::point("put-claimed");
                if ring.publish(claim) {
                    Ok(())
                } else {
                    Err(CommitError::Taken)
                }
            }
            Some(pending) => {
                let mut seg = pending.publish();
                let name = seg_name(&seg);
                seg.persist();
                drop(seg);
                // SAFETY: the payload of the slot we claimed (WRITING).
                unsafe { write_header(ring.payload_ptr(&claim), &encode(KIND_SIDE, len, &name)) };
                crash::point("put-claimed");
                if ring.publish(claim) {
                    Ok(())
                } else {
                    let _ = Segment::remove(&name);
                    Err(CommitError::Taken)
                }
            }
        }
    }

    /// The reserved length.
    #[allow(clippy::len_without_is_empty)] // a slice through Deref
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            // Unlinks an uncommitted side segment (PendingSegment's drop).
            drop(self.side.take());
            let payload = self.q.ring.payload_ptr(&claim);
            // SAFETY: the payload of the slot we claimed (WRITING).
            unsafe { write_header(payload, &encode(KIND_CANCELLED, 0, "")) };
            let _ = self.q.ring.publish(claim);
        }
    }
}

/// A message borrowed in place ([`ByteQueue::get_bytes_ref`]): no copy.
///
/// # Contract
/// - Inline message: the bytes are the slot's payload. The slot is this
///   consumer's by the ring protocol (stamp `READING` with our pid) until
///   the guard drops, which releases it; producers do not write it before.
///   A process that scribbles over it anyway breaks the protocol, as it
///   could any shared structure (and this guard reads whatever is there;
///   the length was validated against the local slot size).
/// - Side message: the bytes are the side segment's pages, which this
///   consumer opened and **unlinked** before lending them, after its
///   producer unmapped them: no other process can reach them. The slot was
///   already released.
///
/// Hold the guard briefly: while an inline one lives, producers wait for
/// its slot when the ring comes round to it. See the crate's
/// [trust model for borrowed guards](crate#borrowed-guards-the-trust-model).
pub struct BytesGuard<'a> {
    ring: &'a Ring<SegmentStorage>,
    claim: Option<Claim>,
    _side: Option<Segment>,
    ptr: *mut u8,
    len: usize,
}

impl Deref for BytesGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: see the type's contract: `ptr..ptr + len` is the inline data
        // area of our claimed slot (len validated <= the local inline size) or
        // the payload of our unlinked side segment (data_len >= len checked in
        // take_side), kept mapped by `self`; published before our Acquire
        // claim; no process following the protocol writes it while we hold it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for BytesGuard<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            // `false`: the slot was taken from us; nothing to do.
            let _ = self.ring.release(claim);
        }
    }
}

impl fmt::Debug for BytesGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytesGuard")
            .field("len", &self.len)
            .field("side", &self._side.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_bytes_copies_every_length_exactly() {
        let src: Vec<u8> = (0..200u8).collect();
        for n in 0..=130 {
            let mut dst = vec![0xEEu8; 200];
            // SAFETY: `n <= 130` bytes of two distinct 200-byte buffers.
            unsafe { copy_bytes(src.as_ptr(), dst.as_mut_ptr(), n) };
            let (copied, rest) = dst.split_at(n);
            assert_eq!(Some(copied), src.get(..n), "{n}");
            assert!(rest.iter().all(|&b| b == 0xEE), "{n}: wrote past the end");
        }
    }

    #[test]
    fn record_headers_round_trip_and_validate() {
        let h = encode(KIND_INLINE, 10, "");
        assert_eq!(decode(&h, 64, 0), Ok(Record::Inline(10)));
        assert!(decode(&encode(KIND_INLINE, 65, ""), 64, 0).is_err());
        let name = "/shmproc-1a-0123456789ab-bq";
        assert_eq!(
            decode(&encode(KIND_SIDE, 100, name), 64, 0),
            Ok(Record::Side {
                len: 100,
                name: name.into()
            })
        );
        assert!(decode(&encode(KIND_SIDE, 64, name), 64, 0).is_err());
        assert!(decode(&encode(KIND_SIDE, 100, "/etc-bq"), 64, 0).is_err());
        assert!(decode(&encode(KIND_SIDE, MAX_MESSAGE_LEN + 1, name), 64, 0).is_err());
        assert_eq!(
            decode(&encode(KIND_CANCELLED, 0, ""), 64, 0),
            Ok(Record::Cancelled)
        );
        assert!(decode(&[0; 64], 64, 0).is_err());
    }

    #[test]
    fn side_names_carry_their_queue_id_and_fit_a_record() {
        let id = QUEUE_ID_MASK;
        let name = side_name(id);
        assert!(is_side_name(&name), "{name}");
        assert!(name.ends_with(&side_suffix(id)), "{name}");
        assert!(!name.ends_with(&side_suffix(id - 1)), "{name}");
        // The longest: a 6-hex-digit pid (PID_MAX_LIMIT is 2^22).
        let longest = format!(
            "/{NAME_PREFIX}3fffff-{:012x}{}",
            u64::MAX >> 16,
            side_suffix(id)
        );
        assert_eq!(longest.len(), 44);
        assert!(longest.len() <= NAME_CAP && is_side_name(&longest));
    }
}
