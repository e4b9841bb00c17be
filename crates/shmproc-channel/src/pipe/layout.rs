//! The pipe segment's layout: its sizes and offsets, the shared structs
//! ([`PipeMeta`], [`EndRecord`], [`RingCtl`], [`IndexLine`], [`WakeLine`])
//! with their compile-time layout checks, and the record format (header
//! bytes, [`record_shape`], [`Rec`]). See the [pipe module docs](super) for
//! the protocol.

#[cfg(not(shmproc_loom))]
use std::mem::size_of;

// The index and wake words through the shim (`core`'s atomics, loom's
// under the model, where the control blocks live on the heap: see
// `byte_ring::heap`); the padding is never accessed.
use shmproc_shm::TypeSpec;
#[cfg(not(shmproc_loom))]
use shmproc_shm::shm_safe;
#[cfg(not(shmproc_loom))]
use shmproc_shm::sync::real::AtomicU8;
use shmproc_shm::sync::{AtomicU32, AtomicU64};

/// The smallest pipe ring (per direction), in bytes.
pub const MIN_CAPACITY: usize = 4096;
/// The largest pipe ring (per direction), in bytes.
pub const MAX_CAPACITY_BYTES: usize = 1 << 34;
/// The ring size (per direction) of [`Pipe::new`](super::Pipe::new). For
/// streams of large messages a larger ring
/// ([`Pipe::options`](super::Pipe::options)) pays: at 64 KiB, copy-in/
/// copy-out through a 4 MiB ring ran about 1.3x faster than through 1 MiB
/// on the reference machine (`benches/pipe_compare`), because the reader
/// then copies from the L3 instead of from the writer's L2.
pub const DEFAULT_CAPACITY: usize = 1 << 20;
/// The longest message a pipe carries (1 TiB: any length a process can hold).
pub const MAX_PIPE_MESSAGE_LEN: u64 = 1 << 40;

pub(super) const TAG_MSG: u32 = 0x4753_4d50; // "PMSG"
pub(super) const TAG_PAD: u32 = 0x4441_5050; // "PPAD"
pub(super) const LINE: u64 = 64;
pub(super) const HDR: u64 = 16;
/// Where a record's seal sits in its header line.
pub(super) const SEAL: u64 = 16;
/// Where an inline payload starts.
pub(super) const INLINE: u64 = SEAL + 8;
pub(super) const INLINE_MAX: u64 = LINE - INLINE;
pub(super) const META_OFF: usize = 0;
pub(super) const CTL_OFF: [usize; 2] = [128, 512];
pub(super) const DATA0_OFF: u64 = 4096 - shmproc_shm::DATA_OFFSET as u64;
pub(super) const MODE_DUPLEX: u32 = 1;
pub(super) const MODE_SIMPLEX: u32 = 2;

/// Records at least this long are flagged `busy` while the writer fills
/// them (about a microsecond of copying and up).
pub(super) const BUSY_MIN: u64 = 16 << 10;
/// How long a reader keeps spinning while the writer is `busy`, in spin
/// iterations (milliseconds), before it sleeps as usual.
pub(super) const BUSY_SPIN_LIMIT: u32 = 1 << 16;

pub(super) const READER_WAITING: u32 = 1;
pub(super) const WRITER_WAITING: u32 = 2;

