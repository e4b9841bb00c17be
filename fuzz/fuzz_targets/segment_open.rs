//! Arbitrary bytes as a segment's content, opened with several expectations:
//! an error or a valid handle, never a panic, a hang or undefined behaviour.
#![no_main]

shmproc_fuzz::target!(defaults: [], |data| {
    shmproc_shm::__private::segment_open(data)
});
