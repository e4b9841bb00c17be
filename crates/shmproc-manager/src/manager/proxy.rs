//! Typed proxies: each holds one reference to an object in the server and
//! this process's connection to it.
//!
//! Values travel as postcard bytes; a value that does not decode as the
//! proxy's type is [`ProxyError::Decode`].
//!
//! Nested proxies (a dict of lists, Python 3.6+): a proxy serializes, inside
//! a value stored into an object of the same server, as its object's id,
//! and the request lists that id: the stored value holds one reference to
//! it, dropped when the value is overwritten or removed, or its container
//! freed. A value read back comes with one reference per proxy inside it,
//! granted to this process and taken over by the proxies decoded from it
//! (those left over are released at once). So a nested object lives while
//! a container or a proxy, in any process, refers to it; a process that
//! dies releases its references. Only a cycle (an object holding a proxy to
//! itself, directly or not) outlives its last outside proxy, until the
//! server shuts down (as in Python). Outside a manager value (a key, another
//! serde format) a proxy does not serialize. In-place updates
//! (`update_with`) read the value with its version, apply the closure
//! here, and write back only if nobody wrote in between (retrying
//! otherwise): a change inside a value is never silently lost (Python's
//! `d[k].append(x)` is, cpython #91192).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_shm::transfer::{Packer, PassAs, Transfer, TransferError, Unpacker};

use super::client::ClientHandle;
use super::wire::{Kind, Op, Reply, Request, Val};
use crate::{Address, ProxyError, RemoteError};

pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ProxyError> {
    postcard::to_allocvec(v).map_err(|e| ProxyError::Encode(e.to_string()))
}

/// Decodes a whole value: bytes left over mean another type was stored.
pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, ProxyError> {
    let err = |detail: String| ProxyError::Decode {
        ty: std::any::type_name::<T>(),
        detail,
    };
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(err(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(err(e.to_string())),
    }
}

thread_local! {
    /// While a value to store is encoded: the server's id and the ids of
    /// the proxies met.
    static ENC: RefCell<Option<(u64, Vec<u64>)>> = const { RefCell::new(None) };
    /// While a value read is decoded: the connection and the references
    /// granted with it, not yet taken by a proxy.
    static DEC: RefCell<Option<(Arc<ClientHandle>, Vec<u64>)>> = const { RefCell::new(None) };
}

/// References the server granted with a reply (one per proxy in its
/// values): taken over by the proxies decoded ([`Grants::dec`]), the rest
/// released on drop.
pub(crate) struct Grants {
    h: Option<Arc<ClientHandle>>,
    ids: Vec<u64>,
}

impl Grants {
    const NONE: Self = Self {
        h: None,
        ids: Vec::new(),
    };

    /// Decodes a value of the reply; its proxies take their references.
    fn dec<T: DeserializeOwned>(&mut self, b: &[u8]) -> Result<T, ProxyError> {
        let Some(h) = &self.h else {
            return dec(b);
        };
        let ctx = (Arc::clone(h), std::mem::take(&mut self.ids));
        let outer = DEC.with(|c| c.replace(Some(ctx)));
        let r = dec(b);
        if let Some((_, left)) = DEC.with(|c| c.replace(outer)) {
            self.ids = left;
        }
        r
    }
}

impl Drop for Grants {
    fn drop(&mut self) {
        if let Some(h) = &self.h {
            for id in std::mem::take(&mut self.ids) {
                // Best effort, as `Base::drop`.
                let _ = h.call(&Request::Release { id });
            }
        }
    }
}

fn unexpected(r: &Reply) -> ProxyError {
    ProxyError::Remote(RemoteError::BadRequest(format!("unexpected reply {r:?}")))
}

/// What every proxy holds: the connection, the object's id, its kind and type.
pub(crate) struct Base {
    pub(crate) h: Arc<ClientHandle>,
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) ty: String,
}

impl Base {
    pub(crate) fn call(&self, op: Op) -> Result<Reply, ProxyError> {
        self.call_v(op).map(|(r, _)| r)
    }

    /// A call whose reply may hold proxies: the references they need.
    fn call_v(&self, op: Op) -> Result<(Reply, Grants), ProxyError> {
        self.split(self.h.call(&Request::Call { id: self.id, op })?)
    }

