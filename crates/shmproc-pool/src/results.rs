//! What the serde calls return: [`AsyncResult`] (Python's `AsyncResult`)
//! and the `imap` iterators [`IMap`] and [`IMapUnordered`].

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::Inner;
use crate::error::PoolError;
use crate::handler::{Board, serve_inline};
use crate::job::{Job, JobState, Slot};

/// Decodes `count` values from `bytes`.
pub(crate) fn decode_chunk<R: DeserializeOwned>(
    mut bytes: &[u8],
    count: usize,
    out: &mut impl Extend<R>,
) -> Result<(), PoolError> {
    for k in 0..count {
        let (r, rest) = postcard::take_from_bytes::<R>(bytes)
            .map_err(|e| PoolError::Codec(format!("decoding result {k} of a chunk: {e}")))?;
        bytes = rest;
        out.extend(std::iter::once(r));
    }
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(PoolError::Codec(format!(
            "{} bytes after a chunk's {count} results",
            bytes.len()
        )))
    }
}

/// How a call's value is made from its finished job.
pub(crate) type Decode<T> = fn(&Job, &mut JobState) -> Result<T, PoolError>;

/// `Vec<R>`: every chunk's results in order.
pub(crate) fn decode_all<R: DeserializeOwned>(
    job: &Job,
    s: &mut JobState,
) -> Result<Vec<R>, PoolError> {
    let mut v = Vec::with_capacity(job.n_items);
    for c in 0..job.n_chunks {
        let Slot::Ready(b) = &s.slots[c] else {
            return Err(PoolError::Codec(format!("chunk {c} has no results")));
        };
        decode_chunk(b, job.items(c).len(), &mut v)?;
    }
    Ok(v)
}

/// `R`: the one result of an `apply`.
pub(crate) fn decode_one<R: DeserializeOwned>(job: &Job, s: &mut JobState) -> Result<R, PoolError> {
    let mut v: Vec<R> = decode_all(job, s)?;
    v.pop().ok_or_else(|| PoolError::Codec("no result".into()))
}

/// Success and error callbacks for the `*_async` calls, run in the parent
/// when the call finishes, before its [`AsyncResult`] reports ready
/// (Python's `callback` and `error_callback`): in the pool's result-handler
/// thread, or in a thread that serves the pool while it waits in
/// [`AsyncResult::get`] or a synchronous call. They must not block on the
/// pool's results.
pub struct Callbacks<T> {
    pub(crate) success: Option<OnSuccess<T>>,
    pub(crate) error: Option<OnError>,
}

/// A success callback.
type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
/// An error callback.
type OnError = Box<dyn FnOnce(&PoolError) + Send>;

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Self {
            success: None,
            error: None,
        }
    }
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("success", &self.success.is_some())
            .field("error", &self.error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called with the value when the call succeeds.
    pub fn on_success(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.success = Some(Box::new(f));
        self
    }

    /// Called with the error when the call fails.
    pub fn on_error(mut self, f: impl FnOnce(&PoolError) + Send + 'static) -> Self {
        self.error = Some(Box::new(f));
        self
    }
}

/// The finisher of a call with callbacks: decodes the value, calls the
/// right callback, and keeps the value for `get`.
pub(crate) fn finisher<T: Send + 'static>(
    decode: Decode<T>,
    cb: Callbacks<T>,
) -> Option<crate::job::Finisher> {
    if cb.success.is_none() && cb.error.is_none() {
        return None;
    }
    Some(Box::new(move |job: &Job| {
        let mut s = job.lock();
        if s.failed {
            let err = s.error.take();
            drop(s);
            if let (Some((_, e)), Some(f)) = (&err, cb.error) {
                f(e);
            }
            job.lock().error = err;
            return;
        }
        let value = decode(job, &mut s);
        drop(s);
        match value {
            Ok(v) => {
                if let Some(f) = cb.success {
                    f(&v);
                }
                job.lock().typed = Some(Box::new(v));
            }
            Err(e) => {
                if let Some(f) = cb.error {
                    f(&e);
                }
                let mut s = job.lock();
                s.failed = true;
                s.error = Some((0, e));
            }
        }
    }))
}

/// The result of an `apply_async`, `map_async` or `starmap_async` (Python's
/// `AsyncResult`): wait for it, poll it, or take its value.
pub struct AsyncResult<T> {
    job: Arc<Job>,
    decode: Decode<T>,
    /// The pool's board and workers: a thread that waits without a limit
    /// serves the call itself when nobody else does.
    pool: Server,
    _t: PhantomData<fn() -> T>,
}

