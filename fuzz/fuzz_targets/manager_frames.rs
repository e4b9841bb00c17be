//! A Manager server's session fed arbitrary frames (its frame decoder, request dispatch and the client's reply decoder).
#![no_main]

shmproc_fuzz::target!(defaults: [], |data| {
    shmproc_manager::__private::manager_frames(data)
});
