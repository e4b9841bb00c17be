//! The two [`Storage`]s of a ring: a shared-memory segment, and the heap
//! (where loom can track every payload access). The trait itself is the
//! ring's (`ring/mod.rs`): this module uses the ring, never the reverse.

#![allow(unsafe_code)] // Slot pointers into a mapping (bounds fixed at open) and payload copies through them.
#![deny(clippy::indexing_slicing)]

use shmproc_shm::sync::UnsafeCell;

use crate::ring::{RingHeader, SlotHeader, Storage, slot_geometry};

/// A ring on the heap: the same algorithm, for one process (and for loom).
#[derive(Debug)]
pub struct HeapStorage {
    header: RingHeader,
    slots: Box<[HeapSlot]>,
    cap: u64,
    maxsize: u64,
    slot_size: usize,
}

#[derive(Debug)]
struct HeapSlot {
    hdr: SlotHeader,
    /// 16-byte aligned payload, `slot_size` bytes.
    data: UnsafeCell<Box<[u128]>>,
}

impl HeapStorage {
    /// `capacity` slots (a power of two up to [`MAX_CAPACITY`](crate::MAX_CAPACITY))
    /// of `slot_size` bytes.
    ///
    /// # Panics
    /// When `capacity` is not such a power of two or `slot_size` is too large.
    pub fn new(capacity: u64, slot_size: usize) -> Self {
        Self::with_maxsize(capacity, capacity, slot_size)
    }

    /// `capacity` slots of `slot_size` bytes that hold at most `maxsize`
    /// messages.
    ///
    /// # Panics
    /// As [`new`](Self::new), and when `maxsize` is not in `1..=capacity`.
    pub fn with_maxsize(capacity: u64, maxsize: u64, slot_size: usize) -> Self {
        assert!(
            (1..=capacity).contains(&maxsize),
            "maxsize must be in 1..=capacity"
        );
        let (_, stride) = slot_geometry(slot_size as u64).expect("slot size in range");
        assert!(
            crate::ring::ring_bytes(capacity, slot_size as u64).is_some(),
            "capacity must be a power of two in 1..=2^30"
        );
        let words = slot_size.div_ceil(16);
        let slots = (0..capacity)
            .map(|i| HeapSlot {
                hdr: SlotHeader::new(i),
                data: UnsafeCell::new(vec![0u128; words].into_boxed_slice()),
            })
            .collect();
        Self {
            header: RingHeader::new(capacity, maxsize, slot_size as u64, stride),
            slots,
            cap: capacity,
            maxsize,
            slot_size,
        }
    }

    fn heap_slot(&self, index: u64) -> &HeapSlot {
        let i = (index & (self.cap - 1)) as usize;
        self.slots
            .get(i)
            .expect("masked index is below the capacity")
    }
}

/// `[offset, offset + n)` clamped to a slot of `size` bytes.
fn clamp(size: usize, offset: usize, n: usize) -> (usize, usize) {
    let offset = offset.min(size);
    (offset, n.min(size - offset))
}