    fn split(&self, r: Reply) -> Result<(Reply, Grants), ProxyError> {
        match r {
            Reply::Granted(r, ids) => {
                let g = Grants {
                    h: Some(Arc::clone(&self.h)),
                    ids,
                };
                match *r {
                    Reply::Err(e) => Err(ProxyError::Remote(e)),
                    r => Ok((r, g)),
                }
            }
            r => Ok((r, Grants::NONE)),
        }
    }

    /// Encodes a value to store: the ids of the proxies inside it go with it.
    fn val<T: Serialize + ?Sized>(&self, v: &T) -> Result<Val, ProxyError> {
        let outer = ENC.with(|c| c.replace(Some((self.h.server, Vec::new()))));
        let bytes = enc(v);
        let refs = ENC
            .with(|c| c.replace(outer))
            .map(|(_, r)| r)
            .unwrap_or_default();
        Ok(Val {
            bytes: bytes?,
            refs,
        })
    }

    /// A proxy inside a value: its object's id, listed with the request.
    fn serialize_ref<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        ENC.with(|c| match c.borrow_mut().as_mut() {
            Some((server, refs)) if *server == self.h.server => {
                refs.push(self.id);
                Ok(())
            }
            Some(_) => Err(S::Error::custom(
                "a proxy is stored only into objects of its own manager",
            )),
            None => Err(S::Error::custom(
                "a proxy serializes only inside a value stored in its manager",
            )),
        })?;
        s.serialize_u64(self.id)
    }

    /// A proxy read from a value: takes one of the references granted.
    fn deserialize_ref<'de, D: serde::Deserializer<'de>>(
        d: D,
        kind: Kind,
        ty: String,
    ) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let id = <u64 as serde::Deserialize>::deserialize(d)?;
        let h = DEC.with(|c| {
            let mut c = c.borrow_mut();
            let (h, ids) = c.as_mut()?;
            let at = ids.iter().position(|&x| x == id)?;
            ids.swap_remove(at);
            Some(Arc::clone(h))
        });
        let h = h.ok_or_else(|| {
            D::Error::custom(format!(
                "object {id}: a proxy decodes only from a value read from its manager"
            ))
        })?;
        Ok(Self { h, id, kind, ty })
    }

    /// A blocking method: first tried without waiting on the shared
    /// connection; when it would wait, sent once with the whole wait on a
    /// waiting connection ([`ClientHandle::call_waiting`]), answered when
    /// `done` gets its answer, or [`ProxyError::Timeout`] at `deadline`
    /// (`None`: none). `f` makes the request for a wait of `ms`
    /// milliseconds (`u64::MAX`: no limit).
    fn blocking<R>(
        &self,
        deadline: Option<Instant>,
        f: impl FnMut(u64) -> Op,
        mut done: impl FnMut(Reply) -> Result<Option<R>, ProxyError>,
    ) -> Result<R, ProxyError> {
        self.blocking_v(deadline, f, |r, _| done(r))
    }

    /// [`blocking`](Self::blocking), for replies that may hold proxies.
    fn blocking_v<R>(
        &self,
        deadline: Option<Instant>,
        mut f: impl FnMut(u64) -> Op,
        mut done: impl FnMut(Reply, &mut Grants) -> Result<Option<R>, ProxyError>,
    ) -> Result<R, ProxyError> {
        let (r, mut g) = self.call_v(f(0))?;
        if let Some(r) = done(r, &mut g)? {
            return Ok(r);
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ProxyError::Timeout);
                }
                Some(left)
            }
            None => None,
        };
        let ms = wait.map_or(u64::MAX, |w| {
            u64::try_from(w.as_micros().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .min(u64::MAX - 1)
        });
        let req = Request::Call {
            id: self.id,
            op: f(ms),
        };
        let (r, mut g) = self.split(self.h.call_waiting(&req, wait)?)?;
        done(r, &mut g)?.ok_or(ProxyError::Timeout)
    }

    fn try_clone(&self) -> Result<Self, ProxyError> {
        self.h.call(&Request::Attach {
            id: self.id,
            kind: self.kind,
            ty: self.ty.clone(),
        })?;
        Ok(Self {
            h: Arc::clone(&self.h),
            id: self.id,
            kind: self.kind,
            ty: self.ty.clone(),
        })
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        // Best effort: a dead server has released everything anyway.
        let _ = self.h.call(&Request::Release { id: self.id });
    }
}

