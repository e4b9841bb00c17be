//! A Manager server's session fed arbitrary frames (its frame decoder, request dispatch and the client's reply decoder).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_manager::__private::manager_frames(data));
