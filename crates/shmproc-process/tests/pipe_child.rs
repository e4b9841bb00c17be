//! A `Connection` passed to a child under every start method: the child
//! claims its end and ping-pongs `Pod` values and bytes with the parent;
//! the parent sees EOF once the child has exited, and promptly when the
//! child is killed mid-conversation.

mod common;

use shmproc_channel::{Connection, Pipe, RecvTimeoutError, SendError};
use shmproc_process::Process;
use shmproc_testing::{TIMEOUT, TestShm, Watchdog};

const ROUNDS: u64 = 20;

/// Receives the next `u64`, waiting at most `TIMEOUT`.
fn recv_u64(c: &mut Connection) -> Result<u64, RecvTimeoutError> {
    c.recv_timeout::<u64>(TIMEOUT)
}

/// Answers `ROUNDS` rounds: a `u64` back as `x + 1`, bytes back reversed.
fn echo(mut conn: Connection) {
    for _ in 0..ROUNDS {
        let x = recv_u64(&mut conn).expect("child: recv u64");
        conn.send(&(x + 1)).expect("child: send u64");
        let mut b = conn.recv_bytes_timeout(TIMEOUT).expect("child: recv bytes");
        b.reverse();
        conn.send_bytes(&b).expect("child: send bytes");
    }
    // Returning drops `conn`: the child closes its end.
}

fn echo_target((conn,): (Connection,)) {
    echo(conn);
}

/// Answers one round, then waits (up to `TIMEOUT`) for a message that
/// never comes: it is killed meanwhile.
fn one_round_then_wait((mut conn,): (Connection,)) {
    let x = recv_u64(&mut conn).expect("child: recv u64");
    conn.send(&(x + 1)).expect("child: send u64");
    let _ = conn.recv_bytes_timeout(TIMEOUT);
}

/// The parent's half of `echo`.
fn converse(a: &mut Connection, what: &str) {
    for i in 0..ROUNDS {
        a.send(&(i * 7)).expect("send u64");
        assert_eq!(recv_u64(a).expect("recv u64"), i * 7 + 1, "{what}");
        let msg: Vec<u8> = (0..(i as usize * 97) % 3000).map(|k| k as u8).collect();
        a.send_bytes(&msg).expect("send bytes");
        let back = a.recv_bytes_timeout(TIMEOUT).expect("recv bytes");
        let mut want = msg;
        want.reverse();
        assert_eq!(back, want, "{what}");
    }
}

/// The child exited (and closed its end): the parent reads EOF.
fn expect_eof(a: &mut Connection, what: &str) {
    match a.recv_bytes_timeout(TIMEOUT) {
        Err(RecvTimeoutError::Eof) => {}
        other => panic!("{what}: expected EOF, got {other:?}"),
    }
    assert!(a.readable(), "{what}: EOF is readable");
}

#[test]
fn child_ping_pongs_over_a_passed_connection() {
    let _w = Watchdog::named(TIMEOUT * 2, "pipe_child ping-pong");
    let shm = TestShm::new();
    for ctx in common::contexts() {
        let m = ctx.start_method();
        // Anonymous (travels as an fd) and named (travels by name); the
        // child gets either end.
        for (named, child_first) in [(false, false), (true, true)] {
            let what = format!("{m}, named {named}, child end first {child_first}");
            let (x, y) = if named {
                Pipe::create(&shm.name("pp")).expect("named pipe")
            } else {
                Pipe::new().expect("anonymous pipe")
            };
            let (mut a, b) = if child_first { (y, x) } else { (x, y) };
            let child = ctx
                .builder()
                .target(echo_target, (b,))
                .start()
                .expect("start");
            converse(&mut a, &what);
            assert_eq!(child.join_timeout(TIMEOUT).expect("join"), 0, "{what}");
            expect_eof(&mut a, &what);
        }
    }
    assert!(shm.leftovers().is_empty(), "{:?}", shm.leftovers());
}

