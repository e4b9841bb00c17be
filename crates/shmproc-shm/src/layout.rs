//! What may sit in shared memory and how it is addressed: the [`ShmSafe`]
//! marker, [`Offset`] (offsets, never pointers), and
//! [`shm_safe!`](crate::shm_safe), the one place where a shared layout's
//! size, alignment and field offsets are asserted and its [`ShmSafe`] impl
//! is written. A leaf: it uses nothing else of the crate but the atomics
//! shim.
#![allow(unsafe_code)] // The ShmSafe and Pod marker impls (atomics, arrays, Offset).

use std::fmt;
use std::marker::PhantomData;

use crate::header::DATA_OFFSET;

/// Asserts a shared struct's layout at compile time and implements
/// [`ShmSafe`](crate::ShmSafe) for it.
///
/// ```text
/// shm_safe! {
///     Name (size SIZE, align ALIGN) {
///         field @ OFFSET: Type,
///         ...
///     }
/// }
/// ```
///
/// List **every** field, in declaration order, with its offset (a literal,
/// as in the type's docs table) and its type. The macro fails to compile
/// unless:
/// - `size_of::<Name>() == SIZE` and `align_of::<Name>() == ALIGN`;
/// - each field sits at its `OFFSET` (`offset_of!`);
/// - the fields tile the struct: the first starts at 0, each starts where
///   the one before ends, and the last ends at `SIZE`, so there is no
///   implicit padding (write explicit `_pad`/`_reserved` fields, of atomics,
///   and list them) and no field is left out;
/// - the list names every field with its real type (an exhaustive
///   destructuring pattern, no `..`);
/// - every field type is itself `ShmSafe` (atomics, arrays of them, or
///   structs that went through this macro);
/// - `Name` needs no `Drop` (no other process would run it).
///
/// `repr(C)` itself cannot be checked by a declarative macro; the pinned
/// offsets mean any layout the compiler picked that differs from the table
/// fails to build. Write `#[repr(C)]` anyway (STYLE §3.2).
///
/// Put `#[cfg(not(shmproc_loom))]` on the invocation for layouts built from
/// the [`sync`](crate::sync) shim's atomics: loom's are other types, of
/// other sizes, and not `ShmSafe`.
///
/// # Examples
/// ```
/// use shmproc_shm::sync::real::{AtomicU32, AtomicU64};
///
/// #[repr(C)]
/// struct Slot {
///     stamp: AtomicU64,
///     len: AtomicU32,
///     _reserved: AtomicU32,
/// }
///
/// shmproc_shm::shm_safe! {
///     Slot (size 16, align 8) {
///         stamp @ 0: AtomicU64,
///         len @ 8: AtomicU32,
///         _reserved @ 12: AtomicU32,
///     }
/// }
///
/// fn shareable<T: shmproc_shm::ShmSafe>() {}
/// shareable::<Slot>();
/// ```
///
/// Implicit padding is refused:
/// ```compile_fail
/// use shmproc_shm::sync::real::{AtomicU32, AtomicU64};
///
/// #[repr(C)]
/// struct Padded {
///     len: AtomicU32, // 4 bytes of padding follow
///     stamp: AtomicU64,
/// }
///
/// shmproc_shm::shm_safe! {
///     Padded (size 16, align 8) {
///         len @ 0: AtomicU32,
///         stamp @ 8: AtomicU64,
///     }
/// }
/// ```
///
/// So is a field that is not `ShmSafe` (here a plain `u32`, which another
/// process could write while this one holds a `&Plain`):
/// ```compile_fail
/// #[repr(C)]
/// struct Plain {
///     len: u32,
/// }
///
/// shmproc_shm::shm_safe! {
///     Plain (size 4, align 4) {
///         len @ 0: u32,
///     }
/// }
/// ```
#[macro_export]
macro_rules! shm_safe {
    (
        $name:ident (size $size:expr, align $align:expr $(,)?) {
            $($field:ident @ $off:literal : $fty:ty),+ $(,)?
        }
    ) => {
        const _: () = {
            ::core::assert!(
                ::core::mem::size_of::<$name>() == $size,
                ::core::concat!(::core::stringify!($name), ": size differs from the table")
            );
            ::core::assert!(
                ::core::mem::align_of::<$name>() == $align,
                ::core::concat!(::core::stringify!($name), ": alignment differs from the table")
            );
            ::core::assert!(
                !::core::mem::needs_drop::<$name>(),
                ::core::concat!(::core::stringify!($name), ": needs Drop")
            );
            let mut end: usize = 0;
            $(
                ::core::assert!(
                    ::core::mem::offset_of!($name, $field) == $off,
                    ::core::concat!(
                        ::core::stringify!($name), ".", ::core::stringify!($field),
                        ": offset differs from the table"
                    )
                );
                ::core::assert!(
                    $off == end,
                    ::core::concat!(
                        ::core::stringify!($name), ".", ::core::stringify!($field),
                        ": implicit padding or a missing field before it"
                    )
                );
                end = $off + ::core::mem::size_of::<$fty>();
            )+
            ::core::assert!(
                end == $size,
                ::core::concat!(::core::stringify!($name), ": implicit padding at the end")
            );
        };
        // Every field is listed (the pattern has no `..`), with its real
        // type, and that type is `ShmSafe`. Type-checked, never called.
        const _: fn(&$name) = |value: &$name| {
            let $name { $($field),+ } = value;
            $($crate::__private::shm_safe_field::<$fty>($field);)+
        };
        // SAFETY: the assertions above prove that `$name` has exactly the
        // listed fields, each at its stated offset, tiling the struct with no
        // implicit padding (so every byte belongs to a field), and that it
        // needs no `Drop`; the closure proves each field's type is `ShmSafe`.
        // A struct of `ShmSafe` fields with no padding is valid for every bit
        // pattern, holds no pointers or handles, and keeps every byte inside
        // an atomic, which is the whole `ShmSafe` contract. (`Sync` and
        // `'static` are supertraits, so the compiler checks them here.)
        #[allow(unsafe_code)]
        unsafe impl $crate::ShmSafe for $name {}
    };
}

