//! The worker side: the control block, the job message, the loop a worker
//! runs, and the typed runners that a job names by [`CodeRef`].

use shmproc_shm::sync::real::{AtomicU32, AtomicU64, Ordering};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use shmproc_process::{CodeRef, PassAs};
use shmproc_shm::transfer::{Packer, Transfer, TransferError, Unpacker};
use shmproc_shm::{Offset, Pod, ShmRegion, ShmSlice, os};

// Control block: a `ShmSlice<u64>`.
/// Word: the cursor, `job << 32 | next chunk`.
pub(crate) const CURSOR: usize = 0;
/// Word whose low half is the completion futex word.
pub(crate) const WAKE: usize = 1;
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

/// Job header words: kind, job, n_chunks, chunksize, len, retry, the byte
/// length of the packed done flags (whose one descriptor comes first),
/// runner (4), task (4); then the packed done flags, then the packed arrays.
pub(crate) const HEADER_WORDS: usize = 7 + 2 * CodeRef::WORDS;

/// In a slot's low half: the chunk is claimed-to-be (the worker stored it
/// before its compare-and-swap on the cursor), not yet held.
pub(crate) const PENDING: u64 = 1 << 31;

/// The largest message a worker receives.
pub(crate) const MAX_MSG: usize = 1 << 16;

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

/// What a worker is started with: the control block, its socket end, its slot.
pub(crate) type WorkerArgs = (ShmSlice<u64>, Sock, u64);

/// A job's typed part, rebuilt in the worker: runs chunks.
pub(crate) trait RunChunk {
    /// Runs items `start..end`; on a panic, the item's index and message.
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)>;
}

/// What a runner gets: the task's code reference, the packed arrays.
#[derive(Debug)]
pub(crate) struct JobIn {
    pub(crate) task: CodeRef,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// A runner: `runner::<..>` monomorphised for the job's types, found in the
/// worker by its [`CodeRef`].
pub(crate) type Runner = fn(JobIn) -> Result<Box<dyn RunChunk>, String>;

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

fn unpack_arrays<T: Pod, R: Pod>(job: JobIn) -> Result<(ShmSlice<T>, ShmSlice<R>), String> {
    let mut u = Unpacker::new(&job.payload, job.fds);
    let a = <(ShmSlice<T>, ShmSlice<R>)>::unpack(&mut u).map_err(|e| e.to_string())?;
    u.finish().map_err(|e| e.to_string())?;
    Ok(a)
}

struct ItemRunner<T: Pod, R: Pod> {
    f: fn(T) -> R,
    input: ShmSlice<T>,
    output: ShmSlice<R>,
    inbuf: Vec<T>,
    outbuf: Vec<R>,
}

impl<T: Pod, R: Pod> RunChunk for ItemRunner<T, R> {
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)> {
        let n = end - start;
        self.inbuf.resize(n, T::zeroed());
        self.outbuf.resize(n, R::zeroed());
        self.input
            .read_into(start, &mut self.inbuf)
            .map_err(|e| (start, e.to_string()))?;
        let mut at = start;
        let (f, inbuf, outbuf) = (self.f, &self.inbuf, &mut self.outbuf);
        let r = catch_unwind(AssertUnwindSafe(|| {
            for (i, (x, y)) in inbuf.iter().zip(outbuf.iter_mut()).enumerate() {
                at = start + i;
                *y = f(*x);
            }
        }));
        if let Err(p) = r {
            return Err((at, panic_text(&*p)));
        }
        self.output
            .write_from(start, &self.outbuf)
            .map_err(|e| (start, e.to_string()))
    }
}

/// The runner of `map_into`.
pub(crate) fn item_runner<T: Pod, R: Pod>(job: JobIn) -> Result<Box<dyn RunChunk>, String> {
    let f: fn(T) -> R = job.task.resolve().map_err(|e| e.to_string())?;
    let (input, output) = unpack_arrays::<T, R>(job)?;
    Ok(Box::new(ItemRunner {
        f,
        input,
        output,
        inbuf: Vec::new(),
        outbuf: Vec::new(),
    }))
}

struct SliceRunner<T: Pod, R: Pod> {
    f: fn(&[T], &mut [R]),
    input: ShmSlice<T>,
    output: ShmSlice<R>,
    inbuf: Vec<T>,
    outbuf: Vec<R>,
}

