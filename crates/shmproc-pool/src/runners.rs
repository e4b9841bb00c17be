//! The typed code a worker runs, each monomorphised for a call's types and
//! found in the worker by its [`CodeRef`]: the `Pod` runners (a chunk of the
//! shared arrays, in place), the serde runners (a batch of encoded tasks in,
//! encoded results out) and the initializer's.

use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_process::{CodeRef, StarFn};
use shmproc_shm::transfer::{Transfer, Unpacker};
use shmproc_shm::{Pod, ShmSlice, os};

use crate::inplace::with_chunk;

/// The text of a panic payload.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

// ---- Pod: chunks of shared arrays ----

/// A `Pod` job's typed part, rebuilt in the worker: runs chunks.
pub(crate) trait RunChunk {
    /// Runs items `start..end`; on a panic, the item's index and message.
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)>;
}

/// What a `Pod` runner gets: the task's code reference, the packed arrays,
/// and whether they are one segment (then the chunk is copied, not borrowed).
#[derive(Debug)]
pub(crate) struct JobIn {
    pub(crate) task: CodeRef,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) aliased: bool,
}

/// A `Pod` runner: `item_runner::<..>` or `slice_runner::<..>`.
pub(crate) type Runner = fn(JobIn) -> Result<Box<dyn RunChunk>, String>;

fn unpack_arrays<T: Pod, R: Pod>(job: JobIn) -> Result<(ShmSlice<T>, ShmSlice<R>), String> {
    let mut u = Unpacker::new(&job.payload, job.fds);
    let a = <(ShmSlice<T>, ShmSlice<R>)>::unpack(&mut u).map_err(|e| e.to_string())?;
    u.finish().map_err(|e| e.to_string())?;
    Ok(a)
}

/// The shared arrays of a `Pod` job and how to reach a chunk of them.
struct Arrays<T: Pod, R: Pod> {
    input: ShmSlice<T>,
    output: ShmSlice<R>,
    /// Input and output are one segment: copy through these.
    copies: Option<(Vec<T>, Vec<R>)>,
    populated_in: Populated,
    populated_out: Populated,
}

impl<T: Pod, R: Pod> Arrays<T, R> {
    fn new(job: JobIn) -> Result<Self, String> {
        let aliased = job.aliased;
        let (input, output) = unpack_arrays::<T, R>(job)?;
        Ok(Self {
            populated_in: Populated::new(input.len() * size_of::<T>()),
            populated_out: Populated::new(output.len() * size_of::<R>()),
            input,
            output,
            copies: aliased.then(|| (Vec::new(), Vec::new())),
        })
    }

    /// Runs `f` on the chunk `start..end`: in place, or through copies when
    /// input and output are one segment.
    fn chunk<X>(
        &mut self,
        start: usize,
        end: usize,
        f: impl FnOnce(&[T], &mut [R]) -> X,
    ) -> Result<X, (usize, String)> {
        let bad = || (start, format!("chunk {start}..{end} out of bounds"));
        match &mut self.copies {
            None => {
                // Map the chunk's pages in bulk the first time this
                // mapping reaches them: one call per 1 MiB block instead of
                // a page fault per 4 KiB (a fresh mapping of arrays the
                // parent filled has none of their pages yet). Advice only:
                // a failure leaves the faults to happen.
                self.populated_in.populate(
                    self.input.as_ptr().cast(),
                    start * size_of::<T>(),
                    end * size_of::<T>(),
                    false,
                );
                self.populated_out.populate(
                    self.output.as_ptr().cast(),
                    start * size_of::<R>(),
                    end * size_of::<R>(),
                    true,
                );
                with_chunk(&mut self.input, &mut self.output, start, end, f).ok_or_else(bad)
            }
            Some((inbuf, outbuf)) => {
                inbuf.resize(end - start, T::zeroed());
                outbuf.resize(end - start, R::zeroed());
                self.input.read_into(start, inbuf).map_err(|_| bad())?;
                self.output.read_into(start, outbuf).map_err(|_| bad())?;
                let x = f(inbuf, outbuf);
                self.output.write_from(start, outbuf).map_err(|_| bad())?;
                Ok(x)
            }
        }
    }
}

/// Which 1 MiB blocks of an array's mapping were mapped in bulk already.
#[derive(Default)]
struct Populated {
    bytes: usize,
    done: Vec<bool>,
}

impl Populated {
    const BLOCK: usize = 1 << 20;

    fn new(bytes: usize) -> Self {
        Self {
            bytes,
            done: vec![false; bytes.div_ceil(Self::BLOCK)],
        }
    }

    /// Maps the blocks that hold bytes `from..to` of the array at `base`,
    /// those not mapped yet, whole.
    fn populate(&mut self, base: *mut u8, from: usize, to: usize, write: bool) {
        let last = to.div_ceil(Self::BLOCK).min(self.done.len());
        for b in from / Self::BLOCK..last {
            if std::mem::replace(&mut self.done[b], true) {
                continue;
            }
            let a = base as usize + b * Self::BLOCK;
            let e = base as usize + ((b + 1) * Self::BLOCK).min(self.bytes);
            let _ = if write {
                os::populate_write(a, e)
            } else {
                os::populate_read(a, e)
            };
        }
    }
}

struct ItemRunner<T: Pod, R: Pod> {
    f: fn(T) -> R,
    arrays: Arrays<T, R>,
}

impl<T: Pod, R: Pod> RunChunk for ItemRunner<T, R> {
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)> {
        let f = self.f;
        self.arrays.chunk(start, end, |input, output| {
            let mut at = start;
            catch_unwind(AssertUnwindSafe(|| {
                for (i, (x, y)) in input.iter().zip(output.iter_mut()).enumerate() {
                    at = start + i;
                    *y = f(*x);
                }
            }))
            .map_err(|p| (at, panic_text(&*p)))
        })?
    }
}