/// What it takes to serve a pool's queued calls in any thread.
pub(crate) type Server = (Arc<Board>, Arc<Mutex<Inner>>);

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.job.lock().finished)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> AsyncResult<T> {
    pub(crate) fn new(job: Arc<Job>, decode: Decode<T>, pool: Server) -> Self {
        Self {
            job,
            decode,
            pool,
            _t: PhantomData,
        }
    }

    /// Serves the queued calls in this thread while nobody else does and
    /// the call is not finished (saves two hand-offs through the result
    /// handler thread when the caller waits at once).
    fn help(&self) {
        if !self.job.lock().finished {
            serve_inline(&self.pool.0, &self.pool.1, &self.job);
        }
    }

    /// Whether the call has finished (succeeded or failed).
    pub fn ready(&self) -> bool {
        self.job.lock().finished
    }

    /// Whether the call succeeded; `None` while it runs (Python raises
    /// `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        let s = self.job.lock();
        s.finished.then_some(!s.failed)
    }

    /// Waits until the call has finished.
    pub fn wait(&self) {
        self.help();
        let _ = self.job.wait_until(None, |s| s.finished);
    }

    /// Waits until the call has finished or `timeout` passes; whether it
    /// finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now() + timeout)
    }

    /// Waits until the call has finished or `deadline` passes; whether it
    /// finished.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.job
            .wait_until(Some(deadline), |s| s.finished)
            .is_some()
    }

    /// The value, once the call has finished.
    ///
    /// # Errors
    /// The call's error ([`PoolError::TaskPanicked`],
    /// [`PoolError::WorkerDied`], [`PoolError::Closed`] when the pool was
    /// terminated, ...).
    pub fn get(self) -> Result<T, PoolError> {
        self.help();
        self.take(None)
    }

    /// The value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when the call has not finished by then (the
    /// result stays pending: call again); otherwise as [`get`](Self::get),
    /// and [`PoolError::InvalidArgument`] once the value was taken.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.take(Some(Instant::now() + timeout))
    }

    /// The value, waiting until `deadline`.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, PoolError> {
        self.take(Some(deadline))
    }

    fn take(&self, deadline: Option<Instant>) -> Result<T, PoolError> {
        let mut s = self
            .job
            .wait_until(deadline, |s| s.finished)
            .ok_or(PoolError::Timeout)?;
        if s.failed {
            return Err(s.error.take().map(|(_, e)| e).unwrap_or_else(taken));
        }
        if s.slots.iter().any(|x| matches!(x, Slot::Taken)) {
            return Err(taken());
        }
        let v = match s.typed.take() {
            Some(v) => v.downcast::<T>().map(|b| *b).map_err(|_| taken()),
            None => (self.decode)(&self.job, &mut s),
        };
        for x in &mut s.slots {
            *x = Slot::Taken;
        }
        v
    }
}

fn taken() -> PoolError {
    PoolError::InvalidArgument("the result was already taken".into())
}

/// Shared state of the `imap` iterators.
struct Stream<R> {
    job: Arc<Job>,
    /// Decoded results not yet yielded.
    buf: VecDeque<R>,
    /// Items not yet yielded.
    left: usize,
    /// The error was yielded: the iterator has ended.
    ended: bool,
}

impl<R: DeserializeOwned> Stream<R> {
    fn new(job: Arc<Job>) -> Self {
        let left = job.n_items;
        Self {
            job,
            buf: VecDeque::new(),
            left,
            ended: false,
        }
    }

