//! `Pipe` / `Connection`: bytes, Pod values and objects across processes, a
//! 256 MiB message checked by hash, the max-length and too-short cases
//! keeping the message, EOF on close and on SIGKILL, poll timeouts, `wait`.
#![cfg(not(shmproc_loom))]
#![allow(unsafe_code)] // `fork_child` is an unsafe fn: each call says why its child is sound.

use std::time::Duration;

use shmproc_channel::{
    Connection, Pipe, PipeEnd, PipeMode, RecvError, RecvTimeoutError, SendError, wait,
};
use shmproc_testing::{Child, TIMEOUT, TestShm, Watchdog, arg, current_test, fork_child, role};

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Ping {
    seq: u64,
    value: f64,
}

fn msg(len: usize, tag: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(tag))
        .collect()
}

/// FNV-1a over 8-byte words (and the tail bytes).
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(0x100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn bytes_pod_range_and_sizes_in_process() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = Pipe::options(PipeMode::Duplex, 4096).build().expect("pipe");
    for (i, len) in [0usize, 1, 48, 49, 64, 1000, 1984, 2000]
        .into_iter()
        .enumerate()
    {
        let m = msg(len, i as u8);
        a.send_bytes(&m).expect("send");
        assert_eq!(b.recv_bytes().expect("recv"), m, "len {len}");
    }
    b.send(&Ping { seq: 7, value: 1.5 }).expect("send");
    assert_eq!(a.recv::<Ping>().expect("recv"), Ping { seq: 7, value: 1.5 });
    a.send_bytes_range(b"0123456789", 3, 4).expect("send");
    assert_eq!(b.recv_bytes().expect("recv"), b"3456");
    // (One thread: a message needs room in the ring, at most half of it
    // after a pad record at the wrap, or it waits for a reader.)
    // Many small messages wrapping the 4 KiB ring many times.
    for i in 0..10_000u64 {
        a.send(&i).expect("send");
        assert_eq!(b.recv::<u64>().expect("recv"), i);
    }
}

