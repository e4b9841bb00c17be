//! [`ObjQueue`]: Python's `Queue` of any object (feature `serde`).

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_shm::{Segment, SharedObject, Source};

use crate::bytes::ByteQueue;
use crate::error::{
    GetObjError, GetObjTimeoutError, PutObjError, PutObjTimeoutError, QueueError, TryGetObjError,
    TryPutObjError,
};

/// A queue of any `serde` type: Python's `multiprocessing.Queue`, which
/// takes any picklable object (feature `serde`).
///
/// Each value is encoded with `postcard` into one record of a [`ByteQueue`]:
/// records up to [`SLOT_SIZE`](Self::SLOT_SIZE) bytes travel inline, larger
/// ones through a side segment, so no slot size has to be chosen. The names
/// are the `Queue`'s: `put`, `get`, `try_put`, `get_timeout`, `qsize`, ...
/// For `Pod` data, [`Queue`](crate::Queue) is the zero-copy path.
///
/// The element type is not recorded in the segment: opening a queue with
/// another `T` than its producers use gives [`GetObjError::Decode`] for each
/// message that does not decode (the message is consumed, the queue stays
/// usable).
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_channel::ObjQueue;
/// let q = ObjQueue::<(u64, Option<String>)>::new(8)?;
/// q.put(&(7, Some("seven".to_owned())))?;
/// q.put(&(8, None))?;
/// assert_eq!(q.get()?, (7, Some("seven".to_owned())));
/// assert_eq!(q.qsize(), 1);
/// # Ok(()) }
/// ```
pub struct ObjQueue<T> {
    q: ByteQueue,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for ObjQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjQueue")
            .field("type", &std::any::type_name::<T>())
            .field("queue", &self.q)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> ObjQueue<T> {
    /// Bytes of encoded value a slot holds inline; longer values go through
    /// a side segment.
    pub const SLOT_SIZE: usize = 256;

    fn wrap(q: ByteQueue) -> Self {
        Self { q, _t: PhantomData }
    }

    /// An anonymous queue holding at most `maxsize` values.
    ///
    /// # Errors
    /// As [`ByteQueue::new`].
    pub fn new(maxsize: usize) -> Result<Self, QueueError> {
        ByteQueue::new(maxsize, Self::SLOT_SIZE).map(Self::wrap)
    }

    /// A named queue holding at most `maxsize` values.
    ///
    /// # Errors
    /// As [`ByteQueue::create`].
    pub fn create(name: &str, maxsize: usize) -> Result<Self, QueueError> {
        ByteQueue::create(name, maxsize, Self::SLOT_SIZE).map(Self::wrap)
    }

    /// Opens the named queue.
    ///
    /// # Errors
    /// As [`ByteQueue::open`].
    pub fn open(name: &str) -> Result<Self, QueueError> {
        ByteQueue::open(name).map(Self::wrap)
    }

    /// Opens the queue whose segment `fd` is.
    ///
    /// # Errors
    /// As [`ByteQueue::open`].
    pub fn open_fd(fd: OwnedFd) -> Result<Self, QueueError> {
        ByteQueue::open_fd(fd).map(Self::wrap)
    }

    /// Puts `value`, waiting for room.
    ///
    /// # Errors
    /// [`PutObjError::Encode`] (nothing sent), or the put's error (closed,
    /// corrupt).
    pub fn put(&self, value: &T) -> Result<(), PutObjError> {
        self.q.put_obj(value)
    }

    /// Puts `value` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// As [`put`](Self::put), or full.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: &T) -> Result<(), TryPutObjError> {
        self.q.try_put_obj(value)
    }

    /// Puts `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`put`](Self::put), or timed out.
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<(), PutObjTimeoutError> {
        self.q.put_obj_timeout(value, timeout)
    }

    /// Puts `value`, waiting for room until `deadline`.
    ///
    /// # Errors
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_deadline(&self, value: &T, deadline: Instant) -> Result<(), PutObjTimeoutError> {
        self.q.put_obj_deadline(value, deadline)
    }

    /// Takes the next value, waiting for one.
    ///
    /// # Errors
    /// [`GetObjError::Decode`] (the message is consumed), or the get's error
    /// (closed and drained, corrupt).
    pub fn get(&self) -> Result<T, GetObjError> {
        self.q.get_obj()
    }

    /// Takes the next value if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    /// As [`get`](Self::get), or empty.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetObjError> {
        self.q.try_get_obj()
    }

    /// Takes the next value, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get`](Self::get), or timed out.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetObjTimeoutError> {
        self.q.get_obj_timeout(timeout)
    }

    /// Takes the next value, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetObjTimeoutError> {
        self.q.get_obj_deadline(deadline)
    }

    /// Values in the queue now (exact; Python's `qsize`).
    pub fn qsize(&self) -> usize {
        self.q.qsize()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }

    /// Whether the queue is full now.
    pub fn full(&self) -> bool {
        self.q.full()
    }

    /// The most values it holds (`maxsize`).
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Closes the queue: puts fail, gets drain what is left, then report
    /// closed.
    pub fn close(&self) {
        self.q.close();
    }

    /// The byte queue underneath (its zero-copy `reserve`/`get_bytes_ref`).
    pub fn as_byte_queue(&self) -> &ByteQueue {
        &self.q
    }
}

impl<T: Serialize + DeserializeOwned> SharedObject for ObjQueue<T> {
    const WHAT: &'static str = "ObjQueue";
    type Error = QueueError;

    fn segment(&self) -> &Segment {
        self.q.segment()
    }

    fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        ByteQueue::open_source(source).map(Self::wrap)
    }
}