impl Storage for HeapStorage {
    fn header(&self) -> &RingHeader {
        &self.header
    }
    fn capacity(&self) -> u64 {
        self.cap
    }
    fn maxsize(&self) -> u64 {
        self.maxsize
    }
    fn slot_size(&self) -> usize {
        self.slot_size
    }
    fn slot(&self, index: u64) -> &SlotHeader {
        &self.heap_slot(index).hdr
    }
    fn write_payload(&self, index: u64, offset: usize, src: &[u8]) {
        let (offset, n) = clamp(self.slot_size, offset, src.len());
        self.heap_slot(index).data.with_mut(|p| {
            // SAFETY: the caller holds the slot's claim (stamp WRITING with its
            // pid), so no other thread accesses the payload (loom checks it);
            // `p` points to a live boxed slice of at least `slot_size` bytes and
            // `offset + n <= slot_size` by `clamp`.
            let base = unsafe { (*p).as_mut_ptr() }.cast::<u8>();
            let dst = base.wrapping_add(offset);
            // SAFETY: as above; `src` is a distinct local buffer.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
        });
    }
    fn read_payload(&self, index: u64, offset: usize, dst: &mut [u8]) {
        let (offset, n) = clamp(self.slot_size, offset, dst.len());
        self.heap_slot(index).data.with(|p| {
            // SAFETY: the caller holds the slot's claim (stamp READING with its
            // pid); the boxed slice is live and `offset + n <= slot_size`.
            let base = unsafe { (*p).as_ptr() }.cast::<u8>();
            let src = base.wrapping_add(offset);
            // SAFETY: as above; `dst` is a distinct local buffer.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
        });
    }
    fn payload_ptr(&self, index: u64) -> *mut u8 {
        self.heap_slot(index).data.with_mut(|p| {
            // SAFETY: `p` points to the live boxed slice; taking its data
            // pointer reads only the Box, which nobody mutates after `new`.
            unsafe { (*p).as_mut_ptr() }.cast::<u8>()
        })
    }
}

#[cfg(not(shmproc_loom))]
pub(crate) use segment::SegmentStorage;

#[cfg(not(shmproc_loom))]
mod segment {
    use std::ptr::NonNull;

    use shmproc_shm::{Offset, Segment};

    use super::Storage;
    use super::clamp;
    use crate::error::Corrupt;
    use crate::ring::{
        MAX_CAPACITY, RING_HEADER_LEN, RING_MAGIC, RingHeader, SlotHeader, ring_bytes,
        slot_geometry,
    };
    use shmproc_shm::sync::Ordering;

    /// A ring in a shared-memory segment: the ring header at the start of the
    /// payload, then the slots. Capacity, slot size and stride are read once,
    /// validated against the real mapping size, and kept here.
    #[derive(Debug)]
    pub(crate) struct SegmentStorage {
        seg: Segment,
        header: NonNull<RingHeader>,
        slots: NonNull<u8>,
        cap: u64,
        maxsize: u64,
        slot_size: usize,
        payload_off: usize,
        stride: usize,
        /// The CPU has PREFETCHW (see [`has_prefetchw`]).
        prefetchw: bool,
    }

    /// Whether the CPU reports PREFETCHW (CPUID 0x8000_0001, ECX bit 8):
    /// only then is it executed, since older CPUs need not treat it as a NOP.
    #[cfg(target_arch = "x86_64")]
    fn has_prefetchw() -> bool {
        // CPUID is a VM exit under a hypervisor (a few microseconds): asked
        // once per process, not once per open.
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(cpuid_prefetchw)
    }

