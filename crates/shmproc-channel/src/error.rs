//! Errors of the queues, and [`Corrupt`] (shared with the pipe, whose
//! errors are in `pipe/error.rs`).

use shmproc_shm::SegmentError;

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

/// Creating or opening a queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The segment could not be created or opened (not found, wrong kind or
    /// element type, truncated, ...).
    #[error("cannot {op} queue: {source}")]
    Segment {
        /// `"create"`, `"open"` or `"share"`.
        op: &'static str,
        /// The segment layer's error.
        #[source]
        source: Box<SegmentError>,
    },
    /// The ring inside the segment is inconsistent.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The capacity is 0 or above [`MAX_CAPACITY`](crate::MAX_CAPACITY).
    #[error("invalid queue capacity {0}: must be 1..=2^30 (rounded up to a power of two)")]
    Capacity(usize),
}

impl QueueError {
    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(crate) fn segment(op: &'static str) -> impl FnOnce(SegmentError) -> Self {
        move |e| QueueError::Segment {
            op,
            source: Box::new(e),
        }
    }
}

/// A put did not happen; the value comes back (Python's `queue.Full`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError<T> {
    /// The queue is full (`try_put`, Python's `queue.Full`).
    #[error("the queue is full")]
    Full(T),
    /// The queue stayed full until the timeout (`put_timeout`).
    #[error("timed out waiting for room in the queue")]
    Timeout(T),
    /// The queue was closed (Python raises `ValueError`).
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
            Self::Full(v) | Self::Timeout(v) | Self::Closed(v) => Some(v),
            Self::Corrupt(_) => None,
        }
    }

    pub(crate) fn with<U>(self, v: U) -> PutError<U> {
        match self {
            Self::Full(_) => PutError::Full(v),
            Self::Timeout(_) => PutError::Timeout(v),
            Self::Closed(_) => PutError::Closed(v),
            Self::Corrupt(c) => PutError::Corrupt(c),
        }
    }
}

impl<T> From<Corrupt> for PutError<T> {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}

/// A [`ByteQueue`](crate::ByteQueue) put or reservation did not happen:
/// nothing was enqueued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutBytesError {
    /// The queue is full (`try_` forms).
    #[error("the queue is full")]
    Full,
    /// The queue stayed full until the timeout.
    #[error("timed out waiting for room in the queue")]
    Timeout,
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
    /// created (`/dev/shm` full: `NoSpace`, too many files, ...).
    #[error("cannot create the side segment of a large message: {0}")]
    Side(#[source] Box<SegmentError>),
    /// The reserved slot was no longer this producer's at
    /// [`commit`](crate::WriteGuard::commit) (another process wrote over the
    /// queue's memory; a live producer is never judged dead): the message
    /// was not sent.
    #[error("the reserved slot was taken before commit: message not sent")]
    Taken,
    /// The queue's memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// A get returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// Nothing to take (`try_get`, Python's `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// Nothing arrived before the timeout (`get_timeout`).
    #[error("timed out waiting for a message")]
    Timeout,
    /// The queue was closed and is drained.
    #[error("the queue is closed and empty")]
    Closed,
    /// The queue's memory is corrupt (or the slot being read was taken away).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// `task_done` was called more times than items were put (Python's
/// `ValueError: task_done() called too many times`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneError;

/// `join_timeout` gave up with tasks still unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out with {unfinished} unfinished tasks")]
pub struct JoinTimeout {
    /// Tasks put and not yet marked done when the timeout passed.
    pub unfinished: u64,
}

/// [`ByteQueue::put_obj`](crate::ByteQueue::put_obj) did not send (feature `serde`).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
pub enum PutObjError {
    /// The value could not be serialised (nothing was sent).
    #[error("cannot encode the object: {0}")]
    Encode(#[source] postcard::Error),
    /// The put failed (nothing was sent).
    #[error(transparent)]
    Put(#[from] PutBytesError),
}

/// [`ByteQueue::get_obj`](crate::ByteQueue::get_obj) returned no object
/// (feature `serde`).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
pub enum GetObjError {
    /// A message was taken but is not a valid encoding of the requested
    /// type; it is consumed, and the queue stays usable.
    #[error("cannot decode the message: {0}")]
    Decode(#[source] postcard::Error),
    /// The get failed.
    #[error(transparent)]
    Get(#[from] GetError),
}
