//! Errors of the queues, and [`Corrupt`] (shared with the pipe, whose
//! errors are in `pipe/error.rs`).

use std::fmt;

use shmproc_shm::{SegmentError, SetupError};

/// Shared memory that no process following the protocol could have written:
/// a scribbled header, index or slot stamp. The operation did nothing
/// harmful (no out-of-bounds access, no endless spin) and reports this
/// instead; the queue should be considered broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("queue memory is corrupt: {what} (found {found:#x})")]
pub struct Corrupt {
    /// What was found inconsistent.
    pub what: &'static str,
    /// The offending value.
    pub found: u64,
}

impl Corrupt {
    pub(crate) const fn new(what: &'static str, found: u64) -> Self {
        Self { what, found }
    }
}

/// Creating or opening a queue failed: the workspace's one setup error,
/// [`SetupError`], under this crate's name.
pub type QueueError = SetupError;

/// Ring memory found inconsistent while opening (`?` in the open paths).
impl From<Corrupt> for SetupError {
    fn from(c: Corrupt) -> Self {
        SetupError::Corrupt {
            name: String::new(),
            what: c.what,
            found: c.found,
        }
    }
}

// ------------------------------------------------------------------ put
//
// One enum per form (crossbeam's SendError / TrySendError /
// SendTimeoutError): a `put` caller never matches `Full` or `Timeout`, a
// `try_put` caller never matches `Timeout`. The value comes back in every
// variant but `Corrupt`; `Debug` does not need `T: Debug`.

/// [`Queue::put`](crate::Queue::put) did not send; the value comes back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue was closed (Python raises `ValueError`).
    #[error("the queue is closed")]
    Closed(T),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(Corrupt),
}

/// [`Queue::try_put`](crate::Queue::try_put) did not send; the value comes back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryPutError<T> {
    /// The queue is full (Python's `queue.Full`).
    #[error("the queue is full")]
    Full(T),
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed(T),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(Corrupt),
}

/// [`Queue::put_timeout`](crate::Queue::put_timeout) or
/// [`put_deadline`](crate::Queue::put_deadline) did not send; the value
/// comes back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutTimeoutError<T> {
    /// The queue stayed full until the deadline (Python's `queue.Full`).
    #[error("timed out waiting for room in the queue")]
    Timeout(T),
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed(T),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(Corrupt),
}

impl<T> PutError<T> {
    /// The value that was not sent (none for [`Corrupt`](Self::Corrupt)).
    pub fn into_inner(self) -> Option<T> {
        match self {
            Self::Closed(v) => Some(v),
            Self::Corrupt(_) => None,
        }
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> TryPutError<T> {
    /// The value that was not sent (none for [`Corrupt`](Self::Corrupt)).
    pub fn into_inner(self) -> Option<T> {
        match self {
            Self::Full(v) | Self::Closed(v) => Some(v),
            Self::Corrupt(_) => None,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> PutTimeoutError<T> {
    /// The value that was not sent (none for [`Corrupt`](Self::Corrupt)).
    pub fn into_inner(self) -> Option<T> {
        match self {
            Self::Timeout(v) | Self::Closed(v) => Some(v),
            Self::Corrupt(_) => None,
        }
    }

    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Corrupt(c) => f.debug_tuple("Corrupt").field(c).finish(),
        }
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Corrupt(c) => f.debug_tuple("Corrupt").field(c).finish(),
        }
    }
}

impl<T> fmt::Debug for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Corrupt(c) => f.debug_tuple("Corrupt").field(c).finish(),
        }
    }
}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(v) => Self::Closed(v),
            PutError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(v) => Self::Closed(v),
            PutError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

/// Why a put (or get) stopped short of its deadline: what every form
/// reports (the crate-internal half of the per-form enums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The queue is closed (puts), or closed and drained (gets).
    Closed,
    /// The queue's memory is corrupt.
    Corrupt(Corrupt),
}

impl From<Corrupt> for Stop {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}

