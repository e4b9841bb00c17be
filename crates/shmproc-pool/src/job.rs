//! A serde call in the parent ([`Job`]): its encoded inputs, split into
//! chunks, and the encoded results as they come back; waited on by
//! `AsyncResult` and the `imap` iterators, filled by the result handler.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use shmproc_process::CodeRef;

use crate::error::PoolError;

/// The most chunks in one batch (the words of a batch's frames stay within
/// `wire::MAX_WORDS`).
pub(crate) const MAX_BATCH: usize = 512;

/// A chunk's result slot.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Not back yet.
    Pending,
    /// The chunk's encoded results.
    Ready(Vec<u8>),
    /// Decoded and handed out (by an `imap` iterator).
    Taken,
}

/// What is known of a job's results.
#[derive(Debug)]
pub(crate) struct JobState {
    pub(crate) slots: Vec<Slot>,
    /// Chunks back.
    pub(crate) done: usize,
    /// Chunks back, in the order they came (for `imap_unordered`).
    pub(crate) order: VecDeque<usize>,
    /// The first failure: the chunk it belongs to and the error (taken by
    /// whoever reports it).
    pub(crate) error: Option<(usize, PoolError)>,
    /// Whether the job failed (stays set once the error is taken).
    pub(crate) failed: bool,
    /// The error's chunk, kept after the error is taken.
    pub(crate) failed_chunk: usize,
    /// Every chunk is back or the job failed, and the callbacks ran.
    pub(crate) finished: bool,
    /// The decoded value, when a callback needed it first.
    pub(crate) typed: Option<Box<dyn Any + Send>>,
    /// Times each chunk was run again after its worker died.
    pub(crate) retries: Vec<u32>,
    /// Threads waiting in [`Job::wait_until`] (no wake-up without one).
    waiters: usize,
}

/// What runs once when a job finishes (decode, callbacks), in the result
/// handler's thread.
pub(crate) type Finisher = Box<dyn FnOnce(&Job) + Send>;

/// One serde call.
pub(crate) struct Job {
    pub(crate) runner: CodeRef,
    pub(crate) task: CodeRef,
    /// The items, encoded back to back.
    input: Vec<u8>,
    /// Item `i` is `input[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    pub(crate) chunksize: usize,
    pub(crate) n_items: usize,
    pub(crate) n_chunks: usize,
    pub(crate) state: Mutex<JobState>,
    pub(crate) cond: Condvar,
    finisher: Mutex<Option<Finisher>>,
    /// Mean nanoseconds per chunk (round trip), 0 until the first is back.
    avg_ns: AtomicU64,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("n_items", &self.n_items)
            .field("n_chunks", &self.n_chunks)
            .finish_non_exhaustive()
    }
}

impl Job {
    pub(crate) fn new(
        runner: CodeRef,
        task: CodeRef,
        input: Vec<u8>,
        offsets: Vec<usize>,
        chunksize: usize,
        finisher: Option<Finisher>,
    ) -> Job {
        let n_items = offsets.len() - 1;
        let n_chunks = n_items.div_ceil(chunksize);
        let finished = n_chunks == 0;
        Job {
            runner,
            task,
            input,
            offsets,
            chunksize,
            n_items,
            n_chunks,
            state: Mutex::new(JobState {
                slots: (0..n_chunks).map(|_| Slot::Pending).collect(),
                done: 0,
                order: VecDeque::new(),
                error: None,
                failed: false,
                failed_chunk: usize::MAX,
                finished,
                typed: None,
                retries: vec![0; n_chunks],
                waiters: 0,
            }),
            cond: Condvar::new(),
            finisher: Mutex::new(finisher),
            avg_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The item indices of chunk `c`.
    pub(crate) fn items(&self, c: usize) -> Range<usize> {
        let s = c * self.chunksize;
        s..(s + self.chunksize).min(self.n_items)
    }

    /// Chunk `c`'s encoded inputs.
    pub(crate) fn chunk_bytes(&self, c: usize) -> &[u8] {
        let r = self.items(c);
        &self.input[self.offsets[r.start]..self.offsets[r.end]]
    }

    /// Whether chunk `c` need not run: the job failed at a lower chunk.
    pub(crate) fn skips(&self, c: usize) -> bool {
        let s = self.lock();
        s.failed && c > s.failed_chunk
    }

    /// How many chunks of this job to send in one message: enough to cover
    /// about 200 µs of work, at most [`MAX_BATCH`], at least 1.
    pub(crate) fn batch_limit(&self) -> usize {
        match self.avg_ns.load(Ordering::Relaxed) {
            0 => 1,
            ns => (200_000 / ns).clamp(1, MAX_BATCH as u64) as usize,
        }
    }

    /// Records a round trip of `n` chunks that took `elapsed`.
    pub(crate) fn record_time(&self, n: usize, since: Instant) {
        let per = (since.elapsed().as_nanos() / n.max(1) as u128).max(1) as u64;
        let old = self.avg_ns.load(Ordering::Relaxed);
        let new = if old == 0 { per } else { (old * 3 + per) / 4 };
        self.avg_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// Chunks are back, each with its encoded results: filed under one
    /// lock, waiters woken once.
    pub(crate) fn complete(&self, chunks: impl IntoIterator<Item = (usize, Vec<u8>)>) {
        // Results still count after a failure: an ordered `imap` yields
        // those before the failed chunk.
        let mut s = self.lock();
        for (c, bytes) in chunks {
            if c >= s.slots.len() || !matches!(s.slots[c], Slot::Pending) {
                continue;
            }
            s.slots[c] = Slot::Ready(bytes);
            s.done += 1;
            s.order.push_back(c);
        }
        let all = s.done == self.n_chunks;
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            self.cond.notify_all();
        }
        if all {
            self.finish();
        }
    }

    /// Chunk `c` failed with `err`; the job fails (the first error stays).
    pub(crate) fn fail(&self, c: usize, err: PoolError) {
        let mut s = self.lock();
        if s.failed {
            // The failure at the lowest index is the one reported.
            if c < s.failed_chunk {
                s.failed_chunk = c;
                s.error = Some((c, err));
                if s.waiters > 0 {
                    self.cond.notify_all();
                }
            }
            return;
        }
        if s.finished {
            return;
        }
        s.failed = true;
        s.failed_chunk = c;
        s.error = Some((c, err));
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            self.cond.notify_all();
        }
        self.finish();
    }

    /// Runs the finisher (once) and marks the job finished.
    fn finish(&self) {
        let f = self
            .finisher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(f) = f {
            // A panicking callback must not take the result handler down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        }
        let mut s = self.lock();
        s.finished = true;
        let wake = s.waiters > 0;
        drop(s);
        if wake {
            self.cond.notify_all();
        }
    }

    /// Waits until `ready` holds or `deadline` passes; the state, or `None`
    /// at the deadline.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        ready: impl Fn(&JobState) -> bool,
    ) -> Option<MutexGuard<'_, JobState>> {
        let mut s = self.lock();
        if ready(&s) {
            return Some(s);
        }
        s.waiters += 1;
        let got = loop {
            match deadline {
                None => s = self.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    s = self
                        .cond
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            if ready(&s) {
                break true;
            }
        };
        s.waiters -= 1;
        got.then_some(s)
    }
}
