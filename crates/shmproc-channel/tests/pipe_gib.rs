//! Issue 5: "Messages of any size: a message larger than the ring streams
//! through in chunks while the reader drains; 1 GiB works." One 1 GiB
//! message (under `SHMPROC_STRESS`; 64 MiB by default) through a default
//! pipe (1 MiB rings) from a forked process.
//!
//! Every MiB of the message is a shared random block stamped with its index
//! in its first 8 bytes, so the check (a `memcmp` per MiB, cheap even in a
//! debug build) finds a lost, repeated, reordered or corrupted MiB anywhere.
#![cfg(not(shmproc_loom))]
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use shmproc_channel::Pipe;
use shmproc_testing::{TIMEOUT, Watchdog, fork_child, stress_or};

const MIB: usize = 1 << 20;
/// 1 GiB under `SHMPROC_STRESS`, 64 MiB (64 times the ring) by default.
fn len() -> usize {
    stress_or(1 << 30, 64 << 20)
}

/// One MiB of xorshift bytes.
fn block() -> Vec<u8> {
    let mut b = vec![0u8; MIB];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for w in b.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    b
}

#[test]
fn a_1_gib_message_streams_through_a_1_mib_ring() {
    let _wd = Watchdog::new(TIMEOUT * 2);
    let (mut a, mut b) = Pipe::new().expect("pipe");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe {
        fork_child(move || {
            let base = block();
            let mut m = vec![0u8; len()];
            for (i, chunk) in m.chunks_exact_mut(MIB).enumerate() {
                chunk.copy_from_slice(&base);
                chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
            }
            match b.send_bytes(&m) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        })
    };
    let mut got = vec![0u8; len()];
    let n = a.recv_bytes_into(&mut got).expect("recv 1 GiB");
    assert_eq!(n, len());
    let base = block();
    for (i, chunk) in got.chunks_exact(MIB).enumerate() {
        assert_eq!(chunk[..8], (i as u64).to_le_bytes(), "MiB {i}: wrong index");
        assert!(chunk[8..] == base[8..], "MiB {i}: corrupted");
    }
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
}
