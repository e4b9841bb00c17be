//! In-place puts and gets of `Queue<T>`: `put_with` writes the message
//! into its slot, `get_into` copies it straight into the caller's `T`;
//! across processes, a writer that panics sends nothing (on the leased
//! path and on the CAS path), and `f` runs only when the message is sent.
#![cfg(not(shmproc_loom))]
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use shmproc_channel::{
    GetTimeoutError, LeaseState, PutTimeoutError, Queue, TryGetError, TryPutError,
};
use shmproc_testing::{TIMEOUT, Watchdog};

type Page = [u8; 65536];

fn page_of(seq: u64) -> Box<Page> {
    let mut p: Box<Page> = vec![0u8; 65536]
        .into_boxed_slice()
        .try_into()
        .expect("64 KiB");
    for (i, chunk) in p.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&(seq ^ i as u64).to_ne_bytes());
    }
    p
}

/// A forked producer writes 64 KiB pages in place; the parent reads them
/// into its own page, in order and whole.
#[test]
fn sixty_four_kib_pages_cross_processes_in_place() {
    let _wd = Watchdog::new(TIMEOUT);
    let q = Queue::<Page>::new(4).expect("queue");
    const N: u64 = 200;
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe {
        shmproc_testing::fork_child(|| {
            for seq in 0..N {
                let src = page_of(seq);
                let r = q.put_with_timeout(|slot| slot.copy_from_slice(&src[..]), TIMEOUT);
                if r.is_err() {
                    return 1;
                }
            }
            0
        })
    };
    let mut out: Box<Page> = page_of(u64::MAX);
    for seq in 0..N {
        q.get_into_timeout(&mut out, TIMEOUT).expect("get_into");
        assert!(out[..] == page_of(seq)[..], "page {seq} differs");
    }
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
    assert_eq!(q.try_get_into(&mut out), Err(TryGetError::Empty));
}

/// The non-blocking and timed forms do not run `f` when there is no room,
/// and `get_into` leaves `out` alone when nothing comes.
#[test]
fn no_room_means_the_writer_does_not_run() {
    let q = Queue::<u64>::new(1).expect("queue");
    q.try_put_with(|v| *v = 7).expect("room for one");
    let mut ran = false;
    assert_eq!(
        q.try_put_with(|v| {
            ran = true;
            *v = 8;
        }),
        Err(TryPutError::Full(()))
    );
    assert_eq!(
        q.put_with_timeout(|_| ran = true, std::time::Duration::from_millis(5)),
        Err(PutTimeoutError::Timeout(()))
    );
    assert!(!ran);
    let mut out = 0;
    q.get_into(&mut out).expect("get_into");
    assert_eq!(out, 7);
    out = 99;
    assert_eq!(
        q.get_into_timeout(&mut out, std::time::Duration::from_millis(5)),
        Err(GetTimeoutError::Timeout)
    );
    assert_eq!(out, 99);
    q.close();
    assert!(q.put_with(|_| ran = true).is_err());
    assert!(!ran);
}

/// A writer that panics sends nothing, on the leased path (one producer
/// thread) and on the CAS path (after a second producer thread revoked the
/// lease): the next message goes through and is the next one got.
#[test]
fn a_panicking_writer_sends_nothing() {
    let _wd = Watchdog::new(TIMEOUT);
    let q = Queue::<u64>::new(8).expect("queue");
    let panics = |q: &Queue<u64>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = q.put_with(|v| {
                *v = 666;
                panic!("writer fails");
            });
        }))
        .is_err()
    };
    // Leased: this thread holds the producers' lease.
    q.put(1).expect("put");
    assert!(matches!(q.producer_lease(), Ok(LeaseState::Held(_))));
    assert!(panics(&q));
    q.put_with(|v| *v = 2).expect("put_with");
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.try_get(), Ok(1));
    assert_eq!(q.try_get(), Ok(2));
    // Shared: another thread puts, and the side runs the CAS protocol.
    std::thread::scope(|s| {
        s.spawn(|| q.put(3).expect("put"));
    });
    assert_eq!(q.producer_lease(), Ok(LeaseState::Shared));
    assert!(panics(&q));
    q.put_with(|v| *v = 4).expect("put_with");
    assert_eq!(q.skipped_writes(), 1);
    assert_eq!(q.try_get(), Ok(3));
    assert_eq!(q.try_get(), Ok(4));
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.qsize(), 0);
}
