//! What the asynchronous calls return: [`AsyncResult`], [`IMap`] and
//! [`IMapUnordered`], the same methods as `shmproc_pool`'s. They drive the
//! pool (receive results, hand out chunks) while the caller waits in them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use shmproc_pool::PoolError;

use crate::driver::{Driver, SerdeJob};

/// Decodes `count` postcard-encoded values from `blob`.
pub(crate) fn decode_chunk<R: DeserializeOwned>(
    mut blob: &[u8],
    count: usize,
    out: &mut impl Extend<R>,
) -> Result<(), PoolError> {
    for k in 0..count {
        let (r, rest) = postcard::take_from_bytes::<R>(blob)
            .map_err(|e| PoolError::Codec(format!("decoding result {k} of a chunk: {e}")))?;
        out.extend([r]);
        blob = rest;
    }
    if !blob.is_empty() {
        return Err(PoolError::Codec(format!(
            "{} bytes after a chunk's {count} results",
            blob.len()
        )));
    }
    Ok(())
}

/// How an [`AsyncResult`] turns a settled job into its value.
pub(crate) type Decode<T> = fn(&mut SerdeJob) -> Result<T, PoolError>;

/// All results of a job, in input order; the failure at the lowest index.
pub(crate) fn decode_all<R: DeserializeOwned>(job: &mut SerdeJob) -> Result<Vec<R>, PoolError> {
    if let Some(e) = job
        .results
        .iter()
        .filter_map(|r| r.as_ref().and_then(|r| r.as_ref().err()))
        .min_by_key(|e| e.index())
    {
        return Err(e.to_pool_error());
    }
    let mut out = Vec::with_capacity(job.n_items);
    for c in 0..job.n_chunks() {
        let count = job.count(c);
        match job.results[c].take() {
            Some(Ok(blob)) => decode_chunk(&blob, count, &mut out)?,
            _ => return Err(PoolError::Codec(format!("chunk {c} has no result"))),
        }
    }
    Ok(out)
}

/// The one result of an `apply`.
pub(crate) fn decode_one<R: DeserializeOwned>(job: &mut SerdeJob) -> Result<R, PoolError> {
    decode_all::<R>(job)?
        .pop()
        .ok_or_else(|| PoolError::Codec("no result".into()))
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) and
/// [`Pool::map_async`](crate::Pool::map_async) (Python's `AsyncResult`).
pub struct AsyncResult<T> {
    driver: Rc<RefCell<Driver>>,
    job: u64,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(driver: Rc<RefCell<Driver>>, job: u64, decode: Decode<T>) -> Self {
        Self {
            driver,
            job,
            decode,
        }
    }

    fn settled(d: &Driver, job: u64) -> bool {
        d.job(job).is_none_or(SerdeJob::settled)
    }

    /// Whether the result is in (receives what has come first).
    pub fn ready(&self) -> bool {
        let mut d = self.driver.borrow_mut();
        d.poll();
        Self::settled(&d, self.job)
    }

    /// Whether the call succeeded, once [`ready`](Self::ready).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        let d = self.driver.borrow();
        let job = d.job(self.job)?;
        Some(
            job.results
                .iter()
                .all(|r| r.as_ref().is_some_and(Result::is_ok)),
        )
    }

    /// Waits until the result is in.
    pub fn wait(&self) {
        let _ = self.wait_deadline_inner(None);
    }

    /// Waits at most `timeout`; whether the result is in.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline_inner(Some(Instant::now() + timeout))
            .is_ok()
    }

    fn wait_deadline_inner(&self, deadline: Option<Instant>) -> Result<(), PoolError> {
        let job = self.job;
        self.driver
            .borrow_mut()
            .pump_until(deadline, |d| Self::settled(d, job))
    }

    /// Waits for the result.
    ///
    /// # Errors
    /// [`PoolError::TaskPanicked`], [`PoolError::Codec`],
    /// [`PoolError::Closed`] when the pool was dropped first.
    pub fn get(self) -> Result<T, PoolError> {
        self.get_deadline_inner(None)
    }

    /// [`get`](Self::get) waiting at most `timeout`
    /// ([`PoolError::Timeout`]; the call stays pending).
    ///
    /// # Errors
    /// As [`get`](Self::get), and [`PoolError::Timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        self.get_deadline_inner(Some(Instant::now() + timeout))
    }

    fn get_deadline_inner(&self, deadline: Option<Instant>) -> Result<T, PoolError> {
        self.wait_deadline_inner(deadline)?;
        let mut d = self.driver.borrow_mut();
        let job = d
            .job_mut(self.job)
            .ok_or_else(|| PoolError::InvalidArgument("the result was taken already".into()))?;
        let r = (self.decode)(job);
        d.abandon(self.job);
        r
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.abandon(self.job);
        }
    }
}

/// Python's `imap` iterator: results in input order.
pub struct IMap<R> {
    driver: Rc<RefCell<Driver>>,
    job: u64,
    next_chunk: usize,
    n_chunks: usize,
    remaining: usize,
    buf: VecDeque<R>,
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("job", &self.job)
            .field("remaining", &self.remaining)
            .finish()
    }
}

