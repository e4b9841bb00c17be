//! The `try_`, `_timeout` and `_deadline` forms of every blocking
//! `Connection` call: `try_` on an empty pipe is `Empty` and on a full one
//! `Full` (nothing sent), `_timeout` waits at least its timeout (lower
//! bounds only), a passed `_deadline` behaves as `try_`, a send that gives
//! up leaves no part of its message behind, a wait that is answered in time
//! succeeds, and EOF / broken pipe are reported on every form.
#![cfg(not(shmproc_loom))]

use std::time::{Duration, Instant};

use shmproc_channel::{
    Connection, Pipe, PipeMode, PollError, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
use shmproc_testing::{TIMEOUT, Watchdog};

const SHORT: Duration = Duration::from_millis(30);

fn small_pipe() -> (Connection, Connection) {
    Pipe::options(PipeMode::Duplex, 4096).build().expect("pipe")
}

/// A deadline that has passed.
fn past() -> Instant {
    Instant::now()
        .checked_sub(Duration::from_millis(1))
        .unwrap_or_else(Instant::now)
}

/// Asserts `op` returned at least `d` after `t0`.
fn waited(t0: Instant, d: Duration) {
    assert!(
        t0.elapsed() >= d,
        "gave up after {:?} < {d:?}",
        t0.elapsed()
    );
}

#[test]
fn try_recv_on_an_empty_pipe_is_empty_on_every_form() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    let mut buf = [0u8; 64];
    assert_eq!(b.try_recv_bytes(), Err(TryRecvError::Empty));
    assert_eq!(b.try_recv_bytes_max(10), Err(TryRecvError::Empty));
    assert_eq!(b.try_recv_bytes_into(&mut buf), Err(TryRecvError::Empty));
    assert!(matches!(b.try_recv_bytes_ref(), Err(TryRecvError::Empty)));
    assert_eq!(b.try_recv::<u64>(), Err(TryRecvError::Empty));
    assert!(b.try_recv_bytes().expect_err("empty").is_empty());
    // A zero timeout is a try too.
    assert_eq!(
        b.recv_bytes_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(!b.poll(Some(Duration::ZERO)).expect("poll"));
    assert!(!b.poll_deadline(past()).expect("poll"));

    // Each form then takes the message that is waiting.
    a.send_bytes(b"one").expect("send");
    assert_eq!(b.try_recv_bytes().expect("try_recv_bytes"), b"one");
    a.send_bytes(b"two").expect("send");
    assert_eq!(b.try_recv_bytes_max(3).expect("try_recv_bytes_max"), b"two");
    a.send_bytes(b"three").expect("send");
    assert_eq!(
        b.try_recv_bytes_into(&mut buf)
            .expect("try_recv_bytes_into"),
        5
    );
    assert_eq!(&buf[..5], b"three");
    a.send_bytes(b"four").expect("send");
    assert_eq!(
        &*b.try_recv_bytes_ref().expect("try_recv_bytes_ref"),
        b"four"
    );
    a.send(&5u64).expect("send");
    assert_eq!(b.try_recv::<u64>().expect("try_recv"), 5);
    assert_eq!(b.try_recv_bytes(), Err(TryRecvError::Empty));

    // The size checks of the try forms keep the message, as the blocking ones do.
    a.send_bytes(&[7u8; 100]).expect("send");
    assert_eq!(
        b.try_recv_bytes_max(99),
        Err(TryRecvError::TooLong { len: 100, max: 99 })
    );
    assert_eq!(
        b.try_recv_bytes_into(&mut buf),
        Err(TryRecvError::TooLong { len: 100, max: 64 })
    );
    assert_eq!(
        b.try_recv::<u64>(),
        Err(TryRecvError::WrongSize {
            expected: 8,
            found: 100
        })
    );
    assert_eq!(b.try_recv_bytes().expect("kept"), vec![7u8; 100]);
}

#[test]
fn recv_timeouts_wait_at_least_the_timeout() {
    let _wd = Watchdog::new(TIMEOUT);
    let (_a, mut b) = small_pipe();
    let mut buf = [0u8; 8];
    let t0 = Instant::now();
    assert_eq!(b.recv_bytes_timeout(SHORT), Err(RecvTimeoutError::Timeout));
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert_eq!(
        b.recv_bytes_max_timeout(8, SHORT),
        Err(RecvTimeoutError::Timeout)
    );
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert_eq!(
        b.recv_bytes_into_timeout(&mut buf, SHORT),
        Err(RecvTimeoutError::Timeout)
    );
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert!(matches!(
        b.recv_bytes_ref_timeout(SHORT),
        Err(RecvTimeoutError::Timeout)
    ));
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert!(
        b.recv_timeout::<u64>(SHORT)
            .expect_err("timeout")
            .is_timeout()
    );
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert!(!b.poll(Some(SHORT)).expect("poll"));
    waited(t0, SHORT);

    // The deadline forms: an instant ahead waits until it...
    let until = Instant::now() + SHORT;
    assert_eq!(b.recv_bytes_deadline(until), Err(RecvTimeoutError::Timeout));
    assert!(Instant::now() >= until);
    let until = Instant::now() + SHORT;
    assert!(!b.poll_deadline(until).expect("poll"));
    assert!(Instant::now() >= until);
    // ...one that has passed checks once (as `try_`).
    assert_eq!(
        b.recv_bytes_deadline(past()),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        b.recv_bytes_max_deadline(8, past()),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(
        b.recv_bytes_into_deadline(&mut buf, past()),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(matches!(
        b.recv_bytes_ref_deadline(past()),
        Err(RecvTimeoutError::Timeout)
    ));
    assert_eq!(
        b.recv_deadline::<u64>(past()),
        Err(RecvTimeoutError::Timeout)
    );
}

#[test]
fn a_passed_deadline_still_takes_a_waiting_message() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    let mut buf = [0u8; 8];
    a.send_bytes(b"x").expect("send");
    assert!(b.poll_deadline(past()).expect("poll"));
    assert_eq!(b.recv_bytes_deadline(past()).expect("recv"), b"x");
    a.send(&9u64).expect("send");
    assert_eq!(b.recv_deadline::<u64>(past()).expect("recv"), 9);
    a.send_bytes(b"yz").expect("send");
    assert_eq!(
        b.recv_bytes_into_deadline(&mut buf, past()).expect("recv"),
        2
    );
    a.send_bytes(b"ref").expect("send");
    assert_eq!(&*b.recv_bytes_ref_deadline(past()).expect("recv"), b"ref");
    // Room is free: a passed deadline sends.
    b.send_bytes_deadline(b"back", past()).expect("send");
    assert_eq!(a.recv_bytes().expect("recv"), b"back");
}

#[test]
// The sleep is a delay that lets the other side start waiting, not
// synchronisation: the result is the same without it.
#[allow(clippy::disallowed_methods)]
fn a_timed_recv_gets_a_message_sent_during_the_wait() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(SHORT);
            a.send_bytes(b"late").expect("send");
            std::thread::sleep(SHORT);
            a.send(&3u64).expect("send");
        });
        assert_eq!(b.recv_bytes_timeout(TIMEOUT).expect("in time"), b"late");
        assert_eq!(
            b.recv_deadline::<u64>(Instant::now() + TIMEOUT)
                .expect("in time"),
            3
        );
    });
}

