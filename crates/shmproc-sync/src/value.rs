//! Shared values: [`Value`] and [`Array`] (with a lock), and Python's names
//! for the lock-free ones, [`RawValue`] and [`RawArray`]
//! ([`ShmBox`](shmproc_shm::ShmBox) and [`ShmSlice`](shmproc_shm::ShmSlice)):
//! Python's `multiprocessing.sharedctypes`.
//!
//! # Layout
//! ```text
//! Value<T> / Array<T> payload:
//!  0        16         data_off
//!  +--------+----------+---------------+
//!  |RawLock | pad (0)  | T or [T; len] |
//!  +--------+----------+---------------+
//! data_off = max(16, align_of::<T>())   (T aligned to at most 128)
//! ```
//! The lock and a small value share a cache line, so a contended counter
//! moves one line per increment.

#![allow(unsafe_code)] // Copies Pod data in and out of the mapping and lends it out under the lock.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::{
    Offset, OpenOptions, Segment, SegmentError, SegmentKind, SegmentLayout, Source, TypeSpec,
};

use crate::error::{LockResult, LockTimeoutError, SetStrError, SyncError, TryLockError};
use crate::handle::{Place, shared_object};
use crate::raw::{LockGuard, RawLock};

/// Where the data starts in a locked value's payload.
const fn data_off<T>() -> usize {
    let a = align_of::<T>();
    if a > size_of::<RawLock>() {
        a
    } else {
        size_of::<RawLock>()
    }
}

const fn check_type<T>() {
    assert!(
        align_of::<T>() <= shmproc_shm::DATA_OFFSET,
        "types aligned to more than 128 bytes cannot be placed in a segment"
    );
}

/// Whether a [`DataSeg`] holds one value or an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One `T` (a `Value`).
    One,
    /// `len` `T`s, the length recorded as the header's capacity (an `Array`).
    Array,
}

/// A segment holding a lock at the payload start and `len` `T`s.
struct DataSeg<T> {
    seg: Segment,
    lock: NonNull<RawLock>,
    data: NonNull<T>,
    len: usize,
}

// SAFETY: the data is only copied in and out through raw pointers or lent
// under the lock; `T: Pod` is plain data; `RawLock` is atomics only.
unsafe impl<T: Pod + Send> Send for DataSeg<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Sync> Sync for DataSeg<T> {}

impl<T: Pod> DataSeg<T> {
    fn payload(len: u64) -> Option<u64> {
        len.checked_mul(size_of::<T>() as u64)?
            .checked_add(data_off::<T>() as u64)
    }

    fn kind(shape: Shape) -> SegmentKind {
        match shape {
            Shape::One => SegmentKind::VALUE,
            Shape::Array => SegmentKind::ARRAY,
        }
    }

    fn spec(shape: Shape, len: usize) -> TypeSpec {
        let spec = TypeSpec::of::<T>();
        match shape {
            Shape::One => spec,
            Shape::Array => spec.with_capacity(len as u64),
        }
    }

    fn create(
        place: Place<'_>,
        what: &'static str,
        shape: Shape,
        len: usize,
        fill: impl Fn(usize) -> T,
    ) -> Result<Self, SyncError> {
        const { check_type::<T>() };
        if shape == Shape::Array && len == 0 {
            return Err(SyncError::invalid(
                what,
                "a length of 0: an array holds at least one element",
            ));
        }
        let payload = Self::payload(len as u64).ok_or_else(|| {
            SyncError::invalid(what, format!("{len} elements do not fit in a segment"))
        })?;
        let layout = SegmentLayout::new(Self::kind(shape), Self::spec(shape, len), payload);
        let err = |source| SyncError::Segment {
            op: "create",
            what,
            source: Box::new(source),
        };
        let pending = match place {
            Place::Named(n) => Segment::create(n, &layout),
            Place::Anonymous => Segment::create_anonymous(&layout),
        }
        .map_err(err)?;
        let ds = Self::attach(pending.segment(), what, len)?;
        for i in 0..len {
            // SAFETY: `i < len`, and `attach` resolved `len` elements in bounds.
            let p = unsafe { ds.0.as_ptr().add(i) };
            // SAFETY: in bounds, aligned, writable, not yet visible to anyone
            // (unpublished); `T: Pod` has no drop.
            unsafe { p.write(fill(i)) };
        }
        let (data, lock) = ds;
        Ok(Self {
            seg: pending.publish(),
            lock,
            data,
            len,
        })
    }

