//! `shmproc_channel::__private::queue_ops`: operation sequences on a
//! `Queue<u64>`, or (first byte's bit 6 set) a `ByteQueue`, agree with a
//! `VecDeque` model, contents included; every call returns.
//!
//! `-max_len=512` unless given: a few hundred operations per input (every
//! ring here fills and wraps within far fewer; the committed corpus keeps
//! its coverage at 512), not the 4,096 libFuzzer grows inputs to by default.
#![no_main]

shmproc_fuzz::target!(defaults: ["-max_len=512"], |data| {
    shmproc_channel::__private::queue_ops(data)
});
