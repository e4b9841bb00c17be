//! Listener / Client: round trips over Unix sockets and TCP between
//! processes, a wrong key rejected on both sides, clients that send
//! garbage, a huge length or nothing, Python 3.12's handshake bytes (a fixed
//! vector and, where `python3` is installed, Python itself).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use shmproc_manager::auth::{self, CHALLENGE};
use shmproc_manager::{Address, AuthenticationError, Client, ConnError, Listener};
use shmproc_process::Process;
use shmproc_testing::{TIMEOUT, Watchdog, wait_until};

const KEY: &[u8] = b"shmproc-key";

fn echo_client((addr, key): (String, Vec<u8>)) {
    let addr: Address = postcard::from_bytes(&hex(&addr)).expect("address");
    let mut c = Client::connect(&addr, &key).expect("child connect");
    let (s, n): (String, u64) = c.recv_obj_timeout(TIMEOUT).expect("child recv");
    c.send_obj(&(s.to_uppercase(), n + 1)).expect("child send");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn round_trip_with_child(addr: Address) {
    let listener = Listener::bind(&addr, KEY).expect("bind");
    let encoded = to_hex(&postcard::to_allocvec(listener.address()).expect("encode"));
    let p = Process::new(echo_client, (encoded, KEY.to_vec()));
    p.start().expect("start");
    let mut c = listener
        .accept_pending_timeout(TIMEOUT)
        .expect("accept")
        .authenticate(KEY, TIMEOUT)
        .expect("authenticate");
    c.send_obj(&("hello", 41u64)).expect("send");
    let back: (String, u64) = c.recv_obj_timeout(TIMEOUT).expect("recv");
    assert_eq!(back, ("HELLO".to_owned(), 42));
    assert_eq!(p.join_timeout(TIMEOUT).expect("join"), 0);
    // The child exited: EOF.
    assert!(matches!(c.recv_bytes_timeout(TIMEOUT), Err(ConnError::Eof)));
}

#[test]
fn unix_round_trip_with_a_child() {
    let _w = Watchdog::new(TIMEOUT);
    round_trip_with_child(Address::unique_unix());
}

#[test]
fn tcp_round_trip_with_a_child() {
    let _w = Watchdog::new(TIMEOUT);
    round_trip_with_child(Address::tcp("127.0.0.1:0").expect("addr"));
}

#[test]
fn wrong_key_is_rejected_on_both_sides() {
    let _w = Watchdog::new(TIMEOUT);
    for addr in [
        Address::unique_unix(),
        Address::tcp("127.0.0.1:0").expect("addr"),
    ] {
        let listener = Listener::bind(&addr, KEY).expect("bind");
        let a = listener.address().clone();
        let client = std::thread::spawn(move || Client::connect_timeout(&a, b"wrong", TIMEOUT));
        let server = listener.accept();
        let client = client.join().expect("client thread");
        assert!(
            matches!(
                server,
                Err(ConnError::Auth(AuthenticationError::WrongDigest))
            ),
            "{server:?}"
        );
        assert!(
            matches!(client, Err(ConnError::Auth(AuthenticationError::Rejected))),
            "{client:?}"
        );
    }
}

#[test]
fn garbage_huge_length_and_silence_then_a_good_client() {
    let _w = Watchdog::new(TIMEOUT);
    let mut listener =
        Listener::bind(&Address::tcp("127.0.0.1:0").expect("addr"), KEY).expect("bind");
    listener.set_handshake_timeout(Duration::from_millis(300));
    let Address::Tcp(sa) = listener.address().clone() else {
        unreachable!()
    };

    // Silent: the handshake times out.
    let silent = TcpStream::connect(sa).expect("connect");
    assert!(matches!(listener.accept(), Err(ConnError::Timeout)));
    drop(silent);

    // A huge length instead of a response: refused before any allocation.
    let mut huge = TcpStream::connect(sa).expect("connect");
    huge.write_all(&0x7fff_ffffu32.to_be_bytes())
        .expect("write");
    huge.write_all(&(-1i32).to_be_bytes()).expect("write");
    assert!(matches!(listener.accept(), Err(ConnError::TooLong { .. })));
    let mut huge8 = TcpStream::connect(sa).expect("connect");
    huge8.write_all(&(-1i32).to_be_bytes()).expect("write");
    huge8.write_all(&u64::MAX.to_be_bytes()).expect("write");
    assert!(matches!(listener.accept(), Err(ConnError::TooLong { .. })));

    // Garbage of a plausible length.
    let mut junk = TcpStream::connect(sa).expect("connect");
    junk.write_all(&40u32.to_be_bytes()).expect("write");
    junk.write_all(&[0xab; 40]).expect("write");
    assert!(matches!(listener.accept(), Err(ConnError::Auth(_))));

    // A good client still gets in.
    let a = listener.address().clone();
    let t = std::thread::spawn(move || {
        let mut c = Client::connect_timeout(&a, KEY, TIMEOUT).expect("connect");
        c.send_bytes(b"after the noise").expect("send");
    });
    let mut c = listener.accept().expect("accept");
    assert_eq!(
        c.recv_bytes_timeout(TIMEOUT).expect("recv"),
        b"after the noise"
    );
    t.join().expect("client");
}

#[test]
fn messages_over_the_limit_are_refused_after_the_handshake() {
    let _w = Watchdog::new(TIMEOUT);
    let listener = Listener::bind(&Address::unique_unix(), KEY).expect("bind");
    let a = listener.address().clone();
    let t = std::thread::spawn(move || {
        let mut c = Client::connect_timeout(&a, KEY, TIMEOUT).expect("connect");
        c.send_bytes(&[7; 2000]).expect("send");
    });
    let mut c = listener.accept().expect("accept");
    c.set_max_message_len(1000);
    assert!(matches!(
        c.recv_bytes_timeout(TIMEOUT),
        Err(ConnError::TooLong {
            len: 2000,
            max: 1000
        })
    ));
    t.join().expect("client");
}

/// The bytes Python 3.12's `deliver_challenge` sends and its
/// `_create_response` computes for key `shmproc-key` and the random part
/// 00 01 .. 27, computed with Python's `hmac` following 3.12's
/// `multiprocessing/connection.py`.
#[test]
fn python_312_handshake_vector() {
    let random: [u8; 40] = std::array::from_fn(|i| i as u8);
    let message = auth::challenge_message(&random);
    assert_eq!(
        to_hex(&[CHALLENGE, &message].concat()),
        "234348414c4c454e4745237b7368613235367d000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627"
    );
    let response = auth::create_response(KEY, &message).expect("response");
    assert_eq!(
        to_hex(&response),
        "7b7368613235367d33135c6f7da6db816d8b85d6f0d022018ba8c81455461decabc85ab29187af39"
    );
    auth::verify_response(KEY, &message, &response).expect("verify");
    // What Python 3.11 answers to the same challenge: a bare HMAC-MD5 of
    // the whole message (c8788bfd...), 16 bytes, refused as legacy.
    assert_eq!(
        auth::verify_response(KEY, &message, &hex("c8788bfddba40d7f2afc78b5742a89c2")),
        Err(AuthenticationError::LegacyMd5)
    );
}

/// Python 3.12's handshake, written from its algorithm, over the framing
/// of the installed Python's `multiprocessing.connection` (3.11 here).
const PY_312: &str = r#"
import hmac, os, sys
from multiprocessing.connection import Client, Listener
mode, addr, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
def deliver(c):
    msg = b'{sha256}' + os.urandom(40)
    c.send_bytes(b'#CHALLENGE#' + msg)
    r = c.recv_bytes(256)
    ok = r.startswith(b'{sha256}') and hmac.compare_digest(r[8:], hmac.new(key, msg, 'sha256').digest())
    c.send_bytes(b'#WELCOME#' if ok else b'#FAILURE#')
    assert ok, 'digest received was wrong'
def answer(c):
    m = c.recv_bytes(256)
    assert m.startswith(b'#CHALLENGE#')
    m = m[len(b'#CHALLENGE#'):]
    assert m.startswith(b'{sha256}') and len(m) == 48
    c.send_bytes(b'{sha256}' + hmac.new(key, m, 'sha256').digest())
    assert c.recv_bytes(256) == b'#WELCOME#', 'digest sent was rejected'
if mode == 'client312':
    c = Client(addr, family='AF_UNIX', authkey=None)
    answer(c); deliver(c)
    c.send_bytes(b'hello from python')
    assert c.recv_bytes(256) == b'hello from rust'
elif mode == 'server312':
    l = Listener(addr, family='AF_UNIX', authkey=None)
    print('ready', flush=True)
    c = l.accept()
    deliver(c); answer(c)
    c.send_bytes(c.recv_bytes(256).upper())
elif mode == 'client311':
    try:
        Client(addr, family='AF_UNIX', authkey=key)
    except Exception as e:
        print(type(e).__name__, flush=True)
        sys.exit(3)
"#;

fn python(mode: &str, addr: &Address) -> Option<std::process::Child> {
    let Address::Unix(path) = addr else {
        unreachable!()
    };
    Command::new("python3")
        .args([
            "-c",
            PY_312,
            mode,
            path.to_str().expect("utf-8 path"),
            "shmproc-key",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .ok()
}

fn wait_python(mut child: std::process::Child) -> (i32, String) {
    assert!(wait_until(TIMEOUT, || matches!(
        child.try_wait(),
        Ok(Some(_))
    )));
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn python_handshakes() {
    let _w = Watchdog::new(TIMEOUT);
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("python3 not installed: skipped");
        return;
    }
    // Python (3.12's algorithm) as the client, our Listener.
    let listener = Listener::bind(&Address::unique_unix(), KEY).expect("bind");
    let py = python("client312", listener.address()).expect("python");
    let mut c = listener
        .accept_pending_timeout(TIMEOUT)
        .expect("accept")
        .authenticate(KEY, TIMEOUT)
        .expect("python authenticated");
    assert_eq!(
        c.recv_bytes_timeout(TIMEOUT).expect("recv"),
        b"hello from python"
    );
    c.send_bytes(b"hello from rust").expect("send");
    assert_eq!(wait_python(py).0, 0);

    // Python (3.12's algorithm) as the server, our Client.
    let addr = Address::unique_unix();
    let mut py = python("server312", &addr).expect("python");
    let mut line = String::new();
    BufReader::new(py.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line.trim(), "ready");
    let mut c = Client::connect_timeout(&addr, KEY, TIMEOUT).expect("connect to python");
    c.send_bytes(b"shout").expect("send");
    assert_eq!(c.recv_bytes_timeout(TIMEOUT).expect("recv"), b"SHOUT");
    assert_eq!(wait_python(py).0, 0);
    let Address::Unix(p) = addr else {
        unreachable!()
    };
    let _ = std::fs::remove_file(p);

    // The installed Python's own Client (3.11: legacy HMAC-MD5) is refused
    // on both sides; with 3.12+ it authenticates.
    let v = Command::new("python3")
        .args(["-c", "import sys; print(sys.version_info >= (3, 12))"])
        .output()
        .expect("version");
    let modern = String::from_utf8_lossy(&v.stdout).trim() == "True";
    let py = python("client311", listener.address()).expect("python");
    let got = listener
        .accept_pending_timeout(TIMEOUT)
        .expect("accept")
        .authenticate(KEY, TIMEOUT);
    let (code, out) = wait_python(py);
    if modern {
        assert!(got.is_ok(), "{got:?}");
        assert_eq!(code, 0);
    } else {
        assert!(
            matches!(got, Err(ConnError::Auth(AuthenticationError::LegacyMd5))),
            "{got:?}"
        );
        assert_eq!((code, out.trim()), (3, "AuthenticationError"));
    }
}
