//! shmproc's [`Pool`] over MPI ranks: the same task `fn`s, the same result
//! types and the same [`PoolError`]s as [`shmproc_pool::Pool`], from one
//! machine to a cluster. A program changes one line:
//!
//! ```no_run
//! // let pool = shmproc_pool::Pool::new(4)?;          // one machine
//! let pool = shmproc_mpi::Pool::new()?;               // every rank of `mpirun`/`srun`
//! # fn is_prime(n: u64) -> bool { n > 1 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0) }
//! let flags: Vec<bool> = pool.map(is_prime, 0..2_000_000u64)?;
//! # Ok::<(), shmproc_pool::PoolError>(())
//! ```
//!
//! Run it with `mpirun -np 5 ./program` (one driver, four workers), with a
//! hostfile across machines, or under Slurm with `srun`: see the README's
//! section "Beyond one machine: MPI".
//!
//! # Why a workspace of its own
//! This crate links the MPI C library (`libmpi`, through the `mpi` crate,
//! whose bindings are generated with libclang at build time). The default
//! build and the README's `cargo test --workspace --all-features` must need
//! neither, so the crate has its own `[workspace]` table (like `fuzz/`) and
//! the root's `exclude` lists it; a cargo feature would not do, since
//! `--all-features` would turn it on. `.ci/run` installs OpenMPI when it is
//! missing and runs this crate's tests under `mpirun`.
//!
//! # Roles
//! Every rank runs the same program and calls [`Pool::new`]. Rank 0 gets
//! the pool and drives; every other rank serves tasks inside `Pool::new`
//! until the driver's pool is dropped, then finalises MPI and exits with
//! status 0, so the rest of `main` runs on rank 0 only. (Use
//! [`PoolBuilder::build_or_serve`] to get `None` back on the workers
//! instead of an exit.)
//!
//! # Finding tasks on another machine
//! A local pool names a task by a [`CodeRef`](shmproc_process::CodeRef):
//! its offset in the executable, checked against the executable's device
//! and inode, which differ on another machine. Here, at start, every rank
//! hashes its whole executable file (`/proc/self/exe`) and the ranks
//! compare the hashes: the same program copied to another path, inode or
//! machine passes; a rank that runs a different build (or another program)
//! makes `Pool::new` fail on every rank with
//! `PoolError::Process(ProcessError::BadBoot("rank(s) [..] run a different
//! build ..."))`. After that check a task is its offset from a reference
//! point plus the hash of its `fn` type, resolved on the worker only inside
//! the executable's mappings and for the same type.
//!
//! # Balancing
//! The driver hands out chunks as workers return results, [`DEPTH`] out per
//! worker (one running, one waiting), so a slow node takes fewer chunks and
//! holds nobody up. Default chunk sizes are Python's: `ceil(len / (4 ×
//! workers))` for `map`, one item for `imap`.
//!
//! # Transports
//! MPI picks the transport per pair of ranks (shared memory within a node,
//! the network across). Serde calls (`map`, `imap`, `starmap`, `apply`)
//! send encoded chunks as MPI messages. `Pod` calls ([`Pool::map_into`],
//! [`Pool::map_slices`]) take the driver's [`ShmSlice`]s: a worker on the
//! driver's node opens the driver's segments itself
//! (`/proc/<driver pid>/fd/<fd>`, checked at start with a probe segment and
//! against each array's inode) and reads and writes its chunk in place,
//! sending back a 32-byte "done"; a worker on another node gets the chunk's
//! input bytes in the message and sends the output bytes back. An MPI-3
//! shared window (`MPI_Win_allocate_shared`) holds only what is copied into
//! it, so it would do the same in-place work plus a copy of the input in
//! and of the output out, which the segments avoid; the bench
//! `shmproc-mpi-bench pod` times the segment path, the message path
//! ([`Transport::Messages`] forces it) and those two copies on one node
//! (figures in [`scaling`]).
//!
//! # Progress
//! MPI is initialised single-threaded and the driver does its work on the
//! caller's thread: an asynchronous call's first chunks go out at once (up
//! to [`DEPTH`] per worker), and the rest are handed out while the caller
//! waits in `get`, `next`, `wait` or `ready`, or in any blocking call. A
//! waiting rank probes in a tight loop for 30 µs, yielding until 300 µs,
//! then sleeps between probes (20 µs growing to 1 ms), so idle ranks leave
//! the cores to those that compute.
//! [`Pool`] and its results are `!Send`: use them on the thread that made
//! the pool.
//!
//! # Fail-stop
//! A rank that dies (a signal, the OOM killer, `abort`, `exit` in a task)
//! ends the whole job: OpenMPI's `mpirun` (4.1, which has no fault
//! tolerance) sees the death, kills the other ranks and exits non-zero with
//! a message naming the rank: "mpirun noticed that process rank 2 with PID
//! … on node … exited on signal 9 (Killed)." Slurm's `srun` does the same
//! (`--kill-on-bad-exit`). Unlike the local pool there is no retry:
//! restart the job. A **panicking task** is not a death: the worker catches
//! it, serves on, and the call fails with [`PoolError::TaskPanicked`]
//! (the panic message and the item's index) on rank 0.
//!
//! # Scaling, on paper
//! See [`scaling`].
#![deny(unsafe_code)]

