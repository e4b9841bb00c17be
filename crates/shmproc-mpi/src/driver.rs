//! The driver (rank 0): hands chunks out as workers return results, files
//! the results with their call, and runs `Pod` calls over the driver's own
//! shared arrays.
//!
//! Everything runs on the calling thread (MPI is initialised with
//! `MPI_THREAD_SINGLE`): a call's chunks go out at once, up to
//! [`DEPTH`] per worker, so the workers compute while the caller does
//! something else; the rest are handed out, and the results collected, in
//! the caller's next blocking call (`get`, `next`, `wait`, `ready`, `map`).

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::time::Instant;

use mpi::Rank;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use shmproc_pool::PoolError;
use shmproc_shm::{Pod, ShmSlice};

use crate::Transport;
use crate::ident::WireRef;
use crate::outbox::Outbox;
use crate::proto::{self, Backoff};

/// Chunks out with one worker at a time: one it runs, one waiting, so that
/// it never waits for the driver between chunks.
pub const DEPTH: usize = 2;

/// A worker rank, as the driver sees it.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    pub(crate) rank: Rank,
    /// Chunks out with it.
    out: usize,
    /// It can map the driver's shared arrays (same node, checked at start).
    pub(crate) shm: bool,
}

impl WorkerSlot {
    pub(crate) fn new(rank: Rank, shm: bool) -> Self {
        Self { rank, out: 0, shm }
    }
}

/// Why a chunk failed.
#[derive(Debug, Clone)]
pub(crate) enum ChunkError {
    Panic { index: usize, message: String },
    Failed(String),
}

impl ChunkError {
    pub(crate) fn index(&self) -> usize {
        match self {
            ChunkError::Panic { index, .. } => *index,
            ChunkError::Failed(_) => 0,
        }
    }

    pub(crate) fn to_pool_error(&self) -> PoolError {
        match self {
            ChunkError::Panic { index, message } => PoolError::TaskPanicked {
                message: message.clone(),
                index: *index,
            },
            ChunkError::Failed(m) => PoolError::Codec(m.clone()),
        }
    }
}

/// A serde call: its encoded inputs and, per chunk, its result.
#[derive(Debug)]
pub(crate) struct SerdeJob {
    runner: WireRef,
    task: WireRef,
    input: Vec<u8>,
    offsets: Vec<usize>,
    pub(crate) chunksize: usize,
    pub(crate) n_items: usize,
    pub(crate) results: Vec<Option<Result<Vec<u8>, ChunkError>>>,
    /// Chunks in the order their results came.
    pub(crate) arrived: VecDeque<usize>,
    settled: usize,
    abandoned: bool,
}

impl SerdeJob {
    pub(crate) fn n_chunks(&self) -> usize {
        self.results.len()
    }

    pub(crate) fn settled(&self) -> bool {
        self.settled == self.n_chunks()
    }

    /// The number of items of chunk `c`.
    pub(crate) fn count(&self, c: usize) -> usize {
        let s = c * self.chunksize;
        (s + self.chunksize).min(self.n_items) - s
    }
}

