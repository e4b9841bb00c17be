//! The result handler: one thread in the parent that hands serde tasks to
//! the workers and takes their results back (Python's task and result
//! handler threads in one).
//!
//! Submitted calls queue their chunks on the [`Board`]. While the queue has
//! chunks or chunks are out, the handler holds the workers (the pool's
//! `Inner` lock; a `Pod` call waits for it, and the other way round) and:
//! - sends each worker a batch of chunks of one call (as many as cover
//!   about 200 µs of work, at most 64, fewer when the queue is short),
//!   every idle worker first, and a second batch per worker only while
//!   plenty is queued (so that a worker never waits for the parent, and the
//!   last chunks still spread over all the workers);
//! - sleeps in `poll` on the workers' sockets, their pidfds and its own poke
//!   socket (a submission while it sleeps);
//! - files each batch's results with their call, in the order they were
//!   sent;
//! - replaces a worker that died: the chunks of the batch it was running
//!   are run again (up to `max_retries` times each) or fail their call with
//!   [`PoolError::WorkerDied`]; the chunks of its second batch, which it
//!   never started, are queued again as they were.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmproc_shm::sync::real::Ordering;

use shmproc_shm::os;

use crate::Inner;
use crate::error::PoolError;
use crate::job::Job;
use crate::wire::{self, INLINE_MAX, MAX_MSG};
use crate::worker::{MSG_BATCH, MSG_RESULTS, TASK_OK, TASK_PANIC};

/// How long the handler sleeps before it checks the workers anyway (a
/// worker without a pidfd is only seen this way).
const CHECK_SLICE: Duration = Duration::from_millis(100);

/// Batches out per worker at most.
const FLIGHTS: usize = 2;

/// The queue of submitted chunks and the handler's flags.
#[derive(Debug, Default)]
pub(crate) struct Sched {
    pub(crate) queue: VecDeque<(Arc<Job>, usize)>,
    /// No more submissions (`close` or `terminate`).
    pub(crate) closed: bool,
    /// `terminate`: fail what is queued and out, now.
    pub(crate) terminating: bool,
    /// The pool is dropped: the handler thread ends.
    pub(crate) shutdown: bool,
    /// The handler holds (or waits for) the workers.
    pub(crate) running: bool,
    /// A poke is in the poke socket.
    poked: bool,
    /// Threads in [`Board::wait_idle`].
    idle_waiters: usize,
}

/// What the pool and its handler thread share.
#[derive(Debug)]
pub(crate) struct Board {
    sched: Mutex<Sched>,
    pub(crate) cond: Condvar,
    poke_tx: OwnedFd,
    poke_rx: OwnedFd,
}

