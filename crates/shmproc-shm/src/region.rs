//! [`ShmRegion`]: a bounds-checked window of a mapping that other processes
//! write (memmap2's `MmapRaw` idea).

#![allow(unsafe_code)] // The checked raw copies and atomic views behind ShmRegion's safe API.

use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ptr::NonNull;

use bytemuck::Pod;

use crate::error::OffsetError;
use crate::layout::Offset;
use crate::segment::Segment;
use crate::sync::real::{AtomicU32, AtomicU64};

/// A range `off .. off + len` left a [`ShmRegion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bytes {offset}..{offset}+{len} are outside a region of {region} bytes")]
pub struct OutOfBounds {
    /// Offset from the start of the region.
    pub offset: usize,
    /// Bytes asked for there.
    pub len: usize,
    /// Length of the region.
    pub region: usize,
}

/// A window of `len` bytes of a segment's mapping that other processes may
/// write at any time.
///
/// It never hands out references to its bytes, only copies in and out
/// (each checked against the **local** length, never against anything in
/// shared memory) and references to atomics, which are sound over memory
/// others write. Code that must lend `&[u8]` into a claimed slot (the
/// zero-copy guards) takes [`as_ptr`](Self::as_ptr) and justifies that
/// itself.
///
/// The copies are plain `copy_nonoverlapping` (the protocol orders them with
/// atomics); [`read_volatile`](Self::read_volatile) and
/// [`write_volatile`](Self::write_volatile) copy one `Pod` value volatilely.
///
/// `'a` is the borrow of the [`Segment`] that keeps the bytes mapped; a
/// holder that keeps the segment alive another way (an `Arc`) can
/// [`detach`](Self::detach) it.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_shm::{Offset, ShmRegion, ShmSlice};
///
/// let slice = ShmSlice::new(16, 0u64)?; // 128 payload bytes
/// let region = ShmRegion::new(slice.segment(), Offset::in_payload(0), 128)?;
/// region.copy_from(8, &7u64.to_le_bytes())?;
/// assert_eq!(slice.get(1), Some(7));
/// assert_eq!(region.read_array::<8>(8), Some(7u64.to_le_bytes()));
/// assert!(region.read_array::<8>(124).is_none()); // crosses the end
/// region.atomic_u64_at(16).expect("in bounds, aligned").store(9, std::sync::atomic::Ordering::Relaxed);
/// assert!(region.atomic_u64_at(17).is_none()); // misaligned
/// assert_eq!(slice.get(2), Some(9));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy)]
pub struct ShmRegion<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a Segment>,
}

// SAFETY: a region only copies bytes in and out and lends atomics; doing
// that from several threads is as sound as from several processes, which
// the type is built for. The mapping it points into is not thread-bound.
unsafe impl Send for ShmRegion<'_> {}
// SAFETY: as above; `&ShmRegion` allows nothing more than `ShmRegion`.
unsafe impl Sync for ShmRegion<'_> {}

impl fmt::Debug for ShmRegion<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRegion")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

impl<'a> ShmRegion<'a> {
    /// The `len` bytes at `off` (from the segment base) of `seg`, which must
    /// lie inside its payload.
    ///
    /// # Errors
    /// [`OffsetError::OutOfBounds`] when they do not.
    pub fn new(seg: &'a Segment, off: Offset<u8>, len: usize) -> Result<Self, OffsetError> {
        let ptr = seg.resolve_slice(off, len)?.cast::<u8>();
        Ok(Self {
            ptr,
            len,
            _mapping: PhantomData,
        })
    }

    /// The same region, no longer tied to the borrow of its segment.
    ///
    /// # Safety
    /// - The mapping it came from stays mapped for as long as the returned
    ///   region or any copy of it is used (its holder keeps the `Segment`
    ///   alive, in an `Arc` say).
    #[inline]
    pub unsafe fn detach(self) -> ShmRegion<'static> {
        ShmRegion {
            ptr: self.ptr,
            len: self.len,
            _mapping: PhantomData,
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte, for code that must lend references into a claimed
    /// range and states its own safety argument.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether `off .. off + n` lies inside the region (no overflow).
    #[inline]
    fn fits(&self, off: usize, n: usize) -> bool {
        off <= self.len && n <= self.len - off
    }

    /// A pointer to byte `off`, for `n` bytes, or `None` out of bounds.
    #[inline]
    fn at(&self, off: usize, n: usize) -> Option<*mut u8> {
        // `off <= len`, so the address stays inside the mapping (or one past).
        self.fits(off, n)
            .then(|| self.ptr.as_ptr().wrapping_add(off))
    }

    /// The `len` bytes at `off`, as a region of their own.
    #[inline]
    pub fn sub(&self, off: usize, len: usize) -> Option<ShmRegion<'a>> {
        let p = self.at(off, len)?;
        Some(Self {
            ptr: NonNull::new(p)?,
            len,
            _mapping: PhantomData,
        })
    }