/// What travels to another process for a proxy.
#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    address: Address,
    authkey: Vec<u8>,
    timeout: Duration,
    id: u64,
    kind: Kind,
    ty: String,
}

impl Base {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        let what = "manager proxy";
        // One reference for the receiver, held by no client until it adopts it.
        self.h
            .call(&Request::Pin { id: self.id })
            .map_err(|e| TransferError::malformed(what, e.to_string()))?;
        let t = Token {
            address: self.h.address.clone(),
            authkey: self.h.authkey.clone(),
            timeout: self.h.timeout,
            id: self.id,
            kind: self.kind,
            ty: self.ty.clone(),
        };
        p.put_blob(
            &postcard::to_allocvec(&t)
                .map_err(|e| TransferError::malformed(what, e.to_string()))?,
        );
        Ok(())
    }

    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let what = "manager proxy";
        let t: Token = postcard::from_bytes(u.take_blob()?)
            .map_err(|e| TransferError::malformed(what, e.to_string()))?;
        let h = ClientHandle::get(&t.address, &t.authkey, t.timeout)
            .map_err(|e| TransferError::malformed(what, e.to_string()))?;
        h.call(&Request::Adopt {
            id: t.id,
            kind: t.kind,
            ty: t.ty.clone(),
        })
        .map_err(|e| TransferError::malformed(what, e.to_string()))?;
        Ok(Self {
            h,
            id: t.id,
            kind: t.kind,
            ty: t.ty,
        })
    }
}

macro_rules! proxy_common {
    ([$kind:expr, $ty:expr] $name:ident $(<$($g:ident),*>)? $(where $($b:tt)*)?) => {
        impl$(<$($g),*>)? $name$(<$($g),*>)? $(where $($b)*)? {
            /// The object's kind and type, as the server checks them.
            fn expected() -> (Kind, String) {
                ($kind, $ty)
            }

            /// A second proxy to the same object (one more reference).
            ///
            /// # Errors
            /// When the server is gone or the object was released.
            pub fn try_clone(&self) -> Result<Self, ProxyError> {
                Ok(Self { base: self.base.try_clone()?, _t: PhantomData })
            }

            /// The object's id in the server.
            pub fn id(&self) -> u64 {
                self.base.id
            }
        }

        impl$(<$($g),*>)? fmt::Debug for $name$(<$($g),*>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("id", &self.base.id)
                    .field("server", &self.base.h.address)
                    .finish()
            }
        }

        /// A proxy passes to a child process: the child connects to the
        /// same server (with the same authkey) and takes over a reference
        /// the sender reserved for it. A child that dies before it unpacks
        /// its arguments leaves that reference held until the server shuts
        /// down.
        impl$(<$($g),*>)? Transfer for $name$(<$($g),*>)? $(where $($b)*)? {
            fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
                self.base.pack(p)
            }
            fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
                Ok(Self { base: Base::unpack(u)?, _t: PhantomData })
            }
        }

        /// Inside a value stored into an object of the same manager (a
        /// dict of lists): the stored value keeps the object alive (see
        /// the [`manager`](crate::manager) docs). Anywhere else: an error.
        impl$(<$($g),*>)? Serialize for $name$(<$($g),*>)? $(where $($b)*)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.base.serialize_ref(s)
            }
        }

        /// From a value read from the manager: the proxy takes the
        /// reference the server granted with it.
        impl<'de $($(, $g)*)?> serde::Deserialize<'de> for $name$(<$($g),*>)? $(where $($b)*)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (kind, ty) = Self::expected();
                Ok(Self { base: Base::deserialize_ref(d, kind, ty)?, _t: PhantomData })
            }
        }

        impl$(<$($g),*>)? PassAs<$name$(<$($g),*>)?> for $name$(<$($g),*>)? $(where $($b)*)? {
            fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
                self.base.pack(p)
            }
        }

        /// Passing `&proxy` keeps this one in the parent.
        impl$(<$($g),*>)? PassAs<$name$(<$($g),*>)?> for &$name$(<$($g),*>)? $(where $($b)*)? {
            fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
                self.base.pack(p)
            }
        }
    };
}

