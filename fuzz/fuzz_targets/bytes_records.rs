//! A `ByteQueue` whose record headers and slots are scribbled: inline and side-segment records.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc_channel::__private::bytes_records(data));
