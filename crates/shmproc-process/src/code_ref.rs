//! A plain `fn` carried to a running child as a checked, exe-relative code
//! offset ([`CodeRef`]): what a process pool sends with each job.
//!
//! Layer 0 (foundations): uses `target` and `error`.
//!
//! The same checks as a target's (see the `target` module): the child
//! resolves the offset only if it runs the same executable file (device and
//! inode), the address lies inside the executable's mappings, and the hash of
//! the `fn` type it expects equals the one recorded by the sender, where the
//! compiler checked the type.
#![allow(unsafe_code)] // Offsets turned back into fn pointers.

use crate::error::ProcessError;
use crate::target::{ExeId, exe_id, in_executable, offset_of, resolve_offset, type_hash};

mod sealed {
    pub trait Sealed {}
    pub trait StarSealed {}
}

/// A `fn` pointer type that a [`CodeRef`] can carry: `fn(A) -> R` and
/// `fn(&[A], &mut [R])` (sealed).
pub trait PlainFn: Copy + sealed::Sealed + 'static {
    #[doc(hidden)]
    fn addr(self) -> usize;
    #[doc(hidden)]
    /// # Safety
    /// `addr` must be the address of a function of exactly this type.
    unsafe fn from_addr(addr: usize) -> Self;
}

impl<A: 'static, R: 'static> sealed::Sealed for fn(A) -> R {}
impl<A: 'static, R: 'static> PlainFn for fn(A) -> R {
    fn addr(self) -> usize {
        self as usize
    }
    unsafe fn from_addr(addr: usize) -> Self {
        // SAFETY: the caller guarantees `addr` is a `fn(A) -> R`; a fn pointer
        // is pointer-sized.
        unsafe { std::mem::transmute::<usize, Self>(addr) }
    }
}

impl<A: 'static, R: 'static> sealed::Sealed for fn(&[A], &mut [R]) {}
impl<A: 'static, R: 'static> PlainFn for fn(&[A], &mut [R]) {
    fn addr(self) -> usize {
        self as usize
    }
    unsafe fn from_addr(addr: usize) -> Self {
        // SAFETY: as above, for `fn(&[A], &mut [R])`.
        unsafe { std::mem::transmute::<usize, Self>(addr) }
    }
}

/// A plain `fn` of any arity up to six, called with its arguments as one
/// tuple (Python's `starmap`/`apply` unpacking): `fn(A, B) -> R` is a
/// `StarFn<(A, B)>` (sealed). [`CodeRef::of_star`] carries it.
pub trait StarFn<Args>: Copy + sealed::StarSealed + 'static {
    /// What the `fn` returns.
    type Output;
    /// Calls the `fn` with the tuple's fields as its arguments.
    fn call(self, args: Args) -> Self::Output;
    #[doc(hidden)]
    fn star_addr(self) -> usize;
    #[doc(hidden)]
    /// # Safety
    /// `addr` must be the address of a function of exactly this type.
    unsafe fn star_from_addr(addr: usize) -> Self;
}

