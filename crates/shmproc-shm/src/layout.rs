//! [`shm_safe!`](crate::shm_safe): the one place where a shared layout's
//! size, alignment and field offsets are asserted and its [`ShmSafe`] impl
//! is written.
//!
//! [`ShmSafe`]: crate::ShmSafe

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
