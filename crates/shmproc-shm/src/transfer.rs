//! Values that cross into another process: the [`Transfer`] trait, and
//! every [`SharedObject`] travelling as a handle (one blanket impl).
//!
//! A child never receives the parent's memory addresses. Arguments are
//! encoded in the parent ([`Transfer::pack`]) and decoded in the child
//! ([`Transfer::unpack`]) under every start method, `fork` included, so a
//! child behaves the same whichever method started it. Shared objects
//! (`Value`, `Lock`, `Queue`, ...) are encoded as a **handle**: the segment's
//! name if it has one, and a descriptor that travels beside the bytes
//! (inherited by `fork`, kept open across `exec` for `spawn`, passed with
//! `SCM_RIGHTS` to the fork server). The child reopens the object from the
//! handle, as an opener: it never owns (never unlinks) what the parent made.

use std::os::fd::{AsFd, OwnedFd};

pub use crate::object::TransferError;
use crate::object::{SharedObject, Source};

/// The bytes and descriptors an argument list is encoded into.
#[derive(Debug, Default)]
pub struct Packer {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Packer {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw bytes.
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }

    /// Appends a `u64` (little endian).
    pub fn put_u64(&mut self, v: u64) {
        self.put_bytes(&v.to_le_bytes());
    }

    /// Appends a length-prefixed byte string.
    pub fn put_blob(&mut self, b: &[u8]) {
        self.put_u64(b.len() as u64);
        self.put_bytes(b);
    }

    /// Attaches a descriptor (a duplicate is taken, close-on-exec) and
    /// appends its index among this packer's descriptors.
    ///
    /// # Errors
    /// [`TransferError::Dup`] when the descriptor cannot be duplicated.
    pub fn put_fd(&mut self, fd: impl AsFd) -> Result<(), TransferError> {
        let dup = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(TransferError::Dup)?;
        self.put_owned_fd(dup);
        Ok(())
    }

    /// Attaches an owned descriptor and appends its index.
    pub fn put_owned_fd(&mut self, fd: OwnedFd) {
        self.put_u64(self.fds.len() as u64);
        self.fds.push(fd);
    }

    /// The encoded bytes and the attached descriptors.
    pub fn into_parts(self) -> (Vec<u8>, Vec<OwnedFd>) {
        (self.bytes, self.fds)
    }
}

/// Reads back what a [`Packer`] wrote. Every read is bounds-checked: the
/// bytes come from another process.
#[derive(Debug)]
pub struct Unpacker<'a> {
    bytes: &'a [u8],
    fds: Vec<Option<OwnedFd>>,
}

impl<'a> Unpacker<'a> {
    /// A decoder over `bytes` and the descriptors that came with them.
    pub fn new(bytes: &'a [u8], fds: Vec<OwnedFd>) -> Self {
        Self {
            bytes,
            fds: fds.into_iter().map(Some).collect(),
        }
    }

    /// Takes `n` raw bytes.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] when fewer remain.
    pub fn take_bytes(&mut self, n: usize) -> Result<&'a [u8], TransferError> {
        if n > self.bytes.len() {
            return Err(TransferError::malformed(
                "bytes",
                format!("needs {n} more bytes, {} left", self.bytes.len()),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes `N` raw bytes.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] when fewer remain.
    pub fn take_array<const N: usize>(&mut self) -> Result<&'a [u8; N], TransferError> {
        self.take_bytes(N)?
            .try_into()
            .map_err(|_| TransferError::malformed("bytes", "short"))
    }

    /// Takes a `u64`.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] at the end of the input.
    pub fn take_u64(&mut self) -> Result<u64, TransferError> {
        let b = self.take_bytes(8)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| TransferError::malformed("u64", "short"))?;
        Ok(u64::from_le_bytes(arr))
    }

    /// Takes a length-prefixed byte string.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] when the length runs past the input.
    pub fn take_blob(&mut self) -> Result<&'a [u8], TransferError> {
        let n = self.take_u64()?;
        let n =
            usize::try_from(n).map_err(|_| TransferError::malformed("blob", "length overflows"))?;
        self.take_bytes(n)
    }

    /// Takes the descriptor whose index comes next (each index once).
    ///
    /// # Errors
    /// [`TransferError::Malformed`] when the index is out of range or was taken.
    pub fn take_fd(&mut self) -> Result<OwnedFd, TransferError> {
        let i = self.take_u64()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| {
                TransferError::malformed("fd", format!("descriptor #{i} missing or reused"))
            })
    }

    /// Checks that everything was read.
    ///
    /// # Errors
    /// [`TransferError::Malformed`] when bytes are left over.
    pub fn finish(self) -> Result<(), TransferError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(TransferError::malformed(
                "arguments",
                format!("{} trailing bytes", self.bytes.len()),
            ))
        }
    }
}

