//! [`Listener`] and [`Client`]: Python's `multiprocessing.connection`
//! over Unix sockets and TCP, with the authkey handshake of [`crate::auth`].
//!
//! Frames are Python's: a 4-byte big-endian signed length (or `-1` and an
//! 8-byte length for 2 GiB and more), then the bytes. Every length read from
//! the wire is checked against a limit before anything is allocated
//! ([`MAX_HANDSHAKE_FRAME`](crate::auth::MAX_HANDSHAKE_FRAME) during the
//! handshake, [`SocketConnection::max_message_len`] after), and nothing an
//! unauthenticated peer sends is decoded beyond the handshake's fixed byte
//! strings.
//!
//! A read that finds nothing first polls the socket (non-blocking `recv`)
//! for up to an adaptive budget, 50 µs while the peer answers within it,
//! down to 2 µs when it does not, then sleeps with its timeout: a peer
//! awake on another CPU answers without the two cross-CPU wake-ups of a
//! sleeping read (the Manager's policy, also on its pipes). A handshake,
//! whose four steps each wait on a busy peer, and a request/reply loop
//! gain most (`manager_compare`: a TCP round trip 8.8 µs instead of 45).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, CHALLENGE, FAILURE, MAX_HANDSHAKE_FRAME, MESSAGE_LENGTH, WELCOME};
use crate::spin::SpinBudget;
use crate::{AuthenticationError, ConnError};