mod driver;
mod ident;
mod inplace;
mod outbox;
mod proto;
mod results;
mod runners;
pub mod scaling;
mod worker;

use std::cell::RefCell;
use std::rc::Rc;

use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_process::{ProcessError, StarFn};
use shmproc_shm::{Pod, ShmSlice};

pub use driver::DEPTH;
pub use results::{AsyncResult, IMap, IMapUnordered};
pub use shmproc_pool::PoolError;

use driver::{Driver, WorkerSlot};
use ident::{Identity, WireRef};
use runners::{PodRunner, TaskRunner};

/// How `Pod` chunks reach the workers on the driver's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// In place through the driver's shared segments where the worker
    /// shares the driver's node; MPI messages elsewhere.
    #[default]
    Auto,
    /// MPI messages to every worker (for measurements and tests; also set
    /// by `SHMPROC_MPI_TRANSPORT=messages`).
    Messages,
}

/// Builds a [`Pool`]: `Pool::builder().transport(t).build()`.
#[derive(Default)]
pub struct PoolBuilder {
    universe: Option<Universe>,
    transport: Option<Transport>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("universe", &self.universe.is_some())
            .field("transport", &self.transport)
            .finish()
    }
}

impl PoolBuilder {
    /// Uses MPI initialised by the caller (`mpi::initialize()`); the pool
    /// finalises it when dropped. Without it, the pool initialises MPI.
    pub fn universe(mut self, universe: Universe) -> Self {
        self.universe = Some(universe);
        self
    }

    /// How `Pod` chunks travel within the driver's node (default
    /// [`Transport::Auto`], or `SHMPROC_MPI_TRANSPORT=messages`).
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = Some(t);
        self
    }

    /// As [`Pool::new`]: on rank 0 the pool; on the other ranks, serves
    /// until the driver's pool is dropped, then finalises MPI and exits
    /// the process with status 0.
    ///
    /// # Errors
    /// As [`build_or_serve`](Self::build_or_serve).
    pub fn build(self) -> Result<Pool, PoolError> {
        match self.build_or_serve()? {
            Some(pool) => Ok(pool),
            None => std::process::exit(0),
        }
    }

    /// On rank 0 `Some(pool)`; on the other ranks, serves until the
    /// driver's pool is dropped, finalises MPI and returns `None`.
    ///
    /// # Errors
    /// On every rank: [`PoolError::InvalidArgument`] for a world of one
    /// rank, or MPI initialised already without
    /// [`universe`](Self::universe); `PoolError::Process(ProcessError::BadBoot(..))`
    /// when a rank runs another build than rank 0; [`PoolError::Os`] when
    /// the executable cannot be read.
    pub fn build_or_serve(self) -> Result<Option<Pool>, PoolError> {
        let universe = match self.universe {
            Some(u) => u,
            None => mpi::initialize().ok_or_else(|| {
                PoolError::InvalidArgument(
                    "MPI is initialised already: pass its Universe to PoolBuilder::universe".into(),
                )
            })?,
        };
        let transport = self.transport.unwrap_or_else(|| {
            match std::env::var("SHMPROC_MPI_TRANSPORT").as_deref() {
                Ok("messages") => Transport::Messages,
                _ => Transport::Auto,
            }
        });
        let world = universe.world();
        let size = proto::size(&world);
        if size < 2 {
            return Err(PoolError::InvalidArgument(
                "an MPI pool needs at least 2 ranks (rank 0 drives, the others work): \
                 run it under `mpirun -np N` with N >= 2"
                    .into(),
            ));
        }
        let shm = handshake(&world)?;
        if world.rank() != 0 {
            worker::serve(&world);
            drop(world);
            drop(universe);
            return Ok(None);
        }
        let workers = (1..size)
            .map(|r| WorkerSlot::new(r as mpi::Rank, shm[r]))
            .collect();
        Ok(Some(Pool {
            driver: Rc::new(RefCell::new(Driver::new(
                world,
                Some(universe),
                workers,
                transport,
            ))),
        }))
    }
}

