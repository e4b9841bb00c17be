//! Arbitrary bytes as a segment's content, opened with several expectations:
//! an error or a valid handle, never a panic, a hang or undefined behaviour.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_shm::__private::segment_open(data));
