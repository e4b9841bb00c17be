//! The manager's server process: a table of objects, one thread per
//! listener and one per client session.
//!
//! A session is served over a shared-memory pipe (a local client that
//! connected through the Unix socket) or over its socket (TCP). Each
//! request is decoded only after the handshake, bounded by
//! [`MAX_FRAME`]; a request that does not decode, names a missing object,
//! or calls a method of another kind gets a typed [`RemoteError`] and the
//! session goes on. A session ends at EOF (the client closed or died) or on
//! an oversized frame; its references are dropped and the locks it held are
//! released.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shmproc_channel::{Connection, Pipe, PipeEnd, PipeMode, RecvTimeoutError, TryRecvError};
use shmproc_shm::{Segment, SegmentName};

use super::wire::{ATTACHED, Hello, Kind, MAX_FRAME, Op, Reply, Request, Welcome};
use crate::{Address, ConnError, Listener, PendingConnection, RemoteError, SocketConnection};

/// How often idle threads look at the shutdown flag.
const TICK: Duration = Duration::from_millis(200);
/// Bytes per direction of a session's pipe: requests and replies are
/// small, and longer ones stream through.
const SESSION_PIPE_CAPACITY: usize = 64 << 10;
/// How long a session's thread polls its pipe after a reply before it
/// sleeps (a client's next request usually follows at once).
const HOT_SPIN: Duration = Duration::from_micros(50);
/// How long a client has to send the rest of a message it started.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait a blocking method does per request; clients loop.
pub(crate) const MAX_SERVER_WAIT: Duration = Duration::from_millis(100);

/// What the starting process tells the server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) authkey: Vec<u8>,
    pub(crate) unix: PathBuf,
    pub(crate) tcp: Option<std::net::SocketAddr>,
    pub(crate) handshake_timeout: Duration,
}

enum State {
    Dict {
        map: HashMap<Vec<u8>, (u64, Vec<u8>)>,
        next: u64,
    },
    List {
        items: Vec<Vec<u8>>,
        version: u64,
    },
    Value {
        version: u64,
        bytes: Vec<u8>,
    },
    Queue {
        items: VecDeque<Vec<u8>>,
        maxsize: u64,
    },
    Lock {
        owner: Option<u64>,
    },
    Event(bool),
}

struct Obj {
    kind: Kind,
    ty: String,
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Default)]
struct Table {
    objs: HashMap<u64, (Arc<Obj>, u64)>,
    names: HashMap<String, u64>,
    next_id: u64,
}

pub(crate) struct Server {
    table: Mutex<Table>,
    shutdown: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    next_session: Mutex<u64>,
    pending_pipes: Mutex<HashSet<String>>,
    handshake_timeout: Duration,
    authkey: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking session thread must not take the server down.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A session's transport.
enum Transport {
    Pipe(Connection),
    Socket(SocketConnection),
}

impl Transport {
    fn recv(&mut self) -> Result<Vec<u8>, ConnError> {
        match self {
            Transport::Pipe(c) => {
                // A client usually sends its next request right after a
                // reply: stay awake for it a little while (a sleeping
                // thread's wake-up costs more than the whole round trip).
                let spin_until = Instant::now() + HOT_SPIN;
                loop {
                    match c.try_recv_bytes_max(MAX_FRAME) {
                        Ok(b) => return Ok(b),
                        Err(TryRecvError::Empty) if Instant::now() < spin_until => {
                            std::thread::yield_now();
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Eof) => return Err(ConnError::Eof),
                        Err(e) => return Err(ConnError::Pipe(e.to_string())),
                    }
                }
                c.recv_bytes_max_timeout(MAX_FRAME, TICK)
                    .map_err(|e| match e {
                        RecvTimeoutError::Timeout => ConnError::Timeout,
                        RecvTimeoutError::Eof => ConnError::Eof,
                        e => ConnError::Pipe(e.to_string()),
                    })
            }
            // Wait for a message to start, then read it whole: a deadline in
            // the middle of a frame would lose its first bytes.
            Transport::Socket(s) => {
                let spin_until = Instant::now() + HOT_SPIN;
                let mut ready = false;
                while !ready && Instant::now() < spin_until {
                    ready = s.poll(Duration::ZERO)?;
                    // Yield rather than spin: on a busy machine the peer
                    // may need this CPU to answer.
                    std::thread::yield_now();
                }
                if !ready && !s.poll(TICK)? {
                    return Err(ConnError::Timeout);
                }
                s.recv_frame(MAX_FRAME, Some(Instant::now() + FRAME_TIMEOUT))
            }
        }
    }