    #[cfg(target_arch = "x86_64")]
    fn cpuid_prefetchw() -> bool {
        use std::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86_64 CPU (a safe fn from Rust 1.87;
        // the MSRV is 1.85).
        #[allow(unused_unsafe)]
        let max = unsafe { __cpuid(0x8000_0000) }.eax;
        // SAFETY: as above; leaf 0x8000_0001 exists (checked against `max`).
        #[allow(unused_unsafe)]
        let ext = unsafe { __cpuid(0x8000_0001) }.ecx;
        max >= 0x8000_0001 && ext & (1 << 8) != 0
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn has_prefetchw() -> bool {
        false
    }

    // SAFETY: the storage hands out references to atomics (`ShmSafe` headers)
    // and raw payload pointers only; the mapping is valid from any thread.
    unsafe impl Send for SegmentStorage {}
    // SAFETY: as above; all methods take `&self` and touch shared memory only
    // through atomics or under a slot claim.
    unsafe impl Sync for SegmentStorage {}

    impl SegmentStorage {
        /// PREFETCHW of the line holding `p` (the caller checked that the
        /// CPU has it).
        #[inline]
        fn prefetchw(&self, p: *const u8) {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: PREFETCHW exists (CPUID, checked in `new` and by the
                // caller) and only hints the cache: it accesses no memory and
                // never faults, whatever `p` is.
                unsafe {
                    std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly))
                };
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = p;
        }

        /// Initialises the ring header and the slot stamps of a segment being
        /// created (zeroed, not yet published), through bounds-checked views.
        /// `maxsize`: the requested capacity, of which the segment's
        /// capacity is the next power of two.
        pub(crate) fn init(seg: &Segment, slot_size: usize, maxsize: u64) -> Result<(), Corrupt> {
            let cap = seg.capacity();
            if !maxsize_fits(maxsize, cap) {
                return Err(Corrupt::new("ring maxsize", maxsize));
            }
            let (_, stride) =
                slot_geometry(slot_size as u64).ok_or(Corrupt::new("slot size", cap))?;
            let h = seg
                .get(Offset::<RingHeader>::in_payload(0))
                .map_err(|_| Corrupt::new("ring header offset", 0))?;
            h.init(cap, maxsize, slot_size as u64, stride);
            for i in 0..cap {
                let off = (RING_HEADER_LEN as u64)
                    .checked_add(
                        i.checked_mul(stride)
                            .ok_or(Corrupt::new("slot offset", i))?,
                    )
                    .ok_or(Corrupt::new("slot offset", i))?;
                seg.get(Offset::<SlotHeader>::in_payload(off))
                    .map_err(|_| Corrupt::new("slot offset", off))?
                    .init(i);
            }
            Ok(())
        }

        /// Wraps a published segment, validating the ring header against the
        /// segment header (already validated against the mapping).
        pub(crate) fn new(seg: Segment, slot_size: usize) -> Result<Self, Corrupt> {
            let cap = seg.capacity();
            let bytes = ring_bytes(cap, slot_size as u64)
                .ok_or(Corrupt::new("capacity or slot size", cap))?;
            let (off, stride) =
                slot_geometry(slot_size as u64).ok_or(Corrupt::new("slot size", cap))?;
            if cap > MAX_CAPACITY || bytes > seg.data_len() as u64 {
                return Err(Corrupt::new("segment length", seg.len() as u64));
            }
            let header = seg
                .resolve(Offset::<RingHeader>::in_payload(0))
                .map_err(|_| Corrupt::new("ring header offset", 0))?;
            let slots = seg
                .resolve_slice(
                    Offset::<u8>::in_payload(RING_HEADER_LEN as u64),
                    (bytes - RING_HEADER_LEN as u64) as usize,
                )
                .map_err(|_| Corrupt::new("slots", bytes))?
                .cast::<u8>();
            let mut st = Self {
                seg,
                header,
                slots,
                cap,
                maxsize: cap,
                slot_size,
                payload_off: off as usize,
                stride: stride as usize,
                prefetchw: has_prefetchw(),
            };
            let h = st.header();
            {
                // Read once, compared with what the validated segment header
                // (fingerprint: type, capacity, slot size) implies.
                let checks = [
                    ("ring magic", h.magic.load(Ordering::Relaxed), RING_MAGIC),
                    ("ring capacity", h.capacity.load(Ordering::Relaxed), cap),
                    (
                        "ring slot size",
                        h.slot_size.load(Ordering::Relaxed),
                        slot_size as u64,
                    ),
                    ("ring stride", h.stride.load(Ordering::Relaxed), stride),
                ];
                for (what, found, want) in checks {
                    if found != want {
                        return Err(Corrupt::new(what, found));
                    }
                }
            }
            // Not covered by the fingerprint (openers do not know it): read
            // once, validated against the capacity, kept locally.
            let maxsize = st.header().maxsize.load(Ordering::Relaxed);
            if !maxsize_fits(maxsize, cap) {
                return Err(Corrupt::new("ring maxsize", maxsize));
            }
            st.maxsize = maxsize;
            Ok(st)
        }

        pub(crate) fn segment(&self) -> &Segment {
            &self.seg
        }

        pub(crate) fn segment_mut(&mut self) -> &mut Segment {
            &mut self.seg
        }

        /// The start of slot `index & mask`.
        #[inline]
        fn slot_ptr(&self, index: u64) -> *mut u8 {
            let i = (index & (self.cap - 1)) as usize;
            // In bounds: i < cap and cap * stride <= the slots' resolved length
            // (checked in `new`), which lies inside the mapping.
            self.slots.as_ptr().wrapping_add(i * self.stride)
        }
    }

    /// Whether `maxsize` is what a creator writes for a ring of `cap`
    /// slots: a power-of-two `cap` is the smallest one that holds it.
    fn maxsize_fits(maxsize: u64, cap: u64) -> bool {
        maxsize != 0 && maxsize <= cap && maxsize.next_power_of_two() == cap
    }

    impl Storage for SegmentStorage {
        #[inline]
        fn header(&self) -> &RingHeader {
            // SAFETY: resolved with bounds and alignment checks in `new`; the
            // mapping lives as long as `self.seg`; RingHeader is ShmSafe
            // (atomics only, valid for any bits).
            unsafe { self.header.as_ref() }
        }
        fn capacity(&self) -> u64 {
            self.cap
        }
        fn maxsize(&self) -> u64 {
            self.maxsize
        }
        fn slot_size(&self) -> usize {
            self.slot_size
        }
        #[allow(clippy::cast_ptr_alignment)] // slots start 128-aligned, stride is a multiple of 64
        #[inline]
        fn slot(&self, index: u64) -> &SlotHeader {
            let p = self.slot_ptr(index).cast::<SlotHeader>();
            // SAFETY: `slot_ptr` is in bounds (see there) and 64-aligned (slots
            // start at payload offset 384 of a page-aligned mapping + 128, the
            // stride is a multiple of 64); SlotHeader is ShmSafe (atomics only).
            unsafe { &*p }
        }
        #[inline]
        fn write_payload(&self, index: u64, offset: usize, src: &[u8]) {
            let (offset, n) = clamp(self.slot_size, offset, src.len());
            let dst = self.payload_ptr(index).wrapping_add(offset);
            // SAFETY: `dst..dst + n` lies inside the slot's payload (clamped),
            // inside the mapping; the caller holds the slot's claim, so no
            // process following the protocol touches it; `src` is local memory.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
        }
        #[inline]
        fn read_payload(&self, index: u64, offset: usize, dst: &mut [u8]) {
            let (offset, n) = clamp(self.slot_size, offset, dst.len());
            let src = self.payload_ptr(index).wrapping_add(offset);
            // SAFETY: as in `write_payload`; copied into local memory, never
            // referenced in place.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
        }
        #[inline]
        fn payload_ptr(&self, index: u64) -> *mut u8 {
            self.slot_ptr(index).wrapping_add(self.payload_off)
        }
        #[inline]
        fn prefetch_payload(&self, index: u64) {
            // Not when the payload shares the header's line (the claim CAS
            // fetches it), nor where the CPU lacks PREFETCHW.
            if self.payload_off < 64 || !self.prefetchw {
                return;
            }
            let p = self.payload_ptr(index);
            self.prefetchw(p);
            // The second line too where there is one: a `ByteQueue` record
            // of 49-64 bytes has its data there (after the 64-byte record
            // header). Not fetched ahead, its store waited for the line to
            // come back from the consumer that read it a lap before, and
            // every later store waited behind it: the producer stalled on
            // a full store buffer (64 B stream: 0.66x the `Queue`).
            if self.slot_size > 64 {
                self.prefetchw(p.wrapping_add(64));
            }
        }
        #[inline]
        fn prefetch_header(&self, index: u64) {
            if self.prefetchw {
                self.prefetchw(self.slot_ptr(index));
            }
        }
    }
}
