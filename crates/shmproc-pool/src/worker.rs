//! The worker side: the control block, the messages, and the loop a worker
//! runs (the typed code it calls is in `runners`).

use shmproc_shm::sync::real::{AtomicU32, AtomicU64, Ordering};
use std::os::fd::{AsFd, OwnedFd};

use shmproc_process::{CodeRef, PassAs};
use shmproc_shm::transfer::{Packer, Transfer, TransferError, Unpacker};
use shmproc_shm::{Offset, ShmRegion, ShmSlice, os};

use crate::runners::{Failure, InitIn, InitRunner, JobIn, RunChunk, RunTasks, Runner, TaskRunner};
use crate::wire::{self, MAX_MSG};

// Control block: a `ShmSlice<u64>`.
/// Word: the cursor, `job << 32 | next chunk`.
pub(crate) const CURSOR: usize = 0;
/// Word whose low half is the completion futex word.
pub(crate) const WAKE: usize = 1;
/// Word: chunks of the current job done (the last one wakes the pool).
pub(crate) const DONE: usize = 2;
/// First per-worker slot: worker `i`'s two words at `SLOTS + 2 i`: its state
/// (`done chunks << 32 | held chunk + 1`, with [`PENDING`] while it claims)
/// and the job it is working on (0 once it waits again).
pub(crate) const SLOTS: usize = 8;

/// The state word of worker `i`'s slot.
pub(crate) fn state_index(i: usize) -> usize {
    SLOTS + 2 * i
}

/// The busy word of worker `i`'s slot.
pub(crate) fn busy_index(i: usize) -> usize {
    SLOTS + 2 * i + 1
}

/// "No chunk" in a job message's retry field.
pub(crate) const NO_CHUNK: u64 = u64::MAX;

/// Message kinds, first word of every message.
pub(crate) const MSG_JOB: u64 = 1;
pub(crate) const MSG_STOP: u64 = 2;
pub(crate) const MSG_PANIC: u64 = 3;
/// A frame: a batch of serde tasks (`batch, n, runner, task`, then per
/// chunk `count, bytes`; the blob is the chunks' encoded inputs).
pub(crate) const MSG_BATCH: u64 = 4;
/// A frame: a batch's results (`batch, n`, then per chunk `status, offset,
/// bytes`; the blob is the chunks' encoded results or failure texts).
pub(crate) const MSG_RESULTS: u64 = 5;
/// A frame: the worker ran its initializer and waits for work.
pub(crate) const MSG_READY: u64 = 6;
/// A frame: the initializer failed (the blob is why); the worker exits.
pub(crate) const MSG_INIT_FAILED: u64 = 7;

/// A chunk's status in [`MSG_RESULTS`].
pub(crate) const TASK_OK: u64 = 0;
pub(crate) const TASK_PANIC: u64 = 1;
pub(crate) const TASK_CODEC: u64 = 2;

/// Job header words: kind, job, n_chunks, chunksize, len, retry, the byte
/// length of the packed done flags (whose one descriptor comes first),
/// whether input and output are one segment, runner (4), task (4); then
/// the packed done flags, then the packed arrays.
pub(crate) const HEADER_WORDS: usize = 8 + 2 * CodeRef::WORDS;

/// In a slot's low half: the chunk is claimed-to-be (the worker stored it
/// before its compare-and-swap on the cursor), not yet held.
pub(crate) const PENDING: u64 = 1 << 31;

/// The `u64` word `i` of the control block, as an atomic.
pub(crate) fn word(control: &ShmSlice<u64>, i: usize) -> &AtomicU64 {
    ShmRegion::new(control.segment(), Offset::in_payload(0), control.len() * 8)
        .ok()
        .and_then(|r| r.atomic_u64_at(i * 8))
        .expect("control word in bounds")
}

/// The completion futex word.
pub(crate) fn wake_word(control: &ShmSlice<u64>) -> &AtomicU32 {
    ShmRegion::new(control.segment(), Offset::in_payload(0), control.len() * 8)
        .ok()
        .and_then(|r| r.atomic_u32_at(WAKE * 8))
        .expect("wake word in bounds")
}

/// The done flag of chunk `c` in a job's flags array.
pub(crate) fn flag(flags: &ShmSlice<u32>, c: u64) -> &AtomicU32 {
    ShmRegion::new(flags.segment(), Offset::in_payload(0), flags.len() * 4)
        .ok()
        .and_then(|r| r.atomic_u32_at(c as usize * 4))
        .expect("done flag in bounds")
}