/// The parent used the end before handing it over: the child takes it
/// over at the published indices and the parent's dropped copy does not
/// close it.
#[test]
fn an_end_used_by_the_parent_can_be_handed_over() {
    let _w = Watchdog::named(TIMEOUT * 2, "pipe_child handover");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let (mut a, mut b) = Pipe::new().expect("pipe");
        a.send(&5u64).expect("send");
        assert_eq!(recv_u64(&mut b).expect("parent reads its own end"), 5);
        b.send_bytes(b"from the parent").expect("send");
        assert_eq!(
            a.recv_bytes_timeout(TIMEOUT).expect("recv"),
            b"from the parent"
        );
        // `b` is packed (its claim released) and dropped here.
        let child = Process::builder()
            .context(ctx)
            .target(echo_target, (b,))
            .start()
            .expect("start");
        converse(&mut a, &format!("{m}, handed over"));
        assert_eq!(child.join_timeout(TIMEOUT).expect("join"), 0, "{m}");
        expect_eof(&mut a, &format!("{m}, handed over"));
    }
}

/// A child killed with `SIGKILL` mid-conversation: the parent's `recv`
/// returns EOF (within a liveness slice, not at the timeout).
#[test]
fn killed_child_gives_eof() {
    let _w = Watchdog::named(TIMEOUT * 2, "pipe_child kill");
    for ctx in common::contexts() {
        let m = ctx.start_method();
        let (mut a, b) = Pipe::new().expect("pipe");
        let child = ctx
            .builder()
            .target(one_round_then_wait, (b,))
            .start()
            .expect("start");
        a.send(&1u64).expect("send");
        assert_eq!(recv_u64(&mut a).expect("the child answers"), 2, "{m}");
        child.kill().expect("kill");
        assert_eq!(
            child.join_timeout(TIMEOUT).expect("join"),
            -9,
            "{m}: killed"
        );
        match a.recv_bytes_timeout(TIMEOUT) {
            Err(RecvTimeoutError::Eof) => {}
            other => panic!("{m}: expected EOF after the kill, got {other:?}"),
        }
        match a.send_bytes(&vec![0u8; 4 << 20]) {
            Err(SendError::BrokenPipe) => {}
            other => panic!("{m}: expected BrokenPipe after the kill, got {other:?}"),
        }
    }
}

/// Holds its end without ever using it, says it started, and waits to be
/// killed (or returns at once, dropping the end, when told to).
fn never_uses((_conn, started, wait): (Connection, shmproc_sync::Event, bool)) {
    started.set();
    if wait {
        let never = shmproc_sync::Event::new().expect("event");
        let _ = never.wait_timeout(TIMEOUT);
    }
}

/// A child that dies, or returns, without ever using its end: the parent
/// still gets EOF (the child claimed the end as it unpacked it), well
/// before the timeout.
#[test]
fn a_child_that_never_used_its_end_gives_eof() {
    use shmproc_process::Shareable;
    let _w = Watchdog::named(TIMEOUT * 2, "pipe_child unused end");
    let limit = std::time::Duration::from_secs(20);
    for ctx in common::contexts() {
        let m = ctx.start_method();
        for killed in [true, false] {
            let (mut a, b) = Pipe::new().expect("pipe");
            let started = shmproc_sync::Event::new().expect("event");
            let child = ctx
                .builder()
                .target(never_uses, (b, started.try_clone().expect("h"), killed))
                .start()
                .expect("start");
            assert!(
                started.wait_timeout(TIMEOUT).is_ok(),
                "{m}: child did not start"
            );
            if killed {
                child.kill().expect("kill");
            }
            assert!(child.join_timeout(TIMEOUT).is_ok());
            match a.recv_bytes_timeout(limit) {
                Err(RecvTimeoutError::Eof) => {}
                other => panic!("{m} (killed: {killed}): expected EOF, got {other:?}"),
            }
        }
    }
}
