//! A process's connection to a manager server: one per (process, address),
//! shared by every proxy of that process; a pipe for a local server, the
//! socket for a TCP one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use shmproc_channel::{Connection, RecvTimeoutError, TryRecvError};

use super::server::{CLIENT_END, encode};
use super::wire::{Hello, MAX_FRAME, Reply, Request, Welcome};
pub use crate::spin::SpinBudget;
use crate::{Address, Client, ConnError, ProxyError, RemoteError, SocketConnection};

#[allow(
    clippy::large_enum_variant,
    reason = "one per session, held in place; the pipe variant is the common one and boxing it adds a hop per call"
)]
enum Transport {
    /// A local server: the socket, which serves the first calls, and the
    /// pipe the server sent with a reply ([`Welcome::Pipe`]), which serves
    /// the calls after it (the socket then held open only: its EOF tells
    /// the server we are gone).
    Local(SocketConnection, Option<(Connection, SpinBudget)>),
    /// A remote server.
    Socket(SocketConnection),
}

/// One connection to a manager server.
pub(crate) struct ClientHandle {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) timeout: Duration,
    /// This handle's id in the server: its connections share lock ownership.
    client: u64,
    /// The server's id ([`Welcome`]): proxies of this server only are
    /// stored into its objects.
    pub(crate) server: u64,
    conn: Mutex<Option<Transport>>,
    /// Connections for calls that wait in the server, kept between calls.
    waiters: Mutex<Vec<Transport>>,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// This process's connections, by (pid, address): a forked child never
/// uses its parent's pipe end.
type Clients = HashMap<(u32, Address), Weak<ClientHandle>>;
static CLIENTS: Mutex<Option<Clients>> = Mutex::new(None);

fn cache() -> MutexGuard<'static, Option<Clients>> {
    CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientHandle {
    /// This process's connection to `address`, made (and authenticated)
    /// on first use.
    pub(crate) fn get(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Arc<Self>, ConnError> {
        let key = (std::process::id(), address.clone());
        let mut c = cache();
        let map = c.get_or_insert_with(HashMap::new);
        if let Some(h) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(h);
        }
        let h = Self::connect_new(address, authkey, timeout)?;
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&h));
        Ok(h)
    }

    /// A new connection of its own (`Manager::connect`).
    pub(crate) fn connect_new(
        address: &Address,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Arc<Self>, ConnError> {
        let client = shmproc_shm::os::random_u64();
        let (transport, server) = connect(address, authkey, timeout, client)?;
        Ok(Arc::new(Self {
            address: address.clone(),
            authkey: authkey.to_vec(),
            timeout,
            client,
            server,
            conn: Mutex::new(Some(transport)),
            waiters: Mutex::new(Vec::new()),
        }))
    }

    /// Whether calls go over a shared-memory pipe now.
    pub(crate) fn over_pipe(&self) -> bool {
        matches!(
            *self
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Some(Transport::Local(_, Some(_)))
        )
    }

    /// One request, one reply, within the handle's timeout. Any transport
    /// failure (the server died, a timeout) breaks the connection: every
    /// later call fails at once with [`ConnError::Eof`].
    pub(crate) fn call(&self, req: &Request) -> Result<Reply, ProxyError> {
        // A small request (most are) is encoded on the stack: no allocation.
        let mut stack = [0u8; 256];
        let heap;
        let bytes: &[u8] = match postcard::to_slice(req, &mut stack) {
            Ok(b) => b,
            Err(_) => {
                heap = encode_request(req)?;
                &heap
            }
        };
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = guard.as_mut().ok_or(ConnError::Eof)?;
        let got = transact(t, bytes, self.timeout, Some(Instant::now() + self.timeout));
        if got.is_err() {
            *guard = None;
        }
        drop(guard);
        decode_reply(&got?)
    }

    /// A call that may wait in the server for `wait` (`None`: as long as
    /// it takes) on a connection of its own (one of this handle's waiting
    /// connections, made on first need and kept): the other proxies of this
    /// process go on meanwhile, and the server answers once, when the wait
    /// ends (no polling). The server's death ends the wait with an error.
    pub(crate) fn call_waiting(
        &self,
        req: &Request,
        wait: Option<Duration>,
    ) -> Result<Reply, ProxyError> {
        let bytes = encode_request(req)?;
        let spare = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let mut t = match spare {
            Some(t) => t,
            // The server refusing or gone (its socket file too) is the
            // same error as a connection that broke: it is gone.
            None => connect(&self.address, &self.authkey, self.timeout, self.client)
                .map(|(t, _)| t)
                .map_err(|e| match e {
                    ConnError::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::NotFound
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                        ) =>
                    {
                        ConnError::Eof
                    }
                    e => e,
                })?,
        };
        let deadline = wait.map(|w| Instant::now() + w + self.timeout);
        let got = transact(&mut t, &bytes, self.timeout, deadline)?;
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(t);
        decode_reply(&got)
    }
}