/// A socket end passed to a worker.
#[derive(Debug)]
pub(crate) struct Sock(pub(crate) OwnedFd);

impl Transfer for Sock {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        p.put_fd(&self.0)
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        Ok(Sock(u.take_fd()?))
    }
}

impl PassAs<Sock> for Sock {
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
        self.pack(p)
    }
}

/// The initializer a worker runs once before anything else: its runner
/// and `fn` (code references) and its packed arguments.
#[derive(Debug)]
pub(crate) struct Init {
    pub(crate) runner: CodeRef,
    pub(crate) f: CodeRef,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The most descriptors an initializer's arguments carry.
const MAX_INIT_FDS: u64 = 64;

impl Transfer for Init {
    fn pack(&self, p: &mut Packer) -> Result<(), TransferError> {
        for w in self.runner.to_words().iter().chain(&self.f.to_words()) {
            p.put_u64(*w);
        }
        p.put_blob(&self.payload);
        p.put_u64(self.fds.len() as u64);
        for fd in &self.fds {
            p.put_fd(fd)?;
        }
        Ok(())
    }
    fn unpack(u: &mut Unpacker<'_>) -> Result<Self, TransferError> {
        let mut w = [0u64; 2 * CodeRef::WORDS];
        for x in &mut w {
            *x = u.take_u64()?;
        }
        let payload = u.take_blob()?.to_vec();
        let n = u.take_u64()?.min(MAX_INIT_FDS);
        let fds = (0..n).map(|_| u.take_fd()).collect::<Result<_, _>>()?;
        Ok(Init {
            runner: code_ref(&w[..CodeRef::WORDS]),
            f: code_ref(&w[CodeRef::WORDS..]),
            payload,
            fds,
        })
    }
}

impl PassAs<Init> for Init {
    fn pack_as(&self, p: &mut Packer) -> Result<(), TransferError> {
        self.pack(p)
    }
}

/// What a worker is started with: the control block, its socket end, its
/// slot, `maxtasksperchild` (0: no limit), the initializer.
pub(crate) type WorkerArgs = (ShmSlice<u64>, Sock, u64, u64, Option<Init>);

fn words(bytes: &[u8], n: usize) -> Option<Vec<u64>> {
    let b = bytes.get(..n * 8)?;
    Some(
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
    )
}

fn code_ref(w: &[u64]) -> CodeRef {
    let mut a = [0u64; CodeRef::WORDS];
    a.copy_from_slice(&w[..CodeRef::WORDS]);
    CodeRef::from_words(a)
}

/// Sends a panic (or setup failure) report for `job` to the parent.
fn report(sock: &OwnedFd, job: u64, index: usize, message: &str) {
    let mut b = Vec::with_capacity(24 + message.len());
    for w in [MSG_PANIC, job, index as u64] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    let cap = MAX_MSG - 64;
    b.extend_from_slice(&message.as_bytes()[..message.len().min(cap)]);
    let _ = os::send_with_fds(sock.as_fd(), &b, &[]);
}

/// The worker process: runs the initializer and reports ready, then waits
/// for work on its socket (blocked in `recvmsg`, no spinning): a `Pod` job
/// (chunks claimed from the shared cursor, completion published in its
/// slot) or a batch of serde tasks (results sent back as one frame). Exits
/// on a stop message, when the parent's end closes, or after
/// `maxtasksperchild` tasks.
pub(crate) fn worker_main((control, sock, slot, max_tasks, init): WorkerArgs) {
    let slot = slot as usize;
    if let Some(init) = init {
        let r = init
            .runner
            .resolve::<InitRunner>()
            .map_err(|e| e.to_string());
        let r = r.and_then(|run| {
            run(InitIn {
                f: init.f,
                payload: init.payload,
                fds: init.fds,
            })
        });
        if let Err(message) = r {
            let _ = wire::send_frame(sock.0.as_fd(), MSG_INIT_FAILED, &[], message.as_bytes());
            return;
        }
    }
    if wire::send_frame(sock.0.as_fd(), MSG_READY, &[], &[]).is_err() {
        return;
    }
    let mut tasks_done = 0u64;
    let limit = if max_tasks == 0 { u64::MAX } else { max_tasks };
    let mut buf = vec![0u8; MAX_MSG];
    let mut serde_cache: Option<([u64; 2 * CodeRef::WORDS], Box<dyn RunTasks>)> = None;
    let mut pod_cache: PodCache = Vec::new();
    let owner = os::Pid::from_u32(control.segment().creator_pid());
    while tasks_done < limit {
        while !pod_cache.is_empty() {
            // Idle with recent calls' arrays mapped: every `CACHE_IDLE`, let
            // go of those the pool's process no longer maps, so that memory
            // the caller freed is not held here.
            let ready = os::poll_readable(&[sock.0.as_fd()], Some(CACHE_IDLE));
            if ready.is_ok_and(|r| r[0]) {
                break;
            }
            pod_cache.retain(|(_, files, _)| {
                owner.is_some_and(|o| {
                    files
                        .iter()
                        .all(|&(dev, ino)| os::maps_file(o, dev, ino) == Some(true))
                })
            });
        }
        let Ok((n, fds)) = os::recv_with_fds(sock.0.as_fd(), &mut buf) else {
            return;
        };
        let msg = &buf[..n];
        match words(msg, 1).map(|w| w[0]) {
            Some(MSG_JOB) => {
                tasks_done += run_pod_job(
                    &control,
                    &sock,
                    slot,
                    msg,
                    fds,
                    limit - tasks_done,
                    &mut pod_cache,
                );
            }
            Some(MSG_BATCH) => {
                let Ok(frame) = wire::parse_frame(msg, fds) else {
                    return;
                };
                let Some(done) = run_batch(&sock, &frame, &mut serde_cache) else {
                    return;
                };
                tasks_done += done;
            }
            _ => return,
        }
    }
}

/// The runners of the last few `Pod` calls, with their arrays mapped, each
/// with what identifies its call (code references, the arrays' files, the
/// packed arguments) and the arrays' files; most recent last.
pub(crate) type PodCache = Vec<(Vec<u64>, Vec<(u64, u64)>, Box<dyn RunChunk>)>;

/// How many `Pod` calls' runners a worker keeps.
const CACHED_RUNNERS: usize = 4;

/// How often an idle worker checks that the pool's process still maps the
/// arrays it keeps mapped.
const CACHE_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The file behind a descriptor: device and inode.
fn file_id(fd: &OwnedFd) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::from(fd.try_clone().ok()?);
    let m = f.metadata().ok()?;
    Some((m.dev(), m.ino()))
}