/// A value that can be passed to a child process.
///
/// Implemented for integers, floats, `bool`, `char`, `String`, `Vec`,
/// `Option`, arrays and tuples (up to 8) of `Transfer` values, `()`, every
/// [`SharedObject`], [`PodArg`] (any `bytemuck::Pod`) and, with
/// the `serde` feature, [`Serde`] (any `serde` type, encoded with `postcard`).
pub trait Transfer: Sized {
    /// Encodes `self` for the child.
    ///
    /// # Errors
    /// When the value cannot be encoded (a shared object without a handle, a
    /// serializer error).
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError>;

    /// Decodes a value in the child.
    ///
    /// # Errors
    /// When the input is malformed, or a shared object cannot be reopened.
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError>;
}

macro_rules! transfer_num {
    ($($t:ty),*) => {$(
        impl Transfer for $t {
            fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
                p.put_bytes(&self.to_le_bytes());
                Ok(())
            }
            fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
                let b = u.take_bytes(size_of::<$t>())?;
                let arr = b.try_into().map_err(|_| TransferError::malformed(stringify!($t), "short"))?;
                Ok(<$t>::from_le_bytes(arr))
            }
        }
    )*};
}
transfer_num!(
    u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64, usize, isize
);

impl Transfer for bool {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_bytes(&[u8::from(*self)]);
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        match u.take_bytes(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            other => Err(TransferError::malformed("bool", format!("byte {other:?}"))),
        }
    }
}

impl Transfer for char {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        u32::from(*self).pack(p)
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let v = u32::unpack(u)?;
        char::from_u32(v).ok_or_else(|| TransferError::malformed("char", format!("{v:#x}")))
    }
}

impl Transfer for String {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_blob(self.as_bytes());
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let b = u.take_blob()?;
        String::from_utf8(b.to_vec()).map_err(|e| TransferError::malformed("String", e.to_string()))
    }
}

impl<T: Transfer> Transfer for Vec<T> {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_u64(self.len() as u64);
        self.iter().try_for_each(|v| v.pack(p))
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let n = u.take_u64()?;
        // Do not trust the length for the allocation: each element needs at
        // least one byte or fails on its own.
        let mut v = Vec::with_capacity(usize::try_from(n.min(4096)).unwrap_or(0));
        for _ in 0..n {
            v.push(T::unpack(u)?);
        }
        Ok(v)
    }
}

impl<T: Transfer> Transfer for Option<T> {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        match self {
            None => {
                p.put_bytes(&[0]);
                Ok(())
            }
            Some(v) => {
                p.put_bytes(&[1]);
                v.pack(p)
            }
        }
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        match u.take_bytes(1)? {
            [0] => Ok(None),
            [1] => Ok(Some(T::unpack(u)?)),
            other => Err(TransferError::malformed("Option", format!("tag {other:?}"))),
        }
    }
}

impl<T: Transfer, const N: usize> Transfer for [T; N] {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        self.iter().try_for_each(|v| v.pack(p))
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let mut v = Vec::with_capacity(N);
        for _ in 0..N {
            v.push(T::unpack(u)?);
        }
        v.try_into()
            .map_err(|_| TransferError::malformed("array", "length"))
    }
}

macro_rules! transfer_tuple {
    ($($n:ident),*) => {
        impl<$($n: Transfer),*> Transfer for ($($n,)*) {
            #[allow(non_snake_case)]
            fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
                let ($($n,)*) = self;
                $($n.pack(p)?;)*
                let _ = p;
                Ok(())
            }
            fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
                let _ = &u;
                Ok(($($n::unpack(u)?,)*))
            }
        }
    };
}
transfer_tuple!();
transfer_tuple!(A);
transfer_tuple!(A, B);
transfer_tuple!(A, B, C);
transfer_tuple!(A, B, C, D);
transfer_tuple!(A, B, C, D, E);
transfer_tuple!(A, B, C, D, E, F);
transfer_tuple!(A, B, C, D, E, F, G);
transfer_tuple!(A, B, C, D, E, F, G, H);

/// Any `bytemuck::Pod` value, passed as its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodArg<T>(pub T);

impl<T: bytemuck::Pod> Transfer for PodArg<T> {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_bytes(bytemuck::bytes_of(&self.0));
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let b = u.take_bytes(size_of::<T>())?;
        Ok(PodArg(bytemuck::pod_read_unaligned(b)))
    }
}