macro_rules! star_fn {
    ($($a:ident)*) => {
        impl<$($a: 'static,)* R: 'static> sealed::StarSealed for fn($($a),*) -> R {}
        impl<$($a: 'static,)* R: 'static> StarFn<($($a,)*)> for fn($($a),*) -> R {
            type Output = R;
            #[allow(non_snake_case)]
            fn call(self, ($($a,)*): ($($a,)*)) -> R {
                self($($a),*)
            }
            fn star_addr(self) -> usize {
                self as usize
            }
            unsafe fn star_from_addr(addr: usize) -> Self {
                // SAFETY: the caller guarantees `addr` is a function of
                // exactly this type; a fn pointer is pointer-sized.
                unsafe { std::mem::transmute::<usize, Self>(addr) }
            }
        }
    };
}

star_fn!();
star_fn!(A);
star_fn!(A B);
star_fn!(A B C);
star_fn!(A B C D);
star_fn!(A B C D E);
star_fn!(A B C D E F);

/// A plain `fn` as a checked offset from a reference point of this
/// executable, with the executable's identity and the `fn` type's hash:
/// [`to_words`](Self::to_words) travels (shared memory, a socket), and
/// [`resolve`](Self::resolve) gives the `fn` back in a child process of the
/// same executable, or an error, never a call through a wrong pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeRef {
    offset: u64,
    type_hash: u64,
    dev: u64,
    ino: u64,
}

impl CodeRef {
    /// The number of `u64` words of [`to_words`](Self::to_words).
    pub const WORDS: usize = 4;

    /// Records `f`.
    ///
    /// # Errors
    /// [`ProcessError::TargetOutsideExecutable`] for a `fn` outside the
    /// executable (from a `dylib`); [`ProcessError::BadBoot`] when the
    /// executable cannot be identified.
    pub fn of<F: PlainFn>(f: F) -> Result<Self, ProcessError> {
        Self::record::<F>(f.addr())
    }

    fn record<F: 'static>(addr: usize) -> Result<Self, ProcessError> {
        let offset = offset_of(addr)?;
        let id =
            exe_id().ok_or_else(|| ProcessError::BadBoot("cannot stat /proc/self/exe".into()))?;
        Ok(Self {
            offset,
            type_hash: type_hash::<F>(),
            dev: id.dev,
            ino: id.ino,
        })
    }

    /// The `fn` back, in this process or a child of the same executable.
    ///
    /// # Errors
    /// [`ProcessError::BadBoot`] when this is another executable, the address
    /// falls outside it, or `F` is not the type recorded.
    pub fn resolve<F: PlainFn>(self) -> Result<F, ProcessError> {
        let addr = self.checked_addr::<F>()?;
        // SAFETY: `addr` is the recorded `fn` moved by this image's load
        // difference, in the same executable file (checked), and its type
        // hash equals `F`'s (the sender's compiler checked `f: F`).
        Ok(unsafe { F::from_addr(addr) })
    }

    /// The recorded address in this process, after every check.
    fn checked_addr<F: 'static>(self) -> Result<usize, ProcessError> {
        let mine =
            exe_id().ok_or_else(|| ProcessError::BadBoot("cannot stat /proc/self/exe".into()))?;
        if mine
            != (ExeId {
                dev: self.dev,
                ino: self.ino,
            })
        {
            return Err(ProcessError::BadBoot(
                "the code reference comes from another executable".into(),
            ));
        }
        if self.type_hash != type_hash::<F>() {
            return Err(ProcessError::BadBoot(format!(
                "fn type mismatch: expected {}",
                std::any::type_name::<F>()
            )));
        }
        let addr = resolve_offset(self.offset);
        if !in_executable(addr) {
            return Err(ProcessError::BadBoot(format!(
                "offset leads outside the executable ({addr:#x})"
            )));
        }
        Ok(addr)
    }

    /// Records `f`, a `fn` of any arity called with a tuple ([`StarFn`]).
    ///
    /// # Errors
    /// As [`of`](Self::of).
    pub fn of_star<Args, F: StarFn<Args>>(f: F) -> Result<Self, ProcessError> {
        Self::record::<F>(f.star_addr())
    }

    /// The [`StarFn`] back; as [`resolve`](Self::resolve).
    ///
    /// # Errors
    /// As [`resolve`](Self::resolve).
    pub fn resolve_star<Args, F: StarFn<Args>>(self) -> Result<F, ProcessError> {
        let addr = self.checked_addr::<F>()?;
        // SAFETY: as in `resolve`: the recorded `fn`, relocated, in the same
        // executable, whose type hash equals `F`'s.
        Ok(unsafe { F::star_from_addr(addr) })
    }

    /// The reference as words, to send.
    pub fn to_words(self) -> [u64; Self::WORDS] {
        [self.offset, self.type_hash, self.dev, self.ino]
    }

    /// The reference from [`to_words`](Self::to_words); nothing is checked
    /// until [`resolve`](Self::resolve).
    pub fn from_words(w: [u64; Self::WORDS]) -> Self {
        Self {
            offset: w[0],
            type_hash: w[1],
            dev: w[2],
            ino: w[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        x * 2
    }
    fn sum(a: &[u32], b: &mut [u64]) {
        b[0] = a.iter().map(|&x| u64::from(x)).sum();
    }

    #[test]
    fn round_trip_and_type_check() {
        let r = CodeRef::of(double as fn(u64) -> u64).expect("of");
        let back = CodeRef::from_words(r.to_words());
        let f: fn(u64) -> u64 = back.resolve().expect("resolve");
        assert_eq!(f(21), 42);
        assert!(back.resolve::<fn(u32) -> u64>().is_err());
        let s = CodeRef::of(sum as fn(&[u32], &mut [u64])).expect("of");
        let g: fn(&[u32], &mut [u64]) = s.resolve().expect("resolve");
        let mut out = [0u64];
        g(&[1, 2, 3], &mut out);
        assert_eq!(out[0], 6);
        let mut w = r.to_words();
        w[3] ^= 1;
        assert!(CodeRef::from_words(w).resolve::<fn(u64) -> u64>().is_err());
    }
}
