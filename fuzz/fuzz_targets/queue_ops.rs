//! Operation sequences on a `Queue<u64>`, checked against a `VecDeque` model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_channel::__private::queue_ops(data));