    /// The next value; `pick` chooses the chunk to decode next from the
    /// state (or `None` to wait).
    fn next_with(
        &mut self,
        deadline: Option<Instant>,
        pick: impl Fn(&JobState, usize) -> Next,
        next_chunk: &mut usize,
    ) -> Option<Result<R, PoolError>> {
        if let Some(r) = self.buf.pop_front() {
            self.left -= 1;
            return Some(Ok(r));
        }
        if self.ended || self.left == 0 {
            return None;
        }
        let at = *next_chunk;
        let got = self
            .job
            .wait_until(deadline, |s| !matches!(pick(s, at), Next::Wait));
        let Some(mut s) = got else {
            return Some(Err(PoolError::Timeout));
        };
        match pick(&s, at) {
            Next::Chunk(first) => {
                // Every chunk ready now, in the iterator's order, under one
                // lock (at most a few hundred).
                let mut taken = Vec::new();
                let mut c = Some(first);
                while let Some(k) = c {
                    if let Slot::Ready(b) = std::mem::replace(&mut s.slots[k], Slot::Taken) {
                        taken.push((k, b));
                    }
                    while s
                        .order
                        .front()
                        .is_some_and(|&k| matches!(s.slots[k], Slot::Taken))
                    {
                        s.order.pop_front();
                    }
                    *next_chunk += 1;
                    c = match pick(&s, *next_chunk) {
                        Next::Chunk(k) if taken.len() < 512 => Some(k),
                        _ => None,
                    };
                }
                drop(s);
                for (k, bytes) in taken {
                    if let Err(e) = decode_chunk(&bytes, self.job.items(k).len(), &mut self.buf) {
                        self.ended = true;
                        self.buf.clear();
                        return Some(Err(e));
                    }
                }
                self.left -= 1;
                self.buf.pop_front().map(Ok)
            }
            Next::Wait | Next::Failed => {
                self.ended = true;
                self.left = 0;
                let e = s.error.take().map(|(_, e)| e).unwrap_or_else(taken);
                Some(Err(e))
            }
        }
    }
}

/// The ordered iterator of [`Pool::imap`](crate::Pool::imap): yields each
/// result in input order as soon as it and those before it are back.
///
/// Its length is the number of items not yet yielded; after a failure it
/// yields the error once and ends.
pub struct IMap<R> {
    s: Stream<R>,
    next_chunk: usize,
}

impl<R> fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("left", &self.s.left)
            .finish_non_exhaustive()
    }
}

/// What an `imap` iterator does next.
enum Next {
    /// Decode this chunk.
    Chunk(usize),
    /// Yield the call's error.
    Failed,
    /// Wait for more results.
    Wait,
}

fn ordered(s: &JobState, at: usize) -> Next {
    // After a failure, the results before the failed chunk are still
    // yielded (they still run); the failed chunk's place yields the error.
    if s.failed && s.failed_chunk <= at {
        return Next::Failed;
    }
    match s.slots.get(at) {
        Some(Slot::Ready(_)) => Next::Chunk(at),
        Some(_) => Next::Wait,
        None => Next::Failed,
    }
}

fn unordered(s: &JobState, _at: usize) -> Next {
    match s
        .order
        .iter()
        .copied()
        .find(|&c| matches!(s.slots[c], Slot::Ready(_)))
    {
        Some(c) => Next::Chunk(c),
        None if s.failed => Next::Failed,
        None => Next::Wait,
    }
}

impl<R: DeserializeOwned> IMap<R> {
    pub(crate) fn new(job: Arc<Job>) -> Self {
        Self {
            s: Stream::new(job),
            next_chunk: 0,
        }
    }

    /// The next result, waiting at most `timeout` (Python's
    /// `next(timeout)`); `None` at the end.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] when it is not back by then (call again);
    /// the call's error.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, PoolError> {
        self.s
            .next_with(
                Some(Instant::now() + timeout),
                ordered,
                &mut self.next_chunk,
            )
            .transpose()
    }
}

impl<R: DeserializeOwned> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.s.next_with(None, ordered, &mut self.next_chunk)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.s.left, Some(self.s.left))
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for IMap<R> {}

/// The iterator of [`Pool::imap_unordered`](crate::Pool::imap_unordered):
/// yields results in the order they come back.
///
/// Its length is the number of items not yet yielded; after a failure it
/// yields the error once and ends.
pub struct IMapUnordered<R> {
    s: Stream<R>,
    taken: usize,
}

impl<R> fmt::Debug for IMapUnordered<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapUnordered")
            .field("left", &self.s.left)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> IMapUnordered<R> {
    pub(crate) fn new(job: Arc<Job>) -> Self {
        Self {
            s: Stream::new(job),
            taken: 0,
        }
    }

    /// The next result, waiting at most `timeout`; `None` at the end.
    ///
    /// # Errors
    /// As [`IMap::next_timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, PoolError> {
        self.s
            .next_with(Some(Instant::now() + timeout), unordered, &mut self.taken)
            .transpose()
    }
}

impl<R: DeserializeOwned> Iterator for IMapUnordered<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.s.next_with(None, unordered, &mut self.taken)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.s.left, Some(self.s.left))
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for IMapUnordered<R> {}
