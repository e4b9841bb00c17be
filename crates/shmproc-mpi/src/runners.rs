//! The typed code a worker rank runs, each monomorphised for a call's types
//! on the driver and found on the worker by its [`WireRef`]: the serde
//! runners (encoded tasks in, encoded results out) and the `Pod` runners
//! (a chunk of input bytes in, output bytes out; or a chunk of the driver's
//! own shared arrays, in place, on the driver's node).

use std::any::Any;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shmproc_process::StarFn;
use shmproc_shm::{Pod, ShmSlice};

use crate::ident::WireRef;

/// The text of a panic payload.
pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Why a chunk failed on a worker.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The task panicked on the chunk's item `offset`.
    Panic { offset: usize, message: String },
    /// Anything else: decoding, encoding, a segment that does not open.
    Other(String),
}

/// Appends `value`, postcard-encoded, to `out` (no allocation per value).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    postcard::serialize_with_flavor(value, Append(out)).map_err(|e| e.to_string())
}

/// A postcard flavor that appends to a `Vec` it borrows.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

// ---- serde ----

/// A serde call's typed part on a worker.
pub(crate) trait RunTasks {
    /// Decodes `count` inputs from `input`, runs the task on each, appends
    /// the encoded results to `out`.
    fn run(&self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure>;
}

/// A serde runner: `map_runner::<..>` or `star_runner::<..>`.
pub(crate) type TaskRunner = fn(WireRef) -> Result<Box<dyn RunTasks>, String>;

fn run_each<A: DeserializeOwned, R: Serialize>(
    count: usize,
    mut input: &[u8],
    out: &mut Vec<u8>,
    call: impl Fn(A) -> R,
) -> Result<(), Failure> {
    for k in 0..count {
        let (a, rest) = postcard::take_from_bytes::<A>(input)
            .map_err(|e| Failure::Other(format!("decoding input {k} of the chunk: {e}")))?;
        input = rest;
        let r = catch_unwind(AssertUnwindSafe(|| call(a))).map_err(|p| Failure::Panic {
            offset: k,
            message: panic_text(&*p),
        })?;
        encode_into(&r, out)
            .map_err(|e| Failure::Other(format!("encoding result {k} of the chunk: {e}")))?;
    }
    if !input.is_empty() {
        return Err(Failure::Other(format!(
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
    fn run(&self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        run_each(count, input, out, self.f)
    }
}

/// The runner of `map`, `imap`, `imap_unordered`.
pub(crate) fn map_runner<T: DeserializeOwned + 'static, R: Serialize + 'static>(
    task: WireRef,
) -> Result<Box<dyn RunTasks>, String> {
    let f: fn(T) -> R = task.resolve()?;
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
    fn run(&self, count: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        let f = self.f;
        run_each(count, input, out, |a: Args| f.call(a))
    }
}

/// The runner of `starmap`, `apply` and `apply_async`.
pub(crate) fn star_runner<Args: DeserializeOwned + 'static, F: StarFn<Args>>(
    task: WireRef,
) -> Result<Box<dyn RunTasks>, String>
where
    F::Output: Serialize,
{
    let f: F = task.resolve_star()?;
    Ok(Box::new(StarRunner {
        f,
        _args: std::marker::PhantomData,
    }))
}

// ---- Pod ----

/// Where a `POD_SHM` chunk's arrays are: the driver's descriptors, reached
/// through `/proc/<pid>/fd/<fd>` on the same node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShmArrays {
    pub(crate) pid: u64,
    pub(crate) input: (u64, u64, u64),
    pub(crate) output: (u64, u64, u64),
    pub(crate) aliased: bool,
}

/// The driver's arrays a worker mapped, by `(pid, fd, inode, len, type)`,
/// until the driver's `RELEASE` at the end of the call.
#[derive(Default)]
pub(crate) struct Mapped(HashMap<Key, Box<dyn Any>>);

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} arrays)", self.0.len())
    }
}