/// The start: rank 0 sends its identity and a probe segment; every rank
/// checks the build, and those on rank 0's node try to map the probe. Every
/// rank learns every rank's verdict (one broadcast, one all-gather), so all
/// fail together or none does. Returns, per rank, whether it maps rank 0's
/// segments.
fn handshake(world: &SimpleCommunicator) -> Result<Vec<bool>, PoolError> {
    const MAGIC: u64 = 0x5348_4d50_524f_4345;
    let me = Identity::current()?;
    let rank = world.rank();
    let size = proto::size(world);
    let probe = if rank == 0 {
        Some(ShmSlice::new(1, MAGIC ^ me.pid)?)
    } else {
        None
    };
    let mut root = [0u64; Identity::WORDS + 2];
    if let Some(p) = &probe {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let fd = p.segment().fd();
        let ino = fd
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .map_err(|source| PoolError::Os {
                op: "fstat of the probe segment",
                source,
            })?
            .ino();
        root[..Identity::WORDS].copy_from_slice(&me.to_words());
        root[Identity::WORDS] = fd.as_raw_fd() as u64;
        root[Identity::WORDS + 1] = ino;
    }
    world.process_at_rank(0).broadcast_into(&mut root[..]);
    let driver = Identity::from_words(&root);
    let same_build = me.same_build(&driver);
    let maps = rank != 0 && same_build && me.node == driver.node && {
        let mut m = runners::Mapped::default();
        runners::probe(
            &mut m,
            driver.pid,
            (root[Identity::WORDS], root[Identity::WORDS + 1], 1),
        ) == Some(MAGIC ^ driver.pid)
    };
    let mine = [
        me.exe_digest,
        me.exe_len,
        u64::from(same_build),
        u64::from(maps),
    ];
    let mut all = vec![0u64; 4 * size];
    world.all_gather_into(&mine[..], &mut all[..]);
    // Every rank keeps the probe mapped until all have tried it.
    drop(probe);
    let refused: Vec<usize> = (0..size).filter(|&r| all[4 * r + 2] == 0).collect();
    if !refused.is_empty() {
        let r = refused[0];
        return Err(PoolError::Process(ProcessError::BadBoot(format!(
            "rank(s) {refused:?} run a different build of the program than rank 0 \
             (rank {r}: executable of {} bytes, digest {:#018x}; rank 0: {} bytes, digest {:#018x}): \
             every rank must run the same executable",
            all[4 * r + 1],
            all[4 * r],
            driver.exe_len,
            driver.exe_digest
        ))));
    }
    Ok((0..size).map(|r| all[4 * r + 3] != 0).collect())
}

/// A pool of MPI ranks (Python's `multiprocessing.Pool`, over a cluster):
/// rank 0 drives, the others run tasks. See the [crate docs](crate).
///
/// Dropping it runs the chunks already out to their end, tells the workers
/// to stop and finalises MPI.
#[derive(Debug)]
pub struct Pool {
    driver: Rc<RefCell<Driver>>,
}