    /// A copy of the `N` bytes at `off`, or `None` when they leave the region.
    #[inline]
    pub fn read_array<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let src = self.at(off, N)?;
        let mut out = [0u8; N];
        // SAFETY: `off + N <= len` (`at`), so `src` is valid for `N` reads
        // inside the mapping, which outlives `'a`; `out` is local memory, so
        // the ranges cannot overlap; any byte value is a valid `u8`.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), N) };
        Some(out)
    }

    /// Copies the `dst.len()` bytes at `off` into `dst`.
    ///
    /// # Errors
    /// [`OutOfBounds`] when they leave the region (`dst` is untouched).
    #[inline]
    pub fn copy_to(&self, off: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        let src = self.at(off, dst.len()).ok_or(self.oob(off, dst.len()))?;
        // SAFETY: `off + dst.len() <= len` (`at`): `src` is valid for that
        // many reads inside the mapping; `dst` is local memory (a `&mut`
        // never points into a region's mapping: the region lends none).
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `off`.
    ///
    /// # Errors
    /// [`OutOfBounds`] when the bytes would leave the region (nothing is written).
    #[inline]
    pub fn copy_from(&self, off: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        let dst = self.at(off, src.len()).ok_or(self.oob(off, src.len()))?;
        // SAFETY: `off + src.len() <= len` (`at`): `dst` is valid for that
        // many writes inside the (writable, shared) mapping; `src` is a
        // shared borrow that no region lends, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    /// A volatile copy of the `T` at `off`, or `None` when it leaves the
    /// region or is misaligned for `T`.
    #[inline]
    pub fn read_volatile<T: Pod>(&self, off: usize) -> Option<T> {
        let p = self.aligned_at::<T>(off)?;
        // SAFETY: in bounds and aligned (`aligned_at`); `T: Pod` is valid for
        // whatever bits another process wrote.
        Some(unsafe { p.read_volatile() })
    }

    /// Writes `value` volatilely at `off`.
    ///
    /// # Errors
    /// [`OutOfBounds`] when it leaves the region or is misaligned for `T`.
    #[inline]
    pub fn write_volatile<T: Pod>(&self, off: usize, value: T) -> Result<(), OutOfBounds> {
        let p = self
            .aligned_at::<T>(off)
            .ok_or(self.oob(off, size_of::<T>()))?;
        // SAFETY: in bounds and aligned (`aligned_at`), inside the writable
        // mapping; `T: Pod` has no drop glue.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// The `AtomicU64` at `off`, or `None` when it leaves the region or `off`
    /// is not 8-aligned in memory.
    #[inline]
    pub fn atomic_u64_at(&self, off: usize) -> Option<&'a AtomicU64> {
        let p = self.aligned_at::<u64>(off)?;
        // SAFETY: in bounds and 8-aligned (`aligned_at`), inside the mapping
        // that outlives `'a`; an atomic is sound over memory that other
        // processes write, provided they write it atomically too (any plain
        // write there is their protocol error, not undefined behaviour here:
        // the hardware makes aligned 8-byte accesses single-copy atomic).
        Some(unsafe { AtomicU64::from_ptr(p) })
    }

    /// The `AtomicU32` at `off`, or `None` when it leaves the region or `off`
    /// is not 4-aligned in memory.
    #[inline]
    pub fn atomic_u32_at(&self, off: usize) -> Option<&'a AtomicU32> {
        let p = self.aligned_at::<u32>(off)?;
        // SAFETY: as in `atomic_u64_at`, for 4 bytes, 4-aligned.
        Some(unsafe { AtomicU32::from_ptr(p) })
    }

    #[inline]
    #[allow(clippy::cast_ptr_alignment)] // checked just below
    fn aligned_at<T>(&self, off: usize) -> Option<*mut T> {
        let p = self.at(off, size_of::<T>())?.cast::<T>();
        p.is_aligned().then_some(p)
    }

    #[inline]
    fn oob(&self, offset: usize, len: usize) -> OutOfBounds {
        OutOfBounds {
            offset,
            len,
            region: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShmSlice;
    use crate::sync::real::Ordering;

    #[test]
    fn bounds_and_alignment() {
        let s = ShmSlice::new(8, 0u64).expect("segment");
        let r = ShmRegion::new(s.segment(), Offset::in_payload(0), 64).expect("region");
        assert_eq!(r.len(), 64);
        assert!(ShmRegion::new(s.segment(), Offset::in_payload(0), 1 << 20).is_err());
        assert!(r.copy_from(60, &[1, 2, 3, 4]).is_ok());
        assert_eq!(
            r.copy_from(61, &[1, 2, 3, 4]),
            Err(OutOfBounds {
                offset: 61,
                len: 4,
                region: 64
            })
        );
        assert!(r.copy_from(usize::MAX, &[1]).is_err());
        let mut buf = [0u8; 4];
        r.copy_to(60, &mut buf).expect("in bounds");
        assert_eq!(buf, [1, 2, 3, 4]);
        assert!(r.copy_to(64, &mut buf).is_err());
        assert_eq!(r.read_array::<0>(64), Some([]));
        assert!(r.read_array::<1>(64).is_none());
        assert!(r.atomic_u32_at(62).is_none());
        assert!(r.atomic_u64_at(60).is_none());
        r.atomic_u32_at(60)
            .expect("aligned")
            .store(5, Ordering::Relaxed);
        assert_eq!(r.read_volatile::<u32>(60), Some(5));
        assert!(r.read_volatile::<u32>(61).is_none());
        r.write_volatile(8, 3u64).expect("in bounds");
        assert_eq!(s.get(1), Some(3));
        let sub = r.sub(8, 8).expect("in bounds");
        assert_eq!(sub.read_array::<8>(0), Some(3u64.to_le_bytes()));
        assert!(r.sub(60, 8).is_none());
    }
}
