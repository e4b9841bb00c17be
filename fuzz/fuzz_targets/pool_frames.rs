//! The pool parent parsing a worker's results frame and checking it against its batch.
#![no_main]

shmproc_fuzz::target!(defaults: [], |data| {
    shmproc_pool::__private::pool_frames(data)
});