/// The runner of `map_into`.
pub(crate) fn item_runner<T: Pod, R: Pod>(job: JobIn) -> Result<Box<dyn RunChunk>, String> {
    let f: fn(T) -> R = job.task.resolve().map_err(|e| e.to_string())?;
    Ok(Box::new(ItemRunner {
        f,
        arrays: Arrays::new(job)?,
    }))
}

struct SliceRunner<T: Pod, R: Pod> {
    f: fn(&[T], &mut [R]),
    arrays: Arrays<T, R>,
}

impl<T: Pod, R: Pod> RunChunk for SliceRunner<T, R> {
    fn run(&mut self, start: usize, end: usize) -> Result<(), (usize, String)> {
        let f = self.f;
        self.arrays.chunk(start, end, |input, output| {
            catch_unwind(AssertUnwindSafe(|| f(input, output)))
                .map_err(|p| (start, panic_text(&*p)))
        })?
    }
}

/// The runner of `map_slices`.
pub(crate) fn slice_runner<T: Pod, R: Pod>(job: JobIn) -> Result<Box<dyn RunChunk>, String> {
    let f: fn(&[T], &mut [R]) = job.task.resolve().map_err(|e| e.to_string())?;
    Ok(Box::new(SliceRunner {
        f,
        arrays: Arrays::new(job)?,
    }))
}

// ---- serde: batches of encoded tasks ----

/// Why a serde task failed in the worker.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The task panicked on the chunk's item `offset`.
    Panic { offset: usize, message: String },
    /// An input could not be decoded or a result encoded.
    Codec(String),
}

/// A serde call's typed part in the worker: runs chunks of encoded tasks.
pub(crate) trait RunTasks {
    /// Decodes `count` inputs from `input`, runs the task on each and
    /// appends the `count` encoded results to `out`.
    fn run(&mut self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure>;
}

/// A serde runner: `map_runner::<..>` or `star_runner::<..>`.
pub(crate) type TaskRunner = fn(CodeRef) -> Result<Box<dyn RunTasks>, String>;

/// Runs `call` on each of `count` inputs decoded from `input`.
fn run_each<A: DeserializeOwned, R: Serialize>(
    count: usize,
    mut input: &[u8],
    out: &mut Vec<u8>,
    call: impl Fn(A) -> R,
) -> Result<(), Failure> {
    for k in 0..count {
        let (a, rest) = postcard::take_from_bytes::<A>(input)
            .map_err(|e| Failure::Codec(format!("decoding input {k} of the chunk: {e}")))?;
        input = rest;
        let r = catch_unwind(AssertUnwindSafe(|| call(a))).map_err(|p| Failure::Panic {
            offset: k,
            message: panic_text(&*p),
        })?;
        crate::wire::encode_into(&r, out)
            .map_err(|e| Failure::Codec(format!("encoding result {k} of the chunk: {e}")))?;
    }
    if !input.is_empty() {
        return Err(Failure::Codec(format!(
            "{} bytes after the chunk's {count} inputs",
            input.len()
        )));
    }
    Ok(())
}

struct MapRunner<T, R> {
    f: fn(T) -> R,
}

impl<T: DeserializeOwned, R: Serialize> RunTasks for MapRunner<T, R> {
    fn run(&mut self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        run_each(count, input, out, self.f)
    }
}

/// The runner of `map`, `imap`, `imap_unordered`, `map_async`.
pub(crate) fn map_runner<T: DeserializeOwned + 'static, R: Serialize + 'static>(
    task: CodeRef,
) -> Result<Box<dyn RunTasks>, String> {
    let f: fn(T) -> R = task.resolve().map_err(|e| e.to_string())?;
    Ok(Box::new(MapRunner { f }))
}

struct StarRunner<Args, F> {
    f: F,
    _args: std::marker::PhantomData<fn(Args)>,
}

impl<Args: DeserializeOwned, F: StarFn<Args>> RunTasks for StarRunner<Args, F>
where
    F::Output: Serialize,
{
    fn run(&mut self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        let f = self.f;
        run_each(count, input, out, |a: Args| f.call(a))
    }
}

/// The runner of `starmap`, `apply` and their async forms.
pub(crate) fn star_runner<Args: DeserializeOwned + 'static, F: StarFn<Args>>(
    task: CodeRef,
) -> Result<Box<dyn RunTasks>, String>
where
    F::Output: Serialize,
{
    let f: F = task.resolve_star().map_err(|e| e.to_string())?;
    Ok(Box::new(StarRunner {
        f,
        _args: std::marker::PhantomData,
    }))
}

// ---- the initializer ----

/// What the initializer's runner gets.
#[derive(Debug)]
pub(crate) struct InitIn {
    pub(crate) f: CodeRef,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The initializer's runner: `init_runner::<A>`.
pub(crate) type InitRunner = fn(InitIn) -> Result<(), String>;

/// Unpacks the initializer's arguments and runs it; its panic message.
pub(crate) fn init_runner<A: Transfer + 'static>(init: InitIn) -> Result<(), String> {
    let f: fn(A) = init.f.resolve().map_err(|e| e.to_string())?;
    let mut u = Unpacker::new(&init.payload, init.fds);
    let a = A::unpack(&mut u).map_err(|e| format!("initializer arguments: {e}"))?;
    u.finish()
        .map_err(|e| format!("initializer arguments: {e}"))?;
    catch_unwind(AssertUnwindSafe(|| f(a)))
        .map_err(|p| format!("initializer panicked: {}", panic_text(&*p)))
}
