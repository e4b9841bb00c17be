//! `Connection::open` of a named pipe scribbled before the open, then its calls.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_channel::__private::pipe_open(data));