/// A proxy to a dict in the manager (`manager.dict()`), typed by its key
/// and value types.
pub struct DictProxy<K, V> {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<fn() -> (K, V)>,
}
proxy_common!([Kind::Dict, format!("{}, {}", std::any::type_name::<K>(), std::any::type_name::<V>())] DictProxy<K, V> where K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// `d.get(k)`.
    ///
    /// # Errors
    /// [`ProxyError`]: the server is gone or timed out, a value of another type.
    pub fn get(&self, key: &K) -> Result<Option<V>, ProxyError> {
        match self.base.call_v(Op::Get(enc(key)?))? {
            (Reply::Maybe(v), mut g) => v.map(|b| g.dec(&b)).transpose(),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `d[k] = v`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, key: &K, value: &V) -> Result<(), ProxyError> {
        self.base
            .call(Op::Set(enc(key)?, self.base.val(value)?))
            .map(drop)
    }

    /// `d.pop(k, None)`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>, ProxyError> {
        match self.base.call_v(Op::Del(enc(key)?))? {
            (Reply::Maybe(v), mut g) => v.map(|b| g.dec(&b)).transpose(),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `k in d`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool, ProxyError> {
        match self.base.call(Op::Contains(enc(key)?))? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }

    /// `len(d)`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn len(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::Len)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }

    /// `len(d) == 0`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn is_empty(&self) -> Result<bool, ProxyError> {
        Ok(self.len()? == 0)
    }

    /// `d.items()`, in no particular order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn items(&self) -> Result<Vec<(K, V)>, ProxyError> {
        match self.base.call_v(Op::Items)? {
            (Reply::Pairs(p), mut g) => p.iter().map(|(k, v)| Ok((dec(k)?, g.dec(v)?))).collect(),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `d.keys()`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn keys(&self) -> Result<Vec<K>, ProxyError> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// `d.clear()`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn clear(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Clear).map(drop)
    }

    /// Replaces `d[k]` (or `None` when absent) with `f(old)`, atomically
    /// with respect to every other writer: when another write lands
    /// between the read and the write-back, `f` runs again on the new
    /// value. Returns what was stored.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update_with(&self, key: &K, mut f: impl FnMut(Option<V>) -> V) -> Result<V, ProxyError>
    where
        V: Clone,
    {
        let k = enc(key)?;
        loop {
            let (version, old) = match self.base.call_v(Op::GetVersioned(k.clone()))? {
                (Reply::Versioned(Some((n, b))), mut g) => (n, Some(g.dec::<V>(&b)?)),
                (Reply::Versioned(None), _) => (0, None),
                (r, _) => return Err(unexpected(&r)),
            };
            let new = f(old);
            match self
                .base
                .call(Op::Cas(k.clone(), version, self.base.val(&new)?))?
            {
                Reply::Bool(true) => return Ok(new),
                Reply::Bool(false) => {}
                r => return Err(unexpected(&r)),
            }
        }
    }
}

/// A proxy to a list in the manager (`manager.list()`).
pub struct ListProxy<T> {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<fn() -> T>,
}
proxy_common!([Kind::List, std::any::type_name::<T>().into()] ListProxy<T> where T: Serialize + DeserializeOwned);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// `l.append(v)`.
    ///
    /// # Errors
    /// [`ProxyError`]: the server is gone or timed out.
    pub fn append(&self, value: &T) -> Result<(), ProxyError> {
        self.base.call(Op::Append(self.base.val(value)?)).map(drop)
    }

    /// `l.extend(vs)`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn extend<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<(), ProxyError>
    where
        T: 'a,
    {
        let vs = values
            .into_iter()
            .map(|v| self.base.val(v))
            .collect::<Result<_, _>>()?;
        self.base.call(Op::Extend(vs)).map(drop)
    }

    /// `l[i]` (negative counts from the end).
    ///
    /// # Errors
    /// [`RemoteError::IndexError`] out of range; as [`append`](Self::append).
    pub fn get(&self, i: i64) -> Result<T, ProxyError> {
        match self.base.call_v(Op::Index(i))? {
            (Reply::Bytes(b), mut g) => g.dec(&b),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `l[i] = v`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, i: i64, value: &T) -> Result<(), ProxyError> {
        self.base
            .call(Op::SetIndex(i, self.base.val(value)?))
            .map(drop)
    }

    /// `l.pop()` (`None`: the last) or `l.pop(i)`.
    ///
    /// # Errors
    /// As [`get`](Self::get) (an empty list is an `IndexError`).
    pub fn pop(&self, i: Option<i64>) -> Result<T, ProxyError> {
        match self.base.call_v(Op::Pop(i))? {
            (Reply::Bytes(b), mut g) => g.dec(&b),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `len(l)`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn len(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::Len)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }

    /// `len(l) == 0`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn is_empty(&self) -> Result<bool, ProxyError> {
        Ok(self.len()? == 0)
    }

    /// `l[:]`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn to_vec(&self) -> Result<Vec<T>, ProxyError> {
        match self.base.call_v(Op::All)? {
            (Reply::List(v), mut g) => v.iter().map(|b| g.dec(b)).collect(),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `l.clear()`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn clear(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Clear).map(drop)
    }

    /// Replaces `l[i]` with `f(old)` atomically (retried when the list
    /// changed in between). Returns what was stored.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update_with(&self, i: i64, mut f: impl FnMut(T) -> T) -> Result<T, ProxyError>
    where
        T: Clone,
    {
        loop {
            let (version, old) = match self.base.call_v(Op::IndexVersioned(i))? {
                (Reply::Versioned(Some((n, b))), mut g) => (n, g.dec::<T>(&b)?),
                (r, _) => return Err(unexpected(&r)),
            };
            let new = f(old);
            match self
                .base
                .call(Op::CasIndex(i, version, self.base.val(&new)?))?
            {
                Reply::Bool(true) => return Ok(new),
                Reply::Bool(false) => {}
                r => return Err(unexpected(&r)),
            }
        }
    }
}

/// A proxy to a namespace in the manager (`manager.Namespace()`): named
/// attributes of any serde type.
pub struct NamespaceProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Dict, "Namespace".into()] NamespaceProxy);