/// The driver's state.
pub(crate) struct Driver {
    pub(crate) world: SimpleCommunicator,
    pub(crate) workers: Vec<WorkerSlot>,
    pub(crate) transport: Transport,
    queue: VecDeque<(u64, usize)>,
    jobs: HashMap<u64, SerdeJob>,
    next_job: u64,
    pub(crate) closed: bool,
    stopped: bool,
    outbox: Outbox,
    /// Dropped last: `MPI_Finalize`.
    pub(crate) universe: Option<Universe>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("workers", &self.workers)
            .field("queued", &self.queue.len())
            .field("jobs", &self.jobs.len())
            .field("closed", &self.closed)
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl Driver {
    pub(crate) fn new(
        world: SimpleCommunicator,
        universe: Option<Universe>,
        workers: Vec<WorkerSlot>,
        transport: Transport,
    ) -> Self {
        Self {
            world,
            workers,
            transport,
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            next_job: 1,
            closed: false,
            stopped: false,
            outbox: Outbox::default(),
            universe,
        }
    }

    fn check_open(&self) -> Result<(), PoolError> {
        if self.stopped {
            Err(PoolError::Closed)
        } else {
            Ok(())
        }
    }

    /// Queues a serde call; its first chunks go out at once.
    pub(crate) fn submit(
        &mut self,
        runner: WireRef,
        task: WireRef,
        input: Vec<u8>,
        offsets: Vec<usize>,
        chunksize: usize,
    ) -> Result<u64, PoolError> {
        if self.closed {
            return Err(PoolError::Closed);
        }
        let n_items = offsets.len() - 1;
        let n_chunks = n_items.div_ceil(chunksize);
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            SerdeJob {
                runner,
                task,
                input,
                offsets,
                chunksize,
                n_items,
                results: (0..n_chunks).map(|_| None).collect(),
                arrived: VecDeque::new(),
                settled: 0,
                abandoned: false,
            },
        );
        self.queue.extend((0..n_chunks).map(|c| (id, c)));
        self.dispatch();
        Ok(id)
    }

    pub(crate) fn job(&self, id: u64) -> Option<&SerdeJob> {
        self.jobs.get(&id)
    }

    pub(crate) fn job_mut(&mut self, id: u64) -> Option<&mut SerdeJob> {
        self.jobs.get_mut(&id)
    }

