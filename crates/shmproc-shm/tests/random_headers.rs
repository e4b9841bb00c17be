//! Random bytes where a header should be are rejected cleanly: an error,
//! never a panic, a hang or an out-of-bounds access.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::Duration;

use proptest::prelude::*;
use shmproc_shm::{OpenOptions, SegmentKind, ShmBox, ShmSlice, TypeSpec, os};

fn memfd(bytes: &[u8]) -> OwnedFd {
    let fd = os::memfd_create(c"random-header").unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).unwrap();
    f.into()
}

fn open_all_ways(bytes: &[u8]) -> bool {
    let opts =
        OpenOptions::new(SegmentKind::SLICE, TypeSpec::of::<u32>()).init_timeout(Duration::ZERO);
    let a = opts.open_fd(memfd(bytes)).is_ok();
    let b = ShmSlice::<u32>::open_fd(memfd(bytes)).is_ok();
    let c = ShmBox::<u64>::open_fd(memfd(bytes)).is_ok();
    a || b || c
}

/// A valid `ShmSlice<u32>` of 4 elements, as the bytes another process
/// would find in `/dev/shm`.
fn valid_image() -> Vec<u8> {
    let shm = shmproc_testing::TestShm::new();
    let name = shm.name("image");
    let s = ShmSlice::create(&name, 4, 0x0102_0304u32).unwrap();
    let img = std::fs::read(std::path::Path::new("/dev/shm").join(&name)).unwrap();
    drop(s);
    img
}

#[test]
fn the_valid_image_opens() {
    let img = valid_image();
    let s = ShmSlice::<u32>::open_fd(memfd(&img)).unwrap();
    assert_eq!(s.to_vec(), [0x0102_0304; 4]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 1..400)) {
        prop_assert!(!open_all_ways(&bytes));
    }

    #[test]
    fn random_header_with_valid_magic_is_rejected(mut bytes in proptest::collection::vec(any::<u8>(), 128..400)) {
        bytes[..8].copy_from_slice(b"SHMPROC\0");
        prop_assert!(!open_all_ways(&bytes));
    }

    #[test]
    fn any_single_header_field_corruption_is_rejected(pos in 0usize..56, byte in any::<u8>()) {
        let mut img = valid_image();
        // Creator pid (40..44) and flags (44..48) are informational only.
        prop_assume!(!(40..48).contains(&pos));
        prop_assume!(img[pos] != byte);
        img[pos] = byte;
        let opts = OpenOptions::new(SegmentKind::SLICE, TypeSpec::of::<u32>())
            .capacity(4)
            .payload_len(|c| c.checked_mul(4))
            .init_timeout(Duration::ZERO);
        let opened = opts.open_fd(memfd(&img));
        // A changed capacity byte may still describe a consistent slice only if
        // the fingerprint also matches, which a single byte cannot achieve.
        prop_assert!(opened.is_err(), "byte {} = {:#x} accepted", pos, byte);
    }
}
