//! A process's connection to a manager server: one per (process, address),
//! shared by every proxy of that process; a pipe for a local server, the
//! socket for a TCP one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use shmproc_channel::{Connection, RecvTimeoutError, TryRecvError};

use super::server::{CLIENT_END, encode};
use super::wire::{ATTACHED, Hello, MAX_FRAME, Reply, Request, Welcome};
use crate::{Address, Client, ConnError, ProxyError, RemoteError, SocketConnection};

enum Transport {
    Pipe(Connection),
    Socket(SocketConnection),
}

/// One connection to a manager server.
pub(crate) struct ClientHandle {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) timeout: Duration,
    conn: Mutex<Option<Transport>>,
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
        let transport = connect(address, authkey, timeout)?;
        Ok(Arc::new(Self {
            address: address.clone(),
            authkey: authkey.to_vec(),
            timeout,
            conn: Mutex::new(Some(transport)),
        }))
    }

    /// One request, one reply, within the handle's timeout. Any transport
    /// failure (the server died, a timeout) breaks the connection: every
    /// later call fails at once with [`ConnError::Eof`].
    pub(crate) fn call(&self, req: &Request) -> Result<Reply, ProxyError> {
        self.call_timeout(req, self.timeout)
    }

    pub(crate) fn call_timeout(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ProxyError> {
        let bytes = encode(req);
        if bytes.len() > MAX_FRAME {
            return Err(ProxyError::Encode(format!(
                "request of {} bytes, the limit is {MAX_FRAME}",
                bytes.len()
            )));
        }
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = guard.as_mut().ok_or(ConnError::Eof)?;
        let deadline = Instant::now() + timeout;
        let got = match t {
            Transport::Pipe(c) => c
                .send_bytes_timeout(&bytes, timeout)
                .map_err(|e| pipe_err(&e.to_string(), e.is_broken_pipe()))
                .and_then(|()| recv_reply(c, deadline)),
            // `recv_frame` polls briefly before it blocks.
            Transport::Socket(s) => s
                .send_bytes_timeout(&bytes, timeout)
                .and_then(|()| s.recv_frame(MAX_FRAME, Some(deadline))),
        };
        let reply = match got {
            Ok(b) => b,
            Err(e) => {
                *guard = None;
                return Err(e.into());
            }
        };
        drop(guard);
        match postcard::from_bytes::<Reply>(&reply) {
            Ok(Reply::Err(e)) => Err(ProxyError::Remote(e)),
            Ok(r) => Ok(r),
            Err(e) => Err(ProxyError::Remote(RemoteError::BadRequest(format!(
                "undecodable reply: {e}"
            )))),
        }
    }
}

/// How long a caller polls for its reply before it sleeps: a server
/// thread that is awake answers in a few microseconds, far less than the
/// two wake-ups a sleeping wait costs.
const REPLY_SPIN: Duration = Duration::from_micros(50);

fn recv_reply(c: &mut Connection, deadline: Instant) -> Result<Vec<u8>, ConnError> {
    let spin_until = Instant::now() + REPLY_SPIN;
    loop {
        match c.try_recv_bytes_max(MAX_FRAME) {
            Ok(b) => return Ok(b),
            Err(TryRecvError::Empty) if Instant::now() < spin_until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Eof) => return Err(ConnError::Eof),
            Err(e) => return Err(ConnError::Pipe(e.to_string())),
        }
    }
    c.recv_bytes_max_deadline(MAX_FRAME, deadline)
        .map_err(|e| match e {
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

fn connect(address: &Address, authkey: &[u8], timeout: Duration) -> Result<Transport, ConnError> {
    let mut sock = Client::connect_timeout(address, authkey, timeout)?;
    let deadline = Instant::now() + timeout;
    match address {
        Address::Tcp(_) => {
            sock.send_obj(&Hello::Socket)?;
            match postcard::from_bytes::<Welcome>(&sock.recv_frame(4096, Some(deadline))?) {
                Ok(Welcome::Socket) => Ok(Transport::Socket(sock)),
                _ => Err(ConnError::Codec("unexpected welcome".into())),
            }
        }
        Address::Unix(_) => {
            sock.send_obj(&Hello::Pipe)?;
            let welcome = postcard::from_bytes::<Welcome>(&sock.recv_frame(4096, Some(deadline))?)
                .map_err(|e| ConnError::Codec(e.to_string()))?;
            let name = match welcome {
                Welcome::Pipe(n) => n,
                Welcome::Refused(why) => return Err(ConnError::Pipe(why)),
                Welcome::Socket => return Err(ConnError::Codec("unexpected welcome".into())),
            };
            let mut c =
                Connection::open(&name, CLIENT_END).map_err(|e| ConnError::Pipe(e.to_string()))?;
            c.claim_now().map_err(|e| ConnError::Pipe(e.to_string()))?;
            sock.send_bytes_timeout(ATTACHED, timeout)?;
            Ok(Transport::Pipe(c))
        }
    }
}