    /// The caller no longer wants `id`'s results: forgotten now, or when its
    /// last chunk comes back.
    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(j) = self.jobs.get_mut(&id) {
            if j.settled() {
                self.jobs.remove(&id);
            } else {
                j.abandoned = true;
            }
        }
    }

    /// Hands queued chunks to the workers with room, least loaded first.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(w) = (0..self.workers.len())
                .filter(|&i| self.workers[i].out < DEPTH)
                .min_by_key(|&i| self.workers[i].out)
            else {
                return;
            };
            let Some((id, c)) = self.queue.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let (s, e) = (c * job.chunksize, c * job.chunksize + job.count(c));
            let mut words = vec![proto::TASKS, id, c as u64, job.count(c) as u64];
            words.extend_from_slice(&job.runner.words());
            words.extend_from_slice(&job.task.words());
            let msg = proto::message(&words, &job.input[job.offsets[s]..job.offsets[e]]);
            self.outbox.send(&self.world, self.workers[w].rank, msg);
            self.workers[w].out += 1;
        }
    }

    fn slot_of(&self, rank: Rank) -> Option<usize> {
        self.workers.iter().position(|w| w.rank == rank)
    }

    /// Files one serde result.
    fn handle(&mut self, msg: &[u8], rank: Rank) {
        if let Some(i) = self.slot_of(rank) {
            self.workers[i].out = self.workers[i].out.saturating_sub(1);
        }
        let Ok(p) = proto::parse(msg) else {
            eprintln!("shmproc-mpi: a bad message from rank {rank}");
            return;
        };
        let id = p.w(1);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(c) = usize::try_from(p.w(2)).ok().filter(|&c| c < job.n_chunks()) else {
            return;
        };
        if job.results[c].is_some() {
            return;
        }
        let r = match p.w(0) {
            proto::DONE => Ok(p.blob.to_vec()),
            proto::PANICKED => Err(ChunkError::Panic {
                index: c * job.chunksize + usize::try_from(p.w(3)).unwrap_or(0),
                message: String::from_utf8_lossy(p.blob).into_owned(),
            }),
            _ => Err(ChunkError::Failed(
                String::from_utf8_lossy(p.blob).into_owned(),
            )),
        };
        job.results[c] = Some(r);
        job.settled += 1;
        job.arrived.push_back(c);
        if job.abandoned && job.settled() {
            self.jobs.remove(&id);
        }
    }

    fn outstanding(&self) -> usize {
        self.workers.iter().map(|w| w.out).sum()
    }

    /// Receives and files results, handing out chunks, until `done` holds
    /// (or `deadline` passes: [`PoolError::Timeout`]).
    pub(crate) fn pump_until(
        &mut self,
        deadline: Option<Instant>,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), PoolError> {
        let mut backoff = Backoff::new();
        loop {
            if done(self) {
                return Ok(());
            }
            self.check_open()?;
            self.outbox.progress();
            if self.outstanding() == 0 && self.queue.is_empty() {
                return Err(PoolError::InvalidArgument(
                    "waiting for a result that nothing will produce".into(),
                ));
            }
            if let Some(probed) = proto::try_probe(&self.world, None) {
                let (msg, status) = proto::receive(probed);
                self.handle(&msg, mpi::point_to_point::Status::source_rank(&status));
                self.dispatch();
                backoff = Backoff::new();
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PoolError::Timeout);
            }
            backoff.pause();
        }
    }

    /// Receives what has come, without waiting.
    pub(crate) fn poll(&mut self) {
        if self.stopped {
            return;
        }
        while let Some(probed) = proto::try_probe(&self.world, None) {
            let (msg, status) = proto::receive(probed);
            self.handle(&msg, mpi::point_to_point::Status::source_rank(&status));
            self.dispatch();
        }
    }

    /// Waits until no serde chunk is queued or out.
    pub(crate) fn drain(&mut self) -> Result<(), PoolError> {
        self.pump_until(None, |d| d.queue.is_empty() && d.outstanding() == 0)
    }

    /// Runs what is queued to its end, then tells the workers to stop and
    /// finalises MPI (once).
    pub(crate) fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        // Chunks already out must come back: a worker blocks until its
        // result is received.
        self.queue.clear();
        let _ = self.pump_until(None, |d| d.outstanding() == 0);
        for w in &self.workers {
            self.outbox
                .send(&self.world, w.rank, proto::message(&[proto::STOP], &[]));
        }
        self.outbox.flush();
        self.stopped = true;
        self.closed = true;
        self.jobs.clear();
        drop(self.universe.take());
    }

    /// Runs a `Pod` call over items `0..len` of `input` and `output`, in
    /// chunks of `chunksize`: workers on this node work in the arrays
    /// themselves, the others get the input bytes and send the output's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_pod<T: Pod, R: Pod>(
        &mut self,
        runner: WireRef,
        task: WireRef,
        input: &ShmSlice<T>,
        output: &ShmSlice<R>,
        len: usize,
        chunksize: usize,
    ) -> Result<(), PoolError> {
        if self.closed {
            return Err(PoolError::Closed);
        }
        // A `Pod` call has the workers to itself.
        self.drain()?;
        let id = self.next_job;
        self.next_job += 1;
        let fd_of = |s: &shmproc_shm::Segment| -> Result<(u64, u64), PoolError> {
            use std::os::unix::fs::MetadataExt;
            let fd = s.fd();
            let file = std::fs::File::from(
                fd.try_clone_to_owned()
                    .map_err(|source| PoolError::Os { op: "dup", source })?,
            );
            let ino = file
                .metadata()
                .map_err(|source| PoolError::Os {
                    op: "fstat",
                    source,
                })?
                .ino();
            Ok((fd.as_raw_fd() as u64, ino))
        };
        let (in_fd, in_ino) = fd_of(input.segment())?;
        let (out_fd, out_ino) = fd_of(output.segment())?;
        let aliased = in_ino == out_ino;
        let pid = u64::from(std::process::id());
        let n_chunks = len.div_ceil(chunksize);
        let range = |c: usize| (c * chunksize, ((c + 1) * chunksize).min(len));
        let mut next = 0usize;
        let mut settled = 0usize;
        let mut first_error: Option<ChunkError> = None;
        let mut used_shm = vec![false; self.workers.len()];
        let mut in_place = vec![false; n_chunks];
        let mut inbuf: Vec<T> = Vec::new();
        let mut backoff = Backoff::new();
        while settled < n_chunks {
            // Hand out.
            while next < n_chunks {
                let Some(w) = (0..self.workers.len())
                    .filter(|&i| self.workers[i].out < DEPTH)
                    .min_by_key(|&i| self.workers[i].out)
                else {
                    break;
                };
                let (s, e) = range(next);
                let mut words = vec![0, id, next as u64, s as u64, e as u64];
                words.extend_from_slice(&runner.words());
                words.extend_from_slice(&task.words());
                let msg = if self.workers[w].shm && self.transport == Transport::Auto {
                    words[0] = proto::POD_SHM;
                    words.extend_from_slice(&[
                        pid,
                        in_fd,
                        in_ino,
                        input.len() as u64,
                        out_fd,
                        out_ino,
                        output.len() as u64,
                        u64::from(aliased),
                    ]);
                    used_shm[w] = true;
                    in_place[next] = true;
                    proto::message(&words, &[])
                } else {
                    words[0] = proto::POD;
                    inbuf.resize(e - s, T::zeroed());
                    input
                        .read_into(s, &mut inbuf)
                        .map_err(|e| PoolError::InvalidArgument(e.to_string()))?;
                    proto::message(&words, bytemuck::cast_slice(&inbuf))
                };
                self.outbox.send(&self.world, self.workers[w].rank, msg);
                self.workers[w].out += 1;
                next += 1;
            }
            // Collect.
            self.outbox.progress();
            let Some(probed) = proto::try_probe(&self.world, None) else {
                backoff.pause();
                continue;
            };
            backoff = Backoff::new();
            let (msg, status) = proto::receive(probed);
            let rank = mpi::point_to_point::Status::source_rank(&status);
            if let Some(i) = self.slot_of(rank) {
                self.workers[i].out = self.workers[i].out.saturating_sub(1);
            }
            let Ok(p) = proto::parse(&msg) else {
                return Err(PoolError::Codec(format!("a bad message from rank {rank}")));
            };
            let Some(c) = usize::try_from(p.w(2))
                .ok()
                .filter(|&c| p.w(1) == id && c < n_chunks)
            else {
                continue;
            };
            settled += 1;
            let (s, e) = range(c);
            let err = match p.w(0) {
                // Written in place.
                proto::DONE if in_place[c] => None,
                proto::DONE => {
                    if p.blob.len() != (e - s) * size_of::<R>() {
                        Some(ChunkError::Failed(format!(
                            "rank {rank} sent {} bytes for items {s}..{e}",
                            p.blob.len()
                        )))
                    } else {
                        let out: Vec<R> = bytemuck::pod_collect_to_vec(p.blob);
                        output
                            .write_from(s, &out)
                            .err()
                            .map(|e| ChunkError::Failed(e.to_string()))
                    }
                }
                proto::PANICKED => Some(ChunkError::Panic {
                    index: s + usize::try_from(p.w(3)).unwrap_or(0),
                    message: String::from_utf8_lossy(p.blob).into_owned(),
                }),
                _ => Some(ChunkError::Failed(
                    String::from_utf8_lossy(p.blob).into_owned(),
                )),
            };
            if let Some(e) = err {
                if first_error.as_ref().is_none_or(|f| e.index() < f.index()) {
                    first_error = Some(e);
                }
            }
        }
        for (w, used) in self.workers.iter().zip(&used_shm) {
            if *used {
                self.outbox
                    .send(&self.world, w.rank, proto::message(&[proto::RELEASE], &[]));
            }
        }
        // The caller may free or write the arrays once this returns: every
        // input byte sent is copied out by then.
        self.outbox.flush();
        match first_error {
            None => Ok(()),
            Some(ChunkError::Failed(m)) => Err(PoolError::Os {
                op: "running a chunk on a worker rank",
                source: std::io::Error::other(m),
            }),
            Some(e) => Err(e.to_pool_error()),
        }
    }
}
