//! The manager's wire protocol: one postcard-encoded [`Request`] per
//! message, one [`Reply`] back. Values travel as postcard bytes that only
//! the proxies decode; the server stores and compares bytes.
//!
//! Not API (the tests craft bad requests with it): no semver promise.

use serde::{Deserialize, Serialize};

use crate::RemoteError;

/// Largest request or reply (16 MiB): a longer one is refused before it is
/// read (socket) or ends the session (pipe).
pub const MAX_FRAME: usize = 16 << 20;

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A dict (also a `Namespace`: a dict with `String` keys).
    Dict,
    /// A list.
    List,
    /// One value (also a registered user type).
    Value,
    /// A FIFO queue.
    Queue,
    /// A lock.
    Lock,
    /// An event.
    Event,
    /// A reentrant lock (owned by a thread of a client).
    RLock,
    /// A condition variable with its own reentrant lock.
    Condition,
    /// A semaphore (bounded or not).
    Semaphore,
    /// A barrier.
    Barrier,
}

/// How many calls a local client makes over its socket before the server
/// sends it a pipe (with the reply to the last): a short-lived client (one
/// that connects to look something up, a child handed a proxy) never costs
/// a pipe; a busy one pays for it once.
pub const PIPE_AFTER: u32 = 4;

/// How a connection to the server is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    /// Over a shared-memory pipe (its descriptor comes with the welcome).
    Pipe {
        /// The client's id: its connections share lock ownership.
        client: u64,
    },
    /// Over this socket.
    Socket {
        /// As for `Pipe`.
        client: u64,
    },
}

/// A value to store: its postcard bytes and the objects the proxies inside
/// it refer to. While the value is stored, it holds one reference to each,
/// so a nested object lives as long as its container holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Val {
    /// The value.
    pub bytes: Vec<u8>,
    /// Ids of the objects the value's proxies refer to (one entry per
    /// proxy); usually empty.
    pub refs: Vec<u64>,
}

impl From<Vec<u8>> for Val {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            refs: Vec::new(),
        }
    }
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// A local client: its first [`PIPE_AFTER`] calls go over this socket;
    /// the reply to the last of them comes with a pipe's segment
    /// descriptor (`SCM_RIGHTS`): open its end `Second`, claim it, and send
    /// the next requests over it. The socket stays open for the session's
    /// life (its EOF tells the server the client is gone).
    Pipe {
        /// The server's id (random): a proxy is stored only into objects
        /// of its own server.
        server: u64,
    },
    /// Go on over the socket.
    Socket {
        /// As for `Pipe`.
        server: u64,
    },
    /// The server could not set the session up.
    Refused(String),
}

/// A request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A new object (a named one is created once and then found by name).
    Create {
        /// What it is.
        kind: Kind,
        /// The proxy's type (checked by [`Request::Attach`]).
        ty: String,
        /// A name, for an object any client can find.
        name: Option<String>,
        /// Initial value (a `Value`).
        init: Vec<u8>,
        /// Queue capacity (0: unbounded), a semaphore's initial value (its
        /// bound too when `init` is `[1]`), a barrier's parties.
        maxsize: u64,
    },
    /// One more reference to `id` for this client, after a type check.
    Attach {
        /// The object.
        id: u64,
        /// Expected kind.
        kind: Kind,
        /// Expected type.
        ty: String,
    },
    /// One reference to `id` held by no client (a proxy on its way to
    /// another process), taken over by that process's [`Request::Adopt`].
    Pin {
        /// The object.
        id: u64,
    },
    /// Takes over a [`Request::Pin`] reference, after a type check.
    Adopt {
        /// The object.
        id: u64,
        /// Expected kind.
        kind: Kind,
        /// Expected type.
        ty: String,
    },
    /// Drops one of this client's references to `id`.
    Release {
        /// The object.
        id: u64,
    },
    /// A method call.
    Call {
        /// The object.
        id: u64,
        /// The method.
        op: Op,
    },
    /// Stops the server.
    Shutdown,
    /// How many objects the server holds → `U64` (tests and leak checks).
    Count,
}

