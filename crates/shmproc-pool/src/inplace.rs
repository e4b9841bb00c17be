//! The one place the pool borrows shared arrays in place: a worker's view of
//! its claimed chunk, so that a task reads its input and writes its results
//! in the shared arrays themselves, with no copy.
#![allow(unsafe_code)]

use shmproc_shm::{Pod, ShmSlice};

/// `input[start..end]` and `output[start..end]`, in place, for `f`.
///
/// The worker owns both handles (`&mut`: no other borrow of them lives in
/// this process), they are distinct mappings of distinct segments (the pool
/// sends the copy path when they are one segment), and the range lies inside
/// both (the caller checks it against their lengths).
pub(crate) fn with_chunk<T: Pod, R: Pod, X>(
    input: &mut ShmSlice<T>,
    output: &mut ShmSlice<R>,
    start: usize,
    end: usize,
    f: impl FnOnce(&[T], &mut [R]) -> X,
) -> Option<X> {
    if start > end || end > input.len() || end > output.len() {
        return None;
    }
    // SAFETY: the pool's protocol: during a call no process writes the input
    // array (the caller's contract for `map_into`/`map_slices`, documented
    // there), and the chunk `start..end` of the output was claimed by this
    // worker alone (one compare-and-swap on the cursor), so no other process
    // reads or writes it until this worker publishes the chunk as done;
    // `&mut input` means no other borrow of this handle is alive.
    let i = unsafe { input.as_slice() };
    // SAFETY: as above, for the output: exclusive (`&mut output`), and the
    // claimed range is written by nobody else.
    let o = unsafe { output.as_mut_slice() };
    Some(f(&i[start..end], &mut o[start..end]))
}
