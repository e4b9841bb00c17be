//! The one place a worker rank borrows the driver's shared arrays in place
//! (on the driver's node): a task reads its input and writes its results in
//! the arrays themselves, with no copy.
#![allow(unsafe_code)]

use shmproc_shm::{Pod, ShmSlice};

/// `input[start..end]` and `output[start..end]`, in place, for `f`; `None`
/// when the range does not lie inside both.
///
/// The caller sends the copy path when input and output are one segment.
pub(crate) fn with_chunk<T: Pod, R: Pod, X>(
    input: &ShmSlice<T>,
    output: &ShmSlice<R>,
    start: usize,
    end: usize,
    f: impl FnOnce(&[T], &mut [R]) -> X,
) -> Option<X> {
    if start > end || end > input.len() || end > output.len() {
        return None;
    }
    // SAFETY: the pool's protocol: during a `Pod` call no process writes the
    // input array (the caller's contract for `map_into`/`map_slices`), and
    // the driver hands the chunk `start..end` to this rank alone and touches
    // the output's chunk only after this rank reports it done; this worker
    // is single-threaded and holds no other borrow of these mappings.
    let i = unsafe { input.as_slice() };
    // SAFETY: as above: the chunk of the output is this rank's alone until
    // it reports it done, and input and output are distinct segments.
    let o = unsafe { output.as_mut_slice() };
    Some(f(&i[start..end], &mut o[start..end]))
}