impl<T> PutError<T> {
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn stopped(s: Stop, v: T) -> Self {
        match s {
            Stop::Closed => Self::Closed(v),
            Stop::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

// ------------------------------------------------------------------ get

/// [`Queue::get`](crate::Queue::get) returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The queue was closed and is drained.
    #[error("the queue is closed and empty")]
    Closed,
    /// No memory to copy a [`ByteQueue`](crate::ByteQueue) message out of
    /// its side segment (the forms that return or fill a `Vec`); the
    /// message is consumed.
    #[error("cannot allocate {len} bytes for the message")]
    NoMemory {
        /// The message's length.
        len: u64,
    },
    /// The next message is longer than the buffer given to
    /// [`ByteQueue::get_bytes_into`](crate::ByteQueue::get_bytes_into)
    /// (Python's `BufferTooShort`, as
    /// [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into));
    /// it stays in the queue.
    #[error("the message is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The message's length.
        len: u64,
        /// The buffer's length.
        max: u64,
    },
    /// The queue's memory is corrupt (or the slot being read was taken away).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// [`Queue::try_get`](crate::Queue::try_get) returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// Nothing to take now (Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The queue was closed and is drained.
    #[error("the queue is closed and empty")]
    Closed,
    /// No memory to copy a [`ByteQueue`](crate::ByteQueue) message out of
    /// its side segment (the forms that return or fill a `Vec`); the
    /// message is consumed.
    #[error("cannot allocate {len} bytes for the message")]
    NoMemory {
        /// The message's length.
        len: u64,
    },
    /// The next message is longer than the buffer given to
    /// [`ByteQueue::get_bytes_into`](crate::ByteQueue::get_bytes_into)
    /// (Python's `BufferTooShort`, as
    /// [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into));
    /// it stays in the queue.
    #[error("the message is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The message's length.
        len: u64,
        /// The buffer's length.
        max: u64,
    },
    /// The queue's memory is corrupt (or the slot being read was taken away).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// [`Queue::get_timeout`](crate::Queue::get_timeout) or
/// [`get_deadline`](crate::Queue::get_deadline) returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// Nothing arrived before the deadline (Python's `queue.Empty`).
    #[error("timed out waiting for a message")]
    Timeout,
    /// The queue was closed and is drained.
    #[error("the queue is closed and empty")]
    Closed,
    /// No memory to copy a [`ByteQueue`](crate::ByteQueue) message out of
    /// its side segment (the forms that return or fill a `Vec`); the
    /// message is consumed.
    #[error("cannot allocate {len} bytes for the message")]
    NoMemory {
        /// The message's length.
        len: u64,
    },
    /// The next message is longer than the buffer given to
    /// [`ByteQueue::get_bytes_into`](crate::ByteQueue::get_bytes_into)
    /// (Python's `BufferTooShort`, as
    /// [`Connection::recv_bytes_into`](crate::Connection::recv_bytes_into));
    /// it stays in the queue.
    #[error("the message is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The message's length.
        len: u64,
        /// The buffer's length.
        max: u64,
    },
    /// The queue's memory is corrupt (or the slot being read was taken away).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