impl Pool {
    /// Every rank calls this: rank 0 gets the pool; the other ranks serve
    /// tasks until the pool is dropped, then exit with status 0.
    ///
    /// # Errors
    /// As [`PoolBuilder::build_or_serve`].
    pub fn new() -> Result<Pool, PoolError> {
        Self::builder().build()
    }

    /// A builder: the MPI universe, the transport.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker ranks (the world's size less the driver).
    pub fn processes(&self) -> usize {
        self.driver.borrow().workers.len()
    }

    /// How many worker ranks share the driver's node and map its segments.
    pub fn local_workers(&self) -> usize {
        self.driver
            .borrow()
            .workers
            .iter()
            .filter(|w| w.shm)
            .count()
    }

    /// How `Pod` chunks travel within the driver's node from now on.
    pub fn set_transport(&self, t: Transport) {
        self.driver.borrow_mut().transport = t;
    }

    /// The world communicator, for the caller's own MPI calls between pool
    /// calls (on rank 0; the workers are in their serve loop).
    pub fn world(&self) -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    fn submit<I, T>(
        &self,
        runner: WireRef,
        task: WireRef,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<u64, PoolError>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
        T: Serialize + ?Sized,
    {
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        if self.driver.borrow().closed {
            return Err(PoolError::Closed);
        }
        let mut input = Vec::new();
        let mut offsets = vec![0usize];
        for (k, item) in items.into_iter().enumerate() {
            runners::encode_into(std::borrow::Borrow::<T>::borrow(&item), &mut input)
                .map_err(|e| PoolError::Codec(format!("encoding item {k}: {e}")))?;
            offsets.push(input.len());
        }
        let n = offsets.len() - 1;
        let chunksize = chunksize
            .unwrap_or_else(|| n.div_ceil(4 * self.processes()))
            .max(1);
        self.driver
            .borrow_mut()
            .submit(runner, task, input, offsets, chunksize)
    }

    fn map_codes<T, R>(f: fn(T) -> R) -> Result<(WireRef, WireRef), PoolError>
    where
        T: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let runner: TaskRunner = runners::map_runner::<T, R>;
        Ok((WireRef::of(runner)?, WireRef::of(f)?))
    }

    fn star_codes<Args, F>(f: F) -> Result<(WireRef, WireRef), PoolError>
    where
        Args: DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize,
    {
        let runner: TaskRunner = runners::star_runner::<Args, F>;
        Ok((WireRef::of(runner)?, WireRef::of_star(f)?))
    }