#[test]
fn too_long_and_too_short_keep_the_message() {
    let (mut a, mut b) = Pipe::new().expect("pipe");
    let m = msg(100, 3);
    a.send_bytes(&m).expect("send");
    match b.recv_bytes_max(99) {
        Err(RecvError::TooLong { len: 100, max: 99 }) => {}
        other => panic!("{other:?}"),
    }
    let mut small = [0u8; 10];
    match b.recv_bytes_into(&mut small) {
        Err(RecvError::TooLong { len: 100, max: 10 }) => {}
        other => panic!("{other:?}"),
    }
    match b.recv::<u64>() {
        Err(RecvError::WrongSize {
            expected: 8,
            found: 100,
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut buf = [0u8; 128];
    assert_eq!(b.recv_bytes_into(&mut buf).expect("recv"), 100);
    assert_eq!(&buf[..100], &m[..]);
    // The same with a message of most of the ring: nothing is lost.
    let (mut a, mut b) = Pipe::options(PipeMode::Duplex, 4096).build().expect("pipe");
    let big = msg(3000, 9);
    a.send_bytes(&big).expect("send");
    assert!(matches!(
        b.recv_bytes_max(10),
        Err(RecvError::TooLong { len: 3000, .. })
    ));
    assert_eq!(b.recv_bytes_max(3000).expect("recv"), big);
}

#[test]
fn reserve_commit_and_borrowed_reads() {
    let (mut a, mut b) = Pipe::options(PipeMode::Duplex, 4096).build().expect("pipe");
    for round in 0..50u8 {
        let len = 100 + usize::from(round) * 37;
        let mut g = a.reserve(len).expect("reserve");
        g.copy_from_slice(&msg(len, round));
        g.commit();
        let _unsent = a.reserve(10).expect("reserve"); // dropped: never sent
        let r = b.recv_bytes_ref().expect("recv");
        assert_eq!(&*r, &msg(len, round)[..]);
    }
    assert!(matches!(
        a.reserve(4096),
        Err(SendError::TooLong {
            len: 4096,
            max: 4032
        })
    ));
    // A streamed message through the guard (owned copy).
    let big = msg(20_000, 1);
    // The parent used `a`: lend it to the child (no move, no drop here).
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe { fork_child(|| a.send_bytes(&big).map_or(1, |()| 0)) };
    assert_eq!(&*b.recv_bytes_ref().expect("recv"), &big[..]);
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
}

#[test]
fn poll_timeouts_readable_writable_and_close() {
    let (mut a, mut b) = Pipe::new().expect("pipe");
    assert!(!b.poll(Some(Duration::from_millis(20))).expect("poll"));
    assert!(!b.readable());
    assert!(a.writable());
    assert!(matches!(
        b.recv_bytes_timeout(Duration::from_millis(5)),
        Err(RecvTimeoutError::Timeout)
    ));
    a.send_bytes(b"x").expect("send");
    assert!(b.readable());
    assert!(b.poll(Some(Duration::ZERO)).expect("poll"));
    a.send_bytes(b"last").expect("send");
    a.close();
    assert!(a.closed());
    assert!(matches!(a.send_bytes(b"y"), Err(SendError::Closed)));
    // Drained first, then EOF.
    assert_eq!(b.recv_bytes().expect("recv"), b"x");
    assert_eq!(b.recv_bytes().expect("recv"), b"last");
    assert!(b.recv_bytes().expect_err("eof").is_eof());
    assert!(b.poll(None).expect("poll"));
    assert!(matches!(b.send_bytes(b"z"), Err(SendError::BrokenPipe)));
}

#[test]
fn simplex_has_one_direction() {
    let (mut r, mut w) = Pipe::simplex().expect("pipe");
    assert!(matches!(
        r.send_bytes(b"no"),
        Err(SendError::WrongDirection)
    ));
    assert!(matches!(w.recv_bytes(), Err(RecvError::WrongDirection)));
    w.send_bytes(b"yes").expect("send");
    assert_eq!(r.recv_bytes().expect("recv"), b"yes");
    assert_eq!(r.end(), PipeEnd::First);
}

#[test]
fn wait_over_several_connections() {
    let _wd = Watchdog::new(TIMEOUT);
    let mut pairs: Vec<(Connection, Connection)> =
        (0..3).map(|_| Pipe::new().expect("pipe")).collect();
    {
        let readers: Vec<&Connection> = pairs.iter().map(|(r, _)| r).collect();
        assert!(
            wait(&readers, Some(Duration::from_millis(20)))
                .expect("wait")
                .is_empty()
        );
    }
    pairs[2].1.send_bytes(b"two").expect("send");
    {
        let readers: Vec<&Connection> = pairs.iter().map(|(r, _)| r).collect();
        assert_eq!(wait(&readers, Some(TIMEOUT)).expect("wait"), vec![2]);
    }
    assert_eq!(pairs[2].0.recv_bytes().expect("recv"), b"two");
    // Woken by a message from another process, through the sentinels.
    let (r3, w3) = Pipe::new().expect("pipe");
    assert!(
        wait(&[&pairs[0].0, &r3], Some(Duration::ZERO))
            .expect("wait")
            .is_empty()
    );
    let mut w3 = w3;
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe { fork_child(move || w3.send_bytes(b"three").map_or(1, |()| 0)) };
    assert_eq!(
        wait(&[&pairs[0].0, &r3], Some(TIMEOUT)).expect("wait"),
        vec![1]
    );
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
    // The sentinel is a plain descriptor: poll(2) sees a waiting message.
    let (r, mut w) = Pipe::new().expect("pipe");
    let fd = r.sentinel().expect("sentinel");
    assert_eq!(
        shmproc_shm::os::poll_readable(&[fd], Some(Duration::ZERO)).expect("poll"),
        vec![false]
    );
    w.send_bytes(b"hi").expect("send");
    let fd = r.sentinel().expect("sentinel");
    assert_eq!(
        shmproc_shm::os::poll_readable(&[fd], Some(TIMEOUT)).expect("poll"),
        vec![true]
    );
}

#[test]
fn ping_pong_across_processes() {
    if role().is_some() {
        let mut c = Connection::open(&arg("p").expect("p"), PipeEnd::Second).expect("open");
        for _ in 0..1000 {
            let mut p: Ping = c.recv().expect("recv");
            p.seq += 1;
            p.value *= 2.0;
            c.send(&p).expect("send");
        }
        for _ in 0..100 {
            let m = c.recv_bytes().expect("recv");
            c.send_bytes(&m.iter().rev().copied().collect::<Vec<_>>())
                .expect("send");
        }
        #[cfg(feature = "serde")]
        {
            let v: Vec<String> = c.recv_obj().expect("recv");
            c.send_obj(&v.join("+")).expect("send");
        }
        c.close();
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("pp");
    let (mut a, b) = Pipe::options(PipeMode::Duplex, 8192)
        .build_named(&name)
        .expect("create");
    drop(b); // never used here: stays open for the child
    let child = Child::spawn(current_test!(), "peer", &[("p", &name)]).expect("spawn");
    for i in 0..1000u64 {
        a.send(&Ping { seq: i, value: 1.0 }).expect("send");
        assert_eq!(
            a.recv::<Ping>().expect("recv"),
            Ping {
                seq: i + 1,
                value: 2.0
            }
        );
    }
    for i in 0..100usize {
        let m = msg(i * 131, i as u8);
        a.send_bytes(&m).expect("send");
        let back = a.recv_bytes().expect("recv");
        assert_eq!(back, m.iter().rev().copied().collect::<Vec<_>>());
    }
    #[cfg(feature = "serde")]
    {
        a.send_obj(&vec!["a".to_owned(), "b".to_owned()])
            .expect("send");
        assert_eq!(a.recv_obj::<String>().expect("recv"), "a+b");
    }
    assert!(a.recv_bytes().expect_err("eof").is_eof());
    child.expect_success(TIMEOUT);
    drop(a);
    assert!(shm.leftovers().is_empty());
}

/// The fence-only fallback (a process that cannot call `membarrier`): the
/// child claims its end in that mode, which makes both sides of both rings
/// use `SeqCst` fences. Blocking ping-pongs (the child now and then works
/// longer than a wait's spin, so the parent sleeps in `wait_data`) and a
/// stream larger than the ring (the writer waits for space) still deliver
/// everything.
#[test]
fn fence_only_peer_still_delivers() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = Pipe::options(PipeMode::Duplex, 8192).build().expect("pipe");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe {
        fork_child(move || {
            shmproc_sync::asym::force_fences();
            for i in 0..2000u64 {
                if i % 7 == 0 {
                    // Work longer than a wait's spin: the parent's recv sleeps
                    // (a code path to reach, not a synchronisation).
                    let t = std::time::Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                }
                match b.recv::<u64>() {
                    Ok(v) if v == i => {}
                    _ => return 1,
                }
                if b.send(&(i * 3)).is_err() {
                    return 2;
                }
            }
            let m = msg(100_000, 7);
            if b.send_bytes(&m).is_err() {
                return 3;
            }
            0
        })
    };
    for i in 0..2000u64 {
        a.send(&i).expect("send");
        assert_eq!(a.recv::<u64>().expect("recv"), i * 3);
    }
    assert_eq!(a.recv_bytes().expect("recv"), msg(100_000, 7));
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
    assert!(a.recv_bytes().expect_err("eof").is_eof());
}

#[test]
fn a_256_mib_message_checked_by_hash() {
    let _wd = Watchdog::new(TIMEOUT * 2);
    const LEN: usize = 256 << 20;
    let (mut a, mut b) = Pipe::new().expect("pipe");
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe {
        fork_child(move || {
            let mut m = vec![0u8; LEN];
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for w in m.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            let h = hash(&m);
            if b.send_bytes(&m).is_err() || b.send(&h).is_err() {
                return 1;
            }
            0
        })
    };
    let m = a.recv_bytes().expect("recv");
    assert_eq!(m.len(), LEN);
    let h: u64 = a.recv().expect("recv");
    assert_eq!(hash(&m), h);
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
}

#[test]
fn eof_when_the_peer_is_killed() {
    if role().is_some() {
        let mut c = Connection::open(&arg("p").expect("p"), PipeEnd::Second).expect("open");
        c.send_bytes(b"ready").expect("send");
        // Waits (bounded) for a message that never comes; killed meanwhile.
        let _ = c.poll(Some(TIMEOUT));
        return;
    }
    let _wd = Watchdog::new(TIMEOUT);
    let shm = TestShm::new();
    let name = shm.name("kill");
    let (mut a, b) = Pipe::create(&name).expect("create");
    drop(b);
    let mut child = Child::spawn(current_test!(), "peer", &[("p", &name)]).expect("spawn");
    assert_eq!(a.recv_bytes().expect("recv"), b"ready");
    child.kill();
    assert!(a.recv_bytes().expect_err("eof").is_eof());
    let _ = child.wait_timeout(TIMEOUT);
    drop(a);
    assert!(shm.leftovers().is_empty());
}

#[test]
fn misuse_from_two_processes_is_detected() {
    let (mut a, mut b) = Pipe::new().expect("pipe");
    a.send_bytes(b"mine").expect("send");
    // A forked child takes end `a` over...
    // SAFETY: the child uses only shared memory, atomics, the heap (glibc's fork resets malloc's locks in the child) and the objects it was lent; it never prints or takes a lock another thread of the test binary may hold, and leaves through `exit_now` (`fork_child`'s # Safety).
    let mut child = unsafe { fork_child(|| a.send_bytes(b"child").map_or(1, |()| 0)) };
    assert_eq!(child.try_wait_timeout(TIMEOUT).expect("exit").code(), 0);
    // ...so the parent's next use of it is reported.
    assert!(matches!(
        a.send_bytes(b"again"),
        Err(SendError::NotOwner { .. })
    ));
    assert_eq!(b.recv_bytes().expect("recv"), b"mine");
    assert_eq!(b.recv_bytes().expect("recv"), b"child");
    // The child is dead now, so end `a` counts as gone.
    assert!(b.recv_bytes().expect_err("eof").is_eof());
}

/// Every short length through the fast paths (inline records of up to 40
/// bytes, the first out-of-line ones) and the general ones, with the ring
/// wrapping (pads) many times: `send_bytes` / `recv_bytes_into`,
/// `recv_bytes`, `recv::<T>`, `poll(ZERO)` and `readable` between.
#[test]
fn every_short_length_round_trips_across_wraps() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = Pipe::options(PipeMode::Duplex, 4096).build().expect("pipe");
    let mut buf = [0u8; 256];
    for round in 0..8u8 {
        for len in 0..=200usize {
            let m = msg(len, round.wrapping_add(len as u8));
            assert!(!b.poll(Some(Duration::ZERO)).expect("poll empty"));
            a.send_bytes(&m).expect("send");
            assert!(b.readable());
            assert!(b.poll(Some(Duration::ZERO)).expect("poll"));
            match len % 3 {
                0 => {
                    let n = b.recv_bytes_into(&mut buf).expect("recv_bytes_into");
                    assert_eq!(&buf[..n], &m[..], "len {len}");
                }
                1 => assert_eq!(b.recv_bytes().expect("recv_bytes"), m, "len {len}"),
                _ => {
                    // Too short a buffer keeps the message.
                    if len > 0 {
                        assert!(matches!(
                            b.recv_bytes_into(&mut buf[..len - 1]),
                            Err(RecvError::TooLong { len: needed, .. }) if needed == len as u64
                        ));
                    }
                    let n = b.recv_bytes_into(&mut buf).expect("recv_bytes_into");
                    assert_eq!(&buf[..n], &m[..], "len {len}");
                }
            }
        }
        // A zero-copy record is sealed too: poll(ZERO) sees it.
        for len in [0usize, 40, 41, 300] {
            let mut g = a.reserve(len).expect("reserve");
            g.fill(round);
            g.commit();
            assert!(b.poll(Some(Duration::ZERO)).expect("poll reserved"));
            let r = b.recv_bytes_ref().expect("recv_bytes_ref");
            assert_eq!(&r[..], &vec![round; len][..]);
        }
        let v = [u64::from(round); 3];
        a.send(&v).expect("send pod");
        assert!(matches!(
            b.recv::<[u64; 2]>(),
            Err(RecvError::WrongSize { .. })
        ));
        assert_eq!(b.recv::<[u64; 3]>().expect("recv pod"), v);
    }
}

/// Large records (the writer's `busy` hint while it fills them): a dropped
/// large reservation sends nothing and leaves no hint behind; large
/// messages stream between two threads, copied and zero-copy, each checked.
#[test]
fn large_records_with_the_busy_hint() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut r, mut w) = Pipe::options(PipeMode::Simplex, 256 << 10)
        .build()
        .expect("pipe");
    drop(w.reserve(64 << 10).expect("reserve"));
    assert!(!r.poll(Some(Duration::ZERO)).expect("poll"));
    const N: usize = 200;
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            let len = (16 << 10) + i * 512;
            let m = msg(len, i as u8);
            if i % 2 == 0 {
                w.send_bytes(&m).expect("send_bytes");
            } else {
                let mut g = w.reserve(len).expect("reserve");
                g.copy_from_slice(&m);
                g.commit();
            }
        }
        w
    });
    let mut buf = vec![0u8; 256 << 10];
    for i in 0..N {
        let m = msg((16 << 10) + i * 512, i as u8);
        if i % 3 == 0 {
            let g = r.recv_bytes_ref().expect("recv_bytes_ref");
            assert_eq!(&g[..], &m[..], "message {i}");
        } else {
            let n = r.recv_bytes_into(&mut buf).expect("recv_bytes_into");
            assert_eq!(&buf[..n], &m[..], "message {i}");
        }
    }
    let mut w = writer.join().expect("writer thread");
    w.close();
    assert!(r.recv_bytes().expect_err("eof").is_eof());
}
