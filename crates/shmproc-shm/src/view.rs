//! Typed views of segments: the [`ShmBox`] / [`ShmSlice`] containers over
//! `bytemuck::Pod` data.

#![allow(unsafe_code)] // Typed access to mapped memory: raw pointer reads and writes, marker-trait impls.

use std::fmt;
use std::mem::{align_of, size_of};
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use bytemuck::Pod;

use crate::error::{IndexError, SegmentError};
use crate::header::{DATA_OFFSET, SegmentKind, TypeSpec};
use crate::layout::Offset;
use crate::object::{SharedObject, Source};
use crate::segment::{OpenOptions, Segment, SegmentLayout};

const ANONYMOUS: &str = "<anonymous segment>";

const fn assert_shm_pod<T: Pod>() {
    assert!(
        align_of::<T>() <= DATA_OFFSET,
        "types aligned to more than 128 bytes cannot be placed in a segment"
    );
}

/// One `Pod` value in a segment of its own, shared between processes.
///
/// Reads and writes copy the whole value ([`load`](Self::load),
/// [`store`](Self::store)); there is no lock, as with Python's `RawValue`:
/// concurrent writers can tear a value larger than a machine word. Use a
/// lock (`shmproc::Value`) or atomics for synchronised access.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), shmproc_shm::SegmentError> {
/// use shmproc_shm::ShmBox;
/// let name = shmproc_shm::SegmentName::unique("doc-box");
/// let a = ShmBox::create(name.as_str(), 41u64)?;
/// let b = ShmBox::<u64>::open(name.as_str())?; // any process, by name
/// b.store(b.load() + 1);
/// assert_eq!(a.load(), 42);
/// # Ok(()) }
/// ```
pub struct ShmBox<T> {
    seg: Segment,
    ptr: NonNull<T>,
}

// SAFETY: the value is only accessed by copying through raw pointers; `T: Pod`
// is plain data that can be sent and shared between threads.
unsafe impl<T: Pod + Send> Send for ShmBox<T> {}
// SAFETY: as above; `&ShmBox` only allows copies in and out.
unsafe impl<T: Pod + Sync> Sync for ShmBox<T> {}

impl<T: Pod> ShmBox<T> {
    fn layout() -> SegmentLayout {
        const { assert_shm_pod::<T>() };
        SegmentLayout::new(SegmentKind::BOX, TypeSpec::of::<T>(), size_of::<T>() as u64)
    }

    pub(crate) fn options() -> OpenOptions {
        OpenOptions::new(SegmentKind::BOX, TypeSpec::of::<T>())
            .payload_len(|_| Some(size_of::<T>() as u64))
    }

    pub(crate) fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        let ptr = seg
            .resolve(Offset::<T>::in_payload(0))
            .map_err(|_| SegmentError::Truncated {
                name: seg.label().to_owned(),
                len: seg.len() as u64,
                needed: (DATA_OFFSET + size_of::<T>()) as u64,
            })?;
        Ok(Self { seg, ptr })
    }

    /// Creates the named segment `name` holding `value`.
    ///
    /// # Errors
    /// As [`Segment::create`]; [`ZeroSize`](SegmentError::ZeroSize) for a zero-sized `T`.
    pub fn create(name: &str, value: T) -> Result<Self, SegmentError> {
        let pending = Segment::create(name, &Self::layout())?;
        fill_pending(pending.segment(), 1, Fill::Value(value))?;
        Self::from_segment(pending.publish())
    }

    /// Creates an anonymous segment holding `value`.
    ///
    /// # Errors
    /// As [`Segment::create_anonymous`].
    pub fn new(value: T) -> Result<Self, SegmentError> {
        let pending = Segment::create_anonymous(&Self::layout())?;
        fill_pending(pending.segment(), 1, Fill::Value(value))?;
        Self::from_segment(pending.publish())
    }

    /// Opens the named segment `name`, which must hold a `T`.
    ///
    /// # Errors
    /// As [`Segment::open`]: [`WrongKind`](SegmentError::WrongKind) if it is not a
    /// box, [`WrongType`](SegmentError::WrongType) if it holds another type, ...
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::open_source(Source::Name(name))
    }

    /// Opens the segment behind `fd`, which must hold a `T`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        Self::open_source(Source::Fd(fd))
    }

    /// Copies the value out.
    pub fn load(&self) -> T {
        // SAFETY: `ptr` was resolved inside the mapping (bounds and alignment
        // checked) and lives as long as `self`; `T: Pod` is valid for any bits.
        // A volatile read because other processes write it behind the compiler's back.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }

    /// Copies `value` in.
    pub fn store(&self, value: T) {
        // SAFETY: `ptr` was resolved inside the writable mapping (bounds and
        // alignment checked) and lives as long as `self`; `T: Pod` has no drop.
        unsafe { self.ptr.as_ptr().write_volatile(value) }
    }

    /// A raw pointer to the value in the mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The underlying segment, to [`persist`](Segment::persist) it, say.
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmBox")
            .field("segment", &self.seg.label())
            .field("value", &self.load())
            .finish()
    }
}

