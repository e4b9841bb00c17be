//! Process pools for shmproc (Python's `multiprocessing.Pool`), over shared
//! memory.
//!
//! ```no_run
//! use shmproc_pool::Pool;
//!
//! fn is_prime(n: u64) -> bool {
//!     n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
//! }
//!
//! let pool = Pool::new(4)?;
//! let numbers = [10_000_019u64, 10_000_033, 10_000_079, 10_000_081];
//! assert_eq!(pool.map(is_prime, numbers)?, [true, false, true, false]);
//! for r in pool.imap(is_prime, 10_000_000..10_001_000u64)? {
//!     let _prime: bool = r?;
//! }
//! # Ok::<(), shmproc_pool::PoolError>(())
//! ```
//!
//! Task functions are plain `fn` items (or non-capturing closures, which
//! coerce to `fn`): a worker finds them by a [`CodeRef`], checked against
//! the executable's identity and the `fn` type, under every start method.
//!
//! # Two paths
//! - **Serde calls** ([`Pool::map`], [`imap`](Pool::imap),
//!   [`imap_unordered`](Pool::imap_unordered), [`starmap`](Pool::starmap),
//!   [`apply`](Pool::apply) and the `*_async` forms returning
//!   [`AsyncResult`]): items and results are any serde types, encoded with
//!   postcard once, in the caller. A **result-handler thread** (Python's task
//!   and result handlers in one) sends each worker a batch of chunks of one
//!   call at a time, sized to about 200 µs of work (at most 64 chunks), keeps
//!   two batches out per worker so that none waits for the parent, sleeps in
//!   `poll` on the workers' sockets and pidfds, files results with their
//!   call, and runs the callbacks. A batch or result larger than 48 KiB
//!   travels in an anonymous shared segment.
//! - **`Pod` arrays in place** ([`Pool::map_into`], [`Pool::map_slices`],
//!   [`Pool::map_pod`]): each worker is sent *one* message per call (not one
//!   per task) with the input and output arrays and a done flag per chunk as
//!   descriptors; workers claim chunks (index ranges) with one
//!   compare-and-swap each on a shared cursor, and the task reads its input
//!   and writes its results in the shared arrays themselves (a copy path
//!   when input and output are one segment). A worker maps a chunk's pages
//!   in 1 MiB blocks the first time it meets them (`MADV_POPULATE_*`, not a
//!   fault per page), keeps the arrays of its last four calls mapped (so a
//!   repeated call on the same arrays faults nothing in) for as long as the
//!   pool's process maps them too (checked every 2 s while idle, through
//!   `/proc/<pid>/maps`); only the call's last chunk wakes the pool. The control block is a
//!   `ShmSlice<u64>`: word 0 the cursor (`job << 32 | next chunk`), word 1
//!   the completion futex word (woken by the call's last chunk only), word
//!   2 the count of chunks done, words `8 + 2i`, `9 + 2i` worker `i`'s state
//!   (`chunks done << 32 | chunk held + 1`, bit 31 while the chunk is only
//!   *pending*) and the job it works on.
//!
//! # Crashes
//! A dead worker (SIGKILL, OOM, abort) is seen through its pidfd, its
//! socket or `Process::is_alive`, replaced, and its chunk run again by the
//! replacement (at most [`PoolBuilder::max_retries`] times per chunk, one
//! by default) or its call failed with [`PoolError::WorkerDied`] (pid, exit code or
//! signal, the chunk's range); the pool serves the next call either way. In
//! the `Pod` path a worker stores the chunk it is about to claim as
//! *pending* before its compare-and-swap, so a worker killed right after its
//! claim still names its chunk; the done flags tell a finished chunk from a
//! lost one. That protocol (`claim.rs`) is model-checked with loom, a
//! worker dying at each of its crash points (`tests/loom_pool.rs`). In the serde path the handler knows which batch each worker
//! holds; the chunks of a second batch it never started are queued again as
//! they were. A **panicking task** fails its call with
//! [`PoolError::TaskPanicked`] (message, item index); the worker serves on.
//!
//! The two paths share the workers: a `Pod` call waits while serde work is
//! out, and the other way round.
#![deny(unsafe_code)]

#[cfg(not(shmproc_loom))]
mod claim;
/// Not API: the claim protocol, for its loom model (`tests/loom_pool.rs`).
#[cfg(shmproc_loom)]
#[doc(hidden)]
pub mod claim;
mod error;
mod fuzzing;
mod handler;
mod inplace;
mod job;
mod results;
mod runners;
mod wire;
mod worker;

use shmproc_shm::sync::real::{AtomicU64, Ordering};
use std::borrow::Borrow;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::PoolError;
pub use results::{AsyncResult, Callbacks, IMap, IMapUnordered};

/// What the fuzz targets (`fuzz/`) and their replay tests reach; not part
/// of the public API.
#[doc(hidden)]
pub mod __private {
    /// The `pool_frames` fuzz target: see `src/fuzzing.rs`.
    pub fn pool_frames(data: &[u8]) {
        crate::fuzzing::pool_frames(data);
    }
}
use shmproc_process::{
    CodeRef, Context, Pid, Process, StarFn, StartMethod, default_context, get_context,
};
use shmproc_shm::transfer::{Packer, PassAs, Transfer};
use shmproc_shm::{Pod, ShmSlice, os};