    fn send(&mut self, b: &[u8]) -> Result<(), ConnError> {
        match self {
            Transport::Pipe(c) => c
                .send_bytes_timeout(b, Duration::from_secs(30))
                .map_err(|e| ConnError::Pipe(e.to_string())),
            Transport::Socket(s) => s.send_bytes_timeout(b, Duration::from_secs(30)),
        }
    }
}

/// The server process's entry point.
pub(crate) fn serve(cfg: ServerConfig, report: &mut Connection) {
    let unix = Listener::bind(&Address::Unix(cfg.unix.clone()), &cfg.authkey);
    let tcp = cfg
        .tcp
        .map(|a| Listener::bind(&Address::Tcp(a), &cfg.authkey))
        .transpose();
    let (unix, tcp) = match (unix, tcp) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => {
            let _ = report.send_obj(&Err::<Vec<Address>, String>(e.to_string()));
            return;
        }
    };
    let mut addrs = vec![unix.address().clone()];
    addrs.extend(tcp.as_ref().map(|t| t.address().clone()));
    let server = Arc::new(Server {
        table: Mutex::new(Table {
            next_id: 1,
            ..Table::default()
        }),
        shutdown: AtomicBool::new(false),
        stop: (Mutex::new(false), Condvar::new()),
        next_session: Mutex::new(1),
        pending_pipes: Mutex::new(HashSet::new()),
        handshake_timeout: cfg.handshake_timeout,
        authkey: cfg.authkey.clone(),
    });
    let mut threads = Vec::new();
    for l in std::iter::once(unix).chain(tcp) {
        let s = Arc::clone(&server);
        threads.push(std::thread::spawn(move || s.accept_loop(&l)));
    }
    if report.send_obj(&Ok::<Vec<Address>, String>(addrs)).is_err() {
        server.request_stop();
    }
    // Wait for a Shutdown request (or the parent's end of `report` closing).
    let (m, c) = &server.stop;
    let mut stopped = lock(m);
    while !*stopped {
        stopped = c
            .wait_timeout(stopped, TICK)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    drop(stopped);
    server.shutdown.store(true, Ordering::Release);
    for t in threads {
        let _ = t.join();
    }
    for name in lock(&server.pending_pipes).drain() {
        let _ = Segment::remove(&name);
    }
}

impl Server {
    fn request_stop(&self) {
        let (m, c) = &self.stop;
        *lock(m) = true;
        c.notify_all();
    }

    fn accept_loop(self: &Arc<Self>, l: &Listener) {
        while !self.shutdown.load(Ordering::Acquire) {
            match l.accept_pending_timeout(TICK) {
                Ok(p) => {
                    let s = Arc::clone(self);
                    std::thread::spawn(move || s.start_session(p));
                }
                // EMFILE and the like: the poll in the next round bounds the retry rate
                // only when the socket stays readable, so back off for a tick.
                Err(ConnError::Timeout) => {}
                #[allow(clippy::disallowed_methods)]
                // Back-off after an accept error, not synchronisation.
                Err(_) => std::thread::sleep(TICK),
            }
        }
    }

    /// Authenticates, sets the transport up, serves. Any failure here ends
    /// this connection only.
    fn start_session(self: Arc<Self>, p: PendingConnection) {
        let Ok(mut sock) = p.authenticate(&self.authkey, self.handshake_timeout) else {
            return;
        };
        sock.set_max_message_len(MAX_FRAME);
        let hello = sock
            .recv_frame(64, Some(Instant::now() + self.handshake_timeout))
            .ok()
            .and_then(|b| postcard::from_bytes::<Hello>(&b).ok());
        let transport = match hello {
            Some(Hello::Socket) => {
                if sock.send_obj(&Welcome::Socket).is_err() {
                    return;
                }
                Transport::Socket(sock)
            }
            Some(Hello::Pipe) => match self.pipe_session(&mut sock) {
                Some(c) => Transport::Pipe(c),
                None => return,
            },
            None => return,
        };
        let id = {
            let mut n = lock(&self.next_session);
            *n += 1;
            *n
        };
        Session {
            server: &self,
            id,
            held: HashMap::new(),
            locks: HashSet::new(),
        }
        .run(transport);
    }