/// A method. Keys and values are postcard bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `d[k]` → `Maybe`.
    Get(Vec<u8>),
    /// `d[k]` with its version → `Versioned`.
    GetVersioned(Vec<u8>),
    /// `d[k] = v`.
    Set(Vec<u8>, Val),
    /// `d[k] = v` if `k`'s version is still `version` (0: absent) → `Bool`.
    Cas(Vec<u8>, u64, Val),
    /// `d.pop(k)` → `Maybe`.
    Del(Vec<u8>),
    /// `k in d` → `Bool`.
    Contains(Vec<u8>),
    /// `len(x)` (dict, list, queue; a barrier's `n_waiting`) → `U64`.
    Len,
    /// `d.items()` → `Pairs`.
    Items,
    /// `x.clear()` (dict, list, event).
    Clear,
    /// `l.append(v)`.
    Append(Val),
    /// `l.extend(vs)`.
    Extend(Vec<Val>),
    /// `l[i]` (negative from the end) → `Bytes`.
    Index(i64),
    /// `l[i]` with the list's version → `Versioned`.
    IndexVersioned(i64),
    /// `l[i] = v`.
    SetIndex(i64, Val),
    /// `l[i] = v` if the list's version is still `version` → `Bool`.
    CasIndex(i64, u64, Val),
    /// `l.pop(i)` (default: the last) → `Bytes`.
    Pop(Option<i64>),
    /// `l[:]` → `List`.
    All,
    /// `v.value` → `Versioned`.
    Load,
    /// `v.value = x`.
    Store(Val),
    /// `v.value = x` if the version is still `version` → `Bool`.
    CasValue(u64, Val),
    /// `lock.acquire(timeout=ms)` (`u64::MAX`: none) by thread `tag` of
    /// the client → `Bool` (lock, rlock, condition, semaphore).
    Acquire(u64, u64),
    /// `lock.release()` by thread `tag` (lock, rlock, condition).
    ReleaseLock(u64),
    /// `cond.wait(timeout=ms)` by thread `tag` → `Bool` (notified).
    CondWait(u64, u64),
    /// `cond.notify(n)` by thread `tag` (`u64::MAX`: all).
    Notify(u64, u64),
    /// `sem.release(n)`.
    SemRelease(u64),
    /// A semaphore's value → `U64`.
    SemValue,
    /// `barrier.wait(timeout=ms)` → `U64` (the arrival index).
    BarrierWait(u64),
    /// `barrier.abort()`.
    Abort,
    /// `barrier.reset()`.
    Reset,
    /// `barrier.parties` → `U64`.
    Parties,
    /// `barrier.broken` → `Bool`.
    IsBroken,
    /// `event.set()`.
    SetEvent,
    /// `event.is_set()` → `Bool`.
    IsSet,
    /// `event.wait(timeout=ms)` (`u64::MAX`: none) → `Bool`.
    Wait(u64),
    /// `q.put(v, timeout=ms)` (`u64::MAX`: none) → `Bool` (false: full).
    Put(Val, u64),
    /// `q.get(timeout=ms)` (`u64::MAX`: none) → `Maybe` (None: empty).
    QGet(u64),
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Done.
    Ok,
    /// A new object's id.
    Id(u64),
    /// A yes/no.
    Bool(bool),
    /// A number.
    U64(u64),
    /// A value.
    Bytes(Vec<u8>),
    /// A value or nothing.
    Maybe(Option<Vec<u8>>),
    /// A value with its version, or nothing.
    Versioned(Option<(u64, Vec<u8>)>),
    /// Values.
    List(Vec<Vec<u8>>),
    /// Key-value pairs.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// The server refused the request.
    Err(RemoteError),
    /// A reply whose values hold proxies (ids, one entry per proxy): each
    /// is one reference the server now counts for this client, taken over
    /// by the proxy decoded from the value (released by the client when
    /// none is).
    Granted(Box<Reply>, Vec<u64>),
}