fn encode_request(req: &Request) -> Result<Vec<u8>, ProxyError> {
    let bytes = encode(req);
    if bytes.len() > MAX_FRAME {
        return Err(ProxyError::Encode(format!(
            "request of {} bytes, the limit is {MAX_FRAME}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

pub(super) fn decode_reply(reply: &[u8]) -> Result<Reply, ProxyError> {
    match postcard::from_bytes::<Reply>(reply) {
        Ok(Reply::Err(e)) => Err(ProxyError::Remote(e)),
        Ok(r) => Ok(r),
        Err(e) => Err(ProxyError::Remote(RemoteError::BadRequest(format!(
            "undecodable reply: {e}"
        )))),
    }
}

/// Sends a request (within `timeout`) and waits for its reply until
/// `deadline` (`None`: until it comes or the server is gone).
fn transact(
    t: &mut Transport,
    bytes: &[u8],
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ConnError> {
    match t {
        Transport::Local(_, Some((c, budget))) => c
            .send_bytes_timeout(bytes, timeout)
            .map_err(|e| pipe_err(&e.to_string(), e.is_broken_pipe()))
            .and_then(|()| recv_reply(c, budget, deadline)),
        Transport::Local(s, pipe @ None) => {
            s.send_bytes_timeout(bytes, timeout)?;
            let reply = s.recv_frame(MAX_FRAME, deadline)?;
            // A reply with a descriptor brings the pipe for the next calls.
            let mut fds = s.take_fds();
            s.collect_fds();
            if let Some(fd) = fds.pop() {
                if !fds.is_empty() {
                    return Err(ConnError::Codec("expected one pipe descriptor".into()));
                }
                let mut c = Connection::open_fd(fd, CLIENT_END)
                    .map_err(|e| ConnError::Pipe(e.to_string()))?;
                c.claim_now().map_err(|e| ConnError::Pipe(e.to_string()))?;
                *pipe = Some((c, SpinBudget::default()));
            }
            Ok(reply)
        }
        Transport::Socket(s) => s
            .send_bytes_timeout(bytes, timeout)
            .and_then(|()| s.recv_frame(MAX_FRAME, deadline)),
    }
}

/// Polls `c` for a message for up to the budget, never past `deadline`:
/// `None` when none came (the caller then sleeps; the budget knows).
///
/// # Errors
/// [`ConnError::Eof`] when the peer is gone; [`ConnError::Pipe`].
pub fn recv_spinning(
    c: &mut Connection,
    budget: &mut SpinBudget,
    deadline: Option<Instant>,
) -> Result<Option<Vec<u8>>, ConnError> {
    budget.poll_until(deadline, || match c.try_recv_bytes_max(MAX_FRAME) {
        Ok(b) => Ok(Some(b)),
        Err(TryRecvError::Empty) => Ok(None),
        Err(TryRecvError::Eof) => Err(ConnError::Eof),
        Err(e) => Err(ConnError::Pipe(e.to_string())),
    })
}

fn recv_reply(
    c: &mut Connection,
    budget: &mut SpinBudget,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ConnError> {
    if let Some(b) = recv_spinning(c, budget, deadline)? {
        return Ok(b);
    }
    let got = match deadline {
        Some(d) => c.recv_bytes_max_deadline(MAX_FRAME, d),
        None => c.recv_bytes_max(MAX_FRAME).map_err(RecvTimeoutError::from),
    };
    got.map_err(|e| match e {
        RecvTimeoutError::Timeout => ConnError::Timeout,
        RecvTimeoutError::Eof => ConnError::Eof,
        e => ConnError::Pipe(e.to_string()),
    })
}

fn pipe_err(msg: &str, broken: bool) -> ConnError {
    if broken {
        ConnError::Eof
    } else {
        ConnError::Pipe(msg.to_owned())
    }
}

fn connect(
    address: &Address,
    authkey: &[u8],
    timeout: Duration,
    client: u64,
) -> Result<(Transport, u64), ConnError> {
    let deadline = Instant::now() + timeout;
    let mut sock = Client::connect_unauthenticated(address, timeout)?;
    // The hello goes with our challenge; the welcome comes with the
    // server's last handshake frames (and, locally, the pipe's descriptor
    // later, with a reply).
    let hello = match address {
        Address::Tcp(_) => Hello::Socket { client },
        Address::Unix(_) => {
            sock.collect_fds();
            Hello::Pipe { client }
        }
    };
    sock.client_handshake_then(authkey, timeout, Some(&encode(&hello)))?;
    let frame = sock.recv_frame(4096, Some(deadline))?;
    let welcome =
        postcard::from_bytes::<Welcome>(&frame).map_err(|e| ConnError::Codec(e.to_string()))?;
    if !sock.take_fds().is_empty() {
        return Err(ConnError::Codec("a descriptor with the welcome".into()));
    }
    match (welcome, address) {
        (Welcome::Socket { server }, Address::Tcp(_)) => Ok((Transport::Socket(sock), server)),
        (Welcome::Pipe { server }, Address::Unix(_)) => {
            // Replies may bring the pipe's descriptor from now on.
            sock.collect_fds();
            Ok((Transport::Local(sock, None), server))
        }
        (Welcome::Refused(why), _) => Err(ConnError::Pipe(why)),
        _ => Err(ConnError::Codec("unexpected welcome".into())),
    }
}