impl Mapped {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Maps the driver's array `(fd, inode, len)` of `T`s here, once;
    /// returns its key.
    fn ensure<T: Pod>(&mut self, pid: u64, (fd, ino, len): (u64, u64, u64)) -> Result<Key, String> {
        let key = (
            pid,
            fd,
            ino,
            len,
            shmproc_process::__private::type_hash::<T>(),
        );
        if self.0.contains_key(&key) {
            return Ok(key);
        }
        let path = format!("/proc/{pid}/fd/{fd}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("opening {path}: {e}"))?;
        use std::os::unix::fs::MetadataExt;
        let got = file.metadata().map_err(|e| e.to_string())?.ino();
        if got != ino {
            return Err(format!("{path} is inode {got}, the driver sent {ino}"));
        }
        let s = ShmSlice::<T>::open_fd(OwnedFd::from(file)).map_err(|e| e.to_string())?;
        if s.len() as u64 != len {
            return Err(format!(
                "{path} holds {} items, the driver sent {len}",
                s.len()
            ));
        }
        self.0.insert(key, Box::new(s));
        Ok(key)
    }

    fn slice<T: Pod>(&self, key: &Key) -> Result<&ShmSlice<T>, String> {
        self.0
            .get(key)
            .and_then(|b| b.downcast_ref::<ShmSlice<T>>())
            .ok_or_else(|| "array not mapped".to_owned())
    }
}

/// A mapped array's key: `(pid, fd, inode, len, type hash)`.
type Key = (u64, u64, u64, u64, u64);

/// A `Pod` call's typed part on a worker.
pub(crate) trait RunPod {
    /// Runs items `start..` on `input` (the chunk's input bytes), appending
    /// the output bytes to `out`.
    fn run_bytes(&self, start: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure>;
    /// Runs items `start..end` in the driver's own arrays.
    fn run_shm(
        &self,
        maps: &mut Mapped,
        at: &ShmArrays,
        start: usize,
        end: usize,
    ) -> Result<(), Failure>;
}

/// A `Pod` runner: `item_runner::<..>` or `slice_runner::<..>`.
pub(crate) type PodRunner = fn(WireRef) -> Result<Box<dyn RunPod>, String>;

/// How a `Pod` task is called on a chunk: item by item or as one slice.
trait ChunkFn<T, R> {
    fn call(&self, start: usize, input: &[T], output: &mut [R]) -> Result<(), Failure>;
}

struct Items<T, R>(fn(T) -> R);

impl<T: Pod, R: Pod> ChunkFn<T, R> for Items<T, R> {
    fn call(&self, _start: usize, input: &[T], output: &mut [R]) -> Result<(), Failure> {
        let f = self.0;
        let mut at = 0;
        catch_unwind(AssertUnwindSafe(|| {
            for (i, (x, y)) in input.iter().zip(output.iter_mut()).enumerate() {
                at = i;
                *y = f(*x);
            }
        }))
        .map_err(|p| Failure::Panic {
            offset: at,
            message: panic_text(&*p),
        })
    }
}

struct Slices<T, R>(fn(&[T], &mut [R]));

impl<T: Pod, R: Pod> ChunkFn<T, R> for Slices<T, R> {
    fn call(&self, _start: usize, input: &[T], output: &mut [R]) -> Result<(), Failure> {
        let f = self.0;
        catch_unwind(AssertUnwindSafe(|| f(input, output))).map_err(|p| Failure::Panic {
            offset: 0,
            message: panic_text(&*p),
        })
    }
}

struct PodJob<C>(C);

impl<T: Pod, R: Pod, C: ChunkFn<T, R>> RunPod
    for PodJob<(C, std::marker::PhantomData<fn(T) -> R>)>
{
    fn run_bytes(&self, start: usize, input: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        if input.len() % size_of::<T>().max(1) != 0 {
            return Err(Failure::Other(format!(
                "{} input bytes for items of {} bytes",
                input.len(),
                size_of::<T>()
            )));
        }
        let items: Vec<T> = bytemuck::pod_collect_to_vec(input);
        let mut results = vec![R::zeroed(); items.len()];
        self.0.0.call(start, &items, &mut results)?;
        out.extend_from_slice(bytemuck::cast_slice(&results));
        Ok(())
    }

    fn run_shm(
        &self,
        maps: &mut Mapped,
        at: &ShmArrays,
        start: usize,
        end: usize,
    ) -> Result<(), Failure> {
        let ki = maps.ensure::<T>(at.pid, at.input).map_err(Failure::Other)?;
        let ko = maps
            .ensure::<R>(at.pid, at.output)
            .map_err(Failure::Other)?;
        let input = maps.slice::<T>(&ki).map_err(Failure::Other)?;
        let output = maps.slice::<R>(&ko).map_err(Failure::Other)?;
        if start > end || end > input.len() || end > output.len() {
            return Err(Failure::Other(format!(
                "chunk {start}..{end} outside arrays of {} and {}",
                input.len(),
                output.len()
            )));
        }
        if at.aliased {
            // One segment as input and output: through copies.
            let mut i = vec![T::zeroed(); end - start];
            let mut o = vec![R::zeroed(); end - start];
            input
                .read_into(start, &mut i)
                .map_err(|e| Failure::Other(e.to_string()))?;
            output
                .read_into(start, &mut o)
                .map_err(|e| Failure::Other(e.to_string()))?;
            self.0.0.call(start, &i, &mut o)?;
            return output
                .write_from(start, &o)
                .map_err(|e| Failure::Other(e.to_string()));
        }
        crate::inplace::with_chunk(input, output, start, end, |i, o| self.0.0.call(start, i, o))
            .unwrap_or_else(|| {
                Err(Failure::Other(format!(
                    "chunk {start}..{end} out of bounds"
                )))
            })
    }
}

/// The runner of `map_into`.
pub(crate) fn item_runner<T: Pod, R: Pod>(task: WireRef) -> Result<Box<dyn RunPod>, String> {
    let f: fn(T) -> R = task.resolve()?;
    Ok(Box::new(PodJob((Items(f), std::marker::PhantomData))))
}

/// The runner of `map_slices`.
pub(crate) fn slice_runner<T: Pod, R: Pod>(task: WireRef) -> Result<Box<dyn RunPod>, String> {
    let f: fn(&[T], &mut [R]) = task.resolve()?;
    Ok(Box::new(PodJob((Slices(f), std::marker::PhantomData))))
}

/// Maps the driver's probe segment (one `u64`) and reads it: whether this
/// rank can reach the driver's segments.
pub(crate) fn probe(maps: &mut Mapped, pid: u64, at: (u64, u64, u64)) -> Option<u64> {
    let k = maps.ensure::<u64>(pid, at).ok()?;
    let s = maps.slice::<u64>(&k).ok()?;
    let mut v = [0u64];
    s.read_into(0, &mut v).ok()?;
    Some(v[0])
}