/// Used by [`shm_safe!`](crate::shm_safe): accepts only a reference to a
/// `ShmSafe` field of type exactly `F`.
#[doc(hidden)]
#[inline(always)]
pub const fn shm_safe_field<F: crate::ShmSafe>(_field: &F) {}

/// A position in a segment, in bytes from the segment base, typed by what
/// lives there. Offsets, never pointers, go into shared memory: each process
/// maps a segment at its own address. [`Segment::resolve`](crate::Segment::resolve) turns one into a
/// pointer after checking bounds and alignment.
#[repr(transparent)]
pub struct Offset<T> {
    raw: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Offset<T> {
    /// The offset `raw` bytes from the segment base.
    pub const fn new(raw: u64) -> Self {
        Self {
            raw,
            _t: PhantomData,
        }
    }

    /// The offset `n` bytes into the payload (`DATA_OFFSET + n` from the base).
    pub const fn in_payload(n: u64) -> Self {
        Self::new(DATA_OFFSET as u64 + n)
    }

    /// The raw byte offset from the segment base.
    pub const fn get(self) -> u64 {
        self.raw
    }

    /// The same offset, retyped.
    pub const fn cast<U>(self) -> Offset<U> {
        Offset::new(self.raw)
    }
}

impl<T> Clone for Offset<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Offset<T> {}
impl<T> PartialEq for Offset<T> {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl<T> Eq for Offset<T> {}
impl<T> fmt::Debug for Offset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset<{}>({})", std::any::type_name::<T>(), self.raw)
    }
}
// SAFETY: `Offset<T>` is `repr(transparent)` over a `u64` (PhantomData is a
// ZST), so every bit pattern is valid and all-zeroes is a valid value.
unsafe impl<T: 'static> bytemuck::Zeroable for Offset<T> {}
// SAFETY: as above; it has no padding, no pointers and is `Copy`.
unsafe impl<T: 'static> bytemuck::Pod for Offset<T> {}

/// A type that may sit in shared memory and be accessed through `&T` from
/// several processes at once.
///
/// # Safety
/// Implementors must:
/// - be `#[repr(C)]` or `#[repr(transparent)]` all the way down, with no
///   implicit padding whose contents matter;
/// - be valid for **every** bit pattern (another process can write anything);
/// - hold no pointers, references, file descriptors or other process-local
///   handles, and need no `Drop`;
/// - keep every byte that can change after publication inside an atomic, so
///   concurrent writes from other processes are never data races.
pub unsafe trait ShmSafe: Sync + Sized + 'static {}

macro_rules! shm_safe_atomics {
    ($($t:ty),*) => {$(
        // SAFETY: a std atomic integer is repr(C)-compatible with its integer,
        // valid for every bit pattern, holds no pointers, and is only mutated
        // atomically.
        unsafe impl ShmSafe for $t {}
    )*};
}
shm_safe_atomics!(
    crate::sync::real::AtomicU8,
    crate::sync::real::AtomicU32,
    crate::sync::real::AtomicU64,
    crate::sync::real::AtomicI32,
    crate::sync::real::AtomicI64
);
// SAFETY: an array of ShmSafe elements has no padding between elements and
// inherits every element's guarantees.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