/// Runs a batch of serde tasks and sends their results; the number of
/// tasks, or `None` when the batch is malformed or the parent is gone.
fn run_batch(
    sock: &Sock,
    frame: &wire::Frame,
    cache: &mut Option<([u64; 2 * CodeRef::WORDS], Box<dyn RunTasks>)>,
) -> Option<u64> {
    let w = &frame.words;
    let (batch, n) = (*w.first()?, usize::try_from(*w.get(1)?).ok()?);
    let codes: [u64; 2 * CodeRef::WORDS] = w.get(2..2 + 2 * CodeRef::WORDS)?.try_into().ok()?;
    let chunks = w.get(2 + 2 * CodeRef::WORDS..)?;
    if chunks.len() != 2 * n {
        return None;
    }
    let mut reply = vec![batch, n as u64];
    let mut out = Vec::new();
    let mut setup_error = None;
    if cache.as_ref().is_none_or(|(c, _)| *c != codes) {
        *cache = None;
        let r = code_ref(&codes[..CodeRef::WORDS])
            .resolve::<TaskRunner>()
            .map_err(|e| e.to_string())
            .and_then(|r| r(code_ref(&codes[CodeRef::WORDS..])));
        match r {
            Ok(r) => *cache = Some((codes, r)),
            Err(e) => setup_error = Some(e),
        }
    }
    let mut input = frame.blob.as_slice();
    for c in chunks.chunks_exact(2) {
        let (count, len) = (usize::try_from(c[0]).ok()?, usize::try_from(c[1]).ok()?);
        let bytes = input.get(..len)?;
        input = &input[len..];
        let start = out.len();
        let r = match (&setup_error, cache.as_mut()) {
            (None, Some((_, run))) => run.run(count, bytes, &mut out),
            (Some(e), _) => Err(Failure::Codec(format!("worker setup failed: {e}"))),
            (None, None) => Err(Failure::Codec("worker setup failed".into())),
        };
        let (status, offset) = match r {
            Ok(()) => (TASK_OK, 0),
            Err(f) => {
                out.truncate(start);
                let (status, offset, text) = match f {
                    Failure::Panic { offset, message } => (TASK_PANIC, offset, message),
                    Failure::Codec(m) => (TASK_CODEC, 0, m),
                };
                out.extend_from_slice(text.as_bytes());
                (status, offset as u64)
            }
        };
        reply.extend_from_slice(&[status, offset, (out.len() - start) as u64]);
    }
    wire::send_frame(sock.0.as_fd(), MSG_RESULTS, &reply, &out).ok()?;
    Some(n as u64)
}

