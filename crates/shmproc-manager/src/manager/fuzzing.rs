//! The body of the `manager_frames` fuzz target (`fuzz/`), reached through
//! [`__private`](crate::__private); the same code runs on stable when
//! `tests/fuzz_replay.rs` replays its corpus. Not part of the public API.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::client::decode_reply;
use super::server::{Server, Session, encode};
use super::wire::{Kind, MAX_FRAME, Op, Reply, Request, Val};
use crate::{ConnError, ProxyError, SocketConnection};

/// The most input bytes written into the socket (a Unix socket's buffer
/// takes them without a reader).
const MAX_INPUT: usize = 64 << 10;

/// `manager_frames`: any bytes as what an authenticated client sends a
/// manager server's session, served as [`Session::run`] serves them:
/// each frame decoded as a [`Request`] and dispatched, its reply encoded,
/// then decoded by the client's reply decoder (it must read back the same
/// reply). Every frame is also given to the client's reply decoder as if
/// the server had sent it. Errors only: never a panic, a hang (the client
/// is gone for blocking calls: they return at once) or an allocation
/// sized by a forged length above the frame limit. Then the session ends,
/// and another client of the same server is served: a dict created, set,
/// read back and released, the object count back where it was.
///
/// Input: byte 0, bit 0 clear: the rest goes through a Unix socket and the
/// session's frame decoder ([`SocketConnection`]: Python's 4-byte
/// big-endian lengths, `-1` and 8 bytes for long ones, [`MAX_FRAME`] at
/// most); set: the rest is a sequence of frames, each a length byte and
/// that many bytes (quicker to explore the requests).
pub(crate) fn manager_frames(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let server = Server::new(0x5eed, Duration::from_secs(1), Vec::new());
    let mut s = Session::new(&server, 1);
    let mut stopped = false;
    if mode & 1 == 0 {
        let Ok((mut tx, rx)) = UnixStream::pair() else {
            return; // out of descriptors: nothing to test
        };
        let rest = rest.get(..rest.len().min(MAX_INPUT)).unwrap_or_default();
        if tx.write_all(rest).is_err() || tx.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        let mut conn = SocketConnection::from_unix(rx);
        while !stopped {
            match conn.recv_frame(MAX_FRAME, Some(Instant::now() + Duration::from_secs(5))) {
                Ok(frame) => stopped = serve(&mut s, &frame),
                // The end of the input, or a frame over the limit (the
                // session ends, as `run`'s does).
                Err(ConnError::Eof | ConnError::TooLong { .. }) => break,
                Err(e) => panic!("the frame decoder failed with {e} on bytes in hand"),
            }
        }
    } else {
        let mut rest = rest;
        while let [n, tail @ ..] = rest
            && !stopped
        {
            let (frame, tail) = tail.split_at(usize::from(*n).min(tail.len()));
            stopped = serve(&mut s, frame);
            rest = tail;
        }
    }
    s.end();
    still_serves(&server);
}

/// Serves one frame as `run` does; `true` for a `Shutdown`.
fn serve(s: &mut Session<'_>, frame: &[u8]) -> bool {
    // The client's decoder on bytes it never expected: an error or a reply.
    let _ = decode_reply(frame);
    let (reply, stop) = s.serve_frame(frame, &mut || false);
    let bytes = encode(&reply);
    match (decode_reply(&bytes), reply) {
        (Ok(got), want) => assert_eq!(got, want, "a reply did not read back"),
        (Err(ProxyError::Remote(got)), Reply::Err(want)) => {
            assert_eq!(got, want, "an error reply did not read back");
        }
        (Err(e), want) => panic!("the reply {want:?} read back as {e}"),
    }
    stop
}

/// Another client of `server` is served, and leaves nothing behind.
fn still_serves(server: &Server) {
    let before = server.object_count();
    let mut s = Session::new(server, 2);
    let mut call = |r: Request| s.serve_frame(&encode(&r), &mut || true).0;
    let Reply::Id(id) = call(Request::Create {
        kind: Kind::Dict,
        ty: "fuzz".into(),
        name: None,
        init: Vec::new(),
        maxsize: 0,
    }) else {
        panic!("the server no longer creates a dict");
    };
    let set = call(Request::Call {
        id,
        op: Op::Set(b"k".to_vec(), Val::from(b"v".to_vec())),
    });
    assert_eq!(set, Reply::Ok);
    let got = call(Request::Call {
        id,
        op: Op::Get(b"k".to_vec()),
    });
    assert_eq!(got, Reply::Maybe(Some(b"v".to_vec())));
    assert_eq!(call(Request::Release { id }), Reply::Ok);
    s.end();
    assert_eq!(server.object_count(), before, "the dict was not freed");
}
