//! Arguments that cross into a child: the [`Transfer`] trait, and shared
//! objects travelling as handles ([`Shareable`]).
//!
//! A child never receives the parent's memory addresses. Arguments are
//! encoded in the parent ([`Transfer::pack`]) and decoded in the child
//! ([`Transfer::unpack`]) under every start method, `fork` included, so a
//! child behaves the same whichever method started it. Shared objects
//! (`Value`, `Lock`, `Queue`, ...) are encoded as a **handle**: the segment's
//! name, or for an anonymous segment an fd that travels beside the bytes
//! (inherited by `fork`, kept open across `exec` for `spawn`, passed with
//! `SCM_RIGHTS` to the fork server). The child reopens the object from the
//! handle, as an opener: it never owns (never unlinks) what the parent made.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::ProcessError;

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
    /// [`ProcessError::Os`] when the descriptor cannot be duplicated.
    pub fn put_fd(&mut self, fd: impl AsFd) -> Result<(), ProcessError> {
        let dup = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(ProcessError::os("dup"))?;
        self.put_owned_fd(dup);
        Ok(())
    }

    /// Attaches an owned descriptor and appends its index.
    pub fn put_owned_fd(&mut self, fd: OwnedFd) {
        self.put_u64(self.fds.len() as u64);
        self.fds.push(fd);
    }

    pub(crate) fn into_parts(self) -> (Vec<u8>, Vec<OwnedFd>) {
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
    pub(crate) fn new(bytes: &'a [u8], fds: Vec<OwnedFd>) -> Self {
        Self {
            bytes,
            fds: fds.into_iter().map(Some).collect(),
        }
    }

    /// Takes `n` raw bytes.
    ///
    /// # Errors
    /// [`ProcessError::Args`] when fewer remain.
    pub fn take_bytes(&mut self, n: usize) -> Result<&'a [u8], ProcessError> {
        if n > self.bytes.len() {
            return Err(ProcessError::args(
                "bytes",
                format!("needs {n} more bytes, {} left", self.bytes.len()),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes a `u64`.
    ///
    /// # Errors
    /// [`ProcessError::Args`] at the end of the input.
    pub fn take_u64(&mut self) -> Result<u64, ProcessError> {
        let b = self.take_bytes(8)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| ProcessError::args("u64", "short"))?;
        Ok(u64::from_le_bytes(arr))
    }

    /// Takes a length-prefixed byte string.
    ///
    /// # Errors
    /// [`ProcessError::Args`] when the length runs past the input.
    pub fn take_blob(&mut self) -> Result<&'a [u8], ProcessError> {
        let n = self.take_u64()?;
        let n = usize::try_from(n).map_err(|_| ProcessError::args("blob", "length overflows"))?;
        self.take_bytes(n)
    }

    /// Takes the descriptor whose index comes next (each index once).
    ///
    /// # Errors
    /// [`ProcessError::Args`] when the index is out of range or was taken.
    pub fn take_fd(&mut self) -> Result<OwnedFd, ProcessError> {
        let i = self.take_u64()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(Option::take)
            .ok_or_else(|| ProcessError::args("fd", format!("descriptor #{i} missing or reused")))
    }

    pub(crate) fn finish(self) -> Result<(), ProcessError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ProcessError::args(
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
/// [`Shareable`] shared object, [`PodArg`] (any `bytemuck::Pod`) and, with
/// the `serde` feature, [`Serde`] (any `serde` type, encoded with `postcard`).
pub trait Transfer: Sized {
    /// Encodes `self` for the child.
    ///
    /// # Errors
    /// When the value cannot be encoded (a shared object without a handle, a
    /// serializer error).
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError>;

    /// Decodes a value in the child.
    ///
    /// # Errors
    /// When the input is malformed, or a shared object cannot be reopened.
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError>;
}

macro_rules! transfer_num {
    ($($t:ty),*) => {$(
        impl Transfer for $t {
            fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
                p.put_bytes(&self.to_le_bytes());
                Ok(())
            }
            fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
                let b = u.take_bytes(size_of::<$t>())?;
                let arr = b.try_into().map_err(|_| ProcessError::args(stringify!($t), "short"))?;
                Ok(<$t>::from_le_bytes(arr))
            }
        }
    )*};
}
transfer_num!(
    u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64, usize, isize
);

impl Transfer for bool {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        p.put_bytes(&[u8::from(*self)]);
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        match u.take_bytes(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            other => Err(ProcessError::args("bool", format!("byte {other:?}"))),
        }
    }
}

impl Transfer for char {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        u32::from(*self).pack(p)
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        let v = u32::unpack(u)?;
        char::from_u32(v).ok_or_else(|| ProcessError::args("char", format!("{v:#x}")))
    }
}

impl Transfer for String {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        p.put_blob(self.as_bytes());
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        let b = u.take_blob()?;
        String::from_utf8(b.to_vec()).map_err(|e| ProcessError::args("String", e.to_string()))
    }
}