use handler::Board;
use job::Job;
use runners::{InitRunner, Runner, TaskRunner};
use worker::{
    CURSOR, HEADER_WORDS, Init, MSG_INIT_FAILED, MSG_JOB, MSG_PANIC, MSG_READY, MSG_STOP, NO_CHUNK,
    PENDING, SLOTS, Sock, busy_index, flag, state_index, word,
};

/// How long the pool sleeps on the completion futex before it checks the
/// workers again.
const WATCH_SLICE: Duration = Duration::from_millis(20);

/// How long a new call waits for the workers of the last one to leave their
/// claim loops (a few instructions each) before it replaces one that did not.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);

/// An initializer as the builder keeps it: packed once, cloned into every
/// worker's start.
#[derive(Debug)]
struct InitSpec {
    runner: CodeRef,
    f: CodeRef,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl InitSpec {
    fn for_worker(&self) -> Result<Init, PoolError> {
        Ok(Init {
            runner: self.runner,
            f: self.f,
            payload: self.payload.clone(),
            fds: self
                .fds
                .iter()
                .map(|fd| fd.try_clone())
                .collect::<Result<_, _>>()
                .map_err(|source| PoolError::Os { op: "dup", source })?,
        })
    }
}

/// Builds a [`Pool`]: `Pool::builder().processes(4).start_method(m).build()`.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    processes: Option<usize>,
    context: Option<Context>,
    max_retries: u32,
    max_tasks: u64,
    init: Option<Result<Arc<InitSpec>, String>>,
}

impl PoolBuilder {
    /// The number of workers (default: [`shmproc_process::available_cpu_count`]).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// The context the workers are started with.
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    /// The start method of the workers (its default context).
    pub fn start_method(self, m: StartMethod) -> Self {
        self.context(get_context(m))
    }

    /// How many times a chunk whose worker died is run again (default 1;
    /// 0: the call fails at once with [`PoolError::WorkerDied`]).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Python's `maxtasksperchild`: a worker leaves after this many tasks
    /// (chunks) and a fresh one takes its place (0: never, the default).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = n;
        self
    }

    /// Python's `initializer` and `initargs`: `f(args)` runs once in each
    /// worker, before its first task (in a replacement worker too). The
    /// arguments travel as a [`Process`] target's do (shared objects by
    /// handle). A panicking initializer fails [`build`](Self::build) (or the
    /// call that needed a replacement) with [`PoolError::Initializer`].
    pub fn initializer<A: Transfer + 'static, P: PassAs<A>>(mut self, f: fn(A), args: P) -> Self {
        let runner: InitRunner = runners::init_runner::<A>;
        let spec = (|| -> Result<InitSpec, String> {
            let mut p = Packer::new();
            args.pack_as(&mut p).map_err(|e| e.to_string())?;
            let (payload, fds) = p.into_parts();
            Ok(InitSpec {
                runner: CodeRef::of(runner).map_err(|e| e.to_string())?,
                f: CodeRef::of(f).map_err(|e| e.to_string())?,
                payload,
                fds,
            })
        })();
        self.init = Some(spec.map(Arc::new));
        self
    }

    /// Starts the workers and waits until each has run the initializer and
    /// is ready.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] for zero processes or initializer
    /// arguments that cannot be packed; [`PoolError::Initializer`]; the
    /// error of creating the control block or starting a worker.
    pub fn build(self) -> Result<Pool, PoolError> {
        let n = self
            .processes
            .unwrap_or_else(shmproc_process::available_cpu_count)
            .max(usize::from(self.processes.is_none()));
        if n == 0 {
            return Err(PoolError::InvalidArgument(
                "processes must be at least 1".into(),
            ));
        }
        let init = match self.init {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(e)) => {
                return Err(PoolError::InvalidArgument(format!("initializer: {e}")));
            }
        };
        let ctx = self.context.unwrap_or_else(default_context);
        let control = Arc::new(ShmSlice::new(SLOTS + 2 * n, 0u64)?);
        let mut inner = Inner {
            ctx,
            control: Arc::clone(&control),
            workers: (0..n).map(|_| None).collect(),
            job: 0,
            closed: false,
            stopped: false,
            max_retries: self.max_retries,
            max_tasks: self.max_tasks,
            tasks: vec![0; n],
            init,
            retried: 0,
            pids: Arc::new(Mutex::new(vec![None; n])),
            serde_busy: (0..n).map(|_| AtomicBool::new(false)).collect(),
        };
        let pids = Arc::clone(&inner.pids);
        let serde_busy = Arc::clone(&inner.serde_busy);
        // Start them all, then wait for each: their starts overlap.
        let mut started = Vec::with_capacity(n);
        for i in 0..n {
            started.push(inner.start_worker(i)?);
        }
        for (i, w) in started.into_iter().enumerate() {
            inner.install(i, w)?;
        }
        let inner = Arc::new(Mutex::new(inner));
        let board = Arc::new(Board::new()?);
        let handler = {
            let (b, i) = (Arc::clone(&board), Arc::clone(&inner));
            std::thread::Builder::new()
                .name("shmproc-pool-handler".into())
                .spawn(move || handler::handler_main(b, i))
                .map_err(|source| PoolError::Os {
                    op: "starting the result handler thread",
                    source,
                })?
        };
        Ok(Pool {
            inner,
            pids,
            control,
            serde_busy,
            board,
            handler: Mutex::new(Some(handler)),
            pod_scratch: Mutex::new(ScratchArrays::new()),
        })
    }
}

