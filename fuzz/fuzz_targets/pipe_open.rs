//! `Connection::open` of a named pipe scribbled before the open, then its calls.
#![no_main]

shmproc_fuzz::target!(defaults: [], |data| {
    shmproc_channel::__private::pipe_open(data)
});