impl NamespaceProxy {
    /// `getattr(ns, name, None)`, decoded as `T`.
    ///
    /// # Errors
    /// [`ProxyError::Decode`] when the attribute has another type; the
    /// server is gone or timed out.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ProxyError> {
        match self.base.call_v(Op::Get(enc(name)?))? {
            (Reply::Maybe(v), mut g) => v.map(|b| g.dec(&b)).transpose(),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `setattr(ns, name, value)`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ProxyError> {
        self.base
            .call(Op::Set(enc(name)?, self.base.val(value)?))
            .map(drop)
    }

    /// `delattr(ns, name)`; whether it was there.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn remove(&self, name: &str) -> Result<bool, ProxyError> {
        match self.base.call(Op::Del(enc(name)?))? {
            Reply::Maybe(v) => Ok(v.is_some()),
            r => Err(unexpected(&r)),
        }
    }
}

/// A proxy to one value in the manager (`manager.Value(typecode, v)`, and
/// registered user types: [`Manager::register`](super::Manager::register)).
pub struct ValueProxy<T> {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<fn() -> T>,
}
proxy_common!([Kind::Value, std::any::type_name::<T>().into()] ValueProxy<T> where T: Serialize + DeserializeOwned);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// `v.value`.
    ///
    /// # Errors
    /// The server is gone or timed out; a value of another type.
    pub fn get(&self) -> Result<T, ProxyError> {
        match self.base.call_v(Op::Load)? {
            (Reply::Versioned(Some((_, b))), mut g) => g.dec(&b),
            (r, _) => Err(unexpected(&r)),
        }
    }

    /// `v.value = x`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn set(&self, value: &T) -> Result<(), ProxyError> {
        self.base.call(Op::Store(self.base.val(value)?)).map(drop)
    }

    /// Runs `f` on the value and stores the result, atomically (retried
    /// when another write lands in between): a method call on a registered
    /// type. Returns `f`'s result.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn update_with<R>(&self, mut f: impl FnMut(&mut T) -> R) -> Result<R, ProxyError> {
        loop {
            let (version, mut v) = match self.base.call_v(Op::Load)? {
                (Reply::Versioned(Some((n, b))), mut g) => (n, g.dec::<T>(&b)?),
                (r, _) => return Err(unexpected(&r)),
            };
            let out = f(&mut v);
            match self.base.call(Op::CasValue(version, self.base.val(&v)?))? {
                Reply::Bool(true) => return Ok(out),
                Reply::Bool(false) => {}
                r => return Err(unexpected(&r)),
            }
        }
    }
}