#[derive(Debug)]
struct Worker {
    process: Process,
    sock: OwnedFd,
}

#[derive(Debug)]
struct Inner {
    ctx: Context,
    control: Arc<ShmSlice<u64>>,
    workers: Vec<Option<Worker>>,
    job: u64,
    closed: bool,
    /// The workers were told to stop.
    stopped: bool,
    max_retries: u32,
    /// `maxtasksperchild` (0: none).
    max_tasks: u64,
    /// Tasks (chunks) handed to each slot's current worker.
    tasks: Vec<u64>,
    init: Option<Arc<InitSpec>>,
    /// Chunks run again after their worker died, since the pool started.
    retried: u64,
    /// The workers' pids, readable while a call runs.
    pids: Arc<Mutex<Vec<Option<Pid>>>>,
    /// Per slot: the result handler has serde tasks out with its worker.
    serde_busy: Arc<[AtomicBool]>,
}

/// A pool of worker processes (Python's `multiprocessing.Pool`). See the
/// [crate docs](crate) for the two paths (serde calls, `Pod` arrays in
/// place) and how crashes are handled.
///
/// Dropping the pool terminates and joins its workers.
#[derive(Debug)]
pub struct Pool {
    inner: Arc<Mutex<Inner>>,
    pids: Arc<Mutex<Vec<Option<Pid>>>>,
    control: Arc<ShmSlice<u64>>,
    serde_busy: Arc<[AtomicBool]>,
    board: Arc<Board>,
    handler: Mutex<Option<JoinHandle<()>>>,
    /// `map_pod`'s shared arrays, by item types.
    pod_scratch: Mutex<ScratchArrays>,
}

/// An input and an output array.
type ArrayPair<T, R> = (Arc<ShmSlice<T>>, Arc<ShmSlice<R>>);

/// `map_pod`'s arrays, kept between calls (see `Pool::pod_arrays`).
type ScratchArrays =
    std::collections::HashMap<(std::any::TypeId, std::any::TypeId), Box<dyn std::any::Any + Send>>;

/// A job message's part after the header, and its descriptors.
struct JobMsg {
    tail: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// One job's fixed part.
struct JobSpec {
    runner: CodeRef,
    task: CodeRef,
    len: usize,
    chunksize: usize,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
    aliased: bool,
}

impl Pool {
    /// A pool of `n` workers, default context.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(n: usize) -> Result<Pool, PoolError> {
        Self::builder().processes(n).build()
    }