    fn pipe_session(&self, sock: &mut SocketConnection) -> Option<Connection> {
        let name = SegmentName::unique("mgr");
        let (mut ours, theirs) = match Pipe::options(PipeMode::Duplex, SESSION_PIPE_CAPACITY)
            .build_named(name.as_str())
        {
            Ok(p) => p,
            Err(e) => {
                let _ = sock.send_obj(&Welcome::Refused(e.to_string()));
                return None;
            }
        };
        lock(&self.pending_pipes).insert(name.as_str().to_owned());
        let ok = ours.claim_now().is_ok()
            && sock
                .send_obj(&Welcome::Pipe(name.as_str().to_owned()))
                .is_ok()
            && sock
                .recv_frame(16, Some(Instant::now() + self.handshake_timeout))
                .is_ok_and(|b| b == ATTACHED);
        // The client maps the pipe (or gave up): the name is no longer needed.
        drop(theirs);
        let _ = Segment::remove(name.as_str());
        lock(&self.pending_pipes).remove(name.as_str());
        ok.then_some(ours)
    }

    fn get(&self, id: u64) -> Result<Arc<Obj>, RemoteError> {
        lock(&self.table)
            .objs
            .get(&id)
            .map(|(o, _)| Arc::clone(o))
            .ok_or(RemoteError::NoSuchObject(id))
    }
}

struct Session<'a> {
    server: &'a Server,
    id: u64,
    held: HashMap<u64, u64>,
    locks: HashSet<u64>,
}