/// A proxy to a FIFO queue in the manager (`manager.Queue(maxsize)`).
pub struct QueueProxy<T> {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<fn() -> T>,
}
proxy_common!([Kind::Queue, std::any::type_name::<T>().into()] QueueProxy<T> where T: Serialize + DeserializeOwned);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_until(&self, value: &T, deadline: Option<Instant>) -> Result<(), ProxyError> {
        let v = self.base.val(value)?;
        self.base.blocking(
            deadline,
            |ms| Op::Put(v.clone(), ms),
            |r| match r {
                Reply::Bool(true) => Ok(Some(())),
                Reply::Bool(false) => Ok(None),
                r => Err(unexpected(&r)),
            },
        )
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T, ProxyError> {
        self.base.blocking_v(deadline, Op::QGet, |r, g| match r {
            Reply::Maybe(Some(b)) => g.dec(&b).map(Some),
            Reply::Maybe(None) => Ok(None),
            r => Err(unexpected(&r)),
        })
    }

    /// `q.put(v)`: waits while the queue is full (an error at once if the
    /// server goes away).
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn put(&self, value: &T) -> Result<(), ProxyError> {
        self.put_until(value, None)
    }

    /// `q.put(v, timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`] while still full; as [`put`](Self::put).
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<(), ProxyError> {
        self.put_until(value, Some(Instant::now() + timeout))
    }

    /// `q.put_nowait(v)`.
    ///
    /// # Errors
    /// [`ProxyError::Full`]; as [`put`](Self::put).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: &T) -> Result<(), ProxyError> {
        match self.put_until(value, Some(Instant::now())) {
            Err(ProxyError::Timeout) => Err(ProxyError::Full),
            r => r,
        }
    }

    /// `q.get()`: waits for an item.
    ///
    /// # Errors
    /// The server is gone or timed out; an item of another type.
    pub fn get(&self) -> Result<T, ProxyError> {
        self.get_until(None)
    }

    /// `q.get(timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`] while still empty; as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, ProxyError> {
        self.get_until(Some(Instant::now() + timeout))
    }

    /// `q.get_nowait()`.
    ///
    /// # Errors
    /// [`ProxyError::Empty`]; as [`get`](Self::get).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, ProxyError> {
        match self.get_until(Some(Instant::now())) {
            Err(ProxyError::Timeout) => Err(ProxyError::Empty),
            r => r,
        }
    }

    /// `q.qsize()`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn qsize(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::Len)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }
}

/// A proxy to a lock in the manager (`manager.Lock()`). It is held by the
/// process (the connection) that acquired it, and released by the server
/// if that process dies.
pub struct LockProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Lock, "Lock".into()] LockProxy);

impl LockProxy {
    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), ProxyError> {
        self.base.blocking(
            deadline,
            |ms| Op::Acquire(ms, 0),
            |r| match r {
                Reply::Bool(true) => Ok(Some(())),
                Reply::Bool(false) => Ok(None),
                r => Err(unexpected(&r)),
            },
        )
    }

    /// `lock.acquire()`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn acquire(&self) -> Result<(), ProxyError> {
        self.acquire_until(None)
    }

    /// `lock.acquire(timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`]; as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// `lock.acquire(blocking=False)`: whether it was taken.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<bool, ProxyError> {
        match self.acquire_until(Some(Instant::now())) {
            Ok(()) => Ok(true),
            Err(ProxyError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `lock.release()`.
    ///
    /// # Errors
    /// [`RemoteError::NotHeld`] when the lock is not held.
    pub fn release(&self) -> Result<(), ProxyError> {
        self.base.call(Op::ReleaseLock(0)).map(drop)
    }
}

/// A proxy to an event in the manager (`manager.Event()`).
pub struct EventProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Event, "Event".into()] EventProxy);

impl EventProxy {
    /// `e.set()`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn set(&self) -> Result<(), ProxyError> {
        self.base.call(Op::SetEvent).map(drop)
    }

    /// `e.clear()`.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn clear(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Clear).map(drop)
    }

    /// `e.is_set()`.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn is_set(&self) -> Result<bool, ProxyError> {
        match self.base.call(Op::IsSet)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), ProxyError> {
        self.base.blocking(deadline, Op::Wait, |r| match r {
            Reply::Bool(true) => Ok(Some(())),
            Reply::Bool(false) => Ok(None),
            r => Err(unexpected(&r)),
        })
    }

    /// `e.wait()`.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn wait(&self) -> Result<(), ProxyError> {
        self.wait_until(None)
    }

    /// `e.wait(timeout=t)`: `Err(Timeout)` when still clear (Python: `False`).
    ///
    /// # Errors
    /// [`ProxyError::Timeout`]; as [`set`](Self::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.wait_until(Some(Instant::now() + timeout))
    }
}