impl<T: Pod, R: Pod> RunChunk for SliceRunner<T, R> {
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)> {
        let n = end - start;
        self.inbuf.resize(n, T::zeroed());
        self.outbuf.resize(n, R::zeroed());
        self.input
            .read_into(start, &mut self.inbuf)
            .map_err(|e| (start, e.to_string()))?;
        let (f, inbuf, outbuf) = (self.f, &self.inbuf, &mut self.outbuf);
        catch_unwind(AssertUnwindSafe(|| f(inbuf, outbuf)))
            .map_err(|p| (start, panic_text(&*p)))?;
        self.output
            .write_from(start, &self.outbuf)
            .map_err(|e| (start, e.to_string()))
    }
}

/// The runner of `map_slices`.
pub(crate) fn slice_runner<T: Pod, R: Pod>(job: JobIn) -> Result<Box<dyn RunChunk>, String> {
    let f: fn(&[T], &mut [R]) = job.task.resolve().map_err(|e| e.to_string())?;
    let (input, output) = unpack_arrays::<T, R>(job)?;
    Ok(Box::new(SliceRunner {
        f,
        input,
        output,
        inbuf: Vec::new(),
        outbuf: Vec::new(),
    }))
}

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

/// The worker process: waits for a job on its socket (blocked in `recvmsg`,
/// no spinning), claims chunks from the shared cursor, runs them, publishes
/// completion in its slot, and goes back to waiting; exits on a stop
/// message or when the parent's end closes.
pub(crate) fn worker_main((control, sock, slot): WorkerArgs) {
    let slot = slot as usize;
    let mut buf = vec![0u8; MAX_MSG];
    loop {
        let Ok((n, fds)) = os::recv_with_fds(sock.0.as_fd(), &mut buf) else {
            return;
        };
        let msg = &buf[..n];
        let Some(h) = words(msg, HEADER_WORDS) else {
            return;
        };
        if h[0] != MSG_JOB {
            return;
        }
        let (job, n_chunks, chunksize, len, retry) =
            (h[1], h[2], h[3] as usize, h[4] as usize, h[5]);
        let runner = code_ref(&h[7..]);
        let task = code_ref(&h[7 + CodeRef::WORDS..]);
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
            continue;
        };
        let job_in = JobIn {
            task,
            payload: rest.to_vec(),
            fds: rest_fds,
        };
        let mut run = match runner.resolve::<Runner>() {
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
        };
        let state = word(&control, state_index(slot));
        let busy = word(&control, busy_index(slot));
        busy.store(job, Ordering::SeqCst);
        // `held`: whether the slot already shows the chunk as held.
        let mut do_chunk = |c: u64, held: bool| {
            if !held {
                // Hold the chunk (the slot's low half was 0).
                state.fetch_add(c + 1, Ordering::SeqCst);
            }
            let start = c as usize * chunksize;
            let end = (start + chunksize).min(len);
            if let Some(run) = run.as_mut() {
                if let Err((index, message)) = run.run(start, end) {
                    report(&sock.0, job, index, &message);
                }
            }
            // The chunk's done flag first (the pool reads it when this worker
            // dies before the next step), then done + 1 and held = 0 in one
            // atomic step.
            flag(&flags, c).store(1, Ordering::SeqCst);
            state.fetch_add((1u64 << 32).wrapping_sub(c + 1), Ordering::SeqCst);
            let wake = wake_word(&control);
            wake.fetch_add(1, Ordering::Release);
            os::futex_wake(wake, 1);
        };
        if retry != NO_CHUNK {
            do_chunk(retry, false);
        }
        let cursor = word(&control, CURSOR);
        loop {
            let v = cursor.load(Ordering::SeqCst);
            let c = v & 0xffff_ffff;
            if v >> 32 != job || c >= n_chunks {
                break;
            }
            // Record the chunk as pending before claiming it, so that the
            // pool can tell, if this worker dies right after the claim,
            // which chunk it took (see `Inner::lost_chunk`).
            state.fetch_add(PENDING | (c + 1), Ordering::SeqCst);
            if cursor
                .compare_exchange(v, v + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                state.fetch_sub(PENDING, Ordering::SeqCst);
                do_chunk(c, true);
            } else {
                state.fetch_sub(PENDING | (c + 1), Ordering::SeqCst);
            }
        }
        busy.store(0, Ordering::SeqCst);
    }
}
