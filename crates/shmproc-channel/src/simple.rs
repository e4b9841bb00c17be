//! [`SimpleQueue`]: the minimal queue.

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::{SegmentKind, Source};

use crate::error::{GetError, GetTimeoutError, PutError, QueueError};
use crate::queue::Queue;

/// Python's `multiprocessing.SimpleQueue`: put, get, empty, close.
///
/// Python's is unbounded; this one has [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)
/// slots (or the capacity given), and `put` waits for room.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_channel::SimpleQueue;
/// let q = SimpleQueue::<[u8; 16]>::new()?;
/// q.put(*b"hello, processes")?;
/// assert_eq!(&q.get()?, b"hello, processes");
/// assert!(q.empty());
/// # Ok(()) }
/// ```
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("queue", &self.q)
            .finish()
    }
}

impl<T: Pod> SimpleQueue<T> {
    /// Slots of a queue made by [`new`](Self::new) or [`create`](Self::create).
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// An anonymous simple queue.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<Self, QueueError> {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An anonymous simple queue that holds at most `capacity` values.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn with_capacity(capacity: usize) -> Result<Self, QueueError> {
        Queue::make(None, SegmentKind::SIMPLE_QUEUE, capacity).map(|q| Self { q })
    }

    /// A named simple queue.
    ///
    /// # Errors
    /// As [`Queue::create`].
    pub fn create(name: &str) -> Result<Self, QueueError> {
        Queue::make(
            Some(name),
            SegmentKind::SIMPLE_QUEUE,
            Self::DEFAULT_CAPACITY,
        )
        .map(|q| Self { q })
    }

    /// Opens the named simple queue.
    ///
    /// # Errors
    /// As [`Queue::open`].
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Self::open_source(Source::Name(name))
    }

    /// Opens the simple queue whose segment `fd` is.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, QueueError> {
        Self::open_source(Source::Fd(fd))
    }

    pub(crate) fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        Queue::open_with(SegmentKind::SIMPLE_QUEUE, source).map(|q| Self { q })
    }

    /// The name, for a named queue.
    pub fn name(&self) -> Option<&str> {
        self.q.name()
    }

    /// The underlying segment.
    pub fn segment(&self) -> &shmproc_shm::Segment {
        self.q.segment()
    }

    /// Puts `value`, waiting for room.
    ///
    /// # Errors
    /// [`PutError::Closed`], [`PutError::Corrupt`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.q.put(value)
    }

    /// Takes the next value, waiting for one.
    ///
    /// # Errors
    /// [`GetError::Closed`] once closed and drained, [`GetError::Corrupt`].
    pub fn get(&self) -> Result<T, GetError> {
        self.q.get()
    }

    /// Takes the next value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`], [`GetTimeoutError::Closed`],
    /// [`GetTimeoutError::Corrupt`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.q.get_timeout(timeout)
    }

    /// Takes the next value, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.q.get_deadline(deadline)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.q.empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.q.close();
    }

    /// The underlying queue.
    pub fn as_queue(&self) -> &Queue<T> {
        &self.q
    }
}