/// Fills the sending ring of `w` with 1000-byte messages, then 8-byte
/// ones, until `try_send` says `Full`; returns the messages that went in.
fn fill(w: &mut Connection) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for len in [1000, 8] {
        loop {
            let m = vec![sent.len() as u8; len];
            match w.try_send_bytes(&m) {
                Ok(()) => sent.push(m),
                Err(TrySendError::Full) => break,
                Err(e) => panic!("try_send_bytes: {e}"),
            }
        }
    }
    sent
}

#[test]
fn sends_on_a_full_ring_give_up_and_send_nothing() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    let sent = fill(&mut a);
    assert!(sent.len() >= 2, "a 4 KiB ring takes a few messages");
    assert!(a.try_send_bytes(b"no room").expect_err("full").is_full());
    assert_eq!(a.try_send(&1u64), Err(TrySendError::Full));
    assert!(matches!(a.try_reserve(100), Err(TrySendError::Full)));
    assert_eq!(
        a.try_send_bytes_range(b"abc", 1, 1),
        Err(TrySendError::Full)
    );

    let big = [0xeeu8; 2000];
    let t0 = Instant::now();
    assert_eq!(
        a.send_bytes_timeout(&big, SHORT),
        Err(SendTimeoutError::Timeout)
    );
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert_eq!(a.send_timeout(&1u64, SHORT), Err(SendTimeoutError::Timeout));
    waited(t0, SHORT);
    let t0 = Instant::now();
    assert!(matches!(
        a.reserve_timeout(100, SHORT),
        Err(SendTimeoutError::Timeout)
    ));
    waited(t0, SHORT);
    assert!(
        a.send_bytes_range_timeout(&big, 0, 10, SHORT)
            .expect_err("full")
            .is_timeout()
    );
    assert_eq!(
        a.send_bytes_deadline(&big, past()),
        Err(SendTimeoutError::Timeout)
    );
    assert_eq!(
        a.send_deadline(&1u64, past()),
        Err(SendTimeoutError::Timeout)
    );
    assert!(matches!(
        a.reserve_deadline(10, past()),
        Err(SendTimeoutError::Timeout)
    ));
    assert_eq!(
        a.send_bytes_range_deadline(&big, 0, 10, past()),
        Err(SendTimeoutError::Timeout)
    );

    // The reader finds exactly the messages that went in, whole, and
    // nothing of the ones that gave up.
    for m in sent {
        assert_eq!(b.try_recv_bytes().expect("sent"), m);
    }
    assert_eq!(b.try_recv_bytes(), Err(TryRecvError::Empty));
    // Room again: every form sends.
    a.try_send_bytes(b"1").expect("try_send_bytes");
    a.send_bytes_timeout(b"2", SHORT)
        .expect("send_bytes_timeout");
    a.send_bytes_deadline(b"3", past())
        .expect("send_bytes_deadline");
    a.try_send(&4u64).expect("try_send");
    let mut g = a.try_reserve(1).expect("try_reserve");
    g.copy_from_slice(b"5");
    g.commit();
    for want in [&b"1"[..], b"2", b"3", &4u64.to_ne_bytes(), b"5"] {
        assert_eq!(b.recv_bytes().expect("recv"), want);
    }
}