    /// Resolves the lock and the data with bounds and alignment checks.
    fn attach(
        seg: &Segment,
        what: &'static str,
        len: usize,
    ) -> Result<(NonNull<T>, NonNull<RawLock>), SyncError> {
        let truncated = || SyncError::Segment {
            op: "open",
            what,
            source: Box::new(SegmentError::Truncated {
                name: seg.label().to_owned(),
                len: seg.len() as u64,
                needed: Self::payload(len as u64)
                    .and_then(|p| p.checked_add(shmproc_shm::DATA_OFFSET as u64))
                    .unwrap_or(u64::MAX),
            }),
        };
        let lock = seg
            .resolve(Offset::<RawLock>::in_payload(0))
            .map_err(|_| truncated())?;
        let data = seg
            .resolve_slice(Offset::<T>::in_payload(data_off::<T>() as u64), len)
            .map_err(|_| truncated())?
            .cast::<T>();
        Ok((data, lock))
    }

    fn open(
        source: Source<'_>,
        what: &'static str,
        shape: Shape,
        want_len: Option<usize>,
    ) -> Result<Self, SyncError> {
        const { check_type::<T>() };
        let payload: fn(u64) -> Option<u64> = match shape {
            Shape::Array => |c| DataSeg::<T>::payload(c),
            Shape::One => |_| DataSeg::<T>::payload(1),
        };
        let mut opts =
            OpenOptions::new(Self::kind(shape), TypeSpec::of::<T>()).payload_len(payload);
        if let Some(l) = want_len {
            opts = opts.capacity(l as u64);
        }
        let seg = opts
            .open_source(source)
            .map_err(|source| SyncError::Segment {
                op: "open",
                what,
                source: Box::new(source),
            })?;
        let len = match shape {
            Shape::Array => usize::try_from(seg.capacity()).map_err(|_| SyncError::Corrupt {
                name: seg.label().to_owned(),
                what: "the array length",
                found: seg.capacity(),
            })?,
            Shape::One => 1,
        };
        let (data, lock) = Self::attach(&seg, what, len)?;
        Ok(Self {
            seg,
            lock,
            data,
            len,
        })
    }

    fn lock(&self) -> &RawLock {
        // SAFETY: resolved with bounds and alignment checks in `attach`; the
        // mapping lives as long as `self.seg`; `RawLock` is atomics only.
        unsafe { self.lock.as_ref() }
    }

    fn segment(&self) -> &Segment {
        &self.seg
    }

    fn segment_mut(&mut self) -> &mut Segment {
        &mut self.seg
    }
}

impl<T> fmt::Debug for DataSeg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.seg.label())
    }
}

// ---------------------------------------------------------------------------

/// A `Pod` value in shared memory with a lock (Python's
/// `multiprocessing.Value`), openable by name from any process.
///
/// Access goes through the lock: [`lock`](Self::lock) returns a guard that
/// dereferences to `T`; [`load`](Self::load) / [`store`](Self::store) copy the
/// whole value under the lock. [`get_lock`](Self::get_lock) is the lock
/// itself. If a holder dies mid-update, the value may be half-written: the
/// lock is poisoned and every `lock` returns [`OwnerDied`](crate::OwnerDied)
/// until someone repairs it ([`lock_ignoring_poison`](Self::lock_ignoring_poison),
/// then [`clear_poison`](RawLock::clear_poison) on [`get_lock`](Self::get_lock)).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_sync::Value;
/// let name = shmproc_shm::SegmentName::unique("doc-value");
/// let counter = Value::create(name.as_str(), 0u64)?;
/// let other = Value::<u64>::open(name.as_str())?; // any process
/// *other.lock()? += 1; // `?` works: every error is 'static + Send + Sync
/// assert_eq!(counter.load()?, 1);
/// assert!(Value::<u32>::open(name.as_str()).is_err()); // wrong type
/// # Ok(()) }
/// ```
pub struct Value<T> {
    h: DataSeg<T>,
}

