//! `shmproc_channel::__private::queue_corrupt`: random writes into a
//! queue's header, indices, leases and slot stamps between operations, for
//! a `Queue<u64>` or (first byte's bit 6 set) a `ByteQueue`: errors only,
//! never a panic, a hang or an out-of-bounds access; a fresh opener of the
//! scribbled segment validates its header.
//!
//! `-max_len=512` unless given (see queue_ops.rs).
#![no_main]

shmproc_fuzz::target!(defaults: ["-max_len=512"], |data| {
    shmproc_channel::__private::queue_corrupt(data)
});
