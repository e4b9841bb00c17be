//! `shmproc_channel::__private::pipe_frames`: a pipe's framing with a
//! corrupted ring (meta line, indices, record headers, payload scribbled
//! between operations): errors only, never a panic, a hang, an
//! out-of-bounds access or an allocation sized by a forged length.
//!
//! `-max_len=512` unless given (see queue_ops.rs; 4 KiB rings).
#![no_main]

shmproc_fuzz::target!(defaults: ["-max_len=512"], |data| {
    shmproc_channel::__private::pipe_frames(data)
});