impl<T: Transfer> Transfer for Vec<T> {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        p.put_u64(self.len() as u64);
        self.iter().try_for_each(|v| v.pack(p))
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
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
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
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
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        match u.take_bytes(1)? {
            [0] => Ok(None),
            [1] => Ok(Some(T::unpack(u)?)),
            other => Err(ProcessError::args("Option", format!("tag {other:?}"))),
        }
    }
}

impl<T: Transfer, const N: usize> Transfer for [T; N] {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        self.iter().try_for_each(|v| v.pack(p))
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        let mut v = Vec::with_capacity(N);
        for _ in 0..N {
            v.push(T::unpack(u)?);
        }
        v.try_into()
            .map_err(|_| ProcessError::args("array", "length"))
    }
}

macro_rules! transfer_tuple {
    ($($n:ident),*) => {
        impl<$($n: Transfer),*> Transfer for ($($n,)*) {
            #[allow(non_snake_case)]
            fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
                let ($($n,)*) = self;
                $($n.pack(p)?;)*
                let _ = p;
                Ok(())
            }
            fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
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
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        p.put_bytes(bytemuck::bytes_of(&self.0));
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
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
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        let bytes = postcard::to_allocvec(&self.0)
            .map_err(|e| ProcessError::args("serde", e.to_string()))?;
        p.put_blob(&bytes);
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        let b = u.take_blob()?;
        postcard::from_bytes(b)
            .map(Serde)
            .map_err(|e| ProcessError::args("serde", e.to_string()))
    }
}

/// How a shared object is found again in another process: the name of its
/// segment, or its descriptor (anonymous segments).
#[derive(Debug)]
pub enum RawHandle {
    /// A named segment (`/dev/shm/<name>`).
    Name(String),
    /// An anonymous segment's descriptor (close-on-exec; the start methods
    /// carry it into the child).
    Fd(OwnedFd),
}

impl RawHandle {
    fn pack(self, p: &mut Packer) {
        match self {
            RawHandle::Name(n) => {
                p.put_bytes(&[0]);
                p.put_blob(n.as_bytes());
            }
            RawHandle::Fd(fd) => {
                p.put_bytes(&[1]);
                p.put_owned_fd(fd);
            }
        }
    }

    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        match u.take_bytes(1)? {
            [0] => {
                let b = u.take_blob()?;
                let s = std::str::from_utf8(b)
                    .map_err(|e| ProcessError::args("handle", e.to_string()))?;
                Ok(RawHandle::Name(s.to_owned()))
            }
            [1] => Ok(RawHandle::Fd(u.take_fd()?)),
            other => Err(ProcessError::args("handle", format!("tag {other:?}"))),
        }
    }
}

/// A shared object that travels to a child as a [`RawHandle`] and is
/// reopened there (Python pickles a `Queue` or a `Value` the same way).
///
/// Every `Shareable` is [`Transfer`]: pass it in a target's arguments. To
/// keep using it in the parent, pass a [`try_clone`](Self::try_clone).
pub trait Shareable: Sized {
    /// The handle naming this object's segment.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    fn to_handle(&self) -> Result<RawHandle, ProcessError>;

    /// Reopens the object from a handle (as an opener, never the owner).
    ///
    /// # Errors
    /// When the segment cannot be opened or is not of this type.
    fn from_handle(h: RawHandle) -> Result<Self, ProcessError>;

    /// A second handle on the same shared object, in this process.
    ///
    /// # Errors
    /// As [`to_handle`](Self::to_handle) and [`from_handle`](Self::from_handle).
    fn try_clone(&self) -> Result<Self, ProcessError> {
        Self::from_handle(self.to_handle()?)
    }
}

impl<S: Shareable> Transfer for S {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        self.to_handle()?.pack(p);
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        S::from_handle(RawHandle::unpack(u)?)
    }
}

fn share_err<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> ProcessError {
    move |e| ProcessError::Share {
        what,
        source: Box::new(e),
    }
}

macro_rules! shareable {
    ($($ty:ident $(<$g:ident>)?),* $(,)?) => {$(
        impl$(<$g: bytemuck::Pod>)? Shareable for shmproc_sync::$ty$(<$g>)? {
            fn to_handle(&self) -> Result<RawHandle, ProcessError> {
                match self.name() {
                    Some(n) => Ok(RawHandle::Name(n.to_owned())),
                    None => self
                        .segment()
                        .fd()
                        .try_clone_to_owned()
                        .map(RawHandle::Fd)
                        .map_err(ProcessError::os("dup")),
                }
            }
            fn from_handle(h: RawHandle) -> Result<Self, ProcessError> {
                match h {
                    RawHandle::Name(n) => Self::open(&n),
                    RawHandle::Fd(fd) => Self::open_fd(fd),
                }
                .map_err(share_err(stringify!($ty)))
            }
        }
    )*};
}
shareable!(
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Value<T>,
    Array<T>,
    RawValue<T>,
    RawArray<T>,
);

