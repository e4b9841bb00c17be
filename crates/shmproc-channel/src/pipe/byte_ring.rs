//! The SPSC byte ring: [`Ring`], this process's view of one direction's
//! control block and data area, with the raw copies in and out, the line,
//! tag and header reads, the record seal, the Dekker fences and the futex
//! wake. Most of the pipe's unsafe code is here.
// Raw copies into and out of the shared data area, and the seal word's
// atomic view; every block justified.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::time::Duration;

use shmproc_shm::sync::{AtomicU64, Ordering, fence};
use shmproc_sync::asym;
use shmproc_sync::futex::{self, SLICE};

use super::layout::{HDR, LINE, RingCtl, header_bytes, parse_header};

/// The data area: a region of the mapping, or under the model
/// ([`super::heap::Data`]) heap bytes whose 64-byte lines loom tracks (a read or
/// write of a line not ordered after the other side's last access to it
/// is a causality violation) and whose seal words are loom atomics.
#[cfg(not(shmproc_loom))]
pub(super) type Data = shmproc_shm::ShmRegion<'static>;
#[cfg(shmproc_loom)]
pub(super) use super::heap::Data;

/// Process-local view of one ring.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ring {
    pub(super) ctl: NonNull<RingCtl>,
    /// The `cap` bytes of the data area; the connection's `Arc<Segment>`
    /// keeps them mapped (under the model: its heap pipe, see [`Data`]).
    pub(super) data: Data,
    pub(super) cap: u64,
    pub(super) mask: u64,
}

