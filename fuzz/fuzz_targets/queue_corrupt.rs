//! Random writes into a queue's header, indices and slot stamps between
//! operations: errors only, never a panic, a hang or an out-of-bounds access.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_channel::__private::queue_corrupt(data));
