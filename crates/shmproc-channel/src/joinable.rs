//! [`JoinableQueue`]: a [`Queue`] that counts unfinished tasks.

use std::fmt;
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use shmproc_shm::sync::{Ordering, fence};
use shmproc_shm::{SegmentKind, Source};
use shmproc_sync::futex::{self, Deadline, SLICE};

use crate::error::{
    JoinTimeoutError, PutError, PutTimeoutError, QueueError, TaskDoneError, TryPutError,
};
use crate::queue::Queue;
use crate::ring::{RingHeader, uncount};

/// Python's `multiprocessing.JoinableQueue`: every [`put`](Self::put)
/// counts a task, [`task_done`](Self::task_done) marks one finished, and
/// [`join`](Self::join) waits until none is left (or
/// [`join_timeout`](Self::join_timeout), [`join_deadline`](Self::join_deadline)).
///
/// It dereferences to [`Queue`] for the getters and the state queries; puts
/// go through this type so that they are counted. A position skipped because
/// its producer died is un-counted; a message lost because its consumer died
/// mid-read stays counted (nobody can finish it): use
/// [`join_timeout`](Self::join_timeout) and [`Queue::abandoned_reads`] then.
///
/// # Examples
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_channel::JoinableQueue;
/// let q = JoinableQueue::<u32>::new(4)?;
/// q.put(1)?;
/// let _job = q.get()?;
/// q.task_done()?;
/// q.join(); // returns: every task is done
/// assert!(q.task_done().is_err());
/// # Ok(()) }
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.q)
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Pod> JoinableQueue<T> {
    /// An anonymous joinable queue that holds at most `capacity` values.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new(capacity: usize) -> Result<Self, QueueError> {
        Queue::make(None, SegmentKind::JOINABLE_QUEUE, capacity).map(|q| Self { q })
    }

    /// A named joinable queue that holds at most `capacity` values.
    ///
    /// # Errors
    /// As [`Queue::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self, QueueError> {
        Queue::make(Some(name), SegmentKind::JOINABLE_QUEUE, capacity).map(|q| Self { q })
    }

    /// Opens the named joinable queue.
    ///
    /// # Errors
    /// As [`Queue::open`] (a plain `Queue` segment is the wrong kind).
    pub fn open(name: &str) -> Result<Self, QueueError> {
        Queue::open_with(SegmentKind::JOINABLE_QUEUE, Source::Name(name)).map(|q| Self { q })
    }

    /// Opens the joinable queue behind `fd`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_fd(fd: OwnedFd) -> Result<Self, QueueError> {
        Self::open_source(Source::Fd(fd))
    }

    pub(crate) fn open_source(source: Source<'_>) -> Result<Self, QueueError> {
        Queue::open_with(SegmentKind::JOINABLE_QUEUE, source).map(|q| Self { q })
    }

    fn hdr(&self) -> &RingHeader {
        self.q.ring().header()
    }

    fn counted<E>(&self, put: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        // Counted before the message can be seen, so a fast consumer's
        // task_done never underflows. Relaxed: the publish orders it.
        self.hdr().unfinished.fetch_add(1, Ordering::Relaxed);
        let r = put();
        if r.is_err() {
            let _ = uncount(self.hdr());
        }
        r
    }

    /// [`Queue::put`], counting a task.
    ///
    /// # Errors
    /// As [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.counted(|| self.q.put(value))
    }

    /// [`Queue::put_timeout`], counting a task.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.counted(|| self.q.put_timeout(value, timeout))
    }

    /// [`Queue::put_deadline`], counting a task.
    ///
    /// # Errors
    /// As [`Queue::put_deadline`].
    pub fn put_deadline(&self, value: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        self.counted(|| self.q.put_deadline(value, deadline))
    }

    /// [`Queue::try_put`], counting a task.
    ///
    /// # Errors
    /// As [`Queue::try_put`].
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        self.counted(|| self.q.try_put(value))
    }

    /// [`Queue::put_many`], counting a task per value put.
    ///
    /// # Errors
    /// As [`Queue::put_many`].
    pub fn put_many(&self, values: &[T]) -> Result<usize, PutError<()>> {
        let mut n = 0;
        for v in values {
            match self.try_put(*v) {
                Ok(()) => n += 1,
                Err(TryPutError::Closed(_)) if n == 0 => return Err(PutError::Closed(())),
                Err(TryPutError::Corrupt(c)) if n == 0 => return Err(PutError::Corrupt(c)),
                Err(_) => break,
            }
        }
        Ok(n)
    }

    /// Marks one task finished.
    ///
    /// # Errors
    /// [`TaskDoneError`] when called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        uncount(self.hdr())
    }

    /// Tasks put and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.hdr().unfinished.load(Ordering::Relaxed)
    }

    /// Waits until every task put so far is marked done.
    pub fn join(&self) {
        // Without a deadline `join_until` returns only once none is left.
        let _ = self.join_until(Deadline::NEVER);
    }

    /// Waits at most `timeout` until every task is marked done
    /// ([`join_deadline`](Self::join_deadline) at now + `timeout`).
    ///
    /// # Errors
    /// [`JoinTimeoutError`] with the number still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_until(Deadline::after(timeout))
    }

    /// Waits until `deadline` for every task to be marked done.
    ///
    /// # Errors
    /// [`JoinTimeoutError`] with the number still unfinished.
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinTimeoutError> {
        self.join_until(Deadline::at(deadline))
    }

    fn join_until(&self, deadline: Deadline) -> Result<(), JoinTimeoutError> {
        let h = self.hdr();
        loop {
            // Acquire: pairs with the Release increment in `uncount`.
            let s0 = h.join_seq.load(Ordering::Acquire);
            // SeqCst, then a SeqCst fence: pairs with uncount's SeqCst CAS and
            // waiters load (either it sees us, or we see its zero).
            h.join_waiters.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // Acquire: pairs with uncount's CAS (the tasks' effects are visible).
            let left = h.unfinished.load(Ordering::Acquire);
            let slice = deadline.slice(SLICE);
            if left != 0 {
                if let Some(slice) = slice {
                    futex::wait(&h.join_seq, s0, slice);
                }
            }
            h.join_waiters.fetch_sub(1, Ordering::Relaxed);
            if left == 0 {
                return Ok(());
            }
            if slice.is_none() {
                return Err(JoinTimeoutError { unfinished: left });
            }
        }
    }
}
