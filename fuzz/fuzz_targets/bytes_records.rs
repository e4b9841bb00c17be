//! A `ByteQueue` whose record headers and slots are scribbled: inline and side-segment records.
#![no_main]

shmproc_fuzz::target!(defaults: [], |data| {
    shmproc_channel::__private::bytes_records(data)
});