    /// Python's `map`: `f` over `items` on the worker ranks, the results in
    /// input order (Python's default chunksize).
    ///
    /// # Errors
    /// [`PoolError::TaskPanicked`] (the lowest failing index and the panic
    /// message), [`PoolError::Codec`], [`PoolError::Closed`].
    pub fn map<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<Vec<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        self.map_chunked(f, items, None)
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
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, chunksize)?;
        AsyncResult::new(Rc::clone(&self.driver), job, results::decode_all::<R>).get()
    }

    /// Python's `map_async`: as [`map`](Self::map), returning at once (the
    /// first chunks are out).
    ///
    /// # Errors
    /// [`PoolError::Closed`], [`PoolError::Codec`]; the call's own errors
    /// come from [`AsyncResult::get`].
    pub fn map_async<T, R, I>(
        &self,
        f: fn(T) -> R,
        items: I,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, None)?;
        Ok(AsyncResult::new(
            Rc::clone(&self.driver),
            job,
            results::decode_all::<R>,
        ))
    }

    /// Python's `starmap`: `f(a, b, ...)` for each tuple of `items`.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<Args, F, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: std::borrow::Borrow<Args>,
    {
        let (runner, task) = Self::star_codes(f)?;
        let job = self.submit::<I, Args>(runner, task, items, None)?;
        AsyncResult::new(
            Rc::clone(&self.driver),
            job,
            results::decode_all::<F::Output>,
        )
        .get()
    }

    /// Python's `apply`: `f(args...)` on a worker rank.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn apply<Args, F>(&self, f: F, args: Args) -> Result<F::Output, PoolError>
    where
        Args: Serialize + DeserializeOwned + 'static,
        F: StarFn<Args>,
        F::Output: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Python's `apply_async`: as [`apply`](Self::apply), returning at once
    /// (the task is out).
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
        F::Output: Serialize + DeserializeOwned + 'static,
    {
        let (runner, task) = Self::star_codes(f)?;
        let job = self.submit::<_, Args>(runner, task, [args], Some(1))?;
        Ok(AsyncResult::new(
            Rc::clone(&self.driver),
            job,
            results::decode_one::<F::Output>,
        ))
    }

    /// Python's `imap`: results in input order, each as soon as it and
    /// those before it are back; chunks of one item.
    ///
    /// # Errors
    /// As [`map_async`](Self::map_async); each item's own error comes from
    /// the iterator.
    pub fn imap<T, R, I>(&self, f: fn(T) -> R, items: I) -> Result<IMap<R>, PoolError>
    where
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
        I: IntoIterator,
        I::Item: std::borrow::Borrow<T>,
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
        I::Item: std::borrow::Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, Some(chunksize))?;
        Ok(IMap::new(Rc::clone(&self.driver), job))
    }

    /// Python's `imap_unordered`: results in the order they come back.
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
        I::Item: std::borrow::Borrow<T>,
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
        I::Item: std::borrow::Borrow<T>,
    {
        let (runner, task) = Self::map_codes(f)?;
        let job = self.submit::<I, T>(runner, task, items, Some(chunksize))?;
        Ok(IMapUnordered::new(Rc::clone(&self.driver), job))
    }

    // ---- Pod ----

    fn run_pod<T: Pod, R: Pod>(
        &self,
        runner: PodRunner,
        task: WireRef,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
        chunksize: Option<usize>,
    ) -> Result<(), PoolError> {
        if input.len() != output.len() {
            return Err(PoolError::InvalidArgument(format!(
                "input has {} items, output {}",
                input.len(),
                output.len()
            )));
        }
        if chunksize == Some(0) {
            return Err(PoolError::InvalidArgument(
                "chunksize must be at least 1".into(),
            ));
        }
        let len = input.len();
        if len == 0 {
            return Ok(());
        }
        let chunksize = chunksize
            .unwrap_or_else(|| len.div_ceil(4 * self.processes()))
            .max(1);
        self.driver
            .borrow_mut()
            .run_pod(WireRef::of(runner)?, task, input, output, len, chunksize)
    }

    /// `output[i] = f(input[i])` for every `i`, on the worker ranks (default
    /// chunksize `ceil(len / (4 × workers))`). The same in-place contract as
    /// [`shmproc_pool::Pool::map_into`]: nothing else writes `input` or
    /// touches `output` while the call runs.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] when the lengths differ;
    /// [`PoolError::TaskPanicked`], [`PoolError::Closed`].
    pub fn map_into<T: Pod, R: Pod>(
        &self,
        f: fn(T) -> R,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
    ) -> Result<(), PoolError> {
        self.map_into_chunked(f, input, output, None)
    }

    /// [`map_into`](Self::map_into) with chunks of `chunksize` items.
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
        let runner: PodRunner = runners::item_runner::<T, R>;
        self.run_pod(runner, WireRef::of(f)?, input, output, chunksize)
    }

    /// `f(&input[chunk], &mut output[chunk])` for every chunk, on the
    /// worker ranks; as [`map_into`](Self::map_into).
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
        let runner: PodRunner = runners::slice_runner::<T, R>;
        self.run_pod(runner, WireRef::of(f)?, input, output, chunksize)
    }

    // ---- lifetime ----

    /// Python's `close`: no more calls; what is out still runs.
    pub fn close(&self) {
        self.driver.borrow_mut().closed = true;
    }

    /// Python's `join`: after [`close`](Self::close), waits until the work
    /// out is done, then stops the workers and finalises MPI.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] while the pool is open.
    pub fn join(&self) -> Result<(), PoolError> {
        let mut d = self.driver.borrow_mut();
        if !d.closed {
            return Err(PoolError::InvalidArgument("join before close".into()));
        }
        let r = d.drain();
        d.shutdown();
        r
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.shutdown();
        }
    }
}