/// This thread's tag: with the client's id, the owner of an `RLock` or a
/// `Condition`'s lock (distinct for every thread of the process).
fn thread_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        // Relaxed: a unique number, ordered with nothing.
        static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TAG.with(|t| *t)
}

fn bool_reply(r: Reply) -> Result<Option<()>, ProxyError> {
    match r {
        Reply::Bool(true) => Ok(Some(())),
        Reply::Bool(false) => Ok(None),
        r => Err(unexpected(&r)),
    }
}

fn try_form(r: Result<(), ProxyError>) -> Result<bool, ProxyError> {
    match r {
        Ok(()) => Ok(true),
        Err(ProxyError::Timeout) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A proxy to a reentrant lock in the manager (`manager.RLock()`): held by
/// the thread that acquired it (this process's thread, as Python's), as
/// many times as it acquired it; released by the server if the process
/// dies.
pub struct RLockProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::RLock, "RLock".into()] RLockProxy);

impl RLockProxy {
    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), ProxyError> {
        let tag = thread_tag();
        self.base
            .blocking(deadline, |ms| Op::Acquire(ms, tag), bool_reply)
    }

    /// `rlock.acquire()`: once more when this thread holds it.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn acquire(&self) -> Result<(), ProxyError> {
        self.acquire_until(None)
    }

    /// `rlock.acquire(timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`]; as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// `rlock.acquire(blocking=False)`: whether it was taken.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<bool, ProxyError> {
        try_form(self.acquire_until(Some(Instant::now())))
    }

    /// `rlock.release()`: free once released as often as acquired.
    ///
    /// # Errors
    /// [`RemoteError::NotHeld`] when this thread does not hold it.
    pub fn release(&self) -> Result<(), ProxyError> {
        self.base.call(Op::ReleaseLock(thread_tag())).map(drop)
    }
}

/// A proxy to a condition variable in the manager (`manager.Condition()`),
/// with its own reentrant lock (Python's default).
pub struct ConditionProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Condition, "Condition".into()] ConditionProxy);

impl ConditionProxy {
    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), ProxyError> {
        let tag = thread_tag();
        self.base
            .blocking(deadline, |ms| Op::Acquire(ms, tag), bool_reply)
    }

    /// `cond.acquire()` (its lock, reentrant).
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn acquire(&self) -> Result<(), ProxyError> {
        self.acquire_until(None)
    }

    /// `cond.acquire(timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`]; as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// `cond.release()`.
    ///
    /// # Errors
    /// [`RemoteError::NotHeld`] when this thread does not hold the lock.
    pub fn release(&self) -> Result<(), ProxyError> {
        self.base.call(Op::ReleaseLock(thread_tag())).map(drop)
    }

    fn wait_for_ms(&self, ms: u64, wait: Option<Duration>) -> Result<bool, ProxyError> {
        let req = Request::Call {
            id: self.base.id,
            op: Op::CondWait(ms, thread_tag()),
        };
        match self.base.h.call_waiting(&req, wait)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }

    /// `cond.wait()`: releases the lock (however many times this thread
    /// holds it), waits for a notify, takes the lock back.
    ///
    /// # Errors
    /// [`RemoteError::NotHeld`] when this thread does not hold the lock;
    /// the server is gone.
    pub fn wait(&self) -> Result<(), ProxyError> {
        self.wait_for_ms(u64::MAX, None).map(drop)
    }

    /// `cond.wait(timeout=t)`: whether it was notified (`false`: timed
    /// out); the lock is held again either way.
    ///
    /// # Errors
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ProxyError> {
        let ms = u64::try_from(timeout.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .min(u64::MAX - 1);
        self.wait_for_ms(ms, Some(timeout))
    }

    /// `cond.wait_for(predicate, timeout)`: waits until `pred` holds
    /// (checked with the lock held), at most `timeout` in all (`None`: no
    /// limit); the last value of `pred`.
    ///
    /// # Errors
    /// As [`wait`](Self::wait); `pred`'s errors.
    pub fn wait_for(
        &self,
        mut pred: impl FnMut() -> Result<bool, ProxyError>,
        timeout: Option<Duration>,
    ) -> Result<bool, ProxyError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if pred()? {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return pred();
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// `cond.notify(n)`: wakes up to `n` waiters (the lock must be held).
    ///
    /// # Errors
    /// [`RemoteError::NotHeld`] when this thread does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<(), ProxyError> {
        self.base.call(Op::Notify(n as u64, thread_tag())).map(drop)
    }

    /// `cond.notify_all()`.
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Notify(u64::MAX, thread_tag())).map(drop)
    }
}