/// Default limit on a message after the handshake (64 MiB).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 64 << 20;
/// Default time a peer has to complete the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a [`Listener`] listens: a Unix socket path or a TCP address
/// (Python's `'AF_UNIX'` / `'AF_INET'` families).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Address {
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Address {
    /// A fresh Unix socket path in the temporary directory.
    pub fn unique_unix() -> Self {
        let r = shmproc_shm::os::random_u64();
        Address::Unix(
            std::env::temp_dir().join(format!("shmproc-{}-{r:016x}.sock", std::process::id())),
        )
    }

    /// The first address `addr` resolves to, as TCP.
    ///
    /// # Errors
    /// When it does not resolve.
    pub fn tcp(addr: impl ToSocketAddrs) -> io::Result<Self> {
        addr.to_socket_addrs()?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
        }
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

/// One end of an authenticated socket connection (Python's `Connection`
/// from `Listener.accept()` / `Client(...)`): the same send/receive shape as
/// a Pipe's [`Connection`](shmproc_channel::Connection), payloads as bytes
/// or as postcard-encoded objects.
#[derive(Debug)]
pub struct SocketConnection {
    stream: Stream,
    max_len: usize,
    /// Bytes read from the socket and not consumed yet: `rbuf[rpos..rend]`
    /// (`rbuf` is [`READ_BUF`] long once first used: zeroed once).
    /// One `read` usually brings a whole frame, header and payload.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// The frame being sent (reused: one `write` per frame, no allocation).
    wbuf: Vec<u8>,
    /// The write timeout last set on the socket (`None`: never set), so
    /// that it is set again only when it changes.
    write_timeout: Option<Option<Duration>>,
    /// The same for the read timeout (`SO_RCVTIMEO`): a read waits for
    /// its first byte with it, no `poll` first.
    read_timeout: Option<Option<Duration>>,
    /// `Some`: reads take descriptors too (`recvmsg`), kept here; a
    /// plain read would close those that come with its bytes.
    fds: Option<Vec<std::os::fd::OwnedFd>>,
    /// How long a read polls the socket before it sleeps ([`SpinBudget`]).
    spin: SpinBudget,
}

/// Size of a connection's read buffer: a read asks for this much.
const READ_BUF: usize = 16 << 10;

impl SocketConnection {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            max_len: DEFAULT_MAX_MESSAGE_LEN,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            wbuf: Vec::new(),
            write_timeout: None,
            read_timeout: None,
            fds: None,
            spin: SpinBudget::default(),
        }
    }

    /// A connection over `s`, not authenticated (the fuzz target's).
    pub(crate) fn from_unix(s: UnixStream) -> Self {
        Self::new(Stream::Unix(s))
    }

    /// From now on, reads keep the descriptors that come with the bytes
    /// (Unix sockets), for [`take_fds`](Self::take_fds).
    pub(crate) fn collect_fds(&mut self) {
        self.fds.get_or_insert_with(Vec::new);
    }

    /// The descriptors received since [`collect_fds`](Self::collect_fds);
    /// reads are plain again.
    pub(crate) fn take_fds(&mut self) -> Vec<std::os::fd::OwnedFd> {
        self.fds.take().unwrap_or_default()
    }

    fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if self.write_timeout != Some(t) {
            self.stream.set_write_timeout(t)?;
            self.write_timeout = Some(t);
        }
        Ok(())
    }

    fn buffered(&self) -> usize {
        self.rend - self.rpos
    }

    /// The largest message [`recv_bytes`](Self::recv_bytes) accepts.
    pub fn max_message_len(&self) -> usize {
        self.max_len
    }

    /// Sets the largest message accepted.
    pub fn set_max_message_len(&mut self, max: usize) {
        self.max_len = max;
    }

    /// Sends one message (`send_bytes`).
    ///
    /// # Errors
    /// [`ConnError::Eof`] when the peer is gone, [`ConnError::Io`].
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<(), ConnError> {
        self.set_write_timeout(None)?;
        self.write_frame(buf)
    }

    /// Sends one message, giving up after `timeout`.
    ///
    /// # Errors
    /// As [`send_bytes`](Self::send_bytes); [`ConnError::Timeout`].
    pub fn send_bytes_timeout(&mut self, buf: &[u8], timeout: Duration) -> Result<(), ConnError> {
        self.set_write_timeout(Some(coarse(timeout)))?;
        self.write_frame(buf)
    }

    /// One `write` for header and payload (with `TCP_NODELAY`, one
    /// segment for a small frame).
    fn write_frame(&mut self, buf: &[u8]) -> Result<(), ConnError> {
        self.write_frames(&[buf])
    }

    /// Several frames in one `write` (a pipelined handshake step).
    fn write_frames(&mut self, bufs: &[&[u8]]) -> Result<(), ConnError> {
        let frame = self.encode_frames(bufs);
        let r = self.stream.write_all(&frame);
        self.keep_wbuf(frame);
        r.map_err(ConnError::from)
    }

    fn encode_frames(&mut self, bufs: &[&[u8]]) -> Vec<u8> {
        let mut frame = std::mem::take(&mut self.wbuf);
        frame.clear();
        for buf in bufs {
            match i32::try_from(buf.len()) {
                Ok(n) => frame.extend(n.to_be_bytes()),
                Err(_) => {
                    frame.extend((-1i32).to_be_bytes());
                    frame.extend((buf.len() as u64).to_be_bytes());
                }
            }
            frame.extend_from_slice(buf);
        }
        frame
    }

    fn keep_wbuf(&mut self, frame: Vec<u8>) {
        // Keep a small buffer for the next frame, not a large one.
        if frame.capacity() <= READ_BUF {
            self.wbuf = frame;
        }
    }

    /// Sends frames in one `write`, or one `sendmsg` with `fd` attached
    /// (`SCM_RIGHTS`; Unix sockets only).
    pub(crate) fn send_frames_with_fd(
        &mut self,
        bufs: &[&[u8]],
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<(), ConnError> {
        let Some(fd) = fd else {
            return self.write_frames(bufs);
        };
        if !matches!(self.stream, Stream::Unix(_)) {
            return Err(ConnError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "descriptors pass over Unix sockets only",
            )));
        }
        let frame = self.encode_frames(bufs);
        let r = shmproc_shm::os::send_with_fds(self.fd(), &frame, &[fd]);
        self.keep_wbuf(frame);
        r.map_err(ConnError::Io)
    }

    /// Receives one message (`recv_bytes`), waiting as long as it takes.
    ///
    /// # Errors
    /// [`ConnError::Eof`], [`ConnError::TooLong`] (nothing allocated), [`ConnError::Io`].
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, ConnError> {
        self.recv_frame(self.max_len, None)
    }

    /// Receives one message, waiting at most `timeout` for all of it.
    ///
    /// # Errors
    /// As [`recv_bytes`](Self::recv_bytes); [`ConnError::Timeout`].
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, ConnError> {
        self.recv_frame(self.max_len, Some(Instant::now() + timeout))
    }

    /// Receives one message of at most `max` bytes, until `deadline`.
    pub(crate) fn recv_frame(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ConnError> {
        // Each read polls briefly before it sleeps (`read_some`).
        let mut len4 = [0u8; 4];
        self.read_exact_until(&mut len4, deadline)?;
        let len = match i32::from_be_bytes(len4) {
            -1 => {
                let mut len8 = [0u8; 8];
                self.read_exact_until(&mut len8, deadline)?;
                u64::from_be_bytes(len8)
            }
            n => u64::try_from(n).map_err(|_| ConnError::TooLong {
                len: u64::MAX,
                max: max as u64,
            })?,
        };
        if len > max as u64 {
            return Err(ConnError::TooLong {
                len,
                max: max as u64,
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact_until(&mut buf, deadline)?;
        Ok(buf)
    }

    fn read_exact_until(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(), ConnError> {
        let mut done = 0;
        while done < buf.len() {
            if self.buffered() == 0 {
                let want = buf.len() - done;
                if want >= READ_BUF {
                    // A large payload: straight into its buffer.
                    done += self.read_some(buf.get_mut(done..).unwrap_or_default(), deadline)?;
                    continue;
                }
                self.fill(deadline)?;
            }
            let n = self.buffered().min(buf.len() - done);
            if let (Some(dst), Some(src)) = (
                buf.get_mut(done..done + n),
                self.rbuf.get(self.rpos..self.rpos + n),
            ) {
                dst.copy_from_slice(src);
            }
            self.rpos += n;
            done += n;
        }
        Ok(())
    }

    /// One read of what the socket has (`recvmsg` while collecting
    /// descriptors). When nothing is there yet, it polls the socket with
    /// non-blocking reads for up to the connection's [`SpinBudget`] (a
    /// peer that is awake on another CPU answers within it; a sleeping
    /// read costs two cross-CPU wake-ups), then waits for the first byte
    /// until `deadline` with the socket's receive timeout. `Eof` at 0
    /// bytes; [`ConnError::Timeout`] with nothing read.
    fn read_some(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize, ConnError> {
        let mut budget = self.spin;
        let polled = budget.poll_until(deadline, || self.read_nowait(buf));
        self.spin = budget;
        if let Some(n) = polled? {
            return Ok(n);
        }
        loop {
            {
                let t = match deadline {
                    None => None,
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(ConnError::Timeout);
                        }
                        Some(read_timeout(left))
                    }
                };
                if self.read_timeout != Some(t) {
                    self.stream.set_read_timeout(t)?;
                    self.read_timeout = Some(t);
                }
            }
            let r = if self.fds.is_some() {
                shmproc_shm::os::recv_with_fds(self.fd(), buf).map(|(n, fds)| {
                    self.fds.get_or_insert_with(Vec::new).extend(fds);
                    n
                })
            } else {
                self.stream.read(buf)
            };
            match r {
                Ok(0) => return Err(ConnError::Eof),
                Ok(n) => return Ok(n),
                // The receive timeout passed: the deadline decides.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A read that does not wait: `None` when nothing is there yet.
    fn read_nowait(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ConnError> {
        let r = if self.fds.is_some() {
            shmproc_shm::os::recv_with_fds_nowait(self.fd(), buf).map(|(n, fds)| {
                self.fds.get_or_insert_with(Vec::new).extend(fds);
                n
            })
        } else {
            shmproc_shm::os::recv_nowait(self.fd(), buf)
        };
        match r {
            Ok(0) => Err(ConnError::Eof),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads what the socket has (up to [`READ_BUF`]) into the empty buffer.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<(), ConnError> {
        let mut b = std::mem::take(&mut self.rbuf);
        b.resize(READ_BUF, 0);
        let r = self.read_some(&mut b, deadline);
        self.rend = *r.as_ref().unwrap_or(&0);
        self.rbuf = b;
        self.rpos = 0;
        r.map(drop)
    }

    /// Waits up to `wait` for a message to start, then reads it whole
    /// (`rest` for the remainder: a deadline in the middle of a frame
    /// would lose its first bytes). [`ConnError::Timeout`] with nothing
    /// read when none started.
    pub(crate) fn recv_frame_within(
        &mut self,
        wait: Duration,
        max: usize,
        rest: Duration,
    ) -> Result<Vec<u8>, ConnError> {
        if self.buffered() == 0 {
            self.fill(Some(Instant::now() + wait))?;
        }
        self.recv_frame(max, Some(Instant::now() + rest))
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.stream {
            Stream::Unix(s) => std::os::fd::AsFd::as_fd(s),
            Stream::Tcp(s) => std::os::fd::AsFd::as_fd(s),
        }
    }

    /// Sends `value` encoded with postcard (`send`).
    ///
    /// # Errors
    /// [`ConnError::Codec`] when it does not encode; as [`send_bytes`](Self::send_bytes).
    pub fn send_obj<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConnError> {
        let b = postcard::to_allocvec(value).map_err(|e| ConnError::Codec(e.to_string()))?;
        self.send_bytes(&b)
    }

    /// Receives a postcard-encoded value (`recv`).
    ///
    /// # Errors
    /// [`ConnError::Codec`] when the bytes do not decode as `T`; as [`recv_bytes`](Self::recv_bytes).
    pub fn recv_obj<T: DeserializeOwned>(&mut self) -> Result<T, ConnError> {
        let b = self.recv_bytes()?;
        postcard::from_bytes(&b).map_err(|e| ConnError::Codec(e.to_string()))
    }

    /// [`recv_obj`](Self::recv_obj), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_obj`](Self::recv_obj); [`ConnError::Timeout`].
    pub fn recv_obj_timeout<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, ConnError> {
        let b = self.recv_bytes_timeout(timeout)?;
        postcard::from_bytes(&b).map_err(|e| ConnError::Codec(e.to_string()))
    }

    /// Waits at most `timeout` for the socket to become readable (a message
    /// starting, or EOF); nothing is read. `Ok(false)` when time ran out.
    ///
    /// # Errors
    /// The OS error of `poll`.
    pub fn poll(&self, timeout: Duration) -> Result<bool, ConnError> {
        if self.buffered() > 0 {
            return Ok(true);
        }
        let fd = self.fd();
        let ready = shmproc_shm::os::poll_readable(&[fd], Some(timeout)).map_err(ConnError::Io)?;
        Ok(ready.first().copied().unwrap_or(false))
    }

    /// Closes both directions (the peer reads EOF).
    pub fn close(&mut self) {
        self.stream.shutdown();
    }

    /// Python's `deliver_challenge`: we challenge, the peer answers.
    fn deliver_challenge(&mut self, authkey: &[u8], deadline: Instant) -> Result<(), ConnError> {
        let random = random_challenge()?;
        let message = auth::challenge_message(&random);
        self.send_bytes_timeout(&[CHALLENGE, &message].concat(), left(deadline))?;
        let response = self.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
        match auth::verify_response(authkey, &message, &response) {
            Ok(()) => self.send_bytes_timeout(WELCOME, left(deadline)),
            Err(e) => {
                let _ = self.send_bytes_timeout(FAILURE, left(deadline));
                Err(e.into())
            }
        }
    }

    /// Python's `answer_challenge`: the peer challenges, we answer.
    fn answer_challenge(&mut self, authkey: &[u8], deadline: Instant) -> Result<(), ConnError> {
        let digest = self.recv_challenge(authkey, deadline)?;
        self.send_bytes_timeout(&digest, left(deadline))?;
        self.recv_welcome(deadline)
    }

    /// Reads the peer's challenge and computes our response.
    fn recv_challenge(&mut self, authkey: &[u8], deadline: Instant) -> Result<Vec<u8>, ConnError> {
        let message = self.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
        let message = message
            .strip_prefix(CHALLENGE)
            .ok_or(AuthenticationError::Protocol("expected a challenge"))?;
        if message.len() < 20 {
            return Err(AuthenticationError::Protocol("challenge too short").into());
        }
        Ok(auth::create_response(authkey, message)?)
    }

    fn recv_welcome(&mut self, deadline: Instant) -> Result<(), ConnError> {
        let answer = self.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
        if answer != WELCOME {
            return Err(AuthenticationError::Rejected.into());
        }
        Ok(())
    }

    /// The server's side of the handshake (Listener.accept's).
    pub(crate) fn server_handshake(
        &mut self,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<(), ConnError> {
        let deadline = Instant::now() + timeout;
        self.deliver_challenge(authkey, deadline)?;
        self.answer_challenge(authkey, deadline)
    }

    /// The client's side of the handshake (Client's).
    pub(crate) fn client_handshake(
        &mut self,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<(), ConnError> {
        self.client_handshake_then(authkey, timeout, None)
    }

    /// The client's side of the handshake, with `early`, the first frame
    /// after it, sent along with our challenge (a Manager's hello: the
    /// server answers it with its own last handshake frames, see
    /// [`PendingConnection::authenticate_early`]). It goes out before the
    /// server has proved it knows the key, so it must hold nothing secret.
    pub(crate) fn client_handshake_then(
        &mut self,
        authkey: &[u8],
        timeout: Duration,
        early: Option<&[u8]>,
    ) -> Result<(), ConnError> {
        // Python's `answer_challenge` then `deliver_challenge`, the same
        // frames in the same order, pipelined: our response and our
        // challenge go out in one write, and the peer's welcome and
        // response come back together (two round trips, not three).
        let deadline = Instant::now() + timeout;
        let digest = self.recv_challenge(authkey, deadline)?;
        let random = random_challenge()?;
        let message = auth::challenge_message(&random);
        self.set_write_timeout(Some(coarse(left(deadline))))?;
        let challenge = [CHALLENGE, &message].concat();
        match early {
            Some(e) => self.write_frames(&[&digest, &challenge, e])?,
            None => self.write_frames(&[&digest, &challenge])?,
        }
        self.recv_welcome(deadline)?;
        let response = self.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
        match auth::verify_response(authkey, &message, &response) {
            Ok(()) => self.send_bytes_timeout(WELCOME, left(deadline)),
            Err(e) => {
                let _ = self.send_bytes_timeout(FAILURE, left(deadline));
                Err(e.into())
            }
        }
    }
}

/// [`MESSAGE_LENGTH`] random bytes (one `getrandom`).
fn random_challenge() -> Result<[u8; MESSAGE_LENGTH], ConnError> {
    let mut random = [0u8; MESSAGE_LENGTH];
    shmproc_shm::os::random_bytes(&mut random).map_err(ConnError::Io)?;
    Ok(random)
}

/// A write timeout as set on the socket: a caller's remaining time changes
/// at every call, and each change costs a system call, so whole
/// milliseconds, and whole seconds (rounded up) from one second on (the
/// handshake's writes then set it once).
fn coarse(t: Duration) -> Duration {
    if t >= Duration::from_secs(1) {
        Duration::from_secs(t.as_secs() + u64::from(t.subsec_nanos() > 0))
    } else {
        Duration::from_millis(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
            .max(Duration::from_millis(1))
    }
}

/// A read timeout as set on the socket: whole seconds, rounded down, from
/// one second on (the same at every call with a long deadline: set once),
/// else whole milliseconds, rounded up. The read that times out early
/// looks at its deadline and waits again.
fn read_timeout(t: Duration) -> Duration {
    if t >= Duration::from_secs(1) {
        Duration::from_secs(t.as_secs())
    } else {
        Duration::from_millis(u64::try_from(t.as_micros().div_ceil(1000)).unwrap_or(u64::MAX))
            .max(Duration::from_millis(1))
    }
}

fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

#[derive(Debug)]
enum Inner {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

/// A listening socket that authenticates every peer (Python's
/// `multiprocessing.connection.Listener(address, authkey=...)`).
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmproc_manager::{Address, Client, Listener};
/// let listener = Listener::bind(&Address::tcp("127.0.0.1:0")?, b"secret")?;
/// let addr = listener.address().clone();
/// // In another process:
/// let mut c = Client::connect(&addr, b"secret")?;
/// c.send_obj(&("hello", 42u32))?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    address: Address,
    authkey: Vec<u8>,
    handshake_timeout: Duration,
}

/// An accepted connection that has not authenticated yet: nothing it sent
/// was read. [`authenticate`](Self::authenticate) runs the handshake.
#[derive(Debug)]
pub struct PendingConnection {
    conn: SocketConnection,
}

impl PendingConnection {
    /// The server's half of the handshake for a client that may send its
    /// first frame early ([`SocketConnection::client_handshake_then`]):
    /// our welcome and response go out in one write; when that early frame
    /// came with the client's challenge (or comes before its welcome),
    /// `reply(conn, frame, ours)` answers it, sending our `ours` frames
    /// first when they were not sent yet (in one write or `sendmsg`: the
    /// client gets everything with one wake-up). Then the client's
    /// verdict on us is read. Returns whether `reply` ran.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate); `reply`'s.
    pub(crate) fn authenticate_early(
        mut self,
        authkey: &[u8],
        timeout: Duration,
        reply: impl FnOnce(&mut SocketConnection, &[u8], &[&[u8]]) -> Result<(), ConnError>,
    ) -> Result<(SocketConnection, bool), ConnError> {
        let c = &mut self.conn;
        let deadline = Instant::now() + timeout;
        let random = random_challenge()?;
        let message = auth::challenge_message(&random);
        c.send_bytes_timeout(&[CHALLENGE, &message].concat(), left(deadline))?;
        let response = c.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
        if let Err(e) = auth::verify_response(authkey, &message, &response) {
            let _ = c.send_bytes_timeout(FAILURE, left(deadline));
            return Err(e.into());
        }
        // Authenticated: what it sends from now on may be read.
        let digest = c.recv_challenge(authkey, deadline)?;
        let mut reply = Some(reply);
        if c.buffered() > 0 {
            let early = c.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
            if let Some(r) = reply.take() {
                r(c, &early, &[WELCOME, &digest])?;
            }
        } else {
            c.set_write_timeout(Some(left(deadline)))?;
            c.write_frames(&[WELCOME, &digest])?;
        }
        loop {
            let answer = c.recv_frame(MAX_HANDSHAKE_FRAME, Some(deadline))?;
            if answer == WELCOME {
                return Ok((self.conn, reply.is_none()));
            }
            match reply.take() {
                // The early frame, in a read of its own.
                Some(r) if answer != FAILURE => r(c, &answer, &[])?,
                _ => return Err(AuthenticationError::Rejected.into()),
            }
        }
    }

    /// Runs the server's half of the handshake.
    ///
    /// # Errors
    /// [`ConnError::Auth`] for a wrong key; [`ConnError::Timeout`] when the
    /// peer is silent for `timeout`; [`ConnError::TooLong`] for a frame over
    /// 256 bytes.
    pub fn authenticate(
        mut self,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<SocketConnection, ConnError> {
        self.conn.server_handshake(authkey, timeout)?;
        Ok(self.conn)
    }
}

impl Listener {
    /// Binds `address` (a TCP port 0 picks a free port: see
    /// [`address`](Self::address)).
    ///
    /// # Errors
    /// The OS error of `bind`/`listen`.
    pub fn bind(address: &Address, authkey: &[u8]) -> Result<Self, ConnError> {
        let (inner, address) = match address {
            Address::Unix(p) => (
                Inner::Unix(UnixListener::bind(p).map_err(ConnError::Io)?, p.clone()),
                address.clone(),
            ),
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(ConnError::Io)?;
                let a = l.local_addr().map_err(ConnError::Io)?;
                (Inner::Tcp(l), Address::Tcp(a))
            }
        };
        Ok(Self {
            inner,
            address,
            authkey: authkey.to_vec(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// The bound address (with the real port for TCP port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sets how long a peer has to complete the handshake.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Accepts a connection without authenticating it (a server hands it
    /// to another thread, so a silent peer blocks nobody).
    ///
    /// # Errors
    /// The OS error of `accept`.
    pub fn accept_pending(&self) -> Result<PendingConnection, ConnError> {
        let stream = match &self.inner {
            Inner::Unix(l, _) => Stream::Unix(l.accept().map_err(ConnError::Io)?.0),
            Inner::Tcp(l) => {
                let s = l.accept().map_err(ConnError::Io)?.0;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        Ok(PendingConnection {
            conn: SocketConnection::new(stream),
        })
    }

    /// Accepts and authenticates one connection (`Listener.accept()`).
    ///
    /// # Errors
    /// As [`accept_pending`](Self::accept_pending) and
    /// [`PendingConnection::authenticate`]: a wrong key, a silent peer
    /// (after the handshake timeout), an oversized frame.
    pub fn accept(&self) -> Result<SocketConnection, ConnError> {
        self.accept_pending()?
            .authenticate(&self.authkey, self.handshake_timeout)
    }

    /// Makes `accept` return within `timeout` at most (`WouldBlock` →
    /// [`ConnError::Timeout`]) by polling in non-blocking mode.
    ///
    /// # Errors
    /// As [`accept_pending`](Self::accept_pending); [`ConnError::Timeout`].
    pub fn accept_pending_timeout(
        &self,
        timeout: Duration,
    ) -> Result<PendingConnection, ConnError> {
        let fd = match &self.inner {
            Inner::Unix(l, _) => std::os::fd::AsFd::as_fd(l),
            Inner::Tcp(l) => std::os::fd::AsFd::as_fd(l),
        };
        let ready = shmproc_shm::os::poll_readable(&[fd], Some(timeout)).map_err(ConnError::Io)?;
        if !ready.first().copied().unwrap_or(false) {
            return Err(ConnError::Timeout);
        }
        self.accept_pending()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix(_, p) = &self.inner {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to a [`Listener`] and authenticates (Python's
/// `multiprocessing.connection.Client(address, authkey=...)`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and runs the client's half of the handshake.
    ///
    /// # Errors
    /// The OS error of `connect`; [`ConnError::Auth`] for a wrong key
    /// (either side may notice first); [`ConnError::Timeout`].
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<SocketConnection, ConnError> {
        Self::connect_timeout(address, authkey, DEFAULT_HANDSHAKE_TIMEOUT)
    }

    /// [`connect`](Self::connect), with the handshake bounded by `timeout`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_timeout(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<SocketConnection, ConnError> {
        let mut c = Self::connect_unauthenticated(address, timeout)?;
        c.client_handshake(authkey, timeout)?;
        Ok(c)
    }

    pub(crate) fn connect_unauthenticated(
        address: &Address,
        timeout: Duration,
    ) -> Result<SocketConnection, ConnError> {
        let stream = match address {
            Address::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(ConnError::Io)?),
            Address::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, timeout).map_err(ConnError::Io)?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
        };
        Ok(SocketConnection::new(stream))
    }
}