impl Board {
    pub(crate) fn new() -> Result<Board, PoolError> {
        let (poke_tx, poke_rx) = os::socketpair_seqpacket().map_err(|source| PoolError::Os {
            op: "socketpair",
            source,
        })?;
        Ok(Board {
            sched: Mutex::new(Sched::default()),
            cond: Condvar::new(),
            poke_tx,
            poke_rx,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues every chunk of `job`; wakes the handler thread when `notify`
    /// (not when the caller serves it itself at once).
    pub(crate) fn submit(&self, job: &Arc<Job>, notify: bool) -> Result<(), PoolError> {
        let mut s = self.lock();
        if s.closed {
            return Err(PoolError::Closed);
        }
        s.queue
            .extend((0..job.n_chunks).map(|c| (Arc::clone(job), c)));
        self.poke(&mut s);
        drop(s);
        if notify {
            self.cond.notify_all();
        }
        Ok(())
    }

    /// Wakes the handler from `poll` (once per sleep).
    pub(crate) fn poke(&self, s: &mut Sched) {
        if s.running && !s.poked {
            s.poked = true;
            let _ = os::send_with_fds(self.poke_tx.as_fd(), &[1], &[]);
        }
    }

    /// Waits until the handler has nothing queued or out.
    pub(crate) fn wait_idle(&self) {
        let mut s = self.lock();
        s.idle_waiters += 1;
        while s.running || !s.queue.is_empty() {
            s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.idle_waiters -= 1;
    }

    /// The next batch: chunks of one call from the queue's front, at most
    /// `budget`; chunks after a call's failed chunk are dropped.
    fn take_batch(&self, budget: usize, workers: usize) -> Option<Batch> {
        let mut s = self.lock();
        while s.queue.front().is_some_and(|(j, c)| j.skips(*c)) {
            s.queue.pop_front();
        }
        let (job, c) = s.queue.pop_front()?;
        let fair = s.queue.len().div_ceil(workers).max(1);
        let limit = job.batch_limit().min(budget).min(fair);
        let mut bytes = job.chunk_bytes(c).len();
        let mut chunks = vec![c];
        while chunks.len() < limit {
            match s.queue.front() {
                Some((j, c2))
                    if Arc::ptr_eq(j, &job) && bytes + j.chunk_bytes(*c2).len() <= INLINE_MAX =>
                {
                    bytes += j.chunk_bytes(*c2).len();
                    chunks.push(*c2);
                    s.queue.pop_front();
                }
                _ => break,
            }
        }
        Some(Batch {
            id: 0,
            job,
            chunks,
            sent: Instant::now(),
        })
    }

    /// Puts chunks back at the queue's front, in their order.
    fn requeue(&self, job: &Arc<Job>, chunks: &[usize]) {
        let mut s = self.lock();
        for &c in chunks.iter().rev() {
            s.queue.push_front((Arc::clone(job), c));
        }
    }

    /// Fails every queued chunk's call with what `err` makes.
    fn fail_queued(&self, err: impl Fn() -> PoolError) {
        let queued: Vec<_> = self.lock().queue.drain(..).collect();
        for (job, c) in queued {
            job.fail(c, err());
        }
    }
}

/// Chunks of one call sent to a worker in one message.
#[derive(Debug)]
struct Batch {
    id: u64,
    job: Arc<Job>,
    chunks: Vec<usize>,
    sent: Instant,
}

/// The handler thread: serves while chunks are queued and nobody else
/// does; sends the workers their stop once the pool is closed and nothing
/// is left.
pub(crate) fn handler_main(board: Arc<Board>, inner: Arc<Mutex<Inner>>) {
    loop {
        {
            let mut s = board.lock();
            while !s.shutdown && (s.queue.is_empty() || s.running) {
                s = board.cond.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.shutdown {
                drop(s);
                board.fail_queued(|| PoolError::Closed);
                return;
            }
            s.running = true;
        }
        serve_turn(&board, &inner, None);
    }
}

/// Serves in the calling thread, for a call that waits for `job` at once
/// (`map`, `apply`): saves the two hand-offs to and from the handler thread.
/// Does nothing when someone serves already (the job is theirs to run).
pub(crate) fn serve_inline(board: &Board, inner: &Mutex<Inner>, job: &Job) {
    {
        let mut s = board.lock();
        if s.running {
            return;
        }
        s.running = true;
    }
    serve_turn(board, inner, Some(job));
}

/// One turn of serving by whoever set `running`: until nothing is queued or
/// out (or, with `until`, until that job finished and nothing is out); then
/// gives up `running`, leaving what is still queued to the handler thread.
fn serve_turn(board: &Board, inner: &Mutex<Inner>, until: Option<&Job>) {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.serve(board, until);
    let mut s = board.lock();
    if s.terminating {
        drop(s);
        board.fail_queued(|| PoolError::Closed);
        s = board.lock();
    }
    let idle = s.queue.is_empty();
    if idle || until.is_some() {
        s.running = false;
        if s.poked {
            // A poke that came after the last poll.
            let mut b = [0u8; 8];
            let _ = os::recv_with_fds(board.poke_rx.as_fd(), &mut b);
            s.poked = false;
        }
        if idle && s.closed {
            g.send_stop();
        }
        // `join` waits for this; the handler takes over what is left.
        if !idle || s.idle_waiters > 0 {
            board.cond.notify_all();
        }
    }
}

impl Inner {
    /// Runs queued chunks until none is queued or out (or, with `until`,
    /// until that job finished and none is out), or the pool terminates.
    fn serve(&mut self, board: &Board, until: Option<&Job>) {
        let n = self.workers.len();
        let mut flights: Vec<VecDeque<Batch>> = (0..n).map(|_| VecDeque::new()).collect();
        let mut eof = vec![false; n];
        let mut buf = vec![0u8; MAX_MSG];
        let mut next_id = 1u64;
        // A worker that died since the last turn shows in the first poll
        // (its pidfd, its socket) or fails its first send.
        let mut check_all = false;
        loop {
            if board.lock().terminating {
                for f in &mut flights {
                    for b in f.drain(..) {
                        for &c in &b.chunks {
                            b.job.fail(c, PoolError::Closed);
                        }
                    }
                }
                for b in self.serde_busy.iter() {
                    b.store(false, Ordering::Release);
                }
                return;
            }
            if check_all {
                for i in 0..n {
                    if !self.is_alive(i) {
                        self.worker_died(i, &mut flights[i], board);
                        eof[i] = false;
                    }
                }
                check_all = false;
            }
            // Every idle worker gets a batch first; a second one (so that
            // the worker never waits for the parent) only while plenty is
            // queued, which keeps the last chunks spread over the workers.
            let until_done = until.is_some_and(|j| j.lock().finished);
            for round in 0..FLIGHTS {
                if until_done {
                    break;
                }
                for i in 0..n {
                    if flights[i].len() > round || self.workers[i].is_none() || eof[i] {
                        continue;
                    }
                    if round > 0 && board.lock().queue.len() < 2 * n {
                        break;
                    }
                    let budget = if self.max_tasks == 0 {
                        usize::MAX
                    } else {
                        self.max_tasks.saturating_sub(self.tasks[i]) as usize
                    };
                    if budget == 0 {
                        continue;
                    }
                    let Some(mut batch) = board.take_batch(budget, n) else {
                        break;
                    };
                    batch.id = next_id;
                    next_id += 1;
                    if self.send_batch(i, &batch).is_err() {
                        // The worker is going: its death is seen below.
                        board.requeue(&batch.job, &batch.chunks);
                        eof[i] = true;
                        check_all = true;
                        continue;
                    }
                    self.tasks[i] += batch.chunks.len() as u64;
                    flights[i].push_back(batch);
                }
            }
            for (i, f) in flights.iter().enumerate() {
                self.serde_busy[i].store(!f.is_empty(), Ordering::Release);
            }
            if flights.iter().all(VecDeque::is_empty)
                && (until_done || board.lock().queue.is_empty())
            {
                return;
            }
            if self.workers.iter().all(Option::is_none) {
                board.fail_queued(|| PoolError::Os {
                    op: "restarting the pool's workers",
                    source: std::io::Error::other("no worker could be started"),
                });
                return;
            }

            // Sleep until a result, a death or a submission.
            let mut fds: Vec<BorrowedFd<'_>> = vec![board.poke_rx.as_fd()];
            let mut what: Vec<(usize, bool)> = vec![(usize::MAX, false)];
            for (i, w) in self.workers.iter().enumerate() {
                let Some(w) = w else { continue };
                if !eof[i] {
                    fds.push(w.sock.as_fd());
                    what.push((i, true));
                }
                if let Some(s) = w.process.sentinel() {
                    fds.push(s);
                    what.push((i, false));
                }
            }
            let ready = match os::poll_readable(&fds, Some(CHECK_SLICE)) {
                Ok(r) => r,
                Err(_) => vec![false; fds.len()],
            };
            drop(fds);
            if !ready.iter().any(|r| *r) {
                check_all = true;
            }
            for (k, &(i, is_sock)) in what.iter().enumerate() {
                if !ready[k] {
                    continue;
                }
                if i == usize::MAX {
                    let mut s = board.lock();
                    if s.poked {
                        let mut b = [0u8; 8];
                        let _ = os::recv_with_fds(board.poke_rx.as_fd(), &mut b);
                        s.poked = false;
                    }
                } else if !is_sock {
                    check_all = true;
                } else {
                    let Some(w) = &self.workers[i] else { continue };
                    match wire::recv_frame(&w.sock, &mut buf) {
                        Ok(Some(frame)) => {
                            if self.results(i, &frame, &mut flights[i]).is_err() {
                                // A worker that breaks the protocol is replaced.
                                let _ = w.process.kill();
                                eof[i] = true;
                                check_all = true;
                            }
                        }
                        Ok(None) | Err(_) => {
                            eof[i] = true;
                            check_all = true;
                        }
                    }
                }
            }
        }
    }

    /// Sends `batch` to worker `i`.
    fn send_batch(&self, i: usize, batch: &Batch) -> std::io::Result<()> {
        let Some(w) = &self.workers[i] else {
            return Err(std::io::Error::other("no worker"));
        };
        let mut words = vec![batch.id, batch.chunks.len() as u64];
        words.extend_from_slice(&batch.job.runner.to_words());
        words.extend_from_slice(&batch.job.task.to_words());
        let mut blob = Vec::new();
        for &c in &batch.chunks {
            let b = batch.job.chunk_bytes(c);
            words.extend_from_slice(&[batch.job.items(c).len() as u64, b.len() as u64]);
            blob.extend_from_slice(b);
        }
        wire::send_frame(w.sock.as_fd(), MSG_BATCH, &words, &blob)
    }

    /// Files a results frame from worker `i` with its batch.
    fn results(
        &self,
        _i: usize,
        frame: &wire::Frame,
        flights: &mut VecDeque<Batch>,
    ) -> Result<(), ()> {
        let Some(batch) = flights.front() else {
            return Err(());
        };
        let results = check_results(frame, batch.id, batch.chunks.len(), |k| {
            batch.chunks.get(k).map_or(0, |&c| batch.job.items(c).len())
        })?;
        let Some(batch) = flights.pop_front() else {
            return Err(());
        };
        let n = batch.chunks.len();
        batch.job.record_time(n, batch.sent);
        let mut ok = Vec::with_capacity(n);
        let mut failed = Vec::new();
        for (r, &c) in results.into_iter().zip(&batch.chunks) {
            let text = || String::from_utf8_lossy(r.bytes).into_owned();
            match r.status {
                TASK_OK => ok.push((c, r.bytes.to_vec())),
                TASK_PANIC => {
                    let index = batch.job.items(c).start + r.offset;
                    failed.push((
                        c,
                        PoolError::TaskPanicked {
                            message: text(),
                            index,
                        },
                    ));
                }
                _ => failed.push((c, PoolError::Codec(text()))),
            }
        }
        // The results first: an ordered `imap` yields those before a
        // failed chunk.
        batch.job.complete(ok);
        for (c, e) in failed {
            batch.job.fail(c, e);
        }
        Ok(())
    }

    /// Worker `i` died: its chunks are run again or fail their call; the
    /// worker is replaced.
    fn worker_died(&mut self, i: usize, flights: &mut VecDeque<Batch>, board: &Board) {
        let (pid, exitcode) = match &self.workers[i] {
            Some(w) => (w.process.pid(), w.process.exitcode()),
            None => (None, None),
        };
        // The batches after the first were never started: back as they were.
        while flights.len() > 1 {
            if let Some(b) = flights.pop_back() {
                board.requeue(&b.job, &b.chunks);
            }
        }
        if let Some(b) = flights.pop_front() {
            let mut again = Vec::new();
            for &c in &b.chunks {
                let mut s = b.job.lock();
                s.retries[c] += 1;
                let r = s.retries[c];
                drop(s);
                if r <= self.max_retries {
                    again.push(c);
                    self.retried += 1;
                } else {
                    b.job.fail(
                        c,
                        PoolError::WorkerDied {
                            pid: pid.unwrap_or_else(os::getpid),
                            exitcode,
                            chunk: b.job.items(c),
                        },
                    );
                }
            }
            board.requeue(&b.job, &again);
        }
        if self.workers[i].is_some() && self.replace(i).is_err() {
            self.workers[i] = None;
        }
    }
}

/// One chunk's entry in a results frame (see [`check_results`]).
#[derive(Debug)]
pub(crate) struct ChunkResult<'a> {
    /// `TASK_OK`, `TASK_PANIC`, or anything else (a codec failure).
    pub(crate) status: u64,
    /// `TASK_PANIC`: the panicking item's offset in its chunk (below the
    /// chunk's item count).
    pub(crate) offset: usize,
    /// The chunk's encoded results, or the failure's message.
    pub(crate) bytes: &'a [u8],
}

/// Checks a results frame, whose words a worker wrote, against the batch
/// it answers: batch `id` of `n` chunks, chunk `k` holding `items(k)`
/// items. Every length and offset is checked against what backs it (the
/// frame's blob, the chunk's items) before anything is filed, so a corrupt
/// frame is `Err`, never a panic, and allocates nothing sized by its words.
pub(crate) fn check_results(
    frame: &wire::Frame,
    id: u64,
    n: usize,
    items: impl Fn(usize) -> usize,
) -> Result<Vec<ChunkResult<'_>>, ()> {
    let w = &frame.words;
    if frame.kind != MSG_RESULTS
        || w.first() != Some(&id)
        || w.get(1) != Some(&(n as u64))
        || w.len() != n.checked_mul(3).and_then(|k| k.checked_add(2)).ok_or(())?
    {
        return Err(());
    }
    let mut out = Vec::with_capacity(n);
    let mut at = 0usize;
    for (k, r) in w.get(2..).unwrap_or_default().chunks_exact(3).enumerate() {
        let &[status, offset, len] = r else {
            return Err(());
        };
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .ok_or(())?;
        let bytes = frame.blob.get(at..end).ok_or(())?;
        at = end;
        let offset = usize::try_from(offset).map_err(|_| ())?;
        if status == TASK_PANIC && offset >= items(k) {
            return Err(());
        }
        out.push(ChunkResult {
            status,
            offset,
            bytes,
        });
    }
    if at != frame.blob.len() {
        return Err(());
    }
    Ok(out)
}