pub(super) const SPEC: TypeSpec = TypeSpec {
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
pub(super) struct EndRecord {
    pub(super) owner: AtomicU64,
    pub(super) closed: AtomicU32,
    _reserved: AtomicU32,
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
pub(super) struct PipeMeta {
    pub(super) capacity: AtomicU64,
    pub(super) mode: AtomicU32,
    _reserved: AtomicU32,
    pub(super) ends: [EndRecord; 2],
    pub(super) seal_key: AtomicU64,
    #[cfg(not(shmproc_loom))]
    _pad: [AtomicU8; 72],
}

/// One 128-byte line holding an index.
#[repr(C, align(128))]
#[derive(Debug)]
pub(super) struct IndexLine {
    pub(super) value: AtomicU64,
    #[cfg(not(shmproc_loom))]
    _pad: [AtomicU8; 120],
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
pub(super) struct WakeLine {
    pub(super) wake: AtomicU32,
    pub(super) waiters: AtomicU32,
    pub(super) armed: AtomicU32,
    pub(super) signalled: AtomicU32,
    pub(super) busy: AtomicU32,
    pub(super) heavy: AtomicU32,
    #[cfg(not(shmproc_loom))]
    _pad: [AtomicU8; 104],
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
pub(super) struct RingCtl {
    pub(super) tail: IndexLine,
    pub(super) head: IndexLine,
    pub(super) wake: WakeLine,
}

#[cfg(not(shmproc_loom))]
shm_safe! {
    EndRecord (size 16, align 8) {
        owner @ 0: AtomicU64,
        closed @ 8: AtomicU32,
        _reserved @ 12: AtomicU32,
    }
}

#[cfg(not(shmproc_loom))]
shm_safe! {
    PipeMeta (size 128, align 128) {
        capacity @ 0: AtomicU64,
        mode @ 8: AtomicU32,
        _reserved @ 12: AtomicU32,
        ends @ 16: [EndRecord; 2],
        seal_key @ 48: AtomicU64,
        _pad @ 56: [AtomicU8; 72],
    }
}

#[cfg(not(shmproc_loom))]
shm_safe! {
    IndexLine (size 128, align 128) {
        value @ 0: AtomicU64,
        _pad @ 8: [AtomicU8; 120],
    }
}

#[cfg(not(shmproc_loom))]
shm_safe! {
    WakeLine (size 128, align 128) {
        wake @ 0: AtomicU32,
        waiters @ 4: AtomicU32,
        armed @ 8: AtomicU32,
        signalled @ 12: AtomicU32,
        busy @ 16: AtomicU32,
        heavy @ 20: AtomicU32,
        _pad @ 24: [AtomicU8; 104],
    }
}

#[cfg(not(shmproc_loom))]
shm_safe! {
    RingCtl (size 384, align 128) {
        tail @ 0: IndexLine,
        head @ 128: IndexLine,
        wake @ 256: WakeLine,
    }
}

#[cfg(not(shmproc_loom))]
const _: () = {
    assert!(SEAL % 8 == 0 && SEAL >= HDR && INLINE + INLINE_MAX == LINE);
    assert!(CTL_OFF[0] >= META_OFF + size_of::<PipeMeta>());
    assert!(CTL_OFF[1] == CTL_OFF[0] + size_of::<RingCtl>());
    assert!(CTL_OFF[1] + size_of::<RingCtl>() <= DATA0_OFF as usize);
    assert!((DATA0_OFF as usize + shmproc_shm::DATA_OFFSET) % 4096 == 0);
};

/// A fresh random seal key (std's per-process random hasher keys, mixed
/// with the time): not a secret from the peer, only unguessable for payload
/// bytes that were not made from it.
pub(super) fn seal_key() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((now, std::process::id()))
}

pub(super) fn payload_len(cap: u64) -> Option<u64> {
    DATA0_OFF.checked_add(cap.checked_mul(2)?)
}

/// Where a record's payload starts, and how many bytes the record spans.
pub(super) fn record_shape(len: u64) -> (u64, u64) {
    if len <= INLINE_MAX {
        (INLINE, LINE)
    } else {
        (LINE, LINE + len.div_ceil(LINE) * LINE)
    }
}

/// A record header's 16 bytes.
#[inline]
pub(super) fn header_bytes(tag: u32, len: u64) -> [u8; HDR as usize] {
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
pub(super) fn parse_header(h: &[u8]) -> (u32, u64) {
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
pub(super) fn copy_small(dst: &mut [u8], src: &[u8]) {
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
pub(super) struct Rec {
    pub(super) len: u64,
    pub(super) payload: u64,
    pub(super) span: u64,
    pub(super) streamed: bool,
}

/// Under the model: the control blocks on the heap (loom atomics, zero).
#[cfg(shmproc_loom)]
mod heap {
    use super::{AtomicU32, AtomicU64, EndRecord, IndexLine, PipeMeta, RingCtl, WakeLine};

    impl EndRecord {
        fn new() -> Self {
            Self {
                owner: AtomicU64::new(0),
                closed: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            }
        }
    }

    impl PipeMeta {
        pub(in crate::pipe) fn new(capacity: u64, mode: u32, seal_key: u64) -> Self {
            Self {
                capacity: AtomicU64::new(capacity),
                mode: AtomicU32::new(mode),
                _reserved: AtomicU32::new(0),
                ends: [EndRecord::new(), EndRecord::new()],
                seal_key: AtomicU64::new(seal_key),
            }
        }
    }

    impl IndexLine {
        fn new() -> Self {
            Self {
                value: AtomicU64::new(0),
            }
        }
    }

    impl RingCtl {
        pub(in crate::pipe) fn new() -> Self {
            Self {
                tail: IndexLine::new(),
                head: IndexLine::new(),
                wake: WakeLine {
                    wake: AtomicU32::new(0),
                    waiters: AtomicU32::new(0),
                    armed: AtomicU32::new(0),
                    signalled: AtomicU32::new(0),
                    busy: AtomicU32::new(0),
                    heavy: AtomicU32::new(0),
                },
            }
        }
    }
}