impl Session<'_> {
    fn run(mut self, mut t: Transport) {
        loop {
            if self.server.shutdown.load(Ordering::Acquire) {
                break;
            }
            let bytes = match t.recv() {
                Ok(b) => b,
                Err(ConnError::Timeout) => continue,
                Err(_) => break,
            };
            let reply = match postcard::from_bytes::<Request>(&bytes) {
                Ok(Request::Shutdown) => {
                    let _ = t.send(&encode(&Reply::Ok));
                    self.server.request_stop();
                    break;
                }
                Ok(req) => self.handle(req),
                Err(e) => Reply::Err(RemoteError::BadRequest(e.to_string())),
            };
            if t.send(&encode(&reply)).is_err() {
                break;
            }
        }
        self.end();
    }

    /// Drops every reference this client held and releases its locks.
    fn end(&mut self) {
        for id in std::mem::take(&mut self.locks) {
            if let Ok(o) = self.server.get(id) {
                if let State::Lock { owner } = &mut *lock(&o.state) {
                    if *owner == Some(self.id) {
                        *owner = None;
                    }
                }
                o.cond.notify_all();
            }
        }
        for (id, n) in std::mem::take(&mut self.held) {
            for _ in 0..n {
                self.decref(id);
            }
        }
    }

    fn decref(&self, id: u64) {
        let mut t = lock(&self.server.table);
        if let Some((_, refs)) = t.objs.get_mut(&id) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                t.objs.remove(&id);
            }
        }
    }

    fn check(o: &Obj, id: u64, kind: Kind, ty: &str) -> Result<(), RemoteError> {
        if o.kind != kind || o.ty != ty {
            return Err(RemoteError::WrongType {
                id,
                found: format!("{:?}<{}>", o.kind, o.ty),
                expected: format!("{kind:?}<{ty}>"),
            });
        }
        Ok(())
    }

    fn handle(&mut self, req: Request) -> Reply {
        match self.try_handle(req) {
            Ok(r) => r,
            Err(e) => Reply::Err(e),
        }
    }

    fn try_handle(&mut self, req: Request) -> Result<Reply, RemoteError> {
        match req {
            Request::Create {
                kind,
                ty,
                name,
                init,
                maxsize,
            } => {
                let mut t = lock(&self.server.table);
                if let Some(&id) = name.as_ref().and_then(|n| t.names.get(n)) {
                    let (o, refs) = t.objs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
                    Self::check(o, id, kind, &ty)?;
                    *refs += 1;
                    *self.held.entry(id).or_default() += 1;
                    return Ok(Reply::Id(id));
                }
                let state = match kind {
                    Kind::Dict => State::Dict {
                        map: HashMap::new(),
                        next: 1,
                    },
                    Kind::List => State::List {
                        items: Vec::new(),
                        version: 1,
                    },
                    Kind::Value => State::Value {
                        version: 1,
                        bytes: init,
                    },
                    Kind::Queue => State::Queue {
                        items: VecDeque::new(),
                        maxsize,
                    },
                    Kind::Lock => State::Lock { owner: None },
                    Kind::Event => State::Event(false),
                };
                let id = t.next_id;
                t.next_id += 1;
                let obj = Arc::new(Obj {
                    kind,
                    ty,
                    state: Mutex::new(state),
                    cond: Condvar::new(),
                });
                // A named object is pinned (one reference held by the
                // server) until shutdown, so any client can find it later.
                let pinned = u64::from(name.is_some());
                t.objs.insert(id, (obj, 1 + pinned));
                if let Some(n) = name {
                    t.names.insert(n, id);
                }
                *self.held.entry(id).or_default() += 1;
                Ok(Reply::Id(id))
            }
            Request::Attach { id, kind, ty } => {
                let mut t = lock(&self.server.table);
                let (o, refs) = t.objs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
                Self::check(o, id, kind, &ty)?;
                *refs += 1;
                *self.held.entry(id).or_default() += 1;
                Ok(Reply::Ok)
            }
            Request::Pin { id } => {
                let mut t = lock(&self.server.table);
                let (_, refs) = t.objs.get_mut(&id).ok_or(RemoteError::NoSuchObject(id))?;
                *refs += 1;
                Ok(Reply::Ok)
            }
            Request::Adopt { id, kind, ty } => {
                let t = lock(&self.server.table);
                let (o, _) = t.objs.get(&id).ok_or(RemoteError::NoSuchObject(id))?;
                Self::check(o, id, kind, &ty)?;
                *self.held.entry(id).or_default() += 1;
                Ok(Reply::Ok)
            }
            Request::Release { id } => {
                match self.held.get_mut(&id) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            self.held.remove(&id);
                        }
                    }
                    _ => return Err(RemoteError::NoSuchObject(id)),
                }
                self.decref(id);
                Ok(Reply::Ok)
            }
            Request::Call { id, op } => {
                let o = self.server.get(id)?;
                self.call(&o, id, op)
            }
            Request::Shutdown => Ok(Reply::Ok),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn call(&mut self, o: &Obj, id: u64, op: Op) -> Result<Reply, RemoteError> {
        let unknown = |op: &Op| RemoteError::UnknownMethod {
            method: format!("{op:?}")
                .split(['(', ' '])
                .next()
                .unwrap_or("?")
                .to_owned(),
            kind: format!("{:?}", o.kind),
        };
        let mut st = lock(&o.state);
        let reply = match (&mut *st, op) {
            (State::Dict { map, .. }, Op::Get(k)) => {
                Reply::Maybe(map.get(&k).map(|(_, v)| v.clone()))
            }
            (State::Dict { map, .. }, Op::GetVersioned(k)) => {
                Reply::Versioned(map.get(&k).cloned())
            }
            (State::Dict { map, next }, Op::Set(k, v)) => {
                *next += 1;
                map.insert(k, (*next, v));
                Reply::Ok
            }
            (State::Dict { map, next }, Op::Cas(k, ver, v)) => {
                let cur = map.get(&k).map_or(0, |(n, _)| *n);
                if cur == ver {
                    *next += 1;
                    map.insert(k, (*next, v));
                }
                Reply::Bool(cur == ver)
            }
            (State::Dict { map, .. }, Op::Del(k)) => Reply::Maybe(map.remove(&k).map(|(_, v)| v)),
            (State::Dict { map, .. }, Op::Contains(k)) => Reply::Bool(map.contains_key(&k)),
            (State::Dict { map, .. }, Op::Len) => Reply::U64(map.len() as u64),
            (State::Dict { map, .. }, Op::Items) => Reply::Pairs(
                map.iter()
                    .map(|(k, (_, v))| (k.clone(), v.clone()))
                    .collect(),
            ),
            (State::Dict { map, .. }, Op::Clear) => {
                map.clear();
                Reply::Ok
            }
            (State::List { items, version }, Op::Append(v)) => {
                items.push(v);
                *version += 1;
                Reply::Ok
            }
            (State::List { items, version }, Op::Extend(vs)) => {
                items.extend(vs);
                *version += 1;
                Reply::Ok
            }
            (State::List { items, .. }, Op::Index(i)) => {
                let at = index(i, items.len())?;
                Reply::Bytes(items.get(at).cloned().unwrap_or_default())
            }
            (State::List { items, version }, Op::IndexVersioned(i)) => {
                let at = index(i, items.len())?;
                Reply::Versioned(items.get(at).map(|v| (*version, v.clone())))
            }
            (State::List { items, version }, Op::SetIndex(i, v)) => {
                let at = index(i, items.len())?;
                if let Some(slot) = items.get_mut(at) {
                    *slot = v;
                }
                *version += 1;
                Reply::Ok
            }
            (State::List { items, version }, Op::CasIndex(i, ver, v)) => {
                let at = index(i, items.len())?;
                let ok = *version == ver;
                if ok {
                    if let Some(slot) = items.get_mut(at) {
                        *slot = v;
                    }
                    *version += 1;
                }
                Reply::Bool(ok)
            }
            (State::List { items, version }, Op::Pop(i)) => {
                let at = index(i.unwrap_or(-1), items.len())?;
                *version += 1;
                Reply::Bytes(items.remove(at))
            }
            (State::List { items, .. }, Op::Len) => Reply::U64(items.len() as u64),
            (State::List { items, .. }, Op::All) => Reply::List(items.clone()),
            (State::List { items, version }, Op::Clear) => {
                items.clear();
                *version += 1;
                Reply::Ok
            }
            (State::Value { version, bytes }, Op::Load) => {
                Reply::Versioned(Some((*version, bytes.clone())))
            }
            (State::Value { version, bytes }, Op::Store(v)) => {
                *bytes = v;
                *version += 1;
                Reply::Ok
            }
            (State::Value { version, bytes }, Op::CasValue(ver, v)) => {
                let ok = *version == ver;
                if ok {
                    *bytes = v;
                    *version += 1;
                }
                Reply::Bool(ok)
            }
            (State::Lock { .. }, Op::Acquire(ms)) => {
                let deadline = Instant::now() + Duration::from_millis(ms).min(MAX_SERVER_WAIT);
                loop {
                    if let State::Lock { owner } = &mut *st {
                        if owner.is_none() {
                            *owner = Some(self.id);
                            self.locks.insert(id);
                            break Reply::Bool(true);
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Reply::Bool(false);
                    }
                    st = o
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
            (State::Lock { owner }, Op::ReleaseLock) => {
                if owner.is_none() {
                    return Err(RemoteError::NotHeld);
                }
                *owner = None;
                self.locks.remove(&id);
                o.cond.notify_all();
                Reply::Ok
            }
            (State::Event(flag), Op::SetEvent) => {
                *flag = true;
                o.cond.notify_all();
                Reply::Ok
            }
            (State::Event(flag), Op::Clear) => {
                *flag = false;
                Reply::Ok
            }
            (State::Event(flag), Op::IsSet) => Reply::Bool(*flag),
            (State::Event(_), Op::Wait(ms)) => {
                let deadline = Instant::now() + Duration::from_millis(ms).min(MAX_SERVER_WAIT);
                loop {
                    if let State::Event(true) = &*st {
                        break Reply::Bool(true);
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Reply::Bool(false);
                    }
                    st = o
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
            (State::Queue { .. }, Op::Put(v, ms)) => {
                let deadline = Instant::now() + Duration::from_millis(ms).min(MAX_SERVER_WAIT);
                loop {
                    if let State::Queue { items, maxsize } = &mut *st {
                        if *maxsize == 0 || (items.len() as u64) < *maxsize {
                            items.push_back(v);
                            o.cond.notify_all();
                            break Reply::Bool(true);
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Reply::Bool(false);
                    }
                    st = o
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
            (State::Queue { .. }, Op::QGet(ms)) => {
                let deadline = Instant::now() + Duration::from_millis(ms).min(MAX_SERVER_WAIT);
                loop {
                    if let State::Queue { items, .. } = &mut *st {
                        if let Some(v) = items.pop_front() {
                            o.cond.notify_all();
                            break Reply::Maybe(Some(v));
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Reply::Maybe(None);
                    }
                    st = o
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            }
            (State::Queue { items, .. }, Op::Len) => Reply::U64(items.len() as u64),
            (_, op) => return Err(unknown(&op)),
        };
        Ok(reply)
    }
}

/// Python's index rule: negative from the end; out of range is an error.
fn index(i: i64, len: usize) -> Result<usize, RemoteError> {
    let n = len as i64;
    let at = if i < 0 { i + n } else { i };
    if (0..n).contains(&at) {
        Ok(at as usize)
    } else {
        Err(RemoteError::IndexError {
            index: i,
            len: len as u64,
        })
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("the wire types always encode")
}

/// The pipe end a client opens.
pub(crate) const CLIENT_END: PipeEnd = PipeEnd::Second;
