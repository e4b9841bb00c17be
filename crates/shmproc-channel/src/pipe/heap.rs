//! The pipe on the heap, for the loom model (`cfg(shmproc_loom)` only):
//! the same [`Connection`] code over a [`HeapPipe`] instead of a segment.
//! The control blocks are `layout`'s structs with loom atomics; each data
//! area is plain bytes (so the raw copies of `byte_ring` and the fast
//! paths run unchanged) with a loom cell per 64-byte line that every copy
//! in or out registers (`Ring::touch`), so loom reports a line read
//! without a happens-before edge from its write, or overwritten while the
//! reader may still read it; and a loom atomic per line for the record
//! seals (in a segment, the seal is a word inside the line; positions
//! never repeat, so a seal left from an earlier lap, or overwritten by
//! payload bytes there, never matches: the same answers).
// Raw copies into the heap bytes, the pointer to them, and the heap
// pipe's shared views; every block justified.
#![allow(unsafe_code)]

use std::cell::UnsafeCell as StdCell;
use std::ptr::NonNull;
use std::sync::Arc;

use shmproc_shm::sync::{AtomicU64, UnsafeCell};

use super::end::Connection;
use super::layout::{LINE, MODE_DUPLEX, PipeMeta, RingCtl};
use super::{ConnectionError, PipeEnd};

/// One ring's data area on the heap.
#[derive(Debug)]
pub(super) struct HeapData {
    bytes: Box<[StdCell<u8>]>,
    /// One loom cell per byte, for the access tracking only.
    cells: Box<[UnsafeCell<()>]>,
    seals: Box<[AtomicU64]>,
}

impl HeapData {
    fn new(cap: u64) -> Self {
        let lines = (cap / LINE) as usize;
        Self {
            bytes: (0..cap).map(|_| StdCell::new(0)).collect(),
            cells: (0..cap).map(|_| UnsafeCell::new(())).collect(),
            seals: (0..lines).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A ring's data area as a `Ring` holds it: a pointer into the
/// connection's `Arc<HeapPipe>` (as a `ShmRegion` into its segment).
#[derive(Debug, Clone, Copy)]
pub(super) struct Data(NonNull<HeapData>);

impl Data {
    fn area(&self) -> &HeapData {
        // SAFETY: points into the `HeapPipe` the connection's `Arc` keeps
        // alive for as long as it uses its rings.
        unsafe { self.0.as_ref() }
    }

    /// The first byte (`StdCell<u8>` is `repr(transparent)` over `u8`;
    /// the bytes are written only through this pointer).
    pub(super) fn as_ptr(&self) -> *mut u8 {
        StdCell::raw_get(self.area().bytes.as_ptr())
    }

    /// Registers a read (or write) of the bytes `off..off + n`.
    pub(super) fn touch(&self, off: usize, n: usize, write: bool) {
        let end = off.saturating_add(n).min(self.area().cells.len());
        for l in self.area().cells.get(off.min(end)..end).unwrap_or_default() {
            if write {
                l.with_mut(|_| ());
            } else {
                l.with(|_| ());
            }
        }
    }

    /// As `ShmRegion::copy_to`: `dst.len()` bytes at `off`, if inside.
    pub(super) fn copy_to(&self, off: usize, dst: &mut [u8]) -> Result<(), ()> {
        let len = self.area().bytes.len();
        if off > len || dst.len() > len - off {
            return Err(());
        }
        self.touch(off, dst.len(), false);
        // SAFETY: `off + dst.len() <= len` (checked); `dst` is local memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.as_ptr().wrapping_add(off),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
        Ok(())
    }

    /// As `ShmRegion::read_array`.
    pub(super) fn read_array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.copy_to(off, &mut out).ok()?;
        Some(out)
    }

    /// The seal word of line `line`.
    pub(super) fn seal(&self, line: u64) -> Option<&AtomicU64> {
        self.area().seals.get(line as usize)
    }
}

/// A pipe on the heap: what a segment holds, for the model.
#[derive(Debug)]
pub struct HeapPipe {
    pub(super) meta: PipeMeta,
    pub(super) ctl: [RingCtl; 2],
    data: [HeapData; 2],
    pub(super) cap: u64,
    creator: u32,
}

// SAFETY: the bytes are accessed only under the pipe's SPSC protocol (what
// a shared mapping relies on too), which the model checks; everything else
// is atomics.
unsafe impl Sync for HeapPipe {}
// SAFETY: as above; it owns its heap memory.
unsafe impl Send for HeapPipe {}

impl HeapPipe {
    /// The creating model process's pid (as `Segment::creator_pid`).
    pub(super) fn creator_pid(&self) -> u32 {
        self.creator
    }

    /// Ring `i`'s control block and data area.
    pub(super) fn ring(&self, i: usize) -> (NonNull<RingCtl>, Data) {
        let i = i.min(1);
        let [c0, c1] = &self.ctl;
        let [d0, d1] = &self.data;
        let (c, d) = if i == 0 { (c0, d0) } else { (c1, d1) };
        (NonNull::from(c), Data(NonNull::from(d)))
    }
}

/// A duplex pipe of two `cap`-byte rings (a power of two, at least two
/// lines) on the heap; [`HeapPipe::end`] attaches an end.
///
/// # Panics
/// When `cap` is not such a power of two.
pub fn heap_pipe(cap: u64) -> Arc<HeapPipe> {
    assert!(cap.is_power_of_two() && cap >= 2 * LINE, "pipe capacity");
    Arc::new(HeapPipe {
        meta: PipeMeta::new(cap, MODE_DUPLEX, 0x5ea1_5ea1_5ea1_5ea1),
        ctl: [RingCtl::new(), RingCtl::new()],
        data: [HeapData::new(cap), HeapData::new(cap)],
        cap,
        creator: shmproc_sync::owner::my_pid(),
    })
}

impl HeapPipe {
    /// End `end` of the pipe, attached afresh (as `Connection::open` attaches
    /// an end of a named pipe; no sentinel): it claims the end at its first
    /// use.
    ///
    /// # Errors
    /// As `Connection::attach` (never for a heap pipe).
    pub fn end(self: &Arc<Self>, end: PipeEnd) -> Result<Connection, ConnectionError> {
        Connection::attach(Arc::clone(self), end.index(), None)
    }
}