impl GetError {
    /// Whether the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn stopped(s: Stop) -> Self {
        match s {
            Stop::Closed => Self::Closed,
            Stop::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

impl TryGetError {
    /// Whether there was nothing to take.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Whether the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl GetTimeoutError {
    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the queue was closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl From<GetError> for TryGetError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => Self::Closed,
            GetError::NoMemory { len } => Self::NoMemory { len },
            GetError::TooLong { len, max } => Self::TooLong { len, max },
            GetError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => Self::Closed,
            GetError::NoMemory { len } => Self::NoMemory { len },
            GetError::TooLong { len, max } => Self::TooLong { len, max },
            GetError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

// ------------------------------------------------------------ ByteQueue

/// [`ByteQueue::put_bytes`](crate::ByteQueue::put_bytes) or
/// [`reserve`](crate::ByteQueue::reserve) did not happen: nothing was
/// enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutBytesError {
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed,
    /// The message is longer than [`MAX_MESSAGE_LEN`](crate::MAX_MESSAGE_LEN).
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The side segment of a message larger than a slot could not be
    /// created (`/dev/shm` full: `NoSpace`, too many files, ...); the cause
    /// is the [`source`](std::error::Error::source).
    #[error("cannot create the side segment of a large message")]
    Side(#[source] Box<SegmentError>),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// [`ByteQueue::try_put_bytes`](crate::ByteQueue::try_put_bytes) or
/// [`try_reserve`](crate::ByteQueue::try_reserve) did not happen: nothing
/// was enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryPutBytesError {
    /// The queue is full (Python's `queue.Full`).
    #[error("the queue is full")]
    Full,
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed,
    /// As [`PutBytesError::TooLarge`].
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// As [`PutBytesError::Side`].
    #[error("cannot create the side segment of a large message")]
    Side(#[source] Box<SegmentError>),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// [`ByteQueue::put_bytes_timeout`](crate::ByteQueue::put_bytes_timeout),
/// `_deadline` or [`reserve_timeout`](crate::ByteQueue::reserve_timeout)
/// did not happen: nothing was enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutBytesTimeoutError {
    /// The queue stayed full until the deadline.
    #[error("timed out waiting for room in the queue")]
    Timeout,
    /// The queue was closed.
    #[error("the queue is closed")]
    Closed,
    /// As [`PutBytesError::TooLarge`].
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The message length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// As [`PutBytesError::Side`].
    #[error("cannot create the side segment of a large message")]
    Side(#[source] Box<SegmentError>),
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

impl PutBytesError {
    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl TryPutBytesError {
    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl PutBytesTimeoutError {
    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

impl From<PutBytesError> for TryPutBytesError {
    fn from(e: PutBytesError) -> Self {
        match e {
            PutBytesError::Closed => Self::Closed,
            PutBytesError::TooLarge { len, max } => Self::TooLarge { len, max },
            PutBytesError::Side(s) => Self::Side(s),
            PutBytesError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

impl From<PutBytesError> for PutBytesTimeoutError {
    fn from(e: PutBytesError) -> Self {
        match e {
            PutBytesError::Closed => Self::Closed,
            PutBytesError::TooLarge { len, max } => Self::TooLarge { len, max },
            PutBytesError::Side(s) => Self::Side(s),
            PutBytesError::Corrupt(c) => Self::Corrupt(c),
        }
    }
}

/// [`WriteGuard::commit`](crate::WriteGuard::commit) did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The reserved slot was no longer this producer's at commit (another
    /// process wrote over the queue's memory; a live producer is never
    /// judged dead): the message was not sent.
    #[error("the reserved slot was taken before commit: message not sent")]
    Taken,
}

/// [`ByteQueue::put_obj`](crate::ByteQueue::put_obj) did not send (feature
/// `serde`). `E` is the put's error: [`PutBytesError`] for `put_obj`,
/// [`TryPutBytesError`] for `try_put_obj` ([`TryPutObjError`]),
/// [`PutBytesTimeoutError`] for `put_obj_timeout` and `put_obj_deadline`
/// ([`PutObjTimeoutError`]).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutObjError<E = PutBytesError> {
    /// The value could not be serialised (nothing was sent); the cause is
    /// the [`source`](std::error::Error::source).
    #[error("cannot encode the object")]
    Encode(#[source] postcard::Error),
    /// The put failed (nothing was sent).
    #[error(transparent)]
    Put(#[from] E),
}

/// [`ByteQueue::try_put_obj`](crate::ByteQueue::try_put_obj)'s error (feature `serde`).
#[cfg(feature = "serde")]
pub type TryPutObjError = PutObjError<TryPutBytesError>;

/// [`ByteQueue::put_obj_timeout`](crate::ByteQueue::put_obj_timeout)'s
/// error (feature `serde`).
#[cfg(feature = "serde")]
pub type PutObjTimeoutError = PutObjError<PutBytesTimeoutError>;

/// [`ByteQueue::get_obj`](crate::ByteQueue::get_obj) returned no object
/// (feature `serde`). `E` is the get's error: [`GetError`],
/// [`TryGetError`] ([`TryGetObjError`]) or [`GetTimeoutError`]
/// ([`GetObjTimeoutError`]).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetObjError<E = GetError> {
    /// A message was taken but is not a valid encoding of the requested
    /// type; it is consumed, and the queue stays usable. The cause is the
    /// [`source`](std::error::Error::source).
    #[error("cannot decode the message")]
    Decode(#[source] postcard::Error),
    /// The get failed.
    #[error(transparent)]
    Get(#[from] E),
}

/// [`ByteQueue::try_get_obj`](crate::ByteQueue::try_get_obj)'s error (feature `serde`).
#[cfg(feature = "serde")]
pub type TryGetObjError = GetObjError<TryGetError>;

/// [`ByteQueue::get_obj_timeout`](crate::ByteQueue::get_obj_timeout)'s
/// error (feature `serde`).
#[cfg(feature = "serde")]
pub type GetObjTimeoutError = GetObjError<GetTimeoutError>;

// -------------------------------------------------------- JoinableQueue

/// `task_done` was called more times than items were put (Python's
/// `ValueError: task_done() called too many times`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneError;

/// [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout) or
/// [`join_deadline`](crate::JoinableQueue::join_deadline) gave up with
/// tasks still unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out with {unfinished} unfinished tasks")]
pub struct JoinTimeoutError {
    /// Tasks put and not yet marked done when the deadline passed.
    pub unfinished: u64,
}