/// A fixed-length slice of `Pod` values in a segment of its own.
///
/// Element access copies ([`get`](Self::get), [`set`](Self::set),
/// [`read_into`](Self::read_into), [`write_from`](Self::write_from)); every
/// index is checked against the length validated at open, never against
/// anything in shared memory. For in-place access while the caller
/// guarantees exclusivity (a lock, a disjoint range of a zero-copy map), see
/// the `unsafe` [`as_slice`](Self::as_slice) and [`as_mut_slice`](Self::as_mut_slice).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_shm::ShmSlice;
/// let name = shmproc_shm::SegmentName::unique("doc-slice");
/// let a = ShmSlice::create_from_slice(name.as_str(), &[1.0f64, 2.0, 3.0])?;
/// let b = ShmSlice::<f64>::open(name.as_str())?;
/// b.set(1, 20.0)?;
/// assert_eq!(a.to_vec(), [1.0, 20.0, 3.0]);
/// # Ok(()) }
/// ```
pub struct ShmSlice<T> {
    seg: Segment,
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: elements are only accessed by copying through raw pointers (or by
// the caller under the contracts of the unsafe accessors); `T: Pod` is plain data.
unsafe impl<T: Pod + Send> Send for ShmSlice<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Sync> Sync for ShmSlice<T> {}

/// What a new slice segment is filled with.
enum Fill<'a, T> {
    /// Every element this value.
    Value(T),
    /// A copy of these (as many as fit; the rest stays zero).
    Slice(&'a [T]),
}

/// Fills the first `len` `T`s of a pending segment's payload, through a
/// pointer resolved with bounds and alignment checks. The payload of a new
/// segment is zero (a new file, extended by `ftruncate`/`fallocate`), so an
/// all-zero value is not written at all: no page is touched until used.
fn fill_pending<T: Pod>(seg: &Segment, len: usize, fill: Fill<'_, T>) -> Result<(), SegmentError> {
    let ptr = seg
        .resolve_slice(Offset::<T>::in_payload(0), len)
        .map_err(|_| SegmentError::ZeroSize {
            name: seg.label().to_owned(),
        })?
        .cast::<T>();
    match fill {
        Fill::Value(v) if bytemuck::bytes_of(&v).iter().all(|&b| b == 0) => {}
        Fill::Value(v) => {
            for i in 0..len {
                // SAFETY: `i < len` and `resolve_slice` checked that `len` elements fit.
                let p = unsafe { ptr.as_ptr().add(i) };
                // SAFETY: `p` is in bounds, aligned and writable; `T: Pod` has no drop.
                unsafe { p.write(v) };
            }
        }
        Fill::Slice(values) => {
            let n = values.len().min(len);
            // SAFETY: `n <= len` elements fit behind `ptr` (checked by
            // `resolve_slice`), `values` is a local slice that cannot overlap
            // a new mapping, `T: Pod`.
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), ptr.as_ptr(), n) };
        }
    }
    Ok(())
}

fn slice_payload<T>(len: u64) -> Option<u64> {
    len.checked_mul(size_of::<T>() as u64)
}

