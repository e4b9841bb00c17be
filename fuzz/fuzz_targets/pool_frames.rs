//! The pool parent parsing a worker's results frame and checking it against its batch.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_pool::__private::pool_frames(data));