/// Any `serde` value, encoded with `postcard` (feature `serde`).
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Transfer for Serde<T> {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        let bytes = postcard::to_allocvec(&self.0).map_err(|e| TransferError::Encode {
            what: "serde",
            detail: e.to_string(),
        })?;
        p.put_blob(&bytes);
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let b = u.take_blob()?;
        postcard::from_bytes(b)
            .map(Serde)
            .map_err(|e| TransferError::malformed("serde", e.to_string()))
    }
}

/// A shared object travels as a handle: its role byte (which view, see
/// [`SharedObject::role`]), its segment's name if it has one, and always a
/// descriptor of the segment. The receiver opens it through the descriptor,
/// so the object reaches the child even when the parent drops (and so
/// unlinks) its creating handle right after the start, and a name reused in
/// the meantime can never be opened by mistake.
impl<S: SharedObject> Transfer for S {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_bytes(&[self.role()]);
        match self.name() {
            Some(name) => {
                p.put_bytes(&[1]);
                p.put_blob(name.as_bytes());
            }
            None => p.put_bytes(&[0]),
        }
        p.put_fd(self.segment().fd())?;
        self.hand_over();
        Ok(())
    }

    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let [role] = *u.take_array::<1>()?;
        let name = match u.take_bytes(1)? {
            [0] => None,
            [1] => Some(
                std::str::from_utf8(u.take_blob()?)
                    .map_err(|e| TransferError::malformed(S::WHAT, e.to_string()))?,
            ),
            other => {
                return Err(TransferError::malformed(
                    S::WHAT,
                    format!("name tag {other:?}"),
                ));
            }
        };
        let fd = u.take_fd()?;
        let source = match name {
            Some(name) => Source::NamedFd(name, fd),
            None => Source::Fd(fd),
        };
        let mut obj = S::open_as(source, role)
            .ok_or_else(|| TransferError::malformed(S::WHAT, format!("role {role}")))?
            .map_err(TransferError::share::<S>)?;
        obj.take_over().map_err(TransferError::share::<S>)?;
        Ok(obj)
    }
}

/// What may be passed where a target takes an `A`: an `A` itself, or, for a
/// shared object `S`, a reference `&S` (the parent keeps its object; the
/// child gets its own handle, as Python passes a `Queue` to a `Process`).
/// Tuples (up to 8) take either form in each position:
/// `Process::new(worker, (&queue, &lock, 5))` for a
/// `fn worker((q, l, n): (Queue<u64>, Lock, u64))`.
pub trait PassAs<A: Transfer> {
    /// Encodes `self` as the `A` the child decodes.
    ///
    /// # Errors
    /// As [`Transfer::pack`].
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError>;
}

macro_rules! pass_as_itself {
    ($([$($g:tt)*] $t:ty),* $(,)?) => {$(
        impl<$($g)*> PassAs<$t> for $t {
            fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
                self.pack(p)
            }
        }
    )*};
}
pass_as_itself!(
    [] u8, [] u16, [] u32, [] u64, [] u128, [] i8, [] i16, [] i32, [] i64, [] i128,
    [] f32, [] f64, [] usize, [] isize, [] bool, [] char, [] String,
    [T: Transfer] Vec<T>,
    [T: Transfer] Option<T>,
    [T: Transfer, const N: usize] [T; N],
    [T: bytemuck::Pod] PodArg<T>,
);
#[cfg(feature = "serde")]
pass_as_itself!([T: serde::Serialize + serde::de::DeserializeOwned] Serde<T>);

/// A string literal where the target takes a `String`.
impl PassAs<String> for &str {
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_blob(self.as_bytes());
        Ok(())
    }
}

impl<S: SharedObject> PassAs<S> for S {
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
        self.pack(p)
    }
}

impl<S: SharedObject> PassAs<S> for &S {
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
        (**self).pack(p)
    }
}