impl Ring {
    #[inline]
    pub(super) fn ctl(&self) -> &RingCtl {
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
    pub(super) fn light_fence(&self, light_ok: bool) {
        asym::light(light_ok && self.ctl().wake.heavy.load(Ordering::Relaxed) == 0);
    }

    /// The sleeping side of this ring's Dekker pairs, between its store of
    /// `waiters` (or of `armed`/`signalled`) and its re-check of the index:
    /// a `membarrier` (or a `SeqCst` fence where that is unavailable, and
    /// then the ring's `heavy` word tells the hot side to fence too).
    pub(super) fn heavy_fence(&self) {
        if !asym::heavy() {
            self.ctl().wake.heavy.store(1, Ordering::Relaxed);
        }
    }

    /// The fence of a waiter about to sleep: a `SeqCst` fence before its
    /// first (light, short) sleep, the heavy fence before every later one
    /// (see `shmproc_sync::asym::LIGHT_SLEEP`). Returns the longest that
    /// sleep may last.
    pub(super) fn sleep_fence(&self, light: bool) -> Duration {
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
    pub(super) fn require_fences(&self) {
        self.ctl().wake.heavy.store(1, Ordering::Relaxed);
        // SeqCst: orders the flag before this process's later waits.
        fence(Ordering::SeqCst);
    }

    /// Copies `n` bytes from `src` into the ring at position `pos`,
    /// wrapping around the end. `n <= cap`.
    pub(super) fn copy_in(&self, pos: u64, src: &[u8]) {
        let off = pos & self.mask;
        let n = src.len() as u64;
        debug_assert!(n <= self.cap);
        let first = n.min(self.cap - off) as usize;
        let (a, b) = src.split_at(first);
        self.touch(off, first as u64, true);
        self.touch(0, b.len() as u64, true);
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
    pub(super) fn copy_out(&self, pos: u64, dst: *mut u8, n: u64) {
        let off = pos & self.mask;
        debug_assert!(n <= self.cap);
        let first = n.min(self.cap - off);
        self.touch(off, first, false);
        self.touch(0, n - first, false);
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

    /// Under the model: records an access to the lines of data offsets
    /// `off..off + n` (loom checks it against the other side's); nothing
    /// otherwise.
    #[inline(always)]
    pub(super) fn touch(&self, off: u64, n: u64, write: bool) {
        #[cfg(shmproc_loom)]
        self.data.touch(off as usize, n as usize, write);
        #[cfg(not(shmproc_loom))]
        let _ = (off, n, write);
    }

    /// Copies `src` into the data area at offset `off` (no wrap).
    ///
    /// # Safety
    /// `off + src.len() <= cap`, and the bytes are free space beyond the
    /// published tail (the reader does not touch them: SPSC protocol).
    #[inline(always)]
    pub(super) unsafe fn write_at(&self, off: u64, src: &[u8]) {
        self.touch(off, src.len() as u64, true);
        // SAFETY: inside the data area and free (the caller's contract);
        // `src` is local memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.data.as_ptr().wrapping_add(off as usize),
                src.len(),
            )
        };
    }

    /// Copies `n` bytes at data offset `off` (no wrap) into `dst`.
    ///
    /// # Safety
    /// `off + n <= cap`, the bytes are published (ordered before this by an
    /// Acquire load of `tail` or of the record's seal), and `dst` is valid
    /// for `n` bytes of writes.
    #[inline(always)]
    pub(super) unsafe fn read_at(&self, off: u64, dst: *mut u8, n: usize) {
        self.touch(off, n as u64, false);
        // SAFETY: the caller's contract.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.as_ptr().wrapping_add(off as usize), dst, n)
        };
    }

    pub(super) fn write_header(&self, pos: u64, tag: u32, len: u64) {
        self.copy_in(pos, &header_bytes(tag, len));
    }

    /// Copies the line at data offset `off` into `line`, when `off + LINE
    /// <= cap` (else leaves it alone).
    #[inline]
    pub(super) fn read_line(&self, off: u64, line: &mut [u8; LINE as usize]) {
        // Copied into local memory, never borrowed; the caller uses the
        // bytes only once the record's seal (or `tail`) says they are
        // published. Out of the area: `line` is left alone.
        let _ = self.data.copy_to(off as usize, line);
    }

    /// The seal word of the record line at data offset `off`, when `off` is
    /// a line start inside the ring.
    ///
    /// Not `ShmRegion::atomic_u64_at`: that would add a run-time alignment
    /// test to every seal and every `sealed`, which the page-aligned area
    /// and the line-aligned `off` make unnecessary.
    #[inline]
    #[allow(clippy::cast_ptr_alignment)] // checked: `off` is a multiple of 64, the area page-aligned
    pub(super) fn seal_word(&self, off: u64) -> Option<&AtomicU64> {
        if off % LINE != 0 || off > self.cap - LINE {
            return None;
        }
        #[cfg(shmproc_loom)]
        {
            // Under the model: the line's seal atomic (`heap::Data`).
            self.data.seal(off / LINE)
        }
        #[cfg(not(shmproc_loom))]
        {
            let p = self
                .data
                .as_ptr()
                .wrapping_add((off + super::layout::SEAL) as usize)
                .cast::<u64>();
            // SAFETY: `off + SEAL + 8 <= cap`: inside the data area, which the
            // connection's `Arc<Segment>` keeps mapped (and `&self` borrows);
            // 8-aligned (the data area is page-aligned, `off + SEAL` a multiple
            // of 8); the word is only ever accessed atomically by the protocol
            // (the writer stores it, readers load it) while it is a seal.
            Some(unsafe { AtomicU64::from_ptr(p) })
        }
    }

    /// Seals the record at `pos` (see the module docs).
    #[inline]
    pub(super) fn seal(&self, pos: u64, key: u64) {
        if let Some(w) = self.seal_word(pos & self.mask) {
            // Release: pairs with the reader's Acquire load in `sealed`: the
            // header, the payload of a whole record and `tail` (stored
            // before) are visible to a reader that sees the seal.
            // (The model's mutant `pipe_seal_relaxed` weakens it.)
            let order = if shmproc_sync::mutant!("pipe_seal_relaxed") {
                Ordering::Relaxed
            } else {
                Ordering::Release
            };
            w.store(pos ^ key, order);
        }
    }

    /// Whether the record at `pos` (data offset `off`) carries its seal.
    #[inline]
    pub(super) fn sealed(&self, pos: u64, off: u64, key: u64) -> bool {
        // Acquire: pairs with the Release store in `seal`.
        self.seal_word(off)
            .is_some_and(|w| w.load(Ordering::Acquire) == pos ^ key)
    }

    /// The tag of the line at data offset `off` (0 when the line is not
    /// inside the ring): a fixed-size read, no wrap-around path.
    #[inline]
    pub(super) fn line_tag(&self, off: u64) -> u32 {
        // Copied into local memory, never borrowed.
        self.data
            .read_array::<4>(off as usize)
            .map_or(0, u32::from_le_bytes)
    }

    #[inline]
    pub(super) fn read_header(&self, pos: u64) -> (u32, u64) {
        let off = pos & self.mask;
        // A fixed-size copy (no call), never borrowed; a header that wraps
        // around the end takes the slow path.
        let h = self
            .data
            .read_array::<{ HDR as usize }>(off as usize)
            .unwrap_or_else(|| {
                let mut h = [0u8; HDR as usize];
                self.copy_out(pos, h.as_mut_ptr(), HDR);
                h
            });
        parse_header(&h)
    }

    #[inline]
    pub(super) fn wake(&self, bit: u32) {
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