/// Holds a [`Value`]'s lock and dereferences to the value in place: a
/// reference into shared memory, sound while every process takes the lock
/// before touching the value (the lock is the protocol; a process that
/// writes without it can only change the `Pod` bits, which are valid
/// whatever they are, never the bounds, checked at open). Not `Sync` (it
/// lends `&mut T`):
/// ```compile_fail
/// fn is_sync<T: Sync>() {}
/// is_sync::<shmproc_sync::ValueGuard<'static, u64>>();
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    _lock: LockGuard<'a>,
    data: NonNull<T>,
    _t: PhantomData<&'a mut T>,
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value's lock is held for the guard's lifetime, and every
        // accessor of a `Value`'s data takes that lock, so no other thread or
        // process writes it now; in bounds and aligned (checked at open);
        // `T: Pod` is valid for any bits.
        unsafe { self.data.as_ref() }
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { self.data.as_mut() }
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T: Pod> Value<T> {
    const WHAT: &'static str = "Value";

    /// A new value in an anonymous segment.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn new(value: T) -> Result<Self, SyncError> {
        let h = DataSeg::create(Place::Anonymous, Self::WHAT, Shape::One, 1, |_| value)?;
        Ok(Self { h })
    }

    /// A new value in the named segment `name`.
    ///
    /// # Errors
    /// [`SyncError::Segment`].
    pub fn create(name: &str, value: T) -> Result<Self, SyncError> {
        let h = DataSeg::create(Place::Named(name), Self::WHAT, Shape::One, 1, |_| value)?;
        Ok(Self { h })
    }

    fn from_source(source: Source<'_>) -> Result<Self, SyncError> {
        let h = DataSeg::open(source, Self::WHAT, Shape::One, None)?;
        Ok(Self { h })
    }

    /// The lock guarding the value (Python's `get_lock()`).
    pub fn get_lock(&self) -> &RawLock {
        self.h.lock()
    }

    fn guard<'a>(&'a self) -> impl Fn(LockGuard<'a>) -> ValueGuard<'a, T> {
        |g| ValueGuard {
            _lock: g,
            data: self.h.data,
            _t: PhantomData,
        }
    }

    /// Locks and returns a guard to the value.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when a holder died and the lock is
    /// poisoned (not held).
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.h.lock().lock().map(self.guard())
    }

    /// Locks if free.
    ///
    /// # Errors
    /// [`TryLockError`].
    #[doc(alias = "acquire_nowait")]
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, TryLockError> {
        self.h.lock().try_lock().map(self.guard())
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, LockTimeoutError> {
        self.h.lock().lock_timeout(timeout).map(self.guard())
    }

    /// Locks, waiting until `deadline`.
    ///
    /// # Errors
    /// [`LockTimeoutError`].
    pub fn lock_deadline(&self, deadline: Instant) -> Result<ValueGuard<'_, T>, LockTimeoutError> {
        self.h.lock().lock_deadline(deadline).map(self.guard())
    }

    /// Locks whether poisoned or not: the way to repair the value after
    /// [`OwnerDied`](crate::OwnerDied), then clear the poison with
    /// [`get_lock`](Self::get_lock)`().clear_poison()`.
    pub fn lock_ignoring_poison(&self) -> ValueGuard<'_, T> {
        (self.guard())(self.h.lock().lock_ignoring_poison())
    }

    /// A copy of the value, read under the lock (Python's `.value`).
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned.
    pub fn load(&self) -> LockResult<T> {
        self.lock().map(|g| *g)
    }

    /// Stores `value` under the lock (Python's `.value = v`).
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned (nothing stored).
    pub fn store(&self, value: T) -> LockResult<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// A raw pointer to the value in the mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.h.data.as_ptr()
    }
}

shared_object!(Value<T>, "Value");

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("segment", &self.h)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

// ---------------------------------------------------------------------------