impl<T: Pod> ShmSlice<T> {
    fn layout(len: usize) -> Result<SegmentLayout, usize> {
        const { assert_shm_pod::<T>() };
        let bytes = slice_payload::<T>(len as u64).ok_or(len)?;
        Ok(SegmentLayout::new(
            SegmentKind::SLICE,
            TypeSpec::of::<T>().with_capacity(len as u64),
            bytes,
        ))
    }

    pub(crate) fn options() -> OpenOptions {
        OpenOptions::new(SegmentKind::SLICE, TypeSpec::of::<T>()).payload_len(slice_payload::<T>)
    }

    fn too_large(name: &str, len: usize) -> SegmentError {
        SegmentError::TooLarge {
            name: name.to_owned(),
            requested: len as u64,
            max: crate::segment::MAX_SEGMENT_LEN / size_of::<T>().max(1) as u64,
        }
    }

    pub(crate) fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        let len = usize::try_from(seg.capacity())
            .map_err(|_| Self::too_large(seg.label(), usize::MAX))?;
        let ptr = seg
            .resolve_slice(Offset::<T>::in_payload(0), len)
            .map_err(|_| SegmentError::Truncated {
                name: seg.label().to_owned(),
                len: seg.len() as u64,
                needed: slice_payload::<T>(len as u64).unwrap_or(u64::MAX),
            })?
            .cast::<T>();
        Ok(Self { seg, ptr, len })
    }

    fn create_with(
        pending: crate::segment::PendingSegment,
        fill: Fill<'_, T>,
    ) -> Result<Self, SegmentError> {
        let len = usize::try_from(pending.segment().capacity())
            .map_err(|_| Self::too_large(pending.segment().label(), usize::MAX))?;
        fill_pending(pending.segment(), len, fill)?;
        Self::from_segment(pending.publish())
    }

    /// Creates the named segment `name` holding `len` copies of `value`.
    ///
    /// # Errors
    /// As [`Segment::create`]; [`ZeroSize`](SegmentError::ZeroSize) when `len`
    /// is 0 or `T` is zero-sized.
    pub fn create(name: &str, len: usize, value: T) -> Result<Self, SegmentError> {
        let layout = Self::layout(len).map_err(|l| Self::too_large(name, l))?;
        Self::create_with(Segment::create(name, &layout)?, Fill::Value(value))
    }

    /// Creates the named segment `name` holding a copy of `values`.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_from_slice(name: &str, values: &[T]) -> Result<Self, SegmentError> {
        let layout = Self::layout(values.len()).map_err(|l| Self::too_large(name, l))?;
        let pending = Segment::create(name, &layout)?;
        Self::create_with(pending, Fill::Slice(values))
    }

    /// Creates an anonymous segment holding `len` copies of `value`.
    ///
    /// # Errors
    /// As [`Segment::create_anonymous`].
    pub fn new(len: usize, value: T) -> Result<Self, SegmentError> {
        let layout = Self::layout(len).map_err(|l| Self::too_large(ANONYMOUS, l))?;
        Self::create_with(Segment::create_anonymous(&layout)?, Fill::Value(value))
    }

    /// Creates an anonymous segment holding a copy of `values`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> Result<Self, SegmentError> {
        let layout = Self::layout(values.len()).map_err(|l| Self::too_large(ANONYMOUS, l))?;
        let pending = Segment::create_anonymous(&layout)?;
        Self::create_with(pending, Fill::Slice(values))
    }

    /// Opens the named segment `name`, which must hold `T`s (any length).
    ///
    /// # Errors
    /// As [`Segment::open`].
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::open_source(Source::Name(name))
    }

    /// Opens the named segment `name`, which must hold exactly `len` `T`s.
    ///
    /// # Errors
    /// As [`Segment::open`]; [`WrongLength`](SegmentError::WrongLength) for another length.
    pub fn open_with_len(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::from_segment(Self::options().capacity(len as u64).open(name)?)
    }

    /// Opens the segment behind `fd`, which must hold `T`s.
    ///
    /// # Errors
    /// As [`Segment::open`].
    pub fn open_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        Self::open_source(Source::Fd(fd))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn write_at(&self, i: usize, value: T) {
        debug_assert!(i < self.len);
        // SAFETY: `i < len` (checked by every caller), so the element lies inside
        // `ptr .. ptr + len`, which was resolved inside the mapping.
        let p = unsafe { self.ptr.as_ptr().add(i) };
        // SAFETY: `p` is in bounds and aligned (above), the mapping is writable and
        // lives as long as `self`; `T: Pod` has no drop glue.
        unsafe { p.write_volatile(value) }
    }

    /// A copy of element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        // SAFETY: `i < len`, so the element lies inside `ptr .. ptr + len`,
        // which was resolved inside the mapping (bounds and alignment checked).
        let p = unsafe { self.ptr.as_ptr().add(i) };
        // SAFETY: `p` is in bounds and aligned, the mapping lives as long as
        // `self`, and `T: Pod` is valid for any bits another process wrote.
        Some(unsafe { p.read_volatile() })
    }

    /// Sets element `i`.
    ///
    /// # Errors
    /// [`IndexError`] when `i >= len`.
    pub fn set(&self, i: usize, value: T) -> Result<(), IndexError> {
        self.check(i, 1)?;
        self.write_at(i, value);
        Ok(())
    }

    fn check(&self, start: usize, n: usize) -> Result<(), IndexError> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(IndexError {
                start,
                end: end.unwrap_or(usize::MAX),
                len: self.len,
            }),
        }
    }

    /// Copies `out.len()` elements starting at `start` into `out`.
    ///
    /// # Errors
    /// [`IndexError`] when the range leaves the slice.
    pub fn read_into(&self, start: usize, out: &mut [T]) -> Result<(), IndexError> {
        self.check(start, out.len())?;
        // SAFETY: `start + out.len() <= len` (checked above), so the source range
        // lies inside the mapping; `out` is a distinct local buffer.
        let src = unsafe { self.ptr.as_ptr().add(start) };
        // SAFETY: `src` is valid for `out.len()` reads (above), `out` for as many
        // writes, they cannot overlap (process-local vs mapping), `T: Pod`.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `values` into the slice starting at `start`.
    ///
    /// # Errors
    /// [`IndexError`] when the range leaves the slice.
    pub fn write_from(&self, start: usize, values: &[T]) -> Result<(), IndexError> {
        self.check(start, values.len())?;
        // SAFETY: `start + values.len() <= len` (checked above), inside the mapping.
        let dst = unsafe { self.ptr.as_ptr().add(start) };
        // SAFETY: `dst` is valid for `values.len()` writes (above), `values` for
        // as many reads; a local buffer never overlaps the mapping; `T: Pod`.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), dst, values.len()) };
        Ok(())
    }

    /// A copy of every element.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_into(0, &mut v)
            .expect("the whole range is in bounds");
        v
    }

    /// A raw pointer to the first element in the mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The elements, in place.
    ///
    /// # Safety
    /// - No process writes any element while the returned slice is alive
    ///   (the caller holds a lock that every writer takes, or writers are
    ///   known to be finished).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr .. ptr + len` lies inside the mapping, aligned (checked at
        // open), valid for any bits (`T: Pod`); no concurrent writes (caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements, in place and writable.
    ///
    /// # Safety
    /// - No other process or thread reads or writes any element while the
    ///   returned slice is alive (the caller holds a lock that every accessor
    ///   takes), and no other `as_slice`/`as_mut_slice` borrow of this handle
    ///   is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`, plus exclusive access (caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The underlying segment, to [`persist`](Segment::persist) it, say.
    pub fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ShmSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmSlice")
            .field("segment", &self.seg.label())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> SharedObject for ShmBox<T> {
    const WHAT: &'static str = "ShmBox";
    type Error = SegmentError;

    fn segment(&self) -> &Segment {
        &self.seg
    }

    fn open_source(source: Source<'_>) -> Result<Self, SegmentError> {
        Self::from_segment(Self::options().open_source(source)?)
    }
}

impl<T: Pod> SharedObject for ShmSlice<T> {
    const WHAT: &'static str = "ShmSlice";
    type Error = SegmentError;

    fn segment(&self) -> &Segment {
        &self.seg
    }

    fn open_source(source: Source<'_>) -> Result<Self, SegmentError> {
        Self::from_segment(Self::options().open_source(source)?)
    }
}
