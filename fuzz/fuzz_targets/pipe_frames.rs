//! A pipe's framing with a corrupted ring (indices, record headers, payload
//! scribbled between operations): errors only, never a panic, a hang or an
//! out-of-bounds access.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_channel::__private::pipe_frames(data));