macro_rules! shareable_view {
    ($($ty:ident),*) => {$(
        impl<T: bytemuck::Pod> Shareable for shmproc_shm::$ty<T> {
            fn to_handle(&self) -> Result<RawHandle, ProcessError> {
                match self.segment().name() {
                    Some(n) => Ok(RawHandle::Name(n.as_str().to_owned())),
                    None => self
                        .segment()
                        .fd()
                        .try_clone_to_owned()
                        .map(RawHandle::Fd)
                        .map_err(ProcessError::os("dup")),
                }
            }
            fn from_handle(h: RawHandle) -> Result<Self, ProcessError> {
                match h {
                    RawHandle::Name(n) => Self::open(&n),
                    RawHandle::Fd(fd) => Self::open_fd(fd),
                }
                .map_err(share_err(stringify!($ty)))
            }
        }
    )*};
}
shareable_view!(ShmBox, ShmSlice);

macro_rules! shareable_queue {
    ($($what:literal: [$($gen:tt)*] $ty:ty),* $(,)?) => {$(
        impl<$($gen)*> Shareable for $ty {
            fn to_handle(&self) -> Result<RawHandle, ProcessError> {
                match self.name() {
                    Some(n) => Ok(RawHandle::Name(n.to_owned())),
                    None => self
                        .segment()
                        .fd()
                        .try_clone_to_owned()
                        .map(RawHandle::Fd)
                        .map_err(ProcessError::os("dup")),
                }
            }
            fn from_handle(h: RawHandle) -> Result<Self, ProcessError> {
                match h {
                    RawHandle::Name(n) => Self::open(&n),
                    RawHandle::Fd(fd) => Self::open_fd(fd),
                }
                .map_err(share_err($what))
            }
        }
    )*};
}
shareable_queue!(
    "Queue": [T: bytemuck::Pod] shmproc_channel::Queue<T>,
    "JoinableQueue": [T: bytemuck::Pod] shmproc_channel::JoinableQueue<T>,
    "ByteQueue": [] shmproc_channel::ByteQueue,
);

/// A pipe end travels as its segment's handle (the name, or the anonymous
/// segment's fd) plus which end it is; the child reopens that end (with no
/// [`sentinel`](shmproc_channel::Connection::sentinel): `wait` on it falls
/// back to bounded sleeps).
///
/// Ownership (one end, one process at a time): packing gives up the
/// parent's claim ([`release_claim`](shmproc_channel::Connection::release_claim)),
/// so the child claims the end on its first use.
/// - A parent that never used the end: nothing to give up; its copy's drop
///   never closes a never-used end, so the child's use is unaffected.
/// - A parent that did use it: messages it already received stay received
///   and the child starts at the published indices; from then on the
///   parent's copy fails with `NotOwner` and its drop does not close the
///   end (it is the child's). Use the end in one process only.
///
/// The child claims the end as it unpacks its arguments, before the target
/// runs, so its death gives the peer EOF even if it never used the end.
/// Only a child killed while still booting (before that claim) leaves the
/// end counted as the creator's (the parent's), with no EOF: for that case
/// use a timeout, or `wait` on the process sentinel beside the connection.
impl Transfer for shmproc_channel::Connection {
    fn pack(&self, p: &mut Packer) -> Result<(), ProcessError> {
        let handle = match self.name() {
            Some(n) => RawHandle::Name(n.to_owned()),
            None => self
                .segment()
                .fd()
                .try_clone_to_owned()
                .map(RawHandle::Fd)
                .map_err(ProcessError::os("dup"))?,
        };
        let end = match self.end() {
            shmproc_channel::PipeEnd::First => 0u8,
            shmproc_channel::PipeEnd::Second => 1u8,
        };
        self.release_claim();
        p.put_bytes(&[end]);
        handle.pack(p);
        Ok(())
    }

    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, ProcessError> {
        let end = match u.take_bytes(1)? {
            [0] => shmproc_channel::PipeEnd::First,
            [1] => shmproc_channel::PipeEnd::Second,
            other => return Err(ProcessError::args("Connection", format!("end {other:?}"))),
        };
        let mut c = match RawHandle::unpack(u)? {
            RawHandle::Name(n) => shmproc_channel::Connection::open(&n, end),
            RawHandle::Fd(fd) => shmproc_channel::Connection::open_fd(fd, end),
        }
        .map_err(share_err("Connection"))?;
        // Claimed at once, so the peer gets EOF if the child dies before
        // its first use of the end.
        c.claim_now().map_err(share_err("Connection"))?;
        Ok(c)
    }
}

/// Encodes `args` into bytes and descriptors.
pub(crate) fn pack_args<A: Transfer>(args: &A) -> Result<(Vec<u8>, Vec<OwnedFd>), ProcessError> {
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
        let mut u = Unpacker::new(&[1, 0, 0, 0, 0, 0, 0, 0, 0], Vec::new());
        assert!(RawHandle::unpack(&mut u).is_err(), "fd index 0 with no fds");
    }

    #[test]
    fn shared_values_travel_as_handles() {
        let v = shmproc_sync::Value::new(41u64).expect("anonymous value");
        let clone = v.try_clone().expect("reopen by fd");
        clone.store(42).expect("store");
        assert_eq!(v.load().expect("load"), 42);
        let back = roundtrip(&v);
        assert_eq!(back.load().expect("load"), 42);
    }
}