/// A fixed-length array of `Pod` values in shared memory with a lock
/// (Python's `multiprocessing.Array`).
///
/// [`lock`](Self::lock) returns a guard that dereferences to `[T]`;
/// [`to_vec`](Self::to_vec) / [`store`](Self::store) copy under the lock. An
/// `Array<u8>` doubles as a string buffer ([`set_str`](Array::set_str),
/// [`to_string_lossy`](Array::to_string_lossy)), like Python's `Array('c', n)`.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_sync::Array;
/// let a = Array::from_slice(&[1i32, 2, 3])?;
/// a.lock().expect("no holder died")[1] = 20;
/// assert_eq!(a.to_vec()?, [1, 20, 3]);
/// let s = Array::<u8>::new(16, 0)?;
/// s.set_str("hello")?;
/// assert_eq!(s.to_string_lossy()?, "hello");
/// # Ok(()) }
/// ```
pub struct Array<T> {
    h: DataSeg<T>,
}

/// Holds an [`Array`]'s lock and dereferences to the elements in place
/// (the same argument as [`ValueGuard`]'s: the lock is the protocol, the
/// length is the one checked at open).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    _lock: LockGuard<'a>,
    data: NonNull<T>,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the array's lock is held for the guard's lifetime and every
        // accessor of an `Array`'s data takes it; `data .. data + len` was
        // resolved inside the mapping at open; `T: Pod`.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T: Pod> Array<T> {
    const WHAT: &'static str = "Array";

    /// A new array of `len` copies of `value`, anonymous.
    ///
    /// # Errors
    /// [`SyncError::InvalidArgument`] for `len == 0`; [`SyncError::Segment`].
    pub fn new(len: usize, value: T) -> Result<Self, SyncError> {
        let h = DataSeg::create(Place::Anonymous, Self::WHAT, Shape::Array, len, |_| value)?;
        Ok(Self { h })
    }

    /// A new array holding a copy of `values`, anonymous.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_slice(values: &[T]) -> Result<Self, SyncError> {
        let h = DataSeg::create(
            Place::Anonymous,
            Self::WHAT,
            Shape::Array,
            values.len(),
            |i| values[i],
        )?;
        Ok(Self { h })
    }

    /// A new array of `len` copies of `value`, named `name`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn create(name: &str, len: usize, value: T) -> Result<Self, SyncError> {
        let h = DataSeg::create(Place::Named(name), Self::WHAT, Shape::Array, len, |_| value)?;
        Ok(Self { h })
    }

    /// A new array holding a copy of `values`, named `name`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn create_from_slice(name: &str, values: &[T]) -> Result<Self, SyncError> {
        let h = DataSeg::create(
            Place::Named(name),
            Self::WHAT,
            Shape::Array,
            values.len(),
            |i| values[i],
        )?;
        Ok(Self { h })
    }

    fn from_source(source: Source<'_>) -> Result<Self, SyncError> {
        let h = DataSeg::open(source, Self::WHAT, Shape::Array, None)?;
        Ok(Self { h })
    }

    /// Opens the array named `name`, which must hold exactly `len` elements.
    ///
    /// # Errors
    /// As [`open`](Self::open); `WrongLength` for another length.
    pub fn open_with_len(name: &str, len: usize) -> Result<Self, SyncError> {
        let h = DataSeg::open(Source::Name(name), Self::WHAT, Shape::Array, Some(len))?;
        Ok(Self { h })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.h.len
    }

    /// Always `false` (arrays have at least one element).
    pub fn is_empty(&self) -> bool {
        self.h.len == 0
    }

    /// The lock guarding the elements (Python's `get_lock()`).
    pub fn get_lock(&self) -> &RawLock {
        self.h.lock()
    }

    fn guard<'a>(&'a self) -> impl Fn(LockGuard<'a>) -> ArrayGuard<'a, T> {
        |g| ArrayGuard {
            _lock: g,
            data: self.h.data,
            len: self.h.len,
            _t: PhantomData,
        }
    }

    /// Locks and returns a guard to the elements.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when a holder died and the lock is
    /// poisoned (not held).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.h.lock().lock().map(self.guard())
    }

    /// Locks if free.
    ///
    /// # Errors
    /// [`TryLockError`].
    #[doc(alias = "acquire_nowait")]
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError> {
        self.h.lock().try_lock().map(self.guard())
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>, LockTimeoutError> {
        self.h.lock().lock_timeout(timeout).map(self.guard())
    }

    /// Locks, waiting until `deadline`.
    ///
    /// # Errors
    /// [`LockTimeoutError`].
    pub fn lock_deadline(&self, deadline: Instant) -> Result<ArrayGuard<'_, T>, LockTimeoutError> {
        self.h.lock().lock_deadline(deadline).map(self.guard())
    }

    /// Locks whether poisoned or not: the way to repair the elements after
    /// [`OwnerDied`](crate::OwnerDied), then clear the poison with
    /// [`get_lock`](Self::get_lock)`().clear_poison()`.
    pub fn lock_ignoring_poison(&self) -> ArrayGuard<'_, T> {
        (self.guard())(self.h.lock().lock_ignoring_poison())
    }

    /// A copy of every element, under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned.
    pub fn to_vec(&self) -> LockResult<Vec<T>> {
        self.lock().map(|g| g.to_vec())
    }

    /// Copies `values` over the whole array, under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned (nothing stored).
    ///
    /// # Panics
    /// If `values.len() != self.len()`.
    pub fn store(&self, values: &[T]) -> LockResult<()> {
        assert_eq!(
            values.len(),
            self.len(),
            "Array::store needs exactly len() values"
        );
        self.lock()?.copy_from_slice(values);
        Ok(())
    }

    /// A raw pointer to the first element in the mapping.
    pub fn as_ptr(&self) -> *mut T {
        self.h.data.as_ptr()
    }
}