#[test]
// The sleep is a delay that lets the other side start waiting, not
// synchronisation: the result is the same without it.
#[allow(clippy::disallowed_methods)]
fn a_timed_send_goes_through_when_the_reader_drains() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    let n = fill(&mut a).len();
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            std::thread::sleep(SHORT);
            let mut got = 0;
            while b.recv_bytes_timeout(TIMEOUT).is_ok() {
                got += 1;
            }
            got
        });
        a.send_bytes_timeout(&[1u8; 1000], TIMEOUT)
            .expect("room in time");
        // A message longer than the ring streams once started.
        a.send_bytes_deadline(&[2u8; 10_000], Instant::now() + TIMEOUT)
            .expect("streamed in time");
        a.close();
        assert_eq!(reader.join().expect("reader"), n + 2);
    });
}

#[test]
fn eof_and_broken_pipe_on_every_form() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut a, mut b) = small_pipe();
    a.send_bytes(b"last").expect("send");
    a.close();
    // Drained first...
    assert_eq!(b.try_recv_bytes().expect("drain"), b"last");
    // ...then EOF, whichever form.
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_bytes(), Err(RecvError::Eof));
    assert_eq!(b.try_recv_bytes(), Err(TryRecvError::Eof));
    assert_eq!(b.recv_bytes_timeout(TIMEOUT), Err(RecvTimeoutError::Eof));
    assert_eq!(b.recv_bytes_deadline(past()), Err(RecvTimeoutError::Eof));
    assert_eq!(b.try_recv_bytes_max(8), Err(TryRecvError::Eof));
    assert_eq!(
        b.recv_bytes_max_timeout(8, TIMEOUT),
        Err(RecvTimeoutError::Eof)
    );
    assert_eq!(
        b.recv_bytes_max_deadline(8, past()),
        Err(RecvTimeoutError::Eof)
    );
    assert_eq!(b.try_recv_bytes_into(&mut buf), Err(TryRecvError::Eof));
    assert_eq!(
        b.recv_bytes_into_timeout(&mut buf, TIMEOUT),
        Err(RecvTimeoutError::Eof)
    );
    assert_eq!(
        b.recv_bytes_into_deadline(&mut buf, past()),
        Err(RecvTimeoutError::Eof)
    );
    assert!(matches!(b.try_recv_bytes_ref(), Err(TryRecvError::Eof)));
    assert!(matches!(
        b.recv_bytes_ref_timeout(TIMEOUT),
        Err(RecvTimeoutError::Eof)
    ));
    assert!(matches!(
        b.recv_bytes_ref_deadline(past()),
        Err(RecvTimeoutError::Eof)
    ));
    assert_eq!(b.try_recv::<u64>(), Err(TryRecvError::Eof));
    assert!(b.recv_timeout::<u64>(TIMEOUT).expect_err("eof").is_eof());
    assert_eq!(b.recv_deadline::<u64>(past()), Err(RecvTimeoutError::Eof));
    // poll says "recv would not block" at EOF.
    assert!(b.poll(Some(Duration::ZERO)).expect("poll"));
    assert!(b.poll_deadline(past()).expect("poll"));

    // Sending to the closed end: broken pipe, whichever form.
    assert_eq!(b.send_bytes(b"x"), Err(SendError::BrokenPipe));
    assert_eq!(b.try_send_bytes(b"x"), Err(TrySendError::BrokenPipe));
    assert_eq!(
        b.send_bytes_timeout(b"x", TIMEOUT),
        Err(SendTimeoutError::BrokenPipe)
    );
    assert_eq!(
        b.send_bytes_deadline(b"x", past()),
        Err(SendTimeoutError::BrokenPipe)
    );
    assert!(b.try_send(&1u64).expect_err("broken").is_broken_pipe());
    assert!(matches!(b.try_reserve(8), Err(TrySendError::BrokenPipe)));
    assert!(matches!(
        b.reserve_timeout(8, TIMEOUT),
        Err(SendTimeoutError::BrokenPipe)
    ));

    // The closed end itself: `Closed` on every form.
    assert_eq!(a.try_recv_bytes(), Err(TryRecvError::Closed));
    assert_eq!(a.try_send_bytes(b"x"), Err(TrySendError::Closed));
    assert_eq!(a.poll_deadline(past()), Err(PollError::Closed));
}