    /// A builder: processes, context or start method, retries.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            context: None,
            max_retries: 1,
            max_tasks: 0,
            init: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.lock().workers.len()
    }

    /// The current workers' pids (a replaced worker's successor in its
    /// place); callable while another thread's call runs.
    pub fn pids(&self) -> Vec<Pid> {
        self.pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .copied()
            .collect()
    }

    /// The pids of the workers that hold a chunk right now (running a
    /// call's task); callable while another thread's call runs.
    pub fn busy_pids(&self) -> Vec<Pid> {
        let pids = self.pids.lock().unwrap_or_else(|p| p.into_inner());
        pids.iter()
            .enumerate()
            .filter(|(i, _)| {
                word(&self.control, state_index(*i)).load(Ordering::Acquire)
                    & 0xffff_ffff
                    & !PENDING
                    != 0
                    || self.serde_busy[*i].load(Ordering::Acquire)
            })
            .filter_map(|(_, p)| *p)
            .collect()
    }

    /// How many chunks were run again because their worker died, since the
    /// pool started.
    pub fn chunks_retried(&self) -> u64 {
        self.lock().retried
    }

    /// `output[i] = f(input[i])` for every `i`, in the workers, with the
    /// default chunksize `ceil(len / (4 × workers))`.
    ///
    /// The workers read `input` and write `output` in place: while the call
    /// runs, no other process or thread may write `input` or touch `output`
    /// (the same arrays as input and output are fine: that case is copied).
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] when the lengths differ;
    /// [`PoolError::TaskPanicked`], [`PoolError::WorkerDied`],
    /// [`PoolError::Closed`].
    pub fn map_into<T: Pod, R: Pod>(
        &self,
        f: fn(T) -> R,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
    ) -> Result<(), PoolError> {
        self.map_into_chunked(f, input, output, None)
    }

    /// [`map_into`](Self::map_into) with chunks of `chunksize` items
    /// (`None`: the default).
    ///
    /// # Errors
    /// As [`map_into`](Self::map_into); a `chunksize` of 0 is invalid.
    pub fn map_into_chunked<T: Pod, R: Pod>(
        &self,
        f: fn(T) -> R,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
        chunksize: Option<usize>,
    ) -> Result<(), PoolError> {
        let runner: Runner = runners::item_runner::<T, R>;
        self.run(
            CodeRef::of(runner)?,
            CodeRef::of(f)?,
            input,
            output,
            chunksize,
            None,
        )
    }

    /// `f(&input[chunk], &mut output[chunk])` for every chunk, each a whole
    /// sub-slice (default chunksize as [`map_into`](Self::map_into)).
    /// The same in-place contract as [`map_into`](Self::map_into): nothing
    /// else writes `input` or touches `output` while the call runs.
    ///
    /// # Errors
    /// As [`map_into`](Self::map_into).
    pub fn map_slices<T: Pod, R: Pod>(
        &self,
        f: fn(&[T], &mut [R]),
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
    ) -> Result<(), PoolError> {
        self.map_slices_chunked(f, input, output, None)
    }

    /// [`map_slices`](Self::map_slices) with chunks of `chunksize` items.
    ///
    /// # Errors
    /// As [`map_into_chunked`](Self::map_into_chunked).
    pub fn map_slices_chunked<T: Pod, R: Pod>(
        &self,
        f: fn(&[T], &mut [R]),
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
        chunksize: Option<usize>,
    ) -> Result<(), PoolError> {
        let runner: Runner = runners::slice_runner::<T, R>;
        self.run(
            CodeRef::of(runner)?,
            CodeRef::of(f)?,
            input,
            output,
            chunksize,
            None,
        )
    }

    /// `f` over `input` for `Pod` items, as a `Vec`: the input is copied
    /// once into a shared array, the workers write the results in place
    /// into another, copied out once. The pool keeps the two arrays for the
    /// next call (twice the largest input so far, of the last item types).
    /// For any serde type, see [`map`](Self::map).
    ///
    /// # Errors
    /// As [`map_into`](Self::map_into).
    pub fn map_pod<T: Pod + Send + Sync, R: Pod + Send + Sync>(
        &self,
        f: fn(T) -> R,
        input: &[T],
    ) -> Result<Vec<R>, PoolError> {
        self.map_pod_chunked(f, input, None)
    }

    /// [`map_pod`](Self::map_pod) with chunks of `chunksize` items.
    ///
    /// # Errors
    /// As [`map_into_chunked`](Self::map_into_chunked).
    pub fn map_pod_chunked<T: Pod + Send + Sync, R: Pod + Send + Sync>(
        &self,
        f: fn(T) -> R,
        input: &[T],
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, PoolError> {
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        if self.lock().closed {
            return Err(PoolError::Closed);
        }
        if input.is_empty() {
            return Ok(Vec::new());
        }
        let (i, o) = self.pod_arrays::<T, R>(input.len())?;
        i.write_from(0, input)
            .map_err(|e| PoolError::InvalidArgument(e.to_string()))?;
        let runner: Runner = runners::item_runner::<T, R>;
        self.run(
            CodeRef::of(runner)?,
            CodeRef::of(f)?,
            &i,
            &o,
            chunksize,
            Some(input.len()),
        )?;
        let mut out = vec![R::zeroed(); input.len()];
        o.read_into(0, &mut out)
            .map_err(|e| PoolError::InvalidArgument(e.to_string()))?;
        Ok(out)
    }

    /// Shared input and output arrays of at least `len` items for
    /// `map_pod`, kept by the pool between calls (so the workers, which
    /// keep recent arrays mapped, fault no page in on the next call);
    /// replaced by arrays twice as large when too small.
    fn pod_arrays<T: Pod + Send + Sync, R: Pod + Send + Sync>(
        &self,
        len: usize,
    ) -> Result<ArrayPair<T, R>, PoolError> {
        type Pair<T, R> = ArrayPair<T, R>;
        let mut cache = self.pod_scratch.lock().unwrap_or_else(|p| p.into_inner());
        let key = (std::any::TypeId::of::<T>(), std::any::TypeId::of::<R>());
        if let Some((i, o)) = cache.get(&key).and_then(|b| b.downcast_ref::<Pair<T, R>>()) {
            if i.len() >= len {
                return Ok((Arc::clone(i), Arc::clone(o)));
            }
        }
        let cap = len.max(1).next_power_of_two();
        let pair: Pair<T, R> = (
            Arc::new(ShmSlice::new(cap, T::zeroed())?),
            Arc::new(ShmSlice::new(cap, R::zeroed())?),
        );
        // One pair of scratch arrays per pool: the last types used.
        cache.clear();
        cache.insert(key, Box::new(pair.clone()));
        Ok(pair)
    }

    /// Runs a `Pod` job over items `0..len` of `input` and `output`
    /// (`None`: all of them; then their lengths must agree).
    #[allow(clippy::too_many_arguments)]
    fn run<T: Pod, R: Pod>(
        &self,
        runner: CodeRef,
        task: CodeRef,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
        chunksize: Option<usize>,
        len: Option<usize>,
    ) -> Result<(), PoolError> {
        if len.is_none() && input.len() != output.len() {
            return Err(PoolError::InvalidArgument(format!(
                "input has {} items, output {}",
                input.len(),
                output.len()
            )));
        }
        let len = len.unwrap_or(input.len());
        if len > input.len() || len > output.len() {
            return Err(PoolError::InvalidArgument(format!(
                "{len} items asked of arrays of {} and {}",
                input.len(),
                output.len()
            )));
        }
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        let mut inner = self.lock();
        if inner.closed {
            return Err(PoolError::Closed);
        }
        if len == 0 {
            return Ok(());
        }
        let n = inner.workers.len();
        let mut chunksize = chunksize.unwrap_or_else(|| len.div_ceil(4 * n)).max(1);
        // Chunk indices live in 32 bits.
        chunksize = chunksize.max(len.div_ceil(PENDING as usize - 2));
        let aliased = same_segment(input.segment().fd(), output.segment().fd());
        let mut p = Packer::new();
        PassAs::<(ShmSlice<T>, ShmSlice<R>)>::pack_as(&(input, output), &mut p)?;
        let (payload, fds) = p.into_parts();
        inner.run_job(&JobSpec {
            runner,
            task,
            len,
            chunksize,
            payload,
            fds,
            aliased,
        })
    }

    // ---- serde calls ----

    /// Encodes `items` and queues them as a job of `chunksize` chunks
    /// (`None`: Python's default, `ceil(len / (4 × workers))`).
    fn submit<I, T>(
        &self,
        runner: CodeRef,
        task: CodeRef,
        items: I,
        chunksize: Option<usize>,
        finisher: Option<job::Finisher>,
        notify: bool,
    ) -> Result<Arc<Job>, PoolError>
    where
        I: IntoIterator,
        I::Item: Borrow<T>,
        T: Serialize + ?Sized,
    {
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        if self.board.lock().closed {
            return Err(PoolError::Closed);
        }
        let mut input = Vec::new();
        let mut offsets = vec![0usize];
        for (k, item) in items.into_iter().enumerate() {
            wire::encode_into(item.borrow(), &mut input)
                .map_err(|e| PoolError::Codec(format!("encoding item {k}: {e}")))?;
            offsets.push(input.len());
        }
        let n_items = offsets.len() - 1;
        let workers = self.processes();
        let chunksize = chunksize
            .unwrap_or_else(|| n_items.div_ceil(4 * workers))
            .max(1);
        let job = Arc::new(Job::new(runner, task, input, offsets, chunksize, finisher));
        self.board.submit(&job, notify)?;
        Ok(job)
    }

    fn map_codes<T, R>(f: fn(T) -> R) -> Result<(CodeRef, CodeRef), PoolError>
    where
        T: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let runner: TaskRunner = runners::map_runner::<T, R>;
        Ok((CodeRef::of(runner)?, CodeRef::of(f)?))
    }

    fn star_codes<Args, F>(f: F) -> Result<(CodeRef, CodeRef), PoolError>
    where
        Args: DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize,
    {
        let runner: TaskRunner = runners::star_runner::<Args, F>;
        Ok((CodeRef::of(runner)?, CodeRef::of_star(f)?))
    }

    /// Python's `map`: `f` over `items` in the workers, the results in
    /// input order. Items and results are any serde types (encoded with
    /// postcard); `items` is anything iterable whose items borrow as `T`
    /// (`&[T]`, `Vec<T>`, a range). Chunks of Python's default size
    /// (`ceil(len / (4 × workers))`), handed out as workers free up.
    ///
    /// For `Pod` data in shared arrays, [`map_into`](Self::map_into) and
    /// [`map_slices`](Self::map_slices) copy nothing at all.
    ///
    /// # Errors
    /// [`PoolError::TaskPanicked`] (the first failing item's index and the
    /// panic message), [`PoolError::WorkerDied`] (after the retries),
    /// [`PoolError::Closed`], [`PoolError::Codec`].
    pub fn map<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.map_job(f, items, None, Callbacks::new(), false)?.get()
    }

    /// [`map`](Self::map) with chunks of `chunksize` items (`None`: the
    /// default).
    ///
    /// # Errors
    /// As [`map`](Self::map); a `chunksize` of 0 is invalid.
    pub fn map_chunked<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.map_job(f, items, chunksize, Callbacks::new(), false)?
            .get()
    }

    /// Python's `map_async`: as [`map`](Self::map), returning at once.
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Codec`] for an item that cannot
    /// be encoded; the call's own errors come from [`AsyncResult::get`].
    pub fn map_async<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.map_async_with(f, items, None, Callbacks::new())
    }

    /// [`map_async`](Self::map_async) with a chunksize and callbacks.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    pub fn map_async_with<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.map_job(f, items, chunksize, callbacks, true)
    }

    fn map_job<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
        notify: bool,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let decode: results::Decode<Vec<R>> = results::decode_all::<R>;
        let fin = results::finisher(decode, callbacks);
        let job = self.submit::<I, T>(runner, task, items, chunksize, fin, notify)?;
        Ok(AsyncResult::new(job, decode, self.server()))
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple `(a, b, ...)` of
    /// `items`, for `fn`s of up to six arguments, in input order.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<Args, F, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<Args>,
    {
        self.star_job(f, items, None, Callbacks::new(), false)?
            .get()
    }

    /// Python's `starmap_async`, with a chunksize and callbacks.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async<Args, F, I>(
        &self,
        f: F,
        items: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<Args>,
    {
        self.starmap_async_with(f, items, None, Callbacks::new())
    }

    /// [`starmap_async`](Self::starmap_async) with a chunksize and callbacks.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    pub fn starmap_async_with<Args, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<F::Output>>,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<Args>,
    {
        self.star_job(f, items, chunksize, callbacks, true)
    }

    fn star_job<Args, F, I>(
        &self,
        f: F,
        items: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<F::Output>>,
        notify: bool,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator,
        I::Item: Borrow<Args>,
    {
        let (runner, task) = Self::star_codes(f)?;
        let decode: results::Decode<Vec<F::Output>> = results::decode_all::<F::Output>;
        let fin = results::finisher(decode, callbacks);
        let job = self.submit::<I, Args>(runner, task, items, chunksize, fin, notify)?;
        Ok(AsyncResult::new(job, decode, self.server()))
    }

    /// Python's `apply`: `f(args...)` in a worker; `args` is the tuple of
    /// arguments (`(x,)` for one).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn apply<Args, F>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_job(f, args, Callbacks::new(), false)?.get()
    }

    fn server(&self) -> results::Server {
        (Arc::clone(&self.board), Arc::clone(&self.inner))
    }

    /// Python's `apply_async`: as [`apply`](Self::apply), returning at once.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    pub fn apply_async<Args, F>(
        &self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, Callbacks::new())
    }

    /// [`apply_async`](Self::apply_async) with callbacks.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async).
    pub fn apply_async_with<Args, F>(
        &self,
        f: F,
        args: Args,
        callbacks: Callbacks<F::Output>,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_job(f, args, callbacks, true)
    }

    fn apply_job<Args, F>(
        &self,
        f: F,
        args: Args,
        callbacks: Callbacks<F::Output>,
        notify: bool,
    ) -> Result<AsyncResult<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        let (runner, task) = Self::star_codes(f)?;
        let decode: results::Decode<F::Output> = results::decode_one::<F::Output>;
        let fin = results::finisher(decode, callbacks);
        let job = self.submit::<_, Args>(runner, task, [args], Some(1), fin, notify)?;
        Ok(AsyncResult::new(job, decode, self.server()))
    }

    /// Python's `imap`: a lazy iterator over the results in input order,
    /// each yielded as soon as it and those before it are back; chunks of
    /// one item (Python's default for `imap`). The items are encoded and
    /// queued at once. It is an [`ExactSizeIterator`], so it composes with
    /// progress bars.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async); each item's own error comes from
    /// the iterator.
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with chunks of `chunksize` items.
    ///
    /// # Errors
    /// As [`imap`](Self::imap); a `chunksize` of 0 is invalid.
    pub fn imap_chunked<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, Some(chunksize), None, true)?;
        Ok(IMap::new(job))
    }

    /// Python's `imap_unordered`: as [`imap`](Self::imap), yielding results
    /// in the order they come back.
    ///
    /// # Errors
    /// As [`imap`](Self::imap).
    pub fn imap_unordered<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<IMapUnordered<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with chunks of `chunksize`
    /// items.
    ///
    /// # Errors
    /// As [`imap_chunked`](Self::imap_chunked).
    pub fn imap_unordered_chunked<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapUnordered<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, Some(chunksize), None, true)?;
        Ok(IMapUnordered::new(job))
    }

    // ---- lifetime ----

    /// Python's `close`: no more calls; what is queued still runs, then the
    /// workers exit.
    pub fn close(&self) {
        let idle = {
            let mut s = self.board.lock();
            s.closed = true;
            !s.running && s.queue.is_empty()
        };
        let mut inner = self.lock();
        inner.closed = true;
        if idle {
            inner.send_stop();
        }
        // Otherwise the result handler sends the stop once it is done.
    }

    /// Python's `terminate`: fails what is queued or running with
    /// [`PoolError::Closed`], kills the workers (`SIGKILL`) and reaps them.
    pub fn terminate(&self) {
        {
            let mut s = self.board.lock();
            s.closed = true;
            s.terminating = true;
            self.board.poke(&mut s);
        }
        self.board.cond.notify_all();
        let mut inner = self.lock();
        inner.closed = true;
        inner.stopped = true;
        for w in inner.workers.iter().flatten() {
            let _ = w.process.kill();
        }
        for w in inner.workers.iter().flatten() {
            let _ = w.process.join();
        }
    }

    /// Python's `join`: waits until the queued work is done and the workers
    /// have exited, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate).
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] while the pool is open; the error of
    /// waiting for a worker.
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.board.lock().closed {
            return Err(PoolError::InvalidArgument("join before close".into()));
        }
        self.board.wait_idle();
        let mut inner = self.lock();
        inner.send_stop();
        for w in inner.workers.iter().flatten() {
            w.process.join()?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        {
            let mut s = self.board.lock();
            s.shutdown = true;
        }
        self.board.cond.notify_all();
        let h = self
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }
}

/// Whether two descriptors name one file (one shared segment).
fn same_segment(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |fd: BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .map(|m| (m.dev(), m.ino()))
    };
    match (id(a), id(b)) {
        (Ok(x), Ok(y)) => x == y,
        // Unknown: take the copy path, which is right either way.
        _ => true,
    }
}

impl Inner {
    /// Starts the worker of `slot` (not yet ready: see [`install`](Self::install)).
    fn start_worker(&self, slot: usize) -> Result<Worker, PoolError> {
        let (mine, theirs) = os::socketpair_seqpacket().map_err(|source| PoolError::Os {
            op: "socketpair",
            source,
        })?;
        let init = self.init.as_ref().map(|i| i.for_worker()).transpose()?;
        let process = self
            .ctx
            .builder()
            .name(format!("PoolWorker-{slot}"))
            .target(
                worker::worker_main,
                (
                    &*self.control,
                    Sock(theirs),
                    slot as u64,
                    self.max_tasks,
                    init,
                ),
            )
            .start()?;
        Ok(Worker {
            process,
            sock: mine,
        })
    }

    /// Waits until worker `w` reports ready (it ran the initializer), then
    /// puts it in `slot`.
    fn install(&mut self, slot: usize, w: Worker) -> Result<(), PoolError> {
        let mut buf = vec![0u8; wire::MAX_MSG];
        let ready = loop {
            let mut fds = vec![w.sock.as_fd()];
            if let Some(s) = w.process.sentinel() {
                fds.push(s);
            }
            let r = os::poll_readable(&fds, Some(Duration::from_millis(100)))
                .map_err(|source| PoolError::Os { op: "poll", source })?;
            if r[0] {
                break wire::recv_frame(&w.sock, &mut buf);
            }
            if !w.process.is_alive() {
                break Ok(None);
            }
        };
        let pid = w.process.pid();
        let failed = |why: String| {
            let _ = w.process.kill();
            let _ = w.process.join();
            why
        };
        let why = match ready {
            Ok(Some(f)) if f.kind == MSG_READY => None,
            Ok(Some(f)) if f.kind == MSG_INIT_FAILED => {
                return Err(PoolError::Initializer(failed(
                    String::from_utf8_lossy(&f.blob).into_owned(),
                )));
            }
            Ok(Some(f)) => Some(format!("unexpected message {} at start", f.kind)),
            Ok(None) => Some(format!(
                "exited at start ({})",
                w.process
                    .exitcode()
                    .map_or("status unknown".into(), |c| c.to_string())
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            return Err(PoolError::Os {
                op: "starting a pool worker",
                source: std::io::Error::other(failed(why)),
            });
        }
        if let Some(p) = self
            .pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(slot)
        {
            *p = pid;
        }
        self.tasks[slot] = 0;
        self.workers[slot] = Some(w);
        Ok(())
    }

    /// Starts the worker of `slot`, reaping the one there first.
    fn replace(&mut self, slot: usize) -> Result<(), PoolError> {
        if let Some(w) = self.workers[slot].take() {
            let _ = w.process.join();
        }
        if let Some(p) = self
            .pids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(slot)
        {
            *p = None;
        }
        // The dead worker may have left its busy word set (killed in its
        // claim loop after the call had all its chunks): nobody writes it
        // now, and the next call waits for it to be 0.
        word(&self.control, busy_index(slot)).store(0, Ordering::SeqCst);
        if self.stopped {
            return Err(PoolError::Closed);
        }
        let w = self.start_worker(slot)?;
        self.install(slot, w)
    }

    /// Tells every worker to exit (once).
    fn send_stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let stop = MSG_STOP.to_le_bytes();
        for w in self.workers.iter().flatten() {
            let _ = os::send_with_fds(w.sock.as_fd(), &stop, &[]);
        }
    }

    fn send_job(&self, slot: usize, header: &[u64], msg: &JobMsg, retry: u64) {
        let Some(w) = &self.workers[slot] else { return };
        let mut b = Vec::with_capacity(HEADER_WORDS * 8 + msg.tail.len());
        for (i, x) in header.iter().enumerate() {
            let x = if i == 5 { retry } else { *x };
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&msg.tail);
        let fds: Vec<BorrowedFd<'_>> = msg.fds.iter().map(AsFd::as_fd).collect();
        // A worker that died meanwhile is seen by the watch loop.
        let _ = os::send_with_fds(w.sock.as_fd(), &b, &fds);
    }

    fn slot(&self, slot: usize) -> &AtomicU64 {
        word(&self.control, state_index(slot))
    }

    fn is_alive(&self, slot: usize) -> bool {
        self.workers[slot]
            .as_ref()
            .is_some_and(|w| w.process.is_alive())
    }

    fn run_job(&mut self, spec: &JobSpec) -> Result<(), PoolError> {
        let n = self.workers.len();
        // Workers that died between calls.
        for i in 0..n {
            if !self.is_alive(i) {
                self.replace(i)?;
            }
        }
        // A worker of the last call may still be leaving its claim loop:
        // wait (a few instructions) until it waits again, before the slots
        // are reset.
        // One that does not within `SETTLE_LIMIT` (it cannot, by the
        // protocol) is killed and replaced rather than waited for forever.
        let settle_deadline = std::time::Instant::now() + SETTLE_LIMIT;
        for i in 0..n {
            while word(&self.control, busy_index(i)).load(Ordering::SeqCst) != 0 && self.is_alive(i)
            {
                if std::time::Instant::now() >= settle_deadline {
                    if let Some(w) = &self.workers[i] {
                        let _ = w.process.kill();
                    }
                    self.replace(i)?;
                    break;
                }
                std::thread::yield_now();
            }
        }
        let n_chunks = spec.len.div_ceil(spec.chunksize) as u64;
        // One done flag per chunk: the witness of a chunk whose worker died
        // between finishing it and counting it, or right after claiming it.
        let flags = ShmSlice::new(n_chunks as usize, 0u32)?;
        let mut p = Packer::new();
        PassAs::<ShmSlice<u32>>::pack_as(&&flags, &mut p)?;
        let (flag_bytes, flag_fds) = p.into_parts();
        let mut tail = flag_bytes.clone();
        tail.extend_from_slice(&spec.payload);
        let mut fds = flag_fds;
        for fd in &spec.fds {
            fds.push(
                fd.try_clone()
                    .map_err(|source| PoolError::Os { op: "dup", source })?,
            );
        }
        let msg = JobMsg { tail, fds };

        self.job = (self.job + 1) & 0x7fff_ffff;
        let job = self.job;
        for i in 0..n {
            self.slot(i).store(0, Ordering::SeqCst);
            word(&self.control, busy_index(i)).store(0, Ordering::SeqCst);
        }
        word(&self.control, worker::DONE).store(0, Ordering::SeqCst);
        word(&self.control, CURSOR).store(job << 32, Ordering::SeqCst);
        let mut header = vec![
            MSG_JOB,
            job,
            n_chunks,
            spec.chunksize as u64,
            spec.len as u64,
            NO_CHUNK,
            flag_bytes.len() as u64,
            u64::from(spec.aliased),
        ];
        header.extend_from_slice(&spec.runner.to_words());
        header.extend_from_slice(&spec.task.to_words());
        for i in 0..n {
            self.send_job(i, &header, &msg, NO_CHUNK);
        }

        let chunk_range = |c: u64| -> Range<usize> {
            let s = c as usize * spec.chunksize;
            s..(s + spec.chunksize).min(spec.len)
        };
        let mut retries: std::collections::HashMap<u64, u32> = Default::default();
        // The retry chunk handed to each slot's replacement.
        let mut assigned: Vec<Option<u64>> = vec![None; n];
        // Chunks finished or abandoned outside the slots' done counts.
        let mut settled = 0u64;
        // After an abort, chunks from here on were never claimed.
        let mut claimed_below = u64::MAX;
        let mut error: Option<PoolError> = None;
        loop {
            let seen = worker::wake_word(&self.control).load(Ordering::SeqCst);
            let done: u64 = (0..n)
                .map(|i| self.slot(i).load(Ordering::SeqCst) >> 32)
                .sum();
            if done + settled >= n_chunks {
                break;
            }
            for i in 0..n {
                if self.is_alive(i) {
                    continue;
                }
                let (pid, exitcode) = match &self.workers[i] {
                    Some(w) => (w.process.pid(), w.process.exitcode()),
                    None => (None, None),
                };
                let view = JobWords {
                    inner: self,
                    flags: &flags,
                };
                let lost = match claim::settle_dead(&view, i, job, claimed_below, &assigned) {
                    claim::Dead::Nothing => None,
                    claim::Dead::Finished(_) => {
                        // Finished, but died before counting it.
                        settled += 1;
                        None
                    }
                    claim::Dead::Lost(c) => Some(c),
                };
                assigned[i] = None;
                let mut retry = NO_CHUNK;
                if let Some(c) = lost {
                    let r = retries.entry(c).or_insert(0);
                    *r += 1;
                    if *r <= self.max_retries && error.is_none() {
                        retry = c;
                        self.retried += 1;
                    } else {
                        settled += 1;
                        if error.is_none() {
                            error = Some(PoolError::WorkerDied {
                                pid: pid.unwrap_or_else(os::getpid),
                                exitcode,
                                chunk: chunk_range(c),
                            });
                        }
                        let (from, count) =
                            claim::abort_cursor(word(&self.control, CURSOR), job, n_chunks);
                        claimed_below = claimed_below.min(from);
                        settled += count;
                    }
                }
                match self.replace(i) {
                    Ok(()) => {
                        if retry != NO_CHUNK {
                            assigned[i] = Some(retry);
                        }
                        self.send_job(i, &header, &msg, retry);
                    }
                    Err(e) => {
                        // Nobody runs the retry: give the chunk up too.
                        if retry != NO_CHUNK {
                            settled += 1;
                        }
                        let (from, count) =
                            claim::abort_cursor(word(&self.control, CURSOR), job, n_chunks);
                        claimed_below = claimed_below.min(from);
                        settled += count;
                        error.get_or_insert(e);
                    }
                }
            }
            os::futex_wait(worker::wake_word(&self.control), seen, Some(WATCH_SLICE));
        }
        for i in 0..n {
            self.tasks[i] += self.slot(i).load(Ordering::SeqCst) >> 32;
        }
        let panic = self.drain_reports(job);
        match (error, panic) {
            (Some(e), _) => Err(e),
            (None, Some((index, message))) => Err(PoolError::TaskPanicked { message, index }),
            (None, None) => Ok(()),
        }
    }

    /// Reads the workers' reports for `job`; the panic at the lowest index.
    fn drain_reports(&self, job: u64) -> Option<(usize, String)> {
        let mut first: Option<(usize, String)> = None;
        let mut buf = vec![0u8; wire::MAX_MSG];
        for w in self.workers.iter().flatten() {
            loop {
                let ready = os::poll_readable(&[w.sock.as_fd()], Some(Duration::ZERO))
                    .map(|r| r.first().copied().unwrap_or(false))
                    .unwrap_or(false);
                if !ready {
                    break;
                }
                let Ok((n, _)) = os::recv_with_fds(w.sock.as_fd(), &mut buf) else {
                    break;
                };
                if n < 24 {
                    break;
                }
                let w3: Vec<u64> = buf[..24]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                if w3[0] != MSG_PANIC || w3[1] != job {
                    continue;
                }
                let index = w3[2] as usize;
                let message = String::from_utf8_lossy(&buf[24..n]).into_owned();
                if first.as_ref().is_none_or(|(i, _)| index < *i) {
                    first = Some((index, message));
                }
            }
        }
        first
    }
}

/// One job's words as the claim protocol's pool side reads them.
struct JobWords<'a> {
    inner: &'a Inner,
    flags: &'a ShmSlice<u32>,
}

impl claim::Table for JobWords<'_> {
    type W = AtomicU64;
    type F = shmproc_shm::sync::real::AtomicU32;
    fn workers(&self) -> usize {
        self.inner.workers.len()
    }
    fn cursor(&self) -> &AtomicU64 {
        word(&self.inner.control, CURSOR)
    }
    fn state(&self, slot: usize) -> &AtomicU64 {
        self.inner.slot(slot)
    }
    fn flag(&self, c: u64) -> &Self::F {
        flag(self.flags, c)
    }
    fn alive(&self, slot: usize) -> bool {
        self.inner.is_alive(slot)
    }
}