/// A proxy to a semaphore in the manager (`manager.Semaphore(value)`,
/// `manager.BoundedSemaphore(value)`). Permits are not owned: a process
/// that dies holding one does not give it back (as Python's).
pub struct SemaphoreProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Semaphore, "Semaphore".into()] SemaphoreProxy);

impl SemaphoreProxy {
    fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), ProxyError> {
        self.base
            .blocking(deadline, |ms| Op::Acquire(ms, 0), bool_reply)
    }

    /// `sem.acquire()`: waits for a permit.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn acquire(&self) -> Result<(), ProxyError> {
        self.acquire_until(None)
    }

    /// `sem.acquire(timeout=t)`.
    ///
    /// # Errors
    /// [`ProxyError::Timeout`]; as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), ProxyError> {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// `sem.acquire(blocking=False)`: whether a permit was taken.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<bool, ProxyError> {
        try_form(self.acquire_until(Some(Instant::now())))
    }

    /// `sem.release(n)`.
    ///
    /// # Errors
    /// [`RemoteError::TooManyReleases`] for a bounded semaphore released
    /// above its initial value.
    pub fn release(&self, n: usize) -> Result<(), ProxyError> {
        self.base.call(Op::SemRelease(n as u64)).map(drop)
    }

    /// The permits available now (`sem._value`).
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn value(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::SemValue)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }
}

/// A proxy to a barrier in the manager (`manager.Barrier(parties)`; no
/// `action`). A party that times out, or whose process dies while it
/// waits, breaks the barrier (the others get
/// [`RemoteError::BrokenBarrier`]), as a timeout does in Python.
pub struct BarrierProxy {
    pub(crate) base: Base,
    pub(crate) _t: PhantomData<()>,
}
proxy_common!([Kind::Barrier, "Barrier".into()] BarrierProxy);

impl BarrierProxy {
    fn wait_ms(&self, ms: u64, wait: Option<Duration>) -> Result<usize, ProxyError> {
        let op = Op::BarrierWait(ms);
        // The last party does not wait: try on the shared connection first
        // only when it can tell (it cannot), so always wait on its own.
        let req = Request::Call {
            id: self.base.id,
            op,
        };
        match self.base.h.call_waiting(&req, wait)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }

    /// `barrier.wait()`: this party's arrival index (0 to parties - 1).
    ///
    /// # Errors
    /// [`RemoteError::BrokenBarrier`]; the server is gone.
    pub fn wait(&self) -> Result<usize, ProxyError> {
        self.wait_ms(u64::MAX, None)
    }

    /// `barrier.wait(timeout=t)`: a timeout breaks the barrier.
    ///
    /// # Errors
    /// [`RemoteError::BrokenBarrier`] (also for this party's timeout); the
    /// server is gone.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, ProxyError> {
        let ms = u64::try_from(timeout.as_micros().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .min(u64::MAX - 1);
        self.wait_ms(ms, Some(timeout))
    }

    /// `barrier.abort()`: breaks it.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn abort(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Abort).map(drop)
    }

    /// `barrier.reset()`: back to empty and unbroken; its waiters get
    /// [`RemoteError::BrokenBarrier`].
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn reset(&self) -> Result<(), ProxyError> {
        self.base.call(Op::Reset).map(drop)
    }

    /// `barrier.parties`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn parties(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::Parties)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }

    /// `barrier.n_waiting`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn n_waiting(&self) -> Result<usize, ProxyError> {
        match self.base.call(Op::Len)? {
            Reply::U64(n) => Ok(n as usize),
            r => Err(unexpected(&r)),
        }
    }

    /// `barrier.broken`.
    ///
    /// # Errors
    /// The server is gone or timed out.
    pub fn broken(&self) -> Result<bool, ProxyError> {
        match self.base.call(Op::IsBroken)? {
            Reply::Bool(b) => Ok(b),
            r => Err(unexpected(&r)),
        }
    }
}