#[test]
fn wrong_direction_on_every_form() {
    let _wd = Watchdog::new(TIMEOUT);
    let (mut r, mut w) = Pipe::simplex().expect("pipe");
    assert_eq!(r.try_send_bytes(b"no"), Err(TrySendError::WrongDirection));
    assert_eq!(
        r.send_bytes_timeout(b"no", SHORT),
        Err(SendTimeoutError::WrongDirection)
    );
    assert_eq!(w.try_recv_bytes(), Err(TryRecvError::WrongDirection));
    assert_eq!(
        w.recv_bytes_deadline(past()),
        Err(RecvTimeoutError::WrongDirection)
    );
    assert_eq!(w.poll(None), Err(PollError::WrongDirection));
}

#[test]
fn errors_say_what_failed_once() {
    let _wd = Watchdog::new(TIMEOUT);
    assert_eq!(TryRecvError::Empty.to_string(), "no message is waiting");
    assert_eq!(TrySendError::Full.to_string(), "the pipe is full");
    assert_eq!(
        RecvError::TooLong { len: 9, max: 4 }.to_string(),
        "the message is 9 bytes, more than the 4 allowed"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = SendTimeoutError::Timeout.into();
    assert!(boxed.source().is_none());
}

#[cfg(feature = "serde")]
#[test]
fn object_forms() {
    let _wd = Watchdog::new(TIMEOUT);
    use shmproc_channel::{RecvObjError, SendObjError};
    let (mut a, mut b) = small_pipe();
    assert!(matches!(
        b.try_recv_obj::<String>(),
        Err(RecvObjError::Recv(TryRecvError::Empty))
    ));
    assert!(matches!(
        b.recv_obj_timeout::<String>(SHORT),
        Err(RecvObjError::Recv(RecvTimeoutError::Timeout))
    ));
    a.try_send_obj("hi").expect("try_send_obj");
    assert_eq!(b.recv_obj_deadline::<String>(past()).expect("recv"), "hi");
    a.send_obj_timeout(&(1u8, 2u16), SHORT).expect("send");
    assert_eq!(b.try_recv_obj::<(u8, u16)>().expect("recv"), (1, 2));
    // Not a `bool`: a decode error, and the message is consumed.
    a.send_obj(&7u8).expect("send");
    assert!(matches!(b.recv_obj::<bool>(), Err(RecvObjError::Decode(_))));
    assert!(matches!(
        b.try_recv_obj::<u8>(),
        Err(RecvObjError::Recv(TryRecvError::Empty))
    ));
    fill(&mut a);
    assert!(matches!(
        a.try_send_obj(&[0u8; 100][..]),
        Err(SendObjError::Send(TrySendError::Full))
    ));
    assert!(matches!(
        a.send_obj_deadline("x", past()),
        Err(SendObjError::Send(SendTimeoutError::Timeout))
    ));
    a.close();
    while b.try_recv_bytes().is_ok() {}
    assert!(matches!(
        b.recv_obj::<u8>(),
        Err(RecvObjError::Recv(RecvError::Eof))
    ));
}