macro_rules! pass_as_tuple {
    ($(($a:ident, $p:ident, $i:tt)),*) => {
        impl<$($a: Transfer, $p: PassAs<$a>),*> PassAs<($($a,)*)> for ($($p,)*) {
            fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
                $(self.$i.pack_as(p)?;)*
                let _ = p;
                Ok(())
            }
        }
    };
}
pass_as_tuple!();
pass_as_tuple!((A0, P0, 0));
pass_as_tuple!((A0, P0, 0), (A1, P1, 1));
pass_as_tuple!((A0, P0, 0), (A1, P1, 1), (A2, P2, 2));
pass_as_tuple!((A0, P0, 0), (A1, P1, 1), (A2, P2, 2), (A3, P3, 3));
pass_as_tuple!(
    (A0, P0, 0),
    (A1, P1, 1),
    (A2, P2, 2),
    (A3, P3, 3),
    (A4, P4, 4)
);
pass_as_tuple!(
    (A0, P0, 0),
    (A1, P1, 1),
    (A2, P2, 2),
    (A3, P3, 3),
    (A4, P4, 4),
    (A5, P5, 5)
);
pass_as_tuple!(
    (A0, P0, 0),
    (A1, P1, 1),
    (A2, P2, 2),
    (A3, P3, 3),
    (A4, P4, 4),
    (A5, P5, 5),
    (A6, P6, 6)
);
pass_as_tuple!(
    (A0, P0, 0),
    (A1, P1, 1),
    (A2, P2, 2),
    (A3, P3, 3),
    (A4, P4, 4),
    (A5, P5, 5),
    (A6, P6, 6),
    (A7, P7, 7)
);

/// Encodes `args`, passed as an `A`, into bytes and descriptors.
///
/// # Errors
/// As [`Transfer::pack`].
pub fn pack_args_as<A: Transfer, P: PassAs<A>>(
    args: &P,
) -> Result<(Vec<u8>, Vec<OwnedFd>), TransferError> {
    let mut p = Packer::new();
    args.pack_as(&mut p)?;
    Ok(p.into_parts())
}

/// Encodes `args` into bytes and descriptors.
///
/// # Errors
/// As [`Transfer::pack`].
pub fn pack_args<A: Transfer>(args: &A) -> Result<(Vec<u8>, Vec<OwnedFd>), TransferError> {
    let mut p = Packer::new();
    args.pack(&mut p)?;
    Ok(p.into_parts())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<A: Transfer>(a: &A) -> A {
        let (b, fds) = pack_args(a).expect("pack");
        let mut u = Unpacker::new(&b, fds);
        let v = A::unpack(&mut u).expect("unpack");
        u.finish().expect("no trailing bytes");
        v
    }

    #[test]
    fn plain_values_roundtrip() {
        let v = ("worker".to_string(), 2u64, -3i32, 1.5f64, true, 'x');
        assert_eq!(roundtrip(&v), v);
        let w = (vec![1u8, 2, 3], Some([7u16; 4]), None::<String>, ());
        assert_eq!(roundtrip(&w), w);
        assert_eq!(roundtrip(&PodArg([1u32, 2])), PodArg([1u32, 2]));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_values_roundtrip() {
        let v = Serde(std::collections::BTreeMap::from([(1u8, "a".to_string())]));
        assert_eq!(roundtrip(&v), v);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut u = Unpacker::new(&[0xff; 3], Vec::new());
        assert!(u64::unpack(&mut u).is_err());
        let mut u = Unpacker::new(&[2], Vec::new());
        assert!(bool::unpack(&mut u).is_err());
        let huge = u64::MAX.to_le_bytes();
        let mut u = Unpacker::new(&huge, Vec::new());
        assert!(String::unpack(&mut u).is_err());
        let mut u = Unpacker::new(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], Vec::new());
        assert!(
            crate::ShmBox::<u64>::unpack(&mut u).is_err(),
            "fd index 0 with no fds"
        );
        let mut u = Unpacker::new(&[0, 7], Vec::new());
        assert!(crate::ShmBox::<u64>::unpack(&mut u).is_err(), "name tag 7");
    }

    #[test]
    fn shared_objects_travel_as_handles() {
        let v = crate::ShmBox::new(41u64).expect("anonymous box");
        let clone = v.try_clone().expect("reopen by fd");
        clone.store(42);
        assert_eq!(v.load(), 42);
        let back = roundtrip(&v);
        assert_eq!(back.load(), 42);
        assert!(back.name().is_none());
    }

    #[test]
    fn a_named_object_outlives_its_dropped_creator() {
        let name = crate::SegmentName::unique("transfer");
        let creator = crate::ShmSlice::create(name.as_str(), 4, 7u32).expect("create");
        let (bytes, fds) = pack_args(&creator).expect("pack");
        drop(creator); // unlinks the name
        assert!(!crate::Segment::exists(name.as_str()));
        let mut u = Unpacker::new(&bytes, fds);
        let got = crate::ShmSlice::<u32>::unpack(&mut u).expect("opened by fd");
        u.finish().expect("no trailing bytes");
        assert_eq!(got.to_vec(), vec![7; 4]);
        assert_eq!(got.name(), Some(name.as_str()));
        assert!(!got.segment().is_owner());
    }
}