/// Takes chunk `c`'s result out of `job` once it is in.
fn take_chunk<R: DeserializeOwned>(
    driver: &Rc<RefCell<Driver>>,
    job: u64,
    c: usize,
    buf: &mut VecDeque<R>,
) -> Result<(), PoolError> {
    let mut d = driver.borrow_mut();
    let j = d
        .job_mut(job)
        .ok_or_else(|| PoolError::InvalidArgument("the job is gone".into()))?;
    let count = j.count(c);
    match j.results[c].take() {
        Some(Ok(blob)) => decode_chunk(&blob, count, buf),
        Some(Err(e)) => Err(e.to_pool_error()),
        None => Err(PoolError::Codec(format!("chunk {c} has no result"))),
    }
}

impl<R: DeserializeOwned> IMap<R> {
    pub(crate) fn new(driver: Rc<RefCell<Driver>>, job: u64) -> Self {
        let (n_chunks, remaining) = driver
            .borrow()
            .job(job)
            .map_or((0, 0), |j| (j.n_chunks(), j.n_items));
        Self {
            driver,
            job,
            next_chunk: 0,
            n_chunks,
            remaining,
            buf: VecDeque::new(),
        }
    }

    /// The next result, waiting at most `timeout`; `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] (the iterator stays usable), or the item's
    /// own error (then the iterator ends).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, PoolError> {
        self.next_deadline(Some(Instant::now() + timeout))
    }

    fn next_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<R>, PoolError> {
        if let Some(r) = self.buf.pop_front() {
            self.remaining -= 1;
            return Ok(Some(r));
        }
        if self.next_chunk >= self.n_chunks {
            return Ok(None);
        }
        let (job, c) = (self.job, self.next_chunk);
        self.driver.borrow_mut().pump_until(deadline, |d| {
            d.job(job).is_none_or(|j| j.results[c].is_some())
        })?;
        self.next_chunk += 1;
        if let Err(e) = take_chunk(&self.driver, job, c, &mut self.buf) {
            self.next_chunk = self.n_chunks;
            self.remaining = 0;
            self.buf.clear();
            return Err(e);
        }
        self.next_deadline(deadline)
    }
}

impl<R: DeserializeOwned> Iterator for IMap<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_deadline(None).transpose()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for IMap<R> {}

impl<R> Drop for IMap<R> {
    fn drop(&mut self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.abandon(self.job);
        }
    }
}

/// Python's `imap_unordered` iterator: results as they come back.
pub struct IMapUnordered<R> {
    driver: Rc<RefCell<Driver>>,
    job: u64,
    taken: usize,
    n_chunks: usize,
    remaining: usize,
    buf: VecDeque<R>,
}

impl<R> std::fmt::Debug for IMapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapUnordered")
            .field("job", &self.job)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<R: DeserializeOwned> IMapUnordered<R> {
    pub(crate) fn new(driver: Rc<RefCell<Driver>>, job: u64) -> Self {
        let (n_chunks, remaining) = driver
            .borrow()
            .job(job)
            .map_or((0, 0), |j| (j.n_chunks(), j.n_items));
        Self {
            driver,
            job,
            taken: 0,
            n_chunks,
            remaining,
            buf: VecDeque::new(),
        }
    }

    /// The next result, waiting at most `timeout`; `Ok(None)` at the end.
    ///
    /// # Errors
    /// As [`IMap::next_timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>, PoolError> {
        self.next_deadline(Some(Instant::now() + timeout))
    }

    fn next_deadline(&mut self, deadline: Option<Instant>) -> Result<Option<R>, PoolError> {
        if let Some(r) = self.buf.pop_front() {
            self.remaining -= 1;
            return Ok(Some(r));
        }
        if self.taken >= self.n_chunks {
            return Ok(None);
        }
        let job = self.job;
        self.driver.borrow_mut().pump_until(deadline, |d| {
            d.job(job).is_none_or(|j| !j.arrived.is_empty())
        })?;
        let c = self
            .driver
            .borrow_mut()
            .job_mut(job)
            .and_then(|j| j.arrived.pop_front())
            .ok_or_else(|| PoolError::InvalidArgument("the job is gone".into()))?;
        self.taken += 1;
        if let Err(e) = take_chunk(&self.driver, job, c, &mut self.buf) {
            self.taken = self.n_chunks;
            self.remaining = 0;
            self.buf.clear();
            return Err(e);
        }
        self.next_deadline(deadline)
    }
}

impl<R: DeserializeOwned> Iterator for IMapUnordered<R> {
    type Item = Result<R, PoolError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_deadline(None).transpose()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<R: DeserializeOwned> ExactSizeIterator for IMapUnordered<R> {}

impl<R> Drop for IMapUnordered<R> {
    fn drop(&mut self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.abandon(self.job);
        }
    }
}