impl Array<u8> {
    /// Stores `s` as a NUL-terminated string (the NUL is omitted when `s`
    /// fills the array exactly), under the lock; like assigning Python's
    /// `Array('c', n).value`.
    ///
    /// # Errors
    /// [`SetStrError::TooLong`] or [`SetStrError::OwnerDied`] (nothing stored).
    pub fn set_str(&self, s: &str) -> Result<(), SetStrError> {
        self.set_bytes(s.as_bytes())
    }

    /// [`set_str`](Self::set_str) for raw bytes.
    ///
    /// # Errors
    /// As [`set_str`](Self::set_str).
    pub fn set_bytes(&self, b: &[u8]) -> Result<(), SetStrError> {
        if b.len() > self.len() {
            return Err(SetStrError::TooLong {
                len: b.len(),
                capacity: self.len(),
            });
        }
        let mut g = self.lock()?;
        g[..b.len()].copy_from_slice(b);
        if let Some(nul) = g.get_mut(b.len()) {
            *nul = 0;
        }
        Ok(())
    }

    /// The bytes up to the first NUL (or all of them), under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned.
    pub fn to_bytes(&self) -> LockResult<Vec<u8>> {
        let g = self.lock()?;
        let end = g.iter().position(|&c| c == 0).unwrap_or(g.len());
        Ok(g[..end].to_vec())
    }

    /// The string up to the first NUL, invalid UTF-8 replaced by U+FFFD.
    ///
    /// # Errors
    /// [`OwnerDied`](crate::OwnerDied) when the lock is poisoned.
    pub fn to_string_lossy(&self) -> LockResult<String> {
        self.to_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

shared_object!(Array<T>, "Array");

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("segment", &self.h)
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------

/// A `Pod` value in shared memory without a lock (Python's `RawValue`):
/// [`shmproc_shm::ShmBox`] under Python's name. Loads and stores copy the
/// whole value; concurrent writers can tear values larger than a machine
/// word. Synchronise with a [`Lock`](crate::Lock).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let v = shmproc_sync::RawValue::new(1.5f64)?;
/// v.store(v.load() * 2.0);
/// assert_eq!(v.load(), 3.0);
/// # Ok(()) }
/// ```
#[doc(alias = "ShmBox")]
pub type RawValue<T> = shmproc_shm::ShmBox<T>;

/// A fixed-length array of `Pod` values in shared memory without a lock
/// (Python's `RawArray`): [`shmproc_shm::ShmSlice`] under Python's name.
/// Element access copies; every index is checked against the length
/// validated at open.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = shmproc_sync::RawArray::new(4, 0u32)?;
/// a.set(3, 7)?;
/// assert_eq!(a.get(3), Some(7));
/// assert!(a.set(4, 0).is_err());
/// # Ok(()) }
/// ```
#[doc(alias = "ShmSlice")]
pub type RawArray<T> = shmproc_shm::ShmSlice<T>;