/// Runs a `Pod` job's chunks until the cursor is spent or `budget` chunks
/// are done; the number done.
fn run_pod_job(
    control: &ShmSlice<u64>,
    sock: &Sock,
    slot: usize,
    msg: &[u8],
    fds: Vec<OwnedFd>,
    budget: u64,
    cache: &mut PodCache,
) -> u64 {
    let n = msg.len();
    let Some(h) = words(msg, HEADER_WORDS) else {
        return 0;
    };
    let (job, n_chunks, chunksize, len, retry, aliased) =
        (h[1], h[2], h[3] as usize, h[4] as usize, h[5], h[7] != 0);
    let runner = code_ref(&h[8..]);
    let task = code_ref(&h[8 + CodeRef::WORDS..]);
    let mut fds = fds;
    let (flags_bytes, rest) =
        msg[HEADER_WORDS * 8..].split_at((h[6] as usize).min(n - HEADER_WORDS * 8));
    let rest_fds = if fds.is_empty() {
        Vec::new()
    } else {
        fds.split_off(1)
    };
    let mut u = Unpacker::new(flags_bytes, fds);
    let Ok(flags) = ShmSlice::<u32>::unpack(&mut u) else {
        report(&sock.0, job, 0, "worker setup failed: bad done flags");
        return 0;
    };
    // The same arrays, task and types as a recent `Pod` call: its runner,
    // with the arrays still mapped, serves again, so a repeated call on
    // the same arrays takes no page fault.
    let mut key: Vec<u64> = h[7..].to_vec();
    let mut files = Vec::with_capacity(rest_fds.len());
    for fd in &rest_fds {
        match file_id(fd) {
            Some((dev, ino)) => {
                key.extend_from_slice(&[dev, ino]);
                files.push((dev, ino));
            }
            None => key.push(u64::MAX),
        }
    }
    key.extend(rest.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    }));
    let cached = cache
        .iter()
        .position(|(k, _, _)| *k == key)
        .map(|i| cache.remove(i));
    let mut run = match cached {
        Some((_, _, run)) => Some(run),
        None => {
            let job_in = JobIn {
                task,
                payload: rest.to_vec(),
                fds: rest_fds,
                aliased,
            };
            match runner.resolve::<Runner>() {
                Ok(r) => match r(job_in) {
                    Ok(run) => Some(run),
                    Err(e) => {
                        report(&sock.0, job, 0, &format!("worker setup failed: {e}"));
                        None
                    }
                },
                Err(e) => {
                    report(&sock.0, job, 0, &format!("worker setup failed: {e}"));
                    None
                }
            }
        }
    };
    let state = word(control, state_index(slot));
    let busy = word(control, busy_index(slot));
    busy.store(job, Ordering::SeqCst);
    let done = crate::claim::work(
        word(control, CURSOR),
        state,
        word(control, DONE),
        |c| flag(&flags, c),
        (job, n_chunks, retry, budget),
        |c| {
            let start = c as usize * chunksize;
            let end = (start + chunksize).min(len);
            if let Some(run) = run.as_mut() {
                if let Err((index, message)) = run.run(start, end) {
                    report(&sock.0, job, index, &message);
                }
            }
        },
        || {
            let wake = wake_word(control);
            wake.fetch_add(1, Ordering::Release);
            os::futex_wake(wake, 1);
        },
    );
    busy.store(0, Ordering::SeqCst);
    if let Some(run) = run {
        if cache.len() >= CACHED_RUNNERS {
            cache.remove(0);
        }
        if files.len() == 2 {
            cache.push((key, files, run));
        }
    }
    if done >= budget {
        // Wake the pool so that it replaces this worker at once.
        let wake = wake_word(control);
        wake.fetch_add(1, Ordering::Release);
        os::futex_wake(wake, 1);
    }
    done
}
